/*
 * HPACK (RFC 7541). The decoder keeps the peer's dynamic table in one byte buffer (entries back
 * to back, oldest first, compacted to the front when the tail is full) and a ring of entries, so
 * an insert allocates nothing once the table exists. Huffman strings are decoded eleven bits at a
 * time (one or two codes of up to 11 bits) from a table built once from the code lengths
 * (hpack_huffman.h); longer codes are found by the canonical code's per-length limits. The encoder
 * is stateless: literals without indexing, raw strings, static names.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "hpack.h"
#include "hpack_huffman.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Integers past this are refused: no length, index or table size of a sane peer comes near. */
#define MC_HPACK_INT_MAX ((uint32_t)1 << 28)
/* Bytes an entry costs beyond its name and value (RFC 7541 4.1). */
#define ENTRY_OVERHEAD 32
#define NO_POS SIZE_MAX

/* ---------------------------------------------------------------- static table (Appendix A) */

typedef struct {
    const char *name;
    const char *value;
    uint8_t nlen;
    uint8_t vlen;
} static_entry_t;

#define S(n, v) {n, v, sizeof n - 1, sizeof v - 1}
static const static_entry_t static_table[62] = {
    {"", "", 0, 0}, /* index 0 is not a field */
    S(":authority", ""),
    S(":method", "GET"),
    S(":method", "POST"),
    S(":path", "/"),
    S(":path", "/index.html"),
    S(":scheme", "http"),
    S(":scheme", "https"),
    S(":status", "200"),
    S(":status", "204"),
    S(":status", "206"),
    S(":status", "304"),
    S(":status", "400"),
    S(":status", "404"),
    S(":status", "500"),
    S("accept-charset", ""),
    S("accept-encoding", "gzip, deflate"),
    S("accept-language", ""),
    S("accept-ranges", ""),
    S("accept", ""),
    S("access-control-allow-origin", ""),
    S("age", ""),
    S("allow", ""),
    S("authorization", ""),
    S("cache-control", ""),
    S("content-disposition", ""),
    S("content-encoding", ""),
    S("content-language", ""),
    S("content-length", ""),
    S("content-location", ""),
    S("content-range", ""),
    S("content-type", ""),
    S("cookie", ""),
    S("date", ""),
    S("etag", ""),
    S("expect", ""),
    S("expires", ""),
    S("from", ""),
    S("host", ""),
    S("if-match", ""),
    S("if-modified-since", ""),
    S("if-none-match", ""),
    S("if-range", ""),
    S("if-unmodified-since", ""),
    S("last-modified", ""),
    S("link", ""),
    S("location", ""),
    S("max-forwards", ""),
    S("proxy-authenticate", ""),
    S("proxy-authorization", ""),
    S("range", ""),
    S("referer", ""),
    S("refresh", ""),
    S("retry-after", ""),
    S("server", ""),
    S("set-cookie", ""),
    S("strict-transport-security", ""),
    S("transfer-encoding", ""),
    S("user-agent", ""),
    S("vary", ""),
    S("via", ""),
    S("www-authenticate", ""),
};
#undef S
#define STATIC_COUNT 61
#define STATIC_NAME_MAX 27 /* access-control-allow-origin */

/* ---------------------------------------------------------------- tables built once */

#define DIRECT_BITS 11
/* by the next DIRECT_BITS bits: the codes that fit whole in them, up to two: bits 0-7 the first
 * symbol, 8-15 the second, 16-19 the first's length, 20-24 the bits of both, 25-26 how many
 * (0: the first code is longer) */
static uint32_t huff_direct[1 << DIRECT_BITS];
/* per code length L: codes of length <= L, left-aligned in 32 bits, are below limit[L]; the first
 * code of length L, and where its symbol is in huff_sorted */
static uint64_t huff_limit[MC_HPACK_HUFFMAN_MAX_BITS + 1];
static uint32_t huff_first[MC_HPACK_HUFFMAN_MAX_BITS + 1];
static uint16_t huff_base[MC_HPACK_HUFFMAN_MAX_BITS + 1];
static uint16_t huff_sorted[257]; /* symbols by code length, then value */

/* the encoder's static names by length: name_index[name_start[L] .. name_start[L + 1]) */
static uint8_t name_start[STATIC_NAME_MAX + 2];
static uint8_t name_index[STATIC_COUNT];

static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

/* The symbol of the code at the top of w (left-aligned, zeros past the input) and its length. */
static inline unsigned slow_symbol(uint32_t w, unsigned *len) {
    unsigned l = 1;
    while (w >= huff_limit[l]) l++; /* huff_limit[30] is 2^32: always stops */
    *len = l;
    return huff_sorted[huff_base[l] + ((w >> (32 - l)) - huff_first[l])];
}

static void build_tables(void) {
    unsigned count[MC_HPACK_HUFFMAN_MAX_BITS + 1] = {0};
    for (unsigned s = 0; s < 257; s++) count[mc_hpack_huffman_bits[s]]++;
    unsigned k = 0;
    for (unsigned len = 1; len <= MC_HPACK_HUFFMAN_MAX_BITS; len++) {
        for (unsigned s = 0; s < 257; s++)
            if (mc_hpack_huffman_bits[s] == len) huff_sorted[k++] = (uint16_t)s;
    }
    uint32_t code = 0;
    unsigned base = 0;
    for (unsigned len = 1; len <= MC_HPACK_HUFFMAN_MAX_BITS; len++) {
        huff_first[len] = code;
        huff_base[len] = (uint16_t)base;
        huff_limit[len] = (uint64_t)(code + count[len]) << (32 - len);
        base += count[len];
        code = (code + count[len]) << 1;
    }
    for (uint32_t w = 0; w < (1u << DIRECT_BITS); w++) {
        unsigned len1, len2;
        unsigned sym1 = slow_symbol(w << (32 - DIRECT_BITS), &len1);
        if (len1 > DIRECT_BITS) continue;
        uint32_t e = sym1 | len1 << 16 | len1 << 20 | 1u << 25;
        if (len1 < DIRECT_BITS) {
            unsigned sym2 = slow_symbol(w << (32 - DIRECT_BITS + len1), &len2);
            if (len1 + len2 <= DIRECT_BITS) e = sym1 | sym2 << 8 | len1 << 16 | (len1 + len2) << 20 | 2u << 25;
        }
        huff_direct[w] = e;
    }

    unsigned per_len[STATIC_NAME_MAX + 2] = {0};
    for (unsigned i = 1; i <= STATIC_COUNT; i++)
        if (i == 1 || strcmp(static_table[i].name, static_table[i - 1].name) != 0) per_len[static_table[i].nlen]++;
    unsigned at = 0;
    for (unsigned len = 0; len <= STATIC_NAME_MAX + 1; len++) {
        name_start[len] = (uint8_t)at;
        at += len <= STATIC_NAME_MAX ? per_len[len] : 0;
        per_len[len] = name_start[len];
    }
    for (unsigned i = 1; i <= STATIC_COUNT; i++)
        if (i == 1 || strcmp(static_table[i].name, static_table[i - 1].name) != 0)
            name_index[per_len[static_table[i].nlen]++] = (uint8_t)i;
}

/* ---------------------------------------------------------------- decoder */

void mc_hpack_decoder_init(mc_hpack_decoder_t *d, size_t limit) {
    pthread_once(&tables_once, build_tables);
    memset(d, 0, sizeof *d);
    d->limit = limit < MC_HPACK_INT_MAX ? limit : MC_HPACK_INT_MAX;
    d->max_size = d->limit;
}

void mc_hpack_decoder_free(mc_hpack_decoder_t *d) {
    free(d->bytes);
    free(d->ring);
    free(d->scratch);
    memset(d, 0, sizeof *d);
}

/* An integer with an N-bit prefix (RFC 7541 5.1) at *pp < end; at most four continuation bytes. */
static inline int read_int(const uint8_t **pp, const uint8_t *end, unsigned prefix, uint32_t *out) {
    const uint8_t *p = *pp;
    uint32_t mask = (1u << prefix) - 1;
    uint32_t v = *p++ & mask;
    if (v == mask) {
        unsigned shift = 0;
        uint8_t b;
        do {
            if (p == end || shift > 21) return -1;
            b = *p++;
            v += (uint32_t)(b & 0x7f) << shift;
            shift += 7;
        } while (b & 0x80);
    }
    *pp = p;
    *out = v;
    return 0;
}

static int scratch_reserve(mc_hpack_decoder_t *d, size_t need) {
    if (need <= d->scratch_cap) return 0;
    size_t cap = d->scratch_cap ? d->scratch_cap * 2 : 256;
    while (cap < need) cap *= 2;
    uint8_t *p = realloc(d->scratch, cap);
    if (!p) return -1;
    d->scratch = p;
    d->scratch_cap = cap;
    return 0;
}

static inline uint64_t load_be64(const uint8_t *p) {
    return (uint64_t)p[0] << 56 | (uint64_t)p[1] << 48 | (uint64_t)p[2] << 40 | (uint64_t)p[3] << 32 |
           (uint64_t)p[4] << 24 | (uint64_t)p[5] << 16 | (uint64_t)p[6] << 8 | p[7];
}

/* The first symbol at the top of acc, and its length. */
static inline unsigned huffman_symbol(uint64_t acc, unsigned *len) {
    uint32_t e = huff_direct[acc >> (64 - DIRECT_BITS)];
    if (e) {
        *len = e >> 16 & 0xf;
        return e & 0xff;
    }
    return slow_symbol((uint32_t)(acc >> 32), len);
}

/* Decodes n Huffman bytes into the scratch buffer at offset at; *out_len gets the length. */
static int huffman_decode(mc_hpack_decoder_t *d, size_t at, const uint8_t *p, size_t n, size_t *out_len) {
    /* codes are at least 5 bits: n bytes give at most n * 8 / 5 symbols */
    if (scratch_reserve(d, at + n / 5 * 8 + 8) != 0) return -1;
    uint8_t *out = d->scratch + at, *o = out;
    const uint8_t *end = p + n;
    /* the next `bits` bits of input, left-aligned; below them more input bits or zeros */
    uint64_t acc = 0;
    unsigned bits = 0, len, sym;
    /* eight bytes at a time while they are there; at least 30 bits (the longest code) per symbol */
    while (end - p >= 8) {
        acc |= load_be64(p) >> bits;
        p += (63 - bits) >> 3;
        bits |= 56;
        do {
            uint32_t e = huff_direct[acc >> (64 - DIRECT_BITS)];
            if (e) {
                /* one or two short codes */
                o[0] = (uint8_t)e;
                o[1] = (uint8_t)(e >> 8);
                o += e >> 25;
                len = e >> 20 & 0x1f;
            } else {
                sym = slow_symbol((uint32_t)(acc >> 32), &len);
                if (sym == MC_HPACK_HUFFMAN_EOS) return -1;
                *o++ = (uint8_t)sym;
            }
            acc <<= len;
            bits -= len;
        } while (bits >= MC_HPACK_HUFFMAN_MAX_BITS);
    }
    for (;;) {
        while (bits <= 56 && p < end) {
            acc |= (uint64_t)*p++ << (56 - bits);
            bits += 8;
        }
        if (bits == 0) break;
        sym = huffman_symbol(acc, &len);
        if (len > bits) break; /* what is left is no whole code: padding */
        if (sym == MC_HPACK_HUFFMAN_EOS) return -1;
        *o++ = (uint8_t)sym;
        acc <<= len;
        bits -= len;
    }
    /* padding: at most 7 bits, all ones (a prefix of EOS) */
    if (bits > 7) return -1;
    if (bits && acc >> (64 - bits) != (1u << bits) - 1) return -1;
    *out_len = (size_t)(o - out);
    return 0;
}

/* A string literal (RFC 7541 5.2) at *pp; a Huffman one is decoded into the scratch buffer at
 * offset at. */
static int read_string(mc_hpack_decoder_t *d, const uint8_t **pp, const uint8_t *end, size_t at,
                       const uint8_t **s, size_t *len, bool *huffman) {
    const uint8_t *p = *pp;
    if (p == end) return -1;
    *huffman = (*p & 0x80) != 0;
    uint32_t n;
    if (read_int(&p, end, 7, &n) != 0 || n > (size_t)(end - p)) return -1;
    if (*huffman) {
        if (huffman_decode(d, at, p, n, len) != 0) return -1;
        *s = d->scratch + at;
    } else {
        *s = p;
        *len = n;
    }
    *pp = p + n;
    return 0;
}

/* Field idx of the static or dynamic table; *pos gets a dynamic entry's stream position. */
static inline int table_get(const mc_hpack_decoder_t *d, uint32_t idx, const uint8_t **name, size_t *nlen,
                            const uint8_t **value, size_t *vlen, size_t *pos) {
    if (idx <= STATIC_COUNT) {
        if (idx == 0) return -1;
        const static_entry_t *e = &static_table[idx];
        *name = (const uint8_t *)e->name;
        *nlen = e->nlen;
        *value = (const uint8_t *)e->value;
        *vlen = e->vlen;
        *pos = NO_POS;
        return 0;
    }
    idx -= STATIC_COUNT + 1; /* 0: the newest entry */
    if (idx >= d->count) return -1;
    size_t slot = d->head + d->count - 1 - idx;
    if (slot >= d->ring_cap) slot -= d->ring_cap;
    const mc_hpack_entry_t *e = &d->ring[slot];
    const uint8_t *b = d->bytes + (e->pos - d->base);
    *name = b;
    *nlen = e->nlen;
    *value = b + e->nlen;
    *vlen = e->vlen;
    *pos = e->pos;
    return 0;
}

/* Drops the oldest entries until the table's size is at most target. */
static void evict_to(mc_hpack_decoder_t *d, size_t target) {
    while (d->size > target) {
        const mc_hpack_entry_t *e = &d->ring[d->head];
        d->size -= (size_t)e->nlen + e->vlen + ENTRY_OVERHEAD;
        if (++d->head == d->ring_cap) d->head = 0;
        d->count--;
    }
}

/* Adds a field as the newest entry (RFC 7541 4.4). name_pos is the stream position of the name
 * when it is a dynamic entry's, which eviction leaves in place and compaction keeps. */
static int table_insert(mc_hpack_decoder_t *d, const uint8_t *name, size_t nlen, size_t name_pos,
                        const uint8_t *value, size_t vlen) {
    size_t esize = nlen + vlen + ENTRY_OVERHEAD;
    if (esize > d->max_size) {
        evict_to(d, 0);
        return 0;
    }
    evict_to(d, d->max_size - esize);
    if (!d->ring) {
        /* live bytes and a new entry are each below limit: twice that leaves room after a compaction */
        d->ring_cap = d->limit / ENTRY_OVERHEAD;
        d->bytes_cap = d->limit * 2;
        d->ring = malloc(d->ring_cap * sizeof *d->ring);
        d->bytes = malloc(d->bytes_cap);
        if (!d->ring || !d->bytes) {
            free(d->ring);
            free(d->bytes);
            d->ring = NULL;
            d->bytes = NULL;
            return -1;
        }
        d->base = d->end = 0;
    }
    size_t used = d->end - d->base, need = nlen + vlen;
    if (d->bytes_cap - used < need) {
        size_t from = d->count ? d->ring[d->head].pos - d->base : used;
        if (name_pos != NO_POS && name_pos - d->base < from) from = name_pos - d->base;
        memmove(d->bytes, d->bytes + from, used - from);
        d->base += from;
        if (name_pos != NO_POS) name = d->bytes + (name_pos - d->base);
    }
    uint8_t *dst = d->bytes + (d->end - d->base);
    if (nlen) memmove(dst, name, nlen);
    if (vlen) memcpy(dst + nlen, value, vlen);
    size_t slot = d->head + d->count;
    if (slot >= d->ring_cap) slot -= d->ring_cap;
    d->ring[slot] = (mc_hpack_entry_t){.pos = d->end, .nlen = (uint32_t)nlen, .vlen = (uint32_t)vlen};
    d->count++;
    d->end += need;
    d->size += esize;
    return 0;
}

int mc_hpack_decode(mc_hpack_decoder_t *d, const uint8_t *p, size_t n, mc_hpack_field_fn fn, void *ctx) {
    if (n == 0) return 0;
    const uint8_t *end = p + n;
    bool deliver = true, fields = false;
    unsigned updates = 0;
    while (p < end) {
        uint8_t b = *p;
        const uint8_t *name, *value;
        size_t nlen, vlen, pos;
        uint32_t idx;
        bool indexing = false;
        if (b & 0x80) {
            /* indexed field (6.1) */
            if (read_int(&p, end, 7, &idx) != 0 || table_get(d, idx, &name, &nlen, &value, &vlen, &pos) != 0)
                return MC_HPACK_ERROR;
        } else if ((b & 0xe0) == 0x20) {
            /* dynamic table size update (6.3): first in the block, at most two (4.2) */
            if (fields || ++updates > 2 || read_int(&p, end, 5, &idx) != 0 || idx > d->limit) return MC_HPACK_ERROR;
            d->max_size = idx;
            evict_to(d, idx);
            continue;
        } else {
            /* literal with incremental indexing (6.2.1), without indexing (6.2.2), never indexed (6.2.3) */
            bool name_huffman = false, value_huffman;
            indexing = (b & 0x40) != 0;
            if (read_int(&p, end, indexing ? 6 : 4, &idx) != 0) return MC_HPACK_ERROR;
            if (idx) {
                if (table_get(d, idx, &name, &nlen, &value, &vlen, &pos) != 0) return MC_HPACK_ERROR;
            } else {
                if (read_string(d, &p, end, 0, &name, &nlen, &name_huffman) != 0) return MC_HPACK_ERROR;
                pos = NO_POS;
            }
            if (read_string(d, &p, end, name_huffman ? nlen : 0, &value, &vlen, &value_huffman) != 0)
                return MC_HPACK_ERROR;
            if (name_huffman) name = d->scratch; /* the value's decoding may have moved the buffer */
        }
        fields = true;
        if (deliver) {
            int rc = fn(ctx, name, nlen, value, vlen);
            if (rc) {
                if (rc != 1) return rc;
                deliver = false;
            }
        }
        if (indexing && table_insert(d, name, nlen, pos, value, vlen) != 0) return MC_HPACK_ERROR;
    }
    return 0;
}

/* ---------------------------------------------------------------- encoder */

/* An integer with an N-bit prefix after the bits of first; at most 11 bytes for 64 bits. */
static size_t put_int(uint8_t *out, uint8_t first, unsigned prefix, size_t v) {
    size_t mask = ((size_t)1 << prefix) - 1;
    if (v < mask) {
        out[0] = (uint8_t)(first | v);
        return 1;
    }
    out[0] = (uint8_t)(first | mask);
    v -= mask;
    size_t k = 1;
    while (v >= 0x80) {
        out[k++] = (uint8_t)((v & 0x7f) | 0x80);
        v >>= 7;
    }
    out[k++] = (uint8_t)v;
    return k;
}

size_t mc_hpack_field_max(size_t nlen, size_t vlen) {
    /* first byte, two lengths of at most 11 bytes each */
    if (nlen > SIZE_MAX - 23 - vlen) return SIZE_MAX;
    return nlen + vlen + 23;
}

static unsigned static_name(const uint8_t *name, size_t nlen) {
    if (nlen == 0 || nlen > STATIC_NAME_MAX) return 0;
    for (unsigned i = name_start[nlen]; i < name_start[nlen + 1]; i++) {
        const static_entry_t *e = &static_table[name_index[i]];
        if (e->name[0] == name[0] && memcmp(e->name, name, nlen) == 0) return name_index[i];
    }
    return 0;
}

size_t mc_hpack_encode_field(uint8_t *out, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen) {
    pthread_once(&tables_once, build_tables);
    if (nlen == 7 && vlen == 3 && memcmp(name, ":status", 7) == 0) {
        for (unsigned i = 8; i <= 14; i++)
            if (memcmp(static_table[i].value, value, 3) == 0) {
                out[0] = (uint8_t)(0x80 | i);
                return 1;
            }
    }
    size_t k;
    unsigned idx = static_name(name, nlen);
    if (idx) {
        k = put_int(out, 0x00, 4, idx);
    } else {
        out[0] = 0x00;
        k = 1 + put_int(out + 1, 0x00, 7, nlen);
        if (nlen) memcpy(out + k, name, nlen);
        k += nlen;
    }
    k += put_int(out + k, 0x00, 7, vlen);
    if (vlen) memcpy(out + k, value, vlen);
    return k + vlen;
}
