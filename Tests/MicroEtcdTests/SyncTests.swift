import Foundation
import Micro
import MicroEtcd
import MicroTestSupport
import Synchronization
import Testing

/// Locks with fencing tokens: in one process (memory), between processes of a host (local lock
/// files) and across machines (etcd), and `micro lock` contended by real processes.
@Suite struct SyncTests {
    static func micro(_ arguments: [String], _ environment: [String: String]) async throws -> ToolResult {
        try await Tool.run(Tool.binDirectory.appendingPathComponent("micro").path, arguments, environment: environment)
    }

    /// Where `micro lock` and `micro elect` keep their locks for a test: `MICRO_SYNC=local` in a
    /// temporary directory of its own, or `etcd` on a member of its own; `stop()` cleans up.
    struct Place {
        let directory: URL
        let cluster: EtcdCluster?
        var environment: [String: String]

        init(_ sync: String) async throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("micro-sync-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            cluster = sync == "etcd" ? try await EtcdCluster() : nil
            environment = ["MICRO_SYNC": sync, "MICRO_SYNC_ADDRESS": cluster?.address ?? directory.appendingPathComponent("locks").path]
        }

        func stop() {
            cluster?.stop()
            try? FileManager.default.removeItem(at: directory)
        }
    }

    /// Many tasks take one lock in turn: never two at once, tokens strictly increasing. (The
    /// suites' leases are long, 30 s, so that a machine loaded by the rest of the suite cannot let
    /// one lapse; where a test needs a lease gone, it revokes it.)
    static func contend(_ sync: any Sync, tasks: Int = 8, rounds: Int = 25) async throws {
        final class Seen: Sendable {
            let state = Mutex<(inside: Int, tokens: [UInt64], overlaps: Int)>((0, [], 0))
        }
        let seen = Seen()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<tasks {
                group.addTask {
                    for _ in 0..<rounds {
                        try await sync.withLock("contended", ttl: .seconds(30), wait: .seconds(120)) { token in
                            seen.state.withLock { s in
                                s.inside += 1
                                if s.inside > 1 { s.overlaps += 1 }
                                s.tokens.append(token)
                            }
                            await Task.yield()
                            seen.state.withLock { $0.inside -= 1 }
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let (_, tokens, overlaps) = seen.state.withLock { $0 }
        #expect(overlaps == 0)
        #expect(tokens.count == tasks * rounds)
        #expect(zip(tokens, tokens.dropFirst()).allSatisfy { $0 < $1 }, "tokens not increasing")
    }

    /// Bad arguments and a lock held elsewhere: clear errors.
    static func refusals(_ sync: any Sync) async throws {
        for (id, ttl, wait) in [("", Duration.seconds(5), Duration.seconds(1)), ("x", .zero, .seconds(1)), ("x", .seconds(5), .seconds(-1))] {
            let error = await #expect(throws: SyncError.self) { _ = try await sync.lock(id, ttl: ttl, wait: wait) }
            #expect(error?.kind == .invalidArgument)
        }
        let held = try await sync.lock("busy", ttl: .seconds(30), wait: .zero)
        let busy = await #expect(throws: SyncError.self) { _ = try await sync.lock("busy", ttl: .seconds(30), wait: .zero) }
        #expect(busy?.kind == .timeout)
        let waited = await #expect(throws: SyncError.self) { _ = try await sync.lock("busy", ttl: .seconds(30), wait: .milliseconds(200)) }
        #expect(waited?.kind == .timeout)
        try await held.unlock()
        let again = try await sync.lock("busy", ttl: .seconds(30), wait: .zero)
        #expect(again.token > held.token)
        try await again.unlock()
        // once unlock() returned, the lock is free for the next at once
        for _ in 0..<20 { try await sync.lock("busy", ttl: .seconds(30), wait: .zero).unlock() }
    }

    @Test func memoryLocks() async throws {
        let sync = MemorySync()
        try await Self.contend(sync)
        try await Self.refusals(sync)
    }

    @Test func localLockFiles() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("micro-locks-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let sync = LocalSync(directory: dir)
        try await Self.contend(sync, tasks: 4, rounds: 20)
        try await Self.refusals(sync)
        // an id that is no file name is one all the same
        let odd = try await sync.lock("../a b/ç", ttl: .seconds(5), wait: .zero)
        try await odd.unlock()
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).allSatisfy { !$0.contains("/") })
    }

    @Test func etcdLocks() async throws {
        let cluster = try await EtcdCluster()
        defer { cluster.stop() }
        let sync = EtcdSync(configuration: EtcdConfiguration(endpoints: cluster.endpoints, timeout: .seconds(60)))
        defer { Task { await sync.close() } }
        try await Self.contend(sync, tasks: 4, rounds: 10)
        try await Self.refusals(sync)
        // nothing left behind
        #expect(try await sync.etcd.get(.prefix(EtcdSync.prefix)).kvs.isEmpty)
        // a waiter whose lease goes while it waits (cut off from etcd that long) is told, and does
        // not take the lock when the holder gives it back
        let holder = try await sync.lock("queue", ttl: .seconds(30), wait: .zero)
        let other = EtcdSync(configuration: EtcdConfiguration(endpoints: cluster.endpoints, timeout: .seconds(60)))
        defer { Task { await other.close() } }
        var queued = sync.etcd.updates(.prefix(EtcdSync.prefix + "queue/")).makeAsyncIterator()
        while let update = await queued.next(), update.isSynced == false {}
        let waiter = Task { try await other.lock("queue", ttl: .seconds(30), wait: .seconds(60)) }
        var waiterLease: Int64?
        while waiterLease == nil, let update = await queued.next() {
            if case .events(let events, _) = update { waiterLease = events.first(where: \.isCreate)?.kv.lease }
        }
        try await sync.etcd.revokeLease(try #require(waiterLease))
        try await holder.unlock()
        let lostWhileWaiting = await #expect(throws: SyncError.self) { _ = try await waiter.value }
        #expect(lostWhileWaiting?.kind == .lost, "\(String(describing: lostWhileWaiting))")
        // and its next try opens a new session and gets it
        try await other.lock("queue", ttl: .seconds(30), wait: .seconds(10)).unlock()

        // locks of one TTL share one lease (the session); closing the sync revokes it: they are lost
        let a = try await sync.lock("a", ttl: .seconds(30), wait: .zero), b = try await sync.lock("b", ttl: .seconds(30), wait: .zero)
        let keys = try await sync.etcd.get(.prefix(EtcdSync.prefix)).kvs
        #expect(keys.count == 2 && Set(keys.map(\.lease)).count == 1)
        await sync.close()
        #expect(a.isLost && b.isLost)
        let probe = EtcdClient(configuration: EtcdConfiguration(endpoints: cluster.endpoints, timeout: .seconds(60)))
        defer { Task { await probe.close() } }
        #expect(try await probe.get(.prefix(EtcdSync.prefix)).kvs.isEmpty)
        let unreachable = EtcdSync(configuration: EtcdConfiguration(endpoints: ["127.0.0.1:1"]))
        defer { Task { await unreachable.close() } }
        let error = await #expect(throws: SyncError.self) { _ = try await unreachable.lock("x", ttl: .seconds(5), wait: .seconds(1)) }
        #expect(error?.kind == .unavailable)
    }

    /// Five processes take the lock 200 times each (`micro lock --count`), each run checking the
    /// token against the last one written and incrementing a counter in a file.
    @Test(arguments: ["local", "etcd"]) func fiveProcessesContendForOneLock(sync: String) async throws {
        var place = try await Place(sync)
        defer { place.stop() }
        let counter = place.directory.appendingPathComponent("counter").path
        try "0 0\n".write(toFile: counter, atomically: true, encoding: .utf8)
        // a token not above the last written means two holders overlapped: exit 3
        let script = #"read n t < "$COUNTER"; [ "$MICRO_LOCK_TOKEN" -gt "$t" ] || exit 3; echo "$((n+1)) $MICRO_LOCK_TOKEN" > "$COUNTER""#
        place.environment["COUNTER"] = counter
        let environment = place.environment
        let results = try await withThrowingTaskGroup(of: ToolResult.self) { group in
            for _ in 0..<5 {
                group.addTask {
                    try await Self.micro(["lock", "counter", "--count", "200", "--wait", "600", "--", "sh", "-c", script], environment)
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        for result in results { #expect(result.status == 0, "\(result.stderr)") }
        let final = try String(contentsOfFile: counter, encoding: .utf8).split(separator: " ")
        #expect(final.first == "1000")
    }

    /// A holder killed with -9: the next one gets the lock (at once for lock files, after the TTL
    /// for etcd) with a larger token, and a storage write carrying the dead holder's token is
    /// refused by the fencing check.
    @Test(arguments: ["local", "etcd"]) func aHolderKilledLosesTheLockToTheNext(sync: String) async throws {
        let place = try await Place(sync)
        defer { place.stop() }
        let env = place.environment
        let micro = Tool.binDirectory.appendingPathComponent("micro").path
        // the command prints its token and its pid, then becomes a sleep (killed by that pid below)
        // (a TTL of 5 s: the next one waits that long, and a holder slowed by a loaded machine and a
        // sanitizer keeps its lease)
        let holder = try LineProcess([micro, "lock", "fenced", "--ttl", "5", "--", "sh", "-c", "echo held $MICRO_LOCK_TOKEN $$; exec sleep 600"],
                                     environment: env)
        let line = try #require(await holder.waitForLine(containing: "held "), "\(holder.output)")
        let parts = line.split(separator: " ")
        let deadToken = try #require(UInt64(parts[1])), sleeper = try #require(Int32(parts[2]))
        kill(holder.pid, SIGKILL)
        kill(sleeper, SIGKILL)
        holder.stop()
        let next = try await Self.micro(["lock", "fenced", "--wait", "60", "--", "sh", "-c", "echo $MICRO_LOCK_TOKEN"], env)
        #expect(next.status == 0, "\(next.stderr)")
        let newToken = try #require(UInt64(next.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(newToken > deadToken)
        // the storage keeps the largest token it saw and refuses a write with a smaller one
        struct FencedStore {
            var highest: UInt64 = 0
            mutating func write(token: UInt64) -> Bool {
                guard token >= highest else { return false }
                highest = token
                return true
            }
        }
        var store = FencedStore()
        let accepted = store.write(token: newToken), refused = !store.write(token: deadToken)
        #expect(accepted && refused)
    }

    @Test func theToolSaysWhyItCannotLock() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("micro-lock-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let env = ["MICRO_SYNC": "local", "MICRO_SYNC_ADDRESS": dir.path]
        let sync = LocalSync(directory: dir)
        let held = try await sync.lock("busy", ttl: .seconds(30), wait: .zero)
        let busy = try await Self.micro(["lock", "busy", "--wait", "0", "--", "true"], env)
        #expect(busy.status == 1 && busy.stderr.hasPrefix("micro lock: lock busy is held"), "\(busy.stderr)")
        try await held.unlock()
        let ran = try await Self.micro(["lock", "busy", "--", "sh", "-c", "echo $MICRO_LOCK_TOKEN; exit 7"], env)
        #expect(ran.status == 7 && UInt64(ran.stdout.trimmingCharacters(in: .whitespacesAndNewlines)).map { $0 > held.token } == true)
        let unknown = try await Self.micro(["lock", "x", "--", "true"], ["MICRO_SYNC": "zookeeper"])
        #expect(unknown.status == 1 && unknown.stderr.contains("MICRO_SYNC names no sync 'zookeeper'"), "\(unknown.stderr)")
        let unreachable = try await Self.micro(["lock", "x", "--wait", "1", "--", "true"], ["MICRO_SYNC": "etcd", "MICRO_SYNC_ADDRESS": "127.0.0.1:1"])
        #expect(unreachable.status == 1 && unreachable.stderr.contains("etcd"), "\(unreachable.stderr)")
        // and micro elect likewise
        let noElection = try await Self.micro(["elect", "x"], ["MICRO_SYNC": "zookeeper"])
        #expect(noElection.status == 1 && noElection.stderr.contains("MICRO_SYNC names no sync 'zookeeper'"), "\(noElection.stderr)")
        let electUnreachable = try await Self.micro(["elect", "x"], ["MICRO_SYNC": "etcd", "MICRO_SYNC_ADDRESS": "127.0.0.1:1"])
        #expect(electUnreachable.status == 1 && electUnreachable.stderr.contains("micro elect: cannot take leadership of x"),
                "\(electUnreachable.stderr)")
        let badTTL = try await Self.micro(["elect", "x", "--ttl", "0"], env)
        #expect(badTTL.status != 0 && badTTL.stderr.contains("--ttl must be at least 1"), "\(badTTL.stderr)")
    }
}
