import ArgumentParser
import Configuration
import Foundation
import Micro
import MicroEtcd

/// `micro config`: what a service started here, with these flags and this environment, would read.
struct Config: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the configuration a service would read here (flags, environment, MICRO_CONFIG_FILE, defaults), or a service's in etcd.",
        discussion: """
            With --service NAME, get/set/delete/list work on NAME's configuration in etcd (/micro/config/NAME/, key database.host \
            at /micro/config/NAME/database/host), which services built with MicroConfig.withEtcd follow without a restart. etcd is \
            --etcd, else MICRO_ETCD_ADDRESS, else the registry's members when MICRO_REGISTRY=etcd, else 127.0.0.1:2379.
            """,
        subcommands: [Get.self, Write.self, Delete.self, List.self, Dump.self]
    )

    static func load() throws -> MicroConfig {
        do {
            return try MicroConfig()
        } catch {
            FileHandle.standardError.write(Data("micro config: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print one key's value (e.g. database.host or micro.registry); exits 1 if no source sets it.")

        @Argument(help: "The key, dotted: database.host reads --database.host, DATABASE_HOST, then the file.") var key: String
        @Flag(help: "Also say where the value comes from.") var source = false
        @OptionGroup var etcd: EtcdTarget

        func run() async throws {
            if etcd.service != nil {
                let kvs = try await etcd.run { client, prefix in try await client.get(.key(EtcdConfigProvider.etcdKey(key, prefix: prefix))).kvs }
                guard let kv = kvs.first else {
                    FileHandle.standardError.write(Data("micro config: \(key) is not set in etcd\n".utf8))
                    throw ExitCode(1)
                }
                print(source ? "\(kv.valueString)\t(etcd \(kv.keyString))" : kv.valueString)
                return
            }
            let config = try Config.load()
            let setting = MicroConfig.settings.first { $0.key == key }
            let value = setting.flatMap { config.frameworkEnvironment[$0.environment] } ?? Config.text(of: key, in: config)
            guard let value else {
                FileHandle.standardError.write(Data("micro config: \(key) is not set\n".utf8))
                throw ExitCode(1)
            }
            print(source ? "\(value)\t(\(config.source(of: key) ?? "?"))" : value)
        }
    }

    struct Dump: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the framework's settings that are set, with their sources, then the configuration file's keys.")

        func run() async throws {
            let config = try Config.load()
            let environment = config.frameworkEnvironment
            for setting in MicroConfig.settings {
                guard let value = environment[setting.environment], !value.isEmpty else { continue }
                print("\(setting.key)=\(value)\t(\(config.source(of: setting.key) ?? setting.environment))")
            }
            guard let path = config.filePath else { return }
            for (key, value) in Config.flatten(try Config.parse(path)) where !MicroConfig.settings.contains(where: { $0.key == key }) {
                print("\(key)=\(config.reader.string(forKey: ConfigKey(key)) ?? value)\t(\(config.source(of: key) ?? path))")
            }
        }
    }

    struct Write: AsyncParsableCommand {  // not `Set`, which would hide Swift's Set in this scope
        static let configuration = CommandConfiguration(commandName: "set", abstract: "Write a key of a service's configuration in etcd (--service is required).")

        @Argument(help: "The key, dotted (database.host).") var key: String
        @Argument(help: "The value, as text (5432, true, [1,2], a,b).") var value: String
        @OptionGroup var etcd: EtcdTarget

        func validate() throws {
            guard etcd.service != nil else { throw ValidationError("--service NAME says whose configuration to write") }
            guard Config.validKey(key) else { throw ValidationError("'\(key)' is not a dotted key (letters, digits, _ and -, parts joined by dots)") }
        }

        func run() async throws {
            _ = try await etcd.run { client, prefix in
                try await client.put(EtcdConfigProvider.etcdKey(key, prefix: prefix), Array(value.utf8)).revision
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a key of a service's configuration in etcd (--service is required).")

        @Argument(help: "The key, dotted.") var key: String
        @OptionGroup var etcd: EtcdTarget

        func validate() throws {
            guard etcd.service != nil else { throw ValidationError("--service NAME says whose configuration to change") }
        }

        func run() async throws {
            let deleted = try await etcd.run { client, prefix in try await client.delete(.key(EtcdConfigProvider.etcdKey(key, prefix: prefix))).deleted }
            if deleted == 0 {
                FileHandle.standardError.write(Data("micro config: \(key) was not set in etcd\n".utf8))
                throw ExitCode(1)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print every key=value of a service's configuration in etcd (--service is required).")

        @OptionGroup var etcd: EtcdTarget

        func validate() throws {
            guard etcd.service != nil else { throw ValidationError("--service NAME says whose configuration to list") }
        }

        func run() async throws {
            let (kvs, prefix) = try await etcd.run { client, prefix in (try await client.get(.prefix(prefix)).kvs, prefix) }
            for kv in kvs {
                print("\(kv.keyString.dropFirst(prefix.count).split(separator: "/").joined(separator: "."))=\(kv.valueString)")
            }
        }
    }

    /// Where a service's configuration is in etcd.
    struct EtcdTarget: ParsableArguments {
        @Option(help: "The service whose configuration in etcd to use (/micro/config/NAME/).") var service: String?
        @Option(help: "etcd's members, host:port,… (default: MICRO_ETCD_ADDRESS, or the registry's when it is etcd).") var etcd: String?

        /// Runs `body` with a client and the service's prefix; an etcd or settings error is one
        /// line and exit code 1.
        func run<T: Sendable>(_ body: (EtcdClient, String) async throws -> T) async throws -> T {
            var environment = MicroConfig.process.frameworkEnvironment
            if let etcd { environment["MICRO_ETCD_ADDRESS"] = etcd }
            let client: EtcdClient
            do {
                client = EtcdClient(configuration: try .forServices(environment))
            } catch {
                FileHandle.standardError.write(Data("micro config: \(error)\n".utf8))
                throw ExitCode(1)
            }
            defer { Task { await client.close() } }
            do {
                return try await body(client, EtcdConfigProvider.prefix(service: service ?? ""))
            } catch {
                FileHandle.standardError.write(Data("micro config: \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
    }

    /// A dotted key whose parts are names.
    static func validKey(_ key: String) -> Bool {
        let parts = key.split(separator: ".", omittingEmptySubsequences: false)
        return !parts.isEmpty && parts.allSatisfy { part in
            !part.isEmpty && part.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" }
        }
    }

    /// A key's value as text, whatever its type in its source.
    static func text(of key: String, in config: MicroConfig) -> String? {
        let reader = config.reader, configKey = ConfigKey(key)
        if let text = reader.string(forKey: configKey) { return text }
        if let n = reader.int(forKey: configKey) { return String(n) }
        if let x = reader.double(forKey: configKey) { return String(x) }
        if let b = reader.bool(forKey: configKey) { return String(b) }
        if let list = reader.stringArray(forKey: configKey) { return list.joined(separator: ",") }
        return nil
    }

    /// The file as a tree (JSON; YAML through its JSON-compatible subset is not parsed here:
    /// only its framework settings are shown).
    static func parse(_ path: String) throws -> Any {
        guard path.hasSuffix(".json") else { return [String: Any]() }
        return try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// Dotted keys of the leaves of a JSON tree, sorted.
    static func flatten(_ tree: Any, prefix: String = "") -> [(String, String)] {
        if let object = tree as? [String: Any] {
            return object.keys.sorted().flatMap { flatten(object[$0]!, prefix: prefix.isEmpty ? $0 : prefix + "." + $0) }
        }
        if let list = tree as? [Any] { return [(prefix, list.map { "\($0)" }.joined(separator: ","))] }
        return [(prefix, "\(tree)")]
    }
}
