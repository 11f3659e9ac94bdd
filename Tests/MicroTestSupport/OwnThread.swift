import Foundation

/// Blocking work (a `recv` loop, a peer that must not go through the event loops) on a thread of
/// its own. Swift's cooperative pool has a thread per core — two on a CI machine — and a test that
/// blocks one of them for seconds starves every other task of the process meanwhile: a
/// registration heartbeat missed its TTL that way.
public enum OwnThread {
    /// Runs `body` on a new thread and returns what it returns, suspending meanwhile.
    public static func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread { continuation.resume(returning: body()) }
        }
    }
}
