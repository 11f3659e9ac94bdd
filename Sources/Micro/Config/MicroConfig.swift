public import Configuration
public import Foundation
public import Logging

/// A setting that cannot be used (a file that does not parse, a value of the wrong form): local
/// misuse, said in one line. A service that meets one does not start.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    /// The key concerned (`micro.config.file`, `database.port`).
    public let key: String
    public let reason: String

    public init(key: String, reason: String) {
        self.key = key
        self.reason = reason
    }

    public var description: String { reason }
}

/// A process's configuration, read from one place with swift-configuration's `ConfigReader`, in
/// this order (the first that has a key wins):
///
/// 1. command-line flags with a dotted name: `--database.host=db1` or `--database.host db1`;
/// 2. the environment, go-micro's way: `DATABASE_HOST` is `database.host`;
/// 3. the configuration file `MICRO_CONFIG_FILE` (JSON, or YAML by its `.yaml`/`.yml`
///    extension), followed while the service runs: a change is seen at once, a broken file keeps
///    the last good values and logs an error;
/// 4. the defaults given in code.
///
/// A service reads its own settings through ``Service/config``:
///
/// ```swift
/// let host = service.config.string(forKey: "database.host", default: "localhost")
/// let db = service.config.scoped(to: "database")          // db.int(forKey: "port", default: 5432)
/// try await service.config.watchString(forKey: "greeting") { updates in
///     for await greeting in updates { ... }                // every change, without a restart
/// }
/// ```
///
/// Custom sources (etcd's, as the etcd issue adds it) plug in as more providers.
///
/// Threading: any thread.
public final class MicroConfig: Sendable {
    /// The merged view of every source.
    public let reader: ConfigReader
    /// The configuration file, if one is set.
    public let filePath: String?
    let file: ConfigFileProvider?
    let environment: [String: String]
    let flags: [String: String]
    /// The providers after the environment, each with the name `source(of:)` gives it.
    let sources: [(name: String, provider: any ConfigProvider)]

    /// Reads the flags, the environment and the file. Throws ``ConfigurationError`` if the file is
    /// set but cannot be read or parsed.
    public init(
        arguments: [String] = CommandLine.arguments,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        providers: [any ConfigProvider] = [],
        defaults: [AbsoluteConfigKey: ConfigValue] = [:],
        logger: Logger = Logger(label: "micro.config")
    ) throws(ConfigurationError) {
        let flags = Self.dottedFlags(arguments)
        self.flags = flags
        self.environment = environment
        let path = flags["micro.config.file"] ?? environment["MICRO_CONFIG_FILE"].flatMap { $0.isEmpty ? nil : $0 }
        self.filePath = path
        self.file = try path.map { path throws(ConfigurationError) in try ConfigFileProvider(path: path, logger: logger) }
        var all: [any ConfigProvider] = [
            InMemoryProvider(name: "flags", values: Dictionary(uniqueKeysWithValues: flags.map { (AbsoluteConfigKey($0.key.split(separator: ".").map(String.init)), ConfigValue(.string($0.value), isSecret: false)) })),
            EnvironmentVariablesProvider(environmentVariables: environment),
        ]
        var sources: [(name: String, provider: any ConfigProvider)] = providers.map { ($0.providerName, $0) }
        if let file { sources.append((file.path, file)) }
        sources.append(("default", InMemoryProvider(name: "defaults", values: defaults)))
        self.sources = sources
        all += sources.map(\.provider)
        reader = ConfigReader(providers: all)
    }

    /// `--a.b=value` and `--a.b value`: flags whose name has a dot (other flags are the program's).
    static func dottedFlags(_ arguments: [String]) -> [String: String] {
        var flags: [String: String] = [:]
        var i = arguments.startIndex
        while i < arguments.endIndex {
            let argument = arguments[i]
            i += 1
            guard argument.hasPrefix("--") else { continue }
            let body = argument.dropFirst(2)
            if let equals = body.firstIndex(of: "=") {
                let name = String(body[..<equals])
                if name.contains(".") { flags[name] = String(body[body.index(after: equals)...]) }
            } else if body.contains("."), i < arguments.endIndex, !arguments[i].hasPrefix("--") {
                flags[String(body)] = arguments[i]
                i += 1
            }
        }
        return flags
    }

    /// Where `key`'s value comes from, for messages: `--KEY`, `ENV_NAME`, `FILE`, or `default`;
    /// nil if no source has it. A framework setting's variable is the one ``settings`` names
    /// (`micro.server.maxConnections` is `MICRO_SERVER_MAX_CONNECTIONS`).
    public func source(of key: String) -> String? {
        if flags[key] != nil { return "--\(key)" }
        let name = Self.settings.first { $0.key == key }?.environment ?? Self.environmentName(of: key)
        if environment[name] != nil { return name }
        let absolute = AbsoluteConfigKey(key.split(separator: ".").map(String.init))
        let types: [ConfigType] = [.string, .int, .double, .bool, .stringArray, .intArray, .doubleArray, .boolArray, .bytes, .byteChunkArray]
        for (name, provider) in sources where types.contains(where: { (try? provider.value(forKey: absolute, type: $0).value) != nil }) {
            return name
        }
        return nil
    }

    /// The environment variable of `key`: dots and dashes become `_`, letters upper case
    /// (`database.host` → `DATABASE_HOST`), as swift-configuration and go-micro map them.
    public static func environmentName(of key: String) -> String {
        String(key.map { $0 == "." || $0 == "-" ? "_" : Character($0.uppercased()) })
    }

    /// The process's configuration: its command line, its environment and `MICRO_CONFIG_FILE`.
    /// Made on first use. The framework's own settings (``settings``) are read from it.
    public static var process: MicroConfig { processState.config }

    /// Why the process's configuration file could not be used, if it could not (a service then
    /// refuses to start; meanwhile ``process`` has everything but the file).
    public static var processProblem: String? { processState.problem }

    private static let processState: (config: MicroConfig, problem: String?) = {
        do {
            return (try MicroConfig(), nil)
        } catch {
            var environment = ProcessInfo.processInfo.environment
            environment["MICRO_CONFIG_FILE"] = nil
            let arguments = CommandLine.arguments.filter { !$0.hasPrefix("--micro.config.file") }
            return ((try? MicroConfig(arguments: arguments, environment: environment))!, "\(error)")
        }
    }()

    /// One of the framework's settings: its key (flags `--KEY=…`, the file's `{"micro": …}`), its
    /// environment variable, and what it does.
    public struct Setting: Sendable {
        public let key: String
        public let environment: String
        public let summary: String
    }

    /// The framework's settings. Each is read as flag, then environment variable, then file.
    public static let settings: [Setting] = [
        ("micro.server.address", "MICRO_SERVER_ADDRESS", "host:port to listen on (also --server-address)"),
        ("micro.server.advertise", "MICRO_SERVER_ADVERTISE", "host:port registered for callers"),
        ("micro.server.maxConnections", "MICRO_SERVER_MAX_CONNECTIONS", "connections served at once (0: from the descriptor limit)"),
        ("micro.server.headerTimeout", "MICRO_SERVER_HEADER_TIMEOUT", "seconds to receive a request head"),
        ("micro.server.idleTimeout", "MICRO_SERVER_IDLE_TIMEOUT", "seconds an idle connection is kept"),
        ("micro.server.readTimeout", "MICRO_SERVER_READ_TIMEOUT", "seconds to receive the rest of a request"),
        ("micro.server.writeTimeout", "MICRO_SERVER_WRITE_TIMEOUT", "seconds the peer may take no output"),
        ("micro.busyPoll", "MICRO_BUSY_POLL", "microseconds a service's loops poll without sleeping after a read (0: off)"),
        ("micro.registry", "MICRO_REGISTRY", "registry plugin: local, memory, mdns, …"),
        ("micro.registryAddress", "MICRO_REGISTRY_ADDRESS", "where the registry is (local: a directory; etcd: host:port,…)"),
        ("micro.etcd.address", "MICRO_ETCD_ADDRESS", "etcd for configuration and locks when the registry is not etcd"),
        ("micro.etcd.username", "MICRO_ETCD_USERNAME", "etcd user (also ETCD_USERNAME)"),
        ("micro.etcd.password", "MICRO_ETCD_PASSWORD", "etcd password (also ETCD_PASSWORD)"),
        ("micro.etcd.ca", "MICRO_ETCD_CA", "roots trusted for https:// etcd endpoints (PEM file)"),
        ("micro.etcd.cert", "MICRO_ETCD_CERT", "client certificate for etcd (PEM file)"),
        ("micro.etcd.key", "MICRO_ETCD_KEY", "its private key (PEM file)"),
        ("micro.etcd.timeout", "MICRO_ETCD_TIMEOUT", "seconds an etcd request may take (default 5)"),
        ("micro.mdnsInterface", "MICRO_MDNS_INTERFACE", "network interfaces for mDNS"),
        ("micro.mdnsTimeout", "MICRO_MDNS_TIMEOUT", "seconds an mDNS lookup waits for answers (default 1)"),
        ("micro.register.ttl", "MICRO_REGISTER_TTL", "seconds a registration lives"),
        ("micro.register.interval", "MICRO_REGISTER_INTERVAL", "seconds between refreshes"),
        ("micro.sync", "MICRO_SYNC", "locks: local, memory, etcd, …"),
        ("micro.syncAddress", "MICRO_SYNC_ADDRESS", "where the locks are (local: a directory; etcd: host:port,…)"),
        ("micro.store", "MICRO_STORE", "store plugin: sqlite, memory, …"),
        ("micro.storeAddress", "MICRO_STORE_ADDRESS", "where the store is (sqlite: a directory)"),
        ("micro.store.database", "MICRO_STORE_DATABASE", "the store's default database (micro)"),
        ("micro.store.table", "MICRO_STORE_TABLE", "the store's default table (micro)"),
        ("micro.broker", "MICRO_BROKER", "broker plugin: http, memory, …"),
        ("micro.brokerAddress", "MICRO_BROKER_ADDRESS", "where a standalone HTTP broker listens; nats: nats://host:port,…"),
        ("micro.broker.user", "MICRO_BROKER_USER", "nats: user name"),
        ("micro.broker.password", "MICRO_BROKER_PASSWORD", "nats: password"),
        ("micro.broker.token", "MICRO_BROKER_TOKEN", "nats: token"),
        ("micro.broker.ca", "MICRO_BROKER_CA", "nats: roots trusted for TLS (PEM file)"),
        ("micro.broker.cert", "MICRO_BROKER_CERT", "nats: client certificate for mutual TLS (PEM file)"),
        ("micro.broker.key", "MICRO_BROKER_KEY", "nats: its private key (PEM file)"),
        ("micro.tls.cert", "MICRO_TLS_CERT", "certificate chain (PEM file)"),
        ("micro.tls.key", "MICRO_TLS_KEY", "private key (PEM file)"),
        ("micro.tls.ca", "MICRO_TLS_CA", "trusted roots (PEM file)"),
        ("micro.tls.clientAuth", "MICRO_TLS_CLIENT_AUTH", "require, request or none"),
        ("micro.tls.minVersion", "MICRO_TLS_MIN_VERSION", "1.3 or 1.2"),
        ("micro.tls.trustDomain", "MICRO_TLS_TRUST_DOMAIN", "SPIFFE trust domain of identities"),
        ("micro.tls.serverIdentity", "MICRO_TLS_SERVER_IDENTITY", "identity a client expects of servers"),
        ("micro.certsDir", "MICRO_CERTS_DIR", "where `micro certs` keeps its CA"),
        ("micro.metrics", "MICRO_METRICS", "prometheus: record calls, GET /metrics on every service's port"),
        ("micro.auth", "MICRO_AUTH", "auth: jwt, or noop (the default)"),
        ("micro.auth.publicKey", "MICRO_AUTH_PUBLIC_KEY", "keys verifying tokens (base64 of PEM, or PEM files; comma separated)"),
        ("micro.auth.privateKey", "MICRO_AUTH_PRIVATE_KEY", "key signing tokens (base64 of PEM, or a PEM file)"),
        ("micro.auth.issuer", "MICRO_AUTH_ISSUER", "issuer of tokens (go.micro)"),
        ("micro.auth.token", "MICRO_AUTH_TOKEN", "token a client sends on every call"),
        ("micro.config.file", "MICRO_CONFIG_FILE", "this configuration file (JSON or YAML)"),
    ].map { Setting(key: $0.0, environment: $0.1, summary: $0.2) }

    /// The environment as the framework reads it: every variable, and for each of ``settings`` the
    /// value of its flag if given, else its variable, else its key in the file.
    public var frameworkEnvironment: [String: String] {
        var merged = environment
        for setting in Self.settings {
            if let flag = flags[setting.key] {
                merged[setting.environment] = flag
            } else if merged[setting.environment] == nil, let value = fileValue(setting.key) {
                merged[setting.environment] = value
            }
        }
        return merged
    }

    /// The file's value of `key` as text (a number or a flag in the file reads as its text).
    func fileValue(_ key: String) -> String? {
        guard let file else { return nil }
        let absolute = AbsoluteConfigKey(key.split(separator: ".").map(String.init))
        for type in [ConfigType.string, .int, .double, .bool] {
            guard let content = (try? file.value(forKey: absolute, type: type))?.value?.content else { continue }
            switch content {
            case .string(let text): return text
            case .int(let n): return String(n)
            case .double(let x): return String(x)
            case .bool(let b): return String(b)
            default: continue
            }
        }
        return nil
    }

    /// Starts following the file (a service does when it runs).
    func follow() throws {
        try file?.watch()
    }

    /// Stops following the file (its values stay as last read).
    func stop() {
        file?.stop()
    }
}
