import Foundation
public import Logging
public import Micro
public import MicroCore
import Synchronization

/// Locks in etcd (`MICRO_SYNC=etcd`), for processes on any machine, the way clientv3's
/// concurrency package takes them: each contender writes `/micro/sync/lock/<id>/<lease>` on a
/// lease of the TTL that its client keeps alive; the contender whose key was created first holds
/// the lock; each other one watches the key created just before its own and looks again when that
/// one goes (no polling, no thundering herd). The fencing token is the revision that created
/// the holder's key: a later holder's is always larger. A holder whose lease expires (its process
/// stopped renewing: dead, or cut off from etcd for the TTL) is told, its lock marked lost.
public final class EtcdSync: Sync {
    /// Where lock keys live.
    public static let prefix = "/micro/sync/lock/"

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
        let deadline = ContinuousClock.now + wait
        let directory = Self.prefix + id + "/"
        let seconds = EtcdLease.seconds(for: ttl)
        let lease: EtcdLease
        do {
            lease = try await etcd.grantLease(ttl: seconds)
        } catch {
            throw SyncError(.unavailable, "cannot take lock \(id): \(error)")
        }
        let key = directory + String(lease.id, radix: 16)
        let holder = Mutex<HeldLock?>(nil)
        let keepAlive = etcd.keepAlive(lease) { [logger] error in
            logger.warning("lock \(id): lease lost (\(error.message)); the lock is no longer held")
            holder.withLock { $0 }?.markLost(SyncError(.lost, "lock \(id) was lost: its lease expired"))
        }
        /// Gives up: the key and lease go (best effort: the lease expires anyway).
        let abandon: @Sendable () async -> Void = { [etcd] in
            keepAlive.cancel()
            _ = try? await etcd.delete(.key(key))
            try? await etcd.revokeLease(lease.id)
        }
        do {
            let created = try await createKey(key, lease: lease.id)
            try await waitForPredecessors(directory: directory, id: id, created: created, wait: wait, deadline: deadline)
            let held = HeldLock(id: id, token: UInt64(created)) { [etcd] in
                keepAlive.cancel()
                do {
                    try await etcd.delete(.key(key))
                } catch {
                    throw SyncError(.unavailable, "cannot release lock \(id) (it goes when its lease expires): \(error)")
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
            throw SyncError(.unavailable, "cannot take lock \(id): \(error)")
        } catch {
            await abandon()
            throw error
        }
    }

    /// Writes the contender's key unless a retried request already did; returns the revision that
    /// created it (its place in the queue).
    private func createKey(_ key: String, lease: Int64) async throws(EtcdError) -> Int64 {
        let txn = try await etcd.txn([EtcdCompare(key, .createRevision(0))], success: [.put(key, [], lease: lease)],
                                     failure: [.get(.key(key))])
        if txn.succeeded { return txn.revision }
        guard let existing = txn.ranges.first?.kvs.first else { throw EtcdError(.other, "the lock key \(key) vanished") }
        return existing.createRevision
    }

    /// Returns once no key of the lock was created before `created`; waits on the deletion of the
    /// one created just before it, then looks again.
    private func waitForPredecessors(directory: String, id: String, created: Int64, wait: Duration,
                                     deadline: ContinuousClock.Instant) async throws {
        while true {
            var request = EtcdClient.rangeRequest(.prefix(directory), limit: 1)
            request.maxCreateRevision = created - 1
            request.sortTarget = .create
            request.sortOrder = .descend
            let range: Etcdserverpb_RangeResponse = try await etcd.unary("/etcdserverpb.KV/Range", request, repeat: .whenMemberFails)
            guard let predecessor = range.kvs.first else { return }
            guard ContinuousClock.now < deadline else { throw SyncError(.timeout, "lock \(id) is held by another; waited \(wait)") }
            let key = String(decoding: predecessor.key, as: UTF8.self)
            try await waitForDelete(of: key, after: range.header.revision, id: id, wait: wait, deadline: deadline)
        }
    }

    /// Waits until `key` is deleted (a watch from the revision after the read), or the deadline.
    private func waitForDelete(of key: String, after revision: Int64, id: String, wait: Duration,
                               deadline: ContinuousClock.Instant) async throws {
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
            group.addTask {
                try await Task.sleep(until: deadline)
                return false
            }
            defer { group.cancelAll() }
            guard try await group.next() == true else { throw SyncError(.timeout, "lock \(id) is held by another; waited \(wait)") }
        }
    }
}
