import Foundation
import Micro
import MicroEtcd
import MicroTestSupport
import Synchronization
import Testing

/// The etcd registry: real helloworld processes and the `micro` tool with `MICRO_REGISTRY=etcd`
/// against real etcd members, and go-micro's layout checked with a Go program on clientv3.
@Suite struct EtcdRegistryTests {
    struct Hello: Codable, Sendable { var name: String }
    struct Answer: Codable, Sendable { var message: String }

    static let prefix = "/micro/registry/helloworld/"
    static let hangGuard = Duration.seconds(60)

    static func environment(_ cluster: EtcdCluster, address: String? = nil, ttl: Int = 15, interval: Int = 5) -> [String: String] {
        ["MICRO_REGISTRY": "etcd", "MICRO_REGISTRY_ADDRESS": address ?? cluster.address,
         "MICRO_REGISTER_TTL": "\(ttl)", "MICRO_REGISTER_INTERVAL": "\(interval)"]
    }

    static func micro(_ arguments: [String], _ environment: [String: String]) async throws -> ToolResult {
        try await Tool.run(Tool.binDirectory.appendingPathComponent("micro").path, arguments, environment: environment)
    }

    /// The next update of a watch that carries events (skipping notices of the stream's state).
    static func nextEvents(_ iterator: inout AsyncStream<EtcdWatchUpdate>.Iterator) async -> [EtcdEvent]? {
        guard case .events(let events, _) = await EtcdClientTests.next(&iterator) else { return nil }
        return events
    }

    @Test func helloworldRegistersTheGoMicroWayIsCalledByNameAndLeaves() async throws {
        let cluster = try await EtcdCluster()
        defer { cluster.stop() }
        let etcd = EtcdClient(configuration: EtcdConfiguration(endpoints: cluster.endpoints, timeout: .seconds(60)))
        defer { Task { await etcd.close() } }
        var changes = etcd.updates(.prefix(Self.prefix)).makeAsyncIterator()
        guard await EtcdClientTests.synced(&changes) != nil else { Issue.record("no watch"); return }

        let env = Self.environment(cluster, ttl: 3, interval: 1)
        let service = try await ChildService("helloworld", environment: env)
        defer { service.stop() }
        _ = await service.waitForLine(containing: "registered node")

        // go-micro's key and plain JSON of the service with its one node, on a lease
        let stored = try await etcd.get(.prefix(Self.prefix)).kvs
        try #require(stored.count == 1)
        struct GoService: Decodable {
            struct GoNode: Decodable { var id: String; var address: String; var metadata: [String: String]? }
            struct GoEndpoint: Decodable { var name: String }
            var name: String
            var version: String
            var nodes: [GoNode]
            var endpoints: [GoEndpoint]?
        }
        let value = try JSONDecoder().decode(GoService.self, from: Data(stored[0].value))
        #expect(value.name == "helloworld" && value.version == "latest" && value.nodes.count == 1)
        #expect(stored[0].keyString == Self.prefix + value.nodes[0].id)
        #expect(value.nodes[0].address == "127.0.0.1:\(service.port)")
        #expect(value.endpoints?.contains { $0.name == "Helloworld.Greeting" } == true)
        #expect(stored[0].lease != 0)

        // the tool finds it through etcd and calls it by name
        let services = try await Self.micro(["services"], env)
        #expect(services.status == 0 && services.stdout == "helloworld\tlatest\t1 node\n", "\(services.stdout)\(services.stderr)")
        let described = try await Self.micro(["describe", "helloworld"], env)
        let records = try JSONDecoder().decode([ServiceRecord].self, from: Data(described.stdout.utf8))
        #expect(records.first?.nodes.map(\.id) == [value.nodes[0].id])
        let call = try await Self.micro(["call", "helloworld", "Helloworld.Greeting", #"{"name":"etcd"}"#, "--timeout", "60"], env)
        #expect(call.status == 0 && call.stdout == #"{"message":"Hello etcd"}"# + "\n", "\(call.stderr)")

        // SIGTERM: gone from etcd by the time the process has exited (deleted, not expired)
        service.signal(SIGTERM)
        #expect(await service.waitForExit() == 0)
        #expect(try await etcd.get(.prefix(Self.prefix)).kvs.isEmpty)
        #expect(try await etcd.leaseTimeToLive(stored[0].lease) == nil)

        // kill -9: the lease expires after the TTL and the key goes with it
        let doomed = try await ChildService("helloworld", environment: env)
        defer { doomed.stop() }
        _ = await doomed.waitForLine(containing: "registered node")
        let doomedKey = try #require(try await etcd.get(.prefix(Self.prefix)).kvs.first?.keyString)
        #expect(doomedKey != stored[0].keyString)
        doomed.signal(SIGKILL)
        var deleted = false
        while !deleted, let events = await Self.nextEvents(&changes) {
            deleted = events.contains { $0.kind == .delete && $0.kv.keyString == doomedKey }
        }
        #expect(deleted)
        #expect(try await etcd.get(.prefix(Self.prefix)).kvs.isEmpty)
    }

    @Test func malformedValuesAreSkippedAndLookupsSurviveEtcdGoingAway() async throws {
        let cluster = try await EtcdCluster()
        defer { cluster.stop() }
        let registry = EtcdRegistry(configuration: EtcdConfiguration(endpoints: cluster.endpoints, timeout: .seconds(60)))
        defer { Task { await registry.close() } }
        let service = try await ChildService("helloworld", environment: Self.environment(cluster))
        defer { service.stop() }
        _ = await service.waitForLine(containing: "registered node")

        // garbage next to the good node: before the first read and after it (through the watch)
        try await cluster.etcdctl(["put", Self.prefix + "garbage", "not json"])
        try await cluster.etcdctl(["put", Self.prefix + "wrong-types", #"{"name":1}"#])
        try await cluster.etcdctl(["put", Self.prefix + "no-nodes", #"{"name":"helloworld","nodes":[]}"#])
        let found = try await registry.getService("helloworld")
        #expect(found.flatMap(\.nodes).map(\.address) == ["127.0.0.1:\(service.port)"])
        let events = try registry.events(service: "helloworld")
        try await cluster.etcdctl(["put", Self.prefix + "null", "null"])
        try await cluster.etcdctl(["put", "/micro/registry/other/x", #"{"name":"other","nodes":[{"id":"x","address":"127.0.0.1:1"}]}"#])
        try await cluster.etcdctl(["put", Self.prefix + "zz-good", #"{"name":"helloworld","version":"2","nodes":[{"id":"zz-good","address":"127.0.0.1:2"}]}"#])
        for await event in events where event.service.nodes.first?.id == "zz-good" { break }
        #expect(Set(try await registry.getService("helloworld").flatMap(\.nodes).map(\.id)).count == 2)
        #expect(try await registry.listServices().map(\.name) == ["helloworld", "helloworld", "other"])

        // etcd gone: lookups and calls by name go on with the last known nodes
        let client = Client(registry: registry, options: CallOptions(timeout: Self.hangGuard))
        let before: Answer = try await client.call("helloworld", "Helloworld.Greeting", Hello(name: "a"),
                                                   options: CallOptions(timeout: Self.hangGuard, filters: [.version("latest")]))
        #expect(before.message == "Hello a")
        await cluster.kill9(0)
        for i in 0..<20 {
            let answer: Answer = try await client.call("helloworld", "Helloworld.Greeting", Hello(name: "\(i)"),
                                                       options: CallOptions(timeout: Self.hangGuard, filters: [.version("latest")]))
            #expect(answer.message == "Hello \(i)")
        }
        #expect(try await registry.getService("helloworld").flatMap(\.nodes).count == 2)
    }

    @Test func aBadPasswordOrAnUnreachableEtcdIsAClearError() async throws {
        let cluster = try await EtcdCluster()
        defer { cluster.stop() }
        // nothing listens there: the tool says so in one line and exits 1
        let dead = try await Self.micro(["services"], ["MICRO_REGISTRY": "etcd", "MICRO_REGISTRY_ADDRESS": "127.0.0.1:1", "MICRO_ETCD_TIMEOUT": "2"])
        #expect(dead.status == 1)
        #expect(dead.stderr.contains("etcd") && dead.stderr.split(separator: "\n").count == 1, "\(dead.stderr)")

        try await cluster.etcdctl(["user", "add", "root", "--new-user-password=rootpw"])
        try await cluster.etcdctl(["auth", "enable"])
        let refused = try await Self.micro(["services"], ["MICRO_REGISTRY": "etcd", "MICRO_REGISTRY_ADDRESS": cluster.address,
                                                          "MICRO_ETCD_USERNAME": "root", "MICRO_ETCD_PASSWORD": "wrong"])
        #expect(refused.status == 1 && refused.stderr.contains("authentication failed"), "\(refused.stderr)")
        let allowed = try await Self.micro(["services"], ["MICRO_REGISTRY": "etcd", "MICRO_REGISTRY_ADDRESS": cluster.address,
                                                          "ETCD_USERNAME": "root", "ETCD_PASSWORD": "rootpw"])
        #expect(allowed.status == 0, "\(allowed.stderr)")
    }

    @Test func goMicroNodesAndOursReadEachOther() async throws {
        let peer = try await GoPeer.build("etcd_gomicro_peer", packages: "golang-etcd-server-dev")
        defer { try? FileManager.default.removeItem(at: peer.directory) }
        let cluster = try await EtcdCluster()
        defer { cluster.stop() }
        let env = Self.environment(cluster)

        // a node registered by go-micro's layout: listed by the tool, returned by our lookup
        let go = try LineProcess([peer.binary, "-endpoints", cluster.address, "register", "-service", "go.micro.srv.peer", "-node",
                                  "peer-1", "-address", "127.0.0.1:9090", "-ttl", "10", "-version", "1.2.3", "-meta", "server=go,protocols=mucp"])
        defer { go.stop() }
        #expect(await go.waitForLine(containing: "registered /micro/registry/go.micro.srv.peer/peer-1") != nil)
        let services = try await Self.micro(["services"], env)
        #expect(services.stdout.contains("go.micro.srv.peer\t1.2.3\t1 node"), "\(services.stdout)\(services.stderr)")
        let registry = EtcdRegistry(configuration: EtcdConfiguration(endpoints: cluster.endpoints, timeout: .seconds(60)))
        defer { Task { await registry.close() } }
        let found = try await registry.getService("go.micro.srv.peer")
        #expect(found.count == 1 && found[0].version == "1.2.3")
        #expect(found.first?.nodes == [Node(id: "peer-1", address: "127.0.0.1:9090", metadata: ["server": "go", "protocols": "mucp"])])

        // ours, read back by the Go program as go-micro's registry.Service
        let service = try await ChildService("helloworld", environment: env)
        defer { service.stop() }
        _ = await service.waitForLine(containing: "registered node")
        let read = try await Tool.run(peer.binary, ["-endpoints", cluster.address, "get", "-service", "helloworld"])
        #expect(read.status == 0, "\(read.stderr)")
        let decoded = try JSONDecoder().decode([ServiceRecord].self, from: Data(read.stdout.utf8))
        #expect(decoded.count == 1 && decoded[0].name == "helloworld" && decoded[0].version == "latest")
        #expect(decoded[0].nodes.map(\.address) == ["127.0.0.1:\(service.port)"])
        #expect(decoded[0].nodes.first?.metadata["protocols"] == "http/1.1,h2c,grpc")
        #expect(decoded[0].endpoints.contains { $0.name == "Helloworld.Greeting" })
        #expect(read.stderr.isEmpty, "the Go side skipped a value: \(read.stderr)")

        // the Go node leaves as go-micro's does (the key deleted): our watch-fed lookup sees it go
        let events = try registry.events(service: "go.micro.srv.peer")
        go.signal(SIGTERM)
        for await event in events where event.action == .delete { break }
        #expect(try await registry.getService("go.micro.srv.peer").isEmpty)
    }
}
