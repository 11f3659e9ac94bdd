/*
 * HTTP/1.1 client connections, for servers that do not speak HTTP/2 (go-micro's HTTP transport
 * and broker). One call at a time per connection, kept alive between calls: the caller pools
 * connections. The request is written whole into the connection's output at submission; the
 * answer is read with http-parser (Content-Length, chunked with trailers, or up to the server's
 * EOF), within the same limits as HTTP/2 answers: MC_CLIENT_MAX_FIELD_BYTES of fields and the
 * connection's max_response_bytes of body. An HTTP/1.1 call cannot be reset alone: cancelling it
 * or passing its deadline closes its connection.
 *
 * go-micro's streams over HTTP/1.1 use message syntax as framing on a connection of their own:
 * an opening request with an empty body (go-micro's server drops that body), then every message
 * the client sends is a request (the same request line and fields each time, with a Micro-Stream
 * id), `Micro-Error: EOS` ends its side; every message the server sends is a 200
 * response, the last one carrying `Micro-Error: EOS` or the error. Such a stream is handed to the
 * application as an HTTP/2 stream is: the first answer frame's fields through on_head, each
 * message with gRPC's 5-byte prefix through on_data, the error as a micro-error trailer.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static mc_request_t *current(const http_parser *p) { return ((mc_conn_t *)p->data)->h1_cur; }

/* The parse fails; `why` (when given) is what mc_client_error reports for the broken call. */
static int fail(http_parser *p, const char *why) {
    mc_conn_t *c = p->data;
    if (why && !c->client->error[0]) snprintf(c->client->error, sizeof c->client->error, "%s", why);
    return -1;
}

static int count_field_bytes(http_parser *p, size_t n) {
    mc_request_t *r = current(p);
    r->field_bytes += n;
    if (r->field_bytes <= MC_CLIENT_MAX_FIELD_BYTES) return 0;
    r->client.fields_too_large = true;
    return fail(p, NULL);
}

static int on_header_field(http_parser *p, const char *at, size_t n) {
    mc_request_t *r = current(p);
    if (!r->in_field) {
        if (count_field_bytes(p, 32)) return -1; /* per field, as HPACK counts it */
        /* after the header block: a trailer of a chunked answer */
        if (r->in_trailers && !r->trailer_index) r->trailer_index = r->nhdrs + 1;
        if (mc_request_add_header(r, "", 0, "", 0) != 0) return fail(p, "out of memory");
        r->hdrs[r->nhdrs - 1].name_off = (uint32_t)r->strings.len;
        r->in_field = true;
    }
    if (count_field_bytes(p, n)) return -1;
    if (n && !mc_field_name_valid(at, n)) return fail(p, "the server's answer has a malformed header field name");
    if (mc_buf_reserve(&r->strings, n) != 0) return fail(p, "out of memory");
    for (size_t i = 0; i < n; i++) r->strings.data[r->strings.len + i] = mc_lower((uint8_t)at[i]);
    r->strings.len += n;
    r->hdrs[r->nhdrs - 1].name_len += (uint32_t)n;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
    mc_request_t *r = current(p);
    if (count_field_bytes(p, n)) return -1;
    mc_hdr_off_t *h = &r->hdrs[r->nhdrs - 1];
    if (r->in_field) {
        h->value_off = (uint32_t)r->strings.len;
        h->value_len = 0;
        r->in_field = false;
    }
    if (mc_buf_append(&r->strings, at, n) != 0) return fail(p, "out of memory");
    h->value_len += (uint32_t)n;
    return 0;
}

static int on_headers_complete(http_parser *p) {
    mc_request_t *r = current(p);
    if (p->status_code < 100 || p->status_code > 999) return fail(p, "the server's answer has an invalid status");
    if (!r->client.head_seen) r->client.status = p->status_code;
    r->client.interim = p->status_code < 200;
    r->in_trailers = true;
    if (p->status_code == 101) return fail(p, "the server switched protocols (101) on a call");
    if (!r->client.interim && p->content_length != ULLONG_MAX && p->content_length > r->conn->client->max_response_bytes) {
        r->client.too_large = true;
        return fail(p, NULL);
    }
    /* the answer to a HEAD carries the length of a body that does not follow */
    return r->method_len == 4 && memcmp(r->strings.data + r->method_off, "HEAD", 4) == 0 && !r->client.interim ? 1 : 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
    mc_request_t *r = current(p);
    if (r->body.len + n > r->conn->client->max_response_bytes) {
        r->client.too_large = true;
        return fail(p, NULL);
    }
    return mc_buf_append(&r->body, at, n) != 0 ? fail(p, "out of memory") : 0;
}

static int on_message_begin(http_parser *p) {
    mc_request_t *r = current(p);
    if (r && r->streaming && r->client.head_seen) {
        /* a later frame of a stream: its fields are looked at, then dropped */
        r->client.frame_nhdrs = r->nhdrs;
        r->client.frame_strings = r->strings.len;
        r->in_trailers = false;
        r->field_bytes = 0;
    }
    return 0;
}

/* A later frame's fields go (they repeat the first one's), trailers of its own included: the
 * trailer index is kept only where it still points into what is left. */
static void drop_frame_fields(mc_request_t *r) {
    r->nhdrs = r->client.frame_nhdrs;
    r->strings.len = r->client.frame_strings;
    if (r->trailer_index > r->nhdrs + 1) r->trailer_index = 0;
}

/* One answer frame of a stream, read whole: a message, or the end (EOS or an error). */
static int stream_frame(http_parser *p, mc_request_t *r) {
    mc_conn_t *c = p->data;
    size_t from = r->client.head_seen ? r->client.frame_nhdrs : 0;
    mc_header_t error = {0};
    bool ended = false;
    for (size_t i = from; i < r->nhdrs; i++) {
        mc_header_t h = mc_request_header(r, i);
        if (h.name_len == 11 && memcmp(h.name, "micro-error", 11) == 0) {
            error = h;
            ended = true;
        }
    }
    bool eos = ended && error.value_len == 3 && memcmp(error.value, "EOS", 3) == 0;
    char *why = NULL;
    if (ended && !eos && !(why = strndup(error.value, error.value_len))) return fail(p, "out of memory");
    if (r->client.head_seen) drop_frame_fields(r);
    if (ended) {
        if (!r->client.head_seen) {
            /* nothing but the end: its fields are the head, as with HTTP/2's trailers-only answer */
            r->client.head_seen = true;
            if (r->client.scb.on_head) r->client.scb.on_head(r->client.done_ctx, r);
        }
        if (why) {
            /* the error is the stream's last word: a trailer, as over HTTP/2 */
            r->trailer_index = r->nhdrs + 1;
            int rc = mc_request_add_header(r, "micro-error", 11, why, strlen(why));
            free(why);
            if (rc != 0) return fail(p, "out of memory");
        }
        r->body.len = 0;
        c->client->h1_complete = true;
        http_parser_pause(p, 1);
        return 0;
    }
    if (!r->client.head_seen) {
        r->client.head_seen = true;
        if (r->client.scb.on_head) r->client.scb.on_head(r->client.done_ctx, r);
    }
    size_t n = r->body.len;
    if (mc_buf_reserve(&r->body, 5) != 0) return fail(p, "out of memory");
    memmove(r->body.data + 5, r->body.data, n);
    r->body.data[0] = 0;
    r->body.data[1] = (uint8_t)(n >> 24);
    r->body.data[2] = (uint8_t)(n >> 16);
    r->body.data[3] = (uint8_t)(n >> 8);
    r->body.data[4] = (uint8_t)n;
    r->unconsumed += n + 5; /* credited as the application takes it; reading pauses past a window */
    if (r->client.scb.on_data) r->client.scb.on_data(r->client.done_ctx, r->body.data, n + 5);
    r->body.len = 0;
    return 0;
}

static int on_message_complete(http_parser *p) {
    mc_conn_t *c = p->data;
    mc_request_t *r = c->h1_cur;
    if (r->streaming && !r->client.interim) return stream_frame(p, r);
    if (r->client.interim) {
        /* a 1xx answer (100 Continue, 103 Early Hints): its fields are dropped, the real one follows */
        if (r->client.head_seen) {
            drop_frame_fields(r);
        } else {
            r->nhdrs = 0;
            r->strings.len = r->method_off + r->method_len; /* the method stays (HEAD) */
            r->trailer_index = 0;
        }
        r->field_bytes = 0;
        r->in_trailers = false;
        r->in_field = false;
        if (!r->client.head_seen) r->client.status = 0;
        r->client.interim = false;
        return 0;
    }
    c->client->h1_complete = true;
    http_parser_pause(p, 1); /* finished after the parse returns, with what followed looked at */
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void mc_h1_client_init(mc_conn_t *c) {
    http_parser_init(&c->parser, HTTP_RESPONSE);
    c->parser.data = c;
}

/* The answer was read whole: the call is done, and the connection stays for the next one unless
 * the server said otherwise. */
static void complete(mc_conn_t *c) {
    mc_request_t *r = c->h1_cur;
    bool keep = !r->streaming && http_should_keep_alive(&c->parser); /* a stream's connection was its own */
    c->h1_cur = NULL;
    c->client->h1_complete = false;
    http_parser_pause(&c->parser, 0);
    if (!keep) mc_conn_enter(c, MC_CONN_ENDING); /* closes once nothing is left to write */
    mc_client_finish_call(r, MC_CALL_OK);
    mc_loop_mark_dirty(c->loop, c);
}

static int h1_client_feed(mc_conn_t *c, const uint8_t *p, size_t n) {
    if (c->state >= MC_CONN_ENDING) return 0; /* after a "connection: close" answer */
    if (!c->h1_cur) {
        /* bytes with no call waiting for them: no answer to anything */
        snprintf(c->client->error, sizeof c->client->error, "the server sent bytes that answer no call");
        return -1;
    }
    size_t used = http_parser_execute(&c->parser, &settings, (const char *)p, n);
    if (c->client->h1_complete) {
        /* HTTP/1.1 answers come one per request: bytes after this one answer nothing (the next
         * request is not even written), a broken server. The call still has its answer; the
         * connection takes no other (ENDING first, so that done cannot start one on it). */
        bool broken = used < n;
        if (broken) {
            snprintf(c->client->error, sizeof c->client->error, "the server sent bytes that answer no call");
            mc_conn_enter(c, MC_CONN_ENDING);
        }
        complete(c);
        return broken ? -1 : 0;
    }
    if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK || c->parser.upgrade) {
        if (!c->client->error[0])
            snprintf(c->client->error, sizeof c->client->error, "malformed HTTP/1.1 answer: %s",
                     http_errno_description(HTTP_PARSER_ERRNO(&c->parser)));
        return -1; /* the connection closes; the call ends as RESET (or TOO_LARGE) */
    }
    return 0;
}

/* The server's EOF: it ends an answer read up to it; otherwise the call (if any) broke. */
static bool h1_client_eof(mc_conn_t *c, ssize_t err) {
    if (err == UV_EOF && c->h1_cur && c->state == MC_CONN_OPEN) {
        http_parser_execute(&c->parser, &settings, NULL, 0);
        if (c->client->h1_complete) complete(c);
    }
    return false; /* the connection closes; a call still waiting ends as RESET */
}

/* Nothing left to do: only once the connection ends (after an answer that closes it). */
static bool h1_client_done(mc_conn_t *c) { return c->state >= MC_CONN_ENDING && !c->h1_cur; }

/* A stream's messages wait for the application past a window: reading pauses (TCP's backpressure). */
static bool h1_client_input_full(mc_conn_t *c) { return c->h1_cur && c->h1_cur->streaming && c->h1_cur->unconsumed > MC_H1_STREAM_WINDOW; }

static void h1_client_free(mc_conn_t *c) { (void)c; }

const mc_proto_ops_t mc_h1_client_proto = {
    .proto = MC_PROTO_H1_CLIENT,
    .feed = h1_client_feed,
    .input_full = h1_client_input_full,
    .done = h1_client_done,
    .eof = h1_client_eof,
    .header_timeout = mc_conn_close,
    .read_timeout = mc_conn_close,
    .idle = mc_proto_never,
    .grace_over = mc_proto_never,
    .shutdown = mc_conn_close,
    .free = h1_client_free,
};

/* A method is a token; a request target is visible ASCII (no space, no control byte). */
static bool target_valid(const char *path) {
    if (!path[0]) return false;
    for (const char *s = path; *s; s++)
        if ((uint8_t)*s <= 0x20 || (uint8_t)*s >= 0x7f) return false;
    return true;
}

/* Fields the core writes itself on an HTTP/1.1 request. */
static bool written_by_core(const mc_header_t *h) {
    return (h->name_len == 4 && strncasecmp(h->name, "host", 4) == 0) || (h->name_len == 2 && strncasecmp(h->name, "te", 2) == 0) ||
           mc_field_connection_specific(h->name, h->name_len);
}

/* A new call on c, its request line and fields (all but content-length) in r->h1_frame, and its
 * first frame written with `body`: the whole request of a call, the opening frame of a stream
 * (empty: go-micro's server reads and drops that body; the messages come after it). NULL if the
 * connection cannot take it, with *invalid set when HTTP/1.1 cannot carry it. */
static mc_request_t *start(mc_conn_t *c, const char *method, const char *path, const mc_header_t *h, size_t nh,
                           const uint8_t *body, size_t len, bool streaming, bool *invalid) {
    *invalid = false;
    if (c->h1_cur) return NULL;
    size_t mlen = strlen(method);
    bool fields_ok = mc_field_name_valid(method, mlen) && target_valid(path);
    for (size_t i = 0; i < nh && fields_ok; i++)
        fields_ok = (h[i].name_len > 0 && h[i].name[0] == ':') || mc_field_valid(&h[i]);
    if (!fields_ok) {
        *invalid = true;
        return NULL;
    }
    mc_request_t *r = mc_request_new(c->loop, c, MC_PROTO_H1_CLIENT);
    if (!r) return NULL;
    /* the method is kept with the answer's strings: a HEAD's answer has no body */
    r->method_off = 0;
    r->method_len = (uint32_t)mlen;
    mc_buf_t *head = &r->h1_frame;
    bool v6 = strchr(c->client->host, ':') != NULL;
    size_t before = c->out.len;
    int rc = mc_buf_append(&r->strings, method, mlen);
    if (rc == 0)
        rc = mc_buf_appendf(head, "%s %s HTTP/1.1\r\nhost: %s%s%s:%u\r\n", method, path, v6 ? "[" : "", c->client->host,
                            v6 ? "]" : "", (unsigned)c->client->port);
    for (size_t i = 0; i < nh && rc == 0; i++) {
        if ((h[i].name_len > 0 && h[i].name[0] == ':') || written_by_core(&h[i])) continue;
        rc = mc_buf_append(head, h[i].name, h[i].name_len) || mc_buf_append(head, ": ", 2) ||
             mc_buf_append(head, h[i].value, h[i].value_len) || mc_buf_append(head, "\r\n", 2);
    }
    if (rc == 0) rc = mc_h1_write_frame(c, r, NULL, body, len);
    if (rc != 0) {
        c->out.len = before; /* no half request on the wire */
        mc_request_release(r);
        return NULL;
    }
    if (++c->client->h1_calls <= 0) c->client->h1_calls = 1;
    r->stream_id = c->client->h1_calls;
    r->client.sent = true; /* the server may act on it from now on: never retried elsewhere */
    r->head_sent = true;
    r->streaming = streaming;
    c->h1_cur = r;
    c->active++;
    mc_loop_mark_dirty(c->loop, c);
    return r;
}

mc_request_t *mc_h1_client_submit(mc_conn_t *c, const char *method, const char *path, const mc_header_t *h, size_t nh,
                                  const uint8_t *body, size_t len, bool *invalid) {
    return start(c, method, path, h, nh, body, len, false, invalid);
}

mc_request_t *mc_h1_client_open_stream(mc_conn_t *c, const char *method, const char *path, const mc_header_t *h, size_t nh,
                                       bool *invalid) {
    return start(c, method, path, h, nh, NULL, 0, true, invalid);
}

int mc_h1_client_stream_write(mc_request_t *r, const uint8_t *data, size_t len) {
    mc_conn_t *c = r->conn;
    if (mc_h1_frames_out(c, r, data, len) != 0) return -1;
    if (mc_conn_out_pending(c) >= MC_STREAM_HIGH_WATER) {
        r->want_writable = true;
        return 1;
    }
    return 0;
}

int mc_h1_client_stream_finish(mc_request_t *r) {
    mc_conn_t *c = r->conn;
    r->out_finished = true;
    r->want_writable = false;
    /* a part of a message left unwritten is dropped with the rest: the server's EOS ends it */
    int rc = mc_h1_write_frame(c, r, "micro-error: EOS\r\n", NULL, 0);
    mc_loop_mark_dirty(c->loop, c);
    return rc;
}

void mc_h1_client_stream_flushed(mc_conn_t *c) {
    mc_request_t *r = c->h1_cur;
    if (r->want_writable && mc_conn_out_pending(c) < MC_STREAM_LOW_WATER) {
        r->want_writable = false;
        if (r->client.scb.on_writable) r->client.scb.on_writable(r->client.done_ctx);
    }
}

void mc_h1_client_end(mc_conn_t *c, mc_request_t *r) {
    if (c->h1_cur == r) mc_conn_close(c); /* the call ends with its connection (as cancelled / timed out) */
}
