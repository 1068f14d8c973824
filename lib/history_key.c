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
    bool done, ok;
    struct history_key_fetch *next;
};

struct history_key {
    char *key; /* owned */
    struct history_key_io io;
    uint64_t head;
    uint64_t cache_from;
    struct message *cache[HISTORY_KEY_CACHE]; /* a ring, oldest at first */
    size_t first, count;
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

/* Gives msg its position and id from its entry id. false: none fits. */
static bool key_stamp(struct message *msg)
{
    size_t len;

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

/* ---- the ring ------------------------------------------------------------ */

static struct message *key_cache_at(const struct history_key *k, size_t i)
{
    return k->cache[(k->first + i) % HISTORY_KEY_CACHE];
}

static void key_cache_push(struct history_key *k, struct message *msg)
{
    if (k->count == HISTORY_KEY_CACHE) {
        struct message *old = k->cache[k->first];
        k->cache_from = old->seq;
        message_unref(old);
        k->first = (k->first + 1) % HISTORY_KEY_CACHE;
        k->count--;
    }
    k->cache[(k->first + k->count) % HISTORY_KEY_CACHE] = msg;
    k->count++;
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
    /* Entries whose id does not fit are skipped, as on the live path. */
    for (size_t i = 0; i < n; i++) {
        if (key_stamp(msgs[i]) && msgs[i]->seq > f->after &&
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

    if (f == NULL || w == NULL)
        goto fail;
    f->k = k;
    f->w = w;
    f->after = after;
    f->until = k->cache_from;
    history_key_format_pos(after, after_id, sizeof(after_id));
    history_key_format_pos(f->until, until_id, sizeof(until_id));
    if (k->io.range(k->io.ctx, k->key, after == 0 ? NULL : after_id,
                    until_id, max < HISTORY_KEY_FETCH ? max : HISTORY_KEY_FETCH,
                    f) < 0)
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
        if (!f->ok) {
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

    if (!key_stamp(msg) || msg->seq <= k->head) {
        message_unref(msg);
        return -1;
    }
    key_cache_push(k, msg);
    k->head = msg->seq;
    return 0;
}

static enum history_lookup key_find(void *impl, const char *id, size_t len,
                                    uint64_t *pos)
{
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

static void key_expire(void *impl, int64_t now_ms)
{
    /* Redis trims the key (MAXLEN, XTRIM, EXPIRE); the ring is bounded. */
}

static size_t key_count(void *impl)
{
    struct history_key *k = impl;

    return k->count;
}

static uint64_t key_bytes(void *impl)
{
    struct history_key *k = impl;
    uint64_t total = 0;

    for (size_t i = 0; i < k->count; i++)
        total += message_size(key_cache_at(k, i));
    return total;
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

struct history *history_key_new(const char *key, const char *head_id,
                                const struct history_key_io *io)
{
    struct history_key *k = calloc(1, sizeof(*k));
    struct history *h = calloc(1, sizeof(*h));

    if (k == NULL || h == NULL || (k->key = strdup(key)) == NULL)
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
    if (k != NULL)
        free(k->key);
    free(k);
    free(h);
    return NULL;
}
