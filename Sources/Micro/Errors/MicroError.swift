import Foundation

/// The framework's error, wire-compatible with go-micro's `errors.Error`:
/// `{"id":"...","code":404,"detail":"...","status":"Not Found"}`.
///
/// Throw one from a handler to answer with that code; any other error becomes a 500 with its
/// description.
public struct MicroError: Error, Codable, Sendable, Equatable, CustomStringConvertible {
    /// Who raised it: a service name, or `micro.server` / `micro.client`.
    public var id: String
    /// An HTTP-style status code.
    public var code: Int
    /// What went wrong, for a person.
    public var detail: String
    /// The standard text of `code`.
    public var status: String

    public init(id: String, code: Int, detail: String, status: String? = nil) {
        self.id = id
        self.code = code
        self.detail = detail
        self.status = status ?? MicroError.statusText(code)
    }

    public static func badRequest(_ id: String, _ detail: String) -> MicroError { .init(id: id, code: 400, detail: detail) }
    public static func unauthorized(_ id: String, _ detail: String) -> MicroError { .init(id: id, code: 401, detail: detail) }
    public static func forbidden(_ id: String, _ detail: String) -> MicroError { .init(id: id, code: 403, detail: detail) }
    public static func notFound(_ id: String, _ detail: String) -> MicroError { .init(id: id, code: 404, detail: detail) }
    public static func timeout(_ id: String, _ detail: String) -> MicroError { .init(id: id, code: 408, detail: detail) }
    public static func conflict(_ id: String, _ detail: String) -> MicroError { .init(id: id, code: 409, detail: detail) }
    public static func internalServerError(_ id: String, _ detail: String) -> MicroError {
        .init(id: id, code: 500, detail: detail)
    }

    /// The error as go-micro's JSON.
    public var json: String {
        "{\"id\":\(Self.quote(id)),\"code\":\(code),\"detail\":\(Self.quote(detail)),\"status\":\(Self.quote(status))}"
    }

    public var description: String { json }

    /// Reads an error from go-micro's JSON; text that is not JSON becomes the detail, code 0.
    public init(parsing text: String) {
        if let data = text.data(using: .utf8), let error = try? JSONDecoder().decode(Wire.self, from: data) {
            self.init(id: error.id ?? "", code: error.code ?? 0, detail: error.detail ?? "", status: error.status ?? "")
        } else {
            self.init(id: "", code: 0, detail: text, status: "")
        }
    }

    private struct Wire: Decodable {
        var id: String?
        var code: Int?
        var detail: String?
        var status: String?
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
                    + String(scalar.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    public static func statusText(_ code: Int) -> String {
        switch code {
        case 400: "Bad Request"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 412: "Precondition Failed"
        case 413: "Request Entity Too Large"
        case 415: "Unsupported Media Type"
        case 429: "Too Many Requests"
        case 499: "Client Closed Request"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        case 504: "Gateway Timeout"
        default: ""
        }
    }
}
