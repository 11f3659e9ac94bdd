import CounterProto
import Foundation
@testable import Micro
import MicroTestSupport
import SwiftProtobuf
import Synchronization
import Testing

/// Auth on every call: tokens (JWT), rules in the store, mutual-TLS identities; checked with
/// curl, grpcio and the Swift client against a running service.
@Suite struct AuthTests {
    typealias Fixture = InterceptorTests.Fixture
    typealias Hello = InterceptorTests.Hello
    typealias Reply = InterceptorTests.Reply

    static let signer = try! SigningKey.generate(.rsa)
    static let auth = try! JWTAuth(publicKeys: [], privateKey: signer)

    /// A service whose rules live in `store` (fresh: seeded with the default rule unless `rules`
    /// are written first).
    static func fixture(rules: [Rule] = [], store: any Store = MemoryStore(), keys: [SigningKey]? = nil) async throws -> (Fixture, AuthRules) {
        let auth = try keys.map { try JWTAuth(publicKeys: $0) } ?? Self.auth
        let book = AuthRules(store: store, refreshInterval: .milliseconds(50))
        for rule in rules { try await book.create(rule) }
        return (try await Fixture(interceptors: [], auth: ServiceAuth(auth: auth, rules: book)), book)
    }

    static func token(_ id: String = "alice", scopes: [String] = [], signedBy auth: JWTAuth = AuthTests.auth,
                      expiry: Duration = .seconds(600), now: Date = Date(), metadata: [String: String] = [:]) throws -> String {
        try auth.sign(Account(id: id, scopes: scopes, metadata: metadata), expiry: expiry, now: now)
    }

    /// The Micro-Error of Greeter.Hello called by curl with `token` (nil: no Authorization;
    /// `authorization` replaces the whole value), nil if it succeeded.
    static func curl(_ fixture: Fixture, token: String?, authorization: String? = nil, http2: Bool) async throws -> MicroError? {
        var arguments = ["-sS", "-o", "/dev/null", "-D", "-", http2 ? "--http2-prior-knowledge" : "--http1.1"] + InterceptorTests.hello
        if let value = authorization ?? token.map({ "Bearer \($0)" }) { arguments += ["-H", "Authorization: \(value)"] }
        let result = try await Tool.run("curl", arguments + ["http://\(fixture.address)/"])
        let lines = result.stdout.split(separator: "\r\n")
        #expect(lines.first?.hasPrefix("HTTP/") == true, "\(result.stdout) \(result.stderr)")
        let header = lines.first { $0.lowercased().hasPrefix("micro-error:") }
        return header.map { MicroError(parsing: String($0.drop { $0 != ":" }.dropFirst()).trimmingCharacters(in: .whitespaces)) }
    }

    /// grpcio's status of each counter method with `token`.
    static func grpcio(_ fixture: Fixture, token: String?) async throws -> [String: StreamTests.PeerReport.Status] {
        let result = try await Tool.run("python3", [StreamTests.peer, "with", fixture.address] + (token.map { ["authorization=Bearer \($0)"] } ?? []))
        #expect(result.status == 0, "\(result.stderr)")
        return try JSONDecoder().decode([String: StreamTests.PeerReport.Status].self, from: Data(result.stdout.utf8))
    }

    /// The token with its signature replaced by `other`'s.
    static func resigned(_ token: String, with other: String) -> String {
        token.split(separator: ".").prefix(2).joined(separator: ".") + "." + other.split(separator: ".")[2]
    }

    @Test func everyBadTokenIs401AndAGoodOnePasses() async throws {
        let (fixture, rules) = try await Self.fixture()
        let good = try Self.token()
        let stranger = try JWTAuth(publicKeys: [], privateKey: try SigningKey.generate(.p256))
        let header = Base64URL.encode(Array(#"{"alg":"none","typ":"JWT"}"#.utf8))
        let claims = good.split(separator: ".")[1]
        // HS256 with the public key's PEM as the secret: the classic confusion attack
        let hmac = try await Tool.run("python3", ["-c", """
            import base64, hmac, hashlib, sys
            b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
            signing = b(b'{"alg":"HS256","typ":"JWT"}') + "." + sys.argv[2]
            print(signing + "." + b(hmac.new(sys.argv[1].encode(), signing.encode(), hashlib.sha256).digest()))
            """, Self.signer.publicPEM, String(claims)])
        let bad: [(String, String?, String)] = [
            ("not bearer", "Basic YWxpY2U6c2VjcmV0", "not 'Bearer TOKEN'"),
            ("no token", nil, "needs a token"),
            ("expired", try Self.token(expiry: .seconds(60), now: Date(timeIntervalSinceNow: -3600)), "expired"),
            ("wrong signature", Self.resigned(good, with: try Self.token(signedBy: stranger)), "bad signature"),
            ("unknown key", try Self.token(signedBy: stranger), "unknown key"),
            ("alg none", header + "." + claims + ".", "unsigned"),
            ("HS256", hmac.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "HS256"),
            ("other issuer", try Self.token(signedBy: try JWTAuth(publicKeys: [], privateKey: Self.signer, issuer: "elsewhere")), "issued by 'elsewhere'"),
            ("over 8 KiB", try Self.token(metadata: ["pad": String(repeating: "x", count: 9000)]), "longer than 8192"),
            ("broken base64", "ab$c.de!f.gh*i", "base64url"),
            ("two parts", "abc.def", "three"),
        ]
        for http2 in [false, true] {
            for (name, token, why) in bad {
                let error = name == "not bearer"
                    ? try await Self.curl(fixture, token: nil, authorization: token, http2: http2)
                    : try await Self.curl(fixture, token: token, http2: http2)
                #expect(error?.code == 401 && error?.status == "Unauthorized" && error?.id == "icounter", "\(name): \(String(describing: error))")
                #expect(error?.detail.contains(why) == true, "\(name): \(String(describing: error?.detail))")
            }
            #expect(try await Self.curl(fixture, token: good, http2: http2) == nil)
        }
        #expect(fixture.runs.withLock { $0 } == 2)  // no refused call reached the handler
        // grpcio: every kind of call
        for (method, status) in try await Self.grpcio(fixture, token: nil) {
            #expect(status.code == "UNAUTHENTICATED", "\(method): \(status)")
        }
        for (method, status) in try await Self.grpcio(fixture, token: try Self.token(scopes: ["x"])) {
            #expect(status.code == "OK", "\(method): \(status)")
        }
        for (method, status) in try await Self.grpcio(fixture, token: try Self.token(expiry: .seconds(1), now: Date(timeIntervalSinceNow: -60))) {
            #expect(status.code == "UNAUTHENTICATED" && status.details.contains("expired"), "\(method): \(status)")
        }
        try await fixture.stop()
        rules.stop()
    }

    @Test func rulesRefuseAndAllowStreamsAndChangesReachARunningService() async throws {
        let store = MemoryStore()
        let (fixture, rules) = try await Self.fixture(rules: [
            Rule(id: "readers-count", scope: "reader", resource: Resource(type: "service", name: "icounter", endpoint: "Counter.Count")),
            Rule(id: "hello-public", scope: "", resource: Resource(type: "service", name: "icounter", endpoint: "Greeter.Hello")),
            Rule(id: "no-echo-for-bob", scope: "*", resource: Resource(type: "service", name: "*", endpoint: "Counter.Echo"), access: .denied, priority: 10),
        ], store: store)
        let reader = try Self.token("bob", scopes: ["reader"])
        let seen = try await Self.grpcio(fixture, token: reader)
        #expect(seen["Count"]?.code == "OK", "\(seen)")  // a server stream, granted by scope
        #expect(seen["Echo"] == .init(code: "PERMISSION_DENIED", details: "bob may not call service:icounter:Counter.Echo"), "\(seen)")
        #expect(seen["Ping"]?.code == "PERMISSION_DENIED", "\(seen)")  // no rule: denied
        // public: no token needed
        #expect(try await Self.curl(fixture, token: nil, http2: true) == nil)
        // the Swift client, its token from a TokenSource
        let client = Client(registry: MemoryRegistry(), broker: fixture.broker,
                            options: CallOptions(timeout: .hangGuard, contentType: "application/grpc", address: fixture.address, streamTimeout: .hangGuard),
                            interceptors: [AuthClientInterceptor(tokens: TokenSource(signing: Account(id: "bob", scopes: ["reader"]), with: Self.auth))])
        let grpc = CounterClient(client: client, service: "icounter",
                                 options: CallOptions(timeout: .hangGuard, contentType: "application/grpc", address: fixture.address, streamTimeout: .hangGuard))
        #expect(try await grpc.count(.with { $0.count = 2 }) { ticks in try await ticks.reduce(0) { n, _ in n + 1 } } == 2)
        let echo = { () async throws -> Int in
            try await grpc.echo { call in
                try await call.send(.with { $0.text = "a" })
                call.closeSend()
                return try await call.responses.reduce(0) { n, _ in n + 1 }
            }
        }
        let refused = await #expect(throws: MicroError.self) { _ = try await echo() }
        #expect(refused?.code == 403)
        // a rule changed in the store (as `micro auth rules` does) reaches the running service
        try await AuthRules(store: store).delete("no-echo-for-bob")
        try await AuthRules(store: store).create(Rule(id: "echo", scope: "reader", resource: Resource(type: "service", name: "icounter", endpoint: "Counter.*")))
        var answered = 0
        while answered == 0 {
            // the service re-reads its rules every 50 ms here: what is awaited is the change
            do { answered = try await echo() } catch let error as MicroError where error.code == 403 { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(answered == 1)
        #expect(try await Self.grpcio(fixture, token: reader)["Ping"]?.code == "OK")
        try await fixture.stop()
        rules.stop()
    }

    @Test func aSubscriberRefusesAnUnauthorisedPublisher() async throws {
        let (fixture, rules) = try await Self.fixture(rules: [
            Rule(id: "publishers", scope: "publisher", resource: Resource(type: "topic", name: "orders", endpoint: "*")),
        ])
        func client(_ token: String?) -> Client {
            Client(registry: MemoryRegistry(), broker: fixture.broker, options: CallOptions(timeout: .hangGuard, address: fixture.address),
                   interceptors: [AuthClientInterceptor(tokens: TokenSource(token: token))])
        }
        try await client(nil).publish("orders", Hello(name: "anonymous"))
        try await client(try Self.token("mallory", scopes: ["reader"])).publish("orders", Hello(name: "mallory"))
        try await client(try Self.token("pat", scopes: ["publisher"])).publish("orders", Hello(name: "pat"))
        #expect(fixture.delivered.withLock { $0 } == ["pat -"])
        #expect(fixture.deliveryAttempts.withLock { $0 } == 1)  // the refused ones never reached the handler
        try await fixture.stop()
        rules.stop()
    }

    @Test func aSigningKeyRotatesWithNoFailedCall() async throws {
        let old = Self.signer, new = try SigningKey.generate(.p256)
        // step 1 of a rotation: every service verifies with both public keys
        let (fixture, rules) = try await Self.fixture(keys: [try SigningKey(pem: old.publicPEM), try SigningKey(pem: new.publicPEM)])
        let signers = [Self.auth, try JWTAuth(publicKeys: [], privateKey: new)]
        let current = InterceptorTests.Shared(0)
        struct Rotating: ClientInterceptor {
            let signers: [JWTAuth]
            let current: @Sendable () -> Int
            func intercept(_ call: ClientCall, next: (ClientCall) async throws -> ClientResponse) async throws -> ClientResponse {
                var call = call
                call.options.metadata["Authorization"] = "Bearer " + (try signers[current()].sign(Account(id: "svc", type: "service"), expiry: .seconds(60)))
                return try await next(call)
            }
        }
        let client = Client(registry: MemoryRegistry(), options: CallOptions(timeout: .hangGuard, address: fixture.address),
                            interceptors: [Rotating(signers: signers, current: { current.withLock { $0 } })])
        // step 2, in the middle of the calls: sign with the new key
        let failures = try await withThrowingTaskGroup(of: Int.self) { group in
            for worker in 0..<4 {
                group.addTask {
                    var failed = 0
                    for i in 0..<50 {
                        if worker == 0 && i == 25 { current.withLock { $0 = 1 } }
                        do {
                            let _: Reply = try await client.call("icounter", "Greeter.Hello", Hello(name: "r"))
                        } catch {
                            failed += 1
                        }
                    }
                    return failed
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(failures == 0)
        #expect(current.withLock { $0 } == 1)
        // a key no service knows is refused
        let unknown = try JWTAuth(publicKeys: [], privateKey: try SigningKey.generate(.ed25519))
        #expect(try await Self.curl(fixture, token: try Self.token(signedBy: unknown), http2: true)?.code == 401)
        try await fixture.stop()
        rules.stop()
    }

    @Test func anMTLSCallerIsAllowedByItsSPIFFEIDAlone() async throws {
        let fx = try TLSFixture()
        defer { fx.remove() }
        let store = MemoryStore()
        let book = AuthRules(store: store, refreshInterval: .milliseconds(50))
        try await book.create(Rule(id: "caller", scope: "spiffe://micro.local/service/caller", resource: Resource(type: "service", name: "whoami", endpoint: "*")))
        let registry = MemoryRegistry()
        let server = try fx.certs.issue(service: "whoami")
        var options = ServiceOptions(handleSignals: false, registry: registry, registerTTL: .registrationGuard, tls: server.tlsConfig())
        options.auth = ServiceAuth(auth: Self.auth, rules: book)
        let service = Service(name: "whoami", address: "127.0.0.1:0", options: options)
        service.handle("Whoami.Get") { (_: TLSName, ctx: Context) async throws -> TLSGreeting in
            TLSGreeting(message: ctx.peer.identity ?? "(none)")
        }
        let events = try registry.events(service: "whoami")
        let task = Task { try await service.run() }
        for await event in events where event.action == .create { break }
        let caller = Client(registry: registry, options: CallOptions(timeout: .hangGuard), tls: try fx.certs.issue(service: "caller").tlsConfig())
        let reply: TLSGreeting = try await caller.call("whoami", "Whoami.Get", TLSName(name: ""))
        #expect(reply.message == "spiffe://micro.local/service/caller")
        let other = Client(registry: registry, options: CallOptions(timeout: .hangGuard), tls: try fx.certs.issue(service: "other").tlsConfig())
        let refused = await #expect(throws: MicroError.self) { let _: TLSGreeting = try await other.call("whoami", "Whoami.Get", TLSName(name: "")) }
        #expect(refused?.code == 403 && refused?.detail == "spiffe://micro.local/service/other may not call service:whoami:Whoami.Get", "\(String(describing: refused))")
        service.stop()
        try await task.value
    }

    @Test func theToolsKeysTokensAndRulesReachAServiceInAnotherProcess() async throws {
        let micro = Tool.binDirectory.appendingPathComponent("micro").path
        let keys = try await Tool.run(micro, ["auth", "keys"])
        #expect(keys.status == 0, "\(keys.stderr)")
        var env = [String: String]()
        for line in keys.stdout.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            env[String(parts[0])] = String(parts[1])
        }
        #expect(env.keys.sorted() == ["MICRO_AUTH_PRIVATE_KEY", "MICRO_AUTH_PUBLIC_KEY"])
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("micro-auth-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        env["MICRO_AUTH"] = "jwt"
        env["MICRO_STORE"] = "sqlite"
        env["MICRO_STORE_ADDRESS"] = dir.path
        func tool(_ arguments: [String], _ extra: [String: String] = [:]) async throws -> ToolResult {
            try await Tool.run(micro, arguments, environment: env.merging(extra) { $1 })
        }
        // the rules, written before the service starts: writers write, anyone reads
        #expect(try await tool(["auth", "rules", "create", "writers", "--resource", "service:notes:Notes.Write", "--scope", "writer"]).status == 0)
        #expect(try await tool(["auth", "rules", "create", "readers", "--resource", "service:notes:Notes.Read", "--scope", ""]).status == 0)
        let bad = try await tool(["auth", "rules", "create", "x", "--resource", "service:notes", "--scope", "a"])
        #expect(bad.status != 0 && bad.stderr.contains("TYPE:NAME:ENDPOINT"), "\(bad.stderr)")
        let notes = try await ChildService("notes", environment: env)
        defer { notes.stop() }
        _ = await notes.waitForLine(containing: "registered node")
        let writer = try await tool(["auth", "token", "ann", "--scopes", "writer", "--expiry", "10m"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let inspected = try await tool(["auth", "inspect", writer])
        #expect(inspected.status == 0 && inspected.stdout.contains(#""id" : "ann""#) && inspected.stdout.contains("writer"), "\(inspected.stdout)")
        let forged = try await Tool.run(micro, ["auth", "inspect", writer], environment: try await Self.otherKeys(micro))
        #expect(forged.status == 1 && forged.stderr.contains("unknown key"), "\(forged.stderr)")
        let address = "127.0.0.1:\(notes.port)"
        let write = ["call", "--address", address, "notes", "Notes.Write", #"{"id":"n1","text":"hi"}"#]
        let anonymous = try await tool(write)
        #expect(anonymous.status == 1 && anonymous.stderr.contains("401"), "\(anonymous.stderr)")
        let allowed = try await tool(write + ["--token", writer])
        #expect(allowed.status == 0 && allowed.stdout.contains(#""version":1"#), "\(allowed.stdout) \(allowed.stderr)")
        #expect(try await tool(write, ["MICRO_AUTH_TOKEN": writer]).status == 0)  // the token from the environment
        let read = try await tool(["call", "--address", address, "notes", "Notes.Read", #"{"id":"n1"}"#])
        #expect(read.status == 0 && read.stdout.contains("hi"), "\(read.stderr)")  // public
        let reader = try await tool(["auth", "token", "bo", "--scopes", "reader"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let forbidden = try await tool(write + ["--token", reader])
        #expect(forbidden.status == 1 && forbidden.stderr.contains("403") && forbidden.stderr.contains("bo may not call service:notes:Notes.Write"), "\(forbidden.stderr)")
        // a rule changed with the tool reaches the running service (it re-reads its rules every 500 ms)
        #expect(try await tool(["auth", "rules", "create", "readers-write", "--resource", "service:notes:Notes.*", "--scope", "reader"]).status == 0)
        while try await tool(write + ["--token", reader]).status != 0 { try await Task.sleep(for: .milliseconds(100)) }
        let listed = try await tool(["auth", "rules", "list"])
        #expect(listed.stdout.split(separator: "\n").map { $0.split(separator: "\t")[0] } == ["readers", "readers-write", "writers"], "\(listed.stdout)")
        #expect(try await tool(["auth", "rules", "delete", "nothing"]).status == 1)
        #expect(try await tool(["auth", "rules", "delete", "readers-write"]).status == 0)
        while try await tool(write + ["--token", reader]).status == 0 { try await Task.sleep(for: .milliseconds(100)) }
    }

    /// The environment of a key pair no service knows.
    static func otherKeys(_ micro: String) async throws -> [String: String] {
        var env = [String: String]()
        for line in try await Tool.run(micro, ["auth", "keys", "--type", "ec"]).stdout.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            env[String(parts[0])] = String(parts[1])
        }
        return env
    }

    // MARK: the parts

    @Test func goMicrosVerifyAlgorithm() {
        func rule(_ id: String, _ scope: String, _ resource: String, _ access: Rule.Access = .granted, _ priority: Int32 = 0) -> Rule {
            Rule(id: id, scope: scope, resource: try! Resource(parsing: resource), access: access, priority: priority)
        }
        let call = Resource(type: "service", name: "foo", endpoint: "Foo.Bar")
        let admin = Account(id: "a", scopes: ["Admin"]), nobody = Account(id: "n")
        #expect(Rule.verify([], account: admin, resource: call) == .denied)  // default deny
        #expect(Rule.verify([rule("p", "", "*:*:*")], account: nil, resource: call) == .granted)  // public
        #expect(Rule.verify([rule("any", "*", "*:*:*")], account: nil, resource: call) == .denied)  // needs an account
        #expect(Rule.verify([rule("any", "*", "*:*:*")], account: nobody, resource: call) == .granted)
        #expect(Rule.verify([rule("s", "admin", "service:FOO:foo.bar")], account: admin, resource: call) == .granted)  // any case
        #expect(Rule.verify([rule("s", "admin", "service:foo:Foo.Bar")], account: nobody, resource: call) == .denied)
        #expect(Rule.verify([rule("s", "*", "service:foo:Foo.*")], account: nobody, resource: call) == .granted)
        #expect(Rule.verify([rule("s", "*", "service:foo:Fo*")], account: nobody, resource: call) == .denied)
        let path = Resource(type: "service", name: "api", endpoint: "/v1/users/7")
        for (endpoint, access) in [("/v1/*", Rule.Access.granted), ("/v1/users/*", .granted), ("/v1/users/7/*", .granted), ("/v2/*", .denied), ("/v1/users", .denied)] {
            #expect(Rule.verify([rule("r", "*", "service:api:\(endpoint)")], account: nobody, resource: path) == access, "\(endpoint)")
        }
        // priority decides; ties keep their order
        let both = [rule("deny", "*", "*:*:*", .denied, 1), rule("grant", "*", "*:*:*", .granted, 5)]
        #expect(Rule.verify(both, account: nobody, resource: call) == .granted)
        #expect(Rule.verify([rule("d", "*", "*:*:*", .denied), rule("g", "*", "*:*:*")], account: nobody, resource: call) == .denied)
        // a public deny refuses even an account
        #expect(Rule.verify([rule("closed", "", "service:foo:*", .denied, 9), rule("any", "*", "*:*:*")], account: admin, resource: call) == .denied)
        #expect(throws: AuthError.self) { _ = try Resource(parsing: "service:foo") }
    }

    @Test(arguments: [SigningKey.Kind.rsa, .p256, .ed25519]) func tokensOfEveryKeyKindRoundTrip(kind: SigningKey.Kind) throws {
        let key = try SigningKey.generate(kind)
        let auth = try JWTAuth(publicKeys: [], privateKey: key)
        let verifier = try JWTAuth(publicKeys: [try SigningKey(pem: key.publicPEM)])
        let account = Account(id: "svc", type: "service", issuer: "go.micro", scopes: ["a", "b"], metadata: ["k": "v"])
        let token = try auth.sign(account, expiry: .seconds(30))
        #expect(try verifier.inspect(token) == account)
        #expect(verifier.cachedTokens == 1)
        #expect(try verifier.inspect(token) == account)  // from the cache
        let pair = try auth.token(for: account)
        #expect(try verifier.inspect(pair.refreshToken) == account)
        #expect(try auth.token(refreshing: pair.refreshToken).accessToken.isEmpty == false)
        let (generated, secret) = try auth.generate(id: "svc", type: "service", scopes: ["a", "b"], metadata: ["k": "v"])
        #expect(generated == account)
        #expect(try verifier.inspect(try auth.token(id: "svc", secret: secret).accessToken) == account)
        #expect(throws: AuthError.self) { _ = try auth.token(id: "someone-else", secret: secret) }
        // a public key cannot sign
        #expect(throws: AuthError.self) { _ = try verifier.sign(account, expiry: .seconds(1)) }
        #expect(try SigningKey(pem: key.privatePEM!, isPrivate: true).id == key.id)
    }

    @Test func badKeysAndBase64AreClearErrors() throws {
        #expect(throws: AuthError.self) { _ = try SigningKey(pem: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n") }
        #expect(throws: AuthError.self) { _ = try SigningKey.load("not base64 !", isPrivate: false) }
        let key = Self.signer
        let both = try SigningKey.load(Data(key.publicPEM.utf8).base64EncodedString() + "," + Data(SigningKey.generate(.p256).publicPEM.utf8).base64EncodedString(), isPrivate: false)
        #expect(both.count == 2 && both[0].id == key.id)
        #expect(Base64URL.decode(Array("QQ".utf8)) == [65])
        #expect(Base64URL.decode(Array("QR".utf8)) == nil)  // bits left over
        #expect(Base64URL.decode(Array("QQ==".utf8)) == nil)  // padding
        #expect(Base64URL.decode(Array("Q".utf8)) == nil)
        #expect(Base64URL.encode([0xfb, 0xff]) == "-_8")
        let environment = ["MICRO_AUTH": "jwt"]
        #expect(throws: ConfigurationError.self) { _ = try ServiceAuth.fromEnvironment(environment, store: MemoryStore()) }
        #expect(throws: ConfigurationError.self) { _ = try ServiceAuth.fromEnvironment(["MICRO_AUTH": "oauth"], store: MemoryStore()) }
        #expect(try ServiceAuth.fromEnvironment(["MICRO_AUTH": "noop"], store: MemoryStore()) == nil)
        let made = try ServiceAuth.fromEnvironment(["MICRO_AUTH": "jwt", "MICRO_AUTH_PRIVATE_KEY": Data(key.privatePEM!.utf8).base64EncodedString()], store: MemoryStore())
        #expect(made?.0.auth.privateKey?.id == key.id)
    }

    @Test func theTokenCacheIsBounded() throws {
        let auth = try JWTAuth(publicKeys: [], privateKey: Self.signer, cacheCapacity: 16)
        for i in 0..<100 { _ = try auth.inspect(try auth.sign(Account(id: "u\(i)"), expiry: .seconds(60))) }
        #expect(auth.cachedTokens <= 16)
    }
}
