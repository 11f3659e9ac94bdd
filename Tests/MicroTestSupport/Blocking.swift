import Foundation

/// Blocking work (a `recv` loop, a `poll` for a peer's answer) off Swift's cooperative pool. The
/// pool has a thread per core — two on a CI machine — and a test that blocks one of them for
/// seconds starves every other task of the process meanwhile: a registration heartbeat missed its
/// TTL that way. Each piece of work runs on a serial dispatch queue of its own: such queues take
/// their threads from dispatch's overcommitting pool, which makes one whenever every thread it has
/// is blocked, and keeps them for the next (a thread per call cost a test reading 4,000 answers as
/// many thread creations, slow under ThreadSanitizer). One concurrent queue for all was tried: its
/// pool, sized to the cores, let blocked reads of other tests hold back a read for seconds.
/// Whatever the work blocks on must end by itself (a peer that closes, a timeout): a task that
/// stops waiting for it does not stop it.
public enum Blocking {
    /// Runs `body` there and returns what it returns, suspending meanwhile.
    public static func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            DispatchQueue(label: "micro.tests.blocking").async { continuation.resume(returning: body()) }
        }
    }
}
