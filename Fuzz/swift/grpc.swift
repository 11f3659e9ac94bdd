import Foundation

// libFuzzer target `grpc`: the gRPC message deframer, gzip inflation (bounded), the text
// fields of gRPC headers (grpc-message, grpc-timeout) and go-micro's legacy request envelopes
// (json-rpc, proto-rpc) on arbitrary bytes. Nothing may crash, no inflated message may exceed
// its limit, and an envelope that opens seals an answer that opens the same way.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let messages = try? GRPCFraming.messages(in: bytes) {
        var total = 0
        for message in messages {
            total += message.bytes.count + 5
            if message.compressed, let inflated = try? Gzip.decompress(message.bytes, limit: 1 << 20) {
                precondition(inflated.count <= 1 << 20, "inflated beyond the limit")
            }
        }
        precondition(total == bytes.count, "framing lost bytes")
        // framing again gives the same bytes
        var again: [UInt8] = []
        for message in messages { again += GRPCFraming.frame(Array(message.bytes), compressed: message.compressed) }
        precondition(again == bytes, "frame(messages(x)) != x")
    }
    let text = String(decoding: bytes, as: UTF8.self)
    _ = GRPCText.decodeMessage(text)
    precondition(GRPCText.decodeMessage(GRPCText.encodeMessage(text)) == text, "grpc-message round trip")
    _ = GRPCText.parseTimeout(text)
    if let ns = GRPCText.parseTimeoutNanoseconds(text) { precondition(ns >= 0, "negative timeout") }
    // go-micro's legacy envelopes
    if let json = try? LegacyEnvelope.open(bytes, as: .jsonRPC) {
        let sealed = json.seal(answer: json.message)
        precondition((try? JSONSerialization.jsonObject(with: Data(sealed))) != nil, "a sealed json-rpc answer is not JSON")
        _ = json.seal(answer: [], error: text)
    }
    if let proto = try? LegacyEnvelope.open(bytes, as: .protoRPC) {
        // the answer's header carries the method and sequence number back, readable as protobuf
        var offset = 0
        let sealed = proto.seal(answer: proto.message)
        let header = try! ProtoWire.unframe(sealed, &offset, what: "header")
        precondition(try! ProtoWire.unframe(sealed, &offset, what: "answer") == proto.message, "answer changed")
        var method: [UInt8] = [], seq: UInt64 = 0
        try! ProtoWire.fields(header) { field, value in
            if case (1, .bytes(let bytes)) = (field, value) { method = Array(bytes) }
            if case (2, .fixed64(let n)) = (field, value) { seq = n }
        }
        precondition(method == Array(proto.method.utf8) && seq == proto.seq, "header round trip")
    }
    return 0
}
