#!/usr/bin/env python3
"""A peer that behaves on the wire as go-micro's HTTP transport server and HTTP broker subscriber
do, where it matters to a client of theirs (../shared/notes/go-micro.md, section 2). go-micro
itself cannot be built in CI; this stands in for it.

  server  an mucp server (go-micro's transport/http_*.go): HTTP/1.1 with keep-alive, requests
          routed by Micro-Endpoint (Micro-Method), JSON only; every answer is 200, an error in a
          Micro-Error header (and X-Micro-Error) over an empty body; answers carry a copy of the
          first request's headers on the connection. Over h2c (prior knowledge) every request
          gets a bare `:status 200` and nothing else, as go-micro's ServeConn returns before its
          handler answers on that path.
          Endpoints: Say.Hello {"name"} -> {"msg", "timeout" (the Timeout header), "metadata"
          (the request's other headers)}; Say.Fail -> a go-micro error (409); Say.Slow -> waits
          --slow seconds, then answers as Say.Hello; Say.Stats -> {"connections", "requests",
          "h2_requests", "streams"}; any other -> go-micro's plain-text "rpc: can't find service"
          error. A request with a Micro-Stream header opens go-micro's stream on its connection:
          Say.Stream answers each message {"name"} with {"msg"} and the client's EOS with EOS;
          any other stream ends at once with a go-micro error (409).
  broker  an HTTP broker subscriber (broker/http.go): plain HTTP/1.1 only (an HTTP/2 preface gets
          505 and the connection closes), `POST /?id=NODE` with go-micro's broker.Message JSON
          ({"Header": {...}, "Body": base64}); prints `message id=NODE topic=T body=B` per
          delivery and answers 200 with an empty body; a non-POST gets 405.

Prints `listening on 127.0.0.1:PORT` once listening; runs until killed.
"""
import argparse
import base64
import json
import socket
import struct
import sys
import threading
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_HEAD = 64 * 1024
MAX_BODY = 8 * 1024 * 1024

stats = {"connections": 0, "requests": 0, "h2_requests": 0, "streams": 0}
lock = threading.Lock()


def count(key):
    with lock:
        stats[key] += 1


class Closed(Exception):
    pass


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise Closed()
        self.buf += data

    def peek(self, n):
        while len(self.buf) < n:
            self.fill()
        return self.buf[:n]

    def take(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def head(self):
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > MAX_HEAD:
                raise Closed()
            self.fill()
        end = self.buf.index(b"\r\n\r\n")
        text, self.buf = self.buf[:end].decode("latin-1"), self.buf[end + 4:]
        lines = text.split("\r\n")
        fields = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields.append((canonical(name.strip()), value.strip()))
        return lines[0], fields


def canonical(name):
    """Go's http.CanonicalHeaderKey: what go-micro's maps hold."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def first(fields, name):
    for k, v in fields:
        if k == name:
            return v
    return None


def read_request(conn):
    line, fields = conn.head()
    length = int(first(fields, "Content-Length") or "0")
    if length > MAX_BODY:
        raise Closed()
    return line, fields, conn.take(length)


def respond(sock, status, fields, body):
    head = f"HTTP/1.1 {status}\r\n"
    for name, value in fields:
        head += f"{name}: {value}\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode("latin-1") + body)


# ---------------------------------------------------------------- mucp server

def answer_mucp(fields, body, slow):
    """(fields, body) of go-micro's answer to one request: its headers, its body."""
    endpoint = first(fields, "Micro-Endpoint") or first(fields, "Micro-Method")
    if first(fields, "Content-Type") != "application/json":
        return [("Content-Type", "text/plain")], f"unsupported Content-Type: {first(fields, 'Content-Type')}".encode()
    if endpoint in ("Say.Hello", "Say.Slow"):
        if endpoint == "Say.Slow":
            time.sleep(slow)
        request = json.loads(body or b"{}")
        known = {"Content-Type", "Content-Length", "Accept", "Micro-Service", "Micro-Endpoint", "Micro-Method", "Timeout",
                 "Host", "User-Agent", "Micro-Id"}
        reply = {"msg": "Hello " + str(request.get("name", "")), "timeout": first(fields, "Timeout"),
                 "metadata": {k: v for k, v in fields if k not in known}}
        return [("Content-Type", "application/json"), ("X-Served-By", "gomicro-peer")], json.dumps(reply).encode() + b"\n"
    if endpoint == "Say.Fail":
        error = json.dumps({"id": "go.service", "code": 409, "detail": "already there", "status": "Conflict"})
        return [("Micro-Error", error), ("X-Micro-Error", error)], b""
    if endpoint == "Say.Stats":
        with lock:
            reply = dict(stats)
        return [("Content-Type", "application/json")], json.dumps(reply).encode() + b"\n"
    text = f"rpc: can't find service {endpoint}"
    return [("Micro-Error", text), ("X-Micro-Error", text)], b""


def serve_mucp(sock, slow):
    conn = Conn(sock)
    if conn.peek(len(PREFACE)) == PREFACE:
        serve_h2c_bare(conn)
        return
    echo = None
    while True:
        _, fields, body = read_request(conn)
        count("requests")
        if first(fields, "Micro-Stream") is not None:
            serve_stream(sock, conn, fields, body)
            return
        if echo is None:
            # go-micro answers with a copy of the first request's headers on the connection
            echo = [(k, v) for k, v in fields if k not in ("Content-Length", "Content-Type", "Host")]
        extra, reply = answer_mucp(fields, body, slow)
        respond(sock, "200 OK", echo + extra, reply)


def serve_stream(sock, conn, fields, body):
    """go-micro's stream over HTTP/1.1: the first request with a Micro-Stream id opens it (its body
    is dropped), each request after it is a message (Micro-Error: EOS ends them), each response a message back, the last one carrying
    Micro-Error: EOS or the error."""
    count("streams")
    endpoint = first(fields, "Micro-Endpoint") or first(fields, "Micro-Method")
    head = [("Micro-Stream", first(fields, "Micro-Stream")), ("Content-Type", "application/json")]
    if endpoint != "Say.Stream":
        error = json.dumps({"id": "go.service", "code": 409, "detail": "no stream here", "status": "Conflict"})
        respond(sock, "200 OK", head + [("Micro-Error", error)], b"")
        return
    # the opening frame's body is dropped, as go-micro's server does: the messages follow it
    _, fields, body = read_request(conn)
    count("requests")
    while True:
        if first(fields, "Micro-Error") == "EOS":
            respond(sock, "200 OK", head + [("Micro-Error", "EOS")], b"")
            return
        request = json.loads(body or b"{}")
        respond(sock, "200 OK", head, json.dumps({"msg": "Hello " + str(request.get("name", ""))}).encode() + b"\n")
        _, fields, body = read_request(conn)
        count("requests")


def serve_h2c_bare(conn):
    conn.take(len(PREFACE))
    conn.sock.sendall(struct.pack(">I", 0)[1:] + bytes([4, 0]) + struct.pack(">I", 0))  # SETTINGS, empty
    while True:
        header = conn.take(9)
        length = int.from_bytes(header[:3], "big")
        ftype, flags, sid = header[3], header[4], int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
        conn.take(length)
        if ftype == 4 and not flags & 1:  # SETTINGS: acknowledged
            conn.sock.sendall(bytes([0, 0, 0, 4, 1, 0, 0, 0, 0]))
        if ftype in (0, 1) and flags & 1 and sid:  # END_STREAM of a request: a bare :status 200
            count("h2_requests")
            conn.sock.sendall(bytes([0, 0, 1, 1, 5]) + struct.pack(">I", sid) + b"\x88")


# ---------------------------------------------------------------- broker subscriber

def serve_broker(sock, slow):
    del slow
    conn = Conn(sock)
    if conn.peek(len(PREFACE)) == PREFACE:
        respond(sock, "505 HTTP Version Not Supported", [], b"")
        return
    while True:
        line, fields, body = read_request(conn)
        count("requests")
        method, target = line.split(" ")[0], line.split(" ")[1]
        if method != "POST":
            error = {"id": "go.micro.broker", "code": 400, "detail": "Method not allowed", "status": "Bad Request"}
            respond(sock, "405 Method Not Allowed", [], json.dumps(error).encode())
            continue
        node = target.partition("id=")[2]
        message = json.loads(body)
        topic = message.get("Header", {}).get("Micro-Topic", "")
        payload = base64.b64decode(message.get("Body") or "").decode("utf-8", "replace")
        print(f"message id={node} topic={topic} body={payload}", flush=True)
        respond(sock, "200 OK", [], b"")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["server", "broker"])
    ap.add_argument("--slow", type=float, default=30.0, help="seconds Say.Slow waits")
    args = ap.parse_args()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    print(f"listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)
    serve = serve_mucp if args.mode == "server" else serve_broker

    def run(sock):
        try:
            serve(sock, args.slow)
        except (Closed, OSError, ValueError):
            pass
        finally:
            sock.close()

    while True:
        sock, _ = listener.accept()
        count("connections")
        threading.Thread(target=run, args=(sock,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
