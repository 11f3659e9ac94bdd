import Configuration
import Foundation
import Logging
import Synchronization

/// A configuration file (JSON, or YAML by its `.yaml`/`.yml` extension) as a provider that follows
/// the file: a write or a file renamed into place is read again at once (``FileWatcher``: inotify,
/// no polling), and every watcher of a key whose value changed is told. A file that no longer
/// parses, or is gone, keeps the last good values and logs one error per change.
///
/// Threading: any thread; watchers are told from the watcher's thread.
final class ConfigFileProvider: ConfigProvider, Sendable {
    let path: String
    let providerName: String
    private let logger: Logger
    private let parse: @Sendable ([UInt8]) throws -> any ConfigSnapshot

    private let values: SnapshotWatchers

    private struct State {
        var watcher: FileWatcher?
        var followers = 0
    }

    private let state = Mutex(State())

    /// Reads `path`; throws if it cannot be read or parsed (a service does not start on a broken
    /// file: it would run without the settings it was given).
    init(path: String, logger: Logger) throws(ConfigurationError) {
        self.path = path
        self.providerName = "file \(path)"
        self.logger = logger
        let name = providerName
        let yaml = path.hasSuffix(".yaml") || path.hasSuffix(".yml")
        parse = { bytes in
            try bytes.withUnsafeBytes { raw in
                let span = RawSpan(_unsafeBytes: raw)
                return yaml ? try YAMLSnapshot(data: span, providerName: name, parsingOptions: .default)
                    : try JSONSnapshot(data: span, providerName: name, parsingOptions: .default)
            }
        }
        let snapshot: any ConfigSnapshot
        do {
            snapshot = try parse(try Self.read(path))
        } catch {
            throw ConfigurationError(key: "micro.config.file", reason: "configuration file \(path): \(Self.describe(error))")
        }
        values = SnapshotWatchers(snapshot)
    }

    /// Starts following the file, for one more follower (services sharing a configuration).
    func watch() throws {
        let first = state.withLock { s in
            s.followers += 1
            return s.followers == 1
        }
        guard first else { return }
        do {
            let watcher = try FileWatcher(paths: [path]) { [weak self] in self?.reload() }
            state.withLock { $0.watcher = watcher }
        } catch {
            state.withLock { $0.followers -= 1 }
            throw error
        }
    }

    /// One follower less; with none left, stops following the file and ends every watch.
    func stop() {
        let (last, watcher) = state.withLock { s in
            s.followers = max(0, s.followers - 1)
            defer { if s.followers == 0 { s.watcher = nil } }
            return (s.followers == 0, s.watcher)
        }
        guard last else { return }
        watcher?.stop()
        values.finishAll()
    }

    static func read(_ path: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    static func describe(_ error: any Error) -> String {
        (error as? CocoaError).map { $0.code == .fileReadNoSuchFile ? "no such file" : "\($0.localizedDescription)" } ?? "\(error)"
    }

    /// Reads the file again; on success, swaps the values and tells the watchers whose value changed.
    func reload() {
        let snapshot: any ConfigSnapshot
        do {
            snapshot = try parse(try Self.read(path))
        } catch {
            logger.error("configuration file \(path) changed but cannot be used; keeping the last good values: \(Self.describe(error))")
            return
        }
        values.replace(with: snapshot)
        logger.info("configuration file \(path) reloaded")
    }

    func value(forKey key: AbsoluteConfigKey, type: ConfigType) throws -> LookupResult {
        try values.value(forKey: key, type: type)
    }

    func fetchValue(forKey key: AbsoluteConfigKey, type: ConfigType) async throws -> LookupResult {
        try value(forKey: key, type: type)
    }

    func watchValue<Return: ~Copyable>(
        forKey key: AbsoluteConfigKey,
        type: ConfigType,
        updatesHandler: nonisolated(nonsending) (_ updates: ConfigUpdatesAsyncSequence<Result<LookupResult, any Error>, Never>) async throws -> Return
    ) async throws -> Return {
        try await values.watchValue(forKey: key, type: type, updatesHandler: updatesHandler)
    }

    func snapshot() -> any ConfigSnapshot { values.snapshot }

    func watchSnapshot<Return: ~Copyable>(
        updatesHandler: nonisolated(nonsending) (_ updates: ConfigUpdatesAsyncSequence<any ConfigSnapshot, Never>) async throws -> Return
    ) async throws -> Return {
        try await values.watchSnapshot(updatesHandler: updatesHandler)
    }
}
