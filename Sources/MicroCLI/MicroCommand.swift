import ArgumentParser
import Foundation
import Logging
import Micro
import MicroEtcd
import MicroPostgres
import MicroNATS
import MicroSQLite
import UnixSignals

/// `micro`: the command line of swift-micro. Talks to services through the registry.
@main
struct MicroCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "micro",
        abstract: "Find, describe and call swift-micro (and go-micro) services.",
        discussion: "The registry is the embedded default (a directory on this machine) unless MICRO_REGISTRY / MICRO_REGISTRY_ADDRESS say otherwise.",
        subcommands: [
            Services.self, Describe.self, Call.self, Stream.self, Watch.self, Publish.self, Subscribe.self, Bench.self,
            StreamBench.self, EtcdBench.self, NATSBench.self, Lock.self, Elect.self, StoreCommand.self, StoreBench.self, Certs.self, Config.self, AuthCommand.self, Stats.self, Logs.self, GatewayCommand.self, New.self, RunCommand.self,
        ]
    )

    /// Knows the registries of the plugin products it links (`MICRO_REGISTRY=etcd`) before
    /// anything makes the registry.
    static func main() async {
        MicroEtcd.install()
        MicroSQLite.install()
        MicroPostgres.install()
        MicroNATS.install()
        await main(nil)
    }
}

struct Services: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the services that have a live node.")

    func run() async throws {
        let services = try await processRegistry().listServices()
        for name in Set(services.map(\.name)).sorted() {
            let versions = services.filter { $0.name == name }
            let nodes = versions.reduce(0) { $0 + $1.nodes.count }
            print("\(name)\t\(versions.map(\.version).joined(separator: ","))\t\(nodes) node\(nodes == 1 ? "" : "s")")
        }
    }
}

struct Describe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a service: its nodes and its endpoints with their request and response shapes (JSON).")

    @Argument(help: "The service name.") var service: String

    func run() async throws {
        let records = try await processRegistry().getService(service)
        guard !records.isEmpty else { throw Failure("service \(service) not found") }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        print(String(decoding: try encoder.encode(records), as: UTF8.self))
    }
}

struct Watch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the registry's changes (a node appears, changes or leaves) as JSON lines until interrupted.")

    @Argument(help: "Only this service.") var service: String?

    struct Line: Encodable {
        var action: String
        var service: ServiceRecord
    }

    func run() async throws {
        let events = try processRegistry().events(service: service)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await event in events {
                    // one line per event, written at once (a pipe reader sees it immediately)
                    var line = (try? encoder.encode(Line(action: event.action.rawValue, service: event.service))) ?? Data()
                    line.append(10)
                    FileHandle.standardOutput.write(line)
                }
            }
            group.addTask { for await _ in signals { return } }
            await group.next()
            group.cancelAll()
        }
    }
}

struct Call: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Call an endpoint with a JSON request and print the JSON answer.")

    @Argument(help: "The service name.") var service: String
    @Argument(help: "The endpoint, e.g. Helloworld.Greeting.") var endpoint: String
    @Argument(help: "The request as JSON.") var request: String = "{}"
    @Option(help: "Seconds to wait for the answer, retries included.") var timeout: Double = 5
    @Option(help: "Call this host:port directly instead of looking the service up (https:// or tls:// for TLS; http:// plaintext HTTP/1.1, h2c:// or no scheme plaintext HTTP/2).") var address: String?
    @Option(name: .customLong("metadata"), help: "A request header, key=value (repeatable).") var metadata: [String] = []
    @Option(help: "An access token, sent as Authorization: Bearer TOKEN (default: MICRO_AUTH_TOKEN).") var token: String?

    func run() async throws {
        var options = CallOptions(timeout: try secondsOption(timeout, option: "timeout"), address: address)
        options.metadata = try keyValues(metadata, what: "metadata")
        if let token { options.metadata["Authorization"] = "Bearer \(token)" }
        var logger = Logger(label: "micro")
        logger.logLevel = .error
        let client = try makeClient(options: options, logger: logger)
        do {
            let response = try await client.call(service, endpoint, body: Array(request.utf8))
            // one line per answer: go-micro's JSON codec ends its answers with a newline already
            print(String(decoding: response.body, as: UTF8.self), terminator: response.body.last == UInt8(ascii: "\n") ? "" : "\n")
        } catch let error as MicroError {
            FileHandle.standardError.write(Data((error.json + "\n").utf8))
            throw ExitCode(1)
        }
    }
}

struct Stream: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Open a stream to an endpoint: JSON lines from stdin are the requests, each answer is printed as a JSON line.",
        discussion: "The requests end with stdin. Works for server, client and bidirectional streams (over HTTP/2, the micro protocol).")

    @Argument(help: "The service name.") var service: String
    @Argument(help: "The endpoint, e.g. Counter.Echo.") var endpoint: String
    @Option(help: "Seconds the whole stream may last (default: no limit).") var timeout: Double?
    @Option(help: "Call this host:port directly instead of looking the service up (https:// or tls:// for TLS; http:// plaintext HTTP/1.1, h2c:// or no scheme plaintext HTTP/2).") var address: String?
    @Option(name: .customLong("metadata"), help: "A request header, key=value (repeatable).") var metadata: [String] = []
    @Option(help: "An access token, sent as Authorization: Bearer TOKEN (default: MICRO_AUTH_TOKEN).") var token: String?

    func run() async throws {
        var options = CallOptions(address: address, streamTimeout: timeout.map { .milliseconds(Int($0 * 1000)) })
        options.metadata = try keyValues(metadata, what: "metadata")
        if let token { options.metadata["Authorization"] = "Bearer \(token)" }
        var logger = Logger(label: "micro")
        logger.logLevel = .error
        let client = try makeClient(options: options, logger: logger)
        let (lines, taken) = Self.stdinLines()
        do {
            try await client.rawStream(service, endpoint) { call in
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for await line in lines {
                            taken.signal()
                            if !line.allSatisfy(\.isWhitespace) { try await call.send(Array(line.utf8)) }
                        }
                        call.closeSend()
                    }
                    for try await answer in call.responses {
                        FileHandle.standardOutput.write(Data(answer + [10]))
                    }
                    group.cancelAll()  // the server ended the stream: stdin no longer matters
                }
            }
        } catch let error as MicroError {
            FileHandle.standardError.write(Data((error.json + "\n").utf8))
            throw ExitCode(1)
        }
    }

    /// stdin's lines, read on a thread of their own (reads block), at most 64 ahead of the
    /// consumer, who signals `taken` for each line it takes: a large input is never all in memory.
    static func stdinLines() -> (AsyncStream<String>, DispatchSemaphore) {
        let (stream, continuation) = AsyncStream<String>.makeStream()
        // created at 0 and raised: libdispatch traps when a semaphore dies below its initial value
        let taken = DispatchSemaphore(value: 0)
        for _ in 0..<64 { taken.signal() }
        Thread.detachNewThread {
            while true {
                taken.wait()
                guard let line = readLine(strippingNewline: true) else { break }
                continuation.yield(line)
            }
            continuation.finish()
        }
        return (stream, taken)
    }
}

struct Publish: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish a JSON message to a topic and wait until every subscriber group has it.")

    @Argument(help: "The topic.") var topic: String
    @Argument(help: "The message as JSON.") var message: String
    @Option(name: .customLong("metadata"), help: "A message header, key=value (repeatable).") var metadata: [String] = []
    @Option(help: "An access token, sent as Authorization: Bearer TOKEN (default: MICRO_AUTH_TOKEN).") var token: String?

    func run() async throws {
        var headers = try keyValues(metadata, what: "metadata")
        if let token { headers["Authorization"] = "Bearer \(token)" }
        var logger = Logger(label: "micro")
        logger.logLevel = .error
        let client = try makeClient(logger: logger)
        do {
            // the process exits right after: wait for delivery, or nothing would be retried
            try await client.publish(topic, body: Array(message.utf8), options: .init(wait: .delivered), metadata: headers)
        } catch let error as MicroError {
            FileHandle.standardError.write(Data((error.json + "\n").utf8))
            throw ExitCode(1)
        }
    }
}

struct Subscribe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Subscribe to a topic and print each message body as one line (until SIGINT/SIGTERM).")

    @Argument(help: "The topic.") var topic: String
    @Option(help: "Share the messages with other subscribers of this queue group.") var queue: String?

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        var logger = Logger(label: "micro")
        logger.logLevel = .warning
        // the HTTP broker: a listener of its own and a registration; another (MICRO_BROKER=nats):
        // the process's broker as MICRO_BROKER_* configure it
        let environment = MicroConfig.process.frameworkEnvironment
        let http = (environment["MICRO_BROKER"] ?? "").isEmpty || environment["MICRO_BROKER"]?.lowercased() == "http"
        let out = FileHandle.standardOutput
        let subscription: BrokerSubscription
        let broker: any Broker
        do {
            // what cannot be had is said in one line
            if let problem = Registries.environmentError() { throw Failure(problem) }
            if let problem = Brokers.environmentError() { throw Failure(problem) }
            broker = http ? HTTPBroker(policy: .fromEnvironment(), logger: logger)
                : try Brokers.plugins.make(PluginContext(environment: environment, logger: logger))
            subscription = try await broker.subscribe(topic, queue: queue) { event in
                // one line per message, written at once (a pipe reader sees it immediately)
                var line = event.message.body.filter { $0 != 10 && $0 != 13 }
                line.append(10)
                out.write(Data(line))
            }
        } catch {
            FileHandle.standardError.write(Data("\(ServiceStartError(service: "micro subscribe", underlying: error))\n".utf8))
            throw ExitCode(1)
        }
        let listening = (broker as? HTTPBroker).map { "listening on \($0.address ?? "?")\n" } ?? ""
        FileHandle.standardError.write(Data("\(listening)subscribed to \(topic)\n".utf8))
        for await _ in signals { break }
        await subscription.unsubscribe()
        await broker.disconnect()
    }
}

/// A client with the process's settings (its TLS among them); one that cannot be had is said in
/// one line, and the tool exits 1.
func makeClient(registry: (any Registry)? = nil, options: CallOptions = .init(), eventLoopGroup: EventLoopGroup = .shared,
                logger: Logger) throws -> Client {
    do {
        let registry = try registry ?? processRegistry()
        return try Client(config: .process, registry: registry, options: options, eventLoopGroup: eventLoopGroup, logger: logger)
    } catch {
        FileHandle.standardError.write(Data("micro: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

/// `key=value` options (repeatable) as a dictionary; the last one of a key wins.
/// Option `--NAME`'s `value` seconds as a duration: a finite number above 0 (at least `least`)
/// and at most ten years, else a clear error (a conversion of `inf`, `nan` or `1e300` to whole
/// milliseconds used to trap).
func secondsOption(_ value: Double, option name: String, atLeast least: Double = 0) throws -> Duration {
    guard value.isFinite, value > 0, value >= least, value <= 10 * 365 * 86400 else {
        throw ValidationError(least == 0
            ? "--\(name) must be a number of seconds above 0 and at most ten years, not \(value)"
            : "--\(name) must be at least \(String(format: "%g", least)) and at most ten years (seconds), not \(value)")
    }
    return .nanoseconds(Int64(value * 1e9))
}

func keyValues(_ pairs: [String], what: String) throws -> [String: String] {
    var out: [String: String] = [:]
    for pair in pairs {
        let parts = pair.split(separator: "=", maxSplits: 1)
        guard parts.count == 2 else { throw ValidationError("\(what) must be key=value, got '\(pair)'") }
        out[String(parts[0])] = String(parts[1])
    }
    return out
}

/// The process's registry; settings that cannot make it (`MICRO_REGISTRY=etcd` with an endpoint
/// that does not parse, a bad `MICRO_MDNS_TIMEOUT`) are said in one line, rather than the local
/// registry answering in its place.
func processRegistry() throws -> any Registry {
    if let problem = Registries.environmentError() { throw Failure(problem) }
    return Registries.default
}

struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
