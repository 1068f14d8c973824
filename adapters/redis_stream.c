/*
 * redis_stream.c - the Redis Streams adapter (type "redis-stream"): XREAD
 * on the configured stream keys, every entry handed to the bridge's sink
 * as one event (topic = stream key, payload = the entry's fields as a
 * JSON object, stream entry id as an attribute).
 *
 * The connection itself (URL, connect, AUTH, SELECT, handshake timeout,
 * reconnect with backoff) is a struct redis_conn (redis_conn.c). Once it
 * is ready, this file:
 *
 *   ready --PING--> (answer) UP
 *         --XREVRANGE for keys with no position yet--> (answers)
 *         --XREAD COUNT 512 BLOCK b STREAMS k.. id..--> (reply) deliver,
 *         --XREAD from the new ids--> ...
 *
 * The PING is pipelined ahead of the reads so that UP means "the server
 * answers" even without AUTH/SELECT (a listener that never answers fails
 * the handshake timeout instead of looking UP); it costs no round trip.
 *
 * Positions. Every key has the id of the last entry handed to the sink
 * (struct redis_stream_key.id), kept across reconnects, so a reconnect
 * continues exactly after it. A key with no position yet takes, in order:
 * the sink's last_entry_id (what the history stored: a restart with
 * history.dir neither loses nor repeats), else the key's newest entry at
 * that moment ("only new entries"). The latter is resolved with
 * XREVRANGE key + - COUNT 1 (or 0-0 for an empty or missing key) rather
 * than by passing "$" to XREAD: "$" means "newest when this XREAD runs",
 * so a key left at "$" while another key's entries keep re-issuing XREAD
 * would lose whatever arrives between two XREADs.
 *
 * The position advances for every entry, whatever deliver returned: a
 * refused entry (larger than max_payload, out of memory, shutting down)
 * would be refused again, and retrying it would stall the key forever.
 * The bridge counts and logs its refusals; a refusal while shutting down
 * is not lost, since the next start resumes from the history.
 *
 * Liveness: replies come in order, so a PING queued behind a blocked
 * XREAD would wait for it. Instead, while a read is outstanding the
 * keepalive is skipped and the read itself is the probe: BLOCK is at most
 * the keepalive interval (5 s by default), so a live server always
 * answers within BLOCK, and a deadline of BLOCK + margin (5 s) drops the
 * connection otherwise. With no keys at all (nothing to read), the
 * connection's plain PING keepalive runs.
 *
 * Every hiredis callback starts with "s = redis_conn_owner(ac); if NULL
 * return": the callbacks of a dropped context (after a failure or stop())
 * are harmless. The sink's callbacks must not call stop() on the same
 * source.
 */
#include "adapters/adapter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "adapters/redis_conn.h"
#include "adapters/redis_stream_payload.h"
#include "lib/log.h"
#include "lib/message.h"
#include "lib/sse.h"

/* "18446744073709551615-18446744073709551615" and its NUL fit. */
#define REDIS_STREAM_ID_MAX 48
#define REDIS_STREAM_COUNT "512"
#define REDIS_STREAM_BLOCK_MS 5000
#define REDIS_STREAM_MARGIN_MS 5000
/* "XREAD COUNT n BLOCK ms STREAMS": the arguments before the keys. */
#define REDIS_STREAM_XREAD_ARGS 6

/* One stream key and how far it has been read. */
struct redis_stream_key {
    char *name;                    /* owned */
    char id[REDIS_STREAM_ID_MAX];  /* last entry handed on; "" = unknown */
};

struct redis_stream {
    struct source *src;      /* the source that owns this impl */
    struct redis_conn *conn; /* owned */

    /* The keys of src->subs.exact, without duplicates, in config order. */
    struct redis_stream_key *keys; /* owned */
    size_t nkeys;
    bool keys_stale; /* src->subs changed, keys not yet rebuilt (ENOMEM) */

    /* The XREAD command: fixed arguments, then the keys, then the ids
     * (filled in each time). Sized for nkeys; owned. */
    const char **argv;
    size_t *lens;
    char block[24];

    int64_t block_ms;
    int64_t margin_ms;

    /* Per connection: what is outstanding (never both). */
    bool reading;     /* an XREAD */
    size_t resolving; /* XREVRANGE replies still due */
    struct event *deadline_timer;
    const char *deadline_what; /* the command the deadline is for */
    int64_t deadline_ms;       /* and how long it was given */

    struct evbuffer *payload; /* reused to build each entry's payload */
};

/* ---- small helpers ---------------------------------------------------- */

static const char *redis_stream_name(const struct redis_stream *s)
{
    return s->src->cfg->name;
}

static int64_t redis_stream_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A complete or ms-only stream id: digits, optionally "-" and digits,
 * short enough for REDIS_STREAM_ID_MAX. */
static bool redis_stream_id_valid(const char *id, size_t len)
{
    size_t i = 0;

    if (len == 0 || len >= REDIS_STREAM_ID_MAX)
        return false;
    while (i < len && id[i] >= '0' && id[i] <= '9')
        i++;
    if (i == 0)
        return false;
    if (i == len)
        return true;
    if (id[i++] != '-' || i == len)
        return false;
    while (i < len && id[i] >= '0' && id[i] <= '9')
        i++;
    return i == len;
}

static void redis_stream_key_set(struct redis_stream_key *key, const char *id,
                                 size_t len)
{
    memcpy(key->id, id, len);
    key->id[len] = '\0';
}

static struct redis_stream_key *redis_stream_key_find(struct redis_stream *s,
                                                      const char *name,
                                                      size_t len)
{
    for (size_t i = 0; i < s->nkeys; i++)
        if (strlen(s->keys[i].name) == len &&
            memcmp(s->keys[i].name, name, len) == 0)
            return &s->keys[i];
    return NULL;
}

static void redis_stream_keys_free(struct redis_stream_key *keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(keys[i].name);
    free(keys);
}

static void redis_stream_deadline(struct redis_stream *s, const char *what,
                                  int64_t ms)
{
    struct timeval tv = {.tv_sec = ms / 1000,
                         .tv_usec = (suseconds_t)(ms % 1000) * 1000};

    s->deadline_what = what;
    s->deadline_ms = ms;
    evtimer_add(s->deadline_timer, &tv);
}

/* ---- the key table ---------------------------------------------------- */

/*
 * Rebuilds keys (and the XREAD argument arrays) from src->subs.exact,
 * dropping duplicates and keeping the position of every key that stays.
 * On allocation failure nothing changes and -1 is returned.
 */
static int redis_stream_keys_sync(struct redis_stream *s)
{
    const struct config_strv *names = &s->src->subs.exact;
    size_t cap = names->count ? names->count : 1;
    struct redis_stream_key *keys = calloc(cap, sizeof(*keys));
    const char **argv = calloc(REDIS_STREAM_XREAD_ARGS + 2 * cap,
                               sizeof(*argv));
    size_t *lens = calloc(REDIS_STREAM_XREAD_ARGS + 2 * cap, sizeof(*lens));
    size_t n = 0;

    if (keys == NULL || argv == NULL || lens == NULL)
        goto fail;
    for (size_t i = 0; i < names->count; i++) {
        const char *name = names->items[i];
        const struct redis_stream_key *old;
        bool dup = false;

        for (size_t j = 0; j < n && !dup; j++)
            dup = strcmp(keys[j].name, name) == 0;
        if (dup)
            continue;
        keys[n].name = strdup(name);
        if (keys[n].name == NULL)
            goto fail;
        old = redis_stream_key_find(s, name, strlen(name));
        if (old)
            memcpy(keys[n].id, old->id, sizeof(old->id));
        n++;
    }
    redis_stream_keys_free(s->keys, s->nkeys);
    free(s->argv);
    free(s->lens);
    s->keys = keys;
    s->nkeys = n;
    s->argv = argv;
    s->lens = lens;
    s->keys_stale = false;
    return 0;
fail:
    redis_stream_keys_free(keys, n);
    free(argv);
    free(lens);
    return -1;
}

/*
 * Asks the sink where the history stopped for key. True when it knows
 * (and key->id is set); an answer that is no stream id is ignored.
 */
static bool redis_stream_ask_sink(struct redis_stream *s,
                                  struct redis_stream_key *key)
{
    char id[REDIS_STREAM_ID_MAX];
    struct source *src = s->src;

    if (src->sink.last_entry_id == NULL ||
        src->sink.last_entry_id(src->sink.ctx, src, key->name, id,
                                sizeof(id)) != 1)
        return false;
    id[sizeof(id) - 1] = '\0';
    if (!redis_stream_id_valid(id, strlen(id))) {
        log_warn("source %s: the history's last id for stream '%.64s' is "
                 "not a stream id; reading new entries only",
                 redis_stream_name(s), key->name);
        return false;
    }
    redis_stream_key_set(key, id, strlen(id));
    log_info("source %s: stream '%.64s' resumes after %s",
             redis_stream_name(s), key->name, id);
    return true;
}

/* ---- reading ------------------------------------------------------------ */

static void redis_stream_on_xread(redisAsyncContext *ac, void *reply,
                                  void *priv);
static void redis_stream_on_xrevrange(redisAsyncContext *ac, void *reply,
                                      void *priv);

/* Queues XREVRANGE key + - COUNT 1 for key (its newest entry). 0, or -1
 * when it could not be queued. The reply callback owns the name copy. */
static int redis_stream_send_resolve(struct redis_stream *s,
                                     const struct redis_stream_key *key)
{
    char *name = strdup(key->name);

    if (name == NULL)
        return -1;
    if (redisAsyncCommand(redis_conn_context(s->conn),
                          redis_stream_on_xrevrange, name,
                          "XREVRANGE %s + - COUNT 1", name) != REDIS_OK) {
        free(name);
        return -1;
    }
    s->resolving++;
    return 0;
}

/* Gives every key without a position one: from the sink, or by queueing
 * an XREVRANGE. 0, or -1 when a command could not be queued. */
static int redis_stream_resolve(struct redis_stream *s)
{
    for (size_t i = 0; i < s->nkeys; i++) {
        struct redis_stream_key *key = &s->keys[i];

        if (key->id[0] != '\0' || redis_stream_ask_sink(s, key))
            continue;
        if (redis_stream_send_resolve(s, key) < 0)
            return -1;
    }
    return 0;
}

/* Queues the XREAD from every key's position. 0, or -1. */
static int redis_stream_send_xread(struct redis_stream *s)
{
    const char *fixed[REDIS_STREAM_XREAD_ARGS] = {
        "XREAD", "COUNT", REDIS_STREAM_COUNT, "BLOCK", s->block, "STREAMS"};
    size_t argc = REDIS_STREAM_XREAD_ARGS + 2 * s->nkeys;

    for (size_t i = 0; i < REDIS_STREAM_XREAD_ARGS; i++) {
        s->argv[i] = fixed[i];
        s->lens[i] = strlen(fixed[i]);
    }
    for (size_t i = 0; i < s->nkeys; i++) {
        size_t k = REDIS_STREAM_XREAD_ARGS + i;
        size_t v = k + s->nkeys;

        s->argv[k] = s->keys[i].name;
        s->lens[k] = strlen(s->keys[i].name);
        s->argv[v] = s->keys[i].id;
        s->lens[v] = strlen(s->keys[i].id);
    }
    if (argc > INT32_MAX ||
        redisAsyncCommandArgv(redis_conn_context(s->conn),
                              redis_stream_on_xread, NULL, (int)argc,
                              s->argv, s->lens) != REDIS_OK)
        return -1;
    s->reading = true;
    return 0;
}

/*
 * The next step on a ready connection with nothing outstanding: resolve
 * the keys that have no position yet, else XREAD. With no keys, nothing
 * (resubscribe starts reading later). A failure to queue drops the
 * connection.
 */
static void redis_stream_next(struct redis_stream *s)
{
    if (s->nkeys == 0 || s->reading || s->resolving > 0)
        return;
    if (redis_stream_resolve(s) < 0)
        goto fail;
    if (s->resolving > 0) {
        redis_stream_deadline(s, "XREVRANGE", s->margin_ms);
        return;
    }
    if (redis_stream_send_xread(s) < 0)
        goto fail;
    redis_stream_deadline(s, "XREAD", s->block_ms + s->margin_ms);
    return;
fail:
    redis_conn_fail(s->conn, "cannot queue XREAD");
}

/* A reply that is an error: drops the connection with the server's
 * reason (a key of another type gives WRONGTYPE, retried with backoff and
 * shown on /readyz). */
static void redis_stream_reply_error(struct redis_stream *s, const char *cmd,
                                     const redisReply *rep)
{
    char status[REDIS_CONN_TEXT_MAX];

    snprintf(status, sizeof(status), "%s failed: %s", cmd,
             redis_conn_error_text(s->conn, rep->str));
    redis_conn_fail(s->conn, status);
}

/* The id in an XREVRANGE ... COUNT 1 reply, [] or [[id, fields]]; "0-0"
 * (before any entry) for an empty or missing stream. */
static void redis_stream_newest(const redisReply *rep,
                                struct redis_stream_key *key)
{
    const redisReply *entry, *id;

    if (rep->type != REDIS_REPLY_ARRAY || rep->elements == 0)
        goto none;
    entry = rep->element[0];
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements == 0)
        goto none;
    id = entry->element[0];
    if (id->type != REDIS_REPLY_STRING ||
        !redis_stream_id_valid(id->str, id->len))
        goto none;
    redis_stream_key_set(key, id->str, id->len);
    return;
none:
    redis_stream_key_set(key, "0-0", 3);
}

/* The reply to redis_stream_send_resolve. priv is the key name (ours to
 * free, whatever happens). The last one of a round sends the XREAD. */
static void redis_stream_on_xrevrange(redisAsyncContext *ac, void *reply,
                                      void *priv)
{
    struct redis_stream *s = redis_conn_owner(ac);
    const redisReply *rep = reply;
    struct redis_stream_key *key;
    char *name = priv;

    if (s == NULL || rep == NULL || s->resolving == 0)
        goto out;
    s->resolving--;
    if (rep->type == REDIS_REPLY_ERROR) {
        redis_stream_reply_error(s, "XREVRANGE", rep);
        goto out;
    }
    /* A key dropped by a resubscribe meanwhile is not found: fine. */
    key = redis_stream_key_find(s, name, strlen(name));
    if (key && key->id[0] == '\0')
        redis_stream_newest(rep, key);
    if (s->resolving == 0) {
        evtimer_del(s->deadline_timer);
        redis_stream_next(s);
    }
out:
    free(name);
}

/* ---- entries ------------------------------------------------------------ */

/* True when every value of the field/value list is valid UTF-8. */
static bool redis_stream_values_utf8(const redisReply *fields)
{
    for (size_t i = 1; i < fields->elements; i += 2) {
        const redisReply *v = fields->element[i];

        if (v->type == REDIS_REPLY_STRING && !sse_utf8_valid(v->str, v->len))
            return false;
    }
    return true;
}

/*
 * Builds the payload of one entry into out: a JSON object of its
 * fields in entry order, {"field":"value",...}, values as JSON strings.
 * When any value is not valid UTF-8 (JSON strings cannot hold it), every
 * value is base64 instead and "_encoding":"base64" ends the object, so a
 * consumer decodes all or nothing. Field names are always JSON strings
 * (a name that is not UTF-8, which nobody uses, gets U+FFFD for its bad
 * bytes). A field repeated in one entry appears twice (JSON.parse keeps
 * the last). Written with sse.c's encoders (the ones the bridge formats
 * every event with) rather than jansson: jansson refuses non-UTF-8
 * strings, and this appends into one reused buffer. 0, or -1 on ENOMEM.
 */
int redis_stream_payload(struct evbuffer *out, const redisReply *fields)
{
    static const char marker[] = "\"_encoding\":\"base64\"";
    bool base64 = !redis_stream_values_utf8(fields);
    bool first = true;
    int rc = 0;

    evbuffer_drain(out, evbuffer_get_length(out));
    rc |= evbuffer_add(out, "{", 1);
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *f = fields->element[i];
        const redisReply *v = fields->element[i + 1];

        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (!first)
            rc |= evbuffer_add(out, ",", 1);
        first = false;
        rc |= sse_append_json_string(out, f->str, f->len);
        rc |= evbuffer_add(out, ":", 1);
        if (!base64) {
            rc |= sse_append_json_string(out, v->str, v->len);
            continue;
        }
        rc |= evbuffer_add(out, "\"", 1);
        rc |= sse_append_base64(out, v->str, v->len);
        rc |= evbuffer_add(out, "\"", 1);
    }
    if (base64 && !first)
        rc |= evbuffer_add(out, ",", 1);
    if (base64)
        rc |= evbuffer_add(out, marker, sizeof(marker) - 1);
    rc |= evbuffer_add(out, "}", 1);
    return rc == 0 ? 0 : -1;
}

/*
 * Hot path: one call per stream entry [id, [field, value, ...]]. Advances
 * key's position first (whatever deliver returns: see the top comment),
 * then hands the event to the sink: the sink call is the last thing done.
 */
static void redis_stream_deliver(struct redis_stream *s,
                                 struct redis_stream_key *key,
                                 const redisReply *entry)
{
    struct source *src = s->src;
    const redisReply *id, *fields;
    static const redisReply no_fields = {.type = REDIS_REPLY_ARRAY};
    struct message *msg;

    if (entry->type != REDIS_REPLY_ARRAY || entry->elements < 2 ||
        entry->element[0]->type != REDIS_REPLY_STRING ||
        !redis_stream_id_valid(entry->element[0]->str,
                               entry->element[0]->len))
        return; /* not an entry: nothing to advance to */
    id = entry->element[0];
    fields = entry->element[1]->type == REDIS_REPLY_ARRAY ? entry->element[1]
                                                          : &no_fields;
    redis_stream_key_set(key, id->str, id->len);
    if (redis_stream_payload(s->payload, fields) < 0)
        goto oom;
    msg = message_new(src->index, src->cfg->type, key->name,
                      strlen(key->name), evbuffer_pullup(s->payload, -1),
                      evbuffer_get_length(s->payload),
                      redis_stream_now_ms());
    if (msg == NULL)
        goto oom;
    if (message_set_stream_entry_id(msg, key->id) < 0) {
        message_unref(msg);
        goto oom;
    }
    src->sink.deliver(src->sink.ctx, src, msg);
    return;
oom:
    log_error("source %s: out of memory, stream '%.64s' entry %s dropped",
              redis_stream_name(s), key->name, key->id);
}

/* One [key, [entry, ...]] of an XREAD reply. Entries of a key no longer
 * subscribed (a resubscribe while the XREAD was blocked) are dropped. */
static void redis_stream_on_key(struct redis_stream *s,
                                const redisReply *item)
{
    const redisReply *name, *entries;
    struct redis_stream_key *key;

    if (item->type != REDIS_REPLY_ARRAY || item->elements < 2)
        return;
    name = item->element[0];
    entries = item->element[1];
    if (name->type != REDIS_REPLY_STRING ||
        entries->type != REDIS_REPLY_ARRAY)
        return;
    key = redis_stream_key_find(s, name->str, name->len);
    if (key == NULL)
        return;
    for (size_t i = 0; i < entries->elements; i++)
        redis_stream_deliver(s, key, entries->element[i]);
}

/* XREAD: nil when BLOCK timed out, else [[key, [entry, ...]], ...].
 * Whatever it was, the next XREAD goes out at once. */
static void redis_stream_on_xread(redisAsyncContext *ac, void *reply,
                                  void *priv)
{
    struct redis_stream *s = redis_conn_owner(ac);
    const redisReply *rep = reply;

    if (s == NULL || rep == NULL)
        return;
    s->reading = false;
    evtimer_del(s->deadline_timer);
    if (rep->type == REDIS_REPLY_ERROR) {
        redis_stream_reply_error(s, "XREAD", rep);
        return;
    }
    if (rep->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < rep->elements; i++)
            redis_stream_on_key(s, rep->element[i]);
    redis_stream_next(s);
}

static void redis_stream_on_deadline(evutil_socket_t fd, short what,
                                     void *arg)
{
    struct redis_stream *s = arg;
    char text[REDIS_CONN_TEXT_MAX];

    snprintf(text, sizeof(text), "no reply from %s to %s within %lld ms",
             redis_conn_where(s->conn), s->deadline_what,
             (long long)s->deadline_ms);
    redis_conn_fail(s->conn, text);
}

/* ---- the connection's callbacks ------------------------------------------ */

/* The PING sent ahead of the reads: its answer makes the source UP. */
static void redis_stream_on_hello(redisAsyncContext *ac, void *reply,
                                  void *priv)
{
    struct redis_stream *s = redis_conn_owner(ac);
    const redisReply *rep = reply;

    if (s == NULL || rep == NULL)
        return;
    if (rep->type == REDIS_REPLY_ERROR) {
        redis_stream_reply_error(s, "PING", rep);
        return;
    }
    if (redis_conn_is_up(s->conn))
        return;
    log_info("source %s: reading %zu stream(s)", redis_stream_name(s),
             s->nkeys);
    redis_conn_mark_up(s->conn);
}

/* redis_conn_ops.ready: PING (for UP), then start reading. */
static void redis_stream_on_ready(void *owner)
{
    struct redis_stream *s = owner;

    if (s->keys_stale && redis_stream_keys_sync(s) < 0) {
        redis_conn_fail(s->conn, "out of memory");
        return;
    }
    if (redisAsyncCommand(redis_conn_context(s->conn), redis_stream_on_hello,
                          NULL, "PING") != REDIS_OK) {
        redis_conn_fail(s->conn, "cannot queue PING");
        return;
    }
    redis_stream_next(s);
}

/* redis_conn_ops.lost: nothing is outstanding any more; the positions
 * stay, so that the reconnect continues after them. */
static void redis_stream_on_lost(void *owner)
{
    struct redis_stream *s = owner;

    s->reading = false;
    s->resolving = 0;
    evtimer_del(s->deadline_timer);
}

/* redis_conn_ops.keepalive: while a read is outstanding the read is the
 * probe (see the top comment); otherwise a plain PING. */
static int redis_stream_keepalive(void *owner)
{
    struct redis_stream *s = owner;

    if (s->reading || s->resolving > 0)
        return 0;
    return redis_conn_ping(s->conn);
}

/* ---- adapter_ops ------------------------------------------------------- */

static const struct redis_conn_ops redis_stream_conn_ops = {
    .ready = redis_stream_on_ready,
    .lost = redis_stream_on_lost,
    .keepalive = redis_stream_keepalive,
};

/* Frees s and everything it owns, the connection included. */
static void redis_stream_free(struct redis_stream *s)
{
    redis_conn_free(s->conn);
    if (s->deadline_timer)
        event_free(s->deadline_timer);
    if (s->payload)
        evbuffer_free(s->payload);
    redis_stream_keys_free(s->keys, s->nkeys);
    free(s->argv);
    free(s->lens);
    free(s);
}

/* BLOCK and the reply margin, from the connection's keepalive interval
 * (shortened by SLUICE_REDIS_KEEPALIVE_MS in the tests). */
static void redis_stream_timing(struct redis_stream *s)
{
    int64_t keepalive = redis_conn_keepalive_ms(s->conn);
    int64_t margin = keepalive * 2 / 3;

    s->block_ms = keepalive < REDIS_STREAM_BLOCK_MS ? keepalive
                                                    : REDIS_STREAM_BLOCK_MS;
    s->margin_ms = margin < 1 ? 1
                   : margin < REDIS_STREAM_MARGIN_MS ? margin
                                                     : REDIS_STREAM_MARGIN_MS;
    snprintf(s->block, sizeof(s->block), "%lld", (long long)s->block_ms);
}

/*
 * Parses the URL and starts the first connection attempt (the timeouts:
 * see redis_conn_new). 0, or -1 with why filled (nothing allocated stays
 * behind).
 */
static int redis_stream_start(struct source *src, char *why, size_t whylen)
{
    struct redis_stream *s;

    if (src->impl) {
        snprintf(why, whylen, "source already started");
        return -1;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    s->src = src;
    s->conn = redis_conn_new(src, &redis_stream_conn_ops, s, why, whylen);
    if (s->conn == NULL)
        goto fail;
    s->deadline_timer = evtimer_new(src->base, redis_stream_on_deadline, s);
    s->payload = evbuffer_new();
    if (s->deadline_timer == NULL || s->payload == NULL ||
        redis_stream_keys_sync(s) < 0) {
        snprintf(why, whylen, "out of memory");
        goto fail;
    }
    redis_stream_timing(s);
    src->impl = s;
    redis_conn_start(s->conn);
    return 0;
fail:
    redis_stream_free(s);
    return -1;
}

/* Drops the connection (no callback of it reaches the sink afterwards),
 * frees the impl. Idempotent. src->state is left as it was: the bridge
 * owns the source from here on. */
static void redis_stream_stop(struct source *src)
{
    struct redis_stream *s = src->impl;

    if (s == NULL)
        return;
    src->impl = NULL;
    redis_stream_free(s);
}

/*
 * Takes ownership of *subs' contents (and zeroes *subs); only `exact`
 * (the stream keys) matters. The new keys take effect with the next XREAD
 * (a blocked one returns within BLOCK); a key that is new starts after
 * the sink's last id for it, else after its newest entry when that XREAD
 * goes out. Returns -1 when the key table could not be rebuilt now (out
 * of memory): it is rebuilt at the next connect.
 */
static int redis_stream_resubscribe(struct source *src,
                                    struct subscriptions *subs)
{
    struct redis_stream *s = src->impl;
    struct subscriptions old = src->subs;

    src->subs = *subs;
    memset(subs, 0, sizeof(*subs));
    subscriptions_free(&old);
    if (s == NULL)
        return 0;
    if (redis_stream_keys_sync(s) < 0) {
        s->keys_stale = true;
        return -1;
    }
    if (redis_conn_is_ready(s->conn))
        redis_stream_next(s);
    return 0;
}

/* adapter_ops.configured: the `streams` keys. */
static int redis_stream_configured(const struct source_config *cfg,
                                   struct subscriptions *out)
{
    if (cfg->streams.count == 0)
        return 0;
    return config_strv_copy_unique(&out->exact, &cfg->streams) ? -1 : 1;
}

const struct adapter_ops redis_stream_adapter_ops = {
    .type = "redis-stream",
    .exact_verb = "XREAD",
    .pattern_verb = "XREAD",
    .configured = redis_stream_configured,
    .check_url = redis_conn_check_url,
    .start = redis_stream_start,
    .stop = redis_stream_stop,
    .resubscribe = redis_stream_resubscribe,
};
