/*
 * Target hpack: the HPACK decoder (CShims/CMicroCore/hpack.c) alone, fed a sequence of header
 * blocks on one decoder, so that the dynamic table and its size carry over from block to block.
 * Every field decoded is encoded again with the stateless encoder; a block decoded whole must
 * decode again from that encoding (on a second decoder without a table) to the same fields.
 *
 * Input:
 *   byte 0      bits 0-2: the decoder's limit (0, 32, 64, 256, 1024, 4096, 16384, 65536);
 *               bits 3-4: what the field callback answers at field K of each block (go on,
 *               1: no more fields, 7: stop at once); bits 5-7: K
 *   the rest    blocks, each a 2-byte big-endian length and that many bytes (the last one takes
 *               what is left if the input is shorter)
 */
#include "hpack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                                \
    do {                                                                                                           \
        if (!(cond)) {                                                                                             \
            fprintf(stderr, "%s:%d: broken: %s\n", __FILE__, __LINE__, #cond);                                     \
            abort();                                                                                               \
        }                                                                                                          \
    } while (0)

typedef struct {
    uint8_t *p;
    size_t len, cap;
} bytes_t;

static void put(bytes_t *b, const void *p, size_t n) {
    if (b->cap - b->len < n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) cap *= 2;
        b->p = realloc(b->p, cap);
        CHECK(b->p);
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
}

/* a field as length, bytes, length, bytes */
static void put_field(bytes_t *b, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen) {
    put(b, &nlen, sizeof nlen);
    put(b, name, nlen);
    put(b, &vlen, sizeof vlen);
    put(b, value, vlen);
}

typedef struct {
    unsigned mode, at, calls;
    bytes_t fields;  /* what the decoder gave */
    bytes_t encoded; /* the same, encoded again */
} state_t;

static int on_field(void *ctx, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen) {
    state_t *s = ctx;
    CHECK((name || !nlen) && (value || !vlen));
    put_field(&s->fields, name, nlen, value, vlen);
    size_t max = mc_hpack_field_max(nlen, vlen);
    uint8_t *out = malloc(max);
    CHECK(out);
    size_t k = mc_hpack_encode_field(out, name, nlen, value, vlen);
    CHECK(k >= 1 && k <= max);
    put(&s->encoded, out, k);
    free(out);
    if (s->calls++ == s->at && s->mode) return s->mode == 1 ? 1 : 7;
    return 0;
}

static int collect(void *ctx, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen) {
    put_field(ctx, name, nlen, value, vlen);
    return 0;
}

/* The table's bookkeeping: entry sizes add up, the ring and the byte buffer hold them. */
static void check_table(const mc_hpack_decoder_t *d) {
    CHECK(d->size <= d->max_size && d->max_size <= d->limit);
    CHECK(d->count <= d->ring_cap || (!d->ring && !d->count));
    size_t size = 0;
    for (size_t i = 0; i < d->count; i++) {
        const mc_hpack_entry_t *e = &d->ring[(d->head + i) % d->ring_cap];
        size += (size_t)e->nlen + e->vlen + 32;
        CHECK(e->pos - d->base + e->nlen + e->vlen <= d->end - d->base);
    }
    CHECK(size == d->size);
    CHECK(d->end - d->base <= d->bytes_cap);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const size_t limits[8] = {0, 32, 64, 256, 1024, 4096, 16384, 65536};
    uint8_t config = size ? data[0] : 0;
    const uint8_t *p = size ? data + 1 : data, *end = data + size;
    mc_hpack_decoder_t d, again;
    mc_hpack_decoder_init(&d, limits[config & 7]);
    mc_hpack_decoder_init(&again, 0);
    state_t s = {.mode = (config >> 3) & 3, .at = config >> 5};
    if (s.mode == 3) s.mode = 0;
    bytes_t back = {0};
    while (p < end) {
        size_t n = (size_t)(end - p) >= 2 ? (size_t)p[0] << 8 | p[1] : 0;
        p += (size_t)(end - p) >= 2 ? 2 : (size_t)(end - p);
        if (n > (size_t)(end - p)) n = (size_t)(end - p);
        s.calls = 0;
        s.fields.len = s.encoded.len = 0;
        int rc = mc_hpack_decode(&d, p, n, on_field, &s);
        p += n;
        CHECK(rc == 0 || rc == MC_HPACK_ERROR || (rc == 7 && s.mode == 2));
        check_table(&d);
        if (rc != 0 || s.mode != 0) continue;
        /* the block's fields, encoded again, decode to the same */
        back.len = 0;
        CHECK(mc_hpack_decode(&again, s.encoded.p, s.encoded.len, collect, &back) == 0);
        CHECK(back.len == s.fields.len && (!back.len || memcmp(back.p, s.fields.p, back.len) == 0));
        CHECK(again.count == 0 && again.size == 0);
    }
    free(s.fields.p);
    free(s.encoded.p);
    free(back.p);
    mc_hpack_decoder_free(&d);
    mc_hpack_decoder_free(&again);
    return 0;
}
