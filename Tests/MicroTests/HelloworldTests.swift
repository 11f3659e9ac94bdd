import Foundation
import MicroTestSupport
import Testing

/// The helloworld example as a child process, called by real clients.
@Suite(.serialized) struct HelloworldTests {
    static let greeting = ["-H", "Content-Type: application/json", "-H", "Micro-Endpoint: Helloworld.Greeting"]

    @Test func curlOverHTTP1AndHTTP2() async throws {
        let service = try await ChildService("helloworld")
        defer { service.stop() }
        let url = "http://localhost:\(service.port)"
        let h1 = try await Tool.run("curl", ["-sS", "-XPOST"] + Self.greeting + ["-d", #"{"name": "alice"}"#, url])
        #expect(h1.stdout == #"{"message":"Hello alice"}"#)
        let h2 = try await Tool.run(
            "curl", ["-sS", "--http2-prior-knowledge", "-w", "%{http_version}", "-XPOST"] + Self.greeting + ["-d", #"{"name":"bob"}"#, url])
        #expect(h2.stdout == #"{"message":"Hello bob"}2"#)
        // the path is ignored when the header names the endpoint, as in go-micro
        let anyPath = try await Tool.run("curl", ["-sS", "-XPOST"] + Self.greeting + ["-d", #"{"name":"c"}"#, url + "/any/path"])
        #expect(anyPath.stdout == #"{"message":"Hello c"}"#)
    }

    @Test func nghttpClient() async throws {
        let service = try await ChildService("helloworld")
        defer { service.stop() }
        let body = FileManager.default.temporaryDirectory.appendingPathComponent("nghttp-\(UUID().uuidString).json")
        try Data(#"{"name":"nghttp"}"#.utf8).write(to: body)
        defer { try? FileManager.default.removeItem(at: body) }
        let result = try await Tool.run(
            "nghttp", ["-H", "content-type: application/json", "-H", "micro-endpoint: Helloworld.Greeting", "-d", body.path, "http://127.0.0.1:\(service.port)/"])
        #expect(result.status == 0)
        #expect(result.stdout == #"{"message":"Hello nghttp"}"#)
    }

    @Test func concurrentStreamsOnOneHTTP2Connection() async throws {
        let service = try await ChildService("helloworld")
        defer { service.stop() }
        let body = FileManager.default.temporaryDirectory.appendingPathComponent("h2load-\(UUID().uuidString).json")
        try Data(#"{"name":"load"}"#.utf8).write(to: body)
        defer { try? FileManager.default.removeItem(at: body) }
        // 1 connection, 20 streams at once, 2000 requests: a bound on work, not a timing
        let result = try await Tool.run("h2load", [
            "-n", "2000", "-c", "1", "-m", "20", "-d", body.path,
            "-H", "content-type: application/json", "-H", "micro-endpoint: Helloworld.Greeting",
            "http://127.0.0.1:\(service.port)/",
        ])
        #expect(result.stdout.contains("2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored"), "\(result.stdout)")
        #expect(result.stdout.contains("status codes: 2000 2xx"))
    }

    @Test func manyRequestsOnOneKeepAliveConnection() async throws {
        let service = try await ChildService("helloworld")
        defer { service.stop() }
        let conn = try RawConnection(port: service.port)
        for i in 0..<200 {
            try conn.send(Self.request(name: "n\(i)"))
            let response = try await conn.readResponse()
            #expect(response.status == 200)
            #expect(response.body == #"{"message":"Hello n\#(i)"}"#)
        }
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        let service = try await ChildService("helloworld")
        defer { service.stop() }
        let conn = try RawConnection(port: service.port)
        // more than the 16 in flight allowed per connection: reading pauses, then resumes;
        // the client half-closes at once, and still gets every answer
        try conn.send((0..<50).map { Self.request(name: "p\($0)") }.joined())
        conn.closeWrite()
        for i in 0..<50 {
            let response = try await conn.readResponse()
            #expect(response.body == #"{"message":"Hello p\#(i)"}"#)
        }
        #expect(try await conn.readToEnd().isEmpty)
    }

    @Test func gracefulShutdownOnSIGTERMExitsZero() async throws {
        let service = try await ChildService("helloworld")
        defer { service.stop() }
        let conn = try RawConnection(port: service.port)
        try conn.send(Self.request(name: "before"))
        #expect(try await conn.readResponse().status == 200)
        service.signal(SIGTERM)
        // the idle keep-alive connection is closed by the server, not reset
        #expect(try await conn.readToEnd().isEmpty)
        #expect(await service.waitForExit() == 0)
        #expect(service.logLines.contains { $0.contains("received SIGTERM") })
    }

    static func request(name: String, endpoint: String = "Helloworld.Greeting") -> String {
        let body = #"{"name":"\#(name)"}"#
        return "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nMicro-Endpoint: \(endpoint)\r\n"
            + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }
}

/// HTTP/1.1 body framings and interim answers, with curl.
@Suite struct HTTP1FramingTests {
    @Test func chunkedBodyAnd100Continue() async throws {
        let service = try await ChildService("helloworld")
        defer { service.stop() }
        let url = "http://127.0.0.1:\(service.port)/"
        let chunked = try await Tool.run("curl", ["-sS", "--http1.1", "-XPOST"] + HelloworldTests.greeting
            + ["-H", "Transfer-Encoding: chunked", "-d", #"{"name":"chunks"}"#, url])
        #expect(chunked.stdout == #"{"message":"Hello chunks"}"#)
        let expect = try await Tool.run("curl", ["-sS", "-v", "--http1.1", "--expect100-timeout", "60", "-XPOST"] + HelloworldTests.greeting
            + ["-H", "Expect: 100-continue", "-d", #"{"name":"expect"}"#, url])
        #expect(expect.stderr.contains("HTTP/1.1 100 Continue"))
        #expect(expect.stdout == #"{"message":"Hello expect"}"#)
        let head = try await Tool.run("curl", ["-sS", "-I", url])
        #expect(head.stdout.hasPrefix("HTTP/1.1 200"))
    }
}
