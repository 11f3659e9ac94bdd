import CMicroCore

/// One request between the core and its handler task: its fields (it is the request's storage,
/// see ``HTTPServerRequest``) and the state of its answer.
///
/// @unchecked Sendable: `request`, `worker` and `answered` are only touched on `loop`'s thread
/// (`send` hops there first); the fields it inherits are immutable.
final class InFlightRequest: HTTPServerRequest.Storage, @unchecked Sendable {
    private let request: OpaquePointer
    // Loop-confined and touched for every request: no dynamic exclusivity checks (see
    // RequestWorkers).
    /// The worker running its handler, until the answer is sent.
    @exclusivity(unchecked) var worker: RequestWorkers.Worker?
    /// The body of a streamed request; nil when it came whole.
    let inbound: InboundBody?
    @exclusivity(unchecked) private var answered = false
    @exclusivity(unchecked) private var gone = false
    @exclusivity(unchecked) private(set) var headSent = false
    /// Who answers if the caller's deadline passes first (armed in the core meanwhile).
    @exclusivity(unchecked) private var deadlineHandler: (any HTTPDeadlineHandler)?
    private var writeWaiter: CheckedContinuation<Void, any Error>?

    /// Reads the request's fields from the core (on the loop thread, in the request callback);
    /// the path's String is the one `paths` has for it if it came recently.
    init(_ request: OpaquePointer, loop: EventLoop, streamed: Bool, paths: RecentStrings) {
        self.request = request
        let inbound = streamed ? InboundBody(loop: loop, request: request) : nil
        self.inbound = inbound
        var len = 0
        let method = WireHeaders.string(mc_request_method(request, &len), len)
        let path = paths.string(mc_request_path(request, &len), len)
        // one copy of every field, no Strings until asked for
        let headers = HTTPHeaders(copying: request, 0..<mc_request_trailer_index(request))
        var body: [UInt8] = []
        var grpcFramed = false
        if !streamed, let bytes = mc_request_body(request, &len), len > 0 {
            // a body that is one uncompressed gRPC message (what a unary gRPC call sends) is kept
            // without its prefix, so the handler gets the message without another copy (see
            // HTTPServerRequest.grpcMessage); `body` puts the prefix back if asked, so this
            // holds whatever the content type says
            if GRPCPrefix.isOneUncompressedMessage(bytes, len) {
                body = Array(UnsafeBufferPointer(start: bytes + GRPCPrefix.count, count: len - GRPCPrefix.count))
                grpcFramed = true
            } else {
                body = Array(UnsafeBufferPointer(start: bytes, count: len))
            }
        }
        var tls: TLSPeer?
        if mc_request_is_tls(request) != 0 {
            let identity = mc_request_peer_identity(request).map { String(cString: $0) }
            var chainLength = 0
            let chain = identity == nil ? nil : mc_request_peer_chain(request, &chainLength)
            tls = TLSPeer(identity: identity, certificateChain: chain.map { WireHeaders.string($0, chainLength) },
                          resumed: mc_request_tls_resumed(request) != 0)
        }
        super.init(HTTPServerRequest.Fields(
            method: method, path: path, headers: headers, content: body, grpcFramed: grpcFramed,
            httpVersion: Int(mc_request_protocol(request)), loop: loop, bodyStream: inbound.map(HTTPBodyStream.init), tls: tls))
    }

    var isFinished: Bool { answered || gone }
    /// The client went away (a reset stream, a closed connection).
    var isGone: Bool { gone }

    var loop: EventLoop { fields.loop }
    var httpVersion: Int { fields.httpVersion }

    var canStream: Bool { httpVersion == 2 || inbound != nil }

    static let peerGoneError = HTTPStreamError(kind: .reset, message: "the client went away")

    /// The peer went away: cancel the handler. The request stays until answered.
    func peerGone() {
        gone = true
        inbound?.fail(Self.peerGoneError)
        resumeWriter(throwing: Self.peerGoneError)
        worker?.cancel(self)
    }

    /// Arms the caller's deadline in the core's wheel (see ``HTTPResponder/setDeadline(_:handler:)``).
    func setDeadline(afterMilliseconds milliseconds: UInt64, _ handler: any HTTPDeadlineHandler) {
        guard loop.inEventLoop else {
            loop.execute { self.setDeadline(afterMilliseconds: milliseconds, handler) }
            return
        }
        guard !answered, !gone else { return }
        deadlineHandler = handler
        // -1 only while the loop stops: the exchange then ends with it
        _ = mc_request_set_deadline(request, milliseconds)
    }

    /// The core says the deadline passed before the answer was finished: the handler answers,
    /// then the task running the request's handler is cancelled.
    func deadlinePassed() {
        guard !answered, !gone, let handler = deadlineHandler else { return }
        deadlineHandler = nil
        let worker = self.worker  // answering lets go of it
        handler.deadlinePassed(HTTPServerRequest(self), HTTPResponder(self))
        worker?.cancel(self)
    }

    /// The core can take more of a streamed answer.
    func writable() {
        resumeWriter(throwing: nil)
    }

    private func resumeWriter(throwing error: (any Error)?) {
        guard let waiter = writeWaiter else { return }
        writeWaiter = nil
        if let error { waiter.resume(throwing: error) } else { waiter.resume() }
    }

    func sendHead(status: Int, headers: HTTPHeaders) async throws(HTTPStreamError) {
        guard loop.inEventLoop else {
            let result: Result<Void, HTTPStreamError> = await withTaskExecutorPreference(loop) {
                do throws(HTTPStreamError) {
                    try await self.sendHead(status: status, headers: headers)
                    return .success(())
                } catch {
                    return .failure(error)
                }
            }
            return try result.get()
        }
        guard !answered, !headSent else { throw HTTPStreamError(kind: .notStreaming, message: "the answer has already started") }
        guard !gone else { throw Self.peerGoneError }
        guard (100...999).contains(status) else {
            throw HTTPStreamError(kind: .notStreaming, message: "status \(status) is not an HTTP status (100-999)")
        }
        let rc = headers.withCHeaders { h, nh in mc_request_send_head(request, Int32(status), h, nh) }
        guard rc == 0 else {
            throw gone || httpVersion == 2 || inbound != nil ? Self.peerGoneError
                : HTTPStreamError(kind: .notStreaming, message: "an HTTP/1.1 answer to HEAD, or with status \(status), has no body to stream")
        }
        headSent = true
    }

    func write(_ bytes: [UInt8]) async throws(HTTPStreamError) {
        guard loop.inEventLoop else {
            let result: Result<Void, HTTPStreamError> = await withTaskExecutorPreference(loop) {
                do throws(HTTPStreamError) {
                    try await self.write(bytes)
                    return .success(())
                } catch {
                    return .failure(error)
                }
            }
            return try result.get()
        }
        guard headSent, !answered else { throw HTTPStreamError(kind: .notStreaming, message: "write before sendHead or after finish") }
        guard !gone else { throw Self.peerGoneError }
        let rc = bytes.withUnsafeBufferPointer { mc_request_write(request, $0.baseAddress, $0.count) }
        if rc < 0 { throw Self.peerGoneError }
        if rc == 0 { return }
        // past the high-water mark: wait until the core has sent enough, the peer is gone, the
        // answer was finished elsewhere (a deadline) or the task is cancelled
        do {
            try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    if gone || answered { return continuation.resume(throwing: Self.peerGoneError) }
                    if Task.isCancelled { return continuation.resume(throwing: CancellationError()) }
                    writeWaiter = continuation
                }
            } onCancel: {
                self.loop.execute { self.resumeWriter(throwing: CancellationError()) }
            }
        } catch {
            throw Self.peerGoneError
        }
    }

    func finish(trailers: HTTPHeaders) {
        guard loop.inEventLoop else {
            loop.execute { self.finish(trailers: trailers) }
            return
        }
        guard headSent || (httpVersion == 1 && inbound != nil) else { return send(HTTPServerResponse(status: 200, trailers: trailers)) }
        if answered { return }
        answered = true
        worker = nil
        inbound?.request = nil
        trailers.withCHeaders { t, nt in _ = mc_request_finish(request, t, nt) }
        resumeWriter(throwing: HTTPStreamError(kind: .notStreaming, message: "the answer was finished"))
    }

    /// After the handler returned: a streamed answer still open is ended, else `fallback` is sent.
    func complete(_ fallback: HTTPServerResponse) {
        if headSent { finish(trailers: [:]) } else { send(fallback) }
    }

    func send(_ response: HTTPServerResponse) {
        guard loop.inEventLoop else {
            loop.execute { self.send(response) }
            return
        }
        if answered || headSent { return }
        answered = true
        worker = nil
        inbound?.request = nil
        let prefixCount = response.isGRPCMessage ? GRPCPrefix.count : 0
        withUnsafeBytes(of: GRPCPrefix.uncompressed(length: response.body.count)) { prefix in
            response.headers.withCHeaders { h, nh in
                response.trailers.withCHeaders { t, nt in
                    response.body.withUnsafeBufferPointer { body in
                        _ = mc_request_respond_framed(request, Int32(clamping: response.status), h, nh,
                                                      prefix.baseAddress?.assumingMemoryBound(to: UInt8.self), prefixCount,
                                                      body.baseAddress, body.count, t, nt)
                    }
                }
            }
        }
    }
}
