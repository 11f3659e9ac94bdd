public import Logging
import Synchronization
public import Tracing

/// A tracer for the process and the work that exports what it records.
public struct TracingBackend: Sendable {
    public let tracer: any Tracer
    /// Exports finished spans until ``shutdown`` is called, then sends what is left and returns;
    /// nil for a tracer with nothing to run (``MemoryTracer``).
    public let run: (@Sendable () async throws -> Void)?
    /// Asks ``run`` to flush and return.
    public let shutdown: (@Sendable () async -> Void)?

    public init(tracer: any Tracer, run: (@Sendable () async throws -> Void)? = nil, shutdown: (@Sendable () async -> Void)? = nil) {
        self.tracer = tracer
        self.run = run
        self.shutdown = shutdown
    }
}

/// The tracers a process can use, named by `MICRO_TRACER` (go-micro's `--tracer`): `off` (the
/// default), `memory` (``MemoryTracer``: the last spans in memory, for `Debug.Trace`), and what
/// plugin products add (`otlp`: `MicroOTel.install()`). `MICRO_TRACER_SAMPLE_RATIO` (0...1,
/// default 1) records that share of the traces started in the process (``SampledTracer``: the
/// others cost a W3C context, not a span).
///
/// A service or client traces its calls when the process has a tracer: the one `MICRO_TRACER`
/// names, bootstrapped into swift-distributed-tracing's `InstrumentationSystem` when the first
/// service or client is made (so a handler's own `withSpan` joins the same traces), or one the
/// program bootstrapped itself with `MICRO_TRACER` unset. `ServiceOptions.tracer` and
/// `Client(tracer:)` choose another for one service or client.
public enum Tracers {
    public static let plugins = PluginTable<TracingBackend?>(kind: "tracer", variable: "MICRO_TRACER", defaultName: "off", builtIn: [
        "off": { _ in nil },
        "memory": { _ in TracingBackend(tracer: MemoryTracer()) },
    ])

    /// The process's tracer (see ``Tracers``); nil when it has none. Made once, on first use;
    /// a `MICRO_TRACER` that names no tracer, or one that cannot be made, gives none (and
    /// ``problem`` says why: a service then refuses to start).
    public static var process: (any Tracer)? { state.tracer }

    /// Why the process has no tracer although `MICRO_TRACER` asks for one.
    public static var problem: String? { state.problem }

    private static let state: ProcessTracing = ProcessTracing.make()

    /// Counts a service that runs: the exporter of the process's tracer (if it has one) runs
    /// while any does.
    static func serviceStarted() { state.retain() }

    /// A service stopped; the last one flushes the exporter and stops it.
    static func serviceStopped() async { await state.release() }
}

/// The process's tracer and its exporter's task.
private final class ProcessTracing: Sendable {
    let tracer: (any Tracer)?
    let problem: String?
    private let backend: TracingBackend?
    private struct Running {
        var services = 0
        var task: Task<Void, Never>?
        var stopped = false
    }
    private let running = Mutex(Running())

    private init(tracer: (any Tracer)?, problem: String?, backend: TracingBackend?) {
        self.tracer = tracer
        self.problem = problem
        self.backend = backend
    }

    static func make() -> ProcessTracing {
        let environment = MicroConfig.process.frameworkEnvironment
        let backend: TracingBackend?
        do {
            backend = try Tracers.plugins.make(PluginContext(environment: environment))
        } catch {
            return ProcessTracing(tracer: nil, problem: error.description, backend: nil)
        }
        guard let backend else {
            // MICRO_TRACER unset or off: a tracer the program bootstrapped itself, if any
            let own = InstrumentationSystem.tracer
            return ProcessTracing(tracer: own is NoOpTracer ? nil : own, problem: nil, backend: nil)
        }
        var tracer = backend.tracer
        if let text = environment["MICRO_TRACER_SAMPLE_RATIO"], !text.isEmpty {
            guard let ratio = Double(text), (0...1).contains(ratio) else {
                return ProcessTracing(tracer: nil, problem: "MICRO_TRACER_SAMPLE_RATIO must be a number from 0 to 1, not '\(text)'", backend: nil)
            }
            if ratio < 1 { tracer = sampled(tracer, ratio: ratio) }
        }
        InstrumentationSystem.bootstrap(tracer)
        return ProcessTracing(tracer: tracer, problem: nil, backend: backend)
    }

    private static func sampled<T: Tracer>(_ tracer: T, ratio: Double) -> any Tracer {
        SampledTracer(tracer, ratio: ratio)
    }

    func retain() {
        guard let run = backend?.run else { return }
        running.withLock { running in
            running.services += 1
            guard running.task == nil, !running.stopped else { return }
            running.task = Task {
                do {
                    try await run()
                } catch {
                    Logger(label: "micro.tracing").error("the tracer's exporter stopped: \(error)")
                }
            }
        }
    }

    func release() async {
        guard backend?.run != nil else { return }  // as retain() counted
        let last: Task<Void, Never>? = running.withLock { running in
            running.services -= 1
            guard running.services == 0, let task = running.task else { return nil }
            // an exporter runs once: spans of a service started after this one are not exported
            running.stopped = true
            running.task = nil
            return task
        }
        guard let last else { return }
        await backend?.shutdown?()
        await last.value
    }
}

extension Logger.MetadataProvider {
    /// `trace_id` and `span_id` of the span the current task is in (as `tracer` propagates it:
    /// W3C ids), or of the call it serves when its trace is not recorded
    /// (``TraceContext/unrecorded``), on every line logged within it.
    public static func traceIDs(_ tracer: any Tracer) -> Logger.MetadataProvider {
        Logger.MetadataProvider {
            let trace = InstrumentationContext.current.flatMap { TraceContext.of($0, in: tracer) } ?? TraceContext.unrecorded
            guard let trace else { return [:] }
            return ["trace_id": .string(trace.traceID), "span_id": .string(trace.spanID)]
        }
    }
}
