import Benchmark
import Micro

struct Request: Codable, Sendable { var name: String }
struct Response: Codable, Sendable { var message: String }

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .mallocCountTotal, .throughput],
        warmupIterations: 100,
        scalingFactor: .kilo,
        maxDuration: .seconds(2)
    )

    let codec = JSONCodec()
    let body = Array(#"{"name":"alice"}"#.utf8)
    Benchmark("JSONCodec decode helloworld request") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try codec.decode(Request.self, from: body))
        }
    }
    Benchmark("JSONCodec encode helloworld response") { benchmark in
        let response = Response(message: "Hello alice")
        for _ in benchmark.scaledIterations {
            blackHole(try codec.encode(response))
        }
    }
    Benchmark("Codecs lookup by content type") { benchmark in
        let codecs = Codecs.standard
        for _ in benchmark.scaledIterations {
            blackHole(codecs.codec(for: "application/json"))
        }
    }
    Benchmark("HTTPHeaders case-insensitive lookup") { benchmark in
        let headers: HTTPHeaders = [
            "content-type": "application/json", "micro-endpoint": "Helloworld.Greeting", "user-agent": "h2load",
            "accept": "*/*", "timeout": "5000000000",
        ]
        for _ in benchmark.scaledIterations {
            blackHole(headers["Micro-Endpoint"])
        }
    }
    Benchmark("MicroError JSON") { benchmark in
        let error = MicroError.notFound("helloworld", "endpoint X not found")
        for _ in benchmark.scaledIterations {
            blackHole(error.json)
        }
    }
}
