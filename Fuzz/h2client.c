/*
 * Target h2client: bytes arriving from a server on the core's HTTP/2 client connection. The
 * connection is set up as after its TCP connect (client preface and SETTINGS queued, and
 * written), calls are started, then the server's bytes arrive: an empty SETTINGS frame from the
 * harness, then the fuzzer's frames (stream 1, 3, 5... are the calls, in order).
 *
 * Configuration byte: bits 0-1 calls started before the first byte (1-4), bits 2-3 their body
 * (0, 10, 70000 bytes: more than the initial window,
 * 100000), bits 4-5 the response limit
 * (64 MiB, 1, 100, 5000 bytes), bit 6 a finished call starts another one from its callback
 * (at most 16 in all), bit 7 the server half-closes after its last byte.
 * Application tape: one byte per call started later: bits 0-1 its body size (as above), bit 2
 * GET instead of POST, bit 3 forty extra headers, bit 5 a stream instead (mc_client_stream: the
 * body written as one prefixed message, bit 6 then finished, bit 7 what arrives credited at once). And call i (any) reads byte i for what its
 * completion callback, and a stream's writable callback, do: bit 4 closes the connection
 * (mc_client_close), bit 5 cancels the newest call in flight; a writable callback that does
 * neither writes 1000 bytes more.
 * Control tape: the common actions (fuzz.h, common.c), and 24 a new call, 25 cancel the oldest
 * call in flight, 26 cancel the newest, 27 close the connection (mc_client_close).
 *
 * Built with FUZZ_HTTP1 it is target h1client: the same over an HTTP/1.1 client connection
 * (mc_client_connect_http1), the fuzzer's bytes being the server's answers (no SETTINGS first).
 * One call is in flight at a time there: a call started while another is takes no effect.
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CALLS 4096

typedef struct {
    int32_t id;
    mc_request_t *stream; /* a stream's request, valid until done */
    bool consume;         /* a stream that credits what arrives at once */
    bool done;
    int result;
    uint8_t on_done; /* what its callback does (bits 4-5 of the application tape) */
} call_t;

static call_t calls[MAX_CALLS];
static size_t ncalls, started_in_callbacks;
static mc_client_t *client;
static bool closed, restart_in_callback;
static fuzz_bytes_t app_tape;
static size_t app_next;
static uint8_t body[100000];
static const size_t body_sizes[4] = {0, 10, 70000, sizeof body};

static void on_done(void *ctx, int result, mc_request_t *resp);

static void on_stream_head(void *ctx, mc_request_t *resp) {
    size_t i = (size_t)(uintptr_t)ctx;
    CHECK(i < ncalls + 1 && !calls[i].done);
    CHECK(mc_request_status(resp) >= 100 && mc_request_status(resp) <= 999);
    fuzz_check_request(resp);
}

static void on_stream_data(void *ctx, const uint8_t *data, size_t len) {
    size_t i = (size_t)(uintptr_t)ctx;
    CHECK(i < ncalls && !calls[i].done && (len == 0 || data != NULL));
    if (calls[i].consume) mc_request_consume(calls[i].stream, len);
}

static void on_stream_writable(void *ctx) {
    size_t i = (size_t)(uintptr_t)ctx;
    CHECK(i < ncalls && !calls[i].done);
    /* what its writer may do right here, as its completion may (bits 4-5 of the application
     * tape): cancel the newest call, close the connection; else write again at once */
    if (calls[i].on_done & 0x20) {
        for (size_t k = ncalls; k-- > 0;) {
            if (calls[k].done) continue;
            mc_client_cancel(client, calls[k].id);
            break;
        }
    }
    if (calls[i].on_done & 0x10) {
        mc_client_close(client);
        return;
    }
    if (!calls[i].done && calls[i].stream) (void)mc_request_write(calls[i].stream, body, 1000);
}

static void start_call(uint8_t how) {
    if (ncalls == MAX_CALLS || !mc_client_usable(client)) return;
    mc_header_t h[42];
    size_t nh = 0;
    h[nh++] = (mc_header_t){"content-type", 12, "application/json", 16};
    if (how & 8)
        while (nh < 41) h[nh++] = (mc_header_t){"x-many", 6, "value", 5};
    call_t *call = &calls[ncalls];
    *call = (call_t){0};
    call->on_done = app_tape.n ? app_tape.p[ncalls % app_tape.n] & 0x30 : 0;
    size_t len = body_sizes[how & 3];
    if (how & 0x20) {
        mc_stream_callbacks_t cb = {.on_head = on_stream_head, .on_data = on_stream_data, .on_writable = on_stream_writable, .done = on_done};
        call->consume = how & 0x80;
        if (mc_client_stream(client, (how & 4) ? "GET" : "POST", "/Service.Method", h, nh, &cb, (void *)(uintptr_t)ncalls, &call->id,
                             &call->stream) != 0)
            return;
        size_t i = ncalls++;
        if (how & 0x10) (void)mc_request_set_deadline(call->stream, 1000);
        uint8_t *m = body; /* the body as one prefixed message */
        size_t n = len > 5 ? len - 5 : 0;
        m[0] = 0, m[1] = (uint8_t)(n >> 24), m[2] = (uint8_t)(n >> 16), m[3] = (uint8_t)(n >> 8), m[4] = (uint8_t)n;
        if (!calls[i].done) (void)mc_request_write(calls[i].stream, m, n + 5);
        if (!calls[i].done && (how & 0x40)) (void)mc_request_finish(calls[i].stream, NULL, 0);
        return;
    }
    if (mc_client_call(client, (how & 4) ? "GET" : "POST", "/Service.Method", h, nh, body, len, (how & 0x10) ? 1000 : 0,
                       (how & 0x40) ? MC_CALL_GRPC_TIMEOUT | MC_CALL_GRPC_FRAME : (how & 0x80) ? MC_CALL_MICRO_TIMEOUT : 0, on_done, (void *)(uintptr_t)ncalls, &call->id) == 0)
        ncalls++;
}

static void on_done(void *ctx, int result, mc_request_t *resp) {
    size_t i = (size_t)(uintptr_t)ctx;
    CHECK(i < ncalls && !calls[i].done); /* exactly once per call */
    calls[i].done = true;
    calls[i].stream = NULL;
    calls[i].result = result;
    CHECK(result >= MC_CALL_OK && result <= MC_CALL_TIMEOUT);
    if (result == MC_CALL_OK) {
        CHECK(mc_request_status(resp) >= 200 && mc_request_status(resp) <= 999);
        CHECK(mc_request_trailer_index(resp) <= mc_request_header_count(resp));
        fuzz_check_request(resp);
        if (getenv("FUZZ_DEBUG")) {
            size_t len;
            mc_request_body(resp, &len);
            fprintf(stderr, "call %zu: status %d, %zu fields (trailers from %zu), %zu body bytes\n", i,
                    mc_request_status(resp), mc_request_header_count(resp), mc_request_trailer_index(resp), len);
            for (size_t k = 0; k < mc_request_header_count(resp); k++) {
                mc_header_t h = mc_request_header(resp, k);
                fprintf(stderr, "  %.*s: %.*s\n", (int)h.name_len, h.name, (int)h.value_len, h.value);
            }
        }
    } else if (getenv("FUZZ_DEBUG")) {
        fprintf(stderr, "call %zu: result %d\n", i, result);
    }
    if (calls[i].on_done & 0x20) {
        for (size_t k = ncalls; k-- > 0;) {
            if (calls[k].done) continue;
            mc_client_cancel(client, calls[k].id); /* from inside a completion */
            break;
        }
    }
    if (calls[i].on_done & 0x10) mc_client_close(client); /* the caller gives up on the connection */
    if (restart_in_callback && started_in_callbacks < 16) {
        started_in_callbacks++;
        start_call(app_tape.n ? app_tape.p[app_next++ % app_tape.n] : 0);
    }
}

static void on_connected(void *ctx, int error, const char *message) {
    (void)ctx;
    (void)message;
    CHECK(error == 0);
}

static void on_goaway(void *ctx) { (void)ctx; }

static void on_closed(void *ctx) {
    (void)ctx;
    CHECK(!closed);
    closed = true;
}

static const uint8_t server_settings[] = {0, 0, 0, 4, 0, 0, 0, 0, 0}; /* SETTINGS, empty */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const size_t limits[4] = {0, 1, 100, 5000};
    fuzz_input_t in = fuzz_parse(data, size);
    mc_loop_t *loop = fuzz_loop();
    fuzz_app_reset((fuzz_bytes_t){0});
    fuzz_kernel = KERNEL_TAKES_ALL;
    fuzz_reset_reads();
    ncalls = started_in_callbacks = 0;
    closed = false;
    restart_in_callback = in.config & 0x40;
    app_tape = in.app;
    app_next = 0;

    mc_client_callbacks_t cb = {.on_connected = on_connected, .on_goaway = on_goaway, .on_closed = on_closed};
#ifdef FUZZ_HTTP1
    client = mc_fuzz_client_open_http1(loop, limits[(in.config >> 4) & 3], &cb);
#else
    client = mc_fuzz_client_open(loop, limits[(in.config >> 4) & 3], &cb);
#endif
    if (!client) abort();
    mc_conn_t *c = (mc_conn_t *)client;
    for (unsigned i = 0; i <= (in.config & 3u); i++) start_call((uint8_t)((in.config >> 2) & 3));
    fuzz_turn(&c); /* the preface, SETTINGS and the first HEADERS go out */

#ifdef FUZZ_HTTP1
    fuzz_stream_t st = {NULL, 0, in.data, 0};
    (void)server_settings;
#else
    fuzz_stream_t st = {server_settings, sizeof server_settings, in.data, 0};
#endif
    bool eof = false;
    for (size_t i = 0; i < in.control.n && c; i++) {
        uint8_t ctl = in.control.p[i];
        unsigned action = ctl >> 3;
        fuzz_step_poll(c, &st, &eof, action, fuzz_chunk_sizes[ctl & 7]);
        /* uv_check: the callers' tasks */
        size_t live = 0, oldest = ncalls, newest = ncalls;
        for (size_t k = 0; k < ncalls; k++) {
            if (calls[k].done) continue;
            if (!live++) oldest = k;
            newest = k;
        }
        if (!mc_conn_closed(c)) {
            switch (action) {
            case 24: start_call(app_tape.n ? app_tape.p[app_next++ % app_tape.n] : 0); break;
            case 25:
                if (oldest < ncalls) mc_client_cancel(client, calls[oldest].id);
                break;
            case 26:
                if (newest < ncalls) mc_client_cancel(client, calls[newest].id);
                break;
            case 27: mc_client_close(client); break;
            case 28: fuzz_deadlines_pass(); break; /* calls with a deadline time out */
            default: break;
            }
        }
        fuzz_closing(&c);
    }
    if (in.config & 0x80) eof = true;

    /* The rest: the kernel takes everything, the server sends the rest of its bytes. */
    fuzz_kernel = KERNEL_TAKES_ALL;
    for (int round = 0; round < 10000 && c; round++) {
        fuzz_prepare();
        size_t before = st.off;
        bool was_writing = c->writing;
        mc_fuzz_conn_written(c, 0);
        fuzz_feed(c, &st, MC_READ_BUFFER_SIZE);
        bool sent_eof = fuzz_maybe_eof(c, &st, eof);
        fuzz_closing(&c);
        if (c && !was_writing && !c->writing && before == st.off && !sent_eof && !c->dirty) break;
    }
    if (c) {
        size_t live = 0;
        for (size_t k = 0; k < ncalls; k++) live += !calls[k].done;
        CHECK(mc_conn_closed(c) || c->active == live);
        if (!mc_conn_closed(c)) mc_client_close(client);
    }
    fuzz_turn(&c);
    CHECK(c == NULL && closed);
    for (size_t k = 0; k < ncalls; k++) CHECK(calls[k].done);
    CHECK(atomic_load(&loop->nconns) == 0 && loop->dirty == NULL);
    CHECK(loop->deadlines.count == 0);
    mc_request_pool_free(loop);
    return 0;
}
