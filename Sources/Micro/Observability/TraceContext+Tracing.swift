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
