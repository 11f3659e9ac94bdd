public import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The result of a finished command.
public struct ToolResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// Runs real peers (curl, nghttp, h2load, ...) as child processes.
public enum Tool {
    /// Runs `name` from the PATH with `arguments`; kills it after `timeout` (a bound, not a
    /// measurement).
    public static func run(
        _ name: String,
        _ arguments: [String],
        environment: [String: String] = [:],
        timeout: Duration = .seconds(120)
    ) async throws -> ToolResult {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("micro-tool-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("stdout"), err = dir.appendingPathComponent("stderr")
        var env: [String: String]?
        if !environment.isEmpty {
            env = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let child = try Spawn.start([name] + arguments, environment: env, stdoutPath: out.path, stderrPath: err.path)
        let finished = Mutex(false)
        let bound = DispatchTime.now() + .seconds(Int(timeout.components.seconds))
        DispatchQueue.global().asyncAfter(deadline: bound) {
            if !finished.withLock({ $0 }) { kill(child.pid, SIGKILL) }
        }
        let status = await Spawn.wait(child.pid)
        finished.withLock { $0 = true }
        return ToolResult(
            status: status,
            stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? ""
        )
    }

    /// Directory of the built executables (helloworld, ...).
    public static var binDirectory: URL {
        if let dir = ProcessInfo.processInfo.environment["MICRO_BIN_DIR"], !dir.isEmpty {
            return URL(fileURLWithPath: dir)
        }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    }
}

/// A tool started in the background (a server we did not write), stopped by its PID.
public final class BackgroundTool: Sendable {
    public let pid: pid_t
    private let reaped = Mutex(false)

    public init(_ name: String, _ arguments: [String]) throws {
        pid = try Spawn.start([name] + arguments).pid
    }

    /// Whether it has exited by itself (it is reaped then).
    public var hasExited: Bool {
        reaped.withLock { reaped in
            var status: Int32 = 0
            if !reaped && waitpid(pid, &status, WNOHANG) == pid { reaped = true }
            return reaped
        }
    }

    /// Stops it and reaps it.
    public func stop() async {
        if hasExited { return }
        kill(pid, SIGTERM)
        _ = await Spawn.wait(pid)
    }
}
