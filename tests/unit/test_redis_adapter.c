/*
 * test_redis_adapter.c - tests for adapters/adapter.c (state, backoff,
 * type table) and adapters/redis.c (the Redis pub/sub adapter).
 *
 * The redis tests run the adapter in a testlib harness (its own
 * event_base, a sink that records every delivery and state change)
 * against a real redis-server started on a free loopback port, and
 * publish through a blocking hiredis connection. Servers are killed in
 * each test's teardown (which cmocka runs also after a failed assertion)
 * and, should this process die, by the kernel (testlib.h).
 *
 * Timing knobs: SLUICE_REDIS_HANDSHAKE_MS and SLUICE_REDIS_KEEPALIVE_MS are
 * set by the tests that need short timeouts, unset by every setup.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "adapters/adapter.h"
#include "lib/message.h"
#include "tests/unit/testlib.h"

struct fixture {
    struct testlib_harness h;    /* the source "cache", index 3 */
    struct testlib_server redis; /* pid 0: none */
    int port;      /* of the redis-server or the silent listener */
    int listen_fd; /* the silent listener, or -1 */
};

/* ---- the server ---------------------------------------------------------- */

/* A blocking connection for publishing and inspecting the server. */
static redisContext *redis_client(struct fixture *fx, const char *password)
{
    redisContext *c = redisConnect("127.0.0.1", fx->port);
    redisReply *rep;

    assert_non_null(c);
    assert_int_equal(c->err, 0);
    if (password) {
        rep = redisCommand(c, "AUTH %s", password);
        assert_non_null(rep);
        assert_int_equal(rep->type, REDIS_REPLY_STATUS);
        freeReplyObject(rep);
    }
    return c;
}

/* PUBLISH; returns the receiver count Redis reports. */
static long long publish(redisContext *c, const char *channel,
                         const void *payload, size_t len)
{
    redisReply *rep = redisCommand(c, "PUBLISH %s %b", channel, payload, len);
    long long n;

    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
    n = rep->integer;
    freeReplyObject(rep);
    return n;
}

/* ---- the source under test ----------------------------------------------- */

static void subs_set(struct subscriptions *subs, const char *const *exact,
                     size_t nexact, const char *const *patterns,
                     size_t npatterns)
{
    subscriptions_free(subs);
    testlib_strv_set(&subs->exact, exact, nexact);
    testlib_strv_set(&subs->patterns, patterns, npatterns);
}

static void url_set(struct fixture *fx, const char *userinfo,
                    const char *path)
{
    snprintf(fx->h.url, sizeof(fx->h.url), "redis://%s%s127.0.0.1:%d%s",
             userinfo ? userinfo : "", userinfo ? "@" : "", fx->port,
             path ? path : "");
}

static int fixture_setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));

    assert_non_null(fx);
    unsetenv("SLUICE_REDIS_HANDSHAKE_MS");
    unsetenv("SLUICE_REDIS_KEEPALIVE_MS");
    testlib_harness_init(&fx->h, &redis_adapter_ops, "cache", SOURCE_REDIS,
                         3);
    fx->listen_fd = -1;
    fx->port = testlib_free_port();
    *state = fx;
    return 0;
}

static int fixture_teardown(void **state)
{
    struct fixture *fx = *state;

    testlib_harness_free(&fx->h);
    testlib_server_kill(&fx->redis);
    if (fx->listen_fd >= 0)
        close(fx->listen_fd);
    free(fx);
    return 0;
}

static void assert_msg(const struct fixture *fx, size_t i, const char *topic,
                       const void *payload, size_t len)
{
    const struct message *msg;

    assert_true(i < fx->h.nmsgs);
    msg = fx->h.msgs[i];
    assert_string_equal(msg->topic, topic);
    assert_int_equal(msg->topic_len, strlen(topic));
    assert_int_equal(msg->payload_len, len);
    assert_memory_equal(msg->payload, payload, len);
}

/* ---- adapter.c ----------------------------------------------------------- */

static void test_adapter_for_type(void **state)
{
    assert_ptr_equal(adapter_for_type(SOURCE_REDIS), &redis_adapter_ops);
    assert_ptr_equal(adapter_for_type(SOURCE_MQTT), &mqtt_adapter_ops);
    assert_ptr_equal(adapter_for_type(SOURCE_REDIS_STREAM),
                     &redis_stream_adapter_ops);
    assert_string_equal(redis_adapter_ops.type, "redis");
    assert_string_equal(redis_stream_adapter_ops.type, "redis-stream");
    assert_null(adapter_for_type((enum source_type)99));
}

static void test_source_set_state(void **state)
{
    struct fixture *fx = *state;
    char longtext[400];

    source_set_state(&fx->h.src, SOURCE_DOWN, "refused");
    assert_int_equal(fx->h.nstates, 1);
    assert_string_equal(fx->h.src.status, "refused");
    source_set_state(&fx->h.src, SOURCE_DOWN, "refused"); /* no change */
    assert_int_equal(fx->h.nstates, 1);
    source_set_state(&fx->h.src, SOURCE_DOWN, "lost"); /* text changed */
    assert_int_equal(fx->h.nstates, 2);
    source_set_state(&fx->h.src, SOURCE_UP, NULL);
    assert_int_equal(fx->h.nstates, 3);
    assert_int_equal(fx->h.states[2], SOURCE_UP);
    assert_string_equal(fx->h.src.status, "");
    source_set_state(&fx->h.src, SOURCE_UP, "");
    assert_int_equal(fx->h.nstates, 3);

    memset(longtext, 'x', sizeof(longtext) - 1);
    longtext[sizeof(longtext) - 1] = '\0';
    source_set_state(&fx->h.src, SOURCE_DOWN, longtext);
    assert_int_equal(strlen(fx->h.src.status), sizeof(fx->h.src.status) - 1);
    source_set_state(&fx->h.src, SOURCE_DOWN, longtext); /* same once cut */
    assert_int_equal(fx->h.nstates, 4);

    fx->h.src.sink.state_changed = NULL; /* optional callback */
    source_set_state(&fx->h.src, SOURCE_CONNECTING, NULL);
    assert_int_equal(fx->h.src.state, SOURCE_CONNECTING);
}

static void test_backoff(void **state)
{
    int64_t prev_max = 0;

    for (unsigned attempt = 0; attempt < 40; attempt++) {
        int64_t step = 100LL << (attempt < 20 ? attempt : 20);
        int64_t lo = INT64_MAX, hi = 0;

        if (step > 30000)
            step = 30000;
        for (int i = 0; i < 200; i++) {
            int64_t d = source_backoff_ms(attempt);

            assert_true(d >= step / 2);
            assert_true(d <= step);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        assert_true(hi > lo); /* jittered, not a constant */
        assert_true(hi >= prev_max || step == 30000);
        prev_max = hi;
    }
    assert_true(source_backoff_ms(UINT32_MAX) <= 30000);
    assert_true(source_backoff_ms(UINT32_MAX) >= 15000);
}

static void test_subscriptions_free(void **state)
{
    struct subscriptions subs = {0};
    const char *names[] = {"a", "b"};

    subscriptions_free(&subs); /* empty: fine */
    subs_set(&subs, names, 2, names, 1);
    subs.exact.pos = calloc(2, sizeof(*subs.exact.pos));
    subscriptions_free(&subs);
    assert_null(subs.exact.items);
    assert_null(subs.exact.pos);
    assert_int_equal(subs.patterns.count, 0);
    subscriptions_free(&subs); /* twice: fine */
}

/* ---- redis: configuration errors ----------------------------------------- */

static void expect_start_error(struct fixture *fx, const char *url,
                               const char *needle)
{
    char why[256] = "";

    snprintf(fx->h.url, sizeof(fx->h.url), "%s", url);
    assert_int_equal(fx->h.src.ops->start(&fx->h.src, why, sizeof(why)), -1);
    assert_null(fx->h.src.impl);
    assert_non_null(strstr(why, needle));
    assert_null(strstr(why, "hunter2")); /* never echo the password */
    assert_null(strstr(why, "example.net")); /* nor the URL */
}

static void test_url_errors(void **state)
{
    struct fixture *fx = *state;
    char why[128] = "";

    expect_start_error(fx, "rediss://:hunter2@example.net:6380",
                       "rediss:// (TLS) needs hiredis >= 1.0; Debian 12 "
                       "ships 0.14");
    expect_start_error(fx, "http://:hunter2@example.net", "redis://");
    expect_start_error(fx, "redis://:hunter2@example.net:0", "port");
    expect_start_error(fx, "redis://:hunter2@example.net:99999", "port");
    expect_start_error(fx, "redis://:hunter2@example.net/abc", "/DB");
    expect_start_error(fx, "redis://:hunter2@example.net/1x", "/DB");
    expect_start_error(fx, "redis://:hunter2@example.net/0?x=1", "query");
    expect_start_error(fx, "redis://:hunter2@", "host");
    expect_start_error(fx, "redis://:hunter2%00x@example.net", "%-escape");
    expect_start_error(fx, "redis://:hunter2%zz@example.net", "%-escape");
    /* Sentinel URLs: a list of sentinels, then /MASTER[/DB]. */
    expect_start_error(fx, "redis+sentinel://:hunter2@h1:26379", "/MASTER");
    expect_start_error(fx, "redis+sentinel://:hunter2@h1:26379//0",
                       "/MASTER");
    expect_start_error(fx, "redis+sentinel://:hunter2@h1,,h2/m", "empty");
    expect_start_error(fx, "redis+sentinel://:hunter2@h1,:x@h2/m",
                       "only the first");
    expect_start_error(fx, "redis+sentinel://:hunter2@h1:0/m", "port");
    expect_start_error(fx, "redis+sentinel://:hunter2@h1/m/x", "/DB");
    assert_int_equal(redis_adapter_ops.check_url(
                         "redis+sentinel://:pw@h1:26379,[::1],h3/mymaster/2",
                         why, sizeof(why)),
                     0);
    assert_int_equal(fx->h.nstates, 0); /* a failed start reports nothing */

    /* The Streams adapter shares the URL parser (redis_conn.c). */
    fx->h.src.ops = &redis_stream_adapter_ops;
    snprintf(fx->h.url, sizeof(fx->h.url), "rediss://:hunter2@example.net");
    assert_int_equal(fx->h.src.ops->start(&fx->h.src, why, sizeof(why)), -1);
    assert_null(fx->h.src.impl);
    assert_non_null(strstr(why, "rediss:// (TLS)"));
    fx->h.src.ops = &redis_adapter_ops;
}

/* ---- redis: delivery ----------------------------------------------------- */

static void test_subscribe_and_psubscribe(void **state)
{
    struct fixture *fx = *state;
    const char *exact[] = {"news"};
    const char *patterns[] = {"alerts:*"};
    const char binary[] = {'a', '\0', 'b', (char)0xff, (char)0xfe, '\n'};
    redisContext *pub;

    testlib_redis_start(&fx->redis, fx->port, NULL);
    subs_set(&fx->h.src.subs, exact, 1, patterns, 1);
    url_set(fx, NULL, NULL);
    testlib_start(&fx->h);
    assert_true(testlib_wait_state(&fx->h, SOURCE_UP, 3000));
    /* DOWN ("connecting"), CONNECTING, UP: in that order, each once. */
    assert_int_equal(fx->h.nstates, 3);
    assert_int_equal(fx->h.states[0], SOURCE_DOWN);
    assert_int_equal(fx->h.states[1], SOURCE_CONNECTING);
    assert_int_equal(fx->h.states[2], SOURCE_UP);
    assert_string_equal(fx->h.src.status, "");

    pub = redis_client(fx, NULL);
    assert_int_equal(publish(pub, "news", binary, sizeof(binary)), 1);
    assert_int_equal(publish(pub, "other", "x", 1), 0);
    assert_int_equal(publish(pub, "alerts:fire", "hot", 3), 1);
    assert_int_equal(publish(pub, "news", "", 0), 1);
    redisFree(pub);

    assert_true(testlib_wait_msgs(&fx->h, 3, 3000));
    testlib_run_for(&fx->h, 100);
    assert_int_equal(fx->h.nmsgs, 3);
    assert_msg(fx, 0, "news", binary, sizeof(binary));
    assert_msg(fx, 1, "alerts:fire", "hot", 3);
    assert_msg(fx, 2, "news", "", 0);
    assert_int_equal(fx->h.msgs[0]->source, 3);
    assert_int_equal(fx->h.msgs[0]->type, SOURCE_REDIS);
}

static void test_overlap_is_one_event(void **state)
{
    struct fixture *fx = *state;
    /* ov:1 matches the channel and three distinct patterns ("ov:*" twice
     * in the config is one subscription upstream); zz* matches nothing. */
    const char *exact[] = {"ov:1"};
    const char *patterns[] = {"ov:*", "o?:1", "ov:*", "zz*", "[o]v:[0-9]"};
    const struct {
        const char *channel;
        const char *payload;
        long long receivers;
    } sent[] = {
        {"ov:1", "m1", 4}, {"ov:1", "m2", 4}, {"ov:1", "m2", 4},
        {"ov:2", "x", 2},  {"ov:1", "m3", 4}, {"ov:1", "", 4},
        {"ov:1", "m3", 4}, {"ov:x", "y", 1},  {"ov:1", "m1", 4},
    };
    const size_t n = sizeof(sent) / sizeof(sent[0]);
    redisContext *pub;

    testlib_redis_start(&fx->redis, fx->port, NULL);
    subs_set(&fx->h.src.subs, exact, 1, patterns, 5);
    url_set(fx, NULL, NULL);
    testlib_start(&fx->h);
    assert_true(testlib_wait_state(&fx->h, SOURCE_UP, 3000));

    pub = redis_client(fx, NULL);
    /* Redis really sends several copies: its receiver count says so. */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(publish(pub, sent[i].channel, sent[i].payload,
                                 strlen(sent[i].payload)),
                         sent[i].receivers);
    redisFree(pub);

    assert_true(testlib_wait_msgs(&fx->h, n, 3000));
    testlib_run_for(&fx->h, 200);
    assert_int_equal(fx->h.nmsgs, n);
    for (size_t i = 0; i < n; i++)
        assert_msg(fx, i, sent[i].channel, sent[i].payload,
                   strlen(sent[i].payload));
}

/* ---- redis: AUTH and SELECT ---------------------------------------------- */

static void restart_with(struct fixture *fx, const char *userinfo,
                         const char *path)
{
    testlib_stop(&fx->h);
    url_set(fx, userinfo, path);
    testlib_start(&fx->h);
}

static void test_auth(void **state)
{
    struct fixture *fx = *state;
    const char *exact[] = {"secure"};
    const char *password = "s3cr3t/p@ss";
    char needle[64];
    struct testlib_capture cap;
    redisContext *admin;
    redisReply *rep;
    bool up, bare_up, alice_up, wrong, noauth;
    long long receivers;
    char *log;

    testlib_redis_start(&fx->redis, fx->port, password);
    subs_set(&fx->h.src.subs, exact, 1, NULL, 0);
    admin = redis_client(fx, password);
    rep = redisCommand(admin, "ACL SETUSER alice on >alicepw ~* &* +@all");
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_STATUS);
    freeReplyObject(rep);

    /* Everything logged from here is checked for secrets below; the
     * asserts wait until stderr is restored. */
    testlib_capture_start(&cap);
    /* The right password, %-encoded as a URL needs it. */
    url_set(fx, ":s3cr3t%2Fp%40ss", NULL);
    testlib_start(&fx->h);
    up = testlib_wait_state(&fx->h, SOURCE_UP, 3000);
    receivers = publish(admin, "secure", "ok", 2);
    testlib_wait_msgs(&fx->h, 1, 3000);
    /* A bare userinfo is the password (as redis-cli reads it). */
    restart_with(fx, "s3cr3t%2Fp%40ss", NULL);
    bare_up = testlib_wait_state(&fx->h, SOURCE_UP, 3000);
    /* An ACL user. */
    restart_with(fx, "alice:alicepw", NULL);
    alice_up = testlib_wait_state(&fx->h, SOURCE_UP, 3000);
    /* A wrong password: DOWN with the server's reason. */
    restart_with(fx, "alice:wrongpass", NULL);
    wrong = testlib_wait_status(&fx->h, SOURCE_DOWN, "AUTH failed: WRONGPASS",
                                3000) &&
            !strstr(fx->h.src.status, "wrongpass");
    /* No password for a server that wants one. */
    restart_with(fx, NULL, NULL);
    noauth = testlib_wait_status(&fx->h, SOURCE_DOWN, "NOAUTH", 3000);
    testlib_stop(&fx->h);
    log = testlib_capture_end(&cap);

    assert_true(up);
    assert_int_equal(receivers, 1);
    assert_int_equal(fx->h.nmsgs, 1);
    assert_msg(fx, 0, "secure", "ok", 2);
    assert_true(bare_up);
    assert_true(alice_up);
    assert_true(wrong);
    assert_true(noauth);

    snprintf(needle, sizeof(needle), "source cache: connected to 127.0.0.1:%d",
             fx->port);
    assert_non_null(strstr(log, needle));
    assert_non_null(strstr(log, "AUTH failed"));
    assert_null(strstr(log, "s3cr3t"));
    assert_null(strstr(log, "wrongpass"));
    assert_null(strstr(log, "alicepw"));
    assert_null(strstr(log, "redis://"));
    free(log);
    redisFree(admin);
}

static void test_select(void **state)
{
    struct fixture *fx = *state;
    const char *exact[] = {"db"};
    redisContext *pub;

    testlib_redis_start(&fx->redis, fx->port, NULL);
    subs_set(&fx->h.src.subs, exact, 1, NULL, 0);
    url_set(fx, NULL, "/3");
    testlib_start(&fx->h);
    assert_true(testlib_wait_state(&fx->h, SOURCE_UP, 3000));
    pub = redis_client(fx, NULL);
    assert_int_equal(publish(pub, "db", "3", 1), 1);
    redisFree(pub);
    assert_true(testlib_wait_msgs(&fx->h, 1, 3000));

    restart_with(fx, NULL, "/99");
    assert_true(
        testlib_wait_status(&fx->h, SOURCE_DOWN, "SELECT 99 failed", 3000));
}

/* ---- redis: faults ------------------------------------------------------- */

static void test_server_restart(void **state)
{
    struct fixture *fx = *state;
    const char *patterns[] = {"r*"};
    redisContext *pub;
    size_t before;

    testlib_redis_start(&fx->redis, fx->port, NULL);
    subs_set(&fx->h.src.subs, NULL, 0, patterns, 1);
    url_set(fx, NULL, NULL);
    testlib_start(&fx->h);
    assert_true(testlib_wait_state(&fx->h, SOURCE_UP, 3000));

    before = fx->h.nstates;
    testlib_server_kill(&fx->redis);
    assert_true(testlib_wait_status(&fx->h, SOURCE_DOWN, "lost", 3000));
    testlib_run_for(&fx->h, 300); /* a few refused reconnects */
    assert_int_equal(fx->h.src.state, SOURCE_DOWN);
    assert_non_null(strstr(fx->h.src.status, "refused"));

    testlib_redis_start(&fx->redis, fx->port, NULL);
    assert_true(testlib_wait_state(&fx->h, SOURCE_UP, 5000));
    assert_true(testlib_saw_state(&fx->h, before, SOURCE_CONNECTING));
    pub = redis_client(fx, NULL);
    assert_int_equal(publish(pub, "restarted", "again", 5), 1);
    redisFree(pub);
    assert_true(testlib_wait_msgs(&fx->h, 1, 3000));
    assert_msg(fx, 0, "restarted", "again", 5);
}

static void test_connection_refused(void **state)
{
    struct fixture *fx = *state;
    char expect[64];

    url_set(fx, NULL, NULL); /* nothing listens on fx->port */
    testlib_start(&fx->h);
    testlib_run_for(&fx->h, 500);
    assert_int_equal(fx->h.src.state, SOURCE_DOWN);
    assert_non_null(strstr(fx->h.src.status, "refused"));
    /* Retries failing the same way do not call the sink again. */
    assert_true(fx->h.nstates <= 2);

    /* An IPv6 literal: brackets stripped for connecting, kept in the
     * status (whether or not this host has IPv6, nothing listens). */
    testlib_stop(&fx->h);
    snprintf(fx->h.url, sizeof(fx->h.url), "redis://[::1]:%d/1", fx->port);
    testlib_start(&fx->h);
    snprintf(expect, sizeof(expect), "cannot connect to [::1]:%d: ", fx->port);
    assert_true(testlib_wait_status(&fx->h, SOURCE_DOWN, expect, 1000));
}

static void test_handshake_timeout(void **state)
{
    struct fixture *fx = *state;
    const char *exact[] = {"never"};
    int64_t start;

    setenv("SLUICE_REDIS_HANDSHAKE_MS", "300", 1);
    fx->listen_fd = testlib_silent_listener(&fx->port);
    subs_set(&fx->h.src.subs, exact, 1, NULL, 0);
    url_set(fx, ":pw", "/2"); /* AUTH is what goes unanswered */
    start = testlib_now_ms();
    testlib_start(&fx->h);
    assert_true(testlib_wait_state(&fx->h, SOURCE_CONNECTING, 1000));
    assert_true(testlib_wait_state(&fx->h, SOURCE_DOWN, 2000));
    assert_true(testlib_now_ms() - start >= 250);
    assert_non_null(strstr(fx->h.src.status, "handshake timeout"));
    assert_null(strstr(fx->h.src.status, "pw@"));
    testlib_run_for(&fx->h, 1000);
    /* It kept retrying. */
    assert_true(testlib_listener_drain(fx->listen_fd) >= 2);
    assert_true(testlib_saw_state(&fx->h, 2, SOURCE_CONNECTING));
}

/* Keepalives get answered: UP for many intervals without a state call. */
static void expect_stays_up(struct fixture *fx)
{
    size_t calls;

    assert_true(testlib_wait_state(&fx->h, SOURCE_UP, 3000));
    calls = fx->h.nstates;
    testlib_run_for(&fx->h, 1000); /* 5 keepalive intervals */
    assert_int_equal(fx->h.src.state, SOURCE_UP);
    assert_int_equal(fx->h.nstates, calls);
}

static void test_keepalive(void **state)
{
    struct fixture *fx = *state;
    const char *exact[] = {"ka"};
    const char *patterns[] = {"ka:*"};

    setenv("SLUICE_REDIS_KEEPALIVE_MS", "200", 1);
    setenv("SLUICE_REDIS_HANDSHAKE_MS", "400", 1);
    testlib_redis_start(&fx->redis, fx->port, NULL);
    url_set(fx, NULL, NULL);

    /* Channels (re-SUBSCRIBE), patterns only (re-PSUBSCRIBE), nothing
     * subscribed (PING). */
    subs_set(&fx->h.src.subs, exact, 1, patterns, 1);
    testlib_start(&fx->h);
    expect_stays_up(fx);
    testlib_stop(&fx->h);
    subs_set(&fx->h.src.subs, NULL, 0, patterns, 1);
    testlib_start(&fx->h);
    expect_stays_up(fx);
    testlib_stop(&fx->h);
    subs_set(&fx->h.src.subs, NULL, 0, NULL, 0);
    testlib_start(&fx->h);
    expect_stays_up(fx);

    /* A server that stops answering is dropped, then found again. */
    kill(fx->redis.pid, SIGSTOP);
    assert_true(testlib_wait_status(&fx->h, SOURCE_DOWN, "keepalive", 2000));
    testlib_run_for(&fx->h, 500); /* reconnects: TCP yes, answers no */
    assert_int_not_equal(fx->h.src.state, SOURCE_UP);
    kill(fx->redis.pid, SIGCONT);
    assert_true(testlib_wait_state(&fx->h, SOURCE_UP, 5000));
}

/* ---- redis: resubscribe and stop ----------------------------------------- */

/* Runs the loop until the server shows no subscription at all. */
static bool wait_server_unsubscribed(struct fixture *fx, redisContext *c)
{
    for (int64_t end = testlib_now_ms() + 3000; testlib_now_ms() < end;
         testlib_run_for(&fx->h, 10)) {
        redisReply *rep = redisCommand(c, "PUBSUB NUMPAT");
        bool ok = rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 0;

        freeReplyObject(rep);
        rep = redisCommand(c, "PUBSUB CHANNELS");
        ok = ok && rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 0;
        freeReplyObject(rep);
        if (ok)
            return true;
    }
    return false;
}

/* Publishes "probe" to channel, running the loop, until Redis counts
 * `receivers`; then drops what the probes delivered. */
static bool wait_receivers(struct fixture *fx, redisContext *c,
                           const char *channel, long long receivers)
{
    bool ok = false;

    for (int64_t end = testlib_now_ms() + 3000;
         !ok && testlib_now_ms() < end;) {
        ok = publish(c, channel, "probe", 5) == receivers;
        testlib_run_for(&fx->h, 10);
    }
    testlib_run_for(&fx->h, 100);
    for (size_t i = 0; i < fx->h.nmsgs; i++)
        assert_memory_equal(fx->h.msgs[i]->payload, "probe", 5);
    testlib_forget(&fx->h);
    return ok;
}

static void test_resubscribe(void **state)
{
    struct fixture *fx = *state;
    const char *first[] = {"r:a"};
    const char *second[] = {"r:b"};
    const char *second_p[] = {"rp:*"};
    const char *third_p[] = {"r:*"};
    struct subscriptions subs = {0};
    redisContext *pub;

    testlib_redis_start(&fx->redis, fx->port, NULL);
    url_set(fx, NULL, NULL);
    /* Before start: stored, applied by the first connect. */
    subs_set(&subs, first, 1, NULL, 0);
    assert_int_equal(fx->h.src.ops->resubscribe(&fx->h.src, &subs), 0);
    assert_null(subs.exact.items); /* ownership taken */
    testlib_start(&fx->h);
    assert_true(testlib_wait_state(&fx->h, SOURCE_UP, 3000));
    pub = redis_client(fx, NULL);
    assert_int_equal(publish(pub, "r:a", "a", 1), 1);
    assert_true(testlib_wait_msgs(&fx->h, 1, 3000));
    assert_msg(fx, 0, "r:a", "a", 1);
    testlib_forget(&fx->h);

    /* While UP: r:a goes, r:b and rp:* come. */
    subs_set(&subs, second, 1, second_p, 1);
    assert_int_equal(fx->h.src.ops->resubscribe(&fx->h.src, &subs), 0);
    assert_true(wait_receivers(fx, pub, "r:a", 0));
    assert_true(wait_receivers(fx, pub, "rp:0", 1));
    assert_int_equal(publish(pub, "r:b", "b", 1), 1);
    assert_int_equal(publish(pub, "rp:1", "p", 1), 1);
    assert_true(testlib_wait_msgs(&fx->h, 2, 3000));
    assert_msg(fx, 0, "r:b", "b", 1);
    assert_msg(fx, 1, "rp:1", "p", 1);
    testlib_forget(&fx->h);

    /* Overlap under the new set: r:b and r:* both match, one event. */
    subs_set(&subs, second, 1, third_p, 1);
    assert_int_equal(fx->h.src.ops->resubscribe(&fx->h.src, &subs), 0);
    assert_true(wait_receivers(fx, pub, "rp:0", 0));
    assert_true(wait_receivers(fx, pub, "r:0", 1));
    assert_int_equal(publish(pub, "r:b", "once", 4), 2);
    assert_int_equal(publish(pub, "r:b", "once", 4), 2);
    assert_true(testlib_wait_msgs(&fx->h, 2, 3000));
    testlib_run_for(&fx->h, 100);
    assert_int_equal(fx->h.nmsgs, 2);
    assert_msg(fx, 0, "r:b", "once", 4);
    assert_msg(fx, 1, "r:b", "once", 4);

    /* To nothing at all: the connection stays up (keepalive by PING). */
    subs_set(&subs, NULL, 0, NULL, 0);
    assert_int_equal(fx->h.src.ops->resubscribe(&fx->h.src, &subs), 0);
    assert_true(wait_server_unsubscribed(fx, pub));
    assert_int_equal(fx->h.src.state, SOURCE_UP);
    redisFree(pub);
}

static void test_stop(void **state)
{
    struct fixture *fx = *state;
    const char *exact[] = {"s"};
    const char *patterns[] = {"s*"};
    redisContext *pub;
    int redis_port = fx->port;

    subs_set(&fx->h.src.subs, exact, 1, patterns, 1);

    /* While a handshake is pending (AUTH unanswered). */
    fx->listen_fd = testlib_silent_listener(&fx->port);
    url_set(fx, ":pw", NULL);
    testlib_start(&fx->h);
    assert_true(testlib_wait_state(&fx->h, SOURCE_CONNECTING, 1000));
    testlib_expect_silence_after_stop(&fx->h);

    /* Right after start, before the TCP connect completes. */
    testlib_start(&fx->h);
    testlib_stop(&fx->h);

    /* While waiting to reconnect (nothing listens). */
    fx->port = redis_port;
    url_set(fx, NULL, NULL);
    testlib_start(&fx->h);
    testlib_run_for(&fx->h, 50);
    assert_int_equal(fx->h.src.state, SOURCE_DOWN);
    testlib_expect_silence_after_stop(&fx->h);

    /* While UP, with messages (and their duplicates) in flight. */
    testlib_redis_start(&fx->redis, fx->port, NULL);
    testlib_start(&fx->h);
    assert_true(testlib_wait_state(&fx->h, SOURCE_UP, 3000));
    pub = redis_client(fx, NULL);
    assert_int_equal(publish(pub, "s", "1", 1), 2);
    assert_true(testlib_wait_msgs(&fx->h, 1, 3000));
    assert_int_equal(publish(pub, "s", "2", 1), 2);
    testlib_expect_silence_after_stop(&fx->h);
    redisFree(pub);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adapter_for_type),
        cmocka_unit_test_setup_teardown(test_source_set_state, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_subscriptions_free),
        cmocka_unit_test_setup_teardown(test_url_errors, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_subscribe_and_psubscribe,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_overlap_is_one_event,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_auth, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_select, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_server_restart, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_connection_refused,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_handshake_timeout, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_keepalive, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_resubscribe, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_stop, fixture_setup,
                                        fixture_teardown),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
