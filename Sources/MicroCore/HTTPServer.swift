public import Logging
import CMicroCore
import Synchronization

/// An HTTP/1.1 and HTTP/2 (h2c) server on the C core, both on one port.
///
/// Each request is handed to `handler` in a task that runs on the loop owning its connection
/// (a pooled worker task: see `RequestWorkers`), and the answer goes back without a thread hop.
///
/// ```swift
/// let server = try HTTPServer(configuration: .init(port: 8080), logger: logger) { request, responder in
///     responder.send(HTTPServerResponse(body: Array("hello".utf8)))
/// }
/// // ...
/// await server.shutdownGracefully(timeout: .seconds(10))
/// ```
public final class HTTPServer: Sendable {
    /// Handles one request. It answers through `responder` (the first answer wins); returning
    /// without one answers 500.
    public typealias Handler = nonisolated(nonsending) @Sendable (HTTPServerRequest, HTTPResponder) async -> Void
    /// Answers a request without suspending, when it can: true if it answered it; false leaves
    /// it to the ``Handler``, which a worker task of the same loop calls later (requests left
    /// here reach it in the order they arrived). It runs in the core's request callback, on the
    /// loop's thread, usually outside any task (on HTTP/1.1, a worker's answer that frees room in
    /// a full pipeline can run it for the requests held back, inside that worker's task): a
    /// request answered here costs no task, no queue and no async call. An answer it did not
    /// send is a 500, as for the handler.
    package typealias Immediate = @Sendable (HTTPServerRequest, HTTPResponder) -> Bool

    /// The bound port.
    public let port: Int
    /// The bound host as configured ("" for every interface).
    public let host: String
    private let context: ServerContext

    /// Binds, listens and starts serving on `group`'s loops.
    ///
    /// - Parameter streams: which HTTP/2 requests are handed over as streams, by path, as soon as
    ///   their headers arrive (their body then comes through ``HTTPServerRequest/bodyStream``).
    ///   Requests with a `micro-stream` header always are. Others arrive with their whole body.
    public convenience init(
        group: EventLoopGroup = .shared,
        configuration: HTTPServerConfiguration = .init(),
        logger: Logger,
        streams: (@Sendable (_ path: String) -> Bool)? = nil,
        handler: @escaping Handler
    ) throws(MicroCoreError) {
        var streamPaths: (@Sendable (UnsafeRawBufferPointer) -> Bool)?
        if let streams {
            streamPaths = { (path: UnsafeRawBufferPointer) -> Bool in streams(String(decoding: path, as: UTF8.self)) }
        }
        try self.init(group: group, configuration: configuration, logger: logger, streamPaths: streamPaths, handler: handler)
    }

    /// The same with the stream predicate given the path's bytes (asked of every request with a
    /// body: no String made for it).
    package init(
        group: EventLoopGroup = .shared,
        configuration: HTTPServerConfiguration = .init(),
        logger: Logger,
        streamPaths streams: (@Sendable (_ path: UnsafeRawBufferPointer) -> Bool)?,
        immediate: Immediate? = nil,
        handler: @escaping Handler
    ) throws(MicroCoreError) {
        guard (0...65535).contains(configuration.port) else {
            throw MicroCoreError(message: "port \(configuration.port) is out of range 0...65535")
        }
        let context = ServerContext(loops: group.loops, logger: logger, streams: streams, immediate: immediate, handler: handler)
        // the server takes its own reference; this one ends with the initializer
        let tls = try configuration.tls.map { config throws(MicroCoreError) in try TLSContext(config, server: true) }
        var config = mc_server_config_t()
        mc_server_config_init(&config)
        config.port = UInt16(configuration.port)
        config.backlog = Int32(clamping: configuration.backlog)
        config.max_header_bytes = max(1024, configuration.maxHeaderBytes)
        config.max_body_bytes = max(0, configuration.maxBodyBytes)
        config.max_concurrent_streams = UInt32(clamping: configuration.maxConcurrentStreams)
        config.max_pipelined = UInt32(clamping: max(1, configuration.maxPipelinedRequests))
        config.max_connections = UInt32(clamping: configuration.maxConnections)
        config.header_timeout_ms = configuration.headerTimeout.milliseconds
        config.idle_timeout_ms = max(configuration.idleTimeout.milliseconds, 1)
        config.read_timeout_ms = configuration.readTimeout.milliseconds
        config.write_timeout_ms = configuration.writeTimeout.milliseconds
        config.max_buffered_body_bytes = max(configuration.maxBufferedBodyBytes, 0)
        config.tls = tls?.pointer
        var callbacks = mc_server_callbacks_t()
        callbacks.ctx = Unmanaged.passRetained(context).toOpaque()
        // the server holds its context until `on_closed`: the per-request callbacks borrow it
        // without a reference count of their own
        callbacks.on_request = { ctx, req in
            Unmanaged<ServerContext>.fromOpaque(ctx!)._withUnsafeGuaranteedRef { $0.handle(req!) }
        }
        callbacks.on_abort = { _, req in
            guard let user = mc_request_user(req) else { return }
            Unmanaged<InFlightRequest>.fromOpaque(user).takeUnretainedValue().peerGone()
        }
        callbacks.is_stream = { ctx, req in
            Unmanaged<ServerContext>.fromOpaque(ctx!)._withUnsafeGuaranteedRef { $0.isStream(req!) } ? 1 : 0
        }
        callbacks.on_body = { _, req, data, len, end in
            guard let user = mc_request_user(req), let body = Unmanaged<InFlightRequest>.fromOpaque(user).takeUnretainedValue().inbound else { return }
            if end != 0 { body.end() } else { body.append(UnsafeRawBufferPointer(start: data, count: len)) }
        }
        callbacks.on_writable = { _, req in
            guard let user = mc_request_user(req) else { return }
            Unmanaged<InFlightRequest>.fromOpaque(user).takeUnretainedValue().writable()
        }
        callbacks.on_deadline = { _, req in
            guard let user = mc_request_user(req) else { return }
            Unmanaged<InFlightRequest>.fromOpaque(user).takeUnretainedValue().deadlinePassed()
        }
        callbacks.on_closed = { ctx in
            Unmanaged<ServerContext>.fromOpaque(ctx!).takeRetainedValue().closed()
        }
        callbacks.on_log = { ctx, level, message in
            Unmanaged<ServerContext>.fromOpaque(ctx!).takeUnretainedValue().log(level: level, message: message!)
        }
        var err = [CChar](repeating: 0, count: 512)
        let server: OpaquePointer? = configuration.host.withCString { host in
            config.host = host
            return group.loops.map { Optional($0.handle) }.withUnsafeBufferPointer { loops in
                mc_server_start(loops.baseAddress, loops.count, &config, &callbacks, &err, err.count)
            }
        }
        guard let server else {
            Unmanaged<ServerContext>.fromOpaque(callbacks.ctx).release()
            throw MicroCoreError(cBuffer: err)
        }
        context.server.withLock { $0 = ServerHandle(pointer: server) }
        self.context = context
        self.port = Int(mc_server_port(server))
        self.host = configuration.host
        self.isTLS = tls != nil
        withExtendedLifetime(tls) {}
    }

    /// Whether every connection is TLS.
    public let isTLS: Bool

    /// What a server has done since it started (for metrics).
    public struct Stats: Sendable, Equatable {
        public init(openConnections: UInt64, accepted: UInt64, acceptBackoffs: UInt64, earlyWrites: UInt64 = 0) {
            self.openConnections = openConnections
            self.accepted = accepted
            self.acceptBackoffs = acceptBackoffs
            self.earlyWrites = earlyWrites
        }

        /// Connections open now.
        public var openConnections: UInt64
        /// Connections accepted.
        public var accepted: UInt64
        /// Temporary accept errors (descriptors or memory exhausted) the listener backed off from.
        public var acceptBackoffs: UInt64
        /// Writes made the moment an answer was given, ahead of the rest of the loop turn: for an
        /// answer given while its request's read is handled, to the last request of that read
        /// (answers to requests that arrived together still leave in one write). Each writes what
        /// the connection had queued then.
        public var earlyWrites: UInt64
    }

    /// The server's counters now (zero once it has closed). Any thread.
    public var stats: Stats {
        var stats = mc_server_stats_t()
        context.withServer { mc_server_stats($0, &stats) }
        return Stats(openConnections: stats.open_connections, accepted: stats.accepted, acceptBackoffs: stats.accept_backoffs,
                     earlyWrites: stats.early_writes)
    }

    /// Applies a new certificate, key or trust bundle to connections accepted from now on;
    /// connections already open finish with what they started with. Reads and checks everything
    /// first: on error nothing changes. A plaintext server cannot become a TLS one. Any thread.
    public func reloadTLS(_ config: TLSConfig) throws(MicroCoreError) {
        guard isTLS else { throw MicroCoreError(message: "the server was started without TLS") }
        let tls = try TLSContext(config, server: true)
        context.withServer { server in _ = mc_server_set_tls(server, tls.pointer) }
    }

    /// Stops accepting, sends GOAWAY on HTTP/2, closes idle connections and lets requests in
    /// flight finish. Returns at once; ``waitUntilClosed()`` waits for the end. Idempotent.
    public func shutdown() {
        context.withServer { mc_server_shutdown($0) }
    }

    /// Closes every connection now; handlers still running see cancellation.
    public func closeConnections() {
        context.withServer { mc_server_close_connections($0) }
    }

    /// Returns once the listener and every connection are closed.
    public func waitUntilClosed() async {
        await context.waitUntilClosed()
    }

    /// Graceful shutdown bounded by `timeout`, after which remaining connections are closed.
    public func shutdownGracefully(timeout: Duration) async {
        shutdown()
        // the wait for the end cannot be cancelled: the timer ends it by closing what is left
        // (a task group would wait for the wait, which a handler that never answers holds up)
        let timer = Task {
            try await Task.sleep(for: timeout)
            self.closeConnections()
        }
        await waitUntilClosed()
        timer.cancel()
    }
}

/// The C server pointer; only passed to thread-safe mc_server_* calls.
struct ServerHandle: @unchecked Sendable {
    let pointer: OpaquePointer
}

/// What the C callbacks reach: the handler, the loops, and the closed state.
final class ServerContext: Sendable {
    let loops: [EventLoop]
    let logger: Logger
    /// Per loop, by index: the tasks that run the handler.
    let workers: [RequestWorkers]
    let streams: (@Sendable (UnsafeRawBufferPointer) -> Bool)?
    let server = Mutex<ServerHandle?>(nil)
    private let state = Mutex<(closed: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    init(loops: [EventLoop], logger: Logger, streams: (@Sendable (UnsafeRawBufferPointer) -> Bool)?, immediate: HTTPServer.Immediate?,
         handler: @escaping HTTPServer.Handler) {
        self.loops = loops
        self.logger = logger
        self.streams = streams
        self.workers = loops.map { RequestWorkers(loop: $0, immediate: immediate, handler: handler) }
    }

    /// On the loop thread, when a request's headers are complete and a body follows.
    func isStream(_ req: OpaquePointer) -> Bool {
        guard streams != nil else { return false }
        var len = 0
        let path = mc_request_path(req, &len)
        return streams!(UnsafeRawBufferPointer(start: len > 0 ? path : nil, count: len))
    }

    func withServer(_ body: (OpaquePointer) -> Void) {
        server.withLock { handle in
            if let handle { body(handle.pointer) }
        }
    }

    /// On the connection's loop thread.
    func handle(_ req: OpaquePointer) {
        let index = Int(mc_loop_index(mc_request_loop(req)))
        let call = InFlightRequest(req, loop: loops[index], streamed: mc_request_is_streaming(req) != 0, paths: workers[index].recentPaths)
        mc_request_set_user(req, Unmanaged.passUnretained(call).toOpaque())
        // answered here, or by a worker of this loop after this callback returns
        workers[index].submit(call)
    }

    /// Any thread, once.
    func closed() {
        for workers in workers { workers.stop() }
        withServer { mc_server_free($0) }
        server.withLock { $0 = nil }
        let waiters = state.withLock { state in
            state.closed = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func waitUntilClosed() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = state.withLock { state in
                if state.closed { return true }
                state.waiters.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }

    func log(level: Int32, message: UnsafePointer<CChar>) {
        let text = String(cString: message)
        switch level {
        case Int32(MC_LOG_ERROR): logger.error("\(text)")
        case Int32(MC_LOG_WARNING): logger.warning("\(text)")
        case Int32(MC_LOG_INFO): logger.info("\(text)")
        default: logger.debug("\(text)")
        }
    }
}

extension HTTPServerResponse {
    static let handlerReturnedWithoutAnswer = HTTPServerResponse(
        status: 500,
        headers: ["content-type": "text/plain"],
        body: Array("the handler returned without an answer\n".utf8)
    )
}
