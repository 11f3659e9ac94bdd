import Foundation
import Logging
import MicroCore
import MicroTestSupport
import Synchronization
import Testing

/// Streamed answers to ordinary HTTP/1.1 requests: chunked, in request order behind and before
/// other answers, reaching the client before they end, and ended cleanly when the client goes.
@Suite struct HTTPChunkedAnswerTests {
    static let logger = Logger(label: "test")

    /// Three requests pipelined in one write: /slow (answered only once the stream has written),
    /// /stream (chunks written while /slow is still unanswered) and /after (answered at once).
    /// The answers come in request order, each whole; the streamed one chunked.
    @Test func chunkedAnswersKeepRequestOrder() async throws {
        let (streamed, streamedMore) = AsyncStream<Void>.makeStream()
        let server = try HTTPServer(configuration: .init(host: "127.0.0.1"), logger: Self.logger) { request, responder in
            switch request.path {
            case "/slow":
                var iterator = streamed.makeAsyncIterator()
                _ = await iterator.next()
                responder.send(HTTPServerResponse(body: Array("slow".utf8)))
            case "/stream":
                do {
                    try await responder.sendHead(headers: ["content-type": "text/plain", "content-length": "99"])
                    try await responder.write(Array("one,".utf8))
                    try await responder.write([])  // nothing: not the last chunk
                    try await responder.write(Array("two,".utf8))
                    streamedMore.yield()
                    try await responder.write(Array(repeating: UInt8(ascii: "x"), count: 100_000))
                    responder.finish(trailers: ["x-dropped": "yes"])
                } catch {
                    responder.send(HTTPServerResponse(status: 500, body: Array("\(error)".utf8)))
                }
            default:
                responder.send(HTTPServerResponse(body: Array("after".utf8)))
            }
        }
        let connection = try RawConnection(port: server.port)
        try connection.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /stream HTTP/1.1\r\nHost: a\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n")
        let slow = try await connection.readResponse()
        let stream = try await connection.readResponse()
        let after = try await connection.readResponse()
        #expect(slow.body == "slow")
        #expect(stream.status == 200)
        #expect(stream.headers["transfer-encoding"] == "chunked")
        #expect(stream.headers["content-length"] == nil, "the handler's content-length is the core's to write")
        #expect(stream.headers["content-type"] == "text/plain")
        #expect(stream.body == "one,two," + String(repeating: "x", count: 100_000))
        #expect(after.body == "after")
        // the connection is still good for more
        try connection.send("GET /again HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(try await connection.readResponse().body == "after")
        await server.shutdownGracefully(timeout: .seconds(10))
    }

    /// Server-sent events through curl over HTTP/1.1: the first event arrives while the answer
    /// is still open (the handler writes the second only once the test has read the first).
    @Test func eventsReachTheClientBeforeTheAnswerEnds() async throws {
        let (go, goOn) = AsyncStream<Void>.makeStream()
        let server = try HTTPServer(configuration: .init(host: "127.0.0.1"), logger: Self.logger) { _, responder in
            do {
                try await responder.sendHead(headers: ["content-type": "text/event-stream", "cache-control": "no-cache"])
                try await responder.write(Array("data: first\n\n".utf8))
                var iterator = go.makeAsyncIterator()
                _ = await iterator.next()
                try await responder.write(Array("data: second\n\n".utf8))
                responder.finish()
            } catch {}
        }
        let curl = try LineProcess(["curl", "-sSN", "--http1.1", "--max-time", "120", "http://127.0.0.1:\(server.port)/events"])
        #expect(await curl.waitForLine(containing: "data: first", within: .seconds(60)) != nil)
        goOn.yield()
        #expect(await curl.waitForLine(containing: "data: second", within: .seconds(60)) != nil)
        #expect(curl.reap() == 0)
        await server.shutdownGracefully(timeout: .seconds(10))
    }

    /// A client that leaves in the middle: the handler's next write fails (it stops producing),
    /// and the server serves the next connection. A HEAD request has no body to stream: the
    /// handler is told and answers whole.
    @Test func aClientThatLeavesEndsTheStream() async throws {
        let (events, event) = AsyncStream<String>.makeStream()
        let server = try HTTPServer(configuration: .init(host: "127.0.0.1"), logger: Self.logger) { request, responder in
            do {
                try await responder.sendHead(headers: ["content-type": "application/octet-stream"])
                let chunk = [UInt8](repeating: 1, count: 16 * 1024)
                while true { try await responder.write(chunk) }
            } catch let error as HTTPStreamError {
                event.yield("\(request.method) \(error.kind)")
                responder.send(HTTPServerResponse())
            } catch {
                event.yield("\(request.method) other: \(error)")
            }
        }
        var seen = events.makeAsyncIterator()
        let leaving = try RawConnection(port: server.port)
        try leaving.send("GET /forever HTTP/1.1\r\nHost: a\r\n\r\n")
        _ = try await leaving.read()
        leaving.reset()
        #expect(await seen.next() == "GET reset")
        let head = try RawConnection(port: server.port)
        try head.send("HEAD /forever HTTP/1.1\r\nHost: a\r\n\r\n")
        let answer = try await head.readResponse()
        #expect(answer.status == 200)
        #expect(await seen.next() == "HEAD notStreaming")
        await server.shutdownGracefully(timeout: .seconds(10))
    }
}
