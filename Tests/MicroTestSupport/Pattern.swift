/// Large test payloads that are not periodic in small steps (a byte out of place shows), made
/// with a plain loop: `(0..<n).map { ... }` of a few million bytes takes seconds in a debug or
/// sanitized build, on a thread the rest of the suite shares.
public enum Pattern {
    /// `count` bytes; byte `i` is `i * 31 + i >> 11`, truncated.
    public static func bytes(_ count: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            var i = 0
            while i < count {
                buffer[i] = UInt8(truncatingIfNeeded: i &* 31 &+ i >> 11)
                i += 1
            }
            initialized = count
        }
    }
}
