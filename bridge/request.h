/*
 * request.h - one HTTP request as the server sees it, whatever carried
 * it: HTTP/1.x through evhttp (h1.c) or an HTTP/2 stream (h2.c).
 *
 * server.c routes, authorizes and answers a struct request without
 * knowing the transport; stream.c streams the response through the
 * transport's struct stream_ops. A transport is a small adapter: it
 * fills a struct request (method, raw path and query, header lists) and
 * provides the ops below.
 *
 * Ownership: a struct request is a small value that may be copied (a
 * stream and a parked per-key request keep one). Everything it points
 * to (path, query, header lists, transport) is owned by the transport
 * and stays valid until the transport reports the client gone (the
 * watch, or stream_transport_closed) or until the response is complete
 * (reply, or the stream's close).
 */
#ifndef SLUICE_REQUEST_H
#define SLUICE_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

struct evbuffer;
struct evkeyvalq;
struct request;
struct stream;

enum request_method {
    REQUEST_GET,
    REQUEST_HEAD,
    REQUEST_OPTIONS,
    REQUEST_OTHER,
};

/* Told when the client of a parked request goes away. */
struct request_watch {
    void (*gone)(struct request_watch *w);
};

struct request_ops {
    /* Sends a whole response: status, r->out, then body (NULL: none; the
     * caller leaves it out for HEAD). The request is finished after. */
    void (*reply)(const struct request *r, int status, const char *reason,
                  struct evbuffer *body);
    /* Starts a 200 streamed response with r->out and binds s to the
     * transport (sets s->ops and the transport's fields). 0, or -1 when
     * the transport cannot (the request was then answered 503). */
    int (*stream_start)(const struct request *r, struct stream *s);
    /* Calls w->gone if the client leaves before the request is answered;
     * w NULL: stop watching. w must outlive the watch. */
    void (*watch)(const struct request *r, struct request_watch *w);
};

struct request {
    const struct request_ops *ops;
    void *transport;           /* the transport's own request object */
    enum request_method method;
    const char *path;          /* raw, as sent, without the query */
    const char *query;         /* raw query, without '?'; NULL: none */
    struct evkeyvalq *in;      /* request headers */
    struct evkeyvalq *out;     /* response headers being built */
    const char *protocol;      /* "h1" or "h2" (metrics) */
    bool tls;
};

#endif
