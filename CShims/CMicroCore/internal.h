/* Internal structures of CMicroCore. Not part of the public header. */
#ifndef MC_INTERNAL_H
#define MC_INTERNAL_H

#include "CMicroCore.h"

#include <http_parser.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

/* ASCII lower case without the locale (tolower is a call and a table lookup per byte). */
static inline uint8_t mc_lower(uint8_t c) { return c >= 'A' && c <= 'Z' ? (uint8_t)(c | 0x20) : c; }

/* ---------------------------------------------------------------- byte buffer */

typedef struct mc_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} mc_buf_t;

int mc_buf_reserve(mc_buf_t *b, size_t extra);
int mc_buf_append(mc_buf_t *b, const void *p, size_t n);
int mc_buf_appendf(mc_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* n in decimal, without printf (answers' heads are written per request); returns the length
 * written to out (at least 21 bytes), which is NUL-terminated. */
size_t mc_format_decimal(char *out, uint64_t n);
int mc_buf_append_decimal(mc_buf_t *b, uint64_t n);
void mc_buf_consume(mc_buf_t *b, size_t n);
void mc_buf_free(mc_buf_t *b);
/* Keeps the allocation unless it grew past keep bytes. */
void mc_buf_reset(mc_buf_t *b, size_t keep);


/* ---------------------------------------------------------------- deadlines (wheel.c) */

/* One deadline, part of the object it times (a request): armed while pprev is set. */
typedef struct mc_deadline {
    struct mc_deadline *next;
    struct mc_deadline **pprev; /* what points here (a slot's head or the previous entry); NULL: unarmed */
    uint64_t due;               /* loop time, ms */
} mc_deadline_t;

#define MC_WHEEL_TICK_MS 4      /* a deadline passes at most this late */
#define MC_WHEEL_SLOTS 2048     /* a power of two: one turn of the wheel is 8.2 s */

typedef struct mc_wheel {
    mc_deadline_t **slots;      /* MC_WHEEL_SLOTS list heads, allocated when first armed */
    uint64_t bits[MC_WHEEL_SLOTS / 64]; /* slots that may hold entries (cleared lazily) */
    uint64_t cursor;            /* every tick up to this one is swept */
    size_t count;               /* entries armed */
} mc_wheel_t;

typedef void (*mc_wheel_fire_fn)(mc_deadline_t *d, void *arg);

/* Arms (or re-arms) d to pass at `due` (both times in ms); returns the time of the tick whose
 * sweep will find it, or 0 if the wheel could not be allocated (d stays unarmed). */
uint64_t mc_wheel_arm(mc_wheel_t *w, mc_deadline_t *d, uint64_t due, uint64_t now);
/* Disarms d; nothing if it is not armed. O(1). */
void mc_wheel_cancel(mc_wheel_t *w, mc_deadline_t *d);
/* Hands every entry due at `now` to `fire` (disarmed first; `fire` may arm and cancel entries),
 * then returns mc_wheel_next. */
uint64_t mc_wheel_sweep(mc_wheel_t *w, uint64_t now, mc_wheel_fire_fn fire, void *arg);
/* When the next sweep may find something: the time of the first slot holding entries, 0 if none. */
uint64_t mc_wheel_next(mc_wheel_t *w);
/* Disarms every entry without firing it. */
void mc_wheel_disarm_all(mc_wheel_t *w);
void mc_wheel_free(mc_wheel_t *w);

/* ---------------------------------------------------------------- loops */

typedef struct mc_job {
    mc_job_fn fn;
    void *ctx;
    void *arg;
} mc_job_t;

typedef struct mc_conn mc_conn_t;

#define MC_READ_BUFFER_SIZE (64 * 1024)
#define MC_REQUEST_POOL_MAX 256

struct mc_loop {
    uv_loop_t uv;
    /* Wake-ups from other threads: an eventfd the loop polls (see mc_loop_post for why not
     * uv_async_t); `wakers` counts the posts between leaving mu and their write to it. */
    uv_poll_t wake;
    int wake_fd;
    atomic_uint wakers;
    uv_check_t check;
    uv_idle_t idle;
    uv_prepare_t prepare;
    /* Busy polling (mc_loop_set_busy_poll): for busy_poll_ns after a turn that read from a
     * connection, `spin` (an idle handle) keeps the poll from blocking. `read_this_turn` is set by
     * every connection read, busy polling or not; `last_read` (uv_hrtime) and the spin handle
     * are the prepare phase's. */
    uv_idle_t spin;
    _Atomic uint64_t busy_poll_ns;
    _Atomic uint64_t spin_turns; /* turns inside a window (a stat; some would not have slept anyway) */
    uint64_t last_read;
    bool read_this_turn;
    uv_thread_t thread;
    unsigned index;
    _Atomic(void *) owner; /* mc_loop_set_owner */

    /* Cross-thread queue: producers append under mu; the loop swaps the whole vector. */
    pthread_mutex_t mu;
    mc_job_t *remote;
    size_t remote_len, remote_cap;
    mc_job_t *spare; /* the vector swapped out last time, reused */
    size_t spare_cap;
    bool closed;     /* under mu: no more posts accepted */

    /* Same-thread FIFO (ring). */
    mc_job_t *ring;
    size_t ring_head, ring_len, ring_cap;

    bool stopping;
    atomic_bool joined; /* its thread is gone: requests released now are freed, not pooled */
    atomic_uint nconns;
    mc_conn_t *dirty; /* connections with output to flush this turn */

    uint8_t *readbuf;
    bool readbuf_busy;

    /* cached "Date" header value, refreshed once a second */
    char date[40];
    uint64_t date_sec;

    mc_request_t *request_pool;
    unsigned request_pool_len;

    /* the deadlines of calls on this loop (mc_request_set_deadline), and the one timer that
     * sweeps them; deadline_timer_due is when it is set to fire (0: stopped) */
    mc_wheel_t deadlines;
    uv_timer_t deadline_timer;
    uint64_t deadline_timer_due;
};

int mc_loop_post_local(mc_loop_t *loop, mc_job_fn fn, void *ctx, void *arg);

/* Deadlines past this are taken as this (a wheel entry sits through a turn per 8 s: harmless) */
#define MC_DEADLINE_MAX_MS ((uint64_t)1 << 40)
/* Arms d on the loop's wheel to pass timeout_ms from now (loop thread); -1 if the loop is stopping
 * or out of memory (d stays unarmed). */
int mc_loop_arm_deadline(mc_loop_t *loop, mc_deadline_t *d, uint64_t timeout_ms);
static inline void mc_loop_cancel_deadline(mc_loop_t *loop, mc_deadline_t *d) {
    if (d->pprev) mc_wheel_cancel(&loop->deadlines, d);
}
/* Fires the deadlines due at `now` and sets the timer for the next (the timer; fuzzing). */
void mc_loop_run_deadlines(mc_loop_t *loop, uint64_t now);
/* A request's deadline passed (request.c) */
void mc_request_deadline_passed(mc_deadline_t *d);
const char *mc_loop_date(mc_loop_t *loop);
void mc_loop_mark_dirty(mc_loop_t *loop, mc_conn_t *c);
/* Takes a connection off the flush list (it is closing, and may be freed before the flush). */
void mc_loop_unmark_dirty(mc_loop_t *loop, mc_conn_t *c);

/* ---------------------------------------------------------------- server & connections */

typedef struct mc_server_loop {
    mc_server_t *server;
    mc_loop_t *loop;
    mc_conn_t *conns; /* doubly linked list of live connections on that loop */
    bool shutdown_seen;
    atomic_ullong early_writes; /* written by the loop only; read by mc_server_stats */
} mc_server_loop_t;

struct mc_server {
    mc_server_config_t config;
    mc_server_callbacks_t cb;
    char host[256];
    uint16_t port;
    int fd;
    size_t nloops;
    mc_server_loop_t *loops;

    /* TLS (tls.c): the context new connections take, swapped by mc_server_set_tls */
    pthread_mutex_t tls_mu;
    mc_tls_ctx_t *tls;

    /* listener state, owned by loops[0] */
    uv_poll_t poll;
    uv_timer_t backoff;
    uint64_t backoff_ms;
    bool listening;
    bool polling;
    bool paused_for_cap;
    int listener_handles_open;

    atomic_uint live_conns;
    atomic_ullong accepted;        /* for mc_server_stats */
    atomic_ullong accept_backoffs;
    atomic_bool shutting_down;
    atomic_bool force;
    atomic_bool closed_reported;
    atomic_uint loops_pending; /* loops that have not yet run their shutdown job */
    atomic_bool listener_closed;
};

/* The HTTP/2 client preface (RFC 9113, 3.4), which the server sniffs and checks */
#define MC_H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define MC_H2_PREFACE_LEN 24

enum mc_proto { MC_PROTO_UNKNOWN = 0, MC_PROTO_H1 = 1, MC_PROTO_H2 = 2, MC_PROTO_H2_CLIENT = 3, MC_PROTO_H1_CLIENT = 4, MC_PROTO_TCP = 5 };
/* A request in the client role: a call this side made (HTTP/2 or HTTP/1.1). */
static inline bool mc_proto_is_client(int proto) { return proto >= MC_PROTO_H2_CLIENT; }

/* What conn.c asks of the protocol spoken on a connection. Each protocol is one file with one
 * table (sniffing in conn.c, HTTP/1.1 in h1.c, HTTP/2 server and client in h2.c), and conn.c
 * never asks which protocol it has. */
typedef struct mc_proto_ops {
    int proto; /* MC_PROTO_* */
    /* Plaintext bytes in (from the socket or from TLS); -1: close now. */
    int (*feed)(mc_conn_t *c, const uint8_t *p, size_t n);
    /* NULL, or moves output the protocol produces into c->out before a flush: 1 if it stopped at
     * its cap with more to come, 0 when done, -1 on a fatal error. */
    int (*pump)(mc_conn_t *c);
    /* Reading must pause: the protocol holds as much input (or queued output) as it may. */
    bool (*input_full)(mc_conn_t *c);
    /* Nothing is left to do either way: the connection may end (once its output is out). */
    bool (*done)(mc_conn_t *c);
    /* The peer's end: its EOF (UV_EOF) or a read error. True if the protocol took it (the
     * connection goes on half-closed, or the protocol closed it itself), false to close. */
    bool (*eof)(mc_conn_t *c, ssize_t err);
    /* The request head (or the HTTP/2 preface) did not come within the header timeout. */
    void (*header_timeout)(mc_conn_t *c);
    /* A body or a stream's next message did not come within the read timeout (c->read_since). */
    void (*read_timeout)(mc_conn_t *c);
    /* NULL, or ends the streams stalled past their own deadlines: returns when to look again. */
    uint64_t (*check_streams)(mc_conn_t *c, uint64_t now);
    /* The idle timeout: true if it said goodbye (GOAWAY) and closes after a grace, false to close. */
    bool (*idle)(mc_conn_t *c);
    /* The grace (c->close_at) is over: true if the connection goes on (a final GOAWAY followed a
     * shutdown notice), false to close. */
    bool (*grace_over)(mc_conn_t *c);
    /* The server shuts down gracefully. */
    void (*shutdown)(mc_conn_t *c);
    /* NULL, or told after each flush (output may have drained below a mark). */
    void (*flushed)(mc_conn_t *c);
    void (*free)(mc_conn_t *c);
} mc_proto_ops_t;

extern const mc_proto_ops_t mc_sniff_proto, mc_h1_proto, mc_h2_proto, mc_h2_client_proto, mc_h1_client_proto, mc_tcp_proto;
/* Table entries for what a protocol does not do: answers false, or leaves the EOF to conn.c. */
bool mc_proto_never(mc_conn_t *c);
bool mc_proto_no_eof(mc_conn_t *c, ssize_t err);

/* The byte layer under the protocol: plain TCP (conn.c) or TLS (tls.c), each one table. */
typedef struct mc_transport_ops {
    /* Bytes from the socket; plaintext goes on to c->ops->feed. 0; 1 on the peer's orderly end
     * (close_notify); 2 when a handshake failed (its answer, an alert or a plain 400, waits to be
     * written); -1 to close now. */
    int (*receive)(mc_conn_t *c, const uint8_t *p, size_t n);
    /* Turns c->out into what the socket takes, up to the layer's own high-water mark, and points
     * *wire at it. 1 if plaintext is left for later, 0 if not, -1 on failure. */
    int (*seal)(mc_conn_t *c, mc_buf_t **wire);
    /* Before an orderly close: queues the layer's last words (close_notify); true if any. */
    bool (*finish)(mc_conn_t *c);
    /* Bytes the layer holds for the socket (output pending below the protocol). */
    size_t (*held)(const mc_conn_t *c);
} mc_transport_ops_t;

extern const mc_transport_ops_t mc_plain_transport, mc_tls_transport;

typedef struct mc_client_state {
    mc_client_callbacks_t cb;
    uv_connect_t connect_req;
    uv_getaddrinfo_t resolve;
    char host[256];
    uint16_t port;
    char authority[264]; /* "host:port", the :authority of every call (made once) */
    size_t authority_len;
    size_t max_response_bytes;
    bool connected;
    bool goaway;
    bool resolving;
    bool orphaned; /* handles closed while a lookup ran: freed when the lookup returns */
    bool peer_gone; /* the peer's EOF or reset is waiting in the kernel: take no new call */
    bool seen_bytes; /* the server's first bytes were looked at (mc_client_first_bytes) */
    bool h1_complete; /* HTTP/1.1: the current call's answer was read whole (h1client.c) */
    int32_t h1_calls;  /* HTTP/1.1: calls made on the connection, the id of the latest */
    char error[160]; /* why the connection broke, when the core can tell ("" otherwise) */
    struct mc_tcp_link *link; /* a byte-stream connection's owner side (tcp.c); NULL for HTTP */
} mc_client_state_t;

/* A connection's life, in the only order it can go (mc_conn_enter never moves back). Each state
 * has its deadline (mc_conn_update_timer):
 *  - OPEN: reading and answering (header, read, write and idle timeouts as the protocol needs);
 *  - DRAINING: the server shuts down; requests in flight finish, HTTP/2 sends its GOAWAYs (grace);
 *  - HALF_CLOSED: the peer sent EOF (HTTP/1.1); what it sent before is answered, then it closes;
 *  - ENDING: this side ends the connection (an error, "connection: close", a GOAWAY): nothing more
 *    is read; it closes once its output is out (write timeout), lingering unless the peer is gone;
 *  - LINGERING: the write side is shut and input is dropped until the peer's EOF (2 s at most), so
 *    that our last words are not destroyed by the reset that closing with unread input sends;
 *  - CLOSED: uv_close issued; freed when both handles are.
 * Booleans left on the connection are I/O conditions (writing, read_stopped, h1_paused), not life. */
typedef enum mc_conn_state {
    MC_CONN_OPEN = 0,
    MC_CONN_DRAINING,
    MC_CONN_HALF_CLOSED,
    MC_CONN_ENDING,
    MC_CONN_LINGERING,
    MC_CONN_CLOSED,
} mc_conn_state_t;

struct mc_conn {
    uv_tcp_t tcp; /* first: handle->data is not needed to find the conn */
    uv_timer_t timer;
    mc_server_t *server;
    mc_server_loop_t *sl;
    mc_loop_t *loop;
    mc_conn_t *next, *prev;
    mc_conn_t *dirty_next;
    bool dirty;

    const mc_proto_ops_t *ops;     /* the protocol spoken (mc_sniff_proto until it is known) */
    const mc_transport_ops_t *tx;  /* plain or TLS */
    int handles_open;
    mc_conn_state_t state; /* only ever moves forward (mc_conn_enter) */
    bool read_stopped; /* I/O, not life: reading is off because want_reading says so */

    mc_buf_t in;       /* bytes not yet consumed (sniffing, paused HTTP/1) */
    mc_buf_t out;      /* output queued for the next flush */
    mc_buf_t inflight; /* output handed to uv_write */
    uv_write_t wreq;
    bool writing;
    /* Inside on_read, while the protocol handles the read's bytes; then whether more of them wait
     * behind what it handles now (the protocol's own, or the transport's: TLS records not yet
     * decrypted). With none left, an answer is written at once (mc_conn_write_early). */
    bool reading;
    bool feed_follows;
    bool tx_follows;

    /* Timeouts (mc_conn_update_timer): one timer, armed for the earliest deadline of the state */
    uint64_t write_since;     /* output waiting since (or since the peer last took some); 0 = none */
    uint64_t read_since;      /* HTTP/1.1: a body or stream input has been awaited since; 0 = none */
    uint64_t stream_check_at; /* HTTP/2: when to look for streams stalled in either direction */
    uint64_t close_at;        /* after an idle GOAWAY or a shutdown notice: close (or final GOAWAY) then */
    uint64_t idle_since;      /* nothing in flight since */
    uint64_t linger_until;    /* lingering: stop waiting for the peer's EOF then */
    size_t body_buffered;     /* request body bytes held before handlers take them (budget) */
    size_t body_uncredited;   /* HTTP/2: bytes received past the budget, not yet credited */
    int32_t body_exception;   /* HTTP/2: the one stream credited past the budget (0 = none) */
    uint32_t resets_sent;     /* HTTP/2: RST_STREAM frames this side sent (MadeYouReset budget) */
    uint64_t resets_window_at;

    unsigned active;   /* requests dispatched and not yet answered */
    unsigned streams;  /* HTTP/2 streams open */
    mc_request_t *reqs; /* every live request of this connection (list through rnext/rprev) */
    uint64_t header_deadline; /* 0 = not reading a request head */

    /* HTTP/1 */
    http_parser parser;
    mc_request_t *h1_cur;      /* being parsed */
    mc_request_t *h1_ready;    /* parsed, queued, and handed over by mc_h1_feed once the parser stops */
    mc_request_t *h1_head;     /* FIFO of dispatched requests, answered in order */
    mc_request_t *h1_tail;
    size_t h1_header_bytes;
    int h1_error;              /* status of a core-generated error, 0 = none */
    bool h1_last_was_value;
    bool h1_paused;
    bool h1_not_http;          /* the first line is no HTTP/1.x request line (a broken h2 preface?) */
    bool h1_seen_request;      /* a whole request was read */
    mc_request_t *h1_stream;   /* a go-micro stream owns the connection: each request is a frame */

    /* HTTP/2: a server connection's framing state (h2.c), a client connection's (h2client.c) */
    struct mc_h2s *h2s;
    struct mc_h2c *h2c;
    bool h2_goaway_sent;      /* the final GOAWAY */
    bool h2_notice_sent;      /* a shutdown notice (GOAWAY with the highest id): final one to follow */

    /* client connections only */
    mc_client_state_t *client;

    /* TLS (tls.c); NULL on a plaintext connection */
    struct mc_tls_conn *tls;
};

static inline bool mc_conn_closed(const mc_conn_t *c) { return c->state == MC_CONN_CLOSED; }
/* Moves c on to state s, unless it is already there or further. */
static inline void mc_conn_enter(mc_conn_t *c, mc_conn_state_t s) {
    if (s > c->state) c->state = s;
}

void mc_conn_close(mc_conn_t *c);
/* Output bytes the connection holds: queued, in flight and (TLS) encrypted but not written. */
size_t mc_conn_out_pending(const mc_conn_t *c);
/* Body bytes enter (n > 0) or leave (n < 0) the connection's buffered-body budget. */
void mc_conn_body_held(mc_conn_t *c, mc_request_t *r, ptrdiff_t n);
void mc_conn_start_reading(mc_conn_t *c);
void mc_conn_write(mc_conn_t *c, const void *p, size_t n);
void mc_conn_update_timer(mc_conn_t *c);
/* Whether bytes from the peer wait in the socket, unread, while the connection reads: a deadline
 * that finds them was held up with the loop, not by the peer. */
bool mc_conn_input_waiting(mc_conn_t *c);
void mc_conn_request_done(mc_conn_t *c);
void mc_conn_write_early(mc_conn_t *c);
void mc_server_conn_gone(mc_server_t *s);
void mc_server_retain(mc_server_t *s);
void mc_server_release(mc_server_t *s);

/* ---------------------------------------------------------------- requests */

typedef struct mc_hdr_off {
    uint32_t name_off, name_len, value_off, value_len;
} mc_hdr_off_t;

/* One HTTP message exchange: a server request (HTTP/1.1 message or HTTP/2 stream) with its answer,
 * or a client call with its response. The parts both roles share (the message received, what this
 * side sends, streaming) are fields of their own; what only one role has lives in r->server or
 * r->client, so that every use names its role, and no field has a second meaning in another role
 * (a counter reused as an offset once let a peer read heap memory). */
struct mc_request {
    mc_conn_t *conn;   /* NULL once the connection is gone */
    mc_loop_t *loop;
    mc_request_t *next;  /* HTTP/1 FIFO, or the pool */
    mc_request_t *rnext, *rprev; /* the connection's list of live requests */
    int proto;
    int32_t stream_id; /* HTTP/2 */
    void *user;

    /* ---- the message received (the request on a server, the response on a client) */
    mc_buf_t strings;  /* method, path and field bytes */
    mc_hdr_off_t *hdrs; /* header fields, then trailer fields from trailer_index - 1 on */
    size_t nhdrs, caphdrs;
    size_t trailer_index; /* 1 + index of the first trailer field, 0 if none yet */
    size_t field_bytes;   /* received field bytes as HPACK counts them (name + value + 32) */
    uint32_t method_off, method_len, path_off, path_len;
    mc_buf_t body;
    bool in_field;     /* HTTP/1 parsing: appending to a field name */
    bool in_trailers;  /* the header block is over: fields now are trailers */

    /* ---- what this side sends: the answer's body (server), the request's body (client) */
    mc_buf_t sendq;    /* HTTP/1: the serialized answer; HTTP/2: body bytes from sendq_off on */
    size_t sendq_off;  /* bytes of sendq already framed (never more than sendq.len) */
    mc_buf_t head_block; /* client, HTTP/2: the request's encoded header block until its stream opens */
    uint64_t last_sent; /* loop time the queue last moved (HTTP/2: DATA produced; the write timeout) */
    mc_buf_t trailer_strings; /* trailers to send, serialized (mc_h2_store_trailers) */
    size_t ntrailers;

    /* ---- server role only: a request received and its answer (r->server.…) */
    struct mc_request_server {
        bool dispatched;    /* handed to the application (on_request) */
        bool responded;
        bool aborted;
        bool keep_alive;    /* HTTP/1 */
        bool head;          /* HEAD: no body in the response */
        bool h1_ready;      /* HTTP/1: answered, waiting for the answers before it */
        bool h1_chunked;    /* HTTP/1: its answer is streamed in chunks (its head is written) */
        int core_status;    /* a core-generated error to answer with (408, 413, 431), 0 = none */
        uint64_t last_read; /* loop time of the last bytes of this request (the read timeout) */
        size_t body_held;   /* body bytes counted in the connection's buffered-body budget */
        size_t uncredited;  /* body bytes received but not yet credited to the peer's windows (budget) */
    } server;

    /* ---- client role only: a call made and its response (r->client.…) */
    struct mc_request_client {
        int status;         /* the response's :status (final), 0 until it arrives */
        mc_call_done_fn done;
        void *done_ctx;
        bool sent;          /* its HEADERS frame left: the server may have processed it */
        bool cancelled;
        bool timed_out;     /* its deadline passed (it is cancelled too) */
        bool deadline_graced; /* its deadline found the answer's bytes waiting once: a turn to read them */
        bool too_large;
        bool fields_too_large;
        bool interim;       /* reading the fields of a 1xx answer */
        bool status_seen;   /* HTTP/2: the header block being read had its :status */
        bool head_request;  /* HTTP/2: a HEAD request (its answer has no content) */
        mc_stream_callbacks_t scb; /* client streams */
        bool head_seen;     /* HTTP/1.1 stream: the first answer frame was handed on (on_head) */
        size_t frame_nhdrs, frame_strings; /* HTTP/1.1 stream: where the current frame's fields start */
    } client;

    /* ---- streams (stream.c), both roles: the outbound queue is sendq from sendq_off */
    bool streaming;     /* dispatched at its headers / opened as a stream: body in pieces */
    bool stream_hint;   /* carried a micro-stream header */
    bool head_sent;
    bool out_finished;  /* no more writes: END_STREAM (and trailers) once the queue drains */
    bool deferred;      /* the data source said "nothing yet": resume it on the next write */
    bool want_writable; /* a write found the queue past its mark: say when it drops below */
    bool stream_closed; /* the HTTP/2 stream is gone: nothing more to consume or send */
    bool in_ended;      /* the peer's side of the stream is over (END_STREAM, EOS, EOF) */
    size_t unconsumed;  /* body bytes delivered but not yet credited back to the peer */
    mc_buf_t h1_frame;  /* HTTP/1.1 streams: the status line and headers every answer frame carries */

    /* the caller's deadline (mc_request_set_deadline), armed on the loop's wheel until the call
     * is answered (server) or done (client) */
    mc_deadline_t deadline;

    /* ---- HTTP/2 streams, a server's (h2.c) or a client's (h2client.c): r->h2.… */
    struct mc_request_h2 {
        mc_request_t *hnext;   /* the connection's stream table */
        mc_request_t *qnext;   /* the queue of streams with DATA to send */
        mc_request_t *cnext;   /* the list of closed streams whose requests are yet to be told */
        int64_t send_window;   /* what the peer lets this side send on the stream */
        int64_t recv_window;   /* what the peer may still send on it */
        size_t recv_credit;    /* consumed bytes not yet given back with WINDOW_UPDATE */
        int64_t content_length; /* the request's, -1 if it has none */
        uint64_t data_len;     /* DATA content received */
        uint8_t pseudo;        /* the pseudo-fields seen */
        bool queued;
        bool out_ended;        /* this side's END_STREAM is written */
        uint32_t close_code;   /* client: how the stream closed (an RST_STREAM code; 0 when both sides ended) */
    } h2;
};

/* Header fields of a received message: those before its trailers. */
static inline size_t mc_request_header_fields(const mc_request_t *r) {
    return r->trailer_index ? r->trailer_index - 1 : r->nhdrs;
}
/* Bytes of r's send queue not yet handed on. */
static inline size_t mc_request_sendq_left(const mc_request_t *r) {
    return r->sendq.len > r->sendq_off ? r->sendq.len - r->sendq_off : 0;
}

#define MC_STREAM_HIGH_WATER (64 * 1024)
#define MC_STREAM_LOW_WATER (32 * 1024)
/* HTTP/1.1 streams have no flow-control window: reading stops while this much is unconsumed */
#define MC_H1_STREAM_WINDOW (1024 * 1024)

/* go-micro's HTTP/1.1 streams (h1.c): frames out, the end, and the writable check after a flush. */
int mc_h1_stream_head(mc_request_t *r, int status, const mc_header_t *h, size_t nh);
/* Chunked answers to ordinary HTTP/1.1 requests (h1.c): the head, one chunk (the end goes
 * through mc_request_respond). */
int mc_h1_chunked_head(mc_request_t *r, int status, const mc_header_t *h, size_t nh);
int mc_h1_chunked_write(mc_request_t *r, const uint8_t *data, size_t len);
int mc_h1_stream_write(mc_request_t *r, const uint8_t *data, size_t len);
int mc_h1_stream_finish(mc_request_t *r, const mc_header_t *t, size_t nt);
void mc_h1_stream_flushed(mc_conn_t *c);

/* A stream's outbound queue dropped below its low-water mark: its writer is told (on_writable). */
void mc_stream_notify_writable(mc_request_t *r);

/* HTTP/2 client connections (h2client.c). */
int mc_h2c_init(mc_conn_t *c);
int mc_h2c_feed(mc_conn_t *c, const uint8_t *p, size_t n);
int mc_h2c_pump(mc_conn_t *c);
bool mc_h2c_input_full(mc_conn_t *c);
bool mc_h2c_done(mc_conn_t *c);
void mc_h2c_free(mc_conn_t *c);
/* Whether the connection takes new calls (no GOAWAY either way, stream ids left). */
bool mc_h2c_usable(const mc_conn_t *c);
/* Encodes r's request head and queues it to open (ids in submission order): 0, or -1. */
int mc_h2c_submit(mc_conn_t *c, mc_request_t *r, const char *method, const char *path, const mc_header_t *h, size_t nh);
/* The call with stream id `id`, open or waiting to open; NULL if none. */
mc_request_t *mc_h2c_find(mc_conn_t *c, int32_t id);
/* Ends r's stream with RST_STREAM(code) (nothing is sent if it never opened); its call completes
 * at the next pump. */
void mc_h2c_reset(mc_conn_t *c, mc_request_t *r, uint32_t code);
/* r (a client stream) has more to send, or its end. */
void mc_h2c_stream_ready(mc_request_t *r);
/* The application took len bytes of r's streamed answer: credited to the server. */
void mc_h2c_consume(mc_request_t *r, size_t len);
/* r's call is complete: the connection lets go of it. */
void mc_h2c_forget(mc_conn_t *c, mc_request_t *r);

mc_request_t *mc_request_new(mc_loop_t *loop, mc_conn_t *c, int proto);
void mc_request_release(mc_request_t *r);
/* The application has answered r (server role): its deadline goes with the question. */
static inline void mc_request_mark_responded(mc_request_t *r) {
    r->server.responded = true;
    mc_loop_cancel_deadline(r->loop, &r->deadline);
}
/* Takes a request off its connection's list (r->conn = NULL); release does it too. */
void mc_request_unlink(mc_request_t *r);
int mc_request_add_header(mc_request_t *r, const char *name, size_t nlen, const char *value, size_t vlen);
void mc_request_abort(mc_request_t *r);
/* A JSON error body in the framework's format, for errors raised by the core itself. */
void mc_error_body(mc_buf_t *b, int status, const char *detail);
const char *mc_status_text(int status);
/* Answer fields: a name of token characters, a value without CR, LF or NUL (no response splitting). */
bool mc_field_name_valid(const char *name, size_t len);
bool mc_field_valid(const mc_header_t *h);
bool mc_fields_valid(const mc_header_t *h, size_t n);
/* A status an answer can carry: three digits (HTTP/1.1's status line, HTTP/2's :status). */
static inline bool mc_status_valid(int status) { return status >= 100 && status <= 999; }
/* Fields the core writes itself or that HTTP/2 forbids (RFC 9113, 8.2.2): content-length,
 * connection, keep-alive, proxy-connection, transfer-encoding, upgrade. */
bool mc_field_connection_specific(const char *name, size_t len);
/* HTTP/2: the connection's body budget frees r's share; bytes it held back are credited. */
void mc_h2_request_leaves(mc_conn_t *c, mc_request_t *r);

/* ---------------------------------------------------------------- protocols */

void mc_h1_init(mc_conn_t *c);
/* Consumes input; returns -1 if the connection must close now. */
int mc_h1_feed(mc_conn_t *c, const uint8_t *p, size_t n);
/* An answer's body: `prefix` (a framing header, may be empty) then `data`. */
typedef struct mc_body {
    const uint8_t *prefix;
    size_t prefix_len;
    const uint8_t *data;
    size_t len;
} mc_body_t;

int mc_h1_respond(mc_request_t *r, int status, const mc_header_t *h, size_t nh, mc_body_t body);
/* go-micro's HTTP/1.1 stream frames (both roles): one frame is r->h1_frame (a status or request
 * line and the fields every frame repeats), `extra` fields (NUL-terminated, may be NULL),
 * content-length and the body. mc_h1_frames_out queues `data` (gRPC-prefixed messages) and writes
 * a frame per whole message. */
int mc_h1_write_frame(mc_conn_t *c, mc_request_t *r, const char *extra, const uint8_t *body, size_t len);
int mc_h1_frames_out(mc_conn_t *c, mc_request_t *r, const uint8_t *data, size_t len);

/* HTTP/2 server connections (h2.c) */
int mc_h2_init(mc_conn_t *c);
int mc_h2_feed(mc_conn_t *c, const uint8_t *p, size_t n);
int mc_h2_respond(mc_request_t *r, int status, const mc_header_t *h, size_t nh, mc_body_t body,
                  const mc_header_t *t, size_t nt);
/* HEADERS of a streamed answer: no content-length, the body from mc_stream_read. */
int mc_h2_send_head(mc_request_t *r, int status, const mc_header_t *h, size_t nh);
/* Stores trailers to send after the body (lower-cased names). */
int mc_h2_store_trailers(mc_request_t *r, const mc_header_t *t, size_t nt);
/* A server stream's answer has more to send (a write, its end); out of memory for it (reset);
 * body bytes its application has taken (credited back to the peer). */
void mc_h2_stream_ready(mc_request_t *r);
void mc_h2_stream_reset(mc_request_t *r);
void mc_h2_consume(mc_request_t *r, size_t len);

/* client side */
void mc_client_finish_call(mc_request_t *r, int result);
/* A call's deadline passed: reset it, to finish as MC_CALL_TIMEOUT. */
void mc_client_time_out(mc_request_t *r);
void mc_client_handles_closed(mc_conn_t *c);
/* A client connection speaking `ops` to host:port (resolved off the loop if a name), TLS over it
 * when tls is given; `link` is a byte-stream connection's state (tcp.c), NULL for HTTP. NULL if
 * out of memory; a connection that fails at once reports through cb and closes. */
mc_conn_t *mc_client_open(mc_loop_t *loop, const char *host, uint16_t port, size_t max_response_bytes,
                          const mc_client_callbacks_t *cb, mc_tls_ctx_t *tls, const char *server_name,
                          const char *expected_identity, const mc_proto_ops_t *ops, struct mc_tcp_link *link);
/* tcp.c: the TCP connection is up (TLS next, if any); TLS is up; TLS failed (report, close). */
void mc_tcp_connected(mc_conn_t *c);
void mc_tcp_secured(mc_conn_t *c);
void mc_tcp_tls_failed(mc_conn_t *c);
/* The TLS handshake of a client connection is done and the server's identity checked. */
void mc_client_tls_handshaken(mc_conn_t *c);
/* A client connection's TLS failed (mc_tls_error says why): report and close. */
void mc_client_tls_failed(mc_conn_t *c);
/* The first bytes of a plaintext client connection: an HTTP/1.x answer or a TLS alert means the
 * server speaks TLS only; noted for mc_client_error. */
void mc_client_first_bytes(mc_conn_t *c, const uint8_t *p, size_t n);
/* Whether the peer closed or reset the connection and the loop has not read it yet. */
bool mc_client_peer_gone(mc_conn_t *c);
/* HTTP/1.1 client (h1client.c): the connection past its TCP connect; a call written out (NULL, with
 * *invalid set when the request has a method, path or field HTTP/1.1 cannot carry); a call ended
 * by this side (cancelled or timed out: an HTTP/1.1 call ends only with its connection). */
void mc_h1_client_init(mc_conn_t *c);
mc_request_t *mc_h1_client_submit(mc_conn_t *c, const char *method, const char *path, const mc_header_t *h, size_t nh,
                                  const uint8_t *body, size_t len, bool *invalid);
void mc_h1_client_end(mc_conn_t *c, mc_request_t *r);
/* A go-micro stream on an HTTP/1.1 client connection (the connection is the stream's): each
 * prefixed message written goes out as a request frame, mc_h1_client_stream_finish sends the
 * `Micro-Error: EOS` frame; each answer frame arrives prefixed through on_data (the first one's
 * fields through on_head), the server's EOS ends the call, its error as a micro-error trailer. */
mc_request_t *mc_h1_client_open_stream(mc_conn_t *c, const char *method, const char *path, const mc_header_t *h, size_t nh,
                                       bool *invalid);
int mc_h1_client_stream_write(mc_request_t *r, const uint8_t *data, size_t len);
int mc_h1_client_stream_finish(mc_request_t *r);
void mc_h1_client_stream_flushed(mc_conn_t *c);

/* ---------------------------------------------------------------- TLS (tls.c) */

typedef struct mc_tls_conn mc_tls_conn_t;

/* Gives c an SSL of ctx (server or client as ctx is) and makes TLS its transport (mc_tls_transport:
 * receive, seal, finish). Client: SNI and the identity to expect. */
int mc_tls_conn_start(mc_conn_t *c, mc_tls_ctx_t *ctx, const char *server_name, const char *expected_identity);
void mc_tls_conn_free(mc_conn_t *c);
/* Client: sends the ClientHello. */
int mc_tls_start_handshake(mc_conn_t *c);
bool mc_tls_failed(const mc_conn_t *c);
bool mc_tls_ready(const mc_conn_t *c);
const char *mc_tls_error(const mc_conn_t *c);
const char *mc_tls_peer_identity(mc_conn_t *c);
const char *mc_tls_peer_chain(mc_conn_t *c, size_t *len);
/* A certificate's identity: its spiffe:// URI SAN, else its subject CN (malloc'd; NULL if none). */
struct x509_st;
char *mc_tls_identity_of(struct x509_st *x);
/* A message for the server's log (conn.c). */
void mc_server_log(mc_server_t *s, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#ifdef MC_FUZZING
/* The fuzzing seam (Fuzz/, docs/FUZZING.md); absent from every other build. A connection with no
 * socket: the harness hands it bytes as libuv's read callback would, fires its timer, and plays
 * the kernel for its writes. mc_fuzz_try_write, which the harness defines, stands for
 * uv_try_write (returns the bytes taken, or a negative libuv error); what it did not take goes
 * the uv_write way and stays in flight until mc_fuzz_conn_written. */
int mc_fuzz_try_write(mc_conn_t *c, const uint8_t *p, size_t n);
mc_conn_t *mc_fuzz_conn_open(mc_server_loop_t *sl);
void mc_fuzz_conn_read(mc_conn_t *c, const uint8_t *p, ssize_t n); /* n < 0: a libuv error (UV_EOF) */
void mc_fuzz_conn_written(mc_conn_t *c, int status);
void mc_fuzz_conn_timer(mc_conn_t *c);
void mc_flush_dirty(mc_loop_t *loop);
void mc_request_pool_free(mc_loop_t *loop);
void mc_conn_shutdown_all(mc_server_loop_t *sl, bool force);
/* An HTTP/2 client connection past its TCP connect, with no socket. */
mc_client_t *mc_fuzz_client_open(mc_loop_t *loop, size_t max_response_bytes, const mc_client_callbacks_t *cb);
/* The same for an HTTP/1.1 client connection. */
mc_client_t *mc_fuzz_client_open_http1(mc_loop_t *loop, size_t max_response_bytes, const mc_client_callbacks_t *cb);
#endif

#endif
