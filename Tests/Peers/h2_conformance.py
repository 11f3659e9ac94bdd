#!/usr/bin/env python3
"""An h2spec-like conformance and robustness battery for swift-micro's HTTP/2 server (h2c, or TLS
with --tls): RFC 9113 framing, streams, flow control and messages, RFC 7541 HPACK.

Every case opens its own connection (preface + SETTINGS, waits for the server's SETTINGS, ACKs it,
and waits for the ACK of its own), sends a crafted sequence built byte by byte (h2wire.py) and
checks the server's reaction against the expected one:
  conn_error(CODES)    GOAWAY with one of CODES, then the server closes the connection;
  stream_error(CODES)  RST_STREAM with one of CODES on the stream, then the connection still works:
                       a PING is answered and a normal request on a new stream is answered (a
                       connection error with one of CODES is accepted too: RFC 9113 5.4.1 lets an
                       endpoint treat any stream error as a connection error; `observed` says so);
  answer               a normal answer (:status 200, and with --grpc grpc-status 0; the body
                       carries the name sent), or what the case states.
Waits are event-based: for a frame, EOF or a PING ACK, each bounded by --max-wait; nothing sleeps.
Most error cases send a PING right after the offending frames: the server handles frames in
order, so an ACK that comes back without an error before it means "no reaction" (the server
lingers after a connection error, shutdown(SHUT_WR) then reading, so the extra PING cannot turn
its close into a reset). After each case the server must still answer a PING on a fresh
connection, and with --pid its process must be alive; if it is gone, the run stops.

Prints ONE JSON object: {"target": ..., "passed": N, "failed": [names], "cases": {name: {"expected",
"observed", "ok", "rfc", ...}}}. Exit 0: all cases pass; 1: some fail; 2: the script's own error.

Usage:
  h2_conformance.py --port P [--host 127.0.0.1] [--pid PID] [--max-wait S] [--case NAME ...]
                    [--list] [--verbose]
      the micro protocol (default: helloworld's Helloworld.Greeting, JSON {"name": ...});
      --endpoint E and --content-type T for another micro endpoint (a body that is not JSON is
      sent as the raw name bytes, e.g. echo's Echo.Call with application/octet-stream)
  h2_conformance.py --port P --grpc --path /echo.Echo/Call
      gRPC (application/grpc, te: trailers) with a protobuf message {1: name} (echo returns it)
  --case takes exact names or prefixes (settings_, hpack_, ...); --list prints the names with
  the RFC clause and the expected reaction of each.

Load: one connection per case (plus a PING probe on a fresh one), a few requests each, except
max_concurrent_streams_* (2 x SETTINGS_MAX_CONCURRENT_STREAMS small requests, skipped above
--max-streams), hpack_dynamic_table_churn (60 requests) and client_exceeds_stream_window, which
sends request bodies until one stream window stays closed: about 20 MiB against the default
server (its 16 MiB per-connection body budget must be passed before it stops crediting a stream;
bounded by --window-budget, reported as skipped if no window closes within it).

Start a server as Benchmarks/compare does, e.g.:
  MICRO_REGISTRY_ADDRESS=$(mktemp -d) MICRO_SERVER_ADDRESS=127.0.0.1:0 .build/release/helloworld
  (its log says "listening on 127.0.0.1:PORT")
"""
import argparse
import json
import os
import struct
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hpack  # noqa: E402

from h2wire import (ACK, CONTINUATION, DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PADDED, PING,  # noqa: E402
                    PRIORITY, PRIORITY_FLAG, PUSH_PROMISE, RST_STREAM, SETTINGS, WINDOW_UPDATE, frame, hpack_int,
                    hpack_str, window_update)
from h2_attack import PREFACE, Closed, Peer, alive, grpc_message, pb_note, settings_frame  # noqa: E402

MAX_WINDOW = 2**31 - 1
SYNC = b"confsync"


class ScriptError(Exception):
    pass


# --- byte builders -------------------------------------------------------------------------------

def lit(name, value):
    """A literal field without indexing, new name, raw strings (bytes or str, any content)."""
    return b"\x00" + hpack_str(name) + hpack_str(value)


def lit_indexed(name, value):
    """A literal field with incremental indexing, new name: it goes into the dynamic table."""
    return b"\x40" + hpack_str(name) + hpack_str(value)


def block(fields):
    return b"".join(lit(n, v) for n, v in fields)


def headers_frame(sid, blk, end_stream=False, end_headers=True, pad=None, priority=None):
    flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
    payload = blk
    if priority is not None:
        flags |= PRIORITY_FLAG
        dep, weight = priority
        payload = struct.pack(">IB", dep, weight) + payload
    if pad is not None:
        flags |= PADDED
        payload = bytes([pad]) + payload + b"\0" * pad
    return frame(HEADERS, flags, sid, payload)


def data_frame(sid, body, end_stream=False, pad=None):
    flags = END_STREAM if end_stream else 0
    payload = body
    if pad is not None:
        flags |= PADDED
        payload = bytes([pad]) + body + b"\0" * pad
    return frame(DATA, flags, sid, payload)


def data_frames(sid, body, end_stream=False, max_frame=16384):
    """body in DATA frames of at most max_frame bytes (the server's SETTINGS_MAX_FRAME_SIZE is the default)."""
    chunks = [body[i:i + max_frame] for i in range(0, len(body), max_frame)] or [b""]
    return b"".join(data_frame(sid, ch, end_stream=end_stream and i == len(chunks) - 1) for i, ch in enumerate(chunks))


def ping(opaque=SYNC, ack=False):
    return frame(PING, ACK if ack else 0, 0, opaque)


def rst(sid, code=8):
    return frame(RST_STREAM, 0, sid, struct.pack(">I", code))


def priority(sid, dep=0, weight=16, length=5):
    return frame(PRIORITY, 0, sid, (struct.pack(">IB", dep, weight) + b"\0" * 8)[:length])


def goaway(last=0, code=0):
    return frame(GOAWAY, 0, 0, struct.pack(">II", last, code))


# --- requests ------------------------------------------------------------------------------------

class Target:
    """What a normal request looks like for the server under test."""

    def __init__(self, args):
        self.args = args
        self.grpc = args.grpc
        self.authority = "%s:%d" % (args.host, args.port)

    def fields(self, method="POST", path=None, extra=(), omit=(), te=False):
        a = self.args
        f = [(":method", method), (":scheme", "https" if a.tls else "http"),
             (":path", path or a.path or ("/" if not self.grpc else "/echo.Echo/Call")), (":authority", self.authority)]
        if self.grpc:
            f += [("content-type", "application/grpc"), ("te", "trailers")]
        else:
            f += [("content-type", a.content_type), ("micro-endpoint", a.endpoint)]
            if te:
                f.append(("te", "trailers"))
        f = [(n, v) for n, v in f if n not in omit]
        return f + list(extra)

    def body(self, name):
        if self.grpc:
            return grpc_message(pb_note(name))
        if "json" in self.args.content_type:
            return json.dumps({"name": name}).encode()
        return name.encode()

    def request(self, sid, name="conformance", extra=(), omit=(), method="POST", te=False):
        """HEADERS + DATA(END_STREAM): a whole normal request."""
        return (headers_frame(sid, block(self.fields(method=method, extra=extra, omit=omit, te=te)))
                + data_frames(sid, self.body(name), end_stream=True))

    def answer_ok(self, ans, name="conformance"):
        """(ok, why) for a collected answer."""
        if ans is None:
            return False, "no answer"
        if ans.get("rst"):
            return False, "RST_STREAM(%s)" % ans["rst"]
        if not ans.get("ended"):
            return False, "answer not ended (%s)" % ans.get("why", "?")
        h = dict(ans["headers"] or [])
        if h.get(":status") != "200":
            return False, ":status %s" % h.get(":status")
        if self.grpc:
            t = dict(ans["trailers"] or [])
            st = t.get("grpc-status", h.get("grpc-status"))
            if st != "0":
                return False, "grpc-status %s (%s)" % (st, t.get("grpc-message", h.get("grpc-message")))
        elif "micro-error" in h:
            return False, "micro-error: %s" % h["micro-error"][:120]
        if name is not None and name.encode() not in ans["body"]:
            return False, "body without the name sent (%d bytes)" % len(ans["body"])
        return True, "answered 200 (%d body bytes)" % len(ans["body"])


# --- a connection --------------------------------------------------------------------------------

class Conn(Peer):
    """h2_attack's Peer (frame parser, HPACK decoder, auto ACK of the server's SETTINGS) plus
    answers collected per stream."""

    def __init__(self, ctx, settings=(), handshake=True, raw_start=None):
        super().__init__(ctx.args)
        self.ctx = ctx
        ctx.conns.append(self)
        self.blocks = {}  # sid -> [field lists]
        self.deadline_s = ctx.args.max_wait
        if raw_start is not None:
            self.send(raw_start)
            return
        self.send(PREFACE + settings_frame(settings))
        if handshake:
            dl = self.dl()
            if self.wait_for(lambda e: e["type"] == "SETTINGS" and not e.get("ack"), dl) is None:
                raise ScriptError("no SETTINGS from the server")
            if self.wait_for(lambda e: e["type"] == "SETTINGS" and e.get("ack"), dl) is None:
                raise ScriptError("our SETTINGS not acknowledged")

    def dl(self, s=None):
        return time.monotonic() + (s if s is not None else self.deadline_s)

    def on_frame(self, ftype, flags, sid, payload):
        ev = super().on_frame(ftype, flags, sid, payload)
        if "headers" in ev:
            self.blocks.setdefault(sid, []).append(ev["headers"])
        if ftype == PING:
            ev["payload"] = payload
        return ev

    def answer(self, sid):
        bl = self.blocks.get(sid, [])
        ended = self.ended.get(sid)
        return {"headers": bl[0] if bl else None, "trailers": bl[1] if len(bl) > 1 else None,
                "body": bytes(self.data_kept.get(sid, b"")), "ended": ended == "end_stream",
                "rst": ended[4:] if ended and ended.startswith("rst") else None}

    def collect(self, sids, deadline=None):
        """Frames until every stream in sids has ended (END_STREAM or RST_STREAM), or GOAWAY/EOF/
        the bound; returns {sid: answer}."""
        deadline = deadline or self.dl()
        sids = list(sids)
        why = None
        while any(s not in self.ended for s in sids):
            ev = self.next_frame(deadline)
            if ev is None:
                why = "eof" if self.closed() else "timeout"
                break
            if ev["type"] == "GOAWAY":
                why = "goaway %s" % ev.get("code")
        out = {}
        for s in sids:
            a = self.answer(s)
            if not a["ended"] and not a["rst"]:
                a["why"] = why or "?"
            out[s] = a
        return out

    def watch(self, sid=None, deadline=None, stop_on_ping=True, stop_on_end=True):
        """Frames until: GOAWAY (then up to EOF), EOF, RST_STREAM on sid, END_STREAM on sid (if
        stop_on_end), our SYNC PING's ACK (if stop_on_ping), or the bound."""
        deadline = deadline or self.dl()
        o = {"goaway": None, "goaway_last": None, "goaway_debug": None, "closed": False, "rst": None,
             "ping_ack": False, "timeout": False, "ended": False}
        while True:
            ev = self.next_frame(deadline)
            if ev is None:
                o["closed"] = self.closed()
                o["timeout"] = not self.closed()
                return o
            t = ev["type"]
            if t == "GOAWAY":
                o["goaway"], o["goaway_last"], o["goaway_debug"] = ev.get("code"), ev.get("last_sid"), ev.get("debug")
                # the server should close now: read to EOF (bounded)
                end = min(deadline + 2, time.monotonic() + max(2.0, self.deadline_s))
                while self.next_frame(end) is not None:
                    pass
                o["closed"] = self.closed()
                return o
            if sid is not None and ev["sid"] == sid and t == "RST_STREAM":
                o["rst"] = ev.get("code")
                return o
            if sid is not None and ev["sid"] == sid and ev.get("end_stream") and stop_on_end:
                o["ended"] = True
                return o
            if t == "PING" and ev.get("ack") and ev.get("payload") == SYNC:
                o["ping_ack"] = True
                if stop_on_ping:
                    return o

    def ping_ok(self, opaque=b"usable!!"):
        try:
            self.send(ping(opaque))
        except Closed:
            return False
        ev = self.wait_for(lambda e: e["type"] in ("PING", "GOAWAY") and (e["type"] == "GOAWAY" or e.get("ack")) and
                           (e["type"] == "GOAWAY" or e.get("payload") == opaque), self.dl())
        return ev is not None and ev["type"] == "PING"

    def frames_seen(self, limit=40):
        return [n if c == 1 else "%s x%d" % (n, c) for n, c in self.runs[:limit]]


def describe(o):
    parts = []
    if o.get("rst"):
        parts.append("RST_STREAM(%s)" % o["rst"])
    if o.get("ended"):
        parts.append("stream answered (END_STREAM)")
    if o.get("goaway"):
        parts.append("GOAWAY(%s, last %s%s)" % (o["goaway"], o["goaway_last"],
                                               ", %r" % o["goaway_debug"] if o.get("goaway_debug") else ""))
    if o.get("closed"):
        parts.append("then closed" if o.get("goaway") else "closed without GOAWAY")
    elif o.get("goaway"):
        parts.append("NOT closed within the bound")
    if o.get("ping_ack") and not o.get("goaway") and not o.get("rst"):
        parts.append("no reaction (the PING sent after it was answered)")
    if o.get("timeout"):
        parts.append("nothing within the bound (timeout)")
    return "; ".join(parts) or "nothing"


# --- expectations --------------------------------------------------------------------------------

def expect_conn_error(c, codes, send=b"", sync=True):
    """Sends `send` (+ a SYNC PING), then expects GOAWAY(code in codes) and a close."""
    try:
        c.send(send + (ping() if sync else b""))
    except Closed as e:
        pass_note = "write failed: %s" % e
    else:
        pass_note = None
    o = c.watch()
    ok = o["goaway"] in codes and o["closed"]
    obs = describe(o)
    if pass_note:
        obs += " (%s)" % pass_note
    return ok, obs


def expect_stream_error(c, sid, codes, send=b"", next_sid=None, sync=True, allow_conn=True, check_request=True,
                        before_next=b""):
    """Sends `send` (+ a SYNC PING), then expects RST_STREAM(sid, code in codes) and a usable
    connection (PING answered, a request on next_sid answered). A connection error with a code
    in codes is accepted (RFC 9113 5.4.1)."""
    try:
        c.send(send + (ping() if sync else b""))
    except Closed as e:
        return False, "write failed: %s" % e
    o = c.watch(sid=sid)
    if o["goaway"]:
        ok = allow_conn and o["goaway"] in codes and o["closed"]
        return ok, describe(o) + (" (a connection error in place of the stream error: allowed, RFC 9113 5.4.1)"
                                  if ok else "")
    if not o["rst"]:
        if o["ended"]:
            return False, "stream %d answered, no RST_STREAM" % sid
        return False, describe(o)
    if o["rst"] not in codes:
        return False, describe(o)
    # the connection is still usable
    if not c.ping_ok():
        return False, describe(o) + "; then the connection did not answer a PING"
    if check_request:
        ns = next_sid or (sid + 2)
        try:
            c.send(before_next + c.ctx.target.request(ns))
        except Closed as e:
            return False, describe(o) + "; then write failed: %s" % e
        ans = c.collect([ns])[ns]
        good, why = c.ctx.target.answer_ok(ans)
        if not good:
            return False, describe(o) + "; then a request on stream %d: %s" % (ns, why)
        return True, describe(o) + "; PING answered; stream %d %s" % (ns, why)
    return True, describe(o) + "; PING answered"


def expect_answer(c, sids, send=b"", name="conformance"):
    try:
        c.send(send)
    except Closed as e:
        return False, "write failed: %s" % e
    answers = c.collect(sids)
    notes = []
    ok = True
    for s in sids:
        good, why = c.ctx.target.answer_ok(answers[s], name)
        ok &= good
        notes.append("stream %d: %s" % (s, why))
    if not ok and c.events:
        gs = [e for e in c.events if e["type"] == "GOAWAY"]
        if gs:
            notes.append("GOAWAY(%s)" % gs[0].get("code"))
    return ok, "; ".join(notes)


# --- the cases -----------------------------------------------------------------------------------

CASES = []  # (name, expected, rfc, fn)


def case(name, expected, rfc):
    def deco(fn):
        CASES.append((name, expected, rfc, fn))
        return fn
    return deco


# preface and SETTINGS

@case("preface_first_frame_not_settings", "conn_error(PROTOCOL_ERROR)", "RFC 9113 3.4")
def _(ctx):
    c = Conn(ctx, raw_start=PREFACE + ping(b"notsetts"))
    return expect_conn_error(c, ["PROTOCOL_ERROR"], sync=False)


@case("preface_first_frame_settings_ack", "conn_error(PROTOCOL_ERROR)", "RFC 9113 3.4")
def _(ctx):
    c = Conn(ctx, raw_start=PREFACE + settings_frame(ack=True))
    return expect_conn_error(c, ["PROTOCOL_ERROR"], sync=False)


@case("settings_ack_with_payload", "conn_error(FRAME_SIZE_ERROR)", "RFC 9113 6.5")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["FRAME_SIZE_ERROR"], frame(SETTINGS, ACK, 0, struct.pack(">HI", 3, 100)))


@case("settings_length_not_multiple_of_6", "conn_error(FRAME_SIZE_ERROR)", "RFC 9113 6.5")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["FRAME_SIZE_ERROR"], frame(SETTINGS, 0, 0, struct.pack(">HI", 3, 100)[:5]))


@case("settings_on_stream_1", "conn_error(PROTOCOL_ERROR)", "RFC 9113 6.5")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["PROTOCOL_ERROR"], frame(SETTINGS, 0, 1, struct.pack(">HI", 3, 100)))


@case("settings_enable_push_2", "conn_error(PROTOCOL_ERROR)", "RFC 9113 6.5.2")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["PROTOCOL_ERROR"], settings_frame([(2, 2)]))


@case("settings_initial_window_2_31", "conn_error(FLOW_CONTROL_ERROR)", "RFC 9113 6.5.2")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["FLOW_CONTROL_ERROR"], settings_frame([(4, 2**31)]))


@case("settings_max_frame_16383", "conn_error(PROTOCOL_ERROR)", "RFC 9113 6.5.2")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["PROTOCOL_ERROR"], settings_frame([(5, 16383)]))


@case("settings_max_frame_2_24", "conn_error(PROTOCOL_ERROR)", "RFC 9113 6.5.2")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["PROTOCOL_ERROR"], settings_frame([(5, 2**24)]))


@case("settings_unknown_id_ignored", "SETTINGS ACK, then a request answered", "RFC 9113 6.5.2")
def _(ctx):
    c = Conn(ctx, settings=[(0xFF, 1), (0x4242, 0xFFFFFFFF)])  # the handshake waits for the ACK
    return expect_answer(c, [1], ctx.target.request(1))


@case("settings_header_table_size_0", "answers start with a dynamic table size update to 0",
      "RFC 7541 4.2, RFC 9113 6.5.2")
def _(ctx):
    # a decoder whose table the client shrinks must see the change signalled at the start of the
    # next header block (nghttp2's decoder refuses the block otherwise)
    c = Conn(ctx, settings=[(1, 0)])
    ok, why = expect_answer(c, [1], ctx.target.request(1))
    heads = [e for e in c.events if e["type"] == "HEADERS" and e["sid"] == 1 and "block_head" in e]
    if not heads:
        return False, "no answer HEADERS (%s)" % why
    first = heads[0]["block_head"][:1]
    if first != b"\x20":
        return False, "the first answer block starts with %r, not a size update to 0" % first
    return ok, "size update 0x20 first; " + why


@case("settings_acked", "a SETTINGS frame mid-connection is ACKed (empty ACK)", "RFC 9113 6.5.3")
def _(ctx):
    c = Conn(ctx)
    c.send(settings_frame([(3, 100), (6, 10000)]))
    ev = c.wait_for(lambda e: e["type"] in ("SETTINGS", "GOAWAY"), c.dl())
    if ev is None:
        return False, "no SETTINGS ACK (%s)" % ("eof" if c.closed() else "timeout")
    if ev["type"] == "GOAWAY" or not ev.get("ack") or ev["len"] != 0:
        return False, "got %s" % ev
    return True, "SETTINGS ACK (empty)"


@case("settings_enable_connect_protocol_2", "conn_error(PROTOCOL_ERROR)", "RFC 8441 3")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["PROTOCOL_ERROR"], settings_frame([(8, 2)]))


@case("settings_no_rfc7540_priorities_2", "conn_error(PROTOCOL_ERROR)", "RFC 9218 2.1")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["PROTOCOL_ERROR"], settings_frame([(9, 2)]))


@case("settings_initial_window_overflows_stream", "conn_error(FLOW_CONTROL_ERROR)", "RFC 9113 6.9.2")
def _(ctx):
    # stream 1 open (its answer is not produced: no END_STREAM); its send window raised to 2^31-1,
    # then INITIAL_WINDOW_SIZE + 1 pushes it past the maximum
    c = Conn(ctx)
    c.send(headers_frame(1, block(ctx.target.fields())) + window_update(1, MAX_WINDOW - 65535) + ping())
    o = c.watch(sid=1)
    if not o["ping_ack"]:
        return False, "before the SETTINGS: " + describe(o)
    return expect_conn_error(c, ["FLOW_CONTROL_ERROR"], settings_frame([(4, 65536)]))


# frames

@case("frame_too_large_data", "FRAME_SIZE_ERROR (stream or connection)", "RFC 9113 4.2")
def _(ctx):
    c = Conn(ctx)
    return expect_stream_error(c, 1, ["FRAME_SIZE_ERROR"],
                               headers_frame(1, block(ctx.target.fields())) + data_frame(1, b"x" * 16385))


@case("frame_too_large_headers", "conn_error(FRAME_SIZE_ERROR)", "RFC 9113 4.2")
def _(ctx):
    c = Conn(ctx)
    blk = block(ctx.target.fields(extra=[("x-pad", "a" * 16384)]))
    blk = blk[:16385]
    return expect_conn_error(c, ["FRAME_SIZE_ERROR"], frame(HEADERS, END_HEADERS, 1, blk))


@case("frame_too_large_unknown_type", "conn_error(FRAME_SIZE_ERROR)", "RFC 9113 4.2")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["FRAME_SIZE_ERROR"], frame(0x42, 0, 0, b"\0" * 16385))


@case("data_frame_16384_ok", "answer (a DATA frame of exactly 16384 bytes is accepted)", "RFC 9113 4.2")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    n = 16384 - len(t.body(""))
    for _ in range(4):
        name = "n" * n
        body = t.body(name)
        n -= len(body) - 16384
    if len(body) != 16384:
        return False, "could not build a 16384-byte body (%d)" % len(body)
    return expect_answer(c, [1], headers_frame(1, block(t.fields())) + data_frame(1, body, end_stream=True), name=name)


@case("ping_length_7", "conn_error(FRAME_SIZE_ERROR)", "RFC 9113 6.7")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["FRAME_SIZE_ERROR"], frame(PING, 0, 0, b"1234567"))


@case("ping_on_stream_1", "conn_error(PROTOCOL_ERROR)", "RFC 9113 6.7")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["PROTOCOL_ERROR"], frame(PING, 0, 1, b"12345678"))


@case("ping_answered", "PING ACK with the same payload", "RFC 9113 6.7")
def _(ctx):
    c = Conn(ctx)
    c.send(ping(b"\x00\xffabc\x01\x02\x03"))
    ev = c.wait_for(lambda e: e["type"] in ("PING", "GOAWAY"), c.dl())
    if ev is None or ev["type"] != "PING":
        return False, "got %s" % (ev and ev["type"])
    ok = ev.get("ack") and ev["payload"] == b"\x00\xffabc\x01\x02\x03" and ev["sid"] == 0
    return ok, "PING flags %d payload %s" % (ev["flags"], ev["payload"].hex())


@case("ping_ack_from_client_ignored", "no answer to a PING ACK; the connection still works", "RFC 9113 6.7")
def _(ctx):
    c = Conn(ctx)
    c.send(ping(b"ackackac", ack=True) + ping())
    ev = c.wait_for(lambda e: e["type"] in ("PING", "GOAWAY"), c.dl())
    if ev is None:
        return False, "nothing"
    ok = ev["type"] == "PING" and ev["payload"] == SYNC
    return ok, "first PING back: %s" % (ev.get("payload", ev["type"]))


@case("unknown_frame_type_ignored", "ignored (stream 0, idle stream 5, with flags); a request answered",
      "RFC 9113 4.1, 5.5")
def _(ctx):
    c = Conn(ctx)
    junk = frame(0x42, 0xFF, 0, b"hello") + frame(0xFA, 0, 5, b"\0" * 100) + frame(0x0B, 0, 1, b"")
    return expect_answer(c, [1], junk + ctx.target.request(1))


@case("unknown_frame_between_requests", "both requests answered", "RFC 9113 5.5")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    ok1, w1 = expect_answer(c, [1], t.request(1) + frame(0x42, 0, 1, b"after"))
    ok2, w2 = expect_answer(c, [3], frame(0x43, 0, 0, b"between") + t.request(3))
    return ok1 and ok2, w1 + "; " + w2


@case("unknown_frame_inside_header_block", "conn_error(PROTOCOL_ERROR)", "RFC 9113 5.5, 4.3")
def _(ctx):
    c = Conn(ctx)
    blk = block(ctx.target.fields())
    return expect_conn_error(c, ["PROTOCOL_ERROR"], headers_frame(1, blk[:10], end_headers=False)
                             + frame(0x42, 0, 1, b"x") + frame(CONTINUATION, END_HEADERS, 1, blk[10:]))


@case("push_promise_from_client", "conn_error(PROTOCOL_ERROR)", "RFC 9113 8.4, 6.6")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    pp = frame(PUSH_PROMISE, END_HEADERS, 1, struct.pack(">I", 2) + block(t.fields(method="GET")))
    return expect_conn_error(c, ["PROTOCOL_ERROR"], headers_frame(1, block(t.fields())) + pp)


@case("window_update_length_3", "conn_error(FRAME_SIZE_ERROR)", "RFC 9113 6.9")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["FRAME_SIZE_ERROR"], frame(WINDOW_UPDATE, 0, 0, b"\0\0\1"))


@case("window_update_0_connection", "conn_error(PROTOCOL_ERROR)", "RFC 9113 6.9")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["PROTOCOL_ERROR"], window_update(0, 0))


@case("window_update_0_stream", "stream_error(PROTOCOL_ERROR)", "RFC 9113 6.9")
def _(ctx):
    c = Conn(ctx)
    return expect_stream_error(c, 1, ["PROTOCOL_ERROR"], headers_frame(1, block(ctx.target.fields())) + window_update(1, 0))


@case("window_update_idle_stream", "conn_error(PROTOCOL_ERROR)", "RFC 9113 5.1 (idle)")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["PROTOCOL_ERROR"], window_update(3, 100))


@case("window_overflow_connection", "conn_error(FLOW_CONTROL_ERROR)", "RFC 9113 6.9.1")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["FLOW_CONTROL_ERROR"], window_update(0, MAX_WINDOW))


@case("window_overflow_stream", "stream_error(FLOW_CONTROL_ERROR)", "RFC 9113 6.9.1")
def _(ctx):
    c = Conn(ctx)
    return expect_stream_error(c, 1, ["FLOW_CONTROL_ERROR"],
                               headers_frame(1, block(ctx.target.fields())) + window_update(1, MAX_WINDOW))


@case("rst_stream_idle", "conn_error(PROTOCOL_ERROR)", "RFC 9113 6.4")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["PROTOCOL_ERROR"], rst(1))


@case("rst_stream_length_3", "conn_error(FRAME_SIZE_ERROR)", "RFC 9113 6.4")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["FRAME_SIZE_ERROR"],
                             headers_frame(1, block(ctx.target.fields())) + frame(RST_STREAM, 0, 1, b"\0\0\x08"))


@case("rst_stream_stream_0", "conn_error(PROTOCOL_ERROR)", "RFC 9113 6.4")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["PROTOCOL_ERROR"], rst(0))


@case("data_stream_0", "conn_error(PROTOCOL_ERROR)", "RFC 9113 6.1")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["PROTOCOL_ERROR"], data_frame(0, b"hello"))


@case("data_idle_stream", "conn_error(PROTOCOL_ERROR)", "RFC 9113 5.1 (idle)")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["PROTOCOL_ERROR"], data_frame(1, b"hello", end_stream=True))


def half_closed_remote(ctx):
    """A connection whose stream 1 is half-closed (remote) on the server: a whole request, its
    answer held by a zero stream window (SETTINGS INITIAL_WINDOW_SIZE 0); returns (conn, None) once
    the answer's HEADERS came, or (None, why)."""
    c = Conn(ctx, settings=[(4, 0)])
    c.send(ctx.target.request(1))
    ev = c.wait_for(lambda e: e["sid"] == 1 and e["type"] in ("HEADERS", "RST_STREAM") or e["type"] == "GOAWAY", c.dl())
    if ev is None or ev["type"] != "HEADERS":
        return None, "the held answer's HEADERS did not come (%s)" % (ev and ev["type"])
    if ev.get("end_stream"):
        return None, "the answer ended in its HEADERS: stream 1 is closed, not half-closed"
    return c, None


@case("data_half_closed_remote", "stream_error(STREAM_CLOSED)", "RFC 9113 5.1 (half-closed remote), 6.1")
def _(ctx):
    c, why = half_closed_remote(ctx)
    if c is None:
        return False, why
    return expect_stream_error(c, 1, ["STREAM_CLOSED"], data_frame(1, b"more"), before_next=settings_frame([(4, 65535)]))


@case("headers_half_closed_remote", "stream_error(STREAM_CLOSED)", "RFC 9113 5.1 (half-closed remote)")
def _(ctx):
    c, why = half_closed_remote(ctx)
    if c is None:
        return False, why
    return expect_stream_error(c, 1, ["STREAM_CLOSED"], headers_frame(1, block([("x-late", "1")]), end_stream=True),
                               before_next=settings_frame([(4, 65535)]))


@case("data_after_client_rst", "STREAM_CLOSED (stream or connection), or discarded (RFC 9113 5.1 closed)",
      "RFC 9113 6.1, 5.1 (closed)")
def _(ctx):
    # RFC 9113 6.1 says DATA on a stream not open / half-closed (local) MUST get STREAM_CLOSED;
    # 5.1 lets an endpoint only minimally process (discard) frames on any closed stream. Both pass;
    # the connection must stay usable.
    c = Conn(ctx)
    c.send(headers_frame(1, block(ctx.target.fields())) + rst(1) + data_frame(1, b"late") + ping())
    o = c.watch(sid=1)
    if o["goaway"]:
        return o["goaway"] in ("STREAM_CLOSED", "PROTOCOL_ERROR") and o["closed"], describe(o)
    if o["rst"] and o["rst"] != "STREAM_CLOSED":
        return False, describe(o)
    if not o["rst"] and not o["ping_ack"]:
        return False, describe(o)
    ok, why = expect_answer(c, [3], ctx.target.request(3))
    return ok, ("RST_STREAM(STREAM_CLOSED)" if o["rst"] else "discarded (PING answered)") + "; " + why


@case("priority_length_4", "stream_error(FRAME_SIZE_ERROR)", "RFC 9113 6.3")
def _(ctx):
    c = Conn(ctx)
    return expect_stream_error(c, 1, ["FRAME_SIZE_ERROR"], headers_frame(1, block(ctx.target.fields())) + priority(1, length=4))


@case("priority_length_4_idle_stream", "conn_error(FRAME_SIZE_ERROR): a stream error would need RST_STREAM on an "
      "idle stream, which 6.4 forbids", "RFC 9113 6.3, 6.4, 5.4.1")
def _(ctx):
    # 6.3 makes a PRIORITY of the wrong length a stream error, 6.4 forbids RST_STREAM on an idle
    # stream: on an idle stream only the connection error (5.4.1) satisfies both
    c = Conn(ctx)
    ok, obs = expect_conn_error(c, ["FRAME_SIZE_ERROR"], priority(3, length=4))
    if not ok and 3 in c.ended:
        obs = "RST_STREAM(3, %s) on an idle stream; " % c.ended[3][4:] + obs
        # does the server then open the stream it has reset?
        del c.ended[3]
        try:
            c.send(ctx.target.request(3))
            a = c.collect([3])[3]
            obs += "; a request on stream 3 afterwards: %s" % (
                "answered :status %s" % dict(a["headers"] or []).get(":status") if a["ended"] else
                "RST_STREAM(%s)" % a["rst"] if a["rst"] else a.get("why"))
        except Closed:
            pass
    return ok, obs


@case("priority_idle_stream_ok", "ignored; a request on a lower stream id answered", "RFC 9113 6.3, 5.1")
def _(ctx):
    c = Conn(ctx)
    return expect_answer(c, [1], priority(3, dep=0) + priority(7, dep=3) + ctx.target.request(1))


@case("priority_stream_0", "conn_error(PROTOCOL_ERROR)", "RFC 9113 6.3")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["PROTOCOL_ERROR"], priority(0))


@case("goaway_from_client_closes_when_idle", "the server closes the connection (EOF)", "RFC 9113 6.8")
def _(ctx):
    c = Conn(ctx)
    c.send(goaway(0, 0))
    o = c.watch(sid=None, stop_on_ping=False)
    return o["closed"], describe(o)


@case("goaway_from_client_stream_finishes", "the open stream is answered, then the server closes",
      "RFC 9113 6.8")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    c.send(headers_frame(1, block(t.fields())) + goaway(0, 0))
    ok, why = expect_answer(c, [1], data_frame(1, t.body("conformance"), end_stream=True))
    o = c.watch(sid=None, stop_on_ping=False)
    return ok and o["closed"], why + "; " + describe(o)


@case("goaway_length_5", "conn_error(FRAME_SIZE_ERROR or PROTOCOL_ERROR)", "RFC 9113 4.2, 6.8")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["FRAME_SIZE_ERROR", "PROTOCOL_ERROR"], frame(GOAWAY, 0, 0, b"\0\0\0\0\0"))


# header blocks

@case("headers_stream_0", "conn_error(PROTOCOL_ERROR)", "RFC 9113 6.2")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["PROTOCOL_ERROR"], headers_frame(0, block(ctx.target.fields()), end_stream=True))


@case("headers_even_stream", "conn_error(PROTOCOL_ERROR)", "RFC 9113 5.1.1")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["PROTOCOL_ERROR"], headers_frame(2, block(ctx.target.fields()), end_stream=True))


@case("continuation_without_headers", "conn_error(PROTOCOL_ERROR)", "RFC 9113 6.10")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["PROTOCOL_ERROR"], frame(CONTINUATION, END_HEADERS, 1, block(ctx.target.fields())))


@case("continuation_after_complete_block", "conn_error(PROTOCOL_ERROR)", "RFC 9113 6.10")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    return expect_conn_error(c, ["PROTOCOL_ERROR"], headers_frame(1, block(t.fields()))
                             + frame(CONTINUATION, END_HEADERS, 1, block([("x-more", "1")])))


@case("frame_between_headers_and_continuation", "conn_error(PROTOCOL_ERROR)", "RFC 9113 6.10, 4.3")
def _(ctx):
    c = Conn(ctx)
    blk = block(ctx.target.fields())
    return expect_conn_error(c, ["PROTOCOL_ERROR"], headers_frame(1, blk[:10], end_headers=False) + ping(b"between!")
                             + frame(CONTINUATION, END_HEADERS, 1, blk[10:]), sync=False)


@case("continuation_on_other_stream", "conn_error(PROTOCOL_ERROR)", "RFC 9113 6.10, 4.3")
def _(ctx):
    c = Conn(ctx)
    blk = block(ctx.target.fields())
    return expect_conn_error(c, ["PROTOCOL_ERROR"], headers_frame(1, blk[:10], end_headers=False)
                             + frame(CONTINUATION, END_HEADERS, 3, blk[10:]))


def split_continuations(sid, blk, pieces, end_stream=False):
    n = max(1, -(-len(blk) // pieces))
    chunks = [blk[i:i + n] for i in range(0, len(blk), n)]
    while len(chunks) < pieces:
        chunks.append(b"")
    out = headers_frame(sid, chunks[0], end_stream=end_stream, end_headers=len(chunks) == 1)
    for i, ch in enumerate(chunks[1:], 1):
        out += frame(CONTINUATION, END_HEADERS if i == len(chunks) - 1 else 0, sid, ch)
    return out


@case("block_in_3_continuations", "answer", "RFC 9113 6.10, 4.3")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    return expect_answer(c, [1], split_continuations(1, block(t.fields()), 4) + data_frame(1, t.body("conformance"), True))


@case("block_in_8_continuations", "answer (the implementation's limit, 8, still passes)", "RFC 9113 6.10")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    return expect_answer(c, [1], split_continuations(1, block(t.fields()), 9) + data_frame(1, t.body("conformance"), True))


@case("block_in_9_continuations", "conn_error(ENHANCE_YOUR_CALM)", "RFC 9113 10.5 (implementation limit)")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    return expect_conn_error(c, ["ENHANCE_YOUR_CALM"], split_continuations(1, block(t.fields()), 10)
                             + data_frame(1, t.body("conformance"), True))


@case("padded_headers", "answer", "RFC 9113 6.2")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    return expect_answer(c, [1], headers_frame(1, block(t.fields()), pad=40) + data_frame(1, t.body("conformance"), True))


@case("padded_headers_pad_fills_payload", "answer (padding up to the whole rest is allowed)", "RFC 9113 6.2")
def _(ctx):
    # an empty-fragment HEADERS (all padding) with END_HEADERS is an empty block: malformed request
    # (no pseudo-headers) -> a stream error, not a padding error; so test a full CONTINUATION instead
    c = Conn(ctx)
    t = ctx.target
    blk = block(t.fields())
    hf = frame(HEADERS, PADDED, 1, bytes([7]) + b"\0" * 7)  # fragment empty, 7 bytes of padding
    return expect_answer(c, [1], hf + frame(CONTINUATION, END_HEADERS, 1, blk) + data_frame(1, t.body("conformance"), True))


@case("padded_data", "answer", "RFC 9113 6.1")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    body = t.body("conformance")
    return expect_answer(c, [1], headers_frame(1, block(t.fields())) + data_frame(1, body[:5], pad=0)
                         + data_frame(1, body[5:], end_stream=True, pad=200))


@case("headers_padding_past_payload", "conn_error(PROTOCOL_ERROR)", "RFC 9113 6.2")
def _(ctx):
    c = Conn(ctx)
    blk = block(ctx.target.fields())
    return expect_conn_error(c, ["PROTOCOL_ERROR"], frame(HEADERS, END_HEADERS | END_STREAM | PADDED, 1,
                                                          bytes([len(blk) + 1]) + blk))


@case("data_padding_past_payload", "conn_error(PROTOCOL_ERROR)", "RFC 9113 6.1")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    return expect_conn_error(c, ["PROTOCOL_ERROR"], headers_frame(1, block(t.fields()))
                             + frame(DATA, END_STREAM | PADDED, 1, bytes([10]) + b"x" * 9))


@case("headers_with_priority_flag", "answer", "RFC 9113 6.2")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    return expect_answer(c, [1], headers_frame(1, block(t.fields()), priority=(0x80000000, 200))
                         + data_frame(1, t.body("conformance"), True))


@case("headers_with_priority_and_padding", "answer", "RFC 9113 6.2")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    return expect_answer(c, [1], headers_frame(1, block(t.fields()), priority=(0, 1), pad=3)
                         + data_frame(1, t.body("conformance"), True))


@case("hpack_index_0", "conn_error(COMPRESSION_ERROR)", "RFC 7541 6.1")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["COMPRESSION_ERROR"], headers_frame(1, b"\x80" + block(ctx.target.fields()), end_stream=True))


@case("hpack_index_past_table", "conn_error(COMPRESSION_ERROR)", "RFC 7541 2.3.3")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["COMPRESSION_ERROR"],
                             headers_frame(1, block(ctx.target.fields()) + hpack_int(70, 7, 0x80), end_stream=True))


@case("hpack_literal_name_index_past_table", "conn_error(COMPRESSION_ERROR)", "RFC 7541 2.3.3")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["COMPRESSION_ERROR"], headers_frame(
        1, block(ctx.target.fields()) + hpack_int(100, 4, 0x00) + hpack_str("v"), end_stream=True))


@case("hpack_table_size_update_above_4096", "conn_error(COMPRESSION_ERROR)", "RFC 7541 6.3, 4.2")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["COMPRESSION_ERROR"],
                             headers_frame(1, hpack_int(4097, 5, 0x20) + block(ctx.target.fields()), end_stream=True))


@case("hpack_table_size_update_after_field", "conn_error(COMPRESSION_ERROR)", "RFC 7541 4.2")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["COMPRESSION_ERROR"],
                             headers_frame(1, block(ctx.target.fields()) + hpack_int(100, 5, 0x20), end_stream=True))


@case("hpack_table_size_update_ok", "answer (size updates 0 then 4096 at the block's start)", "RFC 7541 6.3, 4.2")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    return expect_answer(c, [1], headers_frame(1, hpack_int(0, 5, 0x20) + hpack_int(4096, 5, 0x20) + block(t.fields()))
                         + data_frame(1, t.body("conformance"), True))


@case("hpack_integer_overflow", "conn_error(COMPRESSION_ERROR)", "RFC 7541 5.1")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["COMPRESSION_ERROR"], headers_frame(
        1, block(ctx.target.fields()) + b"\xff" + b"\xff" * 10 + b"\x01", end_stream=True))


@case("hpack_string_past_block", "conn_error(COMPRESSION_ERROR)", "RFC 7541 5.2")
def _(ctx):
    c = Conn(ctx)
    return expect_conn_error(c, ["COMPRESSION_ERROR"], headers_frame(
        1, block(ctx.target.fields()) + b"\x00" + hpack_int(100, 7) + b"short", end_stream=True))


@case("hpack_dynamic_table_across_requests", "both answered (request 3 uses entries request 1 inserted)",
      "RFC 7541 2.3.2, 6.2.1")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    fields = t.fields()
    regular = [(n, v) for n, v in fields if not n.startswith(":")]
    pseudo = [(n, v) for n, v in fields if n.startswith(":")]
    # request 1: the pseudo-fields and the regular ones with incremental indexing (the newest is 62)
    b1 = b"".join(lit_indexed(n, v) for n, v in pseudo + regular)
    k = len(pseudo + regular)
    # request 3: the same fields, each an index into the dynamic table (the first inserted is the oldest)
    b3 = b"".join(hpack_int(62 + k - 1 - i, 7, 0x80) for i in range(k))
    ok1, w1 = expect_answer(c, [1], headers_frame(1, b1) + data_frame(1, t.body("conformance"), True))
    ok3, w3 = expect_answer(c, [3], headers_frame(3, b3) + data_frame(3, t.body("conformance"), True))
    return ok1 and ok3, w1 + "; " + w3


@case("hpack_index_after_table_size_0", "conn_error(COMPRESSION_ERROR)", "RFC 7541 4.3, 2.3.3")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    ok1, w1 = expect_answer(c, [1], headers_frame(1, block(t.fields()) + lit_indexed("x-entry", "v"))
                            + data_frame(1, t.body("conformance"), True))
    if not ok1:
        return False, "first request: " + w1
    # size update to 0 empties the table: index 62 no longer exists
    ok, w = expect_conn_error(c, ["COMPRESSION_ERROR"], headers_frame(
        3, hpack_int(0, 5, 0x20) + block(t.fields()) + hpack_int(62, 7, 0x80), end_stream=True))
    return ok, w


@case("hpack_huffman", "answer (every string Huffman-coded, with dynamic table use)", "RFC 7541 5.2")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    enc = hpack.Encoder()
    b1 = enc.encode(t.fields(), huffman=True)
    b3 = enc.encode(t.fields(), huffman=True)
    ok1, w1 = expect_answer(c, [1], headers_frame(1, b1) + data_frame(1, t.body("conformance"), True))
    ok3, w3 = expect_answer(c, [3], headers_frame(3, b3) + data_frame(3, t.body("conformance"), True))
    return ok1 and ok3, w1 + "; " + w3


@case("hpack_dynamic_table_churn", "60 requests on one connection, each answered: random extra fields (seeded) "
      "inserted, evicted, referenced by index and by indexed name, Huffman or not", "RFC 7541 2.3, 4.4, 6")
def _(ctx):
    import random
    rnd = random.Random(9113)
    c = Conn(ctx)
    t = ctx.target
    enc = hpack.Encoder()
    names = ["x-a", "x-bb", "x-ccc", "user-agent", "accept", "cookie", "x-long-name-" + "n" * 40]
    sids = []
    for i in range(60):
        sid = 1 + 2 * i
        extra = []
        for _ in range(rnd.randint(0, 6)):
            extra.append((rnd.choice(names), "v" * rnd.choice([0, 1, 10, 100, 700, 1500])))
        if i % 7 == 3:
            enc.header_table_size = rnd.choice([0, 256, 4096])  # a size update in the next block
        blk = enc.encode(t.fields(extra=extra), huffman=bool(i % 2))
        c.send(headers_frame(sid, blk) + data_frame(sid, t.body("conformance"), True))
        sids.append(sid)
    answers = c.collect(sids, c.dl(ctx.args.max_wait * 2))
    bad = {s: t.answer_ok(answers[s])[1] for s in sids if not t.answer_ok(answers[s])[0]}
    gs = [e for e in c.events if e["type"] == "GOAWAY"]
    return not bad, "%d of %d answered%s%s" % (len(sids) - len(bad), len(sids),
                                              "; not: %s" % dict(list(bad.items())[:3]) if bad else "",
                                              "; GOAWAY(%s)" % gs[0]["code"] if gs else "")


def huff_field(raw_value):
    """x-h: <Huffman string given as its raw bytes>, literal without indexing."""
    return b"\x00" + hpack_str("x-h") + hpack_int(len(raw_value), 7, 0x80) + raw_value


@case("hpack_huffman_padding_zeros", "conn_error(COMPRESSION_ERROR)", "RFC 7541 5.2")
def _(ctx):
    # 'a' is 00011 (5 bits); padding with 000 instead of 111
    c = Conn(ctx)
    return expect_conn_error(c, ["COMPRESSION_ERROR"],
                             headers_frame(1, block(ctx.target.fields()) + huff_field(b"\x18"), end_stream=True))


@case("hpack_huffman_padding_over_7_bits", "conn_error(COMPRESSION_ERROR)", "RFC 7541 5.2")
def _(ctx):
    # 'a' (00011) then 11 bits of ones: padding longer than 7 bits
    c = Conn(ctx)
    return expect_conn_error(c, ["COMPRESSION_ERROR"],
                             headers_frame(1, block(ctx.target.fields()) + huff_field(b"\x1f\xff"), end_stream=True))


@case("hpack_huffman_eos", "conn_error(COMPRESSION_ERROR)", "RFC 7541 5.2")
def _(ctx):
    # EOS is 30 ones; here 32 ones: a whole EOS symbol in the string
    c = Conn(ctx)
    return expect_conn_error(c, ["COMPRESSION_ERROR"],
                             headers_frame(1, block(ctx.target.fields()) + huff_field(b"\xff\xff\xff\xff"), end_stream=True))


# messages

def malformed(extra=(), omit=(), replace=None):
    def build(ctx):
        f = ctx.target.fields(extra=extra, omit=omit)
        if replace:
            f = replace(f)
        return f
    return build


def malformed_case(name, build, rfc, end_stream=False, note=""):
    @case(name, "stream_error(PROTOCOL_ERROR)" + note, rfc)
    def _(ctx):
        c = Conn(ctx)
        t = ctx.target
        f = build(ctx)
        send = headers_frame(1, block(f), end_stream=end_stream)
        if not end_stream:
            send += data_frame(1, t.body("conformance"), end_stream=True)
        return expect_stream_error(c, 1, ["PROTOCOL_ERROR"], send)


def insert_first(field):
    return lambda f: [field] + f


def dup(name):
    return lambda f: f + [(n, v) for n, v in f if n == name][:1]


malformed_case("field_name_uppercase", malformed(extra=[("X-Upper", "a")]), "RFC 9113 8.2.1")
malformed_case("field_name_empty", malformed(extra=[("", "a")]), "RFC 9113 8.2.1, RFC 9110 5.1")
malformed_case("field_name_with_space", malformed(extra=[("x y", "a")]), "RFC 9113 8.2.1")
malformed_case("pseudo_after_regular", lambda ctx: (lambda f: [x for x in f if x[0] != ":authority"]
                                                    + [(":authority", ctx.target.authority)])(ctx.target.fields()),
               "RFC 9113 8.3")
malformed_case("pseudo_unknown", malformed(replace=insert_first((":foo", "bar"))), "RFC 9113 8.3")
malformed_case("pseudo_status_in_request", malformed(replace=insert_first((":status", "200"))), "RFC 9113 8.3")
malformed_case("path_duplicate", malformed(replace=lambda f: [(":path", "/")] + f), "RFC 9113 8.3.1")
malformed_case("method_duplicate", malformed(replace=lambda f: [(":method", "POST")] + f), "RFC 9113 8.3.1")
malformed_case("method_missing", malformed(omit=[":method"]), "RFC 9113 8.3.1")
malformed_case("scheme_missing", malformed(omit=[":scheme"]), "RFC 9113 8.3.1")
malformed_case("path_missing", malformed(omit=[":path"]), "RFC 9113 8.3.1")
malformed_case("path_empty", malformed(replace=lambda f: [(n, "" if n == ":path" else v) for n, v in f]), "RFC 9113 8.3.1")
malformed_case("connection_keep_alive", malformed(extra=[("connection", "keep-alive")]), "RFC 9113 8.2.2")
malformed_case("keep_alive_field", malformed(extra=[("keep-alive", "timeout=5")]), "RFC 9113 8.2.2")
malformed_case("proxy_connection_field", malformed(extra=[("proxy-connection", "keep-alive")]), "RFC 9113 8.2.2")
malformed_case("transfer_encoding_chunked", malformed(extra=[("transfer-encoding", "chunked")]), "RFC 9113 8.2.2")
malformed_case("upgrade_field", malformed(extra=[("upgrade", "websocket")]), "RFC 9113 8.2.2")
malformed_case("te_gzip", malformed(extra=[("te", "gzip")]), "RFC 9113 8.2.2")
malformed_case("value_leading_space", malformed(extra=[("x-v", " a")]), "RFC 9113 8.2.1")
malformed_case("value_trailing_tab", malformed(extra=[("x-v", "a\t")]), "RFC 9113 8.2.1")
malformed_case("value_cr", malformed(extra=[("x-v", "a\rb")]), "RFC 9113 8.2.1")
malformed_case("value_lf", malformed(extra=[("x-v", "a\nb")]), "RFC 9113 8.2.1")
malformed_case("value_nul", malformed(extra=[("x-v", "a\0b")]), "RFC 9113 8.2.1")
malformed_case("content_length_not_a_number", malformed(extra=[("content-length", "1x")]), "RFC 9113 8.1.1")


@case("te_trailers_ok", "answer", "RFC 9113 8.2.2")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    f = t.fields(te=True) if not t.grpc else t.fields()
    return expect_answer(c, [1], headers_frame(1, block(f)) + data_frame(1, t.body("conformance"), True))


@case("content_length_more_than_data", "stream_error(PROTOCOL_ERROR)", "RFC 9113 8.1.1")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    body = t.body("conformance")
    return expect_stream_error(c, 1, ["PROTOCOL_ERROR"], headers_frame(1, block(t.fields(extra=[
        ("content-length", str(len(body) + 10))]))) + data_frame(1, body, end_stream=True))


@case("content_length_less_than_data", "stream_error(PROTOCOL_ERROR)", "RFC 9113 8.1.1")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    body = t.body("conformance")
    return expect_stream_error(c, 1, ["PROTOCOL_ERROR"], headers_frame(1, block(t.fields(extra=[
        ("content-length", str(len(body) - 2))]))) + data_frame(1, body, end_stream=True))


@case("content_length_without_data", "stream_error(PROTOCOL_ERROR)", "RFC 9113 8.1.1")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    return expect_stream_error(c, 1, ["PROTOCOL_ERROR"],
                               headers_frame(1, block(t.fields(extra=[("content-length", "5")])), end_stream=True))


@case("content_length_matching_ok", "answer", "RFC 9113 8.1.1")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    body = t.body("conformance")
    return expect_answer(c, [1], headers_frame(1, block(t.fields(extra=[("content-length", str(len(body)))])))
                         + data_frame(1, body[:3]) + data_frame(1, body[3:], end_stream=True))


@case("trailers_with_pseudo_header", "stream_error(PROTOCOL_ERROR)", "RFC 9113 8.1, 8.3")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    return expect_stream_error(c, 1, ["PROTOCOL_ERROR"], headers_frame(1, block(t.fields()))
                               + data_frame(1, t.body("conformance"))
                               + headers_frame(1, block([(":path", "/x")]), end_stream=True))


@case("trailers_without_end_stream", "stream_error(PROTOCOL_ERROR)", "RFC 9113 8.1")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    return expect_stream_error(c, 1, ["PROTOCOL_ERROR"], headers_frame(1, block(t.fields()))
                               + data_frame(1, t.body("conformance"))
                               + headers_frame(1, block([("x-trailer", "1")]), end_stream=False))


@case("trailers_ok", "answer (DATA then a trailer block with END_STREAM)", "RFC 9113 8.1")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    return expect_answer(c, [1], headers_frame(1, block(t.fields())) + data_frame(1, t.body("conformance"))
                         + headers_frame(1, block([("x-trailer", "1")]), end_stream=True))


@case("stream_ids_backwards", "conn_error(PROTOCOL_ERROR)", "RFC 9113 5.1.1")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    return expect_conn_error(c, ["PROTOCOL_ERROR"], t.request(5) + t.request(3))


@case("stream_ids_backwards_far", "conn_error(PROTOCOL_ERROR) (a new stream id far below the highest used)",
      "RFC 9113 5.1.1")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    ok, why = expect_answer(c, [10001], t.request(10001))
    if not ok:
        return False, "first request (stream 10001): " + why
    return expect_conn_error(c, ["PROTOCOL_ERROR"], t.request(1))


@case("closed_stream_reused", "a new request on a closed stream id: PROTOCOL_ERROR or STREAM_CLOSED "
      "(connection or stream error)", "RFC 9113 5.1.1, 5.1 (closed)")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    ok, why = expect_answer(c, [1], t.request(1))
    if not ok:
        return False, "first request: " + why
    c.send(t.request(1) + ping())
    o = c.watch(sid=1)
    if o["goaway"]:
        return o["goaway"] in ("PROTOCOL_ERROR", "STREAM_CLOSED") and o["closed"], describe(o)
    if o["rst"]:
        return o["rst"] in ("PROTOCOL_ERROR", "STREAM_CLOSED"), describe(o)
    return False, ("ignored: no GOAWAY, no RST_STREAM, no answer (the PING after it was answered); "
                   "the client's request gets no reaction at all" if o["ping_ack"] else describe(o))


@case("continuation_end_stream_on_headers", "the stream is answered (END_STREAM on HEADERS, END_HEADERS on the "
      "CONTINUATION)", "RFC 9113 6.2, 6.10")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    blk = block(t.fields(method="HEAD", omit=["content-type"]))
    c.send(headers_frame(1, blk[:12], end_stream=True, end_headers=False) + frame(CONTINUATION, END_HEADERS, 1, blk[12:]))
    ans = c.collect([1])[1]
    st = dict(ans["headers"] or []).get(":status")
    return ans["ended"] and st is not None, ":status %s, ended %s, rst %s" % (st, ans["ended"], ans["rst"])


@case("request_in_tiny_writes", "answer (every byte of the request in its own write)", "RFC 9113 4.1")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    data = t.request(1, extra=[("x-pad", "p" * 30)]) + data_frame(3, b"")[:0]
    padded = headers_frame(3, block(t.fields()), pad=5) + data_frame(3, t.body("conformance"), end_stream=True, pad=4)
    for i in range(len(data + padded)):
        c.send((data + padded)[i:i + 1])
    ans = c.collect([1, 3])
    r = [t.answer_ok(ans[s]) for s in (1, 3)]
    return all(ok for ok, _ in r), "; ".join("stream %d: %s" % (s, w) for s, (_, w) in zip((1, 3), r))


@case("content_length_conflicting", "stream_error(PROTOCOL_ERROR)", "RFC 9110 8.6, RFC 9113 8.1.1")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    body = t.body("conformance")
    return expect_stream_error(c, 1, ["PROTOCOL_ERROR"], headers_frame(1, block(t.fields(extra=[
        ("content-length", str(len(body))), ("content-length", str(len(body) + 1))]))) + data_frame(1, body, True))


@case("hpack_never_indexed_ok", "answer (fields as never-indexed literals, static-table names)", "RFC 7541 6.2.3")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    blk = b"".join(b"\x10" + hpack_str(n) + hpack_str(v) for n, v in t.fields())
    blk = hpack_int(2, 4, 0x10) + hpack_str("POST") + blk[len(b"\x10" + hpack_str(":method") + hpack_str("POST")):]
    return expect_answer(c, [1], headers_frame(1, blk) + data_frame(1, t.body("conformance"), True))


@case("hpack_three_size_updates", "conn_error(COMPRESSION_ERROR)", "RFC 7541 4.2 (at most two updates)")
def _(ctx):
    c = Conn(ctx)
    upd = hpack_int(100, 5, 0x20) + hpack_int(200, 5, 0x20) + hpack_int(300, 5, 0x20)
    return expect_conn_error(c, ["COMPRESSION_ERROR"], headers_frame(1, upd + block(ctx.target.fields()), end_stream=True))


@case("new_stream_after_client_goaway", "the request is answered, or refused (RST_STREAM REFUSED_STREAM, or "
      "a GOAWAY whose last stream id is below it) -- not silently dropped", "RFC 9113 6.8, 8.7")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    c.send(goaway(0, 0) + t.request(1))
    ans = c.collect([1])[1]
    gs = [e for e in c.events if e["type"] == "GOAWAY"]
    if ans["ended"]:
        ok, why = t.answer_ok(ans)
        return ok, "answered: " + why
    if ans["rst"]:
        return ans["rst"] == "REFUSED_STREAM", "RST_STREAM(%s)" % ans["rst"]
    if gs:
        return gs[0]["last_sid"] < 1, "GOAWAY(%s, last %d), %s" % (gs[0]["code"], gs[0]["last_sid"],
                                                                   "closed" if c.closed() else "not closed")
    return False, ("closed without GOAWAY, stream 1 neither answered nor refused (the client cannot tell "
                   "whether it was processed)" if c.closed() else "stream 1 neither answered nor refused: timeout")


# flow control

@case("answer_larger_than_client_window", "the answer comes in pieces within the window as WINDOW_UPDATEs "
      "are sent, complete", "RFC 9113 5.2, 6.9")
def _(ctx):
    win = 10
    c = Conn(ctx, settings=[(4, win)])
    t = ctx.target
    name = "w" * 1000
    c.send(t.request(1, name=name))
    window, frames, violations = win, 0, []
    deadline = c.dl()
    while 1 not in c.ended:
        ev = c.next_frame(deadline)
        if ev is None:
            break
        if ev["sid"] == 1 and ev["type"] == "DATA" and ev["len"]:
            frames += 1
            if ev["len"] > window:
                violations.append("DATA of %d with window %d" % (ev["len"], window))
            window -= ev["len"]
            c.send(window_update(1, ev["len"]) + window_update(0, ev["len"]))
            window += ev["len"]
            deadline = c.dl()  # progress: a fresh bound
    ans = c.answer(1)
    good, why = t.answer_ok(ans, name)
    obs = "%d DATA frames, %s" % (frames, why)
    if violations:
        obs += "; flow-control violations: %s" % violations[:3]
    return good and not violations and frames >= 1000 // win, obs


@case("client_window_0_then_settings_raise", "the held answer flows once INITIAL_WINDOW_SIZE is raised",
      "RFC 9113 6.9.2")
def _(ctx):
    c = Conn(ctx, settings=[(4, 0)])
    t = ctx.target
    c.send(t.request(1) + ping())
    o = c.watch(sid=1)
    if o["ended"] or o["rst"] or o["goaway"]:
        return False, "before the raise: " + describe(o)
    data_before = c.data_bytes.get(1, 0)
    if data_before:
        return False, "%d DATA bytes sent into a zero window" % data_before
    ok, why = expect_answer(c, [1], settings_frame([(4, 65535)]))
    return ok, "nothing in the zero window; after the raise: " + why


@case("negative_window_after_settings_decrease", "no DATA while the stream window is <= 0 (it goes negative "
      "when INITIAL_WINDOW_SIZE shrinks); the answer completes once the window is positive", "RFC 9113 6.9.2")
def _(ctx):
    c = Conn(ctx, settings=[(4, 100)])
    t = ctx.target
    name = "g" * 1000
    c.send(t.request(1, name=name))
    got = 0
    deadline = c.dl()
    while got < 100:
        ev = c.next_frame(deadline)
        if ev is None or ev["type"] in ("GOAWAY", "RST_STREAM") or ev.get("end_stream"):
            return False, "the first 100 bytes did not come: %s" % (ev and ev["type"])
        if ev["type"] == "DATA" and ev["sid"] == 1:
            got += ev["len"]
    if got > 100:
        return False, "%d DATA bytes with a window of 100" % got
    # window 0; INITIAL_WINDOW_SIZE 100 -> 0 makes it -100; +100 brings it to 0: nothing may come
    c.send(settings_frame([(4, 0)]) + ping())
    o = c.watch(sid=1)
    c.send(window_update(1, 100) + ping())
    o2 = c.watch(sid=1)
    extra = c.data_bytes.get(1, 0) - got
    if extra or not (o["ping_ack"] and o2["ping_ack"]):
        return False, "%d DATA bytes sent while the window was <= 0 (%s / %s)" % (extra, describe(o), describe(o2))
    c.send(window_update(1, 5000))
    ans = c.collect([1])[1]
    ok, why = t.answer_ok(ans, name)
    return ok, "nothing sent at a window of -100 and 0; after +5000: " + why


@case("header_list_too_large", "the request is refused (:status 431, gRPC RESOURCE_EXHAUSTED, or RST_STREAM); "
      "the connection still works", "RFC 9113 10.5.1, 6.5.2")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    limit = c.server_settings.get("MAX_HEADER_LIST_SIZE", 16384)
    blk = block(t.fields(extra=[("x-big", "b" * min(limit + 100, 60000))]))
    c.send(split_continuations(1, blk, 1 + len(blk) // 16384) + data_frame(1, t.body("conformance"), True))
    ans = c.collect([1])[1]
    h = dict(ans["headers"] or [])
    tr = dict(ans["trailers"] or [])
    refused = (h.get(":status") == "431" or (t.grpc and tr.get("grpc-status", h.get("grpc-status")) == "8")
               or ans["rst"] is not None)
    usable = c.ping_ok()
    ok2, why2 = expect_answer(c, [3], t.request(3)) if usable else (False, "no PING answer")
    return refused and ok2, ":status %s grpc-status %s rst %s; then %s" % (
        h.get(":status"), tr.get("grpc-status", h.get("grpc-status")), ans["rst"], why2)


@case("client_exceeds_stream_window", "stream_error(FLOW_CONTROL_ERROR) (or connection)", "RFC 9113 6.9.1")
def _(ctx):
    # The server's windows (its SETTINGS_INITIAL_WINDOW_SIZE and WINDOW_UPDATEs) are tracked
    # exactly: request bodies (no END_STREAM) are sent on streams 1, 3, ... up to one byte short of
    # the stream's window, at most --stream-body-cap bytes per stream, and a PING round trip after
    # each batch gathers the WINDOW_UPDATEs sent for them. A server that credits back what it
    # buffers keeps the window open; once one stream's window stays below one frame (the server
    # holding its bytes uncredited, e.g. past its per-connection body budget), a DATA frame one byte
    # larger than that window is sent on it. At most --window-budget bytes in all; if no window
    # ever closes, the case is reported as not buildable (skipped).
    c = Conn(ctx)
    t = ctx.target
    args = ctx.args
    init = c.server_settings.get("INITIAL_WINDOW_SIZE", 65535)
    cwin = 65535
    swin, sent_on, seen = {}, {}, 0
    hdr = block(t.fields())
    sid, total = 1, 0
    c.send(headers_frame(sid, hdr))
    swin[sid], sent_on[sid] = init, 0
    while True:
        if not c.ping_ok(b"fc-sync!"):
            return False, "connection lost while filling windows (%d bytes sent): %s" % (total, describe(c.watch(sid=sid)))
        for e in c.events[seen:]:
            if e["type"] == "WINDOW_UPDATE":
                if e["sid"] == 0:
                    cwin += e.get("inc", 0)
                elif e["sid"] in swin:
                    swin[e["sid"]] += e.get("inc", 0)
            elif e["type"] == "RST_STREAM" or e["type"] == "GOAWAY" or (e["type"] == "HEADERS" and e["sid"] in swin):
                return False, "while filling windows (%d bytes sent, streams %s): %s on stream %d %s" % (
                    total, sorted(swin), e["type"], e["sid"], e.get("code", e.get("headers", "")))
        seen = len(c.events)
        low = [s for s in swin if swin[s] < 16384 and cwin > swin[s] + 1]
        if low:
            s = low[0]
            over = swin[s] + 1
            ok, why = expect_stream_error(c, s, ["FLOW_CONTROL_ERROR"], data_frame(s, b"o" * over), next_sid=max(swin) + 2)
            return ok, "after %d bytes within the windows (streams %s), a DATA of %d bytes on stream %d with %d left: %s" % (
                total, sorted(swin), over, s, swin[s], why)
        if total >= args.window_budget:
            return None, ("not buildable within --window-budget: the server kept every stream window open "
                          "(%d bytes sent on %d streams; windows %s)" % (total, len(swin), swin))
        if sent_on[sid] >= args.stream_body_cap:
            sid += 2
            c.send(headers_frame(sid, hdr))
            swin[sid], sent_on[sid] = init, 0
        n = min(swin[sid] - 1, cwin - 1, args.stream_body_cap - sent_on[sid], 1 << 20, args.window_budget - total)
        if n <= 0:
            return False, "the connection window closed first (connection %d, stream %d: %d)" % (cwin, sid, swin[sid])
        out = []
        while n > 0:
            k = min(16384, n)
            out.append(data_frame(sid, b"f" * k))
            n -= k
            swin[sid] -= k
            cwin -= k
            sent_on[sid] += k
            total += k
        c.send(b"".join(out))


@case("max_frame_size_raised", "a large answer uses DATA frames above 16384 and within the new maximum",
      "RFC 9113 6.5.2, 4.2")
def _(ctx):
    mfs = 65536
    c = Conn(ctx, settings=[(5, mfs), (4, MAX_WINDOW)])
    c.send(window_update(0, MAX_WINDOW - 65535))
    t = ctx.target
    name = "m" * 50000
    ok, why = expect_answer(c, [1], t.request(1, name=name), name=name)
    sizes = [e["len"] for e in c.events if e["type"] == "DATA" and e["sid"] == 1]
    big = max(sizes) if sizes else 0
    over = [s for s in sizes if s > mfs]
    res = ok and big > 16384 and not over
    return res, "%s; DATA frame sizes %s" % (why, sizes[:10])


@case("max_frame_size_default_respected", "DATA frames of the answer are at most 16384 by default",
      "RFC 9113 4.2")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    name = "d" * 40000
    ok, why = expect_answer(c, [1], t.request(1, name=name), name=name)
    sizes = [e["len"] for e in c.events if e["type"] in ("DATA", "HEADERS", "CONTINUATION") and e["sid"] == 1]
    return ok and max(sizes) <= 16384, "%s; frame sizes %s" % (why, sizes[:10])


@case("head_request", "HEADERS with END_STREAM (or empty DATA), no content", "RFC 9110 9.3.2, RFC 9113 8.1")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    f = t.fields(method="HEAD", omit=["content-type"])
    c.send(headers_frame(1, block(f), end_stream=True))
    ans = c.collect([1])[1]
    h = dict(ans["headers"] or [])
    datas = [e["len"] for e in c.events if e["type"] == "DATA" and e["sid"] == 1]
    ok = ans["ended"] and h.get(":status") is not None and sum(datas) == 0
    return ok, ":status %s, content-length %s, DATA frames %s, ended %s%s" % (
        h.get(":status"), h.get("content-length"), datas, ans["ended"], ", rst %s" % ans["rst"] if ans["rst"] else "")


# concurrency

@case("max_concurrent_streams_refused", "the streams past SETTINGS_MAX_CONCURRENT_STREAMS get "
      "RST_STREAM(REFUSED_STREAM or PROTOCOL_ERROR); the others are answered", "RFC 9113 5.1.2")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    n = c.server_settings.get("MAX_CONCURRENT_STREAMS")
    if n is None:
        return None, "the server announces no SETTINGS_MAX_CONCURRENT_STREAMS"
    if n > ctx.args.max_streams:
        return None, "MAX_CONCURRENT_STREAMS %d is above --max-streams %d: not tried" % (n, ctx.args.max_streams)
    sids = [1 + 2 * i for i in range(n)]
    extra_sids = [1 + 2 * n, 3 + 2 * n]
    hdr = block(t.fields())
    c.send(b"".join(headers_frame(s, hdr) for s in sids))
    c.send(b"".join(headers_frame(s, hdr) for s in extra_sids) + ping())
    o = c.watch(sid=extra_sids[-1])
    refused = {s: c.ended.get(s) for s in extra_sids}
    early = {s: c.ended[s] for s in sids if s in c.ended}
    if o["goaway"]:
        return False, "connection error: " + describe(o)
    ok_refused = all(v in ("rst REFUSED_STREAM", "rst PROTOCOL_ERROR") for v in refused.values())
    body = t.body("conformance")
    c.send(b"".join(data_frame(s, body, end_stream=True) for s in sids))
    answers = c.collect(sids, c.dl(ctx.args.max_wait * 2))
    bad = {}
    for s in sids:
        good, why = t.answer_ok(answers[s])
        if not good:
            bad[s] = why
    obs = "limit %d; excess streams: %s; %d of %d open streams answered" % (
        n, refused, n - len(bad), n)
    if early:
        obs += "; ended before their body: %s" % dict(list(early.items())[:3])
    if bad:
        obs += "; not answered: %s" % dict(list(bad.items())[:3])
    return ok_refused and not bad, obs


@case("max_concurrent_streams_after_client_resets", "streams the client reset no longer count: after "
      "SETTINGS_MAX_CONCURRENT_STREAMS streams opened and reset, as many again are accepted and answered",
      "RFC 9113 5.1.2")
def _(ctx):
    c = Conn(ctx)
    t = ctx.target
    n = c.server_settings.get("MAX_CONCURRENT_STREAMS")
    if n is None or n > ctx.args.max_streams:
        return None, "MAX_CONCURRENT_STREAMS %s: not tried" % n
    hdr = block(t.fields())
    first = [1 + 2 * i for i in range(n)]
    c.send(b"".join(headers_frame(s, hdr) + rst(s, 8) for s in first) + ping())
    o = c.watch(sid=None)
    if not o["ping_ack"]:
        return False, "after the resets: " + describe(o)
    second = [first[-1] + 2 + 2 * i for i in range(n)]
    body = t.body("conformance")
    c.send(b"".join(headers_frame(s, hdr) + data_frame(s, body, True) for s in second))
    answers = c.collect(second, c.dl(ctx.args.max_wait * 2))
    bad = {s: t.answer_ok(answers[s])[1] for s in second if not t.answer_ok(answers[s])[0]}
    return not bad, "%d of %d answered%s" % (n - len(bad), n, "; not: %s" % dict(list(bad.items())[:3]) if bad else "")


# --- driver --------------------------------------------------------------------------------------

class Ctx:
    def __init__(self, args):
        self.args = args
        self.target = Target(args)
        self.conns = []


def probe(ctx):
    """A fresh connection answers a PING (the server survived the case)."""
    try:
        c = Conn(ctx)
        ctx.conns.remove(c)
        ok = c.ping_ok(b"probe!!!")
        c.close()
        return ok
    except (OSError, ScriptError, Closed):
        return False


def select_cases(patterns):
    if not patterns:
        return CASES
    out = []
    for name, exp, rfc, fn in CASES:
        if any(name.startswith(p.rstrip("*")) for p in patterns):
            out.append((name, exp, rfc, fn))
    unknown = [p for p in patterns if not any(n == p or n.startswith(p.rstrip("*")) for n, _, _, _ in CASES)]
    if unknown:
        raise ScriptError("unknown case(s): %s" % unknown)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int)
    ap.add_argument("--tls", action="store_true", help="h2 over TLS (ALPN h2); needs --ca")
    ap.add_argument("--ca")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--pid", type=int, help="the server's pid: liveness checked after every case")
    ap.add_argument("--max-wait", type=float, default=5.0, help="bound on each wait, seconds (5)")
    ap.add_argument("--grpc", action="store_true", help="gRPC requests (application/grpc, te: trailers)")
    ap.add_argument("--path", help="request :path (default / for micro, /echo.Echo/Call for gRPC)")
    ap.add_argument("--endpoint", default="Helloworld.Greeting", help="micro-endpoint (micro protocol)")
    ap.add_argument("--content-type", default="application/json", help="content-type (micro protocol)")
    ap.add_argument("--max-streams", type=int, default=1000,
                    help="max_concurrent_streams_refused is skipped above this many streams (1000)")
    ap.add_argument("--window-budget", type=int, default=32 << 20,
                    help="client_exceeds_stream_window: at most this many DATA bytes in all (32 MiB)")
    ap.add_argument("--stream-body-cap", type=int, default=3 << 20,
                    help="client_exceeds_stream_window: at most this many bytes per request body "
                         "(3 MiB: under the server's 4 MiB body limit)")
    ap.add_argument("--case", action="append", default=[], help="run only this case (or name prefix); repeatable")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--verbose", action="store_true", help="frames seen per case in the output")
    args = ap.parse_args()
    if args.list:
        for name, exp, rfc, _ in CASES:
            print("%-44s %-28s %s" % (name, rfc, exp))
        return 0
    if not args.port:
        ap.error("--port is required")
    if args.tls and not args.ca:
        ap.error("--tls needs --ca")
    ctx = Ctx(args)
    try:
        chosen = select_cases(args.case)
        if not probe(ctx):
            raise ScriptError("the server at %s:%d does not answer a PING" % (args.host, args.port))
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        print(json.dumps({"error": "%s: %s" % (type(e).__name__, e)}))
        return 2
    results, failed, skipped = {}, [], []
    t_all = time.monotonic()
    for name, exp, rfc, fn in chosen:
        t0 = time.monotonic()
        res = {"expected": exp, "rfc": rfc}
        ctx.conns = []
        try:
            ok, obs = fn(ctx)
        except Closed as e:
            ok, obs = False, "the connection failed under the case: %s" % e
        except ScriptError as e:
            ok, obs = False, "setup failed: %s" % e
        except (ConnectionError, OSError) as e:
            ok, obs = False, "socket error: %s: %s" % (type(e).__name__, e)
        except Exception as e:  # noqa: BLE001 - the script's own bug
            traceback.print_exc()
            print(json.dumps({"error": "case %s: %s: %s" % (name, type(e).__name__, e), "cases": results}))
            return 2
        res["observed"] = obs
        if ctx.conns and (args.verbose or not ok):
            res["frames"] = ctx.conns[0].frames_seen()
        for c in ctx.conns:
            c.close()
        ctx.conns = []
        res["seconds"] = round(time.monotonic() - t0, 3)
        server_alive = alive(args.pid) if args.pid else None
        answers = probe(ctx) if server_alive is not False else False
        if server_alive is False or not answers:
            res["server_after"] = "process gone" if server_alive is False else "does not answer a PING on a new connection"
            ok = False
        if ok is None:
            res["ok"] = None
            res["skipped"] = True
            skipped.append(name)
        else:
            res["ok"] = bool(ok)
            if not ok:
                failed.append(name)
        results[name] = res
        if server_alive is False:
            results["_aborted"] = "the server process died during %s; the remaining cases were not run" % name
            break
    out = {"target": {"host": args.host, "port": args.port, "grpc": args.grpc,
                      "path": args.path, "endpoint": None if args.grpc else args.endpoint},
           "passed": sum(1 for r in results.values() if isinstance(r, dict) and r.get("ok")),
           "failed": failed, "skipped": skipped, "seconds": round(time.monotonic() - t_all, 3), "cases": results}
    print(json.dumps(out, indent=1, default=str))
    return 1 if failed or "_aborted" in results else 0


if __name__ == "__main__":
    sys.exit(main())
