/*
 * mqtt_subs.c - the MQTT adapter's subscription table and duplicate
 * suppression (see mqtt_subs.h; the connection is mqtt.c's).
 *
 * One upstream message is one event (SPEC 3.1). What mosquitto 2.0 sends
 * when our filters overlap ("a/#", "a/+", "a/b") was measured, not
 * assumed: live messages come once per client under MQTT 3.1.1 and once
 * per matching subscription under MQTT 5; retained messages come once per
 * matching filter on SUBSCRIBE under both, grouped by filter (so copies of
 * one retained message are not adjacent). Hence two mechanisms, neither
 * of which can take a real repeat of a live message for a copy (counting
 * copies would, under 3.1.1):
 *   - MQTT 5: every filter is subscribed with its own subscription
 *     identifier, and a copy is delivered only if it carries the
 *     identifier of the oldest acknowledged filter that matches the topic
 *     (mqtt_subs_v5_is_copy). This also covers brokers that coalesce
 *     copies.
 *   - MQTT 3.1.1: the protocol cannot tell a copy from a repeat, but it
 *     marks every message sent because of a SUBSCRIBE with retain=1 and
 *     every live one with retain=0. A retained message (same topic and
 *     payload) already delivered on this connection is not delivered
 *     again (mqtt_subs_seen_*). Live messages are delivered as they come:
 *     a 3.1.1 broker that sends one live copy per subscription (the spec
 *     allows it; mosquitto does not) would bring duplicates.
 *
 * Invariant: a filter stays in the table until the broker can no longer
 * send copies for it (LEAVING until its UNSUBACK), and ids only grow on
 * one connection, so "older filter" is "smaller id".
 */
#include "adapters/mqtt_subs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mqtt_protocol.h>

#include "lib/log.h"
#include "lib/topic.h"

/* Set slots for retained-message hashes: initial size (power of 2). */
enum { MQTT_SEEN_INITIAL = 64 };

const char *mqtt_subs_strerror(int rc)
{
    if (rc == MOSQ_ERR_ERRNO && errno != 0)
        return strerror(errno);
    return mosquitto_strerror(rc);
}

/* ---- the filter table -------------------------------------------------- */

void mqtt_subs_init(struct mqtt_subs *subs, bool v5)
{
    memset(subs, 0, sizeof(*subs));
    subs->v5 = v5;
    subs->next_id = 1;
}

void mqtt_subs_clear(struct mqtt_subs *subs)
{
    for (size_t i = 0; i < subs->nfilters; i++)
        free(subs->filters[i].text);
    subs->nfilters = 0;
    subs->next_id = 1;
}

/* Appends a filter (text copied) in state PENDING with the next id.
 * Returns the entry, or NULL on ENOMEM. */
static struct mqtt_filter *mqtt_subs_add(struct mqtt_subs *subs,
                                         const char *text)
{
    struct mqtt_filter *f;

    if (subs->nfilters == subs->filters_cap) {
        size_t cap = subs->filters_cap ? subs->filters_cap * 2 : 8;
        struct mqtt_filter *grown =
            realloc(subs->filters, cap * sizeof(*grown));

        if (grown == NULL)
            return NULL;
        subs->filters = grown;
        subs->filters_cap = cap;
    }
    f = &subs->filters[subs->nfilters];
    f->text = strdup(text);
    if (f->text == NULL)
        return NULL;
    f->id = subs->next_id++;
    f->mid = 0;
    f->state = MQTT_FILTER_PENDING;
    subs->nfilters++;
    return f;
}

/* Removes entry i (order does not matter: ids carry it). */
static void mqtt_subs_drop(struct mqtt_subs *subs, size_t i)
{
    free(subs->filters[i].text);
    subs->filters[i] = subs->filters[--subs->nfilters];
}

/* The entry in `state` whose SUBSCRIBE/UNSUBSCRIBE had `mid`, or NULL. */
static struct mqtt_filter *mqtt_subs_by_mid(struct mqtt_subs *subs, int mid,
                                            enum mqtt_filter_state state)
{
    for (size_t i = 0; i < subs->nfilters; i++)
        if (subs->filters[i].mid == mid && subs->filters[i].state == state)
            return &subs->filters[i];
    return NULL;
}

bool mqtt_subs_pending(const struct mqtt_subs *subs)
{
    for (size_t i = 0; i < subs->nfilters; i++)
        if (subs->filters[i].state == MQTT_FILTER_PENDING)
            return true;
    return false;
}

/* ---- the retained set (MQTT 3.1.1) ------------------------------------- */

static void mqtt_subs_seen_clear(struct mqtt_seen *seen)
{
    free(seen->slots);
    memset(seen, 0, sizeof(*seen));
}

/* FNV-1a over topic, a NUL (never inside an MQTT topic) and payload.
 * Hand-written: ten lines, and no library here offers a plain 64-bit
 * hash. Not keyed: a publisher able to craft collisions could hide one
 * retained message from a 3.1.1 source, at the cost of 2^32 attempts. */
static uint64_t mqtt_subs_retained_hash(const char *topic, size_t topic_len,
                                        const void *payload, size_t len)
{
    const unsigned char *t = (const unsigned char *)topic;
    const unsigned char *p = payload;
    uint64_t h = 14695981039346656037ULL;

    for (size_t i = 0; i < topic_len; i++)
        h = (h ^ t[i]) * 1099511628211ULL;
    h = h * 1099511628211ULL; /* the NUL separator */
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    return h ? h : 1;
}

/* Inserts without growing; true if h was already there. */
static bool mqtt_subs_seen_put(struct mqtt_seen *seen, uint64_t h)
{
    size_t mask = seen->cap - 1;

    for (size_t i = h & mask;; i = (i + 1) & mask) {
        if (seen->slots[i] == h)
            return true;
        if (seen->slots[i] == 0) {
            seen->slots[i] = h;
            seen->count++;
            return false;
        }
    }
}

/*
 * Records h; returns 1 if it was already recorded, 0 if new, -1 on ENOMEM
 * (then nothing is recorded). Grows at half load.
 */
static int mqtt_subs_seen_insert(struct mqtt_seen *seen, uint64_t h)
{
    if (seen->count + 1 > seen->cap / 2) {
        struct mqtt_seen grown = {
            .cap = seen->cap ? seen->cap * 2 : MQTT_SEEN_INITIAL,
        };

        grown.slots = calloc(grown.cap, sizeof(uint64_t));
        if (grown.slots == NULL)
            return -1;
        for (size_t i = 0; i < seen->cap; i++)
            if (seen->slots[i] != 0)
                mqtt_subs_seen_put(&grown, seen->slots[i]);
        free(seen->slots);
        *seen = grown;
    }
    return mqtt_subs_seen_put(seen, h) ? 1 : 0;
}

void mqtt_subs_reset(struct mqtt_subs *subs)
{
    mqtt_subs_clear(subs);
    mqtt_subs_seen_clear(&subs->seen);
}

void mqtt_subs_free(struct mqtt_subs *subs)
{
    mqtt_subs_clear(subs);
    free(subs->filters);
    subs->filters = NULL;
    subs->filters_cap = 0;
    mqtt_subs_seen_clear(&subs->seen);
}

/* ---- SUBSCRIBE and UNSUBSCRIBE ----------------------------------------- */

int mqtt_subs_subscribe(struct mqtt_subs *subs, struct mosquitto *mosq,
                        const char *text, int qos, char *why, size_t whylen)
{
    struct mqtt_filter *f = mqtt_subs_add(subs, text);
    mosquitto_property *props = NULL;
    int rc = MOSQ_ERR_NOMEM;

    if (f == NULL) {
        snprintf(why, whylen, "subscribe failed: out of memory");
        return -1;
    }
    errno = 0;
    if (!subs->v5)
        rc = mosquitto_subscribe(mosq, &f->mid, text, qos);
    else if (mosquitto_property_add_varint(&props,
                                           MQTT_PROP_SUBSCRIPTION_IDENTIFIER,
                                           f->id) == MOSQ_ERR_SUCCESS)
        rc = mosquitto_subscribe_v5(mosq, &f->mid, text, qos, 0, props);
    mosquitto_property_free_all(&props);
    if (rc != MOSQ_ERR_SUCCESS) {
        snprintf(why, whylen, "subscribe failed: %s", mqtt_subs_strerror(rc));
        mqtt_subs_drop(subs, subs->nfilters - 1);
        return -1;
    }
    return 0;
}

/* Sends UNSUBSCRIBE for entry i; it stays (LEAVING) until the UNSUBACK,
 * since until then the broker may still send copies for it. */
static void mqtt_subs_unsubscribe(struct mqtt_subs *subs,
                                  struct mosquitto *mosq, size_t i)
{
    struct mqtt_filter *f = &subs->filters[i];

    if (f->state == MQTT_FILTER_LEAVING)
        return;
    if (mosquitto_unsubscribe(mosq, &f->mid, f->text) == MOSQ_ERR_SUCCESS)
        f->state = MQTT_FILTER_LEAVING;
    else
        mqtt_subs_drop(subs, i);
}

static bool mqtt_subs_strv_has(const struct config_strv *v, const char *s)
{
    for (size_t i = 0; i < v->count; i++)
        if (strcmp(v->items[i], s) == 0)
            return true;
    return false;
}

/* See mqtt_subs.h. Quadratic, which is fine for the few filters of a
 * source, on reload only. */
int mqtt_subs_apply(struct mqtt_subs *subs, struct mosquitto *mosq,
                    const struct config_strv *want, int qos, const char *name)
{
    char why[160]; /* a source status's size (adapter.h) */
    int rc = 0;

    for (size_t i = subs->nfilters; i-- > 0;)
        if (!mqtt_subs_strv_has(want, subs->filters[i].text))
            mqtt_subs_unsubscribe(subs, mosq, i);
    for (size_t j = 0; j < want->count; j++) {
        bool have = false;

        for (size_t i = 0; i < subs->nfilters && !have; i++)
            have = subs->filters[i].state != MQTT_FILTER_LEAVING &&
                   strcmp(subs->filters[i].text, want->items[j]) == 0;
        if (!have && mqtt_subs_subscribe(subs, mosq, want->items[j], qos, why,
                                         sizeof(why)) != 0) {
            log_warn("source %s: %s", name, why);
            rc = -1;
        }
    }
    return rc;
}

const struct mqtt_filter *mqtt_subs_suback(struct mqtt_subs *subs, int mid,
                                           int qos_count,
                                           const int *granted_qos)
{
    struct mqtt_filter *f = mqtt_subs_by_mid(subs, mid, MQTT_FILTER_PENDING);

    if (f == NULL)
        return NULL;
    if (qos_count >= 1 && granted_qos[0] >= 0x80)
        f->state = MQTT_FILTER_REFUSED;
    else
        f->state = MQTT_FILTER_ACTIVE;
    return f;
}

void mqtt_subs_unsuback(struct mqtt_subs *subs, int mid)
{
    struct mqtt_filter *f = mqtt_subs_by_mid(subs, mid, MQTT_FILTER_LEAVING);

    if (f != NULL)
        mqtt_subs_drop(subs, (size_t)(f - subs->filters));
}

/* ---- copies ------------------------------------------------------------ */

/* The entry with subscription identifier id that matches the topic and
 * is, or is about to be, subscribed; NULL if none. */
static const struct mqtt_filter *
mqtt_subs_v5_filter(const struct mqtt_subs *subs, uint32_t id,
                    const char *topic, size_t len)
{
    for (size_t i = 0; i < subs->nfilters; i++) {
        const struct mqtt_filter *f = &subs->filters[i];

        if (f->id == id)
            return f->state != MQTT_FILTER_REFUSED &&
                           topic_mqtt_match(f->text, topic, len)
                       ? f
                       : NULL;
    }
    return NULL;
}

/*
 * MQTT 5: true when this PUBLISH is a copy to drop. Let s be the smallest
 * of its subscription identifiers that names one of our filters matching
 * the topic. The broker sends (or coalesces into one PUBLISH) a copy for
 * every subscription it held when it routed the message, and a filter
 * whose SUBACK we have (ACTIVE, or LEAVING before its UNSUBACK) was held
 * by then: TCP delivers the SUBACK before any copy routed after it. So if
 * such a filter with an id below s matches too, its copy carries the
 * message and this one is dropped. Ids grow in subscription order, so
 * the retained messages re-sent for a newly added filter are dropped
 * when an older filter already brought them. A PUBLISH without an id of
 * ours (a subscription left in a persistent session by an older config)
 * is delivered. One case can still duplicate: messages queued in a
 * persistent session arrive before our SUBACKs, so overlapping copies of
 * those are all delivered.
 * Hot path: one pass over the filters (few per source) when several
 * overlap; nothing when there is one filter.
 */
static bool mqtt_subs_v5_is_copy(const struct mqtt_subs *subs,
                                 const char *topic, size_t len,
                                 const mosquitto_property *props)
{
    const mosquitto_property *p;
    uint32_t id, best = UINT32_MAX;

    if (subs->nfilters <= 1)
        return false;
    p = mosquitto_property_read_varint(props, MQTT_PROP_SUBSCRIPTION_IDENTIFIER,
                                       &id, false);
    for (; p != NULL; p = mosquitto_property_read_varint(
                          p, MQTT_PROP_SUBSCRIPTION_IDENTIFIER, &id, true))
        if (id < best && mqtt_subs_v5_filter(subs, id, topic, len) != NULL)
            best = id;
    if (best == UINT32_MAX)
        return false;
    for (size_t i = 0; i < subs->nfilters; i++) {
        const struct mqtt_filter *f = &subs->filters[i];

        if (f->id < best &&
            (f->state == MQTT_FILTER_ACTIVE ||
             f->state == MQTT_FILTER_LEAVING) &&
            topic_mqtt_match(f->text, topic, len))
            return true;
    }
    return false;
}

/* MQTT 3.1.1: true for a retained message (retain=1, so sent because of
 * a SUBSCRIBE) already delivered on this connection: the copy for a
 * second matching filter, or a re-send after resubscribe. */
static bool mqtt_subs_v4_is_copy(struct mqtt_subs *subs,
                                 const struct mosquitto_message *m,
                                 size_t topic_len)
{
    uint64_t h;

    if (!m->retain)
        return false;
    h = mqtt_subs_retained_hash(m->topic, topic_len, m->payload,
                                (size_t)m->payloadlen);
    return mqtt_subs_seen_insert(&subs->seen, h) == 1;
}

bool mqtt_subs_is_copy(struct mqtt_subs *subs,
                       const struct mosquitto_message *m, size_t topic_len,
                       const mosquitto_property *props)
{
    if (subs->v5)
        return mqtt_subs_v5_is_copy(subs, m->topic, topic_len, props);
    return mqtt_subs_v4_is_copy(subs, m, topic_len);
}
