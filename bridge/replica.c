/*
 * replica.c - the shared history's side of the bridge; see replica.h.
 *
 * Here are the redis_log sink (what the tail reads becomes events, lease
 * changes start and stop adapters) and the few places where the bridge
 * asks "local or shared?": the sink's deliver, /readyz and /metrics.
 */
#include "bridge/replica.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "adapters/adapter.h"
#include "adapters/redis_log.h"
#include "bridge/bridge.h"
#include "bridge/feed.h"
#include "bridge/stream.h"
#include "bridge/upstream.h"
#include "lib/history.h"
#include "lib/history_key.h"
#include "lib/lastvalue.h"
#include "lib/log.h"
#include "lib/message.h"

/* ---- the redis_log sink --------------------------------------------------- */

static void replica_on_tagged(void *ctx, const char *tag, bool changed)
{
    struct bridge *b = ctx;

    if (history_key_retag(b->history, tag) < 0)
        log_error("history: the log's tag '%.16s' is not usable", tag);
}

/* One event of the log: the same path as a local append, after it. */
static void replica_on_entry(void *ctx, struct message *msg)
{
    struct bridge *b = ctx;
    uint32_t source = msg->source;

    if (history_append(b->history, msg) < 0)
        return; /* a repeat, or no room */
    lastvalue_put(b->lastvalue, msg);
    if (source < b->nsources)
        b->metrics.sources[source].received++;
    feed_dispatch(b, msg);
}

/* Cuts the streams on the shared history (with `all` false, only those
 * that were sent anything after pos): they resume by id and get a
 * reset. */
static void replica_cut_streams(struct bridge *b, bool all, uint64_t pos)
{
    for (struct stream *s = b->streams; s != NULL; s = s->next) {
        if (s->feed == NULL || s->feed->history != NULL)
            continue; /* a per-key stream: its own history */
        if (!all && s->sent_seq <= pos)
            continue;
        s->reap_reason = DROP_REPLAY;
        bridge_schedule_reap(b, s);
    }
}

/* The log lost its tail after last_pos (a failover): the streams that
 * were sent lost entries must not go on as if they had not been. */
static void replica_on_rolled_back(void *ctx, uint64_t last_pos)
{
    struct bridge *b = ctx;

    history_key_forget_after(b->history, last_pos);
    replica_cut_streams(b, false, last_pos);
}

/* Entries were trimmed before this replica read them: ids in between are
 * unknown, and every stream on the shared history is cut (it resumes by
 * id and gets a reset, as its entry is gone too). */
static void replica_on_gap(void *ctx, uint64_t last_pos, uint64_t pos)
{
    struct bridge *b = ctx;

    history_key_mark_lost(b->history, last_pos, pos);
    replica_cut_streams(b, true, 0);
}

static void replica_on_live(void *ctx, bool live)
{
    struct bridge *b = ctx;

    history_key_set_live(b->history, live);
    if (live)
        b->log_loaded = true; /* the first time: the tail is loaded */
}

/* Gives source i the subscriptions it has now (replica_subscriptions);
 * the adapter applies them if it runs. */
static void replica_resubscribe(struct bridge *b, uint32_t i)
{
    struct source *src = &b->sources[i];
    struct subscriptions subs = {0};

    if (replica_subscriptions(b, i, &subs) < 0) {
        log_error("source %s: out of memory", src->cfg->name);
        return;
    }
    src->ops->resubscribe(src, &subs);
}

/* Starts source i's adapter. */
static void replica_start_source(struct bridge *b, uint32_t i)
{
    struct source *src = &b->sources[i];
    char why[256] = "";

    if (src->ops->start(src, why, sizeof(why)) < 0)
        log_error("source %s: cannot start: %s", src->cfg->name, why);
}

/*
 * Source i's lease came or went. Its adapter runs on the leader; on the
 * other replicas it runs only for per-key routes (which read keys of
 * their own and ingest nothing), with no subscriptions of its own.
 *
 * A leader that steps down disconnects; it never unsubscribes: an MQTT
 * session (clean_session: false) must keep its subscriptions, so that
 * the broker queues for the next leader what is published meanwhile.
 * Only a redis-stream source kept for per-key routes drops its streams
 * (XREAD holds nothing on the server).
 */
static void replica_on_leader(void *ctx, uint32_t i, bool leader)
{
    struct bridge *b = ctx;
    struct source *src = &b->sources[i];
    bool running = src->impl != NULL;

    if (leader && b->draining)
        return;
    if (!leader && !src->subs.keyed) {
        src->ops->stop(src);
        source_set_state(src, SOURCE_DOWN, "another replica ingests");
    }
    /* Stopped: only recorded for the next start. */
    replica_resubscribe(b, i);
    if (leader && !running)
        replica_start_source(b, i);
}

/* ---- the bridge's side ------------------------------------------------------ */

int replica_open(struct bridge *b, char *err, size_t errlen)
{
    const struct history_config *hc = &b->cfg->history;
    struct redis_log_sink sink = {
        .tagged = replica_on_tagged,
        .entry = replica_on_entry,
        .rolled_back = replica_on_rolled_back,
        .gap = replica_on_gap,
        .live = replica_on_live,
        .leader = replica_on_leader,
        .ctx = b,
    };
    /* The tag is a placeholder until the log is loaded (streams wait
     * for that: replica_ready). */
    struct history_key_opts opts = {.tag = "0",
                                    .max_events = hc->max_events,
                                    .max_bytes = hc->max_bytes,
                                    .max_age_ms = hc->max_age_ms};
    char why[256] = "", key[200];
    struct history_key_io io;

    if ((b->log = redis_log_new(b->base, b->cfg, &sink, why,
                                sizeof(why))) == NULL) {
        snprintf(err, errlen, "history.redis: %s", why);
        return -1;
    }
    io.range = redis_log_range;
    io.ctx = b->log;
    snprintf(key, sizeof(key), "%s:log",
             hc->key != NULL ? hc->key : "sluice");
    if ((b->history = history_key_new(key, NULL, &io, &opts)) == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int replica_subscriptions(const struct bridge *b, uint32_t i,
                          struct subscriptions *out)
{
    if (upstream_subscriptions(b->cfg, b->routes, i, out) < 0)
        return -1;
    if (b->log == NULL || redis_log_leads(b->log, i))
        return 0;
    config_strv_clear(&out->exact);
    config_strv_clear(&out->patterns);
    return 0;
}

/* Sources start as followers: only those with per-key routes run. */
void replica_start(struct bridge *b)
{
    for (uint32_t i = 0; i < b->nsources; i++) {
        replica_resubscribe(b, i);
        if (b->sources[i].subs.keyed)
            replica_start_source(b, i);
        else
            source_set_state(&b->sources[i], SOURCE_DOWN,
                             "another replica ingests");
    }
    redis_log_start(b->log);
}

void replica_release(struct bridge *b)
{
    if (b->log != NULL)
        redis_log_release(b->log);
}

bool replica_released(const struct bridge *b)
{
    return b->log == NULL || redis_log_released(b->log);
}

void replica_close(struct bridge *b)
{
    redis_log_free(b->log);
    b->log = NULL;
}

int replica_deliver(struct bridge *b, struct source *src,
                    struct message *msg)
{
    return redis_log_append(b->log, msg);
}

int replica_last_entry_id(struct bridge *b, struct source *src,
                          const char *key, char *out, size_t outlen)
{
    return redis_log_position(b->log, src->index, key, out, outlen);
}

bool replica_ready(const struct bridge *b)
{
    return b->log == NULL || b->log_loaded;
}

bool replica_source_up(const struct bridge *b, uint32_t i)
{
    if (b->log != NULL && !redis_log_leads(b->log, i))
        return redis_log_led_elsewhere(b->log, i);
    return b->sources[i].state == SOURCE_UP;
}

/* One source: up here, or led by another replica. */
static bool replica_source_ready(const struct bridge *b, uint32_t i,
                                 struct evbuffer *body)
{
    const struct source *src = &b->sources[i];
    bool leads = b->log == NULL || redis_log_leads(b->log, i);

    if (replica_source_up(b, i))
        return true;
    if (!leads)
        evbuffer_add_printf(body, "source %s: no replica ingests it yet\n",
                            src->cfg->name);
    else if (!b->cfg->readyz_details)
        evbuffer_add_printf(body, "source %s: down\n", src->cfg->name);
    else
        evbuffer_add_printf(body, "source %s: %s\n", src->cfg->name,
                            src->state == SOURCE_CONNECTING ? "subscribing"
                                                            : src->status);
    return false;
}

bool replica_readyz(const struct bridge *b, struct evbuffer *body)
{
    bool ready = true;

    if (b->log != NULL && !redis_log_up(b->log)) {
        ready = false;
        if (b->cfg->readyz_details)
            evbuffer_add_printf(body, "history: %s\n",
                                redis_log_status(b->log));
        else
            evbuffer_add_printf(body, "history: down\n");
    }
    for (uint32_t i = 0; i < b->nsources; i++)
        if (!replica_source_ready(b, i, body))
            ready = false;
    return ready;
}

void replica_metrics(const struct bridge *b, struct evbuffer *out)
{
    if (b->log == NULL)
        return;
    evbuffer_add_printf(out, "# HELP sluice_ingest_leader 1 on the replica "
                             "that ingests the source (holds its lease).\n"
                             "# TYPE sluice_ingest_leader gauge\n");
    for (size_t i = 0; i < b->nsources; i++)
        evbuffer_add_printf(out, "sluice_ingest_leader{source=\"%s\"} %d\n",
                            b->cfg->sources[i].name,
                            redis_log_leads(b->log, (uint32_t)i));
    evbuffer_add_printf(out, "# HELP sluice_history_log_up 1 while the "
                             "shared log in Redis is read and written.\n"
                             "# TYPE sluice_history_log_up gauge\n"
                             "sluice_history_log_up %d\n",
                        redis_log_up(b->log));
    evbuffer_add_printf(out, "# HELP sluice_history_gaps_total Times "
                             "entries of the shared log were trimmed before "
                             "this replica read them.\n"
                             "# TYPE sluice_history_gaps_total counter\n"
                             "sluice_history_gaps_total %llu\n",
                        (unsigned long long)redis_log_gaps(b->log));
    evbuffer_add_printf(out, "# HELP sluice_history_appended_total Events "
                             "this replica appended to the shared log.\n"
                             "# TYPE sluice_history_appended_total counter\n"
                             "sluice_history_appended_total %llu\n",
                        (unsigned long long)redis_log_appended(b->log));
    evbuffer_add_printf(out, "# HELP sluice_history_append_dropped_total "
                             "Messages this replica could not append (queue "
                             "over max_bytes, or the lease lost).\n"
                             "# TYPE sluice_history_append_dropped_total "
                             "counter\n"
                             "sluice_history_append_dropped_total %llu\n",
                        (unsigned long long)redis_log_dropped(b->log));
}
