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
/// The core takes values only; Micro reads them from its configuration (`MICRO_TLS_*`).
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
    /// The trust domain of service identities (default `micro.local`; Micro names services
    /// `spiffe://TRUST-DOMAIN/service/NAME` in it).
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
}
