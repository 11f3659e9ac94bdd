import Foundation
import Micro
import MicroTestSupport
import Testing

/// helloworld processes that find each other through a shared local registry directory, called
/// by the `micro` tool and by the framework's client.
@Suite struct DiscoveryTests {
    struct Hello: Codable, Sendable { var name: String }
    struct Answer: Codable, Sendable { var message: String }

    /// A registry directory of the test's own and `count` helloworld processes registered in it.
    struct Nodes {
        let directory: URL
        let registry: LocalRegistry
        let children: [ChildService]
        /// Node id by child index, from the registry.
        let ids: [String]

        init(_ count: Int, ttl: Double = 60, interval: Double = 20) async throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("micro-discovery-\(UUID().uuidString)")
            registry = LocalRegistry(directory: directory)
            let environment = [
                "MICRO_REGISTRY_ADDRESS": directory.path,
                "MICRO_REGISTER_TTL": "\(ttl)",
                "MICRO_REGISTER_INTERVAL": "\(interval)",
            ]
            var children: [ChildService] = []
            for _ in 0..<count {
                let child = try await ChildService("helloworld", environment: environment)
                children.append(child)
                _ = await child.waitForLine(containing: "registered node")
            }
            self.children = children
            let nodes = try await registry.getService("helloworld").flatMap(\.nodes)
            ids = children.map { child in nodes.first { $0.address == "127.0.0.1:\(child.port)" }?.id ?? "?" }
        }

        var environment: [String: String] { ["MICRO_REGISTRY_ADDRESS": directory.path] }

        func micro(_ arguments: [String]) async throws -> ToolResult {
            try await Tool.run(Tool.binDirectory.appendingPathComponent("micro").path, arguments, environment: environment)
        }

        func stop() {
            for child in children { child.stop() }
            try? FileManager.default.removeItem(at: directory)
        }
    }

    @Test func microServicesDescribeAndCall() async throws {
        let nodes = try await Nodes(2)
        defer { nodes.stop() }
        #expect(!nodes.ids.contains("?"))

        let services = try await nodes.micro(["services"])
        #expect(services.status == 0, "\(services.stderr)")
        #expect(services.stdout == "helloworld\tlatest\t2 nodes\n")

        let described = try await nodes.micro(["describe", "helloworld"])
        #expect(described.status == 0, "\(described.stderr)")
        let records = try JSONDecoder().decode([ServiceRecord].self, from: Data(described.stdout.utf8))
        #expect(records.count == 1)
        #expect(Set(records[0].nodes.map(\.id)) == Set(nodes.ids))
        #expect(records[0].nodes.allSatisfy { $0.metadata["protocols"]?.contains("h2c") == true })
        let greeting = try #require(records[0].endpoints.first { $0.name == "Helloworld.Greeting" })
        #expect(greeting.request?.values == [Value(name: "name", type: "string")])
        #expect(greeting.response?.values == [Value(name: "message", type: "string")])

        let call = try await nodes.micro(["call", "helloworld", "Helloworld.Greeting", #"{"name":"alice"}"#] + Duration.hangGuardOption)
        #expect(call.status == 0, "\(call.stderr)")
        #expect(call.stdout == #"{"message":"Hello alice"}"# + "\n")

        let third = try await ChildService("helloworld", environment: nodes.environment)
        defer { third.stop() }
        _ = await third.waitForLine(containing: "registered node")
        #expect(try await nodes.micro(["services"]).stdout == "helloworld\tlatest\t3 nodes\n")
    }

    @Test func microReportsErrorsWithAnExitCode() async throws {
        let nodes = try await Nodes(1)
        defer { nodes.stop() }
        let unknown = try await nodes.micro(["call", "ghost", "Ghost.Boo", "{}"] + Duration.hangGuardOption)
        #expect(unknown.status == 1)
        let error = MicroError(parsing: unknown.stderr.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(error.code == 500)
        #expect(error.detail.contains("ghost"))

        let badRequest = try await nodes.micro(["call", "helloworld", "Helloworld.Greeting", #"{"name":42}"#] + Duration.hangGuardOption)
        #expect(badRequest.status == 1)
        #expect(MicroError(parsing: badRequest.stderr.trimmingCharacters(in: .whitespacesAndNewlines)).code == 400)

        let missing = try await nodes.micro(["describe", "ghost"])
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("ghost"))
    }

    @Test(arguments: [SelectionStrategy.roundRobin, .random, .leastOutstanding, .powerOfTwoChoices])
    func callsAreSpreadOverThreeProcesses(strategy: SelectionStrategy) async throws {
        let nodes = try await Nodes(3)
        defer { nodes.stop() }
        let client = Client(registry: nodes.registry, strategy: strategy, options: CallOptions(timeout: .hangGuard))
        var counts: [String: Int] = [:]
        for i in 0..<300 {
            let response = try await client.call("helloworld", "Helloworld.Greeting", body: Array(#"{"name":"n\#(i)"}"#.utf8))
            #expect(response.body == Array(#"{"message":"Hello n\#(i)"}"#.utf8))
            counts[response.node?.id ?? "?", default: 0] += 1
        }
        #expect(Set(counts.keys) == Set(nodes.ids))
        switch strategy {
        case .roundRobin:
            #expect(counts.values.allSatisfy { $0 == 100 })
        case .random, .leastOutstanding:
            // one call at a time: every node is equally likely each time (σ ≈ 8.2 of 100)
            #expect(counts.values.allSatisfy { $0 >= 50 })
        case .powerOfTwoChoices:
            // latency decides: no node is starved, which is all a fair test can say about equals
            #expect(counts.values.allSatisfy { $0 >= 1 })
        }
    }

    @Test func killingANodeMidLoopFailsNoCallAndItLeavesWithinItsTTL() async throws {
        let nodes = try await Nodes(3, ttl: 2, interval: 0.5)
        defer { nodes.stop() }
        let events = try nodes.registry.events(service: "helloworld")
        let client = Client(registry: nodes.registry, strategy: .roundRobin, options: CallOptions(timeout: .hangGuard))
        let victim = nodes.children[1]
        for i in 0..<300 {
            if i == 100 {
                victim.signal(SIGKILL)
                #expect(await victim.waitForExit() == 128 + SIGKILL)
            }
            let answer: Answer = try await client.call("helloworld", "Helloworld.Greeting", Hello(name: "k\(i)"))
            #expect(answer.message == "Hello k\(i)")
        }
        // nobody deregistered it: its file stops being refreshed and expires. (Only the victim's
        // delete is awaited: a live node whose heartbeat a loaded machine delays past the TTL
        // may drop out and come back, which is not what this test is about.)
        for await event in events where event.action == .delete && event.service.nodes.map(\.id) == [nodes.ids[1]] {
            break
        }
        let left = try await nodes.registry.getService("helloworld").flatMap(\.nodes).map(\.id)
        #expect(!left.contains(nodes.ids[1]))
        #expect(Set(left).isSubset(of: [nodes.ids[0], nodes.ids[2]]))
    }

    @Test func sigtermDeregistersAtOnce() async throws {
        // a TTL of ten minutes: a delete seen now is the node leaving, not expiring
        let nodes = try await Nodes(2, ttl: 600, interval: 300)
        defer { nodes.stop() }
        let events = try nodes.registry.events(service: "helloworld")
        nodes.children[0].signal(SIGTERM)
        for await event in events where event.action == .delete {
            #expect(event.service.nodes.map(\.id) == [nodes.ids[0]])
            break
        }
        #expect(await nodes.children[0].waitForExit() == 0)
        #expect(try await nodes.registry.getService("helloworld").flatMap(\.nodes).map(\.id) == [nodes.ids[1]])
    }
}
