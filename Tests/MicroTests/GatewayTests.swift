import Foundation
import Logging
import Micro
import MicroTestSupport
import Testing

/// The HTTP gateway, called by curl over HTTP/1.1 and HTTP/2: calls by name, errors as statuses,
/// the registry, node stats, CORS, limits, server streams and events (server-sent events), and
/// `micro gateway` in front of helloworld across processes.
@Suite struct GatewayTests {
    struct Hello: Codable, Sendable { var name: String }
    struct Reply: Codable, Sendable { var message: String }
    struct Count: Codable, Sendable { var n: Int }
    struct Tick: Codable, Sendable { var i: Int }

    /// A service ("greeter": `Say.Hello`, `Say.Fail`, `Say.Headers`, the server stream
    /// `Say.Count`), its registry and broker in memory, and a gateway in front of it.
    final class Fixture: Sendable {
        let registry = MemoryRegistry()
        let broker = MemoryBroker()
        let service: Service
        let gateway: Gateway
        let task: Task<Void, any Error>

        init(_ options: Gateway.Options = .init(address: "127.0.0.1:0", callTimeout: .hangGuard, statsTimeout: .hangGuard)) async throws {
            service = Service(name: "greeter", address: "127.0.0.1:0",
                              options: ServiceOptions(handleSignals: false, registry: registry, register: false, broker: broker))
            service.handle("Say.Hello") { (hello: Hello, _: Context) async throws -> Reply in Reply(message: "Hello " + hello.name) }
            service.handle("Say.Fail") { (hello: Hello, _: Context) async throws -> Reply in
                throw MicroError.forbidden("greeter", "\(hello.name) may not")
            }
            service.handle("Say.Headers") { (_: Hello, context: Context) async throws -> [String: String] in
                var seen: [String: String] = [:]
                for key in ["Authorization", "X-Request-Id", "X-Trace-Tag", "Cookie", "User-Agent", "Sec-Fetch-Site", "Access-Control-Request-Method"] {
                    seen[key] = context.metadata[key] ?? "-"
                }
                // a request's `Timeout` (seconds) shortens the gateway's own (60 s here)
                let left = context.deadline.map { ContinuousClock.now.duration(to: $0) }
                seen["deadline"] = left.map { $0 > .zero && $0 <= .seconds(30) ? "within 30 s" : "\($0)" } ?? "none"
                return seen
            }
            service.handle("Say.Count", serverStream: { (count: Count, out: MessageWriter<Tick>, _: Context) in
                guard count.n >= 0 else { throw MicroError.badRequest("greeter", "n must not be negative") }
                for i in 0..<count.n { try await out.write(Tick(i: i)) }
            })
            try service.start()
            try await registry.register(service.record!, ttl: .seconds(600))
            let service = self.service
            task = Task { try await service.run() }
            let client = Client(registry: registry, broker: broker, options: CallOptions(timeout: .hangGuard), tracer: nil)
            gateway = Gateway(client: client, subscriber: broker, options: options)
            try gateway.start()
        }

        var url: String { "http://127.0.0.1:\(gateway.port!)" }

        func stop() async throws {
            await gateway.shutdown()
            service.stop()
            try await task.value
        }
    }

    struct Answer {
        var status: Int
        var body: String
        var headers: [String: String]
    }

    /// curl's answer: status, body and headers (names in lower case).
    static func curl(_ arguments: [String], http2: Bool = false) async throws -> Answer {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gw-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let head = dir.appendingPathComponent("head").path
        let result = try await Tool.run("curl", ["-sS", http2 ? "--http2-prior-knowledge" : "--http1.1", "-D", head, "-w", "\n%{http_code}",
                                                 "--max-time", "60"] + arguments)
        guard result.status == 0 else { throw ChildError("curl \(arguments): \(result.stderr)") }
        var lines = result.stdout.components(separatedBy: "\n")
        let status = Int(lines.removeLast()) ?? 0
        var headers: [String: String] = [:]
        for line in (try? String(contentsOfFile: head, encoding: .utf8))?.components(separatedBy: "\r\n") ?? [] {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return Answer(status: status, body: lines.joined(separator: "\n"), headers: headers)
    }

    static func post(_ url: String, _ body: String, headers: [String] = [], http2: Bool = false) async throws -> Answer {
        try await curl(["-X", "POST", "-H", "content-type: application/json"] + headers.flatMap { ["-H", $0] } + ["-d", body, url], http2: http2)
    }

    static func error(_ answer: Answer) throws -> MicroError {
        try JSONDecoder().decode(MicroError.self, from: Data(answer.body.utf8))
    }

    @Test(arguments: [false, true])
    func callsByNameAndErrorsAsStatuses(http2: Bool) async throws {
        let fixture = try await Fixture()
        let hello = try await Self.post(fixture.url + "/api/greeter/Say.Hello", #"{"name":"alice"}"#, http2: http2)
        #expect(hello.status == 200)
        #expect(hello.headers["content-type"] == "application/json")
        #expect(try JSONDecoder().decode(Reply.self, from: Data(hello.body.utf8)).message == "Hello alice")
        // go-micro's other route: /api/{service}/{Handler}/{Method}
        let split = try await Self.post(fixture.url + "/api/greeter/Say/Hello", #"{"name":"bob"}"#, http2: http2)
        #expect(split.body.contains("Hello bob"))

        let refused = try await Self.post(fixture.url + "/api/greeter/Say.Fail", #"{"name":"carol"}"#, http2: http2)
        #expect(refused.status == 403)
        #expect(try Self.error(refused) == MicroError(id: "greeter", code: 403, detail: "carol may not"))
        let noService = try await Self.post(fixture.url + "/api/nobody/Say.Hello", "{}", http2: http2)
        #expect(noService.status == 404)
        #expect(try Self.error(noService).detail == "service nobody not found")
        let noEndpoint = try await Self.post(fixture.url + "/api/greeter/Say.Nothing", "{}", http2: http2)
        #expect(noEndpoint.status == 404)
        #expect(try Self.error(noEndpoint).detail.contains("Say.Nothing"))
        let badJSON = try await Self.post(fixture.url + "/api/greeter/Say.Hello", #"{"name":"#, http2: http2)
        #expect(badJSON.status == 400, "\(badJSON.body)")
        let badName = try await Self.post(fixture.url + "/api/gree%20ter/Say.Hello", "{}", http2: http2)
        #expect(badName.status == 400)
        let notAnEndpoint = try await Self.post(fixture.url + "/api/greeter/Hello", "{}", http2: http2)
        #expect(notAnEndpoint.status == 400)
        let get = try await Self.curl([fixture.url + "/api/greeter/Say.Hello"], http2: http2)
        #expect(get.status == 405 && get.headers["allow"] == "POST")
        let xml = try await Self.curl(["-X", "POST", "-H", "content-type: application/xml", "-d", "<a/>", fixture.url + "/api/greeter/Say.Hello"], http2: http2)
        #expect(xml.status == 415)
        let nowhere = try await Self.curl([fixture.url + "/nowhere"], http2: http2)
        #expect(nowhere.status == 404)
        try await fixture.stop()
    }

    /// The caller's token (and its other headers, named as Go writes them whatever their case)
    /// reach the service as metadata; its cookies and the headers of the HTTP exchange itself do
    /// not, on the first call of a path and on the calls after it.
    @Test(arguments: [false, true])
    func headersTravelAsMetadataButCookiesDoNot(http2: Bool) async throws {
        let fixture = try await Fixture()
        for round in 0..<2 {
            let answer = try await Self.post(fixture.url + "/api/greeter/Say.Headers", #"{"name":"h"}"#,
                                             headers: ["Authorization: Bearer abc.def", "X-Request-Id: r-\(round)", "x-TRACE-tag: t\(round)",
                                                       "Cookie: session=secret", "SEC-Fetch-Site: none", "Access-Control-Request-Method: POST",
                                                       "Timeout: 30"], http2: http2)
            try #require(answer.status == 200, "\(answer.body)")
            let seen = try JSONDecoder().decode([String: String].self, from: Data(answer.body.utf8))
            #expect(seen == ["Authorization": "Bearer abc.def", "X-Request-Id": "r-\(round)", "X-Trace-Tag": "t\(round)", "Cookie": "-",
                             "User-Agent": "-", "Sec-Fetch-Site": "-", "Access-Control-Request-Method": "-", "deadline": "within 30 s"])
        }
        try await fixture.stop()
    }

    @Test func aBodyOverTheLimitIsRefused() async throws {
        let fixture = try await Fixture(.init(address: "127.0.0.1:0", maxBodyBytes: 1000, callTimeout: .hangGuard))
        let big = #"{"name":""# + String(repeating: "x", count: 2000) + #""}"#
        for http2 in [false, true] {
            let answer = try await Self.post(fixture.url + "/api/greeter/Say.Hello", big, http2: http2)
            #expect(answer.status == 413, "\(answer.body)")
        }
        let fits = try await Self.post(fixture.url + "/api/greeter/Say.Hello", #"{"name":"small"}"#)
        #expect(fits.status == 200)
        try await fixture.stop()
    }

    @Test func theRegistryAndEachNodesHealthAndStats() async throws {
        let fixture = try await Fixture()
        _ = try await Self.post(fixture.url + "/api/greeter/Say.Hello", #"{"name":"a"}"#)
        let list = try await Self.curl([fixture.url + "/services"])
        #expect(list.status == 200)
        #expect(list.body == #"[{"name":"greeter","version":"latest"}]"#)
        let described = try await Self.curl([fixture.url + "/services/greeter"])
        let records = try JSONDecoder().decode([ServiceRecord].self, from: Data(described.body.utf8))
        #expect(records.count == 1 && records[0].nodes.count == 1)
        #expect(Set(records[0].endpoints.map(\.name)).isSuperset(of: ["Say.Hello", "Say.Count", "Debug.Stats"]))
        #expect(try await Self.curl([fixture.url + "/services/nobody"]).status == 404)

        struct NodeStats: Decodable {
            var id: String
            var health: String?
            var stats: Debug.Stats?
            var error: String?
        }
        let stats = try await Self.curl([fixture.url + "/stats/greeter"])
        let nodes = try JSONDecoder().decode([NodeStats].self, from: Data(stats.body.utf8))
        #expect(nodes.count == 1)
        #expect(nodes.first?.id == records[0].nodes[0].id)
        #expect(nodes.first?.health == "ok", "\(stats.body)")
        #expect((nodes.first?.stats?.requests ?? 0) >= 1)
        try await fixture.stop()
    }

    @Test func corsForTheOriginsAllowed() async throws {
        let open = try await Fixture()
        let preflight = try await Self.curl(["-X", "OPTIONS", "-H", "Origin: https://app.example", "-H", "Access-Control-Request-Method: POST",
                                             "-H", "Access-Control-Request-Headers: authorization, content-type", open.url + "/api/greeter/Say.Hello"])
        #expect(preflight.status == 204)
        #expect(preflight.headers["access-control-allow-origin"] == "*")
        #expect(preflight.headers["access-control-allow-methods"]?.contains("POST") == true)
        #expect(preflight.headers["access-control-allow-headers"] == "authorization, content-type")
        let call = try await Self.post(open.url + "/api/greeter/Say.Hello", #"{"name":"x"}"#, headers: ["Origin: https://app.example"])
        #expect(call.headers["access-control-allow-origin"] == "*")
        try await open.stop()

        let strict = try await Fixture(.init(address: "127.0.0.1:0", allowedOrigins: ["https://app.example"], callTimeout: .hangGuard))
        let allowed = try await Self.post(strict.url + "/api/greeter/Say.Hello", #"{"name":"x"}"#, headers: ["Origin: https://app.example"])
        #expect(allowed.headers["access-control-allow-origin"] == "https://app.example")
        #expect(allowed.headers["vary"] == "Origin")
        let other = try await Self.post(strict.url + "/api/greeter/Say.Hello", #"{"name":"x"}"#, headers: ["Origin: https://evil.example"])
        #expect(other.status == 200 && other.headers["access-control-allow-origin"] == nil)
        let otherPreflight = try await Self.curl(["-X", "OPTIONS", "-H", "Origin: https://evil.example", "-H", "Access-Control-Request-Method: POST",
                                                  strict.url + "/api/greeter/Say.Hello"])
        #expect(otherPreflight.status == 204 && otherPreflight.headers["access-control-allow-methods"] == nil)
        try await strict.stop()
    }

    /// A server stream as server-sent events, over HTTP/1.1 (chunked) and HTTP/2, asked as a
    /// browser's EventSource asks (GET, the request in the query) and with a POSTed body.
    @Test(arguments: [false, true])
    func aServerStreamAsEvents(http2: Bool) async throws {
        let fixture = try await Fixture()
        let get = try await Self.curl(["-N", "-H", "Accept: text/event-stream",
                                       fixture.url + "/api/greeter/Say.Count?request=%7B%22n%22%3A3%7D"], http2: http2)
        #expect(get.status == 200)
        #expect(get.headers["content-type"] == "text/event-stream; charset=utf-8")
        #expect(get.body == "data: {\"i\":0}\n\ndata: {\"i\":1}\n\ndata: {\"i\":2}\n\nevent: end\ndata: {}\n\n")
        let post = try await Self.post(fixture.url + "/api/greeter/Say.Count", #"{"n":2}"#, headers: ["Accept: text/event-stream"], http2: http2)
        #expect(post.body == "data: {\"i\":0}\n\ndata: {\"i\":1}\n\nevent: end\ndata: {}\n\n")
        let failed = try await Self.post(fixture.url + "/api/greeter/Say.Count", #"{"n":-1}"#, headers: ["Accept: text/event-stream"], http2: http2)
        #expect(failed.body.hasPrefix("event: error\ndata: "), "\(failed.body)")
        #expect(failed.body.contains("n must not be negative"))
        let missing = try await Self.curl(["-H", "Accept: text/event-stream", fixture.url + "/api/greeter/Say.Nothing"], http2: http2)
        #expect(missing.body.contains("event: error") && missing.body.contains("not found"))
        try await fixture.stop()
    }

    /// Registry changes and a topic's messages as events: each stream says `ready` once its
    /// watch is in place; what happens after reaches it. Stopping the gateway ends open streams.
    @Test func registryChangesAndTopicsAsEvents() async throws {
        let fixture = try await Fixture()
        let registryEvents = try LineProcess(["curl", "-sSN", "--http1.1", "--max-time", "120", fixture.url + "/events/registry"])
        #expect(await registryEvents.waitForLine(containing: "event: ready", within: .hangGuard) != nil)
        let other = ServiceRecord(name: "newcomer", version: "1.0", metadata: [:], endpoints: [],
                                  nodes: [Node(id: "newcomer-1", address: "127.0.0.1:1", metadata: [:])])
        try await fixture.registry.register(other, ttl: .seconds(600))
        let created = await registryEvents.waitForLine(within: .hangGuard) { $0.contains("\"newcomer\"") }
        #expect(created?.contains(#""action":"create""#) == true, "\(created ?? "nothing")")

        let topic = try LineProcess(["curl", "-sSN", "--http2-prior-knowledge", "--max-time", "120", fixture.url + "/events/topic/news.today"])
        #expect(await topic.waitForLine(containing: "event: ready", within: .hangGuard) != nil)
        let published = try await Self.post(fixture.url + "/publish/news.today", #"{"headline":"gateway"}"#, headers: ["x-trace: t1"], http2: true)
        #expect(published.status == 200 && published.body == "{}")
        let message = await topic.waitForLine(within: .hangGuard) { $0.hasPrefix("data: ") && $0.contains("headline") }
        let data = try #require(message.map { Data($0.dropFirst(6).utf8) })
        struct Seen: Decodable {
            var topic: String
            var header: [String: String]
            var body: String
        }
        let seen = try JSONDecoder().decode(Seen.self, from: data)
        #expect(seen.topic == "news.today" && seen.body == #"{"headline":"gateway"}"#)
        #expect(seen.header["X-Trace"] == "t1")

        // stopping ends both streams: curl sees their orderly end
        try await fixture.stop()
        #expect(registryEvents.reap() == 0)
        #expect(topic.reap() == 0)
    }

    /// TLS: HTTP/2 by ALPN for a client that offers it, HTTP/1.1 for one that does not; no
    /// client certificate asked.
    @Test func tlsWithHTTP2AndHTTP1() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gw-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let files = try await TestCertificates.make(in: dir)
        let tls = TLSConfig(certificate: .file(files["server.crt"]!), privateKey: .file(files["server.key"]!), clientAuth: .none, minimumVersion: .tls12)
        let fixture = try await Fixture(.init(address: "127.0.0.1:0", tls: tls, callTimeout: .hangGuard))
        for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
            let result = try await Tool.run("curl", ["-sS", flag, "--cacert", files["ca.crt"]!, "-w", "\n%{http_version}", "-H", "content-type: application/json",
                                                     "-d", #"{"name":"tls"}"#, "https://127.0.0.1:\(fixture.gateway.port!)/api/greeter/Say.Hello"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.stdout == "{\"message\":\"Hello tls\"}\n\(version)", "\(result.stdout)")
        }
        try await fixture.stop()
    }

    /// `micro gateway` in front of the helloworld process, both on a registry directory: a call
    /// by name, the dashboard's page, and a topic watched through the gateway's own HTTP broker
    /// while `micro publish` publishes to it from a third process.
    @Test func microGatewayInFrontOfHelloworld() async throws {
        let registry = FileManager.default.temporaryDirectory.appendingPathComponent("gw-registry-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: registry) }
        let environment = ["MICRO_REGISTRY_ADDRESS": registry]
        let helloworld = try await ChildService("helloworld", environment: environment)
        defer { helloworld.stop() }
        #expect(await helloworld.waitForLine(containing: "registered node", within: .hangGuard) != nil)
        let gateway = try await ChildService("micro", arguments: ["gateway", "--address", "127.0.0.1:0", "--timeout", "60"], environment: environment)
        defer { gateway.stop() }
        let url = "http://127.0.0.1:\(gateway.port)"
        let hello = try await Self.post(url + "/api/helloworld/Helloworld.Greeting", #"{"name":"gateway"}"#)
        #expect(hello.status == 200 && hello.body.contains("Hello gateway"), "\(hello.body)")
        let page = try await Self.curl([url + "/"])
        #expect(page.status == 200 && page.headers["content-type"] == "text/html; charset=utf-8")
        #expect(page.body.contains("dashboard.js"))

        let topic = try LineProcess(["curl", "-sSN", "--http1.1", "--max-time", "120", url + "/events/topic/gw.news"])
        #expect(await topic.waitForLine(containing: "event: ready", within: .hangGuard) != nil)
        let published = try await Tool.run(Tool.binDirectory.appendingPathComponent("micro").path, ["publish", "gw.news", #"{"n":1}"#],
                                           environment: environment)
        #expect(published.status == 0, "\(published.stderr)")
        let message = await topic.waitForLine(within: .hangGuard) { $0.contains("gw.news") && $0.contains("data: ") }
        #expect(message?.contains(#"\"n\":1"#) == true || message?.contains(#"{\"n\":1}"#) == true, "\(message ?? "nothing")")
        gateway.signal(SIGTERM)
        #expect(await gateway.waitForExit() == 0)
        #expect(topic.reap() == 0)
    }

    static let browser = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Peers/dashboard_browser.py").path

    /// The dashboard in a real browser (Debian's chromium through chromium-driver and selenium):
    /// the service listed, a healthy node, a call through the form (and invalid JSON refused
    /// before sending), a server stream through the stream button, and a topic watched while
    /// publishing to it; a screenshot of each page, checked to be no blank page.
    @Test func theDashboardInARealBrowser() async throws {
        let fixture = try await Fixture()
        let shots = FileManager.default.temporaryDirectory.appendingPathComponent("gw-shots-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: shots, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: shots) }
        let result = try await Tool.run("python3", [Self.browser, "--url", fixture.url, "--service", "greeter", "--endpoint", "Say.Hello",
                                                    "--request", #"{"name":"browser"}"#, "--expect", "Hello browser", "--topic", "dashboard.events",
                                                    "--screenshots", shots.path, "--stream-endpoint", "Say.Count",
                                                    "--stream-request", #"{"n":3}"#, "--stream-expect", "3"], timeout: .seconds(600))
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        for page in ["services", "service", "events", "stream"] {
            #expect(FileManager.default.fileExists(atPath: shots.appendingPathComponent("\(page).png").path), "\(page).png")
        }
        try await fixture.stop()
    }
}
