import MicroCore

/// gRPC on the same port: `POST /package.Service/Method` with `content-type: application/grpc`
/// (`+proto`, `+json`), one length-prefixed message each way (unary), status in trailers.
extension Router {
    /// The largest request message accepted, after decompression (gRPC's default, 4 MiB).
    static let maxGRPCMessageBytes = 4 * 1024 * 1024

    /// A gRPC error answer: "trailers-only", one HEADERS frame with the status and no body.
    static func grpcFailure(_ code: GRPCStatusCode, _ message: String, contentType: String, extra: HTTPHeaders = [:]) -> HTTPServerResponse {
        var headers: HTTPHeaders = [
            "content-type": contentType, "grpc-status": String(code.rawValue), "grpc-message": GRPCText.encodeMessage(message),
        ]
        for (name, value) in extra { headers.add(name: name, value: value) }
        return HTTPServerResponse(status: 200, headers: headers)
    }

    /// Where a gRPC request goes, decided without suspending (see ``Router/Route``).
    @inline(never)
    func grpcRoute(_ request: HTTPServerRequest, contentType: String) -> Route {
        func fail(_ code: GRPCStatusCode, _ message: String, extra: HTTPHeaders = [:]) -> Route {
            .answer(Self.grpcFailure(code, message, contentType: contentType, extra: extra))
        }
        guard request.httpVersion == 2 else {
            return .answer(HTTPServerResponse(
                status: 505, headers: ["content-type": "application/json"],
                body: Array(MicroError(id: service, code: 505, detail: "gRPC needs HTTP/2").json.utf8)))
        }
        let codec: any Codec
        switch contentType == "application/grpc" ? contentType : contentType.split(separator: ";", maxSplits: 1)[0].lowercased() {
        case "application/grpc", "application/grpc+proto": codec = ProtobufCodec()
        case "application/grpc+json": codec = JSONCodec()
        default:
            // the gRPC spec answers an unknown subtype with HTTP 415
            return .answer(HTTPServerResponse(
                status: 415, headers: ["content-type": "application/json"],
                body: Array(MicroError(id: service, code: 415, detail: "unsupported gRPC content type \(contentType); supported: application/grpc, application/grpc+proto, application/grpc+json").json.utf8)))
        }
        guard request.method == "POST" else {
            return fail(.unimplemented, "gRPC calls are POST, not \(request.method)")
        }
        let (found, malformed) = endpoint(grpcPath: request.path)
        if malformed {
            return fail(.unimplemented, "malformed gRPC path \(request.path): expected /package.Service/Method")
        }
        guard let endpoint = found else {
            return fail(.unimplemented, "method \(request.path) not found on service \(service)")
        }
        var timeout: Int64 = 0
        if let text = request.header("grpc-timeout") {
            guard let ns = GRPCText.parseTimeoutNanoseconds(text) else {
                return fail(.internal, "malformed grpc-timeout '\(text)'")
            }
            timeout = ns
        }
        if let streaming = endpoint.streaming { return .stream(StreamCall(endpoint, streaming, codec, timeout: timeout, grpcContentType: contentType)) }
        let message: [UInt8]
        if let whole = request.grpcMessage {
            // the usual request: one uncompressed message that is the whole body, its prefix
            // already taken off as it arrived
            message = whole
        } else {
            let messages: [(compressed: Bool, bytes: ArraySlice<UInt8>)]
            do {
                messages = try GRPCFraming.messages(in: request.body)
            } catch {
                return fail(.internal, "malformed request: \(error)")
            }
            guard messages.count == 1 else {
                return fail(.unimplemented, "\(endpoint.name) is unary: expected one request message, got \(messages.count)")
            }
            if messages[0].compressed {
                switch request.header("grpc-encoding")?.lowercased() {
                case "gzip":
                    do {
                        message = try Gzip.decompress(messages[0].bytes, limit: Self.maxGRPCMessageBytes)
                    } catch {
                        let exhausted = error.description.contains("exceeds")
                        return fail(exhausted ? .resourceExhausted : .internal, "request message: \(error)")
                    }
                case nil, "identity":
                    return fail(.internal, "compressed message without a grpc-encoding")
                case let other?:
                    return fail(.unimplemented, "grpc-encoding \(other) is not supported", extra: ["grpc-accept-encoding": "identity,gzip"])
                }
            } else {
                message = Array(messages[0].bytes)
            }
        }
        guard message.count <= Self.maxGRPCMessageBytes else {
            return fail(.resourceExhausted, "request message of \(message.count) bytes exceeds the limit of \(Self.maxGRPCMessageBytes)")
        }
        let context = self.context(request, endpoint: endpoint, timeout: timeout, wire: .grpc)
        return .unary(UnaryCall(endpoint: endpoint, codec: codec, context: context, message: message, grpcContentType: contentType))
    }

    /// The answer to a unary gRPC call: the message and status 0, or the error as a status.
    func grpcAnswer(_ result: Result<[UInt8], MicroError>, _ contentType: String, _ context: Context) -> HTTPServerResponse {
        var headers = contentTypeHeaders(contentType)
        for (name, value) in context.responseMetadata.all { headers.add(name: name, value: value) }
        switch result {
        case .success(let bytes):
            guard bytes.count <= UInt32.max else {
                return Self.grpcFailure(.resourceExhausted, "response message of \(bytes.count) bytes is too large for gRPC",
                                        contentType: contentType)
            }
            var response = HTTPServerResponse(status: 200, headers: headers, body: bytes, trailers: Self.grpcOK)
            response.isGRPCMessage = true  // framed by the core as it is sent, not copied here
            return response
        case .failure(let e):
            // "trailers-only": the status rides in the one HEADERS frame
            headers.add(name: "grpc-status", value: String(GRPCStatusCode(microCode: e.code).rawValue))
            headers.add(name: "grpc-message", value: GRPCText.encodeMessage(e.detail))
            return HTTPServerResponse(status: 200, headers: headers)
        }
    }

    static let grpcOK = HTTPHeaders([("grpc-status", "0")]).frozen()

    /// `/pkg.Service/Method` → (`pkg.Service.Method`, `Service.Method`).
    static func grpcEndpointNames(_ path: String) -> (qualified: String, short: String)? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].isEmpty, !parts[1].isEmpty, !parts[2].isEmpty else { return nil }
        let service = parts[1], method = parts[2]
        let short = service.split(separator: ".").last.map(String.init) ?? String(service)
        return ("\(service).\(method)", "\(short).\(method)")
    }
}
