/*
 * fuzz_sse.c - libFuzzer driver for lib/sse.c and lib/message.c.
 *
 * Builds a message from the input, formats both SSE bodies (json and raw)
 * and the "event:" line, and checks the invariants a browser relies on;
 * any violation calls abort() so that libFuzzer reports it:
 *   - a body never holds a CR, ends with "\n\n", and every line before the
 *     final blank one starts with "data: " (nothing can end the event
 *     early or inject an "id:"/"event:" field);
 *   - the json body is one line of valid UTF-8 holding a JSON object that
 *     jansson parses, whose "topic" and "payload" give back the input
 *     where the format promises it;
 *   - the raw body of a UTF-8 payload reproduces the payload the way a
 *     browser joins data lines (CRLF and CR read as LF);
 *   - message_body() returns its cache on the second call.
 *
 * Input layout: byte 0 flags (bit 0 has_mqtt, bit 1 retain, bits 2-3 qos,
 * bit 4 stream entry id), byte 1 topic length, bytes 2-9 the receive time
 * (little endian), then the topic, then the payload.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -I. \
 *   lib/sse.c lib/message.c tests/fuzz/fuzz_sse.c \
 *   -levent -ljansson -lcrypto -o fuzz_sse
 * Run:   ./fuzz_sse tests/fuzz/corpus/sse
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "lib/message.h"
#include "lib/sse.h"

#define FUZZ_HEADER 10

/* Aborts unless every line of body[0..len) but the final blank one starts
 * with prefix, the body holds no CR, and it ends with "\n\n" (or "\n"
 * when ends_blank is false). Returns the number of prefixed lines. */
static size_t fuzz_check_lines(const char *body, size_t len,
                               const char *prefix, bool ends_blank)
{
    size_t plen = strlen(prefix);
    size_t lines = 0;
    size_t i = 0;
    const char *nl;

    if (memchr(body, '\r', len) != NULL)
        abort();
    if (len == 0 || body[len - 1] != '\n')
        abort();
    if (ends_blank && (len < 2 || body[len - 2] != '\n'))
        abort();
    while (i < len - (ends_blank ? 1 : 0)) {
        if (len - i < plen || memcmp(body + i, prefix, plen) != 0)
            abort();
        nl = memchr(body + i, '\n', len - i);
        i = (size_t)(nl - body) + 1;
        lines++;
    }
    return lines;
}

/* The payload as a browser sees it after joining data lines: CRLF and CR
 * become LF. Returns a new buffer (free it) and its length in *out_len. */
static char *fuzz_normalise_newlines(const char *s, size_t len,
                                     size_t *out_len)
{
    char *out = malloc(len + 1);
    size_t i;
    size_t n = 0;

    if (out == NULL)
        abort();
    for (i = 0; i < len; i++) {
        if (s[i] == '\r') {
            out[n++] = '\n';
            if (i + 1 < len && s[i + 1] == '\n')
                i++;
        } else {
            out[n++] = s[i];
        }
    }
    *out_len = n;
    return out;
}

/* Checks the raw body of a UTF-8 payload: the data lines, joined with LF,
 * give back the payload. */
static void fuzz_check_raw_text(const struct message *msg, const char *body,
                                size_t len)
{
    char *expected;
    char *joined = malloc(len);
    size_t expected_len;
    size_t line_len;
    size_t n = 0;
    size_t i = 0;
    const char *nl;

    if (joined == NULL)
        abort();
    while (i < len - 1) {
        i += 6; /* "data: ", checked by fuzz_check_lines */
        nl = memchr(body + i, '\n', len - i);
        line_len = (size_t)(nl - (body + i));
        if (i > 6)
            joined[n++] = '\n'; /* the browser joins lines with LF */
        memcpy(joined + n, body + i, line_len);
        n += line_len;
        i += line_len + 1;
    }
    expected = fuzz_normalise_newlines(msg->payload, msg->payload_len,
                                       &expected_len);
    if (n != expected_len || memcmp(joined, expected, n) != 0)
        abort();
    free(expected);
    free(joined);
}

/* Aborts unless the envelope's "payload" is the same JSON value as the
 * payload itself. */
static void fuzz_check_json_payload(json_t *root, const struct message *msg)
{
    json_error_t error;
    json_t *original;

    original = json_loadb(msg->payload, msg->payload_len,
                          JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL |
                              JSON_ALLOW_NUL,
                          &error);
    if (original == NULL ||
        !json_equal(original, json_object_get(root, "payload")))
        abort();
    json_decref(original);
}

/* Checks a string member of the envelope against the expected bytes. */
static void fuzz_check_member(json_t *root, const char *key, const char *s,
                              size_t len)
{
    json_t *value = json_object_get(root, key);

    if (!json_is_string(value) || json_string_length(value) != len ||
        memcmp(json_string_value(value), s, len) != 0)
        abort();
}

/* Checks the json body: one line, UTF-8, an object with the input in it. */
static void fuzz_check_json(const struct message *msg, const char *body,
                            size_t len)
{
    json_error_t error;
    json_t *root;
    bool json = sse_json_valid(msg->payload, msg->payload_len);
    bool text = sse_utf8_valid(msg->payload, msg->payload_len);

    if (fuzz_check_lines(body, len, "data: ", true) != 1)
        abort();
    if (!sse_utf8_valid(body, len) || memchr(body, '\0', len) != NULL)
        abort();
    root = json_loadb(body + 6, len - 8,
                      JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, &error);
    if (!json_is_object(root))
        abort();
    if (sse_utf8_valid(msg->topic, msg->topic_len))
        fuzz_check_member(root, "topic", msg->topic, msg->topic_len);
    if (json)
        fuzz_check_json_payload(root, msg);
    if (!json && text)
        fuzz_check_member(root, "payload", msg->payload, msg->payload_len);
    if ((json_object_get(root, "encoding") != NULL) != (!json && !text))
        abort();
    if ((json_object_get(root, "qos") != NULL) != msg->has_mqtt)
        abort();
    if ((json_object_get(root, "stream_id") != NULL) !=
        (msg->stream_entry_id != NULL))
        abort();
    json_decref(root);
}

/* Formats one body twice through message_body() and checks it. */
static void fuzz_check_body(struct message *msg, enum route_format format)
{
    const char *body;
    size_t len;
    size_t len2;

    body = message_body(msg, format, "fuzz\"src", &len);
    if (body == NULL)
        abort();
    if (message_body(msg, format, "fuzz\"src", &len2) != body || len2 != len)
        abort();
    fuzz_check_lines(body, len, "data: ", true);
    if (format == ROUTE_FORMAT_JSON) {
        fuzz_check_json(msg, body, len);
        return;
    }
    if (!sse_utf8_valid(body, len))
        abort();
    if (sse_utf8_valid(msg->payload, msg->payload_len))
        fuzz_check_raw_text(msg, body, len);
    else if (fuzz_check_lines(body, len, "data: ", true) != 1)
        abort();
}

/* The "event:" line of the topic: exactly one line, no CR. */
static void fuzz_check_event(const struct message *msg)
{
    struct evbuffer *buf = evbuffer_new();
    size_t len;

    if (buf == NULL)
        abort();
    if (sse_append_event(buf, msg->topic, msg->topic_len) != 0)
        abort();
    len = evbuffer_get_length(buf);
    if (fuzz_check_lines((const char *)evbuffer_pullup(buf, -1), len,
                         "event: ", false) != 1)
        abort();
    evbuffer_free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct message *msg;
    size_t topic_len;
    uint64_t time_bits;
    uint8_t flags;

    if (size < FUZZ_HEADER)
        return 0;
    flags = data[0];
    topic_len = data[1];
    if (topic_len > size - FUZZ_HEADER)
        topic_len = size - FUZZ_HEADER;
    memcpy(&time_bits, data + 2, sizeof(time_bits));
    msg = message_new(0, SOURCE_MQTT, (const char *)data + FUZZ_HEADER,
                      topic_len, data + FUZZ_HEADER + topic_len,
                      size - FUZZ_HEADER - topic_len, (int64_t)time_bits);
    if (msg == NULL)
        abort();
    msg->has_mqtt = flags & 1;
    msg->retain = flags & 2;
    msg->qos = (uint8_t)((flags >> 2) & 3);
    if ((flags & 16) && message_set_stream_entry_id(msg, "1700000000000-0"))
        abort();
    memcpy(msg->id, "1.7", 4);
    msg->id_len = 3;
    fuzz_check_body(msg, ROUTE_FORMAT_JSON);
    fuzz_check_body(msg, ROUTE_FORMAT_RAW);
    fuzz_check_event(msg);
    message_unref(msg);
    return 0;
}
