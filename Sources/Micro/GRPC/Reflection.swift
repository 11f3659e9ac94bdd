import Foundation
import SwiftProtobuf
import Synchronization

/// gRPC server reflection (`grpc.reflection.v1` and `v1alpha`, the same messages), served by
/// every ``Service``: generic tools (grpcurl, grpcui, Postman) list its gRPC services and fetch
/// their descriptors, so they can call them without the .proto files. It knows the files given to
/// ``Service/registerProtoFile(_:descriptor:services:)`` (generated `register(_:)` methods do it),
/// plus health and reflection themselves. Codable endpoints have no descriptor and are not listed.
extension Service {
    func registerReflection() {
        registerProtoFile("grpc/health/v1/health.proto", descriptor: _MicroFile_grpc_health_v1_health_proto.descriptor,
                          services: ["grpc.health.v1.Health"])
        registerProtoFile("grpc/reflection/v1/reflection.proto", descriptor: _MicroFile_grpc_reflection_v1_reflection_proto.descriptor,
                          services: ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"])
        let handler: @Sendable (MessageStream<Grpc_Reflection_V1_ServerReflectionRequest>, MessageWriter<Grpc_Reflection_V1_ServerReflectionResponse>, Context) async throws -> Void = {
            [weak self] requests, responses, _ in
            for try await request in requests {
                let catalog = ReflectionCatalog(files: self?.protoFiles.withLock { $0 } ?? [:])
                try await responses.write(catalog.answer(request))
            }
        }
        handle("grpc.reflection.v1.ServerReflection.ServerReflectionInfo", bidiStream: handler)
        handle("grpc.reflection.v1alpha.ServerReflection.ServerReflectionInfo", bidiStream: handler)
    }
}

/// The registered .proto files, indexed for reflection's questions.
struct ReflectionCatalog {
    /// Serialized descriptors by file name.
    let bytes: [String: [UInt8]]
    let files: [String: Google_Protobuf_FileDescriptorProto]

    init(files: [String: [UInt8]]) {
        bytes = files
        var parsed: [String: Google_Protobuf_FileDescriptorProto] = [:]
        for (name, data) in files {
            if let file = try? Google_Protobuf_FileDescriptorProto(serializedBytes: data) { parsed[name] = file }
        }
        self.files = parsed
    }

    /// Every gRPC service, by full name (v1alpha is listed with v1: the same service).
    var services: [String] {
        var names: Set<String> = []
        for file in files.values {
            for service in file.service { names.insert(Self.qualify(file.package, service.name)) }
        }
        names.insert("grpc.reflection.v1alpha.ServerReflection")
        return names.sorted()
    }

    func answer(_ request: Grpc_Reflection_V1_ServerReflectionRequest) -> Grpc_Reflection_V1_ServerReflectionResponse {
        var response = Grpc_Reflection_V1_ServerReflectionResponse()
        response.validHost = request.host
        response.originalRequest = request
        switch request.messageRequest {
        case .listServices?:
            var list = Grpc_Reflection_V1_ListServiceResponse()
            list.service = services.map { name in
                var service = Grpc_Reflection_V1_ServiceResponse()
                service.name = name
                return service
            }
            response.listServicesResponse = list
        case .fileByFilename(let name)?:
            response.messageResponse = withDependencies(of: name).map(Self.descriptors) ?? Self.error(5, "file \(name) not found")
        case .fileContainingSymbol(let symbol)?:
            let name = file(defining: symbol.hasPrefix(".") ? String(symbol.dropFirst()) : symbol)
            response.messageResponse = name.flatMap(withDependencies(of:)).map(Self.descriptors) ?? Self.error(5, "symbol \(symbol) not found")
        case .fileContainingExtension?, .allExtensionNumbersOfType?:
            response.messageResponse = Self.error(5, "this server defines no extensions")
        case nil:
            response.messageResponse = Self.error(3, "empty reflection request")
        }
        return response
    }

    /// The file and, after it, every file it imports (transitively) that is known.
    func withDependencies(of name: String) -> [[UInt8]]? {
        guard bytes[name] != nil else { return nil }
        var order: [String] = [], seen: Set<String> = []
        var pending = [name]
        while let next = pending.popLast() {
            guard seen.insert(next).inserted, bytes[next] != nil else { continue }
            order.append(next)
            pending.append(contentsOf: files[next]?.dependency ?? [])
        }
        return order.map { bytes[$0]! }
    }

    /// The file that defines a fully qualified service, method, message (nested too) or enum.
    func file(defining symbol: String) -> String? {
        for (name, file) in files.sorted(by: { $0.key < $1.key }) {
            for service in file.service {
                let qualified = Self.qualify(file.package, service.name)
                if symbol == qualified || service.method.contains(where: { symbol == qualified + "." + $0.name }) { return name }
            }
            if file.enumType.contains(where: { symbol == Self.qualify(file.package, $0.name) }) { return name }
            if Self.defines(file.messageType, prefix: file.package, symbol) { return name }
        }
        return nil
    }

    private static func defines(_ messages: [Google_Protobuf_DescriptorProto], prefix: String, _ symbol: String) -> Bool {
        messages.contains { message in
            let qualified = qualify(prefix, message.name)
            return symbol == qualified || message.enumType.contains { symbol == qualified + "." + $0.name }
                || defines(message.nestedType, prefix: qualified, symbol)
        }
    }

    static func qualify(_ package: String, _ name: String) -> String { package.isEmpty ? name : package + "." + name }

    static func descriptors(_ files: [[UInt8]]) -> Grpc_Reflection_V1_ServerReflectionResponse.OneOf_MessageResponse {
        var response = Grpc_Reflection_V1_FileDescriptorResponse()
        response.fileDescriptorProto = files.map { Data($0) }
        return .fileDescriptorResponse(response)
    }

    /// A gRPC status code (5 NOT_FOUND, 3 INVALID_ARGUMENT) and message.
    static func error(_ code: Int32, _ message: String) -> Grpc_Reflection_V1_ServerReflectionResponse.OneOf_MessageResponse {
        var error = Grpc_Reflection_V1_ErrorResponse()
        error.errorCode = code
        error.errorMessage = message
        return .errorResponse(error)
    }
}
