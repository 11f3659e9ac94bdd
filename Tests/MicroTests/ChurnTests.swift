import Foundation
import MicroTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// 13,500 connections opened and closed, some answered, some cut mid-request, some gone before
/// their answer, some over HTTP/2:
/// the server keeps serving and its memory stays flat after warm-up (what it holds per
/// connection is given back).
@Suite struct ChurnTests {
    static func residentKiB(_ pid: pid_t) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        }
        return nil
    }

    /// `count` connections: half send a whole request and read the answer, one in four sends half
    /// a request and goes away, one in four sends a whole request and goes away without reading
    /// (the server then writes to a dead peer: an error to handle, not a SIGPIPE).
    static func churn(_ port: Int, _ count: Int) async throws {
        for i in 0..<count {
            let conn = try RawConnection(port: port)
            let request = HelloworldTests.request(name: "n\(i)")
            if i % 4 == 3 {
                try conn.send(String(request.prefix(request.utf8.count / 2)))
            } else if i % 4 == 2 {
                try conn.send(request)
            } else {
                try conn.send(request)
                let response = try await conn.readResponse()
                #expect(response.status == 200)
            }
        }
    }

    /// Under AddressSanitizer freed memory sits in quarantine: resident size says nothing there.
    static let sanitized = ProcessInfo.processInfo.environment["MICRO_SANITIZED"] != nil

    @Test(.disabled(if: sanitized, "resident memory is meaningless under AddressSanitizer"))
    func tenThousandConnectionsLeaveNothingBehind() async throws {
        let service = try await ChildService("helloworld")
        defer { service.stop() }
        let body = FileManager.default.temporaryDirectory.appendingPathComponent("churn-\(UUID().uuidString).json")
        try Data(#"{"name":"h2"}"#.utf8).write(to: body)
        defer { try? FileManager.default.removeItem(at: body) }
        let h2load = { (n: Int, c: Int) in
            try await Tool.run("h2load", ["-n", "\(n)", "-c", "\(c)", "-m", "4", "-d", body.path, "-H", "content-type: application/json",
                                          "-H", "micro-endpoint: Helloworld.Greeting", "http://127.0.0.1:\(service.port)/"])
        }
        // one round: 4,000 HTTP/1.1 connections, then 500 HTTP/2 connections of 20 streams each
        func round() async throws {
            try await Self.churn(service.port, 4_000)
            for _ in 0..<5 {
                let run = try await h2load(2000, 100)
                #expect(run.stdout.contains("2000 succeeded"), "\(run.stdout)")
            }
        }
        try await round()  // warm-up: pools, allocator arenas, caches
        let before = try #require(Self.residentKiB(service.pid))
        try await round()
        try await round()
        let after = try #require(Self.residentKiB(service.pid))
        print("churn: resident \(before) KiB -> \(after) KiB over 9,000 connections")
        // after warm-up it stays within a few tens of KiB; a leak of 120 bytes a connection is 1 MiB
        #expect(after - before < 1024, "resident memory grew from \(before) KiB to \(after) KiB over 9,000 connections")
        // and it still answers
        let conn = try RawConnection(port: service.port)
        try conn.send(HelloworldTests.request(name: "last"))
        #expect(try await conn.readResponse().body == #"{"message":"Hello last"}"#)
    }
}
