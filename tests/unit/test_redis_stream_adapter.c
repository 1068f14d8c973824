/*
 * test_redis_stream_adapter.c - tests for adapters/redis_stream.c (the
 * Redis Streams adapter) and, through it, adapters/redis_conn.c.
 *
 * The adapter runs in a testlib harness (its own event_base, a sink that
 * records every delivery and state change and whose last_entry_id
 * answers from a table the test fills in) against a real redis-server
 * started on a free loopback port. Entries are added through a blocking
 * hiredis connection. Servers are killed in each test's teardown (which
 * cmocka runs also after a failed assertion) and, should this process
 * die, by the kernel (testlib.h).
 *
 * Timing knobs: SLUICE_REDIS_HANDSHAKE_MS and SLUICE_REDIS_KEEPALIVE_MS
 * (which also bounds XREAD's BLOCK) are set by the tests that need short
 * timeouts, unset by every setup.
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
#include "lib/sse.h"
#include "tests/unit/testlib.h"

#define ID_MAX 64

struct fixture {
    struct testlib_harness h;    /* the source "audit", index 2 */
    struct testlib_server redis; /* pid 0: none */
    int port;              /* of the redis-server or the silent listener */
    int listen_fd;         /* the silent listener, or -1 */
    redisContext *client;  /* for XADD and inspection; NULL: none */
};

/* The sink's deliver, with this adapter's promise checked first: every
 * message carries its entry id. */
static int sink_deliver(void *ctx, struct source *src, struct message *msg)
{
    assert_non_null(msg->stream_entry_id);
    return testlib_deliver(ctx, src, msg);
}

/* ---- the server --------------------------------------------------------- */

/* Starts redis-server on fx->port, waits until it accepts connections,
 * and opens fx->client to it. */
static void redis_server_start(struct fixture *fx)
{
    testlib_redis_start(&fx->redis, fx->port, NULL);
    fx->client = redisConnect("127.0.0.1", fx->port);
    assert_non_null(fx->client);
    assert_int_equal(fx->client->err, 0);
}

static void redis_server_kill(struct fixture *fx)
{
    if (fx->client)
        redisFree(fx->client);
    fx->client = NULL;
    testlib_server_kill(&fx->redis);
}

/*
 * XADD key * f1 v1 [f2 v2]: values given with lengths (binary safe).
 * The new entry's id is copied into id (ID_MAX).
 */
static void xadd(struct fixture *fx, const char *key, const char *f1,
                 const char *v1, size_t v1len, const char *f2,
                 const char *v2, size_t v2len, char *id)
{
    const char *argv[7] = {"XADD", key, "*", f1, v1, f2, v2};
    size_t lens[7] = {4, strlen(key), 1, strlen(f1), v1len,
                      f2 ? strlen(f2) : 0, v2len};
    redisReply *rep;

    rep = redisCommandArgv(fx->client, f2 ? 7 : 5, argv, lens);
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    assert_true(rep->len < ID_MAX);
    if (id)
        memcpy(id, rep->str, rep->len + 1);
    freeReplyObject(rep);
}

/* XADD key * n <text>: the common one-field entry. */
static void xadd_text(struct fixture *fx, const char *key, const char *text,
                      char *id)
{
    xadd(fx, key, "n", text, strlen(text), NULL, NULL, 0, id);
}

static long long info_blocked_clients(struct fixture *fx)
{
    redisReply *rep = redisCommand(fx->client, "INFO clients");
    const char *p;
    long long n;

    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    p = strstr(rep->str, "blocked_clients:");
    assert_non_null(p);
    n = strtoll(p + strlen("blocked_clients:"), NULL, 10);
    freeReplyObject(rep);
    return n;
}

/* ---- the source under test ---------------------------------------------- */

static void keys_set(struct subscriptions *subs, const char *const *keys,
                     size_t n)
{
    subscriptions_free(subs);
    testlib_strv_set(&subs->exact, keys, n);
}

static void url_set(struct fixture *fx, const char *userinfo)
{
    snprintf(fx->h.url, sizeof(fx->h.url), "redis://%s%s127.0.0.1:%d",
             userinfo ? userinfo : "", userinfo ? "@" : "", fx->port);
}

/* Runs the loop until the adapter's XREAD blocks in the server: from then
 * on an XADD is read from the position that XREAD holds. */
static bool wait_blocked(struct fixture *fx)
{
    for (int64_t end = testlib_now_ms() + 3000; testlib_now_ms() < end;
         testlib_run_for(&fx->h, 10))
        if (info_blocked_clients(fx) == 1)
            return true;
    return false;
}

/* Starts the source on `keys` against the running server and waits until
 * its XREAD blocks. */
static void start_reading(struct fixture *fx, const char *const *keys,
                          size_t n)
{
    keys_set(&fx->h.src.subs, keys, n);
    url_set(fx, NULL);
    testlib_start(&fx->h);
    assert_true(testlib_wait_state(&fx->h, SOURCE_UP, 3000));
    assert_true(wait_blocked(fx));
}

static int fixture_setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));

    assert_non_null(fx);
    unsetenv("SLUICE_REDIS_HANDSHAKE_MS");
    unsetenv("SLUICE_REDIS_KEEPALIVE_MS");
    testlib_harness_init(&fx->h, &redis_stream_adapter_ops, "audit",
                         SOURCE_REDIS_STREAM, 2);
    fx->h.src.sink.deliver = sink_deliver;
    fx->listen_fd = -1;
    fx->port = testlib_free_port();
    *state = fx;
    return 0;
}

static int fixture_teardown(void **state)
{
    struct fixture *fx = *state;

    testlib_harness_free(&fx->h);
    redis_server_kill(fx);
    if (fx->listen_fd >= 0)
        close(fx->listen_fd);
    free(fx);
    return 0;
}

static void expect_rec(const struct message *rec, const char *topic,
                       const char *entry_id, const char *payload)
{
    assert_string_equal(rec->topic, topic);
    assert_string_equal(rec->stream_entry_id, entry_id);
    assert_int_equal(rec->payload_len, strlen(payload));
    assert_string_equal(rec->payload, payload);
    assert_true(sse_json_valid(rec->payload, rec->payload_len));
}

static void assert_msg(const struct fixture *fx, size_t i, const char *topic,
                       const char *entry_id, const char *payload)
{
    assert_true(i < fx->h.nmsgs);
    expect_rec(fx->h.msgs[i], topic, entry_id, payload);
}

/* The n-th (0-based) recorded message whose topic is key. */
static const struct message *nth_of(const struct fixture *fx, const char *key,
                                    size_t n)
{
    size_t seen = 0;

    for (size_t i = 0; i < fx->h.nmsgs; i++)
        if (strcmp(fx->h.msgs[i]->topic, key) == 0 && seen++ == n)
            return fx->h.msgs[i];
    fail_msg("no message %zu on %s", n, key);
    return NULL;
}

/* ---- configuration ------------------------------------------------------ */

static void test_url_errors(void **state)
{
    struct fixture *fx = *state;
    char why[256] = "";

    snprintf(fx->h.url, sizeof(fx->h.url), "rediss://:hunter2@example.net");
    assert_int_equal(fx->h.src.ops->start(&fx->h.src, why, sizeof(why)), -1);
    assert_null(fx->h.src.impl);
    assert_non_null(strstr(why, "TLS"));
    snprintf(fx->h.url, sizeof(fx->h.url), "redis://:hunter2@example.net/x");
    assert_int_equal(fx->h.src.ops->start(&fx->h.src, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "/DB"));
    assert_null(strstr(why, "hunter2"));
    assert_int_equal(fx->h.nstates, 0); /* a failed start reports nothing */
    testlib_stop(&fx->h);                  /* never started: fine */
}

/* ---- delivery ----------------------------------------------------------- */

static void test_entries_arrive(void **state)
{
    struct fixture *fx = *state;
    const char *keys[] = {"s1", "s2", "s1"}; /* a duplicate is read once */
    const char binary[] = {'\0', (char)0xff, '\1'};
    const char nul[] = "a\"b\nc\0";
    char id[4][ID_MAX];

    redis_server_start(fx);
    start_reading(fx, keys, 3);
    /* DOWN ("connecting"), CONNECTING, UP: in that order, each once. */
    assert_int_equal(fx->h.nstates, 3);
    assert_int_equal(fx->h.states[0], SOURCE_DOWN);
    assert_int_equal(fx->h.states[1], SOURCE_CONNECTING);
    assert_int_equal(fx->h.states[2], SOURCE_UP);
    assert_int_equal(fx->h.last_calls, 2); /* asked once per distinct key */

    xadd(fx, "s1", "name", "alice", 5, "n", "1", 1, id[0]);
    xadd(fx, "s2", "bin", binary, sizeof(binary), "text", "hi", 2, id[1]);
    xadd(fx, "s1", "q", nul, sizeof(nul) - 1, "\xc3\xa9", "\xc3\xbc", 2,
         id[2]);
    xadd(fx, "s2", "empty", "", 0, NULL, NULL, 0, id[3]);
    assert_true(testlib_wait_msgs(&fx->h, 4, 3000));
    testlib_run_for(&fx->h, 100);
    assert_int_equal(fx->h.nmsgs, 4);

    /* In order per key, topic = key, the entry id as attribute, the
     * fields as a JSON object; a non-UTF-8 value makes it all base64.
     * (Ids are per stream: s1 and s2 may well share one.) */
    expect_rec(nth_of(fx, "s1", 0), "s1", id[0],
               "{\"name\":\"alice\",\"n\":\"1\"}");
    expect_rec(nth_of(fx, "s1", 1), "s1", id[2],
               "{\"q\":\"a\\\"b\\nc\\u0000\",\"\xc3\xa9\":\"\xc3\xbc\"}");
    expect_rec(nth_of(fx, "s2", 0), "s2", id[1],
               "{\"bin\":\"AP8B\",\"text\":\"aGk=\","
               "\"_encoding\":\"base64\"}");
    expect_rec(nth_of(fx, "s2", 1), "s2", id[3], "{\"empty\":\"\"}");
    for (size_t i = 0; i < fx->h.nmsgs; i++) {
        assert_int_equal(fx->h.msgs[i]->source, 2);
        assert_int_equal(fx->h.msgs[i]->type, SOURCE_REDIS_STREAM);
    }
}

/* With no last id the source starts with new entries only; an unknown
 * key (no stream yet) is read once it appears. */
static void test_starts_at_new_entries(void **state)
{
    struct fixture *fx = *state;
    const char *keys[] = {"old", "later", "bad"};
    char id[2][ID_MAX];

    redis_server_start(fx);
    xadd_text(fx, "old", "before-1", NULL);
    xadd_text(fx, "old", "before-2", NULL);
    xadd_text(fx, "bad", "before", NULL);
    /* Ignored: like no id at all. */
    testlib_last_set(&fx->h, "bad", "not-an-id");
    start_reading(fx, keys, 3);
    testlib_run_for(&fx->h, 200);
    assert_int_equal(fx->h.nmsgs, 0);

    xadd_text(fx, "later", "created", id[0]);
    xadd_text(fx, "old", "after", id[1]);
    xadd_text(fx, "bad", "after", NULL);
    assert_true(testlib_wait_msgs(&fx->h, 3, 3000));
    testlib_run_for(&fx->h, 100);
    assert_int_equal(fx->h.nmsgs, 3);
    assert_string_equal(nth_of(fx, "later", 0)->stream_entry_id, id[0]);
    assert_string_equal(nth_of(fx, "old", 0)->stream_entry_id, id[1]);
    assert_string_equal(nth_of(fx, "old", 0)->payload,
                        "{\"n\":\"after\"}");
    assert_string_equal(nth_of(fx, "bad", 0)->payload, "{\"n\":\"after\"}");
}

/* A new adapter whose sink knows the 3rd entry gets exactly 4..6. */
static void test_resume_from_last_id(void **state)
{
    struct fixture *fx = *state;
    const char *keys[] = {"audit"};
    char id[6][ID_MAX];
    char text[16];

    redis_server_start(fx);
    start_reading(fx, keys, 1);
    for (int i = 0; i < 3; i++) {
        snprintf(text, sizeof(text), "e%d", i + 1);
        xadd_text(fx, "audit", text, id[i]);
    }
    assert_true(testlib_wait_msgs(&fx->h, 3, 3000));
    testlib_stop(&fx->h);
    for (int i = 3; i < 6; i++) {
        snprintf(text, sizeof(text), "e%d", i + 1);
        xadd_text(fx, "audit", text, id[i]);
    }
    testlib_forget(&fx->h);

    testlib_last_set(&fx->h, "audit", id[2]);
    testlib_start(&fx->h);
    assert_true(testlib_wait_msgs(&fx->h, 3, 3000));
    testlib_run_for(&fx->h, 200);
    assert_int_equal(fx->h.nmsgs, 3);
    assert_msg(fx, 0, "audit", id[3], "{\"n\":\"e4\"}");
    assert_msg(fx, 1, "audit", id[4], "{\"n\":\"e5\"}");
    assert_msg(fx, 2, "audit", id[5], "{\"n\":\"e6\"}");
}

/* From 0-0 everything is read, in order, 512 entries per XREAD. */
static void test_resume_in_batches(void **state)
{
    struct fixture *fx = *state;
    const char *keys[] = {"big"};
    const size_t n = 1100;
    char first[ID_MAX], last[ID_MAX], text[16];
    redisReply *rep;

    redis_server_start(fx);
    for (size_t i = 0; i < n; i++) {
        snprintf(text, sizeof(text), "%zu", i);
        redisAppendCommand(fx->client, "XADD big * n %s", text);
    }
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(redisGetReply(fx->client, (void **)&rep), REDIS_OK);
        assert_int_equal(rep->type, REDIS_REPLY_STRING);
        snprintf(i == 0 ? first : last, ID_MAX, "%s", rep->str);
        freeReplyObject(rep);
    }
    testlib_last_set(&fx->h, "big", "0-0");
    start_reading(fx, keys, 1);
    assert_true(testlib_wait_msgs(&fx->h, n, 5000));
    testlib_run_for(&fx->h, 100);
    assert_int_equal(fx->h.nmsgs, n);
    assert_string_equal(fx->h.msgs[0]->stream_entry_id, first);
    assert_string_equal(fx->h.msgs[n - 1]->stream_entry_id, last);
    for (size_t i = 0; i < n; i++) {
        snprintf(text, sizeof(text), "{\"n\":\"%zu\"}", i);
        assert_string_equal(fx->h.msgs[i]->payload, text);
    }
}

/* A refused entry is not retried (it would be refused again), and a
 * reconnect continues after the last entry handed on, not after the
 * sink's last stored one. */
static void test_refused_entry_advances(void **state)
{
    struct fixture *fx = *state;
    const char *keys[] = {"r"};
    char id[3][ID_MAX];
    redisReply *rep;

    redis_server_start(fx);
    start_reading(fx, keys, 1);
    fx->h.deliver_rc = -1;
    xadd_text(fx, "r", "x1", id[0]);
    xadd_text(fx, "r", "x2", id[1]);
    assert_true(testlib_wait_msgs(&fx->h, 2, 3000));
    testlib_run_for(&fx->h, 300);
    assert_int_equal(fx->h.nmsgs, 2);

    testlib_last_set(&fx->h, "r", id[0]); /* the history stored only x1 */
    rep = redisCommand(fx->client, "CLIENT KILL TYPE normal SKIPME yes");
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
    assert_int_equal(rep->integer, 1);
    freeReplyObject(rep);
    assert_true(testlib_wait_status(&fx->h, SOURCE_DOWN, "lost", 3000));
    assert_true(testlib_wait_state(&fx->h, SOURCE_UP, 3000));
    assert_true(wait_blocked(fx));
    fx->h.deliver_rc = 0;
    xadd_text(fx, "r", "x3", id[2]);
    assert_true(testlib_wait_msgs(&fx->h, 3, 3000));
    testlib_run_for(&fx->h, 200);
    assert_int_equal(fx->h.nmsgs, 3);
    assert_msg(fx, 2, "r", id[2], "{\"n\":\"x3\"}");
}

/* ---- faults ------------------------------------------------------------- */

/* Redis restarts (empty, no persistence) while the XREAD is blocked:
 * DOWN, then UP, and what was added after the restart, even before the
 * adapter reconnected, arrives. */
static void test_server_restart(void **state)
{
    struct fixture *fx = *state;
    const char *keys[] = {"s"};
    char id[4][ID_MAX];
    size_t before;

    redis_server_start(fx);
    start_reading(fx, keys, 1);
    xadd_text(fx, "s", "first", id[0]);
    assert_true(testlib_wait_msgs(&fx->h, 1, 3000));

    before = fx->h.nstates;
    redis_server_kill(fx);
    assert_true(testlib_wait_status(&fx->h, SOURCE_DOWN, "lost", 3000));
    testlib_run_for(&fx->h, 300); /* a few refused reconnects */
    assert_int_equal(fx->h.src.state, SOURCE_DOWN);

    redis_server_start(fx); /* the loop does not run meanwhile */
    xadd_text(fx, "s", "while-down-1", id[1]);
    xadd_text(fx, "s", "while-down-2", id[2]);
    assert_true(testlib_wait_state(&fx->h, SOURCE_UP, 5000));
    assert_true(testlib_saw_state(&fx->h, before, SOURCE_CONNECTING));
    assert_true(testlib_wait_msgs(&fx->h, 3, 3000));
    assert_true(wait_blocked(fx));
    xadd_text(fx, "s", "after", id[3]);
    assert_true(testlib_wait_msgs(&fx->h, 4, 3000));
    testlib_run_for(&fx->h, 100);
    assert_int_equal(fx->h.nmsgs, 4);
    assert_msg(fx, 0, "s", id[0], "{\"n\":\"first\"}");
    assert_msg(fx, 1, "s", id[1], "{\"n\":\"while-down-1\"}");
    assert_msg(fx, 2, "s", id[2], "{\"n\":\"while-down-2\"}");
    assert_msg(fx, 3, "s", id[3], "{\"n\":\"after\"}");
}

/* With AUTH unanswered, and without AUTH (the PING ahead of the reads is
 * unanswered): never UP, DOWN by the handshake timeout, retried. */
static void test_handshake_timeout(void **state)
{
    struct fixture *fx = *state;
    const char *keys[] = {"never"};
    const char *userinfo[] = {":pw", NULL};
    int64_t start;

    setenv("SLUICE_REDIS_HANDSHAKE_MS", "300", 1);
    fx->listen_fd = testlib_silent_listener(&fx->port);
    keys_set(&fx->h.src.subs, keys, 1);
    for (size_t i = 0; i < 2; i++) {
        url_set(fx, userinfo[i]);
        fx->h.nstates = 0;
        start = testlib_now_ms();
        testlib_start(&fx->h);
        assert_true(testlib_wait_state(&fx->h, SOURCE_CONNECTING, 1000));
        assert_true(testlib_wait_state(&fx->h, SOURCE_DOWN, 2000));
        assert_true(testlib_now_ms() - start >= 250);
        assert_non_null(strstr(fx->h.src.status, "handshake timeout"));
        testlib_run_for(&fx->h, 1000);
        assert_false(testlib_saw_state(&fx->h, 0, SOURCE_UP));
        /* It kept retrying. */
        assert_true(testlib_listener_drain(fx->listen_fd) >= 2);
        testlib_stop(&fx->h);
    }
}

/* The blocked XREAD is the liveness probe: with BLOCK 300 ms the source
 * stays UP across many empty XREADs, and a server that stops answering
 * is dropped within BLOCK + margin, then found again. */
static void test_xread_liveness(void **state)
{
    struct fixture *fx = *state;
    const char *keys[] = {"live"};
    size_t calls;
    int64_t stopped;

    setenv("SLUICE_REDIS_KEEPALIVE_MS", "300", 1);
    setenv("SLUICE_REDIS_HANDSHAKE_MS", "400", 1);
    redis_server_start(fx);
    start_reading(fx, keys, 1);
    calls = fx->h.nstates;
    testlib_run_for(&fx->h, 1500); /* five BLOCK timeouts */
    assert_int_equal(fx->h.src.state, SOURCE_UP);
    assert_int_equal(fx->h.nstates, calls);
    xadd_text(fx, "live", "still", NULL);
    assert_true(testlib_wait_msgs(&fx->h, 1, 1000));

    kill(fx->redis.pid, SIGSTOP);
    stopped = testlib_now_ms();
    assert_true(
        testlib_wait_status(&fx->h, SOURCE_DOWN, "to XREAD within", 2000));
    /* BLOCK may end, then the margin. */
    assert_true(testlib_now_ms() - stopped >= 150);
    testlib_run_for(&fx->h, 500); /* reconnects: TCP yes, answers no */
    assert_int_not_equal(fx->h.src.state, SOURCE_UP);
    kill(fx->redis.pid, SIGCONT);
    assert_true(testlib_wait_state(&fx->h, SOURCE_UP, 5000));
    assert_true(wait_blocked(fx));
    xadd_text(fx, "live", "again", NULL);
    assert_true(testlib_wait_msgs(&fx->h, 2, 1000));
    assert_string_equal(fx->h.msgs[1]->payload, "{\"n\":\"again\"}");
}

/* A key that is no stream: DOWN with the server's reason. */
static void test_wrong_type(void **state)
{
    struct fixture *fx = *state;
    const char *keys[] = {"plain"};
    redisReply *rep;

    redis_server_start(fx);
    rep = redisCommand(fx->client, "SET plain text");
    assert_non_null(rep);
    freeReplyObject(rep);
    keys_set(&fx->h.src.subs, keys, 1);
    url_set(fx, NULL);
    testlib_start(&fx->h); /* XREVRANGE fails */
    assert_true(testlib_wait_status(&fx->h, SOURCE_DOWN,
                                    "XREVRANGE failed: WRONGTYPE", 3000));
    testlib_stop(&fx->h);
    testlib_last_set(&fx->h, "plain", "1-0");
    testlib_start(&fx->h); /* XREAD fails */
    assert_true(testlib_wait_status(&fx->h, SOURCE_DOWN,
                                    "XREAD failed: WRONGTYPE", 3000));
}

/* ---- resubscribe and stop ----------------------------------------------- */

static void resubscribe(struct fixture *fx, const char *const *keys,
                        size_t n)
{
    struct subscriptions subs = {0};

    keys_set(&subs, keys, n);
    assert_int_equal(fx->h.src.ops->resubscribe(&fx->h.src, &subs), 0);
    assert_null(subs.exact.items); /* ownership taken */
}

static void test_resubscribe(void **state)
{
    struct fixture *fx = *state;
    const char *a[] = {"a"};
    const char *ab[] = {"a", "b"};
    const char *b[] = {"b"};
    size_t calls;

    setenv("SLUICE_REDIS_KEEPALIVE_MS", "500", 1);
    redis_server_start(fx);
    url_set(fx, NULL);
    resubscribe(fx, a, 1); /* before start: stored */
    testlib_start(&fx->h);
    assert_true(testlib_wait_state(&fx->h, SOURCE_UP, 3000));
    assert_true(wait_blocked(fx));

    /* b joins with the next XREAD; a's XADD ends the blocked one. */
    resubscribe(fx, ab, 2);
    xadd_text(fx, "a", "a1", NULL);
    assert_true(testlib_wait_msgs(&fx->h, 1, 3000));
    assert_true(wait_blocked(fx));
    xadd_text(fx, "b", "b1", NULL);
    assert_true(testlib_wait_msgs(&fx->h, 2, 3000));
    assert_string_equal(fx->h.msgs[1]->topic, "b");

    /* a leaves: its entries are no longer handed on. */
    resubscribe(fx, b, 1);
    xadd_text(fx, "a", "a2", NULL);
    testlib_run_for(&fx->h, 700); /* past one BLOCK */
    assert_true(wait_blocked(fx));
    xadd_text(fx, "b", "b2", NULL);
    assert_true(testlib_wait_msgs(&fx->h, 3, 3000));
    testlib_run_for(&fx->h, 100);
    assert_int_equal(fx->h.nmsgs, 3);
    assert_string_equal(fx->h.msgs[2]->payload, "{\"n\":\"b2\"}");

    /* Nothing to read: stays UP on PING keepalives. */
    resubscribe(fx, NULL, 0);
    testlib_run_for(&fx->h, 700);
    calls = fx->h.nstates;
    testlib_run_for(&fx->h, 1500);
    assert_int_equal(fx->h.src.state, SOURCE_UP);
    assert_int_equal(fx->h.nstates, calls);
    assert_int_equal(info_blocked_clients(fx), 0);

    /* And back: reading starts at once. */
    resubscribe(fx, b, 1);
    assert_true(wait_blocked(fx));
    xadd_text(fx, "b", "b3", NULL);
    assert_true(testlib_wait_msgs(&fx->h, 4, 3000));
    assert_string_equal(fx->h.msgs[3]->payload, "{\"n\":\"b3\"}");
}

static void test_stop(void **state)
{
    struct fixture *fx = *state;
    const char *keys[] = {"st"};
    int redis_port = fx->port;

    keys_set(&fx->h.src.subs, keys, 1);

    /* While a handshake is pending (AUTH unanswered). */
    fx->listen_fd = testlib_silent_listener(&fx->port);
    url_set(fx, ":pw");
    testlib_start(&fx->h);
    assert_true(testlib_wait_state(&fx->h, SOURCE_CONNECTING, 1000));
    testlib_expect_silence_after_stop(&fx->h);

    /* Right after start, before the TCP connect completes. */
    testlib_start(&fx->h);
    testlib_stop(&fx->h);

    /* While waiting to reconnect (nothing listens). */
    fx->port = redis_port;
    url_set(fx, NULL);
    testlib_start(&fx->h);
    testlib_run_for(&fx->h, 50);
    assert_int_equal(fx->h.src.state, SOURCE_DOWN);
    testlib_expect_silence_after_stop(&fx->h);

    /* While blocked in XREAD, with entries in flight. */
    redis_server_start(fx);
    start_reading(fx, keys, 1);
    xadd_text(fx, "st", "1", NULL);
    assert_true(testlib_wait_msgs(&fx->h, 1, 3000));
    xadd_text(fx, "st", "2", NULL);
    testlib_expect_silence_after_stop(&fx->h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_url_errors, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_entries_arrive, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_starts_at_new_entries,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_resume_from_last_id,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_resume_in_batches,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_refused_entry_advances,
                                        fixture_setup, fixture_teardown),
        cmocka_unit_test_setup_teardown(test_server_restart, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_handshake_timeout, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_xread_liveness, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_type, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_resubscribe, fixture_setup,
                                        fixture_teardown),
        cmocka_unit_test_setup_teardown(test_stop, fixture_setup,
                                        fixture_teardown),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
