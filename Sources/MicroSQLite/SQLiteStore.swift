public import Foundation
public import Micro
import CSQLite
import CSQLiteNoIO
import MicroCore
import Synchronization

/// Records in SQLite files on this host (`MICRO_STORE=sqlite`, the default store): a file per
/// database, `DIR/<database>.db`, in WAL mode; a table per store table. Writes go to one thread
/// with its own connection, which commits every write waiting at once in one transaction (one
/// fsync for many; `synchronous = FULL`, so a write acknowledged is on disk); reads go to two
/// other threads with read-only connections and never wait for the writer. No event loop or
/// task waits on the disk. Expired records are swept once a minute.
///
/// `DIR` is `MICRO_STORE_ADDRESS`, else `$XDG_DATA_HOME/micro/store`, else
/// `~/.local/share/micro/store`. Several processes may share a file (SQLite's locking).
public final class SQLiteStore: Store {
    public let directory: URL
    /// The open files by database name.
    private final class Files: Sendable {
        let map = Mutex<[String: SQLiteFile]>([:])
    }
    private let files = Files()
    private let sweeper: Task<Void, Never>?

    public var name: String { "sqlite" }

    /// `sweepEvery`: how often expired records are deleted (nil: never; they still read as not
    /// found).
    public init(directory: URL, sweepEvery: Duration? = .seconds(60)) {
        self.directory = directory
        let files = self.files
        sweeper = sweepEvery.map { period in
            Task {
                while (try? await Task.sleep(for: period)) != nil {
                    for file in files.map.withLock({ Array($0.values) }) { try? await file.sweep() }
                }
            }
        }
    }

    deinit {
        sweeper?.cancel()
        for file in files.map.withLock({ Array($0.values) }) { file.stop() }
    }

    /// The directory the environment names (see the type's documentation).
    public static func defaultDirectory(_ environment: [String: String] = MicroConfig.process.frameworkEnvironment) -> URL {
        func set(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        if let dir = set("MICRO_STORE_ADDRESS") { return URL(fileURLWithPath: dir) }
        let data = set("XDG_DATA_HOME").map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: set("HOME") ?? NSHomeDirectory()).appendingPathComponent(".local/share")
        return data.appendingPathComponent("micro/store")
    }

    public func read(_ key: String, _ options: ReadOptions) async throws -> [Record] {
        try options.validate()
        let exact = !options.prefix && !options.suffix
        if exact { try Record.validate(key: key) }
        let file = try file(options.scope.database)
        let table = SQLiteFile.tableName(options.scope.table)
        let bytes = Array(key.utf8), now = SQLiteFile.now()
        let records = try await file.read { db throws(StoreError) -> [Record] in
            if exact { return try SQLiteFile.lookUp(key, table: table, now: now, db).map { [$0] } ?? [] }
            let (sql, bind) = SQLiteFile.selection(columns: "key, value, metadata, expires, version", table: table,
                                                   prefix: options.prefix ? bytes : [], suffix: options.suffix ? bytes : [],
                                                   limit: options.limit, offset: options.offset, now: now)
            guard let statement = try SQLiteFile.statement(sql, db) else { return [] }
            bind(statement)
            var records: [Record] = []
            while try statement.step() {
                records.append(SQLiteFile.record(key: String(decoding: statement.blob(0), as: UTF8.self), statement, from: 1, now: now))
            }
            return records
        }
        if exact && records.isEmpty { throw StoreError(.notFound, "no record \(key) in \(options.scope)") }
        return records
    }

    /// A read by key: no array, no closure on the way when the loop's connection answers it.
    public func read(_ key: String, scope: StoreScope) async throws -> Record {
        try scope.validate()
        try Record.validate(key: key)
        let file = try file(scope.database)
        let table = SQLiteFile.tableName(scope.table), now = SQLiteFile.now()
        guard let record = try await file.readOne(key, table: table, now: now) else {
            throw StoreError(.notFound, "no record \(key) in \(scope)")
        }
        return record
    }

    public func write(_ writes: [StoreWrite], scope: StoreScope) async throws -> [UInt64] {
        try scope.validate()
        for write in writes { try write.validate() }
        guard !writes.isEmpty else { return [] }
        let file = try file(scope.database)
        let table = SQLiteFile.tableName(scope.table)
        let now = SQLiteFile.now()
        return try await file.write { db throws(StoreError) -> [UInt64] in
            try SQLiteFile.create(table, db)
            var versions: [UInt64] = []
            versions.reserveCapacity(writes.count)
            for write in writes {
                let (ifVersion, isPut): (UInt64?, Bool) = switch write {
                case .put(_, let v, _): (v, true)
                case .delete(_, let v): (v, false)
                }
                // the live version (an expired record is absent: 0); an unconditional delete
                // needs none. (One upsert with RETURNING was measured slower: 10 µs more a write.)
                var version: UInt64 = 0
                if ifVersion != nil || isPut {
                    let current = try db.statement(.init(kind: SQLiteFile.versionOf, table: table)) {
                        "SELECT version FROM \(table) WHERE key = ?1 AND (expires IS NULL OR expires > ?2)"
                    }
                    current.bindUTF8(1, write.key)
                    current.bind(2, now)
                    version = try current.step() ? UInt64(current.int(0) ?? 0) : 0
                }
                if let ifVersion, ifVersion != version {
                    throw StoreError(.conflict, "\(write.key) in \(scope) is at version \(version), not \(ifVersion)")
                }
                switch write {
                case .put(let record, _, _):
                    let put = try db.statement(.init(kind: SQLiteFile.upsert, table: table)) {
                        """
                        INSERT INTO \(table) (key, value, metadata, expires, version) VALUES (?1, ?2, ?3, ?4, ?5)
                        ON CONFLICT (key) DO UPDATE SET value = excluded.value, metadata = excluded.metadata,
                        expires = excluded.expires, version = excluded.version
                        """
                    }
                    put.bindUTF8(1, write.key)
                    put.bind(2, record.value)
                    put.bind(3, SQLiteFile.encode(record.metadata))
                    put.bind(4, write.lifetime.map { now + Int64($0.components.seconds * 1000 + $0.components.attoseconds / 1_000_000_000_000_000) })
                    put.bind(5, Int64(version + 1))
                    _ = try put.step()
                    versions.append(version + 1)
                case .delete:
                    let delete = try db.statement(.init(kind: SQLiteFile.deletion, table: table)) { "DELETE FROM \(table) WHERE key = ?1" }
                    delete.bindUTF8(1, write.key)
                    _ = try delete.step()
                    versions.append(0)
                }
            }
            return versions
        }
    }

    public func list(_ options: ListOptions) async throws -> [String] {
        try options.validate()
        let file = try file(options.scope.database)
        let table = SQLiteFile.tableName(options.scope.table)
        let now = SQLiteFile.now()
        let prefix = Array(options.prefix.utf8), suffix = Array(options.suffix.utf8)
        return try await file.read { db throws(StoreError) -> [String] in
            let (sql, bind) = SQLiteFile.selection(columns: "key", table: table, prefix: prefix, suffix: suffix,
                                                   limit: options.limit, offset: options.offset, now: now)
            guard let statement = try SQLiteFile.statement(sql, db) else { return [] }
            bind(statement)
            var keys: [String] = []
            while try statement.step() { keys.append(String(decoding: statement.blob(0), as: UTF8.self)) }
            return keys
        }
    }

    public func close() async {
        sweeper?.cancel()
        let open = files.map.withLock { f in
            defer { f = [:] }
            return Array(f.values)
        }
        for file in open { file.stop() }
    }

    /// Reads of `database` answered on an event loop from memory, and those sent to a thread
    /// (tests).
    package func inlineReads(database: String = "micro") -> (hits: Int, misses: Int) {
        guard let file = files.map.withLock({ $0[database] }) else { return (0, 0) }
        return (file.inlineHits.load(ordering: .relaxed), file.inlineMisses.load(ordering: .relaxed))
    }

    /// The file of `database`, opened on first use.
    private func file(_ database: String) throws(StoreError) -> SQLiteFile {
        if let open = files.map.withLock({ $0[database] }) { return open }
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw StoreError(.unavailable, "cannot make the store directory \(directory.path): \(error.localizedDescription)")
        }
        let path = directory.appendingPathComponent(database + ".db").path
        return files.map.withLock { f in
            if let open = f[database] { return open }
            let file = SQLiteFile(path: path)
            f[database] = file
            return file
        }
    }
}

/// One database file: its writer, its reader threads, and a connection per event loop that
/// answers reads from its page cache on the loop itself.
final class SQLiteFile: Sendable {
    let path: String
    private let writer: SQLiteWorker
    private let readers: [SQLiteWorker]
    private let nextReader = Atomic<Int>(0)
    /// By index of the shared group's loops (empty when the VFS could not be registered).
    private let inlineReaders: [InlineReader]

    /// A loop's read connection on the VFS that refuses file reads while the loop reads.
    private final class InlineReader: @unchecked Sendable {
        // @unchecked Sendable: `connection` and `busy` are touched on the loop's thread, except
        // while `busy` (set on the loop), when one reader thread uses and fills the connection;
        // it clears `busy` through `loop.execute`, after which the loop may read again.
        let loop: EventLoop
        var connection: SQLiteConnection?
        var busy = false

        init(loop: EventLoop) { self.loop = loop }
    }

    /// Reads answered on a loop from memory, and reads that went to a thread (tests).
    package let inlineHits = Atomic<Int>(0)
    package let inlineMisses = Atomic<Int>(0)

    init(path: String) {
        self.path = path
        let name = URL(fileURLWithPath: path).lastPathComponent
        writer = SQLiteWorker(name: "sqlite-w \(name)", transactions: true) { () throws(StoreError) in
            let db = try SQLiteConnection(path: path, readOnly: false)
            // a file that is not a database says so now, naming it
            try db.execute("SELECT count(*) FROM sqlite_schema")
            return db
        }
        // readers open after the writer made the file (WAL mode is set by the writer)
        readers = (0..<2).map { i in
            SQLiteWorker(name: "sqlite-r\(i) \(name)", transactions: false) { () throws(StoreError) in
                try SQLiteConnection(path: path, readOnly: true)
            }
        }
        inlineReaders = mc_sqlite_noio_register() == SQLITE_OK ? EventLoopGroup.shared.loops.map { InlineReader(loop: $0) } : []
    }

    /// Runs a read. On an event loop, first on the loop's own connection with file reads
    /// forbidden: answered from its page cache, or refused at once. A refused read goes to a
    /// reader thread with that same connection, which keeps the pages it read, so the loop's
    /// next reads of them are answered in place; the loop never waits for the disk.
    func read<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws(StoreError) -> T) async throws(StoreError) -> T {
        try await read(body, tryInline: true)
    }

    /// The record `key` of `table`, alive at `now`, or nil: as ``read(_:)``, with the loop's
    /// attempt made without a closure.
    func readOne(_ key: String, table: String, now: Int64) async throws(StoreError) -> Record? {
        try await opened()
        if let inline = inlineReaders.first(where: { $0.loop.inEventLoop }), !inline.busy, let db = inline.connection,
           let outcome = inPlace(db, { db throws(StoreError) in try Self.lookUp(key, table: table, now: now, db) }) {
            return try outcome.get()
        }
        return try await read({ db throws(StoreError) in try Self.lookUp(key, table: table, now: now, db) }, tryInline: false)
    }

    /// Runs `body` on the loop's connection with file reads forbidden: its outcome, or nil when
    /// a read was refused (what it found is then thrown away).
    private func inPlace<T>(_ db: SQLiteConnection, _ body: (SQLiteConnection) throws(StoreError) -> T) -> Result<T, StoreError>? {
        mc_sqlite_noio_begin()
        let outcome = Result<T, StoreError> { () throws(StoreError) in try body(db) }
        let refused = mc_sqlite_noio_end() != 0
        db.finishStatements()
        guard !refused else { return nil }
        inlineHits.add(1, ordering: .relaxed)
        return outcome
    }

    private func read<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws(StoreError) -> T,
                                   tryInline: Bool) async throws(StoreError) -> T {
        // the writer runs first once, so that the file exists (with WAL) before any read
        try await opened()
        let i = nextReader.wrappingAdd(1, ordering: .relaxed).oldValue % readers.count
        guard let inline = inlineReaders.first(where: { $0.loop.inEventLoop }), !inline.busy else {
            return try await readers[i].run(body)
        }
        if tryInline, let db = inline.connection, let outcome = inPlace(db, body) {
            return try outcome.get()
        }
        inlineMisses.add(1, ordering: .relaxed)
        inline.busy = true
        let path = self.path
        return try await readers[i].run { _ throws(StoreError) -> T in
            defer { inline.loop.execute { inline.busy = false } }
            let db: SQLiteConnection
            if let made = inline.connection {
                db = made
            } else {
                db = try SQLiteConnection(path: path, readOnly: true, inline: true)
                inline.connection = db
            }
            defer { db.finishStatements() }
            return try body(db)
        }
    }

    func write<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws(StoreError) -> T) async throws(StoreError) -> T {
        try await writer.run(body)
    }

    private let ready = Atomic<Bool>(false)

    private func opened() async throws(StoreError) {
        if ready.load(ordering: .acquiring) { return }
        try await writer.run { _ throws(StoreError) in }
        ready.store(true, ordering: .releasing)
    }

    func stop() {
        writer.stop()
        for reader in readers { reader.stop() }
        // the loops' connections close with their last use
        for inline in inlineReaders {
            inline.loop.execute { if !inline.busy { inline.connection = nil } }
        }
    }

    /// Deletes the expired records of every table.
    func sweep() async throws(StoreError) {
        let now = Self.now()
        try await writer.run { db throws(StoreError) in
            let tables = try db.statement("SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE 't\\_%' ESCAPE '\\'")
            var names: [String] = []
            while try tables.step() { names.append(tables.text(0)) }
            for name in names {
                let sweep = try db.statement("DELETE FROM \"\(name)\" WHERE expires IS NOT NULL AND expires <= ?1")
                sweep.bind(1, now)
                _ = try sweep.step()
            }
        }
    }

    // MARK: SQL

    /// The kinds of the statements kept by table (`SQLiteConnection.StatementKey`).
    static let readByKey = 1, versionOf = 2, upsert = 3, deletion = 4, creation = 5

    /// A store table's SQL name: `t_` and its (validated) name, quoted.
    static func tableName(_ table: String) -> String { "\"t_\(table)\"" }

    /// Milliseconds since 1970: expiry outlives the process, so it is wall-clock time.
    static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// The record `key` of `table` alive at `now`, or nil (none, or no such table yet).
    static func lookUp(_ key: String, table: String, now: Int64, _ db: SQLiteConnection) throws(StoreError) -> Record? {
        let named = SQLiteConnection.StatementKey(kind: readByKey, table: table)
        guard let statement = try missingTableIsNil({ () throws(StoreError) in
            try db.statement(named) { "SELECT value, metadata, expires, version FROM \(table) WHERE key = ?1 AND (expires IS NULL OR expires > ?2)" }
        }) else { return nil }
        statement.bindUTF8(1, key)
        statement.bind(2, now)
        guard try statement.step() else { return nil }
        return record(key: key, statement, from: 0, now: now)
    }

    /// The statement for a read of a table; nil when the table does not exist yet (nothing
    /// was ever written to it).
    static func statement(_ sql: String, _ db: SQLiteConnection) throws(StoreError) -> SQLiteConnection.Statement? {
        try missingTableIsNil { () throws(StoreError) in try db.statement(sql) }
    }

    static func missingTableIsNil(_ make: () throws(StoreError) -> SQLiteConnection.Statement) throws(StoreError) -> SQLiteConnection.Statement? {
        do {
            return try make()
        } catch where error.message.contains("no such table") {
            return nil
        }
    }

    /// Keys are BLOBs (compared as bytes, as every store compares them); no rowid: the key is
    /// the table's order, so prefix reads are a range of it. (A prepared statement, kept: when
    /// the table exists, stepping it costs next to nothing.)
    static func create(_ table: String, _ db: SQLiteConnection) throws(StoreError) {
        _ = try db.statement(.init(kind: creation, table: table)) { """
            CREATE TABLE IF NOT EXISTS \(table) (key BLOB PRIMARY KEY, value BLOB NOT NULL, metadata TEXT NOT NULL,
            expires INTEGER, version INTEGER NOT NULL) WITHOUT ROWID
            """ }.step()
    }

    /// A SELECT of `columns` for keys starting with `prefix` and ending with `suffix`, alive at
    /// `now`, in key order, paged; and what binds its parameters.
    static func selection(columns: String, table: String, prefix: [UInt8], suffix: [UInt8], limit: Int, offset: Int,
                          now: Int64) -> (String, (SQLiteConnection.Statement) -> Void) {
        var sql = "SELECT \(columns) FROM \(table) WHERE (expires IS NULL OR expires > ?1)"
        let upper = KeyRange.end(ofPrefix: prefix)
        if !prefix.isEmpty { sql += " AND key >= ?2" }
        if upper != nil { sql += " AND key < ?3" }
        if !suffix.isEmpty { sql += " AND length(key) >= ?4 AND substr(key, -?4) = ?5" }
        sql += " ORDER BY key LIMIT ?6 OFFSET ?7"
        return (sql, { statement in
            statement.bind(1, now)
            if !prefix.isEmpty { statement.bind(2, prefix) }
            if let upper { statement.bind(3, upper) }
            if !suffix.isEmpty {
                statement.bind(4, Int64(suffix.count))
                statement.bind(5, suffix)
            }
            statement.bind(6, Int64(limit > 0 ? limit : -1))
            statement.bind(7, Int64(offset))
        })
    }

    static func record(key: String, _ statement: SQLiteConnection.Statement, from column: Int32, now: Int64) -> Record {
        // (most records have no metadata: no string is made for an empty column)
        let metadata = statement.isEmpty(column + 1) ? [:] : decode(statement.text(column + 1))
        var record = Record(key: key, value: statement.blob(column), metadata: metadata,
                            expiry: statement.int(column + 2).map { .milliseconds($0 - now) })
        record.version = UInt64(statement.int(column + 3) ?? 0)
        return record
    }

    static func encode(_ metadata: [String: String]) -> String {
        guard !metadata.isEmpty, let data = try? JSONEncoder().encode(metadata) else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    static func decode(_ text: String) -> [String: String] {
        guard !text.isEmpty else { return [:] }
        return (try? JSONDecoder().decode([String: String].self, from: Data(text.utf8))) ?? [:]
    }
}
