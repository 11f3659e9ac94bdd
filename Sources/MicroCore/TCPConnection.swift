import CMicroCore

/// What a ``TCPConnection``'s owner hears, on the connection's loop thread: the protocol that
/// rides on the bytes (a NATS client; later others) is the owner's.
public protocol TCPConnectionDelegate: AnyObject {
    /// Bytes read (after TLS). Valid during the call only: parse them or copy them.
    func received(_ bytes: UnsafeRawBufferPointer)
    /// Output that had passed the high-water mark (``TCPConnection/write(_:)`` said `.full`) has
    /// drained to half of it.
    func writable()
    /// The connection is gone: the peer's end or ``TCPConnection/close(graceful:)`` (`error` nil),
    /// or a failure. Last, once.
    func closed(error: MicroCoreError?)
}

/// A client TCP connection of the C core, optionally TLS, that carries bytes and leaves the
/// protocol to its owner: the core resolves, connects, queues output and flushes it once per
/// loop turn, runs TLS (from the start, or begun later with ``startTLS(_:serverName:expectedIdentity:)``
/// as protocols that agree on it in plaintext do), and closes; the owner frames.
///
/// ```swift
/// let connection = try await TCPConnection.connect(to: "127.0.0.1", port: 4222, on: loop,
///                                                  options: .init(connectTimeout: .seconds(2)),
///                                                  delegate: parser)
/// loop.execute { _ = connection.write(Array("PING\r\n".utf8)) }
/// ```
///
/// Threading: ``connect(to:port:on:options:delegate:)`` and ``send(_:)`` from any task;
/// everything else, and every delegate call, on `loop`'s thread. The delegate is held strongly
/// until `closed`.
public final class TCPConnection: @unchecked Sendable {
    // @unchecked Sendable: `handle`, `delegate` and the continuations are read and written only
    // on `loop`'s thread (every method requires it; the C callbacks arrive there); `loop` and
    // `target` are immutable.

    public struct Options: Sendable {
        /// How long connecting (and a TLS handshake from the start) may take; nil: the kernel's.
        public var connectTimeout: Duration?
        /// Output held before ``write(_:)`` says `.full`.
        public var highWater: Int
        /// TLS from the start (a client context), if any.
        public var tls: TLSContext?
        /// TLS: SNI and the name the server's certificate must carry (default: the host dialled).
        public var serverName: String?
        /// TLS: the identity the server must present (a `spiffe://` ID or a CN) instead of a name.
        public var expectedIdentity: String?

        public init(connectTimeout: Duration? = .seconds(5), highWater: Int = 1 << 20, tls: TLSContext? = nil,
                    serverName: String? = nil, expectedIdentity: String? = nil) {
            self.connectTimeout = connectTimeout
            self.highWater = highWater
            self.tls = tls
            self.serverName = serverName
            self.expectedIdentity = expectedIdentity
        }
    }

    /// What ``write(_:)`` did.
    public enum WriteResult: Sendable, Equatable {
        /// Queued.
        case queued
        /// Queued, and the output is past the high-water mark: wait for `writable()`.
        case full
        /// Not queued: the connection is closing or gone.
        case closed
    }

    public let loop: EventLoop
    /// `host:port` as dialled.
    public let target: String
    private var handle: OpaquePointer?
    private var delegate: (any TCPConnectionDelegate)?
    private var connecting: CheckedContinuation<Void, any Error>?
    private var securing: CheckedContinuation<Void, any Error>?
    /// Senders waiting for the output to drain (``send(_:)``).
    private var draining: [CheckedContinuation<Void, any Error>] = []
    /// TLS contexts in use (the C side keeps its own reference; these keep Swift's alive too).
    private var contexts: [TLSContext] = []

    private init(loop: EventLoop, target: String, delegate: any TCPConnectionDelegate) {
        self.loop = loop
        self.target = target
        self.delegate = delegate
    }

    /// Connects to `host:port` on `loop`; returns once connected (over TLS, once the handshake is
    /// done and the server checked), or throws why not.
    public static func connect(to host: String, port: Int, on loop: EventLoop, options: Options = Options(),
                               delegate: any TCPConnectionDelegate) async throws -> TCPConnection {
        guard (1...65535).contains(port) else { throw MicroCoreError(message: "cannot connect to \(host):\(port): not a port") }
        let connection = TCPConnection(loop: loop, target: "\(host):\(port)", delegate: delegate)
        try await withTaskExecutorPreference(loop) {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                connection.open(host: host, port: UInt16(port), options: options, continuation: continuation)
            }
        }
        return connection
    }

    private func open(host: String, port: UInt16, options: Options, continuation: CheckedContinuation<Void, any Error>) {
        precondition(loop.inEventLoop)
        connecting = continuation
        if let tls = options.tls { contexts.append(tls) }
        // the C side's context: this connection, retained until on_closed
        let context = Unmanaged.passRetained(self).toOpaque()
        var callbacks = mc_tcp_callbacks_t()
        callbacks.ctx = context
        callbacks.on_connected = { ctx, error, message in
            let connection = Unmanaged<TCPConnection>.fromOpaque(ctx!).takeUnretainedValue()
            let waiting = connection.connecting
            connection.connecting = nil
            if error == 0 {
                waiting?.resume()
            } else {
                waiting?.resume(throwing: MicroCoreError(message: String(cString: message!)))
            }
        }
        callbacks.on_data = { ctx, data, len in
            let connection = Unmanaged<TCPConnection>.fromOpaque(ctx!).takeUnretainedValue()
            connection.delegate?.received(UnsafeRawBufferPointer(start: data, count: len))
        }
        callbacks.on_writable = { ctx in
            let connection = Unmanaged<TCPConnection>.fromOpaque(ctx!).takeUnretainedValue()
            let waiting = connection.draining
            connection.draining.removeAll()
            for sender in waiting { sender.resume() }
            connection.delegate?.writable()
        }
        callbacks.on_secured = { ctx, error, message in
            let connection = Unmanaged<TCPConnection>.fromOpaque(ctx!).takeUnretainedValue()
            let waiting = connection.securing
            connection.securing = nil
            if error == 0 {
                waiting?.resume()
            } else {
                waiting?.resume(throwing: MicroCoreError(message: String(cString: message!)))
            }
        }
        callbacks.on_closed = { ctx, error, message in
            let connection = Unmanaged<TCPConnection>.fromOpaque(ctx!).takeRetainedValue()
            connection.handle = nil
            let why = error == 0 ? nil : MicroCoreError(message: String(cString: message!))
            let gone = MicroCoreError(message: why?.message ?? "the connection to \(connection.target) closed")
            connection.connecting?.resume(throwing: gone)
            connection.connecting = nil
            connection.securing?.resume(throwing: gone)
            connection.securing = nil
            let waiting = connection.draining
            connection.draining.removeAll()
            for sender in waiting { sender.resume(throwing: gone) }
            let delegate = connection.delegate
            connection.delegate = nil
            delegate?.closed(error: why)
        }
        var copts = mc_tcp_options_t()
        copts.connect_timeout_ms = options.connectTimeout.map { UInt64(max(1, $0.millisecondsRoundedUp)) } ?? 0
        copts.high_water = max(options.highWater, 1)
        copts.tls = options.tls?.pointer
        handle = host.withCString { hostPointer in
            (options.serverName ?? "").withCString { name in
                (options.expectedIdentity ?? "").withCString { expected in
                    copts.server_name = options.serverName == nil ? nil : name
                    copts.expected_identity = options.expectedIdentity == nil ? nil : expected
                    return mc_tcp_connect(loop.handle, hostPointer, port, &callbacks, &copts)
                }
            }
        }
        if handle == nil {
            Unmanaged<TCPConnection>.fromOpaque(context).release()
            connecting = nil
            delegate = nil
            continuation.resume(throwing: MicroCoreError(message: "cannot connect to \(target): out of memory"))
        }
    }

    /// Queues `bytes` for the next flush (copied). On the loop's thread.
    @discardableResult
    public func write(_ bytes: UnsafeRawBufferPointer) -> WriteResult {
        precondition(loop.inEventLoop, "a TCPConnection is written on its loop's thread")
        guard let handle else { return .closed }
        switch mc_tcp_write(handle, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count) {
        case 0: return .queued
        case 1: return .full
        default: return .closed
        }
    }

    /// Queues `first`, `second` and `third` one after the other (copied, in one call: a header,
    /// a payload and a trailer need no buffer joining them). On the loop's thread.
    @discardableResult
    public func write(_ first: UnsafeRawBufferPointer, _ second: UnsafeRawBufferPointer, _ third: UnsafeRawBufferPointer) -> WriteResult {
        precondition(loop.inEventLoop, "a TCPConnection is written on its loop's thread")
        guard let handle else { return .closed }
        let pieces = (mc_slice_t(data: first.baseAddress?.assumingMemoryBound(to: UInt8.self), len: first.count),
                      mc_slice_t(data: second.baseAddress?.assumingMemoryBound(to: UInt8.self), len: second.count),
                      mc_slice_t(data: third.baseAddress?.assumingMemoryBound(to: UInt8.self), len: third.count))
        let rc = withUnsafeBytes(of: pieces) { raw in
            mc_tcp_writev(handle, raw.baseAddress!.assumingMemoryBound(to: mc_slice_t.self), 3)
        }
        switch rc {
        case 0: return .queued
        case 1: return .full
        default: return .closed
        }
    }

    /// Queues `bytes` for the next flush (copied). On the loop's thread.
    @discardableResult
    public func write(_ bytes: [UInt8]) -> WriteResult {
        bytes.withUnsafeBytes { write($0) }
    }

    /// Queues `bytes` (copied) from any task, and returns once the output is below its mark
    /// again if this write passed it: a sender that outpaces the peer waits instead of growing
    /// the output. Throws if the connection is closing or gone.
    public func send(_ bytes: [UInt8]) async throws {
        try await withTaskExecutorPreference(loop) {
            switch self.write(bytes) {
            case .queued: return
            case .closed: throw MicroCoreError(message: "the connection to \(self.target) is closed")
            case .full:
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    if self.handle == nil {
                        continuation.resume(throwing: MicroCoreError(message: "the connection to \(self.target) is closed"))
                    } else {
                        self.draining.append(continuation)
                    }
                }
            }
        }
    }

    /// Output bytes the socket has not taken yet. On the loop's thread.
    public var pendingBytes: Int {
        precondition(loop.inEventLoop)
        guard let handle else { return 0 }
        return mc_tcp_pending(handle)
    }

    /// Stops or resumes reading: backpressure on what the peer sends. On the loop's thread.
    public func setReading(_ on: Bool) {
        precondition(loop.inEventLoop)
        guard let handle else { return }
        mc_tcp_set_reading(handle, on ? 1 : 0)
    }

    /// Begins TLS on the open connection and returns once it is up (the server checked against
    /// `serverName`, default the host dialled, or `expectedIdentity`); bytes written meanwhile go
    /// out encrypted after the handshake. A failure closes the connection. On the loop's thread.
    public func startTLS(_ context: TLSContext, serverName: String? = nil, expectedIdentity: String? = nil) async throws {
        precondition(loop.inEventLoop, "a TCPConnection is changed on its loop's thread")
        guard let handle else { throw MicroCoreError(message: "the connection to \(target) is closed") }
        guard securing == nil else { throw MicroCoreError(message: "TLS is already being started") }
        contexts.append(context)
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            securing = continuation
            let started = (serverName ?? "").withCString { name in
                (expectedIdentity ?? "").withCString { expected in
                    mc_tcp_start_tls(handle, context.pointer, serverName == nil ? nil : name, expectedIdentity == nil ? nil : expected)
                }
            }
            if started != 0, let waiting = securing {
                // failed at once: on_secured may have said so already (then `securing` is nil)
                securing = nil
                waiting.resume(throwing: MicroCoreError(message: "cannot start TLS with \(target)"))
            }
        }
    }

    /// Whether TLS is up.
    public var isTLS: Bool {
        precondition(loop.inEventLoop)
        guard let handle else { return false }
        return mc_tcp_is_tls(handle) != 0
    }

    /// The server's verified identity over TLS (its `spiffe://` URI SAN, else its CN).
    public var peerIdentity: String? {
        precondition(loop.inEventLoop)
        guard let handle, let identity = mc_tcp_peer_identity(handle) else { return nil }
        return String(cString: identity)
    }

    /// Closes: `graceful`, once the output is out (with TLS's close_notify); else at once,
    /// dropping it. `closed` follows. Idempotent; on the loop's thread.
    public func close(graceful: Bool = true) {
        precondition(loop.inEventLoop, "a TCPConnection is closed on its loop's thread")
        guard let handle else { return }
        mc_tcp_close(handle, graceful ? 1 : 0)
    }

    /// Whether the connection is open (not yet closed: `closed` not yet said).
    public var isOpen: Bool {
        precondition(loop.inEventLoop)
        return handle != nil
    }
}
