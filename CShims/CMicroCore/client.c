/*
 * Client connections: HTTP/2 (h2c, prior knowledge, or TLS) here, HTTP/1.1 in h1client.c, on
 * the same connection machinery as the server. HTTP/2: the core's own framing (h2client.c), one flush
 * per loop turn. A call is an mc_request_t
 * used the other way round: its `resp` buffer holds the body to send, and the response's status,
 * headers, trailers and body are gathered into it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "h2frame.h"
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

void mc_client_finish_call(mc_request_t *r, int result) {
    mc_call_done_fn done = r->client.done;
    void *ctx = r->client.done_ctx;
    mc_conn_t *c = r->conn;
    r->client.done = NULL;
    if (c) {
        if (c->h2c) mc_h2c_forget(c, r);
        c->active--;
        /* no longer the connection's: if `done` closes the connection, the close must not
         * complete (and release) this call a second time */
        mc_request_unlink(r);
    }
    if (r->client.timed_out) result = MC_CALL_TIMEOUT;
    else if (r->client.cancelled) result = MC_CALL_CANCELLED;
    else if (r->client.fields_too_large) result = MC_CALL_FIELDS_TOO_LARGE;
    else if (r->client.too_large) result = MC_CALL_TOO_LARGE;
    if (done) done(ctx, result, r);
    mc_request_release(r);
}

void mc_client_handles_closed(mc_conn_t *c) {
    mc_client_state_t *cl = c->client;
    c->ops->free(c);
    mc_buf_free(&c->in);
    mc_buf_free(&c->out);
    mc_buf_free(&c->inflight);
    mc_tls_conn_free(c);
    mc_client_callbacks_t cb = cl->cb;
    if (cl->resolving) {
        cl->orphaned = true; /* the threadpool still holds the lookup request */
    } else {
        free(cl);
        free(c);
    }
    if (cb.on_closed) cb.on_closed(cb.ctx);
}

static void fail_connect(mc_conn_t *c, int err, const char *what) {
    char msg[320];
    snprintf(msg, sizeof msg, "cannot connect to %s:%u: %s%s", c->client->host, (unsigned)c->client->port, what,
             err ? uv_strerror(err) : "");
    if (c->client->cb.on_connected) c->client->cb.on_connected(c->client->cb.ctx, err ? err : -1, msg);
    mc_conn_close(c);
}

static void on_connect(uv_connect_t *req, int status) {
    mc_conn_t *c = req->data;
    if (mc_conn_closed(c)) return;
    if (status < 0) {
        fail_connect(c, status, "");
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (c->ops == &mc_tcp_proto) {
        mc_tcp_connected(c);
        return;
    }
    if (c->ops == &mc_h1_client_proto) {
        mc_h1_client_init(c);
        c->client->connected = true;
        mc_conn_start_reading(c);
        if (c->client->cb.on_connected) c->client->cb.on_connected(c->client->cb.ctx, 0, "");
        return;
    }
    if (mc_h2c_init(c) != 0) {
        fail_connect(c, UV_ENOMEM, "");
        return;
    }
    if (c->tls) {
        /* connected once the handshake is done and the server's SETTINGS arrive */
        mc_conn_start_reading(c);
        if (mc_tls_start_handshake(c) != 0) mc_client_tls_failed(c);
        return;
    }
    c->client->connected = true;
    mc_conn_start_reading(c);
    mc_loop_mark_dirty(c->loop, c);
    if (c->client->cb.on_connected) c->client->cb.on_connected(c->client->cb.ctx, 0, "");
}

void mc_client_tls_handshaken(mc_conn_t *c) {
    if (c->ops == &mc_tcp_proto) {
        mc_tcp_secured(c);
        return;
    }
    mc_loop_mark_dirty(c->loop, c);
}

void mc_client_first_bytes(mc_conn_t *c, const uint8_t *p, size_t n) {
    mc_client_state_t *cl = c->client;
    if (cl->seen_bytes || n == 0 || c->ops != &mc_h2_client_proto) return;
    cl->seen_bytes = true;
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0)
        snprintf(cl->error, sizeof cl->error, "the server answered in HTTP/1.x, not HTTP/2: it may serve TLS only (call it with https://)");
    else if (p[0] == 0x15)
        snprintf(cl->error, sizeof cl->error, "the server sent a TLS alert: it serves TLS only (call it with https://)");
}

void mc_client_tls_failed(mc_conn_t *c) {
    if (mc_conn_closed(c)) return;
    if (c->ops == &mc_tcp_proto) {
        mc_tcp_tls_failed(c);
        return;
    }
    if (!c->client->connected && c->client->cb.on_connected) {
        const char *why = mc_tls_error(c);
        char msg[420];
        snprintf(msg, sizeof msg, "TLS to %s:%u failed: %s", c->client->host, (unsigned)c->client->port,
                 why[0] ? why : "the server closed the connection during the handshake (does it speak TLS?)");
        c->client->connected = true; /* reported: on_connected is not called again */
        c->client->cb.on_connected(c->client->cb.ctx, UV_EPROTO, msg);
    }
    mc_conn_close(c);
}

/* The server's end of the connection: during the TLS handshake, a failed handshake. */
static bool client_eof(mc_conn_t *c, ssize_t err) {
    (void)err;
    if (!c->tls || c->client->connected) return false;
    mc_client_tls_failed(c); /* the server hung up during the handshake */
    return true;
}

/* HTTP/2 as a client (h2client.c); a client connection has no server timeouts (the callers'
 * deadlines govern) and no graceful shutdown of its own. */
const mc_proto_ops_t mc_h2_client_proto = {
    .proto = MC_PROTO_H2_CLIENT,
    .feed = mc_h2c_feed,
    .pump = mc_h2c_pump,
    .input_full = mc_h2c_input_full,
    .done = mc_h2c_done,
    .eof = client_eof,
    .header_timeout = mc_conn_close,
    .read_timeout = mc_conn_close,
    .idle = mc_proto_never,
    .grace_over = mc_proto_never,
    .shutdown = mc_conn_close,
    .free = mc_h2c_free,
};

static void connect_to(mc_conn_t *c, const struct sockaddr *addr) {
    c->client->connect_req.data = c;
    int rc = uv_tcp_connect(&c->client->connect_req, &c->tcp, addr, on_connect);
    if (rc != 0) fail_connect(c, rc, "");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    mc_conn_t *c = req->data;
    c->client->resolving = false;
    if (c->client->orphaned) {
        uv_freeaddrinfo(res);
        free(c->client);
        free(c);
        return;
    }
    if (mc_conn_closed(c)) {
        uv_freeaddrinfo(res);
        return;
    }
    if (status < 0 || !res) {
        fail_connect(c, status, "cannot resolve: ");
        uv_freeaddrinfo(res);
        return;
    }
    connect_to(c, res->ai_addr);
    uv_freeaddrinfo(res);
}

/* A client connection with its handles initialized, not yet connected; NULL if out of memory. */
static mc_conn_t *client_new(mc_loop_t *loop, const char *host, uint16_t port, size_t max_response_bytes,
                             const mc_client_callbacks_t *cb, mc_tls_ctx_t *tls, const char *server_name,
                             const char *expected_identity, const mc_proto_ops_t *ops, struct mc_tcp_link *link) {
    mc_conn_t *c = calloc(1, sizeof *c);
    mc_client_state_t *cl = calloc(1, sizeof *cl);
    if (!c || !cl || uv_tcp_init(&loop->uv, &c->tcp) != 0) {
        free(c);
        free(cl);
        return NULL;
    }
    uv_timer_init(&loop->uv, &c->timer);
    c->loop = loop;
    c->client = cl;
    c->tcp.data = c->timer.data = c;
    c->ops = ops;
    c->tx = &mc_plain_transport;
    c->handles_open = 2;
    c->read_stopped = true;
    cl->cb = *cb;
    cl->link = link;
    cl->port = port;
    cl->max_response_bytes = max_response_bytes ? max_response_bytes : 64 * 1024 * 1024;
    snprintf(cl->host, sizeof cl->host, "%s", host);
    int n = snprintf(cl->authority, sizeof cl->authority, "%s:%u", cl->host, (unsigned)port);
    cl->authority_len = n > 0 ? (size_t)n : 0;
    if (tls && mc_tls_conn_start(c, tls, server_name && server_name[0] ? server_name : host, expected_identity) != 0) {
        /* the handles are initialized: close them (the close callbacks free c) */
        mc_tls_conn_free(c);
        cl->cb = (mc_client_callbacks_t){0};
        mc_conn_close(c);
        return NULL;
    }
    return c;
}

mc_client_t *mc_client_connect(mc_loop_t *loop, const char *host, uint16_t port, size_t max_response_bytes,
                               const mc_client_callbacks_t *cb) {
    return (mc_client_t *)mc_client_open(loop, host, port, max_response_bytes, cb, NULL, NULL, NULL, &mc_h2_client_proto, NULL);
}

mc_client_t *mc_client_connect_http1(mc_loop_t *loop, const char *host, uint16_t port, size_t max_response_bytes,
                                     const mc_client_callbacks_t *cb) {
    return (mc_client_t *)mc_client_open(loop, host, port, max_response_bytes, cb, NULL, NULL, NULL, &mc_h1_client_proto, NULL);
}

mc_client_t *mc_client_connect_tls(mc_loop_t *loop, const char *host, uint16_t port, size_t max_response_bytes,
                                   const mc_client_callbacks_t *cb, mc_tls_ctx_t *tls, const char *server_name,
                                   const char *expected_identity) {
    if (!tls) return NULL;
    return (mc_client_t *)mc_client_open(loop, host, port, max_response_bytes, cb, tls, server_name, expected_identity,
                                         &mc_h2_client_proto, NULL);
}

mc_conn_t *mc_client_open(mc_loop_t *loop, const char *host, uint16_t port, size_t max_response_bytes,
                          const mc_client_callbacks_t *cb, mc_tls_ctx_t *tls, const char *server_name,
                          const char *expected_identity, const mc_proto_ops_t *ops, struct mc_tcp_link *link) {
    mc_conn_t *c = client_new(loop, host, port, max_response_bytes, cb, tls, server_name, expected_identity, ops, link);
    if (!c) return NULL;
    mc_client_state_t *cl = c->client;
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    if (uv_ip4_addr(host, port, &a4) == 0) {
        connect_to(c, (const struct sockaddr *)&a4);
    } else if (uv_ip6_addr(host, port, &a6) == 0) {
        connect_to(c, (const struct sockaddr *)&a6);
    } else {
        char service[8];
        snprintf(service, sizeof service, "%u", (unsigned)port);
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        cl->resolve.data = c;
        cl->resolving = true;
        int rc = uv_getaddrinfo(&loop->uv, &cl->resolve, on_resolved, host, service, &hints);
        if (rc != 0) {
            cl->resolving = false;
            fail_connect(c, rc, "cannot resolve: ");
        }
    }
    return c;
}

bool mc_client_peer_gone(mc_conn_t *c) {
    uv_os_fd_t fd;
    if (uv_fileno((const uv_handle_t *)&c->tcp, &fd) != 0) return false; /* not open (the fuzz seam) */
    char byte;
    ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* The names of the deadline headers mc_client_call adds. */
static const char grpc_timeout_name[] = "grpc-timeout";
static const char micro_timeout_name[] = "timeout";

/* Submits a request (HEADERS, then the body from r's queue) as a new call; NULL if the
 * connection cannot take it. */
static mc_request_t *submit(mc_conn_t *c, const char *method, const char *path, const mc_header_t *h, size_t nh,
                            const uint8_t *body, size_t len, bool streaming, bool grpc_frame, void *ctx, bool *invalid) {
    *invalid = false;
    if (grpc_frame && (c->ops == &mc_h1_client_proto || len > UINT32_MAX)) {
        *invalid = true;
        return NULL;
    }
    if (!mc_client_usable((mc_client_t *)c)) return NULL;
    /* An idle connection may have lost its peer since the loop last read it (a server killed
     * between two calls): the EOF already waits in the kernel. Look before sending, so that the
     * call is refused (safe to retry elsewhere) rather than sent into a dead connection, where it
     * could only fail as "maybe processed". A busy connection is read every turn: no syscall. */
    if (c->active == 0 && mc_client_peer_gone(c)) {
        c->client->peer_gone = true;
        return NULL;
    }
    if (c->ops == &mc_h1_client_proto) {
        mc_request_t *r = streaming ? mc_h1_client_open_stream(c, method, path, h, nh, invalid)
                                    : mc_h1_client_submit(c, method, path, h, nh, body, len, invalid);
        if (r) r->client.done_ctx = ctx;
        return r;
    }
    mc_request_t *r = mc_request_new(c->loop, c, MC_PROTO_H2_CLIENT);
    if (!r) return NULL;
    uint8_t prefix[5] = {0, (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len};
    if ((grpc_frame && mc_buf_append(&r->sendq, prefix, sizeof prefix) != 0) || mc_buf_append(&r->sendq, body, len) != 0) {
        mc_request_release(r);
        return NULL;
    }
    r->streaming = streaming;
    if (mc_h2c_submit(c, r, method, path, h, nh) != 0) {
        mc_request_release(r);
        return NULL;
    }
    r->client.done_ctx = ctx;
    r->head_sent = true;
    c->active++;
    return r;
}

/* The value formatted last on this thread: a client's first attempts all carry its whole
 * timeout, so most calls format the value the one before them did. */
static _Thread_local struct {
    unsigned flags;
    uint64_t timeout_ms;
    size_t len;
    char text[24];
} last_deadline __attribute__((tls_model("initial-exec")));

static size_t format_deadline(unsigned flags, uint64_t timeout_ms, char *out);

size_t mc_deadline_header_value(unsigned flags, uint64_t timeout_ms, char *out) {
    flags &= MC_CALL_GRPC_TIMEOUT;
    if (last_deadline.len == 0 || last_deadline.flags != flags || last_deadline.timeout_ms != timeout_ms) {
        last_deadline.len = format_deadline(flags, timeout_ms, last_deadline.text);
        last_deadline.flags = flags;
        last_deadline.timeout_ms = timeout_ms;
    }
    memcpy(out, last_deadline.text, last_deadline.len);
    return last_deadline.len;
}

static size_t format_deadline(unsigned flags, uint64_t timeout_ms, char *out) {
    if (flags & MC_CALL_GRPC_TIMEOUT) {
        /* gRPC allows 8 digits: milliseconds, else seconds, else hours (rounded up, saturating) */
        static const struct { char unit; uint64_t ms; } units[] = {{'m', 1}, {'S', 1000}, {'H', 3600000}};
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            uint64_t v = timeout_ms / units[i].ms + (timeout_ms % units[i].ms != 0);
            if (v < 100000000) {
                size_t n = mc_format_decimal(out, v);
                out[n] = units[i].unit;
                return n + 1;
            }
        }
        memcpy(out, "99999999H", 9);
        return 9;
    }
    /* nanoseconds, saturating at what a signed 64-bit reader takes */
    uint64_t cap = (uint64_t)INT64_MAX / 1000000;
    return mc_format_decimal(out, timeout_ms > cap ? (uint64_t)INT64_MAX : timeout_ms * 1000000);
}

int mc_client_call(mc_client_t *client, const char *method, const char *path, const mc_header_t *h, size_t nh,
                   const uint8_t *body, size_t len, uint64_t timeout_ms, unsigned flags, mc_call_done_fn done,
                   void *ctx, int32_t *stream_id) {
    bool invalid;
    mc_request_t *r;
    if (timeout_ms && (flags & (MC_CALL_GRPC_TIMEOUT | MC_CALL_MICRO_TIMEOUT))) {
        /* the caller's headers and the deadline's, in one array for the protocol to send */
        mc_header_t stack_h[32];
        mc_header_t *all = nh < 32 ? stack_h : malloc((nh + 1) * sizeof *all);
        if (!all) return -1;
        if (nh) memcpy(all, h, nh * sizeof *h);
        char value[24];
        bool grpc = flags & MC_CALL_GRPC_TIMEOUT;
        all[nh] = (mc_header_t){.name = grpc ? grpc_timeout_name : micro_timeout_name, .name_len = grpc ? 12 : 7, .value = value,
                                .value_len = mc_deadline_header_value(flags, timeout_ms, value)};
        r = submit((mc_conn_t *)client, method, path, all, nh + 1, body, len, false, flags & MC_CALL_GRPC_FRAME, ctx, &invalid);
        if (all != stack_h) free(all);
    } else {
        r = submit((mc_conn_t *)client, method, path, h, nh, body, len, false, flags & MC_CALL_GRPC_FRAME, ctx, &invalid);
    }
    if (!r) return invalid ? -2 : -1;
    r->client.done = done;
    /* without a deadline (a stopping loop) the call still completes: when the connection closes */
    if (timeout_ms) (void)mc_request_set_deadline(r, timeout_ms);
    if (stream_id) *stream_id = r->stream_id;
    return 0;
}

int mc_client_stream(mc_client_t *client, const char *method, const char *path, const mc_header_t *h, size_t nh,
                     const mc_stream_callbacks_t *cb, void *ctx, int32_t *stream_id, mc_request_t **req) {
    bool invalid;
    mc_request_t *r = submit((mc_conn_t *)client, method, path, h, nh, NULL, 0, true, false, ctx, &invalid);
    if (!r) return invalid ? -2 : -1;
    r->client.scb = *cb;
    r->client.done = cb->done;
    if (stream_id) *stream_id = r->stream_id;
    if (req) *req = r;
    return 0;
}

/* Resets r's stream; its done follows at the connection's next pump. */
static void reset_call(mc_conn_t *c, mc_request_t *r) {
    r->client.cancelled = true;
    mc_h2c_reset(c, r, E_CANCEL);
}

void mc_client_cancel(mc_client_t *client, int32_t stream_id) {
    mc_conn_t *c = (mc_conn_t *)client;
    if (mc_conn_closed(c)) return;
    if (c->ops == &mc_h1_client_proto) {
        mc_request_t *r = c->h1_cur;
        if (!r || r->stream_id != stream_id) return;
        r->client.cancelled = true;
        mc_h1_client_end(c, r);
        return;
    }
    mc_request_t *r = mc_h2c_find(c, stream_id);
    if (r) reset_call(c, r);
}

void mc_client_time_out(mc_request_t *r) {
    mc_conn_t *c = r->conn;
    if (!r->client.done || r->client.cancelled) return;
    /* A loop held up past the deadline (long work on it, a starved machine) sweeps its deadlines
     * before it reads: the answer may be waiting in the socket. The call gets one more turn, to
     * read it, rather than a timeout with its answer unread (once: a connection busy with other
     * calls has input waiting most of the time). */
    if (c && !mc_conn_closed(c) && !r->client.deadline_graced && mc_conn_input_waiting(c)) {
        r->client.deadline_graced = true;
        if (mc_loop_arm_deadline(r->loop, &r->deadline, 1) == 0) return;
    }
    r->client.timed_out = true;
    /* a closed connection completes its calls itself */
    if (!c || mc_conn_closed(c)) return;
    if (c->ops == &mc_h1_client_proto) mc_h1_client_end(c, r);
    else if (c->h2c) reset_call(c, r);
}

int mc_client_usable(const mc_client_t *client) {
    const mc_conn_t *c = (const mc_conn_t *)client;
    if (!c->client->connected || c->state != MC_CONN_OPEN || c->client->peer_gone) return 0;
    if (c->ops == &mc_h1_client_proto) return c->h1_cur == NULL; /* one call at a time */
    return !c->client->goaway && mc_h2c_usable(c);
}

unsigned mc_client_active(const mc_client_t *client) { return ((const mc_conn_t *)client)->active; }

void mc_client_close(mc_client_t *client) {
    mc_conn_t *c = (mc_conn_t *)client;
    if (c->client->resolving) uv_cancel((uv_req_t *)&c->client->resolve);
    mc_conn_close(c);
}

#ifdef MC_FUZZING
/* mc_client_connect without a socket (internal.h): the connection as on_connect leaves it. */
mc_client_t *mc_fuzz_client_open(mc_loop_t *loop, size_t max_response_bytes, const mc_client_callbacks_t *cb) {
    mc_conn_t *c = client_new(loop, "fuzz", 80, max_response_bytes, cb, NULL, NULL, NULL, &mc_h2_client_proto, NULL);
    if (!c) return NULL;
    c->client->connect_req.data = c;
    on_connect(&c->client->connect_req, 0);
    return (mc_client_t *)c;
}

mc_client_t *mc_fuzz_client_open_http1(mc_loop_t *loop, size_t max_response_bytes, const mc_client_callbacks_t *cb) {
    mc_conn_t *c = client_new(loop, "fuzz", 80, max_response_bytes, cb, NULL, NULL, NULL, &mc_h1_client_proto, NULL);
    if (!c) return NULL;
    c->client->connect_req.data = c;
    on_connect(&c->client->connect_req, 0);
    return (mc_client_t *)c;
}
#endif
