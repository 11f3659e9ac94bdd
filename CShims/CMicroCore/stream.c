/*
 * Streamed bodies, for both sides; HTTP/1.1's framing (go-micro's frames, chunked answers) is
 * h1.c's. On HTTP/2: outbound, bytes queue in the request's `sendq` buffer and go out as the
 * peer's window opens (a server's through h2.c's send queue, a client's through h2client.c's);
 * a writer that finds the queue past its
 * high-water mark is told (on_writable) when it drops below the low one, so memory stays bounded
 * by the mark, not by what the application produces. Inbound: nothing is credited back to the
 * peer until the application consumes it (mc_request_consume), so a slow reader holds the sender
 * to the stream window.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "h2frame.h"
#include "internal.h"

#include <string.h>

static size_t pending(const mc_request_t *r) { return mc_request_sendq_left(r); }

void mc_stream_notify_writable(mc_request_t *r) {
    r->want_writable = false;
    if (r->proto == MC_PROTO_H2_CLIENT) {
        if (r->client.scb.on_writable) r->client.scb.on_writable(r->client.done_ctx);
    } else if (r->conn && r->conn->server->cb.on_writable) {
        r->conn->server->cb.on_writable(r->conn->server->cb.ctx, r);
    }
}

/* A go-micro stream on HTTP/1.1 (h1.c). */
static bool h1_stream(const mc_request_t *r) { return r->proto == MC_PROTO_H1 && r->streaming; }

/* The connection of a stream that can still send, or NULL. */
static mc_conn_t *live(const mc_request_t *r) {
    mc_conn_t *c = r->conn;
    if (!c || mc_conn_closed(c)) return NULL;
    if (h1_stream(r)) return c->h1_stream == r ? c : NULL;
    if (r->proto == MC_PROTO_H1) return r->server.responded ? NULL : c; /* a chunked answer */
    if (r->proto == MC_PROTO_H1_CLIENT) return c->h1_cur == r ? c : NULL;
    if ((r->proto == MC_PROTO_H2 ? !c->h2s : !c->h2c) || r->stream_closed) return NULL;
    return c;
}

static void resume(mc_conn_t *c, mc_request_t *r) {
    if (r->proto == MC_PROTO_H2) {
        mc_h2_stream_ready(r);
        return;
    }
    mc_h2c_stream_ready(r);
    mc_loop_mark_dirty(c->loop, c);
}

int mc_request_send_head(mc_request_t *r, int status, const mc_header_t *h, size_t nh) {
    mc_conn_t *c = live(r);
    if (!c || r->head_sent || r->server.responded || !mc_status_valid(status) || !mc_fields_valid(h, nh)) return -1;
    if (h1_stream(r)) {
        if (mc_h1_stream_head(r, status, h, nh) != 0) return -1;
        r->head_sent = true;
        return 0;
    }
    if (r->proto == MC_PROTO_H1) {
        if (mc_h1_chunked_head(r, status, h, nh) != 0) return -1;
        r->head_sent = true;
        return 0;
    }
    if (r->proto != MC_PROTO_H2 || mc_h2_send_head(r, status, h, nh) != 0) return -1;
    r->head_sent = true;
    mc_loop_mark_dirty(c->loop, c);
    return 0;
}

int mc_request_write(mc_request_t *r, const uint8_t *data, size_t len) {
    mc_conn_t *c = live(r);
    if (!c || !r->head_sent || r->out_finished) return -1;
    if (h1_stream(r)) return mc_h1_stream_write(r, data, len);
    if (r->proto == MC_PROTO_H1) return mc_h1_chunked_write(r, data, len);
    if (r->proto == MC_PROTO_H1_CLIENT) return r->streaming ? mc_h1_client_stream_write(r, data, len) : -1;
    if (r->sendq_off && r->sendq_off >= r->sendq.len / 2) {
        memmove(r->sendq.data, r->sendq.data + r->sendq_off, pending(r));
        r->sendq.len -= r->sendq_off;
        r->sendq_off = 0;
    }
    if (!pending(r)) r->last_sent = uv_now(&c->loop->uv); /* the write timeout runs from here */
    if (mc_buf_append(&r->sendq, data, len) != 0) {
        if (r->proto == MC_PROTO_H2) mc_h2_stream_reset(r);
        else mc_h2c_reset(c, r, E_INTERNAL);
        mc_loop_mark_dirty(c->loop, c);
        return -1;
    }
    resume(c, r);
    if (pending(r) >= MC_STREAM_HIGH_WATER) {
        r->want_writable = true;
        return 1;
    }
    return 0;
}

int mc_request_finish(mc_request_t *r, const mc_header_t *t, size_t nt) {
    if (r->proto == MC_PROTO_H1_CLIENT) {
        mc_conn_t *c = live(r);
        if (!c || !r->streaming || r->out_finished) return -1;
        return mc_h1_client_stream_finish(r);
    }
    if (r->proto == MC_PROTO_H2_CLIENT) {
        mc_conn_t *c = live(r);
        if (!c || r->out_finished) return -1;
        r->out_finished = true;
        resume(c, r);
        return 0;
    }
    if (h1_stream(r)) {
        if (r->server.responded) return -1;
        mc_request_mark_responded(r);
        mc_conn_t *c = live(r);
        int rc = -1;
        if (c) {
            c->active--;
            rc = (r->head_sent || mc_h1_stream_head(r, 200, NULL, 0) == 0) ? mc_h1_stream_finish(r, t, nt) : -1;
            mc_conn_request_done(c);
        }
        mc_request_release(r);
        return rc;
    }
    /* an answer not started, or a chunked one (its last chunk is its answer: h1.c) */
    if (!r->head_sent || (r->proto == MC_PROTO_H1 && r->server.h1_chunked)) return mc_request_respond(r, 200, NULL, 0, NULL, 0, t, nt);
    if (r->server.responded) return -1;
    mc_request_mark_responded(r);
    r->want_writable = false; /* the application is done with it: no more callbacks */
    mc_conn_t *c = r->conn;
    if (!c || mc_conn_closed(c)) {
        mc_request_release(r);
        return -1;
    }
    c->active--;
    mc_conn_request_done(c);
    if (mc_h2_store_trailers(r, t, nt) != 0) r->ntrailers = 0;
    r->out_finished = true;
    resume(c, r);
    return 0;
}

void mc_request_consume(mc_request_t *r, size_t len) {
    mc_conn_t *c = live(r);
    if (!c) return;
    if (len > r->unconsumed) len = r->unconsumed;
    if (!len) return;
    r->unconsumed -= len;
    /* HTTP/1.1 has no window: reading resumes (at the next flush) once below its mark */
    if (r->proto == MC_PROTO_H2) mc_h2_consume(r, len);
    else if (c->h2c) mc_h2c_consume(r, len);
    mc_loop_mark_dirty(c->loop, c);
}
