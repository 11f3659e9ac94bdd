import Synchronization

/// A span's place in its trace as W3C Trace Context carries it between processes
/// (`traceparent: 00-TRACE-SPAN-FLAGS`, `tracestate`): what ``MemoryTracer`` and
/// ``SampledTracer`` propagate, and how the framework reads trace and span ids for log lines
/// whatever the tracer.
///
/// The ids are kept as integers and written as hex only when they are sent or logged: a call
/// whose trace is not recorded makes its ids and nothing else.
public struct TraceContext: Sendable, Hashable {
    /// The trace's id: 128 bits, not all zero.
    public var trace: TraceID
    /// The span's id: 64 bits, not zero.
    public var span: SpanID
    /// Whether the caller records this trace (flag 01).
    public var sampled: Bool
    /// Vendor state passed along untouched (`tracestate`), at most 512 bytes.
    public var traceState: String?

    public init(trace: TraceID, span: SpanID, sampled: Bool = true, traceState: String? = nil) {
        self.trace = trace
        self.span = span
        self.sampled = sampled
        self.traceState = traceState
    }

    /// 32 lower-case hex digits.
    public var traceID: String { trace.description }
    /// 16 lower-case hex digits.
    public var spanID: String { span.description }

    /// The `traceparent` value (version 00).
    public var traceparent: String {
        String(unsafeUninitializedCapacity: 55) { buffer in
            buffer[0] = 0x30
            buffer[1] = 0x30
            buffer[2] = 0x2D
            Self.writeHex(trace.high, into: buffer, at: 3)
            Self.writeHex(trace.low, into: buffer, at: 19)
            buffer[35] = 0x2D
            Self.writeHex(span.value, into: buffer, at: 36)
            buffer[52] = 0x2D
            buffer[53] = 0x30
            buffer[54] = sampled ? 0x31 : 0x30
            return 55
        }
    }

    /// A context in the same trace for a call made from this one: a new span id, the same
    /// decision and state.
    func child() -> TraceContext {
        TraceContext(trace: trace, span: .random(), sampled: sampled, traceState: traceState)
    }

    /// Parses a `traceparent` value (and `tracestate`); nil for anything that is not a valid
    /// version-00 header: wrong length or separators, upper-case or non-hex digits, an all-zero
    /// id, version ff. A later version is read by its first four fields, as the spec asks.
    public init?(traceparent: String, tracestate: String? = nil) {
        var text = traceparent
        let parsed: TraceContext? = text.withUTF8 { bytes in
            // version "-" trace(32) "-" span(16) "-" flags(2)
            guard bytes.count >= 55, bytes[2] == 0x2D, bytes[35] == 0x2D, bytes[52] == 0x2D else { return nil }
            guard let version = Self.hex(bytes, 0..<2), let high = Self.hex(bytes, 3..<19), let low = Self.hex(bytes, 19..<35),
                  let span = Self.hex(bytes, 36..<52), let flags = Self.hex(bytes, 53..<55)
            else { return nil }
            guard version != 0xFF else { return nil }
            // version 00 is exactly 55 bytes; a later one may append "-..." fields
            guard bytes.count == 55 || (version > 0 && bytes[55] == 0x2D) else { return nil }
            guard high | low != 0, span != 0 else { return nil }
            return TraceContext(trace: TraceID(high: high, low: low), span: SpanID(span), sampled: flags & 1 == 1)
        }
        guard var parsed else { return nil }
        if let tracestate, !tracestate.isEmpty, tracestate.utf8.count <= 512 { parsed.traceState = tracestate }
        self = parsed
    }

    /// The number the lower-case hex digits in `range` write (at most 16), nil if one is not.
    private static func hex(_ bytes: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> UInt64? {
        var value: UInt64 = 0
        for i in range {
            let b = bytes[i]
            let nibble: UInt8
            switch b {
            case 0x30...0x39: nibble = b &- 0x30
            case 0x61...0x66: nibble = b &- 0x61 &+ 10
            default: return nil
            }
            value = value << 4 | UInt64(nibble)
        }
        return value
    }

    fileprivate static func writeHex(_ value: UInt64, into buffer: UnsafeMutableBufferPointer<UInt8>, at start: Int) {
        let digits: StaticString = "0123456789abcdef"
        var value = value
        var i = start + 15
        while i >= start {
            buffer[i] = digits.utf8Start[Int(value & 0xF)]
            value >>= 4
            i -= 1
        }
    }

    private static let randomState = Atomic<UInt64>(UInt64.random(in: .min ... .max))

    /// 64 random bits, never 0 (an all-zero id is invalid): SplitMix64 over a shared counter
    /// seeded from the system's generator — unpredictable enough to keep traces apart, as W3C
    /// asks, without a system call per id.
    static func randomWord() -> UInt64 {
        var z = randomState.wrappingAdd(0x9E37_79B9_7F4A_7C15, ordering: .relaxed).newValue
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return z == 0 ? 1 : z
    }
}

extension TraceContext {
    /// A trace's 128-bit id.
    public struct TraceID: Sendable, Hashable, CustomStringConvertible {
        public var high: UInt64
        public var low: UInt64

        public init(high: UInt64, low: UInt64) {
            self.high = high
            self.low = low
        }

        /// A new random id.
        public static func random() -> TraceID { TraceID(high: randomWord(), low: randomWord()) }

        /// 32 lower-case hex digits.
        public var description: String {
            String(unsafeUninitializedCapacity: 32) { buffer in
                TraceContext.writeHex(high, into: buffer, at: 0)
                TraceContext.writeHex(low, into: buffer, at: 16)
                return 32
            }
        }
    }

    /// A span's 64-bit id.
    public struct SpanID: Sendable, Hashable, CustomStringConvertible {
        public var value: UInt64

        public init(_ value: UInt64) { self.value = value }

        /// A new random id.
        public static func random() -> SpanID { SpanID(randomWord()) }

        /// 16 lower-case hex digits.
        public var description: String {
            String(unsafeUninitializedCapacity: 16) { buffer in
                TraceContext.writeHex(value, into: buffer, at: 0)
                return 16
            }
        }
    }
}
