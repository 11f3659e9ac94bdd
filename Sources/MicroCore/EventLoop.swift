import CMicroCore

/// One event-loop thread of the C core: a libuv loop that is also a Swift executor.
///
/// A task started with `Task(executorPreference: loop)` (or a child task of one) runs its code on
/// this loop's thread, so a request is read, handled and answered on one thread with no hop.
/// `enqueue` hands the job to the loop's queue without allocating a closure.
///
/// Threading: every method may be called from any thread.
public final class EventLoop: SerialExecutor, TaskExecutor, @unchecked Sendable {
    // @unchecked Sendable: `handle` is an immutable pointer to a C loop whose only entry from
    // other threads, mc_loop_post, is thread-safe; `index` is immutable.
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
    }

    /// True when called on this loop's thread.
    public var inEventLoop: Bool { mc_loop_is_current(handle) != 0 }

    /// The loop whose thread is calling, if any.
    public static var current: EventLoop? {
        guard let loop = mc_loop_current() else { return nil }
        return EventLoopGroup.loop(forHandle: loop)
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        let rc = mc_loop_post(
            handle,
            { ctx, arg in
                let loop = Unmanaged<EventLoop>.fromOpaque(ctx!).takeUnretainedValue()
                let job = unsafeBitCast(arg!, to: UnownedJob.self)
                job.runSynchronously(
                    isolatedTo: loop.asUnownedSerialExecutor(),
                    taskExecutor: loop.asUnownedTaskExecutor()
                )
            },
            Unmanaged.passUnretained(self).toOpaque(),
            unsafeBitCast(unowned, to: UnsafeMutableRawPointer.self)
        )
        if rc != 0 {
            // The loop has stopped: a job that never runs is a task that hangs forever, so the
            // global executor runs it instead.
            globalConcurrentExecutor.enqueue(ExecutorJob(unowned))
        }
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    public func isSameExclusiveExecutionContext(other: EventLoop) -> Bool { self === other }

    public func checkIsolated() {
        precondition(inEventLoop, "expected to run on event loop \(index)")
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
            Unmanaged<ClosureBox>.fromOpaque(box).takeRetainedValue().body()
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
