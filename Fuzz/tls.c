/*
 * Target tls: bytes arriving on a TLS server connection (the record path of tls.c in front of
 * the sniff, HTTP/1.1 and HTTP/2 paths): ClientHellos and their mutations, records cut at any
 * point, plaintext HTTP on the TLS port (the plain 400), alerts, EOF mid-handshake. The server
 * context is made once with a throwaway P-256 certificate; bit 0 of the configuration byte asks
 * for client certificates (mutual TLS), bit 6 a half-close after the last byte, bit 7 a graceful
 * server shutdown (the other bits as in h1).
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static mc_tls_ctx_t *contexts[2];

static mc_tls_ctx_t *make_context(int client_auth) {
    mc_cert_request_t req = {.common_name = "fuzz", .uri_san = "spiffe://fuzz.local/service/fuzz",
                             .dns_sans = "localhost", .not_before_offset = -3600, .not_after_offset = 86400};
    char *cert = NULL, *key = NULL, err[256];
    if (mc_cert_create(&req, &cert, &key, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz tls: %s\n", err);
        abort();
    }
    mc_tls_config_t cfg;
    mc_tls_config_init(&cfg);
    cfg.is_server = 1;
    cfg.cert_pem = cert;
    cfg.cert_len = strlen(cert);
    cfg.key_pem = key;
    cfg.key_len = strlen(key);
    cfg.ca_pem = cert; /* trusts itself: enough for the verify path to run */
    cfg.ca_len = strlen(cert);
    cfg.client_auth = client_auth;
    mc_tls_ctx_t *ctx = mc_tls_ctx_new(&cfg, err, sizeof err);
    mc_cert_free(cert);
    mc_cert_free(key);
    if (!ctx) {
        fprintf(stderr, "fuzz tls: %s\n", err);
        abort();
    }
    return ctx;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!contexts[0]) {
        contexts[0] = make_context(MC_TLS_CLIENT_AUTH_NONE);
        contexts[1] = make_context(MC_TLS_CLIENT_AUTH_REQUIRE);
    }
    fuzz_input_t in = fuzz_parse(data, size);
    uint8_t config = in.config;
    in.config &= (uint8_t)~1u; /* bit 0 is ours; the header limit is then 16 KiB or 300 */
    fuzz_tls = contexts[config & 1];
    fuzz_server_connection(&in, NULL, 0);
    fuzz_tls = NULL;
    return 0;
}
