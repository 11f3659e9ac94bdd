import DequeModule
import Foundation
import Logging
import Micro
import MicroCore
import Synchronization

/// A change to a key.
public struct EtcdEvent: Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case put, delete }
    public var kind: Kind
    /// The key as written (for a delete: the key and the revision of the delete, no value).
    public var kv: EtcdKeyValue
    /// What the key held before, when the watch asked for it.
    public var previous: EtcdKeyValue?

    /// A put that created the key (rather than changed it).
    public var isCreate: Bool { kind == .put && kv.createRevision == kv.modRevision }
}

/// What a watch reports, in order, from one task at a time.
public enum EtcdWatchUpdate: Sendable, Equatable {
    /// Changes, as of the store's `revision`.
    case events([EtcdEvent], revision: Int64)
    /// The watch is in place (first, or again after the stream was reopened): every change after
    /// `revision` will be reported.
    case synced(revision: Int64)
    /// The stream broke (the member died, lost its leader, stopped answering); the watch is being
    /// resumed on a member from the revision after the last one reported, nothing is missed.
    case interrupted(EtcdError)
    /// The watch is over: etcd cancelled it. `.compacted` when the revisions it had to resume
    /// from are gone (read the keys again and watch from there), `.permissionDenied` when the
    /// user may not read them.
    case ended(EtcdError)
}

/// Ends a watch when cancelled.
public final class EtcdWatchHandle: Sendable {
    private let onCancel: @Sendable () -> Void

    init(onCancel: @escaping @Sendable () -> Void) { self.onCancel = onCancel }

    public func cancel() { onCancel() }
}

extension EtcdClient {
    /// Watches `keys` from `revision` (0: from now on) over the client's one watch stream,
    /// calling `handler` for each update until cancelled or ended. `handler` runs on the stream's
    /// task, one update at a time: it must return quickly.
    public func watch(_ keys: EtcdKeys, fromRevision revision: Int64 = 0, prevKV: Bool = false,
                      _ handler: @escaping @Sendable (EtcdWatchUpdate) -> Void) -> EtcdWatchHandle {
        let id = watches.add(keys, from: revision, prevKV: prevKV, handler: handler)
        return EtcdWatchHandle { [watches] in watches.cancel(id) }
    }

    /// The updates of a watch as an async sequence; the watch is cancelled when iteration ends,
    /// and the sequence finishes after ``EtcdWatchUpdate/ended(_:)``.
    public func updates(_ keys: EtcdKeys, fromRevision revision: Int64 = 0, prevKV: Bool = false) -> AsyncStream<EtcdWatchUpdate> {
        let (stream, continuation) = AsyncStream<EtcdWatchUpdate>.makeStream()
        let handle = watch(keys, fromRevision: revision, prevKV: prevKV) { update in
            continuation.yield(update)
            if case .ended = update { continuation.finish() }
        }
        continuation.onTermination = { _ in handle.cancel() }
        return stream
    }
}

/// The watch stream and the watches it carries. Each watch has an id the client chooses; etcd
/// answers creations in order, and one it refuses comes back with id -1, so the creations
/// awaiting an answer are kept in order. After the stream is reopened, every watch is created
/// again from the revision after the last one it reported.
final class EtcdWatches: Sendable {
    private struct Watch {
        var keys: EtcdKeys
        var prevKV: Bool
        /// The revision to resume from (0: the present, for a watch never established).
        var next: Int64
        var established = false
        var handler: @Sendable (EtcdWatchUpdate) -> Void
    }

    private struct State {
        var watches: [Int64: Watch] = [:]
        var nextID: Int64 = 1
        /// Creations sent on the current stream, not yet answered, in order.
        var pending: Deque<Int64> = []
        var send: AsyncStream<Etcdserverpb_WatchRequest>.Continuation?
        var task: Task<Void, Never>?
        var lastHeard = ContinuousClock.now
        var stopped = false
    }

    private let state = Mutex(State())
    let client = Mutex(WeakEtcdClient())
    private let logger: Logger
    private let loop: EventLoop

    init(loop: EventLoop, logger: Logger) {
        self.loop = loop
        self.logger = logger
    }

    func add(_ keys: EtcdKeys, from revision: Int64, prevKV: Bool, handler: @escaping @Sendable (EtcdWatchUpdate) -> Void) -> Int64 {
        state.withLock { s in
            let id = s.nextID
            s.nextID += 1
            let watch = Watch(keys: keys, prevKV: prevKV, next: revision, handler: handler)
            s.watches[id] = watch
            if let send = s.send {
                s.pending.append(id)
                send.yield(Self.create(id, watch))
            }
            if s.task == nil, !s.stopped {
                s.task = Task(executorPreference: loop) { [weak self] in await self?.run() }
            }
            return id
        }
    }

    func cancel(_ id: Int64) {
        state.withLock { s in
            guard s.watches.removeValue(forKey: id) != nil else { return }
            var request = Etcdserverpb_WatchRequest()
            request.cancelRequest.watchID = id
            s.send?.yield(request)
        }
    }

    func stop() {
        let task = state.withLock { s in
            s.stopped = true
            s.watches = [:]
            s.send?.finish()
            return s.task
        }
        task?.cancel()
    }

    private static func create(_ id: Int64, _ watch: Watch) -> Etcdserverpb_WatchRequest {
        var create = Etcdserverpb_WatchCreateRequest()
        (create.key, create.rangeEnd) = watch.keys.bounds
        create.startRevision = watch.next
        create.prevKv = watch.prevKV
        create.progressNotify = true
        create.watchID = id
        var request = Etcdserverpb_WatchRequest()
        request.createRequest = create
        return request
    }

    private func run() async {
        await keepOpen("watch", client: { [weak self] in self?.client.withLock { $0.value } }, logger: logger) { etcd, endpoint in
            do {
                try await etcd.stream("/etcdserverpb.Watch/Watch", Etcdserverpb_WatchRequest.self, Etcdserverpb_WatchResponse.self,
                                      endpoint: endpoint) { call in
                    try await generation(call, timeout: etcd.configuration.timeout, endpoint: endpoint)
                }
            } catch {
                if error is CancellationError || Task.isCancelled { throw CancellationError() }
                let failure = (error as? EtcdError) ?? EtcdError(calling: endpoint, error)
                // every watch hears it, so that a cache can say it serves what it last knew
                let handlers = state.withLock { s in s.watches.values.map(\.handler) }
                for handler in handlers { handler(.interrupted(failure)) }
                throw failure
            }
        }
    }

    /// One stream: every watch created on it, requests written in order, answers dispatched, and
    /// a progress request whenever it was quiet for a while, so that a member that stopped
    /// answering is noticed (and the revisions of quiet watches advance).
    private func generation(_ call: ClientStream<Etcdserverpb_WatchRequest, Etcdserverpb_WatchResponse>, timeout: Duration,
                            endpoint: String) async throws {
        let (requests, send) = AsyncStream<Etcdserverpb_WatchRequest>.makeStream()
        state.withLock { s in
            s.send = send
            s.pending = []
            s.lastHeard = .now
            for (id, watch) in s.watches.sorted(by: { $0.key < $1.key }) {
                s.pending.append(id)
                send.yield(Self.create(id, watch))
            }
        }
        defer { state.withLock { $0.send = nil } }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await request in requests { try await call.send(request) }
            }
            group.addTask {
                for try await response in call.responses { try self.received(response, endpoint: endpoint) }
                throw EtcdError(.interrupted, "the watch stream ended", endpoint: endpoint)
            }
            group.addTask {
                // quiet for a third of the timeout: ask; quiet for the whole timeout: give up on the member
                while true {
                    try await Task.sleep(for: timeout / 3)
                    let quiet = self.state.withLock { s -> Duration in
                        let quiet = ContinuousClock.now - s.lastHeard
                        if quiet >= timeout / 3 {
                            var request = Etcdserverpb_WatchRequest()
                            request.progressRequest = Etcdserverpb_WatchProgressRequest()
                            s.send?.yield(request)
                        }
                        return quiet
                    }
                    if quiet > timeout { throw EtcdError(.timeout, "the watch stream was silent for \(quiet)", endpoint: endpoint) }
                }
            }
            try await group.next()
            group.cancelAll()
        }
    }

    private func received(_ response: Etcdserverpb_WatchResponse, endpoint: String) throws {
        let revision = response.header.revision
        var calls: [(@Sendable (EtcdWatchUpdate) -> Void, EtcdWatchUpdate)] = []
        var refusedToken: EtcdError?
        state.withLock { s in
            s.lastHeard = .now
            if response.created {
                // the answer to the oldest creation awaiting one (a refusal carries id -1)
                let id = s.pending.popFirst() ?? response.watchID
                guard var watch = s.watches[id] else { return }
                if response.canceled {
                    let failure = Self.cancellation(response, endpoint: endpoint)
                    if failure.kind == .invalidToken {
                        refusedToken = failure  // a token that expired: the stream is reopened with a new one
                        return
                    }
                    s.watches[id] = nil
                    calls.append((watch.handler, .ended(failure)))
                    return
                }
                watch.established = true
                // from now on, for a new watch; a resumed one still has the revisions since its
                // `next` to hear, which etcd sends next
                if watch.next == 0 { watch.next = revision + 1 }
                s.watches[id] = watch
                calls.append((watch.handler, .synced(revision: revision)))
                return
            }
            if response.canceled {
                // etcd ended a watch (compaction); one this client cancelled is already gone
                guard let watch = s.watches.removeValue(forKey: response.watchID) else { return }
                calls.append((watch.handler, .ended(Self.cancellation(response, endpoint: endpoint))))
                return
            }
            if response.watchID == -1 || (response.events.isEmpty && s.watches[response.watchID] != nil) {
                // progress: every established watch (or this one) has seen everything up to revision
                for (id, watch) in s.watches where watch.established && (response.watchID == -1 || id == response.watchID) {
                    s.watches[id]!.next = max(watch.next, revision + 1)
                }
                return
            }
            guard var watch = s.watches[response.watchID], !response.events.isEmpty else { return }
            let events = response.events.map { e in
                EtcdEvent(kind: e.type == .delete ? .delete : .put, kv: EtcdKeyValue(e.kv), previous: e.hasPrevKv ? EtcdKeyValue(e.prevKv) : nil)
            }
            watch.next = max(watch.next, (events.last?.kv.modRevision ?? revision) + 1)
            s.watches[response.watchID] = watch
            calls.append((watch.handler, .events(events, revision: revision)))
        }
        for (handler, update) in calls { handler(update) }
        if let refusedToken { throw refusedToken }
    }

    private static func cancellation(_ response: Etcdserverpb_WatchResponse, endpoint: String) -> EtcdError {
        if response.compactRevision > 0 {
            return EtcdError(.compacted(compactRevision: response.compactRevision),
                             "the watch's start revision was compacted (oldest kept: \(response.compactRevision))", endpoint: endpoint)
        }
        let reason = response.cancelReason.isEmpty ? "etcd cancelled the watch" : response.cancelReason
        let failure = EtcdError(etcdSays: reason, code: 500, endpoint: endpoint)
        return failure.kind == .other ? EtcdError(.watchCancelled, reason, endpoint: endpoint) : failure
    }
}
