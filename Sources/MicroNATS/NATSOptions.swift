import Foundation
public import MicroCore

/// How a ``NATSClient`` connects, and how it behaves when it loses its server.
public struct NATSOptions: Sendable {
    /// The servers, tried in order: `nats://[user:password@]host[:port]` (port 4222 by default),
    /// `tls://…` to require TLS, or `host:port`. Servers the cluster names in its INFO
    /// (`connect_urls`) are added as they come.
    public var servers: [String]
    /// The client's name, as the server shows it (`connz`).
    public var name: String?
    /// Credentials: a user and password, or a token (a server URL's own `user:password@` wins).
    public var user: String?
    public var password: String?
    public var token: String?
    /// TLS (the client's side: trust roots, a client certificate for mutual TLS). Without it a
    /// server that requires TLS is verified against the system's roots.
    public var tls: TLSConfig?
    /// How long one attempt to reach a server may take: TCP, TLS, and the server's answer to
    /// CONNECT.
    public var connectTimeout: Duration
    /// The pause between two rounds over every server while reconnecting (plus up to
    /// ``reconnectJitter``, so that many clients do not come back at once).
    public var reconnectWait: Duration
    public var reconnectJitter: Duration
    /// Rounds over the servers before the client gives up and closes (-1: never).
    public var maxReconnectAttempts: Int
    /// Bytes of publishes held while reconnecting, sent once connected again; a publish past it
    /// fails (``NATSError/Kind/reconnectBufferFull``) rather than being lost silently.
    public var reconnectBufferSize: Int
    /// How often the client asks the server whether it is there (PING), and how many unanswered
    /// PINGs make the connection stale (closed, and made again).
    public var pingInterval: Duration
    public var maxPingsOut: Int
    /// Messages a subscription holds for a consumer that has not taken them; past it, messages
    /// are dropped and the subscription is reported as a slow consumer.
    public var subscriptionPendingLimit: Int

    public init(
        servers: [String] = ["nats://127.0.0.1:4222"],
        name: String? = nil,
        user: String? = nil,
        password: String? = nil,
        token: String? = nil,
        tls: TLSConfig? = nil,
        connectTimeout: Duration = .seconds(2),
        reconnectWait: Duration = .seconds(2),
        reconnectJitter: Duration = .milliseconds(100),
        maxReconnectAttempts: Int = 60,
        reconnectBufferSize: Int = 8 * 1024 * 1024,
        pingInterval: Duration = .seconds(120),
        maxPingsOut: Int = 2,
        subscriptionPendingLimit: Int = 65536
    ) {
        self.servers = servers
        self.name = name
        self.user = user
        self.password = password
        self.token = token
        self.tls = tls
        self.connectTimeout = connectTimeout
        self.reconnectWait = reconnectWait
        self.reconnectJitter = reconnectJitter
        self.maxReconnectAttempts = maxReconnectAttempts
        self.reconnectBufferSize = reconnectBufferSize
        self.pingInterval = pingInterval
        self.maxPingsOut = maxPingsOut
        self.subscriptionPendingLimit = subscriptionPendingLimit
    }
}

/// What went wrong, said for a person.
public struct NATSError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// No server of the list could be reached (each attempt's reason in the message).
        case noServers
        /// The client was closed, or gave up reconnecting.
        case closed
        /// The connection broke before the server confirmed (a flush, a request's answer).
        case connectionLost
        /// Publishes made while reconnecting exceed ``NATSOptions/reconnectBufferSize``.
        case reconnectBufferFull
        /// A message larger than the server's `max_payload`.
        case payloadTooLarge
        /// A subject (or queue name) NATS does not take.
        case invalidSubject
        /// No answer in time.
        case timeout
        /// A request to a subject nobody subscribes to.
        case noResponders
        /// The server refused (`-ERR`: authorization, permissions, ...).
        case server
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// What happens to a client's connection, for whoever watches (``NATSClient/events()``).
public enum NATSEvent: Sendable, Equatable {
    /// Connected again, to this server, after losing the connection.
    case reconnected(String)
    /// The connection to this server was lost (why); the client reconnects.
    case disconnected(String, reason: String)
    /// The server said `-ERR` without closing (a permissions violation...).
    case serverError(String)
    /// A subscription's consumer fell behind: messages were dropped (the count so far).
    case slowConsumer(subject: String, dropped: Int)
    /// The client is closed (by its owner, or after giving up reconnecting).
    case closed
}

/// A server as the client dials it.
struct NATSServerAddress: Sendable, Equatable, CustomStringConvertible {
    var host: String
    var port: Int
    var tls: Bool
    var user: String?
    var password: String?

    /// `nats://[user:password@]host[:port]`, `tls://…`, `host:port` or `host`.
    init(_ text: String) throws {
        var rest = Substring(text.trimmingSpaces)
        tls = false
        if let scheme = rest.range(of: "://") {
            switch rest[..<scheme.lowerBound].lowercased() {
            case "nats": break
            case "tls": tls = true
            default: throw NATSError(.noServers, "'\(text)' is not a NATS server URL (nats:// or tls://)")
            }
            rest = rest[scheme.upperBound...]
        }
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = credentials.firstIndex(of: ":") {
                user = String(credentials[..<colon])
                password = String(credentials[credentials.index(after: colon)...])
            } else {
                user = String(credentials)
            }
        }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { throw NATSError(.noServers, "'\(text)': an IPv6 address without ']'") }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            port = after.hasPrefix(":") ? Int(after.dropFirst()) ?? -1 : 4222
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            port = Int(rest[rest.index(after: colon)...]) ?? -1
        } else {
            host = String(rest)
            port = 4222
        }
        guard !host.isEmpty, (1...65535).contains(port) else { throw NATSError(.noServers, "'\(text)' is not host:port") }
    }

    var description: String { "\(tls ? "tls" : "nats")://\(host.contains(":") ? "[\(host)]" : host):\(port)" }
}
