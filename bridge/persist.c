/*
 * persist.c - see persist.h.
 *
 * Records name their source, not its index, so a config whose sources
 * were reordered still restores correctly; records of a source that no
 * longer exists are kept (their seqs must stay contiguous) under an index
 * no feed can match, and are left out of snapshots.
 */
#include "bridge/persist.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "bridge/bridge.h"
#include "lib/history.h"
#include "lib/journal.h"
#include "lib/lastvalue.h"
#include "lib/log.h"
#include "lib/message.h"

#define PERSIST_NO_SOURCE UINT32_MAX

static uint32_t persist_source_index(const struct bridge *b,
                                     const struct journal_record *rec)
{
    for (size_t i = 0; i < b->cfg->nsources; i++) {
        const char *name = b->cfg->sources[i].name;
        if (strlen(name) == rec->source_len &&
            memcmp(name, rec->source, rec->source_len) == 0)
            return (uint32_t)i;
    }
    return PERSIST_NO_SOURCE;
}

/* journal_replay callback: one stored record back into memory. */
static int persist_restore_record(void *arg, const struct journal_record *rec)
{
    struct bridge *b = arg;
    uint32_t source = persist_source_index(b, rec);
    struct message *msg =
        message_new(source, rec->type, rec->topic, rec->topic_len,
                    rec->payload, rec->payload_len, rec->time_ms);

    if (msg == NULL)
        return -1;
    msg->has_mqtt = rec->has_mqtt;
    msg->retain = rec->retain;
    msg->qos = rec->qos;
    msg->seq = rec->seq;
    if (rec->stream_entry_id != NULL &&
        message_set_stream_entry_id(msg, rec->stream_entry_id) < 0) {
        message_unref(msg);
        return -1;
    }
    if (history_restore(b->history, msg) < 0)
        return -1;
    if (source != PERSIST_NO_SOURCE)
        lastvalue_put(b->lastvalue, msg);
    return 0;
}

/* The kernel's id of this boot, or "" when unknown. */
static void persist_boot_id(char *out, size_t len)
{
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");

    out[0] = '\0';
    if (f == NULL)
        return;
    if (fgets(out, (int)len, f) == NULL)
        out[0] = '\0';
    out[strcspn(out, "\n")] = '\0';
    fclose(f);
}

/*
 * True when the machine rebooted since the journal was last opened: then
 * records written but not yet fsynced (fsync never/batch) may be lost,
 * with ids that browsers have seen. A kill -9 alone loses nothing: records
 * are written before any stream sees them and the page cache survives.
 * Records this boot's id in <dir>/boot_id for the next start. Both files
 * are opened through the journal, which follows no link (journal.h).
 */
static bool persist_rebooted(struct journal *j, const char *dir)
{
    char path[4096], tmp[4096], now[64], was[64] = "";
    int fd;
    FILE *f;
    bool rebooted;

    persist_boot_id(now, sizeof(now));
    snprintf(path, sizeof(path), "%s/boot_id", dir);
    snprintf(tmp, sizeof(tmp), "%s/boot_id.tmp", dir);
    fd = journal_open_file(j, "boot_id", O_RDONLY);
    f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (f != NULL) {
        if (fgets(was, sizeof(was), f) == NULL)
            was[0] = '\0';
        was[strcspn(was, "\n")] = '\0';
        fclose(f);
    } else if (fd >= 0) {
        close(fd);
    }
    rebooted = f != NULL && strcmp(was, now) != 0;
    fd = journal_open_file(j, "boot_id.tmp", O_WRONLY | O_CREAT | O_TRUNC);
    f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (f != NULL) {
        fprintf(f, "%s\n", now);
        if (fclose(f) == 0)
            rename(tmp, path);
    } else if (fd >= 0) {
        close(fd);
    }
    return rebooted;
}

/* After a restore that may have lost ids (see persist_rebooted and
 * journal_lost_records): a new epoch, so browsers get one reset instead
 * of ids issued again for different events. */
static int persist_new_epoch(struct bridge *b, int64_t now_ms,
                             const char *why, char *err, size_t errlen)
{
    log_warn("history %s: %s: starting a new id epoch (browsers resuming "
             "from before get a reset)",
             b->cfg->history.dir, why);
    if (journal_set_epoch(b->journal, now_ms, err, errlen) < 0)
        return -1;
    history_set_epoch(b->history, now_ms);
    return 0;
}

int persist_open(struct bridge *b, int64_t now_ms, char *err, size_t errlen)
{
    const struct history_config *hc = &b->cfg->history;
    int64_t epoch = now_ms;
    int64_t started = bridge_now_ms();

    if (hc->dir != NULL) {
        b->journal = journal_open(hc->dir, hc->fsync, now_ms, &epoch, err,
                                  errlen);
        if (b->journal == NULL)
            return -1;
    }
    b->history = history_new(hc, epoch);
    if (b->history == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (b->journal == NULL)
        return 0;
    if (journal_replay(b->journal, persist_restore_record, b) < 0) {
        snprintf(err, errlen, "history %s: cannot restore the journal",
                 hc->dir);
        return -1;
    }
    if (journal_lost_records(b->journal) &&
        persist_new_epoch(b, now_ms, "the journal lost records", err,
                          errlen) < 0)
        return -1;
    if (persist_rebooted(b->journal, hc->dir) && hc->fsync != FSYNC_ALWAYS &&
        !journal_lost_records(b->journal) &&
        persist_new_epoch(b, now_ms, "the machine restarted (fsync is not "
                          "always)", err, errlen) < 0)
        return -1;
    persist_expire(b, now_ms);
    log_info("history %s: restored %zu events in %lld ms", hc->dir,
             history_count(b->history),
             (long long)(bridge_now_ms() - started));
    return 0;
}

int persist_append(struct bridge *b, struct message *msg)
{
    uint64_t first = history_first_seq(b->history);

    if (history_append(b->history, msg) < 0)
        return -1;
    if (b->journal == NULL)
        return 0;
    if (history_first_seq(b->history) != first)
        journal_trim(b->journal, history_first_seq(b->history));
    if (journal_append(b->journal, msg, bridge_source_name(b, msg->source)) < 0)
        return 1;
    return 0;
}

void persist_expire(struct bridge *b, int64_t now_ms)
{
    uint64_t first = history_first_seq(b->history);

    history_expire(b->history, now_ms);
    if (b->journal != NULL && history_first_seq(b->history) != first)
        journal_trim(b->journal, history_first_seq(b->history));
}

static void persist_on_sync(evutil_socket_t fd, short what, void *arg)
{
    struct bridge *b = arg;

    if (journal_dirty(b->journal))
        journal_sync(b->journal);
}

int persist_start(struct bridge *b)
{
    struct timeval period = {0, JOURNAL_BATCH_MS * 1000};

    if (b->journal == NULL || b->cfg->history.fsync != FSYNC_BATCH)
        return 0;
    b->sync_ev = event_new(b->base, -1, EV_PERSIST, persist_on_sync, b);
    if (b->sync_ev == NULL || event_add(b->sync_ev, &period) < 0)
        return -1;
    return 0;
}

void persist_close(struct bridge *b)
{
    if (b->sync_ev != NULL)
        event_free(b->sync_ev);
    b->sync_ev = NULL;
    journal_close(b->journal);
    b->journal = NULL;
    history_free(b->history);
    b->history = NULL;
}
