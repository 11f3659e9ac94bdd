/*
 * Target h2: a server connection that receives the HTTP/2 client preface (24 bytes, split like
 * the rest by the control tape) and then the fuzzer's bytes as frames (SETTINGS first, if the
 * input wants nghttp2 to accept the connection). The configuration byte is h1's (fuzz.h); its
 * bits 4-5 also set SETTINGS_MAX_CONCURRENT_STREAMS (250, 1, 2, 3).
 */
#include "fuzz.h"

static const uint8_t preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_input_t in = fuzz_parse(data, size);
    fuzz_server_connection(&in, preface, sizeof preface - 1);
    return 0;
}
