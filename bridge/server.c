/*
 * server.c - the HTTP front; see server.h for the request pipeline.
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
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "auth/auth.h"
#include "bridge/bridge.h"
#include "bridge/feed.h"
#include "bridge/history.h"
#include "bridge/log.h"
#include "bridge/route.h"
#include "bridge/stream.h"

#define SERVER_MAX_HEADERS_SIZE (16 * 1024)
#define SERVER_MAX_BODY_SIZE 4096
#define SERVER_TIMEOUT_S 10
#define SERVER_MAX_ID_LEN 128
#define SERVER_MAX_TOPICS 16
#define SERVER_ALLOW "GET, HEAD, OPTIONS"

struct server {
    struct bridge *bridge;
    struct evhttp *http;
    struct evhttp_bound_socket *socket;
};

/* The parameters of a stream request's query string, decoded. */
struct server_query {
    char *token;
    char *last_id;
    int snapshot; /* -1: route default */
    struct config_strv topics;
};

static void server_query_clear(struct server_query *q)
{
    free(q->token);
    free(q->last_id);
    for (size_t i = 0; i < q->topics.count; i++)
        free(q->topics.items[i]);
    free(q->topics.items);
    memset(q, 0, sizeof(*q));
}

static int server_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Strict application/x-www-form-urlencoded decoding of s[0..len): "+" is
 * a space, "%" needs two hex digits, and a decoded NUL is refused. Hand-
 * written because evhttp's decoder silently keeps malformed escapes, and
 * SPEC 4 wants a 400 for them. Returns a malloc'd string or NULL.
 */
static char *server_decode(const char *s, size_t len)
{
    char *out = malloc(len + 1);
    size_t n = 0;

    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        if (s[i] == '+') {
            out[n++] = ' ';
            continue;
        }
        if (s[i] != '%') {
            out[n++] = s[i];
            continue;
        }
        if (i + 2 >= len)
            goto bad;
        hi = server_hex(s[i + 1]);
        lo = server_hex(s[i + 2]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
            goto bad;
        out[n++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out[n] = '\0';
    return out;
bad:
    free(out);
    return NULL;
}

static int server_query_add_topic(struct server_query *q, char *value)
{
    char **items;

    if (q->topics.count >= SERVER_MAX_TOPICS)
        return -1;
    items = realloc(q->topics.items, (q->topics.count + 1) * sizeof(*items));
    if (items == NULL)
        return -1;
    q->topics.items = items;
    q->topics.items[q->topics.count++] = value;
    return 0;
}

/* Stores one decoded key=value; takes value. -1 with why on refusal. */
static int server_query_set(struct server_query *q, const char *key,
                            char *value, const char **why)
{
    if (strcmp(key, "token") == 0) {
        free(q->token);
        q->token = value;
    } else if (strcmp(key, "lastEventId") == 0) {
        free(q->last_id);
        q->last_id = value;
    } else if (strcmp(key, "snapshot") == 0) {
        q->snapshot = strcmp(value, "1") == 0 ? 1
                      : strcmp(value, "0") == 0 ? 0 : -2;
        free(value);
        if (q->snapshot == -2) {
            *why = "snapshot must be 0 or 1";
            return -1;
        }
    } else if (strcmp(key, "topic") == 0) {
        if (value[0] == '\0' || server_query_add_topic(q, value) < 0) {
            free(value);
            *why = "bad topic parameter";
            return -1;
        }
    } else {
        free(value); /* unknown parameters (cache busters) are ignored */
    }
    return 0;
}

/* Parses the raw query (may be NULL). 0, or -1 with why. */
static int server_query_parse(const char *raw, struct server_query *q,
                              const char **why)
{
    memset(q, 0, sizeof(*q));
    q->snapshot = -1;
    *why = "malformed query string";
    for (const char *p = raw; p != NULL && *p != '\0';) {
        const char *end = strchr(p, '&');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t klen = eq != NULL ? (size_t)(eq - p) : len;
        char *key = server_decode(p, klen);
        char *value = eq != NULL ? server_decode(eq + 1, len - klen - 1)
                                 : strdup("");
        int rc;

        if (key == NULL || value == NULL) {
            free(key);
            free(value);
            return -1;
        }
        rc = server_query_set(q, key, value, why);
        free(key);
        if (rc < 0)
            return -1;
        p = end != NULL ? end + 1 : NULL;
    }
    return 0;
}

/* One short line of text; never echoes client input that could hold a
 * token. */
static void server_reply_text(struct evhttp_request *req, int code,
                              const char *reason, const char *text)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    struct evbuffer *body = evbuffer_new();

    evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
    if (body != NULL)
        evbuffer_add_printf(body, "%s\n", text);
    evhttp_send_reply(req, code, reason, body);
    if (body != NULL)
        evbuffer_free(body);
}

/* Headers on every response: no caching (tokens may sit in URLs), no
 * referrer, and CORS for configured origins. */
static void server_add_common_headers(struct server *srv,
                                      struct evhttp_request *req)
{
    const struct config *cfg = srv->bridge->cfg;
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    const char *origin =
        evhttp_find_header(evhttp_request_get_input_headers(req), "Origin");

    evhttp_add_header(out, "Cache-Control", "no-store");
    evhttp_add_header(out, "Referrer-Policy", "no-referrer");
    if (cfg->cors_origins.count == 0)
        return;
    evhttp_add_header(out, "Vary", "Origin");
    if (origin == NULL)
        return;
    for (size_t i = 0; i < cfg->cors_origins.count; i++) {
        const char *allowed = cfg->cors_origins.items[i];
        if (strcmp(allowed, "*") != 0 && strcmp(allowed, origin) != 0)
            continue;
        evhttp_add_header(out, "Access-Control-Allow-Origin",
                          strcmp(allowed, "*") == 0 ? "*" : origin);
        if (cfg->auth.cookie != NULL)
            evhttp_add_header(out, "Access-Control-Allow-Credentials",
                              "true");
        return;
    }
}

static void server_reply_preflight(struct evhttp_request *req)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);

    evhttp_add_header(out, "Allow", SERVER_ALLOW);
    evhttp_add_header(out, "Access-Control-Allow-Methods", SERVER_ALLOW);
    evhttp_add_header(out, "Access-Control-Allow-Headers",
                      "Authorization, Last-Event-ID, Cache-Control");
    evhttp_add_header(out, "Access-Control-Max-Age", "600");
    evhttp_send_reply(req, 204, "No Content", NULL);
}

static void server_reply_method_not_allowed(struct evhttp_request *req)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                      SERVER_ALLOW);
    server_reply_text(req, 405, "Method Not Allowed", "method not allowed");
}

static void server_handle_readyz(struct server *srv,
                                 struct evhttp_request *req)
{
    struct bridge *b = srv->bridge;
    struct evbuffer *body = evbuffer_new();
    bool ready = true;

    if (body == NULL) {
        evhttp_send_error(req, 503, "Service Unavailable");
        return;
    }
    for (size_t i = 0; i < b->nsources; i++) {
        const struct source *src = &b->sources[i];
        if (src->state == SOURCE_UP)
            continue;
        ready = false;
        evbuffer_add_printf(body, "source %s: %s\n", src->cfg->name,
                            src->state == SOURCE_CONNECTING ? "subscribing"
                                                            : src->status);
    }
    if (ready)
        evbuffer_add(body, "ok\n", 3);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; charset=utf-8");
    evhttp_send_reply(req, ready ? 200 : 503,
                      ready ? "OK" : "Service Unavailable", body);
    evbuffer_free(body);
}

static void server_handle_metrics(struct server *srv,
                                  struct evhttp_request *req)
{
    struct evbuffer *body = evbuffer_new();

    if (body == NULL) {
        evhttp_send_error(req, 503, "Service Unavailable");
        return;
    }
    metrics_render(srv->bridge, body);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, 200, "OK", body);
    evbuffer_free(body);
}

/* /healthz, /readyz, /metrics. Returns false when path is none of them. */
static bool server_handle_reserved(struct server *srv,
                                   struct evhttp_request *req,
                                   const char *path)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    bool get = cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD;

    if (strcmp(path, "/healthz") != 0 && strcmp(path, "/readyz") != 0 &&
        strcmp(path, "/metrics") != 0)
        return false;
    if (cmd == EVHTTP_REQ_OPTIONS)
        server_reply_preflight(req);
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
static void server_reply_overload(struct server *srv,
                                  struct evhttp_request *req)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    struct evbuffer *body = evbuffer_new();

    srv->bridge->metrics.dropped[DROP_OVERLOAD]++;
    evhttp_add_header(out, "Content-Type", "text/event-stream");
    evhttp_add_header(out, "Connection", "close");
    if (body != NULL)
        evbuffer_add_printf(body, "retry: %lld\n\n",
                            (long long)srv->bridge->cfg->stream
                                .retry_overload_ms);
    evhttp_send_reply(req, 200, "OK", body);
    if (body != NULL)
        evbuffer_free(body);
}

static void server_reply_head(struct evhttp_request *req)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);

    evhttp_add_header(out, "Content-Type", "text/event-stream");
    evhttp_add_header(out, "X-Accel-Buffering", "no");
    evhttp_send_reply(req, 200, "OK", NULL);
}

/* Checks the token for a non-public route. Returns true when the request
 * may go on; otherwise it has been answered. */
static bool server_authorize(struct server *srv, struct evhttp_request *req,
                             const char *path, const char *query_token,
                             int64_t *expires_ms)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    struct auth_request areq = {
        .path = path,
        .authorization = evhttp_find_header(in, "Authorization"),
        .query_token = query_token,
        .cookie_header = evhttp_find_header(in, "Cookie"),
    };
    char who[128];
    enum auth_result r = auth_check(srv->bridge->auth, &areq,
                                    bridge_now_ms(), expires_ms, who,
                                    sizeof(who));

    if (r == AUTH_OK)
        return true;
    if (r == AUTH_FORBIDDEN) {
        server_reply_text(req, 403, "Forbidden", auth_result_text(r));
        return false;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req),
                      "WWW-Authenticate", "Bearer");
    server_reply_text(req, 401, "Unauthorized", auth_result_text(r));
    return false;
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

/*
 * A GET or HEAD on an enabled route. Auth globs see the raw path: allow
 * lists only grant, so an escaped character can only fail to match.
 */
static void server_handle_stream(struct server *srv,
                                 struct evhttp_request *req,
                                 const char *path, const char *query,
                                 const struct route *route,
                                 struct route_params *params)
{
    struct bridge *b = srv->bridge;
    const struct route_config *rc = route_config_of(route);
    struct server_query q;
    struct topic_filter filter = {0};
    struct stream_start start = {0};
    const char *why;
    char err[128];
    const char *last_id;
    struct feed *feed;

    if (server_query_parse(query, &q, &why) < 0) {
        server_reply_text(req, 400, "Bad Request", why);
        goto out;
    }
    if (auth_enabled(b->auth) && !rc->is_public &&
        !server_authorize(srv, req, path, q.token, &start.expires_ms))
        goto out;
    last_id = evhttp_find_header(evhttp_request_get_input_headers(req),
                                 "Last-Event-ID");
    if (last_id == NULL)
        last_id = q.last_id;
    if (last_id != NULL && strlen(last_id) > SERVER_MAX_ID_LEN) {
        server_reply_text(req, 400, "Bad Request", "last event id too long");
        goto out;
    }
    if (route_resolve(b->routes, route, params, &filter, err,
                      sizeof(err)) < 0) {
        server_reply_text(req, 400, "Bad Request", err);
        goto out;
    }
    filter.narrow = q.topics;
    memset(&q.topics, 0, sizeof(q.topics));
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        server_reply_head(req);
        goto out;
    }
    if (b->nstreams >= b->cfg->stream.max_connections) {
        server_reply_overload(srv, req);
        goto out;
    }
    server_resume_start(b, last_id, &start);
    start.snapshot = q.snapshot >= 0 ? q.snapshot == 1 : rc->snapshot;
    feed = feed_acquire(b, route, &filter);
    if (feed == NULL) {
        server_reply_text(req, 503, "Service Unavailable", "out of memory");
        goto out;
    }
    stream_open(b, req, feed, &start);
out:
    topic_filter_clear(&filter);
    server_query_clear(&q);
}

static void server_handle(struct evhttp_request *req, void *arg)
{
    struct server *srv = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    const struct route *route;
    struct route_params params = {0};
    enum route_lookup found;

    server_add_common_headers(srv, req);
    if (path == NULL || path[0] != '/') {
        server_reply_text(req, 400, "Bad Request", "bad request target");
        return;
    }
    if (server_handle_reserved(srv, req, path))
        return;
    found = route_table_match(srv->bridge->routes, path, &route, &params);
    if (found == ROUTE_NOT_FOUND) {
        server_reply_text(req, 404, "Not Found", "not found");
        return;
    }
    if (found == ROUTE_BAD_PATH) {
        server_reply_text(req, 400, "Bad Request", "bad path");
        return;
    }
    if (cmd == EVHTTP_REQ_OPTIONS)
        server_reply_preflight(req);
    else if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD)
        server_reply_method_not_allowed(req);
    else if (!route_config_of(route)->enabled)
        evhttp_send_reply(req, 204, "No Content", NULL);
    else
        server_handle_stream(srv, req, path, evhttp_uri_get_query(uri),
                             route, &params);
    route_params_clear(&params);
}

struct server *server_new(struct bridge *b)
{
    struct server *srv = calloc(1, sizeof(*srv));

    if (srv == NULL)
        return NULL;
    srv->bridge = b;
    srv->http = evhttp_new(b->base);
    if (srv->http == NULL) {
        free(srv);
        return NULL;
    }
    /* Every method reaches server_handle, which answers 405 itself. */
    evhttp_set_allowed_methods(srv->http, 0xffff);
    evhttp_set_max_headers_size(srv->http, SERVER_MAX_HEADERS_SIZE);
    evhttp_set_max_body_size(srv->http, SERVER_MAX_BODY_SIZE);
    evhttp_set_timeout(srv->http, SERVER_TIMEOUT_S);
    evhttp_set_gencb(srv->http, server_handle, srv);
    return srv;
}

int server_listen(struct server *srv, char *err, size_t errlen)
{
    const struct config *cfg = srv->bridge->cfg;

    srv->socket = evhttp_bind_socket_with_handle(
        srv->http, cfg->listen_host, (ev_uint16_t)cfg->listen_port);
    if (srv->socket == NULL) {
        snprintf(err, errlen, "cannot listen on %s:%d", cfg->listen_host,
                 cfg->listen_port);
        return -1;
    }
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
    evhttp_free(srv->http);
    free(srv);
}
