// The comparison point for swift-micro's gRPC path: a grpc-swift-2 server (NIO HTTP/2 transport,
// plaintext) answering /Greeter/Hello with the request's bytes, through a raw-bytes serializer,
// so that it does no protobuf work at all. Prints "listening on 127.0.0.1:PORT".
#if canImport(Glibc)
import Glibc
#endif
import GRPCCore
import GRPCNIOTransportHTTP2

struct RawBytes: MessageSerializer, MessageDeserializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
        serializedMessageBytes.withUnsafeBytes { Array($0) }
    }
}

struct Echo: RegistrableRPCService {
    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        router.registerHandler(
            forMethod: MethodDescriptor(service: ServiceDescriptor(fullyQualifiedService: "Greeter"), method: "Hello"),
            deserializer: RawBytes(),
            serializer: RawBytes()
        ) { request, _ in
            var last: [UInt8] = []
            for try await message in request.messages { last = message }
            return StreamingServerResponse(single: ServerResponse(message: last))
        }
    }
}

@main
struct Main {
    static func main() async throws {
        let server = GRPCServer(
            transport: .http2NIOPosix(address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: .plaintext),
            services: [Echo()]
        )
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await server.serve() }
            if let address = try await server.listeningAddress?.ipv4 {
                print("listening on 127.0.0.1:\(address.port)")
                fflush(nil)  // every stream: the line is read by a script through a file
            }
        }
    }
}
