import Foundation

/// Records by key: go-micro's store (read, write, delete and list, with prefixes, suffixes,
/// limits, offsets, TTLs, databases and tables), plus a version on every record for optimistic
/// concurrency and batches written in one transaction.
///
/// ```swift
/// let store = try Stores.default                                  // MICRO_STORE: sqlite, memory, postgres
/// let users = store.table("users")                                 // database "micro", table "users"
/// try await users.write(Record(key: "alice", encoding: user))
/// let alice: User = try await users.read("alice").decode(User.self)
/// try await users.write(changed, ifVersion: alice.version)        // refused if another wrote since
/// ```
///
/// Expired records read as not found. Keys are compared as UTF-8 bytes (prefix and suffix
/// matches, list order). Threading: any task.
public protocol Store: Sendable {
    /// The records `key` selects in `options.scope`: the one with that key (thrown
    /// ``StoreError/Kind/notFound`` if none), or with `options.prefix`/`options.suffix` all whose
    /// keys start or end with it (possibly none), in key order, after `offset`, at most `limit`.
    func read(_ key: String, _ options: ReadOptions) async throws -> [Record]
    /// The record `key` in `scope` (throws ``StoreError/Kind/notFound`` if there is none): the
    /// read by key, which a store may serve faster than the general one (the default calls it).
    func read(_ key: String, scope: StoreScope) async throws -> Record
    /// Writes `writes` in one transaction in `scope`: all or none (a failed version check fails
    /// them all with ``StoreError/Kind/conflict``). Returns each write's new version (0 for a
    /// delete).
    func write(_ writes: [StoreWrite], scope: StoreScope) async throws -> [UInt64]
    /// The keys in `options.scope` (filtered, in key order, after `offset`, at most `limit`).
    func list(_ options: ListOptions) async throws -> [String]
    /// Gives back what the store holds open.
    func close() async
    /// Its name in ``Stores/plugins``.
    var name: String { get }
}

/// A database and a table: go-micro's defaults are `micro` and `micro`.
public struct StoreScope: Sendable, Hashable, CustomStringConvertible {
    public var database: String
    public var table: String

    public init(database: String = "micro", table: String = "micro") {
        self.database = database
        self.table = table
    }

    public static let `default` = StoreScope()

    /// The scope's names, and a page's bounds, checked.
    func validate(limit: Int, offset: Int) throws(StoreError) {
        try validate()
        guard limit >= 0, offset >= 0 else { throw StoreError(.invalidArgument, "limit and offset cannot be negative") }
    }

    public var description: String { "\(database)/\(table)" }

    /// Names are 1 to 63 letters, digits, `_` and `-`, so that they are file and table names
    /// everywhere as they are (no quoting games, no injection).
    public func validate() throws(StoreError) {
        for (what, name) in [("database", database), ("table", table)] {
            guard (1...63).contains(name.utf8.count),
                  name.utf8.allSatisfy({ $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") || (48...57).contains($0)
                      || (65...90).contains($0) || (97...122).contains($0) })
            else {
                throw StoreError(.invalidArgument, "a \(what) name is 1 to 63 letters, digits, '_' or '-', not '\(name)'")
            }
        }
    }
}

/// A record: a key, its value, string metadata, and (when read) its version and time left.
public struct Record: Sendable, Equatable {
    public var key: String
    public var value: [UInt8]
    public var metadata: [String: String]
    /// On write: how long the record lives (nil: for ever, unless the write's TTL says
    /// otherwise). On read: how long it has left.
    public var expiry: Duration?
    /// On read: grows by one at each write of the key (1 when created); give it to
    /// ``StoreWrite/put(_:ifVersion:ttl:)`` to write only if no one wrote since.
    public var version: UInt64

    public init(key: String, value: [UInt8], metadata: [String: String] = [:], expiry: Duration? = nil) {
        self.key = key
        self.value = value
        self.metadata = metadata
        self.expiry = expiry
        self.version = 0
    }

    /// A record whose value is `value` as JSON.
    public init<T: Encodable>(key: String, encoding value: T, metadata: [String: String] = [:], expiry: Duration? = nil) throws {
        self.init(key: key, value: Array(try JSONEncoder().encode(value)), metadata: metadata, expiry: expiry)
    }

    /// The value, decoded from JSON.
    public func decode<T: Decodable>(_ type: T.Type = T.self) throws -> T {
        try JSONDecoder().decode(type, from: Data(value))
    }

    /// The longest key and value a store takes.
    public static let maxKeyBytes = 4096
    public static let maxValueBytes = 16 << 20

    /// The checks every store makes before writing.
    public func validate() throws(StoreError) {
        try Self.validate(key: key)
        guard value.count <= Self.maxValueBytes else {
            throw StoreError(.invalidArgument, "the value of \(key) is \(value.count) bytes; at most \(Self.maxValueBytes)")
        }
        if let expiry, expiry <= .zero { throw StoreError(.invalidArgument, "the expiry of \(key) must be positive, not \(expiry)") }
    }

    public static func validate(key: String) throws(StoreError) {
        guard !key.isEmpty else { throw StoreError(.invalidArgument, "a record needs a non-empty key") }
        guard key.utf8.count <= maxKeyBytes else {
            throw StoreError(.invalidArgument, "a key is at most \(maxKeyBytes) bytes, not \(key.utf8.count)")
        }
    }
}

/// One write of a batch.
public enum StoreWrite: Sendable, Equatable {
    /// Writes the record; with `ifVersion`, only if the key's version is that (0: only if absent).
    /// `ttl` overrides the record's expiry.
    case put(Record, ifVersion: UInt64? = nil, ttl: Duration? = nil)
    /// Deletes the key (nothing if absent); with `ifVersion`, only if its version is that.
    case delete(String, ifVersion: UInt64? = nil)

    public var key: String {
        switch self {
        case .put(let record, _, _): record.key
        case .delete(let key, _): key
        }
    }

    /// The time the put's record lives (nil: for ever).
    public var lifetime: Duration? {
        guard case .put(let record, _, let ttl) = self else { return nil }
        return ttl ?? record.expiry
    }

    public func validate() throws(StoreError) {
        switch self {
        case .put(let record, _, let ttl):
            try record.validate()
            if let ttl, ttl <= .zero { throw StoreError(.invalidArgument, "the TTL of \(record.key) must be positive, not \(ttl)") }
        case .delete(let key, _):
            try Record.validate(key: key)
        }
    }
}

public struct ReadOptions: Sendable, Equatable {
    public var scope: StoreScope
    /// The key is a prefix: every record whose key starts with it.
    public var prefix: Bool
    /// The key is a suffix: every record whose key ends with it.
    public var suffix: Bool
    /// At most this many records (0: all).
    public var limit: Int
    /// Skips this many first.
    public var offset: Int

    public init(scope: StoreScope = .default, prefix: Bool = false, suffix: Bool = false, limit: Int = 0, offset: Int = 0) {
        self.scope = scope
        self.prefix = prefix
        self.suffix = suffix
        self.limit = limit
        self.offset = offset
    }

    public func validate() throws(StoreError) {
        try scope.validate(limit: limit, offset: offset)
    }
}

public struct ListOptions: Sendable, Equatable {
    public var scope: StoreScope
    public var prefix: String
    public var suffix: String
    public var limit: Int
    public var offset: Int

    public init(scope: StoreScope = .default, prefix: String = "", suffix: String = "", limit: Int = 0, offset: Int = 0) {
        self.scope = scope
        self.prefix = prefix
        self.suffix = suffix
        self.limit = limit
        self.offset = offset
    }

    public func validate() throws(StoreError) {
        try scope.validate(limit: limit, offset: offset)
    }
}

/// Why a store could not do what it was asked.
public struct StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// No record with that key (or it expired).
        case notFound
        /// A version check failed: another wrote the key since it was read.
        case conflict
        /// A bad key, value, name, TTL, limit.
        case invalidArgument
        /// The store cannot be reached or used now (a server down, a disk full); the call may
        /// succeed later.
        case unavailable
        /// The store's data is unreadable (a corrupt file).
        case corrupt
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    /// What a handler that let this error through answers: 404 not found, 409 conflict, 400 bad
    /// input, 503 unavailable (the caller may try again later), 500 corrupt.
    public func microError(_ id: String) -> MicroError {
        let code = switch kind {
        case .notFound: 404
        case .conflict: 409
        case .invalidArgument: 400
        case .unavailable: 503
        case .corrupt: 500
        }
        return MicroError(id: id, code: code, detail: message)
    }
}

extension Store {
    /// The record `key` in `scope` (throws ``StoreError/Kind/notFound`` if there is none).
    public func read(_ key: String, scope: StoreScope) async throws -> Record {
        guard let record = try await read(key, ReadOptions(scope: scope)).first else {
            throw StoreError(.notFound, "no record \(key) in \(scope)")
        }
        return record
    }

    /// The record `key` in the default scope (`micro`/`micro`).
    public func read(_ key: String) async throws -> Record {
        try await read(key, scope: .default)
    }

    /// Writes `record` (only if its version is `ifVersion`, when given); returns its new version.
    @discardableResult
    public func write(_ record: Record, ttl: Duration? = nil, ifVersion: UInt64? = nil, scope: StoreScope = .default) async throws -> UInt64 {
        try await write([.put(record, ifVersion: ifVersion, ttl: ttl)], scope: scope)[0]
    }

    /// Deletes `key` (nothing if absent).
    public func delete(_ key: String, ifVersion: UInt64? = nil, scope: StoreScope = .default) async throws {
        _ = try await write([.delete(key, ifVersion: ifVersion)], scope: scope)
    }

    /// A handle on one database and table.
    public func table(_ table: String, database: String = "micro") -> StoreTable {
        StoreTable(store: self, scope: StoreScope(database: database, table: table))
    }
}

/// A store pinned to a database and table (go-micro's `store.Scope`).
public struct StoreTable: Sendable {
    public let store: any Store
    public let scope: StoreScope

    public func read(_ key: String) async throws -> Record { try await store.read(key, scope: scope) }

    public func read(prefix: String, limit: Int = 0, offset: Int = 0) async throws -> [Record] {
        try await store.read(prefix, ReadOptions(scope: scope, prefix: true, limit: limit, offset: offset))
    }

    @discardableResult
    public func write(_ record: Record, ttl: Duration? = nil, ifVersion: UInt64? = nil) async throws -> UInt64 {
        try await store.write(record, ttl: ttl, ifVersion: ifVersion, scope: scope)
    }

    public func write(_ writes: [StoreWrite]) async throws -> [UInt64] { try await store.write(writes, scope: scope) }

    public func delete(_ key: String, ifVersion: UInt64? = nil) async throws { try await store.delete(key, ifVersion: ifVersion, scope: scope) }

    public func list(prefix: String = "", suffix: String = "", limit: Int = 0, offset: Int = 0) async throws -> [String] {
        try await store.list(ListOptions(scope: scope, prefix: prefix, suffix: suffix, limit: limit, offset: offset))
    }
}

/// The stores a process can use, by name: `MICRO_STORE=sqlite` (the default: a file per database
/// on this host, with the MicroSQLite product), `memory` (one process), and those plugin
/// products add (`postgres`).
public enum Stores {
    public static let plugins = PluginTable<any Store>(kind: "store", variable: "MICRO_STORE", defaultName: "sqlite", builtIn: [
        "memory": { _ in MemoryStore.shared },
    ])

    /// One per process, made on first use from `MICRO_STORE`: register plugins before (the
    /// default, SQLite, with `MicroSQLite.install()`).
    public static var `default`: any Store {
        get throws { try shared.get() }
    }

    private static let shared = Result<any Store, PluginError> { () throws(PluginError) -> any Store in
        try make(PluginContext())
    }

    /// Makes the store `context` selects, saying what to do when it is SQLite and MicroSQLite
    /// was not installed.
    public static func make(_ context: PluginContext) throws(PluginError) -> any Store {
        do {
            return try plugins.make(context)
        } catch {
            if plugins.selectedName(context.environment) == "sqlite", plugins.problem(context.environment) != nil {
                throw PluginError(description: "the default store is SQLite: link the MicroSQLite product and call MicroSQLite.install() first, or set MICRO_STORE=memory")
            }
            throw error
        }
    }
}
