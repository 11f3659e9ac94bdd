/// Raw HTTP/2 for tests that speak it from a socket.
public enum H2Frames {
    /// One frame: 3-byte length, type, flags, stream id, payload.
    public static func frame(_ type: UInt8, flags: UInt8 = 0, stream: UInt32, _ payload: [UInt8] = []) -> [UInt8] {
        let n = payload.count
        return [UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff), type, flags,
                UInt8(stream >> 24 & 0x7f), UInt8(stream >> 16 & 0xff), UInt8(stream >> 8 & 0xff), UInt8(stream & 0xff)] + payload
    }

    /// The whole frames in `bytes`: type, flags, stream and payload.
    public static func parse(_ bytes: [UInt8]) -> [(type: UInt8, flags: UInt8, stream: UInt32, payload: [UInt8])] {
        var out: [(UInt8, UInt8, UInt32, [UInt8])] = []
        var offset = 0
        while offset + 9 <= bytes.count {
            let length = Int(bytes[offset]) << 16 | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2])
            guard offset + 9 + length <= bytes.count else { break }
            let stream = bytes[(offset + 5)..<(offset + 9)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } & 0x7fff_ffff
            out.append((bytes[offset + 3], bytes[offset + 4], stream, Array(bytes[(offset + 9)..<(offset + 9 + length)])))
            offset += 9 + length
        }
        return out
    }

    /// Reads from `conn` until a frame matching `match` (type, flags, stream) arrives, or the
    /// connection ends; returns every frame read.
    public static func read(_ conn: RawConnection, until match: (UInt8, UInt8, UInt32) -> Bool) async throws
        -> [(type: UInt8, flags: UInt8, stream: UInt32, payload: [UInt8])]
    {
        var bytes: [UInt8] = []
        while true {
            guard let chunk = try await conn.read(timeout: .seconds(60)), !chunk.isEmpty else { return parse(bytes) }
            bytes += chunk
            let got = parse(bytes)
            if got.contains(where: { match($0.type, $0.flags, $0.stream) }) { return got }
        }
    }
}
