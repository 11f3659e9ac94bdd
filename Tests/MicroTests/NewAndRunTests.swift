import Foundation
import Micro
import MicroTestSupport
import Testing

/// `micro new` and `micro run`, as a user meets them: a new service package that builds and whose
/// tests pass as written, run by `micro run` with the gateway in front, called by name and
/// through the gateway, then changed and restarted by `micro run` without a hand on it.
///
/// It builds a package of its own against this checkout (a minute or two): in the plain pass
/// only, not again under the sanitizers, whose builds of this checkout it would not use.
@Suite(.enabled(if: ProcessInfo.processInfo.environment["MICRO_SANITIZED"] == nil))
struct NewAndRunTests {
    static let micro = Tool.binDirectory.appendingPathComponent("micro").path

    @Test func aNewServiceBuildsPassesItsTestsRunsAndReloads() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("micro-new-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let package = root.appendingPathComponent("inventory")
        let written = try await Tool.run(Self.micro, ["new", "inventory", "--directory", package.path])
        #expect(written.status == 0, "\(written.stderr)")
        for file in ["Package.swift", "README.md", "proto/inventory.proto", "Sources/InventoryProto/inventory.pb.swift",
                     "Sources/InventoryProto/inventory.micro.swift", "Sources/InventoryService/Inventory.swift",
                     "Sources/inventory/main.swift", "Tests/InventoryServiceTests/InventoryTests.swift"] {
            #expect(FileManager.default.fileExists(atPath: package.appendingPathComponent(file).path), "\(file)")
        }
        // refuses to write over what is there, and a name that is no service name
        #expect(try await Tool.run(Self.micro, ["new", "inventory", "--directory", package.path]).status != 0)
        #expect(try await Tool.run(Self.micro, ["new", "Not-A-Name", "--directory", root.appendingPathComponent("x").path]).status != 0)

        let build = try await Tool.run("swift", ["build", "--build-tests", "--package-path", package.path], timeout: .seconds(1800))
        try #require(build.status == 0, "\(build.stdout)\n\(build.stderr)")
        let tests = try await Tool.run("swift", ["test", "--skip-build", "--package-path", package.path], timeout: .seconds(600))
        #expect(tests.status == 0, "\(tests.stdout)\n\(tests.stderr)")
        #expect(tests.stdout.contains("2 tests") || tests.stderr.contains("2 tests"), "\(tests.stdout)")

        // micro run: builds (nothing left to do), runs the executable, serves the gateway
        let registry = root.appendingPathComponent("registry").path
        let run = try LineProcess([Self.micro, "run", root.path, "--address", "127.0.0.1:0", "--interval", "0.2"],
                                  environment: ["MICRO_REGISTRY_ADDRESS": registry, "MICRO_SERVER_ADDRESS": "127.0.0.1:0"])
        var finished = false
        defer {
            // a test that failed midway: micro run asked to stop, whatever is left ended
            if !finished { run.signal(SIGTERM) }
            for line in run.output where !finished && line.contains("(pid ") {
                if let pid = Int32(line.split(separator: "(pid ").last?.dropLast() ?? "") { kill(pid, SIGKILL) }
            }
            run.stop()
        }
        let listening = try #require(await run.waitForLine(containing: "gateway listening on", within: .seconds(600)))
        let port = try #require(Int(listening.split(separator: ":").last ?? ""))
        let first = try #require(await run.waitForLine(containing: "registered node", within: .seconds(600)))
        let firstNode = String(first.split(separator: "registered node ").last?.split(separator: " ").first ?? "")
        let direct = try await Tool.run(Self.micro, ["call", "inventory", "Inventory.Call", #"{"name":"alice"}"#] + Duration.hangGuardOption,
                                        environment: ["MICRO_REGISTRY_ADDRESS": registry])
        #expect(direct.stdout.contains("Hello alice"), "\(direct.stdout)\(direct.stderr)")
        #expect(try await Self.callThroughTheGateway(port).contains("Hello alice"))

        // a change that does not build: said, and what runs keeps running
        let handler = package.appendingPathComponent("Sources/InventoryService/Inventory.swift")
        let source = try String(contentsOf: handler, encoding: .utf8)
        try (source + "\nthis is not Swift\n").write(to: handler, atomically: true, encoding: .utf8)
        #expect(await run.waitForLine(containing: "inventory: build failed", within: .seconds(900)) != nil)
        #expect(try await Self.callThroughTheGateway(port).contains("Hello alice"))
        // a change to the handler that builds: built again and restarted by micro run
        try source.replacingOccurrences(of: #""Hello " + request.name"#, with: #""Hi " + request.name"#).write(to: handler, atomically: true, encoding: .utf8)
        #expect(await run.waitForLine(containing: "restarted inventory", within: .seconds(900)) != nil)
        // the new process's node (another id) is registered: the gateway finds it
        #expect(await run.waitForLine(within: .seconds(600)) { $0.contains("registered node") && !$0.contains(firstNode) } != nil)
        #expect(try await Self.callThroughTheGateway(port).contains("Hi alice"))

        // micro run stops its service (which leaves the registry) and exits
        run.signal(SIGTERM)
        #expect(run.reap() == 0)
        finished = true
        #expect(run.output.last { $0.hasPrefix("[inventory]") }?.contains("exited (status 0)") == true, "\(run.output.suffix(5))")
    }

    static func callThroughTheGateway(_ port: Int) async throws -> String {
        let result = try await Tool.run("curl", ["-sS", "--max-time", "60", "-H", "content-type: application/json", "-d", #"{"name":"alice"}"#,
                                                 "http://127.0.0.1:\(port)/api/inventory/Inventory.Call"])
        return result.stdout
    }
}
