import DequeModule
import Logging
import SwiftProtobuf
import MicroCore
import Synchronization

/// A registered endpoint: decodes, calls the handler, encodes. A class: the router hands out a
/// reference per request, not a copy of its description.
final class EndpointHandler: Sendable {
    typealias Call = nonisolated(nonsending) @Sendable (_ body: [UInt8], _ codec: any Codec, _ context: Context) async throws -> [UInt8]
    typealias BytesCall = nonisolated(nonsending) @Sendable (_ body: [UInt8], _ context: Context) async throws -> [UInt8]
    typealias SyncCall = @Sendable (_ body: [UInt8], _ codec: any Codec, _ context: Context) throws -> [UInt8]
    typealias SyncBytesCall = @Sendable (_ body: [UInt8], _ context: Context) throws -> [UInt8]
    let name: String
    /// What the registry publishes.
    let description: Endpoint
    let call: Call
    /// Set for streaming endpoints (then `call` is not used).
    let streaming: StreamingHandler?
    /// What its calls' contexts share; set when a router registers it.
    let origin: Context.Origin?
    /// The handler itself, for a handler of raw bytes in and out: with a codec that carries
    /// bytes unchanged it is called directly, without `call`'s decode and encode around it.
    let bytes: BytesCall?
    /// Its calls' count and duration; nil while metrics are off.
    let metrics: EndpointMetrics?
    /// For a synchronous handler: what `call` does, without an async call (the router runs it
    /// in its own frame when no interceptor needs to wrap it).
    let sync: SyncCall?
    /// For a synchronous handler of raw bytes: the handler itself (as `bytes`).
    let syncBytes: SyncBytesCall?

    init(name: String, description: Endpoint, streaming: StreamingHandler? = nil, origin: Context.Origin? = nil,
         bytes: BytesCall? = nil, metrics: EndpointMetrics? = nil, sync: SyncCall? = nil, syncBytes: SyncBytesCall? = nil,
         call: @escaping Call) {
        self.metrics = metrics
        self.sync = sync
        self.syncBytes = syncBytes
        self.name = name
        self.description = description
        self.streaming = streaming
        self.origin = origin
        self.bytes = bytes
        self.call = call
    }

    /// What kind of call it serves.
    var kind: CallDescriptor.Kind {
        switch streaming?.kind {
        case nil: .unary
        case .server: .serverStream
        case .client: .clientStream
        case .bidi: .bidiStream
        }
    }
}

/// Routes requests to endpoints the go-micro way: the `Micro-Endpoint` header (falling back to
/// `Micro-Method`, then to a `/Service/Method` path), on any path; `Content-Type` picks the codec.
final class Router: Sendable {
    let service: String
    let codecs: Codecs
    let logger: Logger
    let interceptors: ServerInterceptors
    /// Calls served and failed (`Debug.Stats`).
    let stats = CallStats()
    /// The server's connections, with metrics on.
    let connectionMetrics: ConnectionMetrics?
    /// A broker whose deliveries arrive on the service's own port (the HTTP broker's do).
    let broker: (any MountedBroker)?
    private let endpoints = Mutex<[String: EndpointHandler]>([:])
    /// gRPC paths already resolved to an endpoint: a request looks its path up once instead of
    /// splitting it. Only paths that resolved, and at most `maxKnownRoutes` of them (any package
    /// prefix resolves through the short name, so callers could otherwise grow it).
    private let grpcRoutes = Mutex(KnownRoutes())
    /// Endpoint names already asked for (the micro protocol's `Micro-Endpoint`), the same way:
    /// a few strings compared instead of one hashed per request. Only names that resolved.
    private let namedRoutes = Mutex(KnownRoutes())

    /// The first few paths (or names) are compared one by one, which is quicker than hashing (a
    /// short one compares as two words); the rest are in a table.
    struct KnownRoutes {
        static let scanned = 8
        var first: [(path: String, endpoint: EndpointHandler)] = []
        var more: [String: EndpointHandler] = [:]

        func endpoint(_ path: String) -> EndpointHandler? {
            for route in first where route.path == path { return route.endpoint }
            return more.isEmpty ? nil : more[path]
        }

        /// The same from the bytes of a path or name, among the first few only (the rest are
        /// hashed, which needs a String): nil if it is not one of them.
        func endpoint(bytes: UnsafeRawBufferPointer) -> EndpointHandler? {
            for route in first where HTTPHeaders.equal(route.path, bytes) { return route.endpoint }
            return nil
        }

        mutating func add(_ path: String, _ endpoint: EndpointHandler) {
            if first.count < Self.scanned {
                first.append((path, endpoint))
            } else if more.count < Router.maxKnownRoutes - Self.scanned {
                more[path] = endpoint
            }
        }
    }
    /// `/Method` of every streaming endpoint (the core asks per request): a path that ends with
    /// none of them is not a stream, found without building a string.
    let streamMethods = Mutex<[[UInt8]]>([])
    /// `streamMethods` (the first `PublishedSuffixes.capacity` of them), readable without the lock:
    /// the core asks for every request with a body.
    let publishedStreamMethods = PublishedSuffixes()

    /// `GET /health`, `/health/live`, `/health/ready` (go-micro v6), asked only of a request that
    /// names no endpoint.
    let healthChecks: HealthChecks?

    init(service: String, codecs: Codecs, logger: Logger, interceptors: [any ServerInterceptor] = [], admission: AuthInterceptor? = nil,
         tracing: TracingServerInterceptor? = nil,
         broker: (any MountedBroker)? = nil, healthChecks: HealthChecks? = nil) {
        self.interceptors = ServerInterceptors(all: interceptors, admission: admission, tracing: tracing)
        self.healthChecks = healthChecks
        self.broker = broker
        self.service = service
        self.codecs = codecs
        self.logger = logger
        connectionMetrics = MicroMetrics.isEnabled ? ConnectionMetrics(service: service) : nil
    }

    func register(_ endpoint: EndpointHandler) {
        let origin = Context.Origin(service: service, endpoint: endpoint.name, kind: endpoint.kind, logger: logger)
        let metrics = MicroMetrics.isEnabled ? EndpointMetrics(service: service, endpoint: endpoint.name, kind: endpoint.kind) : nil
        let registered = EndpointHandler(name: endpoint.name, description: endpoint.description, streaming: endpoint.streaming,
                                         origin: origin, bytes: endpoint.bytes, metrics: metrics, sync: endpoint.sync,
                                         syncBytes: endpoint.syncBytes, call: endpoint.call)
        endpoints.withLock { $0[endpoint.name] = registered }
        grpcRoutes.withLock { $0 = KnownRoutes() }
        namedRoutes.withLock { $0 = KnownRoutes() }
        if endpoint.streaming != nil {
            let method = Array(("/" + (endpoint.name.split(separator: ".").last.map(String.init) ?? endpoint.name)).utf8)
            streamMethods.withLock { methods in
                guard !methods.contains(method) else { return }
                methods.append(method)
                publishedStreamMethods.append(method)  // under the lock: one writer at a time
            }
        }
    }

    var endpointNames: [String] { endpoints.withLock { $0.keys.sorted() } }

    /// What the registry publishes: each endpoint with its request and response shapes.
    var descriptions: [Endpoint] { endpoints.withLock { $0.values.map(\.description).sorted { $0.name < $1.name } } }

    /// The routes ``serveImmediately(_:_:_:)`` found for the requests it left to
    /// ``serve(_:_:routed:)``, per loop, in the order it left them: the server's workers take
    /// those requests from one queue in that same order, and each `serve` takes its route first
    /// thing.
    ///
    /// @unchecked Sendable: queue `i` is read and written only on the thread of the group's loop
    /// `i`; the array of queues itself never changes.
    final class RouteHandoff: @unchecked Sendable {
        private final class Queue {
            // loop-confined and touched per request left to a worker: no dynamic exclusivity checks
            @exclusivity(unchecked) var routes = Deque<(request: ObjectIdentifier, route: Route)>()
        }
        private let queues: [Queue]
        /// Routes dropped or not found by `take`, over the process: none, as long as routes and
        /// requests leave their queues in the same order (tests check it).
        static let misses = Atomic<Int>(0)

        init(loops: Int) { queues = (0..<loops).map { _ in Queue() } }

        func put(_ route: Route, for request: HTTPServerRequest) {
            let index = request.loop.index
            if index < queues.count { queues[index].routes.append((request.identity, route)) }
        }

        /// The route put for `request`, taken out; nil if there is none (the request is then
        /// routed again). Routes ahead of it would be dropped, and counted in `misses`: there are
        /// none, since each worker takes its route first thing, before anything can suspend. The
        /// workers' queue holds a request while its route waits here, so no other request can
        /// have its identity meanwhile.
        func take(for request: HTTPServerRequest) -> Route? {
            let index = request.loop.index
            guard index < queues.count else { return nil }
            let identity = request.identity
            let queue = queues[index]
            while let first = queue.routes.popFirst() {
                if first.request == identity { return first.route }
                Self.misses.add(1, ordering: .relaxed)
            }
            Self.misses.add(1, ordering: .relaxed)
            return nil
        }
    }

    /// Where a request goes, decided without suspending. Kept apart from the async functions so
    /// that their frames (allocated per request from the task's allocator) stay small.
    ///
    /// No value here holds a `ContinuousClock.Instant` inline: its size is known only at run time
    /// (the standard library may change it), so an async function with one in a local allocates
    /// room for it from the task allocator on every call. Deadlines stay in `Context` and
    /// `StreamCall`, which are objects.
    enum Route {
        case answer(HTTPServerResponse)
        /// A unary call, over the micro protocol or gRPC (`grpcContentType`).
        case unary(UnaryCall)
        case stream(StreamCall)
        case delivery(any MountedBroker)
        /// `GET /health…`
        case health(HealthChecks)
    }

    /// A streaming call, ready to run.
    final class StreamCall: Sendable {
        let endpoint: EndpointHandler
        let handler: StreamingHandler
        let codec: any Codec
        /// The caller's timeout in nanoseconds, 0 if none.
        let timeout: Int64
        let grpcContentType: String?

        init(_ endpoint: EndpointHandler, _ handler: StreamingHandler, _ codec: any Codec, timeout: Int64, grpcContentType: String?) {
            self.endpoint = endpoint
            self.handler = handler
            self.codec = codec
            self.timeout = timeout
            self.grpcContentType = grpcContentType
        }
    }

    /// A unary call, ready to run.
    struct UnaryCall {
        let endpoint: EndpointHandler
        let codec: any Codec
        let context: Context
        let message: [UInt8]
        /// The call's content type when it came over gRPC (the answer is gRPC's then).
        let grpcContentType: String?
        /// The go-micro legacy envelope it came in (json-rpc, proto-rpc), if any.
        var legacy: LegacyEnvelope? = nil

        /// The answer to `result`, on the wire the call came over.
        func answer(_ result: Result<[UInt8], MicroError>, _ router: Router) -> HTTPServerResponse {
            if let legacy { return router.legacyAnswer(result, legacy, context) }
            return grpcContentType.map { router.grpcAnswer(result, $0, context) } ?? router.answer(result, codec, context)
        }
    }

    /// Serves one request. A unary call runs its handler right here: each async function between
    /// the worker and the handler costs a frame and a hop back to the caller's isolation when
    /// the callee returns. The caller's deadline is armed in the core, which tells the router
    /// (``deadlinePassed(_:_:)``) only if it passes first: no task races the handler.
    ///
    /// `routed`: the request's route, when ``serveImmediately(_:_:_:)`` found it already.
    nonisolated(nonsending) func serve(_ request: HTTPServerRequest, _ responder: HTTPResponder, routed: Route? = nil) async {
        guard let route = answerWithoutSuspending(routed ?? self.route(request), responder) else { return }
        switch route {
        case .answer: return  // answered above
        case .unary(let call):
            if call.context.timeoutMilliseconds > 0 { armDeadline(call.context, responder, routedOnArrival: routed != nil) }
            guard let metrics = call.endpoint.metrics else {
                let result = await invoke(call.endpoint, call.message, call.codec, call.context)
                stats.record(failed: result.failed)
                responder.send(call.answer(result, self))
                return
            }
            let start = metrics.begin()
            conclude(call, await invoke(call.endpoint, call.message, call.codec, call.context), metrics: metrics, since: start, responder)
        case .stream(let call):
            await serveStream(request, responder, endpoint: call.endpoint, handler: call.handler, codec: call.codec,
                              grpcContentType: call.grpcContentType, timeout: call.timeout)
        case .delivery(let broker): await serveDelivery(request, responder, broker)
        case .health(let checks):
            responder.send(await checks.answer(request)
                ?? HTTPServerResponse(status: 404, headers: ["content-type": "text/plain"],
                                      body: Array("no such health endpoint: /health, /health/live and /health/ready are\n".utf8)))
        }
    }

    /// Arms the caller's deadline for a unary call about to run. A call routed on arrival (by
    /// ``serveImmediately(_:_:_:)``) may have waited for a worker since: its deadline runs from
    /// then, so the time left is read off the clock. One routed just now arms its timeout as it
    /// came, with no clock read. Synchronous: an async frame holding a `ContinuousClock.Instant`
    /// would allocate room for it on every call (see ``Route``).
    @inline(never)
    private func armDeadline(_ context: Context, _ responder: HTTPResponder, routedOnArrival: Bool) {
        if routedOnArrival, let deadline = context.deadline {
            responder.setDeadline(deadline, handler: self)
        } else {
            responder.setDeadline(afterMilliseconds: context.timeoutMilliseconds, handler: self)
        }
    }

    /// The server's first try at a request (``HTTPServer/Immediate``), on its loop: answers what
    /// needs no suspension, in the core's request callback (usually no task), and leaves the
    /// rest (with its route, in `handoff`) to ``serve(_:_:routed:)``, which a worker calls later.
    func serveImmediately(_ request: HTTPServerRequest, _ responder: HTTPResponder, _ handoff: RouteHandoff) -> Bool {
        guard let route = answerWithoutSuspending(self.route(request), responder) else { return true }
        handoff.put(route, for: request)
        return false
    }

    /// Answers `route` if that takes no suspension: an answer made already, or a synchronous
    /// handler with nothing to run around it. It answers before any deadline could pass on this
    /// loop, so none is armed. Returns the route when it needs ``serve(_:_:routed:)``, nil when
    /// it was answered. It takes the route and hands it back rather than borrowing it: a call's
    /// fields bound out of a borrowed route are copies, a reference count each.
    private func answerWithoutSuspending(_ route: consuming Route, _ responder: HTTPResponder) -> Route? {
        switch consume route {
        case .answer(let response):
            responder.send(response)
            return nil
        case .unary(let call):
            guard let sync = call.endpoint.sync, interceptors.allowSynchronousCalls else { return .unary(call) }
            let start = call.endpoint.metrics?.begin()
            conclude(call, invokeSynchronously(sync, call.endpoint, call.message, call.codec, call.context),
                     metrics: call.endpoint.metrics, since: start, responder)
            return nil
        case let other:
            return other
        }
    }

    /// A unary call's result counted (in its endpoint's metrics too, when they are on) and answered.
    private func conclude(_ call: UnaryCall, _ result: Result<[UInt8], MicroError>, metrics: EndpointMetrics?, since start: MonotonicTime?,
                          _ responder: HTTPResponder) {
        stats.record(failed: result.failed, code: result.code, metrics: metrics, since: start)
        metrics?.record(received: call.message.count, sent: (try? result.get())?.count ?? 0)
        responder.send(call.answer(result, self))
    }

    /// go-micro's `Timeout` header: decimal nanoseconds (0: none).
    static func microTimeout(_ request: HTTPServerRequest) -> Int64 {
        request.header("timeout").flatMap { Int64($0) }.map { max($0, 0) } ?? 0
    }

    /// The answer to a call of an endpoint the service does not have.
    func unknownEndpoint(_ name: String) -> HTTPServerResponse {
        error(.notFound(service, "endpoint \(name) not found on service \(service)"))
    }

    @inline(never)
    func route(_ request: HTTPServerRequest) -> Route {
        let contentType = request.header("content-type")
        if let contentType, contentType.hasPrefix("application/grpc") { return grpcRoute(request, contentType: contentType) }
        if let broker, broker.isDelivery(request) { return .delivery(broker) }
        if let contentType, let legacy = LegacyEnvelope.Kind(contentType: contentType) { return legacyRoute(request, legacy) }
        let named = headerEndpoint(request)
        // no routing header: the health endpoints (GET /health...) and the metrics (GET /metrics)
        // before a /Service/Method path
        if named == nil, request.method == "GET" || request.method == "HEAD" {
            let path = request.path
            if let healthChecks, path.hasPrefix("/health") { return .health(healthChecks) }
            if path == "/metrics", MicroMetrics.isEnabled {
                connectionMetrics?.refresh()
                return .answer(HTTPServerResponse(status: 200, headers: ["content-type": "text/plain; version=0.0.4"],
                                                  body: request.method == "HEAD" ? [] : MicroMetrics.exposition()))
            }
        }
        guard let name = named?.name ?? Self.pathEndpointName(request) else {
            // go-micro's fallback: JSON with no routing header is a json-rpc request naming its method
            if contentType == nil || contentType == "application/json", request.bodyStream == nil,
               let envelope = try? LegacyEnvelope.open(request.body, as: .jsonRPC, contentType: "application/json"), !envelope.method.isEmpty {
                return legacyRoute(request, envelope)
            }
            return .answer(error(.badRequest(service, "no endpoint named: set the Micro-Endpoint header, e.g. 'Micro-Endpoint: Service.Method'")))
        }
        guard let endpoint = named.map(\.endpoint) ?? endpoint(named: name) else { return .answer(unknownEndpoint(name)) }
        guard let codec = codecs.codec(for: contentType) else {
            let supported = codecs.contentTypes.joined(separator: ", ")
            return .answer(error(MicroError(id: service, code: 415, detail: "unsupported content type \(contentType ?? ""); supported: \(supported)")))
        }
        let timeout = Self.microTimeout(request)
        if let streaming = endpoint.streaming { return .stream(StreamCall(endpoint, streaming, codec, timeout: timeout, grpcContentType: nil)) }
        if request.bodyStream != nil {
            return .answer(error(.badRequest(service, "\(name) is not a stream; call it without a Micro-Stream header")))
        }
        let context = self.context(request, endpoint: endpoint, timeout: timeout, wire: request.httpVersion == 1 ? .microHTTP1 : .microHTTP2)
        return .unary(UnaryCall(endpoint: endpoint, codec: codec, context: context, message: request.body, grpcContentType: nil))
    }

    @inline(never)
    nonisolated(nonsending) func serveDelivery(_ request: HTTPServerRequest, _ responder: HTTPResponder, _ broker: any MountedBroker) async {
        responder.send(await broker.receive(request))
    }

    /// The answer to a unary call over the micro protocol.
    func answer(_ result: Result<[UInt8], MicroError>, _ codec: any Codec, _ context: Context) -> HTTPServerResponse {
        switch result {
        case .success(let bytes):
            var headers = contentTypeHeaders(codec.contentType)
            for (name, value) in context.responseMetadata.all { headers.add(name: name, value: value) }
            return HTTPServerResponse(status: 200, headers: headers, body: bytes)
        case .failure(let e):
            return error(e)
        }
    }

    /// `content-type: type`, from a table built once for the known types (most answers carry
    /// this one header: no allocation for it).
    func contentTypeHeaders(_ type: String) -> HTTPHeaders {
        // the two most common without hashing
        if type == "application/grpc" { return Self.grpcContentType }
        if type == "application/json" { return Self.jsonContentType }
        return Self.commonContentTypeHeaders[type] ?? ["content-type": type]
    }

    private static let grpcContentType = HTTPHeaders([("content-type", "application/grpc")]).frozen()
    private static let jsonContentType = HTTPHeaders([("content-type", "application/json")]).frozen()

    private static let commonContentTypeHeaders: [String: HTTPHeaders] = {
        var table: [String: HTTPHeaders] = [:]
        let types = Codecs.standard.contentTypes + [
            "application/grpc", "application/grpc+proto", "application/grpc+json", "application/x-protobuf",
        ]
        for type in types { table[type] = HTTPHeaders([("content-type", type)]).frozen() }
        return table
    }()

    /// Runs the handler (through the interceptors); every failure becomes a MicroError.
    nonisolated(nonsending) func invoke(_ endpoint: EndpointHandler, _ body: [UInt8], _ codec: any Codec, _ context: Context) async -> Result<[UInt8], MicroError> {
        guard let tracing = interceptors.tracing else { return await invokeUntraced(endpoint, body, codec, context) }
        if let trace = tracing.unrecorded(context) {
            // a trace not recorded: its ids bound, no span (the common case of head sampling)
            return await TraceContext.$unrecorded.withValue(trace) { await invokeUntraced(endpoint, body, codec, context) }
        }
        return await invokeTraced(tracing, endpoint, body, codec, context)
    }

    /// ``invoke`` in the call's span (`tracing` found it to be recorded).
    @inline(never)
    nonisolated(nonsending) private func invokeTraced(_ tracing: TracingServerInterceptor, _ endpoint: EndpointHandler, _ body: [UInt8], _ codec: any Codec,
                                                      _ context: Context) async -> Result<[UInt8], MicroError> {
        do {
            return try await tracing.record(context, failure: { result in
                if case .failure(let error) = result { return error }
                return nil
            }) {
                await invokeUntraced(endpoint, body, codec, context)
            }
        } catch {
            return .failure(failure(error, endpoint, context))  // the body does not throw
        }
    }

    nonisolated(nonsending) private func invokeUntraced(_ endpoint: EndpointHandler, _ body: [UInt8], _ codec: any Codec, _ context: Context) async -> Result<[UInt8], MicroError> {
        if interceptors.admission != nil {
            do {
                try await interceptors.admit(context)
            } catch {
                return .failure(failure(error, endpoint, context))
            }
        }
        guard interceptors.isEmpty else { return await invokeIntercepted(endpoint, body, codec, context) }
        do {
            if let bytes = endpoint.bytes, Self.carriesBytesUnchanged(codec) {
                // one async level fewer: no wrapper to decode and encode what would not change
                return .success(try await bytes(body, context))
            }
            return .success(try await endpoint.call(body, codec, context))
        } catch {
            return .failure(failure(error, endpoint, context))
        }
    }

    @inline(never)
    nonisolated(nonsending) private func invokeIntercepted(_ endpoint: EndpointHandler, _ body: [UInt8], _ codec: any Codec, _ context: Context) async -> Result<[UInt8], MicroError> {
        do {
            let result = try await interceptors.run(ServerCall(context: context, message: body, codec: codec)) { call in
                var message = call.message ?? []
                if let tap = call.taps.request { message = try tap(message) }
                var answer: [UInt8]
                if let bytes = endpoint.bytes, Self.carriesBytesUnchanged(call.codec) {
                    answer = try await bytes(message, call.context)
                } else {
                    answer = try await endpoint.call(message, call.codec, call.context)
                }
                if let tap = call.taps.response { answer = try tap(answer) }
                return ServerResult(message: answer)
            }
            return .success(result.message ?? [])
        } catch {
            return .failure(failure(error, endpoint, context))
        }
    }

    /// Runs `endpoint`'s synchronous handler, `sync` (no interceptor to run); every failure
    /// becomes a MicroError, as in ``invoke``.
    func invokeSynchronously(_ sync: EndpointHandler.SyncCall, _ endpoint: EndpointHandler, _ body: [UInt8], _ codec: any Codec,
                             _ context: Context) -> Result<[UInt8], MicroError> {
        do {
            if let bytes = endpoint.syncBytes, Self.carriesBytesUnchanged(codec) { return .success(try bytes(body, context)) }
            return .success(try sync(body, codec, context))
        } catch {
            return .failure(failure(error, endpoint, context))
        }
    }

    /// Whether `codec` decodes and encodes `[UInt8]` as the bytes themselves.
    static func carriesBytesUnchanged(_ codec: any Codec) -> Bool {
        let type = type(of: codec)
        return type == ProtobufCodec.self || type == BytesCodec.self
    }

    /// What a handler's error tells the caller.
    @inline(never)
    private func failure(_ error: any Error, _ endpoint: EndpointHandler, _ context: Context) -> MicroError {
        switch error {
        case let e as MicroError: return e
        case is CancellationError: return .timeout(service, "\(endpoint.name) was cancelled")
        case let e as StoreError: return e.microError(service)
        default:
            context.logger.error("handler failed: \(error)")
            return .internalServerError(service, "\(error)")
        }
    }

    static let maxKnownRoutes = 1024

    func endpoint(named name: String) -> EndpointHandler? {
        if let known = namedRoutes.withLock({ $0.endpoint(name) }) { return known }
        guard let found = endpoints.withLock({ $0[name] }) else { return nil }
        namedRoutes.withLock { if $0.endpoint(name) == nil { $0.add(name, found) } }
        return found
    }

    /// The endpoint a gRPC path `/pkg.Service/Method` names: `pkg.Service.Method`, else
    /// `Service.Method`. Nil for a malformed path (`malformed`) or an unknown method.
    func endpoint(grpcPath path: String) -> (endpoint: EndpointHandler?, malformed: Bool) {
        if let known = grpcRoutes.withLock({ $0.endpoint(path) }) { return (known, false) }
        guard let (qualified, short) = Self.grpcEndpointNames(path) else { return (nil, true) }
        guard let found = endpoint(named: qualified) ?? endpoint(named: short) else { return (nil, false) }
        grpcRoutes.withLock { if $0.endpoint(path) == nil { $0.add(path, found) } }
        return (found, false)
    }

    /// What the handler of `endpoint` gets to know about `request`.
    func context(_ request: HTTPServerRequest, endpoint: EndpointHandler, timeout: Int64, wire: CallDescriptor.Wire) -> Context {
        let origin = endpoint.origin ?? Context.Origin(service: service, endpoint: endpoint.name, kind: endpoint.kind, logger: logger)
        return Context(origin: origin, wire: wire, metadata: Metadata(request.headers), timeout: timeout, eventLoop: request.loop,
                       peer: Peer(request.tls))
    }

    /// go-micro answers errors with HTTP 200 and the error in `Micro-Error`; the body carries it
    /// too so that curl shows it.
    func error(_ e: MicroError) -> HTTPServerResponse {
        let json = e.json
        return HTTPServerResponse(
            status: 200,
            headers: ["content-type": "application/json", "micro-error": json, "x-micro-error": json],
            body: Array(json.utf8)
        )
    }

    static func endpointName(_ request: HTTPServerRequest) -> String? {
        endpointHeader(request) ?? pathEndpointName(request)
    }

    /// The endpoint the `Micro-Endpoint` (or go-micro's `Micro-Method`) header names, and the
    /// name; nil if neither is set. A name resolved before is found from the header's bytes, so
    /// most requests make no String of it (a name past 15 bytes would be an allocation).
    func headerEndpoint(_ request: HTTPServerRequest) -> (name: String, endpoint: EndpointHandler?)? {
        headerEndpoint(request, "micro-endpoint") ?? headerEndpoint(request, "micro-method")
    }

    private func headerEndpoint(_ request: HTTPServerRequest, _ header: String) -> (name: String, endpoint: EndpointHandler?)? {
        enum Lookup { case absent, known(EndpointHandler), other }
        let lookup: Lookup = request.withHeaderValue(of: header) { bytes in
            guard let bytes, !bytes.isEmpty else { return .absent }
            return namedRoutes.withLock { $0.endpoint(bytes: bytes) }.map(Lookup.known) ?? .other
        }
        switch lookup {
        case .absent: return nil
        case .known(let endpoint): return (endpoint.name, endpoint)
        case .other:
            guard let name = request.header(header) else { return nil }
            return (name, endpoint(named: name))
        }
    }

    /// The endpoint a request names in `Micro-Endpoint` (or go-micro's older `Micro-Method`).
    static func endpointHeader(_ request: HTTPServerRequest) -> String? {
        if let name = request.header("micro-endpoint"), !name.isEmpty { return name }
        if let name = request.header("micro-method"), !name.isEmpty { return name }
        return nil
    }

    /// The endpoint a `/Helloworld/Greeting` path names: `Helloworld.Greeting`.
    static func pathEndpointName(_ request: HTTPServerRequest) -> String? {
        let path = request.path.split(separator: "?", maxSplits: 1).first ?? ""
        let parts = path.split(separator: "/")
        if parts.count == 2 { return parts[0] + "." + parts[1] }
        return nil
    }
}

extension Router {
    /// Wraps a handler of raw bytes in and out (the usual proxy and echo shape). With a codec that
    /// carries bytes unchanged (protobuf, gRPC, octet-stream) the handler is called directly;
    /// with another (JSON: an array of numbers) through the typed wrapper, compiled here for
    /// `[UInt8]` (a generic wrapper keeps values of unknown size, and an async function allocates
    /// room for each from the task allocator on every call).
    static func bytesEndpoint(_ name: String, service: String, _ handler: @escaping EndpointHandler.BytesCall) -> EndpointHandler {
        let typed = endpoint(name, service: service, handler)
        return EndpointHandler(name: name, description: typed.description, bytes: handler, call: typed.call)
    }

    /// The same for a synchronous handler.
    static func bytesEndpoint(_ name: String, service: String, synchronous handler: @escaping EndpointHandler.SyncBytesCall) -> EndpointHandler {
        let typed = endpoint(name, service: service, synchronous: handler)
        return EndpointHandler(name: name, description: typed.description, bytes: { body, context in try handler(body, context) },
                               sync: typed.sync, syncBytes: handler, call: typed.call)
    }

    /// Wraps a typed handler: a body that does not decode is the caller's fault (400).
    static func endpoint<Request: Decodable & Sendable, Response: Encodable & Sendable>(
        _ name: String,
        service: String,
        _ handler: nonisolated(nonsending) @escaping @Sendable (Request, Context) async throws -> Response
    ) -> EndpointHandler {
        EndpointHandler(name: name, description: codableDescription(name, Request.self, Response.self)) { body, codec, context in
            let request: Request = try decode(body, codec, name, service)
            return try encode(try await handler(request, context), codec, service)
        }
    }

    /// The same for a synchronous handler (run without an async call where nothing intercepts).
    static func endpoint<Request: Decodable & Sendable, Response: Encodable & Sendable>(
        _ name: String,
        service: String,
        synchronous handler: @escaping @Sendable (Request, Context) throws -> Response
    ) -> EndpointHandler {
        let sync: EndpointHandler.SyncCall = { body, codec, context in
            let request: Request = try decode(body, codec, name, service)
            return try encode(try handler(request, context), codec, service)
        }
        return EndpointHandler(name: name, description: codableDescription(name, Request.self, Response.self), sync: sync) { body, codec, context in
            try sync(body, codec, context)
        }
    }

    /// What the registry publishes of a typed endpoint.
    private static func codableDescription<Request: Decodable, Response: Encodable>(_ name: String, _: Request.Type, _: Response.Type) -> Endpoint {
        let responseName = String(describing: Response.self)
        return Endpoint(
            name: name,
            request: Schema.describe(Request.self, name: String(describing: Request.self)),
            response: (Response.self as? any Decodable.Type).map { Schema.describe($0, name: responseName) }
                ?? Value(name: responseName, type: Schema.typeName(Response.self))
        )
    }

    /// A typed handler's request (an empty JSON body is `{}`); one that does not decode is a 400.
    private static func decode<Request: Decodable>(_ body: [UInt8], _ codec: any Codec, _ name: String, _ service: String) throws -> Request {
        do {
            return try codec.decode(Request.self, from: body.isEmpty && codec is JSONCodec ? Array("{}".utf8) : body)
        } catch {
            throw MicroError.badRequest(service, "cannot decode \(Request.self) from \(codec.contentType) for \(name): \(Self.describe(error))")
        }
    }

    /// A typed handler's answer; one that does not encode is the service's fault (500).
    private static func encode<Response: Encodable>(_ response: Response, _ codec: any Codec, _ service: String) throws -> [UInt8] {
        do {
            return try codec.encode(response)
        } catch {
            throw MicroError.internalServerError(service, "cannot encode \(Response.self) as \(codec.contentType): \(error)")
        }
    }

    /// Wraps a handler of protobuf messages; they travel in protobuf or protobuf-JSON.
    static func messageEndpoint<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ name: String,
        service: String,
        _ handler: nonisolated(nonsending) @escaping @Sendable (Request, Context) async throws -> Response
    ) -> EndpointHandler {
        EndpointHandler(name: name, description: messageDescription(name, Request.self, Response.self)) { body, codec, context in
            let codec = try messageCodec(codec, service)
            let request: Request = try decode(message: body, codec, name, service)
            return try encode(message: try await handler(request, context), codec, service)
        }
    }

    /// The same for a synchronous handler (run without an async call where nothing intercepts).
    static func messageEndpoint<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ name: String,
        service: String,
        synchronous handler: @escaping @Sendable (Request, Context) throws -> Response
    ) -> EndpointHandler {
        let sync: EndpointHandler.SyncCall = { body, codec, context in
            let codec = try messageCodec(codec, service)
            let request: Request = try decode(message: body, codec, name, service)
            return try encode(message: try handler(request, context), codec, service)
        }
        return EndpointHandler(name: name, description: messageDescription(name, Request.self, Response.self), sync: sync) { body, codec, context in
            try sync(body, codec, context)
        }
    }

    private static func messageDescription<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ name: String, _: Request.Type, _: Response.Type
    ) -> Endpoint {
        Endpoint(name: name, request: Value(name: Request.protoMessageName, type: Request.protoMessageName),
                 response: Value(name: Response.protoMessageName, type: Response.protoMessageName))
    }

    /// The codec as one that carries protobuf messages, or the 415 to answer.
    private static func messageCodec(_ codec: any Codec, _ service: String) throws -> any MessageCodec {
        guard let messages = codec.messageCodec else {
            throw MicroError(id: service, code: 415, detail: "\(codec.contentType) cannot carry protobuf messages; use application/protobuf, application/json or gRPC")
        }
        return messages
    }

    private static func decode<Request: SwiftProtobuf.Message>(message body: [UInt8], _ codec: any MessageCodec, _ name: String,
                                                             _ service: String) throws -> Request {
        do {
            return try codec.decode(message: Request.self, from: body)
        } catch {
            throw MicroError.badRequest(service, "cannot decode \(Request.protoMessageName) from \(codec.contentType) for \(name): \(error)")
        }
    }

    private static func encode<Response: SwiftProtobuf.Message>(message response: Response, _ codec: any MessageCodec, _ service: String) throws -> [UInt8] {
        do {
            return try codec.encode(message: response)
        } catch {
            throw MicroError.internalServerError(service, "cannot encode \(Response.protoMessageName) as \(codec.contentType): \(error)")
        }
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let c): return c.underlyingError.map { "\($0)" } ?? c.debugDescription
        case DecodingError.keyNotFound(let key, _): return "missing field '\(key.stringValue)'"
        case DecodingError.typeMismatch(let type, let c):
            return "field '\(c.codingPath.map(\.stringValue).joined(separator: "."))' is not \(type)"
        case DecodingError.valueNotFound(let type, let c):
            return "field '\(c.codingPath.map(\.stringValue).joined(separator: "."))' is null, expected \(type)"
        default: return "\(error)"
        }
    }
}

extension Router: HTTPDeadlineHandler {
    /// A unary call's deadline passed before its handler answered (the core's timer, on the
    /// request's loop): the caller gets a timeout on the wire it called over, and the handler's
    /// task is cancelled after this returns.
    func deadlinePassed(_ request: HTTPServerRequest, _ responder: HTTPResponder) {
        let contentType = request.header("content-type")
        if let contentType, contentType.hasPrefix("application/grpc") {
            let name = endpoint(grpcPath: request.path).endpoint?.name ?? request.path
            let detail = "\(name) did not answer before the caller's deadline"
            return responder.send(Self.grpcFailure(.deadlineExceeded, detail, contentType: contentType))
        }
        let detail = "\(Self.endpointName(request) ?? "the endpoint") did not answer before the caller's deadline"
        responder.send(error(.timeout(service, detail)))
    }
}
