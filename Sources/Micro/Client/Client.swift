import Foundation
public import Logging
public import MicroCore
public import SwiftProtobuf
public import Tracing

/// Calls services by name: looks the nodes up in the registry (cached, kept fresh by a watch),
/// chooses one with the selector, sends the request over HTTP/2 (pooled connections from the C
/// core) and retries on another node when that is safe.
///
/// ```swift
/// let client = Client()
/// let reply: Response = try await client.call("helloworld", "Helloworld.Greeting", Request(name: "alice"))
/// ```
///
/// Threading: any task. A call made from a task on an event loop stays on that loop.
public final class Client: Sendable {
    /// Defaults for every call; each call may pass its own.
    public let options: CallOptions
    let cache: RegistryCache
    /// One selector per strategy, in `SelectionStrategy.allCases` order (see ``selector(_:)``).
    let selectors: [Selector]
    let defaultStrategy: SelectionStrategy
    let http: HTTPClient
    let codecs: Codecs
    let interceptors: ClientInterceptors
    private let budget: RetryBudget
    /// The fields of the calls made last, made once each.
    private let shapes = CallShapes()
    let logger: Logger
    /// Where ``publish(_:_:options:contentType:metadata:)`` sends messages.
    public let broker: any Broker
    /// The certificate this client presents and the roots it trusts when a node requires TLS
    /// (nil: the system's roots and no client certificate).
    public let tls: TLSConfig?

    /// A client with the framework's settings of `config` (the process's by default): its TLS
    /// (`MICRO_TLS_*`) when `tls` is nil, and sends `MICRO_AUTH_TOKEN` on every call. Throws ``ConfigurationError`` for a TLS setting that
    /// does not parse, rather than call in plaintext what was meant to be called over TLS.
    public convenience init(
        config: MicroConfig,
        registry: (any Registry)? = nil,
        broker: (any Broker)? = nil,
        strategy: SelectionStrategy = .powerOfTwoChoices,
        options: CallOptions = .init(),
        interceptors: [any ClientInterceptor] = [],
        eventLoopGroup: EventLoopGroup = .shared,
        logger: Logger = Logger(label: "micro.client"),
        tls: TLSConfig? = nil,
        tracer: (any Tracer)? = Tracers.process
    ) throws(ConfigurationError) {
        var tls = tls
        if tls == nil {
            do {
                tls = try TLSConfig.fromEnvironment(config.frameworkEnvironment)
            } catch {
                throw ConfigurationError(key: "micro.tls", reason: "TLS: \(error.message)")
            }
        }
        // MICRO_AUTH_TOKEN: sent on every call that carries no Authorization of its own
        var interceptors = interceptors
        if let token = config.frameworkEnvironment["MICRO_AUTH_TOKEN"], !token.isEmpty {
            interceptors.insert(AuthClientInterceptor(tokens: TokenSource(token: token)), at: 0)
        }
        self.init(registry: registry, broker: broker, strategy: strategy, options: options, interceptors: interceptors,
                  eventLoopGroup: eventLoopGroup, logger: logger, tls: tls, tracer: tracer)
    }

    /// A client of what it is given, reading nothing else (``init(config:registry:broker:strategy:options:interceptors:eventLoopGroup:logger:tls:)``
    /// reads the TLS settings of a configuration).
    public init(
        registry: (any Registry)? = nil,
        broker: (any Broker)? = nil,
        strategy: SelectionStrategy = .powerOfTwoChoices,
        ejection: EjectionPolicy = .init(),
        options: CallOptions = .init(),
        interceptors: [any ClientInterceptor] = [],
        codecs: Codecs = .standard,
        retryBudget: RetryBudgetPolicy = .init(),
        eventLoopGroup: EventLoopGroup = .shared,
        logger: Logger = Logger(label: "micro.client"),
        tls: TLSConfig? = nil,
        tracer: (any Tracer)? = Tracers.process
    ) {
        self.options = options
        let cache = RegistryCache(registry: registry ?? Registries.default, logger: logger)
        self.tls = tls
        let http = HTTPClient(group: eventLoopGroup, tls: tls)
        self.cache = cache
        self.http = http
        // MICRO_BROKER's plugin, made for this client: the HTTP broker finds subscribers in its
        // registry and reaches them over its connections
        let context = PluginContext(environment: MicroConfig.process.frameworkEnvironment, eventLoopGroup: eventLoopGroup, logger: logger,
                                    registry: cache.registry, client: (cache, http))
        self.broker = broker ?? (try? Brokers.plugins.make(context))
            ?? HTTPBroker(cache: cache, http: http, ownsHTTP: false, eventLoopGroup: eventLoopGroup, logger: logger)
        self.selectors = SelectionStrategy.allCases.map { Selector(strategy: $0, ejection: ejection) }
        self.defaultStrategy = strategy
        self.codecs = codecs
        // traced, then measured: a span around everything else, whose context the others' calls
        // carry; one record per call, retries inside it
        var observers: [any ClientInterceptor] = tracer.map { [TracingClientInterceptor(tracer: $0)] } ?? []
        if MicroMetrics.isEnabled { observers.append(MetricsClientInterceptor()) }
        self.interceptors = ClientInterceptors(all: observers + interceptors)
        self.budget = RetryBudget(retryBudget)
        self.logger = logger
    }

    /// Calls `endpoint` of `service` with a `Codable` request; throws ``MicroError``.
    public nonisolated(nonsending) func call<Request: Encodable & Sendable, Response: Decodable & Sendable>(
        _ service: String,
        _ endpoint: String,
        _ request: Request,
        options: CallOptions? = nil
    ) async throws -> Response {
        let options = options ?? self.options
        guard let codec = codec(for: options.contentType) else {
            throw MicroError(id: "micro.client", code: 400, detail: "unsupported content type \(options.contentType)")
        }
        let body: [UInt8]
        do {
            body = try codec.encode(request)
        } catch {
            throw MicroError(id: "micro.client", code: 400, detail: "cannot encode \(Request.self) as \(codec.contentType): \(error)")
        }
        let response = try await call(service, endpoint, body: body, options: options)
        let responseCodec = Wire.isGRPC(options.contentType) ? codec : codecs.codec(for: response.metadata["content-type"]) ?? codec
        do {
            return try responseCodec.decode(Response.self, from: response.body)
        } catch {
            throw MicroError(id: "micro.client", code: 500, detail: "cannot decode \(Response.self) from the answer of \(service).\(endpoint): \(error)")
        }
    }

    /// Calls `endpoint` of `service` with a protobuf message. With a gRPC content type
    /// (`application/grpc`, the default of generated clients) `endpoint` may be the gRPC path,
    /// `/package.Service/Method`; otherwise the message travels as protobuf or JSON over the micro
    /// protocol.
    public nonisolated(nonsending) func call<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ service: String,
        _ endpoint: String,
        _ request: Request,
        options: CallOptions? = nil
    ) async throws -> Response {
        let options = options ?? self.options
        guard let codec = codec(for: options.contentType)?.messageCodec else {
            throw MicroError(id: "micro.client", code: 400, detail: "content type \(options.contentType) cannot carry protobuf messages")
        }
        let body: [UInt8]
        do {
            body = try codec.encode(message: request)
        } catch {
            throw MicroError(id: "micro.client", code: 400, detail: "cannot encode \(Request.protoMessageName): \(error)")
        }
        let response = try await call(service, endpoint, body: body, options: options)
        do {
            return try codec.decode(message: Response.self, from: response.body)
        } catch {
            throw MicroError(id: "micro.client", code: 500, detail: "cannot decode \(Response.protoMessageName) from the answer of \(service) \(endpoint): \(error)")
        }
    }

    /// The codec of a content type; gRPC's carry protobuf (`application/grpc`, `+proto`) or JSON.
    func codec(for contentType: String) -> (any Codec)? {
        switch contentType.lowercased() {
        case "application/grpc", "application/grpc+proto": ProtobufCodec()
        case "application/grpc+json": JSONCodec()
        default: codecs.codec(for: contentType)
        }
    }

    /// The identity a node of `service` must present over TLS: `MICRO_TLS_SERVER_IDENTITY` /
    /// ``TLSConfig/expectedServerIdentity`` if set, else `spiffe://TRUST-DOMAIN/service/NAME`.
    public func expectedIdentity(of service: String) -> String {
        let config = tls ?? TLSConfig()
        return config.expectedServerIdentity ?? config.identity(ofService: service)
    }

    /// Closes the client's pooled connections (calls in flight fail). The client stays usable:
    /// a later call connects again.
    public func close() async {
        await http.close()
    }

    /// Replaces the client certificate or trust roots for connections made from now on (a
    /// rotation); connections already open keep theirs. Throws, changing nothing, on a bad
    /// configuration.
    public func reloadTLS(_ config: TLSConfig) throws {
        try http.reloadTLS(config)
    }

    /// Calls with a body already encoded (in `options.contentType`); returns the raw answer.
    public nonisolated(nonsending) func call(_ service: String, _ endpoint: String, body: [UInt8], options: CallOptions? = nil) async throws -> ClientResponse {
        // without interceptors nothing needs the call as a value: straight to the attempts. The
        // options are passed as they are, not as `options ?? self.options`: that makes a copy,
        // a reference count for each of their fields and another to let it go.
        guard !interceptors.isEmpty else {
            if let options { return try await attempts(service, endpoint, body, options) }
            return try await attempts(service, endpoint, body, self.options)
        }
        return try await intercepted(service, endpoint, body, options ?? self.options)
    }

    /// A call through the interceptors (kept out of ``call(_:_:body:options:)``'s async frame).
    @inline(never)
    private nonisolated(nonsending) func intercepted(_ service: String, _ endpoint: String, _ body: [UInt8], _ options: CallOptions) async throws -> ClientResponse {
        let descriptor = CallDescriptor(service: service, endpoint: endpoint, kind: .unary, wire: Wire.of(options))
        return try await interceptors.run(ClientCall(descriptor: descriptor, options: options, message: body)) { call in
            var message = call.message ?? []
            if let tap = call.taps.request { message = try tap(message) }
            var response = try await self.attempts(call.service, call.endpoint, message, call.options)
            if let tap = call.taps.response { response.body = try tap(response.body) }
            return response
        }
    }

    @inline(never)
    private func timedOut(_ service: String, _ endpoint: String, _ options: CallOptions) -> MicroError {
        MicroError(id: "micro.client", code: 408, detail: "call to \(service).\(endpoint) timed out after \(options.timeout)")
    }

    /// The address to dial, the HTTP to speak and, when the node requires TLS (its registry
    /// metadata says `tls=required`, or a direct address starts with `https://` or `tls://`),
    /// what the server's certificate must prove: that it is the service we meant to call.
    /// HTTP/2 unless the node's metadata says it speaks only HTTP/1.1 (go-micro's nodes,
    /// ``Node/httpVersion``) or a direct address starts with `http://` (`h2c://` says HTTP/2 by
    /// prior knowledge, as does an address with no scheme); TLS and gRPC always speak HTTP/2.
    /// `node`: the registry's node picked, nil for a direct address.
    func transport(_ service: String, _ picked: String, _ node: PickedNode?, grpc: Bool = false,
                   verifiesHostName: Bool = false) -> (String, HTTPClient.TLSTarget?, HTTPClient.Version)
    {
        var secure = node?.requiresTLS ?? false
        var version: HTTPClient.Version?  // said by the address's scheme
        var address = picked
        // an IP address (what the registry holds) has no scheme and no slash to take off
        let bare = picked.utf8.first.map { $0 == UInt8(ascii: "[") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) } ?? true
        if !bare || picked.utf8.last == UInt8(ascii: "/") {
            for scheme in ["https://", "tls://"] where address.hasPrefix(scheme) {
                address.removeFirst(scheme.count)
                secure = true
            }
            // plaintext, said explicitly: HTTP/1.1 as for any http:// URL, or HTTP/2 by prior knowledge
            if address.hasPrefix("http://") {
                address.removeFirst(7)
                version = .http1_1
            } else if address.hasPrefix("h2c://") {
                address.removeFirst(6)
                version = .http2
            }
            if address.hasSuffix("/") { address.removeLast() }
        }
        // (what the node speaks was read from its metadata once, into its PickedNode)
        let speaks: HTTPClient.Version = secure || grpc ? .http2 : version ?? node?.httpVersion ?? .http2
        guard secure else { return (address, nil, speaks) }
        // a registry's node is one of ours; a direct address may be asked to prove only its host name
        let identity = verifiesHostName && node == nil ? nil : expectedIdentity(of: service)
        return (address, HTTPClient.TLSTarget(expectedIdentity: identity), speaks)
    }

    /// The selector of `strategy` (an array index, not a hash of the strategy's name).
    func selector(_ strategy: SelectionStrategy) -> Selector {
        switch strategy {
        case .random: selectors[0]
        case .roundRobin: selectors[1]
        case .leastOutstanding: selectors[2]
        case .powerOfTwoChoices: selectors[3]
        }
    }

    func pick(_ service: String, _ options: CallOptions, _ selector: Selector, _ tried: inout TriedNodes,
              now: Int64 = Monotonic.now()) async throws -> (String, Selector.Pick?) {
        if let picked = try pickFromMemory(service, options, selector, &tried, now: now) { return picked }
        return try select(service, try await lookUp(service), options, selector, &tried, now: now)
    }

    /// ``pick(_:_:_:_:now:)`` without a suspension when it needs none: a direct address, or the
    /// registry's answer in memory (nearly every call). Nil: the registry must be asked.
    private func pickFromMemory(_ service: String, _ options: CallOptions, _ selector: Selector, _ tried: inout TriedNodes,
                                now: Int64, records: Bool = true) throws -> (String, Selector.Pick?)? {
        if let direct = options.address { return (direct, nil) }
        guard let services = cache.cached(service, now: now) else { return nil }
        return try select(service, services, options, selector, &tried, now: now, held: true, records: records)
    }

    private func select(_ service: String, _ services: [ServiceRecord], _ options: CallOptions, _ selector: Selector,
                        _ tried: inout TriedNodes, now: Int64, held: Bool = false, records: Bool = true) throws -> (String, Selector.Pick?) {
        // (counted through indices: a closure over the records would copy each, a reference
        // count per field)
        var nodes = 0
        for i in services.indices { nodes += services[i].nodes.count }
        if nodes == 0 { throw notFound(service) }
        if !tried.isEmpty && tried.count >= nodes { tried = TriedNodes() }
        // the client's selectors read the clock the client does (Monotonic): its time serves
        let pick = try selector.pick(services, filters: options.filters, tried: tried.isEmpty ? nil : { [tried] in tried.contains($0) },
                                     now: now, held: held)
        // (a unary call records the node only when it retries: most calls never do)
        if records { tried.insert(pick.node.id) }
        return (pick.node.address, pick)
    }

    /// Where one attempt goes, chosen without a suspension.
    private struct Route {
        let address: String
        let target: HTTPClient.TLSTarget?
        let version: HTTPClient.Version
        /// The node picked (nil: a direct address), shared with the answer; its record and when
        /// it was picked, for the selector's `finish`.
        let node: PickedNode?
        let stats: Selector.NodeStats?
        let started: Int64

        /// Tells the selector how the call on this route ended.
        func finish(_ selector: Selector, _ outcome: Selector.Outcome) {
            if let stats { selector.finish(stats, started: started, outcome: outcome) }
        }
    }

    /// How an attempt's answer ends the call, or not.
    private enum Outcome {
        case answer(ClientResponse)
        case retry(any Error)
        case fail(any Error)
    }

    /// The node of an attempt and how to reach it, when no suspension is needed (nil: the
    /// registry must be asked first). Synchronous and kept out of the async caller: its locks
    /// and closures then cost stack, not task allocations.
    @inline(never)
    private func route(_ service: String, _ options: CallOptions, _ selector: Selector, _ tried: inout TriedNodes,
                       _ shape: CallShape, now: Int64, services: [ServiceRecord]? = nil) throws -> Route? {
        let picked: String, pick: Selector.Pick?
        if let services {
            (picked, pick) = try select(service, services, options, selector, &tried, now: now, records: false)
        } else {
            guard let inMemory = try pickFromMemory(service, options, selector, &tried, now: now, records: false) else { return nil }
            (picked, pick) = inMemory
        }
        // (a pick from a memo shares its node object; any other makes one, once per call)
        let node = pick?.picked
        let (address, target, version) = transport(service, picked, node, grpc: shape.grpc, verifiesHostName: options.verifiesHostName)
        return Route(address: address, target: target, version: version, node: node, stats: pick?.stats, started: pick?.started ?? now)
    }

    /// What an attempt's answer means for the call; tells the selector how the node did.
    /// Synchronous, as ``route(_:_:_:_:_:now:services:)``; takes the response, whose body and
    /// fields go on into the answer without a copy.
    @inline(never)
    private func conclude(_ response: consuming HTTPClientResponse, _ route: borrowing Route, _ selector: Selector, _ shape: CallShape,
                          _ service: String) -> Outcome {
        switch Wire.decode(response, grpc: shape.grpc, service: service) {
        case .success(let body, let metadata):
            route.finish(selector, .success)
            return .answer(ClientResponse(body: body, metadata: metadata, answered: route.node))
        case .failure(let error) where error.code == 408 || error.code == 503:
            // the server says it could not (yet): another node may
            route.finish(selector, .failure)
            return .retry(error)
        case .failure(let error):
            route.finish(selector, .success)  // the node works; the call did not
            return .fail(error)
        }
    }

    /// What an attempt that got no answer means for the call; tells the selector how the node
    /// did.
    @inline(never)
    private func conclude(_ error: HTTPClientError, _ route: borrowing Route, _ selector: Selector, _ service: String, _ endpoint: String,
                          _ options: CallOptions) -> Outcome {
        route.finish(selector, error.kind == .connect ? .connectFailure : .failure)
        if error.kind == .cancelled { return .fail(CancellationError()) }
        if error.kind == .timeout { return .fail(timedOut(service, endpoint, options)) }
        guard error.neverProcessed else {
            return .fail(MicroError(id: "micro.client", code: 500, detail: "call to \(service).\(endpoint) at \(route.address) failed: \(error)"))
        }
        if error.kind == .connect { cache.invalidate(service) }
        return .retry(error)
    }

    /// Waits `nanoseconds` before a retry. Not inlined: the clock's instants it needs would
    /// cost every call a task allocation (see Monotonic).
    @inline(never)
    private static func pause(_ nanoseconds: Double) async throws {
        if nanoseconds > 0 { try await Task.sleep(for: .nanoseconds(Int64(nanoseconds))) }
    }

    /// The whole call, retries included, is bounded by the timeout: each HTTP call carries the
    /// deadline (the core resets the stream when it passes, so the handler is cancelled too), and
    /// no attempt or backoff starts after it.
    @inline(__always)  // one async frame for the call, not two
    private nonisolated(nonsending) func attempts(_ service: String, _ endpoint: String, _ message: [UInt8], _ options: CallOptions) async throws -> ClientResponse {
        // nanoseconds, not instants (see Monotonic)
        let started = Monotonic.now()
        let shape = shapes.shape(service: service, endpoint: endpoint, options: options)
        let timeout = shape.nanoseconds(of: options.timeout)
        let deadline = timeout > .max - started ? .max : started + timeout
        let selector = self.selector(options.strategy ?? defaultStrategy)
        var tried = TriedNodes()
        budget.deposit()
        // the first attempt here, the others (rare) in a function of their own: this async frame
        // holds what one attempt needs, not what a retry loop does too
        switch try await attempt(service, endpoint, message, options, shape, selector, &tried, deadline: deadline, now: started) {
        case .answer(let response): return response
        case .fail(let error): throw error
        case .retry(let error):
            return try await retry(service, endpoint, message, options, shape, selector, tried, deadline: deadline, after: error)
        }
    }

    /// The registry's nodes of `service` when they are not in memory (kept out of the call's
    /// async frame, as what is rare is).
    @inline(never)
    private func lookUp(_ service: String) async throws -> [ServiceRecord] {
        do {
            return try await cache.get(service)
        } catch {
            throw MicroError(id: "micro.client", code: 500, detail: "cannot look up service \(service): \(error)")
        }
    }

    @inline(never)
    private func notFound(_ service: String) -> MicroError {
        MicroError(id: "micro.client", code: 500, detail: "service \(service) not found")
    }

    /// One attempt: a node, the HTTP call, and what its answer means for the call.
    @inline(__always)
    private nonisolated(nonsending) func attempt(_ service: String, _ endpoint: String, _ message: [UInt8], _ options: CallOptions, _ shape: CallShape,
                         _ selector: Selector, _ tried: inout TriedNodes, deadline: Int64, now: Int64) async throws -> Outcome {
        guard deadline > now else { throw timedOut(service, endpoint, options) }
        // (bound once, not through an optional variable: each copy of a route costs a
        // reference count per field)
        let route: Route
        if let inMemory = try self.route(service, options, selector, &tried, shape, now: now) {
            route = inMemory
        } else if let looked = try self.route(service, options, selector, &tried, shape, now: now, services: try await lookUp(service)) {
            route = looked
        } else {
            return .retry(notFound(service))
        }
        let outcome: Outcome
        do {
            let response = try await http.request(address: route.address, path: shape.path, headers: shape.headers, body: message,
                                                  timeoutMilliseconds: Monotonic.millisecondsRoundedUp(deadline - now), flags: shape.flags,
                                                  tls: route.target, version: route.version)
            outcome = conclude(response, route, selector, shape, service)
        } catch {
            outcome = conclude(error, route, selector, service, endpoint, options)
        }
        // the next attempt goes to another node if there is one
        if case .retry = outcome, let node = route.node { tried.insert(node.node.id) }
        return outcome
    }

    /// The attempts after a first one that may be retried: on other nodes, after a backoff, while
    /// the retry budget and the deadline allow.
    @inline(never)
    private nonisolated(nonsending) func retry(_ service: String, _ endpoint: String, _ message: [UInt8], _ options: CallOptions, _ shape: CallShape,
                       _ selector: Selector, _ tried: TriedNodes, deadline: Int64, after firstError: any Error) async throws -> ClientResponse {
        var tried = tried
        var lastError = firstError
        for retry in 0..<max(0, options.retries) {
            guard budget.withdraw() else {
                logger.debug("retry budget exhausted for \(service).\(endpoint)")
                break
            }
            let cap = options.backoff.nanosecondsValue * pow(2, Double(retry))
            try await Self.pause(min(Double(deadline - Monotonic.now()), Double.random(in: 0...max(cap, 1))))
            switch try await attempt(service, endpoint, message, options, shape, selector, &tried, deadline: deadline, now: Monotonic.now()) {
            case .answer(let response): return response
            case .fail(let error): throw error
            case .retry(let error): lastError = error
            }
        }
        if let error = lastError as? MicroError { throw error }
        throw MicroError(id: "micro.client", code: 503, detail: "call to \(service).\(endpoint) failed after \(options.retries + 1) attempts: \(lastError)")
    }
}

/// The nodes a call tried, in order: the first without an allocation (most calls make one
/// attempt), the rest in a set.
struct TriedNodes {
    private var first: String?
    private var more: Set<String> = []

    var isEmpty: Bool { first == nil }
    var count: Int { first == nil ? 0 : 1 + more.count }

    func contains(_ id: String) -> Bool { id == first || (!more.isEmpty && more.contains(id)) }

    mutating func insert(_ id: String) {
        if first == nil { first = id } else if id != first { more.insert(id) }
    }
}
