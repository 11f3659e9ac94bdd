import Foundation
import MicroCore
import MicroNATS
import MicroTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

extension Duration {
    /// How long a step that should succeed may take before the test calls it hung: a bound, never
    /// a measurement (a loaded machine is slow, not broken).
    static let hangGuard: Duration = .seconds(60)
}

/// The NATS client against real nats-server processes the tests start (Debian's nats-server).
@Suite struct NATSClientTests {
    /// What tasks collect, shared.
    final class Collected: Sendable {
        let list = Mutex<[String]>([])
    }

    static let group = try! EventLoopGroup(numberOfThreads: 2)

    /// Options for tests: reconnect quickly, give up after a while.
    static func options(_ servers: [String], _ change: (inout NATSOptions) -> Void = { _ in }) -> NATSOptions {
        // bounds that only a hung test reaches: a loaded machine (sanitizers, parallel tests) is slow, not broken
        var options = NATSOptions(servers: servers, connectTimeout: .hangGuard, reconnectWait: .milliseconds(50),
                                  reconnectJitter: .milliseconds(20), maxReconnectAttempts: 600)
        change(&options)
        return options
    }

    static func connect(_ servers: [String], _ change: (inout NATSOptions) -> Void = { _ in }) async throws -> NATSClient {
        try await NATSClient.connect(options(servers, change), on: group.next())
    }

    /// The next `count` messages of `subscription` (the test fails, not hangs, if they do not come).
    static func take(_ count: Int, from subscription: NATSSubscription) async throws -> [NATSMessage] {
        try await withHangGuard {
            var taken: [NATSMessage] = []
            for await message in subscription {
                taken.append(message)
                if taken.count == count { break }
            }
            return taken
        }
    }

    /// `body`, or a failure if it has not returned within 60 s (a hung test, not a measurement).
    static func withHangGuard<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(for: .seconds(60))
                return nil
            }
            guard let first = try await group.next(), let value = first else {
                group.cancelAll()
                throw ChildError("hung: no result within 60 s")
            }
            group.cancelAll()
            return value
        }
    }

    @Test func publishSubscribeHeadersAndOrder() async throws {
        let servers = try await NATSServers()
        defer { Task { await servers.shutdown() } }
        let subscriber = try await Self.connect(servers.urls)
        let publisher = try await Self.connect(servers.urls)
        let orders = try await subscriber.subscribe("orders.*")
        try await subscriber.flush(timeout: .hangGuard)  // the server knows the subscription
        // runs of one subject and of one size, and changes of each (the publisher keeps the
        // control line of the last run): every message must come whole, to its subject
        func subject(_ n: Int) -> String { n / 3 % 2 == 0 ? "orders.new" : "orders.old" }
        func body(_ n: Int) -> String { n % 5 == 4 ? "" : "order \(n)" + String(repeating: "x", count: n % 7 == 0 ? n * 9 : 0) }
        for n in 0..<200 { try await publisher.publish(subject(n), payload: Array(body(n).utf8)) }
        try await publisher.publish("orders.paid", payload: Array("with headers".utf8),
                                    headers: [("Micro-Id", "42"), ("Trace", "a"), ("Trace", "b")], replyTo: "receipts")
        let got = try await Self.take(201, from: orders)
        #expect(got.prefix(200).map { String(decoding: $0.payload, as: UTF8.self) } == (0..<200).map(body))
        #expect(got.prefix(200).map(\.subject) == (0..<200).map(subject))
        let last = try #require(got.last)
        #expect(last.subject == "orders.paid" && last.replyTo == "receipts")
        #expect(last.header("micro-id") == "42")
        #expect(last.headers.filter { $0.0 == "Trace" }.map(\.1) == ["a", "b"])
        await publisher.close()
        await subscriber.close()
    }

    /// Each message of a queue group goes to exactly one member; a plain subscription beside the
    /// group gets every one.
    @Test func queueGroupsShareTheMessages() async throws {
        let servers = try await NATSServers()
        defer { Task { await servers.shutdown() } }
        let members = [try await Self.connect(servers.urls), try await Self.connect(servers.urls), try await Self.connect(servers.urls)]
        let everyone = try await Self.connect(servers.urls)
        var made: [NATSSubscription] = []
        for member in members {
            made.append(try await member.subscribe("jobs", queue: "workers"))
            try await member.flush(timeout: .hangGuard)
        }
        let subscriptions = made
        let all = try await everyone.subscribe("jobs")
        try await everyone.flush(timeout: .hangGuard)
        let publisher = try await Self.connect(servers.urls)
        let total = 300
        for n in 0..<total { try await publisher.publish("jobs", payload: Array("\(n)".utf8)) }
        #expect(try await Self.take(total, from: all).count == total)
        // the members together got each message once: count what each has, until all are there
        let seen = Collected()
        try await Self.withHangGuard {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for subscription in subscriptions {
                    group.addTask {
                        for await message in subscription {
                            let count = seen.list.withLock { $0.append(String(decoding: message.payload, as: UTF8.self)); return $0.count }
                            if count >= total { break }
                        }
                    }
                }
                // one member's loop ends at the total; the others end when their subscriptions do
                try await group.next()
                for member in members { await member.close() }
                try await group.waitForAll()
            }
        }
        let received = seen.list.withLock { $0 }
        #expect(received.count == total)
        #expect(Set(received) == Set((0..<total).map { "\($0)" }))
        await publisher.close()
        await everyone.close()
    }

    @Test func requestReplyNoRespondersAndTimeouts() async throws {
        let servers = try await NATSServers()
        defer { Task { await servers.shutdown() } }
        let responder = try await Self.connect(servers.urls)
        let requester = try await Self.connect(servers.urls)
        let questions = try await responder.subscribe("math.double")
        let silent = try await responder.subscribe("math.silent")
        try await responder.flush(timeout: .hangGuard)
        let answering = Task {
            for await question in questions {
                guard let replyTo = question.replyTo, let n = Int(String(decoding: question.payload, as: UTF8.self)) else { continue }
                try await responder.publish(replyTo, payload: Array("\(2 * n)".utf8))
            }
        }
        for n in [1, 21, 500] {
            let answer = try await requester.request("math.double", payload: Array("\(n)".utf8), timeout: .hangGuard)
            #expect(String(decoding: answer.payload, as: UTF8.self) == "\(2 * n)")
        }
        // many at once over the one inbox, each gets its own answer
        try await withThrowingTaskGroup(of: Void.self) { group in
            for n in 0..<50 {
                group.addTask {
                    let answer = try await requester.request("math.double", payload: Array("\(n)".utf8), timeout: .hangGuard)
                    #expect(String(decoding: answer.payload, as: UTF8.self) == "\(2 * n)")
                }
            }
            try await group.waitForAll()
        }
        await #expect { _ = try await requester.request("math.nobody", payload: [], timeout: .hangGuard) } throws: { error in
            (error as? NATSError)?.kind == .noResponders
        }
        await #expect { _ = try await requester.request("math.silent", payload: [], timeout: .milliseconds(100)) } throws: { error in
            (error as? NATSError)?.kind == .timeout
        }
        _ = silent
        answering.cancel()
        await requester.close()
        await responder.close()
    }

    /// Unsubscribing after a number of messages; bad subjects and an oversize payload are clear
    /// errors that leave the connection working.
    @Test func limitsAndBadInputAreClearErrors() async throws {
        let servers = try await NATSServers(options: .init(maxPayload: 1024))
        defer { Task { await servers.shutdown() } }
        let client = try await Self.connect(servers.urls)
        let three = try await client.subscribe("counted")
        await three.unsubscribe(after: 3)
        try await client.flush(timeout: .hangGuard)
        for n in 0..<10 { try await client.publish("counted", payload: [UInt8(n)]) }
        var got: [UInt8] = []
        for await message in three { got += message.payload }
        #expect(got == [0, 1, 2], "the subscription ends after three")

        await #expect { try await client.publish("big", payload: [UInt8](repeating: 1, count: 2000)) } throws: { error in
            (error as? NATSError)?.kind == .payloadTooLarge && "\(error)".contains("max_payload of 1024")
        }
        for subject in ["", "a..b", "with space", "wild.*", "a.>"] {
            await #expect { try await client.publish(subject, payload: []) } throws: { error in (error as? NATSError)?.kind == .invalidSubject }
        }
        await #expect { _ = try await client.subscribe("bad subject") } throws: { error in (error as? NATSError)?.kind == .invalidSubject }
        let echo = try await client.subscribe("still.works")
        try await client.flush(timeout: .hangGuard)
        try await client.publish("still.works", payload: Array("yes".utf8))
        #expect(try await Self.take(1, from: echo).first?.payload == Array("yes".utf8))
        await client.close()
        await #expect { try await client.publish("after.close", payload: []) } throws: { error in (error as? NATSError)?.kind == .closed }
    }

    /// A consumer that does not keep up loses the newest messages past its limit, and is told.
    @Test func aSlowConsumerIsBoundedAndReported() async throws {
        let servers = try await NATSServers()
        defer { Task { await servers.shutdown() } }
        let client = try await Self.connect(servers.urls) { $0.subscriptionPendingLimit = 10 }
        let events = await client.events()
        let slow = try await client.subscribe("firehose")
        try await client.flush(timeout: .hangGuard)
        for n in 0..<100 { try await client.publish("firehose", payload: [UInt8(n)]) }
        try await client.flush(timeout: .hangGuard)
        var reported: NATSEvent?
        for await event in events {
            if case .slowConsumer = event { reported = event; break }
        }
        #expect(reported == .slowConsumer(subject: "firehose", dropped: 1))
        #expect(try await Self.take(10, from: slow).map { $0.payload[0] } == Array(0..<10), "the oldest kept, in order")
        await client.close()
    }

    @Test func wrongCredentialsAndNoServerAreRefusedClearly() async throws {
        let servers = try await NATSServers(options: .init(user: ("ann", "secret")))
        defer { Task { await servers.shutdown() } }
        await #expect { _ = try await Self.connect(servers.urls) { $0.user = "ann"; $0.password = "wrong" } } throws: { error in
            (error as? NATSError)?.kind == .noServers && "\(error)".contains("Authorization Violation")
        }
        let good = try await Self.connect(["nats://ann:secret@127.0.0.1:\(servers.clientPorts[0])"])
        try await good.flush(timeout: .hangGuard)
        await good.close()
        let port = try EtcdCluster.freePorts(1)[0]
        defer { EtcdCluster.release([port]) }
        await #expect { _ = try await Self.connect(["nats://127.0.0.1:\(port)"]) } throws: { error in
            "\(error)".contains("connection refused")
        }
        await #expect { _ = try await Self.connect(["http://127.0.0.1:4222"]) } throws: { error in
            "\(error)".contains("not a NATS server URL")
        }
    }

    @Test func tlsAfterINFO() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("micro-nats-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let files = try await TestCertificates.make(in: dir)
        let servers = try await NATSServers(options: .init(tls: (files["server.crt"]!, files["server.key"]!), token: "t0ken"))
        defer { Task { await servers.shutdown() } }
        let client = try await Self.connect(servers.urls) {
            $0.tls = TLSConfig(trustRoots: .file(files["ca.crt"]!))
            $0.token = "t0ken"
        }
        let echo = try await client.subscribe("secure")
        try await client.flush(timeout: .hangGuard)
        try await client.publish("secure", payload: Array("over TLS".utf8))
        #expect(try await Self.take(1, from: echo).first?.payload == Array("over TLS".utf8))
        await client.close()
        // a client that does not trust the server's CA is refused, and says why
        await #expect {
            _ = try await Self.connect(servers.urls) {
                $0.tls = TLSConfig(trustRoots: .file(files["other.crt"]!))
                $0.token = "t0ken"
            }
        } throws: { error in "\(error)".contains("certificate") }
    }

    /// A server that sends what is not NATS, `-ERR`s and closes, or announces a message over the
    /// limit: each is a clear reason, the client reconnects, its subscription is made again and
    /// works once a server behaves (`Tests/Peers/nats_fake.py`: one mode per connection).
    @Test func aMisbehavingServerIsLeftWithAClearReason() async throws {
        let fake = try await ChildService("/usr/bin/python3", arguments: [
            GoPeer.directory.appendingPathComponent("nats_fake.py").path, "garbled", "err", "oversize", "normal",
        ])
        defer { fake.stop() }
        let client = try await Self.connect(["nats://127.0.0.1:\(fake.port)"])
        let events = await client.events()
        let subscription = try await client.subscribe("works")
        var seen: [String] = []
        var reconnections = 0
        for await event in events {
            switch event {
            case .disconnected(_, let reason): seen.append("disconnected: \(reason)")
            case .serverError(let text): seen.append("error: \(text)")
            case .reconnected: reconnections += 1
            default: break
            }
            if reconnections == 3 { break }
        }
        #expect(seen.count == 4, "\(seen)")
        #expect(seen.first?.contains("it sent what is not NATS: a subscription id that is not a number: 'notanumber'") == true, "\(seen)")
        #expect(seen.dropFirst().first == "error: Unknown Protocol Operation", "\(seen)")
        #expect(seen.last?.contains("a message of 99999999 bytes, over the limit of 1024") == true, "\(seen)")
        try await client.publish("works", payload: Array("at last".utf8))
        #expect(try await Self.take(1, from: subscription).first?.payload == Array("at last".utf8))
        await client.close()
    }
}
