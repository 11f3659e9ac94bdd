/* Shared parts of the harnesses: see fuzz.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Noreturn void fuzz_fail(const char *file, int line, const char *what) {
    fprintf(stderr, "%s:%d: invariant broken: %s\n", file, line, what);
    abort();
}

static fuzz_bytes_t take(const uint8_t **p, size_t *n, size_t want) {
    if (want > *n) want = *n;
    fuzz_bytes_t b = {*p, want};
    *p += want;
    *n -= want;
    return b;
}

fuzz_input_t fuzz_parse(const uint8_t *p, size_t n) {
    fuzz_input_t in = {0};
    in.config = n ? p[0] : 0;
    take(&p, &n, 1);
    size_t a = n ? p[0] : 0;
    take(&p, &n, 1);
    in.app = take(&p, &n, a);
    size_t k = n ? p[0] : 0;
    take(&p, &n, 1);
    in.control = take(&p, &n, k);
    in.data = (fuzz_bytes_t){p, n};
    return in;
}

/* ---------------------------------------------------------------- loop and server */

static mc_loop_t *loop;
static mc_server_t server;
static mc_server_loop_t server_loop;
static unsigned conns_gone;

mc_loop_t *fuzz_loop(void) {
    if (!loop) {
        loop = calloc(1, sizeof *loop);
        loop->readbuf = malloc(MC_READ_BUFFER_SIZE);
        if (!loop || !loop->readbuf || uv_loop_init(&loop->uv) != 0) abort();
        atomic_init(&loop->nconns, 0);
        uv_timer_init(&loop->uv, &loop->deadline_timer);
        loop->deadline_timer.data = loop;
    }
    return loop;
}

mc_tls_ctx_t *fuzz_tls;

mc_server_t *fuzz_server(uint8_t config) {
    static const size_t header_limits[4] = {16 * 1024, 64, 300, 2048};
    static const size_t body_limits[4] = {4 * 1024 * 1024, 0, 10, 5000};
    static const uint32_t in_flight[4] = {16, 1, 2, 3};
    memset(&server, 0, sizeof server);
    mc_server_config_init(&server.config);
    server.config.max_header_bytes = header_limits[config & 3];
    server.config.max_body_bytes = body_limits[(config >> 2) & 3];
    server.config.max_pipelined = in_flight[(config >> 4) & 3];
    server.config.max_concurrent_streams = in_flight[(config >> 4) & 3] == 16 ? 250 : in_flight[(config >> 4) & 3];
    server.cb.on_request = fuzz_app_on_request;
    server.cb.on_abort = fuzz_app_on_abort;
    server.cb.is_stream = fuzz_app_is_stream;
    server.cb.on_body = fuzz_app_on_body;
    server.cb.on_writable = fuzz_app_on_writable;
    server.cb.on_deadline = fuzz_app_on_deadline;
    server.nloops = 1;
    server.loops = &server_loop;
    server.tls = fuzz_tls;
    server_loop = (mc_server_loop_t){.server = &server, .loop = fuzz_loop()};
    conns_gone = 0;
    return &server;
}

mc_server_loop_t *fuzz_server_loop(void) { return &server_loop; }

/* listener.c's, which counts live connections for the cap and for shutdown */
void mc_server_conn_gone(mc_server_t *s) {
    CHECK(s == &server);
    conns_gone++;
}

/* listener.c's: connections hold references on their server (this one is static) */
void mc_server_retain(mc_server_t *s) { CHECK(s == &server); }
void mc_server_release(mc_server_t *s) { CHECK(s == &server); }

bool fuzz_run_closes(void) {
    /* deadlines pass only when the input says so (step 26), never by the clock */
    uv_timer_stop(&loop->deadline_timer);
    loop->deadline_timer_due = 0;
    for (int i = 0; i < 16 && uv_loop_alive(&loop->uv); i++) uv_run(&loop->uv, UV_RUN_NOWAIT);
    return !uv_loop_alive(&loop->uv);
}

/* libuv reads again in the same poll phase (and so may see EOF or an error there) only after a
 * read that filled the buffer; otherwise the next read, EOF included, waits for the next turn. */
static bool read_this_phase, read_was_full, reset_pending;

/* ---------------------------------------------------------------- the kernel */

int fuzz_kernel;
size_t fuzz_written;

int mc_fuzz_try_write(mc_conn_t *c, const uint8_t *p, size_t n) {
    CHECK(!c->writing && n > 0 && n <= INT32_MAX);
    /* a completion callback may close the connection inside the pump, just before the flush
     * writes: libuv then refuses the write (the handle is closing) */
    if (mc_conn_closed(c)) return UV_EPIPE;
    volatile uint8_t touch = p[0] ^ p[n - 1]; /* ASan checks both ends of what is written */
    (void)touch;
    switch (fuzz_kernel) {
    case KERNEL_TAKES_NOTHING: return UV_EAGAIN;
    case KERNEL_TAKES_SOME: n = n > 1 ? n / 2 : n; break;
    case KERNEL_FAILS: fuzz_kernel = KERNEL_TAKES_ALL; return UV_EPIPE;
    default: break;
    }
    fuzz_written += n;
    static int debug = -1;
    if (debug < 0) debug = getenv("FUZZ_DEBUG") != NULL; /* FUZZ_DEBUG=1: what the peer receives */
    if (debug) fwrite(p, 1, n, stderr);
    return (int)n;
}

/* ---------------------------------------------------------------- the application */

enum { AT_ONCE = 0, NEXT_TURN = 1, HELD = 2, HELD_TILL_ABORT = 3 };

typedef struct {
    mc_request_t *r;
    uint8_t how;
    bool aborted;
} held_t;

#define MAX_HELD 2048
static held_t held[MAX_HELD];
static size_t nheld;
static fuzz_bytes_t app_tape;
static size_t app_count;
static uint8_t *big_body;

#define BIG_BODY 1100000
static const size_t body_sizes[8] = {0, 1, 17, 1000, 16385, 70000, 262144, BIG_BODY};
static const int odd_status[8] = {201, 204, 304, 400, 404, 413, 500, 503};

void fuzz_app_reset(fuzz_bytes_t tape) {
    CHECK(nheld == 0);
    app_tape = tape;
    app_count = 0;
    if (!big_body) {
        big_body = malloc(BIG_BODY);
        if (!big_body) abort();
        for (size_t i = 0; i < BIG_BODY; i++) big_body[i] = (uint8_t)('a' + i % 26);
    }
}

void fuzz_check_request(const mc_request_t *r) {
    const uint8_t *lo = r->strings.data, *hi = lo + r->strings.len;
    size_t len;
    const char *m = mc_request_method(r, &len);
    CHECK(len == 0 || ((const uint8_t *)m >= lo && (const uint8_t *)m + len <= hi));
    const char *path = mc_request_path(r, &len);
    CHECK(len == 0 || ((const uint8_t *)path >= lo && (const uint8_t *)path + len <= hi));
    size_t nh = mc_request_header_count(r);
    unsigned sum = 0;
    for (size_t i = 0; i < nh; i++) {
        mc_header_t h = mc_request_header(r, i);
        CHECK(h.name_len == 0 || ((const uint8_t *)h.name >= lo && (const uint8_t *)h.name + h.name_len <= hi));
        CHECK(h.value_len == 0 || ((const uint8_t *)h.value >= lo && (const uint8_t *)h.value + h.value_len <= hi));
        if (h.name_len) sum += (uint8_t)h.name[h.name_len - 1];
        if (h.value_len) sum += (uint8_t)h.value[h.value_len - 1];
    }
    const uint8_t *body = mc_request_body(r, &len);
    CHECK(len == 0 || body != NULL);
    if (len) sum += body[0] + body[len - 1];
    volatile unsigned touch = sum;
    (void)touch;
}

static void answer(mc_request_t *r, uint8_t how) {
    fuzz_check_request(r); /* still valid, answered or aborted, until now */
    size_t size = body_sizes[(how >> 2) & 7];
    int status = (how & 0x80) ? odd_status[(how >> 2) & 7] : 200;
    mc_header_t h[48];
    size_t nh = 0;
    h[nh++] = (mc_header_t){"Content-Type", 12, "application/json", 16};
    if (how & 0x40) {
        /* connection-specific names (dropped on HTTP/2), the app's own content-length, and
         * enough headers that HTTP/2 needs a heap array for them */
        h[nh++] = (mc_header_t){"Connection", 10, "close", 5};
        h[nh++] = (mc_header_t){"Transfer-Encoding", 17, "chunked", 7};
        h[nh++] = (mc_header_t){"content-length", 14, "12345", 5};
        while (nh < 40) h[nh++] = (mc_header_t){"X-Many", 6, "value", 5};
    }
    static mc_header_t trailers[70];
    size_t nt = 0;
    if (how & 0x20) {
        nt = (how & 0x40) ? 70 : 2;
        for (size_t i = 0; i < nt; i++) trailers[i] = (mc_header_t){"Micro-Error", 11, "{}", 2};
    }
    if ((how & 0x10) && mc_request_send_head(r, status, h, nh) == 0) {
        /* a streamed answer (HTTP/2 DATA, go-micro's frames, or chunked on HTTP/1.1 — then
         * perhaps behind answers not yet written): the body in two writes past the queue's
         * mark, then trailers */
        mc_request_write(r, big_body, size);
        mc_request_write(r, big_body, size);
        mc_request_finish(r, nt ? trailers : NULL, nt);
        return;
    }
    mc_request_respond(r, status, h, nh, big_body, size, nt ? trailers : NULL, nt);
}

/* Paths under /s are streams (the Router's is_stream says so for streaming methods). */
int fuzz_app_is_stream(void *ctx, mc_request_t *r) {
    (void)ctx;
    size_t len;
    const char *path = mc_request_path(r, &len);
    return len >= 2 && path[0] == '/' && path[1] == 's';
}

/* Body pieces of a streamed request: only for one handed over and not yet answered; consumed
 * at once or every other time (the rest is credited when the stream closes). */
void fuzz_app_on_body(void *ctx, mc_request_t *r, const uint8_t *data, size_t len, int end) {
    (void)ctx;
    static unsigned calls;
    CHECK(r->streaming && !r->server.responded && !r->server.aborted);
    if (len) {
        volatile uint8_t touch = data[0] ^ data[len - 1];
        (void)touch;
    }
    if (!end && (++calls & 1)) mc_request_consume(r, len);
}

void fuzz_app_on_writable(void *ctx, mc_request_t *r) {
    (void)ctx;
    CHECK(r->streaming && !r->server.responded);
}

static held_t *find(mc_request_t *r) {
    for (size_t i = 0; i < nheld; i++)
        if (held[i].r == r) return &held[i];
    return NULL;
}

static void drop(size_t i) {
    memmove(&held[i], &held[i + 1], (nheld - i - 1) * sizeof held[0]);
    nheld--;
}

void fuzz_app_on_request(void *ctx, mc_request_t *r) {
    (void)ctx;
    CHECK(find(r) == NULL);
    CHECK(r->conn != NULL && !mc_conn_closed(r->conn));
    fuzz_check_request(r);
    uint8_t how = app_tape.n ? app_tape.p[app_count % app_tape.n] : 0;
    app_count++;
    if ((how & 3) == AT_ONCE || nheld == MAX_HELD) {
        answer(r, how);
        return;
    }
    held[nheld++] = (held_t){r, how, false};
    /* every other held request has a deadline, which step 26 makes pass */
    if (app_count & 1) CHECK(mc_request_set_deadline(r, 1000) == 0);
}

void fuzz_app_on_abort(void *ctx, mc_request_t *r) {
    (void)ctx;
    held_t *h = find(r);
    CHECK(h != NULL);     /* only requests handed to the application are aborted */
    CHECK(!h->aborted);   /* and only once */
    CHECK(r->conn == NULL);
    h->aborted = true;
    if ((h->how & 3) == HELD_TILL_ABORT) {
        uint8_t how = h->how;
        drop((size_t)(h - held));
        answer(r, how); /* from inside on_abort */
    }
}

/* A held request's deadline passed: answered at once, as the Router answers a timeout. */
void fuzz_app_on_deadline(void *ctx, mc_request_t *r) {
    (void)ctx;
    held_t *h = find(r);
    CHECK(h != NULL && !h->aborted); /* only live requests handed to the application */
    CHECK(r->conn != NULL && !r->server.responded);
    uint8_t how = h->how;
    drop((size_t)(h - held));
    answer(r, how);
}

/* Every armed deadline passes now (a loop far in the future): the timer's sweep, as fuzz step 26. */
void fuzz_deadlines_pass(void) { mc_loop_run_deadlines(loop, UINT64_MAX / 4); }

void fuzz_app_run_jobs(void) {
    for (size_t i = 0; i < nheld;) {
        if ((held[i].how & 3) != NEXT_TURN) {
            i++;
            continue;
        }
        held_t h = held[i];
        drop(i);
        answer(h.r, h.how);
    }
}

size_t fuzz_app_answer(int which) {
    size_t done = 0;
    while (nheld) {
        size_t i = which == 1 ? nheld - 1 : 0;
        held_t h = held[i];
        drop(i);
        answer(h.r, h.how);
        done++;
        if (which != 2) break;
    }
    return done;
}

size_t fuzz_app_held(void) { return nheld; }

size_t fuzz_app_held_live(void) {
    size_t n = 0;
    for (size_t i = 0; i < nheld; i++) n += !held[i].aborted;
    return n;
}

void fuzz_prepare(void) {
    mc_flush_dirty(loop);
    read_this_phase = false; /* a new poll phase follows */
}

void fuzz_closing(mc_conn_t **cp) {
    mc_conn_t *c = *cp;
    if (!c || !mc_conn_closed(c)) return;
    /* libuv cancels the write in flight, then the handles' close callbacks free the connection */
    mc_fuzz_conn_written(c, UV_ECANCELED);
    unsigned gone = conns_gone;
    bool client = c->client != NULL;
    CHECK(fuzz_run_closes());
    CHECK(client || conns_gone == gone + 1);
    *cp = NULL;
}

void fuzz_turn(mc_conn_t **cp) {
    fuzz_app_run_jobs();
    fuzz_closing(cp);
    fuzz_prepare();
}

/* ---------------------------------------------------------------- one server connection */

const size_t fuzz_chunk_sizes[8] = {1, 2, 5, 13, 64, 300, 4096, MC_READ_BUFFER_SIZE};

size_t fuzz_stream_left(const fuzz_stream_t *s) { return s->prefix_len + s->data.n - s->off; }

static size_t stream_read(fuzz_stream_t *s, uint8_t *buf, size_t want) {
    size_t n = 0;
    while (n < want && fuzz_stream_left(s)) {
        buf[n++] = s->off < s->prefix_len ? s->prefix[s->off] : s->data.p[s->off - s->prefix_len];
        s->off++;
    }
    return n;
}

static uint8_t chunk[MC_READ_BUFFER_SIZE];


void fuzz_reset_reads(void) { read_this_phase = read_was_full = reset_pending = false; }

static bool may_read_again(void) { return !read_this_phase || read_was_full; }

void fuzz_feed(mc_conn_t *c, fuzz_stream_t *s, size_t want) {
    if (mc_conn_closed(c) || c->read_stopped || (c->state == MC_CONN_HALF_CLOSED) || !may_read_again()) return;
    if (reset_pending) {
        reset_pending = false;
        mc_fuzz_conn_read(c, NULL, UV_ECONNRESET);
        return;
    }
    size_t n = stream_read(s, chunk, want);
    if (!n) return;
    read_this_phase = true;
    read_was_full = n == MC_READ_BUFFER_SIZE;
    mc_fuzz_conn_read(c, chunk, (ssize_t)n);
}

bool fuzz_poll_action(mc_conn_t *c, unsigned action, bool *eof) {
    switch (action) {
    case 15: fuzz_kernel = KERNEL_TAKES_ALL; break;
    case 16: fuzz_kernel = KERNEL_TAKES_NOTHING; break;
    case 17: fuzz_kernel = KERNEL_TAKES_SOME; break;
    case 18: fuzz_kernel = KERNEL_FAILS; break;
    case 19: mc_fuzz_conn_written(c, 0); break;
    case 20: mc_fuzz_conn_written(c, UV_EPIPE); break;
    case 21: break; /* the timer: before the turn's flush, see fuzz_step_poll */
    case 22: *eof = true; break;
    case 23: /* the peer resets: the next read fails */
        reset_pending = true;
        fuzz_feed(c, NULL, 0);
        break;
    default: return false;
    }
    return true;
}

void fuzz_stream_end(fuzz_stream_t *s) {
    if (s->off < s->prefix_len) {
        s->prefix_len = s->off;
        s->data.n = 0;
    } else {
        s->data.n = s->off - s->prefix_len;
    }
}

bool fuzz_maybe_eof(mc_conn_t *c, fuzz_stream_t *s, bool eof) {
    if (!eof || fuzz_stream_left(s) || mc_conn_closed(c) || c->read_stopped || (c->state == MC_CONN_HALF_CLOSED) || !may_read_again()) return false;
    if (reset_pending) {
        fuzz_feed(c, s, 0);
        return true;
    }
    mc_fuzz_conn_read(c, NULL, UV_EOF);
    return true;
}

void fuzz_step_poll(mc_conn_t *c, fuzz_stream_t *st, bool *eof, unsigned action, size_t chunk) {
    if (action == 21) mc_fuzz_conn_timer(c); /* uv_run: timers first */
    fuzz_prepare();                           /* then uv_prepare: the flush */
    if (!*eof && chunk) fuzz_feed(c, st, chunk);
    if (!mc_conn_closed(c)) fuzz_poll_action(c, action, eof);
    if (*eof) fuzz_stream_end(st); /* half-closed here: the rest is never sent */
    fuzz_maybe_eof(c, st, *eof);
}

void fuzz_server_step(mc_conn_t **c, fuzz_stream_t *st, bool *eof, unsigned action, size_t chunk) {
    if (!*c) return;
    fuzz_step_poll(*c, st, eof, action, chunk);
    fuzz_app_run_jobs();
    switch (action) {
    case 12: fuzz_app_answer(0); break;
    case 13: fuzz_app_answer(1); break;
    case 14: fuzz_app_answer(2); break;
    case 24: mc_conn_shutdown_all(fuzz_server_loop(), false); break;
    case 25: mc_conn_shutdown_all(fuzz_server_loop(), true); break;
    case 26: fuzz_deadlines_pass(); break;
    default: break;
    }
    fuzz_closing(c);
}

void fuzz_server_connection(const fuzz_input_t *in, const uint8_t *prefix, size_t prefix_len) {
    fuzz_server(in->config);
    fuzz_app_reset(in->app);
    fuzz_kernel = KERNEL_TAKES_ALL;
    fuzz_reset_reads();
    mc_conn_t *c = mc_fuzz_conn_open(fuzz_server_loop());
    if (!c) abort();
    fuzz_stream_t st = {prefix, prefix_len, in->data, 0};
    bool eof = false; /* the peer half-closed: no more bytes, EOF once reading */

    /* one loop turn per control byte (fuzz_server_step) */
    for (size_t i = 0; i < in->control.n && c; i++) {
        uint8_t ctl = in->control.p[i];
        fuzz_server_step(&c, &st, &eof, ctl >> 3, fuzz_chunk_sizes[ctl & 7]);
    }
    fuzz_server_finish(c, &st, eof, in->config, FUZZ_DRAIN_OLDEST_NOT_TILL_ABORT);
}

/* One answer of the drain, as `answers` says (fuzz.h); how many. */
static size_t drain_answer(int answers) {
    if (answers == FUZZ_DRAIN_OLDEST) return fuzz_app_answer(0);
    if (answers == FUZZ_DRAIN_NONE) return 0;
    for (size_t i = 0; i < nheld; i++) {
        if ((held[i].how & 3) == HELD_TILL_ABORT) continue;
        held_t h = held[i];
        drop(i);
        answer(h.r, h.how);
        return 1;
    }
    return 0;
}

void fuzz_server_finish(mc_conn_t *c, fuzz_stream_t *st, bool eof, uint8_t config, int answers) {
    mc_server_loop_t *sl = fuzz_server_loop();
    if (config & 0x40) eof = true;
    if ((config & 0x80) && c) mc_conn_shutdown_all(sl, false);
    fuzz_kernel = KERNEL_TAKES_ALL;
    for (int round = 0; round < 10000 && c; round++) {
        fuzz_prepare();
        size_t before = st->off;
        bool was_writing = c->writing;
        mc_fuzz_conn_written(c, 0);
        fuzz_feed(c, st, MC_READ_BUFFER_SIZE);
        bool sent_eof = fuzz_maybe_eof(c, st, eof);
        fuzz_app_run_jobs();
        size_t answered = drain_answer(answers); /* one a turn: the peer's EOF may come in between */
        fuzz_closing(&c);
        if (c && !answered && !was_writing && !c->writing && before == st->off && !sent_eof && !c->dirty) break;
    }
    if (c && !mc_conn_closed(c)) {
        /* every byte written and every request answered (but those left): the core owes nothing more */
        CHECK(c->active == fuzz_app_held_live());
        /* a half-closed HTTP/1.1 client that got every answer is let go */
        CHECK(!(c->ops == &mc_h1_proto && (c->state == MC_CONN_HALF_CLOSED) && c->active == 0));
        mc_conn_shutdown_all(sl, true); /* forced, as mc_server_close_connections does */
    }
    fuzz_turn(&c);
    fuzz_app_answer(2); /* what was held, answered after the connection went away */
    fuzz_turn(&c);
    CHECK(c == NULL && conns_gone == 1);
    CHECK(sl->conns == NULL);
    CHECK(atomic_load(&fuzz_loop()->nconns) == 0);
    CHECK(fuzz_loop()->dirty == NULL);
    CHECK(fuzz_run_closes());
    CHECK(fuzz_app_held() == 0);
    CHECK(fuzz_loop()->deadlines.count == 0); /* every deadline dropped with its request */
    mc_request_pool_free(fuzz_loop());
}
