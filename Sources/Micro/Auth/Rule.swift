import Foundation

/// What a rule is about: `service:helloworld:Say.Hello`, `*` for any part, an endpoint path
/// prefix as `Foo.Bar/*` (go-micro's `auth.Resource`). Calls are resources of type `service`
/// (name: the service called, endpoint: its endpoint); broker deliveries of type `topic` (name:
/// the topic, endpoint: the subscribing service).
public struct Resource: Sendable, Equatable, Codable, CustomStringConvertible {
    public var type: String
    public var name: String
    public var endpoint: String

    public init(type: String, name: String, endpoint: String) {
        self.type = type
        self.name = name
        self.endpoint = endpoint
    }

    /// `TYPE:NAME:ENDPOINT` (the endpoint may hold colons).
    public init(parsing text: String) throws(AuthError) {
        let parts = text.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts.allSatisfy({ !$0.isEmpty }) else {
            throw AuthError(.invalidToken, "a resource is TYPE:NAME:ENDPOINT (e.g. service:helloworld:Say.Hello, * for any), not '\(text)'")
        }
        self.init(type: String(parts[0]), name: String(parts[1]), endpoint: String(parts[2]))
    }

    public var description: String { "\(type):\(name):\(endpoint)" }
}

/// Grants or denies a scope access to a resource (go-micro's `auth.Rule`). Scope `""` is the
/// public (no account needed), `"*"` any account, anything else an account holding that scope;
/// a caller known by its mutual-TLS certificate holds its SPIFFE ID as a scope.
public struct Rule: Sendable, Equatable, Codable {
    public enum Access: String, Sendable, Codable {
        case granted, denied
    }
    public var id: String
    public var scope: String
    public var resource: Resource
    public var access: Access
    /// Higher first.
    public var priority: Int32

    public init(id: String, scope: String, resource: Resource, access: Access = .granted, priority: Int32 = 0) {
        self.id = id
        self.scope = scope
        self.resource = resource
        self.access = access
        self.priority = priority
    }

    /// The public scope and the any-account scope.
    public static let publicScope = "", anyAccount = "*"

    /// The verdict of `rules` on `account` (nil: no token) calling `resource`, go-micro's
    /// `Verify`: the rules whose type, name and endpoint match (`*`, equal, or for the endpoint an
    /// ancestor path `a/*` of `a/b/c`; case-insensitive), highest priority first (ties keep their
    /// order), the first that applies decides: public scope always, `*` for any account,
    /// else the account's scopes must hold it. Nothing applies: denied.
    public static func verify(_ rules: [Rule], account: Account?, resource: Resource) -> Access {
        verify(byPriority: inPriorityOrder(rules), account: account, resource: resource)
    }

    /// `rules` highest priority first, ties in their order (a stable sort): what
    /// ``verify(byPriority:account:resource:)`` takes, sorted once, not per call.
    static func inPriorityOrder(_ rules: [Rule]) -> [Rule] {
        rules.enumerated().sorted { a, b in
            a.element.priority != b.element.priority ? a.element.priority > b.element.priority : a.offset < b.offset
        }.map(\.element)
    }

    /// ``verify(_:account:resource:)`` over rules already in priority order. Allocates nothing.
    static func verify(byPriority rules: [Rule], account: Account?, resource: Resource) -> Access {
        for rule in rules where rule.resource.matches(resource) {
            if rule.scope.isEmpty { return rule.access }  // public
            guard let account else { continue }
            if rule.scope == anyAccount { return rule.access }
            if account.scopes.contains(where: { equalFold($0, rule.scope) }) { return rule.access }
        }
        return .denied
    }

    /// Any account may call anything: what a service with auth on starts with when its store
    /// holds no rules (go-micro's server does the same), so that a token is what is needed.
    public static let `default` = Rule(id: "default", scope: anyAccount, resource: Resource(type: "*", name: "*", endpoint: "*"))

    /// Health checks (gRPC, HTTP and `Debug.Health`) and reflection are public unless a rule says otherwise.
    static let builtIn: [Rule] = [
        Rule(id: "micro-health", scope: publicScope, resource: Resource(type: "service", name: "*", endpoint: "grpc.health.v1.Health.*"), priority: -1),
        Rule(id: "micro-reflection", scope: publicScope, resource: Resource(type: "service", name: "*", endpoint: "grpc.reflection.*"), priority: -1),
        Rule(id: "micro-debug-health", scope: publicScope, resource: Resource(type: "service", name: "*", endpoint: "Debug.Health"), priority: -1),
    ]
}

extension Resource {
    /// Whether this resource of a rule covers `other`.
    func matches(_ other: Resource) -> Bool {
        guard type == "*" || equalFold(type, other.type), name == "*" || equalFold(name, other.name) else { return false }
        if endpoint == "*" || equalFold(endpoint, other.endpoint) { return true }
        // `a/*` covers a/b and a/b/c; `Foo.*` covers Foo.Bar (go-micro's path prefixes, and the
        // dotted endpoints of the micro protocol)
        let pattern = endpoint.utf8, called = other.endpoint.utf8
        guard pattern.last == UInt8(ascii: "*") else { return false }
        let stem = pattern.dropLast()
        guard let separator = stem.last, separator == UInt8(ascii: "/") || separator == UInt8(ascii: ".") else { return false }
        // go-micro: `a/b/*` covers a/b itself too
        if separator == UInt8(ascii: "/"), equalFold(stem.dropLast(), called) { return true }
        return called.count > stem.count && equalFold(stem, called.prefix(stem.count))
    }
}

/// Equal without regard to case, as go-micro's `strings.EqualFold`: bytes compared with ASCII
/// letters folded (no allocation); Unicode folding only when a byte is not ASCII.
func equalFold(_ a: String, _ b: String) -> Bool {
    if equalFold(a.utf8, b.utf8) { return true }
    guard !a.utf8.allSatisfy({ $0 < 0x80 }) || !b.utf8.allSatisfy({ $0 < 0x80 }) else { return false }
    return a.caseInsensitiveCompare(b) == .orderedSame
}

/// ASCII-folded equality of two byte sequences (a prefix of an endpoint, a stem).
func equalFold(_ a: some Collection<UInt8>, _ b: some Collection<UInt8>) -> Bool {
    @inline(__always) func fold(_ c: UInt8) -> UInt8 { c &- 65 < 26 ? c | 0x20 : c }
    return a.count == b.count && a.elementsEqual(b) { fold($0) == fold($1) }
}
