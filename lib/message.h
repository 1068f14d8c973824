/*
 * message.h - one message received from a bus: the unit that flows from an
 * adapter through the history to every browser stream.
 *
 * An adapter creates a message with message_new() and hands it to the
 * bridge through its sink. The history then gives it a sequence number and
 * an id, and it becomes immutable. Streams share it: each SSE body (json,
 * raw) is formatted once, on first use, and cached on the message, so a
 * fan-out to 10,000 streams formats it once (the hot path copies bytes,
 * it never formats).
 *
 * Messages are reference counted; the creator holds the first reference.
 * The topic and payload live in the same allocation as the struct.
 */
#ifndef SLUICE_MESSAGE_H
#define SLUICE_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

#define MESSAGE_ID_MAX 48 /* "id: " line content, NUL included */

struct message {
    int refcount;

    /* Set by the adapter. */
    uint32_t source;         /* index into config->sources */
    enum source_type type;
    int64_t time_ms;         /* receive time, Unix ms */
    char *topic;             /* NUL-terminated, points into this allocation */
    size_t topic_len;
    char *payload;           /* not NUL-terminated semantics: use payload_len */
    size_t payload_len;
    bool has_mqtt;           /* MQTT attributes below are meaningful */
    bool retain;
    uint8_t qos;
    char *stream_entry_id;   /* redis-stream entry id, or NULL; owned */
    bool stream_end;         /* per-key: the entry matches the route's end:
                                sent as "event: end", then the stream ends */

    /* Set by history_append. */
    uint64_t seq;            /* 0 until appended */
    char id[MESSAGE_ID_MAX];
    size_t id_len;

    /* Formatted SSE bodies ("data: ...\n" lines and the final blank line),
     * built on first use by message_body(); owned. */
    char *body[ROUTE_FORMAT_COUNT];
    size_t body_len[ROUTE_FORMAT_COUNT];
};

/*
 * Returns a new message with one reference, copying topic and payload.
 * Returns NULL on allocation failure.
 */
struct message *message_new(uint32_t source, enum source_type type,
                            const char *topic, size_t topic_len,
                            const void *payload, size_t payload_len,
                            int64_t time_ms);

/* Takes an extra reference; returns msg. */
struct message *message_ref(struct message *msg);

/* Drops a reference; frees the message with its cached bodies at zero. */
void message_unref(struct message *msg);

/* Sets the redis-stream entry id attribute (copied). 0 or -1 on ENOMEM. */
int message_set_stream_entry_id(struct message *msg, const char *id);

/*
 * Returns the cached SSE body for `format` (building it on first use with
 * sse_format_body), and its length in *len. `source_name` is the name of
 * the message's source. The pointer stays valid as long as the message.
 * Returns NULL only on allocation failure.
 */
const char *message_body(struct message *msg, enum route_format format,
                         const char *source_name, size_t *len);

/* Bytes a message accounts for in the history's max_bytes. */
size_t message_size(const struct message *msg);

#endif
