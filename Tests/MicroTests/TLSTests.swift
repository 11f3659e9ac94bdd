import Foundation
import Logging
import Micro
import MicroTestSupport
import Synchronization
import Testing
import MicroCore

/// A development CA in a temporary directory, made with the library's own `Certificates` API.
struct TLSFixture {
    let root: URL
    let certs: Certificates

    init() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("micro-tls-\(UUID().uuidString)")
        certs = Certificates(directory: root.path)
        try certs.initAuthority()
    }

    func remove() { try? FileManager.default.removeItem(at: root) }

    var caPath: String { root.appendingPathComponent("ca/ca.pem").path }

    /// The environment that makes a child service serve mutual TLS with `service`'s files.
    func environment(_ service: String, registry: URL? = nil) throws -> [String: String] {
        let files = try certs.issue(service: service)
        var env = ["MICRO_TLS_CERT": files.certificate, "MICRO_TLS_KEY": files.privateKey, "MICRO_TLS_CA": files.trustRoots]
        if let registry { env["MICRO_REGISTRY_ADDRESS"] = registry.path }
        return env
    }

    /// curl's options to present `service`'s certificate.
    func curlIdentity(_ service: String) throws -> [String] {
        let files = try certs.issue(service: service)
        return ["--cacert", caPath, "--cert", files.certificate, "--key", files.privateKey]
    }

    func write(_ text: String, _ name: String) throws -> String {
        let url = root.appendingPathComponent(name)
        try Data(text.utf8).write(to: url)
        return url.path
    }
}

/// Mutual TLS against real peers: openssl s_client, curl, the framework's own client.
@Suite(.serialized) struct TLSTests {
    static let greeting = ["-XPOST", "-H", "Content-Type: application/json", "-H", "Micro-Endpoint: Helloworld.Greeting"]

    @Test func opensslCompletesTLS13HandshakeWithH2AndResumes() async throws {
        let fx = try TLSFixture()
        defer { fx.remove() }
        let service = try await ChildService("helloworld", environment: try fx.environment("helloworld"))
        defer { service.stop() }
        let client = try fx.certs.issue(service: "caller")
        let session = fx.root.appendingPathComponent("session.pem").path
        let base = ["s_client", "-connect", "127.0.0.1:\(service.port)", "-CAfile", fx.caPath,
                    "-cert", client.certificate, "-key", client.privateKey, "-verify_return_error"]
        let first = try await Tool.run("openssl", base + ["-alpn", "h2"])
        #expect(first.stdout.contains("New, TLSv1.3"), "\(first.stdout)\(first.stderr)")
        #expect(first.stdout.contains("ALPN protocol: h2"), "\(first.stdout)")
        #expect(first.stdout.contains("Verify return code: 0 (ok)"), "\(first.stdout)")
        // The session ticket (keys managed by the core) resumes the session. s_client sends one
        // request and reads until the server closes, so the ticket has arrived when it exits.
        let request = "POST / HTTP/1.1\\r\\nHost: localhost\\r\\nContent-Type: application/json\\r\\n"
            + "Micro-Endpoint: Helloworld.Greeting\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\n{}"
        func exchange(_ flag: String) async throws -> ToolResult {
            let command = (["printf '\(request)' | openssl"] + base + ["-alpn", "http/1.1", "-ign_eof", flag, session]).joined(separator: " ")
            return try await Tool.run("sh", ["-c", command])
        }
        let saved = try await exchange("-sess_out")
        #expect(saved.stdout.contains("New, TLSv1.3"), "\(saved.stdout)\(saved.stderr)")
        let resumed = try await exchange("-sess_in")
        #expect(resumed.stdout.contains("Reused, TLSv1.3"), "\(resumed.stdout)\(resumed.stderr)")
        #expect(resumed.stdout.contains("HTTP/1.1 200"), "\(resumed.stdout)")
        // TLS 1.2 is refused by default
        let old = try await Tool.run("openssl", base + ["-tls1_2"])
        #expect(old.status != 0)
        #expect(try await Self.callWithCurl(fx, service.port, name: "after") == #"{"message":"Hello after"}"#)
    }

    @Test func curlCallsHelloworldOverHTTP1AndHTTP2() async throws {
        let fx = try TLSFixture()
        defer { fx.remove() }
        let service = try await ChildService("helloworld", environment: try fx.environment("helloworld"))
        defer { service.stop() }
        let id = try fx.curlIdentity("caller")
        let url = "https://localhost:\(service.port)/"
        let h2 = try await Tool.run("curl", ["-sS", "-w", " %{http_version}"] + id + Self.greeting + ["-d", #"{"name":"h2"}"#, url])
        #expect(h2.stdout == #"{"message":"Hello h2"} 2"#, "\(h2.stderr)")
        let h1 = try await Tool.run("curl", ["-sS", "--http1.1", "-w", " %{http_version}"] + id + Self.greeting + ["-d", #"{"name":"h1"}"#, url])
        #expect(h1.stdout == #"{"message":"Hello h1"} 1.1"#, "\(h1.stderr)")
        // the certificate also names 127.0.0.1, so curl's host check passes on the address
        let ip = try await Tool.run("curl", ["-sS"] + id + Self.greeting + ["-d", #"{"name":"ip"}"#, "https://127.0.0.1:\(service.port)/"])
        #expect(ip.stdout == #"{"message":"Hello ip"}"#, "\(ip.stderr)")
    }

    @Test func frameworkClientCallsByNameOverMutualTLS() async throws {
        let fx = try TLSFixture()
        defer { fx.remove() }
        let registry = fx.root.appendingPathComponent("registry")
        let service = try await ChildService("helloworld", environment: try fx.environment("helloworld", registry: registry))
        defer { service.stop() }
        _ = await service.waitForLine(containing: "registered node")
        let record = try await LocalRegistry(directory: registry).getService("helloworld")
        #expect(record.first?.nodes.first?.metadata["tls"] == "required")
        let client = Client(registry: LocalRegistry(directory: registry), options: CallOptions(timeout: .hangGuard),
                            tls: try fx.certs.issue(service: "caller").tlsConfig())
        let reply: TLSGreeting = try await client.call("helloworld", "Helloworld.Greeting", TLSName(name: "mtls"))
        #expect(reply.message == "Hello mtls")
        // without a client certificate the server refuses, and the error says so
        let anonymous = Client(registry: LocalRegistry(directory: registry), tls: TLSConfig(trustRoots: .file(fx.caPath)))
        let error = await #expect(throws: MicroError.self) {
            let _: TLSGreeting = try await anonymous.call("helloworld", "Helloworld.Greeting", TLSName(name: "x"), options: .init(timeout: .hangGuard, retries: 0))
        }
        #expect(error?.detail.contains("certificate required") == true, "\(String(describing: error))")
        #expect(await Self.logged(service, "peer did not return a certificate"))
        let again: TLSGreeting = try await client.call("helloworld", "Helloworld.Greeting", TLSName(name: "again"))
        #expect(again.message == "Hello again")
    }

    @Test func refusalsAreClearOnBothSidesAndTheServerKeepsServing() async throws {
        let fx = try TLSFixture()
        defer { fx.remove() }
        let service = try await ChildService("helloworld", environment: try fx.environment("helloworld"))
        defer { service.stop() }
        let url = "https://localhost:\(service.port)/"
        let body = ["-d", #"{"name":"x"}"#]

        // no client certificate
        let none = try await Tool.run("curl", ["-sS", "--cacert", fx.caPath] + Self.greeting + body + [url])
        #expect(none.status != 0)
        #expect(none.stderr.contains("certificate required"), "\(none.stderr)")
        #expect(await Self.logged(service, "TLS handshake refused: peer did not return a certificate"))

        // a certificate from another CA (both made with the openssl command)
        let dir = fx.root.path
        let made = try await Tool.run("sh", ["-c", """
            set -e; cd \(dir)
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=other-ca -days 2 \
              -addext basicConstraints=critical,CA:TRUE -keyout other-ca.key -out other-ca.pem
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=intruder -keyout other.key -out other.csr
            openssl x509 -req -in other.csr -CA other-ca.pem -CAkey other-ca.key -CAcreateserial -days 1 -out other.pem
            """])
        #expect(made.status == 0, "\(made.stderr)")
        let other = try await Tool.run("curl", ["-sS", "--cacert", fx.caPath, "--cert", "\(dir)/other.pem", "--key", "\(dir)/other.key"]
            + Self.greeting + body + [url])
        #expect(other.status != 0)
        #expect(other.stderr.contains("unknown ca"), "\(other.stderr)")
        #expect(await Self.logged(service, "certificate verify failed: unable to get local issuer certificate"))

        // an expired certificate from the right CA
        let ca = CertificateFactory.Issued(
            certificate: try String(contentsOfFile: fx.caPath, encoding: .utf8),
            privateKey: try String(contentsOfFile: fx.root.appendingPathComponent("ca/ca.key").path, encoding: .utf8))
        let expired = try CertificateFactory.create(
            commonName: "late", uri: "spiffe://micro.local/service/late", validFrom: -7200, validUntil: -3600, issuer: ca)
        let old = try await Tool.run("curl", ["-sS", "--cacert", fx.caPath, "--cert", try fx.write(expired.certificate, "late.pem"),
                                              "--key", try fx.write(expired.privateKey, "late.key")] + Self.greeting + body + [url])
        #expect(old.status != 0)
        #expect(old.stderr.contains("certificate expired"), "\(old.stderr)")
        #expect(await Self.logged(service, "certificate verify failed: certificate has expired"))

        // a plaintext client on the TLS port gets a plain 400 saying so
        let plain = try await Tool.run("curl", ["-sS", "-i"] + Self.greeting + body + ["http://127.0.0.1:\(service.port)/"])
        #expect(plain.stdout.hasPrefix("HTTP/1.1 400"), "\(plain.stdout)")
        #expect(plain.stdout.contains("this port speaks TLS only"))
        #expect(await Self.logged(service, "a plaintext HTTP request on a TLS port"))
        // and the framework's client, calling it in plaintext (h2c), is told why
        let plainClient = Client(options: .init(timeout: .hangGuard, retries: 0, address: "127.0.0.1:\(service.port)"))
        let error = await #expect(throws: MicroError.self) {
            let _: TLSGreeting = try await plainClient.call("helloworld", "Helloworld.Greeting", TLSName(name: "x"))
        }
        #expect(error?.detail.contains("it may serve TLS only (call it with https://)") == true, "\(String(describing: error))")

        // and the server still serves
        #expect(try await Self.callWithCurl(fx, service.port, name: "still") == #"{"message":"Hello still"}"#)
    }

    @Test func aTLSClientOnAPlaintextPortIsRefusedClearly() async throws {
        let fx = try TLSFixture()
        defer { fx.remove() }
        let service = try await ChildService("helloworld")
        defer { service.stop() }
        let curl = try await Tool.run("curl", ["-sS"] + (try fx.curlIdentity("caller")) + Self.greeting
            + ["-d", #"{"name":"x"}"#, "https://127.0.0.1:\(service.port)/"])
        #expect(curl.status != 0)
        #expect(curl.stderr.contains("handshake failure"), "\(curl.stderr)")
        #expect(await Self.logged(service, "a TLS ClientHello on a plaintext port"))
        let client = Client(tls: try fx.certs.issue(service: "caller").tlsConfig())
        let error = await #expect(throws: MicroError.self) {
            let _: TLSGreeting = try await client.call("helloworld", "Helloworld.Greeting", TLSName(name: "x"),
                                                    options: .init(timeout: .hangGuard, retries: 0, address: "https://127.0.0.1:\(service.port)"))
        }
        #expect(error?.detail.contains("TLS to 127.0.0.1:\(service.port) failed") == true, "\(String(describing: error))")
        let plain = try await Tool.run("curl", ["-sS"] + Self.greeting + ["-d", #"{"name":"plain"}"#, "http://127.0.0.1:\(service.port)/"])
        #expect(plain.stdout == #"{"message":"Hello plain"}"#)
    }

    @Test func aServerWithAnotherServicesCertificateIsRefused() async throws {
        let fx = try TLSFixture()
        defer { fx.remove() }
        let registry = fx.root.appendingPathComponent("registry")
        // helloworld presents greeter's certificate (same CA: the chain verifies, the name does not)
        let service = try await ChildService("helloworld", environment: try fx.environment("greeter", registry: registry))
        defer { service.stop() }
        _ = await service.waitForLine(containing: "registered node")
        let client = Client(registry: LocalRegistry(directory: registry), options: CallOptions(timeout: .hangGuard),
                            tls: try fx.certs.issue(service: "caller").tlsConfig())
        let error = await #expect(throws: MicroError.self) {
            let _: TLSGreeting = try await client.call("helloworld", "Helloworld.Greeting", TLSName(name: "x"), options: .init(timeout: .hangGuard, retries: 0))
        }
        let detail = error?.detail ?? ""
        #expect(detail.contains("the server presented identity 'spiffe://micro.local/service/greeter', expected 'spiffe://micro.local/service/helloworld'"), "\(detail)")
        // the server saw a client that went away; it keeps serving
        #expect(try await Self.callWithCurl(fx, service.port, name: "ok") == #"{"message":"Hello ok"}"#)
    }

    @Test func theHandlerSeesTheCallersIdentity() async throws {
        let fx = try TLSFixture()
        defer { fx.remove() }
        let registry = MemoryRegistry()
        let server = try fx.certs.issue(service: "whoami")
        let options = ServiceOptions(handleSignals: false, registry: registry, registerTTL: .registrationGuard, interceptors: [IdentityCheck()], tls: server.tlsConfig())
        let service = Service(name: "whoami", address: "127.0.0.1:0", options: options)
        service.handle("Whoami.Get") { (_: TLSName, ctx: Context) async throws -> TLSGreeting in
            TLSGreeting(message: ctx.peer.identity ?? "(none)")
        }
        let events = try registry.events(service: "whoami")
        let task = Task { try await service.run() }
        for await event in events where event.action == .create { break }
        let caller = try fx.certs.issue(service: "caller")
        let client = Client(registry: registry, options: CallOptions(timeout: .hangGuard), tls: caller.tlsConfig())
        let reply: TLSGreeting = try await client.call("whoami", "Whoami.Get", TLSName(name: ""))
        #expect(reply.message == "spiffe://micro.local/service/caller")
        #expect(reply.message == CertificateFactory.identity(ofPEM: try String(contentsOfFile: caller.certificate, encoding: .utf8)))
        #expect(IdentityCheck.seen.withLock { $0 } == ["spiffe://micro.local/service/caller"])
        service.stop()
        try await task.value
    }

    @Test func rotationUnderLoadFailsNoCall() async throws {
        let fx = try TLSFixture()
        defer { fx.remove() }
        let ca1 = try Self.authority("one")
        let ca2 = try Self.authority("two")
        func leaf(_ name: String, _ generation: String, _ ca: CertificateFactory.Issued) throws -> CertificateFactory.Issued {
            try CertificateFactory.create(commonName: "\(name) \(generation)", uri: "spiffe://micro.local/service/\(name)",
                                          dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], issuer: ca)
        }
        func config(_ cert: CertificateFactory.Issued, trust: [CertificateFactory.Issued]) -> TLSConfig {
            TLSConfig(certificate: .text(cert.certificate), privateKey: .text(cert.privateKey),
                      trustRoots: .text(trust.map(\.certificate).joined()))
        }
        let server1 = try leaf("rotor", "1", ca1), client1 = try leaf("caller", "1", ca1)
        let options = ServiceOptions(handleSignals: false, register: false, tls: config(server1, trust: [ca1]))
        let service = Service(name: "rotor", address: "127.0.0.1:0", options: options)
        service.handle("Rotor.Echo") { (req: TLSName, _: Context) async throws -> TLSGreeting in TLSGreeting(message: req.name) }
        let port = try service.start().port
        let address = "https://127.0.0.1:\(port)"
        let clientConfig = Mutex(config(client1, trust: [ca1]))
        let pooled = Client(options: .init(timeout: .hangGuard, retries: 0, address: address), tls: clientConfig.withLock { $0 })

        // the load: a pooled client and, each round, a fresh client (a new connection and handshake)
        let (progress, tick) = AsyncStream<Void>.makeStream()
        let stop = Mutex(false)
        let failures = Mutex<[String]>([])
        let load = Task {
            var i = 0
            while !stop.withLock({ $0 }) {
                i += 1
                let fresh = Client(options: .init(timeout: .hangGuard, retries: 0, address: address), tls: clientConfig.withLock { $0 })
                for client in [pooled, fresh] {
                    do {
                        let reply: TLSGreeting = try await client.call("rotor", "Rotor.Echo", TLSName(name: "n\(i)"))
                        if reply.message != "n\(i)" { failures.withLock { $0.append("wrong answer \(reply.message)") } }
                    } catch {
                        failures.withLock { $0.append("\(error)") }
                    }
                }
                await fresh.close()
                tick.yield()
            }
            tick.finish()
        }
        var rounds = progress.makeAsyncIterator()
        func roundsPass(_ n: Int) async { for _ in 0..<n { _ = await rounds.next() } }

        await roundsPass(10)
        // 1. a new server certificate from the same CA
        let server2 = try leaf("rotor", "2", ca1)
        try service.reloadTLS(config(server2, trust: [ca1]))
        await roundsPass(10)
        #expect(try await Self.presentedCertificate(port, fx, client1, ca1) == server2.certificate)

        // 2. CA rotation with an overlap: both sides trust both roots, then move to CA two's
        //    certificates, then drop CA one
        try service.reloadTLS(config(server2, trust: [ca1, ca2]))
        clientConfig.withLock { $0 = config(client1, trust: [ca1, ca2]) }
        try pooled.reloadTLS(clientConfig.withLock { $0 })
        await roundsPass(10)
        let server3 = try leaf("rotor", "3", ca2), client3 = try leaf("caller", "3", ca2)
        try service.reloadTLS(config(server3, trust: [ca1, ca2]))
        await roundsPass(5)
        clientConfig.withLock { $0 = config(client3, trust: [ca1, ca2]) }
        try pooled.reloadTLS(clientConfig.withLock { $0 })
        await roundsPass(10)
        try service.reloadTLS(config(server3, trust: [ca2]))
        clientConfig.withLock { $0 = config(client3, trust: [ca2]) }
        try pooled.reloadTLS(clientConfig.withLock { $0 })
        await roundsPass(10)
        #expect(try await Self.presentedCertificate(port, fx, client3, ca2) == server3.certificate)

        stop.withLock { $0 = true }
        await load.value
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0 })")
        // a client still on CA one's certificate is now refused
        let stale = Client(options: .init(timeout: .hangGuard, retries: 0, address: address), tls: config(client1, trust: [ca1, ca2]))
        await #expect(throws: MicroError.self) {
            let _: TLSGreeting = try await stale.call("rotor", "Rotor.Echo", TLSName(name: "stale"))
        }
        await service.shutdown()
    }

    @Test func aServiceReloadsWhenItsCertificateFilesChange() async throws {
        let fx = try TLSFixture()
        defer { fx.remove() }
        let service = try await ChildService("helloworld", environment: try fx.environment("helloworld"))
        defer { service.stop() }
        let caller = try fx.certs.issue(service: "caller")
        let client = CertificateFactory.Issued(
            certificate: try String(contentsOfFile: caller.certificate, encoding: .utf8),
            privateKey: try String(contentsOfFile: caller.privateKey, encoding: .utf8))
        let ca = CertificateFactory.Issued(certificate: try String(contentsOfFile: fx.caPath, encoding: .utf8), privateKey: "")
        let files = fx.certs.files(of: "helloworld")
        let before = try String(contentsOfFile: files.certificate, encoding: .utf8)
        #expect(try await Self.presentedCertificate(service.port, fx, client, ca) == before)
        // `micro certs issue` again: a new key and certificate renamed into place
        try fx.certs.issue(service: "helloworld")
        let after = try String(contentsOfFile: files.certificate, encoding: .utf8)
        #expect(after != before)
        #expect(await Self.logged(service, "TLS configuration reloaded"))
        #expect(try await Self.presentedCertificate(service.port, fx, client, ca) == after)
        #expect(try await Self.callWithCurl(fx, service.port, name: "new") == #"{"message":"Hello new"}"#)
    }

    @Test func theClientResumesItsSessionOnANewConnection() async throws {
        let fx = try TLSFixture()
        defer { fx.remove() }
        var configuration = HTTPServerConfiguration(host: "127.0.0.1", port: 0)
        configuration.tls = try fx.certs.issue(service: "plain").tlsConfig()
        let server = try HTTPServer(configuration: configuration, logger: Logger(label: "test")) { request, responder in
            let peer = request.tls
            responder.send(HTTPServerResponse(body: Array("\(peer?.identity ?? "-") \(peer?.resumed == true ? "resumed" : "full")".utf8)))
        }
        let http = HTTPClient(tls: try fx.certs.issue(service: "caller").tlsConfig())
        let target = HTTPClient.TLSTarget(expectedIdentity: "spiffe://micro.local/service/plain")
        func call() async throws -> String {
            let response = try await http.request(address: "127.0.0.1:\(server.port)", path: "/", headers: [:], body: [], tls: target)
            return String(decoding: response.body, as: UTF8.self)
        }
        let first = try await call()
        #expect(first == "spiffe://micro.local/service/caller full")
        await http.close()  // the next call makes a new connection, with the ticket of this one
        #expect(try await call() == "spiffe://micro.local/service/caller resumed")
        await http.close()
        await server.shutdownGracefully(timeout: .seconds(5))
    }

    @Test func aBidirectionalStreamRunsOverMutualTLS() async throws {
        let fx = try TLSFixture()
        defer { fx.remove() }
        let registry = MemoryRegistry()
        let options = ServiceOptions(handleSignals: false, registry: registry, registerTTL: .registrationGuard, tls: try fx.certs.issue(service: "sensors").tlsConfig())
        let service = Service(name: "sensors", address: "127.0.0.1:0", options: options)
        service.handle("Sensors.Scale", bidiStream: { (readings: MessageStream<TLSReading>, out: MessageWriter<TLSReading>, ctx: Context) in
            for try await reading in readings {
                try await out.write(TLSReading(sensor: ctx.peer.identity ?? "-", value: reading.value * 10))
            }
        })
        let events = try registry.events(service: "sensors")
        let task = Task { try await service.run() }
        for await event in events where event.action == .create { break }
        let client = Client(registry: registry, tls: try fx.certs.issue(service: "caller").tlsConfig())
        for contentType in ["application/json", "application/grpc+json"] {
            let scaled = try await client.stream("sensors", "Sensors.Scale", request: TLSReading.self, response: TLSReading.self,
                                                 options: CallOptions(timeout: .hangGuard, contentType: contentType, streamTimeout: .hangGuard)) { call in
                try await call.send(TLSReading(sensor: "a", value: 1.5))
                var iterator = call.responses.makeAsyncIterator()
                let first = try await iterator.next()
                call.closeSend()
                return (first, try await iterator.next())
            }
            #expect(scaled.0 == TLSReading(sensor: "spiffe://micro.local/service/caller", value: 15))
            #expect(scaled.1 == nil)
        }
        service.stop()
        try await task.value
    }

    // MARK: helpers

    static func authority(_ name: String) throws -> CertificateFactory.Issued {
        try CertificateFactory.create(commonName: "test CA \(name)", uri: "spiffe://micro.local", isCA: true)
    }

    /// The certificate the server presents to a new connection (openssl s_client -showcerts).
    static func presentedCertificate(
        _ port: Int, _ fx: TLSFixture, _ client: CertificateFactory.Issued, _ ca: CertificateFactory.Issued
    ) async throws -> String {
        let tag = UUID().uuidString
        let result = try await Tool.run("openssl", [
            "s_client", "-connect", "127.0.0.1:\(port)", "-showcerts", "-CAfile", try fx.write(ca.certificate, "ca-\(tag).pem"),
            "-cert", try fx.write(client.certificate, "c-\(tag).pem"), "-key", try fx.write(client.privateKey, "k-\(tag).pem"),
            "-verify_return_error",
        ])
        guard let start = result.stdout.range(of: "-----BEGIN CERTIFICATE-----"),
              let end = result.stdout.range(of: "-----END CERTIFICATE-----\n", range: start.upperBound..<result.stdout.endIndex)
        else { return "no certificate in:\n\(result.stdout)\(result.stderr)" }
        return String(result.stdout[start.lowerBound..<end.upperBound])
    }

    /// Whether the child logs a line containing `text` (waitForLine's bound is a hang guard: a
    /// missing line fails the test instead of hanging it).
    static func logged(_ service: ChildService, _ text: String) async -> Bool {
        await service.waitForLine(containing: text) != nil
    }

    static func callWithCurl(_ fx: TLSFixture, _ port: Int, name: String) async throws -> String {
        let result = try await Tool.run("curl", ["-sS"] + (try fx.curlIdentity("caller")) + greeting
            + ["-d", #"{"name":"\#(name)"}"#, "https://localhost:\(port)/"])
        return result.stdout + result.stderr
    }
}

struct TLSName: Codable, Sendable { var name: String }
struct TLSReading: Codable, Sendable, Equatable {
    var sensor: String
    var value: Double
}
struct TLSGreeting: Codable, Sendable { var message: String }

/// An interceptor that records the caller's identity (authorization would look here).
struct IdentityCheck: ServerInterceptor {
    static let seen = Mutex<[String]>([])

    func intercept(_ call: ServerCall, next: (ServerCall) async throws -> ServerResult) async throws -> ServerResult {
        Self.seen.withLock { $0.append(call.context.peer.identity ?? "(none)") }
        return try await next(call)
    }
}
