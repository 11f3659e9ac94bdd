import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Child processes without Foundation's Process (whose dispatch sources race with descriptors
/// that parallel tests close and reuse): posix_spawnp, a pipe or files for output, waitpid.
enum Spawn {
    struct Child {
        let pid: pid_t
        /// Read end of the pipe carrying stdout and stderr, when asked for.
        let output: Int32?
    }

    static func start(
        _ argv: [String],
        environment: [String: String]? = nil,
        stdoutPath: String? = nil,
        stderrPath: String? = nil,
        pipeOutput: Bool = false
    ) throws -> Child {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        var fds: [Int32] = [-1, -1]
        if pipeOutput {
            guard pipe(&fds) == 0 else { throw ChildError("pipe: \(errno)") }
            // not inherited by other children spawned meanwhile (dup2 clears the flag on 1 and 2)
            _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
            _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
            posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
            posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        } else {
            posix_spawn_file_actions_addopen(&actions, 1, stdoutPath ?? "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            posix_spawn_file_actions_addopen(&actions, 2, stderrPath ?? "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        }
        // nothing of this process leaks into the child (descriptor limits are tested with it)
        if let closeFrom = Self.addCloseFrom { _ = closeFrom(&actions, 3) }
        let args = argv.map { strdup($0) } + [nil]
        let env = (environment ?? ProcessInfo.processInfo.environment).map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in args { free(p) }
            for p in env { free(p) }
        }
        // Swift's worker threads block signals; a child must not inherit that mask (it would
        // ignore SIGTERM), nor ignored dispositions.
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attr, &none)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, argv[0], &actions, &attr, args, env)
        if pipeOutput { close(fds[1]) }
        guard rc == 0 else {
            if pipeOutput { close(fds[0]) }
            throw ChildError("cannot start \(argv[0]): \(String(cString: strerror(rc)))")
        }
        return Child(pid: pid, output: pipeOutput ? fds[0] : nil)
    }

    /// glibc's posix_spawn_file_actions_addclosefrom_np (2.34+), which Swift does not import.
    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static let addCloseFrom: AddCloseFrom? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: AddCloseFrom.self)
    }()

    /// Waits for `pid` on a thread of its own; returns the exit status (128 + signal if killed).
    static func wait(_ pid: pid_t) async -> Int32 {
        await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                var status: Int32 = 0
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                let code = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
                continuation.resume(returning: code)
            }
        }
    }

    /// Reads `fd` to its end on the calling thread, handing over each line (without its newline)
    /// as it completes, then closes it.
    static func readLines(_ fd: Int32, _ line: (String) -> Void) {
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            pending += chunk[..<n]
            while let nl = pending.firstIndex(of: 10) {
                line(String(decoding: pending[..<nl], as: UTF8.self))
                pending.removeSubrange(...nl)
            }
        }
        close(fd)
    }
}
