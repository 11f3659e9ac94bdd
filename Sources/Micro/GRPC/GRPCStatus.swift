/// gRPC status codes, and their mapping to and from ``MicroError`` codes (go-micro's table).
public enum GRPCStatusCode: Int, Sendable, CaseIterable {
    case ok = 0, cancelled, unknown, invalidArgument, deadlineExceeded, notFound, alreadyExists,
        permissionDenied, resourceExhausted, failedPrecondition, aborted, outOfRange, unimplemented,
        `internal`, unavailable, dataLoss, unauthenticated

    /// The gRPC code for a MicroError code: 400 InvalidArgument, 401 Unauthenticated,
    /// 403 PermissionDenied, 404 NotFound, 408 DeadlineExceeded, 409 AlreadyExists,
    /// 412 FailedPrecondition, 413 ResourceExhausted, 429 ResourceExhausted, 499 Cancelled,
    /// 501 Unimplemented, 503 Unavailable, anything else Internal.
    public init(microCode: Int) {
        switch microCode {
        case 400: self = .invalidArgument
        case 401: self = .unauthenticated
        case 403: self = .permissionDenied
        case 404: self = .notFound
        case 408: self = .deadlineExceeded
        case 409: self = .alreadyExists
        case 412: self = .failedPrecondition
        case 413, 429: self = .resourceExhausted
        case 499: self = .cancelled
        case 501: self = .unimplemented
        case 503: self = .unavailable
        default: self = .internal
        }
    }

    /// The MicroError code for this gRPC code (the inverse of ``init(microCode:)``).
    public var microCode: Int {
        switch self {
        case .ok: 200
        case .invalidArgument, .outOfRange: 400
        case .unauthenticated: 401
        case .permissionDenied: 403
        case .notFound: 404
        case .deadlineExceeded: 408
        case .alreadyExists, .aborted: 409
        case .failedPrecondition: 412
        case .resourceExhausted: 429
        case .cancelled: 499
        case .unimplemented: 501
        case .unavailable: 503
        case .unknown, .internal, .dataLoss: 500
        }
    }
}

enum GRPCText {
    /// `grpc-message` is percent-encoded: bytes outside 0x20...0x7E, and '%', become %XX.
    static func encodeMessage(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            if byte >= 0x20 && byte <= 0x7E && byte != UInt8(ascii: "%") {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }

    /// Decodes %XX escapes; a malformed escape is kept as it is.
    static func decodeMessage(_ text: String) -> String {
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "%"), i + 2 < bytes.count,
                let value = UInt8(String(decoding: bytes[(i + 1)...(i + 2)], as: UTF8.self), radix: 16)
            {
                out.append(value)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `grpc-timeout`: 1 to 8 digits and a unit (H, M, S, m, u, n).
    static func parseTimeout(_ text: String) -> Duration? {
        parseTimeoutNanoseconds(text).map { .nanoseconds($0) }
    }

    /// `grpc-timeout` (1 to 8 digits and a unit) in nanoseconds, up to `Int64.max` (99999999H is
    /// more); nil if malformed. Read from the bytes: every call with a deadline carries one.
    static func parseTimeoutNanoseconds(_ text: String) -> Int64? {
        var text = text
        return text.withUTF8 { bytes -> Int64? in
            guard bytes.count >= 2, bytes.count <= 9 else { return nil }
            var value: Int64 = 0
            for byte in bytes[..<(bytes.count - 1)] {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int64(byte &- UInt8(ascii: "0"))
            }
            guard let unit = timeoutUnits.first(where: { $0.letter == bytes[bytes.count - 1] })?.nanoseconds else { return nil }
            let (ns, overflow) = value.multipliedReportingOverflow(by: unit)
            return overflow ? .max : ns
        }
    }

    /// `grpc-timeout`'s units, smallest first.
    private static let timeoutUnits: [(letter: UInt8, nanoseconds: Int64)] = [
        (UInt8(ascii: "n"), 1), (UInt8(ascii: "u"), 1_000), (UInt8(ascii: "m"), 1_000_000), (UInt8(ascii: "S"), 1_000_000_000),
        (UInt8(ascii: "M"), 60_000_000_000), (UInt8(ascii: "H"), 3_600_000_000_000),
    ]

    /// The shortest exact-enough `grpc-timeout` for a duration (at most 8 digits, rounded up).
    static func formatTimeout(_ duration: Duration) -> String {
        let ns = max(1, duration.wholeNanoseconds)
        for (letter, size) in timeoutUnits {
            let value = (ns + size - 1) / size
            if value < 100_000_000 { return String(value) + String(UnicodeScalar(letter)) }
        }
        return "99999999H"
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
