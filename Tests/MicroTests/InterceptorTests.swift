import CounterProto
import Foundation
import Micro
import MicroTestSupport
import SwiftProtobuf
import Synchronization
import Testing

/// One interceptor model over every kind of call: unary over the micro protocol (HTTP/1.1 and
/// HTTP/2) and gRPC, the three stream kinds, broker deliveries and publishes; on both sides.
@Suite struct InterceptorTests {
    /// A value interceptors, handlers and the test share.
    final class Shared<Value: Sendable>: Sendable {
        private let value: Mutex<Value>
        init(_ value: Value) { self.value = Mutex(value) }
        func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { value.withLock { body(&$0) } }
    }

    /// Records each call it sees, on the way in and out, with what the call says it is.
    struct Recorder: ServerInterceptor, ClientInterceptor {
        let name: String
        let log: Shared<[String]>

        func intercept(_ call: ServerCall, next: (ServerCall) async throws -> ServerResult) async throws -> ServerResult {
            log.withLock { $0.append("\(name) in \(call.descriptor)") }
            defer { log.withLock { $0.append("\(name) out \(call.descriptor)") } }
            return try await next(call)
        }

        func intercept(_ call: ClientCall, next: (ClientCall) async throws -> ClientResponse) async throws -> ClientResponse {
            var call = call
            call.options.metadata["x-trace"] = (call.options.metadata["x-trace"].map { $0 + "," } ?? "") + name
            log.withLock { $0.append("\(name) \(call.descriptor)") }
            return try await next(call)
        }
    }

    /// Refuses every call whose metadata carries `x-deny`, before the handler runs.
    struct Gate: ServerInterceptor, ClientInterceptor {
        func intercept(_ call: ServerCall, next: (ServerCall) async throws -> ServerResult) async throws -> ServerResult {
            if call.context.metadata["x-deny"] != nil {
                throw MicroError(id: call.descriptor.service, code: 403, detail: "denied: \(call.descriptor.endpoint)")
            }
            return try await next(call)
        }

        func intercept(_ call: ClientCall, next: (ClientCall) async throws -> ClientResponse) async throws -> ClientResponse {
            if call.options.metadata["x-deny"] != nil {
                throw MicroError(id: "gate", code: 403, detail: "not sent: \(call.descriptor.endpoint)")
            }
            return try await next(call)
        }
    }

    /// Counts the messages each tap sees.
    struct Counting: ServerInterceptor, ClientInterceptor {
        let requests = Shared(0)
        let responses = Shared(0)

        func intercept(_ call: ServerCall, next: (ServerCall) async throws -> ServerResult) async throws -> ServerResult {
            var call = call
            call.onRequest { [requests] in requests.withLock { $0 += 1 }; return $0 }
            call.onResponse { [responses] in responses.withLock { $0 += 1 }; return $0 }
            return try await next(call)
        }

        func intercept(_ call: ClientCall, next: (ClientCall) async throws -> ClientResponse) async throws -> ClientResponse {
            var call = call
            call.onRequest { [requests] in requests.withLock { $0 += 1 }; return $0 }
            call.onResponse { [responses] in responses.withLock { $0 += 1 }; return $0 }
            return try await next(call)
        }
    }

    struct Counter: CounterHandler {
        let runs: Shared<Int>

        func ping(_ request: Counter_Note, context: Context) async throws -> Counter_Note {
            runs.withLock { $0 += 1 }
            var note = request
            note.text += " " + (context.metadata["x-trace"] ?? "-")
            return note
        }

        func count(_ request: Counter_CountRequest, responses: MessageWriter<Counter_Tick>, context: Context) async throws {
            runs.withLock { $0 += 1 }
            for n in 0..<request.count { try await responses.write(.with { $0.n = n + 1 }) }
        }

        func sum(_ requests: MessageStream<Counter_Number>, context: Context) async throws -> Counter_Total {
            runs.withLock { $0 += 1 }
            var total = Counter_Total()
            for try await number in requests {
                total.sum += number.value
                total.count += 1
            }
            return total
        }

        func echo(_ requests: MessageStream<Counter_Note>, responses: MessageWriter<Counter_Note>, context: Context) async throws {
            runs.withLock { $0 += 1 }
            for try await note in requests { try await responses.write(note) }
        }
    }

    struct Hello: Codable, Sendable { var name: String }
    struct Reply: Codable, Sendable { var message: String }

    /// A memory broker that says when a subscription is made (a service subscribes after it
    /// registered: a test waits for the subscription, not for the registry).
    struct ObservedBroker: Broker {
        let inner = MemoryBroker(attempts: 3)
        let subscribed: AsyncStream<String>
        let tell: AsyncStream<String>.Continuation

        init() { (subscribed, tell) = AsyncStream.makeStream(of: String.self) }

        func connect() async throws { try await inner.connect() }
        func disconnect() async { await inner.disconnect() }
        func publish(_ topic: String, _ message: BrokerMessage, options: PublishOptions) async throws {
            try await inner.publish(topic, message, options: options)
        }
        func subscribe(_ topic: String, queue: String?, _ handler: @escaping @Sendable (BrokerEvent) async throws -> Void) async throws -> BrokerSubscription {
            let subscription = try await inner.subscribe(topic, queue: queue, handler)
            tell.yield(topic)
            return subscription
        }
    }

    /// A running service with the counter, a JSON endpoint and a subscription on `broker`.
    final class Fixture: Sendable {
        let service: Service
        let task: Task<Void, any Error>
        let broker = ObservedBroker()
        let runs = Shared(0)
        let delivered = Shared<[String]>([])
        let deliveryAttempts = Shared(0)

        init(interceptors: [any ServerInterceptor], auth: ServiceAuth? = nil) async throws {
            let registry = MemoryRegistry()
            var options = ServiceOptions(handleSignals: false, registry: registry, registerTTL: .registrationGuard, interceptors: interceptors, broker: broker)
            options.auth = auth
            service = Service(name: "icounter", address: "127.0.0.1:0", options: options)
            service.register(Counter(runs: runs))
            // synchronous (it does not await): the hooks wrap it as they wrap the async ones
            service.handle("Greeter.Hello") { [runs] (hello: Hello, ctx: Context) throws -> Reply in
                runs.withLock { $0 += 1 }
                return Reply(message: "hello \(hello.name) \(ctx.metadata["x-trace"] ?? "-")")
            }
            service.subscribe("orders") { [delivered, deliveryAttempts] (order: Hello, ctx: Context) async throws in
                deliveryAttempts.withLock { $0 += 1 }
                if ctx.metadata["x-fail"] != nil { throw MicroError(id: "icounter", code: 500, detail: "try again") }
                delivered.withLock { $0.append(order.name + " " + (ctx.metadata["x-trace"] ?? "-")) }
            }
            let service = self.service
            task = Task { try await service.run() }
            for await topic in broker.subscribed where topic == "orders" { break }
        }

        var port: Int { service.port! }
        var address: String { "127.0.0.1:\(port)" }

        func client(_ interceptors: [any ClientInterceptor] = [], contentType: String = "application/json") -> Client {
            Client(registry: MemoryRegistry(), broker: broker,
                   options: CallOptions(timeout: .hangGuard, contentType: contentType, address: address, streamTimeout: .hangGuard),
                   interceptors: interceptors)
        }

        func stop() async throws {
            service.stop()
            try await task.value
        }
    }

    static let hello = ["-H", "content-type: application/json", "-H", "micro-endpoint: Greeter.Hello", "-d", #"{"name":"ann"}"#]

    /// Calls of every kind, each once: curl over HTTP/1.1 and HTTP/2, gRPC unary and streams and a
    /// micro-protocol stream from the Swift client, and a publish.
    static func callEveryKind(_ fixture: Fixture, client: Client? = nil) async throws {
        let url = "http://\(fixture.address)/"
        let h1 = try await Tool.run("curl", ["-sS", "--http1.1"] + hello + [url])
        #expect(h1.stdout.contains("hello ann"), "\(h1.stdout)")
        let h2 = try await Tool.run("curl", ["-sS", "--http2-prior-knowledge"] + hello + [url])
        #expect(h2.stdout.contains("hello ann"), "\(h2.stdout)")
        let grpc = CounterClient(client: client ?? fixture.client(contentType: "application/grpc"), service: "icounter",
                                 options: CallOptions(timeout: .hangGuard, contentType: "application/grpc", address: fixture.address,
                                                      streamTimeout: .hangGuard))
        #expect(try await grpc.ping(.with { $0.text = "hi" }).text.hasPrefix("hi"))
        #expect(try await grpc.count(.with { $0.count = 3 }) { ticks in try await ticks.reduce(into: [Int64]()) { $0.append($1.n) } } == [1, 2, 3])
        #expect(try await grpc.sum([1, 2, 3].map { n in Counter_Number.with { $0.value = n } }).sum == 6)
        let echoed = try await grpc.echo { call in
            for text in ["a", "b"] { try await call.send(.with { $0.text = text }) }
            call.closeSend()
            return try await call.responses.reduce(into: [String]()) { $0.append($1.text) }
        }
        #expect(echoed == ["a", "b"])
        // the micro protocol over HTTP/2, a bidirectional stream of JSON messages
        let micro = client ?? fixture.client()
        let lines = try await micro.rawStream("icounter", "Counter.Echo") { call in
            try await call.send(Array(#"{"text":"m"}"#.utf8))
            call.closeSend()
            return try await call.responses.reduce(into: [String]()) { $0.append(String(decoding: $1, as: UTF8.self)) }
        }
        #expect(lines == [#"{"text":"m"}"#])
        try await micro.publish("orders", Hello(name: "order1"))
    }

    @Test func everyKindPassesTheServerHookInOrder() async throws {
        let log = Shared<[String]>([])
        let fixture = try await Fixture(interceptors: [Recorder(name: "a", log: log), Recorder(name: "b", log: log)])
        try await Self.callEveryKind(fixture)
        try await fixture.stop()
        let entries = log.withLock { $0 }
        let expected: [String] = [
            "unary icounter Greeter.Hello over microHTTP1",
            "unary icounter Greeter.Hello over microHTTP2",
            "unary icounter Counter.Ping over grpc",
            "serverStream icounter Counter.Count over grpc",
            "clientStream icounter Counter.Sum over grpc",
            "bidiStream icounter Counter.Echo over grpc",
            "bidiStream icounter Counter.Echo over microHTTP2",
            "delivery icounter orders over broker",
        ]
        for call in expected {
            // each call passes a, then b, on the way in, and leaves through b, then a
            let seen = entries.filter { $0.hasSuffix(" " + call) }
            #expect(seen == ["a in \(call)", "b in \(call)", "b out \(call)", "a out \(call)"], "\(entries)")
        }
        #expect(entries.count == expected.count * 4, "\(entries)")
    }

    @Test func aServerRefusalReachesCurlAsMicroError() async throws {
        let fixture = try await Fixture(interceptors: [Gate()])
        let url = "http://\(fixture.address)/"
        for version in ["--http1.1", "--http2-prior-knowledge"] {
            let result = try await Tool.run("curl", ["-sS", "-D", "-", version, "-H", "x-deny: 1"] + Self.hello + [url])
            let header = result.stdout.split(separator: "\r\n").first { $0.lowercased().hasPrefix("micro-error:") }
            let json = header.map { String($0.drop { $0 != ":" }.dropFirst()).trimmingCharacters(in: .whitespaces) }
            let error = json.map(MicroError.init(parsing:))
            #expect(error?.code == 403, "\(result.stdout)")
            #expect(error?.detail == "denied: Greeter.Hello")
        }
        #expect(fixture.runs.withLock { $0 } == 0)
        try await fixture.stop()
    }

    @Test func aServerRefusalReachesGrpcioAsItsStatus() async throws {
        let fixture = try await Fixture(interceptors: [Gate()])
        let result = try await Tool.run("python3", [StreamTests.peer, "refused", fixture.address])
        #expect(result.status == 0, "\(result.stderr)")
        let report = try JSONDecoder().decode([String: StreamTests.PeerReport.Status].self, from: Data(result.stdout.utf8))
        for method in ["Ping", "Count", "Sum", "Echo"] {
            #expect(report[method] == .init(code: "PERMISSION_DENIED", details: "denied: Counter.\(method)"), "\(method): \(report)")
        }
        #expect(fixture.runs.withLock { $0 } == 0)  // no handler ran
        try await fixture.stop()
    }

    @Test func serverTapsSeeEveryMessage() async throws {
        let counting = Counting()
        let fixture = try await Fixture(interceptors: [counting])
        let grpc = CounterClient(client: fixture.client(contentType: "application/grpc"), service: "icounter",
                                 options: CallOptions(timeout: .hangGuard, contentType: "application/grpc", address: fixture.address,
                                                      streamTimeout: .hangGuard))
        let echoed = try await grpc.echo { call in
            for text in ["a", "b", "c"] { try await call.send(.with { $0.text = text }) }
            call.closeSend()
            return try await call.responses.reduce(0) { n, _ in n + 1 }
        }
        #expect(echoed == 3)
        #expect(counting.requests.withLock { $0 } == 3)
        #expect(counting.responses.withLock { $0 } == 3)
        _ = try await grpc.ping(.with { $0.text = "one" })
        #expect(counting.requests.withLock { $0 } == 4)
        #expect(counting.responses.withLock { $0 } == 4)
        try await fixture.stop()
    }

    @Test func aRefusedDeliveryIsDroppedAndAFailedOneRedelivered() async throws {
        let fixture = try await Fixture(interceptors: [Gate()])
        let client = fixture.client()
        try await client.publish("orders", Hello(name: "refused"), metadata: ["x-deny": "1"])
        #expect(fixture.deliveryAttempts.withLock { $0 } == 0)  // refused before the handler: not delivered again
        try await client.publish("orders", Hello(name: "failing"), metadata: ["x-fail": "1"])
        #expect(fixture.deliveryAttempts.withLock { $0 } == 3)  // the handler's own error: delivered again
        try await client.publish("orders", Hello(name: "fine"))
        #expect(fixture.delivered.withLock { $0 } == ["fine -"])
        try await fixture.stop()
    }

    @Test func everyKindPassesTheClientHook() async throws {
        let fixture = try await Fixture(interceptors: [])
        let log = Shared<[String]>([])
        let client = fixture.client([Recorder(name: "outer", log: log), Recorder(name: "inner", log: log)])
        let grpc = CounterClient(client: client, service: "icounter", options: CallOptions(timeout: .hangGuard, contentType: "application/grpc",
                                                                        address: fixture.address, streamTimeout: .hangGuard))
        // the handler sees what the interceptors added, in their order
        #expect(try await grpc.ping(.with { $0.text = "hi" }).text == "hi outer,inner")
        let reply: Reply = try await client.call("icounter", "Greeter.Hello", Hello(name: "bo"))
        #expect(reply.message == "hello bo outer,inner")
        _ = try await client.serverStream("icounter", "Counter.Count", Counter_CountRequestJSON(count: 2), as: TickJSON.self) { ticks in
            try await ticks.reduce(0) { n, _ in n + 1 }
        }
        _ = try await client.clientStream("icounter", "Counter.Sum", [NumberJSON(value: 1)], as: TotalJSON.self)
        _ = try await grpc.echo { call in
            call.closeSend()
            return try await call.responses.reduce(0) { n, _ in n + 1 }
        }
        try await client.publish("orders", Hello(name: "o"))
        #expect(fixture.delivered.withLock { $0 } == ["o outer,inner"])
        let expected = [
            "unary icounter /counter.Counter/Ping over grpc",
            "unary icounter Greeter.Hello over microHTTP2",
            "serverStream icounter Counter.Count over microHTTP2",
            "clientStream icounter Counter.Sum over microHTTP2",
            "bidiStream icounter /counter.Counter/Echo over grpc",
            "publish orders over broker",
        ]
        #expect(log.withLock { $0 } == expected.flatMap { ["outer \($0)", "inner \($0)"] })
        try await fixture.stop()
    }

    @Test func aClientRefusalSendsNothing() async throws {
        let log = Shared<[String]>([])
        let fixture = try await Fixture(interceptors: [Recorder(name: "server", log: log)])
        let client = fixture.client([Gate()])
        let deny = CallOptions(timeout: .hangGuard, metadata: ["x-deny": "1"], address: fixture.address)
        await #expect(throws: MicroError.self) {
            let _: Reply = try await client.call("icounter", "Greeter.Hello", Hello(name: "x"), options: deny)
        }
        await #expect(throws: MicroError.self) {
            try await client.rawStream("icounter", "Counter.Echo", options: deny) { _ in }
        }
        await #expect(throws: MicroError.self) {
            try await client.publish("orders", Hello(name: "x"), metadata: ["x-deny": "1"])
        }
        #expect(log.withLock { $0 }.isEmpty)  // nothing reached the service
        #expect(fixture.deliveryAttempts.withLock { $0 } == 0)
        try await fixture.stop()
    }

    @Test func clientTapsSeeEveryMessage() async throws {
        let fixture = try await Fixture(interceptors: [])
        let counting = Counting()
        let client = fixture.client([counting])
        let ticks = try await client.serverStream("icounter", "Counter.Count", Counter_CountRequestJSON(count: 4), as: TickJSON.self) { ticks in
            try await ticks.reduce(0) { n, _ in n + 1 }
        }
        #expect(ticks == 4)
        #expect(counting.requests.withLock { $0 } == 1)
        #expect(counting.responses.withLock { $0 } == 4)
        let _: Reply = try await client.call("icounter", "Greeter.Hello", Hello(name: "t"))
        #expect(counting.requests.withLock { $0 } == 2)
        #expect(counting.responses.withLock { $0 } == 5)
        try await fixture.stop()
    }
}

/// The counter's messages as JSON, for calls over the micro protocol.
struct Counter_CountRequestJSON: Codable, Sendable { var count: Int }
struct TickJSON: Codable, Sendable { var n: String? }
struct NumberJSON: Codable, Sendable { var value: Int }
struct TotalJSON: Codable, Sendable { var sum: String?; var count: String? }
