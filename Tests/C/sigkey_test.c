/*
 * The token signing keys (sigkey.c) under ASan, UBSan and LeakSanitizer: every kind generated,
 * signed with, verified (and a changed byte of data or signature refused), written to PEM and
 * read back (the public half verifies what the private half signed), bad PEM and short keys
 * refused with a message; nothing leaks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "CMicroCore.h"

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "sigkey_test: %s:%d: %s\n", __FILE__, __LINE__, #cond);    \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

static void one_kind(int kind, size_t expected_len) {
    char err[256] = {0};
    mc_sigkey_t *key = mc_sigkey_generate(kind, err, sizeof err);
    CHECK(key != NULL);
    CHECK(mc_sigkey_kind(key) == kind && mc_sigkey_has_private(key));
    const uint8_t data[] = "header.claims";
    uint8_t sig[1024];
    long n = mc_sigkey_sign(key, data, sizeof data - 1, sig, sizeof sig);
    CHECK(n == (long)expected_len);
    CHECK(mc_sigkey_verify(key, data, sizeof data - 1, sig, (size_t)n) == 1);
    CHECK(mc_sigkey_verify(key, data, sizeof data - 2, sig, (size_t)n) == 0);
    sig[n / 2] ^= 1;
    CHECK(mc_sigkey_verify(key, data, sizeof data - 1, sig, (size_t)n) == 0);
    sig[n / 2] ^= 1;
    CHECK(mc_sigkey_verify(key, data, sizeof data - 1, sig, (size_t)n - 1) == 0);  /* a short signature */
    CHECK(mc_sigkey_sign(key, data, sizeof data - 1, sig, 8) == -1);                  /* no room */

    char *pub = mc_sigkey_pem(key, 0), *priv = mc_sigkey_pem(key, 1);
    CHECK(pub && priv && strstr(pub, "BEGIN PUBLIC KEY") && strstr(priv, "PRIVATE KEY"));
    mc_sigkey_t *public_key = mc_sigkey_from_pem(pub, strlen(pub), 0, err, sizeof err);
    CHECK(public_key && !mc_sigkey_has_private(public_key) && mc_sigkey_pem(public_key, 1) == NULL);
    CHECK(mc_sigkey_verify(public_key, data, sizeof data - 1, sig, (size_t)n) == 1);
    CHECK(mc_sigkey_sign(public_key, data, sizeof data - 1, sig, sizeof sig) == -1);
    uint8_t a[32], b[32];
    CHECK(mc_sigkey_fingerprint(key, a) == 0 && mc_sigkey_fingerprint(public_key, b) == 0 && memcmp(a, b, 32) == 0);
    mc_sigkey_t *again = mc_sigkey_from_pem(priv, strlen(priv), 1, err, sizeof err);
    CHECK(again && mc_sigkey_kind(again) == kind);
    mc_sigkey_free(again);
    mc_sigkey_free(public_key);
    mc_sigkey_free_pem(pub);
    mc_sigkey_free_pem(priv);
    mc_sigkey_free(key);
}

int main(void) {
    one_kind(MC_SIGKEY_RSA, 256);
    one_kind(MC_SIGKEY_P256, 64);
    one_kind(MC_SIGKEY_ED25519, 64);
    char err[256] = {0};
    const char *junk = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
    CHECK(mc_sigkey_from_pem(junk, strlen(junk), 0, err, sizeof err) == NULL && strstr(err, "not a PEM public key"));
    CHECK(mc_sigkey_from_pem("", 0, 1, err, sizeof err) == NULL && err[0]);
    CHECK(mc_sigkey_generate(99, err, sizeof err) == NULL && strstr(err, "unknown key kind"));
    mc_sigkey_free(NULL);
    puts("sigkey_test: ok");
    return 0;
}
