/*
 * HTTP/2 server side on nghttp2 (mem_recv / mem_send: nghttp2 never touches the socket).
 * A stream becomes a request when its END_STREAM arrives; the answer is submitted with a data
 * provider over the request's own buffer, trailers after the last DATA frame.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static uint64_t earliest_of(uint64_t a, uint64_t b) { return !a ? b : !b ? a : a < b ? a : b; }

static nghttp2_session_callbacks *callbacks;
static nghttp2_option *options;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static mc_request_t *stream_request(nghttp2_session *s, int32_t id) {
    return nghttp2_session_get_stream_user_data(s, id);
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *user) {
    mc_conn_t *c = user;
    if (f->hd.type != NGHTTP2_HEADERS) return 0;
    if (f->headers.cat != NGHTTP2_HCAT_REQUEST) {
        /* a second header block on a stream: the request's trailers */
        mc_request_t *r = stream_request(s, f->hd.stream_id);
        if (r && !r->in_trailers) {
            r->in_trailers = true;
            r->trailer_index = r->nhdrs + 1;
        }
        return 0;
    }
    mc_request_t *r = mc_request_new(c->loop, c, MC_PROTO_H2);
    if (!r) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets this stream only */
    r->stream_id = f->hd.stream_id;
    r->server.last_read = uv_now(&c->loop->uv);
    nghttp2_session_set_stream_user_data(s, f->hd.stream_id, r);
    c->streams++;
    return 0;
}

/* Past this many times the limit, a header block is no longer decoded for an answer: the stream
 * is reset and nghttp2 skips the rest of the block (an HPACK bomb costs CPU per field). */
#define MC_FIELD_BYTES_ABUSE 4

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *user) {
    (void)flags;
    mc_conn_t *c = user;
    mc_request_t *r = stream_request(s, f->hd.stream_id);
    if (!r) return 0;
    size_t limit = c->server->config.max_header_bytes;
    /* the same accounting as HPACK's SETTINGS_MAX_HEADER_LIST_SIZE, over headers and trailers */
    r->field_bytes += nlen + vlen + 32;
    if (r->field_bytes > limit) {
        /* a request not yet handed over is answered 431; one already handed over (a stream whose
         * trailers are too big), or a block far past the limit, is reset */
        if (r->server.dispatched || r->field_bytes / MC_FIELD_BYTES_ABUSE > limit) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        r->server.core_status = 431;
        return 0;
    }
    if (r->server.core_status) return 0;
    if (r->in_trailers) {
        /* kept apart from the headers (after trailer_index), never read for routing; a stream
         * already handed to its handler has no use for them */
        if (r->server.dispatched) return 0;
        return mc_request_add_header(r, (const char *)name, nlen, (const char *)value, vlen)
                   ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE
                   : 0;
    }
    if (nlen == 7 && memcmp(name, ":method", 7) == 0) {
        r->method_off = (uint32_t)r->strings.len;
        r->method_len = (uint32_t)vlen;
        return mc_buf_append(&r->strings, value, vlen) ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE : 0;
    }
    if (nlen == 5 && memcmp(name, ":path", 5) == 0) {
        r->path_off = (uint32_t)r->strings.len;
        r->path_len = (uint32_t)vlen;
        return mc_buf_append(&r->strings, value, vlen) ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE : 0;
    }
    if (nlen == 10 && memcmp(name, ":authority", 10) == 0) {
        return mc_request_add_header(r, "host", 4, (const char *)value, vlen) ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE : 0;
    }
    if (nlen > 0 && name[0] == ':') return 0;
    if (nlen == 12 && memcmp(name, "micro-stream", 12) == 0) r->stream_hint = true;
    return mc_request_add_header(r, (const char *)name, nlen, (const char *)value, vlen)
               ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE
               : 0;
}

static void credit(mc_conn_t *c, mc_request_t *r) {
    nghttp2_session_consume_connection(c->h2, r->server.uncredited);
    nghttp2_session_consume_stream(c->h2, r->stream_id, r->server.uncredited);
    c->body_uncredited -= r->server.uncredited;
    r->server.uncredited = 0;
}

/* Credits body bytes held back by the connection's budget: all of them once the connection is
 * under it again. Over it, while no handler holds a body that its answer will free, one stream
 * (the oldest waiting) is let past the budget until it ends, so that one request can always
 * complete: memory stays bounded by the budget, the connection window and one body. */
static void credit_deferred(mc_conn_t *c) {
    if (!c->body_uncredited || !c->h2) return;
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
        mc_loop_mark_dirty(c->loop, c);
    }
}

void mc_h2_request_leaves(mc_conn_t *c, mc_request_t *r) {
    if (r->stream_id == c->body_exception) c->body_exception = 0;
    if (r->server.uncredited && c->h2) nghttp2_session_consume_connection(c->h2, r->server.uncredited);
    c->body_uncredited -= r->server.uncredited < c->body_uncredited ? r->server.uncredited : c->body_uncredited;
    r->server.uncredited = 0;
    if (c->body_uncredited) credit_deferred(c);
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                         void *user) {
    (void)flags;
    mc_conn_t *c = user;
    mc_request_t *r = stream_request(s, id);
    if (r) r->server.last_read = uv_now(&c->loop->uv);
    if (r && r->streaming) {
        if (r->server.responded || r->server.aborted || !c->server->cb.on_body) {
            nghttp2_session_consume(s, id, len); /* nobody reads it any more */
            return 0;
        }
        r->unconsumed += len; /* credited when the application has taken it */
        c->server->cb.on_body(c->server->cb.ctx, r, data, len, 0);
        return 0;
    }
    if (!r || r->server.core_status) {
        nghttp2_session_consume(s, id, len);
        return 0;
    }
    if (r->body.len + len > c->server->config.max_body_bytes) {
        nghttp2_session_consume(s, id, len);
        r->server.core_status = 413; /* answered when this frame ends (on_frame_recv) */
        return 0;
    }
    if (mc_buf_append(&r->body, data, len) != 0) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    mc_conn_body_held(c, r, (ptrdiff_t)len);
    /* A whole body is gathered here. Its bytes are credited back at once while the connection
     * holds less than its budget; past it they wait, so one connection cannot make the server
     * hold 250 streams' worth of bodies that no handler has taken yet. */
    if (c->body_buffered <= c->server->config.max_buffered_body_bytes) {
        nghttp2_session_consume(s, id, len);
    } else {
        r->server.uncredited += len;
        c->body_uncredited += len;
        credit_deferred(c);
    }
    return 0;
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

static void dispatch(mc_conn_t *c, mc_request_t *r) {
    r->server.dispatched = true;
    if (r->stream_id == c->body_exception) c->body_exception = 0;
    c->active++;
    if (r->server.core_status) {
        respond_error(r, r->server.core_status);
        return;
    }
    c->server->cb.on_request(c->server->cb.ctx, r);
    if (c->body_uncredited) credit_deferred(c); /* a handler now holds a body it will free */
}

/* A request whose body is still to come becomes a stream if it says so (micro-stream) or the
 * application wants its path streamed (gRPC streaming methods). */
static bool wants_stream(mc_conn_t *c, mc_request_t *r) {
    const mc_server_callbacks_t *cb = &c->server->cb;
    if (!cb->on_body || r->server.core_status) return false;
    return r->stream_hint || (cb->is_stream && cb->is_stream(cb->ctx, r));
}

static void final_goaway(mc_conn_t *c);

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user) {
    mc_conn_t *c = user;
    if (f->hd.type == NGHTTP2_PING && (f->hd.flags & NGHTTP2_FLAG_ACK) && c->h2_notice_sent && !c->h2_goaway_sent) {
        /* the peer has seen the shutdown notice (its PING answer came after it): the final GOAWAY */
        final_goaway(c);
        return 0;
    }
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) return 0;
    mc_request_t *r = stream_request(s, f->hd.stream_id);
    if (!r) return 0;
    r->server.last_read = uv_now(&c->loop->uv);
    bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (end) r->in_ended = true;
    if (r->streaming) {
        if (end && !r->server.responded && !r->server.aborted) c->server->cb.on_body(c->server->cb.ctx, r, NULL, 0, 1);
        return 0;
    }
    if (r->server.dispatched) return 0;
    /* a core error (431 at the end of the header block, 413 at the DATA that went past the
     * limit) is answered now; the rest of the request is then refused with RST_STREAM */
    if (end || r->server.core_status) {
        dispatch(c, r);
        return 0;
    }
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST && wants_stream(c, r)) {
        r->streaming = true;
        dispatch(c, r);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *user) {
    (void)code;
    mc_conn_t *c = user;
    mc_request_t *r = stream_request(s, id);
    if (!r) return 0;
    nghttp2_session_set_stream_user_data(s, id, NULL);
    c->streams--;
    mc_stream_closed(s, r);
    mc_request_abort(r); /* tells the handler if unanswered; frees otherwise */
    return 0;
}

/* MadeYouReset (CVE-2025-8671): a peer can make the server reset streams (a malformed frame on
 * an open stream, a window overflow), which the rapid-reset limit, counting only the peer's own
 * RST_STREAM frames, does not see. This side's resets are counted here: more than
 * MC_RESETS_BURST in a window of MC_RESETS_WINDOW_MS ends the connection with
 * ENHANCE_YOUR_CALM. */
#define MC_RESETS_BURST 200
#define MC_RESETS_PER_SECOND 20

static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *user) {
    mc_conn_t *c = user;
    if (f->hd.type == NGHTTP2_RST_STREAM) {
        /* a token bucket: MC_RESETS_BURST at once, refilled at MC_RESETS_PER_SECOND; resets this
         * side asked for (NO_ERROR after an early answer, CANCEL) are not the peer's doing */
        uint32_t code = f->rst_stream.error_code;
        if (code == NGHTTP2_NO_ERROR || code == NGHTTP2_CANCEL) return 0;
        uint64_t now = uv_now(&c->loop->uv);
        uint64_t refill = (now - c->resets_window_at) * MC_RESETS_PER_SECOND / 1000;
        if (refill) {
            c->resets_sent = refill >= c->resets_sent ? 0 : c->resets_sent - (uint32_t)refill;
            c->resets_window_at = now;
        }
        if (++c->resets_sent > MC_RESETS_BURST && !c->h2_goaway_sent) {
            mc_server_log(c->server, MC_LOG_WARNING, "the peer caused more than %d stream resets; connection ended",
                          MC_RESETS_BURST);
            c->h2_goaway_sent = true;
            mc_conn_enter(c, MC_CONN_ENDING);
            nghttp2_session_terminate_session(s, NGHTTP2_ENHANCE_YOUR_CALM);
        }
        return 0;
    }
    if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) && (f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        nghttp2_session_get_stream_remote_close(s, f->hd.stream_id) == 0) {
        /* answered before the request ended (e.g. 413): the rest of it is not wanted */
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
    }
    return 0;
}

static void init_once(void) {
    nghttp2_session_callbacks_new(&callbacks);
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, on_frame_send);
    nghttp2_option_new(&options);
    /* the client preface was already checked when the protocol was sniffed; keep nghttp2's check */
    nghttp2_option_set_no_recv_client_magic(options, 0);
    /* streams credit the peer's window only as the application consumes (backpressure) */
    nghttp2_option_set_no_auto_window_update(options, 1);
    /* flood defences, stated rather than inherited: a client that resets more than 1000 streams
     * in a burst (then 33 a second) is sent GOAWAY (rapid reset, CVE-2023-44487); a header block
     * split over more than 8 CONTINUATION frames ends the connection (CVE-2024-28182) */
    nghttp2_option_set_stream_reset_rate_limit(options, 1000, 33);
    nghttp2_option_set_max_continuations(options, 8);
    /* no RFC 7540 priority tree (RFC 9218 deprecates it; SETTINGS_NO_RFC7540_PRIORITIES below
     * says so): closed streams are not kept for it, and a stream is not placed in a tree */
    nghttp2_option_set_no_closed_streams(options, 1);
}

int mc_h2_init(mc_conn_t *c) {
    pthread_once(&once, init_once);
    if (!callbacks || !options) return -1;
    if (nghttp2_session_server_new3(&c->h2, callbacks, c, options, &c->loop->blocks.nghttp2) != 0) return -1;
    c->h2_scan_skip = 24; /* the client preface, which nghttp2 checks */
    const mc_server_config_t *cfg = &c->server->config;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg->max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, cfg->stream_window},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)cfg->max_header_bytes},
        {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
    };
    if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0) return -1;
    if (cfg->connection_window > 65535)
        nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, (int32_t)cfg->connection_window);
    return 0;
}

/* RFC 9113, 5.1.1: a client's new stream id must be above every id it used before, and ids it
 * skipped are closed. nghttp2 silently drops HEADERS for such an id; this walk over the frame
 * headers (payloads are jumped over) sees them and makes them the connection error the RFC
 * asks for. Ids within the last 2048 are remembered as opened or not, so that trailers for a
 * stream this side already closed still pass. */
#define MC_H2_ID_WINDOW 2048

static bool id_bit(const mc_conn_t *c, uint32_t id) {
    uint32_t k = (id >> 1) % MC_H2_ID_WINDOW;
    return c->h2_opened[k / 64] >> (k % 64) & 1;
}

static void set_id_bit(mc_conn_t *c, uint32_t id, bool on) {
    uint32_t k = (id >> 1) % MC_H2_ID_WINDOW;
    if (on) c->h2_opened[k / 64] |= (uint64_t)1 << (k % 64);
    else c->h2_opened[k / 64] &= ~((uint64_t)1 << (k % 64));
}

/* Returns false if a HEADERS frame opens a stream id the client can no longer use. */
static bool scan_frames(mc_conn_t *c, const uint8_t *p, size_t n) {
    while (n) {
        if (c->h2_scan_skip) {
            size_t k = n < c->h2_scan_skip ? n : c->h2_scan_skip;
            c->h2_scan_skip -= k;
            p += k;
            n -= k;
            continue;
        }
        size_t k = 9 - c->h2_scan_len;
        if (k > n) k = n;
        memcpy(c->h2_scan_head + c->h2_scan_len, p, k);
        c->h2_scan_len += (uint8_t)k;
        p += k;
        n -= k;
        if (c->h2_scan_len < 9) break;
        const uint8_t *h = c->h2_scan_head;
        c->h2_scan_len = 0;
        c->h2_scan_skip = (size_t)h[0] << 16 | (size_t)h[1] << 8 | h[2];
        uint32_t id = ((uint32_t)h[5] & 0x7f) << 24 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 8 | h[8];
        if (h[3] != NGHTTP2_HEADERS || !(id & 1)) continue;
        if (id > c->h2_max_id) {
            if (id - c->h2_max_id >= 2 * MC_H2_ID_WINDOW) memset(c->h2_opened, 0, sizeof c->h2_opened);
            else
                for (uint32_t skipped = c->h2_max_id + 2; skipped < id; skipped += 2) set_id_bit(c, skipped, false);
            set_id_bit(c, id, true);
            c->h2_max_id = id;
        } else if (c->h2_max_id - id < 2 * MC_H2_ID_WINDOW && !id_bit(c, id)) {
            return false;
        }
    }
    return true;
}

int mc_h2_feed(mc_conn_t *c, const uint8_t *p, size_t n) {
    if (!c->client && !scan_frames(c, p, n)) {
        mc_server_log(c->server, MC_LOG_DEBUG, "HEADERS on a stream id below the last one opened; connection ended");
        if (nghttp2_session_terminate_session(c->h2, NGHTTP2_PROTOCOL_ERROR) != 0) return -1;
        mc_conn_enter(c, MC_CONN_ENDING);
        mc_loop_mark_dirty(c->loop, c);
        return 0;
    }
    ssize_t rv = nghttp2_session_mem_recv(c->h2, p, n);
    if (rv < 0) {
        /* a fatal error (a flood, a broken frame): tell the peer why with GOAWAY, then close once
         * it is written; nothing more is read */
        uint32_t code = rv == NGHTTP2_ERR_FLOODED || rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS ? NGHTTP2_ENHANCE_YOUR_CALM
                                                                                              : NGHTTP2_PROTOCOL_ERROR;
        if (nghttp2_session_terminate_session(c->h2, code) != 0) return -1;
        mc_conn_enter(c, MC_CONN_ENDING);
    }
    mc_loop_mark_dirty(c->loop, c);
    return 0;
}

int mc_h2_pump(mc_conn_t *c) {
    if (!c->h2) return 0;
    while (c->out.len < 1024 * 1024) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->h2, &data);
        if (n < 0) return -1;
        if (n == 0) return 0;
        if (mc_buf_append(&c->out, data, (size_t)n) != 0) return -1;
    }
    return 1; /* stopped at the cap: there may be more */
}

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                         nghttp2_data_source *source, void *user) {
    mc_conn_t *c = user;
    mc_request_t *r = mc_h2_source_request(s, id, source);
    if (!r) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t left = mc_request_sendq_left(r);
    size_t n = left < length ? left : length;
    if (n) memcpy(buf, r->sendq.data + r->sendq_off, n);
    r->sendq_off += n;
    r->last_sent = uv_now(&c->loop->uv);
    if (r->sendq_off == r->sendq.len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (mc_h2_submit_trailers(s, r)) *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    }
    return (ssize_t)n;
}

bool mc_h2_submit_trailers(nghttp2_session *s, mc_request_t *r) {
    if (!r->ntrailers) return false;
    nghttp2_nv nv[64];
    size_t k = 0, off = 0;
    const uint8_t *t = r->trailer_strings.data;
    while (k < r->ntrailers && k < 64) {
        uint32_t nl, vl;
        memcpy(&nl, t + off, 4);
        nv[k].name = (uint8_t *)t + off + 4;
        nv[k].namelen = nl;
        off += 4 + nl;
        memcpy(&vl, t + off, 4);
        nv[k].value = (uint8_t *)t + off + 4;
        nv[k].valuelen = vl;
        nv[k].flags = NGHTTP2_NV_FLAG_NONE;
        off += 4 + vl;
        k++;
    }
    return nghttp2_submit_trailer(s, r->stream_id, nv, k) == 0;
}

/* Submits HEADERS (:status, the fields in lower case, content-length unless clen is NULL) with
 * `prd` as the body's source, or none. */
static int submit_head(mc_request_t *r, int status, const mc_header_t *h, size_t nh, const char *clen,
                       const nghttp2_data_provider *prd) {
    mc_conn_t *c = r->conn;
    /* once per answer: digits by hand, not snprintf */
    unsigned code = mc_status_valid(status) ? (unsigned)status : 500; /* checked before, as for HTTP/1.1 */
    char status_str[4] = {(char)('0' + code / 100), (char)('0' + code / 10 % 10), (char)('0' + code % 10), 0};
    nghttp2_nv stack_nv[32];
    nghttp2_nv *nv = nh + 2 <= 32 ? stack_nv : malloc((nh + 2) * sizeof *nv);
    /* names are sent in lower case: lowered into one buffer, on the stack for the usual few;
     * nghttp2 copies names and values, so the buffer goes when the call returns */
    uint8_t stack_names[512];
    size_t total = 0;
    for (size_t i = 0; i < nh; i++) total += h[i].name_len;
    uint8_t *names = total <= sizeof stack_names ? stack_names : malloc(total ? total : 1);
    int rc = nv && names ? 0 : -1;
    size_t k = 0;
    if (rc == 0) {
        nv[k++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status_str, 7, 3, NGHTTP2_NV_FLAG_NONE};
        size_t used = 0;
        for (size_t i = 0; i < nh; i++) {
            if (mc_field_connection_specific(h[i].name, h[i].name_len)) continue;
            uint8_t *lower = names + used;
            for (size_t j = 0; j < h[i].name_len; j++) lower[j] = mc_lower((uint8_t)h[i].name[j]);
            used += h[i].name_len;
            nv[k++] = (nghttp2_nv){lower, (uint8_t *)h[i].value, h[i].name_len, h[i].value_len, NGHTTP2_NV_FLAG_NONE};
        }
        if (clen) nv[k++] = (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)clen, 14, strlen(clen), NGHTTP2_NV_FLAG_NONE};
    }
    if (rc == 0) rc = nghttp2_submit_response(c->h2, r->stream_id, nv, k, prd);
    if (nv && nv != stack_nv) free(nv);
    if (names && names != stack_names) free(names);
    return rc;
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

/* The stream is gone or memory ran out: reset it; the request is freed when it closes. */
static int reset_stream(mc_request_t *r) {
    nghttp2_submit_rst_stream(r->conn->h2, NGHTTP2_FLAG_NONE, r->stream_id, NGHTTP2_INTERNAL_ERROR);
    return -1;
}

int mc_h2_respond(mc_request_t *r, int status, const mc_header_t *h, size_t nh, mc_body_t body,
                  const mc_header_t *t, size_t nt) {
    size_t len = body.prefix_len + body.len;
    char clen[24];
    mc_format_decimal(clen, len);
    r->sendq.len = 0;
    r->sendq_off = 0;
    r->last_sent = uv_now(&r->loop->uv);
    int rc = 0;
    if (!r->server.head) rc = mc_buf_append(&r->sendq, body.prefix, body.prefix_len);
    if (!r->server.head && rc == 0) rc = mc_buf_append(&r->sendq, body.data, body.len);
    if (rc == 0) rc = mc_h2_store_trailers(r, t, nt);
    if (rc == 0) {
        nghttp2_data_provider prd = {.source.ptr = r, .read_callback = read_body};
        bool with_data = r->sendq.len > 0 || r->ntrailers > 0;
        rc = submit_head(r, status, h, nh, !r->server.head || len ? clen : NULL, with_data ? &prd : NULL);
    }
    return rc == 0 ? 0 : reset_stream(r);
}

int mc_h2_send_head(mc_request_t *r, int status, const mc_header_t *h, size_t nh) {
    r->sendq.len = 0;
    r->sendq_off = 0;
    nghttp2_data_provider prd = {.source.ptr = r, .read_callback = mc_stream_read};
    return submit_head(r, status, h, nh, NULL, &prd) == 0 ? 0 : reset_stream(r);
}

/* Server shutdown: a GOAWAY notice (no new streams, please) now, the final GOAWAY after an
 * acknowledged PING or the grace. */
static void shutdown_gracefully(mc_conn_t *c) {
    mc_conn_enter(c, MC_CONN_DRAINING);
    if (!c->h2 || c->h2_notice_sent || c->h2_goaway_sent) return;
    /* RFC 9113, 6.8: first a GOAWAY with the highest stream id (stop opening streams), then,
     * once the peer has answered a PING sent after it (or after the grace), the final GOAWAY
     * with the last stream this side will process; requests the peer sent meanwhile are served */
    c->h2_notice_sent = true;
    if (nghttp2_submit_shutdown_notice(c->h2) != 0 || nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, NULL) != 0) {
        final_goaway(c);
        return;
    }
    c->close_at = uv_now(&c->loop->uv) + 1000;
    mc_conn_update_timer(c);
}

static void final_goaway(mc_conn_t *c) {
    mc_conn_enter(c, MC_CONN_DRAINING);
    if (!c->h2 || c->h2_goaway_sent) return;
    c->h2_goaway_sent = true;
    c->close_at = 0;
    nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->h2),
                          NGHTTP2_NO_ERROR, NULL, 0);
}

/* The idle timeout: GOAWAY(NO_ERROR); the connection closes after the grace. */
static bool goaway_idle(mc_conn_t *c) {
    if (!c->h2 || c->h2_goaway_sent) return true;
    c->h2_goaway_sent = true;
    nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->h2),
                          NGHTTP2_NO_ERROR, (const uint8_t *)"idle", 4);
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
            nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, r->stream_id, NGHTTP2_CANCEL);
            continue;
        }
        next = earliest_of(next, due);
    }
    return next;
}

bool mc_h2_done(mc_conn_t *c) {
    if (!c->h2) return true;
    if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2)) return true;
    return c->h2_goaway_sent && c->streams == 0 && c->active == 0 && !nghttp2_session_want_write(c->h2);
}

void mc_h2_free(mc_conn_t *c) {
    if (c->h2) nghttp2_session_del(c->h2);
    c->h2 = NULL;
}

/* nghttp2 answers some frames by itself (RST_STREAM for refused streams, PING and SETTINGS
 * acknowledgements); a peer that sends them and never reads would grow its queue, which the
 * connection's byte count does not see. */
#define MC_H2_MAX_QUEUED_FRAMES 1024

bool mc_h2_input_full(mc_conn_t *c) {
    return c->h2 && nghttp2_session_get_outbound_queue_size(c->h2) > MC_H2_MAX_QUEUED_FRAMES;
}


const mc_proto_ops_t mc_h2_proto = {
    .proto = MC_PROTO_H2,
    .feed = mc_h2_feed,
    .pump = mc_h2_pump,
    .input_full = mc_h2_input_full,
    .done = mc_h2_done,
    .eof = mc_proto_no_eof,
    .header_timeout = mc_conn_close, /* not armed once the preface is in */
    .read_timeout = mc_conn_close,   /* per stream instead (check_streams) */
    .check_streams = check_streams,
    .idle = goaway_idle,
    .grace_over = grace_over,
    .shutdown = shutdown_gracefully,
    .free = mc_h2_free,
};
