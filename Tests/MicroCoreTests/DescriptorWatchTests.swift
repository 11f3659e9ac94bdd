import Foundation
import MicroCore
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A descriptor owned by someone else, watched by a loop: told when it can read and write, as
/// the events asked for change, and nothing after close.
@Suite struct DescriptorWatchTests {
    /// What the watch reports, as an async sequence.
    final class Reports: Sendable {
        let stream: AsyncStream<(DescriptorWatch.Events, [UInt8])>
        let continuation: AsyncStream<(DescriptorWatch.Events, [UInt8])>.Continuation
        init() { (stream, continuation) = AsyncStream.makeStream() }
    }

    @Test func readableWritableAndClosed() async throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.shutdown() }
        let loop = group.next()
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        let (mine, peer) = (fds[0], fds[1])
        defer { Glibc.close(mine); Glibc.close(peer) }
        _ = fcntl(mine, F_SETFL, fcntl(mine, F_GETFL) | O_NONBLOCK)
        let reports = Reports()
        // readable: what the peer wrote is read by the owner in its callback. What lasts is asked
        // for no more once told (writable: the buffer stays empty; readable at the end of file), as
        // an owner does: a watch left on runs its callback every loop turn
        let current = Mutex<DescriptorWatch?>(nil)
        let watch = try await withCheckedThrowingContinuation { (result: CheckedContinuation<DescriptorWatch, any Error>) in
            loop.execute {
                result.resume(with: Result {
                    let watch = try DescriptorWatch(on: loop, descriptor: mine, events: .readable) { ready in
                        var buffer = [UInt8](repeating: 0, count: 64)
                        let n = ready.contains(.readable) ? read(mine, &buffer, buffer.count) : 0
                        if ready.contains(.writable) { current.withLock { $0?.set(.readable) } }
                        if ready.contains(.readable) && n == 0 { current.withLock { $0?.set([]) } }
                        reports.continuation.yield((ready, Array(buffer.prefix(max(0, n)))))
                    }
                    current.withLock { $0 = watch }
                    return watch
                })
            }
        }
        var iterator = reports.stream.makeAsyncIterator()
        #expect(write(peer, "ping", 4) == 4)
        let first = try #require(await iterator.next())
        #expect(first.0.contains(.readable) && first.1 == Array("ping".utf8))
        // writable asked for: told at once (the socket's buffer is empty)
        loop.execute { watch.set([.readable, .writable]) }
        let second = try #require(await iterator.next())
        #expect(second.0.contains(.writable))
        // back to readable only; the peer closes: readable (end of file, read returns 0)
        loop.execute { watch.set(.readable) }
        shutdown(peer, Int32(SHUT_WR))
        var sawEnd = false
        while !sawEnd, let next = await iterator.next() {
            sawEnd = next.0.contains(.readable) && next.1.isEmpty
        }
        #expect(sawEnd)
        // closed: nothing more, and the descriptor is still the owner's
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            loop.execute {
                watch.close()
                watch.close()  // idempotent
                #expect(!watch.isOpen)
                done.resume()
            }
        }
        #expect(fcntl(mine, F_GETFD) >= 0)
        current.withLock { $0 = nil }  // the callback holds `current`
        reports.continuation.finish()
    }

    /// The first report of `reports`, or nil if none comes within a minute (a bound that ends a
    /// hung loop's test, not a measurement).
    static func first(_ reports: Reports) async -> DescriptorWatch.Events? {
        await withTaskGroup(of: DescriptorWatch.Events?.self) { group in
            group.addTask {
                for await report in reports.stream { return report.0 }
                return nil
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(60))
                return nil
            }
            defer { group.cancelAll() }
            return await group.next() ?? nil
        }
    }

    /// Its owner closes the descriptor behind the watch (libpq does when it finds its connection
    /// broken) and the number is taken at once by another socket, which a second watch on the same
    /// loop waits to write to. The second watch hears that it can, the first still hears its own
    /// connection end, and the loop keeps serving: each watch polls a descriptor of its own. (On
    /// the number itself, libuv took the second socket's events for the first watch, masked them
    /// all away and polled again for ever.)
    @Test func aDescriptorClosedAndReusedBehindTheWatchHarmsNothing() async throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.shutdown() }
        let loop = group.next()
        var pair: [Int32] = [0, 0], other: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &other) == 0)
        let (mine, peer) = (pair[0], pair[1])
        let (another, anotherPeer) = (other[0], other[1])
        defer { Glibc.close(mine); Glibc.close(peer); Glibc.close(another); Glibc.close(anotherPeer) }
        let ended = Reports(), writable = Reports()
        // each watch reports once and then stops asking (the readiness it waits for lasts: a
        // watch left on would run its callback every loop turn, a core spent until the test ends)
        let made = Mutex<[DescriptorWatch]>([])
        let watches = try await withCheckedThrowingContinuation { (result: CheckedContinuation<(DescriptorWatch, DescriptorWatch), any Error>) in
            loop.execute {
                result.resume(with: Result {
                    let first = try DescriptorWatch(on: loop, descriptor: mine, events: .readable) { ready in
                        ended.continuation.yield((ready, []))
                        made.withLock { $0.first?.set([]) }
                    }
                    // the owner closes its descriptor; the same number now names another socket
                    #expect(dup2(another, mine) == mine)
                    let second = try DescriptorWatch(on: loop, descriptor: mine, events: .writable) { ready in
                        writable.continuation.yield((ready, []))
                        made.withLock { $0.last?.set([]) }
                    }
                    made.withLock { $0 = [first, second] }
                    return (first, second)
                })
            }
        }
        #expect(await Self.first(writable)?.contains(.writable) == true, "the second watch was never told it can write")
        shutdown(peer, Int32(SHUT_WR))
        #expect(await Self.first(ended)?.contains(.readable) == true, "the first watch never heard its connection end")
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            loop.execute {
                watches.0.close()
                watches.1.close()
                done.resume()
            }
        }
        made.withLock { $0 = [] }  // the callbacks hold `made`
        ended.continuation.finish()
        writable.continuation.finish()
    }

    @Test func aBadDescriptorIsAClearError() async throws {
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.shutdown() }
        let loop = group.next()
        let failure: String? = await withCheckedContinuation { result in
            loop.execute {
                do {
                    _ = try DescriptorWatch(on: loop, descriptor: -1, events: .readable) { _ in }
                    result.resume(returning: nil)
                } catch {
                    result.resume(returning: "\(error)")
                }
            }
        }
        #expect(failure?.contains("descriptor -1") == true, "\(String(describing: failure))")
    }
}
