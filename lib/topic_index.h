/*
 * topic_index.h - (source, pattern) -> owners, matched per message.
 *
 * The bridge registers each feed's patterns here; topic_index_match()
 * names the feeds whose patterns match one message's topic. The per-message
 * hot path: matching costs about the same with 10 or 10,000 registered
 * patterns (see topic_index.c for the structure).
 */
#ifndef SLUICE_TOPIC_INDEX_H
#define SLUICE_TOPIC_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* The index: (source, pattern) -> owners. */
struct topic_index;

struct topic_index *topic_index_new(void);
void topic_index_free(struct topic_index *idx);

/* Registers owner for pattern (copied). The same (pattern, owner) pair
 * may be added several times; each add needs one remove. 0 or -1. */
int topic_index_add(struct topic_index *idx, uint32_t source,
                    enum source_type type, const char *pattern, void *owner);
void topic_index_remove(struct topic_index *idx, uint32_t source,
                        enum source_type type, const char *pattern,
                        void *owner);

typedef void (*topic_index_cb)(void *owner, void *arg);

/* Calls cb for every registered (pattern, owner) whose pattern matches
 * topic. An owner registered with several matching patterns is called
 * once per pattern: callers dedupe. cb must not add to or remove from
 * the index. */
void topic_index_match(const struct topic_index *idx, uint32_t source,
                       enum source_type type, const char *topic, size_t len,
                       topic_index_cb cb, void *arg);

#endif
