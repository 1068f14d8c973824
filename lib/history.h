/*
 * history.h - the seam between the running server and the event log.
 *
 * Every message the bridge accepts is appended to one history, which gives
 * it a position (msg->seq) and an id (msg->id). Streams resume from an id,
 * replay what follows it, and learn the head for checkpoints, through the
 * functions below and nothing else, so the log behind them can change
 * without touching the stream code. A backend is a const struct
 * history_ops plus its private state, in the manner of libevent's struct
 * eventop; history_local.h is the first (an in-memory ring with an
 * optional journal on disk).
 *
 * Positions are opaque uint64 values, strictly increasing in log order; 0
 * stands for "before everything". Callers compare them and never do
 * arithmetic on them (a backend may leave gaps). Ids are opaque strings of
 * [0-9A-Za-z._:-]; only the backend parses them.
 *
 * Reading may be asynchronous: a backend whose older entries are not in
 * memory answers HISTORY_READ_WAIT and later calls the waiter's wake
 * function once. A caller that goes away first cancels its waiter.
 */
#ifndef SLUICE_HISTORY_H
#define SLUICE_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct message;

enum history_lookup {
    HISTORY_FOUND,   /* *pos is the client's last position; resume after */
    HISTORY_UNKNOWN, /* malformed, from another log, or never issued */
    HISTORY_EXPIRED, /* ours, but events after it were evicted */
};

enum history_read {
    HISTORY_READ_OK,   /* *n messages returned; 0 means at the head */
    HISTORY_READ_GONE, /* what follows `after` was evicted */
    HISTORY_READ_WAIT, /* being fetched: the waiter is woken later */
};

/* Embedded in whoever reads (a stream); see history_read. */
struct history_waiter {
    void (*wake)(struct history_waiter *w);
    struct history_waiter *next; /* the backend's list while waiting */
};

struct history_ops {
    const char *name;
    int (*append)(void *impl, struct message *msg);
    enum history_lookup (*find)(void *impl, const char *id, size_t len,
                                uint64_t *pos);
    enum history_read (*read)(void *impl, uint64_t after,
                              struct message **out, size_t max, size_t *n,
                              struct history_waiter *w);
    void (*cancel)(void *impl, struct history_waiter *w);
    uint64_t (*head)(void *impl);
    size_t (*format_id)(void *impl, uint64_t pos, char *out, size_t outlen);
    void (*scan_back)(void *impl,
                      bool (*cb)(void *arg, const struct message *msg),
                      void *arg);
    void (*expire)(void *impl, int64_t now_ms);
    size_t (*count)(void *impl);
    uint64_t (*bytes)(void *impl);
    void (*free)(void *impl);
};

struct history {
    const struct history_ops *ops;
    void *impl; /* owned: freed by ops->free */
};

/*
 * Appends msg, taking over the caller's reference: sets msg->seq and
 * msg->id. Returns 0 when it is stored as durably as configured, 1 when
 * it is stored but not durably (a journal write failed: an acknowledging
 * adapter must not ack it), -1 when it was refused (reference dropped).
 */
int history_append(struct history *h, struct message *msg);

/* Resolves a client's last event id (len bytes, not NUL-terminated). */
enum history_lookup history_find(struct history *h, const char *id,
                                 size_t len, uint64_t *pos);

/*
 * Up to max stored messages after position `after` (0: from the oldest
 * stored), oldest first, as new references in out[0..*n) (release each
 * with message_unref). With
 * HISTORY_READ_OK and *n == 0, nothing follows `after`. With
 * HISTORY_READ_WAIT, w->wake(w) is called once when reading again can
 * make progress, unless history_cancel(h, w) comes first.
 */
enum history_read history_read(struct history *h, uint64_t after,
                               struct message **out, size_t max, size_t *n,
                               struct history_waiter *w);

/* Forgets w if it is waiting (idempotent). */
void history_cancel(struct history *h, struct history_waiter *w);

/* The position of the newest event, 0 when there is none. */
uint64_t history_head(struct history *h);

/* Writes the id of position pos into out (>= MESSAGE_ID_MAX); returns its
 * length. */
size_t history_format_id(struct history *h, uint64_t pos, char *out,
                         size_t outlen);

/* Calls cb for the messages held in memory, newest first, until cb
 * returns false. Not for the hot path. */
void history_scan_back(struct history *h,
                       bool (*cb)(void *arg, const struct message *msg),
                       void *arg);

/* Evicts what is older than history.max_age at now_ms. */
void history_expire(struct history *h, int64_t now_ms);

size_t history_count(struct history *h);
uint64_t history_bytes(struct history *h);

/* Frees the backend and h. NULL is fine. */
void history_free(struct history *h);

/*
 * A new id epoch for a history that starts from nothing: the time in ms
 * with 20 random bits below it, so that processes started in the same
 * millisecond (several replicas from one command) never share an epoch
 * and never accept each other's ids.
 */
int64_t history_new_epoch(int64_t now_ms);

#endif
