/*
 * stream.h - one open SSE response to one browser.
 *
 * A stream is either catching up (sending its snapshot, then replaying
 * the history after the client's last id, in batches paced by the socket
 * draining and by a budget of work per loop turn) or live (the feed
 * pushes each new message to it). Switching from replay to live happens
 * in the same loop turn that reads the last stored event, so a resume has
 * no gap and no duplicate. sent_seq is the position of the last id the
 * client has seen; heartbeats advance it with an id-only frame when the
 * history moved on without anything for this stream.
 *
 * Memory per live stream is this struct plus libevent's connection: no
 * per-stream timer (the bridge's housekeeping tick handles heartbeats,
 * token expiry and lifetime) and no per-stream buffer besides the
 * socket's. A catching-up stream also holds a struct stream_catchup,
 * freed when it turns live.
 */
#ifndef SLUICE_STREAM_H
#define SLUICE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bridge/metrics.h"
#include "bridge/request.h"

struct bridge;
struct compressor;
struct bufferevent;
struct evbuffer;
struct evhttp_connection;
struct evbuffer_cb_entry;
struct feed;
struct h2_stream;
struct stream_ops;
struct frame;
struct message;
struct stream_catchup;

struct stream {
    struct bridge *bridge;
    struct request req;              /* a view; the transport owns it */
    const struct stream_ops *ops;    /* the transport; NULL once gone */
    void (*drained)(struct stream *); /* the last send's drain callback */
    struct feed *feed;
    struct stream *feed_prev, *feed_next;
    struct stream *prev, *next;      /* in bridge->streams */
    struct stream *reap_next;        /* in bridge->reap */
    struct stream *dirty_next;       /* in the writer's dirty list */
    struct compressor *z;            /* owned; NULL: not compressed */

    /* HTTP/1.x (h1.c) */
    struct evhttp_connection *evcon; /* owned by libevent */
    struct bufferevent *bev;         /* evcon's (owned by libevent) */
    struct evbuffer *out;            /* bev's output (owned by libevent) */
    int fd;                          /* the socket (owned by libevent) */
    struct evbuffer_cb_entry *input_cb; /* discards what the client sends */
    size_t input_bytes;    /* sent by the client since its request */
    bool chunked;          /* HTTP/1.1 chunked body (else close-delimited) */
    /* HTTP/2 (h2.c) */
    struct h2_stream *h2;            /* owned by the h2 connection */

    struct stream_catchup *catchup; /* owned; NULL once live */
    uint64_t sent_seq;     /* history position of the client's last id */
    int64_t last_write_ms; /* for heartbeats */
    int64_t expires_ms;    /* token exp; 0: none */
    int64_t close_at_ms;   /* max_lifetime; 0: none */
    enum drop_reason reap_reason;
    bool live;
    bool reaping;          /* on the bridge's reap list */
    bool closing;          /* final "retry:" being flushed, then freed */
    bool dirty;            /* on the writer's list: output waits */
};

/*
 * The wire bytes of one message for one feed, built once per dispatch:
 * `plain` is the SSE frame ("id:", "event:", "data:" lines, blank line);
 * `chunked` is the same wrapped as one HTTP/1.1 chunk. Both point into a
 * buffer owned by the bridge and live until the next message.
 */
struct frame {
    const char *plain;
    size_t plain_len;
    const char *chunked;
    size_t chunked_len;
    bool end; /* a per-key end entry: the stream closes after it */
};

/* How a new stream starts (decided by the server from the request). */
enum stream_start_kind {
    STREAM_START_FRESH,    /* no last id */
    STREAM_START_RESUME,   /* last id found: replay after last_seq */
    STREAM_START_RESET,    /* last id not provable: event: reset first */
};

struct stream_start {
    enum stream_start_kind kind;
    uint64_t last_seq;       /* RESUME: the history position */
    const char *reset_reason;/* RESET: "unknown-id" or "expired" */
    const char *last_id;     /* RESET: the client's id (printable) */
    bool snapshot;
    bool replay_all;         /* per-key "from: start": replay the feed's
                                history from its first entry (no snapshot,
                                and a reset carries no head id) */
    int64_t expires_ms;
};

/*
 * The transport of a stream's response: h1.c (evhttp) or h2.c (nghttp2).
 * The stream decides what to send; the transport frames and writes it.
 * After close, or once the transport has called stream_transport_closed,
 * no op is called again (s->ops is NULL).
 */
struct stream_ops {
    /* Unsent bytes queued for this stream (max_pending). */
    size_t (*pending)(const struct stream *s);
    /* Moves buf's bytes into the response (start, replay, final retry);
     * drained (may be NULL) runs each time the stream's output has all
     * gone out, until the next send replaces it. */
    void (*send)(struct stream *s, struct evbuffer *buf,
                 void (*drained)(struct stream *s));
    /* Hot path: one live frame, shared by the feed's streams. */
    void (*deliver)(struct stream *s, const struct frame *f);
    /* Appends live SSE text (deflated bytes, a heartbeat). */
    void (*append)(struct stream *s, const char *data, size_t len);
    /* Hot path: writes what deliver/append queued; once per loop turn,
     * for each dirty stream (writer.h). */
    void (*write)(struct stream *s);
    /* Ends the response now; reset: abort it (the client drops what is
     * queued) rather than end it cleanly. Sets s->ops to NULL. */
    void (*close)(struct stream *s, bool reset);
};

/* The transport says the client went away: the stream is freed (or, if
 * it is on the reap list, left for the reaper). s->ops is NULL by then. */
void stream_transport_closed(struct stream *s);

/* The loop's cached time in Unix ms. */
int64_t stream_now_ms(const struct stream *s);

/*
 * Starts the SSE response on req (headers, padding, retry, then reset/
 * replay/snapshot as `start` says) and attaches the stream to feed f.
 * Returns the new stream (owned by the bridge's list; freed when the
 * connection closes), or NULL after answering 503 on ENOMEM.
 */
struct stream *stream_open(struct bridge *b, const struct request *req,
                           struct feed *f, const struct stream_start *start);

/* Hot path: a new message for this stream's feed (only if live), as the
 * frame the feed built once for all its streams. Appends to the socket's
 * output; the write happens in stream_write, once per loop turn. */
void stream_deliver(struct stream *s, const struct frame *f, uint64_t seq);

/* The longest HTTP/1.1 chunk header: 16 hex digits and CRLF. */
#define STREAM_CHUNK_HEAD_MAX 18

/* Writes "<len in hex>\r\n", an HTTP/1.1 chunk header, into out (room
 * for STREAM_CHUNK_HEAD_MAX); returns its length. Frames are built with
 * room for one in front (bridge/h1.c sends them chunked). */
size_t stream_chunk_header(size_t len, char *out);

/* Builds msg's frame for feed f in the writer's frame buffer (valid until
 * the next call). Once per message per feed. 0, or -1 on ENOMEM. */
int stream_frame_build(struct bridge *b, const struct feed *f,
                       struct message *msg, struct frame *out);

/* Hot path: writes what is pending for a live stream with one writev,
 * leaving libevent to finish only when the socket is full. Called by the
 * writer (writer.h) for every dirty stream at the end of a loop turn. */
void stream_write(struct stream *s);

/* Heartbeat, token expiry and lifetime checks (from the housekeeping tick). */
void stream_tick(struct stream *s, int64_t now_ms);

/* Closes the stream now: with graceful, sends a final "retry:" of
 * retry_ms first and closes once it is flushed. Never call during a
 * dispatch pass: use bridge_schedule_reap. */
void stream_close(struct stream *s, bool graceful, int64_t retry_ms);

/*
 * Closes a stream the server gives up on (the reap list's reasons). A
 * client that is behind (slow, sending junk, replay evicted, or any
 * unsent output left) is reset (SO_LINGER 0) rather than closed with a
 * FIN, so the kernel frees its queued bytes at once instead of trying to
 * deliver them for minutes (nginx's reset_timedout_connection).
 */
void stream_cut(struct stream *s);

/* Frees every stream of b without ceremony (at exit). */
void stream_free_all(struct bridge *b);

#endif
