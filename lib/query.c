/*
 * query.c - the query string of a stream request (SPEC 4): token,
 * lastEventId, topic (repeatable), snapshot. Unknown parameters are
 * ignored (cache busters); malformed ones are a 400.
 *
 * A ?topic= value is a pattern the client chooses and sluice then matches
 * against every event the stream considers, replay included, so its cost
 * is bounded here, before anything is matched: its length, how many there
 * are, and the parts of a Redis glob that make a match expensive ('*',
 * which backtracks, and "[...]" classes, which cost their length at every
 * byte tried: at most two in a request). The limits hold for every source
 * type: in an MQTT filter those characters are rare literals.
 */
#include "lib/query.h"

#include "lib/percent.h"

#include <stdlib.h>
#include <string.h>

#define QUERY_MAX_TOPICS 16      /* ?topic= values per request */
#define QUERY_MAX_TOPIC_LEN 256  /* bytes of one value, decoded */
#define QUERY_MAX_STARS 4        /* '*' in one value */
#define QUERY_MAX_CLASSES 2      /* "[...]" classes in all values together */
#define QUERY_MAX_CLASS_LEN 16   /* bytes of one class, brackets included */

void query_clear(struct stream_query *q)
{
    free(q->token);
    free(q->last_id);
    for (size_t i = 0; i < q->topics.count; i++)
        free(q->topics.items[i]);
    free(q->topics.items);
    memset(q, 0, sizeof(*q));
}

/* Decodes one key or value; returns a malloc'd string, NULL when it is
 * malformed (see percent_decode) or on ENOMEM. */
static char *query_decode(const char *s, size_t len)
{
    return percent_decode_dup(s, len, true);
}

/* The bytes of the class opening at p[0] == '[' up to and including its
 * ']' (a backslash escapes one byte), or 0 when it is unterminated. */
static size_t query_class_len(const char *p)
{
    size_t i = 1;

    if (p[i] == '^')
        i++;
    while (p[i] != '\0' && p[i] != ']')
        i += p[i] == '\\' && p[i + 1] != '\0' ? 2 : 1;
    return p[i] == ']' ? i + 1 : 0;
}

/* Checks a ?topic= value against the cost limits above (classes counted
 * over the whole request in *classes); NULL when it is acceptable, else
 * the reason for the 400. */
static const char *query_topic_refusal(const char *value, unsigned *classes)
{
    size_t stars = 0;

    if (value[0] == '\0')
        return "empty topic parameter";
    if (strlen(value) > QUERY_MAX_TOPIC_LEN)
        return "topic parameter longer than 256 bytes";
    for (const char *p = value; *p != '\0'; p++) {
        size_t len;
        if (*p == '\\' && p[1] != '\0') {
            p++;
        } else if (*p == '*') {
            if (++stars > QUERY_MAX_STARS)
                return "topic parameter with more than 4 '*'";
        } else if (*p == '[') {
            len = query_class_len(p);
            if (len == 0)
                return "topic parameter with an unterminated '['";
            if (len > QUERY_MAX_CLASS_LEN)
                return "topic parameter with a [class] over 16 bytes";
            if (++*classes > QUERY_MAX_CLASSES)
                return "more than 2 [classes] in topic parameters";
            p += len - 1;
        }
    }
    return NULL;
}

static int query_add_topic(struct stream_query *q, char *value)
{
    char **items;

    if (q->topics.count >= QUERY_MAX_TOPICS)
        return -1;
    items = realloc(q->topics.items, (q->topics.count + 1) * sizeof(*items));
    if (items == NULL)
        return -1;
    q->topics.items = items;
    q->topics.items[q->topics.count++] = value;
    return 0;
}

/* Stores one decoded key=value; takes value. -1 with why on refusal. */
static int query_set(struct stream_query *q, const char *key,
                            char *value, const char **why)
{
    if (strcmp(key, "token") == 0) {
        free(q->token);
        q->token = value;
    } else if (strcmp(key, "lastEventId") == 0) {
        free(q->last_id);
        q->last_id = value;
    } else if (strcmp(key, "snapshot") == 0) {
        q->snapshot = strcmp(value, "1") == 0 ? 1
                      : strcmp(value, "0") == 0 ? 0 : -2;
        free(value);
        if (q->snapshot == -2) {
            *why = "snapshot must be 0 or 1";
            return -1;
        }
    } else if (strcmp(key, "topic") == 0) {
        const char *refusal = query_topic_refusal(value, &q->classes);
        if (refusal == NULL && q->topics.count >= QUERY_MAX_TOPICS)
            refusal = "more than 16 topic parameters";
        if (refusal == NULL && query_add_topic(q, value) < 0)
            refusal = "out of memory";
        if (refusal != NULL) {
            free(value);
            *why = refusal;
            return -1;
        }
    } else {
        free(value); /* unknown parameters (cache busters) are ignored */
    }
    return 0;
}

/* Parses the raw query (may be NULL). 0, or -1 with why. */
int query_parse(const char *raw, struct stream_query *q,
                              const char **why)
{
    memset(q, 0, sizeof(*q));
    q->snapshot = -1;
    *why = "malformed query string";
    for (const char *p = raw; p != NULL && *p != '\0';) {
        const char *end = strchr(p, '&');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        size_t klen = eq != NULL ? (size_t)(eq - p) : len;
        char *key = query_decode(p, klen);
        char *value = eq != NULL ? query_decode(eq + 1, len - klen - 1)
                                 : strdup("");
        int rc;

        if (key == NULL || value == NULL) {
            free(key);
            free(value);
            return -1;
        }
        rc = query_set(q, key, value, why);
        free(key);
        if (rc < 0)
            return -1;
        p = end != NULL ? end + 1 : NULL;
    }
    return 0;
}

