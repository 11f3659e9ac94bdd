import MicroCore

/// Sends messages on a stream: the answers of a server- or bidirectional-streaming handler, or the
/// requests of a streaming call.
///
/// ```swift
/// for i in 1...3 { try await responses.write(Tick(n: i)) }
/// ```
///
/// `write` suspends while the peer does not read (HTTP/2 flow control), so a fast producer
/// cannot fill memory; it throws `CancellationError` once the peer went away, and
/// ``MicroError`` (408) once the call's deadline passed.
public struct MessageWriter<Message: Sendable>: Sendable {
    let sink: any MessageSink
    let encode: @Sendable (Message) throws -> [UInt8]

    init(_ sink: any MessageSink, encode: @escaping @Sendable (Message) throws -> [UInt8]) {
        self.sink = sink
        self.encode = encode
    }

    /// Encodes, frames and sends one message.
    public func write(_ message: Message) async throws {
        let bytes: [UInt8]
        do {
            bytes = try encode(message)
        } catch {
            throw MicroError.internalServerError("micro.stream", "cannot encode \(Message.self): \(error)")
        }
        try await sink.send(GRPCFraming.frame(bytes))
    }
}

/// Where framed messages go.
protocol MessageSink: Sendable {
    func send(_ framed: [UInt8]) async throws
}

/// A sink whose messages pass a tap first (interceptors' `onResponse` / `onRequest`): the frame is
/// taken apart, the message tapped and framed again. Only calls with taps pay for it.
struct TappedSink: MessageSink {
    let inner: any MessageSink
    let tap: MessageTaps.Tap

    init(_ inner: any MessageSink, _ tap: @escaping MessageTaps.Tap) {
        self.inner = inner
        self.tap = tap
    }

    func send(_ framed: [UInt8]) async throws {
        try await inner.send(GRPCFraming.frame(try tap(Array(framed.dropFirst(5)))))
    }
}
