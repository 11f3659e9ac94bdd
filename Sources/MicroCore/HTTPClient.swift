import Logging
import CMicroCore
import Synchronization

/// A complete HTTP/2 response.
public struct HTTPClientResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]
    public var trailers: HTTPHeaders
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
    }

    public let kind: Kind
    public let message: String

    public var neverProcessed: Bool { kind == .connect || kind == .refused }
    public var description: String { message }
}

/// HTTP/2 (h2c) client on the C core. Connections are pooled per address and per loop: a call made
/// by a task on a loop uses that loop's connection with no thread hop; many calls share one
/// connection as streams.
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
    /// fails with ``HTTPClientError/Kind/timeout``, within a few milliseconds of it).
    public func request(
        address: String,
        method: String = "POST",
        path: String,
        headers: HTTPHeaders,
        body: [UInt8],
        deadline: ContinuousClock.Instant? = nil,
        tls: TLSTarget? = nil
    ) async throws(HTTPClientError) -> HTTPClientResponse {
        try await request(address: address, method: method, path: path, headers: headers, body: body,
                          timeoutMilliseconds: deadline.map { max($0.millisecondsFromNow, 1) } ?? 0, tls: tls)
    }

    /// ``request(address:method:path:headers:body:deadline:tls:)`` with the deadline as
    /// milliseconds from now (0: none), which a caller that read the clock already knows.
    package func request(
        address: String,
        method: String = "POST",
        path: String,
        headers: HTTPHeaders,
        body: [UInt8],
        timeoutMilliseconds timeout: UInt64,
        tls: TLSTarget? = nil
    ) async throws(HTTPClientError) -> HTTPClientResponse {
        let secure = try tls.map { target throws(HTTPClientError) in SecureTarget(target: target, context: try tlsContext()) }
        let current = EventLoop.current
        let loop = current.flatMap { current in group.loops.first { $0 === current } } ?? group.next()
        let pool = pools[loop.index]
        // A task that already prefers this loop (a handler, a load generator worker) needs no
        // preference pushed: that costs a status record and task switches, a third of a call.
        if current === loop, withUnsafeCurrentTask(body: { $0?.unownedTaskExecutor == UnownedTaskExecutor(ordinary: loop) }) {
            return try await Self.perform(pool, address, method, path, headers, body, timeout, secure)
        }
        let result: Result<HTTPClientResponse, HTTPClientError> = await withTaskExecutorPreference(loop) {
            do {
                return .success(try await Self.perform(pool, address, method, path, headers, body, timeout, secure))
            } catch let error as HTTPClientError {
                return .failure(error)
            } catch {
                return .failure(HTTPClientError(kind: .reset, message: "\(error)"))
            }
        }
        return try result.get()
    }

    private static func perform(
        _ pool: ConnectionPool,
        _ address: String,
        _ method: String,
        _ path: String,
        _ headers: HTTPHeaders,
        _ body: [UInt8],
        _ timeout: UInt64,
        _ tls: SecureTarget?
    ) async throws(HTTPClientError) -> HTTPClientResponse {
        let connection = try await pool.connection(to: address, tls: tls)
        return try await connection.call(method: method, path: path, headers: headers, body: body, timeoutMilliseconds: timeout)
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
    private var connections: [String: ClientConnection] = [:]

    init(loop: EventLoop, maxResponseBytes: Int) {
        self.loop = loop
        self.maxResponseBytes = maxResponseBytes
    }

    func connection(to address: String, tls: SecureTarget? = nil) async throws(HTTPClientError) -> ClientConnection {
        precondition(loop.inEventLoop)
        // TLS connections are pooled apart, by what they check of the server and with which
        // client context (a reload makes new connections)
        let key = tls.map { "tls|\(ObjectIdentifier($0.context).hashValue)|\($0.target.expectedIdentity ?? "")|\($0.target.serverName ?? "")|\(address)" } ?? address
        if let existing = connections[key], existing.acceptsCalls {
            try await existing.ready()
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
        if connections[connection.key] === connection { connections[connection.key] = nil }
    }

    func closeAll() {
        let all = connections.values
        connections = [:]
        for connection in all { connection.close() }
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

    init(pool: ConnectionPool, address: String, key: String) {
        self.pool = pool
        self.address = address
        self.key = key
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
    func ready() async throws(HTTPClientError) {
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

    func call(
        method: String, path: String, headers: HTTPHeaders, body: [UInt8], timeoutMilliseconds timeout: UInt64
    ) async throws(HTTPClientError) -> HTTPClientResponse {
        let call = PendingCall(loop: pool.loop)
        // the core's wheel times the call out (0: no deadline)
        let result: Result<HTTPClientResponse, HTTPClientError> = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                // checked here, with no suspension before the C call: the connection may have
                // closed while this task was on its way
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
                                mc_client_call(handle, m, p, h, nh, b.baseAddress, b.count, timeout, { ctx, result, response in
                                    Unmanaged<PendingCall>.fromOpaque(ctx!).takeRetainedValue().finish(result, response)
                                }, ctx, &streamID)
                            }
                        }
                    }
                }
                if rc != 0 {
                    Unmanaged<PendingCall>.fromOpaque(ctx).release()
                    call.continuation = nil
                    continuation.resume(returning: .failure(HTTPClientError(kind: .refused, message: "connection to \(address) cannot take calls")))
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
    var continuation: CheckedContinuation<Result<HTTPClientResponse, HTTPClientError>, Never>?
    var streamID: Int32 = 0
    var cancelRequested = false

    init(loop: EventLoop) {
        self.loop = loop
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
            continuation.resume(returning: .success(Self.read(response!)))
        }
    }

    /// The fields of a response in `range` (headers before the trailer index, trailers after).
    static func fields(_ response: OpaquePointer, _ range: Range<Int>) -> HTTPHeaders {
        HTTPHeaders(wire: WireHeaders.copy(response, range))
    }

    static func read(_ response: OpaquePointer) -> HTTPClientResponse {
        let count = mc_request_header_count(response)
        let split = min(mc_request_trailer_index(response), count)
        let headers = fields(response, 0..<split), trailers = fields(response, split..<count)
        var len = 0
        let body = mc_request_body(response, &len)
        return HTTPClientResponse(
            status: Int(mc_request_status(response)),
            headers: headers,
            body: len > 0 ? Array(UnsafeBufferPointer(start: body, count: len)) : [],
            trailers: trailers
        )
    }
}
