public import Foundation

/// The registry chosen by the environment: `MICRO_REGISTRY=local` (the default), `memory`, or
/// `mdns` (multicast DNS on the LAN, compatible with go-micro's; see ``MDNSRegistry``).
public enum Registries {
    /// One per process, so that a service and a client in one process share it.
    public static let `default`: any Registry = fromEnvironment()

    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> any Registry {
        switch environment["MICRO_REGISTRY"]?.lowercased() {
        case "memory": MemoryRegistry()
        case "mdns": MDNSRegistry(configuration: .fromEnvironment(environment))
        default: LocalRegistry()
        }
    }

    /// Why `MICRO_REGISTRY` names no registry, if it does not (``fromEnvironment(_:)`` then falls
    /// back to `local`; a service refuses to start).
    public static func environmentError(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        guard let name = environment["MICRO_REGISTRY"], !["", "local", "memory", "mdns"].contains(name.lowercased()) else { return nil }
        return "MICRO_REGISTRY must be local, memory or mdns, not '\(name)'"
    }
}
