import DequeModule
import Foundation
import Synchronization

/// Locks inside one process (`MICRO_SYNC=memory`), for tests and single-process programs: handed
/// to waiters in the order they came, tokens counted per lock from 1.
public final class MemorySync: Sync {
    /// The process's one memory sync (every `MICRO_SYNC=memory` user shares it).
    public static let shared = MemorySync()

    private struct Entry {
        var holder: UInt64?
        var lastToken: UInt64 = 0
        var waiters: Deque<(id: UUID, continuation: CheckedContinuation<UInt64?, Never>)> = []
    }

    private let state = Mutex<[String: Entry]>([:])

    public init() {}

    public var name: String { "memory" }

    public func lock(_ id: String, ttl: Duration, wait: Duration) async throws -> HeldLock {
        try SyncError.check(id: id, ttl: ttl, wait: wait)
        let waiter = UUID()
        let deadline = ContinuousClock.now + wait
        // a timer ends the wait; cancellation too
        let timer = Task { [weak self] in
            guard (try? await Task.sleep(until: deadline)) != nil else { return }
            self?.giveUp(id, waiter)
        }
        defer { timer.cancel() }
        let token: UInt64? = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<UInt64?, Never>) in
                let granted: UInt64?? = state.withLock { all in
                    var entry = all[id] ?? Entry()
                    defer { all[id] = entry }
                    if entry.holder == nil {
                        entry.lastToken += 1
                        entry.holder = entry.lastToken
                        return .some(entry.lastToken)
                    }
                    if wait == .zero || Task.isCancelled { return .some(nil) }
                    entry.waiters.append((waiter, continuation))
                    return .none
                }
                if let granted { continuation.resume(returning: granted) }
            }
        } onCancel: {
            giveUp(id, waiter)
        }
        guard let token else {
            try Task.checkCancellation()
            throw SyncError(.timeout, "lock \(id) is held by another; waited \(wait)")
        }
        return HeldLock(id: id, token: token) { [weak self] in self?.release(id, token) }
    }

    /// A waiter whose time ran out (or was cancelled) leaves the queue, told no.
    private func giveUp(_ id: String, _ waiter: UUID) {
        let continuation = state.withLock { all -> CheckedContinuation<UInt64?, Never>? in
            guard let index = all[id]?.waiters.firstIndex(where: { $0.id == waiter }) else { return nil }
            return all[id]!.waiters.remove(at: index).continuation
        }
        continuation?.resume(returning: nil)
    }

    /// The holder gives the lock back: the first waiter gets it, with the next token.
    private func release(_ id: String, _ token: UInt64) {
        let next = state.withLock { all -> (CheckedContinuation<UInt64?, Never>, UInt64)? in
            guard var entry = all[id], entry.holder == token else { return nil }
            defer { all[id] = entry }  // kept when free: its tokens must go on growing
            guard let (_, continuation) = entry.waiters.popFirst() else {
                entry.holder = nil
                return nil
            }
            entry.lastToken += 1
            entry.holder = entry.lastToken
            return (continuation, entry.lastToken)
        }
        if let (continuation, token) = next { continuation.resume(returning: token) }
    }
}
