/*
 * history.c - the history interface: each call goes to the backend's ops
 * (see history.h). Nothing here knows how or where events are kept.
 */
#include "lib/history.h"

#include <stdlib.h>
#include <sys/random.h>

int history_append(struct history *h, struct message *msg)
{
    return h->ops->append(h->impl, msg);
}

enum history_lookup history_find(struct history *h, const char *id,
                                 size_t len, uint64_t *pos)
{
    return h->ops->find(h->impl, id, len, pos);
}

enum history_read history_read(struct history *h, uint64_t after,
                               struct message **out, size_t max, size_t *n,
                               struct history_waiter *w)
{
    return h->ops->read(h->impl, after, out, max, n, w);
}

void history_cancel(struct history *h, struct history_waiter *w)
{
    h->ops->cancel(h->impl, w);
}

uint64_t history_head(struct history *h)
{
    return h->ops->head(h->impl);
}

size_t history_format_id(struct history *h, uint64_t pos, char *out,
                         size_t outlen)
{
    return h->ops->format_id(h->impl, pos, out, outlen);
}

void history_scan_back(struct history *h,
                       bool (*cb)(void *arg, const struct message *msg),
                       void *arg)
{
    h->ops->scan_back(h->impl, cb, arg);
}

void history_expire(struct history *h, int64_t now_ms)
{
    h->ops->expire(h->impl, now_ms);
}

size_t history_count(struct history *h)
{
    return h->ops->count(h->impl);
}

uint64_t history_bytes(struct history *h)
{
    return h->ops->bytes(h->impl);
}

void history_free(struct history *h)
{
    if (h == NULL)
        return;
    h->ops->free(h->impl);
    free(h);
}

int64_t history_new_epoch(int64_t now_ms)
{
    uint32_t r = 0;

    /* getrandom without flags blocks only before the kernel's pool is
     * initialised at boot; a short read leaves fewer random bits, which
     * still beats none. */
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) < 0)
        r = (uint32_t)now_ms * 2654435761u;
    return (int64_t)(((uint64_t)now_ms << 20) | (r & 0xFFFFF));
}
