/*
 * keyed.c - per-key routes on the server side; see keyed.h.
 *
 * A request goes: keyed_open (max_keys, probe) -> keyed_on_probe (the
 * decision) -> feed_acquire + keyed_feed_attach (first stream of a key:
 * watch it, create its history at the reader's position) -> stream_open.
 * While the probe is out the request is parked; if its connection goes
 * away meanwhile (or the bridge is freed), the probe's answer finds no
 * request and only frees the pending entry.
 *
 * The seam between replay and live: a new key's history starts at the
 * reader's position for the key, and everything after that position
 * reaches the feed live (the reader starts after it), so a stream that
 * replays up to the head and turns live in the same turn misses nothing;
 * live entries at or before the head are refused by the history, and a
 * stream never takes an entry at or before its own last id.
 */
#include "bridge/keyed.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>

#include "adapters/adapter.h"
#include "bridge/bridge.h"
#include "bridge/feed.h"
#include "bridge/server.h"
#include "bridge/stream.h"
#include "lib/history.h"
#include "lib/history_key.h"
#include "lib/log.h"
#include "lib/message.h"
#include "lib/route.h"
#include "lib/topic.h"

/* A request waiting for its key's probe. */
struct keyed_pending {
    struct keyed *k;
    struct request req;         /* a view; valid unless gone */
    bool gone;                  /* client closed, or bridge freed */
    struct request_watch watch; /* tells us when the client goes */
    const struct route_table *routes; /* the table r belongs to */
    const struct route *route;
    struct topic_filter filter; /* owned */
    char *last_id;              /* owned; NULL: none */
    int64_t expires_ms;
    struct keyed_pending *prev, *next;
};

struct keyed {
    struct bridge *bridge;
    struct keyed_pending *pending;
    size_t active; /* per-key feeds with a watch */
};

/* A per-key feed's own state. */
struct keyed_feed {
    struct bridge *bridge;
    uint32_t source;
    char *key;              /* owned */
    char *data_field;       /* owned copies of the route's options */
    char *end_field;
    char *end_value;
};

struct keyed *keyed_new(struct bridge *b)
{
    struct keyed *k = calloc(1, sizeof(*k));

    if (k != NULL)
        k->bridge = b;
    return k;
}

static void keyed_pending_unlink(struct keyed_pending *p)
{
    if (p->k == NULL)
        return;
    if (p->prev != NULL)
        p->prev->next = p->next;
    else
        p->k->pending = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
    p->k = NULL;
}

static void keyed_pending_free(struct keyed_pending *p)
{
    keyed_pending_unlink(p);
    topic_filter_clear(&p->filter);
    free(p->last_id);
    free(p);
}

void keyed_free(struct keyed *k)
{
    if (k == NULL)
        return;
    /* A probe still out frees its entry when answered (never, once the
     * source is stopped: the adapter answers them all as it stops). */
    while (k->pending != NULL) {
        struct keyed_pending *p = k->pending;
        p->gone = true;
        keyed_pending_unlink(p);
    }
    free(k);
}

size_t keyed_active(const struct keyed *k)
{
    return k != NULL ? k->active : 0;
}

static struct source *keyed_source(struct bridge *b, uint32_t index)
{
    if (index >= b->nsources || b->sources[index].ops->keyed == NULL)
        return NULL;
    return &b->sources[index];
}

static struct keyed_opts keyed_opts_of(const struct route_config *rc)
{
    return (struct keyed_opts){.data_field = rc->data_field,
                               .end_field = rc->end_field,
                               .end_value = rc->end_value};
}

/* ---- the feed's key ----------------------------------------------------- */

/* history_key_io.range: through the source's per-key reader. */
static int keyed_range(void *ctx, const char *key, const char *after_id,
                       bool inclusive, const char *until_id, size_t count,
                       struct history_key_fetch *fetch)
{
    struct keyed_feed *kf = ctx;
    struct source *src = keyed_source(kf->bridge, kf->source);
    struct keyed_opts opts = {kf->data_field, kf->end_field, kf->end_value};

    if (src == NULL)
        return -1;
    return src->ops->keyed->range(src, key, after_id, until_id, count, &opts,
                                  fetch);
}

static void keyed_feed_free(struct keyed_feed *kf)
{
    if (kf == NULL)
        return;
    free(kf->key);
    free(kf->data_field);
    free(kf->end_field);
    free(kf->end_value);
    free(kf);
}

static char *keyed_strdup(const char *s, bool *failed)
{
    char *c = s != NULL ? strdup(s) : NULL;

    if (s != NULL && c == NULL)
        *failed = true;
    return c;
}

/*
 * The first stream of a key: watches it (a key not read yet starts after
 * probed_last) and creates its history at the reader's position. 0, or
 * -1 (the feed is left without a history).
 */
static int keyed_feed_attach(struct bridge *b, struct feed *f,
                             const struct route *r, const char *probed_last)
{
    const struct topic_pattern *p = &f->filter.patterns[0];
    const struct route_config *rc = route_config_of(r);
    struct source *src = keyed_source(b, p->source);
    struct keyed_opts opts = keyed_opts_of(rc);
    struct keyed_feed *kf = calloc(1, sizeof(*kf));
    struct history_key_io io = {keyed_range, kf};
    char pos[KEYED_ID_MAX];
    bool failed = false;

    if (kf == NULL || src == NULL)
        goto fail;
    kf->bridge = b;
    kf->source = p->source;
    kf->key = keyed_strdup(p->pattern, &failed);
    kf->data_field = keyed_strdup(rc->data_field, &failed);
    kf->end_field = keyed_strdup(rc->end_field, &failed);
    kf->end_value = keyed_strdup(rc->end_value, &failed);
    if (failed || src->ops->keyed->watch(src, kf->key, probed_last,
                                         &opts, f, pos) < 0)
        goto fail;
    f->history = history_key_new(kf->key, pos, &io, NULL);
    if (f->history == NULL) {
        src->ops->keyed->unwatch(src, kf->key, f);
        goto fail;
    }
    f->keyed = kf;
    b->keyed->active++;
    return 0;
fail:
    keyed_feed_free(kf);
    return -1;
}

void keyed_feed_release(struct feed *f)
{
    struct keyed_feed *kf = f->keyed;
    struct source *src;

    if (kf == NULL)
        return;
    src = keyed_source(kf->bridge, kf->source);
    if (src != NULL)
        src->ops->keyed->unwatch(src, kf->key, f);
    history_free(f->history);
    f->history = NULL;
    f->keyed = NULL;
    kf->bridge->keyed->active--;
    keyed_feed_free(kf);
}

void keyed_deliver(void *ctx, struct source *src, void *token,
                   struct message *msg)
{
    struct bridge *b = ctx;
    struct feed *f = token;

    if (b->draining || f->history == NULL) {
        message_unref(msg);
        return;
    }
    /* The history refuses what it already has (at or before its head). */
    if (history_append(f->history, msg) < 0)
        return;
    b->metrics.sources[src->index].received++;
    feed_deliver(f, msg);
}

/* ---- the decision -------------------------------------------------------- */

/* How the stream starts, from the probe and the client's id; false when
 * the answer is 204 (an ended key). */
static bool keyed_decide(const struct keyed_pending *p,
                         const struct keyed_probe *probe,
                         struct stream_start *start)
{
    const struct route_config *rc = route_config_of(p->route);
    uint64_t x, first = 0, last = 0;
    bool have_first = probe->first_id[0] != '\0';

    memset(start, 0, sizeof(*start));
    start->expires_ms = p->expires_ms;
    if (have_first)
        history_key_parse_id(probe->first_id, strlen(probe->first_id),
                             &first);
    if (probe->last_id[0] != '\0')
        history_key_parse_id(probe->last_id, strlen(probe->last_id), &last);
    if (p->last_id != NULL &&
        !history_key_parse_id(p->last_id, strlen(p->last_id), &x)) {
        start->kind = STREAM_START_RESET;
        start->reset_reason = "unknown-id";
        start->last_id = p->last_id;
    } else if (p->last_id != NULL) {
        if (probe->last_is_end && x >= last)
            return false;
        if (have_first && x >= first) {
            start->kind = STREAM_START_RESUME;
            start->last_seq = x;
            return true;
        }
        start->kind = STREAM_START_RESET;
        start->reset_reason = "expired";
        start->last_id = p->last_id;
    }
    /* Fresh, or after a reset. */
    if (rc->from == ROUTE_FROM_LIVE)
        return true;
    start->replay_all = true;
    return !probe->last_is_end;
}

/* The probe's answer: open the stream, or 204, or "come back later". */
static void keyed_on_probe(void *arg, const struct keyed_probe *probe)
{
    struct keyed_pending *p = arg;
    struct keyed *k = p->k;
    struct bridge *b = k != NULL ? k->bridge : NULL;
    const struct request *req = &p->req;
    struct stream_start start;
    struct feed *f;

    if (p->gone || b == NULL) {
        keyed_pending_free(p);
        return;
    }
    req->ops->watch(req, NULL);
    if (!probe->ok || b->routes != p->routes || b->draining) {
        server_reply_come_back(b, req, b->cfg->stream.retry_ms, false);
    } else if (!keyed_decide(p, probe, &start)) {
        req->ops->reply(req, 204, "No Content", NULL);
    } else {
        /* A key not read yet starts after its newest entry now. */
        f = feed_acquire(b, p->route, &p->filter);
        if (f != NULL && f->history == NULL &&
            keyed_feed_attach(b, f, p->route, probe->last_id) < 0) {
            feed_drop_if_unused(f);
            f = NULL;
        }
        if (f == NULL)
            server_reply_come_back(b, req, b->cfg->stream.retry_ms, false);
        else
            stream_open(b, req, f, &start);
    }
    keyed_pending_free(p);
}

/* The client went away while its key was being probed. */
static void keyed_on_gone(struct request_watch *w)
{
    struct keyed_pending *p =
        (struct keyed_pending *)((char *)w -
                                 offsetof(struct keyed_pending, watch));

    p->gone = true;
}

void keyed_open(struct bridge *b, const struct request *req,
                const struct route *r, struct topic_filter *filter,
                const char *last_id, int64_t expires_ms)
{
    struct keyed *k = b->keyed;
    const struct route_config *rc = route_config_of(r);
    struct keyed_opts opts = keyed_opts_of(rc);
    struct keyed_pending *p = calloc(1, sizeof(*p));
    struct source *src =
        filter->count == 1 ? keyed_source(b, filter->patterns[0].source)
                           : NULL;

    if (p == NULL || src == NULL ||
        (last_id != NULL && (p->last_id = strdup(last_id)) == NULL)) {
        topic_filter_clear(filter);
        if (p != NULL)
            free(p->last_id);
        free(p);
        server_reply_come_back(b, req, b->cfg->stream.retry_ms, false);
        return;
    }
    p->filter = *filter;
    memset(filter, 0, sizeof(*filter));
    if (k->active >= b->cfg->stream.max_keys &&
        !feed_exists(b, r, &p->filter)) {
        keyed_pending_free(p);
        server_reply_come_back(b, req, b->cfg->stream.retry_overload_ms,
                               true);
        return;
    }
    p->req = *req;
    p->watch.gone = keyed_on_gone;
    p->routes = b->routes;
    p->route = r;
    p->expires_ms = expires_ms;
    p->k = k;
    p->next = k->pending;
    if (k->pending != NULL)
        k->pending->prev = p;
    k->pending = p;
    if (src->ops->keyed->probe(src, p->filter.patterns[0].pattern, &opts,
                               keyed_on_probe, p) < 0) {
        keyed_pending_free(p);
        server_reply_come_back(b, req, b->cfg->stream.retry_ms, false);
        return;
    }
    req->ops->watch(req, &p->watch);
}
