import Foundation

/// A `Decoder` over a ``JSONTape``. It decodes the common shapes (structs of strings, numbers,
/// booleans, arrays, dictionaries, nested values) without building an intermediate tree; anything
/// it does not handle, and every error, is answered by throwing ``TapeDecoder/Unsupported``, and
/// ``JSONCodec`` then decodes with Foundation's `JSONDecoder`: same results and same errors, only
/// faster on the common path.
struct TapeDecoder: Decoder {
    struct Unsupported: Error {}

    // The tape is held by value (its two arrays), not in an object of its own: a decoder and
    // its containers are made a few times per value, and a retain each costs less than the
    // allocation an object per decode would.
    let tape: JSONTape
    let index: Int
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    var entry: JSONTape.Entry { tape.entries[index] }

    static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        let tape: JSONTape
        do { tape = try JSONTape(bytes) } catch { throw Unsupported() }
        return try TapeDecoder(tape: tape, index: 0).decodeValue(T.self)
    }

    func decodeValue<T: Decodable>(_ type: T.Type) throws -> T {
        // metatype comparisons are pointer compares; `is` checks would each call the runtime
        if T.self == String.self { return unsafeBitCast(try single().decode(String.self), to: T.self) }
        if T.self == Int.self { return unsafeBitCast(try single().decode(Int.self), to: T.self) }
        if T.self == Bool.self { return unsafeBitCast(try single().decode(Bool.self), to: T.self) }
        if T.self == Double.self { return unsafeBitCast(try single().decode(Double.self), to: T.self) }
        if T.self == Data.self {
            // Foundation's default: base64
            guard let data = Data(base64Encoded: try single().decode(String.self)) else { throw Unsupported() }
            return unsafeBitCast(data, to: T.self)
        }
        if T.self == URL.self {
            guard let url = URL(string: try single().decode(String.self)) else { throw Unsupported() }
            return unsafeBitCast(url, to: T.self)
        }
        if T.self == Decimal.self { throw Unsupported() }
        return try T(from: self)
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard entry.kind == .object else { throw Unsupported() }
        return KeyedDecodingContainer(Keyed<Key>(tape: tape, object: index))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard entry.kind == .array else { throw Unsupported() }
        return Unkeyed(tape: tape, array: index)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { single() }

    func single() -> Single { Single(tape: tape, index: index) }

    // MARK: containers

    struct Keyed<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let tape: JSONTape
        let object: Int
        var codingPath: [any CodingKey] { [] }

        var allKeys: [Key] {
            var keys: [Key] = []
            forEachMember { key, _ in
                if let k = Key(stringValue: tape.string(tape.entries[key])) { keys.append(k) }
                return false
            }
            return keys
        }

        /// Calls `body(keyIndex, valueIndex)` per member until it returns true.
        private func forEachMember(_ body: (Int, Int) -> Bool) {
            let entries = tape.entries
            var k = object + 1
            let end = Int(entries[object].next)
            while k < end {
                if body(k, k + 1) { return }
                k = Int(entries[k + 1].next)
            }
        }

        /// The value entry of `key` (the last one if repeated, as Foundation does).
        private func find(_ key: Key) -> Int? {
            var found: Int?
            let name = key.stringValue
            forEachMember { k, v in
                if tape.stringEquals(tape.entries[k], name) { found = v }
                return false
            }
            return found
        }

        private func value(_ key: Key) throws -> Int {
            guard let v = find(key) else { throw Unsupported() }
            return v
        }

        func contains(_ key: Key) -> Bool { find(key) != nil }

        func decodeNil(forKey key: Key) throws -> Bool {
            tape.entries[try value(key)].kind == .null
        }

        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
            try TapeDecoder(tape: tape, index: try value(key)).decodeValue(T.self)
        }

        func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
            guard let v = find(key), tape.entries[v].kind != .null else { return nil }
            return try TapeDecoder(tape: tape, index: v).decodeValue(T.self)
        }

        func decode(_ type: String.Type, forKey key: Key) throws -> String {
            try Single(tape: tape, index: try value(key)).decode(String.self)
        }

        func decode(_ type: Int.Type, forKey key: Key) throws -> Int {
            try Single(tape: tape, index: try value(key)).decode(Int.self)
        }

        func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool {
            try Single(tape: tape, index: try value(key)).decode(Bool.self)
        }

        func decode(_ type: Double.Type, forKey key: Key) throws -> Double {
            try Single(tape: tape, index: try value(key)).decode(Double.self)
        }

        func nestedContainer<N: CodingKey>(keyedBy type: N.Type, forKey key: Key) throws -> KeyedDecodingContainer<N> {
            try TapeDecoder(tape: tape, index: try value(key)).container(keyedBy: N.self)
        }

        func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
            try TapeDecoder(tape: tape, index: try value(key)).unkeyedContainer()
        }

        func superDecoder() throws -> any Decoder { throw Unsupported() }
        func superDecoder(forKey key: Key) throws -> any Decoder { throw Unsupported() }
    }

    struct Unkeyed: UnkeyedDecodingContainer {
        let tape: JSONTape
        let array: Int
        var position: Int
        var currentIndex = 0
        var codingPath: [any CodingKey] { [] }
        var count: Int? { Int(tape.entries[array].count) }
        var isAtEnd: Bool { currentIndex >= count! }

        init(tape: JSONTape, array: Int) {
            self.tape = tape
            self.array = array
            self.position = array + 1
        }

        private mutating func advance() throws -> Int {
            guard !isAtEnd else { throw Unsupported() }
            let here = position
            position = Int(tape.entries[here].next)
            currentIndex += 1
            return here
        }

        mutating func decodeNil() throws -> Bool {
            guard !isAtEnd else { throw Unsupported() }
            if tape.entries[position].kind == .null {
                _ = try advance()
                return true
            }
            return false
        }

        mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
            let here = try advance()
            return try TapeDecoder(tape: tape, index: here).decodeValue(T.self)
        }

        mutating func nestedContainer<N: CodingKey>(keyedBy type: N.Type) throws -> KeyedDecodingContainer<N> {
            try TapeDecoder(tape: tape, index: try advance()).container(keyedBy: N.self)
        }

        mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
            try TapeDecoder(tape: tape, index: try advance()).unkeyedContainer()
        }

        mutating func superDecoder() throws -> any Decoder { throw Unsupported() }
    }

    struct Single: SingleValueDecodingContainer {
        let tape: JSONTape
        let index: Int
        var codingPath: [any CodingKey] { [] }
        var entry: JSONTape.Entry { tape.entries[index] }

        func decodeNil() -> Bool { entry.kind == .null }

        func decode(_ type: Bool.Type) throws -> Bool {
            switch entry.kind {
            case .true: return true
            case .false: return false
            default: throw Unsupported()
            }
        }

        func decode(_ type: String.Type) throws -> String {
            guard entry.kind == .string || entry.kind == .escapedString else { throw Unsupported() }
            return tape.string(entry)
        }

        /// Integers written as plain digits; anything else (exponents, fractions) goes the slow way.
        func integer() throws -> Int64 {
            guard entry.kind == .number else { throw Unsupported() }
            return try tape.withNumber(entry) { digits throws(Unsupported) -> Int64 in
                var i = 0
                let negative = digits.first == UInt8(ascii: "-")
                if negative { i = 1 }
                var value: Int64 = 0
                while i < digits.count {
                    let d = digits[i]
                    guard d >= 0x30, d <= 0x39 else { throw Unsupported() }
                    let (m, o1) = value.multipliedReportingOverflow(by: 10)
                    let (s, o2) = negative ? m.subtractingReportingOverflow(Int64(d - 0x30)) : m.addingReportingOverflow(Int64(d - 0x30))
                    guard !o1, !o2 else { throw Unsupported() }
                    value = s
                    i += 1
                }
                return value
            }
        }

        func float() throws -> Double {
            guard entry.kind == .number else { throw Unsupported() }
            let text = tape.withNumber(entry) { String(decoding: $0, as: UTF8.self) }
            guard let value = Double(text), value.isFinite else { throw Unsupported() }
            return value
        }

        private func exact<I: FixedWidthInteger>(_ type: I.Type) throws -> I {
            guard let value = I(exactly: try integer()) else { throw Unsupported() }
            return value
        }

        func decode(_ type: Double.Type) throws -> Double { try float() }
        func decode(_ type: Float.Type) throws -> Float {
            let value = try float()
            guard abs(value) <= Double(Float.greatestFiniteMagnitude) else { throw Unsupported() }
            return Float(value)
        }
        func decode(_ type: Int.Type) throws -> Int { try exact(Int.self) }
        func decode(_ type: Int8.Type) throws -> Int8 { try exact(Int8.self) }
        func decode(_ type: Int16.Type) throws -> Int16 { try exact(Int16.self) }
        func decode(_ type: Int32.Type) throws -> Int32 { try exact(Int32.self) }
        func decode(_ type: Int64.Type) throws -> Int64 { try integer() }
        func decode(_ type: UInt.Type) throws -> UInt { try exact(UInt.self) }
        func decode(_ type: UInt8.Type) throws -> UInt8 { try exact(UInt8.self) }
        func decode(_ type: UInt16.Type) throws -> UInt16 { try exact(UInt16.self) }
        func decode(_ type: UInt32.Type) throws -> UInt32 { try exact(UInt32.self) }
        func decode(_ type: UInt64.Type) throws -> UInt64 { try exact(UInt64.self) }

        func decode<T: Decodable>(_ type: T.Type) throws -> T {
            try TapeDecoder(tape: tape, index: index).decodeValue(T.self)
        }
    }
}
