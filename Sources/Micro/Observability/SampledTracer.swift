public import Tracing

/// Head sampling in front of a W3C tracer: a trace that starts here is recorded with probability
/// `ratio`, decided before the tracer is asked, and a trace that is not recorded costs only a
/// W3C context of its own (ids from a fast generator, no span object, nothing exported) — its
/// `traceparent` says `00` (not sampled), so the services it calls do not record it either, and
/// its ids still reach the log lines. Recorded traces, and every trace whose caller sampled it,
/// are the tracer's (`base`) alone: give it a sampler that records what it is handed
/// (OpenTelemetry's `parentbased_always_on`).
///
/// What a service pays for tracing at a small ratio is then this, not the tracer's span
/// machinery (swift-otel draws each id from the system's random source: a system call).
public struct SampledTracer<Base: Tracer>: Tracer, HeadSampling {
    public typealias Span = SampledSpan<Base.Span>

    public let base: Base
    /// The share of traces started here that are recorded, 0...1.
    public var ratio: Double { sampler.ratio }
    let sampler: HeadSampler

    public init(_ base: Base, ratio: Double) {
        self.base = base
        sampler = HeadSampler(ratio: ratio)
    }

    public func startSpan<Instant: TracerInstant>(
        _ operationName: String,
        context: @autoclosure () -> InstrumentationContext,
        ofKind kind: SpanKind,
        at instant: @autoclosure () -> Instant,
        function: String,
        file fileID: String,
        line: UInt
    ) -> SampledSpan<Base.Span> {
        var context = context()
        if let parent = context[TraceContextKey.self] ?? Self.unrecordedCall(around: context, in: base), !parent.sampled {
            // within a trace that is not recorded: a context of its own, no span
            // (a sampled one there is the base's own, if it is a ``MemoryTracer``)
            context[TraceContextKey.self] = parent.child()
            return .skipped(NoOpTracer.NoOpSpan(context: context))
        }
        if Self.hasParent(context, in: base) || !sampler.declines() {
            return .recorded(base.startSpan(operationName, context: context, ofKind: kind, at: instant(), function: function,
                                            file: fileID, line: line))
        }
        context[TraceContextKey.self] = TraceContext(trace: .random(), span: .random(), sampled: false)
        return .skipped(NoOpTracer.NoOpSpan(context: context))
    }

    /// The served call the current task runs in, when the service did not record its trace
    /// (``TraceContext/unrecorded``) and `context` has no span of its own: a span started in a
    /// handler belongs to its call's trace.
    private static func unrecordedCall(around context: InstrumentationContext, in base: Base) -> TraceContext? {
        guard let call = TraceContext.unrecorded, !hasParent(context, in: base) else { return nil }
        return call
    }

    /// Whether `context` carries a span of `base` (its own, or a caller's it extracted).
    private static func hasParent(_ context: InstrumentationContext, in base: Base) -> Bool {
        guard !context.isEmpty else { return false }
        var headers: [String: String] = [:]
        base.inject(context, into: &headers, using: DictionaryInjector())
        return headers["traceparent"] != nil
    }

    @available(*, deprecated)  // as the requirement is: passing it on warns otherwise
    public func forceFlush() { base.forceFlush() }

    /// A caller's trace that it did not sample stays unsampled here (read without the tracer);
    /// any other is the tracer's to read.
    public func extract<Carrier, Extract: Extractor>(_ carrier: Carrier, into context: inout InstrumentationContext, using extractor: Extract)
    where Extract.Carrier == Carrier {
        if let value = extractor.extract(key: "traceparent", from: carrier),
           let trace = TraceContext(traceparent: value, tracestate: extractor.extract(key: "tracestate", from: carrier)), !trace.sampled {
            context[TraceContextKey.self] = trace
            return
        }
        base.extract(carrier, into: &context, using: extractor)
    }

    public func inject<Carrier, Inject: Injector>(_ context: InstrumentationContext, into carrier: inout Carrier, using injector: Inject)
    where Inject.Carrier == Carrier {
        guard let trace = context[TraceContextKey.self], !trace.sampled else { return base.inject(context, into: &carrier, using: injector) }
        injector.inject(trace.traceparent, forKey: "traceparent", into: &carrier)
        if let state = trace.traceState { injector.inject(state, forKey: "tracestate", into: &carrier) }
    }
}

/// A span of ``SampledTracer``: the tracer's, or none (a trace not recorded).
public enum SampledSpan<Base: Tracing.Span>: Tracing.Span {
    case recorded(Base)
    case skipped(NoOpTracer.NoOpSpan)

    public var context: InstrumentationContext {
        switch self {
        case .recorded(let span): span.context
        case .skipped(let span): span.context
        }
    }

    public var operationName: String {
        get {
            switch self {
            case .recorded(let span): span.operationName
            case .skipped: ""
            }
        }
        nonmutating set { if case .recorded(let span) = self { span.operationName = newValue } }
    }

    public var attributes: SpanAttributes {
        get {
            switch self {
            case .recorded(let span): span.attributes
            case .skipped: [:]
            }
        }
        nonmutating set { if case .recorded(let span) = self { span.attributes = newValue } }
    }

    public var isRecording: Bool {
        switch self {
        case .recorded(let span): span.isRecording
        case .skipped: false
        }
    }

    public func setStatus(_ status: SpanStatus) {
        if case .recorded(let span) = self { span.setStatus(status) }
    }

    public func addEvent(_ event: SpanEvent) {
        if case .recorded(let span) = self { span.addEvent(event) }
    }

    public func recordError<Instant: TracerInstant>(_ error: any Error, attributes: SpanAttributes, at instant: @autoclosure () -> Instant) {
        if case .recorded(let span) = self { span.recordError(error, attributes: attributes, at: instant()) }
    }

    public func addLink(_ link: SpanLink) {
        if case .recorded(let span) = self { span.addLink(link) }
    }

    public func end<Instant: TracerInstant>(at instant: @autoclosure () -> Instant) {
        if case .recorded(let span) = self { span.end(at: instant()) }
    }
}
