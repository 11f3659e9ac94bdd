import Foundation
import MicroCore
import Synchronization

/// go-micro v6's HTTP health endpoints, on every service's own port (plain `GET`, no auth):
///
/// - `GET /health`: every check, `{"status":"up|down","checks":[{"name","status","error",
///   "duration"}],"info":{"service","version","node"}}`; 200 when up, 503 when a critical check
///   fails.
/// - `GET /health/live`: 200 while the process serves (a liveness probe: restart me if not).
/// - `GET /health/ready`: the critical checks; 503 also while the service shuts down (a readiness
///   probe: send me no traffic now).
///
/// Built in: `registry` (critical, when the service registers): its last registration or
/// heartbeat succeeded within the registration TTL, so readiness drops while the registry is
/// unreachable longer than that and comes back by itself with the next heartbeat that succeeds.
/// Add more with ``Service/addHealthCheck(_:critical:timeout:_:)``.
final class HealthChecks: Sendable {
    struct Check: Sendable {
        let name: String
        let critical: Bool
        let timeout: Duration
        let run: @Sendable () async throws -> Void
    }

    private let checks = Mutex<[Check]>([])
    /// Serving or shutting down (the gRPC health state).
    let state: HealthState
    /// What `/health` says of the node: service, version, node id.
    let info: [String: String]

    init(state: HealthState, info: [String: String]) {
        self.state = state
        self.info = info
    }
    /// When the last registration or heartbeat succeeded (nil: never yet).
    private let registered = Mutex<ContinuousClock.Instant?>(nil)

    func add(_ check: Check) {
        checks.withLock { list in
            list.removeAll { $0.name == check.name }
            list.append(check)
        }
    }

    func registrationSucceeded() { registered.withLock { $0 = .now } }

    /// The registry check: fails when no registration succeeded within `ttl`.
    func registryCheck(ttl: Duration) -> Check {
        Check(name: "registry", critical: true, timeout: .seconds(5)) { [weak self] in
            guard let last = self?.registered.withLock({ $0 }) else { throw HealthFailure("not registered yet") }
            let age = ContinuousClock.now - last
            if age > ttl { throw HealthFailure("no registration has succeeded for \(Self.text(age)) (TTL \(Self.text(ttl)))") }
        }
    }

    /// `1.5s`, `12.3ms`.
    static func text(_ duration: Duration) -> String {
        let seconds = duration.seconds
        return seconds >= 1 ? String(format: "%.1fs", seconds) : String(format: "%.1fms", seconds * 1000)
    }

    struct HealthFailure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    struct Outcome: Encodable {
        var name: String
        var status: String
        var error: String?
        var duration: String
    }

    /// Runs the checks (the critical ones only, if `criticalOnly`) at once, each within its
    /// timeout; true when no critical one failed.
    func run(criticalOnly: Bool) async -> (up: Bool, outcomes: [Outcome]) {
        let list = checks.withLock { $0 }.filter { !criticalOnly || $0.critical }
        let outcomes = await withTaskGroup(of: (Int, Outcome).self) { group in
            for (index, check) in list.enumerated() {
                group.addTask {
                    let start = ContinuousClock.now
                    let failure = await Self.outcome(of: check)
                    let took = ContinuousClock.now - start
                    return (index, Outcome(name: check.name, status: failure == nil ? "up" : "down", error: failure,
                                           duration: Self.text(took)))
                }
            }
            var all = [Outcome?](repeating: nil, count: list.count)
            for await (index, outcome) in group { all[index] = outcome }
            return all.compactMap { $0 }
        }
        let up = zip(list, outcomes).allSatisfy { check, outcome in !check.critical || outcome.status == "up" }
        return (up, outcomes)
    }

    /// Why the node is not ready (`shutting down`, or the first critical check that fails and its
    /// error); nil when it is.
    func failing() async -> String? {
        let (up, serving, outcomes) = await status(criticalOnly: true)
        guard !up else { return nil }
        guard serving else { return "shutting down" }
        return outcomes.first { $0.status == "down" }.map { "\($0.name): \($0.error ?? "down")" } ?? "down"
    }

    /// The checks (the critical ones only, if `criticalOnly`), and whether the node is up: none
    /// of them critical and down, and not shutting down.
    private func status(criticalOnly: Bool) async -> (up: Bool, serving: Bool, outcomes: [Outcome]) {
        let serving = state.check("") == .serving
        let (up, outcomes) = await run(criticalOnly: criticalOnly)
        return (up && serving, serving, outcomes)
    }

    /// Nil if the check passed within its timeout, else why not.
    private static func outcome(of check: Check) async -> String? {
        await withTaskGroup(of: String?.self) { group in
            group.addTask {
                do {
                    try await check.run()
                    return nil
                } catch {
                    return "\(error)"
                }
            }
            group.addTask {
                try? await Task.sleep(for: check.timeout)
                return Task.isCancelled ? nil : "timed out after \(check.timeout)"
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    /// The answer to `GET /health`, `/health/live` or `/health/ready`; nil for another request.
    nonisolated(nonsending) func answer(_ request: HTTPServerRequest) async -> HTTPServerResponse? {
        guard request.method == "GET" || request.method == "HEAD" else { return nil }
        let path = request.path.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.path
        struct Report: Encodable {
            var status: String
            var checks: [Outcome]?
            var info: [String: String]?
        }
        let report: Report
        switch path {
        case "/health/live":
            report = Report(status: "up")
        case "/health/ready":
            let (up, _, outcomes) = await status(criticalOnly: true)
            report = Report(status: up ? "up" : "down", checks: outcomes)
        case "/health":
            let (up, _, outcomes) = await status(criticalOnly: false)
            report = Report(status: up ? "up" : "down", checks: outcomes, info: info)
        default:
            return nil
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var body: [UInt8] = (try? encoder.encode(report)).map { [UInt8]($0) } ?? []
        body.append(0x0a)
        return HTTPServerResponse(status: report.status == "up" ? 200 : 503, headers: ["content-type": "application/json"],
                                  body: request.method == "HEAD" ? [] : body)
    }
}

extension Service {
    /// Adds (or replaces) a check that `GET /health` runs, and `GET /health/ready` if it is
    /// critical: `body` throws when the check fails (its error is shown), and a check that takes
    /// longer than `timeout` fails.
    public func addHealthCheck(_ name: String, critical: Bool = true, timeout: Duration = .seconds(5),
                               _ body: @escaping @Sendable () async throws -> Void) {
        healthChecks.add(.init(name: name, critical: critical, timeout: timeout, run: body))
    }

    /// Adds a check that `store` answers (a one-key list of `scope`): named `store` unless
    /// `name` says otherwise, critical by default (a service that keeps its state there cannot
    /// serve without it).
    public func addHealthCheck(store: any Store, scope: StoreScope = .default, named name: String = "store", critical: Bool = true,
                               timeout: Duration = .seconds(5)) {
        addHealthCheck(name, critical: critical, timeout: timeout) {
            _ = try await store.list(ListOptions(scope: scope, limit: 1))
        }
    }
}
