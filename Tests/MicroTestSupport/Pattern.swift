/// Large test payloads that are not periodic in small steps (a byte out of place shows), made
/// with a plain loop that stores eight bytes at a time: `(0..<n).map { ... }` of a few million
/// bytes takes seconds in a debug or sanitized build, on a thread the rest of the suite shares.
public enum Pattern {
    /// `count` bytes; byte `i` is `i * 31 + i >> 11`, truncated.
    public static func bytes(_ count: Int) -> [UInt8] {
        @inline(__always) func byte(_ i: Int) -> UInt64 { UInt64(UInt8(truncatingIfNeeded: i &* 31 &+ i >> 11)) }
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            let raw = UnsafeMutableRawPointer(buffer.baseAddress!)
            var i = 0
            while i + 8 <= count {
                var word: UInt64 = 0
                for k in 0..<8 { word |= byte(i + k) << (8 * k) }
                raw.storeBytes(of: word.littleEndian, toByteOffset: i, as: UInt64.self)
                i += 8
            }
            while i < count {
                buffer[i] = UInt8(byte(i))
                i += 1
            }
            initialized = count
        }
    }
}
