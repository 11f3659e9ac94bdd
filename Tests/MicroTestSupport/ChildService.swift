public import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A service started as a child process; its log lines are awaited as events.
public final class ChildService: Sendable {
    public let pid: pid_t
    private let lines: AsyncStream<String>
    private let log = Mutex<[String]>([])
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
        let path = executable.hasPrefix("/") ? executable : Tool.binDirectory.appendingPathComponent(executable).path
        var env = ProcessInfo.processInfo.environment
        env["MICRO_SERVER_ADDRESS"] = "127.0.0.1:0"
        // a registry of its own unless the test shares one: tests never touch ~/.cache
        env["MICRO_REGISTRY_ADDRESS"] = FileManager.default.temporaryDirectory
            .appendingPathComponent("micro-registry-\(UUID().uuidString)").path
        for (k, v) in environment { env[k] = v }
        let child = try Spawn.start(launcher + [path] + arguments, environment: env, pipeOutput: true)
        pid = child.pid
        let (stream, continuation) = AsyncStream<String>.makeStream()
        lines = stream
        let fd = child.output!
        Thread.detachNewThread {
            var pending: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(fd, &chunk, chunk.count)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                pending += chunk[..<n]
                while let nl = pending.firstIndex(of: 10) {
                    continuation.yield(String(decoding: pending[..<nl], as: UTF8.self))
                    pending.removeSubrange(...nl)
                }
            }
            close(fd)
            continuation.finish()
        }
        var port: Int?
        var seen: [String] = []
        for await line in stream {
            seen.append(line)
            if let range = line.range(of: "listening on ") {
                port = Int(line[range.upperBound...].split(separator: ":").last ?? "")
                break
            }
        }
        log.withLock { $0 = seen }
        guard let port else {
            kill(child.pid, SIGKILL)
            _ = await Spawn.wait(child.pid)
            throw ChildError("\(executable) exited before listening:\n" + seen.joined(separator: "\n"))
        }
        self.port = port
    }

    /// Waits for a log line containing `text`; nil if the log ends first.
    public func waitForLine(containing text: String) async -> String? {
        if let line = log.withLock({ $0.first { $0.contains(text) } }) { return line }
        for await line in lines {
            log.withLock { $0.append(line) }
            if line.contains(text) { return line }
        }
        return nil
    }

    public var logLines: [String] { log.withLock { $0 } }

    public func signal(_ sig: Int32) { kill(pid, sig) }

    /// Waits for the exit; returns the status (128 + signal when killed).
    public func waitForExit() async -> Int32 {
        if let status = exited.withLock({ $0 }) { return status }
        _ = await waitForLine(containing: "\u{0}")  // drains the log to its end
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
