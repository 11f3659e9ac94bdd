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
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#ifdef MC_FUZZING
/* The fuzzing seam (internal.h): no socket; the harness plays the kernel for writes. */
#define uv_try_write(s, b, nbufs) mc_fuzz_try_write(((uv_handle_t *)(s))->data, (const uint8_t *)(b)->base, (b)->len)
#define uv_write(w, s, b, nbufs, cb) ((void)(b), 0) /* completes with mc_fuzz_conn_written */
#endif

#define MC_OUT_HIGH_WATER (4 * 1024 * 1024)
#define MC_LINGER_MS 2000

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

void mc_server_config_init(mc_server_config_t *c) {
    memset(c, 0, sizeof *c);
    c->backlog = 4096;
    c->max_header_bytes = 16 * 1024;
    c->max_body_bytes = 4 * 1024 * 1024;
    c->max_concurrent_streams = 250;
    c->max_pipelined = 16;
    c->max_connections = 0;
    c->header_timeout_ms = 10 * 1000;
    c->idle_timeout_ms = 60 * 1000;
    c->read_timeout_ms = 60 * 1000;
    c->write_timeout_ms = 30 * 1000;
    c->max_buffered_body_bytes = 16 * 1024 * 1024;
    c->stream_window = 1024 * 1024;
    c->connection_window = 16 * 1024 * 1024;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void linger(mc_conn_t *c);

void mc_conn_start_reading(mc_conn_t *c) {
    c->read_stopped = false;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}
static void on_timer(uv_timer_t *t);

size_t mc_conn_out_pending(const mc_conn_t *c) { return c->out.len + c->inflight.len + c->tx->held(c); }

static bool want_reading(mc_conn_t *c) {
    if (c->state == MC_CONN_LINGERING) return true; /* reads only to discard, until the peer's EOF */
    if (c->state >= MC_CONN_HALF_CLOSED || c->ops->input_full(c)) return false;
    return mc_conn_out_pending(c) <= MC_OUT_HIGH_WATER;
}

void mc_conn_body_held(mc_conn_t *c, mc_request_t *r, ptrdiff_t n) {
    if (n < 0 && (size_t)-n > r->server.body_held) n = -(ptrdiff_t)r->server.body_held;
    r->server.body_held = (size_t)((ptrdiff_t)r->server.body_held + n);
    if (c) c->body_buffered = (size_t)((ptrdiff_t)c->body_buffered + n);
}

static void update_reading(mc_conn_t *c) {
    if (mc_conn_closed(c)) return;
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
    c->ops = &mc_sniff_proto;
    c->tx = &mc_plain_transport;
    uv_timer_init(&sl->loop->uv, &c->timer);
    c->handles_open = 2;
    mc_server_retain(c->server); /* released when the connection is freed */
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
    /* the server's TLS context at this moment (a reload changes it for later ones only) */
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
    c->ops->free(c);
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
    mc_server_release(s);
}

void mc_conn_close(mc_conn_t *c) {
    if (mc_conn_closed(c)) return;
    c->state = MC_CONN_CLOSED;
    /* Off the flush list: the handles' close callbacks free c at the end of this loop turn, before
     * the next uv_prepare walks the list (a read or a job may have put c there this turn). */
    mc_loop_unmark_dirty(c->loop, c);
    /* Requests still in flight learn that their peer is gone; their memory stays theirs. */
    while (c->reqs) mc_request_abort(c->reqs);
    c->h1_cur = NULL; /* released by the abort above */
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

void mc_conn_write(mc_conn_t *c, const void *p, size_t n) {
    if (mc_conn_closed(c)) return;
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
    if (mc_conn_closed(c)) return;
    if (status < 0) {
        mc_conn_close(c);
        return;
    }
    c->write_since = uv_now(&c->loop->uv); /* the peer took bytes: progress (reset if none wait) */
    mc_loop_mark_dirty(c->loop, c);
}

/* Nothing left to do or to write: the connection may end (the transport's last words first). */
static bool finished(mc_conn_t *c) {
    if (c->writing || mc_conn_out_pending(c) || !c->ops->done(c)) return false;
    return !c->tx->finish(c);
}

/* libuv takes lengths as unsigned int: a buffer is written in pieces of at most this. */
#define MC_WRITE_PIECE ((size_t)1 << 30)
#define MC_WRITE_PIECES 8

static void flush(mc_conn_t *c) {
    int more = 0;
    if (c->ops->pump && (more = c->ops->pump(c)) < 0) {
        mc_conn_close(c);
        return;
    }
    /* c->out holds what the protocol wrote; the transport points at what the socket takes (TLS:
     * records, made only up to its own mark, so that c->out and with it the producers feel the
     * peer's pace) */
    mc_buf_t *pending = NULL;
    int tx_more = c->tx->seal(c, &pending);
    if (tx_more < 0) {
        mc_conn_close(c);
        return;
    }
    uint64_t now = uv_now(&c->loop->uv);
    if (c->state == MC_CONN_LINGERING) pending->len = 0; /* the write side is shut: nothing more can go out */
    if (!c->writing && pending->len) {
        uv_buf_t b = uv_buf_init((char *)pending->data, (unsigned)(pending->len < MC_WRITE_PIECE ? pending->len : MC_WRITE_PIECE));
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n == UV_EAGAIN || n == UV_ENOSYS) n = 0;
        if (n < 0) {
            mc_conn_close(c);
            return;
        }
        if (n > 0) c->write_since = now;
        mc_buf_consume(pending, (size_t)n);
        if (pending->len > MC_WRITE_PIECE * MC_WRITE_PIECES) {
            mc_server_log(c->server, MC_LOG_ERROR, "output of %zu bytes exceeds what one write takes; connection closed",
                          pending->len);
            mc_conn_close(c);
            return;
        }
        if (pending->len) {
            mc_buf_t t = c->inflight;
            c->inflight = *pending;
            *pending = t;
            pending->len = 0;
            uv_buf_t bufs[MC_WRITE_PIECES];
            unsigned nbufs = 0;
            for (size_t off = 0; off < c->inflight.len; off += MC_WRITE_PIECE) {
                size_t piece = c->inflight.len - off < MC_WRITE_PIECE ? c->inflight.len - off : MC_WRITE_PIECE;
                bufs[nbufs++] = uv_buf_init((char *)c->inflight.data + off, (unsigned)piece);
            }
            c->wreq.data = c;
            if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, nbufs, on_write) != 0) {
                mc_conn_close(c);
                return;
            }
            c->writing = true;
        }
    }
    if (!mc_conn_out_pending(c)) c->write_since = 0;
    else if (!c->write_since) c->write_since = now;
    if (c->state != MC_CONN_LINGERING && finished(c)) {
        /* this side ends the connection while the peer may still be sending: linger */
        if (!c->client && c->state == MC_CONN_ENDING) linger(c);
        else mc_conn_close(c);
        return;
    }
    if (c->h1_stream || (!c->client && c->h1_head && c->h1_head->server.h1_chunked)) mc_h1_stream_flushed(c);
    else if (c->client && c->h1_cur && c->h1_cur->streaming) mc_h1_client_stream_flushed(c);
    if (c->ops->flushed) c->ops->flushed(c);
    if (mc_conn_closed(c)) return;
    /* the protocol (or TLS) had more than one pump's worth and the socket took it all: again */
    if ((more > 0 || tx_more > 0) && !c->writing) mc_loop_mark_dirty(c->loop, c);
    update_reading(c);
    mc_conn_update_timer(c);
}

void mc_flush_dirty(mc_loop_t *loop) {
    while (loop->dirty) {
        mc_conn_t *c = loop->dirty;
        loop->dirty = c->dirty_next;
        c->dirty = false;
        c->dirty_next = NULL;
        if (!mc_conn_closed(c)) flush(c);
    }
}

/* After an idle GOAWAY, or between a shutdown notice and the final GOAWAY: the peer's requests
 * already on the way still get in. */
#define MC_GOAWAY_GRACE_MS 1000

/* Nothing in flight either way. */
static bool conn_idle(const mc_conn_t *c) {
    return !c->active && !c->streams && !c->h1_cur && !c->writing && !c->h1_stream && !mc_conn_out_pending(c);
}

static uint64_t earliest(uint64_t a, uint64_t b) { return !a ? b : !b ? a : a < b ? a : b; }
static uint64_t after(uint64_t since, uint32_t timeout_ms) { return since && timeout_ms ? since + timeout_ms : 0; }

/* The connection's deadlines, each for one state it can be in; the timer fires at the earliest.
 *  - LINGERING: the peer's EOF, MC_LINGER_MS at most;
 *  - reading a request head (HTTP/1.1) or the TLS handshake: the header timeout;
 *  - output waiting that the peer does not take: the write timeout, from the last progress;
 *  - a request body awaited: the read timeout (HTTP/1.1 here; HTTP/2 per stream, checked lazily
 *    at stream_check_at since a stream's deadline only moves later);
 *  - after an idle GOAWAY or a shutdown notice: its grace;
 *  - nothing in flight: the idle timeout;
 *  - handlers at work with nothing else waiting: none (their own deadlines govern). */
void mc_conn_update_timer(mc_conn_t *c) {
    if (mc_conn_closed(c) || c->client) return; /* clients: the caller's deadlines govern */
    const mc_server_config_t *cfg = &c->server->config;
    uint64_t now = uv_now(&c->loop->uv), deadline = 0;
    if (c->state == MC_CONN_LINGERING) {
        deadline = c->linger_until;
    } else {
        deadline = earliest(c->header_deadline, c->close_at);
        deadline = earliest(deadline, after(c->write_since, cfg->write_timeout_ms));
        deadline = earliest(deadline, after(c->read_since, cfg->read_timeout_ms));
        if (c->ops->check_streams && c->streams) {
            if (!c->stream_check_at) {
                uint32_t t = cfg->read_timeout_ms && cfg->write_timeout_ms
                                 ? (cfg->read_timeout_ms < cfg->write_timeout_ms ? cfg->read_timeout_ms : cfg->write_timeout_ms)
                                 : (cfg->read_timeout_ms ? cfg->read_timeout_ms : cfg->write_timeout_ms);
                c->stream_check_at = t ? now + t : 0;
            }
            deadline = earliest(deadline, c->stream_check_at);
        }
        if (conn_idle(c)) {
            if (!c->idle_since) c->idle_since = now;
            /* not while a request head is awaited (its own timeout) or the close is set */
            if (!c->close_at && !c->header_deadline) deadline = earliest(deadline, c->idle_since + cfg->idle_timeout_ms);
        } else {
            c->idle_since = 0;
        }
    }
    if (!deadline) {
        uv_timer_stop(&c->timer);
        return;
    }
    uv_timer_start(&c->timer, on_timer, deadline > now ? deadline - now : 0, 0);
}

bool mc_conn_input_waiting(mc_conn_t *c) {
    uv_os_fd_t fd;
    int n = 0;
    if (c->read_stopped || uv_fileno((const uv_handle_t *)&c->tcp, &fd) != 0) return false;
    return ioctl(fd, FIONREAD, &n) == 0 && n > 0;
}

static void on_timer(uv_timer_t *t) {
    mc_conn_t *c = t->data;
    if (mc_conn_closed(c)) return;
    const mc_server_config_t *cfg = &c->server->config;
    uint64_t now = uv_now(&c->loop->uv);
    if (c->state == MC_CONN_LINGERING) {
        if (now >= c->linger_until) mc_conn_close(c);
        else mc_conn_update_timer(c);
        return;
    }
    uint64_t write_due = after(c->write_since, cfg->write_timeout_ms);
    if (write_due && now >= write_due) {
        mc_server_log(c->server, MC_LOG_DEBUG, "the peer took no output for %u ms; connection closed", cfg->write_timeout_ms);
        mc_conn_close(c);
        return;
    }
    /* A loop held up by long work (a handler that blocks it, a starved machine) runs its timers
     * before it reads: what the peer sent meanwhile still waits in the socket. A deadline on the
     * peer's input (a request head, a body, the idle timeout) that finds input waiting is looked at
     * again after this turn has read it: the peer was on time, the loop was not. Input is read as
     * long as it comes, within the head and body limits, so the wait is a turn or two. */
    uint64_t read_due = after(c->read_since, cfg->read_timeout_ms);
    bool header_over = c->header_deadline && now >= c->header_deadline;
    bool read_over = read_due && now >= read_due;
    bool idle_over = conn_idle(c) && c->idle_since && now >= c->idle_since + cfg->idle_timeout_ms && !c->close_at;
    if ((header_over || read_over || idle_over) && mc_conn_input_waiting(c)) {
        uv_timer_start(&c->timer, on_timer, 1, 0);
        return;
    }
    if (c->header_deadline && now >= c->header_deadline) {
        c->ops->header_timeout(c); /* a request head, a TLS handshake or a preface that did not come */
        if (!mc_conn_closed(c)) mc_loop_mark_dirty(c->loop, c);
        return;
    }
    if (read_over) {
        c->read_since = 0;
        c->ops->read_timeout(c); /* a body (or a stream's next message) that did not come */
        if (mc_conn_closed(c)) return;
        mc_loop_mark_dirty(c->loop, c);
        mc_conn_update_timer(c);
        return;
    }
    if (c->close_at && now >= c->close_at) {
        c->close_at = 0;
        if (!c->ops->grace_over(c)) {
            mc_conn_close(c);
            return;
        }
        mc_loop_mark_dirty(c->loop, c); /* a final GOAWAY: the streams already open finish */
    }
    if (c->ops->check_streams && c->stream_check_at && now >= c->stream_check_at) {
        c->stream_check_at = c->ops->check_streams(c, now);
        mc_loop_mark_dirty(c->loop, c);
    }
    if (conn_idle(c) && c->idle_since && now >= c->idle_since + cfg->idle_timeout_ms && !c->close_at &&
        !c->header_deadline) {
        /* HTTP/2 says why with a GOAWAY and closes after a grace for requests already on the way */
        if (!c->ops->idle(c)) {
            mc_conn_close(c);
            return;
        }
        c->close_at = now + MC_GOAWAY_GRACE_MS;
        mc_loop_mark_dirty(c->loop, c);
    }
    mc_conn_update_timer(c);
}

void mc_conn_request_done(mc_conn_t *c) {
    mc_loop_mark_dirty(c->loop, c);
}

/* An answer queued while its connection's read is handled, with nothing of that read behind it:
 * nothing more can join this write before the flush, so it goes now, before the application's
 * clean-up and the rest of the loop turn, which then overlap the trip to the peer (at 1 x 1 that
 * is the answer's latency). Answers to requests that came together still go in one write, made
 * by the last of them. Only what the socket takes at once: the rest, and any error, are the
 * flush's (the connection is never closed here, inside the application's callback). */
void mc_conn_write_early(mc_conn_t *c) {
    if (!c->reading || c->feed_follows || c->tx_follows || c->writing || c->state == MC_CONN_LINGERING ||
        mc_conn_closed(c))
        return;
    mc_buf_t *wire = NULL;
    if (c->tx->seal(c, &wire) < 0 || !wire->len) return;
    /* counted before the peer can see the answer (one writer, this loop: atomic for the readers
     * only), and taken back if the socket took nothing */
    uint64_t count = atomic_load_explicit(&c->sl->early_writes, memory_order_relaxed);
    atomic_store_explicit(&c->sl->early_writes, count + 1, memory_order_relaxed);
    uv_buf_t b = uv_buf_init((char *)wire->data, (unsigned)(wire->len < MC_WRITE_PIECE ? wire->len : MC_WRITE_PIECE));
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n <= 0) {
        atomic_store_explicit(&c->sl->early_writes, count, memory_order_relaxed);
        return;
    }
    mc_buf_consume(wire, (size_t)n);
    /* the flush's rule: what still waits counts from this progress, and nothing waiting is no
     * wait at all. (Set to now regardless, a loop turn held up after this write, before its
     * flush, read as a peer that took nothing for the write timeout and closed the connection.) */
    c->write_since = mc_conn_out_pending(c) ? uv_now(&c->loop->uv) : 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    mc_conn_t *c = h->data;
    buf->base = (char *)c->loop->readbuf;
    buf->len = MC_READ_BUFFER_SIZE;
}

/* Whether the first line, if it is complete here, ends as an HTTP/1.x request line does. */
static bool first_line_is_http1(const uint8_t *p, size_t n) {
    const uint8_t *eol = memchr(p, '\n', n < 8192 ? n : 8192);
    if (!eol) return true; /* not known yet: HTTP/1.1 decides */
    size_t len = (size_t)(eol - p);
    if (len && p[len - 1] == '\r') len--;
    return len >= 9 && (memcmp(p + len - 9, " HTTP/1.1", 9) == 0 || memcmp(p + len - 9, " HTTP/1.0", 9) == 0);
}

/* Switches c to the protocol its first bytes speak. */
static void speak(mc_conn_t *c, const mc_proto_ops_t *ops) {
    c->ops = ops;
    if (ops == &mc_h1_proto) mc_h1_init(c);
}

/* Ends a connection whose first bytes are no request with one message written as it is (a TLS
 * alert, a GOAWAY), then lingers. */
static void refuse(mc_conn_t *c, const uint8_t *msg, size_t len) {
    mc_buf_free(&c->in);
    speak(c, &mc_h1_proto); /* no session: the bytes go out as they are */
    mc_conn_enter(c, MC_CONN_ENDING);
    c->header_deadline = 0;
    mc_conn_write(c, msg, len);
}

static int sniff(mc_conn_t *c, const uint8_t *p, size_t n) {
    const uint8_t *data = p;
    size_t len = n;
    if (c->in.len) {
        if (mc_buf_append(&c->in, p, n) != 0) return -1;
        data = c->in.data;
        len = c->in.len;
    }
    if (c->tx == &mc_plain_transport && data[0] == 0x16) {
        /* A TLS handshake record on a plaintext port: a fatal handshake_failure alert (plain, as
         * alerts before a handshake are), a log line, and the connection closes. */
        static const uint8_t alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28};
        mc_server_log(c->server, MC_LOG_WARNING, "a TLS ClientHello on a plaintext port; connection closed");
        refuse(c, alert, sizeof alert);
        return 0;
    }
    size_t cmp = len < MC_H2_PREFACE_LEN ? len : MC_H2_PREFACE_LEN;
    bool h2 = memcmp(data, MC_H2_PREFACE, cmp) == 0;
    if (!h2 && cmp > 14 && memcmp(data, MC_H2_PREFACE, 14) == 0) {
        /* "PRI * HTTP/2.0" and then not the rest of the preface: an HTTP/2 client with a broken
         * preface gets GOAWAY(PROTOCOL_ERROR) (RFC 9113, 3.4), not an HTTP/1.1 answer */
        static const uint8_t goaway[] = {0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        refuse(c, goaway, sizeof goaway);
        return 0;
    }
    if (h2 && len < MC_H2_PREFACE_LEN) {
        if (!c->in.len && mc_buf_append(&c->in, p, n) != 0) return -1;
        return 0; /* a prefix of the preface: wait for more */
    }
    mc_buf_t held = c->in;
    c->in = (mc_buf_t){0};
    int rc;
    if (h2) {
        speak(c, &mc_h2_proto);
        rc = mc_h2_init(c);
        if (rc == 0) rc = mc_h2_feed(c, data, len);
        c->header_deadline = 0;
    } else {
        speak(c, &mc_h1_proto);
        c->h1_not_http = !first_line_is_http1(data, len);
        rc = mc_h1_feed(c, data, len);
    }
    mc_buf_free(&held);
    return rc;
}

bool mc_proto_never(mc_conn_t *c) {
    (void)c;
    return false;
}
/* Before the protocol is known nothing is in flight: done once either side ends. */
static bool sniff_done(mc_conn_t *c) { return c->state >= MC_CONN_HALF_CLOSED; }
static void nothing(mc_conn_t *c) { (void)c; }
bool mc_proto_no_eof(mc_conn_t *c, ssize_t err) {
    (void)c;
    (void)err;
    return false;
}

/* The first bytes decide: the HTTP/2 preface, else HTTP/1.1. */
const mc_proto_ops_t mc_sniff_proto = {
    .proto = MC_PROTO_UNKNOWN,
    .feed = sniff,
    .input_full = mc_proto_never,
    .done = sniff_done,
    .eof = mc_proto_no_eof,
    .header_timeout = mc_conn_close, /* a TLS handshake or the first bytes did not come */
    .read_timeout = mc_conn_close,
    .idle = mc_proto_never,
    .grace_over = mc_proto_never,
    .shutdown = mc_conn_close,
    .free = nothing,
};

static int plain_receive(mc_conn_t *c, const uint8_t *p, size_t n) {
    if (c->client) mc_client_first_bytes(c, p, n); /* a TLS-only server? noted for the error */
    return c->ops->feed(c, p, n);
}
static int plain_seal(mc_conn_t *c, mc_buf_t **wire) {
    *wire = &c->out;
    return 0;
}
static size_t plain_held(const mc_conn_t *c) {
    (void)c;
    return 0;
}

/* Plaintext: the protocol's bytes are the socket's. */
const mc_transport_ops_t mc_plain_transport = {
    .receive = plain_receive,
    .seal = plain_seal,
    .finish = mc_proto_never,
    .held = plain_held,
};

/* The handshake failed. A server's peer gets the alert (or a plain 400), then our FIN: the
 * connection is ENDING, so once that is written it lingers (what the peer still sends is read
 * and dropped until its EOF), because closing with unread input would reset the connection and
 * destroy the alert before the peer reads it. */
static void tls_failed(mc_conn_t *c) {
    if (c->client) {
        mc_client_tls_failed(c);
        return;
    }
    mc_server_log(c->server, MC_LOG_WARNING, "TLS handshake refused: %s", mc_tls_error(c));
    c->header_deadline = 0;
    mc_conn_enter(c, MC_CONN_ENDING);
    mc_loop_mark_dirty(c->loop, c);
    update_reading(c);
    mc_conn_update_timer(c);
}

static void linger(mc_conn_t *c) {
    uv_os_fd_t fd;
    mc_conn_enter(c, MC_CONN_LINGERING);
    c->linger_until = uv_now(&c->loop->uv) + MC_LINGER_MS;
    if (uv_fileno((const uv_handle_t *)&c->tcp, &fd) == 0) shutdown(fd, SHUT_WR);
    if (c->read_stopped) mc_conn_start_reading(c);
    mc_conn_update_timer(c);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    mc_conn_t *c = stream->data;
    if (mc_conn_closed(c)) return;
    if (c->state == MC_CONN_LINGERING) {
        if (nread < 0) mc_conn_close(c); /* input is dropped until the peer's EOF */
        return;
    }
    if (nread < 0) {
        /* EOF after complete requests (a half-closed HTTP/1.1 client) still gets every answer */
        if (c->ops->eof(c, nread)) {
            update_reading(c);
            if (!mc_conn_closed(c)) mc_loop_mark_dirty(c->loop, c);
            return;
        }
        mc_conn_close(c);
        return;
    }
    if (nread == 0) return;
    c->loop->read_this_turn = true; /* busy polling's clock (loop.c) */
    c->reading = true;
    int rc = c->tx->receive(c, c->loop->readbuf, (size_t)nread);
    c->reading = false; /* c is freed only by its handles' close callbacks, later in this turn */
    if (mc_conn_closed(c)) return;
    if (rc == 1) { /* the peer's close_notify: its EOF */
        on_read(stream, UV_EOF, buf);
        return;
    }
    if (rc == 2 || (rc != 0 && c->client && mc_tls_failed(c))) {
        tls_failed(c);
        return;
    }
    if (rc != 0) {
        mc_conn_close(c);
        return;
    }
    mc_loop_mark_dirty(c->loop, c);
    update_reading(c);
    mc_conn_update_timer(c);
}

void mc_conn_shutdown_all(mc_server_loop_t *sl, bool force) {
    mc_conn_t *next;
    for (mc_conn_t *c = sl->conns; c; c = next) {
        next = c->next;
        if (mc_conn_closed(c)) continue;
        mc_conn_enter(c, MC_CONN_DRAINING);
        if (force) {
            mc_conn_close(c);
            continue;
        }
        c->ops->shutdown(c);
        if (!mc_conn_closed(c)) mc_loop_mark_dirty(c->loop, c);
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
    if (mc_conn_closed(c) || !uv_is_active((uv_handle_t *)&c->timer)) return;
    uv_timer_stop(&c->timer);
    on_timer(&c->timer);
}
#endif
