import ArgumentParser
import Foundation
import Logging
import Micro
import Synchronization
import UnixSignals

/// `micro run DIR`: builds the Swift packages under DIR (DIR itself, or each directory in it with
/// a Package.swift), runs their executables, serves them through a gateway, and when a package's
/// sources change builds it again and restarts its executables (a build that fails leaves the
/// running ones as they are, and says why).
struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Build and run the services under a directory with the gateway; rebuild and restart a service when its sources change.",
        discussion: """
            Each executable's output is shown line by line, prefixed with its name. The services register in the \
            registry MICRO_REGISTRY names (every MICRO_* setting passes to them). Until SIGINT or SIGTERM.
            """)

    @Argument(help: "A Swift package, or a directory of them.") var directory = "."
    @Option(help: "Where the gateway listens, HOST:PORT.") var address = ":8080"
    @Flag(help: "Run no gateway.") var noGateway = false
    @Flag(help: "Do not rebuild and restart on changes.") var noWatch = false
    @Option(help: "Seconds between looks at the sources.") var interval: Double = 1

    func validate() throws {
        guard interval > 0 else { throw ValidationError("--interval must be positive") }
    }

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        let root = URL(fileURLWithPath: directory).standardizedFileURL
        let packages = Self.packages(under: root)
        guard !packages.isEmpty else {
            FileHandle.standardError.write(Data("micro run: no Swift package in \(root.path) or the directories in it\n".utf8))
            throw ExitCode(1)
        }
        var logger = Logger(label: "micro.run")
        logger.logLevel = .warning
        let supervisors = packages.map { PackageSupervisor(path: $0) }
        for supervisor in supervisors { await supervisor.buildAndStart() }
        var gateway: Gateway?
        if !noGateway {
            do {
                let client = try Client(config: .process, logger: logger)
                let made = Gateway(client: client, options: .init(address: address), logger: logger)
                let (host, port) = try made.start()
                let shown = host.isEmpty ? "[::]" : (host.contains(":") ? "[\(host)]" : host)
                Output.say("gateway listening on \(shown):\(port)")
                gateway = made
            } catch {
                Output.say("gateway: cannot start: \(error)")
            }
        }
        let watcher = Task {
            guard !noWatch else { return }
            var seen = supervisors.map { $0.fingerprint() }
            while (try? await Task.sleep(for: .milliseconds(Int(interval * 1000)))) != nil {
                for (i, supervisor) in supervisors.enumerated() {
                    let now = supervisor.fingerprint()
                    guard now != seen[i] else { continue }
                    seen[i] = now
                    Output.say("\(supervisor.name): sources changed, building")
                    await supervisor.buildAndStart()
                }
            }
        }
        for await _ in signals { break }
        watcher.cancel()
        await gateway?.shutdown()
        for supervisor in supervisors { await supervisor.stop() }
    }

    /// `root` if it is a package, else the packages directly in it, by name.
    static func packages(under root: URL) -> [URL] {
        let files = FileManager.default
        if files.fileExists(atPath: root.appendingPathComponent("Package.swift").path) { return [root] }
        let entries = (try? files.contentsOfDirectory(at: root, includingPropertiesForKeys: nil)) ?? []
        return entries.filter { files.fileExists(atPath: $0.appendingPathComponent("Package.swift").path) }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
    }
}

/// Lines to the tool's output, one writer at a time.
enum Output {
    static let lock = Mutex(())

    static func say(_ line: String) {
        lock.withLock { _ in FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
    }
}

/// One package: builds it, runs its executables, restarts them after a good build.
final class PackageSupervisor: Sendable {
    let path: URL
    let name: String
    private let running = Mutex<[Process]>([])

    init(path: URL) {
        self.path = path
        self.name = path.lastPathComponent
    }

    /// The newest modification time and the count of the files a build reads (Package.swift and
    /// everything under Sources/): a change to either means building again.
    func fingerprint() -> [Double] {
        let files = FileManager.default
        var newest = 0.0, count = 0.0
        var paths = [path.appendingPathComponent("Package.swift").path]
        if let walker = files.enumerator(atPath: path.appendingPathComponent("Sources").path) {
            for case let relative as String in walker { paths.append(path.appendingPathComponent("Sources/" + relative).path) }
        }
        for file in paths {
            guard let attributes = try? files.attributesOfItem(atPath: file), let date = attributes[.modificationDate] as? Date else { continue }
            newest = max(newest, date.timeIntervalSince1970)
            count += 1
        }
        return [newest, count]
    }

    /// Builds; if that works, stops what runs and starts the package's executables anew.
    func buildAndStart() async {
        let build = await Self.capture(["swift", "build", "--package-path", path.path])
        guard build.status == 0 else {
            Output.say("\(name): build failed (what runs keeps running):")
            for line in build.output.split(separator: "\n").suffix(40) { Output.say("\(name) | \(line)") }
            return
        }
        let binPath = await Self.capture(["swift", "build", "--package-path", path.path, "--show-bin-path"])
        let describe = await Self.capture(["swift", "package", "--package-path", path.path, "describe", "--type", "json"])
        let executables = Self.executables(describe.output)
        guard binPath.status == 0, !executables.isEmpty else {
            Output.say("\(name): built, but no executable product to run")
            return
        }
        let restarting = running.withLock { !$0.isEmpty }
        await stop()
        let bin = URL(fileURLWithPath: binPath.output.trimmingCharacters(in: .whitespacesAndNewlines))
        for executable in executables {
            do {
                let process = try Self.start(bin.appendingPathComponent(executable), prefix: executable)
                running.withLock { $0.append(process) }
                Output.say("\(name): \(restarting ? "restarted" : "started") \(executable) (pid \(process.processIdentifier))")
            } catch {
                Output.say("\(name): cannot start \(executable): \(error)")
            }
        }
    }

    /// Stops what runs: SIGTERM, then SIGKILL after ten seconds.
    func stop() async {
        let processes = running.withLock { list in
            defer { list.removeAll() }
            return list
        }
        for process in processes where process.isRunning {
            process.terminate()
            let pid = process.processIdentifier
            let stopped = await Self.waitForExit(process, within: .seconds(10))
            if !stopped { kill(pid, SIGKILL) }
        }
    }

    /// The names of the executable products in `swift package describe --type json`'s output.
    static func executables(_ json: String) -> [String] {
        struct Description: Decodable {
            struct Product: Decodable {
                var name: String
                var type: [String: AnyDecodable?]
            }
            var products: [Product]
        }
        struct AnyDecodable: Decodable {
            init(from decoder: any Decoder) throws {}
        }
        // the JSON follows whatever SwiftPM printed before it
        guard let start = json.firstIndex(of: "{"),
              let description = try? JSONDecoder().decode(Description.self, from: Data(json[start...].utf8)) else { return [] }
        return description.products.filter { $0.type.keys.contains("executable") }.map(\.name)
    }

    /// Starts `executable`, its output lines prefixed with `prefix`.
    static func start(_ executable: URL, prefix: String) throws -> Process {
        let process = Process()
        process.executableURL = executable
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        let reader = pipe.fileHandleForReading
        let pending = Mutex<[UInt8]>([])
        reader.readabilityHandler = { handle in
            let data = handle.availableData
            let lines = pending.withLock { buffer -> [String] in
                if data.isEmpty {  // the end: what is left is the last line
                    defer { buffer.removeAll() }
                    return buffer.isEmpty ? [] : [String(decoding: buffer, as: UTF8.self)]
                }
                buffer += data
                var lines: [String] = []
                while let newline = buffer.firstIndex(of: 10) {
                    lines.append(String(decoding: buffer[..<newline], as: UTF8.self))
                    buffer.removeSubrange(...newline)
                }
                return lines
            }
            for line in lines { Output.say("[\(prefix)] \(line)") }
            if data.isEmpty { handle.readabilityHandler = nil }
        }
        process.terminationHandler = { ended in
            Output.say("[\(prefix)] exited (status \(ended.terminationStatus))")
        }
        try process.run()
        return process
    }

    static func waitForExit(_ process: Process, within bound: Duration) async -> Bool {
        let deadline = ContinuousClock.now + bound
        while process.isRunning {
            guard ContinuousClock.now < deadline, (try? await Task.sleep(for: .milliseconds(20))) != nil else { return !process.isRunning }
        }
        return true
    }

    /// Runs a command to its end; its status and its output (stdout and stderr).
    static func capture(_ argv: [String]) async -> (status: Int32, output: String) {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                process.arguments = argv
                let pipe = Pipe()
                process.standardOutput = pipe
                process.standardError = pipe
                do {
                    try process.run()
                } catch {
                    return continuation.resume(returning: (127, "cannot run \(argv[0]): \(error)"))
                }
                let output = pipe.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                continuation.resume(returning: (process.terminationStatus, String(decoding: output, as: UTF8.self)))
            }
        }
    }
}
