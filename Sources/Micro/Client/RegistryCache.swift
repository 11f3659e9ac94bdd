import Metrics
import Logging
import Synchronization

/// Lookups of the registry kept in memory and refreshed by a watch, so that a call does not
/// read the registry. If the registry fails, the last good answer is served.
final class RegistryCache: Sendable {
    let registry: any Registry
    let logger: Logger
    /// Nanoseconds an answer is served from memory.
    private let maxAge: Int64
    private struct Entry {
        var services: [ServiceRecord]
        /// ``Monotonic`` nanoseconds.
        var fetched: Int64
        var valid: Bool
    }
    private struct Entries {
        var byName: [String: Entry] = [:]
        /// The name looked up last and its entry: a client calling one service over and over
        /// compares a name (the same string, so at once) instead of hashing it.
        var last: (name: String, entry: Entry)?
        /// Counts invalidations: an answer fetched across one may predate the change it reports.
        var invalidations: UInt64 = 0

        /// The entry of `name`, which becomes the last looked up.
        mutating func entry(_ name: String) -> Entry? {
            if let last, last.name == name { return last.entry }
            guard let found = byName[name] else { return nil }
            last = (name, found)
            return found
        }

        mutating func set(_ name: String, _ entry: Entry) {
            byName[name] = entry
            last = (name, entry)
        }
    }
    private let entries = Mutex(Entries())
    private let watch = Mutex<RegistryWatch?>(nil)
    /// Set once the watch is started: read on every call without the lock.
    private let watching = Atomic<Bool>(false)

    init(registry: any Registry, logger: Logger, maxAge: Duration = .seconds(30)) {
        self.registry = registry
        self.logger = logger
        self.maxAge = Monotonic.nanoseconds(maxAge)
    }

    /// The nodes of `name` if a fresh answer is in memory (nil: ask ``get(_:)``). No suspension:
    /// what a call does nearly every time.
    func cached(_ name: String, now: Int64) -> [ServiceRecord]? {
        guard watching.load(ordering: .relaxed) else { return nil }
        return entries.withLock { entries in
            guard let entry = entries.entry(name), entry.valid, now - entry.fetched < maxAge else { return nil }
            return entry.services
        }
    }

    func get(_ name: String) async throws -> [ServiceRecord] {
        startWatching()
        let now = Monotonic.now()
        let (cached, invalidations) = entries.withLock { ($0.entry(name), $0.invalidations) }
        if let cached, cached.valid, now - cached.fetched < maxAge { return cached.services }
        do {
            let services = try await registry.getService(name)
            // a change seen while the lookup ran (a node registered after the registry answered)
            // must not be hidden for maxAge behind the older answer: kept only if none came
            entries.withLock { entries in
                entries.set(name, Entry(services: services, fetched: now, valid: entries.invalidations == invalidations))
            }
            return services
        } catch {
            if let cached {
                logger.warning("registry lookup of \(name) failed (\(error)); using the last known nodes")
                return cached.services
            }
            throw error
        }
    }

    /// Drops an entry so that the next lookup reads the registry again.
    func invalidate(_ name: String) {
        entries.withLock { entries in
            entries.invalidations &+= 1
            entries.byName[name]?.valid = false
            if entries.last?.name == name { entries.last?.entry.valid = false }
        }
    }

    private func startWatching() {
        if watching.load(ordering: .relaxed) { return }
        let started = watch.withLock { $0 != nil }
        if started { return }
        // A change to a service invalidates its entry; the next call reads it afresh.
        let handle = try? registry.watch(service: nil) { [weak self] event in
            self?.invalidate(event.service.name)
            if MicroMetrics.isEnabled {
                // the registry's changes as this client sees them
                Metrics.Counter(label: "micro_registry_events_total", dimensions: [("service", event.service.name), ("action", event.action.rawValue)])
                    .increment()
            }
        }
        watch.withLock { current in
            if current == nil { current = handle } else { handle?.cancel() }
        }
        // without a watch (the registry cannot watch) every call asks get, which keeps trying
        if handle != nil { watching.store(true, ordering: .relaxed) }
    }

    deinit { watch.withLock { $0?.cancel() } }
}
