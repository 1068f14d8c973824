/*
 * redis.c - the Redis pub/sub adapter (type "redis"): SUBSCRIBE and
 * PSUBSCRIBE on one connection, every message handed to the bridge's sink.
 *
 * The connection itself (URL, connect, AUTH, SELECT, handshake timeout,
 * reconnect with backoff) is a struct redis_conn (redis_conn.c). This file
 * is what pub/sub adds on top of it: once the connection is ready it
 * subscribes every channel and pattern, and reports UP when the server
 * has confirmed them all:
 *
 *   ready --(P)SUBSCRIBE--> subscribing --all confirmed--> UP
 *
 * (with nothing to subscribe, a PING's answer stands in for the
 * confirmations), then turns "message"/"pmessage" replies into events,
 * one event per upstream message (see redis_on_message).
 *
 * Keepalive: hiredis 0.14 cannot route the reply to a PING sent in
 * subscribed mode (["pong",""] is looked up as a pattern named "" and
 * dropped, and the PING's callback stays queued until the context is
 * freed: one leaked entry per PING). Instead, while subscribed, the
 * keepalive repeats SUBSCRIBE (or PSUBSCRIBE) of a name we already hold:
 * Redis answers with a confirmation and changes nothing, hiredis routes it
 * to our callback, and it needs no permission we do not already have.
 * With no subscriptions at all the connection is in normal mode and a
 * plain PING works. (redis_keepalive plugs this into redis_conn.)
 *
 * Every hiredis callback starts with "r = redis_conn_owner(ac); if NULL
 * return": the callbacks of a dropped context (after a failure or stop())
 * are harmless. The sink's callbacks must not call stop() on the same
 * source.
 */
#include "adapters/adapter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "adapters/redis_conn.h"
#include "lib/log.h"
#include "lib/message.h"
#include "lib/topic.h"

/* Names the server has confirmed as subscribed. Scanned once per message,
 * so it stays a plain array (a source subscribes to a handful). */
struct redis_names {
    char **items; /* owned */
    size_t count;
    size_t cap;
};

struct redis_impl {
    struct source *src;      /* the source that owns this impl */
    struct redis_conn *conn; /* owned */

    size_t confirm_pending; /* subscribing: confirmations still due */

    /* The server's view of our subscriptions, from its confirmations. */
    struct redis_names live_channels;
    struct redis_names live_patterns;

    /* Dedupe: the last delivered message (our own reference) and how many
     * more copies of it Redis still owes us. */
    struct message *dup_msg;
    size_t dup_left;
};

static void redis_on_pubsub(redisAsyncContext *ac, void *reply, void *priv);

/* ---- small helpers ---------------------------------------------------- */

static const char *redis_name(const struct redis_impl *r)
{
    return r->src->cfg->name;
}

static int64_t redis_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool redis_strv_has(const struct config_strv *v, const char *name)
{
    for (size_t i = 0; i < v->count; i++)
        if (strcmp(v->items[i], name) == 0)
            return true;
    return false;
}

/* Ready, not yet UP: the (P)SUBSCRIBE confirmations are still coming. */
static bool redis_subscribing(const struct redis_impl *r)
{
    return redis_conn_is_ready(r->conn) && !redis_conn_is_up(r->conn);
}

/* ---- the confirmed-name sets ------------------------------------------ */

static bool redis_names_has(const struct redis_names *set, const char *s,
                            size_t len)
{
    for (size_t i = 0; i < set->count; i++)
        if (strlen(set->items[i]) == len && memcmp(set->items[i], s, len) == 0)
            return true;
    return false;
}

/* Adds a copy of s unless present. 0, or -1 on allocation failure. */
static int redis_names_add(struct redis_names *set, const char *s, size_t len)
{
    char *copy;

    if (redis_names_has(set, s, len))
        return 0;
    if (set->count == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 8;
        char **items = realloc(set->items, cap * sizeof(*items));

        if (items == NULL)
            return -1;
        set->items = items;
        set->cap = cap;
    }
    copy = strndup(s, len);
    if (copy == NULL)
        return -1;
    set->items[set->count++] = copy;
    return 0;
}

static void redis_names_remove(struct redis_names *set, const char *s,
                               size_t len)
{
    for (size_t i = 0; i < set->count; i++) {
        if (strlen(set->items[i]) == len &&
            memcmp(set->items[i], s, len) == 0) {
            free(set->items[i]);
            set->items[i] = set->items[--set->count];
            return;
        }
    }
}

static void redis_names_clear(struct redis_names *set)
{
    for (size_t i = 0; i < set->count; i++)
        free(set->items[i]);
    set->count = 0;
}

static void redis_names_free(struct redis_names *set)
{
    redis_names_clear(set);
    free(set->items);
    memset(set, 0, sizeof(*set));
}
/* ---- subscribing -------------------------------------------------------- */

static void redis_dedupe_clear(struct redis_impl *r)
{
    if (r->dup_msg)
        message_unref(r->dup_msg);
    r->dup_msg = NULL;
    r->dup_left = 0;
}

/* redis_conn_ops.lost: forgets what belonged to the connection. */
static void redis_on_lost(void *owner)
{
    struct redis_impl *r = owner;

    r->confirm_pending = 0;
    redis_names_clear(&r->live_channels);
    redis_names_clear(&r->live_patterns);
    redis_dedupe_clear(r);
}

static void redis_up(struct redis_impl *r)
{
    log_info("source %s: subscribed to %zu channel(s), %zu pattern(s)",
             redis_name(r), r->src->subs.exact.count,
             r->src->subs.patterns.count);
    redis_conn_mark_up(r->conn);
}

/*
 * Sends `cmd` with every name of `names` that is not in `minus` (NULL:
 * none), in one command; *sent gets the number of names sent. A command
 * with no names is not sent. 0, or -1 when it could not be queued.
 */
static int redis_send_names(struct redis_impl *r, const char *cmd,
                            const struct config_strv *names,
                            const struct config_strv *minus, size_t *sent)
{
    const char **argv = calloc(names->count + 1, sizeof(*argv));
    size_t *lens = calloc(names->count + 1, sizeof(*lens));
    size_t argc = 1;
    int rc = -1;

    *sent = 0;
    if (argv == NULL || lens == NULL || names->count >= INT32_MAX)
        goto out;
    argv[0] = cmd;
    lens[0] = strlen(cmd);
    for (size_t i = 0; i < names->count; i++) {
        if (minus && redis_strv_has(minus, names->items[i]))
            continue;
        argv[argc] = names->items[i];
        lens[argc++] = strlen(names->items[i]);
    }
    rc = 0;
    if (argc > 1 &&
        redisAsyncCommandArgv(redis_conn_context(r->conn), redis_on_pubsub,
                              NULL, (int)argc, argv, lens) != REDIS_OK)
        rc = -1;
    if (rc == 0)
        *sent = argc - 1;
out:
    free(argv);
    free(lens);
    return rc;
}

/* The PING that stands in for confirmations when nothing is subscribed. */
static void redis_on_ping_reply(redisAsyncContext *ac, void *reply,
                                void *priv)
{
    struct redis_impl *r = redis_conn_owner(ac);
    redisReply *rep = reply;
    char status[REDIS_CONN_TEXT_MAX];

    if (r == NULL || rep == NULL)
        return;
    if (rep->type == REDIS_REPLY_ERROR) {
        snprintf(status, sizeof(status), "PING failed: %s",
                 redis_conn_error_text(r->conn, rep->str));
        redis_conn_fail(r->conn, status); /* logs it */
        return;
    }
    if (redis_subscribing(r) && r->confirm_pending == 0)
        redis_up(r);
}

/*
 * redis_conn_ops.ready: SUBSCRIBE and PSUBSCRIBE everything. With nothing
 * to subscribe, a PING stands in, so that UP always means the server has
 * answered.
 */
static void redis_on_ready(void *owner)
{
    struct redis_impl *r = owner;
    const struct subscriptions *subs = &r->src->subs;
    size_t channels = 0, patterns = 0;
    int rc;

    rc = redis_send_names(r, "SUBSCRIBE", &subs->exact, NULL, &channels);
    if (rc == 0)
        rc = redis_send_names(r, "PSUBSCRIBE", &subs->patterns, NULL,
                              &patterns);
    if (rc == 0 && channels + patterns == 0)
        rc = redisAsyncCommand(redis_conn_context(r->conn),
                               redis_on_ping_reply, NULL, "PING") == REDIS_OK
                 ? 0
                 : -1;
    if (rc < 0) {
        redis_conn_fail(r->conn, "cannot queue SUBSCRIBE");
        return;
    }
    r->confirm_pending = channels + patterns;
}

/*
 * redis_conn_ops.keepalive: sends one keepalive (see the top comment for
 * why it is not always a PING). 1 when sent, 0 when skipped this round
 * (the connection is leaving subscribed mode: neither form would be
 * answered reliably), -1 when it could not be queued.
 */
static int redis_keepalive(void *owner)
{
    struct redis_impl *r = owner;
    const struct subscriptions *subs = &r->src->subs;
    struct config_strv one = {0};
    const char *cmd = "SUBSCRIBE";
    size_t sent = 0;

    if (subs->exact.count > 0) {
        one.items = subs->exact.items;
    } else if (subs->patterns.count > 0) {
        one.items = subs->patterns.items;
        cmd = "PSUBSCRIBE";
    } else if (redis_conn_context(r->conn)->c.flags & REDIS_SUBSCRIBED) {
        return 0;
    } else {
        return redis_conn_ping(r->conn);
    }
    one.count = 1;
    return redis_send_names(r, cmd, &one, NULL, &sent) == 0 ? 1 : -1;
}

/* ---- pub/sub replies --------------------------------------------------- */

/* How many of our subscriptions (as the server has confirmed them) match
 * channel: the exact one, plus every matching pattern. */
static size_t redis_copies(const struct redis_impl *r, const char *channel,
                           size_t len)
{
    size_t n = redis_names_has(&r->live_channels, channel, len) ? 1 : 0;

    for (size_t i = 0; i < r->live_patterns.count; i++) {
        const char *p = r->live_patterns.items[i];

        if (topic_glob_match(p, strlen(p), channel, len))
            n++;
    }
    return n;
}

static bool redis_same(const struct message *msg, const redisReply *channel,
                       const redisReply *payload)
{
    return msg->topic_len == channel->len &&
           msg->payload_len == payload->len &&
           memcmp(msg->topic, channel->str, channel->len) == 0 &&
           memcmp(msg->payload, payload->str, payload->len) == 0;
}

/*
 * Hot path: one call per "message"/"pmessage" reply.
 *
 * One upstream message is one event (SPEC 3.1), but for one PUBLISH Redis
 * sends a subscriber one reply per matching subscription: first the
 * channel's (if subscribed), then one per matching pattern, back to back
 * (Redis is single-threaded and writes them in one go). So, when a
 * message for channel C arrives, we count how many of our confirmed
 * subscriptions match C (live_channels / live_patterns are updated from
 * the server's own (un)subscribe confirmations, which arrive in order
 * with the messages, so the count is what the server used), deliver this
 * copy, and swallow the next count-1 replies carrying the same channel
 * and payload. Two identical PUBLISHes in a row therefore give two events:
 * the counting, not the content, decides. Should anything else arrive
 * while copies are still expected, the expectation was wrong and is
 * dropped, so one mistake never swallows later messages.
 *
 * To compare copies without copying bytes, we keep our own reference to
 * the delivered message (only its immutable topic and payload are read).
 * The sink call is the last thing done.
 */
static void redis_on_message(struct redis_impl *r, const redisReply *channel,
                             const redisReply *payload)
{
    struct source *src = r->src;
    struct message *msg;
    size_t copies;

    if (r->dup_left > 0) {
        if (redis_same(r->dup_msg, channel, payload)) {
            if (--r->dup_left == 0)
                redis_dedupe_clear(r);
            return;
        }
        redis_dedupe_clear(r);
    }
    copies = redis_copies(r, channel->str, channel->len);
    /* Over max_payload: counted, never copied. With several matching
     * subscriptions the copy is kept so that the repeats are recognised
     * and counted once (deliver then refuses it). */
    if (copies <= 1 && src->sink.too_large != NULL &&
        src->sink.too_large(src->sink.ctx, src, channel->str,
                            payload->len))
        return;
    msg = message_new(src->index, src->cfg->type, channel->str, channel->len,
                      payload->str, payload->len, redis_now_ms());
    if (msg == NULL) {
        log_error("source %s: out of memory, message dropped", redis_name(r));
        return;
    }
    if (copies > 1) {
        r->dup_msg = message_ref(msg);
        r->dup_left = copies - 1;
    }
    src->sink.deliver(src->sink.ctx, src, msg);
}

/* A (p)subscribe or (p)unsubscribe confirmation for `name`. */
static void redis_on_confirm(struct redis_impl *r, struct redis_names *set,
                             const redisReply *name, bool subscribed)
{
    if (!subscribed) {
        redis_names_remove(set, name->str, name->len);
        return;
    }
    if (redis_names_add(set, name->str, name->len) < 0)
        log_error("source %s: out of memory (duplicates may follow)",
                  redis_name(r));
    redis_conn_keepalive_answered(r->conn);
    if (redis_subscribing(r) && r->confirm_pending > 0 &&
        --r->confirm_pending == 0)
        redis_up(r);
}

static bool redis_is_string(const redisReply *rep)
{
    return rep->type == REDIS_REPLY_STRING;
}

/* Every reply routed by hiredis to a channel or pattern: messages and
 * (un)subscribe confirmations. */
static void redis_on_pubsub(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis_impl *r = redis_conn_owner(ac);
    redisReply *rep = reply;
    redisReply **e;
    const char *kind;

    if (r == NULL || rep == NULL || rep->type != REDIS_REPLY_ARRAY ||
        rep->elements < 3)
        return;
    e = rep->element;
    if (!redis_is_string(e[0]) || !redis_is_string(e[1]))
        return;
    kind = e[0]->str;
    if (strcasecmp(kind, "message") == 0 && redis_is_string(e[2]))
        redis_on_message(r, e[1], e[2]);
    else if (strcasecmp(kind, "pmessage") == 0 && rep->elements >= 4 &&
             redis_is_string(e[2]) && redis_is_string(e[3]))
        redis_on_message(r, e[2], e[3]);
    else if (strcasecmp(kind, "subscribe") == 0)
        redis_on_confirm(r, &r->live_channels, e[1], true);
    else if (strcasecmp(kind, "psubscribe") == 0)
        redis_on_confirm(r, &r->live_patterns, e[1], true);
    else if (strcasecmp(kind, "unsubscribe") == 0)
        redis_on_confirm(r, &r->live_channels, e[1], false);
    else if (strcasecmp(kind, "punsubscribe") == 0)
        redis_on_confirm(r, &r->live_patterns, e[1], false);
}
/* ---- adapter_ops ------------------------------------------------------- */

static const struct redis_conn_ops redis_conn_ops = {
    .ready = redis_on_ready,
    .lost = redis_on_lost,
    .keepalive = redis_keepalive,
};

/* Frees r and everything it owns, the connection included. */
static void redis_impl_free(struct redis_impl *r)
{
    redis_conn_free(r->conn);
    redis_dedupe_clear(r);
    redis_names_free(&r->live_channels);
    redis_names_free(&r->live_patterns);
    free(r);
}

/*
 * Parses the URL and starts the first connection attempt (the timeouts:
 * see redis_conn_new). 0, or -1 with why filled (nothing allocated stays
 * behind).
 */
static int redis_start(struct source *src, char *why, size_t whylen)
{
    struct redis_impl *r;

    if (src->impl) {
        snprintf(why, whylen, "source already started");
        return -1;
    }
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    r->src = src;
    r->conn = redis_conn_new(src, &redis_conn_ops, r, why, whylen);
    if (r->conn == NULL) {
        redis_impl_free(r);
        return -1;
    }
    src->impl = r;
    redis_conn_start(r->conn);
    return 0;
}

/* Drops the connection (no callback of it reaches the sink afterwards),
 * frees the impl. Idempotent. src->state is left as it was: the bridge
 * owns the source from here on. */
static void redis_stop(struct source *src)
{
    struct redis_impl *r = src->impl;

    if (r == NULL)
        return;
    src->impl = NULL;
    redis_impl_free(r);
}

/*
 * Sends the difference between the old and the new subscriptions; the
 * server's confirmations then update the live sets. While the handshake
 * is still subscribing, the new names join the confirmations UP waits
 * for. On a failure to queue, the connection is dropped: the reconnect
 * subscribes the new set from scratch. 0, or -1 in that case.
 */
static int redis_apply_diff(struct redis_impl *r,
                            const struct subscriptions *old,
                            const struct subscriptions *new)
{
    size_t added = 0, n = 0;

    if (redis_send_names(r, "SUBSCRIBE", &new->exact, &old->exact, &n) < 0)
        goto fail;
    added += n;
    if (redis_send_names(r, "PSUBSCRIBE", &new->patterns, &old->patterns,
                         &n) < 0)
        goto fail;
    added += n;
    if (redis_send_names(r, "UNSUBSCRIBE", &old->exact, &new->exact, &n) < 0 ||
        redis_send_names(r, "PUNSUBSCRIBE", &old->patterns, &new->patterns,
                         &n) < 0)
        goto fail;
    if (redis_subscribing(r))
        r->confirm_pending += added;
    return 0;
fail:
    redis_conn_fail(r->conn, "cannot queue the new subscriptions; "
                             "reconnecting");
    return -1;
}

/* Takes ownership of *subs' contents (and zeroes *subs). Connected and
 * past SELECT: applied at once; otherwise at the next connect. */
static int redis_resubscribe(struct source *src, struct subscriptions *subs)
{
    struct redis_impl *r = src->impl;
    struct subscriptions old = src->subs;
    int rc = 0;

    src->subs = *subs;
    memset(subs, 0, sizeof(*subs));
    if (r && redis_conn_is_ready(r->conn))
        rc = redis_apply_diff(r, &old, &src->subs);
    subscriptions_free(&old);
    return rc;
}

/* adapter_ops.configured: `channels` and `patterns`; either key, even
 * empty, turns derivation off. */
static int redis_configured(const struct source_config *cfg,
                            struct subscriptions *out)
{
    if (!cfg->have_channels && !cfg->have_patterns)
        return 0;
    if (config_strv_copy_unique(&out->exact, &cfg->channels) != 0 ||
        config_strv_copy_unique(&out->patterns, &cfg->patterns) != 0)
        return -1;
    return 1;
}

const struct adapter_ops redis_adapter_ops = {
    .type = "redis",
    .exact_verb = "SUBSCRIBE",
    .pattern_verb = "PSUBSCRIBE",
    .configured = redis_configured,
    .check_url = redis_conn_check_url,
    .start = redis_start,
    .stop = redis_stop,
    .resubscribe = redis_resubscribe,
};
