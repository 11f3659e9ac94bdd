import Foundation
import MicroTestSupport
import Testing

/// What other frameworks' servers answer, and how our client takes it.
@Suite struct InteropTests {
    /// go-micro's HTTP transport answers every h2c request with a bare 200 (its handler's answer
    /// never reaches the stream). That is no answer: `micro call` fails and says so, where it printed
    /// an empty line and exited 0.
    @Test func anEmpty200IsNoAnswer() async throws {
        let server = try await ChildService(HardeningTests.attacker, arguments: ["server-empty-200", "--max-wait", "120"],
                                            launcher: ["python3"])
        let call = try await Tool.run(Tool.binDirectory.appendingPathComponent("micro").path,
                                      ["call", "--address", "127.0.0.1:\(server.port)", "go.service", "Say.Hello", "{}"] + Duration.hangGuardOption)
        #expect(call.status != 0)
        #expect(call.stderr.contains("the server answered 200 with no body and no content type"), "\(call.stdout) \(call.stderr)")
        #expect(call.stdout.isEmpty)
        server.signal(SIGKILL)
        _ = await server.waitForExit()
    }
}
