import ArgumentParser
import Foundation
import Histogram
import MicroCore
import MicroNATS

/// `micro nats-bench`: what the NATS client does against a server, in the shapes
/// Benchmarks/nats compares with nats.go (Benchmarks/GoNATS): publishing as fast as the
/// connection takes, and one message at a time from a publisher to a subscriber.
struct NATSBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nats-bench",
        abstract: "Load a NATS server with the framework's client; prints one JSON line.",
        discussion: """
            publish: COUNT messages of SIZE bytes from one connection as fast as it takes them, then a flush; \
            msgs_per_sec counts to the flush's answer. latency: a publisher and a subscriber on two connections, \
            COUNT messages one at a time, each published when the last arrived; p50_us and p99_us of publish → receive.
            """)

    @Option(help: "NATS server URL(s), comma separated.") var servers = "nats://127.0.0.1:4222"
    @Option(help: "publish or latency") var mode = "publish"
    @Option(help: "Messages.") var count = 1_000_000
    @Option(help: "Payload bytes.") var size = 100
    @Option(help: "Subject.") var subject = "bench"

    /// CPU seconds this process has used, all threads.
    static func processCPU() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }

    func validate() throws {
        guard ["publish", "latency"].contains(mode) else { throw ValidationError("--mode is publish or latency") }
        guard count >= 1, size >= 0 else { throw ValidationError("--count at least 1, --size at least 0") }
    }

    func run() async throws {
        let options = NATSOptions(servers: servers.split(separator: ",").map(String.init))
        let loop = EventLoopGroup.shared.next()
        let payload = [UInt8](repeating: UInt8(ascii: "x"), count: size)
        let count = self.count, subject = self.subject
        if mode == "publish" {
            let client = try await NATSClient.connect(options, on: loop)
            // the publisher on the client's loop: a publish is a write into the connection's
            // output, flushed by the loop once per turn (the task yields when it is full)
            let (seconds, cpu) = try await Task(executorPreference: loop) {
                let start = ContinuousClock.now, cpuStart = Self.processCPU()
                for _ in 0..<count { try await client.publish(subject, payload: payload) }
                try await client.flush(timeout: .seconds(60))
                return ((ContinuousClock.now - start).seconds, Self.processCPU() - cpuStart)
            }.value
            await client.close()
            let perMessage = Int(cpu * 1e9 / Double(count))
            print(#"{"mode":"publish","count":\#(count),"size":\#(size),"seconds":\#(seconds),"msgs_per_sec":\#(Int(Double(count) / seconds)),"cpu_ns_per_msg":\#(perMessage)}"#)
            return
        }
        let publisher = try await NATSClient.connect(options, on: loop)
        let subscriber = try await NATSClient.connect(options, on: EventLoopGroup.shared.next())
        let (arrivals, arrived) = AsyncStream.makeStream(of: ContinuousClock.Instant.self)
        _ = try await subscriber.subscribe(subject) { _ in arrived.yield(.now) }
        try await subscriber.flush()
        let histogram = try await Task(executorPreference: loop) {
            var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
            var iterator = arrivals.makeAsyncIterator()
            for _ in 0..<count {
                let sent = ContinuousClock.now
                try await publisher.publish(subject, payload: payload)
                guard let at = await iterator.next() else { break }
                histogram.record(UInt64(max(0, (at - sent).nanoseconds / 1000)))
            }
            return histogram
        }.value
        await publisher.close()
        await subscriber.close()
        print(#"{"mode":"latency","count":\#(count),"size":\#(size),"p50_us":\#(histogram.valueAtPercentile(50)),"p99_us":\#(histogram.valueAtPercentile(99)),"mean_us":\#(Int(histogram.mean))}"#)
    }
}

extension Duration {
    fileprivate var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    fileprivate var nanoseconds: Int64 { components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000 }
}
