/* HPACK tests: differential against nghttp2's deflater/inflater, a model-based encoder with all
 * representations, explicit malformed cases, truncation and mutation. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "hpack.h"
#include "hpack_huffman.h"

#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAIL(...) do { fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); exit(1); } while (0)
#define CHECK(c) do { if (!(c)) FAIL("%s", #c); } while (0)

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }
static size_t rn(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

/* ------------------------------------------------ field lists serialised: nlen name vlen value */
typedef struct { uint8_t *p; size_t len, cap; } bytes_t;
static void bput(bytes_t *b, const void *p, size_t n) {
    if (b->len + n > b->cap) { b->cap = (b->len + n) * 2 + 64; b->p = realloc(b->p, b->cap); }
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
}
static void bfield(bytes_t *b, const uint8_t *n, size_t nl, const uint8_t *v, size_t vl) {
    uint32_t x = (uint32_t)nl; bput(b, &x, 4); bput(b, n, nl);
    x = (uint32_t)vl; bput(b, &x, 4); bput(b, v, vl);
}
static uint32_t rd32(const uint8_t *p) { uint32_t x; memcpy(&x, p, 4); return x; }
static int same(const bytes_t *a, const bytes_t *b) { return a->len == b->len && (!a->len || memcmp(a->p, b->p, a->len) == 0); }
static int collect(void *ctx, const uint8_t *n, size_t nl, const uint8_t *v, size_t vl) {
    bfield(ctx, n, nl, v, vl);
    return 0;
}

/* nghttp2 inflate a whole block; returns 0 or -1 */
static int ng_inflate(nghttp2_hd_inflater *inf, const uint8_t *in, size_t n, bytes_t *out) {
    for (;;) {
        nghttp2_nv nv;
        int flags = 0;
        ssize_t rv = nghttp2_hd_inflate_hd2(inf, &nv, &flags, in, n, 1);
        if (rv < 0) return -1;
        in += rv; n -= (size_t)rv;
        if (flags & NGHTTP2_HD_INFLATE_EMIT) bfield(out, nv.name, nv.namelen, nv.value, nv.valuelen);
        if (flags & NGHTTP2_HD_INFLATE_FINAL) { nghttp2_hd_inflate_end_headers(inf); return 0; }
        if (n == 0 && !(flags & NGHTTP2_HD_INFLATE_EMIT)) return 0;
    }
}

/* ------------------------------------------------ random fields */
static const char *pool_names[] = {":method", ":path", ":scheme", ":authority", "content-type", "user-agent",
    "te", "grpc-timeout", "accept-encoding", "cookie", "authorization", "x-custom", "x-trace-id", "set-cookie",
    "www-authenticate", "via", "age", "access-control-allow-origin"};
#define NPOOL 64
static uint8_t pool_n[NPOOL][64], pool_v[NPOOL][6000];
static size_t pool_nl[NPOOL], pool_vl[NPOOL];

static void rand_bytes(uint8_t *p, size_t n, int kind) {
    for (size_t i = 0; i < n; i++) {
        switch (kind) {
        case 0: p[i] = (uint8_t)rnd(); break;                     /* any byte */
        case 1: p[i] = (uint8_t)("abcdefghijklmnopqrstuvwxyz0123456789-/._"[rn(40)]); break;
        default: p[i] = (uint8_t)(0x80 + rn(128)); break;         /* long codes */
        }
    }
}
static size_t rand_len(void) {
    switch (rn(10)) {
    case 0: return 0;
    case 1: return rn(6000);
    case 2: return rn(1500);
    default: return rn(60);
    }
}
static void refill_pool(size_t i) {
    if (rn(3) == 0) {
        const char *s = pool_names[rn(sizeof pool_names / sizeof *pool_names)];
        pool_nl[i] = strlen(s);
        memcpy(pool_n[i], s, pool_nl[i]);
    } else {
        pool_nl[i] = rn(4) == 0 ? rn(64) : 1 + rn(20);
        rand_bytes(pool_n[i], pool_nl[i], (int)rn(3));
    }
    pool_vl[i] = rand_len();
    rand_bytes(pool_v[i], pool_vl[i], (int)rn(3));
}

/* ------------------------------------------------ 1: nghttp2 deflates, we decode */
static void test_ng_to_us(void) {
    size_t limits[] = {0, 32, 64, 100, 256, 1000, 4096, 65536};
    size_t blocks = 0, fields_total = 0, updates_total = 0;
    for (int round = 0; round < 40; round++) {
        size_t limit = limits[round % 8];
        nghttp2_hd_deflater *def;
        CHECK(nghttp2_hd_deflate_new(&def, 65536) == 0);
        mc_hpack_decoder_t d;
        mc_hpack_decoder_init(&d, limit);
        /* the deflater starts at 4096 (the default); the peer honours our SETTINGS first */
        CHECK(nghttp2_hd_deflate_change_table_size(def, limit) == 0);
        for (size_t i = 0; i < NPOOL; i++) refill_pool(i);
        size_t npool = 4 + rn(NPOOL - 4);
        for (int b = 0; b < 400; b++) {
            if (rn(20) == 0) {
                int k = 1 + (int)rn(3);
                for (int j = 0; j < k; j++) CHECK(nghttp2_hd_deflate_change_table_size(def, rn(limit + 1)) == 0);
                if (rn(2)) CHECK(nghttp2_hd_deflate_change_table_size(def, limit) == 0);
                updates_total++;
            }
            if (rn(10) == 0) refill_pool(rn(npool));
            size_t nf = rn(4) == 0 ? rn(40) : rn(12);
            nghttp2_nv nva[40];
            for (size_t f = 0; f < nf; f++) {
                size_t i = rn(8) ? rn(npool < 8 ? npool : 8) : rn(npool); /* repeats: the table hits */
                nva[f] = (nghttp2_nv){pool_n[i], pool_v[i], pool_nl[i], pool_vl[i],
                                      (uint8_t)(rn(10) == 0 ? NGHTTP2_NV_FLAG_NO_INDEX : 0)};
            }
            size_t bound = nghttp2_hd_deflate_bound(def, nva, nf);
            uint8_t *buf = malloc(bound + 1);
            ssize_t len = nghttp2_hd_deflate_hd(def, buf, bound, nva, nf);
            CHECK(len >= 0);
            bytes_t want = {0}, got = {0};
            for (size_t f = 0; f < nf; f++) bfield(&want, nva[f].name, nva[f].namelen, nva[f].value, nva[f].valuelen);
            int rc = mc_hpack_decode(&d, buf, (size_t)len, collect, &got);
            if (rc != 0) FAIL("round %d block %d: decode rc %d (limit %zu)", round, b, rc, limit);
            if (!same(&got, &want)) FAIL("round %d block %d: fields differ", round, b);
            CHECK(d.size <= d.max_size && d.max_size <= d.limit && d.count <= d.ring_cap);
            blocks++;
            fields_total += nf;
            free(want.p); free(got.p); free(buf);
        }
        nghttp2_hd_deflate_del(def);
        mc_hpack_decoder_free(&d);
    }
    printf("nghttp2 -> ours: %zu blocks, %zu fields, %zu table size changes: identical\n", blocks, fields_total, updates_total);
}

/* ------------------------------------------------ 2: we encode, nghttp2 inflates */
static void test_us_to_ng(void) {
    nghttp2_hd_inflater *inf;
    CHECK(nghttp2_hd_inflate_new(&inf) == 0);
    size_t blocks = 0, fields_total = 0, bytes = 0;
    /* every static name and :status value, then random */
    for (int b = 0; b < 20000; b++) {
        if (b % 100 == 0) for (size_t i = 0; i < NPOOL; i++) refill_pool(i);
        size_t nf = rn(20);
        bytes_t want = {0}, got = {0}, enc = {0};
        for (size_t f = 0; f < nf; f++) {
            const uint8_t *n, *v; size_t nl, vl;
            static const char *statuses[] = {"200", "204", "206", "304", "400", "404", "500", "201", "20", "2000"};
            if (rn(4) == 0) {
                n = (const uint8_t *)":status"; nl = 7;
                const char *s = statuses[rn(10)]; v = (const uint8_t *)s; vl = strlen(s);
            } else {
                size_t i = rn(NPOOL);
                n = pool_n[i]; nl = pool_nl[i]; v = pool_v[i]; vl = pool_vl[i];
            }
            size_t max = mc_hpack_field_max(nl, vl);
            uint8_t *out = malloc(max);
            size_t k = mc_hpack_encode_field(out, n, nl, v, vl);
            CHECK(k <= max);
            bput(&enc, out, k);
            free(out);
            bfield(&want, n, nl, v, vl);
        }
        CHECK(ng_inflate(inf, enc.p, enc.len, &got) == 0);
        if (!same(&got, &want)) FAIL("block %d: nghttp2 inflated other fields", b);
        /* and ours reads it back */
        bytes_t back = {0};
        mc_hpack_decoder_t d;
        mc_hpack_decoder_init(&d, 0);
        CHECK(mc_hpack_decode(&d, enc.p, enc.len, collect, &back) == 0);
        CHECK(back.len == want.len && (!back.len || memcmp(back.p, want.p, back.len) == 0));
        mc_hpack_decoder_free(&d);
        blocks++; fields_total += nf; bytes += enc.len;
        free(want.p); free(got.p); free(enc.p); free(back.p);
    }
    /* every static name picks its index, :status values one byte */
    static const char *names[] = {":authority", ":method", ":path", ":scheme", ":status", "accept-charset",
        "accept-encoding", "accept-language", "accept-ranges", "accept", "access-control-allow-origin", "age", "allow",
        "authorization", "cache-control", "content-disposition", "content-encoding", "content-language",
        "content-length", "content-location", "content-range", "content-type", "cookie", "date", "etag", "expect",
        "expires", "from", "host", "if-match", "if-modified-since", "if-none-match", "if-range",
        "if-unmodified-since", "last-modified", "link", "location", "max-forwards", "proxy-authenticate",
        "proxy-authorization", "range", "referer", "refresh", "retry-after", "server", "set-cookie",
        "strict-transport-security", "transfer-encoding", "user-agent", "vary", "via", "www-authenticate"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        uint8_t out[64];
        size_t k = mc_hpack_encode_field(out, (const uint8_t *)names[i], strlen(names[i]), (const uint8_t *)"x", 1);
        CHECK(k <= 4 && (out[0] & 0xf0) == 0 && (out[0] & 0x0f) != 0); /* name by index */
    }
    const char *st[] = {"200", "204", "206", "304", "400", "404", "500"};
    for (int i = 0; i < 7; i++) {
        uint8_t out[32];
        CHECK(mc_hpack_encode_field(out, (const uint8_t *)":status", 7, (const uint8_t *)st[i], 3) == 1 && out[0] == 0x88 + i);
    }
    uint8_t out[32];
    CHECK(mc_hpack_encode_field(out, (const uint8_t *)":status", 7, (const uint8_t *)"201", 3) == 5 && out[0] == 0x08);
    CHECK(mc_hpack_encode_field(out, (const uint8_t *)"x-y", 3, (const uint8_t *)"", 0) == 6 && out[0] == 0);
    CHECK(mc_hpack_field_max(SIZE_MAX, 1) == SIZE_MAX);
    nghttp2_hd_inflate_del(inf);
    printf("ours -> nghttp2: %zu blocks, %zu fields, %zu bytes: identical (and ours reads them back)\n", blocks, fields_total, bytes);
}

/* ------------------------------------------------ 3: model-based encoder (all representations) */
static uint32_t hcode[257];
static void huff_codes(void) {
    uint32_t code = 0; unsigned prev = 0;
    for (unsigned len = 1; len <= 30; len++)
        for (unsigned s = 0; s < 257; s++)
            if (mc_hpack_huffman_bits[s] == len) { code <<= len - prev; prev = len; hcode[s] = code++; }
    CHECK(code == (1u << 30) && hcode[256] == 0x3fffffff);
}
typedef struct { uint8_t *p; size_t len; unsigned bits; uint64_t acc; } bitw_t;
static void put_int(bytes_t *b, uint8_t first, unsigned prefix, uint64_t v) {
    uint64_t mask = (1u << prefix) - 1;
    uint8_t x;
    if (v < mask) { x = (uint8_t)(first | v); bput(b, &x, 1); return; }
    x = (uint8_t)(first | mask); bput(b, &x, 1); v -= mask;
    while (v >= 128) { x = (uint8_t)(v | 0x80); bput(b, &x, 1); v >>= 7; }
    x = (uint8_t)v; bput(b, &x, 1);
}
static void put_str(bytes_t *b, const uint8_t *s, size_t n, int huff) {
    if (!huff) { put_int(b, 0, 7, n); bput(b, s, n); return; }
    bytes_t h = {0};
    uint64_t acc = 0; unsigned bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << mc_hpack_huffman_bits[s[i]]) | hcode[s[i]]; bits += mc_hpack_huffman_bits[s[i]];
        while (bits >= 8) { uint8_t x = (uint8_t)(acc >> (bits - 8)); bput(&h, &x, 1); bits -= 8; }
    }
    if (bits) { uint8_t x = (uint8_t)((acc << (8 - bits)) | ((1u << (8 - bits)) - 1)); bput(&h, &x, 1); }
    put_int(b, 0x80, 7, h.len); bput(b, h.p, h.len);
    free(h.p);
}
/* the naive model: entries newest first */
typedef struct { uint8_t *n, *v; size_t nl, vl; } ment_t;
typedef struct { ment_t e[5000]; size_t count, size, max; } model_t;
static void model_evict(model_t *m, size_t target) {
    while (m->size > target) { ment_t *e = &m->e[--m->count]; m->size -= e->nl + e->vl + 32; free(e->n); free(e->v); }
}
static void model_add(model_t *m, const uint8_t *n, size_t nl, const uint8_t *v, size_t vl) {
    size_t es = nl + vl + 32;
    uint8_t *nc = malloc(nl + 1), *vc = malloc(vl + 1);
    memcpy(nc, n, nl); memcpy(vc, v, vl); /* copied first: n may be an entry about to go */
    if (es > m->max) { model_evict(m, 0); free(nc); free(vc); return; }
    model_evict(m, m->max - es);
    memmove(&m->e[1], &m->e[0], m->count * sizeof m->e[0]);
    m->e[0] = (ment_t){nc, vc, nl, vl};
    m->count++; m->size += es;
}

static void test_model(void) {
    huff_codes();
    size_t limits[] = {0, 40, 64, 128, 300, 4096, 16384};
    size_t blocks = 0, fields_total = 0, evict_names = 0;
    for (int round = 0; round < 60; round++) {
        size_t limit = limits[round % 7];
        model_t *m = calloc(1, sizeof *m);
        m->max = limit;
        mc_hpack_decoder_t d;
        mc_hpack_decoder_init(&d, limit);
        nghttp2_hd_inflater *inf;
        CHECK(nghttp2_hd_inflate_new(&inf) == 0);
        CHECK(nghttp2_hd_inflate_change_table_size(inf, limit) == 0);
        for (size_t i = 0; i < NPOOL; i++) { refill_pool(i); if (rn(2)) pool_vl[i] = rn(limit / 3 + 2); }
        for (int b = 0; b < 300; b++) {
            bytes_t enc = {0}, want = {0}, got = {0}, ng = {0};
            int nu = b == 0 ? 1 + (int)rn(2) : rn(8) == 0 ? 1 + (int)rn(2) : 0;
            for (int u = 0; u < nu; u++) {
                size_t s = u == nu - 1 && rn(2) ? limit : rn(limit + 1);
                put_int(&enc, 0x20, 5, s);
                m->max = s;
                model_evict(m, s);
            }
            if (rn(8) == 0) refill_pool(rn(NPOOL));
            size_t nf = rn(15);
            for (size_t f = 0; f < nf; f++) {
                size_t i = rn(4) ? rn(10) : rn(NPOOL);
                const uint8_t *n = pool_n[i], *v = pool_v[i]; size_t nl = pool_nl[i], vl = pool_vl[i];
                int kind = (int)rn(4);
                if (kind == 0) {
                    /* indexed: a static field or a dynamic entry, picked at random */
                    size_t idx = 1 + rn(61 + m->count);
                    if (idx > 61) { ment_t *e = &m->e[idx - 62]; n = e->n; nl = e->nl; v = e->v; vl = e->vl; }
                    else {
                        /* the decoder's static table, as seen through one decode */
                        bytes_t one = {0}; mc_hpack_decoder_t t; mc_hpack_decoder_init(&t, 0);
                        uint8_t x = (uint8_t)(0x80 | idx);
                        CHECK(mc_hpack_decode(&t, &x, 1, collect, &one) == 0);
                        bfield(&want, one.p + 4, rd32(one.p), one.p + 8 + rd32(one.p), rd32(one.p + 4 + rd32(one.p)));
                        mc_hpack_decoder_free(&t); free(one.p);
                        put_int(&enc, 0x80, 7, idx);
                        continue;
                    }
                    put_int(&enc, 0x80, 7, idx);
                    bfield(&want, n, nl, v, vl);
                    continue;
                }
                uint8_t first = kind == 1 ? 0x40 : kind == 2 ? 0x00 : 0x10;
                unsigned prefix = kind == 1 ? 6 : 4;
                /* name: literal, a static index, or a dynamic one (often the oldest: about to be evicted) */
                int nk = (int)rn(3);
                uint8_t namebuf[64];
                if (nk == 2 && m->count) {
                    size_t j = rn(2) ? m->count - 1 : rn(m->count);
                    if (m->e[j].nl <= 64) {
                        memcpy(namebuf, m->e[j].n, m->e[j].nl); n = namebuf; nl = m->e[j].nl;
                        put_int(&enc, first, prefix, 62 + j);
                        if (j == m->count - 1) evict_names++;
                    } else nk = 0;
                } else if (nk == 1) {
                    static const uint8_t idxs[] = {1, 2, 4, 6, 8, 16, 19, 31, 58, 61};
                    size_t si = idxs[rn(10)];
                    bytes_t one = {0}; mc_hpack_decoder_t t; mc_hpack_decoder_init(&t, 0);
                    uint8_t x = (uint8_t)(0x80 | si);
                    CHECK(mc_hpack_decode(&t, &x, 1, collect, &one) == 0);
                    nl = rd32(one.p); memcpy(namebuf, one.p + 4, nl); n = namebuf;
                    mc_hpack_decoder_free(&t); free(one.p);
                    put_int(&enc, first, prefix, si);
                } else nk = 0;
                if (nk == 0 || (nk == 2 && !m->count)) {
                    put_int(&enc, first, prefix, 0);
                    put_str(&enc, n, nl, (int)rn(2));
                }
                put_str(&enc, v, vl, (int)rn(2));
                bfield(&want, n, nl, v, vl);
                if (kind == 1) model_add(m, n, nl, v, vl);
            }
            int rc = mc_hpack_decode(&d, enc.p, enc.len, collect, &got);
            if (rc != 0) FAIL("model round %d block %d: rc %d", round, b, rc);
            if (!same(&got, &want)) FAIL("model round %d block %d: fields differ", round, b);
            CHECK(d.count == m->count && d.size == m->size && d.max_size == m->max);
            if (ng_inflate(inf, enc.p, enc.len, &ng) != 0) FAIL("model round %d block %d: nghttp2 refuses", round, b);
            if (!same(&ng, &want)) FAIL("model round %d block %d: nghttp2 differs", round, b);
            blocks++; fields_total += nf;
            free(enc.p); free(want.p); free(got.p); free(ng.p);
        }
        model_evict(m, 0); free(m);
        nghttp2_hd_inflate_del(inf);
        mc_hpack_decoder_free(&d);
    }
    printf("model encoder (all representations, Huffman or not) -> ours and nghttp2: %zu blocks, %zu fields, "
           "%zu names from the oldest entry: identical\n", blocks, fields_total, evict_names);
}

/* ------------------------------------------------ 4: explicit malformed cases */
static int dec1(size_t limit, const uint8_t *p, size_t n) {
    mc_hpack_decoder_t d;
    mc_hpack_decoder_init(&d, limit);
    bytes_t got = {0};
    int rc = mc_hpack_decode(&d, p, n, collect, &got);
    free(got.p);
    mc_hpack_decoder_free(&d);
    return rc;
}
#define BAD(...) do { static const uint8_t b_[] = {__VA_ARGS__}; if (dec1(4096, b_, sizeof b_) != MC_HPACK_ERROR) FAIL("accepted: %s", #__VA_ARGS__); n_bad++; } while (0)
#define GOOD(...) do { static const uint8_t b_[] = {__VA_ARGS__}; if (dec1(4096, b_, sizeof b_) != 0) FAIL("refused: %s", #__VA_ARGS__); n_good++; } while (0)
static int stop_after_one(void *ctx, const uint8_t *n, size_t nl, const uint8_t *v, size_t vl) {
    (void)n; (void)nl; (void)v; (void)vl;
    return ++*(int *)ctx == 1 ? 1 : 0;
}
static int abort_at_two(void *ctx, const uint8_t *n, size_t nl, const uint8_t *v, size_t vl) {
    (void)n; (void)nl; (void)v; (void)vl;
    return ++*(int *)ctx == 2 ? 42 : 0;
}
static void test_malformed(void) {
    int n_bad = 0, n_good = 0;
    BAD(0x80);                                  /* index 0 */
    BAD(0xbe);                                  /* 62: empty dynamic table */
    BAD(0xff, 0x80, 0x80, 0x80, 0x80, 0x01);    /* five continuation bytes */
    BAD(0xff, 0xff, 0xff, 0xff, 0xff, 0x7f);    /* oversize */
    BAD(0xff);                                  /* truncated integer */
    BAD(0xff, 0x80);                            /* truncated integer */
    GOOD(0xbd);                                 /* 61 */
    GOOD(0x0f, 0x80, 0x80, 0x80, 0x00, 0x00);  /* 15 with three redundant continuation bytes */
    BAD(0x40);                                  /* truncated literal */
    BAD(0x40, 0x01);                            /* name past the block */
    BAD(0x40, 0x01, 'a');                       /* no value */
    BAD(0x40, 0x01, 'a', 0x02, 'b');            /* value past the block */
    BAD(0x0f, 0x80, 0x80, 0x80, 0x80, 0x01);    /* oversize name index */
    BAD(0x7f, 0x80, 0x00);                      /* index 63: past the tables */
    BAD(0x00, 0x7f, 0xff, 0xff, 0xff, 0x7f);    /* length 2^28 + 126: oversize */
    BAD(0x00, 0x7f, 0x80, 0x80, 0x80, 0x01);    /* length 2^21 + 127, past the block */
    GOOD(0x40, 0x01, 'a', 0x01, 'b');
    GOOD(0x10, 0x01, 'a', 0x00);
    GOOD(0x00, 0x00, 0x00);
    /* Huffman: 'a' is 00011 (5 bits) */
    GOOD(0x00, 0x81, 0x1f, 0x00);               /* 'a' + 111 */
    BAD(0x00, 0x81, 0x18, 0x00);                /* 'a' + 000: padding not ones */
    BAD(0x00, 0x81, 0x1e, 0x00);                /* 'a' + 110 */
    BAD(0x00, 0x82, 0x1f, 0xff, 0x00);          /* 'a' + 11 ones: padding past 7 bits */
    BAD(0x00, 0x81, 0xff, 0x00);                /* 8 ones of padding only */
    GOOD(0x00, 0x80, 0x00);                     /* empty Huffman string */
    BAD(0x00, 0x84, 0xff, 0xff, 0xff, 0xff, 0x00); /* EOS (30 ones) + 2 */
    BAD(0x00, 0x84, 0xff, 0xff, 0xff, 0xfc, 0x00); /* EOS then 00 */
    BAD(0x00, 0x85, 0x1f, 0xff, 0xff, 0xff, 0xff, 0x00); /* 'a' 111 then EOS + 2 padding */
    BAD(0x00, 0x81, 0x00);                      /* Huffman string with no value after */
    /* size updates */
    GOOD(0x20);
    GOOD(0x20, 0x3f, 0xe1, 0x1f);               /* 0 then 4096 */
    BAD(0x20, 0x20, 0x20);                      /* three */
    BAD(0x3f, 0xe2, 0x1f);                      /* 4097 > limit */
    BAD(0x82, 0x20);                            /* after a field */
    BAD(0x3f);                                  /* truncated */
    BAD(0x3f, 0xff, 0xff, 0xff, 0xff, 0x0f);
    GOOD(0x3f, 0xe1, 0x1f, 0x82);
    CHECK(dec1(0, (const uint8_t[]){0x21}, 1) == MC_HPACK_ERROR);
    CHECK(dec1(0, (const uint8_t[]){0x20, 0x82}, 2) == 0);
    /* an entry larger than the table empties it */
    {
        mc_hpack_decoder_t d; mc_hpack_decoder_init(&d, 64);
        bytes_t got = {0};
        const uint8_t a[] = {0x40, 0x01, 'a', 0x01, 'b', 0x40, 0x01, 'c', 0x01, 'd'}; /* 34 + 34 > 64: one left */
        CHECK(mc_hpack_decode(&d, a, sizeof a, collect, &got) == 0 && d.count == 1 && d.size == 34);
        uint8_t big[80] = {0x40, 0x01, 'e', 0x20};
        memset(big + 4, 'x', 32);                 /* 1 + 32 + 32 = 65 > 64 */
        CHECK(mc_hpack_decode(&d, big, 36, collect, &got) == 0 && d.count == 0 && d.size == 0);
        /* name from an entry that the insert evicts: table 64, entry ("ab","c") 35, then name index 62 + value 29 bytes */
        const uint8_t c[] = {0x40, 0x02, 'a', 'b', 0x01, 'c'};
        CHECK(mc_hpack_decode(&d, c, sizeof c, collect, &got) == 0 && d.count == 1);
        uint8_t e[40] = {0x7e, 0x1d};
        memset(e + 2, 'y', 29);
        free(got.p); got = (bytes_t){0};
        CHECK(mc_hpack_decode(&d, e, 31, collect, &got) == 0 && d.count == 1 && d.size == 63);
        got.len = 0;
        CHECK(mc_hpack_decode(&d, (const uint8_t[]){0xbe}, 1, collect, &got) == 0);
        CHECK(got.len == 4 + 2 + 4 + 29 && memcmp(got.p + 4, "ab", 2) == 0 && got.p[10] == 'y');
        CHECK(mc_hpack_decode(&d, (const uint8_t[]){0xbf}, 1, collect, &got) == MC_HPACK_ERROR);
        free(got.p);
        mc_hpack_decoder_free(&d);
    }
    /* fn's answers: 1 stops the fields but not the decoding; other values stop at once */
    {
        mc_hpack_decoder_t d; mc_hpack_decoder_init(&d, 4096);
        const uint8_t a[] = {0x82, 0x40, 0x01, 'a', 0x01, 'b', 0x84};
        int calls = 0;
        CHECK(mc_hpack_decode(&d, a, sizeof a, stop_after_one, &calls) == 0 && calls == 1 && d.count == 1);
        calls = 0;
        CHECK(mc_hpack_decode(&d, a, sizeof a, abort_at_two, &calls) == 42 && calls == 2 && d.count == 1);
        const uint8_t bad[] = {0x82, 0x80};
        calls = 0;
        CHECK(mc_hpack_decode(&d, bad, sizeof bad, stop_after_one, &calls) == MC_HPACK_ERROR);
        CHECK(mc_hpack_decode(&d, NULL, 0, stop_after_one, &calls) == 0);
        mc_hpack_decoder_free(&d);
    }
    printf("malformed: %d refused, %d accepted as they should be, table edge cases ok\n", n_bad, n_good);
}

/* ------------------------------------------------ Huffman: every byte pair, EOS in the eight-byte loop */
static int huff_one(const uint8_t *s, size_t n, int *ok) {
    bytes_t enc = {0}, got = {0};
    put_int(&enc, 0, 4, 0);
    put_str(&enc, (const uint8_t *)"n", 1, 0);
    put_str(&enc, s, n, 1);
    mc_hpack_decoder_t d; mc_hpack_decoder_init(&d, 16);
    int rc = mc_hpack_decode(&d, enc.p, enc.len, collect, &got);
    *ok = rc == 0 && got.len == 4 + 1 + 4 + n && (!n || memcmp(got.p + 9, s, n) == 0);
    mc_hpack_decoder_free(&d);
    free(enc.p); free(got.p);
    return rc;
}
static void test_huffman(void) {
    huff_codes();
    size_t n = 0;
    for (unsigned a = 0; a < 256; a++)
        for (unsigned b = 0; b < 256; b++) {
            uint8_t s[12] = {(uint8_t)a, (uint8_t)b};
            int ok;
            huff_one(s, 2, &ok); CHECK(ok);
            /* and inside a long string: the eight-byte loop */
            for (int i = 2; i < 12; i++) s[i] = (uint8_t)(a ^ b ^ (uint8_t)i);
            huff_one(s, 12, &ok); CHECK(ok);
            n += 2;
        }
    for (int t = 0; t < 20000; t++) {
        uint8_t s[300]; size_t len = rn(300);
        rand_bytes(s, len, (int)rn(3));
        int ok; huff_one(s, len, &ok); CHECK(ok);
        n++;
    }
    /* EOS after k 'a's (00011), at every bit offset, followed by more bytes: refused */
    for (int k = 0; k < 20; k++) {
        uint8_t h[64] = {0}; size_t bitpos = 0;
        for (int i = 0; i < k; i++) { for (int j = 4; j >= 0; j--) { if ((0x03 >> j) & 1) h[bitpos / 8] |= (uint8_t)(0x80 >> (bitpos % 8)); bitpos++; } }
        for (int j = 0; j < 30; j++) { h[bitpos / 8] |= (uint8_t)(0x80 >> (bitpos % 8)); bitpos++; }
        for (int tail = 0; tail < 12; tail++) {
            size_t nb = (bitpos + 7) / 8 + (size_t)tail;
            uint8_t hh[64]; memcpy(hh, h, sizeof h);
            for (size_t q = bitpos; q < nb * 8; q++) hh[q / 8] |= (uint8_t)(0x80 >> (q % 8)); /* ones after */
            bytes_t enc = {0};
            put_int(&enc, 0, 4, 0); put_str(&enc, (const uint8_t *)"n", 1, 0);
            put_int(&enc, 0x80, 7, nb); bput(&enc, hh, nb);
            CHECK(dec1(16, enc.p, enc.len) == MC_HPACK_ERROR);
            free(enc.p);
            n++;
        }
    }
    printf("Huffman: %zu strings (every byte pair, alone and in 12-byte strings; random; EOS at every offset refused)\n", n);
}

/* ------------------------------------------------ 5: truncation and mutation against nghttp2 */
static void test_mutation(void) {
    size_t trunc = 0, mut = 0, both_err = 0, both_ok = 0;
    size_t disagree_upd = 0;
    for (int round = 0; round < 200; round++) {
        nghttp2_hd_deflater *def;
        CHECK(nghttp2_hd_deflate_new(&def, 4096) == 0);
        for (size_t i = 0; i < NPOOL; i++) { refill_pool(i); pool_vl[i] = rn(40); }
        nghttp2_nv nva[12];
        size_t nf = 1 + rn(12);
        for (size_t f = 0; f < nf; f++) {
            size_t i = rn(16);
            nva[f] = (nghttp2_nv){pool_n[i], pool_v[i], pool_nl[i], pool_vl[i], (uint8_t)(rn(6) == 0 ? NGHTTP2_NV_FLAG_NO_INDEX : 0)};
        }
        uint8_t buf[4096];
        if (rn(3) == 0) CHECK(nghttp2_hd_deflate_change_table_size(def, rn(4097)) == 0);
        ssize_t len = nghttp2_hd_deflate_hd(def, buf, sizeof buf, nva, nf);
        CHECK(len > 0);
        bytes_t full = {0};
        CHECK(dec1(4096, buf, (size_t)len) == 0);
        { mc_hpack_decoder_t d; mc_hpack_decoder_init(&d, 4096); mc_hpack_decode(&d, buf, (size_t)len, collect, &full); mc_hpack_decoder_free(&d); }
        /* every truncation: an error, or a prefix of the fields */
        for (size_t t = 0; t < (size_t)len; t++) {
            mc_hpack_decoder_t d; mc_hpack_decoder_init(&d, 4096);
            uint8_t *copy = malloc(t + 1); memcpy(copy, buf, t); /* exact size: ASan sees over-reads */
            bytes_t got = {0};
            int rc = mc_hpack_decode(&d, copy, t, collect, &got);
            CHECK(rc == 0 || rc == MC_HPACK_ERROR);
            if (rc == 0) CHECK(got.len <= full.len && (!got.len || memcmp(got.p, full.p, got.len) == 0));
            free(copy); free(got.p); mc_hpack_decoder_free(&d);
            trunc++;
        }
        /* mutations: ours and nghttp2's inflater, both fresh, agree on accept/refuse and on fields */
        for (int k = 0; k < 200; k++) {
            uint8_t *copy = malloc((size_t)len + 8);
            memcpy(copy, buf, (size_t)len);
            size_t n = (size_t)len;
            int nm = 1 + (int)rn(3);
            for (int j = 0; j < nm; j++) {
                switch (rn(4)) {
                case 0: copy[rn(n)] ^= (uint8_t)(1u << rn(8)); break;
                case 1: copy[rn(n)] = (uint8_t)rnd(); break;
                case 2: if (n > 1) n -= 1 + rn(n - 1 < 4 ? n - 1 : 4); break;
                default: if (n < (size_t)len + 8) copy[n++] = (uint8_t)rnd(); break;
                }
            }
            mc_hpack_decoder_t d; mc_hpack_decoder_init(&d, 4096);
            nghttp2_hd_inflater *inf; CHECK(nghttp2_hd_inflate_new(&inf) == 0);
            bytes_t a = {0}, b = {0};
            int ra = mc_hpack_decode(&d, copy, n, collect, &a);
            int rb = ng_inflate(inf, copy, n, &b);
            CHECK(ra == 0 || ra == MC_HPACK_ERROR);
            if (ra == 0 && rb == 0) {
                if (!same(&a, &b)) FAIL("mutation: both accept, fields differ");
                both_ok++;
            } else if (ra != 0 && rb != 0) both_err++;
            else {
                /* the one known difference: nghttp2 takes any number of size updates at the start */
                int ups = 0; size_t q = 0;
                while (q < n && (copy[q] & 0xe0) == 0x20) {
                    ups++;
                    if ((copy[q] & 0x1f) == 0x1f) { q++; while (q < n && (copy[q] & 0x80)) q++; }
                    q++;
                }
                if (ra != 0 && rb == 0 && ups > 2) disagree_upd++;
                else {
                    fprintf(stderr, "mutation disagreement: ours %d nghttp2 %d, block:", ra, rb);
                    for (size_t i = 0; i < n; i++) fprintf(stderr, " %02x", copy[i]);
                    fputc('\n', stderr);
                    exit(1);
                }
            }
            free(a.p); free(b.p); free(copy);
            nghttp2_hd_inflate_del(inf); mc_hpack_decoder_free(&d);
            mut++;
        }
        free(full.p);
        nghttp2_hd_deflate_del(def);
    }
    printf("truncation: %zu prefixes (error or a prefix of the fields); mutation vs nghttp2: %zu blocks, "
           "%zu both accept (same fields), %zu both refuse, %zu only we refuse (over two size updates)\n",
           trunc, mut, both_ok, both_err, disagree_upd);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc > 1) rng = strtoull(argv[1], NULL, 0) | 1;
    test_malformed();
    test_huffman();
    test_ng_to_us();
    test_us_to_ng();
    test_model();
    test_mutation();
    printf("all HPACK tests passed\n");
    return 0;
}
