import Foundation
import Logging
import Micro
import MicroTestSupport
import Testing

/// go-micro's debug service on every service: Debug.Health, Debug.Stats, Debug.Log, Debug.Trace;
/// read by `micro stats` and `micro logs`, and by a client following the log.
@Suite struct DebugTests {
    static let micro = Tool.binDirectory.appendingPathComponent("micro").path
    struct Hello: Codable, Sendable { var name: String }
    struct Reply: Codable, Sendable { var message: String }

    final class Fixture: Sendable {
        let service: Service
        let task: Task<Void, any Error>
        let tracer = MemoryTracer()

        init() async throws {
            // not registered: called by address, and nothing logged but what the calls log
            var options = ServiceOptions(handleSignals: false, registry: MemoryRegistry(), register: false, broker: MemoryBroker())
            options.tracer = tracer
            service = Service(name: "debugged", address: "127.0.0.1:0", options: options)
            service.handle("Greeter.Hello") { (hello: Hello, context: Context) async throws -> Reply in
                context.logger.info("saw \(hello.name)")
                if hello.name == "nobody" { throw MicroError.badRequest("debugged", "no name") }
                return Reply(message: "hello \(hello.name)")
            }
            try service.start()
            let service = self.service
            task = Task { try await service.run() }
        }

        var address: String { "127.0.0.1:\(service.port!)" }

        func client() -> Client {
            Client(registry: MemoryRegistry(), options: CallOptions(timeout: .hangGuard, address: address, streamTimeout: .hangGuard), tracer: nil)
        }

        func greet(_ name: String) async throws {
            let result = try await Tool.run("curl", ["-sS", "--http2-prior-knowledge", "-H", "content-type: application/json",
                                                     "-H", "micro-endpoint: Greeter.Hello", "-d", #"{"name":"\#(name)"}"#, "http://\(address)/"])
            #expect(result.status == 0, "\(result.stderr)")
        }

        func stop() async throws {
            service.stop()
            try await task.value
        }
    }

    @Test func statsCountCallsAndErrorsAndMicroStatsShowsThem() async throws {
        let fixture = try await Fixture()
        for name in ["ann", "bob", "nobody"] { try await fixture.greet(name) }
        let stats: Debug.Stats = try await fixture.client().call("debugged", "Debug.Stats", Debug.StatsRequest())
        #expect(stats.requests == 3)
        #expect(stats.errors == 1)
        #expect(stats.memory > 1 << 20)
        #expect(stats.threads >= 1)
        #expect(stats.started <= stats.timestamp && stats.uptime <= stats.timestamp - stats.started + 1)

        let json = try await Tool.run(Self.micro, ["stats", "debugged", "--address", fixture.address, "--json"] + Duration.hangGuardOption)
        #expect(json.status == 0, "\(json.stderr)")
        let shown = try JSONDecoder().decode(Debug.Stats.self, from: Data(json.stdout.utf8))
        #expect(shown.requests == 4 && shown.errors == 1)  // and the Debug.Stats call before it
        let table = try await Tool.run(Self.micro, ["stats", "debugged", "--address", fixture.address] + Duration.hangGuardOption)
        #expect(table.stdout.hasPrefix("NODE\tADDRESS\tSTARTED\tUPTIME\tMEMORY\tTHREADS\tREQUESTS\tERRORS\n"), "\(table.stdout)")
        #expect(table.stdout.contains("\t5\t1\n"), "\(table.stdout)")
        let health: Debug.HealthResponse = try await fixture.client().call("debugged", "Debug.Health", Debug.HealthRequest())
        #expect(health.status == "ok")
        try await fixture.stop()
    }

    @Test func logKeepsTheLastLinesAndMicroLogsPrintsThem() async throws {
        let fixture = try await Fixture()
        for name in ["ann", "bob"] { try await fixture.greet(name) }
        let result = try await Tool.run(Self.micro, ["logs", "debugged", "--address", fixture.address, "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let records = try result.stdout.split(separator: "\n").map { try JSONDecoder().decode(Debug.Record.self, from: Data($0.utf8)) }
        let saw = records.filter { $0.message.hasPrefix("saw ") }
        #expect(saw.map(\.message) == ["saw ann", "saw bob"], "\(records)")
        #expect(saw.allSatisfy { $0.metadata["level"] == "info" && $0.metadata["endpoint"] == "Greeter.Hello" && $0.metadata["service"] == "debugged" })
        // traced: each line carries its call's trace id
        #expect(saw.allSatisfy { $0.metadata["trace_id"]?.count == 32 }, "\(saw)")

        let last = try await Tool.run(Self.micro, ["logs", "debugged", "--address", fixture.address, "--count", "1"])
        #expect(last.stdout.split(separator: "\n").count == 1, "\(last.stdout)")
        #expect(last.stdout.contains(" info saw bob endpoint=Greeter.Hello "), "\(last.stdout)")
        try await fixture.stop()
    }

    @Test func aFollowerGetsNewLinesAsTheyAreLogged() async throws {
        let fixture = try await Fixture()
        try await fixture.greet("ann")
        let request = Array(try JSONEncoder().encode(Debug.LogRequest(stream: true)))
        try await fixture.client().rawStream("debugged", "Debug.Log") { call in
            try await call.send(request)
            call.closeSend()
            var responses = call.responses.makeAsyncIterator()
            // the lines kept (others may come between: the service logs its registration)
            func nextGreeting() async throws -> String {
                while true {
                    let record = try JSONDecoder().decode(Debug.Record.self, from: Data(try #require(try await responses.next())))
                    if record.message.hasPrefix("saw ") { return record.message }
                }
            }
            #expect(try await nextGreeting() == "saw ann")
            try await fixture.greet("cat")  // logged after the follower was registered
            #expect(try await nextGreeting() == "saw cat")
        }
        try await fixture.stop()
    }

    @Test func traceShowsTheSpansOfACall() async throws {
        let fixture = try await Fixture()
        try await fixture.greet("ann")
        let served = try #require(await fixture.tracer.spans(count: 1).first { $0.name == "Greeter/Hello" })
        let answer: Debug.TraceResponse = try await fixture.client().call("debugged", "Debug.Trace", Debug.TraceRequest(id: served.traceID))
        let span = try #require(answer.spans.first)
        #expect(answer.spans.count == 1)
        #expect(span.trace == served.traceID && span.id == served.spanID && span.parent.isEmpty)
        #expect(span.name == "Greeter/Hello" && span.type == "INBOUND")
        #expect(span.metadata["rpc.method"] == "Hello" && span.metadata["kind"] == "server")
        #expect(span.started > 0 && span.duration > 0)
        try await fixture.stop()
    }

    /// The ring never grows past its capacity, and a follower that does not read keeps at most
    /// that many lines: a service that logs fast cannot be made to hold its log for a reader.
    @Test func theLogIsBounded() async throws {
        let ring = LogRing(capacity: 100)
        let (kept, follower) = ring.read(count: 0, since: 0, follow: true)
        #expect(kept.isEmpty)
        for n in 0..<1000 { ring.add(Debug.Record(timestamp: Int64(n), metadata: [:], message: "\(n)")) }
        let all = ring.read(count: 0, since: 0, follow: false).kept
        #expect(all.count == 100 && all.first?.message == "900" && all.last?.message == "999")
        #expect(ring.read(count: 10, since: 0, follow: false).kept.map(\.message) == (990..<1000).map { "\($0)" })
        #expect(ring.read(count: 0, since: 995, follow: false).kept.count == 5)
        // the follower kept the newest 100 of what it did not read
        var iterator = try #require(follower).makeAsyncIterator()
        #expect(await iterator.next()?.message == "900")
        #expect(ring.followerCount == 1)
    }
}
