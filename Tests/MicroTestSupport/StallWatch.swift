import Foundation
import MicroCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A diagnostic for the test process, on when `MICRO_STALL_WATCH` is set: a thread of its own
/// posts a probe to Swift's cooperative pool and to each shared event loop every quarter second;
/// when one has not run after `MICRO_STALL_WATCH` seconds, it prints which, and the stacks of every
/// thread (gdb, into the temp dir). It measures nothing and fails nothing; it says what held a
/// thread when a test starved.
public enum StallWatch {
    private struct Probe {
        var posted: ContinuousClock.Instant?
        var reported = false
    }

    /// Starts the watch once, if asked for.
    public static func startIfAsked() { _ = once }

    private static let once: Bool = {
        guard let text = ProcessInfo.processInfo.environment["MICRO_STALL_WATCH"], let seconds = Double(text), seconds > 0 else { return false }
        let loops = EventLoopGroup.shared.loops
        let probes = Probes(count: loops.count + 1)  // the last: the pool
        let limit = Duration.milliseconds(Int(seconds * 1000))
        let thread = Thread {
            while true {
                Thread.sleep(forTimeInterval: 0.25)
                let now = ContinuousClock.now
                var stalled: [String] = []
                for i in 0...loops.count {
                    let post = probes.value.withLock { p -> Bool in
                        if let posted = p[i].posted {
                            if now - posted > limit && !p[i].reported {
                                p[i].reported = true
                                stalled.append(i == loops.count ? "the cooperative pool" : "event loop \(i)")
                            }
                            return false
                        }
                        p[i].posted = now
                        return true
                    }
                    guard post else { continue }
                    let done: @Sendable () -> Void = { probes.value.withLock { $0[i] = Probe() } }
                    if i == loops.count {
                        Task.detached { done() }
                    } else {
                        loops[i].execute(done)
                    }
                }
                if !stalled.isEmpty { dump(stalled, seconds: seconds) }
            }
        }
        thread.name = "micro-stall-watch"
        thread.start()
        return true
    }()

    private final class Probes: Sendable {
        let value: Mutex<[Probe]>
        init(count: Int) { value = Mutex(Array(repeating: Probe(), count: count)) }
    }

    private static func dump(_ stalled: [String], seconds: Double) {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("micro-stall-\(getpid())-\(UUID().uuidString.prefix(8)).txt").path
        FileHandle.standardError.write(Data("STALL: \(stalled.joined(separator: ", ")) did not run a probe for \(seconds) s; stacks in \(file)\n".utf8))
        // gdb's stdout to the file, its stderr to /dev/null; waited for on this thread (the watch's own)
        guard let gdb = try? Spawn.start(["gdb", "-p", "\(getpid())", "-batch", "-ex", "thread apply all bt 30"], stdoutPath: file) else { return }
        var status: Int32 = 0
        while waitpid(gdb.pid, &status, 0) < 0 && errno == EINTR {}
    }
}
