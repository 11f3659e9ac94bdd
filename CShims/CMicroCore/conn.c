/*
 * Server connections: read, sniff the protocol (the HTTP/2 client preface, else HTTP/1.1),
 * queue output and flush it once per loop turn (uv_try_write, then uv_write for the rest),
 * header-read and idle timers, and an orderly close that aborts whatever is still in flight.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifdef MC_FUZZING
/* The fuzzing seam (internal.h): no socket; the harness plays the kernel for writes. */
#define uv_try_write(s, b, nbufs) mc_fuzz_try_write(((uv_handle_t *)(s))->data, (const uint8_t *)(b)->base, (b)->len)
#define uv_write(w, s, b, nbufs, cb) ((void)(b), 0) /* completes with mc_fuzz_conn_written */
#endif

#define MC_H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define MC_H2_PREFACE_LEN 24
#define MC_OUT_HIGH_WATER (4 * 1024 * 1024)
#define MC_TLS_LINGER_MS 2000

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

/* Here rather than in listener.c so that the fuzz harnesses, which link no listener, have it. */
void mc_server_log(mc_server_t *s, int level, const char *fmt, ...) {
    if (!s->cb.on_log) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->cb.on_log(s->cb.ctx, level, msg);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void tls_linger(mc_conn_t *c);

void mc_conn_start_reading(mc_conn_t *c) {
    c->read_stopped = false;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}
static void on_timer(uv_timer_t *t);

static bool want_reading(mc_conn_t *c) {
    if (c->closing || c->eof || c->h1_paused || c->close_after_flush) return false;
    if (c->h1_stream && c->h1_stream->unconsumed > MC_H1_STREAM_WINDOW) return false; /* a slow stream reader */
    size_t tls_pending = c->tls ? mc_tls_wire(c)->len : 0; /* TLS hook */
    return c->out.len + c->inflight.len + tls_pending <= MC_OUT_HIGH_WATER;
}

static void update_reading(mc_conn_t *c) {
    if (c->closing) return;
    bool want = want_reading(c);
    if (want && c->read_stopped) {
        c->read_stopped = false;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    } else if (!want && !c->read_stopped) {
        c->read_stopped = true;
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
}
/* A new connection (its TCP handle initialized) joins its server loop: timer, list, counts. */
static void conn_attach(mc_conn_t *c, mc_server_loop_t *sl) {
    c->server = sl->server;
    c->sl = sl;
    c->loop = sl->loop;
    c->tcp.data = c;
    c->timer.data = c;
    uv_timer_init(&sl->loop->uv, &c->timer);
    c->handles_open = 2;
    c->next = sl->conns;
    if (sl->conns) sl->conns->prev = c;
    sl->conns = c;
}


void mc_conn_open(mc_server_loop_t *sl, int fd) {
    mc_loop_t *loop = sl->loop;
    mc_server_t *s = sl->server;
    mc_conn_t *c = calloc(1, sizeof *c);
    if (!c || uv_tcp_init(&loop->uv, &c->tcp) != 0) {
        free(c);
        close(fd);
        atomic_fetch_sub(&loop->nconns, 1);
        mc_server_conn_gone(s);
        return;
    }
    conn_attach(c, sl);
    if (uv_tcp_open(&c->tcp, fd) != 0) {
        close(fd);
        mc_conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->header_deadline = uv_now(&loop->uv) + s->config.header_timeout_ms;
    /* TLS hook: the server's context at this moment (a reload changes it for later ones only) */
    pthread_mutex_lock(&s->tls_mu);
    mc_tls_ctx_t *ctx = s->tls;
    if (ctx) mc_tls_ctx_retain(ctx);
    pthread_mutex_unlock(&s->tls_mu);
    if (ctx) {
        int rc = mc_tls_conn_start(c, ctx, NULL, NULL);
        mc_tls_ctx_free(ctx);
        if (rc != 0) {
            mc_conn_close(c);
            return;
        }
    }
    if (atomic_load(&s->shutting_down)) {
        mc_conn_close(c);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    mc_conn_update_timer(c);
}

static void on_handle_closed(uv_handle_t *h) {
    mc_conn_t *c = h->data;
    if (--c->handles_open > 0) return;
    if (c->client) {
        mc_client_handles_closed(c);
        return;
    }
    mc_server_t *s = c->server;
    if (c->proto == MC_PROTO_H2 || c->proto == MC_PROTO_H2_CLIENT) mc_h2_free(c);
    else mc_h1_free(c);
    mc_buf_free(&c->in);
    mc_buf_free(&c->out);
    mc_buf_free(&c->inflight);
    mc_tls_conn_free(c);
    if (c->prev) c->prev->next = c->next;
    else c->sl->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    atomic_fetch_sub(&c->loop->nconns, 1);
    free(c);
    mc_server_conn_gone(s);
}

void mc_conn_close(mc_conn_t *c) {
    if (c->closing) return;
    c->closing = true;
    /* Off the flush list: the handles' close callbacks free c at the end of this loop turn, before
     * the next uv_prepare walks the list (a read or a job may have put c there this turn). */
    mc_loop_unmark_dirty(c->loop, c);
    /* Requests still in flight learn that their peer is gone; their memory stays theirs. */
    while (c->reqs) mc_request_abort(c->reqs);
    if (c->proto == MC_PROTO_H1) c->h1_cur = NULL; /* released by the abort above */
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

void mc_conn_write(mc_conn_t *c, const void *p, size_t n) {
    if (c->closing) return;
    if (mc_buf_append(&c->out, p, n) != 0) {
        mc_conn_close(c);
        return;
    }
    mc_loop_mark_dirty(c->loop, c);
}

static void on_write(uv_write_t *w, int status) {
    mc_conn_t *c = w->data;
    c->writing = false;
    c->inflight.len = 0;
    if (c->closing) return;
    if (status < 0) {
        mc_conn_close(c);
        return;
    }
    mc_loop_mark_dirty(c->loop, c);
}

static bool finished(mc_conn_t *c) {
    if (c->writing || c->out.len || (c->tls && mc_tls_wire(c)->len)) return false;
    bool done;
    if (c->proto == MC_PROTO_H2 || c->proto == MC_PROTO_H2_CLIENT) done = mc_h2_done(c);
    else done = (c->close_after_flush || c->eof) && c->active == 0 && !c->h1_paused;
    /* TLS hook: close_notify goes out before an orderly close */
    if (done && c->tls && mc_tls_shutdown(c)) return false;
    return done;
}

static void flush(mc_conn_t *c) {
    int more = 0;
    if ((c->proto == MC_PROTO_H2 || c->proto == MC_PROTO_H2_CLIENT) && (more = mc_h2_pump(c)) < 0) {
        mc_conn_close(c);
        return;
    }
    /* TLS hook: c->out holds plaintext; the records to write wait in the TLS wire buffer */
    mc_buf_t *pending = &c->out;
    if (c->tls) {
        if (mc_tls_encrypt(c) != 0) {
            mc_conn_close(c);
            return;
        }
        pending = mc_tls_wire(c);
    }
    if (!c->writing && pending->len) {
        uv_buf_t b = uv_buf_init((char *)pending->data, (unsigned)pending->len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n == UV_EAGAIN || n == UV_ENOSYS) n = 0;
        if (n < 0) {
            mc_conn_close(c);
            return;
        }
        mc_buf_consume(pending, (size_t)n);
        if (pending->len) {
            mc_buf_t t = c->inflight;
            c->inflight = *pending;
            *pending = t;
            pending->len = 0;
            b = uv_buf_init((char *)c->inflight.data, (unsigned)c->inflight.len);
            c->wreq.data = c;
            if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
                mc_conn_close(c);
                return;
            }
            c->writing = true;
        }
    }
    /* TLS hook: a refused handshake's answer is out: half-close and linger */
    if (c->tls && !c->client && mc_tls_failed(c) && !c->writing && !pending->len && !c->tls_linger) tls_linger(c);
    if (finished(c)) {
        mc_conn_close(c);
        return;
    }
    if (c->h1_stream) mc_h1_stream_flushed(c);
    /* nghttp2 had more than one pump's worth and the socket took it all: pump again */
    if (more > 0 && !c->writing) mc_loop_mark_dirty(c->loop, c);
    update_reading(c);
    mc_conn_update_timer(c);
}

void mc_flush_dirty(mc_loop_t *loop) {
    while (loop->dirty) {
        mc_conn_t *c = loop->dirty;
        loop->dirty = c->dirty_next;
        c->dirty = false;
        c->dirty_next = NULL;
        if (!c->closing) flush(c);
    }
}

void mc_conn_update_timer(mc_conn_t *c) {
    if (c->closing || c->client) return; /* clients: the caller's deadlines govern */
    uint64_t now = uv_now(&c->loop->uv), deadline;
    if (c->tls && mc_tls_failed(c)) {
        deadline = now + MC_TLS_LINGER_MS; /* TLS hook: a refused handshake lingers briefly */
    } else if (c->header_deadline) {
        deadline = c->header_deadline;
    } else if (c->writing || c->h1_cur) {
        /* output the peer does not read, or a body that stalls: restarted on each progress */
        deadline = now + c->server->config.idle_timeout_ms;
    } else if (c->active || c->streams) {
        /* handlers at work: their own deadlines govern, not ours */
        uv_timer_stop(&c->timer);
        return;
    } else {
        deadline = now + c->server->config.idle_timeout_ms;
    }
    uv_timer_start(&c->timer, on_timer, deadline > now ? deadline - now : 0, 0);
}

static void on_timer(uv_timer_t *t) {
    mc_conn_t *c = t->data;
    if (c->closing) return;
    if (c->proto == MC_PROTO_H1 && c->header_deadline) {
        mc_h1_timeout(c);
        return;
    }
    if (c->proto == MC_PROTO_H2 && !c->header_deadline) {
        mc_h2_shutdown(c); /* GOAWAY, then close once flushed */
        mc_loop_mark_dirty(c->loop, c);
        return;
    }
    mc_conn_close(c);
}

void mc_conn_request_done(mc_conn_t *c) {
    mc_loop_mark_dirty(c->loop, c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    mc_conn_t *c = h->data;
    buf->base = (char *)c->loop->readbuf;
    buf->len = MC_READ_BUFFER_SIZE;
}

static int sniff(mc_conn_t *c, const uint8_t *p, size_t n) {
    const uint8_t *data = p;
    size_t len = n;
    if (c->in.len) {
        if (mc_buf_append(&c->in, p, n) != 0) return -1;
        data = c->in.data;
        len = c->in.len;
    }
    if (!c->tls && data[0] == 0x16 && c->server) {
        /* A TLS handshake record on a plaintext port: a fatal handshake_failure alert (plain, as
         * alerts before a handshake are), a log line, and the connection closes. */
        static const uint8_t alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28};
        mc_server_log(c->server, MC_LOG_WARNING, "a TLS ClientHello on a plaintext port; connection closed");
        mc_buf_free(&c->in);
        c->proto = MC_PROTO_H1;
        mc_h1_init(c);
        c->close_after_flush = true;
        c->header_deadline = 0;
        mc_conn_write(c, alert, sizeof alert);
        return 0;
    }
    size_t cmp = len < MC_H2_PREFACE_LEN ? len : MC_H2_PREFACE_LEN;
    bool h2 = memcmp(data, MC_H2_PREFACE, cmp) == 0;
    if (h2 && len < MC_H2_PREFACE_LEN) {
        if (!c->in.len && mc_buf_append(&c->in, p, n) != 0) return -1;
        return 0; /* a prefix of the preface: wait for more */
    }
    mc_buf_t held = c->in;
    c->in = (mc_buf_t){0};
    int rc;
    if (h2) {
        c->proto = MC_PROTO_H2;
        rc = mc_h2_init(c);
        if (rc == 0) rc = mc_h2_feed(c, data, len);
        c->header_deadline = 0;
    } else {
        c->proto = MC_PROTO_H1;
        mc_h1_init(c);
        rc = mc_h1_feed(c, data, len);
    }
    mc_buf_free(&held);
    return rc;
}

/* Plaintext bytes to the protocol (from the socket, or decrypted by tls.c). */
static int feed(mc_conn_t *c, const uint8_t *p, size_t n) {
    if (c->proto == MC_PROTO_H2 || c->proto == MC_PROTO_H2_CLIENT) return mc_h2_feed(c, p, n);
    if (c->proto == MC_PROTO_H1) return mc_h1_feed(c, p, n);
    return sniff(c, p, n);
}

static void on_eof(mc_conn_t *c, ssize_t nread) {
    /* EOF after complete HTTP/1 requests (a half-closed client) still gets every answer,
     * including requests still waiting in the input buffer */
    if (nread == UV_EOF && c->proto == MC_PROTO_H1 && (c->active || c->out.len || c->writing || c->h1_paused)) {
        c->eof = true;
        mc_request_t *r = c->h1_stream;
        if (r && !r->in_ended && !r->responded && !r->aborted) {
            /* a half-close ends the client's messages, as EOS would */
            r->in_ended = true;
            c->server->cb.on_body(c->server->cb.ctx, r, NULL, 0, 1);
        }
        update_reading(c);
        mc_loop_mark_dirty(c->loop, c);
        return;
    }
    mc_conn_close(c);
}

/* TLS hook: the handshake failed. The peer gets the alert (or a plain 400), then our FIN; what
 * it still sends is read and dropped until its EOF (bounded by a timer), because closing with
 * unread input would reset the connection and destroy the alert before the peer reads it. */
static void tls_failed(mc_conn_t *c) {
    if (c->client) {
        mc_client_tls_failed(c);
        return;
    }
    mc_server_log(c->server, MC_LOG_WARNING, "TLS handshake refused: %s", mc_tls_error(c));
    c->header_deadline = 0;
    mc_loop_mark_dirty(c->loop, c);
}

static void tls_linger(mc_conn_t *c) {
    uv_os_fd_t fd;
    c->tls_linger = true;
    if (uv_fileno((const uv_handle_t *)&c->tcp, &fd) == 0) shutdown(fd, SHUT_WR);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    (void)buf;
    mc_conn_t *c = stream->data;
    if (c->closing) return;
    if (c->tls && !c->client && mc_tls_failed(c)) {
        /* TLS hook: a refused handshake; input is dropped until the peer's EOF */
        if (nread < 0) mc_conn_close(c);
        return;
    }
    if (nread < 0) {
        if (c->client && c->tls && !c->client->connected) {
            mc_client_tls_failed(c); /* the server hung up during the handshake */
            return;
        }
        on_eof(c, nread);
        return;
    }
    if (nread == 0) return;
    const uint8_t *p = c->loop->readbuf;
    size_t n = (size_t)nread;
    int rc;
    if (c->tls) {
        rc = mc_tls_read(c, p, n, feed);
        if (c->closing) return;
        if (rc == 1) {
            on_eof(c, UV_EOF);
            return;
        }
        if (rc == 2 || (rc != 0 && mc_tls_failed(c) && c->client)) {
            tls_failed(c);
            return;
        }
    } else {
        if (c->client) mc_client_first_bytes(c, p, n); /* TLS hook: a TLS-only server? */
        rc = feed(c, p, n);
    }
    if (rc != 0) {
        mc_conn_close(c);
        return;
    }
    if (c->closing) return;
    mc_loop_mark_dirty(c->loop, c);
    update_reading(c);
    mc_conn_update_timer(c);
}

void mc_conn_shutdown_all(mc_server_loop_t *sl, bool force) {
    mc_conn_t *next;
    for (mc_conn_t *c = sl->conns; c; c = next) {
        next = c->next;
        if (c->closing) continue;
        c->draining = true;
        if (force) {
            mc_conn_close(c);
        } else if (c->proto == MC_PROTO_H2) {
            mc_h2_shutdown(c);
            mc_loop_mark_dirty(c->loop, c);
        } else if (c->proto == MC_PROTO_H1) {
            mc_h1_shutdown(c);
        } else {
            mc_conn_close(c);
        }
    }
}

#ifdef MC_FUZZING
/* mc_conn_open without a socket: the handle is initialized but never opened, so libuv never
 * polls it; bytes come in through mc_fuzz_conn_read. */
mc_conn_t *mc_fuzz_conn_open(mc_server_loop_t *sl) {
    mc_loop_t *loop = sl->loop;
    mc_conn_t *c = calloc(1, sizeof *c);
    if (!c || uv_tcp_init(&loop->uv, &c->tcp) != 0) {
        free(c);
        return NULL;
    }
    atomic_fetch_add(&loop->nconns, 1);
    conn_attach(c, sl);
    if (sl->server->tls && mc_tls_conn_start(c, sl->server->tls, NULL, NULL) != 0) {
        mc_conn_close(c);
        return NULL;
    }
    c->header_deadline = uv_now(&loop->uv) + c->server->config.header_timeout_ms;
    mc_conn_start_reading(c); /* uv_read_start fails (not open); what counts is read_stopped */
    mc_conn_update_timer(c);
    return c;
}

/* What libuv does when the socket is readable: on_alloc, then on_read with what was read. */
void mc_fuzz_conn_read(mc_conn_t *c, const uint8_t *p, ssize_t n) {
    uv_buf_t buf;
    on_alloc((uv_handle_t *)&c->tcp, MC_READ_BUFFER_SIZE, &buf);
    if (n > (ssize_t)buf.len) n = (ssize_t)buf.len;
    if (n > 0) memcpy(buf.base, p, (size_t)n);
    on_read((uv_stream_t *)&c->tcp, n, &buf);
}

/* The uv_write left in flight by flush completes (UV_ECANCELED when the handle closes). */
void mc_fuzz_conn_written(mc_conn_t *c, int status) {
    if (c->writing) on_write(&c->wreq, status);
}

/* The timer fires now, if it is running (a one-shot timer is stopped before its callback). */
void mc_fuzz_conn_timer(mc_conn_t *c) {
    if (c->closing || !uv_is_active((uv_handle_t *)&c->timer)) return;
    uv_timer_stop(&c->timer);
    on_timer(&c->timer);
}
#endif
