import DequeModule
import Foundation
import Synchronization

/// Locks and elections inside one process (`MICRO_SYNC=memory`), for tests and single-process
/// programs: handed to waiters in the order they came, tokens and terms counted per lock or
/// election from 1. A holder lives as long as its process, so the TTL does not apply.
public final class MemorySync: Sync {
    /// The process's one memory sync (every `MICRO_SYNC=memory` user shares it).
    public static let shared = MemorySync()

    private struct Waiter {
        var id: UUID
        var identity: String
        var continuation: CheckedContinuation<UInt64?, Never>
    }

    private struct Entry {
        var holder: Leader?
        var lastToken: UInt64 = 0
        var waiters: Deque<Waiter> = []
        var observers: [UUID: AsyncStream<Leader?>.Continuation] = [:]

        /// Gives the lock to `identity` with the next token; observers hear of it.
        mutating func grant(_ identity: String) -> UInt64 {
            lastToken += 1
            holder = Leader(identity: identity, term: lastToken)
            tell()
            return lastToken
        }

        /// Tells the observers who holds it now (under the state's lock, so in order).
        func tell() {
            for observer in observers.values { observer.yield(holder) }
        }
    }

    /// Locks and elections are apart: `lock:ID` and `election:ID`.
    private let state = Mutex<[String: Entry]>([:])

    public init() {}

    public var name: String { "memory" }

    public func lock(_ id: String, ttl: Duration, wait: Duration) async throws -> HeldLock {
        try SyncError.check(id: id, ttl: ttl, wait: wait)
        let key = "lock:" + id
        guard let token = try await take(key, identity: "", wait: wait) else {
            throw SyncError(.timeout, "lock \(id) is held by another; waited \(wait)")
        }
        return HeldLock(id: id, token: token) { [weak self] in self?.release(key, token) }
    }

    /// For other syncs, to let one task of a process at a time contend for `key` (a name of
    /// their own): takes it within `wait` (nil: without bound); nil when the wait ran out.
    /// Returns the token to give to ``letGo(_:_:)``.
    package func hold(_ key: String, wait: Duration?) async throws -> UInt64? {
        try await take("held:" + key, identity: "", wait: wait)
    }

    /// Gives back what ``hold(_:wait:)`` took.
    package func letGo(_ key: String, _ token: UInt64) {
        release("held:" + key, token)
    }

    public func campaign(_ id: String, identity: String, ttl: Duration) async throws -> Leadership {
        try SyncError.check(election: id, identity: identity, ttl: ttl)
        let key = "election:" + id
        guard let term = try await take(key, identity: identity, wait: nil) else { throw CancellationError() }
        let lock = HeldLock(id: id, token: term) { [weak self] in self?.release(key, term) }
        return Leadership(election: id, identity: identity, lock: lock)
    }

    public func leaders(_ id: String) -> AsyncStream<Leader?> {
        let key = "election:" + id, observer = UUID()
        let (stream, continuation) = AsyncStream<Leader?>.makeStream()
        continuation.onTermination = { [weak self] _ in
            self?.state.withLock { all in _ = all[key]?.observers.removeValue(forKey: observer) }
        }
        state.withLock { all in
            continuation.yield(all[key]?.holder)
            all[key, default: Entry()].observers[observer] = continuation
        }
        return stream
    }

    /// Takes `key` now, or after the holders before it, within `wait` (nil: without bound);
    /// nil when the wait ran out. Throws on cancellation.
    private func take(_ key: String, identity: String, wait: Duration?) async throws -> UInt64? {
        // free now (the common case): no timer, no continuation
        let now: UInt64?? = state.withLock { all in
            var entry = all[key] ?? Entry()
            defer { all[key] = entry }
            if entry.holder == nil { return .some(entry.grant(identity)) }
            return wait == .zero ? .some(nil) : .none
        }
        if let now { return now }
        let waiter = UUID()
        // a timer ends the wait; cancellation too
        let timer = wait.map { wait in
            Task { [weak self] in
                guard (try? await Task.sleep(for: wait)) != nil else { return }
                self?.giveUp(key, waiter)
            }
        }
        defer { timer?.cancel() }
        let token: UInt64? = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<UInt64?, Never>) in
                let granted: UInt64?? = state.withLock { all in
                    var entry = all[key] ?? Entry()
                    defer { all[key] = entry }
                    if entry.holder == nil {
                        return .some(entry.grant(identity))
                    }
                    if wait == .zero || Task.isCancelled { return .some(nil) }
                    entry.waiters.append(Waiter(id: waiter, identity: identity, continuation: continuation))
                    return .none
                }
                if let granted { continuation.resume(returning: granted) }
            }
        } onCancel: {
            giveUp(key, waiter)
        }
        if let token, Task.isCancelled {  // granted as the wait was cancelled: given back
            release(key, token)
        }
        try Task.checkCancellation()
        return token
    }

    /// A waiter whose time ran out (or was cancelled) leaves the queue, told no.
    private func giveUp(_ key: String, _ waiter: UUID) {
        let continuation = state.withLock { all -> CheckedContinuation<UInt64?, Never>? in
            guard let index = all[key]?.waiters.firstIndex(where: { $0.id == waiter }) else { return nil }
            return all[key]!.waiters.remove(at: index).continuation
        }
        continuation?.resume(returning: nil)
    }

    /// The holder gives `key` back: the first waiter gets it, with the next token.
    private func release(_ key: String, _ token: UInt64) {
        let next = state.withLock { all -> (CheckedContinuation<UInt64?, Never>, UInt64)? in
            guard var entry = all[key], entry.holder?.term == token else { return nil }
            defer { all[key] = entry }  // kept when free: its tokens must go on growing
            guard let waiter = entry.waiters.popFirst() else {
                entry.holder = nil
                entry.tell()
                return nil
            }
            return (waiter.continuation, entry.grant(waiter.identity))
        }
        if let (continuation, token) = next { continuation.resume(returning: token) }
    }
}
