import Foundation
public import Micro
import OTel
import ServiceLifecycle
import Logging
import Tracing

/// OpenTelemetry export of a service's traces: spans sent over OTLP/HTTP (protobuf) to a
/// collector, through swift-otel.
///
/// ```swift
/// MicroOTel.install()    // before the first service or client is made
/// ```
///
/// then `MICRO_TRACER=otlp`, and `MICRO_TRACER_ADDRESS` (go-micro's `--tracer_address`:
/// `host:port` or a URL; `/v1/traces` is added to one without a path) or
/// `OTEL_EXPORTER_OTLP_ENDPOINT` for the collector (default `http://localhost:4318`). The
/// OpenTelemetry variables apply as the specification defines them: `OTEL_SERVICE_NAME` (default:
/// the executable's name), `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` (default:
/// `parentbased_always_on`), `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_EXPORTER_OTLP_HEADERS`, ... Only
/// traces are exported: metrics go to Prometheus (`MICRO_METRICS=prometheus`), logs to swift-log.
///
/// The exporter runs while a service of the process runs; the last one to stop sends what is
/// left before `run()` returns.
public enum MicroOTel {
    /// Adds the `otlp` tracer to ``Micro/Tracers/plugins``.
    public static func install() {
        Tracers.plugins.register("otlp") { context in try backend(context.environment) }
    }

    /// The OTLP tracer and its exporter, configured from `environment` (`MICRO_TRACER_ADDRESS`)
    /// and the process's `OTEL_*` variables.
    public static func backend(_ environment: [String: String]) throws -> TracingBackend {
        var configuration = OTel.Configuration.default
        configuration.serviceName = CommandLine.arguments.first.map { URL(fileURLWithPath: $0).lastPathComponent } ?? "micro"
        configuration.logs.enabled = false
        configuration.metrics.enabled = false
        configuration.diagnosticLogLevel = .warning
        if let address = environment["MICRO_TRACER_ADDRESS"], !address.isEmpty {
            configuration.traces.otlpExporter.endpoint = tracesURL(address)
        }
        let (tracer, service) = try OTel.makeTracingBackend(configuration: configuration)
        let group = ServiceGroup(configuration: .init(services: [.init(service: service)], logger: Logger(label: "micro.otel")))
        return TracingBackend(tracer: tracer, run: { try await group.run() }, shutdown: { await group.triggerGracefulShutdown() })
    }

    /// The traces URL of a collector's address, as `OTEL_EXPORTER_OTLP_ENDPOINT` is read:
    /// `host:4318` and `http://host:4318` → `http://host:4318/v1/traces`; a URL with a path of
    /// its own is used as it is.
    static func tracesURL(_ address: String) -> String {
        let url = address.contains("://") ? address : "http://" + address
        guard let parsed = URLComponents(string: url), parsed.path.isEmpty || parsed.path == "/" else { return url }
        return (url.hasSuffix("/") ? String(url.dropLast()) : url) + "/v1/traces"
    }
}
