public import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The embedded default registry: services on one machine find each other through a directory.
///
/// Each node is one file, `DIR/SERVICE/NODE.json`, holding its record and its expiry time; it is
/// written to a temporary file and renamed into place, so readers never see half a record and any
/// number of processes may register and deregister at once. A node whose process died without
/// deregistering is ignored (and removed) once its TTL has passed. Watches use inotify, woken
/// also at the next expiry: no polling. Nothing here sends a packet.
///
/// The directory is `MICRO_REGISTRY_ADDRESS` if set, else `$XDG_CACHE_HOME/micro/registry`, else
/// `~/.cache/micro/registry`.
public final class LocalRegistry: Registry {
    public let directory: URL

    public init(directory: URL? = nil) {
        self.directory = directory ?? Self.defaultDirectory()
    }

    public static func defaultDirectory(environment: [String: String] = MicroConfig.process.frameworkEnvironment) -> URL {
        if let address = environment["MICRO_REGISTRY_ADDRESS"], !address.isEmpty {
            return URL(fileURLWithPath: address)
        }
        let cache = environment["XDG_CACHE_HOME"].map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache")
        return cache.appendingPathComponent("micro").appendingPathComponent("registry")
    }

    struct File: Codable {
        var service: ServiceRecord
        var expires: Double  // seconds since 1970
    }

    public func register(_ service: ServiceRecord, ttl: Duration) async throws {
        let dir = serviceDirectory(service.name)
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let expires = Date().timeIntervalSince1970 + ttl.nanosecondsValue / 1e9
            for node in service.nodes {
                var record = service
                record.nodes = [node]
                let data = try JSONEncoder().encode(File(service: record, expires: expires))
                try data.write(to: dir.appendingPathComponent(Self.fileName(node.id)), options: .atomic)
            }
        } catch {
            throw MicroError(id: "micro.registry", code: 500, detail: "cannot register \(service.name) in \(directory.path): \(Self.describe(error))")
        }
    }

    /// A file error as the system says it ("No space left on device"), not Foundation's
    /// paraphrase.
    static func describe(_ error: any Error) -> String {
        let ns = error as NSError
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
        if let cocoa = error as? CocoaError {
            switch cocoa.code {
            case .fileWriteOutOfSpace: return String(cString: strerror(ENOSPC))
            case .fileWriteNoPermission: return String(cString: strerror(EACCES))
            case .fileWriteVolumeReadOnly: return String(cString: strerror(EROFS))
            default: break
            }
        }
        return ns.localizedDescription
    }

    public func deregister(_ service: ServiceRecord) async throws {
        let dir = serviceDirectory(service.name)
        for node in service.nodes {
            unlink(dir.appendingPathComponent(Self.fileName(node.id)).path)
        }
        // The service's directory stays: removing it would race with another process
        // registering a node of the same service.
    }

    public func getService(_ name: String) async throws -> [ServiceRecord] {
        mergeByVersion(scan(service: name).values.map(\.record).sorted { $0.nodes[0].id < $1.nodes[0].id })
    }

    public func listServices() async throws -> [ServiceRecord] {
        mergeByVersion(scan(service: nil).values.map(\.record).sorted { $0.nodes[0].id < $1.nodes[0].id })
            .sorted { ($0.name, $0.version) < ($1.name, $1.version) }
    }

    public func watch(service: String?, _ handler: @escaping @Sendable (RegistryEvent) -> Void) throws -> RegistryWatch {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let watcher = try DirectoryWatcher(registry: self, service: service, handler: handler)
        // the nodes present now are the baseline, taken before returning: every change after
        // this call is reported, none before it
        let baseline = watcher.arm()
        Thread.detachNewThread { watcher.run(from: baseline) }
        return RegistryWatch { watcher.stop() }
    }

    struct Live {
        var record: ServiceRecord  // holds one node
        var expires: Double
    }

    /// Live nodes by id. Expired files are removed on the way, but only if the file is still the
    /// one that was read (same inode): a process that refreshed it in the meantime keeps it.
    func scan(service: String?) -> [String: Live] {
        let fm = FileManager.default
        let dirs: [URL]
        if let service {
            dirs = [serviceDirectory(service)]
        } else {
            dirs = ((try? fm.contentsOfDirectory(atPath: directory.path)) ?? []).map { directory.appendingPathComponent($0) }
        }
        let now = Date().timeIntervalSince1970
        var nodes: [String: Live] = [:]
        for dir in dirs {
            for name in (try? fm.contentsOfDirectory(atPath: dir.path)) ?? [] where name.hasSuffix(".json") {
                let path = dir.appendingPathComponent(name).path
                guard let (bytes, inode) = Self.read(path), let file = try? JSONDecoder().decode(File.self, from: bytes),
                    let node = file.service.nodes.first
                else { continue }
                if file.expires < now {
                    var st = stat()
                    if stat(path, &st) == 0 && st.st_ino == inode { unlink(path) }
                    continue
                }
                nodes[node.id] = Live(record: file.service, expires: file.expires)
            }
        }
        return nodes
    }

    /// A file's bytes and inode (registry files are small; larger ones are not ours).
    private static func read(_ path: String) -> (Data, ino_t)? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size <= 1 << 20 else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            done += n
        }
        return (Data(bytes[..<done]), st.st_ino)
    }

    func serviceDirectory(_ name: String) -> URL {
        directory.appendingPathComponent(Self.fileName(name, suffix: ""))
    }

    /// Names become safe file names: [A-Za-z0-9._-] kept, everything else %XX.
    static func fileName(_ name: String, suffix: String = ".json") -> String {
        var out = ""
        for byte in name.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: ".") where !out.isEmpty:
                out.append(".")
            default:
                out += String(format: "%%%02X", byte)
            }
        }
        return out + suffix
    }
}

/// A watch over the registry directory on a thread of its own (blocking in poll(2) on inotify,
/// with a timeout at the next expiry).
final class DirectoryWatcher: Sendable {
    let registry: LocalRegistry
    let service: String?
    let handler: @Sendable (RegistryEvent) -> Void
    let inotify: Int32
    let wake: [Int32]
    let stopped = Atomic<Bool>(false)

    init(registry: LocalRegistry, service: String?, handler: @escaping @Sendable (RegistryEvent) -> Void) throws {
        self.registry = registry
        self.service = service
        self.handler = handler
        inotify = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        var fds: [Int32] = [-1, -1]
        guard inotify >= 0, pipe(&fds) == 0 else {
            throw MicroError(id: "micro.registry", code: 500, detail: "cannot watch \(registry.directory.path): \(String(cString: strerror(errno)))")
        }
        wake = fds
    }

    func stop() {
        if stopped.exchange(true, ordering: .acquiringAndReleasing) { return }
        var byte: UInt8 = 1
        _ = write(wake[1], &byte, 1)
    }

    private static let fileEvents = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE | IN_DELETE_SELF)

    private func watchDirectories() {
        _ = inotify_add_watch(inotify, registry.directory.path, UInt32(IN_CREATE | IN_MOVED_TO))
        if let service {
            _ = inotify_add_watch(inotify, registry.serviceDirectory(service).path, Self.fileEvents)
        } else {
            for name in (try? FileManager.default.contentsOfDirectory(atPath: registry.directory.path)) ?? [] {
                _ = inotify_add_watch(inotify, registry.directory.appendingPathComponent(name).path, Self.fileEvents)
            }
        }
    }

    /// (Re)arms the inotify watches, then scans: a change between the two is seen by the scan.
    func arm() -> [String: LocalRegistry.Live] {
        watchDirectories()
        return registry.scan(service: service)
    }

    func run(from baseline: [String: LocalRegistry.Live]) {
        defer {
            close(inotify)
            close(wake[0])
            close(wake[1])
        }
        var known = baseline.mapValues(\.record)
        var current = baseline
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while !stopped.load(ordering: .acquiring) {
            let next = current.values.map(\.expires).min()
            var timeout: Int32 = -1
            if let next {
                timeout = Int32(clamping: max(0, Int((next - Date().timeIntervalSince1970) * 1000) + 5))
            }
            var fds = [pollfd(fd: inotify, events: Int16(POLLIN), revents: 0), pollfd(fd: wake[0], events: Int16(POLLIN), revents: 0)]
            let n = poll(&fds, 2, timeout)
            if n < 0 && errno != EINTR { return }
            if fds[1].revents != 0 { return }
            while read(inotify, &buffer, buffer.count) > 0 {}  // drain; the rescan finds what changed
            current = arm()
            let records = current.mapValues(\.record)
            for event in diff(known, records) { handler(event) }
            known = records
        }
    }
}
