import CMicroCore

extension HTTPClient {
    /// Opens a streamed call to `address` and runs `body` with it: request body bytes go
    /// out with ``HTTPClientStream/write(_:)`` as the server's window allows, the answer's body
    /// comes in through ``HTTPClientStream/body`` as the caller reads it. When `body` returns or
    /// throws, a stream still open is reset: its lifetime is the closure's.
    ///
    /// ```swift
    /// try await client.withStream(address: "127.0.0.1:8080", path: "/echo", headers: [:]) { stream in
    ///     try await stream.write(Array("ping".utf8))
    ///     stream.finish()
    ///     for try await piece in stream.body { print(piece.count) }
    /// }
    /// ```
    /// Passing `deadline` resets the stream when it passes; operations then fail with
    /// ``HTTPClientError/Kind/timeout``. With `tls`, the call goes over TLS (see
    /// ``HTTPClient/request(address:method:path:headers:body:deadline:tls:version:)``). Over
    /// HTTP/1.1 (`version`) the stream is go-micro's: a connection of its own, each message a
    /// request and each answer message a response.
    public func withStream<R>(
        address: String,
        method: String = "POST",
        path: String,
        headers: HTTPHeaders,
        deadline: ContinuousClock.Instant? = nil,
        tls: TLSTarget? = nil,
        version: Version = .http2,
        _ body: (HTTPClientStream) async throws -> R
    ) async throws -> R {
        if version == .http1_1 && tls != nil { throw HTTPClientError.http1OverTLS }
        let secure = try tls.map { target throws(HTTPClientError) in SecureTarget(target: target, context: try tlsContext()) }
        let current = EventLoop.current
        let loop = current.flatMap { current in group.loops.first { $0 === current } } ?? group.next()
        let pool = pools[loop.index]
        return try await withTaskExecutorPreference(loop) {
            if version == .http1_1 {
                // go-micro's HTTP/1.1 stream: a connection of its own, closed with the stream
                let connection = try await pool.dedicatedHTTP1(to: address)
                defer { connection.close() }
                let stream = try connection.openStream(method: method, path: path, headers: headers, deadline: deadline)
                defer { stream.cancel() }
                return try await body(stream)
            }
            let connection = try await pool.connection(to: address, tls: secure)
            let stream = try connection.openStream(method: method, path: path, headers: headers, deadline: deadline)
            defer { stream.cancel() }
            return try await body(stream)
        }
    }
}

extension ClientConnection {
    /// On the loop, with no suspension between the check and the C call.
    func openStream(method: String, path: String, headers: HTTPHeaders, deadline: ContinuousClock.Instant?) throws(HTTPClientError) -> HTTPClientStream {
        guard let handle, acceptsCalls else {
            throw HTTPClientError(kind: .refused, message: "connection to \(address) cannot take calls")
        }
        let stream = HTTPClientStream(loop: pool.loop, client: handle)
        let ctx = Unmanaged.passRetained(stream).toOpaque()  // released in done
        var callbacks = mc_stream_callbacks_t()
        callbacks.on_head = { ctx, response in
            Unmanaged<HTTPClientStream>.fromOpaque(ctx!).takeUnretainedValue().headArrived(response!)
        }
        callbacks.on_data = { ctx, data, len in
            Unmanaged<HTTPClientStream>.fromOpaque(ctx!).takeUnretainedValue().inbound.append(UnsafeRawBufferPointer(start: data, count: len))
        }
        callbacks.on_writable = { ctx in
            Unmanaged<HTTPClientStream>.fromOpaque(ctx!).takeUnretainedValue().writable()
        }
        callbacks.done = { ctx, result, response in
            Unmanaged<HTTPClientStream>.fromOpaque(ctx!).takeRetainedValue().done(result, response)
        }
        var streamID: Int32 = 0
        var request: OpaquePointer?
        let rc = headers.withCHeaders { h, nh in
            method.withCString { m in
                path.withCString { p in mc_client_stream(handle, m, p, h, nh, &callbacks, ctx, &streamID, &request) }
            }
        }
        guard rc == 0 else {
            Unmanaged<HTTPClientStream>.fromOpaque(ctx).release()
            throw HTTPClientError(kind: .refused, message: "connection to \(address) cannot take calls")
        }
        stream.opened(streamID: streamID, request: request)
        // the core's wheel resets the stream when the deadline passes
        if let deadline, let request { _ = mc_request_set_deadline(request, deadline.millisecondsFromNow) }
        return stream
    }
}

/// One streamed call (see ``HTTPClient/withStream(address:method:path:headers:deadline:_:)``).
///
/// Threading: use it from the task running the `withStream` closure (its methods hop to the
/// connection's loop if called elsewhere).
///
/// @unchecked Sendable: every member is touched only on `loop`'s thread (C callbacks arrive
/// there; the async methods hop there first, the others post there).
public final class HTTPClientStream: @unchecked Sendable {
    /// The loop that owns the connection.
    public let loop: EventLoop
    private let client: OpaquePointer
    private var streamID: Int32 = 0
    /// Valid until `done`.
    private var request: OpaquePointer?
    let inbound: InboundBody
    private var head: (status: Int, headers: HTTPHeaders)?
    private var headWaiters: [CheckedContinuation<Void, any Error>] = []
    private var writeWaiter: CheckedContinuation<Void, any Error>?
    private var endWaiters: [CheckedContinuation<Void, any Error>] = []
    private var outcome: Result<HTTPHeaders, HTTPClientError>?

    init(loop: EventLoop, client: OpaquePointer) {
        self.loop = loop
        self.client = client
        self.inbound = InboundBody(loop: loop, request: nil)
    }

    func opened(streamID: Int32, request: OpaquePointer?) {
        self.streamID = streamID
        self.request = request
        inbound.request = request
    }

    /// The answer's body as it arrives. It ends when the server ends the stream; it throws if
    /// the stream broke, was cancelled or timed out.
    public var body: HTTPBodyStream { HTTPBodyStream(inbound) }

    /// The answer's status and headers, once they arrive.
    public func response() async throws(HTTPClientError) -> (status: Int, headers: HTTPHeaders) {
        try await onLoop { () throws(HTTPClientError) in
            if self.head == nil {
                try await self.wait { self.head != nil || self.outcome != nil } append: { self.headWaiters.append($0) }
            }
            if let head = self.head { return head }
            throw self.failure
        }
    }

    /// The trailers, once the server has ended the stream (gRPC: the status).
    public func trailers() async throws(HTTPClientError) -> HTTPHeaders {
        try await onLoop { () throws(HTTPClientError) in
            if self.outcome == nil {
                try await self.wait { self.outcome != nil } append: { self.endWaiters.append($0) }
            }
            return try self.outcome!.get()
        }
    }

    /// Sends request body bytes. Suspends while the server does not read (its window is full
    /// and 64 KiB are queued); throws once the stream is over.
    public func write(_ bytes: [UInt8]) async throws(HTTPClientError) {
        try await onLoop { () throws(HTTPClientError) in
            guard let request = self.request else { throw self.failure }
            let rc = bytes.withUnsafeBufferPointer { mc_request_write(request, $0.baseAddress, $0.count) }
            if rc < 0 { throw self.failure }
            if rc == 1 {
                try await self.wait { self.request == nil } append: { self.writeWaiter = $0 }
                if self.request == nil { throw self.failure }
            }
        }
    }

    /// Ends the request body (the server sees the end of its input). Idempotent.
    public func finish() {
        guard loop.inEventLoop else { return loop.execute { self.finish() } }
        if let request { _ = mc_request_finish(request, nil, 0) }
    }

    /// Resets the stream if it is still open. Idempotent.
    public func cancel() {
        guard loop.inEventLoop else { return loop.execute { self.cancel() } }
        if request != nil { mc_client_cancel(client, streamID) }
    }

    private var failure: HTTPClientError {
        if case .failure(let error)? = outcome { return error }
        return HTTPClientError(kind: .reset, message: "the stream is over")
    }

    // MARK: - events from the core (loop thread)

    func headArrived(_ response: OpaquePointer) {
        let count = min(mc_request_trailer_index(response), mc_request_header_count(response))
        head = (Int(mc_request_status(response)), HTTPHeaders(copying: response, 0..<count))
        resumeAll(&headWaiters, nil)
    }

    func writable() {
        if let waiter = writeWaiter {
            writeWaiter = nil
            waiter.resume()
        }
    }

    func done(_ result: Int32, _ response: OpaquePointer?) {
        request = nil
        inbound.request = nil
        if let error = HTTPClientError.from(result: result) {
            outcome = .failure(error)
            inbound.fail(error)
        } else {
            let count = mc_request_header_count(response!)
            let split = min(mc_request_trailer_index(response!), count)
            outcome = .success(HTTPHeaders(copying: response!, split..<count))
            inbound.end()
        }
        resumeAll(&headWaiters, nil)
        resumeAll(&endWaiters, nil)
        writable()
    }

    private func resumeAll(_ waiters: inout [CheckedContinuation<Void, any Error>], _ error: (any Error)?) {
        let all = waiters
        waiters = []
        for waiter in all {
            if let error { waiter.resume(throwing: error) } else { waiter.resume() }
        }
    }

    // MARK: - helpers

    /// Suspends until `ready()`, registering with `append` unless it already holds; the check
    /// and the registration happen on the loop with no suspension in between.
    private func wait(
        until ready: () -> Bool,
        append: (CheckedContinuation<Void, any Error>) -> Void
    ) async throws(HTTPClientError) {
        do {
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    if ready() { return continuation.resume() }
                    append(continuation)
                }
            } onCancel: {
                self.cancel()
            }
        } catch {
            throw HTTPClientError(kind: .cancelled, message: "\(error)")
        }
    }

    private func onLoop<T>(_ body: () async throws(HTTPClientError) -> T) async throws(HTTPClientError) -> T {
        if loop.inEventLoop { return try await body() }
        let result: Result<T, HTTPClientError> = await withTaskExecutorPreference(loop) {
            do throws(HTTPClientError) {
                return .success(try await body())
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }
}
