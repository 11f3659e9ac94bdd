public import Logging

/// What a handler knows about the call it serves.
public struct Context: Sendable {
    /// The service being called.
    public let service: String
    /// The endpoint, e.g. `Helloworld.Greeting`.
    public let endpoint: String
    /// The request's headers.
    public let metadata: Metadata
    /// When the caller stops waiting (from the `Timeout` header), if it said.
    public let deadline: ContinuousClock.Instant?
    /// The loop that owns the connection; the handler runs on its thread.
    public let eventLoop: EventLoop
    let baseLogger: Logger

    /// A logger with the service and endpoint in its metadata.
    public var logger: Logger {
        var logger = baseLogger
        logger[metadataKey: "endpoint"] = "\(endpoint)"
        return logger
    }
}
