import MicroCore
import Testing

@Suite struct EventLoopTests {
    @Test func taskWithLoopPreferenceRunsOnTheLoopAcrossSuspensions() async throws {
        let group = try EventLoopGroup(numberOfThreads: 2)
        defer { group.shutdown() }
        for loop in group.loops {
            let checks = await Task(executorPreference: loop) { () async -> [Bool] in
                var checks = [loop.inEventLoop]
                await Task.yield()
                checks.append(loop.inEventLoop)
                try? await Task.sleep(for: .milliseconds(1))
                checks.append(loop.inEventLoop)
                let child = await withTaskGroup(of: Bool.self) { group in
                    group.addTask { loop.inEventLoop }
                    return await group.next() ?? false
                }
                checks.append(child)
                checks.append(EventLoop.current === loop)
                return checks
            }.value
            #expect(checks == [true, true, true, true, true])
        }
    }

    /// State kept by an actor confined to a loop: its methods run on the loop's thread, and code
    /// already on the loop can enter it synchronously.
    actor LoopCounter {
        let loop: EventLoop
        var count = 0
        init(loop: EventLoop) { self.loop = loop }
        nonisolated var unownedExecutor: UnownedSerialExecutor { loop.serialExecutor.asUnownedSerialExecutor() }
        func increment() -> (Int, Bool) {
            count += 1
            return (count, loop.inEventLoop)
        }
    }

    @Test func anActorOnTheLoopsSerialExecutorRunsOnTheLoop() async throws {
        let group = try EventLoopGroup(numberOfThreads: 2)
        defer { group.shutdown() }
        let counter = LoopCounter(loop: group.loops[1])
        // called from outside the loop: the call hops onto it
        let (first, onLoop) = await counter.increment()
        #expect(first == 1 && onLoop)
        // from a task on the other loop: still runs on the actor's loop, then comes back
        let (second, back) = await Task(executorPreference: group.loops[0]) { () async -> (Int, Bool) in
            let (n, _) = await counter.increment()
            return (n, group.loops[0].inEventLoop)
        }.value
        #expect(second == 2 && back)
        // code running on the loop may enter the actor without a hop
        let third = await withCheckedContinuation { continuation in
            group.loops[1].execute {
                continuation.resume(returning: counter.assumeIsolated { $0.increment().0 })
            }
        }
        #expect(third == 3)
    }

    /// A busy-polling window in the core's nanoseconds: negative is off, too long is forever.
    @Test func busyPollWindowsConvertWithoutWrapping() {
        #expect(EventLoop.nanoseconds(.microseconds(50)) == 50_000)
        #expect(EventLoop.nanoseconds(.zero) == 0)
        #expect(EventLoop.nanoseconds(.microseconds(-5)) == 0)
        #expect(EventLoop.nanoseconds(.seconds(18_446_744_073) + .milliseconds(800)) == .max)
        #expect(EventLoop.nanoseconds(.seconds(Int64.max)) == .max)
    }

    @Test func executeRunsOnTheLoopAndJobsAfterStopStillRun() async throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        let loop = group.loops[0]
        let onLoop = await withCheckedContinuation { continuation in
            loop.execute { continuation.resume(returning: loop.inEventLoop) }
        }
        #expect(onLoop)
        group.shutdown()
        // A job posted after the loop stopped is run elsewhere, never dropped.
        let ran = await withCheckedContinuation { continuation in
            loop.execute { continuation.resume(returning: true) }
        }
        #expect(ran)
        let value = await Task(executorPreference: loop) { 42 }.value
        #expect(value == 42)
    }
}
