import Foundation
import Synchronization

/// Records in this process's memory (`MICRO_STORE=memory`), for tests and caches: gone when the
/// process ends. Expired records are dropped when met and by a sweep at each 1,000th write.
public final class MemoryStore: Store {
    /// The process's one memory store (every `MICRO_STORE=memory` user shares it).
    public static let shared = MemoryStore()

    private struct Entry {
        var value: [UInt8]
        var metadata: [String: String]
        var expires: ContinuousClock.Instant?
        var version: UInt64
    }

    /// Keys as their UTF-8 bytes: Swift's `String` equality would merge canonically equivalent
    /// keys that other stores keep apart.
    private struct State {
        var tables: [StoreScope: [[UInt8]: Entry]] = [:]
        var writes = 0
    }

    private let state = Mutex(State())

    public init() {}

    public var name: String { "memory" }

    public func read(_ key: String, _ options: ReadOptions) async throws -> [Record] {
        try options.validate()
        if !options.prefix && !options.suffix { try Record.validate(key: key) }
        let now = ContinuousClock.now
        let bytes = Array(key.utf8)
        return try state.withLock { s in
            let table = s.tables[options.scope] ?? [:]
            if !options.prefix && !options.suffix {
                guard let entry = table[bytes], Self.alive(entry, now) else { throw StoreError(.notFound, "no record \(key) in \(options.scope)") }
                return [Self.record(bytes, entry, now)]
            }
            let keys = table.keys.filter { k in
                (!options.prefix || k.starts(with: bytes)) && (!options.suffix || k.reversed().starts(with: bytes.reversed()))
                    && Self.alive(table[k]!, now)
            }
            return Self.page(keys.sorted { $0.lexicographicallyPrecedes($1) }, options.offset, options.limit).map { Self.record($0, table[$0]!, now) }
        }
    }

    public func write(_ writes: [StoreWrite], scope: StoreScope) async throws -> [UInt64] {
        try scope.validate()
        for write in writes { try write.validate() }
        let now = ContinuousClock.now
        return try state.withLock { s in
            // every check first (a batch may write a key twice: each sees the batch's earlier
            // writes), so that nothing is applied unless all hold; then in place, not on a copy
            var versions: [UInt64] = []
            var pending: [[UInt8]: UInt64] = [:]
            for write in writes {
                let key = Array(write.key.utf8)
                let current = pending[key] ?? s.tables[scope]?[key].flatMap { Self.alive($0, now) ? $0.version : nil } ?? 0
                let ifVersion: UInt64?
                switch write {
                case .put(_, let v, _), .delete(_, let v): ifVersion = v
                }
                if let ifVersion, ifVersion != current {
                    throw StoreError(.conflict, "\(write.key) in \(scope) is at version \(current), not \(ifVersion)")
                }
                let next: UInt64
                if case .put = write { next = current + 1 } else { next = 0 }
                pending[key] = next
                versions.append(next)
            }
            for (write, version) in zip(writes, versions) {
                let key = Array(write.key.utf8)
                switch write {
                case .put(let record, _, _):
                    s.tables[scope, default: [:]][key] = Entry(value: record.value, metadata: record.metadata,
                                                               expires: write.lifetime.map { now + $0 }, version: version)
                case .delete:
                    s.tables[scope]?[key] = nil
                }
            }
            s.writes += 1
            if s.writes % 1000 == 0 {
                for scope in Array(s.tables.keys) { s.tables[scope] = s.tables[scope]!.filter { Self.alive($0.value, now) } }
            }
            return versions
        }
    }

    public func list(_ options: ListOptions) async throws -> [String] {
        try options.validate()
        let now = ContinuousClock.now
        let prefix = Array(options.prefix.utf8), suffix = Array(options.suffix.utf8)
        return state.withLock { s in
            let table = s.tables[options.scope] ?? [:]
            let keys = table.keys.filter { k in
                k.starts(with: prefix) && k.reversed().starts(with: suffix.reversed()) && Self.alive(table[k]!, now)
            }
            return Self.page(keys.sorted { $0.lexicographicallyPrecedes($1) }, options.offset, options.limit).map { String(decoding: $0, as: UTF8.self) }
        }
    }

    public func close() async {}

    private static func alive(_ entry: Entry, _ now: ContinuousClock.Instant) -> Bool {
        entry.expires.map { $0 > now } ?? true
    }

    private static func record(_ key: [UInt8], _ entry: Entry, _ now: ContinuousClock.Instant) -> Record {
        var record = Record(key: String(decoding: key, as: UTF8.self), value: entry.value, metadata: entry.metadata,
                            expiry: entry.expires.map { $0 - now })
        record.version = entry.version
        return record
    }

    private static func page<T>(_ items: [T], _ offset: Int, _ limit: Int) -> [T] {
        let rest = items.dropFirst(offset)
        return Array(limit > 0 ? rest.prefix(limit) : rest)
    }
}
