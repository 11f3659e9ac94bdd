import Foundation

/// go-micro's legacy request envelopes, which its clients send to nodes that do not register
/// `protocol=mucp` and which older clients send always:
///
/// - `application/json-rpc`: `{"method": "Service.Method", "params": [<request>], "id": <id>}`,
///   answered `{"id": <id>, "result": <answer>, "error": null}` (or `"result": null` and the error
///   as a string);
/// - `application/proto-rpc`: two frames, each a 4-byte big-endian length and its bytes: a
///   protobuf header `{1: service_method string, 2: seq fixed64}`, then the protobuf request;
///   answered with a header `{1: service_method, 2: seq, 3: error string}` and the answer.
///
/// The routing headers (`Micro-Endpoint`, `Micro-Method`) name the endpoint when present, else
/// the envelope's method does (go-micro's fallback for callers that send no `Micro-*` header).
/// A failure also travels as `Micro-Error`, as for every other call.
///
/// @unchecked Sendable: `contentType` is set once, before the envelope is shared.
final class LegacyEnvelope: @unchecked Sendable {
    enum Kind: Sendable {
        case jsonRPC, protoRPC

        var contentType: String { self == .jsonRPC ? "application/json-rpc" : "application/proto-rpc" }
    }

    let kind: Kind
    /// The method the envelope names ("" if none).
    let method: String
    /// json-rpc: the request's id as JSON text; proto-rpc: unused.
    let id: [UInt8]
    /// proto-rpc: the request's sequence number.
    let seq: UInt64
    /// The request inside the envelope.
    let message: [UInt8]
    /// The content type of the answer: the request's.
    private(set) var contentType: String

    private init(kind: Kind, method: String, id: [UInt8] = [], seq: UInt64 = 0, message: [UInt8]) {
        self.kind = kind
        self.contentType = kind.contentType
        self.method = method
        self.id = id
        self.seq = seq
        self.message = message
    }

    struct Malformed: Error, CustomStringConvertible {
        let description: String
    }

    /// Opens the envelope of a request body; the answer goes out as `contentType` (the
    /// envelope's own by default).
    static func open(_ body: [UInt8], as kind: Kind, contentType: String? = nil) throws(Malformed) -> LegacyEnvelope {
        let envelope = switch kind {
        case .jsonRPC: try openJSONRPC(body)
        case .protoRPC: try openProtoRPC(body)
        }
        if let contentType { envelope.contentType = contentType }
        return envelope
    }

    /// The answer in the envelope the request came in: `answer` (the encoded response), or
    /// `error` (a MicroError's JSON) when the call failed.
    func seal(answer: [UInt8], error: String? = nil) -> [UInt8] {
        switch kind {
        case .jsonRPC:
            var out = Array(#"{"id":"#.utf8) + (id.isEmpty ? Array("null".utf8) : id)
            if let error {
                out += Array(#","result":null,"error":"#.utf8) + Self.jsonString(error) + [UInt8(ascii: "}")]
            } else {
                out += Array(#","result":"#.utf8) + (answer.isEmpty ? Array("null".utf8) : answer) + Array(#","error":null}"#.utf8)
            }
            return out
        case .protoRPC:
            var header = ProtoWire.string(field: 1, method) + ProtoWire.fixed64(field: 2, seq)
            if let error { header += ProtoWire.string(field: 3, error) }
            return ProtoWire.frame(header) + ProtoWire.frame(error == nil ? answer : [])
        }
    }

    private static func jsonString(_ text: String) -> [UInt8] {
        // a String encodes as a JSON string whatever it holds
        (try? JSONSerialization.data(withJSONObject: text, options: [.fragmentsAllowed])).map { Array($0) } ?? Array(#""""#.utf8)
    }

    private static func openJSONRPC(_ body: [UInt8]) throws(Malformed) -> LegacyEnvelope {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed]),
              let request = object as? [String: Any] else {
            throw Malformed(description: "a json-rpc request is a JSON object {\"method\", \"params\", \"id\"}")
        }
        let method = request["method"] as? String ?? ""
        if request["method"] != nil && request["method"] as? String == nil {
            throw Malformed(description: "json-rpc \"method\" must be a string")
        }
        var message = Array("{}".utf8)
        switch request["params"] {
        case nil, is NSNull: break
        case let params as [Any]:
            if let first = params.first {
                guard let data = try? JSONSerialization.data(withJSONObject: first, options: [.fragmentsAllowed]) else {
                    throw Malformed(description: "json-rpc \"params\" cannot be read")
                }
                message = Array(data)
            }
        default:
            throw Malformed(description: "json-rpc \"params\" must be an array holding the request")
        }
        var id: [UInt8] = []
        if let value = request["id"], !(value is NSNull) {
            guard value is String || value is NSNumber,
                  let data = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed]) else {
                throw Malformed(description: "json-rpc \"id\" must be a number or a string")
            }
            id = Array(data)
        }
        return LegacyEnvelope(kind: .jsonRPC, method: method, id: id, message: message)
    }

    private static func openProtoRPC(_ body: [UInt8]) throws(Malformed) -> LegacyEnvelope {
        var offset = 0
        let header = try ProtoWire.unframe(body, &offset, what: "header")
        let message = offset == body.count ? [] : try ProtoWire.unframe(body, &offset, what: "request")
        guard offset == body.count else { throw Malformed(description: "proto-rpc: \(body.count - offset) bytes after the request frame") }
        var method = "", seq: UInt64 = 0
        try ProtoWire.fields(header) { field, value in
            switch (field, value) {
            case (1, .bytes(let bytes)): method = String(decoding: bytes, as: UTF8.self)
            case (2, .fixed64(let number)): seq = number
            default: break  // unknown fields are skipped, as protobuf does
            }
        }
        return LegacyEnvelope(kind: .protoRPC, method: method, seq: seq, message: message)
    }
}

/// The few protobuf wire pieces proto-rpc's envelope needs.
enum ProtoWire {
    enum Value {
        case varint(UInt64), fixed64(UInt64), bytes(ArraySlice<UInt8>), fixed32(UInt32)
    }

    static func frame(_ bytes: [UInt8]) -> [UInt8] {
        let n = UInt32(truncatingIfNeeded: bytes.count)
        return [UInt8(truncatingIfNeeded: n >> 24), UInt8(truncatingIfNeeded: n >> 16), UInt8(truncatingIfNeeded: n >> 8),
                UInt8(truncatingIfNeeded: n)] + bytes
    }

    static func unframe(_ body: [UInt8], _ offset: inout Int, what: String) throws(LegacyEnvelope.Malformed) -> [UInt8] {
        guard body.count - offset >= 4 else { throw .init(description: "proto-rpc: the \(what) frame's length is cut short") }
        let length = Int(body[offset]) << 24 | Int(body[offset + 1]) << 16 | Int(body[offset + 2]) << 8 | Int(body[offset + 3])
        offset += 4
        guard body.count - offset >= length else {
            throw .init(description: "proto-rpc: the \(what) frame says \(length) bytes, \(body.count - offset) follow")
        }
        defer { offset += length }
        return Array(body[offset..<(offset + length)])
    }

    static func string(field: UInt64, _ text: String) -> [UInt8] {
        let bytes = Array(text.utf8)
        return varint(field << 3 | 2) + varint(UInt64(bytes.count)) + bytes
    }

    static func fixed64(field: UInt64, _ value: UInt64) -> [UInt8] {
        varint(field << 3 | 1) + (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
    }

    static func varint(_ value: UInt64) -> [UInt8] {
        var value = value, out: [UInt8] = []
        while value >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        out.append(UInt8(value))
        return out
    }

    /// Calls `visit` with each field of a message; throws on a malformed one.
    static func fields(_ message: [UInt8], _ visit: (UInt64, Value) -> Void) throws(LegacyEnvelope.Malformed) {
        var i = 0
        func readVarint() throws(LegacyEnvelope.Malformed) -> UInt64 {
            var value: UInt64 = 0
            for shift in stride(from: 0, to: 64, by: 7) {
                guard i < message.count else { throw .init(description: "proto-rpc: a varint is cut short") }
                let byte = message[i]
                i += 1
                value |= UInt64(byte & 0x7f) << UInt64(shift)
                if byte & 0x80 == 0 { return value }
            }
            throw .init(description: "proto-rpc: a varint is longer than 10 bytes")
        }
        func take(_ n: Int) throws(LegacyEnvelope.Malformed) -> ArraySlice<UInt8> {
            guard n >= 0, message.count - i >= n else { throw .init(description: "proto-rpc: a field is cut short") }
            defer { i += n }
            return message[i..<(i + n)]
        }
        func littleEndian(_ bytes: ArraySlice<UInt8>) -> UInt64 {
            bytes.reversed().reduce(0) { $0 << 8 | UInt64($1) }
        }
        while i < message.count {
            let key = try readVarint()
            let field = key >> 3
            switch key & 7 {
            case 0: visit(field, .varint(try readVarint()))
            case 1: visit(field, .fixed64(littleEndian(try take(8))))
            case 2:
                let length = try readVarint()
                guard length <= UInt64(message.count) else { throw .init(description: "proto-rpc: a field is cut short") }
                visit(field, .bytes(try take(Int(length))))
            case 5: visit(field, .fixed32(UInt32(littleEndian(try take(4)))))
            default: throw .init(description: "proto-rpc: wire type \(key & 7) is not one a header uses")
            }
        }
    }
}
