import Foundation
import Micro

/// What went wrong talking to etcd, in one line, with what the caller can act on in ``kind``.
public struct EtcdError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// No member could be reached (refused, unreachable, the TLS handshake failed): the
        /// request was not sent.
        case unreachable
        /// The connection broke after the request was sent: it may or may not have been applied.
        case interrupted
        /// No answer within the timeout.
        case timeout
        /// The member answered that the cluster cannot serve now (no leader, a request that timed
        /// out inside raft, a leader change): another member, or a later try, may.
        case unavailable
        /// A revision asked for (a watch's start, a read's) is below the compacted one; the
        /// caller reads again from the present (`compactRevision` is the oldest kept).
        case compacted(compactRevision: Int64)
        /// A revision asked for is above the present one.
        case futureRevision
        /// The lease is not (or no longer) known to etcd.
        case leaseNotFound
        /// etcd refused the user name and password.
        case authenticationFailed
        /// etcd refused the token (expired, or etcd restarted); the client authenticates again.
        case invalidToken
        /// The user may not do this (its roles do not grant the key).
        case permissionDenied
        /// The request is malformed (an empty key, a bad range).
        case invalidArgument
        /// The request or its answer is larger than etcd or the client accepts.
        case tooLarge
        /// A watch etcd cancelled for another reason.
        case watchCancelled
        /// Anything else etcd said.
        case other
    }

    public let kind: Kind
    /// The text, etcd's own where it said one (`etcdserver: request timed out`).
    public let message: String
    /// The member concerned, when one is.
    public let endpoint: String?

    public init(_ kind: Kind, _ message: String, endpoint: String? = nil) {
        self.kind = kind
        self.message = message
        self.endpoint = endpoint
    }

    public var description: String {
        endpoint.map { "etcd at \($0): \(message)" } ?? "etcd: \(message)"
    }

    /// The error of a call through ``Client`` to `endpoint`. The client's own errors (id
    /// `micro.client`) say whether the request left: 503 after attempts that never reached a
    /// server, 408 at the deadline, 500 for a connection lost on the way; etcd's answers carry its
    /// gRPC status text, which names the condition (clientv3 reads them the same way).
    init(calling endpoint: String, _ error: any Error) {
        guard let error = error as? MicroError else {
            self.init(.other, "\(error)", endpoint: endpoint)
            return
        }
        if error.id == "micro.client" {
            let detail = Self.trimmed(error.detail)
            switch error.code {
            case 503: self.init(.unreachable, detail, endpoint: endpoint)
            case 408: self.init(.timeout, "no answer within the timeout", endpoint: endpoint)
            default: self.init(.interrupted, detail, endpoint: endpoint)
            }
            return
        }
        self.init(etcdSays: error.detail, code: error.code, endpoint: endpoint)
    }

    /// etcd's error text (and the gRPC status folded into a micro code) as a kind.
    init(etcdSays text: String, code: Int, endpoint: String?) {
        let kind: Kind
        switch text {
        case _ where text.contains("required revision has been compacted"): kind = .compacted(compactRevision: 0)
        case _ where text.contains("is a future revision"): kind = .futureRevision
        case _ where text.contains("requested lease not found"): kind = .leaseNotFound
        case _ where text.contains("authentication failed"): kind = .authenticationFailed
        case _ where text.contains("invalid auth token"), _ where text.contains("user name is empty"): kind = .invalidToken
        case _ where text.contains("permission denied"): kind = .permissionDenied
        case _ where text.contains("no leader"), _ where text.contains("request timed out"), _ where text.contains("leader changed"),
             _ where text.contains("not capable"), _ where text.contains("too many requests"), _ where text.contains("stopped"):
            kind = .unavailable
        // the request's deadline ran out inside etcd (sent as code Unknown when etcd wraps it)
        case _ where text.contains("context deadline exceeded"): kind = .timeout
        case _ where text.contains("larger than max"), _ where text.contains("request is too large"): kind = .tooLarge
        default:
            switch code {
            case 503: kind = .unavailable
            case 408: kind = .timeout
            case 401: kind = .invalidToken
            case 403: kind = .permissionDenied
            case 404: kind = .leaseNotFound
            case 429: kind = .tooLarge
            case 400: kind = .invalidArgument
            default: kind = .other
            }
        }
        self.init(kind, text, endpoint: endpoint)
    }

    /// The client's detail without its framing ("call to etcd./… at … failed after 1 attempts: ").
    private static func trimmed(_ detail: String) -> String {
        guard let colon = detail.range(of: "attempts: ") ?? detail.range(of: "failed: ") else { return detail }
        return String(detail[colon.upperBound...])
    }

    /// Whether another member may serve what this one could not.
    var triesAnotherMember: Bool {
        switch kind {
        case .unreachable, .unavailable, .timeout, .interrupted: true
        default: false
        }
    }
}
