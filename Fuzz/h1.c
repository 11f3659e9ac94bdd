/*
 * Target h1: bytes arriving on a server connection, as the peer sends them (HTTP/1.1, or
 * whatever the first bytes say): pipelined requests, chunked bodies, 100-continue, half-close,
 * limits. The configuration byte (fuzz.h) picks the limits: bits 0-1 the header limit (16 KiB,
 * 64, 300, 2048), bits 2-3 the body limit (4 MiB, 0, 10, 5000), bits 4-5 the requests in flight
 * (16, 1, 2, 3), bit 6 a half-close after the last byte, bit 7 a graceful server shutdown.
 */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_input_t in = fuzz_parse(data, size);
    fuzz_server_connection(&in, NULL, 0);
    return 0;
}
