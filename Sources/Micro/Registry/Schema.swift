import Foundation

/// Describes a `Decodable` type as a ``Value`` tree by decoding it from a recorder that answers
/// every request with an empty value and notes which fields the type asks for.
enum Schema {
    static func describe<T: Decodable>(_ type: T.Type, name: String) -> Value {
        if let leaf = leafName(type) { return Value(name: name, type: leaf) }
        let recorder = Recorder(depth: 0)
        _ = try? T(from: recorder)
        let fields = recorder.fields.withLock { $0 }
        return Value(name: name, type: typeName(type), values: fields.isEmpty ? nil : fields)
    }

    static func typeName(_ type: Any.Type) -> String {
        if let leaf = leafName(type) { return leaf }
        if let array = type as? any SchemaArray.Type { return "[]" + typeName(array.elementType) }
        if let map = type as? any SchemaDictionary.Type { return "map[\(typeName(map.keyType))]\(typeName(map.valueType))" }
        return String(describing: type)
    }

    /// go-micro's names for scalars, so that `micro describe` reads the same for Go services.
    static func leafName(_ type: Any.Type) -> String? {
        switch type {
        case is String.Type: "string"
        case is Bool.Type: "bool"
        case is Int.Type, is Int64.Type: "int64"
        case is Int32.Type, is Int16.Type, is Int8.Type: "int32"
        case is UInt.Type, is UInt64.Type: "uint64"
        case is UInt32.Type, is UInt16.Type, is UInt8.Type: "uint32"
        case is Double.Type: "double"
        case is Float.Type: "float"
        case is Data.Type, is [UInt8].Type: "bytes"
        default: nil
        }
    }
}

import Synchronization

/// Collections name their element types the way go-micro does: `[]string`, `map[string]int64`.
protocol SchemaArray { static var elementType: Any.Type { get } }
extension Array: SchemaArray { static var elementType: Any.Type { Element.self } }
protocol SchemaDictionary {
    static var keyType: Any.Type { get }
    static var valueType: Any.Type { get }
}
extension Dictionary: SchemaDictionary {
    static var keyType: Any.Type { Key.self }
    static var valueType: Any.Type { Value.self }
}

private final class Recorder: Decoder, Sendable {
    let depth: Int
    let fields = Mutex<[Value]>([])
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(depth: Int) { self.depth = depth }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        KeyedDecodingContainer(Keyed<Key>(recorder: self))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer { Empty() }
    func singleValueContainer() throws -> any SingleValueDecodingContainer { Single() }

    func record<T: Decodable>(_ type: T.Type, _ key: String) -> T? {
        if let leaf = Schema.leafName(type) {
            fields.withLock { $0.append(Value(name: key, type: leaf)) }
        } else {
            // nested types are described too, to a sane depth (recursive types stop there)
            let nested = Recorder(depth: depth + 1)
            // a nested type made only of fields the recorder can fill comes back whole, so the
            // outer type's decoding goes on to its next fields
            let instance = depth < 8 ? try? T(from: nested) : nil
            let values = nested.fields.withLock { $0 }
            fields.withLock { $0.append(Value(name: key, type: Schema.typeName(type), values: values.isEmpty ? nil : values)) }
            return instance
        }
        return Self.empty(type)
    }

    /// An empty instance for types that are easy to make, so decoding can go on.
    static func empty<T>(_ type: T.Type) -> T? {
        switch type {
        case is String.Type: "" as? T
        case is Bool.Type: false as? T
        case is Int.Type: 0 as? T
        case is Int64.Type: Int64(0) as? T
        case is Int32.Type: Int32(0) as? T
        case is UInt.Type: UInt(0) as? T
        case is UInt64.Type: UInt64(0) as? T
        case is UInt32.Type: UInt32(0) as? T
        case is Double.Type: 0.0 as? T
        case is Float.Type: Float(0) as? T
        default: nil
        }
    }

    struct Keyed<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let recorder: Recorder
        var codingPath: [any CodingKey] { [] }
        var allKeys: [Key] { [] }
        func contains(_ key: Key) -> Bool { true }
        func decodeNil(forKey key: Key) throws -> Bool { false }
        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
            guard let value = recorder.record(type, key.stringValue) else { throw Stop() }
            return value
        }
        func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
            _ = recorder.record(type, key.stringValue)
            return nil
        }
        func nestedContainer<N: CodingKey>(keyedBy type: N.Type, forKey key: Key) throws -> KeyedDecodingContainer<N> {
            KeyedDecodingContainer(Keyed<N>(recorder: Recorder(depth: recorder.depth + 1)))
        }
        func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer { Empty() }
        func superDecoder() throws -> any Decoder { recorder }
        func superDecoder(forKey key: Key) throws -> any Decoder { recorder }
    }

    /// Arrays decode as empty.
    struct Empty: UnkeyedDecodingContainer {
        var codingPath: [any CodingKey] { [] }
        var count: Int? { 0 }
        var isAtEnd: Bool { true }
        var currentIndex: Int { 0 }
        mutating func decodeNil() throws -> Bool { true }
        mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { throw Stop() }
        mutating func nestedContainer<N: CodingKey>(keyedBy type: N.Type) throws -> KeyedDecodingContainer<N> { throw Stop() }
        mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer { throw Stop() }
        mutating func superDecoder() throws -> any Decoder { throw Stop() }
    }

    struct Single: SingleValueDecodingContainer {
        var codingPath: [any CodingKey] { [] }
        func decodeNil() -> Bool { false }
        func decode<T: Decodable>(_ type: T.Type) throws -> T {
            guard let value = Recorder.empty(type) else { throw Stop() }
            return value
        }
    }

    /// Ends a description early (an enum that rejects the empty value, say): what was seen stays.
    struct Stop: Error {}
}
