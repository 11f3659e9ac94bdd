import Foundation
import Micro
import MicroTestSupport
import Testing

struct Greeting: Codable, Sendable { var name: String }
struct Reply: Codable, Sendable { var message: String }

/// A service in this process with small limits, fed bad input by real clients and raw sockets.
@Suite struct BadInputTests {
    static func service(maxBody: Int = 1024) throws -> Service {
        var server = HTTPServerConfiguration()
        server.maxBodyBytes = maxBody
        server.maxHeaderBytes = 4096
        let service = Service(name: "bad", address: "127.0.0.1:0", options: .init(server: server, handleSignals: false))
        service.handle("Greeter.Hello") { (req: Greeting, _: Context) async throws -> Reply in
            Reply(message: "Hello " + req.name)
        }
        try service.start()
        return service
    }

    /// The server still answers a good request.
    static func stillServes(_ port: Int) async throws {
        let conn = try RawConnection(port: port)
        try conn.send(HelloworldTests.request(name: "ok", endpoint: "Greeter.Hello"))
        let response = try await conn.readResponse()
        #expect(response.body == #"{"message":"Hello ok"}"#)
    }

    static func microError(_ body: String) -> MicroError { MicroError(parsing: body) }

    @Test func malformedRequestLineGets400AndClose() async throws {
        let service = try Self.service()
        defer { service.stop() }
        let conn = try RawConnection(port: service.port!)
        try conn.send("THIS IS NOT HTTP/1.1\r\n\r\n")
        let response = try await conn.readResponse()
        #expect(response.status == 400)
        #expect(Self.microError(response.body).code == 400)
        #expect(response.headers["connection"] == "close")
        #expect(try await conn.readToEnd().isEmpty)
        try await Self.stillServes(service.port!)
    }

    @Test func oversizeHeadersGet431() async throws {
        let service = try Self.service()
        defer { service.stop() }
        let conn = try RawConnection(port: service.port!)
        try conn.send("GET / HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 8000))\r\n\r\n")
        let response = try await conn.readResponse()
        #expect(response.status == 431)
        #expect(Self.microError(response.body).detail.contains("4096"))
        // HTTP/2: the same limit, answered on the stream
        let h2 = try await Tool.run("curl", ["-s", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
                                             "-H", "X-Big: \(String(repeating: "b", count: 8000))", "http://127.0.0.1:\(service.port!)/"])
        #expect(h2.stdout == "431")
        try await Self.stillServes(service.port!)
    }

    @Test func oversizeBodyGets413OnBothProtocols() async throws {
        let service = try Self.service(maxBody: 1024)
        defer { service.stop() }
        let big = #"{"name":""# + String(repeating: "x", count: 5000) + #""}"#
        for flag in ["--http1.1", "--http2-prior-knowledge"] {
            let result = try await Tool.run("curl", ["-s", flag, "-w", "\n%{http_code}", "-XPOST", "-H", "Micro-Endpoint: Greeter.Hello",
                                                     "-H", "Content-Type: application/json", "-d", big, "http://127.0.0.1:\(service.port!)/"])
            let lines = result.stdout.split(separator: "\n")
            #expect(lines.last == "413", "\(flag): \(result.stdout)")
            #expect(Self.microError(String(lines.first ?? "")).detail.contains("1024"))
        }
        try await Self.stillServes(service.port!)
    }

    @Test func garbageAfterTheHTTP2PrefaceGetsGoawayAndClose() async throws {
        let service = try Self.service()
        defer { service.stop() }
        let conn = try RawConnection(port: service.port!)
        try conn.send(Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + Array(repeating: 0xFF, count: 64))
        let bytes = try await conn.readToEnd()
        // the server's SETTINGS, then a GOAWAY frame (type 7), then the close
        var offset = 0, types: [UInt8] = []
        while offset + 9 <= bytes.count {
            let length = Int(bytes[offset]) << 16 | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2])
            types.append(bytes[offset + 3])
            offset += 9 + length
        }
        #expect(types.contains(7))
        try await Self.stillServes(service.port!)
    }

    @Test func unknownEndpointAndBadJSONAndUnknownContentType() async throws {
        let service = try Self.service()
        defer { service.stop() }
        let url = "http://127.0.0.1:\(service.port!)/"
        let unknown = try await Tool.run("curl", ["-s", "-XPOST", "-H", "Micro-Endpoint: Greeter.Nope", "-d", "{}", url])
        #expect(Self.microError(unknown.stdout).code == 404)
        #expect(Self.microError(unknown.stdout).detail.contains("Greeter.Nope"))
        let badJSON = try await Tool.run("curl", ["-s", "-i", "-XPOST", "-H", "Micro-Endpoint: Greeter.Hello",
                                                  "-H", "Content-Type: application/json", "-d", "{not json", url])
        #expect(badJSON.stdout.lowercased().contains("micro-error: {\"id\":\"bad\",\"code\":400"))
        let wrongType = try await Tool.run("curl", ["-s", "-XPOST", "-H", "Micro-Endpoint: Greeter.Hello",
                                                    "-H", "Content-Type: application/json", "-d", #"{"name": 5}"#, url])
        #expect(Self.microError(wrongType.stdout).code == 400)
        #expect(Self.microError(wrongType.stdout).detail.contains("name"))
        let noEndpoint = try await Tool.run("curl", ["-s", "-XPOST", "-d", "{}", url])
        #expect(Self.microError(noEndpoint.stdout).code == 400)
        let xml = try await Tool.run("curl", ["-s", "-XPOST", "-H", "Micro-Endpoint: Greeter.Hello", "-H", "Content-Type: text/xml", "-d", "<a/>", url])
        #expect(Self.microError(xml.stdout).code == 415)
        try await Self.stillServes(service.port!)
    }

    @Test func slowHeadersAreCutAtTheHeaderTimeout() async throws {
        var server = HTTPServerConfiguration()
        server.headerTimeout = .milliseconds(200)
        let service = Service(name: "slow", address: "127.0.0.1:0", options: .init(server: server, handleSignals: false))
        try service.start()
        defer { service.stop() }
        let conn = try RawConnection(port: service.port!)
        try conn.send("GET / HTTP/1.1\r\nHost: x\r\n")  // and never the blank line
        let response = try await conn.readResponse()
        #expect(response.status == 408)
        #expect(try await conn.readToEnd().isEmpty)
    }

    @Test func idleConnectionsAreClosedOnBothProtocols() async throws {
        var server = HTTPServerConfiguration()
        server.idleTimeout = .milliseconds(200)
        let service = Service(name: "idle", address: "127.0.0.1:0", options: .init(server: server, handleSignals: false))
        service.handle("Greeter.Hello") { (req: Greeting, _: Context) async throws -> Reply in Reply(message: req.name) }
        try service.start()
        defer { service.stop() }
        let conn = try RawConnection(port: service.port!)
        try conn.send(HelloworldTests.request(name: "x", endpoint: "Greeter.Hello"))
        #expect(try await conn.readResponse().status == 200)
        #expect(try await conn.readToEnd().isEmpty)  // closed by the server after the idle time
        let h2 = try RawConnection(port: service.port!)
        try h2.send(Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + [0, 0, 0, 4, 0, 0, 0, 0, 0])  // preface + empty SETTINGS
        let bytes = try await h2.readToEnd()
        var offset = 0, types: [UInt8] = []
        while offset + 9 <= bytes.count {
            types.append(bytes[offset + 3])
            offset += 9 + (Int(bytes[offset]) << 16 | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2]))
        }
        #expect(types.last == 7)  // GOAWAY, then the close
    }
}
