/*
 * fuzz_route.c - libFuzzer driver for lib/topic.c and lib/route.c.
 *
 * The input is split at '\n' into up to three parts:
 *   A: a pattern, also used as a route's path template;
 *   B: a topic, also used as a raw request path;
 *   C: a topic template "SOURCE:PATTERN" for the route (default
 *      "plant:#").
 * It runs the matchers and validators on (A, B), checks that the topic
 * index reports exactly what topic_match reports, builds a route table
 * from a hand-made config, matches B against it, resolves and derives
 * subscriptions. Crashes, sanitizer reports and index/brute-force
 * disagreements (abort) are findings.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -I. \
 *        lib/topic.c lib/hashtab.c lib/route.c \
 *        tests/fuzz/fuzz_route.c
 * Corpus: tests/fuzz/corpus/route/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/route.h"
#include "lib/topic.h"
#include "lib/topic_index.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A copy of data[0..len) with a NUL added (the text may hold NULs). */
static char *copy_part(const uint8_t *data, size_t len)
{
    char *s = malloc(len + 1);
    if (s == NULL)
        abort();
    memcpy(s, data, len);
    s[len] = '\0';
    return s;
}

static void count_cb(void *owner, void *arg)
{
    (void)owner;
    (*(int *)arg)++;
}

static void fuzz_topics(const char *a, size_t alen, const char *b,
                        size_t blen)
{
    static const enum source_type types[] = {SOURCE_MQTT, SOURCE_REDIS,
                                             SOURCE_REDIS_STREAM};
    char err[128];
    (void)topic_mqtt_match(a, b, blen);
    (void)topic_glob_match(a, alen, b, blen);
    for (size_t i = 0; i < 3; i++) {
        enum source_type type = types[i];
        (void)topic_param_safe(type, b, blen, i == 0);
        (void)topic_is_literal(type, a);
        if (topic_validate(type, a, err, sizeof(err)) != 0)
            continue;
        /* The index must agree with direct matching. */
        struct topic_index *idx = topic_index_new();
        int owner = 0, hits = 0;
        if (idx == NULL || topic_index_add(idx, 1, type, a, &owner) != 0 ||
            topic_index_add(idx, 1, type, a, &owner) != 0)
            abort();
        topic_index_match(idx, 1, type, b, blen, count_cb, &hits);
        if (hits != (topic_match(type, a, b, blen) ? 1 : 0))
            abort();
        topic_index_remove(idx, 1, type, a, &owner);
        topic_index_remove(idx, 1, type, a, &owner);
        hits = 0;
        topic_index_match(idx, 1, type, b, blen, count_cb, &hits);
        if (hits != 0)
            abort();
        topic_index_free(idx);
    }
}

static void fuzz_resolve(const struct route_table *t, const char *raw_path)
{
    const struct route *r;
    struct route_params params;
    if (route_table_match(t, raw_path, &r, &params) != ROUTE_FOUND)
        return;
    struct topic_filter f;
    char err[128];
    if (route_resolve(t, r, &params, &f, err, sizeof(err)) == 0) {
        char *key = topic_filter_key(&f);
        free(key);
        topic_filter_clear(&f);
    } else if (strlen(err) > 120) {
        abort();
    }
    route_params_clear(&params);
}

static void fuzz_routes(char *path, const char *raw_path, char *topic)
{
    struct source_config sources[3];
    struct route_config route;
    struct config cfg;
    char *topics[2] = {topic, "cache:c"};
    struct config_pos pos[2] = {{2, 3}, {3, 3}};
    memset(sources, 0, sizeof(sources));
    memset(&route, 0, sizeof(route));
    memset(&cfg, 0, sizeof(cfg));
    sources[0].name = "plant";
    sources[0].type = SOURCE_MQTT;
    sources[1].name = "cache";
    sources[1].type = SOURCE_REDIS;
    sources[2].name = "audit";
    sources[2].type = SOURCE_REDIS_STREAM;
    route.path = path;
    route.enabled = true;
    route.topics.items = topics;
    route.topics.pos = pos;
    route.topics.count = 2;
    cfg.file = "fuzz.yaml";
    cfg.sources = sources;
    cfg.nsources = 3;
    cfg.routes = &route;
    cfg.nroutes = 1;

    char *errors = NULL;
    struct route_table *t = route_table_build(&cfg, &errors);
    if ((t == NULL) == (errors == NULL))
        abort();
    free(errors);
    if (t == NULL)
        return;
    fuzz_resolve(t, raw_path);
    for (size_t i = 0; i < route_table_count(t); i++) {
        const struct route *r = route_table_get(t, i);
        for (size_t j = 0; j < route_topic_count(r); j++)
            free(route_topic_upstream(r, j));
    }
    route_table_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl1 = memchr(data, '\n', size);
    size_t alen = nl1 ? (size_t)(nl1 - data) : size;
    const uint8_t *bstart = nl1 ? nl1 + 1 : data + size;
    size_t brest = size - (size_t)(bstart - data);
    const uint8_t *nl2 = memchr(bstart, '\n', brest);
    size_t blen = nl2 ? (size_t)(nl2 - bstart) : brest;
    const uint8_t *cstart = nl2 ? nl2 + 1 : NULL;
    size_t clen = cstart ? size - (size_t)(cstart - data) : 0;

    char *a = copy_part(data, alen);
    char *b = copy_part(bstart, blen);
    char *c = cstart ? copy_part(cstart, clen) : copy_part(
                                                     (const uint8_t *)"plant:#",
                                                     7);
    fuzz_topics(a, alen, b, blen);
    fuzz_routes(a, b, c);
    free(a);
    free(b);
    free(c);
    return 0;
}
