/// The Strings of the last few distinct byte strings asked for, so that a value that comes again
/// (a request path: a service has few) reuses its String. A String holds 15 bytes inline; a
/// longer one, such as `/helloworld.Greeter/SayHello`, is an allocation each time it is made.
///
/// Bounded whatever a peer sends: `capacity` entries of at most `maxLength` bytes, the oldest
/// replaced first; bytes past `maxLength` are never kept. Not thread-safe: one per event loop,
/// used on its thread.
final class RecentStrings {
    static let capacity = 8
    static let maxLength = 256

    private var entries: [String] = []
    private var oldest = 0

    /// The bytes as a String (invalid UTF-8 repaired, as `WireHeaders.string` does).
    func string(_ p: UnsafePointer<CChar>?, _ len: Int) -> String {
        guard let p, len > 15 else { return WireHeaders.string(p, len) }
        // one repaired from invalid UTF-8 differs from the bytes and is simply never matched
        let bytes = UnsafeRawBufferPointer(start: p, count: len)
        for entry in entries where HTTPHeaders.equal(entry, bytes) { return entry }
        let string = WireHeaders.string(p, len)
        guard len <= Self.maxLength else { return string }
        if entries.count < Self.capacity {
            entries.append(string)
        } else {
            entries[oldest] = string
            oldest = (oldest + 1) % Self.capacity
        }
        return string
    }

    /// How many are kept (tests).
    var count: Int { entries.count }
}
