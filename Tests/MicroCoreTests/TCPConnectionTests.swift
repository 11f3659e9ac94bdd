import Foundation
import MicroCore
import MicroTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The core's byte-stream client connection against real peers: nats-server (plaintext, and TLS
/// begun after its INFO as NATS does), and sockets of the kernel's that the test holds itself
/// (a listener that never answers, one whose reader stalls).
@Suite struct TCPConnectionTests {
    /// What a connection's owner hears, as an async sequence of events.
    final class Events: TCPConnectionDelegate, @unchecked Sendable {
        // @unchecked Sendable: called on the loop's thread only; the continuation is thread-safe.
        enum Event: Sendable, Equatable {
            case data([UInt8])
            case writable
            case closed(String?)
        }

        let stream: AsyncStream<Event>
        private let continuation: AsyncStream<Event>.Continuation

        init() { (stream, continuation) = AsyncStream.makeStream() }

        func received(_ bytes: UnsafeRawBufferPointer) { continuation.yield(.data(Array(bytes))) }
        func writable() { continuation.yield(.writable) }
        func closed(error: MicroCoreError?) {
            continuation.yield(.closed(error?.message))
            continuation.finish()
        }

        /// Bytes read until they contain `text`; nil if the connection closes first.
        func read(until text: String) async -> String? {
            var seen: [UInt8] = []
            for await event in stream {
                if case .data(let bytes) = event { seen += bytes }
                if String(decoding: seen, as: UTF8.self).contains(text) { return String(decoding: seen, as: UTF8.self) }
                if case .closed = event { return nil }
            }
            return nil
        }

        /// The `closed` event's error (nil: an orderly end), skipping what comes before.
        func closure() async -> String?? {
            for await event in stream { if case .closed(let why) = event { return .some(why) } }
            return .none
        }
    }

    /// A connect timeout only a hung test reaches (a loaded machine is slow, not broken).
    static let patient = TCPConnection.Options(connectTimeout: .seconds(60))

    /// Runs `body` on the connection's loop.
    static func onLoop<T: Sendable>(_ connection: TCPConnection, _ body: @escaping @Sendable (TCPConnection) -> T) async -> T {
        await withCheckedContinuation { continuation in
            connection.loop.execute { continuation.resume(returning: body(connection)) }
        }
    }

    @Test func talksToARealServerAndEndsInOrder() async throws {
        let servers = try await NATSServers()
        defer { Task { await servers.shutdown() } }
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.shutdown() }
        let events = Events()
        let connection = try await TCPConnection.connect(to: "127.0.0.1", port: servers.clientPorts[0], on: group.next(), options: Self.patient, delegate: events)
        let info = try #require(await events.read(until: "\r\n"))
        #expect(info.hasPrefix("INFO {"), "\(info)")
        #expect(await Self.onLoop(connection) { $0.write(Array("CONNECT {\"verbose\":false}\r\nPING\r\n".utf8)) } == .queued)
        #expect(await events.read(until: "PONG\r\n") != nil)
        // this side's orderly close: nothing written after it, and the end is no error
        await Self.onLoop(connection) { $0.close() }
        #expect(await events.closure() == .some(nil))
        #expect(await Self.onLoop(connection) { $0.write(Array("PING\r\n".utf8)) } == .closed)
    }

    @Test func theServersEndIsReported() async throws {
        let servers = try await NATSServers()
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.shutdown() }
        let events = Events()
        _ = try await TCPConnection.connect(to: "127.0.0.1", port: servers.clientPorts[0], on: group.next(), options: Self.patient, delegate: events)
        _ = await events.read(until: "\r\n")
        await servers.kill9(0)
        #expect(await events.closure() == .some(nil), "the peer's end is an orderly one")
        await servers.shutdown()
    }

    /// NATS 2.9 says `tls_required` in its INFO and the client begins TLS on the same connection.
    @Test func beginsTLSOnAnOpenConnection() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("micro-tcp-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let files = try await TestCertificates.make(in: dir)
        let servers = try await NATSServers(options: .init(tls: (files["server.crt"]!, files["server.key"]!)))
        defer { Task { await servers.shutdown() } }
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.shutdown() }
        let trusting = try TLSContext(TLSConfig(trustRoots: .file(files["ca.crt"]!)), server: false)
        let events = Events()
        let connection = try await TCPConnection.connect(to: "127.0.0.1", port: servers.clientPorts[0], on: group.next(), options: Self.patient, delegate: events)
        let info = try #require(await events.read(until: "\r\n"))
        #expect(info.contains("\"tls_required\":true"), "\(info)")
        try await withTaskExecutorPreference(connection.loop) {
            try await connection.startTLS(trusting)
            #expect(connection.isTLS)
            #expect(connection.peerIdentity == "server")
            connection.write(Array("CONNECT {\"verbose\":false}\r\nPING\r\n".utf8))
        }
        #expect(await events.read(until: "PONG\r\n") != nil)
        await Self.onLoop(connection) { $0.close() }
        #expect(await events.closure() == .some(nil))

        // a server certificate from another CA: refused, and said why
        let other = try TLSContext(TLSConfig(trustRoots: .file(files["other.crt"]!)), server: false)
        let refused = Events()
        let second = try await TCPConnection.connect(to: "127.0.0.1", port: servers.clientPorts[0], on: group.next(), options: Self.patient, delegate: refused)
        _ = await refused.read(until: "\r\n")
        await #expect { try await withTaskExecutorPreference(second.loop) { try await second.startTLS(other) } } throws: { error in
            "\(error)".contains("TLS to 127.0.0.1:\(servers.clientPorts[0]) failed") && "\(error)".contains("certificate")
        }
        #expect(await refused.closure() != nil)
    }

    @Test func aPortNobodyListensOnIsRefused() async throws {
        let port = try EtcdCluster.freePorts(1)[0]
        defer { EtcdCluster.release([port]) }
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.shutdown() }
        await #expect { _ = try await TCPConnection.connect(to: "127.0.0.1", port: port, on: group.next(), delegate: Events()) } throws: { error in
            "\(error)" == "cannot connect to 127.0.0.1:\(port): connection refused"
        }
        await #expect { _ = try await TCPConnection.connect(to: "127.0.0.1", port: 0, on: group.next(), delegate: Events()) } throws: { error in
            "\(error)".contains("not a port")
        }
    }

    /// A listener of the kernel's that accepts nothing: TCP connects (the backlog), the TLS
    /// handshake never ends, and the connect timeout says so.
    @Test func aHandshakeThatNeverEndsTimesOut() async throws {
        let (listener, port) = try Self.listen()
        defer { Glibc.close(listener) }
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.shutdown() }
        let tls = try TLSContext(TLSConfig(), server: false)
        let events = Events()
        await #expect {
            _ = try await TCPConnection.connect(to: "127.0.0.1", port: port, on: group.next(),
                                                options: .init(connectTimeout: .milliseconds(200), tls: tls), delegate: events)
        } throws: { error in
            "\(error)" == "cannot connect to 127.0.0.1:\(port): no connection within 200 ms"
        }
        #expect(await events.closure() != nil)
    }

    /// Output past the high-water mark says `.full`; a reader that catches up brings `writable`,
    /// and every byte arrives in order; a graceful close sends what was queued before the end.
    @Test func backpressureAndAGracefulCloseLoseNothing() async throws {
        let (listener, port) = try Self.listen()
        defer { Glibc.close(listener) }
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.shutdown() }
        let events = Events()
        let connection = try await TCPConnection.connect(to: "127.0.0.1", port: port, on: group.next(),
                                                         options: .init(connectTimeout: .seconds(60), highWater: 64 * 1024), delegate: events)
        let peer = accept(listener, nil, nil)
        #expect(peer >= 0)
        // the reader below reads a descriptor of its own: should the test end early, the
        // shutdown ends it, and it never reads a socket that took this number meanwhile
        let reader = dup(peer)
        defer { shutdown(peer, Int32(SHUT_RDWR)); Glibc.close(peer) }
        // the peer reads nothing yet: 16 MiB in chunks of 64 KiB, until the connection says full
        let chunk = (0..<(64 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let written = await Self.onLoop(connection) { connection -> Int in
            var count = 0
            while count < 256 {
                count += 1
                if connection.write(chunk) == .full { break }
            }
            return count
        }
        #expect(written < 256, "the output never passed its mark")
        // the peer reads everything, off the cooperative pool; writable comes, then the rest and the end
        let received = Task { await Blocking.run { () -> [UInt8] in
            var all: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = recv(reader, &buffer, buffer.count, 0)
                if n <= 0 { break }
                all += buffer[..<n]
            }
            Glibc.close(reader)
            return all
        } }
        for await event in events.stream where event == .writable { break }
        await Self.onLoop(connection) { connection in
            connection.write(Array("the end".utf8))
            connection.close(graceful: true)
        }
        let all = await received.value
        #expect(all.count == written * chunk.count + 7)
        #expect(Array(all.prefix(chunk.count)) == chunk)
        #expect(String(decoding: all.suffix(7), as: UTF8.self) == "the end")
        #expect(await events.closure() == .some(nil))
    }

    /// `send` from any task waits while the output is past its mark: 16 MiB to a reader that
    /// takes its time arrive whole and in order, with the output never far above the mark.
    @Test func sendWaitsForTheOutputToDrain() async throws {
        let (listener, port) = try Self.listen()
        defer { Glibc.close(listener) }
        let group = try EventLoopGroup(numberOfThreads: 1)
        defer { group.shutdown() }
        let events = Events()
        let connection = try await TCPConnection.connect(to: "127.0.0.1", port: port, on: group.next(),
                                                         options: .init(connectTimeout: .seconds(60), highWater: 64 * 1024), delegate: events)
        let peer = accept(listener, nil, nil)
        #expect(peer >= 0)
        // the reader below reads a descriptor of its own: should the test end early, the
        // shutdown ends it, and it never reads a socket that took this number meanwhile
        let reader = dup(peer)
        defer { shutdown(peer, Int32(SHUT_RDWR)); Glibc.close(peer) }
        let received = Task { await Blocking.run { () -> [UInt8] in
            var all: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)  // small reads: the sender outpaces it
            while all.count < 16 * 1024 * 1024 {
                let n = recv(reader, &buffer, buffer.count, 0)
                if n <= 0 { break }
                all += buffer[..<n]
            }
            Glibc.close(reader)
            return all
        } }
        var most = 0
        for i in 0..<256 {
            try await connection.send([UInt8](repeating: UInt8(i), count: 64 * 1024))
            most = max(most, await Self.onLoop(connection) { $0.pendingBytes })
        }
        let all = await received.value
        #expect(all.count == 16 * 1024 * 1024)
        let chunk = 64 * 1024
        let inOrder = (0..<256).allSatisfy { (i: Int) -> Bool in
            let first: UInt8 = all[i * chunk], last: UInt8 = all[i * chunk + chunk - 1]
            return first == UInt8(i) && last == UInt8(i)
        }
        #expect(inOrder, "the chunks arrived in order")
        #expect(most <= 2 * 64 * 1024, "the output held \(most) bytes")
        await Self.onLoop(connection) { $0.close() }
        #expect(await events.closure() == .some(nil))
        await #expect(throws: MicroCoreError.self) { try await connection.send([1]) }
    }

    /// A listening socket on a free loopback port that accepts only when the test says.
    static func listen() throws -> (Int32, Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard fd >= 0, bound == 0, Glibc.listen(fd, 16) == 0 else { throw ChildError("cannot listen: \(String(cString: strerror(errno)))") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }
}
