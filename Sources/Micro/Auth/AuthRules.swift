import Foundation
public import Logging
import Synchronization

/// The rules of every node of a service, kept in the store (database `micro`, table
/// `auth_rules`, a JSON record per rule keyed by its id): SQLite on one host, PostgreSQL in a
/// cluster. Each service reads them again every ``refreshInterval``, so a change reaches running
/// services within it, with no restart; between reads calls are judged from memory.
public final class AuthRules: Sendable {
    public static let scope = StoreScope(database: "micro", table: "auth_rules")

    public let store: any Store
    public let refreshInterval: Duration
    private let state = Mutex(State())
    private let logger: Logger

    private struct State {
        /// In priority order (``Rule/inPriorityOrder(_:)``).
        var rules: [Rule] = Rule.inPriorityOrder(Rule.builtIn)
        var fingerprint: [String: UInt64] = [:]
        var refresher: Task<Void, Never>?
        var users = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    public init(store: any Store, refreshInterval: Duration = .milliseconds(500), logger: Logger = Logger(label: "micro.auth")) {
        self.store = store
        self.refreshInterval = refreshInterval
        self.logger = logger
    }

    /// The rules in force, highest priority first: the store's and the built-in public ones.
    public var current: [Rule] { state.withLock { $0.rules } }

    /// The verdict on `account` calling `resource` under the rules in force.
    public func verify(_ account: Account?, _ resource: Resource) -> Rule.Access {
        Rule.verify(byPriority: state.withLock { $0.rules }, account: account, resource: resource)
    }

    // MARK: the store's rules

    public func create(_ rule: Rule) async throws {
        guard !rule.id.isEmpty else { throw StoreError(.invalidArgument, "a rule needs an id") }
        try await store.write(Record(key: rule.id, encoding: rule), scope: Self.scope)
    }

    /// Deletes the rule `id`; throws ``StoreError/Kind/notFound`` if there is none.
    public func delete(_ id: String) async throws {
        _ = try await store.read(id, scope: Self.scope)
        _ = try await store.write([.delete(id)], scope: Self.scope)
    }

    /// The store's records of rules, in id order.
    private func records() async throws -> [Record] {
        try await store.read("", ReadOptions(scope: Self.scope, prefix: true))
    }

    /// The store's rules, in id order (not the built-in ones).
    public func list() async throws -> [Rule] {
        try await records().map { try $0.decode(Rule.self) }
    }

    /// Reads the rules now, writing ``Rule/default`` first if the store has none at all.
    public func load(seedingDefault: Bool = true) async throws {
        var records = try await self.records()
        if records.isEmpty && seedingDefault {
            do {
                _ = try await store.write([.put(Record(key: Rule.default.id, encoding: Rule.default), ifVersion: 0)], scope: Self.scope)
            } catch let error as StoreError where error.kind == .conflict {
                // another node wrote it first
            }
            records = try await self.records()
        }
        apply(records)
    }

    private func apply(_ records: [Record]) {
        var fingerprint: [String: UInt64] = [:]
        for record in records { fingerprint[record.key] = record.version }
        let changed = state.withLock { $0.fingerprint != fingerprint }
        guard changed else { return }
        var rules: [Rule] = []
        for record in records {
            do {
                rules.append(try record.decode(Rule.self))
            } catch {
                logger.warning("auth rule \(record.key) in the store is not a rule, ignored: \(error)")
            }
        }
        let count = rules.count
        state.withLock { s in
            s.rules = Rule.inPriorityOrder(rules + Rule.builtIn)
            s.fingerprint = fingerprint
        }
        logger.debug("auth rules loaded", metadata: ["rules": "\(count)"])
    }

    /// Whether the first read of the store has ended (well or not).
    private let loaded = Atomic<Bool>(false)
    var isLoaded: Bool { loaded.load(ordering: .acquiring) }

    /// Returns once the first read of the rules has ended: until then a call would be judged by
    /// the built-in rules alone. Starts the reading if nothing did.
    public nonisolated(nonsending) func ready() async {
        if loaded.load(ordering: .acquiring) { return }
        start(counted: false)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s in
                if loaded.load(ordering: .acquiring) { return true }
                s.waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }

    /// Starts reading the rules: now (seeding ``Rule/default`` into an empty store), then every
    /// ``refreshInterval``. Once per process however many services share it; ``stop()`` as many
    /// times as this was called.
    public func start() {
        start(counted: true)
    }

    private func start(counted: Bool) {
        state.withLock { s in
            if counted { s.users += 1 }
            guard s.refresher == nil else { return }
            s.refresher = Task { [weak self, refreshInterval] in
                do {
                    try await self?.load()
                } catch {
                    // fail closed: until the store answers, only the built-in public rules hold
                    self?.logger.warning("auth rules could not be read; until they are, only health and reflection are open: \(error)")
                }
                self?.markLoaded()
                while !Task.isCancelled {
                    try? await Task.sleep(for: refreshInterval)
                    guard let self, !Task.isCancelled else { return }
                    do {
                        self.apply(try await self.records())
                    } catch {
                        // the rules in force stay: a store that is down does not open or close doors
                        self.logger.warning("auth rules could not be read, the last ones stay in force: \(error)")
                    }
                }
            }
        }
    }

    private func markLoaded() {
        let waiters = state.withLock { s in
            loaded.store(true, ordering: .releasing)
            defer { s.waiters = [] }
            return s.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    public func stop() {
        let task = state.withLock { s -> Task<Void, Never>? in
            s.users = max(0, s.users - 1)
            guard s.users == 0 else { return nil }
            defer { s.refresher = nil }
            return s.refresher
        }
        task?.cancel()
    }
}
