/*
 * fuzz_http.c - libFuzzer driver for a whole HTTP request, as a client
 * sends it: the input is written, as is, to a loopback connection of an
 * in-process evhttp server (libevent's own request parser and limits, set
 * as bridge/server.c sets them), whose handler runs the request-level
 * steps of server_resolve on what evhttp parsed: path -> route match ->
 * query string -> Last-Event-ID -> Accept-Encoding negotiation -> auth
 * headers (Authorization, ?token=, Cookie) -> route_resolve into a topic
 * filter (fuzz_headers calls the header parsers directly, faster). Several pipelined
 * requests in one input are all answered.
 *
 * The bridge itself (sources, history, streams) is not built: its request
 * handling is these steps plus the stream response, which the integration
 * tests cover against the real binary. The server, routes and auth are
 * built once per process (a fuzz driver's only state); every input gets a
 * fresh connection, reset at the end (SO_LINGER 0) so that millions of
 * runs leave no TIME_WAIT behind.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "auth/auth.h"
#include "config/config.h"
#include "lib/compress.h"
#include "lib/query.h"
#include "lib/route.h"
#include "lib/topic.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_NOW_MS 1764000000000LL
#define FUZZ_MAX_INPUT (64 * 1024)
#define FUZZ_MAX_TURNS 200

static const char fuzz_yaml[] =
    "sources:\n"
    "  - {name: plant, type: mqtt, url: 'mqtt://127.0.0.1:1883'}\n"
    "  - {name: cache, type: redis, url: 'redis://127.0.0.1:6379'}\n"
    "  - {name: ai, type: redis-stream, url: 'redis://127.0.0.1:6379'}\n"
    "routes:\n"
    "  - {path: '/sites/{site}/temp', topics: ['plant:f/{site}/+/t']}\n"
    "  - {path: '/mqtt/{topic*}', topics: ['plant:{topic}'], public: true}\n"
    "  - {path: '/orders/{region}', topics: ['cache:orders:{region}']}\n"
    "  - {path: '/audit', topics: ['ai:audit'], format: raw}\n"
    "  - {path: '/all', topics: ['cache:*'], public: true}\n"
    "auth:\n"
    "  tokens: [{name: wall, token: fuzz-static-token, allow: ['/sites/*']}]\n"
    "  jwt: {algorithm: HS256, secret: fuzz-secret, allow: ['/users/{sub}/*']}\n"
    "  cookie: sluice_token\n";

struct fuzz_server {
    struct event_base *base;
    struct evhttp *http;
    struct config *cfg;
    struct route_table *routes;
    struct auth *auth;
    struct sockaddr_in addr;
};

static struct fuzz_server fuzz;

/* server_resolve's steps on a parsed request; answers 200 or an error. */
static void fuzz_handle(struct evhttp_request *req, void *arg)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    struct route_params params = {0};
    struct topic_filter filter = {0};
    struct stream_query q;
    const struct route *route;
    const char *why, *last_id;
    char err[128], who[128];
    int64_t expires = 0;
    int status = 400;

    (void)arg;
    if (path == NULL || path[0] != '/')
        goto reply;
    if (route_table_match(fuzz.routes, path, &route, &params) !=
        ROUTE_FOUND) {
        route_params_clear(&params);
        status = 404;
        goto reply;
    }
    if (query_parse(evhttp_uri_get_query(uri), &q, &why) < 0) {
        if (why == NULL)
            abort(); /* a refusal always has a reason */
    } else {
        last_id = evhttp_find_header(in, "Last-Event-ID");
        (void)(last_id != NULL ? strlen(last_id) : 0);
        /* As evhttp hands it over (fuzz_headers drives it directly). */
        if (compress_negotiate(evhttp_find_header(in, "Accept-Encoding")) >
            COMPRESS_DEFLATE)
            abort();
        struct auth_request areq = {
            .path = path,
            .authorization = evhttp_find_header(in, "Authorization"),
            .query_token = q.token,
            .cookie_header = evhttp_find_header(in, "Cookie"),
        };
        enum auth_result r = auth_check(fuzz.auth, &areq, FUZZ_NOW_MS,
                                        &expires, who, sizeof(who));
        if (auth_result_text(r) == NULL)
            abort();
        if (route_resolve(fuzz.routes, route, &params, &filter, err,
                          sizeof(err)) == 0) {
            status = r == AUTH_OK ? 200 : 401;
            topic_filter_clear(&filter);
        }
    }
    query_clear(&q);
    route_params_clear(&params);
reply:
    evhttp_send_reply(req, status, "X", NULL);
}

/* Builds the server once: config, routes, auth, a loopback listener. */
static void fuzz_init(void)
{
    char *errors = NULL;
    char err[256];
    struct evhttp_bound_socket *sock;
    socklen_t len = sizeof(fuzz.addr);

    fuzz.cfg = config_parse("fuzz.yaml", fuzz_yaml, strlen(fuzz_yaml),
                            &errors);
    if (fuzz.cfg == NULL) {
        fprintf(stderr, "fuzz_http: %s", errors);
        abort();
    }
    fuzz.routes = route_table_build(fuzz.cfg, &errors);
    fuzz.auth = auth_new(fuzz.cfg, err, sizeof(err));
    fuzz.base = event_base_new();
    fuzz.http = fuzz.base != NULL ? evhttp_new(fuzz.base) : NULL;
    if (fuzz.routes == NULL || fuzz.auth == NULL || fuzz.http == NULL) {
        fprintf(stderr, "fuzz_http: cannot set up: %s %s\n",
                errors != NULL ? errors : "", fuzz.auth == NULL ? err : "");
        abort();
    }
    /* As bridge/server.c configures it. */
    evhttp_set_allowed_methods(fuzz.http, 0xffff);
    evhttp_set_max_headers_size(fuzz.http, 16 * 1024);
    evhttp_set_max_body_size(fuzz.http, 4096);
    evhttp_set_timeout(fuzz.http, 10);
    evhttp_set_gencb(fuzz.http, fuzz_handle, NULL);
    sock = evhttp_bind_socket_with_handle(fuzz.http, "127.0.0.1", 0);
    if (sock == NULL ||
        getsockname(evhttp_bound_socket_get_fd(sock),
                    (struct sockaddr *)&fuzz.addr, &len) != 0)
        abort();
}

/* A fresh loopback connection to the server. After hundreds of thousands
 * of runs a connect can fail for a moment (the listener's backlog, the
 * ephemeral ports of a shared machine): run the loop so the server
 * accepts and frees what it holds, and try again; only a lasting failure
 * is the driver's. */
static int fuzz_connect(void)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);

        if (fd >= 0 && connect(fd, (struct sockaddr *)&fuzz.addr,
                               sizeof(fuzz.addr)) == 0)
            return fd;
        if (attempt == 49) {
            fprintf(stderr, "fuzz_http: cannot connect: %s\n",
                    strerror(errno));
            abort();
        }
        if (fd >= 0)
            close(fd);
        for (int turn = 0; turn < 10; turn++)
            event_base_loop(fuzz.base, EVLOOP_NONBLOCK);
        usleep(10000);
    }
    return -1;
}

/* Sends the input on a fresh connection and runs the loop until the
 * server closes it (or a bounded number of turns). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct linger reset = {1, 0};
    char buf[4096];
    int fd;

    if (fuzz.base == NULL)
        fuzz_init();
    if (size > FUZZ_MAX_INPUT)
        size = FUZZ_MAX_INPUT;
    fd = fuzz_connect();
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
    if (size > 0)
        (void)send(fd, data, size, MSG_DONTWAIT | MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR);
    for (int turn = 0; turn < FUZZ_MAX_TURNS; turn++) {
        ssize_t n;
        event_base_loop(fuzz.base, EVLOOP_NONBLOCK);
        n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            break;
    }
    close(fd);
    /* Let evhttp see the reset and free the connection. */
    event_base_loop(fuzz.base, EVLOOP_NONBLOCK);
    return 0;
}
