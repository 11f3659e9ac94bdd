/*
 * Requests: one object per HTTP/1 message or HTTP/2 stream, recycled through a per-loop pool so
 * that the steady state allocates nothing. A request outlives its connection if need be: the
 * handler always answers with mc_request_respond, which frees it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MC_KEEP_BYTES (16 * 1024)

void mc_request_unlink(mc_request_t *r) {
    mc_conn_t *c = r->conn;
    if (!c) return;
    /* its body leaves the connection's budget with it */
    if (r->server.body_held) mc_conn_body_held(c, r, -(ptrdiff_t)r->server.body_held);
    if (r->proto == MC_PROTO_H2 && (r->server.uncredited || c->body_uncredited)) mc_h2_request_leaves(c, r);
    if (r->rprev) r->rprev->rnext = r->rnext;
    else c->reqs = r->rnext;
    if (r->rnext) r->rnext->rprev = r->rprev;
    r->rnext = r->rprev = NULL;
    r->conn = NULL;
}

mc_request_t *mc_request_new(mc_loop_t *loop, mc_conn_t *c, int proto) {
    mc_request_t *r = loop->request_pool;
    if (r) {
        loop->request_pool = r->next;
        loop->request_pool_len--;
    } else {
        r = calloc(1, sizeof *r);
        if (!r) return NULL;
    }
    mc_buf_t strings = r->strings, body = r->body, sendq = r->sendq, tstr = r->trailer_strings, frame = r->h1_frame, head = r->head_block;
    mc_hdr_off_t *hdrs = r->hdrs;
    size_t caphdrs = r->caphdrs;
    memset(r, 0, sizeof *r);
    r->strings = strings;
    r->body = body;
    r->sendq = sendq;
    r->trailer_strings = tstr;
    r->h1_frame = frame;
    r->head_block = head;
    r->hdrs = hdrs;
    r->caphdrs = caphdrs;
    r->loop = loop;
    r->proto = proto;
    r->conn = c;
    r->rnext = c->reqs;
    if (c->reqs) c->reqs->rprev = r;
    c->reqs = r;
    return r;
}

static void destroy(mc_request_t *r) {
    mc_buf_free(&r->strings);
    mc_buf_free(&r->body);
    mc_buf_free(&r->sendq);
    mc_buf_free(&r->trailer_strings);
    mc_buf_free(&r->h1_frame);
    mc_buf_free(&r->head_block);
    free(r->hdrs);
    free(r);
}

void mc_request_release(mc_request_t *r) {
    mc_loop_cancel_deadline(r->loop, &r->deadline);
    mc_request_unlink(r);
    mc_loop_t *loop = r->loop;
    if (loop->request_pool_len >= MC_REQUEST_POOL_MAX || atomic_load_explicit(&loop->joined, memory_order_relaxed)) {
        destroy(r);
        return;
    }
    mc_buf_reset(&r->strings, MC_KEEP_BYTES);
    mc_buf_reset(&r->body, MC_KEEP_BYTES);
    mc_buf_reset(&r->sendq, MC_KEEP_BYTES);
    mc_buf_reset(&r->trailer_strings, MC_KEEP_BYTES);
    mc_buf_reset(&r->h1_frame, MC_KEEP_BYTES);
    mc_buf_reset(&r->head_block, MC_KEEP_BYTES);
    if (r->caphdrs > 64) {
        free(r->hdrs);
        r->hdrs = NULL;
        r->caphdrs = 0;
    }
    r->next = loop->request_pool;
    loop->request_pool = r;
    loop->request_pool_len++;
}

void mc_request_pool_free(mc_loop_t *loop) {
    while (loop->request_pool) {
        mc_request_t *r = loop->request_pool;
        loop->request_pool = r->next;
        destroy(r);
    }
    loop->request_pool_len = 0;
}

int mc_request_add_header(mc_request_t *r, const char *name, size_t nlen, const char *value, size_t vlen) {
    if (r->nhdrs == r->caphdrs) {
        size_t cap = r->caphdrs ? r->caphdrs * 2 : 16;
        mc_hdr_off_t *n = realloc(r->hdrs, cap * sizeof *n);
        if (!n) return -1;
        r->hdrs = n;
        r->caphdrs = cap;
    }
    mc_hdr_off_t *h = &r->hdrs[r->nhdrs];
    h->name_off = (uint32_t)r->strings.len;
    h->name_len = (uint32_t)nlen;
    if (mc_buf_append(&r->strings, name, nlen) != 0) return -1;
    h->value_off = (uint32_t)r->strings.len;
    h->value_len = (uint32_t)vlen;
    if (mc_buf_append(&r->strings, value, vlen) != 0) return -1;
    r->nhdrs++;
    return 0;
}

void mc_request_abort(mc_request_t *r) {
    mc_conn_t *c = r->conn;
    if (mc_proto_is_client(r->proto)) {
        mc_client_finish_call(r, r->client.sent ? MC_CALL_RESET : MC_CALL_REFUSED);
        return;
    }
    if (r->server.dispatched && !r->server.responded) {
        r->server.aborted = true;
        mc_loop_cancel_deadline(r->loop, &r->deadline); /* on_abort says it all */
        if (c) {
            c->active--;
            mc_server_t *s = c->server;
            mc_request_unlink(r);
            if (s->cb.on_abort) s->cb.on_abort(s->cb.ctx, r);
        }
        return; /* freed by mc_request_respond */
    }
    mc_request_release(r);
}

int mc_request_protocol(const mc_request_t *r) {
    return r->proto == MC_PROTO_H2_CLIENT ? MC_PROTO_H2 : r->proto == MC_PROTO_H1_CLIENT ? MC_PROTO_H1 : r->proto;
}
int mc_request_status(const mc_request_t *r) { return r->client.status; }
size_t mc_request_trailer_index(const mc_request_t *r) { return r->trailer_index ? r->trailer_index - 1 : r->nhdrs; }
mc_loop_t *mc_request_loop(const mc_request_t *r) { return r->loop; }

const char *mc_request_method(const mc_request_t *r, size_t *len) {
    *len = r->method_len;
    return (const char *)r->strings.data + r->method_off;
}

const char *mc_request_path(const mc_request_t *r, size_t *len) {
    *len = r->path_len;
    return (const char *)r->strings.data + r->path_off;
}

size_t mc_request_header_count(const mc_request_t *r) { return r->nhdrs; }

mc_header_t mc_request_header(const mc_request_t *r, size_t i) {
    mc_header_t h = {0};
    if (i >= r->nhdrs) return h;
    const char *base = (const char *)r->strings.data;
    h.name = base + r->hdrs[i].name_off;
    h.name_len = r->hdrs[i].name_len;
    h.value = base + r->hdrs[i].value_off;
    h.value_len = r->hdrs[i].value_len;
    return h;
}

/* [first, first + count) clamped to the fields there are */
static size_t clamp_fields(const mc_request_t *r, size_t first, size_t count) {
    if (first >= r->nhdrs) return 0;
    return count < r->nhdrs - first ? count : r->nhdrs - first;
}

size_t mc_request_headers_block_size(const mc_request_t *r, size_t first, size_t count) {
    count = clamp_fields(r, first, count);
    size_t bytes = count * sizeof(mc_header_t);
    for (size_t i = first; i < first + count; i++) bytes += (size_t)r->hdrs[i].name_len + r->hdrs[i].value_len;
    return bytes;
}

void mc_request_headers_block(const mc_request_t *r, size_t first, size_t count, void *dst) {
    count = clamp_fields(r, first, count);
    mc_header_t *entries = dst;
    char *text = (char *)dst + count * sizeof(mc_header_t);
    const char *base = (const char *)r->strings.data;
    for (size_t i = 0; i < count; i++) {
        const mc_hdr_off_t *h = &r->hdrs[first + i];
        char *name = text, *value = text + h->name_len;
        if (h->name_len) memcpy(name, base + h->name_off, h->name_len);
        if (h->value_len) memcpy(value, base + h->value_off, h->value_len);
        entries[i] = (mc_header_t){name, h->name_len, value, h->value_len};
        text = value + h->value_len;
    }
}

const uint8_t *mc_request_body(const mc_request_t *r, size_t *len) {
    *len = r->body.len;
    return r->body.data;
}

int mc_request_is_streaming(const mc_request_t *r) { return r->streaming; }
void mc_request_set_user(mc_request_t *r, void *user) { r->user = user; }

int mc_request_set_deadline(mc_request_t *r, uint64_t timeout_ms) {
    if (mc_proto_is_client(r->proto) ? !r->client.done : r->server.responded || r->server.aborted) return -1;
    return mc_loop_arm_deadline(r->loop, &r->deadline, timeout_ms);
}

void mc_request_deadline_passed(mc_deadline_t *d) {
    mc_request_t *r = (mc_request_t *)((char *)d - offsetof(mc_request_t, deadline));
    if (mc_proto_is_client(r->proto)) {
        mc_client_time_out(r);
        return;
    }
    mc_conn_t *c = r->conn;
    if (!c || !r->server.dispatched || r->server.responded || r->server.aborted) return;
    if (c->server->cb.on_deadline) c->server->cb.on_deadline(c->server->cb.ctx, r);
}
void *mc_request_user(const mc_request_t *r) { return r->user; }

int mc_request_respond(mc_request_t *r, int status, const mc_header_t *h, size_t nh, const uint8_t *body,
                       size_t len, const mc_header_t *t, size_t nt) {
    return mc_request_respond_framed(r, status, h, nh, NULL, 0, body, len, t, nt);
}

int mc_request_respond_framed(mc_request_t *r, int status, const mc_header_t *h, size_t nh, const uint8_t *prefix,
                              size_t prefix_len, const uint8_t *body, size_t len, const mc_header_t *t, size_t nt) {
    mc_conn_t *c = r->conn;
    if (r->server.responded) return -1;
    mc_request_mark_responded(r);
    if (!c || mc_conn_closed(c)) {
        mc_request_release(r);
        return -1;
    }
    c->active--;
    mc_buf_t error = {0};
    mc_header_t ct = {"content-type", 12, "application/json", 16};
    /* a status that is not three digits makes a status line or :status no client reads; a name
     * that is not a token or CR/LF in a value would split the answer on HTTP/1.1 */
    const char *detail = !mc_status_valid(status)  ? "the handler set a status that is not 100-999"
                         : !mc_fields_valid(h, nh) ? "the handler set an invalid response header field"
                                                   : NULL;
    if (detail) {
        mc_server_log(c->server, MC_LOG_ERROR, "%s (status %d); answered 500 instead", detail, status);
        mc_error_body(&error, 500, detail);
        status = 500;
        h = &ct;
        nh = 1;
        prefix = NULL;
        body = error.data;
        len = error.len;
        t = NULL;
        nt = 0;
    }
    mc_body_t b = {prefix, prefix ? prefix_len : 0, body, len};
    int rc = r->proto == MC_PROTO_H2 ? mc_h2_respond(r, status, h, nh, b, t, nt) : mc_h1_respond(r, status, h, nh, b);
    mc_buf_free(&error);
    mc_conn_request_done(c);
    mc_conn_write_early(c);
    return rc;
}

/* One lookup per byte: 1 = a token character (RFC 9110 5.6.2: tchar), 2 = a byte a field value
 * must not hold (CR, LF, NUL). */
static const uint8_t field_bytes_class[256] = {
    [0] = 2, ['\r'] = 2, ['\n'] = 2,
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1,
    ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1,
    ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1,
    ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1,
    ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1,
    ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

bool mc_field_name_valid(const char *name, size_t len) {
    uint8_t all = len ? 1 : 0;
    for (size_t i = 0; i < len; i++) all &= field_bytes_class[(uint8_t)name[i]];
    return all == 1;
}

bool mc_field_valid(const mc_header_t *h) {
    if (!mc_field_name_valid(h->name, h->name_len)) return false;
    uint8_t any = 0;
    for (size_t i = 0; i < h->value_len; i++) any |= field_bytes_class[(uint8_t)h->value[i]];
    return (any & 2) == 0;
}

bool mc_fields_valid(const mc_header_t *h, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!mc_field_valid(&h[i])) return false;
    return true;
}

/* `name` is `lower` (n bytes, lower case) in any case; inline, where the usual names differ
 * at their first byte (user-agent against connection: strncasecmp was a call and a locale) */
static inline bool is_name(const char *name, const char *lower, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (mc_lower((uint8_t)name[i]) != (uint8_t)lower[i]) return false;
    return true;
}

bool mc_field_connection_specific(const char *name, size_t len) {
    /* by length first: the usual names (content-type, grpc-status) match none */
    switch (len) {
    case 7: return is_name(name, "upgrade", 7);
    case 10: return is_name(name, "connection", 10) || is_name(name, "keep-alive", 10);
    case 14: return is_name(name, "content-length", 14);
    case 16: return is_name(name, "proxy-connection", 16);
    case 17: return is_name(name, "transfer-encoding", 17);
    default: return false;
    }
}

const char *mc_status_text(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
    }
}

void mc_error_body(mc_buf_t *b, int status, const char *detail) {
    mc_buf_appendf(b, "{\"id\":\"micro.server\",\"code\":%d,\"detail\":\"%s\",\"status\":\"%s\"}", status, detail,
                   mc_status_text(status));
}
