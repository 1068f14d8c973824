/*
 * h2.c - the HTTP/2 transport, with nghttp2 on the libevent loop.
 *
 * A connection is taken over from evhttp once it is known to speak
 * HTTP/2 (h2_conn_take): its bufferevent's callbacks become ours and
 * nghttp2 parses what arrives. A request (HEADERS, and DATA up to
 * END_STREAM) becomes a struct request handed to server.c, exactly as an
 * HTTP/1.x one; a plain answer is one response with its body, an SSE
 * stream is a response whose body never ends, fed by the stream ops
 * below.
 *
 * The fan-out keeps its shape: the feed builds each frame once; a
 * stream's deliver appends those bytes to its own buffer (h2_stream.buf)
 * and the stream is marked dirty; at the end of the loop turn the
 * writer's pass schedules the connection's flush, which runs once per
 * turn however many of its streams got events: nghttp2 takes each
 * stream's bytes as far as flow control allows, and h2_on_send_data
 * writes the 9-byte DATA header and moves the bytes (no copy) into the
 * connection's output. Data a peer's window does not admit stays in the
 * stream's buffer and counts against stream.max_pending: a stream over
 * it is cut, which here is RST_STREAM, and its siblings go on. When the
 * connection itself stops draining (its output over H2_OUTPUT_HIGH) no
 * more frames are produced, and then the whole connection's buffered
 * bytes count against max_pending for each of its streams.
 *
 * Bounds against a hostile peer: SETTINGS_MAX_CONCURRENT_STREAMS
 * (http2.max_concurrent_streams), a header list of at most
 * H2_MAX_HEADER_LIST bytes (an HPACK bomb is stopped as it inflates:
 * the stream is reset), nghttp2's own limits on CONTINUATION frames,
 * queued PING/SETTINGS acknowledgements (flood: the connection is
 * dropped), SETTINGS entries, and the rate of stream resets (rapid
 * reset, CVE-2023-44487: the connection gets GOAWAY). Reading stops
 * while the output is over H2_OUTPUT_HIGH, so a peer that sends without
 * reading cannot make us queue answers for it.
 *
 * Lifetime: nothing is freed inside an nghttp2 callback. A connection
 * that must end is marked dead and its flush event frees it; an HTTP/2
 * stream is freed in nghttp2's stream-close callback, after telling its
 * struct stream (stream_transport_closed), which, being outside any feed
 * pass, may free it at once.
 */
#include "bridge/h2.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <nghttp2/nghttp2.h>

#include "bridge/bridge.h"
#include "bridge/request.h"
#include "bridge/server.h"
#include "bridge/stream.h"
#include "lib/log.h"

/* Request header bytes (names + values, as nghttp2 counts them). */
#define H2_MAX_HEADER_LIST (16 * 1024)
/* Frames are produced while the connection's output holds less. */
#define H2_OUTPUT_HIGH (64 * 1024)
/* A client whose socket accepts nothing for this long is dropped. */
#define H2_WRITE_TIMEOUT_S 30
/* Stream resets a peer may cause: a burst, then this many per second. */
#define H2_RESET_BURST 100
#define H2_RESET_RATE 33
/* Queued PING/SETTINGS acknowledgements before the peer is a flood. */
#define H2_MAX_OUTBOUND_ACK 100
/* Request bytes (DATA) a stream may send: a GET has none. */
#define H2_MAX_REQUEST_BODY 4096

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct h2_conn;

struct h2_server {
    struct server *srv;
    struct bridge *bridge;
    nghttp2_session_callbacks *cbs; /* owned */
    nghttp2_option *opt;            /* owned */
    struct h2_conn *conns;          /* every open connection */
    int64_t idle_ms;
};

/* One HTTP/2 stream: a request and its response. */
struct h2_stream {
    struct h2_conn *conn;
    int32_t id;
    struct evkeyvalq in, out;     /* request / response headers (owned) */
    char *method, *path, *query;  /* owned; NULL: not sent */
    size_t header_bytes, body_bytes;
    struct evbuffer *buf;         /* response body waiting for DATA */
    struct stream *stream;        /* the SSE stream; NULL: none (any more) */
    struct request_watch *watch;  /* a parked request's watch */
    bool dispatched;              /* handed to server.c */
    bool eof;                     /* the body ends once buf is drained */
    struct h2_stream *prev, *next;
};

struct h2_conn {
    struct h2_server *h2;
    struct bufferevent *bev;         /* evhttp's, taken over */
    struct evhttp_connection *evcon; /* evhttp's; freed with us */
    nghttp2_session *session;        /* owned */
    struct event *flush_ev;          /* writes (and frees a dead conn) */
    struct event *idle_ev;           /* no stream for idle_ms: GOAWAY */
    struct h2_stream *streams;
    size_t buffered;                 /* bytes in the streams' buffers */
    size_t nsse;                     /* SSE streams open */
    bool tls;
    bool dead;                       /* to be freed by flush_ev */
    struct h2_conn *prev, *next;
};

static const struct stream_ops h2_stream_ops;
static const struct request_ops h2_request_ops;

int h2_preface_match(const unsigned char *data, size_t len)
{
    size_t want = sizeof(h2_preface) - 1;

    if (memcmp(data, h2_preface, len < want ? len : want) != 0)
        return -1;
    return len >= want ? 1 : 0;
}

/* ---- connection lifetime ------------------------------------------------- */

static void h2_conn_schedule(struct h2_conn *c)
{
    event_active(c->flush_ev, EV_TIMEOUT, 0);
}

/* Ends the connection soon (from anywhere, callbacks included). */
static void h2_conn_kill(struct h2_conn *c)
{
    c->dead = true;
    h2_conn_schedule(c);
}

static void h2_idle_arm(struct h2_conn *c)
{
    struct timeval tv = {c->h2->idle_ms / 1000, (c->h2->idle_ms % 1000) * 1000};

    event_add(c->idle_ev, &tv);
}

/* Detaches an HTTP/2 stream from its SSE stream or parked request,
 * telling them the client is gone. */
static void h2_stream_orphan(struct h2_stream *hs)
{
    struct stream *s = hs->stream;
    struct request_watch *w = hs->watch;

    hs->watch = NULL;
    if (s != NULL) {
        hs->stream = NULL;
        hs->conn->nsse--;
        s->h2 = NULL;
        s->ops = NULL;
        stream_transport_closed(s);
    }
    if (w != NULL)
        w->gone(w);
}

static void h2_stream_free(struct h2_stream *hs)
{
    struct h2_conn *c = hs->conn;

    h2_stream_orphan(hs);
    if (hs->prev != NULL)
        hs->prev->next = hs->next;
    else
        c->streams = hs->next;
    if (hs->next != NULL)
        hs->next->prev = hs->prev;
    c->buffered -= evbuffer_get_length(hs->buf);
    evbuffer_free(hs->buf);
    evhttp_clear_headers(&hs->in);
    evhttp_clear_headers(&hs->out);
    free(hs->method);
    free(hs->path);
    free(hs->query);
    free(hs);
    if (c->nsse == 0 && c->streams == NULL && !c->dead)
        h2_idle_arm(c);
}

static void h2_conn_free(struct h2_conn *c)
{
    struct h2_server *h2 = c->h2;

    while (c->streams != NULL)
        h2_stream_free(c->streams);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        h2->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    h2->bridge->metrics.h2_connections--;
    nghttp2_session_del(c->session);
    event_free(c->flush_ev);
    event_free(c->idle_ev);
    /* Frees the bufferevent (socket, TLS state) with evhttp's object. */
    if (c->evcon != NULL)
        evhttp_connection_free(c->evcon);
    else
        bufferevent_free(c->bev);
    free(c);
}

/* ---- writing ------------------------------------------------------------- */

static struct evbuffer *h2_output(const struct h2_conn *c)
{
    return bufferevent_get_output(c->bev);
}

static bool h2_output_full(const struct h2_conn *c)
{
    return evbuffer_get_length(h2_output(c)) >= H2_OUTPUT_HIGH;
}

/* nghttp2: frames other than no-copy DATA. */
static ssize_t h2_on_send(nghttp2_session *session, const uint8_t *data,
                          size_t length, int flags, void *arg)
{
    struct h2_conn *c = arg;

    if (h2_output_full(c))
        return NGHTTP2_ERR_WOULDBLOCK;
    if (evbuffer_add(h2_output(c), data, length) < 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return (ssize_t)length;
}

/*
 * nghttp2: a stream's body, as far as the windows allow (NO_COPY). While
 * the connection's output is full no DATA is produced (the stream is
 * deferred; h2_on_write resumes it): h2_on_send_data, which nghttp2 calls
 * right after this, must then take the frame whole, since the stream's
 * buffer may be emptied (a reset) before any later call.
 */
static ssize_t h2_on_read_data(nghttp2_session *session, int32_t id,
                               uint8_t *buf, size_t length,
                               uint32_t *flags, nghttp2_data_source *source,
                               void *arg)
{
    struct h2_stream *hs = source->ptr;
    size_t avail = evbuffer_get_length(hs->buf);
    size_t n = avail < length ? avail : length;

    if ((avail == 0 && !hs->eof) || (avail > 0 && h2_output_full(hs->conn)))
        return NGHTTP2_ERR_DEFERRED;
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (hs->eof && n == avail)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

/* nghttp2: writes one DATA frame whole: its header, then the stream's
 * bytes moved (not copied) into the connection's output. Never
 * WOULDBLOCK (see h2_on_read_data): the output may pass H2_OUTPUT_HIGH by
 * one frame, bytes that are in memory already. */
static int h2_on_send_data(nghttp2_session *session, nghttp2_frame *frame,
                           const uint8_t *framehd, size_t length,
                           nghttp2_data_source *source, void *arg)
{
    struct h2_conn *c = arg;
    struct h2_stream *hs = source->ptr;
    struct evbuffer *out = h2_output(c);

    if (frame->data.padlen > 0 || evbuffer_get_length(hs->buf) < length)
        return NGHTTP2_ERR_CALLBACK_FAILURE; /* never asked for */
    evbuffer_add(out, framehd, 9);
    evbuffer_remove_buffer(hs->buf, out, length);
    c->buffered -= length;
    return 0;
}

/* Streams whose buffer emptied get their drain callback (the replay
 * paces itself on it, as over HTTP/1.1). */
static void h2_run_drained(struct h2_conn *c)
{
    struct h2_stream *hs = c->streams;

    while (hs != NULL) {
        struct h2_stream *next = hs->next;
        struct stream *s = hs->stream;

        if (s != NULL && s->drained != NULL &&
            evbuffer_get_length(hs->buf) == 0)
            s->drained(s);
        hs = next;
    }
}

/*
 * bufferevent_openssl makes one TLS record (one SSL_write, one write(2))
 * of every chunk of the output, and each DATA frame is a chunk of its
 * own (moved, not copied, from its stream). Joining the turn's frames
 * into one chunk makes them as few records as libevent's SSL_writes of
 * 15,000 bytes: one copy of bytes that are small, instead of an
 * SSL_write and a packet per frame. The copy is bounded: frames are
 * produced only while the output holds less than H2_OUTPUT_HIGH.
 *
 * Only an output that was empty before the turn is joined. What an
 * earlier turn left waits on a full socket and may be the head of an
 * SSL_write that must be repeated; joining it again each turn would copy
 * it again for nothing.
 */
static void h2_join_records(struct h2_conn *c, size_t before)
{
    if (before == 0)
        evbuffer_pullup(h2_output(c), -1);
}

/* The flush event: the connection's one write of the loop turn; frees a
 * dead or finished connection. */
static void h2_on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct h2_conn *c = arg;
    size_t before;
    int rv;

    if (c->dead) {
        h2_conn_free(c);
        return;
    }
    before = evbuffer_get_length(h2_output(c));
    rv = nghttp2_session_send(c->session);
    if (rv != 0) {
        log_limited(LOG_INFO, 10000, "HTTP/2 connection ended: %s",
                    nghttp2_strerror(rv));
        h2_conn_free(c);
        return;
    }
    if (c->tls)
        h2_join_records(c, before);
    h2_run_drained(c);
    if (nghttp2_session_want_write(c->session) && !h2_output_full(c))
        h2_conn_schedule(c); /* the drain callbacks queued more */
    if (!nghttp2_session_want_read(c->session) &&
        !nghttp2_session_want_write(c->session) &&
        evbuffer_get_length(h2_output(c)) == 0)
        h2_conn_free(c);
}

/* ---- reading ------------------------------------------------------------- */

static void h2_on_read(struct bufferevent *bev, void *arg)
{
    struct h2_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);

    while (!c->dead && evbuffer_get_length(in) > 0) {
        size_t len = evbuffer_get_contiguous_space(in);
        const unsigned char *data = evbuffer_pullup(in, (ssize_t)len);
        ssize_t n = nghttp2_session_mem_recv(c->session, data, len);

        if (n < 0) {
            log_limited(LOG_INFO, 10000, "HTTP/2 connection dropped: %s",
                        nghttp2_strerror((int)n));
            h2_conn_kill(c);
            return;
        }
        evbuffer_drain(in, (size_t)n);
    }
    /* A peer that sends without reading: stop reading until our output
     * drains (h2_on_write), so its requests cannot queue answers. */
    if (h2_output_full(c))
        bufferevent_disable(bev, EV_READ);
    h2_conn_schedule(c);
}

/* Output drained below the write watermark: resume the streams that
 * were deferred while it was full, and read again. */
static void h2_on_write(struct bufferevent *bev, void *arg)
{
    struct h2_conn *c = arg;

    bufferevent_enable(bev, EV_READ);
    for (struct h2_stream *hs = c->streams; hs != NULL; hs = hs->next)
        if (evbuffer_get_length(hs->buf) > 0)
            nghttp2_session_resume_data(c->session, hs->id);
    if (nghttp2_session_want_write(c->session))
        h2_conn_schedule(c);
}

static void h2_on_event(struct bufferevent *bev, short what, void *arg)
{
    struct h2_conn *c = arg;

    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        h2_conn_kill(c);
}

static void h2_on_idle(evutil_socket_t fd, short what, void *arg)
{
    struct h2_conn *c = arg;

    if (c->streams != NULL || c->dead)
        return;
    nghttp2_session_terminate_session(c->session, NGHTTP2_NO_ERROR);
    h2_conn_schedule(c);
}

/* ---- requests ------------------------------------------------------------ */

static int h2_on_begin_headers(nghttp2_session *session,
                               const nghttp2_frame *frame, void *arg)
{
    struct h2_conn *c = arg;
    struct h2_stream *hs;

    if (frame->hd.type != NGHTTP2_HEADERS ||
        frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    hs = calloc(1, sizeof(*hs));
    if (hs == NULL || (hs->buf = evbuffer_new()) == NULL) {
        free(hs);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM */
    }
    hs->conn = c;
    hs->id = frame->hd.stream_id;
    TAILQ_INIT(&hs->in);
    TAILQ_INIT(&hs->out);
    hs->next = c->streams;
    if (c->streams != NULL)
        c->streams->prev = hs;
    c->streams = hs;
    event_del(c->idle_ev);
    nghttp2_session_set_stream_user_data(session, hs->id, hs);
    return 0;
}

/* ":path" split into the path and the query (both copied). */
static int h2_set_path(struct h2_stream *hs, const uint8_t *value,
                       size_t len)
{
    const uint8_t *q = memchr(value, '?', len);
    size_t plen = q != NULL ? (size_t)(q - value) : len;

    if (hs->path != NULL)
        return -1;
    hs->path = strndup((const char *)value, plen);
    if (q != NULL)
        hs->query = strndup((const char *)q + 1, len - plen - 1);
    return hs->path == NULL || (q != NULL && hs->query == NULL) ? -1 : 0;
}

/* One header field; nghttp2 has checked names and values (HTTP
 * messaging rules). Past H2_MAX_HEADER_LIST the stream is reset. */
static int h2_on_header(nghttp2_session *session, const nghttp2_frame *frame,
                        const uint8_t *name, size_t namelen,
                        const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *arg)
{
    struct h2_stream *hs =
        nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    char *n;
    int rc = 0;

    if (hs == NULL || frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    hs->header_bytes += namelen + valuelen + 32;
    if (hs->header_bytes > H2_MAX_HEADER_LIST)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (namelen == 5 && memcmp(name, ":path", 5) == 0)
        rc = h2_set_path(hs, value, valuelen);
    else if (namelen == 7 && memcmp(name, ":method", 7) == 0)
        rc = hs->method != NULL ||
             (hs->method = strndup((const char *)value, valuelen)) == NULL;
    else if (name[0] == ':')
        return 0; /* :scheme, :authority */
    else if ((n = strndup((const char *)name, namelen)) == NULL)
        rc = -1;
    else {
        char *v = strndup((const char *)value, valuelen);
        rc = v == NULL ? -1 : evhttp_add_header(&hs->in, n, v);
        free(v);
        free(n);
    }
    return rc != 0 ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE : 0;
}

static enum request_method h2_method(const char *m)
{
    if (m == NULL)
        return REQUEST_OTHER;
    if (strcmp(m, "GET") == 0)
        return REQUEST_GET;
    if (strcmp(m, "HEAD") == 0)
        return REQUEST_HEAD;
    if (strcmp(m, "OPTIONS") == 0)
        return REQUEST_OPTIONS;
    return REQUEST_OTHER;
}

/* The request is complete: server.c answers it. */
static void h2_dispatch(struct h2_conn *c, struct h2_stream *hs)
{
    struct request r = {
        .ops = &h2_request_ops,
        .transport = hs,
        .method = h2_method(hs->method),
        .path = hs->path,
        .query = hs->query,
        .in = &hs->in,
        .out = &hs->out,
        .protocol = "h2",
        .tls = c->tls,
    };

    hs->dispatched = true;
    server_handle_request(c->h2->srv, &r);
}

static int h2_on_frame_recv(nghttp2_session *session,
                            const nghttp2_frame *frame, void *arg)
{
    struct h2_conn *c = arg;
    struct h2_stream *hs;

    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
        return 0;
    if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    hs = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (hs == NULL || hs->dispatched)
        return 0;
    h2_dispatch(c, hs);
    return 0;
}

/* A request body (a GET has none): read and dropped, up to a limit. */
static int h2_on_data_chunk(nghttp2_session *session, uint8_t flags,
                            int32_t id, const uint8_t *data, size_t len,
                            void *arg)
{
    struct h2_stream *hs = nghttp2_session_get_stream_user_data(session, id);

    if (hs == NULL)
        return 0;
    hs->body_bytes += len;
    if (hs->body_bytes > H2_MAX_REQUEST_BODY)
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id,
                                  NGHTTP2_REFUSED_STREAM);
    return 0;
}

static int h2_on_stream_close(nghttp2_session *session, int32_t id,
                              uint32_t error_code, void *arg)
{
    struct h2_stream *hs = nghttp2_session_get_stream_user_data(session, id);

    if (hs != NULL) {
        nghttp2_session_set_stream_user_data(session, id, NULL);
        h2_stream_free(hs);
    }
    return 0;
}

/* ---- request ops --------------------------------------------------------- */

/* Response headers for nghttp2: ":status", then r->out with lowercase
 * names, without HTTP/1.1's connection-level fields. Returns the count;
 * names are written into lower (room for H2_MAX_HEADER_LIST bytes). */
#define H2_MAX_RESPONSE_HEADERS 32
static size_t h2_response_headers(struct h2_stream *hs, const char *status,
                                  nghttp2_nv *nv, char *lower)
{
    struct evkeyval *kv;
    size_t n = 0, used = 0;

    nv[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7,
                           strlen(status), NGHTTP2_NV_FLAG_NONE};
    TAILQ_FOREACH(kv, &hs->out, next) {
        size_t len = strlen(kv->key);

        if (n == H2_MAX_RESPONSE_HEADERS || used + len > H2_MAX_HEADER_LIST)
            break;
        if (strcasecmp(kv->key, "Connection") == 0 ||
            strcasecmp(kv->key, "Transfer-Encoding") == 0 ||
            strcasecmp(kv->key, "Keep-Alive") == 0)
            continue;
        for (size_t i = 0; i < len; i++)
            lower[used + i] = (char)(kv->key[i] >= 'A' && kv->key[i] <= 'Z'
                                         ? kv->key[i] + 32
                                         : kv->key[i]);
        nv[n++] = (nghttp2_nv){(uint8_t *)lower + used, (uint8_t *)kv->value,
                               len, strlen(kv->value), NGHTTP2_NV_FLAG_NONE};
        used += len;
    }
    return n;
}

/* Submits the response headers; with_body: a data provider reads hs->buf
 * (deferred while it is empty and the body not over). 0 or -1. */
static int h2_submit(struct h2_stream *hs, int status, bool with_body)
{
    nghttp2_nv nv[H2_MAX_RESPONSE_HEADERS];
    char lower[H2_MAX_HEADER_LIST];
    char code[8];
    nghttp2_data_provider prd = {.source.ptr = hs,
                                 .read_callback = h2_on_read_data};
    size_t n;

    snprintf(code, sizeof(code), "%d", status);
    n = h2_response_headers(hs, code, nv, lower);
    if (nghttp2_submit_response(hs->conn->session, hs->id, nv, n,
                                with_body ? &prd : NULL) != 0)
        return -1;
    h2_conn_schedule(hs->conn);
    return 0;
}

static void h2_reply(const struct request *r, int status, const char *reason,
                     struct evbuffer *body)
{
    struct h2_stream *hs = r->transport;
    bool with_body = body != NULL && evbuffer_get_length(body) > 0;

    hs->watch = NULL;
    if (with_body) {
        hs->conn->buffered += evbuffer_get_length(body);
        evbuffer_add_buffer(hs->buf, body);
    }
    hs->eof = true;
    if (h2_submit(hs, status, with_body) < 0)
        nghttp2_submit_rst_stream(hs->conn->session, NGHTTP2_FLAG_NONE,
                                  hs->id, NGHTTP2_INTERNAL_ERROR);
    h2_conn_schedule(hs->conn);
}

static int h2_stream_start(const struct request *r, struct stream *s)
{
    struct h2_stream *hs = r->transport;

    if (h2_submit(hs, 200, true) < 0) {
        nghttp2_submit_rst_stream(hs->conn->session, NGHTTP2_FLAG_NONE,
                                  hs->id, NGHTTP2_INTERNAL_ERROR);
        return -1;
    }
    hs->watch = NULL;
    hs->stream = s;
    hs->conn->nsse++;
    s->h2 = hs;
    s->ops = &h2_stream_ops;
    return 0;
}

static void h2_watch(const struct request *r, struct request_watch *w)
{
    struct h2_stream *hs = r->transport;

    hs->watch = w;
}

static const struct request_ops h2_request_ops = {
    .reply = h2_reply,
    .stream_start = h2_stream_start,
    .watch = h2_watch,
};

/* ---- stream ops ---------------------------------------------------------- */

/* The stream's own unsent bytes; when the connection itself is not
 * draining, everything its streams hold (max_pending per connection). */
static size_t h2_pending(const struct stream *s)
{
    const struct h2_stream *hs = s->h2;
    size_t own = evbuffer_get_length(hs->buf);

    if (h2_output_full(hs->conn) && hs->conn->buffered > own)
        return hs->conn->buffered;
    return own;
}

static void h2_resume(struct h2_stream *hs)
{
    nghttp2_session_resume_data(hs->conn->session, hs->id);
}

static void h2_send(struct stream *s, struct evbuffer *buf,
                    void (*drained)(struct stream *))
{
    struct h2_stream *hs = s->h2;

    s->drained = drained;
    hs->conn->buffered += evbuffer_get_length(buf);
    evbuffer_add_buffer(hs->buf, buf);
    h2_resume(hs);
    h2_conn_schedule(hs->conn);
}

/* Hot path: the feed's shared frame, appended to this stream's buffer;
 * DATA framing happens in the connection's flush. */
static void h2_append(struct stream *s, const char *data, size_t len)
{
    struct h2_stream *hs = s->h2;

    evbuffer_add(hs->buf, data, len);
    hs->conn->buffered += len;
}

static void h2_deliver(struct stream *s, const struct frame *f)
{
    h2_append(s, f->plain, f->plain_len);
}

/* Hot path, once per dirty stream per turn: the connection's flush runs
 * once for all of them. */
static void h2_write(struct stream *s)
{
    struct h2_stream *hs = s->h2;

    h2_resume(hs);
    h2_conn_schedule(hs->conn);
    s->last_write_ms = stream_now_ms(s);
}

static void h2_close(struct stream *s, bool reset)
{
    struct h2_stream *hs = s->h2;
    struct h2_conn *c = hs->conn;

    hs->stream = NULL;
    c->nsse--;
    s->h2 = NULL;
    s->ops = NULL;
    if (reset) {
        c->buffered -= evbuffer_get_length(hs->buf);
        evbuffer_drain(hs->buf, evbuffer_get_length(hs->buf));
        nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, hs->id,
                                  NGHTTP2_CANCEL);
    } else {
        hs->eof = true;
        h2_resume(hs);
    }
    h2_conn_schedule(c);
}

static const struct stream_ops h2_stream_ops = {
    .pending = h2_pending,
    .send = h2_send,
    .deliver = h2_deliver,
    .append = h2_append,
    .write = h2_write,
    .close = h2_close,
};

/* ---- setup --------------------------------------------------------------- */

/* Our SETTINGS: the stream limit, a header list limit, no push. */
static int h2_conn_settings(struct h2_conn *c)
{
    const struct config *cfg = c->h2->bridge->cfg;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
         (uint32_t)cfg->http2.max_concurrent_streams},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, H2_MAX_HEADER_LIST},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };

    return nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv,
                                   sizeof(iv) / sizeof(iv[0]));
}

int h2_conn_take(struct h2_server *h2, struct bufferevent *bev, bool tls)
{
    static const struct timeval write_timeout = {H2_WRITE_TIMEOUT_S, 0};
    struct h2_conn *c = calloc(1, sizeof(*c));
    bufferevent_data_cb readcb, writecb;
    bufferevent_event_cb eventcb;
    void *evcon = NULL;

    if (c == NULL)
        return -1;
    bufferevent_getcb(bev, &readcb, &writecb, &eventcb, &evcon);
    c->h2 = h2;
    c->bev = bev;
    c->evcon = evcon;
    c->tls = tls;
    c->flush_ev = event_new(h2->bridge->base, -1, 0, h2_on_flush, c);
    c->idle_ev = event_new(h2->bridge->base, -1, 0, h2_on_idle, c);
    if (c->flush_ev == NULL || c->idle_ev == NULL ||
        nghttp2_session_server_new2(&c->session, h2->cbs, c, h2->opt) != 0 ||
        h2_conn_settings(c) != 0) {
        if (c->session != NULL)
            nghttp2_session_del(c->session);
        if (c->flush_ev != NULL)
            event_free(c->flush_ev);
        if (c->idle_ev != NULL)
            event_free(c->idle_ev);
        free(c);
        return -1;
    }
    c->next = h2->conns;
    if (h2->conns != NULL)
        h2->conns->prev = c;
    h2->conns = c;
    h2->bridge->metrics.h2_connections++;
    h2->bridge->metrics.h2_connections_opened[tls]++;
    /* evhttp's idle timeout would end quiet streams: ours is idle_ev. */
    bufferevent_set_timeouts(bev, NULL, &write_timeout);
    bufferevent_setwatermark(bev, EV_WRITE, H2_OUTPUT_HIGH / 2, 0);
    bufferevent_setcb(bev, h2_on_read, h2_on_write, h2_on_event, c);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    h2_idle_arm(c);
    return 0;
}

struct h2_server *h2_server_new(struct server *srv, struct bridge *b,
                                int64_t idle_ms)
{
    struct h2_server *h2 = calloc(1, sizeof(*h2));
    nghttp2_session_callbacks *cbs = NULL;

    if (h2 == NULL || nghttp2_session_callbacks_new(&cbs) != 0 ||
        nghttp2_option_new(&h2->opt) != 0) {
        if (cbs != NULL)
            nghttp2_session_callbacks_del(cbs);
        free(h2);
        return NULL;
    }
    h2->srv = srv;
    h2->bridge = b;
    h2->idle_ms = idle_ms;
    h2->cbs = cbs;
    nghttp2_session_callbacks_set_send_callback(cbs, h2_on_send);
    nghttp2_session_callbacks_set_send_data_callback(cbs, h2_on_send_data);
    nghttp2_session_callbacks_set_on_begin_headers_callback(
        cbs, h2_on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, h2_on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs,
                                                         h2_on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cbs, h2_on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(
        cbs, h2_on_stream_close);
    nghttp2_option_set_max_outbound_ack(h2->opt, H2_MAX_OUTBOUND_ACK);
    nghttp2_option_set_max_settings(h2->opt, 32);
    nghttp2_option_set_max_deflate_dynamic_table_size(h2->opt, 4096);
    nghttp2_option_set_stream_reset_rate_limit(h2->opt, H2_RESET_BURST,
                                               H2_RESET_RATE);
    nghttp2_option_set_max_continuations(h2->opt, 8);
    return h2;
}

void h2_server_free(struct h2_server *h2)
{
    if (h2 == NULL)
        return;
    while (h2->conns != NULL)
        h2_conn_free(h2->conns);
    nghttp2_session_callbacks_del(h2->cbs);
    nghttp2_option_del(h2->opt);
    free(h2);
}
