/// A service as the registry knows it: go-micro's `registry.Service`, field for field, so that
/// the JSON is the same (`name`, `version`, `metadata`, `endpoints`, `nodes`).
public struct ServiceRecord: Codable, Sendable, Equatable {
    public var name: String
    public var version: String
    public var metadata: [String: String]
    public var endpoints: [Endpoint]
    public var nodes: [Node]

    public init(name: String, version: String = "latest", metadata: [String: String] = [:], endpoints: [Endpoint] = [], nodes: [Node] = []) {
        self.name = name
        self.version = version
        self.metadata = metadata
        self.endpoints = endpoints
        self.nodes = nodes
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        version = try c.decodeIfPresent(String.self, forKey: .version) ?? ""
        metadata = try c.decodeIfPresent([String: String].self, forKey: .metadata) ?? [:]
        endpoints = try c.decodeIfPresent([Endpoint].self, forKey: .endpoints) ?? []
        nodes = try c.decodeIfPresent([Node].self, forKey: .nodes) ?? []
    }
}

/// One running instance of a service.
public struct Node: Codable, Sendable, Equatable, Hashable {
    /// Unique across the registry, e.g. `helloworld-6f1c...`.
    public var id: String
    /// `host:port` to call it on.
    public var address: String
    /// Labels: protocols it speaks, registry bookkeeping, user labels.
    public var metadata: [String: String]

    public init(id: String, address: String, metadata: [String: String] = [:]) {
        self.id = id
        self.address = address
        self.metadata = metadata
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        address = try c.decodeIfPresent(String.self, forKey: .address) ?? ""
        metadata = try c.decodeIfPresent([String: String].self, forKey: .metadata) ?? [:]
    }
}

/// An endpoint a service offers, with the shape of what it takes and returns.
public struct Endpoint: Codable, Sendable, Equatable {
    public var name: String
    public var request: Value?
    public var response: Value?
    public var metadata: [String: String]

    public init(name: String, request: Value? = nil, response: Value? = nil, metadata: [String: String] = [:]) {
        self.name = name
        self.request = request
        self.response = response
        self.metadata = metadata
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        request = try c.decodeIfPresent(Value.self, forKey: .request)
        response = try c.decodeIfPresent(Value.self, forKey: .response)
        metadata = try c.decodeIfPresent([String: String].self, forKey: .metadata) ?? [:]
    }
}

/// A type described as a tree: a field `name` of `type`, with its own fields in `values`.
public struct Value: Codable, Sendable, Equatable {
    public var name: String
    public var type: String
    public var values: [Value]?

    public init(name: String, type: String, values: [Value]? = nil) {
        self.name = name
        self.type = type
        self.values = values
    }
}
