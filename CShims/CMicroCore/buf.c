/* Growable byte buffers. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int mc_buf_reserve(mc_buf_t *b, size_t extra) {
    if (b->cap - b->len >= extra) return 0;
    if (extra > SIZE_MAX / 2 - b->len) return -1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < extra) cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p) return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

int mc_buf_append(mc_buf_t *b, const void *p, size_t n) {
    if (n == 0) return 0;
    if (mc_buf_reserve(b, n) != 0) return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int mc_buf_appendf(mc_buf_t *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    if ((size_t)n < sizeof small) return mc_buf_append(b, small, (size_t)n);
    if (mc_buf_reserve(b, (size_t)n + 1) != 0) return -1;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

size_t mc_format_decimal(char *out, uint64_t n) {
    char digits[20];
    size_t k = 0;
    do {
        digits[k++] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    for (size_t i = 0; i < k; i++) out[i] = digits[k - 1 - i];
    out[k] = 0;
    return k;
}

int mc_buf_append_decimal(mc_buf_t *b, uint64_t n) {
    char text[21];
    return mc_buf_append(b, text, mc_format_decimal(text, n));
}

void mc_buf_consume(mc_buf_t *b, size_t n) {
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void mc_buf_free(mc_buf_t *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void mc_buf_reset(mc_buf_t *b, size_t keep) {
    if (b->cap > keep) mc_buf_free(b);
    b->len = 0;
}
