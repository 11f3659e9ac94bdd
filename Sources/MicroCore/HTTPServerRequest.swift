/// A complete HTTP request as the core received it (HTTP/1.1 or HTTP/2).
public struct HTTPServerRequest: Sendable {
    /// `GET`, `POST`, ...
    public var method: String
    /// The request target: path and query.
    public var path: String
    /// Request headers; names in lower case.
    public var headers: HTTPHeaders
    /// The whole body.
    public var body: [UInt8]
    /// 1 for HTTP/1.1, 2 for HTTP/2.
    public var httpVersion: Int
    /// The loop that owns the connection; the handler runs on it.
    public var loop: EventLoop
    /// The body as it arrives, for a request handed over as a stream (see
    /// ``HTTPServer/init(group:configuration:logger:streams:handler:)``); `body` is then empty.
    public var bodyStream: HTTPBodyStream?
    /// The TLS peer (its verified identity and chain); nil on a plaintext connection.
    public var tls: TLSPeer?

    public init(
        method: String, path: String, headers: HTTPHeaders, body: [UInt8], httpVersion: Int, loop: EventLoop,
        tls: TLSPeer? = nil
    ) {
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.httpVersion = httpVersion
        self.loop = loop
        self.tls = tls
    }
}

/// A complete HTTP response. `content-length` is added by the core.
public struct HTTPServerResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]
    /// Sent after the body on HTTP/2 (gRPC status); dropped on HTTP/1.1.
    public var trailers: HTTPHeaders

    public init(status: Int = 200, headers: HTTPHeaders = [:], body: [UInt8] = [], trailers: HTTPHeaders = [:]) {
        self.status = status
        self.headers = headers
        self.body = body
        self.trailers = trailers
    }
}
