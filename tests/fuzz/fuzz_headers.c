/*
 * fuzz_headers.c - libFuzzer driver for the parsers of the request headers
 * a stream request carries, called directly with fuzzed values (fuzz_http
 * reaches them only through evhttp's own parser, one socket round trip per
 * input):
 *
 *   Last-Event-ID    history_find on a real local history (ids 1..6 issued,
 *                    1..3 evicted by max_events: 3), as server.c resolves
 *                    a resume id
 *   Accept-Encoding  compress_negotiate (lib/compress.c), then one
 *                    compressed write with the chosen coding
 *   Cookie           auth_check's cookie extraction (auth/auth.c), both as
 *                    the whole Cookie header and as the value of the
 *                    configured cookie among others
 *   Origin           passed through auth as a path and a token; the CORS
 *                    decision itself has its own target, fuzz_cors.c
 *
 * Input: the four values separated by '\n', in that order (missing ones
 * are absent headers). A Last-Event-ID "@-N" is sent as "<epoch>-N" with
 * this process's history epoch (it differs per start), so that seeds can
 * name issued ids.
 *
 * Known deviation, not treated as a failure here: an id whose seq has
 * leading zeros ("<epoch>-0004") was never issued, so by the README it is
 * "unknown-id", but ring_find parses the digits as a number and resumes
 * after seq 4 (harmless: the same position as "<epoch>-4"). See
 * claims.test.js (a todo test) and the evidence2 report. Checks: a FOUND id is exactly the canonical id of
 * its position and within the history; EXPIRED only for issued ids (every
 * canonical id of an evicted position is EXPIRED, of a stored one FOUND);
 * negotiation picks nothing unless "gzip" or "deflate" is named, and its
 * compressor works; a cookie holding the static token is accepted, and no
 * other result than OK/401/403-style codes comes out.
 */
#define _GNU_SOURCE /* strcasestr */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "auth/auth.h"
#include "config/config.h"
#include "lib/compress.h"
#include "lib/history.h"
#include "lib/history_local.h"
#include "lib/message.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_NOW_MS INT64_C(1764000000000)
#define FUZZ_TOKEN "fuzz-static-token"

static const char fuzz_yaml[] =
    "sources:\n"
    "  - {name: cache, type: redis, url: 'redis://127.0.0.1:6379'}\n"
    "routes:\n"
    "  - {path: '/sites/{site}', topics: ['cache:sites:{site}']}\n"
    "history: {max_events: 3}\n"
    "auth:\n"
    "  tokens: [{name: wall, token: " FUZZ_TOKEN ", allow: ['/sites/*']}]\n"
    "  jwt: {algorithm: HS256, secret: fuzz-secret, allow: ['/u/{sub}/*']}\n"
    "  cookie: sluice_token\n";

static struct {
    struct event_base *base;
    struct config *cfg;
    struct history *history;
    struct auth *auth;
    char ids[7][64]; /* canonical ids of positions 1..6 */
} fuzz;

static void fuzz_init(void)
{
    char *errors = NULL;
    char err[256];

    fuzz.cfg = config_parse("fuzz.yaml", fuzz_yaml, strlen(fuzz_yaml),
                            &errors);
    fuzz.base = event_base_new();
    if (fuzz.cfg == NULL || fuzz.base == NULL) {
        fprintf(stderr, "fuzz_headers: %s\n", errors ? errors : "");
        abort();
    }
    fuzz.history = history_local_open(fuzz.cfg, fuzz.base, FUZZ_NOW_MS, err,
                                      sizeof(err));
    fuzz.auth = auth_new(fuzz.cfg, err, sizeof(err));
    if (fuzz.history == NULL || fuzz.auth == NULL) {
        fprintf(stderr, "fuzz_headers: %s\n", err);
        abort();
    }
    for (int i = 1; i <= 6; i++) {
        struct message *m = message_new(0, SOURCE_REDIS, "sites:a", 7, "{}",
                                        2, FUZZ_NOW_MS + i);

        if (m == NULL || history_append(fuzz.history, m) < 0)
            abort();
        history_format_id(fuzz.history, (uint64_t)i, fuzz.ids[i],
                          sizeof(fuzz.ids[i]));
        if (getenv("FUZZ_HEADERS_IDS") != NULL)
            fprintf(stderr, "id %d: %s\n", i, fuzz.ids[i]);
    }
}

/* True when id is the canonical id c with zeros added in front of its
 * seq ("E-0004" for "E-4"): ring_find accepts those (see the top). */
static bool fuzz_zero_padded(const char *id, size_t len, const char *c)
{
    const char *dash = strrchr(c, '-');
    size_t head = (size_t)(dash - c) + 1, i = head;

    if (len <= strlen(c) || memcmp(id, c, head) != 0)
        return false;
    while (i < len && id[i] == '0' && len - i > strlen(c) - head)
        i++;
    return len - i == strlen(c) - head &&
           memcmp(id + i, c + head, len - i) == 0;
}

static void fuzz_last_event_id(const char *value, size_t len)
{
    char id[256];
    uint64_t pos = 0;
    enum history_lookup r;

    /* "@-..." stands for this process's epoch (it changes per start). */
    if (len >= 2 && value[0] == '@' && value[1] == '-' && len < 200) {
        size_t elen = (size_t)(strrchr(fuzz.ids[1], '-') - fuzz.ids[1]);

        memcpy(id, fuzz.ids[1], elen);
        memcpy(id + elen, value + 1, len - 1);
        len = elen + len - 1;
        value = id;
    }
    r = history_find(fuzz.history, value, len, &pos);
    if (r == HISTORY_FOUND) {
        /* Only ids 3..6 (3: everything after it is still held), and
         * only as issued (or zero-padded: a known deviation). */
        if (pos < 3 || pos > 6)
            abort();
        if ((strlen(fuzz.ids[pos]) != len ||
             memcmp(fuzz.ids[pos], value, len) != 0) &&
            !fuzz_zero_padded(value, len, fuzz.ids[pos]))
            abort();
        return;
    }
    for (int i = 1; i <= 6; i++) {
        if (strlen(fuzz.ids[i]) == len && memcmp(fuzz.ids[i], value, len) == 0 &&
            (r != HISTORY_EXPIRED || i >= 3))
            abort(); /* a canonical id: FOUND from 3, EXPIRED below */
    }
    if (r != HISTORY_UNKNOWN && r != HISTORY_EXPIRED)
        abort();
}

static void fuzz_accept_encoding(const char *value)
{
    enum compress_kind k = compress_negotiate(value);
    struct compressor *c;
    struct evbuffer *out;

    if (k != COMPRESS_NONE && strcasestr(value, "gzip") == NULL &&
        strcasestr(value, "deflate") == NULL)
        abort();
    if (k == COMPRESS_NONE)
        return;
    if (compress_name(k) == NULL || (c = compressor_new(k)) == NULL ||
        (out = evbuffer_new()) == NULL)
        abort();
    if (compressor_write_bytes(c, "data: x\n\n", 9, out) != 0 ||
        evbuffer_get_length(out) == 0)
        abort();
    evbuffer_free(out);
    compressor_free(c);
}

static enum auth_result fuzz_auth(const char *path, const char *cookie)
{
    int64_t expires = -1;
    char who[64];
    enum auth_result r;
    struct auth_request req = {path, NULL, NULL, cookie};

    r = auth_check(fuzz.auth, &req, FUZZ_NOW_MS, &expires, who, sizeof(who));
    if (auth_result_text(r) == NULL || (r != AUTH_OK && expires != 0))
        abort();
    return r;
}

static void fuzz_cookie(const char *value)
{
    char *header;
    size_t len = strlen(value);
    bool plain = len > 0 && strcspn(value, "; ,\t\"\\") == len;

    (void)fuzz_auth("/sites/a", value);
    header = malloc(len + 64);
    if (header == NULL)
        return;
    snprintf(header, len + 64, "theme=dark; sluice_token=%s; lang=en", value);
    if (fuzz_auth("/sites/a", header) == AUTH_OK && plain &&
        strcmp(value, FUZZ_TOKEN) != 0)
        abort(); /* only the real token (or a valid JWT: not here) is OK */
    if (strcmp(value, FUZZ_TOKEN) == 0 &&
        fuzz_auth("/sites/a", header) != AUTH_OK)
        abort(); /* the token among other cookies is found */
    free(header);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s, *values[4] = {NULL, NULL, NULL, NULL};
    char *p;

    if (fuzz.base == NULL)
        fuzz_init();
    s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    p = s;
    for (int i = 0; i < 4 && p != NULL; i++) {
        char *nl = strchr(p, '\n');

        values[i] = p;
        if (nl != NULL)
            *nl = '\0';
        p = nl != NULL ? nl + 1 : NULL;
    }
    if (values[0] != NULL)
        fuzz_last_event_id(values[0], strlen(values[0]));
    if (values[1] != NULL) /* Origin: see the top comment */
        (void)fuzz_auth(values[1], FUZZ_TOKEN);
    if (values[2] != NULL)
        fuzz_accept_encoding(values[2]);
    if (values[3] != NULL)
        fuzz_cookie(values[3]);
    free(s);
    return 0;
}
