import ArgumentParser
import Foundation
import Micro

/// `micro store`: the records of the store the environment names (MICRO_STORE), as a service
/// started here would see them.
struct StoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store",
        abstract: "Read, write, list and delete records in the store (MICRO_STORE: sqlite, memory, …).",
        discussion: """
            The database and table are --database and --table, else MICRO_STORE_DATABASE and MICRO_STORE_TABLE, else micro \
            and micro. SQLite keeps its files in MICRO_STORE_ADDRESS, else $XDG_DATA_HOME/micro/store.
              micro store write greeting hello --ttl 60
              micro store read greeting                # hello
              micro store list --prefix gr --limit 10
            """,
        subcommands: [Read.self, Write.self, List.self, Delete.self])

    struct Scope: ParsableArguments {
        @Option(help: "The database (default MICRO_STORE_DATABASE, else micro).") var database: String?
        @Option(help: "The table (default MICRO_STORE_TABLE, else micro).") var table: String?

        var scope: StoreScope {
            let environment = MicroConfig.process.frameworkEnvironment
            func set(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
            return StoreScope(database: database ?? set("MICRO_STORE_DATABASE") ?? "micro", table: table ?? set("MICRO_STORE_TABLE") ?? "micro")
        }
    }

    /// Runs `body` on the store and closes it; what fails is said in one line, and exit 1.
    static func with(_ body: (any Store) async throws -> Void) async {
        let store = open()
        do {
            try await body(store)
        } catch {
            await store.close()
            fail("\(error)")
        }
        await store.close()
    }

    /// The store, or one line saying why there is none, and exit 1.
    static func open() -> any Store {
        do {
            return try Stores.default
        } catch {
            fail("\(error)")
        }
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("micro store: \(message)\n".utf8))
        Foundation.exit(1)
    }

    struct Read: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a record's value (exit 1 if there is none); with --prefix, each matching record as a JSON line.")

        @Argument(help: "The key (with --prefix: the prefix).") var key: String
        @Flag(help: "Read every record whose key starts with KEY.") var prefix = false
        @Option(help: "At most this many records (with --prefix).") var limit = 0
        @Option(help: "Skip this many first (with --prefix).") var offset = 0
        @OptionGroup var scope: Scope

        func run() async throws {
            await StoreCommand.with { store in
                if prefix {
                    let records = try await store.read(key, ReadOptions(scope: scope.scope, prefix: true, limit: limit, offset: offset))
                    for record in records { print(StoreCommand.json(record)) }
                } else {
                    let record = try await store.read(key, scope: scope.scope)
                    FileHandle.standardOutput.write(Data(record.value))
                    if record.value.last != 10, isatty(1) != 0 { print() }
                }
            }
        }
    }

    struct Write: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Write a record (VALUE, or stdin when VALUE is -); prints its new version.")

        @Argument(help: "The key.") var key: String
        @Argument(help: "The value; - reads it from stdin.") var value: String
        @Option(help: "Seconds the record lives (default: for ever).") var ttl: Double?
        @Option(name: .customLong("if-version"), help: "Write only if the record's version is this (0: only if absent).") var ifVersion: UInt64?
        @Option(name: .customLong("metadata"), help: "key=value, repeatable.") var metadata: [String] = []
        @OptionGroup var scope: Scope

        func validate() throws {
            if let ttl, !(ttl.isFinite && ttl > 0) { throw ValidationError("--ttl must be positive") }
        }

        func run() async throws {
            let bytes = value == "-" ? Array(FileHandle.standardInput.readDataToEndOfFile()) : Array(value.utf8)
            await StoreCommand.with { store in
                let record = Record(key: key, value: bytes, metadata: try keyValues(metadata, what: "--metadata"))
                let version = try await store.write(record, ttl: ttl.map { .milliseconds(Int64($0 * 1000)) }, ifVersion: ifVersion,
                                                    scope: scope.scope)
                print(version)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the keys, one per line, in order.")

        @Option(help: "Only keys starting with this.") var prefix = ""
        @Option(help: "Only keys ending with this.") var suffix = ""
        @Option(help: "At most this many.") var limit = 0
        @Option(help: "Skip this many first.") var offset = 0
        @OptionGroup var scope: Scope

        func run() async throws {
            await StoreCommand.with { store in
                for key in try await store.list(ListOptions(scope: scope.scope, prefix: prefix, suffix: suffix, limit: limit, offset: offset)) {
                    print(key)
                }
            }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete a record (nothing if absent).")

        @Argument(help: "The key.") var key: String
        @Option(name: .customLong("if-version"), help: "Delete only if the record's version is this.") var ifVersion: UInt64?
        @OptionGroup var scope: Scope

        func run() async throws {
            await StoreCommand.with { store in
                try await store.delete(key, ifVersion: ifVersion, scope: scope.scope)
            }
        }
    }

    /// A record as one JSON line: key, value (UTF-8 text when it is, else base64 under
    /// value_base64), metadata, version, expiry in seconds.
    static func json(_ record: Record) -> String {
        var object: [String: Any] = ["key": record.key, "version": record.version, "metadata": record.metadata]
        if let text = String(validating: record.value, as: UTF8.self) {
            object["value"] = text
        } else {
            object["value_base64"] = Data(record.value).base64EncodedString()
        }
        if let expiry = record.expiry { object["expiry"] = Double(expiry.components.seconds) + Double(expiry.components.attoseconds) / 1e18 }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}
