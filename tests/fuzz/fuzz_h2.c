/*
 * fuzz_h2.c - libFuzzer driver for the HTTP/2 transport: the input is
 * what a client sends after the connection preface (frames, HPACK header
 * blocks, windows, resets, pings, settings, garbage), fed to the server's
 * HTTP/2 session exactly as h2.c runs it in the binary: nghttp2 with
 * sluice's options, each complete request routed, authorized and
 * answered by server.c, SSE streams opened by stream.c on real feeds.
 *
 * The bridge is built once from an embedded config (routes public and
 * private, CORS, compression, a per-key route) and never started: no
 * source connects, no event arrives, so streams stay open and idle until
 * the input ends. Each input gets one end of a bufferevent pair as its
 * connection (no sockets, deterministic); what the server writes back is
 * read and dropped; then the server's end gets an end of file, as from a
 * socket, and the connection must be gone within a few loop turns. Any crash, leak or sanitizer
 * report is a finding.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "bridge/bridge.h"
#include "bridge/h2.h"
#include "config/config.h"
#include "lib/log.h"
#include "lib/route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_INPUT (64 * 1024)
#define FUZZ_MAX_TURNS 64

static const char fuzz_yaml[] =
    "listen: 127.0.0.1:1\n"
    "sources:\n"
    "  - {name: cache, type: redis, url: 'redis://127.0.0.1:1'}\n"
    "  - {name: ai, type: redis-stream, url: 'redis://127.0.0.1:1'}\n"
    "routes:\n"
    "  - {path: '/orders/{region}', topics: ['cache:orders:{region}'],"
    " public: true, snapshot: true}\n"
    "  - {path: '/private/{x}', topics: ['cache:{x}']}\n"
    "  - {path: '/off', topics: ['cache:off'], enabled: false, public: true}\n"
    "  - {path: '/jobs/{job}', topics: ['ai:job:{job}'], public: true}\n"
    "auth:\n"
    "  tokens: [{name: t, token: fuzz-token, allow: ['/private/*']}]\n"
    "cors: {origins: ['https://app.example']}\n"
    "stream: {compression: true, padding: 64}\n"
    "http2: {enabled: true, cleartext: true, max_concurrent_streams: 8}\n"
    "logging: {level: error}\n";

static const char fuzz_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static struct {
    struct bridge *bridge;
    struct h2_server *h2;
} fuzz;

static void fuzz_init(void)
{
    char *errors = NULL;
    char err[256];
    struct config *cfg;
    struct route_table *routes;

    cfg = config_parse("fuzz.yaml", fuzz_yaml, strlen(fuzz_yaml), &errors);
    if (cfg == NULL) {
        fprintf(stderr, "fuzz_h2: %s", errors);
        abort();
    }
    log_configure(cfg->log_level, cfg->log_format);
    routes = route_table_build(cfg, &errors);
    if (routes == NULL) {
        fprintf(stderr, "fuzz_h2: %s", errors);
        abort();
    }
    fuzz.bridge = bridge_new(cfg, routes, NULL, err, sizeof(err));
    if (fuzz.bridge == NULL) {
        fprintf(stderr, "fuzz_h2: %s\n", err);
        abort();
    }
    fuzz.h2 = h2_server_new(fuzz.bridge->server, fuzz.bridge, 10000);
    if (fuzz.h2 == NULL)
        abort();
}

/* What the server writes: read and dropped. */
static void fuzz_on_client_read(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);

    evbuffer_drain(in, evbuffer_get_length(in));
}

/* True once h2.c has freed its end (bufferevent_free clears the
 * callbacks; our reference keeps the rest). */
static bool fuzz_server_end_gone(struct bufferevent *bev)
{
    bufferevent_data_cb readcb, writecb;
    bufferevent_event_cb eventcb;

    bufferevent_getcb(bev, &readcb, &writecb, &eventcb, NULL);
    return readcb == NULL && writecb == NULL && eventcb == NULL;
}

static void fuzz_run(int turns)
{
    for (int i = 0; i < turns; i++)
        event_base_loop(fuzz.bridge->base, EVLOOP_NONBLOCK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bufferevent *pair[2];

    if (fuzz.bridge == NULL)
        fuzz_init();
    if (size > FUZZ_MAX_INPUT)
        return 0;
    if (bufferevent_pair_new(fuzz.bridge->base, 0, pair) != 0)
        abort();
    bufferevent_setcb(pair[1], fuzz_on_client_read, NULL, NULL, NULL);
    bufferevent_enable(pair[1], EV_READ | EV_WRITE);
    /* Our reference keeps the server's end readable after h2.c frees it
     * (a protocol error ends the connection during the input). */
    bufferevent_incref(pair[0]);
    if (h2_conn_take(fuzz.h2, pair[0], false) < 0)
        abort();
    bufferevent_write(pair[1], fuzz_preface, sizeof(fuzz_preface) - 1);
    bufferevent_write(pair[1], data, size);
    fuzz_run(FUZZ_MAX_TURNS);
    /* The client goes away: a pair does not tell the other end, so say
     * it as the socket would (end of file); the connection frees itself
     * and every stream it opened. */
    if (!fuzz_server_end_gone(pair[0]))
        bufferevent_trigger_event(pair[0], BEV_EVENT_EOF, 0);
    fuzz_run(FUZZ_MAX_TURNS);
    if (!fuzz_server_end_gone(pair[0]))
        abort(); /* a connection that outlives its client: a leak */
    bufferevent_decref(pair[0]);
    bufferevent_free(pair[1]);
    return 0;
}
