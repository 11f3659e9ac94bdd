import Foundation
public import Logging
public import MicroCore
import Synchronization

/// What a plugin factory is given to make its plugin.
public struct PluginContext: Sendable {
    /// The environment the plugin reads its own settings from (`MICRO_REGISTRY_ADDRESS`, …).
    public let environment: [String: String]
    public let eventLoopGroup: EventLoopGroup
    public let logger: Logger
    /// The registry of the service or client the plugin is made for (a broker finds subscribers
    /// in it); nil when made for the process.
    public let registry: (any Registry)?
    /// The connection pool and registry cache of the client the plugin is made for: the HTTP
    /// broker delivers over them, so that a client has one watch and one pool, not two.
    let client: (cache: RegistryCache, http: HTTPClient)?

    public init(
        environment: [String: String] = MicroConfig.process.frameworkEnvironment,
        eventLoopGroup: EventLoopGroup = .shared,
        logger: Logger = Logger(label: "micro"),
        registry: (any Registry)? = nil
    ) {
        self.init(environment: environment, eventLoopGroup: eventLoopGroup, logger: logger, registry: registry, client: nil)
    }

    init(environment: [String: String], eventLoopGroup: EventLoopGroup, logger: Logger, registry: (any Registry)?,
         client: (cache: RegistryCache, http: HTTPClient)?) {
        self.environment = environment
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.registry = registry
        self.client = client
    }
}

/// A name that selects no plugin, or a plugin that could not be made: local misuse, said in one
/// line (a service that meets it does not start).
public struct PluginError: Error, CustomStringConvertible, Sendable {
    public let description: String
}

/// The named factories of one kind of plugin (registries, brokers; the store, sync and auth of
/// later issues take one each). An environment variable picks the plugin by name
/// (`MICRO_REGISTRY=etcd`); unset or empty, the default. A plugin product adds itself with
/// ``register(_:_:)`` — before the first service or client is made, since Swift runs nothing
/// when a library loads:
///
/// ```swift
/// Registries.plugins.register("etcd") { context in try EtcdRegistry(context: context) }
/// ```
///
/// Threading: any thread.
public final class PluginTable<Plugin: Sendable>: Sendable {
    public typealias Factory = @Sendable (PluginContext) throws -> Plugin

    /// What the plugins are (`registry`), for messages.
    public let kind: String
    /// The variable that names the one to use (`MICRO_REGISTRY`).
    public let variable: String
    /// The plugin used when the variable is unset or empty.
    public let defaultName: String
    private let factories: Mutex<[String: Factory]>

    public init(kind: String, variable: String, defaultName: String, builtIn: [String: Factory]) {
        self.kind = kind
        self.variable = variable
        self.defaultName = defaultName
        self.factories = Mutex(Dictionary(uniqueKeysWithValues: builtIn.map { ($0.key.lowercased(), $0.value) }))
    }

    /// Adds (or replaces) the plugin called `name` (case-insensitive).
    public func register(_ name: String, _ factory: @escaping Factory) {
        factories.withLock { $0[name.lowercased()] = factory }
    }

    /// The names known, sorted.
    public var names: [String] { factories.withLock { $0.keys.sorted() } }

    /// The name `environment` selects, lower-cased (the default when unset or empty).
    public func selectedName(_ environment: [String: String]) -> String {
        let name = environment[variable]?.trimmingCharacters(in: .whitespaces).lowercased() ?? ""
        return name.isEmpty ? defaultName : name
    }

    /// Why `environment` selects no known plugin, if it does not.
    public func problem(_ environment: [String: String]) -> String? {
        let name = selectedName(environment)
        guard factories.withLock({ $0[name] }) == nil else { return nil }
        return "\(variable) names no \(kind) '\(environment[variable] ?? name)'; known: \(names.joined(separator: ", "))"
    }

    /// Makes the plugin `context.environment` selects.
    public func make(_ context: PluginContext) throws(PluginError) -> Plugin {
        let name = selectedName(context.environment)
        guard let factory = factories.withLock({ $0[name] }) else { throw PluginError(description: problem(context.environment) ?? name) }
        do {
            return try factory(context)
        } catch let error as PluginError {
            throw error
        } catch {
            throw PluginError(description: "\(variable)=\(name): \(error)")
        }
    }
}
