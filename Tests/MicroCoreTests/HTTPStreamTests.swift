import Foundation
import Logging
import MicroCore
import Synchronization
import Testing

/// Streamed HTTP/2 exchanges through the core: both directions, flow-control backpressure, ends
/// and resets.
@Suite struct HTTPStreamTests {
    static let logger = Logger(label: "test")

    /// Streams every request under /stream; echoes its body piece by piece, then trailers.
    static func echoServer(events: AsyncStream<String>.Continuation? = nil) throws -> HTTPServer {
        try HTTPServer(configuration: .init(host: "127.0.0.1"), logger: logger, streams: { $0.hasPrefix("/stream") }) { request, responder in
            guard let body = request.bodyStream else {
                return responder.send(HTTPServerResponse(status: 200, body: request.body))
            }
            do {
                try await responder.sendHead(headers: ["content-type": "application/octet-stream"])
                var pieces = 0
                for try await piece in body {
                    pieces += 1
                    try await responder.write(piece)
                }
                responder.finish(trailers: ["x-pieces": "\(pieces)"])
                events?.yield("finished")
            } catch {
                events?.yield("failed: \(error)")
            }
        }
    }

    @Test func bidirectionalEchoInterleaved() async throws {
        let server = try Self.echoServer()
        let client = HTTPClient()
        try await client.withStream(address: "127.0.0.1:\(server.port)", path: "/stream/echo", headers: [:]) { stream in
            var iterator = stream.body.makeAsyncIterator()
            for i in 0..<100 {
                let message = Array("message \(i);".utf8)
                try await stream.write(message)
                var echoed: [UInt8] = []
                while echoed.count < message.count, let piece = try await iterator.next() { echoed += piece }
                #expect(echoed == message)
            }
            #expect(try await stream.response().status == 200)
            stream.finish()
            #expect(try await iterator.next() == nil)
            let trailers = try await stream.trailers()
            #expect(Int(trailers["x-pieces"] ?? "") ?? 0 >= 100)
        }
        await client.close()
        await server.shutdownGracefully(timeout: .seconds(10))
    }

    @Test func wholeRequestsStillWorkBesideStreams() async throws {
        let server = try Self.echoServer()
        let client = HTTPClient()
        let response = try await client.request(address: "127.0.0.1:\(server.port)", path: "/whole", headers: [:], body: Array("abc".utf8))
        #expect(response.body == Array("abc".utf8))
        await client.close()
        await server.shutdownGracefully(timeout: .seconds(10))
    }

    /// The server produces 64 MiB as fast as it can; the client reads slowly. What the server
    /// has written may run ahead of what the client consumed only by the stream window (1 MiB)
    /// plus the core's queue: flow control holds the writer.
    @Test func aSlowReaderHoldsTheWriter() async throws {
        let written = Atomic<Int>(0)
        let total = 64 * 1024 * 1024
        let server = try HTTPServer(configuration: .init(host: "127.0.0.1"), logger: Self.logger, streams: { _ in true }) { request, responder in
            do {
                try await responder.sendHead()
                let chunk = [UInt8](repeating: 7, count: 64 * 1024)
                while written.load(ordering: .relaxed) < total {
                    try await responder.write(chunk)
                    written.add(chunk.count, ordering: .relaxed)
                }
                responder.finish()
            } catch {}
        }
        let client = HTTPClient()
        var read = 0, maxLead = 0
        try await client.withStream(address: "127.0.0.1:\(server.port)", path: "/big", headers: [:]) { stream in
            stream.finish()
            for try await piece in stream.body {
                read += piece.count
                maxLead = max(maxLead, written.load(ordering: .relaxed) - read)
                if read % (1024 * 1024) < piece.count { await Task.yield() }
            }
        }
        #expect(read == total)
        #expect(maxLead < 4 * 1024 * 1024, "the writer ran \(maxLead) bytes ahead of the reader")
        await client.close()
        await server.shutdownGracefully(timeout: .seconds(10))
    }

    @Test func clientResetReachesTheHandler() async throws {
        let (events, continuation) = AsyncStream<String>.makeStream()
        let server = try Self.echoServer(events: continuation)
        let client = HTTPClient()
        try await client.withStream(address: "127.0.0.1:\(server.port)", path: "/stream/reset", headers: [:]) { stream in
            try await stream.write(Array("one".utf8))
            var iterator = stream.body.makeAsyncIterator()
            _ = try await iterator.next()
            // leaving the closure with the stream open resets it
        }
        var iterator = events.makeAsyncIterator()
        let event = await iterator.next()
        #expect(event?.hasPrefix("failed") == true, "\(event ?? "nil")")
        // the connection and server are unharmed
        let response = try await client.request(address: "127.0.0.1:\(server.port)", path: "/whole", headers: [:], body: Array("ok".utf8))
        #expect(response.body == Array("ok".utf8))
        await client.close()
        await server.shutdownGracefully(timeout: .seconds(10))
    }

    @Test func deadlineEndsTheStream() async throws {
        let server = try Self.echoServer()
        let client = HTTPClient()
        await #expect(throws: HTTPClientError.self) {
            try await client.withStream(address: "127.0.0.1:\(server.port)", path: "/stream/slow", headers: [:], deadline: .now + .milliseconds(100)) { stream in
                for try await _ in stream.body {}
            }
        }
        await client.close()
        await server.shutdownGracefully(timeout: .seconds(10))
    }
}
