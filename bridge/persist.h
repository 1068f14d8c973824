/*
 * persist.h - the history and its journal together (history.dir).
 *
 * Without history.dir this is just the in-memory history. With it, the
 * journal is opened at start (its epoch keeps ids stable across
 * restarts) and replayed into the history and the last-value cache; every
 * accepted message is written to the journal right after the history gave
 * it its seq and BEFORE any stream sees it, so a crash of sluice (kill -9)
 * never loses an event a browser has seen; evictions delete whole
 * segments; fsync follows history.fsync (batch: a 100 ms timer).
 */
#ifndef SLUICE_PERSIST_H
#define SLUICE_PERSIST_H

#include <stddef.h>
#include <stdint.h>

struct bridge;
struct message;

/* Creates b->history (and b->journal with history.dir) and restores what
 * the journal holds. 0, or -1 with err filled. */
int persist_open(struct bridge *b, int64_t now_ms, char *err, size_t errlen);

/* Appends msg to the history, then to the journal; takes the caller's
 * reference. Returns 0 when stored at the configured durability, 1 when
 * it is in memory only (the journal write failed, logged: the event still
 * flows), -1 when refused (out of memory; msg is gone). */
int persist_append(struct bridge *b, struct message *msg);

/* Applies max_age and deletes journal segments that fell out of it. */
void persist_expire(struct bridge *b, int64_t now_ms);

/* Starts the batch fsync timer when needed. 0 or -1. */
int persist_start(struct bridge *b);

/* Syncs and closes the journal, frees the history. */
void persist_close(struct bridge *b);

#endif
