import Logging
import MicroCore
import Synchronization

/// A registered endpoint: decodes, calls the handler, encodes.
struct EndpointHandler: Sendable {
    let name: String
    var description = Endpoint(name: "")
    let call: @Sendable (_ body: [UInt8], _ codec: any Codec, _ context: Context) async throws -> [UInt8]
}

/// Routes requests to endpoints the go-micro way: the `Micro-Endpoint` header (falling back to
/// `Micro-Method`, then to a `/Service/Method` path), on any path; `Content-Type` picks the codec.
final class Router: Sendable {
    let service: String
    let codecs: Codecs
    let logger: Logger
    let interceptors: [any ServerInterceptor]
    private let endpoints = Mutex<[String: EndpointHandler]>([:])

    init(service: String, codecs: Codecs, logger: Logger, interceptors: [any ServerInterceptor] = []) {
        self.interceptors = interceptors
        self.service = service
        self.codecs = codecs
        self.logger = logger
    }

    func register(_ endpoint: EndpointHandler) {
        endpoints.withLock { $0[endpoint.name] = endpoint }
    }

    var endpointNames: [String] { endpoints.withLock { $0.keys.sorted() } }

    /// What the registry publishes: each endpoint with its request and response shapes.
    var descriptions: [Endpoint] { endpoints.withLock { $0.values.map(\.description).sorted { $0.name < $1.name } } }

    func serve(_ request: HTTPServerRequest, _ responder: HTTPResponder) async {
        guard let name = Self.endpointName(request) else {
            return responder.send(error(.badRequest(service, "no endpoint named: set the Micro-Endpoint header, e.g. 'Micro-Endpoint: Service.Method'")))
        }
        guard let endpoint = endpoints.withLock({ $0[name] }) else {
            return responder.send(error(.notFound(service, "endpoint \(name) not found on service \(service)")))
        }
        let contentType = request.headers["content-type"]
        guard let codec = codecs.codec(for: contentType) else {
            let supported = codecs.contentTypes.joined(separator: ", ")
            return responder.send(error(MicroError(id: service, code: 415, detail: "unsupported content type \(contentType ?? ""); supported: \(supported)")))
        }
        var deadline: ContinuousClock.Instant?
        if let timeout = request.headers["timeout"], let ns = Int64(timeout), ns > 0 {
            deadline = .now + .nanoseconds(ns)
        }
        let context = Context(
            service: service,
            endpoint: name,
            metadata: Metadata(request.headers),
            deadline: deadline,
            eventLoop: request.loop,
            baseLogger: logger
        )
        guard let deadline else {
            return responder.send(await run(endpoint, request.body, codec, context))
        }
        // The deadline is a sibling task: whichever finishes first answers; the other is cancelled.
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                responder.send(await self.run(endpoint, request.body, codec, context))
            }
            group.addTask {
                guard (try? await Task.sleep(until: deadline)) != nil else { return }
                responder.send(self.error(.timeout(self.service, "\(name) did not answer before the caller's deadline")))
            }
            await group.next()
            group.cancelAll()
        }
    }

    private func run(_ endpoint: EndpointHandler, _ body: [UInt8], _ codec: any Codec, _ context: Context) async -> HTTPServerResponse {
        do {
            let bytes = interceptors.isEmpty
                ? try await endpoint.call(body, codec, context)
                : try await intercepted(ServerRequest(endpoint: endpoint.name, body: body, codec: codec), context, endpoint, interceptors[...])
            return HTTPServerResponse(status: 200, headers: ["content-type": codec.contentType], body: bytes)
        } catch let e as MicroError {
            return error(e)
        } catch is CancellationError {
            return error(.timeout(service, "\(endpoint.name) was cancelled"))
        } catch {
            context.logger.error("handler failed: \(error)")
            return self.error(.internalServerError(service, "\(error)"))
        }
    }

    private func intercepted(
        _ request: ServerRequest,
        _ context: Context,
        _ endpoint: EndpointHandler,
        _ rest: ArraySlice<any ServerInterceptor>
    ) async throws -> [UInt8] {
        guard let first = rest.first else { return try await endpoint.call(request.body, request.codec, context) }
        let remaining = rest.dropFirst()
        return try await first.intercept(request, context: context) { request, context in
            try await self.intercepted(request, context, endpoint, remaining)
        }
    }

    /// go-micro answers errors with HTTP 200 and the error in `Micro-Error`; the body carries it
    /// too so that curl shows it.
    func error(_ e: MicroError) -> HTTPServerResponse {
        let json = e.json
        return HTTPServerResponse(
            status: 200,
            headers: ["content-type": "application/json", "micro-error": json, "x-micro-error": json],
            body: Array(json.utf8)
        )
    }

    static func endpointName(_ request: HTTPServerRequest) -> String? {
        if let name = request.headers["micro-endpoint"], !name.isEmpty { return name }
        if let name = request.headers["micro-method"], !name.isEmpty { return name }
        // /Helloworld/Greeting -> Helloworld.Greeting
        let path = request.path.split(separator: "?", maxSplits: 1).first ?? ""
        let parts = path.split(separator: "/")
        if parts.count == 2 { return parts[0] + "." + parts[1] }
        return nil
    }
}

extension Router {
    /// Wraps a typed handler: a body that does not decode is the caller's fault (400).
    static func endpoint<Request: Decodable & Sendable, Response: Encodable & Sendable>(
        _ name: String,
        service: String,
        _ handler: @escaping @Sendable (Request, Context) async throws -> Response
    ) -> EndpointHandler {
        var handler = EndpointHandler(name: name) { body, codec, context in
            let request: Request
            do {
                request = try codec.decode(Request.self, from: body.isEmpty && codec is JSONCodec ? Array("{}".utf8) : body)
            } catch {
                throw MicroError.badRequest(service, "cannot decode \(Request.self) from \(codec.contentType) for \(name): \(Self.describe(error))")
            }
            let response = try await handler(request, context)
            do {
                return try codec.encode(response)
            } catch {
                throw MicroError.internalServerError(service, "cannot encode \(Response.self) as \(codec.contentType): \(error)")
            }
        }
        let responseName = String(describing: Response.self)
        handler.description = Endpoint(
            name: name,
            request: Schema.describe(Request.self, name: String(describing: Request.self)),
            response: (Response.self as? any Decodable.Type).map { Schema.describe($0, name: responseName) }
                ?? Value(name: responseName, type: Schema.typeName(Response.self))
        )
        return handler
    }

    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let c): return c.underlyingError.map { "\($0)" } ?? c.debugDescription
        case DecodingError.keyNotFound(let key, _): return "missing field '\(key.stringValue)'"
        case DecodingError.typeMismatch(let type, let c):
            return "field '\(c.codingPath.map(\.stringValue).joined(separator: "."))' is not \(type)"
        case DecodingError.valueNotFound(let type, let c):
            return "field '\(c.codingPath.map(\.stringValue).joined(separator: "."))' is null, expected \(type)"
        default: return "\(error)"
        }
    }
}
