/// What a call is, as interceptors on both sides see it: whom it calls, which kind of exchange it
/// is and over which wire it travels.
///
/// Built from values the router and the client hold anyway (two shared strings and two enums):
/// making one allocates nothing.
public struct CallDescriptor: Sendable, Hashable, CustomStringConvertible {
    /// The shape of the exchange.
    public enum Kind: String, Sendable, Hashable {
        /// One request, one answer.
        case unary
        /// One request, a stream of answers.
        case serverStream
        /// A stream of requests, one answer.
        case clientStream
        /// Streams both ways.
        case bidiStream
        /// A message a client publishes to a topic (client side only).
        case publish
        /// A message a broker delivers to a subscriber (server side only).
        case delivery
    }

    /// How the call travels.
    public enum Wire: String, Sendable, Hashable {
        /// go-micro's protocol over HTTP/1.1 (`Micro-Endpoint` headers; streams as go-micro frames).
        case microHTTP1
        /// go-micro's protocol over HTTP/2.
        case microHTTP2
        /// gRPC (`application/grpc*`), over HTTP/2.
        case grpc
        /// A broker: a publish on its way, or a delivery to a subscriber.
        case broker
    }

    /// The service called; for a publish or a delivery, the topic's publisher or subscriber service
    /// when known (a client publishing has none: empty).
    public var service: String
    /// The endpoint (`Greeter.Hello`); for a publish or a delivery, the topic.
    public var endpoint: String
    public var kind: Kind
    public var wire: Wire

    public init(service: String, endpoint: String, kind: Kind, wire: Wire) {
        self.service = service
        self.endpoint = endpoint
        self.kind = kind
        self.wire = wire
    }

    public var description: String { "\(kind.rawValue) \(service.isEmpty ? "" : service + " ")\(endpoint) over \(wire.rawValue)" }

    /// Whether messages stream (either way).
    public var isStream: Bool { kind == .serverStream || kind == .clientStream || kind == .bidiStream }
}

/// Functions that see, and may replace, each message of a call on its way (the encoded bytes,
/// before framing). Interceptors add them through `onRequest` / `onResponse`.
struct MessageTaps: Sendable {
    typealias Tap = @Sendable ([UInt8]) throws -> [UInt8]
    var request: Tap?
    var response: Tap?

    /// `first`, then `second` on what it returned (either may be missing, not both).
    static func chain(_ first: Tap?, then second: Tap?) -> Tap? {
        guard let first else { return second }
        guard let second else { return first }
        return { @Sendable bytes in try second(first(bytes)) }
    }
}
