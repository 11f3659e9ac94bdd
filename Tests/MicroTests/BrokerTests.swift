import Foundation
@testable import Micro
import MicroTestSupport
import Synchronization
import Testing

struct Order: Codable, Sendable, Equatable { var n: Int }

/// Messages between processes (`micro subscribe` children, a publishing client) and in-process.
@Suite struct BrokerTests {
    /// A registry directory shared by the test's publisher and its subscriber processes.
    struct Place {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("micro-broker-\(UUID().uuidString)")
        var registry: LocalRegistry { LocalRegistry(directory: directory) }
        var environment: [String: String] {
            ["MICRO_REGISTRY_ADDRESS": directory.path, "MICRO_REGISTER_TTL": "2", "MICRO_REGISTER_INTERVAL": "0.5"]
        }

        func subscriber(_ topic: String, queue: String? = nil, ttl: String = "2") async throws -> ChildService {
            let child = try await ChildService("micro", arguments: ["subscribe", topic] + (queue.map { ["--queue", $0] } ?? []),
                                               environment: environment.merging(["MICRO_REGISTER_TTL": ttl]) { $1 })
            _ = await child.waitForLine(containing: "subscribed to")
            return child
        }

        func client() -> Client { Client(registry: registry) }

        /// Stops a subscriber gracefully and returns the message lines it printed.
        func finish(_ child: ChildService) async -> [String] {
            child.signal(SIGTERM)
            #expect(await child.waitForExit() == 0)
            return child.logLines.filter { $0.hasPrefix("{") }
        }

        func cleanUp() { try? FileManager.default.removeItem(at: directory) }
    }

    static func lines(_ range: Range<Int>) -> [String] { range.map { #"{"n":\#($0)}"# } }

    @Test func aSubscriberProcessGetsEveryMessage() async throws {
        let place = Place()
        defer { place.cleanUp() }
        let subscriber = try await place.subscriber("orders")
        defer { subscriber.stop() }
        let client = place.client()
        for n in 0..<50 { try await client.publish("orders", Order(n: n), options: .init(wait: .delivered)) }
        #expect(await place.finish(subscriber) == Self.lines(0..<50))
    }

    @Test func aQueueGroupGetsEachMessageOnce() async throws {
        let place = Place()
        defer { place.cleanUp() }
        let a = try await place.subscriber("orders", queue: "workers")
        let b = try await place.subscriber("orders", queue: "workers")
        defer { a.stop(); b.stop() }
        let client = place.client()
        for n in 0..<40 { try await client.publish("orders", Order(n: n), options: .init(wait: .delivered)) }
        let seenA = await place.finish(a), seenB = await place.finish(b)
        #expect((seenA + seenB).count == 40)
        #expect(Set(seenA + seenB) == Set(Self.lines(0..<40)))
        #expect(!seenA.isEmpty && !seenB.isEmpty)  // 40 fair coin flips: all on one side is 2^-39
    }

    @Test func plainSubscribersEachGetEveryMessage() async throws {
        let place = Place()
        defer { place.cleanUp() }
        let a = try await place.subscriber("orders")
        let b = try await place.subscriber("orders")
        defer { a.stop(); b.stop() }
        let client = place.client()
        for n in 0..<20 { try await client.publish("orders", Order(n: n), options: .init(wait: .delivered)) }
        #expect(await place.finish(a) == Self.lines(0..<20))
        #expect(await place.finish(b) == Self.lines(0..<20))
    }

    @Test func nothingIsLostWhenTheSubscriberRestartsWithinTheRetryWindow() async throws {
        let place = Place()
        defer { place.cleanUp() }
        // a registration that outlives the crash (its TTL is long), so that the publisher knows the
        // subscriber group while nobody listens; its expiry is then played by the test, after the
        // restarted subscriber is up, instead of raced against a short TTL on a slow machine
        let first = try await place.subscriber("orders", ttl: "600")
        defer { first.stop() }
        let firstAddress = try #require(first.logLines.compactMap { line in line.range(of: "listening on ").map { String(line[$0.upperBound...]) } }.first)
        let client = place.client()
        try await client.publish("orders", Order(n: 0), options: .init(wait: .delivered))
        first.signal(SIGKILL)
        _ = await first.waitForExit()
        // published while nobody listens: each delivery is retried until someone takes it
        let publishing = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for n in 1...5 { group.addTask { try await client.publish("orders", Order(n: n), options: .init(wait: .delivered)) } }
                try await group.waitForAll()
            }
        }
        let second = try await place.subscriber("orders")
        defer { second.stop() }
        // the crashed node's registration expires
        for record in try await place.registry.getService(HTTPBroker.serviceName) {
            let dead = record.nodes.filter { $0.address == firstAddress }
            if !dead.isEmpty { try await place.registry.deregister(ServiceRecord(name: record.name, version: record.version, nodes: dead)) }
        }
        try await publishing.value
        #expect(Set(await place.finish(second)) == Set(Self.lines(1..<6)))
        #expect(first.logLines.filter { $0.hasPrefix("{") } == Self.lines(0..<1))
    }

    @Test func badDeliveriesGetClearErrors() async throws {
        let place = Place()
        defer { place.cleanUp() }
        let subscriber = try await place.subscriber("orders")
        defer { subscriber.stop() }
        let node = try #require(try await place.registry.getService(HTTPBroker.serviceName).first?.nodes.first)
        let url = "http://\(node.address)/?id=\(node.id)"
        func post(_ url: String, _ body: String, method: String = "POST") async throws -> (String, MicroError) {
            let out = try await Tool.run("curl", ["-s", "--http2-prior-knowledge", "-X", method, "-w", "\n%{http_code}",
                                                  "-H", "content-type: application/json", "--data-binary", body, url])
            let parts = out.stdout.split(separator: "\n", omittingEmptySubsequences: false)
            return (String(parts.last ?? ""), MicroError(parsing: parts.dropLast().joined(separator: "\n")))
        }
        let malformed = try await post(url, "{not json")
        #expect(malformed.0 == "400")
        #expect(malformed.1.detail.contains("malformed broker message"))
        let noTopic = try await post(url, #"{"Header":{},"Body":""}"#)
        #expect(noTopic.0 == "400")
        #expect(noTopic.1.detail.contains("Micro-Topic"))
        let unknown = try await post("http://\(node.address)/?id=nobody", #"{"Header":{"Micro-Topic":"orders"},"Body":""}"#)
        #expect(unknown.0 == "404")
        let get = try await post(url, "", method: "GET")
        #expect(get.0 == "405")
        // a well-formed go-micro style delivery, over HTTP/1.1 as go-micro sends it
        let body = #"{"Header":{"Micro-Topic":"orders","Content-Type":"application/json"},"Body":"eyJuIjo5OX0="}"#
        let ok = try await Tool.run("curl", ["-s", "-w", "%{http_code}", "-H", "Content-Type: application/json", "--data-binary", body, url])
        #expect(ok.stdout == "200")
        #expect(await place.finish(subscriber) == [#"{"n":99}"#])
    }

    @Test func unsubscribeRemovesTheRegistryEntry() async throws {
        let registry = MemoryRegistry()
        let broker = HTTPBroker(registry: registry)
        let subscription = try await broker.subscribe("orders", queue: "q") { _ in }
        let records = try await registry.getService(HTTPBroker.serviceName)
        #expect(records.map(\.version) == ["q"])
        // go-micro's keys, and the HTTP it serves in (go-micro publishers ignore it)
        #expect(records.first?.nodes.first?.metadata == ["broker": "http", "topic": "orders", "secure": "false", "protocols": "http/1.1,h2c"])
        await subscription.unsubscribe()
        #expect(try await registry.getService(HTTPBroker.serviceName).isEmpty)
        await broker.disconnect()
    }

    @Test func servicesSubscribeOnTheirOwnPortAndFailedHandlersGetTheMessageAgain() async throws {
        let fleet = Fleet()
        let received = Mutex<[Int]>([])
        let failedOnce = Mutex(false)
        let (done, doneContinuation) = AsyncStream<Void>.makeStream()
        // the service subscribes after its node is registered: its subscriber node is awaited
        let brokerEvents = try fleet.registry.events(service: HTTPBroker.serviceName)
        // its subscriber node lives as long as the service's (Duration.registrationGuard): with the
        // 15 s default, renewed by a task that waits its turn on a crowded pool, it has expired
        // under ThreadSanitizer before the messages were published, and they went to nobody
        let broker = HTTPBroker(registry: fleet.registry, policy: .init(registerTTL: .registrationGuard))
        let service = try await fleet.start("billing", broker: broker) { service in
            service.subscribe("orders") { (order: Order, ctx: Context) in
                #expect(ctx.metadata["Micro-Topic"] == "orders")
                #expect(ctx.metadata["x-tenant"] == "acme")
                #expect(ctx.metadata["micro-id"] != nil)
                if order.n == 3, !failedOnce.withLock({ $0 }) {
                    failedOnce.withLock { $0 = true }
                    throw MicroError.internalServerError("billing", "not now")
                }
                if received.withLock({ $0.append(order.n); return $0.count }) == 5 { doneContinuation.yield() }
            }
        }
        // the subscriber node is the service's own address
        var subscriber = try await fleet.registry.getService(HTTPBroker.serviceName).first?.nodes.first
        if subscriber == nil {
            for await event in brokerEvents where event.action == .create {
                subscriber = event.service.nodes.first
                break
            }
        }
        let node = try #require(subscriber)
        #expect(node.address == "127.0.0.1:\(service.port!)")
        let client = fleet.client()
        for n in 0..<5 { try await client.publish("orders", Order(n: n), metadata: ["x-tenant": "acme"]) }
        // a bound, not a wait: a message lost fails the test instead of hanging it
        let delivered = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await _ in done { return true }
                return false
            }
            group.addTask {
                try? await Task.sleep(for: .hangGuard)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        #expect(delivered, "not every message reached the handler: \(received.withLock { $0 })")
        #expect(received.withLock { $0 }.sorted() == [0, 1, 2, 3, 4])
        #expect(failedOnce.withLock { $0 })
        try await fleet.stopAll()
        #expect(try await fleet.registry.getService(HTTPBroker.serviceName).isEmpty)
    }

    @Test func memoryBrokerFansOutAndSharesQueues() async throws {
        let broker = MemoryBroker()
        let seen = Mutex<[String: [Int]]>([:])
        func record(_ who: String) -> @Sendable (BrokerEvent) async throws -> Void {
            { event in
                let order = try JSONDecoder().decode(Order.self, from: Data(event.message.body))
                seen.withLock { $0[who, default: []].append(order.n) }
            }
        }
        _ = try await broker.subscribe("t", queue: nil, record("plain1"))
        _ = try await broker.subscribe("t", queue: nil, record("plain2"))
        _ = try await broker.subscribe("t", queue: "g", record("g1"))
        let g2 = try await broker.subscribe("t", queue: "g", record("g2"))
        _ = try await broker.subscribe("other", queue: nil, record("other"))
        for n in 0..<4 {
            try await broker.publish("t", BrokerMessage(body: Array(#"{"n":\#(n)}"#.utf8)), options: .init())
        }
        await g2.unsubscribe()
        try await broker.publish("t", BrokerMessage(body: Array(#"{"n":4}"#.utf8)), options: .init())
        let result = seen.withLock { $0 }
        #expect(result["plain1"] == [0, 1, 2, 3, 4])
        #expect(result["plain2"] == [0, 1, 2, 3, 4])
        #expect(result["g1"] == [0, 2, 4])
        #expect(result["g2"] == [1, 3])
        #expect(result["other"] == nil)
    }

    @Test func messagesUseGoMicroJSON() throws {
        let message = BrokerMessage(header: ["Micro-Topic": "t", "Content-Type": "application/json"], body: Array("{}".utf8))
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(message)) as? [String: Any]
        #expect(json?["Body"] as? String == "e30=")
        #expect((json?["Header"] as? [String: String])?["Micro-Topic"] == "t")
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(BrokerMessage.self, from: Data(#"{"Body":"%%%"}"#.utf8)) }
    }
}
