/*
 * history.h - the one ordered event log (SPEC 3.2).
 *
 * Every message the bridge accepts is appended here and receives a
 * sequence number (1, 2, 3...) and an id "<epoch>-<seq>": <epoch> is the
 * history's creation time in Unix ms, base 36, so ids from an earlier run
 * without persistence are recognised as unknown and never collide with
 * new ones. Ids are opaque to clients; only this module parses them.
 *
 * Storage is a ring of message pointers indexed by seq - first_seq, so
 * finding where to resume from an id is O(1) and the stored sequence is
 * always contiguous: "everything after seq S is here" is exactly
 * S + 1 >= first_seq. Eviction drops the oldest entries when max_events,
 * max_bytes or max_age is exceeded; the newest message is always kept.
 *
 * The history holds one reference to each stored message.
 */
#ifndef SLUICE_HISTORY_H
#define SLUICE_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct message;
struct history;

/*
 * Returns a new, empty history with limits from cfg (copied) and the id
 * epoch epoch_ms (the start time, or the journal's stored epoch), or NULL
 * on ENOMEM. Free with history_free.
 */
struct history *history_new(const struct history_config *cfg,
                            int64_t epoch_ms);

/* Releases every stored message and the history. */
void history_free(struct history *h);

/*
 * Appends msg, taking over the caller's reference: sets msg->seq and
 * msg->id, then evicts the oldest entries beyond the limits (never msg
 * itself). Returns 0, or -1 on ENOMEM (the reference is then dropped).
 */
int history_append(struct history *h, struct message *msg);

/*
 * Appends a message restored from the journal at start-up, keeping the
 * seq the caller set (greater than any stored). A gap before it (records
 * lost on disk) is treated like eviction: what came before is dropped, so
 * a resume from there gets a reset rather than a silent hole. Takes over
 * the caller's reference. Returns 0, or -1 (reference dropped).
 */
int history_restore(struct history *h, struct message *msg);

/* Switches to a new id epoch: stored messages keep their seqs but get ids
 * of the new epoch, so every id a client holds from the old one is
 * unknown. For a history whose journal lost records. */
void history_set_epoch(struct history *h, int64_t epoch_ms);

/* Evicts entries older than max_age at now_ms. */
void history_expire(struct history *h, int64_t now_ms);

/* The oldest stored seq (== history_next_seq when empty). */
uint64_t history_first_seq(const struct history *h);

/* The seq the next append will get; the head is next - 1. */
uint64_t history_next_seq(const struct history *h);

/* The stored message with this seq (borrowed), or NULL. */
struct message *history_at(const struct history *h, uint64_t seq);

size_t history_count(const struct history *h);
uint64_t history_bytes(const struct history *h);

enum history_lookup {
    HISTORY_FOUND,   /* *seq is the client's last seq; resume after it */
    HISTORY_UNKNOWN, /* malformed, other epoch, or never issued */
    HISTORY_EXPIRED, /* ours, but events after it were evicted */
};

/* Resolves a client's last event id (len bytes, not NUL-terminated). */
enum history_lookup history_find(const struct history *h, const char *id,
                                 size_t len, uint64_t *seq);

/* Writes the id of seq into out (>= MESSAGE_ID_MAX); returns its length. */
size_t history_format_id(const struct history *h, uint64_t seq, char *out,
                         size_t outlen);

#endif
