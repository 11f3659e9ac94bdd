import Foundation
import Micro
import MicroTestSupport
import Synchronization
import Testing

struct Nap: Codable, Sendable { var milliseconds: Int }

/// Handler semantics: deadlines, errors, codecs, draining.
@Suite struct ServiceTests {
    static func start(_ configure: (Service) -> Void) throws -> Service {
        let service = Service(name: "svc", address: "127.0.0.1:0", options: .init(drainTimeout: .seconds(30), handleSignals: false))
        configure(service)
        try service.start()
        return service
    }

    static func call(_ service: Service, _ endpoint: String, _ body: String, headers: [String] = []) async throws -> String {
        var headers = headers
        if !headers.contains(where: { $0.lowercased().hasPrefix("content-type") }) { headers.append("Content-Type: application/json") }
        let args = ["-s", "-XPOST", "-H", "Micro-Endpoint: \(endpoint)", "--data-binary", body] + headers.flatMap { ["-H", $0] }
        return try await Tool.run("curl", args + ["http://127.0.0.1:\(service.port!)/"]).stdout
    }

    @Test func handlerPastTheCallersTimeoutIsCancelledAndTheCallerGets408() async throws {
        let cancelled = Mutex(false)
        let service = try Self.start { service in
            service.handle("Sleeper.Nap") { (req: Nap, _: Context) async throws -> Reply in
                do {
                    try await Task.sleep(for: .milliseconds(req.milliseconds))
                } catch {
                    cancelled.withLock { $0 = true }
                    throw error
                }
                return Reply(message: "rested")
            }
        }
        // Timeout is decimal nanoseconds (go-micro): 100 ms, for a handler that would sleep 60 s
        let body = try await Self.call(service, "Sleeper.Nap", #"{"milliseconds":60000}"#, headers: ["Timeout: 100000000"])
        #expect(MicroError(parsing: body).code == 408)
        await service.shutdown()
        #expect(cancelled.withLock { $0 })
    }

    /// The same for an `async` handler and a synchronous one (answered without an async call).
    @Test(arguments: [false, true])
    func thrownErrorsKeepTheirCodeAndOtherErrorsAre500(synchronous: Bool) async throws {
        struct Boom: Error, CustomStringConvertible { var description: String { "boom happened" } }
        let service = try Self.start { service in
            if synchronous {
                service.handle("E.Micro") { (_: Greeting, _: Context) throws -> Reply in throw MicroError.forbidden("svc", "not you") }
                service.handle("E.Other") { (_: Greeting, _: Context) throws -> Reply in throw Boom() }
                service.handle("E.Fine") { (greeting: Greeting, _: Context) in Reply(message: "fine " + greeting.name) }
            } else {
                service.handle("E.Micro") { (_: Greeting, _: Context) async throws -> Reply in
                    throw MicroError.forbidden("svc", "not you")
                }
                service.handle("E.Other") { (_: Greeting, _: Context) async throws -> Reply in throw Boom() }
                service.handle("E.Fine") { (greeting: Greeting, _: Context) async throws -> Reply in Reply(message: "fine " + greeting.name) }
            }
        }
        #expect(try await Self.call(service, "E.Fine", #"{"name":"x"}"#) == #"{"message":"fine x"}"#)
        let undecodable = MicroError(parsing: try await Self.call(service, "E.Fine", #"{"name":3}"#))
        #expect(undecodable.code == 400 && undecodable.detail.contains("cannot decode"), "\(undecodable)")
        let micro = MicroError(parsing: try await Self.call(service, "E.Micro", #"{"name":"x"}"#))
        #expect(micro == MicroError(id: "svc", code: 403, detail: "not you"))
        let other = MicroError(parsing: try await Self.call(service, "E.Other", #"{"name":"x"}"#))
        #expect(other.code == 500)
        #expect(other.detail == "boom happened")
        await service.shutdown()
    }

    @Test func metadataAndRawBytes() async throws {
        let service = try Self.start { service in
            service.handle("Echo.Bytes") { (req: [UInt8], ctx: Context) async throws -> [UInt8] in
                Array((ctx.metadata["X-Tenant"] ?? "none").utf8) + [UInt8(ascii: ":")] + req
            }
        }
        let out = try await Self.call(service, "Echo.Bytes", "raw\u{1}bytes",
                                      headers: ["Content-Type: application/octet-stream", "X-Tenant: acme"])
        #expect(out == "acme:raw\u{1}bytes")
        await service.shutdown()
    }

    @Test func largeBodiesEchoOnBothProtocols() async throws {
        let service = try Self.start { service in
            service.handle("Echo.Bytes") { (req: [UInt8], _: Context) async throws -> [UInt8] in req }
        }
        let dir = FileManager.default.temporaryDirectory
        let input = dir.appendingPathComponent("big-\(UUID().uuidString)")
        let output = dir.appendingPathComponent("echo-\(UUID().uuidString)")
        defer {
            try? FileManager.default.removeItem(at: input)
            try? FileManager.default.removeItem(at: output)
        }
        let bytes = Pattern.bytes(3_000_000)
        try Data(bytes).write(to: input)
        for flag in ["--http1.1", "--http2-prior-knowledge"] {
            let result = try await Tool.run("curl", ["-sS", flag, "-XPOST", "-H", "Micro-Endpoint: Echo.Bytes",
                                                     "-H", "Content-Type: application/octet-stream", "--data-binary", "@\(input.path)",
                                                     "-o", output.path, "http://127.0.0.1:\(service.port!)/"])
            #expect(result.status == 0, "\(flag): \(result.stderr)")
            #expect(try Data(contentsOf: output) == Data(bytes), "\(flag)")
        }
        await service.shutdown()
    }

    @Test func requestsInFlightFinishDuringGracefulShutdown() async throws {
        let (started, startedContinuation) = AsyncStream<Void>.makeStream()
        let release = Mutex<CheckedContinuation<Void, Never>?>(nil)
        let service = Service(name: "drain", address: "127.0.0.1:0", options: .init(handleSignals: false, registry: MemoryRegistry(), registerTTL: .registrationGuard))
        service.handle("Slow.Work") { (req: Greeting, _: Context) async throws -> Reply in
            await withCheckedContinuation { continuation in
                release.withLock { $0 = continuation }
                startedContinuation.yield()
            }
            return Reply(message: "done " + req.name)
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await service.run() }
            while service.port == nil { await Task.yield() }
            let port = service.port!
            let conn = try RawConnection(port: port)
            try conn.send(HelloworldTests.request(name: "late", endpoint: "Slow.Work"))
            for await _ in started { break }
            service.stop()  // what SIGTERM does
            // the listener closes (on its loop, soon after) while the request is still in flight:
            // nothing announces it, so new connections are tried until one is refused; the
            // bound is a hang guard, not a measurement
            let giveUp = ContinuousClock.now + .seconds(120)
            var refused = false
            while !refused && ContinuousClock.now < giveUp {
                refused = (try? RawConnection(port: port)) == nil
                if !refused { try await Task.sleep(for: .milliseconds(1)) }
            }
            #expect(refused)
            release.withLock { $0?.resume() }
            let response = try await conn.readResponse()
            #expect(response.body == #"{"message":"done late"}"#)
            #expect(response.headers["connection"] == "close")
            try await group.next()  // run() returns
        }
    }
}
