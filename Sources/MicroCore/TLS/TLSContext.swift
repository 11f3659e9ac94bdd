import CMicroCore

/// A compiled TLS configuration (an OpenSSL `SSL_CTX` in the C core). Building one reads the
/// files and parses the PEM, so it is done off the request path; servers and connections keep
/// their own references, so dropping this object never affects them.
///
/// @unchecked Sendable: the C context is immutable once built and its reference count is atomic;
/// `pointer` is a `let`.
public final class TLSContext: @unchecked Sendable {
    let pointer: OpaquePointer
    /// Whether it was built for a server.
    public let isServer: Bool

    /// Builds a server or client context from `config`; throws with OpenSSL's reason.
    public init(_ config: TLSConfig, server: Bool) throws(MicroCoreError) {
        let cert = try config.certificate?.load("certificate")
        let key = try config.privateKey?.load("private key")
        let ca = try config.trustRoots?.load("CA bundle")
        if server && (cert == nil || key == nil) {
            throw MicroCoreError(message: "a TLS server needs a certificate and a private key")
        }
        if cert != nil && key == nil {
            throw MicroCoreError(message: "a TLS certificate needs its private key")
        }
        var c = mc_tls_config_t()
        mc_tls_config_init(&c)
        c.is_server = server ? 1 : 0
        c.min_version = config.minimumVersion == .tls12 ? 12 : 13
        switch config.clientAuth {
        case .none: c.client_auth = Int32(MC_TLS_CLIENT_AUTH_NONE)
        case .request: c.client_auth = Int32(MC_TLS_CLIENT_AUTH_REQUEST)
        case .require: c.client_auth = Int32(MC_TLS_CLIENT_AUTH_REQUIRE)
        }
        if server && config.clientAuth != .none && ca == nil {
            throw MicroCoreError(message: "verifying client certificates needs trust roots (the CA), or set clientAuth to .none")
        }
        var err = [CChar](repeating: 0, count: 512)
        let made: OpaquePointer? = (cert ?? "").withCString { certp in
            (key ?? "").withCString { keyp in
                (ca ?? "").withCString { cap in
                    c.cert_pem = cert == nil ? nil : certp
                    c.cert_len = cert?.utf8.count ?? 0
                    c.key_pem = key == nil ? nil : keyp
                    c.key_len = key?.utf8.count ?? 0
                    c.ca_pem = ca == nil ? nil : cap
                    c.ca_len = ca?.utf8.count ?? 0
                    return mc_tls_ctx_new(&c, &err, err.count)
                }
            }
        }
        guard let made else { throw MicroCoreError(cBuffer: err) }
        pointer = made
        isServer = server
    }

    deinit { mc_tls_ctx_free(pointer) }
}

/// What the server knows of a TLS peer, read once per connection after the handshake.
public struct TLSPeer: Sendable, Equatable {
    /// The verified client certificate's `spiffe://` URI SAN, else its subject CN; nil when the
    /// client presented no certificate.
    public var identity: String?
    /// The verified chain in PEM, leaf first; nil without a client certificate.
    public var certificateChain: String?
    /// Whether the TLS session was resumed from a ticket (no full handshake).
    public var resumed: Bool

    public init(identity: String?, certificateChain: String?, resumed: Bool = false) {
        self.identity = identity
        self.certificateChain = certificateChain
        self.resumed = resumed
    }
}

/// Makes keys and X.509 certificates with OpenSSL (P-256, SHA-256), for development CAs and
/// tests: a CA, service certificates with a SPIFFE URI SAN, odd ones (expired, other CAs).
public enum CertificateFactory {
    public struct Issued: Sendable {
        public var certificate: String
        public var privateKey: String

        public init(certificate: String, privateKey: String) {
            self.certificate = certificate
            self.privateKey = privateKey
        }
    }

    /// - Parameters:
    ///   - validFrom: seconds from now when the certificate starts to be valid (negative: past)
    ///   - validUntil: seconds from now when it stops (negative: already expired)
    ///   - issuer: the CA's certificate and key; nil makes a self-signed certificate
    public static func create(
        commonName: String,
        uri: String? = nil,
        dnsNames: [String] = [],
        ipAddresses: [String] = [],
        isCA: Bool = false,
        validFrom: Int64 = -3600,
        validUntil: Int64 = 365 * 86400,
        issuer: Issued? = nil
    ) throws(MicroCoreError) -> Issued {
        var err = [CChar](repeating: 0, count: 512)
        var cert: UnsafeMutablePointer<CChar>?
        var key: UnsafeMutablePointer<CChar>?
        let dns = dnsNames.joined(separator: ","), ips = ipAddresses.joined(separator: ",")
        let rc: Int32 = commonName.withCString { cn in
            (uri ?? "").withCString { uriPointer in
                dns.withCString { dnsPointer in
                    ips.withCString { ipPointer in
                        (issuer?.certificate ?? "").withCString { ic in
                            (issuer?.privateKey ?? "").withCString { ik in
                                var request = mc_cert_request_t()
                                request.common_name = cn
                                request.uri_san = uri == nil ? nil : uriPointer
                                request.dns_sans = dnsPointer
                                request.ip_sans = ipPointer
                                request.is_ca = isCA ? 1 : 0
                                request.not_before_offset = validFrom
                                request.not_after_offset = validUntil
                                request.issuer_cert_pem = issuer == nil ? nil : ic
                                request.issuer_key_pem = issuer == nil ? nil : ik
                                return mc_cert_create(&request, &cert, &key, &err, err.count)
                            }
                        }
                    }
                }
            }
        }
        guard rc == 0, let cert, let key else { throw MicroCoreError(cBuffer: err) }
        defer {
            mc_cert_free(cert)
            mc_cert_free(key)
        }
        return Issued(certificate: String(cString: cert), privateKey: String(cString: key))
    }

    /// The identity a peer would see in this certificate (its spiffe:// URI SAN, else its CN).
    public static func identity(ofPEM pem: String) -> String? {
        let id: UnsafeMutablePointer<CChar>? = pem.withCString { mc_cert_identity($0, pem.utf8.count) }
        guard let id else { return nil }
        defer { mc_cert_free(id) }
        return String(cString: id)
    }
}
