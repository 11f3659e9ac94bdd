import Foundation

/// TLS for a server or a client: a certificate and key (PEM files or PEM text), trust roots,
/// whether clients must present certificates, and what identity a server must show.
///
/// TLS 1.3 by default (1.2 allowed with ``minimumVersion``), ALPN `h2` then `http/1.1`, session
/// tickets with keys the core manages, no 0-RTT. One configuration serves both roles: a service
/// presents its certificate as a server and as a client (mutual TLS on every hop).
///
/// ```swift
/// let tls = TLSConfig(certificate: .file("cert.pem"), privateKey: .file("key.pem"), trustRoots: .file("ca.pem"))
/// let server = try HTTPServer(configuration: .init(port: 8443, tls: tls), logger: logger) { ... }
/// ```
///
/// From the environment with ``fromEnvironment(_:)``: `MICRO_TLS_CERT`, `MICRO_TLS_KEY`,
/// `MICRO_TLS_CA`, `MICRO_TLS_CLIENT_AUTH`, `MICRO_TLS_MIN_VERSION`, `MICRO_TLS_TRUST_DOMAIN`,
/// `MICRO_TLS_SERVER_IDENTITY`.
public struct TLSConfig: Sendable, Equatable {
    /// Where PEM text comes from. Files are read each time a context is built (so a reload
    /// picks up replaced files).
    public enum PEM: Sendable, Equatable {
        case file(String)
        case text(String)

        func load(_ what: String) throws(MicroCoreError) -> String {
            switch self {
            case .text(let text): return text
            case .file(let path):
                do {
                    return try String(contentsOfFile: path, encoding: .utf8)
                } catch {
                    throw MicroCoreError(message: "cannot read the TLS \(what) from \(path): \(error.localizedDescription)")
                }
            }
        }
    }

    /// Whether a server asks clients for certificates.
    public enum ClientAuth: String, Sendable, Equatable {
        /// No client certificates.
        case none
        /// Verified when presented, not required.
        case request
        /// Required and verified against ``TLSConfig/trustRoots`` (mutual TLS).
        case require
    }

    public enum Version: Sendable, Equatable {
        case tls12, tls13
    }

    /// The certificate chain, leaf first. Required for a server; a client presents it for mTLS.
    public var certificate: PEM?
    /// The leaf's private key.
    public var privateKey: PEM?
    /// Trust roots: a server verifies client certificates with them, a client the server's. During
    /// a CA rotation the bundle holds the old and the new root. A client without roots uses the
    /// system's.
    public var trustRoots: PEM?
    /// Server: client certificates (default: required).
    public var clientAuth: ClientAuth
    /// Lowest protocol version accepted (default TLS 1.3).
    public var minimumVersion: Version
    /// Client: the identity (spiffe:// ID, or CN) the server must present; nil lets the caller
    /// decide (the framework's client expects `spiffe://TRUST-DOMAIN/service/NAME`), and without
    /// one the server's certificate must name the host dialled.
    public var expectedServerIdentity: String?
    /// Client: the SNI name (default: the host dialled).
    public var serverName: String?
    /// The SPIFFE trust domain of service identities (default `micro.local`).
    public var trustDomain: String

    public init(
        certificate: PEM? = nil,
        privateKey: PEM? = nil,
        trustRoots: PEM? = nil,
        clientAuth: ClientAuth = .require,
        minimumVersion: Version = .tls13,
        expectedServerIdentity: String? = nil,
        serverName: String? = nil,
        trustDomain: String = "micro.local"
    ) {
        self.certificate = certificate
        self.privateKey = privateKey
        self.trustRoots = trustRoots
        self.clientAuth = clientAuth
        self.minimumVersion = minimumVersion
        self.expectedServerIdentity = expectedServerIdentity
        self.serverName = serverName
        self.trustDomain = trustDomain
    }

    /// The SPIFFE ID of a service in this trust domain: `spiffe://TRUST-DOMAIN/service/NAME`.
    public func identity(ofService name: String) -> String { "spiffe://\(trustDomain)/service/\(name)" }

    /// A configuration from `MICRO_TLS_*` variables, or nil when `MICRO_TLS_CERT` and
    /// `MICRO_TLS_CA` are both unset.
    ///
    /// - `MICRO_TLS_CERT`, `MICRO_TLS_KEY`: PEM files of the certificate chain and its key
    /// - `MICRO_TLS_CA`: PEM file of the trust roots
    /// - `MICRO_TLS_CLIENT_AUTH`: `require` (default), `request` or `none`
    /// - `MICRO_TLS_MIN_VERSION`: `1.3` (default) or `1.2`
    /// - `MICRO_TLS_TRUST_DOMAIN`: default `micro.local`
    /// - `MICRO_TLS_SERVER_IDENTITY`: the identity a client expects of every server it calls
    public static func fromEnvironment(_ environment: [String: String]? = nil) throws(MicroCoreError) -> TLSConfig? {
        let env = environment ?? ProcessInfo.processInfo.environment
        func value(_ key: String) -> String? { env[key].flatMap { $0.isEmpty ? nil : $0 } }
        let cert = value("MICRO_TLS_CERT"), ca = value("MICRO_TLS_CA")
        guard cert != nil || ca != nil else { return nil }
        var config = TLSConfig()
        if let cert {
            config.certificate = .file(cert)
            guard let key = value("MICRO_TLS_KEY") else {
                throw MicroCoreError(message: "MICRO_TLS_CERT is set but MICRO_TLS_KEY is not")
            }
            config.privateKey = .file(key)
        }
        config.trustRoots = ca.map { .file($0) }
        if let auth = value("MICRO_TLS_CLIENT_AUTH") {
            guard let parsed = ClientAuth(rawValue: auth.lowercased()) else {
                throw MicroCoreError(message: "MICRO_TLS_CLIENT_AUTH must be require, request or none, not '\(auth)'")
            }
            config.clientAuth = parsed
        }
        switch value("MICRO_TLS_MIN_VERSION") {
        case nil, "1.3", "tls1.3": break
        case "1.2", "tls1.2": config.minimumVersion = .tls12
        case let other?: throw MicroCoreError(message: "MICRO_TLS_MIN_VERSION must be 1.2 or 1.3, not '\(other)'")
        }
        if let domain = value("MICRO_TLS_TRUST_DOMAIN") { config.trustDomain = domain }
        config.expectedServerIdentity = value("MICRO_TLS_SERVER_IDENTITY")
        return config
    }
}
