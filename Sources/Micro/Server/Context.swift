import Foundation
public import Logging
public import MicroCore
import Synchronization

/// What a handler knows about the call it serves.
///
/// One object per call (copies share it), so handing it down through interceptors and
/// handlers costs a reference, not a copy of every field.
public final class Context: Sendable {
    /// What every call of one endpoint (or subscription) shares, made once for it rather than
    /// for each call.
    final class Origin: Sendable {
        let service: String
        let endpoint: String
        /// The endpoint's kind (a subscription's: delivery).
        let kind: CallDescriptor.Kind
        /// The service's logger with the endpoint in its metadata.
        let logger: Logger
        /// Its span's name and attributes on each wire, made at its first traced call.
        let spanNamings = Mutex<[SpanNaming?]>([nil, nil, nil, nil])

        init(service: String, endpoint: String, kind: CallDescriptor.Kind = .unary, logger: Logger) {
            self.service = service
            self.endpoint = endpoint
            self.kind = kind
            var logger = logger
            logger[metadataKey: "endpoint"] = "\(endpoint)"
            self.logger = logger
        }
    }

    let origin: Origin
    /// The service being called.
    public var service: String { origin.service }
    /// The endpoint, e.g. `Helloworld.Greeting` (a delivery: the topic).
    public var endpoint: String { origin.endpoint }
    /// How the call came in.
    public let wire: CallDescriptor.Wire
    /// What the call is: service, endpoint, kind and wire.
    public var call: CallDescriptor { CallDescriptor(service: origin.service, endpoint: origin.endpoint, kind: origin.kind, wire: wire) }
    /// The request's headers (gRPC: its metadata; values of `-bin` keys are base64).
    public let metadata: Metadata
    /// When the caller stops waiting (from the `Timeout` or `grpc-timeout` header), if it said.
    public let deadline: ContinuousClock.Instant?
    /// The caller's timeout in whole milliseconds, rounded up, 0 if it set none: what the core's
    /// timer wheel is armed with. Also says `deadline != nil` without making an Optional of a type
    /// whose size is known only at run time (in an async function, that costs an allocation).
    let timeoutMilliseconds: UInt64
    /// The loop that owns the connection; the handler runs on its thread.
    public let eventLoop: EventLoop
    /// Who called: the identity verified by mutual TLS (nil over plaintext or without a client
    /// certificate). Interceptors use it for authorization.
    public let peer: Peer
    /// What `responseMetadata` collected.
    fileprivate let added = Mutex<[(String, String)]>([])
    /// Whether anything was added: most answers carry nothing, found without the lock.
    fileprivate let anyAdded = Atomic<Bool>(false)

    /// - Parameter timeout: the caller's timeout in nanoseconds (0: none); the deadline runs from now.
    init(origin: Origin, wire: CallDescriptor.Wire, metadata: Metadata, timeout: Int64, eventLoop: EventLoop,
         peer: Peer = Peer()) {
        self.origin = origin
        self.wire = wire
        self.metadata = metadata
        self.deadline = timeout > 0 ? .now + .nanoseconds(timeout) : nil
        self.timeoutMilliseconds = Monotonic.millisecondsRoundedUp(timeout)  // (Int64 arithmetic: no Duration per call)
        self.eventLoop = eventLoop
        self.peer = peer
    }

    /// Headers to send back with the answer (gRPC: initial metadata).
    public var responseMetadata: ResponseMetadata { ResponseMetadata(context: self) }

    /// A logger with the service and endpoint in its metadata.
    public var logger: Logger { origin.logger }
}

/// Headers a handler adds to its answer. Names are sent in lower case; they must not be
/// HTTP/2 or gRPC reserved names (`:status`, `content-type`, `grpc-*`), which are dropped.
///
/// Threading: any task (a short lock per access).
public struct ResponseMetadata: Sendable {
    let context: Context

    /// Adds a header (repeatable).
    public func add(_ name: String, _ value: String) {
        context.added.withLock { $0.append((name.lowercased(), value)) }
        context.anyAdded.store(true, ordering: .releasing)
    }

    /// Adds binary metadata: the name gets the `-bin` suffix gRPC requires, the value base64.
    public func add(_ name: String, binary value: [UInt8]) {
        let key = name.lowercased().hasSuffix("-bin") ? name : name + "-bin"
        add(key, Data(value).base64EncodedString())
    }

    /// What was added, less reserved names.
    var all: [(String, String)] {
        guard context.anyAdded.load(ordering: .acquiring) else { return [] }
        let fields = context.added.withLock { $0 }
        return fields.filter { name, _ in
            !name.hasPrefix(":") && !name.hasPrefix("grpc-") && name != "content-type" && name != "content-length"
        }
    }
}

extension Metadata {
    /// The value of a `-bin` metadata key, base64-decoded (padding optional, as gRPC allows).
    public func binary(_ name: String) -> [UInt8]? {
        let key = name.lowercased().hasSuffix("-bin") ? name : name + "-bin"
        guard var text = self[key] else { return nil }
        while text.count % 4 != 0 { text += "=" }
        return Data(base64Encoded: text).map { Array($0) }
    }
}

/// The caller of a request, as the transport knows it.
public struct Peer: Sendable, Equatable {
    /// The verified identity of the client certificate: its `spiffe://` URI SAN (e.g.
    /// `spiffe://micro.local/service/greeter`), else its subject CN; nil without mutual TLS.
    public let identity: String?
    /// The client's verified certificate chain in PEM, leaf first; nil without mutual TLS.
    public let certificateChain: String?
    /// Whether the call came over TLS.
    public let isTLS: Bool

    public init(identity: String? = nil, certificateChain: String? = nil, isTLS: Bool = false) {
        self.identity = identity
        self.certificateChain = certificateChain
        self.isTLS = isTLS
    }

    init(_ tls: TLSPeer?) {
        self.init(identity: tls?.identity, certificateChain: tls?.certificateChain, isTLS: tls != nil)
    }
}
