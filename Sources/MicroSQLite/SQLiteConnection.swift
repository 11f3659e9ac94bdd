import CSQLite
import CSQLiteNoIO
import DequeModule
import Foundation
import Micro
import Synchronization

/// SQLite's "copy the bytes now" destructor.
private let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// One SQLite connection, used by one thread only (its worker's), with its prepared statements
/// kept by SQL text.
final class SQLiteConnection {
    let path: String
    private let db: OpaquePointer
    private var statements: [String: OpaquePointer] = [:]

    /// `inline`: a read-only connection for an event loop, on the VFS that refuses file reads
    /// while the loop asks it to (`mc_sqlite_noio_begin`), with a larger page cache (what it
    /// holds is what the loop can answer from) and no busy wait (a busy file is a refusal too).
    init(path: String, readOnly: Bool, inline: Bool = false) throws(StoreError) {
        self.path = path
        var handle: OpaquePointer?
        let flags = (readOnly || inline ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &handle, flags, inline ? mc_sqlite_noio_name : nil)
        guard rc == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
            sqlite3_close_v2(handle)
            throw StoreError(.unavailable, "cannot open \(path): \(message)")
        }
        db = handle
        sqlite3_extended_result_codes(db, 1)
        do {
            if inline {
                try execute("PRAGMA busy_timeout = 0")
                try execute("PRAGMA cache_size = -16384")  // 16 MiB
                try execute("PRAGMA query_only = 1")
            } else if readOnly {
                // a busy file (another process writing) is waited for, up to 5 s
                try execute("PRAGMA busy_timeout = 5000")
                try execute("PRAGMA query_only = 1")
            } else {
                try execute("PRAGMA busy_timeout = 5000")
                // WAL: readers never wait for the writer; FULL: a write acknowledged is on disk
                try execute("PRAGMA journal_mode = WAL")
                try execute("PRAGMA synchronous = FULL")
            }
        } catch {
            sqlite3_close_v2(db)
            throw error
        }
    }

    deinit {
        for statement in statements.values { sqlite3_finalize(statement) }
        for statement in keyed.values { sqlite3_finalize(statement) }
        sqlite3_close_v2(db)
    }

    func execute(_ sql: String) throws(StoreError) {
        var message: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &message)
        defer { sqlite3_free(message) }
        guard rc == SQLITE_OK else { throw error(rc, message.map { String(cString: $0) }) }
    }

    /// The prepared statement for `sql`, reset and with its bindings cleared.
    func statement(_ sql: String) throws(StoreError) -> Statement {
        if let cached = statements[sql] {
            sqlite3_reset(cached)
            sqlite3_clear_bindings(cached)
            return Statement(connection: self, handle: cached)
        }
        let handle = try prepare(sql)
        statements[sql] = handle
        return Statement(connection: self, handle: handle)
    }

    /// What a statement of the hot path is found by: what it does and on which table (hashing
    /// a table name, not a whole SQL text, and no SQL built while it is cached).
    struct StatementKey: Hashable {
        let kind: Int
        let table: String
    }
    private var keyed: [StatementKey: OpaquePointer] = [:]

    /// The prepared statement `key` names, made from `sql()` the first time.
    func statement(_ key: StatementKey, _ sql: () -> String) throws(StoreError) -> Statement {
        if let cached = keyed[key] {
            sqlite3_reset(cached)
            sqlite3_clear_bindings(cached)
            return Statement(connection: self, handle: cached)
        }
        let handle = try prepare(sql())
        keyed[key] = handle
        return Statement(connection: self, handle: handle)
    }

    private func prepare(_ sql: String) throws(StoreError) -> OpaquePointer {
        var handle: OpaquePointer?
        let rc = sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &handle, nil)
        guard rc == SQLITE_OK, let handle else { throw error(rc) }
        return handle
    }

    /// Resets the statements left mid-way (a read that took one row): a statement not reset
    /// keeps its read transaction, and the connection would go on seeing an old snapshot.
    func finishStatements() {
        var statement = sqlite3_next_stmt(db, nil)
        while let current = statement {
            if sqlite3_stmt_busy(current) != 0 { sqlite3_reset(current) }
            statement = sqlite3_next_stmt(db, current)
        }
    }

    /// What SQLite said, as a store error naming the file.
    func error(_ rc: Int32, _ text: String? = nil) -> StoreError {
        let message = text ?? String(cString: sqlite3_errmsg(db))
        switch rc & 0xff {
        case SQLITE_CORRUPT, SQLITE_NOTADB:
            return StoreError(.corrupt, "\(path) is unreadable: \(message)")
        case SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL, SQLITE_IOERR, SQLITE_CANTOPEN, SQLITE_READONLY, SQLITE_NOMEM, SQLITE_PROTOCOL:
            return StoreError(.unavailable, "\(path): \(message)")
        default:
            return StoreError(.unavailable, "\(path): \(message)")
        }
    }

    /// A prepared statement: bind from 1, step, read columns from 0.
    struct Statement {
        let connection: SQLiteConnection
        let handle: OpaquePointer

        func bind(_ index: Int32, _ bytes: [UInt8]) {
            bytes.withUnsafeBytes { buffer in
                // (a zero-length blob is still a blob, not NULL)
                _ = sqlite3_bind_blob(handle, index, UnsafeRawPointer(buffer.baseAddress) ?? UnsafeRawPointer(bitPattern: 1), Int32(buffer.count), transient)
            }
        }

        /// A string's UTF-8 bytes as a blob (a key), without copying them into an array first.
        func bindUTF8(_ index: Int32, _ string: String) {
            var string = string
            string.withUTF8 { buffer in
                _ = sqlite3_bind_blob(handle, index, UnsafeRawPointer(buffer.baseAddress) ?? UnsafeRawPointer(bitPattern: 1), Int32(buffer.count), transient)
            }
        }

        func bind(_ index: Int32, _ text: String) {
            _ = sqlite3_bind_text(handle, index, text, -1, transient)
        }

        func bind(_ index: Int32, _ value: Int64?) {
            if let value { _ = sqlite3_bind_int64(handle, index, value) } else { _ = sqlite3_bind_null(handle, index) }
        }

        /// Steps a statement that returns no rows.
        func run() throws(StoreError) {
            _ = try step()
        }

        /// true: a row is ready; false: done.
        func step() throws(StoreError) -> Bool {
            let rc = sqlite3_step(handle)
            switch rc {
            case SQLITE_ROW: return true
            case SQLITE_DONE: return false
            default: throw connection.error(rc)
            }
        }

        func blob(_ column: Int32) -> [UInt8] {
            let count = Int(sqlite3_column_bytes(handle, column))
            guard count > 0, let base = sqlite3_column_blob(handle, column) else { return [] }
            return Array(UnsafeRawBufferPointer(start: base, count: count))
        }

        /// NULL, or no bytes.
        func isEmpty(_ column: Int32) -> Bool { sqlite3_column_bytes(handle, column) == 0 }

        func text(_ column: Int32) -> String {
            guard let base = sqlite3_column_text(handle, column) else { return "" }
            return String(cString: base)
        }

        func int(_ column: Int32) -> Int64? {
            sqlite3_column_type(handle, column) == SQLITE_NULL ? nil : sqlite3_column_int64(handle, column)
        }
    }
}

/// A thread with a connection of its own, running jobs one after another. The writer's worker
/// takes every job waiting at once into one transaction (each in a savepoint of its own, so one
/// that fails is rolled back alone): one fsync for many writes.
final class SQLiteWorker: Sendable {
    private struct Job: Sendable {
        /// Runs on the worker's thread; says whether it failed (its changes are then rolled
        /// back) and returns what hands its outcome over once its transaction ended (given the
        /// commit's error, if the commit failed).
        let run: @Sendable (SQLiteConnection) -> (failed: Bool, finish: @Sendable (StoreError?) -> Void)
        /// Tells the job it could not run.
        let fail: @Sendable (StoreError) -> Void
    }

    private struct State {
        var jobs: Deque<Job> = []
        var stopped = false
    }

    private let state = Mutex(State())
    private let wake = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)

    /// Starts the thread; `open` makes its connection there (if it fails, every job is told).
    init(name: String, transactions: Bool, open: @escaping @Sendable () throws(StoreError) -> SQLiteConnection) {
        // (the thread holds the worker until stop() ends it)
        let thread = Thread { [self] in serve(transactions: transactions, open: open) }
        thread.name = name
        thread.start()
    }

    /// The thread's loop. The connection is opened at the first job (and again after a
    /// failure): a reader's file may not exist before the writer's first job made it.
    private func serve(transactions: Bool, open: @Sendable () throws(StoreError) -> SQLiteConnection) {
        var connection: SQLiteConnection?
        while true {
            wake.wait()  // signalled once per job given, and by stop(): some wakes find nothing
            let (jobs, stopped) = state.withLock { s in
                defer { s.jobs = [] }
                return (s.jobs, s.stopped)
            }
            if !jobs.isEmpty && connection == nil {
                do {
                    connection = try open()
                } catch {
                    for job in jobs { job.fail(error) }
                }
            }
            if !jobs.isEmpty, let db = connection { Self.run(jobs, on: db, transaction: transactions) }
            if stopped && jobs.isEmpty { break }
        }
        connection = nil
        done.signal()
    }

    private static func run(_ jobs: Deque<Job>, on db: SQLiteConnection, transaction: Bool) {
        guard !jobs.isEmpty else { return }
        guard transaction else {
            for job in jobs {
                let finish = job.run(db).finish
                db.finishStatements()
                finish(nil)
            }
            return
        }
        do {
            try db.statement("BEGIN IMMEDIATE").run()
        } catch {
            for job in jobs { job.fail(error) }
            return
        }
        // one job alone needs no savepoint: if it fails, the whole transaction is rolled back
        let alone = jobs.count == 1
        var finishes: [@Sendable (StoreError?) -> Void] = []
        var committing = false
        for job in jobs {
            if !alone {
                do {
                    try db.statement("SAVEPOINT job").run()
                } catch {
                    job.fail(error)
                    continue
                }
            }
            let (failed, finish) = job.run(db)
            db.finishStatements()
            if !alone {
                if failed { try? db.statement("ROLLBACK TO job").run() }
                try? db.statement("RELEASE job").run()
            }
            committing = committing || !failed
            finishes.append(finish)
        }
        var failure: StoreError?
        do {
            try db.statement(committing ? "COMMIT" : "ROLLBACK").run()
        } catch {
            failure = error
            try? db.statement("ROLLBACK").run()
        }
        for finish in finishes { finish(failure) }
    }

    /// Runs `body` on the worker's thread with its connection. In the writer's transaction, a
    /// `body` that throws has its changes rolled back alone.
    func run<T: Sendable>(_ body: @escaping @Sendable (SQLiteConnection) throws(StoreError) -> T) async throws(StoreError) -> T {
        let result: Result<T, StoreError> = await withCheckedContinuation { continuation in
            let job = Job(run: { db in
                let outcome = Result<T, StoreError> { () throws(StoreError) in try body(db) }
                let failed: Bool
                if case .failure = outcome { failed = true } else { failed = false }
                return (failed, { commitFailure in
                    if let commitFailure, !failed {
                        continuation.resume(returning: .failure(commitFailure))
                    } else {
                        continuation.resume(returning: outcome)
                    }
                })
            }, fail: { error in continuation.resume(returning: .failure(error)) })
            let accepted = state.withLock { s in
                guard !s.stopped else { return false }
                s.jobs.append(job)
                return true
            }
            if accepted {
                wake.signal()
            } else {
                continuation.resume(returning: .failure(StoreError(.unavailable, "the store is closed")))
            }
        }
        return try result.get()
    }

    /// Lets the jobs already given finish, then ends the thread (and closes its connection).
    func stop() {
        let first = state.withLock { s in
            defer { s.stopped = true }
            return !s.stopped
        }
        guard first else { return }
        wake.signal()
        done.wait()
    }
}
