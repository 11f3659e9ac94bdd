import Foundation
import MicroTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The listener backs off on EMFILE instead of dropping the connections waiting in the backlog.
@Suite struct AcceptBackoffTests {
    @Test func descriptorExhaustionLosesNoConnection() async throws {
        // helloworld holds about 21 descriptors at rest: 32 leaves room for about 10 clients at once
        let service = try await ChildService(
            "helloworld",
            environment: ["MICRO_SERVER_MAX_CONNECTIONS": "100000", "MICRO_METRICS": "prometheus"],  // no cap: hit EMFILE itself
            launcher: ["prlimit", "--nofile=32:32", "--"]
        )
        defer { service.stop() }
        let clients = 40
        var connections: [RawConnection?] = []
        for i in 0..<clients {
            let conn = try RawConnection(port: service.port)  // completes in the kernel's backlog
            try conn.send(HelloworldTests.request(name: "c\(i)"))
            connections.append(conn)
        }
        var answered = 0
        var rounds = 0
        while answered < clients && rounds < 200 {
            rounds += 1
            var fds = connections.map { pollfd(fd: $0?.fd ?? -1, events: Int16(POLLIN), revents: 0) }
            guard poll(&fds, nfds_t(fds.count), 120_000) > 0 else { break }  // a hang guard
            for (i, pfd) in fds.enumerated() where pfd.fd >= 0 && pfd.revents != 0 {
                let response = try await connections[i]!.readResponse()
                #expect(response.status == 200)
                #expect(response.body == #"{"message":"Hello c\#(i)"}"#)
                connections[i] = nil  // closing frees a descriptor in the server
                answered += 1
            }
        }
        #expect(answered == clients)
        let line = await service.waitForLine(containing: "accept error")
        #expect(line?.contains("Too many open files; retrying in") == true)
        // and the metrics say so: back-offs, every connection accepted, the scrape's own open
        let scrape = try await Tool.run("curl", ["-sS", "http://127.0.0.1:\(service.port)/metrics"])
        let samples = MetricsTests.samples(scrape.stdout)
        #expect((samples[#"micro_server_accept_backoff_total{service="helloworld"}"#] ?? 0) >= 1, "\(scrape.stdout)")
        #expect((samples[#"micro_server_connections_accepted_total{service="helloworld"}"#] ?? 0) >= Double(clients + 1))
        #expect((samples[#"micro_server_connections{service="helloworld"}"#] ?? 0) >= 1)
    }
}
