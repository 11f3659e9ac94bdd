/// A complete HTTP request as the core received it (HTTP/1.1 or HTTP/2).
///
/// A value type backed by one shared, immutable object: handing a request down through the
/// router and into tasks copies a reference, not each of its fields, and reading a field takes
/// no reference count. Changing a field makes a new object (requests are rarely changed).
public struct HTTPServerRequest: Sendable {
    /// `GET`, `POST`, ...
    public var method: String {
        get { storage.fields.method }
        set { change { $0.method = newValue } }
    }
    /// The request target: path and query.
    public var path: String {
        get { storage.fields.path }
        set { change { $0.path = newValue } }
    }
    /// Request headers; names in lower case.
    public var headers: HTTPHeaders {
        get { storage.fields.headers }
        set { change { $0.headers = newValue } }
    }
    /// The whole body.
    public var body: [UInt8] {
        get { storage.fields.body }
        set { change { $0.body = newValue } }
    }
    /// 1 for HTTP/1.1, 2 for HTTP/2.
    public var httpVersion: Int {
        get { storage.fields.httpVersion }
        set { change { $0.httpVersion = newValue } }
    }
    /// The loop that owns the connection; the handler runs on it.
    public var loop: EventLoop {
        get { storage.fields.loop }
        set { change { $0.loop = newValue } }
    }
    /// The body as it arrives, for a request handed over as a stream (see
    /// ``HTTPServer/init(group:configuration:logger:streams:handler:)``); `body` is then empty.
    public var bodyStream: HTTPBodyStream? {
        get { storage.fields.bodyStream }
        set { change { $0.bodyStream = newValue } }
    }
    /// The TLS peer (its verified identity and chain); nil on a plaintext connection.
    public var tls: TLSPeer? {
        get { storage.fields.tls }
        set { change { $0.tls = newValue } }
    }

    private var storage: Storage

    public init(
        method: String, path: String, headers: HTTPHeaders, body: [UInt8], httpVersion: Int, loop: EventLoop,
        tls: TLSPeer? = nil, bodyStream: HTTPBodyStream? = nil
    ) {
        storage = Storage(Fields(method: method, path: path, headers: headers, content: body, httpVersion: httpVersion,
                                 loop: loop, bodyStream: bodyStream, tls: tls))
    }

    /// A request the core is serving: its fields live in the object that answers it.
    init(_ call: InFlightRequest) { storage = call }

    private mutating func change(_ body: (inout Fields) -> Void) {
        var fields = storage.fields
        body(&fields)
        storage = Storage(fields)
    }

    /// Tells this request from others in flight: the same for each copy of it, until a field is
    /// changed.
    package var identity: ObjectIdentifier { ObjectIdentifier(storage) }

    /// The first value of header `name`: `headers[name]` without a copy of the headers.
    package func header(_ name: String) -> String? { storage.fields.headers[name] }

    /// `headers.withValue(of:_:)` without a copy of the headers.
    package func withHeaderValue<R>(of name: String, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
        storage.fields.headers.withValue(of: name, body)
    }

    /// The one uncompressed gRPC message that the whole body is, without its 5-byte prefix
    /// (taken off as the body arrived, without another copy); nil for any other body.
    package var grpcMessage: [UInt8]? { storage.fields.grpcFramed ? storage.fields.content : nil }

    struct Fields {
        var method: String
        var path: String
        var headers: HTTPHeaders
        /// The body, or the gRPC message in it without its prefix when `grpcFramed`.
        var content: [UInt8]
        var grpcFramed = false
        var httpVersion: Int
        var loop: EventLoop
        var bodyStream: HTTPBodyStream?
        var tls: TLSPeer?

        var body: [UInt8] {
            get {
                guard grpcFramed else { return content }
                return withUnsafeBytes(of: GRPCPrefix.uncompressed(length: content.count)) { Array($0) } + content
            }
            set {
                content = newValue
                grpcFramed = false
            }
        }
    }

    /// The fields, never changed once made. A request that arrives over the network gets one
    /// object for its fields and its answer (`InFlightRequest` is a `Storage`), not two.
    ///
    /// @unchecked Sendable: `fields` is immutable and `Fields` holds only Sendable values.
    class Storage: @unchecked Sendable {
        final let fields: Fields

        init(_ fields: Fields) { self.fields = fields }
    }
}

/// A complete HTTP response. `content-length` is added by the core.
public struct HTTPServerResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]
    /// Sent after the body on HTTP/2 (gRPC status); dropped on HTTP/1.1.
    public var trailers: HTTPHeaders
    /// The body is one uncompressed gRPC message: the core writes its 5-byte prefix in front of
    /// it as it sends it, so that framing the answer does not copy the message.
    package var isGRPCMessage = false

    public init(status: Int = 200, headers: HTTPHeaders = [:], body: [UInt8] = [], trailers: HTTPHeaders = [:]) {
        self.status = status
        self.headers = headers
        self.body = body
        self.trailers = trailers
    }
}

/// gRPC's 5-byte message prefix: a compressed flag, then the message's length in 4 bytes,
/// big-endian. The core takes it off a request whose body is one uncompressed message
/// (``HTTPServerRequest/grpcMessage``) and writes it in front of an answer's message
/// (``HTTPServerResponse/isGRPCMessage``), so that neither side copies the message to frame it.
package enum GRPCPrefix {
    package static let count = 5

    /// The prefix of an uncompressed message of `length` bytes (at most 4 GiB - 1).
    static func uncompressed(length: Int) -> (UInt8, UInt8, UInt8, UInt8, UInt8) {
        let n = UInt32(truncatingIfNeeded: length)
        return (0, UInt8(truncatingIfNeeded: n >> 24), UInt8(truncatingIfNeeded: n >> 16), UInt8(truncatingIfNeeded: n >> 8),
                UInt8(truncatingIfNeeded: n))
    }

    /// Whether the `count` bytes at `bytes` are exactly one uncompressed message with its prefix.
    static func isOneUncompressedMessage(_ bytes: UnsafePointer<UInt8>, _ count: Int) -> Bool {
        count >= Self.count && bytes[0] == 0
            && Int(bytes[1]) << 24 | Int(bytes[2]) << 16 | Int(bytes[3]) << 8 | Int(bytes[4]) == count - Self.count
    }

    /// Whether `body` is exactly one uncompressed message with its prefix.
    package static func isOneUncompressedMessage(_ body: [UInt8]) -> Bool {
        body.withUnsafeBufferPointer { $0.baseAddress.map { isOneUncompressedMessage($0, body.count) } ?? false }
    }
}
