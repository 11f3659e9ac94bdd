/// A complete HTTP request as the core received it (HTTP/1.1 or HTTP/2).
///
/// A value type backed by one shared object (copy on write): handing a request down through
/// the router and into tasks copies a reference, not each of its fields.
public struct HTTPServerRequest: Sendable {
    /// `GET`, `POST`, ...
    public var method: String {
        get { storage.method }
        set { unique().method = newValue }
    }
    /// The request target: path and query.
    public var path: String {
        get { storage.path }
        set { unique().path = newValue }
    }
    /// Request headers; names in lower case.
    public var headers: HTTPHeaders {
        get { storage.headers }
        set { unique().headers = newValue }
    }
    /// The whole body.
    public var body: [UInt8] {
        get { storage.body }
        set { unique().body = newValue }
    }
    /// 1 for HTTP/1.1, 2 for HTTP/2.
    public var httpVersion: Int {
        get { storage.httpVersion }
        set { unique().httpVersion = newValue }
    }
    /// The loop that owns the connection; the handler runs on it.
    public var loop: EventLoop {
        get { storage.loop }
        set { unique().loop = newValue }
    }
    /// The body as it arrives, for a request handed over as a stream (see
    /// ``HTTPServer/init(group:configuration:logger:streams:handler:)``); `body` is then empty.
    public var bodyStream: HTTPBodyStream? {
        get { storage.bodyStream }
        set { unique().bodyStream = newValue }
    }
    /// The TLS peer (its verified identity and chain); nil on a plaintext connection.
    public var tls: TLSPeer? {
        get { storage.tls }
        set { unique().tls = newValue }
    }

    private var storage: Storage

    public init(
        method: String, path: String, headers: HTTPHeaders, body: [UInt8], httpVersion: Int, loop: EventLoop,
        tls: TLSPeer? = nil, bodyStream: HTTPBodyStream? = nil
    ) {
        storage = Storage(method: method, path: path, headers: headers, body: body, httpVersion: httpVersion,
                          loop: loop, bodyStream: bodyStream, tls: tls)
    }

    private mutating func unique() -> Storage {
        if !isKnownUniquelyReferenced(&storage) { storage = storage.copy() }
        return storage
    }

    /// @unchecked Sendable: mutated only through `unique()`, i.e. when no other value shares it
    /// (copy on write), so a storage seen by two threads is never written.
    private final class Storage: @unchecked Sendable {
        var method: String
        var path: String
        var headers: HTTPHeaders
        var body: [UInt8]
        var httpVersion: Int
        var loop: EventLoop
        var bodyStream: HTTPBodyStream?
        var tls: TLSPeer?

        init(method: String, path: String, headers: HTTPHeaders, body: [UInt8], httpVersion: Int, loop: EventLoop,
             bodyStream: HTTPBodyStream?, tls: TLSPeer?) {
            self.method = method
            self.path = path
            self.headers = headers
            self.body = body
            self.httpVersion = httpVersion
            self.loop = loop
            self.bodyStream = bodyStream
            self.tls = tls
        }

        func copy() -> Storage {
            Storage(method: method, path: path, headers: headers, body: body, httpVersion: httpVersion, loop: loop,
                    bodyStream: bodyStream, tls: tls)
        }
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
