/*
 * test_route.c - unit tests for lib/route.c: building the route table
 * (with the exact FILE:LINE:COL errors), matching request paths
 * (specificity, percent-decoding, star parameters, limits), resolving
 * parameters into patterns, and deriving upstream subscriptions.
 *
 * Configs are built by hand in C (no YAML). Upstream subscriptions are
 * derived by bridge/upstream.c from route_topic_upstream(), so this binary
 * also links that file and the adapters' table.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/adapter.h"
#include "bridge/upstream.h"
#include "lib/route.h"

#define FX_MAX_ROUTES 12
#define FX_MAX_TOPICS 4

/* A hand-made config: sources plant (mqtt), cache (redis), audit
 * (redis-stream). Route i's item sits at line 10*(i+1) col 5, its path at
 * col 11, topic j at line 10*(i+1)+1+j col 9. */
struct fixture {
    struct config cfg;
    struct source_config sources[3];
    struct route_config routes[FX_MAX_ROUTES];
    char *topics[FX_MAX_ROUTES][FX_MAX_TOPICS];
    struct config_pos topic_pos[FX_MAX_ROUTES][FX_MAX_TOPICS];
    struct route_table *table;
    char *errors;
};

static struct fixture *fx_new(void)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    static const char *const names[] = {"plant", "cache", "audit"};
    static const enum source_type types[] = {SOURCE_MQTT, SOURCE_REDIS,
                                             SOURCE_REDIS_STREAM};
    for (int i = 0; i < 3; i++) {
        fx->sources[i].name = (char *)names[i];
        fx->sources[i].type = types[i];
    }
    fx->cfg.file = "t.yaml";
    fx->cfg.sources = fx->sources;
    fx->cfg.nsources = 3;
    fx->cfg.routes = fx->routes;
    return fx;
}

/* Adds a route with up to FX_MAX_TOPICS topic templates (NULL-ended). */
static struct route_config *fx_route(struct fixture *fx, const char *path,
                                     ...)
{
    size_t i = fx->cfg.nroutes++;
    assert_true(i < FX_MAX_ROUTES);
    struct route_config *rc = &fx->routes[i];
    int line = 10 * (int)(i + 1);
    rc->path = (char *)path;
    rc->pos = (struct config_pos){line, 5};
    rc->path_pos = (struct config_pos){line, 11};
    rc->enabled = true;
    rc->topics.items = fx->topics[i];
    rc->topics.pos = fx->topic_pos[i];
    va_list ap;
    va_start(ap, path);
    for (const char *t = va_arg(ap, const char *); t != NULL;
         t = va_arg(ap, const char *)) {
        size_t j = rc->topics.count++;
        assert_true(j < FX_MAX_TOPICS);
        fx->topics[i][j] = (char *)t;
        fx->topic_pos[i][j] = (struct config_pos){line + 1 + (int)j, 9};
    }
    va_end(ap);
    return rc;
}

static void fx_build(struct fixture *fx)
{
    fx->table = route_table_build(&fx->cfg, &fx->errors);
}

static void fx_free(struct fixture *fx)
{
    route_table_free(fx->table);
    free(fx->errors);
    free(fx);
}

/* Builds and expects exactly `want` as the error text. */
static void expect_errors(struct fixture *fx, const char *want)
{
    fx_build(fx);
    assert_null(fx->table);
    assert_non_null(fx->errors);
    assert_string_equal(fx->errors, want);
}

/* ------------------------------------------------------------------ */
/* Building                                                            */
/* ------------------------------------------------------------------ */

static void test_build_ok(void **state)
{
    (void)state;
    struct fixture *fx = fx_new();
    fx_route(fx, "/sites/{site}/temperature",
             "plant:factory/{site}/+/temperature", "cache:temp:{site}", NULL);
    fx_route(fx, "/mqtt/{topic*}", "plant:{topic}", NULL);
    fx_route(fx, "/dev/{id}", "plant:dev-{id}/state", NULL);
    fx_route(fx, "/audit", "audit:audit", NULL);
    fx_route(fx, "/", "cache:root", NULL);
    fx_route(fx, "/caf%C3%A9/", "cache:a:b:c", NULL); /* ':' after first */
    fx_build(fx);
    assert_null(fx->errors);
    assert_non_null(fx->table);
    assert_int_equal(route_table_count(fx->table), 6);
    const struct route *r = route_table_get(fx->table, 1);
    assert_non_null(r);
    assert_int_equal(route_index(r), 1);
    assert_ptr_equal(route_config_of(r), &fx->routes[1]);
    assert_null(route_table_get(fx->table, 6));
    fx_free(fx);
}

static void test_build_unknown_source(void **state)
{
    (void)state;
    struct fixture *fx = fx_new();
    fx_route(fx, "/a", "plant:a", "x:a", NULL);
    expect_errors(fx, "t.yaml:12:9: unknown source 'x' "
                      "(sources: plant, cache, audit)\n");
    fx_free(fx);
}

static void test_build_collects_all_errors(void **state)
{
    (void)state;
    struct fixture *fx = fx_new();
    fx_route(fx, "/healthz", "plant:a", NULL);
    fx_route(fx, "/a/{x}", "plant:a/{y}", "nocolon", "audit:s-{x}", NULL);
    fx_route(fx, "/b/{x}", "plant:a/#/b", "plant:a{x}#", NULL);
    fx_route(fx, "/c/{x}", "cache:c", NULL);
    fx_route(fx, "/c/{y}", "cache:c", NULL);
    fx_route(fx, "/d", NULL);
    expect_errors(fx,
        "t.yaml:10:11: path '/healthz' is reserved\n"
        "t.yaml:21:9: parameter '{y}' is not in the path\n"
        "t.yaml:22:9: topic 'nocolon' must be SOURCE:PATTERN\n"
        "t.yaml:23:9: a per-key topic (a {param} in a redis-stream key) "
        "must be the route's only topic\n"
        "t.yaml:31:9: bad mqtt pattern 'a/#/b': '#' must be the whole "
        "last level\n"
        "t.yaml:32:9: bad mqtt pattern 'a{x}#': '#' must be the whole "
        "last level\n"
        "t.yaml:50:11: duplicate path '/c/{y}' (same as the route at "
        "40:11)\n"
        "t.yaml:60:5: route has no topics\n");
    fx_free(fx);
}

struct path_error {
    const char *path;
    const char *message;
};

static const struct path_error path_errors[] = {
    {"a/b", "path must start with '/'"},
    {"", "path must start with '/'"},
    {"/readyz", "path '/readyz' is reserved"},
    {"/metrics", "path '/metrics' is reserved"},
    {"/a//b", "empty segment in path"},
    {"/a/dev-{id}", "a parameter must be a whole path segment ('dev-{id}')"},
    {"/a/{x}{y}", "a parameter must be a whole path segment ('{x}{y}')"},
    {"/a/{x", "unbalanced '{' in path"},
    {"/a/x}", "unbalanced '}' in path"},
    {"/a/{{x}}", "nested '{' in path"},
    {"/a/{1x}", "bad parameter name '{1x}' (use [A-Za-z_][A-Za-z0-9_]*)"},
    {"/a/{}", "bad parameter name '{}' (use [A-Za-z_][A-Za-z0-9_]*)"},
    {"/a/{x-y}", "bad parameter name '{x-y}' (use [A-Za-z_][A-Za-z0-9_]*)"},
    {"/a/{*}", "bad parameter name '{*}' (use [A-Za-z_][A-Za-z0-9_]*)"},
    {"/a/{x*}/b", "'{x*}' must be the last path segment"},
    {"/a/{x}/{x}", "duplicate parameter '{x}'"},
    {"/a/{x}/{x*}", "duplicate parameter '{x}'"},
    {"/a%zz", "bad percent-encoding in path"},
    {"/a%00", "bad percent-encoding in path"},
    {"/a%2", "bad percent-encoding in path"},
};

static void test_build_path_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(path_errors) / sizeof(*path_errors); i++) {
        struct fixture *fx = fx_new();
        char want[256];
        fx_route(fx, path_errors[i].path, "cache:x", NULL);
        snprintf(want, sizeof(want), "t.yaml:10:11: %s\n",
                 path_errors[i].message);
        expect_errors(fx, want);
        fx_free(fx);
    }
}

static void test_build_too_many_params(void **state)
{
    (void)state;
    struct fixture *fx = fx_new();
    char path[256] = "";
    for (int i = 0; i <= ROUTE_MAX_PARAMS; i++)
        snprintf(path + strlen(path), sizeof(path) - strlen(path), "/{p%d}",
                 i);
    fx_route(fx, path, "cache:x", NULL);
    expect_errors(fx, "t.yaml:10:11: too many parameters (at most 16)\n");
    fx_free(fx);

    /* Exactly 16 is fine. */
    fx = fx_new();
    path[0] = '\0';
    for (int i = 0; i < ROUTE_MAX_PARAMS; i++)
        snprintf(path + strlen(path), sizeof(path) - strlen(path), "/{p%d}",
                 i);
    fx_route(fx, path, "cache:x", NULL);
    fx_build(fx);
    assert_null(fx->errors);
    assert_non_null(fx->table);
    fx_free(fx);
}

static void test_build_topic_errors(void **state)
{
    (void)state;
    struct fixture *fx = fx_new();
    fx_route(fx, "/a/{x}", "plant:a/{x", "plant:a/{1}", "cache:", NULL);
    fx_route(fx, "/b/{x}", "audit:", "plant:a/+b", ":x", NULL);
    expect_errors(fx,
        "t.yaml:11:9: unbalanced '{' in topic pattern\n"
        "t.yaml:12:9: bad parameter '{1}' in topic pattern\n"
        "t.yaml:13:9: bad redis pattern '': empty pattern\n"
        "t.yaml:21:9: bad redis-stream pattern '': empty pattern\n"
        "t.yaml:22:9: bad mqtt pattern 'a/+b': '+' must be a whole level\n"
        "t.yaml:23:9: unknown source '' (sources: plant, cache, audit)\n");
    fx_free(fx);
}

static void test_build_bad_path_skips_param_lookup(void **state)
{
    (void)state;
    struct fixture *fx = fx_new();
    /* The path is refused; its {x} is not reported again for the topic. */
    fx_route(fx, "/a/{x", "plant:a/{x}", NULL);
    expect_errors(fx, "t.yaml:10:11: unbalanced '{' in path\n");
    fx_free(fx);
}

/* ------------------------------------------------------------------ */
/* Matching                                                            */
/* ------------------------------------------------------------------ */

static struct fixture *match_fixture(void)
{
    struct fixture *fx = fx_new();
    fx_route(fx, "/sites/{site}/temperature",                 /* 0 */
             "plant:factory/{site}/+/temperature", NULL);
    fx_route(fx, "/sites/main/temperature", "plant:main", NULL); /* 1 */
    fx_route(fx, "/sites/{site}/{metric}", "plant:{site}/{metric}",
             NULL);                                          /* 2 */
    fx_route(fx, "/mqtt/{topic*}", "plant:{topic}", NULL);   /* 3 */
    fx_route(fx, "/mqtt/special/{x}", "plant:special/{x}", NULL); /* 4 */
    fx_route(fx, "/", "cache:root", NULL);                   /* 5 */
    fx_route(fx, "/trail/", "cache:trail", NULL);            /* 6 */
    fx_route(fx, "/redis/{channel}", "cache:{channel}", NULL); /* 7 */
    fx_route(fx, "/caf%C3%A9", "cache:cafe", NULL);          /* 8 */
    fx_build(fx);
    assert_null(fx->errors);
    assert_non_null(fx->table);
    return fx;
}

struct match_case {
    const char *path;
    enum route_lookup want;
    int route;          /* index in the config, when found */
    const char *value0; /* first parameter value, or NULL for none */
    const char *value1;
};

static const struct match_case match_cases[] = {
    {"/sites/main/temperature", ROUTE_FOUND, 1, NULL, NULL},
    {"/sites/m%61in/temperature", ROUTE_FOUND, 1, NULL, NULL},
    {"/sites/x/temperature", ROUTE_FOUND, 0, "x", NULL},
    {"/sites/x/humidity", ROUTE_FOUND, 2, "x", "humidity"},
    {"/sites/main/humidity", ROUTE_FOUND, 2, "main", "humidity"},
    {"/sites/a%20b/temperature", ROUTE_FOUND, 0, "a b", NULL},
    {"/sites/a+b/temperature", ROUTE_FOUND, 0, "a+b", NULL},
    {"/sites/%7e%7E/temperature", ROUTE_FOUND, 0, "~~", NULL},
    {"/sites/a%2Fb/temperature", ROUTE_FOUND, 0, "a/b", NULL},
    {"/sites/x/temperature/", ROUTE_NOT_FOUND, -1, NULL, NULL},
    {"/sites/x", ROUTE_NOT_FOUND, -1, NULL, NULL},
    {"/sites//temperature", ROUTE_BAD_PATH, -1, NULL, NULL},
    {"/sites/%zz/temperature", ROUTE_BAD_PATH, -1, NULL, NULL},
    {"/sites/%4/temperature", ROUTE_BAD_PATH, -1, NULL, NULL},
    {"/sites/x/temperature%", ROUTE_BAD_PATH, -1, NULL, NULL},
    {"/sites/%00/temperature", ROUTE_BAD_PATH, -1, NULL, NULL},
    {"/nothing/%zz", ROUTE_BAD_PATH, -1, NULL, NULL},
    {"/mqtt/a", ROUTE_FOUND, 3, "a", NULL},
    {"/mqtt/a/b/c", ROUTE_FOUND, 3, "a/b/c", NULL},
    {"/mqtt/a%2Fb/c", ROUTE_FOUND, 3, "a/b/c", NULL},
    {"/mqtt/special/q", ROUTE_FOUND, 4, "q", NULL},
    {"/mqtt/special/q/r", ROUTE_FOUND, 3, "special/q/r", NULL},
    {"/mqtt/special", ROUTE_FOUND, 3, "special", NULL},
    {"/mqtt", ROUTE_NOT_FOUND, -1, NULL, NULL},
    {"/mqtt/", ROUTE_BAD_PATH, -1, NULL, NULL},
    {"/mqtt/a//b", ROUTE_BAD_PATH, -1, NULL, NULL},
    {"/mqtt/a/", ROUTE_BAD_PATH, -1, NULL, NULL},
    {"/", ROUTE_FOUND, 5, NULL, NULL},
    {"/trail/", ROUTE_FOUND, 6, NULL, NULL},
    {"/trail", ROUTE_NOT_FOUND, -1, NULL, NULL},
    {"/redis/", ROUTE_BAD_PATH, -1, NULL, NULL},
    {"/caf%c3%a9", ROUTE_FOUND, 8, NULL, NULL},
    {"/caf\xc3\xa9", ROUTE_FOUND, 8, NULL, NULL},
    {"/nothing", ROUTE_NOT_FOUND, -1, NULL, NULL},
    {"", ROUTE_BAD_PATH, -1, NULL, NULL},
    {"sites/x/temperature", ROUTE_BAD_PATH, -1, NULL, NULL},
};

static void test_match_table(void **state)
{
    (void)state;
    struct fixture *fx = match_fixture();
    for (size_t i = 0; i < sizeof(match_cases) / sizeof(*match_cases); i++) {
        const struct match_case *c = &match_cases[i];
        const struct route *r = (const struct route *)1;
        struct route_params p;
        enum route_lookup got = route_table_match(fx->table, c->path, &r, &p);
        if (got != c->want)
            fail_msg("path '%s': got %d want %d", c->path, (int)got,
                     (int)c->want);
        if (got != ROUTE_FOUND) {
            assert_null(r);
            assert_int_equal(p.count, 0);
            continue;
        }
        if ((int)route_index(r) != c->route)
            fail_msg("path '%s': route %zu want %d", c->path, route_index(r),
                     c->route);
        size_t want_count = (c->value0 != NULL) + (c->value1 != NULL);
        assert_int_equal(p.count, want_count);
        if (c->value0)
            assert_string_equal(p.values[0], c->value0);
        if (c->value1)
            assert_string_equal(p.values[1], c->value1);
        route_params_clear(&p);
        assert_int_equal(p.count, 0);
    }
    fx_free(fx);
}

static void test_match_param_names(void **state)
{
    (void)state;
    struct fixture *fx = match_fixture();
    const struct route *r;
    struct route_params p;
    assert_int_equal(route_table_match(fx->table, "/sites/a/b", &r, &p),
                     ROUTE_FOUND);
    assert_int_equal(p.count, 2);
    assert_string_equal(p.names[0], "site");
    assert_string_equal(p.names[1], "metric");
    route_params_clear(&p);
    assert_int_equal(route_table_match(fx->table, "/mqtt/x/y", &r, &p),
                     ROUTE_FOUND);
    assert_string_equal(p.names[0], "topic");
    route_params_clear(&p);
    fx_free(fx);
}

static void test_match_limits(void **state)
{
    (void)state;
    struct fixture *fx = match_fixture();
    const struct route *r;
    struct route_params p;

    /* 1024 request segments are fine (a deep MQTT topic in {x*}), 1025
     * are not. */
    char path[8300] = "/mqtt";
    for (int i = 1; i < 1024; i++)
        strcat(path, "/s");
    assert_int_equal(route_table_match(fx->table, path, &r, &p), ROUTE_FOUND);
    assert_int_equal(strlen(p.values[0]), 1023 * 2 - 1);
    route_params_clear(&p);
    strcat(path, "/s");
    assert_int_equal(route_table_match(fx->table, path, &r, &p),
                     ROUTE_BAD_PATH);

    /* 8 KiB is fine, one byte more is not. */
    memset(path, 'a', 8192);
    memcpy(path, "/mqtt/", 6);
    path[8192] = '\0';
    assert_int_equal(route_table_match(fx->table, path, &r, &p), ROUTE_FOUND);
    assert_int_equal(strlen(p.values[0]), 8192 - 6);
    route_params_clear(&p);
    path[8192] = 'a';
    path[8193] = '\0';
    assert_int_equal(route_table_match(fx->table, path, &r, &p),
                     ROUTE_BAD_PATH);
    fx_free(fx);
}

/* ------------------------------------------------------------------ */
/* Resolving                                                           */
/* ------------------------------------------------------------------ */

/* Matches path, resolves; returns route_resolve's result. */
static int resolve_path(struct fixture *fx, const char *path,
                        struct topic_filter *f, char *err, size_t errlen)
{
    const struct route *r;
    struct route_params p;
    assert_int_equal(route_table_match(fx->table, path, &r, &p), ROUTE_FOUND);
    int rc = route_resolve(fx->table, r, &p, f, err, errlen);
    route_params_clear(&p);
    return rc;
}

static void test_resolve_ok(void **state)
{
    (void)state;
    struct fixture *fx = fx_new();
    fx_route(fx, "/sites/{site}/temperature",
             "plant:factory/{site}/+/temperature", "cache:temp:{site}",
             "audit:audit", NULL);
    fx_route(fx, "/mqtt/{topic*}", "plant:{topic}", "plant:x/{topic}/#",
             NULL);
    fx_route(fx, "/dev/{id}/{kind}", "plant:dev-{id}-{kind}/state", NULL);
    fx_build(fx);
    assert_non_null(fx->table);

    struct topic_filter f;
    char err[128];
    assert_int_equal(resolve_path(fx, "/sites/a%20b/temperature", &f, err,
                                  sizeof(err)), 0);
    assert_int_equal(f.count, 3);
    assert_int_equal(f.patterns[0].source, 0);
    assert_int_equal(f.patterns[0].type, SOURCE_MQTT);
    assert_string_equal(f.patterns[0].pattern, "factory/a b/+/temperature");
    assert_int_equal(f.patterns[1].source, 1);
    assert_int_equal(f.patterns[1].type, SOURCE_REDIS);
    assert_string_equal(f.patterns[1].pattern, "temp:a b");
    assert_int_equal(f.patterns[2].source, 2);
    assert_int_equal(f.patterns[2].type, SOURCE_REDIS_STREAM);
    assert_string_equal(f.patterns[2].pattern, "audit");
    assert_int_equal(f.narrow.count, 0);
    topic_filter_clear(&f);

    assert_int_equal(resolve_path(fx, "/mqtt/a/b%2Fc", &f, err, sizeof(err)),
                     0);
    assert_string_equal(f.patterns[0].pattern, "a/b/c");
    assert_string_equal(f.patterns[1].pattern, "x/a/b/c/#");
    topic_filter_clear(&f);

    assert_int_equal(resolve_path(fx, "/dev/7/t", &f, err, sizeof(err)), 0);
    assert_string_equal(f.patterns[0].pattern, "dev-7-t/state");
    topic_filter_clear(&f);
    fx_free(fx);
}

struct refusal {
    const char *path;
    const char *reason;
};

static const struct refusal refusals[] = {
    {"/m/a+b", "parameter 'site' may not contain '+'"},
    {"/m/%23", "parameter 'site' may not contain '#'"},
    {"/m/a%2Fb", "parameter 'site' may not contain '/'"},
    {"/r/a*", "parameter 'ch' may not contain '*'"},
    {"/r/a%3F", "parameter 'ch' may not contain '?'"},
    {"/r/%5Ba", "parameter 'ch' may not contain '['"},
    {"/r/a%5D", "parameter 'ch' may not contain ']'"},
    {"/r/a%5C", "parameter 'ch' may not contain '\\'"},
    {"/s/a/b+/c", "parameter 'rest' may not contain '+'"},
};

static void test_resolve_refusals(void **state)
{
    (void)state;
    struct fixture *fx = fx_new();
    fx_route(fx, "/m/{site}", "plant:f/{site}/t", NULL);
    fx_route(fx, "/r/{ch}", "cache:c:{ch}", NULL);
    fx_route(fx, "/s/{rest*}", "plant:{rest}", NULL);
    fx_build(fx);
    assert_non_null(fx->table);
    for (size_t i = 0; i < sizeof(refusals) / sizeof(*refusals); i++) {
        struct topic_filter f;
        char err[200];
        memset(&f, 0x5a, sizeof(f));
        assert_int_equal(resolve_path(fx, refusals[i].path, &f, err,
                                      sizeof(err)), -1);
        assert_string_equal(err, refusals[i].reason);
        assert_null(f.patterns);
        assert_int_equal(f.count, 0);
    }
    /* Redis and stream values may hold what MQTT refuses, and back. */
    struct topic_filter f;
    char err[64];
    assert_int_equal(resolve_path(fx, "/r/a+b%2F%23", &f, err, sizeof(err)),
                     0);
    assert_string_equal(f.patterns[0].pattern, "c:a+b/#");
    topic_filter_clear(&f);
    assert_int_equal(resolve_path(fx, "/s/a*/b?", &f, err, sizeof(err)), 0);
    assert_string_equal(f.patterns[0].pattern, "a*/b?");
    topic_filter_clear(&f);
    fx_free(fx);
}

static void test_resolve_reason_is_short(void **state)
{
    (void)state;
    struct fixture *fx = fx_new();
    char path[300] = "/m/{";
    char name[201];
    memset(name, 'n', 200);
    name[200] = '\0';
    strcat(path, name);
    strcat(path, "}");
    char topic[300] = "plant:";
    strcat(topic, "{");
    strcat(topic, name);
    strcat(topic, "}");
    fx_route(fx, path, topic, NULL);
    fx_build(fx);
    assert_non_null(fx->table);

    char value[600] = "/m/";
    for (int i = 0; i < 60; i++)
        strcat(value, "SECRETx");
    strcat(value, "+");
    struct topic_filter f;
    char err[400];
    assert_int_equal(resolve_path(fx, value, &f, err, sizeof(err)), -1);
    assert_true(strlen(err) <= 120);
    assert_null(strstr(err, "SECRET")); /* the value is not echoed */
    assert_non_null(strstr(err, "'+'"));

    /* A tiny buffer is respected. */
    char tiny[8];
    assert_int_equal(resolve_path(fx, value, &f, tiny, sizeof(tiny)), -1);
    assert_int_equal(strlen(tiny), 7);
    fx_free(fx);
}

/* ------------------------------------------------------------------ */
/* Subscriptions                                                       */
/* ------------------------------------------------------------------ */

static void subs_free(struct subscriptions *s)
{
    subscriptions_free(s);
}

static void assert_strv(const struct config_strv *v, const char *const *want,
                        size_t n)
{
    if (v->count != n) {
        for (size_t i = 0; i < v->count; i++)
            print_message("  have '%s'\n", v->items[i]);
        fail_msg("have %zu items, want %zu", v->count, n);
    }
    for (size_t i = 0; i < n; i++)
        assert_string_equal(v->items[i], want[i]);
}

static void test_subscriptions_derived(void **state)
{
    (void)state;
    struct fixture *fx = fx_new();
    fx_route(fx, "/sites/{site}/temperature",
             "plant:factory/{site}/+/temperature", "cache:temp:{site}",
             "audit:audit", NULL);
    fx_route(fx, "/dev/{id}", "plant:dev-{id}/state", "cache:orders", NULL);
    fx_route(fx, "/mqtt/{topic*}", "plant:{topic}", "plant:pre/{topic}/x",
             "plant:a/dev-{topic}", NULL);
    fx_route(fx, "/s/{a}/{b}", "plant:factory/{a}/{b}/temperature",
             "cache:temp:{a}", "cache:alerts:*", "audit:audit", NULL);
    fx_route(fx, "/lit", "plant:fixed/a", "cache:x\\*", "audit:log", NULL);
    struct route_config *off = fx_route(fx, "/off", "plant:off/#",
                                        "cache:off", "audit:off", NULL);
    off->enabled = false;
    fx_build(fx);
    assert_non_null(fx->table);

    struct subscriptions s;
    assert_int_equal(upstream_subscriptions(&fx->cfg, fx->table, 0, &s), 0);
    const char *mqtt[] = {"factory/+/+/temperature", "+/state", "#", "pre/#",
                          "a/#", "fixed/a"};
    assert_strv(&s.patterns, mqtt, 6);
    assert_int_equal(s.exact.count, 0);
    subs_free(&s);

    assert_int_equal(upstream_subscriptions(&fx->cfg, fx->table, 1, &s), 0);
    const char *rexact[] = {"orders"};
    const char *rpat[] = {"temp:*", "alerts:*", "x\\*"};
    assert_strv(&s.exact, rexact, 1);
    assert_strv(&s.patterns, rpat, 3);
    subs_free(&s);

    assert_int_equal(upstream_subscriptions(&fx->cfg, fx->table, 2, &s), 0);
    const char *streams[] = {"audit", "log"};
    assert_strv(&s.exact, streams, 2);
    assert_int_equal(s.patterns.count, 0);
    subs_free(&s);

    assert_int_equal(upstream_subscriptions(&fx->cfg, fx->table, 3, &s), -1);
    fx_free(fx);
}

static void test_subscriptions_configured(void **state)
{
    (void)state;
    struct fixture *fx = fx_new();
    char *subscribe[] = {"factory/#", "other/+", "factory/#"};
    char *streams[] = {"s1"};
    fx->sources[0].subscribe.items = subscribe;
    fx->sources[0].subscribe.count = 3;
    fx->sources[1].have_channels = true; /* empty, but given */
    fx->sources[2].streams.items = streams;
    fx->sources[2].streams.count = 1;
    fx_route(fx, "/a/{x}", "plant:a/{x}", "cache:c:{x}", "audit:audit",
             NULL);
    fx_build(fx);
    assert_non_null(fx->table);

    struct subscriptions s;
    assert_int_equal(upstream_subscriptions(&fx->cfg, fx->table, 0, &s), 0);
    const char *mqtt[] = {"factory/#", "other/+"};
    assert_strv(&s.patterns, mqtt, 2);
    subs_free(&s);

    assert_int_equal(upstream_subscriptions(&fx->cfg, fx->table, 1, &s), 0);
    assert_int_equal(s.exact.count, 0);
    assert_int_equal(s.patterns.count, 0);
    subs_free(&s);

    char *pats[] = {"p:*"};
    fx->sources[1].have_channels = false;
    fx->sources[1].have_patterns = true;
    fx->sources[1].patterns.items = pats;
    fx->sources[1].patterns.count = 1;
    assert_int_equal(upstream_subscriptions(&fx->cfg, fx->table, 1, &s), 0);
    assert_int_equal(s.exact.count, 0);
    assert_strv(&s.patterns, (const char *const *)pats, 1);
    subs_free(&s);

    assert_int_equal(upstream_subscriptions(&fx->cfg, fx->table, 2, &s), 0);
    assert_strv(&s.exact, (const char *const *)streams, 1);
    assert_false(s.keyed);
    subs_free(&s);
    fx_free(fx);

    /* A source that lists its streams may also serve per-key routes. */
    fx = fx_new();
    fx->sources[2].streams.items = streams;
    fx->sources[2].streams.count = 1;
    fx_route(fx, "/job/{id}", "audit:job:{id}", NULL);
    fx_build(fx);
    assert_non_null(fx->table);
    assert_int_equal(upstream_subscriptions(&fx->cfg, fx->table, 2, &s), 0);
    assert_strv(&s.exact, (const char *const *)streams, 1);
    assert_true(s.keyed);
    subs_free(&s);
    fx_free(fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_ok),
        cmocka_unit_test(test_build_unknown_source),
        cmocka_unit_test(test_build_collects_all_errors),
        cmocka_unit_test(test_build_path_errors),
        cmocka_unit_test(test_build_too_many_params),
        cmocka_unit_test(test_build_topic_errors),
        cmocka_unit_test(test_build_bad_path_skips_param_lookup),
        cmocka_unit_test(test_match_table),
        cmocka_unit_test(test_match_param_names),
        cmocka_unit_test(test_match_limits),
        cmocka_unit_test(test_resolve_ok),
        cmocka_unit_test(test_resolve_refusals),
        cmocka_unit_test(test_resolve_reason_is_short),
        cmocka_unit_test(test_subscriptions_derived),
        cmocka_unit_test(test_subscriptions_configured),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
