/*
 * route.h - URL path templates and their topic patterns.
 *
 * A route (SPEC 3) maps a path template such as /sites/{site}/temp or
 * /mqtt/{topic*} to topic templates "SOURCE:PATTERN" that may use the
 * captured parameters. The route table is built once per config load
 * (and again on SIGHUP) and is immutable afterwards.
 *
 * At request time route_table_match() finds the route for a raw path and
 * captures percent-decoded parameters; route_resolve() substitutes them
 * into the topic templates, refusing values that would change a
 * pattern's meaning (the 400 of SPEC 3.1). route_topic_upstream() gives a
 * template's upstream form (a parameter becomes "+", "#" for a last {x*},
 * for MQTT and "*" for Redis), from which bridge/upstream.c derives each
 * source's subscriptions.
 */
#ifndef SLUICE_ROUTE_H
#define SLUICE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/topic.h"
#include "config/config.h"

#define ROUTE_MAX_PARAMS 16

struct route; /* one compiled route; private to route.c */
struct route_table;

/*
 * Compiles every route of cfg (which must outlive the table). Checks path
 * templates ({name}, a last {name*}, unique names, no reserved path
 * /healthz /readyz /metrics, no two routes with the same template), topic
 * templates (known source, parameters that exist in the path, pattern
 * syntax via topic_validate, redis-stream patterns without wildcards).
 * Returns a new table (free with route_table_free) or NULL with *errors a
 * malloc'd "FILE:LINE:COL: message\n" list.
 */
struct route_table *route_table_build(const struct config *cfg,
                                      char **errors);
void route_table_free(struct route_table *t);

size_t route_table_count(const struct route_table *t);
const struct route *route_table_get(const struct route_table *t, size_t i);

/* The route's config and its index in cfg->routes. */
const struct route_config *route_config_of(const struct route *r);
size_t route_index(const struct route *r);

/* Captured, percent-decoded parameter values. */
struct route_params {
    size_t count;
    const char *names[ROUTE_MAX_PARAMS]; /* borrowed from the route */
    char *values[ROUTE_MAX_PARAMS];      /* owned */
};

void route_params_clear(struct route_params *p);

enum route_lookup {
    ROUTE_FOUND,
    ROUTE_NOT_FOUND,
    ROUTE_BAD_PATH, /* bad percent-encoding, NUL, empty parameter: 400 */
};

/* Finds the route for raw_path (as received: percent-encoded, without
 * query). Literal segments win over parameters when several routes
 * match. On ROUTE_FOUND fills *route and *params (clear them with
 * route_params_clear). */
enum route_lookup route_table_match(const struct route_table *t,
                                    const char *raw_path,
                                    const struct route **route,
                                    struct route_params *params);

/*
 * Substitutes params into the route's topic templates and fills *out
 * (clear with topic_filter_clear). Returns 0, or -1 with a short reason
 * in err (for a 400 body, e.g. "parameter site: '+' not allowed") when a
 * value would change a pattern's meaning.
 */
int route_resolve(const struct route_table *t, const struct route *r,
                  const struct route_params *params, struct topic_filter *out,
                  char *err, size_t errlen);

size_t route_topic_count(const struct route *r);

/* True for a per-key route: its one topic is a redis-stream key with a
 * {param}, read on demand while streams watch it (bridge/keyed.c). */
bool route_is_per_key(const struct route *r);

/* The source index of topic template j of r. */
uint32_t route_topic_source(const struct route *r, size_t j);

/*
 * The upstream subscription that covers topic template j of r in every
 * request: each parameter replaced by its bus's wildcard (topic_syntax).
 * Returns a malloc'd string (caller frees), NULL on ENOMEM.
 */
char *route_topic_upstream(const struct route *r, size_t j);

#endif
