/*
 * feed.h - the set of streams that watch exactly the same thing.
 *
 * Thousands of browsers typically open the same few URLs. All streams
 * with the same route and the same resolved topic filter share one feed:
 * the feed's patterns are registered once in the topic index, a message
 * is matched once per feed (not per stream), and the feed then writes the
 * same cached frame to each of its live streams. This is what keeps the
 * per-delivery cost at "copy a few bytes into a socket buffer".
 *
 * A feed exists while it has streams; the last detach frees it.
 */
#ifndef SLUICE_FEED_H
#define SLUICE_FEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/topic.h"
#include "config/config.h"

struct bridge;
struct history;
struct keyed_feed;
struct message;
struct route;
struct stream;

struct feed {
    struct bridge *bridge;
    char *key;                  /* route index + topic_filter_key; owned */
    struct topic_filter filter; /* owned */
    size_t route_index;
    enum route_format format;
    enum route_event event;
    char *event_line;           /* "event: NAME\n" for fixed names; owned */
    size_t event_line_len;
    struct stream *streams;     /* list through stream->feed_next */
    size_t nstreams;
    uint64_t last_seq;          /* last message dispatched here (dedupe) */
    struct history *history;    /* per-key routes: the key's history
                                   (owned, through keyed); NULL: the
                                   bridge's */
    struct keyed_feed *keyed;   /* per-key routes (bridge/keyed.c); owned */
    bool per_key;               /* not in the topic index: fed by keyed.c */
    struct feed *prev, *next;   /* in bridge->feeds */
};

/*
 * Returns the feed for route r and filter, creating and indexing it if
 * needed. Takes ownership of *filter's contents either way (leaves it
 * cleared). Returns NULL on ENOMEM.
 */
struct feed *feed_acquire(struct bridge *b, const struct route *r,
                          struct topic_filter *filter);

/* True when a feed for route r and filter exists (no allocation kept). */
bool feed_exists(struct bridge *b, const struct route *r,
                 const struct topic_filter *filter);

/* Frees f when no stream uses it (a feed acquired, then not used). */
void feed_drop_if_unused(struct feed *f);

/* Hot path: msg to f's live streams (the per-key path, bridge/keyed.c). */
void feed_deliver(struct feed *f, struct message *msg);

/* Links s into f (s->feed = f). */
void feed_attach(struct feed *f, struct stream *s);

/* Unlinks s; frees f (and unindexes it) when it was the last stream. */
void feed_detach(struct feed *f, struct stream *s);

/* Moves s from its feed to `to` (after a reload); frees the old feed if
 * s was its last stream. `to` may be s's own feed. */
void feed_move(struct stream *s, struct feed *to);

/* True when msg belongs on this feed (patterns and ?topic= narrowing). */
bool feed_matches(const struct feed *f, const struct message *msg);

/*
 * Hot path: writes msg to every live stream of every feed that matches
 * it, each feed once. Called by the bridge right after history_append.
 */
void feed_dispatch(struct bridge *b, struct message *msg);

/* Frees every feed of b (at exit; streams must be gone). */
void feed_free_all(struct bridge *b);

#endif
