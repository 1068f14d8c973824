/*
 * redis_keys.c - per-key reading of Redis Streams; see redis_keys.h.
 *
 * The reader connection loops on
 *
 *   XREAD COUNT 256 BLOCK b STREAMS k1 .. kn id1 .. idn
 *
 * over the keys watched right now, each from the last id it delivered,
 * and hands every entry to the sink once per watch (a watch is one
 * per-key feed: usually one per key). A key joins at the position the
 * bridge probed (its newest entry then), so nothing between the probe
 * and the first XREAD is lost. When a key joins while the XREAD is
 * blocked, the command connection sends CLIENT UNBLOCK for the reader's
 * client id: the XREAD returns at once (as if timed out) and the next one
 * includes the key, so the first live entry of a new key is not delayed
 * by up to BLOCK. A key that leaves simply is not asked for next time
 * (entries already under way for it are dropped).
 *
 * Liveness: as in redis_stream.c, while the XREAD is out the XREAD is the
 * probe (BLOCK + margin deadline); the command connection has the plain
 * PING keepalive. Neither connection changes the source's state: each
 * reports to a shadow copy of the source, so /readyz keeps describing the
 * source's own reader, and transitions are logged.
 *
 * Every request carries its own copy of the route's options (a reload
 * may free the config while a reply is due), and every reply callback
 * runs to its end even for a dropped connection (reply NULL), so that
 * probes and range reads are always answered exactly once.
 */
#include "adapters/redis_keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "adapters/redis_conn.h"
#include "adapters/redis_entry.h"
#include "lib/hashtab.h"
#include "lib/history_key.h"
#include "lib/log.h"
#include "lib/message.h"

#define RK_COUNT "256"
#define RK_BLOCK_MS 5000
#define RK_MARGIN_MS 5000
#define RK_XREAD_ARGS 6 /* XREAD COUNT n BLOCK ms STREAMS */
/* After an XREAD that returned entries, the next one waits 1 ms per
 * RK_PACE_KEYS watched keys (at most RK_PACE_MAX_MS), so that entries
 * arrive in batches: each XREAD names every watched key, and Redis and
 * sluice pay for the whole list per call, not per entry. With 1000 keys
 * at 50 entries/s each, a 10 ms pace took the Redis CPU of reading from
 * about 5 us to about 0 per entry, and sluice's from 17 to 9 us
 * (tests/bench/perkey.sh); a few keys wait 1 ms. */
#define RK_PACE_KEYS 100
#define RK_PACE_MAX_MS 10

/* A copy of struct keyed_opts in one allocation. */
struct rk_opts {
    char *data_field, *end_field, *end_value; /* point into this block */
};

struct rk_watch {
    void *token;
    struct rk_opts *opts; /* owned */
    struct rk_watch *next;
};

struct rk_key {
    struct hashtab_entry entry; /* key: name */
    char *name;                 /* owned */
    char id[KEYED_ID_MAX];      /* last id delivered (or started after) */
    struct rk_watch *watches;
    struct rk_key *prev, *next;
};

struct redis_keys {
    struct source *src;
    struct source reader_src, cmd_src; /* shadows: state only */
    struct redis_conn *reader;         /* owned */
    struct redis_conn *cmd;            /* owned */
    struct hashtab table;              /* name -> rk_key */
    struct rk_key *keys;
    size_t nkeys;
    const char **argv; /* the XREAD command; sized for cap keys */
    size_t *lens;
    size_t cap;
    long long reader_id; /* CLIENT ID of the reader; -1: unknown */
    bool reading;
    bool joined;      /* a key joined during the XREAD out */
    bool unblocking;  /* CLIENT UNBLOCK sent for this XREAD */
    bool pacing;      /* holding the next XREAD back (rk_pace) */
    struct event *deadline;
    struct event *pace;
    int64_t block_ms, margin_ms;
    char block[24];
    struct evbuffer *payload; /* reused for each entry */
};

/* A probe: two replies (first, newest entry). */
struct rk_probe {
    struct rk_opts *opts; /* owned */
    void (*done)(void *arg, const struct keyed_probe *p);
    void *arg;
    struct keyed_probe result;
    int due;
};

/* A range read for a per-key history. */
struct rk_range {
    struct redis_keys *rk; /* for building messages; NULL once dropped */
    struct rk_opts *opts;  /* owned */
    char *key;             /* owned */
    struct history_key_fetch *fetch;
};

static struct rk_opts *rk_opts_copy(const struct keyed_opts *o)
{
    const char *parts[3] = {o->data_field, o->end_field, o->end_value};
    size_t len[3], total = sizeof(struct rk_opts);
    struct rk_opts *c;
    char *p;

    for (int i = 0; i < 3; i++) {
        len[i] = parts[i] ? strlen(parts[i]) + 1 : 0;
        total += len[i];
    }
    c = calloc(1, total);
    if (c == NULL)
        return NULL;
    p = (char *)(c + 1);
    for (int i = 0; i < 3; i++) {
        char **slot = i == 0 ? &c->data_field
                      : i == 1 ? &c->end_field : &c->end_value;
        if (parts[i] == NULL)
            continue;
        memcpy(p, parts[i], len[i]);
        *slot = p;
        p += len[i];
    }
    return c;
}

static int64_t rk_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool rk_id_ok(const redisReply *id)
{
    uint64_t pos;

    return id->type == REDIS_REPLY_STRING && id->len < KEYED_ID_MAX &&
           history_key_parse_id(id->str, id->len, &pos);
}

/* ---- entries ---------------------------------------------------------- */

static const redisReply *rk_field(const redisReply *fields, const char *name)
{
    size_t len = strlen(name);

    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *f = fields->element[i];
        if (f->type == REDIS_REPLY_STRING && f->len == len &&
            memcmp(f->str, name, len) == 0 &&
            fields->element[i + 1]->type == REDIS_REPLY_STRING)
            return fields->element[i + 1];
    }
    return NULL;
}

static bool rk_is_end(const struct rk_opts *o, const redisReply *fields)
{
    const redisReply *v;

    if (o->end_field == NULL || fields == NULL)
        return false;
    v = rk_field(fields, o->end_field);
    return v != NULL && v->len == strlen(o->end_value) &&
           memcmp(v->str, o->end_value, v->len) == 0;
}

/*
 * One entry [id, [field, value, ...]] as a message for a route with
 * options o: the data_field's value, or all fields as JSON. NULL when it
 * is no entry, or on ENOMEM.
 */
static struct message *rk_message(struct redis_keys *rk, const char *key,
                                  const struct rk_opts *o,
                                  const redisReply *entry)
{
    struct source *src = rk->src;
    const redisReply *fields, *v;
    struct message *msg;
    const void *data = "";
    size_t len = 0;

    if (entry->type != REDIS_REPLY_ARRAY || entry->elements < 2 ||
        !rk_id_ok(entry->element[0]))
        return NULL;
    fields = entry->element[1]->type == REDIS_REPLY_ARRAY ? entry->element[1]
                                                          : NULL;
    if (o->data_field != NULL) {
        v = fields ? rk_field(fields, o->data_field) : NULL;
        if (v != NULL) {
            data = v->str;
            len = v->len;
        }
    } else {
        static const redisReply none = {.type = REDIS_REPLY_ARRAY};
        if (redis_entry_json(rk->payload, fields ? fields : &none) < 0)
            return NULL;
        len = evbuffer_get_length(rk->payload);
        data = evbuffer_pullup(rk->payload, -1);
    }
    if (src->sink.too_large(src->sink.ctx, src, key, len))
        return NULL;
    msg = message_new(src->index, src->cfg->type, key, strlen(key), data, len,
                      rk_now_ms());
    if (msg == NULL)
        return NULL;
    if (message_set_stream_entry_id(msg, entry->element[0]->str) < 0) {
        message_unref(msg);
        return NULL;
    }
    msg->stream_end = rk_is_end(o, fields);
    return msg;
}

/* ---- the key set ------------------------------------------------------ */

static struct rk_key *rk_key_find(const struct redis_keys *rk,
                                  const char *name, size_t len)
{
    struct hashtab_entry *e = hashtab_find(&rk->table, 0, name, len);

    return e == NULL ? NULL : (struct rk_key *)e;
}

static int rk_reserve(struct redis_keys *rk, size_t nkeys)
{
    size_t cap = rk->cap ? rk->cap : 16;
    const char **argv;
    size_t *lens;

    if (nkeys <= rk->cap)
        return 0;
    while (cap < nkeys)
        cap *= 2;
    argv = realloc(rk->argv, (RK_XREAD_ARGS + 2 * cap) * sizeof(*argv));
    if (argv == NULL)
        return -1;
    rk->argv = argv;
    lens = realloc(rk->lens, (RK_XREAD_ARGS + 2 * cap) * sizeof(*lens));
    if (lens == NULL)
        return -1;
    rk->lens = lens;
    rk->cap = cap;
    return 0;
}

static struct rk_key *rk_key_add(struct redis_keys *rk, const char *name,
                                 const char *after_id)
{
    struct rk_key *k = calloc(1, sizeof(*k));

    if (k == NULL || rk_reserve(rk, rk->nkeys + 1) < 0 ||
        (k->name = strdup(name)) == NULL)
        goto fail;
    snprintf(k->id, sizeof(k->id), "%s",
             after_id != NULL && after_id[0] != '\0' ? after_id : "0-0");
    k->entry.key = k->name;
    k->entry.keylen = strlen(name);
    if (hashtab_insert(&rk->table, &k->entry) < 0)
        goto fail;
    k->next = rk->keys;
    if (rk->keys != NULL)
        rk->keys->prev = k;
    rk->keys = k;
    rk->nkeys++;
    return k;
fail:
    if (k != NULL)
        free(k->name);
    free(k);
    return NULL;
}

static void rk_key_remove(struct redis_keys *rk, struct rk_key *k)
{
    hashtab_remove(&rk->table, &k->entry);
    if (k->prev != NULL)
        k->prev->next = k->next;
    else
        rk->keys = k->next;
    if (k->next != NULL)
        k->next->prev = k->prev;
    rk->nkeys--;
    while (k->watches != NULL) {
        struct rk_watch *w = k->watches;
        k->watches = w->next;
        free(w->opts);
        free(w);
    }
    free(k->name);
    free(k);
}

/* ---- reading ---------------------------------------------------------- */

static void rk_on_xread(redisAsyncContext *ac, void *reply, void *priv);

static void rk_deadline(struct redis_keys *rk, int64_t ms)
{
    struct timeval tv = {.tv_sec = ms / 1000,
                         .tv_usec = (suseconds_t)(ms % 1000) * 1000};

    evtimer_add(rk->deadline, &tv);
}

/* The next XREAD, when the reader is ready, idle and has keys. */
static void rk_next(struct redis_keys *rk)
{
    size_t i = 0, argc = RK_XREAD_ARGS + 2 * rk->nkeys;
    const char *fixed[RK_XREAD_ARGS] = {"XREAD", "COUNT", RK_COUNT,
                                        "BLOCK", rk->block, "STREAMS"};

    if (rk->reading || rk->pacing || rk->nkeys == 0 ||
        !redis_conn_is_up(rk->reader))
        return;
    for (; i < RK_XREAD_ARGS; i++) {
        rk->argv[i] = fixed[i];
        rk->lens[i] = strlen(fixed[i]);
    }
    for (struct rk_key *k = rk->keys; k != NULL; k = k->next, i++) {
        rk->argv[i] = k->name;
        rk->lens[i] = k->entry.keylen;
        rk->argv[i + rk->nkeys] = k->id;
        rk->lens[i + rk->nkeys] = strlen(k->id);
    }
    if (redisAsyncCommandArgv(redis_conn_context(rk->reader), rk_on_xread,
                              NULL, (int)argc, rk->argv,
                              rk->lens) != REDIS_OK) {
        redis_conn_fail(rk->reader, "cannot queue XREAD");
        return;
    }
    rk->reading = true;
    rk->joined = rk->unblocking = false;
    rk_deadline(rk, rk->block_ms + rk->margin_ms);
}

/* Hot path: one entry of key k, to every watch of it. */
static void rk_deliver(struct redis_keys *rk, struct rk_key *k,
                       const redisReply *entry)
{
    struct source *src = rk->src;

    if (entry->type != REDIS_REPLY_ARRAY || entry->elements < 1 ||
        !rk_id_ok(entry->element[0]))
        return;
    memcpy(k->id, entry->element[0]->str, entry->element[0]->len);
    k->id[entry->element[0]->len] = '\0';
    src->keyed_entries++;
    for (struct rk_watch *w = k->watches; w != NULL; w = w->next) {
        struct message *msg = rk_message(rk, k->name, w->opts, entry);
        if (msg != NULL)
            src->sink.keyed_deliver(src->sink.ctx, src, w->token, msg);
    }
}

/* Holds the next XREAD back for a while (see RK_PACE_KEYS). */
static void rk_pace(struct redis_keys *rk)
{
    size_t ms = 1 + rk->nkeys / RK_PACE_KEYS;
    struct timeval tv = {0, 0};

    if (ms > RK_PACE_MAX_MS)
        ms = RK_PACE_MAX_MS;
    tv.tv_usec = (suseconds_t)(ms * 1000);
    rk->pacing = evtimer_add(rk->pace, &tv) == 0;
}

static void rk_on_xread(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis_keys *rk = redis_conn_owner(ac);
    const redisReply *rep = reply;

    if (rk == NULL || rep == NULL)
        return;
    rk->reading = false;
    evtimer_del(rk->deadline);
    if (rep->type == REDIS_REPLY_ERROR) {
        char text[REDIS_CONN_TEXT_MAX];
        snprintf(text, sizeof(text), "XREAD failed: %s",
                 redis_conn_error_text(rk->reader, rep->str));
        redis_conn_fail(rk->reader, text);
        return;
    }
    rk->src->keyed_xreads++;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements > 0)
        rk_pace(rk);
    for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i < rep->elements;
         i++) {
        const redisReply *item = rep->element[i];
        struct rk_key *k;

        if (item->type != REDIS_REPLY_ARRAY || item->elements < 2 ||
            item->element[0]->type != REDIS_REPLY_STRING ||
            item->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        k = rk_key_find(rk, item->element[0]->str, item->element[0]->len);
        for (size_t j = 0; k != NULL && j < item->element[1]->elements; j++)
            rk_deliver(rk, k, item->element[1]->element[j]);
    }
    rk_next(rk);
}

static void rk_on_pace(evutil_socket_t fd, short what, void *arg)
{
    struct redis_keys *rk = arg;

    rk->pacing = false;
    rk_next(rk);
}

static void rk_on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct redis_keys *rk = arg;

    redis_conn_fail(rk->reader, "no reply to XREAD in time");
}

static void rk_on_unblock(redisAsyncContext *ac, void *reply, void *priv)
{
    /* Nothing to do: the XREAD's own reply carries on. */
}

/* A key joined: a blocked XREAD returns at once to take it in. */
static void rk_interrupt(struct redis_keys *rk)
{
    rk->joined = true;
    if (!rk->reading) {
        rk_next(rk);
        return;
    }
    if (rk->unblocking || rk->reader_id < 0 || !redis_conn_is_up(rk->cmd))
        return; /* the XREAD comes back within BLOCK anyway */
    if (redisAsyncCommand(redis_conn_context(rk->cmd), rk_on_unblock, NULL,
                          "CLIENT UNBLOCK %lld", rk->reader_id) == REDIS_OK)
        rk->unblocking = true;
}

/* ---- the connections ---------------------------------------------------- */

static void rk_on_client_id(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis_keys *rk = redis_conn_owner(ac);
    const redisReply *rep = reply;

    if (rk == NULL || rep == NULL)
        return;
    if (rep->type != REDIS_REPLY_INTEGER) {
        redis_conn_fail(rk->reader, "CLIENT ID failed");
        return;
    }
    rk->reader_id = rep->integer;
    if (!redis_conn_is_up(rk->reader))
        redis_conn_mark_up(rk->reader);
    rk_next(rk);
}

static void rk_reader_ready(void *owner)
{
    struct redis_keys *rk = owner;

    if (redisAsyncCommand(redis_conn_context(rk->reader), rk_on_client_id,
                          NULL, "CLIENT ID") != REDIS_OK)
        redis_conn_fail(rk->reader, "cannot queue CLIENT ID");
}

static void rk_reader_lost(void *owner)
{
    struct redis_keys *rk = owner;

    rk->reading = false;
    rk->pacing = false;
    rk->reader_id = -1;
    evtimer_del(rk->deadline);
    evtimer_del(rk->pace);
}

static int rk_reader_keepalive(void *owner)
{
    struct redis_keys *rk = owner;

    return rk->reading ? 0 : redis_conn_ping(rk->reader);
}

static void rk_on_cmd_hello(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis_keys *rk = redis_conn_owner(ac);

    if (rk == NULL || reply == NULL || redis_conn_is_up(rk->cmd))
        return;
    redis_conn_mark_up(rk->cmd);
}

static void rk_cmd_ready(void *owner)
{
    struct redis_keys *rk = owner;

    if (redisAsyncCommand(redis_conn_context(rk->cmd), rk_on_cmd_hello, NULL,
                          "PING") != REDIS_OK)
        redis_conn_fail(rk->cmd, "cannot queue PING");
}

static void rk_cmd_lost(void *owner)
{
    struct redis_keys *rk = owner;

    rk->unblocking = false;
}

static const struct redis_conn_ops rk_reader_ops = {
    .ready = rk_reader_ready,
    .lost = rk_reader_lost,
    .keepalive = rk_reader_keepalive,
};

static const struct redis_conn_ops rk_cmd_ops = {
    .ready = rk_cmd_ready,
    .lost = rk_cmd_lost,
};

/* A shadow source's state changed: log it (the real source's state is
 * the configured reader's). */
static void rk_on_state(void *ctx, struct source *shadow)
{
    enum source_state was = shadow->reported;

    shadow->reported = shadow->state;
    if (shadow->state == SOURCE_UP && was != SOURCE_UP)
        log_info("source %s: per-key connection up", shadow->cfg->name);
    else if (shadow->state == SOURCE_DOWN && was == SOURCE_UP)
        log_warn("source %s: per-key connection down: %s", shadow->cfg->name,
                 shadow->status);
}

static void rk_shadow(struct redis_keys *rk, struct source *shadow)
{
    *shadow = *rk->src;
    shadow->impl = NULL;
    memset(&shadow->subs, 0, sizeof(shadow->subs));
    shadow->sink.state_changed = rk_on_state;
    shadow->sink.ctx = rk;
    shadow->reported = SOURCE_DOWN;
}

struct redis_keys *redis_keys_new(struct source *src, char *why,
                                  size_t whylen)
{
    struct redis_keys *rk = calloc(1, sizeof(*rk));
    int64_t keepalive;

    if (rk == NULL) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    rk->src = src;
    rk->reader_id = -1;
    rk_shadow(rk, &rk->reader_src);
    rk_shadow(rk, &rk->cmd_src);
    rk->reader = redis_conn_new(&rk->reader_src, &rk_reader_ops, rk, why,
                                whylen);
    rk->cmd = redis_conn_new(&rk->cmd_src, &rk_cmd_ops, rk, why, whylen);
    if (rk->reader == NULL || rk->cmd == NULL)
        goto fail;
    rk->deadline = evtimer_new(src->base, rk_on_deadline, rk);
    rk->pace = evtimer_new(src->base, rk_on_pace, rk);
    rk->payload = evbuffer_new();
    if (rk->deadline == NULL || rk->pace == NULL || rk->payload == NULL ||
        rk_reserve(rk, 1) < 0) {
        snprintf(why, whylen, "out of memory");
        goto fail;
    }
    keepalive = redis_conn_keepalive_ms(rk->reader);
    rk->block_ms = keepalive < RK_BLOCK_MS ? keepalive : RK_BLOCK_MS;
    rk->margin_ms = keepalive * 2 / 3 < RK_MARGIN_MS ? keepalive * 2 / 3
                                                     : RK_MARGIN_MS;
    if (rk->margin_ms < 1)
        rk->margin_ms = 1;
    snprintf(rk->block, sizeof(rk->block), "%lld", (long long)rk->block_ms);
    redis_conn_start(rk->reader);
    redis_conn_start(rk->cmd);
    return rk;
fail:
    redis_keys_free(rk);
    return NULL;
}

void redis_keys_free(struct redis_keys *rk)
{
    if (rk == NULL)
        return;
    /* Pending probes and ranges are answered (failed) from here. */
    redis_conn_free(rk->cmd);
    redis_conn_free(rk->reader);
    while (rk->keys != NULL)
        rk_key_remove(rk, rk->keys);
    hashtab_release(&rk->table);
    if (rk->deadline != NULL)
        event_free(rk->deadline);
    if (rk->pace != NULL)
        event_free(rk->pace);
    if (rk->payload != NULL)
        evbuffer_free(rk->payload);
    free(rk->argv);
    free(rk->lens);
    free(rk);
}

/* ---- keyed_ops ---------------------------------------------------------- */

int redis_keys_watch(struct redis_keys *rk, const char *key,
                     const char *after_id, const struct keyed_opts *opts,
                     void *token, char pos[KEYED_ID_MAX])
{
    struct rk_key *k = rk_key_find(rk, key, strlen(key));
    struct rk_watch *w = calloc(1, sizeof(*w));
    bool added = false;

    if (w == NULL || (w->opts = rk_opts_copy(opts)) == NULL)
        goto fail;
    if (k == NULL) {
        if ((k = rk_key_add(rk, key, after_id)) == NULL)
            goto fail;
        added = true;
    }
    w->token = token;
    w->next = k->watches;
    k->watches = w;
    memcpy(pos, k->id, KEYED_ID_MAX);
    if (added)
        rk_interrupt(rk);
    return 0;
fail:
    if (w != NULL)
        free(w->opts);
    free(w);
    return -1;
}

void redis_keys_unwatch(struct redis_keys *rk, const char *key, void *token)
{
    struct rk_key *k = rk_key_find(rk, key, strlen(key));

    if (k == NULL)
        return;
    for (struct rk_watch **link = &k->watches; *link != NULL;
         link = &(*link)->next) {
        struct rk_watch *w = *link;
        if (w->token != token)
            continue;
        *link = w->next;
        free(w->opts);
        free(w);
        break;
    }
    if (k->watches == NULL)
        rk_key_remove(rk, k);
}

/* The id of a COUNT 1 range reply ([[id, fields]]) into out ("" when the
 * key has none); returns the entry's fields, or NULL. */
static const redisReply *rk_probe_id(const redisReply *rep, char *out)
{
    const redisReply *entry;

    out[0] = '\0';
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements == 0)
        return NULL;
    entry = rep->element[0];
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements < 2 ||
        !rk_id_ok(entry->element[0]))
        return NULL;
    memcpy(out, entry->element[0]->str, entry->element[0]->len);
    out[entry->element[0]->len] = '\0';
    return entry->element[1]->type == REDIS_REPLY_ARRAY ? entry->element[1]
                                                        : NULL;
}

/* Both probe replies come here: XRANGE - + COUNT 1 (priv's first), then
 * XREVRANGE + - COUNT 1. Also with rep NULL (connection dropped). */
static void rk_on_probe(redisAsyncContext *ac, void *reply, void *priv)
{
    struct rk_probe *p = priv;
    const redisReply *rep = reply;
    const redisReply *fields;

    if (rep == NULL || rep->type == REDIS_REPLY_ERROR)
        p->result.ok = false;
    else if (p->due == 2)
        rk_probe_id(rep, p->result.first_id);
    else if ((fields = rk_probe_id(rep, p->result.last_id)) != NULL)
        p->result.last_is_end = rk_is_end(p->opts, fields);
    if (--p->due > 0)
        return;
    p->done(p->arg, &p->result);
    free(p->opts);
    free(p);
}

int redis_keys_probe(struct redis_keys *rk, const char *key,
                     const struct keyed_opts *opts,
                     void (*done)(void *arg, const struct keyed_probe *p),
                     void *arg)
{
    struct rk_probe *p;
    redisAsyncContext *ac = redis_conn_context(rk->cmd);

    if (ac == NULL || !redis_conn_is_up(rk->cmd))
        return -1;
    p = calloc(1, sizeof(*p));
    if (p == NULL || (p->opts = rk_opts_copy(opts)) == NULL) {
        free(p);
        return -1;
    }
    p->done = done;
    p->arg = arg;
    p->result.ok = true;
    p->due = 2;
    /* Both queue or neither: a failure to queue the second after the
     * first would leave the first's reply to free p alone. */
    if (redisAsyncCommand(ac, rk_on_probe, p, "XRANGE %s - + COUNT 1",
                          key) != REDIS_OK) {
        free(p->opts);
        free(p);
        return -1;
    }
    if (redisAsyncCommand(ac, rk_on_probe, p, "XREVRANGE %s + - COUNT 1",
                          key) != REDIS_OK) {
        p->due = 1;
        p->result.ok = false;
    }
    return 0;
}

static void rk_on_range(redisAsyncContext *ac, void *reply, void *priv)
{
    struct rk_range *r = priv;
    const redisReply *rep = reply;
    struct redis_keys *rk = rep != NULL ? redis_conn_owner(ac) : NULL;
    struct message **msgs = NULL;
    size_t n = 0;
    bool ok = rk != NULL && rep->type == REDIS_REPLY_ARRAY;

    if (ok && rep->elements > 0 &&
        (msgs = calloc(rep->elements, sizeof(*msgs))) == NULL)
        ok = false;
    for (size_t i = 0; ok && i < rep->elements; i++) {
        struct message *msg = rk_message(rk, r->key, r->opts, rep->element[i]);
        if (msg != NULL)
            msgs[n++] = msg;
    }
    history_key_fetch_done(r->fetch, msgs, n, ok);
    free(msgs);
    free(r->opts);
    free(r->key);
    free(r);
}

int redis_keys_range(struct redis_keys *rk, const char *key,
                     const char *after_id, const char *until_id,
                     size_t count, const struct keyed_opts *opts,
                     struct history_key_fetch *fetch)
{
    redisAsyncContext *ac = redis_conn_context(rk->cmd);
    struct rk_range *r;
    char start[KEYED_ID_MAX + 1];
    int rc;

    if (ac == NULL || !redis_conn_is_up(rk->cmd))
        return -1;
    r = calloc(1, sizeof(*r));
    if (r == NULL || (r->opts = rk_opts_copy(opts)) == NULL ||
        (r->key = strdup(key)) == NULL)
        goto fail;
    r->rk = rk;
    r->fetch = fetch;
    snprintf(start, sizeof(start), "%s%s", after_id ? "(" : "",
             after_id ? after_id : "-");
    rc = redisAsyncCommand(ac, rk_on_range, r, "XRANGE %s %s %s COUNT %llu",
                           key, start, until_id, (unsigned long long)count);
    if (rc != REDIS_OK)
        goto fail;
    return 0;
fail:
    if (r != NULL) {
        free(r->opts);
        free(r->key);
    }
    free(r);
    return -1;
}
