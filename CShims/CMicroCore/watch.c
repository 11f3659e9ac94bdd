/*
 * A file descriptor someone else owns, watched by its loop: the core's door for protocols driven
 * by a C library of their own (libpq's socket), which reads and writes the descriptor itself and
 * only needs to hear when it can. A uv_poll_t on the descriptor; the events wanted change as the
 * library's state does (writable only while it has output queued).
 *
 * The watch polls a duplicate of the descriptor that it owns. The library may close its own
 * descriptor behind the watch (libpq does when it finds the connection broken), and the number
 * may then be reused at once by a socket of the same loop: libuv, which keys its watchers by
 * number, would take that socket's events for the stale watch, mask them all away and poll again
 * without end (a loop spinning at 100 % and running nothing else: seen with an etcd client's
 * socket). The duplicate's number stays ours until the watch has closed.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct mc_watch {
    uv_poll_t poll;
    int fd; /* the duplicate polled, closed with the watch */
    int events; /* MC_WATCH_READABLE | MC_WATCH_WRITABLE, as last set */
    bool closing;
    mc_watch_callbacks_t cb;
};

static int uv_events(int events) {
    return ((events & MC_WATCH_READABLE) ? UV_READABLE : 0) | ((events & MC_WATCH_WRITABLE) ? UV_WRITABLE : 0);
}

static void on_ready(uv_poll_t *p, int status, int events) {
    mc_watch_t *w = p->data;
    if (w->closing) return;
    int ready = ((events & UV_READABLE) ? MC_WATCH_READABLE : 0) | ((events & UV_WRITABLE) ? MC_WATCH_WRITABLE : 0);
    /* an error on the descriptor (EBADF, a hang-up): the owner finds out by reading it */
    if (status < 0) ready |= MC_WATCH_ERROR | (w->events & MC_WATCH_READABLE);
    if (ready) w->cb.on_ready(w->cb.ctx, ready);
}

static void free_watch(uv_handle_t *h) {
    mc_watch_t *w = h->data;
    close(w->fd);
    free(w);
}

mc_watch_t *mc_watch_open(mc_loop_t *loop, int fd, int events, const mc_watch_callbacks_t *callbacks, char *err, size_t errlen) {
    mc_watch_t *w = calloc(1, sizeof *w);
    if (!w) {
        if (err && errlen) snprintf(err, errlen, "mc_watch_open: %s", strerror(ENOMEM));
        return NULL;
    }
    w->cb = *callbacks;
    w->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (w->fd < 0) {
        if (err && errlen) snprintf(err, errlen, "cannot duplicate descriptor %d: %s", fd, strerror(errno));
        free(w);
        return NULL;
    }
    int rc = uv_poll_init_socket(&loop->uv, &w->poll, w->fd);
    if (rc != 0) {
        if (err && errlen) snprintf(err, errlen, "uv_poll_init_socket: %s", uv_strerror(rc));
        close(w->fd);
        free(w);
        return NULL;
    }
    w->poll.data = w;
    if (mc_watch_set(w, events) != 0) {
        if (err && errlen) snprintf(err, errlen, "uv_poll_start failed");
        w->closing = true;
        uv_close((uv_handle_t *)&w->poll, free_watch);
        return NULL;
    }
    return w;
}

int mc_watch_set(mc_watch_t *w, int events) {
    if (w->closing) return -EBADF;
    events &= MC_WATCH_READABLE | MC_WATCH_WRITABLE;
    if (events == w->events && uv_is_active((uv_handle_t *)&w->poll)) return 0;
    w->events = events;
    if (events == 0) return uv_poll_stop(&w->poll);
    return uv_poll_start(&w->poll, uv_events(events), on_ready);
}

static void on_closed(uv_handle_t *h) {
    mc_watch_t *w = h->data;
    mc_watch_callbacks_t cb = w->cb;
    close(w->fd);
    free(w);
    if (cb.on_closed) cb.on_closed(cb.ctx);
}

void mc_watch_close(mc_watch_t *w) {
    if (w->closing) return;
    w->closing = true;
    uv_poll_stop(&w->poll);
    uv_close((uv_handle_t *)&w->poll, on_closed);
}
