import CMicroCore
#if canImport(Glibc)
import Glibc
#endif

/// An ordered list of HTTP header fields with case-insensitive lookup.
///
/// Names read from the wire are lower case (HTTP/2 requires it; the core folds HTTP/1.1 names).
///
/// Headers made in Swift are an array of fields. Headers read off the wire, and headers frozen to
/// be sent with many answers (``frozen()``), are one block in C form instead: a lookup compares
/// bytes and makes a String only for the value it returns, and sending copies nothing. The first
/// change to such headers turns the block into an array.
public struct HTTPHeaders: Sendable, Sequence, ExpressibleByDictionaryLiteral, Equatable {
    public typealias Element = (name: String, value: String)

    private enum Form: Sendable {
        case fields([Element])
        case wire(WireHeaders)
    }

    private var form: Form

    public init() { form = .fields([]) }

    public init(_ fields: [(String, String)]) {
        form = .fields(fields.map { (name: $0.0, value: $0.1) })
    }

    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }

    init(wire: WireHeaders) { form = .wire(wire) }

    /// The fields `range` of a request or response of the core, in one copy; none for an empty
    /// range (most answers have no trailers: no block for none).
    init(copying request: OpaquePointer, _ range: Range<Int>) {
        self = range.isEmpty ? HTTPHeaders() : HTTPHeaders(wire: WireHeaders.copy(request, range))
    }

    /// The first value of `name`, or nil.
    public subscript(name: String) -> String? {
        get {
            switch form {
            case .wire(let wire): return wire.value(of: name)
            case .fields(let fields):
                let count = name.utf8.count
                // names from the wire are lower case, and so are most names asked for: a plain
                // comparison first, then one without regard to case
                for i in fields.indices where fields[i].name.utf8.count == count {
                    if fields[i].name == name || Self.equalIgnoringCase(fields[i].name, name) { return fields[i].value }
                }
                return nil
            }
        }
        set {
            remove(name)
            if let newValue { add(name: name, value: newValue) }
        }
    }

    /// Adds a field, keeping any earlier one of the same name.
    public mutating func add(name: String, value: String) {
        withFields { $0.append((name: name, value: value)) }
    }

    /// Makes room for `count` fields in all, so that adding them allocates once.
    public mutating func reserveCapacity(_ count: Int) {
        withFields { $0.reserveCapacity(count) }
    }

    /// Removes every field named `name`.
    public mutating func remove(_ name: String) {
        if case .wire(let wire) = form, wire.value(of: name) == nil { return }
        withFields { $0.removeAll { Self.equalIgnoringCase($0.name, name) } }
    }

    /// Changes the fields as an array (a block in C form becomes one first).
    private mutating func withFields<R>(_ body: (inout [Element]) -> R) -> R {
        var fields: [Element]
        switch form {
        case .fields(let array): fields = array
        case .wire(let wire): fields = wire.elements
        }
        form = .fields([])  // `fields` is then the array's only reference: no copy to change it
        defer { form = .fields(fields) }
        return body(&fields)
    }

    /// ASCII case-insensitive comparison (header names are tokens), without allocating.
    package static func equalIgnoringCase(_ a: String, _ b: String) -> Bool {
        var i = a.utf8.makeIterator(), j = b.utf8.makeIterator()
        while true {
            switch (i.next(), j.next()) {
            case (nil, nil): return true
            case let (x?, y?): if !sameLetter(x, y) { return false }
            default: return false
            }
        }
    }

    /// The same for bytes (a header name from the wire against another).
    package static func equalIgnoringCase(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        for i in 0..<a.count where !sameLetter(a[i], b[i]) { return false }
        return true
    }

    /// Whether `string`'s UTF-8 is exactly `bytes` (a String made from bytes is contiguous; one
    /// that is not never matches, which callers take as "not known").
    package static func equal(_ string: String, _ bytes: UnsafeRawBufferPointer) -> Bool {
        string.utf8.count == bytes.count
            && string.utf8.withContiguousStorageIfAvailable { $0.elementsEqual(bytes) } == true
    }

    /// Two bytes of a token equal without regard to ASCII case.
    @inline(__always)
    static func sameLetter(_ x: UInt8, _ y: UInt8) -> Bool {
        x == y || (x | 0x20 == y | 0x20 && (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(x | 0x20))
    }

    /// These headers in C form, for headers made once and sent with many answers (a content
    /// type, a status trailer): sending them then copies nothing.
    public func frozen() -> HTTPHeaders {
        if case .wire = form { return self }
        return HTTPHeaders(wire: withCHeaders { headers, count in WireHeaders.copy(headers, count) })
    }

    public var count: Int {
        switch form {
        case .fields(let fields): fields.count
        case .wire(let wire): wire.count
        }
    }

    public var isEmpty: Bool { count == 0 }

    public func makeIterator() -> Iterator { Iterator(headers: self) }

    public struct Iterator: IteratorProtocol {
        let headers: HTTPHeaders
        var index = 0

        public mutating func next() -> Element? {
            defer { index += 1 }
            switch headers.form {
            case .fields(let fields): return index < fields.count ? fields[index] : nil
            case .wire(let wire): return index < wire.count ? wire.element(index) : nil
            }
        }
    }

    public var underestimatedCount: Int { count }

    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        lhs.count == rhs.count && lhs.elementsEqual(rhs) { $0.name == $1.name && $0.value == $1.value }
    }
}

extension HTTPHeaders {
    /// Calls `body` with each field's name and value as bytes, in order, making no String: for
    /// a reader that keeps few of the fields it looks at. The bytes are valid during the call only.
    package func forEachField(_ body: (_ name: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) -> Void) {
        switch form {
        case .wire(let wire):
            withExtendedLifetime(wire) {
                let fields = wire.headers
                for i in 0..<wire.count {
                    body(UnsafeRawBufferPointer(start: fields[i].name, count: fields[i].name_len),
                         UnsafeRawBufferPointer(start: fields[i].value, count: fields[i].value_len))
                }
            }
        case .fields(let fields):
            for field in fields {
                var name = field.name, value = field.value
                name.withUTF8 { name in value.withUTF8 { value in body(UnsafeRawBufferPointer(name), UnsafeRawBufferPointer(value)) } }
            }
        }
    }

    /// Calls `body` with the bytes of the first value of `name` (without regard to ASCII case),
    /// or nil if there is none, making no String. The bytes are valid during the call only.
    package func withValue<R>(of name: String, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
        switch form {
        case .wire(let wire): return withExtendedLifetime(wire) { wire.withValue(of: name, body) }
        case .fields:
            guard var value = self[name] else { return body(nil) }
            return value.withUTF8 { body(UnsafeRawBufferPointer($0)) }
        }
    }

    /// Calls `body` with the fields as C headers that point into one temporary buffer.
    func withCHeaders<R>(_ body: (UnsafePointer<mc_header_t>?, Int) -> R) -> R {
        let fields: [Element]
        switch form {
        case .wire(let wire): return body(wire.headers, wire.count)
        case .fields(let array): fields = array
        }
        if fields.isEmpty { return body(nil, 0) }
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
/// point to, in the same block as the object that owns them. Immutable once built.
struct WireHeaders: @unchecked Sendable {
    // @unchecked Sendable: the buffer is written only while it is made, read-only afterwards
    // (ManagedBuffer itself is never Sendable).
    private final class Buffer: ManagedBuffer<Int, mc_header_t> {}
    private let buffer: Buffer

    /// The entries (the bytes follow them), valid while this value lives.
    var headers: UnsafeMutablePointer<mc_header_t> { buffer.withUnsafeMutablePointerToElements { $0 } }
    /// How many entries.
    var count: Int { buffer.header }

    /// Room for `count` entries and `bytes` bytes of text after them, filled by `fill`.
    private init(_ count: Int, bytes: Int, _ fill: (UnsafeMutablePointer<mc_header_t>) -> Void) {
        let stride = MemoryLayout<mc_header_t>.stride
        buffer = unsafeDowncast(Buffer.create(minimumCapacity: count + (bytes + stride - 1) / stride) { _ in count }, to: Buffer.self)
        buffer.withUnsafeMutablePointerToElements(fill)
    }

    /// A copy of `source` (any pointers).
    static func copy(_ source: UnsafePointer<mc_header_t>?, _ count: Int) -> WireHeaders {
        var bytes = 0
        for i in 0..<count { bytes += source![i].name_len + source![i].value_len }
        return WireHeaders(count, bytes: bytes) { headers in
            var text = UnsafeMutableRawPointer(headers + count).assumingMemoryBound(to: CChar.self)
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
        }
    }

    /// The fields `range` of a request or response of the core, in one copy.
    static func copy(_ request: OpaquePointer, _ range: Range<Int>) -> WireHeaders {
        let count = max(0, min(range.count, mc_request_header_count(request) - range.lowerBound))
        let size = mc_request_headers_block_size(request, range.lowerBound, count)
        return WireHeaders(count, bytes: size - count * MemoryLayout<mc_header_t>.stride) { headers in
            mc_request_headers_block(request, range.lowerBound, count, headers)
        }
    }

    /// The value of the first field named `name` (without regard to ASCII case), or nil.
    func value(of name: String) -> String? {
        guard let field = field(named: name) else { return nil }
        return Self.string(field.value, field.value_len)
    }

    /// Calls `body` with the bytes of the value of the first field named `name`, or nil.
    func withValue<R>(of name: String, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
        guard let field = field(named: name) else { return body(nil) }
        return body(UnsafeRawBufferPointer(start: field.value, count: field.value_len))
    }

    /// The first field named `name` (without regard to ASCII case); its pointers are valid while
    /// this value lives.
    private func field(named name: String) -> mc_header_t? {
        // a native String or a literal lends its bytes without a copy of the String
        if let found = name.utf8.withContiguousStorageIfAvailable({ field(named: UnsafeRawBufferPointer($0)) }) { return found }
        var name = name
        return name.withUTF8 { field(named: UnsafeRawBufferPointer($0)) }
    }

    private func field(named query: UnsafeRawBufferPointer) -> mc_header_t? {
        let headers = self.headers, count = buffer.header
        for i in 0..<count where headers[i].name_len == query.count {
            let field = headers[i]
            if query.isEmpty || memcmp(field.name, query.baseAddress!, query.count) == 0
                || HTTPHeaders.equalIgnoringCase(UnsafeRawBufferPointer(start: field.name, count: query.count), query) {
                return field
            }
        }
        return nil
    }

    func element(_ i: Int) -> HTTPHeaders.Element {
        (name: Self.string(headers[i].name, headers[i].name_len), value: Self.string(headers[i].value, headers[i].value_len))
    }

    var elements: [HTTPHeaders.Element] { (0..<count).map(element) }

    /// The bytes as a String (invalid UTF-8 repaired). Values every request of a kind carries,
    /// longer than the 15 bytes a String holds inline, are given as the literal: no allocation.
    static func string(_ p: UnsafePointer<CChar>?, _ len: Int) -> String {
        guard let p, len > 0 else { return "" }
        if len > 15, let common = common(p, len) { return common }
        return String(decoding: UnsafeRawBufferPointer(start: p, count: len), as: UTF8.self)
    }

    private static func common(_ p: UnsafePointer<CChar>, _ len: Int) -> String? {
        func same(_ literal: StaticString) -> Bool { memcmp(p, literal.utf8Start, len) == 0 }
        switch len {
        case 16:
            if same("application/grpc") { return "application/grpc" }
            if same("application/json") { return "application/json" }
        case 20: if same("application/protobuf") { return "application/protobuf" }
        case 22: if same("application/grpc+proto") { return "application/grpc+proto" }
        case 24: if same("application/octet-stream") { return "application/octet-stream" }
        default: break
        }
        return nil
    }
}
