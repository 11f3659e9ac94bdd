#!/usr/bin/env python3
"""Writes the seed corpora Fuzz/corpus/{h1,h2,h2client,h1client}/ (committed; run again after editing).

Every input is: config byte, application tape (length + bytes), control tape (length + bytes),
then the peer's bytes; fuzz.h and each harness say what the bits mean. HTTP/2 frames and HPACK
blocks are built here (literal fields, a few static-table indexes) rather than typed as blobs, with
Tests/Peers/h2wire.py, which the raw attacker of the tests uses too.
"""
import os
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir, "Tests", "Peers"))
from h2wire import (ACK, CONTINUATION, DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PADDED, PING,  # noqa: E402
                    PRIORITY, PRIORITY_FLAG, PUSH_PROMISE, RST_STREAM, SETTINGS, frame, literal, literal_name,
                    window_update)

# ---------------------------------------------------------------- input layout (fuzz.h)

# application tape byte: when (bits 0-1), body size class (bits 2-4), trailers, many headers,
# odd status
AT_ONCE, NEXT_TURN, HELD, HELD_TILL_ABORT = 0, 1, 2, 3
TRAILERS, MANY_HEADERS, ODD_STATUS = 0x20, 0x40, 0x80


def app(when=AT_ONCE, size=0, flags=0):
    return when | (size << 2) | flags


# control byte: chunk size class (bits 0-2: 1, 2, 5, 13, 64, 300, 4096, 65536), action (bits 3-7)
ANSWER_OLDEST, ANSWER_NEWEST, ANSWER_ALL = 12, 13, 14
KERNEL_ALL, KERNEL_NOTHING, KERNEL_SOME, KERNEL_FAILS = 15, 16, 17, 18
WRITE_DONE, WRITE_FAILS, TIMER, HALF_CLOSE, READ_ERROR = 19, 20, 21, 22, 23
SHUTDOWN, CLOSE_ALL = 24, 25  # server targets
NEW_CALL, CANCEL_OLDEST, CANCEL_NEWEST, CLIENT_CLOSE = 24, 25, 26, 27  # h2client
CHUNK = {1: 0, 2: 1, 5: 2, 13: 3, 64: 4, 300: 5, 4096: 6, 65536: 7}


def ctl(chunk=65536, action=0):
    return CHUNK[chunk] | (action << 3)


# server config byte: header limit (bits 0-1: 16 KiB, 64, 300, 2048), body limit (bits 2-3:
# 4 MiB, 0, 10, 5000), in flight (bits 4-5: 16, 1, 2, 3), half-close at the end, shutdown at the end
HALF_CLOSE_AT_END, SHUTDOWN_AT_END = 0x40, 0x80


def server_config(header=0, body=0, inflight=0, flags=0):
    return header | (body << 2) | (inflight << 4) | flags


def fuzz_input(data, config=0, apps=(), controls=()):
    apps, controls = bytes(apps), bytes(controls)
    assert len(apps) < 256 and len(controls) < 256
    return bytes([config, len(apps)]) + apps + bytes([len(controls)]) + controls + data


# ---------------------------------------------------------------- HTTP/2 requests and frames

METHOD_GET, METHOD_POST, PATH_ROOT, SCHEME_HTTP, STATUS_200 = b"\x82", b"\x83", b"\x84", b"\x86", b"\x88"


def request_block(method=METHOD_POST, path=None, extra=()):
    block = method + SCHEME_HTTP + literal_name(1, "localhost")
    block += PATH_ROOT if path is None else literal_name(4, path)
    for name, value in extra:
        block += literal(name, value)
    return block


MICRO = (("content-type", "application/json"), ("micro-endpoint", "Helloworld.Greeting"))


def settings(*pairs, flags=0):
    return frame(SETTINGS, flags, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def rst(stream, code):
    return frame(RST_STREAM, 0, stream, struct.pack(">I", code))


def goaway(last, code, debug=b""):
    return frame(GOAWAY, 0, 0, struct.pack(">II", last, code) + debug)


def ping(data=b"12345678", flags=0):
    return frame(PING, flags, 0, data)


SETTINGS_ACK = settings(flags=ACK)
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = range(1, 7)


def get(stream, path=None):
    return frame(HEADERS, END_STREAM | END_HEADERS, stream, request_block(METHOD_GET, path))


def post(stream, body=b'{"name":"fuzz"}', extra=MICRO):
    return frame(HEADERS, END_HEADERS, stream, request_block(METHOD_POST, extra=extra)) + frame(DATA, END_STREAM, stream, body)


# ---------------------------------------------------------------- seeds


def h1_seeds():
    s = {}
    get = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    post = (b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Micro-Endpoint: Helloworld.Greeting\r\nContent-Length: 15\r\n\r\n{\"name\":\"fuzz\"}")
    chunked = (b"POST /Helloworld/Greeting HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;ext=1\r\nhello\r\n0b\r\n, the world\r\n0\r\nTrailer-Field: x\r\n\r\n")
    s["get"] = fuzz_input(get)
    s["post"] = fuzz_input(post)
    s["chunked"] = fuzz_input(chunked)
    s["chunked_split"] = fuzz_input(chunked, controls=[ctl(13), ctl(5), ctl(1), ctl(64), ctl(2), ctl(300)])
    s["pipelined"] = fuzz_input(get + post + chunked + get, apps=[app(HELD, 3), app(NEXT_TURN, 1), app(AT_ONCE, 4), app(HELD, 0)],
                                controls=[ctl(64), ctl(300, ANSWER_NEWEST), ctl(64, ANSWER_OLDEST), ctl(4096, ANSWER_ALL)])
    s["pipelined_limit"] = fuzz_input(get * 20, config=server_config(inflight=1), apps=[app(HELD, 2), app(NEXT_TURN)],
                                      controls=[ctl(4096), ctl(1, ANSWER_ALL), ctl(1, ANSWER_ALL), ctl(1, ANSWER_OLDEST)])
    s["pipelined_16"] = fuzz_input(get * 40, apps=[app(HELD)], controls=[ctl(4096), ctl(1, ANSWER_OLDEST), ctl(1, ANSWER_ALL)])
    expect = (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    s["expect_100"] = fuzz_input(expect + b"hello", controls=[ctl(64), ctl(5)])
    s["expect_100_behind"] = fuzz_input(get + expect + b"hello", apps=[app(HELD)], controls=[ctl(64), ctl(300, ANSWER_ALL)])
    s["half_close"] = fuzz_input(get + post + get, config=server_config(flags=HALF_CLOSE_AT_END), apps=[app(HELD, 3)])
    s["half_close_mid"] = fuzz_input(get + post + b"GET /x HT", apps=[app(NEXT_TURN)],
                                     controls=[ctl(64), ctl(300, HALF_CLOSE), ctl(1, ANSWER_ALL)])
    s["half_close_paused"] = fuzz_input(get * 5, config=server_config(inflight=1, flags=HALF_CLOSE_AT_END), apps=[app(HELD, 5)])
    big = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 400 + b"\r\n\r\n"
    s["oversize_header"] = fuzz_input(big, config=server_config(header=2))
    s["oversize_header_default"] = fuzz_input(b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 17000 + b"\r\n\r\n")
    s["oversize_url"] = fuzz_input(b"GET /" + b"p" * 100 + b" HTTP/1.1\r\n\r\n", config=server_config(header=1))
    s["oversize_body"] = fuzz_input(post, config=server_config(body=2))
    s["oversize_chunked"] = fuzz_input(chunked, config=server_config(body=2), controls=[ctl(64), ctl(64), ctl(64)])
    s["body_limit_zero"] = fuzz_input(post + get, config=server_config(body=1))
    s["bad_request"] = fuzz_input(b"GARBAGE\r\n\r\n")
    s["bad_after_good"] = fuzz_input(get + b"GET / HTTP/9.9\r\n\r\n", apps=[app(HELD)])
    s["bad_chunk"] = fuzz_input(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    s["connect"] = fuzz_input(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
    s["upgrade"] = fuzz_input(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n" + get)
    s["upgrade_h2c"] = fuzz_input(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                                  b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
    s["head"] = fuzz_input(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n" + get, apps=[app(AT_ONCE, 3), app(AT_ONCE, 2, ODD_STATUS)])
    s["http10"] = fuzz_input(b"GET / HTTP/1.0\r\n\r\n")
    s["http10_keepalive"] = fuzz_input(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + b"GET / HTTP/1.0\r\n\r\n")
    s["connection_close"] = fuzz_input(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n" + get, apps=[app(NEXT_TURN)])
    s["headers_odd"] = fuzz_input(b"GET / HTTP/1.1\r\nEmpty:\r\nA: 1\r\nSpaces:   \r\nFolded: one\r\n  two\r\n"
                                  b"Expect: 100-CONTINUE\r\nCONTENT-length: 0\r\n\r\n")
    s["byte_by_byte"] = fuzz_input(post, controls=[ctl(1)] * 120)
    s["header_timeout"] = fuzz_input(b"GET / HTTP/1.1\r\nHost: a\r\n", controls=[ctl(64), ctl(1, TIMER)])
    s["idle_timeout"] = fuzz_input(get, apps=[app(AT_ONCE)], controls=[ctl(64), ctl(1, TIMER)])
    s["body_stall_timeout"] = fuzz_input(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc", controls=[ctl(4096), ctl(1, TIMER)])
    s["slow_kernel"] = fuzz_input(get + get + get, apps=[app(AT_ONCE, 7), app(NEXT_TURN, 6), app(HELD, 5)],
                                  controls=[ctl(1, KERNEL_NOTHING), ctl(64), ctl(64, KERNEL_SOME), ctl(1, WRITE_DONE),
                                            ctl(64, ANSWER_ALL), ctl(1, WRITE_DONE), ctl(1, KERNEL_ALL), ctl(1, WRITE_DONE)])
    s["high_water"] = fuzz_input(get * 8, apps=[app(AT_ONCE, 7)], controls=[ctl(1, KERNEL_NOTHING), ctl(4096), ctl(1, WRITE_DONE)])
    s["write_error"] = fuzz_input(get + get, apps=[app(AT_ONCE, 6)], controls=[ctl(64, KERNEL_SOME), ctl(1, WRITE_FAILS)])
    s["try_write_error"] = fuzz_input(get + get, apps=[app(HELD)], controls=[ctl(64, KERNEL_FAILS), ctl(64, ANSWER_ALL), ctl(1)])
    s["half_close_in_flight"] = fuzz_input(get + post + get, apps=[app(HELD, 3)],
                                           controls=[ctl(4096), ctl(1, HALF_CLOSE), ctl(1), ctl(1, ANSWER_OLDEST), ctl(1, ANSWER_ALL)])
    s["read_error"] = fuzz_input(get + post, apps=[app(HELD), app(HELD_TILL_ABORT)], controls=[ctl(4096, READ_ERROR)])
    s["read_error_same_turn"] = fuzz_input(get, apps=[app(AT_ONCE)], controls=[ctl(64, READ_ERROR)])
    s["shutdown"] = fuzz_input(get + get, config=server_config(flags=SHUTDOWN_AT_END), apps=[app(HELD)])
    s["shutdown_mid"] = fuzz_input(get + get + get, apps=[app(HELD)], controls=[ctl(64), ctl(64, SHUTDOWN), ctl(64, ANSWER_ALL)])
    s["close_all"] = fuzz_input(get + post, apps=[app(HELD_TILL_ABORT), app(NEXT_TURN)], controls=[ctl(4096, CLOSE_ALL)])
    s["trailers_many_headers"] = fuzz_input(get, apps=[app(AT_ONCE, 3, TRAILERS | MANY_HEADERS | ODD_STATUS)])
    s["h2_preface"] = fuzz_input(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + settings() + get_h2_seed(), controls=[ctl(5), ctl(13)])
    s["h2_preface_partial"] = fuzz_input(b"PRI * HTTP/2.0\r\n", config=server_config(flags=HALF_CLOSE_AT_END))
    return s


def get_h2_seed():
    return frame(HEADERS, END_STREAM | END_HEADERS, 1, request_block(METHOD_GET))


def h2_seeds():
    s = {}
    hello = settings()
    s["settings_only"] = fuzz_input(hello)
    s["preface_only"] = fuzz_input(b"")
    s["get"] = fuzz_input(hello + get(1) + SETTINGS_ACK)
    s["post"] = fuzz_input(hello + post(1))
    s["post_split"] = fuzz_input(hello + post(1), controls=[ctl(13), ctl(5), ctl(64), ctl(2), ctl(1)] * 4)
    s["many_streams"] = fuzz_input(hello + b"".join(post(i) if i % 4 == 1 else get(i) for i in range(1, 40, 2)),
                                   apps=[app(HELD, 2), app(NEXT_TURN, 1), app(AT_ONCE, 3), app(HELD_TILL_ABORT)],
                                   controls=[ctl(300), ctl(300, ANSWER_OLDEST), ctl(300, ANSWER_NEWEST), ctl(4096, ANSWER_ALL)])
    hdr = request_block(METHOD_POST, extra=MICRO + (("x-long", "v" * 200),))
    s["continuation"] = fuzz_input(hello + frame(HEADERS, 0, 1, hdr[:10]) + frame(CONTINUATION, 0, 1, hdr[10:60])
                                   + frame(CONTINUATION, END_HEADERS, 1, hdr[60:]) + frame(DATA, END_STREAM, 1, b"{}"))
    s["continuation_end_stream"] = fuzz_input(hello + frame(HEADERS, END_STREAM, 1, hdr[:30]) + frame(CONTINUATION, END_HEADERS, 1, hdr[30:]))
    s["rst_after_request"] = fuzz_input(hello + get(1) + rst(1, 8), apps=[app(HELD)], controls=[ctl(64), ctl(4096), ctl(1, ANSWER_ALL)])
    s["rst_after_answer"] = fuzz_input(hello + get(1) + rst(1, 8), apps=[app(AT_ONCE, 6)], controls=[ctl(64, KERNEL_NOTHING), ctl(4096)])
    s["rst_till_abort"] = fuzz_input(hello + get(1) + get(3) + rst(1, 8) + rst(3, 0), apps=[app(HELD_TILL_ABORT)])
    s["rst_mid_request"] = fuzz_input(hello + frame(HEADERS, END_HEADERS, 1, request_block()) + frame(DATA, 0, 1, b"abc") + rst(1, 8))
    s["settings_params"] = fuzz_input(hello[:0] + settings((HEADER_TABLE_SIZE, 0), (ENABLE_PUSH, 0), (MAX_CONCURRENT_STREAMS, 100),
                                                         (INITIAL_WINDOW_SIZE, 1), (MAX_FRAME_SIZE, 16384),
                                                         (MAX_HEADER_LIST_SIZE, 100)) + get(1),
                                      apps=[app(AT_ONCE, 3)])
    s["flow_control"] = fuzz_input(hello + get(1) + get(3) + window_update(0, 1 << 20) + window_update(1, 100000) + window_update(3, 1),
                                   apps=[app(AT_ONCE, 5), app(AT_ONCE, 7, TRAILERS)], controls=[ctl(64), ctl(300), ctl(300)])
    s["big_window"] = fuzz_input(settings((INITIAL_WINDOW_SIZE, 0x7fffffff), (MAX_FRAME_SIZE, 0xffffff)) + window_update(0, 0x7fff0000)
                                 + get(1) + get(3), apps=[app(AT_ONCE, 7)])
    s["window_overflow"] = fuzz_input(hello + get(1) + window_update(1, 0x7fffffff) + window_update(1, 0x7fffffff), apps=[app(HELD)])
    s["window_zero"] = fuzz_input(hello + window_update(0, 0) + get(1))
    s["goaway"] = fuzz_input(hello + get(1) + goaway(0, 0, b"bye"), apps=[app(HELD)])
    s["goaway_error"] = fuzz_input(hello + post(1) + goaway(1, 2) + get(3))
    s["ping"] = fuzz_input(hello + ping() + ping(flags=ACK) + get(1))
    s["ping_flood"] = fuzz_input(hello + ping() * 200, controls=[ctl(1, KERNEL_NOTHING), ctl(65536)])
    s["priority"] = fuzz_input(hello + frame(PRIORITY, 0, 3, struct.pack(">IB", 1, 16))
                               + frame(HEADERS, END_STREAM | END_HEADERS | PRIORITY_FLAG, 1, struct.pack(">IB", 0, 200) + request_block(METHOD_GET)))
    s["padded"] = fuzz_input(hello + frame(HEADERS, END_HEADERS | PADDED, 1, b"\x04" + request_block() + b"\0" * 4)
                             + frame(DATA, END_STREAM | PADDED, 1, b"\x02ab\0\0"))
    s["request_trailers"] = fuzz_input(hello + frame(HEADERS, END_HEADERS, 1, request_block(extra=MICRO)) + frame(DATA, 0, 1, b"{}")
                                       + frame(HEADERS, END_STREAM | END_HEADERS, 1, literal("x-trailer", "1")))
    s["response_trailers"] = fuzz_input(hello + get(1) + get(3),
                                        apps=[app(AT_ONCE, 2, TRAILERS), app(NEXT_TURN, 0, TRAILERS | MANY_HEADERS | ODD_STATUS)])
    s["oversize_header"] = fuzz_input(hello + frame(HEADERS, END_STREAM | END_HEADERS, 1, request_block(METHOD_GET, extra=(("x-big", "b" * 100),))),
                                      config=server_config(header=1))
    s["oversize_header_default"] = fuzz_input(hello + frame(HEADERS, END_HEADERS, 1, request_block(extra=(("x-big", "b" * 17000),)))
                                              + frame(DATA, END_STREAM, 1, b"x"))
    s["oversize_body"] = fuzz_input(hello + frame(HEADERS, END_HEADERS, 1, request_block()) + frame(DATA, 0, 1, b"0123456789abcdef")
                                    + frame(DATA, END_STREAM, 1, b"more"), config=server_config(body=2))
    s["body_limit_zero"] = fuzz_input(hello + post(1) + get(3), config=server_config(body=1))
    s["max_concurrent"] = fuzz_input(hello + b"".join(frame(HEADERS, END_HEADERS, i, request_block()) for i in (1, 3, 5))
                                     + frame(DATA, END_STREAM, 1, b"") + frame(DATA, END_STREAM, 5, b""), config=server_config(inflight=1))
    s["dynamic_table"] = fuzz_input(hello + frame(HEADERS, END_STREAM | END_HEADERS, 1, request_block(METHOD_GET) + literal("x-a", "1", indexing=True))
                                    + frame(HEADERS, END_STREAM | END_HEADERS, 3, request_block(METHOD_GET) + b"\xbe" + b"\x3f\xe1\x1f"))
    s["bad_frames"] = fuzz_input(hello + frame(DATA, 0, 0, b"x") + get(1))
    s["unknown_frame"] = fuzz_input(hello + frame(0xfa, 0xff, 1, b"ext") + get(1))
    s["stream_id_even"] = fuzz_input(hello + get(2))
    s["bad_hpack"] = fuzz_input(hello + frame(HEADERS, END_STREAM | END_HEADERS, 1, b"\xff\xff\xff\xff"))
    s["missing_settings"] = fuzz_input(get(1))
    s["graceful_shutdown"] = fuzz_input(hello + get(1) + get(3), config=server_config(flags=SHUTDOWN_AT_END), apps=[app(HELD, 3)])
    s["shutdown_mid"] = fuzz_input(hello + get(1) + get(3) + get(5), apps=[app(HELD)], controls=[ctl(64), ctl(64, SHUTDOWN), ctl(4096, ANSWER_ALL)])
    s["idle_timer"] = fuzz_input(hello + get(1), controls=[ctl(4096), ctl(1), ctl(1, TIMER)])
    grpc = (("content-type", "application/grpc"), ("te", "trailers"))
    s["grpc_oversize_body"] = fuzz_input(hello + post(1, b"\0\0\0\0\x20" + b"g" * 32, extra=grpc), config=server_config(body=2))
    s["grpc_oversize_header"] = fuzz_input(hello + frame(HEADERS, END_STREAM | END_HEADERS, 1,
                                                         request_block(extra=grpc + (("x-big", "b" * 400),))), config=server_config(header=2))
    s["grpc"] = fuzz_input(hello + post(1, b"\0\0\0\0\x02{}", extra=grpc), apps=[app(AT_ONCE, 2, TRAILERS)])
    s["preface_timer"] = fuzz_input(b"", controls=[ctl(5), ctl(1, TIMER)])
    s["half_close"] = fuzz_input(hello + get(1) + get(3), config=server_config(flags=HALF_CLOSE_AT_END), apps=[app(HELD)])
    s["half_close_mid"] = fuzz_input(hello + get(1) + get(3), apps=[app(NEXT_TURN, 4)], controls=[ctl(64, HALF_CLOSE)])
    s["slow_kernel"] = fuzz_input(hello + get(1) + get(3) + get(5), apps=[app(AT_ONCE, 7), app(NEXT_TURN, 6), app(HELD, 5)],
                                  controls=[ctl(1, KERNEL_NOTHING), ctl(4096), ctl(64, KERNEL_SOME), ctl(1, WRITE_DONE),
                                            ctl(64, ANSWER_ALL), ctl(1, WRITE_FAILS)])
    s["read_error_same_turn"] = fuzz_input(hello + get(1), apps=[app(AT_ONCE)], controls=[ctl(4096, READ_ERROR)])
    s["close_all"] = fuzz_input(hello + get(1) + post(3), apps=[app(HELD_TILL_ABORT), app(NEXT_TURN)], controls=[ctl(4096, CLOSE_ALL)])
    return s


def h2client_seeds():
    # the harness sends an empty SETTINGS first; calls are streams 1, 3, 5, 7 (config bits 0-1)
    s = {}
    status = lambda code: STATUS_200 if code == 200 else literal_name(8, str(code))
    ok = lambda sid, body=b"{}": frame(HEADERS, END_HEADERS, sid, status(200) + literal("content-type", "application/json")) + frame(DATA, END_STREAM, sid, body)
    s["ok"] = fuzz_input(SETTINGS_ACK + ok(1))
    s["ok_headers_only"] = fuzz_input(SETTINGS_ACK + frame(HEADERS, END_STREAM | END_HEADERS, 1, status(204)))
    s["four_calls"] = fuzz_input(SETTINGS_ACK + ok(3) + ok(1, b"x" * 1000) + ok(7) + ok(5), config=3)
    s["trailers"] = fuzz_input(SETTINGS_ACK + frame(HEADERS, END_HEADERS, 1, status(200) + literal("content-type", "application/grpc"))
                               + frame(DATA, 0, 1, b"\0\0\0\0\x02{}")
                               + frame(HEADERS, END_STREAM | END_HEADERS, 1, literal("grpc-status", "0") + literal("micro-error", "{}")))
    s["interim_100"] = fuzz_input(SETTINGS_ACK + frame(HEADERS, END_HEADERS, 1, status(100) + literal("x-interim", "1"))
                                  + frame(HEADERS, END_HEADERS, 1, status(200) + literal("content-type", "application/json"))
                                  + frame(DATA, 0, 1, b"{}") + frame(HEADERS, END_STREAM | END_HEADERS, 1, literal("grpc-status", "0")))
    s["error_status"] = fuzz_input(frame(HEADERS, END_STREAM | END_HEADERS, 1, status(503) + literal("micro-error", '{"code":503}')))
    s["refused"] = fuzz_input(rst(1, 7) + ok(3), config=1)
    s["reset"] = fuzz_input(frame(HEADERS, END_HEADERS, 1, status(200)) + rst(1, 2), config=0)
    s["goaway"] = fuzz_input(ok(1) + goaway(1, 0), config=2)
    s["goaway_then_call"] = fuzz_input(goaway(0, 0) + ok(1), config=1, apps=[0], controls=[ctl(64, NEW_CALL), ctl(4096)])
    s["too_large"] = fuzz_input(frame(HEADERS, END_HEADERS, 1, status(200)) + frame(DATA, 0, 1, b"y" * 200) + frame(DATA, END_STREAM, 1, b"z"),
                                config=2 << 4)
    s["window"] = fuzz_input(settings((INITIAL_WINDOW_SIZE, 100)) + window_update(0, 1 << 20) + window_update(1, 200000) + ok(1),
                             config=2 << 2)
    s["big_body_stall"] = fuzz_input(SETTINGS_ACK + ok(1), config=(3 << 2) | 1, controls=[ctl(1, KERNEL_SOME), ctl(13), ctl(1, WRITE_DONE)])
    s["max_concurrent"] = fuzz_input(settings((MAX_CONCURRENT_STREAMS, 1)) + ok(1) + ok(3) + ok(5), config=3)
    s["push_promise"] = fuzz_input(frame(PUSH_PROMISE, END_HEADERS, 1, struct.pack(">I", 2) + request_block(METHOD_GET)) + ok(1))
    s["ping"] = fuzz_input(ping() + ping(flags=ACK) + ok(1))
    s["cancel"] = fuzz_input(frame(HEADERS, END_HEADERS, 1, status(200)) + frame(DATA, 0, 1, b"part") + frame(DATA, END_STREAM, 1, b"rest"),
                             config=1, controls=[ctl(13), ctl(13, CANCEL_OLDEST), ctl(64, CANCEL_NEWEST), ctl(4096)])
    s["close"] = fuzz_input(frame(HEADERS, END_HEADERS, 1, status(200)), config=2, controls=[ctl(64), ctl(1, CLIENT_CLOSE)])
    s["new_calls"] = fuzz_input(ok(1) + ok(3) + ok(5) + ok(7), apps=[0, 5, 10, 8], controls=[ctl(1, NEW_CALL)] * 3 + [ctl(4096)])
    s["restart_in_callback"] = fuzz_input(ok(1) + rst(3, 7) + ok(5), config=0x40, apps=[4, 1])
    s["close_in_callback"] = fuzz_input(ok(1), config=1, apps=[0x10])
    s["cancel_in_callback"] = fuzz_input(ok(1) + ok(5), config=2, apps=[0x20, 0, 0x10])
    s["half_close"] = fuzz_input(frame(HEADERS, END_HEADERS, 1, status(200)), config=0x80 | 1)
    s["read_error"] = fuzz_input(ok(1), config=1, controls=[ctl(13, READ_ERROR)])
    s["write_error"] = fuzz_input(ok(1), config=1, controls=[ctl(13, KERNEL_SOME), ctl(13, WRITE_FAILS), ctl(1)])
    s["slow_kernel"] = fuzz_input(ok(1), config=(2 << 2) | 3, controls=[ctl(1, KERNEL_NOTHING), ctl(64), ctl(1, WRITE_FAILS)])
    s["bad_frames"] = fuzz_input(frame(DATA, 0, 0, b"x") + ok(1))
    s["headers_on_idle_stream"] = fuzz_input(frame(HEADERS, END_STREAM | END_HEADERS, 9, status(200)) + ok(1))
    return s


def h1client_seeds():
    # HTTP/1.1 answers to the one call in flight; a finished call may start the next (config 0x40)
    s = {}

    def answer(body=b"{}", status="200 OK", fields=(("Content-Type", "application/json"),), length=True):
        head = f"HTTP/1.1 {status}\r\n".encode()
        for name, value in fields:
            head += f"{name}: {value}\r\n".encode()
        if length:
            head += f"Content-Length: {len(body)}\r\n".encode()
        return head + b"\r\n" + body

    gomicro_error = (("Content-Type", "application/json"), ("Micro-Error", '{"id":"go.service","code":404,"detail":"x","status":"Not Found"}'))
    s["ok"] = fuzz_input(answer())
    s["go_micro_error"] = fuzz_input(answer(b"", fields=gomicro_error))
    s["chunked_trailers"] = fuzz_input(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: grpc-status\r\n\r\n"
                                       b"2\r\n{}\r\n0\r\ngrpc-status: 0\r\n\r\n")
    s["until_eof"] = fuzz_input(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody until the end", config=0x80)
    s["http10"] = fuzz_input(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}", config=0x40, apps=[0])
    s["keep_alive_next"] = fuzz_input(answer() + answer(b"[1]"), config=0x40, apps=[0, 4],
                                      controls=[ctl(13), ctl(64, NEW_CALL), ctl(4096)])
    s["close_header"] = fuzz_input(answer(fields=(("Connection", "close"),)), config=0x40, apps=[0])
    s["interim_100"] = fuzz_input(b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n" + answer())
    s["no_content"] = fuzz_input(b"HTTP/1.1 204 No Content\r\n\r\n" + answer(), config=0x40, apps=[0])
    s["head"] = fuzz_input(answer(b""), apps=[4], controls=[ctl(64, NEW_CALL)])
    s["too_large"] = fuzz_input(answer(b"y" * 200), config=2 << 4)
    s["too_large_declared"] = fuzz_input(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\nxx", config=2 << 4)
    s["extra_bytes"] = fuzz_input(answer() + b"HTTP/1.1 200 OK\r\n")
    s["bytes_before_call"] = fuzz_input(answer(), controls=[ctl(64, CLIENT_CLOSE)])
    s["malformed"] = fuzz_input(b"HTTP/1.1 2x0 OK\r\n\r\n")
    s["bad_field"] = fuzz_input(b"HTTP/1.1 200 OK\r\nBad Name: 1\r\nContent-Length: 0\r\n\r\n")
    s["upgrade"] = fuzz_input(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n\0\0\0\4\0\0\0\0\0")
    s["cancel"] = fuzz_input(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npart", controls=[ctl(64), ctl(1, CANCEL_OLDEST), ctl(4096)])
    s["deadline"] = fuzz_input(b"HTTP/1.1 200 OK\r\n", apps=[0x10], controls=[ctl(64, NEW_CALL), ctl(64), ctl(1, 28)])
    s["eof_mid_answer"] = fuzz_input(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\npart", config=0x80)
    s["many_fields"] = fuzz_input(answer(fields=[("X-F%d" % i, "v" * 100) for i in range(700)]))
    s["close_in_callback"] = fuzz_input(answer(), apps=[0x10])
    s["restart_in_callback"] = fuzz_input(answer() + answer() + answer(), config=0x40, apps=[0, 0, 0])
    s["slow_kernel"] = fuzz_input(answer(), config=(3 << 2), controls=[ctl(1, KERNEL_NOTHING), ctl(64), ctl(1, KERNEL_SOME), ctl(1, WRITE_DONE)])
    s["read_error"] = fuzz_input(answer(), controls=[ctl(13, READ_ERROR)])
    # go-micro streams (application byte bit 5): frames with a Micro-Stream id, the end as
    # Micro-Error EOS or an error. The first call's answer is exactly one 64-byte read; then a
    # stream starts on the connection (the application byte) and its frames follow.
    STREAM, FINISH, CONSUME = 0x20, 0x40, 0x80
    first = answer(b"{}", fields=(("X-Pad", ""),))
    first = first.replace(b"X-Pad: ", b"X-Pad: " + b"p" * (64 - len(first)))
    assert len(first) == 64
    frame = lambda body, extra=(): answer(body, fields=(("Micro-Stream", "1"), ("Content-Type", "application/json")) + tuple(extra))
    eos = frame(b"", (("Micro-Error", "EOS"),))
    stream = lambda data, how=STREAM | FINISH | 1: fuzz_input(first + data, apps=[how], controls=[ctl(64, NEW_CALL), ctl(4096)])
    s["stream_frames"] = stream(frame(b'{"n":1}') + frame(b'{"n":2}') + eos)
    s["stream_error"] = stream(frame(b'{"n":1}') + frame(b"", (("Micro-Error", '{"code":409,"detail":"no"}'),)))
    s["stream_eos_only"] = stream(eos, STREAM | CONSUME)
    s["stream_big"] = stream(frame(b"z" * 60000) + frame(b"y" * 60000) + eos, STREAM | 2)
    chunked = (b"HTTP/1.1 200 OK\r\nMicro-Stream: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"7\r\n{\"n\":2}\r\n0\r\nx-t: 1\r\nx-u: 2\r\n\r\n")
    s["stream_chunked_trailers"] = stream(frame(b'{"n":1}') + chunked + eos)
    s["stream_eof"] = fuzz_input(first + frame(b'{"n":1}'), config=0x80, apps=[STREAM], controls=[ctl(64, NEW_CALL), ctl(4096)])
    s["stream_cancel"] = fuzz_input(first + frame(b'{"n":1}'), apps=[STREAM | FINISH],
                                    controls=[ctl(64, NEW_CALL), ctl(13), ctl(1, CANCEL_NEWEST), ctl(4096)])
    return s


def main():
    targets = {"h1": h1_seeds(), "h2": h2_seeds(), "h2client": h2client_seeds(), "h1client": h1client_seeds()}
    for target, seeds in targets.items():
        out = os.path.join(HERE, "corpus", target)
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        for name, data in sorted(seeds.items()):
            with open(os.path.join(out, name), "wb") as f:
                f.write(data)
        print(f"{target}: {len(seeds)} seeds", file=sys.stderr)


if __name__ == "__main__":
    main()
