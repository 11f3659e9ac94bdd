import Metrics

/// The broker's counters (swift-metrics; the application bootstraps the backend), for every
/// broker, plugins' too. Publishes are counted by the client (`micro_broker_published_total`).
public enum BrokerMetrics {
    /// A message given up on after its deliveries failed.
    public static func dropped(topic: String) {
        Counter(label: "micro_broker_dropped_total", dimensions: [("topic", topic)]).increment()
    }

    /// A delivery failed and will be tried again.
    public static func retried(topic: String) {
        Counter(label: "micro_broker_retried_total", dimensions: [("topic", topic)]).increment()
    }

    /// A message its subscriber took.
    public static func delivered(topic: String) {
        Counter(label: "micro_broker_delivered_total", dimensions: [("topic", topic)]).increment()
    }
}
