// libFuzzer target `grpc`: the gRPC message deframer, gzip inflation (bounded) and the text
// fields of gRPC headers (grpc-message, grpc-timeout) on arbitrary bytes. Nothing may crash, and
// no inflated message may exceed its limit.
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
    return 0
}
