import CMicroCore
import Foundation
import Logging
import MicroCore
import MicroTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Call deadlines live in the core's timer wheel: a call that ends takes its deadline with it
/// (nothing is left to fire later), and one that passes answers the caller and cancels the
/// handler, on either side.
@Suite struct DeadlineTests {
    static let logger = Logger(label: "test")

    /// Answers a timed-out request with 504.
    final class TimeoutAnswer: HTTPDeadlineHandler {
        func deadlinePassed(_ request: HTTPServerRequest, _ responder: HTTPResponder) {
            responder.send(HTTPServerResponse(status: 504, body: Array("too late".utf8)))
        }
    }

    /// What a client call sends as its deadline when the core writes the header: gRPC's
    /// 8-digit value in the finest unit that fits (rounded up, saturating), go-micro's in
    /// nanoseconds.
    @Test func theDeadlineHeaderTheCoreWritesForACall() {
        func value(_ flags: Int, _ ms: UInt64) -> String {
            var out = [CChar](repeating: 0, count: 24)
            let n = mc_deadline_header_value(UInt32(flags), ms, &out)
            return String(decoding: out[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        let grpc = Int(MC_CALL_GRPC_TIMEOUT), micro = Int(MC_CALL_MICRO_TIMEOUT)
        #expect(value(grpc, 1) == "1m")
        #expect(value(grpc, 5000) == "5000m")
        #expect(value(grpc, 99_999_999) == "99999999m")
        #expect(value(grpc, 100_000_000) == "100000S")
        #expect(value(grpc, 100_000_001) == "100001S")
        #expect(value(grpc, 99_999_999_000) == "99999999S")
        #expect(value(grpc, 99_999_999_001) == "27778H")
        #expect(value(grpc, UInt64.max) == "99999999H")
        #expect(value(micro, 1) == "1000000")
        #expect(value(micro, 5000) == "5000000000")
        #expect(value(micro, UInt64.max) == "\(Int64.max)")
        #expect(value(micro, UInt64(Int64.max / 1_000_000)) == "\(Int64.max / 1_000_000 * 1_000_000)")
    }

    @Test func everyDeadlineGoesWithItsCallAndAPassedOneCancelsTheHandler() async throws {
        let serverGroup = try EventLoopGroup(numberOfThreads: 1)
        let clientGroup = try EventLoopGroup(numberOfThreads: 1)
        let answer = TimeoutAnswer()
        let (cancelled, cancelledContinuation) = AsyncStream<String>.makeStream()
        let server = try HTTPServer(group: serverGroup, logger: Self.logger) { request, responder in
            switch request.path {
            case "/fast":
                responder.setDeadline(afterMilliseconds: 60_000, handler: answer)
                responder.send(HTTPServerResponse(body: Array("ok".utf8)))
            case "/slow":
                // the server's own deadline passes while the handler waits
                responder.setDeadline(afterMilliseconds: 50, handler: answer)
                fallthrough
            default:
                // waits until cancelled: by the server's deadline (/slow) or the client's (/hang)
                let (never, _) = AsyncStream<Void>.makeStream()
                for await _ in never {}
                cancelledContinuation.yield(request.path)
            }
        }
        let client = HTTPClient(group: clientGroup)
        let address = "127.0.0.1:\(server.port)"

        for _ in 0..<50 {
            let response = try await client.request(address: address, path: "/fast", headers: [:], body: [], deadline: .now + .seconds(60))
            #expect(response.status == 200)
        }
        // both ends armed a deadline for each of those calls; none is left
        #expect(await serverGroup.loops[0].armedDeadlines() == 0)
        #expect(await clientGroup.loops[0].armedDeadlines() == 0)

        // the server's deadline passes: the caller gets its answer, the handler is cancelled
        let late = try await client.request(address: address, path: "/slow", headers: [:], body: [], deadline: .now + .seconds(60))
        #expect(late.status == 504)
        #expect(late.body == Array("too late".utf8))
        var paths = cancelled.makeAsyncIterator()
        #expect(await paths.next() == "/slow")

        // the client's deadline passes: its call fails as a timeout, the stream is reset and the
        // server's handler cancelled
        await #expect {
            _ = try await client.request(address: address, path: "/hang", headers: [:], body: [], deadline: .now + .milliseconds(100))
        } throws: { error in
            (error as? HTTPClientError)?.kind == .timeout
        }
        #expect(await paths.next() == "/hang")
        #expect(await serverGroup.loops[0].armedDeadlines() == 0)
        #expect(await clientGroup.loops[0].armedDeadlines() == 0)

        await client.close()
        await server.shutdownGracefully(timeout: .seconds(10))
        clientGroup.shutdown()
        serverGroup.shutdown()
    }
    /// A client's loop held up past a call's deadline (long work on it, a starved machine) while
    /// the answer came: the loop sweeps its deadlines before it reads, and the call's deadline,
    /// finding the answer's bytes waiting, gives it a turn to read them instead of timing it out
    /// with its answer unread. The server here is the test itself, on a socket of its own, so that
    /// the answer is in the client's socket before the loop is let go.
    @Test func aDeadlineThatPassedWhileTheClientLoopWasHeldReadsTheAnswerFirst() async throws {
        let (listener, port) = try TCPConnectionTests.listen()
        defer { Glibc.close(listener) }
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.shutdown() }
        let client = HTTPClient(group: group)
        let timeout = Duration.seconds(10)  // long: the request must reach the test before it, however loaded the machine
        let start = ContinuousClock.now
        let call = Task {
            try await client.request(address: "127.0.0.1:\(port)", method: "GET", path: "/held", headers: [:], body: [],
                                     deadline: start + timeout, version: .http1_1)
        }
        // The test's server side takes the request on a thread of its own and, as soon as it has
        // it, posts the hold to the client's loop from there (not from this task, which a loaded
        // machine may schedule late). The loop is held from before the deadline (if the post got
        // there in time) until past it; the answer is sent meanwhile.
        let (holding, hold) = AsyncStream<Bool>.makeStream()
        let answered = DispatchSemaphore(value: 0)
        let loop = group.loops[0]
        let peer = await Blocking.run { () -> Int32 in
            let peer = accept(listener, nil, nil)
            var bytes: [UInt8] = [], chunk = [UInt8](repeating: 0, count: 4096)
            while peer >= 0, !bytes.suffix(4).elementsEqual([13, 10, 13, 10]) {
                let n = recv(peer, &chunk, chunk.count, 0)
                if n <= 0 { break }
                bytes += chunk[..<n]
            }
            let request = String(decoding: bytes, as: UTF8.self)
            loop.execute {
                let inTime = request.hasPrefix("GET /held HTTP/1.1") && ContinuousClock.now < start + timeout - .milliseconds(100)
                hold.yield(inTime)
                guard inTime else { return }
                _ = answered.wait(timeout: .now() + 60)
                while ContinuousClock.now < start + timeout + .milliseconds(100) { usleep(10_000) }
            }
            return peer
        }
        try #require(peer >= 0)
        defer { Glibc.close(peer) }
        var held = holding.makeAsyncIterator()
        guard await held.next() == true else {
            print("the client's loop was reached after the deadline (a loaded machine): nothing to check")
            call.cancel()
            _ = try? await call.value
            await client.close()
            return
        }
        let answer = Array("HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nhere".utf8)
        #expect(send(peer, answer, answer.count, Int32(MSG_NOSIGNAL)) == answer.count)
        answered.signal()
        let response = try await call.value
        #expect(response.status == 200 && response.body == Array("here".utf8))
        await client.close()
    }
}
