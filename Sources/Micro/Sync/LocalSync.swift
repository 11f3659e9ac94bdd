public import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Locks for the processes of one host (`MICRO_SYNC=local`, the default): a lock is an advisory
/// `flock(2)` on `DIR/<id>.lock`, so the kernel releases it when its holder dies, however it
/// dies; the fencing token is a counter in `DIR/<id>.token`, incremented by each holder while it
/// holds the lock (so it only grows, across processes and restarts). A waiter tries again after a
/// pause growing from 1 ms to 50 ms (the kernel says nothing when a flock is released).
///
/// `DIR` is `MICRO_SYNC_ADDRESS`, else `$XDG_RUNTIME_DIR/micro/locks`, else
/// `$XDG_CACHE_HOME/micro/locks`, else `~/.cache/micro/locks`. The TTL does not apply: a living
/// holder keeps its lock, a dead one has none.
public final class LocalSync: Sync {
    public let directory: URL

    public init(directory: URL) {
        self.directory = directory
    }

    public var name: String { "local" }

    /// The directory the environment names (see the type's documentation).
    public static func defaultDirectory(_ environment: [String: String] = MicroConfig.process.frameworkEnvironment) -> URL {
        func set(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        if let dir = set("MICRO_SYNC_ADDRESS") { return URL(fileURLWithPath: dir) }
        if let runtime = set("XDG_RUNTIME_DIR") { return URL(fileURLWithPath: runtime).appendingPathComponent("micro/locks") }
        let cache = set("XDG_CACHE_HOME").map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: set("HOME") ?? NSHomeDirectory()).appendingPathComponent(".cache")
        return cache.appendingPathComponent("micro/locks")
    }

    /// A file name for any id: letters, digits, `.`, `_` and `-` as they are, other bytes as %XX.
    static func fileName(_ id: String) -> String {
        var name = ""
        for byte in id.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "_"), UInt8(ascii: "-"):
                name.append(Character(UnicodeScalar(byte)))
            case UInt8(ascii: ".") where !name.isEmpty:
                name.append(".")
            default:
                name += String(format: "%%%02X", byte)
            }
        }
        return name
    }

    public func lock(_ id: String, ttl: Duration, wait: Duration) async throws -> HeldLock {
        try SyncError.check(id: id, ttl: ttl, wait: wait)
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw SyncError(.unavailable, "cannot make the lock directory \(directory.path): \(error.localizedDescription)")
        }
        let base = directory.appendingPathComponent(Self.fileName(id)).path
        let fd = open(base + ".lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SyncError(.unavailable, "cannot open \(base).lock: \(String(cString: strerror(errno)))") }
        let deadline = ContinuousClock.now + wait
        var pause = Duration.milliseconds(1)
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let failure = errno
            guard failure == EWOULDBLOCK || failure == EINTR else {
                close(fd)
                throw SyncError(.unavailable, "cannot lock \(base).lock: \(String(cString: strerror(failure)))")
            }
            let now = ContinuousClock.now
            guard now < deadline else {
                close(fd)
                throw SyncError(.timeout, "lock \(id) is held by another process; waited \(wait)")
            }
            do {
                try await Task.sleep(until: min(deadline, now + pause))
            } catch {
                close(fd)
                throw error
            }
            pause = min(pause * 2, .milliseconds(50))
        }
        let token: UInt64
        do {
            token = try Self.nextToken(base + ".token")
        } catch {
            flock(fd, LOCK_UN)
            close(fd)
            throw error
        }
        let descriptor = Mutex<Int32?>(fd)
        return HeldLock(id: id, token: token) {
            guard let fd = descriptor.withLock({ d in defer { d = nil }; return d }) else { return }
            flock(fd, LOCK_UN)
            close(fd)
        }
    }

    /// Reads the counter beside the lock, adds one and writes it back (durably: a token must not
    /// go back after a crash), while the caller holds the lock.
    static func nextToken(_ path: String) throws(SyncError) -> UInt64 {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SyncError(.unavailable, "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = pread(fd, &buffer, buffer.count, 0)
        guard n >= 0 else { throw SyncError(.unavailable, "cannot read \(path): \(String(cString: strerror(errno)))") }
        let text = String(decoding: buffer[..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let last = text.isEmpty ? 0 : UInt64(text) else {
            throw SyncError(.unavailable, "\(path) holds no token counter ('\(text)'); remove it only if no lock \(path) is in use")
        }
        let next = last + 1
        let out = Array("\(next)\n".utf8)
        guard pwrite(fd, out, out.count, 0) == out.count, ftruncate(fd, off_t(out.count)) == 0, fsync(fd) == 0 else {
            throw SyncError(.unavailable, "cannot write \(path): \(String(cString: strerror(errno)))")
        }
        return next
    }
}
