/// A JSON document parsed in one pass into a flat tape: one entry per value, objects and arrays
/// pointing past their end. No allocation per value; strings and numbers stay as byte ranges and
/// are converted only when a decoder asks for them.
struct JSONTape {
    enum Kind: UInt8 { case object, array, string, escapedString, number, `true`, `false`, null }

    struct Entry {
        var kind: Kind
        /// Byte range of the value (strings: between the quotes).
        var start: Int32
        var end: Int32
        /// Objects and arrays: members (objects count key and value entries as one member).
        var count: Int32
        /// Index of the entry after this value and everything inside it.
        var next: Int32
    }

    let bytes: [UInt8]
    private(set) var entries: [Entry] = []

    struct Invalid: Error {}

    init(_ bytes: [UInt8]) throws(Invalid) {
        self.bytes = bytes
        guard bytes.count < Int(Int32.max) else { throw Invalid() }
        entries.reserveCapacity(16)
        var i = 0
        try bytes.withUnsafeBufferPointer { (p) throws(Invalid) in
            i = Self.skipSpace(p, 0)
            try parseValue(p, &i, depth: 0)
            i = Self.skipSpace(p, i)
        }
        guard i == bytes.count else { throw Invalid() }
    }

    private static func skipSpace(_ p: UnsafeBufferPointer<UInt8>, _ i: Int) -> Int {
        var i = i
        while i < p.count, p[i] == 0x20 || p[i] == 0x0A || p[i] == 0x0D || p[i] == 0x09 { i += 1 }
        return i
    }

    private mutating func parseValue(_ p: UnsafeBufferPointer<UInt8>, _ i: inout Int, depth: Int) throws(Invalid) {
        guard i < p.count, depth < 512 else { throw Invalid() }
        switch p[i] {
        case UInt8(ascii: "{"):
            let index = entries.count
            entries.append(Entry(kind: .object, start: Int32(i), end: 0, count: 0, next: 0))
            i = Self.skipSpace(p, i + 1)
            var count: Int32 = 0
            if i < p.count, p[i] == UInt8(ascii: "}") {
                i += 1
            } else {
                while true {
                    guard i < p.count, p[i] == UInt8(ascii: "\"") else { throw Invalid() }
                    try parseString(p, &i)
                    i = Self.skipSpace(p, i)
                    guard i < p.count, p[i] == UInt8(ascii: ":") else { throw Invalid() }
                    i = Self.skipSpace(p, i + 1)
                    try parseValue(p, &i, depth: depth + 1)
                    count += 1
                    i = Self.skipSpace(p, i)
                    guard i < p.count else { throw Invalid() }
                    if p[i] == UInt8(ascii: ",") {
                        i = Self.skipSpace(p, i + 1)
                        continue
                    }
                    guard p[i] == UInt8(ascii: "}") else { throw Invalid() }
                    i += 1
                    break
                }
            }
            entries[index].end = Int32(i)
            entries[index].count = count
            entries[index].next = Int32(entries.count)
        case UInt8(ascii: "["):
            let index = entries.count
            entries.append(Entry(kind: .array, start: Int32(i), end: 0, count: 0, next: 0))
            i = Self.skipSpace(p, i + 1)
            var count: Int32 = 0
            if i < p.count, p[i] == UInt8(ascii: "]") {
                i += 1
            } else {
                while true {
                    try parseValue(p, &i, depth: depth + 1)
                    count += 1
                    i = Self.skipSpace(p, i)
                    guard i < p.count else { throw Invalid() }
                    if p[i] == UInt8(ascii: ",") {
                        i = Self.skipSpace(p, i + 1)
                        continue
                    }
                    guard p[i] == UInt8(ascii: "]") else { throw Invalid() }
                    i += 1
                    break
                }
            }
            entries[index].end = Int32(i)
            entries[index].count = count
            entries[index].next = Int32(entries.count)
        case UInt8(ascii: "\""):
            try parseString(p, &i)
        case UInt8(ascii: "t"):
            try literal(p, &i, "true", .true)
        case UInt8(ascii: "f"):
            try literal(p, &i, "false", .false)
        case UInt8(ascii: "n"):
            try literal(p, &i, "null", .null)
        default:
            try parseNumber(p, &i)
        }
    }

    private mutating func literal(_ p: UnsafeBufferPointer<UInt8>, _ i: inout Int, _ word: StaticString, _ kind: Kind) throws(Invalid) {
        let n = word.utf8CodeUnitCount
        guard i + n <= p.count else { throw Invalid() }
        for k in 0..<n where p[i + k] != word.utf8Start[k] { throw Invalid() }
        entries.append(Entry(kind: kind, start: Int32(i), end: Int32(i + n), count: 0, next: Int32(entries.count + 1)))
        i += n
    }

    private mutating func parseString(_ p: UnsafeBufferPointer<UInt8>, _ i: inout Int) throws(Invalid) {
        let start = i + 1
        var j = start
        var escaped = false
        while true {
            guard j < p.count else { throw Invalid() }
            let c = p[j]
            if c == UInt8(ascii: "\"") { break }
            if c < 0x20 { throw Invalid() }
            if c == UInt8(ascii: "\\") {
                escaped = true
                j += 2
                continue
            }
            j += 1
        }
        entries.append(Entry(kind: escaped ? .escapedString : .string, start: Int32(start), end: Int32(j), count: 0,
                             next: Int32(entries.count + 1)))
        i = j + 1
    }

    private mutating func parseNumber(_ p: UnsafeBufferPointer<UInt8>, _ i: inout Int) throws(Invalid) {
        let start = i
        var j = i
        if j < p.count, p[j] == UInt8(ascii: "-") { j += 1 }
        guard j < p.count, p[j] >= 0x30, p[j] <= 0x39 else { throw Invalid() }
        if p[j] == 0x30 {
            j += 1
        } else {
            while j < p.count, p[j] >= 0x30, p[j] <= 0x39 { j += 1 }
        }
        if j < p.count, p[j] == UInt8(ascii: ".") {
            j += 1
            guard j < p.count, p[j] >= 0x30, p[j] <= 0x39 else { throw Invalid() }
            while j < p.count, p[j] >= 0x30, p[j] <= 0x39 { j += 1 }
        }
        if j < p.count, p[j] == UInt8(ascii: "e") || p[j] == UInt8(ascii: "E") {
            j += 1
            if j < p.count, p[j] == UInt8(ascii: "+") || p[j] == UInt8(ascii: "-") { j += 1 }
            guard j < p.count, p[j] >= 0x30, p[j] <= 0x39 else { throw Invalid() }
            while j < p.count, p[j] >= 0x30, p[j] <= 0x39 { j += 1 }
        }
        entries.append(Entry(kind: .number, start: Int32(start), end: Int32(j), count: 0, next: Int32(entries.count + 1)))
        i = j
    }

    // MARK: reading values

    /// Whether the string entry equals `key` (keys are compared as UTF-8; escaped keys decoded).
    func stringEquals(_ entry: Entry, _ key: String) -> Bool {
        if entry.kind == .escapedString { return string(entry) == key }
        var key = key
        return key.withUTF8 { k in
            let n = Int(entry.end - entry.start)
            guard k.count == n else { return false }
            return bytes.withUnsafeBufferPointer { b in
                memcmpEqual(b.baseAddress! + Int(entry.start), k.baseAddress!, n)
            }
        }
    }

    func string(_ entry: Entry) -> String {
        let range = Int(entry.start)..<Int(entry.end)
        if entry.kind == .string {
            return bytes.withUnsafeBufferPointer { String(decoding: UnsafeBufferPointer(rebasing: $0[range]), as: UTF8.self) }
        }
        return Self.unescape(bytes[range])
    }

    static func unescape(_ input: ArraySlice<UInt8>) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(input.count)
        var i = input.startIndex
        func hex4(_ at: Int) -> UInt32? {
            guard at + 4 <= input.endIndex else { return nil }
            var v: UInt32 = 0
            for k in at..<(at + 4) {
                let c = input[k]
                let d: UInt8
                switch c {
                case 0x30...0x39: d = c - 0x30
                case 0x41...0x46: d = c - 0x41 + 10
                case 0x61...0x66: d = c - 0x61 + 10
                default: return nil
                }
                v = v << 4 | UInt32(d)
            }
            return v
        }
        func append(_ scalar: UInt32) {
            let s = Unicode.Scalar(scalar) ?? "\u{FFFD}"
            out.append(contentsOf: Array(String(Character(s)).utf8))
        }
        while i < input.endIndex {
            let c = input[i]
            guard c == UInt8(ascii: "\\"), i + 1 < input.endIndex else {
                out.append(c)
                i += 1
                continue
            }
            let e = input[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "u"):
                guard let high = hex4(i) else { out.append(contentsOf: [0xEF, 0xBF, 0xBD]); continue }
                i += 4
                if (0xD800..<0xDC00).contains(high), i + 1 < input.endIndex, input[i] == UInt8(ascii: "\\"),
                    input[i + 1] == UInt8(ascii: "u"), let low = hex4(i + 2), (0xDC00..<0xE000).contains(low)
                {
                    i += 6
                    append(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
                } else {
                    append(high)
                }
            default: out.append(e)  // \" \\ \/
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The number's bytes, for integer and floating-point parsing.
    func withNumber<R, E: Error>(_ entry: Entry, _ body: (UnsafeBufferPointer<UInt8>) throws(E) -> R) throws(E) -> R {
        let result: Result<R, E> = bytes.withUnsafeBufferPointer { b in
            Result { () throws(E) -> R in try body(UnsafeBufferPointer(rebasing: b[Int(entry.start)..<Int(entry.end)])) }
        }
        return try result.get()
    }
}

@inline(__always)
private func memcmpEqual(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Bool {
    var k = 0
    while k < n {
        if a[k] != b[k] { return false }
        k += 1
    }
    return true
}
