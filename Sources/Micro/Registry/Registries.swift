import Foundation

/// The registries a process can use, by name: `MICRO_REGISTRY=local` (the default), `memory`, or
/// `mdns` (multicast DNS on the LAN, compatible with go-micro's; see ``MDNSRegistry``), and those
/// plugin products add to ``plugins``.
public enum Registries {
    /// The named registry factories; `MICRO_REGISTRY` picks one.
    public static let plugins = PluginTable<any Registry>(kind: "registry", variable: "MICRO_REGISTRY", defaultName: "local", builtIn: [
        "local": { _ in LocalRegistry() },
        "memory": { _ in MemoryRegistry() },
        "mdns": { context in MDNSRegistry(configuration: try .fromEnvironment(context.environment)) },
    ])

    /// One per process, so that a service and a client in one process share it. Made on first
    /// use: register plugins before that.
    public static let `default`: any Registry = fromEnvironment()

    /// The registry `environment` names (`local` if it names none known).
    public static func fromEnvironment(_ environment: [String: String] = MicroConfig.process.frameworkEnvironment) -> any Registry {
        (try? plugins.make(PluginContext(environment: environment))) ?? LocalRegistry()
    }

    /// Why `MICRO_REGISTRY` names no registry, or one that its settings cannot make (etcd's
    /// addresses, mDNS's timeout), if so (``fromEnvironment(_:)`` then falls back to `local`; a
    /// service refuses to start, and so does `micro`).
    public static func environmentError(_ environment: [String: String] = MicroConfig.process.frameworkEnvironment) -> String? {
        if let problem = plugins.problem(environment) { return problem }
        // made, not used, to see (none of them connects before it is used)
        guard let name = environment["MICRO_REGISTRY"]?.lowercased(), !["", "local", "memory"].contains(name) else { return nil }
        do {
            _ = try plugins.make(PluginContext(environment: environment))
        } catch {
            return error.description
        }
        return nil
    }
}
