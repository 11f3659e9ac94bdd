public import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Real etcd members (Debian's etcd-server) on free loopback ports, in a temporary directory,
/// for one test: started, killed, frozen and restarted by PID. Never on etcd's default ports.
public final class EtcdCluster: Sendable {
    public struct TLSFiles: Sendable {
        public var cert: String
        public var key: String
        /// With it, members require client certificates signed by it.
        public var clientCA: String?

        public init(cert: String, key: String, clientCA: String? = nil) {
            self.cert = cert
            self.key = key
            self.clientCA = clientCA
        }
    }

    public let directory: URL
    public let clientPorts: [Int]
    public let peerPorts: [Int]
    private let tls: TLSFiles?
    private let token = "t-\(UUID().uuidString.prefix(8))"
    private let members: Mutex<[Member?]>

    private struct Member {
        let pid: pid_t
        let log: LineLog
    }

    /// `host:port` of each member's client listener (`https://…` with TLS).
    public var endpoints: [String] { clientPorts.map { (tls == nil ? "" : "https://") + "127.0.0.1:\($0)" } }
    /// The endpoints as `MICRO_REGISTRY_ADDRESS` takes them.
    public var address: String { endpoints.joined(separator: ",") }

    /// Starts `count` members and waits until each serves clients.
    public init(members count: Int = 1, tls: TLSFiles? = nil) async throws {
        StallWatch.startIfAsked()
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/etcd") else {
            throw ChildError("etcd is not installed (scripts/setup installs Debian's etcd-server)")
        }
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("micro-etcd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let ports = try Self.freePorts(2 * count)
        clientPorts = Array(ports[..<count])
        peerPorts = Array(ports[count...])
        self.tls = tls
        members = Mutex(Array(repeating: nil, count: count))
        do {
            for i in 0..<count { try start(i) }
            for i in 0..<count { try await waitUntilServing(i) }
        } catch {
            await shutdown()
            throw error
        }
    }

    deinit {
        for member in members.withLock({ $0 }) {
            if let member { kill(member.pid, SIGKILL) }
        }
        Self.release(clientPorts + peerPorts)  // here only: a stopped cluster's ports stay its own while it exists
    }

    /// Starts member `i` (again, on its data directory and ports, after a kill or a stop) without
    /// waiting for it.
    public func start(_ i: Int) throws {
        let name = "m\(i)"
        let cluster = peerPorts.enumerated().map { "m\($0.offset)=http://127.0.0.1:\($0.element)" }.joined(separator: ",")
        let scheme = tls == nil ? "http" : "https"
        var argv = [
            "/usr/bin/etcd", "--name", name, "--data-dir", directory.appendingPathComponent(name).path,
            "--listen-client-urls", "\(scheme)://127.0.0.1:\(clientPorts[i])",
            "--advertise-client-urls", "\(scheme)://127.0.0.1:\(clientPorts[i])",
            "--listen-peer-urls", "http://127.0.0.1:\(peerPorts[i])",
            "--initial-advertise-peer-urls", "http://127.0.0.1:\(peerPorts[i])",
            "--initial-cluster", cluster, "--initial-cluster-state", "new", "--initial-cluster-token", token,
            "--heartbeat-interval", "100", "--election-timeout", "1000", "--logger", "zap", "--log-outputs", "stderr",
        ]
        if let tls {
            argv += ["--cert-file", tls.cert, "--key-file", tls.key]
            if let ca = tls.clientCA { argv += ["--client-cert-auth", "--trusted-ca-file", ca] }
        }
        var env = ProcessInfo.processInfo.environment
        env["ETCD_UNSUPPORTED_ARCH"] = nil
        let child = try Spawn.start(argv, environment: env, pipeOutput: true)
        let log = LineLog()
        let fd = child.output!
        Thread.detachNewThread {
            Spawn.readLines(fd) { log.add($0) }
            log.end()
        }
        members.withLock { $0[i] = Member(pid: child.pid, log: log) }
    }

    /// Waits until member `i` serves clients (it joined its cluster).
    public func waitUntilServing(_ i: Int) async throws {
        guard let member = members.withLock({ $0[i] }) else { throw ChildError("etcd member \(i) is not running") }
        guard await member.log.wait(for: "serving client traffic", within: .seconds(120)) != nil else {
            throw ChildError("etcd member \(i) did not start:\n" + member.log.lines.suffix(30).joined(separator: "\n"))
        }
    }

    /// kill -9 of member `i`, waited for.
    public func kill9(_ i: Int) async {
        guard let member = members.withLock({ m in defer { m[i] = nil }; return m[i] }) else { return }
        kill(member.pid, SIGKILL)
        _ = await Spawn.wait(member.pid)
    }

    /// SIGSTOP / SIGCONT and the like to member `i`.
    public func signal(_ i: Int, _ sig: Int32) {
        if let member = members.withLock({ $0[i] }) { kill(member.pid, sig) }
    }

    /// SIGSTOP to member `i`, returning once the kernel reports every one of its threads stopped
    /// (a signal is delivered asynchronously: a request sent right after kill(2) could still be
    /// served by a thread not yet stopped).
    public func freeze(_ i: Int) async {
        guard let member = members.withLock({ $0[i] }) else { return }
        kill(member.pid, SIGSTOP)
        let tasks = "/proc/\(member.pid)/task"
        for _ in 0..<10_000 {
            let threads = (try? FileManager.default.contentsOfDirectory(atPath: tasks)) ?? []
            let stopped = threads.allSatisfy { tid in
                guard let stat = try? String(contentsOfFile: "\(tasks)/\(tid)/stat", encoding: .utf8),
                      let close = stat.lastIndex(of: ")") else { return true }
                return stat[stat.index(close, offsetBy: 2)] == "T"
            }
            if stopped { return }
            try? await Task.sleep(for: .milliseconds(1))
        }
    }

    /// The lines member `i` logged.
    public func log(_ i: Int) -> [String] { members.withLock { $0[i] }?.log.lines ?? [] }

    /// Kills every member and removes the directory.
    public func shutdown() async {
        for i in 0..<clientPorts.count { await kill9(i) }
        try? FileManager.default.removeItem(at: directory)
    }

    /// kill -9 of every member, reaped, and the directory removed, without suspending (for `defer`).
    public func stop() {
        for member in members.withLock({ m in defer { m = m.map { _ in nil } }; return m }) {
            guard let member else { continue }
            kill(member.pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(member.pid, &status, 0) < 0 && errno == EINTR {}
        }
        try? FileManager.default.removeItem(at: directory)
    }

    /// Runs etcdctl against the members (`--endpoints` given) and returns its output; throws with
    /// its output when it fails.
    @discardableResult
    public func etcdctl(_ arguments: [String], extra: [String] = []) async throws -> String {
        let result = try await Tool.run("/usr/bin/etcdctl", ["--endpoints", address] + extra + arguments,
                                        environment: ["ETCDCTL_API": "3"])
        guard result.status == 0 else { throw ChildError("etcdctl \(arguments.joined(separator: " ")): \(result.stderr)") }
        return result.stdout
    }

    /// Ports handed to clusters of this process and not yet given back.
    private static let reserved = Mutex<Set<Int>>([])

    /// Loopback ports free now, below the kernel's ephemeral range (so that no process binding
    /// port 0 meanwhile, a service of another test, takes one while a member is down and to be
    /// restarted on it) and not held by another cluster of this process.
    public static func freePorts(_ count: Int) throws -> [Int] {
        let range = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))?
            .split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { Int($0) } ?? []
        let ceiling = max(12_000, min(range.first ?? 32_768, 32_768))
        var ports: [Int] = []
        for _ in 0..<10_000 where ports.count < count {
            let port = Int.random(in: 10_000..<ceiling)
            guard reserved.withLock({ $0.insert(port).inserted }) else { continue }
            if bindable(port) { ports.append(port) } else { _ = reserved.withLock { $0.remove(port) } }
        }
        guard ports.count == count else { throw ChildError("no free loopback ports for etcd") }
        return ports
    }

    public static func release(_ ports: [Int]) {
        reserved.withLock { $0.subtract(ports) }
    }

    private static func bindable(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}
