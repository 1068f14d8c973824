/*
 * lastvalue.c - see lastvalue.h. A hash table on (source, topic) for the
 * update, and a doubly linked list in update order for the walk and the
 * eviction of the least recently updated topic.
 */
#include "lib/lastvalue.h"

#include <stdbool.h>
#include <stdlib.h>

#include "lib/hashtab.h"
#include "lib/message.h"

struct lastvalue_entry {
    struct hashtab_entry he;    /* key: the message's topic */
    struct message *msg;        /* one reference */
    struct lastvalue_entry *prev, *next;
};

struct lastvalue {
    struct hashtab table;
    struct lastvalue_entry *oldest, *newest;
    size_t max_topics;
    uint64_t max_bytes;
    uint64_t bytes;
};

struct lastvalue *lastvalue_new(size_t max_topics, uint64_t max_bytes)
{
    struct lastvalue *lv = calloc(1, sizeof(*lv));

    if (lv == NULL)
        return NULL;
    lv->max_topics = max_topics > 0 ? max_topics : 1;
    lv->max_bytes = max_bytes;
    return lv;
}

static void lastvalue_unlink(struct lastvalue *lv, struct lastvalue_entry *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        lv->oldest = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        lv->newest = e->prev;
    e->prev = e->next = NULL;
}

static void lastvalue_append(struct lastvalue *lv, struct lastvalue_entry *e)
{
    e->prev = lv->newest;
    e->next = NULL;
    if (lv->newest != NULL)
        lv->newest->next = e;
    else
        lv->oldest = e;
    lv->newest = e;
}

static void lastvalue_drop(struct lastvalue *lv, struct lastvalue_entry *e)
{
    lastvalue_unlink(lv, e);
    hashtab_remove(&lv->table, &e->he);
    lv->bytes -= message_size(e->msg);
    message_unref(e->msg);
    free(e);
}

void lastvalue_free(struct lastvalue *lv)
{
    if (lv == NULL)
        return;
    while (lv->oldest != NULL)
        lastvalue_drop(lv, lv->oldest);
    hashtab_release(&lv->table);
    free(lv);
}

/* Replaces e's message with msg (a new reference) and moves it last. */
static void lastvalue_update(struct lastvalue *lv, struct lastvalue_entry *e,
                             struct message *msg)
{
    lv->bytes -= message_size(e->msg);
    message_unref(e->msg);
    e->msg = message_ref(msg);
    /* The key points into the message: follow it. */
    e->he.key = msg->topic;
    lv->bytes += message_size(msg);
    lastvalue_unlink(lv, e);
    lastvalue_append(lv, e);
}

static void lastvalue_insert(struct lastvalue *lv, struct message *msg)
{
    struct lastvalue_entry *e = calloc(1, sizeof(*e));

    if (e == NULL)
        return; /* the snapshot misses a topic; the stream does not */
    e->msg = message_ref(msg);
    e->he.ns = msg->source;
    e->he.key = msg->topic;
    e->he.keylen = msg->topic_len;
    if (hashtab_insert(&lv->table, &e->he) < 0) {
        message_unref(e->msg);
        free(e);
        return;
    }
    lv->bytes += message_size(msg);
    lastvalue_append(lv, e);
}

void lastvalue_put(struct lastvalue *lv, struct message *msg)
{
    struct hashtab_entry *he = hashtab_find(&lv->table, msg->source,
                                            msg->topic, msg->topic_len);
    struct lastvalue_entry *e = (struct lastvalue_entry *)he;
    bool clears = msg->has_mqtt && msg->retain && msg->payload_len == 0;

    if (clears) {
        if (e != NULL)
            lastvalue_drop(lv, e);
        return;
    }
    if (e != NULL)
        lastvalue_update(lv, e, msg);
    else
        lastvalue_insert(lv, msg);
    while (lv->oldest != lv->newest &&
           (lv->table.count > lv->max_topics || lv->bytes > lv->max_bytes))
        lastvalue_drop(lv, lv->oldest);
}

void lastvalue_each(const struct lastvalue *lv,
                    void (*cb)(struct message *msg, void *arg), void *arg)
{
    for (const struct lastvalue_entry *e = lv->oldest; e != NULL;
         e = e->next)
        cb(e->msg, arg);
}

size_t lastvalue_count(const struct lastvalue *lv)
{
    return lv->table.count;
}
