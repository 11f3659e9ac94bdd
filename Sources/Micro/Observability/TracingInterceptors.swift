import Synchronization
public import Tracing

/// A span for every call a service serves — unary calls, the three streams, broker deliveries,
/// over every wire — as a child of the caller's span (W3C `traceparent` in the request headers,
/// gRPC metadata or message headers), with the OpenTelemetry RPC and messaging attributes; the
/// handler runs in it, so its own spans, the calls it makes and its log lines join the trace.
///
/// A service with a tracer (``ServiceOptions/tracer``) runs every call in its span before the
/// auth check and the interceptors, without an interceptor frame; this interceptor does the same
/// for a stack of interceptors of one's own.
public struct TracingServerInterceptor: ServerInterceptor {
    public let tracer: any Tracer
    /// The tracer's head sampling, if it decides before making anything (``SampledTracer``).
    private let sampler: HeadSampler?

    public init(tracer: any Tracer) {
        self.tracer = tracer
        sampler = (tracer as? any HeadSampling)?.sampler
    }

    public nonisolated(nonsending) func intercept(
        _ call: ServerCall,
        next: (ServerCall) async throws -> ServerResult
    ) async throws -> ServerResult {
        try await trace(call.context, failure: { _ in nil }) { try await next(call) }
    }

    /// Runs `body` in the span of the call `context` describes, a child of the caller's (W3C
    /// context from the call's metadata); the span fails with what `body` throws, or with the
    /// error `failure` finds in what it returns. The service runs every call in it before its
    /// auth check and interceptors (no interceptor frame of its own: the hot path's cost).
    nonisolated(nonsending) func trace<T>(
        _ context: Context,
        failure: (T) -> MicroError?,
        _ body: nonisolated(nonsending) () async throws -> T
    ) async throws -> T {
        if let trace = unrecorded(context) {
            // no span: the trace's ids, for the calls the handler makes and its log lines
            return try await TraceContext.$unrecorded.withValue(trace) { try await body() }
        }
        return try await record(context, failure: failure, body)
    }

    /// ``trace(_:failure:_:)`` once ``unrecorded(_:)`` said nil: the tracer's span.
    nonisolated(nonsending) func record<T>(
        _ context: Context,
        failure: (T) -> MicroError?,
        _ body: nonisolated(nonsending) () async throws -> T
    ) async throws -> T {
        let descriptor = context.call
        var parent = InstrumentationContext.current ?? .topLevel
        tracer.extract(context.metadata, into: &parent, using: MetadataExtractor())
        let naming = SpanNaming.of(context)
        let span = tracer.startSpan(naming.name, context: parent, ofKind: descriptor.kind == .delivery ? .consumer : .server)
        if span.isRecording { span.attributes = naming.attributes }
        do {
            let result = try await InstrumentationContext.$current.withValue(span.context) { try await body() }
            SpanNaming.end(span, descriptor, error: failure(result))
            return result
        } catch {
            SpanNaming.end(span, descriptor, error: error)
            throw error
        }
    }

    /// The trace of a call the service does not record, if the tracer samples by head
    /// (``SampledTracer``): its caller's, said to be not sampled, or, without one, a new trace
    /// that the sampler declines. Nil: the tracer decides (a caller's sampled trace, a new trace
    /// drawn to be recorded, a `traceparent` that does not parse).
    func unrecorded(_ context: Context) -> TraceContext? {
        guard let sampler else { return nil }
        let metadata = context.metadata
        guard let header = metadata["traceparent"] else {
            return sampler.declines() ? TraceContext(trace: .random(), span: .random(), sampled: false) : nil
        }
        guard let caller = TraceContext(traceparent: header, tracestate: metadata["tracestate"]), !caller.sampled else { return nil }
        return caller.child()
    }
}

/// A span for every call a client makes — unary calls, streams, publishes — as a child of the
/// caller's current span, sent along as W3C `traceparent` (and `tracestate`) in the call's
/// metadata (request headers, gRPC metadata, message headers). One span covers the retries on
/// other nodes; it names the node that answered (`server.address`, or the address called).
public struct TracingClientInterceptor: ClientInterceptor {
    public let tracer: any Tracer
    /// The tracer's head sampling, if it decides before making anything (``SampledTracer``).
    private let sampler: HeadSampler?

    public init(tracer: any Tracer) {
        self.tracer = tracer
        sampler = (tracer as? any HeadSampling)?.sampler
    }

    public nonisolated(nonsending) func intercept(
        _ call: ClientCall,
        next: (ClientCall) async throws -> ClientResponse
    ) async throws -> ClientResponse {
        let current = InstrumentationContext.current
        var call = call
        if current == nil, let trace = TraceContext.unrecorded?.child() ?? declinedTrace() {
            // a trace that is not recorded: sent on as not sampled, no span
            call.options.metadata["traceparent"] = trace.traceparent
            if let state = trace.traceState { call.options.metadata["tracestate"] = state }
            return try await next(call)
        }
        let descriptor = call.descriptor
        let publish = descriptor.kind == .publish
        let naming = SpanNaming.of(descriptor)
        let span = tracer.startSpan(naming.name, context: current ?? .topLevel, ofKind: publish ? .producer : .client)
        if span.isRecording { span.attributes = naming.attributes }
        tracer.inject(span.context, into: &call.options.metadata, using: DictionaryInjector())
        do {
            let response = try await next(call)
            if span.isRecording, let address = response.node?.address ?? call.options.address { span.attributes["server.address"] = address }
            SpanNaming.end(span, descriptor, error: nil)
            return response
        } catch {
            SpanNaming.end(span, descriptor, error: error)
            throw error
        }
    }

    /// A new trace that the tracer's head sampling declines to record, if it has one and does.
    private func declinedTrace() -> TraceContext? {
        guard let sampler, sampler.declines() else { return nil }
        return TraceContext(trace: .random(), span: .random(), sampled: false)
    }
}

/// Names and attributes of the framework's spans (OpenTelemetry semantic conventions for RPC
/// and messaging).
struct SpanNaming: Sendable {
    let name: String
    let attributes: SpanAttributes

    /// Those of `call`, made once per kind of call and kept (``DescriptorMemo``).
    static func of(_ call: CallDescriptor) -> SpanNaming { kept.value(for: call, SpanNaming.init) }

    private static let kept = DescriptorMemo<SpanNaming>()

    /// Those of a served call: kept by its endpoint, per wire (no hashing).
    static func of(_ context: Context) -> SpanNaming {
        let index = switch context.wire {
        case .microHTTP1: 0
        case .microHTTP2: 1
        case .grpc: 2
        case .broker: 3
        }
        if let known = context.origin.spanNamings.withLock({ $0[index] }) { return known }
        let made = SpanNaming(context.call)
        context.origin.spanNamings.withLock { $0[index] = made }
        return made
    }

    init(_ call: CallDescriptor) {
        name = Self.name(call)
        attributes = Self.attributes(call)
    }

    /// Ends `span` with the outcome of its call: `error`, or success.
    static func end(_ span: any Span, _ call: CallDescriptor, error: (any Error)?) {
        if span.isRecording {
            if let error { failed(error, call, span) } else { succeeded(call, span) }
        }
        span.end()
    }

    /// `Service/Method` for a call (`rpc.service`/`rpc.method` of its endpoint `Service.Method`),
    /// `send TOPIC` for a publish, `process TOPIC` for a delivery.
    static func name(_ call: CallDescriptor) -> String {
        switch call.kind {
        case .publish: return "send " + call.endpoint
        case .delivery: return "process " + call.endpoint
        default:
            let (service, method) = split(call.endpoint)
            return service + "/" + method
        }
    }

    static func attributes(_ call: CallDescriptor) -> SpanAttributes {
        var attributes: SpanAttributes = [:]
        switch call.kind {
        case .publish, .delivery:
            attributes["messaging.system"] = "micro"
            attributes["messaging.destination.name"] = call.endpoint
            attributes["messaging.operation.type"] = call.kind == .publish ? "send" : "process"
            if !call.service.isEmpty { attributes["micro.service"] = call.service }
        default:
            let (service, method) = split(call.endpoint)
            attributes["rpc.system"] = call.wire == .grpc ? "grpc" : "micro"
            attributes["rpc.service"] = service
            attributes["rpc.method"] = method
            attributes["micro.service"] = call.service
            attributes["micro.call.kind"] = call.kind.rawValue
            switch call.wire {
            case .microHTTP1: attributes["network.protocol.version"] = "1.1"
            case .microHTTP2, .grpc: attributes["network.protocol.version"] = "2"
            case .broker: break
            }
        }
        return attributes
    }

    static func succeeded(_ call: CallDescriptor, _ span: any Span) {
        if call.wire == .grpc { span.attributes["rpc.grpc.status_code"] = 0 }
    }

    /// The error on the span: its status, `error.type` (the micro error's code, or the error's
    /// type), the gRPC status code on gRPC, and an `exception` event.
    static func failed(_ error: any Error, _ call: CallDescriptor, _ span: any Span) {
        span.recordError(error)
        if let e = error as? MicroError {
            span.attributes["error.type"] = "\(e.code)"
            if call.wire == .grpc { span.attributes["rpc.grpc.status_code"] = GRPCStatusCode(microCode: e.code).rawValue }
            span.setStatus(SpanStatus(code: .error, message: e.detail))
        } else {
            span.attributes["error.type"] = String(describing: type(of: error))
            if call.wire == .grpc {
                let code: GRPCStatusCode = error is CancellationError ? .cancelled : .unknown
                span.attributes["rpc.grpc.status_code"] = code.rawValue
            }
            span.setStatus(SpanStatus(code: .error, message: "\(error)"))
        }
    }

    /// `Greeter.Hello` → (`Greeter`, `Hello`); an endpoint without a dot is its own method.
    static func split(_ endpoint: String) -> (service: String, method: String) {
        guard let dot = endpoint.lastIndex(of: ".") else { return (endpoint, endpoint) }
        return (String(endpoint[..<dot]), String(endpoint[endpoint.index(after: dot)...]))
    }
}
