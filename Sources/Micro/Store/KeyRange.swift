/// Byte-ordered keys (stores, etcd): the range of the keys that start with a prefix.
public enum KeyRange {
    /// The least byte string above every string that starts with `prefix`: its last byte below
    /// 0xFF plus one, what follows it dropped. Nil when there is none (the prefix is empty or all
    /// 0xFF: every key to the end).
    public static func end(ofPrefix prefix: [UInt8]) -> [UInt8]? {
        var end = prefix
        while let last = end.last {
            if last < 0xFF {
                end[end.count - 1] = last + 1
                return end
            }
            end.removeLast()
        }
        return nil
    }
}
