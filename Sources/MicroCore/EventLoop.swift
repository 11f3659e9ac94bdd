import CMicroCore

/// One event-loop thread of the C core: a libuv loop that is also a Swift task executor.
///
/// A task started with `Task(executorPreference: loop)` (or a child task of one) runs its code on
/// this loop's thread, so a request is read, handled and answered on one thread with no hop.
/// `enqueue` hands the job to the loop's queue without allocating a closure. An actor can be
/// confined to the loop with ``serialExecutor``.
///
/// The loop is deliberately not itself a `SerialExecutor`: one `enqueue` cannot tell whether a
/// job came for the task executor or for an actor, and running task-executor jobs as if isolated
/// to the loop made every hop back to nonisolated code (each `await` of a nonisolated async
/// function) a full re-enqueue instead of a no-op.
///
/// Threading: every method may be called from any thread.
public final class EventLoop: TaskExecutor, @unchecked Sendable {
    // @unchecked Sendable: `handle` is an immutable pointer to a C loop whose only entry from
    // other threads, mc_loop_post, is thread-safe; `index` is immutable; `actorExecutor` is
    // written once in `init`, before the loop can be seen by another thread.
    let handle: OpaquePointer

    /// The loop's position in its group, from 0.
    public let index: Int

    init(index: Int) throws(MicroCoreError) {
        var err = [CChar](repeating: 0, count: 256)
        guard let loop = mc_loop_start(UInt32(index), &err, err.count) else {
            throw MicroCoreError(cBuffer: err)
        }
        self.handle = loop
        self.index = index
        self.actorExecutor = LoopSerialExecutor(loop: self)
    }

    /// True when called on this loop's thread.
    public var inEventLoop: Bool { mc_loop_is_current(handle) != 0 }

    /// How long the loop keeps polling without sleeping after it read from a connection; zero
    /// (the default) sleeps as soon as it has nothing to do. See ``EventLoopGroup/busyPoll``.
    /// Takes effect from the loop's next turn.
    public var busyPoll: Duration {
        get { .nanoseconds(Int64(clamping: mc_loop_busy_poll(handle))) }
        set { mc_loop_set_busy_poll(handle, Self.nanoseconds(newValue)) }
    }

    /// Loop turns that polled without sleeping because of ``busyPoll``, since the loop started.
    public var busyPollTurns: UInt64 { mc_loop_busy_poll_turns(handle) }

    /// A window in the core's nanoseconds: none for a negative one, forever for one too long.
    package static func nanoseconds(_ duration: Duration) -> UInt64 {
        let nanoseconds = duration.saturatingNanoseconds
        return nanoseconds == .max ? .max : UInt64(nanoseconds)
    }

    /// Call deadlines armed on this loop's timer wheel right now (tests: every one goes with its
    /// call).
    package func armedDeadlines() async -> Int {
        await withTaskExecutorPreference(self) { Int(mc_loop_armed_deadlines(handle)) }
    }

    /// The loop whose thread is calling, if any: the object its group attached to the C loop (a
    /// thread-local read, where a lookup by handle took a process-wide lock and a search).
    public static var current: EventLoop? {
        guard let owner = mc_loop_current_owner() else { return nil }
        return Unmanaged<EventLoop>.fromOpaque(owner).takeUnretainedValue()
    }

    /// Runs a job of a task that prefers this loop: on the loop, isolated to nothing.
    public func enqueue(_ job: consuming ExecutorJob) {
        post(UnownedJob(job), context: Unmanaged.passUnretained(self).toOpaque()) { ctx, arg in
            let loop = Unmanaged<EventLoop>.fromOpaque(ctx!).takeUnretainedValue()
            unsafeBitCast(arg!, to: UnownedJob.self).runSynchronously(on: loop.asUnownedTaskExecutor())
        }
    }

    /// The loop as a serial executor, for an actor whose state lives on the loop's thread:
    /// `nonisolated var unownedExecutor: UnownedSerialExecutor { loop.serialExecutor.asUnownedSerialExecutor() }`.
    public var serialExecutor: LoopSerialExecutor { actorExecutor }
    /// Set once in `init`, before the loop is shared.
    private var actorExecutor: LoopSerialExecutor!

    /// Posts `job` to run through `run(context, job)` (a C function: nothing is allocated).
    fileprivate func post(_ job: UnownedJob, context: UnsafeMutableRawPointer, _ run: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Void) {
        let rc = mc_loop_post(handle, run, context, unsafeBitCast(job, to: UnsafeMutableRawPointer.self))
        if rc != 0 {
            // The loop has stopped: a job that never runs is a task that hangs forever, so the
            // global executor runs it instead.
            globalConcurrentExecutor.enqueue(ExecutorJob(job))
        }
    }

    /// Runs `body` on this loop: at once if already on it, otherwise as a queued job.
    ///
    /// After the loop stopped, `body` runs on the calling thread rather than never.
    public func execute(_ body: @escaping @Sendable () -> Void) {
        if inEventLoop {
            body()
            return
        }
        let box = Unmanaged.passRetained(ClosureBox(body)).toOpaque()
        let rc = mc_loop_post(
            handle,
            { ctx, _ in Unmanaged<ClosureBox>.fromOpaque(ctx!).takeRetainedValue().body() },
            box,
            nil
        )
        if rc != 0 {
            // The loop has stopped: run here, as the loop's own thread (which is gone), so that
            // a body that checks inEventLoop and posts again does not come back here forever.
            let previous = mc_loop_enter_stopped(handle)
            Unmanaged<ClosureBox>.fromOpaque(box).takeRetainedValue().body()
            mc_loop_leave_stopped(previous)
        }
    }

    func stop() {
        mc_loop_stop(handle)
    }

    deinit {
        // The C loop outlives its stop (a post after it must find the loop and be refused) and
        // goes with its last Swift reference. A loop released on its own thread cannot join
        // itself: it is left running rather than freed under its own feet.
        if mc_loop_is_current(handle) == 0 { mc_loop_free(handle) }
    }
}

/// An event loop seen as a serial executor: jobs run on the loop's thread, isolated to it.
/// Actors use it through ``EventLoop/serialExecutor``.
public final class LoopSerialExecutor: SerialExecutor, Sendable {
    /// Unowned: the loop owns this executor.
    public unowned let loop: EventLoop

    init(loop: EventLoop) { self.loop = loop }

    public func enqueue(_ job: consuming ExecutorJob) {
        loop.post(UnownedJob(job), context: Unmanaged.passUnretained(self).toOpaque()) { ctx, arg in
            let executor = Unmanaged<LoopSerialExecutor>.fromOpaque(ctx!).takeUnretainedValue()
            unsafeBitCast(arg!, to: UnownedJob.self).runSynchronously(
                isolatedTo: executor.asUnownedSerialExecutor(),
                taskExecutor: executor.loop.asUnownedTaskExecutor()
            )
        }
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    public func isSameExclusiveExecutionContext(other: LoopSerialExecutor) -> Bool { loop === other.loop }

    public func checkIsolated() {
        precondition(loop.inEventLoop, "expected to run on event loop \(loop.index)")
    }
}

private final class ClosureBox: Sendable {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
}

/// An error raised by the network core: a message that says what failed and why.
public struct MicroCoreError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(message: String) { self.message = message }
    init(cBuffer: [CChar]) {
        self.message = String(decoding: cBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    public var description: String { message }
}
