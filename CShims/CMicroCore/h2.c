/*
 * HTTP/2, server side: the core's own framing (RFC 9113) and HPACK (hpack.c); nghttp2 serves the
 * client side only (client.c). A server needs far less than a general HTTP/2 library: no push, no
 * priorities, a stateless header encoder, and answers that go straight into the connection's
 * output when the peer's windows allow (the usual case), with no copy and no frame queue.
 *
 * A stream is its request (mc_request_t, found by id in a small chained table). It opens with
 * HEADERS and becomes a request when its END_STREAM arrives (or at its headers, for a stream);
 * it closes when both sides have ended, or with RST_STREAM either way. Closing is two steps: the
 * stream leaves the table at once (frames for it are ignored from then on), and its request is
 * told (mc_request_abort: freed, or its handler learns) from the connection's reap list at the
 * end of the current input or output pass, never from inside a frame that still uses it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "h2frame.h"
#include "hpack.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define H2_FRAME_MAX 16384            /* our SETTINGS_MAX_FRAME_SIZE: the default, never raised */
#define H2_DEFAULT_WINDOW 65535
#define H2_WINDOW_MAX 0x7fffffff
#define H2_MAX_CONTINUATIONS 8        /* a block in more pieces ends the connection (CVE-2024-28182) */
#define H2_OUT_CAP (1024 * 1024)      /* a pump stops adding DATA past this much queued output */
#define H2_QUANTUM (64 * 1024)        /* DATA one stream sends before the next queued one's turn */
/* A client that resets more than this many streams at once (then PEER_RESETS_PER_SECOND) is
 * sent GOAWAY: rapid reset (CVE-2023-44487). */
#define H2_PEER_RESETS_BURST 1000
#define H2_PEER_RESETS_PER_SECOND 33
/* MadeYouReset (CVE-2025-8671): resets a peer makes this side send (a malformed request, a window
 * overflow) are counted too: more than this burst (refilled per second) ends the connection. */
#define H2_RESETS_BURST 200
#define H2_RESETS_PER_SECOND 20
/* Past this many times the limit, a header block is no longer read for an answer: the stream is
 * reset and the rest of its fields are only decoded (an HPACK bomb costs CPU per field). */
#define H2_FIELD_BYTES_ABUSE 4
/* RFC 9113, 5.1.1: a client's new stream id must be above every id it used before, and ids it
 * skipped are closed. Ids within the last 2048 are remembered as opened or skipped, so that a
 * late frame for a stream this side already closed is told from one on a stream never opened. */
#define H2_ID_WINDOW 2048

typedef enum { IN_PREFACE, IN_HEAD, IN_PAYLOAD, IN_PAD_LENGTH, IN_DATA, IN_SKIP } in_state_t;

typedef struct mc_h2s {
    mc_hpack_decoder_t hpack;
    in_state_t in;
    size_t preface_seen;
    uint8_t head[9];          /* the frame header being read */
    size_t head_len;
    uint32_t len, id;         /* the current frame's */
    uint8_t type, flags;
    mc_buf_t payload;         /* a frame's payload gathered across reads (frames other than DATA) */
    size_t data_left, skip_left; /* DATA: content bytes to come, then padding to skip */
    mc_request_t *data_stream; /* DATA: the stream its content goes to (NULL: dropped) */
    bool settings_seen;       /* the client's first SETTINGS (its preface) arrived */

    /* a header block in pieces (HEADERS without END_HEADERS, then CONTINUATION) */
    mc_buf_t block;
    uint32_t block_stream;    /* 0: none open */
    bool block_end_stream;
    unsigned continuations;

    mc_request_t **table;     /* open streams by id (chained through r->h2.hnext) */
    uint32_t mask;
    mc_request_t *qhead, *qtail; /* streams with DATA to send (through r->h2.qnext) */
    mc_request_t *reap;       /* streams closed, their requests not yet told (r->h2.cnext) */

    int64_t send_window;      /* the connection's, as the peer grants it */
    int64_t recv_window;      /* the connection's: what the peer may still send */
    size_t recv_credit;       /* consumed bytes not yet given back with WINDOW_UPDATE */
    size_t conn_window;       /* the connection window we keep open */
    uint32_t stream_window;   /* the stream window we announce (SETTINGS_INITIAL_WINDOW_SIZE) */
    uint32_t peer_initial_window, peer_max_frame;
    uint32_t last_proc;       /* the highest stream id taken for processing (GOAWAY's last id) */
    uint32_t peer_resets;     /* token bucket of the peer's RST_STREAM (rapid reset) */
    uint64_t peer_resets_at;
    uint32_t max_id;          /* the highest stream id the client opened */
    uint64_t opened[H2_ID_WINDOW / 64]; /* of the last ids: opened (1) or skipped by the client */
    uint64_t reset[H2_ID_WINDOW / 64];  /* of the last ids: closed by this side's RST_STREAM */
    bool goaway_recv;
    bool fatal;
    bool nomem;               /* output could not be allocated: the next flush closes */
    bool table_size_update;   /* the next header block starts with a table size update to 0 */
    uint32_t enc_table;       /* the table size the peer's decoder assumes of our encoder */
    size_t qlen;              /* streams in the send queue */               /* a connection error was sent: nothing more is read */
} mc_h2s_t;

/* ---------------------------------------------------------------- output */

/* Out of memory for output: the connection cannot go on. It is closed by the flush (the pump
 * fails), not here: the caller may still hold a request that a close would free. */
static void out_failed(mc_conn_t *c) {
    c->h2s->fatal = c->h2s->nomem = true;
    mc_conn_enter(c, MC_CONN_ENDING);
    mc_loop_mark_dirty(c->loop, c);
}

static void put_frame(mc_conn_t *c, uint8_t type, uint8_t flags, uint32_t id, const uint8_t *payload, size_t len) {
    if (mc_conn_closed(c) || c->h2s->nomem) return;
    if (h2_append_frame(&c->out, type, flags, id, payload, len) != 0) {
        out_failed(c);
        return;
    }
}

static void put_goaway(mc_conn_t *c, uint32_t last, uint32_t code, const char *debug) {
    uint8_t p[8 + 32];
    size_t dl = debug ? strlen(debug) : 0;
    if (dl > 32) dl = 32;
    put_u32(p, last);
    put_u32(p + 4, code);
    if (dl) memcpy(p + 8, debug, dl);
    put_frame(c, F_GOAWAY, 0, 0, p, 8 + dl);
    mc_loop_mark_dirty(c->loop, c);
}

static void put_window_update(mc_conn_t *c, uint32_t id, size_t n) {
    uint8_t p[4];
    put_u32(p, (uint32_t)n);
    put_frame(c, F_WINDOW_UPDATE, 0, id, p, 4);
}

/* A connection error: GOAWAY with the code, and nothing more is read; the connection closes once
 * its output is out. */
static void connection_error(mc_conn_t *c, uint32_t code, const char *why) {
    mc_h2s_t *h = c->h2s;
    if (h->fatal || mc_conn_closed(c)) return;
    h->fatal = true;
    c->h2_goaway_sent = true;
    mc_server_log(c->server, MC_LOG_DEBUG, "HTTP/2 connection error %u: %s", code, why);
    put_goaway(c, h->last_proc, code, NULL);
    mc_conn_enter(c, MC_CONN_ENDING);
}

/* Encodes a header block for stream `id` straight into c->out: `:status` unless 0, the fields
 * (names lowered, connection-specific ones left out), content-length if `clen`; split into
 * CONTINUATION frames past the peer's frame size. */
static int put_fields(mc_conn_t *c, uint32_t id, bool end_stream, int status, const mc_header_t *h, size_t nh,
                      const char *clen) {
    mc_h2s_t *s = c->h2s;
    size_t max = 1, clen_len = clen ? strlen(clen) : 0;
    if (status) max += mc_hpack_field_max(7, 3);
    for (size_t i = 0; i < nh; i++) max += mc_hpack_field_max(h[i].name_len, h[i].value_len);
    if (clen) max += mc_hpack_field_max(14, clen_len);
    if (mc_conn_closed(c) || mc_buf_reserve(&c->out, 9 + max) != 0) return -1;
    size_t start = c->out.len;
    uint8_t *p = c->out.data + start + 9, *at = p;
    if (s->table_size_update) {
        /* the peer lowered SETTINGS_HEADER_TABLE_SIZE: RFC 7541, 4.2 wants the change signalled
         * before the next block's fields; our encoder keeps no table, so 0 always fits */
        *at++ = 0x20;
        s->table_size_update = false;
    }
    if (status) {
        unsigned code = mc_status_valid(status) ? (unsigned)status : 500;
        uint8_t digits[3] = {(uint8_t)('0' + code / 100), (uint8_t)('0' + code / 10 % 10), (uint8_t)('0' + code % 10)};
        at += mc_hpack_encode_field(at, (const uint8_t *)":status", 7, digits, 3);
    }
    uint8_t stack_name[128];
    for (size_t i = 0; i < nh; i++) {
        if (mc_field_connection_specific(h[i].name, h[i].name_len)) continue;
        size_t nl = h[i].name_len;
        uint8_t *lower = nl <= sizeof stack_name ? stack_name : malloc(nl);
        if (!lower) return -1;
        for (size_t j = 0; j < nl; j++) lower[j] = mc_lower((uint8_t)h[i].name[j]);
        at += mc_hpack_encode_field(at, lower, nl, (const uint8_t *)h[i].value, h[i].value_len);
        if (lower != stack_name) free(lower);
    }
    if (clen) at += mc_hpack_encode_field(at, (const uint8_t *)"content-length", 14, (const uint8_t *)clen, clen_len);
    size_t blen = (size_t)(at - p);
    size_t maxf = s->peer_max_frame;
    size_t frames = blen ? (blen + maxf - 1) / maxf : 1;
    if (frames > 1) {
        /* one block in several frames: the pieces move apart, the last first, to make room for
         * the CONTINUATION headers between them */
        if (mc_buf_reserve(&c->out, 9 + blen + 9 * frames) != 0) return -1;
        uint8_t *base = c->out.data + start;
        for (size_t k = frames - 1; k > 0; k--) {
            size_t off = k * maxf, n = blen - off < maxf ? blen - off : maxf;
            memmove(base + 9 + off + 9 * k, base + 9 + off, n);
        }
        for (size_t k = 0; k < frames; k++) {
            size_t off = k * maxf, n = blen - off < maxf ? blen - off : maxf;
            uint8_t flags = k + 1 == frames ? FL_END_HEADERS : 0;
            if (k == 0 && end_stream) flags |= FL_END_STREAM;
            put_head(base + off + 9 * k, n, k == 0 ? F_HEADERS : F_CONTINUATION, flags, id);
        }
    } else {
        put_head(c->out.data + start, blen, F_HEADERS, (uint8_t)(FL_END_HEADERS | (end_stream ? FL_END_STREAM : 0)), id);
    }
    c->out.len = start + blen + 9 * frames;
    return 0;
}

/* ---------------------------------------------------------------- streams */

static mc_request_t **bucket(mc_h2s_t *h, uint32_t id) { return &h->table[(id >> 1) & h->mask]; }

static mc_request_t *find(mc_h2s_t *h, uint32_t id) {
    for (mc_request_t *r = *bucket(h, id); r; r = r->h2.hnext)
        if ((uint32_t)r->stream_id == id) return r;
    return NULL;
}

static bool id_bit(const uint64_t *bits, uint32_t id) {
    uint32_t k = (id >> 1) % H2_ID_WINDOW;
    return bits[k / 64] >> (k % 64) & 1;
}

static void set_id_bit(uint64_t *bits, uint32_t id, bool on) {
    uint32_t k = (id >> 1) % H2_ID_WINDOW;
    if (on) bits[k / 64] |= (uint64_t)1 << (k % 64);
    else bits[k / 64] &= ~((uint64_t)1 << (k % 64));
}

static void enqueue(mc_h2s_t *h, mc_request_t *r) {
    if (r->h2.queued) return;
    r->h2.queued = true;
    h->qlen++;
    r->h2.qnext = NULL;
    if (h->qtail) h->qtail->h2.qnext = r;
    else h->qhead = r;
    h->qtail = r;
}

static void dequeue(mc_h2s_t *h, mc_request_t *r) {
    if (!r->h2.queued) return;
    mc_request_t **pp = &h->qhead, *prev = NULL;
    while (*pp && *pp != r) {
        prev = *pp;
        pp = &(*pp)->h2.qnext;
    }
    if (*pp) *pp = r->h2.qnext;
    if (h->qtail == r) h->qtail = prev;
    h->qlen--;
    r->h2.queued = false;
    r->h2.qnext = NULL;
}

/* Gives the peer back n bytes of the connection window: with WINDOW_UPDATE once half the window
 * is owed, or at once with `now`. */
static void conn_credit(mc_conn_t *c, size_t n, bool now) {
    mc_h2s_t *h = c->h2s;
    if (!h) return;
    h->recv_credit += n;
    if (!h->recv_credit || (!now && h->recv_credit < h->conn_window / 2)) return;
    put_window_update(c, 0, h->recv_credit);
    h->recv_window += (int64_t)h->recv_credit;
    h->recv_credit = 0;
    mc_loop_mark_dirty(c->loop, c);
}

static void stream_credit(mc_conn_t *c, mc_request_t *r, size_t n) {
    if (!n || r->stream_closed || r->in_ended) return; /* the peer sends nothing more on it */
    r->h2.recv_credit += n;
    if (r->h2.recv_credit < (c->h2s->stream_window + 1) / 2) return; /* once half the window is owed */
    put_window_update(c, (uint32_t)r->stream_id, r->h2.recv_credit);
    r->h2.recv_window += (int64_t)r->h2.recv_credit;
    r->h2.recv_credit = 0;
    mc_loop_mark_dirty(c->loop, c);
}

/* Body bytes the application (or the core) is done with: the peer may send as many again. */
static void consume(mc_conn_t *c, mc_request_t *r, size_t n) {
    conn_credit(c, n, false);
    if (r) stream_credit(c, r, n);
}

/* The stream is over: out of the table and the queue now, its request told at the next reap. */
static void close_stream(mc_conn_t *c, mc_request_t *r) {
    mc_h2s_t *h = c->h2s;
    if (r->stream_closed) return;
    r->stream_closed = true;
    if (h->data_stream == r) h->data_stream = NULL; /* a DATA frame still coming is dropped */
    for (mc_request_t **pp = bucket(h, (uint32_t)r->stream_id); *pp; pp = &(*pp)->h2.hnext)
        if (*pp == r) {
            *pp = r->h2.hnext;
            break;
        }
    dequeue(h, r);
    c->streams--;
    /* what the application never consumed goes back to the connection's window */
    if (r->unconsumed) conn_credit(c, r->unconsumed, false);
    r->unconsumed = 0;
    r->h2.cnext = h->reap;
    h->reap = r;
    mc_loop_mark_dirty(c->loop, c);
}

/* Tells the requests of closed streams (freed, or their handlers learn the peer is gone). */
static void reap(mc_conn_t *c) {
    mc_h2s_t *h = c->h2s;
    while (h->reap) {
        if (mc_conn_closed(c)) {
            h->reap = NULL; /* the close told them all */
            return;
        }
        mc_request_t *r = h->reap;
        h->reap = r->h2.cnext;
        r->h2.cnext = NULL;
        mc_request_abort(r); /* tells the handler if unanswered; frees otherwise */
    }
}

/* RST_STREAM for `id`. Resets the peer made this side send count against MadeYouReset. */
static void put_rst(mc_conn_t *c, uint32_t id, uint32_t code) {
    if (id <= c->h2s->max_id) set_id_bit(c->h2s->reset, id, true);
    uint8_t p[4];
    put_u32(p, code);
    put_frame(c, F_RST_STREAM, 0, id, p, 4);
    mc_loop_mark_dirty(c->loop, c);
    if (code == E_NO_ERROR || code == E_CANCEL || code == E_REFUSED_STREAM) return; /* this side's own choice */
    uint64_t now = uv_now(&c->loop->uv);
    uint64_t refill = (now - c->resets_window_at) * H2_RESETS_PER_SECOND / 1000;
    if (refill) {
        c->resets_sent = refill >= c->resets_sent ? 0 : c->resets_sent - (uint32_t)refill;
        c->resets_window_at = now;
    }
    if (++c->resets_sent > H2_RESETS_BURST && !c->h2s->fatal) {
        mc_server_log(c->server, MC_LOG_WARNING, "the peer caused more than %d stream resets; connection ended", H2_RESETS_BURST);
        connection_error(c, E_ENHANCE_YOUR_CALM, "too many resets caused");
    }
}

static void reset(mc_conn_t *c, mc_request_t *r, uint32_t code) {
    if (r->stream_closed) return;
    put_rst(c, (uint32_t)r->stream_id, code);
    close_stream(c, r);
}

/* This side has sent its END_STREAM: the stream closes if the request is over, and is reset with
 * NO_ERROR if not (answered early, as with 413: the rest of the request is not wanted). */
static void out_ended(mc_conn_t *c, mc_request_t *r) {
    r->h2.out_ended = true;
    if (r->in_ended) close_stream(c, r);
    else reset(c, r, E_NO_ERROR);
}

/* ---------------------------------------------------------------- receiving requests */

static uint64_t earliest_of(uint64_t a, uint64_t b) { return !a ? b : !b ? a : a < b ? a : b; }

static void credit(mc_conn_t *c, mc_request_t *r) {
    consume(c, r, r->server.uncredited);
    c->body_uncredited -= r->server.uncredited;
    r->server.uncredited = 0;
}

/* Credits body bytes held back by the connection's budget: all of them once the connection is
 * under it again. Over it, while no handler holds a body that its answer will free, one stream
 * (the oldest waiting) is let past the budget until it ends, so that one request can always
 * complete: memory stays bounded by the budget, the connection window and one body. */
static void credit_deferred(mc_conn_t *c) {
    if (!c->body_uncredited || !c->h2s) return;
    if (c->body_buffered <= c->server->config.max_buffered_body_bytes) {
        for (mc_request_t *r = c->reqs; r; r = r->rnext)
            if (r->server.uncredited) credit(c, r);
        mc_loop_mark_dirty(c->loop, c);
        return;
    }
    mc_request_t *exception = NULL, *oldest = NULL;
    for (mc_request_t *r = c->reqs; r; r = r->rnext) {
        if (r->server.dispatched && r->server.body_held) return; /* an answer will free memory */
        if (r->stream_id == c->body_exception) exception = r;
        if (r->server.uncredited && !r->server.dispatched && (!oldest || r->stream_id < oldest->stream_id)) oldest = r;
    }
    if (!exception) {
        if (!oldest) return;
        exception = oldest;
        c->body_exception = oldest->stream_id;
    }
    if (exception->server.uncredited) {
        credit(c, exception);
        /* over the budget, bytes held elsewhere may keep the owed credit below the half window
         * for good: the exception's is given back now, so that its stream can always go on */
        conn_credit(c, 0, true);
        mc_loop_mark_dirty(c->loop, c);
    }
}

void mc_h2_request_leaves(mc_conn_t *c, mc_request_t *r) {
    if (r->stream_id == c->body_exception) c->body_exception = 0;
    if (r->server.uncredited && !mc_conn_closed(c)) conn_credit(c, r->server.uncredited, false);
    c->body_uncredited -= r->server.uncredited < c->body_uncredited ? r->server.uncredited : c->body_uncredited;
    r->server.uncredited = 0;
    if (c->body_uncredited && !mc_conn_closed(c)) credit_deferred(c);
}

static void respond_error(mc_request_t *r, int status) {
    mc_conn_t *c = r->conn;
    char detail[128];
    if (status == 408)
        snprintf(detail, sizeof detail, "request body not received in time");
    else if (status == 413)
        snprintf(detail, sizeof detail, "request body exceeds the limit of %zu bytes", c->server->config.max_body_bytes);
    else if (status == 431)
        snprintf(detail, sizeof detail, "request headers exceed the limit of %zu bytes", c->server->config.max_header_bytes);
    else
        snprintf(detail, sizeof detail, "malformed HTTP/2 request");
    /* a gRPC caller reads its status from grpc-status, not from HTTP: answer "trailers-only" */
    for (size_t i = 0; i < mc_request_header_fields(r); i++) {
        mc_header_t h = mc_request_header(r, i);
        if (h.name_len == 12 && memcmp(h.name, "content-type", 12) == 0 && h.value_len >= 16 &&
            memcmp(h.value, "application/grpc", 16) == 0) {
            /* 8 = RESOURCE_EXHAUSTED for sizes, 13 = INTERNAL for a malformed request */
            /* 4 = DEADLINE_EXCEEDED for a body that did not come */
            const char *code = (status == 413 || status == 431) ? "8" : status == 408 ? "4" : "13";
            mc_header_t hs[3] = {
                {"content-type", 12, h.value, h.value_len},
                {"grpc-status", 11, code, strlen(code)},
                {"grpc-message", 12, detail, strlen(detail)},
            };
            mc_request_respond(r, 200, hs, 3, NULL, 0, NULL, 0);
            return;
        }
    }
    mc_buf_t body = {0};
    mc_error_body(&body, status, detail);
    mc_header_t ct = {"content-type", 12, "application/json", 16};
    mc_request_respond(r, status, &ct, 1, body.data, body.len, NULL, 0);
    mc_buf_free(&body);
}

/* Hands r to the application (or answers its core error). r may be gone when this returns. */
static void dispatch(mc_conn_t *c, mc_request_t *r) {
    r->server.dispatched = true;
    if (r->stream_id == c->body_exception) c->body_exception = 0;
    c->active++;
    if (r->server.core_status) {
        respond_error(r, r->server.core_status);
        return;
    }
    c->server->cb.on_request(c->server->cb.ctx, r);
    if (c->body_uncredited && !mc_conn_closed(c)) credit_deferred(c); /* a handler now holds a body it will free */
}

/* A request whose body is still to come becomes a stream if it says so (micro-stream) or the
 * application wants its path streamed (gRPC streaming methods). */
static bool wants_stream(mc_conn_t *c, mc_request_t *r) {
    const mc_server_callbacks_t *cb = &c->server->cb;
    if (!cb->on_body || r->server.core_status) return false;
    return r->stream_hint || (cb->is_stream && cb->is_stream(cb->ctx, r));
}

enum { P_METHOD = 1, P_SCHEME = 2, P_PATH = 4, P_AUTHORITY = 8 };

typedef struct block_ctx {
    mc_conn_t *c;
    mc_request_t *r;
    bool trailers;
    bool regular_seen;  /* a regular field came: no pseudo-field may follow */
    bool malformed;     /* RST_STREAM(PROTOCOL_ERROR), the request not handed over */
    bool abuse;         /* far past the size limit: RST_STREAM, the rest only decoded */
    bool nomem;
} block_ctx_t;

static int on_field(void *ctx, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen) {
    block_ctx_t *x = ctx;
    mc_request_t *r = x->r;
    size_t limit = x->c->server->config.max_header_bytes;
    /* the same accounting as HPACK's SETTINGS_MAX_HEADER_LIST_SIZE, over headers and trailers */
    r->field_bytes += nlen + vlen + 32;
    if (r->field_bytes > limit) {
        /* a request not yet handed over is answered 431; one already handed over (a stream whose
         * trailers are too big), or a block far past the limit, is reset */
        if (r->server.dispatched || r->field_bytes / H2_FIELD_BYTES_ABUSE > limit) {
            x->abuse = true;
            return 1;
        }
        r->server.core_status = 431;
        return 0;
    }
    if (r->server.core_status) return 0;
    if (!value_valid(value, vlen)) goto malformed;
    if (nlen && name[0] == ':') {
        if (x->trailers || x->regular_seen) goto malformed;
        unsigned bit = 0;
        if (nlen == 7 && memcmp(name, ":method", 7) == 0) bit = P_METHOD;
        else if (nlen == 5 && memcmp(name, ":path", 5) == 0) bit = P_PATH;
        else if (nlen == 7 && memcmp(name, ":scheme", 7) == 0) bit = P_SCHEME;
        else if (nlen == 10 && memcmp(name, ":authority", 10) == 0) bit = P_AUTHORITY;
        if (!bit || (r->h2.pseudo & bit)) goto malformed;
        r->h2.pseudo |= (uint8_t)bit;
        if (bit == P_METHOD) {
            r->method_off = (uint32_t)r->strings.len;
            r->method_len = (uint32_t)vlen;
            r->server.head = vlen == 4 && memcmp(value, "HEAD", 4) == 0;
            return mc_buf_append(&r->strings, value, vlen) ? (x->nomem = true, 1) : 0;
        }
        if (bit == P_PATH) {
            if (!vlen) goto malformed;
            r->path_off = (uint32_t)r->strings.len;
            r->path_len = (uint32_t)vlen;
            return mc_buf_append(&r->strings, value, vlen) ? (x->nomem = true, 1) : 0;
        }
        if (bit == P_AUTHORITY)
            return mc_request_add_header(r, "host", 4, (const char *)value, vlen) ? (x->nomem = true, 1) : 0;
        return 0;
    }
    x->regular_seen = true;
    if (!name_valid(name, nlen) || h2_connection_specific(name, nlen)) goto malformed;
    if (nlen == 14 && memcmp(name, "content-length", 14) == 0) {
        if (x->trailers) goto malformed;
        int64_t n = h2_parse_length(value, vlen);
        if (n < 0 || (r->h2.content_length >= 0 && r->h2.content_length != n)) goto malformed;
        r->h2.content_length = n;
    } else if (nlen == 2 && memcmp(name, "te", 2) == 0 && !(vlen == 8 && memcmp(value, "trailers", 8) == 0)) {
        goto malformed;
    }
    if (x->trailers) {
        /* kept apart from the headers (after trailer_index), never read for routing; a stream
         * already handed to its handler has no use for them */
        if (r->server.dispatched) return 0;
    } else if (nlen == 12 && memcmp(name, "micro-stream", 12) == 0) {
        r->stream_hint = true;
    }
    return mc_request_add_header(r, (const char *)name, nlen, (const char *)value, vlen) ? (x->nomem = true, 1) : 0;
malformed:
    x->malformed = true;
    return 1;
}

static int skip_field(void *ctx, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen) {
    (void)ctx, (void)name, (void)nlen, (void)value, (void)vlen;
    return 1;
}

/* A header block nobody reads: decoded only, to keep the table in step. False on a connection error. */
static bool skip_block(mc_conn_t *c, const uint8_t *p, size_t n) {
    if (mc_hpack_decode(&c->h2s->hpack, p, n, skip_field, NULL) == MC_HPACK_ERROR) {
        connection_error(c, E_COMPRESSION, "undecodable header block");
        return false;
    }
    return true;
}

/* The request's end (END_STREAM): its length checked, then handed over or its stream told. */
static void request_ended(mc_conn_t *c, mc_request_t *r) {
    r->in_ended = true;
    r->server.last_read = uv_now(&c->loop->uv);
    if (r->h2.content_length >= 0 && (uint64_t)r->h2.content_length != r->h2.data_len && !r->server.core_status) {
        reset(c, r, E_PROTOCOL);
        return;
    }
    if (r->streaming) {
        if (!r->server.responded && !r->server.aborted) c->server->cb.on_body(c->server->cb.ctx, r, NULL, 0, 1);
        if (r->h2.out_ended && !r->stream_closed) close_stream(c, r);
        return;
    }
    if (r->h2.out_ended) {
        if (!r->stream_closed) close_stream(c, r);
        return;
    }
    if (!r->server.dispatched) dispatch(c, r);
}

/* Trailers of an open stream. */
static void trailers_block(mc_conn_t *c, mc_request_t *r, bool end_stream, const uint8_t *p, size_t n) {
    if (r->in_ended || !end_stream) {
        /* fields after the end, or trailers that do not end the stream */
        if (skip_block(c, p, n)) reset(c, r, r->in_ended ? E_STREAM_CLOSED : E_PROTOCOL);
        return;
    }
    if (!r->in_trailers) {
        r->in_trailers = true;
        r->trailer_index = r->nhdrs + 1;
    }
    block_ctx_t x = {.c = c, .r = r, .trailers = true};
    if (mc_hpack_decode(&c->h2s->hpack, p, n, on_field, &x) == MC_HPACK_ERROR) {
        connection_error(c, E_COMPRESSION, "undecodable header block");
        return;
    }
    if (x.malformed) {
        reset(c, r, E_PROTOCOL);
        return;
    }
    if (x.abuse || x.nomem) {
        reset(c, r, E_INTERNAL);
        return;
    }
    r->server.last_read = uv_now(&c->loop->uv);
    if (!r->server.dispatched && r->server.core_status) {
        r->in_ended = true;
        dispatch(c, r);
        return;
    }
    request_ended(c, r);
}

/* A whole header block: a new stream, the trailers of an open one, or one to ignore. */
static void header_block(mc_conn_t *c, uint32_t id, bool end_stream, const uint8_t *p, size_t n) {
    mc_h2s_t *h = c->h2s;
    const mc_server_config_t *cfg = &c->server->config;
    mc_request_t *r = find(h, id);
    if (r) {
        trailers_block(c, r, end_stream, p, n);
        return;
    }
    if (id <= h->max_id) {
        /* Not open. Closed by this side's RST_STREAM: the peer may have sent this before it
         * saw the reset, and it is ignored (RFC 9113, 5.1). Closed otherwise, skipped, or too
         * far back to tell: a new stream must have a higher id (5.1.1). */
        bool recent = h->max_id - id < 2 * H2_ID_WINDOW;
        if (recent && id_bit(h->opened, id) && id_bit(h->reset, id)) {
            skip_block(c, p, n);
        } else if (recent && id_bit(h->opened, id)) {
            connection_error(c, E_STREAM_CLOSED, "HEADERS on a closed stream");
        } else {
            connection_error(c, E_PROTOCOL, "HEADERS on a stream id below the last one opened");
        }
        return;
    }
    if (id - h->max_id >= 2 * H2_ID_WINDOW) {
        memset(h->opened, 0, sizeof h->opened);
        memset(h->reset, 0, sizeof h->reset);
    } else {
        for (uint32_t skipped = h->max_id + 2; skipped < id; skipped += 2) set_id_bit(h->opened, skipped, false);
    }
    set_id_bit(h->opened, id, true);
    set_id_bit(h->reset, id, false);
    h->max_id = id;
    if (c->h2_goaway_sent) {
        /* past the last stream this side said it would process: ignored, and so is the rest */
        set_id_bit(h->reset, id, true);
        skip_block(c, p, n);
        return;
    }
    if (c->streams >= cfg->max_concurrent_streams) {
        if (skip_block(c, p, n)) put_rst(c, id, E_REFUSED_STREAM);
        return;
    }
    r = mc_request_new(c->loop, c, MC_PROTO_H2);
    if (!r) {
        if (skip_block(c, p, n)) put_rst(c, id, E_INTERNAL);
        return;
    }
    r->stream_id = (int32_t)id;
    r->server.last_read = uv_now(&c->loop->uv);
    r->h2.content_length = -1;
    r->h2.send_window = h->peer_initial_window;
    /* the peer may use the default window until it has our SETTINGS */
    r->h2.recv_window = h->stream_window > H2_DEFAULT_WINDOW ? h->stream_window : H2_DEFAULT_WINDOW;
    mc_request_t **b = bucket(h, id);
    r->h2.hnext = *b;
    *b = r;
    c->streams++;
    h->last_proc = id;
    block_ctx_t x = {.c = c, .r = r};
    if (mc_hpack_decode(&h->hpack, p, n, on_field, &x) == MC_HPACK_ERROR) {
        connection_error(c, E_COMPRESSION, "undecodable header block");
        return;
    }
    if (!x.malformed && !x.abuse && !x.nomem && !r->server.core_status) {
        /* RFC 9113, 8.3.1: :method, :scheme and :path, or a CONNECT with :authority alone */
        bool connect = r->method_len == 7 && memcmp(r->strings.data + r->method_off, "CONNECT", 7) == 0;
        unsigned want = connect ? (P_METHOD | P_AUTHORITY) : (P_METHOD | P_SCHEME | P_PATH);
        if (connect ? r->h2.pseudo != want : (r->h2.pseudo & want) != want) x.malformed = true;
    }
    if (x.malformed || x.abuse || x.nomem) {
        reset(c, r, x.malformed ? E_PROTOCOL : E_INTERNAL);
        return;
    }
    if (end_stream) {
        request_ended(c, r);
        return;
    }
    if (r->server.core_status) {
        dispatch(c, r);
        return;
    }
    if (wants_stream(c, r)) {
        r->streaming = true;
        dispatch(c, r);
    }
}

/* DATA content for r (NULL: a stream that is gone; the bytes only go back to the window). */
static void data_chunk(mc_conn_t *c, mc_request_t *r, const uint8_t *data, size_t len) {
    if (!r || r->stream_closed) {
        conn_credit(c, len, false);
        return;
    }
    r->server.last_read = uv_now(&c->loop->uv);
    r->h2.data_len += len;
    if (r->h2.content_length >= 0 && r->h2.data_len > (uint64_t)r->h2.content_length) {
        conn_credit(c, len, false);
        reset(c, r, E_PROTOCOL); /* more than its content-length said */
        return;
    }
    if (r->streaming) {
        if (r->server.responded || r->server.aborted || !c->server->cb.on_body) {
            consume(c, r, len); /* nobody reads it any more */
            return;
        }
        r->unconsumed += len; /* credited when the application has taken it */
        c->server->cb.on_body(c->server->cb.ctx, r, data, len, 0);
        return;
    }
    if (r->server.core_status || r->server.dispatched) {
        consume(c, r, len);
        return;
    }
    if (r->body.len + len > c->server->config.max_body_bytes) {
        consume(c, r, len);
        r->server.core_status = 413; /* answered when this frame ends */
        return;
    }
    if (mc_buf_append(&r->body, data, len) != 0) {
        conn_credit(c, len, false);
        reset(c, r, E_INTERNAL);
        return;
    }
    mc_conn_body_held(c, r, (ptrdiff_t)len);
    /* A whole body is gathered here. Its bytes are credited back at once while the connection
     * holds less than its budget; past it they wait, so one connection cannot make the server
     * hold 250 streams' worth of bodies that no handler has taken yet. */
    if (c->body_buffered <= c->server->config.max_buffered_body_bytes) {
        consume(c, r, len);
    } else {
        r->server.uncredited += len;
        c->body_uncredited += len;
        credit_deferred(c);
    }
}

/* The end of a DATA frame. */
static void data_ended(mc_conn_t *c, mc_request_t *r, bool end_stream) {
    if (!r || r->stream_closed) return;
    if (end_stream) {
        request_ended(c, r);
        return;
    }
    /* a core error (413 at the DATA that went past the limit) is answered now; the rest of the
     * request is then refused with RST_STREAM */
    if (r->server.core_status && !r->server.dispatched) dispatch(c, r);
}

/* ---------------------------------------------------------------- frames */

static void final_goaway(mc_conn_t *c);

static void on_settings(mc_conn_t *c, const uint8_t *p, size_t n) {
    mc_h2s_t *h = c->h2s;
    if (h->flags & FL_ACK) {
        if (n) connection_error(c, E_FRAME_SIZE, "SETTINGS ACK with a payload");
        return;
    }
    if (n % 6) {
        connection_error(c, E_FRAME_SIZE, "SETTINGS of a length not a multiple of 6");
        return;
    }
    for (size_t i = 0; i < n; i += 6) {
        unsigned id = (unsigned)p[i] << 8 | p[i + 1];
        uint32_t v = get_u32(p + i + 2);
        switch (id) {
        case S_ENABLE_PUSH:
        case S_ENABLE_CONNECT_PROTOCOL:
        case S_NO_RFC7540_PRIORITIES:
            if (v > 1) {
                connection_error(c, E_PROTOCOL, "a boolean SETTINGS value above 1");
                return;
            }
            break;
        case S_INITIAL_WINDOW_SIZE: {
            if (v > H2_WINDOW_MAX) {
                connection_error(c, E_FLOW_CONTROL, "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1");
                return;
            }
            int64_t delta = (int64_t)v - h->peer_initial_window;
            h->peer_initial_window = v;
            for (uint32_t b = 0; b <= h->mask; b++)
                for (mc_request_t *r = h->table[b]; r; r = r->h2.hnext) {
                    if (r->h2.send_window + delta > H2_WINDOW_MAX) {
                        connection_error(c, E_FLOW_CONTROL, "a stream window past 2^31-1");
                        return;
                    }
                    r->h2.send_window += delta;
                    if (delta > 0 && r->h2.send_window > 0 && mc_request_sendq_left(r)) enqueue(h, r);
                }
            break;
        }
        case S_MAX_FRAME_SIZE:
            if (v < 16384 || v > 16777215) {
                connection_error(c, E_PROTOCOL, "SETTINGS_MAX_FRAME_SIZE out of range");
                return;
            }
            h->peer_max_frame = v;
            break;
        case S_HEADER_TABLE_SIZE:
            if (v < h->enc_table) {
                h->enc_table = 0;
                h->table_size_update = true;
            }
            break;
        default: break; /* the header list size (advisory), unknown ones */
        }
    }
    h->settings_seen = true;
    put_frame(c, F_SETTINGS, FL_ACK, 0, NULL, 0);
    mc_loop_mark_dirty(c->loop, c);
}

static void on_window_update(mc_conn_t *c, const uint8_t *p, size_t n) {
    mc_h2s_t *h = c->h2s;
    if (n != 4) {
        connection_error(c, E_FRAME_SIZE, "WINDOW_UPDATE of a length other than 4");
        return;
    }
    uint32_t inc = get_u32(p) & 0x7fffffff;
    if (h->id == 0) {
        if (!inc) connection_error(c, E_PROTOCOL, "WINDOW_UPDATE of 0 for the connection");
        else if (h->send_window + inc > H2_WINDOW_MAX) connection_error(c, E_FLOW_CONTROL, "connection window past 2^31-1");
        else {
            h->send_window += inc;
            if (h->qhead) mc_loop_mark_dirty(c->loop, c);
        }
        return;
    }
    if (h->id > h->max_id) {
        connection_error(c, E_PROTOCOL, "WINDOW_UPDATE on an idle stream");
        return;
    }
    mc_request_t *r = find(h, h->id);
    if (!r) return; /* a stream already closed */
    if (!inc) reset(c, r, E_PROTOCOL);
    else if (r->h2.send_window + inc > H2_WINDOW_MAX) reset(c, r, E_FLOW_CONTROL);
    else {
        r->h2.send_window += inc;
        if (r->h2.send_window > 0 && (mc_request_sendq_left(r) || (r->out_finished && !r->h2.out_ended && r->head_sent))) {
            enqueue(h, r);
            mc_loop_mark_dirty(c->loop, c);
        }
    }
}

static void on_rst_stream(mc_conn_t *c, const uint8_t *p, size_t n) {
    mc_h2s_t *h = c->h2s;
    (void)p;
    if (n != 4) {
        connection_error(c, E_FRAME_SIZE, "RST_STREAM of a length other than 4");
        return;
    }
    if (h->id > h->max_id) {
        connection_error(c, E_PROTOCOL, "RST_STREAM on an idle stream");
        return;
    }
    /* rapid reset: a token bucket of H2_PEER_RESETS_BURST, refilled at H2_PEER_RESETS_PER_SECOND */
    uint64_t now = uv_now(&c->loop->uv);
    uint64_t refill = (now - h->peer_resets_at) * H2_PEER_RESETS_PER_SECOND / 1000;
    if (refill) {
        h->peer_resets = refill >= h->peer_resets ? 0 : h->peer_resets - (uint32_t)refill;
        h->peer_resets_at = now;
    }
    if (++h->peer_resets > H2_PEER_RESETS_BURST) {
        mc_server_log(c->server, MC_LOG_WARNING, "the peer reset more than %d streams; connection ended", H2_PEER_RESETS_BURST);
        connection_error(c, E_ENHANCE_YOUR_CALM, "rapid reset");
        return;
    }
    mc_request_t *r = find(h, h->id);
    if (r) close_stream(c, r);
}

static void on_ping(mc_conn_t *c, const uint8_t *p, size_t n) {
    mc_h2s_t *h = c->h2s;
    if (n != 8) {
        connection_error(c, E_FRAME_SIZE, "PING of a length other than 8");
        return;
    }
    if (h->flags & FL_ACK) {
        /* the peer has seen the shutdown notice (its PING answer came after it): the final GOAWAY */
        if (c->h2_notice_sent && !c->h2_goaway_sent) final_goaway(c);
        return;
    }
    put_frame(c, F_PING, FL_ACK, 0, p, 8);
    mc_loop_mark_dirty(c->loop, c);
}

/* HEADERS: its fragment on its own, or the first piece of a block. */
static void on_headers(mc_conn_t *c, const uint8_t *p, size_t n) {
    mc_h2s_t *h = c->h2s;
    size_t pad = 0;
    if (h->flags & FL_PADDED) {
        if (n < 1) goto bad;
        pad = p[0];
        p++;
        n--;
    }
    if (h->flags & FL_PRIORITY) {
        if (n < 5) goto bad;
        p += 5;
        n -= 5;
    }
    if (pad > n) goto bad;
    n -= pad;
    bool end_stream = (h->flags & FL_END_STREAM) != 0;
    if (h->flags & FL_END_HEADERS) {
        header_block(c, h->id, end_stream, p, n);
        return;
    }
    h->block.len = 0;
    if (mc_buf_append(&h->block, p, n) != 0) {
        out_failed(c);
        return;
    }
    h->block_stream = h->id;
    h->block_end_stream = end_stream;
    h->continuations = 0;
    return;
bad:
    connection_error(c, E_PROTOCOL, "HEADERS padding or priority past its payload");
}

static void on_continuation(mc_conn_t *c, const uint8_t *p, size_t n) {
    mc_h2s_t *h = c->h2s;
    if (++h->continuations > H2_MAX_CONTINUATIONS) {
        connection_error(c, E_ENHANCE_YOUR_CALM, "a header block in too many CONTINUATION frames");
        return;
    }
    if (mc_buf_append(&h->block, p, n) != 0) {
        out_failed(c);
        return;
    }
    if (!(h->flags & FL_END_HEADERS)) return;
    uint32_t id = h->block_stream;
    h->block_stream = 0;
    header_block(c, id, h->block_end_stream, h->block.data, h->block.len);
    if (!mc_conn_closed(c)) mc_buf_reset(&h->block, 64 * 1024);
}

/* A whole frame other than DATA. */
static void on_frame(mc_conn_t *c, const uint8_t *p, size_t n) {
    mc_h2s_t *h = c->h2s;
    switch (h->type) {
    case F_HEADERS: on_headers(c, p, n); break;
    case F_CONTINUATION: on_continuation(c, p, n); break;
    case F_SETTINGS: on_settings(c, p, n); break;
    case F_WINDOW_UPDATE: on_window_update(c, p, n); break;
    case F_RST_STREAM: on_rst_stream(c, p, n); break;
    case F_PING: on_ping(c, p, n); break;
    case F_GOAWAY:
        if (n < 8) connection_error(c, E_FRAME_SIZE, "GOAWAY shorter than 8 bytes");
        else h->goaway_recv = true;
        break;
    case F_PRIORITY:
        if (n != 5) {
            /* a stream error; on an idle stream, which no RST_STREAM may name, the connection's */
            mc_request_t *r = find(h, h->id);
            if (r) reset(c, r, E_FRAME_SIZE);
            else if (h->id > h->max_id) connection_error(c, E_FRAME_SIZE, "PRIORITY of a length other than 5");
            else put_rst(c, h->id, E_FRAME_SIZE);
        }
        break;
    default: break;
    }
}

/* A frame header is in: checks what can be checked before its payload, and says how to read it. */
static void begin_frame(mc_conn_t *c) {
    mc_h2s_t *h = c->h2s;
    const uint8_t *p = h->head;
    h->len = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
    h->type = p[3];
    h->flags = p[4];
    h->id = get_u32(p + 5) & 0x7fffffff;
    h->in = IN_PAYLOAD;
    h->payload.len = 0;
    if (h->len > H2_FRAME_MAX) {
        connection_error(c, E_FRAME_SIZE, "a frame larger than SETTINGS_MAX_FRAME_SIZE");
        return;
    }
    if (!h->settings_seen && (h->type != F_SETTINGS || (h->flags & FL_ACK))) {
        connection_error(c, E_PROTOCOL, "the client preface is not followed by SETTINGS");
        return;
    }
    if (h->block_stream && (h->type != F_CONTINUATION || h->id != h->block_stream)) {
        connection_error(c, E_PROTOCOL, "a header block interrupted");
        return;
    }
    switch (h->type) {
    case F_DATA:
    case F_RST_STREAM:
    case F_WINDOW_UPDATE:
        if (h->id && !(h->id & 1)) {
            connection_error(c, E_PROTOCOL, "a frame on an even stream, which only this side could open");
            return;
        }
        if (h->type == F_RST_STREAM && !h->id) {
            connection_error(c, E_PROTOCOL, "RST_STREAM on stream 0");
            return;
        }
        if (h->type != F_DATA) return;
        break;
    case F_HEADERS:
        if (!h->id || !(h->id & 1)) connection_error(c, E_PROTOCOL, "HEADERS on stream 0 or an even stream");
        return;
    case F_CONTINUATION:
        if (!h->block_stream) connection_error(c, E_PROTOCOL, "CONTINUATION without HEADERS");
        return;
    case F_SETTINGS:
    case F_PING:
    case F_GOAWAY:
        if (h->id) connection_error(c, E_PROTOCOL, "a connection frame on a stream");
        return;
    case F_PRIORITY:
        if (!h->id) connection_error(c, E_PROTOCOL, "a stream frame on stream 0");
        return;
    case F_PUSH_PROMISE: connection_error(c, E_PROTOCOL, "PUSH_PROMISE from a client"); return;
    default:
        h->in = IN_SKIP; /* unknown types are ignored */
        h->skip_left = h->len;
        return;
    }
    /* DATA: flow control counts the whole payload, padding included */
    if (!h->id) {
        connection_error(c, E_PROTOCOL, "DATA on stream 0");
        return;
    }
    if (h->len > h->recv_window) {
        connection_error(c, E_FLOW_CONTROL, "DATA past the connection window");
        return;
    }
    h->recv_window -= h->len;
    mc_request_t *r = find(h, h->id);
    if (!r && h->id > h->max_id) {
        connection_error(c, E_PROTOCOL, "DATA on an idle stream");
        return;
    }
    if (r && r->in_ended) {
        reset(c, r, E_STREAM_CLOSED);
        r = NULL;
    } else if (r && h->len > r->h2.recv_window) {
        reset(c, r, E_FLOW_CONTROL);
        r = NULL;
    }
    if (r) r->h2.recv_window -= h->len;
    h->data_stream = r;
    h->skip_left = 0;
    if (h->flags & FL_PADDED) {
        if (!h->len) {
            connection_error(c, E_PROTOCOL, "padded DATA without its pad length");
            return;
        }
        h->in = IN_PAD_LENGTH;
        return;
    }
    h->data_left = h->len;
    h->in = IN_DATA;
    if (!h->len) {
        h->in = IN_HEAD;
        data_ended(c, r, (h->flags & FL_END_STREAM) != 0);
    }
}

int mc_h2_feed(mc_conn_t *c, const uint8_t *p, size_t n) {
    mc_h2s_t *h = c->h2s;
    /* set again before each frame's end is handled; until then (a streamed body's chunks, the
     * application called from them) answers wait for the flush */
    c->feed_follows = true;
    while (n && !h->fatal && !mc_conn_closed(c)) {
        switch (h->in) {
        case IN_PREFACE: {
            size_t k = MC_H2_PREFACE_LEN - h->preface_seen;
            if (k > n) k = n;
            if (memcmp(p, &MC_H2_PREFACE[h->preface_seen], k) != 0) {
                connection_error(c, E_PROTOCOL, "a broken client preface");
                break;
            }
            h->preface_seen += k;
            p += k;
            n -= k;
            if (h->preface_seen == MC_H2_PREFACE_LEN) h->in = IN_HEAD;
            break;
        }
        case IN_HEAD: {
            if (h->head_len == 0 && n >= 9) {
                memcpy(h->head, p, 9);
                p += 9;
                n -= 9;
            } else {
                size_t k = 9 - h->head_len;
                if (k > n) k = n;
                memcpy(h->head + h->head_len, p, k);
                h->head_len += k;
                p += k;
                n -= k;
                if (h->head_len < 9) break;
            }
            h->head_len = 0;
            begin_frame(c);
            if (h->in == IN_PAYLOAD && h->len == 0 && !h->fatal) {
                h->in = IN_HEAD;
                c->feed_follows = n != 0;
                on_frame(c, p, 0);
            }
            break;
        }
        case IN_PAYLOAD: {
            if (h->payload.len == 0 && n >= h->len) {
                /* the whole payload is here: no copy */
                const uint8_t *f = p;
                p += h->len;
                n -= h->len;
                h->in = IN_HEAD;
                c->feed_follows = n != 0;
                on_frame(c, f, h->len);
                break;
            }
            size_t k = h->len - h->payload.len;
            if (k > n) k = n;
            if (mc_buf_append(&h->payload, p, k) != 0) return -1;
            p += k;
            n -= k;
            if (h->payload.len < h->len) break;
            h->in = IN_HEAD;
            c->feed_follows = n != 0;
            on_frame(c, h->payload.data, h->len);
            if (!mc_conn_closed(c)) mc_buf_reset(&h->payload, H2_FRAME_MAX + 9);
            break;
        }
        case IN_PAD_LENGTH: {
            size_t pad = p[0];
            p++;
            n--;
            if (pad >= h->len) {
                connection_error(c, E_PROTOCOL, "DATA padding past its payload");
                break;
            }
            /* the pad length and the padding are consumed at once */
            consume(c, h->data_stream && !h->data_stream->stream_closed ? h->data_stream : NULL, 1 + pad);
            h->data_left = h->len - 1 - pad;
            h->skip_left = pad;
            h->in = IN_DATA;
            if (!h->data_left && !h->skip_left) {
                h->in = IN_HEAD;
                c->feed_follows = n != 0;
                data_ended(c, h->data_stream, (h->flags & FL_END_STREAM) != 0);
            }
            break;
        }
        case IN_DATA: {
            size_t k = h->data_left < n ? h->data_left : n;
            if (k) {
                data_chunk(c, h->data_stream, p, k);
                p += k;
                n -= k;
                h->data_left -= k;
            }
            if (h->data_left) break;
            size_t s = h->skip_left < n ? h->skip_left : n;
            p += s;
            n -= s;
            h->skip_left -= s;
            if (h->skip_left) {
                h->in = IN_SKIP; /* DATA's padding: the frame ends after it */
                break;
            }
            h->in = IN_HEAD;
            c->feed_follows = n != 0;
            if (!mc_conn_closed(c)) data_ended(c, h->data_stream, (h->flags & FL_END_STREAM) != 0);
            break;
        }
        case IN_SKIP: {
            size_t k = h->skip_left < n ? h->skip_left : n;
            p += k;
            n -= k;
            h->skip_left -= k;
            if (h->skip_left) break;
            h->in = IN_HEAD;
            if (h->type == F_DATA) {
                c->feed_follows = n != 0;
                data_ended(c, h->data_stream, (h->flags & FL_END_STREAM) != 0);
            }
            break;
        }
        }
    }
    if (mc_conn_closed(c)) return 0;
    reap(c);
    if (!mc_conn_closed(c)) mc_loop_mark_dirty(c->loop, c);
    return 0;
}

/* ---------------------------------------------------------------- answers */

/* The trailers stored in r (mc_h2_store_trailers) as fields. */
static size_t stored_trailers(const mc_request_t *r, mc_header_t *out, size_t max) {
    size_t k = 0, off = 0;
    const uint8_t *t = r->trailer_strings.data;
    while (k < r->ntrailers && k < max) {
        uint32_t nl, vl;
        memcpy(&nl, t + off, 4);
        out[k].name = (const char *)t + off + 4;
        out[k].name_len = nl;
        off += 4 + nl;
        memcpy(&vl, t + off, 4);
        out[k].value = (const char *)t + off + 4;
        out[k].value_len = vl;
        off += 4 + vl;
        k++;
    }
    return k;
}

/* The end of an answer: its trailers (ending the stream) or an empty END_STREAM DATA. */
static int put_end(mc_conn_t *c, mc_request_t *r) {
    if (r->ntrailers) {
        mc_header_t t[64];
        size_t nt = stored_trailers(r, t, 64);
        if (put_fields(c, (uint32_t)r->stream_id, true, 0, t, nt, NULL) != 0) return -1;
    } else {
        put_frame(c, F_DATA, FL_END_STREAM, (uint32_t)r->stream_id, NULL, 0);
    }
    out_ended(c, r);
    return 0;
}

static int cannot_answer(mc_conn_t *c, mc_request_t *r);

/* Sends what r has queued, as far as the windows allow (at most `quantum` bytes). */
static void send_queued(mc_conn_t *c, mc_request_t *r, size_t quantum) {
    mc_h2s_t *h = c->h2s;
    size_t sent = 0;
    while (mc_request_sendq_left(r) && h->send_window > 0 && r->h2.send_window > 0 && sent < quantum) {
        size_t left = mc_request_sendq_left(r), n = left;
        if ((int64_t)n > h->send_window) n = (size_t)h->send_window;
        if ((int64_t)n > r->h2.send_window) n = (size_t)r->h2.send_window;
        if (n > h->peer_max_frame) n = h->peer_max_frame;
        bool last = n == left && r->out_finished && !r->ntrailers;
        put_frame(c, F_DATA, last ? FL_END_STREAM : 0, (uint32_t)r->stream_id, r->sendq.data + r->sendq_off, n);
        if (mc_conn_closed(c)) return;
        r->sendq_off += n;
        h->send_window -= (int64_t)n;
        r->h2.send_window -= (int64_t)n;
        sent += n;
        r->last_sent = uv_now(&c->loop->uv);
        if (last) {
            r->sendq.len = r->sendq_off = 0;
            out_ended(c, r);
            return;
        }
    }
    if (r->sendq_off == r->sendq.len) r->sendq.len = r->sendq_off = 0;
    if (r->want_writable && mc_request_sendq_left(r) < MC_STREAM_LOW_WATER) {
        mc_stream_notify_writable(r); /* may write more (queueing r again), finish or close it */
        if (mc_conn_closed(c) || r->stream_closed || r->h2.queued) return;
    }
    if (!mc_request_sendq_left(r)) {
        if (r->out_finished && !r->h2.out_ended && put_end(c, r) != 0) cannot_answer(c, r);
        return;
    }
    if (r->h2.send_window > 0) enqueue(h, r); /* its turn again once the others had theirs (or the
                                                 connection's window opens) */
}

int mc_h2_pump(mc_conn_t *c) {
    mc_h2s_t *h = c->h2s;
    if (!h) return 0;
    reap(c);
    if (mc_conn_closed(c) || h->nomem) return -1;
    /* passes over the queue while they move something: a stream blocked by the connection's
     * window goes back to the end, one that needs no window (trailers, an empty END_STREAM)
     * still goes out */
    while (h->qhead && c->out.len < H2_OUT_CAP) {
        size_t before = c->out.len, turns = h->qlen;
        while (turns-- && h->qhead && c->out.len < H2_OUT_CAP) {
            mc_request_t *r = h->qhead;
            h->qhead = r->h2.qnext;
            if (!h->qhead) h->qtail = NULL;
            h->qlen--;
            r->h2.queued = false;
            r->h2.qnext = NULL;
            if (!r->stream_closed) send_queued(c, r, H2_QUANTUM);
            if (mc_conn_closed(c) || h->nomem) return -1;
        }
        if (c->out.len == before) break;
    }
    reap(c);
    if (mc_conn_closed(c) || h->nomem) return -1;
    if (h->goaway_recv && !c->h2_goaway_sent && !c->streams && !c->active) {
        /* the client is leaving and nothing is in flight: our GOAWAY before the close (6.8) */
        c->h2_goaway_sent = true;
        put_goaway(c, h->last_proc, E_NO_ERROR, NULL);
    }
    return h->qhead && c->out.len >= H2_OUT_CAP ? 1 : 0;
}

/* Writes the answer's DATA straight from its pieces: all of it fits the windows. */
static void put_body(mc_conn_t *c, mc_request_t *r, mc_body_t b, bool end_stream) {
    mc_h2s_t *h = c->h2s;
    size_t total = b.prefix_len + b.len, done = 0, maxf = h->peer_max_frame;
    if (mc_buf_reserve(&c->out, total + 9 * (total / maxf + 1)) != 0) {
        out_failed(c);
        return;
    }
    while (done < total) {
        size_t n = total - done < maxf ? total - done : maxf;
        uint8_t *p = c->out.data + c->out.len;
        put_head(p, n, F_DATA, done + n == total && end_stream ? FL_END_STREAM : 0, (uint32_t)r->stream_id);
        p += 9;
        size_t from_prefix = done < b.prefix_len ? b.prefix_len - done : 0;
        if (from_prefix > n) from_prefix = n;
        if (from_prefix) memcpy(p, b.prefix + done, from_prefix);
        if (n > from_prefix) memcpy(p + from_prefix, b.data + (done + from_prefix - b.prefix_len), n - from_prefix);
        c->out.len += 9 + n;
        done += n;
    }
    h->send_window -= (int64_t)total;
    r->h2.send_window -= (int64_t)total;
}

int mc_h2_store_trailers(mc_request_t *r, const mc_header_t *t, size_t nt) {
    int rc = 0;
    r->trailer_strings.len = 0;
    r->ntrailers = 0;
    for (size_t i = 0; i < nt && rc == 0 && r->ntrailers < 64; i++) {
        if (!mc_field_valid(&t[i]) || mc_field_connection_specific(t[i].name, t[i].name_len)) continue;
        uint32_t nl = (uint32_t)t[i].name_len, vl = (uint32_t)t[i].value_len;
        rc |= mc_buf_append(&r->trailer_strings, &nl, 4);
        size_t at = r->trailer_strings.len;
        rc |= mc_buf_append(&r->trailer_strings, t[i].name, nl);
        for (size_t j = 0; rc == 0 && j < nl; j++)
            r->trailer_strings.data[at + j] = mc_lower(r->trailer_strings.data[at + j]);
        rc |= mc_buf_append(&r->trailer_strings, &vl, 4);
        rc |= mc_buf_append(&r->trailer_strings, t[i].value, vl);
        r->ntrailers++;
    }
    return rc;
}

/* The stream cannot be answered (gone, or out of memory): reset it; -1. */
static int cannot_answer(mc_conn_t *c, mc_request_t *r) {
    if (!mc_conn_closed(c)) reset(c, r, E_INTERNAL);
    return -1;
}

int mc_h2_respond(mc_request_t *r, int status, const mc_header_t *h, size_t nh, mc_body_t body,
                  const mc_header_t *t, size_t nt) {
    mc_conn_t *c = r->conn;
    mc_h2s_t *s = c->h2s;
    if (!s || r->stream_closed || r->h2.out_ended) return -1;
    if (r->head_sent) return cannot_answer(c, r); /* a streamed answer has its HEADERS already */
    mc_loop_mark_dirty(c->loop, c);
    size_t len = body.prefix_len + body.len;
    char clen[24];
    mc_format_decimal(clen, len);
    r->last_sent = uv_now(&r->loop->uv);
    if (r->server.head) body = (mc_body_t){0};
    size_t send = body.prefix_len + body.len;
    /* trailers that can go out at once need no copy; valid ones only, as mc_h2_store_trailers */
    size_t valid = 0;
    for (size_t i = 0; i < nt && valid < 64; i++)
        if (mc_field_valid(&t[i]) && !mc_field_connection_specific(t[i].name, t[i].name_len)) valid++;
    bool with_data = send > 0 || valid > 0;
    if (put_fields(c, (uint32_t)r->stream_id, !with_data, status, h, nh, !r->server.head || len ? clen : NULL) != 0)
        return cannot_answer(c, r);
    if (!with_data) {
        out_ended(c, r);
        return 0;
    }
    if ((int64_t)send <= s->send_window && (int64_t)send <= r->h2.send_window && !s->qhead) {
        put_body(c, r, body, valid == 0);
        if (mc_conn_closed(c)) return -1;
        if (valid) {
            int rc = valid == nt ? put_fields(c, (uint32_t)r->stream_id, true, 0, t, nt, NULL)
                                 : (mc_h2_store_trailers(r, t, nt) != 0 ? -1 : 0);
            if (rc == 0 && valid != nt) {
                mc_header_t st[64];
                size_t k = stored_trailers(r, st, 64);
                rc = put_fields(c, (uint32_t)r->stream_id, true, 0, st, k, NULL);
            }
            if (rc != 0) return cannot_answer(c, r);
        }
        out_ended(c, r);
        return 0;
    }
    /* the peer's windows hold it back: queued, sent as they open */
    r->sendq.len = 0;
    r->sendq_off = 0;
    int rc = mc_buf_append(&r->sendq, body.prefix, body.prefix_len);
    if (rc == 0) rc = mc_buf_append(&r->sendq, body.data, body.len);
    if (rc == 0) rc = mc_h2_store_trailers(r, t, nt);
    if (rc != 0) return cannot_answer(c, r);
    r->out_finished = true;
    r->head_sent = true;
    enqueue(s, r);
    return 0;
}

int mc_h2_send_head(mc_request_t *r, int status, const mc_header_t *h, size_t nh) {
    mc_conn_t *c = r->conn;
    if (!c->h2s || r->stream_closed || r->h2.out_ended) return -1;
    r->sendq.len = 0;
    r->sendq_off = 0;
    if (put_fields(c, (uint32_t)r->stream_id, false, status, h, nh, NULL) != 0) return cannot_answer(c, r);
    mc_loop_mark_dirty(c->loop, c);
    return 0;
}

void mc_h2_stream_ready(mc_request_t *r) {
    mc_conn_t *c = r->conn;
    if (!c || !c->h2s || r->stream_closed) return;
    enqueue(c->h2s, r);
    mc_loop_mark_dirty(c->loop, c);
}

void mc_h2_stream_reset(mc_request_t *r) {
    mc_conn_t *c = r->conn;
    if (!c || !c->h2s || mc_conn_closed(c)) return;
    reset(c, r, E_INTERNAL);
}

void mc_h2_consume(mc_request_t *r, size_t len) {
    mc_conn_t *c = r->conn;
    if (!c || !c->h2s || mc_conn_closed(c)) return;
    consume(c, r, len);
}

/* ---------------------------------------------------------------- the connection */

int mc_h2_init(mc_conn_t *c) {
    const mc_server_config_t *cfg = &c->server->config;
    mc_h2s_t *h = calloc(1, sizeof *h);
    if (!h) return -1;
    uint32_t buckets = 16;
    while (buckets < cfg->max_concurrent_streams && buckets < 1024) buckets *= 2;
    h->table = calloc(buckets, sizeof *h->table);
    if (!h->table) {
        free(h);
        return -1;
    }
    h->mask = buckets - 1;
    mc_hpack_decoder_init(&h->hpack, MC_HPACK_DEFAULT_TABLE);
    h->in = IN_PREFACE;
    h->send_window = H2_DEFAULT_WINDOW;
    /* windows as HTTP/2 can carry them: 1 to 2^31-1 */
    h->conn_window = cfg->connection_window > H2_DEFAULT_WINDOW ? cfg->connection_window : H2_DEFAULT_WINDOW;
    if (h->conn_window > H2_WINDOW_MAX) h->conn_window = H2_WINDOW_MAX;
    h->stream_window = cfg->stream_window < 1 ? 1 : cfg->stream_window > H2_WINDOW_MAX ? H2_WINDOW_MAX : cfg->stream_window;
    h->recv_window = H2_DEFAULT_WINDOW;
    h->peer_initial_window = H2_DEFAULT_WINDOW;
    h->peer_max_frame = 16384;
    h->enc_table = MC_HPACK_DEFAULT_TABLE;
    c->h2s = h;
    /* our SETTINGS: the client's view of our limits */
    uint8_t s[4 * 6];
    const struct { uint16_t id; uint32_t v; } iv[] = {
        {S_MAX_CONCURRENT_STREAMS, cfg->max_concurrent_streams},
        {S_INITIAL_WINDOW_SIZE, h->stream_window},
        {S_MAX_HEADER_LIST_SIZE, (uint32_t)cfg->max_header_bytes},
        {S_NO_RFC7540_PRIORITIES, 1},
    };
    for (size_t i = 0; i < 4; i++) {
        s[i * 6] = (uint8_t)(iv[i].id >> 8);
        s[i * 6 + 1] = (uint8_t)iv[i].id;
        put_u32(s + i * 6 + 2, iv[i].v);
    }
    put_frame(c, F_SETTINGS, 0, 0, s, sizeof s);
    if (h->conn_window > H2_DEFAULT_WINDOW) {
        put_window_update(c, 0, h->conn_window - H2_DEFAULT_WINDOW);
        h->recv_window = (int64_t)h->conn_window;
    }
    return mc_conn_closed(c) ? -1 : 0;
}

/* Server shutdown: a GOAWAY notice (no new streams, please) now, the final GOAWAY after an
 * acknowledged PING or the grace. */
static void shutdown_gracefully(mc_conn_t *c) {
    mc_conn_enter(c, MC_CONN_DRAINING);
    if (!c->h2s || c->h2_notice_sent || c->h2_goaway_sent) return;
    /* RFC 9113, 6.8: first a GOAWAY with the highest stream id (stop opening streams), then,
     * once the peer has answered a PING sent after it (or after the grace), the final GOAWAY
     * with the last stream this side will process; requests the peer sent meanwhile are served */
    c->h2_notice_sent = true;
    put_goaway(c, 0x7fffffff, E_NO_ERROR, NULL);
    static const uint8_t opaque[8] = {0};
    put_frame(c, F_PING, 0, 0, opaque, 8);
    c->close_at = uv_now(&c->loop->uv) + 1000;
    mc_conn_update_timer(c);
}

static void final_goaway(mc_conn_t *c) {
    mc_conn_enter(c, MC_CONN_DRAINING);
    if (!c->h2s || c->h2_goaway_sent) return;
    c->h2_goaway_sent = true;
    c->close_at = 0;
    put_goaway(c, c->h2s->last_proc, E_NO_ERROR, NULL);
}

/* The idle timeout: GOAWAY(NO_ERROR); the connection closes after the grace. */
static bool goaway_idle(mc_conn_t *c) {
    if (!c->h2s || c->h2_goaway_sent) return true;
    c->h2_goaway_sent = true;
    put_goaway(c, c->h2s->last_proc, E_NO_ERROR, "idle");
    return true;
}

/* The grace after a shutdown notice is over: the final GOAWAY, and the streams open finish. */
static bool grace_over(mc_conn_t *c) {
    if (!c->h2_notice_sent || c->h2_goaway_sent) return false;
    final_goaway(c);
    return true;
}

/* Ends the streams stalled past the read or write timeout; returns when to look again (0: no
 * stream is waiting). */
static uint64_t check_streams(mc_conn_t *c, uint64_t now) {
    const mc_server_config_t *cfg = &c->server->config;
    uint64_t next = 0;
    mc_request_t *r = c->reqs, *rnext;
    for (; r; r = rnext) {
        rnext = r->rnext; /* answering or resetting may take r off the list */
        if (r->stream_closed) continue;
        uint64_t due = 0;
        bool stalled = false;
        if (!r->in_ended && cfg->read_timeout_ms) {
            /* the peer has not sent the rest of its request */
            due = r->server.last_read + cfg->read_timeout_ms;
            if (now >= due) {
                stalled = true;
                if (!r->server.dispatched) {
                    r->server.core_status = 408;
                    dispatch(c, r); /* answered 408; the rest of the request is refused */
                    if (mc_conn_closed(c)) return 0;
                    continue;
                }
            }
        }
        /* answered and the stream still open with its request complete: output is waiting */
        bool sending = (r->server.responded && r->in_ended) || (r->streaming && r->head_sent && mc_request_sendq_left(r));
        if (!stalled && sending && cfg->write_timeout_ms) {
            /* an answer waits for the peer's flow-control window, which does not open */
            if (!r->last_sent) r->last_sent = now;
            uint64_t wdue = r->last_sent + cfg->write_timeout_ms;
            if (now >= wdue) stalled = true;
            else due = earliest_of(due, wdue);
        }
        if (stalled) {
            reset(c, r, E_CANCEL);
            continue;
        }
        next = earliest_of(next, due);
    }
    return next;
}

static bool done(mc_conn_t *c) {
    mc_h2s_t *h = c->h2s;
    if (!h || h->fatal) return true;
    if (c->streams || c->active || h->qhead || h->reap) return false;
    return c->h2_goaway_sent;
}

static void h2_free(mc_conn_t *c) {
    mc_h2s_t *h = c->h2s;
    if (!h) return;
    mc_hpack_decoder_free(&h->hpack);
    mc_buf_free(&h->payload);
    mc_buf_free(&h->block);
    free(h->table);
    free(h);
    c->h2s = NULL;
}

const mc_proto_ops_t mc_h2_proto = {
    .proto = MC_PROTO_H2,
    .feed = mc_h2_feed,
    .pump = mc_h2_pump,
    .input_full = mc_proto_never, /* its own output is c->out's, which pauses reading past its mark */
    .done = done,
    .eof = mc_proto_no_eof,
    .header_timeout = mc_conn_close, /* not armed once the preface is in */
    .read_timeout = mc_conn_close,   /* per stream instead (check_streams) */
    .check_streams = check_streams,
    .idle = goaway_idle,
    .grace_over = grace_over,
    .shutdown = shutdown_gracefully,
    .free = h2_free,
};
