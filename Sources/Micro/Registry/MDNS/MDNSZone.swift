import MicroCore

/// The records this process publishes for one registered node, in both namings, and the
/// answers they give to a question.
struct MDNSZone: Sendable {
    let record: ServiceRecord  // holds one node
    let nodeID: String
    let ttl: UInt32
    let port: UInt16
    /// The node's own IP when it is bound to one; nil for a wildcard or loopback address, whose
    /// A/AAAA records then carry the addresses of the interface a packet goes out on.
    let fixedAddress: [UInt8]?
    private let names: MDNSNames
    private let goMicroText: [[UInt8]]
    private let sdText: [[UInt8]]

    struct Invalid: Error, CustomStringConvertible {
        let description: String
    }

    init(record: ServiceRecord, names: MDNSNames, ttl: UInt32) throws(Invalid) {
        guard let node = record.nodes.first else { throw Invalid(description: "no node") }
        guard let colon = node.address.lastIndex(of: ":"), let port = UInt16(node.address[node.address.index(after: colon)...]),
            port != 0
        else { throw Invalid(description: "node \(node.id): address '\(node.address)' is not host:port") }
        // go-micro's naming splits dotted names into labels; DNS-SD keeps the node id as one
        let labels = [node.id] + node.id.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            + record.name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        for label in labels where label.utf8.isEmpty || label.utf8.count > 63 {
            throw Invalid(description: "'\(label)' in '\(record.name)' / '\(node.id)' cannot be a DNS label (1 to 63 bytes)")
        }
        guard names.goMicroInstance(node.id, record.name).wireLength <= DNSMessage.maxNameLength else {
            throw Invalid(description: "node \(node.id) of \(record.name): the name is longer than 255 bytes")
        }
        self.record = record
        self.nodeID = node.id
        self.ttl = ttl
        self.port = port
        self.names = names
        let host = String(node.address[..<colon])
        if let ip = IPAddressText.parse(host), !Self.isWildcardOrLoopback(ip) {
            fixedAddress = ip
        } else {
            fixedAddress = nil
        }
        goMicroText = MDNSText.encodeGoMicro(
            MDNSText.GoMicro(metadata: node.metadata, service: record.name, version: record.version, endpoints: record.endpoints))
        sdText = MDNSText.keyValueStrings([
            ("txtvers", "1"),
            ("service", record.name),
            ("version", record.version),
            ("protocols", node.metadata["protocols"] ?? ""),
        ])
    }

    static func isWildcardOrLoopback(_ ip: [UInt8]) -> Bool {
        if ip.count == 4 { return ip == [0, 0, 0, 0] || ip[0] == 127 }
        return ip == [UInt8](repeating: 0, count: 16) || ip == [UInt8](repeating: 0, count: 15) + [1]
    }

    private var serviceName: String { record.name }
    private var goMicroInstance: DNSName { names.goMicroInstance(nodeID, serviceName) }
    private var sdInstance: DNSName { names.sdInstance(nodeID) }
    private var host: DNSName { names.host(nodeID) }
    private var listingInstance: DNSName { names.listingInstance(serviceName) }

    /// Shared records (PTR) are owned by many responders; unique ones carry the cache-flush bit
    /// in multicast answers.
    private func shared(_ name: DNSName, _ data: DNSRecordData) -> DNSRecord {
        DNSRecord(name: name, data: data, ttl: ttl, rawClass: 1)
    }

    private func unique(_ name: DNSName, _ data: DNSRecordData) -> DNSRecord {
        DNSRecord(name: name, data: data, ttl: ttl, rawClass: 0x8001)
    }

    private func addresses(ipv4: [[UInt8]], ipv6: [[UInt8]]) -> [DNSRecord] {
        if let fixedAddress {
            return [unique(host, fixedAddress.count == 4 ? .a(fixedAddress) : .aaaa(fixedAddress))]
        }
        return ipv4.map { unique(host, .a($0)) } + ipv6.map { unique(host, .aaaa($0)) }
    }

    private func goMicroRecords() -> [DNSRecord] {
        [
            unique(goMicroInstance, .srv(priority: 10, weight: 1, port: port, target: host)),
            unique(goMicroInstance, .txt(goMicroText)),
        ]
    }

    private func sdRecords() -> [DNSRecord] {
        [
            unique(sdInstance, .srv(priority: 0, weight: 0, port: port, target: host)),
            unique(sdInstance, .txt(sdText)),
        ]
    }

    /// go-micro's listing wildcard, as its registry publishes it (hashicorp's client only reports
    /// an entry that has a port, an address and a TXT record).
    private func listingRecords() -> [DNSRecord] {
        [
            unique(listingInstance, .srv(priority: 10, weight: 1, port: 9999, target: listingInstance)),
            unique(listingInstance, .txt([[]])),  // one empty string: an empty TXT record
            unique(listingInstance, .a([0, 0, 0, 0])),
        ]
    }

    private var pointers: [DNSRecord] {
        [
            shared(names.goMicroService(serviceName), .ptr(goMicroInstance)),
            shared(names.serviceType, .ptr(sdInstance)),
            shared(names.listing, .ptr(listingInstance)),
            shared(names.sdEnumerationDomain, .ptr(names.goMicroService(serviceName))),
            shared(names.sdEnumerationLocal, .ptr(names.serviceType)),
        ]
    }

    /// Everything, for an announcement on an interface with these addresses.
    func announcement(ipv4: [[UInt8]], ipv6: [[UInt8]]) -> [DNSRecord] {
        pointers + goMicroRecords() + sdRecords() + listingRecords() + addresses(ipv4: ipv4, ipv6: ipv6)
    }

    /// The node's own records with TTL 0 (RFC 6762 §10.1). The enumeration and listing records
    /// are shared with the service's other nodes and stay.
    func goodbye(ipv4: [[UInt8]], ipv6: [[UInt8]]) -> [DNSRecord] {
        let own = [pointers[0], pointers[1]] + goMicroRecords() + sdRecords() + addresses(ipv4: ipv4, ipv6: ipv6)
        return own.map { record in
            var record = record
            record.ttl = 0
            return record
        }
    }

    /// The answers to `question` and the additional records that save the asker another query
    /// (RFC 6763 §12): SRV, TXT and addresses of an instance named by a PTR answer.
    func answer(_ question: DNSQuestion, ipv4: [[UInt8]], ipv6: [[UInt8]]) -> (answers: [DNSRecord], additionals: [DNSRecord]) {
        guard question.dnsClass == 1 || question.dnsClass == 255 else { return ([], []) }
        let all = pointers + goMicroRecords() + sdRecords() + listingRecords() + addresses(ipv4: ipv4, ipv6: ipv6)
        let answers = all.filter { $0.name == question.name && (question.type == DNSType.any || question.type == $0.type) }
        var additionals: [DNSRecord] = []
        for answer in answers {
            switch answer.data {
            case .ptr(let target) where target == goMicroInstance:
                additionals += goMicroRecords() + addresses(ipv4: ipv4, ipv6: ipv6)
            case .ptr(let target) where target == sdInstance:
                additionals += sdRecords() + addresses(ipv4: ipv4, ipv6: ipv6)
            case .ptr(let target) where target == listingInstance:
                additionals += listingRecords()
            case .srv(_, _, _, let target) where target == host:
                additionals += addresses(ipv4: ipv4, ipv6: ipv6)
            default: break
            }
        }
        var seen = Set(answers)
        additionals = additionals.filter { seen.insert($0).inserted }
        return (answers, additionals)
    }
}
