public import Configuration
import Foundation
public import Logging
public import Micro
import Synchronization

/// A prefix of etcd as a swift-configuration provider, followed by a watch: a key written under
/// it is seen by readers at once, and by every watcher of that key, without a restart.
///
/// The keys below the prefix are the configuration's keys with `/` for `.`:
/// `/micro/config/greeter/database/host` is `database.host` for the service `greeter`. A value is
/// text, read as the type asked for (`5432` as an int, `true` as a bool, `[1,2]` or `1,2` as an
/// array); `micro config set --service greeter database.host db1` writes one.
///
/// ```swift
/// let config = try await MicroConfig.withEtcd(service: "greeter")   // flags, environment, etcd, file
/// let service = Service(name: "greeter", options: try ServiceOptions(config: config))
/// try await service.config.watchString(forKey: "greeting") { updates in for await g in updates { ... } }
/// ```
///
/// While etcd is unreachable the last values stay; the watch resumes where it stopped.
public final class EtcdConfigProvider: ConfigProvider, Sendable {
    /// The prefix of a service's configuration: `/micro/config/<service>/`.
    public static func prefix(service: String) -> String { "/micro/config/\(service)/" }

    /// The etcd key of configuration `key` (dotted) under `prefix`.
    public static func etcdKey(_ key: String, prefix: String) -> String {
        prefix + key.split(separator: ".").joined(separator: "/")
    }

    public let prefix: String
    public let providerName: String
    private let etcd: EtcdClient
    private let logger: Logger
    private let values: SnapshotWatchers
    private let state = Mutex<(texts: [String: String], watch: EtcdWatchHandle?, stopped: Bool)>(([:], nil, false))

    /// Reads `prefix` (it ends with `/`), then follows it. Throws if etcd cannot be read now.
    public init(etcd: EtcdClient, prefix: String, logger: Logger = Logger(label: "micro.config.etcd")) async throws(EtcdError) {
        self.prefix = prefix.hasSuffix("/") ? prefix : prefix + "/"
        self.providerName = "etcd \(self.prefix)"
        self.etcd = etcd
        self.logger = logger
        self.values = SnapshotWatchers(EtcdConfigSnapshot(providerName: "etcd \(self.prefix)", texts: [:]))
        try await load()
    }

    /// A service's configuration, `/micro/config/<service>/`.
    public convenience init(etcd: EtcdClient, service: String, logger: Logger = Logger(label: "micro.config.etcd")) async throws(EtcdError) {
        try await self.init(etcd: etcd, prefix: Self.prefix(service: service), logger: logger)
    }

    /// Stops following (the values stay as last read; watches of keys end).
    public func stop() {
        let watch = state.withLock { s in
            s.stopped = true
            defer { s.watch = nil }
            return s.watch
        }
        watch?.cancel()
        values.finishAll()
    }

    /// Reads the whole prefix and watches from the revision read.
    private func load() async throws(EtcdError) {
        let range = try await etcd.get(.prefix(prefix))
        var texts: [String: String] = [:]
        for kv in range.kvs { texts[kv.keyString] = kv.valueString }
        publish(texts)
        let handle = etcd.watch(.prefix(prefix), fromRevision: range.revision + 1) { [weak self] update in self?.apply(update) }
        let old: EtcdWatchHandle? = state.withLock { s in
            defer { if !s.stopped { s.watch = handle } }
            return s.watch
        }
        old?.cancel()
        if state.withLock({ $0.stopped }) { handle.cancel() }
    }

    private func publish(_ texts: [String: String]) {
        state.withLock { $0.texts = texts }
        values.replace(with: EtcdConfigSnapshot(providerName: providerName, texts: texts.reduce(into: [:]) { all, entry in
            let path = entry.key.dropFirst(prefix.count).split(separator: "/").map(String.init)
            if !path.isEmpty { all[path] = (entry.key, entry.value) }
        }))
    }

    private func apply(_ update: EtcdWatchUpdate) {
        switch update {
        case .events(let events, _):
            var texts = state.withLock { $0.texts }
            for event in events {
                texts[event.kv.keyString] = event.kind == .put ? event.kv.valueString : nil
            }
            publish(texts)
            logger.debug("configuration under \(prefix) changed: \(events.map(\.kv.keyString).joined(separator: ", "))")
        case .interrupted(let error):
            logger.warning("configuration under \(prefix): etcd unreachable (\(error)); keeping the last values")
        case .ended(let error):
            logger.warning("configuration under \(prefix): the watch ended (\(error)); reading it again")
            readAgain("configuration under \(prefix): cannot read it again", logger: logger,
                      stopped: { [weak self] in self?.state.withLock { $0.stopped } ?? true },
                      { [weak self] in try await self?.load() })
        case .synced:
            break
        }
    }

    // MARK: ConfigProvider

    public func value(forKey key: AbsoluteConfigKey, type: ConfigType) throws -> LookupResult {
        try values.value(forKey: key, type: type)
    }

    public func fetchValue(forKey key: AbsoluteConfigKey, type: ConfigType) async throws -> LookupResult {
        try value(forKey: key, type: type)
    }

    public func watchValue<Return: ~Copyable>(
        forKey key: AbsoluteConfigKey,
        type: ConfigType,
        updatesHandler: nonisolated(nonsending) (_ updates: ConfigUpdatesAsyncSequence<Result<LookupResult, any Error>, Never>) async throws -> Return
    ) async throws -> Return {
        try await values.watchValue(forKey: key, type: type, updatesHandler: updatesHandler)
    }

    public func snapshot() -> any ConfigSnapshot { values.snapshot }

    public func watchSnapshot<Return: ~Copyable>(
        updatesHandler: nonisolated(nonsending) (_ updates: ConfigUpdatesAsyncSequence<any ConfigSnapshot, Never>) async throws -> Return
    ) async throws -> Return {
        try await values.watchSnapshot(updatesHandler: updatesHandler)
    }
}

/// A value under an etcd prefix that cannot be read as the type asked for.
public struct EtcdConfigValueError: Error, CustomStringConvertible, Sendable {
    public let key: String
    public let text: String
    public let type: ConfigType
    public var description: String { "etcd key \(key): '\(text)' is not a \(type.rawValue)" }
}

/// The values under a prefix at one revision: the key's path → (etcd key, text).
struct EtcdConfigSnapshot: ConfigSnapshot {
    let providerName: String
    let texts: [[String]: (key: String, text: String)]

    func value(forKey key: AbsoluteConfigKey, type: ConfigType) throws -> LookupResult {
        guard let (etcdKey, text) = texts[key.components] else {
            return LookupResult(encodedKey: key.components.joined(separator: "/"), value: nil)
        }
        guard let content = Self.content(text, as: type) else { throw EtcdConfigValueError(key: etcdKey, text: text, type: type) }
        return LookupResult(encodedKey: etcdKey, value: ConfigValue(content, isSecret: false))
    }

    /// `text` as `type`: numbers and flags as written, arrays as a JSON array or comma-separated,
    /// bytes as base64; a string written as a JSON string (`"a b"`) loses its quotes.
    static func content(_ text: String, as type: ConfigType) -> ConfigContent? {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        func list() -> [String] {
            if trimmed.hasPrefix("["), let array = try? JSONSerialization.jsonObject(with: Data(trimmed.utf8)) as? [Any] {
                return array.map { "\($0)" }
            }
            return trimmed.isEmpty ? [] : trimmed.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        }
        func bool(_ s: String) -> Bool? {
            switch s.lowercased() {
            case "true", "1", "yes", "on": true
            case "false", "0", "no", "off": false
            default: nil
            }
        }
        switch type {
        case .string:
            if trimmed.hasPrefix("\""), let s = try? JSONDecoder().decode(String.self, from: Data(trimmed.utf8)) { return .string(s) }
            return .string(text)
        case .int: return Int(trimmed).map { .int($0) }
        case .double: return Double(trimmed).map { .double($0) }
        case .bool: return bool(trimmed).map { .bool($0) }
        case .bytes: return Data(base64Encoded: trimmed).map { .bytes(Array($0)) }
        case .stringArray: return .stringArray(list())
        case .intArray:
            let items = list().map { Int($0) }
            return items.contains(nil) ? nil : .intArray(items.map { $0! })
        case .doubleArray:
            let items = list().map { Double($0) }
            return items.contains(nil) ? nil : .doubleArray(items.map { $0! })
        case .boolArray:
            let items = list().map(bool)
            return items.contains(nil) ? nil : .boolArray(items.map { $0! })
        case .byteChunkArray:
            let items = list().map { Data(base64Encoded: $0) }
            return items.contains(nil) ? nil : .byteChunkArray(items.map { Array($0!) })
        }
    }
}

extension MicroConfig {
    /// The process's configuration (flags, environment, `MICRO_CONFIG_FILE`) with `service`'s
    /// etcd prefix, `/micro/config/<service>/`, between the environment and the file, followed.
    /// etcd is `MICRO_ETCD_ADDRESS`, or the registry's when it is etcd (see
    /// ``EtcdConfiguration/forServices(_:)``), unless a client is given. Throws if etcd cannot be read now or the settings do not parse.
    public static func withEtcd(service: String, etcd: EtcdClient? = nil, logger: Logger = Logger(label: "micro.config")) async throws -> MicroConfig {
        let client = try etcd ?? EtcdClient(configuration: .forServices(), logger: logger)
        let provider = try await EtcdConfigProvider(etcd: client, service: service, logger: logger)
        return try MicroConfig(providers: [provider], logger: logger)
    }
}
