public import MicroCore

/// Request metadata: the headers of the request (go-micro: every header is metadata), looked up
/// without regard to case.
public struct Metadata: Sendable, Sequence, ExpressibleByDictionaryLiteral, Equatable {
    private var fields: HTTPHeaders

    public init() { fields = HTTPHeaders() }

    /// Wraps request headers as they are (no copy of the fields into another structure).
    public init(_ headers: HTTPHeaders) { fields = headers }

    public init(_ pairs: some Sequence<(String, String)>) {
        fields = HTTPHeaders()
        for (key, value) in pairs { self[key] = value }
    }

    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }

    /// The value of `key`, matched without regard to case. Setting replaces every earlier value.
    public subscript(key: String) -> String? {
        get { fields[key] }
        set { fields[key] = newValue }
    }

    public var count: Int { fields.count }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> {
        Array(fields).makeIterator()
    }
}
