/*
 * topic.h - topic patterns: matching, validation, and the index that maps
 * a message's topic to the feeds that want it.
 *
 * Each source type has its own pattern syntax (SPEC 3.1): MQTT filters
 * ("+" one level, "#" the rest, "$" topics not matched by a leading
 * wildcard), Redis globs (Redis's own stringmatchlen rules: * ? [..] and
 * backslash escapes), and exact keys for redis-stream.
 *
 * The index is on the per-message hot path: matching a topic must cost
 * about the same with 10 or 10,000 registered patterns. MQTT filters live
 * in a trie keyed by level; literal patterns of any type in a hash table;
 * only Redis globs with wildcards are scanned.
 */
#ifndef SLUICE_TOPIC_H
#define SLUICE_TOPIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* MQTT filter match (MQTT 3.1.1 section 4.7). */
bool topic_mqtt_match(const char *filter, const char *topic, size_t len);

/* Redis glob match, same semantics as Redis's stringmatchlen(). */
bool topic_glob_match(const char *pattern, size_t plen, const char *s,
                      size_t slen);

/* Where the index keeps a pattern that is not literal. */
enum topic_index_kind {
    TOPIC_INDEX_LITERAL, /* every pattern is an exact name */
    TOPIC_INDEX_LEVELS,  /* a trie by level (MQTT filters) */
    TOPIC_INDEX_SCAN,    /* a list scanned per message (Redis globs) */
};

/* How a derived upstream subscription is made. */
enum topic_upstream {
    TOPIC_UPSTREAM_PATTERN,    /* always as a pattern (MQTT filters) */
    TOPIC_UPSTREAM_EXACT,      /* always exact (stream keys) */
    TOPIC_UPSTREAM_BY_LITERAL, /* exact when literal, else a pattern */
};

/*
 * One bus's pattern syntax (SPEC 3.1). Adding a bus adds one entry to the
 * table in topic.c; routing, the index and the bridge only go through it.
 */
struct topic_syntax {
    enum source_type type;
    bool (*match)(const char *pattern, const char *topic, size_t len);
    /* 0, or -1 with err filled; NULL: any non-empty pattern is valid. */
    int (*validate)(const char *pattern, char *err, size_t errlen);
    const char *wildcards;      /* bytes that make a pattern non-literal */
    const char *unsafe;         /* bytes a path parameter may not carry */
    char level_sep;             /* '/': parameters stand for whole levels */
    const char *param_wildcard; /* upstream form of {name}; NULL: no
                                   parameters allowed in patterns */
    const char *rest_wildcard;  /* upstream form of a last {name*} */
    bool per_key;               /* a {name} makes a per-key pattern: each
                                   resolved key is read on demand for the
                                   streams that watch it (redis-stream) */
    enum topic_index_kind index;
    enum topic_upstream upstream;
};

/* The syntax of a bus type (never NULL). */
const struct topic_syntax *topic_syntax_of(enum source_type type);

/* Dispatches on type: mqtt filter, redis glob, redis-stream exact. */
bool topic_match(enum source_type type, const char *pattern,
                 const char *topic, size_t len);

/* True when pattern has no wildcard for its type (an exact name). */
bool topic_is_literal(enum source_type type, const char *pattern);

/* Checks a pattern's syntax for its type (MQTT: "#" only as the whole
 * last level, "+" only as a whole level, not empty; redis-stream: no
 * wildcard needed, any non-empty key). 0, or -1 with err filled. */
int topic_validate(enum source_type type, const char *pattern, char *err,
                   size_t errlen);

/* The injection rule of SPEC 3.1: true when a path parameter value may be
 * substituted into a pattern without changing its meaning. mqtt: no "+",
 * "#", and no "/" unless multi_level ({name*}); redis: no * ? [ ] or "\\";
 * all types: no NUL, not empty. */
bool topic_param_safe(enum source_type type, const char *value, size_t len,
                      bool multi_level);

/* One concrete pattern of a stream: source index + type + pattern. */
struct topic_pattern {
    uint32_t source;
    enum source_type type;
    char *pattern; /* owned */
};

/* What one stream watches: a message matches when its source/topic
 * matches one of `patterns` and, when narrow.count > 0, its topic also
 * matches one of `narrow` in its own source's syntax (?topic=). */
struct topic_filter {
    struct topic_pattern *patterns;
    size_t count;
    struct config_strv narrow; /* pos unused (NULL) */
};

bool topic_filter_match(const struct topic_filter *f, uint32_t source,
                        enum source_type type, const char *topic,
                        size_t len);

/* Canonical string for a filter (sorted, deduplicated patterns and
 * narrows), so that streams with equal filters can share one feed.
 * Returns a malloc'd string (caller frees), NULL on ENOMEM. */
char *topic_filter_key(const struct topic_filter *f);

/* Frees the filter's contents (not f itself) and zeroes it. */
void topic_filter_clear(struct topic_filter *f);

#endif
