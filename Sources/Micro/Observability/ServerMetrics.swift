import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Metrics
import MicroCore
public import Prometheus
import Synchronization

/// Metrics of the calls a process serves, through swift-metrics, and their Prometheus text on
/// every service's port (`GET /metrics`) once ``enablePrometheus()`` ran (`MICRO_METRICS=prometheus`
/// does it for a service).
///
/// go-micro's Prometheus wrapper's names where they overlap: `micro_server_request_total`
/// (labels `service`, `endpoint`, `kind` = unary, serverStream, clientStream, bidiStream or
/// delivery, `status` = success or failure, `code`) and
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

    /// The endpoints' metrics, which keep their counts until they are read (weakly: an endpoint's
    /// go when its service goes).
    private static let endpoints = Mutex<[WeakEndpointMetrics]>([])

    private struct WeakEndpointMetrics {
        weak var metrics: EndpointMetrics?
    }

    static func track(_ metrics: EndpointMetrics) {
        endpoints.withLock { endpoints in
            endpoints.removeAll { $0.metrics == nil }
            endpoints.append(WeakEndpointMetrics(metrics: metrics))
        }
    }

    /// Brings swift-metrics up to every endpoint's counts: done before each `GET /metrics`; a
    /// program that reads the metrics through its own backend calls it before reading.
    public static func flush() {
        let live = endpoints.withLock { endpoints in endpoints.compactMap(\.metrics) }
        for metrics in live { metrics.flush() }
    }

    /// The Prometheus text of everything recorded.
    static func exposition() -> [UInt8] {
        flush()
        var buffer: [UInt8] = []
        prometheus.emit(into: &buffer)
        return buffer
    }
}

/// One endpoint's metrics: made when it is registered (with metrics on), so a call finds them
/// without building a label or hashing a name.
///
/// A call adds to relaxed atomics of its own (in flight, succeeded, bytes) and records its
/// duration; the counts reach swift-metrics when the metrics are read (``MicroMetrics/flush()``,
/// before every `GET /metrics`), as the increments since the last reading — not through a
/// gauge and three counters of the backend per call. Failures, rare, are counted per code as
/// they come.
final class EndpointMetrics: Sendable {
    private let service: String
    private let endpoint: String
    private let kind: CallDescriptor.Kind
    private let duration: Metrics.Timer
    private let inFlightGauge: Meter
    private let receivedCounter: Metrics.Counter
    private let sentCounter: Metrics.Counter
    private let byCode = Mutex<[Int: Metrics.Counter]>([:])

    private let inFlight = Atomic<Int>(0)
    private let succeeded = Atomic<Int>(0)
    private let received = Atomic<Int>(0)
    private let sent = Atomic<Int>(0)
    /// The calls in flight as the gauge last heard.
    private let inFlightReported = Mutex<Int>(0)

    init(service: String, endpoint: String, kind: CallDescriptor.Kind) {
        self.service = service
        self.endpoint = endpoint
        self.kind = kind
        duration = Metrics.Timer(label: "micro_server_request_duration_seconds",
                                 dimensions: [("service", service), ("endpoint", endpoint)], preferredDisplayUnit: .seconds)
        inFlightGauge = Meter(label: "micro_server_requests_in_flight", dimensions: [("service", service), ("endpoint", endpoint)])
        receivedCounter = Metrics.Counter(label: "micro_server_request_bytes_total", dimensions: [("service", service), ("endpoint", endpoint)])
        sentCounter = Metrics.Counter(label: "micro_server_response_bytes_total", dimensions: [("service", service), ("endpoint", endpoint)])
        MicroMetrics.track(self)
    }

    /// The bytes of a unary call's request and answer (encoded, before framing).
    func record(received: Int, sent: Int) {
        self.received.wrappingAdd(received, ordering: .relaxed)
        self.sent.wrappingAdd(sent, ordering: .relaxed)
    }

    /// A call begins (in flight until ``record(code:since:)``); its start.
    func begin() -> MonotonicTime {
        inFlight.wrappingAdd(1, ordering: .relaxed)
        return .now()
    }

    func record(code: Int, since start: MonotonicTime) {
        duration.recordNanoseconds(MonotonicTime.now().nanoseconds(since: start))
        inFlight.wrappingSubtract(1, ordering: .relaxed)
        if code == 200 {
            succeeded.wrappingAdd(1, ordering: .relaxed)
        } else {
            counter(code).increment()
        }
    }

    /// Brings the metrics up to the counts of the calls.
    func flush() {
        let ok = succeeded.exchange(0, ordering: .relaxed)
        if ok > 0 { counter(200).increment(by: ok) }
        let received = received.exchange(0, ordering: .relaxed), sent = sent.exchange(0, ordering: .relaxed)
        if received > 0 { receivedCounter.increment(by: received) }
        if sent > 0 { sentCounter.increment(by: sent) }
        let now = inFlight.load(ordering: .relaxed)
        let change = inFlightReported.withLock { reported in
            defer { reported = now }
            return now - reported
        }
        if change != 0 { inFlightGauge.increment(by: Double(change)) }
    }

    private func counter(_ code: Int) -> Metrics.Counter {
        byCode.withLock { counters in
            if let made = counters[code] { return made }
            let made = Metrics.Counter(label: "micro_server_request_total",
                                       dimensions: [("service", service), ("endpoint", endpoint), ("kind", kind.rawValue),
                                                    ("status", code < 400 ? "success" : "failure"), ("code", String(code))])
            counters[code] = made
            return made
        }
    }
}

/// A reading of the monotonic clock, what a call's duration is measured with (two readings a
/// call, no Instant arithmetic).
struct MonotonicTime: Sendable {
    let value: UInt64

    static func now() -> MonotonicTime {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return MonotonicTime(value: UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec))
    }

    func nanoseconds(since start: MonotonicTime) -> Int64 {
        Int64(clamping: value &- start.value)
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
