import ArgumentParser
import Foundation
import Histogram
import Micro
import MicroCore
import MicroEtcd
import Synchronization

/// `micro etcd-bench`: the etcd client under load, printing what Benchmarks/GoEtcd prints for
/// clientv3, so that `Benchmarks/etcd` compares the two in one run.
struct EtcdBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "etcd-bench",
        abstract: "Load an etcd with the framework's etcd client: puts, reads or watched puts; prints one JSON line.",
        discussion: """
            put: CONCURRENCY tasks in a closed loop writing /bench/<i> (a VALUE-SIZE value); range: the same reading \
            keys written first; watch: one watcher of /bench/w/ and one writer, latency from before each put to its \
            event; lock: CONCURRENCY tasks in a closed loop each taking and giving back a lock of its own (uncontended) \
            with the etcd sync. All on one event loop, so one HTTP/2 connection, as clientv3 uses one. Point it only at a \
            throwaway etcd: it writes and deletes keys under /bench/.
            """)

    @Option(help: "etcd's members, host:port,…") var endpoints: String
    @Option(help: "put, range, watch or lock") var op: String = "put"
    @Option(help: "Tasks in a closed loop (put, range).") var concurrency: Int = 1
    @Option(help: "Seconds to run.") var duration: Double = 5
    @Option(help: "Distinct keys written or read.") var keys: Int = 1000
    @Option(name: .customLong("value-size"), help: "Value size in bytes.") var valueSize: Int = 100
    @Flag(help: "range: serializable reads.") var serializable = false

    typealias Line = BenchLine

    func validate() throws {
        guard ["put", "range", "watch", "lock"].contains(op) else { throw ValidationError("--op is put, range, watch or lock") }
        guard concurrency >= 1, keys >= 1, valueSize >= 0, duration > 0, duration <= 3600 else {
            throw ValidationError("--concurrency and --keys at least 1, --duration in (0, 3600]")
        }
    }

    func run() async throws {
        let configuration: EtcdConfiguration
        do {
            configuration = try EtcdConfiguration.fromEnvironment(address: endpoints)
        } catch {
            throw ValidationError("\(error)")
        }
        let loop = EventLoopGroup.shared.next()
        let etcd = EtcdClient(configuration: configuration)
        let value = [UInt8](repeating: UInt8(ascii: "v"), count: valueSize)
        let keys = self.keys, serializable = self.serializable
        let line: Line
        if op == "watch" {
            line = try await watch(etcd, value: value)
        } else {
            if op == "range" {
                for i in 0..<keys { try await etcd.put("/bench/\(i)", value) }
            }
            let plan = LoadGenerator.Plan(connections: 1, concurrency: concurrency, duration: try secondsOption(duration, option: "duration"), warmup: 100)
            let generator = LoadGenerator(plan: plan, loop: loop)
            let counter = LoadGenerator.Counters()
            let put = op == "put", lock = op == "lock"
            let sync = EtcdSync(client: etcd)
            // a lock of its own per task at a time: never contended
            let free = Mutex(Array(0..<concurrency))
            let (report, histogram) = await generator.run { _ in
                let i = counter.issued.wrappingAdd(1, ordering: .relaxed).oldValue % keys
                if lock {
                    let id = free.withLock { $0.removeLast() }
                    defer { free.withLock { $0.append(id) } }
                    try await sync.lock("bench-\(id)", ttl: .seconds(15), wait: .zero).unlock()
                } else if put {
                    try await etcd.put("/bench/\(i)", value)
                } else {
                    _ = try await etcd.get(.key("/bench/\(i)"), serializable: serializable)
                }
            }
            await sync.close()
            line = Line(op: op, concurrency: concurrency, ops: report.requests, errors: report.errors.values.reduce(0, +),
                        seconds: report.seconds, ops_per_sec: report.requestsPerSecond,
                        p50_us: Double(histogram.valueAtPercentile(50)), p99_us: Double(histogram.valueAtPercentile(99)))
        }
        _ = try? await etcd.delete(.prefix("/bench/"))
        await etcd.close()
        print(String(decoding: try JSONEncoder().encode(line), as: UTF8.self))
    }

    /// One watcher, one writer: from just before each put to its event at the watcher.
    private func watch(_ etcd: EtcdClient, value: [UInt8]) async throws -> Line {
        let (arrivals, arrive) = AsyncStream<(Int64, ContinuousClock.Instant)>.makeStream()
        let (ready, isReady) = AsyncStream<Void>.makeStream()
        let handle = etcd.watch(.prefix("/bench/w/")) { update in
            let now = ContinuousClock.now
            switch update {
            case .synced: isReady.yield()
            case .events(let events, _): for event in events { arrive.yield((event.kv.modRevision, now)) }
            default: break
            }
        }
        defer { handle.cancel() }
        for await _ in ready { break }
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
        var iterator = arrivals.makeAsyncIterator()
        var ops = 0, errors = 0
        let start = ContinuousClock.now, end = start + (try secondsOption(duration, option: "duration"))
        while ContinuousClock.now < end {
            let sent = ContinuousClock.now
            do {
                let revision = try await etcd.put("/bench/w/\(ops % keys)", value).revision
                while let (seen, at) = await iterator.next() {
                    guard seen >= revision else { continue }
                    _ = histogram.record(UInt64(max(1, (at - sent).wholeNanoseconds / 1000)))
                    break
                }
                ops += 1
            } catch {
                errors += 1
            }
        }
        let seconds = (ContinuousClock.now - start).nanosecondsValue / 1e9
        return Line(op: "watch", concurrency: 1, ops: ops, errors: errors, seconds: seconds, histogram: histogram)
    }
}

/// The one JSON line `etcd-bench` and `store-bench` print (as Benchmarks/GoEtcd does).
struct BenchLine: Encodable {
    var op: String
    var concurrency: Int
    var ops: Int
    var errors: Int
    var seconds: Double
    var ops_per_sec: Double
    var p50_us: Double
    var p99_us: Double

    /// `ops` in `seconds`, with the latencies (µs) of `histogram`.
    init(op: String, concurrency: Int, ops: Int, errors: Int, seconds: Double, histogram: Histogram<UInt64>) {
        self.op = op
        self.concurrency = concurrency
        self.ops = ops
        self.errors = errors
        self.seconds = (seconds * 1000).rounded() / 1000
        ops_per_sec = (Double(ops) / seconds * 10).rounded() / 10
        p50_us = Double(histogram.valueAtPercentile(50))
        p99_us = Double(histogram.valueAtPercentile(99))
    }

    init(op: String, concurrency: Int, ops: Int, errors: Int, seconds: Double, ops_per_sec: Double, p50_us: Double, p99_us: Double) {
        (self.op, self.concurrency, self.ops, self.errors, self.seconds) = (op, concurrency, ops, errors, seconds)
        (self.ops_per_sec, self.p50_us, self.p99_us) = (ops_per_sec, p50_us, p99_us)
    }
}
