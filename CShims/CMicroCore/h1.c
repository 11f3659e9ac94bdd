/*
 * HTTP/1.1 server side on http-parser: keep-alive, pipelining (answered in request order, at most
 * max_pipelined in flight, then reading pauses), Content-Length and chunked bodies, 100-continue,
 * and limits that answer with a JSON error and close instead of failing.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int fail(http_parser *p, int status) {
    mc_conn_t *c = p->data;
    if (!c->h1_error) c->h1_error = status;
    return -1;
}

static int count_header_bytes(mc_conn_t *c, size_t n) {
    c->h1_header_bytes += n;
    return c->h1_header_bytes > c->server->config.max_header_bytes ? -1 : 0;
}

static int on_message_begin(http_parser *p) {
    mc_conn_t *c = p->data;
    mc_request_t *r = mc_request_new(c->loop, c, MC_PROTO_H1);
    if (!r) return fail(p, 500);
    c->h1_cur = r;
    c->h1_header_bytes = 0;
    if (!c->header_deadline) c->header_deadline = uv_now(&c->loop->uv) + c->server->config.header_timeout_ms;
    r->path_off = 0;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n) {
    mc_conn_t *c = p->data;
    mc_request_t *r = c->h1_cur;
    if (count_header_bytes(c, n)) return fail(p, 431);
    if (r->path_len == 0) r->path_off = (uint32_t)r->strings.len;
    if (mc_buf_append(&r->strings, at, n) != 0) return fail(p, 500);
    r->path_len += (uint32_t)n;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n) {
    mc_conn_t *c = p->data;
    mc_request_t *r = c->h1_cur;
    if (count_header_bytes(c, n)) return fail(p, 431);
    /* a name is a token: "Content-Length :" is not Content-Length (RFC 9112 5.1: reject it) */
    if (!mc_field_name_valid(at, n)) return fail(p, 400);
    if (!r->in_field) {
        /* after the header block: a trailer field, kept after trailer_index, never a header */
        if (r->in_trailers && !r->trailer_index) r->trailer_index = r->nhdrs + 1;
        if (mc_request_add_header(r, "", 0, "", 0) != 0) return fail(p, 500);
        r->hdrs[r->nhdrs - 1].name_off = (uint32_t)r->strings.len;
        r->in_field = true;
    }
    if (mc_buf_reserve(&r->strings, n) != 0) return fail(p, 500);
    for (size_t i = 0; i < n; i++) r->strings.data[r->strings.len + i] = mc_lower((uint8_t)at[i]);
    r->strings.len += n;
    r->hdrs[r->nhdrs - 1].name_len += (uint32_t)n;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
    mc_conn_t *c = p->data;
    mc_request_t *r = c->h1_cur;
    if (count_header_bytes(c, n)) return fail(p, 431);
    mc_hdr_off_t *h = &r->hdrs[r->nhdrs - 1];
    if (r->in_field) {
        h->value_off = (uint32_t)r->strings.len;
        h->value_len = 0;
        r->in_field = false;
    }
    if (mc_buf_append(&r->strings, at, n) != 0) return fail(p, 500);
    h->value_len += (uint32_t)n;
    return 0;
}

static bool header_is(const mc_request_t *r, size_t i, const char *name, const char *value) {
    if (i >= mc_request_header_fields(r)) return false;
    mc_header_t h = mc_request_header(r, i);
    return h.name_len == strlen(name) && memcmp(h.name, name, h.name_len) == 0 && h.value_len == strlen(value) &&
           strncasecmp(h.value, value, h.value_len) == 0;
}

static int on_headers_complete(http_parser *p) {
    mc_conn_t *c = p->data;
    mc_request_t *r = c->h1_cur;
    const char *m = http_method_str((enum http_method)p->method);
    r->method_off = (uint32_t)r->strings.len;
    r->method_len = (uint32_t)strlen(m);
    if (mc_buf_append(&r->strings, m, r->method_len) != 0) return fail(p, 500);
    r->server.head = p->method == HTTP_HEAD;
    r->in_trailers = true;
    c->header_deadline = 0;
    c->read_since = uv_now(&c->loop->uv); /* the body, if any, is awaited from now */
    if (p->method == HTTP_CONNECT) return fail(p, 405);
    if (p->content_length != ULLONG_MAX && p->content_length > c->server->config.max_body_bytes) return fail(p, 413);
    for (size_t i = 0; i < r->nhdrs; i++) {
        if (header_is(r, i, "expect", "100-continue")) {
            /* only when nothing is ahead of it, or the interim answer would jump the queue */
            if (c->h1_head == NULL) mc_conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        }
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
    mc_conn_t *c = p->data;
    mc_request_t *r = c->h1_cur;
    if (r->body.len + n > c->server->config.max_body_bytes) return fail(p, 413);
    if (mc_buf_append(&r->body, at, n) != 0) return fail(p, 500);
    mc_conn_body_held(c, r, (ptrdiff_t)n);
    c->read_since = uv_now(&c->loop->uv);
    return 0;
}

static unsigned queued(const mc_conn_t *c) {
    unsigned n = 0;
    for (const mc_request_t *r = c->h1_head; r; r = r->next) n++;
    return n;
}

static void enqueue(mc_conn_t *c, mc_request_t *r) {
    r->next = NULL;
    if (c->h1_tail) c->h1_tail->next = r;
    else c->h1_head = r;
    c->h1_tail = r;
    r->server.dispatched = true;
    c->active++;
}

/* ---------------------------------------------------------------- go-micro streams
 *
 * go-micro's HTTP transport streams by using HTTP/1.1 message syntax as framing, both ways, on a
 * connection of its own: the client's first request with a `Micro-Stream` header opens the
 * stream (its body is dropped, as go-micro's server drops it), each later request is one message
 * (or, with `Micro-Error: EOS`, the end of the client's messages), and the server writes one HTTP/1.1 response per message whenever it likes,
 * the last carrying `Micro-Error: EOS` (or the error). Here the stream is handed to the
 * application like an HTTP/2 stream: each message arrives through on_body with gRPC's 5-byte
 * prefix, so the same deframer serves both; what it writes (prefixed messages) is cut back into
 * response frames. */

static const mc_header_t *find_header(const mc_request_t *r, const char *name, mc_header_t *out) {
    size_t n = strlen(name);
    for (size_t i = 0; i < mc_request_header_fields(r); i++) {
        mc_header_t h = mc_request_header(r, i);
        if (h.name_len == n && memcmp(h.name, name, n) == 0) {
            *out = h;
            return out;
        }
    }
    return NULL;
}

/* One frame of the stream in progress: its body is the next message, or it ends the input. */
static void stream_frame(mc_conn_t *c, mc_request_t *frame) {
    mc_request_t *r = c->h1_stream;
    mc_server_t *s = c->server;
    mc_header_t error;
    bool end = find_header(frame, "micro-error", &error) != NULL;
    if (r && !r->server.responded && !r->server.aborted && !r->in_ended) {
        if (end) {
            r->in_ended = true;
            s->cb.on_body(s->cb.ctx, r, NULL, 0, 1);
        } else {
            uint8_t prefix[5] = {0, (uint8_t)(frame->body.len >> 24), (uint8_t)(frame->body.len >> 16),
                                 (uint8_t)(frame->body.len >> 8), (uint8_t)frame->body.len};
            /* the prefix goes in front of the body already gathered (no second copy of it) */
            if (mc_buf_reserve(&frame->body, 5) == 0) {
                memmove(frame->body.data + 5, frame->body.data, frame->body.len);
                memcpy(frame->body.data, prefix, 5);
                frame->body.len += 5;
                r->unconsumed += frame->body.len;
                s->cb.on_body(s->cb.ctx, r, frame->body.data, frame->body.len, 0);
            }
        }
    }
    /* the next message is awaited (the read timeout) until the client's messages are over */
    c->read_since = r && !r->in_ended && !r->server.responded ? uv_now(&c->loop->uv) : 0;
    mc_request_release(frame);
}

/* The first request with a Micro-Stream header, on a connection with nothing else in flight,
 * opens a stream. */
static bool opens_stream(mc_conn_t *c, mc_request_t *r, http_parser *p) {
    mc_header_t h;
    return c->server->cb.on_body && c->h1_head == NULL && http_should_keep_alive(p) &&
           find_header(r, "micro-stream", &h) != NULL;
}

/* A go-micro stream's opening request is handed over inside the parser (ordinary requests are
 * handed over by mc_h1_feed): if the application answered it there and the connection closed
 * meanwhile (its output could not be queued), the parser must not go on to the next pipelined
 * request, which would be made and handed over on a closed connection. Pausing stops
 * http_parser_execute here, and mc_h1_feed stops at the closed connection. */
static int closed_in_callback(http_parser *p) {
    http_parser_pause(p, 1);
    return 0;
}

static int on_message_complete(http_parser *p) {
    mc_conn_t *c = p->data;
    mc_request_t *r = c->h1_cur;
    c->h1_cur = NULL;
    c->read_since = 0;
    c->h1_seen_request = true;
    mc_server_t *s = c->server;
    if (c->h1_stream) {
        stream_frame(c, r);
        return 0;
    }
    if (opens_stream(c, r, p)) {
        /* go-micro's opening frame: its body is the request body of go-micro's client.Stream,
         * which go-micro's server reads and drops for every stream (its generated clients send an
         * empty message there, then each message with Send): the messages are the frames after it */
        mc_conn_body_held(c, r, -(ptrdiff_t)r->server.body_held);
        r->body.len = 0;
        r->streaming = true;
        r->server.keep_alive = true;
        r->server.dispatched = true;
        c->active++;
        c->h1_stream = r;
        s->cb.on_request(s->cb.ctx, r);
        if (mc_conn_closed(c)) return closed_in_callback(p);
        c->read_since = uv_now(&c->loop->uv); /* the first message is awaited (the read timeout) */
        return 0;
    }
    r->server.keep_alive = http_should_keep_alive(p); /* parsing stops once the connection is ENDING */
    enqueue(c, r);
    if (!r->server.keep_alive) mc_conn_enter(c, MC_CONN_ENDING);
    /* handed over by mc_h1_feed, where the parser stopped: it knows whether more of the read
     * follows (the answer to the last request of a read is written at once) */
    c->h1_ready = r;
    http_parser_pause(p, 1);
    return 0;
}

/* "HTTP/1.1 200 OK\r\n" (heads are written per request: no printf) */
static int status_line(mc_buf_t *b, int status) {
    if (!mc_status_valid(status)) status = 500; /* checked before: mc_request_respond_framed, mc_request_send_head */
    char line[13] = {'H', 'T', 'T', 'P', '/', '1', '.', '1', ' ', (char)('0' + status / 100),
                     (char)('0' + status / 10 % 10), (char)('0' + status % 10), ' '};
    const char *text = mc_status_text(status);
    int rc = mc_buf_append(b, line, sizeof line);
    rc |= mc_buf_append(b, text, strlen(text));
    rc |= mc_buf_append(b, "\r\n", 2);
    return rc;
}

/* "date: ...\r\n", the loop's date of this second */
static int date_line(mc_conn_t *c, mc_buf_t *b) {
    const char *date = mc_loop_date(c->loop);
    int rc = mc_buf_append(b, "date: ", 6);
    rc |= mc_buf_append(b, date, strlen(date));
    rc |= mc_buf_append(b, "\r\n", 2);
    return rc;
}

/* "content-length: N\r\n" */
static int content_length_line(mc_buf_t *b, size_t n) {
    int rc = mc_buf_append(b, "content-length: ", 16);
    rc |= mc_buf_append_decimal(b, n);
    rc |= mc_buf_append(b, "\r\n", 2);
    return rc;
}

/* The status line and the headers of an answer (or an answer frame), content-length left out:
 * the caller writes its own. */
static int status_and_headers(mc_buf_t *b, int status, const mc_header_t *h, size_t nh) {
    int rc = status_line(b, status);
    for (size_t i = 0; i < nh && rc == 0; i++) {
        /* framing and connection management are the core's: its own content-length and
         * connection fields are written by the caller */
        if (mc_field_connection_specific(h[i].name, h[i].name_len)) continue;
        rc |= mc_buf_append(b, h[i].name, h[i].name_len);
        rc |= mc_buf_append(b, ": ", 2);
        rc |= mc_buf_append(b, h[i].value, h[i].value_len);
        rc |= mc_buf_append(b, "\r\n", 2);
    }
    return rc;
}
int mc_h1_stream_head(mc_request_t *r, int status, const mc_header_t *h, size_t nh) {
    mc_buf_t *b = &r->h1_frame;
    b->len = 0;
    int rc = status_and_headers(b, status, h, nh);
    mc_header_t id;
    if (rc == 0 && find_header(r, "micro-stream", &id)) {
        rc |= mc_buf_append(b, "micro-stream: ", 14);
        rc |= mc_buf_append(b, id.value, id.value_len);
        rc |= mc_buf_append(b, "\r\n", 2);
    }
    return rc;
}

/* One answer frame: the head, content-length, then the extra header lines and the body. */
int mc_h1_write_frame(mc_conn_t *c, mc_request_t *r, const char *extra, const uint8_t *body, size_t len) {
    int rc = mc_buf_append(&c->out, r->h1_frame.data, r->h1_frame.len);
    if (rc == 0 && extra) rc = mc_buf_append(&c->out, extra, strlen(extra));
    if (rc == 0) rc = content_length_line(&c->out, len);
    if (rc == 0) rc = mc_buf_append(&c->out, "\r\n", 2);
    if (rc == 0) rc = mc_buf_append(&c->out, body, len);
    return rc;
}

int mc_h1_frames_out(mc_conn_t *c, mc_request_t *r, const uint8_t *data, size_t len) {
    if (mc_buf_append(&r->sendq, data, len) != 0) return -1;
    /* cut whole prefixed messages out of the queue, one frame each */
    size_t off = 0;
    while (r->sendq.len - off >= 5) {
        const uint8_t *m = r->sendq.data + off;
        size_t n = (size_t)m[1] << 24 | (size_t)m[2] << 16 | (size_t)m[3] << 8 | m[4];
        if (r->sendq.len - off - 5 < n) break;
        if (mc_h1_write_frame(c, r, NULL, m + 5, n) != 0) return -1;
        off += 5 + n;
    }
    mc_buf_consume(&r->sendq, off);
    mc_loop_mark_dirty(c->loop, c);
    return 0;
}

int mc_h1_stream_write(mc_request_t *r, const uint8_t *data, size_t len) {
    mc_conn_t *c = r->conn;
    if (mc_h1_frames_out(c, r, data, len) != 0) return -1;
    if (mc_conn_out_pending(c) >= MC_STREAM_HIGH_WATER) {
        r->want_writable = true;
        return 1;
    }
    return 0;
}

/* The last frame: Micro-Error EOS, or the error the trailers carry; then the connection closes
 * once written (go-micro's client closes it too). */
int mc_h1_stream_finish(mc_request_t *r, const mc_header_t *t, size_t nt) {
    mc_conn_t *c = r->conn;
    mc_buf_t extra = {0};
    int rc = 0;
    for (size_t i = 0; i < nt && rc == 0; i++) {
        if (t[i].name_len != 11 || strncasecmp(t[i].name, "micro-error", 11) != 0 || !mc_field_valid(&t[i])) continue;
        rc |= mc_buf_append(&extra, "micro-error: ", 13);
        rc |= mc_buf_append(&extra, t[i].value, t[i].value_len);
        rc |= mc_buf_append(&extra, "\r\n", 2);
    }
    if (rc == 0 && extra.len == 0) rc = mc_buf_append(&extra, "micro-error: EOS\r\n", 18);
    if (rc == 0) rc = mc_buf_append(&extra, "", 1); /* NUL-terminated for write_frame */
    if (rc == 0) rc = mc_h1_write_frame(c, r, (const char *)extra.data, NULL, 0);
    mc_buf_free(&extra);
    c->h1_stream = NULL;
    mc_conn_enter(c, MC_CONN_ENDING);
    mc_loop_mark_dirty(c->loop, c);
    return rc;
}

void mc_h1_stream_flushed(mc_conn_t *c) {
    /* a go-micro stream, or a chunked answer at the head of the queue */
    mc_request_t *r = c->h1_stream ? c->h1_stream : c->h1_head;
    if (r && r->want_writable && mc_conn_out_pending(c) < MC_STREAM_LOW_WATER) {
        r->want_writable = false;
        c->server->cb.on_writable(c->server->cb.ctx, r);
    }
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void mc_h1_init(mc_conn_t *c) {
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
}

/* A core-generated error goes into the queue like any answer, then the connection closes. */
static void respond_error(mc_conn_t *c, int status, const char *detail) {
    mc_request_t *r = c->h1_cur;
    c->h1_cur = NULL;
    if (!r) r = mc_request_new(c->loop, c, MC_PROTO_H1);
    if (!r) {
        mc_conn_close(c);
        return;
    }
    r->server.keep_alive = false;
    enqueue(c, r);
    mc_conn_enter(c, MC_CONN_ENDING);
    mc_buf_t body = {0};
    mc_error_body(&body, status, detail);
    mc_header_t ct = {"content-type", 12, "application/json", 16};
    mc_request_respond(r, status, &ct, 1, body.data, body.len, NULL, 0);
    mc_buf_free(&body);
}

static const char *error_detail(mc_conn_t *c, int status, char *buf, size_t len) {
    switch (status) {
    case 413:
        snprintf(buf, len, "request body exceeds the limit of %zu bytes", c->server->config.max_body_bytes);
        return buf;
    case 431:
        snprintf(buf, len, "request headers exceed the limit of %zu bytes", c->server->config.max_header_bytes);
        return buf;
    case 405: return "CONNECT is not supported";
    case 500: return "out of memory";
    default:
        snprintf(buf, len, "malformed HTTP/1.1 request: %s",
                 http_errno_description(HTTP_PARSER_ERRNO(&c->parser)));
        return buf;
    }
}

int mc_h1_feed(mc_conn_t *c, const uint8_t *data, size_t n) {
    size_t off = 0;
    c->feed_follows = true; /* go-micro streams' frames are handed over inside the parser */
    while (off < n && !mc_conn_closed(c) && c->state < MC_CONN_ENDING) {
        size_t done = http_parser_execute(&c->parser, &settings, (const char *)data + off, n - off);
        off += done;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_PAUSED && c->h1_ready) {
            mc_request_t *r = c->h1_ready;
            c->h1_ready = NULL;
            c->feed_follows = off < n;
            c->server->cb.on_request(c->server->cb.ctx, r);
            c->feed_follows = true;
            if (mc_conn_closed(c)) return 0; /* its answer could not be queued: nothing more is parsed */
        }
        if (e == HPE_PAUSED) {
            if (c->state < MC_CONN_ENDING && queued(c) < c->server->config.max_pipelined) {
                http_parser_pause(&c->parser, 0);
                continue;
            }
            c->h1_paused = c->state < MC_CONN_ENDING;
            if (c->h1_paused && mc_buf_append(&c->in, data + off, n - off) != 0) return -1;
            return 0;
        }
        if (e != HPE_OK) {
            if (c->h1_not_http && !c->h1_seen_request) {
                /* neither HTTP/1.x nor the HTTP/2 preface: most likely an HTTP/2 client whose
                 * preface is broken, which RFC 9113 (3.4) answers with GOAWAY(PROTOCOL_ERROR) */
                static const uint8_t goaway[] = {0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
                c->h1_cur = NULL; /* released when the connection closes */
                mc_conn_enter(c, MC_CONN_ENDING);
                mc_conn_write(c, goaway, sizeof goaway);
                return 0;
            }
            int status = c->h1_error ? c->h1_error : 400;
            char buf[160];
            respond_error(c, status, error_detail(c, status, buf, sizeof buf));
            return 0;
        }
        if (done == 0) break;
    }
    return 0;
}

/* Called after an answer left the queue: parse what waited while the queue was full. */
static void resume(mc_conn_t *c) {
    if (!c->h1_paused || mc_conn_closed(c) || queued(c) >= c->server->config.max_pipelined) return;
    c->h1_paused = false;
    http_parser_pause(&c->parser, 0);
    mc_buf_t held = c->in;
    c->in = (mc_buf_t){0};
    mc_h1_feed(c, held.data, held.len);
    mc_buf_free(&held);
}

/* Answers leave in request order: writes every ready one at the head of the queue (those written
 * straight to the output have an empty sendq). A chunked answer still streaming stays at the head
 * with what it has so far written; its next chunks go straight out, and the answers behind it
 * wait for its end. */
static void drain(mc_conn_t *c) {
    while (c->h1_head && (c->h1_head->server.h1_ready || c->h1_head->server.h1_chunked)) {
        mc_request_t *q = c->h1_head;
        if (q->sendq.len && mc_buf_append(&c->out, q->sendq.data, q->sendq.len) != 0) {
            mc_conn_close(c);
            return;
        }
        q->sendq.len = 0;
        if (!q->server.h1_ready) break;
        c->h1_head = q->next;
        if (!c->h1_head) c->h1_tail = NULL;
        if (!q->server.keep_alive) mc_conn_enter(c, MC_CONN_ENDING);
        mc_request_release(q);
    }
    mc_loop_mark_dirty(c->loop, c);
    resume(c);
}

/* ---------------------------------------------------------------- chunked answers
 *
 * An ordinary request whose handler streams its answer (server-sent events, a download made as
 * it goes): the head says transfer-encoding: chunked, each write is one chunk, and the end is the
 * empty chunk. Until the request is at the head of the queue its bytes wait in its sendq (answers
 * leave in request order); from then on they go straight to the output, and the connection's
 * output is what the writer's backpressure counts. */

/* Where r's answer bytes go now. */
static mc_buf_t *answer_buffer(mc_conn_t *c, mc_request_t *r) { return c->h1_head == r ? &c->out : &r->sendq; }

int mc_h1_chunked_head(mc_request_t *r, int status, const mc_header_t *h, size_t nh) {
    mc_conn_t *c = r->conn;
    /* HEAD, 1xx, 204 and 304 answers have no body to stream */
    if (r->server.head || status < 200 || status == 204 || status == 304 || !mc_status_valid(status)) return -1;
    mc_buf_t *b = answer_buffer(c, r);
    int rc = status_and_headers(b, status, h, nh);
    if (rc == 0) rc = mc_buf_append(b, "transfer-encoding: chunked\r\n", 28);
    if (rc == 0) rc = date_line(c, b);
    if (rc == 0 && !r->server.keep_alive) rc = mc_buf_append(b, "connection: close\r\n", 19);
    if (rc == 0) rc = mc_buf_append(b, "\r\n", 2);
    if (rc != 0) {
        mc_conn_close(c);
        return -1;
    }
    r->server.h1_chunked = true;
    mc_loop_mark_dirty(c->loop, c);
    return 0;
}

int mc_h1_chunked_write(mc_request_t *r, const uint8_t *data, size_t len) {
    mc_conn_t *c = r->conn;
    mc_buf_t *b = answer_buffer(c, r);
    /* an empty chunk would end the answer: nothing to write */
    if (len && (mc_buf_appendf(b, "%zx\r\n", len) != 0 || mc_buf_append(b, data, len) != 0 || mc_buf_append(b, "\r\n", 2) != 0)) {
        mc_conn_close(c);
        return -1;
    }
    mc_loop_mark_dirty(c->loop, c);
    size_t queued = b == &c->out ? mc_conn_out_pending(c) : r->sendq.len;
    if (queued >= MC_STREAM_HIGH_WATER) {
        r->want_writable = true;
        return 1;
    }
    return 0;
}

/* The last chunk (no trailers: HTTP/1.1 clients seldom read them), written when the answer is
 * finished through mc_request_respond like any other; the queue then moves on. */
static int end_chunks(mc_conn_t *c, mc_request_t *r) {
    int rc = mc_buf_append(answer_buffer(c, r), "0\r\n\r\n", 5);
    if (rc != 0) mc_conn_close(c);
    r->want_writable = false;
    r->server.h1_ready = true;
    if (!mc_conn_closed(c)) drain(c);
    return rc;
}

static int serialize(mc_conn_t *c, mc_request_t *r, mc_buf_t *b, int status, const mc_header_t *h, size_t nh,
                     mc_body_t body) {
    int rc = status_and_headers(b, status, h, nh);
    if (rc == 0 && status >= 200 && status != 204 && status != 304)
        rc = content_length_line(b, body.prefix_len + body.len);
    if (rc == 0) rc = date_line(c, b);
    if (rc == 0 && !r->server.keep_alive) rc = mc_buf_append(b, "connection: close\r\n", 19);
    if (rc == 0) rc = mc_buf_append(b, "\r\n", 2);
    if (rc == 0 && !r->server.head) rc = mc_buf_append(b, body.prefix, body.prefix_len);
    if (rc == 0 && !r->server.head) rc = mc_buf_append(b, body.data, body.len);
    return rc;
}

int mc_h1_respond(mc_request_t *r, int status, const mc_header_t *h, size_t nh, mc_body_t body) {
    mc_conn_t *c = r->conn;
    if (r == c->h1_stream) {
        /* a stream answered whole (an error before any message): one frame, and it is over */
        c->h1_stream = NULL;
        r->server.keep_alive = false;
        int rc = serialize(c, r, &c->out, status, h, nh, body);
        mc_conn_enter(c, MC_CONN_ENDING);
        mc_request_release(r);
        mc_loop_mark_dirty(c->loop, c);
        return rc;
    }
    if (r->server.h1_chunked) return end_chunks(c, r);
    /* an application that says "connection: close" gets it: the core writes the field itself */
    for (size_t i = 0; i < nh; i++)
        if (h[i].name_len == 10 && strncasecmp(h[i].name, "connection", 10) == 0 && h[i].value_len == 5 &&
            strncasecmp(h[i].value, "close", 5) == 0)
            r->server.keep_alive = false;
    if (serialize(c, r, answer_buffer(c, r), status, h, nh, body) != 0) {
        mc_conn_close(c);
        return -1;
    }
    r->server.h1_ready = true;
    drain(c);
    return 0;
}

/* A deadline passed: the request head (body = 0) or a body / a stream's next message (1). */
static void timeout(mc_conn_t *c, int body) {
    if (c->h1_cur) {
        respond_error(c, 408, body ? "request body not received in time" : "request headers not received in time");
        mc_loop_mark_dirty(c->loop, c);
    } else {
        /* a go-micro stream whose next message did not come: it ends, its handler is told */
        mc_conn_close(c);
    }
}
static void header_timeout(mc_conn_t *c) { timeout(c, 0); }
static void read_timeout(mc_conn_t *c) { timeout(c, 1); }

static void shutdown_gracefully(mc_conn_t *c) {
    /* the answers still to come say "connection: close"; nothing more is read */
    for (mc_request_t *q = c->h1_head; q; q = q->next) q->server.keep_alive = false;
    mc_conn_enter(c, MC_CONN_ENDING);
    mc_loop_mark_dirty(c->loop, c);
}

static void h1_free(mc_conn_t *c) {
    c->h1_head = c->h1_tail = NULL;
    c->h1_cur = NULL;
    c->h1_stream = NULL;
}

/* HTTP/1.1 has no window: reading pauses while pipelined requests wait, while a stream's reader
 * is behind, and while the connection is past its buffered-body budget. */
static bool h1_input_full(mc_conn_t *c) {
    if (c->h1_paused) return true;
    if (c->h1_stream && c->h1_stream->unconsumed > MC_H1_STREAM_WINDOW) return true;
    return c->body_buffered > c->server->config.max_buffered_body_bytes;
}

/* Done once either side ended it and every request read is answered. */
static bool h1_done(mc_conn_t *c) { return c->state >= MC_CONN_HALF_CLOSED && c->active == 0 && !c->h1_paused; }

/* A half-closed client still gets every answer, including those of requests still waiting in
 * the input buffer; a half-close also ends a go-micro stream's messages, as EOS would. */
static bool h1_eof(mc_conn_t *c, ssize_t err) {
    if (err != UV_EOF || !(c->active || c->out.len || c->writing || c->h1_paused)) return false;
    mc_conn_enter(c, MC_CONN_HALF_CLOSED);
    mc_request_t *r = c->h1_stream;
    if (r && !r->in_ended && !r->server.responded && !r->server.aborted) {
        r->in_ended = true;
        c->server->cb.on_body(c->server->cb.ctx, r, NULL, 0, 1);
    }
    return true;
}


const mc_proto_ops_t mc_h1_proto = {
    .proto = MC_PROTO_H1,
    .feed = mc_h1_feed,
    .input_full = h1_input_full,
    .done = h1_done,
    .eof = h1_eof,
    .header_timeout = header_timeout,
    .read_timeout = read_timeout,
    .idle = mc_proto_never,       /* closed at once: HTTP/1.1 has no way to say goodbye first */
    .grace_over = mc_proto_never,
    .shutdown = shutdown_gracefully,
    .free = h1_free,
};
