import Configuration
import Foundation
import Micro
import MicroEtcd
import MicroTestSupport
import Testing

/// A service's configuration in etcd: written with `micro config set`, read through
/// swift-configuration, changes seen by watchers without a restart.
@Suite struct EtcdConfigTests {
    static func micro(_ arguments: [String]) async throws -> ToolResult {
        try await Tool.run(Tool.binDirectory.appendingPathComponent("micro").path, arguments)
    }

    @Test func setWithTheToolReadAndFollowedByTheService() async throws {
        let cluster = try await EtcdCluster()
        defer { cluster.stop() }
        let target = ["--service", "cfg", "--etcd", cluster.address]
        for (key, value) in [("greeting", "Hi"), ("database.port", "5432"), ("database.hosts", "a,b"), ("debug", "true"), ("broken", "x1")] {
            let set = try await Self.micro(["config", "set", key, value] + target)
            #expect(set.status == 0, "\(set.stderr)")
        }
        // where it landed, as go-micro's etcd source lays out nested keys
        #expect(try await cluster.etcdctl(["get", "/micro/config/cfg/database/port", "--print-value-only"]) == "5432\n")
        let got = try await Self.micro(["config", "get", "greeting", "--source"] + target)
        #expect(got.stdout == "Hi\t(etcd /micro/config/cfg/greeting)\n", "\(got.stderr)")
        let listed = try await Self.micro(["config", "list"] + target)
        #expect(listed.stdout == "broken=x1\ndatabase.hosts=a,b\ndatabase.port=5432\ndebug=true\ngreeting=Hi\n")

        let etcd = EtcdClient(configuration: EtcdConfiguration(endpoints: cluster.endpoints, timeout: .seconds(60)))
        defer { Task { await etcd.close() } }
        let config = try await MicroConfig.withEtcd(service: "cfg", etcd: etcd)
        // a service given it reads it as service.config
        var options = try ServiceOptions(config: config)
        options.registry = MemoryRegistry()
        let reader = Service(name: "cfg", options: options).config
        #expect(reader.string(forKey: "greeting") == "Hi")
        #expect(reader.int(forKey: "database.port") == 5432)
        #expect(reader.stringArray(forKey: "database.hosts") == ["a", "b"])
        #expect(reader.bool(forKey: "debug") == true)
        #expect(reader.int(forKey: "broken", default: 7) == 7)  // not an int: the default, not a crash
        #expect(config.source(of: "greeting") == "etcd /micro/config/cfg/")

        // a change made by the tool reaches a watcher of the key, and a removal too
        try await reader.watchString(forKey: "greeting") { updates in
            var seen: [String?] = []
            for await value in updates {
                seen.append(value)
                switch seen.count {
                case 1:
                    let changed = try await Self.micro(["config", "set", "greeting", "Hello"] + target)
                    #expect(changed.status == 0, "\(changed.stderr)")
                case 2:
                    let removed = try await Self.micro(["config", "delete", "greeting"] + target)
                    #expect(removed.status == 0, "\(removed.stderr)")
                default: break
                }
                if seen.count == 3 { break }
            }
            #expect(seen == ["Hi", "Hello", nil])
        }
        #expect(reader.string(forKey: "greeting", default: "none") == "none")
    }

    @Test func theToolExplainsMisuse() async throws {
        let noService = try await Self.micro(["config", "set", "greeting", "x"])
        #expect(noService.status != 0 && noService.stderr.contains("--service"))
        let badKey = try await Self.micro(["config", "set", "a..b", "x", "--service", "s"])
        #expect(badKey.status != 0 && badKey.stderr.contains("dotted key"))
        let unreachable = try await Self.micro(["config", "get", "greeting", "--service", "s", "--etcd", "127.0.0.1:1"])
        #expect(unreachable.status == 1 && unreachable.stderr.hasPrefix("micro config: etcd"), "\(unreachable.stderr)")
        let badAddress = try await Self.micro(["config", "get", "greeting", "--service", "s", "--etcd", "ftp://x"])
        #expect(badAddress.status == 1 && badAddress.stderr.contains("not an etcd endpoint"), "\(badAddress.stderr)")
    }
}
