/// The names the mDNS registry publishes and reads, in its two namings.
///
/// go-micro's (domain `micro.`, what go-micro's mdns registry and hashicorp/mdns put on the wire):
/// - `SERVICE.micro.` PTR `NODEID.SERVICE.micro.`, which has SRV (priority 10, weight 1) and TXT
///   (hex of zlib of the JSON `{"Metadata","Service","Version","Endpoints"}`, 255-byte strings);
/// - `_services.micro.` PTR `SERVICE._services.micro.` (go-micro's listing wildcard: SRV port
///   9999, A 0.0.0.0, empty TXT) and `_services._dns-sd._udp.micro.` PTR `SERVICE.micro.`.
///
/// Standard DNS-SD (RFC 6763), for generic browsers (`SERVICE.micro.` is no valid service type):
/// - `_micro._tcp.local.` PTR `NODEID._micro._tcp.local.`, with SRV and TXT `service=`,
///   `version=`, `protocols=`; `_services._dns-sd._udp.local.` PTR `_micro._tcp.local.`.
///
/// Both SRV records point at `NODEID.local.`, which holds the node's A/AAAA records: a host name
/// per node, because processes on one machine in different network namespaces share a host
/// name but not their addresses.
struct MDNSNames: Sendable {
    /// go-micro's domain, `micro.` by default.
    let domain: DNSName
    let local = DNSName("local.")
    let serviceType = DNSName("_micro._tcp.local.")
    let sdEnumerationLocal = DNSName("_services._dns-sd._udp.local.")

    init(domain: String = "micro") {
        self.domain = DNSName(domain)
    }

    var sdEnumerationDomain: DNSName { DNSName(labels: DNSName("_services._dns-sd._udp").labels + domain.labels) }
    var listing: DNSName { DNSName("_services", under: domain) }

    /// `SERVICE.micro.`: a dotted service name (`go.micro.srv.greeter`) is several labels, as
    /// go-micro (miekg/dns) writes it; so is a dotted node id in the instance name.
    func goMicroService(_ service: String) -> DNSName { DNSName(labels: DNSName(service).labels + domain.labels) }
    func goMicroInstance(_ node: String, _ service: String) -> DNSName {
        DNSName(labels: DNSName(node).labels + goMicroService(service).labels)
    }
    func listingInstance(_ service: String) -> DNSName { DNSName(labels: DNSName(service).labels + listing.labels) }
    func sdInstance(_ node: String) -> DNSName { DNSName(node, under: serviceType) }
    /// `NODEID.local.`, dots in the id made dashes: a host name is read as dotted text by
    /// resolvers.
    func host(_ node: String) -> DNSName { DNSName(String(node.map { $0 == "." ? "-" : $0 }), under: local) }

    /// The service a go-micro listing record (`SERVICE._services.micro.`) names.
    func parseListingInstance(_ name: DNSName) -> String? {
        guard let labels = name.labels(before: listing), !labels.isEmpty else { return nil }
        return labels.map { String(decoding: $0, as: UTF8.self) }.joined(separator: ".")
    }

    /// The node id of `NODEID.SERVICE.micro.`, given the service its TXT record names (the name
    /// alone is ambiguous when either holds dots; go-micro strips the suffix the same way).
    func parseGoMicroInstance(_ name: DNSName, service: String) -> String? {
        guard let labels = name.labels(before: goMicroService(service)), !labels.isEmpty else { return nil }
        return labels.map { String(decoding: $0, as: UTF8.self) }.joined(separator: ".")
    }

    /// The instance label of `INSTANCE._micro._tcp.local.`.
    func parseSDInstance(_ name: DNSName) -> String? {
        guard let labels = name.labels(before: serviceType), labels.count == 1 else { return nil }
        return String(decoding: labels[0], as: UTF8.self)
    }
}
