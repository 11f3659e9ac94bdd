import Foundation
@testable import Micro
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

/// go-micro's legacy envelopes and node metadata: what its clients need to call us by name.
@Suite struct GoMicroLegacyTests {
    static func curl(_ port: Int, _ headers: [String], body: String, http2: Bool = false, output: String? = nil) async throws -> ToolResult {
        var args = ["-s", "-XPOST", "--data-binary", body] + headers.flatMap { ["-H", $0] }
        if http2 { args.append("--http2-prior-knowledge") }
        if let output { args += ["-o", output] }
        return try await Tool.run("curl", args + ["-w", "%{http_code}", "http://127.0.0.1:\(port)/"])
    }

    /// Our nodes carry what go-micro's servers register, so that its clients call them with the
    /// plain content types; our own keys come after.
    @Test func nodesCarryGoMicrosMetadata() async throws {
        let service = Service(name: "meta", address: "127.0.0.1:0", options: .init(handleSignals: false, register: false))
        service.handle("Meta.Ping") { (_: [UInt8], _: Context) async throws -> [UInt8] in [] }
        _ = try service.start()
        let metadata = try #require(service.record?.nodes.first?.metadata)
        #expect(metadata["protocol"] == "mucp")
        #expect(metadata["server"] == "mucp")
        #expect(metadata["transport"] == "http")
        #expect(metadata["registry"] == service.registry.name)
        #expect(["local", "memory", "mdns"].contains(metadata["registry"] ?? ""))
        #expect(metadata["broker"] == service.broker.name)
        #expect(metadata["protocols"] == "http/1.1,h2c,grpc")
        #expect(metadata["framework"] == "swift-micro")
        await service.shutdown()
    }

    /// json-rpc, as older go-micro clients (and any go-micro client calling a node it takes for a
    /// legacy one) send it: the request is the envelope's first param, the answer is wrapped with
    /// the request's id, over HTTP/1.1 and HTTP/2, with or without routing headers.
    @Test(arguments: [false, true])
    func jsonRPCCallsAreAnsweredInTheirEnvelope(http2: Bool) async throws {
        let hello = try await ChildService("helloworld")
        defer { hello.stop() }
        let envelope = #"{"method":"Helloworld.Greeting","params":[{"name":"rpc"}],"id":7}"#
        // the routing header and application/json-rpc, as go-micro's client sends to a legacy node
        let routed = try await Self.curl(hello.port, ["Content-Type: application/json-rpc", "Micro-Endpoint: Helloworld.Greeting"],
                                         body: envelope, http2: http2)
        #expect(routed.stdout == #"{"id":7,"result":{"message":"Hello rpc"},"error":null}200"#, "\(routed.stdout)")
        // no routing header at all: the envelope's method routes (go-micro's fallback), also for plain JSON
        for contentType in ["application/json-rpc", "application/json"] {
            let bare = try await Self.curl(hello.port, ["Content-Type: \(contentType)"], body: envelope.replacingOccurrences(of: "7", with: #""seven""#), http2: http2)
            #expect(bare.stdout == #"{"id":"seven","result":{"message":"Hello rpc"},"error":null}200"#, "\(contentType): \(bare.stdout)")
        }
    }

    /// A failure travels in the envelope's error (go-micro's errors.Parse reads it) and in
    /// Micro-Error; bad envelopes get a clear 400 and leave the service serving.
    @Test func jsonRPCErrorsAndBadEnvelopes() async throws {
        let hello = try await ChildService("helloworld")
        defer { hello.stop() }
        let missing = try await Self.curl(hello.port, ["Content-Type: application/json-rpc"],
                                          body: #"{"method":"Helloworld.Nope","params":[{}],"id":1}"#)
        #expect(missing.stdout.contains("endpoint Helloworld.Nope not found"), "\(missing.stdout)")
        let undecodable = try await Self.curl(hello.port, ["Content-Type: application/json-rpc", "Micro-Endpoint: Helloworld.Greeting"],
                                              body: #"{"params":[{"name":42}],"id":2}"#)
        let json = try #require(undecodable.stdout.data(using: .utf8).flatMap { try JSONSerialization.jsonObject(with: $0.dropLast(3)) } as? [String: Any])
        #expect(json["id"] as? Int == 2)
        #expect(json["result"] is NSNull)
        let error = MicroError(parsing: try #require(json["error"] as? String))
        #expect(error.code == 400, "\(undecodable.stdout)")
        for bad in ["not json", #"[1,2]"#, #"{"method":5}"#, #"{"method":"Helloworld.Greeting","params":{"name":"x"}}"#, #"{"method":"Helloworld.Greeting","id":{}}"#] {
            // errors answer as go-micro's do: 200 with the error (here 400) in Micro-Error and the body
            let answer = try await Self.curl(hello.port, ["Content-Type: application/json-rpc"], body: bad)
            let error = MicroError(parsing: String(answer.stdout.dropLast(3)))
            #expect(error.code == 400, "\(bad): \(answer.stdout)")
            #expect(error.detail.contains("json-rpc"), "\(bad): \(answer.stdout)")
        }
        let after = try await Self.curl(hello.port, ["Content-Type: application/json", "Micro-Endpoint: Helloworld.Greeting"], body: #"{"name":"still"}"#)
        #expect(after.stdout.contains("Hello still"))
    }

    /// proto-rpc: two frames (a protobuf header with the method and sequence number, then the
    /// protobuf request), answered with a header echoing both and the protobuf answer.
    @Test func protoRPCCallsAreAnsweredInTheirFrames() async throws {
        let greeter = try await ChildService("greeter")
        defer { greeter.stop() }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("proto-rpc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        func frame(_ bytes: [UInt8]) -> [UInt8] { [0, 0, UInt8(bytes.count >> 8), UInt8(bytes.count & 0xff)] + bytes }
        let method = Array("Greeter.Hello".utf8)
        let header = [0x0a, UInt8(method.count)] + method + [0x11, 42, 0, 0, 0, 0, 0, 0, 0]  // service_method, seq = 42
        let request: [UInt8] = [0x0a, 5] + Array("proto".utf8)  // HelloRequest{name: "proto"}
        try Data(frame(header) + frame(request)).write(to: dir.appendingPathComponent("request"))
        let answerPath = dir.appendingPathComponent("answer").path
        let call = try await Self.curl(greeter.port, ["Content-Type: application/proto-rpc"], body: "@" + dir.appendingPathComponent("request").path,
                                       output: answerPath)
        #expect(call.stdout == "200")
        let answer = Array(try Data(contentsOf: URL(fileURLWithPath: answerPath)))
        // header frame: service_method and seq back, no error field
        let headerLength = Int(answer[3])
        let answerHeader = Array(answer[4..<(4 + headerLength)])
        #expect(answerHeader == header, "\(answerHeader)")
        let body = Array(answer[(8 + headerLength)...])
        #expect(body == [0x12, 11] + Array("Hello proto".utf8), "\(body)")  // HelloResponse{greeting: "Hello proto"}

        // a frame that says more bytes than follow is refused clearly
        try Data([0, 0, 0, 99, 1, 2]).write(to: dir.appendingPathComponent("bad"))
        let bad = try await Self.curl(greeter.port, ["Content-Type: application/proto-rpc"], body: "@" + dir.appendingPathComponent("bad").path)
        let error = MicroError(parsing: String(bad.stdout.dropLast(3)))
        #expect(error.code == 400, "\(bad.stdout)")
        #expect(error.detail == "proto-rpc: the header frame says 99 bytes, 2 follow", "\(bad.stdout)")
    }
}
