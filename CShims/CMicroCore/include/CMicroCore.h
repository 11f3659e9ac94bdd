/*
 * CMicroCore: the C network core of swift-micro.
 *
 * Event loops (libuv), a listener with its own accept loop, and HTTP/1.1 and HTTP/2 (nghttp2)
 * server connections. It knows bytes, frames and streams; nothing of services or codecs.
 *
 * Threading contract: every object belongs to one loop. Functions marked "loop thread" must be
 * called on the thread of the loop that owns the object; mc_loop_post is the one way in from
 * other threads. No libuv, OpenSSL or nghttp2 type appears in this header.
 */
#ifndef CMICROCORE_H
#define CMICROCORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- loops */

typedef struct mc_loop mc_loop_t;

/* A job: fn(ctx, arg) runs on the loop thread. */
typedef void (*mc_job_fn)(void *ctx, void *arg);

/* Creates a loop and starts its thread. Returns NULL and fills err on failure. */
mc_loop_t *mc_loop_start(unsigned index, char *err, size_t errlen);

/* Queues fn(ctx, arg) to run on the loop thread, in order with other posts from the same thread.
 * Any thread. Never allocates in the steady state. Returns 0, or -1 once the loop has stopped
 * (the job was not queued and the caller must run or fail it itself). */
int mc_loop_post(mc_loop_t *loop, mc_job_fn fn, void *ctx, void *arg);

/* 1 if the calling thread is this loop's thread. */
int mc_loop_is_current(const mc_loop_t *loop);

/* The loop whose thread is calling, or NULL. */
mc_loop_t *mc_loop_current(void);

/* An opaque pointer the embedder attaches to a loop (Swift: its EventLoop object, unretained;
 * the embedder keeps it alive while set, and clears it before the object may go), and the one
 * of the loop whose thread is calling: NULL off a loop thread or when none is set. Any thread. */
void mc_loop_set_owner(mc_loop_t *loop, void *owner);
void *mc_loop_current_owner(void);

unsigned mc_loop_index(const mc_loop_t *loop);

/* After mc_loop_stop (its thread joined): the calling thread acts as the loop's own
 * (mc_loop_is_current says 1) until mc_loop_leave_stopped, so that work that missed the loop
 * (answers of requests whose connections are gone) completes where it is instead of posting
 * again. Returns the loop to give back to mc_loop_leave_stopped. A no-op on a running loop. */
mc_loop_t *mc_loop_enter_stopped(mc_loop_t *loop);
void mc_loop_leave_stopped(mc_loop_t *previous);

/* Busy polling: for `ns` nanoseconds after each turn that read from a connection, the loop polls
 * for events without sleeping (0, the default: it sleeps whenever it has nothing to do). Lower
 * latency for a peer that sends again soon, for a core's time while it spins. Any thread; takes
 * effect from the loop's next turn. */
void mc_loop_set_busy_poll(mc_loop_t *loop, uint64_t ns);
uint64_t mc_loop_busy_poll(const mc_loop_t *loop);
/* Turns the loop has run inside a busy-polling window (polling without sleeping), since it
 * started. */
uint64_t mc_loop_busy_poll_turns(const mc_loop_t *loop);

/* CPUs this process may run on (its affinity mask), at least 1. */
unsigned mc_cpu_count(void);

/* Number of connections currently owned by the loop (any thread, approximate). */
unsigned mc_loop_connection_count(const mc_loop_t *loop);

/* Number of call deadlines armed on the loop's timer wheel (loop thread). */
size_t mc_loop_armed_deadlines(const mc_loop_t *loop);

/* Stops the loop: runs every job already queued, closes its handles, joins its thread and frees
 * its resources. Posts after it return -1. Servers on the loop must be closed first. Not from the
 * loop's own thread; idempotent. */
void mc_loop_stop(mc_loop_t *loop);

/* Frees a loop (stopping it first if needed) once no thread can post to it any more. */
void mc_loop_free(mc_loop_t *loop);

/* ---------------------------------------------------------------- server */

typedef struct mc_server mc_server_t;
typedef struct mc_request mc_request_t;

typedef struct mc_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} mc_header_t;

typedef struct mc_server_config {
    const char *host;               /* NULL or "" = all interfaces (dual-stack) */
    uint16_t port;                  /* 0 = chosen by the kernel; read it with mc_server_port */
    int backlog;                    /* listen(2) backlog, default 4096 */
    size_t max_header_bytes;        /* request line + headers, default 16 KiB -> 431 */
    size_t max_body_bytes;          /* default 4 MiB -> 413 */
    uint32_t max_concurrent_streams;/* HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS, default 250 */
    uint32_t max_pipelined;         /* HTTP/1.1 requests in flight per connection, default 16 */
    uint32_t max_connections;       /* accept pauses at this many, default 0 = from RLIMIT_NOFILE */
    uint32_t header_timeout_ms;     /* a request's headers must arrive within, default 10 s */
    uint32_t idle_timeout_ms;       /* a connection with nothing in flight closes after, default 60 s
                                     * (HTTP/2: GOAWAY, then closed after a short grace) */
    uint32_t read_timeout_ms;       /* a request body (HTTP/1.1 body, HTTP/2 stream before its
                                     * END_STREAM) that gets no bytes for this long is ended: 408
                                     * if not yet handed over, else reset; default 60 s, 0 = never */
    uint32_t write_timeout_ms;      /* output waiting and no byte of it taken by the peer for this
                                     * long: the connection closes; default 30 s, 0 = never */
    size_t max_buffered_body_bytes; /* request bodies one connection may hold before their handlers
                                     * take them; past it the peer's windows are credited no more
                                     * (HTTP/2) or reading pauses (HTTP/1.1); default 16 MiB */
    uint32_t stream_window;         /* HTTP/2 initial stream receive window, default 1 MiB */
    uint32_t connection_window;     /* HTTP/2 connection receive window, default 16 MiB */
    struct mc_tls_ctx *tls;         /* NULL = plaintext; else every connection is TLS (the server
                                     * takes its own reference; see mc_server_set_tls) */
} mc_server_config_t;

enum { MC_LOG_DEBUG = 0, MC_LOG_INFO = 1, MC_LOG_WARNING = 2, MC_LOG_ERROR = 3 };

typedef struct mc_server_callbacks {
    void *ctx;
    /* A complete request arrived (loop thread). The callee must call mc_request_respond exactly
     * once, on that loop's thread, sooner or later; the request lives until then. */
    void (*on_request)(void *ctx, mc_request_t *req);
    /* The peer went away (reset, closed, timed out) before the request was answered (loop
     * thread). mc_request_respond is still required; it then only frees. */
    void (*on_abort)(void *ctx, mc_request_t *req);
    /* After mc_server_shutdown: the listener is closed and every connection is gone (any thread,
     * called once). */
    void (*on_closed)(void *ctx);
    /* A message worth logging: accept back-off, a permanent listener error (any loop thread). */
    void (*on_log)(void *ctx, int level, const char *message);

    /* Streams (HTTP/2 only; all optional, loop thread). */
    /* Asked when a request's headers are complete and its body is still to come: return 1 to
     * dispatch it now as a stream (its body then arrives through on_body), 0 to wait for the
     * whole body as usual. A request carrying a `micro-stream` header is always a stream. */
    int (*is_stream)(void *ctx, mc_request_t *req);
    /* Body bytes of a streamed request (end = 1 after the last, with len 0). The bytes are only
     * valid during the call. Flow control: the peer may send more only as the callee reports
     * bytes consumed with mc_request_consume, so what it buffers is bounded by the stream window. */
    void (*on_body)(void *ctx, mc_request_t *req, const uint8_t *data, size_t len, int end);
    /* A streamed response whose mc_request_write returned 1 can take more. Must not call back
     * into the core synchronously (resume a task instead). */
    void (*on_writable)(void *ctx, mc_request_t *req);

    /* The deadline set with mc_request_set_deadline passed before the request was answered (loop
     * thread, once). The callee answers (a timeout) and stops the handler; the request lives until
     * answered, as always. Optional: without it a deadline does nothing on a server. */
    void (*on_deadline)(void *ctx, mc_request_t *req);
} mc_server_callbacks_t;

void mc_server_config_init(mc_server_config_t *config);

/* Binds and listens at once (so errors like EADDRINUSE come back here), then starts accepting
 * on loops[0] and spreads connections over all loops. Any thread. */
mc_server_t *mc_server_start(mc_loop_t *const *loops, size_t nloops, const mc_server_config_t *config,
                             const mc_server_callbacks_t *callbacks, char *err, size_t errlen);

/* The bound port. Any thread. */
uint16_t mc_server_port(const mc_server_t *server);

/* What a server has done since it started, for metrics. Any thread (each field read on its own:
 * together they are a close, not an exact, snapshot). */
typedef struct mc_server_stats {
    uint64_t open_connections;  /* connections open now */
    uint64_t accepted;          /* connections accepted */
    uint64_t accept_backoffs;   /* temporary accept errors (EMFILE, ENFILE, ENOBUFS, ENOMEM) backed off from */
    uint64_t early_writes;      /* answers written as soon as given: the last request of a read, answered in it */
} mc_server_stats_t;
void mc_server_stats(const mc_server_t *server, mc_server_stats_t *out);

/* Graceful: stop accepting, send GOAWAY on HTTP/2, close idle connections, let requests in
 * flight finish, then on_closed. Any thread; idempotent. */
void mc_server_shutdown(mc_server_t *server);

/* Hard: close every connection now (requests in flight are aborted). Any thread. Implies
 * shutdown. */
void mc_server_close_connections(mc_server_t *server);

/* Frees the server. Only after on_closed has been called. */
void mc_server_free(mc_server_t *server);

/* ---------------------------------------------------------------- requests (loop thread) */

enum { MC_HTTP1 = 1, MC_HTTP2 = 2 };

int mc_request_protocol(const mc_request_t *req);
mc_loop_t *mc_request_loop(const mc_request_t *req);
const char *mc_request_method(const mc_request_t *req, size_t *len);
const char *mc_request_path(const mc_request_t *req, size_t *len);
/* Header names are lower case; values as received. Pointers stay valid until the response. */
size_t mc_request_header_count(const mc_request_t *req);
mc_header_t mc_request_header(const mc_request_t *req, size_t index);
/* The header fields from `first`, `count` of them (clamped to mc_request_header_count), as one
 * self-contained block that outlives the request: the mc_header_t entries, then the bytes they
 * point to. mc_request_headers_block_size is the bytes that block needs; mc_request_headers_block
 * writes it to `dst` (that many bytes, aligned for mc_header_t). One copy, not one per field. */
size_t mc_request_headers_block_size(const mc_request_t *req, size_t first, size_t count);
void mc_request_headers_block(const mc_request_t *req, size_t first, size_t count, void *dst);
const uint8_t *mc_request_body(const mc_request_t *req, size_t *len);
/* 1 if the request was dispatched as a stream (its body comes through on_body). */
int mc_request_is_streaming(const mc_request_t *req);
/* A value the callee may attach (e.g. to find its task on abort). */
void mc_request_set_user(mc_request_t *req, void *user);
void *mc_request_user(const mc_request_t *req);

/* Sends the response and releases the request. Header names must be valid tokens; they are sent
 * in lower case. content-length is added by the core. Trailers go out on HTTP/2 only. An answer
 * with an invalid field or a status outside 100-999 is logged and sent as a 500 instead.
 * Returns 0, or -1 if the connection was already gone (the request is released all the same). */
int mc_request_respond(mc_request_t *req, int status, const mc_header_t *headers, size_t nheaders,
                       const uint8_t *body, size_t body_len, const mc_header_t *trailers,
                       size_t ntrailers);
/* The same with `prefix` (a framing header such as a gRPC message's 5 bytes) sent before `body`,
 * so that framing an answer does not copy its body. */
int mc_request_respond_framed(mc_request_t *req, int status, const mc_header_t *headers, size_t nheaders,
                              const uint8_t *prefix, size_t prefix_len, const uint8_t *body, size_t body_len,
                              const mc_header_t *trailers, size_t ntrailers);

/* ---------------------------------------------------------------- streams (loop thread)
 *
 * A streamed exchange on one HTTP/2 stream, for server requests dispatched as streams (see
 * is_stream) and for client calls opened with mc_client_stream. Outbound bytes are queued and
 * sent as the peer's flow-control window allows; inbound bytes are credited back to the peer
 * only when the application says it consumed them. Server side: mc_request_send_head once, then
 * mc_request_write any number of times, then mc_request_finish (which, like
 * mc_request_respond, ends the request's life once it is sent). Client side: mc_request_write
 * sends request body bytes and mc_request_finish(req, NULL, 0) ends the request body. */

/* Starts a streamed response: status and headers now (no content-length), body to follow.
 * Returns 0, or -1 if the peer is gone, the protocol cannot stream (HTTP/1.1), or the status
 * (100-999) or a field is invalid. */
int mc_request_send_head(mc_request_t *req, int status, const mc_header_t *headers, size_t nheaders);

/* Queues body bytes (copied). Returns 0, 1 if the queue is past its high-water mark (the caller
 * should wait for on_writable / the writable callback before writing more), or -1 if the
 * stream is gone (the bytes are dropped). */
int mc_request_write(mc_request_t *req, const uint8_t *data, size_t len);

/* Ends the body once the queue is sent, with trailers (server side). Server side, this ends
 * the request's life like mc_request_respond: the pointer must not be used afterwards.
 * Returns 0, or -1 if the stream is gone. */
int mc_request_finish(mc_request_t *req, const mc_header_t *trailers, size_t ntrailers);

/* Credits `len` bytes of received body back to the peer's flow-control window. */
void mc_request_consume(mc_request_t *req, size_t len);

/* Sets the request's deadline timeout_ms from now (again: moves it). Server: on_deadline is called
 * if it passes before the answer is finished. Client (a call or a stream): the stream is reset and
 * done gets MC_CALL_TIMEOUT. The deadline is dropped when the request is answered or done, at a
 * cost of a few pointer writes; passing, it is late by at most a few milliseconds. Loop thread.
 * Returns 0, or -1 if the loop is stopping or out of memory (no deadline then). */
int mc_request_set_deadline(mc_request_t *req, uint64_t timeout_ms);

/* ---------------------------------------------------------------- HTTP/2 and HTTP/1.1 client (loop thread) */

/* One connection to a server, owned by one loop: HTTP/2 (many calls multiplexed on it) or HTTP/1.1. */
typedef struct mc_client mc_client_t;

typedef struct mc_client_callbacks {
    void *ctx;
    /* The connection is ready (error 0) or failed (error = -errno, message says why). */
    void (*on_connected)(void *ctx, int error, const char *message);
    /* The server sent GOAWAY: no new calls; calls in flight finish or fail as REFUSED. */
    void (*on_goaway)(void *ctx);
    /* The connection is gone and every call on it has completed; ctx may be released. */
    void (*on_closed)(void *ctx);
} mc_client_callbacks_t;

/* How a call ended. REFUSED means the server never processed it: safe to retry elsewhere. */
enum {
    MC_CALL_OK = 0,
    MC_CALL_REFUSED = 1,   /* not sent, refused stream, or above a GOAWAY's last stream */
    MC_CALL_RESET = 2,     /* the stream or connection broke after the request was sent */
    MC_CALL_TOO_LARGE = 3, /* the response exceeded the limit */
    MC_CALL_CANCELLED = 4, /* mc_client_cancel */
    MC_CALL_FIELDS_TOO_LARGE = 5, /* the response's header or trailer fields exceeded MC_CLIENT_MAX_FIELD_BYTES */
    MC_CALL_TIMEOUT = 6,   /* its deadline passed (mc_request_set_deadline, mc_client_call's timeout) */
};

/* What a client keeps of a response's fields (headers and trailers, counted as HPACK's
 * SETTINGS_MAX_HEADER_LIST_SIZE does: name + value + 32 each); advertised to the server. */
#define MC_CLIENT_MAX_FIELD_BYTES 65536

/* The response (when result is MC_CALL_OK) is read with the mc_request_* accessors inside the
 * callback: status, headers (trailers from mc_request_trailer_index on), body. It is freed when
 * the callback returns. */
typedef void (*mc_call_done_fn)(void *ctx, int result, mc_request_t *response);

/* Connects to host:port (a name is resolved off the loop). Loop thread. */
mc_client_t *mc_client_connect(mc_loop_t *loop, const char *host, uint16_t port, size_t max_response_bytes,
                               const mc_client_callbacks_t *callbacks);

/* Connects to host:port to speak HTTP/1.1 (servers without HTTP/2, such as go-micro's HTTP
 * transport): plaintext, one call at a time (mc_client_usable says 0 while one is in flight),
 * kept alive between calls unless the server closes. A stream (mc_client_stream) is go-micro's
 * HTTP/1.1 stream and takes the connection for good: each prefixed message written is a request
 * frame, mc_request_finish sends `Micro-Error: EOS`, each answer frame arrives prefixed, the
 * server's error as a micro-error trailer. Cancelling or passing a deadline closes the
 * connection. Loop thread. */
mc_client_t *mc_client_connect_http1(mc_loop_t *loop, const char *host, uint16_t port, size_t max_response_bytes,
                                     const mc_client_callbacks_t *callbacks);

/* mc_client_call's flags: the core tells the server the call's deadline (timeout_ms > 0) in a
 * header of its own making, so that a caller can send headers made once (frozen) with every call. */
enum {
    MC_CALL_GRPC_TIMEOUT = 1,  /* grpc-timeout, in milliseconds ("5000m"; coarser units past 8 digits) */
    MC_CALL_MICRO_TIMEOUT = 2, /* timeout, in nanoseconds (go-micro's Timeout header) */
    MC_CALL_GRPC_FRAME = 4,    /* the body is one uncompressed gRPC message: the core writes its
                                  5-byte prefix before it (HTTP/2 only: -2 over HTTP/1.1) */
};

/* Starts a call. Returns 0 and sets *stream_id, or -1 if the connection cannot take calls (then
 * done is not called), or -2 if HTTP/1.1 cannot carry the request (a method that is no token, a
 * path with spaces or control bytes, a field name that is no token or a value with CR, LF or
 * NUL). With timeout_ms > 0 the call has that deadline (see mc_request_set_deadline), and
 * `flags` (MC_CALL_*_TIMEOUT) may add it to the headers sent. Loop thread. */
int mc_client_call(mc_client_t *client, const char *method, const char *path, const mc_header_t *headers,
                   size_t nheaders, const uint8_t *body, size_t body_len, uint64_t timeout_ms, unsigned flags,
                   mc_call_done_fn done, void *ctx, int32_t *stream_id);

/* The value mc_client_call sends for its deadline header (flags: one MC_CALL_*_TIMEOUT) into
 * out (24 bytes are enough); returns its length. Exposed for tests. */
size_t mc_deadline_header_value(unsigned flags, uint64_t timeout_ms, char *out);

/* A streamed call (loop thread). on_head gets the answer's status and headers (read them with
 * the mc_request_* accessors during the call); on_data gets body bytes as they arrive (credit
 * them with mc_request_consume); on_writable says a request whose mc_request_write returned 1
 * can take more. done comes last, as for mc_client_call, with the trailers as headers from
 * mc_request_trailer_index on and no body. `req` (set on success) is valid until done. */
typedef struct mc_stream_callbacks {
    void (*on_head)(void *ctx, mc_request_t *response);
    void (*on_data)(void *ctx, const uint8_t *data, size_t len);
    void (*on_writable)(void *ctx);
    mc_call_done_fn done;
} mc_stream_callbacks_t;

/* Opens a streamed call: HEADERS now, the body through mc_request_write and mc_request_finish.
 * Returns 0 (setting *stream_id and *req), or -1 if the connection cannot take calls. */
int mc_client_stream(mc_client_t *client, const char *method, const char *path, const mc_header_t *headers,
                     size_t nheaders, const mc_stream_callbacks_t *callbacks, void *ctx, int32_t *stream_id,
                     mc_request_t **req);

/* Resets the stream; done is called with MC_CALL_CANCELLED (unless already done). Loop thread. */
void mc_client_cancel(mc_client_t *client, int32_t stream_id);

/* 1 if connected and neither closing nor told to go away. Loop thread. */
int mc_client_usable(const mc_client_t *client);

/* Number of calls in flight. Loop thread. */
unsigned mc_client_active(const mc_client_t *client);

/* Closes now; calls in flight complete with REFUSED (never sent) or RESET. Loop thread. */
void mc_client_close(mc_client_t *client);

/* ---------------------------------------------------------------- TLS (OpenSSL 3) */

/* A TLS configuration compiled once: certificate chain, key, trust roots, ALPN (h2, http/1.1),
 * session tickets with keys the core manages, no 0-RTT. Reference counted and immutable: a server
 * and each of its connections hold a reference, so a reload (mc_server_set_tls) applies to new
 * connections while existing ones keep theirs. Any thread. */
typedef struct mc_tls_ctx mc_tls_ctx_t;

enum { MC_TLS_CLIENT_AUTH_NONE = 0, MC_TLS_CLIENT_AUTH_REQUEST = 1, MC_TLS_CLIENT_AUTH_REQUIRE = 2 };

typedef struct mc_tls_config {
    int is_server;
    const char *cert_pem;  /* leaf first, then intermediates; required for a server */
    size_t cert_len;
    const char *key_pem;   /* the leaf's private key */
    size_t key_len;
    const char *ca_pem;    /* trust roots (several during a CA rotation); a client without any
                            * uses the system's */
    size_t ca_len;
    int client_auth;       /* server: MC_TLS_CLIENT_AUTH_*, default REQUIRE (needs ca_pem) */
    int min_version;       /* 13 (default) or 12 */
} mc_tls_config_t;

void mc_tls_config_init(mc_tls_config_t *config);
/* NULL and a message in err on failure (unreadable PEM, key not matching the certificate...). */
mc_tls_ctx_t *mc_tls_ctx_new(const mc_tls_config_t *config, char *err, size_t errlen);
void mc_tls_ctx_retain(mc_tls_ctx_t *ctx);
/* Drops a reference (the context lives while connections use it). */
void mc_tls_ctx_free(mc_tls_ctx_t *ctx);

/* New connections use ctx from now on; connections already open keep theirs. Any thread.
 * Returns -1 if the server was started without TLS (it cannot become a TLS server). */
int mc_server_set_tls(mc_server_t *server, mc_tls_ctx_t *ctx);

/* The verified peer certificate's identity: its spiffe:// URI SAN, else its subject CN; NULL on a
 * plaintext connection or without a client certificate. Valid until the response. Loop thread. */
const char *mc_request_peer_identity(const mc_request_t *req);
/* The peer's verified chain in PEM (leaf first); NULL if none. Valid until the response. */
const char *mc_request_peer_chain(const mc_request_t *req, size_t *len);
/* 1 if the request came over TLS. */
int mc_request_is_tls(const mc_request_t *req);
/* 1 if its TLS session was resumed (a ticket) rather than fully negotiated. */
int mc_request_tls_resumed(const mc_request_t *req);

/* Like mc_client_connect, over TLS: SNI server_name (when a name), ALPN h2, the server's chain
 * verified against ctx's roots, and its identity equal to expected_identity (a spiffe:// ID or a
 * CN) when given, else its certificate must match server_name. The session of an earlier
 * connection to the same target is resumed when ctx kept one (64 targets per context). on_connected reports a clear error
 * when any of that fails, and reports success only after the server's first HTTP/2 frame (in TLS
 * 1.3 a server refuses a client certificate after the client's handshake is done). Loop thread. */
mc_client_t *mc_client_connect_tls(mc_loop_t *loop, const char *host, uint16_t port, size_t max_response_bytes,
                                   const mc_client_callbacks_t *callbacks, mc_tls_ctx_t *ctx,
                                   const char *server_name, const char *expected_identity);

/* Why a client connection failed or broke, when the core can tell: a TLS failure, or a plaintext
 * connection answered by a TLS-only server ("" otherwise). Loop thread. */
const char *mc_client_error(const mc_client_t *client);

/* ---------------------------------------------------------------- byte-stream client connections (loop thread)
 *
 * A TCP connection, optionally TLS, that carries bytes and leaves the protocol to its owner
 * (NATS; later protocols): the core's connect, output queue (flushed once per loop turn), TLS
 * layer and close, with the owner's callbacks on the loop's thread. */
typedef struct mc_tcp mc_tcp_t;

typedef struct mc_tcp_callbacks {
    void *ctx;
    /* Once: connected (error 0; over TLS, once the handshake is done and the server checked) or
     * not (error < 0, message says why; on_closed follows). */
    void (*on_connected)(void *ctx, int error, const char *message);
    /* Bytes read (plaintext). Each call's bytes are valid during the call only. */
    void (*on_data)(void *ctx, const uint8_t *data, size_t len);
    /* A write returned 1 (past the high-water mark) and the output has drained to half of it. */
    void (*on_writable)(void *ctx);
    /* TLS begun with mc_tcp_start_tls is up (error 0), or failed (on_closed follows). */
    void (*on_secured)(void *ctx, int error, const char *message);
    /* Last, once: the connection is gone — the peer's end or this side's close (error 0), or a
     * failure (error < 0) — with why. The handle must not be used from here on; ctx may be freed. */
    void (*on_closed)(void *ctx, int error, const char *message);
} mc_tcp_callbacks_t;

typedef struct mc_tcp_options {
    uint64_t connect_timeout_ms;   /* 0: the kernel's */
    size_t high_water;             /* output held before a write returns 1; 0: 1 MiB */
    mc_tls_ctx_t *tls;             /* TLS from the start (a client context), or NULL */
    const char *server_name;       /* TLS: SNI and the name the certificate must carry (default: host) */
    const char *expected_identity; /* TLS: the server's identity (spiffe:// ID or CN) instead of its name */
} mc_tcp_options_t;

/* Connects to host:port (a name is resolved off the loop); the callbacks say the rest. NULL if
 * out of memory. */
mc_tcp_t *mc_tcp_connect(mc_loop_t *loop, const char *host, uint16_t port, const mc_tcp_callbacks_t *callbacks,
                         const mc_tcp_options_t *options);
/* Queues bytes (copied) for the next flush. 0; 1 if the output is now past the high-water mark
 * (wait for on_writable before writing more); -1 if the connection is not open (not yet
 * connected, closing or gone: nothing queued). */
int mc_tcp_write(mc_tcp_t *tcp, const uint8_t *data, size_t len);
/* One piece of a write made of several (mc_tcp_writev). */
typedef struct mc_slice {
    const uint8_t *data;
    size_t len;
} mc_slice_t;
/* mc_tcp_write of the pieces one after the other, in one call (a header, a payload, a trailer:
 * no buffer to join them first). */
int mc_tcp_writev(mc_tcp_t *tcp, const mc_slice_t *pieces, size_t count);
/* Output bytes not yet taken by the socket. */
size_t mc_tcp_pending(mc_tcp_t *tcp);
/* Stops (0) or resumes (1) reading: the owner's backpressure on input. */
void mc_tcp_set_reading(mc_tcp_t *tcp, int on);
/* Begins TLS on the open connection (a protocol that agrees on it in plaintext first); bytes
 * written meanwhile are held until the handshake is done; on_secured says how it went. -1 if
 * the connection is not open or already TLS. */
int mc_tcp_start_tls(mc_tcp_t *tcp, mc_tls_ctx_t *ctx, const char *server_name, const char *expected_identity);
/* 1 once TLS is up. */
int mc_tcp_is_tls(mc_tcp_t *tcp);
/* The server's verified identity over TLS (spiffe:// URI SAN, else CN); NULL otherwise. */
const char *mc_tcp_peer_identity(mc_tcp_t *tcp);
/* Closes: graceful, once the output is out (with TLS's close_notify); else now, dropping it.
 * on_closed follows. */
void mc_tcp_close(mc_tcp_t *tcp, int graceful);

/* ---------------------------------------------------------------- certificates (development CA) */

typedef struct mc_cert_request {
    const char *common_name;
    const char *uri_san;        /* e.g. spiffe://micro.local/service/helloworld; NULL = none */
    const char *dns_sans;       /* comma separated; NULL = none */
    const char *ip_sans;        /* comma separated; NULL = none */
    int is_ca;
    int64_t not_before_offset;  /* seconds from now (negative: in the past) */
    int64_t not_after_offset;   /* seconds from now */
    const char *issuer_cert_pem;/* NULL = self-signed */
    const char *issuer_key_pem;
} mc_cert_request_t;

/* Makes a P-256 key and a certificate; *cert_pem and *key_pem are malloc'd NUL-terminated PEM
 * (free with mc_cert_free). Returns 0, or -1 with a message in err. Any thread. */
int mc_cert_create(const mc_cert_request_t *request, char **cert_pem, char **key_pem, char *err, size_t errlen);
void mc_cert_free(char *pem);
/* The identity (as mc_request_peer_identity would see it) of the first certificate in a PEM text,
 * malloc'd (mc_cert_free); NULL if none. */
char *mc_cert_identity(const char *cert_pem, size_t len);

/* ---------------------------------------------------------------- signing keys (tokens)
 *
 * RSA of 2048 bits or more (RS256), EC P-256 (ES256), Ed25519 (EdDSA). Any thread; one key may be
 * used by several threads at once. */

typedef struct mc_sigkey mc_sigkey_t;

enum { MC_SIGKEY_RSA = 1, MC_SIGKEY_P256 = 2, MC_SIGKEY_ED25519 = 3 };

/* A key from PEM (a PUBLIC KEY, or with private_key a PRIVATE KEY in any of OpenSSL's forms);
 * NULL with a message in err. */
mc_sigkey_t *mc_sigkey_from_pem(const char *pem, size_t len, int private_key, char *err, size_t errlen);
/* A new key pair of `kind` (RSA: 2048 bits). */
mc_sigkey_t *mc_sigkey_generate(int kind, char *err, size_t errlen);
void mc_sigkey_free(mc_sigkey_t *key);
int mc_sigkey_kind(const mc_sigkey_t *key);
int mc_sigkey_has_private(const mc_sigkey_t *key);
/* The public (or private) key as PEM, malloc'd (mc_sigkey_free_pem); NULL if not there. */
char *mc_sigkey_pem(const mc_sigkey_t *key, int private_key);
void mc_sigkey_free_pem(char *pem);
/* SHA-256 of the public key's DER (SubjectPublicKeyInfo). 0, or -1. */
int mc_sigkey_fingerprint(const mc_sigkey_t *key, uint8_t out[32]);
/* Signs data as JWS does (SHA-256 for RSA and EC, ECDSA as r||s); the signature's length, or -1
 * (no private key, cap too small: 512 bytes fit every key here up to RSA-4096). */
long mc_sigkey_sign(const mc_sigkey_t *key, const uint8_t *data, size_t len, uint8_t *sig, size_t cap);
/* 1 if sig is key's JWS signature of data, else 0. */
int mc_sigkey_verify(const mc_sigkey_t *key, const uint8_t *data, size_t len, const uint8_t *sig, size_t siglen);

/* ---------------------------------------------------------------- load driver (loop thread)
 *
 * A closed-loop benchmark run entirely in the core (bench.c): `connections` HTTP/2 connections
 * to host:port, `concurrency` calls in flight on each, every call the same request; `warmup`
 * calls per connection first (not recorded), then until `requests` calls were made or
 * `duration_ms` passed (whichever is set; both: the first). A call succeeds on status 200 (and,
 * with `grpc`, grpc-status 0). */
typedef struct mc_bench_config {
    const char *host;
    uint16_t port;
    const char *method; /* NULL: POST */
    const char *path;
    const mc_header_t *headers;
    size_t nheaders;
    const uint8_t *body;
    size_t body_len;
    unsigned connections;
    unsigned concurrency;
    uint64_t requests;
    uint64_t duration_ms;
    uint64_t warmup;
    int grpc;
} mc_bench_config_t;

typedef struct mc_bench_result {
    uint64_t ok, failed;
    uint64_t elapsed_ns;  /* from the first measured call to the last answer */
    uint32_t *latency_us; /* one per answered call, in completion order */
    uint64_t nlatency;
    char error[256];      /* why a connection could not be made, if one could not */
} mc_bench_result_t;

/* The run is over and its connections closed; `result` is the callee's (mc_bench_result_free). */
typedef void (*mc_bench_done_fn)(void *ctx, mc_bench_result_t *result);

/* Starts a run (the configuration is copied). Returns 0, or -1 on a bad configuration or no
 * memory (then done is never called). Loop thread. */
int mc_bench_start(mc_loop_t *loop, const mc_bench_config_t *config, mc_bench_done_fn done, void *ctx);
void mc_bench_result_free(mc_bench_result_t *result);

/* Response accessors for client calls. */
int mc_request_status(const mc_request_t *response);
size_t mc_request_trailer_index(const mc_request_t *response);

/* ---------------------------------------------------------------- UDP multicast (mDNS) (loop thread) */

/* A datagram socket for multicast DNS, owned by one loop. */
typedef struct mc_udp mc_udp_t;

typedef struct mc_udp_addr {
    uint8_t family;    /* 4 or 6 */
    uint8_t ip[16];    /* network order; the first 4 bytes for IPv4 */
    uint16_t port;
    uint32_t scope_id; /* IPv6: the interface of a link-local address, else 0 */
} mc_udp_addr_t;

typedef struct mc_udp_callbacks {
    void *ctx;
    /* A datagram arrived on interface ifindex (0 if unknown). data and from are valid during the
     * call only. Loop thread. */
    void (*on_datagram)(void *ctx, const uint8_t *data, size_t len, const mc_udp_addr_t *from, uint32_t ifindex);
    /* After mc_udp_close: the socket is closed and freed; ctx may be released. Loop thread. */
    void (*on_closed)(void *ctx);
} mc_udp_callbacks_t;

/* Opens a UDP socket of family 4 or 6 bound to the wildcard address and port (0: any) with
 * SO_REUSEADDR (so several processes share 5353), multicast TTL / hop limit 255 and multicast
 * loop-back on (processes on one host see each other). If group (4 or 16 bytes) is not NULL it
 * joins it on each interface in ifindexes (failing only if no join succeeds). Datagrams larger
 * than 9216 bytes are dropped. Returns NULL and fills err on failure. Loop thread. */
mc_udp_t *mc_udp_open(mc_loop_t *loop, int family, uint16_t port, const uint8_t *group, const uint32_t *ifindexes,
                      size_t nifindexes, const mc_udp_callbacks_t *callbacks, char *err, size_t errlen);

/* The bound port. Loop thread. */
uint16_t mc_udp_port(const mc_udp_t *udp);

/* Sends one datagram to `to` out of interface ifindex (0: the kernel chooses). Returns 0 or
 * -errno (-EAGAIN: the datagram was dropped; datagrams are best effort). Loop thread. */
int mc_udp_send(mc_udp_t *udp, const uint8_t *data, size_t len, const mc_udp_addr_t *to, uint32_t ifindex);

/* Closes the socket, then calls on_closed. Call once, before the loop stops. Loop thread. */
void mc_udp_close(mc_udp_t *udp);

/* ---------------------------------------------------------------- watched descriptors (loop thread) */

/* A descriptor owned by someone else (a C library's socket), watched by one loop: the owner
 * reads and writes it; the watch says when it can. The descriptor must stay open until
 * on_closed. */
typedef struct mc_watch mc_watch_t;

enum { MC_WATCH_READABLE = 1, MC_WATCH_WRITABLE = 2, MC_WATCH_ERROR = 4 };

typedef struct mc_watch_callbacks {
    void *ctx;
    /* Some of the events asked for are ready (MC_WATCH_ERROR: the poll failed; the owner finds
     * out what by reading). Loop thread. */
    void (*on_ready)(void *ctx, int events);
    /* After mc_watch_close: the watch is freed; ctx may be released. Loop thread. */
    void (*on_closed)(void *ctx);
} mc_watch_callbacks_t;

/* Watches fd for events (MC_WATCH_READABLE | MC_WATCH_WRITABLE, or 0 for none yet). Returns NULL
 * and fills err on failure. Loop thread. */
mc_watch_t *mc_watch_open(mc_loop_t *loop, int fd, int events, const mc_watch_callbacks_t *callbacks, char *err, size_t errlen);

/* Changes the events watched for. Returns 0 or a negative error. Loop thread. */
int mc_watch_set(mc_watch_t *watch, int events);

/* Stops watching, then calls on_closed (the descriptor is not closed). Call once, before the
 * loop stops. Loop thread. */
void mc_watch_close(mc_watch_t *watch);

#ifdef __cplusplus
}
#endif
#endif
