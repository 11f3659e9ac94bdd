#!/usr/bin/env python3
"""A real gRPC peer (Python grpcio) for swift-micro's streaming tests, on Protos/counter.proto.

  stream_peer.py client HOST:PORT          every kind of call against a swift-micro counter
                                           service, plus cancellation, a deadline, health Watch and
                                           reflection; prints one JSON object with what it saw
  stream_peer.py server                    serves counter.Counter on 127.0.0.1:0, prints
                                           "listening on 127.0.0.1:PORT", serves until killed
  stream_peer.py read-count HOST:PORT N S  reads a Count stream of N ticks of S bytes, checks their
                                           order, prints {"received": N, "in_order": bool}
  stream_peer.py refused HOST:PORT         calls each method of every kind with the metadata
                                           x-deny: 1 (which a test interceptor refuses), prints the
                                           status each ended with: {"Ping": {"code", "details"}, ...}
  stream_peer.py with HOST:PORT [K=V ...]  the same calls with the metadata K=V (none if no pair),
                                           and the same answer
"""
import json
import os
import sys
import tempfile
import threading
from concurrent import futures

import grpc
from grpc_tools import protoc

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTOS = os.path.join(ROOT, "Protos")


def compile_protos():
    out = tempfile.mkdtemp(prefix="stream-peer-")
    for include, proto in ((PROTOS, "counter.proto"), (os.path.join(PROTOS, "grpc/health/v1"), "health.proto")):
        if protoc.main(["protoc", "-I" + include, "--python_out=" + out, "--grpc_python_out=" + out, proto]) != 0:
            raise SystemExit("protoc failed on " + proto)
    sys.path.insert(0, out)


def status(e):
    return {"code": e.code().name, "details": e.details()}


def run_client(address):
    import counter_pb2 as pb, counter_pb2_grpc as pbg
    import health_pb2, health_pb2_grpc

    seen = {}
    with grpc.insecure_channel(address) as channel:
        stub = pbg.CounterStub(channel)
        seen["ping"] = stub.Ping(pb.Note(text="hi"), timeout=120).text

        ticks = list(stub.Count(pb.CountRequest(count=5, size=3), timeout=120))
        seen["count"] = [t.n for t in ticks]
        seen["pad"] = sorted({len(t.pad) for t in ticks})

        total = stub.Sum(iter([pb.Number(value=v) for v in range(1, 101)]), timeout=120)
        seen["sum"] = {"sum": total.sum, "count": total.count}

        # bidirectional, interleaved: each note is sent only after the previous echo came back
        outbox, got = [], []
        ready = threading.Semaphore(0)

        def requests():
            for text in ("a", "b", "c"):
                yield pb.Note(text=text)
                ready.acquire()

        for note in stub.Echo(requests(), timeout=120):
            got.append(note.text)
            ready.release()
        seen["echo"] = got

        got = []
        try:
            for note in stub.Echo(iter([pb.Note(text="x"), pb.Note(text="fail")]), timeout=120):
                got.append(note.text)
        except grpc.RpcError as e:
            seen["echo_error"] = dict(status(e), before=got)

        try:
            list(stub.Count(pb.CountRequest(count=-1), timeout=120))
        except grpc.RpcError as e:
            seen["count_invalid"] = status(e)

        # cancel mid-stream: ten ticks, then cancel; the service logs that its handler stopped
        call = stub.Count(pb.CountRequest(count=10**12, size=10))
        for i, _ in enumerate(call):
            if i == 9:
                call.cancel()
                break
        try:
            next(call)
        except grpc.RpcError as e:
            seen["cancel"] = e.code().name
        except StopIteration:
            seen["cancel"] = "ended"

        # a deadline in the middle of an endless stream: 2 s, doubled until ticks came before it
        # passed (how soon the first tick comes is the machine's business: a slow one, a
        # sanitizer, gets a longer deadline, not a failure); the last bound is a hang guard
        timeout = 2
        while True:
            received = 0
            try:
                for _ in stub.Count(pb.CountRequest(count=10**12, size=10), timeout=timeout):
                    received += 1
                seen["deadline"] = {"code": "ended", "received": received > 0}
                break
            except grpc.RpcError as e:
                seen["deadline"] = dict(status(e), received=received > 0)
                if received > 0 or e.code() != grpc.StatusCode.DEADLINE_EXCEEDED or timeout >= 128:
                    break
            timeout *= 2

        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service="counter.Counter"), timeout=120)
        seen["watch"] = health_pb2.HealthCheckResponse.ServingStatus.Name(next(watch).status)
        watch.cancel()
        watch = health.Watch(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=120)
        seen["watch_unknown"] = health_pb2.HealthCheckResponse.ServingStatus.Name(next(watch).status)
        watch.cancel()

        # server reflection, through grpcio-reflection's descriptor database (a bidi stream)
        from google.protobuf.descriptor_pool import DescriptorPool
        from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

        database = ProtoReflectionDescriptorDatabase(channel)
        seen["reflection_services"] = sorted(database.get_services())
        counter = DescriptorPool(database).FindServiceByName("counter.Counter")
        seen["reflection_methods"] = {
            m.name: [m.input_type.full_name, m.output_type.full_name, m.client_streaming, m.server_streaming]
            for m in counter.methods
        }

        seen["after"] = stub.Ping(pb.Note(text="still here"), timeout=120).text
    print(json.dumps(seen), flush=True)


def run_server():
    import counter_pb2 as pb, counter_pb2_grpc as pbg

    class Counter(pbg.CounterServicer):
        def Ping(self, request, context):
            return request

        def Count(self, request, context):
            if request.count < 0:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "count must be >= 0")
            for n in range(1, request.count + 1):
                yield pb.Tick(n=n, pad=b"." * request.size)

        def Sum(self, request_iterator, context):
            total = pb.Total()
            for number in request_iterator:
                total.sum += number.value
                total.count += 1
            return total

        def Echo(self, request_iterator, context):
            for note in request_iterator:
                if note.text == "fail":
                    context.abort(grpc.StatusCode.FAILED_PRECONDITION, "asked to fail")
                yield note

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pbg.add_CounterServicer_to_server(Counter(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print("listening on 127.0.0.1:%d" % port, flush=True)
    server.wait_for_termination()


def read_count(address, count, size):
    import counter_pb2 as pb, counter_pb2_grpc as pbg

    with grpc.insecure_channel(address) as channel:
        stub = pbg.CounterStub(channel)
        expected, in_order = 1, True
        for tick in stub.Count(pb.CountRequest(count=count, size=size), timeout=600):
            if tick.n != expected or len(tick.pad) != size:
                in_order = False
            expected += 1
    print(json.dumps({"received": expected - 1, "in_order": in_order}), flush=True)


def refused(address):
    statuses(address, (("x-deny", "1"),))


def statuses(address, deny):
    import counter_pb2 as pb, counter_pb2_grpc as pbg

    calls = {
        "Ping": lambda stub: stub.Ping(pb.Note(text="hi"), metadata=deny, timeout=120),
        "Count": lambda stub: list(stub.Count(pb.CountRequest(count=3), metadata=deny, timeout=120)),
        "Sum": lambda stub: stub.Sum(iter([pb.Number(value=1), pb.Number(value=2)]), metadata=deny, timeout=120),
        "Echo": lambda stub: list(stub.Echo(iter([pb.Note(text="a")]), metadata=deny, timeout=120)),
    }
    seen = {}
    with grpc.insecure_channel(address) as channel:
        stub = pbg.CounterStub(channel)
        for name, call in calls.items():
            try:
                call(stub)
                seen[name] = {"code": "OK", "details": ""}
            except grpc.RpcError as e:
                seen[name] = status(e)
    print(json.dumps(seen), flush=True)


if __name__ == "__main__":
    compile_protos()
    if len(sys.argv) == 3 and sys.argv[1] == "client":
        run_client(sys.argv[2])
    elif len(sys.argv) == 2 and sys.argv[1] == "server":
        run_server()
    elif len(sys.argv) == 3 and sys.argv[1] == "refused":
        refused(sys.argv[2])
    elif len(sys.argv) >= 3 and sys.argv[1] == "with":
        statuses(sys.argv[2], tuple(tuple(pair.split("=", 1)) for pair in sys.argv[3:]))
    elif len(sys.argv) == 5 and sys.argv[1] == "read-count":
        read_count(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        raise SystemExit(__doc__)
