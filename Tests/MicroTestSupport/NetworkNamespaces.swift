public import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Two network namespaces of the test's own, joined by a veth pair with multicast on, on a
/// private subnet: multicast traffic (mDNS) sent inside them never reaches the host's interfaces.
/// Needs root (`ip netns`). Names are unique per instance; ``remove()`` deletes exactly these.
///
/// ```swift
/// let net = try NetworkNamespaces()
/// defer { net.remove() }
/// let child = try await ChildService("helloworld", launcher: net.exec(net.a))
/// ```
public final class NetworkNamespaces: Sendable {
    public let a: String
    public let b: String
    public let interfaceA: String
    public let interfaceB: String
    public let addressA = "10.213.0.1"
    public let addressB = "10.213.0.2"

    /// - Parameter ipv4: false leaves the link IPv6-only (link-local addresses).
    public init(ipv4: Bool = true) async throws {
        let tag = String(UInt32.random(in: 0...UInt32.max), radix: 16)
        a = "micro-mdns-\(tag)-a"
        b = "micro-mdns-\(tag)-b"
        interfaceA = "mda\(tag)"
        interfaceB = "mdb\(tag)"
        do {
            try await Self.ip(["netns", "add", a])
            try await Self.ip(["netns", "add", b])
            try await Self.ip(["link", "add", interfaceA, "type", "veth", "peer", "name", interfaceB])
            try await Self.ip(["link", "set", interfaceA, "netns", a])
            try await Self.ip(["link", "set", interfaceB, "netns", b])
            for (ns, interface, address) in [(a, interfaceA, addressA), (b, interfaceB, addressB)] {
                // no duplicate address detection: the link-local IPv6 address is usable at once
                try await Self.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.\(interface).accept_dad=0"])
                try await Self.ip(["-n", ns, "link", "set", "lo", "up"])
                if ipv4 { try await Self.ip(["-n", ns, "addr", "add", "\(address)/24", "dev", interface]) }
                try await Self.ip(["-n", ns, "link", "set", interface, "multicast", "on", "up"])
                // a route for multicast sockets that let the kernel pick the interface (Go's, Python's)
                if ipv4 { try await Self.ip(["-n", ns, "route", "add", "default", "dev", interface]) }
            }
        } catch {
            remove()
            throw error
        }
    }

    /// The prefix that runs a command inside `namespace`.
    public func exec(_ namespace: String) -> [String] { ["ip", "netns", "exec", namespace] }

    /// Deletes both namespaces (the veth pair goes with them). Processes still running inside
    /// must have been stopped first. Idempotent.
    public func remove() {
        for ns in [a, b] { try? Self.runHere(["ip", "netns", "delete", ns]) }
    }

    private static func ip(_ arguments: [String]) async throws { try await run(["ip"] + arguments) }

    /// Runs a command to its end, waiting off the cooperative pool; throws with its error output
    /// if it fails.
    static func run(_ argv: [String]) async throws {
        try await Blocking.run { Result { try runHere(argv) } }.get()
    }

    /// Runs a command to its end on the calling thread (for `defer`); throws with its error
    /// output if it fails.
    static func runHere(_ argv: [String]) throws {
        let err = FileManager.default.temporaryDirectory.appendingPathComponent("micro-netns-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: err) }
        let child = try Spawn.start(argv, stderrPath: err.path)
        var status: Int32 = 0
        while waitpid(child.pid, &status, 0) < 0 && errno == EINTR {}
        guard status == 0 else {
            let message = (try? String(contentsOf: err, encoding: .utf8)) ?? ""
            throw ChildError("\(argv.joined(separator: " ")) failed (status \(status)): \(message)")
        }
    }
}

/// A child process whose output lines are awaited as events (a peer, `micro watch`).
public final class LineProcess: Sendable {
    public let pid: pid_t
    private struct Waiter {
        let match: @Sendable (String) -> Bool
        let continuation: CheckedContinuation<String?, Never>
    }
    private struct State {
        var lines: [String] = []
        var ended = false
        var waiters: [Int: Waiter] = [:]
        var nextID = 0
        var abandoned: Set<Int> = []
        var reaped = false
    }
    private let state = Mutex(State())

    public init(_ argv: [String], environment: [String: String] = [:]) throws {
        let env = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let child = try Spawn.start(argv, environment: env, pipeOutput: true)
        pid = child.pid
        let fd = child.output!
        Thread.detachNewThread { [self] in
            func deliver(_ line: String?) {
                let woken = self.state.withLock { state -> [(CheckedContinuation<String?, Never>, String?)] in
                    if let line { state.lines.append(line) } else { state.ended = true }
                    var woken: [(CheckedContinuation<String?, Never>, String?)] = []
                    for (id, waiter) in state.waiters where line == nil || waiter.match(line!) {
                        state.waiters[id] = nil
                        woken.append((waiter.continuation, line))
                    }
                    return woken
                }
                for (continuation, line) in woken { continuation.resume(returning: line) }
            }
            Spawn.readLines(fd) { deliver($0) }
            deliver(nil)
        }
    }

    /// The first line (from the start of the output) for which `match` holds; nil if the output
    /// ends first, or after `bound` (a bound against a hang, not a measurement).
    public func waitForLine(within bound: Duration = .seconds(300), where match: @escaping @Sendable (String) -> Bool) async -> String? {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        return await withTaskGroup(of: String?.self) { group in
            group.addTask {
                await withCheckedContinuation { (continuation: CheckedContinuation<String?, Never>) in
                    let (done, line) = self.state.withLock { state -> (Bool, String?) in
                        if let line = state.lines.first(where: match) { return (true, line) }
                        if state.ended || state.abandoned.remove(id) != nil { return (true, nil) }
                        state.waiters[id] = Waiter(match: match, continuation: continuation)
                        return (false, nil)
                    }
                    if done { continuation.resume(returning: line) }
                }
            }
            group.addTask {
                try? await Task.sleep(for: bound)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            // the waiter is released, or told not to wait if it has not registered yet
            let waiter = self.state.withLock { state in
                let waiter = state.waiters.removeValue(forKey: id)
                if waiter == nil && first == nil { state.abandoned.insert(id) }
                return waiter
            }
            waiter?.continuation.resume(returning: nil)
            return first
        }
    }

    public func waitForLine(containing text: String, within bound: Duration = .seconds(300)) async -> String? {
        await waitForLine(within: bound) { $0.contains(text) }
    }

    /// Everything read so far.
    public var output: [String] { state.withLock { $0.lines } }

    public func signal(_ sig: Int32) { kill(pid, sig) }

    /// Waits for the process to end by itself (call it once its output ended) and reaps it;
    /// returns its exit status, or 128 + the signal that ended it.
    public func reap() -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        state.withLock { $0.reaped = true }
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    /// Kills the process (if it still runs) and reaps it. Idempotent.
    public func stop() {
        let reaped = state.withLock { state in
            defer { state.reaped = true }
            return state.reaped
        }
        if reaped { return }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }
}
