import Foundation

// Reading a token, before any key is involved: what a remote peer controls, kept apart from the
// crypto so that it can be fuzzed alone (Fuzz/swift/token.swift).

/// Who makes a call: a user or a service, with the scopes rules grant by (go-micro's
/// `auth.Account`; JSON as go-micro writes it).
public struct Account: Sendable, Equatable, Codable {
    /// The account's id: a token's `sub`; for a caller known by its mutual-TLS certificate, its
    /// SPIFFE ID.
    public var id: String
    /// `user` or `service` (any text).
    public var type: String
    /// Who issued its token.
    public var issuer: String
    public var scopes: [String]
    public var metadata: [String: String]

    public init(id: String, type: String = "user", issuer: String = "", scopes: [String] = [], metadata: [String: String] = [:]) {
        self.id = id
        self.type = type
        self.issuer = issuer
        self.scopes = scopes
        self.metadata = metadata
    }
}

/// Why a token or a key was refused.
public struct AuthError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Kind: Sendable {
        /// Not a token this service accepts: malformed, unsigned, wrongly signed, from another
        /// issuer, or too long.
        case invalidToken
        /// A good token past its `exp`.
        case expired
        /// A key that cannot be read or used.
        case badKey
    }
    public var kind: Kind
    public var message: String
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
    public var description: String { message }
}

/// A compact JWS taken apart: its header and claims decoded, the signature's bytes, and how many
/// bytes at the start were signed. Refuses what no key of ours could have signed: over
/// ``JWTAuth/maxTokenBytes``, not three base64url parts, `alg` none or an HMAC or unknown.
struct ParsedToken {
    var header: JWSHeader
    var claims: Claims
    var signature: [UInt8]
    /// The signing input is the token's first `signedCount` bytes (`header.claims`).
    var signedCount: Int

    static let maxBytes = 8192

    init(_ bytes: UnsafeBufferPointer<UInt8>) throws(AuthError) {
        func invalid(_ why: String) -> AuthError { AuthError(.invalidToken, "invalid token: \(why)") }
        guard bytes.count <= Self.maxBytes else { throw invalid("longer than \(Self.maxBytes) bytes") }
        guard let firstDot = bytes.firstIndex(of: UInt8(ascii: ".")),
              let secondDot = bytes[(firstDot + 1)...].firstIndex(of: UInt8(ascii: ".")),
              !bytes[(secondDot + 1)...].contains(UInt8(ascii: "."))
        else { throw invalid("not three dot-separated parts") }
        guard let headerBytes = Base64URL.decode(bytes[..<firstDot]),
              let claimBytes = Base64URL.decode(bytes[(firstDot + 1)..<secondDot]),
              let signature = Base64URL.decode(bytes[(secondDot + 1)...])
        else { throw invalid("a part is not base64url") }
        let decoder = JSONDecoder()
        guard let header = try? decoder.decode(JWSHeader.self, from: Data(headerBytes)) else { throw invalid("the header is not a JWS header") }
        switch header.alg {
        case "RS256", "ES256", "EdDSA": break
        case _ where header.alg.lowercased() == "none": throw invalid("unsigned tokens are refused")
        case let alg where alg.hasPrefix("HS"): throw invalid("\(alg) (a shared secret) is not accepted: tokens are signed with a key pair")
        default: throw invalid("unsupported algorithm \(header.alg.prefix(20))")
        }
        guard let claims = try? decoder.decode(Claims.self, from: Data(claimBytes)) else { throw invalid("the claims are malformed") }
        self.header = header
        self.claims = claims
        self.signature = signature
        signedCount = secondDot
    }

    /// The token of an `Authorization` value `Bearer TOKEN` (the scheme in any case, as go-micro
    /// reads it); nil if it is not one.
    static func bearer(_ header: String) -> String? {
        var utf8 = header.utf8[...]
        guard utf8.count > 7, utf8.prefix(6).elementsEqual("bearer".utf8, by: { $0 | 0x20 == $1 }), utf8.dropFirst(6).first == UInt8(ascii: " ") else {
            return nil
        }
        utf8 = utf8.dropFirst(7)
        while utf8.first == UInt8(ascii: " ") { utf8 = utf8.dropFirst() }
        return utf8.isEmpty ? nil : String(Substring(utf8))
    }
}

struct JWSHeader: Codable {
    var alg: String
    var typ: String?
    var kid: String?
}

/// go-micro's claims: the registered ones it uses and `type`, `scopes`, `metadata`.
struct Claims: Codable {
    var sub: String?
    var iss: String?
    var exp: Int64?
    var iat: Int64?
    var nbf: Int64?
    var type: String?
    var scopes: [String]?
    var metadata: [String: String]?
}

/// Base64url without padding (RFC 7515 §2), strict: a character outside the alphabet, padding,
/// or a length no encoding has, is refused.
enum Base64URL {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    private static let values: [UInt8] = {
        var table = [UInt8](repeating: 0xff, count: 256)
        for (i, c) in alphabet.enumerated() { table[Int(c)] = UInt8(i) }
        return table
    }()

    static func encode(_ bytes: some Collection<UInt8>) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count * 4 + 2) / 3)
        var it = bytes.makeIterator()
        while let a = it.next() {
            let b = it.next(), c = it.next()
            out.append(alphabet[Int(a >> 2)])
            out.append(alphabet[Int((a & 3) << 4 | (b ?? 0) >> 4)])
            if let b { out.append(alphabet[Int((b & 15) << 2 | (c ?? 0) >> 6)]) }
            if let c { out.append(alphabet[Int(c & 63)]) }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode(_ text: some Collection<UInt8>) -> [UInt8]? {
        guard text.count % 4 != 1 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(text.count * 3 / 4)
        var buffer: UInt32 = 0, bits = 0
        for c in text {
            let v = values[Int(c)]
            guard v != 0xff else { return nil }
            buffer = buffer << 6 | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: buffer >> UInt32(bits)))
            }
        }
        // the bits left over must be zero (one encoding per value)
        guard buffer & ((1 << UInt32(bits)) - 1) == 0 else { return nil }
        return out
    }
}
