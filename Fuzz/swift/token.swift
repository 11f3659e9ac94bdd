import Foundation

// libFuzzer target `token`: what a caller controls before any key is involved: an
// `Authorization` value, the token in it taken apart (base64url, the JWS header and claims), and
// a rule's resource text. Nothing may crash; a token that parses has a signing input that ends
// at its second dot, and base64url decoding inverts encoding.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let text = String(decoding: bytes, as: UTF8.self)
    if let token = ParsedToken.bearer(text) {
        precondition(!token.isEmpty && !token.hasPrefix(" "), "a bearer token is neither empty nor padded")
    }
    if let parsed = try? ParsedToken(bytes) {
        precondition(size <= ParsedToken.maxBytes, "an oversize token parsed")
        precondition(bytes[parsed.signedCount] == UInt8(ascii: "."), "the signing input does not end at a dot")
        precondition(["RS256", "ES256", "EdDSA"].contains(parsed.header.alg), "an algorithm we never verify passed")
    }
    if let decoded = Base64URL.decode(bytes) {
        precondition(Base64URL.decode(Array(Base64URL.encode(decoded).utf8)) == decoded, "base64url round trip")
        precondition(Base64URL.encode(decoded) == text, "two encodings of one value")
    }
    if let resource = try? Resource(parsing: text) {
        precondition(resource.description == text, "a resource's text does not round-trip")
        _ = Rule.verify([Rule(id: "r", scope: "*", resource: resource)], account: Account(id: "a"), resource: resource)
    }
    return 0
}
