import Micro

/// etcd for swift-micro: the registry (`MICRO_REGISTRY=etcd`), locks (`MICRO_SYNC=etcd`),
/// configuration (``EtcdConfigProvider``) and the client under them.
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
    /// Adds `etcd` to ``Registries/plugins`` and ``Syncs/plugins``. Safe to call more than once.
    public static func install() {
        Syncs.plugins.register("etcd") { context in
            var environment = context.environment
            if let address = environment["MICRO_SYNC_ADDRESS"], !address.isEmpty { environment["MICRO_ETCD_ADDRESS"] = address }
            return EtcdSync(configuration: try EtcdConfiguration.forServices(environment), eventLoopGroup: context.eventLoopGroup,
                            logger: context.logger)
        }
        Registries.plugins.register("etcd") { context in
            EtcdRegistry(configuration: try EtcdConfiguration.fromEnvironment(context.environment), eventLoopGroup: context.eventLoopGroup,
                         logger: context.logger)
        }
    }
}
