public import MicroCore

/// Request metadata: the headers of the request (go-micro: every header is metadata), looked up
/// without regard to case.
public struct Metadata: Sendable, Sequence, ExpressibleByDictionaryLiteral, Equatable {
    private var fields: HTTPHeaders
    /// Fields that follow `fields` (an answer's trailers after its headers), kept apart until
    /// the metadata is changed: joining them copies every field into Strings.
    private var trailing: HTTPHeaders?

    public init() { fields = HTTPHeaders() }

    /// Wraps request headers as they are (no copy of the fields into another structure).
    public init(_ headers: HTTPHeaders) { fields = headers }

    /// `headers` then `trailers`, each as it is.
    init(_ headers: HTTPHeaders, then trailers: HTTPHeaders) {
        fields = headers
        trailing = trailers.isEmpty ? nil : trailers
    }

    public init(_ pairs: some Sequence<(String, String)>) {
        fields = HTTPHeaders()
        for (key, value) in pairs { self[key] = value }
    }

    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }

    /// The value of `key`, matched without regard to case. Setting replaces every earlier value.
    public subscript(key: String) -> String? {
        get { fields[key] ?? trailing?[key] }
        set {
            join()
            fields[key] = newValue
        }
    }

    public var count: Int { fields.count + (trailing?.count ?? 0) }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> {
        guard let trailing else { return Array(fields).makeIterator() }
        return (Array(fields) + Array(trailing)).makeIterator()
    }

    public static func == (a: Metadata, b: Metadata) -> Bool {
        a.elementsEqual(b) { $0.name == $1.name && $0.value == $1.value }
    }

    private mutating func join() {
        guard let trailing else { return }
        self.trailing = nil
        fields.reserveCapacity(fields.count + trailing.count)
        for (name, value) in trailing { fields.add(name: name, value: value) }
    }
}
