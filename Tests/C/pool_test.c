/* The block cache nghttp2 allocates from (CShims/CMicroCore/pool.c), tested directly and with the
 * cache on (the core turns it off under AddressSanitizer, so the library's own sanitized runs do
 * not reach this code). Built and run by scripts/test with ASan and UBSan: a block handed out
 * twice, a write past a block, or a block never freed fails the run. */
#include "../../CShims/CMicroCore/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "pool_test.c:%d: %s\n", __LINE__, #cond);                                                  \
            failures++;                                                                                                \
        }                                                                                                              \
    } while (0)

int main(void) {
    mc_pool_t pool;
    mc_pool_init(&pool);
    pool.closed = false; /* the cache on, whatever the build */
    nghttp2_mem *mem = &pool.nghttp2;

    /* a freed block comes back for the next request of its class, and only once */
    void *a = mem->malloc(40, mem->mem_user_data);
    memset(a, 0xab, 40);
    mem->free(a, mem->mem_user_data);
    void *b = mem->malloc(30, mem->mem_user_data);
    void *c = mem->malloc(30, mem->mem_user_data);
    CHECK(b == a);
    CHECK(c != b);
    memset(b, 1, 30);
    memset(c, 2, 30);

    /* every size up to the largest class and past it: usable to the last byte */
    void *blocks[64];
    for (size_t i = 0; i < 64; i++) {
        size_t size = 1 + i * 97;
        blocks[i] = mem->malloc(size, mem->mem_user_data);
        CHECK(blocks[i] != NULL && ((uintptr_t)blocks[i] & 15) == 0);
        memset(blocks[i], (int)i, size);
    }
    for (size_t i = 0; i < 64; i++) mem->free(blocks[i], mem->mem_user_data);

    /* calloc zeroes a reused block, and refuses a product that overflows */
    uint8_t *z = mem->calloc(4, 8, mem->mem_user_data);
    for (size_t i = 0; i < 32; i++) CHECK(z[i] == 0);
    CHECK(mem->calloc(SIZE_MAX / 2, 4, mem->mem_user_data) == NULL);
    CHECK(mem->malloc(SIZE_MAX - 4, mem->mem_user_data) == NULL);

    /* realloc keeps the contents: within its block, to a larger class, past every class, back */
    uint8_t *r = mem->realloc(NULL, 10, mem->mem_user_data);
    for (int i = 0; i < 10; i++) r[i] = (uint8_t)i;
    r = mem->realloc(r, 40, mem->mem_user_data);
    for (int i = 0; i < 10; i++) CHECK(r[i] == i);
    r = mem->realloc(r, 1000, mem->mem_user_data);
    for (int i = 0; i < 10; i++) CHECK(r[i] == i);
    memset(r + 10, 7, 990);
    r = mem->realloc(r, 100000, mem->mem_user_data);
    for (int i = 0; i < 10; i++) CHECK(r[i] == i);
    CHECK(r[999] == 7);
    r = mem->realloc(r, 20, mem->mem_user_data);
    for (int i = 0; i < 10; i++) CHECK(r[i] == i);
    mem->free(r, mem->mem_user_data);

    /* no more than MC_POOL_KEEP_BYTES of free blocks are kept per class; the rest go to free() */
    CHECK(mc_pool_keep(0) == MC_POOL_KEEP_BYTES / 64 && mc_pool_keep(MC_POOL_CLASSES - 1) == MC_POOL_KEEP_BYTES / 2048);
    enum { many_count = MC_POOL_KEEP_BYTES / 64 + 10 };
    void *many[many_count];
    for (size_t i = 0; i < many_count; i++) many[i] = mem->malloc(16, mem->mem_user_data);
    for (size_t i = 0; i < many_count; i++) mem->free(many[i], mem->mem_user_data);
    CHECK(pool.kept[0] == mc_pool_keep(0));
    enum { big_count = MC_POOL_KEEP_BYTES / 2048 + 4 };
    void *big[big_count];
    for (size_t i = 0; i < big_count; i++) big[i] = mem->malloc(2000, mem->mem_user_data);
    for (size_t i = 0; i < big_count; i++) mem->free(big[i], mem->mem_user_data);
    CHECK(pool.kept[MC_POOL_CLASSES - 1] == mc_pool_keep(MC_POOL_CLASSES - 1));
    mem->free(NULL, mem->mem_user_data);

    /* closing frees what is kept; a block still out goes to free() when it comes back */
    mem->free(b, mem->mem_user_data);
    mem->free(z, mem->mem_user_data);
    mc_pool_close(&pool);
    for (size_t k = 0; k < MC_POOL_CLASSES; k++) CHECK(pool.kept[k] == 0 && pool.free[k] == NULL);
    mem->free(c, mem->mem_user_data);
    CHECK(pool.kept[0] == 0);

    if (failures) return 1;
    printf("pool_test: ok\n");
    return 0;
}
