import Foundation
import Metrics
import MicroCore
public import Prometheus
import Synchronization

/// Metrics of the calls a process serves, through swift-metrics, and their Prometheus text on
/// every service's port (`GET /metrics`) once ``enablePrometheus()`` ran (`MICRO_METRICS=prometheus`
/// does it for a service).
///
/// go-micro's Prometheus wrapper's names where they overlap: `micro_server_request_total`
/// (labels `service`, `endpoint`, `status` = success or failure, `code`) and
/// `micro_server_request_duration_seconds` (a histogram, labels `service`, `endpoint`), for every
/// call kind (a stream when it ends; a delivery: the topic as `endpoint`), with
/// `micro_server_requests_in_flight`; the client's calls as `micro_client_request_total` and
/// `micro_client_request_duration_seconds`, its publishes as `micro_broker_published_total`
/// (`topic`, `status`); the broker's deliveries and drops (`micro_broker_delivered_total`,
/// `micro_broker_dropped_total`).
public enum MicroMetrics {
    /// The registry `GET /metrics` shows, and that swift-metrics reports to once enabled.
    public static let prometheus = PrometheusCollectorRegistry()

    private static let enabled = Atomic<Bool>(false)
    private static let bootstrap: Void = {
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: prometheus))
        enabled.store(true, ordering: .releasing)
    }()

    /// Makes swift-metrics report to ``prometheus`` (once per process: swift-metrics has one
    /// backend) and services record their calls.
    public static func enablePrometheus() { _ = bootstrap }

    /// Whether calls are recorded.
    public static var isEnabled: Bool { enabled.load(ordering: .acquiring) }

    /// The Prometheus text of everything recorded.
    static func exposition() -> [UInt8] {
        var buffer: [UInt8] = []
        prometheus.emit(into: &buffer)
        return buffer
    }
}

/// One endpoint's metrics: made when it is registered (with metrics on), so a call finds them
/// without building a label or hashing a name; a counter per answer code, made once.
final class EndpointMetrics: Sendable {
    private let service: String
    private let endpoint: String
    private let duration: Metrics.Timer
    private let inFlight: Meter
    private let received: Metrics.Counter
    private let sent: Metrics.Counter
    private let byCode = Mutex<[Int: Metrics.Counter]>([:])

    init(service: String, endpoint: String) {
        self.service = service
        self.endpoint = endpoint
        duration = Metrics.Timer(label: "micro_server_request_duration_seconds",
                                 dimensions: [("service", service), ("endpoint", endpoint)], preferredDisplayUnit: .seconds)
        inFlight = Meter(label: "micro_server_requests_in_flight", dimensions: [("service", service), ("endpoint", endpoint)])
        received = Metrics.Counter(label: "micro_server_request_bytes_total", dimensions: [("service", service), ("endpoint", endpoint)])
        sent = Metrics.Counter(label: "micro_server_response_bytes_total", dimensions: [("service", service), ("endpoint", endpoint)])
    }

    /// The bytes of a unary call's request and answer (encoded, before framing).
    func record(received: Int, sent: Int) {
        self.received.increment(by: received)
        self.sent.increment(by: sent)
    }

    /// A call begins (in flight until ``record(code:since:)``); its start.
    func begin() -> ContinuousClock.Instant {
        inFlight.increment()
        return .now
    }

    func record(code: Int, since start: ContinuousClock.Instant) {
        inFlight.decrement()
        duration.recordInterval(since: start)
        let counter = byCode.withLock { counters in
            if let made = counters[code] { return made }
            let made = Metrics.Counter(label: "micro_server_request_total",
                               dimensions: [("service", service), ("endpoint", endpoint), ("status", code < 400 ? "success" : "failure"),
                                            ("code", String(code))])
            counters[code] = made
            return made
        }
        counter.increment()
    }
}

/// A server's connections as metrics (`micro_server_connections`, a gauge;
/// `micro_server_connections_accepted_total`; `micro_server_accept_backoff_total`, the temporary
/// accept errors the listener backed off from), read from the core when `/metrics` is scraped.
final class ConnectionMetrics: Sendable {
    private let open: Metrics.Gauge
    private let accepted: Metrics.Counter
    private let backoffs: Metrics.Counter
    private let last = Mutex<HTTPServer.Stats>(.init(openConnections: 0, accepted: 0, acceptBackoffs: 0))
    /// The server's counters; nil until it starts.
    let source = Mutex<(@Sendable () -> HTTPServer.Stats)?>(nil)

    init(service: String) {
        open = Metrics.Gauge(label: "micro_server_connections", dimensions: [("service", service)])
        accepted = Metrics.Counter(label: "micro_server_connections_accepted_total", dimensions: [("service", service)])
        backoffs = Metrics.Counter(label: "micro_server_accept_backoff_total", dimensions: [("service", service)])
    }

    /// Brings the metrics up to the server's counters.
    func refresh() {
        guard let read = source.withLock({ $0 }) else { return }
        let now = read()
        let before = last.withLock { last in
            defer { last = now }
            return last
        }
        open.record(Int64(clamping: now.openConnections))
        if now.accepted > before.accepted { accepted.increment(by: Int64(clamping: now.accepted - before.accepted)) }
        if now.acceptBackoffs > before.acceptBackoffs { backoffs.increment(by: Int64(clamping: now.acceptBackoffs - before.acceptBackoffs)) }
    }
}

extension Metrics.Timer {
    func recordInterval(since start: ContinuousClock.Instant) {
        recordNanoseconds((ContinuousClock.now - start).wholeNanoseconds)
    }
}

extension Result where Success == [UInt8], Failure == MicroError {
    /// The code the caller gets: 200, or the error's.
    var code: Int {
        switch self {
        case .success: 200
        case .failure(let error): error.code
        }
    }

    var failed: Bool {
        if case .failure = self { return true }
        return false
    }
}
