import Metrics

/// The broker's counters (swift-metrics; the application bootstraps the backend).
enum BrokerMetrics {
    static func dropped(topic: String) {
        Counter(label: "micro_broker_dropped_total", dimensions: [("topic", topic)]).increment()
    }

    /// A delivery failed and will be tried again.
    static func retried(topic: String) {
        Counter(label: "micro_broker_retried_total", dimensions: [("topic", topic)]).increment()
    }

    static func delivered(topic: String) {
        Counter(label: "micro_broker_delivered_total", dimensions: [("topic", topic)]).increment()
    }
}
