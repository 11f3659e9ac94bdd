/// A domain name as a list of labels. Labels are bytes (DNS-SD instance names may hold any
/// UTF-8, dots included); names compare without regard to ASCII case (RFC 1035 §2.3.3).
struct DNSName: Hashable, Sendable, CustomStringConvertible {
    var labels: [[UInt8]]

    init(labels: [[UInt8]]) { self.labels = labels }

    /// From dotted text; a trailing dot is optional. Labels cannot hold dots this way.
    init(_ text: String) {
        labels = text.split(separator: ".", omittingEmptySubsequences: true).map { Array($0.utf8) }
    }

    /// This name under `parent`: `DNSName(labels: [label]) + parent`.
    init(_ label: String, under parent: DNSName) {
        labels = [Array(label.utf8)] + parent.labels
    }

    private var folded: [[UInt8]] {
        labels.map { $0.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 } }
    }

    static func == (a: DNSName, b: DNSName) -> Bool { a.folded == b.folded }
    func hash(into hasher: inout Hasher) { hasher.combine(folded) }

    /// True if the last labels of this name are `suffix`'s (or the names are equal).
    func hasSuffix(_ suffix: DNSName) -> Bool {
        guard suffix.labels.count <= labels.count else { return false }
        return DNSName(labels: Array(labels.suffix(suffix.labels.count))) == suffix
    }

    /// The labels before `suffix`, if the name ends with it.
    func labels(before suffix: DNSName) -> [[UInt8]]? {
        guard hasSuffix(suffix) else { return nil }
        return Array(labels.dropLast(suffix.labels.count))
    }

    /// Dotted text with a trailing dot; dots and backslashes inside labels are escaped.
    var description: String {
        labels.map { label in
            var text = ""
            for byte in String(decoding: label, as: UTF8.self).unicodeScalars {
                if byte == "." || byte == "\\" { text.append("\\") }
                text.unicodeScalars.append(byte)
            }
            return text
        }.joined(separator: ".") + "."
    }

    /// The wire length (labels with their length bytes, and the root byte).
    var wireLength: Int { labels.reduce(1) { $0 + 1 + $1.count } }
}

enum DNSType {
    static let a: UInt16 = 1
    static let ptr: UInt16 = 12
    static let txt: UInt16 = 16
    static let aaaa: UInt16 = 28
    static let srv: UInt16 = 33
    static let nsec: UInt16 = 47
    static let any: UInt16 = 255
}

/// The record data the registry reads; anything else is kept as bytes.
enum DNSRecordData: Hashable, Sendable {
    case a([UInt8])
    case aaaa([UInt8])
    case ptr(DNSName)
    case srv(priority: UInt16, weight: UInt16, port: UInt16, target: DNSName)
    case txt([[UInt8]])
    case other(type: UInt16, bytes: [UInt8])

    var type: UInt16 {
        switch self {
        case .a: DNSType.a
        case .aaaa: DNSType.aaaa
        case .ptr: DNSType.ptr
        case .srv: DNSType.srv
        case .txt: DNSType.txt
        case .other(let type, _): type
        }
    }
}

struct DNSQuestion: Hashable, Sendable {
    var name: DNSName
    var type: UInt16
    /// Class IN is 1; the top bit asks for a unicast answer (RFC 6762 §5.4).
    var rawClass: UInt16 = 1

    var unicastResponse: Bool { rawClass & 0x8000 != 0 }
    var dnsClass: UInt16 { rawClass & 0x7FFF }
}

struct DNSRecord: Hashable, Sendable {
    var name: DNSName
    var data: DNSRecordData
    var ttl: UInt32
    /// Class IN is 1; the top bit is mDNS's cache-flush bit (RFC 6762 §10.2).
    var rawClass: UInt16 = 1

    var type: UInt16 { data.type }
    var cacheFlush: Bool { rawClass & 0x8000 != 0 }
    var dnsClass: UInt16 { rawClass & 0x7FFF }
}

/// A DNS message (RFC 1035 §4) as mDNS uses it.
struct DNSMessage: Hashable, Sendable {
    var id: UInt16 = 0
    var flags: UInt16 = 0
    var questions: [DNSQuestion] = []
    var answers: [DNSRecord] = []
    var authorities: [DNSRecord] = []
    var additionals: [DNSRecord] = []

    static let responseFlag: UInt16 = 0x8000
    static let authoritativeFlag: UInt16 = 0x0400
    static let truncatedFlag: UInt16 = 0x0200

    var isResponse: Bool { flags & Self.responseFlag != 0 }
    var opcode: UInt16 { (flags >> 11) & 0xF }
    var rcode: UInt16 { flags & 0xF }
}

/// Why a message was refused. Hostile input only ever produces this, never a trap.
struct DNSParseError: Error, Equatable, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension DNSMessage {
    /// Longest name on the wire (RFC 1035 §3.1).
    static let maxNameLength = 255
    /// Compression pointers followed in one name at most. With this bound and the 255-byte
    /// bound on a name, a crafted name (pointers in a cycle) ends in an error, never a loop.
    static let maxPointerHops = 64

    /// Parses `bytes`; every length, count and pointer is checked against the message.
    init(parsing bytes: [UInt8]) throws(DNSParseError) {
        var reader = Reader(bytes: bytes)
        id = try reader.u16()
        flags = try reader.u16()
        let counts = (try reader.u16(), try reader.u16(), try reader.u16(), try reader.u16())
        for _ in 0..<counts.0 {
            let name = try reader.readName()
            questions.append(DNSQuestion(name: name, type: try reader.u16(), rawClass: try reader.u16()))
        }
        for _ in 0..<counts.1 { answers.append(try reader.record()) }
        for _ in 0..<counts.2 { authorities.append(try reader.record()) }
        for _ in 0..<counts.3 { additionals.append(try reader.record()) }
    }

    private struct Reader {
        let bytes: [UInt8]
        var offset = 0

        mutating func u8() throws(DNSParseError) -> UInt8 {
            guard offset < bytes.count else { throw DNSParseError("truncated at byte \(offset)") }
            defer { offset += 1 }
            return bytes[offset]
        }

        mutating func u16() throws(DNSParseError) -> UInt16 {
            UInt16(try u8()) << 8 | UInt16(try u8())
        }

        mutating func u32() throws(DNSParseError) -> UInt32 {
            UInt32(try u16()) << 16 | UInt32(try u16())
        }

        mutating func take(_ count: Int) throws(DNSParseError) -> [UInt8] {
            guard count >= 0, count <= bytes.count - offset else { throw DNSParseError("truncated at byte \(offset)") }
            defer { offset += count }
            return Array(bytes[offset..<offset + count])
        }

        /// A name at the current offset; the offset moves past its in-place part.
        mutating func readName() throws(DNSParseError) -> DNSName {
            var labels: [[UInt8]] = []
            var length = 1
            var position = offset
            var resume: Int?  // where reading continues after the first pointer
            var hops = 0
            while true {
                guard position < bytes.count else { throw DNSParseError("name runs past the message") }
                let byte = bytes[position]
                switch byte & 0xC0 {
                case 0x00:
                    if byte == 0 {
                        offset = resume ?? position + 1
                        return DNSName(labels: labels)
                    }
                    let count = Int(byte)
                    guard position + 1 + count <= bytes.count else { throw DNSParseError("label runs past the message") }
                    length += 1 + count
                    guard length <= DNSMessage.maxNameLength else { throw DNSParseError("name longer than 255 bytes") }
                    labels.append(Array(bytes[position + 1..<position + 1 + count]))
                    position += 1 + count
                case 0xC0:
                    guard position + 1 < bytes.count else { throw DNSParseError("pointer runs past the message") }
                    let target = Int(byte & 0x3F) << 8 | Int(bytes[position + 1])
                    // compression only refers to names written earlier (RFC 1035 §4.1.4)
                    guard target < position else { throw DNSParseError("compression pointer does not point backwards") }
                    hops += 1
                    guard hops <= DNSMessage.maxPointerHops else { throw DNSParseError("too many compression pointers") }
                    if resume == nil { resume = position + 2 }
                    position = target
                default:
                    throw DNSParseError("unknown label type \(byte >> 6)")
                }
            }
        }

        mutating func record() throws(DNSParseError) -> DNSRecord {
            let name = try readName()
            let type = try u16()
            let rawClass = try u16()
            let ttl = try u32()
            let length = Int(try u16())
            guard length <= bytes.count - offset else { throw DNSParseError("record data runs past the message") }
            let end = offset + length
            let data: DNSRecordData
            switch type {
            case DNSType.a:
                guard length == 4 else { throw DNSParseError("A record of \(length) bytes") }
                data = .a(try take(4))
            case DNSType.aaaa:
                guard length == 16 else { throw DNSParseError("AAAA record of \(length) bytes") }
                data = .aaaa(try take(16))
            case DNSType.ptr:
                data = .ptr(try readName())
            case DNSType.srv:
                guard length >= 7 else { throw DNSParseError("SRV record of \(length) bytes") }
                let priority = try u16(), weight = try u16(), port = try u16()
                data = .srv(priority: priority, weight: weight, port: port, target: try readName())
            case DNSType.txt:
                var strings: [[UInt8]] = []
                while offset < end {
                    let count = Int(try u8())
                    guard count <= end - offset else { throw DNSParseError("TXT string runs past its record") }
                    strings.append(try take(count))
                }
                // no strings at all is read as one empty string, as it is written (RFC 6763 §6.1)
                data = .txt(strings.isEmpty ? [[]] : strings)
            default:
                data = .other(type: type, bytes: try take(length))
            }
            guard offset == end else { throw DNSParseError("record data of type \(type) has \(length) bytes, used \(length - (end - offset))") }
            return DNSRecord(name: name, data: data, ttl: ttl, rawClass: rawClass)
        }
    }
}

extension DNSMessage {
    /// The wire form, names compressed (RFC 1035 §4.1.4; RFC 6762 §18.14 allows it in SRV
    /// targets too). Throws if a label is longer than 63 bytes or a name longer than 255.
    func encoded() throws(DNSParseError) -> [UInt8] {
        var writer = Writer()
        writer.u16(id)
        writer.u16(flags)
        for count in [questions.count, answers.count, authorities.count, additionals.count] {
            guard count <= 0xFFFF else { throw DNSParseError("too many records") }
            writer.u16(UInt16(count))
        }
        for question in questions {
            try writer.name(question.name)
            writer.u16(question.type)
            writer.u16(question.rawClass)
        }
        for record in answers + authorities + additionals { try writer.record(record) }
        return writer.bytes
    }

    private struct Writer {
        var bytes: [UInt8] = []
        /// Offsets of names written so far, by their case-folded labels.
        var offsets: [DNSName: Int] = [:]

        mutating func u16(_ value: UInt16) { bytes += [UInt8(value >> 8), UInt8(value & 0xFF)] }
        mutating func u32(_ value: UInt32) {
            u16(UInt16(value >> 16))
            u16(UInt16(value & 0xFFFF))
        }

        mutating func name(_ name: DNSName) throws(DNSParseError) {
            guard name.wireLength <= DNSMessage.maxNameLength else { throw DNSParseError("name \(name) is longer than 255 bytes") }
            for i in name.labels.indices {
                let suffix = DNSName(labels: Array(name.labels[i...]))
                if let offset = offsets[suffix] {
                    u16(0xC000 | UInt16(offset))
                    return
                }
                let label = name.labels[i]
                guard !label.isEmpty, label.count <= 63 else { throw DNSParseError("label of \(label.count) bytes in \(name)") }
                if bytes.count < 0x3FFF { offsets[suffix] = bytes.count }
                bytes.append(UInt8(label.count))
                bytes += label
            }
            bytes.append(0)
        }

        mutating func record(_ record: DNSRecord) throws(DNSParseError) {
            try name(record.name)
            u16(record.type)
            u16(record.rawClass)
            u32(record.ttl)
            let lengthAt = bytes.count
            u16(0)
            switch record.data {
            case .a(let ip), .aaaa(let ip): bytes += ip
            case .ptr(let target): try name(target)
            case .srv(let priority, let weight, let port, let target):
                u16(priority)
                u16(weight)
                u16(port)
                try name(target)
            case .txt(let strings):
                // an empty TXT record holds one empty string (RFC 6763 §6.1)
                for string in strings.isEmpty ? [[]] : strings {
                    guard string.count <= 255 else { throw DNSParseError("TXT string of \(string.count) bytes") }
                    bytes.append(UInt8(string.count))
                    bytes += string
                }
            case .other(_, let data): bytes += data
            }
            let length = bytes.count - lengthAt - 2
            guard length <= 0xFFFF else { throw DNSParseError("record data of \(length) bytes") }
            bytes[lengthAt] = UInt8(length >> 8)
            bytes[lengthAt + 1] = UInt8(length & 0xFF)
        }
    }
}
