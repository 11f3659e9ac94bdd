#!/usr/bin/env python3
"""A small OTLP/HTTP trace receiver for the tests: accepts POST /v1/traces (protobuf, gzip or
not), prints `listening on 127.0.0.1:PORT`, then one line per span received:

    span {"service": ..., "name": ..., "kind": ..., "trace": HEX, "id": HEX, "parent": HEX or "",
          "attributes": {...}}

and answers each export with an empty ExportTraceServiceResponse. Anything else: 404 / 400.

    otlp_receiver.py
"""
import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

# exports arrive on several threads: one line at a time
OUTPUT = threading.Lock()


def say(line):
    with OUTPUT:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind in ("string_value", "bool_value", "int_value", "double_value") else str(v)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        if self.path != "/v1/traces":
            self.send_error(404)
            return
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(body)
        except Exception as e:  # a broken export is the exporter's bug: say so, keep serving
            say(f"bad export: {e}")
            self.send_error(400)
            return
        for resource_spans in request.resource_spans:
            service = ""
            for a in resource_spans.resource.attributes:
                if a.key == "service.name":
                    service = value(a.value)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    line = {
                        "service": service,
                        "name": span.name,
                        "kind": KINDS.get(span.kind, str(span.kind)),
                        "trace": span.trace_id.hex(),
                        "id": span.span_id.hex(),
                        "parent": span.parent_span_id.hex(),
                        "status": span.status.code,
                        "attributes": {a.key: value(a.value) for a in span.attributes},
                    }
                    say("span " + json.dumps(line))
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    if len(sys.argv) != 1:
        raise SystemExit(__doc__)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    say(f"listening on 127.0.0.1:{server.server_address[1]}")
    server.serve_forever()
