import Foundation
public import SwiftProtobuf

/// A codec that can carry protobuf messages (`SwiftProtobuf.Message`) as well as, possibly,
/// `Codable` values.
public protocol MessageCodec: Codec {
    func encode<M: SwiftProtobuf.Message>(message: M) throws -> [UInt8]
    func decode<M: SwiftProtobuf.Message>(message type: M.Type, from bytes: [UInt8]) throws -> M
}

extension MessageCodec {
    public var messageCodec: (any MessageCodec)? { self }
}

/// `application/protobuf` (also `application/x-protobuf`, and gRPC's `application/grpc+proto`):
/// the protobuf binary format. Carries `SwiftProtobuf.Message` types, and `[UInt8]` as the
/// message's bytes untouched (a handler of `[UInt8]` sees exactly what the caller sent: a proxy,
/// an echo, a message it decodes itself).
public struct ProtobufCodec: MessageCodec {
    public var contentType: String { "application/protobuf" }
    public init() {}

    public func encode<M: SwiftProtobuf.Message>(message: M) throws -> [UInt8] {
        try message.serializedBytes()
    }

    public func decode<M: SwiftProtobuf.Message>(message type: M.Type, from bytes: [UInt8]) throws -> M {
        try M(serializedBytes: bytes)
    }

    public func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        if T.self == [UInt8].self { return unsafeBitCast(value, to: [UInt8].self) }
        if let message = value as? any SwiftProtobuf.Message { return try message.serializedBytes() }
        throw CodecError("application/protobuf carries protobuf messages; \(T.self) is Codable, not a SwiftProtobuf.Message or [UInt8]")
    }

    public func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        if T.self == [UInt8].self { return unsafeBitCast(bytes, to: T.self) }
        if let messageType = type as? any SwiftProtobuf.Message.Type {
            return try messageType.init(serializedBytes: bytes) as! T
        }
        throw CodecError("application/protobuf carries protobuf messages; \(T.self) is Codable, not a SwiftProtobuf.Message or [UInt8]")
    }
}

/// Protobuf messages travel as JSON in protobuf's canonical JSON mapping (field names in
/// lowerCamelCase, 64-bit integers as strings).
extension JSONCodec: MessageCodec {
    public func encode<M: SwiftProtobuf.Message>(message: M) throws -> [UInt8] {
        try message.jsonUTF8Bytes()
    }

    public func decode<M: SwiftProtobuf.Message>(message type: M.Type, from bytes: [UInt8]) throws -> M {
        var options = JSONDecodingOptions()
        options.ignoreUnknownFields = true
        return try M(jsonUTF8Bytes: bytes.isEmpty ? Array("{}".utf8) : bytes, options: options)
    }
}
