/*
 * stream.c - one SSE response; see stream.h for the states.
 *
 * What a stream sends is decided here; how it reaches the client is its
 * transport's (struct stream_ops: h1.c for HTTP/1.x, h2.c for HTTP/2).
 * The start of a stream (preamble, reset, snapshot), its replay batches
 * and its final retry are sent with ops->send, whose drain callback paces
 * the replay. Live traffic, the hot path, goes through ops->deliver with
 * the frame the feed built once for all its streams; the stream is then
 * marked dirty and ops->write runs once per loop turn (writer.h).
 *
 * Closing: a stream is never freed while a feed is being walked. Slow
 * clients and expired tokens go to the bridge's reap list; a client that
 * goes away is reported by the transport (stream_transport_closed), which
 * is never called during a dispatch pass (one thread). A client the
 * server gives up on while bytes are still queued for it is reset, not
 * closed cleanly (stream_cut), so its queue is dropped at once.
 */
#include "bridge/stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <stddef.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "auth/auth.h"
#include "bridge/bridge.h"
#include "lib/compress.h"
#include "bridge/feed.h"
#include "bridge/writer.h"
#include "lib/history.h"
#include "lib/lastvalue.h"
#include "lib/log.h"
#include "lib/message.h"
#include "lib/sse.h"

/* A replay writes up to this many bytes, then waits for the socket. */
#define STREAM_REPLAY_BATCH (64 * 1024)
/* Longest chunk header: 16 hex digits and CRLF. */
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

int64_t stream_now_ms(const struct stream *s)
{
    struct timeval tv;

    event_base_gettimeofday_cached(s->bridge->base, &tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static size_t stream_pending(const struct stream *s)
{
    return s->ops != NULL ? s->ops->pending(s) : 0;
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
 * Moves the scratch buffer into the response, deflating it first for a
 * compressed stream; cb (may be NULL) runs once it is all on the wire.
 * Not for live deliveries (see the top comment).
 */
static void stream_send(struct stream *s, void (*cb)(struct stream *))
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
    if (s->ops == NULL) {
        evbuffer_drain(out, evbuffer_get_length(out));
        return;
    }
    s->ops->send(s, out, cb);
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

/*
 * Appends SSE text to a live stream's output, deflated for a compressed
 * stream; the transport frames it. The write happens in stream_write.
 */
static void stream_append_text(struct stream *s, const char *data,
                               size_t len)
{
    struct evbuffer *z = s->bridge->writer->zscratch;

    if (s->ops == NULL)
        return;
    if (s->z != NULL) {
        if (compressor_write_bytes(s->z, data, len, z) < 0) {
            stream_compress_failed(s);
            return;
        }
        len = evbuffer_get_length(z);
        data = (const char *)evbuffer_pullup(z, -1);
    }
    s->ops->append(s, data, len);
    if (s->z != NULL)
        evbuffer_drain(z, len);
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
    if (s->reaping || s->closing || s->ops == NULL || seq <= s->sent_seq ||
        stream_cut_if_behind(s))
        return;
    if (s->z != NULL) {
        stream_append_text(s, f->plain, f->plain_len);
    } else {
        s->ops->deliver(s, f);
        writer_mark_dirty(s->bridge->writer, s);
    }
    s->sent_seq = seq;
    s->bridge->metrics.delivered++;
    if (f->end)
        stream_end(s);
}

void stream_write(struct stream *s)
{
    s->dirty = false;
    if (s->ops == NULL || s->closing || !s->live)
        return;
    s->ops->write(s);
}

size_t stream_chunk_header(size_t len, char *out)
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
    bool resuming;                 /* a resume that has read nothing yet */
};

/* Messages examined per loop turn while catching up. */
#define STREAM_REPLAY_WORK 512
/* Messages read from the history at a time. */
#define STREAM_REPLAY_READ 64

static void stream_replay(struct stream *s);
static bool stream_append_checkpoint(struct stream *s, uint64_t pos);
static void stream_append_reset(struct stream *s, const char *reason,
                                const char *last_id, bool checkpoint);

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

static void stream_on_drained(struct stream *s)
{
    /* The transport keeps the last callback for later drains too. */
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
        c->resuming = false;
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
    if (r == HISTORY_READ_GONE && s->catchup->resuming) {
        /* The client's own entry is gone (a shared log, whose find cannot
         * tell without asking Redis): a reset, then live from the head. */
        char id[MESSAGE_ID_MAX];
        history_format_id(stream_history(s), s->catchup->after, id,
                          sizeof(id));
        stream_append_reset(s, "expired", id, true);
        s->sent_seq = history_head(stream_history(s));
        at_head = true;
    } else if (r == HISTORY_READ_GONE) {
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

void stream_cut(struct stream *s)
{
    bool behind = s->reap_reason == DROP_SLOW ||
                  s->reap_reason == DROP_INPUT ||
                  s->reap_reason == DROP_REPLAY ||
                  s->reap_reason == DROP_COMPRESS;

    if (s->ops != NULL)
        s->ops->close(s, behind || stream_pending(s) > 0);
    stream_close(s, false, 0);
}

/* The gauge of open streams of s's protocol and TLS (/metrics). */
static uint64_t *stream_open_gauge(const struct stream *s)
{
    bool h2 = strcmp(s->req.protocol, "h2") == 0;

    return &s->bridge->metrics.streams_open[h2][s->req.tls];
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
    *stream_open_gauge(s) -= 1;
    compressor_free(s->z);
    free(s);
}

void stream_transport_closed(struct stream *s)
{
    s->ops = NULL;
    if (s->reaping)
        return; /* the reaper frees it */
    stream_destroy(s);
}

static void stream_free_connection(struct stream *s)
{
    if (s->ops != NULL)
        s->ops->close(s, false);
}

static void stream_on_final_flush(struct stream *s)
{
    stream_free_connection(s);
    stream_destroy(s);
}

void stream_close(struct stream *s, bool graceful, int64_t retry_ms)
{
    struct bridge *b = s->bridge;

    if (s->ops == NULL) {
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
    if (start->kind == STREAM_START_RESET)
        stream_append_reset(s, start->reset_reason, start->last_id,
                            !start->replay_all);
}

/* An "event: reset" frame for last_id. With `checkpoint` it carries the
 * head id, so that the next reconnect resumes from here instead of
 * resetting again; the checkpoint's blank line then ends the event. */
static void stream_append_reset(struct stream *s, const char *reason,
                                const char *last_id, bool checkpoint)
{
    struct bridge *b = s->bridge;

    evbuffer_add_printf(b->writer->scratch,
                        "event: reset\ndata: {\"reason\":\"%s\",\"last_id\":",
                        reason);
    sse_append_json_string(b->writer->scratch, last_id, strlen(last_id));
    evbuffer_add_printf(b->writer->scratch, "}\n");
    if (!checkpoint ||
        !stream_append_checkpoint(s, history_head(stream_history(s))))
        evbuffer_add(b->writer->scratch, "\n", 1);
    b->metrics.resets++;
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
    struct evkeyvalq *in = s->req.in;
    bool keep_auth = auth_enabled(s->bridge->auth);
    struct evkeyval *kv = TAILQ_FIRST(in);

    evhttp_clear_headers(s->req.out);
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
    struct evkeyvalq *out = s->req.out;
    enum compress_kind kind;

    if (!s->bridge->cfg->stream.compression)
        return;
    evhttp_add_header(out, "Vary", "Accept-Encoding");
    kind = compress_negotiate(evhttp_find_header(s->req.in,
                                                 "Accept-Encoding"));
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

struct stream *stream_open(struct bridge *b, const struct request *req,
                           struct feed *f, const struct stream_start *start)
{
    struct stream *s = calloc(1, sizeof(*s));
    int64_t now_ms;

    if (s == NULL) {
        req->ops->reply(req, 503, "Service Unavailable", NULL);
        return NULL;
    }
    s->bridge = b;
    s->req = *req;
    s->expires_ms = start->expires_ms;
    now_ms = stream_now_ms(s);
    s->close_at_ms = stream_lifetime_deadline(s, now_ms);
    evhttp_add_header(req->out, "Content-Type", "text/event-stream");
    evhttp_add_header(req->out, "X-Accel-Buffering", "no");
    stream_negotiate_compression(s);
    if (req->ops->stream_start(req, s) < 0) {
        compressor_free(s->z);
        free(s);
        feed_drop_if_unused(f);
        return NULL;
    }
    s->next = b->streams;
    if (b->streams != NULL)
        b->streams->prev = s;
    b->streams = s;
    b->nstreams++;
    b->metrics.streams_opened++;
    *stream_open_gauge(s) += 1;
    feed_attach(f, s);

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
    if (stream_catchup_new(s, stream_replay_after(s, start)) == 0)
        s->catchup->resuming = start->kind == STREAM_START_RESUME;
    if (s->catchup == NULL ||
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
