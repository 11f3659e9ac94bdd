#!/usr/bin/env python3
"""A raw HTTP/2 server (h2c) for testing swift-micro's HTTP/2 client against the framing a real
server may use: header blocks in CONTINUATION pieces, padding, priority fields, 1xx answers,
trailers, a dynamic HPACK table (python-hpack's encoder indexes every field it can), windows that
the client must wait on, SETTINGS changed mid-connection, PING, RST_STREAM and GOAWAY, malformed
answers and an HPACK bomb. Frames are written byte by byte (h2wire.py); nothing here is a library
server, so what the client sees is exactly what the case sends.

The answer depends on the request's :path:
  /echo              200, the request body back, x-body-length: its length
  /split-headers     200 with 24 fields of 600 bytes, the block in a HEADERS and 3 CONTINUATIONs
  /padded            HEADERS padded and with a priority field, DATA padded ("padded")
  /interim           a 100 answer, then 200 with "after interim"
  /trailers          200, "body", then trailers (grpc-status: 0, x-trailer: t)
  /large?N           200 with N bytes (i % 251), sent as the client's windows allow
  /refused           RST_STREAM(REFUSED_STREAM)
  /goaway            GOAWAY whose last stream is below this one
  /uppercase         200 with a field name in upper case (malformed)
  /short-length      200 saying content-length 10, with 5 bytes (malformed)
  /switching         101, which HTTP/2 does not have (malformed)
  /bomb              a 4000-byte field put in the dynamic table, then referred to 40 times
  /ping-first        a PING first; the answer only after the client acknowledged it
  /settings-mid      SETTINGS (bigger frames, a new initial window) first; the answer after their ACK
  /hold              answered only once --max-streams /hold streams are open at once, counted after
                     each read (more open at once: 500 to all of them)
  /report            200 with a JSON report of every connection so far: whether each first header
                     block of the client started with a table size update when one was due, the
                     most streams open at once on one connection, the RST_STREAM codes received
A window is credited back (WINDOW_UPDATE) once the client has used all of it; sending more than
a window allows is answered with GOAWAY(FLOW_CONTROL_ERROR).

Usage: h2_server_peer.py [--initial-window N] [--max-streams N] [--header-table-size N]
Prints "listening on 127.0.0.1:PORT", then serves until killed (a thread per connection).
"""
import argparse
import json
import os
import select
import socket
import struct
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hpack  # noqa: E402

from h2wire import (ACK, CONTINUATION, DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PADDED, PING,  # noqa: E402
                    PRIORITY_FLAG, RST_STREAM, SETTINGS, WINDOW_UPDATE, frame, window_update)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# what every connection saw of the client, for /report
REPORT = {"size_updates_ok": True, "max_open": 0, "resets": []}
LOCK = threading.Lock()
FLOW_CONTROL_ERROR, REFUSED_STREAM = 0x3, 0x7


class Conn:
    def __init__(self, sock, args):
        self.sock = sock
        self.args = args
        self.buf = b""
        self.decoder = hpack.Decoder()
        self.encoder = hpack.Encoder()
        self.block = None          # (stream, end_stream, bytes) of a header block in pieces
        self.streams = {}          # id -> {"path", "body", "ended"}
        self.out = {}              # id -> [bytes left to send, end with trailers?]
        self.send_conn = 65535     # what the client lets us send
        self.send_init = 65535
        self.send_stream = {}
        self.recv_conn = 65535     # what the client may still send
        self.recv_stream = {}
        self.size_update_due = False  # a table size update must start the client's next block
        self.report = REPORT
        self.acked = False         # the client acknowledged our SETTINGS: our initial window holds
        self.waiting_ack = None    # ("ping", sid) or ("settings", sid)
        self.holds = []

    def send(self, data):
        self.sock.sendall(data)

    def fields(self, sid, fields, end_stream=False, pieces=1, padded=False):
        blk = self.encoder.encode(fields)
        if pieces == 1:
            payload, flags = blk, END_HEADERS | (END_STREAM if end_stream else 0)
            if padded:
                payload = bytes([7]) + struct.pack(">I", 0) + bytes([15]) + blk + b"\0" * 7
                flags |= PADDED | PRIORITY_FLAG
            self.send(frame(HEADERS, flags, sid, payload))
            return
        size = (len(blk) + pieces - 1) // pieces
        parts = [blk[i:i + size] for i in range(0, len(blk), size)]
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if i == 0:
                self.send(frame(HEADERS, (END_STREAM if end_stream else 0) | (END_HEADERS if last else 0), sid, part))
            else:
                self.send(frame(CONTINUATION, END_HEADERS if last else 0, sid, part))

    def queue_body(self, sid, body, trailers=None):
        self.out[sid] = [body, trailers]
        self.pump()

    def pump(self):
        for sid in list(self.out):
            body, trailers = self.out[sid]
            while body and self.send_conn > 0 and self.send_stream.get(sid, 0) > 0:
                n = min(len(body), self.send_conn, self.send_stream[sid], 16384)
                last = n == len(body) and trailers is None
                self.send(frame(DATA, END_STREAM if last else 0, sid, body[:n]))
                body = body[n:]
                self.send_conn -= n
                self.send_stream[sid] -= n
            self.out[sid][0] = body
            if not body:
                del self.out[sid]
                if trailers is not None:
                    self.fields(sid, trailers, end_stream=True)
                self.streams.pop(sid, None)

    def answer(self, sid):
        st = self.streams[sid]
        path = st["path"]
        if path == "/echo":
            self.fields(sid, [(":status", "200"), ("x-body-length", str(len(st["body"])))])
            self.queue_body(sid, st["body"]) if st["body"] else self.send(frame(DATA, END_STREAM, sid))
        elif path == "/split-headers":
            fs = [(":status", "200")] + [("x-field-%d" % i, chr(97 + i % 26) * 600) for i in range(24)]
            self.fields(sid, fs, pieces=4)
            self.queue_body(sid, b"split")
        elif path == "/padded":
            self.fields(sid, [(":status", "200")], padded=True)
            self.send(frame(DATA, PADDED | END_STREAM, sid, bytes([10]) + b"padded" + b"\0" * 10))
            self.send_conn -= 17
            self.send_stream[sid] -= 17
        elif path == "/interim":
            self.fields(sid, [(":status", "100")])
            self.fields(sid, [(":status", "200"), ("content-type", "text/plain")])
            self.queue_body(sid, b"after interim")
        elif path == "/trailers":
            self.fields(sid, [(":status", "200")])
            self.queue_body(sid, b"body", trailers=[("grpc-status", "0"), ("x-trailer", "t")])
        elif path.startswith("/large?"):
            n = int(path.split("?", 1)[1])
            self.fields(sid, [(":status", "200")])
            self.queue_body(sid, bytes(i % 251 for i in range(n)))
        elif path == "/refused":
            self.send(frame(RST_STREAM, 0, sid, struct.pack(">I", REFUSED_STREAM)))
        elif path == "/goaway":
            self.send(frame(GOAWAY, 0, 0, struct.pack(">II", sid - 2, 0)))
        elif path == "/uppercase":
            blk = b"\x88" + b"\x00" + bytes([7]) + b"X-Upper" + bytes([1]) + b"v"  # :status 200, then a literal
            self.send(frame(HEADERS, END_HEADERS | END_STREAM, sid, blk))
        elif path == "/short-length":
            self.fields(sid, [(":status", "200"), ("content-length", "10")])
            self.queue_body(sid, b"short")
        elif path == "/switching":
            self.fields(sid, [(":status", "101")], end_stream=True)
        elif path == "/bomb":
            # the encoder puts the field in its table and refers to it 40 times after (one byte each)
            blk = self.encoder.encode([(":status", "200")] + [("x-bomb", "b" * 4000)] * 41)
            self.send(frame(HEADERS, END_HEADERS | END_STREAM, sid, blk))
        elif path == "/ping-first":
            self.waiting_ack = ("ping", sid)
            self.send(frame(PING, 0, 0, b"pingpong"))
        elif path == "/settings-mid":
            self.waiting_ack = ("settings", sid)
            self.send(frame(SETTINGS, 0, 0, struct.pack(">HIHI", 5, 32768, 4, 200000)))
        elif path == "/hold":
            self.holds.append(sid)  # answered once the read that brought it is all handled (settle)
        elif path == "/report":
            self.fields(sid, [(":status", "200"), ("content-type", "application/json")])
            with LOCK:
                text = json.dumps(self.report)
            self.queue_body(sid, text.encode())
        else:
            self.fields(sid, [(":status", "404")], end_stream=True)
        if path not in ("/hold", "/ping-first", "/settings-mid") and sid in self.streams and sid not in self.out:
            self.streams.pop(sid, None)

    def on_block(self, sid, end_stream, blk):
        if self.size_update_due:
            # RFC 7541 4.2: the first block after the smaller table size starts with an update
            if not blk or (blk[0] & 0xE0) != 0x20:
                with LOCK:
                    self.report["size_updates_ok"] = False
            self.size_update_due = False
        headers = dict(self.decoder.decode(blk, raw=False))
        self.streams[sid] = {"path": headers.get(":path", ""), "body": b"", "ended": False}
        self.send_stream[sid] = self.send_init
        # until the client has our SETTINGS, a stream's window is the protocol's default
        self.recv_stream[sid] = self.args.initial_window if self.acked else 65535
        with LOCK:
            self.report["max_open"] = max(self.report["max_open"], len(self.streams))
        if end_stream:
            self.streams[sid]["ended"] = True
            self.answer(sid)

    def on_frame(self, ftype, flags, sid, payload):
        if ftype == SETTINGS and not flags & ACK:
            for i in range(0, len(payload), 6):
                key, value = struct.unpack(">HI", payload[i:i + 6])
                if key == 4:
                    delta = value - self.send_init
                    self.send_init = value
                    for s in self.send_stream:
                        self.send_stream[s] += delta
            self.send(frame(SETTINGS, ACK, 0))
            self.pump()
        elif ftype == SETTINGS and not self.acked:
            # RFC 9113 6.9.2: the streams open before it go from the default window to ours
            self.acked = True
            # blocks after the acknowledgement are the encoder's after the change (RFC 7541 4.2)
            table = self.args.header_table_size
            self.size_update_due = table is not None and table < 4096
            for s in self.recv_stream:
                self.recv_stream[s] += self.args.initial_window - 65535
                self.refill(s)
        elif ftype == SETTINGS and self.waiting_ack and self.waiting_ack[0] == "settings":
            sid0 = self.waiting_ack[1]
            self.waiting_ack = None
            self.fields(sid0, [(":status", "200")])
            self.queue_body(sid0, b"after settings")
        elif ftype == PING and flags & ACK:
            if self.waiting_ack and self.waiting_ack[0] == "ping" and payload == b"pingpong":
                sid0 = self.waiting_ack[1]
                self.waiting_ack = None
                self.fields(sid0, [(":status", "200")])
                self.queue_body(sid0, b"after ping")
        elif ftype == PING:
            self.send(frame(PING, ACK, 0, payload))
        elif ftype == WINDOW_UPDATE:
            inc = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
            if sid == 0:
                self.send_conn += inc
            else:
                self.send_stream[sid] = self.send_stream.get(sid, 0) + inc
            self.pump()
        elif ftype == HEADERS:
            if flags & PADDED:
                pad = payload[0]
                payload = payload[1:len(payload) - pad]
            if flags & PRIORITY_FLAG:
                payload = payload[5:]
            if flags & END_HEADERS:
                self.on_block(sid, flags & END_STREAM, payload)
            else:
                self.block = (sid, flags & END_STREAM, payload)
        elif ftype == CONTINUATION:
            s, end, blk = self.block
            blk += payload
            if flags & END_HEADERS:
                self.block = None
                self.on_block(s, end, blk)
            else:
                self.block = (s, end, blk)
        elif ftype == DATA:
            window = min(self.recv_conn, self.recv_stream.get(sid, 0))
            self.recv_conn -= len(payload)
            self.recv_stream[sid] = self.recv_stream.get(sid, 0) - len(payload)
            if len(payload) > window:
                self.send(frame(GOAWAY, 0, 0, struct.pack(">II", 0, FLOW_CONTROL_ERROR)))
                raise ConnectionError("the client sent past a window")
            st = self.streams.get(sid)
            if st is not None:
                st["body"] += payload
            # a window is given back only once used up: a client that sends past one is caught
            # by the check above, however its frames are cut and read
            self.refill(sid)
            if flags & END_STREAM and st is not None:
                st["ended"] = True
                self.answer(sid)
        elif ftype == RST_STREAM:
            with LOCK:
                self.report["resets"].append(struct.unpack(">I", payload)[0])
            self.streams.pop(sid, None)
            self.out.pop(sid, None)
            if sid in self.holds:
                self.holds.remove(sid)

    def settle(self):
        """After a whole read: the /hold streams open at once. Counting after the read, not per
        frame, sees a client that opened more than the limit in one go."""
        if len(self.holds) > self.args.max_streams:
            status = "500"
        elif len(self.holds) == self.args.max_streams:
            status = "200"
        else:
            return
        for h in self.holds:
            self.fields(h, [(":status", status)], end_stream=True)
            self.streams.pop(h, None)
        self.holds = []

    def refill(self, sid):
        """Credits a window back to its full size once the client has used it all."""
        if self.recv_conn <= 0:
            self.send(window_update(0, 65535 - self.recv_conn))
            self.recv_conn = 65535
        full = self.args.initial_window if self.acked else 65535
        if sid in self.recv_stream and self.recv_stream[sid] <= 0:
            self.send(window_update(sid, full - self.recv_stream[sid]))
            self.recv_stream[sid] = full

    def serve(self):
        settings = struct.pack(">HI", 4, self.args.initial_window) + struct.pack(">HI", 3, self.args.max_streams)
        if self.args.header_table_size is not None:
            settings += struct.pack(">HI", 1, self.args.header_table_size)
        self.send(frame(SETTINGS, 0, 0, settings))
        while len(self.buf) < len(PREFACE):
            self.read()
        if not self.buf.startswith(PREFACE):
            raise ConnectionError("no client preface")
        self.buf = self.buf[len(PREFACE):]
        while True:
            while len(self.buf) >= 9:
                length = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + length:
                    break
                ftype, flags = self.buf[3], self.buf[4]
                sid = struct.unpack(">I", self.buf[5:9])[0] & 0x7FFFFFFF
                payload = self.buf[9:9 + length]
                self.buf = self.buf[9 + length:]
                self.on_frame(ftype, flags, sid, payload)
            self.settle()
            self.read()

    def read(self):
        select.select([self.sock], [], [])
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.buf += data


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--initial-window", type=int, default=65535)
    p.add_argument("--max-streams", type=int, default=100)
    p.add_argument("--header-table-size", type=int, default=None)
    args = p.parse_args()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    print("listening on 127.0.0.1:%d" % server.getsockname()[1], flush=True)

    def run(sock):
        try:
            Conn(sock, args).serve()
        except (ConnectionError, OSError) as e:
            print("connection ended: %s" % e, file=sys.stderr, flush=True)
        finally:
            sock.close()

    while True:
        sock, _ = server.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=run, args=(sock,), daemon=True).start()


if __name__ == "__main__":
    main()
