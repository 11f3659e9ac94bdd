import ArgumentParser
import Foundation
import Logging
import Micro

/// The nodes of `service` in the registry (or the one at `address`): (node id, address).
private func nodes(of service: String, address: String?) async throws -> [(id: String, address: String)] {
    if let address { return [(address, address)] }
    let nodes = try await processRegistry().getService(service).flatMap(\.nodes)
    guard !nodes.isEmpty else { throw Failure("service \(service) not found") }
    return nodes.map { ($0.id, $0.address) }.sorted { $0.id < $1.id }
}

private func quietClient(token: String?) throws -> (Client, [String: String]) {
    var logger = Logger(label: "micro")
    logger.logLevel = .error
    return (try makeClient(logger: logger), token.map { ["Authorization": "Bearer \($0)"] } ?? [:])
}

struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show each node's counters (Debug.Stats): started, uptime, memory, threads, requests, errors.")

    @Argument(help: "The service name.") var service: String
    @Option(help: "Ask this host:port only, instead of every node in the registry.") var address: String?
    @Option(help: "An access token, sent as Authorization: Bearer TOKEN (default: MICRO_AUTH_TOKEN).") var token: String?
    @Flag(help: "Print each node's answer as a JSON line.") var json = false
    @Option(help: "Seconds to wait for each node's answer, retries included.") var timeout: Double = 5

    func run() async throws {
        let timeout = try secondsOption(self.timeout, option: "timeout")
        let (client, headers) = try quietClient(token: token)
        if !json { print(["NODE", "ADDRESS", "STARTED", "UPTIME", "MEMORY", "THREADS", "REQUESTS", "ERRORS"].joined(separator: "\t")) }
        var failed = false
        for node in try await nodes(of: service, address: address) {
            do {
                let stats: Debug.Stats = try await client.call(service, "Debug.Stats", Debug.StatsRequest(),
                                                               options: CallOptions(timeout: timeout, metadata: headers,
                                                                                    address: node.address))
                if json {
                    var line = try JSONEncoder().encode(stats)
                    line.append(10)
                    FileHandle.standardOutput.write(line)
                    continue
                }
                let started = Date(timeIntervalSince1970: TimeInterval(stats.started)).formatted(.iso8601)
                print([node.id, node.address, started, "\(stats.uptime)s", Self.bytes(stats.memory), "\(stats.threads)",
                       "\(stats.requests)", "\(stats.errors)"].joined(separator: "\t"))
            } catch {
                failed = true
                FileHandle.standardError.write(Data("micro: \(node.id) at \(node.address): \(error)\n".utf8))
            }
        }
        if failed { throw ExitCode(1) }
    }

    static func bytes(_ n: UInt64) -> String {
        n >= 1 << 20 ? String(format: "%.1fMiB", Double(n) / 1048576) : String(format: "%.1fKiB", Double(n) / 1024)
    }
}

struct Logs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a service's last log lines (Debug.Log), from every node; -f follows new ones.",
        discussion: "Each line: TIME [NODE] LEVEL MESSAGE key=value... (--json: go-micro's Record as JSON).")

    @Argument(help: "The service name.") var service: String
    @Option(help: "Ask this host:port only, instead of every node in the registry.") var address: String?
    @Option(help: "The last N lines of each node (default: all it keeps, up to 1000).") var count: Int64 = 0
    @Option(help: "Only lines since this many seconds ago.") var since: Int64?
    @Flag(name: [.short, .customLong("follow")], help: "Keep printing new lines until interrupted.") var follow = false
    @Option(help: "An access token, sent as Authorization: Bearer TOKEN (default: MICRO_AUTH_TOKEN).") var token: String?
    @Flag(help: "Print each record as a JSON line.") var json = false

    func run() async throws {
        let (client, headers) = try quietClient(token: token)
        let nodes = try await nodes(of: service, address: address)
        let request = Debug.LogRequest(count: count, stream: follow, since: since.map { Int64(Date().timeIntervalSince1970) - $0 })
        let body = try JSONEncoder().encode(request)
        let failures = await withTaskGroup(of: Bool.self) { group in
            for node in nodes {
                group.addTask {
                    do {
                        try await client.rawStream(service, "Debug.Log", options: CallOptions(metadata: headers, address: node.address)) { call in
                            try await call.send(Array(body))
                            call.closeSend()
                            for try await answer in call.responses {
                                let record = try JSONDecoder().decode(Debug.Record.self, from: Data(answer))
                                // written at once (a follower is read as it goes, often through a pipe)
                                let line = json ? String(decoding: answer, as: UTF8.self) : Self.line(record, node: nodes.count > 1 ? node.id : nil)
                                FileHandle.standardOutput.write(Data((line + "\n").utf8))
                            }
                        }
                        return false
                    } catch {
                        FileHandle.standardError.write(Data("micro: \(node.id) at \(node.address): \(error)\n".utf8))
                        return true
                    }
                }
            }
            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        if failures > 0 { throw ExitCode(1) }
    }

    static func line(_ record: Debug.Record, node: String?) -> String {
        var metadata = record.metadata
        let level = metadata.removeValue(forKey: "level") ?? ""
        let time = Date(timeIntervalSince1970: TimeInterval(record.timestamp)).formatted(.iso8601)
        let fields = metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        return ([time] + (node.map { [$0] } ?? []) + [level, record.message] + fields).joined(separator: " ")
    }
}
