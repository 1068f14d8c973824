/*
 * redis_log.h - the log that replicas share (history.redis): one Redis
 * Stream that every event of every source is appended to once, and that
 * every replica reads.
 *
 * Keys, under the prefix P (history.key, default "sluice"):
 *
 *   P:log           the Stream; its entry ids are the events' positions
 *   P:meta          hash: "tag", the log's random name (see below);
 *                   "seq", the count of entries ever appended
 *   P:lease:SOURCE  the ingest lease of a source: a replica's token, PX ttl
 *   P:epoch:SOURCE  counts the leases ever taken (fences stale buffers)
 *   P:pos:SOURCE    hash: what that source appended last: ".n" the append
 *                   counter, and per redis-stream key the last entry id
 *
 * Two connections on the bridge's loop (redis_conn.h): the tail reads the
 * log (XREVRANGE to load, then XREAD BLOCK from the last id read) and
 * hands every entry to sink.entry in order; the command connection keeps
 * the leases, appends and answers range reads.
 *
 * Ingest: for each source one replica at a time holds the lease and runs
 * the source's adapter. It renews the lease every ttl/3. Its messages go
 * through redis_log_append into a queue, and from there to Redis in
 * batches, each one Lua call that first checks the lease token (a
 * deposed leader cannot append: the call fails) and then XADDs the
 * entries (MAXLEN ~ max_events, MINID ~ now - max_age) and stores the
 * source's append counter and read positions in the same call. A batch
 * whose reply was lost is sent again; entries whose counter is not above
 * the stored one are skipped, so a resend never appends twice.
 *
 * When Redis cannot be reached the leader keeps queueing (bounded by
 * history.max_bytes; beyond it messages are dropped and counted). Once
 * it has had no renewal for a whole ttl it stops the adapter (another
 * replica may hold the lease by now; an MQTT session must not be fought
 * over). When Redis answers again it takes the lease back if it can: the
 * queue is appended only when no other replica held the lease meanwhile
 * (P:epoch moved by exactly one), else it is dropped.
 *
 * The tag: P:meta's "tag" is set once (HSETNX) to a random name when the
 * log is created; it is part of every SSE id. When Redis comes back
 * without the log (no persistence), the tag is new, and every id from
 * before is unknown: those browsers get a reset rather than a silent gap.
 * A Redis failover that lost the log's tail is seen when the tail
 * reconnects and the last entry it read is gone while an older one is
 * still there (trimming removes the oldest first), whatever the log took
 * since (sink.rolled_back). Entries trimmed (MAXLEN) before this replica
 * read them are seen by their count: each entry carries "c", the log's
 * own count of entries (P:meta "seq", moved in the append script), and a
 * jump is a gap (sink.gap).
 *
 * Adapter-layer (hiredis). Only bridge/replica.c uses it.
 */
#ifndef SLUICE_REDIS_LOG_H
#define SLUICE_REDIS_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct event_base;
struct history_key_fetch;
struct message;
struct redis_log;

#define REDIS_LOG_LEASE_MS 3000

/* What the bridge plugs in; every call comes from the loop. */
struct redis_log_sink {
    /* The log's tag, at the first load and whenever it changed (the log
     * was recreated: changed true). */
    void (*tagged)(void *ctx, const char *tag, bool changed);
    /* One entry of the log, in log order, as a message whose seq is its
     * position (history_key.h) and whose source is the index of the
     * source named in it (UINT32_MAX: none configured); takes the
     * reference. */
    void (*entry)(void *ctx, struct message *msg);
    /* The log's last entry is older than what was read (a failover lost
     * its tail): last_pos is its position now. */
    void (*rolled_back)(void *ctx, uint64_t last_pos);
    /* Entries after last_pos and before pos were trimmed before they
     * were read (the "c" count jumped): what this replica sent is no
     * longer complete. */
    void (*gap)(void *ctx, uint64_t last_pos, uint64_t pos);
    /* The tail is (true) or is no longer (false) following the log. */
    void (*live)(void *ctx, bool live);
    /* This replica now runs source i's ingest (true) or must stop it. */
    void (*leader)(void *ctx, uint32_t source, bool leader);
    void *ctx;
};

/*
 * A log for cfg (history.redis, history.key, the history bounds and the
 * source names are used; cfg must outlive the log). Connects nothing yet.
 * The lease ttl is REDIS_LOG_LEASE_MS, or SLUICE_INGEST_LEASE_MS from the
 * environment. Returns a new log (free with redis_log_free), or NULL with
 * why filled (no secrets).
 */
struct redis_log *redis_log_new(struct event_base *base,
                                const struct config *cfg,
                                const struct redis_log_sink *sink, char *why,
                                size_t whylen);

/* Starts connecting; leases are sought once the log is loaded. */
void redis_log_start(struct redis_log *log);

/* Gives up every lease held (SIGTERM): the sources' adapters are
 * stopped through sink.leader, and other replicas take over at once
 * instead of after a ttl. Appends still queued are sent no more. */
void redis_log_release(struct redis_log *log);

/* True once Redis has answered every release (or the connection is
 * gone): a draining process may exit without leaving a lease behind. */
bool redis_log_released(const struct redis_log *log);

/* Disconnects, releases held leases when it still can (best effort), and
 * frees the log and what is queued. NULL is fine. */
void redis_log_free(struct redis_log *log);

/*
 * Queues msg (source msg->source, which this replica leads) for the log;
 * takes the reference. For a redis-stream source, msg->topic and
 * msg->stream_entry_id are stored as its read position with it. Returns
 * 0, or -1 when it was dropped (not leader, or the queue is over
 * history.max_bytes: counted and logged).
 */
int redis_log_append(struct redis_log *log, struct message *msg);

/* history_key_io.range for the log (key is the log's key). */
int redis_log_range(void *ctx, const char *key, const char *after_id,
                    bool inclusive, const char *until_id, size_t count,
                    struct history_key_fetch *fetch);

/*
 * The read position stored for (source, key) of a redis-stream source
 * this replica leads: the entry id appended last, as loaded when the
 * lease was taken and moved by every append since. 1 with out filled, or
 * 0 when there is none.
 */
int redis_log_position(const struct redis_log *log, uint32_t source,
                       const char *key, char *out, size_t outlen);

/* True while the log is loaded and both connections are up. */
bool redis_log_up(const struct redis_log *log);

/* Why not up ("" when up); names host:port, never the URL. */
const char *redis_log_status(const struct redis_log *log);

/* True while this replica runs source i's ingest. */
bool redis_log_leads(const struct redis_log *log, uint32_t source);

/* True while another replica holds source i's lease (as the last lease
 * round found, with the log up). */
bool redis_log_led_elsewhere(const struct redis_log *log, uint32_t source);

/* Messages dropped from the append queue (over max_bytes, or fenced). */
uint64_t redis_log_dropped(const struct redis_log *log);

/* Times entries were trimmed before this replica read them. */
uint64_t redis_log_gaps(const struct redis_log *log);

/* Entries appended by this replica. */
uint64_t redis_log_appended(const struct redis_log *log);

#endif
