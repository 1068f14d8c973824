/*
 * test_config.c - unit tests for config/ (config.c, config_reader.c,
 * config_scalar.c): a config with every key, defaults, ${VAR} expansion,
 * durations and sizes, the error messages with their exact
 * FILE:LINE:COL positions, refused YAML features (aliases, anchors, extra
 * documents), secrets that must never appear in a message, the embedded
 * default and loading from a file.
 */
/* cmocka needs these first, in this order. */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
/* clang-format on */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "config/config_scalar.h"

/* A valid source and route: four lines, so that text appended to BASE
 * starts at line 5. */
#define BASE                                                                   \
    "sources:\n"                                                               \
    "  - {name: s, type: redis, url: \"redis://127.0.0.1:6379\"}\n"            \
    "routes:\n"                                                                \
    "  - {path: /a, topics: [\"s:a\"]}\n"

static struct config *parse(const char *yaml, char **errors)
{
    return config_parse("t.yaml", yaml, strlen(yaml), errors);
}

/* Parses yaml, which must fail, and checks that `line` (one whole
 * message, "t.yaml:L:C: text") is among the errors. Returns the errors
 * for further checks; the caller frees them. */
static char *expect_error(const char *yaml, const char *line)
{
    char *errors = NULL;
    struct config *cfg = parse(yaml, &errors);
    char want[512];

    assert_null(cfg);
    assert_non_null(errors);
    snprintf(want, sizeof(want), "%s\n", line);
    if (!strstr(errors, want))
        fail_msg("expected error line:\n  %s\ngot:\n%s", line, errors);
    return errors;
}

static void check_error(const char *yaml, const char *line)
{
    free(expect_error(yaml, line));
}

static struct config *expect_ok(const char *yaml)
{
    char *errors = NULL;
    struct config *cfg = parse(yaml, &errors);

    if (!cfg)
        fail_msg("unexpected errors:\n%s", errors ? errors : "(null)");
    assert_null(errors);
    return cfg;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;

    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* ---- a full config ---------------------------------------------------- */

static const char full_yaml[] =
    "listen: 0.0.0.0:9090\n"                                     /* 1 */
    "sources:\n"                                                 /* 2 */
    "  - name: plant\n"                                          /* 3 */
    "    type: mqtt\n"                                           /* 4 */
    "    url: mqtts://user:pass@broker:8883\n"                   /* 5 */
    "    subscribe: [\"factory/#\", \"other/+\"]\n"              /* 6 */
    "    qos: 1\n"                                               /* 7 */
    "    client_id: sluice-plant\n"                              /* 8 */
    "    clean_session: false\n"                                 /* 9 */
    "    protocol: 5\n"                                          /* 10 */
    "    keepalive: 1m\n"                                        /* 11 */
    "    ca_file: /etc/ca.pem\n"                                 /* 12 */
    "    cert_file: /etc/cert.pem\n"                             /* 13 */
    "    key_file: /etc/key.pem\n"                               /* 14 */
    "  - name: cache\n"                                          /* 15 */
    "    type: redis\n"                                          /* 16 */
    "    url: redis://:secret@127.0.0.1:6379/0\n"                /* 17 */
    "    channels: [\"orders\"]\n"                               /* 18 */
    "    patterns: [\"alerts:*\"]\n"                             /* 19 */
    "  - name: audit\n"                                          /* 20 */
    "    type: redis-stream\n"                                   /* 21 */
    "    url: rediss://127.0.0.1:6380\n"                         /* 22 */
    "    streams: [\"audit\"]\n"                                 /* 23 */
    "routes:\n"                                                  /* 24 */
    "  - path: /sites/{site}/temperature\n"                      /* 25 */
    "    topics:\n"                                              /* 26 */
    "      - plant:factory/{site}/+/temperature\n"               /* 27 */
    "    format: raw\n"                                          /* 28 */
    "    event: topic\n"                                         /* 29 */
    "    snapshot: true\n"                                       /* 30 */
    "    public: false\n"                                        /* 31 */
    "    enabled: false\n"                                       /* 32 */
    "  - path: /orders/{region}\n"                               /* 33 */
    "    topics: [\"cache:orders:{region}\", \"audit:audit\"]\n" /* 34 */
    "    event: order.update\n"                                  /* 35 */
    "    public: yes\n"                                          /* 36 */
    "  - path: /n\n"                                             /* 37 */
    "    topics: [cache:n]\n"                                    /* 38 */
    "    event: none\n"                                          /* 39 */
    "history:\n"                                                 /* 40 */
    "  max_events: 5000\n"
    "  max_bytes: 32MiB\n"
    "  max_age: 30m\n"
    "  dir: /var/lib/sluice\n"
    "  fsync: always\n"
    "stream:\n"
    "  heartbeat: 10s\n"
    "  retry: 1500ms\n"
    "  padding: 2KiB\n"
    "  max_pending: 2MiB\n"
    "  max_connections: 50\n"
    "  retry_overload: 20s\n"
    "  compression: on\n"
    "  max_lifetime: 1h\n"
    "auth:\n"
    "  tokens:\n"
    "    - name: wallboard\n"
    "      token: tok-1\n"
    "      allow: [\"/sites/*\"]\n"
    "    - name: ops\n"
    "      token: tok-2\n"
    "  jwt:\n"
    "    algorithm: HS384\n"
    "    secret: jwtsecret\n"
    "    issuer: https://app.example\n"
    "    audience: dashboards\n"
    "    allow: [\"/users/{sub}/*\"]\n"
    "    leeway: 10s\n"
    "  cookie: sluice_token\n"
    "cors:\n"
    "  origins: [\"https://dash.example.com\", \"http://localhost:3000\"]\n"
    "logging: {level: debug, format: json}\n"
    "shutdown_grace: 7s\n"
    "max_payload: 512KiB\n";

static void test_full_config(void **state)
{
    struct config *cfg = expect_ok(full_yaml);
    const struct source_config *s;
    const struct route_config *r;

    (void)state;
    assert_string_equal(cfg->file, "t.yaml");
    assert_string_equal(cfg->listen_host, "0.0.0.0");
    assert_int_equal(cfg->listen_port, 9090);
    assert_int_equal(cfg->listen_pos.line, 1);
    assert_int_equal(cfg->listen_pos.col, 9);

    assert_int_equal(cfg->nsources, 3);
    s = &cfg->sources[0];
    assert_string_equal(s->name, "plant");
    assert_int_equal(s->type, SOURCE_MQTT);
    assert_string_equal(s->url, "mqtts://user:pass@broker:8883");
    assert_int_equal(s->pos.line, 3);
    assert_int_equal(s->pos.col, 5);
    assert_int_equal(s->url_pos.line, 5);
    assert_int_equal(s->url_pos.col, 10);
    assert_int_equal(s->subscribe.count, 2);
    assert_string_equal(s->subscribe.items[1], "other/+");
    assert_int_equal(s->subscribe.pos[1].line, 6);
    assert_int_equal(s->qos, 1);
    assert_string_equal(s->client_id, "sluice-plant");
    assert_false(s->clean_session);
    assert_int_equal(s->protocol, 5);
    assert_int_equal(s->keepalive_ms, 60000);
    assert_string_equal(s->ca_file, "/etc/ca.pem");
    assert_string_equal(s->cert_file, "/etc/cert.pem");
    assert_string_equal(s->key_file, "/etc/key.pem");
    assert_false(s->have_channels);

    s = &cfg->sources[1];
    assert_int_equal(s->type, SOURCE_REDIS);
    assert_true(s->have_channels);
    assert_true(s->have_patterns);
    assert_string_equal(s->channels.items[0], "orders");
    assert_string_equal(s->patterns.items[0], "alerts:*");
    assert_int_equal(s->patterns.pos[0].line, 19);
    assert_int_equal(s->patterns.pos[0].col, 16);

    s = &cfg->sources[2];
    assert_int_equal(s->type, SOURCE_REDIS_STREAM);
    assert_string_equal(config_source_type_name(s->type), "redis-stream");
    assert_int_equal(s->streams.count, 1);
    assert_string_equal(s->streams.items[0], "audit");

    assert_int_equal(cfg->nroutes, 3);
    r = &cfg->routes[0];
    assert_string_equal(r->path, "/sites/{site}/temperature");
    assert_int_equal(r->pos.line, 25);
    assert_int_equal(r->path_pos.line, 25);
    assert_int_equal(r->path_pos.col, 11);
    assert_int_equal(r->topics.count, 1);
    assert_string_equal(r->topics.items[0],
                        "plant:factory/{site}/+/temperature");
    assert_int_equal(r->topics.pos[0].line, 27);
    assert_int_equal(r->topics.pos[0].col, 9);
    assert_int_equal(r->format, ROUTE_FORMAT_RAW);
    assert_int_equal(r->event, ROUTE_EVENT_TOPIC);
    assert_null(r->event_name);
    assert_true(r->snapshot);
    assert_false(r->is_public);
    assert_false(r->enabled);
    r = &cfg->routes[1];
    assert_int_equal(r->topics.count, 2);
    assert_string_equal(r->topics.items[1], "audit:audit");
    assert_int_equal(r->topics.pos[1].col, 39);
    assert_int_equal(r->event, ROUTE_EVENT_FIXED);
    assert_string_equal(r->event_name, "order.update");
    assert_true(r->is_public);
    assert_true(r->enabled);
    assert_int_equal(r->format, ROUTE_FORMAT_JSON);
    assert_int_equal(cfg->routes[2].event, ROUTE_EVENT_NONE);
    assert_string_equal(cfg->routes[2].topics.items[0], "cache:n");

    assert_int_equal(cfg->history.max_events, 5000);
    assert_int_equal(cfg->history.max_bytes, 32 * 1024 * 1024);
    assert_int_equal(cfg->history.max_age_ms, 30 * 60 * 1000);
    assert_string_equal(cfg->history.dir, "/var/lib/sluice");
    assert_int_equal(cfg->history.fsync, FSYNC_ALWAYS);

    assert_int_equal(cfg->stream.heartbeat_ms, 10000);
    assert_int_equal(cfg->stream.retry_ms, 1500);
    assert_int_equal(cfg->stream.padding, 2048);
    assert_int_equal(cfg->stream.max_pending, 2 * 1024 * 1024);
    assert_int_equal(cfg->stream.max_connections, 50);
    assert_int_equal(cfg->stream.retry_overload_ms, 20000);
    assert_true(cfg->stream.compression);
    assert_int_equal(cfg->stream.max_lifetime_ms, 3600000);

    assert_true(cfg->auth.present);
    assert_int_equal(cfg->auth.ntokens, 2);
    assert_string_equal(cfg->auth.tokens[0].name, "wallboard");
    assert_string_equal(cfg->auth.tokens[0].token, "tok-1");
    assert_int_equal(cfg->auth.tokens[0].allow.count, 1);
    assert_string_equal(cfg->auth.tokens[0].allow.items[0], "/sites/*");
    assert_int_equal(cfg->auth.tokens[1].allow.count, 0);
    assert_int_equal(cfg->auth.tokens[1].pos.line, 60);
    assert_true(cfg->auth.jwt.present);
    assert_int_equal(cfg->auth.jwt.algorithm, CONFIG_JWT_HS384);
    assert_string_equal(cfg->auth.jwt.secret, "jwtsecret");
    assert_null(cfg->auth.jwt.public_key_file);
    assert_string_equal(cfg->auth.jwt.issuer, "https://app.example");
    assert_string_equal(cfg->auth.jwt.audience, "dashboards");
    assert_string_equal(cfg->auth.jwt.allow.items[0], "/users/{sub}/*");
    assert_int_equal(cfg->auth.jwt.leeway_ms, 10000);
    assert_string_equal(cfg->auth.cookie, "sluice_token");

    assert_int_equal(cfg->cors_origins.count, 2);
    assert_string_equal(cfg->cors_origins.items[1], "http://localhost:3000");
    assert_int_equal(cfg->log_level, LOG_DEBUG);
    assert_int_equal(cfg->log_format, LOG_FORMAT_JSON);
    assert_int_equal(cfg->shutdown_grace_ms, 7000);
    assert_int_equal(cfg->max_payload, 512 * 1024);
    config_free(cfg);
}

static void test_defaults(void **state)
{
    struct config *cfg = expect_ok(BASE);
    const struct source_config *s = &cfg->sources[0];
    const struct route_config *r = &cfg->routes[0];

    (void)state;
    assert_string_equal(cfg->listen_host, "127.0.0.1");
    assert_int_equal(cfg->listen_port, 8080);
    assert_int_equal(s->qos, 0);
    assert_true(s->clean_session);
    assert_int_equal(s->protocol, 4);
    assert_int_equal(s->keepalive_ms, 30000);
    assert_null(s->client_id);
    assert_false(s->have_channels);
    assert_false(s->have_patterns);
    assert_int_equal(s->channels.count, 0);
    assert_int_equal(r->format, ROUTE_FORMAT_JSON);
    assert_int_equal(r->event, ROUTE_EVENT_NONE);
    assert_false(r->snapshot);
    assert_false(r->is_public);
    assert_true(r->enabled);
    assert_int_equal(cfg->history.max_events, 100000);
    assert_int_equal(cfg->history.max_bytes, 64 * 1024 * 1024);
    assert_int_equal(cfg->history.max_age_ms, 3600000);
    assert_null(cfg->history.dir);
    assert_int_equal(cfg->history.fsync, FSYNC_BATCH);
    assert_int_equal(cfg->stream.heartbeat_ms, 15000);
    assert_int_equal(cfg->stream.retry_ms, 2000);
    assert_int_equal(cfg->stream.padding, 0);
    assert_int_equal(cfg->stream.max_pending, 1024 * 1024);
    assert_int_equal(cfg->stream.max_connections, 10000);
    assert_int_equal(cfg->stream.retry_overload_ms, 10000);
    assert_false(cfg->stream.compression);
    assert_int_equal(cfg->stream.max_lifetime_ms, 0);
    assert_false(cfg->auth.present);
    assert_false(cfg->auth.jwt.present);
    assert_int_equal(cfg->auth.jwt.leeway_ms, 5000);
    assert_null(cfg->auth.cookie);
    assert_int_equal(cfg->cors_origins.count, 0);
    assert_int_equal(cfg->log_level, LOG_INFO);
    assert_int_equal(cfg->log_format, LOG_FORMAT_TEXT);
    assert_int_equal(cfg->shutdown_grace_ms, 5000);
    assert_int_equal(cfg->max_payload, 1024 * 1024);
    config_free(cfg);
}

/* "key:" (null) keeps the default; an empty optional string is unset. */
static void test_null_values(void **state)
{
    struct config *cfg = expect_ok(BASE "history:\n"
                                        "stream:\n"
                                        "  retry: ~\n"
                                        "  heartbeat: null\n"
                                        "auth:\n"
                                        "logging: {level: }\n");

    (void)state;
    assert_int_equal(cfg->history.max_events, 100000);
    assert_int_equal(cfg->stream.retry_ms, 2000);
    assert_int_equal(cfg->stream.heartbeat_ms, 15000);
    assert_false(cfg->auth.present);
    assert_int_equal(cfg->log_level, LOG_INFO);
    config_free(cfg);

    setenv("SLUICE_TEST_EMPTY", "", 1);
    cfg = expect_ok(BASE "history: {dir: \"${SLUICE_TEST_EMPTY}\"}\n");
    assert_null(cfg->history.dir);
    config_free(cfg);
    unsetenv("SLUICE_TEST_EMPTY");

    /* A required key that is null or empty is an error. */
    check_error("sources:\n"
                "  - {name: s, type: redis, url: }\n"
                "routes:\n"
                "  - {path: /a, topics: [\"s:a\"]}\n",
                "t.yaml:2:28: url: must not be empty");
    check_error("sources:\n"
                "  - {name: '', type: redis, url: \"redis://h\"}\n"
                "routes:\n"
                "  - {path: /a, topics: []}\n",
                "t.yaml:2:12: name: must not be empty");
    check_error("sources:\n"
                "  - {name: s, type: redis, url: \"redis://h\"}\n"
                "routes:\n"
                "  - {path: /a, topics: []}\n",
                "t.yaml:4:24: topics: must not be empty");
}

/* ---- ${VAR} expansion ------------------------------------------------- */

static void test_env_expansion(void **state)
{
    struct config *cfg;

    (void)state;
    setenv("SLUICE_TEST_HOST", "10.0.0.7", 1);
    setenv("SLUICE_TEST_PORT", "9001", 1);
    setenv("SLUICE_TEST_QOS", "2", 1);
    setenv("SLUICE_TEST_PASS", "p$ss", 1);
    unsetenv("SLUICE_TEST_UNSET");
    cfg = expect_ok(
        "listen: ${SLUICE_TEST_HOST}:${SLUICE_TEST_PORT}\n"
        "sources:\n"
        "  - name: m\n"
        "    type: mqtt\n"
        "    url: mqtt://u:${SLUICE_TEST_PASS}@${SLUICE_TEST_UNSET:-b}:1883\n"
        "    qos: ${SLUICE_TEST_QOS}\n"
        "    keepalive: ${SLUICE_TEST_UNSET:-45s}\n"
        "    client_id: a$$b$c$\n"
        "    clean_session: ${SLUICE_TEST_UNSET:-false}\n"
        "routes:\n"
        "  - path: /a\n"
        "    topics: [\"m:${SLUICE_TEST_UNSET:-x}/${SLUICE_TEST_QOS}\"]\n"
        "stream: {max_pending: \"${SLUICE_TEST_UNSET:-4}KiB\"}\n");
    assert_string_equal(cfg->listen_host, "10.0.0.7");
    assert_int_equal(cfg->listen_port, 9001);
    /* Expanded values are not expanded again. */
    assert_string_equal(cfg->sources[0].url, "mqtt://u:p$ss@b:1883");
    assert_int_equal(cfg->sources[0].qos, 2);
    assert_int_equal(cfg->sources[0].keepalive_ms, 45000);
    assert_string_equal(cfg->sources[0].client_id, "a$$b$c$");
    assert_false(cfg->sources[0].clean_session);
    assert_string_equal(cfg->routes[0].topics.items[0], "m:x/2");
    assert_int_equal(cfg->stream.max_pending, 4096);
    config_free(cfg);

    /* ":-" also applies to a set but empty variable, as in sh. */
    setenv("SLUICE_TEST_EMPTY", "", 1);
    cfg = expect_ok(BASE "history: {max_age: \"${SLUICE_TEST_EMPTY:-2h}\"}\n");
    assert_int_equal(cfg->history.max_age_ms, 2 * 3600000);
    config_free(cfg);
    unsetenv("SLUICE_TEST_EMPTY");
    unsetenv("SLUICE_TEST_HOST");
    unsetenv("SLUICE_TEST_PORT");
    unsetenv("SLUICE_TEST_QOS");
    unsetenv("SLUICE_TEST_PASS");
}

static void test_env_errors(void **state)
{
    (void)state;
    unsetenv("SLUICE_TEST_UNSET");
    check_error(BASE "auth:\n"
                     "  tokens:\n"
                     "    - name: a\n"
                     "      token: ${SLUICE_TEST_UNSET}\n",
                "t.yaml:8:14: token: environment variable "
                "'SLUICE_TEST_UNSET' is not set (write "
                "${SLUICE_TEST_UNSET:-default} to give a default)");
    check_error(BASE "history: {dir: \"x${SLUICE_TEST_UNSET\"}\n",
                "t.yaml:5:16: dir: unterminated '${' (missing '}')");
    check_error(BASE "history: {dir: \"${1X}\"}\n",
                "t.yaml:5:16: dir: malformed variable reference: expected "
                "${NAME} or ${NAME:-default}");
    check_error(BASE "history: {dir: \"${X-y}\"}\n",
                "t.yaml:5:16: dir: malformed variable reference: expected "
                "${NAME} or ${NAME:-default}");
    check_error(BASE "history: {dir: \"${}\"}\n",
                "t.yaml:5:16: dir: malformed variable reference: expected "
                "${NAME} or ${NAME:-default}");
    /* A NUL byte from a double-quoted escape. */
    check_error(BASE "history: {dir: \"a\\0b\"}\n",
                "t.yaml:5:16: dir: value contains a NUL byte");
}

/* Expands s whole; NULL on error (the reason is checked by the loader
 * tests above). */
static char *expand(const char *s)
{
    char err[256];

    return config_scalar_expand(s, strlen(s), err, sizeof(err));
}

static void check_expand(const char *in, const char *want)
{
    char *out = expand(in);

    assert_non_null(out);
    assert_string_equal(out, want);
    free(out);
}

static void test_expand_direct(void **state)
{
    char name[200];
    char err[128];
    char *out;

    (void)state;
    setenv("SLUICE_TEST_A", "1", 1);
    check_expand("", "");
    check_expand("plain", "plain");
    check_expand("${SLUICE_TEST_A}${SLUICE_TEST_A}$", "11$");
    check_expand("$${SLUICE_TEST_A}", "$${SLUICE_TEST_A}");
    check_expand("a$b $ $", "a$b $ $");
    check_expand("${SLUICE_TEST_NOPE:-}", "");
    check_expand("${SLUICE_TEST_A:-x}", "1");
    /* The default is literal text up to the first '}'. */
    check_expand("${SLUICE_TEST_NOPE:-a:-b{c}d", "a:-b{cd");
    check_expand("${SLUICE_TEST_NOPE:-${SLUICE_TEST_A}}", "${SLUICE_TEST_A}");
    assert_null(expand("${"));
    assert_null(expand("${SLUICE_TEST_NOPE}"));
    assert_null(expand("${SLUICE_TEST_A:}"));
    /* Names are capped at 128 characters. */
    memset(name, 'A', sizeof(name));
    memcpy(name, "${", 2);
    name[sizeof(name) - 2] = '}';
    name[sizeof(name) - 1] = '\0';
    assert_null(config_scalar_expand(name, strlen(name), err, sizeof(err)));
    assert_string_equal(err, "variable name longer than 128 characters");
    /* Only len bytes are read. */
    out = config_scalar_expand("ab${SLUICE_TEST_A}", 2, err, sizeof(err));
    assert_string_equal(out, "ab");
    free(out);
    unsetenv("SLUICE_TEST_A");
}

/* ---- durations, sizes, numbers ---------------------------------------- */

static void test_durations(void **state)
{
    static const struct {
        const char *text;
        enum config_scalar_result rc;
        int64_t ms;
    } cases[] = {
        {"0", CONFIG_SCALAR_OK, 0},
        {"0s", CONFIG_SCALAR_OK, 0},
        {"15s", CONFIG_SCALAR_OK, 15000},
        {"250ms", CONFIG_SCALAR_OK, 250},
        {"2m", CONFIG_SCALAR_OK, 120000},
        {"1h", CONFIG_SCALAR_OK, 3600000},
        {"007s", CONFIG_SCALAR_OK, 7000},
        {"15", CONFIG_SCALAR_SYNTAX, 0},
        {"", CONFIG_SCALAR_SYNTAX, 0},
        {"s", CONFIG_SCALAR_SYNTAX, 0},
        {"1.5s", CONFIG_SCALAR_SYNTAX, 0},
        {"15 s", CONFIG_SCALAR_SYNTAX, 0},
        {"15S", CONFIG_SCALAR_SYNTAX, 0},
        {"1h30m", CONFIG_SCALAR_SYNTAX, 0},
        {"+5s", CONFIG_SCALAR_SYNTAX, 0},
        {" 5s", CONFIG_SCALAR_SYNTAX, 0},
        {"-5s", CONFIG_SCALAR_NEGATIVE, 0},
        {"9223372036854775807ms", CONFIG_SCALAR_OK, INT64_MAX},
        {"9223372036854775808ms", CONFIG_SCALAR_RANGE, 0},
        {"9223372036854776s", CONFIG_SCALAR_RANGE, 0},
        {"99999999999999999999999h", CONFIG_SCALAR_RANGE, 0},
    };
    char buf[32];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t ms = -1;
        enum config_scalar_result rc =
            config_scalar_duration(cases[i].text, &ms);
        if (rc != cases[i].rc)
            fail_msg("duration '%s': rc %d, want %d", cases[i].text, rc,
                     cases[i].rc);
        if (rc == CONFIG_SCALAR_OK)
            assert_int_equal(ms, cases[i].ms);
    }
    config_scalar_format_duration(1000, buf, sizeof(buf));
    assert_string_equal(buf, "1s");
    config_scalar_format_duration(90000, buf, sizeof(buf));
    assert_string_equal(buf, "90s");
    config_scalar_format_duration(7200000, buf, sizeof(buf));
    assert_string_equal(buf, "2h");
    config_scalar_format_duration(1, buf, sizeof(buf));
    assert_string_equal(buf, "1ms");

    /* And as the loader reports them. */
    check_error(BASE "stream: {heartbeat: 15}\n",
                "t.yaml:5:21: heartbeat: expected a duration like 15s or "
                "250ms (a number needs a unit: ms, s, m or h)");
    check_error(BASE "stream: {retry: soon}\n",
                "t.yaml:5:17: retry: expected a duration like 15s or 250ms");
    check_error(BASE "stream: {retry: -1s}\n",
                "t.yaml:5:17: retry: must not be negative");
    check_error(BASE "stream: {retry: 99999999999999999999h}\n",
                "t.yaml:5:17: retry: number too large");
    check_error(BASE "stream: {retry: 0}\n",
                "t.yaml:5:17: retry: must be at least 1ms");
    check_error(BASE "stream: {heartbeat: 999ms}\n",
                "t.yaml:5:21: heartbeat: must be at least 1s");
    check_error(BASE "stream: {heartbeat: [15s]}\n",
                "t.yaml:5:21: heartbeat: expected a duration like 15s or "
                "250ms, found a list");
}

static void test_sizes(void **state)
{
    static const struct {
        const char *text;
        enum config_scalar_result rc;
        uint64_t bytes;
    } cases[] = {
        {"0", CONFIG_SCALAR_OK, 0},
        {"100", CONFIG_SCALAR_OK, 100},
        {"100B", CONFIG_SCALAR_OK, 100},
        {"4KiB", CONFIG_SCALAR_OK, 4096},
        {"64MiB", CONFIG_SCALAR_OK, 64ull << 20},
        {"2GiB", CONFIG_SCALAR_OK, 2ull << 30},
        {"4KB", CONFIG_SCALAR_SYNTAX, 0},
        {"4kib", CONFIG_SCALAR_SYNTAX, 0},
        {"4 KiB", CONFIG_SCALAR_SYNTAX, 0},
        {"KiB", CONFIG_SCALAR_SYNTAX, 0},
        {"", CONFIG_SCALAR_SYNTAX, 0},
        {"1.5MiB", CONFIG_SCALAR_SYNTAX, 0},
        {"-1KiB", CONFIG_SCALAR_NEGATIVE, 0},
        {"8589934592GiB", CONFIG_SCALAR_RANGE, 0},
        {"18446744073709551616", CONFIG_SCALAR_RANGE, 0},
    };
    char buf[32];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t bytes = 1;
        enum config_scalar_result rc =
            config_scalar_size(cases[i].text, &bytes);
        if (rc != cases[i].rc)
            fail_msg("size '%s': rc %d, want %d", cases[i].text, rc,
                     cases[i].rc);
        if (rc == CONFIG_SCALAR_OK)
            assert_int_equal(bytes, cases[i].bytes);
    }
    config_scalar_format_size(1024, buf, sizeof(buf));
    assert_string_equal(buf, "1KiB");
    config_scalar_format_size(1536, buf, sizeof(buf));
    assert_string_equal(buf, "1536B");
    config_scalar_format_size(1 << 20, buf, sizeof(buf));
    assert_string_equal(buf, "1MiB");

    check_error(BASE "history: {max_bytes: 512}\n",
                "t.yaml:5:22: max_bytes: must be at least 1KiB");
    check_error(BASE "history: {max_bytes: 64MB}\n",
                "t.yaml:5:22: max_bytes: expected a size like 64MiB, 512KiB "
                "or 1024");
    check_error(BASE "stream: {padding: 2MiB}\n",
                "t.yaml:5:19: padding: must be from 0B to 1MiB");
    check_error(BASE "max_payload: 0\n",
                "t.yaml:5:14: max_payload: must be at least 1B");
}

static void test_numbers_and_bools(void **state)
{
    static const char *const truths[] = {"true", "yes", "on", "True", "YES"};
    static const char *const lies[] = {"false", "no", "off", "FALSE", "Off"};
    int64_t v;
    bool b;

    (void)state;
    for (size_t i = 0; i < 5; i++) {
        b = false;
        assert_int_equal(config_scalar_bool(truths[i], &b), 0);
        assert_true(b);
        assert_int_equal(config_scalar_bool(lies[i], &b), 0);
        assert_false(b);
    }
    assert_int_equal(config_scalar_bool("1", &b), -1);
    assert_int_equal(config_scalar_bool("", &b), -1);
    assert_int_equal(config_scalar_int("-12", &v), CONFIG_SCALAR_OK);
    assert_int_equal(v, -12);
    assert_int_equal(config_scalar_int("12x", &v), CONFIG_SCALAR_SYNTAX);
    assert_int_equal(config_scalar_int("0x10", &v), CONFIG_SCALAR_SYNTAX);
    assert_int_equal(config_scalar_int(" 1", &v), CONFIG_SCALAR_SYNTAX);
    assert_int_equal(config_scalar_int("-", &v), CONFIG_SCALAR_SYNTAX);
    assert_int_equal(config_scalar_int("99999999999999999999", &v),
                     CONFIG_SCALAR_RANGE);

    check_error(BASE "stream: {compression: maybe}\n",
                "t.yaml:5:23: compression: expected true or false");
    check_error("sources:\n"
                "  - {name: m, type: mqtt, url: \"mqtt://h\", qos: 3}\n"
                "routes: [{path: /a, topics: [m:a]}]\n",
                "t.yaml:2:49: qos: must be from 0 to 2");
    check_error("sources:\n"
                "  - {name: m, type: mqtt, url: \"mqtt://h\", protocol: 3}\n"
                "routes: [{path: /a, topics: [m:a]}]\n",
                "t.yaml:2:54: protocol: must be from 4 to 5");
    check_error("sources:\n"
                "  - {name: m, type: mqtt, url: \"mqtt://h\", qos: one}\n"
                "routes: [{path: /a, topics: [m:a]}]\n",
                "t.yaml:2:49: qos: expected an integer");
    check_error(BASE "history: {max_events: 0}\n",
                "t.yaml:5:23: max_events: must be at least 1");
    check_error(BASE "history: {fsync: sometimes}\n",
                "t.yaml:5:18: fsync: expected one of never, batch, always");
    check_error(BASE "logging: {level: verbose}\n",
                "t.yaml:5:18: level: expected one of debug, info, warn, "
                "error");
}

static void test_listen(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = expect_ok("listen: \"[::1]:8443\"\n" BASE);
    assert_string_equal(cfg->listen_host, "::1");
    assert_int_equal(cfg->listen_port, 8443);
    config_free(cfg);
    cfg = expect_ok("listen: localhost:80\n" BASE);
    assert_string_equal(cfg->listen_host, "localhost");
    assert_int_equal(cfg->listen_port, 80);
    config_free(cfg);

    check_error("listen: \":8080\"\n" BASE,
                "t.yaml:1:9: listen: missing host (write 0.0.0.0:PORT to "
                "listen on all IPv4 addresses)");
    check_error("listen: \"::1:8080\"\n" BASE,
                "t.yaml:1:9: listen: an IPv6 address needs brackets, e.g. "
                "[::1]:8080");
    check_error("listen: 127.0.0.1:0\n" BASE,
                "t.yaml:1:9: listen: port must be a number from 1 to 65535");
    check_error("listen: 127.0.0.1:65536\n" BASE,
                "t.yaml:1:9: listen: port must be a number from 1 to 65535");
    check_error("listen: 127.0.0.1\n" BASE,
                "t.yaml:1:9: listen: expected host:port, e.g. "
                "127.0.0.1:8080");
    check_error("listen: \"[::1]8080\"\n" BASE,
                "t.yaml:1:9: listen: expected [IPv6]:port, e.g. [::1]:8080");
    check_error("listen: \"[]:8080\"\n" BASE,
                "t.yaml:1:9: listen: missing host (write 0.0.0.0:PORT to "
                "listen on all IPv4 addresses)");
    check_error("listen: \"a b:1\"\n" BASE, "t.yaml:1:9: listen: invalid host");
}

/* ---- keys and node kinds ---------------------------------------------- */

static void test_unknown_key(void **state)
{
    char *errors;

    (void)state;
    errors = expect_error(BASE "stream:\n"
                               "  retyr: 2s\n",
                          "t.yaml:6:3: unknown key 'retyr' in stream (did "
                          "you mean 'retry'?)");
    /* The only error, and nothing but the line. */
    assert_string_equal(errors, "t.yaml:6:3: unknown key 'retyr' in stream "
                                "(did you mean 'retry'?)\n");
    free(errors);
    check_error(BASE "histroy: {}\n", "t.yaml:5:1: unknown key 'histroy' at "
                                      "the top level (did you mean "
                                      "'history'?)");
    /* Distance 3: no hint. */
    check_error(BASE "stream: {speed: 1s}\n",
                "t.yaml:5:10: unknown key 'speed' in stream");
    /* Keys are case-sensitive and not expanded. */
    check_error(BASE "Listen: a:1\n", "t.yaml:5:1: unknown key 'Listen' at "
                                      "the top level (did you mean "
                                      "'listen'?)");
    check_error(BASE "\"${HOME}\": 1\n",
                "t.yaml:5:1: unknown key '${HOME}' at the top level");
    /* An unprintable key is shown safely, on one line. */
    check_error(BASE "\"a\\nb\": 1\n",
                "t.yaml:5:1: unknown key 'a?b' at the top level");
    check_error(BASE "[a]: 1\n",
                "t.yaml:5:1: a key must be a name, not a list");
}

static void test_duplicate_key(void **state)
{
    (void)state;
    check_error(BASE "stream:\n"
                     "  retry: 1s\n"
                     "  retry: 2s\n",
                "t.yaml:7:3: duplicate key 'retry' in stream (first at line "
                "6)");
    check_error(BASE "routes: []\n", "t.yaml:5:1: duplicate key 'routes' at "
                                     "the top level (first at line 3)");
}

static void test_wrong_kinds(void **state)
{
    (void)state;
    check_error(BASE "stream: [1, 2]\n",
                "t.yaml:5:9: stream: expected a mapping, found a list");
    check_error("sources: {name: s}\nroutes: [{path: /a, topics: [s:a]}]\n",
                "t.yaml:1:10: sources: expected a list, found a mapping");
    check_error("sources: [plain]\nroutes: [{path: /a, topics: [s:a]}]\n",
                "t.yaml:1:11: sources item: expected a mapping, found a "
                "single value");
    check_error(BASE "history: {dir: {a: b}}\n",
                "t.yaml:5:16: dir: expected a string, found a mapping");
    check_error(BASE "cors: {origins: \"*\"}\n",
                "t.yaml:5:17: origins: expected a list, found a single "
                "value");
    check_error(BASE "cors: {origins: [[a]]}\n",
                "t.yaml:5:18: origins: expected a string, found a list");
    check_error(BASE "cors: {origins: [\"\"]}\n",
                "t.yaml:5:18: origins: empty string in list");
    check_error("- a\n- b\n",
                "t.yaml:1:1: top level: expected a mapping, found a list");
}

/* ---- sources ------------------------------------------------------------ */

static void test_history_redis(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = expect_ok(BASE "history:\n"
                         "  redis: redis://r:6379/2\n"
                         "  key: shop:eu\n");
    assert_string_equal(cfg->history.redis, "redis://r:6379/2");
    assert_string_equal(cfg->history.key, "shop:eu");
    assert_int_equal(cfg->history.redis_pos.line, 6);
    assert_int_equal(cfg->history.redis_pos.col, 10);
    assert_null(cfg->history.dir);
    config_free(cfg);
    check_error(BASE "history:\n"
                     "  redis: redis://r\n"
                     "  dir: /var/lib/sluice\n",
                "t.yaml:7:3: history.dir and history.redis exclude each "
                "other: a shared history lives in Redis");
    check_error(BASE "history:\n"
                     "  key: shop\n",
                "t.yaml:6:3: history.key needs history.redis");
    check_error(BASE "history:\n"
                     "  redis: redis://r\n"
                     "  key: \"shop eu\"\n",
                "t.yaml:7:8: history.key: 1-64 characters of "
                "[A-Za-z0-9:_.-]");
    cfg = expect_ok("sources:\n"
                    "  - {name: s, type: redis, url: "
                    "\"redis+sentinel://h1:26379,h2/m/0\"}\n"
                    "routes:\n"
                    "  - {path: /a, topics: [\"s:a\"]}\n");
    config_free(cfg);
}

static void test_source_checks(void **state)
{
    (void)state;
    check_error("sources:\n"
                "  - {name: Plant, type: mqtt, url: \"mqtt://h\"}\n"
                "routes: [{path: /a, topics: [m:a]}]\n",
                "t.yaml:2:12: name: a source name must match [a-z0-9_-]+");
    check_error("sources:\n"
                "  - {name: a, type: mqtt, url: \"mqtt://h\"}\n"
                "  - {name: b, type: redis, url: \"redis://h\"}\n"
                "  - {name: a, type: redis, url: \"redis://h\"}\n"
                "routes: [{path: /a, topics: [a:a]}]\n",
                "t.yaml:4:12: duplicate source name 'a' (first at line 2)");
    check_error("sources:\n"
                "  - {name: a, type: kafka, url: \"kafka://h\"}\n"
                "routes: [{path: /a, topics: [a:a]}]\n",
                "t.yaml:2:21: type: expected one of mqtt, redis, "
                "redis-stream");
    check_error("sources:\n"
                "  - {name: a, url: \"redis://h\"}\n"
                "routes: [{path: /a, topics: [a:a]}]\n",
                "t.yaml:2:5: missing key 'type' in source");
    check_error("sources:\n"
                "  - {name: a, type: mqtt, url: \"redis://h\"}\n"
                "routes: [{path: /a, topics: [a:a]}]\n",
                "t.yaml:2:32: url: scheme 'redis' does not fit a mqtt source "
                "(use mqtt:// or mqtts://)");
    check_error("sources:\n"
                "  - {name: a, type: redis-stream, url: \"mqtt://h\"}\n"
                "routes: [{path: /a, topics: [a:a]}]\n",
                "t.yaml:2:40: url: scheme 'mqtt' does not fit a "
                "redis-stream source (use redis:// or rediss://)");
    check_error("sources:\n"
                "  - {name: a, type: redis, url: \"127.0.0.1:6379\"}\n"
                "routes: [{path: /a, topics: [a:a]}]\n",
                "t.yaml:2:33: url: expected redis://HOST:PORT or "
                "rediss://HOST:PORT");
    check_error("sources:\n"
                "  - {name: a, type: redis, url: \"redis://\"}\n"
                "routes: [{path: /a, topics: [a:a]}]\n",
                "t.yaml:2:33: url: missing host");
    check_error("sources:\n"
                "  - name: a\n"
                "    type: mqtt\n"
                "    url: mqtt://h\n"
                "    channels: [x]\n"
                "    streams: [y]\n"
                "routes: [{path: /a, topics: [a:a]}]\n",
                "t.yaml:5:5: key 'channels' does not apply to a mqtt source");
    check_error("sources:\n"
                "  - name: a\n"
                "    type: redis\n"
                "    url: redis://h\n"
                "    qos: 1\n"
                "routes: [{path: /a, topics: [a:a]}]\n",
                "t.yaml:5:5: key 'qos' does not apply to a redis source");
    check_error("sources:\n"
                "  - name: a\n"
                "    type: mqtt\n"
                "    url: mqtt://h\n"
                "    ca_file: /ca.pem\n"
                "routes: [{path: /a, topics: [a:a]}]\n",
                "t.yaml:5:5: ca_file: needs an mqtts:// url");
    check_error("sources:\n"
                "  - name: a\n"
                "    type: mqtt\n"
                "    url: mqtts://h\n"
                "    cert_file: /c.pem\n"
                "routes: [{path: /a, topics: [a:a]}]\n",
                "t.yaml:5:5: cert_file: cert_file and key_file go together");
    check_error("sources:\n"
                "  - {name: a, type: mqtt, url: \"mqtt://h\", keepalive: 2s}\n"
                "routes: [{path: /a, topics: [a:a]}]\n",
                "t.yaml:2:55: keepalive: must be from 5s to 65535s");
}

static void test_have_channels(void **state)
{
    struct config *cfg = expect_ok("sources:\n"
                                   "  - name: r\n"
                                   "    type: redis\n"
                                   "    url: redis://h\n"
                                   "    channels: []\n"
                                   "routes: [{path: /a, topics: [r:a]}]\n");

    (void)state;
    assert_true(cfg->sources[0].have_channels);
    assert_int_equal(cfg->sources[0].channels.count, 0);
    assert_false(cfg->sources[0].have_patterns);
    config_free(cfg);
}

/* ---- routes ------------------------------------------------------------- */

static void test_route_checks(void **state)
{
    struct config *cfg;

    (void)state;
    cfg =
        expect_ok(BASE "  - {path: /b, topics: [s:b], event: \"a:b-c_d.e\"}\n");
    assert_int_equal(cfg->nroutes, 2);
    assert_int_equal(cfg->routes[1].event, ROUTE_EVENT_FIXED);
    assert_string_equal(cfg->routes[1].event_name, "a:b-c_d.e");
    config_free(cfg);

    check_error(BASE "  - {path: b, topics: [s:b]}\n",
                "t.yaml:5:12: path: must start with '/'");
    check_error(BASE "  - {topics: [s:b]}\n",
                "t.yaml:5:5: missing key 'path' in route");
    check_error(BASE "  - {path: /b}\n",
                "t.yaml:5:5: missing key 'topics' in route");
    check_error(BASE "  - {path: /b, topics: [s:b], event: \"a b\"}\n",
                "t.yaml:5:38: event: expected none, topic or an event name "
                "of [A-Za-z0-9_.:-]");
    check_error(BASE "  - {path: /b, topics: [s:b], format: xml}\n",
                "t.yaml:5:39: format: expected one of json, raw");
    check_error(BASE "  - {path: /b, topics: [s:b], public: 1}\n",
                "t.yaml:5:39: public: expected true or false");
}

static void test_no_sources_no_routes(void **state)
{
    char *errors;

    (void)state;
    errors = expect_error("listen: a:1\n",
                          "t.yaml:1:1: no sources: at least one is required");
    assert_non_null(strstr(errors, "t.yaml:1:1: no routes: at least one is "
                                   "required\n"));
    free(errors);
    check_error("sources: [{name: s, type: redis, url: \"redis://h\"}]\n"
                "routes: []\n",
                "t.yaml:2:9: no routes: at least one is required");
    check_error("", "t.yaml:1:1: no sources: at least one is required");
    check_error("# only a comment\n",
                "t.yaml:1:1: no routes: at least one is required");
}

/* ---- auth and cors ---------------------------------------------------- */

static void test_auth_checks(void **state)
{
    struct config *cfg;

    (void)state;
    cfg =
        expect_ok(BASE "auth:\n"
                       "  jwt: {algorithm: RS256, public_key_file: /k.pem}\n");
    assert_int_equal(cfg->auth.jwt.algorithm, CONFIG_JWT_RS256);
    assert_string_equal(cfg->auth.jwt.public_key_file, "/k.pem");
    assert_int_equal(cfg->auth.jwt.pos.line, 6);
    assert_int_equal(cfg->auth.ntokens, 0);
    config_free(cfg);

    check_error(BASE "auth:\n"
                     "  jwt: {algorithm: HS512}\n",
                "t.yaml:6:8: auth.jwt: HS512 needs a non-empty secret");
    check_error(BASE "auth:\n"
                     "  jwt: {secret: \"\"}\n",
                "t.yaml:6:9: auth.jwt: HS256 needs a non-empty secret");
    check_error(BASE "auth:\n"
                     "  jwt: {algorithm: ES256}\n",
                "t.yaml:6:8: auth.jwt: ES256 needs a non-empty "
                "public_key_file");
    check_error(BASE "auth:\n"
                     "  jwt: {algorithm: none, secret: x}\n",
                "t.yaml:6:20: algorithm: expected one of HS256, HS384, "
                "HS512, RS256, ES256");
    check_error(BASE "auth: {cookie: sid}\n",
                "t.yaml:5:7: auth: needs tokens or jwt (else no private "
                "route could be opened)");
    check_error(BASE "auth:\n"
                     "  tokens:\n"
                     "    - {name: a, token: x1}\n"
                     "    - {name: a, token: x2}\n",
                "t.yaml:8:14: duplicate token name 'a' (first at line 7)");
    check_error(BASE "auth:\n"
                     "  tokens:\n"
                     "    - {token: x1}\n",
                "t.yaml:7:7: missing key 'name' in auth.tokens");
    check_error(BASE "auth:\n"
                     "  tokens:\n"
                     "    - {name: a}\n",
                "t.yaml:7:7: missing key 'token' in auth.tokens");
    check_error(BASE "auth:\n"
                     "  tokens: [{name: a, token: b}]\n"
                     "  cookie: \"a;b\"\n",
                "t.yaml:7:11: cookie: not a valid cookie name");
}

static void test_cors(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = expect_ok(BASE "cors: {origins: [\"*\"]}\n");
    assert_int_equal(cfg->cors_origins.count, 1);
    assert_int_equal(cfg->cors_origins.pos[0].line, 5);
    assert_int_equal(cfg->cors_origins.pos[0].col, 18);
    config_free(cfg);

    check_error(BASE "auth:\n"
                     "  tokens: [{name: a, token: b}]\n"
                     "  cookie: sid\n"
                     "cors:\n"
                     "  origins: [\"https://a.example\", \"*\"]\n",
                "t.yaml:9:34: origins: '*' cannot be used with auth.cookie "
                "(never '*' with cookies; list the origins)");
    check_error(BASE "cors: {origins: [\"https://a.example/\"]}\n",
                "t.yaml:5:18: origins: expected \"*\" or scheme://host[:port] "
                "without a path, e.g. https://app.example");
    check_error(BASE "cors: {origins: [\"a.example\"]}\n",
                "t.yaml:5:18: origins: expected \"*\" or scheme://host[:port] "
                "without a path, e.g. https://app.example");
    /* Bytes no browser's Origin holds (found by fuzz_cors: blank lines in
     * a quoted scalar fold to "\n"). */
    check_error(BASE "cors: {origins: ['https://a.ex\n\n  mple']}\n",
                "t.yaml:5:18: origins: expected \"*\" or scheme://host[:port] "
                "without a path, e.g. https://app.example");
    check_error(BASE "cors: {origins: [\"https://a.ex\\x01mple\"]}\n",
                "t.yaml:5:18: origins: expected \"*\" or scheme://host[:port] "
                "without a path, e.g. https://app.example");
    check_error(BASE "cors: {origins: [\"https://b\\u00fccher.example\"]}\n",
                "t.yaml:5:18: origins: expected \"*\" or scheme://host[:port] "
                "without a path, e.g. https://app.example");
}

static void test_tls_http2(void **state)
{
    struct config *cfg;

    (void)state;
    cfg = expect_ok(BASE);
    assert_false(cfg->tls.present);
    assert_false(cfg->http2.enabled);
    assert_false(cfg->http2.cleartext);
    assert_int_equal(cfg->http2.max_concurrent_streams, 100);
    config_free(cfg);

    cfg = expect_ok(BASE "tls:\n"
                         "  cert_file: /c.pem\n"
                         "  key_file: /k.pem\n"
                         "  min_version: 1.3\n"
                         "http2: {enabled: true, cleartext: true, "
                         "max_concurrent_streams: 8}\n");
    assert_true(cfg->tls.present);
    assert_string_equal(cfg->tls.cert_file, "/c.pem");
    assert_string_equal(cfg->tls.key_file, "/k.pem");
    assert_int_equal(cfg->tls.min_version, TLS_MIN_1_3);
    assert_int_equal(cfg->tls.cert_pos.line, 6);
    assert_int_equal(cfg->tls.cert_pos.col, 14);
    assert_int_equal(cfg->tls.key_pos.line, 7);
    assert_int_equal(cfg->tls.key_pos.col, 13);
    assert_true(cfg->http2.enabled);
    assert_true(cfg->http2.cleartext);
    assert_int_equal(cfg->http2.max_concurrent_streams, 8);
    assert_int_equal(cfg->http2.enabled_pos.line, 9);
    config_free(cfg);

    cfg = expect_ok(BASE "tls: {cert_file: /c, key_file: /k}\n");
    assert_int_equal(cfg->tls.min_version, TLS_MIN_1_2);
    config_free(cfg);

    check_error(BASE "tls: {cert_file: /c}\n",
                "t.yaml:5:6: missing key 'key_file' in tls");
    check_error(BASE "tls: {cert_file: /c, key_file: /k, min_version: \"1.1\"}\n",
                "t.yaml:5:49: min_version: expected one of 1.2, 1.3");
    check_error(BASE "http2: {max_concurrent_streams: 0}\n",
                "t.yaml:5:33: max_concurrent_streams: must be from 1 to 10000");
    check_error(BASE "http2: {cleartext: true}\n",
                "t.yaml:5:20: cleartext: needs http2.enabled: true");
    check_error(BASE "http2: {enable: true}\n",
                "t.yaml:5:9: unknown key 'enable' in http2 (did you mean "
                "'enabled'?)");
}

/* ---- refused YAML ------------------------------------------------------- */

static void test_alias_refused(void **state)
{
    char *errors;

    (void)state;
    errors = expect_error(BASE "history: &h {max_events: 10}\n"
                               "stream: *h\n",
                          "t.yaml:5:10: YAML anchors (&name) are not "
                          "supported");
    assert_non_null(strstr(errors, "t.yaml:6:9: YAML aliases (*name) are not "
                                   "supported\n"));
    free(errors);
    /* The classic alias bomb is refused before anything is expanded. */
    errors = expect_error("a: &a [x, x, x, x, x, x, x, x, x]\n"
                          "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                          "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                          "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                          "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                          "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
                          "t.yaml:1:4: YAML anchors (&name) are not "
                          "supported");
    /* Errors are capped: 50 shown and one closing line. */
    assert_int_equal(count_lines(errors), 51);
    assert_non_null(strstr(errors, "too many errors; the rest are not "
                                   "shown\n"));
    free(errors);
    check_error(BASE "---\nlisten: a:1\n",
                "t.yaml:5:1: only one YAML document is allowed");
}

static void test_syntax_error(void **state)
{
    char *errors;

    (void)state;
    errors = expect_error("sources:\n"
                          "  - name: a\n"
                          "   type: mqtt\n",
                          "t.yaml:3:4: syntax error: did not find expected "
                          "'-' indicator (while parsing a block collection "
                          "at line 2)");
    assert_int_equal(count_lines(errors), 1);
    free(errors);
    check_error("a: [1, 2\n",
                "t.yaml:2:1: syntax error: did not find expected ',' or ']' "
                "(while parsing a flow sequence at line 1)");
    check_error("a: b: c\n", "t.yaml:1:5: syntax error: mapping values are "
                             "not allowed in this context");
    /* Not UTF-8: a reader error, positioned from its byte offset. */
    check_error("listen: a:1\nx: \xff\n",
                "t.yaml:2:4: invalid input: invalid leading UTF-8 octet");
}

/* ---- secrets ------------------------------------------------------------ */

static void test_secrets_not_echoed(void **state)
{
    static const char *const secrets[] = {"hunter2", "s3cr3t-jwt",
                                          "tok-dup-9f8e", "p4ssw0rd"};
    char *errors;

    (void)state;
    errors = expect_error(
        "sources:\n"
        "  - {name: a, type: redis, url: \"mqtt://u:hunter2@h:1\"}\n"
        "  - {name: b, type: mqtt, url: \"hunter2@h:1\"}\n"
        "  - {name: c, type: mqtt, url: \"mqtt://u:p4ssw0rd@h\", qos: "
        "p4ssw0rd}\n"
        "routes: [{path: /a, topics: [a:a]}]\n"
        "auth:\n"
        "  tokens:\n"
        "    - {name: t1, token: tok-dup-9f8e}\n"
        "    - {name: t2, token: tok-dup-9f8e}\n"
        "    - {name: t3, token: \"${s3cr3t-jwt}\"}\n"
        "  jwt: {algorithm: RS256, secret: s3cr3t-jwt}\n",
        "t.yaml:2:33: url: scheme 'mqtt' does not fit a redis source (use "
        "redis:// or rediss://)");
    /* Every problem above was found in one pass... */
    assert_non_null(strstr(errors, "t.yaml:3:32: url: expected "));
    assert_non_null(strstr(errors, "t.yaml:4:60: qos: expected an integer"));
    assert_non_null(strstr(errors, "t.yaml:9:25: token: same value as the "
                                   "token at line 8"));
    assert_non_null(strstr(errors, "t.yaml:10:25: token: malformed "));
    assert_non_null(strstr(errors, "t.yaml:11:27: secret: does not apply to "
                                   "RS256 (it uses public_key_file)"));
    /* ...and no message shows a secret. */
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
        if (strstr(errors, secrets[i]))
            fail_msg("secret '%s' echoed in:\n%s", secrets[i], errors);
    free(errors);
}

/* ---- embedded default, files ------------------------------------------ */

static void test_embedded_default(void **state)
{
    char *errors = (char *)"not touched";
    struct config *cfg = config_load_default(&errors);

    (void)state;
    assert_non_null(cfg);
    assert_null(errors);
    assert_non_null(strstr(config_default_yaml(), "listen:"));
    assert_string_equal(cfg->file, "<embedded>");
    assert_string_equal(cfg->listen_host, "127.0.0.1");
    assert_int_equal(cfg->listen_port, 8080);
    assert_int_equal(cfg->nsources, 2);
    assert_string_equal(cfg->sources[0].name, "redis");
    assert_int_equal(cfg->sources[0].type, SOURCE_REDIS);
    assert_string_equal(cfg->sources[0].url, "redis://127.0.0.1:6379");
    assert_string_equal(cfg->sources[1].name, "mqtt");
    assert_int_equal(cfg->sources[1].type, SOURCE_MQTT);
    assert_string_equal(cfg->sources[1].url, "mqtt://127.0.0.1:1883");
    assert_int_equal(cfg->nroutes, 2);
    assert_string_equal(cfg->routes[0].path, "/redis/{channel}");
    assert_string_equal(cfg->routes[0].topics.items[0], "redis:{channel}");
    assert_true(cfg->routes[0].is_public);
    assert_string_equal(cfg->routes[1].path, "/mqtt/{topic*}");
    assert_string_equal(cfg->routes[1].topics.items[0], "mqtt:{topic}");
    assert_true(cfg->routes[1].is_public);
    assert_false(cfg->auth.present);
    assert_null(cfg->history.dir);
    config_free(cfg);
    assert_string_equal(config_source_type_name(SOURCE_MQTT), "mqtt");
    assert_string_equal(config_source_type_name(SOURCE_REDIS), "redis");
}

static void test_load_file(void **state)
{
    char path[] = "/tmp/sluice-test-config-XXXXXX";
    char *errors = NULL;
    char want[128];
    struct config *cfg;
    int fd = mkstemp(path);
    FILE *f;

    (void)state;
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(BASE "stream: {retry: 3s}\n", f);
    fclose(f);
    cfg = config_load_file(path, &errors);
    assert_non_null(cfg);
    assert_null(errors);
    assert_string_equal(cfg->file, path);
    assert_int_equal(cfg->stream.retry_ms, 3000);
    config_free(cfg);

    f = fopen(path, "w");
    assert_non_null(f);
    fputs(BASE "stream: {retry: x}\n", f);
    fclose(f);
    assert_null(config_load_file(path, &errors));
    snprintf(want, sizeof(want),
             "%s:5:17: retry: expected a duration like 15s or 250ms\n", path);
    assert_string_equal(errors, want);
    free(errors);
    unlink(path);

    assert_null(config_load_file(path, &errors));
    snprintf(want, sizeof(want),
             "%s:0:0: cannot read: No such file or directory\n", path);
    assert_string_equal(errors, want);
    free(errors);
    assert_null(config_load_file("/", &errors));
    assert_string_equal(errors, "/:0:0: cannot read: Is a directory\n");
    free(errors);
}

/* ---- hints ------------------------------------------------------------ */

static void test_distance(void **state)
{
    (void)state;
    assert_int_equal(config_scalar_distance("retry", "retry"), 0);
    assert_int_equal(config_scalar_distance("retyr", "retry"), 2);
    assert_int_equal(config_scalar_distance("rety", "retry"), 1);
    assert_int_equal(config_scalar_distance("", "abc"), 3);
    assert_int_equal(config_scalar_distance("kitten", "sitting"), 3);
    assert_int_equal(
        config_scalar_distance("a very long key name that goes on and on and "
                               "on beyond sixty-four bytes",
                               "retry"),
        SIZE_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_null_values),
        cmocka_unit_test(test_env_expansion),
        cmocka_unit_test(test_env_errors),
        cmocka_unit_test(test_expand_direct),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_numbers_and_bools),
        cmocka_unit_test(test_listen),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_wrong_kinds),
        cmocka_unit_test(test_source_checks),
        cmocka_unit_test(test_history_redis),
        cmocka_unit_test(test_have_channels),
        cmocka_unit_test(test_route_checks),
        cmocka_unit_test(test_no_sources_no_routes),
        cmocka_unit_test(test_auth_checks),
        cmocka_unit_test(test_cors),
        cmocka_unit_test(test_tls_http2),
        cmocka_unit_test(test_alias_refused),
        cmocka_unit_test(test_syntax_error),
        cmocka_unit_test(test_secrets_not_echoed),
        cmocka_unit_test(test_embedded_default),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_distance),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
