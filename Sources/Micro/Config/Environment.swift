import Foundation
public import MicroCore

// The framework's environment variables, read here rather than in MicroCore: the core takes
// values, and only Micro knows their names (MicroConfig.settings lists them all).

extension TLSConfig {
    /// A configuration from `MICRO_TLS_*` variables (or their keys in the configuration file,
    /// through ``MicroConfig/frameworkEnvironment``), or nil when `MICRO_TLS_CERT` and
    /// `MICRO_TLS_CA` are both unset.
    ///
    /// - `MICRO_TLS_CERT`, `MICRO_TLS_KEY`: PEM files of the certificate chain and its key
    /// - `MICRO_TLS_CA`: PEM file of the trust roots
    /// - `MICRO_TLS_CLIENT_AUTH`: `require` (default), `request` or `none`
    /// - `MICRO_TLS_MIN_VERSION`: `1.3` (default) or `1.2`
    /// - `MICRO_TLS_TRUST_DOMAIN`: default `micro.local`
    /// - `MICRO_TLS_SERVER_IDENTITY`: the identity a client expects of every server it calls
    public static func fromEnvironment(_ environment: [String: String]? = nil) throws(MicroCoreError) -> TLSConfig? {
        let env = environment ?? MicroConfig.process.frameworkEnvironment
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

    /// The SPIFFE ID of a service in this trust domain: `spiffe://TRUST-DOMAIN/service/NAME`.
    public func identity(ofService name: String) -> String { "spiffe://\(trustDomain)/service/\(name)" }
}

extension HTTPServerConfiguration {
    /// Applies the `MICRO_SERVER_*` settings of `environment` (timeouts in seconds, fractions
    /// allowed): `MICRO_SERVER_HEADER_TIMEOUT`, `MICRO_SERVER_IDLE_TIMEOUT`,
    /// `MICRO_SERVER_READ_TIMEOUT`, `MICRO_SERVER_WRITE_TIMEOUT` (0 = off for the last two).
    /// Returns what could not be applied, one sentence each.
    public mutating func apply(environment: [String: String]) -> [String] {
        var problems: [String] = []
        func seconds(_ name: String, zeroAllowed: Bool) -> Duration? {
            guard let text = environment[name], !text.isEmpty else { return nil }
            guard let value = Double(text), value.isFinite, value >= 0, value <= 1e6, zeroAllowed || value > 0 else {
                problems.append("\(name) must be a number of seconds\(zeroAllowed ? " (0: off)" : " above 0"), not '\(text)'")
                return nil
            }
            return .milliseconds(Int64(value * 1000))
        }
        if let t = seconds("MICRO_SERVER_HEADER_TIMEOUT", zeroAllowed: false) { headerTimeout = t }
        if let t = seconds("MICRO_SERVER_IDLE_TIMEOUT", zeroAllowed: false) { idleTimeout = t }
        if let t = seconds("MICRO_SERVER_READ_TIMEOUT", zeroAllowed: true) { readTimeout = t }
        if let t = seconds("MICRO_SERVER_WRITE_TIMEOUT", zeroAllowed: true) { writeTimeout = t }
        return problems
    }
}
