/// Request metadata: the headers of the request (go-micro: every header is metadata), with
/// case-insensitive keys. Keys are stored in lower case.
public struct Metadata: Sendable, Sequence, ExpressibleByDictionaryLiteral, Equatable {
    private var storage: [String: String]

    public init() { storage = [:] }

    public init(_ pairs: some Sequence<(String, String)>) {
        storage = [:]
        for (key, value) in pairs { self[key] = value }
    }

    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }

    /// The value of `key`, matched without regard to case.
    public subscript(key: String) -> String? {
        get { storage[key.lowercased()] }
        set { storage[key.lowercased()] = newValue }
    }

    public var count: Int { storage.count }

    public func makeIterator() -> Dictionary<String, String>.Iterator { storage.makeIterator() }
}
