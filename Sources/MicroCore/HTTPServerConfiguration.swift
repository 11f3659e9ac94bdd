/// Where a server listens and the limits it enforces. The defaults suit a service on a LAN.
public struct HTTPServerConfiguration: Sendable {
    /// Host or address to bind; empty means every interface, IPv6 and IPv4.
    public var host: String
    /// Port; 0 lets the kernel choose (read ``HTTPServer/port``).
    public var port: Int
    /// Request line and headers; more is answered with 431.
    public var maxHeaderBytes: Int = 16 * 1024
    /// Request body; more is answered with 413.
    public var maxBodyBytes: Int = 4 * 1024 * 1024
    /// HTTP/2 streams a client may open at once.
    public var maxConcurrentStreams: Int = 250
    /// HTTP/1.1 requests in flight on one connection before reading pauses.
    public var maxPipelinedRequests: Int = 16
    /// Connections at which accepting pauses; 0 derives it from the descriptor limit.
    public var maxConnections: Int = 0
    /// A request's headers must arrive within this time (slow clients are cut: 408).
    public var headerTimeout: Duration = .seconds(10)
    /// A connection with nothing in flight closes after this time (HTTP/2: GOAWAY first, then
    /// the close after a grace of a second).
    public var idleTimeout: Duration = .seconds(60)
    /// A request body that gets no bytes for this long is ended: answered 408 if its handler has
    /// not started, else reset (HTTP/2 RST_STREAM; HTTP/1.1 closes). This covers a streaming
    /// call whose client sends nothing for this long too; `.zero` turns the limit off.
    public var readTimeout: Duration = .seconds(60)
    /// Output waiting that the peer does not take for this long closes the connection (HTTP/2:
    /// one stream whose window stays shut is reset); `.zero` turns the limit off.
    public var writeTimeout: Duration = .seconds(30)
    /// Request bodies one connection may hold before their handlers take them. Past it, HTTP/2
    /// peers get no more flow-control credit and HTTP/1.1 reading pauses, until handlers answer.
    public var maxBufferedBodyBytes: Int = 16 * 1024 * 1024
    /// The listen backlog.
    public var backlog: Int = 4096
    /// TLS on every connection (nil: plaintext, HTTP/1.1 and h2c). See ``HTTPServer/reloadTLS(_:)``.
    public var tls: TLSConfig?

    public init(host: String = "", port: Int = 0) {
        self.host = host
        self.port = port
    }
}

extension Duration {
    var milliseconds: UInt32 {
        let (s, atto) = components
        let ms = s * 1000 + atto / 1_000_000_000_000_000
        return UInt32(clamping: max(ms, 0))
    }
}

extension Duration {
    /// Whole milliseconds, rounded up (a deadline in the core's wheel must never pass early); 0
    /// for a duration that is not positive.
    package var millisecondsRoundedUp: UInt64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0, attoseconds >= 0 else { return 0 }
        // past what fits, the core clamps anyway (about 35 years)
        guard seconds < 1 << 40 else { return 1 << 50 }
        return UInt64(seconds) * 1000 + UInt64((attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
    }
}

extension ContinuousClock.Instant {
    /// Whole milliseconds from now until this instant, rounded up; 0 if it has passed.
    var millisecondsFromNow: UInt64 { (self - .now).millisecondsRoundedUp }
}
