import Logging
import MicroCore
import Synchronization

/// A topic handler registered on a service, subscribed when it runs.
struct Subscriber: Sendable {
    let topic: String
    let queue: String?
    let handler: @Sendable (BrokerEvent) async throws -> Void
    let description: Endpoint
}

extension Service {
    /// Subscribes a typed handler to `topic` when the service runs (after it registered), and
    /// unsubscribes before it drains. Messages are decoded with the codec of their `Content-Type`;
    /// `context.metadata` holds the message headers (`Micro-Topic`, `Micro-Id`, the publisher's).
    /// With a `queue`, the service's instances share the messages (each goes to one of them);
    /// without, every instance gets every message. A handler that throws gets the message again.
    ///
    /// ```swift
    /// service.subscribe("orders", queue: "billing") { (order: Order, ctx: Context) in ... }
    /// ```
    /// Call before `run()`.
    public func subscribe<Event: Decodable & Sendable>(
        _ topic: String,
        queue: String? = nil,
        _ handler: @escaping @Sendable (Event, Context) async throws -> Void
    ) {
        let name = self.name, codecs = options.codecs, logger = options.logger, group = options.eventLoopGroup
        let origin = Context.Origin(service: name, endpoint: topic, logger: logger)
        let wrapped: @Sendable (BrokerEvent) async throws -> Void = { event in
            let contentType = event.message.header.first { $0.key.lowercased() == "content-type" }?.value
            let context = Context(
                origin: origin,
                metadata: Metadata(event.message.header.map { ($0.key, $0.value) }),
                deadline: nil,
                eventLoop: event.eventLoop ?? group.next()
            )
            let value: Event
            do {
                guard let codec = codecs.codec(for: contentType) else { throw CodecError("no codec for \(contentType ?? "")") }
                value = try codec.decode(Event.self, from: event.message.body)
            } catch {
                // it can never be handled: delivering it again would not help
                context.logger.error("dropping a message on \(topic) that is not \(Event.self): \(Router.describe(error))")
                BrokerMetrics.dropped(topic: topic)
                return
            }
            try await handler(value, context)
        }
        var metadata = ["topic": topic, "subscriber": "true"]
        if let queue { metadata["queue"] = queue }
        let description = Endpoint(name: "\(topic)", request: Schema.describe(Event.self, name: String(describing: Event.self)), metadata: metadata)
        subscribers.withLock { $0.append(Subscriber(topic: topic, queue: queue, handler: wrapped, description: description)) }
    }

    var subscriberDescriptions: [Endpoint] { subscribers.withLock { $0.map(\.description) } }

    func subscribeAll() async -> [BrokerSubscription] {
        var subscriptions: [BrokerSubscription] = []
        for subscriber in subscribers.withLock({ $0 }) {
            do {
                subscriptions.append(try await broker.subscribe(subscriber.topic, queue: subscriber.queue, subscriber.handler))
                options.logger.info("subscribed to \(subscriber.topic)\(subscriber.queue.map { " in queue \($0)" } ?? "")")
            } catch {
                options.logger.error("cannot subscribe to \(subscriber.topic): \(error)")
            }
        }
        return subscriptions
    }
}
