import ArgumentParser
import Configuration
import Foundation
import Micro

/// `micro config`: what a service started here, with these flags and this environment, would read.
struct Config: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the configuration a service would read here (flags, environment, MICRO_CONFIG_FILE, defaults).",
        subcommands: [Get.self, Dump.self]
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

        func run() async throws {
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
