public import Foundation

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
    public static func run(_ name: String, _ arguments: [String], timeout: Duration = .seconds(120)) async throws -> ToolResult {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("micro-tool-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("stdout"), err = dir.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [name] + arguments
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        process.standardInput = FileHandle.nullDevice
        let status: Int32 = try await withCheckedThrowingContinuation { continuation in
            process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch {
                process.terminationHandler = nil
                continuation.resume(throwing: error)
                return
            }
            let bound = DispatchTime.now() + .seconds(Int(timeout.components.seconds))
            DispatchQueue.global().asyncAfter(deadline: bound) {
                if process.isRunning { process.terminate() }
            }
        }
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
