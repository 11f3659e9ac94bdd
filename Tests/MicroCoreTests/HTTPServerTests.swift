import Foundation
import Logging
import MicroCore
import MicroTestSupport
import Synchronization
import Testing

@Suite struct HTTPServerTests {
    static let logger = Logger(label: "test")

    @Test func handlerRunsOnTheThreadOfTheLoopThatOwnsTheConnection() async throws {
        let group = try EventLoopGroup(numberOfThreads: 2)
        defer { group.shutdown() }
        let loopsSeen = Mutex<Set<Int>>([])
        let server = try HTTPServer(group: group, configuration: .init(host: "127.0.0.1"), logger: Self.logger) {
            request, responder in
            var ok = request.loop.inEventLoop && EventLoop.current === request.loop
            await Task.yield()
            ok = ok && request.loop.inEventLoop
            try? await Task.sleep(for: .milliseconds(5))
            ok = ok && request.loop.inEventLoop
            loopsSeen.withLock { _ = $0.insert(request.loop.index) }
            responder.send(HTTPServerResponse(body: Array((ok ? "on-loop" : "off-loop").utf8)))
        }
        // Two connections open at once are spread over both loops (fewest connections first).
        let a = try RawConnection(port: server.port)
        let b = try RawConnection(port: server.port)
        for c in [a, b] { try c.send("GET / HTTP/1.1\r\nhost: x\r\n\r\n") }
        #expect(try a.readResponse().body == "on-loop")
        #expect(try b.readResponse().body == "on-loop")
        let h2 = try await Tool.run("curl", ["-s", "--http2-prior-knowledge", "http://127.0.0.1:\(server.port)/"])
        #expect(h2.stdout == "on-loop")
        #expect(loopsSeen.withLock { $0 } == [0, 1])
        await server.shutdownGracefully(timeout: .seconds(10))
    }

    /// Handlers run on pooled worker tasks: one that suspends must not hold up the others, and a
    /// handler cancelled because its client left must not leave its cancellation to the next.
    @Test func suspendedHandlersRunConcurrentlyAndCancellationStaysWithItsRequest() async throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.shutdown() }
        let together = 20
        // /wait answers only once `together` handlers are waiting at the same time
        let waiting = Mutex<[CheckedContinuation<Void, Never>]>([])
        let (cancelled, cancelledSink) = AsyncStream.makeStream(of: Bool.self)
        let server = try HTTPServer(group: group, configuration: .init(host: "127.0.0.1"), logger: Self.logger) {
            request, responder in
            switch request.path {
            case "/wait":
                await withCheckedContinuation { continuation in
                    let all = waiting.withLock { list -> [CheckedContinuation<Void, Never>] in
                        list.append(continuation)
                        return list.count == together ? list : []
                    }
                    for waiter in all { waiter.resume() }
                }
                responder.send(HTTPServerResponse(body: Array("together".utf8)))
            case "/hang":
                // until the client goes away
                let slept: Void? = try? await Task.sleep(for: .seconds(600))
                cancelledSink.yield(slept == nil && Task.isCancelled)
            default:
                responder.send(HTTPServerResponse(body: Array("cancelled=\(Task.isCancelled)".utf8)))
            }
        }
        // `together` streams at once on one connection
        let result = try await Tool.run("nghttp", ["-n", "-m", "\(together)", "http://127.0.0.1:\(server.port)/wait"], timeout: .seconds(30))
        #expect(result.status == 0)
        #expect(waiting.withLock { $0.count } == together)

        let leaving = try RawConnection(port: server.port)
        try leaving.send("GET /hang HTTP/1.1\r\nhost: x\r\n\r\n")
        // the next request is taken by another worker while /hang waits
        let check = try RawConnection(port: server.port)
        try check.send("GET /check HTTP/1.1\r\nhost: x\r\n\r\n")
        #expect(try check.readResponse().body == "cancelled=false")
        leaving.reset()
        var events = cancelled.makeAsyncIterator()
        #expect(await events.next() == true)
        // the worker whose task was cancelled does not serve again: later requests are not cancelled
        for _ in 0..<5 {
            try check.send("GET /check HTTP/1.1\r\nhost: x\r\n\r\n")
            #expect(try check.readResponse().body == "cancelled=false")
        }
        await server.shutdownGracefully(timeout: .seconds(10))
    }

    @Test func http2TrailersAndHeadersReachAClient() async throws {
        let server = try HTTPServer(configuration: .init(host: "127.0.0.1"), logger: Self.logger) { request, responder in
            responder.send(HTTPServerResponse(
                status: 200,
                headers: ["Content-Type": "text/plain", "X-Path": request.path],
                body: Array(request.body.reversed()),
                trailers: ["x-check": "done"]
            ))
        }
        let result = try await Tool.run("nghttp", ["-v", "-d", "/dev/stdin", "http://127.0.0.1:\(server.port)/p?q=1"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("x-path: /p?q=1"))
        #expect(result.stdout.contains("x-check: done"))
        await server.shutdownGracefully(timeout: .seconds(10))
    }

    /// Headers frozen into their C form once and reused: any change to a copy is what goes out.
    @Test func frozenHeadersSendTheirChangesToo() async throws {
        let base = HTTPHeaders([("content-type", "text/plain"), ("x-kept", "1")]).frozen()
        let server = try HTTPServer(configuration: .init(host: "127.0.0.1"), logger: Self.logger) { request, responder in
            var headers = base
            switch request.path {
            case "/add": headers.add(name: "x-added", value: "2")
            case "/set": headers["x-kept"] = "changed"
            case "/remove": headers.remove("x-kept")
            default: break
            }
            responder.send(HTTPServerResponse(headers: headers, body: Array("ok".utf8)))
        }
        func headers(_ path: String) async throws -> String {
            let result = try await Tool.run("curl", ["-s", "-D", "-", "-o", "/dev/null", "--http2-prior-knowledge", "http://127.0.0.1:\(server.port)\(path)"])
            return result.stdout.lowercased()
        }
        let plain = try await headers("/")
        #expect(plain.contains("x-kept: 1") && plain.contains("content-type: text/plain"))
        let added = try await headers("/add")
        #expect(added.contains("x-kept: 1") && added.contains("x-added: 2"))
        let set = try await headers("/set")
        #expect(set.contains("x-kept: changed") && !set.contains("x-kept: 1"))
        let removed = try await headers("/remove")
        #expect(!removed.contains("x-kept") && removed.contains("content-type: text/plain"))
        #expect(base["x-kept"] == "1")  // the frozen original is untouched
        await server.shutdownGracefully(timeout: .seconds(10))
    }

    @Test func portInUseIsAClearError() async throws {
        let server = try HTTPServer(configuration: .init(host: "127.0.0.1"), logger: Self.logger) { _, r in
            r.send(HTTPServerResponse())
        }
        #expect {
            _ = try HTTPServer(configuration: .init(host: "127.0.0.1", port: server.port), logger: Self.logger) { _, r in
                r.send(HTTPServerResponse())
            }
        } throws: { error in
            "\(error)".contains("Address already in use")
        }
        await server.shutdownGracefully(timeout: .seconds(10))
    }
}
