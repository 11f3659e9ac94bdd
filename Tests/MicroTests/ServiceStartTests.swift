import Foundation
import Micro
import MicroTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A service that cannot start says why in one line, `NAME: cannot start: REASON`, on stderr and
/// exits with status 1: no "Fatal error", no backtrace. The examples as child processes (their
/// `main.swift` ends in `try await service.run()`, as the README's does), each waited on until it
/// exits.
@Suite struct ServiceStartTests {
    static func binary(_ name: String) -> String { Tool.binDirectory.appendingPathComponent(name).path }

    /// A directory of the test's own, removed by the caller.
    static func temporaryDirectory(_ prefix: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Runs `program` (from the build directory) until it exits, with `environment` over this
    /// process's, a registry directory of its own and a loopback address unless `environment`
    /// says otherwise. The bound only kills a child that started after all (the test then fails).
    static func run(_ program: String = "helloworld", _ arguments: [String] = [], environment: [String: String] = [:]) async throws -> ToolResult {
        let registry = FileManager.default.temporaryDirectory.appendingPathComponent("micro-registry-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: registry) }
        var env = ["MICRO_SERVER_ADDRESS": "127.0.0.1:0", "MICRO_REGISTRY_ADDRESS": registry.path]
        for (key, value) in environment { env[key] = value }
        return try await Tool.run(binary(program), arguments, environment: env, timeout: .seconds(300))
    }

    /// Status 1; stdout empty and stderr exactly one line, `PROGRAM: cannot start: ...`, that
    /// holds every one of `causes` (case aside); nothing of a crash.
    static func expectOneLineRefusal(
        _ result: ToolResult, _ program: String = "helloworld", naming causes: [String],
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let output = result.stdout + result.stderr
        #expect(result.status == 1, "status \(result.status):\n\(output)", sourceLocation: sourceLocation)
        #expect(result.stdout.isEmpty, "stdout:\n\(result.stdout)", sourceLocation: sourceLocation)
        #expect(result.stderr.hasSuffix("\n") && result.stderr.dropLast().firstIndex(of: "\n") == nil,
                "not one line:\n\(result.stderr)", sourceLocation: sourceLocation)
        #expect(result.stderr.hasPrefix("\(program): cannot start: "), "\(result.stderr)", sourceLocation: sourceLocation)
        for cause in causes {
            #expect(output.lowercased().contains(cause.lowercased()), "'\(cause)' not in:\n\(output)", sourceLocation: sourceLocation)
        }
        for crash in ["Fatal error", "Backtracing", "crashed", "Error raised at top level"] {
            #expect(!output.contains(crash), "\(output)", sourceLocation: sourceLocation)
        }
    }

    /// `micro certs init` and `micro certs issue NAME` in a directory of the test's own; the
    /// MICRO_TLS_* lines `issue` prints, by service.
    struct Certs {
        let directory: URL
        private(set) var files: [String: [String: String]] = [:]

        init(issuing services: [String]) async throws {
            directory = try ServiceStartTests.temporaryDirectory("micro-certs")
            let micro = ServiceStartTests.binary("micro")
            let env = ["MICRO_CERTS_DIR": directory.path]
            let ca = try await Tool.run(micro, ["certs", "init"], environment: env)
            #expect(ca.status == 0, "\(ca.stderr)")
            for service in services {
                let issued = try await Tool.run(micro, ["certs", "issue", service], environment: env)
                #expect(issued.status == 0, "\(issued.stderr)")
                var lines: [String: String] = [:]
                for line in issued.stdout.split(separator: "\n") {
                    let parts = line.split(separator: "=", maxSplits: 1)
                    if parts.count == 2 { lines[String(parts[0])] = String(parts[1]) }
                }
                files[service] = lines
            }
        }

        func remove() { try? FileManager.default.removeItem(at: directory) }
    }

    @Test func certificateAndKeyThatDoNotMatch() async throws {
        let certs = try await Certs(issuing: ["helloworld", "other"])
        defer { certs.remove() }
        let own = try #require(certs.files["helloworld"]), other = try #require(certs.files["other"])
        let certificate = try #require(own["MICRO_TLS_CERT"]), key = try #require(other["MICRO_TLS_KEY"])
        let mismatched = try await Self.run(environment: [
            "MICRO_TLS_CERT": certificate, "MICRO_TLS_KEY": key, "MICRO_TLS_CA": try #require(own["MICRO_TLS_CA"]),
        ])
        Self.expectOneLineRefusal(mismatched, naming: ["TLS", "private key does not match the certificate", certificate, key])
        // the pair of one service starts: it was the mismatch that stopped it
        let matched = try await ChildService("helloworld", environment: own)
        matched.stop()
    }

    @Test func certificateFileMissingUnreadableOrNotPEM() async throws {
        let certs = try await Certs(issuing: ["helloworld"])
        defer { certs.remove() }
        var env = try #require(certs.files["helloworld"])
        let missing = certs.directory.appendingPathComponent("nowhere/cert.pem").path
        env["MICRO_TLS_CERT"] = missing
        Self.expectOneLineRefusal(try await Self.run(environment: env),
                                  naming: ["TLS", "cannot read the certificate", missing, "No such file or directory"])
        // a directory cannot be read as a file (permissions would not stop a test run as root)
        env["MICRO_TLS_CERT"] = certs.directory.path
        Self.expectOneLineRefusal(try await Self.run(environment: env),
                                  naming: ["TLS", "cannot read the certificate", certs.directory.path, "Is a directory"])
        let garbage = certs.directory.appendingPathComponent("garbage.pem")
        try Data("not a certificate\n".utf8).write(to: garbage)
        env["MICRO_TLS_CERT"] = garbage.path
        Self.expectOneLineRefusal(try await Self.run(environment: env), naming: ["TLS", "cannot read the certificate (PEM)", garbage.path])
        env = try #require(certs.files["helloworld"])
        let missingKey = certs.directory.appendingPathComponent("nowhere/key.pem").path
        env["MICRO_TLS_KEY"] = missingKey
        Self.expectOneLineRefusal(try await Self.run(environment: env),
                                  naming: ["TLS", "cannot read the private key", missingKey, "No such file or directory"])
    }

    @Test func portAlreadyInUse() async throws {
        let holder = try await ChildService("helloworld")
        defer { holder.stop() }
        let result = try await Self.run(environment: ["MICRO_SERVER_ADDRESS": "127.0.0.1:\(holder.port)"])
        Self.expectOneLineRefusal(result, naming: ["cannot listen on 127.0.0.1:\(holder.port)", "address already in use"])
    }

    @Test(arguments: [
        ("nonsense:xyz", "invalid server address 'nonsense:xyz' (from MICRO_SERVER_ADDRESS): expected HOST:PORT"),
        ("999.1.1.1:80", "999.1.1.1 is not an IPv4 address"),
        ("[not-v6]:80", "not-v6 is not an IPv6 address"),
        ("127.0.0.1:70000", "invalid server address '127.0.0.1:70000'"),
        ("8080", "invalid server address '8080'"),
    ])
    func badAddress(address: String, cause: String) async throws {
        Self.expectOneLineRefusal(try await Self.run(environment: ["MICRO_SERVER_ADDRESS": address]), naming: [cause])
    }

    @Test func badAddressFlag() async throws {
        let result = try await Self.run("helloworld", ["--server-address", "localhost"])
        Self.expectOneLineRefusal(result, naming: ["invalid server address 'localhost' (from --server-address)"])
    }

    @Test(arguments: [
        ("MICRO_REGISTRY", "consul", "MICRO_REGISTRY names no registry 'consul'; known: etcd, local, mdns, memory"),
        ("MICRO_BROKER", "kafka", "MICRO_BROKER names no broker 'kafka'; known: http, memory, nats"),
        ("MICRO_BROKER_ADDRESS", "http://10.0.0.1:4222", "MICRO_BROKER=nats: 'http://10.0.0.1:4222' is not a NATS server URL (nats:// or tls://)"),
        ("MICRO_ETCD_TIMEOUT", "soon", "MICRO_REGISTRY=etcd: MICRO_ETCD_TIMEOUT must be a number of seconds above 0, not 'soon'"),
        ("MICRO_MDNS_TIMEOUT", "0", "MICRO_REGISTRY=mdns: MICRO_MDNS_TIMEOUT must be a number of seconds above 0, not '0'"),
        ("MICRO_REGISTER_TTL", "soon", "MICRO_REGISTER_TTL must be a number of seconds above 0, not 'soon'"),
        ("MICRO_REGISTER_TTL", "inf", "MICRO_REGISTER_TTL must be a number of seconds above 0, not 'inf'"),
        ("MICRO_REGISTER_INTERVAL", "-1", "MICRO_REGISTER_INTERVAL must be a number of seconds above 0, not '-1'"),
        ("MICRO_SERVER_MAX_CONNECTIONS", "many", "MICRO_SERVER_MAX_CONNECTIONS must be a whole number"),
        ("MICRO_BUSY_POLL", "fast", "MICRO_BUSY_POLL must be a whole number of microseconds from 0 to 1000000, not 'fast'"),
        ("MICRO_BUSY_POLL", "2000000", "MICRO_BUSY_POLL must be a whole number of microseconds from 0 to 1000000, not '2000000'"),
        ("MICRO_TLS_CERT", "/nowhere/cert.pem", "TLS: MICRO_TLS_CERT is set but MICRO_TLS_KEY is not"),
        ("MICRO_TLS_CLIENT_AUTH", "maybe", "TLS: MICRO_TLS_CLIENT_AUTH must be require, request or none, not 'maybe'"),
        ("MICRO_CONFIG_FILE", "/nowhere/service.json", "configuration file /nowhere/service.json: no such file"),
        ("MICRO_TRACER", "zipkin", "MICRO_TRACER names no tracer 'zipkin'; known: memory, off"),
        ("MICRO_TRACER_SAMPLE_RATIO", "2", "MICRO_TRACER_SAMPLE_RATIO must be a number from 0 to 1, not '2'"),
    ])
    func badEnvironment(name: String, value: String, cause: String) async throws {
        var env = [name: value]
        if name == "MICRO_TLS_CLIENT_AUTH" { env["MICRO_TLS_CA"] = "/nowhere/ca.pem" }  // read only with a TLS setting
        if name == "MICRO_TRACER_SAMPLE_RATIO" { env["MICRO_TRACER"] = "memory" }  // read only with a tracer
        if name == "MICRO_BROKER_ADDRESS" { env["MICRO_BROKER"] = "nats" }  // helloworld links MicroNATS
        if name == "MICRO_ETCD_TIMEOUT" {  // and MicroEtcd: a registry it cannot make
            env["MICRO_REGISTRY"] = "etcd"
            env["MICRO_REGISTRY_ADDRESS"] = "127.0.0.1:1"
        }
        if name == "MICRO_MDNS_TIMEOUT" { env["MICRO_REGISTRY"] = "mdns" }  // was the local registry, silently
        Self.expectOneLineRefusal(try await Self.run(environment: env), naming: [cause])
    }

    /// The framework's doing, not helloworld's: every example refuses the same way.
    @Test(arguments: ["echo", "greeter", "counter"])
    func everyExampleRefusesInOneLine(program: String) async throws {
        let result = try await Self.run(program, environment: ["MICRO_SERVER_ADDRESS": "nonsense:xyz"])
        Self.expectOneLineRefusal(result, program, naming: ["invalid server address 'nonsense:xyz'"])
    }

    /// `micro subscribe` listens too: a taken broker address is said in one line, status 1.
    @Test func microSubscribeOnATakenAddress() async throws {
        let holder = try await ChildService("helloworld")
        defer { holder.stop() }
        let result = try await Self.run("micro", ["subscribe", "orders"], environment: ["MICRO_BROKER_ADDRESS": "127.0.0.1:\(holder.port)"])
        Self.expectOneLineRefusal(result, "micro subscribe", naming: ["cannot listen on 127.0.0.1:\(holder.port)", "address already in use"])
    }

    /// A number of seconds that no duration holds (infinite, not a number, past ten years) is a
    /// usage error naming the option, never a trap converting it.
    @Test(arguments: [
        (["call", "x", "X.Y", "--timeout", "nan"], "--timeout"),
        (["stats", "x", "--timeout", "inf"], "--timeout"),
        (["gateway", "--timeout", "1e300"], "--timeout"),
        (["gateway", "--stats-timeout", "0"], "--stats-timeout"),
        (["bench", "http://127.0.0.1:1/", "--duration", "inf"], "--duration"),
        (["elect", "x", "--ttl", "1e300"], "--ttl"),
    ])
    func secondsNoDurationHoldsAreUsageErrors(arguments: [String], option: String) async throws {
        let result = try await Self.run("micro", arguments)
        #expect(result.status != 0 && !result.stderr.contains("Fatal error") && !result.stderr.contains("crashed"), "\(result.stderr)")
        #expect(result.stderr.contains("\(option) must be "), "\(result.stderr)")
    }

    /// A registry its settings cannot make is said in one line by every command that asks the
    /// registry (they listed, described and called through the local registry in its place).
    @Test(arguments: [["services"], ["describe", "x"], ["call", "x", "X.Y", "{}"], ["stats", "x"]])
    func microSaysWhyTheRegistryCannotBeMade(arguments: [String]) async throws {
        let result = try await Self.run("micro", arguments, environment: ["MICRO_REGISTRY": "mdns", "MICRO_MDNS_TIMEOUT": "soon"])
        #expect(result.status == 1 && result.stdout.isEmpty, "\(result.status) \(result.stdout)")
        #expect(result.stderr.contains("MICRO_REGISTRY=mdns: MICRO_MDNS_TIMEOUT must be a number of seconds above 0, not 'soon'"),
                "\(result.stderr)")
    }

    /// In-process, without the process's signals, `run()` throws the same one line instead.
    @Test func runThrowsWhenItDoesNotOwnTheProcess() async throws {
        let service = Service(name: "inproc", address: "nonsense:xyz", options: .init(handleSignals: false, register: false))
        do {
            try await service.run()
            Issue.record("a service on 'nonsense:xyz' ran")
        } catch let error as ServiceStartError {
            #expect(error.service == "inproc")
            #expect(error.description == "inproc: cannot start: invalid server address 'nonsense:xyz' (from ServiceOptions.address): expected HOST:PORT, e.g. ':8080' or '127.0.0.1:0'")
            // local misuse is a typed Swift error, not the wire's MicroError
            #expect((error.underlying as? ConfigurationError)?.key == "micro.server.address")
        }
        #expect(throws: ServiceStartError.self) { try service.start() }
        #expect(!ServiceOptions(handleSignals: false).exitOnStartFailure)
        #expect(ServiceOptions().exitOnStartFailure)
        #expect(!ServiceOptions(exitOnStartFailure: false).exitOnStartFailure)
    }
}
