public import Foundation
import MicroCore

/// A development certificate authority in a directory (`$MICRO_CERTS_DIR`, default
/// `~/.micro/certs`): `ca/ca.pem` and `ca/ca.key`, and one folder per service with `cert.pem`,
/// `key.pem` and `ca.pem`. Service certificates carry the SPIFFE ID
/// `spiffe://TRUST-DOMAIN/service/NAME` as their URI SAN, plus `localhost`, the service name,
/// `127.0.0.1` and `::1`, so that curl and openssl can check them too. Keys are P-256, made with
/// OpenSSL (no `openssl` command).
///
/// ```swift
/// let certs = Certificates()
/// try certs.initAuthority()
/// let files = try certs.issue(service: "helloworld")
/// // MICRO_TLS_CERT=\(files.certificate) MICRO_TLS_KEY=\(files.privateKey) MICRO_TLS_CA=\(files.trustRoots)
/// ```
public struct Certificates: Sendable {
    /// The PEM files of one service.
    public struct Files: Sendable {
        public var certificate: String
        public var privateKey: String
        public var trustRoots: String

        /// A configuration that uses these files (server and client).
        public func tlsConfig(trustDomain: String = "micro.local") -> TLSConfig {
            TLSConfig(certificate: .file(certificate), privateKey: .file(privateKey), trustRoots: .file(trustRoots),
                      trustDomain: trustDomain)
        }
    }

    public let directory: URL
    public let trustDomain: String

    /// `directory` nil: `$MICRO_CERTS_DIR`, else `~/.micro/certs`.
    public init(directory: String? = nil, trustDomain: String = "micro.local") {
        let env = MicroConfig.process.frameworkEnvironment
        let path = directory ?? env["MICRO_CERTS_DIR"].flatMap { $0.isEmpty ? nil : $0 }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".micro/certs").path
        self.directory = URL(fileURLWithPath: path)
        self.trustDomain = trustDomain
    }

    var caCertificate: URL { directory.appendingPathComponent("ca/ca.pem") }
    var caKey: URL { directory.appendingPathComponent("ca/ca.key") }

    /// Creates the CA (self-signed, ten years) unless one exists, or `replace` is set. Returns
    /// the path of its certificate.
    @discardableResult
    public func initAuthority(replace: Bool = false, validity: Duration = .seconds(10 * 365 * 86400)) throws -> String {
        if !replace, FileManager.default.fileExists(atPath: caCertificate.path) { return caCertificate.path }
        let ca = try CertificateFactory.create(
            commonName: "swift-micro development CA (\(trustDomain))", uri: "spiffe://\(trustDomain)", isCA: true,
            validUntil: validity.components.seconds)
        try FileManager.default.createDirectory(at: caCertificate.deletingLastPathComponent(), withIntermediateDirectories: true)
        try write(ca.privateKey, to: caKey, secret: true)
        try write(ca.certificate, to: caCertificate, secret: false)
        return caCertificate.path
    }

    /// Issues (or re-issues) the certificate of `service`, signed by the CA (created if missing).
    @discardableResult
    public func issue(service: String, validity: Duration = .seconds(365 * 86400)) throws -> Files {
        guard !service.isEmpty, !service.contains("/"), service != "ca", service != ".", service != ".." else {
            throw MicroError(id: "micro.certs", code: 400, detail: "invalid service name '\(service)'")
        }
        try initAuthority()
        let issuer = CertificateFactory.Issued(
            certificate: try String(contentsOf: caCertificate, encoding: .utf8),
            privateKey: try String(contentsOf: caKey, encoding: .utf8))
        let issued = try CertificateFactory.create(
            commonName: service, uri: "spiffe://\(trustDomain)/service/\(service)",
            dnsNames: ["localhost", service], ipAddresses: ["127.0.0.1", "::1"],
            validUntil: validity.components.seconds, issuer: issuer)
        let folder = directory.appendingPathComponent(service)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let files = files(of: service)
        try write(issued.privateKey, to: URL(fileURLWithPath: files.privateKey), secret: true)
        try write(issued.certificate, to: URL(fileURLWithPath: files.certificate), secret: false)
        try write(issuer.certificate, to: URL(fileURLWithPath: files.trustRoots), secret: false)
        return files
    }

    /// Where the files of `service` are (whether or not they exist yet).
    public func files(of service: String) -> Files {
        let folder = directory.appendingPathComponent(service)
        return Files(certificate: folder.appendingPathComponent("cert.pem").path,
                     privateKey: folder.appendingPathComponent("key.pem").path,
                     trustRoots: folder.appendingPathComponent("ca.pem").path)
    }

    /// Writes through a temporary file and a rename, so that a service reloading (SIGHUP) never
    /// reads half a file; keys are readable by the owner only.
    private func write(_ text: String, to url: URL, secret: Bool) throws {
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString)")
        try Data(text.utf8).write(to: temporary)
        try FileManager.default.setAttributes([.posixPermissions: secret ? 0o600 : 0o644], ofItemAtPath: temporary.path)
        if rename(temporary.path, url.path) != 0 {
            try? FileManager.default.removeItem(at: temporary)
            throw MicroError(id: "micro.certs", code: 500, detail: "cannot write \(url.path): \(String(cString: strerror(errno)))")
        }
    }
}
