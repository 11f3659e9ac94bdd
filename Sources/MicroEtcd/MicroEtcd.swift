import Micro

/// etcd for swift-micro: the registry (`MICRO_REGISTRY=etcd`) and its client.
///
/// Call ``install()`` once, before the first service or client is made, so that the framework's
/// plugin table knows the name (Swift runs nothing when a library loads):
///
/// ```swift
/// import Micro
/// import MicroEtcd
///
/// MicroEtcd.install()
/// let service = Service(name: "greeter")   // MICRO_REGISTRY=etcd MICRO_REGISTRY_ADDRESS=10.0.0.1:2379,10.0.0.2:2379
/// ```
public enum MicroEtcd {
    /// Adds `etcd` to ``Registries/plugins``. Safe to call more than once.
    public static func install() {
        Registries.plugins.register("etcd") { context in
            EtcdRegistry(configuration: try EtcdConfiguration.fromEnvironment(context.environment), eventLoopGroup: context.eventLoopGroup,
                         logger: context.logger)
        }
    }
}
