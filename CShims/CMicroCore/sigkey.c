/*
 * Signing keys for tokens (JWS): RSA (RS256), EC P-256 (ES256) and Ed25519 (EdDSA), through the
 * OpenSSL the core links. A key is an EVP_PKEY behind an opaque handle; signing and verifying
 * make their own EVP_MD_CTX, so one key serves any number of threads at once.
 *
 * JWS carries an ECDSA signature as r||s (32 bytes each); OpenSSL speaks DER: converted here,
 * both ways, with every length checked.
 */
#include "internal.h"
#include "pemutil.h"

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mc_sigkey {
    EVP_PKEY *pkey;
    int kind;
    int has_private;
};

static int kind_of(EVP_PKEY *pkey) {
    switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_RSA:
        return EVP_PKEY_get_bits(pkey) >= 2048 ? MC_SIGKEY_RSA : 0;
    case EVP_PKEY_EC: {
        char group[32] = {0};
        size_t len = 0;
        if (EVP_PKEY_get_utf8_string_param(pkey, "group", group, sizeof group, &len) != 1) return 0;
        return strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0 ? MC_SIGKEY_P256 : 0;
    }
    case EVP_PKEY_ED25519:
        return MC_SIGKEY_ED25519;
    default:
        return 0;
    }
}

static mc_sigkey_t *wrap(EVP_PKEY *pkey, int has_private, char *err, size_t errlen) {
    int kind = kind_of(pkey);
    if (!kind) {
        snprintf(err, errlen, "unsupported key: RSA of 2048 bits or more, EC P-256 or Ed25519 expected");
        EVP_PKEY_free(pkey);
        return NULL;
    }
    mc_sigkey_t *k = calloc(1, sizeof *k);
    if (!k) {
        snprintf(err, errlen, "out of memory");
        EVP_PKEY_free(pkey);
        return NULL;
    }
    k->pkey = pkey;
    k->kind = kind;
    k->has_private = has_private;
    return k;
}

mc_sigkey_t *mc_sigkey_from_pem(const char *pem, size_t len, int private_key, char *err, size_t errlen) {
    ERR_clear_error();
    if (len > 1 << 20) {
        snprintf(err, errlen, "the key is over 1 MiB");
        return NULL;
    }
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    if (!b) {
        mc_openssl_error(err, errlen, "reading the key");
        return NULL;
    }
    EVP_PKEY *pkey = private_key ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
    BIO_free(b);
    if (!pkey) {
        mc_openssl_error(err, errlen, private_key ? "not a PEM private key" : "not a PEM public key");
        return NULL;
    }
    return wrap(pkey, private_key, err, errlen);
}

mc_sigkey_t *mc_sigkey_generate(int kind, char *err, size_t errlen) {
    ERR_clear_error();
    EVP_PKEY *pkey = NULL;
    switch (kind) {
    case MC_SIGKEY_RSA: pkey = EVP_RSA_gen(2048); break;
    case MC_SIGKEY_P256: pkey = EVP_EC_gen("P-256"); break;
    case MC_SIGKEY_ED25519: pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"); break;
    default: snprintf(err, errlen, "unknown key kind %d", kind); return NULL;
    }
    if (!pkey) {
        mc_openssl_error(err, errlen, "generating a key");
        return NULL;
    }
    return wrap(pkey, 1, err, errlen);
}

void mc_sigkey_free(mc_sigkey_t *k) {
    if (!k) return;
    EVP_PKEY_free(k->pkey);
    free(k);
}

int mc_sigkey_kind(const mc_sigkey_t *k) { return k->kind; }
int mc_sigkey_has_private(const mc_sigkey_t *k) { return k->has_private; }

char *mc_sigkey_pem(const mc_sigkey_t *k, int private_key) {
    if (private_key && !k->has_private) return NULL;
    BIO *b = BIO_new(BIO_s_mem());
    if (!b) return NULL;
    int ok = private_key ? PEM_write_bio_PrivateKey(b, k->pkey, NULL, NULL, 0, NULL, NULL) : PEM_write_bio_PUBKEY(b, k->pkey);
    char *out = ok == 1 ? mc_pem_of_bio(b) : NULL;
    BIO_free(b);
    ERR_clear_error();
    return out;
}

void mc_sigkey_free_pem(char *pem) { free(pem); }

int mc_sigkey_fingerprint(const mc_sigkey_t *k, uint8_t out[32]) {
    unsigned char *der = NULL;
    int n = i2d_PUBKEY(k->pkey, &der);
    if (n <= 0) {
        ERR_clear_error();
        return -1;
    }
    SHA256(der, (size_t)n, out);
    OPENSSL_free(der);
    return 0;
}

/* DER ECDSA-Sig-Value -> r||s, each left-padded to 32 bytes. */
static int der_to_raw(const unsigned char *der, size_t len, uint8_t *raw) {
    const unsigned char *p = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)len);
    if (!sig) return -1;
    const BIGNUM *r, *s;
    ECDSA_SIG_get0(sig, &r, &s);
    int ok = BN_bn2binpad(r, raw, 32) == 32 && BN_bn2binpad(s, raw + 32, 32) == 32;
    ECDSA_SIG_free(sig);
    return ok ? 0 : -1;
}

/* r||s -> DER; returns the DER's length (malloc'd in *der), or -1. */
static int raw_to_der(const uint8_t *raw, unsigned char **der) {
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, 32, NULL), *s = BN_bin2bn(raw + 32, 32, NULL);
    if (!sig || !r || !s || ECDSA_SIG_set0(sig, r, s) != 1) {
        ECDSA_SIG_free(sig);
        BN_free(r);
        BN_free(s);
        return -1;
    }
    *der = NULL;
    int n = i2d_ECDSA_SIG(sig, der);
    ECDSA_SIG_free(sig);
    return n;
}

long mc_sigkey_sign(const mc_sigkey_t *k, const uint8_t *data, size_t len, uint8_t *sig, size_t cap) {
    if (!k->has_private) return -1;
    ERR_clear_error();
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) return -1;
    const EVP_MD *md = k->kind == MC_SIGKEY_ED25519 ? NULL : EVP_sha256();
    long result = -1;
    size_t n = 0;
    unsigned char *buf = NULL;
    if (EVP_DigestSignInit(ctx, NULL, md, NULL, k->pkey) != 1) goto done;
    if (EVP_DigestSign(ctx, NULL, &n, data, len) != 1) goto done;
    buf = malloc(n);
    if (!buf || EVP_DigestSign(ctx, buf, &n, data, len) != 1) goto done;
    if (k->kind == MC_SIGKEY_P256) {
        if (cap < 64 || der_to_raw(buf, n, sig) != 0) goto done;
        result = 64;
    } else {
        if (n > cap) goto done;
        memcpy(sig, buf, n);
        result = (long)n;
    }
done:
    free(buf);
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return result;
}

int mc_sigkey_verify(const mc_sigkey_t *k, const uint8_t *data, size_t len, const uint8_t *sig, size_t siglen) {
    unsigned char *der = NULL;
    const unsigned char *checked = sig;
    size_t checked_len = siglen;
    if (k->kind == MC_SIGKEY_P256) {
        if (siglen != 64) return 0;
        int n = raw_to_der(sig, &der);
        if (n <= 0) return 0;
        checked = der;
        checked_len = (size_t)n;
    } else if (k->kind == MC_SIGKEY_ED25519 && siglen != 64) {
        return 0;
    } else if (k->kind == MC_SIGKEY_RSA && siglen != (size_t)EVP_PKEY_get_size(k->pkey)) {
        return 0;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = 0;
    if (ctx && EVP_DigestVerifyInit(ctx, NULL, k->kind == MC_SIGKEY_ED25519 ? NULL : EVP_sha256(), NULL, k->pkey) == 1)
        ok = EVP_DigestVerify(ctx, checked, checked_len, data, len) == 1;
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    ERR_clear_error();
    return ok;
}
