import Foundation
import Micro
import MicroTestSupport
import Synchronization
import Testing

/// go-micro v6's HTTP health endpoints on every service's port, read with curl.
@Suite struct HealthEndpointTests {
    /// A memory registry that refuses registrations while told to (an unreachable registry).
    final class Unreachable: Registry {
        let inner = MemoryRegistry()
        let failing = Mutex(false)
        let attempts = Mutex(0)

        func register(_ service: ServiceRecord, ttl: Duration) async throws {
            attempts.withLock { $0 += 1 }
            if failing.withLock({ $0 }) { throw MicroError(id: "registry", code: 503, detail: "the registry is unreachable") }
            try await inner.register(service, ttl: ttl)
        }
        func deregister(_ service: ServiceRecord) async throws { try await inner.deregister(service) }
        func getService(_ name: String) async throws -> [ServiceRecord] { try await inner.getService(name) }
        func listServices() async throws -> [ServiceRecord] { try await inner.listServices() }
        func watch(service: String?, _ handler: @escaping @Sendable (RegistryEvent) -> Void) throws -> RegistryWatch {
            try inner.watch(service: service, handler)
        }
    }

    struct Answer: Decodable {
        struct Check: Decodable {
            var name: String
            var status: String
            var error: String?
        }
        var status: String
        var checks: [Check]?
        var info: [String: String]?
    }

    static func get(_ port: Int, _ path: String) async throws -> (status: Int, answer: Answer?) {
        let result = try await Tool.run("curl", ["-sS", "-w", "\n%{http_code}", "http://127.0.0.1:\(port)\(path)"])
        let lines = result.stdout.split(separator: "\n")
        let status = lines.last.flatMap { Int($0) } ?? -1
        let body = lines.dropLast().joined(separator: "\n")
        return (status, try? JSONDecoder().decode(Answer.self, from: Data(body.utf8)))
    }

    @Test func checksReadinessAndARegistryThatStopsAnswering() async throws {
        let registry = Unreachable()
        let options = ServiceOptions(handleSignals: false, registry: registry, registerTTL: .seconds(5),
                                     registerInterval: .milliseconds(100))
        let service = Service(name: "healthy", version: "1.2", address: "127.0.0.1:0", options: options)
        let broken = Mutex(false)
        service.addHealthCheck("database") { if broken.withLock({ $0 }) { throw MicroError(id: "db", code: 500, detail: "no connection") } }
        service.addHealthCheck("cache", critical: false) { throw MicroError(id: "cache", code: 500, detail: "cold") }
        service.addHealthCheck("slow", critical: false, timeout: .milliseconds(50)) { try await Task.sleep(for: .seconds(600)) }
        let events = try registry.events(service: "healthy")
        let task = Task { try await service.run() }
        for await event in events where event.action == .create { break }
        let port = service.port!
        // up once registered. The registry's check is about a 5 s TTL, and a machine loaded by
        // the rest of the suite can hold the heartbeat back that long: asked again until up, for
        // at most a minute (a guard, not a measurement)
        var (status, answer) = try await Self.get(port, "/health")
        for _ in 0..<1200 where status != 200 {
            try await Task.sleep(for: .milliseconds(50))
            (status, answer) = try await Self.get(port, "/health")
        }
        #expect(try await Self.get(port, "/health/live").status == 200)
        #expect(status == 200 && answer?.status == "up", "\(String(describing: answer))")
        #expect(answer?.info == ["service": "healthy", "version": "1.2", "node": service.nodeID])
        let checks = Dictionary(uniqueKeysWithValues: (answer?.checks ?? []).map { ($0.name, $0) })
        #expect(checks["registry"]?.status == "up" && checks["database"]?.status == "up")
        #expect(checks["cache"]?.status == "down" && checks["cache"]?.error?.contains("cold") == true)  // not critical: still up
        #expect(checks["slow"]?.error == "timed out after 0.05 seconds", "\(String(describing: checks["slow"]))")
        #expect(try await Self.get(port, "/health/nothing").status == 404)

        // a critical check failing: down, and not ready
        broken.withLock { $0 = true }
        (status, answer) = try await Self.get(port, "/health/ready")
        #expect(status == 503 && answer?.status == "down")
        #expect(answer?.checks?.first { $0.name == "database" }?.error?.contains("no connection") == true)
        broken.withLock { $0 = false }

        // the registry stops answering: readiness drops once the TTL has passed without a
        // registration, and comes back by itself with the next heartbeat that succeeds
        registry.failing.withLock { $0 = true }
        while try await Self.get(port, "/health/ready").status == 200 { try await Task.sleep(for: .milliseconds(50)) }
        (status, answer) = try await Self.get(port, "/health/ready")
        #expect(status == 503 && answer?.checks?.first { $0.name == "registry" }?.error?.contains("no registration has succeeded") == true,
                "\(String(describing: answer))")
        #expect(try await Self.get(port, "/health/live").status == 200)  // alive all along
        registry.failing.withLock { $0 = false }
        while try await Self.get(port, "/health/ready").status != 200 { try await Task.sleep(for: .milliseconds(50)) }
        service.stop()
        try await task.value
    }

    /// A store that fails while told to (a database gone).
    final class FlakyStore: Store {
        let inner = MemoryStore()
        let failing = Mutex(false)
        func check() throws { if failing.withLock({ $0 }) { throw StoreError(.unavailable, "the database is gone") } }
        func read(_ key: String, _ options: ReadOptions) async throws -> [Record] { try check(); return try await inner.read(key, options) }
        func read(_ key: String, scope: StoreScope) async throws -> Record { try check(); return try await inner.read(key, scope: scope) }
        func write(_ writes: [StoreWrite], scope: StoreScope) async throws -> [UInt64] { try check(); return try await inner.write(writes, scope: scope) }
        func list(_ options: ListOptions) async throws -> [String] { try check(); return try await inner.list(options) }
        func close() async { await inner.close() }
        var name: String { "flaky" }
    }

    /// The store check and the broker check (a service with a subscription): in `/health`, and the
    /// store's failure makes the service not ready, then ready again by itself.
    @Test func storeAndBrokerChecks() async throws {
        let store = FlakyStore()
        let broker = InterceptorTests.ObservedBroker()
        let options = ServiceOptions(handleSignals: false, registry: MemoryRegistry(), register: false, broker: broker)
        let service = Service(name: "stored", address: "127.0.0.1:0", options: options)
        service.addHealthCheck(store: store)
        service.subscribe("stored-events") { (_: [String: String], _: Context) async throws in }
        let port = try service.start().port
        let task = Task { try await service.run() }
        // the broker check is added when the subscriptions are made
        for await topic in broker.subscribed where topic == "stored-events" { break }
        let answer = try await Self.get(port, "/health").answer
        #expect(answer?.status == "up")
        #expect(Set(answer?.checks?.map(\.name) ?? []) == ["store", "broker"], "\(String(describing: answer))")
        store.failing.withLock { $0 = true }
        let (status, down) = try await Self.get(port, "/health/ready")
        #expect(status == 503)
        #expect(down?.checks?.first { $0.name == "store" }?.error?.contains("the database is gone") == true, "\(String(describing: down))")
        store.failing.withLock { $0 = false }
        #expect(try await Self.get(port, "/health/ready").status == 200)
        service.stop()
        try await task.value
    }
}
