// traced: a service that exports its traces over OTLP (MICRO_TRACER=otlp), in one of four roles:
//   traced front       Front.Hello {"name"}: calls back's Back.Hello, publishes `greeted`
//   traced back        Back.Hello {"name"}
//   traced sink        subscribes to `greeted`, logs each greeting
//   traced helloworld  Helloworld.Greeting, as the helloworld example (Benchmarks/observability)
import Foundation
import Logging
import Micro
import MicroOTel

MicroOTel.install()

struct Hello: Codable, Sendable { var name: String }
struct Reply: Codable, Sendable { var message: String }

let role = CommandLine.arguments.dropFirst().first ?? ""
switch role {
case "front":
    let service = Service(name: "front")
    let client = service.client
    service.handle("Front.Hello") { (hello: Hello, context: Context) async throws -> Reply in
        context.logger.info("greeting \(hello.name)")
        let reply: Reply = try await client.call("back", "Back.Hello", hello)
        try await client.publish("greeted", hello)
        return Reply(message: "front: " + reply.message)
    }
    try await service.run()
case "back":
    let service = Service(name: "back")
    service.handle("Back.Hello") { (hello: Hello, _: Context) async throws -> Reply in Reply(message: "hello " + hello.name) }
    try await service.run()
case "sink":
    let service = Service(name: "sink")
    service.subscribe("greeted") { (hello: Hello, context: Context) async throws in context.logger.info("greeted \(hello.name)") }
    try await service.run()
case "helloworld":
    struct Request: Codable, Sendable { var name: String }
    struct Response: Codable, Sendable { var message: String }
    let service = Service(name: "helloworld")
    service.handle("Helloworld.Greeting") { (request: Request, _: Context) async throws -> Response in
        Response(message: "Hello " + request.name)
    }
    try await service.run()
default:
    FileHandle.standardError.write(Data("usage: traced front|back|sink|helloworld\n".utf8))
    exit(2)
}
