import Foundation

/// The registries a process can use, by name: `MICRO_REGISTRY=local` (the default), `memory`, or
/// `mdns` (multicast DNS on the LAN, compatible with go-micro's; see ``MDNSRegistry``), and those
/// plugin products add to ``plugins``.
public enum Registries {
    /// The named registry factories; `MICRO_REGISTRY` picks one.
    public static let plugins = PluginTable<any Registry>(kind: "registry", variable: "MICRO_REGISTRY", defaultName: "local", builtIn: [
        "local": { _ in LocalRegistry() },
        "memory": { _ in MemoryRegistry() },
        "mdns": { context in MDNSRegistry(configuration: .fromEnvironment(context.environment)) },
    ])

    /// One per process, so that a service and a client in one process share it. Made on first
    /// use: register plugins before that.
    public static let `default`: any Registry = fromEnvironment()

    /// The registry `environment` names (`local` if it names none known).
    public static func fromEnvironment(_ environment: [String: String] = MicroConfig.process.frameworkEnvironment) -> any Registry {
        (try? plugins.make(PluginContext(environment: environment))) ?? LocalRegistry()
    }

    /// Why `MICRO_REGISTRY` names no registry, if it does not (``fromEnvironment(_:)`` then falls
    /// back to `local`; a service refuses to start).
    public static func environmentError(_ environment: [String: String] = MicroConfig.process.frameworkEnvironment) -> String? {
        plugins.problem(environment)
    }
}
