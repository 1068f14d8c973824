/*
 * ring.h - the in-memory event log: a ring of messages in order.
 *
 * Every appended message receives a sequence number (1, 2, 3...), which
 * is its history position, and an id "<epoch>-<seq>". <epoch> is base 36
 * of a value unique to this log (history_new_epoch: start time and random
 * bits, or the journal's stored epoch), so ids from an earlier run without
 * persistence, or from another process, are recognised as unknown and
 * never collide with new ones. Only this module parses them.
 *
 * Storage is a ring of message pointers indexed by seq - first_seq, so
 * finding where to resume from an id is O(1) and the stored sequence is
 * always contiguous: "everything after seq S is here" is exactly
 * S + 1 >= first_seq. Eviction drops the oldest entries when max_events,
 * max_bytes or max_age is exceeded; the newest message is always kept.
 *
 * The ring holds one reference to each stored message. It is the memory of
 * the local history backend (history_local.h), which adds the journal.
 */
#ifndef SLUICE_RING_H
#define SLUICE_RING_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "lib/history.h"

struct message;
struct ring;

/*
 * Returns a new, empty ring with limits from cfg (copied) and the id
 * epoch `epoch` (history_new_epoch, or the journal's stored one), or NULL
 * on ENOMEM. Free with ring_free.
 */
struct ring *ring_new(const struct history_config *cfg, int64_t epoch);

/* Releases every stored message and the ring. */
void ring_free(struct ring *h);

/*
 * Appends msg, taking over the caller's reference: sets msg->seq and
 * msg->id, then evicts the oldest entries beyond the limits (never msg
 * itself). Returns 0, or -1 on ENOMEM (the reference is then dropped).
 */
int ring_append(struct ring *h, struct message *msg);

/*
 * Appends a message restored from the journal at start-up, keeping the
 * seq the caller set (greater than any stored). A gap before it (records
 * lost on disk) is treated like eviction: what came before is dropped, so
 * a resume from there gets a reset rather than a silent hole. Takes over
 * the caller's reference. Returns 0, or -1 (reference dropped).
 */
int ring_restore(struct ring *h, struct message *msg);

/* Switches to a new id epoch: stored messages keep their seqs but get ids
 * of the new epoch, so every id a client holds from the old one is
 * unknown. For a history whose journal lost records. */
void ring_set_epoch(struct ring *h, int64_t epoch);

/* Evicts entries older than max_age at now_ms. */
void ring_expire(struct ring *h, int64_t now_ms);

/* The oldest stored seq (== ring_next_seq when empty). */
uint64_t ring_first_seq(const struct ring *h);

/* The seq the next append will get; the head is next - 1. */
uint64_t ring_next_seq(const struct ring *h);

/* The stored message with this seq (borrowed), or NULL. */
struct message *ring_at(const struct ring *h, uint64_t seq);

size_t ring_count(const struct ring *h);
uint64_t ring_bytes(const struct ring *h);

/* Resolves a client's last event id (len bytes, not NUL-terminated). */
enum history_lookup ring_find(const struct ring *h, const char *id,
                                 size_t len, uint64_t *seq);

/* Writes the id of seq into out (>= MESSAGE_ID_MAX); returns its length. */
size_t ring_format_id(const struct ring *h, uint64_t seq, char *out,
                         size_t outlen);

#endif
