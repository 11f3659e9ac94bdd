import Foundation
import Micro
import MicroTestSupport
import Testing

/// `GET /metrics` in Prometheus's text format, scraped with curl and parsed.
@Suite struct MetricsTests {
    struct Name: Codable, Sendable { var name: String }

    /// The samples of a Prometheus text: `name{labels}` → value.
    static func samples(_ text: String) -> [String: Double] {
        var out: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            out[String(line[..<space])] = value
        }
        return out
    }

    /// The same for an `async` handler and a synchronous one (answered without an async call).
    @Test(arguments: [false, true])
    func callsAreCountedAndTimedAndScrapedAsPrometheusText(synchronous: Bool) async throws {
        MicroMetrics.enablePrometheus()
        let options = ServiceOptions(handleSignals: false, registry: MemoryRegistry(), registerTTL: .registrationGuard)
        let serviceName = synchronous ? "metered-sync" : "metered"
        let service = Service(name: serviceName, address: "127.0.0.1:0", options: options)
        @Sendable func read(_ request: Name) throws -> Name {
            if request.name == "missing" { throw MicroError.notFound(serviceName, "no \(request.name)") }
            return request
        }
        if synchronous {
            service.handle("Meter.Read") { (request: Name, _: Context) throws -> Name in try read(request) }
        } else {
            service.handle("Meter.Read") { (request: Name, _: Context) async throws -> Name in try read(request) }
        }
        let port = try service.start().port
        let url = "http://127.0.0.1:\(port)/"
        for name in ["a", "b", "c", "missing"] {
            _ = try await Tool.run("curl", ["-sS", "--http2-prior-knowledge", "-H", "content-type: application/json", "-H", "micro-endpoint: Meter.Read",
                                            "-d", #"{"name":"\#(name)"}"#, url])
        }
        let scrape = try await Tool.run("curl", ["-sS", "-D", "-", url + "metrics"])
        #expect(scrape.stdout.lowercased().contains("content-type: text/plain; version=0.0.4"), "\(scrape.stdout)")
        let samples = Self.samples(scrape.stdout)
        #expect(samples[#"micro_server_request_total{service="\#(serviceName)",endpoint="Meter.Read",kind="unary",status="success",code="200"}"#] == 3, "\(scrape.stdout)")
        #expect(samples[#"micro_server_request_total{service="\#(serviceName)",endpoint="Meter.Read",kind="unary",status="failure",code="404"}"#] == 1)
        #expect(samples[#"micro_server_request_duration_seconds_count{service="\#(serviceName)",endpoint="Meter.Read"}"#] == 4, "\(scrape.stdout)")
        #expect(scrape.stdout.contains("# TYPE micro_server_request_duration_seconds histogram"))
        #expect(samples[#"micro_server_requests_in_flight{service="\#(serviceName)",endpoint="Meter.Read"}"#] == 0, "\(scrape.stdout)")
        // {"name":"a"} ×3 and {"name":"missing"} in; the three echoed back (the 404 has no answer body)
        #expect(samples[#"micro_server_request_bytes_total{service="\#(serviceName)",endpoint="Meter.Read"}"#] == Double(3 * 12 + 18), "\(scrape.stdout)")
        #expect(samples[#"micro_server_response_bytes_total{service="\#(serviceName)",endpoint="Meter.Read"}"#] == Double(3 * 12), "\(scrape.stdout)")
        await service.shutdown()
    }

    /// Counts reach the scrape when it is made (each call adds to its endpoint's own counters):
    /// a call held in its handler shows in flight, and scraping twice counts nothing twice.
    @Test func aScrapeShowsCallsInFlightAndCountsEachCallOnce() async throws {
        MicroMetrics.enablePrometheus()
        let options = ServiceOptions(handleSignals: false, registry: MemoryRegistry(), registerTTL: .registrationGuard)
        let service = Service(name: "metered-held", address: "127.0.0.1:0", options: options)
        let (entered, enter) = AsyncStream.makeStream(of: Void.self)
        let (released, release) = AsyncStream.makeStream(of: Void.self)
        service.handle("Meter.Hold") { (request: Name, _: Context) async throws -> Name in
            if request.name == "hold" {
                enter.yield()
                for await _ in released { break }
            }
            return request
        }
        let port = try service.start().port
        let url = "http://127.0.0.1:\(port)/"
        func call(_ name: String) async throws {
            _ = try await Tool.run("curl", ["-sS", "--http2-prior-knowledge", "-H", "content-type: application/json", "-H", "micro-endpoint: Meter.Hold",
                                            "-d", #"{"name":"\#(name)"}"#, url])
        }
        func scrape() async throws -> [String: Double] { Self.samples(try await Tool.run("curl", ["-sS", url + "metrics"]).stdout) }
        let inFlight = #"micro_server_requests_in_flight{service="metered-held",endpoint="Meter.Hold"}"#
        let succeeded = #"micro_server_request_total{service="metered-held",endpoint="Meter.Hold",kind="unary",status="success",code="200"}"#
        let held = Task { try await call("hold") }
        for await _ in entered { break }
        var samples = try await scrape()
        #expect(samples[inFlight] == 1)
        #expect(samples[succeeded] == nil, "no call has succeeded yet")
        release.yield()
        try await held.value
        try await call("a")
        samples = try await scrape()
        #expect(samples[inFlight] == 0)
        #expect(samples[succeeded] == 2)
        try await call("b")
        samples = try await scrape()
        #expect(samples[succeeded] == 3)
        #expect(try await scrape()[succeeded] == 3)
        await service.shutdown()
    }

    /// Streams (when they end), deliveries (the topic as the endpoint), the client's calls and
    /// publishes: all in the same scrape.
    @Test func streamsDeliveriesAndTheClientAreRecorded() async throws {
        MicroMetrics.enablePrometheus()
        let broker = InterceptorTests.ObservedBroker()
        let options = ServiceOptions(handleSignals: false, registry: MemoryRegistry(), register: false, broker: broker)
        let service = Service(name: "metered-streams", address: "127.0.0.1:0", options: options)
        service.handle("Meter.Count", serverStream: { (request: Name, out: MessageWriter<Name>, _: Context) in
            if request.name == "none" { throw MicroError.badRequest("metered-streams", "nothing to count") }
            for n in 0..<3 { try await out.write(Name(name: "\(n)")) }
        })
        let (delivered, tell) = AsyncStream.makeStream(of: String.self)
        service.subscribe("metered-events") { (event: Name, _: Context) async throws in tell.yield(event.name) }
        // fails its first delivery: the broker tries again
        let attempts = InterceptorTests.Shared(0)
        service.subscribe("metered-flaky") { (event: Name, _: Context) async throws in
            if attempts.withLock({ $0 += 1; return $0 }) == 1 { throw MicroError(id: "metered-streams", code: 500, detail: "not yet") }
            tell.yield(event.name)
        }
        let port = try service.start().port
        let task = Task { try await service.run() }
        for await topic in broker.subscribed where topic == "metered-flaky" { break }  // the last subscription
        let client = Client(registry: MemoryRegistry(), broker: broker,
                            options: CallOptions(timeout: .hangGuard, address: "127.0.0.1:\(port)", streamTimeout: .hangGuard))
        func count(_ name: String) async throws -> [Name] {
            try await client.stream("metered-streams", "Meter.Count", request: Name.self, response: Name.self) { call in
                try await call.send(Name(name: name))
                call.closeSend()
                return try await call.responses.reduce(into: [Name]()) { $0.append($1) }
            }
        }
        #expect(try await count("three").count == 3)
        await #expect(throws: MicroError.self) { _ = try await count("none") }
        try await client.publish("metered-events", Name(name: "e1"))
        #expect(await delivered.first { _ in true } == "e1")
        try await client.publish("metered-flaky", Name(name: "f1"))
        #expect(await delivered.first { _ in true } == "f1")

        let samples = Self.samples(try await Tool.run("curl", ["-sS", "http://127.0.0.1:\(port)/metrics"]).stdout)
        func sample(_ key: String) -> Double? { samples[key] }
        // the kind each side knows: the endpoint's on the server, the call's on the client
        // (`Client.stream` is the general, bidirectional form)
        #expect(sample(#"micro_server_request_total{service="metered-streams",endpoint="Meter.Count",kind="serverStream",status="success",code="200"}"#) == 1, "\(samples)")
        #expect(sample(#"micro_server_request_total{service="metered-streams",endpoint="Meter.Count",kind="serverStream",status="failure",code="400"}"#) == 1)
        #expect(sample(#"micro_server_request_total{service="metered-streams",endpoint="metered-events",kind="delivery",status="success",code="200"}"#) == 1)
        #expect(sample(#"micro_client_request_total{service="metered-streams",endpoint="Meter.Count",kind="bidiStream",status="success",code="200"}"#) == 1)
        #expect(sample(#"micro_client_request_total{service="metered-streams",endpoint="Meter.Count",kind="bidiStream",status="failure",code="400"}"#) == 1)
        #expect(sample(#"micro_client_request_duration_seconds_count{service="metered-streams",endpoint="Meter.Count"}"#) == 2)
        // a stream's messages: {"name":"three"} and {"name":"none"} in, three {"name":"N"} out
        #expect(sample(#"micro_server_request_bytes_total{service="metered-streams",endpoint="Meter.Count"}"#) == Double(16 + 15), "\(samples)")
        #expect(sample(#"micro_server_response_bytes_total{service="metered-streams",endpoint="Meter.Count"}"#) == Double(3 * 12), "\(samples)")
        #expect(sample(#"micro_broker_published_total{topic="metered-events",status="success"}"#) == 1)
        #expect(sample(#"micro_broker_retried_total{topic="metered-flaky"}"#) == 1, "\(samples)")
        #expect(sample(#"micro_server_request_total{service="metered-streams",endpoint="metered-flaky",kind="delivery",status="failure",code="500"}"#) == 1)
        service.stop()
        try await task.value
    }
}
