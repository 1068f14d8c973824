/*
 * redis_conn.c - one Redis connection on the bridge's loop: URL, connect,
 * AUTH, SELECT, liveness, reconnect (see redis_conn.h for the phases and
 * the owner's part).
 *
 * It drives hiredis 0.14's async API on the bridge's libevent loop
 * (redisLibeventAttach on src->base): nothing blocks, one thread.
 *
 * hiredis rules this file depends on (async.c, 0.14.1):
 * - A context is freed by hiredis itself right after our connect callback
 *   reports failure and right after our disconnect callback returns.
 * - redisAsyncFree() may be called from a reply callback (the free is
 *   deferred until the callback returns) or from outside hiredis, but not
 *   from the connect or disconnect callbacks.
 * - Freeing a context runs every pending reply callback with a NULL reply
 *   and then the disconnect callback.
 * So a context we drop is first detached (ac->data = NULL, conn->ac =
 * NULL); every callback starts with "conn = ac->data; if NULL return",
 * which makes the callbacks of a dropped context harmless, also after
 * redis_conn_free(). The owner's ready() is run from a zero-delay timer,
 * never from the connect callback, so that it may drop the connection.
 *
 * Known limit: redisAsyncConnect() resolves a host name with a blocking
 * getaddrinfo(); numeric addresses and /etc/hosts names do not wait on
 * the network. Async resolution (evdns) needs a resolver that outlives
 * the source, which struct source does not carry yet.
 */
#include "adapters/redis_conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libevent.h>

#include "adapters/adapter.h"
#include "lib/url.h"
#include "lib/log.h"

#define REDIS_CONN_PORT 6379
#define REDIS_CONN_HANDSHAKE_MS 5000
#define REDIS_CONN_KEEPALIVE_MS 15000
#define REDIS_CONN_TLS_WHY \
    "rediss:// (TLS) needs hiredis >= 1.0; Debian 12 ships 0.14"

#define REDIS_CONN_SENTINEL_PORT 26379
#define REDIS_CONN_SENTINEL_RETRY_MS 1000 /* the longest retry delay */
#define REDIS_CONN_SENTINEL_SCHEME "redis+sentinel"

enum redis_conn_phase {
    REDIS_CONN_PHASE_IDLE,     /* no connection; a reconnect may be armed */
    REDIS_CONN_PHASE_SENTINEL, /* asking a sentinel for the master */
    REDIS_CONN_PHASE_TCP,      /* TCP connect in progress */
    REDIS_CONN_PHASE_AUTH,     /* AUTH sent */
    REDIS_CONN_PHASE_SELECT,   /* SELECT sent */
    REDIS_CONN_PHASE_ROLE,     /* ROLE sent (Sentinel: still the master?) */
    REDIS_CONN_PHASE_READY,    /* the owner's handshake */
    REDIS_CONN_PHASE_UP,
};

/* A sentinel's address. */
struct redis_conn_addr {
    char *host;
    int port;
    bool ipv6;
};

struct redis_conn {
    struct source *src;
    const struct redis_conn_ops *ops;
    void *owner;

    /* From the URL. */
    char *host;          /* without IPv6 brackets; with Sentinel, the
                            master's as the last sentinel asked said */
    int port;
    char *master_name;   /* redis+sentinel://: the master's name; else NULL */
    struct redis_conn_addr *sentinels; /* owned; nsentinels */
    size_t nsentinels;
    size_t next_sentinel;              /* asked at the next attempt */
    redisAsyncContext *sentinel_ac;    /* while asking; like ac */
    int db;
    char *user;          /* NULL: the default user */
    char *password;      /* NULL: no AUTH. Secret: never logged */
    char where[300];     /* "host:port" for logs and status */

    int64_t handshake_ms;
    int64_t keepalive_ms;       /* interval between keepalives */
    int64_t keepalive_reply_ms; /* how long a keepalive may go unanswered */

    redisAsyncContext *ac; /* NULL while IDLE; hiredis frees it (above) */
    enum redis_conn_phase phase;
    unsigned attempt;      /* reconnect attempts since the last UP */
    char logged[REDIS_CONN_TEXT_MAX]; /* last failure logged as a warning */
    bool keepalive_pending;

    struct event *reconnect_timer;
    struct event *handshake_timer;
    struct event *ready_timer;     /* zero delay: runs ops->ready */
    struct event *keepalive_timer;
    struct event *reply_timer;     /* deadline of the pending keepalive */
};

/* ---- small helpers ---------------------------------------------------- */

static const char *redis_conn_name(const struct redis_conn *conn)
{
    return conn->src->cfg->name;
}

static void redis_conn_timer_start(struct event *ev, int64_t ms)
{
    struct timeval tv = {.tv_sec = ms / 1000,
                         .tv_usec = (suseconds_t)(ms % 1000) * 1000};

    evtimer_add(ev, &tv);
}

/* Used by the tests to shorten the handshake timeout and the keepalive;
 * operators may use it on slow links. */
int64_t redis_conn_env_ms(const char *name, int64_t def, int64_t min,
                          int64_t max)
{
    const char *text = getenv(name);
    char *end;
    long long v;

    if (text == NULL || *text == '\0')
        return def;
    v = strtoll(text, &end, 10);
    if (*end != '\0' || v < min || v > max) {
        log_warn("%s=%s is not a duration in ms (%lld..%lld); using %lld",
                 name, text, (long long)min, (long long)max, (long long)def);
        return def;
    }
    return v;
}

/* ---- URL -------------------------------------------------------------- */

/* The path: "" or "/" for db 0, "/N" for db N. 0, or -1 with why. */
static int redis_conn_url_db(struct redis_conn *conn, const char *path,
                             char *why, size_t whylen)
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
    conn->db = (int)v;
    return 0;
bad:
    snprintf(why, whylen, "redis URL: the path must be /DB, a number");
    return -1;
}

/* Moves the URL's userinfo into conn, as redis-cli reads it:
 * "user:password", ":password", or a bare "password" (no colon). */
static void redis_conn_take_userinfo(struct redis_conn *conn, struct url *url)
{
    if (url->password != NULL) {
        conn->password = url->password;
        url->password = NULL;
        if (url->user != NULL && url->user[0] != '\0') {
            conn->user = url->user;
            url->user = NULL;
        }
    } else if (url->user != NULL) {
        conn->password = url->user;
        url->user = NULL;
    }
}

/* One sentinel address of a redis+sentinel URL ("host[:port]"; the first
 * may carry the userinfo, which is the master's). 0, or -1 with why. */
static int redis_conn_sentinel_add(struct redis_conn *conn, const char *item,
                                   bool first, char *why, size_t whylen)
{
    struct redis_conn_addr *a = &conn->sentinels[conn->nsentinels];
    struct url url;
    char one[512];
    int rc = -1;

    if (!first && strchr(item, '@') != NULL) {
        snprintf(why, whylen, "redis+sentinel URL: only the first address "
                              "may carry a password");
        return -1;
    }
    snprintf(one, sizeof(one), "redis://%s", item);
    if (url_parse(one, &url, why, whylen) < 0)
        goto out;
    if (url.path[0] != '\0') {
        snprintf(why, whylen, "redis+sentinel URL: a bad sentinel address");
        goto out;
    }
    redis_conn_take_userinfo(conn, &url);
    a->port = url.port != -1 ? url.port : REDIS_CONN_SENTINEL_PORT;
    a->ipv6 = url.ipv6;
    a->host = url.host;
    url.host = NULL;
    conn->nsentinels++;
    rc = 0;
out:
    explicit_bzero(one, sizeof(one));
    url_clear(&url);
    return rc;
}

/* The path of a sentinel URL: "/master" or "/master/db". */
static int redis_conn_sentinel_path(struct redis_conn *conn,
                                    const char *path, char *why,
                                    size_t whylen)
{
    const char *name = path + 1, *db = strchr(name, '/');
    size_t len = db != NULL ? (size_t)(db - name) : strlen(name);

    if (len == 0 || len > 128 || strspn(name, "/") > 0) {
        snprintf(why, whylen, "redis+sentinel URL: the path must be "
                              "/MASTER or /MASTER/DB");
        return -1;
    }
    if ((conn->master_name = strndup(name, len)) == NULL) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    return redis_conn_url_db(conn, db, why, whylen);
}

/*
 * Parses redis+sentinel://[userinfo@]host[:port][,host[:port]...]/master[/db]:
 * each sentinel with the strict URL parser, as a redis:// URL of its own
 * (a ',' in a password must be percent-encoded). The master's address
 * comes from a sentinel at each connect. 0, or -1 with why.
 */
static int redis_conn_sentinel_url_parse(struct redis_conn *conn,
                                         const char *text, char *why,
                                         size_t whylen)
{
    const char *rest = text + strlen(REDIS_CONN_SENTINEL_SCHEME "://");
    const char *slash = strchr(rest, '/');
    char *hosts = NULL, *item, *save = NULL;
    size_t n = 1;
    int rc = -1;

    if (slash == NULL) {
        snprintf(why, whylen, "redis+sentinel URL: the path must be "
                              "/MASTER or /MASTER/DB");
        return -1;
    }
    for (const char *p = rest; p < slash; p++)
        n += *p == ',';
    conn->sentinels = calloc(n, sizeof(*conn->sentinels));
    hosts = strndup(rest, (size_t)(slash - rest));
    if (conn->sentinels == NULL || hosts == NULL) {
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    for (item = strtok_r(hosts, ",", &save); item != NULL;
         item = strtok_r(NULL, ",", &save))
        if (redis_conn_sentinel_add(conn, item, conn->nsentinels == 0, why,
                                    whylen) < 0)
            goto out;
    if (conn->nsentinels != n) {
        snprintf(why, whylen, "redis+sentinel URL: an empty sentinel "
                              "address");
        goto out;
    }
    if (redis_conn_sentinel_path(conn, slash, why, whylen) < 0)
        goto out;
    snprintf(conn->where, sizeof(conn->where), "master %s (via sentinel)",
             conn->master_name);
    rc = 0;
out:
    if (hosts != NULL) {
        explicit_bzero(hosts, strlen(hosts));
        free(hosts);
    }
    return rc;
}

/*
 * Parses redis://[[user]:password@]host[:port][/db] into conn with the one
 * broker URL parser (lib/url.h). Userinfo as redis-cli reads it:
 * "user:password", ":password", or a bare "password" (no colon). Messages
 * in why never quote the URL (it may hold a password). 0, or -1 with why.
 */
static int redis_conn_url_parse(struct redis_conn *conn, const char *text,
                                char *why, size_t whylen)
{
    struct url url;
    int rc = -1;

    memset(&url, 0, sizeof(url));
    if (strncmp(text, REDIS_CONN_SENTINEL_SCHEME "://",
                strlen(REDIS_CONN_SENTINEL_SCHEME "://")) == 0)
        return redis_conn_sentinel_url_parse(conn, text, why, whylen);
    if (url_parse(text, &url, why, whylen) < 0)
        goto out;
    if (strcmp(url.scheme, "rediss") == 0) {
        snprintf(why, whylen, REDIS_CONN_TLS_WHY);
        goto out;
    }
    if (strcmp(url.scheme, "redis") != 0) {
        snprintf(why, whylen, "the URL of a redis source must start with "
                              "redis://");
        goto out;
    }
    if (redis_conn_url_db(conn, url.path, why, whylen) < 0)
        goto out;
    conn->port = url.port != -1 ? url.port : REDIS_CONN_PORT;
    snprintf(conn->where, sizeof(conn->where),
             url.ipv6 ? "[%s]:%d" : "%s:%d", url.host, conn->port);
    /* Moved, not copied: url_clear frees (and wipes) what is left. */
    conn->host = url.host;
    url.host = NULL;
    redis_conn_take_userinfo(conn, &url);
    rc = 0;
out:
    url_clear(&url);
    return rc;
}

/* Frees what the URL put into conn, wiping the password. */
static void redis_conn_url_clear(struct redis_conn *conn)
{
    if (conn->password != NULL)
        explicit_bzero(conn->password, strlen(conn->password));
    free(conn->password);
    free(conn->user);
    free(conn->host);
    free(conn->master_name);
    for (size_t i = 0; i < conn->nsentinels; i++)
        free(conn->sentinels[i].host);
    free(conn->sentinels);
}

int redis_conn_check_url(const char *url, char *why, size_t whylen)
{
    struct redis_conn conn;
    int rc;

    memset(&conn, 0, sizeof(conn));
    rc = redis_conn_url_parse(&conn, url, why, whylen);
    redis_conn_url_clear(&conn);
    return rc;
}

/* ---- connection lifecycle --------------------------------------------- */

/* Forgets everything about the current connection except the context
 * itself (see redis_conn_close), the owner's part included. */
static void redis_conn_reset(struct redis_conn *conn)
{
    evtimer_del(conn->handshake_timer);
    evtimer_del(conn->ready_timer);
    evtimer_del(conn->keepalive_timer);
    evtimer_del(conn->reply_timer);
    conn->phase = REDIS_CONN_PHASE_IDLE;
    conn->keepalive_pending = false;
    conn->ops->lost(conn->owner);
}

/*
 * Detaches and frees the context, if any. Not for hiredis's connect or
 * disconnect callbacks (hiredis frees the context itself there); from a
 * reply callback the free is deferred by hiredis until it returns.
 */
static void redis_conn_close(struct redis_conn *conn)
{
    redisAsyncContext *ac = conn->ac;
    redisAsyncContext *sac = conn->sentinel_ac;

    conn->sentinel_ac = NULL;
    if (sac != NULL) {
        sac->data = NULL;
        redisAsyncFree(sac);
    }
    if (ac == NULL)
        return;
    conn->ac = NULL;
    ac->data = NULL;
    redisAsyncFree(ac);
}

/*
 * The connection is gone (conn->ac already NULL): reset, arm the reconnect
 * timer, report DOWN with `status`. The first failure after being up (or
 * at start) is a warning, the retries that follow are debug noise. The
 * sink call comes last.
 */
static void redis_conn_retry(struct redis_conn *conn, const char *status)
{
    int64_t delay = source_backoff_ms(conn->attempt);

    /* With Sentinel a retry asks a sentinel first, which is cheap, and a
     * failover is over in seconds: do not sleep through it. */
    if (conn->master_name != NULL && delay > REDIS_CONN_SENTINEL_RETRY_MS)
        delay = REDIS_CONN_SENTINEL_RETRY_MS / 2 +
                delay % (REDIS_CONN_SENTINEL_RETRY_MS / 2);

    /* A new reason is a state change worth a warning; the same reason
     * again (a server that keeps refusing) is debug noise. */
    if (conn->attempt == 0 || strcmp(conn->logged, status) != 0)
        log_warn("source %s: %s; retrying", redis_conn_name(conn), status);
    else
        log_debug("source %s: %s; retry %u in %lld ms", redis_conn_name(conn),
                  status, conn->attempt, (long long)delay);
    snprintf(conn->logged, sizeof(conn->logged), "%s", status);
    if (conn->attempt < 64)
        conn->attempt++;
    redis_conn_reset(conn);
    redis_conn_timer_start(conn->reconnect_timer, delay);
    source_set_state(conn->src, SOURCE_DOWN, status);
}

void redis_conn_fail(struct redis_conn *conn, const char *status)
{
    redis_conn_close(conn);
    redis_conn_retry(conn, status);
}

void redis_conn_mark_up(struct redis_conn *conn)
{
    /* "connected" only now that AUTH, SELECT and the owner's handshake
     * (SUBSCRIBE, XREAD) have succeeded: the source is usable. */
    if (conn->phase != REDIS_CONN_PHASE_UP)
        log_info("source %s: connected to %s", redis_conn_name(conn),
                 conn->where);
    conn->logged[0] = '\0';
    conn->phase = REDIS_CONN_PHASE_UP;
    conn->attempt = 0;
    evtimer_del(conn->handshake_timer);
    redis_conn_timer_start(conn->keepalive_timer, conn->keepalive_ms);
    source_set_state(conn->src, SOURCE_UP, NULL);
}

static void redis_conn_on_handshake_reply(redisAsyncContext *ac, void *reply,
                                          void *priv);

/* Sends the next handshake command after conn->phase: AUTH when there is
 * a password, SELECT when db != 0; after both, schedules ops->ready. */
static void redis_conn_handshake_continue(struct redis_conn *conn)
{
    const char *argv[3];
    size_t lens[3];
    int argc = 0;
    char db[16];

    if (conn->phase < REDIS_CONN_PHASE_AUTH && conn->password) {
        conn->phase = REDIS_CONN_PHASE_AUTH;
        argv[argc++] = "AUTH";
        if (conn->user)
            argv[argc++] = conn->user;
        argv[argc++] = conn->password;
    } else if (conn->phase < REDIS_CONN_PHASE_SELECT && conn->db != 0) {
        conn->phase = REDIS_CONN_PHASE_SELECT;
        snprintf(db, sizeof(db), "%d", conn->db);
        argv[argc++] = "SELECT";
        argv[argc++] = db;
    } else if (conn->phase < REDIS_CONN_PHASE_ROLE &&
               conn->master_name != NULL) {
        /* What a sentinel named may have been demoted since. */
        conn->phase = REDIS_CONN_PHASE_ROLE;
        argv[argc++] = "ROLE";
    } else {
        redis_conn_timer_start(conn->ready_timer, 0);
        return;
    }
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    /* This may run inside the connect callback, where the context cannot
     * be dropped: a failure to queue is left to the handshake timer. */
    if (redisAsyncCommandArgv(conn->ac, redis_conn_on_handshake_reply, NULL,
                              argc, argv, lens) != REDIS_OK)
        log_error("source %s: cannot queue %s", redis_conn_name(conn),
                  argv[0]);
}

const char *redis_conn_error_text(const struct redis_conn *conn,
                                  const char *text)
{
    if (conn->password && *conn->password && strstr(text, conn->password))
        return "(server error text withheld)";
    return text;
}

/* The replies to AUTH and SELECT. */
static void redis_conn_on_handshake_reply(redisAsyncContext *ac, void *reply,
                                          void *priv)
{
    struct redis_conn *conn = ac->data;
    redisReply *rep = reply;
    char status[REDIS_CONN_TEXT_MAX];
    const char *text;

    if (conn == NULL || rep == NULL)
        return;
    if (conn->phase == REDIS_CONN_PHASE_ROLE &&
        (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
         rep->element[0]->type != REDIS_REPLY_STRING ||
         strcmp(rep->element[0]->str, "master") != 0)) {
        snprintf(status, sizeof(status), "%s is not the master of %s (yet)",
                 conn->where, conn->master_name);
        redis_conn_fail(conn, status);
        return;
    }
    if (rep->type != REDIS_REPLY_ERROR) {
        redis_conn_handshake_continue(conn);
        return;
    }
    text = redis_conn_error_text(conn, rep->str);
    if (conn->phase == REDIS_CONN_PHASE_ROLE)
        snprintf(status, sizeof(status), "ROLE failed: %s", text);
    else if (conn->phase == REDIS_CONN_PHASE_SELECT)
        snprintf(status, sizeof(status), "SELECT %d failed: %s", conn->db,
                 text);
    else
        snprintf(status, sizeof(status), "AUTH failed: %s", text);
    redis_conn_fail(conn, status); /* logs it */
}

static void redis_conn_on_connect(const redisAsyncContext *ac, int status)
{
    struct redis_conn *conn = ac->data;
    char text[REDIS_CONN_TEXT_MAX];

    if (conn == NULL)
        return;
    if (status != REDIS_OK) {
        conn->ac = NULL; /* hiredis frees it when we return */
        snprintf(text, sizeof(text), "cannot connect to %s: %s", conn->where,
                 ac->errstr);
        redis_conn_retry(conn, text);
        return;
    }
    log_debug("source %s: TCP connection to %s open; handshake next",
              redis_conn_name(conn), conn->where);
    source_set_state(conn->src, SOURCE_CONNECTING, "connected, subscribing");
    redis_conn_handshake_continue(conn);
}

static void redis_conn_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redis_conn *conn = ac->data;
    char text[REDIS_CONN_TEXT_MAX];

    if (conn == NULL)
        return;
    conn->ac = NULL; /* hiredis frees it when we return */
    if (ac->err)
        snprintf(text, sizeof(text), "connection to %s lost: %s", conn->where,
                 ac->errstr);
    else
        snprintf(text, sizeof(text), "connection to %s lost", conn->where);
    redis_conn_retry(conn, text);
}

/* Starts connecting to the server (the master, with Sentinel); a
 * synchronous failure goes straight to redis_conn_retry. */
static void redis_conn_connect_server(struct redis_conn *conn)
{
    redisAsyncContext *ac = redisAsyncConnect(conn->host, conn->port);
    char text[REDIS_CONN_TEXT_MAX];

    if (ac == NULL || ac->err ||
        redisLibeventAttach(ac, conn->src->base) != REDIS_OK) {
        snprintf(text, sizeof(text), "cannot connect to %s: %s", conn->where,
                 ac && ac->err ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        redis_conn_retry(conn, text);
        return;
    }
    ac->data = conn;
    redisAsyncSetConnectCallback(ac, redis_conn_on_connect);
    redisAsyncSetDisconnectCallback(ac, redis_conn_on_disconnect);
    conn->ac = ac;
    if (conn->phase != REDIS_CONN_PHASE_SENTINEL)
        redis_conn_timer_start(conn->handshake_timer, conn->handshake_ms);
    conn->phase = REDIS_CONN_PHASE_TCP;
}

/* ---- Sentinel ------------------------------------------------------------- */

/* The sentinel asked this time; the next attempt asks the next one. */
static const struct redis_conn_addr *redis_conn_sentinel(struct redis_conn *conn)
{
    return &conn->sentinels[conn->next_sentinel % conn->nsentinels];
}

/* The sentinel failed us: drop its context, try the next one later. */
static void redis_conn_sentinel_fail(struct redis_conn *conn,
                                     const char *what)
{
    const struct redis_conn_addr *a = redis_conn_sentinel(conn);
    char text[REDIS_CONN_TEXT_MAX];

    snprintf(text, sizeof(text), a->ipv6 ? "sentinel [%s]:%d: %s"
                                         : "sentinel %s:%d: %s",
             a->host, a->port, what);
    conn->next_sentinel++;
    redis_conn_fail(conn, text);
}

/* +switch-master on the sentinel: "name old-ip old-port new-ip new-port".
 * A failover of our master drops the connection; the reconnect asks a
 * sentinel again. (The subscribe confirmation comes here too.) */
static void redis_conn_on_switch(redisAsyncContext *ac, void *reply,
                                 void *priv)
{
    struct redis_conn *conn = ac->data;
    redisReply *rep = reply;
    const redisReply *text;
    size_t len;
    char status[REDIS_CONN_TEXT_MAX];

    if (conn == NULL || rep == NULL || rep->type != REDIS_REPLY_ARRAY ||
        rep->elements != 3 || rep->element[2]->type != REDIS_REPLY_STRING)
        return;
    text = rep->element[2];
    len = strlen(conn->master_name);
    if (text->len <= len || memcmp(text->str, conn->master_name, len) != 0 ||
        text->str[len] != ' ')
        return;
    snprintf(status, sizeof(status), "sentinel: master %s failed over",
             conn->master_name);
    redis_conn_fail(conn, status);
}

/* SENTINEL get-master-addr-by-name: [host, port], or nil for a name the
 * sentinel does not know. */
static void redis_conn_on_master_addr(redisAsyncContext *ac, void *reply,
                                      void *priv)
{
    struct redis_conn *conn = ac->data;
    redisReply *rep = reply;
    char *host;
    long port;

    if (conn == NULL || rep == NULL)
        return;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[1]->type != REDIS_REPLY_STRING) {
        redis_conn_sentinel_fail(conn, "does not know the master");
        return;
    }
    port = strtol(rep->element[1]->str, NULL, 10);
    if (port < 1 || port > 65535 ||
        (host = strdup(rep->element[0]->str)) == NULL) {
        redis_conn_sentinel_fail(conn, "gave no usable address");
        return;
    }
    /* The sentinel connection stays, to hear of the next failover. */
    if (redisAsyncCommand(ac, redis_conn_on_switch, NULL,
                          "SUBSCRIBE +switch-master") != REDIS_OK) {
        free(host);
        redis_conn_sentinel_fail(conn, "cannot subscribe to +switch-master");
        return;
    }
    free(conn->host);
    conn->host = host;
    conn->port = (int)port;
    snprintf(conn->where, sizeof(conn->where),
             strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, conn->port);
    redis_conn_connect_server(conn);
}

static void redis_conn_on_sentinel_connect(const redisAsyncContext *ac,
                                           int status)
{
    struct redis_conn *conn = ac->data;

    if (conn == NULL)
        return;
    if (status != REDIS_OK) {
        conn->sentinel_ac = NULL; /* hiredis frees it when we return */
        conn->next_sentinel++;
        redis_conn_retry(conn, "cannot reach a sentinel");
    }
}

/* The sentinel went away, before answering or while watching for a
 * failover: start over (with the next one), the server connection too. */
static void redis_conn_on_sentinel_disconnect(const redisAsyncContext *ac,
                                              int status)
{
    struct redis_conn *conn = ac->data;

    if (conn == NULL)
        return;
    conn->sentinel_ac = NULL; /* hiredis frees it when we return */
    conn->next_sentinel++;
    redis_conn_fail(conn, "lost the connection to a sentinel");
}

/* Asks a sentinel where the master is; its answer connects there. */
static void redis_conn_ask_sentinel(struct redis_conn *conn)
{
    const struct redis_conn_addr *a = redis_conn_sentinel(conn);
    redisAsyncContext *ac = redisAsyncConnect(a->host, a->port);

    conn->phase = REDIS_CONN_PHASE_SENTINEL;
    redis_conn_timer_start(conn->handshake_timer, conn->handshake_ms);
    if (ac == NULL || ac->err ||
        redisLibeventAttach(ac, conn->src->base) != REDIS_OK) {
        if (ac)
            redisAsyncFree(ac);
        conn->next_sentinel++;
        redis_conn_retry(conn, "cannot connect to a sentinel");
        return;
    }
    ac->data = conn;
    redisAsyncSetConnectCallback(ac, redis_conn_on_sentinel_connect);
    redisAsyncSetDisconnectCallback(ac, redis_conn_on_sentinel_disconnect);
    conn->sentinel_ac = ac;
    if (redisAsyncCommand(ac, redis_conn_on_master_addr, NULL,
                          "SENTINEL get-master-addr-by-name %s",
                          conn->master_name) != REDIS_OK)
        log_error("source %s: cannot queue SENTINEL", redis_conn_name(conn));
}

/* Starts one connection attempt. */
static void redis_conn_connect(struct redis_conn *conn)
{
    if (conn->master_name != NULL)
        redis_conn_ask_sentinel(conn);
    else
        redis_conn_connect_server(conn);
}

/* ---- timers ------------------------------------------------------------ */

static void redis_conn_on_reconnect_timer(evutil_socket_t fd, short what,
                                          void *arg)
{
    redis_conn_connect(arg);
}

static void redis_conn_on_handshake_timer(evutil_socket_t fd, short what,
                                          void *arg)
{
    struct redis_conn *conn = arg;
    char text[REDIS_CONN_TEXT_MAX];

    if (conn->phase == REDIS_CONN_PHASE_SENTINEL)
        conn->next_sentinel++; /* a silent sentinel: ask another */
    snprintf(text, sizeof(text), "no answer from %s within %lld ms "
             "(handshake timeout)", conn->where,
             (long long)conn->handshake_ms);
    redis_conn_fail(conn, text);
}

static void redis_conn_on_ready_timer(evutil_socket_t fd, short what,
                                      void *arg)
{
    struct redis_conn *conn = arg;

    if (conn->ac == NULL)
        return;
    conn->phase = REDIS_CONN_PHASE_READY;
    conn->ops->ready(conn->owner);
}

void redis_conn_keepalive_answered(struct redis_conn *conn)
{
    if (!conn->keepalive_pending)
        return;
    conn->keepalive_pending = false;
    evtimer_del(conn->reply_timer);
    redis_conn_timer_start(conn->keepalive_timer, conn->keepalive_ms);
}

static void redis_conn_on_ping_reply(redisAsyncContext *ac, void *reply,
                                     void *priv)
{
    struct redis_conn *conn = ac->data;

    if (conn && reply)
        redis_conn_keepalive_answered(conn);
}

int redis_conn_ping(struct redis_conn *conn)
{
    return redisAsyncCommand(conn->ac, redis_conn_on_ping_reply, NULL,
                             "PING") == REDIS_OK
               ? 1
               : -1;
}

static void redis_conn_on_keepalive_timer(evutil_socket_t fd, short what,
                                          void *arg)
{
    struct redis_conn *conn = arg;
    int rc;

    if (conn->phase != REDIS_CONN_PHASE_UP || conn->ac == NULL)
        return;
    if (conn->ops->keepalive)
        rc = conn->ops->keepalive(conn->owner);
    else
        rc = redis_conn_ping(conn);
    if (rc < 0) {
        redis_conn_fail(conn, "cannot queue the keepalive");
        return;
    }
    if (rc == 0) {
        redis_conn_timer_start(conn->keepalive_timer, conn->keepalive_ms);
        return;
    }
    conn->keepalive_pending = true;
    redis_conn_timer_start(conn->reply_timer, conn->keepalive_reply_ms);
}

static void redis_conn_on_reply_timer(evutil_socket_t fd, short what,
                                      void *arg)
{
    struct redis_conn *conn = arg;
    char text[REDIS_CONN_TEXT_MAX];

    snprintf(text, sizeof(text), "no reply from %s to a keepalive within "
             "%lld ms", conn->where, (long long)conn->keepalive_reply_ms);
    redis_conn_fail(conn, text);
}

/* ---- the public part -------------------------------------------------- */

static int redis_conn_timers_new(struct redis_conn *conn,
                                 struct event_base *base)
{
    conn->reconnect_timer =
        evtimer_new(base, redis_conn_on_reconnect_timer, conn);
    conn->handshake_timer =
        evtimer_new(base, redis_conn_on_handshake_timer, conn);
    conn->ready_timer = evtimer_new(base, redis_conn_on_ready_timer, conn);
    conn->keepalive_timer =
        evtimer_new(base, redis_conn_on_keepalive_timer, conn);
    conn->reply_timer = evtimer_new(base, redis_conn_on_reply_timer, conn);
    if (!conn->reconnect_timer || !conn->handshake_timer ||
        !conn->ready_timer || !conn->keepalive_timer || !conn->reply_timer)
        return -1;
    return 0;
}

struct redis_conn *redis_conn_new(struct source *src,
                                  const struct redis_conn_ops *ops,
                                  void *owner, char *why, size_t whylen)
{
    struct redis_conn *conn = calloc(1, sizeof(*conn));

    if (conn == NULL) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    conn->src = src;
    conn->ops = ops;
    conn->owner = owner;
    if (redis_conn_url_parse(conn, src->cfg->url, why, whylen) < 0)
        goto fail;
    if (redis_conn_timers_new(conn, src->base) < 0) {
        snprintf(why, whylen, "out of memory");
        goto fail;
    }
    conn->handshake_ms = redis_conn_env_ms("SLUICE_REDIS_HANDSHAKE_MS",
                                           REDIS_CONN_HANDSHAKE_MS, 1,
                                           3600000);
    conn->keepalive_ms = redis_conn_env_ms("SLUICE_REDIS_KEEPALIVE_MS",
                                           REDIS_CONN_KEEPALIVE_MS, 1,
                                           3600000);
    conn->keepalive_reply_ms = conn->keepalive_ms * 2 / 3;
    if (conn->keepalive_reply_ms < 1)
        conn->keepalive_reply_ms = 1;
    return conn;
fail:
    redis_conn_free(conn);
    return NULL;
}

void redis_conn_start(struct redis_conn *conn)
{
    source_set_state(conn->src, SOURCE_DOWN, "connecting");
    redis_conn_connect(conn);
}

void redis_conn_free(struct redis_conn *conn)
{
    struct event *timers[5];

    if (conn == NULL)
        return;
    redis_conn_close(conn);
    timers[0] = conn->reconnect_timer;
    timers[1] = conn->handshake_timer;
    timers[2] = conn->ready_timer;
    timers[3] = conn->keepalive_timer;
    timers[4] = conn->reply_timer;
    for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++)
        if (timers[i])
            event_free(timers[i]);
    redis_conn_url_clear(conn);
    free(conn);
}

redisAsyncContext *redis_conn_context(const struct redis_conn *conn)
{
    return conn->ac;
}

void *redis_conn_owner(const redisAsyncContext *ac)
{
    const struct redis_conn *conn = ac->data;

    return conn ? conn->owner : NULL;
}

bool redis_conn_is_ready(const struct redis_conn *conn)
{
    return conn->ac != NULL && conn->phase >= REDIS_CONN_PHASE_READY;
}

bool redis_conn_is_up(const struct redis_conn *conn)
{
    return conn->ac != NULL && conn->phase == REDIS_CONN_PHASE_UP;
}

int64_t redis_conn_keepalive_ms(const struct redis_conn *conn)
{
    return conn->keepalive_ms;
}

const char *redis_conn_where(const struct redis_conn *conn)
{
    return conn->where;
}
