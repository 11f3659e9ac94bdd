import Metrics
import Synchronization

/// Records every call a client makes (with metrics on, ``MicroMetrics``): unary calls and streams
/// as `micro_client_request_total` (`service`, `endpoint`, `kind`, `status`, `code`) and
/// `micro_client_request_duration_seconds`, publishes as `micro_broker_published_total` (`topic`,
/// `status`). One record per call: retries on other nodes are inside it.
///
/// Installed by ``Client`` when metrics are on.
struct MetricsClientInterceptor: ClientInterceptor {
    nonisolated(nonsending) func intercept(
        _ call: ClientCall,
        next: (ClientCall) async throws -> ClientResponse
    ) async throws -> ClientResponse {
        let metrics = ClientCallMetrics.of(call.descriptor)
        let start = ContinuousClock.now
        do {
            let response = try await next(call)
            metrics.record(code: 200, since: start)
            return response
        } catch {
            metrics.record(code: (error as? MicroError)?.code ?? 500, since: start)
            throw error
        }
    }
}

/// The metrics of one kind of client call, made once and kept (``DescriptorMemo``).
final class ClientCallMetrics: Sendable {
    private let labels: [(String, String)]
    private let label: String
    private let duration: Metrics.Timer?
    private let byCode = Mutex<[Int: Metrics.Counter]>([:])

    private init(_ call: CallDescriptor) {
        if call.kind == .publish {
            label = "micro_broker_published_total"
            labels = [("topic", call.endpoint)]
            duration = nil
        } else {
            label = "micro_client_request_total"
            duration = Metrics.Timer(label: "micro_client_request_duration_seconds", dimensions: [("service", call.service), ("endpoint", call.endpoint)],
                                     preferredDisplayUnit: .seconds)
            labels = [("service", call.service), ("endpoint", call.endpoint), ("kind", call.kind.rawValue)]
        }
    }

    static func of(_ call: CallDescriptor) -> ClientCallMetrics { kept.value(for: call, ClientCallMetrics.init) }

    private static let kept = DescriptorMemo<ClientCallMetrics>()

    func record(code: Int, since start: ContinuousClock.Instant) {
        duration?.recordInterval(since: start)
        let counter = byCode.withLock { counters in
            if let made = counters[code] { return made }
            var dimensions = labels + [("status", code < 400 ? "success" : "failure")]
            if duration != nil { dimensions.append(("code", String(code))) }
            let made = Metrics.Counter(label: label, dimensions: dimensions)
            counters[code] = made
            return made
        }
        counter.increment()
    }
}
