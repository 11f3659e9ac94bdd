public import Foundation
import Synchronization

/// A service started as a child process; its log lines are awaited as events.
public final class ChildService: Sendable {
    public let process: Process
    private let lines: AsyncStream<String>
    private let log = Mutex<[String]>([])
    public let port: Int

    /// Starts `executable` from the build directory and waits for `listening on HOST:PORT`.
    public init(
        _ executable: String,
        arguments: [String] = [],
        environment: [String: String] = [:],
        launcher: [String] = []
    ) async throws {
        let process = Process()
        let path = Tool.binDirectory.appendingPathComponent(executable).path
        if launcher.isEmpty {
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = arguments
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = launcher + [path] + arguments
        }
        var env = ProcessInfo.processInfo.environment
        env["MICRO_SERVER_ADDRESS"] = "127.0.0.1:0"
        for (k, v) in environment { env[k] = v }
        process.environment = env
        let pipe = Pipe()
        process.standardError = pipe
        process.standardOutput = pipe
        process.standardInput = FileHandle.nullDevice
        let (stream, continuation) = AsyncStream<String>.makeStream()
        let buffer = Mutex<[UInt8]>([])
        pipe.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            if data.isEmpty {
                handle.readabilityHandler = nil
                continuation.finish()
                return
            }
            let complete: [String] = buffer.withLock { buffer in
                buffer.append(contentsOf: data)
                var lines: [String] = []
                while let nl = buffer.firstIndex(of: 10) {
                    lines.append(String(decoding: buffer[..<nl], as: UTF8.self))
                    buffer.removeSubrange(...nl)
                }
                return lines
            }
            for line in complete { continuation.yield(line) }
        }
        try process.run()
        self.process = process
        self.lines = stream
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
            throw ChildError("\(executable) exited before listening:\n" + seen.joined(separator: "\n"))
        }
        self.port = port
    }

    /// Waits for a log line containing `text` (or the end of the log), returning it.
    public func waitForLine(containing text: String) async -> String? {
        if let line = log.withLock({ $0.first { $0.contains(text) } }) { return line }
        for await line in lines {
            log.withLock { $0.append(line) }
            if line.contains(text) { return line }
        }
        return nil
    }

    public var logLines: [String] { log.withLock { $0 } }

    public func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }

    /// Waits for exit and returns the status (reading the rest of the log).
    public func waitForExit() async -> Int32 {
        while await waitForLine(containing: "\u{0}never\u{0}") != nil {}
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Stops the child if it still runs.
    public func stop() {
        if process.isRunning {
            signal(SIGKILL)
        }
        process.waitUntilExit()
    }
}

public struct ChildError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
