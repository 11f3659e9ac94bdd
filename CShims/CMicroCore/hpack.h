/*
 * HPACK (RFC 7541) for the HTTP/2 server engine: a decoder with its dynamic table, one per
 * connection, and a stateless encoder (no dynamic table, no Huffman). Self-contained: no libuv,
 * no nghttp2.
 */
#ifndef MC_HPACK_H
#define MC_HPACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MC_HPACK_DEFAULT_TABLE 4096
#define MC_HPACK_ERROR (-1)

/* One dynamic table entry: its bytes (name then value) at stream position pos of the table's
 * byte buffer. */
typedef struct mc_hpack_entry {
    size_t pos;
    uint32_t nlen;
    uint32_t vlen;
} mc_hpack_entry_t;

typedef struct mc_hpack_decoder {
    size_t limit;    /* our SETTINGS_HEADER_TABLE_SIZE: the ceiling of the peer's size updates */
    size_t max_size; /* the table size the peer chose (at most limit) */
    size_t size;     /* RFC size of the entries held: name + value + 32 each */
    /* entry bytes, oldest first and contiguous: bytes[0] is at stream position base, the next
     * entry goes at position end; compacted to the front when the tail has no room */
    uint8_t *bytes;
    size_t bytes_cap;
    size_t base;
    size_t end;
    /* the entries, a ring of limit / 32 slots: ring[head] is the oldest */
    mc_hpack_entry_t *ring;
    size_t ring_cap;
    size_t head;
    size_t count;
    /* decoded Huffman strings of the field being decoded */
    uint8_t *scratch;
    size_t scratch_cap;
} mc_hpack_decoder_t;

/* limit: our SETTINGS_HEADER_TABLE_SIZE (MC_HPACK_DEFAULT_TABLE). Allocates nothing; the table
 * is allocated at the first insert, the scratch buffer at the first Huffman string. */
void mc_hpack_decoder_init(mc_hpack_decoder_t *d, size_t limit);
void mc_hpack_decoder_free(mc_hpack_decoder_t *d);

/* fn gets each field of a block in order; name/value point into memory valid only during the call.
 * fn returns 0 to go on, 1 to get no more fields of this block (the block is still decoded to the end
 * so that the dynamic table stays in step with the peer's), and any other value is returned as is
 * after decoding stops at once. */
typedef int (*mc_hpack_field_fn)(void *ctx, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen);

/* Decodes one whole header block (HEADERS + CONTINUATION payloads already joined).
 * Returns 0, MC_HPACK_ERROR (-1) for a malformed block (the connection error COMPRESSION_ERROR)
 * or a failed allocation (the table is then out of step: the connection ends either way),
 * or fn's value as above. */
int mc_hpack_decode(mc_hpack_decoder_t *d, const uint8_t *p, size_t n, mc_hpack_field_fn fn, void *ctx);

/* Encoder, stateless (no dynamic table, so the peer's SETTINGS_HEADER_TABLE_SIZE never matters):
 * appends one field as "literal without indexing" with the static table's name index when the name
 * is there, strings raw (no Huffman); ":status" with a value of 200/204/206/304/400/404/500 is one
 * indexed byte. Names must already be lower case. Returns the bytes written, at most
 * mc_hpack_field_max(nlen, vlen), which the caller reserves. */
size_t mc_hpack_field_max(size_t nlen, size_t vlen);
size_t mc_hpack_encode_field(uint8_t *out, const uint8_t *name, size_t nlen, const uint8_t *value, size_t vlen);

#endif
