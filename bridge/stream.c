/*
 * stream.c - one SSE response; see stream.h for the states.
 *
 * Two write paths. The start of a stream (headers, padding, retry, reset,
 * snapshot), its replay batches and its final retry go through evhttp
 * (evhttp_send_reply_chunk*, whose drain callbacks pace the replay).
 * Live traffic, the hot path, does not: the feed builds each message's
 * frame once (stream_frame_build), stream_deliver sends a stream's first
 * event of a loop turn straight to the socket from that shared buffer,
 * and anything more in the same turn, or what a full socket refused, is
 * appended to the connection's output and written once at the end of the
 * turn (stream_write). The write event is armed only while a socket is
 * full, so a delivery costs one send(2) and no epoll_ctl. Both paths
 * frame chunks the way evhttp chose when it sent the headers (chunked for
 * HTTP/1.1, close-delimited for HTTP/1.0), and append to the same output
 * buffer, so their bytes never reorder.
 *
 * Closing: a stream is never freed while a feed is being walked. Slow
 * clients and expired tokens go to the bridge's reap list; a connection
 * closed by the client arrives here through evhttp's close callback,
 * which is never called during a dispatch pass (one thread). A client
 * the server gives up on while bytes are still queued for it is reset,
 * not closed with a FIN (stream_cut), so the kernel drops its queue.
 *
 * Input: evhttp keeps reading a connection while it writes the response
 * (that is how it learns of a close) but has no use for the bytes, which
 * would pile up in the bufferevent's input without limit. A stream
 * therefore discards them as they arrive (stream_on_input), so reading
 * (and close detection) goes on with no memory held, and cuts a client
 * that sends more than STREAM_MAX_INPUT: a browser sends nothing at all.
 */
#include "bridge/stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <stddef.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "auth/auth.h"
#include "bridge/bridge.h"
#include "lib/compress.h"
#include "bridge/feed.h"
#include "bridge/server.h"
#include "bridge/writer.h"
#include "lib/history.h"
#include "lib/lastvalue.h"
#include "lib/log.h"
#include "lib/message.h"
#include "lib/sse.h"

/* A replay writes up to this many bytes, then waits for the socket. */
#define STREAM_REPLAY_BATCH (64 * 1024)
/* Longest chunk header: 16 hex digits and CRLF. */
#define STREAM_CHUNK_HEAD_MAX 18
/* A client whose socket accepts nothing for this long is dropped. */
#define STREAM_WRITE_TIMEOUT_S 30
/* Bytes a client may send after its request before it is cut. */
#define STREAM_MAX_INPUT 4096
/* The event line of a per-key route's end entry. */
#define STREAM_END_LINE "event: end\n"

/* The history this stream replays and checkpoints from: its feed's (a
 * per-key route's key, bridge/keyed.c), else the bridge's. */
static struct history *stream_history(const struct stream *s)
{
    if (s->feed != NULL && s->feed->history != NULL)
        return s->feed->history;
    return s->bridge->history;
}

static int64_t stream_now_ms(const struct stream *s)
{
    struct timeval tv;

    event_base_gettimeofday_cached(s->bridge->base, &tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static size_t stream_pending(const struct stream *s)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(s->evcon);

    return evbuffer_get_length(bufferevent_get_output(bev));
}

/*
 * Deflate failed part way: what it left in the shared zscratch belongs to
 * this stream's broken deflate stream and must never reach another one,
 * and this client's stream cannot continue (a partial frame would corrupt
 * it), so it is cut and resumes by id.
 */
static void stream_compress_failed(struct stream *s)
{
    struct evbuffer *z = s->bridge->writer->zscratch;

    evbuffer_drain(z, evbuffer_get_length(z));
    if (s->reaping)
        return;
    log_limited(LOG_WARN, 10000, "compression failed; cutting the stream");
    s->reap_reason = DROP_COMPRESS;
    bridge_schedule_reap(s->bridge, s);
}

/*
 * The evhttp path: moves the scratch buffer into the response, deflating
 * it first for a compressed stream; cb (may be NULL) runs once it is all
 * on the wire. Not for live deliveries (see the top comment).
 */
static void stream_send(struct stream *s,
                        void (*cb)(struct evhttp_connection *, void *))
{
    struct bridge *b = s->bridge;
    struct evbuffer *out = b->writer->scratch;

    if (evbuffer_get_length(out) == 0)
        return;
    if (s->z != NULL) {
        if (compressor_write(s->z, b->writer->scratch, b->writer->zscratch) < 0) {
            evbuffer_drain(b->writer->scratch, evbuffer_get_length(b->writer->scratch));
            stream_compress_failed(s);
            return;
        }
        out = b->writer->zscratch;
    }
    evhttp_send_reply_chunk_with_cb(s->req, out, cb, s);
    s->last_write_ms = stream_now_ms(s);
}

static void stream_flush(struct stream *s)
{
    stream_send(s, NULL);
}

/* Appends msg's frame ("id:", optional "event:", body) to scratch. */
static void stream_append_frame(struct stream *s, struct message *msg)
{
    struct bridge *b = s->bridge;
    const struct feed *f = s->feed;
    size_t len;
    const char *body = message_body(msg, f->format,
                                    bridge_source_name(b, msg->source), &len);

    if (body == NULL)
        return; /* out of memory: the client resumes later by id */
    evbuffer_add(b->writer->scratch, "id: ", 4);
    evbuffer_add(b->writer->scratch, msg->id, msg->id_len);
    evbuffer_add(b->writer->scratch, "\n", 1);
    if (msg->stream_end)
        evbuffer_add(b->writer->scratch, STREAM_END_LINE, sizeof(STREAM_END_LINE) - 1);
    else if (f->event == ROUTE_EVENT_FIXED)
        evbuffer_add(b->writer->scratch, f->event_line, f->event_line_len);
    else if (f->event == ROUTE_EVENT_TOPIC)
        sse_append_event(b->writer->scratch, msg->topic, msg->topic_len);
    evbuffer_add(b->writer->scratch, body, len);
    s->sent_seq = msg->seq;
    b->metrics.delivered++;
}

/*
 * A stream with more than max_pending bytes still unsent before a new
 * write is cut (it resumes by id from the history). Checked before the
 * write, so that one event larger than max_pending (a 1 MiB payload as
 * base64 json) still reaches a client that keeps up. Returns true when
 * the stream was cut.
 */
static bool stream_cut_if_behind(struct stream *s)
{
    if (stream_pending(s) <= s->bridge->cfg->stream.max_pending)
        return false;
    s->reap_reason = DROP_SLOW;
    bridge_schedule_reap(s->bridge, s);
    return true;
}

static struct evbuffer *stream_output(const struct stream *s)
{
    return bufferevent_get_output(evhttp_connection_get_bufferevent(s->evcon));
}

/* Writes "<len in hex>\r\n", an HTTP/1.1 chunk header, into out (room
 * for STREAM_CHUNK_HEAD_MAX); returns its length. */
static size_t stream_chunk_header(size_t len, char *out)
{
    static const char hex[] = "0123456789abcdef";
    char digits[16];
    size_t n = 0, i = 0;

    do {
        digits[n++] = hex[len & 15];
        len >>= 4;
    } while (len > 0);
    while (n > 0)
        out[i++] = digits[--n];
    out[i++] = '\r';
    out[i++] = '\n';
    return i;
}

/*
 * Appends SSE text to a live stream's output, framed for its connection:
 * deflated for a compressed stream, one chunk for HTTP/1.1, as is for a
 * close-delimited HTTP/1.0 body. The write happens in stream_write.
 */
static void stream_append_text(struct stream *s, const char *data,
                               size_t len)
{
    struct bridge *b = s->bridge;
    struct evbuffer *out = stream_output(s);
    struct evbuffer *z = b->writer->zscratch;
    char head[STREAM_CHUNK_HEAD_MAX];

    if (s->z != NULL) {
        if (compressor_write_bytes(s->z, data, len, z) < 0) {
            stream_compress_failed(s);
            return;
        }
        len = evbuffer_get_length(z);
    }
    if (s->chunked)
        evbuffer_add(out, head, stream_chunk_header(len, head));
    if (s->z != NULL)
        evbuffer_add_buffer(out, z);
    else
        evbuffer_add(out, data, len);
    if (s->chunked)
        evbuffer_add(out, "\r\n", 2);
    writer_mark_dirty(s->bridge->writer, s);
}

/* Appends the scratch buffer's text (a heartbeat) and empties it. */
static void stream_append_scratch(struct stream *s)
{
    struct evbuffer *scratch = s->bridge->writer->scratch;
    size_t len = evbuffer_get_length(scratch);

    stream_append_text(s, (const char *)evbuffer_pullup(scratch, -1), len);
    evbuffer_drain(scratch, len);
}

/*
 * Hot path: the stream's first event in this loop turn goes straight to
 * the socket from the shared frame: one send(2), no copy into a buffer, no
 * allocation. What the socket does not take, and any later event of the
 * same turn, is appended to the output and written once at the end of the
 * turn (stream_write), so bursts and slow sockets still coalesce.
 */
static void stream_send_frame(struct stream *s, const char *data, size_t len)
{
    struct evbuffer *out = stream_output(s);
    ssize_t n = 0;

    if (!s->tls && !s->dirty && evbuffer_get_length(out) == 0) {
        n = send(s->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0)
            n = 0; /* EAGAIN, or an error stream_write will meet */
        s->last_write_ms = stream_now_ms(s);
    }
    if ((size_t)n < len)
        evbuffer_add(out, data + n, len - (size_t)n);
    writer_mark_dirty(s->bridge->writer, s);
}

/* The end entry of a per-key stream went out: close gracefully after
 * this pass (the reconnect with its id gets 204). */
static void stream_end(struct stream *s)
{
    s->reap_reason = DROP_END;
    bridge_schedule_reap(s->bridge, s);
}

void stream_deliver(struct stream *s, const struct frame *f, uint64_t seq)
{
    /* seq <= sent_seq: a per-key stream that resumed from an id newer
     * than its key's reader had yet read (another replica's id). */
    if (s->reaping || s->closing || seq <= s->sent_seq ||
        stream_cut_if_behind(s))
        return;
    if (s->z != NULL)
        stream_append_text(s, f->plain, f->plain_len);
    else if (s->chunked)
        stream_send_frame(s, f->chunked, f->chunked_len);
    else
        stream_send_frame(s, f->plain, f->plain_len);
    s->sent_seq = seq;
    s->bridge->metrics.delivered++;
    if (f->end)
        stream_end(s);
}

/*
 * Hot path, TLS: the turn's frames were only appended to the output;
 * enabling writes lets bufferevent_openssl encrypt and send them all now,
 * and it keeps writing as the socket drains. Writes stay disabled while
 * nothing waits, so that appends between turns do not each become a TLS
 * record of their own.
 */
static void stream_write_tls(struct stream *s, struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);

    if (evbuffer_get_length(out) == 0) {
        bufferevent_disable(bev, EV_WRITE);
        return;
    }
    bufferevent_enable(bev, EV_WRITE);
    if (evbuffer_get_length(out) == 0)
        bufferevent_disable(bev, EV_WRITE);
    s->last_write_ms = stream_now_ms(s);
}

void stream_write(struct stream *s)
{
    struct bufferevent *bev;
    struct evbuffer *out;

    s->dirty = false;
    if (s->evcon == NULL || s->closing || !s->live)
        return;
    bev = evhttp_connection_get_bufferevent(s->evcon);
    if (s->tls) {
        stream_write_tls(s, bev);
        return;
    }
    out = bufferevent_get_output(bev);
    if (evbuffer_get_length(out) == 0) {
        bufferevent_disable(bev, EV_WRITE);
        return; /* everything went out in stream_send_frame */
    }
    evbuffer_write(out, s->fd);
    /* What the socket did not take, libevent writes when it can; with an
     * empty buffer no write event is armed, so an idle-then-busy stream
     * costs one writev per turn and no epoll_ctl. */
    if (evbuffer_get_length(out) > 0)
        bufferevent_enable(bev, EV_WRITE);
    else
        bufferevent_disable(bev, EV_WRITE);
    s->last_write_ms = stream_now_ms(s);
}

int stream_frame_build(struct bridge *b, const struct feed *f,
                       struct message *msg, struct frame *out)
{
    size_t body_len, len, head_len, event_len = 0;
    const char *body = message_body(msg, f->format,
                                    bridge_source_name(b, msg->source),
                                    &body_len);
    char head[STREAM_CHUNK_HEAD_MAX];
    char *p;

    if (body == NULL)
        return -1;
    if (msg->stream_end)
        evbuffer_add(b->writer->scratch, STREAM_END_LINE, sizeof(STREAM_END_LINE) - 1);
    else if (f->event == ROUTE_EVENT_TOPIC)
        sse_append_event(b->writer->scratch, msg->topic, msg->topic_len);
    else if (f->event == ROUTE_EVENT_FIXED)
        evbuffer_add(b->writer->scratch, f->event_line, f->event_line_len);
    event_len = evbuffer_get_length(b->writer->scratch);
    len = 4 + msg->id_len + 1 + event_len + body_len;
    if (writer_frame_reserve(b->writer, STREAM_CHUNK_HEAD_MAX + len + 2) < 0) {
        evbuffer_drain(b->writer->scratch, event_len);
        return -1;
    }
    /* The frame starts after room for the chunk header, which is then
     * written right before it: both views share one copy. */
    p = b->writer->framebuf + STREAM_CHUNK_HEAD_MAX;
    memcpy(p, "id: ", 4);
    memcpy(p + 4, msg->id, msg->id_len);
    p[4 + msg->id_len] = '\n';
    evbuffer_remove(b->writer->scratch, p + 5 + msg->id_len, event_len);
    memcpy(p + 5 + msg->id_len + event_len, body, body_len);
    memcpy(p + len, "\r\n", 2);
    head_len = stream_chunk_header(len, head);
    memcpy(p - head_len, head, head_len);
    out->plain = p;
    out->plain_len = len;
    out->chunked = p - head_len;
    out->chunked_len = head_len + len + 2;
    out->end = msg->stream_end;
    return 0;
}

/*
 * Catching up: the snapshot (references taken when the stream opened, so
 * it stands for one moment), then the history after `after`. Both are
 * written in batches of STREAM_REPLAY_BATCH bytes, the next batch once the
 * socket has drained the last (so at most one batch is queued, like
 * max_pending bounds live traffic), and at most STREAM_REPLAY_WORK
 * messages are examined per loop turn, so a replay through a narrow
 * filter cannot hold the loop: it yields and goes on in a later turn.
 */
struct stream_catchup {
    struct stream *stream;
    struct history_waiter waiter;  /* the history wakes us (async reads) */
    struct event *again;           /* continues in a later loop turn */
    struct message **snap;         /* owned references */
    size_t snap_count, snap_next;
    uint64_t after;                /* replay: last position examined */
    bool ended;                    /* a per-key end entry was replayed */
};

/* Messages examined per loop turn while catching up. */
#define STREAM_REPLAY_WORK 512
/* Messages read from the history at a time. */
#define STREAM_REPLAY_READ 64

static void stream_replay(struct stream *s);
static bool stream_append_checkpoint(struct stream *s, uint64_t pos);

static void stream_catchup_free(struct stream *s)
{
    struct stream_catchup *c = s->catchup;

    if (c == NULL)
        return;
    history_cancel(stream_history(s), &c->waiter);
    if (c->again != NULL)
        event_free(c->again);
    for (size_t i = c->snap_next; i < c->snap_count; i++)
        message_unref(c->snap[i]);
    free(c->snap);
    free(c);
    s->catchup = NULL;
}

static void stream_on_catchup_again(evutil_socket_t fd, short what,
                                    void *arg)
{
    stream_replay(arg);
}

static void stream_on_history_wake(struct history_waiter *w)
{
    struct stream_catchup *c =
        (struct stream_catchup *)((char *)w -
                                  offsetof(struct stream_catchup, waiter));

    event_active(c->again, EV_TIMEOUT, 0);
}

/* Allocates s->catchup to replay after position `after`. 0 or -1. */
static int stream_catchup_new(struct stream *s, uint64_t after)
{
    struct stream_catchup *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return -1;
    c->stream = s;
    c->after = after;
    c->waiter.wake = stream_on_history_wake;
    c->again = event_new(s->bridge->base, -1, 0, stream_on_catchup_again, s);
    s->catchup = c;
    if (c->again == NULL) {
        stream_catchup_free(s);
        return -1;
    }
    return 0;
}

static void stream_on_drained(struct evhttp_connection *evcon, void *arg)
{
    struct stream *s = arg;

    /* evhttp keeps the last callback for later drains too. */
    if (!s->live)
        stream_replay(s);
}

/* Appends snapshot frames up to the batch size. True when it is done. */
static bool stream_append_snapshot_batch(struct stream *s)
{
    struct stream_catchup *c = s->catchup;

    while (c->snap_next < c->snap_count &&
           evbuffer_get_length(s->bridge->writer->scratch) < STREAM_REPLAY_BATCH) {
        struct message *msg = c->snap[c->snap_next++];
        stream_append_frame(s, msg);
        message_unref(msg);
    }
    if (c->snap_next < c->snap_count)
        return false;
    if (c->snap != NULL) {
        free(c->snap);
        c->snap = NULL;
        c->snap_count = c->snap_next = 0;
        /* The head the snapshot stood for: a resume starts after it. */
        stream_append_checkpoint(s, c->after);
    }
    return true;
}

/*
 * Appends replayed frames up to the batch size or the work budget.
 * Returns the read status; *at_head is set when nothing follows.
 */
static enum history_read stream_append_replay_batch(struct stream *s,
                                                    bool *at_head)
{
    struct bridge *b = s->bridge;
    struct stream_catchup *c = s->catchup;
    struct message *batch[STREAM_REPLAY_READ];
    size_t n, examined = 0;
    enum history_read r = HISTORY_READ_OK;

    *at_head = false;
    while (evbuffer_get_length(b->writer->scratch) < STREAM_REPLAY_BATCH &&
           examined < STREAM_REPLAY_WORK) {
        r = history_read(stream_history(s), c->after, batch,
                         STREAM_REPLAY_READ,
                         &n, &c->waiter);
        if (r != HISTORY_READ_OK)
            return r;
        if (n == 0) {
            *at_head = true;
            return r;
        }
        for (size_t i = 0; i < n; i++) {
            c->after = batch[i]->seq;
            if (!c->ended && feed_matches(s->feed, batch[i])) {
                stream_append_frame(s, batch[i]);
                b->metrics.replayed++;
                c->ended = batch[i]->stream_end;
            }
            message_unref(batch[i]);
        }
        if (c->ended)
            return r;
        examined += n;
    }
    return r;
}

/*
 * One step of catching up (see struct stream_catchup). Being
 * single-threaded, nothing can be appended to the history between the
 * read that finds the head and `live = true`.
 */
static void stream_replay(struct stream *s)
{
    struct bridge *b = s->bridge;
    bool at_head = false;
    enum history_read r = HISTORY_READ_OK;

    if (s->reaping || s->closing || s->catchup == NULL)
        return;
    if (stream_append_snapshot_batch(s))
        r = stream_append_replay_batch(s, &at_head);
    if (s->catchup->ended) {
        /* The end entry is in scratch: send it, then close. */
        stream_flush(s);
        stream_end(s);
        return;
    }
    if (r == HISTORY_READ_GONE) {
        /* Evicted under us: close; the client resumes and gets a reset. */
        evbuffer_drain(b->writer->scratch, evbuffer_get_length(b->writer->scratch));
        s->reap_reason = DROP_REPLAY;
        bridge_schedule_reap(b, s);
        return;
    }
    if (at_head) {
        stream_catchup_free(s);
        s->live = true;
        stream_flush(s);
        return;
    }
    if (evbuffer_get_length(b->writer->scratch) > 0) {
        stream_send(s, stream_on_drained);
        return;
    }
    /* Nothing to write yet: the work budget ran out (continue in the next
     * loop turn), or the history is fetching (it wakes us). */
    if (r == HISTORY_READ_OK)
        event_active(s->catchup->again, EV_TIMEOUT, 0);
}

/* Appends "id: <id of pos>\n\n" when pos is past what the client has, so
 * its position keeps up. Returns whether it did. */
static bool stream_append_checkpoint(struct stream *s, uint64_t pos)
{
    struct bridge *b = s->bridge;
    char id[MESSAGE_ID_MAX];
    size_t len;

    if (pos == 0 || pos <= s->sent_seq)
        return false;
    len = history_format_id(stream_history(s), pos, id, sizeof(id));
    evbuffer_add(b->writer->scratch, "id: ", 4);
    evbuffer_add(b->writer->scratch, id, len);
    evbuffer_add(b->writer->scratch, "\n\n", 2);
    s->sent_seq = pos;
    return true;
}

void stream_tick(struct stream *s, int64_t now_ms)
{
    const struct stream_config *sc = &s->bridge->cfg->stream;

    if (s->reaping || s->closing)
        return;
    if (s->expires_ms > 0 && now_ms >= s->expires_ms) {
        s->reap_reason = DROP_EXPIRED;
        bridge_schedule_reap(s->bridge, s);
        return;
    }
    if (s->close_at_ms > 0 && now_ms >= s->close_at_ms) {
        s->reap_reason = DROP_LIFETIME;
        bridge_schedule_reap(s->bridge, s);
        return;
    }
    /* A replaying stream writes anyway, and owns the drain callback. */
    if (!s->live || now_ms - s->last_write_ms < sc->heartbeat_ms)
        return;
    if (stream_cut_if_behind(s))
        return;
    if (!stream_append_checkpoint(s, history_head(stream_history(s))))
        evbuffer_add(s->bridge->writer->scratch, ":\n\n", 3);
    stream_append_scratch(s);
}

/* Makes the coming close(2) of the socket send a reset and drop whatever
 * the kernel still holds for the client. */
static void stream_set_reset(struct stream *s)
{
    static const struct linger reset = {1, 0};

    if (setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)) != 0)
        log_debug("cannot set SO_LINGER on a stream's socket");
}

/*
 * The input buffer's callback: what a client sends after its request is
 * dropped as it arrives; more than STREAM_MAX_INPUT cuts the stream. Runs
 * inside libevent's read, so the cut goes through the reap list.
 */
static void stream_on_input(struct evbuffer *in,
                            const struct evbuffer_cb_info *info, void *arg)
{
    struct stream *s = arg;

    if (info->n_added == 0)
        return; /* our own drain below */
    s->input_bytes += info->n_added;
    evbuffer_drain(in, evbuffer_get_length(in));
    if (s->input_bytes <= STREAM_MAX_INPUT || s->reaping || s->closing)
        return;
    log_limited(LOG_INFO, 10000, "cut a stream whose client sent %zu bytes "
                "after its request", s->input_bytes);
    s->reap_reason = DROP_INPUT;
    bridge_schedule_reap(s->bridge, s);
}

/* Starts discarding the connection's input (pipelined bytes already
 * buffered count too). */
static void stream_input_attach(struct stream *s)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(s->evcon);
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t buffered = evbuffer_get_length(in);

    s->input_cb = evbuffer_add_cb(in, stream_on_input, s);
    s->input_bytes = buffered;
    evbuffer_drain(in, buffered);
    /* evhttp paused reading while it ran our handler; its reply path
     * turns it back on, but say so here too: close detection needs it. */
    bufferevent_enable(bev, EV_READ);
}

static void stream_input_detach(struct stream *s)
{
    if (s->input_cb == NULL || s->evcon == NULL)
        return;
    evbuffer_remove_cb_entry(
        bufferevent_get_input(evhttp_connection_get_bufferevent(s->evcon)),
        s->input_cb);
    s->input_cb = NULL;
}

void stream_cut(struct stream *s)
{
    bool behind = s->reap_reason == DROP_SLOW ||
                  s->reap_reason == DROP_INPUT ||
                  s->reap_reason == DROP_REPLAY ||
                  s->reap_reason == DROP_COMPRESS;

    if (s->evcon != NULL && (behind || stream_pending(s) > 0))
        stream_set_reset(s);
    stream_close(s, false, 0);
}

/* Unlinks s from its feed and the bridge's list and frees it. The
 * connection must already be gone or about to be freed by the caller. */
static void stream_destroy(struct stream *s)
{
    struct bridge *b = s->bridge;

    stream_catchup_free(s);
    if (s->feed != NULL)
        feed_detach(s->feed, s);
    if (s->dirty)
        writer_unmark_dirty(b->writer, s);
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        b->streams = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    b->nstreams--;
    b->metrics.streams_open[s->tls]--;
    compressor_free(s->z);
    free(s);
}

/* evhttp: the client went away (or the connection failed). libevent
 * frees the connection and request after this returns. */
static void stream_on_close(struct evhttp_connection *evcon, void *arg)
{
    struct stream *s = arg;

    /* The write timeout ends here too: bytes still unsent mean a client
     * that stopped reading, which gets a reset (see stream_cut). */
    if (stream_pending(s) > 0)
        stream_set_reset(s);
    stream_input_detach(s);

    /* A client that hangs up mid-response leaves the unfinished request
     * detached from the connection, and libevent 2.1 then leaves freeing
     * it to us: evhttp_send_reply_end frees a detached request. */
    if (s->req != NULL && evhttp_request_get_connection(s->req) == NULL)
        evhttp_send_reply_end(s->req);
    s->evcon = NULL;
    s->req = NULL;
    if (s->reaping)
        return; /* the reaper frees it */
    stream_destroy(s);
}

static void stream_free_connection(struct stream *s)
{
    struct evhttp_connection *evcon = s->evcon;

    if (evcon == NULL)
        return;
    stream_input_detach(s);
    s->evcon = NULL;
    s->req = NULL;
    evhttp_connection_set_closecb(evcon, NULL, NULL);
    evhttp_connection_free(evcon);
}

static void stream_on_final_flush(struct evhttp_connection *evcon, void *arg)
{
    struct stream *s = arg;

    stream_free_connection(s);
    stream_destroy(s);
}

void stream_close(struct stream *s, bool graceful, int64_t retry_ms)
{
    struct bridge *b = s->bridge;

    if (s->evcon == NULL) {
        stream_destroy(s);
        return;
    }
    if (!graceful) {
        stream_free_connection(s);
        stream_destroy(s);
        return;
    }
    /* Stop deliveries now; close once the final retry is on the wire. A
     * replay's pending read goes first: detaching may free the feed's
     * history. */
    stream_catchup_free(s);
    if (s->feed != NULL)
        feed_detach(s->feed, s);
    s->closing = true;
    evbuffer_add_printf(b->writer->scratch, "retry: %lld\n\n", (long long)retry_ms);
    stream_send(s, stream_on_final_flush);
}

void stream_free_all(struct bridge *b)
{
    while (b->streams != NULL) {
        struct stream *s = b->streams;
        stream_free_connection(s);
        stream_destroy(s);
    }
}

/* Writes the padding comment, "retry:", and a reset frame if asked. */
static void stream_append_preamble(struct stream *s,
                                   const struct stream_start *start)
{
    struct bridge *b = s->bridge;
    const struct stream_config *sc = &b->cfg->stream;

    if (sc->padding > 0) {
        evbuffer_add(b->writer->scratch, ":", 1);
        for (uint64_t i = 1; i < sc->padding; i++)
            evbuffer_add(b->writer->scratch, " ", 1);
        evbuffer_add(b->writer->scratch, "\n", 1);
    }
    evbuffer_add_printf(b->writer->scratch, "retry: %lld\n\n",
                        (long long)sc->retry_ms);
    if (start->kind != STREAM_START_RESET)
        return;
    evbuffer_add_printf(b->writer->scratch,
                        "event: reset\ndata: {\"reason\":\"%s\",\"last_id\":",
                        start->reset_reason);
    sse_append_json_string(b->writer->scratch, start->last_id, strlen(start->last_id));
    evbuffer_add_printf(b->writer->scratch, "}\n");
    /* The reset carries the head id, so that the next reconnect resumes
     * from here instead of resetting again; the checkpoint's blank line
     * then ends the event. */
    if (start->replay_all ||
        !stream_append_checkpoint(s, history_head(stream_history(s))))
        evbuffer_add(b->writer->scratch, "\n", 1);
    b->metrics.resets++;
}

/* evhttp's idle timeout (meant for reading requests) would cut quiet
 * streams: keep only a write timeout, for clients that stop reading. */
static void stream_set_timeouts(struct stream *s)
{
    static const struct timeval write_timeout = {STREAM_WRITE_TIMEOUT_S, 0};
    struct bufferevent *bev = evhttp_connection_get_bufferevent(s->evcon);

    bufferevent_set_timeouts(bev, NULL, &write_timeout);
}

struct snapshot_collect {
    struct stream *stream;
    struct message **items;
    size_t count;
};

static void stream_on_snapshot_entry(struct message *msg, void *arg)
{
    struct snapshot_collect *sc = arg;

    if (feed_matches(sc->stream->feed, msg))
        sc->items[sc->count++] = message_ref(msg);
}

/* Takes references to the latest event of each matching topic, oldest
 * first; they are written as the socket drains (stream_replay), then the
 * head id of this moment, so a resume starts after all they stood for. */
static int stream_collect_snapshot(struct stream *s)
{
    struct snapshot_collect sc = {s, NULL, 0};
    size_t max = lastvalue_count(s->bridge->lastvalue);

    if (max > 0 && (sc.items = malloc(max * sizeof(*sc.items))) == NULL)
        return -1;
    lastvalue_each(s->bridge->lastvalue, stream_on_snapshot_entry, &sc);
    s->catchup->snap = sc.items;
    s->catchup->snap_count = sc.count;
    return 0;
}

static int64_t stream_lifetime_deadline(struct stream *s, int64_t now_ms)
{
    int64_t life = s->bridge->cfg->stream.max_lifetime_ms;

    if (life <= 0)
        return 0;
    /* 80-100% of max_lifetime, so replicas' streams do not all close at
     * once after a rolling update. */
    return now_ms + life * 8 / 10 +
           (int64_t)bridge_random(s->bridge, (uint64_t)(life / 5) + 1);
}

/*
 * Frees the header lists libevent keeps for the connection's lifetime
 * once they have served: our response headers are on the wire, and of
 * the request's only Authorization and Cookie are read again (on SIGHUP,
 * by server_rehome, with auth on). About a third of a stream's memory.
 */
static void stream_trim_request(struct stream *s)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(s->req);
    bool keep_auth = auth_enabled(s->bridge->auth);
    struct evkeyval *kv = TAILQ_FIRST(in);

    evhttp_clear_headers(evhttp_request_get_output_headers(s->req));
    while (kv != NULL) {
        struct evkeyval *next = TAILQ_NEXT(kv, next);
        if (!keep_auth || (strcasecmp(kv->key, "Authorization") != 0 &&
                           strcasecmp(kv->key, "Cookie") != 0))
            evhttp_remove_header(in, kv->key);
        kv = next;
    }
}

/* With stream.compression, gzip/deflate when the client accepts it. A
 * compressor that cannot be allocated just means an uncompressed
 * stream. */
static void stream_negotiate_compression(struct stream *s)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(s->req);
    enum compress_kind kind;

    if (!s->bridge->cfg->stream.compression)
        return;
    evhttp_add_header(out, "Vary", "Accept-Encoding");
    kind = compress_negotiate(evhttp_find_header(
        evhttp_request_get_input_headers(s->req), "Accept-Encoding"));
    if (kind == COMPRESS_NONE || (s->z = compressor_new(kind)) == NULL)
        return;
    evhttp_add_header(out, "Content-Encoding", compress_name(kind));
}

/* Where catching up starts: after the client's id, from the beginning (a
 * per-key route's "from: start"), or, after a snapshot, from the head of
 * this moment. */
static uint64_t stream_replay_after(const struct stream *s,
                                    const struct stream_start *start)
{
    if (start->kind == STREAM_START_RESUME)
        return start->last_seq;
    if (start->replay_all)
        return 0;
    return history_head(stream_history(s));
}

struct stream *stream_open(struct bridge *b, struct evhttp_request *req,
                           struct feed *f, const struct stream_start *start)
{
    struct stream *s = calloc(1, sizeof(*s));
    struct evkeyvalq *hdrs = evhttp_request_get_output_headers(req);
    int64_t now_ms;

    if (s == NULL) {
        evhttp_send_error(req, 503, "Service Unavailable");
        return NULL;
    }
    s->bridge = b;
    s->req = req;
    s->evcon = evhttp_request_get_connection(req);
    s->expires_ms = start->expires_ms;
    now_ms = stream_now_ms(s);
    s->close_at_ms = stream_lifetime_deadline(s, now_ms);
    s->next = b->streams;
    if (b->streams != NULL)
        b->streams->prev = s;
    b->streams = s;
    b->nstreams++;
    b->metrics.streams_opened++;
    s->tls = server_is_tls(b->server);
    b->metrics.streams_open[s->tls]++;
    feed_attach(f, s);

    evhttp_add_header(hdrs, "Content-Type", "text/event-stream");
    evhttp_add_header(hdrs, "X-Accel-Buffering", "no");
    stream_negotiate_compression(s);
    evhttp_send_reply_start(req, 200, "OK");
    /* evhttp chose the framing (chunked for HTTP/1.1) when it sent the
     * headers; live writes frame their own chunks the same way. */
    s->chunked = evhttp_find_header(hdrs, "Transfer-Encoding") != NULL;
    s->fd = bufferevent_getfd(evhttp_connection_get_bufferevent(s->evcon));
    evhttp_connection_set_closecb(s->evcon, stream_on_close, s);
    stream_set_timeouts(s);
    stream_input_attach(s);

    stream_append_preamble(s, start);
    stream_trim_request(s);
    if (start->kind == STREAM_START_RESUME)
        s->sent_seq = start->last_seq;
    if (start->kind != STREAM_START_RESUME && !start->snapshot &&
        !start->replay_all) {
        s->live = true;
        stream_flush(s);
        return s;
    }
    if (stream_catchup_new(s, stream_replay_after(s, start)) < 0 ||
        (start->kind != STREAM_START_RESUME && !start->replay_all &&
         stream_collect_snapshot(s) < 0)) {
        /* Out of memory: the client comes back later by itself. */
        s->reap_reason = DROP_REPLAY;
        bridge_schedule_reap(b, s);
        return s;
    }
    stream_replay(s);
    return s;
}
