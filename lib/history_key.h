/*
 * history_key.h - the history of one Redis Stream key, for per-key routes
 * (a {param} in a redis-stream key, e.g. "ai:chat:{id}").
 *
 * A backend of the history interface (history.h), one per key watched
 * (per feed: bridge/keyed.c creates it with the feed and frees it with
 * the feed's last stream). The key itself is the log: positions encode
 * the entry id, so the SSE id is the entry id exactly as Redis gives it,
 * and a resume works on any sluice process without shared state.
 *
 *   position = ms << 20 | seq      for the entry id "ms-seq"
 *
 * which keeps Redis's order (ms, then seq). Ids with seq >= 2^20 or ms >=
 * 2^44 (year 2527) do not fit: find answers HISTORY_UNKNOWN for them and
 * the live path drops such entries (only explicit XADD ids can make
 * them; "*" ids never do). Position 0 ("0-0") is "before everything".
 *
 * Live entries come from the keyed reader (adapters/redis_keys.c) through
 * history_append, in id order; the newest HISTORY_KEY_CACHE of them stay
 * in memory. The head is the newest entry appended: everything after it
 * reaches the feed live, so a stream that reads up to the head and then
 * turns live has no gap. Older entries are read with an asynchronous
 * range read (XRANGE "(after" "until" COUNT n) through struct
 * history_key_io: read answers HISTORY_READ_WAIT and wakes the waiter when
 * the reply is in. An empty reply means the entries in between were
 * deleted (XDEL, XTRIM): the read goes on from `until`.
 *
 * Whether a client's id was trimmed away (expired) is not decided here:
 * find only parses; bridge/keyed.c compares the id with the key's first
 * entry, which it asks Redis for before the stream opens.
 */
#ifndef SLUICE_HISTORY_KEY_H
#define SLUICE_HISTORY_KEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct history;
struct history_key_fetch; /* one outstanding range read; see below */
struct message;

/* Live entries kept in memory per key. */
#define HISTORY_KEY_CACHE 256
/* Entries asked for per range read. */
#define HISTORY_KEY_FETCH 128
/* "ms-seq" of a position, its NUL included. */
#define HISTORY_KEY_ID_MAX 48

/* How the backend reads older entries (the bridge plugs in the source). */
struct history_key_io {
    /*
     * Starts reading up to count entries of key with after < id <= until
     * (after_id NULL: from the first entry). Must later call
     * history_key_fetch_done(fetch, ...) exactly once, also on failure or
     * shutdown. Returns 0, or -1 when nothing was started (no call then).
     */
    int (*range)(void *ctx, const char *key, const char *after_id,
                 const char *until_id, size_t count,
                 struct history_key_fetch *fetch);
    void *ctx;
};

/*
 * A new history for key (copied) whose head is head_id (the key's newest
 * entry when it was looked at; NULL or "" for none: position 0). Returns
 * a new history (free with history_free), or NULL on ENOMEM or a head id
 * that does not fit.
 */
struct history *history_key_new(const char *key, const char *head_id,
                                const struct history_key_io *io);

/*
 * The answer to io.range: msgs[0..n) in id order, each with
 * stream_entry_id set, one reference each, all taken over (the array is
 * not). ok false: the read failed (the reader's stream is cut and
 * resumes by id).
 */
void history_key_fetch_done(struct history_key_fetch *fetch,
                            struct message **msgs, size_t n, bool ok);

/* Parses "ms-seq" (len bytes) into a position. false when it is no
 * complete entry id or does not fit. */
bool history_key_parse_id(const char *id, size_t len, uint64_t *pos);

/* Writes the id of pos ("ms-seq") into out; returns its length. */
size_t history_key_format_pos(uint64_t pos, char *out, size_t outlen);

#endif
