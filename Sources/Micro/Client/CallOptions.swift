/// How one call is made. Set on a ``Client`` for all its calls, and per call.
public struct CallOptions: Sendable {
    /// The whole call, retries included; sent to the server as the `Timeout` header. go-micro's
    /// default is 5 s.
    public var timeout: Duration
    /// Further attempts, on other nodes, when it is safe (the request never reached a handler, or
    /// the server answered 408 or 503).
    public var retries: Int
    /// Wait before retry n: `backoff * 2^(n-1)`, with full jitter.
    public var backoff: Duration
    /// How the node is chosen; nil keeps the client's selector.
    public var strategy: SelectionStrategy?
    /// Which nodes may be chosen.
    public var filters: [NodeFilter]
    /// The request's content type (its codec).
    public var contentType: String
    /// Sent as request headers; the handler sees them in `Context.metadata`.
    public var metadata: [String: String]
    /// Call this `host:port` directly, bypassing the registry.
    public var address: String?
    /// How long a stream may last (sent as its deadline); nil, the default, sets none, as
    /// go-micro does. Unary calls use ``timeout``.
    public var streamTimeout: Duration?
    /// For a direct TLS ``address`` (`https://`, `tls://`) of a server outside the services'
    /// trust domain (etcd, a public API): its certificate must name the host dialled (DNS or IP
    /// subject alternative name), as a browser checks, instead of carrying the service's SPIFFE
    /// identity (``Client/expectedIdentity(of:)``). False by default.
    public var verifiesHostName = false

    public init(
        timeout: Duration = .seconds(5),
        retries: Int = 2,
        backoff: Duration = .milliseconds(10),
        strategy: SelectionStrategy? = nil,
        filters: [NodeFilter] = [],
        contentType: String = "application/json",
        metadata: [String: String] = [:],
        address: String? = nil,
        streamTimeout: Duration? = nil
    ) {
        self.streamTimeout = streamTimeout
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.strategy = strategy
        self.filters = filters
        self.contentType = contentType
        self.metadata = metadata
        self.address = address
    }

    /// The defaults with gRPC framing (`application/grpc`): for protobuf messages, and for any
    /// gRPC server.
    public static var grpc: CallOptions { CallOptions(contentType: "application/grpc") }
}
