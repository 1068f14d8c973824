/*
 * ring.c - the in-memory event log; see ring.h for the design.
 *
 * The ring has a power-of-two capacity that grows by doubling up to the
 * smallest power of two >= max_events, so memory follows use. Slot of
 * seq s is (s & mask). Invariant: the entries first_seq .. next_seq-1 are
 * all present, and bytes is the sum of their message_size().
 */
#include "lib/ring.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/message.h"

#define HISTORY_MIN_CAPACITY 64

struct ring {
    struct history_config cfg; /* dir is not owned (unused here) */
    char epoch[16];            /* base 36 of the epoch */
    size_t epoch_len;
    struct message **ring;
    uint64_t capacity;         /* power of two */
    uint64_t first_seq;
    uint64_t next_seq;
    uint64_t bytes;
};

static size_t ring_base36(uint64_t v, char *out)
{
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    char tmp[16];
    size_t n = 0;

    do {
        tmp[n++] = digits[v % 36];
        v /= 36;
    } while (v > 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    return n;
}

struct ring *ring_new(const struct history_config *cfg, int64_t epoch)
{
    struct ring *h = calloc(1, sizeof(*h));

    if (h == NULL)
        return NULL;
    h->cfg = *cfg;
    h->cfg.dir = NULL;
    h->epoch_len = ring_base36((uint64_t)epoch, h->epoch);
    h->capacity = HISTORY_MIN_CAPACITY;
    h->ring = calloc(h->capacity, sizeof(*h->ring));
    if (h->ring == NULL) {
        free(h);
        return NULL;
    }
    h->first_seq = 1;
    h->next_seq = 1;
    return h;
}

void ring_free(struct ring *h)
{
    if (h == NULL)
        return;
    for (uint64_t s = h->first_seq; s < h->next_seq; s++)
        message_unref(h->ring[s & (h->capacity - 1)]);
    free(h->ring);
    free(h);
}

/* Doubles the ring, keeping every entry at its seq's new slot. */
static int ring_grow(struct ring *h)
{
    uint64_t cap = h->capacity * 2;
    struct message **ring = calloc(cap, sizeof(*ring));

    if (ring == NULL)
        return -1;
    for (uint64_t s = h->first_seq; s < h->next_seq; s++)
        ring[s & (cap - 1)] = h->ring[s & (h->capacity - 1)];
    free(h->ring);
    h->ring = ring;
    h->capacity = cap;
    return 0;
}

static void ring_evict_oldest(struct ring *h)
{
    struct message **slot = &h->ring[h->first_seq & (h->capacity - 1)];

    h->bytes -= message_size(*slot);
    message_unref(*slot);
    *slot = NULL;
    h->first_seq++;
}

/* True when one more entry fits without evicting. */
static bool ring_has_room(const struct ring *h)
{
    return h->next_seq - h->first_seq < h->capacity;
}

int ring_append(struct ring *h, struct message *msg)
{
    if (h->next_seq - h->first_seq >= h->cfg.max_events)
        ring_evict_oldest(h);
    if (!ring_has_room(h) && ring_grow(h) < 0) {
        if (h->first_seq == h->next_seq) {
            message_unref(msg);
            return -1;
        }
        ring_evict_oldest(h); /* could not grow: make room instead */
    }
    msg->seq = h->next_seq++;
    msg->id_len = ring_format_id(h, msg->seq, msg->id, sizeof(msg->id));
    h->ring[msg->seq & (h->capacity - 1)] = msg;
    h->bytes += message_size(msg);
    while (h->bytes > h->cfg.max_bytes && h->first_seq < msg->seq)
        ring_evict_oldest(h);
    return 0;
}

int ring_restore(struct ring *h, struct message *msg)
{
    if (msg->seq < h->next_seq) {
        message_unref(msg);
        return -1;
    }
    if (msg->seq > h->next_seq) {
        while (h->first_seq < h->next_seq)
            ring_evict_oldest(h);
        h->first_seq = h->next_seq = msg->seq;
    }
    return ring_append(h, msg); /* gives it seq == next_seq */
}

void ring_set_epoch(struct ring *h, int64_t epoch)
{
    h->epoch_len = ring_base36((uint64_t)epoch, h->epoch);
    for (uint64_t s = h->first_seq; s < h->next_seq; s++) {
        struct message *m = h->ring[s & (h->capacity - 1)];
        m->id_len = ring_format_id(h, s, m->id, sizeof(m->id));
    }
}

void ring_expire(struct ring *h, int64_t now_ms)
{
    int64_t cutoff = now_ms - h->cfg.max_age_ms;

    if (h->cfg.max_age_ms <= 0)
        return;
    /* Runs from a timer, never during a dispatch: it may empty the ring. */
    while (h->first_seq < h->next_seq &&
           h->ring[h->first_seq & (h->capacity - 1)]->time_ms < cutoff)
        ring_evict_oldest(h);
}

uint64_t ring_first_seq(const struct ring *h)
{
    return h->first_seq;
}

uint64_t ring_next_seq(const struct ring *h)
{
    return h->next_seq;
}

struct message *ring_at(const struct ring *h, uint64_t seq)
{
    if (seq < h->first_seq || seq >= h->next_seq)
        return NULL;
    return h->ring[seq & (h->capacity - 1)];
}

size_t ring_count(const struct ring *h)
{
    return (size_t)(h->next_seq - h->first_seq);
}

uint64_t ring_bytes(const struct ring *h)
{
    return h->bytes;
}

size_t ring_format_id(const struct ring *h, uint64_t seq, char *out,
                         size_t outlen)
{
    int n = snprintf(out, outlen, "%s-%llu", h->epoch,
                     (unsigned long long)seq);

    return n < 0 ? 0 : (size_t)n;
}

/* Parses "<epoch>-<seq>" for this history's epoch; false if malformed or
 * from another epoch. */
static bool ring_parse_id(const struct ring *h, const char *id,
                             size_t len, uint64_t *seq)
{
    uint64_t v = 0;
    size_t i;

    if (len <= h->epoch_len + 1 || len > h->epoch_len + 21)
        return false;
    if (memcmp(id, h->epoch, h->epoch_len) != 0 || id[h->epoch_len] != '-')
        return false;
    /* Only the id as issued: "<epoch>-0004" is not event 4. */
    if (id[h->epoch_len + 1] == '0')
        return false;
    for (i = h->epoch_len + 1; i < len; i++) {
        if (id[i] < '0' || id[i] > '9')
            return false;
        if (v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(id[i] - '0');
    }
    *seq = v;
    return true;
}

enum history_lookup ring_find(const struct ring *h, const char *id,
                                 size_t len, uint64_t *seq)
{
    uint64_t s;

    if (!ring_parse_id(h, id, len, &s) || s == 0 || s >= h->next_seq)
        return HISTORY_UNKNOWN;
    /* Everything after s is stored iff s + 1 >= first_seq. */
    if (s + 1 < h->first_seq)
        return HISTORY_EXPIRED;
    *seq = s;
    return HISTORY_FOUND;
}
