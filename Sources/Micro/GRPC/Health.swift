import Foundation
import Synchronization

/// The standard gRPC health service, `grpc.health.v1.Health`, served by every ``Service``:
/// `Check` answers SERVING for the server (empty name), for the service's registry name and for
/// every gRPC service it registered; NOT_SERVING once the service is shutting down; NOT_FOUND
/// for any other name. `Watch` streams the status of a name now and at every change
/// (SERVICE_UNKNOWN for a name it does not know, as the protocol says), until the caller stops.
final class HealthState: Sendable {
    private struct State {
        var serving = true
        var names: Set<String> = [""]
        var watchers: [UUID: AsyncStream<Void>.Continuation] = [:]
        var closed = false
    }

    private let state = Mutex<State>(State())

    func add(_ name: String) { changed { _ = $0.names.insert(name) } }

    func setServing(_ serving: Bool) { changed { $0.serving = serving } }

    func check(_ name: String) -> Grpc_Health_V1_HealthCheckResponse.ServingStatus? {
        state.withLock { state in
            guard state.names.contains(name) else { return nil }
            return state.serving ? .serving : .notServing
        }
    }

    private func changed(_ update: (inout State) -> Void) {
        let watchers = state.withLock { state in
            update(&state)
            return Array(state.watchers.values)
        }
        for watcher in watchers { watcher.yield() }
    }

    /// Ends every watch (the service stops).
    func closeWatches() {
        let watchers = state.withLock { state in
            state.closed = true
            defer { state.watchers = [:] }
            return Array(state.watchers.values)
        }
        for watcher in watchers { watcher.finish() }
    }

    /// Changes from now on, one element per change (coalesced when the reader lags); it ends
    /// when the service stops.
    func changes() -> AsyncStream<Void> {
        let (stream, continuation) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id = UUID()
        let closed = state.withLock { state in
            if !state.closed { state.watchers[id] = continuation }
            return state.closed
        }
        if closed { continuation.finish() }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.watchers.removeValue(forKey: id) }
        }
        return stream
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
        handle("grpc.health.v1.Health.Watch", serverStream: {
            (request: Grpc_Health_V1_HealthCheckRequest, responses: MessageWriter<Grpc_Health_V1_HealthCheckResponse>, _: Context) in
            let changes = health.changes()  // before the first answer: no change can slip between
            var last: Grpc_Health_V1_HealthCheckResponse.ServingStatus?
            var iterator = changes.makeAsyncIterator()
            repeat {
                let status = health.check(request.service) ?? .serviceUnknown
                if status != last {
                    var response = Grpc_Health_V1_HealthCheckResponse()
                    response.status = status
                    try await responses.write(response)
                    last = status
                }
            } while await iterator.next() != nil
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
