import Foundation
public import Logging
public import MicroCore
public import ServiceLifecycle
import Synchronization

/// The front door: plain HTTP and JSON in, calls by name out. Browsers and scripts reach the
/// services through it without a framework client, and its dashboard shows them.
///
/// - `POST /api/{service}/{Endpoint.Method}` (or `/api/{service}/{Handler}/{Method}`) with a JSON
///   body: the call, through the registry and the selector (retries on another node included); the
///   answer's JSON back, or the micro error's JSON with its code as the HTTP status. Request
///   headers travel as the call's metadata (`Authorization` among them: the caller's token reaches
///   the service), but for those about this HTTP exchange alone (cookies, `Host`, framing).
/// - The same path with `Accept: text/event-stream` (`GET` with the request as `?request=JSON`,
///   as a browser's `EventSource` asks, or `POST` with a body): a server stream, each answer one
///   server-sent event, then an `end` event (or an `error` event with the error's JSON).
/// - `GET /services`, `GET /services/{name}` (the registry's JSON), `GET /stats/{name}` (each
///   node's `Debug.Health` and `Debug.Stats`), `GET /events/registry` (registry changes as
///   events), `POST /publish/{topic}`, `GET /events/topic/{topic}` (a topic's messages as events),
///   `GET /health`, and the dashboard at `/`.
/// - CORS for the origins allowed (``Options/allowedOrigins``), a body limit (413 past it), at most
///   ``Options/maxEventStreams`` event streams open at once (503 past it).
///
/// HTTP/1.1 and HTTP/2 on one port (TLS optional; then HTTP/2 by ALPN). A service embeds one with
/// `Gateway(client: service.client, subscriber: service.broker)` and ``start()``, or runs it in a
/// swift-service-lifecycle group (``run()``); `micro gateway` runs one on its own.
public final class Gateway: Sendable {
    public struct Options: Sendable {
        /// Where to listen, `HOST:PORT` (`:8080` by default, every interface; `:0` a free port).
        public var address: String
        /// Serve HTTPS (HTTP/2 and HTTP/1.1 by ALPN) with this certificate; nil: plaintext.
        public var tls: TLSConfig?
        /// The largest request body taken; a larger one is answered 413.
        public var maxBodyBytes: Int
        /// Origins whose pages may call the gateway from a browser (CORS): `*` any (no
        /// credentials are ever allowed: tokens go in `Authorization`), or exact origins such as
        /// `https://app.example.com`; empty: none (same-origin pages only, like the dashboard).
        public var allowedOrigins: [String]
        /// Each call's timeout, retries included (a `Timeout` header of the request, in
        /// seconds, may ask for less).
        public var callTimeout: Duration
        /// Event streams (server streams, registry and topic events) open at once.
        public var maxEventStreams: Int
        /// A comment line on an event stream this often, so that proxies keep an idle stream.
        public var keepAlive: Duration
        /// Serve the dashboard at `/`.
        public var dashboard: Bool
        /// How long requests in flight may finish when stopping.
        public var drainTimeout: Duration
        /// How long `GET /stats/{name}` waits for each node's health and stats (a node that does not
        /// answer in time is shown with the error, the others as usual).
        public var statsTimeout: Duration

        public init(address: String = ":8080", tls: TLSConfig? = nil, maxBodyBytes: Int = 1 << 20, allowedOrigins: [String] = ["*"],
                    callTimeout: Duration = .seconds(5), maxEventStreams: Int = 1024, keepAlive: Duration = .seconds(15),
                    dashboard: Bool = true, drainTimeout: Duration = .seconds(10), statsTimeout: Duration = .seconds(2)) {
            self.address = address
            self.tls = tls
            self.maxBodyBytes = maxBodyBytes
            self.allowedOrigins = allowedOrigins
            self.callTimeout = callTimeout
            self.maxEventStreams = maxEventStreams
            self.keepAlive = keepAlive
            self.dashboard = dashboard
            self.drainTimeout = drainTimeout
            self.statsTimeout = statsTimeout
        }
    }

    public let options: Options
    /// Makes the calls and publishes.
    public let client: Client
    let registry: any Registry
    /// Where topics are watched (`GET /events/topic/…`); nil: not offered (501).
    let subscriber: (any Broker)?
    let logger: Logger
    /// The client's options with the gateway's timeout and JSON: each call's start.
    let baseCallOptions: CallOptions

    struct State {
        var server: HTTPServer?
        var stopRequested = false
        var stopWaiter: CheckedContinuation<Void, Never>?
        var streams = 0
        var nextStream = 0
        /// Ends each open event stream (registry and topic events) when the gateway stops.
        var enders: [Int: @Sendable () -> Void] = [:]
    }
    let state = Mutex(State())
    let apiRoutes = Mutex(APIRoutes())

    /// A gateway calling through `client` (its registry, selector, interceptors, TLS and token),
    /// listing services from `registry` (the client's by default), and watching topics through
    /// `subscriber` (a broker that can receive: a service's own, or one of its own).
    public init(client: Client, registry: (any Registry)? = nil, subscriber: (any Broker)? = nil, options: Options = .init(),
                logger: Logger = Logger(label: "micro.gateway")) {
        self.client = client
        self.registry = registry ?? client.cache.registry
        self.subscriber = subscriber
        self.options = options
        self.logger = logger
        var base = client.options
        base.timeout = options.callTimeout
        base.contentType = "application/json"
        self.baseCallOptions = base
    }

    /// The port listened on, once started.
    public var port: Int? { state.withLock { $0.server?.port } }

    /// Binds and starts serving; returns the bound address. Throws a ``ConfigurationError`` for
    /// an address that does not parse, or the reason it cannot listen.
    @discardableResult
    public func start() throws -> (host: String, port: Int) {
        if let server = state.withLock({ $0.server }) { return (server.host, server.port) }
        let address = try ListenAddress(parsing: options.address, source: "the gateway's address")
        var config = HTTPServerConfiguration(host: address.host, port: address.port)
        config.maxBodyBytes = max(0, options.maxBodyBytes)
        config.tls = options.tls
        // no capture list: with one, Swift 6.3 makes the closure a plain `nonisolated` one, which
        // switches executors on entry, instead of the `nonsending` one its type asks for
        let server = try HTTPServer(configuration: config, logger: logger) { request, responder in
            await self.serve(request, responder)
        }
        state.withLock { $0.server = server }
        let shown = address.host.isEmpty ? "[::]" : (address.host.contains(":") ? "[\(address.host)]" : address.host)
        logger.info("gateway listening on \(shown):\(server.port)", metadata: server.isTLS ? ["tls": "on"] : nil)
        return (address.host, server.port)
    }

    /// Asks a running gateway to stop (any thread; idempotent): event streams end, requests in
    /// flight finish (at most ``Options/drainTimeout``), and ``run()`` returns.
    public func stop() {
        let (waiter, enders) = state.withLock { state in
            state.stopRequested = true
            defer {
                state.stopWaiter = nil
                state.enders = [:]
            }
            return (state.stopWaiter, Array(state.enders.values))
        }
        for end in enders { end() }
        waiter?.resume()
    }

    /// Stops a gateway started with ``start()`` and returns once every connection is closed.
    public func shutdown() async {
        stop()
        guard let server = state.withLock({ $0.server }) else { return }
        await server.shutdownGracefully(timeout: options.drainTimeout)
        state.withLock { $0.server = nil }
    }

    /// Serves until ``stop()``, task cancellation or a swift-service-lifecycle graceful shutdown,
    /// then drains and returns.
    public func run() async throws {
        try start()
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let now = state.withLock { state in
                        if state.stopRequested { return true }
                        state.stopWaiter = continuation
                        return false
                    }
                    if now { continuation.resume() }
                }
            } onCancel: {
                self.stop()
            }
        } onGracefulShutdown: {
            self.stop()
        }
        await shutdown()
    }
}

extension Gateway: ServiceLifecycle.Service {}

// MARK: - routing

extension Gateway {
    nonisolated(nonsending) func serve(_ request: HTTPServerRequest, _ responder: HTTPResponder) async {
        let target = request.path
        let cors = corsHeaders(request)
        // the calls first: a path called before is found whole, without reading it again
        if let known = apiRoutes.withLock({ $0.find(target) }) {
            return await api(request, responder, service: known.service, endpoint: known.endpoint, query: nil, cors)
        }
        let query = target.utf8.firstIndex(of: UInt8(ascii: "?"))
        let path = query.map { target[..<$0] } ?? target[...]
        if request.method == "OPTIONS" {
            return responder.send(preflight(request, cors))
        }
        // then read without splitting the path into strings: /api/SERVICE/Endpoint.Method
        if path.utf8.starts(with: Self.apiPrefix), let call = Self.apiCall(path) {
            guard let service = Self.name(call.service) else { return responder.send(badName(String(call.service), "service", cors)) }
            guard let endpoint = Self.name(call.endpoint), endpoint.utf8.contains(UInt8(ascii: ".")) else {
                return responder.send(failure(MicroError(id: "micro.gateway", code: 400,
                                                         detail: "'\(call.endpoint)' is not an endpoint: expected Handler.Method"), cors))
            }
            if query == nil { apiRoutes.withLock { $0.remember(target, service, endpoint) } }
            return await api(request, responder, service: service, endpoint: endpoint,
                             query: query.map { String(target[target.utf8.index(after: $0)...]) }, cors)
        }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst().map(String.init)
        guard let first = parts.first else { return responder.send(notFound(path, cors)) }
        let method = request.method
        switch (first, parts.count) {
        case ("", 1) where options.dashboard, ("index.html", 1) where options.dashboard:
            guard method == "GET" || method == "HEAD" else { return responder.send(notAllowed(method, allow: "GET", cors)) }
            return responder.send(asset(DashboardAssets.html, "text/html; charset=utf-8"))
        case ("dashboard.js", 1) where options.dashboard:
            return responder.send(asset(DashboardAssets.javascript, "text/javascript; charset=utf-8"))
        case ("dashboard.css", 1) where options.dashboard:
            return responder.send(asset(DashboardAssets.css, "text/css; charset=utf-8"))
        case ("health", 1):
            return responder.send(json(#"{"status":"SERVING"}"#, cors: cors))
        case ("services", 1):
            guard method == "GET" else { return responder.send(notAllowed(method, allow: "GET", cors)) }
            return responder.send(await listServices(cors))
        case ("services", 2), ("stats", 2):
            guard method == "GET" else { return responder.send(notAllowed(method, allow: "GET", cors)) }
            guard let name = Self.name(parts[1]) else { return responder.send(badName(parts[1], "service", cors)) }
            return responder.send(first == "services" ? await describe(name, cors) : await stats(name, cors))
        case ("publish", 2):
            guard method == "POST" else { return responder.send(notAllowed(method, allow: "POST", cors)) }
            guard let topic = Self.name(parts[1]) else { return responder.send(badName(parts[1], "topic", cors)) }
            return responder.send(await publish(request, topic, cors))
        case ("events", 2) where parts[1] == "registry":
            guard method == "GET" else { return responder.send(notAllowed(method, allow: "GET", cors)) }
            return await registryEvents(responder, cors)
        case ("events", 3) where parts[1] == "topic":
            guard method == "GET" else { return responder.send(notAllowed(method, allow: "GET", cors)) }
            guard let topic = Self.name(parts[2]) else { return responder.send(badName(parts[2], "topic", cors)) }
            return await topicEvents(responder, topic, cors)
        default:
            return responder.send(notFound(path, cors))
        }
    }

    static let apiPrefix = "/api/".utf8

    /// `/api/SERVICE/Endpoint.Method` or `/api/SERVICE/Handler/Method`: the two names as they
    /// are in the path (not decoded yet); nil for any other shape.
    static func apiCall(_ path: Substring) -> (service: Substring, endpoint: String)? {
        let utf8 = path.utf8
        let start = utf8.index(utf8.startIndex, offsetBy: apiPrefix.count)
        guard let slash = utf8[start...].firstIndex(of: UInt8(ascii: "/")) else { return nil }
        let rest = utf8.index(after: slash)
        let service = path[start..<slash]
        guard let second = utf8[rest...].firstIndex(of: UInt8(ascii: "/")) else { return (service, String(path[rest...])) }
        let method = path[utf8.index(after: second)...]
        guard !method.utf8.contains(UInt8(ascii: "/")) else { return nil }
        return (service, path[rest..<second] + "." + method)
    }

    /// A call (`POST`) or a server stream (`Accept: text/event-stream`, `GET` or `POST`) of an
    /// endpoint whose names are valid.
    nonisolated(nonsending) func api(_ request: HTTPServerRequest, _ responder: HTTPResponder, service: String, endpoint: String,
                                     query: String?, _ cors: HTTPHeaders) async {
        let method = request.method
        if method == "GET" || method == "POST", let accept = request.header("accept"), accept.contains("text/event-stream") {
            return await serverStream(request, responder, service, endpoint, query: query, cors)
        }
        guard method == "POST" else {
            if method == "OPTIONS" { return responder.send(preflight(request, cors)) }
            return responder.send(notAllowed(method, allow: "POST", cors))
        }
        responder.send(await call(request, service, endpoint, cors))
    }

    /// `/api/…` paths (without a query) already called, with the names they hold: a path is read
    /// and its names checked once, not on every call. At most `capacity`, the oldest replaced
    /// first, so that callers naming ever new paths cannot grow it.
    struct APIRoutes {
        static let capacity = 16
        private var entries: [(target: String, service: String, endpoint: String)] = []
        private var next = 0

        func find(_ target: String) -> (service: String, endpoint: String)? {
            for entry in entries where entry.target == target { return (entry.service, entry.endpoint) }
            return nil
        }

        mutating func remember(_ target: String, _ service: String, _ endpoint: String) {
            guard find(target) == nil else { return }
            if entries.count < Self.capacity {
                entries.append((target, service, endpoint))
            } else {
                entries[next] = (target, service, endpoint)
                next = (next + 1) % Self.capacity
            }
        }
    }

    /// A path segment, percent-decoded, if it is a name: a service, an endpoint or a topic
    /// (letters, digits and `. _ - : * >`; at most 256 bytes).
    static func name(_ segment: some StringProtocol) -> String? {
        if segment.utf8.allSatisfy(isNameByte), !segment.isEmpty, segment.utf8.count <= 256 { return String(segment) }
        // escaped: decoded, then the same rule
        guard segment.utf8.contains(UInt8(ascii: "%")), let decoded = String(segment).removingPercentEncoding,
              !decoded.isEmpty, decoded.utf8.count <= 256, decoded.utf8.allSatisfy(isNameByte) else { return nil }
        return decoded
    }

    @inline(__always)
    static func isNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: ":"), UInt8(ascii: "*"), UInt8(ascii: ">"):
            true
        default:
            false
        }
    }

    // MARK: calls

    /// Request headers that are about this HTTP exchange only, never a call's metadata (and,
    /// by prefix, `:…`, `sec-…` and `access-control-…`).
    static let localHeaders = [
        "host", "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer",
        "content-length", "content-type", "accept", "accept-encoding", "accept-language", "user-agent", "origin", "referer",
        "cookie", "cache-control", "pragma", "priority", "dnt", "timeout", "last-event-id",
        "micro-endpoint", "micro-service", "micro-method", "micro-stream", "micro-id", "micro-topic", "micro-from-service",
    ]

    /// `localHeaders` packed in one array of bytes, each name with its offset and length: a name
    /// is compared with the few of its length, with no array per name to count references of.
    private static let localHeaderBytes: [UInt8] = localHeaders.flatMap(\.utf8)
    private static let localHeaderSpans: [(offset: Int, length: Int)] = {
        var offset = 0
        return localHeaders.map { name in
            defer { offset += name.utf8.count }
            return (offset, name.utf8.count)
        }
    }()

    /// Whether a request header travels as the call's metadata. Looks at the bytes (names in
    /// any case), making nothing: most of a request's headers are not kept.
    static func isMetadata(_ name: UnsafeRawBufferPointer) -> Bool {
        guard let first = name.first else { return false }
        switch lowered(first) {
        case UInt8(ascii: ":"): return false
        case UInt8(ascii: "s"): if startsIgnoringCase(name, "sec-") { return false }
        case UInt8(ascii: "a"): if startsIgnoringCase(name, "access-control-") { return false }
        default: break
        }
        return localHeaderBytes.withUnsafeBytes { bytes in
            for span in localHeaderSpans where span.length == name.count
                && HTTPHeaders.equalIgnoringCase(name, UnsafeRawBufferPointer(rebasing: bytes[span.offset..<(span.offset + span.length)])) {
                return false
            }
            return true
        }
    }

    private static func startsIgnoringCase(_ name: UnsafeRawBufferPointer, _ prefix: StaticString) -> Bool {
        name.count >= prefix.utf8CodeUnitCount
            && HTTPHeaders.equalIgnoringCase(UnsafeRawBufferPointer(rebasing: name[..<prefix.utf8CodeUnitCount]),
                                             UnsafeRawBufferPointer(start: prefix.utf8Start, count: prefix.utf8CodeUnitCount))
    }

    @inline(__always)
    private static func lowered(_ byte: UInt8) -> UInt8 {
        (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte) ? byte | 0x20 : byte
    }

    private static let timeoutName = Array("timeout".utf8)

    /// The call's options: the caller's headers as metadata, the timeout (the request's own
    /// `Timeout`, in seconds, when it is shorter).
    func callOptions(_ request: HTTPServerRequest) -> CallOptions {
        var options = baseCallOptions
        var timeoutSeen = false
        request.headers.forEachField { name, value in
            guard Self.isMetadata(name) else {
                // the first `Timeout` counts
                if !timeoutSeen, Self.timeoutName.withUnsafeBytes({ HTTPHeaders.equalIgnoringCase(name, $0) }) {
                    timeoutSeen = true
                    if let asked = Double(String(decoding: value, as: UTF8.self)), asked > 0, .milliseconds(Int(asked * 1000)) < options.timeout {
                        options.timeout = .milliseconds(max(1, Int(asked * 1000)))
                    }
                }
                return
            }
            options.metadata[Self.canonical(name)] = String(decoding: value, as: UTF8.self)
        }
        return options
    }

    /// A header name as Go's net/http writes it (`x-request-id` → `X-Request-Id`): HTTP/2 sends
    /// names in lower case, and a message's headers are a plain map that go-micro's services read
    /// by the canonical name.
    static func canonical(_ name: UnsafeRawBufferPointer) -> String {
        var upper = true
        return String(unsafeUninitializedCapacity: name.count) { out in
            for (i, byte) in name.enumerated() {
                let lower = lowered(byte)
                out[i] = upper && (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(lower) ? lower - 32 : lower
                upper = byte == UInt8(ascii: "-")
            }
            return name.count
        }
    }

    /// Why a body cannot be a call's JSON request, if it cannot.
    static func contentTypeProblem(_ request: HTTPServerRequest) -> MicroError? {
        guard let given = request.header("content-type"), !given.isEmpty, given != "application/json" else { return nil }
        let type = given.lowercased()
        let media = type.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        // curl -d sends its JSON as a form unless told otherwise: taken as the JSON it is
        if media == "application/json" || media.hasSuffix("+json") || media == "text/plain" || media == "application/x-www-form-urlencoded" { return nil }
        return MicroError(id: "micro.gateway", code: 415, detail: "the gateway takes JSON requests, not \(media)")
    }

    /// Whether the service is registered, and the endpoint too when the service lists its
    /// endpoints: nil if so, else the 404 to answer.
    func missing(_ service: String, _ endpoint: String) async -> MicroError? {
        let records: [ServiceRecord]
        if let cached = client.cache.cached(service, now: Monotonic.now()) {
            records = cached
        } else {
            do {
                records = try await client.cache.get(service)
            } catch {
                return MicroError(id: "micro.gateway", code: 503, detail: "cannot look up service \(service): \(error)")
            }
        }
        // (on every call: loops, no arrays made)
        var hasNodes = false, listed = false, found = false
        for record in records {
            if !record.nodes.isEmpty { hasNodes = true }
            for known in record.endpoints where !found {
                listed = true
                found = known.name == endpoint
            }
        }
        if !hasNodes { return serviceNotFound(service) }
        if listed && !found { return MicroError(id: "micro.gateway", code: 404, detail: "endpoint \(endpoint) not found on service \(service)") }
        return nil
    }

    private func serviceNotFound(_ service: String) -> MicroError {
        MicroError(id: "micro.gateway", code: 404, detail: "service \(service) not found")
    }

    nonisolated(nonsending) func call(_ request: HTTPServerRequest, _ service: String, _ endpoint: String, _ cors: HTTPHeaders) async -> HTTPServerResponse {
        if let problem = Self.contentTypeProblem(request) { return failure(problem, cors) }
        let body = request.body.isEmpty ? Array("{}".utf8) : request.body
        do {
            let answer = try await client.call(service, endpoint, body: body, options: callOptions(request))
            return HTTPServerResponse(status: 200, headers: jsonHeaders(cors), body: answer.body)
        } catch let error as MicroError where error.id == "micro.client" && error.code == 500 {
            // the client found no node (go-micro's 500): a service that is not there is a 404 here.
            // Asked only now, not before every call (an endpoint the service does not have, it
            // answers 404 itself)
            return failure(await missing(service, endpoint) ?? error, cors)
        } catch {
            return failure(error, cors)
        }
    }

    func publish(_ request: HTTPServerRequest, _ topic: String, _ cors: HTTPHeaders) async -> HTTPServerResponse {
        if let problem = Self.contentTypeProblem(request) { return failure(problem, cors) }
        do {
            try await client.publish(topic, body: request.body.isEmpty ? Array("{}".utf8) : request.body,
                                     options: PublishOptions(wait: .queued), metadata: callOptions(request).metadata)
            return json("{}", cors: cors)
        } catch {
            return failure(error, cors)
        }
    }

    // MARK: the registry

    struct Listed: Encodable {
        var name: String
        var version: String
    }

    func listServices(_ cors: HTTPHeaders) async -> HTTPServerResponse {
        do {
            let records = try await registry.listServices()
            let listed = records.map { Listed(name: $0.name, version: $0.version) }
                .sorted { ($0.name, $0.version) < ($1.name, $1.version) }
            return json(try Self.encoder.encode(listed), cors: cors)
        } catch {
            return failure(MicroError(id: "micro.gateway", code: 503, detail: "cannot list the services: \(error)"), cors)
        }
    }

    func describe(_ name: String, _ cors: HTTPHeaders) async -> HTTPServerResponse {
        do {
            let records = try await registry.getService(name)
            guard !records.isEmpty else { return failure(MicroError(id: "micro.gateway", code: 404, detail: "service \(name) not found"), cors) }
            return json(try Self.encoder.encode(records), cors: cors)
        } catch {
            return failure(MicroError(id: "micro.gateway", code: 503, detail: "cannot look up service \(name): \(error)"), cors)
        }
    }

    struct NodeStats: Encodable {
        var id: String
        var address: String
        var health: String?
        var stats: Debug.Stats?
        var error: String?

        func encode(to encoder: any Encoder) throws {
            // every key, null included: the dashboard reads them all
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(id, forKey: .id)
            try c.encode(address, forKey: .address)
            try c.encode(health, forKey: .health)
            try c.encode(stats, forKey: .stats)
            try c.encode(error, forKey: .error)
        }

        enum CodingKeys: String, CodingKey { case id, address, health, stats, error }
    }

    /// Each node's `Debug.Health` and `Debug.Stats`, asked of that node (all at once, each within
    /// two seconds).
    func stats(_ name: String, _ cors: HTTPHeaders) async -> HTTPServerResponse {
        let records: [ServiceRecord]
        do {
            records = try await registry.getService(name)
        } catch {
            return failure(MicroError(id: "micro.gateway", code: 503, detail: "cannot look up service \(name): \(error)"), cors)
        }
        let nodes = records.flatMap(\.nodes)
        guard !nodes.isEmpty else { return failure(MicroError(id: "micro.gateway", code: 404, detail: "service \(name) not found"), cors) }
        let client = self.client, timeout = options.statsTimeout
        let results = await withTaskGroup(of: (Int, NodeStats).self) { group in
            for (i, node) in nodes.enumerated() {
                group.addTask {
                    var options = client.options
                    options.timeout = timeout
                    options.retries = 0
                    options.filters = [NodeFilter { $1.id == node.id }]
                    var result = NodeStats(id: node.id, address: node.address)
                    do {
                        let health: Debug.HealthResponse = try await client.call(name, "Debug.Health", Debug.HealthRequest(), options: options)
                        result.health = health.status
                        result.stats = try await client.call(name, "Debug.Stats", Debug.StatsRequest(), options: options)
                    } catch {
                        result.error = (error as? MicroError)?.detail ?? "\(error)"
                    }
                    return (i, result)
                }
            }
            var all: [(Int, NodeStats)] = []
            for await result in group { all.append(result) }
            return all.sorted { $0.0 < $1.0 }.map(\.1)
        }
        do {
            return json(try Self.encoder.encode(results), cors: cors)
        } catch {
            return failure(error, cors)
        }
    }

    // MARK: answers

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    static let jsonOnly = HTTPHeaders([("content-type", "application/json")]).frozen()

    func jsonHeaders(_ cors: HTTPHeaders) -> HTTPHeaders {
        if cors.isEmpty { return Self.jsonOnly }
        var headers = cors
        headers["content-type"] = "application/json"
        return headers
    }

    func json(_ body: some Collection<UInt8>, status: Int = 200, cors: HTTPHeaders) -> HTTPServerResponse {
        HTTPServerResponse(status: status, headers: jsonHeaders(cors), body: Array(body))
    }

    func json(_ text: String, status: Int = 200, cors: HTTPHeaders) -> HTTPServerResponse {
        json(Array(text.utf8), status: status, cors: cors)
    }

    /// A micro error's JSON with its code as the status (a code that is no HTTP error status:
    /// 500); any other error as a 500 of the gateway's.
    func failure(_ error: any Error, _ cors: HTTPHeaders) -> HTTPServerResponse {
        let micro = error as? MicroError ?? MicroError(id: "micro.gateway", code: 500, detail: "\(error)")
        let status = (400...599).contains(micro.code) ? micro.code : 500
        return json(micro.json, status: status, cors: cors)
    }

    func notFound(_ path: some StringProtocol, _ cors: HTTPHeaders) -> HTTPServerResponse {
        failure(MicroError(id: "micro.gateway", code: 404, detail: "nothing at \(path): calls are POST /api/{service}/{Endpoint.Method}"), cors)
    }

    func notAllowed(_ method: String, allow: String, _ cors: HTTPHeaders) -> HTTPServerResponse {
        var response = failure(MicroError(id: "micro.gateway", code: 405, detail: "\(method) is not allowed here (\(allow))"), cors)
        response.headers["allow"] = allow
        return response
    }

    func badName(_ segment: some StringProtocol, _ what: String, _ cors: HTTPHeaders) -> HTTPServerResponse {
        failure(MicroError(id: "micro.gateway", code: 400, detail: "'\(segment)' is not a \(what) name (letters, digits and . _ - : only)"), cors)
    }

    func asset(_ text: String, _ type: String) -> HTTPServerResponse {
        HTTPServerResponse(status: 200, headers: ["content-type": type, "cache-control": "no-cache", "x-content-type-options": "nosniff"],
                           body: Array(text.utf8))
    }

    // MARK: CORS

    /// The CORS fields of an answer to `request`: none without an `Origin`, or for an origin not
    /// allowed (the browser then keeps the answer from the page).
    func corsHeaders(_ request: HTTPServerRequest) -> HTTPHeaders {
        guard let origin = request.header("origin"), !options.allowedOrigins.isEmpty else { return [:] }
        if options.allowedOrigins.contains("*") {
            return ["access-control-allow-origin": "*", "access-control-expose-headers": "content-type"]
        }
        guard options.allowedOrigins.contains(origin) else { return [:] }
        return ["access-control-allow-origin": origin, "vary": "Origin", "access-control-expose-headers": "content-type"]
    }

    /// A browser's preflight: the methods and the headers it asked for, if its origin is allowed
    /// (204 either way; without the fields the browser does not send the request).
    func preflight(_ request: HTTPServerRequest, _ cors: HTTPHeaders) -> HTTPServerResponse {
        var headers = cors
        if !cors.isEmpty {
            headers["access-control-allow-methods"] = "GET, POST, OPTIONS"
            headers["access-control-allow-headers"] = request.header("access-control-request-headers") ?? "authorization, content-type"
            headers["access-control-max-age"] = "600"
        }
        return HTTPServerResponse(status: 204, headers: headers)
    }
}
