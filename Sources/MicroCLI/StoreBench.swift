import ArgumentParser
import Foundation
import Histogram
import Micro
import MicroCore
import Synchronization

/// `micro store-bench`: the store under load, one JSON line at the end.
struct StoreBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store-bench",
        abstract: "Load the store (MICRO_STORE): writes or reads by key from CONCURRENCY tasks; prints one JSON line.",
        discussion: """
            write: each task writes bench/<i> (a VALUE-SIZE value) in a closed loop; read: the KEYS keys are written first, \
            then read by key. --count stops after that many operations, else --duration. --acknowledge prints each key \
            whose write returned (a durability test kills the process and looks for them). Writes to the table \
            bench of the database bench: point it only at a throwaway store.
            """)

    @Option(help: "write or read") var op = "write"
    @Option(help: "Tasks in a closed loop.") var concurrency = 1
    @Option(help: "Seconds to run (unless --count).") var duration: Double = 5
    @Option(help: "Operations in all.") var count: Int?
    @Option(help: "Distinct keys read.") var keys = 1000
    @Option(name: .customLong("value-size"), help: "Value size in bytes.") var valueSize = 100
    @Flag(help: "Print each key whose write was acknowledged, one per line.") var acknowledge = false

    func validate() throws {
        guard ["write", "read"].contains(op) else { throw ValidationError("--op is write or read") }
        guard concurrency >= 1, keys >= 1, valueSize >= 0, duration > 0, duration <= 3600, (count ?? 1) >= 1 else {
            throw ValidationError("--concurrency, --keys and --count at least 1, --duration in (0, 3600]")
        }
    }

    func run() async throws {
        let store = StoreCommand.open()
        let table = store.table("bench", database: "bench")
        let value = [UInt8](repeating: UInt8(ascii: "v"), count: valueSize)
        let keys = self.keys, read = op == "read", acknowledge = self.acknowledge
        if read {
            for i in 0..<keys { try await table.write(Record(key: "bench/\(i)", value: value)) }
        }
        let counters = LoadGenerator.Counters()
        let limit = count ?? Int.max
        let end = ContinuousClock.now + .milliseconds(Int64(duration * 1000))
        let start = ContinuousClock.now
        // the tasks run on the event loops, as a service's handlers do
        let loops = EventLoopGroup.shared.loops
        let results = await withTaskGroup(of: (Histogram<UInt64>, Int).self) { group in
            for task in 0..<concurrency {
                group.addTask(executorPreference: loops[task % loops.count]) {
                    var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
                    var errors = 0
                    // one clock reading per operation: its end is the next one's start and the
                    // time checked against the end of the run
                    var last = ContinuousClock.now
                    while true {
                        let i = counters.issued.wrappingAdd(1, ordering: .relaxed).oldValue
                        guard i < limit, last < end || limit != Int.max else { break }
                        do {
                            if read {
                                _ = try await table.read("bench/\(i % keys)")
                            } else {
                                try await table.write(Record(key: "bench/\(i)", value: value))
                                if acknowledge { FileHandle.standardOutput.write(Data("bench/\(i)\n".utf8)) }
                            }
                            let now = ContinuousClock.now
                            _ = histogram.record(UInt64(max(1, (now - last).wholeNanoseconds / 1000)))
                            last = now
                        } catch {
                            last = ContinuousClock.now
                            errors += 1
                            if errors == 1 { FileHandle.standardError.write(Data("micro store-bench: \(error)\n".utf8)) }
                        }
                    }
                    return (histogram, errors)
                }
            }
            var all = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
            var errors = 0
            for await (histogram, e) in group {
                all.add(histogram)
                errors += e
            }
            return (all, errors)
        }
        let seconds = (ContinuousClock.now - start).nanosecondsValue / 1e9
        let ops = Int(results.0.totalCount)
        await store.close()
        let line = BenchLine(op: op, concurrency: concurrency, ops: ops, errors: results.1, seconds: seconds, histogram: results.0)
        if !acknowledge { print(String(decoding: try JSONEncoder().encode(line), as: UTF8.self)) }
    }
}
