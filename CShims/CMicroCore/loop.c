/*
 * Event loops: one libuv loop per thread. Jobs from other threads go through a mutex-protected
 * vector that the loop swaps out whole (one eventfd wake-up per batch); jobs from the loop's
 * own thread go to a plain ring. Jobs run in uv_check; a uv_idle_t keeps the loop from blocking
 * while jobs are left; dirty connections are flushed in uv_prepare, once per turn. With busy
 * polling set, a second idle handle keeps the loop from blocking for a window after each read.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MC_JOBS_PER_TURN 1024

/* initial-exec: read with one instruction instead of a __tls_get_addr call (the core is linked
 * into the program, never dlopen'd; every "am I on this loop?" of the Swift side reads it) */
static _Thread_local mc_loop_t *current_loop __attribute__((tls_model("initial-exec")));

void mc_request_pool_free(mc_loop_t *loop);
void mc_flush_dirty(mc_loop_t *loop);

static int ring_push(mc_loop_t *l, mc_job_t job) {
    if (l->ring_len == l->ring_cap) {
        size_t cap = l->ring_cap ? l->ring_cap * 2 : 256;
        mc_job_t *n = malloc(cap * sizeof *n);
        if (!n) return -1;
        for (size_t i = 0; i < l->ring_len; i++) n[i] = l->ring[(l->ring_head + i) % l->ring_cap];
        free(l->ring);
        l->ring = n;
        l->ring_cap = cap;
        l->ring_head = 0;
    }
    l->ring[(l->ring_head + l->ring_len) % l->ring_cap] = job;
    l->ring_len++;
    return 0;
}

static bool ring_pop(mc_loop_t *l, mc_job_t *out) {
    if (l->ring_len == 0) return false;
    *out = l->ring[l->ring_head];
    l->ring_head = (l->ring_head + 1) % l->ring_cap;
    l->ring_len--;
    return true;
}

/* Runs the jobs other threads posted, in their order. */
static void on_idle(uv_idle_t *h) { (void)h; }

static size_t run_remote(mc_loop_t *l) {
    pthread_mutex_lock(&l->mu);
    mc_job_t *jobs = l->remote;
    size_t n = l->remote_len, cap = l->remote_cap;
    l->remote = l->spare;
    l->remote_cap = l->spare_cap;
    l->remote_len = 0;
    l->spare = NULL;
    l->spare_cap = 0;
    pthread_mutex_unlock(&l->mu);
    for (size_t i = 0; i < n; i++) jobs[i].fn(jobs[i].ctx, jobs[i].arg);
    if (l->spare == NULL) {
        l->spare = jobs;
        l->spare_cap = cap;
    } else {
        free(jobs);
    }
    return n;
}

static void run_jobs(mc_loop_t *l, size_t budget) {
    size_t ran = run_remote(l);
    mc_job_t job;
    while (ran < budget && ring_pop(l, &job)) {
        job.fn(job.ctx, job.arg);
        ran++;
    }
    if (l->ring_len == 0) uv_idle_stop(&l->idle);
    else uv_idle_start(&l->idle, on_idle);
}

static void noop_close(uv_handle_t *h) { (void)h; }

static void close_walk(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, noop_close);
}

/* Runs every queued job, and those the jobs queue, until none is left. */
static void run_all_jobs(mc_loop_t *l) {
    for (;;) {
        size_t ran = run_remote(l);
        mc_job_t job;
        while (ring_pop(l, &job)) {
            job.fn(job.ctx, job.arg);
            ran++;
        }
        if (ran == 0) break;
    }
}

static void begin_stop(mc_loop_t *l) {
    l->stopping = true;
    /* Everything posted before `closed` was set runs; so does whatever those jobs post here. */
    run_all_jobs(l);
    mc_flush_dirty(l);
    uv_walk(&l->uv, close_walk, NULL);
}

static bool loop_closed(mc_loop_t *l) {
    pthread_mutex_lock(&l->mu);
    bool closed = l->closed;
    pthread_mutex_unlock(&l->mu);
    return closed;
}

/* The eventfd was written: clear it (the jobs run in on_check, after this). */
static void on_wake(uv_poll_t *h, int status, int events) {
    (void)status;
    (void)events;
    mc_loop_t *l = h->data;
    uint64_t count;
    while (read(l->wake_fd, &count, sizeof count) < 0 && errno == EINTR) {
    }
    if (!l->stopping && loop_closed(l)) begin_stop(l);
}

/* Called under mu by a post that needs a wake-up; the write follows with wake_send, after mu
 * is released. */
static void wake_begin(mc_loop_t *l) { atomic_fetch_add_explicit(&l->wakers, 1, memory_order_relaxed); }

static void wake_send(mc_loop_t *l) {
    uint64_t one = 1;
    /* EAGAIN would mean a counter near 2^64 unread: the loop is awake already */
    while (write(l->wake_fd, &one, sizeof one) < 0 && errno == EINTR) {
    }
    atomic_fetch_sub_explicit(&l->wakers, 1, memory_order_release);
}

static void on_check(uv_check_t *h) {
    mc_loop_t *l = h->data;
    if (!l->stopping) run_jobs(l, MC_JOBS_PER_TURN);
}

static void on_spin(uv_idle_t *h) { (void)h; }

/* Busy polling: a peer that just sent tends to send again within tens of microseconds (the next
 * call of a closed loop, the next frame of a stream). Sleeping in epoll_wait between costs a
 * wake-up of this core (an interrupt, and in a VM an exit to the host) on the peer's next write,
 * often more than the request itself; polling without sleeping for a window after each read
 * takes it as soon as it comes. The window restarts with every read, so a loop under steady
 * load never sleeps and an idle one stops polling one window after its last read. */
static void busy_poll(mc_loop_t *l, uint64_t window) {
    uint64_t now = uv_hrtime();
    if (l->read_this_turn) {
        l->read_this_turn = false;
        l->last_read = now;
    }
    bool spinning = uv_is_active((uv_handle_t *)&l->spin);
    if (!l->stopping && window && l->last_read && now - l->last_read < window) {
        if (!spinning) uv_idle_start(&l->spin, on_spin);
        atomic_fetch_add_explicit(&l->spin_turns, 1, memory_order_relaxed);
    } else if (spinning) {
        uv_idle_stop(&l->spin);
    }
}

static void on_prepare(uv_prepare_t *h) {
    mc_loop_t *l = h->data;
    mc_flush_dirty(l);
    uint64_t window = atomic_load_explicit(&l->busy_poll_ns, memory_order_relaxed);
    if (window || uv_is_active((uv_handle_t *)&l->spin)) busy_poll(l, window);
    else l->read_this_turn = false; /* turned on later, it waits for a read of its own */
}

void mc_loop_set_busy_poll(mc_loop_t *l, uint64_t ns) { atomic_store_explicit(&l->busy_poll_ns, ns, memory_order_relaxed); }

uint64_t mc_loop_busy_poll(const mc_loop_t *l) { return atomic_load_explicit(&l->busy_poll_ns, memory_order_relaxed); }

uint64_t mc_loop_busy_poll_turns(const mc_loop_t *l) { return atomic_load_explicit(&l->spin_turns, memory_order_relaxed); }

/* ---- deadlines: the wheel (wheel.c) and the one timer that sweeps it */

static void on_deadline_timer(uv_timer_t *h);

static void start_deadline_timer(mc_loop_t *l, uint64_t at) {
    uint64_t now = uv_now(&l->uv);
    l->deadline_timer_due = at;
    uv_timer_start(&l->deadline_timer, on_deadline_timer, at > now ? at - now : 0, 0);
}

static void fire_deadline(mc_deadline_t *d, void *arg) {
    (void)arg;
    mc_request_deadline_passed(d);
}

void mc_loop_run_deadlines(mc_loop_t *l, uint64_t now) {
    l->deadline_timer_due = 0;
    uint64_t next = mc_wheel_sweep(&l->deadlines, now, fire_deadline, l);
    /* what fired may have armed the timer already, for an earlier tick */
    if (next && !l->stopping && (!l->deadline_timer_due || next < l->deadline_timer_due)) start_deadline_timer(l, next);
}

static void on_deadline_timer(uv_timer_t *h) {
    mc_loop_t *l = h->data;
    mc_loop_run_deadlines(l, uv_now(&l->uv));
}

size_t mc_loop_armed_deadlines(const mc_loop_t *l) { return l->deadlines.count; }

int mc_loop_arm_deadline(mc_loop_t *l, mc_deadline_t *d, uint64_t timeout_ms) {
    if (l->stopping || atomic_load_explicit(&l->joined, memory_order_relaxed)) return -1;
    uint64_t now = uv_now(&l->uv);
    if (timeout_ms > MC_DEADLINE_MAX_MS) timeout_ms = MC_DEADLINE_MAX_MS;
    uint64_t at = mc_wheel_arm(&l->deadlines, d, now + timeout_ms, now);
    if (!at) return -1;
    /* the timer moves only for a deadline earlier than every other: with equal timeouts, never */
    if (!l->deadline_timer_due || at < l->deadline_timer_due) start_deadline_timer(l, at);
    return 0;
}

static void thread_main(void *arg) {
    mc_loop_t *l = arg;
    current_loop = l;
    uv_run(&l->uv, UV_RUN_DEFAULT);
    /* Jobs posted from this thread while the handles closed (a close callback resuming a task)
     * still run: a job is a promise to run, never dropped. No other thread can post now. */
    run_all_jobs(l);
    current_loop = NULL;
}

/* A peer that resets while we write must cost an EPIPE, not the process: SIGPIPE is ignored
 * unless the application installed a handler of its own (as Go's runtime and Node do). */
static void ignore_sigpipe(void) {
    struct sigaction current;
    if (sigaction(SIGPIPE, NULL, &current) == 0 && current.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
}

mc_loop_t *mc_loop_start(unsigned index, char *err, size_t errlen) {
    static pthread_once_t sigpipe_once = PTHREAD_ONCE_INIT;
    pthread_once(&sigpipe_once, ignore_sigpipe);
    mc_loop_t *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->index = index;
    atomic_init(&l->owner, NULL);
    l->readbuf = malloc(MC_READ_BUFFER_SIZE);
    int rc = l->readbuf ? uv_loop_init(&l->uv) : UV_ENOMEM;
    if (rc != 0) {
        snprintf(err, errlen, "uv_loop_init: %s", uv_strerror(rc));
        free(l->readbuf);
        free(l);
        return NULL;
    }
    pthread_mutex_init(&l->mu, NULL);
    atomic_init(&l->nconns, 0);
    atomic_init(&l->joined, false);
    atomic_init(&l->wakers, 0);
    atomic_init(&l->busy_poll_ns, 0);
    atomic_init(&l->spin_turns, 0);
    l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (l->wake_fd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        uv_loop_close(&l->uv);
        pthread_mutex_destroy(&l->mu);
        free(l->readbuf);
        free(l);
        return NULL;
    }
    uv_poll_init(&l->uv, &l->wake, l->wake_fd);
    uv_poll_start(&l->wake, UV_READABLE, on_wake);
    uv_check_init(&l->uv, &l->check);
    uv_idle_init(&l->uv, &l->idle);
    uv_prepare_init(&l->uv, &l->prepare);
    uv_idle_init(&l->uv, &l->spin); /* started only while busy polling */
    uv_timer_init(&l->uv, &l->deadline_timer); /* started only while deadlines are armed */
    l->wake.data = l->check.data = l->idle.data = l->prepare.data = l->spin.data = l;
    l->deadline_timer.data = l;
    uv_check_start(&l->check, on_check);
    uv_prepare_start(&l->prepare, on_prepare);
    rc = uv_thread_create(&l->thread, thread_main, l);
    if (rc != 0) {
        snprintf(err, errlen, "uv_thread_create: %s", uv_strerror(rc));
        uv_walk(&l->uv, close_walk, NULL);
        uv_run(&l->uv, UV_RUN_DEFAULT);
        uv_loop_close(&l->uv);
        close(l->wake_fd);
        pthread_mutex_destroy(&l->mu);
        free(l->readbuf);
        free(l);
        return NULL;
    }
    return l;
}

int mc_loop_post_local(mc_loop_t *l, mc_job_fn fn, void *ctx, void *arg) {
    if (ring_push(l, (mc_job_t){fn, ctx, arg}) != 0) return -1;
    if (!l->stopping && !uv_is_active((uv_handle_t *)&l->idle)) uv_idle_start(&l->idle, on_idle);
    return 0;
}

int mc_loop_post(mc_loop_t *l, mc_job_fn fn, void *ctx, void *arg) {
    if (current_loop == l) return mc_loop_post_local(l, fn, ctx, arg);
    pthread_mutex_lock(&l->mu);
    if (l->closed) {
        pthread_mutex_unlock(&l->mu);
        return -1;
    }
    if (l->remote_len == l->remote_cap) {
        size_t cap = l->remote_cap ? l->remote_cap * 2 : 256;
        mc_job_t *n = realloc(l->remote, cap * sizeof *n);
        if (!n) {
            pthread_mutex_unlock(&l->mu);
            return -1;
        }
        l->remote = n;
        l->remote_cap = cap;
    }
    bool was_empty = l->remote_len == 0;
    l->remote[l->remote_len++] = (mc_job_t){fn, ctx, arg};
    /* An empty queue means the loop has swapped out the last batch: it needs a new wake-up.
     * It is written after the lock is released, so that the loop, woken, does not find the lock
     * still held; `wakers` keeps the eventfd open until the write is done (mc_loop_stop).
     * Not uv_async_send: when the write wakes the loop on the sender's own core, the loop
     * preempts the sender before it marks the send done, and libuv's loop then spins (about a
     * thousand pause instructions, then a yield) waiting for that mark: tens of microseconds
     * per wake-up on one core. */
    if (was_empty) wake_begin(l);
    pthread_mutex_unlock(&l->mu);
    if (was_empty) wake_send(l);
    return 0;
}

int mc_loop_is_current(const mc_loop_t *l) { return current_loop == l; }

mc_loop_t *mc_loop_enter_stopped(mc_loop_t *l) {
    mc_loop_t *prev = current_loop;
    if (atomic_load(&l->joined)) current_loop = l;
    return prev;
}

void mc_loop_leave_stopped(mc_loop_t *prev) { current_loop = prev; }
mc_loop_t *mc_loop_current(void) { return current_loop; }
void mc_loop_set_owner(mc_loop_t *l, void *owner) { atomic_store_explicit(&l->owner, owner, memory_order_release); }
void *mc_loop_current_owner(void) {
    return current_loop ? atomic_load_explicit(&current_loop->owner, memory_order_acquire) : NULL;
}
unsigned mc_loop_index(const mc_loop_t *l) { return l->index; }
unsigned mc_loop_connection_count(const mc_loop_t *l) {
    return atomic_load_explicit(&((mc_loop_t *)l)->nconns, memory_order_relaxed);
}

void mc_loop_stop(mc_loop_t *l) {
    pthread_mutex_lock(&l->mu);
    bool already = l->closed;
    l->closed = true;
    if (!already) wake_begin(l);
    pthread_mutex_unlock(&l->mu);
    if (already) return;
    wake_send(l);
    uv_thread_join(&l->thread);
    atomic_store(&l->joined, true);
    /* a post that saw the loop open may still be writing its wake-up */
    while (atomic_load_explicit(&l->wakers, memory_order_acquire) != 0) sched_yield();
    close(l->wake_fd);
    l->wake_fd = -1;
    /* no timer will sweep them now, and requests released from here on must not touch the wheel */
    mc_wheel_disarm_all(&l->deadlines);
    uv_loop_close(&l->uv);
    mc_request_pool_free(l);
    pthread_mutex_lock(&l->mu);
    free(l->remote);
    l->remote = NULL;
    l->remote_len = l->remote_cap = 0;
    pthread_mutex_unlock(&l->mu);
    free(l->spare);
    l->spare = NULL;
    free(l->ring);
    l->ring = NULL;
    free(l->readbuf);
    l->readbuf = NULL;
    /* The struct and its mutex stay: a post from another thread now returns -1 instead of
     * touching freed memory. mc_loop_free releases them once nothing can post any more. */
}

void mc_loop_free(mc_loop_t *l) {
    if (!l) return;
    mc_loop_stop(l); /* no-op when stopped already */
    mc_wheel_free(&l->deadlines);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

const char *mc_loop_date(mc_loop_t *l) {
    time_t now = time(NULL);
    if ((uint64_t)now != l->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(l->date, sizeof l->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        l->date_sec = (uint64_t)now;
    }
    return l->date;
}

void mc_loop_mark_dirty(mc_loop_t *l, mc_conn_t *c) {
    if (c->dirty || mc_conn_closed(c)) return;
    c->dirty = true;
    c->dirty_next = l->dirty;
    l->dirty = c;
}

void mc_loop_unmark_dirty(mc_loop_t *l, mc_conn_t *c) {
    if (!c->dirty) return;
    for (mc_conn_t **p = &l->dirty; *p; p = &(*p)->dirty_next) {
        if (*p == c) {
            *p = c->dirty_next;
            break;
        }
    }
    c->dirty = false;
    c->dirty_next = NULL;
}

unsigned mc_cpu_count(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    int n = CPU_COUNT(&set);
    return n > 0 ? (unsigned)n : 1;
}
