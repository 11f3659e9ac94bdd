import Foundation
import Synchronization

/// Decides every call a service serves (unary, the three streams, broker deliveries, on every
/// wire) by its caller's account and the rules: go-micro's auth handler wrapper.
///
/// The account comes from `Authorization: Bearer TOKEN` (request header, gRPC metadata or
/// message header) and from the caller's mutual-TLS identity: a verified certificate makes the
/// caller an account of type `service` whose id and scope are its SPIFFE ID, with or without a
/// token (with one, the token's account gains that scope). A call is a resource
/// `service:SERVICE:ENDPOINT`; a delivery `topic:TOPIC:SUBSCRIBING-SERVICE`.
///
/// Refused: no usable account where one is needed → 401 (gRPC UNAUTHENTICATED), with why (no
/// token, expired, bad signature...); an account the rules do not grant → 403
/// (PERMISSION_DENIED). Both as go-micro's error JSON.
public struct AuthInterceptor: ServerInterceptor {
    public let auth: JWTAuth
    public let rules: AuthRules

    public init(auth: JWTAuth, rules: AuthRules) {
        self.auth = auth
        self.rules = rules
    }

    public nonisolated(nonsending) func intercept(
        _ call: ServerCall,
        next: (ServerCall) async throws -> ServerResult
    ) async throws -> ServerResult {
        try await admit(call.context)
        return try await next(call)
    }

    /// Throws the 401 or 403 the call gets, if it is refused (waiting, once, for the first rules).
    nonisolated(nonsending) func admit(_ context: Context) async throws {
        if !rules.isLoaded { await rules.ready() }
        try authorize(context)
    }

    /// Throws the 401 or 403 the call gets, if it is refused.
    func authorize(_ context: Context) throws {
        let call = context.call
        let resource = call.kind == .delivery
            ? Resource(type: "topic", name: call.endpoint, endpoint: call.service)
            : Resource(type: "service", name: call.service, endpoint: call.endpoint)
        var account: Account?
        var why: String?
        if let header = context.metadata["authorization"] {
            do {
                account = try auth.inspect(authorization: header)
            } catch {
                why = error.message
            }
        }
        if let identity = context.peer.identity {
            if account == nil {
                account = Account(id: identity, type: "service", issuer: "mtls", scopes: [identity])
            } else {
                account?.scopes.append(identity)
            }
        }
        guard rules.verify(account, resource) == .denied else { return }
        if let account {
            throw MicroError.forbidden(call.service, "\(account.id) may not call \(resource)")
        }
        throw MicroError.unauthorized(call.service, why ?? "\(resource) needs a token: Authorization: Bearer TOKEN")
    }
}

/// Puts a service's token on every call its client makes (every call kind, and publishes as a
/// message header): `Authorization: Bearer TOKEN`, unless the call carries one already.
public struct AuthClientInterceptor: ClientInterceptor {
    public let tokens: TokenSource

    public init(tokens: TokenSource) {
        self.tokens = tokens
    }

    public nonisolated(nonsending) func intercept(
        _ call: ClientCall,
        next: (ClientCall) async throws -> ClientResponse
    ) async throws -> ClientResponse {
        guard !call.options.metadata.keys.contains(where: { $0.caseInsensitiveCompare("authorization") == .orderedSame }),
              let token = try tokens.current()
        else { return try await next(call) }
        var call = call
        call.options.metadata["Authorization"] = "Bearer " + token
        return try await next(call)
    }
}

/// Where a client's token comes from: a fixed one (`MICRO_AUTH_TOKEN`), or one this process signs
/// for its own service account with the private key and signs again before it expires.
public final class TokenSource: Sendable {
    private enum Origin {
        case fixed(String?)
        case signed(JWTAuth, Account, Duration)
    }
    private let origin: Origin
    private let minted = Mutex<(token: String, renewAt: Date)?>(nil)

    /// Always `token` (nil: calls go without one).
    public init(token: String?) {
        origin = .fixed(token)
    }

    /// Tokens for `account` signed by `auth`'s private key, each living `lifetime`, renewed when
    /// three quarters of it have passed.
    public init(signing account: Account, with auth: JWTAuth, lifetime: Duration = JWTAuth.defaultGenerateExpiry) {
        origin = .signed(auth, account, lifetime)
    }

    /// The token to send now.
    public func current() throws -> String? {
        switch origin {
        case .fixed(let token):
            return token
        case .signed(let auth, let account, let lifetime):
            let now = Date()
            if let (token, renewAt) = minted.withLock({ $0 }), renewAt > now { return token }
            let token = try auth.sign(account, expiry: lifetime, now: now)
            minted.withLock { $0 = (token, now.addingTimeInterval(lifetime.seconds * 0.75)) }
            return token
        }
    }
}
