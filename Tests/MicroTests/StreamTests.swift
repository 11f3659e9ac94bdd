import CounterProto
import Foundation
@testable import Micro
import MicroTestSupport
import SwiftProtobuf
import Testing

/// Streaming calls of all four kinds, against real peers (Python grpcio as client and as
/// server) and between swift-micro processes, over gRPC and the micro protocol.
@Suite struct StreamTests {
    static let peer = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Peers/stream_peer.py").path

    struct PeerReport: Decodable {
        struct Status: Decodable, Equatable {
            var code: String
            var details: String
        }
        struct EchoError: Decodable {
            var code: String
            var details: String
            var before: [String]
        }
        struct Deadline: Decodable {
            var code: String
            var received: Bool
        }
        var ping: String
        var count: [Int]
        var pad: [Int]
        var sum: [String: Int]
        var echo: [String]
        var echo_error: EchoError
        var count_invalid: Status
        var cancel: String
        var deadline: Deadline
        var watch: String
        var watch_unknown: String
        var reflection_services: [String]
        var reflection_methods: [String: [Reflected]]
        var after: String
    }

    /// A method as reflection describes it: input, output, client streaming, server streaming.
    enum Reflected: Decodable, Equatable {
        case name(String)
        case flag(Bool)
        init(from decoder: any Swift.Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let flag = try? c.decode(Bool.self) { self = .flag(flag) } else { self = .name(try c.decode(String.self)) }
        }
    }

    @Test func pythonClientStreamsWithTheCounterService() async throws {
        let counter = try await ChildService("counter")
        defer { counter.stop() }
        // a hang guard: the peer's deadline case may double its deadline up to 128 s on a slow machine
        let result = try await Tool.run("python3", [Self.peer, "client", "127.0.0.1:\(counter.port)"], timeout: .seconds(600))
        #expect(result.status == 0, "\(result.stderr)")
        let report = try JSONDecoder().decode(PeerReport.self, from: Data(result.stdout.utf8))
        #expect(report.ping == "hi")
        #expect(report.count == [1, 2, 3, 4, 5])  // server streaming
        #expect(report.pad == [3])
        #expect(report.sum == ["sum": 5050, "count": 100])  // client streaming
        #expect(report.echo == ["a", "b", "c"])  // bidirectional, interleaved
        #expect(report.echo_error.code == "FAILED_PRECONDITION")
        #expect(report.echo_error.details == "asked to fail")
        #expect(report.echo_error.before == ["x"])
        #expect(report.count_invalid.code == "INVALID_ARGUMENT")
        #expect(report.cancel == "CANCELLED")
        #expect(report.deadline.code == "DEADLINE_EXCEEDED")
        #expect(report.deadline.received)
        #expect(report.watch == "SERVING")
        #expect(report.watch_unknown == "SERVICE_UNKNOWN")
        #expect(report.after == "still here")
        // reflection: a generic client lists the services and reads the methods' shapes
        #expect(report.reflection_services.contains("counter.Counter"))
        #expect(report.reflection_services.contains("grpc.health.v1.Health"))
        #expect(report.reflection_services.contains("grpc.reflection.v1.ServerReflection"))
        #expect(report.reflection_methods["Count"] == [.name("counter.CountRequest"), .name("counter.Tick"), .flag(false), .flag(true)])
        #expect(report.reflection_methods["Sum"] == [.name("counter.Number"), .name("counter.Total"), .flag(true), .flag(false)])
        #expect(report.reflection_methods["Echo"] == [.name("counter.Note"), .name("counter.Note"), .flag(true), .flag(true)])
        // The handler saw both endless streams end (it logs how each ended): waited for as the
        // second such line, not for a given wording. The cancelled one had no deadline, so it
        // can only read as a cancellation. The one that ran into its deadline may read either
        // way: the client resets it at its own deadline, which runs from before it sent the
        // request, so the reset reads as the deadline only if it arrives within
        // Router.deadlineSlack of the server's deadline; on a loaded machine (ThreadSanitizer)
        // the request can take longer than that to reach the handler, and the reset then reads
        // as a cancellation. aStreamPastItsDeadlineTellsTheHandler checks the wording where
        // nothing races the server's own timer.
        let second = await counter.waitForLine(containing: "Counter.Count stopped after", occurrence: 2)
        #expect(second != nil, "\(counter.logLines.joined(separator: "\n"))")
        let stopped = counter.logLines.filter { $0.contains("Counter.Count stopped after") }
        #expect(stopped.contains { $0.contains("the client cancelled the stream") }, "\(stopped)")
        #expect(stopped.allSatisfy { $0.contains("the client cancelled the stream") || $0.contains("the caller's deadline passed") }, "\(stopped)")
    }

    @Test func swiftClientStreamsWithAPythonServer() async throws {
        let python = try await ChildService("/usr/bin/env", arguments: ["python3", Self.peer, "server"])
        defer { python.stop() }
        let address = "127.0.0.1:\(python.port)"
        let counter = CounterClient(
            client: Client(registry: MemoryRegistry()),
            options: CallOptions(timeout: .hangGuard, contentType: "application/grpc", address: address, streamTimeout: .hangGuard))
        try await Self.exerciseAllKinds(counter)

        // the deadline of a stream, mid-stream: 300 ms, doubled until ticks came before it passed
        // (how soon the first tick comes is the machine's business: a slow one, a sanitizer,
        // gets a longer deadline, not a failure); the last bound is a hang guard
        var endless = Counter_CountRequest()
        endless.count = 1 << 40
        var received = 0
        var deadline: Duration = .milliseconds(300)
        while received == 0 {
            do {
                try await counter.count(endless, options: CallOptions(contentType: "application/grpc", address: address, streamTimeout: deadline)) { ticks in
                    for try await _ in ticks { received += 1 }
                }
                Issue.record("an endless stream ended")
                break
            } catch let error as MicroError {
                #expect(error.code == 408, "\(error)")
                guard error.code == 408 else { break }
            }
            if received == 0 && deadline >= .seconds(120) {
                Issue.record("no tick before a deadline of \(deadline)")
                break
            }
            deadline *= 2
        }
    }

    /// A stream that outlives its caller's deadline ends on the server's timer: the handler's
    /// write fails with the deadline (it logs "the caller's deadline passed") and the caller gets
    /// 408. The caller sets no timer of its own here (the deadline goes only in the micro
    /// protocol's `Timeout` header), so no reset of the caller's races the server's timer, and the
    /// wording is certain.
    @Test func aStreamPastItsDeadlineTellsTheHandler() async throws {
        let counter = try await ChildService("counter")
        defer { counter.stop() }
        // 500 ms, in go-micro's decimal nanoseconds
        let options = CallOptions(contentType: "application/json", metadata: ["timeout": "500000000"], address: "127.0.0.1:\(counter.port)")
        let stub = CounterClient(client: Client(registry: MemoryRegistry()), options: options)
        var endless = Counter_CountRequest()
        endless.count = 1 << 40
        do {
            try await stub.count(endless) { ticks in
                for try await _ in ticks {}
            }
            Issue.record("an endless stream ended")
        } catch let error as MicroError {
            #expect(error.code == 408, "\(error)")
        }
        let stopped = await counter.waitForLine(containing: "Counter.Count stopped after")
        #expect(stopped?.contains("the caller's deadline passed") == true, "\(stopped ?? "nil")")
    }

    @Test func swiftToSwiftOverGRPCAndTheMicroProtocol() async throws {
        let counter = try await ChildService("counter")
        defer { counter.stop() }
        let address = "127.0.0.1:\(counter.port)"
        let client = Client(registry: MemoryRegistry())
        for contentType in ["application/grpc", "application/grpc+json", "application/protobuf", "application/json"] {
            let options = CallOptions(timeout: .hangGuard, contentType: contentType, address: address, streamTimeout: .hangGuard)
            try await Self.exerciseAllKinds(CounterClient(client: client, options: options))
        }
        // a caller that leaves mid-stream resets it; the handler sees it
        let stub = CounterClient(
            client: client, options: CallOptions(timeout: .hangGuard, contentType: "application/json", address: address, streamTimeout: .hangGuard))
        var endless = Counter_CountRequest()
        endless.count = 1 << 40
        try await stub.count(endless) { ticks in
            var n = 0
            for try await _ in ticks {
                n += 1
                if n == 10 { break }
            }
        }
        #expect(await counter.waitForLine(containing: "the client cancelled the stream") != nil)
        // reflection v1 (the Python peer speaks v1alpha): services, then the file of a symbol
        let grpc = CallOptions(timeout: .hangGuard, contentType: "application/grpc", address: address, streamTimeout: .hangGuard)
        let (services, file) = try await client.stream(
            "counter", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request: Grpc_Reflection_V1_ServerReflectionRequest.self, response: Grpc_Reflection_V1_ServerReflectionResponse.self, options: grpc
        ) { call in
            var list = Grpc_Reflection_V1_ServerReflectionRequest()
            list.listServices = ""
            var symbol = Grpc_Reflection_V1_ServerReflectionRequest()
            symbol.fileContainingSymbol = "counter.Counter.Echo"
            try await call.send(list)
            try await call.send(symbol)
            call.closeSend()
            var answers: [Grpc_Reflection_V1_ServerReflectionResponse] = []
            for try await answer in call.responses { answers.append(answer) }
            return (answers.first?.listServicesResponse.service.map(\.name) ?? [],
                    answers.dropFirst().first?.fileDescriptorResponse.fileDescriptorProto.first)
        }
        #expect(services.contains("counter.Counter"))
        #expect(try file.map { try Google_Protobuf_FileDescriptorProto(serializedBytes: $0).name } == "counter.proto")
        var note = Counter_Note()
        note.text = "after"
        #expect(try await stub.ping(note).text == "after")
    }

    struct Reading: Codable, Sendable, Equatable {
        var sensor: String
        var value: Double
    }

    struct Summary: Codable, Sendable, Equatable {
        var count: Int
        var mean: Double
    }

    struct Range: Codable, Sendable {
        var from: Int
        var to: Int
    }

    /// Codable messages in-process, over the micro protocol (JSON) and gRPC (+json).
    @Test func codableStreamsOverBothWires() async throws {
        let fleet = Fleet()
        try await fleet.start("sensors") { service in
            service.handle("Sensors.Replay", serverStream: { (range: Range, out: MessageWriter<Reading>, _: Context) in
                guard range.from <= range.to else { throw MicroError.badRequest("sensors", "empty range") }
                for i in range.from...range.to { try await out.write(Reading(sensor: "s\(i)", value: Double(i))) }
            })
            service.handle("Sensors.Summarize", clientStream: { (readings: MessageStream<Reading>, _: Context) in
                var count = 0, sum = 0.0
                for try await reading in readings {
                    count += 1
                    sum += reading.value
                }
                return Summary(count: count, mean: count == 0 ? 0 : sum / Double(count))
            })
            service.handle("Sensors.Scale", bidiStream: { (readings: MessageStream<Reading>, out: MessageWriter<Reading>, _: Context) in
                for try await reading in readings { try await out.write(Reading(sensor: reading.sensor, value: reading.value * 10)) }
            })
        }
        let client = fleet.client()
        for contentType in ["application/json", "application/grpc+json"] {
            let options = CallOptions(timeout: .hangGuard, contentType: contentType, streamTimeout: .hangGuard)
            let replayed = try await client.serverStream("sensors", "Sensors.Replay", Range(from: 1, to: 4), as: Reading.self, options: options) { readings in
                var all: [Reading] = []
                for try await reading in readings { all.append(reading) }
                return all
            }
            #expect(replayed.map(\.value) == [1, 2, 3, 4])
            let summary = try await client.clientStream("sensors", "Sensors.Summarize", replayed, as: Summary.self, options: options)
            #expect(summary == Summary(count: 4, mean: 2.5))
            let scaled = try await client.stream("sensors", "Sensors.Scale", request: Reading.self, response: Reading.self, options: options) { call in
                try await call.send(Reading(sensor: "a", value: 1.5))
                var iterator = call.responses.makeAsyncIterator()
                let first = try await iterator.next()
                call.closeSend()
                return (first, try await iterator.next())
            }
            #expect(scaled.0 == Reading(sensor: "a", value: 15))
            #expect(scaled.1 == nil)
            await #expect(throws: MicroError.badRequest("sensors", "empty range")) {
                try await client.serverStream("sensors", "Sensors.Replay", Range(from: 2, to: 1), as: Reading.self, options: options) { readings in
                    for try await _ in readings {}
                }
            }
        }
        // the registry says which endpoints stream, as go-micro does
        let record = try await fleet.registry.getService("sensors").first
        #expect(record?.endpoints.first { $0.name == "Sensors.Scale" }?.metadata["stream"] == "true")
        try await fleet.stopAll()
    }

    @Test func microStreamToolSendsAndPrintsJSONLines() async throws {
        let counter = try await ChildService("counter")
        defer { counter.stop() }
        let micro = Tool.binDirectory.appendingPathComponent("micro").path
        let address = "127.0.0.1:\(counter.port)"
        let sum = try await Tool.run("sh", ["-c", "printf '{\"value\":1}\\n{\"value\":2}\\n{\"value\":39}\\n' | \(micro) stream --address \(address) counter Counter.Sum"])
        #expect(sum.status == 0, "\(sum.stderr)")
        #expect(sum.stdout == #"{"sum":"42","count":"3"}"# + "\n")
        let echo = try await Tool.run("sh", ["-c", "printf '{\"text\":\"a\"}\\n{\"text\":\"b\"}\\n' | \(micro) stream --address \(address) counter Counter.Echo"])
        #expect(echo.stdout == #"{"text":"a"}"# + "\n" + #"{"text":"b"}"# + "\n")
        let failed = try await Tool.run("sh", ["-c", "printf '{\"text\":\"fail\"}\\n' | \(micro) stream --address \(address) counter Counter.Echo"])
        #expect(failed.status == 1)
        #expect(failed.stderr.contains("asked to fail"))
    }

    /// A go-micro stream frame: an HTTP/1.1 request with the stream id and routing headers.
    static func goMicroFrame(_ endpoint: String, _ body: String, error: String? = nil) -> String {
        var head = "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nMicro-Stream: 1\r\n"
            + "Micro-Service: counter\r\nMicro-Endpoint: \(endpoint)\r\nMicro-Method: \(endpoint)\r\n"
        if let error { head += "Micro-Error: \(error)\r\n" }
        return head + "Content-Length: \(body.utf8.count)\r\n\r\n" + body
    }

    /// go-micro's HTTP/1.1 streams, as its HTTP transport writes them (one connection, HTTP/1.1
    /// messages as frames both ways, `Micro-Error: EOS` at the end), from a raw socket. The
    /// opening frame carries client.Stream's request body, which go-micro's server drops (its
    /// generated clients put an empty message there and send each message after it): so do we.
    @Test func goMicroHTTP1StreamFrames() async throws {
        let counter = try await ChildService("counter")
        defer { counter.stop() }
        // bidirectional, interleaved, after an opening frame whose body is no message
        let echo = try RawConnection(port: counter.port)
        try echo.send(Self.goMicroFrame("Counter.Echo", #"{"text":"dropped"}"#))
        for text in ["a", "b"] {
            try echo.send(Self.goMicroFrame("Counter.Echo", #"{"text":"\#(text)"}"#))
            let frame = try await echo.readResponse()
            #expect(frame.status == 200)
            #expect(frame.body == #"{"text":"\#(text)"}"#)
            #expect(frame.headers["micro-stream"] == "1")
        }
        try echo.send(Self.goMicroFrame("Counter.Echo", "", error: "EOS"))
        let end = try await echo.readResponse()
        #expect(end.headers["micro-error"] == "EOS")
        #expect(end.body.isEmpty)
        #expect(try await echo.readToEnd().isEmpty)  // the server closes after the stream

        // server streaming: one request, three answers, EOS
        let count = try RawConnection(port: counter.port)
        try count.send(Self.goMicroFrame("Counter.Count", "{}") + Self.goMicroFrame("Counter.Count", #"{"count":3}"#))
        var ticks: [String] = []
        while true {
            let frame = try await count.readResponse()
            if frame.headers["micro-error"] != nil {
                #expect(frame.headers["micro-error"] == "EOS")
                break
            }
            ticks.append(frame.body)
        }
        #expect(ticks == [#"{"n":"1"}"#, #"{"n":"2"}"#, #"{"n":"3"}"#])

        // client streaming, and an error frame
        let sum = try RawConnection(port: counter.port)
        try sum.send(Self.goMicroFrame("Counter.Sum", "") + Self.goMicroFrame("Counter.Sum", #"{"value":40}"#) + Self.goMicroFrame("Counter.Sum", #"{"value":2}"#)
                     + Self.goMicroFrame("Counter.Sum", "", error: "EOS"))
        #expect(try await sum.readResponse().body == #"{"sum":"42","count":"2"}"#)
        #expect(try await sum.readResponse().headers["micro-error"] == "EOS")
        let failing = try RawConnection(port: counter.port)
        try failing.send(Self.goMicroFrame("Counter.Echo", "{}") + Self.goMicroFrame("Counter.Echo", #"{"text":"fail"}"#))
        let error = try await failing.readResponse()
        #expect(error.headers["micro-error"]?.contains("asked to fail") == true)
    }

    /// Ping, a server stream, a client stream and an interleaved bidirectional stream, with
    /// errors, against a Counter service.
    static func exerciseAllKinds(_ counter: CounterClient) async throws {
        var note = Counter_Note()
        note.text = "hi"
        #expect(try await counter.ping(note).text == "hi")

        var request = Counter_CountRequest()
        request.count = 5
        request.size = 3
        let ticks = try await counter.count(request) { ticks in
            var all: [Counter_Tick] = []
            for try await tick in ticks { all.append(tick) }
            return all
        }
        #expect(ticks.map(\.n) == [1, 2, 3, 4, 5])
        #expect(ticks.allSatisfy { $0.pad.count == 3 })

        let total = try await counter.sum((1...100).map { value in
            var number = Counter_Number()
            number.value = Int64(value)
            return number
        })
        #expect(total.sum == 5050 && total.count == 100)

        let echoed = try await counter.echo { call in
            var iterator = call.responses.makeAsyncIterator()
            var echoed: [String] = []
            for text in ["a", "b", "c"] {
                var note = Counter_Note()
                note.text = text
                try await call.send(note)
                echoed.append(try await iterator.next()?.text ?? "<end>")
            }
            call.closeSend()
            #expect(try await iterator.next() == nil)
            return echoed
        }
        #expect(echoed == ["a", "b", "c"])

        var before: [String] = []
        do {
            try await counter.echo { call in
                for text in ["x", "fail"] {
                    var note = Counter_Note()
                    note.text = text
                    try await call.send(note)
                }
                call.closeSend()
                for try await note in call.responses { before.append(note.text) }
            }
            Issue.record("a failing stream succeeded")
        } catch let error as MicroError {
            #expect(error.code == 412, "\(error)")
            #expect(error.detail == "asked to fail")
        }
        #expect(before == ["x"])

        request.count = -1
        await #expect(throws: MicroError.self) {
            try await counter.count(request) { ticks in for try await _ in ticks {} }
        }
    }

    /// A million ticks of 100 bytes to a reader that stops every 1,000 to make a call of its own:
    /// the producer is always ahead, so without backpressure the server would buffer most of the
    /// ~105 MB. With it, the server's peak RSS grows by less than 48 MiB.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["MICRO_SANITIZED"] == nil, "ASan's quarantine holds freed memory: RSS says nothing"))
    func aSlowReaderKeepsTheServersMemoryBounded() async throws {
        let counter = try await ChildService("counter")
        defer { counter.stop() }
        let address = "127.0.0.1:\(counter.port)"
        let client = Client(registry: MemoryRegistry())
        let stub = CounterClient(
            client: client, options: CallOptions(timeout: .hangGuard, contentType: "application/grpc", address: address, streamTimeout: .hangGuard))
        var note = Counter_Note()
        note.text = "warm"
        _ = try await stub.ping(note)
        let before = try Self.rss(counter.pid)
        var request = Counter_CountRequest()
        request.count = 1_000_000
        request.size = 100
        let (received, inOrder) = try await stub.count(request) { ticks in
            var expected: Int64 = 1, inOrder = true
            for try await tick in ticks {
                if tick.n != expected || tick.pad.count != 100 { inOrder = false }
                expected += 1
                if expected % 1000 == 0 { _ = try await stub.ping(note) }
            }
            return (expected - 1, inOrder)
        }
        #expect(received == 1_000_000)
        #expect(inOrder)
        let peak = try Self.peakRSS(counter.pid)
        #expect(peak - before < 48 * 1024 * 1024, "peak RSS grew by \((peak - before) >> 20) MiB")
    }

    static func rss(_ pid: pid_t) throws -> Int { try statusField(pid, "VmRSS:") }
    static func peakRSS(_ pid: pid_t) throws -> Int { try statusField(pid, "VmHWM:") }

    private static func statusField(_ pid: pid_t, _ name: String) throws -> Int {
        let text = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name) }),
              let kb = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        else { throw ChildError("no \(name) in /proc/\(pid)/status") }
        return kb * 1024
    }
}
