/*
 * redis_entry.c - an entry's fields as a JSON object; see redis_entry.h.
 */
#include "adapters/redis_entry.h"

#include <stdbool.h>

#include <event2/buffer.h>

#include "lib/sse.h"

/* True when every value of the field/value list is valid UTF-8. */
static bool redis_entry_values_utf8(const redisReply *fields)
{
    for (size_t i = 1; i < fields->elements; i += 2) {
        const redisReply *v = fields->element[i];

        if (v->type == REDIS_REPLY_STRING && !sse_utf8_valid(v->str, v->len))
            return false;
    }
    return true;
}

/*
 * Builds the payload of one entry into out: a JSON object of its
 * fields in entry order, {"field":"value",...}, values as JSON strings.
 * When any value is not valid UTF-8 (JSON strings cannot hold it), every
 * value is base64 instead and "_encoding":"base64" ends the object, so a
 * consumer decodes all or nothing. Field names are always JSON strings
 * (a name that is not UTF-8, which nobody uses, gets U+FFFD for its bad
 * bytes). A field repeated in one entry appears twice (JSON.parse keeps
 * the last). Written with sse.c's encoders (the ones the bridge formats
 * every event with) rather than jansson: jansson refuses non-UTF-8
 * strings, and this appends into one reused buffer. 0, or -1 on ENOMEM.
 */
int redis_entry_json(struct evbuffer *out, const redisReply *fields)
{
    static const char marker[] = "\"_encoding\":\"base64\"";
    bool base64 = !redis_entry_values_utf8(fields);
    bool first = true;
    int rc = 0;

    evbuffer_drain(out, evbuffer_get_length(out));
    rc |= evbuffer_add(out, "{", 1);
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *f = fields->element[i];
        const redisReply *v = fields->element[i + 1];

        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (!first)
            rc |= evbuffer_add(out, ",", 1);
        first = false;
        rc |= sse_append_json_string(out, f->str, f->len);
        rc |= evbuffer_add(out, ":", 1);
        if (!base64) {
            rc |= sse_append_json_string(out, v->str, v->len);
            continue;
        }
        rc |= evbuffer_add(out, "\"", 1);
        rc |= sse_append_base64(out, v->str, v->len);
        rc |= evbuffer_add(out, "\"", 1);
    }
    if (base64 && !first)
        rc |= evbuffer_add(out, ",", 1);
    if (base64)
        rc |= evbuffer_add(out, marker, sizeof(marker) - 1);
    rc |= evbuffer_add(out, "}", 1);
    return rc == 0 ? 0 : -1;
}

