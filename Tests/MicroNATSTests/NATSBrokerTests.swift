import Foundation
import Logging
import Micro
import MicroCore
import MicroNATS
import MicroTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// go-micro's NATS broker: services and clients of this framework, the `micro` tool and a Go
/// program on nats.go exchanging events through real nats-server processes.
@Suite struct NATSBrokerTests {
    struct Greeting: Codable, Sendable, Equatable {
        var name: String
    }

    /// What handlers received, awaited as events.
    final class Inbox: Sendable {
        let stream: AsyncStream<String>
        let tell: AsyncStream<String>.Continuation
        init() { (stream, tell) = AsyncStream.makeStream() }

        /// The next `count` items (the test fails, not hangs, if they do not come).
        func next(_ count: Int) async throws -> [String] {
            try await NATSClientTests.withHangGuard { [stream] in
                var items: [String] = []
                for await item in stream {
                    items.append(item)
                    if items.count == count { break }
                }
                return items
            }
        }
    }

    /// A logger whose messages are also awaited as events.
    struct Lines: LogHandler {
        let tell: AsyncStream<String>.Continuation
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String, function: String, line: UInt) {
            tell.yield(message.description)
        }
    }

    /// A logger, and its lines as they come.
    static func logged() -> (Logger, Inbox) {
        let lines = Inbox()
        return (Logger(label: "test") { _ in Lines(tell: lines.tell) }, lines)
    }

    /// Waits for a line containing `text`.
    static func line(_ text: String, in lines: Inbox) async throws {
        _ = try await NATSClientTests.withHangGuard { [stream = lines.stream] in
            for await line in stream where line.contains(text) { return line }
            throw ChildError("no line with '\(text)'")
        }
    }

    static func broker(_ servers: NATSServers) -> NATSBroker {
        NATSBroker(options: NATSClientTests.options(servers.urls), eventLoopGroup: NATSClientTests.group)
    }

    @Test func servicesAndClientsExchangeEventsWithQueueGroups() async throws {
        let servers = try await NATSServers()
        defer { Task { await servers.shutdown() } }
        let inbox = Inbox(), workers = Inbox()
        var services: [Service] = []
        let (logger, lines) = Self.logged()
        for (i, queue) in [(0, nil), (1, "workers"), (2, "workers")] as [(Int, String?)] {
            var options = ServiceOptions(handleSignals: false, registry: MemoryRegistry(), register: false, broker: Self.broker(servers))
            options.logger = logger
            let service = Service(name: "listener-\(i)", address: "127.0.0.1:0", options: options)
            service.subscribe("greetings", queue: queue) { (greeting: Greeting, context: Context) async throws in
                if queue == nil { inbox.tell.yield(greeting.name) } else { workers.tell.yield("\(i):\(greeting.name)") }
            }
            services.append(service)
        }
        var runs: [Task<Void, any Error>] = []
        for service in services {
            try service.start()
            runs.append(Task { try await service.run() })
        }
        // each says when its subscription is made (the server has it: a flush answered)
        for _ in services { try await Self.line("subscribed to greetings", in: lines) }
        let broker = Self.broker(servers)
        let client = Client(registry: MemoryRegistry(), broker: broker)
        for n in 0..<20 { try await client.publish("greetings", Greeting(name: "g\(n)")) }
        #expect(try await inbox.next(20) == (0..<20).map { "g\($0)" }, "every message, in order")
        let shared = try await workers.next(20)
        #expect(Set(shared.map { String($0.split(separator: ":")[1]) }) == Set((0..<20).map { "g\($0)" }), "each once in the group")
        for service in services { service.stop() }
        for run in runs { try await run.value }
        await broker.disconnect()
    }

    /// A Go program on nats.go, as go-micro's broker does it: it receives what Swift publishes and
    /// publishes what a Swift subscriber decodes.
    @Test func goMicroShapedMessagesBothWays() async throws {
        let peer = try await GoPeer.build("nats_gomicro_peer", packages: "golang-github-nats-io-go-nats-dev")
        defer { try? FileManager.default.removeItem(at: peer.directory) }
        let servers = try await NATSServers()
        defer { Task { await servers.shutdown() } }
        let broker = Self.broker(servers)

        let go = try LineProcess([peer.binary, "-servers", servers.address, "subscribe", "-topic", "swift.to.go", "-count", "1"])
        defer { go.stop() }
        #expect(await go.waitForLine(containing: "subscribed") != nil)
        try await broker.publish("swift.to.go", BrokerMessage(header: ["Source": "swift"], body: Array("hello go".utf8)))
        let line = try #require(await go.waitForLine(containing: "message swift.to.go"))
        #expect(line.hasSuffix(" hello go"), "\(line)")
        #expect(line.contains(#""Source":"swift""#) && line.contains(#""Micro-Topic":"swift.to.go""#), "\(line)")

        let inbox = Inbox()
        let subscription = try await broker.subscribe("go.to.swift", queue: nil) { event in
            inbox.tell.yield("\(event.message.header["Source"] ?? "-") \(String(decoding: event.message.body, as: UTF8.self))")
        }
        let published = try await Tool.run(peer.binary, ["-servers", servers.address, "publish", "-topic", "go.to.swift",
                                                          "-body", "hello swift", "-header", "Source=go"])
        #expect(published.status == 0, "\(published.stderr)")
        #expect(try await inbox.next(1) == ["go hello swift"])
        // a plain NATS payload (not go-micro's JSON) arrives as it came
        let nats = try await NATSClientTests.connect(servers.urls)
        try await nats.publish("go.to.swift", payload: Array("raw bytes".utf8))
        try await nats.flush(timeout: .hangGuard)
        #expect(try await inbox.next(1) == ["- raw bytes"])
        await nats.close()
        await subscription.unsubscribe()
        await broker.disconnect()
    }

    /// `micro subscribe` and `micro publish` with MICRO_BROKER=nats: unchanged commands.
    @Test func theMicroToolPublishesAndSubscribesOverNATS() async throws {
        let servers = try await NATSServers()
        defer { Task { await servers.shutdown() } }
        let env = ["MICRO_BROKER": "nats", "MICRO_BROKER_ADDRESS": servers.address]
        let micro = Tool.binDirectory.appendingPathComponent("micro").path
        var environment = ProcessInfo.processInfo.environment
        for (k, v) in env { environment[k] = v }
        let subscriber = try LineProcess([micro, "subscribe", "tool.events"], environment: environment)
        defer { subscriber.stop() }
        #expect(await subscriber.waitForLine(containing: "subscribed to tool.events") != nil)
        let published = try await Tool.run(micro, ["publish", "tool.events", #"{"name":"from the tool"}"#], environment: env)
        #expect(published.status == 0, "\(published.stderr)")
        #expect(await subscriber.waitForLine(containing: #"{"name":"from the tool"}"#) != nil)
        // a broker address that is no NATS URL: one line, exit 1
        let refused = try await Tool.run(micro, ["subscribe", "tool.events"], environment: ["MICRO_BROKER": "nats", "MICRO_BROKER_ADDRESS": "http://x:1"])
        #expect(refused.status == 1 && refused.stderr.contains("not a NATS server URL"), "\(refused.stderr)")
    }

    /// A service whose NATS server is down when it starts subscribes once the server is back,
    /// and is not ready until then.
    @Test func aServiceWhoseBrokerIsDownSubscribesWhenItComes() async throws {
        let servers = try await NATSServers()
        defer { Task { await servers.shutdown() } }
        await servers.kill9(0)
        let inbox = Inbox()
        let (logger, lines) = Self.logged()
        var options = ServiceOptions(handleSignals: false, registry: MemoryRegistry(), register: false, broker: Self.broker(servers))
        options.logger = logger
        let service = Service(name: "patient", address: "127.0.0.1:0", options: options)
        service.subscribe("late") { (greeting: Greeting, _: Context) async throws in inbox.tell.yield(greeting.name) }
        try service.start()
        let run = Task { try await service.run() }
        try await Self.line("cannot subscribe to late yet", in: lines)
        // not ready: its broker cannot deliver
        let status = try await Tool.run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(service.port!)/health/ready"])
        #expect(status.stdout == "503")
        try servers.start(0)
        try await servers.waitUntilReady(0)
        try await Self.line("subscribed to late", in: lines)
        let ready = try await Tool.run("curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(service.port!)/health/ready"])
        #expect(ready.stdout == "200")
        let broker = Self.broker(servers)
        try await Client(registry: MemoryRegistry(), broker: broker).publish("late", Greeting(name: "finally"))
        #expect(try await inbox.next(1) == ["finally"])
        service.stop()
        try await run.value
        await broker.disconnect()
    }

}
