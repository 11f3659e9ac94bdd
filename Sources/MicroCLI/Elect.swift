import ArgumentParser
import Foundation
import Micro
import Synchronization
import UnixSignals

/// `micro elect NAME`: campaigns in an election and prints who leads, one JSON line per change.
struct Elect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Campaign in an election (MICRO_SYNC: local, memory, etcd) and print the leader at each change, as JSON lines.",
        discussion: """
            Lines: {"leader":"ID","term":N,"self":BOOL} when the leader changes ({"leader":null} when there is none), \
            and {"leading":true,"term":N} / {"leading":false,"term":N,"lost":BOOL} when this process's own term \
            begins and ends. SIGUSR1 resigns and campaigns again once another leads (or after the TTL); SIGINT and \
            SIGTERM resign and exit 0. Exit 1 with one line on stderr when the election cannot be joined; a term or a \
            place in the queue lost later (cut off from the store for the TTL) is said on stderr, and it campaigns again.
              MICRO_SYNC=etcd micro elect scheduler --id node-a
            """)

    @Argument(help: "The election's name.") var name: String
    @Option(help: "This candidate's identity (default: host name and process id).") var id: String?
    @Option(help: "Seconds the leadership outlives this process if it dies.") var ttl: Double = 15

    func validate() throws {
        _ = try secondsOption(ttl, option: "ttl", atLeast: 1)
        guard id?.isEmpty != true else { throw ValidationError("--id cannot be empty") }
    }

    func run() async throws {
        if let problem = Syncs.plugins.problem(MicroConfig.process.frameworkEnvironment) { fail(problem) }
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint, .sigusr1)
        let ttl = try secondsOption(self.ttl, option: "ttl", atLeast: 1)
        let election = Syncs.default.leader(name, identity: id ?? Election.defaultIdentity, ttl: ttl)
        let identity = election.identity
        let observer = Task {
            for await leader in election.leaders() {
                if let leader {
                    emit(#"{"leader":\#(json(leader.identity)),"term":\#(leader.term),"self":\#(leader.identity == identity)}"#)
                } else {
                    emit(#"{"leader":null}"#)
                }
            }
        }
        let current = Mutex<(leadership: Leadership?, handOver: Bool)>((nil, false))
        let candidate = Task {
            var attempts = 0, pause = Duration.milliseconds(100)
            while !Task.isCancelled {
                let leadership: Leadership
                do {
                    attempts += 1
                    leadership = try await election.campaign()
                    pause = .milliseconds(100)
                } catch {
                    if Task.isCancelled { return }
                    // the election cannot be joined at all: said, exit 1; a place lost while
                    // waiting (cut off from etcd for the TTL), or etcd gone for a while: again
                    let kind = (error as? SyncError)?.kind
                    if kind == .invalidArgument || (attempts == 1 && kind != .lost) { fail("\(error)") }
                    FileHandle.standardError.write(Data("micro elect: \(error); campaigning again\n".utf8))
                    guard (try? await Task.sleep(for: pause)) != nil else { return }
                    pause = min(pause * 2, .seconds(5))
                    continue
                }
                let cancelled = current.withLock { c in
                    c.leadership = leadership
                    return Task.isCancelled
                }
                if cancelled { return }  // told to stop as it was elected: resigned below
                emit(#"{"leading":true,"term":\#(leadership.term)}"#)
                for await _ in leadership.status.dropFirst() {}
                if Task.isCancelled { return }  // told to stop: resigned below
                emit(#"{"leading":false,"term":\#(leadership.term),"lost":\#(leadership.isLost)}"#)
                let handOver = current.withLock { c in
                    defer { c = (nil, false) }
                    return c.handOver
                }
                if handOver { await waitForAnother(election, identity: identity, within: ttl) }
            }
        }
        for await signal in signals {
            guard signal == .sigusr1 else { break }
            let leadership = current.withLock { c in
                c.handOver = c.leadership != nil
                return c.leadership
            }
            try? await leadership?.resign()
        }
        candidate.cancel()
        await candidate.value
        if let leadership = current.withLock({ $0.leadership }) {
            try? await leadership.resign()
            emit(#"{"leading":false,"term":\#(leadership.term),"lost":\#(leadership.isLost)}"#)
        }
        observer.cancel()
        await election.sync.close()
    }

    /// Returns once a candidate other than `identity` leads, or after `within`.
    private func waitForAnother(_ election: Election, identity: String, within: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await leader in election.leaders() where leader != nil && leader?.identity != identity { return }
            }
            group.addTask { try? await Task.sleep(for: within) }
            await group.next()
            group.cancelAll()
        }
    }

    private func emit(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    private func json(_ text: String) -> String {
        String(decoding: (try? JSONEncoder().encode(text)) ?? Data("\"\"".utf8), as: UTF8.self)
    }

    private func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("micro elect: \(message)\n".utf8))
        Foundation.exit(1)
    }
}
