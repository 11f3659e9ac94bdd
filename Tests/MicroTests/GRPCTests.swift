import Foundation
import GreeterProto
@testable import Micro
import MicroTestSupport
import SwiftProtobuf
import Synchronization
import Testing

/// gRPC against a real peer we did not write: Python grpcio, as client and as server.
@Suite struct GRPCTests {
    static let peer = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Peers/grpc_peer.py").path

    /// The greeter with behaviours the checks need: errors, a slow call, metadata echo.
    struct TestGreeter: GreeterHandler {
        func hello(_ request: HelloRequest, context: Context) async throws -> HelloResponse {
            switch request.name {
            case "": throw MicroError.badRequest("greeter", "name is required")
            case "nobody": throw MicroError.notFound("greeter", "no such person: nobody")
            case "slow": try await Task.sleep(for: .seconds(60))
            case "echo-metadata":
                if let tenant = context.metadata["x-tenant"] { context.responseMetadata.add("x-tenant-echo", tenant) }
                if let token = context.metadata.binary("x-token-bin") { context.responseMetadata.add("x-token-echo", binary: token) }
            default: break
            }
            var response = HelloResponse()
            response.greeting = "Hello " + request.name
            return response
        }
    }

    struct PeerReport: Decodable {
        struct Status: Decodable, Equatable {
            var code: String
            var details: String
        }
        struct Echo: Decodable {
            var greeting: String
            var tenant: String?
            var token: [UInt8]
        }
        var hello: String
        var metadata: Echo
        var invalid: Status?
        var missing: Status?
        var deadline: Status?
        var unknown_method: Status?
        var too_large: Status?
        var gzip: String
        var after: String
    }

    @Test func pythonClientCallsSwiftMicro() async throws {
        let service = Service(name: "greeter", address: "127.0.0.1:0", options: .init(handleSignals: false, register: false))
        service.register(TestGreeter())
        try service.start()
        let result = try await Tool.run("python3", [Self.peer, "client", "127.0.0.1:\(service.port!)"], timeout: .seconds(300))
        #expect(result.status == 0, "\(result.stderr)")
        let report = try JSONDecoder().decode(PeerReport.self, from: Data(result.stdout.utf8))
        #expect(report.hello == "Hello alice")
        #expect(report.metadata.greeting == "Hello echo-metadata")
        #expect(report.metadata.tenant == "acme")
        #expect(report.metadata.token == [0x00, 0x01, 0xfe, 0xff])
        #expect(report.invalid == .init(code: "INVALID_ARGUMENT", details: "name is required"))
        #expect(report.missing == .init(code: "NOT_FOUND", details: "no such person: nobody"))
        #expect(report.deadline?.code == "DEADLINE_EXCEEDED")
        #expect(report.unknown_method?.code == "UNIMPLEMENTED")
        #expect(report.too_large?.code == "RESOURCE_EXHAUSTED")
        #expect(report.gzip == "Hello zipped")
        #expect(report.after == "Hello again")
        let health = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        #expect(health?["health:"] as? String == "SERVING")
        #expect(health?["health:Greeter"] as? String == "SERVING")
        #expect((health?["health:no.such.Service"] as? [String: String])?["code"] == "NOT_FOUND")
        await service.shutdown()
    }

    /// A handler of `[UInt8]` gets the message exactly as it came, over gRPC (grpcio with no
    /// serializers sends raw bytes) and over the micro protocol with octet-stream or protobuf;
    /// an `async` handler and a synchronous one alike.
    @Test(arguments: [false, true])
    func aBytesHandlerGetsTheMessageAsItCameOverEveryWire(synchronous: Bool) async throws {
        let service = Service(name: "echo", address: "127.0.0.1:0", options: .init(handleSignals: false, register: false))
        @Sendable func reverse(_ message: [UInt8]) throws -> [UInt8] {
            guard !message.isEmpty else { throw MicroError.badRequest("echo", "nothing to echo") }
            return message.reversed()
        }
        if synchronous {
            service.handle("Echo.Call") { (message: [UInt8], _: Context) throws -> [UInt8] in try reverse(message) }
        } else {
            service.handle("Echo.Call") { (message: [UInt8], _: Context) async throws -> [UInt8] in try reverse(message) }
        }
        try service.start()
        let script = """
            import grpc, sys
            call = grpc.insecure_channel(sys.argv[1]).unary_unary("/echo.Echo/Call")
            sys.stdout.write(call(bytes(range(256)), timeout=120).hex())
            """
        let result = try await Tool.run("python3", ["-c", script, "127.0.0.1:\(service.port!)"], timeout: .seconds(300))
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout == (0..<256).reversed().map { String(format: "%02x", $0) }.joined())
        for type in ["application/octet-stream", "application/protobuf"] {
            let curl = try await Tool.run("curl", [
                "-s", "--http2-prior-knowledge", "-H", "content-type: \(type)", "-H", "micro-endpoint: Echo.Call",
                "--data-binary", "abc", "http://127.0.0.1:\(service.port!)/",
            ])
            #expect(curl.stdout == "cba", "\(type)")
        }
        // JSON carries bytes as an array of numbers (the typed path, not the direct one)
        let json = try await Tool.run("curl", [
            "-s", "--http2-prior-knowledge", "-H", "content-type: application/json", "-H", "micro-endpoint: Echo.Call",
            "--data-binary", "[1,2,300]", "http://127.0.0.1:\(service.port!)/",
        ])
        #expect(json.stdout.contains("cannot decode"), "\(json.stdout)")  // 300 is no byte
        let numbers = try await Tool.run("curl", [
            "-s", "--http2-prior-knowledge", "-H", "content-type: application/json", "-H", "micro-endpoint: Echo.Call",
            "--data-binary", "[1,2,3]", "http://127.0.0.1:\(service.port!)/",
        ])
        #expect(numbers.stdout == "[3,2,1]")
        // an error the handler throws keeps its code on the direct path too
        let empty = try await Tool.run("curl", [
            "-s", "--http2-prior-knowledge", "-H", "content-type: application/octet-stream", "-H", "micro-endpoint: Echo.Call",
            "--data-binary", "", "http://127.0.0.1:\(service.port!)/",
        ])
        #expect(empty.stdout.contains("\"code\":400") && empty.stdout.contains("nothing to echo"), "\(empty.stdout)")
        await service.shutdown()
    }

    /// Calls that arrive together on one connection, some answered in the core's callback (a
    /// synchronous handler) and some left to worker tasks (an `async` one that suspends), each
    /// get the answer to their own message: the routes the first stage leaves for the workers
    /// are taken back by the right requests (none lost, none another's), in any mix and with
    /// handlers still suspended.
    @Test func callsAnsweredAtOnceAndCallsLeftToWorkersEachGetTheirOwnAnswer() async throws {
        let service = Service(name: "mix", address: "127.0.0.1:0", options: .init(handleSignals: false, register: false))
        service.handle("Mix.Now") { (message: [UInt8], _: Context) throws -> [UInt8] in Array("now:".utf8) + message }
        service.handle("Mix.Later") { (message: [UInt8], _: Context) async throws -> [UInt8] in
            // suspends a different number of times per message, so answers finish out of order
            for _ in 0..<Int(message.last ?? 0) % 5 { await Task.yield() }
            return Array("later:".utf8) + message
        }
        try service.start()
        let missesBefore = Router.RouteHandoff.misses.load(ordering: .relaxed)
        let script = """
            import grpc, sys
            # a channel is one connection, so its calls go out together and arrive in shared reads;
            # four channels spread over the server's loops
            channels = [grpc.insecure_channel(sys.argv[1], options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(4)]
            calls = []
            for i in range(600):
                channel = channels[i % 4]
                method = "/mix.Mix/Later" if i % 3 else "/mix.Mix/Now"
                calls.append((channel.unary_unary(method), method, str(i).encode()))
            futures = [(method, message, call.future(message, timeout=120)) for call, method, message in calls]
            wrong = 0
            for method, message, future in futures:
                expected = (b"later:" if method.endswith("Later") else b"now:") + message
                if future.result() != expected:
                    wrong += 1
            print(wrong)
            """
        let result = try await Tool.run("python3", ["-c", script, "127.0.0.1:\(service.port!)"], timeout: .seconds(300))
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0")
        // and each took back the route found on its arrival: none was lost and routed again
        #expect(Router.RouteHandoff.misses.load(ordering: .relaxed) == missesBefore)
        await service.shutdown()
    }

    /// The greeter through the generated synchronous protocol.
    struct SynchronousGreeter: GreeterSynchronousHandler {
        func hello(_ request: HelloRequest, context: Context) throws -> HelloResponse {
            guard !request.name.isEmpty else { throw MicroError.badRequest("greeter", "name is required") }
            var response = HelloResponse()
            response.greeting = "Hello " + request.name
            return response
        }
    }

    /// A synchronous handler of protobuf messages, registered as a closure or through the
    /// generated `GreeterSynchronousHandler`, called by grpcio (the request and answer encoded by
    /// hand: HelloRequest is string field 1, HelloResponse string field 2); its thrown error
    /// reaches the caller as a gRPC status.
    @Test(arguments: [false, true]) func aSynchronousMessageHandlerOverGRPC(generated: Bool) async throws {
        let service = Service(name: "greeter", address: "127.0.0.1:0", options: .init(handleSignals: false, register: false))
        if generated {
            service.register(SynchronousGreeter())
        } else {
            service.handle("Greeter.Hello") { (request: HelloRequest, context: Context) throws -> HelloResponse in
                try SynchronousGreeter().hello(request, context: context)
            }
        }
        // answered from the router's frame, not through an async call
        #expect(service.router.endpoint(named: "Greeter.Hello")?.sync != nil)
        try service.start()
        let script = """
            import grpc, sys
            call = grpc.insecure_channel(sys.argv[1]).unary_unary("/greeter.Greeter/Hello")
            answer = call(b"\\x0a\\x03ann", timeout=120)
            sys.stdout.write(answer.hex() + "\\n")
            try:
                call(b"", timeout=120)
            except grpc.RpcError as e:
                sys.stdout.write(e.code().name + " " + e.details() + "\\n")
            """
        let result = try await Tool.run("python3", ["-c", script, "127.0.0.1:\(service.port!)"], timeout: .seconds(300))
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == ([0x12, 9] + Array("Hello ann".utf8)).map { String(format: "%02x", $0) }.joined())
        #expect(lines.last == "INVALID_ARGUMENT name is required")
        await service.shutdown()
    }

    @Test func swiftMicroClientCallsPythonServer() async throws {
        let python = try await ChildService("/usr/bin/env", arguments: ["python3", Self.peer, "server"])
        defer { python.stop() }
        let address = "127.0.0.1:\(python.port)"
        let client = GreeterClient(
            client: Client(registry: MemoryRegistry()), options: CallOptions(timeout: .hangGuard, contentType: "application/grpc", address: address))

        var request = HelloRequest()
        request.name = "bob"
        #expect(try await client.hello(request).greeting == "Hello bob from python")

        request.name = ""
        do {
            _ = try await client.hello(request)
            Issue.record("an aborted call succeeded")
        } catch let error as MicroError {
            #expect(error.code == 400)  // INVALID_ARGUMENT
            #expect(error.detail == "name is required: ¿quién?")  // grpc-message, percent-decoded
        }

        request.name = "slow"
        do {
            _ = try await client.hello(request, options: CallOptions(timeout: .milliseconds(300), retries: 0, contentType: "application/grpc", address: address))
            Issue.record("a call outlived its deadline")
        } catch let error as MicroError {
            #expect(error.code == 408)
        }

        // metadata out and back, on the raw form
        request.name = "meta"
        let raw = try await client.client.call(
            "greeter", "/Greeter/Hello", body: try request.serializedBytes(),
            options: CallOptions(timeout: .hangGuard, contentType: "application/grpc", metadata: ["x-tenant": "acme"], address: address))
        #expect(raw.metadata["x-tenant-echo"] == "acme")
        #expect(try HelloResponse(serializedBytes: raw.body).greeting == "Hello meta from python")
    }

    @Test func swiftToSwiftOverGRPCAndTheMicroProtocol() async throws {
        let fleet = Fleet()
        try await fleet.start("greeter") { $0.register(TestGreeter()) }
        let client = fleet.client()
        let greeter = GreeterClient(client: client, options: CallOptions(timeout: .hangGuard, contentType: "application/grpc"))
        var request = HelloRequest()
        request.name = "carol"
        // generated client, by name through the registry, gRPC framing
        #expect(try await greeter.hello(request).greeting == "Hello carol")
        // the same endpoint over the micro protocol, protobuf and protobuf-JSON bodies
        let proto: HelloResponse = try await client.call("greeter", "Greeter.Hello", request, options: CallOptions(timeout: .hangGuard, contentType: "application/protobuf"))
        #expect(proto.greeting == "Hello carol")
        let json = try await client.call("greeter", "Greeter.Hello", body: Array(#"{"name":"dave"}"#.utf8))
        #expect(String(decoding: json.body, as: UTF8.self) == #"{"greeting":"Hello dave"}"#)
        // gRPC errors come back as MicroErrors with their code
        request.name = "nobody"
        await #expect(throws: MicroError(id: "greeter", code: 404, detail: "no such person: nobody")) {
            _ = try await greeter.hello(request)
        }
        try await fleet.stopAll()
    }

    @Test func badFramesGetAStatusAndHarmNothing() async throws {
        let service = Service(name: "greeter", address: "127.0.0.1:0", options: .init(handleSignals: false, register: false))
        service.register(TestGreeter())
        try service.start()
        let dir = FileManager.default.temporaryDirectory
        func send(_ body: [UInt8], contentType: String = "application/grpc", path: String = "/Greeter/Hello") async throws -> [String: String] {
            let file = dir.appendingPathComponent("grpc-body-\(UUID().uuidString)")
            try Data(body).write(to: file)
            defer { try? FileManager.default.removeItem(at: file) }
            let result = try await Tool.run("curl", ["-s", "--http2-prior-knowledge", "-o", "/dev/null", "-D", "-", "-X", "POST",
                                                     "-H", "content-type: \(contentType)", "-H", "te: trailers",
                                                     "--data-binary", "@\(file.path)", "http://127.0.0.1:\(service.port!)\(path)"])
            var headers: [String: String] = [:]
            for line in result.stdout.split(whereSeparator: \.isNewline) {
                if line.hasPrefix("HTTP/") { headers["status-line"] = line.trimmingCharacters(in: .whitespaces) }
                let parts = line.split(separator: ":", maxSplits: 1)
                if parts.count == 2 { headers[parts[0].lowercased()] = parts[1].trimmingCharacters(in: .whitespaces) }
            }
            return headers
        }
        #expect(try await send([0, 0, 0])["grpc-status"] == "13")  // truncated prefix
        #expect(try await send([7, 0, 0, 0, 0])["grpc-status"] == "13")  // bad flag
        #expect(try await send([0, 0, 0, 0, 9, 1])["grpc-status"] == "13")  // length beyond the body
        #expect(try await send([1, 0, 0, 0, 1, 0])["grpc-status"] == "13")  // compressed, no grpc-encoding
        #expect(try await send(GRPCFraming.frame([]) + GRPCFraming.frame([]))["grpc-status"] == "12")  // two messages, unary
        #expect(try await send(GRPCFraming.frame([0xff, 0xff]))["grpc-status"] == "3")  // not a HelloRequest: INVALID_ARGUMENT
        #expect(try await send(GRPCFraming.frame([]), path: "/Greeter")["grpc-status"] == "12")
        #expect(try await send(GRPCFraming.frame([]), contentType: "application/grpc+thrift")["status-line"] == "HTTP/2 415")
        // and it still answers
        var request = HelloRequest()
        request.name = "still here"
        let reply: HelloResponse = try await Client(registry: MemoryRegistry()).call(
            "greeter", "/Greeter/Hello", request, options: CallOptions(timeout: .hangGuard, contentType: "application/grpc", address: "127.0.0.1:\(service.port!)"))
        #expect(reply.greeting == "Hello still here")
        await service.shutdown()
    }

    @Test func statusAndTimeoutEncodings() {
        #expect(GRPCText.encodeMessage("50% off: ¿sí?") == "50%25 off: %C2%BFs%C3%AD?")
        #expect(GRPCText.decodeMessage("50%25 off: %C2%BFs%C3%AD?") == "50% off: ¿sí?")
        #expect(GRPCText.decodeMessage("bad %G1 escape %") == "bad %G1 escape %")
        #expect(GRPCText.parseTimeout("100m") == .milliseconds(100))
        #expect(GRPCText.parseTimeout("2H") == .seconds(7200))
        #expect(GRPCText.parseTimeout("123456789S") == nil)  // 9 digits
        #expect(GRPCText.parseTimeout("5x") == nil)
        #expect(GRPCText.parseTimeout("S") == nil)
        #expect(GRPCText.parseTimeout("-5S") == nil)
        #expect(GRPCText.parseTimeout("1 S") == nil)
        // the largest a peer can send is more nanoseconds than an Int64 holds: saturated, no trap
        #expect(GRPCText.parseTimeoutNanoseconds("99999999H") == .max)
        #expect(GRPCText.parseTimeoutNanoseconds("99999999S") == 99_999_999_000_000_000)
        #expect(GRPCText.formatTimeout(.milliseconds(250)) == "250000000n" || GRPCText.formatTimeout(.milliseconds(250)) == "250000u")
        #expect(GRPCText.parseTimeout(GRPCText.formatTimeout(.seconds(3))) == .seconds(3))
        for code in [400, 401, 403, 404, 408, 409, 412, 501, 503, 500] {
            #expect(GRPCStatusCode(microCode: code).microCode == code)
        }
        #expect(Wire.grpcPath(service: "helloworld", endpoint: "Helloworld.Greeting") == "/helloworld.Helloworld/Greeting")
        #expect(Wire.grpcPath(service: "x", endpoint: "/Greeter/Hello") == "/Greeter/Hello")
        #expect(Router.grpcEndpointNames("/pkg.v1.Greeter/Hello")! == ("pkg.v1.Greeter.Hello", "Greeter.Hello"))
        #expect(Router.grpcEndpointNames("/Greeter") == nil)
    }

    @Test func malformedFramesAndGzipBombsAreRejected() throws {
        #expect(throws: GRPCFraming.Malformed.self) { try GRPCFraming.messages(in: [0, 0, 0]) }
        #expect(throws: GRPCFraming.Malformed.self) { try GRPCFraming.messages(in: [2, 0, 0, 0, 0]) }
        #expect(throws: GRPCFraming.Malformed.self) { try GRPCFraming.messages(in: [0, 0, 0, 0, 9, 1, 2]) }
        #expect(try GRPCFraming.messages(in: GRPCFraming.frame([1, 2, 3])).map { Array($0.bytes) } == [[1, 2, 3]])
        let bomb = Gzip.compress([UInt8](repeating: 0, count: 10_000_000))
        #expect(bomb.count < 20_000)
        #expect(throws: Gzip.Failure.self) { try Gzip.decompress(bomb[...], limit: 4 * 1024 * 1024) }
        #expect(try Gzip.decompress(Gzip.compress(Array("hello".utf8))[...], limit: 100) == Array("hello".utf8))
        #expect(throws: Gzip.Failure.self) { try Gzip.decompress([1, 2, 3, 4][...], limit: 100) }
    }
}
