import Foundation
import MicroTestSupport
import Testing

/// Traces exported over OTLP by three processes (Plugins/OTel's `traced` example: front calls
/// back and publishes to sink over the HTTP broker), received by a collector of our own in Python
/// (`Tests/Peers/otlp_receiver.py`, opentelemetry-proto): one trace, parent to child across the
/// processes, and the trace id on front's log line.
@Suite struct OTelExportTests {
    /// Where scripts/test built Plugins/OTel (`traced`); the suite needs it.
    static let binDirectory = ProcessInfo.processInfo.environment["MICRO_OTEL_BIN_DIR"]
    static let receiver = MDNSTests.peers.appendingPathComponent("otlp_receiver.py").path

    struct Span: Decodable {
        var service: String
        var name: String
        var kind: String
        var trace: String
        var id: String
        var parent: String
        var attributes: [String: AnyValue]

        /// An attribute's value, whatever its type, as text.
        struct AnyValue: Decodable, Equatable {
            var text: String
            init(from decoder: any Decoder) throws {
                let container = try decoder.singleValueContainer()
                if let s = try? container.decode(String.self) { text = s } else if let i = try? container.decode(Int.self) { text = "\(i)" } else {
                    text = "\(try container.decode(Bool.self))"
                }
            }
        }
    }

    @Test(.enabled(if: binDirectory != nil, "MICRO_OTEL_BIN_DIR names Plugins/OTel's build (scripts/test builds it)"))
    func oneTraceAcrossThreeProcessesReachesTheCollector() async throws {
        let collector = try await ChildService(try #require(Tool.path(of: "python3")), arguments: [Self.receiver])
        defer { collector.stop() }
        let registry = FileManager.default.temporaryDirectory.appendingPathComponent("micro-registry-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: registry) }
        let traced = URL(fileURLWithPath: Self.binDirectory!).appendingPathComponent("traced").path
        func start(_ role: String) async throws -> ChildService {
            try await ChildService(traced, arguments: [role], environment: [
                "MICRO_REGISTRY_ADDRESS": registry,
                "MICRO_TRACER": "otlp",
                "MICRO_TRACER_ADDRESS": "http://127.0.0.1:\(collector.port)",
                "OTEL_SERVICE_NAME": role,
                "OTEL_BSP_SCHEDULE_DELAY": "50",
            ])
        }
        let back = try await start("back"), sink = try await start("sink")
        defer { back.stop(); sink.stop() }
        #expect(await back.waitForLine(containing: "registered node") != nil)
        #expect(await sink.waitForLine(containing: "subscribed to greeted") != nil)
        let front = try await start("front")
        defer { front.stop() }

        let result = try await Tool.run("curl", ["-sS", "-H", "content-type: application/json", "-H", "micro-endpoint: Front.Hello",
                                                 "-d", #"{"name":"eve"}"#, "http://127.0.0.1:\(front.port)/"])
        #expect(result.stdout == #"{"message":"front: hello eve"}"#, "\(result.stdout) \(result.stderr)")
        #expect(await sink.waitForLine(containing: "greeted eve") != nil)

        // the five spans, as each process exports them
        let expected = [("front", "Front/Hello", "server"), ("front", "Back/Hello", "client"), ("back", "Back/Hello", "server"),
                        ("front", "send greeted", "producer"), ("sink", "process greeted", "consumer")]
        for (service, name, kind) in expected {
            let line = await collector.waitForLine(containing: #""service": "\#(service)", "name": "\#(name)", "kind": "\#(kind)""#, within: .hangGuard)
            #expect(line != nil, "\(service) \(name) \(kind): \(collector.logLines)")
        }
        let spans = try collector.logLines.filter { $0.hasPrefix("span ") }
            .map { try JSONDecoder().decode(Span.self, from: Data($0.dropFirst(5).utf8)) }
        func span(_ service: String, _ name: String, _ kind: String) throws -> Span {
            try #require(spans.first { $0.service == service && $0.name == name && $0.kind == kind }, "\(spans)")
        }
        let served = try span("front", "Front/Hello", "server")
        let call = try span("front", "Back/Hello", "client")
        let backServed = try span("back", "Back/Hello", "server")
        let sent = try span("front", "send greeted", "producer")
        let processed = try span("sink", "process greeted", "consumer")
        #expect(served.parent.isEmpty)  // curl sent no trace context: front starts the trace
        #expect(call.parent == served.id)
        #expect(backServed.parent == call.id)
        #expect(sent.parent == served.id)
        #expect(processed.parent == sent.id)
        #expect(Set([served, call, backServed, sent, processed].map(\.trace)) == [served.trace])
        #expect(served.attributes["rpc.service"]?.text == "Front")
        #expect(backServed.attributes["micro.service"]?.text == "back")
        #expect(processed.attributes["messaging.destination.name"]?.text == "greeted")
        // front's log line within the call carries the trace
        let logged = try #require(await front.waitForLine(containing: "greeting eve"))
        #expect(logged.contains("trace_id=\(served.trace)"), "\(logged)")
        #expect(logged.contains("span_id=\(served.id)"), "\(logged)")
    }
}
