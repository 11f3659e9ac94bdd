/// A request on its way out of a ``Client``, as interceptors see it.
public struct ClientRequest: Sendable {
    public var service: String
    public var endpoint: String
    public var body: [UInt8]
    public var options: CallOptions

    public init(service: String, endpoint: String, body: [UInt8], options: CallOptions) {
        self.service = service
        self.endpoint = endpoint
        self.body = body
        self.options = options
    }
}

/// The raw answer to a ``ClientRequest``.
public struct ClientResponse: Sendable {
    public var body: [UInt8]
    public var metadata: Metadata
    /// The node that answered (nil when called by address).
    public var node: Node?

    public init(body: [UInt8], metadata: Metadata, node: Node? = nil) {
        self.body = body
        self.metadata = metadata
        self.node = node
    }
}

/// Wraps every call of a client (go-micro's client wrappers): sees the request and the next
/// step, may change either, measure, or answer itself. The first interceptor is the outermost.
public protocol ClientInterceptor: Sendable {
    func intercept(
        _ request: ClientRequest,
        next: @Sendable (ClientRequest) async throws -> ClientResponse
    ) async throws -> ClientResponse
}

/// A request on its way into a handler, as server interceptors see it.
public struct ServerRequest: Sendable {
    public var endpoint: String
    public var body: [UInt8]
    public var codec: any Codec

    public init(endpoint: String, body: [UInt8], codec: any Codec) {
        self.endpoint = endpoint
        self.body = body
        self.codec = codec
    }
}

/// Wraps every handler call of a service (go-micro's handler wrappers). The first interceptor
/// is the outermost.
public protocol ServerInterceptor: Sendable {
    func intercept(
        _ request: ServerRequest,
        context: Context,
        next: @Sendable (ServerRequest, Context) async throws -> [UInt8]
    ) async throws -> [UInt8]
}
