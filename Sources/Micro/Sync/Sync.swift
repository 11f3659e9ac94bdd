import Foundation
import Synchronization

/// Distributed locks and leader election with fencing tokens: go-micro's sync interface, made
/// safe against a holder that lost its lock without knowing it. Every grant of a lock, and every
/// term of a leader, carries a token that only grows, so a store can refuse a write that carries
/// an older token than one it has seen.
///
/// ```swift
/// let sync = Syncs.default                                   // MICRO_SYNC: local, memory, etcd
/// try await sync.withLock("invoices") { token in
///     try await store.write(invoice, fencedBy: token)       // refused if a later holder wrote
/// }
/// try await sync.leader("scheduler").lead { leadership in   // waits to be elected
///     try await runSchedules(term: leadership.term)          // cancelled if the term is lost
/// }
/// ```
///
/// The TTL is how long a lock or a leadership outlives a holder that can no longer renew it (its
/// process died, its network is cut): while the holder lives, it is renewed for it.
///
/// Threading: any task.
public protocol Sync: Sendable {
    /// Takes lock `id`, waiting at most `wait` for it (0: only if free now). Throws
    /// ``SyncError`` (`.timeout` when the wait ran out).
    func lock(_ id: String, ttl: Duration, wait: Duration) async throws -> HeldLock
    /// Campaigns in election `id` as `identity`; returns once elected, however long that takes
    /// (cancel the task to give up). The term ends with ``Leadership/resign()``, or when the
    /// leadership is lost (it then says so before another can be elected). Throws ``SyncError``.
    func campaign(_ id: String, identity: String, ttl: Duration) async throws -> Leadership
    /// The leader of election `id` (nil: none) now, then at each change, until the iteration
    /// ends. A store that cannot be reached delays the next element; it does not end the stream.
    func leaders(_ id: String) -> AsyncStream<Leader?>
    /// Gives back what the sync keeps open (etcd: its sessions' leases, so that what is still
    /// held goes at once rather than after its TTL). Nothing to do for most.
    func close() async
    /// Its name in ``Syncs/plugins``.
    var name: String { get }
}

extension Sync {
    public func close() async {}
}

extension Sync {
    /// Runs `body` holding lock `id`, with the lock's fencing token; unlocks after it. If the
    /// lock is lost meanwhile (its lease expired), `body`'s task is cancelled and
    /// ``SyncError/Kind/lost`` is thrown.
    public func withLock<R: Sendable>(_ id: String, ttl: Duration = .seconds(15), wait: Duration = .seconds(60),
                                      _ body: @escaping @Sendable (UInt64) async throws -> R) async throws -> R {
        let held = try await lock(id, ttl: ttl, wait: wait)
        do {
            let result = try await held.whileHeld { try await body(held.token) }
            try await held.unlock()
            return result
        } catch {
            try? await held.unlock()
            throw error
        }
    }

    /// Election `id`, to campaign in as `identity` (the host name and process id by default),
    /// or to watch: see ``Election``.
    public func leader(_ id: String, identity: String = Election.defaultIdentity, ttl: Duration = .seconds(15)) -> Election {
        Election(sync: self, id: id, identity: identity, ttl: ttl)
    }
}

/// Why a lock could not be had or kept.
public struct SyncError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// An empty id, a TTL below the minimum, a negative wait.
        case invalidArgument
        /// The wait ran out with another holder in place.
        case timeout
        /// The lock's store cannot be reached.
        case unavailable
        /// A held lock was lost: its lease expired (the holder could not renew it in time).
        case lost
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    /// The checks every implementation makes of a lock's arguments.
    public static func check(id: String, ttl: Duration, wait: Duration) throws(SyncError) {
        guard !id.isEmpty, !id.contains("\0") else { throw SyncError(.invalidArgument, "a lock needs a non-empty id") }
        guard ttl >= .seconds(1) else { throw SyncError(.invalidArgument, "a lock's TTL must be at least 1 s, not \(ttl)") }
        guard wait >= .zero else { throw SyncError(.invalidArgument, "a lock's wait cannot be negative") }
    }

    /// The checks every implementation makes of a campaign's arguments.
    public static func check(election id: String, identity: String, ttl: Duration) throws(SyncError) {
        guard !id.isEmpty, !id.contains("\0") else { throw SyncError(.invalidArgument, "an election needs a non-empty id") }
        guard !identity.isEmpty else { throw SyncError(.invalidArgument, "a candidate needs a non-empty identity") }
        guard ttl >= .seconds(1) else { throw SyncError(.invalidArgument, "a leadership's TTL must be at least 1 s, not \(ttl)") }
    }
}

/// A lock held: its fencing token, how to give it back, and how it says it was lost.
public final class HeldLock: Sendable {
    public let id: String
    /// Grows with every grant of this lock: a later holder always has a larger one.
    public let token: UInt64
    private let release: @Sendable () async throws -> Void
    private struct State {
        var released = false
        var lost: SyncError?
        var waiters: [UUID: CheckedContinuation<SyncError, Never>] = [:]
        var observers: [@Sendable (SyncError) -> Void] = []
    }
    private let state = Mutex(State())

    /// `release` gives the lock back (called once, by ``unlock()``).
    public init(id: String, token: UInt64, release: @escaping @Sendable () async throws -> Void) {
        self.id = id
        self.token = token
        self.release = release
    }

    /// A lock dropped without ``unlock()`` is given back (later, from a task of its own).
    deinit {
        let released = state.withLock { $0.released }
        if !released {
            let release = self.release
            Task { try? await release() }
        }
    }

    /// Gives the lock back, also from a cancelled task (the release runs in a task of its own:
    /// a lock left behind would hold up the next holder). A second call does nothing.
    public func unlock() async throws {
        let first = state.withLock { s in
            defer { s.released = true }
            return !s.released
        }
        guard first else { return }
        try await Task { [release] in try await release() }.value
    }

    /// Whether the lock was lost (its lease expired) while held.
    public var isLost: Bool { state.withLock { $0.lost != nil } }

    /// For implementations: the lock is lost; anyone waiting on ``lostSignal()`` hears it.
    public func markLost(_ error: SyncError) {
        let (waiters, observers) = state.withLock { s -> ([CheckedContinuation<SyncError, Never>], [@Sendable (SyncError) -> Void]) in
            guard s.lost == nil else { return ([], []) }
            s.lost = error
            defer { (s.waiters, s.observers) = ([:], []) }
            return (Array(s.waiters.values), s.observers)
        }
        for observer in observers { observer(error) }
        for waiter in waiters { waiter.resume(returning: error) }
    }

    /// Calls `observer` once when the lock is lost (at once if it already is).
    public func onLost(_ observer: @escaping @Sendable (SyncError) -> Void) {
        let now = state.withLock { s -> SyncError? in
            if s.lost == nil { s.observers.append(observer) }
            return s.lost
        }
        if let now { observer(now) }
    }

    /// Runs `body`; if the lock is lost meanwhile, `body`'s task is cancelled and
    /// ``SyncError/Kind/lost`` is thrown.
    public func whileHeld<R: Sendable>(_ body: @escaping @Sendable () async throws -> R) async throws -> R {
        try await withThrowingTaskGroup(of: R?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                let error = await self.lostSignal()
                if Task.isCancelled { return nil }  // the body ended first
                throw error
            }
            defer { group.cancelAll() }
            while let next = try await group.next() {
                if let value = next { return value }
            }
            throw CancellationError()
        }
    }

    /// Returns when the lock is lost (never, if it is not); cancellable.
    public func lostSignal() async -> SyncError {
        let id = UUID()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<SyncError, Never>) in
                let now: SyncError? = state.withLock { s in
                    if let lost = s.lost { return lost }
                    if Task.isCancelled { return SyncError(.lost, "no longer watched") }
                    s.waiters[id] = continuation
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume(returning: SyncError(.lost, "no longer watched"))
        }
    }
}

/// The sync implementations a process can use, by name: `MICRO_SYNC=local` (the default: lock
/// files on this host), `memory` (one process), and those plugin products add (`etcd`).
public enum Syncs {
    public static let plugins = PluginTable<any Sync>(kind: "sync", variable: "MICRO_SYNC", defaultName: "local", builtIn: [
        "local": { context in LocalSync(directory: LocalSync.defaultDirectory(context.environment)) },
        "memory": { _ in MemorySync.shared },
    ])

    /// One per process, made on first use from `MICRO_SYNC`: register plugins before.
    public static let `default`: any Sync = (try? plugins.make(PluginContext())) ?? LocalSync(directory: LocalSync.defaultDirectory())
}
