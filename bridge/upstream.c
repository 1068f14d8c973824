/*
 * upstream.c - a source's upstream subscriptions; see upstream.h.
 */
#include "bridge/upstream.h"

#include <stdlib.h>
#include <string.h>

#include "adapters/adapter.h"
#include "config/config.h"
#include "lib/route.h"
#include "lib/topic.h"

/* Adds the upstream form of topic template j of r to out. 0 or -1. */
static int upstream_add_template(const struct route *r, size_t j,
                                 enum source_type type,
                                 struct subscriptions *out)
{
    const struct topic_syntax *syn = topic_syntax_of(type);
    char *p = route_topic_upstream(r, j);
    bool exact;

    if (p == NULL)
        return -1;
    exact = syn->upstream == TOPIC_UPSTREAM_EXACT ||
            (syn->upstream == TOPIC_UPSTREAM_BY_LITERAL &&
             topic_is_literal(type, p));
    return config_strv_add_unique(exact ? &out->exact : &out->patterns, p);
}

/* Derivation skips disabled routes (they answer 204 and never stream). */
static int upstream_derive(const struct route_table *routes,
                           size_t source_index, enum source_type type,
                           struct subscriptions *out)
{
    for (size_t i = 0; i < route_table_count(routes); i++) {
        const struct route *r = route_table_get(routes, i);
        if (!route_config_of(r)->enabled)
            continue;
        if (route_is_per_key(r))
            continue; /* see upstream_keyed */
        for (size_t j = 0; j < route_topic_count(r); j++) {
            if (route_topic_source(r, j) == source_index &&
                upstream_add_template(r, j, type, out) < 0)
                return -1;
        }
    }
    return 0;
}

/* Per-key routes are read on demand, key by key (bridge/keyed.c):
 * nothing to subscribe to upstream, but the source must be ready for
 * them, also when it lists its own streams. */
static bool upstream_keyed(const struct route_table *routes,
                           size_t source_index)
{
    for (size_t i = 0; i < route_table_count(routes); i++) {
        const struct route *r = route_table_get(routes, i);
        if (route_config_of(r)->enabled && route_is_per_key(r) &&
            route_topic_source(r, 0) == source_index)
            return true;
    }
    return false;
}

int upstream_subscriptions(const struct config *cfg,
                           const struct route_table *routes,
                           size_t source_index, struct subscriptions *out)
{
    const struct source_config *src;
    int rc;

    memset(out, 0, sizeof(*out));
    if (source_index >= cfg->nsources)
        return -1;
    src = &cfg->sources[source_index];
    rc = adapter_for_type(src->type)->configured(src, out);
    if (rc == 0)
        rc = upstream_derive(routes, source_index, src->type, out);
    out->keyed = upstream_keyed(routes, source_index);
    if (rc < 0) {
        subscriptions_free(out);
        return -1;
    }
    return 0;
}
