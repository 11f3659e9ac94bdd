/// A call on its way out of a ``Client``, as client interceptors see it.
public struct ClientCall: Sendable {
    /// What the call is: service, endpoint (a publish: the topic), kind and wire.
    public let descriptor: CallDescriptor
    /// How it is made: timeout, retries, address, content type, and ``CallOptions/metadata``, which
    /// goes out as request headers (a publish: as message headers).
    public var options: CallOptions
    /// The encoded request of a unary call or the message of a publish; an interceptor may replace
    /// it. Nil for streams, whose messages ``onRequest(_:)`` sees.
    public var message: [UInt8]?
    var taps = MessageTaps()

    public var service: String { descriptor.service }
    public var endpoint: String { descriptor.endpoint }

    public init(descriptor: CallDescriptor, options: CallOptions, message: [UInt8]?) {
        self.descriptor = descriptor
        self.options = options
        self.message = message
    }

    /// Sees, and may replace, every message sent: the request of a unary call or a publish, each
    /// message of a stream (encoded, before framing). Outer interceptors' taps run first.
    public mutating func onRequest(_ tap: @escaping @Sendable ([UInt8]) throws -> [UInt8]) {
        taps.request = MessageTaps.chain(taps.request, then: tap)
    }

    /// Sees, and may replace, every message received: the answer of a unary call, each message of
    /// a stream, before it is decoded. Inner interceptors' taps run first.
    public mutating func onResponse(_ tap: @escaping @Sendable ([UInt8]) throws -> [UInt8]) {
        taps.response = MessageTaps.chain(tap, then: taps.response)
    }
}

/// The raw answer to a ``ClientCall``.
public struct ClientResponse: Sendable {
    public var body: [UInt8]
    public var metadata: Metadata
    /// The node that answered (nil when called by address).
    public var node: Node? {
        get { answered?.node }
        set { answered = newValue.map(PickedNode.init) }
    }
    /// The node, as the selector handed it to the call (shared, not copied per answer).
    var answered: PickedNode?

    public init(body: [UInt8], metadata: Metadata, node: Node? = nil) {
        self.body = body
        self.metadata = metadata
        answered = node.map(PickedNode.init)
    }

    init(body: [UInt8], metadata: Metadata, answered: PickedNode?) {
        self.body = body
        self.metadata = metadata
        self.answered = answered
    }
}

/// Wraps every call a client makes (go-micro's client wrappers): unary calls, server, client and
/// bidirectional streams, and publishes.
///
/// Order: `Client(interceptors:)[0]` is the outermost. They run once per call, before a node is
/// chosen: retries on other nodes happen inside `next`.
///
/// - Refuse a call by throwing before calling `next`: nothing is sent.
/// - Change it: `call.options.metadata` (headers), `call.message`, the taps.
/// - See its result and status: what `next` returns or throws. A unary call's answer is in the
///   ``ClientResponse``; a stream's `next` returns (with an empty body) when the caller's stream
///   body has returned; a publish's when the broker took the message.
///
/// Threading: runs in the caller's task. `next` may be called once, from that task (it may
/// capture the caller's stream body); it cannot be kept or handed to another task.
public protocol ClientInterceptor: Sendable {
    nonisolated(nonsending) func intercept(
        _ call: ClientCall,
        next: (ClientCall) async throws -> ClientResponse
    ) async throws -> ClientResponse
}

/// A client's interceptors, run in order around a terminal step.
struct ClientInterceptors: Sendable {
    let all: [any ClientInterceptor]

    var isEmpty: Bool { all.isEmpty }

    nonisolated(nonsending) func run(
        _ call: ClientCall,
        from index: Int = 0,
        _ terminal: (ClientCall) async throws -> ClientResponse
    ) async throws -> ClientResponse {
        guard index < all.count else { return try await terminal(call) }
        return try await all[index].intercept(call) { call in try await run(call, from: index + 1, terminal) }
    }
}

