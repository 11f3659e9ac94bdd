import ArgumentParser
import Foundation
import Logging
import Micro

/// `micro bench-stream`: messages per second through one stream.
struct StreamBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-stream",
        abstract: "Measure messages per second through one stream of a service's endpoint.",
        discussion: """
            receive: sends one request message, counts the answers until the server ends the stream.
            echo: sends --messages copies of the message (at most --window unanswered) and counts the answers.
            Messages are raw bytes in --content-type (protobuf by default). With the counter example:
              micro bench-stream counter Counter.Count --mode receive --data-hex 08c0843d1064   # 1,000,000 ticks of 100 bytes
              micro bench-stream counter Counter.Echo --mode echo --size 100 --messages 200000
            """)

    enum Mode: String, ExpressibleByArgument { case receive, echo }

    @Argument(help: "The service name (found in the registry).") var service: String
    @Argument(help: "The endpoint, e.g. Counter.Echo.") var endpoint: String
    @Option(help: "receive or echo.") var mode: Mode = .receive
    @Option(name: .customLong("data-hex"), help: "The message as hex bytes (receive: the request).") var dataHex: String?
    @Option(help: "echo without --data-hex: a protobuf message whose field 1 is a string of this many bytes.") var size: Int = 100
    @Option(help: "echo: messages to send.") var messages: Int = 100_000
    @Option(help: "echo: messages sent and not yet answered, at most.") var window: Int = 64
    @Option(help: "Content type of the messages.") var contentType: String = "application/protobuf"
    @Flag(help: "gRPC framing (application/grpc) instead of the micro protocol.") var grpc = false
    @Option(help: "Call this host:port directly instead of looking the service up.") var address: String?
    @Flag(help: "Print the report as JSON.") var json = false

    struct Report: Codable {
        var mode: String
        var messages: Int
        var bytes: Int
        var seconds: Double
        var messagesPerSecond: Double
    }

    func run() async throws {
        let message: [UInt8]
        if let dataHex {
            guard let bytes = Bench.hex(dataHex) else { throw ValidationError("--data-hex is not hex") }
            message = bytes
        } else {
            guard (0..<128).contains(size) || mode == .receive else { throw ValidationError("--size must be below 128 without --data-hex") }
            message = [0x0a, UInt8(size)] + Array(repeating: 0x78, count: size)
        }
        let group = try EventLoopGroup(numberOfThreads: 1)
        var logger = Logger(label: "micro.bench")
        logger.logLevel = .error
        let options = CallOptions(contentType: grpc ? "application/grpc" : contentType, address: address)
        let client = try makeClient(registry: processRegistry(), options: options, eventLoopGroup: group, logger: logger)
        let mode = self.mode, messages = self.messages, window = max(1, self.window)
        let start = ContinuousClock.now
        let (count, bytes) = try await client.rawStream(service, endpoint) { call -> (Int, Int) in
            switch mode {
            case .receive:
                try await call.send(message)
                call.closeSend()
                var count = 0, bytes = 0
                for try await answer in call.responses {
                    count += 1
                    bytes += answer.count
                }
                return (count, bytes)
            case .echo:
                let credits = AsyncStream<Void>.makeStream()
                return try await withThrowingTaskGroup(of: (Int, Int).self) { group in
                    group.addTask {
                        var sent = 0
                        var iterator = credits.stream.makeAsyncIterator()
                        while sent < messages {
                            if sent >= window { _ = await iterator.next() }
                            try await call.send(message)
                            sent += 1
                        }
                        call.closeSend()
                        return (0, 0)
                    }
                    var count = 0, bytes = 0
                    for try await answer in call.responses {
                        count += 1
                        bytes += answer.count
                        credits.continuation.yield()
                    }
                    credits.continuation.finish()
                    for try await _ in group {}
                    return (count, bytes)
                }
            }
        }
        let elapsed = (ContinuousClock.now - start).components
        let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
        let report = Report(mode: mode.rawValue, messages: count, bytes: bytes, seconds: seconds, messagesPerSecond: Double(count) / seconds)
        if json {
            print(String(decoding: try JSONEncoder().encode(report), as: UTF8.self))
        } else {
            print("\(mode.rawValue): \(count) messages (\(bytes) bytes) in \(String(format: "%.3f", seconds)) s: \(Int(report.messagesPerSecond)) messages/s")
        }
        group.shutdown()
    }
}
