public import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Real NATS servers (Debian's nats-server) on free loopback ports, in a temporary directory,
/// for one test: one, or a cluster joined by routes; started, killed, frozen and restarted by
/// PID. Never on NATS's default ports.
public final class NATSServers: Sendable {
    /// What every server of the set is configured with.
    public struct Options: Sendable {
        /// TLS: the server's certificate and key (clients upgrade after INFO, as NATS 2.9 does).
        public var tls: (cert: String, key: String)?
        /// Clients must log in with this user and password.
        public var user: (name: String, password: String)?
        /// Clients must present this token.
        public var token: String?
        /// The largest message payload the servers take (their default: 1 MiB).
        public var maxPayload: Int?

        public init(tls: (cert: String, key: String)? = nil, user: (name: String, password: String)? = nil, token: String? = nil,
                    maxPayload: Int? = nil) {
            self.tls = tls
            self.user = user
            self.token = token
            self.maxPayload = maxPayload
        }
    }

    public let directory: URL
    public let clientPorts: [Int]
    public let routePorts: [Int]
    private let options: Options
    private let servers: Mutex<[Server?]>

    private struct Server {
        let pid: pid_t
        let log: LineLog
    }

    /// `nats://127.0.0.1:PORT` of each server.
    public var urls: [String] { clientPorts.map { "nats://127.0.0.1:\($0)" } }
    /// The URLs as `MICRO_BROKER_ADDRESS` takes them.
    public var address: String { urls.joined(separator: ",") }

    /// Starts `count` servers (a cluster when more than one) and waits until each is ready and,
    /// in a cluster, routed to every other.
    public init(count: Int = 1, options: Options = Options()) async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/nats-server") else {
            throw ChildError("nats-server is not installed (scripts/setup installs Debian's nats-server)")
        }
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("micro-nats-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let ports = try EtcdCluster.freePorts(2 * count)
        clientPorts = Array(ports[..<count])
        routePorts = Array(ports[count...])
        self.options = options
        servers = Mutex(Array(repeating: nil, count: count))
        do {
            for i in 0..<count { try start(i) }
            for i in 0..<count { try await waitUntilReady(i) }
        } catch {
            await shutdown()
            throw error
        }
    }

    deinit {
        for server in servers.withLock({ $0 }) {
            if let server { kill(server.pid, SIGKILL) }
        }
        EtcdCluster.release(clientPorts + routePorts)
    }

    /// The configuration file of server `i`.
    private func configuration(_ i: Int) -> String {
        var lines = ["server_name: n\(i)", "listen: 127.0.0.1:\(clientPorts[i])"]
        if let maxPayload = options.maxPayload { lines.append("max_payload: \(maxPayload)") }
        // the server gives a client 0.5 s for its TLS handshake and 2 s for its CONNECT: under the
        // sanitizers (a slow client, not a broken one) both are raised to a bound only a hung test reaches
        if let user = options.user {
            lines.append("authorization { user: \"\(user.name)\", password: \"\(user.password)\", timeout: 60 }")
        } else if let token = options.token {
            lines.append("authorization { token: \"\(token)\", timeout: 60 }")
        }
        if let tls = options.tls {
            lines.append("tls { cert_file: \"\(tls.cert)\", key_file: \"\(tls.key)\", timeout: 60 }")
        }
        if clientPorts.count > 1 {
            let routes = routePorts.enumerated().filter { $0.offset != i }.map { "\"nats-route://127.0.0.1:\($0.element)\"" }
            lines.append("cluster { name: micro, listen: 127.0.0.1:\(routePorts[i]), routes: [\(routes.joined(separator: ", "))] }")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Starts server `i` (again, after a kill or a stop) without waiting for it.
    public func start(_ i: Int) throws {
        let config = directory.appendingPathComponent("n\(i).conf")
        try configuration(i).write(to: config, atomically: true, encoding: .utf8)
        let child = try Spawn.start(["/usr/sbin/nats-server", "-c", config.path], pipeOutput: true)
        let log = LineLog()
        let fd = child.output!
        Thread.detachNewThread {
            Spawn.readLines(fd) { log.add($0) }
            log.end()
        }
        servers.withLock { $0[i] = Server(pid: child.pid, log: log) }
    }

    /// Waits until server `i` takes clients and, in a cluster, has a route to every other server
    /// that runs.
    public func waitUntilReady(_ i: Int) async throws {
        guard let server = servers.withLock({ $0[i] }) else { throw ChildError("nats-server \(i) is not running") }
        guard await server.log.wait(for: "Server is ready", within: .seconds(60)) != nil else {
            throw ChildError("nats-server \(i) did not start:\n" + server.log.lines.suffix(30).joined(separator: "\n"))
        }
        let others = servers.withLock { $0.enumerated().filter { $0.offset != i && $0.element != nil }.count }
        for n in 0..<others {
            guard await server.log.wait(for: "Route connection created", occurrence: n + 1, within: .seconds(60)) != nil else {
                throw ChildError("nats-server \(i) did not join its cluster:\n" + server.log.lines.suffix(30).joined(separator: "\n"))
            }
        }
    }

    /// kill -9 of server `i`, waited for.
    public func kill9(_ i: Int) async {
        guard let server = servers.withLock({ s in defer { s[i] = nil }; return s[i] }) else { return }
        kill(server.pid, SIGKILL)
        _ = await Spawn.wait(server.pid)
    }

    /// SIGSTOP / SIGCONT and the like to server `i`.
    public func signal(_ i: Int, _ sig: Int32) {
        if let server = servers.withLock({ $0[i] }) { kill(server.pid, sig) }
    }

    /// The lines server `i` logged.
    public func log(_ i: Int) -> [String] { servers.withLock { $0[i] }?.log.lines ?? [] }

    /// Kills every server and removes the directory.
    public func shutdown() async {
        for i in 0..<clientPorts.count {
            signal(i, SIGCONT)
            await kill9(i)
        }
        try? FileManager.default.removeItem(at: directory)
    }
}
