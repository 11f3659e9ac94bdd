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

    /// The first `name` on the PATH, as an absolute path (what `Tool.run(name)` runs).
    public static func path(of name: String) -> String? {
        let directories = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        return directories.map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
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

/// The real peers written in Go (Tests/Peers/*.go), built for a test in GOPATH mode against
/// Debian's Go packages (golang-github-hashicorp-mdns-dev, golang-etcd-server-dev).
public enum GoPeer {
    /// Tests/Peers.
    public static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Peers")

    /// Builds Tests/Peers/`name`.go into a temporary directory; the caller removes `directory`.
    /// `packages` names what scripts/setup installs for it, for the error message.
    public static func build(_ name: String, packages: String) async throws -> (binary: String, directory: URL) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("micro-\(name)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let binary = dir.appendingPathComponent(name).path
        let build = try await Tool.run(
            "go", ["build", "-o", binary, directory.appendingPathComponent("\(name).go").path],
            environment: [
                "GO111MODULE": "off", "GOPATH": "/usr/share/gocode", "GOFLAGS": "",
                // shared between tests and runs: a second build of the same peer takes a second
                "GOCACHE": FileManager.default.temporaryDirectory.appendingPathComponent("micro-gocache").path,
            ], timeout: .seconds(600))
        guard build.status == 0 else {
            try? FileManager.default.removeItem(at: dir)
            throw ChildError("go build of \(name) failed (scripts/setup installs golang-go and \(packages)): \(build.stderr)")
        }
        return (binary, dir)
    }
}
