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
}
