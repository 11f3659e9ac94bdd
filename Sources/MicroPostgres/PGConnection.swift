import CLibPQ
import DequeModule
import Foundation
import MicroCore
import Synchronization

/// A statement the store runs, prepared once on each connection that runs it (under a name made
/// from `id`, unique in the process). `types` are its parameters' type OIDs.
final class PGQuery: Sendable {
    let id: Int
    let sql: String
    let types: [Oid]

    private static let ids = Atomic<Int>(0)

    init(_ sql: String, types: [Oid]) {
        id = Self.ids.wrappingAdd(1, ordering: .relaxed).newValue
        self.sql = sql
        self.types = types
    }

    /// PostgreSQL's type OIDs the store uses.
    static let bytea: Oid = 17, int8: Oid = 20, jsonb: Oid = 3802
}

/// One statement of a request with its parameters, in binary (nil: SQL NULL).
struct PGStep: Sendable {
    let query: PGQuery
    let parameters: [[UInt8]?]

    init(_ query: PGQuery, _ parameters: [[UInt8]?] = []) {
        self.query = query
        self.parameters = parameters
    }
}

/// What one statement returned: its rows (each column's binary value, nil for NULL).
struct PGRows: Sendable {
    var rows: [[[UInt8]?]] = []
}

/// Why a request failed: PostgreSQL refused a statement (`sqlState` says why, `step` which), or
/// the connection could not be made or was lost.
struct PGError: Error, Sendable, CustomStringConvertible {
    enum Kind: Sendable { case server, connection }
    let kind: Kind
    /// PostgreSQL's five-character code ("23514" a check constraint, "42P01" no such table).
    var sqlState = ""
    let message: String
    /// The constraint a refused write broke, if any.
    var constraint: String?
    /// The statement of the request that failed.
    var step: Int?

    var description: String { message }
}

/// One connection to PostgreSQL, in pipeline mode, on one event loop: requests are sent as they
/// come (each a few statements and a sync point, so one implicit transaction), without waiting
/// for the answers of those before; answers come back in order. libpq does the protocol, TLS and
/// authentication; its socket is watched by the loop, so no thread ever blocks on it.
///
/// The connection is made on the first request. When it cannot be made, or breaks, every request
/// waiting on it fails at once with a `connection` error, and so do new ones for a while (50 ms,
/// doubling to 2 s): a caller hears at once that the server is down instead of queueing behind a
/// dead connection. The first request after that while tries again.
///
/// Threading: ``run(_:)`` and ``close()`` from any task; everything else happens on the loop's
/// thread. (Not an actor on the loop: a caller already on the loop, a service's handler, sends
/// its request inline and is resumed once, where an actor costs two more hops through the
/// loop's queue per request.)
final class PGConnection: @unchecked Sendable {
    // @unchecked Sendable: every mutable member is read and written on `loop`'s thread only:
    // `run` and `close` hand their work to it (`loop.execute` runs inline when already there),
    // the socket's callbacks and the timers' tasks run there.
    let loop: EventLoop

    /// libpq's connection string or `postgres://` URL.
    private let conninfo: String
    /// Where it connects, for messages (no password).
    let label: String
    private let connectTimeout: Duration
    private let requestTimeout: Duration

    private enum State {
        case idle
        case connecting
        case ready
        case down(until: ContinuousClock.Instant, reason: String)
        case closed
    }

    /// A request: its statements, the answers gathered so far, and who waits for them.
    private final class Request: @unchecked Sendable {
        // @unchecked Sendable: made by a caller, then touched only on the loop's thread.
        let steps: [PGStep]
        var results: [PGRows]
        var failure: PGError?
        var sentAt = ContinuousClock.now
        /// Times sent again because a statement it used was not prepared (``finish(_:)``).
        var resent = 0
        let continuation: UnsafeContinuation<Result<[PGRows], PGError>, Never>

        init(_ steps: [PGStep], _ continuation: UnsafeContinuation<Result<[PGRows], PGError>, Never>) {
            self.steps = steps
            self.results = []
            self.continuation = continuation
        }

        func finish(_ result: Result<[PGRows], PGError>) { continuation.resume(returning: result) }
    }

    /// What the server will answer next, in order.
    private enum Expected {
        /// a statement prepared on the way for a request's step (the query's id)
        case prepare(Int, Request, Int)
        /// a statement of a request
        case step(Request, Int)
        /// a request's sync point: its transaction ended, its answers are all in
        case sync(Request)
    }

    private var state = State.idle
    private var conn: OpaquePointer?
    private var watch: DescriptorWatch?
    private var expected = Deque<Expected>()
    /// Requests sent and not yet answered, oldest first.
    private var sent = Deque<Request>()
    /// Requests waiting for the connection.
    private var waiting = Deque<Request>()
    /// The statements prepared (or being prepared) on this connection, by query id.
    private var prepared: [Int: String] = [:]
    private var backoff = PGConnection.firstBackoff
    /// Counts connection attempts (a timer of an older one does nothing).
    private var attempt = 0
    private var watchdog: Task<Void, Never>?

    static let firstBackoff = Duration.milliseconds(50)
    static let maxBackoff = Duration.seconds(2)

    init(loop: EventLoop, conninfo: String, label: String, connectTimeout: Duration, requestTimeout: Duration) {
        self.loop = loop
        self.conninfo = conninfo
        self.label = label
        self.connectTimeout = connectTimeout
        self.requestTimeout = requestTimeout
    }

    /// Runs `steps` as one transaction (all or none); their answers, one per step.
    func run(_ steps: [PGStep]) async throws(PGError) -> [PGRows] {
        // the request is made and answered on the loop's thread: a caller there (a handler)
        // sends inline; another runs there for the call (its continuation is then made and
        // resumed on one thread, which ThreadSanitizer can follow)
        if loop.inEventLoop { return try await submitHere(steps).get() }
        return try await withTaskExecutorPreference(loop) { await self.submitHere(steps) }.get()
    }

    private func submitHere(_ steps: [PGStep]) async -> Result<[PGRows], PGError> {
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Result<[PGRows], PGError>, Never>) in
            let request = Request(steps, continuation)
            if loop.inEventLoop {
                submit(request)
            } else {
                loop.execute { self.submit(request) }  // the loop has stopped: it runs here
            }
        }
    }

    /// Closes the connection; requests still waiting fail.
    func close() async {
        await withTaskExecutorPreference(loop) {
            let error = PGError(kind: .connection, message: "the PostgreSQL store was closed")
            self.loop.execute {
                self.tearDown(failing: error, sentFailure: error)
                self.state = .closed
            }
        }
    }

    private func submit(_ request: Request) {
        switch state {
        case .ready:
            send(request)
        case .connecting:
            waiting.append(request)
        case .idle:
            waiting.append(request)
            connect()
        case .down(let until, let reason):
            if ContinuousClock.now < until {
                request.finish(.failure(PGError(kind: .connection, message: "PostgreSQL at \(label) is unreachable: \(reason)")))
            } else {
                waiting.append(request)
                connect()
            }
        case .closed:
            request.finish(.failure(PGError(kind: .connection, message: "the PostgreSQL store was closed")))
        }
    }

    // MARK: Connecting

    private func connect() {
        attempt += 1
        state = .connecting
        let started = conninfo.withCString { value in
            "dbname".withCString { key in
                var keys: [UnsafePointer<CChar>?] = [key, nil]
                var values: [UnsafePointer<CChar>?] = [value, nil]
                return PQconnectStartParams(&keys, &values, 1)
            }
        }
        guard let started else { return connectFailed("out of memory") }
        conn = started
        // notices ("schema already exists, skipping") are not for stderr
        PQsetNoticeReceiver(started, { _, _ in }, nil)
        guard PQstatus(started) != CONNECTION_BAD else { return connectFailed(Self.message(started)) }
        let attempt = self.attempt, timeout = connectTimeout
        Task {
            try? await Task.sleep(for: timeout)
            self.loop.execute { self.connectTimedOut(attempt) }
        }
        // libpq: begin as if PQconnectPoll had asked to wait for writing
        poll(PGRES_POLLING_WRITING)
    }

    private func poll(_ status: PostgresPollingStatusType) {
        guard let conn else { return }
        switch status {
        case PGRES_POLLING_READING, PGRES_POLLING_WRITING:
            // libpq may have changed sockets (another address, a retry without TLS): the watch is
            // made again at each step, never moved onto a descriptor number that was reused
            watch?.close()
            watch = nil
            do {
                watch = try DescriptorWatch(on: loop, descriptor: PQsocket(conn),
                                            events: status == PGRES_POLLING_READING ? .readable : .writable) { [self] ready in
                    self.ready(ready)
                }
            } catch {
                connectFailed("cannot watch its socket: \(error)")
            }
        case PGRES_POLLING_OK:
            connected()
        default:
            connectFailed(Self.message(conn))
        }
    }

    private func connected() {
        guard let conn else { return }
        guard PQsetnonblocking(conn, 1) == 0, PQenterPipelineMode(conn) == 1 else {
            return connectFailed("cannot use pipeline mode: \(Self.message(conn))")
        }
        state = .ready
        backoff = Self.firstBackoff
        prepared = [:]
        watch?.set(.readable)
        let queued = waiting
        waiting = []
        for request in queued { send(request) }
    }

    private func connectTimedOut(_ attempt: Int) {
        guard attempt == self.attempt, case .connecting = state else { return }
        connectFailed("no connection within \(connectTimeout)")
    }

    private func connectFailed(_ reason: String) {
        let error = PGError(kind: .connection, message: "cannot connect to PostgreSQL at \(label): \(reason)")
        tearDown(failing: error, sentFailure: error)
        down(reason)
    }

    /// After a failure: new requests fail at once for a while, then one tries again.
    private func down(_ reason: String) {
        state = .down(until: .now + backoff, reason: reason)
        backoff = min(backoff * 2, Self.maxBackoff)
    }

    /// Closes the socket and fails every request (those sent with `sentFailure`, which says they
    /// may have been applied).
    private func tearDown(failing error: PGError, sentFailure: PGError) {
        watch?.close()
        watch = nil
        if let conn { PQfinish(conn) }
        conn = nil
        watchdog?.cancel()
        watchdog = nil
        expected.removeAll()
        prepared = [:]
        let lost = sent, queued = waiting
        sent.removeAll()
        waiting.removeAll()
        for request in lost { request.finish(.failure(sentFailure)) }
        for request in queued { request.finish(.failure(error)) }
    }

    /// The connection broke (or stopped answering) while in use.
    private func broken(_ reason: String) {
        let lost = PGError(kind: .connection, message: "the connection to PostgreSQL at \(label) was lost (\(reason)); the request may or may not have been applied")
        let error = PGError(kind: .connection, message: "the connection to PostgreSQL at \(label) was lost: \(reason)")
        tearDown(failing: error, sentFailure: lost)
        down(reason)
    }

    // MARK: Requests

    private func send(_ request: Request) {
        guard let conn else { return }
        request.sentAt = .now
        request.results = []
        request.failure = nil
        for (index, step) in request.steps.enumerated() {
            let name: String
            if let known = prepared[step.query.id] {
                name = known
            } else {
                name = "micro_\(step.query.id)"
                let ok = step.query.types.withUnsafeBufferPointer { types in
                    PQsendPrepare(conn, name, step.query.sql, Int32(types.count), types.baseAddress)
                }
                guard ok == 1 else { return brokenWhileSending(request) }
                prepared[step.query.id] = name
                expected.append(.prepare(step.query.id, request, index))
            }
            guard Self.sendPrepared(conn, name, step.parameters) else { return brokenWhileSending(request) }
            expected.append(.step(request, index))
        }
        guard PQpipelineSync(conn) == 1 else { return brokenWhileSending(request) }
        expected.append(.sync(request))
        sent.append(request)
        if watchdog == nil {
            watchdog = Task(executorPreference: loop) { await self.watchOverAnswers() }
        }
        flush()
    }

    private func brokenWhileSending(_ request: Request) {
        sent.append(request)
        broken(conn.map(Self.message) ?? "closed")
    }

    /// Sends one execution of a prepared statement, its parameters and results in binary.
    private static func sendPrepared(_ conn: OpaquePointer, _ name: String, _ parameters: [[UInt8]?]) -> Bool {
        let count = parameters.count
        // the values in one buffer, so that one pointer stays valid for all of them; the
        // pointer, length and format arrays on the stack
        var bytes: [UInt8] = []
        bytes.reserveCapacity(parameters.reduce(0) { $0 + ($1?.count ?? 0) })
        for parameter in parameters {
            if let parameter { bytes.append(contentsOf: parameter) }
        }
        return bytes.withUnsafeBufferPointer { buffer in
            withUnsafeTemporaryAllocation(of: Int32.self, capacity: 2 * max(count, 1)) { sizes in
                withUnsafeTemporaryAllocation(of: UnsafePointer<CChar>?.self, capacity: max(count, 1)) { values in
                    let base = UnsafeRawPointer(buffer.baseAddress ?? UnsafePointer(bitPattern: 1)!)
                    var offset = 0
                    for (i, parameter) in parameters.enumerated() {
                        sizes[i] = Int32(parameter?.count ?? 0)
                        sizes[count + i] = 1  // binary
                        values[i] = parameter.map { _ in (base + offset).assumingMemoryBound(to: CChar.self) }
                        offset += parameter?.count ?? 0
                    }
                    return PQsendQueryPrepared(conn, name, Int32(count), values.baseAddress, sizes.baseAddress,
                                               sizes.baseAddress.map { $0 + count }, 1) == 1
                }
            }
        }
    }

    /// Sends what libpq holds; asks to hear when the socket takes more, if it must. (libpq reads
    /// while a send would block, so answers may be in its buffer now with nothing left on the
    /// socket to wake the loop: they are taken here.)
    private func flush() {
        guard let conn else { return }
        switch PQflush(conn) {
        case 0: watch?.set(.readable)
        case 1: watch?.set([.readable, .writable])
        default: return broken(Self.message(conn))
        }
        drain()
    }

    private func ready(_ events: DescriptorWatch.Events) {
        guard let conn else { return }
        switch state {
        case .connecting:
            poll(PQconnectPoll(conn))
        case .ready:
            if events.contains(.writable) { flush() }
            guard self.conn == conn else { return }
            if events.contains(.readable) || events.contains(.error) {
                guard PQconsumeInput(conn) == 1 else { return broken(Self.message(conn)) }
                drain()
            }
        default:
            break
        }
    }

    /// Takes every answer that has arrived, in order, and completes the requests they end.
    private func drain() {
        // `conn` is looked at again each time round: finishing a request may send it again,
        // and a send may find the connection broken and close it
        while let conn, let next = expected.first, PQisBusy(conn) == 0 {
            let result = PQgetResult(conn)
            switch next {
            case .prepare(let id, let request, let index):
                guard let result else {
                    expected.removeFirst()  // the end of the prepare's answer
                    continue
                }
                let status = PQresultStatus(result)
                if status != PGRES_COMMAND_OK {
                    prepared[id] = nil  // prepared again next time
                    // its step will say it was aborted: the request fails with why
                    if status != PGRES_PIPELINE_ABORTED { Self.fail(request, result, step: index) }
                }
                PQclear(result)
            case .step(let request, let index):
                guard let result else {
                    expected.removeFirst()
                    continue
                }
                Self.take(result, into: request, step: index)
                PQclear(result)
            case .sync(let request):
                guard let result else { return }
                let status = PQresultStatus(result)
                PQclear(result)
                guard status == PGRES_PIPELINE_SYNC else { return broken("an answer out of order") }
                expected.removeFirst()
                sent.removeFirst()
                finish(request)
            }
        }
        if let conn, PQstatus(conn) == CONNECTION_BAD { broken(Self.message(conn)) }
    }

    private static func take(_ result: OpaquePointer, into request: Request, step: Int) {
        switch PQresultStatus(result) {
        case PGRES_TUPLES_OK, PGRES_COMMAND_OK:
            var rows = PGRows()
            let count = PQntuples(result), columns = PQnfields(result)
            rows.rows.reserveCapacity(Int(count))
            for row in 0..<count {
                var values: [[UInt8]?] = []
                values.reserveCapacity(Int(columns))
                for column in 0..<columns {
                    if PQgetisnull(result, row, column) == 1 {
                        values.append(nil)
                    } else {
                        let length = Int(PQgetlength(result, row, column))
                        let start = UnsafeRawPointer(PQgetvalue(result, row, column)!)
                        values.append(Array(UnsafeRawBufferPointer(start: start, count: length)))
                    }
                }
                rows.rows.append(values)
            }
            request.results.append(rows)
        case PGRES_PIPELINE_ABORTED:
            request.results.append(PGRows())  // after the failure that aborted the request
        default:
            fail(request, result, step: step)
            request.results.append(PGRows())
        }
    }

    /// Records PostgreSQL's error as the request's failure (the first one counts).
    private static func fail(_ request: Request, _ result: OpaquePointer, step: Int) {
        guard request.failure == nil else { return }
        func field(_ code: UInt8) -> String? { PQresultErrorField(result, Int32(code)).map { String(cString: $0) } }
        var error = PGError(kind: .server, message: field(UInt8(ascii: "M")) ?? String(cString: PQresultErrorMessage(result)))
        error.sqlState = field(UInt8(ascii: "C")) ?? ""
        error.constraint = field(UInt8(ascii: "n"))
        error.step = step
        request.failure = error
    }

    private func finish(_ request: Request) {
        guard let failure = request.failure else {
            return request.finish(.success(request.results))
        }
        // a statement whose preparation failed in an earlier request (its table did not exist
        // yet, say) is prepared again. The request sent again may itself rely on a preparation
        // another request has pending (sent since), which can fail for the same reason while
        // writers race to make a table: each such round is another request's failure, so a few
        // rounds suffice; the bound only keeps a misbehaving server from looping us.
        if failure.sqlState == "26000", request.resent < Self.maxResends {
            request.resent += 1
            return send(request)
        }
        request.finish(.failure(failure))
    }

    /// Rounds a request is sent again for an unprepared statement (see ``finish(_:)``).
    static let maxResends = 8

    /// While requests are out: one waiting longer than the timeout means the server (or the
    /// way to it) stopped answering; the connection is dropped and made again.
    private func watchOverAnswers() async {
        assert(loop.inEventLoop)
        while let oldest = sent.first {
            let deadline = oldest.sentAt + requestTimeout
            if ContinuousClock.now >= deadline {
                watchdog = nil
                broken("no answer within \(requestTimeout)")
                return
            }
            do {
                try await Task.sleep(until: deadline)
            } catch {
                return
            }
        }
        watchdog = nil
    }

    private static func message(_ conn: OpaquePointer) -> String {
        // libpq's text is lines, some indented: one line
        String(cString: PQerrorMessage(conn)).split(separator: "\n")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.joined(separator: "; ")
    }
}
