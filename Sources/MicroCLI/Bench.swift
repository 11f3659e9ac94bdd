import ArgumentParser
import Foundation
import Histogram
import Logging
import Micro
import MicroCore

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load-test an endpoint of a service (by name) or any HTTP/2 or gRPC server (by URL).",
        discussion: """
            Examples:
              micro bench helloworld Helloworld.Greeting --data '{"name":"bench"}' --connections 16 --concurrency 10 --duration 10
              micro bench http://127.0.0.1:8080/Greeter/Hello --grpc --data-hex 0a0562656e6368 --rate 5000 --duration 30
            Latency is from when a request was due (open loop) or sent (closed loop) to its answer.
            """)

    @Argument(help: "A service name (found in the registry) or a URL http://HOST:PORT/PATH.") var target: String
    @Argument(help: "The endpoint, for a service target (e.g. Helloworld.Greeting).") var endpoint: String?
    @Option(help: "Request body (for JSON services: the request as JSON).") var data: String = "{}"
    @Option(name: .customLong("data-hex"), help: "Request body as hex bytes (e.g. a protobuf message).") var dataHex: String?
    @Option(help: "Content type of the body.") var contentType: String?
    @Flag(help: "gRPC framing (content type application/grpc unless given).") var grpc = false
    @Option(name: .customLong("header"), help: "A request header, key=value (repeatable).") var headers: [String] = []
    @Option(help: "Connections (per node for a service target).") var connections: Int = 1
    @Option(help: "Requests in flight per connection.") var concurrency: Int = 1
    @Option(help: "Total requests (default 10000 unless --duration).") var requests: Int?
    @Option(help: "Seconds to run.") var duration: Double?
    @Option(help: "Open loop: requests per second in total.") var rate: Double?
    @Option(help: "Requests per connection before measuring.") var warmup: Int = 100
    @Option(help: "Give up on a request after this many seconds.") var timeout: Double = 10
    @Flag(help: "Print the report as JSON.") var json = false
    @Option(help: "swift: the framework's client stack, a task per request (what services pay); core: the C core drives the load itself, closed loop only, for servers faster than one core of Swift can drive.")
    var driver: Driver = .swift

    enum Driver: String, ExpressibleByArgument { case swift, core }
    @Option(name: .customLong("busy-poll"), help: "Microseconds the client's loop polls without sleeping after each read (0: off). Lower latency, for a core's time; see MICRO_BUSY_POLL for servers.")
    var busyPoll: Int = 0
    @Option(name: .customLong("hdr-log"), help: "Write the full latency distribution (µs, HdrHistogram percentile format) to this file.") var hdrLog: String?

    func validate() throws {
        guard connections >= 1, concurrency >= 1 else { throw ValidationError("--connections and --concurrency must be at least 1") }
        if let rate, !(rate.isFinite && rate > 0) { throw ValidationError("--rate must be a number above 0") }
        _ = try secondsOption(timeout, option: "timeout")
        if let duration { _ = try secondsOption(duration, option: "duration") }
        if requests == nil && duration == nil && rate != nil { throw ValidationError("--rate needs --requests or --duration") }
        if !target.hasPrefix("http://") && endpoint == nil { throw ValidationError("a service target needs an ENDPOINT") }
        if target.hasPrefix("https://") { throw ValidationError("https:// targets need TLS, which is not supported yet") }
        guard (0...1_000_000).contains(busyPoll) else { throw ValidationError("--busy-poll must be a number of microseconds from 0 to 1000000") }
        if driver == .core && rate != nil { throw ValidationError("--driver core runs a closed loop: drop --rate") }
    }

    func run() async throws {
        var body = Array(data.utf8)
        if let dataHex {
            guard let bytes = Self.hex(dataHex) else { throw ValidationError("--data-hex is not hex") }
            body = bytes
        }
        let contentType = self.contentType ?? (grpc ? "application/grpc" : (dataHex != nil ? "application/octet-stream" : "application/json"))
        var metadata: [String: String] = [:]
        for (key, value) in try keyValues(headers, what: "header") { metadata[key.lowercased()] = value }
        // the load generator's own loop: one core for the client, whatever the machine has
        let group = try EventLoopGroup(numberOfThreads: 1, busyPoll: .microseconds(busyPoll))
        if driver == .core {
            return try await runCore(body: body, contentType: contentType, metadata: metadata, loop: group.loops[0], group: group)
        }
        let loop = group.loops[0]
        var logger = Logger(label: "micro.bench")
        logger.logLevel = .error
        let call: LoadGenerator.Call
        if target.hasPrefix("http://") {
            let url = try Self.split(target)
            let path = url.path
            let clients = (0..<connections).map { _ in HTTPClient(group: group) }
            var requestHeaders: HTTPHeaders = ["content-type": contentType]
            if contentType.hasPrefix("application/grpc") {
                requestHeaders["te"] = "trailers"
                body = GRPCFraming.frame(body)
            }
            for (k, v) in metadata { requestHeaders[k] = v }
            let headers = requestHeaders, payload = body, address = url.address, grpcCall = contentType.hasPrefix("application/grpc")
            call = { connection in
                let response = try await clients[connection].request(address: address, path: path, headers: headers, body: payload)
                guard response.status == 200 else { throw MicroError(id: "bench", code: response.status, detail: "HTTP \(response.status)") }
                if grpcCall, let status = response.trailers["grpc-status"] ?? response.headers["grpc-status"], status != "0" {
                    throw MicroError(id: "bench", code: 1000 + (Int(status) ?? 0), detail: "grpc-status \(status)")
                }
            }
        } else {
            let options = CallOptions(timeout: try secondsOption(timeout, option: "timeout"), retries: 0, contentType: contentType, metadata: metadata)
            let registry = try processRegistry()
            let clients = try (0..<connections).map { _ in try makeClient(registry: registry, options: options, eventLoopGroup: group, logger: logger) }
            let service = target, endpoint = self.endpoint!, payload = body
            call = { connection in _ = try await clients[connection].call(service, endpoint, body: payload) }
        }
        let plan = LoadGenerator.Plan(
            connections: connections, concurrency: concurrency,
            requests: requests ?? (duration == nil ? 10_000 : nil),
            duration: try duration.map { try secondsOption($0, option: "duration") }, rate: rate, warmup: warmup)
        let terminal = isatty(STDERR_FILENO) == 1 && !json
        let generator = LoadGenerator(plan: plan, loop: loop)
        let progress: (@Sendable (Int, Int) -> Void)? = terminal ? Self.showProgress : nil
        let (report, histogram) = await generator.run(call, progress: progress)
        if terminal { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        try emit(report, histogram)
        group.shutdown()
        if report.requests > 0 && report.errors.values.reduce(0, +) == report.requests { throw ExitCode(1) }
    }

    /// The C core's driver: one request shape, latencies recorded per call, the same report.
    func runCore(body: [UInt8], contentType: String, metadata: [String: String], loop: EventLoop, group: EventLoopGroup) async throws {
        let address: String, path: String
        var headers: HTTPHeaders = ["content-type": contentType]
        var payload = body
        if target.hasPrefix("http://") {
            (address, path) = try Self.split(target)
        } else {
            // a service target: its first node, addressed the way the client addresses it
            guard let node = try await processRegistry().getService(target).flatMap(\.nodes).first else {
                throw ValidationError("service \(target) not found in the registry")
            }
            address = node.address
            path = contentType.hasPrefix("application/grpc") ? Client.grpcPath(service: target, endpoint: endpoint!) : "/"
            if !contentType.hasPrefix("application/grpc") {
                headers.add(name: "micro-service", value: target)
                headers.add(name: "micro-endpoint", value: endpoint!)
            }
        }
        if contentType.hasPrefix("application/grpc") {
            headers["te"] = "trailers"
            payload = GRPCFraming.frame(body)
        }
        for (k, v) in metadata { headers[k] = v }
        var plan = try CoreLoadDriver.Plan(address: address, path: path, headers: headers, body: payload)
        plan.connections = connections
        plan.concurrency = concurrency
        plan.requests = requests ?? (duration == nil ? 10_000 : nil)
        plan.duration = try duration.map { try secondsOption($0, option: "duration") }
        plan.warmup = warmup
        plan.grpc = contentType.hasPrefix("application/grpc")
        let result = try await CoreLoadDriver.run(plan, on: loop)
        if let error = result.connectionError, result.succeeded == 0 {
            FileHandle.standardError.write(Data("micro bench: \(error)\n".utf8))
            throw ExitCode(1)
        }
        var histogram = Histogram<UInt64>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
        for us in result.latencyMicroseconds { _ = histogram.record(UInt64(us)) }
        let seconds = Double(result.elapsed.components.seconds) + Double(result.elapsed.components.attoseconds) / 1e18
        let count = result.succeeded + result.failed
        let report = LoadGenerator.Report(
            requests: count, errors: result.failed > 0 ? ["failed": result.failed] : [:], seconds: seconds, histogram: histogram,
            connections: connections, concurrency: concurrency, rate: nil)
        try emit(report, histogram)
        group.shutdown()
        if report.requests > 0 && result.failed == report.requests { throw ExitCode(1) }
    }

    func emit(_ report: LoadGenerator.Report, _ histogram: Histogram<UInt64>) throws {
        if let hdrLog {
            var text = ""
            histogram.outputPercentileDistribution(to: &text, outputValueUnitScalingRatio: 1)
            try text.write(toFile: hdrLog, atomically: true, encoding: .utf8)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(Self.describe(report))
        }
    }

    @Sendable static func showProgress(_ done: Int, _ failed: Int) {
        FileHandle.standardError.write(Data("\r\(done) requests, \(failed) errors".utf8))
    }

    static func describe(_ r: LoadGenerator.Report) -> String {
        func ms(_ key: String) -> String { String(format: "%.3f ms", (r.latencyMicroseconds[key] ?? 0) / 1000) }
        var lines = [
            "requests   \(r.requests) in \(r.seconds) s, \(Int(r.requestsPerSecond)) req/s (\(r.connections) connections × \(r.concurrency)\(r.rate.map { ", open loop at \(Int($0))/s" } ?? ""))",
            "errors     \(r.errors.isEmpty ? "none" : r.errors.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", "))",
            "latency    p50 \(ms("p50"))  p90 \(ms("p90"))  p99 \(ms("p99"))  p99.9 \(ms("p99.9"))  max \(ms("max"))",
        ]
        if r.requests == 0 { lines.append("(no request completed)") }
        return lines.joined(separator: "\n")
    }

    static func hex(_ text: String) -> [UInt8]? {
        let digits = Array(text.filter { !$0.isWhitespace })
        guard digits.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        for i in stride(from: 0, to: digits.count, by: 2) {
            guard let byte = UInt8(String(digits[i...i + 1]), radix: 16) else { return nil }
            out.append(byte)
        }
        return out
    }

    static func split(_ url: String) throws -> (address: String, path: String) {
        let rest = url.dropFirst("http://".count)
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let address = String(rest[..<slash])
        guard address.contains(":") else { throw ValidationError("the URL needs a port: http://HOST:PORT/PATH") }
        let path = slash == rest.endIndex ? "/" : String(rest[slash...])
        return (address, path)
    }
}
