import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A plain TCP client for sending exact bytes (pipelining, malformed input) and reading
/// HTTP/1.1 responses.
public final class RawConnection {
    public let fd: Int32
    private var buffer: [UInt8] = []
    private var open = true

    public init(port: Int, host: String = "127.0.0.1") throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ChildError("socket: \(errno)") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &addr.sin_addr)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            close(fd)
            throw ChildError("connect: \(String(cString: strerror(errno)))")
        }
    }

    deinit { if open { close(fd) } }

    public func send(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw ChildError("send: \(String(cString: strerror(errno)))") }
            off += n
        }
    }

    public func send(_ text: String) throws { try send(Array(text.utf8)) }

    /// Half-closes: the peer reads EOF, this side can still read.
    public func closeWrite() { shutdown(fd, Int32(SHUT_WR)) }

    /// Closes with a reset (SO_LINGER 0): the peer sees ECONNRESET, not an orderly end.
    public func reset() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        Glibc.close(fd)
        open = false
    }

    /// Reads what arrives within `timeout`; nil at EOF. Throws on reset. The wait is off the
    /// cooperative pool (``Blocking``).
    public func read(timeout: Duration = .seconds(120)) async throws -> [UInt8]? {
        let fd = self.fd
        let ms = Int32(timeout.components.seconds * 1000)
        let result: Result<[UInt8]?, ChildError> = await Blocking.run {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, ms) > 0 else { return .failure(ChildError("no data within \(timeout)")) }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = recv(fd, &chunk, chunk.count, 0)
            if n < 0 { return .failure(ChildError("recv: \(String(cString: strerror(errno)))")) }
            return .success(n == 0 ? nil : Array(chunk[..<n]))
        }
        return try result.get()
    }

    /// Reads until the peer closes; returns everything received.
    public func readToEnd(timeout: Duration = .seconds(120)) async throws -> [UInt8] {
        var all = buffer
        buffer = []
        while let chunk = try await read(timeout: timeout) { all += chunk }
        return all
    }

    public struct Response {
        public var status: Int
        public var headers: [String: String]
        public var body: String
    }

    /// Reads one HTTP/1.1 response with a content-length or a chunked body (its chunks joined).
    public func readResponse(timeout: Duration = .seconds(120)) async throws -> Response {
        while true {
            if let response = try parse() { return response }
            guard let chunk = try await read(timeout: timeout) else { throw ChildError("connection closed mid-response") }
            buffer += chunk
        }
    }

    private func parse() throws -> Response? {
        let sep: [UInt8] = [13, 10, 13, 10]
        guard let end = buffer.indices.dropLast(3).first(where: { Array(buffer[$0..<$0 + 4]) == sep }) else { return nil }
        let head = String(decoding: buffer[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        let parts = head[0].split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { throw ChildError("bad status line: \(head[0])") }
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        if headers["transfer-encoding"]?.lowercased() == "chunked" {
            guard let (body, used) = try Self.dechunk(buffer[(end + 4)...]) else { return nil }
            buffer.removeSubrange(..<(end + 4 + used))
            return Response(status: status, headers: headers, body: String(decoding: body, as: UTF8.self))
        }
        let length = Int(headers["content-length"] ?? "0") ?? 0
        guard buffer.count >= end + 4 + length else { return nil }
        let body = String(decoding: buffer[(end + 4)..<(end + 4 + length)], as: UTF8.self)
        buffer.removeSubrange(..<(end + 4 + length))
        return Response(status: status, headers: headers, body: body)
    }
}

extension RawConnection {
    /// A chunked body from the start of `bytes`: its data and the bytes it took, or nil if it is
    /// not all there yet. Throws on bad framing.
    static func dechunk(_ bytes: ArraySlice<UInt8>) throws -> ([UInt8], Int)? {
        var body: [UInt8] = []
        var at = bytes.startIndex
        while true {
            guard let lineEnd = bytes[at...].indices.dropLast().first(where: { bytes[$0] == 13 && bytes[$0 + 1] == 10 }) else { return nil }
            let sizeText = String(decoding: bytes[at..<lineEnd], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else {
                throw ChildError("bad chunk size line: \(sizeText)")
            }
            let dataStart = lineEnd + 2
            if size == 0 {
                // no trailers expected: the empty line ends the body
                guard bytes.endIndex - dataStart >= 2 else { return nil }
                guard bytes[dataStart] == 13, bytes[dataStart + 1] == 10 else { throw ChildError("trailers after the last chunk") }
                return (body, dataStart + 2 - bytes.startIndex)
            }
            guard bytes.endIndex - dataStart >= size + 2 else { return nil }
            body += bytes[dataStart..<dataStart + size]
            guard bytes[dataStart + size] == 13, bytes[dataStart + size + 1] == 10 else { throw ChildError("a chunk not followed by CRLF") }
            at = dataStart + size + 2
        }
    }
}

/// A loopback port that refuses connections for as long as this value lives: bound, never
/// listened on. Holding the socket keeps other tests (running in parallel) from binding the port
/// meanwhile, which a port bound and released at once did not.
public final class RefusingPort: Sendable {
    public let port: Int
    private let fd: Int32

    public init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ChildError("socket: \(errno)") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else {
            close(fd)
            throw ChildError("bind: \(errno)")
        }
        self.fd = fd
        self.port = Int(UInt16(bigEndian: addr.sin_port))
    }

    deinit { close(fd) }
}
