import Foundation
import MicroCore
import MicroTestSupport
import Testing

/// The HTTP/2 client (the core's own framing, CShims/CMicroCore/h2client.c) against a raw server
/// that sends what a real server may, frame by frame (Tests/Peers/h2_server_peer.py): header
/// blocks in pieces, padding, interim answers, trailers, a dynamic HPACK table, windows to wait
/// on, settings changed mid-connection, refusals, malformed answers and an HPACK bomb. The peer
/// reports what its connections saw of the client (`/report`).
@Suite struct HTTP2ClientConformanceTests {
    static let peer = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Peers/h2_server_peer.py").path

    struct Report: Decodable {
        var size_updates_ok: Bool
        var max_open: Int
        var resets: [Int]
    }

    /// Runs `body` with a client of one loop (one connection, whose every frame the peer's report
    /// covers) against a peer started with `arguments`; an error says what the peer logged (why it
    /// ended a connection, if it did).
    static func withPeer(_ arguments: [String] = [], _ body: (HTTPClient, String) async throws -> Void) async throws {
        let peer = try await ChildService("/usr/bin/env", arguments: ["python3", Self.peer] + arguments)
        defer { peer.stop() }
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.shutdown() }
        let client = HTTPClient(group: group)
        do {
            try await body(client, "127.0.0.1:\(peer.port)")
        } catch {
            Issue.record("\(error); the peer said: \(peer.logLines)")
        }
        await client.close()
    }

    static func call(_ client: HTTPClient, _ address: String, _ path: String, body: [UInt8] = [],
                     deadline: ContinuousClock.Instant? = nil) async throws(HTTPClientError) -> HTTPClientResponse {
        try await client.request(address: address, path: path, headers: ["content-type": "application/octet-stream"], body: body,
                                 deadline: deadline ?? .now + .seconds(120))  // a bound on a broken case, never a measurement
    }

    static func report(_ client: HTTPClient, _ address: String) async throws -> Report {
        try JSONDecoder().decode(Report.self, from: Data(try await call(client, address, "/report").body))
    }

    @Test func answersInEveryShapeAServerMaySend() async throws {
        try await Self.withPeer { client, address in try await Self.answersInEveryShape(client, address) }
    }

    static func answersInEveryShape(_ client: HTTPClient, _ address: String) async throws {

        let echo = try await Self.call(client, address, "/echo", body: Array("hello".utf8))
        #expect(echo.status == 200)
        #expect(echo.body == Array("hello".utf8))
        #expect(echo.headers["x-body-length"] == "5")

        // a block in a HEADERS and three CONTINUATIONs, its fields in the dynamic table
        let split = try await Self.call(client, address, "/split-headers")
        #expect(split.status == 200)
        #expect(split.headers["x-field-0"] == String(repeating: "a", count: 600))
        #expect(split.headers["x-field-23"] == String(repeating: "x", count: 600))
        #expect(split.body == Array("split".utf8))

        let padded = try await Self.call(client, address, "/padded")
        #expect(padded.status == 200)
        #expect(padded.body == Array("padded".utf8))

        let interim = try await Self.call(client, address, "/interim")
        #expect(interim.status == 200)
        #expect(interim.headers["content-type"] == "text/plain")
        #expect(interim.body == Array("after interim".utf8))

        let trailers = try await Self.call(client, address, "/trailers")
        #expect(trailers.status == 200)
        #expect(trailers.body == Array("body".utf8))
        #expect(trailers.trailers["grpc-status"] == "0")
        #expect(trailers.trailers["x-trailer"] == "t")

        // more than the stream's window (1 MiB): the client gives the window back as it reads
        let size = 3 * 1024 * 1024 + 17
        let large = try await Self.call(client, address, "/large?\(size)")
        #expect(large.body.count == size)
        #expect(large.body.enumerated().allSatisfy { $0.element == UInt8($0.offset % 251) })

        let pinged = try await Self.call(client, address, "/ping-first")
        #expect(pinged.body == Array("after ping".utf8))
        let resettled = try await Self.call(client, address, "/settings-mid")
        #expect(resettled.body == Array("after settings".utf8))

        // after all of it: the connection's HPACK table still in step with the server's
        let again = try await Self.call(client, address, "/split-headers")
        #expect(again.headers["x-field-5"] == String(repeating: "f", count: 600))
    }

    @Test func refusalsMalformedAnswersAndBombsEndTheirCallOnly() async throws {
        try await Self.withPeer { client, address in try await Self.refusalsMalformedAnswersAndBombs(client, address) }
    }

    static func refusalsMalformedAnswersAndBombs(_ client: HTTPClient, _ address: String) async throws {

        // refused: never processed, so safe to make again elsewhere
        await #expect(throws: HTTPClientError.self) { try await Self.call(client, address, "/refused") }
        do { _ = try await Self.call(client, address, "/refused") } catch { #expect(error.kind == .refused, "\(error)") }

        // a field name in upper case: the call breaks, the connection serves on
        do {
            _ = try await Self.call(client, address, "/uppercase")
            Issue.record("a malformed answer was taken")
        } catch {
            #expect(error.kind == .reset, "\(error)")
        }
        // fewer bytes than its content-length said; a 101, which HTTP/2 does not have
        for path in ["/short-length", "/switching"] {
            do {
                _ = try await Self.call(client, address, path)
                Issue.record("\(path): a malformed answer was taken")
            } catch {
                #expect(error.kind == .reset, "\(path): \(error)")
            }
        }
        // one 4000-byte table entry referred to 40 times: past the 64 KiB of fields a call takes
        do {
            _ = try await Self.call(client, address, "/bomb")
            Issue.record("an HPACK bomb was decoded whole")
        } catch {
            #expect(error.kind == .tooLarge, "\(error)")
        }
        #expect(try await Self.call(client, address, "/echo", body: [1, 2, 3]).body == [1, 2, 3])
        let report = try await Self.report(client, address)
        #expect(report.resets.contains(0x1), "the malformed answer's stream is reset with PROTOCOL_ERROR: \(report.resets)")
        #expect(report.resets.contains(0x8), "the bomb's stream is reset with CANCEL: \(report.resets)")

        // GOAWAY below this call: refused; the next call opens a new connection
        do {
            _ = try await Self.call(client, address, "/goaway")
            Issue.record("a call above the GOAWAY was answered")
        } catch {
            #expect(error.kind == .refused, "\(error)")
        }
        #expect(try await Self.call(client, address, "/echo", body: [4]).body == [4])
    }

    /// A 100-byte initial window and a table size of 0: the client sends a large body only as the
    /// server credits it (the peer ends the connection if a window is ever passed), and announces
    /// its table size before its first block. At most two streams open: ten calls at once wait
    /// their turn rather than being refused.
    @Test func windowsTableSizeAndStreamLimitAreKept() async throws {
        try await Self.withPeer(["--initial-window", "100", "--header-table-size", "0", "--max-streams", "2"]) { client, address in
            try await Self.keepsWindowsTableSizeAndStreamLimit(client, address)
        }
    }

    static func keepsWindowsTableSizeAndStreamLimit(_ client: HTTPClient, _ address: String) async throws {
        let body = Pattern.bytes(300_000)
        let echo = try await Self.call(client, address, "/echo", body: body)
        #expect(echo.headers["x-body-length"] == "300000")
        #expect(echo.body == body)

        // /hold answers once two are open at once (all of them 500 if a third opens)
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<10 { group.addTask { try await Self.call(client, address, "/hold").status } }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(statuses == Array(repeating: 200, count: 10))
        let report = try await Self.report(client, address)
        #expect(report.size_updates_ok)
        #expect(report.max_open == 2)  // the limit reached, never passed
    }
}
