public import Logging
import Synchronization

/// An in-process broker, for tests and single-process setups. `publish` delivers synchronously:
/// to every plain subscription and to one member of each queue group (in turn). A handler that
/// throws gets the message again, up to `attempts` times; then it is logged and dropped.
public final class MemoryBroker: Broker {
    public var name: String { "memory" }
    private struct Entry {
        var id: Int
        var topic: String
        var queue: String?
        var handler: @Sendable (BrokerEvent) async throws -> Void
    }

    private struct State {
        var entries: [Entry] = []
        var next = 0
        var cursors: [String: Int] = [:]  // per topic+queue
    }

    private let state = Mutex(State())
    private let attempts: Int
    private let logger: Logger

    public init(attempts: Int = 3, logger: Logger = Logger(label: "micro.broker")) {
        self.attempts = max(1, attempts)
        self.logger = logger
    }

    public func connect() async throws {}

    public func disconnect() async {
        state.withLock { $0.entries = [] }
    }

    public func publish(_ topic: String, _ message: BrokerMessage, options: PublishOptions = .init()) async throws {
        let targets = state.withLock { state -> [Entry] in
            var plain: [Entry] = []
            var groups: [String: [Entry]] = [:]
            for entry in state.entries where entry.topic == topic {
                if let queue = entry.queue { groups[queue, default: []].append(entry) } else { plain.append(entry) }
            }
            for (queue, members) in groups.sorted(by: { $0.key < $1.key }) {
                let key = topic + "\u{0}" + queue
                let cursor = state.cursors[key, default: 0]
                state.cursors[key] = cursor &+ 1
                plain.append(members[cursor % members.count])
            }
            return plain
        }
        var message = message
        message.header["Micro-Topic"] = topic
        for target in targets {
            await deliver(BrokerEvent(topic: topic, message: message, eventLoop: nil), to: target)
        }
    }

    private func deliver(_ event: BrokerEvent, to entry: Entry) async {
        for attempt in 1...attempts {
            do {
                try await entry.handler(event)
                return
            } catch {
                if attempt == attempts {
                    logger.error("dropping a message on \(event.topic) after \(attempts) failed deliveries: \(error)")
                    BrokerMetrics.dropped(topic: event.topic)
                } else {
                    BrokerMetrics.retried(topic: event.topic)
                }
            }
        }
    }

    public func subscribe(
        _ topic: String,
        queue: String? = nil,
        _ handler: @escaping @Sendable (BrokerEvent) async throws -> Void
    ) async throws -> BrokerSubscription {
        let id = state.withLock { state in
            state.next += 1
            state.entries.append(Entry(id: state.next, topic: topic, queue: queue, handler: handler))
            return state.next
        }
        return BrokerSubscription(topic: topic, queue: queue) { [weak self] in
            self?.state.withLock { $0.entries.removeAll { $0.id == id } }
        }
    }
}
