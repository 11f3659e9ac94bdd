import Foundation
public import Logging
public import Micro
public import MicroCore
import Synchronization

/// NATS for swift-micro: the broker (`MICRO_BROKER=nats`) and the client under it
/// (``NATSClient``).
///
/// Call ``install()`` once, before the first service or client is made, so that the framework's
/// plugin table knows the name:
///
/// ```swift
/// import Micro
/// import MicroNATS
///
/// MicroNATS.install()
/// let service = Service(name: "orders")   // MICRO_BROKER=nats MICRO_BROKER_ADDRESS=nats://10.0.0.1:4222,nats://10.0.0.2:4222
/// ```
public enum MicroNATS {
    /// Adds `nats` to ``Brokers/plugins``. Safe to call more than once.
    public static func install() {
        Brokers.plugins.register("nats") { context in
            NATSBroker(options: try NATSBroker.options(context.environment), eventLoopGroup: context.eventLoopGroup, logger: context.logger)
        }
    }
}

/// go-micro's NATS broker on the wire: a topic is a subject, a queue a queue group, and a
/// message go-micro's `broker.Message` as JSON (`{"Header":{…},"Body":"<base64>"}`), so Go and
/// Swift services exchange events through the same servers.
///
/// - Publishing returns once the message is queued on the connection (`.delivered`: once the
///   server has it — NATS confirms nothing further); while the client reconnects, publishes are
///   held (bounded) and sent after.
/// - Each subscription's messages reach its handler one at a time, in order; a handler that
///   throws gets the message again, up to `attempts` times, then it is logged and dropped (core
///   NATS redelivers nothing). A handler that falls behind by more than the subscription's limit
///   loses the newest messages, reported as a slow consumer.
/// - A payload that is not go-micro's JSON is delivered as it came (its NATS headers as the
///   message's), so plain NATS publishers can reach a service too.
public final class NATSBroker: Broker {
    public var name: String { "nats" }
    public let options: NATSOptions
    private let eventLoopGroup: EventLoopGroup
    private let logger: Logger
    private let attempts: Int
    private let client = Mutex<Task<NATSClient, any Error>?>(nil)

    public init(options: NATSOptions, eventLoopGroup: EventLoopGroup = .shared, attempts: Int = 3,
                logger: Logger = Logger(label: "micro.broker.nats")) {
        self.options = options
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.attempts = max(1, attempts)
    }

    /// The options `environment` gives: `MICRO_BROKER_ADDRESS` (servers, comma separated; the
    /// default `nats://127.0.0.1:4222`), `MICRO_BROKER_USER` / `_PASSWORD` / `_TOKEN`, and TLS
    /// with `MICRO_BROKER_CA` (and `_CERT`, `_KEY` for mutual TLS).
    public static func options(_ environment: [String: String]) throws -> NATSOptions {
        var options = NATSOptions()
        if let address = environment["MICRO_BROKER_ADDRESS"], !address.isEmpty {
            options.servers = address.split(separator: ",").map { String($0).trimmingSpaces }.filter { !$0.isEmpty }
        }
        for server in options.servers { _ = try NATSServerAddress(server) }  // says which is wrong, at start
        options.user = environment["MICRO_BROKER_USER"].flatMap { $0.isEmpty ? nil : $0 }
        options.password = environment["MICRO_BROKER_PASSWORD"]
        options.token = environment["MICRO_BROKER_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        let ca = environment["MICRO_BROKER_CA"].flatMap { $0.isEmpty ? nil : $0 }
        let cert = environment["MICRO_BROKER_CERT"].flatMap { $0.isEmpty ? nil : $0 }
        let key = environment["MICRO_BROKER_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        if ca != nil || cert != nil {
            options.tls = TLSConfig(certificate: cert.map { .file($0) }, privateKey: key.map { .file($0) }, trustRoots: ca.map { .file($0) })
        }
        return options
    }

    /// The client, connected once and shared by every publish and subscription.
    func connection() async throws -> NATSClient {
        let task = client.withLock { client in
            if let client { return client }
            let made = Task { [options, eventLoopGroup, logger] in
                try await NATSClient.connect(options, on: eventLoopGroup.next(), logger: logger)
            }
            client = made
            return made
        }
        do {
            return try await task.value
        } catch {
            client.withLock { if $0 == task { $0 = nil } }  // the next call tries again
            throw error
        }
    }

    public func connect() async throws {
        _ = try await connection()
    }

    public func disconnect() async {
        guard let task = client.withLock({ c in defer { c = nil }; return c }) else { return }
        if let connected = try? await task.value { await connected.close() }
    }

    public func publish(_ topic: String, _ message: BrokerMessage, options: PublishOptions = .init()) async throws {
        let nats = try await connection()
        var message = message
        message.header["Micro-Topic"] = topic
        let payload = try Array(JSONEncoder().encode(message))
        try await nats.publish(topic, payload: payload)
        if options.wait == .delivered { try await nats.flush() }
    }

    public func subscribe(
        _ topic: String,
        queue: String?,
        _ handler: @escaping @Sendable (BrokerEvent) async throws -> Void
    ) async throws -> BrokerSubscription {
        let nats = try await connection()
        let subscription = try await nats.subscribe(topic, queue: queue)
        try await nats.flush(timeout: nats.options.connectTimeout + .seconds(5))  // the server knows it: publishes from now on reach it
        let consumer = Task { [attempts, logger] in
            for await message in subscription {
                let event = BrokerEvent(topic: message.subject, message: Self.brokerMessage(message), eventLoop: nats.loop)
                for attempt in 1...attempts {
                    do {
                        try await handler(event)
                        BrokerMetrics.delivered(topic: message.subject)
                        break
                    } catch {
                        if attempt == attempts {
                            logger.error("dropping a message on \(message.subject) after \(attempts) failed deliveries: \(error)")
                            BrokerMetrics.dropped(topic: message.subject)
                        } else {
                            BrokerMetrics.retried(topic: message.subject)
                        }
                    }
                }
            }
        }
        return BrokerSubscription(topic: topic, queue: queue) {
            await subscription.unsubscribe()
            consumer.cancel()
        }
    }

    /// go-micro's JSON message, or the payload as it came.
    static func brokerMessage(_ message: NATSMessage) -> BrokerMessage {
        if message.payload.first == UInt8(ascii: "{"), let envelope = try? JSONDecoder().decode(Envelope.self, from: Data(message.payload)),
           envelope.header != nil || envelope.body != nil, let decoded = try? JSONDecoder().decode(BrokerMessage.self, from: Data(message.payload)) {
            return decoded
        }
        var header: [String: String] = [:]
        for (name, value) in message.headers where header[name] == nil { header[name] = value }
        header["Micro-Topic"] = header["Micro-Topic"] ?? message.subject
        return BrokerMessage(header: header, body: message.payload)
    }

    private struct Envelope: Decodable {
        var header: [String: String]?
        var body: String?
        enum CodingKeys: String, CodingKey { case header = "Header", body = "Body" }
    }

    /// Unhealthy while the client is not connected: no server reached yet (this tries), or
    /// reconnecting, or closed.
    public func checkHealth() async throws {
        let nats = try await connection()
        guard await nats.connectedServer != nil else {
            throw NATSError(.connectionLost, "not connected to a NATS server (reconnecting)")
        }
    }
}
