/*
 * Development certificates: a CA and service certificates made with OpenSSL's API (no shelling
 * out to the openssl command). P-256 keys; SPIFFE URI, DNS and IP subject alternative names.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"
#include "pemutil.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value) {
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    if (!ext) return -1;
    int ok = X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* "a,b" -> "PREFIX:a,PREFIX:b" appended to out */
static int append_sans(char *out, size_t cap, const char *prefix, const char *list) {
    if (!list || !list[0]) return 0;
    const char *p = list;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len) {
            size_t used = strlen(out);
            int n = snprintf(out + used, cap - used, "%s%s:%.*s", used ? "," : "", prefix, (int)len, p);
            if (n < 0 || (size_t)n >= cap - used) return -1;
        }
        p += len;
        if (*p == ',') p++;
    }
    return 0;
}

int mc_cert_create(const mc_cert_request_t *req, char **cert_pem, char **key_pem, char *err, size_t errlen) {
    *cert_pem = *key_pem = NULL;
    ERR_clear_error();
    int rc = -1;
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509 *issuer = NULL;
    EVP_PKEY *issuer_key = NULL;
    BIO *cb = BIO_new(BIO_s_mem()), *kb = BIO_new(BIO_s_mem());
    if (!key || !x || !cb || !kb) {
        mc_openssl_error(err, errlen, "cannot make a key");
        goto out;
    }
    if (req->issuer_cert_pem) {
        BIO *b = BIO_new_mem_buf(req->issuer_cert_pem, -1);
        issuer = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
        b = req->issuer_key_pem ? BIO_new_mem_buf(req->issuer_key_pem, -1) : NULL;
        issuer_key = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
        if (!issuer || !issuer_key) {
            mc_openssl_error(err, errlen, "cannot read the issuer's certificate and key");
            goto out;
        }
    }
    unsigned char serial[16];
    if (RAND_bytes(serial, sizeof serial) != 1) {
        mc_openssl_error(err, errlen, "no randomness");
        goto out;
    }
    serial[0] &= 0x7f; /* positive */
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    ASN1_INTEGER *sn = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    BN_free(bn);
    int ok = sn && X509_set_serialNumber(x, sn) == 1;
    ASN1_INTEGER_free(sn);
    ok = ok && X509_set_version(x, 2) == 1;
    ok = ok && X509_gmtime_adj(X509_getm_notBefore(x), (long)req->not_before_offset) != NULL;
    ok = ok && X509_gmtime_adj(X509_getm_notAfter(x), (long)req->not_after_offset) != NULL;
    ok = ok && X509_set_pubkey(x, key) == 1;
    X509_NAME *name = X509_get_subject_name(x);
    ok = ok && X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"swift-micro", -1, -1, 0) == 1;
    ok = ok && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                          (const unsigned char *)(req->common_name ? req->common_name : "micro"), -1,
                                          -1, 0) == 1;
    ok = ok && X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) == 1;
    if (!ok) {
        mc_openssl_error(err, errlen, "cannot fill the certificate");
        goto out;
    }
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    char sans[2048] = "";
    if (req->uri_san && req->uri_san[0] && append_sans(sans, sizeof sans, "URI", req->uri_san) != 0) goto toolong;
    if (append_sans(sans, sizeof sans, "DNS", req->dns_sans) != 0) goto toolong;
    if (append_sans(sans, sizeof sans, "IP", req->ip_sans) != 0) goto toolong;
    ok = add_ext(x, &v3, NID_basic_constraints, req->is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE") == 0;
    ok = ok && add_ext(x, &v3, NID_key_usage,
                       req->is_ca ? "critical,keyCertSign,cRLSign,digitalSignature" : "critical,digitalSignature") == 0;
    if (!req->is_ca) ok = ok && add_ext(x, &v3, NID_ext_key_usage, "serverAuth,clientAuth") == 0;
    ok = ok && add_ext(x, &v3, NID_subject_key_identifier, "hash") == 0;
    if (issuer) ok = ok && add_ext(x, &v3, NID_authority_key_identifier, "keyid:always") == 0;
    if (sans[0]) ok = ok && add_ext(x, &v3, NID_subject_alt_name, sans) == 0;
    if (!ok) {
        mc_openssl_error(err, errlen, "cannot add the certificate's extensions");
        goto out;
    }
    if (X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) <= 0) {
        mc_openssl_error(err, errlen, "cannot sign the certificate");
        goto out;
    }
    if (PEM_write_bio_X509(cb, x) != 1 || PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL) != 1) {
        mc_openssl_error(err, errlen, "cannot write PEM");
        goto out;
    }
    *cert_pem = mc_pem_of_bio(cb);
    *key_pem = mc_pem_of_bio(kb);
    if (!*cert_pem || !*key_pem) {
        free(*cert_pem);
        free(*key_pem);
        *cert_pem = *key_pem = NULL;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    rc = 0;
    goto out;
toolong:
    snprintf(err, errlen, "too many subject alternative names");
out:
    BIO_free(cb);
    BIO_free(kb);
    X509_free(x);
    X509_free(issuer);
    EVP_PKEY_free(key);
    EVP_PKEY_free(issuer_key);
    ERR_clear_error();
    return rc;
}

void mc_cert_free(char *pem) { free(pem); }

char *mc_cert_identity(const char *pem, size_t len) {
    BIO *b = BIO_new_mem_buf(pem, (int)len);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    char *id = x ? mc_tls_identity_of(x) : NULL;
    X509_free(x);
    ERR_clear_error();
    return id;
}
