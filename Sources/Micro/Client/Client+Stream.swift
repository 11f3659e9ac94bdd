import Foundation
import MicroCore
public import SwiftProtobuf
import Synchronization

/// A streaming call in progress (see ``Client/stream(_:_:request:response:options:_:)``).
public struct ClientStream<Request: Sendable, Response: Sendable>: Sendable {
    let writer: MessageWriter<Request>
    let http: HTTPClientStream
    /// The server's answers, in order. Iteration ends when the server ends the stream, and
    /// throws its error status (a ``MicroError``) if it ended with one.
    public let responses: MessageStream<Response>

    /// Sends one request message; suspends while the server does not read.
    public func send(_ request: Request) async throws {
        try await writer.write(request)
    }

    /// Ends the requests: the server sees the end of its input. Idempotent.
    public func closeSend() {
        http.finish()
    }

    /// The answer's headers (gRPC: initial metadata), once they arrive.
    public func headers() async throws -> Metadata {
        do {
            return Metadata(try await http.response().headers)
        } catch {
            throw ClientStreamFailure.map(error)
        }
    }
}

extension Client {
    /// Opens a stream to `endpoint` of `service` and runs `body` with it; the stream lives as
    /// long as the closure (one still open when it returns is reset). Works for all three kinds:
    /// send, then `closeSend()`, and read `responses`, in any order or at once.
    ///
    /// ```swift
    /// let total = try await client.stream("calc", "Calc.Sum", request: Number.self, response: Total.self) { call in
    ///     for n in 1...10 { try await call.send(Number(value: n)) }
    ///     call.closeSend()
    ///     for try await total in call.responses { return total.value }
    ///     return 0
    /// }
    /// ```
    /// The node is chosen by the selector; a stream that could not be opened is retried on
    /// another node, one that broke later is not. `options.streamTimeout` bounds it.
    public func stream<Request: Encodable & Sendable, Response: Decodable & Sendable, R>(
        _ service: String,
        _ endpoint: String,
        request: Request.Type = Request.self,
        response: Response.Type = Response.self,
        options: CallOptions? = nil,
        _ body: (ClientStream<Request, Response>) async throws -> R
    ) async throws -> R {
        try await codableStream(service, endpoint, options ?? self.options, kind: .bidiStream, body)
    }

    /// ``stream(_:_:request:response:options:_:)`` of a known kind (as interceptors see it).
    func codableStream<Request: Encodable & Sendable, Response: Decodable & Sendable, R>(
        _ service: String,
        _ endpoint: String,
        _ options: CallOptions,
        kind: CallDescriptor.Kind,
        _ body: (ClientStream<Request, Response>) async throws -> R
    ) async throws -> R {
        guard let codec = codec(for: options.contentType) else {
            throw MicroError(id: "micro.client", code: 400, detail: "unsupported content type \(options.contentType)")
        }
        return try await typedStream(service, endpoint, options, kind: kind, body, encode: { try codec.encode($0) }) { bytes in
            do {
                return try codec.decode(Response.self, from: bytes)
            } catch {
                throw MicroError(id: "micro.client", code: 500, detail: "cannot decode \(Response.self) from a message of \(service).\(endpoint): \(error)")
            }
        }
    }

    /// ``stream(_:_:request:response:options:_:)`` for protobuf messages; with a gRPC content
    /// type (``CallOptions/grpc``) `endpoint` may be the gRPC path, `/package.Service/Method`.
    public func stream<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message, R>(
        _ service: String,
        _ endpoint: String,
        request: Request.Type = Request.self,
        response: Response.Type = Response.self,
        options: CallOptions? = nil,
        _ body: (ClientStream<Request, Response>) async throws -> R
    ) async throws -> R {
        let options = options ?? self.options
        guard let codec = codec(for: options.contentType)?.messageCodec else {
            throw MicroError(id: "micro.client", code: 400, detail: "content type \(options.contentType) cannot carry protobuf messages")
        }
        return try await typedStream(service, endpoint, options, kind: .bidiStream, body, encode: { try codec.encode(message: $0) }) { bytes in
            do {
                return try codec.decode(message: Response.self, from: bytes)
            } catch {
                throw MicroError(id: "micro.client", code: 500, detail: "cannot decode \(Response.protoMessageName) from \(service) \(endpoint): \(error)")
            }
        }
    }

    /// ``stream(_:_:request:response:options:_:)`` with messages already encoded in
    /// `options.contentType` (the `micro stream` tool sends JSON lines this way).
    public func rawStream<R>(
        _ service: String,
        _ endpoint: String,
        options: CallOptions? = nil,
        _ body: (ClientStream<[UInt8], [UInt8]>) async throws -> R
    ) async throws -> R {
        try await typedStream(service, endpoint, options ?? self.options, kind: .bidiStream, body, encode: { $0 }, decode: { $0 })
    }

    /// Sends `request` and runs `body` with the stream of answers (server streaming).
    public func serverStream<Request: Encodable & Sendable, Response: Decodable & Sendable, R>(
        _ service: String,
        _ endpoint: String,
        _ request: Request,
        as response: Response.Type = Response.self,
        options: CallOptions? = nil,
        _ body: (MessageStream<Response>) async throws -> R
    ) async throws -> R {
        try await codableStream(service, endpoint, options ?? self.options, kind: .serverStream) { (call: ClientStream<Request, Response>) in
            try await call.send(request)
            call.closeSend()
            return try await body(call.responses)
        }
    }

    /// Sends every request of `requests`, then returns the one answer (client streaming).
    public func clientStream<Requests: Sequence & Sendable, Response: Decodable & Sendable>(
        _ service: String,
        _ endpoint: String,
        _ requests: Requests,
        as response: Response.Type = Response.self,
        options: CallOptions? = nil
    ) async throws -> Response where Requests.Element: Encodable & Sendable {
        try await codableStream(service, endpoint, options ?? self.options, kind: .clientStream) { (call: ClientStream<Requests.Element, Response>) in
            for request in requests { try await call.send(request) }
            call.closeSend()
            for try await answer in call.responses { return answer }
            throw MicroError(id: "micro.client", code: 500, detail: "\(service).\(endpoint) ended without an answer")
        }
    }

    /// A stream whose messages go through `encode` and come back through `decode`.
    /// Through the interceptors when there are any (`next` opens the stream and runs `body`).
    private func typedStream<Request: Sendable, Response: Sendable, R>(
        _ service: String,
        _ endpoint: String,
        _ options: CallOptions,
        kind: CallDescriptor.Kind,
        _ body: (ClientStream<Request, Response>) async throws -> R,
        encode: @escaping @Sendable (Request) throws -> [UInt8],
        decode: @escaping @Sendable ([UInt8]) throws -> Response
    ) async throws -> R {
        func open(_ service: String, _ endpoint: String, _ options: CallOptions, _ taps: MessageTaps) async throws -> R {
            try await openStream(service, endpoint, options) { http, source in
                source.tap = taps.response
                let sink: any MessageSink = taps.request.map { TappedSink(ClientRequestSink(http), $0) } ?? ClientRequestSink(http)
                return try await body(ClientStream(writer: MessageWriter(sink, encode: encode), http: http,
                                                   responses: MessageStream(source, decode: decode)))
            }
        }
        guard !interceptors.isEmpty else { return try await open(service, endpoint, options, MessageTaps()) }
        let descriptor = CallDescriptor(service: service, endpoint: endpoint, kind: kind,
                                        wire: Wire.of(options))
        var result: R?
        _ = try await interceptors.run(ClientCall(descriptor: descriptor, options: options, message: nil)) { call in
            result = try await open(call.service, call.endpoint, call.options, call.taps)
            return ClientResponse(body: [], metadata: Metadata())
        }
        guard let result else {
            throw MicroError(id: "micro.client", code: 500, detail: "an interceptor answered the stream to \(service).\(endpoint) without opening it")
        }
        return result
    }

    /// Opens the HTTP/2 stream (retrying on another node while none could be opened) and wires
    /// its answer into a message source that checks the status at the head and at the end.
    func openStream<R>(
        _ service: String,
        _ endpoint: String,
        _ options: CallOptions,
        _ body: (HTTPClientStream, MessageSource) async throws -> R
    ) async throws -> R {
        let selector = self.selector(options.strategy ?? defaultStrategy)
        let deadline = options.streamTimeout.map { ContinuousClock.now + $0 }
        let grpc = Wire.isGRPC(options.contentType)
        let (path, headers) = Self.streamHeaders(service, endpoint, options, grpc: grpc)
        var tried = TriedNodes()
        var lastError: any Error = MicroError(id: "micro.client", code: 500, detail: "no attempt was made")
        for attempt in 0...max(0, options.retries) {
            if attempt > 0 {
                try await Task.sleep(for: .nanoseconds(Int64(Double.random(in: 0...max(options.backoff.nanosecondsValue, 1)))))
            }
            let (picked, chosen) = try await pick(service, options, selector, &tried)
            // HTTP/1.1 to go-micro's nodes: its streams, frame by frame on a connection of their own
            let (address, target, version) = transport(service, picked, chosen?.picked, grpc: grpc, verifiesHostName: options.verifiesHostName)
            let entered = Atomic<Bool>(false)
            do {
                let result = try await http.withStream(address: address, path: path, headers: headers, deadline: deadline, tls: target,
                                                       version: version) { stream in
                    entered.store(true, ordering: .relaxed)
                    let source = Self.answerSource(stream, service: service, grpc: grpc)
                    return try await body(stream, source)
                }
                chosen.map { selector.finish($0.stats, started: $0.started, outcome: .success) }
                return result
            } catch let error as HTTPClientError where !entered.load(ordering: .relaxed) && error.neverProcessed {
                chosen.map { selector.finish($0.stats, started: $0.started, outcome: error.kind == .connect ? .connectFailure : .failure) }
                if error.kind == .connect { cache.invalidate(service) }
                lastError = error
            } catch {
                chosen.map { selector.finish($0.stats, started: $0.started, outcome: .success) }
                throw ClientStreamFailure.map(error)
            }
        }
        throw MicroError(id: "micro.client", code: 503, detail: "cannot open a stream to \(service).\(endpoint) after \(options.retries + 1) attempts: \(lastError)")
    }

    static func streamHeaders(_ service: String, _ endpoint: String, _ options: CallOptions, grpc: Bool) -> (String, HTTPHeaders) {
        var headers: HTTPHeaders
        let path: String
        if grpc {
            path = Wire.grpcPath(service: service, endpoint: endpoint)
            headers = ["content-type": options.contentType, "te": "trailers", "grpc-accept-encoding": "identity,gzip", "user-agent": "swift-micro"]
            if let timeout = options.streamTimeout { headers.add(name: "grpc-timeout", value: GRPCText.formatTimeout(timeout)) }
        } else {
            path = "/"
            headers = [
                "content-type": options.contentType, "accept": options.contentType, "micro-service": service,
                "micro-endpoint": Wire.microEndpoint(endpoint), "micro-method": Wire.microEndpoint(endpoint), "micro-stream": UUID().uuidString.lowercased(),
            ]
            if let timeout = options.streamTimeout { headers.add(name: "timeout", value: String(max(1, timeout.wholeNanoseconds))) }
        }
        for (key, value) in options.metadata { headers[key] = value }
        return (path, headers)
    }

    /// The answers of `stream`: the head is checked before the first message (an error status
    /// there, e.g. a gRPC trailers-only answer, is thrown), the trailers after the last.
    static func answerSource(_ stream: HTTPClientStream, service: String, grpc: Bool) -> MessageSource {
        MessageSource(
            loop: stream.loop,
            body: stream.body,
            whole: [],
            compression: nil,
            maxMessageBytes: 64 * 1024 * 1024,
            prepare: {
                let head = try await stream.response()
                if let error = statusError(head.headers, status: head.status, service: service, grpc: grpc, final: false) { throw error }
                return head.headers["grpc-encoding"]
            },
            onEnd: {
                let trailers = try await stream.trailers()
                let head = try await stream.response()
                var all = head.headers
                for (name, value) in trailers { all.add(name: name, value: value) }
                if let error = statusError(all, status: head.status, service: service, grpc: grpc, final: true) { throw error }
            },
            onFailure: ClientStreamFailure.map
        )
    }

    /// The error an answer's fields carry, if any. `final`: the stream is over, so a gRPC
    /// answer must have said its status by now.
    static func statusError(_ fields: HTTPHeaders, status: Int, service: String, grpc: Bool, final: Bool) -> MicroError? {
        if grpc {
            guard status == 200 else { return MicroError(id: service, code: 500, detail: "HTTP \(status) instead of a gRPC answer") }
            guard let text = fields["grpc-status"] else {
                return final ? MicroError(id: service, code: 500, detail: "gRPC stream ended without a grpc-status") : nil
            }
            guard let code = Int(text).flatMap(GRPCStatusCode.init(rawValue:)) else {
                return MicroError(id: service, code: 500, detail: "invalid grpc-status \(text)")
            }
            if code == .ok { return nil }
            return MicroError(id: service, code: code.microCode, detail: fields["grpc-message"].map(GRPCText.decodeMessage) ?? "\(code)")
        }
        if let text = fields["micro-error"] { return MicroError(parsing: text) }
        if status != 200 { return MicroError(id: service, code: status, detail: "HTTP \(status)") }
        return nil
    }
}

/// A client's requests on the stream.
struct ClientRequestSink: MessageSink {
    let stream: HTTPClientStream

    init(_ stream: HTTPClientStream) { self.stream = stream }

    func send(_ framed: [UInt8]) async throws {
        do {
            try await stream.write(framed)
        } catch {
            throw ClientStreamFailure.map(error)
        }
    }
}

/// Transport failures of a stream, as a caller sees them.
enum ClientStreamFailure {
    @Sendable static func map(_ error: any Error) -> any Error {
        guard let error = error as? HTTPClientError else { return error }
        switch error.kind {
        case .timeout: return MicroError(id: "micro.client", code: 408, detail: "the stream's deadline passed")
        case .cancelled: return CancellationError()
        default: return MicroError(id: "micro.client", code: 500, detail: "the stream broke: \(error)")
        }
    }
}
