/*
 * Target h2state: an HTTP/2 client as a program. Where the h2 target feeds raw bytes (and so
 * rarely gets a second valid HPACK block on an open stream), this one decodes its input into
 * operations: frames the client sends, built here (9-byte header + payload, header blocks encoded
 * with nghttp2's own HPACK deflater, one per input, so that every block stays valid for the
 * server's decoder across the sequence), interleaved with loop turns, the application answering
 * requests it holds, the fake kernel, the timer, the peer's half-close and server shutdown. It
 * drives the real connection code as fuzz_server_connection (common.c) does.
 *
 * Input:
 *   byte 0      configuration, as for h1/h2 (fuzz.h): bits 0-1 header limit, 2-3 body limit,
 *               4-5 requests in flight / concurrent streams, 6 half-close at the end, 7 graceful
 *               shutdown at the end
 *   byte 1      bits 0-6: A = length of the application tape (fuzz.h, common.c: how each request
 *               is answered: at once, next turn, held, held till aborted; body size, streamed,
 *               trailers, odd status); bit 7: when the program ends, leave held requests to be
 *               aborted rather than answering them one per turn
 *   A bytes     the application tape
 *   the rest    the program: one operation after the other, each an opcode byte (low 4 bits:
 *               the operation, high 4 bits: N, its small argument) and, for opcodes 0-4 and 10,
 *               one argument byte B. See the table in docs/FUZZING.md and the cases below.
 *
 * The preface and an empty SETTINGS frame are always sent first. Frames go into the peer's send
 * buffer; the connection reads them on the next turn (an event operation) or, for those left,
 * in the final drain. Stream ids are chosen relative to the last one the client opened: new,
 * current, previous, idle, or odd ones (0, even, far ahead, 2^31-1). The server's receive windows
 * are 64 KiB a stream and 128 KiB for the connection (not 1 and 16 MiB), so that a few frames
 * overrun them. Trace of the operations and frames: FUZZ_TRACE=1.
 */
#include "fuzz.h"

#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FRAME 16384      /* the server announces no SETTINGS_MAX_FRAME_SIZE: the default */
#define MAX_WIRE (2u << 20)  /* what one input may make the peer send (past it, frames are dropped) */

enum {
    OP_HEADERS, OP_TRAILERS, OP_DATA, OP_SETTINGS, OP_WINDOW_UPDATE, /* with an argument byte */
    OP_RST_STREAM, OP_PING, OP_GOAWAY, OP_PRIORITY, OP_CONTINUATION,
    EV_TURN, /* with an argument byte: a control-tape byte */
    EV_ANSWER, EV_POLL, EV_SHUTDOWN, EV_FLUSH, EV_READ,
};

enum { F_DATA = 0, F_HEADERS = 1, F_PRIORITY = 2, F_RST_STREAM = 3, F_SETTINGS = 4, F_PING = 6, F_GOAWAY = 7,
       F_WINDOW_UPDATE = 8, F_CONTINUATION = 9 };
enum { FL_END_STREAM = 1, FL_ACK = 1, FL_END_HEADERS = 4, FL_PADDED = 8, FL_PRIORITY = 0x20 };

static const uint8_t preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* ---------------------------------------------------------------- the peer's bytes */

static uint8_t *wire;
static size_t wire_len, wire_cap;
static fuzz_stream_t st;
static bool eof; /* the peer half-closed: it sends nothing more */
static mc_conn_t *conn;
static bool trace;

static void frame(uint8_t type, uint8_t flags, uint32_t id, const uint8_t *p, size_t n) {
    if (eof || wire_len + 9 + n > MAX_WIRE) return;
    if (wire_len + 9 + n > wire_cap) {
        size_t cap = wire_cap ? wire_cap : 65536;
        while (cap < wire_len + 9 + n) cap *= 2;
        wire = realloc(wire, cap);
        if (!wire) abort();
        wire_cap = cap;
    }
    uint8_t *h = wire + wire_len;
    h[0] = (uint8_t)(n >> 16);
    h[1] = (uint8_t)(n >> 8);
    h[2] = (uint8_t)n;
    h[3] = type;
    h[4] = flags;
    h[5] = (uint8_t)(id >> 24 & 0x7f);
    h[6] = (uint8_t)(id >> 16);
    h[7] = (uint8_t)(id >> 8);
    h[8] = (uint8_t)id;
    if (n) memcpy(h + 9, p, n);
    wire_len += 9 + n;
    st.data = (fuzz_bytes_t){wire, wire_len};
    if (trace) fprintf(stderr, "    frame type %u flags 0x%02x stream %u, %zu bytes\n", type, flags, id, n);
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* ---------------------------------------------------------------- stream ids */

static uint32_t last_id; /* the highest stream the client opened (0: none yet) */
static unsigned odd_count;

static uint32_t id_current(void) { return last_id ? last_id : 1; }
static uint32_t id_previous(void) { return last_id > 2 ? last_id - 2 : id_current(); }
static uint32_t id_new(void) {
    if (last_id >= 0x7ffffffd) return 0x7fffffff;
    last_id = last_id ? last_id + 2 : 1;
    return last_id;
}
static uint32_t id_odd(bool opening) {
    switch (odd_count++ & 3) {
    case 0: return 0;
    case 1: return id_current() + 1; /* even: the server's */
    case 2:
        if (!opening) return id_current() + 4;
        if (last_id >= 0x7ffffff9) return 0x7fffffff;
        return last_id = id_current() + 4; /* skips one: that one is closed implicitly */
    default:
        if (opening) last_id = 0x7fffffff;
        return 0x7fffffff;
    }
}

/* 0 new, 1 current (trailers), 2 previous, 3 odd. */
static uint32_t pick_opening(unsigned sel) {
    switch (sel & 3) {
    case 0: return id_new();
    case 1: return id_current();
    case 2: return id_previous();
    default: return id_odd(true);
    }
}

/* 0 current, 1 previous, 2 idle (never opened), 3 odd. */
static uint32_t pick(unsigned sel) {
    switch (sel & 3) {
    case 0: return id_current();
    case 1: return id_previous();
    case 2: return last_id >= 0x7ffffffd ? 0x7fffffff : id_current() + 2;
    default: return id_odd(false);
    }
}

/* ---------------------------------------------------------------- header blocks */

static nghttp2_hd_deflater *hpack;
static uint8_t *block;
static size_t block_cap;
static uint8_t rest[256 * 1024]; /* the part of a header block still to come in CONTINUATION */
static size_t rest_len;
static uint32_t rest_id;
static bool rest_pending;
static uint8_t filler[20000];
static uint8_t payload[MAX_FRAME + 512];

#define MAX_NV 256
static nghttp2_nv nv[MAX_NV];
static size_t nnv;

static void field(const char *name, const void *value, size_t vlen) {
    if (nnv == MAX_NV) return;
    uint8_t flags = vlen > 1000 ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE;
    nv[nnv++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, strlen(name), vlen, flags};
}
static void fieldz(const char *name, const char *value) { field(name, value, strlen(value)); }

static size_t encode(void) {
    size_t bound = nghttp2_hd_deflate_bound(hpack, nv, nnv);
    if (bound > block_cap) {
        block = realloc(block, bound);
        if (!block) abort();
        block_cap = bound;
    }
    ssize_t n = nghttp2_hd_deflate_hd(hpack, block, bound, nv, nnv);
    if (n < 0) abort();
    nnv = 0;
    return (size_t)n;
}

/* HEADERS (and CONTINUATION past the frame size) carrying the block; without end_headers the
 * second half is kept for OP_CONTINUATION. */
static void send_block(uint32_t id, uint8_t flags, size_t len, bool end_headers) {
    size_t now = end_headers ? len : len / 2;
    size_t pad = (flags & FL_PADDED) ? 7 : 0;
    size_t k = 0;
    if (flags & FL_PADDED) payload[k++] = (uint8_t)pad;
    if (flags & FL_PRIORITY) {
        put32(payload + k, 0); /* depends on stream 0 */
        payload[k + 4] = 15;   /* weight 16 */
        k += 5;
    }
    size_t first = now < MAX_FRAME - k - pad ? now : MAX_FRAME - k - pad;
    memcpy(payload + k, block, first);
    k += first;
    memset(payload + k, 0, pad);
    k += pad;
    frame(F_HEADERS, (uint8_t)(flags | (first == now && end_headers ? FL_END_HEADERS : 0)), id, payload, k);
    for (size_t off = first; off < now;) {
        size_t m = now - off < MAX_FRAME ? now - off : MAX_FRAME;
        frame(F_CONTINUATION, off + m == now && end_headers ? FL_END_HEADERS : 0, id, block + off, m);
        off += m;
    }
    rest_pending = !end_headers && len - now <= sizeof rest;
    rest_len = rest_pending ? len - now : 0;
    rest_id = id;
    if (rest_len) memcpy(rest, block + now, rest_len);
}

static const char *const methods[3] = {"POST", "GET", "HEAD"};

/* B bits 0-2: the request: 0 POST / JSON, 1 POST /s/stream JSON (a stream by its path), 2 POST
 * /pkg.Service/Method gRPC, 3 POST /s.Service/Stream gRPC (a stream), 4 GET /, 5 HEAD /, 6 POST
 * / with content-length 5, 7 malformed (by N). B bit 7 adds micro-stream: 1. N bits 0-2: a big
 * field of 100 B, 1, 4, 8, 16 KiB, 40 or 200 small fields (0: none). */
static void request_block(unsigned tmpl, bool micro_stream, unsigned big) {
    static const char *const paths[8] = {"/", "/s/stream", "/pkg.Service/Method", "/s.Service/Stream", "/", "/", "/", "/"};
    const char *method = methods[tmpl == 4 ? 1 : tmpl == 5 ? 2 : 0];
    unsigned bad = tmpl == 7 ? big & 3 : 4; /* which malformation */
    if (bad != 0) fieldz(":method", method);
    fieldz(":scheme", "http");
    fieldz(":authority", "x");
    if (bad != 1) fieldz(":path", bad == 2 ? "" : paths[tmpl]);
    if (bad == 3) fieldz("Upper-Case", "x");
    if (tmpl == 7 && (big & 4)) fieldz("connection", "keep-alive");
    if (tmpl == 2 || tmpl == 3) {
        fieldz("content-type", "application/grpc");
        fieldz("te", "trailers");
        fieldz("grpc-timeout", "1S");
    } else if (tmpl < 4 || tmpl == 6) {
        fieldz("content-type", "application/json");
    }
    if (tmpl == 6) fieldz("content-length", "5");
    if (micro_stream) fieldz("micro-stream", "1");
    static const size_t sizes[6] = {0, 100, 1024, 4096, 8192, 16384};
    if (tmpl != 7 && big >= 1 && big <= 5) field("x-big", filler, sizes[big]);
    if (tmpl != 7 && big >= 6)
        for (size_t i = 0; i < (big == 6 ? 40u : 200u); i++) fieldz("x-many", "value");
}

/* B bits 0-2: 0 grpc-status: 0, 1..5 a field of 100 B, 1, 4, 8, 16 KiB, 6 twenty small fields, 7 a
 * pseudo-header (malformed). N bits 0-1: the field repeated 1, 2, 4, 8 times. */
static void trailer_block(unsigned kind, unsigned times) {
    static const size_t sizes[6] = {0, 100, 1024, 4096, 8192, 16384};
    for (unsigned t = 0; t < (1u << times); t++) {
        if (kind == 0) {
            fieldz("grpc-status", "0");
        } else if (kind <= 5) {
            field("x-trailer", filler, sizes[kind]);
        } else if (kind == 6) {
            for (int i = 0; i < 20; i++) fieldz("x-t", "v");
        } else {
            fieldz(":path", "/");
        }
    }
}

/* ---------------------------------------------------------------- frames of the other kinds */

/* N: the size (0, 1, 5, 17, 100, 1000, 4096, 16384, 16385: too big for a frame, a gRPC message, the
 * start of a 1 MiB gRPC message, 16383, 4, 8 and 16 frames of 16 KiB: past the stream and the
 * connection windows, 8 frames of 1 byte). B bits 0-1: the stream (current, previous, idle, odd), bit 2:
 * END_STREAM on the last frame, bit 3: padded, bits 4-5: the padding (0, 1, 10, 255 bytes), bit
 * 6: trailers after the last frame (HEADERS with END_STREAM; bit 7: a 1 KiB field, else a small one). */
static void data_frames(unsigned size_sel, unsigned b) {
    enum { GRPC_MSG = 1u << 30, GRPC_BIG, ONES };
    static const uint32_t sizes[16] = {0, 1, 5, 17, 100, 1000, 4096, 16384, 16385, GRPC_MSG, GRPC_BIG,
                                       16383, 4 * 16384, 8 * 16384, 16 * 16384, ONES};
    static const uint8_t pads[4] = {0, 1, 10, 255};
    uint32_t id = pick(b);
    bool end = b & 4, padded = b & 8;
    size_t pad = padded ? pads[(b >> 4) & 3] : 0;
    uint32_t size = sizes[size_sel & 15];
    const uint8_t *src = filler;
    size_t total = size, piece = MAX_FRAME - (padded ? 1 + pad : 0);
    if (size == GRPC_MSG || size == GRPC_BIG) {
        /* one gRPC message of 10 bytes, or the start of one that says 1 MiB */
        static uint8_t msg[105];
        memset(msg, 'm', sizeof msg);
        msg[0] = 0;
        put32(msg + 1, size == GRPC_MSG ? 10 : 1u << 20);
        src = msg;
        total = size == GRPC_MSG ? 15 : sizeof msg;
    } else if (size == ONES) {
        total = 8;
        piece = 1;
    } else if (size == 16385) {
        piece = 16385; /* larger than the frame size: a FRAME_SIZE_ERROR */
    }
    size_t off = 0;
    do {
        size_t m = total - off < piece ? total - off : piece;
        size_t k = 0;
        if (padded) payload[k++] = (uint8_t)pad;
        if (m > sizeof payload - k - pad) { /* 16385 unpadded only: from filler */
            frame(F_DATA, end && off + m == total ? FL_END_STREAM : 0, id, filler, m);
        } else {
            memcpy(payload + k, src == filler ? filler : src + off, m);
            k += m;
            memset(payload + k, 0, pad);
            k += pad;
            frame(F_DATA, (uint8_t)((end && off + m == total ? FL_END_STREAM : 0) | (padded ? FL_PADDED : 0)), id,
                  payload, k);
        }
        off += m;
    } while (off < total);
    if (b & 0x40) { /* the body ends with trailers */
        if (b & 0x80) field("x-checksum", filler, 1024);
        else fieldz("x-checksum", "0");
        send_block(id, FL_END_STREAM, encode(), true);
    }
}

static void settings(unsigned n, unsigned b) {
    static const uint32_t windows[8] = {0, 1, 100, 16384, 65535, 1u << 20, 0x7fffffff, 0x80000000u};
    static const uint32_t frame_sizes[8] = {16384, 16385, 65535, 1u << 20, 0xffffff, 0x1000000, 100, 20000};
    static const uint32_t others[8][2] = {{1, 0}, {1, 65536}, {2, 0}, {2, 2}, {3, 0}, {6, 100}, {0x99, 1}, {0, 0}};
    uint8_t p[12];
    switch (n & 3) {
    case 0: /* SETTINGS_INITIAL_WINDOW_SIZE */
        p[0] = 0, p[1] = 4;
        put32(p + 2, windows[b & 7]);
        frame(F_SETTINGS, 0, 0, p, 6);
        break;
    case 1: /* SETTINGS_MAX_FRAME_SIZE */
        p[0] = 0, p[1] = 5;
        put32(p + 2, frame_sizes[b & 7]);
        frame(F_SETTINGS, 0, 0, p, 6);
        break;
    case 2: /* ACK of the server's SETTINGS (with a payload: an error) */
        memset(p, 0, 6);
        frame(F_SETTINGS, FL_ACK, 0, p, (b & 1) ? 6 : 0);
        break;
    default:
        if ((b & 7) == 7) { /* a length that is no multiple of 6 */
            memset(p, 0, 5);
            frame(F_SETTINGS, 0, 0, p, 5);
            break;
        }
        p[0] = (uint8_t)(others[b & 7][0] >> 8), p[1] = (uint8_t)others[b & 7][0];
        put32(p + 2, others[b & 7][1]);
        frame(F_SETTINGS, 0, 0, p, 6);
        break;
    }
}

static void window_update(unsigned n, unsigned b) {
    static const uint32_t incs[8] = {1, 100, 16384, 65535, 1u << 20, 0x7fffffff - 65535, 0x7fffffff, 0};
    uint8_t p[4];
    put32(p, incs[n & 7]);
    uint32_t id = (n & 8) ? 0 : pick(b);
    for (unsigned i = 0; i < ((b & 4) ? 2u : 1u); i++) frame(F_WINDOW_UPDATE, 0, id, p, 4);
}

static void one_byte_frame(unsigned op, unsigned n) {
    uint8_t p[64];
    memset(p, 0, sizeof p);
    switch (op) {
    case OP_RST_STREAM: {
        static const uint32_t codes[4] = {NGHTTP2_NO_ERROR, NGHTTP2_CANCEL, NGHTTP2_PROTOCOL_ERROR, NGHTTP2_REFUSED_STREAM};
        put32(p, codes[(n >> 2) & 3]);
        frame(F_RST_STREAM, 0, pick(n), p, 4);
        break;
    }
    case OP_PING:
        if (n & 4) { /* an extension frame type nghttp2 ignores */
            frame(0xfa, 0, id_current(), p, 5);
            break;
        }
        for (unsigned i = 0; i < ((n & 8) ? 4u : 1u); i++) {
            switch (n & 3) {
            case 0: frame(F_PING, 0, 0, p, 8); break;
            case 1: frame(F_PING, FL_ACK, 0, p, 8); break;
            case 2: frame(F_PING, 0, 0, p, 7); break;
            default: frame(F_PING, 0, id_current(), p, 8); break;
            }
        }
        break;
    case OP_GOAWAY: {
        static const uint32_t codes[4] = {NGHTTP2_NO_ERROR, NGHTTP2_PROTOCOL_ERROR, NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_NO_ERROR};
        uint32_t last[4] = {0, id_current(), 0x7fffffff, id_previous()};
        put32(p, last[n & 3]);
        put32(p + 4, codes[(n >> 2) & 3]);
        frame(F_GOAWAY, 0, 0, p, ((n >> 2) & 3) == 3 ? 28 : 8);
        break;
    }
    case OP_PRIORITY: {
        uint32_t id = pick(n);
        put32(p, ((n & 8) ? id : id_previous() == id ? 0 : id_previous()) | ((n & 4) ? 0x80000000u : 0));
        p[4] = 200;
        frame(F_PRIORITY, 0, id, p, 5);
        break;
    }
    case OP_CONTINUATION: {
        /* N bit 0: only half of what is left (no END_HEADERS), bit 1: on another stream, bit 2: empty */
        uint32_t id = rest_pending ? rest_id : id_current();
        if (n & 2) id += 2;
        if (!rest_pending) { /* nothing to continue: a protocol error */
            frame(F_CONTINUATION, FL_END_HEADERS, id, p, 0);
            break;
        }
        size_t m = (n & 4) ? 0 : (n & 1) ? rest_len / 2 : rest_len;
        if (m > MAX_FRAME) m = MAX_FRAME;
        bool last = m == rest_len;
        frame(F_CONTINUATION, last ? FL_END_HEADERS : 0, id, rest, m);
        memmove(rest, rest + m, rest_len - m);
        rest_len -= m;
        rest_pending = !last;
        break;
    }
    default: break;
    }
}

/* ---------------------------------------------------------------- loop turns */

/* One libuv turn, a control step of fuzz_server_connection's (fuzz_server_step): `action` as a
 * control byte's, a read of up to `chunk` bytes (0: none). */
static void turn(unsigned action, size_t chunk) { fuzz_server_step(&conn, &st, &eof, action, chunk); }

/* ---------------------------------------------------------------- the program */

static const char *const op_names[16] = {"HEADERS", "TRAILERS", "DATA", "SETTINGS", "WINDOW_UPDATE", "RST_STREAM",
                                         "PING", "GOAWAY", "PRIORITY", "CONTINUATION", "turn", "answer", "poll",
                                         "shutdown", "flush", "read"};

static void run(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n && conn) {
        unsigned op = p[i] & 15, arg = p[i] >> 4;
        i++;
        unsigned b = 0;
        if (op <= OP_WINDOW_UPDATE || op == EV_TURN) {
            b = i < n ? p[i] : 0;
            i++;
        }
        if (trace) fprintf(stderr, "op %s N=%u B=0x%02x\n", op_names[op], arg, b);
        switch (op) {
        case OP_HEADERS: {
            uint32_t id = pick_opening(b >> 3);
            request_block(b & 7, b & 0x80, arg & 7);
            uint8_t flags = (uint8_t)(((b & 0x20) ? FL_END_STREAM : 0) | ((arg & 8) ? FL_PADDED | FL_PRIORITY : 0));
            send_block(id, flags, encode(), !(b & 0x40));
            break;
        }
        case OP_TRAILERS: {
            uint32_t id = pick(b >> 3);
            trailer_block(b & 7, arg & 3);
            uint8_t flags = (uint8_t)(((b & 0x20) ? 0 : FL_END_STREAM) | ((b & 0x80) ? FL_PADDED : 0));
            send_block(id, flags, encode(), !(b & 0x40));
            break;
        }
        case OP_DATA: data_frames(arg, b); break;
        case OP_SETTINGS: settings(arg, b); break;
        case OP_WINDOW_UPDATE: window_update(arg, b); break;
        case OP_RST_STREAM:
        case OP_PING:
        case OP_GOAWAY:
        case OP_PRIORITY:
        case OP_CONTINUATION: one_byte_frame(op, arg); break;
        case EV_TURN: turn(b >> 3, fuzz_chunk_sizes[b & 7]); break; /* exactly a control-tape byte */
        case EV_ANSWER: {
            /* N bits 0-1: the oldest, the newest, every held request, or only the jobs; bits
             * 2-3: the read before it: everything, none, 1 byte, 13 bytes */
            static const size_t reads[4] = {MC_READ_BUFFER_SIZE, 0, 1, 13};
            turn((arg & 3) == 3 ? 0 : 12 + (arg & 3), reads[arg >> 2]);
            break;
        }
        case EV_POLL: turn(15 + arg % 9, MC_READ_BUFFER_SIZE); break; /* 15..23 (fuzz_poll_action) */
        case EV_SHUTDOWN: turn((arg & 1) ? 25 : 24, (arg & 2) ? 0 : MC_READ_BUFFER_SIZE); break;
        case EV_FLUSH: /* a turn with nothing to read */
            turn(0, 0);
            break;
        case EV_READ: turn((arg & 8) ? 21 : 0, fuzz_chunk_sizes[arg & 7]); break;
        default: break;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!filler[0]) {
        for (size_t i = 0; i < sizeof filler; i++) filler[i] = (uint8_t)('a' + i % 26);
        trace = getenv("FUZZ_TRACE") != NULL;
    }
    uint8_t config = size > 0 ? data[0] : 0;
    uint8_t tape = size > 1 ? data[1] : 0;
    size_t a = tape & 0x7f;
    size_t at = size < 2 ? size : 2;
    if (a > size - at) a = size - at;
    fuzz_bytes_t app = {data + at, a};
    const uint8_t *prog = data + at + a;
    size_t prog_len = size - at - a;
    bool leave_held = tape & 0x80;

    mc_server_t *s = fuzz_server(config);
    /* windows of 64 KiB and 128 KiB rather than 1 and 16 MiB: a few frames of 16 KiB overrun
     * them, so flow control is reached without megabytes per input */
    s->config.stream_window = 65535;
    s->config.connection_window = 128 * 1024;

    fuzz_app_reset(app);
    fuzz_kernel = KERNEL_TAKES_ALL;
    fuzz_reset_reads();
    if (nghttp2_hd_deflate_new(&hpack, 4096) != 0) abort();
    wire_len = 0;
    eof = false;
    last_id = 0;
    odd_count = 0;
    rest_pending = false;
    rest_len = 0;
    nnv = 0;
    st = (fuzz_stream_t){NULL, 0, {NULL, 0}, 0};
    conn = mc_fuzz_conn_open(fuzz_server_loop());
    if (!conn) abort();

    /* the preface and the client's first SETTINGS (empty) */
    if (wire_cap < 65536) {
        wire = realloc(wire, 65536);
        if (!wire) abort();
        wire_cap = 65536;
    }
    memcpy(wire, preface, sizeof preface - 1);
    wire_len = sizeof preface - 1;
    frame(F_SETTINGS, 0, 0, NULL, 0);

    run(prog, prog_len);

    /* the end of fuzz_server_connection's, answering one held request a turn (every kind) or,
     * if told, leaving them all to the close */
    fuzz_server_finish(conn, &st, eof, config, leave_held ? FUZZ_DRAIN_NONE : FUZZ_DRAIN_OLDEST);
    conn = NULL;
    nghttp2_hd_deflate_del(hpack);
    hpack = NULL;
    return 0;
}
