import Foundation
import Micro
import MicroCore
import MicroPostgres
import MicroSQLite
import MicroTestSupport
import Synchronization
import Testing

/// One suite over every store: what go-micro's store does (read, write, delete, list with
/// prefixes, suffixes, limits, offsets, TTLs, databases and tables) and what it lacks (versions,
/// compare-and-set, batches), with unicode and binary keys, 1 MiB values and concurrent writers.
@Suite struct StoreConformanceTests {
    static let kinds = ["memory", "sqlite", "postgres"]

    /// A fresh store of `kind`, and how to dispose of it (postgres: a database of its own on a
    /// server the tests share).
    static func make(_ kind: String) async throws -> (any Store, @Sendable () async -> Void) {
        switch kind {
        case "sqlite":
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("micro-store-\(UUID().uuidString)")
            let store = SQLiteStore(directory: dir)
            return (store, {
                await store.close()
                try? FileManager.default.removeItem(at: dir)
            })
        case "postgres":
            let (url, _, release) = try await SharedPostgres.shared.database()
            let store = try PostgresStore(PostgresStore.Configuration(url: url))
            return (store, {
                await store.close()
                await release()
            })
        default:
            return (MemoryStore(), {})
        }
    }

    /// Runs `body` on an event loop, where a service's handlers run (the SQLite and PostgreSQL
    /// stores take their fast paths there; the other tests of each store call from elsewhere).
    static func using(_ kind: String, _ body: (any Store) async throws -> Void) async throws {
        let (store, dispose) = try await make(kind)
        do {
            try await withTaskExecutorPreference(EventLoopGroup.shared.loops[0]) { try await body(store) }
        } catch {
            await dispose()
            throw error
        }
        await dispose()
    }

    @Test(arguments: kinds) func writeReadDeleteWithVersions(kind: String) async throws {
        try await Self.using(kind) { store in
            let missing = await #expect(throws: StoreError.self) { _ = try await store.read("nobody") }
            #expect(missing?.kind == .notFound)
            let v1 = try await store.write(Record(key: "alice", value: Array("one".utf8), metadata: ["type": "user"]))
            #expect(v1 == 1)
            let alice = try await store.read("alice")
            #expect(alice.value == Array("one".utf8) && alice.metadata == ["type": "user"] && alice.version == 1 && alice.expiry == nil)
            let v2 = try await store.write(Record(key: "alice", value: Array("two".utf8)), ifVersion: 1)
            #expect(v2 == 2)
            // a writer that read version 1 is refused now
            let stale = await #expect(throws: StoreError.self) { try await store.write(Record(key: "alice", value: []), ifVersion: 1) }
            #expect(stale?.kind == .conflict)
            #expect(try await store.read("alice").value == Array("two".utf8))
            // ifVersion 0: only if absent
            let exists = await #expect(throws: StoreError.self) { try await store.write(Record(key: "alice", value: []), ifVersion: 0) }
            #expect(exists?.kind == .conflict)
            #expect(try await store.write(Record(key: "bob", value: []), ifVersion: 0) == 1)
            #expect(try await store.read("bob").value.isEmpty)
            let wrongDelete = await #expect(throws: StoreError.self) { try await store.delete("alice", ifVersion: 1) }
            #expect(wrongDelete?.kind == .conflict)
            try await store.delete("alice", ifVersion: 2)
            await #expect(throws: StoreError.self) { _ = try await store.read("alice") }
            try await store.delete("alice")  // absent: nothing to do
            // a key written again after a delete starts over at version 1
            #expect(try await store.write(Record(key: "alice", value: [])) == 1)
            // typed records
            struct User: Codable, Equatable { var name: String; var age: Int }
            try await store.write(Record(key: "u1", encoding: User(name: "Zoë", age: 7)))
            #expect(try await store.read("u1").decode(User.self) == User(name: "Zoë", age: 7))
        }
    }

    @Test(arguments: kinds) func prefixesSuffixesLimitsAndOffsets(kind: String) async throws {
        try await Self.using(kind) { store in
            let keys = (0..<300).map { String(format: "item/%03d", $0) } + ["item", "itemz", "other/001", "x"]
            _ = try await store.write(keys.map { .put(Record(key: $0, value: Array($0.utf8))) }, scope: .default)
            #expect(try await store.list(ListOptions()) == keys.sorted())
            let items = try await store.read("item/", ReadOptions(prefix: true))
            #expect(items.map(\.key) == (0..<300).map { String(format: "item/%03d", $0) })
            #expect(items.allSatisfy { $0.value == Array($0.key.utf8) && $0.version == 1 })
            let page = try await store.read("item/", ReadOptions(prefix: true, limit: 10, offset: 295))
            #expect(page.map(\.key) == (295..<300).map { String(format: "item/%03d", $0) })
            #expect(try await store.read("001", ReadOptions(suffix: true)).map(\.key) == ["item/001", "other/001"])
            #expect(try await store.read("item/", ReadOptions(prefix: true, suffix: false, limit: 1)).map(\.key) == ["item/000"])
            #expect(try await store.read("nothing/", ReadOptions(prefix: true)).isEmpty)
            #expect(try await store.list(ListOptions(prefix: "item/", suffix: "9", limit: 3, offset: 1)) == ["item/019", "item/029", "item/039"])
            #expect(try await store.list(ListOptions(prefix: "item", limit: 2)) == ["item", "item/000"])
            #expect(try await store.list(ListOptions(offset: 1000)).isEmpty)
            // pages of 64 put together are the whole list
            var paged: [String] = []
            while true {
                let next = try await store.list(ListOptions(limit: 64, offset: paged.count))
                paged += next
                if next.count < 64 { break }
            }
            #expect(paged == keys.sorted())
        }
    }

    @Test(arguments: kinds) func databasesAndTablesApart(kind: String) async throws {
        try await Self.using(kind) { store in
            let users = store.table("users"), orders = store.table("orders"), otherUsers = store.table("users", database: "shop")
            try await users.write(Record(key: "k", value: [1]))
            try await orders.write(Record(key: "k", value: [2]))
            try await otherUsers.write(Record(key: "k", value: [3]))
            #expect(try await users.read("k").value == [1])
            #expect(try await orders.read("k").value == [2])
            #expect(try await otherUsers.read("k").value == [3])
            await #expect(throws: StoreError.self) { _ = try await store.read("k") }  // micro/micro
            #expect(try await store.table("never").list().isEmpty)
            try await orders.delete("k")
            #expect(try await users.read("k").value == [1])
        }
    }

    @Test(arguments: kinds) func expiredRecordsReadAsNotFound(kind: String) async throws {
        try await Self.using(kind) { store in
            try await store.write(Record(key: "short", value: [1]), ttl: .milliseconds(30))
            try await store.write(Record(key: "again", value: [1]), ttl: .seconds(3600))
            #expect(try await store.write(Record(key: "again", value: [1]), ttl: .milliseconds(30)) == 2)
            try await store.write(Record(key: "long", value: [2], expiry: .seconds(3600)))
            try await store.write(Record(key: "overridden", value: [3], expiry: .milliseconds(30)), ttl: .seconds(3600))
            let long = try await store.read("long")
            #expect(long.expiry.map { $0 > .seconds(3500) && $0 <= .seconds(3600) } == true)
            // the passing of time is what is tested here: it is waited for
            try await Task.sleep(for: .milliseconds(100))
            let gone = await #expect(throws: StoreError.self) { _ = try await store.read("short") }
            #expect(gone?.kind == .notFound)
            #expect(try await store.list(ListOptions()) == ["long", "overridden"])
            #expect(try await store.read("", ReadOptions(prefix: true)).map(\.key) == ["long", "overridden"])
            // an expired key is absent for a version check, and written again from version 1
            #expect(try await store.write(Record(key: "short", value: [4]), ifVersion: 0) == 1)
            #expect(try await store.write(Record(key: "again", value: [4])) == 1)
            for bad in [Duration.zero, .seconds(-1)] {
                let error = await #expect(throws: StoreError.self) { try await store.write(Record(key: "x", value: []), ttl: bad) }
                #expect(error?.kind == .invalidArgument)
            }
        }
    }

    @Test(arguments: kinds) func unicodeAndBinaryKeysAndValuesAndLargeValues(kind: String) async throws {
        let big = Pattern.bytes(1 << 20)  // made here, not on the loop the other tests share
        try await Self.using(kind) { store in
            let composed = "caf\u{E9}", decomposed = "cafe\u{301}"  // equal as Swift strings, not as bytes
            let keys = ["ключ", "😀/🚀", composed, decomposed, "tab\there", "nul\u{0}inside", "quote'\"; DROP TABLE t_micro; --", "%_*?"]
            let binary = (0...255).map { UInt8($0) }
            for (i, key) in keys.enumerated() {
                try await store.write(Record(key: key, value: binary + [UInt8(i)], metadata: ["ключ": "значение \(i)"]))
            }
            for (i, key) in keys.enumerated() {
                let record = try await store.read(key)
                #expect(record.key.utf8.elementsEqual(key.utf8), "\(key)")
                #expect(record.value == binary + [UInt8(i)] && record.metadata == ["ключ": "значение \(i)"])
            }
            let listed = try await store.list(ListOptions())
            #expect(listed.count == keys.count)
            #expect(listed.map { Array($0.utf8) } == keys.map { Array($0.utf8) }.sorted { $0.lexicographicallyPrecedes($1) })
            #expect(try await store.read("caf", ReadOptions(prefix: true)).count == 2)
            // a mebibyte value, and an empty one
            try await store.write(Record(key: "big", value: big))
            #expect(try await store.read("big").value == big)
            try await store.write(Record(key: "empty", value: []))
            #expect(try await store.read("empty").value == [])
        }
    }

    @Test(arguments: kinds) func badInputIsAClearError(kind: String) async throws {
        try await Self.using(kind) { (store: any Store) async throws in
            func expectInvalid(_ what: String, _ body: () async throws -> Void) async {
                let error = await #expect(throws: StoreError.self, "\(what)") { try await body() }
                #expect(error?.kind == .invalidArgument, "\(what): \(String(describing: error))")
            }
            await expectInvalid("empty key") { try await store.write(Record(key: "", value: [])) }
            await expectInvalid("long key") { try await store.write(Record(key: String(repeating: "k", count: Record.maxKeyBytes + 1), value: [])) }
            await expectInvalid("large value") { try await store.write(Record(key: "k", value: [UInt8](repeating: 0, count: Record.maxValueBytes + 1))) }
            await expectInvalid("empty read key") { _ = try await store.read("") }
            for table in ["", "t\"; DROP TABLE x; --", "a b", "../up", String(repeating: "t", count: 64), "ü"] {
                await expectInvalid("table '\(table)'") { try await store.table(table).write(Record(key: "k", value: [])) }
                await expectInvalid("database '\(table)'") { _ = try await store.table("t", database: table).list() }
            }
            await expectInvalid("negative limit") { _ = try await store.list(ListOptions(limit: -1)) }
            await expectInvalid("negative offset") { _ = try await store.read("k", ReadOptions(prefix: true, offset: -1)) }
            // nothing of it was written
            #expect(try await store.list(ListOptions()).isEmpty)
        }
    }

    @Test(arguments: kinds) func batchesAreAllOrNone(kind: String) async throws {
        try await Self.using(kind) { store in
            let versions = try await store.write([.put(Record(key: "a", value: [1])), .put(Record(key: "b", value: [2])),
                                                  .put(Record(key: "a", value: [3]))], scope: .default)
            #expect(versions == [1, 1, 2])
            // the last check fails: nothing of the batch is applied
            let refused = await #expect(throws: StoreError.self) {
                _ = try await store.write([.put(Record(key: "c", value: [4])), .delete("a"), .put(Record(key: "b", value: [5]), ifVersion: 7)],
                                          scope: .default)
            }
            #expect(refused?.kind == .conflict)
            #expect(try await store.list(ListOptions()) == ["a", "b"])
            #expect(try await store.read("a").value == [3])
            #expect(try await store.read("b").value == [2])
        }
    }

    /// Eight tasks increment one counter 50 times each with compare-and-set, trying again on
    /// a conflict, while writing keys of their own: nothing lost.
    @Test(arguments: kinds) func concurrentWritersLoseNothing(kind: String) async throws {
        try await Self.using(kind) { store in
            try await store.write(Record(key: "counter", encoding: 0))
            try await withThrowingTaskGroup(of: Void.self) { group in
                for t in 0..<8 {
                    group.addTask {
                        for i in 0..<50 {
                            while true {
                                let current = try await store.read("counter")
                                do {
                                    try await store.write(Record(key: "counter", encoding: try current.decode(Int.self) + 1), ifVersion: current.version)
                                    break
                                } catch let error as StoreError where error.kind == .conflict {
                                    continue
                                }
                            }
                            try await store.write(Record(key: "task/\(t)/\(i)", value: [UInt8(t)]))
                        }
                    }
                }
                try await group.waitForAll()
            }
            let counter = try await store.read("counter")
            #expect(try counter.decode(Int.self) == 400 && counter.version == 401)
            #expect(try await store.list(ListOptions(prefix: "task/")).count == 400)
        }
    }
}
