/*
 * redis_conn.h - one Redis connection on the bridge's loop: URL, connect,
 * AUTH, SELECT, liveness, reconnect.
 *
 * Shared by the Redis adapters: redis.c (pub/sub), redis_stream.c
 * (Streams) and redis_log.c (the replicas' shared log). A connection goes
 * through
 *
 *   IDLE --connect--> TCP --AUTH?--> AUTH --SELECT?--> SELECT
 *        --ready()--> READY (the owner's own handshake) --mark_up--> UP
 *
 * With a redis+sentinel://h1:26379,h2:26379/master[/db] URL every attempt
 * first asks a sentinel (in turn) where the master is (SENTINEL
 * get-master-addr-by-name), connects there, and checks with ROLE after
 * SELECT that it is still the master; so a failover (the old master
 * demoted: READONLY errors, UNBLOCKED reads, or a dropped connection)
 * ends in a reconnect that finds the new one.
 *
 * and back to IDLE on any failure, with lost() and a reconnect after
 * source_backoff_ms(attempt) (attempt resets once UP). The owner (the
 * adapter) gets ready() once the server has accepted AUTH and SELECT: it
 * then subscribes or starts reading and calls redis_conn_mark_up() when
 * that is confirmed. A handshake timer bounds TCP connect .. UP (a server
 * that accepts and never answers); while UP a keepalive, which the owner
 * may replace, bounds silence. The source state the bridge sees: DOWN
 * while IDLE or connecting, CONNECTING once TCP is up, UP after mark_up.
 *
 * Everything runs on src->base, in the bridge's one thread. Only the
 * Redis adapters include this header (it brings in hiredis).
 *
 * Reply callbacks of the owner's commands must start with
 * "owner = redis_conn_owner(ac); if (owner == NULL) return;": a dropped
 * context (after a failure or free) is detached first, and hiredis then
 * runs its pending callbacks with a NULL reply.
 */
#ifndef SLUICE_REDIS_CONN_H
#define SLUICE_REDIS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/async.h>

struct source;

/* Status texts are built in buffers of this size, then cut to fit
 * src->status. */
#define REDIS_CONN_TEXT_MAX 512

struct redis_conn;

/* What the owner plugs in. `owner` is the pointer given to
 * redis_conn_new. */
struct redis_conn_ops {
    /*
     * AUTH and SELECT are done: subscribe / start reading now, and call
     * redis_conn_mark_up once the server has confirmed it. Runs from the
     * loop (never from inside a hiredis connect callback), so it may call
     * redis_conn_fail.
     */
    void (*ready)(void *owner);
    /*
     * The connection is gone (a reconnect is being armed): forget what
     * belonged to it. Runs before the DOWN state reaches the sink; must
     * not call the sink or any redis_conn function.
     */
    void (*lost)(void *owner);
    /*
     * Optional. Sends one keepalive while UP: 1 when sent (the owner
     * calls redis_conn_keepalive_answered when its reply comes), 0 when
     * skipped this round, -1 when it could not be queued (the connection
     * is then dropped). NULL: a plain PING (redis_conn_ping).
     */
    int (*keepalive)(void *owner);
};

/*
 * Parses src->cfg->url (redis://[[user]:password@]host[:port][/db], or
 * redis+sentinel://[[user]:password@]host[:port][,...]/master[/db]) and
 * prepares the timers; connects nothing yet. The timeouts can be
 * shortened through the environment: SLUICE_REDIS_HANDSHAKE_MS (TCP
 * connect to UP, default 5000) and SLUICE_REDIS_KEEPALIVE_MS (interval,
 * default 15000; a keepalive must be answered within 2/3 of it).
 * Returns a new connection (free with redis_conn_free), or NULL with why
 * filled (never quoting the URL, which may hold a password).
 */
/* adapter_ops.check_url of both redis adapters: parses url as a
 * connection would. 0, or -1 with why filled (never quoting the URL). */
int redis_conn_check_url(const char *url, char *why, size_t whylen);

struct redis_conn *redis_conn_new(struct source *src,
                                  const struct redis_conn_ops *ops,
                                  void *owner, char *why, size_t whylen);

/* Sets the source DOWN ("connecting") and starts the first attempt. */
void redis_conn_start(struct redis_conn *conn);

/*
 * Drops the connection (no callback of it reaches the owner afterwards),
 * cancels the timers, wipes the password and frees conn. NULL is fine.
 * Not for use inside hiredis's connect or disconnect callbacks.
 */
void redis_conn_free(struct redis_conn *conn);

/* The hiredis context for the owner's commands, or NULL while not
 * connected. Owned by conn: never free it. */
redisAsyncContext *redis_conn_context(const struct redis_conn *conn);

/* In a reply callback: the owner of the connection ac belongs to, or NULL
 * when that connection has been dropped (ignore the reply then). */
void *redis_conn_owner(const redisAsyncContext *ac);

/* True from ready() on (also when UP), until the connection is lost. */
bool redis_conn_is_ready(const struct redis_conn *conn);

/* True after redis_conn_mark_up, until the connection is lost. */
bool redis_conn_is_up(const struct redis_conn *conn);

/* The owner's handshake is confirmed: stops the handshake timer, starts
 * the keepalive, resets the backoff and reports UP. */
void redis_conn_mark_up(struct redis_conn *conn);

/*
 * Drops the connection and schedules a reconnect; `status` (no secrets)
 * becomes the DOWN status. Callable from ready(), from reply callbacks
 * and from outside hiredis; the sink is called last, and the context is
 * gone when this returns.
 */
void redis_conn_fail(struct redis_conn *conn, const char *status);

/* Queues a PING whose reply counts as a keepalive answer. 1 when queued,
 * -1 when not (same convention as ops->keepalive). */
int redis_conn_ping(struct redis_conn *conn);

/* The server answered the pending keepalive (no-op when none is pending):
 * cancels its deadline and schedules the next one. */
void redis_conn_keepalive_answered(struct redis_conn *conn);

/* The keepalive interval in ms (for owners that time their own
 * commands). */
int64_t redis_conn_keepalive_ms(const struct redis_conn *conn);

/* A duration override in ms from the environment variable `name`, within
 * [min, max], or `def` when unset or invalid (logged). */
int64_t redis_conn_env_ms(const char *name, int64_t def, int64_t min,
                          int64_t max);

/* "host:port" of the server, for logs and status texts. */
const char *redis_conn_where(const struct redis_conn *conn);

/* A server error text safe to log: Redis's errors do not echo the
 * password, but should one ever contain it, a placeholder is returned. */
const char *redis_conn_error_text(const struct redis_conn *conn,
                                  const char *text);

#endif
