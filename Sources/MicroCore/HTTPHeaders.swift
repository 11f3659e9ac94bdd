import CMicroCore
#if canImport(Glibc)
import Glibc
#endif

/// An ordered list of HTTP header fields with case-insensitive lookup.
///
/// Names read from the wire are lower case (HTTP/2 requires it; the core folds HTTP/1.1 names).
public struct HTTPHeaders: Sendable, Sequence, ExpressibleByDictionaryLiteral, Equatable {
    public typealias Element = (name: String, value: String)

    private var fields: [Element] {
        didSet { wire = nil }
    }
    /// The fields in C form, built once for headers made once and sent many times (see
    /// ``frozen()``); any change drops it.
    private var wire: WireHeaders?

    public init() { fields = [] }

    public init(_ fields: [(String, String)]) {
        self.fields = fields.map { (name: $0.0, value: $0.1) }
    }

    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }

    /// The first value of `name`, or nil.
    public subscript(name: String) -> String? {
        get {
            let count = name.utf8.count
            // names from the wire are lower case, and so are most names asked for: a plain
            // comparison first, then one without regard to case
            for i in fields.indices where fields[i].name.utf8.count == count {
                if fields[i].name == name || Self.equalIgnoringCase(fields[i].name, name) { return fields[i].value }
            }
            return nil
        }
        set {
            remove(name)
            if let newValue { fields.append((name: name, value: newValue)) }
        }
    }

    /// Adds a field, keeping any earlier one of the same name.
    public mutating func add(name: String, value: String) {
        fields.append((name: name, value: value))
    }

    /// Makes room for `count` fields in all, so that adding them allocates once.
    public mutating func reserveCapacity(_ count: Int) {
        fields.reserveCapacity(count)
    }

    /// Removes every field named `name`.
    public mutating func remove(_ name: String) {
        fields.removeAll { Self.equalIgnoringCase($0.name, name) }
    }

    /// ASCII case-insensitive comparison (header names are tokens), without allocating.
    static func equalIgnoringCase(_ a: String, _ b: String) -> Bool {
        var i = a.utf8.makeIterator(), j = b.utf8.makeIterator()
        while true {
            switch (i.next(), j.next()) {
            case (nil, nil): return true
            case let (x?, y?):
                if x != y && (x | 0x20 != y | 0x20 || !(UInt8(ascii: "a")...UInt8(ascii: "z")).contains(x | 0x20)) {
                    return false
                }
            default: return false
            }
        }
    }

    /// These headers with their C form built now, for headers made once and sent with many
    /// answers (a content type, a status trailer): sending them then copies nothing.
    public func frozen() -> HTTPHeaders {
        var copy = self
        copy.wire = withCHeaders { headers, count in WireHeaders(headers, count) }
        return copy
    }

    public var count: Int { fields.count }
    public var isEmpty: Bool { fields.isEmpty }

    public func makeIterator() -> IndexingIterator<[Element]> { fields.makeIterator() }

    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        lhs.fields.elementsEqual(rhs.fields) { $0.name == $1.name && $0.value == $1.value }
    }
}

extension HTTPHeaders {
    /// Calls `body` with the fields as C headers that point into one temporary buffer.
    func withCHeaders<R>(_ body: (UnsafePointer<mc_header_t>?, Int) -> R) -> R {
        if fields.isEmpty { return body(nil, 0) }
        if let wire { return body(wire.headers, wire.count) }
        // the bytes and the entries live on the stack (for the usual few headers): this runs for
        // every answer and every call; the fields are read in place, not copied out one by one
        return fields.withUnsafeBufferPointer { fields in
            var total = 0
            for i in fields.indices { total += fields[i].name.utf8.count + fields[i].value.utf8.count }
            return withUnsafeTemporaryAllocation(of: CChar.self, capacity: Swift.max(total, 1)) { bytes in
                withUnsafeTemporaryAllocation(of: mc_header_t.self, capacity: fields.count) { headers in
                    let base = bytes.baseAddress!
                    var offset = 0
                    for i in fields.indices {
                        let name = base + offset
                        let nameCount = Self.copy(fields[i].name, to: name)
                        let value = name + nameCount
                        let valueCount = Self.copy(fields[i].value, to: value)
                        (headers.baseAddress! + i).initialize(to: mc_header_t(
                            name: name, name_len: nameCount, value: value, value_len: valueCount))
                        offset += nameCount + valueCount
                    }
                    defer { headers.baseAddress!.deinitialize(count: fields.count) }
                    return body(headers.baseAddress, fields.count)
                }
            }
        }
    }

    /// Copies a string's UTF-8 to `target` (room for all of it); returns the byte count.
    private static func copy(_ string: String, to target: UnsafeMutablePointer<CChar>) -> Int {
        let copied = string.utf8.withContiguousStorageIfAvailable { utf8 -> Int in
            if let source = utf8.baseAddress { memcpy(target, source, utf8.count) }
            return utf8.count
        }
        if let copied { return copied }
        var count = 0
        for byte in string.utf8 {
            target[count] = CChar(bitPattern: byte)
            count += 1
        }
        return count
    }
}

/// Header fields in C form in one allocation: the `mc_header_t` entries, then the bytes they
/// point to. Immutable once built.
final class WireHeaders: @unchecked Sendable {
    // @unchecked Sendable: written only in `init`, read-only afterwards; freed in `deinit`.
    let headers: UnsafeMutablePointer<mc_header_t>
    let count: Int

    init(_ source: UnsafePointer<mc_header_t>?, _ count: Int) {
        var bytes = 0
        for i in 0..<count { bytes += source![i].name_len + source![i].value_len }
        let size = count * MemoryLayout<mc_header_t>.stride + bytes
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(size, 1), alignment: MemoryLayout<mc_header_t>.alignment)
        headers = raw.bindMemory(to: mc_header_t.self, capacity: count)
        var text = (raw + count * MemoryLayout<mc_header_t>.stride).assumingMemoryBound(to: CChar.self)
        for i in 0..<count {
            let field = source![i]
            text.update(from: field.name, count: field.name_len)
            let name = text
            text += field.name_len
            text.update(from: field.value, count: field.value_len)
            let value = text
            text += field.value_len
            (headers + i).initialize(to: mc_header_t(name: name, name_len: field.name_len, value: value, value_len: field.value_len))
        }
        self.count = count
    }

    deinit {
        headers.deinitialize(count: count)
        UnsafeMutableRawPointer(headers).deallocate()
    }
}
