public import MicroCore

/// A broker whose deliveries arrive on the service's own port, as go-micro's `http` broker's do:
/// a ``Service`` mounts it, and its router hands over the requests the broker says are
/// deliveries. A broker of another target (one that receives over HTTP) plugs in the same way.
///
/// Threading: `isDelivery` runs on the connection's event loop for every request that names no
/// endpoint: it must not block or lock, and should not allocate when it says no.
public protocol MountedBroker: Broker {
    /// Whether `request` is a delivery for this broker.
    func isDelivery(_ request: HTTPServerRequest) -> Bool
    /// Takes one delivery and answers it.
    func receive(_ request: HTTPServerRequest) async -> HTTPServerResponse
    /// The service that mounts it listens at `address` (`host:port`); with `tlsIdentity`, it serves
    /// TLS only and publishers must expect that identity.
    func attach(address: String, tlsIdentity: String?)
}
