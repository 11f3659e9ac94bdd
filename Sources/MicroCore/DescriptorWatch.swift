import CMicroCore

/// A descriptor owned by someone else (a C library's socket, such as libpq's), watched on one
/// event loop: the owner reads and writes it itself and hears from the watch when it can. The
/// events asked for change with the owner's state (writable only while it has output queued).
///
/// ```swift
/// loop.execute {
///     let watch = try DescriptorWatch(on: loop, descriptor: PQsocket(conn), events: .readable) { ready in
///         if ready.contains(.readable) { PQconsumeInput(conn) }
///     }
/// }
/// ```
///
/// Threading: made, changed and closed on `loop`'s thread, where `onReady` runs too.
public final class DescriptorWatch: @unchecked Sendable {
    // @unchecked Sendable: `handle` is read and written only on `loop`'s thread (every method
    // requires it and the C callbacks arrive there); the other members are immutable.

    public struct Events: OptionSet, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let readable = Events(rawValue: Int32(MC_WATCH_READABLE))
        public static let writable = Events(rawValue: Int32(MC_WATCH_WRITABLE))
        /// The poll failed (a hang-up, an error): read the descriptor to learn what.
        public static let error = Events(rawValue: Int32(MC_WATCH_ERROR))
    }

    public let loop: EventLoop
    public let descriptor: Int32
    private var handle: OpaquePointer?
    private let onReady: (Events) -> Void

    /// Watches `descriptor` for `events` (may be empty: nothing yet). On `loop`'s thread.
    public init(on loop: EventLoop, descriptor: Int32, events: Events, onReady: @escaping (Events) -> Void) throws(MicroCoreError) {
        precondition(loop.inEventLoop, "a DescriptorWatch is made on its loop's thread")
        self.loop = loop
        self.descriptor = descriptor
        self.onReady = onReady
        // the C side's context: an unretained box holding this watch until it is closed
        let box = WatchBox()
        let context = Unmanaged.passRetained(box).toOpaque()
        var callbacks = mc_watch_callbacks_t()
        callbacks.ctx = context
        callbacks.on_ready = { ctx, events in
            let box = Unmanaged<WatchBox>.fromOpaque(ctx!).takeUnretainedValue()
            box.watch?.onReady(Events(rawValue: events))
        }
        callbacks.on_closed = { ctx in
            let box = Unmanaged<WatchBox>.fromOpaque(ctx!).takeRetainedValue()
            box.watch = nil
        }
        var err = [CChar](repeating: 0, count: 256)
        guard let handle = mc_watch_open(loop.handle, descriptor, events.rawValue, &callbacks, &err, err.count) else {
            Unmanaged<WatchBox>.fromOpaque(context).release()
            throw MicroCoreError(cBuffer: err)
        }
        self.handle = handle
        box.watch = self  // until closed
    }

    /// The events to hear of from now on. On the loop's thread; nothing after ``close()``.
    public func set(_ events: Events) {
        precondition(loop.inEventLoop, "a DescriptorWatch is changed on its loop's thread")
        guard let handle else { return }
        _ = mc_watch_set(handle, events.rawValue)
    }

    /// Stops watching (the descriptor stays open: its owner closes it). Idempotent; on the loop's
    /// thread. The watch polls a duplicate of its own, so an owner that closed the descriptor
    /// first (libpq does, on a broken connection) harms nothing: the duplicate's events say the
    /// connection ended, and no socket that reuses the number is taken for this one.
    public func close() {
        precondition(loop.inEventLoop, "a DescriptorWatch is closed on its loop's thread")
        guard let handle else { return }
        self.handle = nil
        mc_watch_close(handle)
    }

    public var isOpen: Bool { handle != nil }
}

/// The C context of a watch. @unchecked Sendable: touched only on the watch's loop thread.
private final class WatchBox: @unchecked Sendable {
    var watch: DescriptorWatch?
}
