public import Tracing

extension TraceContext {
    /// The trace context `tracer` would send for `context` (its `traceparent`), whatever the
    /// tracer: how log lines get their ids.
    static func of(_ context: InstrumentationContext, in tracer: any Tracer) -> TraceContext? {
        if let known = context[TraceContextKey.self] { return known }
        var headers: [String: String] = [:]
        tracer.inject(context, into: &headers, using: DictionaryInjector())
        guard let value = headers["traceparent"] else { return nil }
        return TraceContext(traceparent: value)
    }
}

/// Where ``MemoryTracer`` keeps the current span's ``TraceContext`` in an `InstrumentationContext`.
public enum TraceContextKey: InstrumentationContextKey {
    public typealias Value = TraceContext
    public static var nameOverride: String? { "micro-trace-context" }
}

/// Puts headers into a dictionary (call options' metadata, message headers).
struct DictionaryInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout [String: String]) {
        carrier[key] = value
    }
}

/// Reads headers from a call's ``Metadata`` (request headers, gRPC metadata, message headers).
struct MetadataExtractor: Extractor {
    func extract(key: String, from carrier: Metadata) -> String? {
        carrier[key]
    }
}

extension TraceContext {
    /// The trace of the call the current task serves when the service does not record it (its
    /// ``SampledTracer`` declined a new trace, or the caller's `traceparent` says not sampled):
    /// bound instead of a span, so the calls the handler makes send it on as not sampled and its
    /// log lines carry its ids — at the cost of ids and one task-local value, not a span.
    @TaskLocal public static var unrecorded: TraceContext?
}

/// A tracer that decides whether a new trace is recorded before it makes anything
/// (``SampledTracer``): a service then serves a call whose trace is not recorded without asking
/// the tracer at all (``TraceContext/unrecorded``).
protocol HeadSampling: Sendable {
    var sampler: HeadSampler { get }
}

/// Head sampling's decision: a new trace is recorded with probability `ratio`.
struct HeadSampler: Sendable {
    let ratio: Double
    /// A trace is recorded when 64 random bits fall below this.
    private let threshold: UInt64

    init(ratio: Double) {
        self.ratio = min(max(ratio, 0), 1)
        threshold = self.ratio >= 1 ? .max : UInt64(self.ratio * 18_446_744_073_709_551_615.0)
    }

    /// Whether a new trace is not to be recorded (drawn anew each time).
    func declines() -> Bool {
        threshold != .max && TraceContext.randomWord() >= threshold
    }
}
