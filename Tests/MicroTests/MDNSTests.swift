import Foundation
@testable import Micro
import MicroTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The mDNS registry on the wire: only inside network namespaces that each test creates (two,
/// joined by a veth pair), against itself and against real peers we did not write (Python's
/// zeroconf, Go's hashicorp/mdns). Nothing here sends a packet on the host's own interfaces.
@Suite struct MDNSTests {
    static let peers = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Peers")
    static var micro: String { Tool.binDirectory.appendingPathComponent("micro").path }
    static let mdns = ["MICRO_REGISTRY": "mdns"]
    /// A listing waits for whatever answers within the timeout: 5 s here, not the default 1 s,
    /// which a sanitized peer on a loaded machine has missed.
    static let listing = ["MICRO_MDNS_TIMEOUT": "5"]

    /// helloworld in namespace A, registered over mDNS, bound to every address of A.
    static func helloworld(_ net: NetworkNamespaces, environment: [String: String] = [:]) async throws -> ChildService {
        let child = try await ChildService(
            "helloworld", environment: ["MICRO_REGISTRY": "mdns", "MICRO_SERVER_ADDRESS": "0.0.0.0:0"].merging(environment) { $1 },
            launcher: net.exec(net.a))
        _ = await child.waitForLine(containing: "registered node")
        return child
    }

    /// `micro ARGS` in namespace B (or the one given).
    static func micro(
        _ net: NetworkNamespaces, _ arguments: [String], in namespace: String? = nil, environment: [String: String] = [:]
    ) async throws -> ToolResult {
        try await Tool.run(
            "ip", ["netns", "exec", namespace ?? net.b, micro] + arguments, environment: mdns.merging(environment) { $1 },
            timeout: .seconds(300))
    }

    @Test func aServiceIsFoundCalledAndGoneAfterSIGTERM() async throws {
        let net = try await NetworkNamespaces()
        defer { net.remove() }
        let watch = try LineProcess(net.exec(net.b) + [Self.micro, "watch", "helloworld"], environment: Self.mdns)
        defer { watch.stop() }
        let service = try await Self.helloworld(net)
        defer { service.stop() }

        let created = try #require(await watch.waitForLine(containing: #""action":"create""#))
        #expect(created.contains(#""address":"\#(net.addressA):\#(service.port)""#))

        let call = try await Self.micro(net, ["call", "helloworld", "Helloworld.Greeting", #"{"name":"x"}"#] + Duration.hangGuardOption)
        #expect(call.status == 0, "\(call.stderr)")
        #expect(call.stdout == #"{"message":"Hello x"}"# + "\n")
        let services = try await Self.micro(net, ["services"], environment: Self.listing)
        #expect(services.stdout == "helloworld\tlatest\t1 node\n", "\(services.stderr)")

        // SIGTERM: the service says goodbye (TTL 0) before it stops
        service.signal(SIGTERM)
        #expect(await service.waitForExit() == 0)
        let deleted = await watch.waitForLine(containing: #""action":"delete""#)
        #expect(deleted?.contains(#""name":"helloworld""#) == true, "\(watch.output)")
        let gone = try await Self.micro(net, ["describe", "helloworld"])
        #expect(gone.status != 0)
        #expect(gone.stderr.contains("not found"))
    }

    @Test func aKilledNodeLeavesWatchesWhenItsTTLRunsOut() async throws {
        let net = try await NetworkNamespaces()
        defer { net.remove() }
        let watch = try LineProcess(net.exec(net.b) + [Self.micro, "watch", "helloworld"], environment: Self.mdns)
        defer { watch.stop() }
        // records live 2 s, refreshed every half second; SIGKILL: no goodbye
        let service = try await Self.helloworld(net, environment: ["MICRO_REGISTER_TTL": "2", "MICRO_REGISTER_INTERVAL": "0.5"])
        defer { service.stop() }
        #expect(await watch.waitForLine(containing: #""action":"create""#) != nil, "\(watch.output)")
        service.stop()
        let deleted = await watch.waitForLine(containing: #""action":"delete""#)
        #expect(deleted?.contains(#""address":"\#(net.addressA):\#(service.port)""#) == true, "\(watch.output)")
    }

    @Test func anIPv6OnlyLinkWorksWithLinkLocalAddresses() async throws {
        let net = try await NetworkNamespaces(ipv4: false)
        defer { net.remove() }
        let service = try await Self.helloworld(net, environment: ["MICRO_SERVER_ADDRESS": "[::]:0"])
        defer { service.stop() }
        let described = try await Self.micro(net, ["describe", "helloworld"])
        #expect(described.status == 0, "\(described.stderr)")
        // fe80::...%mdbXXXX: the zone is the interface the answer came in on, in namespace B
        #expect(described.stdout.contains("%\(net.interfaceB)]:\(service.port)"), "\(described.stdout)")
        let call = try await Self.micro(net, ["call", "helloworld", "Helloworld.Greeting", #"{"name":"v6"}"#] + Duration.hangGuardOption)
        #expect(call.stdout == #"{"message":"Hello v6"}"# + "\n", "\(call.stderr)")
    }

    @Test func MICRO_MDNS_INTERFACEChoosesTheInterfaces() async throws {
        let net = try await NetworkNamespaces()
        defer { net.remove() }
        // on loopback only: seen inside namespace A, by a registry on loopback too, and nowhere else
        let service = try await Self.helloworld(net, environment: ["MICRO_MDNS_INTERFACE": "lo"])
        defer { service.stop() }
        let local = try await Self.micro(net, ["describe", "helloworld"], in: net.a, environment: ["MICRO_MDNS_INTERFACE": "lo"])
        #expect(local.status == 0, "\(local.stderr)")
        #expect(local.stdout.contains(#""address" : "127.0.0.1:\#(service.port)""#), "\(local.stdout)")
        let otherInterface = try await Self.micro(net, ["describe", "helloworld"], in: net.a)
        #expect(otherInterface.stderr.contains("not found"), "\(otherInterface.stdout)")
        let otherNamespace = try await Self.micro(net, ["describe", "helloworld"])
        #expect(otherNamespace.stderr.contains("not found"), "\(otherNamespace.stdout)")
    }

    @Test func zeroconfBrowsesAndResolvesOurNode() async throws {
        let net = try await NetworkNamespaces()
        defer { net.remove() }
        let service = try await Self.helloworld(net)
        defer { service.stop() }
        let browser = try LineProcess(net.exec(net.b) + ["python3", Self.peers.appendingPathComponent("zeroconf_peer.py").path, "browse"])
        defer { browser.stop() }

        let line = try #require(await browser.waitForLine(containing: #""event": "add""#), "\(browser.output)")
        struct Added: Decodable {
            var name: String
            var addresses: [String]
            var port: Int
            var txt: [String: String]
        }
        let added = try JSONDecoder().decode(Added.self, from: Data(line.utf8))
        #expect(added.name.hasPrefix("helloworld-") && added.name.hasSuffix("._micro._tcp.local."))
        #expect(added.addresses == [net.addressA])
        #expect(added.port == service.port)
        #expect(added.txt["service"] == "helloworld")
        #expect(added.txt["version"] == "latest")
        #expect(added.txt["protocols"]?.contains("h2c") == true)

        // and zeroconf hears the goodbye
        service.signal(SIGTERM)
        #expect(await browser.waitForLine(containing: #""event": "remove""#) != nil, "\(browser.output)")
    }

    @Test func aZeroconfNodeIsSeenByOurRegistry() async throws {
        let net = try await NetworkNamespaces()
        defer { net.remove() }
        let peer = try LineProcess(
            net.exec(net.a) + ["python3", Self.peers.appendingPathComponent("zeroconf_peer.py").path, "register", "pynode", "pysvc", "7070", net.addressA])
        defer { peer.stop() }
        #expect(await peer.waitForLine(containing: "ready") != nil, "\(peer.output)")

        let described = try await Self.micro(net, ["describe", "pysvc"])
        #expect(described.status == 0, "\(described.stderr)")
        let records = try JSONDecoder().decode([ServiceRecord].self, from: Data(described.stdout.utf8))
        #expect(records.map(\.version) == ["0.9"])
        #expect(records.first?.nodes == [Node(id: "pynode", address: "\(net.addressA):7070", metadata: ["protocols": "h2c"])])
        let services = try await Self.micro(net, ["services"], environment: Self.listing)
        #expect(services.stdout.contains("pysvc\t0.9\t1 node\n"), "\(services.stdout) \(services.stderr)")
    }

    /// Builds Tests/Peers/mdns_peer.go against Debian's hashicorp/mdns (GOPATH mode).
    static func buildGoPeer() async throws -> (binary: String, directory: URL) {
        try await GoPeer.build("mdns_peer", packages: "golang-github-hashicorp-mdns-dev")
    }

    @Test func hashicorpMDNSFindsOurNodeAndDecodesItsTXTTheGoMicroWay() async throws {
        let peer = try await Self.buildGoPeer()
        defer { try? FileManager.default.removeItem(at: peer.directory) }
        let net = try await NetworkNamespaces()
        defer { net.remove() }
        let service = try await Self.helloworld(net)
        defer { service.stop() }

        let query = try await Tool.run("ip", ["netns", "exec", net.b, peer.binary, "query", "helloworld", "micro"], timeout: .seconds(300))
        #expect(query.status == 0, "\(query.stderr)")
        struct Found: Decodable {
            var id: String
            var address: String
            var service: String
            var version: String
            var metadata: [String: String]
            var endpoints: [String]
        }
        let found = try JSONDecoder().decode(Found.self, from: Data(query.stdout.utf8))
        #expect(found.id.hasPrefix("helloworld-"))
        #expect(found.address == "\(net.addressA):\(service.port)")
        #expect(found.service == "helloworld")
        #expect(found.version == "latest")
        #expect(found.metadata["protocols"] == "http/1.1,h2c,grpc")
        #expect(found.endpoints.contains("Helloworld.Greeting"))
    }

    @Test func aHashicorpMDNSNodeIsSeenByOurRegistry() async throws {
        let peer = try await Self.buildGoPeer()
        defer { try? FileManager.default.removeItem(at: peer.directory) }
        let net = try await NetworkNamespaces()
        defer { net.remove() }
        // go-micro's own naming style: dotted service names and node ids
        let go = try LineProcess(
            net.exec(net.a) + [peer.binary, "register", "go.micro.srv.peer-42", "go.micro.srv.peer", "micro", "9090", net.addressA])
        defer { go.stop() }
        #expect(await go.waitForLine(containing: "ready") != nil, "\(go.output)")

        let described = try await Self.micro(net, ["describe", "go.micro.srv.peer"])
        #expect(described.status == 0, "\(described.stderr)")
        let records = try JSONDecoder().decode([ServiceRecord].self, from: Data(described.stdout.utf8))
        #expect(records.count == 1)
        #expect(records.first?.version == "1.2.3")
        #expect(records.first?.nodes == [Node(id: "go.micro.srv.peer-42", address: "\(net.addressA):9090", metadata: ["server": "go-peer", "protocols": "mucp"])])
        #expect(records.first?.endpoints.map(\.name) == ["Peer.Hello"])
        #expect(records.first?.endpoints.first?.request?.values == [Value(name: "name", type: "string")])
        // go-micro's listing wildcard names the service; its nodes are then asked for
        let services = try await Self.micro(net, ["services"], environment: Self.listing)
        #expect(services.stdout.contains("go.micro.srv.peer\t1.2.3\t1 node\n"), "\(services.stdout) \(services.stderr)")
    }

    @Test func hostilePacketsAreDroppedAndTheServiceKeepsWorking() async throws {
        let net = try await NetworkNamespaces()
        defer { net.remove() }
        let service = try await Self.helloworld(net)
        defer { service.stop() }
        // garbage, by multicast and by unicast to 5353, from namespace B
        let packets = Self.hostilePackets.map { MDNSText.hexDigits($0) }
        let script = """
            import socket, sys
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(sys.argv[1]))
            for h in sys.argv[3:]:
                for dest in ("224.0.0.251", sys.argv[2]):
                    s.sendto(bytes.fromhex(h), (dest, 5353))
            """
        let sent = try await Tool.run("ip", ["netns", "exec", net.b, "python3", "-c", script, net.addressB, net.addressA] + packets)
        #expect(sent.status == 0, "\(sent.stderr)")
        let call = try await Self.micro(net, ["call", "helloworld", "Helloworld.Greeting", #"{"name":"after"}"#] + Duration.hangGuardOption)
        #expect(call.stdout == #"{"message":"Hello after"}"# + "\n", "\(call.stderr)")
        #expect(kill(service.pid, 0) == 0)
    }

    /// Malformed DNS: each must be refused by the parser or yield nothing harmful.
    static let hostilePackets: [[UInt8]] = {
        var packets: [[UInt8]] = [[], [0], Array(repeating: 0xFF, count: 12), Array(repeating: 0xC0, count: 600)]
        // a response claiming 65535 answers with none present
        packets.append([0, 0, 0x84, 0, 0, 0, 0xFF, 0xFF, 0, 0, 0, 0])
        // a question whose name is a pointer to itself, and two pointers to each other
        packets.append([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 12, 0, 1])
        packets.append([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0x61, 0xC0, 12, 0, 12, 0, 1])
        // a label running past the end; a reserved label type
        packets.append([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63, 0x61])
        packets.append([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x80, 0, 0, 12, 0, 1])
        // a response whose TXT record holds a "go-micro" payload that is a zlib bomb
        let bomb = Gzip.compress([UInt8](repeating: 0x20, count: 8 << 20), format: .zlib)
        let hex = Array(MDNSText.hexDigits(bomb).utf8)
        let strings = stride(from: 0, to: min(hex.count, 6000), by: 255).map { Array(hex[$0..<min($0 + 255, hex.count)]) }
        let bombMessage = DNSMessage(
            flags: DNSMessage.responseFlag,
            answers: [DNSRecord(name: DNSName("n1.helloworld.micro."), data: .txt(strings), ttl: 120)])
        packets.append((try? bombMessage.encoded()) ?? [])
        // an A record of 5 bytes; a TXT string longer than its record
        packets.append([0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0x61, 0, 0, 1, 0, 1, 0, 0, 0, 10, 0, 5, 1, 2, 3, 4, 5])
        packets.append([0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0x61, 0, 0, 16, 0, 1, 0, 0, 0, 10, 0, 2, 9, 0x61])
        return packets
    }()
}

/// The codec and the record logic, in process (no packet leaves it).
@Suite struct MDNSMessageTests {
    @Test func messagesRoundTripWithCompression() throws {
        let names = MDNSNames()
        let record = ServiceRecord(
            name: "helloworld", version: "1.0", endpoints: [Endpoint(name: "Helloworld.Greeting")],
            nodes: [Node(id: "helloworld-1", address: "0.0.0.0:8080", metadata: ["protocols": "h2c"])])
        let zone = try MDNSZone(record: record, names: names, ttl: 120)
        let message = DNSMessage(
            flags: DNSMessage.responseFlag | DNSMessage.authoritativeFlag,
            answers: zone.announcement(ipv4: [[10, 0, 0, 1]], ipv6: [[0xFE, 0x80] + [UInt8](repeating: 0, count: 13) + [1]]))
        let bytes = try message.encoded()
        #expect(try DNSMessage(parsing: bytes) == message)
        // compression: each domain's label is written once
        func occurrences(_ label: String) -> Int {
            let needle = [UInt8(label.utf8.count)] + Array(label.utf8)
            return (0...(bytes.count - needle.count)).filter { Array(bytes[$0..<$0 + needle.count]) == needle }.count
        }
        #expect(occurrences("micro") == 1)
        #expect(occurrences("local") == 1)
    }

    @Test func aCacheFedWithAnAnnouncementDescribesTheNode() throws {
        let names = MDNSNames()
        let record = ServiceRecord(
            name: "helloworld", version: "1.0",
            endpoints: [Endpoint(name: "Helloworld.Greeting", request: Value(name: "Request", type: "Request", values: [Value(name: "name", type: "string")]))],
            nodes: [Node(id: "helloworld-1", address: "0.0.0.0:8080", metadata: ["protocols": "h2c"])])
        let zone = try MDNSZone(record: record, names: names, ttl: 120)
        var cache = MDNSCache()
        let now = ContinuousClock.now
        for r in zone.announcement(ipv4: [[10, 0, 0, 1]], ipv6: []) { cache.insert(r, now: now) }
        var expected = record
        expected.nodes[0].address = "10.0.0.1:8080"
        #expect(cache.nodes(names: names) == ["helloworld-1": expected])
        for r in zone.goodbye(ipv4: [[10, 0, 0, 1]], ipv6: []) { cache.insert(r, now: now) }
        #expect(cache.nodes(names: names).isEmpty)
        // TTL expiry
        for r in zone.announcement(ipv4: [[10, 0, 0, 1]], ipv6: []) { cache.insert(r, now: now) }
        let expired = cache.expire(now: now + .seconds(121))
        #expect(expired)
        #expect(cache.nodes(names: names).isEmpty)
    }

    @Test func MICRO_REGISTRYmdnsSelectsIt() throws {
        #expect(Registries.fromEnvironment(["MICRO_REGISTRY": "mdns", "MICRO_MDNS_INTERFACE": "eth9, eth8"]) is MDNSRegistry)
        #expect(try MDNSRegistry.Configuration.fromEnvironment(["MICRO_MDNS_INTERFACE": "eth9, eth8"]).interfaces == ["eth9", "eth8"])
        #expect(try MDNSRegistry.Configuration.fromEnvironment([:]).interfaces == nil)
        #expect(try MDNSRegistry.Configuration.fromEnvironment(["MICRO_MDNS_TIMEOUT": "2.5"]).timeout == .milliseconds(2500))
        #expect(Registries.environmentError(["MICRO_REGISTRY": "mdns", "MICRO_MDNS_TIMEOUT": "2.5"]) == nil)
        // a timeout that is no number of seconds: the service (and micro) says so and does not start
        for bad in ["abc", "0", "-1", "nan", "1e9"] {
            let problem = Registries.environmentError(["MICRO_REGISTRY": "mdns", "MICRO_MDNS_TIMEOUT": bad])
            #expect(problem?.contains("MICRO_MDNS_TIMEOUT must be a number of seconds above 0, not '\(bad)'") == true, "\(String(describing: problem))")
        }
    }

    @Test func dottedServiceNamesAndNodeIDsAreSeveralLabelsAsInGoMicro() throws {
        let names = MDNSNames()
        let record = ServiceRecord(
            name: "go.micro.srv.greeter", version: "latest",
            nodes: [Node(id: "go.micro.srv.greeter-5e1f", address: "10.0.0.7:9000", metadata: [:])])
        let zone = try MDNSZone(record: record, names: names, ttl: 120)
        let announcement = zone.announcement(ipv4: [[10, 0, 0, 1]], ipv6: [])
        #expect(announcement.contains { $0.name.description == "go.micro.srv.greeter-5e1f.go.micro.srv.greeter.micro." })
        var cache = MDNSCache()
        for r in announcement { cache.insert(r, now: .now) }
        #expect(cache.nodes(names: names) == ["go.micro.srv.greeter-5e1f": record])
    }

    @Test func goMicroTXTRoundTripsAndIsCutInto255ByteStrings() throws {
        let endpoints = (0..<40).map { Endpoint(name: "Service.Method\($0)", request: Value(name: "R\($0)", type: "R\($0)")) }
        let text = MDNSText.GoMicro(metadata: ["a": "b"], service: "svc", version: "v1", endpoints: endpoints)
        let strings = MDNSText.encodeGoMicro(text)
        #expect(strings.count > 1)
        #expect(strings.allSatisfy { $0.count <= 255 })
        #expect(MDNSText.decodeGoMicro(strings) == text)
        // Go's encoding of {"Metadata":null,"Service":"s","Version":"v","Endpoints":null}
        let json = Array(#"{"Metadata":null,"Service":"s","Version":"v","Endpoints":null}"#.utf8)
        let decoded = MDNSText.decodeGoMicro([Array(MDNSText.hexDigits(Gzip.compress(json, format: .zlib)).utf8)])
        #expect(decoded == MDNSText.GoMicro(metadata: [:], service: "s", version: "v", endpoints: []))
    }

    @Test(arguments: MDNSTests.hostilePackets)
    func hostilePacketsAreRefusedOrHarmless(_ packet: [UInt8]) {
        guard let message = try? DNSMessage(parsing: packet) else { return }
        var cache = MDNSCache()
        for record in message.answers + message.additionals { cache.insert(record, now: .now) }
        #expect(cache.nodes(names: MDNSNames()).isEmpty)
    }

    @Test func pointerLoopsAndOverlongNamesAreRefused() {
        // a pointer to itself
        #expect(throws: DNSParseError.self) { try DNSMessage(parsing: [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1]) }
        // a label followed by a pointer back to it: a cycle, ended by the bounds
        #expect(throws: DNSParseError.self) { try DNSMessage(parsing: [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0x61, 0xC0, 12, 0, 1, 0, 1]) }
        // 300 bytes of labels
        var long: [UInt8] = [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
        for _ in 0..<5 { long += [60] + [UInt8](repeating: 0x61, count: 60) }
        long += [0, 0, 1, 0, 1]
        #expect(throws: DNSParseError.self) { try DNSMessage(parsing: long) }
    }
}
