/*
 * Shared parts of the libFuzzer harnesses (docs/FUZZING.md): one loop with no thread, a fake
 * server around the connection under test, a fake application that answers requests now, after
 * the current read, later, or only when the connection is gone, and a fake kernel for writes.
 *
 * Input layout, common to every target:
 *   byte 0       configuration bits (the target says what they mean)
 *   byte 1       A = length of the application tape, then A bytes: how the application answers
 *                (request i uses byte i mod A; none = answer at once, 200, short body)
 *   next byte    K = length of the control tape, then K bytes: one step each, how many input
 *                bytes arrive in that read and what happens after it (see step() in common.c)
 *   the rest     the bytes the peer sends
 * Inputs shorter than the header are read as if the missing bytes were zero.
 */
#ifndef MC_FUZZ_H
#define MC_FUZZ_H

#include "internal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Crash on a broken invariant, with the line that says which. */
#define CHECK(cond)                                                                                                \
    do {                                                                                                           \
        if (!(cond)) fuzz_fail(__FILE__, __LINE__, #cond);                                                         \
    } while (0)
_Noreturn void fuzz_fail(const char *file, int line, const char *what);

typedef struct {
    const uint8_t *p;
    size_t n;
} fuzz_bytes_t;

typedef struct {
    uint8_t config;
    fuzz_bytes_t app;     /* application tape */
    fuzz_bytes_t control; /* control tape */
    fuzz_bytes_t data;    /* what the peer sends */
} fuzz_input_t;

fuzz_input_t fuzz_parse(const uint8_t *p, size_t n);

/* The one loop (no thread) and the fake server. fuzz_server starts it anew for one input: the
 * defaults, then the limits of the configuration byte (bits 0-1 header limit, 2-3 body limit,
 * 4-5 requests in flight / concurrent streams), and no connection gone yet. */
mc_loop_t *fuzz_loop(void);
mc_server_t *fuzz_server(uint8_t config);
/* The TLS context the fake server's connections use (the tls target); NULL: plaintext. */
extern mc_tls_ctx_t *fuzz_tls;
mc_server_loop_t *fuzz_server_loop(void);

/* The fake kernel under mc_fuzz_try_write. */
enum { KERNEL_TAKES_ALL, KERNEL_TAKES_NOTHING, KERNEL_TAKES_SOME, KERNEL_FAILS };
extern int fuzz_kernel;
extern size_t fuzz_written; /* bytes the kernel took, for the statistics only */

/* The application: requests it holds, and how it answers them. */
void fuzz_app_reset(fuzz_bytes_t tape);
void fuzz_app_on_request(void *ctx, mc_request_t *r);
void fuzz_app_on_abort(void *ctx, mc_request_t *r);
int fuzz_app_is_stream(void *ctx, mc_request_t *r);
void fuzz_app_on_body(void *ctx, mc_request_t *r, const uint8_t *data, size_t len, int end);
void fuzz_app_on_writable(void *ctx, mc_request_t *r);
void fuzz_app_on_deadline(void *ctx, mc_request_t *r);
void fuzz_deadlines_pass(void);
/* Answers what was due after the current read (the Swift framework's tasks run then). */
void fuzz_app_run_jobs(void);
/* Answers the oldest (which = 0), the newest (1) or every (2) request held. Returns how many. */
size_t fuzz_app_answer(int which);
size_t fuzz_app_held(void);
/* Requests held that belong to a live connection and are not answered. */
size_t fuzz_app_held_live(void);

/* Parts of a loop turn: the flush (uv_prepare), the closing handles (a closed connection is
 * freed and *c set to NULL), and the end of a turn: jobs (uv_check), closing, then the next
 * turn's flush. */
void fuzz_prepare(void);
void fuzz_closing(mc_conn_t **c);
void fuzz_turn(mc_conn_t **c);

/* Runs the loop until every handle closed (bounded); returns false if some did not. */
bool fuzz_run_closes(void);

/* Checks what the core hands to Swift about a request: every pointer inside its buffers. */
void fuzz_check_request(const mc_request_t *r);

/* The peer's bytes: a fixed prefix, then the input's data. */
typedef struct {
    const uint8_t *prefix;
    size_t prefix_len;
    fuzz_bytes_t data;
    size_t off; /* into prefix, then data */
} fuzz_stream_t;

extern const size_t fuzz_chunk_sizes[8];
size_t fuzz_stream_left(const fuzz_stream_t *s);
/* The peer sends nothing past what it has sent. */
void fuzz_stream_end(fuzz_stream_t *s);
/* One read of up to `want` bytes, if the connection is reading (libuv reads only then). */
void fuzz_feed(mc_conn_t *c, fuzz_stream_t *s, size_t want);
/* EOF (or the pending reset), if the peer half-closed, sent everything, and the connection is
 * reading. Returns whether it was delivered. */
bool fuzz_maybe_eof(mc_conn_t *c, fuzz_stream_t *s, bool eof);
/* Forgets the reads of the previous input. */
void fuzz_reset_reads(void);
/* Actions of the poll phase shared by every target (15..23): the fake kernel, the write in
 * flight completing or failing, half-close, a read error. False if `action` is none of them. */
bool fuzz_poll_action(mc_conn_t *c, unsigned action, bool *eof);
/* A control step up to the jobs, in libuv's order: the timer if the action is 21 (timers run
 * first in a libuv turn), the flush, a read of up to `chunk` bytes (0: none) unless the peer
 * half-closed, the poll phase's other events (fuzz_poll_action; a half-close sets *eof and the
 * rest of `st` is never sent), then EOF if it is due. */
void fuzz_step_poll(mc_conn_t *c, fuzz_stream_t *st, bool *eof, unsigned action, size_t chunk);
/* A whole control step of a server connection (*c, NULL once freed): fuzz_step_poll, the jobs
 * (uv_check: the application answers; action 12, 13, 14 answers the oldest, the newest, every
 * request held; 24, 25 shuts the server down, gracefully or not), then the closing handles. */
void fuzz_server_step(mc_conn_t **c, fuzz_stream_t *st, bool *eof, unsigned action, size_t chunk);

/* One server connection fed the input: the whole life of a connection, from accept to free. */
void fuzz_server_connection(const fuzz_input_t *in, const uint8_t *prefix, size_t prefix_len);

/* How the application answers what it holds while a connection drains, one request a turn: the
 * oldest; the oldest but those it answers only once aborted; or none, all left to the close. */
enum { FUZZ_DRAIN_OLDEST, FUZZ_DRAIN_OLDEST_NOT_TILL_ABORT, FUZZ_DRAIN_NONE };
/* The end of a server connection (c, or NULL if it is gone) once its input ran out: the kernel
 * takes everything, the application answers as `answers` says, the peer sends the rest of `st`
 * and then EOF if it half-closed (`eof`, or configuration bit 6; bit 7: graceful shutdown first);
 * then a forced close, the answers to what was aborted, and the checks that nothing is left. */
void fuzz_server_finish(mc_conn_t *c, fuzz_stream_t *st, bool eof, uint8_t config, int answers);

#endif
