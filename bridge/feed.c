/*
 * feed.c - streams grouped by what they watch; see feed.h.
 *
 * Feeds are found by key with a linear walk of bridge->feeds at connect
 * time. That is O(feeds) per new connection, fine for the common case of
 * few distinct URLs; the per-message path never walks this list (it goes
 * through the topic index).
 */
#include "bridge/feed.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge/bridge.h"
#include "bridge/keyed.h"
#include "lib/message.h"
#include "lib/route.h"
#include "lib/topic_index.h"
#include "bridge/stream.h"

/* Streams share a feed when they have the same route, the same frame
 * settings (which a reload may change) and the same resolved filter. */
static char *feed_make_key(const struct route *r, const struct topic_filter *f)
{
    const struct route_config *rc = route_config_of(r);
    char *fkey = topic_filter_key(f);
    char *key;
    size_t len;

    if (fkey == NULL)
        return NULL;
    len = strlen(fkey) + (rc->event_name ? strlen(rc->event_name) : 0) + 48;
    key = malloc(len);
    if (key != NULL)
        snprintf(key, len, "%zu|%d|%d|%s|%s", route_index(r), (int)rc->format,
                 (int)rc->event, rc->event_name ? rc->event_name : "", fkey);
    free(fkey);
    return key;
}

static struct feed *feed_find(struct bridge *b, const char *key)
{
    for (struct feed *f = b->feeds; f != NULL; f = f->next)
        if (strcmp(f->key, key) == 0)
            return f;
    return NULL;
}

static void feed_unindex(struct feed *f, size_t upto)
{
    for (size_t i = 0; i < upto; i++) {
        const struct topic_pattern *p = &f->filter.patterns[i];
        topic_index_remove(f->bridge->index, p->source, p->type, p->pattern,
                           f);
    }
}

static void feed_destroy(struct feed *f)
{
    free(f->key);
    free(f->event_line);
    topic_filter_clear(&f->filter);
    free(f);
}

/* Builds a feed for r, taking over filter and key. NULL on ENOMEM. */
static struct feed *feed_create(struct bridge *b, const struct route *r,
                                struct topic_filter *filter, char *key)
{
    const struct route_config *rc = route_config_of(r);
    struct feed *f = calloc(1, sizeof(*f));
    size_t i;

    if (f == NULL) {
        free(key);
        topic_filter_clear(filter);
        return NULL;
    }
    f->bridge = b;
    f->key = key;
    f->filter = *filter;
    memset(filter, 0, sizeof(*filter));
    f->route_index = route_index(r);
    f->format = rc->format;
    f->event = rc->event;
    if (rc->event == ROUTE_EVENT_FIXED) {
        size_t len = strlen(rc->event_name) + 9;
        f->event_line = malloc(len);
        if (f->event_line == NULL)
            goto fail;
        f->event_line_len = (size_t)snprintf(f->event_line, len,
                                             "event: %s\n", rc->event_name);
    }
    /* A per-key feed is fed by its key's reader (bridge/keyed.c) only,
     * never by the topic index. */
    f->per_key = route_is_per_key(r);
    for (i = 0; !f->per_key && i < f->filter.count; i++) {
        const struct topic_pattern *p = &f->filter.patterns[i];
        if (topic_index_add(b->index, p->source, p->type, p->pattern, f) < 0)
            break;
    }
    if (!f->per_key && i < f->filter.count) {
        feed_unindex(f, i);
        goto fail;
    }
    f->next = b->feeds;
    if (b->feeds != NULL)
        b->feeds->prev = f;
    b->feeds = f;
    return f;
fail:
    feed_destroy(f);
    return NULL;
}

struct feed *feed_acquire(struct bridge *b, const struct route *r,
                          struct topic_filter *filter)
{
    char *key = feed_make_key(r, filter);
    struct feed *f;

    if (key == NULL) {
        topic_filter_clear(filter);
        return NULL;
    }
    f = feed_find(b, key);
    if (f != NULL) {
        free(key);
        topic_filter_clear(filter);
        return f;
    }
    return feed_create(b, r, filter, key);
}

bool feed_exists(struct bridge *b, const struct route *r,
                 const struct topic_filter *filter)
{
    char *key = feed_make_key(r, filter);
    bool found = key != NULL && feed_find(b, key) != NULL;

    free(key);
    return found;
}

void feed_attach(struct feed *f, struct stream *s)
{
    s->feed = f;
    s->feed_prev = NULL;
    s->feed_next = f->streams;
    if (f->streams != NULL)
        f->streams->feed_prev = s;
    f->streams = s;
    f->nstreams++;
}

static void feed_release(struct feed *f)
{
    struct bridge *b = f->bridge;

    if (!f->per_key)
        feed_unindex(f, f->filter.count);
    keyed_feed_release(f);
    if (f->prev != NULL)
        f->prev->next = f->next;
    else
        b->feeds = f->next;
    if (f->next != NULL)
        f->next->prev = f->prev;
    feed_destroy(f);
}

static void feed_unlink(struct feed *f, struct stream *s)
{
    if (s->feed_prev != NULL)
        s->feed_prev->feed_next = s->feed_next;
    else
        f->streams = s->feed_next;
    if (s->feed_next != NULL)
        s->feed_next->feed_prev = s->feed_prev;
    s->feed = NULL;
    s->feed_prev = s->feed_next = NULL;
    f->nstreams--;
}

void feed_drop_if_unused(struct feed *f)
{
    if (f->nstreams == 0)
        feed_release(f);
}

void feed_detach(struct feed *f, struct stream *s)
{
    feed_unlink(f, s);
    if (f->nstreams == 0)
        feed_release(f);
}

void feed_move(struct stream *s, struct feed *to)
{
    struct feed *from = s->feed;

    if (from == to)
        return;
    feed_unlink(from, s);
    feed_attach(to, s);
    if (from->nstreams == 0)
        feed_release(from);
}

bool feed_matches(const struct feed *f, const struct message *msg)
{
    return topic_filter_match(&f->filter, msg->source, msg->type, msg->topic,
                              msg->topic_len);
}

/*
 * Hot path, called by the index once per matching (pattern, feed). A feed
 * with several patterns matching the same topic is seen several times;
 * last_seq makes it deliver once. Narrowing (?topic=) is the only check
 * the index did not already do.
 */
static void feed_on_match(void *owner, void *arg)
{
    struct feed *f = owner;
    struct message *msg = arg;
    struct frame frame;

    if (f->last_seq == msg->seq)
        return;
    f->last_seq = msg->seq;
    if (f->filter.narrow.count > 0 && !feed_matches(f, msg))
        return;
    /* Formatted once here, copied to every stream below. */
    if (stream_frame_build(f->bridge, f, msg, &frame) < 0)
        return; /* out of memory: streams resume by id later */
    /* stream_deliver never unlinks a stream (closing is deferred to the
     * reap list), so this walk is safe. */
    for (struct stream *s = f->streams; s != NULL; s = s->feed_next)
        if (s->live)
            stream_deliver(s, &frame, msg->seq);
}

void feed_deliver(struct feed *f, struct message *msg)
{
    feed_on_match(f, msg);
}

void feed_dispatch(struct bridge *b, struct message *msg)
{
    topic_index_match(b->index, msg->source, msg->type, msg->topic,
                      msg->topic_len, feed_on_match, msg);
}

void feed_free_all(struct bridge *b)
{
    while (b->feeds != NULL)
        feed_release(b->feeds);
}
