import ArgumentParser
import Foundation
import Logging
import Micro
import UnixSignals

struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Serve the services over plain HTTP and JSON, with the dashboard (until SIGINT/SIGTERM).",
        discussion: """
            POST /api/SERVICE/Endpoint.Method with a JSON body calls the service by name; the answer's JSON comes back, \
            or the error's JSON with its code as the status. GET /services and /services/NAME show the registry; \
            server streams, registry changes and topics come as server-sent events. The dashboard is at /.
            """)

    @Option(help: "Where to listen, HOST:PORT.") var address = ":8080"
    @Option(help: "Serve HTTPS with this certificate chain (PEM); needs --tls-key.") var tlsCert: String?
    @Option(help: "The private key of --tls-cert (PEM).") var tlsKey: String?
    @Option(name: .customLong("allow-origin"), help: "An origin whose pages may call the gateway (CORS), repeatable; * any (the default), none for none.")
    var allowOrigins: [String] = []
    @Option(help: "The largest request body taken, in bytes.") var maxBodyBytes = 1 << 20
    @Option(help: "Seconds each call may take, retries included.") var timeout: Double = 5
    @Option(help: "Seconds GET /stats/NAME waits for each node's health and stats.") var statsTimeout: Double = 2
    @Flag(help: "Do not serve the dashboard.") var noDashboard = false

    func validate() throws {
        guard (tlsCert == nil) == (tlsKey == nil) else { throw ValidationError("--tls-cert and --tls-key go together") }
        guard maxBodyBytes >= 0 else { throw ValidationError("--max-body-bytes cannot be negative") }
        _ = try secondsOption(timeout, option: "timeout")
        _ = try secondsOption(statsTimeout, option: "stats-timeout")
    }

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        var logger = Logger(label: "micro.gateway")
        logger.logLevel = .warning
        var options = Gateway.Options(address: address, maxBodyBytes: maxBodyBytes, callTimeout: try secondsOption(timeout, option: "timeout"),
                                      dashboard: !noDashboard, statsTimeout: try secondsOption(statsTimeout, option: "stats-timeout"))
        if !allowOrigins.isEmpty { options.allowedOrigins = allowOrigins == ["none"] ? [] : allowOrigins }
        if let tlsCert, let tlsKey {
            // browsers and scripts: no client certificate asked, TLS 1.2 and later
            options.tls = TLSConfig(certificate: .file(tlsCert), privateKey: .file(tlsKey), clientAuth: .none, minimumVersion: .tls12)
        }
        let gateway: Gateway
        let subscriber: any Broker
        do {
            if let problem = Registries.environmentError() { throw Failure(problem) }
            if let problem = Brokers.environmentError() { throw Failure(problem) }
            let client = try Client(config: .process, logger: logger)
            // topics are watched through a broker that can receive: the HTTP broker with a
            // listener of its own (as `micro subscribe`), or the one MICRO_BROKER names
            let environment = MicroConfig.process.frameworkEnvironment
            let http = (environment["MICRO_BROKER"] ?? "").isEmpty || environment["MICRO_BROKER"]?.lowercased() == "http"
            subscriber = http ? HTTPBroker(policy: .fromEnvironment(), logger: logger)
                : try Brokers.plugins.make(PluginContext(environment: environment, logger: logger))
            gateway = Gateway(client: client, subscriber: subscriber, options: options, logger: logger)
            let (host, port) = try gateway.start()
            let shown = host.isEmpty ? "[::]" : (host.contains(":") ? "[\(host)]" : host)
            FileHandle.standardError.write(Data("gateway\(options.tls == nil ? "" : " (TLS)") listening on \(shown):\(port)\n".utf8))
        } catch {
            FileHandle.standardError.write(Data("\(ServiceStartError(service: "micro gateway", underlying: error))\n".utf8))
            throw ExitCode(1)
        }
        for await _ in signals { break }
        await gateway.shutdown()
        await subscriber.disconnect()
    }
}
