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

    /// `micro call --address` takes the address as a URL too: `http://` and `h2c://` (plaintext),
    /// as `https://` and `tls://` say TLS (before: "cannot resolve").
    @Test(arguments: ["http://", "h2c://", "", "http://:/"])
    func anAddressWithAPlaintextSchemeIsCalled(scheme: String) async throws {
        let hello = try await ChildService("helloworld")
        defer { hello.stop() }
        let address = scheme == "http://:/" ? "http://127.0.0.1:\(hello.port)/" : "\(scheme)127.0.0.1:\(hello.port)"
        let call = try await Tool.run(Tool.binDirectory.appendingPathComponent("micro").path,
                                      ["call", "--address", address, "helloworld", "Helloworld.Greeting", #"{"name":"url"}"#] + Duration.hangGuardOption)
        #expect(call.status == 0, "\(call.stderr)")
        #expect(call.stdout.contains("Hello url"), "\(call.stdout) \(call.stderr)")
    }
}
