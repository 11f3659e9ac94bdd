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
}

/// One request between the core and its handler task.
///
/// @unchecked Sendable: `request`, `task` and `answered` are only touched on `loop`'s thread
/// (`send` hops there first); `finished` is atomic.
final class InFlightRequest: @unchecked Sendable {
    private let request: OpaquePointer
    let loop: EventLoop
    var task: Task<Void, Never>?
    private var answered = false
    private var gone = false

    init(_ request: OpaquePointer, loop: EventLoop) {
        self.request = request
        self.loop = loop
    }

    var isFinished: Bool { answered || gone }

    /// The peer went away: cancel the handler. The request stays until answered.
    func peerGone() {
        gone = true
        task?.cancel()
    }

    func send(_ response: HTTPServerResponse) {
        guard loop.inEventLoop else {
            loop.execute { self.send(response) }
            return
        }
        if answered { return }
        answered = true
        task = nil
        response.headers.withCHeaders { h, nh in
            response.trailers.withCHeaders { t, nt in
                response.body.withUnsafeBufferPointer { body in
                    _ = mc_request_respond(request, Int32(response.status), h, nh, body.baseAddress, body.count, t, nt)
                }
            }
        }
    }
}

extension HTTPHeaders {
    /// Calls `body` with the fields as C headers that point into one temporary buffer.
    func withCHeaders<R>(_ body: (UnsafePointer<mc_header_t>?, Int) -> R) -> R {
        if isEmpty { return body(nil, 0) }
        var bytes: [UInt8] = []
        var spans: [(Int, Int, Int, Int)] = []
        spans.reserveCapacity(count)
        for field in self {
            let nameStart = bytes.count
            bytes.append(contentsOf: field.name.utf8)
            let valueStart = bytes.count
            bytes.append(contentsOf: field.value.utf8)
            spans.append((nameStart, valueStart - nameStart, valueStart, bytes.count - valueStart))
        }
        return bytes.withUnsafeBufferPointer { buffer in
            let base = UnsafeRawPointer(buffer.baseAddress!).assumingMemoryBound(to: CChar.self)
            let headers = spans.map {
                mc_header_t(name: base + $0.0, name_len: $0.1, value: base + $0.2, value_len: $0.3)
            }
            return headers.withUnsafeBufferPointer { body($0.baseAddress, $0.count) }
        }
    }
}
