import Synchronization

/// An in-process registry, for tests and single-process setups. Nodes expire after their TTL.
public final class MemoryRegistry: Registry {
    private struct Entry {
        var record: ServiceRecord  // holds one node
        var expires: ContinuousClock.Instant
    }

    private struct State {
        var entries: [String: Entry] = [:]  // by node id
        var watchers: [Int: (service: String?, handler: @Sendable (RegistryEvent) -> Void)] = [:]
        var nextWatcher = 0
    }

    private let state = Mutex(State())

    public init() {}

    public func register(_ service: ServiceRecord, ttl: Duration) async throws {
        let now = ContinuousClock.now
        var events: [RegistryEvent] = []
        let watchers = state.withLock { state in
            for node in service.nodes {
                var record = service
                record.nodes = [node]
                let existing = state.entries[node.id]
                let action: RegistryEvent.Action? = existing == nil || existing!.expires < now ? .create
                    : existing!.record != record ? .update : nil
                state.entries[node.id] = Entry(record: record, expires: now + ttl)
                if let action { events.append(RegistryEvent(action: action, service: record)) }
            }
            return state.watchers.values
        }
        notify(events, watchers)
        // watchers hear of an expiry when it happens, not at the next lookup
        Task { [weak self] in
            guard (try? await Task.sleep(until: now + ttl + .milliseconds(1))) != nil else { return }
            _ = self?.live()
        }
    }

    public func deregister(_ service: ServiceRecord) async throws {
        var events: [RegistryEvent] = []
        let watchers = state.withLock { state in
            for node in service.nodes {
                if let entry = state.entries.removeValue(forKey: node.id) {
                    events.append(RegistryEvent(action: .delete, service: entry.record))
                }
            }
            return state.watchers.values
        }
        notify(events, watchers)
    }

    public func getService(_ name: String) async throws -> [ServiceRecord] {
        mergeByVersion(live().filter { $0.name == name })
    }

    public func listServices() async throws -> [ServiceRecord] {
        mergeByVersion(live()).sorted { ($0.name, $0.version) < ($1.name, $1.version) }
    }

    public func watch(service: String?, _ handler: @escaping @Sendable (RegistryEvent) -> Void) throws -> RegistryWatch {
        let id = state.withLock { state in
            state.nextWatcher += 1
            state.watchers[state.nextWatcher] = (service, handler)
            return state.nextWatcher
        }
        return RegistryWatch { [weak self] in
            _ = self?.state.withLock { $0.watchers.removeValue(forKey: id) }
        }
    }

    /// Live records; expired ones are dropped (and reported as deleted).
    private func live() -> [ServiceRecord] {
        let now = ContinuousClock.now
        var expired: [RegistryEvent] = []
        let (records, watchers) = state.withLock { state in
            for (id, entry) in state.entries where entry.expires < now {
                state.entries[id] = nil
                expired.append(RegistryEvent(action: .delete, service: entry.record))
            }
            return (state.entries.values.map(\.record), state.watchers.values)
        }
        notify(expired, watchers)
        return records
    }

    private func notify(
        _ events: [RegistryEvent],
        _ watchers: Dictionary<Int, (service: String?, handler: @Sendable (RegistryEvent) -> Void)>.Values
    ) {
        for event in events {
            for watcher in watchers where watcher.service == nil || watcher.service == event.service.name {
                watcher.handler(event)
            }
        }
    }
}
