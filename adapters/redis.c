/*
 * redis.c - the Redis pub/sub adapter (type "redis"): SUBSCRIBE and
 * PSUBSCRIBE on one connection, every message handed to the bridge's sink.
 *
 * It drives hiredis 0.14's async API on the bridge's libevent loop
 * (redisLibeventAttach on src->base): nothing blocks, one thread. One
 * connection goes through these phases (enum redis_phase):
 *
 *   IDLE --connect--> TCP --AUTH?--> AUTH --SELECT?--> SELECT
 *        --(P)SUBSCRIBE--> SUBSCRIBING --all confirmed--> UP
 *
 * (with nothing to subscribe, SUBSCRIBING waits for a PING's answer)
 *
 * and back to IDLE on any failure, with a reconnect after
 * source_backoff_ms(attempt) (attempt resets once UP). A handshake timer
 * bounds TCP connect .. UP (a server that accepts and never answers), a
 * keepalive bounds silence while UP. The source state the bridge sees:
 * DOWN while IDLE or connecting, CONNECTING once TCP is up, UP once every
 * subscription is confirmed.
 *
 * hiredis rules this file depends on (async.c, 0.14.1):
 * - A context is freed by hiredis itself right after our connect callback
 *   reports failure and right after our disconnect callback returns.
 * - redisAsyncFree() may be called from a reply callback (the free is
 *   deferred until the callback returns) or from outside hiredis, but not
 *   from the connect or disconnect callbacks.
 * - Freeing a context runs every pending reply callback with a NULL reply
 *   and then the disconnect callback.
 * So a context we drop is first detached (ac->data = NULL, impl->ac =
 * NULL); every callback starts with "impl = ac->data; if NULL return", which
 * makes the callbacks of a dropped context harmless, also after stop().
 *
 * Keepalive: hiredis 0.14 cannot route the reply to a PING sent in
 * subscribed mode (["pong",""] is looked up as a pattern named "" and
 * dropped, and the PING's callback stays queued until the context is
 * freed: one leaked entry per PING). Instead, while subscribed, the
 * keepalive repeats SUBSCRIBE (or PSUBSCRIBE) of a name we already hold:
 * Redis answers with a confirmation and changes nothing, hiredis routes it
 * to our callback, and it needs no permission we do not already have.
 * With no subscriptions at all the connection is in normal mode and a
 * plain PING works.
 *
 * One upstream message is one event (SPEC 3.1): see redis_on_message.
 *
 * Known limit: redisAsyncConnect() resolves a host name with a blocking
 * getaddrinfo(); numeric addresses and /etc/hosts names do not wait on
 * the network. Async resolution (evdns) needs a resolver that outlives
 * the source, which struct source does not carry yet.
 *
 * The sink's callbacks must not call stop() on the same source: hiredis
 * cannot free a context from inside its connect callback.
 */
#include "adapters/adapter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/event.h>
#include <event2/http.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libevent.h>

#include "bridge/log.h"
#include "bridge/message.h"
#include "bridge/topic.h"

#define REDIS_ADAPTER_PORT 6379
#define REDIS_ADAPTER_HANDSHAKE_MS 5000
#define REDIS_ADAPTER_KEEPALIVE_MS 15000
/* Status texts are built here, then truncated to fit src->status. */
#define REDIS_ADAPTER_TEXT_MAX 512
#define REDIS_ADAPTER_TLS_WHY \
    "rediss:// (TLS) needs hiredis >= 1.0; Debian 12 ships 0.14"

enum redis_phase {
    REDIS_PHASE_IDLE,        /* no connection; a reconnect may be armed */
    REDIS_PHASE_TCP,         /* TCP connect in progress */
    REDIS_PHASE_AUTH,        /* AUTH sent */
    REDIS_PHASE_SELECT,      /* SELECT sent */
    REDIS_PHASE_SUBSCRIBING, /* (P)SUBSCRIBE sent, confirmations pending */
    REDIS_PHASE_UP,
};

/* Names the server has confirmed as subscribed. Scanned once per message,
 * so it stays a plain array (a source subscribes to a handful). */
struct redis_names {
    char **items; /* owned */
    size_t count;
    size_t cap;
};

struct redis_impl {
    struct source *src; /* the source that owns this impl */

    /* From the URL. */
    char *host;          /* without IPv6 brackets */
    int port;
    int db;
    char *user;          /* NULL: the default user */
    char *password;      /* NULL: no AUTH. Secret: never logged */
    char where[300];     /* "host:port" for logs and status */

    int64_t handshake_ms;
    int64_t keepalive_ms;       /* interval between keepalives */
    int64_t keepalive_reply_ms; /* how long a keepalive may go unanswered */

    redisAsyncContext *ac; /* NULL while IDLE; hiredis frees it (above) */
    enum redis_phase phase;
    unsigned attempt;       /* reconnect attempts since the last UP */
    size_t confirm_pending; /* SUBSCRIBING: confirmations still due */
    bool keepalive_pending;

    struct event *reconnect_timer;
    struct event *handshake_timer;
    struct event *keepalive_timer;
    struct event *reply_timer;

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

static void redis_timer_start(struct event *ev, int64_t ms)
{
    struct timeval tv = {.tv_sec = ms / 1000,
                         .tv_usec = (suseconds_t)(ms % 1000) * 1000};

    evtimer_add(ev, &tv);
}

static int64_t redis_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * A duration override from the environment (milliseconds, 1..3600000), or
 * `def` when unset or invalid. Used by the tests to shorten the handshake
 * timeout and the keepalive; operators may use it on slow links.
 */
static int64_t redis_env_ms(const char *name, int64_t def)
{
    const char *text = getenv(name);
    char *end;
    long long v;

    if (text == NULL || *text == '\0')
        return def;
    v = strtoll(text, &end, 10);
    if (*end != '\0' || v < 1 || v > 3600000) {
        log_warn("%s=%s is not a duration in ms (1..3600000); using %lld",
                 name, text, (long long)def);
        return def;
    }
    return v;
}

static bool redis_strv_has(const struct config_strv *v, const char *name)
{
    for (size_t i = 0; i < v->count; i++)
        if (strcmp(v->items[i], name) == 0)
            return true;
    return false;
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

/* ---- URL -------------------------------------------------------------- */

/* Percent-decodes `text` into a new string in *out. Refuses %00, which
 * would silently cut a password short. 0, or -1 with why filled. */
static int redis_url_decode(const char *text, char **out, const char *what,
                            char *why, size_t whylen)
{
    size_t len = 0;
    char *dec = evhttp_uridecode(text, 0, &len);

    if (dec == NULL) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    if (strlen(dec) != len) {
        free(dec);
        snprintf(why, whylen, "redis URL: the %s contains %%00", what);
        return -1;
    }
    *out = dec;
    return 0;
}

/*
 * Userinfo as redis-cli reads it: "user:password", ":password", or a bare
 * "password" (no colon). Both parts are percent-decoded.
 */
static int redis_url_userinfo(struct redis_impl *r, const char *userinfo,
                              char *why, size_t whylen)
{
    const char *colon = strchr(userinfo, ':');
    char *user = NULL;
    int rc;

    if (colon == NULL)
        return redis_url_decode(userinfo, &r->password, "password", why,
                                whylen);
    if (colon > userinfo) {
        user = strndup(userinfo, (size_t)(colon - userinfo));
        if (user == NULL) {
            snprintf(why, whylen, "out of memory");
            return -1;
        }
        rc = redis_url_decode(user, &r->user, "user", why, whylen);
        free(user);
        if (rc < 0)
            return -1;
    }
    return redis_url_decode(colon + 1, &r->password, "password", why, whylen);
}

/* The path: "" or "/" for db 0, "/N" for db N. 0, or -1 with why. */
static int redis_url_db(struct redis_impl *r, const char *path, char *why,
                        size_t whylen)
{
    char *end;
    long v;

    if (path == NULL || path[0] == '\0' || strcmp(path, "/") == 0)
        return 0;
    if (path[0] != '/' || path[1] < '0' || path[1] > '9')
        goto bad;
    v = strtol(path + 1, &end, 10);
    if (*end != '\0' || v > 1000000)
        goto bad;
    r->db = (int)v;
    return 0;
bad:
    snprintf(why, whylen, "redis URL: the path must be /DB, a number");
    return -1;
}

/* Host without IPv6 brackets, and the "host:port" label for messages. */
static int redis_url_host(struct redis_impl *r, const char *host, char *why,
                          size_t whylen)
{
    size_t len = strlen(host);
    bool v6 = len >= 2 && host[0] == '[' && host[len - 1] == ']';

    if (len == 0 || (v6 && len == 2)) {
        snprintf(why, whylen, "redis URL: no host");
        return -1;
    }
    r->host = v6 ? strndup(host + 1, len - 2) : strdup(host);
    if (r->host == NULL) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    snprintf(r->where, sizeof(r->where), v6 ? "[%s]:%d" : "%s:%d", r->host,
             r->port);
    return 0;
}

/*
 * Parses redis://[[user]:password@]host[:port][/db] into r, with libevent's
 * RFC 3986 parser. Messages in why never quote the URL (it may hold a
 * password). 0, or -1 with why filled.
 */
static int redis_url_parse(struct redis_impl *r, const char *url, char *why,
                           size_t whylen)
{
    struct evhttp_uri *uri;
    const char *userinfo;
    int rc = -1;

    if (strncasecmp(url, "rediss://", 9) == 0) {
        snprintf(why, whylen, REDIS_ADAPTER_TLS_WHY);
        return -1;
    }
    if (strncasecmp(url, "redis://", 8) != 0) {
        snprintf(why, whylen, "the URL of a redis source must start with "
                              "redis://");
        return -1;
    }
    uri = evhttp_uri_parse(url);
    if (uri == NULL) {
        snprintf(why, whylen, "malformed redis URL (a bad port, or a "
                              "character in the password that needs "
                              "%%-encoding?)");
        return -1;
    }
    if (evhttp_uri_get_query(uri) || evhttp_uri_get_fragment(uri)) {
        snprintf(why, whylen, "redis URL: no query or fragment allowed");
        goto out;
    }
    r->port = evhttp_uri_get_port(uri);
    if (r->port == -1)
        r->port = REDIS_ADAPTER_PORT;
    if (r->port == 0) {
        snprintf(why, whylen, "redis URL: port 0");
        goto out;
    }
    if (redis_url_host(r, evhttp_uri_get_host(uri), why, whylen) < 0 ||
        redis_url_db(r, evhttp_uri_get_path(uri), why, whylen) < 0)
        goto out;
    userinfo = evhttp_uri_get_userinfo(uri);
    if (userinfo && redis_url_userinfo(r, userinfo, why, whylen) < 0)
        goto out;
    rc = 0;
out:
    evhttp_uri_free(uri);
    return rc;
}

/* ---- connection lifecycle --------------------------------------------- */

static void redis_dedupe_clear(struct redis_impl *r)
{
    if (r->dup_msg)
        message_unref(r->dup_msg);
    r->dup_msg = NULL;
    r->dup_left = 0;
}

/* Forgets everything about the current connection except the context
 * itself (see redis_close). */
static void redis_reset(struct redis_impl *r)
{
    evtimer_del(r->handshake_timer);
    evtimer_del(r->keepalive_timer);
    evtimer_del(r->reply_timer);
    r->phase = REDIS_PHASE_IDLE;
    r->confirm_pending = 0;
    r->keepalive_pending = false;
    redis_names_clear(&r->live_channels);
    redis_names_clear(&r->live_patterns);
    redis_dedupe_clear(r);
}

/*
 * Detaches and frees the context, if any. Not for hiredis's connect or
 * disconnect callbacks (hiredis frees the context itself there); from a
 * reply callback the free is deferred by hiredis until it returns.
 */
static void redis_close(struct redis_impl *r)
{
    redisAsyncContext *ac = r->ac;

    if (ac == NULL)
        return;
    r->ac = NULL;
    ac->data = NULL;
    redisAsyncFree(ac);
}

/*
 * The connection is gone (r->ac already NULL): reset, arm the reconnect
 * timer, report DOWN with `status`. The first failure after being up (or
 * at start) is a warning, the retries that follow are debug noise. The
 * sink call comes last.
 */
static void redis_retry(struct redis_impl *r, const char *status)
{
    int64_t delay = source_backoff_ms(r->attempt);

    if (r->attempt == 0)
        log_warn("source %s: %s; retrying", redis_name(r), status);
    else
        log_debug("source %s: %s; retry %u in %lld ms", redis_name(r),
                  status, r->attempt, (long long)delay);
    if (r->attempt < 64)
        r->attempt++;
    redis_reset(r);
    redis_timer_start(r->reconnect_timer, delay);
    source_set_state(r->src, SOURCE_DOWN, status);
}

/* Drops the connection and schedules a reconnect. Not for the connect and
 * disconnect callbacks (see redis_close). */
static void redis_fail(struct redis_impl *r, const char *status)
{
    redis_close(r);
    redis_retry(r, status);
}

static void redis_up(struct redis_impl *r)
{
    r->phase = REDIS_PHASE_UP;
    r->attempt = 0;
    evtimer_del(r->handshake_timer);
    redis_timer_start(r->keepalive_timer, r->keepalive_ms);
    log_info("source %s: subscribed to %zu channel(s), %zu pattern(s)",
             redis_name(r), r->src->subs.exact.count,
             r->src->subs.patterns.count);
    source_set_state(r->src, SOURCE_UP, NULL);
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
    if (argc > 1 && redisAsyncCommandArgv(r->ac, redis_on_pubsub, NULL,
                                          (int)argc, argv, lens) != REDIS_OK)
        rc = -1;
    if (rc == 0)
        *sent = argc - 1;
out:
    free(argv);
    free(lens);
    return rc;
}

static void redis_on_handshake_reply(redisAsyncContext *ac, void *reply,
                                     void *priv);

/*
 * Last handshake step: SUBSCRIBE and PSUBSCRIBE everything. With nothing
 * to subscribe, a PING stands in, so that UP always means the server has
 * answered. A failure to queue is left to the handshake timer (this may
 * run inside the connect callback, where the context cannot be dropped).
 */
static void redis_subscribe_all(struct redis_impl *r)
{
    const struct subscriptions *subs = &r->src->subs;
    size_t channels = 0, patterns = 0;
    int rc;

    r->phase = REDIS_PHASE_SUBSCRIBING;
    rc = redis_send_names(r, "SUBSCRIBE", &subs->exact, NULL, &channels);
    if (rc == 0)
        rc = redis_send_names(r, "PSUBSCRIBE", &subs->patterns, NULL,
                              &patterns);
    if (rc == 0 && channels + patterns == 0)
        rc = redisAsyncCommand(r->ac, redis_on_handshake_reply, NULL,
                               "PING") == REDIS_OK ? 0 : -1;
    if (rc < 0) {
        log_error("source %s: cannot queue SUBSCRIBE", redis_name(r));
        return;
    }
    r->confirm_pending = channels + patterns;
}

/* Sends the next handshake command after r->phase: AUTH when there is a
 * password, SELECT when db != 0, then the subscriptions. */
static void redis_handshake_continue(struct redis_impl *r)
{
    const char *argv[3];
    size_t lens[3];
    int argc = 0;
    char db[16];

    if (r->phase < REDIS_PHASE_AUTH && r->password) {
        r->phase = REDIS_PHASE_AUTH;
        argv[argc++] = "AUTH";
        if (r->user)
            argv[argc++] = r->user;
        argv[argc++] = r->password;
    } else if (r->phase < REDIS_PHASE_SELECT && r->db != 0) {
        r->phase = REDIS_PHASE_SELECT;
        snprintf(db, sizeof(db), "%d", r->db);
        argv[argc++] = "SELECT";
        argv[argc++] = db;
    } else {
        redis_subscribe_all(r);
        return;
    }
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    /* On failure the handshake timer cleans up (see redis_subscribe_all). */
    if (redisAsyncCommandArgv(r->ac, redis_on_handshake_reply, NULL, argc,
                              argv, lens) != REDIS_OK)
        log_error("source %s: cannot queue %s", redis_name(r), argv[0]);
}

/* AUTH, SELECT, and the PING of a source with no subscriptions. */
static void redis_on_handshake_reply(redisAsyncContext *ac, void *reply,
                                     void *priv)
{
    struct redis_impl *r = ac->data;
    redisReply *rep = reply;
    char status[REDIS_ADAPTER_TEXT_MAX];
    const char *text;

    if (r == NULL || rep == NULL)
        return;
    if (rep->type != REDIS_REPLY_ERROR) {
        if (r->phase < REDIS_PHASE_SUBSCRIBING)
            redis_handshake_continue(r);
        else if (r->phase == REDIS_PHASE_SUBSCRIBING &&
                 r->confirm_pending == 0)
            redis_up(r);
        return;
    }
    /* Redis's errors do not echo the password; be sure anyway. */
    text = rep->str;
    if (r->password && *r->password && strstr(text, r->password))
        text = "(server error text withheld)";
    if (r->phase == REDIS_PHASE_SELECT)
        snprintf(status, sizeof(status), "SELECT %d failed: %s", r->db, text);
    else
        snprintf(status, sizeof(status), "%s failed: %s",
                 r->phase == REDIS_PHASE_AUTH ? "AUTH" : "PING", text);
    redis_fail(r, status); /* logs it */
}

static void redis_on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_impl *r = ac->data;
    char text[REDIS_ADAPTER_TEXT_MAX];

    if (r == NULL)
        return;
    if (status != REDIS_OK) {
        r->ac = NULL; /* hiredis frees it when we return */
        snprintf(text, sizeof(text), "cannot connect to %s: %s", r->where,
                 ac->errstr);
        redis_retry(r, text);
        return;
    }
    log_info("source %s: connected to %s", redis_name(r), r->where);
    source_set_state(r->src, SOURCE_CONNECTING, "connected, subscribing");
    redis_handshake_continue(r);
}

static void redis_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_impl *r = ac->data;
    char text[REDIS_ADAPTER_TEXT_MAX];

    if (r == NULL)
        return;
    r->ac = NULL; /* hiredis frees it when we return */
    if (ac->err)
        snprintf(text, sizeof(text), "connection to %s lost: %s", r->where,
                 ac->errstr);
    else
        snprintf(text, sizeof(text), "connection to %s lost", r->where);
    redis_retry(r, text);
}

/* Starts one connection attempt; a synchronous failure goes straight to
 * redis_retry. */
static void redis_connect(struct redis_impl *r)
{
    redisAsyncContext *ac = redisAsyncConnect(r->host, r->port);
    char text[REDIS_ADAPTER_TEXT_MAX];

    if (ac == NULL || ac->err ||
        redisLibeventAttach(ac, r->src->base) != REDIS_OK) {
        snprintf(text, sizeof(text), "cannot connect to %s: %s", r->where,
                 ac && ac->err ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        redis_retry(r, text);
        return;
    }
    ac->data = r;
    redisAsyncSetConnectCallback(ac, redis_on_connect);
    redisAsyncSetDisconnectCallback(ac, redis_on_disconnect);
    r->ac = ac;
    r->phase = REDIS_PHASE_TCP;
    redis_timer_start(r->handshake_timer, r->handshake_ms);
}

/* ---- timers ------------------------------------------------------------ */

static void redis_on_reconnect_timer(evutil_socket_t fd, short what,
                                     void *arg)
{
    redis_connect(arg);
}

static void redis_on_handshake_timer(evutil_socket_t fd, short what,
                                     void *arg)
{
    struct redis_impl *r = arg;
    char text[REDIS_ADAPTER_TEXT_MAX];

    snprintf(text, sizeof(text), "no answer from %s within %lld ms "
             "(handshake timeout)", r->where, (long long)r->handshake_ms);
    redis_fail(r, text);
}

static void redis_keepalive_answered(struct redis_impl *r)
{
    r->keepalive_pending = false;
    evtimer_del(r->reply_timer);
    redis_timer_start(r->keepalive_timer, r->keepalive_ms);
}

static void redis_on_ping_reply(redisAsyncContext *ac, void *reply,
                                void *priv)
{
    struct redis_impl *r = ac->data;

    if (r && reply && r->keepalive_pending)
        redis_keepalive_answered(r);
}

/*
 * Sends one keepalive (see the top comment for why it is not always a
 * PING). 1 when sent, 0 when skipped this round (the connection is
 * leaving subscribed mode: neither form would be answered reliably), -1
 * when it could not be queued.
 */
static int redis_send_keepalive(struct redis_impl *r)
{
    const struct subscriptions *subs = &r->src->subs;
    struct config_strv one = {0};
    const char *cmd = "SUBSCRIBE";
    size_t sent = 0;

    if (subs->exact.count > 0) {
        one.items = subs->exact.items;
    } else if (subs->patterns.count > 0) {
        one.items = subs->patterns.items;
        cmd = "PSUBSCRIBE";
    } else if (r->ac->c.flags & REDIS_SUBSCRIBED) {
        return 0;
    } else {
        return redisAsyncCommand(r->ac, redis_on_ping_reply, NULL, "PING") ==
                       REDIS_OK
                   ? 1
                   : -1;
    }
    one.count = 1;
    return redis_send_names(r, cmd, &one, NULL, &sent) == 0 ? 1 : -1;
}

static void redis_on_keepalive_timer(evutil_socket_t fd, short what,
                                     void *arg)
{
    struct redis_impl *r = arg;
    int rc;

    if (r->phase != REDIS_PHASE_UP || r->ac == NULL)
        return;
    rc = redis_send_keepalive(r);
    if (rc < 0) {
        redis_fail(r, "cannot queue the keepalive");
        return;
    }
    if (rc == 0) {
        redis_timer_start(r->keepalive_timer, r->keepalive_ms);
        return;
    }
    r->keepalive_pending = true;
    redis_timer_start(r->reply_timer, r->keepalive_reply_ms);
}

static void redis_on_reply_timer(evutil_socket_t fd, short what, void *arg)
{
    struct redis_impl *r = arg;
    char text[REDIS_ADAPTER_TEXT_MAX];

    snprintf(text, sizeof(text), "no reply from %s to a keepalive within "
             "%lld ms", r->where, (long long)r->keepalive_reply_ms);
    redis_fail(r, text);
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
    if (r->keepalive_pending)
        redis_keepalive_answered(r);
    if (r->phase == REDIS_PHASE_SUBSCRIBING && r->confirm_pending > 0 &&
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
    struct redis_impl *r = ac->data;
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

static void redis_impl_free(struct redis_impl *r)
{
    struct event *timers[] = {r->reconnect_timer, r->handshake_timer,
                              r->keepalive_timer, r->reply_timer};

    for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++)
        if (timers[i])
            event_free(timers[i]);
    redis_dedupe_clear(r);
    redis_names_free(&r->live_channels);
    redis_names_free(&r->live_patterns);
    if (r->password)
        explicit_bzero(r->password, strlen(r->password));
    free(r->password);
    free(r->user);
    free(r->host);
    free(r);
}

static int redis_timers_new(struct redis_impl *r, struct event_base *base)
{
    r->reconnect_timer = evtimer_new(base, redis_on_reconnect_timer, r);
    r->handshake_timer = evtimer_new(base, redis_on_handshake_timer, r);
    r->keepalive_timer = evtimer_new(base, redis_on_keepalive_timer, r);
    r->reply_timer = evtimer_new(base, redis_on_reply_timer, r);
    if (!r->reconnect_timer || !r->handshake_timer || !r->keepalive_timer ||
        !r->reply_timer)
        return -1;
    return 0;
}

/*
 * Parses the URL and starts the first connection attempt. The timeouts can
 * be shortened through the environment: SLUICE_REDIS_HANDSHAKE_MS (TCP
 * connect to UP, default 5000) and SLUICE_REDIS_KEEPALIVE_MS (interval,
 * default 15000; a keepalive must be answered within 2/3 of it).
 * 0, or -1 with why filled (nothing allocated stays behind).
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
    if (redis_url_parse(r, src->cfg->url, why, whylen) < 0)
        goto fail;
    if (redis_timers_new(r, src->base) < 0) {
        snprintf(why, whylen, "out of memory");
        goto fail;
    }
    r->handshake_ms = redis_env_ms("SLUICE_REDIS_HANDSHAKE_MS",
                                   REDIS_ADAPTER_HANDSHAKE_MS);
    r->keepalive_ms = redis_env_ms("SLUICE_REDIS_KEEPALIVE_MS",
                                   REDIS_ADAPTER_KEEPALIVE_MS);
    r->keepalive_reply_ms = r->keepalive_ms * 2 / 3;
    if (r->keepalive_reply_ms < 1)
        r->keepalive_reply_ms = 1;
    src->impl = r;
    source_set_state(src, SOURCE_DOWN, "connecting");
    redis_connect(r);
    return 0;
fail:
    redis_impl_free(r);
    return -1;
}

/* Cancels the timers, drops the connection (no callback of it reaches the
 * sink afterwards), frees the impl. Idempotent. src->state is left as it
 * was: the bridge owns the source from here on. */
static void redis_stop(struct source *src)
{
    struct redis_impl *r = src->impl;

    if (r == NULL)
        return;
    src->impl = NULL;
    redis_close(r);
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
    if (r->phase == REDIS_PHASE_SUBSCRIBING)
        r->confirm_pending += added;
    return 0;
fail:
    redis_fail(r, "cannot queue the new subscriptions; reconnecting");
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
    if (r && r->ac && r->phase >= REDIS_PHASE_SUBSCRIBING)
        rc = redis_apply_diff(r, &old, &src->subs);
    subscriptions_free(&old);
    return rc;
}

const struct adapter_ops redis_adapter_ops = {
    .type = "redis",
    .start = redis_start,
    .stop = redis_stop,
    .resubscribe = redis_resubscribe,
};
