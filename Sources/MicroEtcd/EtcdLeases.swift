import Logging
import Micro
import MicroCore
import Synchronization

/// Stops keeping a lease alive when cancelled (the lease then expires after its TTL, unless
/// revoked).
public final class EtcdKeepAlive: Sendable {
    private let onCancel: @Sendable () -> Void

    init(onCancel: @escaping @Sendable () -> Void) { self.onCancel = onCancel }

    public func cancel() { onCancel() }
}

extension EtcdClient {
    /// Keeps lease `id` alive over the client's one keep-alive stream (every TTL/3, as clientv3
    /// does) until cancelled. `onLost` is called once if the lease is lost: etcd says it is
    /// gone (expired or revoked), or no renewal was confirmed in time (etcd unreachable for
    /// about a TTL); its keys are gone or about to be, and the caller grants a new lease.
    ///
    /// The second case is reported before etcd can expire the lease: the TTL is counted from
    /// when the last confirmed renewal (or the grant) was sent, which is no later than when etcd
    /// counted it from, less ``lossMargin``. A holder of something the lease guards (a lock, a
    /// leadership) so hears of its loss before another can take it over.
    public func keepAlive(_ lease: EtcdLease, onLost: @escaping @Sendable (EtcdError) -> Void) -> EtcdKeepAlive {
        let token = leases.add(lease, onLost: onLost)
        return EtcdKeepAlive { [leases] in leases.remove(token) }
    }
}

/// The keep-alive stream and the leases it renews.
final class EtcdLeases: Sendable {
    /// How long before its TTL (counted conservatively) an unconfirmed lease is reported lost:
    /// twice the period of the check, so the report comes before etcd can expire it.
    static let lossMargin = Duration.milliseconds(500)
    static let checkPeriod = Duration.milliseconds(250)

    private struct Kept {
        var lease: EtcdLease
        var nextRenewal: ContinuousClock.Instant
        /// When the lease may have expired if no renewal is confirmed by then.
        var expires: ContinuousClock.Instant
        /// When the renewal in flight was sent (nil: none is).
        var sent: ContinuousClock.Instant?
        var onLost: @Sendable (EtcdError) -> Void
    }

    private struct State {
        var kept: [Int: Kept] = [:]  // by token (one lease may be kept twice)
        var nextToken = 0
        var send: AsyncStream<Etcdserverpb_LeaseKeepAliveRequest>.Continuation?
        var task: Task<Void, Never>?
        var stopped = false
    }

    private let state = Mutex(State())
    /// Set once by the client that owns this (a weak reference: the streams stop with it).
    let client = Mutex(WeakEtcdClient())
    private let logger: Logger
    private let loop: EventLoop

    init(loop: EventLoop, logger: Logger) {
        self.loop = loop
        self.logger = logger
    }

    func add(_ lease: EtcdLease, onLost: @escaping @Sendable (EtcdError) -> Void) -> Int {
        let now = ContinuousClock.now
        let ttl = Duration.seconds(max(1, lease.ttl))
        return state.withLock { s in
            s.nextToken += 1
            // the first renewal at once: the grant may be a while ago
            s.kept[s.nextToken] = Kept(lease: lease, nextRenewal: now, expires: lease.asked + ttl, sent: nil, onLost: onLost)
            if s.task == nil, !s.stopped {
                s.task = Task(executorPreference: loop) { [weak self] in await self?.run() }
            }
            return s.nextToken
        }
    }

    func remove(_ token: Int) {
        _ = state.withLock { $0.kept.removeValue(forKey: token) }
    }

    func stop() {
        let task = state.withLock { s in
            s.stopped = true
            s.kept = [:]
            s.send?.finish()
            return s.task
        }
        task?.cancel()
    }

    private func run() async {
        await withTaskGroup(of: Void.self) { group in
            // leases run out whether or not a member is reachable: checked apart from the stream
            group.addTask {
                while !Task.isCancelled {
                    self.expireOverdue()
                    try? await Task.sleep(for: Self.checkPeriod)
                }
            }
            group.addTask { await self.keepStreamOpen() }
            await group.next()
            group.cancelAll()
        }
    }

    private func keepStreamOpen() async {
        await keepOpen("lease keep-alive", client: { [weak self] in self?.client.withLock { $0.value } }, logger: logger) { etcd, endpoint in
            try await etcd.stream("/etcdserverpb.Lease/LeaseKeepAlive", Etcdserverpb_LeaseKeepAliveRequest.self,
                                  Etcdserverpb_LeaseKeepAliveResponse.self, endpoint: endpoint) { call in
                let (requests, send) = AsyncStream<Etcdserverpb_LeaseKeepAliveRequest>.makeStream()
                state.withLock { s in
                    s.send = send
                    for key in s.kept.keys { s.kept[key]!.sent = nil }  // renewals of the last stream are void
                }
                defer { state.withLock { $0.send = nil } }
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for await request in requests { try await call.send(request) }
                    }
                    group.addTask {
                        for try await response in call.responses { self.received(response) }
                        throw EtcdError(.interrupted, "the keep-alive stream ended", endpoint: endpoint)
                    }
                    group.addTask {
                        while true {
                            try self.tick(timeout: etcd.configuration.timeout, endpoint: endpoint)
                            try await Task.sleep(for: .milliseconds(250))
                        }
                    }
                    try await group.next()
                    group.cancelAll()
                }
            }
        }
    }

    /// Reports the leases whose time ran out without a confirmed renewal.
    private func expireOverdue() {
        let now = ContinuousClock.now + Self.lossMargin
        let lost: [(@Sendable (EtcdError) -> Void, Int64)] = state.withLock { s in
            let overdue = s.kept.filter { $0.value.expires <= now }
            for token in overdue.keys { s.kept[token] = nil }
            return overdue.values.map { ($0.onLost, $0.lease.id) }
        }
        for (onLost, id) in lost {
            logger.warning("etcd: lease \(String(id, radix: 16)) was not renewed in time; etcd may expire it (and its keys) at any moment")
            onLost(EtcdError(.leaseNotFound, "lease \(String(id, radix: 16)) was not renewed in time"))
        }
    }

    /// Sends the renewals due; throws when the member left a renewal unanswered longer than the
    /// timeout or a third of its lease's TTL (the stream moves to another).
    private func tick(timeout: Duration, endpoint: String) throws {
        let now = ContinuousClock.now
        let stalled: Bool = state.withLock { s in
            var stalled = false
            var sentNow: Set<Int64> = []
            for (token, kept) in s.kept {
                if let sent = kept.sent {
                    // a renewal unanswered for a third of the TTL (or the timeout, if shorter)
                    // moves the stream: waiting the whole timeout could outlast the lease
                    if now - sent > min(timeout, .seconds(max(1, kept.lease.ttl)) / 3) { stalled = true }
                    continue
                }
                guard kept.nextRenewal <= now, let send = s.send else { continue }
                s.kept[token]!.sent = now
                if sentNow.insert(kept.lease.id).inserted {
                    var request = Etcdserverpb_LeaseKeepAliveRequest()
                    request.id = kept.lease.id
                    send.yield(request)
                }
            }
            return stalled
        }
        if stalled { throw EtcdError(.timeout, "no keep-alive answer within \(timeout)", endpoint: endpoint) }
    }

    private func received(_ response: Etcdserverpb_LeaseKeepAliveResponse) {
        let now = ContinuousClock.now
        var lost: [@Sendable (EtcdError) -> Void] = []
        state.withLock { s in
            for (token, kept) in s.kept where kept.lease.id == response.id {
                if response.ttl <= 0 {
                    s.kept[token] = nil
                    lost.append(kept.onLost)
                } else {
                    // counted from when the renewal left: etcd renewed it no earlier than that
                    let ttl = Duration.seconds(response.ttl), renewed = kept.sent ?? now
                    s.kept[token]!.sent = nil
                    s.kept[token]!.expires = renewed + ttl
                    s.kept[token]!.nextRenewal = renewed + ttl / 3
                }
            }
        }
        for onLost in lost {
            logger.warning("etcd: lease \(String(response.id, radix: 16)) is gone (expired or revoked)")
            onLost(EtcdError(.leaseNotFound, "lease \(String(response.id, radix: 16)) is gone"))
        }
    }
}
