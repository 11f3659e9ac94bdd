import Foundation

/// Blocking work (a `recv` loop, a `poll` for a peer's answer) off Swift's cooperative pool. The
/// pool has a thread per core — two on a CI machine — and a test that blocks one of them for
/// seconds starves every other task of the process meanwhile: a registration heartbeat missed its
/// TTL that way. The work runs on a dispatch queue whose threads are made as blocked ones need
/// them and kept for the next (a thread per call cost a test reading 4,000 answers as many thread
/// creations, slow under ThreadSanitizer). Whatever it blocks on must end by itself (a peer that
/// closes, a timeout): a task that stops waiting for it does not stop it.
public enum Blocking {
    private static let queue = DispatchQueue(label: "micro.tests.blocking", attributes: .concurrent)

    /// Runs `body` there and returns what it returns, suspending meanwhile.
    public static func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            queue.async { continuation.resume(returning: body()) }
        }
    }
}
