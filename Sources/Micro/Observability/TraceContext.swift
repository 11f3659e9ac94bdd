import Synchronization

/// A span's place in its trace as W3C Trace Context carries it between processes
/// (`traceparent: 00-TRACE-SPAN-FLAGS`, `tracestate`): what ``MemoryTracer`` propagates, and
/// how the framework reads trace and span ids for log lines whatever the tracer.
public struct TraceContext: Sendable, Hashable {
    /// 32 lower-case hex digits, not all zero.
    public var traceID: String
    /// 16 lower-case hex digits, not all zero.
    public var spanID: String
    /// Whether the caller records this trace (flag 01).
    public var sampled: Bool
    /// Vendor state passed along untouched (`tracestate`), at most 512 bytes.
    public var traceState: String?

    public init(traceID: String, spanID: String, sampled: Bool = true, traceState: String? = nil) {
        self.traceID = traceID
        self.spanID = spanID
        self.sampled = sampled
        self.traceState = traceState
    }

    /// The `traceparent` value.
    public var traceparent: String { "00-\(traceID)-\(spanID)-\(sampled ? "01" : "00")" }

    /// Parses a `traceparent` value (and `tracestate`); nil for anything that is not a valid
    /// version-00 header: wrong length or separators, upper-case or non-hex digits, an all-zero
    /// id, version ff. A later version is read by its first four fields, as the spec asks.
    public init?(traceparent: String, tracestate: String? = nil) {
        var text = traceparent
        let parsed: TraceContext? = text.withUTF8 { bytes in
            // version "-" trace(32) "-" span(16) "-" flags(2)
            guard bytes.count >= 55, bytes[2] == 0x2D, bytes[35] == 0x2D, bytes[52] == 0x2D else { return nil }
            guard Self.isHex(bytes, 0..<2), Self.isHex(bytes, 3..<35), Self.isHex(bytes, 36..<52), Self.isHex(bytes, 53..<55) else { return nil }
            let version = Self.hexByte(bytes[0], bytes[1])
            guard version != 0xFF else { return nil }
            // version 00 is exactly 55 bytes; a later one may append "-..." fields
            guard bytes.count == 55 || (version > 0 && bytes[55] == 0x2D) else { return nil }
            guard !Self.isZero(bytes, 3..<35), !Self.isZero(bytes, 36..<52) else { return nil }
            let flags = Self.hexByte(bytes[53], bytes[54])
            return TraceContext(
                traceID: String(decoding: UnsafeBufferPointer(rebasing: bytes[3..<35]), as: UTF8.self),
                spanID: String(decoding: UnsafeBufferPointer(rebasing: bytes[36..<52]), as: UTF8.self),
                sampled: flags & 1 == 1)
        }
        guard var parsed else { return nil }
        if let tracestate, !tracestate.isEmpty, tracestate.utf8.count <= 512 { parsed.traceState = tracestate }
        self = parsed
    }

    private static func isHex(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Bool {
        for i in range {
            let b = bytes[i]
            guard (0x30...0x39).contains(b) || (0x61...0x66).contains(b) else { return false }
        }
        return true
    }

    private static func isZero(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Bool {
        range.allSatisfy { bytes[$0] == 0x30 }
    }

    private static func hexByte(_ high: UInt8, _ low: UInt8) -> UInt8 {
        func nibble(_ b: UInt8) -> UInt8 { b <= 0x39 ? b - 0x30 : b - 0x61 + 10 }
        return nibble(high) << 4 | nibble(low)
    }

    /// A new trace id (128 bits) or span id (64 bits), as lower-case hex: SplitMix64 over a
    /// shared counter seeded from the system's generator (unpredictable enough to keep traces
    /// apart, as W3C asks; no system call per id).
    static func randomID(bytes: Int) -> String {
        let digits: StaticString = "0123456789abcdef"
        return String(unsafeUninitializedCapacity: bytes * 2) { buffer in
            var i = 0
            while i < bytes * 2 {
                var word = nextRandom()
                for _ in 0..<min(16, bytes * 2 - i) {
                    buffer[i] = digits.utf8Start[Int(word & 0xF)]
                    word >>= 4
                    i += 1
                }
            }
            return bytes * 2
        }
    }

    private static let randomState = Atomic<UInt64>(UInt64.random(in: .min ... .max))

    /// 64 random bits (the generator of the ids).
    static func randomWord() -> UInt64 { nextRandom() }

    /// SplitMix64; never 0 (an all-zero id is invalid).
    private static func nextRandom() -> UInt64 {
        var z = randomState.wrappingAdd(0x9E37_79B9_7F4A_7C15, ordering: .relaxed).newValue
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return z == 0 ? 1 : z
    }

}

