import CMicroCore
import Synchronization

/// A fixed set of event loops, by default one per core.
///
/// ```swift
/// let group = try EventLoopGroup(numberOfThreads: 2)
/// defer { group.shutdown() }
/// ```
public final class EventLoopGroup: Sendable {
    /// The loops, indexed by ``EventLoop/index``.
    public let loops: [EventLoop]
    private let cursor = Atomic<Int>(0)

    /// Starts `numberOfThreads` loop threads.
    public init(numberOfThreads: Int = EventLoopGroup.coreCount) throws(MicroCoreError) {
        precondition(numberOfThreads > 0, "an event loop group needs at least one thread")
        var loops: [EventLoop] = []
        for i in 0..<numberOfThreads {
            do {
                loops.append(try EventLoop(index: i))
            } catch {
                for loop in loops { loop.stop() }
                throw error
            }
        }
        self.loops = loops
        // the registry holds each loop for as long as its C loop names it as its owner
        Self.registry.withLock { $0.append(contentsOf: loops.map { Registered(loop: $0) }) }
        for loop in loops { mc_loop_set_owner(loop.handle, Unmanaged.passUnretained(loop).toOpaque()) }
    }

    /// A process-wide group with one loop per core, started on first use and never stopped.
    public static let shared: EventLoopGroup = {
        do {
            return try EventLoopGroup()
        } catch {
            fatalError("cannot start the shared event loops: \(error)")
        }
    }()

    /// The cores this process may run on (its CPU affinity, e.g. under `taskset`).
    public static var coreCount: Int {
        Int(mc_cpu_count())
    }

    /// The next loop, round-robin.
    public func next() -> EventLoop {
        loops[cursor.wrappingAdd(1, ordering: .relaxed).oldValue % loops.count]
    }

    /// Stops every loop after running the jobs already queued. Servers on the group must have
    /// closed first. Not from one of the group's own loop threads.
    public func shutdown() {
        let handles = Set(loops.map { UInt(bitPattern: $0.handle) })
        // no longer `EventLoop.current` on their threads (as before they stop), then released
        for loop in loops { mc_loop_set_owner(loop.handle, nil) }
        Self.registry.withLock { $0.removeAll { handles.contains(UInt(bitPattern: $0.loop.handle)) } }
        for loop in loops { loop.stop() }
    }

    /// Every running group's loops, held while their C loops name them (`EventLoop.current`).
    private struct Registered: Sendable { let loop: EventLoop }
    private static let registry = Mutex<[Registered]>([])
}
