import MicroCore

extension LegacyEnvelope.Kind {
    /// The envelope a content type names. Asked of every micro-protocol request: compares bytes,
    /// builds nothing.
    init?(contentType: String) {
        // by length first: the usual content types are neither, and are told so without a loop
        switch contentType.utf8.count {
        case 20 where HTTPHeaders.equalIgnoringCase(contentType, "application/json-rpc"): self = .jsonRPC
        case 21 where HTTPHeaders.equalIgnoringCase(contentType, "application/proto-rpc"): self = .protoRPC
        default: return nil
        }
    }
}

extension Router {
    /// A request in one of go-micro's legacy envelopes (see ``LegacyEnvelope``), ready to run.
    func legacyRoute(_ request: HTTPServerRequest, _ kind: LegacyEnvelope.Kind) -> Route {
        do {
            return legacyRoute(request, try LegacyEnvelope.open(request.body, as: kind))
        } catch {
            return .answer(self.error(.badRequest(service, error.description)))
        }
    }

    /// A request whose envelope is open.
    func legacyRoute(_ request: HTTPServerRequest, _ envelope: LegacyEnvelope) -> Route {
        let kind = envelope.kind
        guard let name = Self.endpointName(request) ?? (envelope.method.isEmpty ? nil : envelope.method) else {
            return .answer(self.error(.badRequest(service, "no endpoint named: set the Micro-Endpoint header or the envelope's method")))
        }
        guard let endpoint = endpoint(named: name) else { return .answer(unknownEndpoint(name)) }
        guard endpoint.streaming == nil, request.bodyStream == nil else {
            return .answer(self.error(.badRequest(service, "\(name) is a stream: \(kind.contentType) carries unary calls only")))
        }
        let codec: any Codec = kind == .jsonRPC ? JSONCodec() : ProtobufCodec()
        let timeout = Self.microTimeout(request)
        let context = self.context(request, endpoint: endpoint, timeout: timeout, wire: request.httpVersion == 1 ? .microHTTP1 : .microHTTP2)
        return .unary(UnaryCall(endpoint: endpoint, codec: codec, context: context, message: envelope.message, grpcContentType: nil,
                                legacy: envelope))
    }

    /// The answer to a call that came in a legacy envelope: 200 with the envelope, and a failure
    /// in `Micro-Error` too.
    func legacyAnswer(_ result: Result<[UInt8], MicroError>, _ envelope: LegacyEnvelope, _ context: Context) -> HTTPServerResponse {
        var headers = contentTypeHeaders(envelope.contentType)
        for (name, value) in context.responseMetadata.all { headers.add(name: name, value: value) }
        if case .failure(let error) = result { headers.add(name: "micro-error", value: error.json) }
        switch result {
        case .success(let answer): return HTTPServerResponse(status: 200, headers: headers, body: envelope.seal(answer: answer))
        case .failure(let error): return HTTPServerResponse(status: 200, headers: headers, body: envelope.seal(answer: [], error: error.json))
        }
    }
}
