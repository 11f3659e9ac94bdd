#if canImport(MicroCore)  // the mdns fuzz target compiles this file with NetworkInterface.swift, no MicroCore
import MicroCore
#endif

/// The records heard on the network, each until its TTL runs out, and the nodes they describe.
struct MDNSCache {
    struct Key: Hashable {
        var name: DNSName
        var data: DNSRecordData
    }

    struct Entry {
        var record: DNSRecord
        var received: ContinuousClock.Instant
        var expires: ContinuousClock.Instant
        /// The interface it came in on (0 if unknown): the zone of a link-local address.
        var interface: UInt32 = 0
    }

    /// A bound on what a flood of distinct records can make us hold.
    static let maxEntries = 4096

    private(set) var entries: [Key: Entry] = [:]
    private var byName: [DNSName: Set<Key>] = [:]

    /// Adds or refreshes a record; TTL 0 (a goodbye) removes it. A record with the cache-flush
    /// bit replaces the other records of its name and type received more than a second ago
    /// (RFC 6762 §10.2). Returns true if the cache changed in a way a view could notice.
    @discardableResult
    mutating func insert(_ record: DNSRecord, now: ContinuousClock.Instant, interface: UInt32 = 0) -> Bool {
        guard record.dnsClass == 1 else { return false }
        switch record.data {
        case .a, .aaaa, .ptr, .srv, .txt: break
        case .other: return false
        }
        let key = Key(name: record.name, data: record.data)
        if record.ttl == 0 { return remove(key) }
        var changed = false
        if record.cacheFlush {
            for other in byName[record.name] ?? [] where other != key && other.data.type == record.type {
                if let entry = entries[other], now - entry.received > .seconds(1) { changed = remove(other) || changed }
            }
        }
        if entries[key] == nil {
            guard entries.count < Self.maxEntries else { return changed }
            changed = true
        }
        entries[key] = Entry(record: record, received: now, expires: now + .seconds(Int64(record.ttl)), interface: interface)
        byName[record.name, default: []].insert(key)
        return changed
    }

    @discardableResult
    private mutating func remove(_ key: Key) -> Bool {
        guard entries.removeValue(forKey: key) != nil else { return false }
        byName[key.name]?.remove(key)
        if byName[key.name]?.isEmpty == true { byName[key.name] = nil }
        return true
    }

    /// Drops the expired records; true if any was.
    mutating func expire(now: ContinuousClock.Instant) -> Bool {
        let expired = entries.filter { $0.value.expires <= now }.map(\.key)
        for key in expired { remove(key) }
        return !expired.isEmpty
    }

    var nextExpiry: ContinuousClock.Instant? { entries.values.map(\.expires).min() }

    func records(named name: DNSName) -> [DNSRecord] {
        (byName[name] ?? []).compactMap { entries[$0]?.record }.sorted { "\($0.data)" < "\($1.data)" }
    }

    /// The nodes the cache describes completely (SRV, TXT and an address), by node id, each as a
    /// service record holding that one node. go-micro's naming wins over DNS-SD for a node that
    /// publishes both (it carries the endpoints).
    func nodes(names: MDNSNames) -> [String: ServiceRecord] {
        var result: [String: ServiceRecord] = [:]
        var sdNodes: [String: ServiceRecord] = [:]
        for (name, keys) in byName {
            guard keys.contains(where: { $0.data.type == DNSType.txt }) else { continue }
            if name.hasSuffix(names.domain) {
                guard let txt = text(of: name), let decoded = MDNSText.decodeGoMicro(txt),
                    let node = names.parseGoMicroInstance(name, service: decoded.service), let address = address(of: name)
                else { continue }
                result[node] = ServiceRecord(
                    name: decoded.service, version: decoded.version, endpoints: decoded.endpoints,
                    nodes: [Node(id: node, address: address, metadata: decoded.metadata)])
            } else if let node = names.parseSDInstance(name) {
                guard let txt = text(of: name) else { continue }
                let pairs = MDNSText.keyValues(txt)
                guard let service = pairs["service"], !service.isEmpty, let address = address(of: name) else { continue }
                var metadata = pairs
                metadata["service"] = nil
                metadata["version"] = nil
                metadata["txtvers"] = nil
                sdNodes[node] = ServiceRecord(
                    name: service, version: pairs["version"] ?? "latest",
                    nodes: [Node(id: node, address: address, metadata: metadata)])
            }
        }
        for (node, record) in sdNodes where result[node] == nil { result[node] = record }
        return result
    }

    private func text(of name: DNSName) -> [[UInt8]]? {
        for record in records(named: name) {
            if case .txt(let strings) = record.data { return strings }
        }
        return nil
    }

    /// `ip:port` from the SRV record and its target's addresses: IPv4 first (as go-micro does),
    /// then a global IPv6 address, then a link-local one with the zone it was heard on.
    private func address(of name: DNSName) -> String? {
        for record in records(named: name) {
            guard case .srv(_, _, let port, let target) = record.data else { continue }
            var v4: [UInt8]?
            var v6: [UInt8]?
            var linkLocal: String?
            for host in [target, name] {
                let heard = (byName[host] ?? []).compactMap { entries[$0] }.sorted { "\($0.record.data)" < "\($1.record.data)" }
                for entry in heard {
                    switch entry.record.data {
                    case .a(let ip) where v4 == nil && ip != [0, 0, 0, 0]: v4 = ip
                    case .aaaa(let ip) where ip[0] == 0xFE && ip[1] & 0xC0 == 0x80:
                        if linkLocal == nil, let zone = NetworkInterface.name(ofIndex: entry.interface) {
                            linkLocal = "[\(IPAddressText.format(ip))%\(zone)]:\(port)"
                        }
                    case .aaaa(let ip) where v6 == nil: v6 = ip
                    default: break
                    }
                }
            }
            if let v4 { return "\(IPAddressText.format(v4)):\(port)" }
            if let v6 { return "[\(IPAddressText.format(v6))]:\(port)" }
            if let linkLocal { return linkLocal }
        }
        return nil
    }
}
