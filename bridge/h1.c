/*
 * h1.c - the HTTP/1.x transport, over libevent's evhttp (cleartext or
 * TLS through bufferevent_openssl).
 *
 * Two write paths. The start of a stream (headers), its preamble, replay
 * batches and final retry go through evhttp (evhttp_send_reply_chunk*,
 * whose drain callbacks pace the replay). Live traffic, the hot path,
 * does not: h1_deliver sends a stream's first event of a loop turn
 * straight to the socket from the feed's shared frame, and anything more
 * in the same turn, or what a full socket refused, is appended to the
 * connection's output and written once at the end of the turn
 * (h1_write). The write event is armed only while a socket is full, so a
 * delivery costs one send(2) and no epoll_ctl. Over TLS the direct path
 * is one SSL_write (tls_write_now); what it cannot send is appended and
 * bufferevent_openssl encrypts it, with the rest of the turn's bytes,
 * once writing is enabled at the end of the turn. Both paths frame
 * chunks the way evhttp chose when it sent the headers (chunked for
 * HTTP/1.1, close-delimited for HTTP/1.0), and append to the same output
 * buffer, so their bytes never reorder.
 *
 * Input: evhttp keeps reading a connection while it writes the response
 * (that is how it learns of a close) but has no use for the bytes, which
 * would pile up in the bufferevent's input without limit. A stream
 * therefore discards them as they arrive (h1_on_input), so reading (and
 * close detection) goes on with no memory held, and cuts a client that
 * sends more than H1_MAX_INPUT: a browser sends nothing at all.
 *
 * A connection closed by the client arrives through evhttp's close
 * callback and is handed to stream_transport_closed, which is never
 * called during a dispatch pass (one thread).
 */
#include "bridge/h1.h"

#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "bridge/bridge.h"
#include "bridge/request.h"
#include "bridge/stream.h"
#include "bridge/tls.h"
#include "lib/log.h"

/* Longest chunk header: 16 hex digits and CRLF. */
/* A client whose socket accepts nothing for this long is dropped. */
#define H1_WRITE_TIMEOUT_S 30
/* Bytes a client may send after its request before it is cut. */
#define H1_MAX_INPUT 4096

static const struct stream_ops h1_stream_ops;

/* The connection's bufferevent and its output, kept in the stream when
 * it starts: the hot path reads them for every delivery, and asking
 * evhttp each time touches two more cold structures per stream. */
static struct bufferevent *h1_bev(const struct stream *s)
{
    return s->bev;
}

static struct evbuffer *h1_output(const struct stream *s)
{
    return s->out;
}

static size_t h1_pending(const struct stream *s)
{
    return evbuffer_get_length(h1_output(s));
}

/* ---- request ops --------------------------------------------------------- */

static void h1_reply(const struct request *r, int status, const char *reason,
                     struct evbuffer *body)
{
    evhttp_send_reply(r->transport, status, reason, body);
}

/* evhttp's close callback while a request is parked (request_ops.watch). */
static void h1_on_watch_close(struct evhttp_connection *evcon, void *arg)
{
    struct request_watch *w = arg;

    w->gone(w);
}

static void h1_watch(const struct request *r, struct request_watch *w)
{
    struct evhttp_connection *evcon =
        evhttp_request_get_connection(r->transport);

    if (evcon == NULL)
        return;
    if (w == NULL)
        evhttp_connection_set_closecb(evcon, NULL, NULL);
    else
        evhttp_connection_set_closecb(evcon, h1_on_watch_close, w);
}

/*
 * The input buffer's callback: what a client sends after its request is
 * dropped as it arrives; more than H1_MAX_INPUT cuts the stream. Runs
 * inside libevent's read, so the cut goes through the reap list.
 */
static void h1_on_input(struct evbuffer *in, const struct evbuffer_cb_info *info,
                        void *arg)
{
    struct stream *s = arg;

    if (info->n_added == 0)
        return; /* our own drain below */
    s->input_bytes += info->n_added;
    evbuffer_drain(in, evbuffer_get_length(in));
    if (s->input_bytes <= H1_MAX_INPUT || s->reaping || s->closing)
        return;
    log_limited(LOG_INFO, 10000, "cut a stream whose client sent %zu bytes "
                "after its request", s->input_bytes);
    s->reap_reason = DROP_INPUT;
    bridge_schedule_reap(s->bridge, s);
}

/* Starts discarding the connection's input (pipelined bytes already
 * buffered count too). */
static void h1_input_attach(struct stream *s)
{
    struct bufferevent *bev = h1_bev(s);
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t buffered = evbuffer_get_length(in);

    s->input_cb = evbuffer_add_cb(in, h1_on_input, s);
    s->input_bytes = buffered;
    evbuffer_drain(in, buffered);
    /* evhttp paused reading while it ran our handler; its reply path
     * turns it back on, but say so here too: close detection needs it. */
    bufferevent_enable(bev, EV_READ);
}

static void h1_input_detach(struct stream *s)
{
    if (s->input_cb == NULL || s->evcon == NULL)
        return;
    evbuffer_remove_cb_entry(bufferevent_get_input(h1_bev(s)), s->input_cb);
    s->input_cb = NULL;
}

/* Makes the coming close(2) of the socket send a reset and drop whatever
 * the kernel still holds for the client. */
static void h1_set_reset(struct stream *s)
{
    static const struct linger reset = {1, 0};

    if (setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)) != 0)
        log_debug("cannot set SO_LINGER on a stream's socket");
}

/* The stream no longer has a connection (closed, or being freed). */
static void h1_forget(struct stream *s)
{
    s->evcon = NULL;
    s->bev = NULL;
    s->out = NULL;
    s->req.transport = NULL;
    s->ops = NULL;
}

/* evhttp: the client went away (or the connection failed). libevent
 * frees the connection and request after this returns. */
static void h1_on_close(struct evhttp_connection *evcon, void *arg)
{
    struct stream *s = arg;

    /* The write timeout ends here too: bytes still unsent mean a client
     * that stopped reading, which gets a reset (see stream_cut). */
    if (h1_pending(s) > 0)
        h1_set_reset(s);
    h1_input_detach(s);
    /* A client that hangs up mid-response leaves the unfinished request
     * detached from the connection, and libevent 2.1 then leaves freeing
     * it to us: evhttp_send_reply_end frees a detached request. */
    if (s->req.transport != NULL &&
        evhttp_request_get_connection(s->req.transport) == NULL)
        evhttp_send_reply_end(s->req.transport);
    h1_forget(s);
    stream_transport_closed(s);
}

/* evhttp's idle timeout (meant for reading requests) would cut quiet
 * streams: keep only a write timeout, for clients that stop reading. */
static void h1_set_timeouts(struct stream *s)
{
    static const struct timeval write_timeout = {H1_WRITE_TIMEOUT_S, 0};

    bufferevent_set_timeouts(h1_bev(s), NULL, &write_timeout);
}

static int h1_stream_start(const struct request *r, struct stream *s)
{
    struct evhttp_request *req = r->transport;

    s->ops = &h1_stream_ops;
    s->evcon = evhttp_request_get_connection(req);
    s->bev = evhttp_connection_get_bufferevent(s->evcon);
    s->out = bufferevent_get_output(s->bev);
    evhttp_send_reply_start(req, 200, "OK");
    /* evhttp chose the framing (chunked for HTTP/1.1) when it sent the
     * headers; live writes frame their own chunks the same way. */
    s->chunked = evhttp_find_header(r->out, "Transfer-Encoding") != NULL;
    s->fd = bufferevent_getfd(h1_bev(s));
    evhttp_connection_set_closecb(s->evcon, h1_on_close, s);
    h1_set_timeouts(s);
    h1_input_attach(s);
    return 0;
}

static const struct request_ops h1_request_ops = {
    .reply = h1_reply,
    .stream_start = h1_stream_start,
    .watch = h1_watch,
};

int h1_request_init(struct evhttp_request *req, bool tls, struct request *out)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);

    memset(out, 0, sizeof(*out));
    out->ops = &h1_request_ops;
    out->transport = req;
    out->method = cmd == EVHTTP_REQ_GET       ? REQUEST_GET
                  : cmd == EVHTTP_REQ_HEAD    ? REQUEST_HEAD
                  : cmd == EVHTTP_REQ_OPTIONS ? REQUEST_OPTIONS
                                              : REQUEST_OTHER;
    out->in = evhttp_request_get_input_headers(req);
    out->out = evhttp_request_get_output_headers(req);
    out->protocol = "h1";
    out->tls = tls;
    out->path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    out->query = uri != NULL ? evhttp_uri_get_query(uri) : NULL;
    return out->path != NULL && out->path[0] == '/' ? 0 : -1;
}

/* ---- stream ops ---------------------------------------------------------- */

/* evhttp's drain callback, kept by evhttp for later drains too. */
static void h1_on_drained(struct evhttp_connection *evcon, void *arg)
{
    struct stream *s = arg;

    if (s->drained != NULL)
        s->drained(s);
}

static void h1_send(struct stream *s, struct evbuffer *buf,
                    void (*drained)(struct stream *))
{
    s->drained = drained;
    evhttp_send_reply_chunk_with_cb(s->req.transport, buf,
                                    drained != NULL ? h1_on_drained : NULL, s);
}

/* Appends SSE text (compressed bytes, a heartbeat) framed for the
 * connection: one chunk for HTTP/1.1, as is for HTTP/1.0. */
static void h1_append(struct stream *s, const char *data, size_t len)
{
    struct evbuffer *out = h1_output(s);
    char head[STREAM_CHUNK_HEAD_MAX];

    if (s->chunked)
        evbuffer_add(out, head, stream_chunk_header(len, head));
    evbuffer_add(out, data, len);
    if (s->chunked)
        evbuffer_add(out, "\r\n", 2);
}

/*
 * Hot path: the stream's first event in this loop turn goes straight to
 * the socket from the shared frame: one send(2) (over TLS one SSL_write),
 * no copy into a buffer, no allocation. What the socket does not take,
 * and any later event of the same turn, is appended to the output and
 * written once at the end of the turn (h1_write), so bursts and slow
 * sockets still coalesce.
 */
static void h1_deliver(struct stream *s, const struct frame *f)
{
    struct evbuffer *out = h1_output(s);
    const char *data = s->chunked ? f->chunked : f->plain;
    size_t len = s->chunked ? f->chunked_len : f->plain_len;
    ssize_t n = 0;

    if (!s->dirty && evbuffer_get_length(out) == 0) {
        if (s->req.tls)
            n = (ssize_t)tls_write_now(h1_bev(s), data, len);
        else
            n = send(s->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0)
            n = 0; /* EAGAIN, or an error h1_write will meet */
        s->last_write_ms = stream_now_ms(s);
    }
    if ((size_t)n < len)
        evbuffer_add(out, data + n, len - (size_t)n);
}

/*
 * Hot path, TLS: the turn's frames were only appended to the output;
 * enabling writes lets bufferevent_openssl encrypt and send them all now,
 * and it keeps writing as the socket drains. Writes stay disabled while
 * nothing waits, so that appends between turns do not each become a TLS
 * record of their own.
 */
static void h1_write_tls(struct stream *s, struct bufferevent *bev)
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

/* Hot path: what is pending goes out with one writev, leaving libevent
 * to finish only when the socket is full. */
static void h1_write(struct stream *s)
{
    struct bufferevent *bev = h1_bev(s);
    struct evbuffer *out = bufferevent_get_output(bev);

    if (s->req.tls) {
        h1_write_tls(s, bev);
        return;
    }
    if (evbuffer_get_length(out) == 0) {
        bufferevent_disable(bev, EV_WRITE);
        return; /* everything went out in h1_deliver */
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

static void h1_close(struct stream *s, bool reset)
{
    struct evhttp_connection *evcon = s->evcon;

    if (reset)
        h1_set_reset(s);
    h1_input_detach(s);
    h1_forget(s);
    evhttp_connection_set_closecb(evcon, NULL, NULL);
    evhttp_connection_free(evcon);
}

static const struct stream_ops h1_stream_ops = {
    .pending = h1_pending,
    .send = h1_send,
    .deliver = h1_deliver,
    .append = h1_append,
    .write = h1_write,
    .close = h1_close,
};
