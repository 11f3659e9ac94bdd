import Foundation

/// Turns values into bytes and back for one content type.
///
/// Threading: `encode` and `decode` are called from many tasks at once, on the event loops'
/// threads (handlers run there): they must be safe to call concurrently, must not block, and
/// should not suspend (they cannot: they are synchronous). A codec is found per request by its
/// content type (``Codecs``), so keep it a small value.
public protocol Codec: Sendable {
    /// The content type it serves, e.g. `application/json`.
    var contentType: String { get }
    func encode<T: Encodable>(_ value: T) throws -> [UInt8]
    func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T
    /// This codec as one that carries protobuf messages, or nil. A requirement rather than an
    /// `as? any MessageCodec` cast, which looks the conformance up on every call.
    var messageCodec: (any MessageCodec)? { get }
}

extension Codec {
    public var messageCodec: (any MessageCodec)? { nil }
}

/// `application/json`: a fast path for the common shapes, Foundation's JSON coders for the rest.
public struct JSONCodec: Codec {
    public var contentType: String { "application/json" }
    public init() {}

    // Foundation's coders are safe to share between threads once configured.
    private static let encoder = JSONEncoder()
    private static let decoder = JSONDecoder()

    /// Writes JSON directly (``StreamEncoder``); values it does not handle go through
    /// Foundation's encoder, with the same result.
    public func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        do {
            return try StreamEncoder.encode(value)
        } catch {
            return Array(try Self.encoder.encode(value))
        }
    }

    /// Reads from a one-pass tape (``TapeDecoder``); anything else, and every error, goes through
    /// Foundation's decoder, so results and error messages are Foundation's.
    public func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        do {
            return try TapeDecoder.decode(type, from: bytes)
        } catch {
            return try Self.decoder.decode(type, from: Data(bytes))
        }
    }
}

/// `application/octet-stream`: the body as it is. Works with `[UInt8]` and `Data` messages.
public struct BytesCodec: Codec {
    public var contentType: String { "application/octet-stream" }
    public init() {}

    public func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        if T.self == [UInt8].self { return unsafeBitCast(value, to: [UInt8].self) }
        if let data = value as? Data { return Array(data) }
        throw CodecError("application/octet-stream carries raw bytes; \(T.self) is not [UInt8] or Data")
    }

    public func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        if T.self == [UInt8].self { return unsafeBitCast(bytes, to: T.self) }
        if let value = Data(bytes) as? T { return value }
        throw CodecError("application/octet-stream carries raw bytes; \(T.self) is not [UInt8] or Data")
    }
}

/// A codec could not turn bytes into the expected type or back.
public struct CodecError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The codecs a server or client knows, by content type.
public struct Codecs: Sendable {
    // A handful of entries, looked up for every call: a scan comparing strings costs less than
    // hashing the content type (SipHash over its bytes) for a dictionary.
    private var byType: [(contentType: String, codec: any Codec)]

    /// JSON, protobuf (`application/protobuf`, `application/x-protobuf`) and raw bytes.
    public static let standard: Codecs = {
        var codecs = Codecs([JSONCodec(), ProtobufCodec(), BytesCodec()])
        codecs.register(ProtobufCodec(), for: "application/x-protobuf")
        return codecs
    }()

    public init(_ codecs: [any Codec]) {
        byType = []
        for codec in codecs { register(codec) }
    }

    /// Adds `codec` for `contentType` (its own by default), replacing any codec registered for it.
    public mutating func register(_ codec: any Codec, for contentType: String? = nil) {
        let type = contentType ?? codec.contentType
        if let i = byType.firstIndex(where: { $0.contentType == type }) {
            byType[i].codec = codec
        } else {
            byType.append((type, codec))
        }
    }

    private func exactly(_ contentType: String) -> (any Codec)? {
        for entry in byType where entry.contentType == contentType { return entry.codec }
        return nil
    }

    /// The codec for a `Content-Type` value (parameters ignored); nil if none. A missing
    /// content type means JSON.
    public func codec(for contentType: String?) -> (any Codec)? {
        guard let contentType, !contentType.isEmpty else { return exactly("application/json") }
        if let codec = exactly(contentType) { return codec }  // the common case: exact and bare
        let bare = contentType.split(separator: ";", maxSplits: 1).first.map {
            $0.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed()
        }
        return bare.flatMap { exactly(String($0).lowercased()) }
    }

    public var contentTypes: [String] { byType.map(\.contentType).sorted() }
}
