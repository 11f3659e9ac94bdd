/*
 * HTTP/2, client side: the core's own framing (RFC 9113) and HPACK (hpack.c), as the server's
 * (h2.c). A client needs less still than a server: it opens every stream itself, in order, so a
 * stream id it never opened is an error and one below its latest is a stream it closed; it sends
 * no trailers; and its answers arrive whole more often than not.
 *
 * A call is its request (mc_request_t). mc_h2c_submit encodes its header block at once (the
 * caller's strings live only during the call) and puts it on the connection's waiting list; the
 * pump, just before each write, opens the waiting calls in order while the server's
 * SETTINGS_MAX_CONCURRENT_STREAMS allows (HEADERS, then DATA as the windows allow; a call is
 * "sent" from then on). Stream ids are given at submission, so they rise in the order the
 * streams open; a call cancelled while it waits never opens, and its id is skipped.
 *
 * A stream closes when both sides have ended, or with RST_STREAM either way; closing takes it out
 * of the table at once (frames for it are ignored from then on) and puts it on the connection's
 * closed list, whose calls are completed (mc_client_finish_call: the caller's callback) at the
 * end of the input pass or at the next pump, never from inside a frame that still uses them, nor
 * from inside a caller's mc_client_cancel.
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

#define H2C_FRAME_MAX 16384               /* our SETTINGS_MAX_FRAME_SIZE: the default */
#define H2C_STREAM_WINDOW (1024 * 1024)     /* our SETTINGS_INITIAL_WINDOW_SIZE */
#define H2C_CONN_WINDOW (16 * 1024 * 1024)  /* the connection window, opened at the start */
#define H2C_DEFAULT_WINDOW 65535
#define H2C_WINDOW_MAX 0x7fffffff
#define H2C_MAX_CONTINUATIONS 8             /* a block in more pieces ends the connection */
#define H2C_OUT_CAP (1024 * 1024)           /* the pump adds no DATA past this much queued output */
/* Output the server makes us produce by itself (SETTINGS and PING acknowledgements, window
 * updates): past this much queued, nothing more is read until the server takes some. */
#define H2C_OUT_FULL (2 * 1024 * 1024)
#define H2C_BUCKETS 64

static const uint8_t preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

typedef struct mc_h2c {
    mc_hpack_decoder_t hpack;
    mc_buf_t in;              /* the start of a frame not yet whole */
    bool settings_seen;       /* the server's first SETTINGS (its preface) arrived */
    bool fatal;               /* a connection error: nothing more is read or sent but GOAWAY */
    bool nomem;

    /* a header block in pieces (HEADERS without END_HEADERS, then CONTINUATION) */
    mc_buf_t block;
    uint32_t block_stream;    /* 0: none open */
    bool block_end_stream;
    unsigned continuations;

    /* the server's settings */
    uint32_t peer_max_frame;
    uint32_t peer_max_streams; /* 100 until the server's SETTINGS say (RFC 9113 6.5.2 suggests it) */
    int64_t peer_initial_window;
    bool table_size_update;   /* the next header block starts with a table size update to 0 */
    uint32_t enc_table;       /* the table size the server's decoder assumes of our encoder */

    int64_t send_window;      /* the connection's: what the server lets us send */
    int64_t recv_window;      /* what the server may still send */
    size_t recv_credit;       /* consumed, not yet given back */

    uint32_t next_id;         /* the id the next submitted call gets */
    uint32_t last_opened;     /* the highest id whose HEADERS went out */
    uint32_t goaway_last;     /* the server's GOAWAY: the last stream it may process */
    bool goaway_recv;
    unsigned open;            /* streams open (HEADERS sent, not closed) */

    mc_request_t *table[H2C_BUCKETS]; /* open streams, by id (r->h2.hnext) */
    mc_request_t *wait_head, *wait_tail; /* calls submitted, not opened yet (r->h2.qnext) */
    mc_request_t *send_head, *send_tail; /* open streams with DATA to send (r->h2.qnext) */
    mc_request_t *closed, *closed_tail; /* closed streams whose calls are yet to complete, oldest
                                         * first (r->h2.cnext) */
} mc_h2c_t;

/* ---------------------------------------------------------------- output */

static void out_failed(mc_conn_t *c) {
    c->h2c->fatal = c->h2c->nomem = true;
    mc_conn_enter(c, MC_CONN_ENDING);
    mc_loop_mark_dirty(c->loop, c);
}

static void put_frame(mc_conn_t *c, uint8_t type, uint8_t flags, uint32_t id, const uint8_t *payload, size_t len) {
    if (mc_conn_closed(c) || c->h2c->nomem) return;
    if (h2_append_frame(&c->out, type, flags, id, payload, len) != 0) {
        out_failed(c);
        return;
    }
    mc_loop_mark_dirty(c->loop, c);
}

static void put_window_update(mc_conn_t *c, uint32_t id, size_t n) {
    uint8_t p[4];
    put_u32(p, (uint32_t)n);
    put_frame(c, F_WINDOW_UPDATE, 0, id, p, 4);
}

/* A connection error: GOAWAY with the code; nothing more is read, and the connection closes once
 * its output is out (the calls in flight then end as broken). */
static void connection_error(mc_conn_t *c, uint32_t code, const char *why) {
    mc_h2c_t *h = c->h2c;
    if (h->fatal || mc_conn_closed(c)) return;
    uint8_t p[8];
    put_u32(p, 0); /* a server opens no stream we would have processed */
    put_u32(p + 4, code);
    put_frame(c, F_GOAWAY, 0, 0, p, sizeof p);
    h->fatal = true;
    c->h2_goaway_sent = true;
    /* what the first bytes said (an HTTP/1.x answer, a TLS alert) explains it better */
    if (!c->client->error[0]) snprintf(c->client->error, sizeof c->client->error, "the server broke HTTP/2: %s", why);
    mc_conn_enter(c, MC_CONN_ENDING);
    mc_loop_mark_dirty(c->loop, c);
}

/* ---------------------------------------------------------------- streams */

static mc_request_t **bucket(mc_h2c_t *h, uint32_t id) { return &h->table[(id >> 1) % H2C_BUCKETS]; }

static mc_request_t *find(mc_h2c_t *h, uint32_t id) {
    for (mc_request_t *r = *bucket(h, id); r; r = r->h2.hnext)
        if ((uint32_t)r->stream_id == id) return r;
    return NULL;
}

/* Takes r out of a list linked through qnext; true if it was there. */
static bool unlist(mc_request_t **head, mc_request_t **tail, mc_request_t *r) {
    mc_request_t *prev = NULL;
    for (mc_request_t *x = *head; x; prev = x, x = x->h2.qnext) {
        if (x != r) continue;
        if (prev) prev->h2.qnext = r->h2.qnext;
        else *head = r->h2.qnext;
        if (*tail == r) *tail = prev;
        r->h2.qnext = NULL;
        return true;
    }
    return false;
}

static void append(mc_request_t **head, mc_request_t **tail, mc_request_t *r) {
    r->h2.qnext = NULL;
    if (*tail) (*tail)->h2.qnext = r;
    else *head = r;
    *tail = r;
}

/* Takes r out of the table and the send queue (not the closed list). */
static void untable(mc_h2c_t *h, mc_request_t *r) {
    for (mc_request_t **p = bucket(h, (uint32_t)r->stream_id); *p; p = &(*p)->h2.hnext) {
        if (*p != r) continue;
        *p = r->h2.hnext;
        r->h2.hnext = NULL;
        h->open--;
        break;
    }
    if (r->h2.queued) {
        unlist(&h->send_head, &h->send_tail, r);
        r->h2.queued = false;
    }
}

/* The stream ends (code: how, as RST_STREAM says it); its call completes at the next reap. */
static void conn_credit(mc_conn_t *c, size_t n);

/* Takes r out of the wait list (not opened yet) or the stream table and send queue. */
static void unlink_call(mc_h2c_t *h, mc_request_t *r) {
    if (r->client.sent) untable(h, r);
    else unlist(&h->wait_head, &h->wait_tail, r);
}

static void close_stream(mc_conn_t *c, mc_request_t *r, uint32_t code) {
    mc_h2c_t *h = c->h2c;
    if (r->stream_closed) return;
    r->stream_closed = true;
    if (c->streams) c->streams--;
    unlink_call(h, r);
    /* what the application never took goes back to the connection */
    if (r->unconsumed) conn_credit(c, r->unconsumed);
    r->unconsumed = 0;
    r->h2.close_code = code;
    r->h2.cnext = NULL;
    if (h->closed_tail) h->closed_tail->h2.cnext = r;
    else h->closed = r;
    h->closed_tail = r;
    mc_loop_mark_dirty(c->loop, c);
}

static void reset(mc_conn_t *c, mc_request_t *r, uint32_t code) {
    if (r->stream_closed) return;
    if (r->client.sent) {
        uint8_t p[4];
        put_u32(p, code);
        put_frame(c, F_RST_STREAM, 0, (uint32_t)r->stream_id, p, 4);
    }
    close_stream(c, r, code);
}

/* Completes the calls of the closed streams (their callbacks may close the connection). */
static void reap(mc_conn_t *c) {
    mc_h2c_t *h = c->h2c;
    while (h->closed && !mc_conn_closed(c)) {
        mc_request_t *r = h->closed;
        h->closed = r->h2.cnext;
        if (!h->closed) h->closed_tail = NULL;
        r->h2.cnext = NULL;
        int result;
        uint32_t code = r->h2.close_code;
        if (code == E_NO_ERROR && r->client.status >= 200 && r->in_ended) result = MC_CALL_OK;
        else if (code == E_REFUSED_STREAM || !r->client.sent) result = MC_CALL_REFUSED;
        else result = MC_CALL_RESET;
        mc_client_finish_call(r, result);
    }
}

void mc_h2c_forget(mc_conn_t *c, mc_request_t *r) {
    mc_h2c_t *h = c->h2c;
    if (!h) return;
    if (!r->stream_closed) {
        unlink_call(h, r);
        r->stream_closed = true;
        if (c->streams) c->streams--;
        return;
    }
    mc_request_t *prev = NULL;
    for (mc_request_t *x = h->closed; x; prev = x, x = x->h2.cnext) {
        if (x != r) continue;
        if (prev) prev->h2.cnext = r->h2.cnext;
        else h->closed = r->h2.cnext;
        if (h->closed_tail == r) h->closed_tail = prev;
        r->h2.cnext = NULL;
        return;
    }
}

/* Gives consumed bytes back to the server: the connection's once half its window is used, a
 * stream's likewise (a whole answer's stream ends long before). */
static void conn_credit(mc_conn_t *c, size_t n) {
    mc_h2c_t *h = c->h2c;
    h->recv_credit += n;
    if (h->recv_credit >= H2C_CONN_WINDOW / 2) {
        put_window_update(c, 0, h->recv_credit);
        h->recv_window += (int64_t)h->recv_credit;
        h->recv_credit = 0;
    }
}

static void stream_credit(mc_conn_t *c, mc_request_t *r, size_t n) {
    r->h2.recv_credit += n;
    if (r->h2.recv_credit >= H2C_STREAM_WINDOW / 2 && !r->in_ended && !r->stream_closed) {
        put_window_update(c, (uint32_t)r->stream_id, r->h2.recv_credit);
        r->h2.recv_window += (int64_t)r->h2.recv_credit;
        r->h2.recv_credit = 0;
    }
}

/* ---------------------------------------------------------------- sending */

/* DATA from r's queue while both windows and the output cap allow; END_STREAM with the last of
 * it once the body is complete. True if the stream has nothing it could not send.
 *
 * A streamed call's writer is told when its queue drops below the low mark, after the frames: its
 * callback may write (queueing r again), cancel calls or close the connection, so a caller looks
 * at the connection, and at r, before using them again. */
static bool send_data(mc_conn_t *c, mc_request_t *r) {
    mc_h2c_t *h = c->h2c;
    bool whole = !r->streaming; /* a call's body is complete when submitted */
    bool sent_all = true;
    for (;;) {
        if (r->h2.out_ended || r->stream_closed || h->fatal || mc_conn_closed(c)) break;
        size_t left = mc_request_sendq_left(r);
        bool last = whole || r->out_finished;
        if (left == 0 && !last) {
            r->sendq.len = r->sendq_off = 0;
            break; /* a stream waits for its writer */
        }
        size_t n = left;
        if (n) {
            int64_t w = h->send_window < r->h2.send_window ? h->send_window : r->h2.send_window;
            if (w <= 0 || c->out.len >= H2C_OUT_CAP) {
                sent_all = false;
                break;
            }
            if ((int64_t)n > w) n = (size_t)w;
            if (n > h->peer_max_frame) n = h->peer_max_frame;
        }
        bool end = last && n == left;
        put_frame(c, F_DATA, end ? FL_END_STREAM : 0, (uint32_t)r->stream_id, r->sendq.data + r->sendq_off, n);
        if (h->nomem) break;
        r->sendq_off += n;
        h->send_window -= (int64_t)n;
        r->h2.send_window -= (int64_t)n;
        if (n) r->last_sent = uv_now(&c->loop->uv);
        if (end) {
            r->h2.out_ended = true;
            r->sendq.len = r->sendq_off = 0;
            if (r->in_ended) close_stream(c, r, E_NO_ERROR);
            break;
        }
    }
    if (r->streaming && r->want_writable && !r->stream_closed && !mc_conn_closed(c) && mc_request_sendq_left(r) < MC_STREAM_LOW_WATER)
        mc_stream_notify_writable(r);
    return sent_all;
}

static void queue_send(mc_h2c_t *h, mc_request_t *r) {
    if (r->h2.queued || r->stream_closed || r->h2.out_ended) return;
    r->h2.queued = true;
    append(&h->send_head, &h->send_tail, r);
}

/* One pass over the streams queued now, oldest first: each sends what it can, and one still
 * blocked goes to the back of the queue for the next pass (each flush makes one). */
static void send_queued(mc_conn_t *c) {
    mc_h2c_t *h = c->h2c;
    size_t pass = 0; /* the streams queued now: those queued during the pass wait for the next */
    for (mc_request_t *r = h->send_head; r; r = r->h2.qnext) pass++;
    while (pass-- && h->send_head && !h->fatal && c->out.len < H2C_OUT_CAP) {
        mc_request_t *r = h->send_head;
        unlist(&h->send_head, &h->send_tail, r);
        r->h2.queued = false;
        bool done = send_data(c, r);
        if (mc_conn_closed(c)) return; /* every call was aborted: r may be gone */
        if (!done) queue_send(h, r);  /* unless its writer queued it again already */
    }
}

/* HEADERS (and CONTINUATION past the server's frame size) of r's encoded block: the stream opens. */
static void open_stream(mc_conn_t *c, mc_request_t *r) {
    mc_h2c_t *h = c->h2c;
    size_t blen = r->head_block.len;
    const uint8_t *block = r->head_block.data;
    bool end_stream = !r->streaming && r->sendq.len == 0;
    size_t maxf = h->peer_max_frame;
    uint8_t update = 0x20; /* a table size update to 0, when the server lowered its table */
    size_t extra = h->table_size_update ? 1 : 0;
    size_t total = blen + extra;
    size_t frames = total ? (total + maxf - 1) / maxf : 1;
    if (mc_buf_reserve(&c->out, total + 9 * frames) != 0) {
        out_failed(c);
        return;
    }
    uint8_t *out = c->out.data + c->out.len;
    for (size_t k = 0, off = 0; k < frames; k++) {
        size_t n = total - off < maxf ? total - off : maxf;
        uint8_t flags = k + 1 == frames ? FL_END_HEADERS : 0;
        if (k == 0 && end_stream) flags |= FL_END_STREAM;
        put_head(out, n, k == 0 ? F_HEADERS : F_CONTINUATION, flags, (uint32_t)r->stream_id);
        out += 9;
        size_t from = off;
        if (from == 0 && extra) {
            *out++ = update;
            from = 1;
        }
        size_t bytes = off + n - from;
        memcpy(out, block + (from - extra), bytes);
        out += bytes;
        off += n;
    }
    c->out.len += total + 9 * frames;
    h->table_size_update = false;
    mc_buf_reset(&r->head_block, 4096);
    r->client.sent = true;
    r->h2.out_ended = end_stream;
    r->h2.send_window = h->peer_initial_window;
    r->h2.recv_window = H2C_STREAM_WINDOW;
    r->h2.content_length = -1;
    r->h2.data_len = 0;
    mc_request_t **b = bucket(h, (uint32_t)r->stream_id);
    r->h2.hnext = *b;
    *b = r;
    h->open++;
    h->last_opened = (uint32_t)r->stream_id;
    if (end_stream) return;
    bool done = send_data(c, r);
    if (!mc_conn_closed(c) && !done) queue_send(h, r);
}

/* Opens the waiting calls, in order, while the server takes more streams. */
static void open_waiting(mc_conn_t *c) {
    mc_h2c_t *h = c->h2c;
    while (h->wait_head && h->open < h->peer_max_streams && !h->fatal && !mc_conn_closed(c) && c->out.len < H2C_OUT_CAP) {
        mc_request_t *r = h->wait_head;
        unlist(&h->wait_head, &h->wait_tail, r);
        open_stream(c, r);
    }
}

int mc_h2c_pump(mc_conn_t *c) {
    mc_h2c_t *h = c->h2c;
    if (!h) return 0;
    reap(c);
    if (mc_conn_closed(c) || h->nomem) return -1; /* a callback closed it: nothing to write */
    if (!h->fatal) {
        send_queued(c);
        if (!mc_conn_closed(c)) open_waiting(c);
        if (!mc_conn_closed(c)) reap(c); /* streams that ended with what was just sent */
        if (mc_conn_closed(c)) return -1;
    }
    if (h->nomem) return -1;
    return c->out.len >= H2C_OUT_CAP && (h->send_head || h->wait_head) ? 1 : 0;
}

/* ---------------------------------------------------------------- the calls */

/* Encodes r's header block into r->head_block: the pseudo-fields, then the fields (names lowered,
 * the connection-specific ones left out). */
static int encode_head(mc_conn_t *c, mc_request_t *r, const char *method, const char *path, const mc_header_t *hs, size_t nh) {
    size_t mlen = strlen(method), plen = strlen(path);
    const char *scheme = c->tls ? "https" : "http";
    size_t slen = c->tls ? 5 : 4;
    size_t max = mc_hpack_field_max(7, mlen) + mc_hpack_field_max(7, slen) + mc_hpack_field_max(10, c->client->authority_len) +
                 mc_hpack_field_max(5, plen);
    for (size_t i = 0; i < nh; i++) max += mc_hpack_field_max(hs[i].name_len, hs[i].value_len);
    mc_buf_t *b = &r->head_block;
    b->len = 0;
    if (mc_buf_reserve(b, max) != 0) return -1;
    uint8_t *at = b->data;
    at += mc_hpack_encode_field(at, (const uint8_t *)":method", 7, (const uint8_t *)method, mlen);
    at += mc_hpack_encode_field(at, (const uint8_t *)":scheme", 7, (const uint8_t *)scheme, slen);
    at += mc_hpack_encode_field(at, (const uint8_t *)":authority", 10, (const uint8_t *)c->client->authority, c->client->authority_len);
    at += mc_hpack_encode_field(at, (const uint8_t *)":path", 5, (const uint8_t *)path, plen);
    uint8_t stack_name[128];
    for (size_t i = 0; i < nh; i++) {
        if (mc_field_connection_specific(hs[i].name, hs[i].name_len)) continue;
        size_t nl = hs[i].name_len;
        uint8_t *lower = nl <= sizeof stack_name ? stack_name : malloc(nl);
        if (!lower) return -1;
        for (size_t j = 0; j < nl; j++) lower[j] = mc_lower((uint8_t)hs[i].name[j]);
        at += mc_hpack_encode_field(at, lower, nl, (const uint8_t *)hs[i].value, hs[i].value_len);
        if (lower != stack_name) free(lower);
    }
    b->len = (size_t)(at - b->data);
    return 0;
}

bool mc_h2c_usable(const mc_conn_t *c) {
    const mc_h2c_t *h = c->h2c;
    return h && !h->fatal && !h->goaway_recv && h->next_id <= H2C_WINDOW_MAX;
}

int mc_h2c_submit(mc_conn_t *c, mc_request_t *r, const char *method, const char *path, const mc_header_t *hs, size_t nh) {
    mc_h2c_t *h = c->h2c;
    if (!mc_h2c_usable(c) || encode_head(c, r, method, path, hs, nh) != 0) return -1;
    r->client.head_request = strcmp(method, "HEAD") == 0;
    r->stream_id = (int32_t)h->next_id;
    h->next_id += 2;
    c->streams++;
    append(&h->wait_head, &h->wait_tail, r);
    mc_loop_mark_dirty(c->loop, c);
    return 0;
}

mc_request_t *mc_h2c_find(mc_conn_t *c, int32_t id) {
    mc_h2c_t *h = c->h2c;
    if (!h || id <= 0) return NULL;
    mc_request_t *r = find(h, (uint32_t)id);
    if (r) return r;
    for (r = h->wait_head; r; r = r->h2.qnext)
        if (r->stream_id == id) return r;
    return NULL;
}

void mc_h2c_reset(mc_conn_t *c, mc_request_t *r, uint32_t code) {
    if (!c->h2c) return;
    reset(c, r, code);
}

void mc_h2c_stream_ready(mc_request_t *r) {
    mc_conn_t *c = r->conn;
    if (!c || !c->h2c || !r->client.sent) return; /* a stream not open yet sends when it opens */
    queue_send(c->h2c, r);
    mc_loop_mark_dirty(c->loop, c);
}

void mc_h2c_consume(mc_request_t *r, size_t len) {
    mc_conn_t *c = r->conn;
    if (!c || !c->h2c) return;
    stream_credit(c, r, len);
    conn_credit(c, len);
}

/* ---------------------------------------------------------------- input */

typedef struct {
    mc_conn_t *c;
    mc_request_t *r;
    bool trailers;     /* the block follows the final answer's */
    bool regular_seen; /* a regular field came: no pseudo-field may follow */
    bool malformed;
} block_ctx_t;

static int on_field(void *ctx, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen) {
    block_ctx_t *x = ctx;
    mc_request_t *r = x->r;
    /* a server could expand a 16 KiB frame into hundreds of MiB of fields through HPACK's table:
     * past the budget the call ends, and the rest of the block is only decoded */
    r->field_bytes += nlen + vlen + 32;
    if (r->field_bytes > MC_CLIENT_MAX_FIELD_BYTES) {
        r->client.fields_too_large = true;
        return 1;
    }
    if (!value_valid(value, vlen)) goto malformed;
    if (nlen && name[0] == ':') {
        if (x->trailers || x->regular_seen) goto malformed;
        if (nlen == 7 && memcmp(name, ":status", 7) == 0) {
            if (vlen != 3 || r->client.status_seen) goto malformed;
            int status = 0;
            for (size_t i = 0; i < 3; i++) {
                if (value[i] < '0' || value[i] > '9') goto malformed;
                status = status * 10 + (value[i] - '0');
            }
            if (status < 100 || status == 101) goto malformed; /* HTTP/2 has no 101 (RFC 9113, 8.6) */
            r->client.status_seen = true;
            if (status >= 200) r->client.status = status;
            r->client.interim = status < 200; /* a 1xx interim answer: its fields are skipped */
            return 0;
        }
        goto malformed; /* no other pseudo-field belongs in an answer */
    }
    if (!name_valid(name, nlen) || h2_connection_specific(name, nlen)) goto malformed;
    x->regular_seen = true;
    if (!x->trailers && !r->client.status_seen) goto malformed; /* :status must come first */
    if (r->client.interim) return 0;
    if (!x->trailers && nlen == 14 && memcmp(name, "content-length", 14) == 0) {
        /* the DATA must match it (RFC 9113, 8.1.1) */
        int64_t length = h2_parse_length(value, vlen);
        if (length < 0 || (r->h2.content_length >= 0 && r->h2.content_length != length)) goto malformed;
        r->h2.content_length = length;
    }
    if (mc_request_add_header(r, (const char *)name, nlen, (const char *)value, vlen) != 0) {
        r->client.fields_too_large = true; /* out of memory for them: the call cannot be read */
        return 1;
    }
    return 0;
malformed:
    x->malformed = true;
    return 1;
}

static int skip_field(void *ctx, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen) {
    (void)ctx, (void)name, (void)nlen, (void)value, (void)vlen;
    return 1;
}

/* The server ended its side of r's stream: the answer is whole if its length is right. */
static void end_of_answer(mc_conn_t *c, mc_request_t *r) {
    if (r->h2.content_length >= 0 && r->h2.data_len != (uint64_t)r->h2.content_length) {
        reset(c, r, E_PROTOCOL); /* fewer bytes than its content-length said */
        return;
    }
    r->in_ended = true;
    if (r->h2.out_ended) close_stream(c, r, E_NO_ERROR);
}

/* A whole header block for stream id (the table must be kept in step even when no call wants it). */
static void header_block(mc_conn_t *c, uint32_t id, bool end_stream, const uint8_t *p, size_t n) {
    mc_h2c_t *h = c->h2c;
    mc_request_t *r = find(h, id);
    if (!r || r->in_ended) {
        if (mc_hpack_decode(&h->hpack, p, n, skip_field, NULL) == MC_HPACK_ERROR)
            connection_error(c, E_COMPRESSION, "a header block HPACK cannot decode");
        else if (r) reset(c, r, E_STREAM_CLOSED); /* fields after the server ended the stream */
        return;
    }
    block_ctx_t x = {.c = c, .r = r, .trailers = r->trailer_index != 0};
    r->client.status_seen = false;
    int rc = mc_hpack_decode(&h->hpack, p, n, on_field, &x);
    if (rc == MC_HPACK_ERROR) {
        connection_error(c, E_COMPRESSION, "a header block HPACK cannot decode");
        return;
    }
    if (r->client.fields_too_large) {
        reset(c, r, E_CANCEL);
        return;
    }
    /* a block without :status, trailers without END_STREAM, an interim answer ending the stream */
    if (x.malformed || (!x.trailers && !r->client.status_seen) || (x.trailers && !end_stream) ||
        (r->client.interim && end_stream)) {
        reset(c, r, E_PROTOCOL);
        return;
    }
    if (!x.trailers && !r->client.interim) {
        /* the end of the final answer's fields: fields after it are trailers */
        r->trailer_index = r->nhdrs + 1;
        /* an answer that has no content may still say how long it would be (RFC 9113, 8.1.1) */
        if (r->client.head_request || r->client.status == 204 || r->client.status == 304) r->h2.content_length = -1;
        if (r->streaming && r->client.scb.on_head) r->client.scb.on_head(r->client.done_ctx, r);
        if (mc_conn_closed(c) || r->stream_closed) return;
    }
    r->client.interim = false;
    if (end_stream) end_of_answer(c, r);
}

/* A frame for a stream id this side never opened: an error; one it closed: nothing to do. */
static bool stream_known(mc_conn_t *c, uint32_t id) {
    mc_h2c_t *h = c->h2c;
    if ((id & 1) == 0 || id > h->last_opened) {
        connection_error(c, E_PROTOCOL, "a frame on a stream this client never opened");
        return false;
    }
    return true;
}

/* A PADDED frame's content (RFC 9113, 6.1 and 6.2): false, a connection error, if the padding
 * does not fit. */
static bool unpad(mc_conn_t *c, const uint8_t **p, size_t *n) {
    if (*n < 1 || (*p)[0] >= *n) {
        connection_error(c, E_PROTOCOL, "more padding than payload");
        return false;
    }
    *n = *n - 1 - (*p)[0];
    (*p)++;
    return true;
}

static void on_data(mc_conn_t *c, uint32_t id, uint8_t flags, const uint8_t *p, size_t n) {
    mc_h2c_t *h = c->h2c;
    if (id == 0) {
        connection_error(c, E_PROTOCOL, "DATA on stream 0");
        return;
    }
    if (!stream_known(c, id)) return;
    size_t frame = n; /* padding counts against the windows too */
    if ((flags & FL_PADDED) && !unpad(c, &p, &n)) return;
    h->recv_window -= (int64_t)frame;
    if (h->recv_window < 0) {
        connection_error(c, E_FLOW_CONTROL, "DATA past the connection window");
        return;
    }
    mc_request_t *r = find(h, id);
    if (!r || r->in_ended) {
        conn_credit(c, frame); /* a stream this side closed: the bytes are dropped */
        if (r) reset(c, r, E_STREAM_CLOSED);
        return;
    }
    r->h2.recv_window -= (int64_t)frame;
    if (r->h2.recv_window < 0) {
        conn_credit(c, frame);
        reset(c, r, E_FLOW_CONTROL);
        return;
    }
    if (r->trailer_index == 0 || r->client.status < 200) {
        conn_credit(c, frame);
        reset(c, r, E_PROTOCOL); /* a body before the answer's fields */
        return;
    }
    r->h2.data_len += n;
    if (r->h2.content_length >= 0 && r->h2.data_len > (uint64_t)r->h2.content_length) {
        conn_credit(c, frame);
        reset(c, r, E_PROTOCOL); /* more DATA than its content-length */
        return;
    }
    size_t padding = frame - n;
    if (r->streaming) {
        /* credited when the application has taken it; the padding at once */
        if (padding) {
            conn_credit(c, padding);
            stream_credit(c, r, padding);
        }
        r->unconsumed += n;
        if (n && r->client.scb.on_data) r->client.scb.on_data(r->client.done_ctx, p, n);
        if (mc_conn_closed(c) || r->stream_closed) return;
    } else {
        conn_credit(c, frame);
        stream_credit(c, r, frame);
        if (r->body.len + n > c->client->max_response_bytes) {
            r->client.too_large = true;
            reset(c, r, E_CANCEL);
            return;
        }
        if (mc_buf_append(&r->body, p, n) != 0) {
            reset(c, r, E_INTERNAL);
            return;
        }
    }
    if (flags & FL_END_STREAM) end_of_answer(c, r);
}

static void on_headers(mc_conn_t *c, uint32_t id, uint8_t flags, const uint8_t *p, size_t n) {
    mc_h2c_t *h = c->h2c;
    if (id == 0) {
        connection_error(c, E_PROTOCOL, "HEADERS on stream 0");
        return;
    }
    if (!stream_known(c, id)) return;
    if ((flags & FL_PADDED) && !unpad(c, &p, &n)) return;
    if (flags & FL_PRIORITY) {
        if (n < 5) {
            connection_error(c, E_FRAME_SIZE, "HEADERS too short for its priority");
            return;
        }
        p += 5;
        n -= 5;
    }
    bool end_stream = flags & FL_END_STREAM;
    if (flags & FL_END_HEADERS) {
        header_block(c, id, end_stream, p, n);
        return;
    }
    h->block.len = 0;
    if (mc_buf_append(&h->block, p, n) != 0) {
        connection_error(c, E_INTERNAL, "out of memory");
        return;
    }
    h->block_stream = id;
    h->block_end_stream = end_stream;
    h->continuations = 0;
}

static void on_continuation(mc_conn_t *c, uint32_t id, uint8_t flags, const uint8_t *p, size_t n) {
    mc_h2c_t *h = c->h2c;
    if (++h->continuations > H2C_MAX_CONTINUATIONS) {
        connection_error(c, E_ENHANCE_YOUR_CALM, "a header block in too many pieces");
        return;
    }
    if (mc_buf_append(&h->block, p, n) != 0) {
        connection_error(c, E_INTERNAL, "out of memory");
        return;
    }
    if (!(flags & FL_END_HEADERS)) return;
    h->block_stream = 0;
    header_block(c, id, h->block_end_stream, h->block.data, h->block.len);
    mc_buf_reset(&h->block, 64 * 1024);
}

static void on_rst_stream(mc_conn_t *c, uint32_t id, const uint8_t *p, size_t n) {
    if (n != 4) {
        connection_error(c, E_FRAME_SIZE, "RST_STREAM of a wrong size");
        return;
    }
    if (id == 0) {
        connection_error(c, E_PROTOCOL, "RST_STREAM on stream 0");
        return;
    }
    if (!stream_known(c, id)) return;
    mc_request_t *r = find(c->h2c, id);
    if (r) close_stream(c, r, get_u32(p));
}

static void on_settings(mc_conn_t *c, uint32_t id, uint8_t flags, const uint8_t *p, size_t n) {
    mc_h2c_t *h = c->h2c;
    if (id != 0) {
        connection_error(c, E_PROTOCOL, "SETTINGS on a stream");
        return;
    }
    if (flags & FL_ACK) {
        if (n) connection_error(c, E_FRAME_SIZE, "a SETTINGS acknowledgement with a payload");
        return;
    }
    if (n % 6) {
        connection_error(c, E_FRAME_SIZE, "SETTINGS of a wrong size");
        return;
    }
    if (!h->settings_seen) h->peer_max_streams = UINT32_MAX; /* the server's preface: no limit unless it says */
    for (size_t i = 0; i < n; i += 6) {
        uint16_t key = (uint16_t)(p[i] << 8 | p[i + 1]);
        uint32_t v = get_u32(p + i + 2);
        switch (key) {
        case S_HEADER_TABLE_SIZE:
            /* our encoder keeps no table; a size below what the server's decoder assumes of it must
             * still be announced before the next block (RFC 7541, 4.2) */
            if (v < h->enc_table) h->table_size_update = true;
            h->enc_table = v;
            break;
        case S_ENABLE_PUSH:
            if (v != 0) { /* a server never sets it (RFC 9113, 6.5.2) */
                connection_error(c, E_PROTOCOL, "SETTINGS_ENABLE_PUSH from a server");
                return;
            }
            break;
        case S_MAX_CONCURRENT_STREAMS: h->peer_max_streams = v; break;
        case S_INITIAL_WINDOW_SIZE: {
            if (v > H2C_WINDOW_MAX) {
                connection_error(c, E_FLOW_CONTROL, "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1");
                return;
            }
            int64_t delta = (int64_t)v - h->peer_initial_window;
            h->peer_initial_window = v;
            for (size_t b = 0; b < H2C_BUCKETS; b++) {
                for (mc_request_t *r = h->table[b]; r; r = r->h2.hnext) {
                    r->h2.send_window += delta;
                    if (r->h2.send_window > H2C_WINDOW_MAX) {
                        connection_error(c, E_FLOW_CONTROL, "a stream window past 2^31-1");
                        return;
                    }
                    if (delta > 0 && mc_request_sendq_left(r)) queue_send(h, r);
                }
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
        default: break; /* unknown or advisory (MAX_HEADER_LIST_SIZE): ignored */
        }
    }
    put_frame(c, F_SETTINGS, FL_ACK, 0, NULL, 0);
    if (!h->settings_seen) {
        h->settings_seen = true;
        if (c->tls && !c->client->connected) {
            /* TLS: the server's first frame; its verdict on our certificate came before it */
            c->client->connected = true;
            if (c->client->cb.on_connected) c->client->cb.on_connected(c->client->cb.ctx, 0, "");
        }
    }
}

static void on_ping(mc_conn_t *c, uint32_t id, uint8_t flags, const uint8_t *p, size_t n) {
    if (n != 8) {
        connection_error(c, E_FRAME_SIZE, "PING of a wrong size");
        return;
    }
    if (id != 0) {
        connection_error(c, E_PROTOCOL, "PING on a stream");
        return;
    }
    if (!(flags & FL_ACK)) put_frame(c, F_PING, FL_ACK, 0, p, 8);
}

static void on_goaway(mc_conn_t *c, uint32_t id, const uint8_t *p, size_t n) {
    mc_h2c_t *h = c->h2c;
    if (id != 0 || n < 8) {
        connection_error(c, id ? E_PROTOCOL : E_FRAME_SIZE, "a malformed GOAWAY");
        return;
    }
    uint32_t last = get_u32(p) & 0x7fffffff;
    if (h->goaway_recv && last > h->goaway_last) last = h->goaway_last; /* it may only go down */
    h->goaway_recv = true;
    h->goaway_last = last;
    /* the calls above it were not processed: refused, safe to make elsewhere */
    while (h->wait_head) close_stream(c, h->wait_head, E_REFUSED_STREAM);
    for (size_t b = 0; b < H2C_BUCKETS; b++) {
        mc_request_t *r = h->table[b];
        while (r) {
            mc_request_t *next = r->h2.hnext;
            if ((uint32_t)r->stream_id > last) close_stream(c, r, E_REFUSED_STREAM);
            r = next;
        }
    }
    if (!c->client->goaway) {
        c->client->goaway = true;
        if (c->client->cb.on_goaway) c->client->cb.on_goaway(c->client->cb.ctx);
    }
    mc_loop_mark_dirty(c->loop, c);
}

static void on_window_update(mc_conn_t *c, uint32_t id, const uint8_t *p, size_t n) {
    mc_h2c_t *h = c->h2c;
    if (n != 4) {
        connection_error(c, E_FRAME_SIZE, "WINDOW_UPDATE of a wrong size");
        return;
    }
    uint32_t inc = get_u32(p) & 0x7fffffff;
    if (id == 0) {
        if (inc == 0) {
            connection_error(c, E_PROTOCOL, "a WINDOW_UPDATE of 0");
            return;
        }
        h->send_window += inc;
        if (h->send_window > H2C_WINDOW_MAX) connection_error(c, E_FLOW_CONTROL, "the connection window past 2^31-1");
        mc_loop_mark_dirty(c->loop, c);
        return;
    }
    if (!stream_known(c, id)) return;
    mc_request_t *r = find(h, id);
    if (!r) return;
    if (inc == 0) {
        reset(c, r, E_PROTOCOL);
        return;
    }
    r->h2.send_window += inc;
    if (r->h2.send_window > H2C_WINDOW_MAX) {
        reset(c, r, E_FLOW_CONTROL);
        return;
    }
    if (mc_request_sendq_left(r) || (r->out_finished && !r->h2.out_ended)) queue_send(h, r);
    mc_loop_mark_dirty(c->loop, c);
}

static void on_frame(mc_conn_t *c, uint8_t type, uint8_t flags, uint32_t id, const uint8_t *p, size_t n) {
    mc_h2c_t *h = c->h2c;
    if (h->block_stream && (type != F_CONTINUATION || id != h->block_stream)) {
        connection_error(c, E_PROTOCOL, "a frame inside a header block");
        return;
    }
    if (!h->settings_seen && (type != F_SETTINGS || (flags & FL_ACK))) {
        connection_error(c, E_PROTOCOL, "the server's first frame is not SETTINGS");
        return;
    }
    switch (type) {
    case F_DATA: on_data(c, id, flags, p, n); break;
    case F_HEADERS: on_headers(c, id, flags, p, n); break;
    case F_PRIORITY:
        if (id == 0) connection_error(c, E_PROTOCOL, "PRIORITY on stream 0");
        else if (n != 5) connection_error(c, E_FRAME_SIZE, "PRIORITY of a wrong size");
        break;
    case F_RST_STREAM: on_rst_stream(c, id, p, n); break;
    case F_SETTINGS: on_settings(c, id, flags, p, n); break;
    case F_PUSH_PROMISE: connection_error(c, E_PROTOCOL, "PUSH_PROMISE, which this client disabled"); break;
    case F_PING: on_ping(c, id, flags, p, n); break;
    case F_GOAWAY: on_goaway(c, id, p, n); break;
    case F_WINDOW_UPDATE: on_window_update(c, id, p, n); break;
    case F_CONTINUATION:
        if (!h->block_stream) connection_error(c, E_PROTOCOL, "CONTINUATION without a header block");
        else on_continuation(c, id, flags, p, n);
        break;
    default: break; /* unknown frame types are ignored */
    }
}

/* Reads the whole frames at p; returns the bytes taken (the rest is the start of a frame). */
static size_t frames(mc_conn_t *c, const uint8_t *p, size_t n) {
    mc_h2c_t *h = c->h2c;
    size_t at = 0;
    while (n - at >= 9 && !h->fatal && !mc_conn_closed(c)) {
        const uint8_t *f = p + at;
        size_t len = (size_t)f[0] << 16 | (size_t)f[1] << 8 | f[2];
        if (len > H2C_FRAME_MAX) {
            connection_error(c, E_FRAME_SIZE, "a frame larger than SETTINGS_MAX_FRAME_SIZE");
            break;
        }
        if (n - at < 9 + len) break;
        on_frame(c, f[3], f[4], get_u32(f + 5) & 0x7fffffff, f + 9, len);
        at += 9 + len;
        if (!mc_conn_closed(c)) reap(c);
    }
    return at;
}

int mc_h2c_feed(mc_conn_t *c, const uint8_t *p, size_t n) {
    mc_h2c_t *h = c->h2c;
    if (!h || h->fatal) return 0; /* nothing more is read after a connection error */
    /* a frame begun in an earlier read: only the bytes that complete it are copied */
    while (h->in.len && !h->fatal) {
        size_t want = 9; /* its header, then its payload (a header too large: frames() says so) */
        if (h->in.len >= 9) {
            size_t len = (size_t)h->in.data[0] << 16 | (size_t)h->in.data[1] << 8 | h->in.data[2];
            if (len <= H2C_FRAME_MAX) want = 9 + len;
        }
        if (h->in.len < want) {
            if (!n) break;
            size_t take = want - h->in.len < n ? want - h->in.len : n;
            if (mc_buf_append(&h->in, p, take) != 0) return -1;
            p += take;
            n -= take;
            continue;
        }
        frames(c, h->in.data, h->in.len);
        if (mc_conn_closed(c)) return 0;
        h->in.len = 0;
    }
    if (!h->fatal && n) {
        size_t used = frames(c, p, n);
        if (mc_conn_closed(c)) return 0;
        if (used < n && !h->fatal && mc_buf_append(&h->in, p + used, n - used) != 0) return -1;
    }
    if (!mc_conn_closed(c)) reap(c);
    if (!mc_conn_closed(c)) mc_loop_mark_dirty(c->loop, c);
    return 0;
}

bool mc_h2c_input_full(mc_conn_t *c) { return c->h2c && c->out.len >= H2C_OUT_FULL; }

bool mc_h2c_done(mc_conn_t *c) {
    mc_h2c_t *h = c->h2c;
    if (!h || h->fatal) return true;
    /* after the server's GOAWAY, once the last call it processes has ended */
    return h->goaway_recv && h->open == 0 && !h->wait_head && !h->closed;
}

int mc_h2c_init(mc_conn_t *c) {
    mc_h2c_t *h = calloc(1, sizeof *h);
    if (!h) return -1;
    mc_hpack_decoder_init(&h->hpack, MC_HPACK_DEFAULT_TABLE);
    h->peer_max_frame = H2C_FRAME_MAX;
    h->peer_max_streams = 100; /* until the server's SETTINGS say (none: no limit) */
    h->peer_initial_window = H2C_DEFAULT_WINDOW;
    h->enc_table = MC_HPACK_DEFAULT_TABLE;
    h->send_window = H2C_DEFAULT_WINDOW;
    h->recv_window = H2C_CONN_WINDOW;
    h->next_id = 1;
    c->h2c = h;
    /* the preface, our SETTINGS (no push, 1 MiB stream windows, the field budget, no RFC 7540
     * priorities) and the connection window opened to 16 MiB */
    uint8_t s[4 * 6];
    static const uint16_t keys[4] = {S_ENABLE_PUSH, S_INITIAL_WINDOW_SIZE, S_MAX_HEADER_LIST_SIZE, S_NO_RFC7540_PRIORITIES};
    const uint32_t values[4] = {0, H2C_STREAM_WINDOW, MC_CLIENT_MAX_FIELD_BYTES, 1};
    for (size_t i = 0; i < 4; i++) {
        s[i * 6] = (uint8_t)(keys[i] >> 8);
        s[i * 6 + 1] = (uint8_t)keys[i];
        put_u32(s + i * 6 + 2, values[i]);
    }
    if (mc_buf_append(&c->out, preface, sizeof preface - 1) != 0) return -1;
    put_frame(c, F_SETTINGS, 0, 0, s, sizeof s);
    put_window_update(c, 0, H2C_CONN_WINDOW - H2C_DEFAULT_WINDOW);
    return h->nomem ? -1 : 0;
}

void mc_h2c_free(mc_conn_t *c) {
    mc_h2c_t *h = c->h2c;
    if (!h) return;
    mc_hpack_decoder_free(&h->hpack);
    mc_buf_free(&h->in);
    mc_buf_free(&h->block);
    free(h);
    c->h2c = NULL;
}
