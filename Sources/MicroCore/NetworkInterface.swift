#if canImport(Glibc)
import Glibc
#endif

/// A network interface of this host (of this network namespace) and its IP addresses.
public struct NetworkInterface: Sendable, Equatable {
    public var name: String
    public var index: UInt32
    public var isUp: Bool
    public var isLoopback: Bool
    public var supportsMulticast: Bool
    /// IPv4 addresses, 4 bytes each, network order.
    public var ipv4: [[UInt8]]
    /// IPv6 addresses, 16 bytes each, network order.
    public var ipv6: [[UInt8]]

    /// The name of the interface with this index (if_indextoname(3)), or nil.
    public static func name(ofIndex index: UInt32) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
        guard index != 0, if_indextoname(index, &buffer) != nil else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Every interface, with its addresses (getifaddrs(3)), in index order.
    public static func all() -> [NetworkInterface] {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return [] }
        defer { freeifaddrs(list) }
        var byName: [String: NetworkInterface] = [:]
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            guard let cname = entry.pointee.ifa_name else { continue }
            let name = String(cString: cname)
            let flags = entry.pointee.ifa_flags
            var interface = byName[name] ?? NetworkInterface(
                name: name,
                index: if_nametoindex(cname),
                isUp: flags & UInt32(IFF_UP) != 0 && flags & UInt32(IFF_RUNNING) != 0,
                isLoopback: flags & UInt32(IFF_LOOPBACK) != 0,
                supportsMulticast: flags & UInt32(IFF_MULTICAST) != 0,
                ipv4: [], ipv6: []
            )
            if let addr = entry.pointee.ifa_addr {
                switch Int32(addr.pointee.sa_family) {
                case AF_INET:
                    addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                        interface.ipv4.append(withUnsafeBytes(of: sin.pointee.sin_addr) { Array($0) })
                    }
                case AF_INET6:
                    addr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                        interface.ipv6.append(withUnsafeBytes(of: sin6.pointee.sin6_addr) { Array($0) })
                    }
                default: break
                }
            }
            byName[name] = interface
        }
        return byName.values.sorted { $0.index < $1.index }
    }
}

/// Text forms of IP addresses (inet_ntop / inet_pton).
public enum IPAddressText {
    /// "10.0.0.1" or "fe80::1" for 4 or 16 bytes; "" otherwise.
    public static func format(_ ip: [UInt8]) -> String {
        guard ip.count == 4 || ip.count == 16 else { return "" }
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let ok = ip.withUnsafeBytes { raw in
            inet_ntop(ip.count == 4 ? AF_INET : AF_INET6, raw.baseAddress, &text, socklen_t(text.count)) != nil
        }
        return ok ? String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
    }

    /// 4 bytes for an IPv4 address, 16 for IPv6 (brackets and a zone are accepted), else nil.
    public static func parse(_ text: String) -> [UInt8]? {
        var host = text
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if let percent = host.firstIndex(of: "%") { host = String(host[..<percent]) }
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return withUnsafeBytes(of: v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 { return withUnsafeBytes(of: v6) { Array($0) } }
        return nil
    }
}
