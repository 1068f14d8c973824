/*
 * journal.h - the on-disk form of the history (history.dir, SPEC 3).
 *
 * An append-only log split into segments ("<first-seq>.log", 20 digits)
 * of up to JOURNAL_SEGMENT_BYTES each, plus a small "epoch" file that
 * keeps the history's id epoch across restarts. Each record carries a
 * CRC-32 (zlib) so a torn or corrupt tail is detected at open and the
 * segment is truncated at the last good record, with one log line.
 * Eviction deletes whole segments only.
 *
 * Durability (fsync): never = write(2) only (survives a crash of sluice,
 * not of the machine); batch = write(2) now, fdatasync at the latest
 * JOURNAL_BATCH_MS later (the bridge calls journal_sync from a timer);
 * always = fdatasync before journal_append returns.
 *
 * The journal never holds messages in memory: the history does.
 */
#ifndef SLUICE_JOURNAL_H
#define SLUICE_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

#define JOURNAL_SEGMENT_BYTES (16 * 1024 * 1024)
#define JOURNAL_BATCH_MS 100

struct journal;
struct message;

/* One stored record, as handed to the replay callback (borrowed). */
struct journal_record {
    uint64_t seq;
    int64_t time_ms;
    const char *source;    /* source name (names survive config edits) */
    size_t source_len;
    enum source_type type;
    const char *topic;
    size_t topic_len;
    const char *payload;
    size_t payload_len;
    bool has_mqtt;
    bool retain;
    uint8_t qos;
    const char *stream_entry_id; /* NUL-terminated, or NULL */
};

/*
 * Opens (creating if needed) the journal in dir. Reads or creates the
 * epoch file: *epoch_ms receives the stored epoch, or now_ms for a new
 * journal. Returns NULL with a message in err on failure (missing
 * permissions, not a directory, a directory not owned by this user or
 * writable by group or others: anyone who can write there could plant
 * links or swap files under sluice).
 */
struct journal *journal_open(const char *dir, enum fsync_mode fsync,
                             int64_t now_ms, int64_t *epoch_ms, char *err,
                             size_t errlen);

/*
 * Calls cb for every good record, oldest first, in seq order. Truncates a
 * torn/corrupt tail (logging it once) and ignores any segment after a
 * corrupt one. cb returns 0 to go on, -1 to stop with an error. Returns 0
 * or -1. Call once, right after journal_open, before any append.
 */
int journal_replay(struct journal *j,
                   int (*cb)(void *arg, const struct journal_record *rec),
                   void *arg);

/* True when journal_replay had to cut records (a torn or corrupt tail):
 * ids issued for them may be lost, so the caller should start a new id
 * epoch rather than issue those ids again. */
bool journal_lost_records(const struct journal *j);

/* Replaces the stored id epoch (atomically). 0, or -1 with err. */
int journal_set_epoch(struct journal *j, int64_t epoch_ms, char *err,
                      size_t errlen);

/* Appends msg (msg->seq set) under source name `source`. Rolls to a new
 * segment when the current one is full. 0, or -1 on I/O error (logged). */
int journal_append(struct journal *j, const struct message *msg,
                   const char *source);

/* fdatasync when records were appended since the last sync (batch). */
void journal_sync(struct journal *j);

/* True when appends are waiting for journal_sync. */
bool journal_dirty(const struct journal *j);

/* Deletes every segment whose records all have seq < first_seq. */
void journal_trim(struct journal *j, uint64_t first_seq);

/*
 * Opens `name` inside the journal's directory with open(2) flags (mode
 * 0640 when created), never following a symbolic link, and fails unless
 * it is a regular file owned by this user (errno ELOOP for a link, EPERM
 * otherwise). Returns a new descriptor (the caller closes it), or -1.
 */
int journal_open_file(struct journal *j, const char *name, int flags);

/* Highest seq a record may carry: far beyond any real history (2^53, a
 * million events a second for 285 years), far from wrapping a uint64_t. */
#define JOURNAL_SEQ_MAX (UINT64_C(1) << 53)

/* Syncs and closes. NULL is fine. */
void journal_close(struct journal *j);

#endif
