import CMicroCore

/// Sends the answer to one request. The first `send` wins; later ones are ignored.
///
/// Threading: any thread; the answer is written on the loop that owns the connection (at once
/// when called there, which is where handlers run).
public struct HTTPResponder: Sendable {
    let call: InFlightRequest

    init(_ call: InFlightRequest) { self.call = call }

    public func send(_ response: HTTPServerResponse) {
        call.send(response)
    }

    /// True once the client went away (reset, closed, timed out) or an answer was sent.
    public var isFinished: Bool { call.isFinished }

    /// Whether this exchange can carry a stream of messages: HTTP/2, or an HTTP/1.1 request that
    /// opened a go-micro stream (a `Micro-Stream` header; answers go out as HTTP/1.1 frames).
    /// Any exchange can carry a streamed body (``sendHead(status:headers:)``).
    public var canStream: Bool { call.canStream }

    /// Starts a streamed answer: the status and headers go now, the body follows with
    /// ``write(_:)`` and ends with ``finish(trailers:)``. On HTTP/2 a stream's DATA; on HTTP/1.1
    /// chunked (trailers are dropped), or go-micro's frames for a `Micro-Stream` request; answers
    /// still leave in request order. Throws when the client is gone, or for a `HEAD` request or a
    /// status without a body (1xx, 204, 304) on HTTP/1.1.
    public func sendHead(status: Int = 200, headers: HTTPHeaders = [:]) async throws(HTTPStreamError) {
        try await call.sendHead(status: status, headers: headers)
    }

    /// Sends body bytes of a streamed answer. Suspends while the client does not read (its
    /// HTTP/2 window is full and 64 KiB are queued); throws if the client went away.
    public func write(_ bytes: [UInt8]) async throws(HTTPStreamError) {
        try await call.write(bytes)
    }

    /// Ends a streamed answer with `trailers` once every byte is sent. Later calls are ignored.
    public func finish(trailers: HTTPHeaders = [:]) {
        call.finish(trailers: trailers)
    }

    /// Gives the exchange the caller's deadline. If it passes before the answer is finished,
    /// `handler` is told on the request's loop (once) and should answer, with a timeout say; the
    /// handler's task is cancelled right after. The deadline lives in the core's timer wheel: when
    /// the answer comes first nothing runs later, and setting and dropping it cost a few pointer
    /// writes, so every call can carry one. It passes up to a few milliseconds late. Setting it
    /// again moves it; nothing happens once the exchange is over.
    public func setDeadline(_ deadline: ContinuousClock.Instant, handler: any HTTPDeadlineHandler) {
        call.setDeadline(afterMilliseconds: deadline.millisecondsFromNow, handler)
    }

    /// ``setDeadline(_:handler:)`` for a deadline `milliseconds` from now: what a timeout that
    /// came with the request (gRPC's `grpc-timeout`, go-micro's `Timeout`) says, with no clock read.
    public func setDeadline(afterMilliseconds milliseconds: UInt64, handler: any HTTPDeadlineHandler) {
        call.setDeadline(afterMilliseconds: milliseconds, handler)
    }

    /// ``setDeadline(_:handler:)`` with a closure for the handler.
    public func setDeadline(_ deadline: ContinuousClock.Instant, expired: @escaping @Sendable (HTTPServerRequest, HTTPResponder) -> Void) {
        call.setDeadline(afterMilliseconds: deadline.millisecondsFromNow, ClosureDeadlineHandler(expired))
    }

    /// ``setDeadline(afterMilliseconds:handler:)`` with a closure for the handler.
    public func setDeadline(afterMilliseconds milliseconds: UInt64, expired: @escaping @Sendable (HTTPServerRequest, HTTPResponder) -> Void) {
        call.setDeadline(afterMilliseconds: milliseconds, ClosureDeadlineHandler(expired))
    }
}

/// What answers an exchange whose deadline passed (``HTTPResponder/setDeadline(_:handler:)``).
/// An object rather than a closure so that one long-lived handler (a router) serves every call
/// without allocating per call.
public protocol HTTPDeadlineHandler: AnyObject, Sendable {
    /// The deadline of `request` passed before its answer was finished. Called on the request's
    /// loop, once; answer through `responder`.
    func deadlinePassed(_ request: HTTPServerRequest, _ responder: HTTPResponder)
}

private final class ClosureDeadlineHandler: HTTPDeadlineHandler {
    let expired: @Sendable (HTTPServerRequest, HTTPResponder) -> Void
    init(_ expired: @escaping @Sendable (HTTPServerRequest, HTTPResponder) -> Void) { self.expired = expired }
    func deadlinePassed(_ request: HTTPServerRequest, _ responder: HTTPResponder) { expired(request, responder) }
}
