import Foundation
import Micro
import MicroTestSupport
import Synchronization
import Testing

/// In-process services that register in one shared registry, run with `run()`.
final class Fleet: Sendable {
    let registry = MemoryRegistry()
    private let running = Mutex<[(Service, Task<Void, any Error>)]>([])

    /// Starts a service and returns once its node is in the registry.
    @discardableResult
    func start(
        _ name: String,
        version: String = "latest",
        interceptors: [any ServerInterceptor] = [],
        broker: (any Broker)? = nil,
        _ configure: (Service) -> Void
    ) async throws -> Service {
        var options = ServiceOptions(handleSignals: false, registry: registry, registerTTL: .registrationGuard, interceptors: interceptors)
        options.broker = broker
        let service = Service(name: name, version: version, address: "127.0.0.1:0", options: options)
        configure(service)
        let events = try registry.events(service: name)
        let task = Task { try await service.run() }
        running.withLock { $0.append((service, task)) }
        for await event in events where event.action == .create && event.service.nodes.contains(where: { $0.id == service.nodeID }) {
            break
        }
        return service
    }

    /// A service `sleeper` whose `Sleeper.Nap` sleeps the milliseconds asked: `started` is told
    /// as a nap begins, `cancelled` when one is cut short.
    func startSleeper(started: @escaping @Sendable () -> Void, cancelled: @escaping @Sendable () -> Void) async throws {
        try await start("sleeper") { service in
            service.handle("Sleeper.Nap") { (req: Nap, _: Context) async throws -> Reply in
                started()
                do {
                    try await Task.sleep(for: .milliseconds(req.milliseconds))
                } catch {
                    cancelled()
                    throw error
                }
                return Reply(message: "rested")
            }
        }
    }

    /// A client of the fleet. Its calls' deadline is `Duration.hangGuard`, not the 5 s
    /// default, so that a machine slowed by sanitizers and other builds fails nothing.
    func client(strategy: SelectionStrategy = .powerOfTwoChoices, options: CallOptions = .init(timeout: .hangGuard), interceptors: [any ClientInterceptor] = []) -> Client {
        Client(registry: registry, strategy: strategy, options: options, interceptors: interceptors)
    }

    func stopAll() async throws {
        let all = running.withLock { $0 }
        for (service, _) in all { service.stop() }
        for (_, task) in all { try await task.value }
    }
}

struct Who: Codable, Sendable, Equatable { var node: String }

/// Records the order in which interceptors run.
struct Tracer: ClientInterceptor, ServerInterceptor {
    let name: String

    func intercept(_ call: ClientCall, next: (ClientCall) async throws -> ClientResponse) async throws -> ClientResponse {
        var call = call
        let trace = call.options.metadata["x-trace"].map { $0 + "," + name } ?? name
        call.options.metadata["x-trace"] = trace
        return try await next(call)
    }

    func intercept(_ call: ServerCall, next: (ServerCall) async throws -> ServerResult) async throws -> ServerResult {
        ServerLog.shared.withLock { $0.append("\(name) in") }
        defer { ServerLog.shared.withLock { $0.append("\(name) out") } }
        return try await next(call)
    }
}

enum ServerLog {
    static let shared = Mutex<[String]>([])
}

@Suite struct ClientTests {
    @Test func callsByNameAreSpreadOverTheNodesRoundRobin() async throws {
        let fleet = Fleet()
        for _ in 0..<2 {
            try await fleet.start("greeter") { service in
                let id = service.nodeID
                service.handle("Greeter.Who") { (_: Greeting, _: Context) async throws -> Who in Who(node: id) }
            }
        }
        let client = fleet.client(strategy: .roundRobin)
        var counts: [String: Int] = [:]
        for _ in 0..<10 {
            let who: Who = try await client.call("greeter", "Greeter.Who", Greeting(name: "x"))
            counts[who.node, default: 0] += 1
        }
        #expect(counts.values.sorted() == [5, 5])
        // the raw form tells which node answered
        let raw = try await client.call("greeter", "Greeter.Who", body: Array(#"{"name":"y"}"#.utf8))
        #expect(try JSONDecoder().decode(Who.self, from: Data(raw.body)).node == raw.node?.id)
        try await fleet.stopAll()
    }

    @Test func unknownServiceIsAnError500NamingIt() async throws {
        let client = Fleet().client()
        do {
            let _: Reply = try await client.call("no-such-service", "X.Y", Greeting(name: "x"))
            Issue.record("a call to a service with no node succeeded")
        } catch let error as MicroError {
            #expect(error.code == 500)
            #expect(error.detail.contains("no-such-service"))
        }
    }

    @Test func unknownEndpointIs404() async throws {
        let fleet = Fleet()
        try await fleet.start("greeter") { _ in }
        await #expect(throws: MicroError.notFound("greeter", "endpoint Greeter.Nope not found on service greeter")) {
            let _: Reply = try await fleet.client().call("greeter", "Greeter.Nope", Greeting(name: "x"))
        }
        try await fleet.stopAll()
    }

    /// `Client.call` runs where its caller does (it is `nonisolated(nonsending)`), but its
    /// connection's steps must run on a loop: from an actor, from the main actor and from an
    /// actor reached inside a handler (whose task prefers the loop the actor then runs on) the
    /// call takes the loop's path and answers; cancelling the calling task cancels the call.
    @Test func callsFromActorsTakeTheLoopsPathAndCancelFromThere() async throws {
        actor Caller {
            let client: Client
            init(_ client: Client) { self.client = client }
            func greet(_ name: String) async throws -> Reply {
                try await client.call("greeter", "Greeter.Hello", Greeting(name: name))
            }
            func nap() async throws -> Reply {
                try await client.call("sleeper", "Sleeper.Nap", Nap(milliseconds: 600_000))
            }
        }
        @MainActor func greetFromMain(_ client: Client) async throws -> Reply {
            try await client.call("greeter", "Greeter.Hello", Greeting(name: "main"))
        }
        let fleet = Fleet()
        let (napping, nappingContinuation) = AsyncStream<Void>.makeStream()
        let (cancelled, cancelledContinuation) = AsyncStream<Void>.makeStream()
        try await fleet.start("greeter") { service in
            service.handle("Greeter.Hello") { (req: Greeting, _: Context) -> Reply in Reply(message: "hello \(req.name)") }
        }
        try await fleet.startSleeper(started: { nappingContinuation.yield() }, cancelled: { cancelledContinuation.yield() })
        let caller = Caller(fleet.client())
        try await fleet.start("front") { service in
            service.handle("Front.Relay") { (req: Greeting, _: Context) async throws -> Reply in try await caller.greet(req.name) }
        }
        #expect(try await caller.greet("actor").message == "hello actor")
        #expect(try await greetFromMain(fleet.client()).message == "hello main")
        let relayed: Reply = try await fleet.client().call("front", "Front.Relay", Greeting(name: "relay"))
        #expect(relayed.message == "hello relay")
        // cancelled while its handler sleeps: the call ends, and so does the handler
        let napper = Task { try await caller.nap() }
        for await _ in napping { break }
        napper.cancel()
        await #expect(throws: CancellationError.self) { try await napper.value }
        for await _ in cancelled { break }
        try await fleet.stopAll()
    }

    @Test func aHandlerPastTheDeadlineIsCancelledAndTheCallerGets408() async throws {
        let fleet = Fleet()
        let (cancelled, cancelledContinuation) = AsyncStream<Void>.makeStream()
        let started = Atomic<Int>(0)
        try await fleet.startSleeper(started: { started.add(1, ordering: .relaxed) }, cancelled: { cancelledContinuation.yield() })
        // a loaded machine (a sanitizer, the rest of the suite) may spend the whole deadline
        // before the handler starts: the server then refuses the call without running it, and
        // there is no handler to cancel. The deadline grows until one call reached its handler.
        for attempt in 0..<8 where started.load(ordering: .relaxed) == 0 {
            let client = fleet.client(options: CallOptions(timeout: .milliseconds(200 << attempt)))
            do {
                let _: Reply = try await client.call("sleeper", "Sleeper.Nap", Nap(milliseconds: 600_000))
                Issue.record("the call outlived its deadline")
            } catch let error as MicroError {
                #expect(error.code == 408)
            }
        }
        #expect(started.load(ordering: .relaxed) > 0, "no call reached its handler")
        // the handler learns it: the stream was reset, or the deadline sent along passed
        if started.load(ordering: .relaxed) > 0 {
            for await _ in cancelled { break }
        }
        try await fleet.stopAll()
    }

    @Test func metadataAndInterceptorsInOrderOnBothSides() async throws {
        let fleet = Fleet()
        try await fleet.start("traced", interceptors: [Tracer(name: "first"), Tracer(name: "second")]) { service in
            service.handle("Traced.Echo") { (_: Greeting, ctx: Context) async throws -> Reply in
                Reply(message: "\(ctx.metadata["x-tenant"] ?? "-") \(ctx.metadata["x-trace"] ?? "-")")
            }
        }
        let client = fleet.client(
            options: CallOptions(timeout: .hangGuard, metadata: ["x-tenant": "acme"]),
            interceptors: [Tracer(name: "outer"), Tracer(name: "inner")]
        )
        let reply: Reply = try await client.call("traced", "Traced.Echo", Greeting(name: "x"))
        #expect(reply.message == "acme outer,inner")
        #expect(ServerLog.shared.withLock { $0 } == ["first in", "second in", "second out", "first out"])
        try await fleet.stopAll()
    }

    /// A client sends the fields of a call shape made once (frozen) and the core adds the
    /// deadline: each call must still carry its own metadata and the deadline in the header its
    /// wire reads, once; a deadline the caller put in its metadata is sent as given instead.
    @Test func eachCallCarriesItsOwnMetadataAndItsDeadlineOnBothWires() async throws {
        let fleet = Fleet()
        try await fleet.start("shapes") { service in
            service.handle("Shapes.Echo") { (_: Greeting, ctx: Context) async throws -> Reply in
                let deadline = ctx.metadata[ctx.wire == .grpc ? "grpc-timeout" : "timeout"] ?? "-"
                return Reply(message: "\(ctx.metadata["x-n"] ?? "-")|\(deadline)|\(ctx.deadline != nil)")
            }
        }
        for contentType in ["application/json", "application/grpc+json"] {
            let grpc = contentType.hasPrefix("application/grpc")
            let client = fleet.client(options: CallOptions(timeout: .seconds(600), contentType: contentType))
            // more shapes than the client keeps (8), then the first ones again
            for n in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2, 0] {
                var options = client.options
                if n > 0 { options.metadata["x-n"] = "\(n)" }
                let reply: Reply = try await client.call("shapes", "Shapes.Echo", Greeting(name: "x"), options: options)
                let parts = reply.message.split(separator: "|").map(String.init)
                #expect(parts.count == 3, "\(contentType): \(reply.message)")
                #expect(parts[0] == (n > 0 ? "\(n)" : "-"), "\(contentType): call \(n) got \(reply.message)")
                #expect(parts[2] == "true")
                // the time left when sent: positive, at most the 600 s asked, one value
                if grpc {
                    #expect(parts[1].hasSuffix("m") && !parts[1].contains(","), "\(parts[1])")
                    let ms = Int(parts[1].dropLast()) ?? -1
                    #expect(ms > 0 && ms <= 600_000, "grpc-timeout \(parts[1])")
                } else {
                    let ns = Int(parts[1]) ?? -1
                    #expect(ns > 0 && ns <= 600_000_000_000 && ns % 1_000_000 == 0, "timeout \(parts[1])")
                }
            }
            // the caller's own deadline field wins, sent once
            var options = client.options
            options.metadata[grpc ? "grpc-timeout" : "timeout"] = grpc ? "7S" : "7000000000"
            let reply: Reply = try await client.call("shapes", "Shapes.Echo", Greeting(name: "x"), options: options)
            #expect(reply.message == (grpc ? "-|7S|true" : "-|7000000000|true"), "\(contentType): \(reply.message)")
        }
        try await fleet.stopAll()
    }

    @Test func rawBytesAndDirectAddress() async throws {
        let fleet = Fleet()
        let service = try await fleet.start("echo") { service in
            service.handle("Echo.Bytes") { (req: [UInt8], _: Context) async throws -> [UInt8] in req.reversed() }
        }
        // by address: no registry involved (this client's registry is empty)
        let client = Client(registry: MemoryRegistry(), options: CallOptions(timeout: .hangGuard, contentType: "application/octet-stream", address: "127.0.0.1:\(service.port!)"))
        let response = try await client.call("echo", "Echo.Bytes", body: [1, 2, 3, 0, 255])
        #expect(response.body == [255, 0, 3, 2, 1])
        #expect(response.metadata["content-type"] == "application/octet-stream")
        #expect(response.node == nil)
        try await fleet.stopAll()
    }

    @Test func a503IsRetriedOnAnotherNode() async throws {
        let fleet = Fleet()
        try await fleet.start("flaky") { service in
            service.handle("Flaky.Call") { (_: Greeting, _: Context) async throws -> Reply in
                throw MicroError(id: "flaky", code: 503, detail: "overloaded")
            }
        }
        try await fleet.start("flaky") { service in
            service.handle("Flaky.Call") { (_: Greeting, _: Context) async throws -> Reply in Reply(message: "ok") }
        }
        let client = fleet.client(strategy: .roundRobin)
        for _ in 0..<20 {
            let reply: Reply = try await client.call("flaky", "Flaky.Call", Greeting(name: "x"))
            #expect(reply.message == "ok")
        }
        // without retries, the overloaded node's answer reaches the caller
        let strict = fleet.client(strategy: .roundRobin, options: CallOptions(timeout: .hangGuard, retries: 0))
        var failures = 0
        for _ in 0..<4 {
            do {
                let _: Reply = try await strict.call("flaky", "Flaky.Call", Greeting(name: "x"))
            } catch let error as MicroError {
                #expect(error.code == 503)
                failures += 1
            }
        }
        #expect(failures == 2)
        try await fleet.stopAll()
    }

    @Test func aDeadNodeInTheRegistryCostsNoCall() async throws {
        let fleet = Fleet()
        let live = try await fleet.start("greeter") { service in
            service.handle("Greeter.Hi") { (_: Greeting, _: Context) async throws -> Reply in Reply(message: "hi") }
        }
        // a node that registered and died without a word: nothing listens on its port
        let deadPort = try RefusingPort()
        var dead = try #require(live.record)
        dead.nodes = [Node(id: "greeter-dead", address: "127.0.0.1:\(deadPort.port)")]
        try await fleet.registry.register(dead, ttl: .seconds(60))
        let client = fleet.client(strategy: .roundRobin)
        for _ in 0..<20 {
            let reply: Reply = try await client.call("greeter", "Greeter.Hi", Greeting(name: "x"))
            #expect(reply.message == "hi")
        }
        withExtendedLifetime(deadPort) {}
        try await fleet.stopAll()
    }

    @Test func aBadRequestBodyIsTheCallersError() async throws {
        let fleet = Fleet()
        try await fleet.start("greeter") { service in
            service.handle("Greeter.Hi") { (_: Greeting, _: Context) async throws -> Reply in Reply(message: "hi") }
        }
        do {
            _ = try await fleet.client().call("greeter", "Greeter.Hi", body: Array("{oops".utf8))
            Issue.record("a malformed body was accepted")
        } catch let error as MicroError {
            #expect(error.code == 400)
        }
        try await fleet.stopAll()
    }
}
