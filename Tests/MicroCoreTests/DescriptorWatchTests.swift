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
        // readable: what the peer wrote is read by the owner in its callback
        let watch = try await withCheckedThrowingContinuation { (result: CheckedContinuation<DescriptorWatch, any Error>) in
            loop.execute {
                result.resume(with: Result {
                    try DescriptorWatch(on: loop, descriptor: mine, events: .readable) { ready in
                        var buffer = [UInt8](repeating: 0, count: 64)
                        let n = ready.contains(.readable) ? read(mine, &buffer, buffer.count) : 0
                        reports.continuation.yield((ready, Array(buffer.prefix(max(0, n)))))
                    }
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
        reports.continuation.finish()
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
        #expect(failure?.contains("uv_poll_init_socket") == true, "\(String(describing: failure))")
    }
}
