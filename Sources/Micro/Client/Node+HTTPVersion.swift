public import MicroCore

// Apart from RegistryModels.swift, which the mDNS fuzz target compiles alone (no MicroCore there).
extension Node {
    /// Whether the node takes calls over TLS only (its registry metadata says `tls=required`).
    var requiresTLS: Bool { metadata["tls"] == "required" }

    /// The HTTP to call this node in: what its `protocols` list says (every swift-micro node has
    /// one: HTTP/2 when it names `h2c` or `h2`); without a list, HTTP/1.1 for go-micro's nodes,
    /// whose HTTP transport and broker (`transport=http`, `broker=http`) take nothing else, and
    /// HTTP/2 for any other node.
    public var httpVersion: HTTPClient.Version {
        if let protocols = metadata["protocols"] {
            // read on every call: a scan of the bytes, no allocation
            if Self.names(protocols, "h2c", "h2", "grpc") { return .http2 }
            return Self.names(protocols, "http/1.1") ? .http1_1 : .http2
        }
        return metadata["transport"] == "http" || metadata["broker"] == "http" ? .http1_1 : .http2
    }

    /// Whether the comma-separated `list` names any of `wanted` (lower case; the list's names are
    /// compared without case, spaces around them ignored).
    static func names(_ list: String, _ wanted: StaticString...) -> Bool {
        var list = list
        return list.withUTF8 { bytes in
            var start = 0
            while start <= bytes.count {
                var end = start
                while end < bytes.count && bytes[end] != UInt8(ascii: ",") { end += 1 }
                var (lo, hi) = (start, end)
                while lo < hi && bytes[lo] == UInt8(ascii: " ") { lo += 1 }
                while hi > lo && bytes[hi - 1] == UInt8(ascii: " ") { hi -= 1 }
                for name in wanted where name.utf8CodeUnitCount == hi - lo {
                    var same = true
                    for i in 0..<(hi - lo) where bytes[lo + i] | (bytes[lo + i] >= 65 && bytes[lo + i] <= 90 ? 0x20 : 0) != name.utf8Start[i] {
                        same = false
                        break
                    }
                    if same { return true }
                }
                start = end + 1
            }
            return false
        }
    }
}
