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
    /// Deliveries pass the service's interceptors (kind `delivery`, wire `broker`, endpoint = the
    /// topic); one that an interceptor refuses with a 4xx ``MicroError`` is dropped (logged), since
    /// delivering it again would be refused again.
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
        let interceptors = router.interceptors
        let origin = Context.Origin(service: name, endpoint: topic, kind: .delivery, logger: logger)
        let wrapped: @Sendable (BrokerEvent) async throws -> Void = { event in
            let contentType = event.message.header.first { $0.key.lowercased() == "content-type" }?.value
            let context = Context(
                origin: origin,
                wire: .broker,
                metadata: Metadata(event.message.header.map { ($0.key, $0.value) }),
                timeout: 0,
                eventLoop: event.eventLoop ?? group.next(),
                peer: event.peer
            )
            // it can never be handled: delivering it again would not help
            @Sendable func drop(_ why: String) {
                context.logger.error("dropping a message on \(topic): \(why)")
                BrokerMetrics.dropped(topic: topic)
            }
            guard let codec = codecs.codec(for: contentType) else { return drop("no codec for \(contentType ?? "")") }
            func deliver(_ body: [UInt8], _ context: Context) async throws {
                let value: Event
                do {
                    value = try codec.decode(Event.self, from: body)
                } catch {
                    return drop("it is not \(Event.self): \(Router.describe(error))")
                }
                try await handler(value, context)
            }
            try await interceptors.traced(context) {
                do {
                    try await interceptors.admit(context)
                } catch let error as MicroError where (400..<500).contains(error.code) {
                    return drop("refused: \(error.detail)")
                }
                guard !interceptors.isEmpty else { return try await deliver(event.message.body, context) }
                var reachedHandler = false
                do {
                    _ = try await interceptors.run(ServerCall(context: context, message: event.message.body, codec: codec)) { call in
                        var body = call.message ?? []
                        if let tap = call.taps.request { body = try tap(body) }
                        reachedHandler = true
                        try await deliver(body, call.context)
                        return ServerResult(message: nil)
                    }
                } catch let error as MicroError where !reachedHandler && (400..<500).contains(error.code) {
                    drop("refused: \(error.detail)")
                }
            }
        }
        var metadata = ["topic": topic, "subscriber": "true"]
        if let queue { metadata["queue"] = queue }
        let description = Endpoint(name: "\(topic)", request: Schema.describe(Event.self, name: String(describing: Event.self)), metadata: metadata)
        let stats = router.stats
        let metrics = MicroMetrics.isEnabled ? EndpointMetrics(service: name, endpoint: topic, kind: .delivery) : nil
        let counted: @Sendable (BrokerEvent) async throws -> Void = { event in
            let start = metrics?.begin()
            do {
                try await wrapped(event)
                stats.record(failed: false, code: 200, metrics: metrics, since: start)
            } catch {
                stats.record(failed: true, code: (error as? MicroError)?.code ?? 500, metrics: metrics, since: start)
                throw error
            }
        }
        subscribers.withLock { $0.append(Subscriber(topic: topic, queue: queue, handler: counted, description: description)) }
    }

    var subscriberDescriptions: [Endpoint] { subscribers.withLock { $0.map(\.description) } }

    /// Subscribes every handler; returns the subscriptions made and the handlers whose
    /// subscription failed (``subscribeLater(_:into:)`` tries those again).
    func subscribeAll() async -> (made: [BrokerSubscription], failed: [Subscriber]) {
        var subscriptions: [BrokerSubscription] = []
        var failed: [Subscriber] = []
        if !subscribers.withLock({ $0.isEmpty }) {
            // deliveries stop while the broker cannot deliver: not ready then
            let broker = self.broker
            addHealthCheck("broker", critical: true) { try await broker.checkHealth() }
        }
        for subscriber in subscribers.withLock({ $0 }) {
            do {
                subscriptions.append(try await broker.subscribe(subscriber.topic, queue: subscriber.queue, subscriber.handler))
                options.logger.info("subscribed to \(subscriber.topic)\(subscriber.queue.map { " in queue \($0)" } ?? "")")
            } catch {
                options.logger.error("cannot subscribe to \(subscriber.topic) yet (tried again until it works): \(error)")
                failed.append(subscriber)
            }
        }
        return (subscriptions, failed)
    }

    /// Tries the subscriptions that failed again (a broker's server not reachable yet), 100 ms
    /// after the first try and then twice as long each round, up to 5 s, until each is made or
    /// the task is cancelled; what is made goes into `made`. No handler is left without its
    /// subscription because its broker was down when the service started.
    func subscribeLater(_ failed: [Subscriber], into made: SubscriptionList) async {
        var waiting = failed
        var pause = Duration.milliseconds(100)
        while !waiting.isEmpty {
            guard (try? await Task.sleep(for: pause)) != nil else { return }
            pause = min(pause * 2, .seconds(5))
            var still: [Subscriber] = []
            for subscriber in waiting {
                do {
                    made.add(try await broker.subscribe(subscriber.topic, queue: subscriber.queue, subscriber.handler))
                    options.logger.info("subscribed to \(subscriber.topic)\(subscriber.queue.map { " in queue \($0)" } ?? "")")
                } catch {
                    still.append(subscriber)
                }
            }
            waiting = still
        }
    }
}

/// Subscriptions made while the service runs, ended when it stops.
final class SubscriptionList: Sendable {
    private let list = Mutex<[BrokerSubscription]>([])

    func add(_ subscription: BrokerSubscription) { list.withLock { $0.append(subscription) } }

    func all() -> [BrokerSubscription] { list.withLock { $0 } }
}
