/*
 * fuzz_cors.c - libFuzzer driver for the CORS origin decision
 * (cors_allow_origin, lib/cors.c), which bridge/server.c calls with every
 * request's Origin header.
 *
 * Input:
 *   byte 0           flags: bit 0 sets auth.cookie in the config
 *   then             the configured origins, one per line, up to the
 *                    first empty line
 *   then             Origin header values, one per line
 *
 * The origins are put into a YAML config and read with config_parse, so
 * that config.c's checks apply (scheme://host[:port], no path; never "*"
 * with auth.cookie). When the config is refused (most random entries
 * are), the entries are used as they are, unvalidated: the matching rule
 * must hold for any list.
 *
 * Checks, for every Origin value, for NULL, and for each configured entry
 * together with its near misses (one byte longer, one byte shorter, its
 * first letter upper-cased), against the rule in lib/cors.h:
 *   - the answer is NULL, the string "*" or the Origin pointer itself;
 *   - it is what the first entry that is "*" or byte-equal to the Origin
 *     says (a configured origin is always allowed; nothing else is,
 *     unless "*" is configured);
 *   - from a config that was accepted: "*" never comes with auth.cookie,
 *     and an echoed Origin has no byte below 0x21 (it goes back out as a
 *     header value).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "lib/cors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_ORIGINS 16

/* What lib/cors.h says the answer must be. */
static const char *fuzz_expected(const struct config_strv *origins,
                                 const char *origin)
{
    if (origin == NULL)
        return NULL;
    for (size_t i = 0; i < origins->count; i++) {
        if (strcmp(origins->items[i], "*") == 0)
            return "*";
        if (strcmp(origins->items[i], origin) == 0)
            return origin;
    }
    return NULL;
}

static void fuzz_check(const struct config_strv *origins, const char *origin,
                       bool validated, bool cookie)
{
    const char *got = cors_allow_origin(origins, origin);
    const char *want = fuzz_expected(origins, origin);

    if (got != NULL && got != origin && strcmp(got, "*") != 0)
        abort(); /* only "*" or the request's own Origin goes out */
    if ((got == NULL) != (want == NULL))
        abort(); /* allowed exactly when an entry is "*" or equal */
    if (got != NULL && strcmp(got, want) != 0)
        abort();
    if (!validated || got == NULL)
        return;
    if (cookie && strcmp(got, "*") == 0)
        abort(); /* config.c: never "*" with a cookie */
    for (const char *p = got; *p != '\0'; p++)
        if ((unsigned char)*p < 0x21)
            abort(); /* an echoed origin is one header token */
}

/* The entry and its near misses: longer, shorter, another case. */
static void fuzz_check_entry(const struct config_strv *origins,
                             const char *entry, bool validated, bool cookie)
{
    size_t len = strlen(entry);
    char *near = malloc(len + 2);

    if (near == NULL)
        return;
    fuzz_check(origins, entry, validated, cookie);
    if (cors_allow_origin(origins, entry) == NULL)
        abort(); /* a configured origin is always allowed */
    memcpy(near, entry, len);
    memcpy(near + len, "x", 2);
    fuzz_check(origins, near, validated, cookie);
    near[len] = '\0';
    if (len > 0) {
        near[len - 1] = '\0';
        fuzz_check(origins, near, validated, cookie);
        near[len - 1] = entry[len - 1];
        if (near[0] >= 'a' && near[0] <= 'z') {
            near[0] = (char)(near[0] - 'a' + 'A');
            fuzz_check(origins, near, validated, cookie);
        }
    }
    free(near);
}

/* A YAML config with the entries as single-quoted scalars ('' for '). */
static char *fuzz_yaml(char **items, size_t n, bool cookie)
{
    size_t cap = 256;
    char *yaml, *p;

    for (size_t i = 0; i < n; i++)
        cap += 2 * strlen(items[i]) + 4;
    yaml = malloc(cap);
    if (yaml == NULL)
        return NULL;
    p = yaml + sprintf(yaml,
                       "sources: [{name: c, type: redis, "
                       "url: 'redis://127.0.0.1:6379'}]\n"
                       "routes: [{path: /a, topics: ['c:a']}]\n"
                       "%s"
                       "cors:\n  origins: [",
                       cookie ? "auth: {tokens: [{token: secret-token}], "
                                "cookie: t}\n"
                              : "");
    for (size_t i = 0; i < n; i++) {
        *p++ = '\'';
        for (const char *s = items[i]; *s != '\0'; s++) {
            if (*s == '\'')
                *p++ = '\'';
            *p++ = *s;
        }
        *p++ = '\'';
        if (i + 1 < n)
            *p++ = ',';
    }
    strcpy(p, "]\n");
    return yaml;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *items[FUZZ_MAX_ORIGINS];
    struct config_strv raw = {.items = items};
    const struct config_strv *origins = &raw;
    struct config *cfg = NULL;
    char *text, *line, *next, *yaml, *errors = NULL;
    bool cookie, in_origins = true;

    if (size < 1)
        return 0;
    cookie = (data[0] & 1) != 0;
    /* NULs end a C string: they cannot come from evhttp's headers. */
    text = malloc(size);
    if (text == NULL)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    if (strlen(text) != size - 1) {
        free(text);
        return 0;
    }
    /* Split into lines in place: the origins first. */
    for (line = text; line != NULL && in_origins; line = next) {
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        if (*line == '\0')
            in_origins = false;
        else if (raw.count < FUZZ_MAX_ORIGINS)
            items[raw.count++] = line;
    }
    yaml = fuzz_yaml(items, raw.count, cookie);
    if (yaml != NULL && raw.count > 0)
        cfg = config_parse("fuzz.yaml", yaml, strlen(yaml), &errors);
    free(errors);
    free(yaml);
    if (cfg != NULL)
        origins = &cfg->cors_origins;

    fuzz_check(origins, NULL, cfg != NULL, cookie);
    for (size_t i = 0; i < origins->count; i++)
        fuzz_check_entry(origins, origins->items[i], cfg != NULL, cookie);
    for (; line != NULL; line = next) {
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        fuzz_check(origins, line, cfg != NULL, cookie);
    }
    config_free(cfg);
    free(text);
    return 0;
}
