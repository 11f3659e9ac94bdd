import Foundation

/// An `Encoder` that writes JSON bytes as the value encodes itself, with no intermediate tree.
/// Codable's containers do not say when they end, so a container is closed when its owner's
/// `encode(to:)` returns or when its parent writes again; a value that writes out of that order
/// (into a container already closed, through a super encoder, a `Decimal`) marks the writer
/// failed, and ``JSONCodec`` encodes it again with Foundation's `JSONEncoder`.
struct StreamEncoder: Encoder {
    struct Unsupported: Error {}

    /// The bytes written so far; also the top value's ``Container`` (one object per encode, not two).
    final class Writer: Container {
        // Written once per token: dynamic exclusivity checks on every append cost more than the
        // append. A writer belongs to one encode call on one thread and never overlaps itself.
        @exclusivity(unchecked) var bytes: [UInt8] = []
        @exclusivity(unchecked) var failed = false

        override init() {
            super.init()
            bytes.reserveCapacity(128)
        }

        func string(_ s: String) {
            bytes.append(UInt8(ascii: "\""))
            var s = s
            s.withUTF8 { utf8 in
                var clean = 0  // start of the run not yet copied
                for (i, c) in utf8.enumerated() where c < 0x20 || c == UInt8(ascii: "\"") || c == UInt8(ascii: "\\") {
                    bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[clean..<i]))
                    clean = i + 1
                    switch c {
                    case UInt8(ascii: "\""): bytes += [0x5C, 0x22]
                    case UInt8(ascii: "\\"): bytes += [0x5C, 0x5C]
                    case 0x0A: bytes += [0x5C, UInt8(ascii: "n")]
                    case 0x0D: bytes += [0x5C, UInt8(ascii: "r")]
                    case 0x09: bytes += [0x5C, UInt8(ascii: "t")]
                    case 0x08: bytes += [0x5C, UInt8(ascii: "b")]
                    case 0x0C: bytes += [0x5C, UInt8(ascii: "f")]
                    default:
                        let hex: [UInt8] = Array("0123456789abcdef".utf8)
                        bytes += [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(c >> 4)], hex[Int(c & 0xF)]]
                    }
                }
                bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[clean...]))
            }
            bytes.append(UInt8(ascii: "\""))
        }

        func integer<I: BinaryInteger>(_ value: I) {
            if value == 0 {
                bytes.append(0x30)
                return
            }
            var magnitude = value.magnitude
            var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                         UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
                (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
            var n = 0
            withUnsafeMutableBytes(of: &digits) { d in
                while magnitude > 0 {
                    d[19 - n] = 0x30 + UInt8(magnitude % 10)
                    magnitude /= 10
                    n += 1
                }
                if value < 0 { bytes.append(UInt8(ascii: "-")) }
                bytes.append(contentsOf: d[(20 - n)...])
            }
        }

        func double(_ value: Double) {
            guard value.isFinite else {
                failed = true
                return
            }
            bytes.append(contentsOf: value.description.utf8)
        }

        func raw(_ text: StaticString) {
            bytes.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
        }
    }

    /// One container's progress.
    class Container {
        enum Kind { case none, keyed, unkeyed, single }
        @exclusivity(unchecked) var kind = Kind.none
        @exclusivity(unchecked) var count = 0
        @exclusivity(unchecked) var closed = false
        @exclusivity(unchecked) var child: Container?
    }

    let writer: Writer
    let state: Container
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let writer = Writer()
        try encodeValue(value, writer, state: writer)
        guard !writer.failed else { throw Unsupported() }
        return writer.bytes
    }

    /// Writes `value`; `state` is its container's, a new one unless given.
    static func encodeValue<T: Encodable>(_ value: T, _ writer: Writer, state: Container? = nil) throws {
        // metatype comparisons are pointer compares; `as?` casts would each call the runtime
        if T.self == String.self { return writer.string(unsafeBitCast(value, to: String.self)) }
        if T.self == Int.self { return writer.integer(unsafeBitCast(value, to: Int.self)) }
        if T.self == Bool.self { return unsafeBitCast(value, to: Bool.self) ? writer.raw("true") : writer.raw("false") }
        if T.self == Double.self { return writer.double(unsafeBitCast(value, to: Double.self)) }
        if T.self == Data.self { return writer.string(unsafeBitCast(value, to: Data.self).base64EncodedString()) }  // Foundation's default
        if T.self == URL.self { return writer.string(unsafeBitCast(value, to: URL.self).absoluteString) }
        if T.self == Decimal.self {
            writer.failed = true
            return
        }
        do {
            let state = state ?? Container()
            try value.encode(to: StreamEncoder(writer: writer, state: state))
            close(state, writer)
            if state.kind == .none { writer.raw("{}") }  // Foundation writes an empty object
        }
    }

    /// Ends a container and any child still open.
    static func close(_ state: Container, _ writer: Writer) {
        if let child = state.child {
            close(child, writer)
            state.child = nil
        }
        guard !state.closed else { return }
        state.closed = true
        switch state.kind {
        case .keyed: writer.raw("}")
        case .unkeyed: writer.raw("]")
        case .single:
            if state.count == 0 { writer.failed = true }
        case .none: break
        }
    }

    /// Prepares `state` for one more write: closes an open child, checks the order.
    static func prepare(_ state: Container, _ writer: Writer) -> Bool {
        if let child = state.child {
            close(child, writer)
            state.child = nil
        }
        if state.closed {
            writer.failed = true
            return false
        }
        return true
    }

    func open(_ kind: Container.Kind) -> Bool {
        switch (state.kind, kind) {
        case (.none, .keyed): writer.raw("{")
        case (.none, .unkeyed): writer.raw("[")
        case (.none, .single): break
        case (.keyed, .keyed) where !state.closed: return true
        default:
            writer.failed = true
            return false
        }
        state.kind = kind
        return true
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        _ = open(.keyed)
        return KeyedEncodingContainer(Keyed<Key>(writer: writer, state: state))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        _ = open(.unkeyed)
        return Unkeyed(writer: writer, state: state)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        _ = open(.single)
        return Single(writer: writer, state: state)
    }

    // MARK: containers

    struct Keyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let writer: Writer
        let state: Container
        var codingPath: [any CodingKey] { [] }

        private func key(_ key: Key) -> Bool {
            guard state.kind == .keyed, StreamEncoder.prepare(state, writer) else { return false }
            if state.count > 0 { writer.raw(",") }
            state.count += 1
            writer.string(key.stringValue)
            writer.raw(":")
            return true
        }

        mutating func encodeNil(forKey k: Key) throws { if key(k) { writer.raw("null") } }
        mutating func encode(_ value: String, forKey k: Key) throws { if key(k) { writer.string(value) } }
        mutating func encode(_ value: Int, forKey k: Key) throws { if key(k) { writer.integer(value) } }
        mutating func encode(_ value: Bool, forKey k: Key) throws { if key(k) { value ? writer.raw("true") : writer.raw("false") } }
        mutating func encode(_ value: Double, forKey k: Key) throws { if key(k) { writer.double(value) } }

        mutating func encode<T: Encodable>(_ value: T, forKey k: Key) throws {
            if key(k) { try StreamEncoder.encodeValue(value, writer) }
        }

        mutating func nestedContainer<N: CodingKey>(keyedBy keyType: N.Type, forKey k: Key) -> KeyedEncodingContainer<N> {
            let child = Container()
            if key(k) {
                state.child = child
                _ = StreamEncoder(writer: writer, state: child).open(.keyed)
            }
            return KeyedEncodingContainer(Keyed<N>(writer: writer, state: child))
        }

        mutating func nestedUnkeyedContainer(forKey k: Key) -> any UnkeyedEncodingContainer {
            let child = Container()
            if key(k) {
                state.child = child
                _ = StreamEncoder(writer: writer, state: child).open(.unkeyed)
            }
            return Unkeyed(writer: writer, state: child)
        }

        mutating func superEncoder() -> any Encoder {
            writer.failed = true
            return StreamEncoder(writer: writer, state: Container())
        }

        mutating func superEncoder(forKey key: Key) -> any Encoder { superEncoder() }
    }

    struct Unkeyed: UnkeyedEncodingContainer {
        let writer: Writer
        let state: Container
        var codingPath: [any CodingKey] { [] }
        var count: Int { state.count }

        private func next() -> Bool {
            guard state.kind == .unkeyed, StreamEncoder.prepare(state, writer) else { return false }
            if state.count > 0 { writer.raw(",") }
            state.count += 1
            return true
        }

        mutating func encodeNil() throws { if next() { writer.raw("null") } }
        mutating func encode(_ value: String) throws { if next() { writer.string(value) } }
        mutating func encode(_ value: Int) throws { if next() { writer.integer(value) } }
        mutating func encode<T: Encodable>(_ value: T) throws {
            if next() { try StreamEncoder.encodeValue(value, writer) }
        }

        mutating func nestedContainer<N: CodingKey>(keyedBy keyType: N.Type) -> KeyedEncodingContainer<N> {
            let child = Container()
            if next() {
                state.child = child
                _ = StreamEncoder(writer: writer, state: child).open(.keyed)
            }
            return KeyedEncodingContainer(Keyed<N>(writer: writer, state: child))
        }

        mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
            let child = Container()
            if next() {
                state.child = child
                _ = StreamEncoder(writer: writer, state: child).open(.unkeyed)
            }
            return Unkeyed(writer: writer, state: child)
        }

        mutating func superEncoder() -> any Encoder {
            writer.failed = true
            return StreamEncoder(writer: writer, state: Container())
        }
    }

    struct Single: SingleValueEncodingContainer {
        let writer: Writer
        let state: Container
        var codingPath: [any CodingKey] { [] }

        private func once() -> Bool {
            guard state.kind == .single, state.count == 0, !state.closed else {
                writer.failed = true
                return false
            }
            state.count = 1
            return true
        }

        mutating func encodeNil() throws { if once() { writer.raw("null") } }
        mutating func encode(_ value: Bool) throws { if once() { value ? writer.raw("true") : writer.raw("false") } }
        mutating func encode(_ value: String) throws { if once() { writer.string(value) } }
        mutating func encode(_ value: Double) throws { if once() { writer.double(value) } }
        mutating func encode(_ value: Float) throws { if once() { writer.double(Double(value)) } }
        mutating func encode(_ value: Int) throws { if once() { writer.integer(value) } }
        mutating func encode(_ value: Int8) throws { if once() { writer.integer(value) } }
        mutating func encode(_ value: Int16) throws { if once() { writer.integer(value) } }
        mutating func encode(_ value: Int32) throws { if once() { writer.integer(value) } }
        mutating func encode(_ value: Int64) throws { if once() { writer.integer(value) } }
        mutating func encode(_ value: UInt) throws { if once() { writer.integer(value) } }
        mutating func encode(_ value: UInt8) throws { if once() { writer.integer(value) } }
        mutating func encode(_ value: UInt16) throws { if once() { writer.integer(value) } }
        mutating func encode(_ value: UInt32) throws { if once() { writer.integer(value) } }
        mutating func encode(_ value: UInt64) throws { if once() { writer.integer(value) } }
        mutating func encode<T: Encodable>(_ value: T) throws {
            if once() { try StreamEncoder.encodeValue(value, writer) }
        }
    }
}
