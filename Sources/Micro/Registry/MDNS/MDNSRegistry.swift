import Foundation
public import Logging
public import MicroCore
import Synchronization

/// The registry for one LAN with nothing to install: multicast DNS (RFC 6762) and DNS-SD
/// (RFC 6763) on 224.0.0.251 / ff02::fb port 5353, wire-compatible with go-micro's mdns registry.
///
/// Each node is published twice: go-micro's way (`NODEID.SERVICE.micro.`, TXT = hex of zlib of
/// the service JSON), so that Go and Swift services see each other, and as a standard DNS-SD
/// instance of `_micro._tcp.local.`, so that generic browsers (avahi-browse, dns-sd, zeroconf)
/// see it too. See ``MDNSNames`` and docs/ARCHITECTURE.md.
///
/// - `register` announces the node (three unsolicited responses, 1 s then 2 s apart; a refresh
///   announces once) and answers queries for it from then on; the record TTL is the
///   registration TTL, so a node whose process died drops out of caches when it runs out.
/// - `deregister` sends goodbyes (the records with TTL 0).
/// - `getService` / `listServices` query and collect answers for a bounded time.
/// - `watch` reports the changes of a cache fed by every response heard (announcements,
///   answers, goodbyes) in which records expire with their TTL; records of watched nodes are
///   queried again at 80 % of their TTL (RFC 6762 §5.2).
///
/// Interfaces: every interface that is up, multicast-capable and not loopback, or those named in
/// `MICRO_MDNS_INTERFACE` (comma-separated). Packets from other interfaces are ignored.
///
/// Threading: every method may be called from any task; the sockets live on one event loop, where
/// packets are handled and watch handlers called.
public final class MDNSRegistry: Registry {
    /// Tunables; the defaults suit a LAN.
    public struct Configuration: Sendable {
        /// Interface names to use; nil: every multicast-capable interface that is up, except
        /// loopback.
        public var interfaces: [String]?
        /// go-micro's domain (`micro`).
        public var domain: String
        /// How long `getService` waits for a first answer.
        public var timeout: Duration
        /// How long answers are still collected after the first (other nodes answer too).
        public var answerWindow: Duration

        public init(
            interfaces: [String]? = nil, domain: String = "micro", timeout: Duration = .seconds(1),
            answerWindow: Duration = .milliseconds(150)
        ) {
            self.interfaces = interfaces
            self.domain = domain
            self.timeout = timeout
            self.answerWindow = answerWindow
        }

        /// From `MICRO_MDNS_INTERFACE` (comma-separated names) and `MICRO_MDNS_TIMEOUT` (seconds:
        /// ``timeout``; a slow or busy network answers later than the default second). Throws a
        /// one-line ``ConfigurationError`` for a timeout that is not a number of seconds above 0.
        public static func fromEnvironment(_ environment: [String: String] = MicroConfig.process.frameworkEnvironment)
            throws(ConfigurationError) -> Configuration {
            var configuration = Configuration()
            if let names = environment["MICRO_MDNS_INTERFACE"], !names.isEmpty {
                configuration.interfaces = names.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            }
            if let text = environment["MICRO_MDNS_TIMEOUT"], !text.isEmpty {
                guard let seconds = Double(text), seconds.isFinite, seconds >= 0.001, seconds <= 3600 else {
                    throw ConfigurationError(key: "micro.mdnsTimeout", reason: "MICRO_MDNS_TIMEOUT must be a number of seconds above 0, not '\(text)'")
                }
                configuration.timeout = .milliseconds(Int64(seconds * 1000))
            }
            return configuration
        }
    }

    static let port: UInt16 = 5353
    static let groupV4: [UInt8] = [224, 0, 0, 251]
    static let groupV6: [UInt8] = [0xFF, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFB]
    /// Announcements of a new node: now, then 1 s and 2 s later (RFC 6762 §8.3: at least two,
    /// one second apart, intervals doubling).
    static let announceDelays: [Duration] = [.seconds(1), .seconds(3)]
    /// TTL of answers to legacy unicast queries (RFC 6762 §6.7).
    static let legacyTTL: UInt32 = 10

    public let configuration: Configuration
    let names: MDNSNames
    let loop: EventLoop
    let logger: Logger
    let state = Mutex(State())

    public init(
        configuration: Configuration = (try? .fromEnvironment()) ?? Configuration(),
        loop: EventLoop = EventLoopGroup.shared.next(),
        logger: Logger = Logger(label: "micro.registry.mdns")
    ) {
        self.configuration = configuration
        self.names = MDNSNames(domain: configuration.domain)
        self.loop = loop
        self.logger = logger
    }

    // MARK: - Registry

    public func register(_ service: ServiceRecord, ttl: Duration) async throws {
        await start()
        let seconds = UInt32(clamping: max(1, min(4500, Int((ttl.nanosecondsValue / 1e9).rounded(.up)))))
        var zones: [MDNSZone] = []
        for node in service.nodes {
            var record = service
            record.nodes = [node]
            do {
                zones.append(try MDNSZone(record: record, names: names, ttl: seconds))
            } catch {
                throw MicroError(id: "micro.registry", code: 500, detail: "cannot publish \(service.name) over mDNS: \(error)")
            }
        }
        let now = ContinuousClock.now
        let interfaces = NetworkInterface.all()  // addresses may have changed since the last time
        let effects = state.withLock { state -> Effects in
            var effects = Effects()
            state.refreshInterfaces(from: interfaces)
            for zone in zones {
                let existing = state.zones[zone.nodeID]
                state.zones[zone.nodeID] = Published(zone: zone, lastMulticast: existing?.lastMulticast ?? [:])
                if existing?.zone.record != zone.record {
                    for delay in Self.announceDelays { state.announcements.append((now + delay, zone.nodeID)) }
                }
                announce(zone, ttlZero: false, state: &state, effects: &effects)
            }
            schedule(&state, now: now)
            return effects
        }
        await perform(effects)
    }

    public func deregister(_ service: ServiceRecord) async throws {
        await start()
        let ids = Set(service.nodes.map(\.id))
        let effects = state.withLock { state -> Effects in
            var effects = Effects()
            for id in ids {
                guard let published = state.zones.removeValue(forKey: id) else { continue }
                state.announcements.removeAll { $0.node == id }
                announce(published.zone, ttlZero: true, state: &state, effects: &effects)
            }
            return effects
        }
        await perform(effects)
    }

    public func getService(_ name: String) async throws -> [ServiceRecord] {
        await start()
        await query([DNSQuestion(name: names.goMicroService(name), type: DNSType.ptr), DNSQuestion(name: names.serviceType, type: DNSType.ptr)])
        if await waitForNode(of: name, timeout: configuration.timeout) {
            try? await Task.sleep(for: configuration.answerWindow)
        }
        let nodes = state.withLock { $0.known }
        return mergeByVersion(nodes.values.filter { $0.name == name }.sorted { $0.nodes[0].id < $1.nodes[0].id })
    }

    public func listServices() async throws -> [ServiceRecord] {
        await start()
        await query([DNSQuestion(name: names.serviceType, type: DNSType.ptr), DNSQuestion(name: names.listing, type: DNSType.ptr)])
        try? await Task.sleep(for: configuration.timeout / 2)
        // go-micro's listing names services; their nodes are asked for by name
        let (listed, known) = state.withLock { state in
            (state.cache.records(named: names.listing).compactMap { record -> String? in
                guard case .ptr(let target) = record.data else { return nil }
                return names.parseListingInstance(target)
            }, Set(state.known.values.map(\.name)))
        }
        let missing = Set(listed).subtracting(known)
        if !missing.isEmpty {
            await query(missing.sorted().map { DNSQuestion(name: names.goMicroService($0), type: DNSType.ptr) })
            try? await Task.sleep(for: configuration.timeout / 2)
        }
        let nodes = state.withLock { $0.known }
        return mergeByVersion(nodes.values.sorted { $0.nodes[0].id < $1.nodes[0].id })
            .sorted { ($0.name, $0.version) < ($1.name, $1.version) }
    }

    public func watch(service: String?, _ handler: @escaping @Sendable (RegistryEvent) -> Void) throws -> RegistryWatch {
        let id = state.withLock { state in
            state.nextID += 1
            state.watchers[state.nextID] = Watcher(service: service, handler: handler)
            return state.nextID
        }
        // the sockets open in the background; a first query (from 5353, so that the answers
        // are multicast) makes the nodes already there known without waiting for their next
        // announcement
        var questions = [DNSQuestion(name: names.serviceType, type: DNSType.ptr)]
        if let service { questions.append(DNSQuestion(name: names.goMicroService(service), type: DNSType.ptr)) }
        Task(executorPreference: loop) { [weak self, questions] in
            await self?.start()
            await self?.query(questions, oneShot: false)
        }
        return RegistryWatch { [weak self] in
            _ = self?.state.withLock { $0.watchers.removeValue(forKey: id) }
        }
    }

    deinit {
        // a registry released without close(): its sockets go with it (their handlers hold it weakly)
        if case .started(let sockets) = state.withLock({ $0.phase }) {
            for socket in sockets.all { socket.close() }
        }
    }

    /// Sends goodbyes for the nodes still published and closes the sockets.
    public func close() async {
        let (effects, sockets) = state.withLock { state -> (Effects, Sockets?) in
            var effects = Effects()
            for published in state.zones.values { announce(published.zone, ttlZero: true, state: &state, effects: &effects) }
            state.zones = [:]
            state.announcements = []
            state.timer?.task.cancel()
            state.timer = nil
            guard case .started(let sockets) = state.phase else { return (effects, nil) }
            state.phase = .closed
            return (effects, sockets)
        }
        await perform(effects)
        for socket in sockets?.all ?? [] { socket.close() }
    }
}
