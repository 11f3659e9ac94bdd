import Foundation
import MicroCore
import MicroNATS
import MicroTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// What the client does when its server goes away: real nats-server processes killed with -9,
/// restarted, frozen.
@Suite struct NATSReconnectTests {
    /// Numbered messages a subscription has received, and the other texts (markers) it has seen.
    final class Received: Sendable {
        let numbers = Mutex<Set<Int>>([])
        private struct Markers {
            var seen: Set<String> = []
            var waiters: [UUID: (text: String, continuation: CheckedContinuation<Bool, Never>)] = [:]
        }
        private let markers = Mutex(Markers())
        let task = Mutex<Task<Void, Never>?>(nil)

        init(_ subscription: NATSSubscription) {
            let made = Task {
                for await message in subscription {
                    let text = String(decoding: message.payload, as: UTF8.self)
                    if let n = Int(text.trimmingCharacters(in: .whitespaces)) { self.numbers.withLock { _ = $0.insert(n) } } else { self.saw(text) }
                }
            }
            task.withLock { $0 = made }
        }

        private func saw(_ text: String) {
            let ready = markers.withLock { state in
                state.seen.insert(text)
                let ready = state.waiters.filter { $0.value.text == text }
                for id in ready.keys { state.waiters[id] = nil }
                return ready.values.map(\.continuation)
            }
            for waiter in ready { waiter.resume(returning: true) }
        }

        /// Whether the marker `text` came (false: the waiting task was cancelled first).
        func seen(_ text: String) async -> Bool {
            let id = UUID()
            return await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                    let now: Bool? = markers.withLock { state in
                        if state.seen.contains(text) { return true }
                        if Task.isCancelled { return false }
                        state.waiters[id] = (text, continuation)
                        return nil
                    }
                    if let now { continuation.resume(returning: now) }
                }
            } onCancel: {
                markers.withLock { $0.waiters.removeValue(forKey: id) }?.continuation.resume(returning: false)
            }
        }

        /// Waits for the marker `text` (the test fails, not hangs, if it never comes).
        func marker(_ text: String) async throws {
            let arrived = try await NATSClientTests.withHangGuard { await self.seen(text) }
            guard arrived else { throw ChildError("'\(text)' did not arrive") }
        }
    }

    /// Publishes a probe until every subscription of `received` has it: a subscription's
    /// interest reaches the other servers of a cluster a moment after it is made, and nothing
    /// tells when. Each round waits up to 50 ms before publishing again (a minute in all: a bound,
    /// not a measurement).
    static func probe(_ publisher: NATSClient, _ subject: String, until received: [Received]) async throws {
        for _ in 0..<1200 {
            try await publisher.publish(subject, payload: Array("probe".utf8))
            try await publisher.flush(timeout: .hangGuard)
            let arrived = await withTaskGroup(of: Bool.self) { group in
                group.addTask {
                    for r in received where !(await r.seen("probe")) { return false }
                    return true
                }
                group.addTask {
                    try? await Task.sleep(for: .milliseconds(50))
                    return false
                }
                let first = await group.next() ?? false
                group.cancelAll()
                return first
            }
            if arrived { return }
        }
        throw ChildError("the cluster never routed '\(subject)' to every subscriber")
    }

    /// kill -9 of the server a publisher is connected to, between two of 10,000 publishes each
    /// followed by a flush: the publisher reconnects to another server, and every message whose
    /// flush succeeded reaches the subscribers on the two surviving servers.
    ///
    /// The kill falls between two flushed publishes rather than at any instant: core NATS is at
    /// most once, and a server killed right after answering a flush may not yet have passed the
    /// message to its routes (the PONG and the route's bytes are written in no set order).
    @Test func aClusterFailoverLosesNoConfirmedMessage() async throws {
        let servers = try await NATSServers(count: 3)
        defer { Task { await servers.shutdown() } }
        let left = try await NATSClientTests.connect([servers.urls[1]])
        let right = try await NATSClientTests.connect([servers.urls[2]])
        let received = [Received(try await left.subscribe("failover")), Received(try await right.subscribe("failover"))]
        try await left.flush(timeout: .hangGuard)
        try await right.flush(timeout: .hangGuard)
        let publisher = try await NATSClientTests.connect(servers.urls)
        #expect(await publisher.connectedServer == servers.urls[0])
        let events = await publisher.events()
        try await Self.probe(publisher, "failover", until: received)

        var confirmed: [Int] = []
        for n in 0..<3000 {
            try await publisher.publish("failover", payload: Array("\(n)".utf8))
            try await publisher.flush(timeout: .hangGuard)
            confirmed.append(n)
        }
        try await publisher.publish("failover", payload: Array("before".utf8))
        try await publisher.flush(timeout: .hangGuard)
        for r in received { try await r.marker("before") }
        await servers.kill9(0)
        var failed = 0
        for n in 3000..<10_000 {
            try await publisher.publish("failover", payload: Array("\(n)".utf8))
            do {
                try await publisher.flush(timeout: .hangGuard)
                confirmed.append(n)
            } catch let error as NATSError where error.kind == .connectionLost {
                failed += 1  // sent on the dead connection: unknown, not counted
            }
        }
        try await publisher.publish("failover", payload: Array("after".utf8))
        try await publisher.flush(timeout: .hangGuard)
        for r in received { try await r.marker("after") }
        for r in received {
            let numbers = r.numbers.withLock { $0 }
            let missing = confirmed.filter { !numbers.contains($0) }
            #expect(missing.isEmpty, "\(missing.count) confirmed messages lost, the first \(missing.prefix(10))")
        }
        #expect(confirmed.count >= 10_000 - failed && failed < 100, "\(failed) flushes failed")
        let now = await publisher.connectedServer
        #expect(now == servers.urls[1] || now == servers.urls[2], "\(now ?? "none")")
        var sawReconnect = false
        for await event in events {
            if case .reconnected = event { sawReconnect = true; break }
        }
        #expect(sawReconnect)
        await publisher.close()
        await left.close()
        await right.close()
    }

    /// The server restarts while the client is subscribed: the subscription is made again with
    /// no step of the owner's; publishes made while it was down are held and sent after (and a
    /// publish past the held bound is an error, not a silent loss).
    @Test func aRestartedServerGetsTheSubscriptionsAndTheHeldPublishes() async throws {
        let servers = try await NATSServers()
        defer { Task { await servers.shutdown() } }
        let client = try await NATSClientTests.connect(servers.urls) { $0.reconnectBufferSize = 1000 }
        let events = await client.events()
        let received = Received(try await client.subscribe("restart"))
        try await client.flush(timeout: .hangGuard)
        await servers.kill9(0)
        for await event in events {
            if case .disconnected = event { break }
        }
        for n in 0..<10 { try await client.publish("restart", payload: Array("\(n)".utf8) + [UInt8](repeating: 0x20, count: 40)) }
        await #expect { try await client.publish("restart", payload: [UInt8](repeating: 1, count: 600)) } throws: { error in
            (error as? NATSError)?.kind == .reconnectBufferFull
        }
        try servers.start(0)
        try await servers.waitUntilReady(0)
        for await event in events {
            if case .reconnected = event { break }
        }
        try await client.publish("restart", payload: Array("done".utf8))
        try await client.flush(timeout: .hangGuard)
        try await received.marker("done")
        #expect(received.numbers.withLock { $0 } == Set(0..<10), "the held publishes were sent after the subscription")
        await client.close()
    }

    /// A server that stops answering (SIGSTOP) leaves PINGs unanswered: the connection is stale,
    /// closed, and made again to the other server of the cluster — one the client was never
    /// given, but learned from the cluster's INFO (`connect_urls`).
    @Test func aServerThatStopsAnsweringIsLeftForOneTheClusterNamed() async throws {
        let servers = try await NATSServers(count: 2)
        defer {
            servers.signal(0, SIGCONT)
            Task { await servers.shutdown() }
        }
        let client = try await NATSClientTests.connect([servers.urls[0]]) {
            $0.pingInterval = .milliseconds(100)
            $0.maxPingsOut = 2
        }
        let events = await client.events()
        let received = Received(try await client.subscribe("alive"))
        try await client.flush(timeout: .hangGuard)
        servers.signal(0, SIGSTOP)
        var reconnectedTo: String?
        for await event in events {
            if case .reconnected(let server) = event { reconnectedTo = server; break }
        }
        #expect(reconnectedTo == servers.urls[1])
        try await client.publish("alive", payload: Array("here".utf8))
        try await client.flush(timeout: .hangGuard)
        try await received.marker("here")
        servers.signal(0, SIGCONT)
        await client.close()
    }

    /// A client closed while it reconnects stays closed when its server comes back.
    @Test func aClientClosedWhileReconnectingStaysClosed() async throws {
        let servers = try await NATSServers()
        defer { Task { await servers.shutdown() } }
        let client = try await NATSClientTests.connect(servers.urls)
        let events = await client.events()
        await servers.kill9(0)
        for await event in events {
            if case .disconnected = event { break }
        }
        await client.close()
        var last: NATSEvent?
        for await event in events { last = event }
        #expect(last == .closed)
        try servers.start(0)
        try await servers.waitUntilReady(0)
        #expect(await client.connectedServer == nil)
        await #expect { try await client.publish("after", payload: []) } throws: { error in (error as? NATSError)?.kind == .closed }
    }
}
