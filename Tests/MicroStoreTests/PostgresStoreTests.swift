import Foundation
import Micro
import MicroPostgres
import MicroTestSupport
import Synchronization
import Testing

/// What only the PostgreSQL store has: a server that stops and comes back under writers, TLS with
/// client certificates, several stores (services) on one database, the sweep, and `micro store`
/// on it.
@Suite struct PostgresStoreTests {
    /// Eight writers write without pause; the server is stopped under them, then started again.
    /// Every call returns (done, or a clear unavailable error: nothing hangs), the writes resume
    /// by themselves, and every write that was acknowledged is there.
    @Test func aServerStoppedUnderWritersFailsCallsFastAndTheyResumeWhenItIsBack() async throws {
        let server = try await PostgresServer()
        defer { server.stop() }
        let store = try PostgresStore(PostgresStore.Configuration(url: server.url))
        let table = store.table("events")
        try await table.write(Record(key: "first", value: [1]))

        let shared = Writers()
        let (events, signal) = AsyncStream.makeStream(of: Void.self)
        let writers = Task {
            await withTaskGroup(of: Void.self) { group in
                for w in 0..<8 {
                    group.addTask {
                        var i = 0
                        while !shared.stop.load(ordering: .relaxed) {
                            let key = "w\(w)/\(i)"
                            i += 1
                            let now = shared.phase.load(ordering: .relaxed)
                            do {
                                try await table.write(Record(key: key, value: Array(key.utf8)))
                                shared.outcomes.withLock {
                                    $0.acknowledged.append(key)
                                    if now == Writers.Phase.back.rawValue { $0.afterRestart += 1 }
                                }
                            } catch let error as StoreError {
                                shared.outcomes.withLock {
                                    $0.refusals.append(error)
                                    if now == Writers.Phase.down.rawValue { $0.downRefusals += 1 }
                                }
                                // a writer that is refused tries again a little later, as a service would
                                try? await Task.sleep(for: .milliseconds(5))
                            } catch {
                                shared.outcomes.withLock { $0.other.append("\(error)") }
                            }
                            signal.yield()
                        }
                    }
                }
            }
        }
        var progress = events.makeAsyncIterator()
        func reached(_ condition: (Writers.Outcomes) -> Bool) async -> Bool {
            while !shared.outcomes.withLock({ condition($0) }) {
                guard await progress.next() != nil else { return false }
            }
            return true
        }
        #expect(await reached { $0.acknowledged.count >= 500 })
        shared.phase.store(Writers.Phase.down.rawValue, ordering: .relaxed)
        await server.shutdown()
        // while it is down, calls are refused (at once: they do not queue behind the dead server)
        #expect(await reached { $0.downRefusals >= 200 })
        try server.start()
        try await server.waitUntilReady()
        shared.phase.store(Writers.Phase.back.rawValue, ordering: .relaxed)
        #expect(await reached { $0.afterRestart >= 500 })
        shared.stop.store(true, ordering: .relaxed)
        await writers.value
        signal.finish()

        let seen = shared.outcomes.withLock { $0 }
        #expect(seen.other.isEmpty, "\(seen.other.prefix(3))")
        #expect(seen.refusals.allSatisfy { $0.kind == .unavailable }, "\(seen.refusals.first { $0.kind != .unavailable }.map { "\($0)" } ?? "")")
        #expect(seen.refusals.contains { $0.message.contains("PostgreSQL at 127.0.0.1:\(server.port)") }, "\(seen.refusals.prefix(2))")
        // none waited for the connection's watchdog: each heard of the outage when it happened
        #expect(!seen.refusals.contains { $0.message.contains("no answer within") }, "\(seen.refusals.filter { $0.message.contains("no answer") }.prefix(2))")
        let stored = Set(try await table.list())
        let lost = seen.acknowledged.filter { !stored.contains($0) }
        #expect(lost.isEmpty, "\(lost.count) acknowledged writes lost, e.g. \(lost.prefix(3))")
        #expect(try await table.read("first").value == [1])
        await store.close()
    }

    /// The notes example, a service on PostgreSQL: while the server is down its calls answer
    /// 503 (go-micro's error, naming the server), and once it is back they succeed again with no
    /// restart of the service; 404 and 409 come from the store's own errors.
    @Test func aServiceAnswers503WhileItsDatabaseIsDownAndRecovers() async throws {
        let server = try await PostgresServer()
        defer { server.stop() }
        let registry = FileManager.default.temporaryDirectory.appendingPathComponent("micro-registry-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: registry) }
        let notes = try await ChildService("notes", environment: ["MICRO_STORE": "postgres", "MICRO_STORE_ADDRESS": server.url,
                                                                  "MICRO_REGISTRY_ADDRESS": registry.path])
        defer { notes.stop() }
        _ = await notes.waitForLine(containing: "registered node")
        let client = Client(registry: LocalRegistry(directory: registry), options: CallOptions(timeout: .seconds(60)))
        struct Note: Codable, Sendable, Equatable { var id: String; var text: String; var version: UInt64? }
        struct NoteID: Codable, Sendable { var id: String }
        func write(_ note: Note) async throws -> Note { try await client.call("notes", "Notes.Write", note) }
        func code(_ body: () async throws -> Void) async -> Int? {
            do { try await body(); return nil } catch let error as MicroError { return error.code } catch { return -1 }
        }

        #expect(try await write(Note(id: "n1", text: "milk")).version == 1)
        let read: Note = try await client.call("notes", "Notes.Read", NoteID(id: "n1"))
        #expect(read == Note(id: "n1", text: "milk", version: 1))
        #expect(await code { let _: Note = try await client.call("notes", "Notes.Read", NoteID(id: "nothing")) } == 404)
        #expect(await code { _ = try await write(Note(id: "n1", text: "stale", version: 7)) } == 409)

        await server.shutdown()
        var refusal: MicroError?
        do {
            _ = try await write(Note(id: "n2", text: "while down"))
        } catch let error as MicroError {
            refusal = error
        }
        #expect(refusal?.code == 503 && refusal?.detail.contains("PostgreSQL at 127.0.0.1:\(server.port)") == true, "\(String(describing: refusal))")

        try server.start()
        try await server.waitUntilReady()
        // the store comes back by itself: the service is never restarted (a caller tries again,
        // a little later each time, while the store's short pause after the failure runs out)
        var back: Note?
        for attempt in 0..<200 where back == nil {
            do {
                back = try await write(Note(id: "n3", text: "after"))
            } catch let error as MicroError where error.code == 503 {
                try await Task.sleep(for: .milliseconds(10 * min(attempt + 1, 20)))
            }
        }
        #expect(back?.version == 1)
        #expect(try await client.call("notes", "Notes.Read", NoteID(id: "n1")) as Note == read)
    }

    /// What the writers of the outage test share.
    final class Writers: Sendable {
        enum Phase: Int { case before, down, back }
        struct Outcomes {
            var acknowledged: [String] = []
            var refusals: [StoreError] = []
            var other: [String] = []
            var afterRestart = 0
            var downRefusals = 0
        }
        let phase = Atomic<Int>(Phase.before.rawValue)
        let outcomes = Mutex(Outcomes())
        let stop = Atomic<Bool>(false)
    }

    /// TLS with the server's certificate checked and a client certificate presented; the wrong
    /// CA, no client certificate and no TLS at all are refused, each saying why.
    @Test func tlsWithClientCertificatesAndClearRefusals() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("micro-pg-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let files = try await TestCertificates.make(in: dir)
        let server = try await PostgresServer(tls: .init(certificate: files["server.crt"]!, key: files["server.key"]!, clientCA: files["ca.crt"]!))
        defer { server.stop() }
        func store(_ query: String) throws -> PostgresStore {
            try PostgresStore(PostgresStore.Configuration(url: server.url + "?" + query))
        }
        let client = "sslcert=\(files["client.crt"]!)&sslkey=\(files["client.key"]!)"
        let good = try store("sslmode=verify-full&sslrootcert=\(files["ca.crt"]!)&" + client)
        try await good.write(Record(key: "secret", value: [42]))
        #expect(try await good.read("secret").value == [42])
        await good.close()

        func refusal(_ query: String) async throws -> StoreError? {
            let bad = try store(query)
            defer { Task { await bad.close() } }
            return await #expect(throws: StoreError.self) { try await bad.write(Record(key: "k", value: [])) }
        }
        let wrongCA = try await refusal("sslmode=verify-full&sslrootcert=\(files["other.crt"]!)&" + client)
        #expect(wrongCA?.kind == .unavailable && wrongCA?.message.contains("certificate verify failed") == true, "\(String(describing: wrongCA))")
        let noCertificate = try await refusal("sslmode=verify-full&sslrootcert=\(files["ca.crt"]!)&sslcert=/nonexistent&sslkey=/nonexistent")
        #expect(noCertificate?.kind == .unavailable && noCertificate?.message.contains("certificate") == true, "\(String(describing: noCertificate))")
        let plain = try await refusal("sslmode=disable")
        #expect(plain?.kind == .unavailable && plain?.message.contains("no encryption") == true, "\(String(describing: plain))")
    }

    /// Two stores (two services) on one database see each other's writes and version checks;
    /// expired records are swept from the table; the URL, password and server are checked.
    @Test func servicesShareRecordsAndExpiredOnesAreSwept() async throws {
        let (url, server, release) = try await SharedPostgres.shared.database()
        defer { Task { await release() } }
        let one = try PostgresStore(PostgresStore.Configuration(url: url, sweepEvery: nil))
        let two = try PostgresStore(PostgresStore.Configuration(url: url, sweepEvery: nil))
        defer { Task { await one.close(); await two.close() } }
        let v1 = try await one.table("orders").write(Record(key: "o1", value: [1], metadata: ["by": "one"]))
        let seen = try await two.table("orders").read("o1")
        #expect(seen.value == [1] && seen.metadata == ["by": "one"] && seen.version == v1)
        try await two.table("orders").write(Record(key: "o1", value: [2]), ifVersion: v1)
        let stale = await #expect(throws: StoreError.self) { try await one.table("orders").write(Record(key: "o1", value: [3]), ifVersion: v1) }
        #expect(stale?.kind == .conflict)

        try await one.table("orders").write(Record(key: "brief", value: [0]), ttl: .milliseconds(20))
        let database = String(url.split(separator: "/").last!)
        #expect(try await server.psql("SELECT count(*) FROM micro.orders", database: database) == "2\n")
        try await Task.sleep(for: .milliseconds(50))  // the expiry itself is what is waited for
        try await one.sweep()
        #expect(try await server.psql("SELECT encode(key, 'escape') FROM micro.orders", database: database) == "o1\n")

        // a URL libpq cannot read, a wrong password, a port with no server: each a clear error
        let badURL = #expect(throws: StoreError.self) { _ = try PostgresStore(PostgresStore.Configuration(url: "postgres://[bad")) }
        #expect(badURL?.kind == .invalidArgument && badURL?.message.contains("MICRO_STORE_ADDRESS") == true, "\(String(describing: badURL))")
        let wrongPassword = try PostgresStore(PostgresStore.Configuration(url: url.replacingOccurrences(of: PostgresServer.password, with: "nope")))
        let refused = await #expect(throws: StoreError.self) { _ = try await wrongPassword.read("o1") }
        #expect(refused?.kind == .unavailable && refused?.message.contains("password authentication failed") == true, "\(String(describing: refused))")
        await wrongPassword.close()
        let port = try EtcdCluster.freePorts(1)[0]
        defer { EtcdCluster.release([port]) }
        let nobody = try PostgresStore(PostgresStore.Configuration(url: "postgres://micro@127.0.0.1:\(port)/micro"))
        let unreachable = await #expect(throws: StoreError.self) { _ = try await nobody.list(ListOptions()) }
        #expect(unreachable?.kind == .unavailable && unreachable?.message.contains("127.0.0.1:\(port)") == true, "\(String(describing: unreachable))")
        await nobody.close()
    }

    @Test func theToolUsesPostgres() async throws {
        let (url, _, release) = try await SharedPostgres.shared.database()
        defer { Task { await release() } }
        let env = ["MICRO_STORE": "postgres", "MICRO_STORE_ADDRESS": url]
        let micro = Tool.binDirectory.appendingPathComponent("micro").path
        let written = try await Tool.run(micro, ["store", "write", "greeting", "hello", "--table", "words"], environment: env)
        #expect(written.status == 0 && written.stdout == "1\n", "\(written.stderr)")
        let read = try await Tool.run(micro, ["store", "read", "greeting", "--table", "words"], environment: env)
        #expect(read.status == 0 && read.stdout == "hello", "\(read.stderr)")
        let store = try PostgresStore(PostgresStore.Configuration(url: url))
        defer { Task { await store.close() } }
        #expect(try await store.table("words").read("greeting").value == Array("hello".utf8))
        let conflict = try await Tool.run(micro, ["store", "write", "greeting", "hi", "--if-version", "7", "--table", "words"], environment: env)
        #expect(conflict.status == 1 && conflict.stderr.contains("not at version 7"), "\(conflict.stderr)")
        let missing = try await Tool.run(micro, ["store", "read", "nothing"], environment: env)
        #expect(missing.status == 1 && missing.stderr == "micro store: no record nothing in micro/micro\n", "\(missing.stderr)")
    }
}
