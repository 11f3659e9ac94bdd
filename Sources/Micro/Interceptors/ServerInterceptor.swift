/// A call on its way into a handler, as server interceptors see it.
public struct ServerCall: Sendable {
    /// The call's metadata, deadline, peer identity and logger; `context.call` says what it is.
    public let context: Context
    /// The request of a unary call or the message of a delivery, encoded in ``codec``'s content
    /// type; an interceptor may replace it. Nil for streams, whose messages ``onRequest(_:)`` sees.
    public var message: [UInt8]?
    /// The codec of the call's content type.
    public let codec: any Codec
    var taps = MessageTaps()

    /// What the call is: service, endpoint, kind and wire.
    public var descriptor: CallDescriptor { context.call }

    public init(context: Context, message: [UInt8]?, codec: any Codec) {
        self.context = context
        self.message = message
        self.codec = codec
    }

    /// Sees, and may replace, every request message before the handler decodes it: the request of
    /// a unary call or a delivery, each message of a stream. Throwing a ``MicroError`` ends the call
    /// with it. Taps added by outer interceptors run first.
    ///
    /// Threading: in the task that reads the message; in a bidirectional stream, at the same time
    /// as response taps.
    public mutating func onRequest(_ tap: @escaping @Sendable ([UInt8]) throws -> [UInt8]) {
        taps.request = MessageTaps.chain(taps.request, then: tap)
    }

    /// Sees, and may replace, every answer message after the handler encoded it: the answer of a
    /// unary call, each message of a stream. Throwing a ``MicroError`` ends the call with it.
    /// Taps added by inner interceptors run first.
    public mutating func onResponse(_ tap: @escaping @Sendable ([UInt8]) throws -> [UInt8]) {
        taps.response = MessageTaps.chain(tap, then: taps.response)
    }
}

/// What a call's handler produced, as server interceptors see it on the way out.
public struct ServerResult: Sendable {
    /// The answer of a unary call as it will be sent (an interceptor may replace it); nil for
    /// streams and deliveries, whose messages have gone out as they were written.
    public var message: [UInt8]?

    public init(message: [UInt8]?) {
        self.message = message
    }
}

/// Wraps every call a service serves (go-micro's handler wrappers): unary calls over the micro
/// protocol (HTTP/1.1 and HTTP/2) and gRPC, server, client and bidirectional streams, and
/// broker deliveries to its subscribers.
///
/// Order: `ServiceOptions.interceptors[0]` is the outermost. They run after routing (the
/// endpoint, codec and deadline are known; the caller's deadline already runs) and before
/// anything is decoded.
///
/// - Refuse a call by throwing before calling `next`: the handler does not run, and a
///   ``MicroError`` reaches the caller as its status on the call's wire (micro: `Micro-Error`;
///   gRPC: `grpc-status` from its code, e.g. 403 → PERMISSION_DENIED; a delivery refused with a
///   4xx is dropped, any other error has it delivered again). Other errors become 500/INTERNAL.
/// - See its messages: ``ServerCall/message`` (unary, delivery), ``ServerCall/onRequest(_:)``
///   and ``ServerCall/onResponse(_:)`` (every message, streams included).
/// - See its result and status: what `next` returns, or throws. For a stream `next` returns
///   when the handler has returned.
///
/// Threading: runs in the call's task, on the connection's event loop: do not block. `next` may
/// be called once, from that task; it cannot be kept or handed to another task.
public protocol ServerInterceptor: Sendable {
    nonisolated(nonsending) func intercept(
        _ call: ServerCall,
        next: (ServerCall) async throws -> ServerResult
    ) async throws -> ServerResult
}

/// A service's interceptors, run in order around a terminal step.
struct ServerInterceptors: Sendable {
    let all: [any ServerInterceptor]
    /// The service's auth, run before `all` on every call kind: a synchronous check of a concrete
    /// type (no interceptor frame, no existential call), the hook's refusal without its cost.
    let admission: AuthInterceptor?
    /// The service's tracing, around the admission and `all` on every call kind (a concrete
    /// type, no interceptor frame: what a call that is not recorded costs matters).
    let tracing: TracingServerInterceptor?

    init(all: [any ServerInterceptor], admission: AuthInterceptor? = nil, tracing: TracingServerInterceptor? = nil) {
        self.all = all
        self.admission = admission
        self.tracing = tracing
    }

    /// `body` in the call's span, if the service traces.
    nonisolated(nonsending) func traced<T>(
        _ context: Context,
        failure: (T) -> MicroError? = { _ in nil },
        _ body: nonisolated(nonsending) () async throws -> T
    ) async throws -> T {
        guard let tracing else { return try await body() }
        return try await tracing.trace(context, failure: failure, body)
    }

    var isEmpty: Bool { all.isEmpty }
    /// Nothing to run around a call (no interceptor, no admission, no tracing): a synchronous
    /// handler can then be called without an async call.
    var allowSynchronousCalls: Bool { all.isEmpty && admission == nil && tracing == nil }

    /// Throws the refusal of ``admission``, if any (waiting, once, for its first rules).
    nonisolated(nonsending) func admit(_ context: Context) async throws {
        try await admission?.admit(context)
    }

    nonisolated(nonsending) func run(
        _ call: ServerCall,
        from index: Int = 0,
        _ terminal: (ServerCall) async throws -> ServerResult
    ) async throws -> ServerResult {
        guard index < all.count else { return try await terminal(call) }
        return try await all[index].intercept(call) { call in try await run(call, from: index + 1, terminal) }
    }
}
