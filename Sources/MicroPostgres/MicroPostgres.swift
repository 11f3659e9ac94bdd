import Micro

/// The PostgreSQL store (`MICRO_STORE=postgres`): call ``install()`` once, before the first use
/// of `Stores.default`.
public enum MicroPostgres {
    /// Adds `postgres` to the store plugins (`MICRO_STORE_ADDRESS`: a `postgres://` URL or a
    /// libpq connection string; unset, libpq's `PG*` variables and defaults).
    public static func install() {
        Stores.plugins.register("postgres") { context in
            try PostgresStore(PostgresStore.Configuration(url: context.environment["MICRO_STORE_ADDRESS"] ?? ""), group: context.eventLoopGroup)
        }
    }
}
