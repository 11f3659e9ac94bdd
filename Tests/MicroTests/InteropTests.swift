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

/// go-micro's HTTP transport and HTTP broker speak HTTP/1.1 only (over h2c its server answers a
/// bare 200, its broker drops the preface): our client and broker speak HTTP/1.1 to nodes that
/// do not advertise HTTP/2, and keep HTTP/2 between swift-micro nodes. The peer is
/// Tests/Peers/gomicro_peer.py, which behaves on the wire as go-micro does.
@Suite struct GoMicroHTTP1Tests {
    static let peer = MDNSTests.peers.appendingPathComponent("gomicro_peer.py").path
    /// What a go-micro server node carries (`newNodeMetadata`): no `protocols` list.
    static let goMicroNode = ["protocol": "mucp", "server": "mucp", "transport": "http", "broker": "http", "registry": "mdns"]

    struct Hello: Codable, Sendable { var name: String }
    struct Reply: Codable, Sendable {
        var msg: String
        var timeout: String?
        var metadata: [String: String]
    }
    struct Stats: Codable, Sendable {
        var connections: Int
        var requests: Int
        var h2_requests: Int
        var streams: Int
    }

    static func start(_ mode: String, _ arguments: [String] = []) async throws -> ChildService {
        try await ChildService(peer, arguments: [mode] + arguments, launcher: ["python3"])
    }

    /// A client whose registry knows the peer as a go-micro node of `go.service`.
    static func client(for peer: ChildService, timeout: Duration = .hangGuard) async throws -> Client {
        let registry = MemoryRegistry()
        try await registry.register(ServiceRecord(name: "go.service", nodes: [Node(id: "go-1", address: "127.0.0.1:\(peer.port)", metadata: goMicroNode)]),
                                    ttl: .seconds(3600))
        return Client(registry: registry, options: CallOptions(timeout: timeout))
    }

    static func stats(_ client: Client) async throws -> Stats {
        try await client.call("go.service", "Say.Stats", Hello(name: ""))
    }

    /// Item 1: `micro call --address http://…` speaks HTTP/1.1 (as a URL of that scheme says) and
    /// gets go-micro's answer and errors; before, it spoke h2c and took the bare 200 for no answer.
    @Test func microCallWithAnHTTPAddressSpeaksHTTP1() async throws {
        let peer = try await Self.start("server")
        defer { peer.stop() }
        let micro = Tool.binDirectory.appendingPathComponent("micro").path
        let hello = try await Tool.run(micro, ["call", "--address", "http://127.0.0.1:\(peer.port)", "go.service", "Say.Hello", #"{"name":"cli"}"#] + Duration.hangGuardOption)
        #expect(hello.status == 0, "\(hello.stderr)")
        let reply = try JSONDecoder().decode(Reply.self, from: Data(hello.stdout.utf8))
        #expect(reply.msg == "Hello cli")
        #expect(hello.stdout.hasSuffix("}\n"), "one line, though go-micro's answer ends with a newline: \(hello.stdout)")
        let fail = try await Tool.run(micro, ["call", "--address", "http://127.0.0.1:\(peer.port)", "go.service", "Say.Fail", "{}"] + Duration.hangGuardOption)
        #expect(fail.status == 1)
        #expect(fail.stderr.contains(#""code":409"#) && fail.stderr.contains("already there"), "\(fail.stderr)")
    }

    /// Items 1 and 3 both ways: a node registered as go-micro registers is called by name over
    /// HTTP/1.1 on one kept-alive connection; go-micro's `Timeout` header (nanoseconds) and our
    /// metadata reach it, its answer headers reach us; no HTTP/2 request reaches it.
    @Test func callsByNameReachAGoMicroNodeOverHTTP1OnKeptAliveConnections() async throws {
        let peer = try await Self.start("server")
        defer { peer.stop() }
        let client = try await Self.client(for: peer)
        var options = CallOptions(timeout: .hangGuard)
        options.metadata = ["X-Trace": "abc"]
        for i in 0..<5 {
            let reply: Reply = try await client.call("go.service", "Say.Hello", Hello(name: "n\(i)"), options: options)
            #expect(reply.msg == "Hello n\(i)")
            #expect(reply.metadata["X-Trace"] == "abc", "\(reply.metadata)")
            #expect(reply.timeout.flatMap(Int64.init).map { $0 > 0 } == true, "\(String(describing: reply.timeout))")
        }
        let raw = try await client.call("go.service", "Say.Hello", body: Array(#"{"name":"raw"}"#.utf8))
        #expect(raw.metadata["x-served-by"] == "gomicro-peer")
        // a pool per event loop: a caller on no loop is given each in turn
        let loops = EventLoopGroup.shared.loops.count
        var stats = try await Self.stats(client)
        #expect(stats.connections <= loops, "sequential calls share a connection per loop: \(stats)")
        #expect(stats.h2_requests == 0)

        // concurrent calls take a connection each, and all are answered
        let answered = try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in 0..<20 {
                group.addTask {
                    let reply: Reply = try await client.call("go.service", "Say.Hello", Hello(name: "c\(i)"))
                    return reply.msg == "Hello c\(i)"
                }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(answered == 20)
        stats = try await Self.stats(client)
        #expect(stats.requests == 28 && stats.h2_requests == 0, "\(stats)")
        #expect(stats.connections >= 1 && stats.connections <= loops + 20, "\(stats)")
        await client.close()
    }

    /// go-micro's errors (200 with a Micro-Error header over an empty body) are errors, JSON or
    /// plain text.
    @Test func goMicroErrorsOverHTTP1AreErrors() async throws {
        let peer = try await Self.start("server")
        defer { peer.stop() }
        let client = try await Self.client(for: peer)
        await #expect { let _: Reply = try await client.call("go.service", "Say.Fail", Hello(name: "x")) } throws: { error in
            guard let error = error as? MicroError else { return false }
            return error.code == 409 && error.id == "go.service" && error.detail == "already there"
        }
        await #expect { let _: Reply = try await client.call("go.service", "Nope.Missing", Hello(name: "x")) } throws: { error in
            (error as? MicroError)?.detail.contains("can't find service Nope.Missing") == true
        }
        await client.close()
    }

    /// A deadline that passes ends the HTTP/1.1 call by closing its connection (it cannot be reset
    /// alone); the next call gets a new connection and its answer.
    @Test func aDeadlineEndsTheHTTP1CallAndTheNextCallIsAnswered() async throws {
        let peer = try await Self.start("server", ["--slow", "120"])
        defer { peer.stop() }
        let client = try await Self.client(for: peer)
        await #expect {
            let _: Reply = try await client.call("go.service", "Say.Slow", Hello(name: "x"), options: CallOptions(timeout: .milliseconds(300)))
        } throws: { error in
            (error as? MicroError)?.code == 408
        }
        let reply: Reply = try await client.call("go.service", "Say.Hello", Hello(name: "after"))
        #expect(reply.msg == "Hello after")
        let stats = try await Self.stats(client)
        #expect(stats.connections >= 2 && stats.connections <= 1 + EventLoopGroup.shared.loops.count,
                "the timed-out call's connection was closed, a new one answered: \(stats)")
        await client.close()
    }

    struct Short: Codable, Sendable { var msg: String }

    /// Streams to a go-micro node are go-micro's HTTP/1.1 streams (a connection of their own, a
    /// request per message, a response per answer, EOS both ways); its stream errors are errors.
    @Test func streamsToAGoMicroNodeSpeakItsHTTP1Frames() async throws {
        let peer = try await Self.start("server")
        defer { peer.stop() }
        let client = try await Self.client(for: peer)
        let replies = try await client.stream("go.service", "Say.Stream", request: Hello.self, response: Short.self) { call in
            var got: [String] = []
            var responses = call.responses.makeAsyncIterator()
            for name in ["a", "b", "c"] {
                try await call.send(Hello(name: name))
                if let reply = try await responses.next() { got.append(reply.msg) }
            }
            call.closeSend()
            while let reply = try await responses.next() { got.append(reply.msg) }
            return got
        }
        #expect(replies == ["Hello a", "Hello b", "Hello c"])
        let summary: [String] = try await client.serverStream("go.service", "Say.Stream", Hello(name: "one"), as: Short.self) { replies in
            var all: [String] = []
            for try await reply in replies { all.append(reply.msg) }
            return all
        }
        #expect(summary == ["Hello one"])
        await #expect {
            try await client.serverStream("go.service", "Say.Other", Hello(name: "x"), as: Short.self) { replies in
                for try await _ in replies {}
            }
        } throws: { error in
            guard let error = error as? MicroError else { return false }
            return error.code == 409 && error.detail == "no stream here"
        }
        let stats = try await Self.stats(client)
        #expect(stats.streams == 3 && stats.h2_requests == 0, "\(stats)")
        await client.close()
    }

    /// Item 4: a publish reaches a go-micro subscriber (a node with go-micro's broker metadata)
    /// over HTTP/1.1, as go-micro's broker.Message JSON; before, the HTTP/2 preface was refused
    /// and the delivery retried until it gave up.
    @Test func aPublishReachesAGoMicroSubscriberOverHTTP1() async throws {
        let peer = try await Self.start("broker")
        defer { peer.stop() }
        let registry = MemoryRegistry()
        let node = Node(id: "events-go-1", address: "127.0.0.1:\(peer.port)", metadata: ["broker": "http", "topic": "events", "secure": "false"])
        try await registry.register(ServiceRecord(name: HTTPBroker.serviceName, version: HTTPBroker.broadcast, nodes: [node]), ttl: .seconds(3600))
        let broker = HTTPBroker(registry: registry)
        try await broker.publish("events", BrokerMessage(header: ["Content-Type": "application/json"], body: Array(#"{"n":1}"#.utf8)),
                                 options: .init(wait: .delivered))
        let line = await peer.waitForLine(containing: "message ")
        #expect(line?.contains(#"message id=events-go-1 topic=events body={"n":1}"#) == true, "\(peer.logLines)")
        await broker.disconnect()
    }

    /// Between swift-micro nodes nothing changes: our service and subscriber nodes advertise
    /// HTTP/2 and are called in it; go-micro's nodes (RPC and broker) in HTTP/1.1; a gRPC node and
    /// a node that says nothing in HTTP/2. Direct addresses: `http://` HTTP/1.1, `h2c://` and none
    /// HTTP/2, TLS always HTTP/2.
    @Test func theHTTPOfANodeComesFromItsMetadata() async throws {
        let service = Service(name: "meta", address: "127.0.0.1:0", options: .init(handleSignals: false, register: false))
        service.handle("Meta.Ping") { (_: [UInt8], _: Context) async throws -> [UInt8] in [] }
        _ = try service.start()
        #expect(try #require(service.record?.nodes.first).httpVersion == .http2)
        await service.shutdown()

        let registry = MemoryRegistry()
        let broker = HTTPBroker(registry: registry)
        let subscription = try await broker.subscribe("topic") { _ in }
        let subscriber = try #require(try await registry.getService(HTTPBroker.serviceName).first?.nodes.first)
        #expect(subscriber.httpVersion == .http2, "\(subscriber.metadata)")
        await subscription.unsubscribe()
        await broker.disconnect()

        #expect(Node(id: "a", address: "x", metadata: Self.goMicroNode).httpVersion == .http1_1)
        #expect(Node(id: "b", address: "x", metadata: ["broker": "http", "topic": "t", "secure": "false"]).httpVersion == .http1_1)
        #expect(Node(id: "c", address: "x", metadata: ["server": "grpc", "transport": "grpc"]).httpVersion == .http2)
        #expect(Node(id: "d", address: "x").httpVersion == .http2)
        #expect(Node(id: "e", address: "x", metadata: ["protocols": "http/1.1"]).httpVersion == .http1_1)
        #expect(Node(id: "f", address: "x", metadata: ["protocols": "h2c"]).httpVersion == .http2)
        #expect(Node(id: "g", address: "x", metadata: ["protocols": " HTTP/1.1 , H2"]).httpVersion == .http2)
        #expect(Node(id: "h", address: "x", metadata: ["protocols": "http/1.10,h2c2,xgrpc"]).httpVersion == .http2)
        #expect(Node(id: "i", address: "x", metadata: ["protocols": "spdy, http/1.1"]).httpVersion == .http1_1)

        let client = Client(registry: MemoryRegistry())
        #expect(client.transport("s", "http://127.0.0.1:1", nil).2 == .http1_1)
        #expect(client.transport("s", "h2c://127.0.0.1:1", nil).2 == .http2)
        #expect(client.transport("s", "127.0.0.1:1", nil).2 == .http2)
        #expect(client.transport("s", "https://127.0.0.1:1", nil).2 == .http2)
        #expect(client.transport("s", "http://127.0.0.1:1", nil, grpc: true).2 == .http2)
    }
}
