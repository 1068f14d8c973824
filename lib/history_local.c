/*
 * history_local.c - the local history backend; see history_local.h.
 *
 * The ring is the memory, the journal the disk. Both see every append in
 * the same order with the same seq, and eviction in the ring trims the
 * journal, so the two hold the same window of events.
 */
#include "lib/history_local.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/event.h>

#include "lib/history.h"
#include "lib/journal.h"
#include "lib/log.h"
#include "lib/message.h"
#include "lib/ring.h"

#define LOCAL_NO_SOURCE UINT32_MAX

struct history_local {
    struct history_config cfg; /* dir owned (copied) */
    char **source_names;       /* owned; nsources copies */
    size_t nsources;
    struct ring *ring;         /* owned */
    struct journal *journal;   /* owned; NULL without history.dir */
    struct event *sync_ev;     /* fsync: batch timer; owned */
};

static int64_t local_wall_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* ---- restore ---------------------------------------------------------- */

static uint32_t local_source_index(const struct history_local *l,
                                   const struct journal_record *rec)
{
    for (size_t i = 0; i < l->nsources; i++) {
        const char *name = l->source_names[i];
        if (strlen(name) == rec->source_len &&
            memcmp(name, rec->source, rec->source_len) == 0)
            return (uint32_t)i;
    }
    return LOCAL_NO_SOURCE;
}

/* journal_replay callback: one stored record back into the ring. */
static int local_restore_record(void *arg, const struct journal_record *rec)
{
    struct history_local *l = arg;
    struct message *msg =
        message_new(local_source_index(l, rec), rec->type, rec->topic,
                    rec->topic_len, rec->payload, rec->payload_len,
                    rec->time_ms);

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
    return ring_restore(l->ring, msg);
}

/* The kernel's id of this boot, or "" when unknown. */
static void local_boot_id(char *out, size_t len)
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
static bool local_rebooted(struct journal *j, const char *dir)
{
    char path[4096], tmp[4096], now[64], was[64] = "";
    int fd;
    FILE *f;
    bool rebooted;

    local_boot_id(now, sizeof(now));
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

/* After a restore that may have lost ids (see local_rebooted and
 * journal_lost_records): a new epoch, so browsers get one reset instead
 * of ids issued again for different events. */
static int local_new_epoch(struct history_local *l, int64_t now_ms,
                           const char *why, char *err, size_t errlen)
{
    int64_t epoch = history_new_epoch(now_ms);

    log_warn("history %s: %s: starting a new id epoch (browsers resuming "
             "from before get a reset)",
             l->cfg.dir, why);
    if (journal_set_epoch(l->journal, epoch, err, errlen) < 0)
        return -1;
    ring_set_epoch(l->ring, epoch);
    return 0;
}

/* Deletes journal segments that fell out of the ring. */
static void local_trim(struct history_local *l, uint64_t first_before)
{
    uint64_t first = ring_first_seq(l->ring);

    if (l->journal != NULL && first != first_before)
        journal_trim(l->journal, first);
}

static int local_restore(struct history_local *l, int64_t now_ms, char *err,
                         size_t errlen)
{
    int64_t started = local_wall_ms();
    uint64_t first;

    if (journal_replay(l->journal, local_restore_record, l) < 0) {
        snprintf(err, errlen, "history %s: cannot restore the journal",
                 l->cfg.dir);
        return -1;
    }
    if (journal_lost_records(l->journal) &&
        local_new_epoch(l, now_ms, "the journal lost records", err,
                        errlen) < 0)
        return -1;
    if (local_rebooted(l->journal, l->cfg.dir) &&
        l->cfg.fsync != FSYNC_ALWAYS &&
        !journal_lost_records(l->journal) &&
        local_new_epoch(l, now_ms,
                        "the machine restarted (fsync is not always)", err,
                        errlen) < 0)
        return -1;
    first = ring_first_seq(l->ring);
    ring_expire(l->ring, now_ms);
    local_trim(l, first);
    log_info("history %s: restored %zu events in %lld ms", l->cfg.dir,
             ring_count(l->ring), (long long)(local_wall_ms() - started));
    return 0;
}

/* ---- the history_ops -------------------------------------------------- */

static int local_append(void *impl, struct message *msg)
{
    struct history_local *l = impl;
    uint64_t first = ring_first_seq(l->ring);

    if (ring_append(l->ring, msg) < 0)
        return -1;
    if (l->journal == NULL)
        return 0;
    local_trim(l, first);
    if (journal_append(l->journal, msg, l->source_names[msg->source]) < 0)
        return 1;
    return 0;
}

static enum history_lookup local_find(void *impl, const char *id, size_t len,
                                      uint64_t *pos)
{
    struct history_local *l = impl;

    return ring_find(l->ring, id, len, pos);
}

static enum history_read local_read(void *impl, uint64_t after,
                                    struct message **out, size_t max,
                                    size_t *n, struct history_waiter *w)
{
    struct history_local *l = impl;
    uint64_t next = ring_next_seq(l->ring);
    uint64_t first = ring_first_seq(l->ring);
    uint64_t pos = after == 0 ? first : after + 1;

    *n = 0;
    if (pos < first && after < next - 1)
        return HISTORY_READ_GONE;
    while (*n < max && pos < next)
        out[(*n)++] = message_ref(ring_at(l->ring, pos++));
    return HISTORY_READ_OK;
}

static void local_cancel(void *impl, struct history_waiter *w)
{
    /* Reads never wait. */
}

static uint64_t local_head(void *impl)
{
    struct history_local *l = impl;

    return ring_next_seq(l->ring) - 1;
}

static size_t local_format_id(void *impl, uint64_t pos, char *out,
                              size_t outlen)
{
    struct history_local *l = impl;

    return ring_format_id(l->ring, pos, out, outlen);
}

static void local_scan_back(void *impl,
                            bool (*cb)(void *arg, const struct message *msg),
                            void *arg)
{
    struct history_local *l = impl;
    uint64_t first = ring_first_seq(l->ring);

    for (uint64_t s = ring_next_seq(l->ring); s-- > first;) {
        if (!cb(arg, ring_at(l->ring, s)))
            return;
    }
}

static void local_expire(void *impl, int64_t now_ms)
{
    struct history_local *l = impl;
    uint64_t first = ring_first_seq(l->ring);

    ring_expire(l->ring, now_ms);
    local_trim(l, first);
}

static size_t local_count(void *impl)
{
    struct history_local *l = impl;

    return ring_count(l->ring);
}

static uint64_t local_bytes(void *impl)
{
    struct history_local *l = impl;

    return ring_bytes(l->ring);
}

static void local_free(void *impl)
{
    struct history_local *l = impl;

    if (l == NULL)
        return;
    if (l->sync_ev != NULL)
        event_free(l->sync_ev);
    journal_close(l->journal);
    ring_free(l->ring);
    for (size_t i = 0; i < l->nsources; i++)
        free(l->source_names[i]);
    free(l->source_names);
    free(l->cfg.dir);
    free(l);
}

static const struct history_ops local_ops = {
    .name = "local",
    .append = local_append,
    .find = local_find,
    .read = local_read,
    .cancel = local_cancel,
    .head = local_head,
    .format_id = local_format_id,
    .scan_back = local_scan_back,
    .expire = local_expire,
    .count = local_count,
    .bytes = local_bytes,
    .free = local_free,
};

/* ---- open ------------------------------------------------------------- */

static void local_on_sync(evutil_socket_t fd, short what, void *arg)
{
    struct history_local *l = arg;

    if (journal_dirty(l->journal))
        journal_sync(l->journal);
}

static int local_start_sync(struct history_local *l, struct event_base *base)
{
    struct timeval period = {0, JOURNAL_BATCH_MS * 1000};

    if (l->journal == NULL || l->cfg.fsync != FSYNC_BATCH)
        return 0;
    l->sync_ev = event_new(base, -1, EV_PERSIST, local_on_sync, l);
    if (l->sync_ev == NULL || event_add(l->sync_ev, &period) < 0)
        return -1;
    return 0;
}

static int local_copy_config(struct history_local *l,
                             const struct config *cfg)
{
    l->cfg = cfg->history;
    l->cfg.dir = NULL;
    if (cfg->history.dir != NULL &&
        (l->cfg.dir = strdup(cfg->history.dir)) == NULL)
        return -1;
    l->source_names = calloc(cfg->nsources + 1, sizeof(char *));
    if (l->source_names == NULL)
        return -1;
    for (; l->nsources < cfg->nsources; l->nsources++) {
        char *name = strdup(cfg->sources[l->nsources].name);
        if (name == NULL)
            return -1;
        l->source_names[l->nsources] = name;
    }
    return 0;
}

struct history *history_local_open(const struct config *cfg,
                                   struct event_base *base, int64_t now_ms,
                                   char *err, size_t errlen)
{
    struct history_local *l = calloc(1, sizeof(*l));
    struct history *h = calloc(1, sizeof(*h));
    int64_t epoch = history_new_epoch(now_ms);

    snprintf(err, errlen, "out of memory");
    if (l == NULL || h == NULL || local_copy_config(l, cfg) < 0)
        goto fail;
    if (l->cfg.dir != NULL) {
        /* A journal that exists keeps its stored epoch. */
        l->journal = journal_open(l->cfg.dir, l->cfg.fsync, epoch, &epoch,
                                  err, errlen);
        if (l->journal == NULL)
            goto fail;
    }
    if ((l->ring = ring_new(&l->cfg, epoch)) == NULL)
        goto fail;
    if (l->journal != NULL && local_restore(l, now_ms, err, errlen) < 0)
        goto fail;
    if (local_start_sync(l, base) < 0) {
        snprintf(err, errlen, "cannot start the fsync timer");
        goto fail;
    }
    h->ops = &local_ops;
    h->impl = l;
    return h;
fail:
    local_free(l);
    free(h);
    return NULL;
}
