import Micro

/// The SQLite store, the default one (`MICRO_STORE` unset or `sqlite`): call ``install()`` once,
/// before the first use of `Stores.default`.
public enum MicroSQLite {
    /// Adds `sqlite` to the store plugins (`MICRO_STORE_ADDRESS`: the directory of the files).
    public static func install() {
        Stores.plugins.register("sqlite") { context in
            SQLiteStore(directory: SQLiteStore.defaultDirectory(context.environment))
        }
    }
}
