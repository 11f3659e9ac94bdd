import Foundation
import Metrics
public import Prometheus
import Synchronization

/// Metrics of the calls a process serves, through swift-metrics, and their Prometheus text on
/// every service's port (`GET /metrics`) once ``enablePrometheus()`` ran (`MICRO_METRICS=prometheus`
/// does it for a service).
///
/// go-micro's Prometheus wrapper's names where they overlap: `micro_server_request_total`
/// (labels `service`, `endpoint`, `status` = success or failure, `code`) and
/// `micro_server_request_duration_seconds` (a histogram, labels `service`, `endpoint`).
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
    private let byCode = Mutex<[Int: Metrics.Counter]>([:])

    init(service: String, endpoint: String) {
        self.service = service
        self.endpoint = endpoint
        duration = Metrics.Timer(label: "micro_server_request_duration_seconds",
                                 dimensions: [("service", service), ("endpoint", endpoint)], preferredDisplayUnit: .seconds)
    }

    func record(code: Int, since start: ContinuousClock.Instant) {
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
