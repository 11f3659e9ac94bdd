public import Foundation
import Synchronization

/// An access token and the refresh token that gets the next one (go-micro's `auth.Token`).
public struct Token: Sendable, Equatable, Codable {
    public var accessToken: String
    public var refreshToken: String
    public var created: Date
    public var expiry: Date

    enum CodingKeys: String, CodingKey {
        case accessToken = "access_token", refreshToken = "refresh_token", created, expiry
    }

    public init(accessToken: String, refreshToken: String, created: Date, expiry: Date) {
        self.accessToken = accessToken
        self.refreshToken = refreshToken
        self.created = created
        self.expiry = expiry
    }
}

/// Accounts and JWT access tokens (go-micro's `auth/jwt`): tokens signed with a private key and
/// verified with public keys, claims `sub`, `iss`, `exp`, `iat`, `type`, `scopes`, `metadata`.
///
/// Verification takes several public keys at once, chosen by the token's `kid` (or tried in turn
/// for a token without one, as go-micro issues them), so a signing key rotates with no failed
/// call: add the new public key everywhere, then sign with the new private key, then drop the
/// old public key. Verified tokens are kept (bounded, until their `exp`), so a signature is
/// checked once per token, not once per call.
///
/// Threading: any task; `inspect` is synchronous and cheap on a token seen before.
public final class JWTAuth: Sendable {
    /// The longest token read: past this, a token is refused unread.
    public static let maxTokenBytes = ParsedToken.maxBytes
    /// go-micro's default expiry of a generated account's token, and of `token()`'s.
    public static let defaultGenerateExpiry: Duration = .seconds(15 * 60)
    public static let defaultTokenExpiry: Duration = .seconds(60)

    /// Verifies tokens signed by each of them.
    public let publicKeys: [SigningKey]
    /// Signs new tokens (nil: this service only verifies).
    public let privateKey: SigningKey?
    /// Written into tokens as `iss`; a token from another issuer is refused.
    public let issuer: String

    private let cache: Mutex<TokenCache>

    public init(publicKeys: [SigningKey], privateKey: SigningKey? = nil, issuer: String = "go.micro", cacheCapacity: Int = 10_000) throws(AuthError) {
        var keys = publicKeys
        if let privateKey {
            guard privateKey.isPrivate else { throw AuthError(.badKey, "the signing key is a public key") }
            // it verifies what it signs
            if !keys.contains(where: { $0.id == privateKey.id }) { keys.append(privateKey) }
        }
        guard !keys.isEmpty else { throw AuthError(.badKey, "no public key to verify tokens with") }
        self.publicKeys = keys
        self.privateKey = privateKey
        self.issuer = issuer
        cache = Mutex(TokenCache(capacity: max(16, cacheCapacity)))
    }

    // MARK: go-micro's Auth

    /// An account and its token (go-micro's `Generate`, which puts the token in the account's
    /// secret). Needs the private key.
    public func generate(id: String, type: String = "user", scopes: [String] = [], metadata: [String: String] = [:],
                         expiry: Duration = JWTAuth.defaultGenerateExpiry) throws(AuthError) -> (account: Account, secret: String) {
        let account = Account(id: id, type: type, issuer: issuer, scopes: scopes, metadata: metadata)
        return (account, try sign(account, expiry: expiry))
    }

    /// A new access token (and its refresh token, valid an hour longer) for the account a valid
    /// token or refresh token names (go-micro's `Token(WithToken(refresh))`).
    public func token(refreshing refreshToken: String, expiry: Duration = JWTAuth.defaultTokenExpiry) throws(AuthError) -> Token {
        let account = try inspect(refreshToken)
        return try token(for: account, expiry: expiry)
    }

    /// A new access token (and refresh token) for the account `id` whose secret (the token
    /// ``generate(id:type:scopes:metadata:expiry:)`` gave it) is `secret`: go-micro's
    /// `Token(WithCredentials(id, secret))`.
    public func token(id: String, secret: String, expiry: Duration = JWTAuth.defaultTokenExpiry) throws(AuthError) -> Token {
        let account = try inspect(secret)
        guard account.id == id else { throw AuthError(.invalidToken, "invalid credentials: the secret is not \(id)'s") }
        return try token(for: account, expiry: expiry)
    }

    /// An access token and a refresh token for `account`.
    public func token(for account: Account, expiry: Duration = JWTAuth.defaultTokenExpiry) throws(AuthError) -> Token {
        let now = Date()
        let access = try sign(account, expiry: expiry, now: now)
        let refresh = try sign(account, expiry: expiry + .seconds(3600), now: now)
        return Token(accessToken: access, refreshToken: refresh, created: now, expiry: now.addingTimeInterval(expiry.seconds))
    }

    /// A signed access token for `account`, living `expiry`.
    public func sign(_ account: Account, expiry: Duration, now: Date = Date()) throws(AuthError) -> String {
        guard let privateKey else { throw AuthError(.badKey, "no private key to sign tokens with (MICRO_AUTH_PRIVATE_KEY)") }
        guard expiry > .zero else { throw AuthError(.invalidToken, "a token's expiry must be in the future") }
        let header = JWSHeader(alg: privateKey.algorithm, typ: "JWT", kid: privateKey.id)
        let issued = Int64(now.timeIntervalSince1970)
        let claims = Claims(sub: account.id, iss: issuer, exp: issued + Int64(max(1, expiry.seconds.rounded(.up))), iat: issued,
                            nbf: nil, type: account.type, scopes: account.scopes, metadata: account.metadata)
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let signingInput: String
        do {
            signingInput = Base64URL.encode(try encoder.encode(header)) + "." + Base64URL.encode(try encoder.encode(claims))
        } catch {
            throw AuthError(.invalidToken, "cannot encode the token: \(error)")
        }
        return signingInput + "." + Base64URL.encode(try privateKey.sign(signingInput.utf8))
    }

    /// The account a token names, if it is valid: well formed, signed by one of ``publicKeys``
    /// with the algorithm of that key (never `none`, never an HMAC), from ``issuer``, and not
    /// expired.
    public func inspect(_ token: String) throws(AuthError) -> Account {
        try account(keptAs: token) { () throws(AuthError) in token }
    }

    /// The account of an `Authorization` value (`Bearer TOKEN`), as ``inspect(_:)``; kept by the
    /// value as it came, so that a token seen before costs a lookup and no copy.
    public func inspect(authorization value: String) throws(AuthError) -> Account {
        try account(keptAs: value) { () throws(AuthError) in
            guard let token = ParsedToken.bearer(value) else { throw AuthError(.invalidToken, "the Authorization header is not 'Bearer TOKEN'") }
            return token
        }
    }

    /// The account of the token `token()` gives, from the cache under `key` if it was verified
    /// before, else verified and kept there.
    private func account(keptAs key: String, _ token: () throws(AuthError) -> String) throws(AuthError) -> Account {
        let now = Date().timeIntervalSince1970
        if let known = cache.withLock({ $0.account(key, at: now) }) { return known }
        let (account, expires) = try verify(try token(), now: now)
        cache.withLock { $0.keep(key, account, until: expires) }
        return account
    }

    /// Tokens verified and kept (tests).
    package var cachedTokens: Int { cache.withLock { $0.count } }

    private func verify(_ token: String, now: TimeInterval) throws(AuthError) -> (Account, TimeInterval) {
        func invalid(_ why: String) -> AuthError { AuthError(.invalidToken, "invalid token: \(why)") }
        var token = token
        return try token.withUTF8 { bytes in Result { () throws(AuthError) -> (Account, TimeInterval) in
            let parsed = try ParsedToken(bytes)
            let header = parsed.header, claims = parsed.claims
            let candidates = publicKeys.filter { $0.algorithm == header.alg && (header.kid == nil || $0.id == header.kid) }
            guard !candidates.isEmpty else {
                throw invalid(header.kid.map { "signed with an unknown key (kid \($0))" } ?? "no \(header.alg) key to verify it with")
            }
            let signed = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(bytes)[..<parsed.signedCount])
            guard candidates.contains(where: { $0.verify(parsed.signature, of: signed) }) else { throw invalid("bad signature") }
            guard claims.iss == issuer else { throw invalid("issued by '\(claims.iss ?? "")', not '\(issuer)'") }
            guard let exp = claims.exp else { throw invalid("it has no expiry") }
            guard Double(exp) > now else { throw AuthError(.expired, "the token expired at \(Date(timeIntervalSince1970: Double(exp)))") }
            if let nbf = claims.nbf, Double(nbf) > now { throw invalid("not valid before \(Date(timeIntervalSince1970: Double(nbf)))") }
            guard let sub = claims.sub, !sub.isEmpty else { throw invalid("it names no account (sub)") }
            let account = Account(id: sub, type: claims.type ?? "", issuer: claims.iss ?? "", scopes: claims.scopes ?? [], metadata: claims.metadata ?? [:])
            return (account, Double(exp))
        } }.get()
    }
}

/// Verified tokens and their accounts until they expire, at most `capacity`: when full, the
/// expired go, and if that is not enough, every other one (a bound, not a policy: a service sees
/// far fewer live tokens than this).
struct TokenCache {
    let capacity: Int
    private var entries: [String: (account: Account, expires: TimeInterval)] = [:]
    /// The last token looked up, compared before hashing (a caller sends the same one for
    /// minutes: comparing its bytes is cheaper than hashing them).
    private var last: (token: String, account: Account, expires: TimeInterval)?

    init(capacity: Int) { self.capacity = capacity }

    var count: Int { entries.count }

    mutating func account(_ token: String, at now: TimeInterval) -> Account? {
        if let last, last.token == token, last.expires > now { return last.account }
        guard let entry = entries[token], entry.expires > now else { return nil }
        last = (token, entry.account, entry.expires)
        return entry.account
    }

    mutating func keep(_ token: String, _ account: Account, until expires: TimeInterval) {
        if entries.count >= capacity {
            let now = Date().timeIntervalSince1970
            entries = entries.filter { $0.value.expires > now }
            if entries.count >= capacity {
                var keep = false
                entries = entries.filter { _ in
                    keep.toggle()
                    return keep
                }
            }
        }
        entries[token] = (account, expires)
    }
}
