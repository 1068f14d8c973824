/*
 * lastvalue.h - the latest message of each (source, topic): what a
 * snapshot sends (SPEC 4, "snapshot").
 *
 * Entries are kept in the order of their last update, which is history
 * order, so a snapshot walks them oldest first without sorting. The cache
 * is bounded like the history (count and bytes, from the history
 * config): past either bound the least recently updated topic goes. It
 * shares messages with the history (references), so it costs memory of
 * its own only for topics whose latest message the history has evicted.
 * An MQTT retained message with an empty payload clears its topic, as it
 * clears the retained message on the broker.
 */
#ifndef SLUICE_LASTVALUE_H
#define SLUICE_LASTVALUE_H

#include <stddef.h>
#include <stdint.h>

struct lastvalue;
struct message;

/* Returns a new, empty cache (NULL on ENOMEM). */
struct lastvalue *lastvalue_new(size_t max_topics, uint64_t max_bytes);
void lastvalue_free(struct lastvalue *lv);

/* Records msg as its topic's latest (takes a new reference). */
void lastvalue_put(struct lastvalue *lv, struct message *msg);

/* Calls cb for each topic's latest message, oldest update first. cb must
 * not modify the cache. */
void lastvalue_each(const struct lastvalue *lv,
                    void (*cb)(struct message *msg, void *arg), void *arg);

size_t lastvalue_count(const struct lastvalue *lv);

#endif
