/*
 * TLS on the connection machinery, through OpenSSL memory BIOs (notes/core-design.md 4.x).
 *
 * A context (mc_tls_ctx_t) is an SSL_CTX plus a reference count: a server holds one for its new
 * connections and swaps it on reload (mc_server_set_tls); each connection's SSL holds its own
 * reference, so that connections opened before a reload finish with what they started with.
 *
 * Per connection: ciphertext from the socket goes into the read BIO; the handshake runs until it
 * is done; then every SSL_read chunk goes to the protocol feed (sniff, HTTP/1, HTTP/2) exactly as
 * plaintext bytes would. Output: the protocols append plaintext to c->out as ever; mc_tls_encrypt
 * turns it into records in t->wire, which the flush writes. The write BIO is drained after every
 * SSL call (tickets, alerts, key updates).
 *
 * Session tickets use keys the framework manages (one set per process, rotated every 12 hours,
 * the previous key still accepted), so a reload does not end resumption. No 0-RTT.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "internal.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MC_TLS_RBIO_MAX (256 * 1024) /* ciphertext waiting to be read; more is a broken peer */
#define MC_TLS_SESSIONS 64            /* client: sessions kept for resumption, per context */

/* A client's session for one target (address, SNI, expected identity), for resumption. */
typedef struct cached_session {
    char *key;
    SSL_SESSION *session;
    uint64_t used;
} cached_session_t;

struct mc_tls_ctx {
    SSL_CTX *ssl;
    atomic_uint refs;
    bool server;
    /* client only: the session cache, shared by the loops */
    pthread_mutex_t mu;
    cached_session_t sessions[MC_TLS_SESSIONS];
    uint64_t clock;
};

/* ---------------------------------------------------------------- errors */

/* The first queued OpenSSL error, as text; the queue is emptied. */
static int new_session(SSL *ssl, SSL_SESSION *session);

static void take_error(char *buf, size_t len, const char *fallback) {
    unsigned long e = ERR_get_error();
    if (e) ERR_error_string_n(e, buf, len);
    else snprintf(buf, len, "%s", fallback);
    ERR_clear_error();
}

/* ---------------------------------------------------------------- session ticket keys */

typedef struct ticket_key {
    uint8_t name[16];
    uint8_t aes[32];
    uint8_t hmac[32];
    time_t created;
    bool set;
} ticket_key_t;

#define MC_TICKET_KEY_LIFETIME (12 * 3600)

static pthread_mutex_t ticket_mu = PTHREAD_MUTEX_INITIALIZER;
static ticket_key_t ticket_keys[2]; /* [0] current (encrypts), [1] previous (still decrypts) */

static int new_ticket_key(ticket_key_t *k) {
    if (RAND_bytes(k->name, sizeof k->name) != 1 || RAND_bytes(k->aes, sizeof k->aes) != 1 ||
        RAND_bytes(k->hmac, sizeof k->hmac) != 1)
        return -1;
    k->created = time(NULL);
    k->set = true;
    return 0;
}

static int set_mac_key(EVP_MAC_CTX *mac, uint8_t *key) {
    OSSL_PARAM params[3];
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, 32);
    params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[2] = OSSL_PARAM_construct_end();
    return EVP_MAC_CTX_set_params(mac, params) == 1 ? 0 : -1;
}

/* OpenSSL's ticket key callback: 1 = done, 2 = decrypted with an old key (issue a new ticket),
 * 0 = unknown key (full handshake), -1 = error. */
static int ticket_cb(SSL *s, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cipher, EVP_MAC_CTX *mac,
                     int enc) {
    (void)s;
    ticket_key_t key;
    int rc = 1;
    pthread_mutex_lock(&ticket_mu);
    if (enc) {
        if (!ticket_keys[0].set || time(NULL) - ticket_keys[0].created > MC_TICKET_KEY_LIFETIME) {
            ticket_key_t fresh;
            if (new_ticket_key(&fresh) != 0) {
                pthread_mutex_unlock(&ticket_mu);
                return -1;
            }
            ticket_keys[1] = ticket_keys[0];
            ticket_keys[0] = fresh;
        }
        key = ticket_keys[0];
    } else {
        if (ticket_keys[0].set && memcmp(name, ticket_keys[0].name, 16) == 0) {
            key = ticket_keys[0];
        } else if (ticket_keys[1].set && memcmp(name, ticket_keys[1].name, 16) == 0) {
            key = ticket_keys[1];
            rc = 2;
        } else {
            pthread_mutex_unlock(&ticket_mu);
            return 0;
        }
    }
    pthread_mutex_unlock(&ticket_mu);
    int ok;
    if (enc) {
        memcpy(name, key.name, 16);
        ok = RAND_bytes(iv, 16) == 1 && EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), NULL, key.aes, iv) == 1;
    } else {
        ok = EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), NULL, key.aes, iv) == 1;
    }
    ok = ok && set_mac_key(mac, key.hmac) == 0;
    OPENSSL_cleanse(&key, sizeof key);
    return ok ? rc : -1;
}

/* ---------------------------------------------------------------- contexts */


/* Server preference: h2, then http/1.1; a client offering neither goes on without ALPN. */
static int alpn_select(SSL *s, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
    (void)s;
    (void)arg;
    static const struct { const char *name; unsigned char len; } prefs[] = {{"h2", 2}, {"http/1.1", 8}};
    for (size_t p = 0; p < 2; p++) {
        for (unsigned int i = 0; i < inlen;) {
            unsigned char len = in[i];
            if (i + 1u + len > inlen) break;
            if (len == prefs[p].len && memcmp(in + i + 1, prefs[p].name, len) == 0) {
                *out = in + i + 1;
                *outlen = len;
                return SSL_TLSEXT_ERR_OK;
            }
            i += 1u + len;
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static BIO *mem_bio(const char *p, size_t n) { return BIO_new_mem_buf(p, (int)n); }

/* Writes "what: OpenSSL's reason (or fallback)" to err; returns -1. */
static int openssl_failure(char *err, size_t errlen, const char *what, const char *fallback) {
    char why[200];
    take_error(why, sizeof why, fallback);
    snprintf(err, errlen, "%s: %s", what, why);
    return -1;
}

static int load_chain(SSL_CTX *ctx, const mc_tls_config_t *cfg, char *err, size_t errlen) {
    BIO *b = mem_bio(cfg->cert_pem, cfg->cert_len);
    X509 *leaf = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    if (!leaf) {
        BIO_free(b);
        return openssl_failure(err, errlen, "cannot read the certificate (PEM)", "no certificate");
    }
    int ok = SSL_CTX_use_certificate(ctx, leaf) == 1;
    X509_free(leaf);
    SSL_CTX_clear_chain_certs(ctx);
    X509 *extra;
    while (ok && (extra = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) {
            X509_free(extra);
            ok = false;
        }
    }
    BIO_free(b);
    ERR_clear_error(); /* the end of the PEM stream */
    if (!ok) {
        snprintf(err, errlen, "cannot use the certificate chain");
        return -1;
    }
    b = mem_bio(cfg->key_pem, cfg->key_len);
    EVP_PKEY *key = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!key) return openssl_failure(err, errlen, "cannot read the private key (PEM)", "no key");
    ok = SSL_CTX_use_PrivateKey(ctx, key) == 1 && SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(key);
    if (!ok) return openssl_failure(err, errlen, "the private key does not match the certificate", "mismatch");
    return 0;
}

static int load_trust(SSL_CTX *ctx, const mc_tls_config_t *cfg, char *err, size_t errlen) {
    if (!cfg->ca_pem || !cfg->ca_len) {
        if (cfg->is_server) return 0;
        if (SSL_CTX_set_default_verify_paths(ctx) != 1) ERR_clear_error();
        return 0;
    }
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    BIO *b = mem_bio(cfg->ca_pem, cfg->ca_len);
    int n = 0;
    X509 *x;
    while (b && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (X509_STORE_add_cert(store, x) == 1) n++;
        X509_free(x);
    }
    BIO_free(b);
    ERR_clear_error();
    if (n == 0) {
        snprintf(err, errlen, "the CA bundle holds no certificate");
        return -1;
    }
    return 0;
}

/* OpenSSL frees its global state from an atexit handler unless told not to. A process whose
 * event loop threads still hold TLS connections when main returns (a command that watched etcd
 * over TLS, say) would then have a loop thread use freed state while exit() runs: a crash at
 * exit. The first initialisation decides, so it is made before main, with the handler off; the
 * state lives until the process is gone, which is what the kernel frees anyway. */
__attribute__((constructor)) static void mc_tls_init_without_atexit(void) {
    OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL);
}

void mc_tls_config_init(mc_tls_config_t *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->min_version = 13;
    cfg->client_auth = MC_TLS_CLIENT_AUTH_REQUIRE;
}

mc_tls_ctx_t *mc_tls_ctx_new(const mc_tls_config_t *cfg, char *err, size_t errlen) {
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(cfg->is_server ? TLS_server_method() : TLS_client_method());
    mc_tls_ctx_t *t = calloc(1, sizeof *t);
    if (!ctx || !t) {
        SSL_CTX_free(ctx);
        free(t);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->ssl = ctx;
    t->server = cfg->is_server;
    atomic_init(&t->refs, 1);
    pthread_mutex_init(&t->mu, NULL);
    SSL_CTX_set_min_proto_version(ctx, cfg->min_version == 12 ? TLS1_2_VERSION : TLS1_3_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION);
    if (SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384") != 1) ERR_clear_error();
    bool have_cert = cfg->cert_pem && cfg->cert_len;
    if (cfg->is_server && !have_cert) {
        snprintf(err, errlen, "a TLS server needs a certificate and a private key");
        goto fail;
    }
    if (have_cert && load_chain(ctx, cfg, err, errlen) != 0) goto fail;
    if (load_trust(ctx, cfg, err, errlen) != 0) goto fail;
    if (cfg->is_server) {
        SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
        SSL_CTX_set_num_tickets(ctx, 1);
        SSL_CTX_set_max_early_data(ctx, 0);
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
        /* Resumption may only skip what this trust configuration would have checked: the context
         * id is a digest of the CA bundle and the client-auth mode. */
        unsigned char sid[SHA256_DIGEST_LENGTH];
        unsigned char mode = (unsigned char)cfg->client_auth;
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        unsigned int sidlen = 0;
        bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 && EVP_DigestUpdate(md, &mode, 1) == 1 &&
                  (!cfg->ca_len || EVP_DigestUpdate(md, cfg->ca_pem, cfg->ca_len) == 1) &&
                  EVP_DigestFinal_ex(md, sid, &sidlen) == 1;
        EVP_MD_CTX_free(md);
        if (!ok || SSL_CTX_set_session_id_context(ctx, sid, sidlen > 32 ? 32 : sidlen) != 1) {
            snprintf(err, errlen, "cannot set the session id context");
            goto fail;
        }
        if (cfg->client_auth != MC_TLS_CLIENT_AUTH_NONE) {
            if (!cfg->ca_len) {
                snprintf(err, errlen, "verifying client certificates needs a CA bundle");
                goto fail;
            }
            int mode_flags = SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE;
            if (cfg->client_auth == MC_TLS_CLIENT_AUTH_REQUIRE) mode_flags |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
            SSL_CTX_set_verify(ctx, mode_flags, NULL);
            SSL_CTX_set_verify_depth(ctx, 8);
        }
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_verify_depth(ctx, 8);
        /* TLS 1.3 tickets arrive after the handshake: kept per target by new_session */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, new_session);
    }
    ERR_clear_error();
    return t;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    pthread_mutex_destroy(&t->mu);
    free(t);
    return NULL;
}

void mc_tls_ctx_retain(mc_tls_ctx_t *t) { atomic_fetch_add(&t->refs, 1); }

void mc_tls_ctx_free(mc_tls_ctx_t *t) {
    if (!t || atomic_fetch_sub(&t->refs, 1) != 1) return;
    for (size_t i = 0; i < MC_TLS_SESSIONS; i++) {
        free(t->sessions[i].key);
        SSL_SESSION_free(t->sessions[i].session);
    }
    pthread_mutex_destroy(&t->mu);
    SSL_CTX_free(t->ssl);
    free(t);
}

/* ---------------------------------------------------------------- connections */

struct mc_tls_conn {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    mc_tls_ctx_t *ctx;
    mc_buf_t wire;    /* records waiting for the socket */
    bool server;
    bool done;        /* handshake finished (and, on a client, the server's identity checked) */
    bool h2;          /* client: HTTP/2 (ALPN h2 required) */
    bool failed;
    bool shutdown_sent;
    bool got_bytes;
    uint8_t first_byte;
    char *identity;
    char *chain;      /* PEM, made on first request */
    size_t chain_len;
    char *expected;   /* client: the identity the server must present */
    char *session_key; /* client: where its session is cached for resumption */
    char error[256];
};

/* OpenSSL hands a client a new session (a TLS 1.3 ticket): keep a copy for the next connection
 * to the same target, replacing the least recently used entry. A copy, because OpenSSL marks the
 * connection's own session not resumable when that connection ends without close_notify. */
static int new_session(SSL *ssl, SSL_SESSION *offered) {
    mc_conn_t *c = SSL_get_app_data(ssl);
    mc_tls_conn_t *t = c ? c->tls : NULL;
    if (!t || !t->session_key || !SSL_SESSION_is_resumable(offered)) return 0;
    char *key = strdup(t->session_key);
    SSL_SESSION *session = key ? SSL_SESSION_dup(offered) : NULL;
    if (!session) {
        free(key);
        return 0;
    }
    mc_tls_ctx_t *ctx = t->ctx;
    pthread_mutex_lock(&ctx->mu);
    cached_session_t *slot = NULL;
    for (size_t i = 0; i < MC_TLS_SESSIONS && !slot; i++)
        if (ctx->sessions[i].key && strcmp(ctx->sessions[i].key, key) == 0) slot = &ctx->sessions[i];
    for (size_t i = 0; i < MC_TLS_SESSIONS && !slot; i++)
        if (!ctx->sessions[i].key) slot = &ctx->sessions[i];
    if (!slot) {
        slot = &ctx->sessions[0];
        for (size_t i = 1; i < MC_TLS_SESSIONS; i++)
            if (ctx->sessions[i].used < slot->used) slot = &ctx->sessions[i];
    }
    char *old_key = slot->key;
    SSL_SESSION *old = slot->session;
    slot->key = key;
    slot->session = session;
    slot->used = ++ctx->clock;
    pthread_mutex_unlock(&ctx->mu);
    free(old_key);
    SSL_SESSION_free(old);
    return 0; /* OpenSSL keeps and drops its own reference */
}

/* Offers the cached session of this target, if any. */
static void resume(mc_tls_conn_t *t) {
    mc_tls_ctx_t *ctx = t->ctx;
    pthread_mutex_lock(&ctx->mu);
    for (size_t i = 0; i < MC_TLS_SESSIONS; i++) {
        if (ctx->sessions[i].key && strcmp(ctx->sessions[i].key, t->session_key) == 0) {
            SSL_set_session(t->ssl, ctx->sessions[i].session); /* takes its own reference */
            ctx->sessions[i].used = ++ctx->clock;
            break;
        }
    }
    pthread_mutex_unlock(&ctx->mu);
    ERR_clear_error();
}


int mc_tls_conn_start(mc_conn_t *c, mc_tls_ctx_t *ctx, const char *server_name, const char *expected_identity) {
    mc_tls_conn_t *t = calloc(1, sizeof *t);
    if (!t) return -1;
    ERR_clear_error();
    t->ssl = SSL_new(ctx->ssl);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) goto fail;
    BIO_set_mem_eof_return(t->rbio, -1);
    BIO_set_mem_eof_return(t->wbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio); /* the SSL owns both from here */
    t->server = ctx->server;
    t->ctx = ctx;
    mc_tls_ctx_retain(ctx);
    c->tls = t;
    c->tx = &mc_tls_transport;
    if (ctx->server) {
        SSL_set_accept_state(t->ssl);
        return 0;
    }
    SSL_set_connect_state(t->ssl);
    /* HTTP/2 clients ask for h2 and insist on it; a byte-stream connection names no protocol */
    t->h2 = c->ops == &mc_h2_client_proto;
    if (t->h2 && SSL_set_alpn_protos(t->ssl, (const unsigned char *)"\x02h2", 3) != 0) return -1;
    if (server_name && server_name[0]) {
        /* SNI only for names (RFC 6066 forbids addresses) */
        ASN1_OCTET_STRING *ip = a2i_IPADDRESS(server_name);
        bool is_ip = ip != NULL;
        ASN1_OCTET_STRING_free(ip);
        if (!is_ip) SSL_set_tlsext_host_name(t->ssl, server_name);
        /* Without an expected identity, the certificate must name the host we dialled. */
        if (!expected_identity || !expected_identity[0]) {
            int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), server_name)
                           : SSL_set1_host(t->ssl, server_name);
            if (ok != 1) return -1;
        }
    }
    if (expected_identity && expected_identity[0] && !(t->expected = strdup(expected_identity))) return -1;
    SSL_set_app_data(t->ssl, c);
    char key[700];
    snprintf(key, sizeof key, "%s:%u|%s|%s", c->client ? c->client->host : "", c->client ? (unsigned)c->client->port : 0u,
             server_name ? server_name : "", t->expected ? t->expected : "");
    if (!(t->session_key = strdup(key))) return -1;
    resume(t);
    ERR_clear_error();
    return 0;
fail:
    if (t->ssl) SSL_free(t->ssl);
    else {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
    }
    free(t);
    ERR_clear_error();
    return -1;
}

void mc_tls_conn_free(mc_conn_t *c) {
    mc_tls_conn_t *t = c->tls;
    if (!t) return;
    SSL_free(t->ssl);
    mc_tls_ctx_free(t->ctx);
    mc_buf_free(&t->wire);
    free(t->identity);
    free(t->chain);
    free(t->expected);
    free(t->session_key);
    free(t);
    c->tls = NULL;
    c->tx = &mc_plain_transport;
}

/* Moves whatever OpenSSL wrote (records, alerts, tickets) to the wire buffer. */
static int drain(mc_conn_t *c) {
    mc_tls_conn_t *t = c->tls;
    size_t pending = BIO_ctrl_pending(t->wbio);
    if (!pending) return 0;
    if (mc_buf_reserve(&t->wire, pending) != 0) return -1;
    int n = BIO_read(t->wbio, t->wire.data + t->wire.len, (int)pending);
    if (n > 0) t->wire.len += (size_t)n;
    mc_loop_mark_dirty(c->loop, c);
    return 0;
}

/* The peer's identity: its spiffe:// URI SAN if it has one, else its subject CN. */
char *mc_tls_identity_of(X509 *x) {
    char *out = NULL;
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names) && !out; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        if (g->type != GEN_URI) continue;
        const unsigned char *p = ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
        int len = ASN1_STRING_length(g->d.uniformResourceIdentifier);
        if (len <= 9 || strncasecmp((const char *)p, "spiffe://", 9) != 0 || memchr(p, 0, (size_t)len)) continue;
        out = strndup((const char *)p, (size_t)len);
    }
    GENERAL_NAMES_free(names);
    if (out) return out;
    X509_NAME *subject = X509_get_subject_name(x);
    int idx = subject ? X509_NAME_get_index_by_NID(subject, NID_commonName, -1) : -1;
    if (idx < 0) return NULL;
    unsigned char *utf8 = NULL;
    int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx)));
    if (len > 0 && !memchr(utf8, 0, (size_t)len)) out = strndup((const char *)utf8, (size_t)len);
    OPENSSL_free(utf8);
    return out;
}

/* Why the handshake failed, in words a person can act on. */
static void describe_failure(mc_tls_conn_t *t, const char *fallback) {
    long v = SSL_get_verify_result(t->ssl);
    char why[200];
    take_error(why, sizeof why, fallback);
    /* "error:0A000086:SSL routines::certificate verify failed" -> the reason part */
    const char *reason = strrchr(why, ':');
    reason = reason && reason[1] ? reason + 1 : why;
    if (v != X509_V_OK && strstr(reason, "verify failed"))
        snprintf(t->error, sizeof t->error, "%s: %s", reason, X509_verify_cert_error_string(v));
    else if (!t->server && !t->done && v == X509_V_OK && strstr(reason, "alert"))
        snprintf(t->error, sizeof t->error, "the server refused the handshake (%s)", reason);
    else
        snprintf(t->error, sizeof t->error, "%s", reason);
}

static void fail(mc_conn_t *c, const char *fallback) {
    mc_tls_conn_t *t = c->tls;
    if (!t->error[0]) describe_failure(t, fallback);
    t->failed = true;
    drain(c); /* an alert for the peer, if OpenSSL made one */
}

/* A plaintext HTTP/1 request on a TLS port: say so in plain HTTP, then close. */
static bool looks_like_http(uint8_t b) { return b >= 'A' && b <= 'Z'; }

static int handshake_done(mc_conn_t *c) {
    mc_tls_conn_t *t = c->tls;
    X509 *peer = SSL_get0_peer_certificate(t->ssl);
    if (peer && SSL_get_verify_result(t->ssl) == X509_V_OK) t->identity = mc_tls_identity_of(peer);
    if (t->server) {
        t->done = true;
        return 0;
    }
    const unsigned char *alpn = NULL;
    unsigned int alpn_len = 0;
    SSL_get0_alpn_selected(t->ssl, &alpn, &alpn_len);
    if (t->h2 && (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0)) {
        snprintf(t->error, sizeof t->error, "the server did not negotiate HTTP/2 (ALPN h2)");
        return -1;
    }
    if (t->expected && (!t->identity || strcmp(t->identity, t->expected) != 0)) {
        snprintf(t->error, sizeof t->error, "the server presented identity '%s', expected '%s'",
                 t->identity ? t->identity : "(none)", t->expected);
        return -1;
    }
    t->done = true;
    return 0;
}

/* Ciphertext in; handshake; plaintext to the protocol. 0, 1 on the peer's close_notify, 2 when
 * the handshake failed (its alert or a plain 400 waits in the wire buffer), -1 to close now. */
static int tls_receive(mc_conn_t *c, const uint8_t *p, size_t n) {
    mc_tls_conn_t *t = c->tls;
    if (t->failed) return -1;
    if (!t->got_bytes && n) {
        t->got_bytes = true;
        t->first_byte = p[0];
    }
    if (BIO_ctrl_pending(t->rbio) + n > MC_TLS_RBIO_MAX || BIO_write(t->rbio, p, (int)n) != (int)n) {
        snprintf(t->error, sizeof t->error, "too much unread TLS input");
        t->failed = true;
        return -1;
    }
    if (!t->done) {
        ERR_clear_error();
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            int e = SSL_get_error(t->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return drain(c);
            if (t->server && looks_like_http(t->first_byte)) {
                ERR_clear_error();
                snprintf(t->error, sizeof t->error, "a plaintext HTTP request on a TLS port");
                static const char answer[] =
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                    "Content-Length: 40\r\n\r\nthis port speaks TLS only: use https://\n";
                t->failed = true;
                if (mc_buf_append(&t->wire, answer, sizeof answer - 1) != 0) return -1;
                mc_loop_mark_dirty(c->loop, c);
                return 2;
            }
            fail(c, "handshake failed");
            return 2;
        }
        if (drain(c) != 0) return -1;
        if (handshake_done(c) != 0) {
            /* the server learns why from a close_notify-less end; our side says it clearly */
            t->failed = true;
            return 2;
        }
        if (!t->server) mc_client_tls_handshaken(c);
    }
    uint8_t *buf = c->loop->readbuf; /* the ciphertext is in the BIO: the buffer is free */
    while (!mc_conn_closed(c)) {
        size_t got = 0;
        ERR_clear_error();
        int r = SSL_read_ex(t->ssl, buf, MC_READ_BUFFER_SIZE, &got);
        if (r == 1) {
            /* records still to decrypt (whole or not) hold the answers back for one write */
            c->tx_follows = SSL_has_pending(t->ssl) || BIO_ctrl_pending(t->rbio) > 0;
            int rc = c->ops->feed(c, buf, got);
            c->tx_follows = false;
            if (rc != 0) return -1;
            continue;
        }
        int e = SSL_get_error(t->ssl, r);
        if (drain(c) != 0) return -1;
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
        if (e == SSL_ERROR_ZERO_RETURN) return 1; /* close_notify: the peer's EOF */
        fail(c, "TLS read failed");
        return -1;
    }
    return drain(c);
}

int mc_tls_start_handshake(mc_conn_t *c) {
    mc_tls_conn_t *t = c->tls;
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    int e = SSL_get_error(t->ssl, r);
    if (r != 1 && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        fail(c, "cannot start the handshake");
        return -1;
    }
    return drain(c);
}

/* Encrypted bytes the wire buffer may hold before plaintext waits in c->out: the socket's pace
 * then reaches the producers through c->out's own marks (mc_h2_pump, the stream marks). */
#define MC_TLS_WIRE_HIGH (256 * 1024)

/* Encrypts c->out into the wire buffer once the handshake is done, up to the wire buffer's
 * mark; *wire is the records to write. 1 if plaintext is left for later, 0 if not, -1 on failure. */
static int tls_seal(mc_conn_t *c, mc_buf_t **wire) {
    mc_tls_conn_t *t = c->tls;
    *wire = &t->wire;
    /* a write that failed earlier (an early write's, which cannot close the connection there)
     * leaves plaintext no record will carry: the flush closes */
    if (t->failed && c->out.len) return -1;
    if (!t->done || t->failed || !c->out.len) return 0;
    size_t off = 0;
    while (off < c->out.len && t->wire.len < MC_TLS_WIRE_HIGH) {
        size_t chunk = c->out.len - off, w = 0;
        if (chunk > 16384) chunk = 16384;
        ERR_clear_error();
        if (SSL_write_ex(t->ssl, c->out.data + off, chunk, &w) != 1) {
            fail(c, "TLS write failed");
            return -1;
        }
        off += w;
        if (drain(c) != 0) return -1;
    }
    mc_buf_consume(&c->out, off);
    return c->out.len ? 1 : 0; /* 1: plaintext waits for the wire buffer to drain */
}

/* close_notify before an orderly close; returns true if something was queued. */
static bool tls_finish(mc_conn_t *c) {
    mc_tls_conn_t *t = c->tls;
    if (!t->done || t->failed || t->shutdown_sent) return false;
    t->shutdown_sent = true;
    ERR_clear_error();
    SSL_shutdown(t->ssl);
    ERR_clear_error();
    drain(c);
    return t->wire.len > 0;
}

static size_t tls_held(const mc_conn_t *c) { return c->tls->wire.len; }

const mc_transport_ops_t mc_tls_transport = {
    .receive = tls_receive,
    .seal = tls_seal,
    .finish = tls_finish,
    .held = tls_held,
};

bool mc_tls_failed(const mc_conn_t *c) { return c->tls && c->tls->failed; }
bool mc_tls_ready(const mc_conn_t *c) { return c->tls && c->tls->done; }
const char *mc_tls_error(const mc_conn_t *c) { return c->tls ? c->tls->error : ""; }

const char *mc_tls_peer_identity(mc_conn_t *c) { return c->tls ? c->tls->identity : NULL; }

const char *mc_tls_peer_chain(mc_conn_t *c, size_t *len) {
    mc_tls_conn_t *t = c->tls;
    *len = 0;
    if (!t || !t->done) return NULL;
    if (!t->chain) {
        STACK_OF(X509) *chain = SSL_get0_verified_chain(t->ssl);
        X509 *leaf = SSL_get0_peer_certificate(t->ssl);
        if (!leaf) return NULL;
        BIO *b = BIO_new(BIO_s_mem());
        if (!b) return NULL;
        bool ok = true;
        if (chain && sk_X509_num(chain) > 0) {
            for (int i = 0; i < sk_X509_num(chain) && ok; i++) ok = PEM_write_bio_X509(b, sk_X509_value(chain, i)) == 1;
        } else {
            ok = PEM_write_bio_X509(b, leaf) == 1;
        }
        char *data = NULL;
        long n = BIO_get_mem_data(b, &data);
        if (ok && n > 0 && (t->chain = malloc((size_t)n)) != NULL) {
            memcpy(t->chain, data, (size_t)n);
            t->chain_len = (size_t)n;
        }
        BIO_free(b);
        ERR_clear_error();
    }
    *len = t->chain_len;
    return t->chain;
}

/* ---------------------------------------------------------------- public accessors */

const char *mc_request_peer_identity(const mc_request_t *req) {
    return req->conn ? mc_tls_peer_identity(req->conn) : NULL;
}

const char *mc_request_peer_chain(const mc_request_t *req, size_t *len) {
    if (!req->conn) {
        *len = 0;
        return NULL;
    }
    return mc_tls_peer_chain(req->conn, len);
}

int mc_request_is_tls(const mc_request_t *req) { return req->conn && req->conn->tls ? 1 : 0; }

int mc_request_tls_resumed(const mc_request_t *req) {
    return req->conn && req->conn->tls && SSL_session_reused(req->conn->tls->ssl) ? 1 : 0;
}

const char *mc_client_error(const mc_client_t *client) {
    const mc_conn_t *c = (const mc_conn_t *)client;
    if (c->tls && c->tls->error[0]) return c->tls->error;
    return c->client ? c->client->error : "";
}
