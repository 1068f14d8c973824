/*
 * fuzz_stream_fields.c - libFuzzer driver for the Redis Streams entry
 * payload: an XREAD entry's [field, value, ...] array to the event's JSON
 * object (adapters/redis_entry.c, redis_entry_json), and that payload
 * through the json envelope every browser receives (lib/sse.c via
 * message_body).
 *
 * Input: a list of items, each one length byte L then L bytes (cut short
 * at the end of the input) as a string item; L = 255 is an integer item
 * (a reply XREAD never sends, which the adapter must skip). At most 64.
 *
 * Checks, for every input:
 *   - the payload is one JSON object (jansson parses it), unless a field
 *     name holds a NUL byte (legal in Redis, escaped as \u0000 by sluice,
 *     refused in object keys by jansson: then only the envelope is built);
 *   - "_encoding":"base64" ends it exactly when some value is not UTF-8;
 *   - the last value of each UTF-8 field name comes back byte for byte
 *     (decoded from base64 in that mode);
 *   - the json envelope of the event is one data: line that parses, and
 *     its "payload" is that same object (embedded, not a string).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <hiredis/hiredis.h>
#include <jansson.h>

#include "adapters/redis_entry.h"
#include "lib/message.h"
#include "lib/sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_ITEMS 64

static int fuzz_b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Standard padded base64 to bytes; returns the length, or -1. */
static long fuzz_b64_decode(const char *in, size_t len, unsigned char *out)
{
    size_t n = 0;

    if (len % 4 != 0)
        return -1;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        int pad = 0;

        for (int k = 0; k < 4; k++) {
            if (in[i + k] == '=' && i + 4 == len && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad > 0 || (v[k] = fuzz_b64_value((unsigned char)in[i + k])) < 0)
                return -1;
        }
        out[n++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
        if (pad < 2)
            out[n++] = (unsigned char)(v[1] << 4 | v[2] >> 2);
        if (pad < 1)
            out[n++] = (unsigned char)(v[2] << 6 | v[3]);
    }
    return (long)n;
}

static bool fuzz_is_str(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING;
}

/* Checks the last value of each UTF-8 field name against the object. */
static void fuzz_check_values(const redisReply *fields, json_t *obj,
                              bool base64)
{
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *f = fields->element[i], *v = fields->element[i + 1];
        const json_t *got;
        bool later = false;

        if (!fuzz_is_str(f) || !fuzz_is_str(v) ||
            !sse_utf8_valid(f->str, f->len))
            continue;
        if (base64 && f->len == 9 && memcmp(f->str, "_encoding", 9) == 0)
            continue; /* the marker wins, by design */
        for (size_t k = i + 2; k + 1 < fields->elements && !later; k += 2) {
            const redisReply *g = fields->element[k];

            later = fuzz_is_str(g) && fuzz_is_str(fields->element[k + 1]) &&
                    g->len == f->len && memcmp(g->str, f->str, f->len) == 0;
        }
        if (later)
            continue;
        got = json_object_getn(obj, f->str, f->len);
        if (!json_is_string(got))
            abort(); /* every field is there, as a string */
        if (!base64) {
            if (json_string_length(got) != v->len ||
                memcmp(json_string_value(got), v->str, v->len) != 0)
                abort();
        } else {
            unsigned char *dec = malloc(json_string_length(got) + 3);
            long n = fuzz_b64_decode(json_string_value(got),
                                     json_string_length(got), dec);

            if (n != (long)v->len || memcmp(dec, v->str, v->len) != 0)
                abort();
            free(dec);
        }
    }
}

/* The json envelope of an event carrying payload; checks it embeds obj. */
static void fuzz_check_envelope(const char *payload, size_t len,
                                const json_t *obj)
{
    struct message *m = message_new(0, SOURCE_REDIS_STREAM, "audit", 5,
                                    payload, len, 1764000000000);
    const char *body;
    size_t blen;
    json_t *env;

    if (m == NULL || message_set_stream_entry_id(m, "1764000000000-0") != 0)
        abort();
    m->seq = 1;
    body = message_body(m, ROUTE_FORMAT_JSON, "ai", &blen);
    if (body == NULL)
        abort();
    /* One "data: " line, then the blank line. */
    if (blen < 8 || memcmp(body, "data: ", 6) != 0 ||
        memcmp(body + blen - 2, "\n\n", 2) != 0 ||
        memchr(body, '\n', blen - 2) != NULL || memchr(body, '\r', blen))
        abort();
    if (obj != NULL) {
        env = json_loadb(body + 6, blen - 8, JSON_ALLOW_NUL, NULL);
        if (env == NULL || !json_equal(json_object_get(env, "payload"), obj))
            abort();
        json_decref(env);
    }
    message_unref(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char marker[] = "\"_encoding\":\"base64\"}";
    redisReply items[FUZZ_MAX_ITEMS], *ptrs[FUZZ_MAX_ITEMS];
    redisReply fields = {.type = REDIS_REPLY_ARRAY, .element = ptrs};
    struct evbuffer *out = evbuffer_new();
    bool base64 = false, nul_field = false;
    const char *payload;
    json_t *obj = NULL;
    size_t off = 0, len;

    if (out == NULL)
        return 0;
    while (off < size && fields.elements < FUZZ_MAX_ITEMS) {
        redisReply *r = &items[fields.elements];
        size_t l = data[off++];

        memset(r, 0, sizeof(*r));
        if (l == 255) {
            r->type = REDIS_REPLY_INTEGER;
            r->integer = 42;
        } else {
            if (l > size - off)
                l = size - off;
            r->type = REDIS_REPLY_STRING;
            r->str = (char *)data + off;
            r->len = l;
            off += l;
        }
        ptrs[fields.elements++] = r;
    }
    for (size_t i = 0; i < fields.elements; i++) {
        const redisReply *r = ptrs[i];

        if (i % 2 == 1 && fuzz_is_str(r) && !sse_utf8_valid(r->str, r->len))
            base64 = true;
        if (i % 2 == 0 && i + 1 < fields.elements && fuzz_is_str(r) &&
            memchr(r->str, '\0', r->len) != NULL)
            nul_field = true;
    }

    if (redis_entry_json(out, &fields) != 0)
        abort();
    len = evbuffer_get_length(out);
    payload = (const char *)evbuffer_pullup(out, -1);
    if (len < 2 || payload[0] != '{' || payload[len - 1] != '}' ||
        !sse_utf8_valid(payload, len))
        abort();
    if (!nul_field) {
        const json_t *enc;

        obj = json_loadb(payload, len, JSON_ALLOW_NUL, NULL);
        if (!json_is_object(obj))
            abort();
        enc = json_object_get(obj, "_encoding");
        if (base64 && !(json_is_string(enc) &&
                        strcmp(json_string_value(enc), "base64") == 0))
            abort();
        /* In base64 mode the marker ends the object. */
        if (base64 && (len < sizeof(marker) - 1 ||
                       memcmp(payload + len - (sizeof(marker) - 1), marker,
                              sizeof(marker) - 1) != 0))
            abort();
        fuzz_check_values(&fields, obj, base64);
    }
    fuzz_check_envelope(payload, len, obj);
    json_decref(obj);
    evbuffer_free(out);
    return 0;
}
