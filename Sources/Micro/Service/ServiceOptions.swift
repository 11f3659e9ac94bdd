import Foundation
public import Logging
public import MicroCore
public import Tracing

#if canImport(Glibc)
import Glibc
#endif

/// How a service runs. Every field has a default, and the memberwise initialiser reads nothing
/// else; ``init(config:)`` reads the framework's settings (TLS, registration timings) from a
/// configuration, which is what `Service(name:)` does with the process's. The listen address is
/// resolved when the service starts: `--server-address`, then `MICRO_SERVER_ADDRESS`, then
/// ``address``.
public struct ServiceOptions: Sendable {
    /// `host:port`; `:0` (the default) listens on every interface on a port the kernel picks.
    public var address: String?
    /// The loops the server runs on.
    public var eventLoopGroup: EventLoopGroup
    /// Where the service logs.
    public var logger: Logger
    /// Limits and timeouts of the HTTP server (host and port come from `address`).
    public var server: HTTPServerConfiguration
    /// How long requests in flight may take to finish after a shutdown signal.
    public var drainTimeout: Duration
    /// Whether `run()` stops on SIGINT and SIGTERM.
    public var handleSignals: Bool
    /// What `run()` does when the service cannot start (an address that does not parse or is
    /// taken, TLS files that do not load or do not match, an environment variable naming nothing
    /// known): true writes one line, `NAME: cannot start: REASON`, to stderr and exits the
    /// process with status 1; false throws the ``ServiceStartError``.
    ///
    /// Default: ``handleSignals``. A service that owns the process's signals is the process (a
    /// `main.swift` ending in `try await service.run()`), so it also ends the process; one run
    /// beside other work (tests, a swift-service-lifecycle `ServiceGroup`, which handles the
    /// signals itself) sets `handleSignals: false` and gets the error thrown.
    public var exitOnStartFailure: Bool {
        get { exitOnStartFailureSetting ?? handleSignals }
        set { exitOnStartFailureSetting = newValue }
    }
    private var exitOnStartFailureSetting: Bool?
    /// The codecs by content type.
    public var codecs: Codecs
    /// Where the service registers; `nil` means the default (`MICRO_REGISTRY`: `local`, or
    /// `memory`). Set ``register`` to false to serve without registering.
    public var registry: (any Registry)?
    /// Whether `run()` registers the service.
    public var register: Bool
    /// How long a registration lives without a heartbeat (`micro.register.ttl`, seconds).
    public var registerTTL: Duration
    /// How often `run()` refreshes it (`micro.register.interval`, seconds).
    public var registerInterval: Duration
    /// Wrap every handler call, first outermost (go-micro's handler wrappers).
    public var interceptors: [any ServerInterceptor]
    /// Where subscriptions and `service.client.publish` go; nil means an ``HTTPBroker`` served on
    /// this service's own address (`MICRO_BROKER=memory` for an in-process one).
    public var broker: (any Broker)?
    /// TLS for the server (every connection; mutual TLS when the configuration requires client
    /// certificates) and for the service's client. Default: the `MICRO_TLS_*` environment
    /// (``TLSConfig/fromEnvironment(_:)``), else plaintext.
    public var tls: TLSConfig?
    /// Who may call the service, and the token its client sends (``ServiceAuth``); nil: no
    /// auth. Default: the `MICRO_AUTH*` settings (``ServiceAuth/fromEnvironment(_:store:)``).
    public var auth: ServiceAuth?
    /// What ``init(config:)`` had to say about ``auth`` (logged when the service starts).
    var authNote: String?
    /// Whether `run()` reloads ``tls`` when its certificate, key or CA file changes (inotify);
    /// SIGHUP reloads in any case.
    public var reloadTLSOnFileChange: Bool = true
    /// The service's configuration (``Service/config``); nil: the process's flags, environment
    /// and `MICRO_CONFIG_FILE` (``MicroConfig``).
    public var config: MicroConfig?
    /// Traces every call the service serves and its client makes (spans, W3C propagation, trace
    /// ids on log lines); nil: no tracing. Default: the process's tracer (``Tracers/process``:
    /// `MICRO_TRACER`, or one the program bootstrapped).
    public var tracer: (any Tracer)?

    public init(
        address: String? = nil,
        eventLoopGroup: EventLoopGroup = .shared,
        logger: Logger? = nil,
        server: HTTPServerConfiguration = .init(),
        drainTimeout: Duration = .seconds(10),
        handleSignals: Bool = true,
        codecs: Codecs = .standard,
        registry: (any Registry)? = nil,
        register: Bool = true,
        registerTTL: Duration = .seconds(15),
        registerInterval: Duration = .seconds(5),
        interceptors: [any ServerInterceptor] = [],
        broker: (any Broker)? = nil,
        tls: TLSConfig? = nil,
        exitOnStartFailure: Bool? = nil
    ) {
        self.tls = tls
        self.interceptors = interceptors
        self.broker = broker
        self.registry = registry
        self.register = register
        self.registerTTL = registerTTL
        self.registerInterval = registerInterval
        self.address = address
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger ?? Logger(label: "micro")
        self.server = server
        self.drainTimeout = drainTimeout
        self.handleSignals = handleSignals
        self.exitOnStartFailureSetting = exitOnStartFailure
        self.codecs = codecs
        self.tracer = Tracers.process
    }

    /// The defaults, then the framework's settings `config` has (flag, variable or file), and
    /// `config` as the service's ``config``:
    /// `MICRO_TLS_*` (TLS on every connection and for the service's client), `MICRO_REGISTER_TTL`
    /// and `MICRO_REGISTER_INTERVAL`, `MICRO_AUTH*` (``auth``), `MICRO_METRICS=prometheus`
    /// (``MicroMetrics/enablePrometheus()``: calls recorded, `GET /metrics`). A value that does not parse throws: a service refuses to
    /// start rather than serve in plaintext, or with a default it was not asked for.
    public init(config: MicroConfig) throws(ConfigurationError) {
        self.init()
        self.config = config
        let environment = config.frameworkEnvironment
        do {
            tls = try TLSConfig.fromEnvironment(environment)
        } catch {
            throw ConfigurationError(key: "micro.tls", reason: "TLS: \(error.message)")
        }
        switch environment["MICRO_METRICS"]?.lowercased() {
        case nil, "", "none", "off": break
        case "prometheus": MicroMetrics.enablePrometheus()
        case let other?: throw ConfigurationError(key: "micro.metrics", reason: "MICRO_METRICS must be prometheus or none, not '\(other)'")
        }
        if let (auth, note) = try ServiceAuth.fromEnvironment(environment) {
            self.auth = auth
            authNote = note
        }
        for (name, key) in [("MICRO_REGISTER_TTL", "micro.register.ttl"), ("MICRO_REGISTER_INTERVAL", "micro.register.interval")] {
            guard let text = environment[name], !text.isEmpty else { continue }
            guard let value = Duration.seconds(fromEnvironment: name, environment) else {
                throw ConfigurationError(key: key, reason: "\(name) must be a number of seconds above 0, not '\(text)'")
            }
            if name == "MICRO_REGISTER_TTL" { registerTTL = value } else { registerInterval = value }
        }
    }

    /// Why the process's settings cannot configure this service, if they cannot: a
    /// `MICRO_REGISTRY` or `MICRO_BROKER` that names nothing known (when the options leave the
    /// registry or broker to them), a connection cap that is no number.
    func environmentProblem(_ environment: [String: String]) -> String? {
        if let text = environment["MICRO_SERVER_MAX_CONNECTIONS"], !text.isEmpty, (Int(text) ?? -1) < 0 {
            return "MICRO_SERVER_MAX_CONNECTIONS must be a whole number (0: from the descriptor limit), not '\(text)'"
        }
        if case .failure(let error) = Self.busyPoll(environment) { return error.reason }
        if registry == nil, let problem = Registries.environmentError(environment) { return problem }
        if broker == nil, let problem = Brokers.environmentError(environment) { return problem }
        if broker == nil, let name = environment["MICRO_BROKER"]?.lowercased(), !["", "http", "memory"].contains(name) {
            // a plugin's own settings (its servers' addresses...): made, not connected, to see
            do { _ = try Brokers.plugins.make(PluginContext(environment: environment)) } catch { return error.description }
        }
        if tracer == nil, let problem = Tracers.problem { return problem }
        return nil
    }
}

extension ServiceOptions {
    /// `MICRO_BUSY_POLL`: microseconds the service's loops poll without sleeping after a read
    /// (``EventLoopGroup/busyPoll``); nil when it is not set.
    static func busyPoll(_ environment: [String: String]) -> Result<Duration?, ConfigurationError> {
        guard let text = environment["MICRO_BUSY_POLL"]?.trimmingCharacters(in: .whitespaces), !text.isEmpty else { return .success(nil) }
        guard let micros = Int(text), (0...1_000_000).contains(micros) else {
            return .failure(ConfigurationError(key: "micro.busyPoll", reason: "MICRO_BUSY_POLL must be a whole number of microseconds from 0 to 1000000, not '\(text)'"))
        }
        return .success(.microseconds(micros))
    }
}

/// A listen address: `:8080`, `127.0.0.1:0`, `[::1]:8080`, `localhost:8080`.
struct ListenAddress: Equatable {
    var host: String
    var port: Int

    /// `source` names where `text` came from (`MICRO_SERVER_ADDRESS`, ...), for the error.
    init(parsing text: String, source: String? = nil) throws(ConfigurationError) {
        let origin = source.map { " (from \($0))" } ?? ""
        func bad(_ why: String) -> ConfigurationError {
            ConfigurationError(key: "micro.server.address", reason: "invalid server address '\(text)'\(origin): \(why)")
        }
        let expected = "expected HOST:PORT, e.g. ':8080' or '127.0.0.1:0'"
        guard let colon = text.lastIndex(of: ":") else { throw bad(expected) }
        var host = String(text[..<colon])
        let bracketed = host.hasPrefix("[") && host.hasSuffix("]")
        if bracketed { host = String(host.dropFirst().dropLast()) }
        guard let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else { throw bad(expected) }
        // what can only be a numeric address is checked here, not looked up in the DNS (as
        // getaddrinfo would take it: inet_aton's forms, e.g. 127.1, are addresses too)
        var v6 = [UInt8](repeating: 0, count: 16)
        let literal = String(host.prefix { $0 != "%" })  // fe80::1%eth0: the zone is the interface's name
        if bracketed, inet_pton(AF_INET6, literal, &v6) != 1 { throw bad("\(host) is not an IPv6 address") }
        var v4 = in_addr()
        if !host.isEmpty, host.allSatisfy({ $0 == "." || $0.isASCII && $0.isNumber }), inet_aton(host, &v4) == 0 {
            throw bad("\(host) is not an IPv4 address")
        }
        self.host = host
        self.port = port
    }

    /// Flag, then environment, then code, then `:0`; with where it came from.
    static func resolve(
        configured: String?,
        arguments: [String] = CommandLine.arguments,
        environment: [String: String]
    ) -> (text: String, source: String) {
        var i = 1
        while i < arguments.count {
            let arg = arguments[i]
            for flag in ["--server-address", "--server_address"] {
                if arg == flag, i + 1 < arguments.count { return (arguments[i + 1], flag) }
                if arg.hasPrefix(flag + "=") { return (String(arg.dropFirst(flag.count + 1)), flag) }
            }
            i += 1
        }
        if let env = environment["MICRO_SERVER_ADDRESS"], !env.isEmpty { return (env, "MICRO_SERVER_ADDRESS") }
        if let configured { return (configured, "ServiceOptions.address") }
        return (":0", "the default")
    }
}
