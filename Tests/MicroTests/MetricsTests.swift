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

    @Test func callsAreCountedAndTimedAndScrapedAsPrometheusText() async throws {
        MicroMetrics.enablePrometheus()
        let options = ServiceOptions(handleSignals: false, registry: MemoryRegistry())
        let service = Service(name: "metered", address: "127.0.0.1:0", options: options)
        service.handle("Meter.Read") { (request: Name, _: Context) async throws -> Name in
            if request.name == "missing" { throw MicroError.notFound("metered", "no \(request.name)") }
            return request
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
        #expect(samples[#"micro_server_request_total{service="metered",endpoint="Meter.Read",status="success",code="200"}"#] == 3, "\(scrape.stdout)")
        #expect(samples[#"micro_server_request_total{service="metered",endpoint="Meter.Read",status="failure",code="404"}"#] == 1)
        #expect(samples[#"micro_server_request_duration_seconds_count{service="metered",endpoint="Meter.Read"}"#] == 4, "\(scrape.stdout)")
        #expect(scrape.stdout.contains("# TYPE micro_server_request_duration_seconds histogram"))
        await service.shutdown()
    }
}
