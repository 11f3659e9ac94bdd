import Foundation
import MicroCore
import Synchronization

/// How a ``ClientCall`` goes on the wire and how the answer comes back: the micro protocol
/// (mucp headers over HTTP/2) or gRPC, chosen by the content type.
enum Wire {
    enum Answer {
        case success([UInt8], Metadata)
        case failure(MicroError)
    }

    static func isGRPC(_ contentType: String) -> Bool { contentType.hasPrefix("application/grpc") }

    /// The wire a client call with `options` travels on (the client speaks HTTP/2 only).
    static func of(_ options: CallOptions) -> CallDescriptor.Wire { isGRPC(options.contentType) ? .grpc : .microHTTP2 }

    /// The request line and fields of calls to `endpoint` of `service` with `options`: made once
    /// per shape (``CallShapes``), frozen in C form; the core adds the deadline header and, for
    /// gRPC, the message's prefix (``HTTPClient/CallFlags``).
    static func shape(service: String, endpoint: String, options: CallOptions) -> CallShape {
        var headers = HTTPHeaders()
        let grpc = isGRPC(options.contentType)
        // the deadline goes in the header its wire reads, unless the caller's metadata sets it
        let deadlineField = grpc ? "grpc-timeout" : "timeout"
        let callerSetsDeadline = options.metadata.keys.contains { $0.lowercased() == deadlineField }
        let path: String
        var flags: HTTPClient.CallFlags
        if grpc {
            headers.reserveCapacity(4 + options.metadata.count)
            headers.add(name: "content-type", value: options.contentType)
            headers.add(name: "te", value: "trailers")
            headers.add(name: "grpc-accept-encoding", value: "identity,gzip")
            headers.add(name: "user-agent", value: "swift-micro")
            path = grpcPath(service: service, endpoint: endpoint)
            flags = [.grpcFrame, .grpcTimeout]
        } else {
            let endpoint = microEndpoint(endpoint)
            headers.reserveCapacity(5 + options.metadata.count)
            headers.add(name: "content-type", value: options.contentType)
            headers.add(name: "accept", value: options.contentType)
            headers.add(name: "micro-service", value: service)
            headers.add(name: "micro-endpoint", value: endpoint)
            headers.add(name: "micro-method", value: endpoint)
            path = "/"
            flags = .microTimeout
        }
        if callerSetsDeadline { flags.remove([.grpcTimeout, .microTimeout]) }
        for (key, value) in options.metadata { headers[key] = value }
        return CallShape(service: service, endpoint: endpoint, contentType: options.contentType, metadata: options.metadata,
                         path: path, headers: headers.frozen(), flags: flags, grpc: grpc, timeout: options.timeout)
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

    static func decode(_ response: consuming HTTPClientResponse, grpc: Bool, service: String) -> Answer {
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

    private static func decodeGRPC(_ response: consuming HTTPClientResponse, service: String) -> Answer {
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
        if status != "0" {  // (the message is looked for only when there is something to say)
            guard let status, let code = Int(status).flatMap(GRPCStatusCode.init(rawValue:)) else {
                return .failure(MicroError(id: service, code: 500, detail: "gRPC answer without a valid grpc-status"))
            }
            if code != .ok {
                let message = response.trailers["grpc-message"] ?? response.headers["grpc-message"]
                return .failure(MicroError(id: service, code: code.microCode, detail: message.map(GRPCText.decodeMessage) ?? "\(code)"))
            }
        }
        // the usual answer: one uncompressed message that is the whole body, which moves into
        // the answer with the fields (no copy)
        if response.unframed {
            let (headers, body, trailers) = response.parts()
            return .success(body, Metadata(headers, then: trailers))
        }
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

/// What every call of one shape (service, endpoint, content type, metadata) sends besides its
/// body and deadline: made once, sent by many calls without building a field.
final class CallShape: Sendable {
    let service: String
    let endpoint: String
    let contentType: String
    let metadata: [String: String]
    let path: String
    /// Frozen (C form).
    let headers: HTTPHeaders
    let flags: HTTPClient.CallFlags
    let grpc: Bool
    /// The timeout of the options the shape was made for, and in nanoseconds (128-bit
    /// arithmetic once, not per call).
    let timeout: Duration
    let timeoutNanoseconds: Int64

    init(service: String, endpoint: String, contentType: String, metadata: [String: String], path: String, headers: HTTPHeaders,
         flags: HTTPClient.CallFlags, grpc: Bool, timeout: Duration) {
        self.timeout = timeout
        timeoutNanoseconds = Monotonic.nanoseconds(timeout)
        self.service = service
        self.endpoint = endpoint
        self.contentType = contentType
        self.metadata = metadata
        self.path = path
        self.headers = headers
        self.flags = flags
        self.grpc = grpc
    }

    /// The call's timeout in nanoseconds.
    func nanoseconds(of timeout: Duration) -> Int64 { timeout == self.timeout ? timeoutNanoseconds : Monotonic.nanoseconds(timeout) }

    func fits(_ service: String, _ endpoint: String, _ options: CallOptions) -> Bool {
        // the strings a caller passes again compare by identity first; empty metadata at once
        self.service == service && self.endpoint == endpoint && contentType == options.contentType && metadata == options.metadata
    }
}

/// The shapes of the calls a client made last: a few, replaced in turn (a service calls a handful
/// of endpoints over and over; per-call metadata such as a trace context makes a shape of its own
/// each time, which costs what building the fields costs anyway).
final class CallShapes: Sendable {
    static let capacity = 8
    private let state = Mutex<(shapes: [CallShape], next: Int)>(([], 0))

    @inline(never)  // (inlined, its temporaries would enlarge the async frame of every call)
    func shape(service: String, endpoint: String, options: CallOptions) -> CallShape {
        if let hit = state.withLock({ state in state.shapes.first { $0.fits(service, endpoint, options) } }) { return hit }
        let made = Wire.shape(service: service, endpoint: endpoint, options: options)
        state.withLock { state in
            if state.shapes.count < Self.capacity {
                state.shapes.append(made)
            } else {
                state.shapes[state.next] = made
                state.next = (state.next + 1) % Self.capacity
            }
        }
        return made
    }
}
