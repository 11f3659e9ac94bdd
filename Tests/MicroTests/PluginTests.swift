import Foundation
import Micro
import MicroCore
import MicroTestSupport
import Synchronization
import Testing

/// Plugin points: named factory tables a plugin product adds itself to, and brokers that
/// receive on the service's own port through a protocol (not one concrete type).
@Suite struct PluginTests {
    /// A registry from "another target": a memory registry under its own name.
    final class FakeRegistry: Registry {
        let inner = MemoryRegistry()
        func register(_ service: ServiceRecord, ttl: Duration) async throws { try await inner.register(service, ttl: ttl) }
        func deregister(_ service: ServiceRecord) async throws { try await inner.deregister(service) }
        func getService(_ name: String) async throws -> [ServiceRecord] { try await inner.getService(name) }
        func listServices() async throws -> [ServiceRecord] { try await inner.listServices() }
        func watch(service: String?, _ handler: @escaping @Sendable (RegistryEvent) -> Void) throws -> RegistryWatch {
            try inner.watch(service: service, handler)
        }
    }

    @Test func aRegisteredPluginIsChosenByName() throws {
        let made = Mutex(0)
        Registries.plugins.register("Fake") { _ in
            made.withLock { $0 += 1 }
            return FakeRegistry()
        }
        #expect(Registries.plugins.names.contains("fake"))
        #expect(Registries.plugins.problem(["MICRO_REGISTRY": "FAKE"]) == nil)  // names are case-insensitive
        let registry = try Registries.plugins.make(PluginContext(environment: ["MICRO_REGISTRY": "fake"]))
        #expect(registry is FakeRegistry)
        #expect(made.withLock { $0 } == 1)
        // the default when nothing is named
        #expect(try Registries.plugins.make(PluginContext(environment: [:])) is LocalRegistry)
    }

    @Test func anUnknownNameSaysWhichNamesAreKnown() throws {
        let problem = Brokers.plugins.problem(["MICRO_BROKER": "kafka"])
        #expect(problem?.hasPrefix("MICRO_BROKER names no broker 'kafka'; known: ") == true)
        #expect(problem?.contains("http") == true && problem?.contains("memory") == true)
        #expect(throws: PluginError.self) { try Brokers.plugins.make(PluginContext(environment: ["MICRO_BROKER": "kafka"])) }
    }

    @Test func aFactoryThatFailsSaysWhich() {
        struct Unreachable: Error, CustomStringConvertible { var description: String { "no server at 127.0.0.1:1" } }
        Brokers.plugins.register("failing") { _ in throw Unreachable() }
        #expect(throws: PluginError.self) {
            try Brokers.plugins.make(PluginContext(environment: ["MICRO_BROKER": "failing"]))
        }
        do {
            _ = try Brokers.plugins.make(PluginContext(environment: ["MICRO_BROKER": "failing"]))
        } catch {
            #expect(error.description == "MICRO_BROKER=failing: no server at 127.0.0.1:1")
        }
    }

    /// A broker of "another target" whose deliveries come to the service's port as
    /// `POST /?probe=TOPIC` with the message as the body.
    final class ProbeBroker: MountedBroker {
        let inner = MemoryBroker()
        let attached = Mutex<String?>(nil)
        let (subscribed, tell) = AsyncStream.makeStream(of: String.self)
        var name: String { "probe" }

        func connect() async throws {}
        func disconnect() async { await inner.disconnect() }
        func publish(_ topic: String, _ message: BrokerMessage, options: PublishOptions) async throws {
            try await inner.publish(topic, message, options: options)
        }
        func subscribe(_ topic: String, queue: String?, _ handler: @escaping @Sendable (BrokerEvent) async throws -> Void) async throws -> BrokerSubscription {
            let subscription = try await inner.subscribe(topic, queue: queue, handler)
            tell.yield(topic)
            return subscription
        }
        func isDelivery(_ request: HTTPServerRequest) -> Bool { request.path.hasPrefix("/?probe=") }
        func receive(_ request: HTTPServerRequest) async -> HTTPServerResponse {
            let topic = String(request.path.dropFirst("/?probe=".count))
            do {
                try await inner.publish(topic, BrokerMessage(header: ["Content-Type": "application/json", "Micro-Topic": topic], body: request.body),
                                        options: .init(wait: .delivered))
                return HTTPServerResponse(status: 202, headers: ["content-type": "text/plain"], body: Array("taken\n".utf8))
            } catch {
                return HTTPServerResponse(status: 500, headers: ["content-type": "text/plain"], body: Array("\(error)\n".utf8))
            }
        }
        func attach(address: String, tlsIdentity: String?) { attached.withLock { $0 = address } }
    }

    struct Order: Codable, Sendable { var n: Int }

    @Test func aMountedBrokerOfAnotherTargetReceivesOnTheServicePort() async throws {
        let broker = ProbeBroker()
        let registry = MemoryRegistry()
        let service = Service(name: "probed", address: "127.0.0.1:0",
                              options: ServiceOptions(handleSignals: false, registry: registry, registerTTL: .registrationGuard, broker: broker))
        let (got, tell) = AsyncStream.makeStream(of: Int.self)
        service.subscribe("orders") { (order: Order, _: Context) in tell.yield(order.n) }
        let task = Task { try await service.run() }
        for await topic in broker.subscribed where topic == "orders" { break }
        #expect(broker.attached.withLock { $0 } == "127.0.0.1:\(service.port!)")
        #expect(service.record?.nodes.first?.metadata["broker"] == "probe")
        let answer = try await Tool.run("curl", ["-sS", "-XPOST", "-d", #"{"n":7}"#, "http://127.0.0.1:\(service.port!)/?probe=orders"])
        #expect(answer.stdout == "taken\n")
        for await n in got {
            #expect(n == 7)
            break
        }
        // an ordinary call on the same port still reaches its endpoint, not the broker
        let other = try await Tool.run("curl", ["-sS", "-XPOST", "-H", "micro-endpoint: Nope.Nothing", "-d", "{}", "http://127.0.0.1:\(service.port!)/"])
        #expect(other.stdout.contains("endpoint Nope.Nothing not found"))
        service.stop()
        try await task.value
    }
}
