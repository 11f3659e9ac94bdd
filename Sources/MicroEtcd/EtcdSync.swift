import Foundation
public import Logging
public import Micro
public import MicroCore
import Synchronization

/// Locks and elections in etcd (`MICRO_SYNC=etcd`), for processes on any machine, taken the way
/// clientv3's concurrency package takes them (so `etcdctl lock` and `etcdctl elect` on the same
/// prefix take part): each contender writes a key under `/micro/sync/lock/<id>/` on its
/// session's lease; the contender whose key was created first holds the lock; each other one
/// watches the key created just before its own and looks again when that one goes (no polling, no
/// thundering herd). The fencing token is the revision that created the holder's key: a later
/// holder's is always larger.
///
/// A session is one lease per TTL, granted on first use and kept alive for as long as this
/// sync lives (``close()`` revokes it), shared by all its locks and campaigns: an uncontended
/// lock is one transaction (write the key and read the first), its unlock one delete. If a
/// session's lease is lost (the process was cut off from etcd for about the TTL), every lock
/// held on it is told it is lost before etcd can give it to another, and the next lock opens a
/// new session. Within the process, one task at a time contends for an id.
public final class EtcdSync: Sync {
    /// Where lock keys live.
    public static let prefix = "/micro/sync/lock/"
    /// Where election keys live.
    public static let electionPrefix = "/micro/sync/election/"

    public let etcd: EtcdClient
    private let logger: Logger
    private let ownsClient: Bool
    /// One contender per id at a time in this process: two on one session would share a key.
    private let local = MemorySync()

    /// A lease kept alive and the locks held on it.
    private final class Session: Sendable {
        /// The id it has in `sessions`.
        let id: UUID
        let lease: EtcdLease
        private let state = Mutex<(tracked: Int, holders: [Int: @Sendable (SyncError) -> Void], lost: Bool)>((0, [:], false))
        let keepAlive = Mutex<EtcdKeepAlive?>(nil)

        init(lease: EtcdLease, id: UUID) {
            self.lease = lease
            self.id = id
        }

        /// The session's key in `directory`: one contender of the process at a time uses it, and
        /// it is always deleted after (or the session given up), so one found there is the
        /// contender's own, written by a repeated request.
        func key(in directory: String) -> String {
            directory + String(lease.id, radix: 16)
        }

        /// `held` hears if the lease is lost, until `untrack`.
        func track(_ held: HeldLock) -> Int {
            let (key, lost) = state.withLock { s in
                s.tracked += 1
                s.holders[s.tracked] = { [weak held] error in held?.markLost(error) }
                return (s.tracked, s.lost)
            }
            if lost { held.markLost(SyncError(.lost, "\(held.id) was lost: its lease expired")) }
            return key
        }

        func untrack(_ key: Int) { _ = state.withLock { $0.holders.removeValue(forKey: key) } }

        /// The lease is gone: every holder hears it.
        func lose(_ error: SyncError) {
            let holders = state.withLock { s in
                s.lost = true
                defer { s.holders = [:] }
                return Array(s.holders.values)
            }
            for holder in holders { holder(error) }
        }
    }

    /// The sessions by lease seconds (one being opened is a task).
    private let sessions = Mutex<[Int64: (id: UUID, session: Task<Session, any Error>)]>([:])

    public var name: String { "etcd" }

    /// Locks on `client` (``close()`` does not close it).
    public init(client: EtcdClient, logger: Logger = Logger(label: "micro.sync.etcd")) {
        self.etcd = client
        self.logger = logger
        self.ownsClient = false
    }

    /// Locks on a client of its own (``close()`` closes it).
    public init(configuration: EtcdConfiguration, eventLoopGroup: EventLoopGroup = .shared,
                logger: Logger = Logger(label: "micro.sync.etcd")) {
        self.etcd = EtcdClient(configuration: configuration, eventLoopGroup: eventLoopGroup, logger: logger)
        self.logger = logger
        self.ownsClient = true
    }

    /// Revokes the sessions' leases (every lock and leadership still held goes at once), and
    /// closes the client if it is this sync's own.
    public func close() async {
        let open = sessions.withLock { s in
            defer { s = [:] }
            return s.values.map(\.session)
        }
        for task in open {
            guard let session = try? await task.value else { continue }
            session.keepAlive.withLock { $0 }?.cancel()
            session.lose(SyncError(.lost, "the sync was closed"))
            try? await etcd.revokeLease(session.lease.id)
        }
        if ownsClient { await etcd.close() }
    }

    public func lock(_ id: String, ttl: Duration, wait: Duration) async throws -> HeldLock {
        try SyncError.check(id: id, ttl: ttl, wait: wait)
        return try await take(Self.prefix + id + "/", id: id, what: "lock \(id)", value: [], ttl: ttl, wait: wait)
    }

    /// An election is a lock whose keys live under ``electionPrefix`` and hold the candidates'
    /// identities: the leader is the candidate whose key was created first, its term the revision
    /// that created it. As clientv3's concurrency.Election keeps them, so `etcdctl elect
    /// /micro/sync/election/ID` campaigns and observes alongside.
    public func campaign(_ id: String, identity: String, ttl: Duration) async throws -> Leadership {
        try SyncError.check(election: id, identity: identity, ttl: ttl)
        let lock = try await take(Self.electionPrefix + id + "/", id: id, what: "leadership of \(id)", value: Array(identity.utf8),
                                  ttl: ttl, wait: nil)
        return Leadership(election: id, identity: identity, lock: lock)
    }

    /// Reads the first key of the election, then waits on a watch of its keys for any change
    /// before reading again.
    public func leaders(_ id: String) -> AsyncStream<Leader?> {
        let directory = Self.electionPrefix + id + "/"
        let (stream, continuation) = AsyncStream<Leader?>.makeStream()
        let task = Task { [etcd, logger] in
            var last: Leader?? = .none
            var pause = Duration.milliseconds(100)
            while !Task.isCancelled {
                do {
                    var request = EtcdClient.rangeRequest(.prefix(directory), limit: 1)
                    request.sortTarget = .create
                    request.sortOrder = .ascend
                    let range: Etcdserverpb_RangeResponse = try await etcd.unary("/etcdserverpb.KV/Range", request, repeat: .whenMemberFails)
                    let leader = range.kvs.first.map { Leader(identity: String(decoding: $0.value, as: UTF8.self), term: UInt64($0.createRevision)) }
                    if leader != last {
                        continuation.yield(leader)
                        last = leader
                    }
                    pause = .milliseconds(100)
                    watching: for await update in etcd.updates(.prefix(directory), fromRevision: range.header.revision + 1) {
                        switch update {
                        case .events, .ended: break watching
                        case .synced, .interrupted: continue
                        }
                    }
                } catch {
                    if Task.isCancelled { break }
                    logger.warning("election \(id): cannot read its leader: \(error)")
                    try? await Task.sleep(for: pause)
                    pause = min(pause * 2, .seconds(5))
                }
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    /// Takes the lock whose contenders' keys live under `directory`: a key of its own holding
    /// `value` on the session of `ttl`, then the wait for the keys created before it (within
    /// `wait`; nil: without bound).
    private func take(_ directory: String, id: String, what: String, value: [UInt8], ttl: Duration,
                      wait: Duration?) async throws -> HeldLock {
        let deadline = wait.map { ContinuousClock.now + $0 }
        guard let turn = try await local.hold(directory, wait: wait) else {
            throw SyncError(.timeout, "\(what) is held by another task of this process; waited \(wait ?? .zero)")
        }
        var key: String?
        var session: Session?
        do {
            let open = try await self.session(seconds: EtcdLease.seconds(for: ttl))
            session = open
            let mine = open.key(in: directory)
            key = mine
            let (created, first) = try await createKey(mine, in: directory, value: value, lease: open.lease.id)
            if first != created {
                try await waitForPredecessors(key: mine, directory: directory, what: what, created: created, wait: wait, deadline: deadline)
            }
            let tracked = Mutex<Int?>(nil)
            let held = HeldLock(id: id, token: UInt64(created)) { [weak self, local] in
                if let t = tracked.withLock({ $0 }) { open.untrack(t) }
                var failure: SyncError?
                do {
                    try await self?.etcd.delete(.key(mine))
                } catch {
                    // the key must not outlive its holder on a lease kept alive: the session goes
                    await self?.abandon(open, because: "\(what) could not be released")
                    failure = SyncError(.unavailable, "cannot release \(what) (it goes when its lease expires): \(error)")
                }
                local.letGo(directory, turn)  // before unlock() returns: a lock taken next in this process finds it free
                if let failure { throw failure }
            }
            tracked.withLock { $0 = open.track(held) }
            return held
        } catch {
            // a lease etcd no longer knows: the session is over (the next lock opens another)
            if let session, (error as? EtcdError)?.kind == .leaseNotFound || (error as? SyncError)?.kind == .lost {
                await abandon(session, because: "its lease is gone")
            }
            // the key goes (in a task of its own: also when the wait was cancelled), else the session
            if let key, let session {
                await Task {
                    if (try? await self.etcd.delete(.key(key))) == nil {
                        await self.abandon(session, because: "a key of \(what) could not be removed")
                    }
                }.value
            }
            local.letGo(directory, turn)
            if error is SyncError { throw error }
            try Task.checkCancellation()  // a call failed for being cancelled
            throw SyncError(.unavailable, "cannot take \(what): \(error)")
        }
    }

    /// The session of leases of `seconds`, opened on first use.
    private func session(seconds: Int64) async throws -> Session {
        let (id, task) = sessions.withLock { s in
            if let open = s[seconds] { return open }
            let id = UUID()
            let task = Task<Session, any Error> { try await self.openSession(seconds: seconds, id: id) }
            s[seconds] = (id, task)
            return (id, task)
        }
        do {
            return try await task.value
        } catch {
            sessions.withLock { s in if s[seconds]?.id == id { s[seconds] = nil } }  // the next try opens another
            throw error
        }
    }

    private func openSession(seconds: Int64, id: UUID) async throws -> Session {
        let session = Session(lease: try await etcd.grantLease(ttl: seconds), id: id)
        let keepAlive = etcd.keepAlive(session.lease) { [weak self, logger] error in
            logger.warning("etcd sync: lease \(String(session.lease.id, radix: 16)) lost (\(error.message)); its locks are no longer held")
            self?.forget(seconds: seconds, id: id)
            session.lose(SyncError(.lost, "the lock was lost: its lease expired"))
        }
        session.keepAlive.withLock { $0 = keepAlive }
        return session
    }

    private func forget(seconds: Int64, id: UUID) {
        sessions.withLock { s in if s[seconds]?.id == id { s[seconds] = nil } }
    }

    /// Gives a session up: no longer kept alive, its holders told, its lease revoked if it can be.
    private func abandon(_ session: Session, because reason: String) async {
        logger.warning("etcd sync: \(reason); lease \(String(session.lease.id, radix: 16)) is given up")
        sessions.withLock { s in
            if let (seconds, _) = s.first(where: { $0.value.id == session.id }) { s[seconds] = nil }
        }
        session.keepAlive.withLock { $0 }?.cancel()
        session.lose(SyncError(.lost, "the lock was lost: its lease was given up (\(reason))"))
        try? await etcd.revokeLease(session.lease.id)
    }

    /// Writes the contender's key unless a repeated request already did, and reads the key
    /// created first, in one transaction; returns the key's create revision (its place in the
    /// queue) and the first one's.
    private func createKey(_ key: String, in directory: String, value: [UInt8], lease: Int64) async throws(EtcdError) -> (Int64, Int64) {
        // repeatable: a second application finds the key and reads it
        let txn = try await etcd.txn([EtcdCompare(key, .createRevision(0))],
                                     success: [.put(key, value, lease: lease), .getFirstCreated(.prefix(directory))],
                                     failure: [.get(.key(key)), .getFirstCreated(.prefix(directory))], repeat: .whenMemberFails)
        let created: Int64
        if txn.succeeded {
            created = txn.revision
        } else {
            guard let existing = txn.ranges.first?.kvs.first else { throw EtcdError(.other, "the lock key \(key) vanished") }
            created = existing.createRevision
        }
        guard let first = txn.ranges.last?.kvs.first else { throw EtcdError(.other, "the lock key \(key) vanished") }
        return (created, first.createRevision)
    }

    /// Returns once no key of the lock was created before `created`; waits on the deletion of the
    /// one created just before it, then looks again.
    /// Each look is one transaction that also checks the contender's own key is still there: a
    /// contender whose lease expired while it waited (cut off from etcd) has no key, and must not
    /// take a lock whose queue it is no longer in.
    private func waitForPredecessors(key mine: String, directory: String, what: String, created: Int64, wait: Duration?,
                                     deadline: ContinuousClock.Instant?) async throws {
        while true {
            try Task.checkCancellation()  // (a cancelled watch ends at once: looking again would spin)
            var predecessors = EtcdClient.rangeRequest(.prefix(directory), limit: 1)
            predecessors.maxCreateRevision = created - 1
            predecessors.sortTarget = .create
            predecessors.sortOrder = .descend
            var look = Etcdserverpb_RequestOp()
            look.requestRange = predecessors
            var request = Etcdserverpb_TxnRequest()
            request.compare = [EtcdCompare(mine, .createRevision(created)).message]
            request.success = [look]
            let txn: Etcdserverpb_TxnResponse = try await etcd.unary("/etcdserverpb.KV/Txn", request, repeat: .whenMemberFails)
            guard txn.succeeded else { throw SyncError(.lost, "\(what) was lost while waiting: the lease of its place in the queue expired") }
            guard case .responseRange(let range)? = txn.responses.first?.response, let predecessor = range.kvs.first else { return }
            if let deadline, let wait, ContinuousClock.now >= deadline { throw SyncError(.timeout, "\(what) is held by another; waited \(wait)") }
            let key = String(decoding: predecessor.key, as: UTF8.self)
            try await waitForDelete(of: key, after: txn.header.revision, what: what, wait: wait, deadline: deadline)
        }
    }

    /// Waits until `key` is deleted (a watch from the revision after the read), or the deadline.
    private func waitForDelete(of key: String, after revision: Int64, what: String, wait: Duration?,
                               deadline: ContinuousClock.Instant?) async throws {
        let updates = etcd.updates(.key(key), fromRevision: revision + 1)
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await update in updates {
                    switch update {
                    case .events(let events, _) where events.contains(where: { $0.kind == .delete }): return true
                    case .ended: return true  // look again rather than trust a watch etcd ended
                    default: continue
                    }
                }
                return true
            }
            if let deadline {
                group.addTask {
                    try await Task.sleep(until: deadline)
                    return false
                }
            }
            defer { group.cancelAll() }
            guard try await group.next() == true else { throw SyncError(.timeout, "\(what) is held by another; waited \(wait ?? .zero)") }
        }
    }
}
