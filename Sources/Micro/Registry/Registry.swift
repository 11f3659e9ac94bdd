/// Where services find each other. Every part is swappable: `local` (a directory on this
/// machine, the default) and `memory` (in-process) ship with the framework.
///
/// Threading: every method may be called from any task.
public protocol Registry: Sendable {
    /// Adds or refreshes the service's nodes; they expire `ttl` after the last refresh.
    func register(_ service: ServiceRecord, ttl: Duration) async throws
    /// Removes the service's nodes at once.
    func deregister(_ service: ServiceRecord) async throws
    /// The live nodes of `name`, one record per version; empty if none.
    func getService(_ name: String) async throws -> [ServiceRecord]
    /// Every service with a live node, one record per version.
    func listServices() async throws -> [ServiceRecord]
    /// Calls `handler` for each change (a node appears, changes, or leaves: deregistered or
    /// expired) to `service`, or to any service when nil, until the handle is cancelled.
    ///
    /// Threading: `handler` runs on a thread of the registry's choosing (its own watcher thread,
    /// an event loop), one call at a time and in the order the changes happened; it must return
    /// quickly and must not block (hand the work to a task, as ``Registry/events(service:)``
    /// does). A call already under way when `cancel()` is called may still finish.
    func watch(service: String?, _ handler: @escaping @Sendable (RegistryEvent) -> Void) throws -> RegistryWatch
    /// Its name in ``Registries/plugins`` and in the registry's node metadata (`registry=mdns`).
    var name: String { get }
}

extension Registry {
    /// The type's name in lower case without a trailing "registry": `MDNSRegistry` is `mdns`.
    public var name: String {
        let type = "\(type(of: self))".lowercased()
        return type.hasSuffix("registry") && type.count > 8 ? String(type.dropLast(8)) : type
    }
}

/// A change seen by a watch: the service with the node(s) concerned.
public struct RegistryEvent: Sendable, Equatable {
    public enum Action: String, Sendable { case create, update, delete }
    public var action: Action
    public var service: ServiceRecord

    public init(action: Action, service: ServiceRecord) {
        self.action = action
        self.service = service
    }
}

/// Stops a watch when cancelled (or when released).
public final class RegistryWatch: Sendable {
    private let onCancel: @Sendable () -> Void

    public init(onCancel: @escaping @Sendable () -> Void) { self.onCancel = onCancel }

    public func cancel() { onCancel() }

    deinit { onCancel() }
}

extension Registry {
    /// The changes as an async sequence; the watch ends when iteration ends.
    public func events(service: String? = nil) throws -> AsyncStream<RegistryEvent> {
        let (stream, continuation) = AsyncStream<RegistryEvent>.makeStream()
        let watch = try self.watch(service: service) { continuation.yield($0) }
        continuation.onTermination = { _ in watch.cancel() }
        return stream
    }
}

/// Groups node records into one service record per name and version (go-micro's shape).
package func mergeByVersion(_ records: [ServiceRecord]) -> [ServiceRecord] {
    struct Key: Hashable {
        var name: String
        var version: String
    }
    var merged: [Key: ServiceRecord] = [:]
    var order: [Key] = []
    for record in records {
        let key = Key(name: record.name, version: record.version)
        if var existing = merged[key] {
            for node in record.nodes where !existing.nodes.contains(where: { $0.id == node.id }) {
                existing.nodes.append(node)
            }
            if existing.endpoints.isEmpty { existing.endpoints = record.endpoints }
            merged[key] = existing
        } else {
            merged[key] = record
            order.append(key)
        }
    }
    return order.map { key in
        var record = merged[key]!
        record.nodes.sort { $0.id < $1.id }
        return record
    }
}

/// The per-node differences between two snapshots (node id -> record holding that one node).
package func diff(_ old: [String: ServiceRecord], _ new: [String: ServiceRecord]) -> [RegistryEvent] {
    var events: [RegistryEvent] = []
    for (id, record) in new.sorted(by: { $0.key < $1.key }) {
        if let before = old[id] {
            if before != record { events.append(RegistryEvent(action: .update, service: record)) }
        } else {
            events.append(RegistryEvent(action: .create, service: record))
        }
    }
    for (id, record) in old.sorted(by: { $0.key < $1.key }) where new[id] == nil {
        events.append(RegistryEvent(action: .delete, service: record))
    }
    return events
}
