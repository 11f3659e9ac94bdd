// helloworld: the smallest service. Run it, then call it:
//   curl -XPOST -H 'Content-Type: application/json' -H 'Micro-Endpoint: Helloworld.Greeting' \
//        -d '{"name": "alice"}' http://localhost:PORT
import Micro
import MicroEtcd
import MicroNATS

MicroEtcd.install()  // MICRO_REGISTRY=etcd: etcd as the registry (go-micro's layout)
MicroNATS.install()  // MICRO_BROKER=nats: NATS as the broker (go-micro's messages)

struct Request: Codable, Sendable {
    var name: String
}

struct Response: Codable, Sendable {
    var message: String
}

let service = Service(name: "helloworld")

// a handler that does not await is synchronous (`async throws` in its signature would make it
// an async one, for a handler that calls other services, a store, a broker)
service.handle("Helloworld.Greeting") { (request: Request, _: Context) in
    Response(message: "Hello " + request.name)
}

try await service.run()
