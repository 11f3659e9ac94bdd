import Foundation
import MicroCore
import Synchronization

/// How a ``ClientCall`` goes on the wire and how the answer comes back: the micro protocol
/// (mucp headers over HTTP/2) or gRPC, chosen by the content type.
enum Wire {
    struct Outgoing {
        var path: String
        var headers: HTTPHeaders
        var body: [UInt8]
        var grpc: Bool
    }

    enum Answer {
        case success([UInt8], Metadata)
        case failure(MicroError)
    }

    static func isGRPC(_ contentType: String) -> Bool { contentType.hasPrefix("application/grpc") }

    /// The wire a client call with `options` travels on (the client speaks HTTP/2 only).
    static func of(_ options: CallOptions) -> CallDescriptor.Wire { isGRPC(options.contentType) ? .grpc : .microHTTP2 }

    /// - Parameter grpcPath: the call's gRPC path when known already (``GRPCPaths``).
    static func encode(_ request: ClientCall, remaining: Duration, grpcPath known: String? = nil) -> Outgoing {
        let options = request.options
        // one allocation for the fields: every call builds these
        var headers = HTTPHeaders()
        if request.descriptor.wire == .grpc {
            headers.reserveCapacity(5 + options.metadata.count)
            headers.add(name: "content-type", value: options.contentType)
            headers.add(name: "te", value: "trailers")
            headers.add(name: "grpc-timeout", value: GRPCText.formatTimeout(remaining))
            headers.add(name: "grpc-accept-encoding", value: "identity,gzip")
            headers.add(name: "user-agent", value: "swift-micro")
            for (key, value) in options.metadata { headers[key] = value }
            return Outgoing(path: known ?? grpcPath(service: request.service, endpoint: request.endpoint), headers: headers,
                            body: GRPCFraming.frame(request.message ?? []), grpc: true)
        }
        let endpoint = microEndpoint(request.endpoint)
        headers.reserveCapacity(6 + options.metadata.count)
        headers.add(name: "content-type", value: options.contentType)
        headers.add(name: "accept", value: options.contentType)
        headers.add(name: "micro-service", value: request.service)
        headers.add(name: "micro-endpoint", value: endpoint)
        headers.add(name: "micro-method", value: endpoint)
        headers.add(name: "timeout", value: String(max(1, remaining.wholeNanoseconds)))
        for (key, value) in options.metadata { headers[key] = value }
        return Outgoing(path: "/", headers: headers, body: request.message ?? [], grpc: false)
    }

    /// The micro protocol's endpoint name: `Service.Method` as given, or made from a gRPC path
    /// (`/pkg.Service/Method`), so that generated clients work over either wire.
    static func microEndpoint(_ endpoint: String) -> String {
        guard endpoint.hasPrefix("/"), let (_, short) = Router.grpcEndpointNames(endpoint) else { return endpoint }
        return short
    }

    /// `/pkg.Service/Method` as given, or go-micro's mapping of `Service.Method` of service
    /// `name`: `/name.Service/Method`.
    static func grpcPath(service: String, endpoint: String) -> String {
        if endpoint.hasPrefix("/") { return endpoint }
        guard let dot = endpoint.lastIndex(of: ".") else { return "/\(service)/\(endpoint)" }
        return "/\(service).\(endpoint[..<dot])/\(endpoint[endpoint.index(after: dot)...])"
    }

    static func decode(_ response: HTTPClientResponse, grpc: Bool, service: String) -> Answer {
        grpc ? decodeGRPC(response, service: service) : decodeMicro(response)
    }

    private static func decodeMicro(_ response: HTTPClientResponse) -> Answer {
        if let text = response.headers["micro-error"] { return .failure(MicroError(parsing: text)) }
        guard response.status == 200 else {
            let detail = String(decoding: response.body, as: UTF8.self)
            return .failure(response.headers["content-type"] == "application/json" ? MicroError(parsing: detail)
                : MicroError(id: "micro.client", code: response.status, detail: detail))
        }
        // a swift-micro or go-micro server always says what its answer is; an empty 200 with no
        // content type is no answer (go-micro's HTTP transport answers so over h2c: its handler's
        // answer never reaches the stream), not an empty success
        if response.body.isEmpty && response.headers["content-type"] == nil {
            return .failure(MicroError(id: "micro.client", code: 502,
                                       detail: "the server answered 200 with no body and no content type: no answer to the call"))
        }
        return .success(response.body, Metadata(response.headers))
    }

    private static func decodeGRPC(_ response: HTTPClientResponse, service: String) -> Answer {
        guard response.status == 200 else {
            // not a gRPC answer at all: map the HTTP status as gRPC clients do
            let code: GRPCStatusCode = switch response.status {
            case 400: .internal
            case 401: .unauthenticated
            case 403: .permissionDenied
            case 404: .unimplemented
            case 429, 502, 503, 504: .unavailable
            default: .unknown
            }
            return .failure(MicroError(id: service, code: code.microCode, detail: "HTTP \(response.status) instead of a gRPC answer"))
        }
        // trailers, or the headers of a trailers-only answer
        let status = response.trailers["grpc-status"] ?? response.headers["grpc-status"]
        let message = response.trailers["grpc-message"] ?? response.headers["grpc-message"]
        guard let status, let code = Int(status).flatMap(GRPCStatusCode.init(rawValue:)) else {
            return .failure(MicroError(id: service, code: 500, detail: "gRPC answer without a valid grpc-status"))
        }
        guard code == .ok else {
            return .failure(MicroError(id: service, code: code.microCode, detail: message.map(GRPCText.decodeMessage) ?? "\(code)"))
        }
        // the usual answer: one uncompressed message that is the whole body
        if GRPCPrefix.isOneUncompressedMessage(response.body) {
            return .success(Array(response.body[GRPCPrefix.count...]), metadata(of: response))
        }
        let messages: [(compressed: Bool, bytes: ArraySlice<UInt8>)]
        do {
            messages = try GRPCFraming.messages(in: response.body)
        } catch {
            return .failure(MicroError(id: service, code: 500, detail: "malformed gRPC answer: \(error)"))
        }
        guard messages.count == 1 else {
            return .failure(MicroError(id: service, code: 500, detail: "expected one gRPC answer message, got \(messages.count)"))
        }
        var body = Array(messages[0].bytes)
        if messages[0].compressed {
            guard response.headers["grpc-encoding"]?.lowercased() == "gzip" else {
                return .failure(MicroError(id: service, code: 500, detail: "compressed gRPC answer in an unknown encoding"))
            }
            do {
                body = try Gzip.decompress(messages[0].bytes, limit: 64 * 1024 * 1024)
            } catch {
                return .failure(MicroError(id: service, code: 500, detail: "gRPC answer: \(error)"))
            }
        }
        return .success(body, metadata(of: response))
    }

    /// What the caller sees of a gRPC answer's headers and trailers.
    private static func metadata(of response: HTTPClientResponse) -> Metadata {
        Metadata(response.headers, then: response.trailers)
    }
}

extension Client {
    /// The gRPC path of `endpoint` of `service`: `/pkg.Service/Method` as given, or go-micro's
    /// mapping of `Service.Method`, `/service.Service/Method`.
    public static func grpcPath(service: String, endpoint: String) -> String {
        Wire.grpcPath(service: service, endpoint: endpoint)
    }
}

/// The gRPC path of the last (service, endpoint) a client called, so that a client calling one
/// endpoint over and over does not build the same string each time. Comparing the names is
/// cheap: a caller passes the same strings again.
final class GRPCPaths: Sendable {
    private let last = Mutex<(service: String, endpoint: String, path: String)?>(nil)

    func path(service: String, endpoint: String) -> String {
        if let hit = last.withLock({ last in last.flatMap { $0.service == service && $0.endpoint == endpoint ? $0.path : nil } }) {
            return hit
        }
        let path = Wire.grpcPath(service: service, endpoint: endpoint)
        last.withLock { $0 = (service, endpoint, path) }
        return path
    }
}
