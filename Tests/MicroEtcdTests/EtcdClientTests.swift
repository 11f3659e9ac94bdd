import Foundation
import Micro
@testable import MicroEtcd
import MicroTestSupport
import Synchronization
import Testing

/// The etcd v3 client against a real etcd member.
@Suite struct EtcdClientTests {
    static func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

    /// The next update that is not a notice of the stream's state (`.synced`, or `.interrupted`,
    /// which a loaded machine may cause: the watch resumes without missing anything).
    static func next(_ iterator: inout AsyncStream<EtcdWatchUpdate>.Iterator) async -> EtcdWatchUpdate? {
        while let update = await iterator.next() {
            switch update {
            case .synced, .interrupted: continue
            default: return update
            }
        }
        return nil
    }

    /// Waits for the watch to be in place; false if it ended instead.
    static func synced(_ iterator: inout AsyncStream<EtcdWatchUpdate>.Iterator) async -> Int64? {
        while let update = await iterator.next() {
            switch update {
            case .synced(let revision): return revision
            case .interrupted: continue
            default: return nil
            }
        }
        return nil
    }

    // The clients of these single-member tests wait a minute for an answer (a bound for a hung
    // test): the library's 5 s, go-micro's, passed once under ASan with the whole suite running.
    @Test func keysValuesAndTransactions() async throws {
        let cluster = try await EtcdCluster()
        defer { cluster.stop() }
        let etcd = EtcdClient(configuration: EtcdConfiguration(endpoints: cluster.endpoints, timeout: .seconds(60)))
        defer { Task { await etcd.close() } }

        let first = try await etcd.put("/t/a", Self.bytes("1"))
        try await etcd.put("/t/b", Self.bytes("2"))
        try await etcd.put("/t/c", Self.bytes("3"))
        try await etcd.put("/u/x", Self.bytes("other"))
        let replaced = try await etcd.put("/t/a", Self.bytes("one"), prevKV: true)
        #expect(replaced.previous?.valueString == "1")
        #expect(replaced.revision > first.revision)

        let all = try await etcd.get(.prefix("/t/"))
        #expect(all.kvs.map(\.keyString) == ["/t/a", "/t/b", "/t/c"])
        #expect(all.kvs.map(\.valueString) == ["one", "2", "3"])
        #expect(all.kvs[0].version == 2 && all.kvs[0].createRevision == first.revision)
        let limited = try await etcd.get(.prefix("/t/"), limit: 2)
        #expect(limited.kvs.count == 2 && limited.more && limited.count == 3)
        let counted = try await etcd.get(.prefix("/t/"), countOnly: true)
        #expect(counted.kvs.isEmpty && counted.count == 3)
        let keys = try await etcd.get(.prefix("/t/"), keysOnly: true)
        #expect(keys.kvs.allSatisfy { $0.value.isEmpty } && keys.kvs.count == 3)
        // the past, as of a revision
        let then = try await etcd.get(.key("/t/a"), revision: first.revision)
        #expect(then.kvs.first?.valueString == "1")
        let future = await #expect(throws: EtcdError.self) { try await etcd.get(.key("/t/a"), revision: all.revision + 1000) }
        #expect(future?.kind == .futureRevision)

        // compare-and-swap on the revision of the last change
        let a = try #require(all.kvs.first)
        #expect(try await etcd.compareAndSwap("/t/a", modRevision: a.modRevision, value: Self.bytes("swapped")))
        #expect(try await !etcd.compareAndSwap("/t/a", modRevision: a.modRevision, value: Self.bytes("stale")))
        #expect(try await etcd.get(.key("/t/a")).kvs.first?.valueString == "swapped")
        #expect(try await etcd.compareAndSwap("/t/new", modRevision: 0, value: Self.bytes("created")))
        #expect(try await !etcd.compareAndSwap("/t/new", modRevision: 0, value: Self.bytes("again")))
        let txn = try await etcd.txn([EtcdCompare("/t/b", .value(Self.bytes("nope")))], success: [.delete(.prefix("/t/"))],
                                     failure: [.get(.key("/t/b")), .put("/t/d", Self.bytes("4"))])
        #expect(!txn.succeeded && txn.ranges.first?.kvs.first?.valueString == "2")

        let deleted = try await etcd.delete(.prefix("/t/"), prevKV: true)
        #expect(deleted.deleted == 5 && Set(deleted.previous.map(\.keyString)) == ["/t/a", "/t/b", "/t/c", "/t/d", "/t/new"])
        #expect(try await etcd.get(.prefix("/t/")).kvs.isEmpty)
        #expect(try await etcd.get(.prefix("/u/")).kvs.count == 1)

        // bad input: a clear error, the client still works after it
        let empty = await #expect(throws: EtcdError.self) { try await etcd.put("", Self.bytes("x")) }
        #expect(empty?.kind == .invalidArgument && empty?.message.contains("key is not provided") == true)
        let large = await #expect(throws: EtcdError.self) { try await etcd.put("/big", Array(repeating: 7, count: 3 << 20)) }
        #expect(large?.kind == .tooLarge, "\(String(describing: large))")
        try await etcd.compact(try await etcd.get(.key("/u/x")).revision)
        let compacted = await #expect(throws: EtcdError.self) { try await etcd.get(.key("/u/x"), revision: first.revision) }
        #expect(compacted.map { if case .compacted = $0.kind { true } else { false } } == true)
        #expect(try await etcd.get(.key("/u/x")).kvs.first?.valueString == "other")
        #expect(try await etcd.members().count == 1)
    }

    /// A client its last user let go of is freed (its lease and watch streams held it strongly,
    /// and every client lived as long as the process).
    @Test func aClientNoLongerUsedIsFreed() {
        weak var gone: EtcdClient?
        do {
            let etcd = EtcdClient(configuration: EtcdConfiguration(endpoints: ["127.0.0.1:1"]))
            gone = etcd
            #expect(etcd.endpoints == ["127.0.0.1:1"])
        }
        #expect(gone == nil)
    }

    @Test func leasesAreKeptAliveAndLossIsReported() async throws {
        let cluster = try await EtcdCluster()
        defer { cluster.stop() }
        let etcd = EtcdClient(configuration: EtcdConfiguration(endpoints: cluster.endpoints, timeout: .seconds(60)))
        defer { Task { await etcd.close() } }

        let lease = try await etcd.grantLease(ttl: 20)
        #expect(lease.ttl >= 20)
        // kept alive from the grant on (the keep-alive runs on the client's event loop): this task
        // may wait a while for a thread when the rest of the suite loads the machine
        let (lost, reportLoss) = AsyncStream<EtcdError>.makeStream()
        let keepAlive = etcd.keepAlive(lease) { reportLoss.yield($0) }
        try await etcd.put("/lease/kept", Self.bytes("v"), lease: lease.id)
        let deletes = etcd.updates(.key("/lease/kept"))
        var iterator = deletes.makeAsyncIterator()
        guard await Self.synced(&iterator) != nil else { Issue.record("no watch"); return }
        // renewed: the time left, which only falls between renewals, rises again (the TTL is long,
        // so that a machine slowed by the rest of the suite cannot let it lapse meanwhile)
        var left = try #require(try await etcd.leaseTimeToLive(lease.id)).ttl
        var renewed = false
        for _ in 0..<240 where !renewed {
            try await Task.sleep(for: .milliseconds(500))
            let now = try #require(try await etcd.leaseTimeToLive(lease.id))
            #expect(now.keys == ["/lease/kept"])
            renewed = now.ttl > left
            left = now.ttl
        }
        #expect(renewed)

        // revoked behind the client's back: the keep-alive says so, the key is gone
        try await cluster.etcdctl(["lease", "revoke", String(lease.id, radix: 16)])
        var losses = lost.makeAsyncIterator()
        let loss = await losses.next()
        #expect(loss?.kind == .leaseNotFound)
        guard case .events(let events, _) = await Self.next(&iterator) else { Issue.record("no delete seen"); return }
        #expect(events.map(\.kind) == [.delete])
        keepAlive.cancel()
        #expect(try await etcd.leaseTimeToLive(lease.id) == nil)
        let gone = await #expect(throws: EtcdError.self) { try await etcd.revokeLease(lease.id) }
        #expect(gone?.kind == .leaseNotFound)
    }

    @Test func watchesReportChangesInOrderAndCompaction() async throws {
        let cluster = try await EtcdCluster()
        defer { cluster.stop() }
        let etcd = EtcdClient(configuration: EtcdConfiguration(endpoints: cluster.endpoints, timeout: .seconds(60)))
        defer { Task { await etcd.close() } }

        var prefix = etcd.updates(.prefix("/w/"), prevKV: true).makeAsyncIterator()
        var single = etcd.updates(.key("/w/b")).makeAsyncIterator()
        guard let start = await Self.synced(&prefix), await Self.synced(&single) != nil else {
            Issue.record("watches not created"); return
        }
        try await etcd.put("/w/a", Self.bytes("1"))
        try await etcd.put("/w/b", Self.bytes("2"))
        try await etcd.put("/w/a", Self.bytes("3"))
        try await etcd.delete(.key("/w/a"))
        try await etcd.put("/elsewhere", Self.bytes("x"))

        var seen: [EtcdEvent] = []
        while seen.count < 4, let update = await prefix.next() {
            if case .events(let events, _) = update { seen += events }
        }
        #expect(seen.map(\.kind) == [.put, .put, .put, .delete])
        #expect(seen.map(\.kv.keyString) == ["/w/a", "/w/b", "/w/a", "/w/a"])
        #expect(seen.map(\.isCreate) == [true, true, false, false])
        #expect(seen[2].previous?.valueString == "1" && seen[3].previous?.valueString == "3")
        #expect(seen.allSatisfy { $0.kv.modRevision > start })
        guard case .events(let b, _) = await Self.next(&single) else { Issue.record("no event for /w/b"); return }
        #expect(b.map(\.kv.valueString) == ["2"])

        // from a past revision: the history again; below the compacted one: a clear end
        var replay = etcd.updates(.prefix("/w/"), fromRevision: start + 1).makeAsyncIterator()
        var replayed: [EtcdEvent] = []
        while replayed.count < 4, let update = await replay.next() {
            if case .events(let events, _) = update { replayed += events }
        }
        #expect(replayed.map(\.kv.modRevision) == seen.map(\.kv.modRevision))
        let now = try await etcd.get(.key("/elsewhere")).revision
        try await etcd.compact(now)
        var old = etcd.updates(.prefix("/w/"), fromRevision: start + 1).makeAsyncIterator()
        var ended: EtcdError?
        while let update = await old.next() {
            if case .ended(let error) = update { ended = error }
        }
        #expect(ended?.kind == .compacted(compactRevision: now))
        // the stream carries on for the others
        try await etcd.put("/w/c", Self.bytes("4"))
        guard case .events(let c, _) = await Self.next(&prefix) else { Issue.record("the watch stopped"); return }
        #expect(c.map(\.kv.keyString) == ["/w/c"])
    }

    @Test func authenticationTokensAndRefusals() async throws {
        let cluster = try await EtcdCluster()
        defer { cluster.stop() }
        try await cluster.etcdctl(["user", "add", "root", "--new-user-password=rootpw"])
        try await cluster.etcdctl(["user", "add", "micro", "--new-user-password=micropw"])
        try await cluster.etcdctl(["role", "add", "micro"])
        try await cluster.etcdctl(["role", "grant-permission", "micro", "--prefix=true", "readwrite", "/micro/"])
        try await cluster.etcdctl(["user", "grant-role", "micro", "micro"])
        try await cluster.etcdctl(["auth", "enable"])

        let etcd = EtcdClient(configuration: EtcdConfiguration(endpoints: cluster.endpoints, username: "micro", password: "micropw", timeout: .seconds(60)))
        defer { Task { await etcd.close() } }
        try await etcd.put("/micro/x", Self.bytes("1"))
        #expect(try await etcd.get(.prefix("/micro/")).kvs.count == 1)
        let denied = await #expect(throws: EtcdError.self) { try await etcd.put("/other", Self.bytes("1")) }
        #expect(denied?.kind == .permissionDenied)
        // a watch the user may not read ends with a clear error; one it may works
        var refused = etcd.updates(.prefix("/other/")).makeAsyncIterator()
        guard case .ended(let why) = await Self.next(&refused) else { Issue.record("the refused watch did not end"); return }
        #expect(why.kind == .permissionDenied)
        var allowed = etcd.updates(.prefix("/micro/")).makeAsyncIterator()
        guard await Self.synced(&allowed) != nil else { Issue.record("the allowed watch did not start"); return }

        // etcd restarted: its tokens are gone; the client asks for a new one and goes on, and the
        // watch stream, refused with the old token, is opened again with the new one
        await cluster.kill9(0)
        try cluster.start(0)
        try await cluster.waitUntilServing(0)
        try await etcd.put("/micro/after-restart", Self.bytes("2"))
        var resumed = false
        while !resumed, let update = await allowed.next() {
            if case .events(let events, _) = update { resumed = events.contains { $0.kv.keyString == "/micro/after-restart" } }
        }
        #expect(resumed)

        let wrong = EtcdClient(configuration: EtcdConfiguration(endpoints: cluster.endpoints, username: "micro", password: "nope", timeout: .seconds(60)))
        defer { Task { await wrong.close() } }
        let failure = await #expect(throws: EtcdError.self) { try await wrong.get(.prefix("/micro/")) }
        #expect(failure?.kind == .authenticationFailed && failure?.description.contains("micro") == true)
        let anonymous = EtcdClient(configuration: EtcdConfiguration(endpoints: cluster.endpoints, timeout: .seconds(60)))
        defer { Task { await anonymous.close() } }
        let none = await #expect(throws: EtcdError.self) { try await anonymous.get(.prefix("/micro/")) }
        #expect(none?.kind == .invalidToken)
    }

    @Test func endpointsParseAsGoMicroWritesThem() throws {
        let parsed = try EtcdConfiguration.fromEnvironment(["MICRO_REGISTRY_ADDRESS": "10.0.0.1:2379, etcd-2 ,https://etcd-3:4000/,[::1]:5"])
        #expect(parsed.endpoints == ["10.0.0.1:2379", "etcd-2:2379", "https://etcd-3:4000", "[::1]:5"])
        #expect(try EtcdConfiguration.fromEnvironment([:]).endpoints == ["127.0.0.1:2379"])
        for bad in ["ftp://x:1", "host:notaport", "a/b:1", " , "] {
            #expect(throws: ConfigurationError.self, "\(bad)") { try EtcdConfiguration.fromEnvironment(["MICRO_REGISTRY_ADDRESS": bad]) }
        }
        #expect(throws: ConfigurationError.self) { try EtcdConfiguration.fromEnvironment(["MICRO_ETCD_USERNAME": "u"]) }
        #expect(throws: ConfigurationError.self) { try EtcdConfiguration.fromEnvironment(["MICRO_ETCD_TIMEOUT": "-1"]) }
        let auth = try EtcdConfiguration.fromEnvironment(["ETCD_USERNAME": "u", "ETCD_PASSWORD": "p", "MICRO_ETCD_CA": "/ca.pem"])
        #expect(auth.username == "u" && auth.password == "p" && auth.tls?.trustRoots == .file("/ca.pem"))
    }

    /// etcd's answers name their condition in the text (whatever gRPC code carries them): each
    /// becomes the kind a caller decides on, and the retryable ones say so.
    @Test func etcdsAnswersBecomeKinds() {
        let cases: [(String, Int, EtcdError.Kind)] = [
            ("etcdserver: request timed out", 503, .unavailable),
            ("etcdserver: no leader", 503, .unavailable),
            ("context deadline exceeded", 500, .timeout),  // as etcd sends a wrapped deadline: Unknown
            ("context deadline exceeded", 408, .timeout),
            ("etcdserver: requested lease not found", 404, .leaseNotFound),
            ("etcdserver: mvcc: required revision has been compacted", 500, .compacted(compactRevision: 0)),
            ("etcdserver: permission denied", 403, .permissionDenied),
            ("something new", 500, .other),
        ]
        for (text, code, kind) in cases {
            let error = EtcdError(calling: "127.0.0.1:1", MicroError(id: "etcd", code: code, detail: text))
            #expect(error.kind == kind, "\(text) (\(code))")
            #expect(error.triesAnotherMember == [.unavailable, .timeout].contains(kind), "\(text)")
        }
    }
}
