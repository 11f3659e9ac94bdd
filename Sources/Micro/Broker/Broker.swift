import Foundation
public import MicroCore

/// Asynchronous messaging: publish to a topic, subscribe to it. Plain subscriptions each get
/// every message; subscriptions sharing a `queue` name share the messages (each goes to one of
/// them). Every part is swappable: `http` (the default, go-micro's wire, over the framework's own
/// transport) and `memory` (in-process) ship with the framework.
///
/// Threading: every method may be called from any task.
public protocol Broker: Sendable {
    /// Makes the broker ready (lazily called by `publish` and `subscribe`).
    func connect() async throws
    /// Unsubscribes everything and stops delivering; messages still queued are dropped (logged).
    func disconnect() async
    /// Hands `message` to the broker. Returns when the broker has queued it (`.queued`) or when
    /// every subscriber group known at publish time has acknowledged it (`.delivered`).
    func publish(_ topic: String, _ message: BrokerMessage, options: PublishOptions) async throws
    /// Subscribes `handler` to `topic`; a handler that throws gets the message again (bounded).
    func subscribe(
        _ topic: String,
        queue: String?,
        _ handler: @escaping @Sendable (BrokerEvent) async throws -> Void
    ) async throws -> BrokerSubscription
    /// Its name in ``Brokers/plugins`` and in the registry's node metadata (`broker=http`).
    var name: String { get }
    /// Throws why the broker cannot deliver now (disconnected from its server, ...): the
    /// service's `broker` health check, critical while it has subscriptions. Default: healthy
    /// (the HTTP and memory brokers deliver while the service itself serves).
    func checkHealth() async throws
}

extension Broker {
    public var name: String { "\(type(of: self))".lowercased() }
    public func checkHealth() async throws {}
}

/// A message as go-micro's brokers carry it: headers and a body. Its JSON is go-micro's too:
/// `{"Header":{...},"Body":"<base64>"}`.
public struct BrokerMessage: Codable, Sendable, Equatable {
    public var header: [String: String]
    public var body: [UInt8]

    public init(header: [String: String] = [:], body: [UInt8]) {
        self.header = header
        self.body = body
    }

    enum CodingKeys: String, CodingKey {
        case header = "Header", body = "Body"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        header = try c.decodeIfPresent([String: String].self, forKey: .header) ?? [:]
        let text = try c.decodeIfPresent(String.self, forKey: .body) ?? ""
        guard let data = Data(base64Encoded: text) else {
            throw DecodingError.dataCorruptedError(forKey: .body, in: c, debugDescription: "Body is not base64")
        }
        body = Array(data)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(header, forKey: .header)
        try c.encode(Data(body).base64EncodedString(), forKey: .body)
    }

    /// The topic it was published to (`Micro-Topic`).
    public var topic: String? { header["Micro-Topic"] }
}

/// A message as a subscription's handler receives it.
public struct BrokerEvent: Sendable {
    public var topic: String
    public var message: BrokerMessage
    /// The loop the delivery arrived on, if it came over the network.
    public var eventLoop: EventLoop?
    /// Who delivered it, as the transport knows (the publisher's mutual-TLS identity over the HTTP
    /// broker with TLS; empty otherwise).
    public var peer: Peer

    public init(topic: String, message: BrokerMessage, eventLoop: EventLoop? = nil, peer: Peer = Peer()) {
        self.topic = topic
        self.message = message
        self.eventLoop = eventLoop
        self.peer = peer
    }
}

/// How `publish` returns.
public struct PublishOptions: Sendable {
    public enum Wait: Sendable {
        /// Once the broker has queued the message (it then delivers and retries on its own).
        case queued
        /// Once every subscriber group known at publish time acknowledged it (or it failed).
        case delivered
    }

    public var wait: Wait
    public init(wait: Wait = .queued) { self.wait = wait }
}

/// A live subscription; `unsubscribe()` ends it (and removes its registry entry).
public final class BrokerSubscription: Sendable {
    public let topic: String
    public let queue: String?
    private let onUnsubscribe: @Sendable () async -> Void

    public init(topic: String, queue: String?, onUnsubscribe: @escaping @Sendable () async -> Void) {
        self.topic = topic
        self.queue = queue
        self.onUnsubscribe = onUnsubscribe
    }

    public func unsubscribe() async { await onUnsubscribe() }
}

/// The brokers a process can use, by name: `MICRO_BROKER=http` (the default) or `memory`, and
/// those plugin products add to ``plugins``.
public enum Brokers {
    /// The named broker factories; `MICRO_BROKER` picks one. A client makes its broker here with
    /// its own registry, connection pool and logger in the context.
    public static let plugins = PluginTable<any Broker>(kind: "broker", variable: "MICRO_BROKER", defaultName: "http", builtIn: [
        "http": { context in
            let policy = HTTPBroker.Policy.fromEnvironment(context.environment)
            if let (cache, http) = context.client {
                // publishing finds subscribers in the client's registry and reaches them over its connections
                return HTTPBroker(cache: cache, http: http, ownsHTTP: false, policy: policy, eventLoopGroup: context.eventLoopGroup,
                                  logger: context.logger)
            }
            return HTTPBroker(registry: context.registry, policy: policy, eventLoopGroup: context.eventLoopGroup, logger: context.logger)
        },
        // the process's one in-process broker: every service and client of the process shares it
        "memory": { _ in memory },
    ])

    static let memory = MemoryBroker()

    /// One per process, used by clients that were not given one.
    public static let `default`: any Broker = fromEnvironment()

    /// The broker `environment` names (`http` if it names none known).
    public static func fromEnvironment(_ environment: [String: String] = MicroConfig.process.frameworkEnvironment) -> any Broker {
        (try? plugins.make(PluginContext(environment: environment))) ?? HTTPBroker()
    }

    /// Why `MICRO_BROKER` names no broker, if it does not (``fromEnvironment(_:)`` then falls
    /// back to `http`; a service refuses to start).
    public static func environmentError(_ environment: [String: String] = MicroConfig.process.frameworkEnvironment) -> String? {
        plugins.problem(environment)
    }
}
