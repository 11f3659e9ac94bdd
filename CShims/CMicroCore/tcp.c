/*
 * A plain byte-stream client connection (mc_tcp_*): the core's TCP, optionally TLS, for protocols
 * that are not HTTP (NATS, later Redis or PostgreSQL's wire). It is a client connection of
 * client.c — the same resolve and connect, output queue flushed once per loop turn, TLS layer
 * and close — with a protocol table (mc_tcp_proto) that hands every byte read to its owner and
 * leaves the framing to it. What it adds: a connect timeout, backpressure both ways (a write past
 * the high-water mark says so and on_writable follows; the owner pauses reading), TLS from the
 * start or begun later on the same connection (a protocol that negotiates it in plaintext first),
 * an orderly close once the output is out, and why the connection ended.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mc_tcp_link {
    mc_tcp_callbacks_t cb;
    mc_conn_t *conn;
    size_t high_water;
    uint64_t connect_timeout_ms;
    bool connected;     /* on_connected(0) was said */
    bool paused;        /* the owner stopped reading */
    bool closing;       /* mc_tcp_close(graceful): ends once the output is out */
    bool want_writable; /* a write passed the high-water mark: on_writable when it drains */
    bool securing;      /* mc_tcp_start_tls: the handshake is under way */
    int error;          /* why it ended: 0 for an orderly end */
    char reason[240];
};

#define LINK(c) ((c)->client->link)

static void note_end(struct mc_tcp_link *l, int error, const char *reason) {
    if (l->reason[0]) return; /* the first cause is the one that counts */
    l->error = error;
    snprintf(l->reason, sizeof l->reason, "%s", reason);
}

/* client.c's callbacks, pointed at the link */
static void link_connected(void *ctx, int error, const char *message) {
    struct mc_tcp_link *l = ctx;
    if (error == 0 || l->connected) return; /* success is reported by mc_tcp_connected / secured */
    note_end(l, error, message);
    l->connected = true; /* said once */
    if (l->cb.on_connected) l->cb.on_connected(l->cb.ctx, error, message);
}

static void link_closed(void *ctx) {
    struct mc_tcp_link *l = ctx;
    if (l->cb.on_closed) l->cb.on_closed(l->cb.ctx, l->error, l->reason[0] ? l->reason : "closed");
    free(l);
}

static void report_connected(mc_conn_t *c) {
    struct mc_tcp_link *l = LINK(c);
    c->client->connected = true;
    l->connected = true;
    uv_timer_stop(&c->timer);
    if (l->cb.on_connected) l->cb.on_connected(l->cb.ctx, 0, "");
}

void mc_tcp_connected(mc_conn_t *c) {
    mc_conn_start_reading(c);
    if (c->tls) {
        /* connected once the handshake is done (mc_tcp_secured) */
        if (mc_tls_start_handshake(c) != 0) mc_tcp_tls_failed(c);
        return;
    }
    report_connected(c);
}

void mc_tcp_secured(mc_conn_t *c) {
    struct mc_tcp_link *l = LINK(c);
    mc_loop_mark_dirty(c->loop, c); /* plaintext written during the handshake goes out now */
    if (!l->connected) {
        report_connected(c);
        return;
    }
    if (l->securing) {
        l->securing = false;
        if (l->cb.on_secured) l->cb.on_secured(l->cb.ctx, 0, "");
    }
}

void mc_tcp_tls_failed(mc_conn_t *c) {
    if (mc_conn_closed(c)) return;
    struct mc_tcp_link *l = LINK(c);
    const char *why = mc_tls_error(c);
    char msg[420];
    snprintf(msg, sizeof msg, "TLS to %s:%u failed: %s", c->client->host, (unsigned)c->client->port,
             why[0] ? why : "the server closed the connection during the handshake (does it speak TLS?)");
    note_end(l, UV_EPROTO, msg);
    if (!l->connected) {
        l->connected = true;
        if (l->cb.on_connected) l->cb.on_connected(l->cb.ctx, UV_EPROTO, msg);
    } else if (l->securing) {
        l->securing = false;
        if (l->cb.on_secured) l->cb.on_secured(l->cb.ctx, UV_EPROTO, msg);
    }
    mc_conn_close(c);
}

static void on_connect_timeout(uv_timer_t *t) {
    mc_conn_t *c = t->data;
    if (mc_conn_closed(c) || LINK(c)->connected) return;
    char msg[320];
    snprintf(msg, sizeof msg, "cannot connect to %s:%u: no connection within %llu ms", c->client->host,
             (unsigned)c->client->port, (unsigned long long)LINK(c)->connect_timeout_ms);
    link_connected(LINK(c), UV_ETIMEDOUT, msg);
    mc_conn_close(c);
}

/* ---- the protocol table: bytes to the owner, nothing framed here */

static int tcp_feed(mc_conn_t *c, const uint8_t *p, size_t n) {
    struct mc_tcp_link *l = LINK(c);
    if (l->closing || !n) return 0; /* closing: what still comes is dropped */
    if (l->cb.on_data) l->cb.on_data(l->cb.ctx, p, n);
    return 0;
}

static bool tcp_input_full(mc_conn_t *c) {
    struct mc_tcp_link *l = LINK(c);
    return l->paused || l->closing;
}

static bool tcp_done(mc_conn_t *c) { return LINK(c)->closing; }

static bool tcp_eof(mc_conn_t *c, ssize_t err) {
    struct mc_tcp_link *l = LINK(c);
    if (c->tls && !mc_tls_ready(c)) {
        mc_tcp_tls_failed(c); /* the server hung up during the handshake */
        return true;
    }
    if (err == UV_EOF) {
        note_end(l, 0, "the peer closed the connection");
    } else {
        char msg[200];
        snprintf(msg, sizeof msg, "the connection broke: %s", uv_strerror((int)err));
        note_end(l, (int)err, msg);
    }
    return false;
}

static void tcp_flushed(mc_conn_t *c) {
    struct mc_tcp_link *l = LINK(c);
    if (!l->want_writable || mc_conn_out_pending(c) > l->high_water / 2) return;
    l->want_writable = false;
    if (l->cb.on_writable) l->cb.on_writable(l->cb.ctx);
}

static void tcp_nothing(mc_conn_t *c) { (void)c; }

const mc_proto_ops_t mc_tcp_proto = {
    .proto = MC_PROTO_TCP,
    .feed = tcp_feed,
    .input_full = tcp_input_full,
    .done = tcp_done,
    .eof = tcp_eof,
    .header_timeout = mc_conn_close,
    .read_timeout = mc_conn_close,
    .idle = mc_proto_never,
    .grace_over = mc_proto_never,
    .shutdown = mc_conn_close,
    .flushed = tcp_flushed,
    .free = tcp_nothing,
};

/* ---- the owner's side */

mc_tcp_t *mc_tcp_connect(mc_loop_t *loop, const char *host, uint16_t port, const mc_tcp_callbacks_t *callbacks,
                         const mc_tcp_options_t *options) {
    struct mc_tcp_link *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->cb = *callbacks;
    l->high_water = options && options->high_water ? options->high_water : 1024 * 1024;
    l->connect_timeout_ms = options ? options->connect_timeout_ms : 0;
    mc_client_callbacks_t cb = {.ctx = l, .on_connected = link_connected, .on_closed = link_closed};
    mc_tls_ctx_t *tls = options ? options->tls : NULL;
    mc_conn_t *c = mc_client_open(loop, host, port, 0, &cb, tls, options ? options->server_name : NULL,
                                  options ? options->expected_identity : NULL, &mc_tcp_proto, l);
    if (!c) {
        free(l);
        return NULL;
    }
    /* a connection that failed at once (an address that cannot be dialled) is closing: its
     * callbacks come on the loop, and the owner still gets the handle */
    l->conn = c;
    if (l->connect_timeout_ms && !mc_conn_closed(c)) uv_timer_start(&c->timer, on_connect_timeout, l->connect_timeout_ms, 0);
    return (mc_tcp_t *)l;
}

static mc_conn_t *conn_of(mc_tcp_t *t) {
    struct mc_tcp_link *l = (struct mc_tcp_link *)t;
    return l->conn;
}

int mc_tcp_write(mc_tcp_t *t, const uint8_t *data, size_t len) {
    mc_slice_t piece = {data, len};
    return mc_tcp_writev(t, &piece, 1);
}

int mc_tcp_writev(mc_tcp_t *t, const mc_slice_t *pieces, size_t count) {
    struct mc_tcp_link *l = (struct mc_tcp_link *)t;
    mc_conn_t *c = conn_of(t);
    if (mc_conn_closed(c) || l->closing || !c->client->connected) return -1;
    /* one reservation and one mark for all the pieces (a publish is three: line, payload, CRLF) */
    size_t total = 0;
    for (size_t i = 0; i < count; i++) total += pieces[i].len;
    if (total && mc_buf_reserve(&c->out, total) != 0) {
        mc_conn_close(c);
    } else if (total) {
        for (size_t i = 0; i < count; i++) {
            if (!pieces[i].len) continue;
            memcpy(c->out.data + c->out.len, pieces[i].data, pieces[i].len);
            c->out.len += pieces[i].len;
        }
        mc_loop_mark_dirty(c->loop, c);
    }
    if (mc_conn_closed(c)) {
        note_end(l, UV_ENOMEM, "out of memory for output");
        return -1;
    }
    if (mc_conn_out_pending(c) > l->high_water) {
        l->want_writable = true;
        return 1;
    }
    return 0;
}

size_t mc_tcp_pending(mc_tcp_t *t) {
    mc_conn_t *c = conn_of(t);
    return mc_conn_closed(c) ? 0 : mc_conn_out_pending(c);
}

void mc_tcp_set_reading(mc_tcp_t *t, int on) {
    struct mc_tcp_link *l = (struct mc_tcp_link *)t;
    mc_conn_t *c = conn_of(t);
    l->paused = !on;
    if (!mc_conn_closed(c) && c->client->connected) mc_loop_mark_dirty(c->loop, c); /* the flush sets reading */
}

int mc_tcp_start_tls(mc_tcp_t *t, mc_tls_ctx_t *ctx, const char *server_name, const char *expected_identity) {
    struct mc_tcp_link *l = (struct mc_tcp_link *)t;
    mc_conn_t *c = conn_of(t);
    if (mc_conn_closed(c) || !c->client->connected || c->tls || !ctx || l->closing) return -1;
    if (mc_tls_conn_start(c, ctx, server_name && server_name[0] ? server_name : c->client->host, expected_identity) != 0) {
        note_end(l, UV_EPROTO, "cannot start TLS (out of memory, or a server name that cannot be checked)");
        mc_conn_close(c);
        return -1;
    }
    l->securing = true;
    if (mc_tls_start_handshake(c) != 0) {
        mc_tcp_tls_failed(c);
        return -1;
    }
    mc_loop_mark_dirty(c->loop, c);
    return 0;
}

int mc_tcp_is_tls(mc_tcp_t *t) {
    mc_conn_t *c = conn_of(t);
    return !mc_conn_closed(c) && mc_tls_ready(c);
}

const char *mc_tcp_peer_identity(mc_tcp_t *t) {
    mc_conn_t *c = conn_of(t);
    return mc_conn_closed(c) ? NULL : mc_tls_peer_identity(c);
}

void mc_tcp_close(mc_tcp_t *t, int graceful) {
    struct mc_tcp_link *l = (struct mc_tcp_link *)t;
    mc_conn_t *c = conn_of(t);
    if (mc_conn_closed(c)) return;
    note_end(l, 0, "closed by this side");
    if (!graceful || !c->client->connected) {
        mc_conn_close(c);
        return;
    }
    l->closing = true; /* done: the flush closes once the output (and TLS's close_notify) is out */
    mc_loop_mark_dirty(c->loop, c);
}
