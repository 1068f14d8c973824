/*
 * test_topic.c - unit tests for lib/topic.c: MQTT and Redis glob
 * matching, validation, the parameter injection rule, filters and their
 * keys, and the topic index (checked against brute-force matching).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/topic.h"
#include "lib/topic_index.h"

/* ------------------------------------------------------------------ */
/* MQTT matching                                                       */
/* ------------------------------------------------------------------ */

struct match_case {
    const char *pattern;
    const char *topic;
    bool want;
};

static const struct match_case mqtt_cases[] = {
    {"a/b/c", "a/b/c", true},
    {"a/b/c", "a/b", false},
    {"a/b", "a/b/c", false},
    {"a/b", "a/b/", false},
    {"a/b/", "a/b/", true},
    {"A", "a", false},
    {"a/+/c", "a/b/c", true},
    {"a/+/c", "a//c", true},
    {"a/+/c", "a/b/d", false},
    {"a/+", "a/", true},
    {"a/+", "a", false},
    {"+", "a", true},
    {"+", "a/b", false},
    {"+", "", true},
    {"+/+", "/a", true},
    {"/+", "/", true},
    {"+/b", "a/b", true},
    {"a/#", "a", true},
    {"a/#", "a/", true},
    {"a/#", "a/b/c", true},
    {"a/#", "ab", false},
    {"a/#", "b/a", false},
    {"#", "a/b", true},
    {"#", "/", true},
    {"/#", "/a", true},
    {"/#", "a", false},
    {"+/#", "a", true},
    {"+/#", "a/b/c", true},
    {"a/+/#", "a", false},
    {"a/+/#", "a/b", true},
    {"#", "$SYS/x", false},
    {"+/x", "$SYS/x", false},
    {"+/#", "$SYS", false},
    {"$SYS/#", "$SYS/x", true},
    {"$SYS/#", "$SYS", true},
    {"$SYS/+", "$SYS/x", true},
    {"a/+", "a/$b", true},
    {"a/#", "a/$b/c", true},
    {"a/#/b", "a/x/b", false}, /* invalid filter: matches nothing */
};

static void test_mqtt_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(mqtt_cases) / sizeof(*mqtt_cases); i++) {
        const struct match_case *c = &mqtt_cases[i];
        bool got = topic_mqtt_match(c->pattern, c->topic, strlen(c->topic));
        if (got != c->want)
            fail_msg("mqtt '%s' vs '%s': got %d", c->pattern, c->topic, got);
        assert_int_equal(topic_match(SOURCE_MQTT, c->pattern, c->topic,
                                     strlen(c->topic)),
                         c->want);
    }
}

static void test_mqtt_explicit_length(void **state)
{
    (void)state;
    /* Only the first len bytes are the topic. */
    assert_true(topic_mqtt_match("a/b", "a/bc", 3));
    assert_false(topic_mqtt_match("a/bc", "a/bc", 3));
    /* A NUL inside the topic is just a byte of a level. */
    assert_true(topic_mqtt_match("+", "a\0b", 3));
    assert_false(topic_mqtt_match("a", "a\0b", 3));
}

/* "l0/l1/.../l<n-1>" with each level replaced by `level` when non-NULL. */
static char *levels(size_t n, const char *level, const char *last)
{
    size_t cap = n * 8 + 16;
    char *s = malloc(cap);
    size_t at = 0;
    assert_non_null(s);
    for (size_t i = 0; i < n; i++) {
        const char *l = i + 1 == n && last ? last : level;
        if (l != NULL)
            at += (size_t)snprintf(s + at, cap - at, "%s%s", i ? "/" : "", l);
        else
            at += (size_t)snprintf(s + at, cap - at, "%sl%zu", i ? "/" : "",
                                   i);
    }
    s[at] = '\0';
    return s;
}

static void test_mqtt_100_levels(void **state)
{
    (void)state;
    char *topic = levels(100, NULL, NULL);
    char *same = levels(100, NULL, NULL);
    char *plus = levels(100, "+", NULL);
    char *hash = levels(100, "+", "#");
    char *longer = levels(101, "+", NULL);
    char *shorter = levels(99, "+", NULL);
    size_t len = strlen(topic);
    assert_true(topic_mqtt_match(same, topic, len));
    assert_true(topic_mqtt_match(plus, topic, len));
    assert_true(topic_mqtt_match(hash, topic, len));
    assert_false(topic_mqtt_match(longer, topic, len));
    assert_false(topic_mqtt_match(shorter, topic, len));
    free(topic);
    free(same);
    free(plus);
    free(hash);
    free(longer);
    free(shorter);
}

/* ------------------------------------------------------------------ */
/* Redis globs                                                         */
/* ------------------------------------------------------------------ */

static const struct match_case glob_cases[] = {
    {"*", "abc", true},
    {"*", "", false}, /* Redis: an empty string matches only "" */
    {"", "", true},
    {"", "a", false},
    {"**", "x", true},
    {"a*", "a", true},
    {"a*", "ba", false},
    {"*a", "ba", true},
    {"a?c", "abc", true},
    {"a?c", "ac", false},
    {"a?c", "abbc", false},
    {"h*llo", "hello", true},
    {"h*llo", "hllo", true},
    {"h*llo", "hellox", false},
    {"a*b*c", "axxbyyc", true},
    {"a*b*c", "axxbyy", false},
    {"orders:*", "orders:eu", true},
    {"orders:*", "orders", false},
    {"[abc]", "b", true},
    {"[abc]", "d", false},
    {"[abc]", "ab", false},
    {"[^a]", "b", true},
    {"[^a]", "a", false},
    {"[a-c]", "b", true},
    {"[c-a]", "b", true}, /* reversed range */
    {"[a-c]", "d", false},
    {"[a-c-e]", "-", true}, /* '-' after a range is literal */
    {"[a-c-e]", "d", false},
    {"[a-ce]", "e", true},
    {"h[ae]llo", "hallo", true},
    {"h[^e]llo", "hello", false},
    {"\\*", "*", true},
    {"\\*", "a", false},
    {"\\?", "?", true},
    {"\\[a]", "[a]", true},
    {"a\\", "a\\", true}, /* a lone trailing backslash is itself */
    {"[\\]]", "]", true},
    {"[\\^]", "^", true},
    {"[abc", "b", true}, /* unterminated class ends the pattern */
    {"[abc", "bx", false},
    {"[]", "a", false},
    {"[^]", "a", true},
    {"[*]", "*", true},
    {"[*]", "a", false},
    {"*[0-9]", "abc7", true},
    {"*[0-9]", "abc", false},
};

static void test_glob_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(glob_cases) / sizeof(*glob_cases); i++) {
        const struct match_case *c = &glob_cases[i];
        bool got = topic_glob_match(c->pattern, strlen(c->pattern), c->topic,
                                    strlen(c->topic));
        if (got != c->want)
            fail_msg("glob '%s' vs '%s': got %d", c->pattern, c->topic, got);
        assert_int_equal(topic_match(SOURCE_REDIS, c->pattern, c->topic,
                                     strlen(c->topic)),
                         c->want);
    }
}

static void test_glob_binary_safe(void **state)
{
    (void)state;
    assert_true(topic_glob_match("a?c", 3, "a\0c", 3));
    assert_true(topic_glob_match("a\0c", 3, "a\0c", 3));
    assert_false(topic_glob_match("a\0c", 3, "a\0d", 3));
    /* Lengths are honoured: the pattern is "a*" here, not "a*b". */
    assert_true(topic_glob_match("a*b", 2, "axyz", 4));
    assert_false(topic_glob_match("a*b", 3, "axyzb", 4));
}

static void test_glob_pathological(void **state)
{
    (void)state;
    char s[20001];
    memset(s, 'a', sizeof(s) - 1);
    s[sizeof(s) - 1] = '\0';
    const char *p = "*a*a*a*a*a*a*a*a*a*a*a*a*b";
    clock_t start = clock();
    assert_false(topic_glob_match(p, strlen(p), s, sizeof(s) - 1));
    s[sizeof(s) - 2] = 'b';
    assert_true(topic_glob_match(p, strlen(p), s, sizeof(s) - 1));
    double secs = (double)(clock() - start) / CLOCKS_PER_SEC;
    /* Backtracking would take forever; greedy is O(p * s). */
    assert_true(secs < 2.0);
}

static void test_stream_match(void **state)
{
    (void)state;
    assert_true(topic_match(SOURCE_REDIS_STREAM, "audit", "audit", 5));
    assert_false(topic_match(SOURCE_REDIS_STREAM, "audit", "audit2", 6));
    assert_false(topic_match(SOURCE_REDIS_STREAM, "a*", "ab", 2));
    assert_true(topic_match(SOURCE_REDIS_STREAM, "a*", "a*", 2));
}

/* ------------------------------------------------------------------ */
/* Validation, literals, parameter safety                              */
/* ------------------------------------------------------------------ */

struct validate_case {
    enum source_type type;
    const char *pattern;
    int want;
};

static const struct validate_case validate_cases[] = {
    {SOURCE_MQTT, "", -1},
    {SOURCE_MQTT, "a", 0},
    {SOURCE_MQTT, "/", 0},
    {SOURCE_MQTT, "a//b", 0},
    {SOURCE_MQTT, "#", 0},
    {SOURCE_MQTT, "a/#", 0},
    {SOURCE_MQTT, "+", 0},
    {SOURCE_MQTT, "+/+/#", 0},
    {SOURCE_MQTT, "a/+/b", 0},
    {SOURCE_MQTT, "a/#/b", -1},
    {SOURCE_MQTT, "#/a", -1},
    {SOURCE_MQTT, "a#", -1},
    {SOURCE_MQTT, "a/b#", -1},
    {SOURCE_MQTT, "a/##", -1},
    {SOURCE_MQTT, "a+", -1},
    {SOURCE_MQTT, "a/+b", -1},
    {SOURCE_MQTT, "++", -1},
    {SOURCE_REDIS, "", -1},
    {SOURCE_REDIS, "a", 0},
    {SOURCE_REDIS, "[abc", 0},
    {SOURCE_REDIS, "a\\", 0},
    {SOURCE_REDIS, "*", 0},
    {SOURCE_REDIS_STREAM, "", -1},
    {SOURCE_REDIS_STREAM, "audit", 0},
    {SOURCE_REDIS_STREAM, "a*", 0},
};

static void test_validate_table(void **state)
{
    (void)state;
    char err[128];
    for (size_t i = 0; i < sizeof(validate_cases) / sizeof(*validate_cases);
         i++) {
        const struct validate_case *c = &validate_cases[i];
        err[0] = '\0';
        int got = topic_validate(c->type, c->pattern, err, sizeof(err));
        if (got != c->want)
            fail_msg("validate %d '%s': got %d", (int)c->type, c->pattern,
                     got);
        if (got != 0)
            assert_true(strlen(err) > 0);
    }
}

static void test_validate_messages(void **state)
{
    (void)state;
    char err[128];
    assert_int_equal(topic_validate(SOURCE_MQTT, "a/#/b", err, sizeof(err)),
                     -1);
    assert_string_equal(err, "'#' must be the whole last level");
    assert_int_equal(topic_validate(SOURCE_MQTT, "a+", err, sizeof(err)), -1);
    assert_string_equal(err, "'+' must be a whole level");
    assert_int_equal(topic_validate(SOURCE_REDIS, "", err, sizeof(err)), -1);
    assert_string_equal(err, "empty pattern");
    /* A small buffer is truncated, not overrun; NULL is fine too. */
    char tiny[4];
    assert_int_equal(topic_validate(SOURCE_MQTT, "", tiny, sizeof(tiny)), -1);
    assert_string_equal(tiny, "emp");
    assert_int_equal(topic_validate(SOURCE_MQTT, "", NULL, 0), -1);

    size_t n = 65536;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'a', n);
    big[n] = '\0';
    assert_int_equal(topic_validate(SOURCE_MQTT, big, err, sizeof(err)), -1);
    big[n - 1] = '\0';
    assert_int_equal(topic_validate(SOURCE_MQTT, big, err, sizeof(err)), 0);
    free(big);
}

static void test_is_literal(void **state)
{
    (void)state;
    assert_true(topic_is_literal(SOURCE_MQTT, "a/b"));
    assert_true(topic_is_literal(SOURCE_MQTT, "$SYS/x"));
    assert_false(topic_is_literal(SOURCE_MQTT, "a/+"));
    assert_false(topic_is_literal(SOURCE_MQTT, "a/#"));
    assert_true(topic_is_literal(SOURCE_REDIS, "orders"));
    assert_true(topic_is_literal(SOURCE_REDIS, "a]"));
    assert_false(topic_is_literal(SOURCE_REDIS, "a*"));
    assert_false(topic_is_literal(SOURCE_REDIS, "a?"));
    assert_false(topic_is_literal(SOURCE_REDIS, "a[b"));
    assert_false(topic_is_literal(SOURCE_REDIS, "a\\b"));
    assert_true(topic_is_literal(SOURCE_REDIS_STREAM, "a*?"));
}

struct safe_case {
    enum source_type type;
    const char *value;
    size_t len; /* 0: strlen */
    bool multi;
    bool want;
};

static const struct safe_case safe_cases[] = {
    {SOURCE_MQTT, "abc", 0, false, true},
    {SOURCE_MQTT, "a b.c-d", 0, false, true},
    {SOURCE_MQTT, "a+b", 0, false, false},
    {SOURCE_MQTT, "a#", 0, false, false},
    {SOURCE_MQTT, "a/b", 0, false, false},
    {SOURCE_MQTT, "a/b", 0, true, true},
    {SOURCE_MQTT, "a/+", 0, true, false},
    {SOURCE_MQTT, "a/#", 0, true, false},
    {SOURCE_MQTT, "a*?[", 0, false, true},
    {SOURCE_MQTT, "", 0, false, false},
    {SOURCE_MQTT, "a\0b", 3, false, false},
    {SOURCE_REDIS, "a/b+#", 0, false, true},
    {SOURCE_REDIS, "a*", 0, false, false},
    {SOURCE_REDIS, "a?", 0, false, false},
    {SOURCE_REDIS, "a[", 0, false, false},
    {SOURCE_REDIS, "a]", 0, false, false},
    {SOURCE_REDIS, "a\\", 0, false, false},
    {SOURCE_REDIS, "", 0, false, false},
    {SOURCE_REDIS_STREAM, "a*?[]+#/", 0, false, true},
    {SOURCE_REDIS_STREAM, "", 0, false, false},
    {SOURCE_REDIS_STREAM, "a\0", 2, false, false},
};

static void test_param_safe_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(safe_cases) / sizeof(*safe_cases); i++) {
        const struct safe_case *c = &safe_cases[i];
        size_t len = c->len ? c->len : strlen(c->value);
        bool got = topic_param_safe(c->type, c->value, len, c->multi);
        if (got != c->want)
            fail_msg("param_safe %d '%s' multi=%d: got %d", (int)c->type,
                     c->value, c->multi, got);
    }
}

/* ------------------------------------------------------------------ */
/* Filters                                                             */
/* ------------------------------------------------------------------ */

/* A filter of n patterns "SRC|TYPE|PATTERN"-style triples, plus narrows;
 * everything malloc'd so that topic_filter_clear frees it. */
static void filter_init(struct topic_filter *f, size_t n, const uint32_t *src,
                        const enum source_type *type, const char *const *pat,
                        size_t nn, const char *const *narrow)
{
    memset(f, 0, sizeof(*f));
    f->patterns = calloc(n ? n : 1, sizeof(*f->patterns));
    assert_non_null(f->patterns);
    for (size_t i = 0; i < n; i++) {
        f->patterns[i].source = src[i];
        f->patterns[i].type = type[i];
        f->patterns[i].pattern = strdup(pat[i]);
    }
    f->count = n;
    if (nn > 0) {
        f->narrow.items = calloc(nn, sizeof(char *));
        assert_non_null(f->narrow.items);
        for (size_t i = 0; i < nn; i++)
            f->narrow.items[i] = strdup(narrow[i]);
        f->narrow.count = nn;
    }
}

/* The key of a one-source MQTT filter. */
static char *key_of(size_t n, const char *const *pat, size_t nn,
                    const char *const *narrow, uint32_t source,
                    enum source_type type)
{
    uint32_t src[8];
    enum source_type types[8];
    struct topic_filter f;
    for (size_t i = 0; i < n; i++) {
        src[i] = source;
        types[i] = type;
    }
    filter_init(&f, n, src, types, pat, nn, narrow);
    char *key = topic_filter_key(&f);
    assert_non_null(key);
    topic_filter_clear(&f);
    assert_null(f.patterns);
    assert_int_equal(f.count, 0);
    assert_int_equal(f.narrow.count, 0);
    return key;
}

static void test_filter_key(void **state)
{
    (void)state;
    const char *ab[] = {"a", "b"};
    const char *ba[] = {"b", "a"};
    const char *bab[] = {"b", "a", "b"};
    const char *a_b[] = {"a|p0:0:b"};
    const char *a_only[] = {"a"};
    const char *esc1[] = {"a\\", "b"};
    /* Without escaping '\\', these two would give the same key. */
    const char *esc2[] = {"a|p0:0:b"};
    char *k1 = key_of(2, ab, 0, NULL, 0, SOURCE_MQTT);
    char *k2 = key_of(2, ba, 0, NULL, 0, SOURCE_MQTT);
    char *k3 = key_of(3, bab, 0, NULL, 0, SOURCE_MQTT);
    char *k4 = key_of(1, a_b, 0, NULL, 0, SOURCE_MQTT);
    char *k5 = key_of(2, ab, 0, NULL, 1, SOURCE_MQTT);
    char *k6 = key_of(2, ab, 0, NULL, 0, SOURCE_REDIS);
    char *k7 = key_of(1, a_only, 1, a_only + 0, 0, SOURCE_MQTT);
    char *k8 = key_of(1, a_only, 0, NULL, 0, SOURCE_MQTT);
    char *k9 = key_of(1, a_only, 2, ba, 0, SOURCE_MQTT);
    char *k10 = key_of(1, a_only, 2, ab, 0, SOURCE_MQTT);
    char *k11 = key_of(2, esc1, 0, NULL, 0, SOURCE_MQTT);
    char *k12 = key_of(1, esc2, 0, NULL, 0, SOURCE_MQTT);

    assert_string_equal(k1, k2);  /* order does not matter */
    assert_string_equal(k1, k3);  /* duplicates do not matter */
    assert_string_not_equal(k1, k4); /* one pattern is not two */
    assert_string_not_equal(k1, k5); /* source matters */
    assert_string_not_equal(k1, k6); /* type matters */
    assert_string_not_equal(k7, k8); /* a narrow matters */
    assert_string_equal(k9, k10);    /* narrow order does not */
    assert_string_not_equal(k11, k12); /* escaping is unambiguous */
    assert_string_not_equal(k8, k1);

    char *all[] = {k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12};
    for (size_t i = 0; i < sizeof(all) / sizeof(*all); i++)
        free(all[i]);

    struct topic_filter empty = {0};
    char *k = topic_filter_key(&empty);
    assert_non_null(k);
    assert_string_equal(k, "");
    free(k);
}

static void test_filter_match(void **state)
{
    (void)state;
    const uint32_t src[] = {0, 1};
    const enum source_type types[] = {SOURCE_MQTT, SOURCE_REDIS};
    const char *pats[] = {"factory/+/temp", "orders:*"};
    const char *narrow[] = {"factory/a/#", "orders:eu*"};
    struct topic_filter f;
    filter_init(&f, 2, src, types, pats, 0, NULL);
    assert_true(topic_filter_match(&f, 0, SOURCE_MQTT, "factory/b/temp", 14));
    assert_false(topic_filter_match(&f, 1, SOURCE_REDIS, "factory/b/temp",
                                    14)); /* wrong source */
    assert_true(topic_filter_match(&f, 1, SOURCE_REDIS, "orders:us", 9));
    assert_false(topic_filter_match(&f, 0, SOURCE_MQTT, "factory/b/hum", 13));
    topic_filter_clear(&f);

    filter_init(&f, 2, src, types, pats, 2, narrow);
    assert_true(topic_filter_match(&f, 0, SOURCE_MQTT, "factory/a/temp", 14));
    assert_false(topic_filter_match(&f, 0, SOURCE_MQTT, "factory/b/temp",
                                    14)); /* narrowed away */
    assert_true(topic_filter_match(&f, 1, SOURCE_REDIS, "orders:eu1", 10));
    assert_false(topic_filter_match(&f, 1, SOURCE_REDIS, "orders:us", 9));
    topic_filter_clear(&f);
}

/* ------------------------------------------------------------------ */
/* The index                                                           */
/* ------------------------------------------------------------------ */

#define MAX_OWNERS 2048

/* Counts callbacks per owner; owners are pointers into hits[]. */
struct hits {
    int count[MAX_OWNERS];
    int total;
};

static void hits_cb(void *owner, void *arg)
{
    struct hits *h = arg;
    h->count[(int *)owner - h->count]++;
    h->total++;
}

static void *owner_of(struct hits *h, int i)
{
    return &h->count[i];
}

static void match_into(struct topic_index *idx, struct hits *h,
                       uint32_t source, enum source_type type,
                       const char *topic)
{
    memset(h, 0, sizeof(*h));
    topic_index_match(idx, source, type, topic, strlen(topic), hits_cb, h);
}

static void test_index_mqtt(void **state)
{
    (void)state;
    struct topic_index *idx = topic_index_new();
    struct hits *h = calloc(1, sizeof(*h));
    assert_non_null(idx);
    assert_non_null(h);
    const char *pats[] = {"a/b", "a/+", "a/#", "#", "+/b", "$SYS/#",
                          "+/+/c", "a/b/c"};
    for (int i = 0; i < 8; i++)
        assert_int_equal(topic_index_add(idx, 0, SOURCE_MQTT, pats[i],
                                         owner_of(h, i)),
                         0);
    match_into(idx, h, 0, SOURCE_MQTT, "a/b");
    assert_int_equal(h->total, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(h->count[i], 1);

    match_into(idx, h, 0, SOURCE_MQTT, "a");
    assert_int_equal(h->total, 2); /* "a/#" (parent) and "#" */
    assert_int_equal(h->count[2], 1);
    assert_int_equal(h->count[3], 1);

    match_into(idx, h, 0, SOURCE_MQTT, "$SYS/b");
    assert_int_equal(h->total, 1); /* not "#", not "+/b" */
    assert_int_equal(h->count[5], 1);

    match_into(idx, h, 0, SOURCE_MQTT, "a/b/c");
    assert_int_equal(h->total, 4); /* a/#, #, +/+/c, a/b/c */
    assert_int_equal(h->count[6], 1);
    assert_int_equal(h->count[7], 1);

    /* Another source sees nothing. */
    match_into(idx, h, 1, SOURCE_MQTT, "a/b");
    assert_int_equal(h->total, 0);

    /* A topic level that is literally "+" is not the "+" child twice. */
    match_into(idx, h, 0, SOURCE_MQTT, "+/b");
    assert_int_equal(h->total, 2); /* "#", "+/b" */

    for (int i = 0; i < 8; i++)
        topic_index_remove(idx, 0, SOURCE_MQTT, pats[i], owner_of(h, i));
    match_into(idx, h, 0, SOURCE_MQTT, "a/b/c");
    assert_int_equal(h->total, 0);
    match_into(idx, h, 0, SOURCE_MQTT, "a");
    assert_int_equal(h->total, 0);

    /* Invalid filters are refused. */
    assert_int_equal(topic_index_add(idx, 0, SOURCE_MQTT, "a/#/b", h), -1);
    assert_int_equal(topic_index_add(idx, 0, SOURCE_MQTT, "", h), -1);
    topic_index_free(idx);
    free(h);
}

static void test_index_refcount(void **state)
{
    (void)state;
    struct topic_index *idx = topic_index_new();
    struct hits *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    const char *pats[] = {"x/+/y", "x/y", "x/#"};
    for (int p = 0; p < 3; p++) {
        assert_int_equal(topic_index_add(idx, 0, SOURCE_MQTT, pats[p],
                                         owner_of(h, 1)), 0);
        assert_int_equal(topic_index_add(idx, 0, SOURCE_MQTT, pats[p],
                                         owner_of(h, 1)), 0);
        assert_int_equal(topic_index_add(idx, 0, SOURCE_MQTT, pats[p],
                                         owner_of(h, 2)), 0);
    }
    match_into(idx, h, 0, SOURCE_MQTT, "x/q/y");
    /* owner 1 once per matching pattern (x/+/y, x/#), not per add. */
    assert_int_equal(h->count[1], 2);
    assert_int_equal(h->count[2], 2);

    for (int p = 0; p < 3; p++)
        topic_index_remove(idx, 0, SOURCE_MQTT, pats[p], owner_of(h, 1));
    match_into(idx, h, 0, SOURCE_MQTT, "x/q/y");
    assert_int_equal(h->count[1], 2); /* one reference left */

    for (int p = 0; p < 3; p++)
        topic_index_remove(idx, 0, SOURCE_MQTT, pats[p], owner_of(h, 1));
    match_into(idx, h, 0, SOURCE_MQTT, "x/q/y");
    assert_int_equal(h->count[1], 0);
    assert_int_equal(h->count[2], 2);
    match_into(idx, h, 0, SOURCE_MQTT, "x/y");
    assert_int_equal(h->count[2], 2); /* x/y and x/# */

    /* Removing what is not there is harmless. */
    topic_index_remove(idx, 0, SOURCE_MQTT, "x/+/y", owner_of(h, 1));
    topic_index_remove(idx, 0, SOURCE_MQTT, "no/+/such", owner_of(h, 2));
    topic_index_remove(idx, 7, SOURCE_REDIS, "n*", owner_of(h, 2));
    topic_index_remove(idx, 0, SOURCE_MQTT, "q", owner_of(h, 2));
    match_into(idx, h, 0, SOURCE_MQTT, "x/q/y");
    assert_int_equal(h->count[2], 2);

    for (int p = 0; p < 3; p++)
        topic_index_remove(idx, 0, SOURCE_MQTT, pats[p], owner_of(h, 2));
    match_into(idx, h, 0, SOURCE_MQTT, "x/q/y");
    assert_int_equal(h->total, 0);

    /* The pruned trie is rebuilt on demand. */
    assert_int_equal(topic_index_add(idx, 0, SOURCE_MQTT, "x/+/y",
                                     owner_of(h, 3)), 0);
    match_into(idx, h, 0, SOURCE_MQTT, "x/q/y");
    assert_int_equal(h->count[3], 1);
    topic_index_free(idx); /* frees what is still registered */
    free(h);
}

static void test_index_redis_and_stream(void **state)
{
    (void)state;
    struct topic_index *idx = topic_index_new();
    struct hits *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    assert_int_equal(topic_index_add(idx, 1, SOURCE_REDIS, "orders",
                                     owner_of(h, 0)), 0);
    assert_int_equal(topic_index_add(idx, 1, SOURCE_REDIS, "orders:*",
                                     owner_of(h, 1)), 0);
    assert_int_equal(topic_index_add(idx, 1, SOURCE_REDIS, "o?ders",
                                     owner_of(h, 2)), 0);
    assert_int_equal(topic_index_add(idx, 1, SOURCE_REDIS, "orders\\*",
                                     owner_of(h, 3)), 0);
    assert_int_equal(topic_index_add(idx, 2, SOURCE_REDIS_STREAM, "audit*",
                                     owner_of(h, 4)), 0);

    match_into(idx, h, 1, SOURCE_REDIS, "orders");
    assert_int_equal(h->total, 2);
    assert_int_equal(h->count[0], 1);
    assert_int_equal(h->count[2], 1);
    match_into(idx, h, 1, SOURCE_REDIS, "orders:eu");
    assert_int_equal(h->total, 1);
    assert_int_equal(h->count[1], 1);
    match_into(idx, h, 1, SOURCE_REDIS, "orders*");
    assert_int_equal(h->total, 1);
    assert_int_equal(h->count[3], 1);
    match_into(idx, h, 2, SOURCE_REDIS_STREAM, "audit*");
    assert_int_equal(h->total, 1);
    match_into(idx, h, 2, SOURCE_REDIS_STREAM, "auditx");
    assert_int_equal(h->total, 0);

    topic_index_remove(idx, 1, SOURCE_REDIS, "orders:*", owner_of(h, 1));
    topic_index_remove(idx, 1, SOURCE_REDIS, "orders", owner_of(h, 0));
    match_into(idx, h, 1, SOURCE_REDIS, "orders:eu");
    assert_int_equal(h->total, 0);
    match_into(idx, h, 1, SOURCE_REDIS, "orders");
    assert_int_equal(h->total, 1); /* o?ders only */
    topic_index_free(idx);
    free(h);
}

static void test_index_many_owners(void **state)
{
    (void)state;
    struct topic_index *idx = topic_index_new();
    struct hits *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    char pat[64];
    /* 1000 owners of one trie filter, 1000 of one literal, and 1000
     * filters that cannot match. */
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(topic_index_add(idx, 0, SOURCE_MQTT, "s/+/t",
                                         owner_of(h, i)), 0);
        assert_int_equal(topic_index_add(idx, 0, SOURCE_MQTT, "s/u/t",
                                         owner_of(h, 1000 + i)), 0);
        snprintf(pat, sizeof(pat), "n%d/+/#", i);
        assert_int_equal(topic_index_add(idx, 0, SOURCE_MQTT, pat,
                                         owner_of(h, 2047)), 0);
    }
    match_into(idx, h, 0, SOURCE_MQTT, "s/u/t");
    assert_int_equal(h->total, 2000);
    for (int i = 0; i < 2000; i++)
        assert_int_equal(h->count[i], 1);
    match_into(idx, h, 0, SOURCE_MQTT, "n5/a/b/c");
    assert_int_equal(h->total, 1);
    for (int i = 0; i < 1000; i += 2)
        topic_index_remove(idx, 0, SOURCE_MQTT, "s/+/t", owner_of(h, i));
    match_into(idx, h, 0, SOURCE_MQTT, "s/v/t");
    assert_int_equal(h->total, 500);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(h->count[i], i % 2);
    topic_index_free(idx);
    free(h);
}

static void test_index_deep(void **state)
{
    (void)state;
    struct topic_index *idx = topic_index_new();
    struct hits *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    char *topic = levels(100, NULL, NULL);
    char *plus = levels(100, "+", NULL);
    char *hash = levels(100, "+", "#");
    char *longer = levels(101, "+", NULL);
    assert_int_equal(topic_index_add(idx, 0, SOURCE_MQTT, topic,
                                     owner_of(h, 0)), 0);
    assert_int_equal(topic_index_add(idx, 0, SOURCE_MQTT, plus,
                                     owner_of(h, 1)), 0);
    assert_int_equal(topic_index_add(idx, 0, SOURCE_MQTT, hash,
                                     owner_of(h, 2)), 0);
    assert_int_equal(topic_index_add(idx, 0, SOURCE_MQTT, longer,
                                     owner_of(h, 3)), 0);
    assert_int_equal(topic_index_add(idx, 0, SOURCE_MQTT, "l0/#",
                                     owner_of(h, 4)), 0);
    match_into(idx, h, 0, SOURCE_MQTT, topic);
    assert_int_equal(h->total, 4);
    assert_int_equal(h->count[3], 0);
    topic_index_remove(idx, 0, SOURCE_MQTT, plus, owner_of(h, 1));
    match_into(idx, h, 0, SOURCE_MQTT, topic);
    assert_int_equal(h->total, 3);
    assert_int_equal(h->count[1], 0);
    free(topic);
    free(plus);
    free(hash);
    free(longer);
    topic_index_free(idx);
    free(h);
}

/* Small deterministic PRNG (xorshift) for the randomized comparisons. */
static uint32_t rnd(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void random_mqtt(uint32_t *seed, char *out, bool filter)
{
    static const char *const lv[] = {"a", "b", "", "$x", "+", "#"};
    int n = 1 + (int)(rnd(seed) % 4);
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        int k = (int)(rnd(seed) % (filter ? 6 : 4));
        if (k == 5 && i + 1 < n)
            k = 4;
        if (i > 0)
            strcat(out, "/");
        strcat(out, lv[k]);
    }
    if (out[0] == '\0')
        strcpy(out, "a"); /* an empty filter is invalid */
}

/* The index must report exactly what brute-force matching reports. */
static void test_index_random_vs_brute(void **state)
{
    (void)state;
    enum { NPAT = 300, NTOPIC = 400 };
    uint32_t seed = 12345;
    struct topic_index *idx = topic_index_new();
    struct hits *h = calloc(1, sizeof(*h));
    char (*pats)[32] = calloc(NPAT, 32);
    assert_non_null(h);
    assert_non_null(pats);
    for (int i = 0; i < NPAT; i++) {
        random_mqtt(&seed, pats[i], true);
        assert_int_equal(topic_index_add(idx, 0, SOURCE_MQTT, pats[i],
                                         owner_of(h, i)), 0);
    }
    /* Remove a third again, to exercise pruning. */
    for (int i = 0; i < NPAT; i += 3)
        topic_index_remove(idx, 0, SOURCE_MQTT, pats[i], owner_of(h, i));
    for (int t = 0; t < NTOPIC; t++) {
        char topic[32];
        random_mqtt(&seed, topic, false);
        match_into(idx, h, 0, SOURCE_MQTT, topic);
        for (int i = 0; i < NPAT; i++) {
            int want = i % 3 != 0 &&
                       topic_mqtt_match(pats[i], topic, strlen(topic));
            if (h->count[i] != want)
                fail_msg("filter '%s' topic '%s': index %d brute %d",
                         pats[i], topic, h->count[i], want);
        }
    }
    topic_index_free(idx);
    free(pats);
    free(h);
}

static void test_index_redis_random_vs_brute(void **state)
{
    (void)state;
    enum { NPAT = 200, NTOPIC = 300 };
    static const char alpha[] = "ab*?[]^\\";
    uint32_t seed = 777;
    struct topic_index *idx = topic_index_new();
    struct hits *h = calloc(1, sizeof(*h));
    char (*pats)[16] = calloc(NPAT, 16);
    assert_non_null(h);
    assert_non_null(pats);
    for (int i = 0; i < NPAT; i++) {
        int n = 1 + (int)(rnd(&seed) % 5);
        for (int j = 0; j < n; j++)
            pats[i][j] = alpha[rnd(&seed) % (i % 2 ? 2 : 8)];
        assert_int_equal(topic_index_add(idx, 3, SOURCE_REDIS, pats[i],
                                         owner_of(h, i)), 0);
    }
    for (int t = 0; t < NTOPIC; t++) {
        char topic[8] = "";
        int n = 1 + (int)(rnd(&seed) % 4);
        for (int j = 0; j < n; j++)
            topic[j] = "ab*["[rnd(&seed) % 4];
        match_into(idx, h, 3, SOURCE_REDIS, topic);
        for (int i = 0; i < NPAT; i++) {
            int want = topic_glob_match(pats[i], strlen(pats[i]), topic,
                                        strlen(topic));
            if (h->count[i] != want)
                fail_msg("glob '%s' topic '%s': index %d brute %d", pats[i],
                         topic, h->count[i], want);
        }
    }
    topic_index_free(idx);
    free(pats);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mqtt_table),
        cmocka_unit_test(test_mqtt_explicit_length),
        cmocka_unit_test(test_mqtt_100_levels),
        cmocka_unit_test(test_glob_table),
        cmocka_unit_test(test_glob_binary_safe),
        cmocka_unit_test(test_glob_pathological),
        cmocka_unit_test(test_stream_match),
        cmocka_unit_test(test_validate_table),
        cmocka_unit_test(test_validate_messages),
        cmocka_unit_test(test_is_literal),
        cmocka_unit_test(test_param_safe_table),
        cmocka_unit_test(test_filter_key),
        cmocka_unit_test(test_filter_match),
        cmocka_unit_test(test_index_mqtt),
        cmocka_unit_test(test_index_refcount),
        cmocka_unit_test(test_index_redis_and_stream),
        cmocka_unit_test(test_index_many_owners),
        cmocka_unit_test(test_index_deep),
        cmocka_unit_test(test_index_random_vs_brute),
        cmocka_unit_test(test_index_redis_random_vs_brute),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
