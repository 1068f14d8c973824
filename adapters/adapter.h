/*
 * adapter.h - the interface between a message bus and the bridge.
 *
 * Every bus (Redis pub/sub, Redis Streams, MQTT) is one adapter: a const
 * struct adapter_ops with start/stop/status, in the manner of hiredis's
 * event-loop adapters. The bridge creates one struct source per configured
 * source, fills in its config, event base, subscriptions and sink, and
 * calls ops->start. From then on the adapter lives on the bridge's
 * libevent loop (one thread, no locks): it connects, subscribes, retries
 * with capped exponential backoff and jitter, and hands every message it
 * receives to sink.deliver. Only adapter .c files include hiredis.h or
 * mosquitto.h.
 *
 * Sink functions must not call ops->stop on their own source (hiredis
 * cannot free a context from inside its own callbacks).
 *
 * Invariants: an adapter never blocks the loop, never exits the process,
 * never logs a password or token (log source names, hosts and ports, not
 * URLs), and after stop() it calls no sink function.
 */
#ifndef SLUICE_ADAPTER_H
#define SLUICE_ADAPTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct event_base;
struct history_key_fetch;
struct message;
struct source;

/* Upstream subscriptions of one source. mqtt: `patterns` holds the MQTT
 * filters; redis: `exact` the SUBSCRIBE channels, `patterns` the
 * PSUBSCRIBE globs; redis-stream: `exact` the stream keys. */
struct subscriptions {
    struct config_strv exact;
    struct config_strv patterns;
    bool keyed; /* redis-stream: per-key routes read keys of this source */
};

void subscriptions_free(struct subscriptions *subs);

/* What the bridge gives every adapter. */
struct sink {
    /*
     * Hands one message to the bridge; takes the adapter's reference
     * (the adapter must not touch msg afterwards). Returns 0 when the
     * message is stored at the configured durability, -1 when it was
     * refused (too large, out of memory): an acknowledging adapter
     * (MQTT QoS>0, redis-stream) may rely on this to ack only after 0.
     */
    int (*deliver)(void *ctx, struct source *src, struct message *msg);
    /* Called whenever source_state changes (for /readyz and metrics). */
    void (*state_changed)(void *ctx, struct source *src);
    /*
     * For redis-stream: the entry id of the newest stored message of this
     * source whose topic is `key` (a stream key), copied into out; returns
     * 1, or 0 when the history holds none. The adapter resumes XREAD after
     * it, so a restart with history.dir neither loses nor repeats entries.
     */
    int (*last_entry_id)(void *ctx, struct source *src, const char *key,
                         char *out, size_t outlen);
    /*
     * True when a payload of payload_len bytes is over max_payload: the
     * bridge has counted and logged the drop, and the adapter must not
     * build the message. Lets an adapter refuse a huge payload before
     * copying it (deliver checks again, for adapters that cannot).
     */
    bool (*too_large)(void *ctx, struct source *src, const char *topic,
                      size_t payload_len);
    /*
     * Per-key reading (keyed_ops): one live entry of a watched key, as a
     * message for the watch registered with `token`; takes the
     * reference. Entries come in id order per key.
     */
    void (*keyed_deliver)(void *ctx, struct source *src, void *token,
                          struct message *msg);
    void *ctx;
};

/* How a per-key route turns a key's entries into messages. The adapter
 * copies what it keeps. */
struct keyed_opts {
    const char *data_field; /* payload = this field's value (an entry
                               without it: empty); NULL: every field as
                               a JSON object {"field":"value",...} */
    const char *end_field;  /* the entry with end_field == end_value is
                               marked stream_end; NULL: none */
    const char *end_value;
};

#define KEYED_ID_MAX 48

/* What a probe of a key found. */
struct keyed_probe {
    bool ok;                     /* false: Redis could not be asked */
    char first_id[KEYED_ID_MAX]; /* "" when the key has no entry */
    char last_id[KEYED_ID_MAX];
    bool last_is_end;            /* the newest entry matches end */
};

/*
 * Per-key reading of a redis-stream source (routes with a {param} in a
 * key): keys are read on demand, on the adapter's own connections, while
 * the bridge watches them. Every function returns -1 (and calls nothing
 * back) when the adapter cannot do it now (stopped, not connected).
 */
struct keyed_ops {
    /* Looks at key's first and newest entries; done(arg, result) is
     * called exactly once, later (result->ok false on failure). */
    int (*probe)(struct source *src, const char *key,
                 const struct keyed_opts *opts,
                 void (*done)(void *arg, const struct keyed_probe *p),
                 void *arg);
    /* Starts delivering key's entries to sink.keyed_deliver with token.
     * A key not read yet starts after after_id (its newest entry when
     * probed; "" for none); one already read goes on where it is. Its
     * position (the last id delivered or started after) goes into pos. */
    int (*watch)(struct source *src, const char *key, const char *after_id,
                 const struct keyed_opts *opts, void *token,
                 char pos[KEYED_ID_MAX]);
    /* Stops the watch of token; the key stops being read when it was
     * the last one. */
    void (*unwatch)(struct source *src, const char *key, void *token);
    /* XRANGE for a per-key history (lib/history_key.h's io.range). */
    int (*range)(struct source *src, const char *key, const char *after_id,
                 const char *until_id, size_t count,
                 const struct keyed_opts *opts,
                 struct history_key_fetch *fetch);
};

enum source_state {
    SOURCE_DOWN,        /* not connected; retrying */
    SOURCE_CONNECTING,  /* connected, not yet subscribed */
    SOURCE_UP,          /* connected and subscribed */
};

struct adapter_ops {
    const char *type; /* "redis", "redis-stream", "mqtt" */
    /* What --check calls exact and pattern subscriptions upstream. */
    const char *exact_verb;   /* "SUBSCRIBE", "XREAD" */
    const char *pattern_verb; /* "SUBSCRIBE" (MQTT), "PSUBSCRIBE" */
    /* The subscriptions the source's config lists itself (subscribe,
     * channels/patterns, streams): 1 when copied into *out, 0 when it
     * lists none (they are derived from the routes), -1 on ENOMEM. */
    int (*configured)(const struct source_config *cfg,
                      struct subscriptions *out);
    /* Checks the source's URL as start() will parse it (lib/url.h plus
     * the bus's own rules), so that a bad URL stops a start and --check
     * with its position. 0, or -1 with why filled (no secrets). */
    int (*check_url)(const char *url, char *why, size_t whylen);
    /* Starts connecting (asynchronously). 0, or -1 with why filled (e.g.
     * a URL that cannot be parsed). */
    int (*start)(struct source *src, char *why, size_t whylen);
    /* Disconnects and frees the adapter's private state. Idempotent. */
    void (*stop)(struct source *src);
    /* Replaces the upstream subscriptions (after SIGHUP): subscribes the
     * new, unsubscribes the gone. Takes ownership of *subs' contents.
     * Returns 0, or -1 when they could not be applied now (the adapter
     * then applies them at its next connect). */
    int (*resubscribe)(struct source *src, struct subscriptions *subs);
    /* Per-key reading; NULL when the bus has none. */
    const struct keyed_ops *keyed;
};

/* The runtime state of one configured source, owned by the bridge. */
struct source {
    const struct adapter_ops *ops;
    const struct source_config *cfg; /* owned by the bridge's config */
    uint32_t index;                  /* position in config->sources */
    struct event_base *base;
    struct sink sink;
    struct subscriptions subs;       /* owned by the source */

    /* Maintained by the adapter. */
    enum source_state state;
    char status[160];                /* human reason when not up; no secrets */

    void *impl;                      /* the adapter's private state */

    /* Per-key reading, maintained by the adapter (for /metrics). */
    uint64_t keyed_xreads;           /* XREAD calls answered */
    uint64_t keyed_entries;          /* entries read */

    /* Owned by the bridge: the last state it reported (logs only
     * transitions, not every status text change). */
    enum source_state reported;
};

/* The adapters; adapter_for_type picks one. */
extern const struct adapter_ops redis_adapter_ops;
extern const struct adapter_ops redis_stream_adapter_ops;
extern const struct adapter_ops mqtt_adapter_ops;

const struct adapter_ops *adapter_for_type(enum source_type type);

/* Sets src->state (and status text) and calls sink.state_changed when it
 * changed. For adapters. */
void source_set_state(struct source *src, enum source_state state,
                      const char *status);

/* Delay before reconnect attempt `attempt` (0-based): capped exponential
 * backoff (100 ms doubling up to 30 s) with full jitter in [50%,100%]. */
int64_t source_backoff_ms(unsigned attempt);

#endif
