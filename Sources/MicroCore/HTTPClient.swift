import Logging
import CMicroCore
import Synchronization

/// A complete HTTP/2 response.
public struct HTTPClientResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]
    public var trailers: HTTPHeaders
    /// The body is the one uncompressed gRPC message the answer carried, its prefix taken off
    /// as it was read (a call made with ``HTTPClient/CallFlags/grpcFrame``).
    package var unframed = false

    /// The fields and the body, moved out of the response (no reference counted to copy them,
    /// none to let the response go).
    package consuming func parts() -> (headers: HTTPHeaders, body: [UInt8], trailers: HTTPHeaders) {
        (headers, body, trailers)
    }
}

/// Why a call failed below HTTP. ``neverProcessed`` says whether the server can have seen it:
/// only such calls are safe to retry on another node.
public struct HTTPClientError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// No connection could be made.
        case connect
        /// The request never reached a handler (not sent, refused stream, above a GOAWAY).
        case refused
        /// The connection or stream broke after the request was sent.
        case reset
        /// The response exceeded the size limit.
        case tooLarge
        /// The call was cancelled.
        case cancelled
        /// The deadline passed before the answer came (the stream was reset).
        case timeout
        /// The request cannot be sent as it is (HTTP/1.1 cannot carry a field or the path, or
        /// HTTP/1.1 was asked for over TLS): no server saw it, and none would take it.
        case invalidRequest
    }

    public let kind: Kind
    public let message: String

    static let http1OverTLS = HTTPClientError(kind: .invalidRequest, message: "HTTP/1.1 over TLS is not supported: TLS calls speak HTTP/2")

    public var neverProcessed: Bool { kind == .connect || kind == .refused }
    public var description: String { message }
}

/// HTTP client on the C core: HTTP/2 (h2c by prior knowledge, or over TLS) by default, HTTP/1.1
/// for servers that speak nothing else. Connections are pooled per address and per loop: a call
/// made by a task on a loop uses that loop's connection with no thread hop. HTTP/2 calls share one
/// connection as streams; HTTP/1.1 calls take a connection each (kept alive and reused, at most
/// ``maxHTTP1ConnectionsPerAddress`` per address and loop: calls beyond wait for one).
///
/// ```swift
/// let client = HTTPClient()
/// let response = try await client.request(address: "127.0.0.1:8080", path: "/", headers: [:], body: [])
/// ```
public final class HTTPClient: Sendable {
    let group: EventLoopGroup
    let pools: [ConnectionPool]
    /// TLS: the configuration, and its context once built (lazily, at the first TLS call).
    private let tls: Mutex<(config: TLSConfig?, context: TLSContext?)>

    /// The HTTP a call speaks.
    public enum Version: Sendable, Hashable {
        /// HTTP/1.1, plaintext, one call at a time per connection (go-micro's HTTP transport and
        /// broker speak nothing else).
        case http1_1
        /// HTTP/2: h2c by prior knowledge, or over TLS (ALPN h2).
        case http2
    }

    /// HTTP/1.1 connections a loop opens to one address at most; calls beyond wait for one.
    public static let maxHTTP1ConnectionsPerAddress = 64

    /// What a TLS call checks of the server.
    public struct TLSTarget: Sendable, Hashable {
        /// The identity (spiffe:// ID or CN) the server's certificate must carry; nil: the
        /// certificate must name the host dialled.
        public var expectedIdentity: String?
        /// SNI (default: the host dialled).
        public var serverName: String?

        public init(expectedIdentity: String? = nil, serverName: String? = nil) {
            self.expectedIdentity = expectedIdentity
            self.serverName = serverName
        }
    }

    /// - Parameters:
    ///   - maxResponseBytes: larger responses fail with ``HTTPClientError/Kind/tooLarge``.
    ///   - tls: the certificate this client presents (mutual TLS) and the roots it trusts, for
    ///     calls made with a ``TLSTarget``; nil: no client certificate, the system's roots.
    public init(group: EventLoopGroup = .shared, maxResponseBytes: Int = 64 * 1024 * 1024, tls: TLSConfig? = nil) {
        self.group = group
        self.pools = group.loops.map { ConnectionPool(loop: $0, maxResponseBytes: maxResponseBytes) }
        self.tls = Mutex((tls, nil))
    }

    /// Replaces the client's certificate or trust roots for connections made from now on
    /// (pooled connections keep theirs until they close). Throws, changing nothing, if the
    /// configuration does not load. Any thread.
    public func reloadTLS(_ config: TLSConfig) throws(MicroCoreError) {
        let context = try TLSContext(config, server: false)
        tls.withLock { $0 = (config, context) }
    }

    /// The client context, built at first use.
    func tlsContext() throws(HTTPClientError) -> TLSContext {
        let result: Result<TLSContext, MicroCoreError> = tls.withLock { state in
            if let context = state.context { return .success(context) }
            do {
                let context = try TLSContext(state.config ?? TLSConfig(), server: false)
                state.context = context
                return .success(context)
            } catch let error as MicroCoreError {
                return .failure(error)
            } catch {
                return .failure(MicroCoreError(message: "\(error)"))
            }
        }
        switch result {
        case .success(let context): return context
        case .failure(let error): throw HTTPClientError(kind: .connect, message: "TLS configuration: \(error.message)")
        }
    }

    /// Sends one request to `address` (`host:port`) and returns the whole response.
    /// Cancelling the calling task resets the stream; so does passing `deadline` (then the call
    /// fails with ``HTTPClientError/Kind/timeout``, within a few milliseconds of it). Over
    /// HTTP/1.1 (`version`), which cannot reset one call, both close the call's connection.
    public nonisolated(nonsending) func request(
        address: String,
        method: String = "POST",
        path: String,
        headers: HTTPHeaders,
        body: [UInt8],
        deadline: ContinuousClock.Instant? = nil,
        tls: TLSTarget? = nil,
        version: Version = .http2
    ) async throws(HTTPClientError) -> HTTPClientResponse {
        try await request(address: address, method: method, path: path, headers: headers, body: body,
                          timeoutMilliseconds: deadline.map { max($0.millisecondsFromNow, 1) } ?? 0, tls: tls, version: version)
    }

    /// What the core adds to a call on its way out, so that a caller can send headers made once
    /// (``HTTPHeaders/frozen()``) and a body it did not copy.
    package struct CallFlags: OptionSet, Sendable {
        package let rawValue: UInt32
        package init(rawValue: UInt32) { self.rawValue = rawValue }
        /// The deadline (the call's timeout) in a `grpc-timeout` header, in milliseconds.
        package static let grpcTimeout = CallFlags(rawValue: UInt32(MC_CALL_GRPC_TIMEOUT))
        /// The deadline in a `timeout` header, in nanoseconds (go-micro's).
        package static let microTimeout = CallFlags(rawValue: UInt32(MC_CALL_MICRO_TIMEOUT))
        /// The body is one uncompressed gRPC message: the core writes its prefix (HTTP/2 only).
        package static let grpcFrame = CallFlags(rawValue: UInt32(MC_CALL_GRPC_FRAME))
    }

    /// ``request(address:method:path:headers:body:deadline:tls:)`` with the deadline as
    /// milliseconds from now (0: none), which a caller that read the clock already knows, and
    /// what the core adds to the call (`flags`).
    package nonisolated(nonsending) func request(
        address: String,
        method: String = "POST",
        path: String,
        headers: HTTPHeaders,
        body: [UInt8],
        timeoutMilliseconds timeout: UInt64,
        flags: CallFlags = [],
        tls: TLSTarget? = nil,
        version: Version = .http2
    ) async throws(HTTPClientError) -> HTTPClientResponse {
        if version == .http1_1 && tls != nil { throw HTTPClientError.http1OverTLS }
        let secure = try tls.map { target throws(HTTPClientError) in SecureTarget(target: target, context: try tlsContext()) }
        let current = EventLoop.current
        let loop = current.flatMap { current in group.loops.first { $0 === current } } ?? group.next()
        let pool = pools[loop.index]
        // A task that already prefers this loop (a handler, a load generator worker) needs no
        // preference pushed: that costs a status record and task switches, a third of a call.
        // Only when not isolated to an actor: the call's steps then run where this function
        // does, the loop, even after a suspension (an actor's code may resume elsewhere).
        if current === loop, Self.isolatedToNothing(),
           withUnsafeCurrentTask(body: { $0?.unownedTaskExecutor == UnownedTaskExecutor(ordinary: loop) }) {
            return try await Self.perform(pool, address, method, path, headers, body, timeout, flags, secure, version)
        }
        // isolated to nothing: the steps run on the loop the preference names
        let result: Result<HTTPClientResponse, HTTPClientError> = await withTaskExecutorPreference(loop, isolation: nil) {
            do {
                return .success(try await Self.perform(pool, address, method, path, headers, body, timeout, flags, secure, version))
            } catch let error as HTTPClientError {
                return .failure(error)
            } catch {
                return .failure(HTTPClientError(kind: .reset, message: "\(error)"))
            }
        }
        return try result.get()
    }

    /// True when the caller is isolated to no actor. (`#isolation` read in a `nonsending`
    /// function's own body crashes Swift 6.3's optimizer; as a default argument it does not.)
    @inline(__always)
    private static func isolatedToNothing(_ isolation: isolated (any Actor)? = #isolation) -> Bool {
        isolation == nil
    }

    /// Not isolated to an actor's executor and on `pool`'s loop (both of ``request``'s paths see to it):
    /// `nonsending` keeps it, and what it awaits, there without an executor check after each step.
    private nonisolated(nonsending) static func perform(
        _ pool: ConnectionPool,
        _ address: String,
        _ method: String,
        _ path: String,
        _ headers: HTTPHeaders,
        _ body: [UInt8],
        _ timeout: UInt64,
        _ flags: CallFlags,
        _ tls: SecureTarget?,
        _ version: Version
    ) async throws(HTTPClientError) -> HTTPClientResponse {
        if version == .http1_1 {
            // a connection of its own for the call, back to the pool after it. An idle connection
            // whose server closed it meanwhile refuses the call before sending it (the core looks
            // for the EOF first): then a fresh one takes it, once.
            var refusals = 0
            while true {
                let connection = try await pool.lease(address)
                defer { pool.giveBack(connection) }
                do {
                    return try await connection.call(method: method, path: path, headers: headers, body: body, timeoutMilliseconds: timeout,
                                                     flags: flags)
                } catch where error.kind == .refused && refusals == 0 {
                    refusals += 1
                }
            }
        }
        let connection = try await pool.connection(to: address, tls: tls)
        return try await connection.call(method: method, path: path, headers: headers, body: body, timeoutMilliseconds: timeout, flags: flags)
    }

    /// Closes every pooled connection; calls in flight fail.
    public func close() async {
        for pool in pools {
            await withTaskExecutorPreference(pool.loop) { pool.closeAll() }
        }
    }
}

/// The connections of one loop, by address.
///
/// @unchecked Sendable: every member is only touched on `loop`'s thread (callers hop there first;
/// C callbacks arrive there).
final class ConnectionPool: @unchecked Sendable {
    let loop: EventLoop
    let maxResponseBytes: Int
    /// HTTP/2: one connection per key, shared by every call.
    private var connections: [String: ClientConnection] = [:]
    /// HTTP/1.1: the connections to each address, a call on each.
    private var http1: [String: HTTP1Connections] = [:]

    init(loop: EventLoop, maxResponseBytes: Int) {
        self.loop = loop
        self.maxResponseBytes = maxResponseBytes
    }

    /// An HTTP/1.1 connection to `address` for one call: an idle one, a new one while fewer than
    /// the limit are open, else the next one given back.
    nonisolated(nonsending) func lease(_ address: String) async throws(HTTPClientError) -> ClientConnection {
        precondition(loop.inEventLoop)
        let (host, port) = try Self.split(address)
        let set: HTTP1Connections
        if let existing = http1[address] {
            set = existing
        } else {
            set = HTTP1Connections()
            http1[address] = set
        }
        while true {
            while let idle = set.idle.popLast() {
                if idle.acceptsCalls { return idle }
                idle.close()  // its peer went away while it was idle: counted out when it closes
            }
            if set.open < HTTPClient.maxHTTP1ConnectionsPerAddress {
                let connection = ClientConnection(pool: self, address: address, key: address, http1: set)
                set.open += 1
                connection.connect(host: host, port: port, maxResponseBytes: maxResponseBytes)
                try await connection.ready()
                return connection
            }
            await withCheckedContinuation { set.waiters.append($0) }
        }
    }

    /// A new HTTP/1.1 connection to `address` outside the pool (a go-micro stream takes one for
    /// good); the caller closes it.
    func dedicatedHTTP1(to address: String) async throws(HTTPClientError) -> ClientConnection {
        precondition(loop.inEventLoop)
        let (host, port) = try Self.split(address)
        let connection = ClientConnection(pool: self, address: address, key: "stream|\(address)", speaksHTTP1: true)
        connection.connect(host: host, port: port, maxResponseBytes: maxResponseBytes)
        try await connection.ready()
        return connection
    }

    /// An HTTP/1.1 connection's call is over: it waits for the next (unless its server ended it,
    /// or enough wait already), and a caller waiting for a connection tries again.
    func giveBack(_ connection: ClientConnection) {
        guard let set = connection.http1 else { return }
        if connection.acceptsCalls {
            if set.idle.count < Self.maxIdleHTTP1 { set.idle.append(connection) } else { connection.close() }
        }
        set.wakeOne()
    }

    /// HTTP/1.1 connections kept idle per address and loop; more are closed when given back.
    static let maxIdleHTTP1 = 16

    /// TLS connections are pooled apart, by what they check of the server and with which client
    /// context (a reload makes new connections).
    private static func key(_ address: String, _ tls: SecureTarget?) -> String {
        tls.map { "tls|\(ObjectIdentifier($0.context).hashValue)|\($0.target.expectedIdentity ?? "")|\($0.target.serverName ?? "")|\(address)" } ?? address
    }

    nonisolated(nonsending) func connection(to address: String, tls: SecureTarget? = nil) async throws(HTTPClientError) -> ClientConnection {
        precondition(loop.inEventLoop)
        let key = Self.key(address, tls)
        if let existing = connections[key], existing.acceptsCalls {
            if !existing.isReady { try await existing.ready() }
            return existing
        }
        let (host, port) = try Self.split(address)
        let connection = ClientConnection(pool: self, address: address, key: key)
        connections[key] = connection
        connection.connect(host: host, port: port, maxResponseBytes: maxResponseBytes, tls: tls)
        try await connection.ready()
        return connection
    }

    func forget(_ connection: ClientConnection) {
        if let set = connection.http1 {
            // counted out once (a failed connect is followed by its close)
            guard !connection.forgotten else { return }
            connection.forgotten = true
            set.open -= 1
            set.idle.removeAll { $0 === connection }
            set.wakeOne()
            if set.open == 0 && set.waiters.isEmpty && http1[connection.address] === set { http1[connection.address] = nil }
            return
        }
        if connections[connection.key] === connection { connections[connection.key] = nil }
    }

    func closeAll() {
        let all = connections.values
        connections = [:]
        for connection in all { connection.close() }
        for set in http1.values {
            for connection in set.idle { connection.close() }
        }
    }

    static func split(_ address: String) throws(HTTPClientError) -> (String, UInt16) {
        guard let colon = address.lastIndex(of: ":"), let port = UInt16(address[address.index(after: colon)...]) else {
            throw HTTPClientError(kind: .connect, message: "invalid address '\(address)': expected host:port")
        }
        var host = String(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.isEmpty || host == "::" || host == "0.0.0.0" { host = "127.0.0.1" }
        return (host, port)
    }
}

/// The HTTP/1.1 connections of one loop to one address. Loop-confined like its pool.
final class HTTP1Connections {
    /// Connected and waiting for a call (the most recently used last).
    var idle: [ClientConnection] = []
    /// Connections counted against the limit: connecting, busy or idle.
    var open = 0
    /// Callers waiting for a connection to be given back or to close.
    var waiters: [CheckedContinuation<Void, Never>] = []

    func wakeOne() {
        if !waiters.isEmpty { waiters.removeFirst().resume() }
    }
}

/// A TLS call's target and the client context it connects with.
struct SecureTarget: Sendable {
    let target: HTTPClient.TLSTarget
    let context: TLSContext
}

/// One connection and its C counterpart. Loop-confined like its pool (@unchecked Sendable).
final class ClientConnection: @unchecked Sendable {
    enum State {
        case connecting([CheckedContinuation<Void, any Error>])
        case ready
        case failed(HTTPClientError)
    }

    let pool: ConnectionPool  // strong: C callbacks can outlive the client; the pool forgets closed connections
    let address: String
    /// The pool's key: the address, plus the TLS target for TLS connections.
    let key: String
    private(set) var handle: OpaquePointer?
    private var state: State = .connecting([])
    private var goaway = false
    /// HTTP/1.1: the pool's connections to this address (nil: HTTP/2).
    let http1: HTTP1Connections?
    /// HTTP/1.1: the pool has counted this connection out.
    var forgotten = false

    /// HTTP/1.1: pooled (in `http1`) or a stream's own.
    let speaksHTTP1: Bool

    init(pool: ConnectionPool, address: String, key: String, http1: HTTP1Connections? = nil, speaksHTTP1: Bool = false) {
        self.pool = pool
        self.address = address
        self.key = key
        self.http1 = http1
        self.speaksHTTP1 = speaksHTTP1 || http1 != nil
    }

    var acceptsCalls: Bool {
        switch state {
        case .failed: return false
        case .connecting: return true
        case .ready: return !goaway && handle.map { mc_client_usable($0) != 0 } ?? false
        }
    }

    func connect(host: String, port: UInt16, maxResponseBytes: Int, tls: SecureTarget? = nil) {
        var callbacks = mc_client_callbacks_t()
        callbacks.ctx = Unmanaged.passRetained(self).toOpaque()  // released in on_closed
        callbacks.on_connected = { ctx, error, message in
            let connection = Unmanaged<ClientConnection>.fromOpaque(ctx!).takeUnretainedValue()
            connection.connected(error: error, message: message.map { String(cString: $0) } ?? "")
        }
        callbacks.on_goaway = { ctx in
            let connection = Unmanaged<ClientConnection>.fromOpaque(ctx!).takeUnretainedValue()
            connection.goaway = true
            connection.pool.forget(connection)
        }
        callbacks.on_closed = { ctx in
            let connection = Unmanaged<ClientConnection>.fromOpaque(ctx!).takeRetainedValue()
            connection.handle = nil
            connection.connected(error: -1, message: "connection to \(connection.address) closed")
            connection.pool.forget(connection)
        }
        if let tls {
            handle = host.withCString { hostPointer in
                (tls.target.serverName ?? "").withCString { name in
                    (tls.target.expectedIdentity ?? "").withCString { expected in
                        mc_client_connect_tls(pool.loop.handle, hostPointer, port, maxResponseBytes, &callbacks, tls.context.pointer,
                                              tls.target.serverName == nil ? nil : name,
                                              tls.target.expectedIdentity == nil ? nil : expected)
                    }
                }
            }
        } else if speaksHTTP1 {
            handle = host.withCString { mc_client_connect_http1(pool.loop.handle, $0, port, maxResponseBytes, &callbacks) }
        } else {
            handle = host.withCString { mc_client_connect(pool.loop.handle, $0, port, maxResponseBytes, &callbacks) }
        }
        if handle == nil {
            Unmanaged<ClientConnection>.fromOpaque(callbacks.ctx).release()
            connected(error: -1, message: "cannot create a connection to \(address)")
        }
    }

    private func connected(error: Int32, message: String) {
        guard case .connecting(let waiters) = state else {
            if error != 0, case .ready = state { state = .failed(HTTPClientError(kind: .reset, message: message)) }
            return
        }
        if error == 0 {
            state = .ready
            for waiter in waiters { waiter.resume() }
        } else {
            let failure = HTTPClientError(kind: .connect, message: message)
            state = .failed(failure)
            pool.forget(self)
            for waiter in waiters { waiter.resume(throwing: failure) }
        }
    }

    /// Waits until connected. State is read inside the continuation's closure, which runs on the
    /// loop without a suspension point: two waiters can never both see the same old list.
    /// Connected: calls go out at once.
    var isReady: Bool {
        if case .ready = state { return true }
        return false
    }

    nonisolated(nonsending) func ready() async throws(HTTPClientError) {
        if case .ready = state { return }
        do {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                switch state {
                case .ready: continuation.resume()
                case .failed(let error): continuation.resume(throwing: error)
                case .connecting(var waiters):
                    waiters.append(continuation)
                    state = .connecting(waiters)
                }
            }
        } catch {
            throw (error as? HTTPClientError) ?? HTTPClientError(kind: .connect, message: "\(error)")
        }
    }

    func close() {
        if let handle { mc_client_close(handle) }
    }

    nonisolated(nonsending) func call(
        method: String, path: String, headers: HTTPHeaders, body: [UInt8], timeoutMilliseconds timeout: UInt64,
        flags: HTTPClient.CallFlags = []
    ) async throws(HTTPClientError) -> HTTPClientResponse {
        let call = PendingCall(loop: pool.loop, grpc: flags.contains(.grpcFrame))
        // the core's wheel times the call out (0: no deadline). The handler is registered with
        // the variant that inherits the caller's executor: this function runs on the loop and
        // stays there, and `withTaskCancellationHandler(isolation:)` checks the executor on
        // entry and again on exit, each check a lock of the task's status records (two of the
        // five a gateway call took, ~3 % of its CPU together). Same registration, same handler.
        let result: Result<HTTPClientResponse, HTTPClientError> = await _unsafeInheritExecutor_withTaskCancellationHandler {
            await withOnceContinuation { continuation in
                // checked here, with no suspension before the C call: the connection may have
                // closed while this task was on its way
                assert(pool.loop.inEventLoop, "a call's C steps run on its connection's loop")
                guard let handle, self.acceptsCalls else {
                    continuation.resume(returning: .failure(HTTPClientError(kind: .refused, message: "connection to \(self.address) cannot take calls")))
                    return
                }
                call.client = handle
                call.continuation = continuation
                var streamID: Int32 = 0
                let ctx = Unmanaged.passRetained(call).toOpaque()
                let rc = headers.withCHeaders { h, nh in
                    body.withUnsafeBufferPointer { b in
                        method.withCString { m in
                            path.withCString { p in
                                mc_client_call(handle, m, p, h, nh, b.baseAddress, b.count, timeout, flags.rawValue, { ctx, result, response in
                                    Unmanaged<PendingCall>.fromOpaque(ctx!).takeRetainedValue().finish(result, response)
                                }, ctx, &streamID)
                            }
                        }
                    }
                }
                if rc != 0 {
                    Unmanaged<PendingCall>.fromOpaque(ctx).release()
                    call.continuation = nil
                    continuation.resume(returning: .failure(rc == -2
                        ? HTTPClientError(kind: .invalidRequest, message: "HTTP/1.1 cannot carry the request to \(address): its method, path or a header field has bytes it does not allow")
                        : HTTPClientError(kind: .refused, message: "connection to \(address) cannot take calls")))
                    return
                }
                call.streamID = streamID
                if call.cancelRequested { call.cancel() }
            }
        } onCancel: {
            call.loop.execute { call.cancel() }
        }
        return try result.get()
    }
}

extension HTTPClientError {
    /// How a call that ended with C result `result` failed (nil: it did not). `client`, while
    /// still valid, may say why a connection broke (the server refused our certificate, or
    /// serves TLS only).
    static func from(result: Int32, client: OpaquePointer? = nil) -> HTTPClientError? {
        switch Int(result) {
        case Int(MC_CALL_OK):
            return nil
        case Int(MC_CALL_REFUSED):
            return HTTPClientError(kind: .refused, message: "the server did not process the call")
        case Int(MC_CALL_TOO_LARGE):
            return HTTPClientError(kind: .tooLarge, message: "the response exceeds the size limit")
        case Int(MC_CALL_FIELDS_TOO_LARGE):
            return HTTPClientError(kind: .tooLarge, message: "the response's header fields exceed \(MC_CLIENT_MAX_FIELD_BYTES / 1024) KiB")
        case Int(MC_CALL_TIMEOUT):
            return HTTPClientError(kind: .timeout, message: "no answer before the deadline")
        case Int(MC_CALL_CANCELLED):
            return HTTPClientError(kind: .cancelled, message: "the call was cancelled")
        default:
            let why = client.map { String(cString: mc_client_error($0)) } ?? ""
            return HTTPClientError(kind: .reset, message: "the connection broke during the call" + (why.isEmpty ? "" : ": \(why)"))
        }
    }
}

/// A call between submission and its C completion. Loop-confined (@unchecked Sendable).
final class PendingCall: @unchecked Sendable {
    let loop: EventLoop
    /// Valid while `continuation` is set: a connection completes every call before it is freed.
    var client: OpaquePointer?
    var continuation: OnceContinuation<Result<HTTPClientResponse, HTTPClientError>>?
    var streamID: Int32 = 0
    var cancelRequested = false
    /// A gRPC call's: a one-message answer's prefix is taken off as its body is read.
    let grpc: Bool

    init(loop: EventLoop, grpc: Bool = false) {
        self.loop = loop
        self.grpc = grpc
    }

    func cancel() {
        cancelRequested = true
        guard continuation != nil, let client, streamID > 0 else { return }
        mc_client_cancel(client, streamID)
    }

    func finish(_ result: Int32, _ response: OpaquePointer?) {
        guard let continuation else { return }
        self.continuation = nil
        if let error = HTTPClientError.from(result: result, client: client) {
            continuation.resume(returning: .failure(error))
        } else {
            continuation.resume(returning: .success(Self.read(response!, grpc: grpc)))
        }
    }

    static func read(_ response: OpaquePointer, grpc: Bool = false) -> HTTPClientResponse {
        let count = mc_request_header_count(response)
        let split = min(mc_request_trailer_index(response), count)
        let headers = HTTPHeaders(copying: response, 0..<split), trailers = HTTPHeaders(copying: response, split..<count)
        let status = Int(mc_request_status(response))
        var len = 0
        guard let body = mc_request_body(response, &len), len > 0 else {
            return HTTPClientResponse(status: status, headers: headers, body: [], trailers: trailers)
        }
        // a gRPC answer's one message copied without its prefix (copied once, not twice)
        if grpc && status == 200 && GRPCPrefix.isOneUncompressedMessage(body, len) {
            return HTTPClientResponse(status: status, headers: headers,
                                      body: Array(UnsafeBufferPointer(start: body + GRPCPrefix.count, count: len - GRPCPrefix.count)),
                                      trailers: trailers, unframed: true)
        }
        return HTTPClientResponse(status: status, headers: headers, body: Array(UnsafeBufferPointer(start: body, count: len)),
                                  trailers: trailers)
    }
}
