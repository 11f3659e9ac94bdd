import Configuration
import Foundation
import Logging
import Micro
import MicroTestSupport
import Synchronization
import Testing

/// Configuration from one place: flags over environment over the file over defaults, go-micro's
/// environment mapping, and a file that a running service follows.
@Suite struct ConfigTests {
    /// A file in a directory of its own, removed with it.
    final class ConfigFile: Sendable {
        let directory: URL
        let path: String

        init(_ name: String, _ text: String) throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("micro-config-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            path = directory.appendingPathComponent(name).path
            try write(text)
        }

        /// Replaces the file as editors and deployment tools do: a new file renamed into place.
        func write(_ text: String) throws {
            let temporary = directory.appendingPathComponent(".next-\(UUID().uuidString)")
            try Data(text.utf8).write(to: temporary)
            _ = rename(temporary.path, path)
        }

        deinit { try? FileManager.default.removeItem(at: directory) }
    }

    /// Hands the test every log message at `.error` and above.
    struct CapturingLog: LogHandler {
        let messages: AsyncStream<String>.Continuation
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            if event.level >= .error { messages.yield("\(event.message)") }
        }
    }

    @Test func flagsOverEnvironmentOverFileOverDefaults() throws {
        let file = try ConfigFile("service.json", #"{"database": {"host": "file-host", "user": "file-user", "port": 5433, "name": "file-db"}}"#)
        let config = try MicroConfig(
            arguments: ["service", "--database.host=flag-host", "--verbose"],
            environment: ["DATABASE_HOST": "env-host", "DATABASE_USER": "env-user", "MICRO_CONFIG_FILE": file.path],
            defaults: ["database.name": "default-db", "database.pool": 4]
        )
        let reader = config.reader
        #expect(reader.string(forKey: "database.host") == "flag-host")
        #expect(reader.string(forKey: "database.user") == "env-user")  // DATABASE_USER, go-micro's mapping
        #expect(reader.int(forKey: "database.port") == 5433)
        #expect(reader.string(forKey: "database.name") == "file-db")
        #expect(reader.int(forKey: "database.pool") == 4)
        #expect(reader.string(forKey: "database.missing", default: "fallback") == "fallback")
        // a scope reads relative keys
        let database = reader.scoped(to: "database")
        #expect(database.int(forKey: "port") == 5433)
        #expect(database.string(forKey: "host") == "flag-host")
        // where each value came from
        #expect(config.source(of: "database.host") == "--database.host")
        #expect(config.source(of: "database.user") == "DATABASE_USER")
        #expect(config.source(of: "database.port") == file.path)
        #expect(config.source(of: "database.pool") == "default")
        #expect(config.source(of: "database.missing") == nil)
    }

    @Test func aYAMLFileIsReadToo() throws {
        let file = try ConfigFile("service.yaml", "greeting:\n  text: hello\n  repeat: 3\n")
        let config = try MicroConfig(arguments: [], environment: ["MICRO_CONFIG_FILE": file.path])
        #expect(config.reader.string(forKey: "greeting.text") == "hello")
        #expect(config.reader.int(forKey: "greeting.repeat") == 3)
    }

    @Test func aFileThatCannotBeReadIsAStartError() throws {
        let file = try ConfigFile("broken.json", "{not json")
        #expect(throws: ConfigurationError.self) { try MicroConfig(arguments: [], environment: ["MICRO_CONFIG_FILE": file.path]) }
        do {
            _ = try MicroConfig(arguments: [], environment: ["MICRO_CONFIG_FILE": "/nowhere/service.json"])
        } catch {
            #expect(error.description == "configuration file /nowhere/service.json: no such file")
        }
    }

    struct Text: Codable, Sendable { var text: String }

    /// A service whose `Greeting.Say` answers `greeting.text` as the configuration has it now.
    static func greetingService(_ config: MicroConfig, logger: Logger = Logger(label: "micro")) async throws -> (Service, Task<Void, any Error>) {
        let registry = MemoryRegistry()
        var options = ServiceOptions(logger: logger, handleSignals: false, registry: registry, registerTTL: .registrationGuard)
        options.config = config
        let service = Service(name: "configured", address: "127.0.0.1:0", options: options)
        service.handle("Greeting.Say") { [service] (_: Text, _: Context) async throws -> Text in
            Text(text: service.config.string(forKey: "greeting.text", default: "none"))
        }
        let events = try registry.events(service: "configured")
        let task = Task { try await service.run() }
        for await event in events where event.action == .create { break }
        return (service, task)
    }

    /// Watches `key` of the service's configuration as a handler would; the values arrive in order.
    static func watch(_ service: Service, _ key: String) -> (values: AsyncStream<String?>, task: Task<Void, any Error>) {
        let (values, tell) = AsyncStream.makeStream(of: String?.self)
        let task = Task {
            try await service.config.watchString(forKey: ConfigKey(key)) { updates in
                for await value in updates { tell.yield(value) }
            }
        }
        return (values, task)
    }

    static func say(_ service: Service) async throws -> String {
        let client = Client(registry: MemoryRegistry(), options: CallOptions(timeout: .hangGuard, address: "127.0.0.1:\(service.port!)"))
        let answer: Text = try await client.call("configured", "Greeting.Say", Text(text: ""))
        return answer.text
    }

    @Test func aFileChangeReachesARunningService() async throws {
        let file = try ConfigFile("service.json", #"{"greeting": {"text": "hello"}}"#)
        let config = try MicroConfig(arguments: [], environment: ["MICRO_CONFIG_FILE": file.path])
        let (service, task) = try await Self.greetingService(config)
        #expect(try await Self.say(service) == "hello")
        // a handler (here: a task) watching the key sees each new value
        let (seen, watching) = Self.watch(service, "greeting.text")
        var values = seen.makeAsyncIterator()
        #expect(await values.next() == "hello")  // the value when the watch began
        let written = ContinuousClock.now
        try file.write(#"{"greeting": {"text": "hej"}}"#)
        #expect(await values.next() == "hej")
        print("config: a file change reached the watch in \(ContinuousClock.now - written)")
        #expect(try await Self.say(service) == "hej")
        watching.cancel()
        service.stop()
        try await task.value
    }

    @Test func aBrokenFileKeepsTheLastGoodValuesAndSaysSo() async throws {
        let file = try ConfigFile("service.json", #"{"greeting": {"text": "hello"}}"#)
        let (errors, tell) = AsyncStream.makeStream(of: String.self)
        let logger = Logger(label: "micro") { _ in CapturingLog(messages: tell) }
        let config = try MicroConfig(arguments: [], environment: ["MICRO_CONFIG_FILE": file.path], logger: logger)
        let (service, task) = try await Self.greetingService(config, logger: logger)
        try file.write(#"{"greeting": {"text": "#)
        var logged = errors.makeAsyncIterator()
        let error = await logged.next()
        #expect(error?.contains("configuration file \(file.path) changed but cannot be used; keeping the last good values") == true, "\(error ?? "")")
        #expect(try await Self.say(service) == "hello")
        // a good file again is taken
        let (seen, watching) = Self.watch(service, "greeting.text")
        var values = seen.makeAsyncIterator()
        #expect(await values.next() == "hello")
        try file.write(#"{"greeting": {"text": "fixed"}}"#)
        #expect(await values.next() == "fixed")
        #expect(try await Self.say(service) == "fixed")
        watching.cancel()
        service.stop()
        try await task.value
    }

    @Test func theFrameworksOwnSettingsComeFromTheFileToo() async throws {
        // a setting in the file counts as its environment variable would (flag over variable over file)
        let file = try ConfigFile("service.json", #"{"micro": {"registry": "consul"}}"#)
        ServiceStartTests.expectOneLineRefusal(
            try await ServiceStartTests.run(environment: ["MICRO_CONFIG_FILE": file.path]),
            naming: ["MICRO_REGISTRY names no registry 'consul'"])
        // the variable wins over the file: helloworld starts, and answers
        let child = try await ChildService("helloworld", environment: ["MICRO_CONFIG_FILE": file.path, "MICRO_REGISTRY": "memory"])
        defer { child.stop() }
        let answer = try await Tool.run("curl", ["-sS", "-H", "micro-endpoint: Helloworld.Greeting", "-H", "content-type: application/json",
                                                 "-d", #"{"name":"file"}"#, "http://127.0.0.1:\(child.port)/"])
        #expect(answer.stdout.contains("Hello file"))
    }

    @Test func microConfigSaysWhatAServiceWouldRead() async throws {
        let file = try ConfigFile("service.json", #"{"database": {"host": "file-host", "port": 5433}, "micro": {"broker": "memory"}}"#)
        let micro = ServiceStartTests.binary("micro")
        let environment = ["MICRO_CONFIG_FILE": file.path, "DATABASE_HOST": "env-host"]
        let host = try await Tool.run(micro, ["config", "get", "database.host", "--source"], environment: environment)
        #expect(host.stdout == "env-host\t(DATABASE_HOST)\n", "\(host.stdout)\(host.stderr)")
        let port = try await Tool.run(micro, ["config", "get", "database.port"], environment: environment)
        #expect(port.stdout == "5433\n")
        let missing = try await Tool.run(micro, ["config", "get", "database.user"], environment: environment)
        #expect(missing.status == 1)
        #expect(missing.stderr == "micro config: database.user is not set\n")
        let dump = try await Tool.run(micro, ["config", "dump"], environment: environment)
        let lines = dump.stdout.split(separator: "\n").map(String.init)
        #expect(lines.contains("micro.broker=memory\t(\(file.path))"), "\(lines)")
        #expect(lines.contains("database.host=env-host\t(DATABASE_HOST)"), "\(lines)")
        #expect(lines.contains("database.port=5433\t(\(file.path))"), "\(lines)")
        let broken = try ConfigFile("broken.json", "{")
        let refused = try await Tool.run(micro, ["config", "dump"], environment: ["MICRO_CONFIG_FILE": broken.path])
        #expect(refused.status == 1)
        #expect(refused.stderr.hasPrefix("micro config: configuration file \(broken.path): "))
    }
}
