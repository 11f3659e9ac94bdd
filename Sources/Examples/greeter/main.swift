// greeter: a service from a .proto file (Protos/greeter.proto), reachable over gRPC at
// /Greeter/Hello and over the micro protocol as Greeter.Hello. Call it with any gRPC client:
//   grpcurl -plaintext -import-path Protos -proto greeter.proto -d '{"name":"alice"}' localhost:PORT Greeter/Hello
import GreeterProto
import Micro

// Hello computes its answer without waiting on anything, so Greeter implements the synchronous
// protocol (GreeterHandler, whose methods are async, is for handlers that call other services,
// a store or a broker).
struct Greeter: GreeterSynchronousHandler {
    func hello(_ request: HelloRequest, context: Context) throws -> HelloResponse {
        var response = HelloResponse()
        response.greeting = "Hello " + request.name
        return response
    }
}

let service = Service(name: "greeter")
service.register(Greeter())
try await service.run()
