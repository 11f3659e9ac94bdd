/*
 * The listener: a nonblocking socket polled on loops[0], accept4 a bounded number of times per
 * wake-up, never libuv's uv_listen (its EMFILE trick accepts and closes queued connections).
 * On a temporary error (EMFILE, ENFILE, ENOBUFS, ENOMEM) polling stops and a timer retries after
 * 5 ms, doubling to 1 s, reset on success: queued connections wait in the kernel's backlog.
 * Accepted sockets go to the loop with the fewest connections.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define MC_ACCEPTS_PER_WAKE 16
#define MC_BACKOFF_FIRST_MS 5
#define MC_BACKOFF_MAX_MS 1000
#define MC_FD_RESERVE 64

void mc_conn_open(mc_server_loop_t *sl, int fd);
void mc_conn_shutdown_all(mc_server_loop_t *sl, bool force);

/* Each posted job holds a reference so that mc_server_free never races a queued job. */
typedef struct server_box {
    mc_server_t s;
    atomic_uint refs;
    atomic_bool cap_paused;
} server_box_t;

static atomic_uint *refs_of(mc_server_t *s) { return &((server_box_t *)s)->refs; }
static atomic_bool *cap_paused_of(mc_server_t *s) { return &((server_box_t *)s)->cap_paused; }

static void server_ref(mc_server_t *s) { atomic_fetch_add(refs_of(s), 1); }

static void server_unref(mc_server_t *s) {
    if (atomic_fetch_sub(refs_of(s), 1) != 1) return;
    mc_tls_ctx_free(s->tls);
    pthread_mutex_destroy(&s->tls_mu);
    free(s->loops);
    free(s);
}

/* Connections hold a reference too: the last one to close may still be reading the server after
 * on_closed, when the application frees it. */
void mc_server_retain(mc_server_t *s) { server_ref(s); }
void mc_server_release(mc_server_t *s) { server_unref(s); }

static int post(mc_server_t *s, mc_loop_t *loop, mc_job_fn fn, void *arg) {
    server_ref(s);
    if (mc_loop_post(loop, fn, s, arg) != 0) {
        server_unref(s);
        return -1;
    }
    return 0;
}


int mc_server_set_tls(mc_server_t *s, mc_tls_ctx_t *ctx) {
    if (!ctx) return -1;
    pthread_mutex_lock(&s->tls_mu);
    mc_tls_ctx_t *old = s->tls;
    if (old) {
        mc_tls_ctx_retain(ctx);
        s->tls = ctx;
    }
    pthread_mutex_unlock(&s->tls_mu);
    if (!old) return -1;
    mc_tls_ctx_free(old);
    return 0;
}

/* Go does the same at start-up: the soft descriptor limit is raised to the hard one. */
static rlim_t raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max;
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

static int open_listener(mc_server_t *s, char *err, size_t errlen) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)s->config.port);
    const char *host = s->host[0] ? s->host : NULL;
    if (!host) hints.ai_family = AF_INET6; /* "::" with V6ONLY off serves IPv4 too */
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0 && !host) {
        hints.ai_family = AF_INET;
        rc = getaddrinfo(NULL, port, &hints, &res);
    }
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve listen address '%s': %s", s->host, gai_strerror(rc));
        return -1;
    }
    int fd = -1, last_errno = 0;
    const char *what = "socket";
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            what = "socket";
            continue;
        }
        int one = 1, zero = 0;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ai->ai_family == AF_INET6 && !host) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            last_errno = errno;
            what = "bind";
        } else if (listen(fd, s->config.backlog) != 0) {
            last_errno = errno;
            what = "listen";
        } else {
            break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s:%u: %s: %s", s->host[0] ? s->host : "[::]",
                 (unsigned)s->config.port, what, strerror(last_errno));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &len);
    s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

static void on_readable(uv_poll_t *p, int status, int events);

static void poll_start(mc_server_t *s) {
    if (!s->listening || s->polling) return;
    s->polling = true;
    uv_poll_start(&s->poll, UV_READABLE, on_readable);
}

static void poll_stop(mc_server_t *s) {
    if (!s->polling) return;
    s->polling = false;
    uv_poll_stop(&s->poll);
}

static void on_backoff(uv_timer_t *t) {
    mc_server_t *s = t->data;
    poll_start(s);
}

static void dispatch_job(void *ctx, void *arg) {
    mc_server_t *s = ctx;
    mc_server_loop_t *sl = NULL;
    int fd = (int)(intptr_t)arg;
    for (size_t i = 0; i < s->nloops; i++)
        if (mc_loop_is_current(s->loops[i].loop)) sl = &s->loops[i];
    mc_conn_open(sl, fd);
    server_unref(s);
}

static void dispatch(mc_server_t *s, int fd) {
    mc_server_loop_t *best = &s->loops[0];
    unsigned best_n = mc_loop_connection_count(best->loop);
    for (size_t i = 1; i < s->nloops; i++) {
        unsigned n = mc_loop_connection_count(s->loops[i].loop);
        if (n < best_n) {
            best = &s->loops[i];
            best_n = n;
        }
    }
    atomic_fetch_add(&s->live_conns, 1);
    atomic_fetch_add(&best->loop->nconns, 1);
    if (mc_loop_is_current(best->loop)) {
        mc_conn_open(best, fd);
    } else if (post(s, best->loop, dispatch_job, (void *)(intptr_t)fd) != 0) {
        close(fd);
        atomic_fetch_sub(&best->loop->nconns, 1);
        mc_server_conn_gone(s);
    }
}

static bool temporary(int e) { return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM; }

/* Errors that concern one aborted connection, not the listener (accept(2), "Error handling";
 * ETIMEDOUT as Go counts it, EPERM from a firewall rule, ENOSR and the protocol errors that
 * Linux passes on from the new socket). */
static bool retry_now(int e) {
    return e == ECONNABORTED || e == EINTR || e == EPROTO || e == ENETDOWN || e == ENOPROTOOPT ||
           e == EHOSTDOWN || e == ENONET || e == EHOSTUNREACH || e == EOPNOTSUPP || e == ENETUNREACH ||
           e == ETIMEDOUT || e == EPERM || e == ENOSR || e == EPROTONOSUPPORT || e == ESOCKTNOSUPPORT ||
           e == ECONNRESET;
}

static void close_listener(mc_server_t *s);

static void on_readable(uv_poll_t *p, int status, int events) {
    (void)events;
    mc_server_t *s = p->data;
    if (status < 0) {
        mc_server_log(s, MC_LOG_ERROR, "listener poll error: %s; listener closed", uv_strerror(status));
        close_listener(s);
        return;
    }
    for (int i = 0; i < MC_ACCEPTS_PER_WAKE; i++) {
        if (s->config.max_connections && atomic_load(&s->live_conns) >= s->config.max_connections) {
            /* At the cap: leave the rest in the backlog until a connection closes. The flag is
             * set before the count is looked at again: a connection closing on another loop in
             * between either sees the flag (and posts the resume) or left a count below the cap
             * here (and accepting goes on); no wake-up is lost. */
            poll_stop(s);
            atomic_store(cap_paused_of(s), true);
            if (atomic_load(&s->live_conns) < s->config.max_connections && atomic_exchange(cap_paused_of(s), false)) {
                poll_start(s);
                continue;
            }
            mc_server_log(s, MC_LOG_WARNING, "connection limit %u reached; accept paused",
                    s->config.max_connections);
            return;
        }
        int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            s->backoff_ms = 0;
            atomic_fetch_add_explicit(&s->accepted, 1, memory_order_relaxed);
            dispatch(s, fd);
            continue;
        }
        int e = errno;
        if (e == EAGAIN || e == EWOULDBLOCK) return;
        if (retry_now(e)) continue;
        if (temporary(e)) {
            atomic_fetch_add_explicit(&s->accept_backoffs, 1, memory_order_relaxed);
            s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : MC_BACKOFF_FIRST_MS;
            if (s->backoff_ms > MC_BACKOFF_MAX_MS) s->backoff_ms = MC_BACKOFF_MAX_MS;
            poll_stop(s);
            uv_timer_start(&s->backoff, on_backoff, s->backoff_ms, 0);
            mc_server_log(s, MC_LOG_WARNING, "accept error: %s; retrying in %llums", strerror(e),
                    (unsigned long long)s->backoff_ms);
            return;
        }
        mc_server_log(s, MC_LOG_ERROR, "accept failed permanently: %s; listener closed", strerror(e));
        close_listener(s);
        return;
    }
}

static void check_closed(mc_server_t *s) {
    if (!atomic_load(&s->shutting_down) || !atomic_load(&s->listener_closed)) return;
    if (atomic_load(&s->live_conns) != 0) return;
    if (atomic_exchange(&s->closed_reported, true)) return;
    if (s->cb.on_closed) s->cb.on_closed(s->cb.ctx);
}

static void on_listener_handle_closed(uv_handle_t *h) {
    mc_server_t *s = h->data;
    if (--s->listener_handles_open > 0) return;
    close(s->fd);
    s->fd = -1;
    atomic_store(&s->listener_closed, true);
    check_closed(s);
    server_unref(s);
}

static void close_listener(mc_server_t *s) {
    if (!s->listening) return;
    s->listening = false;
    s->polling = false;
    server_ref(s);
    s->listener_handles_open = 2;
    uv_close((uv_handle_t *)&s->poll, on_listener_handle_closed);
    uv_close((uv_handle_t *)&s->backoff, on_listener_handle_closed);
}

static void listener_start_job(void *ctx, void *arg) {
    (void)arg;
    mc_server_t *s = ctx;
    uv_loop_t *uv = &s->loops[0].loop->uv;
    int rc = uv_poll_init_socket(uv, &s->poll, s->fd);
    if (rc != 0) {
        mc_server_log(s, MC_LOG_ERROR, "cannot poll the listening socket: %s", uv_strerror(rc));
        close(s->fd);
        s->fd = -1;
        atomic_store(&s->listener_closed, true);
        check_closed(s);
        server_unref(s);
        return;
    }
    uv_timer_init(uv, &s->backoff);
    s->poll.data = s->backoff.data = s;
    s->listening = true;
    if (atomic_load(&s->shutting_down)) close_listener(s);
    else poll_start(s);
    server_unref(s);
}

static void resume_job(void *ctx, void *arg) {
    (void)arg;
    mc_server_t *s = ctx;
    if (!atomic_load(&s->shutting_down)) poll_start(s);
    server_unref(s);
}

void mc_server_conn_gone(mc_server_t *s) {
    atomic_fetch_sub(&s->live_conns, 1);
    /* the one that clears the flag resumes accepting */
    if (atomic_load(cap_paused_of(s)) && !atomic_load(&s->shutting_down) && atomic_exchange(cap_paused_of(s), false))
        post(s, s->loops[0].loop, resume_job, NULL);
    check_closed(s);
}

mc_server_t *mc_server_start(mc_loop_t *const *loops, size_t nloops, const mc_server_config_t *config,
                             const mc_server_callbacks_t *cb, char *err, size_t errlen) {
    if (nloops == 0 || !loops) {
        snprintf(err, errlen, "a server needs at least one loop");
        return NULL;
    }
    server_box_t *box = calloc(1, sizeof *box);
    if (!box) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    mc_server_t *s = &box->s;
    atomic_init(&box->refs, 1);
    atomic_init(&box->cap_paused, false);
    s->config = *config;
    s->cb = *cb;
    s->fd = -1;
    pthread_mutex_init(&s->tls_mu, NULL);
    s->tls = config->tls;
    s->config.tls = NULL;
    if (s->tls) mc_tls_ctx_retain(s->tls);
    if (config->host) snprintf(s->host, sizeof s->host, "%s", config->host);
    s->loops = calloc(nloops, sizeof *s->loops);
    if (!s->loops) {
        mc_tls_ctx_free(s->tls);
        pthread_mutex_destroy(&s->tls_mu);
        free(box);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->nloops = nloops;
    for (size_t i = 0; i < nloops; i++) {
        s->loops[i].loop = loops[i];
        s->loops[i].server = s;
    }
    rlim_t nofile = raise_nofile();
    if (s->config.max_connections == 0)
        s->config.max_connections = nofile > 2 * MC_FD_RESERVE ? (uint32_t)(nofile - MC_FD_RESERVE) : 0;
    if (s->config.backlog <= 0) s->config.backlog = 4096;
    s->fd = open_listener(s, err, errlen);
    if (s->fd < 0) {
        mc_tls_ctx_free(s->tls);
        pthread_mutex_destroy(&s->tls_mu);
        free(s->loops);
        free(box);
        return NULL;
    }
    if (post(s, loops[0], listener_start_job, NULL) != 0) {
        snprintf(err, errlen, "the event loop has stopped");
        close(s->fd);
        mc_tls_ctx_free(s->tls);
        pthread_mutex_destroy(&s->tls_mu);
        free(s->loops);
        free(box);
        return NULL;
    }
    return s;
}

uint16_t mc_server_port(const mc_server_t *s) { return s->port; }

void mc_server_stats(const mc_server_t *s, mc_server_stats_t *out) {
    /* the fields are atomics written by the loops; a const server is read only */
    mc_server_t *m = (mc_server_t *)s;
    out->open_connections = atomic_load_explicit(&m->live_conns, memory_order_relaxed);
    out->accepted = atomic_load_explicit(&m->accepted, memory_order_relaxed);
    out->accept_backoffs = atomic_load_explicit(&m->accept_backoffs, memory_order_relaxed);
    out->early_writes = 0;
    for (size_t i = 0; i < m->nloops; i++)
        out->early_writes += atomic_load_explicit(&m->loops[i].early_writes, memory_order_relaxed);
}

static void shutdown_loop_job(void *ctx, void *arg) {
    mc_server_t *s = ctx;
    mc_server_loop_t *sl = arg;
    if (mc_loop_is_current(s->loops[0].loop) && sl == &s->loops[0]) close_listener(s);
    mc_conn_shutdown_all(sl, atomic_load(&s->force));
    check_closed(s);
    server_unref(s);
}

static void begin_shutdown(mc_server_t *s) {
    bool first = !atomic_exchange(&s->shutting_down, true);
    if (!first && !atomic_load(&s->force)) return;
    for (size_t i = 0; i < s->nloops; i++) {
        if (post(s, s->loops[i].loop, shutdown_loop_job, &s->loops[i]) != 0 && i == 0 && first) {
            /* loop 0 is gone (its handles closed with it): close the socket itself */
            if (s->fd >= 0) close(s->fd);
            s->fd = -1;
            atomic_store(&s->listener_closed, true);
        }
    }
}

void mc_server_shutdown(mc_server_t *s) { begin_shutdown(s); }

void mc_server_close_connections(mc_server_t *s) {
    atomic_store(&s->force, true);
    begin_shutdown(s);
}

void mc_server_free(mc_server_t *s) { server_unref(s); }
