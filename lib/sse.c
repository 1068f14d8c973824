/*
 * sse.c - Server-Sent Events wire encoding (SPEC 3.3 and 4).
 *
 * Everything that turns a message into bytes on the wire lives here: the
 * "data:" lines of the raw format, the one-line json envelope, the JSON
 * string escaping and base64 it needs, the "event:" line and the time
 * stamps. The functions are pure: they append to an evbuffer and keep no
 * state. The bridge calls them once per message (message_body() caches
 * the result), never once per delivery, so they favour clarity over
 * tricks, but they stay linear in their input: every loop scans forward
 * once and appends whole runs of bytes, never byte by byte.
 *
 * The invariant a reader must not break: nothing appended by
 * sse_format_body() may contain a CR, and every LF in it ends a "data:"
 * line (or the event). A payload byte that is not the UTF-8 of some text
 * never reaches the wire as is: it is replaced (json strings) or the
 * whole payload is sent as base64.
 */
#include "lib/sse.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <jansson.h>
#include <openssl/evp.h>

/* Input bytes base64-encoded per EVP_EncodeBlock call: a multiple of 3 so
 * that only the last chunk is padded, small enough for its int length. */
#define SSE_BASE64_CHUNK (3 * 16384)

/* The range sse_format_time() prints: years 0000 to 9999, so that the
 * output always has the 24 characters of the documented form. */
#define SSE_TIME_MIN_MS (-62167219200000LL) /* 0000-01-01T00:00:00.000Z */
#define SSE_TIME_MAX_MS 253402300799999LL   /* 9999-12-31T23:59:59.999Z */

/* Appends n bytes at p; n == 0 appends nothing (p may then be NULL). */
static int sse_add(struct evbuffer *out, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    return evbuffer_add(out, p, n);
}

/*
 * Measures the UTF-8 sequence that starts at s[0] (avail >= 1 bytes
 * available). Returns its length and sets *ok when it is well formed
 * (the Unicode Standard, table 3-7: no overlongs, no surrogates, nothing above
 * U+10FFFF). When it is not, sets *ok to false and returns the length of
 * its "maximal subpart" (at least 1): the bytes a decoder replaces by one
 * U+FFFD, as browsers' TextDecoder does.
 *
 * Hand-written: none of the libraries we may use (Debian 12 packages)
 * exposes a strict UTF-8 validator as a public function; jansson and
 * libevent keep theirs internal.
 */
static size_t sse_utf8_sequence(const unsigned char *s, size_t avail,
                                bool *ok)
{
    unsigned char lead = s[0];
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    size_t need;
    size_t i;

    *ok = lead < 0x80;
    if (lead < 0x80)
        return 1;
    if (lead < 0xC2 || lead > 0xF4)
        return 1; /* continuation, overlong C0/C1, or F5..FF */
    if (lead < 0xE0) {
        need = 2;
    } else if (lead < 0xF0) {
        need = 3;
        if (lead == 0xE0)
            lo = 0xA0; /* E0 80..9F would be overlong */
        else if (lead == 0xED)
            hi = 0x9F; /* ED A0..BF would be a surrogate */
    } else {
        need = 4;
        if (lead == 0xF0)
            lo = 0x90; /* F0 80..8F would be overlong */
        else if (lead == 0xF4)
            hi = 0x8F; /* F4 90.. would be above U+10FFFF */
    }
    for (i = 1; i < need && i < avail; i++) {
        if (s[i] < lo || s[i] > hi)
            break;
        lo = 0x80;
        hi = 0xBF;
    }
    *ok = i == need;
    return i;
}

/* True when the 8 bytes at s are all ASCII. */
static bool sse_ascii8(const unsigned char *s)
{
    uint64_t word;

    memcpy(&word, s, sizeof(word)); /* no alignment assumption */
    return (word & 0x8080808080808080ULL) == 0;
}

bool sse_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    bool ok;

    while (i < len) {
        if (len - i >= 8 && sse_ascii8(p + i)) {
            i += 8;
            continue;
        }
        i += sse_utf8_sequence(p + i, len - i, &ok);
        if (!ok)
            return false;
    }
    return true;
}

/*
 * jansson does the parsing (it checks UTF-8 in strings and nesting depth).
 * JSON_DECODE_ANY accepts scalars at the top level, JSON_ALLOW_NUL accepts
 * "\u0000" in strings, and JSON_DECODE_INT_AS_REAL makes integers beyond
 * int64 valid (as doubles) instead of an error. A number no double can
 * hold (1e999) still fails: such a payload counts as not-JSON and is sent
 * as a JSON string, which loses nothing.
 *
 * A raw NUL byte is never valid JSON text, but jansson's reader takes a NUL
 * at the very end for the end of input ("1\0" parses), which would put a
 * NUL into the envelope: such payloads are refused before parsing.
 */
bool sse_json_valid(const char *s, size_t len)
{
    json_error_t error;
    json_t *value;

    if (len > 0 && memchr(s, '\0', len) != NULL)
        return false;
    value = json_loadb(s, len,
                       JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL |
                           JSON_ALLOW_NUL,
                       &error);
    if (value == NULL)
        return false;
    json_decref(value);
    return true;
}

/*
 * Encodes with OpenSSL's EVP_EncodeBlock straight into space reserved in
 * the evbuffer (no temporary copy), one chunk at a time because the
 * function takes an int length.
 */
int sse_append_base64(struct evbuffer *out, const void *data, size_t len)
{
    const unsigned char *p = data;
    struct evbuffer_iovec vec;
    size_t chunk;
    size_t room;
    int written;

    while (len > 0) {
        chunk = len < SSE_BASE64_CHUNK ? len : SSE_BASE64_CHUNK;
        /* 4 bytes per 3 input bytes, plus the NUL EVP_EncodeBlock writes. */
        room = 4 * ((chunk + 2) / 3) + 1;
        if (evbuffer_reserve_space(out, (ev_ssize_t)room, &vec, 1) != 1)
            return -1;
        written = EVP_EncodeBlock(vec.iov_base, p, (int)chunk);
        vec.iov_len = (size_t)written; /* the NUL is not committed */
        if (evbuffer_commit_space(out, &vec, 1) != 0)
            return -1;
        p += chunk;
        len -= chunk;
    }
    return 0;
}

/* The escape for an ASCII byte inside a JSON string, or NULL when the byte
 * goes out as is. buf (>= 7 bytes) holds "\u00XX" forms. */
static const char *sse_json_escape(unsigned char c, char buf[7])
{
    static const char hex[] = "0123456789abcdef";

    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\b':
        return "\\b";
    case '\f':
        return "\\f";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    case '\t':
        return "\\t";
    default:
        break;
    }
    if (c >= 0x20)
        return NULL;
    memcpy(buf, "\\u00", 4);
    buf[4] = hex[c >> 4];
    buf[5] = hex[c & 0xF];
    buf[6] = '\0';
    return buf;
}

/* True for the 3-byte UTF-8 of U+2028 or U+2029 at s (seqlen bytes). */
static bool sse_is_line_separator(const unsigned char *s, size_t seqlen)
{
    return seqlen == 3 && s[0] == 0xE2 && s[1] == 0x80 &&
           (s[2] == 0xA8 || s[2] == 0xA9);
}

/*
 * The bytes that replace s[0..seqlen) inside a JSON string, or NULL when
 * they go out as is. *ok tells whether the sequence was valid UTF-8.
 */
static const char *sse_json_replacement(const unsigned char *s,
                                        size_t seqlen, bool ok, char buf[7])
{
    if (!ok)
        return "\xEF\xBF\xBD"; /* U+FFFD for the maximal subpart */
    if (seqlen == 1)
        return sse_json_escape(s[0], buf);
    if (sse_is_line_separator(s, seqlen))
        return s[2] == 0xA8 ? "\\u2028" : "\\u2029";
    return NULL;
}

/*
 * Hand-written rather than jansson's json_dumps(json_stringn()): the
 * envelope embeds a JSON payload verbatim, and jansson cannot put raw JSON
 * text inside an object, so the envelope is assembled by hand and needs
 * its strings escaped here. This also lets invalid UTF-8 be replaced
 * (jansson refuses such strings) and U+2028/U+2029 be escaped (they end a
 * line in pre-2019 JavaScript). Runs of plain bytes are appended whole.
 */
int sse_append_json_string(struct evbuffer *out, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    const char *repl;
    char buf[7];
    size_t run = 0; /* start of the pending run of plain bytes */
    size_t i = 0;
    size_t seqlen;
    bool ok;

    if (evbuffer_add(out, "\"", 1) != 0)
        return -1;
    while (i < len) {
        if (p[i] >= 0x20 && p[i] < 0x80 && p[i] != '"' && p[i] != '\\') {
            i++; /* the common case, kept out of the decoder */
            continue;
        }
        seqlen = sse_utf8_sequence(p + i, len - i, &ok);
        repl = sse_json_replacement(p + i, seqlen, ok, buf);
        if (repl == NULL) {
            i += seqlen;
            continue;
        }
        if (sse_add(out, p + run, i - run) != 0 ||
            evbuffer_add(out, repl, strlen(repl)) != 0)
            return -1;
        i += seqlen;
        run = i;
    }
    if (sse_add(out, p + run, i - run) != 0 ||
        evbuffer_add(out, "\"", 1) != 0)
        return -1;
    return 0;
}

/*
 * Times outside years 0000-9999 are clamped to that range, so the output
 * is always 24 characters (a receive time is a wall clock reading; the
 * clamp only keeps garbage from producing a malformed stamp). A shorter
 * out gets a truncated, still NUL-terminated, string.
 */
void sse_format_time(int64_t ms, char *out, size_t outlen)
{
    struct tm tm;
    time_t secs;
    int64_t rem;

    if (outlen == 0)
        return;
    if (ms < SSE_TIME_MIN_MS)
        ms = SSE_TIME_MIN_MS;
    if (ms > SSE_TIME_MAX_MS)
        ms = SSE_TIME_MAX_MS;
    /* Floor division, so that times before 1970 keep positive millis. */
    rem = ms % 1000;
    secs = (time_t)(ms / 1000);
    if (rem < 0) {
        rem += 1000;
        secs -= 1;
    }
    if (gmtime_r(&secs, &tm) == NULL) {
        snprintf(out, outlen, "1970-01-01T00:00:00.000Z");
        return;
    }
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int)rem);
}

/*
 * One "data: " line per line of data. Each line's content is appended in
 * one evbuffer_add, and the separator between lines ("\ndata: ") in
 * another. A CRLF ends one line, so "a\r\nb" gives two lines, like "a\nb".
 */
int sse_append_data(struct evbuffer *out, const char *data, size_t len)
{
    size_t start = 0;
    size_t i = 0;

    if (evbuffer_add(out, "data: ", 6) != 0)
        return -1;
    while (i < len) {
        if (data[i] != '\r' && data[i] != '\n') {
            i++;
            continue;
        }
        if (sse_add(out, data + start, i - start) != 0 ||
            evbuffer_add(out, "\ndata: ", 7) != 0)
            return -1;
        if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
            i++;
        i++;
        start = i;
    }
    if (sse_add(out, data + start, len - start) != 0 ||
        evbuffer_add(out, "\n", 1) != 0)
        return -1;
    return 0;
}

/*
 * Appends s[0..len) with every CR and LF turned into a space, copying into
 * space reserved in the evbuffer (one pass, no temporary copy).
 */
static int sse_append_one_line(struct evbuffer *out, const char *s,
                               size_t len)
{
    struct evbuffer_iovec vec;
    char *dst;
    size_t i;

    if (len == 0)
        return 0;
    if (len > (size_t)EV_SSIZE_MAX ||
        evbuffer_reserve_space(out, (ev_ssize_t)len, &vec, 1) != 1)
        return -1;
    dst = vec.iov_base;
    memcpy(dst, s, len);
    for (i = 0; i < len; i++) {
        if (dst[i] == '\r' || dst[i] == '\n')
            dst[i] = ' ';
    }
    vec.iov_len = len;
    return evbuffer_commit_space(out, &vec, 1);
}

int sse_append_event(struct evbuffer *out, const char *name, size_t len)
{
    if (evbuffer_add(out, "event: ", 7) != 0 ||
        sse_append_one_line(out, name, len) != 0 ||
        evbuffer_add(out, "\n", 1) != 0)
        return -1;
    return 0;
}

/*
 * Appends the envelope's "payload" value and sets *base64 when it had to be
 * base64-encoded. Valid JSON goes in as is, on one line: inside valid JSON
 * a CR or LF can only be whitespace (strings cannot hold them raw), so a
 * space keeps the meaning.
 */
static int sse_append_payload_value(struct evbuffer *out,
                                    const struct message *msg, bool *base64)
{
    *base64 = false;
    if (sse_json_valid(msg->payload, msg->payload_len))
        return sse_append_one_line(out, msg->payload, msg->payload_len);
    if (sse_utf8_valid(msg->payload, msg->payload_len))
        return sse_append_json_string(out, msg->payload, msg->payload_len);
    *base64 = true;
    if (evbuffer_add(out, "\"", 1) != 0 ||
        sse_append_base64(out, msg->payload, msg->payload_len) != 0 ||
        evbuffer_add(out, "\"", 1) != 0)
        return -1;
    return 0;
}

/* Appends the attributes after "payload", in their documented order. */
static int sse_append_attributes(struct evbuffer *out,
                                 const struct message *msg, bool base64)
{
    if (base64 && evbuffer_add(out, ",\"encoding\":\"base64\"", 20) != 0)
        return -1;
    if (msg->has_mqtt &&
        evbuffer_add_printf(out, ",\"retain\":%s,\"qos\":%u",
                            msg->retain ? "true" : "false",
                            (unsigned)msg->qos) < 0)
        return -1;
    if (msg->stream_entry_id != NULL &&
        (evbuffer_add(out, ",\"stream_id\":", 13) != 0 ||
         sse_append_json_string(out, msg->stream_entry_id,
                                strlen(msg->stream_entry_id)) != 0))
        return -1;
    return 0;
}

/*
 * The id (only [0-9A-Za-z._:-] by SPEC 3.2) and the time need no escaping,
 * but go through sse_append_json_string anyway so that a bad id can never
 * break the line. A NULL source_name is written as "".
 */
int sse_append_json_envelope(struct evbuffer *out, const struct message *msg,
                             const char *source_name)
{
    char time_buf[32];
    bool base64;

    if (source_name == NULL)
        source_name = "";
    sse_format_time(msg->time_ms, time_buf, sizeof(time_buf));
    if (evbuffer_add(out, "{\"id\":", 6) != 0 ||
        sse_append_json_string(out, msg->id, msg->id_len) != 0 ||
        evbuffer_add(out, ",\"source\":", 10) != 0 ||
        sse_append_json_string(out, source_name, strlen(source_name)) != 0 ||
        evbuffer_add(out, ",\"topic\":", 9) != 0 ||
        sse_append_json_string(out, msg->topic, msg->topic_len) != 0 ||
        evbuffer_add(out, ",\"time\":", 8) != 0 ||
        sse_append_json_string(out, time_buf, strlen(time_buf)) != 0 ||
        evbuffer_add(out, ",\"payload\":", 11) != 0)
        return -1;
    if (sse_append_payload_value(out, msg, &base64) != 0 ||
        sse_append_attributes(out, msg, base64) != 0 ||
        evbuffer_add(out, "}", 1) != 0)
        return -1;
    return 0;
}

/* The raw body: the payload's lines, or its base64 (one line: base64 has
 * no CR or LF) when it is not UTF-8 text. */
static int sse_format_raw(struct evbuffer *out, const struct message *msg)
{
    if (sse_utf8_valid(msg->payload, msg->payload_len))
        return sse_append_data(out, msg->payload, msg->payload_len);
    if (evbuffer_add(out, "data: ", 6) != 0 ||
        sse_append_base64(out, msg->payload, msg->payload_len) != 0 ||
        evbuffer_add(out, "\n", 1) != 0)
        return -1;
    return 0;
}

int sse_format_body(struct evbuffer *out, enum route_format format,
                    const struct message *msg, const char *source_name)
{
    if (format == ROUTE_FORMAT_RAW) {
        if (sse_format_raw(out, msg) != 0)
            return -1;
    } else {
        if (evbuffer_add(out, "data: ", 6) != 0 ||
            sse_append_json_envelope(out, msg, source_name) != 0 ||
            evbuffer_add(out, "\n", 1) != 0)
            return -1;
    }
    return evbuffer_add(out, "\n", 1);
}
