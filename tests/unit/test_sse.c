/*
 * test_sse.c - unit tests for lib/sse.c (SSE wire encoding) and
 * lib/message.c (the reference-counted message and its cached bodies).
 *
 * Every test compares complete expected byte strings: the wire format is
 * a contract with browsers (SPEC 3.3 and 4), so a changed byte is a bug.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "lib/message.h"
#include "lib/sse.h"

/* A byte string with an explicit length (may hold NULs). */
struct bytes {
    const char *s;
    size_t len;
};

#define BYTES(lit) { lit, sizeof(lit) - 1 }

/* Asserts that buf holds exactly expected[0..len), then empties it. */
static void expect_buffer(struct evbuffer *buf, const char *expected,
                          size_t len)
{
    size_t n = evbuffer_get_length(buf);
    const char *data = (const char *)evbuffer_pullup(buf, -1);

    if (n != len || (len > 0 && memcmp(data, expected, len) != 0))
        fail_msg("got %zu bytes \"%.*s\", expected %zu bytes \"%.*s\"", n,
                 (int)n, data ? data : "", len, (int)len, expected);
    evbuffer_drain(buf, n);
}

static void expect_str(struct evbuffer *buf, const char *expected)
{
    expect_buffer(buf, expected, strlen(expected));
}

/* ---- UTF-8 ---- */

static void test_utf8_valid_sequences(void **state)
{
    static const struct bytes valid[] = {
        BYTES(""),
        BYTES("plain ascii text, longer than eight bytes"),
        BYTES("a\0b"),                     /* NUL is valid UTF-8 */
        BYTES("\0\0\0\0\0\0\0\0\0"),
        BYTES("\x7f"),
        BYTES("\xc2\x80"),                 /* U+0080, first 2-byte */
        BYTES("caf\xc3\xa9"),              /* U+00E9 */
        BYTES("\xdf\xbf"),                 /* U+07FF */
        BYTES("\xe0\xa0\x80"),             /* U+0800, first 3-byte */
        BYTES("\xe2\x82\xac"),             /* U+20AC euro */
        BYTES("\xed\x9f\xbf"),             /* U+D7FF, before surrogates */
        BYTES("\xee\x80\x80"),             /* U+E000, after surrogates */
        BYTES("\xef\xbf\xbf"),             /* U+FFFF */
        BYTES("\xf0\x90\x80\x80"),         /* U+10000, first 4-byte */
        BYTES("\xf0\x9f\x98\x80"),         /* U+1F600 */
        BYTES("\xf4\x8f\xbf\xbf"),         /* U+10FFFF, the last */
        BYTES("1234567\xc3\xa9" "89abcdef\xe2\x82\xac" "0123456789"),
        BYTES("12345678\xf0\x9f\x98\x80"),
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        if (!sse_utf8_valid(valid[i].s, valid[i].len))
            fail_msg("valid case %zu rejected", i);
    }
}

static void test_utf8_invalid_sequences(void **state)
{
    static const struct bytes invalid[] = {
        BYTES("\x80"),                     /* lone continuation */
        BYTES("\xbf"),
        BYTES("\xc0\xaf"),                 /* overlong '/' */
        BYTES("\xc1\xbf"),                 /* overlong */
        BYTES("\xe0\x80\xaf"),             /* overlong 3-byte */
        BYTES("\xe0\x9f\xbf"),             /* overlong U+07FF */
        BYTES("\xf0\x8f\xbf\xbf"),         /* overlong U+FFFF */
        BYTES("\xed\xa0\x80"),             /* U+D800 surrogate */
        BYTES("\xed\xbf\xbf"),             /* U+DFFF surrogate */
        BYTES("\xed\xa0\xbd\xed\xb8\x80"), /* CESU-8 surrogate pair */
        BYTES("\xf4\x90\x80\x80"),         /* U+110000 */
        BYTES("\xf5\x80\x80\x80"),
        BYTES("\xf8\x88\x80\x80\x80"),     /* old 5-byte form */
        BYTES("\xfe"),
        BYTES("\xff"),
        BYTES("\xc3"),                     /* truncated 2-byte */
        BYTES("\xe2\x82"),                 /* truncated 3-byte */
        BYTES("\xf0\x9f\x98"),             /* truncated 4-byte */
        BYTES("\xe2\x82x"),                /* bad continuation */
        BYTES("\xc3\xc3\xa9"),
        BYTES("abcdefghijklmno\xc3"),      /* truncated after fast path */
        BYTES("12345678\x80"),
        BYTES("1234567\x80" "12345678"),
        BYTES("caf\xe9"),                  /* Latin-1 */
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        if (sse_utf8_valid(invalid[i].s, invalid[i].len))
            fail_msg("invalid case %zu accepted", i);
    }
}

/* ---- JSON validity ---- */

static void test_json_valid(void **state)
{
    static const struct bytes valid[] = {
        BYTES("{}"),
        BYTES("[]"),
        BYTES("{\"t\":21.5,\"ok\":[true,false,null]}"),
        BYTES("1"),
        BYTES("-0.5e3"),
        BYTES("\"text\""),
        BYTES("true"),
        BYTES("null"),
        BYTES(" 1 \r\n"),
        BYTES("123456789012345678901234567890"), /* beyond int64 */
        BYTES("\"\\u0000\""),
        BYTES("\"caf\xc3\xa9\""),
        BYTES("1e308"),
    };
    static const struct bytes invalid[] = {
        BYTES(""),
        BYTES("   "),
        BYTES("{"),
        BYTES("{\"a\":1,}"),
        BYTES("hello"),
        BYTES("1 2"),
        BYTES("'x'"),
        BYTES("01"),
        BYTES("NaN"),
        BYTES("1e999"),          /* no double holds it: sent as string */
        BYTES("[1]x"),
        BYTES("\"a\nb\""),       /* raw control character in a string */
        BYTES("\"\xff\""),       /* invalid UTF-8 in a string */
        BYTES("1\0"),           /* jansson alone takes a final NUL as EOF */
        BYTES("{}\0"),
        BYTES("\0"),
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        if (!sse_json_valid(valid[i].s, valid[i].len))
            fail_msg("valid JSON case %zu rejected", i);
    }
    for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        if (sse_json_valid(invalid[i].s, invalid[i].len))
            fail_msg("invalid JSON case %zu accepted", i);
    }
}

/* ---- base64 ---- */

static void test_base64_rfc4648(void **state)
{
    static const struct {
        const char *in;
        const char *out;
    } vectors[] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    struct evbuffer *buf = evbuffer_new();
    size_t i;

    (void)state;
    assert_non_null(buf);
    for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        assert_int_equal(sse_append_base64(buf, vectors[i].in,
                                           strlen(vectors[i].in)),
                         0);
        expect_str(buf, vectors[i].out);
    }
    assert_int_equal(sse_append_base64(buf, "\x00\xff\xfe", 3), 0);
    expect_str(buf, "AP/+");
    assert_int_equal(sse_append_base64(buf, NULL, 0), 0);
    assert_int_equal(evbuffer_get_length(buf), 0);
    evbuffer_free(buf);
}

/* Input larger than one encoding chunk: decodes back to the input. */
static void test_base64_large(void **state)
{
    const size_t len = 200000; /* 2 mod 3, not a multiple of the chunk */
    size_t enc_len = 4 * ((len + 2) / 3);
    struct evbuffer *buf = evbuffer_new();
    unsigned char *in = malloc(len);
    unsigned char *dec = malloc(enc_len);
    unsigned char *enc;
    size_t i;

    (void)state;
    assert_non_null(buf);
    assert_non_null(in);
    assert_non_null(dec);
    for (i = 0; i < len; i++)
        in[i] = (unsigned char)(i * 7 + (i >> 8));
    assert_int_equal(sse_append_base64(buf, in, len), 0);
    assert_int_equal(evbuffer_get_length(buf), enc_len);
    enc = evbuffer_pullup(buf, -1);
    /* EVP_DecodeBlock counts the padding as decoded zero bytes. */
    assert_int_equal(EVP_DecodeBlock(dec, enc, (int)enc_len),
                     (int)(enc_len / 4 * 3));
    assert_memory_equal(dec, in, len);
    assert_int_equal(enc[enc_len - 1], '='); /* one pad for 2 mod 3 */
    assert_int_not_equal(enc[enc_len - 2], '=');
    free(in);
    free(dec);
    evbuffer_free(buf);
}

/* ---- JSON strings ---- */

static void expect_json_string(const char *in, size_t len,
                               const char *expected)
{
    struct evbuffer *buf = evbuffer_new();

    assert_non_null(buf);
    assert_int_equal(sse_append_json_string(buf, in, len), 0);
    expect_str(buf, expected);
    evbuffer_free(buf);
}

static void test_json_string_escapes(void **state)
{
    (void)state;
    expect_json_string("", 0, "\"\"");
    expect_json_string("plain", 5, "\"plain\"");
    expect_json_string("a\"b\\c/d", 7, "\"a\\\"b\\\\c/d\"");
    expect_json_string("\n\r\t\b\f", 5, "\"\\n\\r\\t\\b\\f\"");
    expect_json_string("\x01\x1f\x00\x7f", 4, "\"\\u0001\\u001f\\u0000\x7f\"");
    expect_json_string("caf\xc3\xa9 \xf0\x9f\x98\x80", 10,
                       "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"");
    /* U+2028 and U+2029 escaped, their neighbour U+2027 not. */
    expect_json_string("a\xe2\x80\xa8" "b\xe2\x80\xa9" "c\xe2\x80\xa7", 12,
                       "\"a\\u2028b\\u2029c\xe2\x80\xa7\"");
}

static void test_json_string_invalid_utf8(void **state)
{
    (void)state;
    expect_json_string("a\xff" "b", 3, "\"a\xef\xbf\xbd" "b\"");
    /* A truncated sequence is one maximal subpart: one U+FFFD. */
    expect_json_string("\xe2\x82", 2, "\"\xef\xbf\xbd\"");
    expect_json_string("\xe2\x82" "x", 3, "\"\xef\xbf\xbdx\"");
    /* Overlong: C0 is never a lead byte, AF a lone continuation. */
    expect_json_string("\xc0\xaf", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\"");
    /* A surrogate: ED cannot be followed by A0, so three replacements. */
    expect_json_string("\xed\xa0\x80", 3,
                       "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
    expect_json_string("\xf4\x90\x80\x80", 4,
                       "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
    /* An invalid byte next to an escape. */
    expect_json_string("\"\x80\n", 3, "\"\\\"\xef\xbf\xbd\\n\"");
}

/* ---- time ---- */

static void expect_time(int64_t ms, const char *expected)
{
    char out[32];

    memset(out, 'X', sizeof(out));
    sse_format_time(ms, out, sizeof(out));
    assert_string_equal(out, expected);
}

static void test_format_time(void **state)
{
    char small[5] = "XXXX";
    char exact[25];

    (void)state;
    expect_time(0, "1970-01-01T00:00:00.000Z");
    expect_time(1795514400123LL, "2026-11-24T10:00:00.123Z");
    expect_time(951868799007LL, "2000-02-29T23:59:59.007Z");
    expect_time(-1, "1969-12-31T23:59:59.999Z");
    expect_time(-1000, "1969-12-31T23:59:59.000Z");
    expect_time(INT64_MAX, "9999-12-31T23:59:59.999Z");
    expect_time(INT64_MIN, "0000-01-01T00:00:00.000Z");
    sse_format_time(1795514400123LL, exact, sizeof(exact));
    assert_string_equal(exact, "2026-11-24T10:00:00.123Z");
    sse_format_time(1795514400123LL, small, sizeof(small));
    assert_string_equal(small, "2026");
}

/* ---- data lines and event line ---- */

static void expect_data(const char *in, size_t len, const char *expected)
{
    struct evbuffer *buf = evbuffer_new();

    assert_non_null(buf);
    assert_int_equal(sse_append_data(buf, in, len), 0);
    expect_str(buf, expected);
    evbuffer_free(buf);
}

static void test_data_lines(void **state)
{
    (void)state;
    expect_data("", 0, "data: \n");
    expect_data("a", 1, "data: a\n");
    expect_data("a\nb", 3, "data: a\ndata: b\n");
    expect_data("a\rb", 3, "data: a\ndata: b\n");
    expect_data("a\r\nb", 4, "data: a\ndata: b\n");
    expect_data("a\n", 2, "data: a\ndata: \n");
    expect_data("a\r", 2, "data: a\ndata: \n");
    expect_data("a\r\n", 3, "data: a\ndata: \n");
    expect_data("\n", 1, "data: \ndata: \n");
    expect_data("\n\n", 2, "data: \ndata: \ndata: \n");
    /* LF then CR is two line ends; CR CR LF is CR then CRLF. */
    expect_data("a\n\rb", 4, "data: a\ndata: \ndata: b\n");
    expect_data("a\r\r\nb", 5, "data: a\ndata: \ndata: b\n");
    expect_data("x\r\ny\rz\nw", 8,
                "data: x\ndata: y\ndata: z\ndata: w\n");
}

static void test_data_keeps_nul(void **state)
{
    struct evbuffer *buf = evbuffer_new();

    (void)state;
    assert_non_null(buf);
    assert_int_equal(sse_append_data(buf, "a\0b\nc", 5), 0);
    expect_buffer(buf, "data: a\0b\ndata: c\n", 18);
    evbuffer_free(buf);
}

static void test_event_line(void **state)
{
    struct evbuffer *buf = evbuffer_new();

    (void)state;
    assert_non_null(buf);
    assert_int_equal(sse_append_event(buf, "factory/a", 9), 0);
    expect_str(buf, "event: factory/a\n");
    assert_int_equal(sse_append_event(buf, "a\r\nb\nc\rd", 8), 0);
    expect_str(buf, "event: a  b c d\n");
    assert_int_equal(sse_append_event(buf, "", 0), 0);
    expect_str(buf, "event: \n");
    evbuffer_free(buf);
}

/* ---- envelope and bodies ---- */

/* A message with id "42", time 2026-11-24T10:00:00.123Z. */
static struct message *make_message(const char *topic, const char *payload,
                                    size_t payload_len)
{
    struct message *msg;

    msg = message_new(0, SOURCE_MQTT, topic, strlen(topic), payload,
                      payload_len, 1795514400123LL);
    assert_non_null(msg);
    memcpy(msg->id, "42", 3);
    msg->id_len = 2;
    msg->seq = 42;
    return msg;
}

/* Asserts the envelope of msg, and that jansson parses it as an object. */
static void expect_envelope(const struct message *msg, const char *source,
                            const char *expected)
{
    struct evbuffer *buf = evbuffer_new();
    json_error_t error;
    json_t *parsed;
    size_t n;

    assert_non_null(buf);
    assert_int_equal(sse_append_json_envelope(buf, msg, source), 0);
    n = evbuffer_get_length(buf);
    parsed = json_loadb((const char *)evbuffer_pullup(buf, -1), n,
                        JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &error);
    if (parsed == NULL)
        fail_msg("envelope is not JSON: %s", error.text);
    assert_true(json_is_object(parsed));
    json_decref(parsed);
    expect_str(buf, expected);
    evbuffer_free(buf);
}

#define ENV_HEAD(topic) \
    "{\"id\":\"42\",\"source\":\"plant\",\"topic\":\"" topic \
    "\",\"time\":\"2026-11-24T10:00:00.123Z\",\"payload\":"

static void test_envelope_json_payload(void **state)
{
    static const char payload[] = "{\r\n  \"t\": 21.5,\n  \"s\": \"a b\"\r}";
    struct message *msg;

    (void)state;
    msg = make_message("factory/a/l1/temperature", payload,
                       sizeof(payload) - 1);
    expect_envelope(msg, "plant",
                    ENV_HEAD("factory/a/l1/temperature")
                    "{    \"t\": 21.5,   \"s\": \"a b\" }}");
    msg->has_mqtt = true;
    msg->retain = true;
    msg->qos = 1;
    expect_envelope(msg, "plant",
                    ENV_HEAD("factory/a/l1/temperature")
                    "{    \"t\": 21.5,   \"s\": \"a b\" },"
                    "\"retain\":true,\"qos\":1}");
    message_unref(msg);

    msg = make_message("n", "123456789012345678901234567890", 30);
    expect_envelope(msg, "plant",
                    ENV_HEAD("n") "123456789012345678901234567890}");
    message_unref(msg);
}

static void test_envelope_text_payload(void **state)
{
    struct message *msg;

    (void)state;
    msg = make_message("t", "hello\nw\"orld\xe2\x80\xa8", 15);
    expect_envelope(msg, "plant",
                    ENV_HEAD("t") "\"hello\\nw\\\"orld\\u2028\"}");
    message_unref(msg);

    /* Empty payload: valid UTF-8, not JSON. */
    msg = make_message("t", "", 0);
    expect_envelope(msg, "plant", ENV_HEAD("t") "\"\"}");
    message_unref(msg);

    /* A NUL byte is never JSON, even at the end: a string. */
    msg = make_message("t", "1\0", 2);
    expect_envelope(msg, "plant", ENV_HEAD("t") "\"1\\u0000\"}");
    message_unref(msg);

    /* Too big for a double: a string, not an error. */
    msg = make_message("t", "1e999", 5);
    expect_envelope(msg, "plant", ENV_HEAD("t") "\"1e999\"}");
    message_unref(msg);
}

static void test_envelope_binary_payload(void **state)
{
    struct message *msg;

    (void)state;
    msg = make_message("bin", "\x00\xff", 2);
    expect_envelope(msg, "plant",
                    ENV_HEAD("bin") "\"AP8=\",\"encoding\":\"base64\"}");
    msg->has_mqtt = true;
    msg->retain = false;
    msg->qos = 2;
    assert_int_equal(message_set_stream_entry_id(msg, "1700000000000-0"), 0);
    expect_envelope(msg, "plant",
                    ENV_HEAD("bin") "\"AP8=\",\"encoding\":\"base64\","
                    "\"retain\":false,\"qos\":2,"
                    "\"stream_id\":\"1700000000000-0\"}");
    message_unref(msg);
}

static void test_envelope_stream_and_escaped_fields(void **state)
{
    struct message *msg;

    (void)state;
    msg = make_message("orders", "{\"n\":1}", 7);
    msg->type = SOURCE_REDIS_STREAM;
    assert_int_equal(message_set_stream_entry_id(msg, "5-1"), 0);
    expect_envelope(msg, "plant",
                    ENV_HEAD("orders") "{\"n\":1},\"stream_id\":\"5-1\"}");
    message_unref(msg);

    /* Topic and source that need escaping or replacement. */
    msg = make_message("a\"b\n\xff", "1", 1);
    expect_envelope(msg, "src\\x",
                    "{\"id\":\"42\",\"source\":\"src\\\\x\",\"topic\":"
                    "\"a\\\"b\\n\xef\xbf\xbd\",\"time\":"
                    "\"2026-11-24T10:00:00.123Z\",\"payload\":1}");
    /* No source name: an empty string. */
    expect_envelope(msg, NULL,
                    "{\"id\":\"42\",\"source\":\"\",\"topic\":"
                    "\"a\\\"b\\n\xef\xbf\xbd\",\"time\":"
                    "\"2026-11-24T10:00:00.123Z\",\"payload\":1}");
    message_unref(msg);
}

static void expect_body(const struct message *msg, enum route_format format,
                        const char *expected)
{
    struct evbuffer *buf = evbuffer_new();

    assert_non_null(buf);
    assert_int_equal(sse_format_body(buf, format, msg, "plant"), 0);
    expect_str(buf, expected);
    evbuffer_free(buf);
}

static void test_format_body(void **state)
{
    struct message *msg;

    (void)state;
    msg = make_message("t", "a\r\nb\n", 5);
    expect_body(msg, ROUTE_FORMAT_RAW, "data: a\ndata: b\ndata: \n\n");
    expect_body(msg, ROUTE_FORMAT_JSON,
                "data: " ENV_HEAD("t") "\"a\\r\\nb\\n\"}\n\n");
    message_unref(msg);

    msg = make_message("t", "", 0);
    expect_body(msg, ROUTE_FORMAT_RAW, "data: \n\n");
    message_unref(msg);

    msg = make_message("t", "\x00\xff\xfe\n", 4);
    expect_body(msg, ROUTE_FORMAT_RAW, "data: AP/+Cg==\n\n");
    expect_body(msg, ROUTE_FORMAT_JSON,
                "data: " ENV_HEAD("t")
                "\"AP/+Cg==\",\"encoding\":\"base64\"}\n\n");
    message_unref(msg);

    msg = make_message("t", "[1,\n2]", 6);
    expect_body(msg, ROUTE_FORMAT_RAW, "data: [1,\ndata: 2]\n\n");
    expect_body(msg, ROUTE_FORMAT_JSON,
                "data: " ENV_HEAD("t") "[1, 2]}\n\n");
    message_unref(msg);
}

/* ---- message.c ---- */

static void test_message_new(void **state)
{
    struct message *msg;

    (void)state;
    msg = message_new(3, SOURCE_REDIS, "chan", 4, "p\0q", 3, 1234);
    assert_non_null(msg);
    assert_int_equal(msg->refcount, 1);
    assert_int_equal(msg->source, 3);
    assert_int_equal(msg->type, SOURCE_REDIS);
    assert_int_equal(msg->time_ms, 1234);
    assert_string_equal(msg->topic, "chan");
    assert_int_equal(msg->topic_len, 4);
    assert_int_equal(msg->payload_len, 3);
    assert_memory_equal(msg->payload, "p\0q", 4); /* NUL after payload */
    assert_false(msg->has_mqtt);
    assert_null(msg->stream_entry_id);
    assert_int_equal(msg->seq, 0);
    assert_int_equal(msg->id_len, 0);
    assert_int_equal(msg->id[0], '\0');
    assert_null(msg->body[ROUTE_FORMAT_JSON]);
    assert_null(msg->body[ROUTE_FORMAT_RAW]);
    /* One allocation: the strings follow the struct. */
    assert_ptr_equal(msg->topic, (char *)(msg + 1));
    assert_ptr_equal(msg->payload, msg->topic + 5);
    assert_int_equal(message_size(msg), sizeof(struct message) + 4 + 3);
    message_unref(msg);

    msg = message_new(0, SOURCE_MQTT, NULL, 0, NULL, 0, 0);
    assert_non_null(msg);
    assert_string_equal(msg->topic, "");
    assert_int_equal(msg->payload[0], '\0');
    assert_int_equal(message_size(msg), sizeof(struct message));
    message_unref(msg);

    /* Sizes that would overflow the allocation are refused. */
    assert_null(message_new(0, SOURCE_MQTT, "t", SIZE_MAX, "p", 1, 0));
    assert_null(message_new(0, SOURCE_MQTT, "t", 1, "p", SIZE_MAX - 8, 0));
}

static void test_message_ref_unref(void **state)
{
    struct message *msg;

    (void)state;
    msg = message_new(0, SOURCE_MQTT, "t", 1, "p", 1, 0);
    assert_non_null(msg);
    assert_ptr_equal(message_ref(msg), msg);
    assert_int_equal(msg->refcount, 2);
    message_unref(msg);
    assert_int_equal(msg->refcount, 1);
    /* Owned extras are freed with the last reference (LeakSanitizer). */
    assert_int_equal(message_set_stream_entry_id(msg, "1-0"), 0);
    message_unref(msg);
    message_unref(NULL);
}

static void test_message_stream_entry_id(void **state)
{
    char id[] = "1700000000000-0";
    struct message *msg;

    (void)state;
    msg = message_new(0, SOURCE_REDIS_STREAM, "s", 1, "p", 1, 0);
    assert_non_null(msg);
    assert_int_equal(message_set_stream_entry_id(msg, id), 0);
    id[0] = '9'; /* the message keeps its own copy */
    assert_string_equal(msg->stream_entry_id, "1700000000000-0");
    assert_int_equal(message_set_stream_entry_id(msg, "2-0"), 0);
    assert_string_equal(msg->stream_entry_id, "2-0");
    assert_int_equal(message_set_stream_entry_id(msg, NULL), 0);
    assert_null(msg->stream_entry_id);
    message_unref(msg);
}

static void test_message_body_cached(void **state)
{
    static const char json[] =
        "data: {\"id\":\"42\",\"source\":\"plant\",\"topic\":\"t\","
        "\"time\":\"2026-11-24T10:00:00.123Z\",\"payload\":\"x\\ny\"}\n\n";
    static const char raw[] = "data: x\ndata: y\n\n";
    struct message *msg;
    const char *first;
    const char *again;
    size_t len = 0;

    (void)state;
    msg = make_message("t", "x\ny", 3);
    first = message_body(msg, ROUTE_FORMAT_JSON, "plant", &len);
    assert_non_null(first);
    assert_int_equal(len, sizeof(json) - 1);
    assert_memory_equal(first, json, len);
    assert_ptr_equal(msg->body[ROUTE_FORMAT_JSON], first);
    assert_int_equal(msg->body_len[ROUTE_FORMAT_JSON], len);

    /* Second call: the cache, even with another source name. */
    len = 0;
    again = message_body(msg, ROUTE_FORMAT_JSON, "other", &len);
    assert_ptr_equal(again, first);
    assert_int_equal(len, sizeof(json) - 1);

    first = message_body(msg, ROUTE_FORMAT_RAW, "plant", &len);
    assert_non_null(first);
    assert_int_equal(len, sizeof(raw) - 1);
    assert_memory_equal(first, raw, len);
    assert_ptr_equal(message_body(msg, ROUTE_FORMAT_RAW, "plant", &len),
                     first);

    assert_null(message_body(msg, (enum route_format)ROUTE_FORMAT_COUNT,
                             "plant", &len));
    /* Size does not depend on the cached bodies. */
    assert_int_equal(message_size(msg), sizeof(struct message) + 1 + 3);
    message_unref(msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_valid_sequences),
        cmocka_unit_test(test_utf8_invalid_sequences),
        cmocka_unit_test(test_json_valid),
        cmocka_unit_test(test_base64_rfc4648),
        cmocka_unit_test(test_base64_large),
        cmocka_unit_test(test_json_string_escapes),
        cmocka_unit_test(test_json_string_invalid_utf8),
        cmocka_unit_test(test_format_time),
        cmocka_unit_test(test_data_lines),
        cmocka_unit_test(test_data_keeps_nul),
        cmocka_unit_test(test_event_line),
        cmocka_unit_test(test_envelope_json_payload),
        cmocka_unit_test(test_envelope_text_payload),
        cmocka_unit_test(test_envelope_binary_payload),
        cmocka_unit_test(test_envelope_stream_and_escaped_fields),
        cmocka_unit_test(test_format_body),
        cmocka_unit_test(test_message_new),
        cmocka_unit_test(test_message_ref_unref),
        cmocka_unit_test(test_message_stream_entry_id),
        cmocka_unit_test(test_message_body_cached),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
