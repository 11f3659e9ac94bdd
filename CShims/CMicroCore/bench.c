/*
 * A closed-loop load driver that runs entirely in the core, on one loop: `micro bench --driver
 * core`. A Swift task per request costs more than a one-core server spends answering it, so a
 * Swift driver measures itself; this one keeps `connections x concurrency` calls in flight with
 * nothing but the core's own HTTP/2 client between the socket and the next call, and records
 * each call's latency in a flat array for the caller to put into a histogram.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bench bench_t;

typedef struct bench_conn {
    bench_t *b;
    mc_client_t *client;
    bool ready, closed;
} bench_conn_t;

typedef struct bench_slot {
    bench_conn_t *conn;
    uint64_t started;
    bool warm; /* a warm-up call: not recorded */
} bench_slot_t;

struct bench {
    mc_bench_config_t cfg;
    char *host, *method, *path;
    mc_header_t *headers;
    mc_buf_t strings; /* header names and values */
    uint8_t *body;
    mc_loop_t *loop;
    bench_conn_t *conns;
    bench_slot_t *slots;
    unsigned nslots;
    unsigned connecting, open;
    unsigned inflight;
    uint64_t warm_left, warm_inflight, issued;
    uint64_t start, deadline, last;
    bool measuring, finishing;
    mc_bench_result_t *result;
    size_t cap;
    mc_bench_done_fn done;
    void *ctx;
};

static void bench_free(bench_t *b) {
    free(b->host);
    free(b->method);
    free(b->path);
    free(b->headers);
    mc_buf_free(&b->strings);
    free(b->body);
    free(b->conns);
    free(b->slots);
    free(b);
}

static void issue(bench_slot_t *s);

static void record(bench_t *b, uint64_t ns) {
    mc_bench_result_t *r = b->result;
    if (r->nlatency == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 65536;
        uint32_t *p = realloc(r->latency_us, cap * sizeof *p);
        if (!p) return; /* counted, not recorded */
        r->latency_us = p;
        b->cap = cap;
    }
    uint64_t us = ns / 1000;
    r->latency_us[r->nlatency++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)(us ? us : 1);
}

/* Once every call is back: close the connections; the result goes out when they are closed. */
static void finish(bench_t *b) {
    if (b->finishing) return;
    b->finishing = true;
    b->result->elapsed_ns = b->measuring && b->last > b->start ? b->last - b->start : 0;
    for (unsigned i = 0; i < b->cfg.connections; i++) {
        bench_conn_t *c = &b->conns[i];
        if (c->client && !c->closed) mc_client_close(c->client);
    }
    if (b->open == 0) {
        b->done(b->ctx, b->result);
        bench_free(b);
    }
}

static bool ok(const mc_bench_config_t *cfg, int result, mc_request_t *response) {
    if (result != MC_CALL_OK || mc_request_status(response) != 200) return false;
    if (!cfg->grpc) return true;
    for (size_t i = mc_request_trailer_index(response); i < mc_request_header_count(response); i++) {
        mc_header_t h = mc_request_header(response, i);
        if (h.name_len == 11 && memcmp(h.name, "grpc-status", 11) == 0) return h.value_len == 1 && h.value[0] == '0';
    }
    /* a trailers-only answer carries its status in the headers */
    for (size_t i = 0; i < mc_request_trailer_index(response) && i < mc_request_header_count(response); i++) {
        mc_header_t h = mc_request_header(response, i);
        if (h.name_len == 11 && memcmp(h.name, "grpc-status", 11) == 0) return h.value_len == 1 && h.value[0] == '0';
    }
    return false;
}

static void begin_measuring(bench_t *b) {
    b->measuring = true;
    b->start = uv_hrtime();
    b->deadline = b->cfg.duration_ms ? b->start + b->cfg.duration_ms * 1000000ull : 0;
    for (unsigned i = 0; i < b->nslots; i++) issue(&b->slots[i]);
    if (b->inflight == 0) finish(b);
}

static void on_call_done(void *ctx, int result, mc_request_t *response) {
    bench_slot_t *s = ctx;
    bench_t *b = s->conn->b;
    uint64_t now = uv_hrtime();
    b->inflight--;
    if (s->warm) {
        b->warm_inflight--;
        if (!b->finishing) {
            if (b->warm_left) issue(s);
            else if (b->warm_inflight == 0) begin_measuring(b);
        }
    } else {
        b->last = now;
        if (ok(&b->cfg, result, response)) b->result->ok++;
        else b->result->failed++;
        record(b, now - s->started);
        if (!b->finishing) issue(s);
    }
    if (b->inflight == 0 && !b->finishing && b->measuring) finish(b);
}

static void issue(bench_slot_t *s) {
    bench_t *b = s->conn->b;
    if (b->finishing || !s->conn->ready || s->conn->closed) return;
    if (!b->measuring) {
        if (!b->warm_left) return;
        b->warm_left--;
        s->warm = true;
    } else {
        if (b->cfg.requests && b->issued >= b->cfg.requests) return;
        if (b->deadline && uv_hrtime() >= b->deadline) return;
        b->issued++;
        s->warm = false;
    }
    s->started = uv_hrtime();
    if (mc_client_call(s->conn->client, b->method, b->path, b->headers, b->cfg.nheaders, b->body, b->cfg.body_len, 0, 0,
                       on_call_done, s, NULL) != 0) {
        /* the connection cannot take calls any more (GOAWAY, closed): counted, not retried */
        if (!s->warm) b->result->failed++;
        return;
    }
    b->inflight++;
    if (s->warm) b->warm_inflight++;
}

static void on_connected(void *ctx, int error, const char *message) {
    bench_conn_t *c = ctx;
    bench_t *b = c->b;
    b->connecting--;
    if (error == 0) {
        c->ready = true;
    } else if (!b->result->error[0]) {
        snprintf(b->result->error, sizeof b->result->error, "%s", message);
    }
    if (b->connecting > 0) return;
    /* every connection answered: warm up, then measure */
    bool any = false;
    for (unsigned i = 0; i < b->cfg.connections; i++) any |= b->conns[i].ready;
    if (!any) {
        finish(b);
        return;
    }
    if (!b->warm_left) {
        begin_measuring(b);
        return;
    }
    for (unsigned i = 0; i < b->nslots; i++) issue(&b->slots[i]);
    if (b->warm_inflight == 0) begin_measuring(b);
}

static void on_goaway(void *ctx) { (void)ctx; }

static void on_closed(void *ctx) {
    bench_conn_t *c = ctx;
    bench_t *b = c->b;
    c->closed = true;
    c->ready = false;
    b->open--;
    if (!b->finishing) {
        /* a connection went away during the run: its slots stop; the run ends when the rest do */
        if (b->inflight == 0 && b->measuring) finish(b);
        return;
    }
    if (b->open == 0) {
        b->done(b->ctx, b->result);
        bench_free(b);
    }
}

static char *dup_str(const char *s) { return s ? strdup(s) : NULL; }

int mc_bench_start(mc_loop_t *loop, const mc_bench_config_t *cfg, mc_bench_done_fn done, void *ctx) {
    if (!cfg->host || !cfg->path || cfg->connections == 0 || cfg->concurrency == 0 || !done) return -1;
    bench_t *b = calloc(1, sizeof *b);
    mc_bench_result_t *r = calloc(1, sizeof *r);
    if (!b || !r) {
        free(b);
        free(r);
        return -1;
    }
    b->cfg = *cfg;
    b->loop = loop;
    b->result = r;
    b->done = done;
    b->ctx = ctx;
    b->host = dup_str(cfg->host);
    b->method = dup_str(cfg->method ? cfg->method : "POST");
    b->path = dup_str(cfg->path);
    b->nslots = cfg->connections * cfg->concurrency;
    b->conns = calloc(cfg->connections, sizeof *b->conns);
    b->slots = calloc(b->nslots, sizeof *b->slots);
    b->headers = calloc(cfg->nheaders ? cfg->nheaders : 1, sizeof *b->headers);
    b->body = cfg->body_len ? malloc(cfg->body_len) : NULL;
    bool failed = !b->host || !b->method || !b->path || !b->conns || !b->slots || !b->headers || (cfg->body_len && !b->body);
    /* header strings copied into one buffer, pointers fixed once it stops growing */
    size_t total = 0;
    for (size_t i = 0; i < cfg->nheaders; i++) total += cfg->headers[i].name_len + cfg->headers[i].value_len;
    if (!failed && mc_buf_reserve(&b->strings, total + 1) != 0) failed = true;
    if (failed) {
        free(r);
        bench_free(b);
        return -1;
    }
    for (size_t i = 0; i < cfg->nheaders; i++) {
        const mc_header_t *h = &cfg->headers[i];
        char *name = (char *)b->strings.data + b->strings.len;
        mc_buf_append(&b->strings, h->name, h->name_len);
        char *value = (char *)b->strings.data + b->strings.len;
        mc_buf_append(&b->strings, h->value, h->value_len);
        b->headers[i] = (mc_header_t){name, h->name_len, value, h->value_len};
    }
    if (cfg->body_len) memcpy(b->body, cfg->body, cfg->body_len);
    b->warm_left = cfg->warmup * cfg->connections;
    for (unsigned i = 0; i < b->nslots; i++) b->slots[i].conn = &b->conns[i % cfg->connections];
    mc_client_callbacks_t cb = {.on_connected = on_connected, .on_goaway = on_goaway, .on_closed = on_closed};
    b->connecting = cfg->connections;
    for (unsigned i = 0; i < cfg->connections; i++) {
        bench_conn_t *c = &b->conns[i];
        c->b = b;
        cb.ctx = c;
        b->open++;
        c->client = mc_client_connect(loop, b->host, cfg->port, 0, &cb);
        if (!c->client) {
            b->open--;
            c->closed = true;
            on_connected(c, -1, "cannot create a connection");
        }
    }
    return 0;
}

void mc_bench_result_free(mc_bench_result_t *r) {
    if (!r) return;
    free(r->latency_us);
    free(r);
}
