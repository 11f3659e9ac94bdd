import Foundation
import Micro
import MicroTestSupport
import Testing

/// HTTP/2 floods from a raw socket: the connection that floods is cut off with GOAWAY, the
/// server keeps serving everyone else.
@Suite struct FloodTests {
    /// One frame: 3-byte length, type, flags, stream id.
    static func frame(_ type: UInt8, flags: UInt8 = 0, stream: UInt32, _ payload: [UInt8] = []) -> [UInt8] {
        H2Frames.frame(type, flags: flags, stream: stream, payload)
    }

    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + frame(4, stream: 0)
    /// HPACK: :method POST, :scheme http, :path /, :authority "x".
    static let requestBlock: [UInt8] = [0x83, 0x86, 0x84, 0x41, 0x01, 0x78]

    /// The frames the server sent (type, error code of a GOAWAY) until it closed.
    static func framesUntilClose(_ conn: RawConnection) async throws -> [(type: UInt8, goawayCode: UInt32?)] {
        var bytes: [UInt8] = []
        while let chunk = try? await conn.read(), !chunk.isEmpty { bytes += chunk }
        return FaultTests.frames(bytes).map { ($0.type, $0.type == 7 ? $0.code : nil) }
    }

    static func service() throws -> Service {
        let service = Service(name: "flood", address: "127.0.0.1:0", options: .init(handleSignals: false, register: false))
        service.handle("Greeter.Hello") { (req: Greeting, _: Context) async throws -> Reply in Reply(message: "Hello " + req.name) }
        try service.start()
        return service
    }

    static func stillServesOverHTTP2(_ port: Int) async throws {
        let result = try await Tool.run("curl", ["-s", "--http2-prior-knowledge", "-H", "Micro-Endpoint: Greeter.Hello",
                                                 "-H", "Content-Type: application/json", "-d", #"{"name":"after"}"#, "http://127.0.0.1:\(port)/"])
        #expect(result.stdout == #"{"message":"Hello after"}"#)
    }

    /// Rapid reset (CVE-2023-44487): streams opened and reset at once, thousands of times.
    @Test func rapidResetIsCutOff() async throws {
        let service = try Self.service()
        defer { service.stop() }
        let conn = try RawConnection(port: service.port!)
        try conn.send(Self.preface)
        var sent = 0
        batches: for batch in 0..<50 {
            var bytes: [UInt8] = []
            for i in 0..<100 {
                let stream = UInt32(2 * (batch * 100 + i) + 1)
                bytes += Self.frame(1, flags: 0x4, stream: stream, Self.requestBlock)  // HEADERS, END_HEADERS
                bytes += Self.frame(3, stream: stream, [0, 0, 0, 8])  // RST_STREAM CANCEL
            }
            do {
                try conn.send(bytes)
            } catch {
                break batches  // the server closed the connection: what the test wants
            }
            sent += 100
        }
        let frames = try await Self.framesUntilClose(conn)
        let goaway = frames.first { $0.type == 7 }
        #expect(goaway != nil, "no GOAWAY after \(sent) resets")
        #expect(goaway?.goawayCode != 0)
        try await Self.stillServesOverHTTP2(service.port!)
    }

    /// CONTINUATION flood (CVE-2024-28182): a header block that never ends.
    @Test func continuationFloodIsCutOff() async throws {
        let service = try Self.service()
        defer { service.stop() }
        let conn = try RawConnection(port: service.port!)
        var bytes = Self.preface + Self.frame(1, stream: 1, Self.requestBlock)  // HEADERS without END_HEADERS
        for i in 0..<1000 {
            bytes += Self.frame(9, stream: 1, [0x40, 0x02, 0x78, 0x78, 0x01, UInt8(0x30 + i % 10)])  // a small literal field each
        }
        try? conn.send(bytes)
        let frames = try await Self.framesUntilClose(conn)
        let goaway = frames.first { $0.type == 7 }
        #expect(goaway != nil)
        #expect(goaway?.goawayCode != 0)
        try await Self.stillServesOverHTTP2(service.port!)
    }
}
