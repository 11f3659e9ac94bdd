/*
 * Two OpenSSL helpers shared by certs.c and sigkey.c (static inline: each file links alone, as
 * the C tests and fuzz builds compile them).
 */
#ifndef MC_PEMUTIL_H
#define MC_PEMUTIL_H

#include <openssl/bio.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "WHAT: OpenSSL's reason" into err (the first queued error, then the queue is cleared). */
static inline void mc_openssl_error(char *err, size_t errlen, const char *what) {
    char why[200];
    unsigned long e = ERR_get_error();
    if (e) ERR_error_string_n(e, why, sizeof why);
    else snprintf(why, sizeof why, "unknown error");
    ERR_clear_error();
    if (err && errlen) snprintf(err, errlen, "%s: %s", what, why);
}

/* A memory BIO's contents as a NUL-terminated malloc'd string; NULL if empty or out of memory. */
static inline char *mc_pem_of_bio(BIO *b) {
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    if (n <= 0) return NULL;
    char *out = malloc((size_t)n + 1);
    if (!out) return NULL;
    memcpy(out, data, (size_t)n);
    out[n] = 0;
    return out;
}

#endif
