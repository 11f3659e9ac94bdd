import Foundation
import Logging
import MicroCore
public import Configuration
public import ServiceLifecycle
public import SwiftProtobuf
import Synchronization
import Tracing
import UnixSignals

#if canImport(Glibc)
import Glibc
#endif

/// A service: a name, a set of endpoints, and a server that answers them.
///
/// ```swift
/// let service = Service(name: "helloworld")
/// service.handle("Helloworld.Greeting") { (req: Request, ctx: Context) async throws -> Response in
///     Response(message: "Hello " + req.name)
/// }
/// try await service.run()   // serves until SIGINT or SIGTERM, then drains and returns
/// ```
///
/// A service that cannot start (its address taken, its TLS key not its certificate's, ...) says
/// why in one line on stderr, `helloworld: cannot start: REASON`, and exits with status 1.
///
/// Handlers run on the event loop that owns the caller's connection; do not block in them.
public final class Service: Sendable {
    public let name: String
    public let version: String
    public let metadata: [String: String]
    public let options: ServiceOptions
    /// This instance's node id in the registry.
    public let nodeID: String
    /// A client that finds other services in this service's registry and publishes to its broker.
    public let client: Client
    /// Where this service's subscriptions live.
    public let broker: any Broker
    /// The last lines the service logged (`Debug.Log`).
    let logs: LogRing
    /// The service's own settings: flags, environment, the `MICRO_CONFIG_FILE` file (followed
    /// while the service runs) and defaults, merged (see ``MicroConfig``).
    public var config: ConfigReader { configuration.reader }
    /// Where ``config`` comes from.
    public let configuration: MicroConfig
    /// Why the configuration could not be read (then the service does not start).
    let configurationProblem: String?
    let subscribers = Mutex<[Subscriber]>([])
    let router: Router
    let health = HealthState()
    /// `GET /health…`: the checks and what they say of the node.
    let healthChecks: HealthChecks
    /// Serialized FileDescriptorProtos by file name, for reflection.
    let protoFiles = Mutex<[String: [UInt8]]>([:])
    private let state = Mutex<State>(State())

    private struct State {
        var server: HTTPServer?
        var stopRequested = false
        var rulesStarted = false
        var running = false
        var stopWaiter: CheckedContinuation<Void, Never>?
    }

    public init(
        name: String,
        version: String = "latest",
        address: String? = nil,
        metadata: [String: String] = [:],
        options given: ServiceOptions? = nil
    ) {
        // no options given: the process's settings (a setting that does not parse stops the
        // service when it starts, in one line)
        var problem: String?
        var options: ServiceOptions
        if let given {
            options = given
        } else {
            do {
                options = try ServiceOptions(config: .process)
            } catch {
                problem = error.description
                options = ServiceOptions()
            }
        }
        if let address { options.address = address }
        // the last lines logged, for Debug.Log, beside where they are printed
        let logs = LogRing()
        options.logger.handler = MultiplexLogHandler([options.logger.handler, RingLogHandler(ring: logs, logLevel: options.logger.logLevel)])
        self.logs = logs
        options.logger[metadataKey: "service"] = "\(name)"
        if let tracer = options.tracer {
            // every line logged within a call carries its trace and span ids
            let own = options.logger.handler.metadataProvider
            options.logger.handler.metadataProvider = Logger.MetadataProvider.multiplex([own, .traceIDs(tracer)].compactMap { $0 })
        }
        self.name = name
        self.version = version
        self.metadata = metadata
        self.options = options
        self.nodeID = "\(name)-\(UUID().uuidString.lowercased())"
        healthChecks = HealthChecks(state: health, info: ["service": name, "version": version, "node": nodeID])
        if options.register { healthChecks.add(healthChecks.registryCheck(ttl: options.registerTTL)) }
        // a file that cannot be used is said when the service starts (it does not)
        configuration = options.config ?? MicroConfig.process
        configurationProblem = (options.config == nil || options.config === MicroConfig.process ? MicroConfig.processProblem : nil) ?? problem
        // the client's broker is the service's: one registry watch and one connection pool
        // a TLS environment that does not parse is the service's to report (it refuses to start),
        // not the client's to log and ignore
        // auth: checked before the interceptors on every call, and the client's token
        var clientInterceptors: [any ClientInterceptor] = []
        if let auth = options.auth {
            let tokens = auth.tokens ?? auth.auth.privateKey.map { _ in
                TokenSource(signing: Account(id: name, type: "service", issuer: auth.auth.issuer, scopes: ["service"]), with: auth.auth)
            }
            if let tokens { clientInterceptors.append(AuthClientInterceptor(tokens: tokens)) }
        }
        self.client = Client(registry: options.registry, broker: options.broker, interceptors: clientInterceptors,
                             eventLoopGroup: options.eventLoopGroup, logger: options.logger, tls: options.tls, tracer: options.tracer)
        let broker = client.broker
        self.broker = broker
        // traced: every call runs in its span, the auth check, the interceptors and the handler too
        self.router = Router(service: name, codecs: options.codecs, logger: options.logger, interceptors: options.interceptors,
                             admission: options.auth.map { AuthInterceptor(auth: $0.auth, rules: $0.rules) },
                             tracing: options.tracer.map { TracingServerInterceptor(tracer: $0) },
                             broker: broker as? any MountedBroker, healthChecks: healthChecks)
        registerHealth()
        registerReflection()
        registerDebug()
    }

    /// Registers a typed handler for `endpoint` (e.g. `Helloworld.Greeting`). The request is
    /// decoded with the codec of its `Content-Type` (JSON if none); throw a ``MicroError`` to
    /// answer with its code.
    public func handle<Request: Decodable & Sendable, Response: Encodable & Sendable>(
        _ endpoint: String,
        _ handler: nonisolated(nonsending) @escaping @Sendable (Request, Context) async throws -> Response
    ) {
        router.register(Router.endpoint(endpoint, service: name, handler))
    }

    /// Registers a handler of raw bytes for `endpoint`: the request body (gRPC: the message) as
    /// it came, and the bytes to answer with. Over protobuf, gRPC and `application/octet-stream`
    /// the bytes pass untouched; over JSON they are an array of numbers.
    public func handle(
        _ endpoint: String,
        _ handler: nonisolated(nonsending) @escaping @Sendable ([UInt8], Context) async throws -> [UInt8]
    ) {
        router.register(Router.bytesEndpoint(endpoint, service: name, handler))
    }

    /// Registers a handler of protobuf messages for `endpoint` (e.g. `Greeter.Hello`), reachable
    /// over gRPC (`/PKG.Greeter/Hello`) and the micro protocol (protobuf or JSON bodies).
    public func handle<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ endpoint: String,
        _ handler: nonisolated(nonsending) @escaping @Sendable (Request, Context) async throws -> Response
    ) {
        router.register(Router.messageEndpoint(endpoint, service: name, handler))
    }

    // Synchronous handlers. A closure that does not `await` (and is not marked `async`) picks
    // these: it answers from the frame that routed the request, without an async call of its
    // own, which saves the call's task frames and an executor check (2–3 % of a small call's
    // server CPU). It runs where an async one would, on the connection's loop, so the same rule
    // holds: compute, do not block. Interceptors, auth and tracing wrap it as they wrap any handler.

    /// Registers a synchronous typed handler for `endpoint` (see the typed `async` one).
    public func handle<Request: Decodable & Sendable, Response: Encodable & Sendable>(
        _ endpoint: String,
        _ handler: @escaping @Sendable (Request, Context) throws -> Response
    ) {
        router.register(Router.endpoint(endpoint, service: name, synchronous: handler))
    }

    /// Registers a synchronous handler of raw bytes for `endpoint` (see the `async` one).
    public func handle(
        _ endpoint: String,
        _ handler: @escaping @Sendable ([UInt8], Context) throws -> [UInt8]
    ) {
        router.register(Router.bytesEndpoint(endpoint, service: name, synchronous: handler))
    }

    /// Registers a synchronous handler of protobuf messages for `endpoint` (see the `async` one).
    public func handle<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ endpoint: String,
        _ handler: @escaping @Sendable (Request, Context) throws -> Response
    ) {
        router.register(Router.messageEndpoint(endpoint, service: name, synchronous: handler))
    }

    /// The endpoints registered so far.
    public var endpoints: [String] { router.endpointNames }

    /// The registry this service registers in.
    public var registry: any Registry { options.registry ?? Registries.default }

    /// What the registry publishes about this instance (once started).
    public var record: ServiceRecord? {
        guard let address = advertisedAddress else { return nil }
        // go-micro's own keys first (its clients take a node without `protocol` for a legacy one
        // and switch to json-rpc / proto-rpc), then what this framework adds
        var metadata = [
            "protocol": "mucp",
            "server": "mucp",
            "transport": "http",
            "broker": broker.name,
            "registry": registry.name,
            "protocols": "http/1.1,h2c,grpc",
            "framework": "swift-micro",
            "content-types": options.codecs.contentTypes.joined(separator: ","),
        ]
        if let tls = options.tls {
            // callers must use TLS and expect this identity of the node
            metadata["protocols"] = "http/1.1,h2,grpc"
            metadata["tls"] = "required"
            metadata["identity"] = tls.identity(ofService: name)
        }
        let node = Node(id: nodeID, address: address, metadata: metadata)
        return ServiceRecord(name: name, version: version, metadata: metadata,
                             endpoints: router.descriptions + subscriberDescriptions, nodes: [node])
    }

    /// `host:port` that callers on this machine reach the server on (once started): the bound
    /// address, `127.0.0.1` for a wildcard bind (the local registry's callers are on this
    /// machine), or `MICRO_SERVER_ADVERTISE`.
    var advertisedAddress: String? {
        guard let (host, port) = state.withLock({ $0.server.map { ($0.host, $0.port) } }) else { return nil }
        if let advertised = MicroConfig.process.frameworkEnvironment["MICRO_SERVER_ADVERTISE"], !advertised.isEmpty { return advertised }
        if ["", "::", "0.0.0.0"].contains(host) { return "127.0.0.1:\(port)" }
        return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// The address the server listens on, once started.
    public var port: Int? { state.withLock { $0.server?.port } }

    /// Binds and starts serving; returns the bound address. ``run()`` calls it.
    ///
    /// Throws ``ServiceStartError`` (one line: `NAME: cannot start: REASON`) when the address
    /// does not parse or cannot be listened on, the TLS files do not load or do not match, or a
    /// `MICRO_*` variable names nothing known.
    @discardableResult
    public func start() throws(ServiceStartError) -> (host: String, port: Int) {
        do {
            return try startServer()
        } catch {
            throw ServiceStartError(service: name, underlying: error)
        }
    }

    private func startServer() throws -> (host: String, port: Int) {
        if let server = state.withLock({ $0.server }) { return (server.host, server.port) }
        let environment = MicroConfig.process.frameworkEnvironment
        if let problem = configurationProblem ?? options.environmentProblem(environment) {
            throw ConfigurationError(key: "micro", reason: problem)
        }
        let (text, source) = ListenAddress.resolve(configured: options.address, environment: environment)
        let address = try ListenAddress(parsing: text, source: source)
        var config = options.server
        config.host = address.host
        config.port = address.port
        if let cap = environment["MICRO_SERVER_MAX_CONNECTIONS"].flatMap({ Int($0) }) {
            config.maxConnections = cap
        }
        if let problem = config.apply(environment: environment).first {
            throw ConfigurationError(key: "micro.server", reason: problem)
        }
        if let busyPoll = try ServiceOptions.busyPoll(environment).get() {
            options.eventLoopGroup.busyPoll = busyPoll
        }
        if let tls = options.tls {
            try Self.checkTLS(tls)
        }
        config.tls = options.tls
        let router = self.router
        // what the router answers without suspending it answers before the worker's async call
        let handoff = Router.RouteHandoff(loops: options.eventLoopGroup.loops.count)
        let server = try HTTPServer(group: options.eventLoopGroup, configuration: config, logger: options.logger,
                                    streamPaths: { router.isStream(path: $0) },
                                    immediate: { request, responder in router.serveImmediately(request, responder, handoff) }) { request, responder in
            await router.serve(request, responder, routed: handoff.take(for: request))
        }
        // a weak reference: the metrics must not keep a closed server alive
        router.connectionMetrics?.source.withLock { $0 = { [weak server] in server?.stats ?? .init(openConnections: 0, accepted: 0, acceptBackoffs: 0) } }
        let startRules = state.withLock { s in
            s.server = server
            defer { s.rulesStarted = true }
            return !s.rulesStarted
        }
        if startRules, let auth = options.auth {
            // the first read of the rules begins now; calls wait for it (AuthRules.ready)
            auth.rules.start()
            if let note = options.authNote { options.logger.warning("\(note)") }
        }
        if let mounted = broker as? any MountedBroker, let address = advertisedAddress {
            mounted.attach(address: address, tlsIdentity: options.tls.map { $0.identity(ofService: name) })
        }
        let shown = address.host.isEmpty ? "[::]" : (address.host.contains(":") ? "[\(address.host)]" : address.host)
        var metadata: Logger.Metadata = server.isTLS ? ["tls": "required"] : [:]
        let busyPoll = options.eventLoopGroup.busyPoll
        if busyPoll > .zero { metadata["busyPoll"] = "\(busyPoll.saturatingNanoseconds / 1_000)µs" }
        options.logger.info("listening on \(shown):\(server.port)", metadata: metadata.isEmpty ? nil : metadata)
        return (address.host, server.port)
    }

    /// Loads the server's TLS configuration once, so that a failure says it is TLS's and which
    /// file (the server then loads it again, the same way).
    private static func checkTLS(_ tls: TLSConfig) throws(MicroError) {
        func fail(_ detail: String) -> MicroError { MicroError(id: "micro.server", code: 500, detail: "TLS: \(detail)") }
        for (what, source) in [("certificate", tls.certificate), ("private key", tls.privateKey), ("CA bundle", tls.trustRoots)] {
            guard case .file(let path)? = source else { continue }
            // as the system says it ("No such file or directory"), not Foundation's paraphrase
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            var byte: UInt8 = 0
            let failure = fd < 0 || read(fd, &byte, 1) < 0 ? errno : 0
            if fd >= 0 { close(fd) }
            if failure != 0 { throw fail("cannot read the \(what) \(path): \(String(cString: strerror(failure)))") }
        }
        do {
            _ = try TLSContext(tls, server: true)
        } catch {
            var detail = error.message
            // a certificate or key that does not parse, or a pair that does not match: name the files
            let aboutTheFiles = ["the private key", "cannot read the certificate", "cannot read the private key", "cannot use the certificate"]
                .contains { detail.hasPrefix($0) }
            if aboutTheFiles, case .file(let certificate)? = tls.certificate, case .file(let key)? = tls.privateKey {
                detail += " (certificate \(certificate), key \(key))"
            }
            throw fail(detail)
        }
    }

    /// Reloads the server's certificate, key and trust roots (from `config`, or the files of the
    /// service's configuration again) for new connections; connections already open keep theirs.
    /// Also used by the service's own client for its next connections. `run()` calls it on SIGHUP.
    public func reloadTLS(_ config: TLSConfig? = nil) throws {
        guard let config = config ?? options.tls, let server = state.withLock({ $0.server }) else {
            throw ConfigurationError(key: "micro.tls", reason: "the service does not serve TLS")
        }
        try server.reloadTLS(config)
        try client.reloadTLS(config)
        options.logger.info("TLS configuration reloaded")
    }

    /// A watch on the TLS files, when the configuration has files and asks for it.
    private func watchTLSFiles() -> FileWatcher? {
        guard options.reloadTLSOnFileChange, let tls = options.tls else { return nil }
        let paths = [tls.certificate, tls.privateKey, tls.trustRoots].compactMap { source -> String? in
            if case .file(let path)? = source { return path }
            return nil
        }
        guard !paths.isEmpty else { return nil }
        do {
            return try FileWatcher(paths: paths) { [weak self] in
                guard let self else { return }
                do {
                    try self.reloadTLS()
                } catch {
                    // e.g. a new key beside the old certificate: the next write completes it
                    self.options.logger.warning("TLS files changed but do not load yet: \(error)")
                }
            }
        } catch {
            options.logger.warning("cannot watch the TLS files (SIGHUP still reloads): \(error)")
            return nil
        }
    }

    /// Asks a running service to stop: it stops accepting, lets requests in flight finish
    /// (at most `drainTimeout`), and `run()` returns. Any thread; idempotent.
    public func stop() {
        let (waiter, server) = state.withLock { state -> (CheckedContinuation<Void, Never>?, HTTPServer?) in
            state.stopRequested = true
            defer { state.stopWaiter = nil }
            // not inside run(): nobody else will shut the server down
            return (state.stopWaiter, state.running ? nil : state.server)
        }
        stopRules()
        waiter?.resume()
        server?.shutdown()
    }

    /// Stops reading the auth rules, if ``start()`` started it (once however often it is called).
    private func stopRules() {
        let started = state.withLock { s in
            defer { s.rulesStarted = false }
            return s.rulesStarted
        }
        if started { options.auth?.rules.stop() }
    }

    /// Stops a service started with ``start()``: stops accepting, lets requests in flight finish
    /// (at most `drainTimeout`, then closes what is left) and returns when all is closed.
    public func shutdown() async {
        stopRules()
        guard let server = state.withLock({ $0.server }) else { return }
        await server.shutdownGracefully(timeout: options.drainTimeout)
        state.withLock { $0.server = nil }
    }

    /// Serves until SIGINT or SIGTERM (or ``stop()``, task cancellation, or a
    /// swift-service-lifecycle graceful shutdown), then drains and returns.
    ///
    /// A service that cannot start (see ``start()``) writes one line,
    /// `NAME: cannot start: REASON`, to stderr and exits the process with status 1 — or, with
    /// ``ServiceOptions/exitOnStartFailure`` off (the default when ``ServiceOptions/handleSignals``
    /// is off), throws the ``ServiceStartError``.
    public func run() async throws {
        // Trap the signals before announcing readiness: a SIGTERM right after "listening on"
        // must drain, not kill.
        let signals = options.handleSignals ? await UnixSignalsSequence(trapping: .sigterm, .sigint, .sighup) : nil
        do {
            try start()
        } catch {
            guard options.exitOnStartFailure else { throw error }
            error.exitProcess()
        }
        let server = state.withLock { state in
            state.running = true
            return state.server!
        }
        defer { state.withLock { $0.running = false } }
        // the process tracer's exporter runs while a service does; the last to stop flushes it
        Tracers.serviceStarted()
        if options.register, let record {
            do {
                try await registry.register(record, ttl: options.registerTTL)
                healthChecks.registrationSucceeded()
                options.logger.info("registered node \(nodeID) at \(record.nodes[0].address)")
            } catch {
                options.logger.error("cannot register: \(error)")
            }
        }
        let (subscriptions, unsubscribed) = await subscribeAll()
        let lateSubscriptions = SubscriptionList()
        let watcher = watchTLSFiles()
        defer { watcher?.stop() }
        do {
            try configuration.follow()
        } catch {
            options.logger.warning("cannot follow the configuration file: \(error)")
        }
        defer { configuration.stop() }
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                if !unsubscribed.isEmpty {
                    group.addTask { await self.subscribeLater(unsubscribed, into: lateSubscriptions) }
                }
                if options.register, let record {
                    // the heartbeat: a node that stops refreshing expires after its TTL
                    group.addTask {
                        while (try? await Task.sleep(for: self.options.registerInterval)) != nil {
                            do {
                                try await self.registry.register(record, ttl: self.options.registerTTL)
                                self.healthChecks.registrationSucceeded()
                            } catch {
                                self.options.logger.warning("cannot refresh the registration: \(error)")
                            }
                        }
                    }
                }
                if let signals {
                    group.addTask {
                        for await signal in signals {
                            if signal == .sighup {
                                // re-read the certificate files (a rotation), keep serving
                                do {
                                    try self.reloadTLS()
                                } catch {
                                    self.options.logger.error("cannot reload TLS: \(error)")
                                }
                                continue
                            }
                            self.options.logger.info("received \(signal), shutting down")
                            self.stop()
                            return
                        }
                    }
                }
                await withTaskCancellationHandler {
                    await self.waitForStop()
                } onCancel: {
                    self.stop()
                }
                group.cancelAll()
            }
            health.setServing(false)
            for subscription in subscriptions + lateSubscriptions.all() { await subscription.unsubscribe() }
            // leave the registry first, so that callers stop choosing this node while it drains
            if options.register, let record {
                do {
                    try await registry.deregister(record)
                    options.logger.info("deregistered node \(nodeID)")
                } catch {
                    options.logger.warning("cannot deregister: \(error)")
                }
            }
            health.closeWatches()  // watchers have seen NOT_SERVING; their streams end so the drain can
            await server.shutdownGracefully(timeout: options.drainTimeout)
            await Tracers.serviceStopped()
            options.logger.info("stopped")
        } onGracefulShutdown: {
            self.stop()
        }
        state.withLock { $0.server = nil }
    }

    private func waitForStop() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let stopNow = state.withLock { state in
                if state.stopRequested { return true }
                state.stopWaiter = continuation
                return false
            }
            if stopNow { continuation.resume() }
        }
    }
}

extension Service: ServiceLifecycle.Service {}
