/* A loop's cache of small blocks, given to nghttp2 as its allocator.
 *
 * nghttp2 allocates and frees a few small blocks for every request (its stream, the outbound
 * items of the response and the trailers, copies of header lists). With glibc's malloc those
 * churn through the per-thread cache and, at a few hundred thousand requests a second, often
 * miss it. Sessions live on one loop and are only touched on its thread, so the loop keeps free
 * blocks in size classes and hands them back without a lock or a search.
 *
 * Each block starts with a header saying its class and the size asked for; blocks larger than
 * the largest class come from malloc and go back to free. At most MC_POOL_KEEP_BYTES of free
 * blocks are kept per class (768 KiB a loop in all), more are freed: the cache is filled by
 * the first busy moments and stays that size, so a server's memory stays flat. Under
 * AddressSanitizer the cache is off (every block goes back to free at once), so that a use
 * after free is still caught. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct block_header {
    size_t klass; /* size class, or MC_POOL_CLASSES for a block of its own */
    size_t size;  /* bytes asked for */
} block_header_t;

_Static_assert(sizeof(block_header_t) % 16 == 0, "blocks stay aligned as malloc's are");

/* class k holds blocks of MC_POOL_SMALLEST << k bytes, header included */
static size_t class_bytes(size_t k) { return (size_t)MC_POOL_SMALLEST << k; }

unsigned mc_pool_keep(size_t k) { return (unsigned)(MC_POOL_KEEP_BYTES / class_bytes(k)); }

static size_t class_of(size_t bytes) {
    size_t k = 0;
    while (k < MC_POOL_CLASSES && class_bytes(k) < bytes) k++;
    return k;
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MC_POOL_OFF 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define MC_POOL_OFF 1
#endif

static void *pool_alloc(mc_pool_t *p, size_t size) {
    if (size > SIZE_MAX - sizeof(block_header_t)) return NULL;
    size_t k = class_of(size + sizeof(block_header_t));
    block_header_t *h;
    if (k < MC_POOL_CLASSES && p->free[k]) {
        h = p->free[k];
        p->free[k] = *(void **)(h + 1);
        p->kept[k]--;
    } else {
        h = malloc(k < MC_POOL_CLASSES ? class_bytes(k) : size + sizeof *h);
        if (!h) return NULL;
    }
    h->klass = k;
    h->size = size;
    return h + 1;
}

static void release(mc_pool_t *p, void *ptr) {
    if (!ptr) return;
    block_header_t *h = (block_header_t *)ptr - 1;
    size_t k = h->klass;
    if (k >= MC_POOL_CLASSES || p->closed || p->kept[k] >= mc_pool_keep(k)) {
        free(h);
        return;
    }
    *(void **)(h + 1) = p->free[k];
    p->free[k] = h;
    p->kept[k]++;
}

static void *pool_malloc(size_t size, void *p) { return pool_alloc(p, size); }

static void pool_free(void *ptr, void *p) { release(p, ptr); }

static void *pool_calloc(size_t n, size_t size, void *p) {
    if (size && n > SIZE_MAX / size) return NULL;
    void *ptr = pool_alloc(p, n * size);
    if (ptr) memset(ptr, 0, n * size);
    return ptr;
}

static void *pool_realloc(void *ptr, size_t size, void *p) {
    if (!ptr) return pool_alloc(p, size);
    block_header_t *h = (block_header_t *)ptr - 1;
    if (h->klass < MC_POOL_CLASSES && size + sizeof *h <= class_bytes(h->klass)) {
        h->size = size; /* still fits its block */
        return ptr;
    }
    void *moved = pool_alloc(p, size);
    if (!moved) return NULL;
    memcpy(moved, ptr, h->size < size ? h->size : size);
    release(p, ptr);
    return moved;
}

void mc_pool_init(mc_pool_t *p) {
    memset(p, 0, sizeof *p);
#ifdef MC_POOL_OFF
    p->closed = true;
#endif
    p->nghttp2 = (nghttp2_mem){p, pool_malloc, pool_free, pool_calloc, pool_realloc};
}

void mc_pool_close(mc_pool_t *p) {
    p->closed = true;
    for (size_t k = 0; k < MC_POOL_CLASSES; k++) {
        while (p->free[k]) {
            block_header_t *h = p->free[k];
            p->free[k] = *(void **)(h + 1);
            free(h);
        }
        p->kept[k] = 0;
    }
}
