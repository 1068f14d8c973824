/*
 * mqtt_subs.h - the MQTT adapter's subscription table and its duplicate
 * suppression, for adapters/mqtt.c only (not part of adapter.h).
 *
 * mqtt.c owns the connection (libmosquitto handle, libevent wiring,
 * states, retries); this module owns what was subscribed on it: one
 * entry per filter with its MQTT 5 subscription identifier and the mid
 * of its SUBSCRIBE/UNSUBSCRIBE, the SUBACK/UNSUBACK bookkeeping, and the
 * two mechanisms that make one upstream message one event (see the
 * design note at the top of mqtt_subs.c). Both start empty with every
 * connection: mqtt.c calls mqtt_subs_reset when a connection ends.
 *
 * Ownership: a struct mqtt_subs owns its filter texts, its table and its
 * hash set (mqtt_subs_free releases them); the libmosquitto handle it
 * sends SUBSCRIBE/UNSUBSCRIBE on is borrowed for the call. Everything
 * runs on the loop thread, from mqtt.c's callbacks.
 */
#ifndef SLUICE_MQTT_SUBS_H
#define SLUICE_MQTT_SUBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mosquitto.h>

#include "config/config.h"

enum mqtt_filter_state {
    MQTT_FILTER_PENDING, /* SUBSCRIBE sent, no SUBACK yet */
    MQTT_FILTER_ACTIVE,  /* SUBACK granted it */
    MQTT_FILTER_REFUSED, /* SUBACK refused it (an ACL, say) */
    MQTT_FILTER_LEAVING, /* UNSUBSCRIBE sent, no UNSUBACK yet */
};

/* One filter as subscribed on the current connection. */
struct mqtt_filter {
    char *text;  /* owned */
    uint32_t id; /* MQTT 5 subscription identifier; grows with
                  * the order of subscription on a connection */
    int mid;     /* of its SUBSCRIBE, or UNSUBSCRIBE if leaving */
    enum mqtt_filter_state state;
};

/* A set of 64-bit hashes (open addressing, 0 marks a free slot): the
 * retained messages delivered on this connection, for MQTT 3.1.1. */
struct mqtt_seen {
    uint64_t *slots; /* owned */
    size_t cap;      /* 0 or a power of two */
    size_t count;
};

/* The subscriptions of one adapter's current connection. */
struct mqtt_subs {
    bool v5; /* protocol 5: subscription identifiers, else retained set */
    struct mqtt_filter *filters; /* owned; order carries no meaning */
    size_t nfilters, filters_cap;
    uint32_t next_id;
    struct mqtt_seen seen;
};

/* Sets up an empty table (no allocation) for MQTT 5 when v5, else 3.1.1. */
void mqtt_subs_init(struct mqtt_subs *subs, bool v5);

/* Forgets every filter (ids start again at 1); the retained set stays.
 * For a CONNACK, before the whole filter set is subscribed again. */
void mqtt_subs_clear(struct mqtt_subs *subs);

/* Forgets every filter and every retained hash: the connection ended. */
void mqtt_subs_reset(struct mqtt_subs *subs);

/* Frees everything the table owns; it may be initialised again. */
void mqtt_subs_free(struct mqtt_subs *subs);

/*
 * Subscribes one filter (text copied) at qos on mosq, in a SUBSCRIBE of
 * its own so that under MQTT 5 it carries its own subscription
 * identifier, and records it PENDING until its SUBACK. Returns 0, or -1
 * with why filled ("subscribe failed: ...") and nothing recorded.
 */
int mqtt_subs_subscribe(struct mqtt_subs *subs, struct mosquitto *mosq,
                        const char *text, int qos, char *why, size_t whylen);

/*
 * Applies a new filter set on a live connection: UNSUBSCRIBE the gone
 * ones first (so that once a new filter delivers, the gone ones are
 * gone), then SUBSCRIBE the new ones at qos. A filter that fails is
 * logged as a warning of source `name`. Returns 0, or -1 if one failed.
 */
int mqtt_subs_apply(struct mqtt_subs *subs, struct mosquitto *mosq,
                    const struct config_strv *want, int qos, const char *name);

/* True while a SUBSCRIBE of the table awaits its SUBACK. */
bool mqtt_subs_pending(const struct mqtt_subs *subs);

/*
 * A SUBACK for mid: the PENDING filter it answers becomes ACTIVE, or
 * REFUSED when the broker refused it (a code of 0x80 and up: the 3.1.1
 * failure code and the MQTT 5 reason codes). Returns that filter (owned
 * by the table, valid until its next change), or NULL when mid is not
 * one of ours (from an earlier connection).
 */
const struct mqtt_filter *mqtt_subs_suback(struct mqtt_subs *subs, int mid,
                                           int qos_count,
                                           const int *granted_qos);

/* An UNSUBACK for mid: the LEAVING filter it answers is forgotten. */
void mqtt_subs_unsuback(struct mqtt_subs *subs, int mid);

/*
 * True when this PUBLISH is a copy of one already delivered on this
 * connection and must be dropped (props: its MQTT 5 properties, NULL
 * under 3.1.1). May record m in the retained set (3.1.1); a hash that
 * cannot be recorded for lack of memory lets the message through.
 * Hot path: called for every message.
 */
bool mqtt_subs_is_copy(struct mqtt_subs *subs,
                       const struct mosquitto_message *m, size_t topic_len,
                       const mosquitto_property *props);

/* mosquitto_strerror, but errno's text for MOSQ_ERR_ERRNO: the error
 * text of a libmosquitto call, for both MQTT files' status messages. */
const char *mqtt_subs_strerror(int rc);

#endif
