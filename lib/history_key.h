/*
 * history_key.h - the history of one Redis Stream key: a per-key route's
 * key (a {param} in a redis-stream key, e.g. "ai:chat:{id}"), or the log
 * that replicas share (history.redis, see bridge/replica.h).
 *
 * A backend of the history interface (history.h). The key itself is the
 * log: positions encode the entry id, so ids are the same on every sluice
 * process that reads the key, and a resume works on any of them.
 *
 *   position = ms << 20 | seq      for the entry id "ms-seq"
 *
 * which keeps Redis's order (ms, then seq). Ids with seq >= 2^20 or ms >=
 * 2^44 (year 2527) do not fit: find answers HISTORY_UNKNOWN for them and
 * the live path drops such entries (only explicit XADD ids can make
 * them; "*" ids never do). Position 0 ("0-0") is "before everything".
 *
 * Live entries come from a reader (adapters/redis_keys.c per key,
 * adapters/redis_log.c for the shared log) through history_append, in id
 * order; the newest of them stay in memory (a cache bounded by
 * struct history_key_opts). The head is the newest entry appended:
 * everything after it reaches the feed live, so a stream that reads up to
 * the head and then turns live has no gap. Older entries are read with an
 * asynchronous range read (XRANGE) through struct history_key_io: read
 * answers HISTORY_READ_WAIT and wakes the waiter when the reply is in.
 *
 * Two ways of keeping it (struct history_key_opts):
 * - per key (tag NULL): the SSE id is the entry id exactly as Redis gives
 *   it, the entry's stream_entry_id. An empty range reply means the
 *   entries in between were deleted (XDEL, XTRIM): the read goes on from
 *   `until`. Whether a client's id was trimmed away is decided by
 *   bridge/keyed.c, which compares it with the key's first entry.
 * - a shared log (tag set, `exact`): the SSE id is "<tag>.<ms>-<seq>",
 *   the log's entry id (set by the reader in msg->seq) behind the log's
 *   tag, a random name the log got when it was created, so that ids of
 *   another log, or of this log before Redis lost it, are unknown. A
 *   range read starts AT the client's entry: when that entry is no longer
 *   in the log (trimmed), the read answers HISTORY_READ_GONE (expired),
 *   because nothing can prove that no entry after it was trimmed too.
 *   An id newer than the head is unknown while the reader is live (the
 *   head is then the log's last entry); ids in a range the log lost (a
 *   Redis failover that dropped its tail, history_key_forget_after) are
 *   unknown too.
 */
#ifndef SLUICE_HISTORY_KEY_H
#define SLUICE_HISTORY_KEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct history;
struct history_key_fetch; /* one outstanding range read; see below */
struct message;

/* Live entries kept in memory per key (per-key routes). */
#define HISTORY_KEY_CACHE 256
/* Entries asked for per range read. */
#define HISTORY_KEY_FETCH 128
/* "ms-seq" of a position, its NUL included. */
#define HISTORY_KEY_ID_MAX 48
/* The longest tag of a shared log. */
#define HISTORY_KEY_TAG_MAX 16
/* Lost ranges remembered (the newest). */
#define HISTORY_KEY_LOST_MAX 8

/* How the history is kept; see the top of this file. */
struct history_key_opts {
    const char *tag;    /* NULL: per key; else the shared log's tag
                           ([0-9a-z], at most HISTORY_KEY_TAG_MAX; copied) */
    size_t max_events;  /* entries cached (0: HISTORY_KEY_CACHE) */
    uint64_t max_bytes; /* bytes cached (0: no bound) */
    int64_t max_age_ms; /* age cached (0: no bound) */
};

/* How the backend reads older entries (the bridge plugs in the source). */
struct history_key_io {
    /*
     * Starts reading up to count entries of key with after < id <= until
     * (after_id NULL: from the first entry; with `inclusive`, after <= id:
     * a shared log checks that the client's own entry is still there).
     * Must later call history_key_fetch_done(fetch, ...) exactly once,
     * also on failure or shutdown. Returns 0, or -1 when nothing was
     * started (no call then).
     */
    int (*range)(void *ctx, const char *key, const char *after_id,
                 bool inclusive, const char *until_id, size_t count,
                 struct history_key_fetch *fetch);
    void *ctx;
};

/*
 * A new history for key (copied) whose head is head_id (the key's newest
 * entry when it was looked at; NULL or "" for none: position 0), kept as
 * opts says (NULL: per key). Returns a new history (free with
 * history_free), or NULL on ENOMEM, a head id that does not fit or a bad
 * tag.
 */
struct history *history_key_new(const char *key, const char *head_id,
                                const struct history_key_io *io,
                                const struct history_key_opts *opts);

/*
 * A shared log's reader is live (true: its head is the log's last entry,
 * so a newer id is unknown) or not (false: disconnected or loading, so a
 * newer id may just not have arrived yet: the stream waits for it).
 */
void history_key_set_live(struct history *h, bool live);

/*
 * The log lost what came after pos (a failover to a replica that had not
 * received it): the cached entries after pos are dropped, the head goes
 * back to pos, and ids in (pos, old head] become unknown.
 */
void history_key_forget_after(struct history *h, uint64_t pos);

/* Entries in (from, to) were never read (trimmed first): their ids are
 * unknown. Cached entries stay. */
void history_key_mark_lost(struct history *h, uint64_t from, uint64_t to);

/* The log was recreated under a new tag (Redis lost it): everything
 * cached is dropped, the head is 0, every earlier id unknown. 0, or -1
 * for a bad tag (nothing changed). */
int history_key_retag(struct history *h, const char *tag);

/*
 * The answer to io.range: msgs[0..n) in id order, one reference each, all
 * taken over (the array is not). Per key each has stream_entry_id set; in
 * a shared log each has msg->seq set to its entry's position. ok false:
 * the read failed (the reader's stream is cut and resumes by id).
 */
void history_key_fetch_done(struct history_key_fetch *fetch,
                            struct message **msgs, size_t n, bool ok);

/* Parses "ms-seq" (len bytes) into a position. false when it is no
 * complete entry id or does not fit. */
bool history_key_parse_id(const char *id, size_t len, uint64_t *pos);

/* Writes the id of pos ("ms-seq") into out; returns its length. */
size_t history_key_format_pos(uint64_t pos, char *out, size_t outlen);

#endif
