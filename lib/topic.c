/*
 * topic.c - topic patterns: the syntax of each bus (matching, validation,
 * literal or wildcard, safe parameter values, upstream wildcards) and the
 * filters a stream watches.
 *
 * Each bus's syntax is one entry of topic_syntaxes[]: adding a bus adds
 * an entry here, and nothing in routing, the index or the bridge switches
 * on the bus type. Matching is on the per-message hot path (through the
 * index, topic_index.c) and allocates nothing.
 */
#include "lib/topic.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MQTT_MAX_PATTERN 65535

/* ------------------------------------------------------------------ */
/* Matching                                                            */
/* ------------------------------------------------------------------ */

/*
 * MQTT 3.1.1 section 4.7: "+" matches exactly one level (which may be
 * empty), "#" as the last level matches its parent and everything below,
 * and a topic starting with '$' is not matched by a filter whose first
 * level is a wildcard. Iterative, one pass over both strings. A filter
 * that topic_validate refuses is compared level by level as text, except
 * that a "#" level that is not last matches nothing.
 */
bool topic_mqtt_match(const char *filter, const char *topic, size_t len)
{
    if (len > 0 && topic[0] == '$' && (filter[0] == '+' || filter[0] == '#'))
        return false;

    const char *f = filter;
    size_t off = 0; /* start of the current topic level; len + 1: none */
    for (;;) {
        const char *fend = f + strcspn(f, "/");
        size_t flen = (size_t)(fend - f);
        if (flen == 1 && f[0] == '#')
            return *fend == '\0';
        if (off > len)
            return false;
        const char *slash = memchr(topic + off, '/', len - off);
        size_t tend = slash ? (size_t)(slash - topic) : len;
        bool plus = flen == 1 && f[0] == '+';
        if (!plus && (flen != tend - off || memcmp(f, topic + off, flen) != 0))
            return false;
        off = slash ? tend + 1 : len + 1;
        if (*fend == '\0')
            return off > len;
        f = fend + 1;
    }
}

/*
 * Matches one pattern element (anything but '*') at p[pi] against byte c,
 * following Redis's stringmatchlen: '?' any byte; "[...]" a class with a
 * leading '^' for negation, "x-y" ranges (either order), "\\x" escapes, an
 * unterminated class running to the end of the pattern; "\\x" the byte x
 * (a lone trailing backslash is itself); any other byte itself. Range
 * bounds compare as plain char, exactly as Redis does, so that a range over
 * bytes >= 0x80 means here what it means to a Redis built for the same
 * CPU (char is signed on x86). Sets *next to the index after the element.
 */
static bool glob_element_match(const char *p, size_t plen, size_t pi,
                               char c, size_t *next)
{
    if (p[pi] == '?') {
        *next = pi + 1;
        return true;
    }
    if (p[pi] == '\\' && pi + 1 < plen) {
        *next = pi + 2;
        return p[pi + 1] == c;
    }
    if (p[pi] != '[') {
        *next = pi + 1;
        return p[pi] == c;
    }

    size_t i = pi + 1;
    bool negate = i < plen && p[i] == '^';
    if (negate)
        i++;
    bool match = false;
    for (;;) {
        if (i >= plen) {
            i = plen; /* unterminated: the class ends the pattern */
            break;
        }
        if (p[i] == '\\' && i + 1 < plen) {
            match = match || p[i + 1] == c;
            i += 2;
        } else if (p[i] == ']') {
            i++;
            break;
        } else if (i + 2 < plen && p[i + 1] == '-') {
            int lo = p[i], hi = p[i + 2];
            if (lo > hi) {
                int t = lo;
                lo = hi;
                hi = t;
            }
            match = match || (c >= lo && c <= hi);
            i += 3;
        } else {
            match = match || p[i] == c;
            i++;
        }
    }
    *next = i;
    return negate ? !match : match;
}

/*
 * Redis glob match with Redis's stringmatchlen semantics (including its
 * quirk that an empty string matches only an empty pattern, so "*" does
 * not match ""). Written here rather than taken from Redis (not a library
 * we link) and without its recursion: every element other than '*'
 * consumes exactly one byte, so the classic greedy algorithm with one
 * backtrack point (the last star) is exact and runs in O(plen * slen) for
 * any pattern, e.g. "*a*a*a*a*b". Redis also gives up on patterns nested
 * more than 1000 stars deep; this code simply matches them.
 */
bool topic_glob_match(const char *pattern, size_t plen, const char *s,
                      size_t slen)
{
    if (slen == 0)
        return plen == 0;

    size_t pi = 0, si = 0;
    size_t star_p = SIZE_MAX, star_s = 0;
    while (si < slen) {
        if (pi < plen && pattern[pi] == '*') {
            while (pi < plen && pattern[pi] == '*')
                pi++;
            if (pi == plen)
                return true;
            star_p = pi;
            star_s = si;
            continue;
        }
        size_t next;
        if (pi < plen &&
            glob_element_match(pattern, plen, pi, s[si], &next)) {
            pi = next;
            si++;
            continue;
        }
        if (star_p == SIZE_MAX)
            return false;
        /* Let the last star swallow one more byte and retry from there. */
        star_s++;
        si = star_s;
        pi = star_p;
    }
    while (pi < plen && pattern[pi] == '*')
        pi++;
    return pi == plen;
}

static bool topic_exact_match(const char *pattern, const char *topic,
                              size_t len)
{
    return strlen(pattern) == len && memcmp(pattern, topic, len) == 0;
}

static bool topic_redis_match(const char *pattern, const char *topic,
                              size_t len)
{
    return topic_glob_match(pattern, strlen(pattern), topic, len);
}

static int validate_fail(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", msg);
    return -1;
}

/* MQTT filter syntax: "#" only as the whole last level, "+" only as a
 * whole level, at most 65535 bytes (the MQTT string limit). */
static int validate_mqtt(const char *pattern, char *err, size_t errlen)
{
    if (strlen(pattern) > MQTT_MAX_PATTERN)
        return validate_fail(err, errlen, "pattern longer than 65535 bytes");
    const char *level = pattern;
    for (;;) {
        const char *end = level + strcspn(level, "/");
        size_t n = (size_t)(end - level);
        const char *hash = memchr(level, '#', n);
        const char *plus = memchr(level, '+', n);
        if (hash != NULL && (n != 1 || *end != '\0'))
            return validate_fail(err, errlen,
                                 "'#' must be the whole last level");
        if (plus != NULL && n != 1)
            return validate_fail(err, errlen, "'+' must be a whole level");
        if (*end == '\0')
            return 0;
        level = end + 1;
    }
}

/* The buses' pattern syntaxes, indexed by enum source_type. Redis accepts
 * any byte string as a glob (an unterminated class or a trailing backslash
 * has a meaning), and a stream key is any name: neither needs a
 * validator. */
static const struct topic_syntax topic_syntaxes[] = {
    [SOURCE_MQTT] = {
        .type = SOURCE_MQTT,
        .match = topic_mqtt_match,
        .validate = validate_mqtt,
        .wildcards = "+#",
        .unsafe = "+#/",
        .level_sep = '/',
        .param_wildcard = "+",
        .rest_wildcard = "#",
        .index = TOPIC_INDEX_LEVELS,
        .upstream = TOPIC_UPSTREAM_PATTERN,
    },
    [SOURCE_REDIS] = {
        .type = SOURCE_REDIS,
        .match = topic_redis_match,
        .wildcards = "*?[\\",
        .unsafe = "*?[]\\",
        .param_wildcard = "*",
        .rest_wildcard = "*",
        .index = TOPIC_INDEX_SCAN,
        .upstream = TOPIC_UPSTREAM_BY_LITERAL,
    },
    [SOURCE_REDIS_STREAM] = {
        .type = SOURCE_REDIS_STREAM,
        .match = topic_exact_match,
        .wildcards = "",
        .unsafe = "",
        .per_key = true,
        .index = TOPIC_INDEX_LITERAL,
        .upstream = TOPIC_UPSTREAM_EXACT,
    },
};

const struct topic_syntax *topic_syntax_of(enum source_type type)
{
    if ((size_t)type >= sizeof(topic_syntaxes) / sizeof(topic_syntaxes[0]))
        return &topic_syntaxes[SOURCE_REDIS_STREAM]; /* exact: matches least */
    return &topic_syntaxes[type];
}

bool topic_match(enum source_type type, const char *pattern,
                 const char *topic, size_t len)
{
    return topic_syntax_of(type)->match(pattern, topic, len);
}

bool topic_is_literal(enum source_type type, const char *pattern)
{
    return strpbrk(pattern, topic_syntax_of(type)->wildcards) == NULL;
}

int topic_validate(enum source_type type, const char *pattern, char *err,
                   size_t errlen)
{
    const struct topic_syntax *syn = topic_syntax_of(type);

    if (pattern == NULL || pattern[0] == '\0')
        return validate_fail(err, errlen, "empty pattern");
    return syn->validate != NULL ? syn->validate(pattern, err, errlen) : 0;
}

bool topic_param_safe(enum source_type type, const char *value, size_t len,
                      bool multi_level)
{
    const struct topic_syntax *syn = topic_syntax_of(type);

    if (value == NULL || len == 0 || memchr(value, '\0', len) != NULL)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = value[i];
        if (multi_level && syn->level_sep != '\0' && c == syn->level_sep)
            continue;
        if (strchr(syn->unsafe, c) != NULL)
            return false;
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* Filters                                                             */
/* ------------------------------------------------------------------ */

bool topic_filter_match(const struct topic_filter *f, uint32_t source,
                        enum source_type type, const char *topic,
                        size_t len)
{
    bool hit = false;
    for (size_t i = 0; i < f->count && !hit; i++) {
        const struct topic_pattern *p = &f->patterns[i];
        hit = p->source == source && topic_match(p->type, p->pattern, topic,
                                                 len);
    }
    if (!hit || f->narrow.count == 0)
        return hit;
    for (size_t i = 0; i < f->narrow.count; i++) {
        if (topic_match(type, f->narrow.items[i], topic, len))
            return true;
    }
    return false;
}

/* Writes s with '\\' and '|' escaped by a backslash, so that '|' never
 * occurs unescaped inside an entry. */
static void key_write_escaped(FILE *out, const char *s)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\' || *s == '|')
            fputc('\\', out);
        fputc(*s, out);
    }
}

/* One key entry: "p<source>:<type>:<pattern>" or "n<narrow>". Returns a
 * malloc'd string or NULL. */
static char *key_entry(char kind, uint32_t source, int type, const char *text)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&buf, &size);
    if (out == NULL)
        return NULL;
    if (kind == 'p')
        fprintf(out, "p%u:%d:", (unsigned)source, type);
    else
        fputc('n', out);
    key_write_escaped(out, text);
    if (fclose(out) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

static int key_compare(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts entries, drops duplicates and joins them with '|'. Returns a
 * malloc'd string or NULL. */
static char *key_join(char **entries, size_t n)
{
    qsort(entries, n, sizeof(*entries), key_compare);
    size_t total = 1;
    for (size_t i = 0; i < n; i++)
        total += strlen(entries[i]) + 1;
    char *key = malloc(total);
    if (key == NULL)
        return NULL;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(entries[i], entries[i - 1]) == 0)
            continue;
        if (at > 0)
            key[at++] = '|';
        size_t len = strlen(entries[i]);
        memcpy(key + at, entries[i], len);
        at += len;
    }
    key[at] = '\0';
    return key;
}

/*
 * The key is the sorted, deduplicated set of entries "p<src>:<type>:<pat>"
 * and "n<narrow>" joined by '|', with '\\' and '|' escaped inside entries;
 * so equal sets give equal keys and different sets different keys.
 */
char *topic_filter_key(const struct topic_filter *f)
{
    size_t n = f->count + f->narrow.count;
    char **entries = calloc(n > 0 ? n : 1, sizeof(*entries));
    char *key = NULL;
    if (entries == NULL)
        return NULL;
    for (size_t i = 0; i < f->count; i++) {
        const struct topic_pattern *p = &f->patterns[i];
        entries[i] = key_entry('p', p->source, (int)p->type, p->pattern);
        if (entries[i] == NULL)
            goto out;
    }
    for (size_t i = 0; i < f->narrow.count; i++) {
        entries[f->count + i] = key_entry('n', 0, 0, f->narrow.items[i]);
        if (entries[f->count + i] == NULL)
            goto out;
    }
    key = key_join(entries, n);
out:
    for (size_t i = 0; i < n; i++)
        free(entries[i]);
    free(entries);
    return key;
}

void topic_filter_clear(struct topic_filter *f)
{
    for (size_t i = 0; i < f->count; i++)
        free(f->patterns[i].pattern);
    free(f->patterns);
    config_strv_clear(&f->narrow);
    memset(f, 0, sizeof(*f));
}
