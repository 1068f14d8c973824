/*
 * message.c - the reference-counted message that flows from an adapter
 * through the history to every browser stream (see message.h).
 *
 * Layout: one malloc holds the struct, then the topic and its NUL, then
 * the payload and a NUL (not part of payload_len; it only makes the
 * payload safe to hand to string functions in a debugger or a log). The
 * redis-stream entry id and the cached SSE bodies are separate
 * allocations owned by the message and freed with it.
 *
 * The invariant a reader must not break: once the history has given the
 * message its id, the message is shared and immutable; only message_body()
 * still writes to it, filling each cached body once (single-threaded), and
 * a cached body is never rebuilt or freed before the message is.
 */
#include "lib/message.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "lib/sse.h"

struct message *message_new(uint32_t source, enum source_type type,
                            const char *topic, size_t topic_len,
                            const void *payload, size_t payload_len,
                            int64_t time_ms)
{
    struct message *msg;
    size_t total = sizeof(*msg);

    /* Two NULs, then the two strings; refuse sizes that would overflow. */
    if (topic_len > SIZE_MAX - total - 2)
        return NULL;
    total += topic_len + 2;
    if (payload_len > SIZE_MAX - total)
        return NULL;
    total += payload_len;

    msg = malloc(total);
    if (msg == NULL)
        return NULL;
    /* Zero the struct only: the strings are about to be overwritten. */
    *msg = (struct message){
        .refcount = 1,
        .source = source,
        .type = type,
        .time_ms = time_ms,
        .topic_len = topic_len,
        .payload_len = payload_len,
    };
    msg->topic = (char *)(msg + 1);
    msg->payload = msg->topic + topic_len + 1;
    if (topic_len > 0)
        memcpy(msg->topic, topic, topic_len);
    msg->topic[topic_len] = '\0';
    if (payload_len > 0)
        memcpy(msg->payload, payload, payload_len);
    msg->payload[payload_len] = '\0';
    return msg;
}

struct message *message_ref(struct message *msg)
{
    assert(msg->refcount > 0);
    msg->refcount++;
    return msg;
}

/* Accepts NULL, like free(). */
void message_unref(struct message *msg)
{
    int format;

    if (msg == NULL)
        return;
    assert(msg->refcount > 0);
    if (--msg->refcount > 0)
        return;
    for (format = 0; format < ROUTE_FORMAT_COUNT; format++)
        free(msg->body[format]);
    free(msg->stream_entry_id);
    free(msg);
}

/*
 * Replaces the entry id (NULL clears it). Call it before the message is
 * shared: a body cached before the call would not show the new id.
 */
int message_set_stream_entry_id(struct message *msg, const char *id)
{
    char *copy = NULL;

    assert(msg->body[ROUTE_FORMAT_JSON] == NULL);
    if (id != NULL) {
        copy = strdup(id);
        if (copy == NULL)
            return -1;
    }
    free(msg->stream_entry_id);
    msg->stream_entry_id = copy;
    return 0;
}

/*
 * Formats the body into a temporary evbuffer and copies it out into one
 * malloc'd block, so that the hot path (fan-out) can reference a flat,
 * stable buffer for the life of the message.
 */
static char *message_format(const struct message *msg,
                            enum route_format format,
                            const char *source_name, size_t *len)
{
    struct evbuffer *buf;
    char *body = NULL;
    size_t n;

    buf = evbuffer_new();
    if (buf == NULL)
        return NULL;
    if (sse_format_body(buf, format, msg, source_name) != 0)
        goto cleanup;
    n = evbuffer_get_length(buf);
    body = malloc(n > 0 ? n : 1);
    if (body == NULL)
        goto cleanup;
    if (evbuffer_copyout(buf, body, n) != (ev_ssize_t)n) {
        free(body);
        body = NULL;
        goto cleanup;
    }
    *len = n;
cleanup:
    evbuffer_free(buf);
    return body;
}

const char *message_body(struct message *msg, enum route_format format,
                         const char *source_name, size_t *len)
{
    size_t n;
    char *body;

    if ((unsigned)format >= ROUTE_FORMAT_COUNT)
        return NULL;
    if (msg->body[format] == NULL) {
        body = message_format(msg, format, source_name, &n);
        if (body == NULL)
            return NULL;
        msg->body[format] = body;
        msg->body_len[format] = n;
    }
    *len = msg->body_len[format];
    return msg->body[format];
}

/*
 * Deterministic, so that the history's max_bytes accounting gives the same
 * answer on append and on eviction: the cached bodies (built lazily) and
 * the entry id are left out.
 */
size_t message_size(const struct message *msg)
{
    return sizeof(*msg) + msg->topic_len + msg->payload_len;
}
