/*
 * bridge.h - the one object that owns a running sluice.
 *
 * struct bridge holds the event loop, the config, the compiled routes,
 * the auth state, the history, the sources (adapters), the feeds and
 * streams, and the metrics. It is created by main() and passed down; no
 * module keeps a hidden global (the logger's settings excepted, see
 * log.h).
 *
 * The event path: an adapter calls the sink (bridge_sink_deliver) -> the
 * message is checked (max_payload), appended to the history (which gives
 * it its id) -> the topic index names the feeds whose patterns match ->
 * each feed writes the message's frame to its live streams. Streams that
 * must be closed during that pass are only marked and put on the reap
 * list, so no list is modified while it is being walked.
 */
#ifndef SLUICE_BRIDGE_H
#define SLUICE_BRIDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "adapters/adapter.h"
#include "bridge/metrics.h"
#include "config/config.h"

struct auth;
struct event;
struct event_base;
struct evbuffer;
struct feed;
struct history;
struct keyed;
struct lastvalue;
struct redis_log;
struct route_table;
struct server;
struct stream;
struct topic_index;
struct writer;

struct bridge {
    struct event_base *base;
    struct config *cfg;           /* owned */
    struct route_table *routes;   /* owned; built from cfg */
    struct auth *auth;            /* owned */
    struct history *history;      /* owned: the event log (history.h) */
    struct redis_log *log;        /* owned: history.redis's shared log
                                     (replica.h); NULL: local history */
    bool log_loaded;              /* the shared log is loaded */
    struct keyed *keyed;          /* owned: per-key routes (keyed.h) */
    struct lastvalue *lastvalue;  /* owned: latest per topic (snapshots) */
    struct topic_index *index;    /* owned: (source, pattern) -> feed */
    struct source *sources;       /* owned; cfg->nsources entries */
    size_t nsources;
    struct server *server;        /* owned */
    struct metrics metrics;

    struct feed *feeds;           /* all feeds (list through feed->next) */
    struct stream *streams;       /* all open streams */
    size_t nstreams;
    struct stream *reap;          /* streams to close after this pass */
    struct event *reap_ev;        /* runs bridge_reap soon */

    struct writer *writer;        /* owned: the stream writer's buffers */

    struct event *tick_ev;        /* housekeeping (BRIDGE_TICK_MS) */
    struct event *signal_evs[3];  /* TERM, INT, HUP */
    struct event *drain_ev;       /* shutdown_grace deadline */
    bool draining;
    char *config_path;            /* for SIGHUP; NULL: embedded default */
    uint64_t rng;                 /* xorshift state for jitter */
};

/*
 * Creates a bridge that takes ownership of cfg and routes and builds the
 * auth, history, index, sources (not started) and server (not yet
 * listening). Returns NULL with a message in err on failure (cfg and
 * routes are freed then too).
 */
struct bridge *bridge_new(struct config *cfg, struct route_table *routes,
                          const char *config_path, char *err, size_t errlen);

/* Binds the listener, starts every source and the timers. 0 or -1. */
int bridge_start(struct bridge *b, char *err, size_t errlen);

/* Runs the event loop until shutdown completes. Returns the exit code. */
int bridge_run(struct bridge *b);

/* Frees everything (closing streams without ceremony). */
void bridge_free(struct bridge *b);

/* Current time in Unix ms (wall clock; events carry it). */
int64_t bridge_now_ms(void);

/* A random number in [0, n) from the bridge's generator (jitter only). */
uint64_t bridge_random(struct bridge *b, uint64_t n);

/* The name of source i. */
const char *bridge_source_name(const struct bridge *b, uint32_t i);

/* Puts s on the reap list (idempotent): it is closed after the current
 * pass. */
void bridge_schedule_reap(struct bridge *b, struct stream *s);

/* Starts the graceful shutdown of SPEC 2 (also from SIGTERM/SIGINT). */
void bridge_drain(struct bridge *b);

#endif
