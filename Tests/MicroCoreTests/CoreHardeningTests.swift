import Foundation
import Logging
import MicroCore
import MicroTestSupport
import Synchronization
import Testing

/// The core's own answers to bad input and its lifecycle edges, from raw sockets and curl.
@Suite struct CoreHardeningTests {
    static let logger = Logger(label: "test")

    static func frame(_ type: UInt8, flags: UInt8 = 0, stream: UInt32, _ payload: [UInt8] = []) -> [UInt8] {
        H2Frames.frame(type, flags: flags, stream: stream, payload)
    }

    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + frame(4, stream: 0)
    /// HPACK: :method POST, :scheme http, :path /, :authority "x".
    static let requestBlock: [UInt8] = [0x83, 0x86, 0x84, 0x41, 0x01, 0x78]

    static func frames(_ bytes: [UInt8]) -> [(type: UInt8, flags: UInt8, stream: UInt32, payload: [UInt8])] {
        H2Frames.parse(bytes)
    }

    static func read(_ conn: RawConnection, until match: (UInt8, UInt8, UInt32) -> Bool) async throws -> [(type: UInt8, flags: UInt8, stream: UInt32, payload: [UInt8])] {
        try await H2Frames.read(conn, until: match)
    }

    /// An answer field with CR/LF would split an HTTP/1.1 answer, and a status that is not three
    /// digits makes a status line no client reads (and one past Int32 must not trap): the core
    /// answers 500 instead, and a streamed answer's head with such a status is refused;
    /// connection-specific fields set by a handler are dropped (the core frames the answer), and
    /// its `Connection: close` is honoured.
    @Test func answerFieldsAreValidated() async throws {
        let refusedHead = Mutex<String?>(nil)
        let server = try HTTPServer(configuration: .init(host: "127.0.0.1"), logger: Self.logger) { request, responder in
            switch request.path {
            case "/split":
                responder.send(HTTPServerResponse(headers: ["x-evil": "a\r\nset-cookie: stolen=1"], body: Array("no".utf8)))
            case "/status/42": responder.send(HTTPServerResponse(status: 42, body: Array("no".utf8)))
            case "/status/1000": responder.send(HTTPServerResponse(status: 1000, body: Array("no".utf8)))
            case "/status/huge": responder.send(HTTPServerResponse(status: Int.max, body: Array("no".utf8)))
            case "/stream/42":
                do {
                    try await responder.sendHead(status: 42)
                } catch {
                    refusedHead.withLock { $0 = "\(error)" }
                    responder.send(HTTPServerResponse(status: 502, body: Array("refused".utf8)))
                }
            default:
                responder.send(HTTPServerResponse(headers: ["transfer-encoding": "chunked", "connection": "close", "keep-alive": "x"],
                                                  body: Array("framed".utf8)))
            }
        }
        defer { server.shutdown() }
        for version in ["--http1.1", "--http2-prior-knowledge"] {
            let split = try await Tool.run("curl", ["-s", "-i", version, "http://127.0.0.1:\(server.port)/split"])
            #expect(split.stdout.contains(" 500"), "\(version): \(split.stdout)")
            #expect(!split.stdout.lowercased().contains("set-cookie"), "\(version): \(split.stdout)")
            for status in ["42", "1000", "huge"] {
                let bad = try await Tool.run("curl", ["-s", "-w", "\n%{http_code}", version, "http://127.0.0.1:\(server.port)/status/\(status)"])
                #expect(bad.stdout.hasSuffix("\n500"), "\(version) \(status): \(bad.stdout)")
                #expect(bad.stdout.contains("not 100-999"), "\(version) \(status): \(bad.stdout)")
            }
            refusedHead.withLock { $0 = nil }
            let stream = try await Tool.run("curl", ["-s", "-w", "\n%{http_code}", version, "http://127.0.0.1:\(server.port)/stream/42"])
            #expect(stream.stdout == "refused\n502", "\(version): \(stream.stdout)")
            #expect(refusedHead.withLock { $0 }?.contains("status 42 is not an HTTP status") == true)
        }
        let conn = try RawConnection(port: server.port)
        try conn.send("GET /framed HTTP/1.1\r\nhost: x\r\n\r\n")
        let response = try await conn.readResponse()
        #expect(response.body == "framed")
        #expect(response.headers["transfer-encoding"] == nil)
        #expect(response.headers["keep-alive"] == nil)
        #expect(response.headers["connection"] == "close")
        #expect(try await conn.readToEnd().isEmpty)
    }

    /// HTTP/2: a request past the header or body limit is answered 431 / 413 as soon as the
    /// limit is passed, before the client ends its stream; the rest is refused with RST_STREAM.
    @Test func limitsAreAnsweredBeforeTheRequestEnds() async throws {
        var config = HTTPServerConfiguration(host: "127.0.0.1")
        config.maxBodyBytes = 10
        config.maxHeaderBytes = 1024
        let server = try HTTPServer(configuration: config, logger: Self.logger) { _, responder in
            responder.send(HTTPServerResponse(body: Array("handled".utf8)))
        }
        defer { server.shutdown() }
        let conn = try RawConnection(port: server.port)
        // stream 1: 20 body bytes, no END_STREAM
        var bytes = Self.preface + Self.frame(1, flags: 0x4, stream: 1, Self.requestBlock) + Self.frame(0, stream: 1, Array(repeating: 0x61, count: 20))
        // stream 3: a 2 KB field, END_HEADERS without END_STREAM
        let big = [UInt8](repeating: 0x62, count: 2000)
        bytes += Self.frame(1, flags: 0x4, stream: 3, Self.requestBlock + [0x00, 0x01, 0x78, 0x7f, 0xd1, 0x0e] + big)
        try conn.send(bytes)
        var ended = Set<UInt32>()
        let got = try await Self.read(conn) { type, flags, stream in
            if type == 0 && flags & 0x1 != 0 { ended.insert(stream) }
            return ended.count == 2
        }
        func body(_ stream: UInt32) -> String {
            String(decoding: got.filter { $0.type == 0 && $0.stream == stream }.flatMap(\.payload), as: UTF8.self)
        }
        #expect(body(1).contains("\"code\":413"), "\(body(1))")
        #expect(body(3).contains("\"code\":431"), "\(body(3))")
        // the client never sent END_STREAM: the rest of each request is refused
        #expect(got.contains { $0.type == 3 && $0.stream == 1 })
    }

    /// Graceful shutdown on HTTP/2: first a GOAWAY notice (the highest id) with a PING, and the
    /// final GOAWAY (the last stream processed) once the PING comes back.
    @Test func shutdownSendsANoticeThenTheFinalGoaway() async throws {
        let server = try HTTPServer(configuration: .init(host: "127.0.0.1"), logger: Self.logger) { _, responder in
            responder.send(HTTPServerResponse(body: Array("ok".utf8)))
        }
        let conn = try RawConnection(port: server.port)
        try conn.send(Self.preface + Self.frame(1, flags: 0x5, stream: 1, Self.requestBlock))
        _ = try await Self.read(conn) { type, flags, stream in stream == 1 && flags & 0x1 != 0 }
        server.shutdown()
        let notice = try await Self.read(conn) { type, flags, _ in type == 6 && flags & 0x1 == 0 }
        let goaways = notice.filter { $0.type == 7 }
        #expect(goaways.first.map { $0.payload[0..<4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } & 0x7fff_ffff } == 0x7fff_ffff)
        let ping = try #require(notice.first { $0.type == 6 && $0.flags & 0x1 == 0 },
                                "no PING after the notice; frames: \(notice.map { ($0.type, $0.flags, $0.stream) })")
        try conn.send(Self.frame(6, flags: 0x1, stream: 0, ping.payload))
        let final = try await Self.read(conn) { type, _, _ in type == 7 }
        let last = try #require(final.filter { $0.type == 7 }.last, "no final GOAWAY; frames: \(final.map { ($0.type, $0.flags, $0.stream) })")
        #expect(last.payload[0..<4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } & 0x7fff_ffff == 1)
        await server.waitUntilClosed()
    }

    /// A loop held up past a connection's idle deadline (a handler blocking it, a starved
    /// machine) runs its timers before it reads. The request that came meanwhile is read and
    /// answered, not cut off by a deadline that passed while the loop was away (it was closed
    /// unread, and the caller saw its connection break mid-call).
    @Test func aDeadlineThatPassedWhileTheLoopWasHeldReadsWhatCameFirst() async throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.shutdown() }
        let loop = group.loops[0]
        let idle = Duration.milliseconds(300)
        var configuration = HTTPServerConfiguration(host: "127.0.0.1")
        configuration.idleTimeout = idle
        let second = DispatchSemaphore(value: 0)
        let server = try HTTPServer(group: group, configuration: configuration, logger: Self.logger) { request, responder in
            responder.send(HTTPServerResponse(body: Array(request.path.utf8)))
            guard request.path == "/one" else { return }
            // the hold is posted from another thread, so that it runs in a later loop turn than
            // this handler: after that turn's flush has written the answer and the connection went
            // idle. It lasts until the next request was sent and the idle deadline is well past,
            // however long this test takes to get there (a guard of a minute, never reached)
            DispatchQueue.global().async {
                loop.execute {
                    let held = ContinuousClock.now
                    _ = second.wait(timeout: .now() + 60)
                    while ContinuousClock.now < held + idle + .milliseconds(100) { usleep(10_000) }
                }
            }
        }
        let conn = try RawConnection(port: server.port)
        try conn.send("GET /one HTTP/1.1\r\nhost: x\r\n\r\n")
        #expect(try await conn.readResponse().body == "/one")
        try conn.send("GET /two HTTP/1.1\r\nhost: x\r\n\r\n")
        second.signal()
        #expect(try await conn.readResponse().body == "/two")
        conn.closeWrite()
        server.shutdown()
        await server.waitUntilClosed()
    }

    /// After a loop stopped, work sent to it from another thread runs there once (it used to post
    /// itself again without end).
    @Test func workForAStoppedLoopRunsOnceWhereItIs() async throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        group.shutdown()
        let runs = Mutex(0)
        let sawLoop = Mutex(false)
        @Sendable func again(_ depth: Int) {
            // the pattern of every loop-confined method: hop if not on the loop
            guard loop.inEventLoop else { return loop.execute { again(depth + 1) } }
            runs.withLock { $0 += 1 }
            sawLoop.withLock { $0 = depth == 1 }
        }
        again(0)
        #expect(runs.withLock { $0 } == 1)
        #expect(sawLoop.withLock { $0 })
    }
}
