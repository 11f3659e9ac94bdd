import Foundation
public import Logging
import Micro
public import MicroCore
package import SwiftProtobuf
import Synchronization

/// A client of etcd's v3 API (etcd 3.4 and later) over the framework's own gRPC client: keys
/// (``get(_:limit:revision:keysOnly:countOnly:serializable:)``, ``put(_:_:lease:prevKV:)``,
/// ``delete(_:prevKV:)``, transactions), leases kept alive over one stream for all of them, and
/// watches, many on one stream, resumed after a reconnect from the last revision seen.
///
/// Several members: a request goes to the member in use; when it cannot be reached (or, for a
/// request that is safe to repeat, cannot serve) the next member takes it, and the streams move
/// with it. The members etcd reports are learned once one answers.
///
/// ```swift
/// let etcd = EtcdClient(configuration: .init(endpoints: ["127.0.0.1:2379"]))
/// try await etcd.put("/config/a", Array("1".utf8))
/// let value = try await etcd.get(.key("/config/a")).kvs.first?.value
/// ```
///
/// Threading: any task. ``close()`` stops its streams; a client is also stopped when released.
public final class EtcdClient: Sendable {
    public let configuration: EtcdConfiguration
    let client: Client
    let logger: Logger
    private let state: Mutex<State>
    let leases: EtcdLeases
    let watches: EtcdWatches

    private struct State {
        var endpoints: [String]
        var current = 0
        var token: String?
        var learnedMembers = false
    }

    public init(configuration: EtcdConfiguration, eventLoopGroup: EventLoopGroup = .shared,
                logger: Logger = Logger(label: "micro.etcd")) {
        self.configuration = configuration
        self.logger = logger
        var options = CallOptions.grpc
        options.timeout = configuration.timeout
        options.retries = 0  // the client moves between members itself, knowing what is safe to repeat
        options.verifiesHostName = true  // etcd's certificate names its host, not a service identity
        // a client of its own: etcd's TLS is not the services' (MICRO_TLS_*), its registry is not read
        self.client = Client(registry: MemoryRegistry(), broker: MemoryBroker(), options: options,
                             eventLoopGroup: eventLoopGroup, logger: logger, tls: configuration.tls)
        self.state = Mutex(State(endpoints: configuration.endpoints.isEmpty ? ["127.0.0.1:2379"] : configuration.endpoints))
        // the streams' tasks run on an event loop of the client's: a busy or blocked cooperative
        // pool cannot delay a lease's renewal past its TTL
        let loop = eventLoopGroup.next()
        self.leases = EtcdLeases(loop: loop, logger: logger)
        self.watches = EtcdWatches(loop: loop, logger: logger)
        leases.client.withLock { $0.value = self }
        watches.client.withLock { $0.value = self }
    }

    deinit {
        leases.stop()
        watches.stop()
    }

    /// Stops the lease and watch streams (their leases are left to expire, their watches end)
    /// and closes the connections.
    public func close() async {
        leases.stop()
        watches.stop()
        await client.close()
    }

    /// The members this client knows, the one in use first.
    public var endpoints: [String] {
        state.withLock { s in Array(s.endpoints[s.current...] + s.endpoints[..<s.current]) }
    }

    /// The member in use.
    var currentEndpoint: String { state.withLock { $0.endpoints[$0.current] } }

    /// Moves off `endpoint` (if it is still the one in use) to the next member.
    func failedOver(from endpoint: String, _ error: EtcdError) {
        let next: String? = state.withLock { s in
            guard s.endpoints.count > 1, s.endpoints[s.current] == endpoint else { return nil }
            s.current = (s.current + 1) % s.endpoints.count
            return s.endpoints[s.current]
        }
        if let next { logger.info("etcd: moving from \(endpoint) to \(next): \(error.message)") }
    }

    // MARK: Requests

    /// When a request that reached a member (or may have) is sent again to another.
    package enum Repeat {
        /// Reads, and writes whose repetition changes nothing: on any failure of the member.
        case whenMemberFails
        /// Writes: only when it surely was not applied (not sent, or etcd has no leader).
        case whenNotApplied
    }

    /// One request, moved to the next member while it may be; the token is attached (and asked
    /// for again once when etcd refuses it).
    package func unary<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ path: String, _ request: Request, repeat rule: Repeat = .whenNotApplied, endpoint fixed: String? = nil
    ) async throws(EtcdError) -> Response {
        var refreshed = false
        var attempts = 0
        let tries = fixed == nil ? state.withLock { $0.endpoints.count } : 1
        while true {
            let endpoint = fixed ?? currentEndpoint
            var options = client.options
            options.address = endpoint
            if let token = try await token(refresh: false) { options.metadata["token"] = token }
            do {
                let response: Response = try await client.call("etcd", path, request, options: options)
                learnMembersOnce()
                return response
            } catch is CancellationError {
                throw EtcdError(.interrupted, "cancelled", endpoint: endpoint)
            } catch {
                let failure = EtcdError(calling: endpoint, error)
                if failure.kind == .invalidToken, configuration.username != nil, !refreshed {
                    refreshed = true
                    _ = try await token(refresh: true)
                    continue
                }
                attempts += 1
                let again = failure.kind == .unreachable || failure.message.contains("no leader")
                    || (rule == .whenMemberFails && failure.triesAnotherMember)
                guard again, attempts < tries else { throw failure }
                failedOver(from: endpoint, failure)
            }
        }
    }

    /// The token to send: nil without a user; asked for when there is none yet or `refresh`.
    func token(refresh: Bool) async throws(EtcdError) -> String? {
        guard let user = configuration.username else { return nil }
        if !refresh, let token = state.withLock({ $0.token }) { return token }
        var request = Etcdserverpb_AuthenticateRequest()
        request.name = user
        request.password = configuration.password ?? ""
        let endpoint = currentEndpoint
        var options = client.options
        options.address = endpoint
        let response: Etcdserverpb_AuthenticateResponse
        do {
            response = try await client.call("etcd", "/etcdserverpb.Auth/Authenticate", request, options: options)
        } catch {
            let failure = EtcdError(calling: endpoint, error)
            if failure.kind == .authenticationFailed {
                throw EtcdError(.authenticationFailed, "etcd refused user '\(user)': \(failure.message)", endpoint: endpoint)
            }
            throw failure
        }
        state.withLock { $0.token = response.token }
        return response.token
    }

    /// Opens a stream on the member in use, with the token and `hasleader` (a member that loses
    /// the leader ends it, so that it moves to one that has one).
    func stream<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message, R>(
        _ path: String, _ request: Request.Type, _ response: Response.Type, endpoint: String,
        _ body: (ClientStream<Request, Response>) async throws -> R
    ) async throws -> R {
        var options = client.options
        options.address = endpoint
        options.streamTimeout = nil
        options.metadata["hasleader"] = "true"
        if let token = try await token(refresh: false) { options.metadata["token"] = token }
        return try await client.stream("etcd", path, request: request, response: response, options: options, body)
    }

    /// Adds the members etcd reports to the endpoints, once, in the background.
    private func learnMembersOnce() {
        guard state.withLock({ s in
            defer { s.learnedMembers = true }
            return !s.learnedMembers
        }) else { return }
        Task { [weak self] in _ = try? await self?.refreshMembers() }
    }

    /// Asks etcd for its members and adds their client URLs to the endpoints (a member added to
    /// the cluster later becomes reachable this way); returns the endpoints, the one in use first.
    /// The client does so by itself once, after its first answer.
    @discardableResult
    public func refreshMembers() async throws(EtcdError) -> [String] {
        let urls = try await members().flatMap(\.clientURLs).compactMap(EtcdConfiguration.normalized)
        let added: [String] = state.withLock { s in
            let new = urls.filter { !s.endpoints.contains($0) }
            s.endpoints.append(contentsOf: new)
            return new
        }
        if !added.isEmpty { logger.debug("etcd: learned members \(added.joined(separator: ", "))") }
        return endpoints
    }
}

/// Runs `read` in a task of its own until it succeeds, pausing 100 ms doubling to 5 s after each
/// failure (logged as `what`), or until `stopped()`: how a cache fed by a watch that etcd ended
/// (compaction, a refusal) reads everything again.
func readAgain(_ what: String, logger: Logger, stopped: @escaping @Sendable () -> Bool, _ read: @escaping @Sendable () async throws -> Void) {
    Task {
        var pause = Duration.milliseconds(100)
        while !stopped() {
            do {
                try await read()
                return
            } catch {
                logger.warning("\(what): \(error)")
            }
            try? await Task.sleep(for: pause)
            pause = min(pause * 2, .seconds(5))
        }
    }
}

/// A long-lived stream kept open on the member in use: reopened (on the next member when this
/// one failed) after a pause that grows from 50 ms to 2 s while attempts fail.
func keepOpen(_ name: String, client: @escaping @Sendable () -> EtcdClient?, logger: Logger,
              generation: @Sendable (EtcdClient, String) async throws -> Void) async {
    var pause = Duration.milliseconds(50)
    while !Task.isCancelled {
        guard let etcd = client() else { return }
        let endpoint = etcd.currentEndpoint
        let opened = ContinuousClock.now
        do {
            try await generation(etcd, endpoint)
        } catch is CancellationError {
            return
        } catch {
            if Task.isCancelled { return }
            let failure = (error as? EtcdError) ?? EtcdError(calling: endpoint, error)
            logger.debug("etcd: \(name) stream on \(endpoint) ended: \(failure.message)")
            if failure.kind == .invalidToken { _ = try? await etcd.token(refresh: true) }
            etcd.failedOver(from: endpoint, failure)
        }
        if ContinuousClock.now - opened > .seconds(10) { pause = .milliseconds(50) }
        guard (try? await Task.sleep(for: pause)) != nil else { return }
        pause = min(pause * 2, .seconds(2))
    }
}

/// The client its lease and watch streams belong to, held weakly: they are the client's, and a
/// strong reference back kept every client (and its connections) alive after its last user.
struct WeakEtcdClient {
    weak var value: EtcdClient?
}
