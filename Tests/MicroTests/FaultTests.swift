import Foundation
import Micro
import MicroTestSupport
import Testing

/// Peers that misbehave mid-exchange, from raw sockets: the server answers what it can, cleans up
/// and keeps serving.
@Suite struct FaultTests {
    typealias F = FloodTests

    /// HPACK of a request with a body to come: :method POST, :scheme http, :path /, :authority x,
    /// content-type application/json (literal), micro-endpoint Greeter.Hello (literal).
    static let helloBlock: [UInt8] = F.requestBlock
        + [0x00, 0x0c] + Array("content-type".utf8) + [0x10] + Array("application/json".utf8)
        + [0x00, 0x0e] + Array("micro-endpoint".utf8) + [0x0d] + Array("Greeter.Hello".utf8)

    /// More streams than SETTINGS_MAX_CONCURRENT_STREAMS (250): the ones above are refused
    /// (RST_STREAM REFUSED_STREAM), the connection and the others carry on.
    @Test func streamsAboveTheLimitAreRefusedNotTheConnection() async throws {
        let service = try F.service()
        defer { service.stop() }
        let conn = try RawConnection(port: service.port!)
        var bytes = F.preface
        for i in 0..<260 { bytes += F.frame(1, flags: 0x4, stream: UInt32(2 * i + 1), Self.helloBlock) }  // open, body to come
        try conn.send(bytes)
        // end the first stream properly: it is answered
        let body = Array(#"{"name":"first"}"#.utf8)
        try conn.send(F.frame(0, flags: 0x1, stream: 1, body))  // DATA, END_STREAM
        var seen: [(type: UInt8, stream: UInt32, code: UInt32?)] = []
        var buffer: [UInt8] = []
        while !seen.contains(where: { $0.type == 0 && $0.stream == 1 }) {
            guard let chunk = try await conn.read() else { break }
            buffer += chunk
            seen = Self.frames(buffer)
        }
        let refused = seen.filter { $0.type == 3 && $0.code == 7 }.map(\.stream)
        #expect(refused.count == 10, "\(refused.count) streams refused")
        #expect(refused.allSatisfy { $0 > 2 * 250 })
        #expect(seen.contains { $0.type == 0 && $0.stream == 1 })  // the first stream's answer
        #expect(!seen.contains { $0.type == 7 })  // no GOAWAY
        try await FloodTests.stillServesOverHTTP2(service.port!)
    }

    /// A request whose client resets it before any worker took it (the request and its
    /// RST_STREAM in one read): its handler still runs, but cancelled, as it would be had the
    /// reset come a moment later; before, it ran unbounded (a gone exchange arms no deadline, and
    /// no worker was there to cancel), so a handler that waited could wait for ever.
    @Test func aRequestResetBeforeItsHandlerStartsRunsItCancelled() async throws {
        let (ran, report) = AsyncStream<Bool>.makeStream()
        let service = Service(name: "reset", address: "127.0.0.1:0", options: .init(handleSignals: false, register: false))
        service.handle("Greeter.Hello") { (req: Greeting, _: Context) async throws -> Reply in
            guard req.name == "gone" else { return Reply(message: "Hello " + req.name) }
            do {
                try await Task.sleep(for: .seconds(600))
                report.yield(false)
            } catch {
                report.yield(true)  // cancelled
                throw error
            }
            return Reply(message: "Hello " + req.name)
        }
        try service.start()
        defer { service.stop() }
        let conn = try RawConnection(port: service.port!)
        try conn.send(F.preface + F.frame(1, flags: 0x4, stream: 1, Self.helloBlock)
                      + F.frame(0, flags: 0x1, stream: 1, Array(#"{"name":"gone"}"#.utf8))  // DATA, END_STREAM
                      + F.frame(3, stream: 1, [0, 0, 0, 8]))  // RST_STREAM CANCEL, in the same write
        let cancelled = await withTaskGroup(of: Bool?.self) { group in
            group.addTask {
                for await value in ran { return value }
                return nil
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(60))  // a bound, so that a regression fails instead of hanging
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        #expect(cancelled == true, "the handler of the reset request was not cancelled")
        try await FloodTests.stillServesOverHTTP2(service.port!)
    }

    /// A client that goes away in the middle of a body, on either protocol.
    @Test func aPeerGoneMidBodyHarmsNothing() async throws {
        let service = try F.service()
        defer { service.stop() }
        // HTTP/1.1: half a body, then a reset (SO_LINGER 0)
        let h1 = try RawConnection(port: service.port!)
        try h1.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nMicro-Endpoint: Greeter.Hello\r\nContent-Length: 100\r\n\r\n{\"na")
        h1.reset()
        // HTTP/2: HEADERS, part of the body, RST_STREAM, then a whole request on the same connection
        let h2 = try RawConnection(port: service.port!)
        try h2.send(F.preface + F.frame(1, flags: 0x4, stream: 1, Self.helloBlock) + F.frame(0, stream: 1, Array("{\"na".utf8))
                    + F.frame(3, stream: 1, [0, 0, 0, 8])
                    + F.frame(1, flags: 0x4, stream: 3, Self.helloBlock) + F.frame(0, flags: 0x1, stream: 3, Array(#"{"name":"b"}"#.utf8)))
        var buffer: [UInt8] = []
        while !Self.frames(buffer).contains(where: { $0.type == 0 && $0.stream == 3 }) {
            guard let chunk = try await h2.read() else { break }
            buffer += chunk
        }
        #expect(Self.frames(buffer).contains { $0.type == 0 && $0.stream == 3 })
        #expect(!Self.frames(buffer).contains { $0.type == 7 })
        // and mid-body on a connection that then closes
        let h2b = try RawConnection(port: service.port!)
        try h2b.send(F.preface + F.frame(1, flags: 0x4, stream: 1, Self.helloBlock) + F.frame(0, stream: 1, Array("{\"na".utf8)))
        h2b.reset()
        try await FloodTests.stillServesOverHTTP2(service.port!)
    }

    /// The frames in `bytes` (whole ones): type, stream, and the error code of RST_STREAM or GOAWAY.
    static func frames(_ bytes: [UInt8]) -> [(type: UInt8, stream: UInt32, code: UInt32?)] {
        var out: [(UInt8, UInt32, UInt32?)] = []
        var offset = 0
        while offset + 9 <= bytes.count {
            let length = Int(bytes[offset]) << 16 | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2])
            guard offset + 9 + length <= bytes.count else { break }
            let type = bytes[offset + 3]
            let stream = bytes[(offset + 5)..<(offset + 9)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } & 0x7fff_ffff
            // the error code: RST_STREAM's payload, or after GOAWAY's last stream id
            var code: UInt32?
            let at = type == 3 ? offset + 9 : offset + 13
            if type == 3 || (type == 7 && length >= 8) { code = bytes[at..<(at + 4)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } }
            out.append((type, stream, code))
            offset += 9 + length
        }
        return out
    }
}
