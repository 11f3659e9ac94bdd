// libFuzzer target `nats`: what a NATS server sends, which every NATS client of a service reads
// from the network, cut into pieces as TCP may deliver them. The first byte of the input picks
// the piece sizes; the rest is the stream. Nothing may crash; the parser holds no more than its
// limits; feeding the stream in pieces gives the same operations (and the same failure, after
// the same operations) as feeding it whole — the parser's state carries across pieces; and every
// message read, written back as MSG or HMSG, reads back the same. Also: the publisher's size line
// says any number in decimal.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let seed = Int(data[0])
    let stream = UnsafeRawBufferPointer(start: data + 1, count: size - 1)

    func run(pieces: Bool) -> ([NATSOperation], String?) {
        var parser = NATSParser(maxPayload: 4096)
        var operations: [NATSOperation] = []
        var offset = 0, turn = 0
        do {
            while offset < stream.count {
                let length = pieces ? min(stream.count - offset, 1 + (seed &* (turn + 7)) % 97) : stream.count
                try parser.feed(UnsafeRawBufferPointer(rebasing: stream[offset..<(offset + length)])) { operations.append($0) }
                offset += length
                turn += 1
            }
        } catch {
            return (operations, "\(error)")
        }
        return (operations, nil)
    }

    // the size line a publisher writes is the number in decimal (any non-negative number:
    // the first eight bytes of the stream read as one)
    let number = Int(truncatingIfNeeded: stream.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) } >> 1)
    let sizeLine = UnsafeMutablePointer<UInt8>.allocate(capacity: 24)
    defer { sizeLine.deallocate() }
    let written = NATSCommand.writeSizeLine(number, to: sizeLine)
    precondition(Array(UnsafeBufferPointer(start: sizeLine, count: written)) == Array("\(number)\r\n".utf8), "size line of \(number)")

    let whole = run(pieces: false)
    let cut = run(pieces: true)
    precondition(whole.0 == cut.0, "pieces change what is read")
    precondition(whole.1 == cut.1, "pieces change the failure: \(String(describing: whole.1)) / \(String(describing: cut.1))")
    for operation in whole.0 {
        guard case .message(let message) = operation else { continue }
        precondition(message.payload.count <= 4096 + 65536, "a message over the limit was read")
        // written back as a server would, it reads the same
        var block: [UInt8] = []
        if !message.headers.isEmpty || message.status != nil {
            block = Array("NATS/1.0\(message.status.map { " \($0)" } ?? "")\r\n".utf8)
            for (name, value) in message.headers { block += Array("\(name): \(value)\r\n".utf8) }
            block += [0x0D, 0x0A]
        }
        let verb = block.isEmpty ? "MSG" : "HMSG"
        let sizes = block.isEmpty ? "\(message.payload.count)" : "\(block.count) \(block.count + message.payload.count)"
        let line = "\(verb) \(message.subject) \(message.sid)\(message.replyTo.map { " " + $0 } ?? "") \(sizes)\r\n"
        // only subjects and names that a server could have sent (no spaces inside them)
        guard !message.subject.isEmpty, !message.subject.contains(" "), !message.subject.contains("\t"),
              message.replyTo.map({ !$0.contains(" ") && !$0.contains("\t") && !$0.isEmpty }) ?? true,
              message.headers.allSatisfy({ !$0.0.contains(":") && !$0.0.contains("\r") && !$0.1.contains("\r") && !$0.1.contains("\n")
                  && !$0.0.contains("\n") && $0.0.trimmingSpaces == $0.0 && $0.1.trimmingSpaces == $0.1 && !$0.0.isEmpty })
        else { continue }
        var again = NATSParser(maxPayload: 4096)
        var reread: [NATSOperation] = []
        let bytes = Array(line.utf8) + block + message.payload + [0x0D, 0x0A]
        do {
            try bytes.withUnsafeBytes { try again.feed($0) { reread.append($0) } }
        } catch {
            preconditionFailure("a message written back does not read: \(error)")
        }
        precondition(reread == [.message(message)], "a message written back reads differently")
    }
    return 0
}
