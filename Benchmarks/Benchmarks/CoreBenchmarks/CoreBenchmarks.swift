import Benchmark
import Micro
import MicroCore
import Synchronization

struct Request: Codable, Sendable { var name: String }
struct Response: Codable, Sendable { var message: String }

/// A helloworld service on 127.0.0.1 and a client, started once.
final class HelloworldFixture: Sendable {
    let service: Service
    let client = HTTPClient()
    let headers: HTTPHeaders = ["content-type": "application/json", "micro-endpoint": "Helloworld.Greeting"]
    let body = Array(#"{"name":"alice"}"#.utf8)
    let address: String

    private static let instance = Mutex<HelloworldFixture?>(nil)

    static func shared() throws -> HelloworldFixture {
        try instance.withLock { fixture in
            if let fixture { return fixture }
            let made = try HelloworldFixture()
            fixture = made
            return made
        }
    }

    /// The same service behind one interceptor that passes every call on: what the hook costs.
    let intercepted: Service
    let interceptedAddress: String
    /// The same service traced (MemoryTracer, its ring full), called with a caller's trace
    /// context: what a traced call costs.
    let traced: Service
    let tracedAddress: String
    let tracedHeaders: HTTPHeaders = ["content-type": "application/json", "micro-endpoint": "Helloworld.Greeting",
                                      "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]

    /// The same service behind head sampling that records none of the traces that start there
    /// (SampledTracer, ratio 0), called without a trace context: what tracing costs the calls
    /// it does not record — most of them, at the ratios services run with.
    let sampledOut: Service
    let sampledOutAddress: String

    private init() throws {
        service = Self.helloworld(interceptors: [])
        address = "127.0.0.1:\(try service.start().port)"
        intercepted = Self.helloworld(interceptors: [PassThrough()])
        interceptedAddress = "127.0.0.1:\(try intercepted.start().port)"
        traced = Self.helloworld(interceptors: [], tracer: MemoryTracer(capacity: 100))
        tracedAddress = "127.0.0.1:\(try traced.start().port)"
        sampledOut = Self.helloworld(interceptors: [], tracer: MemoryTracer(capacity: 100), sampleRatio: 0)
        sampledOutAddress = "127.0.0.1:\(try sampledOut.start().port)"
    }

    static func helloworld(interceptors: [any ServerInterceptor], tracer: MemoryTracer? = nil, sampleRatio: Double? = nil) -> Service {
        var options = ServiceOptions(handleSignals: false, register: false, interceptors: interceptors)
        options.tracer = tracer
        if let tracer, let sampleRatio { options.tracer = SampledTracer(tracer, ratio: sampleRatio) }
        let service = Service(name: "helloworld", address: "127.0.0.1:0", options: options)
        service.handle("Helloworld.Greeting") { (request: Request, _: Context) async throws -> Response in
            Response(message: "Hello " + request.name)
        }
        return service
    }

    func call() async throws -> HTTPClientResponse {
        try await client.request(address: address, path: "/", headers: headers, body: body)
    }

    func callIntercepted() async throws -> HTTPClientResponse {
        try await client.request(address: interceptedAddress, path: "/", headers: headers, body: body)
    }

    func callTraced() async throws -> HTTPClientResponse {
        try await client.request(address: tracedAddress, path: "/", headers: tracedHeaders, body: body)
    }

    func callSampledOut() async throws -> HTTPClientResponse {
        try await client.request(address: sampledOutAddress, path: "/", headers: headers, body: body)
    }
}

struct PassThrough: ServerInterceptor {
    func intercept(_ call: ServerCall, next: (ServerCall) async throws -> ServerResult) async throws -> ServerResult {
        try await next(call)
    }
}

let benchmarks: @Sendable () -> Void = {
    // Allocation counts, checked against Thresholds/ by scripts/check-allocations (per operation: no
    // scaling; one malloc of slack for the runtime's occasional bookkeeping). Names have no spaces:
    // the threshold files are found by name, and the tool writes spaces as underscores.
    let allocations = Benchmark.Configuration(
        metrics: [.mallocCountTotal, .wallClock],
        warmupIterations: 200,
        scalingFactor: .one,
        maxDuration: .seconds(2),
        maxIterations: 20_000,
        thresholds: [.mallocCountTotal: .init(absolute: [.p50: 1, .p90: 1])]
    )

    Benchmark.defaultConfiguration = allocations

    let codec = JSONCodec()
    let body = Array(#"{"name":"alice"}"#.utf8)
    Benchmark("JSONCodec.decode.helloworld-request") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try codec.decode(Request.self, from: body))
        }
    }
    Benchmark("JSONCodec.encode.helloworld-response") { benchmark in
        let response = Response(message: "Hello alice")
        for _ in benchmark.scaledIterations {
            blackHole(try codec.encode(response))
        }
    }
    Benchmark("Codecs.lookup.content-type") { benchmark in
        let codecs = Codecs.standard
        for _ in benchmark.scaledIterations {
            blackHole(codecs.codec(for: "application/json"))
        }
    }
    Benchmark("HTTPHeaders.lookup.case-insensitive") { benchmark in
        let headers: HTTPHeaders = [
            "content-type": "application/json", "micro-endpoint": "Helloworld.Greeting", "user-agent": "h2load",
            "accept": "*/*", "timeout": "5000000000",
        ]
        for _ in benchmark.scaledIterations {
            blackHole(headers["Micro-Endpoint"])
        }
    }
    Benchmark("Selector.select.p2c-3-nodes") { benchmark in
        let selector = Selector(strategy: .powerOfTwoChoices)
        let nodes = (1...3).map { Node(id: "n\($0)", address: "127.0.0.1:\(9000 + $0)") }
        let services = [ServiceRecord(name: "helloworld", version: "latest", nodes: nodes)]
        for _ in benchmark.scaledIterations {
            let selection = try selector.select(services)
            selector.finish(selection, outcome: .success)
        }
    }
    // the whole request path in one process: the client's HTTP/2 call, the C core on both ends,
    // the server's routing, JSON decode and encode, the answer back
    Benchmark("Call.helloworld.in-process-h2c") { benchmark in
        let fixture = try HelloworldFixture.shared()
        for _ in benchmark.scaledIterations {
            blackHole(try await fixture.call())
        }
    }
    // the same call through one interceptor that passes it on
    Benchmark("Call.helloworld.one-interceptor") { benchmark in
        let fixture = try HelloworldFixture.shared()
        for _ in benchmark.scaledIterations {
            blackHole(try await fixture.callIntercepted())
        }
    }
    // the same call traced: a server span, the caller's context extracted, the span kept
    Benchmark("Call.helloworld.traced") { benchmark in
        let fixture = try HelloworldFixture.shared()
        for _ in benchmark.scaledIterations {
            blackHole(try await fixture.callTraced())
        }
    }
    // the same call with tracing on and the trace not recorded: its ids bound, no span
    Benchmark("Call.helloworld.sampled-out") { benchmark in
        let fixture = try HelloworldFixture.shared()
        for _ in benchmark.scaledIterations {
            blackHole(try await fixture.callSampledOut())
        }
    }
    Benchmark("MicroError.json") { benchmark in
        let error = MicroError.notFound("helloworld", "endpoint X not found")
        for _ in benchmark.scaledIterations {
            blackHole(error.json)
        }
    }
}
