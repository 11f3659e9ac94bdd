import Foundation

/// Auth for a service: who may call it (``AuthInterceptor``, before its own interceptors) and the
/// token its client sends (``AuthClientInterceptor``).
///
/// Switched on go-micro's way, by ``fromEnvironment(_:)``: `MICRO_AUTH=jwt`,
/// `MICRO_AUTH_PUBLIC_KEY` (verifies; several keys separated by commas while a key rotates),
/// `MICRO_AUTH_PRIVATE_KEY` (signs this service's own token, and `micro auth token`'s); each key
/// the base64 of its PEM as go-micro takes them, or a PEM file's path, or the PEM itself.
/// `MICRO_AUTH_ISSUER` (default `go.micro`), `MICRO_AUTH_TOKEN` (the token the client sends,
/// instead of one signed here).
public struct ServiceAuth: Sendable {
    public var auth: JWTAuth
    public var rules: AuthRules
    /// The token the service's client sends; nil: one signed with the private key for the
    /// service's own account (`type` service, id its name, scope `service`), if there is a
    /// private key, else none.
    public var tokens: TokenSource?

    public init(auth: JWTAuth, rules: AuthRules, tokens: TokenSource? = nil) {
        self.auth = auth
        self.rules = rules
        self.tokens = tokens
    }

    /// The auth `MICRO_AUTH*` ask for; nil when `MICRO_AUTH` is unset, empty or `noop`. The rules'
    /// store is `store`, else the process's (``Stores/default``: `MICRO_STORE`), else an
    /// in-process one (said in the returned note: rules then do not reach other processes).
    public static func fromEnvironment(_ environment: [String: String], store: (any Store)? = nil) throws(ConfigurationError) -> (ServiceAuth, note: String?)? {
        func value(_ key: String) -> String? { environment[key].flatMap { $0.isEmpty ? nil : $0 } }
        switch value("MICRO_AUTH")?.lowercased() {
        case nil, "noop", "none": return nil
        case "jwt": break
        case let other?: throw ConfigurationError(key: "micro.auth", reason: "MICRO_AUTH must be jwt or noop, not '\(other)'")
        }
        let auth: JWTAuth
        do throws(AuthError) {
            let publicKeys = try value("MICRO_AUTH_PUBLIC_KEY").map { text throws(AuthError) in try SigningKey.load(text, isPrivate: false) } ?? []
            let privateKeys = try value("MICRO_AUTH_PRIVATE_KEY").map { text throws(AuthError) in try SigningKey.load(text, isPrivate: true) } ?? []
            guard !publicKeys.isEmpty || !privateKeys.isEmpty else {
                throw AuthError(.badKey, "MICRO_AUTH=jwt needs MICRO_AUTH_PUBLIC_KEY (and MICRO_AUTH_PRIVATE_KEY to sign); `micro auth keys` makes a pair")
            }
            guard privateKeys.count <= 1 else { throw AuthError(.badKey, "MICRO_AUTH_PRIVATE_KEY holds \(privateKeys.count) keys, not one") }
            auth = try JWTAuth(publicKeys: publicKeys, privateKey: privateKeys.first, issuer: value("MICRO_AUTH_ISSUER") ?? "go.micro")
        } catch {
            throw ConfigurationError(key: "micro.auth", reason: "auth: \(error.message)")
        }
        var note: String?
        let rulesStore: any Store
        if let store {
            rulesStore = store
        } else {
            do {
                rulesStore = try Stores.default
            } catch {
                rulesStore = MemoryStore.shared
                note = "auth rules are kept in this process only (\(error)): link a store (MicroSQLite.install()) or set MICRO_STORE to share them"
            }
        }
        let tokens = value("MICRO_AUTH_TOKEN").map { TokenSource(token: $0) }
        return (ServiceAuth(auth: auth, rules: AuthRules(store: rulesStore), tokens: tokens), note)
    }
}

extension SigningKey {
    /// The keys in `text`: comma-separated items, each the base64 of a PEM (go-micro's form), a
    /// PEM file's path, or PEM text; a PEM may hold several keys.
    public static func load(_ text: String, isPrivate: Bool) throws(AuthError) -> [SigningKey] {
        let items = text.contains("-----BEGIN") ? [text] : text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        var keys: [SigningKey] = []
        for item in items where !item.isEmpty {
            let pem: String
            if item.contains("-----BEGIN") {
                pem = item
            } else if item.hasPrefix("/") || item.hasPrefix("."), let contents = FileManager.default.contents(atPath: item) {
                pem = String(decoding: contents, as: UTF8.self)
            } else if let decoded = Data(base64Encoded: item, options: .ignoreUnknownCharacters), !decoded.isEmpty {
                pem = String(decoding: decoded, as: UTF8.self)
            } else {
                throw AuthError(.badKey, "'\(item.prefix(40))' is neither the base64 of a PEM key nor a readable file")
            }
            keys += try blocks(of: pem).map { block throws(AuthError) in try SigningKey(pem: block, isPrivate: isPrivate) }
        }
        guard !keys.isEmpty else { throw AuthError(.badKey, "no key in '\(text.prefix(40))'") }
        return keys
    }

    /// The PEM blocks of a text, one key each.
    private static func blocks(of pem: String) throws(AuthError) -> [String] {
        var blocks: [String] = []
        var current: [Substring] = []
        for line in pem.split(whereSeparator: \.isNewline) {
            if line.hasPrefix("-----BEGIN") { current = [] }
            current.append(line)
            if line.hasPrefix("-----END") { blocks.append(current.joined(separator: "\n") + "\n") }
        }
        guard !blocks.isEmpty else { throw AuthError(.badKey, "no PEM block (-----BEGIN ...) in the key") }
        return blocks
    }
}
