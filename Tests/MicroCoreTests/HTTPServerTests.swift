import Foundation
import Logging
@testable import MicroCore
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
        #expect(try await a.readResponse().body == "on-loop")
        #expect(try await b.readResponse().body == "on-loop")
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
        let result = try await Tool.run("nghttp", ["-n", "-m", "\(together)", "http://127.0.0.1:\(server.port)/wait"])
        #expect(result.status == 0)
        #expect(waiting.withLock { $0.count } == together)

        let leaving = try RawConnection(port: server.port)
        try leaving.send("GET /hang HTTP/1.1\r\nhost: x\r\n\r\n")
        // the next request is taken by another worker while /hang waits
        let check = try RawConnection(port: server.port)
        try check.send("GET /check HTTP/1.1\r\nhost: x\r\n\r\n")
        #expect(try await check.readResponse().body == "cancelled=false")
        leaving.reset()
        var events = cancelled.makeAsyncIterator()
        #expect(await events.next() == true)
        // the worker whose task was cancelled does not serve again: later requests are not cancelled
        for _ in 0..<5 {
            try check.send("GET /check HTTP/1.1\r\nhost: x\r\n\r\n")
            #expect(try await check.readResponse().body == "cancelled=false")
        }
        await server.shutdownGracefully(timeout: .seconds(10))
    }

    /// An answer given while its request's read is handled is written at once, ahead of the
    /// rest of the loop turn (the application's clean-up), if no other request of that read
    /// follows it: requests that came together still get their answers in one write, made by
    /// the last of them. A worker's answer waits for the loop's flush, as before. On HTTP/1.1
    /// and HTTP/2, every answer arrives, in order.
    @Test func theLastAnswerOfAReadIsWrittenAtOnceAndRequestsReadTogetherShareOneWrite() async throws {
        let server = try HTTPServer(
            configuration: .init(host: "127.0.0.1"), logger: Self.logger, streamPaths: nil,
            immediate: { request, responder in
                guard request.path.hasPrefix("/now") else { return false }
                responder.send(HTTPServerResponse(body: Array(request.path.utf8)))
                return true
            }
        ) { request, responder in
            await Task.yield()
            responder.send(HTTPServerResponse(body: Array("later \(request.path)".utf8)))
        }
        defer { server.shutdown() }
        let h1 = try RawConnection(port: server.port)
        try h1.send("GET /now/1 HTTP/1.1\r\nhost: x\r\n\r\n")
        #expect(try await h1.readResponse().body == "/now/1")
        #expect(server.stats.earlyWrites == 1)
        // three requests in one write: their answers leave together, written by the last
        try h1.send((2...4).map { "GET /now/\($0) HTTP/1.1\r\nhost: x\r\n\r\n" }.joined())
        for k in 2...4 { #expect(try await h1.readResponse().body == "/now/\(k)") }
        #expect(server.stats.earlyWrites == 2)
        try h1.send("GET /later HTTP/1.1\r\nhost: x\r\n\r\n")
        #expect(try await h1.readResponse().body == "later /later")
        #expect(server.stats.earlyWrites == 2)

        // HTTP/2: the preface, SETTINGS and a request in one write; then two requests in one
        let h2 = try RawConnection(port: server.port)
        func get(_ stream: UInt32, _ path: String) -> [UInt8] {
            // HPACK: :method GET, :scheme http, :path (literal, not indexed), :authority "x"
            let block: [UInt8] = [0x82, 0x86, 0x04, UInt8(path.utf8.count)] + Array(path.utf8) + [0x41, 0x01, 0x78]
            return H2Frames.frame(1, flags: 0x5, stream: stream, block)
        }
        func answered(_ frames: [(type: UInt8, flags: UInt8, stream: UInt32, payload: [UInt8])], _ stream: UInt32) -> String {
            String(decoding: frames.filter { $0.type == 0 && $0.stream == stream }.flatMap(\.payload), as: UTF8.self)
        }
        let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + H2Frames.frame(4, stream: 0)
        try h2.send(preface + get(1, "/now/a"))
        var frames = try await H2Frames.read(h2) { type, flags, stream in type == 0 && flags & 1 != 0 && stream == 1 }
        #expect(answered(frames, 1) == "/now/a")
        #expect(server.stats.earlyWrites == 3)
        try h2.send(get(3, "/now/b") + get(5, "/now/c"))
        frames = try await H2Frames.read(h2) { type, flags, stream in type == 0 && flags & 1 != 0 && stream == 5 }
        #expect(answered(frames, 3) == "/now/b" && answered(frames, 5) == "/now/c")
        #expect(server.stats.earlyWrites == 4)
        try h2.send(get(7, "/later"))
        frames = try await H2Frames.read(h2) { type, flags, stream in type == 0 && flags & 1 != 0 && stream == 7 }
        #expect(answered(frames, 7) == "later /later")
        #expect(server.stats.earlyWrites == 4)

        // TLS: sealed and written at once too. curl's HTTP/1.1 request is the last record of its
        // read; over HTTP/2 a SETTINGS ACK may follow the request in the same read, and then the
        // answer rightly waits for the flush
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("early-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let files = try await TestCertificates.make(in: dir)
        var configuration = HTTPServerConfiguration(host: "127.0.0.1")
        configuration.tls = TLSConfig(certificate: .file(files["server.crt"]!), privateKey: .file(files["server.key"]!), clientAuth: .none)
        let tls = try HTTPServer(
            configuration: configuration, logger: Self.logger, streamPaths: nil,
            immediate: { request, responder in
                responder.send(HTTPServerResponse(body: Array(request.path.utf8)))
                return true
            }
        ) { _, responder in responder.send(HTTPServerResponse(status: 500)) }
        defer { tls.shutdown() }
        for version in ["--http1.1", "--http2"] {
            let result = try await Tool.run("curl", ["-s", version, "--cacert", files["ca.crt"]!, "https://127.0.0.1:\(tls.port)/now/tls"])
            #expect(result.stdout == "/now/tls", "\(version): \(result.stderr)")
            if version == "--http1.1" { #expect(tls.stats.earlyWrites == 1) }
        }
    }

    /// An answer written at once leaves nothing waiting: a loop turn held up after it (a job that
    /// blocks the loop for longer than the write timeout) must not read as a peer that took no
    /// output. The connection stays open and answers again.
    @Test func aLoopHeldUpAfterAnEarlyWriteDoesNotCloseTheConnection() async throws {
        // a loop of its own: blocking the shared one would hold up every other test's servers
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.shutdown() }
        var configuration = HTTPServerConfiguration(host: "127.0.0.1")
        configuration.writeTimeout = .milliseconds(200)
        let server = try HTTPServer(
            group: group, configuration: configuration, logger: Self.logger, streamPaths: nil,
            immediate: { request, responder in
                responder.send(HTTPServerResponse(body: Array(request.path.utf8)))
                // runs in this loop turn, after the answer's early write and before the flush
                if request.path == "/block" { request.loop.execute { usleep(500_000) } }
                return true
            }
        ) { _, responder in responder.send(HTTPServerResponse(status: 500)) }
        defer { server.shutdown() }
        let conn = try RawConnection(port: server.port)
        try conn.send("GET /block HTTP/1.1\r\nhost: x\r\n\r\n")
        #expect(try await conn.readResponse().body == "/block")
        #expect(server.stats.earlyWrites == 1)
        try conn.send("GET /after HTTP/1.1\r\nhost: x\r\n\r\n")
        #expect(try await conn.readResponse().body == "/after")
    }

    /// Busy polling: a loop that read keeps polling without sleeping for its window, then sleeps
    /// again; a loop without it never spins.
    @Test func aBusyPollingLoopSpinsAfterAReadAndComesToRestAfterItsWindow() async throws {
        let window = Duration.milliseconds(20)
        let group = try EventLoopGroup(numberOfThreads: 1, busyPoll: window)
        let quiet = try EventLoopGroup(numberOfThreads: 1)
        defer { group.shutdown(); quiet.shutdown() }
        #expect(group.busyPoll == window && quiet.busyPoll == .zero)
        let servers = try [group, quiet].map { group in
            try HTTPServer(group: group, configuration: .init(host: "127.0.0.1"), logger: Self.logger) { request, responder in
                responder.send(HTTPServerResponse(body: Array(request.path.utf8)))
            }
        }
        defer { for server in servers { server.shutdown() } }
        let (loop, quietLoop) = (group.loops[0], quiet.loops[0])
        #expect(loop.busyPollTurns == 0)  // listening, nothing read: it sleeps
        for server in servers {
            for mode in ["--http1.1", "--http2-prior-knowledge"] {
                let result = try await Tool.run("curl", ["-sS", mode, "http://127.0.0.1:\(server.port)/answered"])
                #expect(result.stdout == "/answered", "\(mode): \(result.stderr)")
            }
        }
        // two hops to each loop: the second job runs in a later turn than the reads, whose
        // prepare phase has started the spin
        for target in [loop, quietLoop] {
            for _ in 0..<2 { await withTaskExecutorPreference(target) {} }
        }
        #expect(loop.busyPollTurns > 0)
        #expect(quietLoop.busyPollTurns == 0)
        // At rest again: no turn counted over a span longer than the window. (No event marks
        // the window's end; the bound only limits how long a loop that spins forever is given.)
        var rested = false
        for _ in 0..<200 where !rested {
            let before = loop.busyPollTurns
            try await Task.sleep(for: window * 3)
            rested = loop.busyPollTurns == before
        }
        #expect(rested, "the loop still spins long after its last read")
        // turned off, it no longer spins after a read
        group.busyPoll = .zero
        let turns = loop.busyPollTurns
        let result = try await Tool.run("curl", ["-sS", "http://127.0.0.1:\(servers[0].port)/again"])
        #expect(result.stdout == "/again")
        for _ in 0..<2 { await withTaskExecutorPreference(loop) {} }
        #expect(loop.busyPollTurns == turns)
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
        // nghttp's decoder with its own table size, and with none at all (SETTINGS_HEADER_TABLE_SIZE
        // 0: a decoder that shrinks its table refuses a block that does not say it saw that first)
        for table in ["4096", "0"] {
            let result = try await Tool.run("nghttp", ["-v", "-c", table, "-d", "/dev/stdin", "http://127.0.0.1:\(server.port)/p?q=1"])
            #expect(result.status == 0, "\(table): \(result.stdout) \(result.stderr)")
            #expect(result.stdout.contains("x-path: /p?q=1"), "\(table)")
            #expect(result.stdout.contains("x-check: done"), "\(table)")
        }
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

    /// Request headers arrive as one block and become Strings only when read; a body shaped like
    /// one gRPC message is kept without its prefix. Neither may show: the handler sees every
    /// field and byte as sent, looks names up without regard to case, and changes copies only.
    @Test(arguments: [["--http1.1"], ["--http2-prior-knowledge"]])
    func requestHeadersAndBodiesReachTheHandlerAsSent(version: [String]) async throws {
        let server = try HTTPServer(configuration: .init(host: "127.0.0.1"), logger: Self.logger) { request, responder in
            var report: [String] = []
            report.append("mixed=\(request.headers["X-MIXED-case"] ?? "nil")")
            report.append("multi=\(request.headers.filter { $0.name == "x-multi" }.map(\.value).joined(separator: ","))")
            report.append("utf8=\(request.headers["x-utf8"] ?? "nil")")
            report.append("type=\(request.headers["content-type"] ?? "nil")")
            report.append("absent=\(request.headers["x-absent"] ?? "nil")")
            var changed = request.headers
            changed["x-multi"] = "c"
            report.append("changed=\(changed.filter { $0.name == "x-multi" }.map(\.value).joined(separator: ","))")
            report.append("count=\(request.headers.count - changed.count)")
            report.append("kept=\(request.headers.filter { $0.name == "x-multi" }.count)")
            report.append("equal=\(HTTPHeaders(Array(request.headers.map { ($0.name, $0.value) })) == request.headers)")
            var moved = request
            moved.path = "/moved"
            report.append("paths=\(request.path),\(moved.path),\(moved.headers["x-utf8"] ?? "nil")")
            responder.send(HTTPServerResponse(
                headers: ["x-report": report.joined(separator: ";")],
                body: moved.body  // the bytes exactly as they came, whatever their shape
            ))
        }
        let bodies: [[UInt8]] = [
            [0, 0, 0, 0, 3] + Array("abc".utf8),  // one uncompressed gRPC message
            [0, 0, 0, 0, 9] + Array("abc".utf8),  // a prefix whose length is wrong
            [1, 0, 0, 0, 3] + Array("abc".utf8),  // a compressed one
            Array("{\"name\":\"x\"}".utf8),
        ]
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("bodies-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for (i, body) in bodies.enumerated() {
            let input = dir.appendingPathComponent("in\(i)"), output = dir.appendingPathComponent("out\(i)")
            try Data(body).write(to: input)
            let result = try await Tool.run("curl", version + [
                "-s", "-D", "-", "-o", output.path, "--data-binary", "@\(input.path)",
                "-H", "content-type: application/grpc", "-H", "X-Mixed-Case: Value", "-H", "x-multi: a", "-H", "x-multi: b",
                "-H", "x-utf8: grüße", "http://127.0.0.1:\(server.port)/path?q=1",
            ])
            let report = result.stdout.split(separator: "\r\n").first { $0.lowercased().hasPrefix("x-report:") }.map(String.init) ?? ""
            #expect(report.contains("mixed=Value;multi=a,b;utf8=grüße;type=application/grpc;absent=nil"), "\(report)")
            #expect(report.contains("changed=c;count=1;kept=2;equal=true"), "\(report)")
            #expect(report.contains("paths=/path?q=1,/moved,grüße"), "\(report)")
            #expect(try Array(Data(contentsOf: output)) == body, "body \(i)")
        }
        await server.shutdownGracefully(timeout: .seconds(10))
    }

    /// A handler sees each request's own path, however many long paths come and go on a loop:
    /// paths past 15 bytes are remembered (a few, replaced oldest first) so that one that comes
    /// again reuses its String; a path past the remembered length, one that is not UTF-8, and
    /// one that differs from a remembered path in its last byte are answered as they came.
    @Test func pathsAreTheirOwnThroughTheLoopsRecentPaths() async throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.shutdown() }
        let server = try HTTPServer(group: group, configuration: .init(host: "127.0.0.1"), logger: Self.logger) { request, responder in
            responder.send(HTTPServerResponse(body: Array(request.path.utf8)))
        }
        let long = "/" + String(repeating: "x", count: RecentStrings.maxLength + 10)
        var paths = (0..<(RecentStrings.capacity + 4)).map { "/package.Service\($0)/Method" }
        paths += ["/package.Service1/Methoe", long, "/short", "/package.Service1/Method"]
        let conn = try RawConnection(port: server.port)
        for round in 0..<2 {
            for path in paths {
                try conn.send("GET \(path) HTTP/1.1\r\nhost: x\r\n\r\n")
                #expect(try await conn.readResponse().body == path, "round \(round)")
            }
        }
        // not UTF-8: repaired, the same way each time (or refused by the parser, which is fine too)
        for _ in 0..<2 {
            let raw = try RawConnection(port: server.port)
            try raw.send(Array("GET /package.Service/Method".utf8) + [0xFF] + Array(" HTTP/1.1\r\nhost: x\r\n\r\n".utf8))
            let response = try await raw.readResponse()
            #expect(response.status == 200 && response.body == "/package.Service/Method\u{FFFD}" || response.status == 400, "\(response)")
        }
        await server.shutdownGracefully(timeout: .seconds(10))
    }

    @Test func recentStringsAreBoundedAndReused() {
        let recent = RecentStrings()
        func string(_ text: String) -> String {
            var text = text
            return text.withUTF8 { $0.withMemoryRebound(to: CChar.self) { recent.string($0.baseAddress, $0.count) } }
        }
        func storage(_ s: String) -> UnsafeRawPointer? { s.utf8.withContiguousStorageIfAvailable { UnsafeRawPointer($0.baseAddress) } ?? nil }
        let first = string("/package.Service/Method")
        let again = string("/package.Service/Method")
        #expect(first == again && storage(first) == storage(again))  // one String, reused
        #expect(string("/short") == "/short" && recent.count == 1)  // inline: nothing kept
        for i in 0..<(RecentStrings.capacity * 3) { #expect(string("/package.Service\(i)/Method") == "/package.Service\(i)/Method") }
        #expect(recent.count == RecentStrings.capacity)
        let fresh = RecentStrings()
        var long = "/" + String(repeating: "y", count: RecentStrings.maxLength)
        let made = long.withUTF8 { $0.withMemoryRebound(to: CChar.self) { fresh.string($0.baseAddress, $0.count) } }
        #expect(made == long && fresh.count == 0)  // too long to keep
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
