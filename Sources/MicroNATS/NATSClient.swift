import DequeModule
import Foundation
public import Logging
public import MicroCore

/// A NATS client on the framework's own core: one TCP connection (optionally TLS) on one event
/// loop, the protocol parsed there as bytes arrive.
///
/// - Publish (`PUB`/`HPUB`), subscribe with or without a queue group (`SUB`), unsubscribe (after
///   a number of messages), request/reply over one shared inbox subscription, and ``flush(timeout:)``
///   (a PING answered: everything sent before it was processed by the server).
/// - Reconnects by itself, with back-off and jitter, to any server of the list or of those the
///   cluster names (`connect_urls`); subscriptions are made again; publishes made meanwhile are
///   held (up to ``NATSOptions/reconnectBufferSize``, then an error) and sent after.
/// - A connection whose server stops answering PINGs is stale: closed and made again.
/// - A subscription whose consumer falls behind drops messages past its limit and says so
///   (``NATSEvent/slowConsumer(subject:dropped:)``) rather than growing without bound.
///
/// Threading: every method may be called from any task; the state lives on `loop` (a task that
/// prefers it publishes without a hop).
public final class NATSClient: @unchecked Sendable {
    // @unchecked Sendable: every mutable member below is read and written on `loop`'s thread only
    // (public methods hop there; TCP callbacks and timers run there); `options`, `loop`,
    // `logger`, `tls` and `inboxPrefix` are immutable.

    public let options: NATSOptions
    public let loop: EventLoop
    let logger: Logger
    private let tls: TLSContext?

    enum Status { case connecting, connected, reconnecting, closed }
    private(set) var status = Status.connecting
    private var connection: TCPConnection?
    private var generation = 0
    private var parser = NATSParser()
    /// A new `max_payload` from an INFO read while the parser was busy.
    private var maxPayloadUpdate: Int?
    /// Why this side closed the current connection (it said nothing wrong otherwise).
    private var closeReason: String?
    private var servers: [NATSServerAddress]
    private var current: NATSServerAddress?
    /// The server's facts from its last INFO.
    private(set) var info = ServerInfo()
    /// Its `max_payload`, read by every publish (not through `info`, whose copy retains its arrays).
    private var maxPayload = 1024 * 1024

    // handshake of the connection being made: what is awaited, or what came before it was
    private var awaitingInfo: CheckedContinuation<ServerInfo, any Error>?
    private var awaitingPong: CheckedContinuation<Void, any Error>?
    private var earlyInfo: ServerInfo?
    private var earlyError: NATSError?

    private struct PongWaiter {
        let id: UInt64
        let continuation: CheckedContinuation<Void, any Error>?
    }
    /// PINGs sent on the current connection, oldest first (keep-alives have no continuation).
    private var pongs = Deque<PongWaiter>()
    /// Flushes asked for while reconnecting: their PINGs are in `held`.
    private var heldPongs: [PongWaiter] = []
    private var nextPongID: UInt64 = 1
    private var pingsOut = 0
    /// What is written while reconnecting, sent once connected again.
    private var held: [UInt8] = []
    private var scratch: [UInt8] = []
    /// The control line of a publish: `PUB subject [reply] ` (for `lineSubject`, `lineReply`,
    /// `linePrefix` bytes), then the size and CRLF; allocated once.
    private let line = UnsafeMutablePointer<UInt8>.allocate(capacity: NATSClient.lineCapacity)
    private static let lineCapacity = 2200
    private var lineSubject = ""
    private var lineReply: String?
    private var linePrefix = 0
    /// The payload size the line ends with now (-1: none yet), and the line's whole length.
    private var lineSize = -1
    private var lineLength = 0
    /// Publishers waiting for the connection's output to drain below its mark.
    private var writableWaiters: [CheckedContinuation<Void, Never>] = []

    private var subscriptions: [UInt64: Subscription] = [:]
    private var nextSID: UInt64 = 1
    private let inboxPrefix = "_INBOX." + NATSClient.nuid()
    private var inboxSID: UInt64?
    private var requests: [String: CheckedContinuation<NATSMessage, any Error>] = [:]
    private var nextRequest: UInt64 = 1
    private var watchers: [UInt64: AsyncStream<NATSEvent>.Continuation] = [:]
    private var nextWatcher: UInt64 = 1
    private var pingTask: Task<Void, Never>?
    private var closedWaiters: [CheckedContinuation<Void, Never>] = []

    deinit { line.deallocate() }

    private init(options: NATSOptions, loop: EventLoop, logger: Logger, tls: TLSContext?, servers: [NATSServerAddress]) {
        self.options = options
        self.loop = loop
        self.logger = logger
        self.tls = tls
        self.servers = servers
    }

    /// Connects to the first server of `options.servers` that answers (each tried once, in
    /// order); throws with every attempt's reason if none does.
    public static func connect(_ options: NATSOptions, on loop: EventLoop,
                               logger: Logger = Logger(label: "micro.nats")) async throws -> NATSClient {
        guard !options.servers.isEmpty else { throw NATSError(.noServers, "no NATS server given") }
        let servers = try options.servers.map(NATSServerAddress.init)
        let tls = try options.tls.map { try TLSContext($0, server: false) }
        let client = NATSClient(options: options, loop: loop, logger: logger, tls: tls, servers: servers)
        try await withTaskExecutorPreference(loop) {
            var reasons: [String] = []
            for server in servers {
                do {
                    try await client.establish(server)
                    client.startPinging()
                    return
                } catch {
                    reasons.append("\(server): \(error)")
                }
            }
            client.status = .closed
            throw NATSError(.noServers, "cannot connect to NATS: " + reasons.joined(separator: "; "))
        }
        return client
    }

    // MARK: - publishing

    /// Publishes `payload` to `subject` (with `headers`: `HPUB`; with `replyTo`: where answers
    /// go). Returns once the bytes are queued for the server (``flush(timeout:)`` says when the
    /// server has them); waits while the connection's output is past its mark. While
    /// reconnecting, the message is held and sent after.
    ///
    /// Inlinable: on the client's loop a publish that need not wait is a plain call (no frame of
    /// an async function is made for it; a publisher in a loop makes millions of them a second).
    @inlinable
    public nonisolated(nonsending) func publish(_ subject: String, payload: [UInt8], headers: [(String, String)] = [],
                                                 replyTo: String? = nil) async throws {
        if loop.inEventLoop {
            if try enqueuePublish(subject, payload, headers, replyTo) { await waitWritable() }
        } else {
            try await publishFromElsewhere(subject, payload, headers, replyTo)
        }
    }

    @usableFromInline
    func publishFromElsewhere(_ subject: String, _ payload: [UInt8], _ headers: [(String, String)], _ replyTo: String?) async throws {
        try await withTaskExecutorPreference(loop) {
            if try self.enqueuePublish(subject, payload, headers, replyTo) { await self.waitWritable() }
        }
    }

    /// On the loop: queues a publish; true if the output is past its mark (the publisher waits).
    @usableFromInline
    func enqueuePublish(_ subject: String, _ payload: [UInt8], _ headers: [(String, String)], _ replyTo: String?) throws -> Bool {
        let limit = maxPayload
        if payload.count > limit {
            throw NATSError(.payloadTooLarge, "a message of \(payload.count) bytes to '\(subject)' exceeds the server's max_payload of \(limit)")
        }
        // `PUB subject [reply] ` is made (and the names checked) once for a run of publishes to the
        // same subject: most publishers publish to a few subjects over and over
        if subject != lineSubject || replyTo != lineReply {
            guard NATSCommand.isValid(subject: subject, wildcards: false) else {
                throw NATSError(.invalidSubject, "'\(subject)' is not a subject one can publish to")
            }
            if let replyTo, !NATSCommand.isValid(subject: replyTo, wildcards: false) {
                throw NATSError(.invalidSubject, "'\(replyTo)' is not a reply subject")
            }
            let prefix = Array("PUB \(subject) \(replyTo.map { $0 + " " } ?? "")".utf8)
            if prefix.count <= Self.lineCapacity - 24 {
                line.update(from: prefix, count: prefix.count)
                linePrefix = prefix.count
                lineSubject = subject
                lineReply = replyTo
                lineSize = -1
            } else {
                linePrefix = 0  // too long for the line buffer: the general path below
                lineSubject = ""
            }
        }
        if headers.isEmpty, linePrefix > 0, status == .connected, let connection {
            // the common case: the control line in the client's line buffer, written with the
            // payload in one call into the connection's output (no buffer joining them)
            // (and `size CRLF` made once for a run of one size)
            if payload.count != lineSize {
                lineLength = linePrefix + NATSCommand.writeSizeLine(payload.count, to: line + linePrefix)
                lineSize = payload.count
            }
            let written = payload.withUnsafeBytes { body in
                connection.write(UnsafeRawBufferPointer(start: line, count: lineLength), body, Self.crlf)
            }
            switch written {
            case .queued: return false
            case .full: return true
            case .closed: break  // closing: its end is on the way (the bytes are held below)
            }
        }
        scratch.removeAll(keepingCapacity: true)
        NATSCommand.publish(subject, replyTo: replyTo, headers: headers, payload: payload, into: &scratch)
        return try send(scratch)
    }

    /// On the loop: writes a command (connected) or holds it (reconnecting); true if the output
    /// is past its mark.
    private func send(_ bytes: [UInt8]) throws -> Bool {
        switch status {
        case .connected:
            guard let connection else { return try hold(bytes) }
            switch connection.write(bytes) {
            case .queued: return false
            case .full: return true
            case .closed: return try hold(bytes)  // its end is on the way: reconnecting
            }
        case .reconnecting, .connecting:
            return try hold(bytes)
        case .closed:
            throw NATSError(.closed, "the NATS client is closed")
        }
    }

    private func hold(_ bytes: [UInt8]) throws -> Bool {
        guard held.count + bytes.count <= options.reconnectBufferSize else {
            throw NATSError(.reconnectBufferFull, "reconnecting to NATS, and the \(options.reconnectBufferSize) bytes held meanwhile are full")
        }
        held.append(contentsOf: bytes)
        return false
    }

    @usableFromInline
    func waitWritable() async {
        await withCheckedContinuation { writableWaiters.append($0) }
    }

    private func wakeWriters() {
        let waiting = writableWaiters
        writableWaiters.removeAll()
        for waiter in waiting { waiter.resume() }
    }

    /// Returns once the server has processed everything sent before (a PING answered), or
    /// throws: the connection broke first (``NATSError/Kind/connectionLost``), or no answer within
    /// `timeout`. While reconnecting, the PING waits with the held publishes and goes after them.
    public func flush(timeout: Duration = .seconds(10)) async throws {
        try await withTaskExecutorPreference(loop) {
            let id = self.nextPongID
            self.nextPongID += 1
            let timer = Task(executorPreference: self.loop) {
                try? await Task.sleep(for: timeout)
                if !Task.isCancelled { self.failPong(id, NATSError(.timeout, "NATS did not answer a flush within \(timeout)")) }
            }
            defer { timer.cancel() }
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                do {
                    switch self.status {
                    case .connected where self.connection != nil:
                        _ = try self.send(Self.ping)
                        self.pongs.append(PongWaiter(id: id, continuation: continuation))
                    default:
                        _ = try self.send(Self.ping)  // held, or throws if closed
                        self.heldPongs.append(PongWaiter(id: id, continuation: continuation))
                    }
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    private func failPong(_ id: UInt64, _ error: NATSError) {
        if let i = pongs.firstIndex(where: { $0.id == id }), let waiting = pongs[i].continuation {
            pongs[i] = PongWaiter(id: id, continuation: nil)  // its PONG still comes: the slot stays
            waiting.resume(throwing: error)
        } else if let i = heldPongs.firstIndex(where: { $0.id == id }), let waiting = heldPongs[i].continuation {
            heldPongs[i] = PongWaiter(id: id, continuation: nil)
            waiting.resume(throwing: error)
        }
    }

    /// Output queued before a publisher waits for the socket to take some. Measured with
    /// Benchmarks/nats' publisher, whose rate is nats-server's (at 100 % of its core either way):
    /// with the connection's default of 1 MiB the loop wrote half a megabyte per call and the
    /// server took 0.86× of nats.go's rate; with 16 to 64 KiB 0.97–1.03×, 32 KiB (nats.go's
    /// buffer) the best of them by a little (119 ns of the server's CPU per message, 121 at 64).
    static let outputMark = 32 * 1024
    private static let ping = Array("PING\r\n".utf8)
    /// CRLF, made once and never freed (read on every publish: no array to retain).
    /// nonisolated(unsafe): written once by the initializer, only read afterwards.
    nonisolated(unsafe) private static let crlf: UnsafeRawBufferPointer = {
        let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: 2, alignment: 1)
        bytes[0] = 0x0D
        bytes[1] = 0x0A
        return UnsafeRawBufferPointer(bytes)
    }()
    private static let pong = Array("PONG\r\n".utf8)

    // MARK: - subscribing

    /// Subscribes to `subject` (wildcards `*` and `>` allowed); with `queue`, the subscriptions
    /// of that group share the messages. The messages come through the returned subscription,
    /// in order; ending its iteration, or ``NATSSubscription/unsubscribe(after:)``, unsubscribes.
    public func subscribe(_ subject: String, queue: String? = nil) async throws -> NATSSubscription {
        try Self.check(subject, queue: queue)
        return try await withTaskExecutorPreference(loop) {
            let (stream, continuation) = AsyncStream.makeStream(of: NATSMessage.self,
                                                                bufferingPolicy: .bufferingOldest(max(1, self.options.subscriptionPendingLimit)))
            let sid = try self.register(Subscription(subject: subject, queue: queue, continuation: continuation, handler: nil))
            let handle = NATSSubscription(client: self, sid: sid, subject: subject, queue: queue, messages: stream)
            continuation.onTermination = { [weak self] _ in
                guard let self else { return }
                self.loop.execute { self.unsubscribeOnLoop(sid, after: nil) }
            }
            return handle
        }
    }

    /// Like ``subscribe(_:queue:)``, with each message handed to `handler` on the client's loop,
    /// as it is read (no buffer: the handler must not block; it may start a task).
    public func subscribe(_ subject: String, queue: String? = nil, handler: @escaping @Sendable (NATSMessage) -> Void) async throws -> UInt64 {
        try Self.check(subject, queue: queue)
        return try await withTaskExecutorPreference(loop) {
            try self.register(Subscription(subject: subject, queue: queue, continuation: nil, handler: handler))
        }
    }

    /// Throws if `subject` (wildcards allowed) or `queue` is no name NATS takes.
    private static func check(_ subject: String, queue: String?) throws {
        guard NATSCommand.isValid(subject: subject, wildcards: true) else {
            throw NATSError(.invalidSubject, "'\(subject)' is not a subject one can subscribe to")
        }
        if let queue, queue.isEmpty || queue.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }) {
            throw NATSError(.invalidSubject, "'\(queue)' is not a queue group name")
        }
    }

    /// On the loop: sends `SUB` for `subscription` under a new id and keeps it; the id.
    private func register(_ subscription: Subscription) throws -> UInt64 {
        let sid = nextSID
        nextSID += 1
        _ = try send(NATSCommand.subscribe(subscription.subject, queue: subscription.queue, sid: sid))
        subscriptions[sid] = subscription
        return sid
    }

    /// Ends subscription `sid` now, or after `max` more messages. From any task.
    public func unsubscribe(_ sid: UInt64, after max: Int? = nil) async {
        await withTaskExecutorPreference(loop) { self.unsubscribeOnLoop(sid, after: max) }
    }

    func unsubscribeOnLoop(_ sid: UInt64, after max: Int?) {
        guard let subscription = subscriptions[sid] else { return }
        if let max, max > subscription.delivered {
            subscription.max = max
            _ = try? send(NATSCommand.unsubscribe(sid: sid, after: max))
            return
        }
        subscriptions[sid] = nil
        subscription.continuation?.finish()
        if status != .closed { _ = try? send(NATSCommand.unsubscribe(sid: sid)) }
    }

    final class Subscription {
        let subject: String
        let queue: String?
        let continuation: AsyncStream<NATSMessage>.Continuation?
        let handler: (@Sendable (NATSMessage) -> Void)?
        var delivered = 0
        var max: Int?
        var dropped = 0

        init(subject: String, queue: String?, continuation: AsyncStream<NATSMessage>.Continuation?, handler: (@Sendable (NATSMessage) -> Void)?) {
            self.subject = subject
            self.queue = queue
            self.continuation = continuation
            self.handler = handler
        }
    }

    // MARK: - request and reply

    /// Publishes `payload` to `subject` with a reply subject of the client's inbox and returns
    /// the first answer; throws ``NATSError/Kind/noResponders`` if nobody subscribes (the server
    /// says so at once) and ``NATSError/Kind/timeout`` after `timeout`.
    public func request(_ subject: String, payload: [UInt8], headers: [(String, String)] = [],
                        timeout: Duration = .seconds(5)) async throws -> NATSMessage {
        guard NATSCommand.isValid(subject: subject, wildcards: false) else {
            throw NATSError(.invalidSubject, "'\(subject)' is not a subject one can publish to")
        }
        return try await withTaskExecutorPreference(loop) {
            if self.inboxSID == nil {
                self.inboxSID = try self.register(Subscription(subject: self.inboxPrefix + ".*", queue: nil, continuation: nil, handler: nil))
            }
            let token = String(self.nextRequest)
            self.nextRequest += 1
            let timer = Task(executorPreference: self.loop) {
                try? await Task.sleep(for: timeout)
                if !Task.isCancelled, let waiting = self.requests.removeValue(forKey: token) {
                    waiting.resume(throwing: NATSError(.timeout, "no answer to a request on '\(subject)' within \(timeout)"))
                }
            }
            defer { timer.cancel() }
            return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<NATSMessage, any Error>) in
                self.requests[token] = continuation
                do {
                    _ = try self.enqueuePublish(subject, payload, headers, self.inboxPrefix + "." + token)
                } catch {
                    self.requests[token] = nil
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    private func answer(_ message: NATSMessage) {
        let token = String(message.subject.dropFirst(inboxPrefix.count + 1))
        guard let waiting = requests.removeValue(forKey: token) else { return }  // late, or timed out
        if message.status == 503 {
            waiting.resume(throwing: NATSError(.noResponders, "no subscriber answers requests on that subject"))
        } else {
            waiting.resume(returning: message)
        }
    }

    // MARK: - events and closing

    /// What happens to the connection from now on (reconnections, server errors, slow
    /// consumers), until the client closes.
    public func events() async -> AsyncStream<NATSEvent> {
        await withTaskExecutorPreference(loop) {
            let (stream, continuation) = AsyncStream.makeStream(of: NATSEvent.self, bufferingPolicy: .bufferingNewest(1024))
            if self.status == .closed {
                continuation.yield(.closed)
                continuation.finish()
                return stream
            }
            let id = self.nextWatcher
            self.nextWatcher += 1
            self.watchers[id] = continuation
            continuation.onTermination = { [weak self] _ in
                guard let self else { return }
                self.loop.execute { self.watchers[id] = nil }
            }
            return stream
        }
    }

    private func tell(_ event: NATSEvent) {
        for watcher in watchers.values { watcher.yield(event) }
    }

    /// The server the client is connected to now (nil while reconnecting).
    public var connectedServer: String? {
        get async { await withTaskExecutorPreference(loop) { self.status == .connected ? self.current?.description : nil } }
    }

    /// Sends what is queued, then closes: subscriptions end, waiting requests and flushes fail.
    public func close() async {
        await withTaskExecutorPreference(loop) {
            guard self.status != .closed else { return }
            self.shut(NATSError(.closed, "the NATS client is closed"))
            if let connection = self.connection, connection.isOpen {
                await withCheckedContinuation { continuation in
                    self.closedWaiters.append(continuation)
                    connection.close(graceful: true)
                }
            }
        }
    }

    /// On the loop: the client ends for good.
    private func shut(_ error: NATSError) {
        status = .closed
        pingTask?.cancel()
        pingTask = nil
        for waiter in pongs.compactMap(\.continuation) + heldPongs.compactMap(\.continuation) { waiter.resume(throwing: error) }
        pongs.removeAll()
        heldPongs.removeAll()
        held.removeAll()
        for (_, waiting) in requests { waiting.resume(throwing: error) }
        requests.removeAll()
        for (_, subscription) in subscriptions { subscription.continuation?.finish() }
        subscriptions.removeAll()
        wakeWriters()
        tell(.closed)
        for watcher in watchers.values { watcher.finish() }
        watchers.removeAll()
    }

    // MARK: - the connection

    /// The connection's side of a TCP connection: tells the client, if it is still the current one.
    /// Weak: a client that failed to connect (or was dropped) goes while its connection's last
    /// callbacks are still on their way.
    private final class Link: TCPConnectionDelegate {
        weak var client: NATSClient?
        let generation: Int

        init(client: NATSClient, generation: Int) {
            self.client = client
            self.generation = generation
        }

        func received(_ bytes: UnsafeRawBufferPointer) {
            guard let client, client.generation == generation else { return }
            client.received(bytes)
        }

        func writable() {
            guard let client, client.generation == generation else { return }
            client.wakeWriters()
        }

        func closed(error: MicroCoreError?) {
            guard let client, client.generation == generation else { return }
            client.lost(error.map(\.message) ?? "the server closed the connection")
        }
    }

    /// On the loop: connects to `server`, reads its INFO, begins TLS if either side wants it,
    /// sends CONNECT and waits for the PONG that confirms it (or the `-ERR` that refuses it).
    private func establish(_ server: NATSServerAddress) async throws {
        generation += 1
        let link = Link(client: self, generation: generation)
        earlyInfo = nil
        earlyError = nil
        closeReason = nil
        parser.reset()
        parser.maxPayload = 64 * 1024 * 1024
        let connection = try await TCPConnection.connect(to: server.host, port: server.port, on: loop,
                                                         options: .init(connectTimeout: options.connectTimeout, highWater: Self.outputMark),
                                                         delegate: link)
        self.connection = connection
        let deadline = Task(executorPreference: loop) { [generation] in
            try? await Task.sleep(for: self.options.connectTimeout)
            if !Task.isCancelled, self.generation == generation, self.status != .connected {
                self.failHandshake(NATSError(.timeout, "\(server) did not complete the NATS handshake within \(self.options.connectTimeout)"))
                connection.close(graceful: false)
            }
        }
        defer { deadline.cancel() }
        do {
            if let error = earlyError { throw error }
            let info: ServerInfo
            if let early = earlyInfo {
                info = early
            } else {
                info = try await withCheckedThrowingContinuation { awaitingInfo = $0 }
            }
            self.info = info
            maxPayload = info.maxPayload
            parser.maxPayload = info.maxPayload
            let wantTLS = server.tls || tls != nil || info.tlsRequired
            if wantTLS {
                guard info.tlsRequired || info.tlsAvailable else { throw NATSError(.server, "\(server) does not offer TLS") }
                try await connection.startTLS(try tls ?? TLSContext(TLSConfig(), server: false), serverName: server.host)
            }
            if let error = earlyError { throw error }
            _ = connection.write(connectCommand(server, tls: wantTLS) + Self.ping)
            try await withCheckedThrowingContinuation { awaitingPong = $0 }
            // what came with the PONG may have ended the connection already
            if let error = earlyError { throw error }
            guard connection.isOpen, self.connection === connection else {
                throw NATSError(.connectionLost, "\(server) closed the connection during the handshake\(closeReason.map { " (\($0))" } ?? "")")
            }
        } catch {
            awaitingInfo = nil
            awaitingPong = nil
            if connection.isOpen { connection.close(graceful: false) }
            self.connection = nil
            generation += 1  // its end is not a lost connection of ours
            throw error
        }
        guard status != .closed else {
            // closed by its owner while this connection was being made
            connection.close(graceful: false)
            self.connection = nil
            throw NATSError(.closed, "the NATS client is closed")
        }
        current = server
        learn(info.connectURLs)
        status = .connected
        pingsOut = 0
        // the subscriptions again, then what was held (its PINGs answered in order)
        var replay: [UInt8] = []
        for (sid, subscription) in subscriptions.sorted(by: { $0.key < $1.key }) {
            replay += NATSCommand.subscribe(subscription.subject, queue: subscription.queue, sid: sid)
            if let max = subscription.max { replay += NATSCommand.unsubscribe(sid: sid, after: max - subscription.delivered) }
        }
        replay += held
        held.removeAll(keepingCapacity: false)
        pongs.append(contentsOf: heldPongs)
        heldPongs.removeAll()
        if !replay.isEmpty { _ = connection.write(replay) }
    }

    private func failHandshake(_ error: any Error) {
        if let waiting = awaitingInfo {
            awaitingInfo = nil
            waiting.resume(throwing: error)
        }
        if let waiting = awaitingPong {
            awaitingPong = nil
            waiting.resume(throwing: error)
        }
    }

    private func connectCommand(_ server: NATSServerAddress, tls: Bool) -> [UInt8] {
        var connect = ConnectFields(tlsRequired: tls, name: options.name)
        if let user = server.user ?? options.user {
            connect.user = user
            connect.pass = server.password ?? options.password ?? ""
        } else if let token = options.token {
            connect.authToken = token
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let json = (try? encoder.encode(connect)) ?? Data("{}".utf8)
        return Array("CONNECT ".utf8) + Array(json) + [0x0D, 0x0A]
    }

    /// CONNECT's JSON: no `+OK` for every command (not verbose), headers and no-responders
    /// answers on, protocol 1 (the server may send INFO updates).
    private struct ConnectFields: Encodable {
        var verbose = false
        var pedantic = false
        var tlsRequired: Bool
        var name: String?
        var lang = "swift"
        var version = "1.0.0"
        var `protocol` = 1
        var headers = true
        var noResponders = true
        var user: String?
        var pass: String?
        var authToken: String?

        enum CodingKeys: String, CodingKey {
            case verbose, pedantic, name, lang, version, `protocol`, headers, user, pass
            case tlsRequired = "tls_required", noResponders = "no_responders", authToken = "auth_token"
        }
    }

    /// Servers the cluster names that the client does not know yet.
    private func learn(_ urls: [String]) {
        for url in urls {
            guard let address = try? NATSServerAddress(url.contains("://") ? url : "nats://" + url) else { continue }
            if !servers.contains(where: { $0.host == address.host && $0.port == address.port }) { servers.append(address) }
        }
    }

    /// On the loop: bytes from the server.
    private func received(_ bytes: UnsafeRawBufferPointer) {
        do {
            try parser.feed(bytes) { operation in self.handle(operation) }
            if let max = maxPayloadUpdate {
                maxPayloadUpdate = nil
                parser.maxPayload = max
            }
        } catch {
            logger.error("NATS: \(current?.description ?? "the server") sent what is not NATS (\(error)); reconnecting")
            closeReason = "it sent what is not NATS: \(error)"
            failHandshake(NATSError(.server, "\(error)"))
            connection?.close(graceful: false)
        }
    }

    private func handle(_ operation: NATSOperation) {
        switch operation {
        case .message(let message):
            deliver(message)
        case .ping:
            _ = connection?.write(Self.pong)
        case .pong:
            if let waiting = awaitingPong {
                awaitingPong = nil
                waiting.resume()
                return
            }
            pingsOut = 0
            if let first = pongs.popFirst() { first.continuation?.resume() }
        case .info(let json):
            let info = ServerInfo(json: json)
            if let waiting = awaitingInfo {
                awaitingInfo = nil
                waiting.resume(returning: info)
            } else if status != .connected && earlyInfo == nil {
                earlyInfo = info  // before the handshake waits for it
            } else {
                self.info = info  // an update (cluster membership, lame duck)
                maxPayload = info.maxPayload
                maxPayloadUpdate = info.maxPayload  // the parser is busy: after this read
                learn(info.connectURLs)
            }
        case .ok:
            break
        case .error(let text):
            if status != .connected {
                let refusal = NATSError(.server, "the server refused: \(text)")
                if awaitingInfo == nil && awaitingPong == nil { earlyError = refusal }
                failHandshake(refusal)
                return
            }
            logger.warning("NATS: the server says: \(text)")
            tell(.serverError(text))
        }
    }

    private func deliver(_ message: NATSMessage) {
        guard let subscription = subscriptions[message.sid] else { return }  // unsubscribed meanwhile
        subscription.delivered += 1
        if message.sid == inboxSID {
            answer(message)
        } else if let handler = subscription.handler {
            handler(message)
        } else if let continuation = subscription.continuation {
            if case .dropped = continuation.yield(message) {
                subscription.dropped += 1
                if subscription.dropped == 1 || subscription.dropped.isMultiple(of: 1000) {
                    logger.warning("NATS: a slow consumer on '\(subscription.subject)': \(subscription.dropped) messages dropped")
                    tell(.slowConsumer(subject: subscription.subject, dropped: subscription.dropped))
                }
            }
        }
        if let max = subscription.max, subscription.delivered >= max {
            subscriptions[message.sid] = nil
            subscription.continuation?.finish()
        }
    }

    /// On the loop: the current connection ended.
    private func lost(_ reason: String) {
        let reason = closeReason ?? reason
        closeReason = nil
        connection = nil
        if status == .closed {
            let waiting = closedWaiters
            closedWaiters.removeAll()
            for waiter in waiting { waiter.resume() }
            return
        }
        if status != .connected {
            failHandshake(NATSError(.connectionLost, reason))
            return
        }
        let server = current?.description ?? "?"
        logger.warning("NATS: lost \(server) (\(reason)); reconnecting")
        status = .reconnecting
        let gone = NATSError(.connectionLost, "the connection to \(server) was lost before the server answered (\(reason))")
        for waiter in pongs.compactMap(\.continuation) { waiter.resume(throwing: gone) }
        pongs.removeAll()
        pingsOut = 0
        wakeWriters()  // they hold their messages from now on
        tell(.disconnected(server, reason: reason))
        Task(executorPreference: loop) { await self.reconnect() }
    }

    /// On the loop: rounds over the servers (the one just lost last) until one takes us again.
    private func reconnect() async {
        var round = 0
        while status == .reconnecting {
            if options.maxReconnectAttempts >= 0 && round >= options.maxReconnectAttempts {
                logger.error("NATS: no server answered in \(round) rounds; giving up")
                shut(NATSError(.closed, "the NATS client gave up reconnecting after \(round) rounds"))
                return
            }
            round += 1
            let lost = current
            let order = servers.filter { $0 != lost } + servers.filter { $0 == lost }
            for server in order where status == .reconnecting {
                do {
                    try await establish(server)
                    logger.info("NATS: reconnected to \(server)")
                    tell(.reconnected(server.description))
                    return
                } catch {
                    logger.debug("NATS: \(server) did not take us: \(error)")
                }
            }
            guard status == .reconnecting else { return }
            let jitter = options.reconnectJitter.components.seconds * 1_000_000_000 + options.reconnectJitter.components.attoseconds / 1_000_000_000
            let wait = options.reconnectWait + .nanoseconds(jitter > 0 ? Int64.random(in: 0...jitter) : 0)
            try? await Task.sleep(for: wait)
        }
    }

    /// The keep-alive: a PING each interval; too many unanswered make the connection stale.
    private func startPinging() {
        pingTask = Task(executorPreference: loop) {
            while !Task.isCancelled {
                try? await Task.sleep(for: self.options.pingInterval)
                guard !Task.isCancelled, self.status == .connected, let connection = self.connection else { continue }
                if self.pingsOut >= self.options.maxPingsOut {
                    self.logger.warning("NATS: \(self.current?.description ?? "the server") left \(self.pingsOut) PINGs unanswered: stale connection")
                    self.closeReason = "stale: \(self.pingsOut) PINGs unanswered"
                    self.pingsOut = 0
                    connection.close(graceful: false)
                    continue
                }
                self.pingsOut += 1
                _ = connection.write(Self.ping)
                self.pongs.append(PongWaiter(id: 0, continuation: nil))
            }
        }
    }

    /// 22 random characters for inbox names.
    static func nuid() -> String {
        let alphabet = Array("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
        var generator = SystemRandomNumberGenerator()
        return String((0..<22).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] })
    }
}

/// A subscription made with ``NATSClient/subscribe(_:queue:)``: its messages, in order.
public struct NATSSubscription: AsyncSequence, Sendable {
    public typealias Element = NATSMessage
    let client: NATSClient
    public let sid: UInt64
    public let subject: String
    public let queue: String?
    let messages: AsyncStream<NATSMessage>

    public func makeAsyncIterator() -> AsyncStream<NATSMessage>.AsyncIterator { messages.makeAsyncIterator() }

    /// Ends the subscription now, or after `max` more messages (`UNSUB sid max`).
    public func unsubscribe(after max: Int? = nil) async {
        await client.unsubscribe(sid, after: max)
    }
}

/// What a server says of itself in INFO.
struct ServerInfo: Sendable {
    var serverID = ""
    var maxPayload = 1024 * 1024
    var tlsRequired = false
    var tlsAvailable = false
    var headers = false
    var connectURLs: [String] = []

    init() {}

    init(json: [UInt8]) {
        guard let fields = try? JSONDecoder().decode(Fields.self, from: Data(json)) else { return }
        serverID = fields.serverID ?? ""
        if let max = fields.maxPayload, max > 0 { maxPayload = max }
        tlsRequired = fields.tlsRequired ?? false
        tlsAvailable = fields.tlsAvailable ?? false
        headers = fields.headers ?? false
        connectURLs = fields.connectURLs ?? []
    }

    private struct Fields: Decodable {
        var serverID: String?
        var maxPayload: Int?
        var tlsRequired: Bool?
        var tlsAvailable: Bool?
        var headers: Bool?
        var connectURLs: [String]?

        enum CodingKeys: String, CodingKey {
            case serverID = "server_id", maxPayload = "max_payload", tlsRequired = "tls_required", tlsAvailable = "tls_available"
            case headers, connectURLs = "connect_urls"
        }
    }
}
