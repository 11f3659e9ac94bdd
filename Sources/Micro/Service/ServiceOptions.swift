import Foundation
public import Logging
public import MicroCore

/// How a service runs. Every field has a default; the address can also come from the
/// environment (`MICRO_SERVER_ADDRESS`) or the command line (`--server-address`).
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
    /// The codecs by content type.
    public var codecs: Codecs
    /// Where the service registers; `nil` means the default (`MICRO_REGISTRY`: `local`, or
    /// `memory`). Set ``register`` to false to serve without registering.
    public var registry: (any Registry)?
    /// Whether `run()` registers the service.
    public var register: Bool
    /// How long a registration lives without a heartbeat (`MICRO_REGISTER_TTL`, seconds).
    public var registerTTL: Duration
    /// How often `run()` refreshes it (`MICRO_REGISTER_INTERVAL`, seconds).
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
    /// Whether `run()` reloads ``tls`` when its certificate, key or CA file changes (inotify);
    /// SIGHUP reloads in any case.
    public var reloadTLSOnFileChange: Bool = true
    /// A `MICRO_TLS_*` environment that does not parse: the service refuses to start rather than
    /// serve in plaintext.
    var tlsEnvironmentError: String?

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
        registerTTL: Duration? = nil,
        registerInterval: Duration? = nil,
        interceptors: [any ServerInterceptor] = [],
        broker: (any Broker)? = nil,
        tls: TLSConfig? = nil
    ) {
        self.tls = tls
        if tls == nil {
            do {
                self.tls = try TLSConfig.fromEnvironment()
            } catch {
                self.tlsEnvironmentError = error.message
            }
        }
        self.interceptors = interceptors
        self.broker = broker
        let env = ProcessInfo.processInfo.environment
        self.registry = registry
        self.register = register
        self.registerTTL = registerTTL ?? .seconds(fromEnvironment: "MICRO_REGISTER_TTL", env) ?? .seconds(15)
        self.registerInterval = registerInterval ?? .seconds(fromEnvironment: "MICRO_REGISTER_INTERVAL", env) ?? .seconds(5)
        self.address = address
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger ?? Logger(label: "micro")
        self.server = server
        self.drainTimeout = drainTimeout
        self.handleSignals = handleSignals
        self.codecs = codecs
    }
}

/// A listen address: `:8080`, `127.0.0.1:0`, `[::1]:8080`, `localhost:8080`.
struct ListenAddress: Equatable {
    var host: String
    var port: Int

    init(parsing text: String) throws(MicroError) {
        let bad = MicroError(id: "micro.server", code: 400, detail: "invalid server address '\(text)': expected HOST:PORT, e.g. ':8080' or '127.0.0.1:0'")
        guard let colon = text.lastIndex(of: ":") else { throw bad }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else { throw bad }
        self.host = host
        self.port = port
    }

    /// Flag, then environment, then code, then `:0`.
    static func resolve(
        configured: String?,
        arguments: [String] = CommandLine.arguments,
        environment: [String: String]
    ) -> String {
        var i = 1
        while i < arguments.count {
            let arg = arguments[i]
            for flag in ["--server-address", "--server_address"] {
                if arg == flag, i + 1 < arguments.count { return arguments[i + 1] }
                if arg.hasPrefix(flag + "=") { return String(arg.dropFirst(flag.count + 1)) }
            }
            i += 1
        }
        if let env = environment["MICRO_SERVER_ADDRESS"], !env.isEmpty { return env }
        return configured ?? ":0"
    }
}
