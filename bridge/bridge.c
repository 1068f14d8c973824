/*
 * bridge.c - owns a running sluice; see bridge.h for the event path.
 *
 * Also home of the sink that adapters call, the housekeeping tick
 * (history max_age, heartbeats, token expiry, stream lifetimes), the reap
 * list, signals and the drain on SIGTERM.
 */
#include "bridge/bridge.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "auth/auth.h"
#include "bridge/feed.h"
#include "bridge/keyed.h"
#include "lib/history.h"
#include "lib/history_local.h"
#include "lib/lastvalue.h"
#include "lib/log.h"
#include "lib/message.h"
#include "bridge/reload.h"
#include "bridge/replica.h"
#include "lib/route.h"
#include "bridge/upstream.h"
#include "bridge/server.h"
#include "bridge/stream.h"
#include "bridge/writer.h"
#include "lib/topic.h"
#include "lib/topic_index.h"

/* Housekeeping period: the precision of heartbeats, token expiry and
 * max_lifetime. One walk of the stream list, ~1 ms for 20,000 streams. */
#define BRIDGE_TICK_MS 250
#define BRIDGE_DRAIN_POLL_MS 50

int64_t bridge_now_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

uint64_t bridge_random(struct bridge *b, uint64_t n)
{
    /* xorshift64: jitter only, nothing secret depends on it. */
    b->rng ^= b->rng << 13;
    b->rng ^= b->rng >> 7;
    b->rng ^= b->rng << 17;
    return n == 0 ? 0 : b->rng % n;
}

const char *bridge_source_name(const struct bridge *b, uint32_t i)
{
    return b->cfg->sources[i].name;
}

/* Over max_payload: counted (too_large) and logged, at most every 10 s. */
static bool bridge_sink_too_large(void *ctx, struct source *src,
                                  const char *topic, size_t payload_len)
{
    struct bridge *b = ctx;

    if (payload_len <= b->cfg->max_payload)
        return false;
    b->metrics.sources[src->index].too_large++;
    log_limited(LOG_WARN, 10000,
                "source %s: dropped a %zu-byte message on '%.64s' "
                "(max_payload %llu)",
                src->cfg->name, payload_len, topic,
                (unsigned long long)b->cfg->max_payload);
    return true;
}

/*
 * The sink: one message from an adapter. Hot path: size check, append
 * (which gives the id), then the feeds. Returns 0 when stored.
 */
static int bridge_sink_deliver(void *ctx, struct source *src,
                               struct message *msg)
{
    struct bridge *b = ctx;
    struct source_metrics *sm = &b->metrics.sources[src->index];
    int stored;

    if (b->draining) {
        message_unref(msg);
        return -1;
    }
    if (bridge_sink_too_large(b, src, msg->topic, msg->payload_len)) {
        message_unref(msg);
        return -1;
    }
    if (b->log != NULL)
        return replica_deliver(b, src, msg); /* fanned out when read back */
    /* history_append takes the reference; the history keeps msg alive
     * through the dispatch below (the newest entry is never evicted). */
    stored = history_append(b->history, msg);
    if (stored < 0)
        return -1;
    lastvalue_put(b->lastvalue, msg);
    sm->received++;
    feed_dispatch(b, msg);
    return stored == 0 ? 0 : -1;
}

static void bridge_sink_state_changed(void *ctx, struct source *src)
{
    enum source_state was = src->reported;

    src->reported = src->state;
    if (src->state == SOURCE_UP && was != SOURCE_UP)
        log_info("source %s: up", src->cfg->name);
    else if (src->state == SOURCE_DOWN && was == SOURCE_UP)
        log_warn("source %s: down: %s", src->cfg->name, src->status);
}

struct last_entry_search {
    uint32_t source;
    const char *key;
    size_t keylen;
    char *out;
    size_t outlen;
    int found;
};

static bool bridge_match_last_entry(void *arg, const struct message *m)
{
    struct last_entry_search *q = arg;

    if (m->source != q->source || m->stream_entry_id == NULL ||
        m->topic_len != q->keylen || memcmp(m->topic, q->key, q->keylen) != 0)
        return true;
    snprintf(q->out, q->outlen, "%s", m->stream_entry_id);
    q->found = 1;
    return false;
}

/* Scans the history from the newest entry: runs once per (re)connect of
 * a redis-stream source, not per message. */
static int bridge_sink_last_entry_id(void *ctx, struct source *src,
                                     const char *key, char *out,
                                     size_t outlen)
{
    struct bridge *b = ctx;
    struct last_entry_search q = {src->index, key, strlen(key), out, outlen,
                                  0};

    if (b->log != NULL)
        return replica_last_entry_id(b, src, key, out, outlen);
    history_scan_back(b->history, bridge_match_last_entry, &q);
    return q.found;
}

void bridge_schedule_reap(struct bridge *b, struct stream *s)
{
    if (s->reaping)
        return;
    s->reaping = true;
    s->reap_next = b->reap;
    b->reap = s;
    event_active(b->reap_ev, EV_TIMEOUT, 0);
}

static void bridge_on_reap(evutil_socket_t fd, short what, void *arg)
{
    struct bridge *b = arg;

    while (b->reap != NULL) {
        struct stream *s = b->reap;
        b->reap = s->reap_next;
        s->reaping = false;
        b->metrics.dropped[s->reap_reason]++;
        if (s->reap_reason == DROP_SLOW)
            log_debug("reset a slow stream (max_pending)");
        if (s->reap_reason == DROP_END)
            stream_close(s, true, b->cfg->stream.retry_ms);
        else
            stream_cut(s);
    }
}

static void bridge_on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct bridge *b = arg;
    int64_t now = bridge_now_ms();

    history_expire(b->history, now);
    server_sweep(b->server, now);
    for (struct stream *s = b->streams; s != NULL; s = s->next)
        stream_tick(s, now);
}

static void bridge_on_drain_poll(evutil_socket_t fd, short what, void *arg)
{
    struct bridge *b = arg;
    static const struct timeval poll = {0, BRIDGE_DRAIN_POLL_MS * 1000};

    if (b->nstreams == 0 && replica_released(b)) {
        event_base_loopexit(b->base, NULL);
        return;
    }
    evtimer_add(b->drain_ev, &poll);
}

void bridge_drain(struct bridge *b)
{
    int64_t retry = b->cfg->stream.retry_ms;
    struct timeval grace = {b->cfg->shutdown_grace_ms / 1000,
                            (b->cfg->shutdown_grace_ms % 1000) * 1000};
    struct stream *s, *next;

    if (b->draining)
        return;
    b->draining = true;
    log_info("draining %zu streams (shutdown_grace %lld ms)", b->nstreams,
             (long long)b->cfg->shutdown_grace_ms);
    server_stop_listening(b->server);
    replica_release(b);
    for (size_t i = 0; i < b->nsources; i++)
        b->sources[i].ops->stop(&b->sources[i]);
    /* Each browser gets its own retry in [1, 3] x stream.retry, so they do
     * not all come back to the replacement at the same moment. */
    for (s = b->streams; s != NULL; s = next) {
        next = s->next;
        if (s->reaping || s->closing)
            continue;
        b->metrics.dropped[DROP_SHUTDOWN]++;
        stream_close(s, true, retry + (int64_t)bridge_random(b, (uint64_t)(2 * retry) + 1));
    }
    event_base_loopexit(b->base, &grace);
    bridge_on_drain_poll(-1, 0, b);
}

static void bridge_on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct bridge *b = arg;

    if (sig == SIGHUP) {
        if (!b->draining)
            bridge_reload(b);
        return;
    }
    log_info("signal %d: shutting down", (int)sig);
    bridge_drain(b);
}

static int bridge_init_sources(struct bridge *b, char *err, size_t errlen)
{
    b->nsources = b->cfg->nsources;
    b->sources = calloc(b->nsources, sizeof(*b->sources));
    if (b->sources == NULL && b->nsources > 0)
        return -1;
    for (size_t i = 0; i < b->nsources; i++) {
        struct source *src = &b->sources[i];
        src->cfg = &b->cfg->sources[i];
        src->ops = adapter_for_type(src->cfg->type);
        src->index = (uint32_t)i;
        src->base = b->base;
        src->sink.deliver = bridge_sink_deliver;
        src->sink.state_changed = bridge_sink_state_changed;
        src->sink.last_entry_id = bridge_sink_last_entry_id;
        src->sink.too_large = bridge_sink_too_large;
        src->sink.keyed_deliver = keyed_deliver;
        src->sink.ctx = b;
        src->state = SOURCE_DOWN;
        snprintf(src->status, sizeof(src->status), "not connected yet");
        if (upstream_subscriptions(b->cfg, b->routes, i, &src->subs) < 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    return 0;
}

/* Fills the snapshot cache from what the history holds at start (a
 * restored journal), oldest first, so the latest per topic wins. */
static int bridge_load_lastvalues(struct bridge *b, char *err, size_t errlen)
{
    struct message *batch[256];
    uint64_t after = 0;
    size_t n;

    do {
        if (history_read(b->history, after, batch, 256, &n, NULL) !=
            HISTORY_READ_OK) {
            snprintf(err, errlen, "history: cannot read what was restored");
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            after = batch[i]->seq;
            if (batch[i]->source < b->cfg->nsources)
                lastvalue_put(b->lastvalue, batch[i]);
            message_unref(batch[i]);
        }
    } while (n > 0);
    return 0;
}

struct bridge *bridge_new(struct config *cfg, struct route_table *routes,
                          const char *config_path, char *err, size_t errlen)
{
    struct bridge *b = calloc(1, sizeof(*b));
    int64_t now = bridge_now_ms();

    if (b == NULL) {
        config_free(cfg);
        route_table_free(routes);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    b->cfg = cfg;
    b->routes = routes;
    b->rng = (uint64_t)now ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15u;
    snprintf(err, errlen, "out of memory");
    if (config_path != NULL && (b->config_path = strdup(config_path)) == NULL)
        goto fail;
    if ((b->base = event_base_new()) == NULL ||
        (b->lastvalue = lastvalue_new(cfg->history.max_events,
                                      cfg->history.max_bytes)) == NULL ||
        (b->index = topic_index_new()) == NULL ||
        (b->keyed = keyed_new(b)) == NULL ||
        (b->writer = writer_new(b->base)) == NULL ||
        metrics_init(&b->metrics, cfg->nsources) < 0 ||
        (b->reap_ev = event_new(b->base, -1, 0, bridge_on_reap, b)) == NULL ||
        (b->drain_ev = evtimer_new(b->base, bridge_on_drain_poll, b)) == NULL)
        goto fail;
    if (cfg->history.redis != NULL) {
        if (replica_open(b, err, errlen) < 0)
            goto fail;
    } else if ((b->history = history_local_open(cfg, b->base, now, err,
                                                errlen)) == NULL ||
               bridge_load_lastvalues(b, err, errlen) < 0) {
        goto fail;
    }
    if ((b->auth = auth_new(cfg, err, errlen)) == NULL)
        goto fail;
    if (bridge_init_sources(b, err, errlen) < 0)
        goto fail;
    if ((b->server = server_new(b, err, errlen)) == NULL)
        goto fail;
    return b;
fail:
    bridge_free(b);
    return NULL;
}

static int bridge_start_timers(struct bridge *b)
{
    static const int signals[3] = {SIGTERM, SIGINT, SIGHUP};
    struct timeval tick = {BRIDGE_TICK_MS / 1000,
                           (BRIDGE_TICK_MS % 1000) * 1000};

    b->tick_ev = event_new(b->base, -1, EV_PERSIST, bridge_on_tick, b);
    if (b->tick_ev == NULL || event_add(b->tick_ev, &tick) < 0)
        return -1;
    for (int i = 0; i < 3; i++) {
        b->signal_evs[i] = evsignal_new(b->base, signals[i], bridge_on_signal,
                                        b);
        if (b->signal_evs[i] == NULL || event_add(b->signal_evs[i], NULL) < 0)
            return -1;
    }
    return 0;
}

int bridge_start(struct bridge *b, char *err, size_t errlen)
{
    signal(SIGPIPE, SIG_IGN);
    if (server_listen(b->server, err, errlen) < 0)
        return -1;
    if (b->log != NULL)
        replica_start(b); /* sources start on the replica leading them */
    for (size_t i = 0; b->log == NULL && i < b->nsources; i++) {
        struct source *src = &b->sources[i];
        char why[256] = "";
        if (src->ops->start(src, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "source %s: %s", src->cfg->name, why);
            return -1;
        }
    }
    if (bridge_start_timers(b) < 0) {
        snprintf(err, errlen, "cannot set up timers and signals");
        return -1;
    }
    return 0;
}

int bridge_run(struct bridge *b)
{
    event_base_dispatch(b->base);
    if (b->draining && b->nstreams > 0)
        log_warn("shutdown_grace over: closing %zu streams", b->nstreams);
    return 0;
}

void bridge_free(struct bridge *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->nsources; i++) {
        struct source *src = &b->sources[i];
        if (src->ops != NULL)
            src->ops->stop(src);
        subscriptions_free(&src->subs);
    }
    free(b->sources);
    stream_free_all(b);
    feed_free_all(b);
    replica_close(b);
    server_free(b->server);
    keyed_free(b->keyed);
    for (int i = 0; i < 3; i++)
        if (b->signal_evs[i] != NULL)
            event_free(b->signal_evs[i]);
    if (b->tick_ev != NULL)
        event_free(b->tick_ev);
    if (b->reap_ev != NULL)
        event_free(b->reap_ev);
    if (b->drain_ev != NULL)
        event_free(b->drain_ev);
    writer_free(b->writer);
    topic_index_free(b->index);
    history_free(b->history);
    lastvalue_free(b->lastvalue);
    auth_free(b->auth);
    metrics_free(&b->metrics);
    route_table_free(b->routes);
    config_free(b->cfg);
    free(b->config_path);
    if (b->base != NULL)
        event_base_free(b->base);
    free(b);
}
