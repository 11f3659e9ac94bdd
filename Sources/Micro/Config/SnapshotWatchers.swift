package import Configuration
import Foundation
import Synchronization

/// The changing part of a provider whose values are replaced whole (a file read again, a prefix
/// of etcd updated by its watch): the current snapshot, and the watchers of keys and of the
/// snapshot, told when what they watch changed. Providers keep one and forward
/// `value`/`snapshot`/`watchValue`/`watchSnapshot` to it.
///
/// Threading: any thread; watchers are told from the thread that calls ``replace(with:)``.
package final class SnapshotWatchers: Sendable {
    private struct KeyWatcher {
        let key: AbsoluteConfigKey
        let type: ConfigType
        var last: ConfigValue?
        let continuation: AsyncStream<Result<LookupResult, any Error>>.Continuation
    }

    private struct State {
        var snapshot: any ConfigSnapshot
        var keyWatchers: [UUID: KeyWatcher] = [:]
        var snapshotWatchers: [UUID: AsyncStream<any ConfigSnapshot>.Continuation] = [:]
    }

    private let state: Mutex<State>

    package init(_ snapshot: any ConfigSnapshot) {
        state = Mutex(State(snapshot: snapshot))
    }

    package var snapshot: any ConfigSnapshot { state.withLock { $0.snapshot } }

    package func value(forKey key: AbsoluteConfigKey, type: ConfigType) throws -> LookupResult {
        try snapshot.value(forKey: key, type: type)
    }

    /// Swaps the values and tells the watchers whose value changed, and every snapshot watcher.
    package func replace(with snapshot: any ConfigSnapshot) {
        let (updates, snapshots) = state.withLock { s in
            s.snapshot = snapshot
            var updates: [(AsyncStream<Result<LookupResult, any Error>>.Continuation, Result<LookupResult, any Error>)] = []
            for (id, watcher) in s.keyWatchers {
                let result = Result { try snapshot.value(forKey: watcher.key, type: watcher.type) }
                let value = try? result.get().value
                if value == watcher.last, case .success = result { continue }
                s.keyWatchers[id]?.last = value
                updates.append((watcher.continuation, result))
            }
            return (updates, Array(s.snapshotWatchers.values))
        }
        for (continuation, result) in updates { continuation.yield(result) }
        for continuation in snapshots { continuation.yield(snapshot) }
    }

    /// Ends every watch (their sequences finish).
    package func finishAll() {
        let (keys, snapshots) = state.withLock { s in
            defer { s.keyWatchers = [:]; s.snapshotWatchers = [:] }
            return (s.keyWatchers.values.map(\.continuation), Array(s.snapshotWatchers.values))
        }
        keys.forEach { $0.finish() }
        snapshots.forEach { $0.finish() }
    }

    package nonisolated(nonsending) func watchValue<Return: ~Copyable>(
        forKey key: AbsoluteConfigKey,
        type: ConfigType,
        updatesHandler: nonisolated(nonsending) (_ updates: ConfigUpdatesAsyncSequence<Result<LookupResult, any Error>, Never>) async throws -> Return
    ) async throws -> Return {
        let (stream, continuation) = AsyncStream<Result<LookupResult, any Error>>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id = UUID()
        state.withLock { s in
            let result = Result { try s.snapshot.value(forKey: key, type: type) }
            s.keyWatchers[id] = KeyWatcher(key: key, type: type, last: try? result.get().value, continuation: continuation)
            continuation.yield(result)
        }
        defer {
            state.withLock { _ = $0.keyWatchers.removeValue(forKey: id) }
            continuation.finish()
        }
        return try await updatesHandler(ConfigUpdatesAsyncSequence(stream))
    }

    package nonisolated(nonsending) func watchSnapshot<Return: ~Copyable>(
        updatesHandler: nonisolated(nonsending) (_ updates: ConfigUpdatesAsyncSequence<any ConfigSnapshot, Never>) async throws -> Return
    ) async throws -> Return {
        let (stream, continuation) = AsyncStream<any ConfigSnapshot>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id = UUID()
        state.withLock { s in
            s.snapshotWatchers[id] = continuation
            continuation.yield(s.snapshot)
        }
        defer {
            state.withLock { _ = $0.snapshotWatchers.removeValue(forKey: id) }
            continuation.finish()
        }
        return try await updatesHandler(ConfigUpdatesAsyncSequence(stream))
    }
}
