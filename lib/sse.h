/*
 * sse.h - Server-Sent Events wire encoding (SPEC 3.3 and 4).
 *
 * Pure functions that append bytes to an evbuffer: "data:" lines split on
 * CR, LF and CRLF, the json envelope, base64, the "event:" line, time
 * stamps. No state, no I/O. These run once per message (not per delivery):
 * the bridge caches their output on the message.
 */
#ifndef SLUICE_SSE_H
#define SLUICE_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/message.h"

struct evbuffer;

/* True when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates,
 * nothing above U+10FFFF). NUL bytes are valid UTF-8. */
bool sse_utf8_valid(const char *s, size_t len);

/* True when s[0..len) is one complete JSON value (RFC 8259), any type. */
bool sse_json_valid(const char *s, size_t len);

/* Appends standard base64 (RFC 4648, with padding) of data. */
int sse_append_base64(struct evbuffer *out, const void *data, size_t len);

/* Appends s as a quoted JSON string. Bytes that are not valid UTF-8 are
 * replaced by U+FFFD; control characters are escaped. */
int sse_append_json_string(struct evbuffer *out, const char *s, size_t len);

/* Writes "2026-11-24T10:00:00.123Z" (UTC) for Unix ms into out (>= 25). */
void sse_format_time(int64_t ms, char *out, size_t outlen);

/* Appends "data: LINE\n" for each line of data, splitting on CRLF, CR and
 * LF. An empty payload gives one "data: \n"; a trailing newline gives a
 * last empty data line, so the browser reproduces the payload exactly. */
int sse_append_data(struct evbuffer *out, const char *data, size_t len);

/* Appends "event: NAME\n"; CR and LF in name become spaces so a topic
 * cannot break the framing. */
int sse_append_event(struct evbuffer *out, const char *name, size_t len);

/* Appends the json envelope of SPEC 3.3 on one line, without "data: ":
 * {"id":..,"source":..,"topic":..,"time":..,"payload":..[,"encoding":
 * "base64"][,"retain":..,"qos":..][,"stream_id":..]}. A payload that is
 * valid JSON is embedded as is, with CR/LF (JSON whitespace there) turned
 * into spaces; valid UTF-8 becomes a JSON string; anything else base64. */
int sse_append_json_envelope(struct evbuffer *out, const struct message *msg,
                             const char *source_name);

/* Appends the whole SSE body of msg for `format`: its "data:" lines and
 * the blank line that ends the event (no "id:"/"event:" lines, which the
 * stream writes). raw: the payload split in lines, or its base64 when it
 * is not valid UTF-8. Returns 0, or -1 on allocation failure. */
int sse_format_body(struct evbuffer *out, enum route_format format,
                    const struct message *msg, const char *source_name);

#endif
