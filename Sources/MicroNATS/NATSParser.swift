/// What a NATS server sends, one operation at a time.
public enum NATSOperation: Sendable, Equatable {
    /// `INFO {json}`: the server's facts (the JSON as sent).
    case info([UInt8])
    /// `MSG` / `HMSG`: a message for subscription `sid`.
    case message(NATSMessage)
    case ping
    case pong
    /// `+OK` (verbose mode only).
    case ok
    /// `-ERR 'text'`.
    case error(String)
}

/// A message as a subscription receives it.
public struct NATSMessage: Sendable, Equatable {
    public var subject: String
    /// The subscription's id on the connection.
    public var sid: UInt64
    /// Where to answer, if the publisher asked for an answer.
    public var replyTo: String?
    /// Headers (`HMSG`): each name with its values, in order; empty for a plain `MSG`.
    public var headers: [(String, String)]
    /// The status a server puts in a header block's first line (`503`: no responders), or nil.
    public var status: Int?
    public var payload: [UInt8]

    public init(subject: String, sid: UInt64 = 0, replyTo: String? = nil, headers: [(String, String)] = [], status: Int? = nil,
                payload: [UInt8]) {
        self.subject = subject
        self.sid = sid
        self.replyTo = replyTo
        self.headers = headers
        self.status = status
        self.payload = payload
    }

    /// The first value of header `name` (case-insensitive, as NATS headers are MIME headers).
    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    public static func == (a: NATSMessage, b: NATSMessage) -> Bool {
        a.subject == b.subject && a.sid == b.sid && a.replyTo == b.replyTo && a.status == b.status && a.payload == b.payload
            && a.headers.elementsEqual(b.headers) { $0.0 == $1.0 && $0.1 == $1.1 }
    }
}

/// Why what the server sent is not NATS: the connection cannot go on (it is closed and made
/// again).
public struct NATSProtocolError: Error, CustomStringConvertible, Equatable {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Cuts a NATS server's byte stream into operations, as bytes arrive in pieces of any size.
///
/// Bounded: a control line longer than ``maxControlLine`` or a message larger than
/// ``maxPayload`` (plus its headers) is a protocol error, not a buffer that grows; a parse never
/// holds more than one incomplete operation. Everything it cannot read is a ``NATSProtocolError``.
public struct NATSParser: Sendable {
    /// The longest control line taken (nats.go's limit).
    public static let maxControlLine = 4096
    /// The largest message taken (headers and payload): the server's `max_payload` once known.
    public var maxPayload: Int

    private var buffer: [UInt8] = []
    private var offset = 0
    /// A message whose control line was read, waiting for its bytes.
    private var pending: (message: NATSMessage, headerBytes: Int, totalBytes: Int)?

    public init(maxPayload: Int = 64 * 1024 * 1024) {
        self.maxPayload = maxPayload
    }

    /// Takes `bytes` and hands each complete operation to `emit`, in order.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer, _ emit: (NATSOperation) throws -> Void) throws {
        if offset == buffer.count {
            buffer.removeAll(keepingCapacity: buffer.capacity <= 1 << 20)
            offset = 0
        } else if offset > 65536 && offset * 2 > buffer.count {
            buffer.removeFirst(offset)
            offset = 0
        }
        buffer.append(contentsOf: bytes)
        while let operation = try next() { try emit(operation) }
    }

    /// Forgets everything held (a new connection starts clean).
    public mutating func reset() {
        buffer.removeAll()
        offset = 0
        pending = nil
    }

    private mutating func next() throws -> NATSOperation? {
        if let waiting = pending {
            // the payload and its CRLF
            guard buffer.count - offset >= waiting.totalBytes + 2 else { return nil }
            let start = offset, end = offset + waiting.totalBytes
            guard buffer[end] == 0x0D, buffer[end + 1] == 0x0A else {
                throw NATSProtocolError("a message's payload is not followed by CRLF (its size says \(waiting.totalBytes) bytes)")
            }
            var message = waiting.message
            if waiting.headerBytes > 0 {
                (message.status, message.headers) = try Self.headers(buffer[start..<(start + waiting.headerBytes)])
            }
            message.payload = Array(buffer[(start + waiting.headerBytes)..<end])
            offset = end + 2
            pending = nil
            return .message(message)
        }
        guard let lineEnd = lineEnd() else {
            if buffer.count - offset > Self.maxControlLine {
                throw NATSProtocolError("a control line longer than \(Self.maxControlLine) bytes")
            }
            return nil
        }
        let line = buffer[offset..<lineEnd]
        offset = lineEnd + 2
        return try operation(line)
    }

    /// Where the next control line ends (its CR), if it is complete.
    private func lineEnd() -> Int? {
        var i = offset
        let limit = min(buffer.count, offset + Self.maxControlLine + 2)
        while i + 1 < limit {
            if buffer[i] == 0x0D && buffer[i + 1] == 0x0A { return i }
            i += 1
        }
        return nil
    }

    private mutating func operation(_ line: ArraySlice<UInt8>) throws -> NATSOperation? {
        let (verb, rest) = Self.verb(line)
        switch verb {
        case "MSG":
            // MSG <subject> <sid> [reply-to] <#bytes>
            let fields = Self.fields(rest)
            guard fields.count == 3 || fields.count == 4 else { throw NATSProtocolError("a MSG line with \(fields.count) fields") }
            let total = try Self.size(fields[fields.count - 1], "MSG")
            try expect(NATSMessage(subject: Self.text(fields[0]), sid: try Self.sid(fields[1]),
                                  replyTo: fields.count == 4 ? Self.text(fields[2]) : nil, payload: []), headerBytes: 0, totalBytes: total)
            return try next()
        case "HMSG":
            // HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>
            let fields = Self.fields(rest)
            guard fields.count == 4 || fields.count == 5 else { throw NATSProtocolError("an HMSG line with \(fields.count) fields") }
            let headerBytes = try Self.size(fields[fields.count - 2], "HMSG")
            let total = try Self.size(fields[fields.count - 1], "HMSG")
            guard headerBytes <= total else { throw NATSProtocolError("an HMSG whose headers (\(headerBytes) bytes) exceed its size (\(total))") }
            try expect(NATSMessage(subject: Self.text(fields[0]), sid: try Self.sid(fields[1]),
                                  replyTo: fields.count == 5 ? Self.text(fields[2]) : nil, payload: []),
                      headerBytes: headerBytes, totalBytes: total)
            return try next()
        case "PING": return .ping
        case "PONG": return .pong
        case "+OK": return .ok
        case "-ERR":
            var text = Self.text(rest).trimmingSpaces
            if text.hasPrefix("'") && text.hasSuffix("'") && text.count >= 2 { text = String(text.dropFirst().dropLast()) }
            return .error(text)
        case "INFO":
            let json = Array(rest.drop { $0 == 0x20 || $0 == 0x09 })
            guard json.first == UInt8(ascii: "{") else { throw NATSProtocolError("an INFO line without a JSON object") }
            return .info(json)
        default:
            let shown = String(decoding: line.prefix(40), as: UTF8.self)
            throw NATSProtocolError("an unknown operation: '\(shown)'")
        }
    }

    private mutating func expect(_ message: NATSMessage, headerBytes: Int, totalBytes: Int) throws {
        guard totalBytes <= maxPayload + 65536 else {
            throw NATSProtocolError("a message of \(totalBytes) bytes, over the limit of \(maxPayload)")
        }
        pending = (message, headerBytes, totalBytes)
    }

    /// The operation's name, upper-cased, and what follows it.
    private static func verb(_ line: ArraySlice<UInt8>) -> (String, ArraySlice<UInt8>) {
        let end = line.firstIndex { $0 == 0x20 || $0 == 0x09 } ?? line.endIndex
        let verb = String(decoding: line[line.startIndex..<end].map { $0 >= 0x61 && $0 <= 0x7A ? $0 - 0x20 : $0 }, as: UTF8.self)
        return (verb, line[end...])
    }

    private static func fields(_ rest: ArraySlice<UInt8>) -> [ArraySlice<UInt8>] {
        rest.split(whereSeparator: { $0 == 0x20 || $0 == 0x09 })
    }

    private static func text(_ bytes: ArraySlice<UInt8>) -> String { String(decoding: bytes, as: UTF8.self) }

    private static func size(_ field: ArraySlice<UInt8>, _ verb: String) throws -> Int {
        guard !field.isEmpty, field.count <= 10, field.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
            throw NATSProtocolError("a \(verb) size that is not a number: '\(text(field.prefix(20)))'")
        }
        return field.reduce(0) { $0 * 10 + Int($1 - 0x30) }
    }

    private static func sid(_ field: ArraySlice<UInt8>) throws -> UInt64 {
        guard !field.isEmpty, field.count <= 19, field.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
            throw NATSProtocolError("a subscription id that is not a number: '\(text(field.prefix(20)))'")
        }
        return field.reduce(0) { $0 * 10 + UInt64($1 - 0x30) }
    }

    /// A header block: `NATS/1.0[ status[ description]]` CRLF, then `Name: value` lines, CRLF.
    static func headers(_ block: ArraySlice<UInt8>) throws -> (Int?, [(String, String)]) {
        var lines: [String] = []
        var start = block.startIndex, i = block.startIndex
        while i < block.endIndex {
            if block[i] == 0x0D, i + 1 < block.endIndex, block[i + 1] == 0x0A {
                lines.append(String(decoding: block[start..<i], as: UTF8.self))
                i += 2
                start = i
            } else {
                i += 1
            }
        }
        if start < block.endIndex { lines.append(String(decoding: block[start...], as: UTF8.self)) }
        guard let first = lines.first, first.hasPrefix("NATS/1.0") else {
            throw NATSProtocolError("a header block that does not begin with NATS/1.0")
        }
        lines.removeFirst()
        let statusText = first.dropFirst("NATS/1.0".count).trimmingSpaces
        let status = statusText.isEmpty ? nil : Int(statusText.prefix(3))
        var headers: [(String, String)] = []
        for line in lines where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { throw NATSProtocolError("a header line without a colon") }
            headers.append((String(line[..<colon]), String(line[line.index(after: colon)...]).trimmingSpaces))
        }
        return (status, headers)
    }
}

extension StringProtocol {
    /// Without the ASCII spaces and tabs at either end (bytes, not characters: a space followed
    /// by a combining mark is one character, but still a space on the wire).
    var trimmingSpaces: String {
        let bytes = Array(utf8)
        var start = 0, end = bytes.count
        while start < end && (bytes[start] == 0x20 || bytes[start] == 0x09) { start += 1 }
        while end > start && (bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09) { end -= 1 }
        return String(decoding: bytes[start..<end], as: UTF8.self)
    }
}

/// What a client sends.
enum NATSCommand {
    /// `PUB subject [reply] size\r\npayload\r\n`, or `HPUB` with headers, appended to `out`
    /// (the general path: with headers, or while reconnecting, or a name too long for the line
    /// buffer).
    static func publish(_ subject: String, replyTo: String?, headers: [(String, String)], payload: [UInt8], into out: inout [UInt8]) {
        var block: [UInt8] = []
        if !headers.isEmpty {
            block = Array("NATS/1.0\r\n".utf8)
            for (name, value) in headers { block += Array("\(name): \(value)\r\n".utf8) }
            block += [0x0D, 0x0A]
        }
        out.append(contentsOf: (block.isEmpty ? "PUB " : "HPUB ").utf8)
        out.append(contentsOf: subject.utf8)
        if let replyTo {
            out.append(0x20)
            out.append(contentsOf: replyTo.utf8)
        }
        if !block.isEmpty { out.append(contentsOf: " \(block.count)".utf8) }
        out.append(contentsOf: " \(block.count + payload.count)\r\n".utf8)
        out.append(contentsOf: block)
        out.append(contentsOf: payload)
        out.append(0x0D)
        out.append(0x0A)
    }

    /// Writes `size` in decimal and CRLF at `target`; the bytes written (at most 22).
    static func writeSizeLine(_ size: Int, to target: UnsafeMutablePointer<UInt8>) -> Int {
        precondition(size >= 0)
        var digits = 1, rest = size
        while rest >= 10 {
            rest /= 10
            digits += 1
        }
        rest = size
        var i = digits
        repeat {  // right to left, dividing by the constant 10 (a multiplication)
            i -= 1
            target[i] = 0x30 + UInt8(truncatingIfNeeded: rest % 10)
            rest /= 10
        } while i > 0
        target[digits] = 0x0D
        target[digits + 1] = 0x0A
        return digits + 2
    }

    static func subscribe(_ subject: String, queue: String?, sid: UInt64) -> [UInt8] {
        Array("SUB \(subject)\(queue.map { " " + $0 } ?? "") \(sid)\r\n".utf8)
    }

    static func unsubscribe(sid: UInt64, after max: Int? = nil) -> [UInt8] {
        Array("UNSUB \(sid)\(max.map { " \($0)" } ?? "")\r\n".utf8)
    }

    /// Whether `subject` may be published to: tokens separated by dots, none empty, no spaces or
    /// control bytes (wildcards allowed only when `wildcards`). One pass over the bytes, no
    /// allocation: every publish asks.
    static func isValid(subject: String, wildcards: Bool) -> Bool {
        var tokenLength = 0, count = 0
        var wildcardToken = false
        for byte in subject.utf8 {
            count += 1
            if byte == 0x2E {  // "."
                if tokenLength == 0 || (wildcardToken && !wildcards) { return false }
                tokenLength = 0
                wildcardToken = false
                continue
            }
            if byte <= 0x20 || byte == 0x7F { return false }
            wildcardToken = tokenLength == 0 && (byte == 0x2A || byte == 0x3E)  // a token that is "*" or ">" so far
            tokenLength += 1
            if tokenLength > 1 { wildcardToken = false }
        }
        guard count > 0, count <= 1024, tokenLength > 0 else { return false }
        return wildcards || !wildcardToken
    }
}
