import Foundation
public import Logging
public import MicroCore
import Synchronization

/// The default broker, wire-compatible with go-micro's `http` broker: each subscription registers
/// a node of the pseudo-service `micro.http.broker` (version = the queue name, or
/// `ff.http.broadcast`; node metadata `broker=http`, `topic=...`), and publishers `POST`
/// `{"Header":{...},"Body":"<base64>"}` to `/?id=NODE` of the subscriber nodes they find in the
/// registry: all nodes of the broadcast group, one node of each queue group.
///
/// Unlike go-micro: deliveries travel over the framework's HTTP/2 client; a subscriber answers
/// 500 with the error when its handler throws, and the message is delivered again; failed
/// deliveries are retried with backoff from a bounded queue per topic for `retryWindow`; a
/// subscriber attached to a ``Service`` is reached on the service's own address (no second port).
public final class HTTPBroker: MountedBroker {
    /// Limits and timings of delivery.
    public struct Policy: Sendable {
        /// Messages per topic being delivered at once; `publish` fails with 503 beyond.
        public var queueLimit: Int
        /// How long a message is retried before it is dropped (logged, counted).
        public var retryWindow: Duration
        /// Rounds of delivery attempts before a message is dropped.
        public var maxAttempts: Int
        /// First retry delay, doubled each round (with jitter) up to `maxBackoff`.
        public var backoff: Duration
        public var maxBackoff: Duration
        /// Registration of subscriber nodes (as services: 15 s, refreshed every 5 s; the `http`
        /// plugin takes `MICRO_REGISTER_TTL` / `MICRO_REGISTER_INTERVAL`).
        public var registerTTL: Duration
        public var registerInterval: Duration

        public init(
            queueLimit: Int = 1024,
            retryWindow: Duration = .seconds(60),
            maxAttempts: Int = 60,
            backoff: Duration = .milliseconds(50),
            maxBackoff: Duration = .seconds(2),
            registerTTL: Duration = .seconds(15),
            registerInterval: Duration = .seconds(5)
        ) {
            self.queueLimit = queueLimit
            self.retryWindow = retryWindow
            self.maxAttempts = maxAttempts
            self.backoff = backoff
            self.maxBackoff = maxBackoff
            self.registerTTL = registerTTL
            self.registerInterval = registerInterval
        }
    }

    /// The registry name subscriber nodes register under (go-micro's).
    public static let serviceName = "micro.http.broker"
    /// The version of subscriptions without a queue (go-micro's marker).
    public static let broadcast = "ff.http.broadcast"

    public let policy: Policy
    public var name: String { "http" }
    let registry: any Registry
    let cache: RegistryCache
    let http: HTTPClient
    let group: EventLoopGroup
    let logger: Logger
    /// Whether `http` is this broker's own (closed on disconnect) or a client's it shares.
    private let ownsHTTP: Bool

    struct Subscription {
        var topic: String
        var record: ServiceRecord
        var handler: @Sendable (BrokerEvent) async throws -> Void
    }

    struct State {
        var subscriptions: [String: Subscription] = [:]  // by node id
        var address: String?  // where subscriber nodes are reached
        var tlsIdentity: String?  // set when that address serves TLS
        var server: HTTPServer?  // our own listener when not attached to a service
        var heartbeat: Task<Void, Never>?
        var pending: [String: Int] = [:]  // deliveries in progress per topic
    }

    let state = Mutex(State())

    public convenience init(
        registry: (any Registry)? = nil,
        policy: Policy = .init(),
        eventLoopGroup: EventLoopGroup = .shared,
        logger: Logger = Logger(label: "micro.broker")
    ) {
        let registry = registry ?? Registries.default
        self.init(cache: RegistryCache(registry: registry, logger: logger), http: HTTPClient(group: eventLoopGroup), ownsHTTP: true,
                  policy: policy, eventLoopGroup: eventLoopGroup, logger: logger)
    }

    /// A broker that looks subscribers up in a client's registry cache and delivers over its
    /// connections: one watch and one connection pool per client, not two.
    init(cache: RegistryCache, http: HTTPClient, ownsHTTP: Bool, policy: Policy = .init(), eventLoopGroup: EventLoopGroup, logger: Logger) {
        self.registry = cache.registry
        self.cache = cache
        self.http = http
        self.ownsHTTP = ownsHTTP
        self.group = eventLoopGroup
        self.policy = policy
        self.logger = logger
    }

    /// Serves deliveries on a service's listener (`address` = its advertised `host:port`); the
    /// service routes `POST /?id=...` to ``receive(_:)``.
    /// With `tlsIdentity` (the service serves TLS), subscriber nodes say so and publishers reach
    /// them over TLS, expecting that identity.
    public func attach(address: String, tlsIdentity: String? = nil) {
        state.withLock {
            $0.address = address
            $0.tlsIdentity = tlsIdentity
        }
    }

    /// The address subscriber nodes are reached on, once listening.
    public var address: String? { state.withLock { $0.address } }

    public func connect() async throws {
        if state.withLock({ $0.address != nil }) { return }
        // not attached to a service: a listener of our own (MICRO_BROKER_ADDRESS, else loopback)
        let text = MicroConfig.process.frameworkEnvironment["MICRO_BROKER_ADDRESS"].flatMap { $0.isEmpty ? nil : $0 } ?? "127.0.0.1:0"
        let listen = try ListenAddress(parsing: text, source: "MICRO_BROKER_ADDRESS")
        let server = try HTTPServer(group: group, configuration: .init(host: listen.host, port: listen.port), logger: logger) {
            [weak self] request, responder in
            guard let self else { return responder.send(HTTPServerResponse(status: 503)) }
            responder.send(await self.receive(request))
        }
        let host = ["", "::", "0.0.0.0"].contains(listen.host) ? "127.0.0.1" : (listen.host.contains(":") ? "[\(listen.host)]" : listen.host)
        let raced = state.withLock { state -> Bool in
            if state.address != nil { return true }
            state.server = server
            state.address = "\(host):\(server.port)"
            return false
        }
        if raced { server.shutdown() } else { logger.info("broker listening on \(host):\(server.port)") }
    }

    public func disconnect() async {
        let (subscriptions, heartbeat, server) = state.withLock { state in
            defer {
                state.subscriptions = [:]
                state.heartbeat = nil
                state.server = nil
            }
            return (Array(state.subscriptions.values), state.heartbeat, state.server)
        }
        heartbeat?.cancel()
        for subscription in subscriptions { try? await registry.deregister(subscription.record) }
        if let server {
            await server.shutdownGracefully(timeout: .seconds(5))
            state.withLock { $0.address = nil }
        }
        if ownsHTTP { await http.close() }
    }

    public func subscribe(
        _ topic: String,
        queue: String? = nil,
        _ handler: @escaping @Sendable (BrokerEvent) async throws -> Void
    ) async throws -> BrokerSubscription {
        try await connect()
        guard let address = self.address else { throw MicroError(id: "micro.broker", code: 500, detail: "broker has no address") }
        // go-micro's keys, then the HTTP we serve (publishers without it speak HTTP/1.1, as to go-micro)
        var metadata = ["broker": "http", "topic": topic, "secure": "false", "protocols": "http/1.1,h2c"]
        if let identity = state.withLock({ $0.tlsIdentity }) {
            metadata["secure"] = "true"
            metadata["tls"] = "required"
            metadata["identity"] = identity
            metadata["protocols"] = "http/1.1,h2"
        }
        let node = Node(id: "\(topic)-\(UUID().uuidString.lowercased())", address: address, metadata: metadata)
        let record = ServiceRecord(name: Self.serviceName, version: queue ?? Self.broadcast, nodes: [node])
        state.withLock { $0.subscriptions[node.id] = Subscription(topic: topic, record: record, handler: handler) }
        do {
            try await registry.register(record, ttl: policy.registerTTL)
        } catch {
            state.withLock { _ = $0.subscriptions.removeValue(forKey: node.id) }
            throw error
        }
        startHeartbeat()
        logger.debug("subscribed to \(topic) as \(node.id)")
        return BrokerSubscription(topic: topic, queue: queue) { [weak self] in
            guard let self else { return }
            let removed = self.state.withLock { $0.subscriptions.removeValue(forKey: node.id) }
            if removed != nil { try? await self.registry.deregister(record) }
        }
    }

    /// Keeps subscriber nodes registered. A subscription outlives the call that made it, so this
    /// is a task of the broker's own, cancelled by `disconnect()`.
    private func startHeartbeat() {
        state.withLock { state in
            guard state.heartbeat == nil else { return }
            state.heartbeat = Task { [weak self, interval = policy.registerInterval] in
                while (try? await Task.sleep(for: interval)) != nil {
                    guard let self else { return }
                    for subscription in self.state.withLock({ Array($0.subscriptions.values) }) {
                        do {
                            try await self.registry.register(subscription.record, ttl: self.policy.registerTTL)
                        } catch {
                            self.logger.warning("cannot refresh the subscription to \(subscription.topic): \(error)")
                        }
                    }
                }
            }
        }
    }

    deinit {
        state.withLock { $0.heartbeat?.cancel() }
    }
}


extension HTTPBroker.Policy {
    /// The defaults, with subscriber nodes registered as services are: `MICRO_REGISTER_TTL`,
    /// `MICRO_REGISTER_INTERVAL` of `environment` (the framework's, by default).
    public static func fromEnvironment(_ environment: [String: String] = MicroConfig.process.frameworkEnvironment) -> Self {
        var policy = Self()
        if let ttl = Duration.seconds(fromEnvironment: "MICRO_REGISTER_TTL", environment) { policy.registerTTL = ttl }
        if let every = Duration.seconds(fromEnvironment: "MICRO_REGISTER_INTERVAL", environment) { policy.registerInterval = every }
        return policy
    }
}
