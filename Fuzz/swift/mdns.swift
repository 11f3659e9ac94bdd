// libFuzzer target `mdns`: the mDNS registry's reading of a datagram (Sources/Micro/Registry/MDNS)
// on arbitrary bytes. Invariants: nothing crashes or hangs; a message that parses encodes again
// and parses back to itself; its records go into a cache, whose node view (go-micro TXT: hex,
// zlib bounded at 1 MiB, JSON; DNS-SD key=value) is computed without harm; the cache empties when
// every record has expired.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let message = try? DNSMessage(parsing: bytes) else { return 0 }
    let encoded: [UInt8]
    do {
        encoded = try message.encoded()
    } catch {
        fatalError("a parsed message does not encode: \(error)")
    }
    guard let again = try? DNSMessage(parsing: encoded), again == message else {
        fatalError("encoding changed the message")
    }
    var cache = MDNSCache()
    let now = ContinuousClock.now
    for record in message.answers + message.authorities + message.additionals { cache.insert(record, now: now) }
    let names = MDNSNames()
    for (id, record) in cache.nodes(names: names) {
        guard record.nodes.count == 1, record.nodes[0].id == id else { fatalError("a node view is not one node") }
    }
    for record in message.answers + message.additionals {
        if case .txt(let strings) = record.data {
            _ = MDNSText.decodeGoMicro(strings)
            _ = MDNSText.keyValues(strings)
        }
    }
    _ = cache.expire(now: now + .seconds(Int64(UInt32.max) + 1))
    guard cache.entries.isEmpty else { fatalError("records outlived their TTL") }
    return 0
}
