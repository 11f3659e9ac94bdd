public import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A real PostgreSQL server (Debian's postgresql), made with initdb in a temporary directory and
/// started on a free loopback port for one test; stopped, killed and started again by PID. As
/// root, it runs as the `postgres` user (PostgreSQL refuses root), through setpriv, which execs
/// (so the PID is the server's). The user `micro` owns the database `micro`; passwords are
/// checked (scram-sha-256) over TCP.
public final class PostgresServer: Sendable {
    public let directory: URL
    public let port: Int
    public static let user = "micro"
    public static let password = "micro-secret"
    private let binaries: URL
    private let tls: TLS?
    private let running = Mutex<(pid: pid_t, log: LineLog)?>(nil)

    /// `postgres://micro:…@127.0.0.1:PORT/micro`
    public var url: String { "postgres://\(Self.user):\(Self.password)@127.0.0.1:\(port)/micro" }

    /// TLS for the server: its certificate and key, and the CA whose client certificates it
    /// requires (the certificate's CN must be the user's name).
    public struct TLS: Sendable {
        public var certificate: String
        public var key: String
        public var clientCA: String

        public init(certificate: String, key: String, clientCA: String) {
            self.certificate = certificate
            self.key = key
            self.clientCA = clientCA
        }
    }

    /// Makes the cluster (initdb), starts the server and creates the database `micro`. With
    /// `tls`, TCP connections must use TLS and present a client certificate.
    public init(tls: TLS? = nil) async throws {
        StallWatch.startIfAsked()
        guard let bin = Self.findBinaries() else {
            throw ChildError("PostgreSQL is not installed (scripts/setup installs Debian's postgresql)")
        }
        binaries = bin
        self.tls = tls
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("micro-pg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        port = try EtcdCluster.freePorts(1)[0]
        do {
            try Self.own(directory)
            let passwordFile = directory.appendingPathComponent("password").path
            try Self.password.write(toFile: passwordFile, atomically: true, encoding: .utf8)
            try Self.own(URL(fileURLWithPath: passwordFile))
            let initdbArgv = Self.asServerUser([bin.appendingPathComponent("initdb").path, "-D", dataDirectory, "-U", Self.user,
                                                "--pwfile", passwordFile, "--auth-host", "scram-sha-256", "--auth-local", "trust",
                                                "-E", "UTF8", "--no-sync"])
            let initdb = try await Tool.run(initdbArgv[0], Array(initdbArgv.dropFirst()))
            guard initdb.status == 0 else { throw ChildError("initdb failed: \(initdb.stderr)\(initdb.stdout)") }
            if let tls {
                // the server's copies, its own (PostgreSQL refuses a key others can read)
                for (file, name) in [(tls.certificate, "server.crt"), (tls.key, "server.key"), (tls.clientCA, "client-ca.crt")] {
                    let copy = directory.appendingPathComponent(name)
                    try FileManager.default.copyItem(atPath: file, toPath: copy.path)
                    try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: copy.path)
                    try Self.own(copy)
                }
                let hba = "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256 clientcert=verify-full\n"
                let hbaFile = URL(fileURLWithPath: dataDirectory).appendingPathComponent("pg_hba.conf")
                try hba.write(to: hbaFile, atomically: true, encoding: .utf8)
                try Self.own(hbaFile)
            }
            try start()
            try await waitUntilReady()
            let created = try await psql("CREATE DATABASE micro", database: "postgres")
            guard created.contains("CREATE DATABASE") else { throw ChildError("cannot create the database: \(created)") }
        } catch {
            stop()
            try? FileManager.default.removeItem(at: directory)
            throw error
        }
    }

    deinit {
        if let (pid, _) = running.withLock({ $0 }) { kill(pid, SIGKILL) }
        EtcdCluster.release([port])
    }

    private var dataDirectory: String { directory.appendingPathComponent("data").path }

    /// Starts the server (again, after a stop or a kill) without waiting for it.
    public func start() throws {
        let argv = Self.asServerUser([binaries.appendingPathComponent("postgres").path, "-D", dataDirectory, "-p", "\(port)",
                                      "-k", directory.path, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                                      "-c", "max_connections=200"]
                                     + (tls == nil ? [] : ["-c", "ssl=on",
                                                           "-c", "ssl_cert_file=\(directory.appendingPathComponent("server.crt").path)",
                                                           "-c", "ssl_key_file=\(directory.appendingPathComponent("server.key").path)",
                                                           "-c", "ssl_ca_file=\(directory.appendingPathComponent("client-ca.crt").path)"]))
        let child = try Spawn.start(argv, pipeOutput: true)
        let log = LineLog()
        let fd = child.output!
        Thread.detachNewThread {
            Spawn.readLines(fd) { log.add($0) }
            log.end()
        }
        running.withLock { $0 = (child.pid, log) }
    }

    /// Waits until the server accepts connections.
    public func waitUntilReady() async throws {
        guard let (_, log) = running.withLock({ $0 }) else { throw ChildError("PostgreSQL is not running") }
        let occurrence = log.lines.filter { $0.contains("ready to accept connections") }.count + 1
        guard await log.wait(for: "ready to accept connections", occurrence: occurrence, within: .seconds(120)) != nil else {
            throw ChildError("PostgreSQL did not start:\n" + log.lines.suffix(30).joined(separator: "\n"))
        }
    }

    /// kill -9 of the server, waited for (its children, the backends, end by themselves).
    public func kill9() async {
        guard let (pid, _) = running.withLock({ r in defer { r = nil }; return r }) else { return }
        kill(pid, SIGKILL)
        _ = await Spawn.wait(pid)
    }

    /// A fast shutdown (SIGINT: sessions are ended), waited for.
    public func shutdown() async {
        guard let (pid, _) = running.withLock({ r in defer { r = nil }; return r }) else { return }
        kill(pid, SIGINT)
        _ = await Spawn.wait(pid)
    }

    /// kill -9, reaped, and the directory removed, without suspending (for `defer`).
    public func stop() {
        if let (pid, _) = running.withLock({ r in defer { r = nil }; return r }) {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
        try? FileManager.default.removeItem(at: directory)
    }

    /// Runs SQL with psql over the server's Unix socket; returns its output, throws when it fails.
    @discardableResult
    public func psql(_ sql: String, database: String = "micro") async throws -> String {
        let argv = Self.asServerUser([binaries.appendingPathComponent("psql").path,
                                      "-h", directory.path, "-p", "\(port)", "-U", Self.user, "-d", database, "-v", "ON_ERROR_STOP=1",
                                      "-At", "-c", sql])
        let result = try await Tool.run(argv[0], Array(argv.dropFirst()))
        guard result.status == 0 else { throw ChildError("psql \(sql): \(result.stderr)") }
        return result.stdout + result.stderr
    }

    /// The lines the server logged.
    public var log: [String] { running.withLock { $0?.log.lines } ?? [] }

    // MARK: -

    static func findBinaries() -> URL? {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted()
        for version in versions.reversed() {
            let bin = URL(fileURLWithPath: "\(root)/\(version)/bin")
            if FileManager.default.isExecutableFile(atPath: bin.appendingPathComponent("postgres").path) { return bin }
        }
        return nil
    }

    /// `argv` as the server's user: as is, unless this process is root (then as `postgres`).
    static func asServerUser(_ argv: [String]) -> [String] {
        guard geteuid() == 0 else { return argv }
        return ["/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] + argv
    }

    /// Gives `url` to the server's user when this process is root.
    static func own(_ url: URL) throws {
        guard geteuid() == 0 else { return }
        guard let user = getpwnam("postgres") else { throw ChildError("no postgres user (the postgresql package makes it)") }
        guard chown(url.path, user.pointee.pw_uid, user.pointee.pw_gid) == 0 else {
            throw ChildError("cannot give \(url.path) to postgres: \(String(cString: strerror(errno)))")
        }
    }
}

/// One PostgreSQL server shared by the tests that run at the same time, each with a database of
/// its own: started by the first that asks, stopped (by PID) when the last gives it back.
public actor SharedPostgres {
    public static let shared = SharedPostgres()

    private var server: PostgresServer?
    private var starting: Task<PostgresServer, any Error>?
    private var users = 0

    /// A new empty database on the shared server: its URL, and what gives it back.
    public func database() async throws -> (url: String, server: PostgresServer, release: @Sendable () async -> Void) {
        users += 1
        do {
            let server = try await running()
            let name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
            try await server.psql("CREATE DATABASE \(name) OWNER \(PostgresServer.user)", database: "postgres")
            let url = "postgres://\(PostgresServer.user):\(PostgresServer.password)@127.0.0.1:\(server.port)/\(name)"
            return (url, server, { await self.release(name) })
        } catch {
            await release(nil)
            throw error
        }
    }

    private func running() async throws -> PostgresServer {
        if let server { return server }
        if let starting { return try await starting.value }
        let task = Task { try await PostgresServer() }
        starting = task
        defer { starting = nil }
        let server = try await task.value
        self.server = server
        return server
    }

    private func release(_ database: String?) async {
        if let database, let server {
            _ = try? await server.psql("DROP DATABASE IF EXISTS \(database) WITH (FORCE)", database: "postgres")
        }
        users -= 1
        if users == 0, let server {
            self.server = nil
            server.stop()
        }
    }
}
