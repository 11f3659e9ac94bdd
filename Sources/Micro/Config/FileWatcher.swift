import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Watches files and calls `onChange` when one is written or replaced (inotify on their
/// directories, so a file renamed into place counts; a thread of its own blocks in poll(2),
/// nothing polls on a timer). A service reloads its TLS configuration from it (a half-done
/// rotation, a new key beside the old certificate, fails to load and changes nothing; the next
/// write completes it), and its configuration file.
///
/// Threading: `onChange` runs on the watcher's own thread.
final class FileWatcher: Sendable {
    private let inotify: Int32
    private let wake: [Int32]
    private let stopped = Atomic<Bool>(false)
    private let names: Set<String>
    private let onChange: @Sendable () -> Void

    init(paths: [String], onChange: @escaping @Sendable () -> Void) throws {
        inotify = inotify_init1(Int32(IN_CLOEXEC | IN_NONBLOCK))
        var fds: [Int32] = [-1, -1]
        guard inotify >= 0 else { throw MicroError(id: "micro.watch", code: 500, detail: "inotify: \(String(cString: strerror(errno)))") }
        guard pipe(&fds) == 0 else {
            close(inotify)
            throw MicroError(id: "micro.watch", code: 500, detail: "pipe: \(String(cString: strerror(errno)))")
        }
        wake = fds
        let urls = paths.map { URL(fileURLWithPath: $0) }
        names = Set(urls.map(\.lastPathComponent))
        self.onChange = onChange
        for directory in Set(urls.map { $0.deletingLastPathComponent().path }) {
            _ = inotify_add_watch(inotify, directory, UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE))
        }
        Thread.detachNewThread { self.run() }
    }

    /// Any thread; idempotent. The thread closes the descriptors as it ends.
    func stop() {
        if stopped.exchange(true, ordering: .acquiringAndReleasing) { return }
        var byte: UInt8 = 1
        _ = write(wake[1], &byte, 1)
    }

    private func run() {
        defer {
            close(inotify)
            close(wake[0])
            close(wake[1])
        }
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while !stopped.load(ordering: .acquiring) {
            var fds = [pollfd(fd: inotify, events: Int16(POLLIN), revents: 0), pollfd(fd: wake[0], events: Int16(POLLIN), revents: 0)]
            let n = poll(&fds, 2, -1)
            if n < 0 && errno != EINTR { return }
            if fds[1].revents != 0 { return }
            var touched = false
            while true {
                let got = read(inotify, &buffer, buffer.count)
                if got <= 0 { break }
                // struct inotify_event: wd, mask, cookie, len (4 bytes each), then len bytes of name
                var offset = 0
                while offset + 16 <= got {
                    let length = buffer.withUnsafeBytes { Int($0.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self)) }
                    let nameBytes = buffer[(offset + 16)..<min(got, offset + 16 + length)].prefix { $0 != 0 }
                    if names.contains(String(decoding: nameBytes, as: UTF8.self)) { touched = true }
                    offset += 16 + length
                }
            }
            if touched && !stopped.load(ordering: .acquiring) { onChange() }
        }
    }
}
