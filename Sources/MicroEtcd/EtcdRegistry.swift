import Foundation
public import Logging
public import Micro
public import MicroCore
import Synchronization

/// The registry on etcd, wire-compatible with go-micro's etcd registry: each node is the key
/// `/micro/registry/<service>/<node-id>` holding the JSON of its service with that one node,
/// attached to a lease of the registration's TTL that one stream keeps alive; deregistering
/// deletes the key.
///
/// Lookups are answered from a snapshot of the prefix that a watch keeps current, so that a
/// call by name costs no etcd round trip. When etcd cannot be reached, the snapshot keeps
/// answering with the last known nodes (said once in the log) and the watch resumes, from the
/// revision it stopped at, when etcd is back; a registration whose lease was lost meanwhile is
/// made again with a new lease at the next refresh.
///
/// `MICRO_REGISTRY=etcd` selects it once ``MicroEtcd/install()`` ran; `MICRO_REGISTRY_ADDRESS`
/// lists the members (see ``EtcdConfiguration/fromEnvironment(_:address:)``).
public final class EtcdRegistry: Registry {
    /// The prefix of every key, go-micro's.
    public static let prefix = "/micro/registry/"

    public let etcd: EtcdClient
    private let logger: Logger
    private let state = Mutex(State())
    private let ownsClient: Bool

    public var name: String { "etcd" }

    private struct Registration {
        var value: [UInt8]
        var lease: Int64
        var keepAlive: EtcdKeepAlive?
        var lost = false
    }

    private struct State {
        /// The prefix as last seen: key → the service with that key's one node.
        var snapshot: [String: ServiceRecord] = [:]
        var synced = false
        /// The first sync (or a resync) under way, shared by the callers that need it.
        var syncing: Task<Void, any Error>?
        var watch: EtcdWatchHandle?
        var watchers: [Int: (service: String?, handler: @Sendable (RegistryEvent) -> Void)] = [:]
        var nextWatcher = 0
        var registrations: [String: Registration] = [:]  // by key
        /// etcd is unreachable: lookups serve the snapshot (logged once per outage).
        var outage = false
        var registerFailing = false
        var closed = false
    }

    /// A registry on its own client of `configuration`.
    public convenience init(configuration: EtcdConfiguration, eventLoopGroup: EventLoopGroup = .shared,
                            logger: Logger = Logger(label: "micro.registry.etcd")) {
        self.init(client: EtcdClient(configuration: configuration, eventLoopGroup: eventLoopGroup, logger: logger), logger: logger,
                  ownsClient: true)
    }

    /// A registry on `client` (shared with other users of it).
    public convenience init(client: EtcdClient, logger: Logger = Logger(label: "micro.registry.etcd")) {
        self.init(client: client, logger: logger, ownsClient: false)
    }

    private init(client: EtcdClient, logger: Logger, ownsClient: Bool) {
        self.etcd = client
        self.logger = logger
        self.ownsClient = ownsClient
    }

    /// Stops the watch and keep-alives (registrations then expire with their leases) and, when
    /// the registry made its client, closes it.
    public func close() async {
        let (watch, keepAlives) = state.withLock { s in
            s.closed = true
            defer {
                s.watch = nil
                s.registrations = [:]
            }
            return (s.watch, s.registrations.values.compactMap(\.keepAlive))
        }
        watch?.cancel()
        for keepAlive in keepAlives { keepAlive.cancel() }
        if ownsClient { await etcd.close() }
    }

    // MARK: Keys and values

    /// go-micro's key of a node: each part with `/` replaced by `-`.
    public static func key(service: String, node: String) -> String {
        prefix + service.replacingOccurrences(of: "/", with: "-") + "/" + node.replacingOccurrences(of: "/", with: "-")
    }

    static func encode(_ record: ServiceRecord) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        return Array(try encoder.encode(record))
    }

    /// The service a value holds, or nil (logged) when it holds none.
    private func decode(_ kv: EtcdKeyValue) -> ServiceRecord? {
        do {
            let record = try JSONDecoder().decode(ServiceRecord.self, from: Data(kv.value))
            guard !record.name.isEmpty, !record.nodes.isEmpty else {
                logger.warning("etcd registry: skipping \(kv.keyString): no service name or no node")
                return nil
            }
            return record
        } catch {
            logger.warning("etcd registry: skipping \(kv.keyString): not a service's JSON (\(Self.reason(error)))")
            return nil
        }
    }

    private static func reason(_ error: any Error) -> String {
        switch error as? DecodingError {
        case .dataCorrupted(let c)?: c.debugDescription
        case .keyNotFound(let key, _)?: "no \(key.stringValue)"
        case .typeMismatch(_, let c)?, .valueNotFound(_, let c)?:
            "\(c.codingPath.map(\.stringValue).joined(separator: ".")): \(c.debugDescription)"
        default: "\(error)"
        }
    }

    // MARK: Registry

    public func register(_ service: ServiceRecord, ttl: Duration) async throws {
        let seconds = EtcdLease.seconds(for: ttl)
        for node in service.nodes {
            guard !service.name.isEmpty, !node.id.isEmpty else {
                throw MicroError(id: "micro.registry", code: 400, detail: "a service name and a node id are required")
            }
            var record = service
            record.nodes = [node]
            let key = Self.key(service: service.name, node: node.id)
            let value = try Self.encode(record)
            // alive, unchanged, and still in etcd as far as the watch saw: the keep-alive does the rest
            let current = state.withLock { s -> Bool in
                guard let r = s.registrations[key], r.value == value, !r.lost else { return false }
                return !s.synced || s.snapshot[key] != nil
            }
            if current { continue }
            do {
                let lease = try await etcd.grantLease(ttl: seconds)
                try await etcd.put(key, value, lease: lease.id)
                let keepAlive = etcd.keepAlive(lease) { [weak self] error in
                    self?.state.withLock { s in
                        if s.registrations[key]?.lease == lease.id { s.registrations[key]!.lost = true }
                    }
                    self?.logger.warning("etcd registry: the lease of \(key) was lost (\(error.message)); registering again at the next refresh")
                }
                let (old, recovered) = state.withLock { s in
                    let old = s.registrations[key]
                    s.registrations[key] = Registration(value: value, lease: lease.id, keepAlive: keepAlive)
                    defer { s.registerFailing = false }
                    return (old, s.registerFailing || old?.lost == true)
                }
                old?.keepAlive?.cancel()
                if recovered { logger.notice("etcd registry: registered \(key) again, on lease \(String(lease.id, radix: 16))") }
                if let old, old.lease != lease.id, !old.lost {
                    try? await etcd.revokeLease(old.lease)  // the key moved to the new lease; the old has nothing left
                }
            } catch {
                state.withLock { $0.registerFailing = true }
                throw error
            }
        }
    }

    public func deregister(_ service: ServiceRecord) async throws {
        var failure: (any Error)?
        for node in service.nodes {
            let key = Self.key(service: service.name, node: node.id)
            let registration = state.withLock { $0.registrations.removeValue(forKey: key) }
            registration?.keepAlive?.cancel()
            do {
                // go-micro deletes the key; the lease goes too, so nothing of the node lingers
                try await etcd.delete(.key(key))
                if let registration { try? await etcd.revokeLease(registration.lease) }
            } catch {
                failure = error
            }
        }
        if let failure { throw failure }
    }

    public func getService(_ name: String) async throws -> [ServiceRecord] {
        try await synced()
        return mergeByVersion(state.withLock { s in s.snapshot.values.filter { $0.name == name } })
    }

    public func listServices() async throws -> [ServiceRecord] {
        try await synced()
        return mergeByVersion(state.withLock { Array($0.snapshot.values) }).sorted { ($0.name, $0.version) < ($1.name, $1.version) }
    }

    public func watch(service: String?, _ handler: @escaping @Sendable (RegistryEvent) -> Void) throws -> RegistryWatch {
        let id = state.withLock { s in
            s.nextWatcher += 1
            s.watchers[s.nextWatcher] = (service, handler)
            return s.nextWatcher
        }
        // the events come from the snapshot's watch: start it if no lookup did yet
        Task { [weak self] in try? await self?.synced() }
        return RegistryWatch { [weak self] in
            _ = self?.state.withLock { $0.watchers.removeValue(forKey: id) }
        }
    }

    // MARK: The snapshot

    /// Returns once the snapshot was filled (at once after the first time: a later outage keeps
    /// it as it was).
    private func synced() async throws {
        let task: Task<Void, any Error> = state.withLock { s in
            if s.synced { return Task {} }
            if let task = s.syncing { return task }
            let task = Task { try await self.resync() }
            s.syncing = task
            return task
        }
        defer { state.withLock { s in if !s.synced { s.syncing = nil } } }
        do {
            try await task.value
        } catch let error as EtcdError {
            throw MicroError(id: "micro.registry", code: 503, detail: "the etcd registry cannot read \(Self.prefix): \(error)")
        }
    }

    /// Reads the whole prefix, reports what changed since the last snapshot, and watches from the
    /// revision read.
    private func resync() async throws {
        let range = try await etcd.get(.prefix(Self.prefix))
        var fresh: [String: ServiceRecord] = [:]
        for kv in range.kvs {
            if let record = decode(kv) { fresh[kv.keyString] = record }
        }
        let (events, watchers) = state.withLock { s in
            let events = diff(s.snapshot, fresh)
            s.snapshot = fresh
            s.synced = true
            s.syncing = nil
            return (events, Array(s.watchers.values))
        }
        notify(events, watchers)
        let handle = etcd.watch(.prefix(Self.prefix), fromRevision: range.revision + 1, prevKV: true) { [weak self] update in
            self?.apply(update)
        }
        let old = state.withLock { s in
            defer { s.watch = s.closed ? nil : handle }
            return s.watch
        }
        old?.cancel()
        if state.withLock({ $0.closed }) { handle.cancel() }
    }

    private func apply(_ update: EtcdWatchUpdate) {
        switch update {
        case .events(let events, _):
            var changes: [RegistryEvent] = []
            var decoded: [(String, ServiceRecord?)] = []
            for event in events {
                let key = event.kv.keyString
                decoded.append((key, event.kind == .put ? decode(event.kv) : nil))
            }
            let watchers = state.withLock { s in
                for ((key, record), event) in zip(decoded, events) {
                    let before = s.snapshot[key]
                    if let record {
                        s.snapshot[key] = record
                        let action: RegistryEvent.Action = before == nil || event.isCreate ? .create : .update
                        if before != record || action == .create { changes.append(RegistryEvent(action: action, service: record)) }
                    } else if let before {
                        // a delete, or a value that no longer holds a service
                        s.snapshot[key] = nil
                        changes.append(RegistryEvent(action: .delete, service: before))
                    }
                }
                return Array(s.watchers.values)
            }
            notify(changes, watchers)
        case .synced:
            let recovered = state.withLock { s in
                defer { s.outage = false }
                return s.outage
            }
            if recovered { logger.notice("etcd registry: etcd is reachable again; the watch resumed") }
        case .interrupted(let error):
            let (first, count) = state.withLock { s in
                defer { s.outage = true }
                return (!s.outage, s.snapshot.count)
            }
            if first { logger.warning("etcd registry: etcd unreachable (\(error)); serving the \(count) last known nodes") }
        case .ended(let error):
            // compacted below the watch's revision, or refused: read everything again and watch from there
            logger.warning("etcd registry: the watch ended (\(error)); reading the registry again")
            readAgain("etcd registry: cannot read the registry again", logger: logger,
                      stopped: { [weak self] in self?.state.withLock { $0.closed } ?? true },
                      { [weak self] in try await self?.resync() })
        }
    }

    private func notify(_ events: [RegistryEvent], _ watchers: [(service: String?, handler: @Sendable (RegistryEvent) -> Void)]) {
        for event in events {
            for watcher in watchers where watcher.service == nil || watcher.service == event.service.name {
                watcher.handler(event)
            }
        }
    }
}
