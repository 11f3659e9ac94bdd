import Foundation
import Micro
import MicroTestSupport
import Testing

/// `micro bench` against real services: counts, errors by code, open loop, reports.
@Suite struct BenchTests {
    struct Report: Decodable {
        var requests: Int
        var errors: [String: Int]
        var requestsPerSecond: Double
        var latencyMicroseconds: [String: Double]
    }

    static func bench(_ arguments: [String], environment: [String: String]) async throws -> (ToolResult, Report?) {
        let result = try await Tool.run(Tool.binDirectory.appendingPathComponent("micro").path, ["bench"] + arguments + ["--json"],
                                        environment: environment)
        return (result, try? JSONDecoder().decode(Report.self, from: Data(result.stdout.utf8)))
    }

    /// The C core's driver: by name (micro protocol) and by URL (gRPC framing), exact counts,
    /// failures counted by status, a refused connection said plainly.
    @Test func theCoreDriverCountsExactlyAndSaysWhatFailed() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("micro-bench-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let environment = ["MICRO_REGISTRY_ADDRESS": directory.path]
        let helloworld = try await ChildService("helloworld", environment: environment)
        defer { helloworld.stop() }
        _ = await helloworld.waitForLine(containing: "registered node")
        let (byName, named) = try await Self.bench(
            ["helloworld", "Helloworld.Greeting", "--driver", "core", "--data", #"{"name":"c"}"#, "--connections", "3",
             "--concurrency", "5", "--requests", "3000", "--warmup", "20"], environment: environment)
        #expect(byName.status == 0, "\(byName.stderr)")
        #expect(named?.requests == 3000)
        #expect(named?.errors == [:])
        #expect(Set(named.map { Array($0.latencyMicroseconds.keys) } ?? []).isSuperset(of: ["p50", "p99", "max"]))

        let greeter = try await ChildService("greeter", environment: environment)
        defer { greeter.stop() }
        let (grpc, framed) = try await Self.bench(
            ["http://127.0.0.1:\(greeter.port)/Greeter/Hello", "--driver", "core", "--grpc", "--data-hex", "0a0162",
             "--concurrency", "4", "--requests", "1000"], environment: environment)
        #expect(grpc.status == 0, "\(grpc.stderr)")
        #expect(framed?.requests == 1000)
        #expect(framed?.errors == [:])
        // an unknown method: gRPC UNIMPLEMENTED, each call a failure
        let (unknown, failures) = try await Self.bench(
            ["http://127.0.0.1:\(greeter.port)/Greeter/Nope", "--driver", "core", "--grpc", "--requests", "50"], environment: environment)
        #expect(unknown.status == 1)
        #expect(failures?.errors["failed"] == 50)
        let refusing = try RefusingPort()
        let refused = try await Tool.run(Tool.binDirectory.appendingPathComponent("micro").path,
                                         ["bench", "http://127.0.0.1:\(refusing.port)/", "--driver", "core", "--requests", "5"])
        withExtendedLifetime(refusing) {}
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("connection refused"), "\(refused.stderr)")
    }

    @Test func closedLoopThroughTheRegistryAndOpenLoopByURL() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("micro-bench-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let environment = ["MICRO_REGISTRY_ADDRESS": directory.path]
        let helloworld = try await ChildService("helloworld", environment: environment)
        defer { helloworld.stop() }
        _ = await helloworld.waitForLine(containing: "registered node")
        let greeter = try await ChildService("greeter", environment: environment)
        defer { greeter.stop() }

        let hdr = directory.appendingPathComponent("latency.hdr").path
        let (closed, report) = try await Self.bench(
            ["helloworld", "Helloworld.Greeting", "--data", #"{"name":"b"}"#, "--connections", "2", "--concurrency", "4",
             "--requests", "2000", "--warmup", "10", "--hdr-log", hdr], environment: environment)
        #expect(closed.status == 0, "\(closed.stderr)")
        #expect(report?.requests == 2000)
        #expect(report?.errors == [:])
        let keys = Set(report.map { Array($0.latencyMicroseconds.keys) } ?? [])
        #expect(keys.isSuperset(of: ["p50", "p90", "p99", "p99.9", "max"]))
        #expect(try String(contentsOfFile: hdr, encoding: .utf8).contains("Percentile"))

        // open loop at 1000/s for 1 s: exactly the 1000 requests that fell due, over gRPC by URL
        let (open, openReport) = try await Self.bench(
            ["http://127.0.0.1:\(greeter.port)/Greeter/Hello", "--grpc", "--data-hex", "0a0162", "--rate", "1000", "--duration", "1",
             "--connections", "2", "--concurrency", "8"], environment: environment)
        #expect(open.status == 0, "\(open.stderr)")
        #expect(openReport?.requests == 1000)
        #expect(openReport?.errors == [:])

        // errors are counted by code, and a run where everything failed exits 1
        let (failing, failingReport) = try await Self.bench(
            ["helloworld", "Helloworld.Nope", "--requests", "50", "--warmup", "0"], environment: environment)
        #expect(failing.status == 1)
        #expect(failingReport?.errors == ["404": 50])
    }
}
