import DequeModule
public import Tracing
import Synchronization

/// A tracer that exports nothing and keeps the last spans it finished in a bounded ring:
/// go-micro's memory tracer (`MICRO_TRACER=memory`), what the debug service's `Debug.Trace`
/// shows. It propagates W3C Trace Context (`traceparent`, `tracestate`), so its traces cross
/// services that use any W3C tracer (OpenTelemetry's included); it samples every trace whose
/// caller did not say otherwise.
///
/// Threading: any thread.
public final class MemoryTracer: Tracer, Sendable {
    public typealias Span = MemorySpan

    /// How many finished spans are kept (the oldest go first).
    public let capacity: Int
    private struct State {
        var spans = Deque<FinishedSpan>()
        /// Callers of ``spans(traceID:count:)`` waiting for more.
        var waiters: [UInt64: Waiter] = [:]
        var nextWaiter: UInt64 = 0
    }
    private struct Waiter {
        let traceID: String?
        let count: Int
        let continuation: CheckedContinuation<Void, Never>
    }
    private let state: Mutex<State>

    public init(capacity: Int = 1000) {
        self.capacity = max(1, capacity)
        self.state = Mutex(State())
    }

    /// The spans kept, oldest first; of one trace if `traceID` is given.
    public func spans(traceID: String? = nil) -> [FinishedSpan] {
        state.withLock { Self.spans(of: traceID, in: $0.spans) }
    }

    /// The spans kept (of one trace if `traceID` is given) once there are at least `count`: a
    /// span ends when its call has, on its own task, so a caller that saw the call end waits for
    /// its spans here. Returns what there is if the task is cancelled first.
    public func spans(traceID: String? = nil, count: Int) async -> [FinishedSpan] {
        let id = state.withLock { state in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let ready = state.withLock { state in
                    if Task.isCancelled || Self.spans(of: traceID, in: state.spans).count >= count { return true }
                    state.waiters[id] = Waiter(traceID: traceID, count: count, continuation: continuation)
                    return false
                }
                if ready { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.continuation.resume()
        }
        return spans(traceID: traceID)
    }

    /// Forgets the spans kept.
    public func clear() {
        state.withLock { $0.spans.removeAll() }
    }

    func keep(_ span: FinishedSpan) {
        let ready: [Waiter] = state.withLock { state in
            if state.spans.count >= capacity { state.spans.removeFirst() }
            state.spans.append(span)
            guard !state.waiters.isEmpty else { return [] }
            let ready = state.waiters.filter { $0.value.traceID == nil || $0.value.traceID == span.traceID }
                .filter { Self.spans(of: $0.value.traceID, in: state.spans).count >= $0.value.count }
            for id in ready.keys { state.waiters.removeValue(forKey: id) }
            return Array(ready.values)
        }
        for waiter in ready { waiter.continuation.resume() }
    }

    private static func spans(of traceID: String?, in spans: Deque<FinishedSpan>) -> [FinishedSpan] {
        // an empty Deque made into an Array writes the runtime's shared empty array (TSan: a race)
        guard let traceID else { return spans.isEmpty ? [] : Array(spans) }
        return spans.filter { $0.traceID == traceID }
    }

    public func startSpan<Instant: TracerInstant>(
        _ operationName: String,
        context: @autoclosure () -> InstrumentationContext,
        ofKind kind: SpanKind,
        at instant: @autoclosure () -> Instant,
        function: String,
        file fileID: String,
        line: UInt
    ) -> MemorySpan {
        var context = context()
        let parent = context[TraceContextKey.self]
        let own = parent?.child() ?? TraceContext(trace: .random(), span: .random())
        context[TraceContextKey.self] = own
        return MemorySpan(name: operationName, kind: kind, context: context, trace: own, parentID: parent?.spanID,
                          start: instant().nanosecondsSinceEpoch, tracer: self)
    }

    public func forceFlush() {}

    public func extract<Carrier, Extract: Extractor>(_ carrier: Carrier, into context: inout InstrumentationContext, using extractor: Extract)
    where Extract.Carrier == Carrier {
        guard let value = extractor.extract(key: "traceparent", from: carrier),
              let trace = TraceContext(traceparent: value, tracestate: extractor.extract(key: "tracestate", from: carrier))
        else { return }
        context[TraceContextKey.self] = trace
    }

    public func inject<Carrier, Inject: Injector>(_ context: InstrumentationContext, into carrier: inout Carrier, using injector: Inject)
    where Inject.Carrier == Carrier {
        guard let trace = context[TraceContextKey.self] else { return }
        injector.inject(trace.traceparent, forKey: "traceparent", into: &carrier)
        if let state = trace.traceState { injector.inject(state, forKey: "tracestate", into: &carrier) }
    }

    /// A span as it ended.
    public struct FinishedSpan: Sendable, Equatable {
        public var name: String
        /// `server`, `client`, `producer`, `consumer` or `internal`.
        public var kind: String
        public var traceID: String
        public var spanID: String
        /// The span this one is a child of; nil for a trace's first span.
        public var parentID: String?
        /// Nanoseconds since 1970.
        public var start: UInt64
        public var end: UInt64
        /// `ok`, `error` or nil (unset).
        public var status: String?
        public var statusMessage: String?
        /// As the span had them (rendered as text when read: a span that nobody reads costs no
        /// conversion).
        public var spanAttributes: SpanAttributes
        /// The names of its events (`exception` for a recorded error).
        public var events: [String]

        /// The attributes as text.
        public var attributes: [String: String] {
            var text: [String: String] = [:]
            spanAttributes.forEach { key, value in text[key] = Self.describe(value) }
            return text
        }

        private static func describe(_ value: SpanAttribute) -> String {
            switch value {
            case .int64(let v): "\(v)"
            case .double(let v): "\(v)"
            case .bool(let v): "\(v)"
            case .string(let v): v
            default: "\(value)"
            }
        }
    }
}

/// A span of ``MemoryTracer``: recorded when it ends (the first `end` counts).
public final class MemorySpan: Tracing.Span, Sendable {
    public let context: InstrumentationContext
    private let tracer: MemoryTracer
    private let kind: SpanKind
    private let trace: TraceContext
    private let parentID: String?
    private let start: UInt64
    private struct State {
        var name: String
        var attributes: SpanAttributes = [:]
        var status: SpanStatus?
        var events: [String] = []
        var ended = false
    }
    private let state: Mutex<State>

    init(name: String, kind: SpanKind, context: InstrumentationContext, trace: TraceContext, parentID: String?, start: UInt64, tracer: MemoryTracer) {
        self.context = context
        self.tracer = tracer
        self.kind = kind
        self.trace = trace
        self.parentID = parentID
        self.start = start
        self.state = Mutex(State(name: name))
    }

    public var operationName: String {
        get { state.withLock { $0.name } }
        set { state.withLock { $0.name = newValue } }
    }

    public var attributes: SpanAttributes {
        get { state.withLock { $0.attributes } }
        set { state.withLock { $0.attributes = newValue } }
    }

    public var isRecording: Bool { state.withLock { !$0.ended } }

    public func setStatus(_ status: SpanStatus) {
        state.withLock { state in
            // OK is final; an error does not replace it
            if state.status?.code == .ok { return }
            state.status = status
        }
    }

    public func addEvent(_ event: SpanEvent) {
        state.withLock { $0.events.append(event.name) }
    }

    public func recordError<Instant: TracerInstant>(_ error: any Error, attributes: SpanAttributes, at instant: @autoclosure () -> Instant) {
        state.withLock { $0.events.append("exception") }
    }

    public func addLink(_ link: SpanLink) {}

    public func end<Instant: TracerInstant>(at instant: @autoclosure () -> Instant) {
        let end = instant().nanosecondsSinceEpoch
        let finished: MemoryTracer.FinishedSpan? = state.withLock { state in
            guard !state.ended else { return nil }
            state.ended = true
            let status: String? = switch state.status?.code {
            case .ok?: "ok"
            case .error?: "error"
            case nil: nil
            }
            return MemoryTracer.FinishedSpan(
                name: state.name, kind: Self.describe(kind), traceID: trace.traceID, spanID: trace.spanID, parentID: parentID,
                start: start, end: end, status: status, statusMessage: state.status?.message, spanAttributes: state.attributes, events: state.events)
        }
        if let finished, trace.sampled { tracer.keep(finished) }
    }

    private static func describe(_ kind: SpanKind) -> String {
        switch kind {
        case .server: "server"
        case .client: "client"
        case .producer: "producer"
        case .consumer: "consumer"
        case .internal: "internal"
        }
    }
}
