/*
 * server.c - the HTTP front; see server.h for the request pipeline.
 *
 * Requests arrive as struct request from either transport: evhttp's
 * (HTTP/1.x, h1.c) or HTTP/2 (h2.c), which takes over a connection whose
 * first bytes are the HTTP/2 preface (server_on_sniff). TLS, when
 * configured, sits under both (bufferevent_openssl, tls.c).
 *
 * libevent's evhttp parses requests and enforces the header-size, body-size
 * and idle-time limits; everything SSE-specific (the stream response) is
 * in stream.c. evhttp answers every method here (its own method filter
 * is opened wide) so that unknown methods get our 405 with an Allow
 * header rather than evhttp's 501.
 */
#include "bridge/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <strings.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "auth/auth.h"
#include "bridge/bridge.h"
#include "bridge/feed.h"
#include "bridge/h1.h"
#include "bridge/h2.h"
#include "bridge/keyed.h"
#include "bridge/replica.h"
#include "lib/cors.h"
#include "lib/history.h"
#include "lib/log.h"
#include "lib/query.h"
#include "lib/route.h"
#include "bridge/stream.h"
#include "bridge/tls.h"

#define SERVER_MAX_HEADERS_SIZE (16 * 1024)
#define SERVER_MAX_BODY_SIZE 4096
/* Unparsed bytes held per connection: a whole request fits; beyond it
 * libevent stops reading until evhttp consumes some (a client pipelining
 * requests while never reading the answers would otherwise fill memory). */
#define SERVER_MAX_INPUT (4 * (SERVER_MAX_HEADERS_SIZE + SERVER_MAX_BODY_SIZE))
#define SERVER_TIMEOUT_S 10
#define SERVER_MAX_ID_LEN 128
#define SERVER_ALLOW "GET, HEAD, OPTIONS"
#define SERVER_BACKLOG 1024

/* After accept(2) fails for lack of file descriptors, the listener
 * pauses this long: the pending connection stays in the backlog, so a
 * level-triggered listener would otherwise spin on it. */
#define SERVER_ACCEPT_PAUSE_MS 250

/* A new connection has this long to deliver its first whole request. */
#define SERVER_REQUEST_DEADLINE_MS (SERVER_TIMEOUT_S * 1000)

/*
 * A connection that has not delivered its first request yet. evhttp's
 * timeout is an idle timeout, which a client trickling one header byte
 * every few seconds (slowloris) never trips, and libevent 2.1 has no hook
 * per request (evhttp_set_newreqcb is 2.2). It does let us create each
 * connection's bufferevent: we keep a reference on it, so the pointer stays
 * valid after evhttp frees the connection, and the housekeeping tick ends
 * connections past their deadline through evhttp's own error path.
 */
struct server_pending {
    struct server *srv;
    struct bufferevent *bev; /* one reference */
    int64_t deadline_ms;
    bool tls;                /* bev is a bufferevent_openssl */
    struct evbuffer_cb_entry *sniff; /* looks for the HTTP/2 preface */
    struct server_pending *next;
};

struct server {
    struct bridge *bridge;
    struct evhttp *http;
    struct evhttp_bound_socket *socket;
    struct server_pending *pending; /* newest first */
    struct tls *tls;                /* owned; NULL: cleartext */
    struct h2_server *h2;           /* owned; NULL: no HTTP/2 */
    bool h2_sniff;                  /* look for HTTP/2 on new connections */
};

/* A whole response, without the body for HEAD (evhttp 2.1 would send
 * it). */
static void server_send(const struct request *req, int code,
                        const char *reason, struct evbuffer *body)
{
    if (req->method == REQUEST_HEAD)
        body = NULL;
    req->ops->reply(req, code, reason, body);
}

/* One short line of text; never echoes client input that could hold a
 * token. */
static void server_reply_text(const struct request *req, int code,
                              const char *reason, const char *text)
{
    struct evbuffer *body = evbuffer_new();

    evhttp_add_header(req->out, "Content-Type", "text/plain; charset=utf-8");
    if (body != NULL)
        evbuffer_add_printf(body, "%s\n", text);
    server_send(req, code, reason, body);
    if (body != NULL)
        evbuffer_free(body);
}

/* Headers on every response: no caching (tokens may sit in URLs), no
 * referrer, and CORS for configured origins only. Returns whether the
 * request's origin is allowed. */
static bool server_add_common_headers(struct server *srv,
                                      const struct request *req)
{
    const struct config *cfg = srv->bridge->cfg;
    struct evkeyvalq *out = req->out;
    const char *origin = evhttp_find_header(req->in, "Origin");
    const char *allowed;

    evhttp_add_header(out, "Cache-Control", "no-store");
    evhttp_add_header(out, "Referrer-Policy", "no-referrer");
    if (cfg->cors_origins.count == 0)
        return false;
    evhttp_add_header(out, "Vary", "Origin");
    allowed = cors_allow_origin(&cfg->cors_origins, origin);
    if (allowed == NULL)
        return false;
    evhttp_add_header(out, "Access-Control-Allow-Origin", allowed);
    if (cfg->auth.cookie != NULL)
        evhttp_add_header(out, "Access-Control-Allow-Credentials", "true");
    return true;
}

/* OPTIONS: Allow for everyone, the Access-Control-* answer only for an
 * allowed origin. */
static void server_reply_preflight(const struct request *req, bool cors)
{
    struct evkeyvalq *out = req->out;

    evhttp_add_header(out, "Allow", SERVER_ALLOW);
    if (cors) {
        evhttp_add_header(out, "Access-Control-Allow-Methods", SERVER_ALLOW);
        evhttp_add_header(out, "Access-Control-Allow-Headers",
                          "Authorization, Last-Event-ID, Cache-Control");
        evhttp_add_header(out, "Access-Control-Max-Age", "600");
    }
    req->ops->reply(req, 204, "No Content", NULL);
}

static void server_reply_method_not_allowed(const struct request *req)
{
    evhttp_add_header(req->out, "Allow", SERVER_ALLOW);
    server_reply_text(req, 405, "Method Not Allowed", "method not allowed");
}

/*
 * One line per source that is not up, and for a shared history that is
 * down (replica_readyz). By default only "down" (SPEC 5): the status text
 * names broker addresses and quotes server errors, which go to the log;
 * readyz_details opts in to showing it here.
 */
static void server_handle_readyz(struct server *srv,
                                 const struct request *req)
{
    struct evbuffer *body = evbuffer_new();
    bool ready;

    if (body == NULL) {
        req->ops->reply(req, 503, "Service Unavailable", NULL);
        return;
    }
    ready = replica_readyz(srv->bridge, body);
    if (ready)
        evbuffer_add(body, "ok\n", 3);
    evhttp_add_header(req->out, "Content-Type", "text/plain; charset=utf-8");
    server_send(req, ready ? 200 : 503, ready ? "OK" : "Service Unavailable",
                body);
    evbuffer_free(body);
}

static void server_handle_metrics(struct server *srv,
                                  const struct request *req)
{
    struct evbuffer *body = evbuffer_new();

    if (body == NULL) {
        req->ops->reply(req, 503, "Service Unavailable", NULL);
        return;
    }
    metrics_render(srv->bridge, body);
    evhttp_add_header(req->out, "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    server_send(req, 200, "OK", body);
    evbuffer_free(body);
}

/* /healthz, /readyz, /metrics. Returns false when path is none of them. */
static bool server_handle_reserved(struct server *srv,
                                   const struct request *req,
                                   const char *path, bool cors)
{
    bool get = req->method == REQUEST_GET || req->method == REQUEST_HEAD;

    if (strcmp(path, "/healthz") != 0 && strcmp(path, "/readyz") != 0 &&
        strcmp(path, "/metrics") != 0)
        return false;
    if (req->method == REQUEST_OPTIONS)
        server_reply_preflight(req, cors);
    else if (!get)
        server_reply_method_not_allowed(req);
    else if (strcmp(path, "/healthz") == 0)
        server_reply_text(req, 200, "OK", "ok");
    else if (strcmp(path, "/readyz") == 0)
        server_handle_readyz(srv, req);
    else
        server_handle_metrics(srv, req);
    return true;
}

/* Overload (SPEC 4): 200, a long retry, close. The browser comes back
 * later by itself instead of hammering with errors. */
void server_reply_come_back(struct bridge *b, const struct request *req,
                            int64_t retry_ms, bool overload)
{
    struct evkeyvalq *out = req->out;
    struct evbuffer *body = evbuffer_new();

    if (overload)
        b->metrics.dropped[DROP_OVERLOAD]++;
    evhttp_add_header(out, "Content-Type", "text/event-stream");
    evhttp_add_header(out, "Connection", "close");
    if (body != NULL)
        evbuffer_add_printf(body, "retry: %lld\n\n", (long long)retry_ms);
    req->ops->reply(req, 200, "OK", body);
    if (body != NULL)
        evbuffer_free(body);
}

static void server_reply_overload(struct server *srv,
                                  const struct request *req)
{
    server_reply_come_back(srv->bridge, req,
                           srv->bridge->cfg->stream.retry_overload_ms, true);
}

static void server_reply_head(const struct request *req)
{
    evhttp_add_header(req->out, "Content-Type", "text/event-stream");
    evhttp_add_header(req->out, "X-Accel-Buffering", "no");
    req->ops->reply(req, 200, "OK", NULL);
}

/* Why a stream request was refused: an HTTP status and one line. */
struct server_refusal {
    int status;
    const char *reason;
    char text[128];
};

static int server_refuse(struct server_refusal *r, int status,
                         const char *reason, const char *text)
{
    r->status = status;
    r->reason = reason;
    snprintf(r->text, sizeof(r->text), "%s", text);
    return -1;
}

/* What a stream request resolves to; see server_resolve. */
struct server_target {
    const struct route *route;
    struct topic_filter filter; /* owned */
    struct stream_query query;  /* owned */
    int64_t expires_ms;
};

static void server_target_clear(struct server_target *t)
{
    topic_filter_clear(&t->filter);
    query_clear(&t->query);
}

/* Checks the token for a non-public route. */
static int server_authorize(struct server *srv, const struct request *req,
                            const char *path, struct server_target *t,
                            struct server_refusal *r)
{
    struct auth_request areq = {
        .path = path,
        .authorization = evhttp_find_header(req->in, "Authorization"),
        .query_token = t->query.token,
        .cookie_header = evhttp_find_header(req->in, "Cookie"),
    };
    char who[128];
    enum auth_result res;

    res = auth_check(srv->bridge->auth, &areq, bridge_now_ms(),
                     &t->expires_ms, who, sizeof(who));
    if (res == AUTH_OK)
        return 0;
    if (res == AUTH_FORBIDDEN)
        return server_refuse(r, 403, "Forbidden", auth_result_text(res));
    return server_refuse(r, 401, "Unauthorized", auth_result_text(res));
}

/*
 * Resolves a GET/HEAD on a route path against the current routes and
 * auth: route, query, token, topic filter. Used for new requests and, after
 * SIGHUP, to re-check every open stream. Returns 0 with *t filled (clear
 * it with server_target_clear either way), or -1 with *r filled. Auth
 * globs see the raw path: allow lists only grant, so an escaped character
 * can only fail to match.
 */
static int server_resolve(struct server *srv, const struct request *req,
                          struct server_target *t, struct server_refusal *r)
{
    struct bridge *b = srv->bridge;
    const char *path = req->path;
    struct route_params params = {0};
    enum route_lookup found;
    const char *why;
    char err[128];
    int rc = -1;

    memset(t, 0, sizeof(*t));
    found = route_table_match(b->routes, path, &t->route, &params);
    if (found == ROUTE_NOT_FOUND)
        return server_refuse(r, 404, "Not Found", "not found");
    if (found == ROUTE_BAD_PATH)
        return server_refuse(r, 400, "Bad Request", "bad path");
    if (!route_config_of(t->route)->enabled)
        server_refuse(r, 204, "No Content", "");
    else if (query_parse(req->query, &t->query, &why) < 0)
        server_refuse(r, 400, "Bad Request", why);
    else if (auth_enabled(b->auth) && !route_config_of(t->route)->is_public &&
             server_authorize(srv, req, path, t, r) < 0)
        ; /* refused */
    else if (route_resolve(b->routes, t->route, &params, &t->filter, err,
                           sizeof(err)) < 0)
        server_refuse(r, 400, "Bad Request", err);
    else
        rc = 0;
    route_params_clear(&params);
    if (rc == 0) {
        /* ?topic= narrows the route; the filter now owns the list. */
        t->filter.narrow = t->query.topics;
        memset(&t->query.topics, 0, sizeof(t->query.topics));
    }
    return rc;
}

static void server_reply_refusal(const struct request *req,
                                 const struct server_refusal *r)
{
    if (r->status == 204) {
        req->ops->reply(req, 204, "No Content", NULL);
        return;
    }
    if (r->status == 401)
        evhttp_add_header(req->out, "WWW-Authenticate", "Bearer");
    server_reply_text(req, r->status, r->reason, r->text);
}

/* Decides how the stream starts from the client's last id, if any. */
static void server_resume_start(struct bridge *b, const char *last_id,
                                struct stream_start *start)
{
    uint64_t seq;
    enum history_lookup r;

    start->kind = STREAM_START_FRESH;
    if (last_id == NULL || last_id[0] == '\0')
        return;
    r = history_find(b->history, last_id, strlen(last_id), &seq);
    if (r == HISTORY_FOUND) {
        start->kind = STREAM_START_RESUME;
        start->last_seq = seq;
        return;
    }
    start->kind = STREAM_START_RESET;
    start->reset_reason = r == HISTORY_EXPIRED ? "expired" : "unknown-id";
    start->last_id = last_id;
}

/* A GET or HEAD on a route path. */
static void server_handle_stream(struct server *srv,
                                 const struct request *req)
{
    struct bridge *b = srv->bridge;
    struct server_target t;
    struct server_refusal refusal;
    struct stream_start start = {0};
    const char *last_id;
    struct feed *feed;

    if (server_resolve(srv, req, &t, &refusal) < 0) {
        server_reply_refusal(req, &refusal);
        goto out;
    }
    last_id = evhttp_find_header(req->in, "Last-Event-ID");
    if (last_id == NULL)
        last_id = t.query.last_id; /* the header wins */
    if (last_id != NULL && strlen(last_id) > SERVER_MAX_ID_LEN) {
        server_reply_text(req, 400, "Bad Request", "last event id too long");
        goto out;
    }
    if (req->method == REQUEST_HEAD) {
        server_reply_head(req);
        goto out;
    }
    if (b->nstreams >= b->cfg->stream.max_connections) {
        server_reply_overload(srv, req);
        goto out;
    }
    if (!replica_ready(b)) {
        /* The shared log is not loaded yet: ids cannot be judged. */
        server_reply_come_back(b, req, b->cfg->stream.retry_ms, false);
        goto out;
    }
    if (route_is_per_key(t.route)) {
        keyed_open(b, req, t.route, &t.filter, last_id, t.expires_ms);
        goto out;
    }
    server_resume_start(b, last_id, &start);
    start.snapshot = t.query.snapshot >= 0 ? t.query.snapshot == 1
                                           : route_config_of(t.route)->snapshot;
    start.expires_ms = t.expires_ms;
    feed = feed_acquire(b, t.route, &t.filter);
    if (feed == NULL) {
        server_reply_text(req, 503, "Service Unavailable", "out of memory");
        goto out;
    }
    stream_open(b, req, feed, &start);
out:
    server_target_clear(&t);
}

int server_rehome(struct server *srv, struct stream *s)
{
    struct server_target t;
    struct server_refusal refusal;
    struct feed *feed;
    int rc = -1;

    if (server_resolve(srv, &s->req, &t, &refusal) == 0 &&
        (feed = feed_acquire(srv->bridge, t.route, &t.filter)) != NULL) {
        /* A per-key stream stays only on its own key's feed (a changed
         * route would need a new watch: the client reconnects instead). */
        if ((feed->per_key || s->feed->per_key) && feed != s->feed) {
            feed_drop_if_unused(feed);
            server_target_clear(&t);
            return -1;
        }
        feed_move(s, feed);
        s->expires_ms = t.expires_ms;
        rc = 0;
    }
    server_target_clear(&t);
    return rc;
}

/* A TLS connection's bufferevent, its handshake still to come: evhttp
 * hands it the socket (bufferevent_setfd) and then reads requests
 * through it as from a plain one. A client that closes without a TLS
 * close_notify is an ordinary end of stream, not an error. */
static struct bufferevent *server_tls_bufferevent(struct server *srv,
                                                  struct event_base *base)
{
    SSL *ssl = tls_ssl_new(srv->tls);
    struct bufferevent *bev;

    if (ssl == NULL)
        return NULL;
    bev = bufferevent_openssl_socket_new(base, -1, ssl,
                                         BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        SSL_free(ssl);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

static void server_pending_done(struct server *srv, struct bufferevent *bev);

/*
 * The first bytes of a connection that may speak HTTP/2 (ALPN h2 on the
 * TLS port, or h2c with prior knowledge): the client preface hands the
 * connection to h2.c before evhttp sees a byte of it (this runs inside
 * the read, before the read callback, which h2_conn_take replaces);
 * anything else leaves it to evhttp as HTTP/1.x.
 */
static void server_on_sniff(struct evbuffer *in,
                            const struct evbuffer_cb_info *info, void *arg)
{
    struct server_pending *p = arg;
    struct server *srv = p->srv;
    struct bufferevent *bev = p->bev;
    size_t len = evbuffer_get_length(in);
    int match;

    if (info->n_added == 0 || len == 0)
        return;
    if (len > 24)
        len = 24;
    match = h2_preface_match(evbuffer_pullup(in, (ssize_t)len), len);
    if (match == 0)
        return; /* a prefix of the preface: wait for more */
    evbuffer_remove_cb_entry(in, p->sniff);
    p->sniff = NULL;
    if (match < 0)
        return;
    server_pending_done(srv, bev);
    if (h2_conn_take(srv->h2, bev, srv->tls != NULL) < 0)
        log_limited(LOG_WARN, 10000, "out of memory for an HTTP/2 "
                    "connection");
}

/* evhttp: a new connection's bufferevent (as evhttp would create it, or
 * a TLS one), tracked until its first request arrives. The deadline
 * covers the TLS handshake too: a client that never finishes it is
 * dropped like a slowloris. */
static struct bufferevent *server_new_bufferevent(struct event_base *base,
                                                  void *arg)
{
    struct server *srv = arg;
    struct bufferevent *bev =
        srv->tls != NULL ? server_tls_bufferevent(srv, base)
                         : bufferevent_socket_new(base, -1,
                                                  BEV_OPT_CLOSE_ON_FREE);
    struct server_pending *p;

    if (bev == NULL)
        return NULL;
    srv->bridge->metrics.connections_accepted[srv->tls != NULL]++;
    bufferevent_setwatermark(bev, EV_READ, 0, SERVER_MAX_INPUT);
    p = malloc(sizeof(*p));
    if (p == NULL)
        return bev; /* untracked: only the idle timeout applies */
    bufferevent_incref(bev);
    p->srv = srv;
    p->bev = bev;
    p->deadline_ms = bridge_now_ms() + SERVER_REQUEST_DEADLINE_MS;
    p->tls = srv->tls != NULL;
    p->sniff = srv->h2_sniff ? evbuffer_add_cb(bufferevent_get_input(bev),
                                               server_on_sniff, p)
                             : NULL;
    p->next = srv->pending;
    srv->pending = p;
    return bev;
}

static void server_pending_release(struct server_pending *p)
{
    if (p->sniff != NULL)
        evbuffer_remove_cb_entry(bufferevent_get_input(p->bev), p->sniff);
    bufferevent_decref(p->bev);
    free(p);
}

/* The request on bev arrived in full, so its TLS handshake, if any, is
 * done: stop tracking the connection, and have TLS write with send(2). */
static void server_pending_done(struct server *srv, struct bufferevent *bev)
{
    for (struct server_pending **link = &srv->pending; *link != NULL;
         link = &(*link)->next) {
        struct server_pending *p = *link;
        if (p->bev != bev)
            continue;
        *link = p->next;
        if (p->tls)
            tls_use_send(srv->tls, bev); /* the handshake is done */
        server_pending_release(p);
        return;
    }
}

/* True when evhttp has freed the connection (bufferevent_free clears the
 * callbacks; our reference keeps the rest). */
static bool server_pending_gone(const struct server_pending *p)
{
    bufferevent_data_cb readcb, writecb;
    bufferevent_event_cb eventcb;

    bufferevent_getcb(p->bev, &readcb, &writecb, &eventcb, NULL);
    return readcb == NULL && writecb == NULL && eventcb == NULL;
}

/* True when p is a TLS connection whose handshake never completed. */
static bool server_pending_handshaking(const struct server_pending *p)
{
    SSL *ssl;

    if (!p->tls)
        return false;
    ssl = bufferevent_openssl_get_ssl(p->bev);
    return ssl != NULL && !SSL_is_init_finished(ssl);
}

/*
 * A TLS connection ended (or is being ended) before its handshake
 * completed: counted by why, and logged at most every 10 s with
 * OpenSSL's reason (never anything the client sent).
 */
static void server_handshake_failed(struct server *srv,
                                    struct server_pending *p, bool timeout)
{
    unsigned long e = bufferevent_get_openssl_error(p->bev);
    const char *why = e != 0 ? ERR_reason_error_string(e) : NULL;
    enum tls_failure kind = timeout       ? TLS_FAIL_TIMEOUT
                            : e != 0      ? TLS_FAIL_ERROR
                                          : TLS_FAIL_CLOSED;

    while (bufferevent_get_openssl_error(p->bev) != 0)
        ; /* the rest of its queue */
    srv->bridge->metrics.tls_handshake_failures[kind]++;
    if (timeout)
        why = "no handshake within the request deadline";
    else if (why == NULL)
        why = "closed by the client";
    log_limited(LOG_INFO, 10000, "TLS handshake failed: %s", why);
}

void server_sweep(struct server *srv, int64_t now_ms)
{
    struct server_pending **link = &srv->pending;

    while (*link != NULL) {
        struct server_pending *p = *link;
        bool gone = server_pending_gone(p);

        if (!gone && now_ms < p->deadline_ms) {
            link = &p->next;
            continue;
        }
        /* Past the deadline is a timeout, ours or evhttp's idle one
         * (same length) that closed it first. */
        if (server_pending_handshaking(p))
            server_handshake_failed(srv, p, now_ms >= p->deadline_ms);
        else if (!gone)
            log_limited(LOG_INFO, 10000, "closed a connection that did not "
                        "send a whole request within %d s",
                        SERVER_TIMEOUT_S);
        if (!gone)
            bufferevent_trigger_event(p->bev, BEV_EVENT_EOF | BEV_EVENT_READING,
                                      0);
        *link = p->next;
        server_pending_release(p);
    }
}

void server_handle_request(struct server *srv, const struct request *req)
{
    const struct route *route;
    struct route_params params;
    enum route_lookup found;
    bool cors = server_add_common_headers(srv, req);

    if (req->path == NULL || req->path[0] != '/') {
        server_reply_text(req, 400, "Bad Request", "bad request target");
        return;
    }
    if (server_handle_reserved(srv, req, req->path, cors))
        return;
    if (req->method == REQUEST_GET || req->method == REQUEST_HEAD) {
        server_handle_stream(srv, req);
        return;
    }
    /* Other methods: 404 for unknown paths, else preflight or 405. */
    found = route_table_match(srv->bridge->routes, req->path, &route, &params);
    route_params_clear(&params);
    if (found != ROUTE_FOUND)
        server_reply_text(req, 404, "Not Found", "not found");
    else if (req->method == REQUEST_OPTIONS)
        server_reply_preflight(req, cors);
    else
        server_reply_method_not_allowed(req);
}

/* evhttp's callback for every HTTP/1.x request. */
static void server_handle(struct evhttp_request *evreq, void *arg)
{
    struct server *srv = arg;
    struct request req;

    if (srv->pending != NULL)
        server_pending_done(srv, evhttp_connection_get_bufferevent(
                                     evhttp_request_get_connection(evreq)));
    h1_request_init(evreq, srv->tls != NULL, &req);
    server_handle_request(srv, &req);
}

struct server *server_new(struct bridge *b, char *err, size_t errlen)
{
    struct server *srv = calloc(1, sizeof(*srv));

    if (srv == NULL) {
        snprintf(err, errlen, "server: out of memory");
        return NULL;
    }
    srv->bridge = b;
    if (b->cfg->tls.present &&
        (srv->tls = tls_new(b->cfg, err, errlen)) == NULL) {
        free(srv);
        return NULL;
    }
    srv->http = evhttp_new(b->base);
    if (b->cfg->http2.enabled)
        srv->h2 = h2_server_new(srv, b, SERVER_REQUEST_DEADLINE_MS);
    if (srv->http == NULL || (b->cfg->http2.enabled && srv->h2 == NULL)) {
        snprintf(err, errlen, "server: out of memory");
        if (srv->http != NULL)
            evhttp_free(srv->http);
        tls_free(srv->tls);
        free(srv);
        return NULL;
    }
    /* HTTP/2: by ALPN on the TLS port; in cleartext only when asked
     * (h2c with prior knowledge, for proxy hops). */
    srv->h2_sniff = srv->h2 != NULL &&
                    (srv->tls != NULL || b->cfg->http2.cleartext);
    /* Every method reaches server_handle, which answers 405 itself. */
    evhttp_set_allowed_methods(srv->http, 0xffff);
    evhttp_set_max_headers_size(srv->http, SERVER_MAX_HEADERS_SIZE);
    evhttp_set_max_body_size(srv->http, SERVER_MAX_BODY_SIZE);
    evhttp_set_timeout(srv->http, SERVER_TIMEOUT_S);
    evhttp_set_gencb(srv->http, server_handle, srv);
    evhttp_set_bevcb(srv->http, server_new_bufferevent, srv);
    return srv;
}

static void server_on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    evconnlistener_enable(arg);
}

/*
 * accept(2) failed. At the open-file limit (EMFILE/ENFILE) stop accepting
 * for a moment instead of spinning, and say so at most every 10 s; other
 * errors (a client that reset before accept) are not worth a line.
 * libevent hands this callback evhttp's argument, not ours: it keeps no
 * state of its own.
 */
static void server_on_accept_error(struct evconnlistener *listener, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    struct timeval pause = {0, SERVER_ACCEPT_PAUSE_MS * 1000};

    if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM)
        return;
    log_limited(LOG_WARN, 10000,
                "cannot accept connections: %s; pausing accepts",
                strerror(err));
    evconnlistener_disable(listener);
    event_base_once(evconnlistener_get_base(listener), -1, EV_TIMEOUT,
                    server_on_accept_resume, listener, &pause);
}

/*
 * Creates the listening socket for host:port (the first address it
 * resolves to), non-blocking, with SO_REUSEADDR. Done here rather than by
 * evhttp_bind_socket_with_handle so that a failure says which step failed
 * and why ("Address already in use"). Returns the fd, or -1 with err set.
 *
 * TCP_NODELAY (Linux gives it to every accepted socket): each write is
 * a whole event or a turn's frames, at most one per connection per loop
 * turn, so Nagle's algorithm could only hold an event back until the
 * client acknowledged the one before (a round trip, or a delayed ACK of
 * 40-200 ms). nginx, Go and Node set it on their connections too.
 */
static int server_bind(const char *host, int port, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_ADDRCONFIG};
    struct addrinfo *ai = NULL;
    char service[16];
    const char *step = "socket";
    int one = 1, fd, gai, saved;

    snprintf(service, sizeof(service), "%d", port);
    gai = getaddrinfo(host, service, &hints, &ai);
    if (gai != 0 || ai == NULL) {
        snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port,
                 gai != 0 ? gai_strerror(gai) : "no address");
        if (ai != NULL)
            freeaddrinfo(ai);
        return -1;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 && (step = "setsockopt",
                    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
                               sizeof(one))) == 0 &&
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0 &&
        (step = "bind", bind(fd, ai->ai_addr, ai->ai_addrlen)) == 0 &&
        (step = "listen", listen(fd, SERVER_BACKLOG)) == 0) {
        freeaddrinfo(ai);
        return fd;
    }
    saved = errno;
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    snprintf(err, errlen, "cannot listen on %s:%d: %s: %s", host, port, step,
             strerror(saved));
    return -1;
}

int server_listen(struct server *srv, char *err, size_t errlen)
{
    const struct config *cfg = srv->bridge->cfg;
    int fd = server_bind(cfg->listen_host, cfg->listen_port, err, errlen);

    if (fd < 0)
        return -1;
    srv->socket = evhttp_accept_socket_with_handle(srv->http, fd);
    if (srv->socket == NULL) {
        close(fd);
        snprintf(err, errlen, "cannot listen on %s:%d: out of memory",
                 cfg->listen_host, cfg->listen_port);
        return -1;
    }
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(srv->socket),
                                server_on_accept_error);
    return 0;
}

void server_stop_listening(struct server *srv)
{
    if (srv->socket == NULL)
        return;
    evhttp_del_accept_socket(srv->http, srv->socket);
    srv->socket = NULL;
}

void server_free(struct server *srv)
{
    if (srv == NULL)
        return;
    h2_server_free(srv->h2);
    evhttp_free(srv->http);
    while (srv->pending != NULL) {
        struct server_pending *p = srv->pending;
        srv->pending = p->next;
        server_pending_release(p);
    }
    tls_free(srv->tls);
    free(srv);
}

int server_reload_tls(struct server *srv, const struct config *cfg, char *err,
                      size_t errlen)
{
    if (srv->tls == NULL || !cfg->tls.present) {
        if ((srv->tls != NULL) != cfg->tls.present) {
            snprintf(err, errlen, "turning tls on or off needs a restart");
            return -1;
        }
        return 0;
    }
    return tls_reload(srv->tls, cfg, err, errlen);
}
