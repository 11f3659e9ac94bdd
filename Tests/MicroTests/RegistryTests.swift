import Foundation
import Logging
@testable import Micro
import MicroTestSupport
import Synchronization
import Testing

/// Behaviour every registry shares, run against `memory` and `local`.
@Suite struct RegistryTests {
    enum Kind: String, CaseIterable, CustomTestStringConvertible {
        case memory, local
        var testDescription: String { rawValue }
    }

    static func make(_ kind: Kind) -> any Registry {
        switch kind {
        case .memory: MemoryRegistry()
        case .local: LocalRegistry(directory: temporaryDirectory())
        }
    }

    static func temporaryDirectory() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("micro-registry-test-\(UUID().uuidString)")
    }

    static func record(_ name: String, _ id: String, version: String = "1.0", port: Int = 1) -> ServiceRecord {
        ServiceRecord(
            name: name, version: version, metadata: ["team": "core"],
            endpoints: [Endpoint(name: "Svc.Call", request: Value(name: "Req", type: "Req", values: [Value(name: "name", type: "string")]))],
            nodes: [Node(id: id, address: "127.0.0.1:\(port)", metadata: ["protocols": "h2c"])]
        )
    }

    /// Waits for the first event that `matches`.
    static func first(_ events: AsyncStream<RegistryEvent>, where matches: (RegistryEvent) -> Bool) async -> RegistryEvent? {
        for await event in events where matches(event) { return event }
        return nil
    }

    @Test(arguments: Kind.allCases) func registerGetListDeregister(kind: Kind) async throws {
        let registry = Self.make(kind)
        try await registry.register(Self.record("greeter", "greeter-1", port: 1), ttl: .seconds(60))
        try await registry.register(Self.record("greeter", "greeter-2", port: 2), ttl: .seconds(60))
        try await registry.register(Self.record("greeter", "greeter-3", version: "2.0", port: 3), ttl: .seconds(60))
        try await registry.register(Self.record("billing", "billing-1"), ttl: .seconds(60))

        let greeter = try await registry.getService("greeter")
        #expect(greeter.map(\.version).sorted() == ["1.0", "2.0"])
        let v1 = try #require(greeter.first { $0.version == "1.0" })
        #expect(v1.nodes.map(\.id) == ["greeter-1", "greeter-2"])
        #expect(v1.nodes.map(\.address) == ["127.0.0.1:1", "127.0.0.1:2"])
        #expect(v1.endpoints == Self.record("x", "x").endpoints)
        #expect(v1.metadata == ["team": "core"])
        #expect(v1.nodes[0].metadata == ["protocols": "h2c"])

        let all = try await registry.listServices()
        #expect(all.map { "\($0.name)@\($0.version)" } == ["billing@1.0", "greeter@1.0", "greeter@2.0"])

        try await registry.deregister(Self.record("greeter", "greeter-1"))
        #expect(try await registry.getService("greeter").flatMap(\.nodes).map(\.id).sorted() == ["greeter-2", "greeter-3"])
        try await registry.deregister(Self.record("greeter", "greeter-2"))
        try await registry.deregister(Self.record("greeter", "greeter-3", version: "2.0"))
        #expect(try await registry.getService("greeter").isEmpty)
        #expect(try await registry.getService("nobody").isEmpty)
        #expect(try await registry.listServices().map(\.name) == ["billing"])
    }

    @Test(arguments: Kind.allCases) func anExpiredNodeIsGoneAndWatchersAreTold(kind: Kind) async throws {
        let registry = Self.make(kind)
        let events = try registry.events(service: "greeter")
        // "short" lives long enough to be seen (a watch that reads the directory after a short
        // TTL passed would never see it: on a slow machine, that is not a failure of expiry),
        // then is registered again with 300 ms
        try await registry.register(Self.record("greeter", "short"), ttl: .seconds(60))
        try await registry.register(Self.record("greeter", "long"), ttl: .seconds(60))
        let created = await Self.first(events) { $0.action == .create && $0.service.nodes[0].id == "short" }
        #expect(created?.service.nodes[0].address == "127.0.0.1:1")
        try await registry.register(Self.record("greeter", "short"), ttl: .milliseconds(300))
        // nobody refreshes "short": the watch reports it deleted when its TTL passes, no lookup needed
        let deleted = await Self.first(events) { $0.action == .delete }
        #expect(deleted?.service.nodes.map(\.id) == ["short"])
        #expect(try await registry.getService("greeter").flatMap(\.nodes).map(\.id) == ["long"])
    }

    @Test(arguments: Kind.allCases) func watchSeesCreateUpdateDelete(kind: Kind) async throws {
        let registry = Self.make(kind)
        let events = try registry.events()
        var record = Self.record("greeter", "n1")
        try await registry.register(record, ttl: .seconds(60))
        #expect(await Self.first(events) { _ in true }?.action == .create)
        record.nodes[0].metadata["zone"] = "east"
        try await registry.register(record, ttl: .seconds(60))
        let update = await Self.first(events) { _ in true }
        #expect(update?.action == .update)
        #expect(update?.service.nodes[0].metadata["zone"] == "east")
        try await registry.register(Self.record("other", "o1"), ttl: .seconds(60))
        #expect(await Self.first(events) { _ in true }?.service.name == "other")
        try await registry.deregister(record)
        let delete = await Self.first(events) { _ in true }
        #expect(delete?.action == .delete)
        #expect(delete?.service.nodes[0].id == "n1")
    }

    @Test(arguments: Kind.allCases) func manyRegisterAndDeregisterAtOnce(kind: Kind) async throws {
        let registry = Self.make(kind)
        // 8 writers, 40 nodes each, all of one service; every odd node leaves again
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<8 {
                group.addTask {
                    for i in 0..<40 {
                        let record = Self.record("crowd", "crowd-\(writer)-\(i)", port: writer * 100 + i)
                        try await registry.register(record, ttl: .seconds(60))
                        if i % 2 == 1 { try await registry.deregister(record) }
                    }
                }
            }
            // a reader at the same time never sees a broken record
            group.addTask {
                for _ in 0..<50 {
                    for service in try await registry.getService("crowd") {
                        #expect(service.nodes.allSatisfy { $0.id.hasPrefix("crowd-") && $0.address.hasPrefix("127.0.0.1:") })
                    }
                }
            }
            try await group.waitForAll()
        }
        let ids = try await registry.getService("crowd").flatMap(\.nodes).map(\.id)
        #expect(ids.count == 8 * 20)
        #expect(Set(ids) == Set((0..<8).flatMap { w in stride(from: 0, to: 40, by: 2).map { "crowd-\(w)-\($0)" } }))
    }

    @Test func localRegistryIgnoresFilesItCannotRead() async throws {
        let dir = Self.temporaryDirectory()
        let registry = LocalRegistry(directory: dir)
        try await registry.register(Self.record("greeter", "good"), ttl: .seconds(60))
        let serviceDir = dir.appendingPathComponent("greeter")
        try Data("{not json".utf8).write(to: serviceDir.appendingPathComponent("broken.json"))
        try Data(#"{"service":{"name":"greeter"},"expires":1e12}"#.utf8).write(to: serviceDir.appendingPathComponent("nonode.json"))
        #expect(try await registry.getService("greeter").flatMap(\.nodes).map(\.id) == ["good"])
    }

    @Test func localRegistryFileNamesAreSafe() {
        #expect(LocalRegistry.fileName("go.micro.srv.greeter", suffix: "") == "go.micro.srv.greeter")
        #expect(LocalRegistry.fileName("../etc/passwd", suffix: "") == "%2E.%2Fetc%2Fpasswd")
        #expect(LocalRegistry.fileName(".hidden") == "%2Ehidden.json")
    }

    @Test func localRegistryReportsAnUnwritableDirectory() async throws {
        let file = Self.temporaryDirectory()
        try Data().write(to: file)  // a file where the directory should be
        let registry = LocalRegistry(directory: file)
        await #expect(throws: MicroError.self) { try await registry.register(Self.record("greeter", "n"), ttl: .seconds(1)) }
        #expect(try await registry.listServices().isEmpty)
    }

    @Test func recordsUseGoMicroJSON() throws {
        let json = #"""
            {"name":"go.micro.srv.greeter","version":"latest","metadata":null,
             "endpoints":[{"name":"Say.Hello","request":{"name":"Request","type":"Request","values":[{"name":"name","type":"string","values":null}]},
                           "response":{"name":"Response","type":"Response","values":null},"metadata":{"stream":"false"}}],
             "nodes":[{"id":"go.micro.srv.greeter-1","address":"10.0.0.5:54321","metadata":{"protocol":"mucp","transport":"http"}}]}
            """#
        let record = try JSONDecoder().decode(ServiceRecord.self, from: Data(json.utf8))
        #expect(record.name == "go.micro.srv.greeter")
        #expect(record.endpoints[0].request?.values?[0] == Value(name: "name", type: "string"))
        #expect(record.nodes[0].metadata["protocol"] == "mucp")
        let back = try JSONSerialization.jsonObject(with: JSONEncoder().encode(record)) as? [String: Any]
        #expect(Set(back?.keys.map { $0 } ?? []) == ["name", "version", "metadata", "endpoints", "nodes"])
    }

    @Test func endpointShapesComeFromTheTypes() {
        struct Address: Codable { var street: String; var number: Int }
        struct Person: Codable { var name: String; var age: Int32?; var tags: [String]; var home: Address; var score: Double }
        let value = Schema.describe(Person.self, name: "Person")
        #expect(value.name == "Person")
        let fields = Dictionary(uniqueKeysWithValues: (value.values ?? []).map { ($0.name, $0) })
        #expect(fields["name"]?.type == "string")
        #expect(fields["age"]?.type == "int32")
        #expect(fields["score"]?.type == "double")
        #expect(fields["tags"]?.type == "[]string")
        #expect(fields["home"]?.values?.map(\.name) == ["street", "number"])
        #expect(fields["home"]?.values?.map(\.type) == ["string", "int64"])
    }
}

/// A client's cache of registry answers: an answer the registry gave before a change that the
/// watch reported while the lookup was still on its way is not kept (it hid a service that had
/// just registered for the cache's 30 s under load: "service back not found").
@Suite struct RegistryCacheTests {
    /// A registry whose first lookup answers what was there when it was asked, but only once
    /// the test opens the gate.
    final class StalledRegistry: Registry {
        let inner = MemoryRegistry()
        let asked: AsyncStream<Void>
        let askedContinuation: AsyncStream<Void>.Continuation
        let gate: AsyncStream<Void>
        let gateContinuation: AsyncStream<Void>.Continuation
        let stalled = Mutex(false)

        init() {
            (asked, askedContinuation) = AsyncStream.makeStream()
            (gate, gateContinuation) = AsyncStream.makeStream()
        }

        func register(_ service: ServiceRecord, ttl: Duration) async throws { try await inner.register(service, ttl: ttl) }
        func deregister(_ service: ServiceRecord) async throws { try await inner.deregister(service) }
        func listServices() async throws -> [ServiceRecord] { try await inner.listServices() }
        func watch(service: String?, _ handler: @escaping @Sendable (RegistryEvent) -> Void) throws -> RegistryWatch {
            try inner.watch(service: service, handler)
        }
        func getService(_ name: String) async throws -> [ServiceRecord] {
            let answer = try await inner.getService(name)
            if stalled.withLock({ first in defer { first = true }; return !first }) {
                askedContinuation.yield()
                for await _ in gate { break }
            }
            return answer
        }
    }

    @Test func anAnswerOlderThanAChangeIsNotKept() async throws {
        let registry = StalledRegistry()
        let cache = RegistryCache(registry: registry, logger: Logger(label: "test"))
        let record = ServiceRecord(name: "late", version: "1", nodes: [Node(id: "late-1", address: "127.0.0.1:1")])
        async let first = cache.get("late")
        for await _ in registry.asked { break }  // the registry has answered "none" ...
        try await registry.register(record, ttl: .seconds(60))  // ... and then the node came
        registry.gateContinuation.yield()
        #expect(try await first.isEmpty)  // that call gets the answer it asked for
        #expect(try await cache.get("late").first?.nodes.map(\.id) == ["late-1"])  // the next one reads again
    }
}
