import MicroCore

/// The messages a peer streams, decoded, in order: the requests of a client- or bidirectional-
/// streaming handler, or the answers of a streaming call.
///
/// ```swift
/// for try await note in requests { total += note.value }
/// ```
///
/// Iterating throws ``MicroError`` for a message that does not decode or a stream the peer ended
/// with an error, and `CancellationError` when the peer went away. One iterator at a time.
/// Backpressure: a message is taken from the connection only when the iterator asks for it, so a
/// handler that reads slowly slows its sender (HTTP/2 flow control), and memory stays bounded.
public struct MessageStream<Message: Sendable>: AsyncSequence, Sendable {
    public typealias Element = Message
    let source: MessageSource
    let decode: @Sendable ([UInt8]) throws -> Message

    init(_ source: MessageSource, decode: @escaping @Sendable ([UInt8]) throws -> Message) {
        self.source = source
        self.decode = decode
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let source: MessageSource
        let decode: @Sendable ([UInt8]) throws -> Message

        public mutating func next() async throws -> Message? {
            guard let bytes = try await source.next() else { return nil }
            return try decode(bytes)
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(source: source, decode: decode) }
}

/// Length-prefixed messages (gRPC's framing, which the micro protocol's HTTP/2 streams share) cut
/// out of a streamed body, or out of a whole one.
///
/// @unchecked Sendable: the mutable state is touched only on `loop`'s thread (`next` hops there),
/// and by one iterator at a time.
final class MessageSource: @unchecked Sendable {
    let loop: EventLoop
    private var body: HTTPBodyStream.AsyncIterator?
    private var buffer: [UInt8]
    private var offset = 0
    private var ended: Bool
    private var prepared = false
    private var compression: String?
    /// Runs before the first read (a client waits for the answer's head there); returns the
    /// stream's compression, if not known at creation.
    let prepare: (@Sendable () async throws -> String?)?
    let maxMessageBytes: Int
    /// Says what the stream's end or failure means: nil for a clean end, else the error to throw.
    let onEnd: @Sendable () async throws -> Void
    let onFailure: @Sendable (any Error) -> any Error
    /// Set when a source must yield exactly one message (the request of a server stream).
    var exactlyOne = false
    /// Sees each message before it is decoded (interceptors' taps); set before the first read.
    var tap: MessageTaps.Tap?
    /// Counts the bytes of each message read (a served stream's endpoint metrics); set before
    /// the first read.
    var metrics: EndpointMetrics?

    init(
        loop: EventLoop,
        body: HTTPBodyStream?,
        whole: [UInt8],
        compression: String?,
        maxMessageBytes: Int,
        prepare: (@Sendable () async throws -> String?)? = nil,
        onEnd: @escaping @Sendable () async throws -> Void = {},
        onFailure: @escaping @Sendable (any Error) -> any Error = { $0 }
    ) {
        self.loop = loop
        self.body = body?.makeAsyncIterator()
        self.buffer = whole
        self.ended = body == nil
        self.compression = compression
        self.prepare = prepare
        self.maxMessageBytes = maxMessageBytes
        self.onEnd = onEnd
        self.onFailure = onFailure
    }

    func next() async throws -> [UInt8]? {
        guard loop.inEventLoop else {
            return try await withTaskExecutorPreference(loop) { try await self.next() }
        }
        if !prepared, let prepare {
            prepared = true
            if let compression = try await prepare() { self.compression = compression }
        }
        while true {
            if let message = try cut() {
                metrics?.record(received: message.count, sent: 0)
                return try tap.map { try $0(message) } ?? message
            }
            if ended {
                guard buffer.count == offset else {
                    throw MicroError.badRequest("micro.stream", "the stream ended inside a message (\(buffer.count - offset) bytes left)")
                }
                try await onEnd()
                return nil
            }
            let piece: [UInt8]?
            do {
                piece = try await body!.next()
            } catch {
                throw onFailure(error)
            }
            guard let piece else {
                ended = true
                continue
            }
            if offset > 0 && offset == buffer.count {
                buffer.removeAll(keepingCapacity: true)
                offset = 0
            } else if offset > 64 * 1024 && offset * 2 > buffer.count {
                buffer.removeFirst(offset)
                offset = 0
            }
            buffer.append(contentsOf: piece)
        }
    }

    /// One whole message out of the buffer, if there is one.
    private func cut() throws -> [UInt8]? {
        let available = buffer.count - offset
        guard available >= 5 else { return nil }
        let flag = buffer[offset]
        guard flag <= 1 else { throw MicroError.badRequest("micro.stream", "invalid message prefix: compressed flag \(flag)") }
        let length = Int(buffer[offset + 1]) << 24 | Int(buffer[offset + 2]) << 16 | Int(buffer[offset + 3]) << 8 | Int(buffer[offset + 4])
        guard length <= maxMessageBytes else {
            throw MicroError(id: "micro.stream", code: 429, detail: "message of \(length) bytes exceeds the limit of \(maxMessageBytes)")
        }
        guard available - 5 >= length else { return nil }
        let bytes = buffer[(offset + 5)..<(offset + 5 + length)]
        offset += 5 + length
        guard flag == 1 else { return Array(bytes) }
        guard compression?.lowercased() == "gzip" else {
            throw MicroError.badRequest("micro.stream", "compressed message without a supported grpc-encoding")
        }
        do {
            return try Gzip.decompress(bytes, limit: maxMessageBytes)
        } catch {
            throw MicroError(id: "micro.stream", code: 429, detail: "message: \(error)")
        }
    }
}
