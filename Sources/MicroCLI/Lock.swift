import ArgumentParser
import Foundation
import Micro

#if canImport(Glibc)
import Glibc
#endif

/// `micro lock NAME -- CMD ARGS…`: CMD run while holding the lock, as `etcdctl lock` runs it, with
/// the lock's fencing token in `MICRO_LOCK_TOKEN`.
struct Lock: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a command while holding a lock (MICRO_SYNC: local, memory, etcd); the fencing token is in MICRO_LOCK_TOKEN.",
        discussion: """
            Exit code: the command's, or 1 with one line on stderr when the lock cannot be had (or is lost while the \
            command runs: the command is then stopped with SIGTERM). --count runs the command that many times, taking \
            the lock for each run, and stops at the first failure.
              MICRO_SYNC=etcd micro lock invoices --ttl 10 --wait 30 -- ./bill-customers
            """)

    @Argument(help: "The lock's name.") var name: String
    @Option(help: "Seconds the lock outlives this process if it dies.") var ttl: Double = 15
    @Option(help: "Seconds to wait for the lock (0: only if free now).") var wait: Double = 60
    @Option(help: "Runs of the command, each under the lock.") var count: Int = 1
    @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.") var command: [String] = []

    func validate() throws {
        guard !command.isEmpty else { throw ValidationError("give the command to run after --") }
        guard count >= 1 else { throw ValidationError("--count must be at least 1") }
        guard ttl.isFinite, wait.isFinite, ttl >= 1, wait >= 0 else { throw ValidationError("--ttl must be at least 1 and --wait at least 0") }
    }

    func run() async throws {
        if let problem = Syncs.plugins.problem(MicroConfig.process.frameworkEnvironment) { fail(problem) }
        let sync = Syncs.default
        for _ in 0..<count {
            let held: HeldLock
            do {
                held = try await sync.lock(name, ttl: .milliseconds(Int64(ttl * 1000)), wait: .milliseconds(Int64(wait * 1000)))
            } catch {
                fail("\(error)")
            }
            let status = await runHolding(held)
            do {
                try await held.unlock()
            } catch {
                fail("\(error)")
            }
            if held.isLost { fail("lock \(name) was lost while the command ran") }
            if status != 0 {
                await sync.close()
                throw ExitCode(status)
            }
        }
        await sync.close()
    }

    private func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("micro lock: \(message)\n".utf8))
        Foundation.exit(1)
    }

    /// Runs the command with the token in its environment; stops it if the lock is lost.
    private func runHolding(_ held: HeldLock) async -> Int32 {
        var environment = ProcessInfo.processInfo.environment
        environment["MICRO_LOCK_TOKEN"] = String(held.token)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = command
        process.environment = environment
        let (ended, end) = AsyncStream<Int32>.makeStream()
        process.terminationHandler = { end.yield($0.terminationStatus); end.finish() }
        do {
            try process.run()
        } catch {
            fail("cannot run \(command[0]): \(error.localizedDescription)")
        }
        let watcher = Task {
            _ = await held.lostSignal()
            if !Task.isCancelled, process.isRunning { process.terminate() }
        }
        defer { watcher.cancel() }
        for await status in ended { return status }
        return 1
    }
}
