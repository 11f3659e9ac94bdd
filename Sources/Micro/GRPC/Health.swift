import Synchronization

/// The standard gRPC health service, `grpc.health.v1.Health`, served by every ``Service``:
/// `Check` answers SERVING for the server (empty name), for the service's registry name and for
/// every gRPC service it registered; NOT_SERVING once the service is shutting down; NOT_FOUND
/// for any other name. (`Watch` streams, and arrives with streaming.)
final class HealthState: Sendable {
    private let state = Mutex<(serving: Bool, names: Set<String>)>((true, [""]))

    func add(_ name: String) { state.withLock { _ = $0.names.insert(name) } }

    func setServing(_ serving: Bool) { state.withLock { $0.serving = serving } }

    func check(_ name: String) -> Grpc_Health_V1_HealthCheckResponse.ServingStatus? {
        state.withLock { state in
            guard state.names.contains(name) else { return nil }
            return state.serving ? .serving : .notServing
        }
    }
}

extension Service {
    func registerHealth() {
        let health = self.health
        health.add(name)
        router.register(Router.messageEndpoint("grpc.health.v1.Health.Check", service: name) {
            (request: Grpc_Health_V1_HealthCheckRequest, _: Context) async throws -> Grpc_Health_V1_HealthCheckResponse in
            guard let status = health.check(request.service) else {
                throw MicroError.notFound(self.name, "unknown service \(request.service)")
            }
            var response = Grpc_Health_V1_HealthCheckResponse()
            response.status = status
            return response
        })
    }

    /// Makes the gRPC services of a .proto file known: health checks answer for their full names
    /// (`package.Service`), and reflection can describe them. Generated `register(_:)` methods
    /// call it with the file's serialized FileDescriptorProto.
    public func registerProtoFile(_ file: String, descriptor: [UInt8], services: [String]) {
        for service in services { health.add(service) }
        protoFiles.withLock { $0[file] = descriptor }
    }
}
