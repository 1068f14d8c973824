/*
 * history_key.c - the per-key history backend; see history_key.h.
 *
 * State: the head (newest live entry), a ring of the newest live entries
 * that holds every entry in (cache_from, head], and the range reads in
 * flight, one per waiting stream. A read after `after` is answered from
 * the ring when after >= cache_from, else by a range read of
 * (after, cache_from], then from the ring.
 *
 * A range read outlives what asked for it: a stream that goes away
 * cancels (the fetch forgets its waiter), a history that is freed orphans
 * its fetches (they forget the history); history_key_fetch_done frees
 * either kind when the reply finally comes.
 */
#include "lib/history_key.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/history.h"
#include "lib/message.h"

#define KEY_SEQ_BITS 20
#define KEY_SEQ_MAX (1u << KEY_SEQ_BITS)
#define KEY_MS_MAX (UINT64_C(1) << (64 - KEY_SEQ_BITS))

struct history_key_fetch {
    struct history_key *k;      /* NULL: orphaned (history freed) */
    struct history_waiter *w;   /* NULL: cancelled */
    uint64_t after, until;
    struct message **msgs;      /* owned, once done */
    size_t n;
    bool done, ok, gone;        /* gone: a shared log's `after` is trimmed */
    struct history_key_fetch *next;
};

struct key_lost {
    uint64_t from, to; /* ids in (from, to] were lost */
};

struct history_key {
    char *key;          /* owned */
    char *tag;          /* owned; NULL: per key */
    struct history_key_io io;
    struct history_key_opts opts; /* tag: see above */
    uint64_t head;
    uint64_t cache_from;
    struct message **cache; /* owned: a ring of cap, oldest at first */
    size_t cap, first, count;
    uint64_t bytes;         /* message_size of the cached entries */
    bool live;
    struct key_lost lost[HISTORY_KEY_LOST_MAX];
    size_t nlost;
    struct history_key_fetch *fetches;
};

/* ---- ids ---------------------------------------------------------------- */

static bool key_parse_part(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;

    if (len == 0 || len > 20)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

bool history_key_parse_id(const char *id, size_t len, uint64_t *pos)
{
    const char *dash = memchr(id, '-', len);
    uint64_t ms, seq;

    if (dash == NULL ||
        !key_parse_part(id, (size_t)(dash - id), &ms) ||
        !key_parse_part(dash + 1, len - (size_t)(dash - id) - 1, &seq))
        return false;
    if (ms >= KEY_MS_MAX || seq >= KEY_SEQ_MAX)
        return false;
    *pos = ms << KEY_SEQ_BITS | seq;
    return true;
}

size_t history_key_format_pos(uint64_t pos, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%" PRIu64 "-%" PRIu64,
                     pos >> KEY_SEQ_BITS, pos & (KEY_SEQ_MAX - 1));

    return n < 0 ? 0 : (size_t)n < outlen ? (size_t)n : outlen - 1;
}

/* A shared log's id: "<tag>.<ms>-<seq>". */
static size_t key_format_tagged(const struct history_key *k, uint64_t pos,
                                char *out, size_t outlen)
{
    size_t len = strlen(k->tag);

    if (outlen < len + 2)
        return 0;
    memcpy(out, k->tag, len);
    out[len] = '.';
    return len + 1 + history_key_format_pos(pos, out + len + 1,
                                            outlen - len - 1);
}

/* Gives msg its id from its position (shared log: set by the reader) or
 * its position and id from its entry id (per key). false: none fits. */
static bool key_stamp(const struct history_key *k, struct message *msg)
{
    size_t len;

    if (k->tag != NULL) {
        if (msg->seq == 0)
            return false;
        msg->id_len = key_format_tagged(k, msg->seq, msg->id,
                                        sizeof(msg->id));
        return true;
    }
    if (msg->stream_entry_id == NULL)
        return false;
    len = strlen(msg->stream_entry_id);
    if (len >= MESSAGE_ID_MAX ||
        !history_key_parse_id(msg->stream_entry_id, len, &msg->seq))
        return false;
    memcpy(msg->id, msg->stream_entry_id, len + 1);
    msg->id_len = len;
    return true;
}

/* ---- the cache ---------------------------------------------------------- */

static struct message *key_cache_at(const struct history_key *k, size_t i)
{
    return k->cache[(k->first + i) % k->cap];
}

/* Drops the oldest cached entry: reads before it go to Redis. */
static void key_cache_drop_oldest(struct history_key *k)
{
    struct message *old = k->cache[k->first];

    k->cache_from = old->seq;
    k->bytes -= message_size(old);
    message_unref(old);
    k->first = (k->first + 1) % k->cap;
    k->count--;
}

static void key_cache_push(struct history_key *k, struct message *msg)
{
    if (k->count == k->cap)
        key_cache_drop_oldest(k);
    k->cache[(k->first + k->count) % k->cap] = msg;
    k->count++;
    k->bytes += message_size(msg);
    /* The newest entry always stays (it is being dispatched). */
    while (k->opts.max_bytes > 0 && k->bytes > k->opts.max_bytes &&
           k->count > 1)
        key_cache_drop_oldest(k);
}

/* The ring's entries after `after` (>= cache_from), up to max. */
static size_t key_cache_read(const struct history_key *k, uint64_t after,
                             struct message **out, size_t max)
{
    size_t i = 0, n = 0;

    while (i < k->count && key_cache_at(k, i)->seq <= after)
        i++;
    for (; i < k->count && n < max; i++)
        out[n++] = message_ref(key_cache_at(k, i));
    return n;
}

/* ---- range reads ---------------------------------------------------------- */

static void key_fetch_free(struct history_key_fetch *f)
{
    for (size_t i = 0; i < f->n; i++)
        message_unref(f->msgs[i]);
    free(f->msgs);
    free(f);
}

static void key_fetch_unlink(struct history_key *k, struct history_key_fetch *f)
{
    for (struct history_key_fetch **link = &k->fetches; *link != NULL;
         link = &(*link)->next) {
        if (*link == f) {
            *link = f->next;
            return;
        }
    }
}

static struct history_key_fetch *key_fetch_of(const struct history_key *k,
                                              const struct history_waiter *w)
{
    for (struct history_key_fetch *f = k->fetches; f != NULL; f = f->next)
        if (f->w == w)
            return f;
    return NULL;
}

void history_key_fetch_done(struct history_key_fetch *f,
                            struct message **msgs, size_t n, bool ok)
{
    size_t kept = 0;

    if (f->k == NULL || f->w == NULL || !ok ||
        (n > 0 && (f->msgs = malloc(n * sizeof(*msgs))) == NULL)) {
        for (size_t i = 0; i < n; i++)
            message_unref(msgs[i]);
        n = 0;
        ok = false;
    }
    if (f->k == NULL || f->w == NULL) {
        if (f->k != NULL)
            key_fetch_unlink(f->k, f);
        key_fetch_free(f);
        return;
    }
    /* A shared log reads from the client's own entry (inclusive): when
     * it is gone, so may be what followed it. */
    if (f->k->tag != NULL && f->after != 0 &&
        (n == 0 || msgs[0]->seq != f->after))
        f->gone = true;
    /* Entries whose id does not fit are skipped, as on the live path. */
    for (size_t i = 0; i < n; i++) {
        if (key_stamp(f->k, msgs[i]) && msgs[i]->seq > f->after &&
            msgs[i]->seq <= f->until)
            f->msgs[kept++] = msgs[i];
        else
            message_unref(msgs[i]);
    }
    f->n = kept;
    f->done = true;
    f->ok = ok;
    f->w->wake(f->w);
}

/* Starts reading (after, cache_from] for w. WAIT, or GONE when the read
 * cannot be started (the stream is cut and resumes). */
static enum history_read key_fetch_start(struct history_key *k,
                                         uint64_t after, size_t max,
                                         struct history_waiter *w)
{
    struct history_key_fetch *f = calloc(1, sizeof(*f));
    char after_id[HISTORY_KEY_ID_MAX], until_id[HISTORY_KEY_ID_MAX];
    size_t count;

    if (f == NULL || w == NULL)
        goto fail;
    f->k = k;
    f->w = w;
    f->after = after;
    f->until = k->cache_from;
    history_key_format_pos(after, after_id, sizeof(after_id));
    history_key_format_pos(f->until, until_id, sizeof(until_id));
    /* A shared log's read includes `after` itself: one entry more. */
    count = (max < HISTORY_KEY_FETCH ? max : HISTORY_KEY_FETCH) +
            (k->tag != NULL ? 1 : 0);
    if (k->io.range(k->io.ctx, k->key, after == 0 ? NULL : after_id,
                    k->tag != NULL, until_id, count, f) < 0)
        goto fail;
    f->next = k->fetches;
    k->fetches = f;
    return HISTORY_READ_WAIT;
fail:
    free(f);
    return HISTORY_READ_GONE;
}

/* A finished fetch of w: its entries when it was for `after` (*after
 * moves to its end when it found none: they were deleted). Frees it.
 * Returns true when out holds the answer (*r set). */
static bool key_fetch_take(struct history_key *k, struct history_key_fetch *f,
                           uint64_t *after, struct message **out, size_t max,
                           size_t *n, enum history_read *r)
{
    bool answered = false;

    key_fetch_unlink(k, f);
    if (f->after == *after) {
        if (!f->ok || f->gone) {
            *r = HISTORY_READ_GONE;
            answered = true;
        } else if (f->n > 0) {
            for (size_t i = 0; i < f->n; i++) {
                if (*n < max)
                    out[(*n)++] = f->msgs[i];
                else
                    message_unref(f->msgs[i]);
            }
            f->n = 0;
            *r = HISTORY_READ_OK;
            answered = true;
        } else {
            *after = f->until;
        }
    }
    key_fetch_free(f);
    return answered;
}

/* ---- the history_ops -------------------------------------------------------- */

/* Live entries, in id order; an entry at or before the head (a repeat) or
 * whose id does not fit is refused. */
static int key_append(void *impl, struct message *msg)
{
    struct history_key *k = impl;

    if (!key_stamp(k, msg) || msg->seq <= k->head) {
        message_unref(msg);
        return -1;
    }
    key_cache_push(k, msg);
    k->head = msg->seq;
    return 0;
}

/* A shared log's id: its tag, then a position neither lost nor (while
 * the reader is live) newer than the head. */
static enum history_lookup key_find_tagged(const struct history_key *k,
                                           const char *id, size_t len,
                                           uint64_t *pos)
{
    size_t tlen = strlen(k->tag);

    if (len <= tlen + 1 || memcmp(id, k->tag, tlen) != 0 || id[tlen] != '.' ||
        !history_key_parse_id(id + tlen + 1, len - tlen - 1, pos))
        return HISTORY_UNKNOWN;
    for (size_t i = 0; i < k->nlost; i++)
        if (*pos > k->lost[i].from && *pos <= k->lost[i].to)
            return HISTORY_UNKNOWN;
    if (*pos > k->head && k->live)
        return HISTORY_UNKNOWN;
    return HISTORY_FOUND;
}

static enum history_lookup key_find(void *impl, const char *id, size_t len,
                                    uint64_t *pos)
{
    struct history_key *k = impl;

    if (k->tag != NULL)
        return key_find_tagged(k, id, len, pos);
    return history_key_parse_id(id, len, pos) ? HISTORY_FOUND
                                              : HISTORY_UNKNOWN;
}

static enum history_read key_read(void *impl, uint64_t after,
                                  struct message **out, size_t max,
                                  size_t *n, struct history_waiter *w)
{
    struct history_key *k = impl;
    struct history_key_fetch *f = w != NULL ? key_fetch_of(k, w) : NULL;
    enum history_read r = HISTORY_READ_OK;

    *n = 0;
    if (f != NULL && !f->done)
        return HISTORY_READ_WAIT;
    if (f != NULL && key_fetch_take(k, f, &after, out, max, n, &r))
        return r;
    if (after >= k->head)
        return HISTORY_READ_OK;
    if (after >= k->cache_from) {
        *n = key_cache_read(k, after, out, max);
        return HISTORY_READ_OK;
    }
    return key_fetch_start(k, after, max, w);
}

static void key_cancel(void *impl, struct history_waiter *w)
{
    struct history_key *k = impl;
    struct history_key_fetch *f = key_fetch_of(k, w);

    if (f == NULL)
        return;
    if (!f->done) {
        f->w = NULL; /* freed when its reply comes */
        return;
    }
    key_fetch_unlink(k, f);
    key_fetch_free(f);
}

static uint64_t key_head(void *impl)
{
    struct history_key *k = impl;

    return k->head;
}

static size_t key_format_id(void *impl, uint64_t pos, char *out,
                            size_t outlen)
{
    struct history_key *k = impl;

    if (k->tag != NULL)
        return key_format_tagged(k, pos, out, outlen);
    return history_key_format_pos(pos, out, outlen);
}

static void key_scan_back(void *impl,
                          bool (*cb)(void *arg, const struct message *msg),
                          void *arg)
{
    struct history_key *k = impl;

    for (size_t i = k->count; i-- > 0;)
        if (!cb(arg, key_cache_at(k, i)))
            return;
}

/* Redis trims the key itself (MAXLEN, MINID, EXPIRE); this only keeps
 * the cache within max_age (the newest entry stays). */
static void key_expire(void *impl, int64_t now_ms)
{
    struct history_key *k = impl;

    if (k->opts.max_age_ms <= 0)
        return;
    while (k->count > 1 &&
           key_cache_at(k, 0)->time_ms < now_ms - k->opts.max_age_ms)
        key_cache_drop_oldest(k);
}

static size_t key_count(void *impl)
{
    struct history_key *k = impl;

    return k->count;
}

static uint64_t key_bytes(void *impl)
{
    struct history_key *k = impl;

    return k->bytes;
}

static void key_free(void *impl)
{
    struct history_key *k = impl;

    if (k == NULL)
        return;
    while (k->fetches != NULL) {
        struct history_key_fetch *f = k->fetches;
        k->fetches = f->next;
        if (f->done)
            key_fetch_free(f);
        else
            f->k = NULL; /* freed when its reply comes */
    }
    for (size_t i = 0; i < k->count; i++)
        message_unref(key_cache_at(k, i));
    free(k->cache);
    free(k->tag);
    free(k->key);
    free(k);
}

static const struct history_ops key_ops = {
    .name = "key",
    .append = key_append,
    .find = key_find,
    .read = key_read,
    .cancel = key_cancel,
    .head = key_head,
    .format_id = key_format_id,
    .scan_back = key_scan_back,
    .expire = key_expire,
    .count = key_count,
    .bytes = key_bytes,
    .free = key_free,
};

static bool key_tag_ok(const char *tag)
{
    size_t len = strlen(tag);

    return len > 0 && len <= HISTORY_KEY_TAG_MAX &&
           strspn(tag, "0123456789abcdefghijklmnopqrstuvwxyz") == len;
}

struct history *history_key_new(const char *key, const char *head_id,
                                const struct history_key_io *io,
                                const struct history_key_opts *opts)
{
    struct history_key *k = calloc(1, sizeof(*k));
    struct history *h = calloc(1, sizeof(*h));

    if (k == NULL || h == NULL || (k->key = strdup(key)) == NULL)
        goto fail;
    if (opts != NULL)
        k->opts = *opts;
    k->opts.tag = NULL;
    if (opts != NULL && opts->tag != NULL &&
        (!key_tag_ok(opts->tag) || (k->tag = strdup(opts->tag)) == NULL))
        goto fail;
    k->cap = k->opts.max_events > 0 ? k->opts.max_events : HISTORY_KEY_CACHE;
    if ((k->cache = calloc(k->cap, sizeof(*k->cache))) == NULL)
        goto fail;
    if (head_id != NULL && head_id[0] != '\0' &&
        !history_key_parse_id(head_id, strlen(head_id), &k->head))
        goto fail;
    k->cache_from = k->head;
    k->io = *io;
    h->ops = &key_ops;
    h->impl = k;
    return h;
fail:
    if (k != NULL) {
        free(k->cache);
        free(k->tag);
        free(k->key);
    }
    free(k);
    free(h);
    return NULL;
}

/* ---- a shared log's events ---------------------------------------------- */

void history_key_set_live(struct history *h, bool live)
{
    struct history_key *k = h->impl;

    k->live = live;
}

/* Drops the newest cached entry. */
static void key_cache_drop_newest(struct history_key *k)
{
    struct message *m = key_cache_at(k, k->count - 1);

    k->bytes -= message_size(m);
    message_unref(m);
    k->count--;
}

/* Remembers that ids in (from, to] are unknown (the oldest range goes
 * when there are too many). */
static void key_lost_add(struct history_key *k, uint64_t from, uint64_t to)
{
    if (k->nlost == HISTORY_KEY_LOST_MAX) {
        memmove(&k->lost[0], &k->lost[1],
                (HISTORY_KEY_LOST_MAX - 1) * sizeof(k->lost[0]));
        k->nlost--;
    }
    k->lost[k->nlost++] = (struct key_lost){from, to};
}

void history_key_mark_lost(struct history *h, uint64_t from, uint64_t to)
{
    struct history_key *k = h->impl;

    if (to > from + 1)
        key_lost_add(k, from, to - 1);
}

void history_key_forget_after(struct history *h, uint64_t pos)
{
    struct history_key *k = h->impl;

    if (pos >= k->head)
        return;
    key_lost_add(k, pos, k->head);
    while (k->count > 0 && key_cache_at(k, k->count - 1)->seq > pos)
        key_cache_drop_newest(k);
    if (k->cache_from > pos)
        k->cache_from = pos;
    k->head = pos;
}

int history_key_retag(struct history *h, const char *tag)
{
    struct history_key *k = h->impl;
    char *copy;

    if (!key_tag_ok(tag) || (copy = strdup(tag)) == NULL)
        return -1;
    free(k->tag);
    k->tag = copy;
    while (k->count > 0)
        key_cache_drop_newest(k);
    k->first = 0;
    k->head = k->cache_from = 0;
    k->nlost = 0;
    return 0;
}
