import Foundation
import Histogram
import Micro
import MicroCore
import Synchronization

/// Drives load with the framework's own client stack and records latency in an HdrHistogram.
///
/// Closed loop: `connections × concurrency` workers, each sending its next request when the last
/// one answered. Open loop (`rate`): requests are due at fixed intervals; a worker sends a due
/// request at once when it is late, and its latency counts from when it was due, so a stalled
/// server shows in the percentiles (no coordinated omission).
struct LoadGenerator: Sendable {
    struct Plan: Sendable {
        var connections = 1
        var concurrency = 1
        var requests: Int?
        var duration: Duration?
        var rate: Double?
        var warmup = 0
    }

    /// One call; throws to count an error (by its label).
    typealias Call = @Sendable (_ connection: Int) async throws -> Void

    struct Report: Sendable, Encodable {
        var requests: Int
        var errors: [String: Int]
        var seconds: Double
        var requestsPerSecond: Double
        var latencyMicroseconds: [String: Double]
        var connections: Int
        var concurrency: Int
        var rate: Double?
    }

    let plan: Plan
    let loop: EventLoop

    func run(_ call: @escaping Call, progress: (@Sendable (Int, Int) -> Void)? = nil) async -> (Report, Histogram<UInt64>) {
        let counters = Counters()
        // warm-up: connections made and code paths hot before anything is recorded
        if plan.warmup > 0 {
            await withTaskGroup(of: Void.self) { group in
                for connection in 0..<plan.connections {
                    group.addTask(executorPreference: loop) {
                        for _ in 0..<plan.warmup { try? await call(connection) }
                    }
                }
            }
        }
        let start = ContinuousClock.now
        let end = plan.duration.map { start + $0 }
        let interval: Duration? = plan.rate.map { .nanoseconds(Int64(1e9 / $0)) }
        let limit = plan.requests ?? Int.max
        let ticker = progress.map { report in
            Task {
                while (try? await Task.sleep(for: .seconds(1))) != nil {
                    report(counters.completed.load(ordering: .relaxed), counters.failed.load(ordering: .relaxed))
                }
            }
        }
        let recorder = Recorder()
        var errors: [String: Int] = [:]
        await withTaskGroup(of: [String: Int].self) { group in
            for worker in 0..<(plan.connections * plan.concurrency) {
                let connection = worker % plan.connections
                group.addTask(executorPreference: loop) {
                    var latencies = Recorder.Batch()
                    var errors: [String: Int] = [:]
                    while true {
                        let index = counters.issued.wrappingAdd(1, ordering: .relaxed).oldValue
                        if index >= limit { break }
                        // open loop: latency counts from when the request was due; closed
                        // loop: from now (one clock read, not two)
                        let sent: ContinuousClock.Instant
                        if let interval {
                            let due = start + interval * index
                            if let end, due >= end { break }
                            if due > .now { try? await Task.sleep(until: due) }
                            sent = due
                        } else {
                            sent = ContinuousClock.now
                            if let end, sent >= end { break }
                        }
                        do {
                            try await call(connection)
                        } catch {
                            errors[Self.label(error), default: 0] += 1
                            counters.failed.add(1, ordering: .relaxed)
                        }
                        let elapsed = ContinuousClock.now - sent
                        recorder.record(UInt64(max(1, elapsed.wholeNanoseconds / 1_000)), &latencies)
                        counters.completed.add(1, ordering: .relaxed)
                    }
                    recorder.flush(&latencies)
                    return errors
                }
            }
            for await workerErrors in group {
                errors.merge(workerErrors, uniquingKeysWith: +)
            }
        }
        let total = recorder.histogram.withLock { $0 }
        ticker?.cancel()
        let elapsed = ContinuousClock.now - start
        let seconds = elapsed.nanosecondsValue / 1e9
        let count = counters.completed.load(ordering: .relaxed)
        let report = Report(requests: count, errors: errors, seconds: seconds, histogram: total,
                            connections: plan.connections, concurrency: plan.concurrency, rate: plan.rate)
        return (report, total)
    }

    /// One latency histogram (µs, up to an hour) for every worker. A histogram that resolves
    /// three digits over that range is 190 KB; one per worker (160 at 16 × 10) made the load
    /// generator's own recording a cache miss per call that also evicted what the client under
    /// test touches. Workers batch their latencies and add them under the lock a batch at a time.
    final class Recorder: Sendable {
        let histogram = Mutex(Histogram<UInt64>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three))

        /// A worker's latencies not yet in the histogram.
        struct Batch {
            static let size = 256
            var values: [UInt64]
            init() {
                values = []
                values.reserveCapacity(Self.size)
            }
        }

        func record(_ microseconds: UInt64, _ batch: inout Batch) {
            batch.values.append(microseconds)
            if batch.values.count == Batch.size { flush(&batch) }
        }

        func flush(_ batch: inout Batch) {
            guard !batch.values.isEmpty else { return }
            histogram.withLock { histogram in
                for value in batch.values { _ = histogram.record(value) }
            }
            batch.values.removeAll(keepingCapacity: true)
        }
    }

    final class Counters: Sendable {
        let issued = Atomic<Int>(0)
        let completed = Atomic<Int>(0)
        let failed = Atomic<Int>(0)
    }

    static func label(_ error: any Error) -> String {
        switch error {
        case let e as MicroError: "\(e.code)"
        case let e as HTTPClientError: "\(e.kind)"
        default: "\(type(of: error))"
        }
    }
}

extension LoadGenerator.Report {
    /// A report of `requests` answered in `seconds`, latencies from `histogram` (µs).
    init(requests: Int, errors: [String: Int], seconds: Double, histogram: Histogram<UInt64>, connections: Int, concurrency: Int, rate: Double?) {
        var latency: [String: Double] = [:]
        if histogram.totalCount > 0 {
            for (name, p) in [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9)] {
                latency[name] = Double(histogram.valueAtPercentile(p))
            }
            latency["max"] = Double(histogram.max)
            latency["mean"] = (histogram.mean * 10).rounded() / 10
        }
        self.init(
            requests: requests, errors: errors, seconds: (seconds * 1000).rounded() / 1000,
            requestsPerSecond: (Double(requests) / max(seconds, 1e-9)).rounded(), latencyMicroseconds: latency,
            connections: connections, concurrency: concurrency, rate: rate)
    }
}
