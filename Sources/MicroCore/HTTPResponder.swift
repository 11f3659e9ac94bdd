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

    /// Whether this exchange can carry a streamed answer: HTTP/2, or an HTTP/1.1 request that
    /// opened a go-micro stream (a `Micro-Stream` header; answers go out as HTTP/1.1 frames).
    public var canStream: Bool { call.canStream }

    /// Starts a streamed answer: the status and headers go now, the body follows with
    /// ``write(_:)`` and ends with ``finish(trailers:)``. HTTP/2 only; throws on HTTP/1.1 or
    /// when the client is gone.
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
}
