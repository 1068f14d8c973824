/*
 * replica.h - running as one of several replicas that share one history
 * in Redis (history.redis).
 *
 * Without history.redis none of this runs: the history is local
 * (history_local.h). With it, the history is a history_key kept as a
 * shared log (lib/history_key.h) over the Redis Stream that
 * adapters/redis_log.c keeps, and the event path changes shape:
 *
 *   leader's adapter -> sink -> replica_deliver -> redis_log (fenced XADD)
 *   every replica's tail (XREAD) -> replica_on_entry -> history_append
 *       -> lastvalue, feeds (as bridge_sink_deliver does locally)
 *
 * so every replica, the leader included, fans out what the log holds, in
 * the log's order, with the log's ids. A source's adapter runs only on
 * the replica that holds its lease (started and stopped here).
 */
#ifndef SLUICE_REPLICA_H
#define SLUICE_REPLICA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bridge;
struct evbuffer;
struct message;
struct source;
struct subscriptions;

/* With history.redis: creates b->history (a shared log) and b->log
 * (not connected yet). 0, or -1 with err filled. */
int replica_open(struct bridge *b, char *err, size_t errlen);

/*
 * The upstream subscriptions source i has on this replica: all its routes
 * derive (upstream.h) when it leads the source (or the history is
 * local), else only per-key reading (no ingest). 0, or -1 on ENOMEM;
 * free with subscriptions_free.
 */
int replica_subscriptions(const struct bridge *b, uint32_t i,
                          struct subscriptions *out);

/* Starts connecting to the log (the sources start as leases come). */
void replica_start(struct bridge *b);

/* SIGTERM: stops ingesting and gives the leases up. */
void replica_release(struct bridge *b);

/* True when the leases are given up (local: always). */
bool replica_released(const struct bridge *b);

/* Frees b->log (before the history: its range reads end first). */
void replica_close(struct bridge *b);

/* The sink's deliver with a shared log: takes msg to the log. 0 when
 * queued, -1 when dropped. */
int replica_deliver(struct bridge *b, struct source *src,
                    struct message *msg);

/* sink.last_entry_id with a shared log: the stored read position. */
int replica_last_entry_id(struct bridge *b, struct source *src,
                          const char *key, char *out, size_t outlen);

/* True when streams can be served (the log is loaded; local: always). */
bool replica_ready(const struct bridge *b);

/* Source i is ingested: connected here, or (with a shared history) by the
 * replica that holds its lease. For /readyz and sluice_source_up. */
bool replica_source_up(const struct bridge *b, uint32_t i);

/*
 * Appends /readyz lines for the history and the sources; false when not
 * ready. Ready means: the history is up, and every source is up here or
 * ingested by another replica (so a publisher may start).
 */
bool replica_readyz(const struct bridge *b, struct evbuffer *body);

/* Appends the replica metrics (leaders, log state, drops). */
void replica_metrics(const struct bridge *b, struct evbuffer *out);

#endif
