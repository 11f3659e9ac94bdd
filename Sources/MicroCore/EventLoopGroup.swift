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

    /// Starts `numberOfThreads` loop threads, each busy polling for `busyPoll` after a read
    /// (zero: never; see ``busyPoll``).
    public init(numberOfThreads: Int = EventLoopGroup.coreCount, busyPoll: Duration = .zero) throws(MicroCoreError) {
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
        if busyPoll > .zero { self.busyPoll = busyPoll }
    }

    /// Busy polling, for latency: after a loop reads from a connection (a request to a server, an
    /// answer to a client), it keeps polling for this long without sleeping, so the peer's next
    /// message is taken as soon as it arrives instead of after a wake-up of its core. The window
    /// restarts with each read: a loop under steady load never sleeps, and one left idle sleeps
    /// again one window after its last read.
    ///
    /// Zero (the default) sleeps as soon as there is nothing to do. 50 µs covers a loopback
    /// round trip: measured with one connection and one call at a time (h2load 1 × 1 on loopback,
    /// one core each), helloworld's mean latency fell from 65–79 µs to 25–28 µs
    /// (docs/BENCHMARKS.md). The price is CPU: under light steady load each loop spins up to a
    /// core. Leave it off where CPU is metered or shared (a container's CPU quota, async handlers
    /// running on the loops' cores, battery).
    ///
    /// A service sets its group's from `MICRO_BUSY_POLL` (microseconds) when it starts: for the
    /// default ``shared`` group that is every service and client of the process. Setting it sets
    /// every loop's; reading it reads the first loop's. Any thread.
    public var busyPoll: Duration {
        get { loops[0].busyPoll }
        set { for loop in loops { loop.busyPoll = newValue } }
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
