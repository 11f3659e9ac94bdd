public import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A service started as a child process; its log lines are awaited as events.
public final class ChildService: Sendable {
    public let pid: pid_t
    private let output = LineLog()
    private let exited = Mutex<Int32?>(nil)
    public let port: Int

    /// Starts `executable` from the build directory (or at an absolute path) (behind `launcher`, e.g. prlimit) and waits
    /// for its `listening on HOST:PORT` line.
    public init(
        _ executable: String,
        arguments: [String] = [],
        environment: [String: String] = [:],
        launcher: [String] = []
    ) async throws {
        StallWatch.startIfAsked()
        let path = executable.hasPrefix("/") ? executable : Tool.binDirectory.appendingPathComponent(executable).path
        var env = ProcessInfo.processInfo.environment
        env["MICRO_SERVER_ADDRESS"] = "127.0.0.1:0"
        // a registry of its own unless the test shares one: tests never touch ~/.cache
        env["MICRO_REGISTRY_ADDRESS"] = FileManager.default.temporaryDirectory
            .appendingPathComponent("micro-registry-\(UUID().uuidString)").path
        for (k, v) in environment { env[k] = v }
        let child = try Spawn.start(launcher + [path] + arguments, environment: env, pipeOutput: true)
        pid = child.pid
        let fd = child.output!
        let output = self.output
        Thread.detachNewThread {
            Spawn.readLines(fd) { output.add($0) }
            output.end()
        }
        guard let line = await output.wait(for: "listening on ", within: .seconds(300)),
              let port = Int(line[line.range(of: "listening on ")!.upperBound...].split(separator: ":").last ?? "")
        else {
            kill(child.pid, SIGKILL)
            _ = await Spawn.wait(child.pid)
            throw ChildError("\(executable) exited before listening:\n" + output.lines.joined(separator: "\n"))
        }
        self.port = port
    }

    /// Waits for a log line containing `text` (one already logged counts); nil if the log ends
    /// first, or after `within` (a bound, so that a broken test fails instead of hanging; never a
    /// measurement: a slow machine, a sanitizer, must not reach it).
    ///
    /// `occurrence`: the how-manyth such line (1: the first).
    public func waitForLine(containing text: String, occurrence: Int = 1, within: Duration = .seconds(300)) async -> String? {
        await output.wait(for: text, occurrence: occurrence, within: within)
    }

    public var logLines: [String] { output.lines }

    public func signal(_ sig: Int32) { kill(pid, sig) }

    /// Waits for the exit; returns the status (128 + signal when killed).
    public func waitForExit() async -> Int32 {
        if let status = exited.withLock({ $0 }) { return status }
        _ = await waitForLine(containing: "\u{0}", within: .seconds(3600))  // until the log ends
        let status = await Spawn.wait(pid)
        exited.withLock { $0 = status }
        return status
    }

    /// Kills the child if it still runs and reaps it.
    public func stop() {
        if exited.withLock({ $0 }) != nil { return }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        exited.withLock { $0 = 128 + SIGKILL }
    }
}

public struct ChildError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A child's output lines, and the tasks waiting for a line.
final class LineLog: Sendable {
    private struct State {
        var lines: [String] = []
        var ended = false
        var waiters: [UUID: (text: String, occurrence: Int, continuation: CheckedContinuation<String?, Never>)] = [:]

        /// The `occurrence`th line containing `text`, if there is one yet.
        func line(containing text: String, occurrence: Int) -> String? {
            var seen = 0
            for line in lines where line.contains(text) {
                seen += 1
                if seen == occurrence { return line }
            }
            return nil
        }
    }

    private let state = Mutex<State>(State())

    var lines: [String] { state.withLock { $0.lines } }

    func add(_ line: String) {
        let matched = state.withLock { state in
            state.lines.append(line)
            let matching = state.waiters.filter {
                line.contains($0.value.text) && state.line(containing: $0.value.text, occurrence: $0.value.occurrence) == line
            }
            for id in matching.keys { state.waiters[id] = nil }
            return matching.values.map(\.continuation)
        }
        for waiter in matched { waiter.resume(returning: line) }
    }

    func end() {
        let waiters = state.withLock { state in
            state.ended = true
            defer { state.waiters = [:] }
            return state.waiters.values.map(\.continuation)
        }
        for waiter in waiters { waiter.resume(returning: nil) }
    }

    private func give(up id: UUID) {
        state.withLock { $0.waiters.removeValue(forKey: id) }?.continuation.resume(returning: nil)
    }

    func wait(for text: String, occurrence: Int = 1, within: Duration) async -> String? {
        let id = UUID()
        return await withTaskGroup(of: String?.self) { group in
            group.addTask {
                await withCheckedContinuation { (continuation: CheckedContinuation<String?, Never>) in
                    let now: String?? = self.state.withLock { state in
                        if let line = state.line(containing: text, occurrence: occurrence) { return .some(line) }
                        if state.ended { return .some(nil) }
                        state.waiters[id] = (text, occurrence, continuation)
                        return nil
                    }
                    if let now { continuation.resume(returning: now) }
                }
            }
            group.addTask {
                try? await Task.sleep(for: within)
                self.give(up: id)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            self.give(up: id)  // whichever way it ended, the other task finishes now
            return first
        }
    }
}
