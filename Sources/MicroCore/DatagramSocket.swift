import CMicroCore

/// A UDP socket on one event loop, for multicast DNS: bound with `SO_REUSEADDR` (several
/// processes share port 5353), joined to a multicast group on chosen interfaces, and telling for
/// each datagram the interface it came in on; each send picks its interface.
///
/// ```swift
/// let socket = try await DatagramSocket.open(on: loop, family: .v4, port: 5353,
///                                            joining: [224, 0, 0, 251], interfaces: [2]) { datagram in
///     print(datagram.bytes.count, "bytes from", datagram.source)
/// }
/// socket.send(bytes, to: .init(ip: [224, 0, 0, 251], port: 5353), interface: 2)
/// ```
///
/// Threading: every method may be called from any thread; `onDatagram` runs on the loop.
public final class DatagramSocket: @unchecked Sendable {
    // @unchecked Sendable: `handle` is only read or written on `loop`'s thread (open, send and
    // close hop there first; the C callbacks arrive there); the other members are immutable.

    public enum Family: Sendable {
        case v4, v6
        var number: Int32 { self == .v4 ? 4 : 6 }
    }

    /// An IP address (4 or 16 bytes, network order) and port.
    public struct Address: Sendable, Hashable, CustomStringConvertible {
        public var ip: [UInt8]
        public var port: UInt16
        /// The interface of an IPv6 link-local address, else 0.
        public var scopeID: UInt32

        public init(ip: [UInt8], port: UInt16, scopeID: UInt32 = 0) {
            self.ip = ip
            self.port = port
            self.scopeID = scopeID
        }

        public var family: Family { ip.count == 4 ? .v4 : .v6 }

        public var description: String {
            ip.count == 4 ? "\(IPAddressText.format(ip)):\(port)" : "[\(IPAddressText.format(ip))]:\(port)"
        }
    }

    /// One datagram as received.
    public struct Datagram: Sendable {
        public var bytes: [UInt8]
        public var source: Address
        /// The interface it arrived on (0 if unknown).
        public var interfaceIndex: UInt32
    }

    public let loop: EventLoop
    public let family: Family
    /// The bound port (useful when opened with port 0).
    public let port: UInt16
    private var handle: OpaquePointer?
    private let onDatagram: @Sendable (Datagram) -> Void

    private init(loop: EventLoop, family: Family, handle: OpaquePointer, onDatagram: @escaping @Sendable (Datagram) -> Void) {
        self.loop = loop
        self.family = family
        self.handle = handle
        self.port = mc_udp_port(handle)
        self.onDatagram = onDatagram
    }

    /// Opens a socket bound to the wildcard address and `port` (0: any), joined to `group` (4 or 16
    /// bytes, or nil for none) on each interface index in `interfaces`.
    public static func open(
        on loop: EventLoop,
        family: Family,
        port: UInt16,
        joining group: [UInt8]?,
        interfaces: [UInt32],
        onDatagram: @escaping @Sendable (Datagram) -> Void
    ) async throws(MicroCoreError) -> DatagramSocket {
        let result: Result<DatagramSocket, MicroCoreError> = await withCheckedContinuation { continuation in
            loop.execute {
                continuation.resume(returning: openOnLoop(loop, family, port, group, interfaces, onDatagram))
            }
        }
        return try result.get()
    }

    private static func openOnLoop(
        _ loop: EventLoop,
        _ family: Family,
        _ port: UInt16,
        _ group: [UInt8]?,
        _ interfaces: [UInt32],
        _ onDatagram: @escaping @Sendable (Datagram) -> Void
    ) -> Result<DatagramSocket, MicroCoreError> {
        // The C socket's context: an unretained box filled once the Swift object exists; a
        // datagram cannot arrive before this function returns (same thread).
        let box = SocketBox()
        let context = Unmanaged.passRetained(box).toOpaque()
        var callbacks = mc_udp_callbacks_t()
        callbacks.ctx = context
        callbacks.on_datagram = { ctx, data, len, from, ifindex in
            let box = Unmanaged<SocketBox>.fromOpaque(ctx!).takeUnretainedValue()
            guard let socket = box.socket, let data, let from else { return }
            let f = from.pointee
            let ip = withUnsafeBytes(of: f.ip) { Array($0.prefix(f.family == 4 ? 4 : 16)) }
            let datagram = Datagram(
                bytes: Array(UnsafeBufferPointer(start: data, count: len)),
                source: Address(ip: ip, port: f.port, scopeID: f.scope_id),
                interfaceIndex: ifindex
            )
            socket.onDatagram(datagram)
        }
        callbacks.on_closed = { ctx in
            let box = Unmanaged<SocketBox>.fromOpaque(ctx!).takeRetainedValue()
            box.socket = nil
        }
        var err = [CChar](repeating: 0, count: 256)
        let handle: OpaquePointer? = interfaces.withUnsafeBufferPointer { ifs in
            if let group {
                return group.withUnsafeBufferPointer { g in
                    mc_udp_open(loop.handle, family.number, port, g.baseAddress, ifs.baseAddress, ifs.count, &callbacks, &err, err.count)
                }
            }
            return mc_udp_open(loop.handle, family.number, port, nil, ifs.baseAddress, ifs.count, &callbacks, &err, err.count)
        }
        guard let handle else {
            Unmanaged<SocketBox>.fromOpaque(context).release()
            return .failure(MicroCoreError(cBuffer: err))
        }
        let socket = DatagramSocket(loop: loop, family: family, handle: handle, onDatagram: onDatagram)
        box.socket = socket  // the C side keeps the socket alive until it is closed
        return .success(socket)
    }

    /// Sends one datagram to `address` out of interface `interface` (0: the kernel's choice).
    /// Best effort, like UDP: a send that fails (or follows `close`) is dropped.
    public func send(_ bytes: [UInt8], to address: Address, interface: UInt32) {
        if loop.inEventLoop {
            sendOnLoop(bytes, address, interface)
        } else {
            loop.execute { self.sendOnLoop(bytes, address, interface) }
        }
    }

    private func sendOnLoop(_ bytes: [UInt8], _ address: Address, _ interface: UInt32) {
        guard let handle, address.ip.count == (family == .v4 ? 4 : 16) else { return }
        var to = mc_udp_addr_t()
        to.family = family == .v4 ? 4 : 6
        withUnsafeMutableBytes(of: &to.ip) { raw in
            for (i, byte) in address.ip.enumerated() { raw[i] = byte }
        }
        to.port = address.port
        to.scope_id = address.scopeID
        _ = bytes.withUnsafeBufferPointer { buf in mc_udp_send(handle, buf.baseAddress, buf.count, &to, interface) }
    }

    /// Closes the socket; no datagram is delivered after it. Idempotent.
    public func close() {
        loop.execute {
            guard let handle = self.handle else { return }
            self.handle = nil
            mc_udp_close(handle)
        }
    }
}

/// The C context of a socket. @unchecked Sendable: touched only on the socket's loop thread.
private final class SocketBox: @unchecked Sendable {
    var socket: DatagramSocket?
}
