/*
 * keyed.h - per-key routes on the server side: a GET on a route whose
 * topic is a redis-stream key with a {param} ("ai:chat:{id}"), for
 * resumable job and AI-token streams.
 *
 * Each such key is read on demand: a feed per (route, key) holds the
 * key's history (lib/history_key.h) and a watch on the source's per-key
 * reader (adapter_ops.keyed, adapters/redis_keys.c); the last stream to
 * leave the feed frees both, and the key stops being read. The entry id
 * is the SSE id, so a resume works on any replica.
 *
 * Before a stream opens, the key is probed (its first and newest entry,
 * asynchronously; the request waits): that decides 204 (the client's id
 * is the end entry, or "from: start" would replay an ended key), a reset
 * (an id that is malformed: unknown-id; older than the first entry or a
 * key that is gone: expired), a resume, or a fresh start (replay from the
 * first entry, or live). stream.max_keys bounds the keys read at once.
 */
#ifndef SLUICE_KEYED_H
#define SLUICE_KEYED_H

#include <stddef.h>
#include <stdint.h>

struct bridge;
struct request;
struct feed;
struct keyed;
struct message;
struct route;
struct source;
struct topic_filter;

/* The bridge's per-key state (pending probes, counts). NULL on ENOMEM. */
struct keyed *keyed_new(struct bridge *b);

/* Frees k; probes still pending forget their requests. NULL is fine. */
void keyed_free(struct keyed *k);

/* Keys read now (per-key feeds); for /metrics. */
size_t keyed_active(const struct keyed *k);

/*
 * Answers a GET on per-key route r (already matched, authorized and
 * resolved into *filter, whose contents it takes over): probes the key,
 * then opens the stream or answers 204 / "come back later". last_id may
 * be NULL.
 */
void keyed_open(struct bridge *b, const struct request *req,
                const struct route *r, struct topic_filter *filter,
                const char *last_id, int64_t expires_ms);

/* From feed_release: unwatches f's key and frees its history. */
void keyed_feed_release(struct feed *f);

/* sink.keyed_deliver: one live entry of a watched key (token: its feed). */
void keyed_deliver(void *ctx, struct source *src, void *token,
                   struct message *msg);

#endif
