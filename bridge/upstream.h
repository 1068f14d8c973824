/*
 * upstream.h - what each source subscribes to upstream (SPEC 3.1).
 *
 * A source's subscriptions are the ones its config lists (the adapter
 * reads its own keys: adapter_ops.configured), else the upstream forms of
 * every enabled route's topic templates for that source
 * (route_topic_upstream), deduplicated and sorted into exact names and
 * patterns by the bus's topic syntax. Computed at start and on SIGHUP.
 */
#ifndef SLUICE_UPSTREAM_H
#define SLUICE_UPSTREAM_H

#include <stddef.h>

struct config;
struct route_table;
struct subscriptions;

/*
 * Fills *out with the subscriptions of source `source_index` of cfg (the
 * config the routes were built from). Returns 0, or -1 on ENOMEM; free
 * with subscriptions_free. Output positions are NULL.
 */
int upstream_subscriptions(const struct config *cfg,
                           const struct route_table *routes,
                           size_t source_index, struct subscriptions *out);

#endif
