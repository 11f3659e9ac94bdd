import Foundation
public import Logging
public import Micro
public import MicroCore
import Synchronization

/// Locks and elections in etcd (`MICRO_SYNC=etcd`), for processes on any machine, the way clientv3's
/// concurrency package takes them: each contender writes `/micro/sync/lock/<id>/<lease>` on a
/// lease of the TTL that its client keeps alive; the contender whose key was created first holds
/// the lock; each other one watches the key created just before its own and looks again when that
/// one goes (no polling, no thundering herd). The fencing token is the revision that created
/// the holder's key: a later holder's is always larger. A holder whose lease expires (its process
/// stopped renewing: dead, or cut off from etcd for the TTL) is told, its lock marked lost.
public final class EtcdSync: Sync {
    /// Where lock keys live.
    public static let prefix = "/micro/sync/lock/"
    /// Where election keys live.
    public static let electionPrefix = "/micro/sync/election/"

    public let etcd: EtcdClient
    private let logger: Logger

    public var name: String { "etcd" }

    public init(client: EtcdClient, logger: Logger = Logger(label: "micro.sync.etcd")) {
        self.etcd = client
        self.logger = logger
    }

    public convenience init(configuration: EtcdConfiguration, eventLoopGroup: EventLoopGroup = .shared,
                            logger: Logger = Logger(label: "micro.sync.etcd")) {
        self.init(client: EtcdClient(configuration: configuration, eventLoopGroup: eventLoopGroup, logger: logger), logger: logger)
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

    /// Takes the lock whose contenders' keys live under `directory`: a key of its own on a lease
    /// of `ttl` holding `value`, then the wait for the keys created before it (within `wait`; nil:
    /// without bound).
    private func take(_ directory: String, id: String, what: String, value: [UInt8], ttl: Duration,
                      wait: Duration?) async throws -> HeldLock {
        let deadline = wait.map { ContinuousClock.now + $0 }
        let lease: EtcdLease
        do {
            lease = try await etcd.grantLease(ttl: EtcdLease.seconds(for: ttl))
        } catch {
            try Task.checkCancellation()
            throw SyncError(.unavailable, "cannot take \(what): \(error)")
        }
        let key = directory + String(lease.id, radix: 16)
        let holder = Mutex<HeldLock?>(nil)
        let keepAlive = etcd.keepAlive(lease) { [logger] error in
            logger.warning("\(what): lease lost (\(error.message)); no longer held")
            holder.withLock { $0 }?.markLost(SyncError(.lost, "\(what) was lost: its lease expired"))
        }
        /// Gives up: the key and lease go (best effort: the lease expires anyway), also when the
        /// wait was cancelled (in a task of their own), or the key would hold up the next for a TTL.
        let abandon: @Sendable () async -> Void = { [etcd] in
            keepAlive.cancel()
            await Task {
                _ = try? await etcd.delete(.key(key))
                try? await etcd.revokeLease(lease.id)
            }.value
        }
        do {
            let created = try await createKey(key, value: value, lease: lease.id)
            try await waitForPredecessors(directory: directory, what: what, created: created, wait: wait, deadline: deadline)
            let held = HeldLock(id: id, token: UInt64(created)) { [etcd] in
                keepAlive.cancel()
                do {
                    try await etcd.delete(.key(key))
                } catch {
                    throw SyncError(.unavailable, "cannot release \(what) (it goes when its lease expires): \(error)")
                }
                try? await etcd.revokeLease(lease.id)
            }
            holder.withLock { $0 = held }
            return held
        } catch let error as SyncError {
            await abandon()
            throw error
        } catch let error as EtcdError {
            await abandon()
            try Task.checkCancellation()  // the call failed for being cancelled
            throw SyncError(.unavailable, "cannot take \(what): \(error)")
        } catch {
            await abandon()
            throw error
        }
    }

    /// Writes the contender's key unless a retried request already did; returns the revision that
    /// created it (its place in the queue).
    private func createKey(_ key: String, value: [UInt8], lease: Int64) async throws(EtcdError) -> Int64 {
        // repeatable: a second application finds the key and reads it
        let txn = try await etcd.txn([EtcdCompare(key, .createRevision(0))], success: [.put(key, value, lease: lease)],
                                     failure: [.get(.key(key))], repeat: .whenMemberFails)
        if txn.succeeded { return txn.revision }
        guard let existing = txn.ranges.first?.kvs.first else { throw EtcdError(.other, "the lock key \(key) vanished") }
        return existing.createRevision
    }

    /// Returns once no key of the lock was created before `created`; waits on the deletion of the
    /// one created just before it, then looks again.
    private func waitForPredecessors(directory: String, what: String, created: Int64, wait: Duration?,
                                     deadline: ContinuousClock.Instant?) async throws {
        while true {
            try Task.checkCancellation()  // (a cancelled watch ends at once: looking again would spin)
            var request = EtcdClient.rangeRequest(.prefix(directory), limit: 1)
            request.maxCreateRevision = created - 1
            request.sortTarget = .create
            request.sortOrder = .descend
            let range: Etcdserverpb_RangeResponse = try await etcd.unary("/etcdserverpb.KV/Range", request, repeat: .whenMemberFails)
            guard let predecessor = range.kvs.first else { return }
            if let deadline, let wait, ContinuousClock.now >= deadline { throw SyncError(.timeout, "\(what) is held by another; waited \(wait)") }
            let key = String(decoding: predecessor.key, as: UTF8.self)
            try await waitForDelete(of: key, after: range.header.revision, what: what, wait: wait, deadline: deadline)
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
