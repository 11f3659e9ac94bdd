public import SwiftProtobuf

/// Streaming endpoints: server streaming (one request, many answers), client streaming (many
/// requests, one answer) and bidirectional, for `Codable` types and for protobuf messages.
/// They are served over HTTP/2: gRPC (`/PKG.Service/Method`) and the micro protocol with a
/// `Micro-Stream` header.
///
/// ```swift
/// service.handle("Counter.Count", serverStream: { (req: CountRequest, out: MessageWriter<Tick>, ctx) in
///     for n in 1...req.to { try await out.write(Tick(n: n)) }
/// })
/// ```
/// The stream ends when the handler returns (a thrown ``MicroError`` becomes its status); if the
/// client goes away or the deadline passes, the handler's task is cancelled and its reads and
/// writes throw.
extension Service {
    /// One request, a stream of answers.
    public func handle<Request: Decodable & Sendable, Response: Encodable & Sendable>(
        _ endpoint: String,
        serverStream handler: @escaping @Sendable (Request, MessageWriter<Response>, Context) async throws -> Void
    ) {
        register(endpoint, .server, Request.self, Response.self, Self.coding(Request.self, Response.self)) { requests, responses, context in
            try await handler(try await Self.single(requests, endpoint, context), responses, context)
        }
    }

    /// A stream of requests, one answer.
    public func handle<Request: Decodable & Sendable, Response: Encodable & Sendable>(
        _ endpoint: String,
        clientStream handler: @escaping @Sendable (MessageStream<Request>, Context) async throws -> Response
    ) {
        register(endpoint, .client, Request.self, Response.self, Self.coding(Request.self, Response.self)) { requests, responses, context in
            try await responses.write(try await handler(requests, context))
        }
    }

    /// Streams both ways, at once.
    public func handle<Request: Decodable & Sendable, Response: Encodable & Sendable>(
        _ endpoint: String,
        bidiStream handler: @escaping @Sendable (MessageStream<Request>, MessageWriter<Response>, Context) async throws -> Void
    ) {
        register(endpoint, .bidi, Request.self, Response.self, Self.coding(Request.self, Response.self), handler)
    }

    /// One protobuf request, a stream of answers.
    public func handle<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ endpoint: String,
        serverStream handler: @escaping @Sendable (Request, MessageWriter<Response>, Context) async throws -> Void
    ) {
        register(endpoint, .server, Request.self, Response.self, Self.messageCoding(Request.self, Response.self)) { requests, responses, context in
            try await handler(try await Self.single(requests, endpoint, context), responses, context)
        }
    }

    /// A stream of protobuf requests, one answer.
    public func handle<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ endpoint: String,
        clientStream handler: @escaping @Sendable (MessageStream<Request>, Context) async throws -> Response
    ) {
        register(endpoint, .client, Request.self, Response.self, Self.messageCoding(Request.self, Response.self)) { requests, responses, context in
            try await responses.write(try await handler(requests, context))
        }
    }

    /// Protobuf messages both ways, at once.
    public func handle<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ endpoint: String,
        bidiStream handler: @escaping @Sendable (MessageStream<Request>, MessageWriter<Response>, Context) async throws -> Void
    ) {
        register(endpoint, .bidi, Request.self, Response.self, Self.messageCoding(Request.self, Response.self), handler)
    }

    // MARK: - plumbing

    /// How a codec turns the endpoint's types into bytes and back; throws a MicroError.
    typealias Coding<Request, Response> = @Sendable (any Codec, _ service: String, _ endpoint: String) throws -> (
        decode: @Sendable ([UInt8]) throws -> Request, encode: @Sendable (Response) throws -> [UInt8]
    )

    static func coding<Request: Decodable & Sendable, Response: Encodable & Sendable>(_: Request.Type, _: Response.Type) -> Coding<Request, Response> {
        { codec, service, endpoint in
            ({ bytes in
                do {
                    return try codec.decode(Request.self, from: bytes)
                } catch {
                    throw MicroError.badRequest(service, "cannot decode \(Request.self) from \(codec.contentType) for \(endpoint): \(Router.describe(error))")
                }
            }, { try codec.encode($0) })
        }
    }

    static func messageCoding<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(_: Request.Type, _: Response.Type) -> Coding<Request, Response> {
        { codec, service, endpoint in
            guard let codec = codec.messageCodec else {
                throw MicroError(id: service, code: 415, detail: "\(codec.contentType) cannot carry protobuf messages; use application/protobuf, application/json or gRPC")
            }
            return ({ bytes in
                do {
                    return try codec.decode(message: Request.self, from: bytes)
                } catch {
                    throw MicroError.badRequest(service, "cannot decode \(Request.protoMessageName) for \(endpoint): \(error)")
                }
            }, { try codec.encode(message: $0) })
        }
    }

    /// The one request of a server stream.
    static func single<Request>(_ requests: MessageStream<Request>, _ endpoint: String, _ context: Context) async throws -> Request {
        var iterator = requests.makeAsyncIterator()
        guard let request = try await iterator.next() else {
            throw MicroError.badRequest(context.service, "\(endpoint) expects one request message, got none")
        }
        return request
    }

    private func register<Request: Sendable, Response: Sendable>(
        _ endpoint: String,
        _ kind: StreamKind,
        _: Request.Type,
        _: Response.Type,
        _ coding: @escaping Coding<Request, Response>,
        _ handler: @escaping @Sendable (MessageStream<Request>, MessageWriter<Response>, Context) async throws -> Void
    ) {
        let service = name
        let description = Endpoint(
            name: endpoint,
            request: Value(name: String(describing: Request.self), type: Schema.typeName(Request.self)),
            response: Value(name: String(describing: Response.self), type: Schema.typeName(Response.self)),
            metadata: ["stream": "true", "stream_kind": kind.rawValue]  // go-micro marks streams with stream=true
        )
        let streaming = StreamingHandler(kind: kind) { source, sink, codec, context in
            let (decode, encode) = try coding(codec, service, endpoint)
            try await handler(MessageStream(source, decode: decode), MessageWriter(sink, encode: encode), context)
        }
        let entry = EndpointHandler(name: endpoint, description: description, streaming: streaming) { _, _, _ in
            throw MicroError.badRequest(service, "\(endpoint) is a stream: call it as one")
        }
        router.register(entry)
    }
}
