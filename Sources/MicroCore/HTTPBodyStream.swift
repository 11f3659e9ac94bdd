import CMicroCore

/// The body of a streamed request or response, piece by piece as the peer sends it.
///
/// Backpressure: bytes are credited back to the peer's HTTP/2 flow-control window only when the
/// iterator hands them out, so a consumer that stops reading stops the sender after one stream
/// window (1 MiB by default), and memory stays bounded.
///
/// One iterator at a time. The pieces follow HTTP/2 DATA frames, not messages: framing is the
/// caller's (see `GRPCFraming` in the Micro module).
public struct HTTPBodyStream: AsyncSequence, Sendable {
    public typealias Element = [UInt8]
    let body: InboundBody

    init(_ body: InboundBody) { self.body = body }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let body: InboundBody
        /// The next piece, `nil` at the end; throws if the stream broke or the task was cancelled.
        public mutating func next() async throws -> [UInt8]? { try await body.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(body: body) }
}

/// Why a stream ended early.
public struct HTTPStreamError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The peer reset the stream or the connection closed.
        case reset
        /// The exchange cannot stream (HTTP/1.1) or the stream was already finished.
        case notStreaming
    }

    public let kind: Kind
    public let message: String

    public init(kind: Kind, message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// Inbound pieces between the C core and the one reader.
///
/// @unchecked Sendable: every member is touched only on `loop`'s thread (C callbacks arrive there;
/// `next` hops there first).
final class InboundBody: @unchecked Sendable {
    let loop: EventLoop
    /// Where consumed bytes are credited; nil once the C request is answered or gone.
    var request: OpaquePointer?
    private var chunks: [[UInt8]] = []
    private var head = 0
    private var ended = false
    private var failure: (any Error)?
    private var waiter: CheckedContinuation<[UInt8]?, any Error>?

    init(loop: EventLoop, request: OpaquePointer?) {
        self.loop = loop
        self.request = request
    }

    /// Bytes from the core (loop thread): copied, then handed to a waiting reader or queued.
    func append(_ bytes: UnsafeRawBufferPointer) {
        let chunk = Array(bytes.bindMemory(to: UInt8.self))
        if let waiter {
            self.waiter = nil
            credit(chunk.count)
            waiter.resume(returning: chunk)
        } else {
            chunks.append(chunk)
        }
    }

    /// The peer ended its side (loop thread).
    func end() {
        ended = true
        if let waiter, head == chunks.count {
            self.waiter = nil
            waiter.resume(returning: nil)
        }
    }

    /// The stream broke (loop thread): the reader gets `error` once the queue is drained.
    func fail(_ error: any Error) {
        guard !ended, failure == nil else { return }
        failure = error
        request = nil
        if let waiter, head == chunks.count {
            self.waiter = nil
            waiter.resume(throwing: error)
        }
    }

    private func credit(_ count: Int) {
        if let request, count > 0 { mc_request_consume(request, count) }
    }

    private func take() -> [UInt8]? {
        guard head < chunks.count else { return nil }
        let chunk = chunks[head]
        head += 1
        if head == chunks.count {
            chunks.removeAll(keepingCapacity: true)
            head = 0
        }
        credit(chunk.count)
        return chunk
    }

    func next() async throws -> [UInt8]? {
        guard loop.inEventLoop else {
            return try await withTaskExecutorPreference(loop) { try await self.next() }
        }
        if let chunk = take() { return chunk }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[UInt8]?, any Error>) in
                // decided here, on the loop, with no suspension since the state was read
                if let chunk = take() { return continuation.resume(returning: chunk) }
                if ended { return continuation.resume(returning: nil) }
                if let failure { return continuation.resume(throwing: failure) }
                if Task.isCancelled { return continuation.resume(throwing: CancellationError()) }
                waiter = continuation
            }
        } onCancel: {
            loop.execute { self.cancelWaiter() }
        }
    }

    private func cancelWaiter() {
        guard let waiter else { return }
        self.waiter = nil
        waiter.resume(throwing: CancellationError())
    }
}
