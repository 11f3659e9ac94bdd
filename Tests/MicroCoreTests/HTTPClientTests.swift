import Foundation
import Logging
import MicroCore
import MicroTestSupport
import Synchronization
import Testing

@Suite struct HTTPClientTests {
    static let logger = Logger(label: "test")

    static func echoServer(_ group: EventLoopGroup = .shared) throws -> HTTPServer {
        try HTTPServer(group: group, configuration: .init(host: "127.0.0.1"), logger: logger) { request, responder in
            responder.send(HTTPServerResponse(
                status: 201,
                headers: ["x-method": request.method, "x-path": request.path, "x-echo": request.headers["x-echo"] ?? ""],
                body: request.body,
                trailers: ["x-trailer": "t"]
            ))
        }
    }

    @Test func roundTripWithHeadersBodyAndTrailers() async throws {
        let server = try Self.echoServer()
        let client = HTTPClient()
        let response = try await client.request(
            address: "127.0.0.1:\(server.port)", path: "/a/b?c", headers: ["x-echo": "hi"], body: Array("payload".utf8))
        #expect(response.status == 201)
        #expect(response.headers["x-method"] == "POST")
        #expect(response.headers["x-path"] == "/a/b?c")
        #expect(response.headers["x-echo"] == "hi")
        #expect(response.body == Array("payload".utf8))
        #expect(response.trailers["x-trailer"] == "t")
        await client.close()
        await server.shutdownGracefully(timeout: .seconds(10))
    }

    @Test func manyConcurrentCallsShareConnections() async throws {
        let server = try Self.echoServer()
        let client = HTTPClient()
        let ok = try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in 0..<200 {
                group.addTask {
                    let body = Array("call \(i)".utf8)
                    return try await client.request(address: "127.0.0.1:\(server.port)", path: "/", headers: [:], body: body).body == body
                }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(ok == 200)
        await client.close()
        await server.shutdownGracefully(timeout: .seconds(10))
    }

    @Test func getsAFileFromNghttpd() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nghttpd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let content = Array(repeating: Array("0123456789abcdef".utf8), count: 10_000).flatMap { $0 }  // 160 KB
        try Data(content).write(to: dir.appendingPathComponent("file"))
        // nghttpd cannot be told to pick a port: try a few until one binds. Below the kernel's
        // ephemeral range (32768 and up), where the other tests' servers get their ports; and
        // an answer counts only if nghttpd gave it (the port may belong to another test).
        var response: HTTPClientResponse?
        for port in (0..<5).map({ _ in Int.random(in: 20000...32000) }) where response == nil {
            let daemon = try BackgroundTool("nghttpd", ["--no-tls", "-d", dir.path, "\(port)"])
            let client = HTTPClient()
            // until nghttpd answers, or exits (its port was taken); the bound is a hang guard
            let giveUp = ContinuousClock.now + .seconds(120)
            while response == nil && !daemon.hasExited && ContinuousClock.now < giveUp {
                do {
                    let answer = try await client.request(address: "127.0.0.1:\(port)", method: "GET", path: "/file", headers: [:], body: [])
                    guard answer.headers["server"]?.hasPrefix("nghttpd") == true else { break }
                    response = answer
                } catch {
                    guard error.kind == .connect else { throw error }
                    try await Task.sleep(for: .milliseconds(20))  // nghttpd is still starting: no event to await
                }
            }
            await client.close()
            await daemon.stop()
        }
        #expect(response?.status == 200)
        #expect(response?.body == content)
    }

    @Test func refusedConnectionIsAConnectErrorSafeToRetry() async throws {
        // a port bound but not listened on, held for the whole test (a server's port, once shut
        // down, could be taken by another test running at the same time)
        let refusing = try RefusingPort()
        defer { withExtendedLifetime(refusing) {} }
        let port = refusing.port
        let client = HTTPClient()
        do {
            _ = try await client.request(address: "127.0.0.1:\(port)", path: "/", headers: [:], body: [])
            Issue.record("expected a connect error")
        } catch {
            #expect(error.kind == .connect)
            #expect(error.neverProcessed)
            #expect(error.message.contains("127.0.0.1:\(port)"))
        }
    }

    @Test func cancellingACallResetsTheStreamAndCancelsTheHandler() async throws {
        let (handlerStarted, started) = AsyncStream<Void>.makeStream()
        let (handlerCancelled, cancelled) = AsyncStream<Void>.makeStream()
        let server = try HTTPServer(configuration: .init(host: "127.0.0.1"), logger: Self.logger) { _, responder in
            started.yield()
            while !Task.isCancelled { try? await Task.sleep(for: .seconds(60)) }
            cancelled.yield()
            responder.send(HTTPServerResponse(status: 499))
        }
        let client = HTTPClient()
        let port = server.port
        let call = Task { () async throws -> HTTPClientResponse in
            try await client.request(address: "127.0.0.1:\(port)", path: "/", headers: [:], body: [])
        }
        for await _ in handlerStarted { break }
        call.cancel()
        do {
            _ = try await call.value
            Issue.record("expected cancellation")
        } catch let error as HTTPClientError {
            #expect(error.kind == .cancelled)
        }
        for await _ in handlerCancelled { break }  // the server saw the reset
        await client.close()
        await server.shutdownGracefully(timeout: .seconds(10))
    }

    @Test func serverClosingMidCallIsAResetNotARetry() async throws {
        let (handlerStarted, started) = AsyncStream<Void>.makeStream()
        let server = try HTTPServer(configuration: .init(host: "127.0.0.1"), logger: Self.logger) { _, responder in
            started.yield()
            while !Task.isCancelled { try? await Task.sleep(for: .seconds(60)) }
            responder.send(HTTPServerResponse(status: 500))
        }
        let client = HTTPClient()
        let port = server.port
        let call = Task { () async throws -> HTTPClientResponse in
            try await client.request(address: "127.0.0.1:\(port)", path: "/", headers: [:], body: [])
        }
        for await _ in handlerStarted { break }
        server.closeConnections()
        switch await call.result {
        case .success: Issue.record("expected a reset")
        case .failure(let error):
            let clientError = error as? HTTPClientError
            #expect(clientError?.kind == .reset)
            #expect(clientError?.neverProcessed == false)
        }
        await client.close()
        await server.waitUntilClosed()
    }
}

/// The HTTP/1.1 client (servers without HTTP/2: go-micro's transport and broker), against our
/// own server, which speaks HTTP/1.1 too.
@Suite struct HTTP1ClientTests {
    @Test func roundTripsOnAKeptAliveConnection() async throws {
        let server = try HTTPServer(group: .shared, configuration: .init(host: "127.0.0.1"), logger: HTTPClientTests.logger) { request, responder in
            responder.send(HTTPServerResponse(
                status: 201,
                headers: ["x-method": request.method, "x-path": request.path, "x-echo": request.headers["x-echo"] ?? "",
                          "x-http": "\(request.httpVersion)"],
                body: request.body,
                trailers: ["x-trailer": "t"]
            ))
        }
        let client = HTTPClient()
        for i in 0..<5 {
            let body = Array("payload \(i)".utf8)
            let response = try await client.request(address: "127.0.0.1:\(server.port)", path: "/a/b?c", headers: ["x-echo": "hi"], body: body,
                                                    version: .http1_1)
            #expect(response.status == 201)
            #expect(response.headers["x-http"] == "1")
            #expect(response.headers["x-method"] == "POST")
            #expect(response.headers["x-path"] == "/a/b?c")
            #expect(response.headers["x-echo"] == "hi")
            #expect(response.body == body)
        }
        let get = try await client.request(address: "127.0.0.1:\(server.port)", method: "GET", path: "/", headers: [:], body: [], version: .http1_1)
        #expect(get.status == 201 && get.headers["x-method"] == "GET")
        await client.close()
        await server.shutdownGracefully(timeout: .seconds(10))
    }

    @Test func callsBeyondTheConnectionLimitWaitAndAreAllAnswered() async throws {
        let server = try HTTPClientTests.echoServer()
        let client = HTTPClient()
        let calls = HTTPClient.maxHTTP1ConnectionsPerAddress * 3
        let ok = try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in 0..<calls {
                group.addTask {
                    let body = Array("call \(i)".utf8)
                    return try await client.request(address: "127.0.0.1:\(server.port)", path: "/", headers: [:], body: body, version: .http1_1).body == body
                }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(ok == calls)
        await client.close()
        await server.shutdownGracefully(timeout: .seconds(10))
    }

    @Test func whatHTTP1CannotCarryIsRefusedBeforeSending() async throws {
        let server = try HTTPClientTests.echoServer()
        let client = HTTPClient()
        let address = "127.0.0.1:\(server.port)"
        await #expect { _ = try await client.request(address: address, path: "/", headers: ["x-bad": "a\r\nx-injected: 1"], body: [], version: .http1_1) }
            throws: { ($0 as? HTTPClientError)?.kind == .invalidRequest }
        await #expect { _ = try await client.request(address: address, path: "/a b", headers: [:], body: [], version: .http1_1) }
            throws: { ($0 as? HTTPClientError)?.kind == .invalidRequest }
        await #expect { _ = try await client.request(address: address, path: "/", headers: [:], body: [], tls: .init(), version: .http1_1) }
            throws: { ($0 as? HTTPClientError)?.kind == .invalidRequest }
        // the connection is still good for a proper call
        let response = try await client.request(address: address, path: "/", headers: [:], body: Array("ok".utf8), version: .http1_1)
        #expect(response.body == Array("ok".utf8))
        await client.close()
        await server.shutdownGracefully(timeout: .seconds(10))
    }

    @Test func aDeadlineClosesTheCallsConnectionAndTheNextCallWorks() async throws {
        // the handler of /hang answers at the end of the test (an HTTP/1.1 server cannot tell a
        // caller that closed from one that only half-closed: it answers, into the void)
        let (release, released) = AsyncStream<Void>.makeStream()
        let server = try HTTPServer(group: .shared, configuration: .init(host: "127.0.0.1"), logger: HTTPClientTests.logger) { request, responder in
            if request.path == "/hang" {
                for await _ in release {}
                responder.send(HTTPServerResponse(status: 200))
            } else {
                responder.send(HTTPServerResponse(status: 200, body: request.body))
            }
        }
        let client = HTTPClient()
        let address = "127.0.0.1:\(server.port)"
        await #expect {
            _ = try await client.request(address: address, path: "/hang", headers: [:], body: [], deadline: .now + .milliseconds(200), version: .http1_1)
        } throws: { ($0 as? HTTPClientError)?.kind == .timeout }
        let response = try await client.request(address: address, path: "/", headers: [:], body: Array("next".utf8), version: .http1_1)
        #expect(response.body == Array("next".utf8))
        released.finish()
        await client.close()
        await server.shutdownGracefully(timeout: .seconds(10))
    }
}
