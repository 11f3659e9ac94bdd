/*
 * HTTP/2 framing shared by both sides (h2.c: the server, h2client.c: the client): frame types,
 * flags, error codes, settings, the 9-byte frame header and the field checks of RFC 9113.
 */
#ifndef MC_H2FRAME_H
#define MC_H2FRAME_H

#include "internal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum { F_DATA, F_HEADERS, F_PRIORITY, F_RST_STREAM, F_SETTINGS, F_PUSH_PROMISE, F_PING, F_GOAWAY, F_WINDOW_UPDATE, F_CONTINUATION };
enum { FL_END_STREAM = 0x1, FL_ACK = 0x1, FL_END_HEADERS = 0x4, FL_PADDED = 0x8, FL_PRIORITY = 0x20 };
enum {
    E_NO_ERROR = 0x0,
    E_PROTOCOL = 0x1,
    E_INTERNAL = 0x2,
    E_FLOW_CONTROL = 0x3,
    E_STREAM_CLOSED = 0x5,
    E_FRAME_SIZE = 0x6,
    E_REFUSED_STREAM = 0x7,
    E_CANCEL = 0x8,
    E_COMPRESSION = 0x9,
    E_ENHANCE_YOUR_CALM = 0xb,
};
enum { S_HEADER_TABLE_SIZE = 1, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS, S_INITIAL_WINDOW_SIZE, S_MAX_FRAME_SIZE,
       S_MAX_HEADER_LIST_SIZE, S_ENABLE_CONNECT_PROTOCOL = 8, S_NO_RFC7540_PRIORITIES = 9 };

static inline void put_head(uint8_t *p, size_t len, uint8_t type, uint8_t flags, uint32_t id) {
    p[0] = (uint8_t)(len >> 16);
    p[1] = (uint8_t)(len >> 8);
    p[2] = (uint8_t)len;
    p[3] = type;
    p[4] = flags;
    p[5] = (uint8_t)(id >> 24 & 0x7f);
    p[6] = (uint8_t)(id >> 16);
    p[7] = (uint8_t)(id >> 8);
    p[8] = (uint8_t)id;
}

static inline void put_u32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline uint32_t get_u32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

/* Appends one frame to `out`: 0, or -1 when there is no memory for it (nothing appended). */
static inline int h2_append_frame(mc_buf_t *out, uint8_t type, uint8_t flags, uint32_t id, const uint8_t *payload, size_t len) {
    if (mc_buf_reserve(out, 9 + len) != 0) return -1;
    uint8_t *p = out->data + out->len;
    put_head(p, len, type, flags, id);
    if (len) memcpy(p + 9, payload, len);
    out->len += 9 + len;
    return 0;
}

/* One lookup per byte: bit 0 = a character of a field name as HTTP/2 carries it (a token
 * character in lower case, RFC 9113, 8.2.1), bit 1 = a byte no field value may hold (NUL, CR, LF). */
static const uint8_t field_class[256] = {
    [0] = 2, ['\r'] = 2, ['\n'] = 2,
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1, ['-'] = 1, ['.'] = 1,
    ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1,
    ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1,
    ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

static inline bool name_valid(const uint8_t *p, size_t n) {
    uint8_t all = 1;
    for (size_t i = 0; i < n; i++) all &= field_class[p[i]];
    return n && all;
}

/* No NUL, CR or LF, and no whitespace at either end (RFC 9113, 8.2.1). */
static inline bool value_valid(const uint8_t *p, size_t n) {
    if (n && (p[0] == ' ' || p[0] == '\t' || p[n - 1] == ' ' || p[n - 1] == '\t')) return false;
    /* eight bytes at a time: a word has a zero byte if (w - 0x01..) & ~w & 0x80.. is not zero */
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        uint64_t cr = w ^ (ones * '\r'), lf = w ^ (ones * '\n');
        if (((w - ones) & ~w & highs) | ((cr - ones) & ~cr & highs) | ((lf - ones) & ~lf & highs)) return false;
    }
    uint8_t any = 0;
    for (; i < n; i++) any |= field_class[p[i]];
    return !(any & 2);
}

/* Fields HTTP/2 forbids in a message (RFC 9113, 8.2.2), the name already known to be lower case;
 * content-length is not one of them here. */
static inline bool h2_connection_specific(const uint8_t *name, size_t n) {
    switch (n) {
    case 7: return memcmp(name, "upgrade", 7) == 0;
    case 10: return memcmp(name, "connection", 10) == 0 || memcmp(name, "keep-alive", 10) == 0;
    case 16: return memcmp(name, "proxy-connection", 16) == 0;
    case 17: return memcmp(name, "transfer-encoding", 17) == 0;
    default: return false;
    }
}

/* Parses a content-length value; -1 if it is not one. */
static inline int64_t h2_parse_length(const uint8_t *v, size_t n) {
    if (!n || n > 15) return -1;
    int64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9') return -1;
        x = x * 10 + (v[i] - '0');
    }
    return x;
}

#endif
