import Foundation
internal import CMicroCore

/// A key that signs or verifies tokens: RSA of 2048 bits or more (`RS256`, what go-micro signs
/// with), EC P-256 (`ES256`) or Ed25519 (`EdDSA`), through the OpenSSL the core links.
///
/// A public key verifies; a private key also signs. ``id`` (a token's `kid`) names the key by its
/// public half, so a service holding several public keys knows which one a token needs: that is
/// how a signing key rotates with no failed call.
public final class SigningKey: @unchecked Sendable {
    // @unchecked: the handle is set once and never changed; OpenSSL's EVP_PKEY is safe to sign
    // and verify with from several threads at once (each call makes its own context).
    private let handle: OpaquePointer

    /// The JWS algorithm of the key: `RS256`, `ES256` or `EdDSA`.
    public let algorithm: String
    /// The key's `kid`: the start of the SHA-256 of its public key, base64url.
    public let id: String
    /// Whether it can sign.
    public var isPrivate: Bool { mc_sigkey_has_private(handle) != 0 }

    public enum Kind: Sendable {
        case rsa, p256, ed25519
    }

    /// A key from PEM text: a `PUBLIC KEY`, or with `isPrivate` a private key (PKCS#8, or RSA's
    /// and EC's own forms).
    public convenience init(pem: String, isPrivate: Bool = false) throws(AuthError) {
        var error = [CChar](repeating: 0, count: 256)
        let made = pem.utf8CString.withUnsafeBufferPointer { text in
            mc_sigkey_from_pem(text.baseAddress, text.count - 1, isPrivate ? 1 : 0, &error, error.count)
        }
        guard let made else {
            throw AuthError(.badKey, String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        self.init(made)
    }

    /// A new key pair (RSA: 2048 bits).
    public static func generate(_ kind: Kind = .rsa) throws(AuthError) -> SigningKey {
        var error = [CChar](repeating: 0, count: 256)
        let code: Int32 = switch kind {
        case .rsa: Int32(MC_SIGKEY_RSA)
        case .p256: Int32(MC_SIGKEY_P256)
        case .ed25519: Int32(MC_SIGKEY_ED25519)
        }
        guard let made = mc_sigkey_generate(code, &error, error.count) else {
            throw AuthError(.badKey, String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return SigningKey(made)
    }

    private init(_ handle: OpaquePointer) {
        self.handle = handle
        algorithm = switch Int(mc_sigkey_kind(handle)) {
        case Int(MC_SIGKEY_P256): "ES256"
        case Int(MC_SIGKEY_ED25519): "EdDSA"
        default: "RS256"
        }
        var digest = [UInt8](repeating: 0, count: 32)
        _ = mc_sigkey_fingerprint(handle, &digest)
        id = Base64URL.encode(digest.prefix(12))
    }

    deinit { mc_sigkey_free(handle) }

    /// The public key as PEM.
    public var publicPEM: String { pem(isPrivate: false) ?? "" }
    /// The private key as PEM (PKCS#8), if this is one.
    public var privatePEM: String? { pem(isPrivate: true) }

    private func pem(isPrivate: Bool) -> String? {
        guard let text = mc_sigkey_pem(handle, isPrivate ? 1 : 0) else { return nil }
        defer { mc_sigkey_free_pem(text) }
        return String(cString: text)
    }

    /// The JWS signature of `data`; throws if this key has no private half.
    public func sign(_ data: some Collection<UInt8>) throws(AuthError) -> [UInt8] {
        var signature = [UInt8](repeating: 0, count: 1024)
        let bytes = Array(data)
        let count = mc_sigkey_sign(handle, bytes, bytes.count, &signature, signature.count)
        guard count > 0 else { throw AuthError(.badKey, isPrivate ? "signing failed" : "a public key cannot sign") }
        signature.removeSubrange(Int(count)...)
        return signature
    }

    /// Whether `signature` is this key's JWS signature of `data`.
    public func verify(_ signature: [UInt8], of data: UnsafeRawBufferPointer) -> Bool {
        signature.withUnsafeBufferPointer { sig in
            mc_sigkey_verify(handle, data.bindMemory(to: UInt8.self).baseAddress, data.count, sig.baseAddress, sig.count) == 1
        }
    }
}
