import CounterProto
import Foundation
import Logging
import Micro
import MicroTestSupport
import SwiftProtobuf
import Synchronization
import Testing
import Tracing

/// Traces across services: a span per call on both sides, every call kind and wire, W3C trace
/// context carried by request headers, gRPC metadata and message headers, trace ids on log lines.
@Suite struct TracingTests {
    struct Hello: Codable, Sendable { var name: String }
    struct Reply: Codable, Sendable { var message: String }

    /// Log lines with their metadata.
    final class Lines: Sendable {
        let value = Mutex<[(String, Logger.Metadata)]>([])
    }

    /// Hands the test every log line with its metadata (the provider's included).
    struct CapturingLog: LogHandler {
        let lines: Lines
        var metadata: Logger.Metadata = [:]
        var metadataProvider: Logger.MetadataProvider?
        var logLevel: Logger.Level = .info
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            var all = metadata.merging(metadataProvider?.get() ?? [:]) { $1 }
            all.merge(event.metadata ?? [:]) { $1 }
            lines.value.withLock { $0.append(("\(event.message)", all)) }
        }
    }

    /// front (Front.Hello: calls back's Back.Hello, publishes `greeted`), back, and sink (subscribed
    /// to `greeted`), one registry and one memory broker, each with the tracer.
    final class Services: Sendable {
        let tracer = MemoryTracer()
        let front: Service, back: Service, sink: Service
        let tasks: [Task<Void, any Error>]
        let delivered: AsyncStream<String>
        let logs = Lines()
        /// The `traceparent` of each call back served, as it came.
        let backTraceparents = InterceptorTests.Shared<[String]>([])

        /// `sampleRatio`: the services' tracer is `tracer` behind a ``SampledTracer`` of that ratio.
        init(sampleRatio: Double? = nil) async throws {
            let registry = MemoryRegistry()
            let broker = InterceptorTests.ObservedBroker()
            let memory = self.tracer
            let tracer: any Tracing.Tracer = sampleRatio.map { SampledTracer(memory, ratio: $0) } ?? memory
            func options() -> ServiceOptions {
                var options = ServiceOptions(handleSignals: false, registry: registry, registerTTL: .registrationGuard, broker: broker)
                options.tracer = tracer
                return options
            }
            var frontOptions = options()
            frontOptions.logger = Logger(label: "front") { [logs] _ in CapturingLog(lines: logs) }
            front = Service(name: "front", address: "127.0.0.1:0", options: frontOptions)
            back = Service(name: "back", address: "127.0.0.1:0", options: options())
            sink = Service(name: "sink", address: "127.0.0.1:0", options: options())
            let client = front.client
            front.handle("Front.Hello") { (hello: Hello, context: Context) async throws -> Reply in
                context.logger.info("greeting \(hello.name)")
                if hello.name == "nobody" { throw MicroError.notFound("front", "no one to greet") }
                let reply: Reply = try await client.call("back", "Back.Hello", hello, options: CallOptions(timeout: .hangGuard))
                try await client.publish("greeted", hello)
                return Reply(message: "front: " + reply.message)
            }
            let backTraceparents = self.backTraceparents
            back.handle("Back.Hello") { (hello: Hello, context: Context) async throws -> Reply in
                backTraceparents.withLock { $0.append(context.metadata["traceparent"] ?? "") }
                // a span of the handler's own joins the call's trace (recorded or not)
                return tracer.withSpan("Back.compose") { _ in Reply(message: "hello " + hello.name) }
            }
            back.register(Counter())
            let (delivered, tell) = AsyncStream.makeStream(of: String.self)
            self.delivered = delivered
            sink.subscribe("greeted") { (hello: Hello, _: Context) async throws in tell.yield(hello.name) }
            // serving once back is registered (front calls it by name) and sink subscribed
            let registered = try registry.events(service: "back")
            var tasks: [Task<Void, any Error>] = []
            for service in [front, back, sink] {
                try service.start()
                tasks.append(Task { try await service.run() })
            }
            self.tasks = tasks
            for await _ in registered { break }
            for await topic in broker.subscribed where topic == "greeted" { break }
        }

        func client(_ contentType: String = "application/json", traced: Bool = true) -> Client {
            Client(registry: MemoryRegistry(), options: CallOptions(timeout: .hangGuard, contentType: contentType,
                                                                     address: "127.0.0.1:\(front.port!)"), tracer: traced ? tracer : nil)
        }

        func stop() async throws {
            for service in [front, back, sink] { service.stop() }
            for task in tasks { try await task.value }
        }

        /// The finished spans of `traceID`, once `count` of them are there (a span ends after its
        /// call's answer left; a delivery after the publish returned).
        func spans(of traceID: String? = nil, count: Int) async throws -> [MemoryTracer.FinishedSpan] {
            try await TracingTests.withHangGuard { [tracer] in await tracer.spans(traceID: traceID, count: count) }
        }
    }

    struct Counter: CounterHandler {
        func ping(_ request: Counter_Note, context: Context) async throws -> Counter_Note { request }
        func count(_ request: Counter_CountRequest, responses: MessageWriter<Counter_Tick>, context: Context) async throws {
            for n in 0..<request.count { try await responses.write(.with { $0.n = n + 1 }) }
        }
        func sum(_ requests: MessageStream<Counter_Number>, context: Context) async throws -> Counter_Total {
            var total = Counter_Total()
            for try await number in requests { total.sum += number.value }
            return total
        }
        func echo(_ requests: MessageStream<Counter_Note>, responses: MessageWriter<Counter_Note>, context: Context) async throws {
            for try await note in requests { try await responses.write(note) }
        }
    }

    /// `body`, or a failure if it has not returned within ``Duration/hangGuard`` (a hung test, not
    /// a slow machine).
    static func withHangGuard<T: Sendable>(_ body: @escaping @Sendable () async -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { await body() }
            group.addTask {
                try await Task.sleep(for: .hangGuard)
                return nil
            }
            defer { group.cancelAll() }
            guard let value = try await group.next() ?? nil else { throw MicroError.timeout("test", "hung") }
            return value
        }
    }

    @Test func oneTraceCrossesClientServiceServiceAndSubscriber() async throws {
        let services = try await Services()
        for contentType in ["application/json", "application/grpc+json"] {
            services.tracer.clear()
            let client = services.client(contentType)
            let reply: Reply = try await client.call("front", "Front.Hello", Hello(name: "ann"))
            #expect(reply.message == "front: hello ann")
            #expect(await services.delivered.first { _ in true } == "ann")
            let root = try #require(services.tracer.spans().first { $0.parentID == nil })
            let spans = try await services.spans(of: root.traceID, count: 7)
            func span(_ name: String, _ kind: String) -> MemoryTracer.FinishedSpan? { spans.first { $0.name == name && $0.kind == kind } }
            // the test's client → front → back, front → broker → sink
            let call = try #require(span("Front/Hello", "client"), "\(spans)")
            let served = try #require(span("Front/Hello", "server"), "\(spans)")
            let backCall = try #require(span("Back/Hello", "client"), "\(spans)")
            let backServed = try #require(span("Back/Hello", "server"), "\(spans)")
            let sent = try #require(span("send greeted", "producer"), "\(spans)")
            let processed = try #require(span("process greeted", "consumer"), "\(spans)")
            #expect(call.parentID == nil)
            #expect(served.parentID == call.spanID)
            #expect(backCall.parentID == served.spanID)
            #expect(backServed.parentID == backCall.spanID)
            #expect(sent.parentID == served.spanID)
            #expect(processed.parentID == sent.spanID)
            #expect(span("Back.compose", "internal")?.parentID == backServed.spanID, "\(spans)")
            // the conventions' attributes
            let grpc = contentType.hasPrefix("application/grpc")
            #expect(served.attributes["rpc.system"] == (grpc ? "grpc" : "micro"))
            #expect(served.attributes["rpc.service"] == "Front")
            #expect(served.attributes["rpc.method"] == "Hello")
            #expect(served.attributes["micro.service"] == "front")
            #expect(served.attributes["rpc.grpc.status_code"] == (grpc ? "0" : nil))
            #expect(call.attributes["server.address"] == "127.0.0.1:\(services.front.port!)")
            #expect(backCall.attributes["server.address"] == "127.0.0.1:\(services.back.port!)")  // chosen by name
            #expect(processed.attributes["messaging.destination.name"] == "greeted")
            #expect(processed.attributes["messaging.operation.type"] == "process")
            #expect(processed.attributes["micro.service"] == "sink")
            #expect(sent.attributes["messaging.operation.type"] == "send")
            #expect(spans.allSatisfy { $0.status != "error" && $0.end >= $0.start }, "\(spans)")
        }
        try await services.stop()
    }

    @Test func aFailedCallIsAnErrorSpanOnBothSides() async throws {
        let services = try await Services()
        for contentType in ["application/json", "application/grpc+json"] {
            services.tracer.clear()
            await #expect(throws: MicroError.self) {
                let _: Reply = try await services.client(contentType).call("front", "Front.Hello", Hello(name: "nobody"))
            }
            let root = try #require(services.tracer.spans().first { $0.parentID == nil })
            let spans = try await services.spans(of: root.traceID, count: 2)
            for span in spans {
                #expect(span.status == "error", "\(span)")
                #expect(span.statusMessage == "no one to greet", "\(span)")
                #expect(span.attributes["error.type"] == "404", "\(span)")
                #expect(span.events.contains("exception"), "\(span)")
                #expect(span.attributes["rpc.grpc.status_code"] == (contentType.hasPrefix("application/grpc") ? "5" : nil), "\(span)")
            }
        }
        try await services.stop()
    }

    @Test func logLinesOfACallCarryItsTraceAndSpanIDs() async throws {
        let services = try await Services()
        let _: Reply = try await services.client().call("front", "Front.Hello", Hello(name: "bob"))
        let served = try #require(try await services.spans(count: 6).first { $0.name == "Front/Hello" && $0.kind == "server" })
        let line = try #require(services.logs.value.withLock { $0.first { $0.0 == "greeting bob" } })
        #expect(line.1["trace_id"] == .string(served.traceID), "\(line.1)")
        #expect(line.1["span_id"] == .string(served.spanID), "\(line.1)")
        #expect(line.1["endpoint"] == "Front.Hello")
        // a line logged outside any call has no ids
        services.front.options.logger.info("idle")
        let idle = try #require(services.logs.value.withLock { $0.first { $0.0 == "idle" } })
        #expect(idle.1["trace_id"] == nil)
        try await services.stop()
    }

    /// Real callers that send their own trace context: curl over HTTP/1.1 and HTTP/2 (a request
    /// header), grpcio on every RPC kind (metadata). The service's spans continue their trace.
    @Test func realCallersTraceContextIsContinued() async throws {
        let services = try await Services()
        let traceID = "4bf92f3577b34da6a3ce929d0e0e4736", parentID = "00f067aa0ba902b7"
        let traceparent = "00-\(traceID)-\(parentID)-01"
        let url = "http://127.0.0.1:\(services.front.port!)/"
        for version in ["--http1.1", "--http2-prior-knowledge"] {
            let result = try await Tool.run("curl", ["-sS", version, "-H", "content-type: application/json", "-H", "micro-endpoint: Front.Hello",
                                                     "-H", "traceparent: \(traceparent)", "-H", "tracestate: vendor=1", "-d", #"{"name":"cat"}"#, url])
            #expect(result.stdout.contains("front: hello cat"), "\(result.stdout) \(result.stderr)")
        }
        let served = try await services.spans(of: traceID, count: 2 * 6).filter { $0.name == "Front/Hello" && $0.kind == "server" }
        #expect(served.count == 2)
        #expect(served.allSatisfy { $0.parentID == parentID && $0.attributes["network.protocol.version"] != nil })
        #expect(Set(served.map { $0.attributes["network.protocol.version"] }) == ["1.1", "2"])

        let grpcTrace = "0af7651916cd43dd8448eb211c80319c"
        let grpc = try await Tool.run("python3", [StreamTests.peer, "with", "127.0.0.1:\(services.back.port!)", "traceparent=00-\(grpcTrace)-b7ad6b7169203331-01"])
        #expect(grpc.status == 0, "\(grpc.stderr)")
        let rpcs = try await services.spans(of: grpcTrace, count: 4)
        #expect(Set(rpcs.map(\.name)) == ["Counter/Ping", "Counter/Count", "Counter/Sum", "Counter/Echo"], "\(rpcs)")
        #expect(rpcs.allSatisfy { $0.parentID == "b7ad6b7169203331" && $0.kind == "server" && $0.attributes["rpc.system"] == "grpc" })
        #expect(Set(rpcs.map { $0.attributes["micro.call.kind"] }) == ["unary", "serverStream", "clientStream", "bidiStream"])
        try await services.stop()
    }

    /// A caller's trace context is bytes from the network: anything but a valid header starts a
    /// new trace, and nothing of it reaches the spans.
    @Test func malformedTraceparentStartsANewTrace() async throws {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        #expect(TraceContext(traceparent: good)?.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(TraceContext(traceparent: good)?.spanID == "00f067aa0ba902b7")
        #expect(TraceContext(traceparent: good)?.sampled == true)
        #expect(TraceContext(traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")?.sampled == false)
        // a later version may carry more fields
        #expect(TraceContext(traceparent: "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra") != nil)
        let bad = [
            "", "00", "garbage", String(repeating: "a", count: 55),
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // upper case
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // zero span id
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // version ff
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",  // version 00 has no more
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
        ]
        for value in bad { #expect(TraceContext(traceparent: value) == nil, "\(value)") }
        #expect(TraceContext(traceparent: good, tracestate: String(repeating: "x", count: 513))?.traceState == nil)

        let services = try await Services()
        let url = "http://127.0.0.1:\(services.front.port!)/"
        for value in bad.filter({ !$0.isEmpty }) + [String(repeating: "0", count: 4000)] {
            let result = try await Tool.run("curl", ["-sS", "--http2-prior-knowledge", "-H", "content-type: application/json",
                                                     "-H", "micro-endpoint: Front.Hello", "-H", "traceparent: \(value)", "-d", #"{"name":"dan"}"#, url])
            #expect(result.stdout.contains("front: hello dan"), "\(value): \(result.stdout)")
        }
        // each call: front's span, its call to back, back's, the publish, the delivery
        let served = try await services.spans(count: 5 * bad.count).filter { $0.name == "Front/Hello" && $0.kind == "server" }
        #expect(served.count == bad.count)
        // each a root of its own new trace
        #expect(served.allSatisfy { $0.parentID == nil })
        #expect(Set(served.map(\.traceID)).count == served.count)
        try await services.stop()
    }

    /// Head sampling: with ratio 0 no trace that starts in the services is recorded, yet each call
    /// carries a W3C context (`00`: not sampled) to the next service and onto its log lines; a
    /// caller's sampled trace is recorded all the same (the parent decides).
    @Test func aSampledTracerRecordsWhatItSamplesAndPropagatesTheRest() async throws {
        let services = try await Services(sampleRatio: 0)
        let _: Reply = try await services.client(traced: false).call("front", "Front.Hello", Hello(name: "fay"))
        #expect(await services.delivered.first { _ in true } == "fay")
        #expect(services.tracer.spans().isEmpty, "\(services.tracer.spans())")
        // not recorded, but front's log line has the trace's ids
        let line = try #require(services.logs.value.withLock { $0.first { $0.0 == "greeting fay" } })
        #expect(line.1["trace_id"].map { "\($0)".count } == 32, "\(line.1)")
        #expect(line.1["span_id"].map { "\($0)".count } == 16, "\(line.1)")

        // a caller's context that is not sampled: nothing recorded, its trace id on the log line
        let url = "http://127.0.0.1:\(services.front.port!)/"
        let unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
        let result = try await Tool.run("curl", ["-sS", "--http2-prior-knowledge", "-H", "content-type: application/json",
                                                 "-H", "micro-endpoint: Front.Hello", "-H", "traceparent: \(unsampled)", "-d", #"{"name":"gus"}"#, url])
        #expect(result.stdout.contains("front: hello gus"))
        #expect(await services.delivered.first { _ in true } == "gus")
        let logged = try #require(services.logs.value.withLock { $0.first { $0.0 == "greeting gus" } })
        #expect(logged.1["trace_id"] == "0af7651916cd43dd8448eb211c80319c")
        #expect(services.tracer.spans().isEmpty)
        // front sent it on to back as not sampled, from a span id of its own
        let sent = try #require(TraceContext(traceparent: services.backTraceparents.withLock { $0.last ?? "" }))
        #expect(sent.traceID == "0af7651916cd43dd8448eb211c80319c" && !sent.sampled && sent.spanID != "b7ad6b7169203331")
        #expect(sent.spanID != (logged.1["span_id"].map { "\($0)" } ?? ""), "a call made from the handler has its own span id")

        // a caller's sampled context is recorded: front, back and sink all record it
        let sampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        _ = try await Tool.run("curl", ["-sS", "--http2-prior-knowledge", "-H", "content-type: application/json",
                                        "-H", "micro-endpoint: Front.Hello", "-H", "traceparent: \(sampled)", "-d", #"{"name":"hal"}"#, url])
        let recorded = try await services.spans(of: "4bf92f3577b34da6a3ce929d0e0e4736", count: 6)
        #expect(Set(recorded.map(\.name)) == ["Front/Hello", "Back/Hello", "Back.compose", "send greeted", "process greeted"], "\(recorded)")
        try await services.stop()
    }

    /// A caller that does not sample its trace decides for every service it reaches, even one
    /// that records every trace of its own: nothing is recorded — not the calls, not a span a
    /// handler starts itself, not the publish or the delivery — and the trace id goes on.
    @Test func aCallersDecisionNotToSampleHoldsAllTheWayDown() async throws {
        let services = try await Services(sampleRatio: 1)
        let url = "http://127.0.0.1:\(services.front.port!)/"
        let unsampled = "00-5bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        let result = try await Tool.run("curl", ["-sS", "--http2-prior-knowledge", "-H", "content-type: application/json",
                                                 "-H", "micro-endpoint: Front.Hello", "-H", "traceparent: \(unsampled)", "-d", #"{"name":"ida"}"#, url])
        #expect(result.stdout.contains("front: hello ida"))
        #expect(await services.delivered.first { _ in true } == "ida")
        #expect(services.backTraceparents.withLock { $0.last }.flatMap { TraceContext(traceparent: $0) }?.traceID == "5bf92f3577b34da6a3ce929d0e0e4736")
        // a call of its own is recorded: the tracer records every trace that starts here
        let _: Reply = try await services.client(traced: false).call("front", "Front.Hello", Hello(name: "jo"))
        let recorded = try await services.spans(count: 6)
        #expect(!recorded.contains { $0.traceID == "5bf92f3577b34da6a3ce929d0e0e4736" }, "\(recorded)")
        #expect(Set(recorded.map(\.traceID)).count == 1, "\(recorded)")
        try await services.stop()
    }
}
