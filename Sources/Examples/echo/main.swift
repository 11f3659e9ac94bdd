// echo: answers every call with the bytes it was sent, unread. A handler of `[UInt8]` gets the
// message as it came, over any wire:
//   gRPC:  POST /echo.Echo/Call or /Echo/Call, content-type application/grpc (any message)
//   micro: Micro-Endpoint: Echo.Call with content-type application/octet-stream
//          (or application/protobuf)
// Benchmarks/compare drives it as swift-micro's raw-bytes echo, the same work as the
// grpc-swift-2 and Go echo servers there.
//   curl --http2-prior-knowledge -H 'content-type: application/octet-stream' \
//        -H 'micro-endpoint: Echo.Call' --data-binary 'hi' http://localhost:PORT/
import Micro
import MicroEtcd

MicroEtcd.install()  // MICRO_REGISTRY=etcd works too (Benchmarks/etcd calls it by name through etcd)
let service = Service(name: "echo")

// a handler that does not await is synchronous: answered without an async call of its own
service.handle("Echo.Call") { (message: [UInt8], _: Context) in
    message
}

try await service.run()
