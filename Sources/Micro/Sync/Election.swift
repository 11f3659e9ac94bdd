import Foundation
import Synchronization

/// Who leads an election: the identity it campaigned with, and its term.
public struct Leader: Sendable, Equatable, Codable, CustomStringConvertible {
    public var identity: String
    /// The term's fencing token: each new term of an election has a larger one.
    public var term: UInt64

    public init(identity: String, term: UInt64) {
        self.identity = identity
        self.term = term
    }

    public var description: String { "\(identity) (term \(term))" }
}

/// One election of a ``Sync``, for a candidate (``campaign()``, ``lead(_:)``) or an observer
/// (``leaders()``). Made by ``Sync/leader(_:identity:ttl:)``.
///
/// ```swift
/// let election = Syncs.default.leader("scheduler", identity: "node-a")
/// for await leader in election.leaders() { print(leader?.identity ?? "no leader") }
/// ```
public struct Election: Sendable {
    public let sync: any Sync
    public let id: String
    public let identity: String
    public let ttl: Duration

    /// The host name and process id: unique among the processes of a cluster.
    public static var defaultIdentity: String {
        "\(ProcessInfo.processInfo.hostName):\(ProcessInfo.processInfo.processIdentifier)"
    }

    /// Waits to be elected; see ``Sync/campaign(_:identity:ttl:)``.
    public func campaign() async throws -> Leadership {
        try await sync.campaign(id, identity: identity, ttl: ttl)
    }

    /// The leader now and at each change; see ``Sync/leaders(_:)``.
    public func leaders() -> AsyncStream<Leader?> { sync.leaders(id) }

    /// Waits to be elected, runs `body` as the leader, and resigns when it returns or throws. If
    /// the leadership is lost meanwhile, `body`'s task is cancelled and ``SyncError/Kind/lost``
    /// is thrown.
    public func lead<R: Sendable>(_ body: @escaping @Sendable (Leadership) async throws -> R) async throws -> R {
        let leadership = try await campaign()
        do {
            let result = try await leadership.lock.whileHeld { try await body(leadership) }
            try await leadership.resign()
            return result
        } catch {
            try? await leadership.resign()
            throw error
        }
    }
}

/// A term as leader: its number (a fencing token), how to end it, and a stream that says when it
/// ended. Dropped without ``resign()``, it resigns (later, from a task of its own).
public final class Leadership: Sendable {
    public let election: String
    public let identity: String
    /// The lock that the term holds (its token is the term).
    package let lock: HeldLock
    private struct State {
        var ended = false
        var watchers: [UUID: AsyncStream<Bool>.Continuation] = [:]
    }
    private let state = Mutex(State())

    /// For implementations: the term that `lock` (taken for election `election`, identity
    /// published) is.
    public init(election: String, identity: String, lock: HeldLock) {
        self.election = election
        self.identity = identity
        self.lock = lock
        lock.onLost { [weak self] _ in self?.end() }
    }

    /// Grows with each term of this election: a later leader always has a larger one.
    public var term: UInt64 { lock.token }

    public var leader: Leader { Leader(identity: identity, term: term) }

    /// Whether the term goes on (not resigned, not lost).
    public var isLeading: Bool { state.withLock { !$0.ended } }

    /// Whether the term ended because the leadership was lost (its lease expired).
    public var isLost: Bool { lock.isLost }

    /// `true` while the term goes on, then `false` once when it ends (resigned or lost), then
    /// the stream finishes. Each use is a stream of its own.
    public var status: AsyncStream<Bool> {
        let (stream, continuation) = AsyncStream<Bool>.makeStream()
        let id = UUID()
        continuation.onTermination = { [weak self] _ in _ = self?.state.withLock { $0.watchers.removeValue(forKey: id) } }
        let leading = state.withLock { s in
            // yielded under the lock: a `false` from end() cannot come before it
            continuation.yield(!s.ended)
            if !s.ended { s.watchers[id] = continuation }
            return !s.ended
        }
        if !leading { continuation.finish() }
        return stream
    }

    /// Ends the term: the status streams say `false` first, then the election is free for the
    /// next candidate. A second call does nothing.
    public func resign() async throws {
        end()
        try await lock.unlock()
    }

    private func end() {
        let watchers = state.withLock { s -> [AsyncStream<Bool>.Continuation] in
            guard !s.ended else { return [] }
            s.ended = true
            defer { s.watchers = [:] }
            for watcher in s.watchers.values { watcher.yield(false) }
            return Array(s.watchers.values)
        }
        for watcher in watchers { watcher.finish() }
    }
}
