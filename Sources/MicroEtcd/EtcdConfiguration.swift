import Foundation
public import Micro
public import MicroCore

/// Where etcd is and how to reach it.
///
/// ```swift
/// let etcd = EtcdClient(configuration: EtcdConfiguration(endpoints: ["10.0.0.1:2379", "10.0.0.2:2379"]))
/// ```
public struct EtcdConfiguration: Sendable, Equatable {
    /// The members to try, in order: `host:port` (plaintext HTTP/2, as etcd listens by default),
    /// `http://host:port`, or `https://host:port` (TLS, verified against ``tls``'s roots and the
    /// host name). The members etcd reports are added to them once one answers.
    public var endpoints: [String]
    /// etcd's user and password when etcd's authentication is on: the client trades them for a
    /// token, and again when the token expires.
    public var username: String?
    public var password: String?
    /// Trust roots, and a client certificate for mutual TLS, for `https://` endpoints (nil: the
    /// system's roots, no client certificate).
    public var tls: TLSConfig?
    /// How long one request may take, each attempt on a member; also how long a stream may stay
    /// silent before the client moves it to another member. go-micro's is 5 s.
    public var timeout: Duration

    public init(endpoints: [String] = ["127.0.0.1:2379"], username: String? = nil, password: String? = nil, tls: TLSConfig? = nil,
                timeout: Duration = .seconds(5)) {
        self.endpoints = endpoints
        self.username = username
        self.password = password
        self.tls = tls
        self.timeout = timeout
    }

    /// The settings of `environment` (the process's by default):
    /// - `MICRO_REGISTRY_ADDRESS` (or `address` when given): comma-separated endpoints, port 2379
    ///   when none is written, as go-micro reads it; default `127.0.0.1:2379`;
    /// - `MICRO_ETCD_USERNAME` / `MICRO_ETCD_PASSWORD` (or go-micro's `ETCD_USERNAME` / `ETCD_PASSWORD`);
    /// - `MICRO_ETCD_CA`, `MICRO_ETCD_CERT`, `MICRO_ETCD_KEY`: PEM files for `https://` endpoints;
    /// - `MICRO_ETCD_TIMEOUT`: seconds per request (default 5).
    ///
    /// Throws a one-line ``ConfigurationError`` for a value that does not parse.
    public static func fromEnvironment(_ environment: [String: String] = MicroConfig.process.frameworkEnvironment,
                                       address: String? = nil) throws(ConfigurationError) -> EtcdConfiguration {
        func value(_ names: String...) -> String? {
            for name in names { if let v = environment[name], !v.isEmpty { return v } }
            return nil
        }
        var config = EtcdConfiguration()
        if let list = address ?? value("MICRO_REGISTRY_ADDRESS") {
            config.endpoints = try parseEndpoints(list)
        }
        config.username = value("MICRO_ETCD_USERNAME", "ETCD_USERNAME")
        config.password = value("MICRO_ETCD_PASSWORD", "ETCD_PASSWORD")
        if config.username != nil, config.password == nil {
            throw ConfigurationError(key: "micro.etcd.password", reason: "MICRO_ETCD_USERNAME is set but MICRO_ETCD_PASSWORD is not")
        }
        let ca = value("MICRO_ETCD_CA"), cert = value("MICRO_ETCD_CERT"), key = value("MICRO_ETCD_KEY")
        if ca != nil || cert != nil {
            var tls = TLSConfig()
            tls.trustRoots = ca.map { .file($0) }
            if let cert {
                guard let key else {
                    throw ConfigurationError(key: "micro.etcd.key", reason: "MICRO_ETCD_CERT is set but MICRO_ETCD_KEY is not")
                }
                tls.certificate = .file(cert)
                tls.privateKey = .file(key)
            }
            config.tls = tls
        }
        if let text = value("MICRO_ETCD_TIMEOUT") {
            guard let seconds = Double(text), seconds.isFinite, seconds > 0, seconds <= 3600 else {
                throw ConfigurationError(key: "micro.etcd.timeout", reason: "MICRO_ETCD_TIMEOUT must be a number of seconds above 0, not '\(text)'")
            }
            config.timeout = .milliseconds(Int64(seconds * 1000))
        }
        return config
    }

    /// The etcd of what is not the registry (configuration, locks): `MICRO_ETCD_ADDRESS`, else the
    /// registry's members when the registry is etcd, else `127.0.0.1:2379`; the rest as
    /// ``fromEnvironment(_:address:)``.
    public static func forServices(_ environment: [String: String] = MicroConfig.process.frameworkEnvironment) throws(ConfigurationError)
        -> EtcdConfiguration
    {
        let registry = environment["MICRO_REGISTRY"]?.trimmingCharacters(in: .whitespaces).lowercased() == "etcd"
        let address = environment["MICRO_ETCD_ADDRESS"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (registry ? environment["MICRO_REGISTRY_ADDRESS"].flatMap { $0.isEmpty ? nil : $0 } : nil)
            ?? "127.0.0.1:2379"
        return try fromEnvironment(environment, address: address)
    }

    /// `a:1,b,https://c:3` → `["a:1", "b:2379", "https://c:3"]`; an empty list or a malformed
    /// entry is an error.
    static func parseEndpoints(_ list: String) throws(ConfigurationError) -> [String] {
        var endpoints: [String] = []
        for raw in list.split(separator: ",") {
            let item = raw.trimmingCharacters(in: .whitespaces)
            guard !item.isEmpty else { continue }
            guard let endpoint = normalized(item) else {
                throw ConfigurationError(key: "micro.registryAddress", reason: "'\(item)' is not an etcd endpoint (host:port, http://host:port or https://host:port)")
            }
            if !endpoints.contains(endpoint) { endpoints.append(endpoint) }
        }
        guard !endpoints.isEmpty else {
            throw ConfigurationError(key: "micro.registryAddress", reason: "MICRO_REGISTRY_ADDRESS names no etcd endpoint")
        }
        return endpoints
    }

    /// An endpoint as the client dials it: `host:port` for plaintext (HTTP/2 with prior
    /// knowledge, as gRPC speaks), `https://host:port` for TLS; nil when it is not one.
    static func normalized(_ text: String) -> String? {
        var rest = Substring(text)
        var secure = false
        if let range = rest.range(of: "://") {
            switch rest[..<range.lowerBound].lowercased() {
            case "http": break
            case "https": secure = true
            default: return nil
            }
            rest = rest[range.upperBound...]
        }
        while rest.hasSuffix("/") { rest = rest.dropLast() }
        guard !rest.isEmpty, !rest.contains("/"), !rest.contains(where: { $0 == " " || $0 == "@" }) else { return nil }
        // host:port, [v6]:port, or a host alone (port 2379)
        var hostPort = String(rest)
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return nil }
            let after = rest[rest.index(after: close)...]
            if after.isEmpty { hostPort += ":2379" } else if !after.hasPrefix(":") || Int(after.dropFirst()) == nil { return nil }
        } else if let colon = rest.lastIndex(of: ":") {
            guard rest[..<colon].firstIndex(of: ":") == nil, let port = Int(rest[rest.index(after: colon)...]), (1...65535).contains(port),
                  colon != rest.startIndex else { return nil }
        } else {
            hostPort += ":2379"
        }
        return secure ? "https://" + hostPort : hostPort
    }
}
