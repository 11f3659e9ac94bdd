public import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Locks and elections for the processes of one host (`MICRO_SYNC=local`, the default): a lock is
/// an advisory `flock(2)` on `DIR/<id>.lock`, so the kernel releases it when its holder dies,
/// however it dies; the fencing token is a counter in `DIR/<id>.token`, incremented by each
/// holder while it holds the lock (so it only grows, across processes and restarts). A waiter
/// tries again after a pause growing from 1 ms to 50 ms (the kernel says nothing when a flock is
/// released). Elections: see ``campaign(_:identity:ttl:)``.
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
        let base = try files(for: id)
        let (fd, token) = try await take(base + ".lock", counter: base + ".token", wait: wait) {
            "lock \(id) is held by another process; waited \(wait)"
        }
        let descriptor = Mutex<Int32?>(fd)
        return HeldLock(id: id, token: token) {
            guard let fd = descriptor.withLock({ d in defer { d = nil }; return d }) else { return }
            flock(fd, LOCK_UN)
            Glibc.close(fd)
        }
    }

    /// An election is a lock on `<id>.election` with its terms counted in `<id>.term`; the
    /// leader writes its identity and term to `<id>.leader` (replaced whole, never half
    /// written) and removes it when it resigns. A leader that died leaves the file, but not its
    /// lock: observers believe the file only while its lock is held.
    public func campaign(_ id: String, identity: String, ttl: Duration) async throws -> Leadership {
        try SyncError.check(election: id, identity: identity, ttl: ttl)
        let base = try files(for: id)
        let (fd, term) = try await take(base + ".election", counter: base + ".term", wait: nil) { "" }
        let leader = base + ".leader"
        do {
            try Self.replace(leader, with: JSONEncoder().encode(Leader(identity: identity, term: term)))
        } catch {
            flock(fd, LOCK_UN)
            Glibc.close(fd)
            throw SyncError(.unavailable, "cannot write \(leader): \(error)")
        }
        let descriptor = Mutex<Int32?>(fd)
        let lock = HeldLock(id: id, token: term) {
            guard let fd = descriptor.withLock({ d in defer { d = nil }; return d }) else { return }
            unlink(leader)  // while still holding the lock: no next leader wrote it yet
            flock(fd, LOCK_UN)
            Glibc.close(fd)
        }
        return Leadership(election: id, identity: identity, lock: lock)
    }

    /// Looks every 100 ms (the kernel says nothing when a lock is released by a dead process).
    public func leaders(_ id: String) -> AsyncStream<Leader?> {
        let (stream, continuation) = AsyncStream<Leader?>.makeStream()
        let task = Task { [directory] in
            var last: Leader?? = .none
            while !Task.isCancelled {
                // nothing to tell while a new leader is between its lock and its file
                if let now = Self.currentLeader(directory.appendingPathComponent(Self.fileName(id)).path), now != last {
                    continuation.yield(now)
                    last = now
                }
                try? await Task.sleep(for: .milliseconds(100))
            }
            continuation.finish()
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    /// The leader of the election whose files start with `base`: `.some(nil)` when no one holds
    /// its lock, nil when that cannot be told now (a new leader has not written its file yet).
    static func currentLeader(_ base: String) -> Leader?? {
        let fd = open(base + ".election", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .some(nil) }  // no one ever campaigned
        defer { Glibc.close(fd) }
        // a shared lock had at once: no holder (given back at once: candidates retry within 50 ms)
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return .some(nil)
        }
        guard let data = FileManager.default.contents(atPath: base + ".leader"),
              let leader = try? JSONDecoder().decode(Leader.self, from: data),
              let counter = try? String(contentsOfFile: base + ".term", encoding: .utf8),
              UInt64(counter.trimmingCharacters(in: .whitespacesAndNewlines)) == leader.term
        else { return nil }
        return .some(leader)
    }

    /// The path of `id`'s files without their suffix, in a directory made if missing.
    private func files(for id: String) throws(SyncError) -> String {
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw SyncError(.unavailable, "cannot make the lock directory \(directory.path): \(error.localizedDescription)")
        }
        return directory.appendingPathComponent(Self.fileName(id)).path
    }

    /// Locks file `path` within `wait` (nil: without bound), trying again after a pause growing
    /// from 1 ms to 50 ms, and counts the next token in `counter`; returns the open descriptor
    /// that holds the lock and the token.
    private func take(_ path: String, counter: String, wait: Duration?, busy: () -> String) async throws -> (Int32, UInt64) {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SyncError(.unavailable, "cannot open \(path): \(String(cString: strerror(errno)))") }
        let deadline = wait.map { ContinuousClock.now + $0 }
        var pause = Duration.milliseconds(1)
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let failure = errno
            guard failure == EWOULDBLOCK || failure == EINTR else {
                Glibc.close(fd)
                throw SyncError(.unavailable, "cannot lock \(path): \(String(cString: strerror(failure)))")
            }
            let now = ContinuousClock.now
            if let deadline, now >= deadline {
                Glibc.close(fd)
                throw SyncError(.timeout, busy())
            }
            do {
                try await Task.sleep(until: deadline.map { min($0, now + pause) } ?? now + pause)
            } catch {
                Glibc.close(fd)
                throw error
            }
            pause = min(pause * 2, .milliseconds(50))
        }
        do {
            return (fd, try Self.nextToken(counter))
        } catch {
            flock(fd, LOCK_UN)
            Glibc.close(fd)
            throw error
        }
    }

    /// Writes `data` to `path` whole: a reader sees the old file or the new one, never a part.
    static func replace(_ path: String, with data: Data) throws {
        let temporary = path + ".\(getpid()).new"
        try data.write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, path) == 0 else {
            let failure = String(cString: strerror(errno))
            unlink(temporary)
            throw SyncError(.unavailable, "cannot rename \(temporary): \(failure)")
        }
    }

    /// Reads the counter beside the lock, adds one and writes it back (durably: a token must not
    /// go back after a crash), while the caller holds the lock.
    static func nextToken(_ path: String) throws(SyncError) -> UInt64 {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SyncError(.unavailable, "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { Glibc.close(fd) }
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
