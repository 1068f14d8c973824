/*
 * writer.c - the stream writer's shared state; see writer.h.
 */
#include "bridge/writer.h"

#include <stdlib.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "bridge/stream.h"

/* Runs after the turn's other callbacks (it is activated behind them), so
 * all events that reached a stream in this turn go out in one writev. */
static void writer_on_write(evutil_socket_t fd, short what, void *arg)
{
    struct writer *w = arg;

    while (w->dirty != NULL) {
        struct stream *s = w->dirty;
        w->dirty = s->dirty_next;
        stream_write(s);
    }
}

struct writer *writer_new(struct event_base *base)
{
    struct writer *w = calloc(1, sizeof(*w));

    if (w == NULL)
        return NULL;
    w->scratch = evbuffer_new();
    w->zscratch = evbuffer_new();
    w->write_ev = event_new(base, -1, 0, writer_on_write, w);
    if (w->scratch == NULL || w->zscratch == NULL || w->write_ev == NULL) {
        writer_free(w);
        return NULL;
    }
    return w;
}

void writer_free(struct writer *w)
{
    if (w == NULL)
        return;
    if (w->write_ev != NULL)
        event_free(w->write_ev);
    if (w->scratch != NULL)
        evbuffer_free(w->scratch);
    if (w->zscratch != NULL)
        evbuffer_free(w->zscratch);
    free(w->framebuf);
    free(w);
}

int writer_frame_reserve(struct writer *w, size_t len)
{
    char *buf;
    size_t cap = w->framebuf_cap > 0 ? w->framebuf_cap : 4096;

    if (len <= w->framebuf_cap)
        return 0;
    while (cap < len)
        cap *= 2;
    buf = realloc(w->framebuf, cap);
    if (buf == NULL)
        return -1;
    w->framebuf = buf;
    w->framebuf_cap = cap;
    return 0;
}

void writer_mark_dirty(struct writer *w, struct stream *s)
{
    if (s->dirty)
        return;
    s->dirty = true;
    s->dirty_next = w->dirty;
    w->dirty = s;
    event_active(w->write_ev, EV_TIMEOUT, 0);
}

void writer_unmark_dirty(struct writer *w, struct stream *s)
{
    struct stream **link = &w->dirty;

    while (*link != NULL && *link != s)
        link = &(*link)->dirty_next;
    if (*link == s)
        *link = s->dirty_next;
    s->dirty = false;
}
