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
