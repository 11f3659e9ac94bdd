import Foundation
import Micro
import MicroCore
import MicroSQLite
import MicroTestSupport
import Synchronization
import Testing

/// What only the SQLite store has: files that outlive the process, a corrupt one, writes
/// acknowledged before a kill -9, and `micro store` on them.
@Suite struct SQLiteStoreTests {
    static func directory() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("micro-sqlite-\(UUID().uuidString)")
    }

    static func micro(_ arguments: [String], _ environment: [String: String]) async throws -> ToolResult {
        try await Tool.run(Tool.binDirectory.appendingPathComponent("micro").path, arguments, environment: environment)
    }

    @Test func recordsOutliveTheStoreAndExpiredOnesAreSwept() async throws {
        let dir = Self.directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let first = SQLiteStore(directory: dir)
        try await first.table("t", database: "d").write(Record(key: "kept", value: [1], metadata: ["m": "v"]))
        try await first.table("t", database: "d").write(Record(key: "brief", value: [2]), ttl: .milliseconds(20))
        await first.close()
        #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("d.db").path))

        let second = SQLiteStore(directory: dir, sweepEvery: nil)
        defer { Task { await second.close() } }
        let kept = try await second.table("t", database: "d").read("kept")
        #expect(kept.value == [1] && kept.metadata == ["m": "v"] && kept.version == 1)
        try await Task.sleep(for: .milliseconds(50))  // the expiry itself is what is waited for
        await #expect(throws: StoreError.self) { _ = try await second.table("t", database: "d").read("brief") }
        // a closed store says so
        await #expect(throws: StoreError.self) { _ = try await first.read("kept") }
    }

    /// On an event loop, a read is answered from the loop's own connection when its pages are
    /// in memory, and goes to a reader thread (which brings them in) when they are not; either
    /// way it sees every write acknowledged before it.
    @Test func readsOnALoopAreAnsweredFromMemoryAndSeeEveryWrite() async throws {
        let dir = Self.directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = SQLiteStore(directory: dir)
        defer { Task { await store.close() } }
        let keys = (0..<200).map { "k\($0)" }
        _ = try await store.write(keys.map { .put(Record(key: $0, value: Array($0.utf8))) }, scope: .default)
        try await withTaskExecutorPreference(EventLoopGroup.shared.loops[0]) {
            for _ in 0..<3 {
                for key in keys { #expect(try await store.read(key).value == Array(key.utf8)) }
            }
            let warm = store.inlineReads()
            #expect(warm.hits > 0 && warm.misses > 0, "\(warm)")
            // writes from elsewhere: the next read on the loop sees each one at once
            for round in 1...20 {
                let key = keys[round * 7 % keys.count]
                _ = try await Task.detached { try await store.write(Record(key: key, value: [UInt8(round)])) }.value
                #expect(try await store.read(key).value == [UInt8(round)], "\(key) round \(round)")
                #expect(try await store.list(ListOptions(prefix: key)).contains(key))
            }
            // a prefix read on the loop, after the writes
            #expect(try await store.read("k1", ReadOptions(prefix: true)).count == 111)
        }
        #expect(store.inlineReads().hits > 600, "\(store.inlineReads())")
    }

    @Test func aCorruptFileIsAClearErrorNamingIt() async throws {
        let dir = Self.directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent("micro.db").path
        try Data(repeating: 0x5A, count: 8192).write(to: URL(fileURLWithPath: path))
        let store = SQLiteStore(directory: dir)
        defer { Task { await store.close() } }
        let write = await #expect(throws: StoreError.self) { try await store.write(Record(key: "k", value: [])) }
        #expect(write?.kind == .corrupt && write?.message.contains(path) == true, "\(String(describing: write))")
        let read = await #expect(throws: StoreError.self) { _ = try await store.read("k") }
        #expect(read?.kind == .corrupt, "\(String(describing: read))")
        // another database of the same store is not concerned
        try await store.table("t", database: "fine").write(Record(key: "k", value: [1]))
        #expect(try await store.table("t", database: "fine").read("k").value == [1])
    }

    /// A process writing with eight tasks is killed with -9 after 3,000 acknowledged writes: every
    /// write it acknowledged is in the file.
    @Test func everyAcknowledgedWriteSurvivesAKill() async throws {
        let dir = Self.directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let writer = try LineProcess([Tool.binDirectory.appendingPathComponent("micro").path, "store-bench", "--op", "write",
                                      "--count", "10000", "--concurrency", "8", "--acknowledge"],
                                     environment: ["MICRO_STORE": "sqlite", "MICRO_STORE_ADDRESS": dir.path])
        defer { writer.stop() }
        let seen = Mutex(0)  // (each line is matched once)
        let enough = await writer.waitForLine { _ in seen.withLock { n in n += 1; return n >= 3000 } }
        #expect(enough != nil)
        kill(writer.pid, SIGKILL)
        _ = await writer.waitForLine { _ in false }  // the output ends: all that was acknowledged is read
        let acknowledged = writer.output.filter { $0.hasPrefix("bench/") }
        #expect(acknowledged.count >= 3000)
        let store = SQLiteStore(directory: dir)
        defer { Task { await store.close() } }
        let stored = Set(try await store.table("bench", database: "bench").list())
        let missing = acknowledged.filter { !stored.contains($0) }
        #expect(missing.isEmpty, "\(missing.count) acknowledged writes lost, e.g. \(missing.prefix(3))")
    }

    @Test func theToolReadsWritesListsAndDeletes() async throws {
        let dir = Self.directory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let env = ["MICRO_STORE_ADDRESS": dir.path]
        let written = try await Self.micro(["store", "write", "greeting", "hello", "--metadata", "lang=en"], env)
        #expect(written.status == 0 && written.stdout == "1\n", "\(written.stderr)")
        let read = try await Self.micro(["store", "read", "greeting"], env)
        #expect(read.status == 0 && read.stdout == "hello", "\(read.stderr)")
        _ = try await Self.micro(["store", "write", "grass", "green", "--table", "colours"], env)
        let listed = try await Self.micro(["store", "list", "--prefix", "gr"], env)
        #expect(listed.stdout == "greeting\n")
        let other = try await Self.micro(["store", "read", "gr", "--prefix", "--table", "colours"], env)
        let line = try #require(try JSONSerialization.jsonObject(with: Data(other.stdout.utf8)) as? [String: Any])
        #expect(line["key"] as? String == "grass" && line["value"] as? String == "green" && line["version"] as? Int == 1)
        let conflict = try await Self.micro(["store", "write", "greeting", "hi", "--if-version", "7"], env)
        #expect(conflict.status == 1 && conflict.stderr.contains("at version 1, not 7"), "\(conflict.stderr)")
        let deleted = try await Self.micro(["store", "delete", "greeting"], env)
        #expect(deleted.status == 0)
        let missing = try await Self.micro(["store", "read", "greeting"], env)
        #expect(missing.status == 1 && missing.stderr == "micro store: no record greeting in micro/micro\n", "\(missing.stderr)")
        let badTable = try await Self.micro(["store", "list", "--table", "x; DROP TABLE t_micro"], env)
        #expect(badTable.status == 1 && badTable.stderr.contains("a table name is 1 to 63 letters"), "\(badTable.stderr)")
        let unknown = try await Self.micro(["store", "list"], ["MICRO_STORE": "redis"])
        #expect(unknown.status == 1 && unknown.stderr.contains("MICRO_STORE names no store 'redis'"), "\(unknown.stderr)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data("not a database".utf8).write(to: dir.appendingPathComponent("broken.db"))
        let corrupt = try await Self.micro(["store", "list", "--database", "broken"], env)
        #expect(corrupt.status == 1 && corrupt.stderr.contains("broken.db is unreadable"), "\(corrupt.stderr)")
    }
}
