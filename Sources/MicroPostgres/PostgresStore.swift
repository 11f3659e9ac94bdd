import CLibPQ
import Foundation
public import Micro
public import MicroCore
import Synchronization

/// Records in PostgreSQL (`MICRO_STORE=postgres`, `MICRO_STORE_ADDRESS=postgres://…`), for
/// services on several machines; CockroachDB serves it too. A store database is a schema and a
/// store table a table in it (`"micro"."users"`), made on the first write:
///
/// ```sql
/// key bytea PRIMARY KEY, value bytea, metadata jsonb, expiry timestamptz, version bigint
/// ```
///
/// Keys are bytes, so they sort and match prefixes byte by byte, as in every store; a prefix
/// read is a range of the primary key's index. Expiry is the server's clock (`now()` plus the
/// TTL), so services on machines whose clocks differ agree on it; expired records read as not
/// found and are swept once a minute.
///
/// Connections: two per event loop (configurable), each in pipeline mode: requests from many
/// tasks share a connection without waiting for each other's answers, and no thread blocks on a
/// socket. TLS, authentication and the rest of the connection come from the URL, as libpq reads
/// it (`?sslmode=verify-full&sslrootcert=ca.pem`, `PGPASSWORD`, …).
public final class PostgresStore: Store {
    public struct Configuration: Sendable {
        /// A `postgres://` URL or a libpq connection string; empty: libpq's defaults (the `PG*`
        /// environment variables).
        public var url: String
        /// Connections on each event loop.
        public var connectionsPerLoop: Int
        public var connectTimeout: Duration
        /// A request unanswered this long drops its connection (the server or the network
        /// stopped); the request fails as unavailable.
        public var requestTimeout: Duration
        /// How often expired records are deleted (nil: never; they still read as not found).
        public var sweepEvery: Duration?

        public init(url: String, connectionsPerLoop: Int = 2, connectTimeout: Duration = .seconds(10),
                    requestTimeout: Duration = .seconds(30), sweepEvery: Duration? = .seconds(60)) {
            self.url = url
            self.connectionsPerLoop = connectionsPerLoop
            self.connectTimeout = connectTimeout
            self.requestTimeout = requestTimeout
            self.sweepEvery = sweepEvery
        }
    }

    public let configuration: Configuration
    /// Where the store connects, for messages: `host:port/database` (no password).
    public let label: String
    private let connections: [[PGConnection]]
    private let next = Atomic<Int>(0)
    private let scopes = Scopes()
    private let sweeper = Mutex<Task<Void, Never>?>(nil)

    /// The statements of each scope used, made once.
    private final class Scopes: Sendable {
        let map = Mutex<[StoreScope: PGStatements]>([:])
        /// Deletes the expired records of every table used (a table not made yet has none).
        func sweep(on connection: PGConnection) async throws(PGError) {
            for sweep in map.withLock({ $0.values.map(\.sweep) }) {
                do {
                    _ = try await connection.run([PGStep(sweep)])
                } catch where error.isMissingTable {
                    continue
                }
            }
        }
    }

    public var name: String { "postgres" }

    /// Checks the URL now (a bad one is an `invalidArgument` error); connects on first use.
    public init(_ configuration: Configuration, group: EventLoopGroup = .shared) throws(StoreError) {
        self.configuration = configuration
        label = try Self.label(of: configuration.url)
        guard configuration.connectionsPerLoop >= 1 else {
            throw StoreError(.invalidArgument, "a PostgreSQL store needs at least one connection per loop")
        }
        let label = self.label
        connections = group.loops.map { loop in
            (0..<configuration.connectionsPerLoop).map { _ in
                PGConnection(loop: loop, conninfo: configuration.url, label: label,
                             connectTimeout: configuration.connectTimeout, requestTimeout: configuration.requestTimeout)
            }
        }
        if let period = configuration.sweepEvery {
            let scopes = self.scopes
            let connection = connections[0][0]
            sweeper.withLock {
                $0 = Task {
                    while (try? await Task.sleep(for: period)) != nil {
                        try? await scopes.sweep(on: connection)
                    }
                }
            }
        }
    }

    deinit {
        sweeper.withLock { $0?.cancel() }
        let all = connections.flatMap { $0 }
        Task { for connection in all { await connection.close() } }
    }

    /// `host:port/database` of a URL or connection string, or why libpq cannot read it.
    static func label(of url: String) throws(StoreError) -> String {
        var error: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(url, &error) else {
            let message = error.map { String(cString: $0).trimmingCharacters(in: .whitespacesAndNewlines) } ?? "out of memory"
            PQfreemem(error)
            throw StoreError(.invalidArgument, "MICRO_STORE_ADDRESS is not a PostgreSQL URL: \(message)")
        }
        defer { PQconninfoFree(options) }
        var found: [String: String] = [:]
        var option = options
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val { found[String(cString: keyword)] = String(cString: value) }
            option += 1
        }
        let environment = ProcessInfo.processInfo.environment
        let host = found["host"] ?? found["hostaddr"] ?? environment["PGHOST"] ?? "localhost"
        let port = found["port"] ?? environment["PGPORT"] ?? "5432"
        let database = found["dbname"] ?? environment["PGDATABASE"] ?? found["user"] ?? environment["PGUSER"] ?? ""
        return "\(host):\(port)/\(database)"
    }

    // MARK: Store

    public func read(_ key: String, _ options: ReadOptions) async throws -> [Record] {
        try options.validate()
        let exact = !options.prefix && !options.suffix
        if exact { try Record.validate(key: key) }
        let sql = statements(options.scope)
        let bytes = Array(key.utf8)
        let rows: PGRows
        do {
            if exact {
                rows = try await connection().run([PGStep(sql.readOne, [bytes])])[0]
            } else {
                let (query, parameters) = sql.selection(keys: false, prefix: options.prefix ? bytes : [],
                                                        suffix: options.suffix ? bytes : [], limit: options.limit, offset: options.offset)
                rows = try await connection().run([PGStep(query, parameters)])[0]
            }
        } catch where error.isMissingTable {
            rows = PGRows()  // nothing was ever written there
        } catch {
            throw storeError(error, scope: options.scope)
        }
        if exact {
            guard let row = rows.rows.first else { throw StoreError(.notFound, "no record \(key) in \(options.scope)") }
            return [Self.record(key: key, row, from: 0)]
        }
        return rows.rows.map { Self.record(key: String(decoding: $0[0] ?? [], as: UTF8.self), $0, from: 1) }
    }

    public func write(_ writes: [StoreWrite], scope: StoreScope) async throws -> [UInt64] {
        try scope.validate()
        for write in writes { try write.validate() }
        guard !writes.isEmpty else { return [] }
        let sql = statements(scope)
        // each write is one or two statements; `owners` says whose each is
        var steps: [PGStep] = [], owners: [Int] = []
        for (index, write) in writes.enumerated() {
            for step in sql.steps(for: write) {
                steps.append(step)
                owners.append(index)
            }
        }
        let connection = connection()
        let results: [PGRows]
        do {
            do {
                results = try await connection.run(steps)
            } catch where error.isMissingTable {
                try await create(scope, sql, on: connection)
                results = try await connection.run(steps)
            }
        } catch {
            if error.sqlState == "23514", error.constraint == "micro_version", let step = error.step {
                let write = writes[owners[step]]
                let wanted: UInt64
                switch write {
                case .put(_, let v, _), .delete(_, let v): wanted = v ?? 0
                }
                throw StoreError(.conflict, "\(write.key) in \(scope) is not at version \(wanted) (written or deleted since)")
            }
            throw storeError(error, scope: scope)
        }
        // a put's version is the answer of its last statement
        var versions = [UInt64](repeating: 0, count: writes.count)
        for (step, rows) in results.enumerated() {
            guard case .put = writes[owners[step]], let value = rows.rows.first?[0] else { continue }
            versions[owners[step]] = UInt64(Self.int64(value))
        }
        return versions
    }

    public func list(_ options: ListOptions) async throws -> [String] {
        try options.validate()
        let sql = statements(options.scope)
        let (query, parameters) = sql.selection(keys: true, prefix: Array(options.prefix.utf8), suffix: Array(options.suffix.utf8),
                                                limit: options.limit, offset: options.offset)
        do {
            return try await connection().run([PGStep(query, parameters)])[0].rows.map { String(decoding: $0[0] ?? [], as: UTF8.self) }
        } catch where error.isMissingTable {
            return []
        } catch {
            throw storeError(error, scope: options.scope)
        }
    }

    public func close() async {
        sweeper.withLock { $0?.cancel() }
        for connection in connections.flatMap({ $0 }) { await connection.close() }
    }

    /// Deletes the expired records of the tables this store has used.
    public func sweep() async throws {
        do {
            try await scopes.sweep(on: connection())
        } catch {
            throw storeError(error, scope: .default)
        }
    }

    // MARK: Parts

    /// A connection of the calling task's loop when it runs on one of the store's (no hop),
    /// else the next one round.
    private func connection() -> PGConnection {
        let turn = next.wrappingAdd(1, ordering: .relaxed).oldValue
        if let loop = EventLoop.current, loop.index < connections.count, connections[loop.index][0].loop === loop {
            let slots = connections[loop.index]
            return slots[turn % slots.count]
        }
        let slots = connections[(turn / configuration.connectionsPerLoop) % connections.count]
        return slots[turn % slots.count]
    }

    private func statements(_ scope: StoreScope) -> PGStatements {
        scopes.map.withLock { known in
            if let made = known[scope] { return made }
            let made = PGStatements(scope)
            known[scope] = made
            return made
        }
    }

    /// Makes the schema and table (once more if another process made them at the same moment).
    private func create(_ scope: StoreScope, _ sql: PGStatements, on connection: PGConnection) async throws(PGError) {
        do {
            _ = try await connection.run(sql.create.map { PGStep($0) })
        } catch where ["23505", "42P06", "42P07"].contains(error.sqlState) {
            _ = try await connection.run(sql.create.map { PGStep($0) })
        }
    }

    private func storeError(_ error: PGError, scope: StoreScope) -> StoreError {
        switch error.kind {
        case .connection:
            return StoreError(.unavailable, error.message)
        case .server:
            let text = "PostgreSQL at \(label) refused a request on \(scope): \(error.message) (SQLSTATE \(error.sqlState))"
            switch error.sqlState.prefix(2) {
            // connection, resources, operator intervention, system: a later try may work
            case "08", "53", "57", "58", "40": return StoreError(.unavailable, text)
            case "22": return StoreError(.invalidArgument, text)
            case "42" where error.sqlState == "42939": return StoreError(.invalidArgument, text)  // a reserved name (pg_…)
            case "XX": return StoreError(.corrupt, text)
            default: return StoreError(.unavailable, text)
            }
        }
    }

    static func record(key: String, _ row: [[UInt8]?], from column: Int) -> Record {
        var record = Record(key: key, value: row[column] ?? [], metadata: metadata(row[column + 1]),
                            expiry: row[column + 2].map { .milliseconds(int64($0)) })
        record.version = UInt64(int64(row[column + 3] ?? []))
        return record
    }

    /// A bigint in PostgreSQL's binary format: 8 bytes, big-endian.
    static func int64(_ bytes: [UInt8]) -> Int64 {
        guard bytes.count == 8 else { return 0 }
        return bytes.reduce(0) { $0 << 8 | Int64($1) }
    }

    static func bytes(_ value: Int64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * $0)) }
    }

    /// jsonb in binary: a version byte (1) and the JSON text.
    static func jsonb(_ metadata: [String: String]) -> [UInt8] {
        guard !metadata.isEmpty, let data = try? JSONEncoder().encode(metadata) else { return Array("\u{1}{}".utf8) }
        return [1] + Array(data)
    }

    static func metadata(_ jsonb: [UInt8]?) -> [String: String] {
        guard let jsonb, jsonb.count > 3, jsonb.first == 1 else { return [:] }
        return (try? JSONDecoder().decode([String: String].self, from: Data(jsonb.dropFirst()))) ?? [:]
    }
}

extension PGError {
    /// The table (or its schema) does not exist: nothing was written there yet.
    var isMissingTable: Bool { sqlState == "42P01" || sqlState == "3F000" }
}

/// The statements of one store table, made once per scope and prepared on each connection at
/// first use.
final class PGStatements: Sendable {
    let create: [PGQuery]
    let readOne: PGQuery
    /// Writes the record whatever is there.
    let put: PGQuery
    /// Writes the record only if the key is absent (or expired).
    let putIfAbsent: PGQuery
    /// Fails (the version constraint) unless the key is alive at the version given; locks it.
    let expect: PGQuery
    let delete: PGQuery
    /// Deletes the key's record only if it is absent or expired (else fails).
    let deleteIfAbsent: PGQuery
    let sweep: PGQuery
    /// Prefix, suffix and page reads, by shape.
    private let selections = Mutex<[Int: PGQuery]>([:])
    private let table: String

    init(_ scope: StoreScope) {
        // names are validated letters, digits, '_' and '-': quoted as they are
        let schema = "\"\(scope.database)\""
        let table = "\(schema).\"\(scope.table)\""
        self.table = table
        let bytea = PGQuery.bytea, int8 = PGQuery.int8, jsonb = PGQuery.jsonb
        // the version a record has now: 0 once it expired
        let alive = "CASE WHEN r.expiry <= now() THEN 0 ELSE r.version END"
        let expiry = "CASE WHEN $4 IS NULL THEN NULL ELSE now() + $4 * interval '1 millisecond' END"
        create = [
            PGQuery("CREATE SCHEMA IF NOT EXISTS \(schema)", types: []),
            PGQuery("""
                CREATE TABLE IF NOT EXISTS \(table) (key bytea PRIMARY KEY, value bytea NOT NULL,
                metadata jsonb NOT NULL DEFAULT '{}', expiry timestamptz,
                version bigint NOT NULL CONSTRAINT micro_version CHECK (version >= 0))
                """, types: []),
            PGQuery("CREATE INDEX IF NOT EXISTS \"\(scope.table)_expiry\" ON \(table) (expiry) WHERE expiry IS NOT NULL", types: []),
        ]
        readOne = PGQuery("""
            SELECT value, metadata, (extract(epoch FROM expiry - now()) * 1000)::bigint, version FROM \(table)
            WHERE key = $1 AND (expiry IS NULL OR expiry > now())
            """, types: [bytea])
        put = PGQuery("""
            INSERT INTO \(table) AS r (key, value, metadata, expiry, version) VALUES ($1, $2, $3, \(expiry), 1)
            ON CONFLICT (key) DO UPDATE SET value = excluded.value, metadata = excluded.metadata, expiry = excluded.expiry,
            version = \(alive) + 1 RETURNING version
            """, types: [bytea, bytea, jsonb, int8])
        // a record alive at any version turns the version to -1, which the constraint refuses
        putIfAbsent = PGQuery("""
            INSERT INTO \(table) AS r (key, value, metadata, expiry, version) VALUES ($1, $2, $3, \(expiry), 1)
            ON CONFLICT (key) DO UPDATE SET value = excluded.value, metadata = excluded.metadata, expiry = excluded.expiry,
            version = CASE WHEN \(alive) = 0 THEN 1 ELSE -1 END RETURNING version
            """, types: [bytea, bytea, jsonb, int8])
        // another version sets -1; no record at all inserts one at -1: either way the
        // constraint refuses, and the transaction (the whole batch) rolls back
        expect = PGQuery("""
            WITH checked AS (UPDATE \(table) AS r SET version = CASE WHEN \(alive) = $2 THEN r.version ELSE -1 END
                             WHERE key = $1 RETURNING 1)
            INSERT INTO \(table) (key, value, version) SELECT $1, '', -1 WHERE NOT EXISTS (SELECT 1 FROM checked)
            """, types: [bytea, int8])
        delete = PGQuery("DELETE FROM \(table) WHERE key = $1", types: [bytea])
        deleteIfAbsent = PGQuery("""
            WITH alive AS (UPDATE \(table) SET version = -1 WHERE key = $1 AND (expiry IS NULL OR expiry > now()) RETURNING 1)
            DELETE FROM \(table) WHERE key = $1
            """, types: [bytea])
        sweep = PGQuery("DELETE FROM \(table) WHERE expiry <= now()", types: [])
    }

    /// The statements of one write, with their parameters.
    func steps(for write: StoreWrite) -> [PGStep] {
        switch write {
        case .put(let record, let ifVersion, _):
            let parameters: [[UInt8]?] = [Array(record.key.utf8), record.value, PostgresStore.jsonb(record.metadata),
                                          write.lifetime.map { PostgresStore.bytes(Self.milliseconds($0)) }]
            switch ifVersion {
            case nil: return [PGStep(put, parameters)]
            case 0: return [PGStep(putIfAbsent, parameters)]
            case let version?:
                return [PGStep(expect, [Array(record.key.utf8), PostgresStore.bytes(Int64(clamping: version))]), PGStep(put, parameters)]
            }
        case .delete(let key, let ifVersion):
            let bytes = Array(key.utf8)
            switch ifVersion {
            case nil: return [PGStep(delete, [bytes])]
            case 0: return [PGStep(deleteIfAbsent, [bytes])]
            case let version?: return [PGStep(expect, [bytes, PostgresStore.bytes(Int64(clamping: version))]), PGStep(delete, [bytes])]
            }
        }
    }

    /// A read of records (or only their keys) starting with `prefix` and ending with `suffix`,
    /// in key order, paged, and its parameters. Each shape is its own statement, so that a
    /// prefix is always a range of the index.
    func selection(keys: Bool, prefix: [UInt8], suffix: [UInt8], limit: Int, offset: Int) -> (PGQuery, [[UInt8]?]) {
        let upper = KeyRange.end(ofPrefix: prefix)
        let shape = (keys ? 1 : 0) | (prefix.isEmpty ? 0 : 2) | (upper == nil ? 0 : 4) | (suffix.isEmpty ? 0 : 8)
        var parameters: [[UInt8]?] = []
        var types: [Oid] = []
        var sql = "SELECT key" + (keys ? "" : ", value, metadata, (extract(epoch FROM expiry - now()) * 1000)::bigint, version")
        sql += " FROM \(table) WHERE (expiry IS NULL OR expiry > now())"
        func parameter(_ value: [UInt8]?, _ type: Oid) -> String {
            parameters.append(value)
            types.append(type)
            return "$\(parameters.count)"
        }
        if !prefix.isEmpty { sql += " AND key >= \(parameter(prefix, PGQuery.bytea))" }
        if let upper { sql += " AND key < \(parameter(upper, PGQuery.bytea))" }
        if !suffix.isEmpty {
            let count = parameter(PostgresStore.bytes(Int64(suffix.count)), PGQuery.int8)
            sql += " AND length(key) >= \(count) AND substr(key, length(key) - \(count)::int + 1) = \(parameter(suffix, PGQuery.bytea))"
        }
        sql += " ORDER BY key LIMIT \(parameter(limit > 0 ? PostgresStore.bytes(Int64(limit)) : nil, PGQuery.int8))"
        sql += " OFFSET \(parameter(PostgresStore.bytes(Int64(offset)), PGQuery.int8))"
        let query = selections.withLock { made in
            if let query = made[shape] { return query }
            let query = PGQuery(sql, types: types)
            made[shape] = query
            return query
        }
        return (query, parameters)
    }

    static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
