/*
 * redis_keys.h - per-key reading of Redis Streams: the keys that per-key
 * routes watch right now, read on demand (adapter_ops.keyed of the
 * redis-stream adapter, which owns one struct redis_keys per source).
 *
 * Two connections of its own, whatever the number of keys or browsers:
 * one blocks in XREAD BLOCK over every watched key at once, the other
 * serves probes (first and newest entry of a key), XRANGE reads for
 * replays, and CLIENT UNBLOCK when a new key must join a blocked XREAD.
 * Adapter-only (it brings in hiredis through redis_conn.h).
 */
#ifndef SLUICE_REDIS_KEYS_H
#define SLUICE_REDIS_KEYS_H

#include <stddef.h>

#include "adapters/adapter.h"

struct redis_keys;

/* Starts the two connections for src (its url). NULL with why filled. */
struct redis_keys *redis_keys_new(struct source *src, char *why,
                                  size_t whylen);

/* Drops the connections (pending probes and reads are answered as
 * failed) and frees rk. NULL is fine. */
void redis_keys_free(struct redis_keys *rk);

/* The keyed_ops functions, on rk (see adapter.h). */
int redis_keys_probe(struct redis_keys *rk, const char *key,
                     const struct keyed_opts *opts,
                     void (*done)(void *arg, const struct keyed_probe *p),
                     void *arg);
int redis_keys_watch(struct redis_keys *rk, const char *key,
                     const char *after_id, const struct keyed_opts *opts,
                     void *token, char pos[KEYED_ID_MAX]);
void redis_keys_unwatch(struct redis_keys *rk, const char *key, void *token);
int redis_keys_range(struct redis_keys *rk, const char *key,
                     const char *after_id, const char *until_id,
                     size_t count, const struct keyed_opts *opts,
                     struct history_key_fetch *fetch);

#endif
