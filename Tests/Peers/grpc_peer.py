#!/usr/bin/env python3
"""A real gRPC peer (Python grpcio) for swift-micro's tests.

  grpc_peer.py client HOST:PORT   runs the client checks against a swift-micro service and prints
                                  one JSON object with what it saw
  grpc_peer.py server             serves Greeter on 127.0.0.1:0, prints "listening on 127.0.0.1:PORT",
                                  serves until killed

The .proto files (Protos/) are compiled with grpcio-tools into a temporary directory first.
"""
import json
import os
import sys
import tempfile
import time

import grpc
from grpc_tools import protoc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTOS = os.path.join(ROOT, "Protos")


def compile_protos():
    out = tempfile.mkdtemp(prefix="grpc-peer-")
    # health.proto is compiled from its own folder: a module path grpc/health/... would be
    # shadowed by the grpc package itself
    for include, proto in ((PROTOS, "greeter.proto"), (os.path.join(PROTOS, "grpc/health/v1"), "health.proto")):
        rc = protoc.main(["protoc", "-I" + include, "--python_out=" + out, "--grpc_python_out=" + out, proto])
        if rc != 0:
            raise SystemExit("protoc failed on " + proto)
    sys.path.insert(0, out)


def outcome(call):
    """(value, None) or (None, {"code": NAME, "details": text})."""
    try:
        return call(), None
    except grpc.RpcError as e:
        return None, {"code": e.code().name, "details": e.details()}


def run_client(address):
    import greeter_pb2, greeter_pb2_grpc
    import health_pb2, health_pb2_grpc

    seen = {}
    with grpc.insecure_channel(address) as channel:
        stub = greeter_pb2_grpc.GreeterStub(channel)
        reply, err = outcome(lambda: stub.Hello(greeter_pb2.HelloRequest(name="alice"), timeout=120))
        seen["hello"] = reply.greeting if reply else err

        # metadata both ways: text and binary (-bin) headers; the test service echoes them
        def with_metadata():
            response, call = stub.Hello.with_call(
                greeter_pb2.HelloRequest(name="echo-metadata"),
                metadata=[("x-tenant", "acme"), ("x-token-bin", b"\x00\x01\xfe\xff")],
                timeout=120,
            )
            initial = dict(call.initial_metadata())
            return {
                "greeting": response.greeting,
                "tenant": initial.get("x-tenant-echo"),
                "token": list(initial.get("x-token-echo-bin", b"")),
            }

        seen["metadata"], err = outcome(with_metadata)
        if err:
            seen["metadata"] = err

        _, seen["invalid"] = outcome(lambda: stub.Hello(greeter_pb2.HelloRequest(name=""), timeout=120))
        _, seen["missing"] = outcome(lambda: stub.Hello(greeter_pb2.HelloRequest(name="nobody"), timeout=120))
        started = time.monotonic()
        _, seen["deadline"] = outcome(lambda: stub.Hello(greeter_pb2.HelloRequest(name="slow"), timeout=0.3))
        seen["deadline_took_s"] = round(time.monotonic() - started, 3)

        unknown = channel.unary_unary("/Greeter/Nope", request_serializer=greeter_pb2.HelloRequest.SerializeToString,
                                      response_deserializer=greeter_pb2.HelloResponse.FromString)
        _, seen["unknown_method"] = outcome(lambda: unknown(greeter_pb2.HelloRequest(name="x"), timeout=120))

        big = "x" * (5 * 1024 * 1024)
        _, seen["too_large"] = outcome(lambda: stub.Hello(greeter_pb2.HelloRequest(name=big), timeout=120))

        gz, err = outcome(lambda: stub.Hello(greeter_pb2.HelloRequest(name="zipped"), timeout=120,
                                             compression=grpc.Compression.Gzip))
        seen["gzip"] = gz.greeting if gz else err

        # still serving after all that
        again, err = outcome(lambda: stub.Hello(greeter_pb2.HelloRequest(name="again"), timeout=120))
        seen["after"] = again.greeting if again else err

        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "Greeter", "no.such.Service"):
            reply, err = outcome(lambda: health.Check(health_pb2.HealthCheckRequest(service=name), timeout=120))
            seen["health:" + name] = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status) if reply else err
    print(json.dumps(seen), flush=True)


def run_server():
    from concurrent import futures
    import greeter_pb2, greeter_pb2_grpc

    class Greeter(greeter_pb2_grpc.GreeterServicer):
        def Hello(self, request, context):
            if request.name == "":
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "name is required: ¿quién?")
            if request.name == "slow":
                time.sleep(60)  # far past the caller's 300 ms deadline, however slow the caller
            metadata = dict(context.invocation_metadata())
            if "x-tenant" in metadata:
                context.send_initial_metadata([("x-tenant-echo", metadata["x-tenant"])])
            return greeter_pb2.HelloResponse(greeting="Hello " + request.name + " from python")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    greeter_pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print("listening on 127.0.0.1:%d" % port, flush=True)
    server.wait_for_termination()  # until the test kills us


if __name__ == "__main__":
    compile_protos()
    if len(sys.argv) == 3 and sys.argv[1] == "client":
        run_client(sys.argv[2])
    elif len(sys.argv) == 2 and sys.argv[1] == "server":
        run_server()
    else:
        raise SystemExit(__doc__)
