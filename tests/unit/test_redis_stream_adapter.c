/*
 * test_redis_stream_adapter.c - tests for adapters/redis_stream.c (the
 * Redis Streams adapter) and, through it, adapters/redis_conn.c.
 *
 * The adapter runs on a real event_base against a real redis-server
 * started on a free loopback port, with a sink that records every
 * delivery and state change and whose last_entry_id answers from a table
 * the test fills in. Entries are added through a blocking hiredis
 * connection. Servers are killed in each test's teardown (which cmocka
 * runs also after a failed assertion) and, should this process die, by
 * the kernel (PR_SET_PDEATHSIG).
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

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "adapters/adapter.h"
#include "bridge/message.h"
#include "bridge/sse.h"

#define MAX_STATES 256
#define MAX_LAST 8
#define ID_MAX 64

struct recorded {
    char *topic;
    char *payload; /* NUL-terminated copy */
    size_t payload_len;
    char entry_id[ID_MAX];
    uint32_t source;
    enum source_type type;
};

/* What the fake sink's last_entry_id answers, per stream key. */
struct last_id {
    char key[64];
    char id[ID_MAX];
};

struct fixture {
    struct event_base *base;
    struct source_config cfg;
    struct source src;
    char url[256];

    struct recorded *msgs; /* grows */
    size_t nmsgs;
    size_t msgs_cap;
    int deliver_rc;        /* what sink_deliver returns */
    enum source_state states[MAX_STATES];
    size_t nstates;
    struct last_id last[MAX_LAST];
    size_t nlast;
    size_t last_calls;     /* last_entry_id calls */

    pid_t redis_pid;       /* -1: none */
    int port;              /* of the redis-server or the silent listener */
    int listen_fd;         /* the silent listener, or -1 */
    redisContext *client;  /* for XADD and inspection; NULL: none */
};

/* ---- the sink ----------------------------------------------------------- */

static int sink_deliver(void *ctx, struct source *src, struct message *msg)
{
    struct fixture *fx = ctx;
    struct recorded *rec;

    assert_ptr_equal(src, &fx->src);
    if (fx->nmsgs == fx->msgs_cap) {
        fx->msgs_cap = fx->msgs_cap ? fx->msgs_cap * 2 : 64;
        fx->msgs = realloc(fx->msgs, fx->msgs_cap * sizeof(*fx->msgs));
        assert_non_null(fx->msgs);
    }
    rec = &fx->msgs[fx->nmsgs++];
    rec->topic = strndup(msg->topic, msg->topic_len);
    rec->payload = malloc(msg->payload_len + 1);
    assert_non_null(rec->topic);
    assert_non_null(rec->payload);
    memcpy(rec->payload, msg->payload, msg->payload_len);
    rec->payload[msg->payload_len] = '\0';
    rec->payload_len = msg->payload_len;
    assert_non_null(msg->stream_entry_id);
    snprintf(rec->entry_id, sizeof(rec->entry_id), "%s",
             msg->stream_entry_id);
    rec->source = msg->source;
    rec->type = msg->type;
    message_unref(msg);
    return fx->deliver_rc;
}

static void sink_state_changed(void *ctx, struct source *src)
{
    struct fixture *fx = ctx;

    assert_ptr_equal(src, &fx->src);
    assert_true(fx->nstates < MAX_STATES);
    fx->states[fx->nstates++] = src->state;
}

static int sink_last_entry_id(void *ctx, struct source *src, const char *key,
                              char *out, size_t outlen)
{
    struct fixture *fx = ctx;

    assert_ptr_equal(src, &fx->src);
    fx->last_calls++;
    for (size_t i = 0; i < fx->nlast; i++) {
        if (strcmp(fx->last[i].key, key) == 0) {
            snprintf(out, outlen, "%s", fx->last[i].id);
            return 1;
        }
    }
    return 0;
}

static void last_set(struct fixture *fx, const char *key, const char *id)
{
    assert_true(fx->nlast < MAX_LAST);
    snprintf(fx->last[fx->nlast].key, sizeof(fx->last[0].key), "%s", key);
    snprintf(fx->last[fx->nlast].id, sizeof(fx->last[0].id), "%s", id);
    fx->nlast++;
}

static void fixture_forget_msgs(struct fixture *fx)
{
    for (size_t i = 0; i < fx->nmsgs; i++) {
        free(fx->msgs[i].topic);
        free(fx->msgs[i].payload);
    }
    fx->nmsgs = 0;
}

/* ---- processes and sockets ---------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

/* A loopback socket bound to a free port; *port receives the port. */
static int bound_socket(int *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

static int free_port(void)
{
    int port;

    close(bound_socket(&port));
    return port;
}

static bool port_accepts(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bool ok;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

/* Starts redis-server on fx->port, waits until it accepts connections,
 * and opens fx->client to it. */
static void redis_server_start(struct fixture *fx)
{
    char port[16];
    const char *argv[] = {"redis-server", "--bind", "127.0.0.1", "--port",
                          port, "--save", "", "--appendonly", "no", NULL};
    pid_t pid;

    snprintf(port, sizeof(port), "%d", fx->port);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        execvp("redis-server", (char **)argv);
        _exit(127);
    }
    fx->redis_pid = pid;
    for (int64_t end = now_ms() + 5000; !port_accepts(fx->port);) {
        assert_true(now_ms() < end);
        assert_int_equal(waitpid(pid, NULL, WNOHANG), 0); /* still alive */
        sleep_ms(10);
    }
    fx->client = redisConnect("127.0.0.1", fx->port);
    assert_non_null(fx->client);
    assert_int_equal(fx->client->err, 0);
}

static void redis_server_kill(struct fixture *fx)
{
    if (fx->client)
        redisFree(fx->client);
    fx->client = NULL;
    if (fx->redis_pid <= 0)
        return;
    kill(fx->redis_pid, SIGCONT); /* in case a test stopped it */
    kill(fx->redis_pid, SIGKILL);
    waitpid(fx->redis_pid, NULL, 0);
    fx->redis_pid = -1;
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

/* ---- driving the loop --------------------------------------------------- */

/* Runs the loop for about ms milliseconds. */
static void run_for(struct fixture *fx, int ms)
{
    struct timeval tv = {ms / 1000, (suseconds_t)(ms % 1000) * 1000};

    event_base_loopexit(fx->base, &tv);
    event_base_dispatch(fx->base);
}

static bool wait_state(struct fixture *fx, enum source_state state, int ms)
{
    for (int64_t end = now_ms() + ms; fx->src.state != state;) {
        if (now_ms() >= end)
            return false;
        run_for(fx, 10);
    }
    return true;
}

/* Waits for `state` with a status containing `needle`. */
static bool wait_status(struct fixture *fx, enum source_state state,
                        const char *needle, int ms)
{
    for (int64_t end = now_ms() + ms;
         fx->src.state != state || !strstr(fx->src.status, needle);) {
        if (now_ms() >= end)
            return false;
        run_for(fx, 10);
    }
    return true;
}

static bool wait_msgs(struct fixture *fx, size_t n, int ms)
{
    for (int64_t end = now_ms() + ms; fx->nmsgs < n;) {
        if (now_ms() >= end)
            return false;
        run_for(fx, 10);
    }
    return true;
}

/* Runs the loop until the adapter's XREAD blocks in the server: from then
 * on an XADD is read from the position that XREAD holds. */
static bool wait_blocked(struct fixture *fx)
{
    for (int64_t end = now_ms() + 3000; now_ms() < end; run_for(fx, 10))
        if (info_blocked_clients(fx) == 1)
            return true;
    return false;
}

/* ---- the source under test ---------------------------------------------- */

static void keys_set(struct subscriptions *subs, const char *const *keys,
                     size_t n)
{
    subscriptions_free(subs);
    subs->exact.items = calloc(n ? n : 1, sizeof(*subs->exact.items));
    assert_non_null(subs->exact.items);
    for (size_t i = 0; i < n; i++) {
        subs->exact.items[i] = strdup(keys[i]);
        assert_non_null(subs->exact.items[i]);
    }
    subs->exact.count = n;
}

static void url_set(struct fixture *fx, const char *userinfo)
{
    snprintf(fx->url, sizeof(fx->url), "redis://%s%s127.0.0.1:%d",
             userinfo ? userinfo : "", userinfo ? "@" : "", fx->port);
}

static void source_start(struct fixture *fx)
{
    char why[256] = "";

    assert_int_equal(fx->src.ops->start(&fx->src, why, sizeof(why)), 0);
    assert_non_null(fx->src.impl);
}

static void source_stop(struct fixture *fx)
{
    fx->src.ops->stop(&fx->src);
    assert_null(fx->src.impl);
}

/* Starts the source on `keys` against the running server and waits until
 * its XREAD blocks. */
static void start_reading(struct fixture *fx, const char *const *keys,
                          size_t n)
{
    keys_set(&fx->src.subs, keys, n);
    url_set(fx, NULL);
    source_start(fx);
    assert_true(wait_state(fx, SOURCE_UP, 3000));
    assert_true(wait_blocked(fx));
}

static int fixture_setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));

    assert_non_null(fx);
    unsetenv("SLUICE_REDIS_HANDSHAKE_MS");
    unsetenv("SLUICE_REDIS_KEEPALIVE_MS");
    fx->base = event_base_new();
    assert_non_null(fx->base);
    fx->cfg.name = "audit";
    fx->cfg.type = SOURCE_REDIS_STREAM;
    fx->cfg.url = fx->url;
    fx->src.ops = &redis_stream_adapter_ops;
    fx->src.cfg = &fx->cfg;
    fx->src.index = 2;
    fx->src.base = fx->base;
    fx->src.sink.deliver = sink_deliver;
    fx->src.sink.state_changed = sink_state_changed;
    fx->src.sink.last_entry_id = sink_last_entry_id;
    fx->src.sink.ctx = fx;
    fx->redis_pid = -1;
    fx->listen_fd = -1;
    fx->port = free_port();
    *state = fx;
    return 0;
}

static int fixture_teardown(void **state)
{
    struct fixture *fx = *state;

    fx->src.ops->stop(&fx->src);
    subscriptions_free(&fx->src.subs);
    redis_server_kill(fx);
    if (fx->listen_fd >= 0)
        close(fx->listen_fd);
    fixture_forget_msgs(fx);
    free(fx->msgs);
    event_base_free(fx->base);
    free(fx);
    return 0;
}

static bool states_contain(const struct fixture *fx, size_t from,
                           enum source_state state)
{
    for (size_t i = from; i < fx->nstates; i++)
        if (fx->states[i] == state)
            return true;
    return false;
}

static void expect_rec(const struct recorded *rec, const char *topic,
                       const char *entry_id, const char *payload)
{
    assert_string_equal(rec->topic, topic);
    assert_string_equal(rec->entry_id, entry_id);
    assert_int_equal(rec->payload_len, strlen(payload));
    assert_string_equal(rec->payload, payload);
    assert_true(sse_json_valid(rec->payload, rec->payload_len));
}

static void assert_msg(const struct fixture *fx, size_t i, const char *topic,
                       const char *entry_id, const char *payload)
{
    assert_true(i < fx->nmsgs);
    expect_rec(&fx->msgs[i], topic, entry_id, payload);
}

/* The n-th (0-based) recorded message whose topic is key. */
static const struct recorded *nth_of(const struct fixture *fx,
                                     const char *key, size_t n)
{
    size_t seen = 0;

    for (size_t i = 0; i < fx->nmsgs; i++)
        if (strcmp(fx->msgs[i].topic, key) == 0 && seen++ == n)
            return &fx->msgs[i];
    fail_msg("no message %zu on %s", n, key);
    return NULL;
}

/* ---- configuration ------------------------------------------------------ */

static void test_url_errors(void **state)
{
    struct fixture *fx = *state;
    char why[256] = "";

    snprintf(fx->url, sizeof(fx->url), "rediss://:hunter2@example.net");
    assert_int_equal(fx->src.ops->start(&fx->src, why, sizeof(why)), -1);
    assert_null(fx->src.impl);
    assert_non_null(strstr(why, "TLS"));
    snprintf(fx->url, sizeof(fx->url), "redis://:hunter2@example.net/x");
    assert_int_equal(fx->src.ops->start(&fx->src, why, sizeof(why)), -1);
    assert_non_null(strstr(why, "/DB"));
    assert_null(strstr(why, "hunter2"));
    assert_int_equal(fx->nstates, 0); /* a failed start reports nothing */
    source_stop(fx);                  /* never started: fine */
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
    assert_int_equal(fx->nstates, 3);
    assert_int_equal(fx->states[0], SOURCE_DOWN);
    assert_int_equal(fx->states[1], SOURCE_CONNECTING);
    assert_int_equal(fx->states[2], SOURCE_UP);
    assert_int_equal(fx->last_calls, 2); /* asked once per distinct key */

    xadd(fx, "s1", "name", "alice", 5, "n", "1", 1, id[0]);
    xadd(fx, "s2", "bin", binary, sizeof(binary), "text", "hi", 2, id[1]);
    xadd(fx, "s1", "q", nul, sizeof(nul) - 1, "\xc3\xa9", "\xc3\xbc", 2,
         id[2]);
    xadd(fx, "s2", "empty", "", 0, NULL, NULL, 0, id[3]);
    assert_true(wait_msgs(fx, 4, 3000));
    run_for(fx, 100);
    assert_int_equal(fx->nmsgs, 4);

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
    for (size_t i = 0; i < fx->nmsgs; i++) {
        assert_int_equal(fx->msgs[i].source, 2);
        assert_int_equal(fx->msgs[i].type, SOURCE_REDIS_STREAM);
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
    last_set(fx, "bad", "not-an-id"); /* ignored: like no id at all */
    start_reading(fx, keys, 3);
    run_for(fx, 200);
    assert_int_equal(fx->nmsgs, 0);

    xadd_text(fx, "later", "created", id[0]);
    xadd_text(fx, "old", "after", id[1]);
    xadd_text(fx, "bad", "after", NULL);
    assert_true(wait_msgs(fx, 3, 3000));
    run_for(fx, 100);
    assert_int_equal(fx->nmsgs, 3);
    assert_string_equal(nth_of(fx, "later", 0)->entry_id, id[0]);
    assert_string_equal(nth_of(fx, "old", 0)->entry_id, id[1]);
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
    assert_true(wait_msgs(fx, 3, 3000));
    source_stop(fx);
    for (int i = 3; i < 6; i++) {
        snprintf(text, sizeof(text), "e%d", i + 1);
        xadd_text(fx, "audit", text, id[i]);
    }
    fixture_forget_msgs(fx);

    last_set(fx, "audit", id[2]);
    source_start(fx);
    assert_true(wait_msgs(fx, 3, 3000));
    run_for(fx, 200);
    assert_int_equal(fx->nmsgs, 3);
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
    last_set(fx, "big", "0-0");
    start_reading(fx, keys, 1);
    assert_true(wait_msgs(fx, n, 5000));
    run_for(fx, 100);
    assert_int_equal(fx->nmsgs, n);
    assert_string_equal(fx->msgs[0].entry_id, first);
    assert_string_equal(fx->msgs[n - 1].entry_id, last);
    for (size_t i = 0; i < n; i++) {
        snprintf(text, sizeof(text), "{\"n\":\"%zu\"}", i);
        assert_string_equal(fx->msgs[i].payload, text);
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
    fx->deliver_rc = -1;
    xadd_text(fx, "r", "x1", id[0]);
    xadd_text(fx, "r", "x2", id[1]);
    assert_true(wait_msgs(fx, 2, 3000));
    run_for(fx, 300);
    assert_int_equal(fx->nmsgs, 2);

    last_set(fx, "r", id[0]); /* the history stored only x1 */
    rep = redisCommand(fx->client, "CLIENT KILL TYPE normal SKIPME yes");
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
    assert_int_equal(rep->integer, 1);
    freeReplyObject(rep);
    assert_true(wait_status(fx, SOURCE_DOWN, "lost", 3000));
    assert_true(wait_state(fx, SOURCE_UP, 3000));
    assert_true(wait_blocked(fx));
    fx->deliver_rc = 0;
    xadd_text(fx, "r", "x3", id[2]);
    assert_true(wait_msgs(fx, 3, 3000));
    run_for(fx, 200);
    assert_int_equal(fx->nmsgs, 3);
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
    assert_true(wait_msgs(fx, 1, 3000));

    before = fx->nstates;
    redis_server_kill(fx);
    assert_true(wait_status(fx, SOURCE_DOWN, "lost", 3000));
    run_for(fx, 300); /* a few refused reconnects */
    assert_int_equal(fx->src.state, SOURCE_DOWN);

    redis_server_start(fx); /* the loop does not run meanwhile */
    xadd_text(fx, "s", "while-down-1", id[1]);
    xadd_text(fx, "s", "while-down-2", id[2]);
    assert_true(wait_state(fx, SOURCE_UP, 5000));
    assert_true(states_contain(fx, before, SOURCE_CONNECTING));
    assert_true(wait_msgs(fx, 3, 3000));
    assert_true(wait_blocked(fx));
    xadd_text(fx, "s", "after", id[3]);
    assert_true(wait_msgs(fx, 4, 3000));
    run_for(fx, 100);
    assert_int_equal(fx->nmsgs, 4);
    assert_msg(fx, 0, "s", id[0], "{\"n\":\"first\"}");
    assert_msg(fx, 1, "s", id[1], "{\"n\":\"while-down-1\"}");
    assert_msg(fx, 2, "s", id[2], "{\"n\":\"while-down-2\"}");
    assert_msg(fx, 3, "s", id[3], "{\"n\":\"after\"}");
}

/* A socket that listens and never reads: TCP connects, nothing answers. */
static void silent_listener(struct fixture *fx)
{
    fx->listen_fd = bound_socket(&fx->port);
    assert_int_equal(listen(fx->listen_fd, 64), 0);
}

/* Accepts (and closes) every pending connection; returns how many. */
static int drain_listener(struct fixture *fx)
{
    int n = 0;
    int fd;

    fcntl(fx->listen_fd, F_SETFL, O_NONBLOCK);
    while ((fd = accept(fx->listen_fd, NULL, NULL)) >= 0) {
        close(fd);
        n++;
    }
    return n;
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
    silent_listener(fx);
    keys_set(&fx->src.subs, keys, 1);
    for (size_t i = 0; i < 2; i++) {
        url_set(fx, userinfo[i]);
        fx->nstates = 0;
        start = now_ms();
        source_start(fx);
        assert_true(wait_state(fx, SOURCE_CONNECTING, 1000));
        assert_true(wait_state(fx, SOURCE_DOWN, 2000));
        assert_true(now_ms() - start >= 250);
        assert_non_null(strstr(fx->src.status, "handshake timeout"));
        run_for(fx, 1000);
        assert_false(states_contain(fx, 0, SOURCE_UP));
        assert_true(drain_listener(fx) >= 2); /* it kept retrying */
        source_stop(fx);
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
    calls = fx->nstates;
    run_for(fx, 1500); /* five BLOCK timeouts */
    assert_int_equal(fx->src.state, SOURCE_UP);
    assert_int_equal(fx->nstates, calls);
    xadd_text(fx, "live", "still", NULL);
    assert_true(wait_msgs(fx, 1, 1000));

    kill(fx->redis_pid, SIGSTOP);
    stopped = now_ms();
    assert_true(wait_status(fx, SOURCE_DOWN, "to XREAD within", 2000));
    assert_true(now_ms() - stopped >= 150); /* BLOCK may end, then margin */
    run_for(fx, 500); /* reconnects: TCP yes, answers no */
    assert_int_not_equal(fx->src.state, SOURCE_UP);
    kill(fx->redis_pid, SIGCONT);
    assert_true(wait_state(fx, SOURCE_UP, 5000));
    assert_true(wait_blocked(fx));
    xadd_text(fx, "live", "again", NULL);
    assert_true(wait_msgs(fx, 2, 1000));
    assert_string_equal(fx->msgs[1].payload, "{\"n\":\"again\"}");
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
    keys_set(&fx->src.subs, keys, 1);
    url_set(fx, NULL);
    source_start(fx); /* XREVRANGE fails */
    assert_true(wait_status(fx, SOURCE_DOWN, "XREVRANGE failed: WRONGTYPE",
                            3000));
    source_stop(fx);
    last_set(fx, "plain", "1-0");
    source_start(fx); /* XREAD fails */
    assert_true(wait_status(fx, SOURCE_DOWN, "XREAD failed: WRONGTYPE",
                            3000));
}

/* ---- resubscribe and stop ----------------------------------------------- */

static void resubscribe(struct fixture *fx, const char *const *keys,
                        size_t n)
{
    struct subscriptions subs = {0};

    keys_set(&subs, keys, n);
    assert_int_equal(fx->src.ops->resubscribe(&fx->src, &subs), 0);
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
    source_start(fx);
    assert_true(wait_state(fx, SOURCE_UP, 3000));
    assert_true(wait_blocked(fx));

    /* b joins with the next XREAD; a's XADD ends the blocked one. */
    resubscribe(fx, ab, 2);
    xadd_text(fx, "a", "a1", NULL);
    assert_true(wait_msgs(fx, 1, 3000));
    assert_true(wait_blocked(fx));
    xadd_text(fx, "b", "b1", NULL);
    assert_true(wait_msgs(fx, 2, 3000));
    assert_string_equal(fx->msgs[1].topic, "b");

    /* a leaves: its entries are no longer handed on. */
    resubscribe(fx, b, 1);
    xadd_text(fx, "a", "a2", NULL);
    run_for(fx, 700); /* past one BLOCK */
    assert_true(wait_blocked(fx));
    xadd_text(fx, "b", "b2", NULL);
    assert_true(wait_msgs(fx, 3, 3000));
    run_for(fx, 100);
    assert_int_equal(fx->nmsgs, 3);
    assert_string_equal(fx->msgs[2].payload, "{\"n\":\"b2\"}");

    /* Nothing to read: stays UP on PING keepalives. */
    resubscribe(fx, NULL, 0);
    run_for(fx, 700);
    calls = fx->nstates;
    run_for(fx, 1500);
    assert_int_equal(fx->src.state, SOURCE_UP);
    assert_int_equal(fx->nstates, calls);
    assert_int_equal(info_blocked_clients(fx), 0);

    /* And back: reading starts at once. */
    resubscribe(fx, b, 1);
    assert_true(wait_blocked(fx));
    xadd_text(fx, "b", "b3", NULL);
    assert_true(wait_msgs(fx, 4, 3000));
    assert_string_equal(fx->msgs[3].payload, "{\"n\":\"b3\"}");
}

/* After stop: no sink call, whatever the loop still runs. */
static void expect_silence_after_stop(struct fixture *fx)
{
    size_t calls, msgs;

    source_stop(fx);
    source_stop(fx); /* idempotent */
    calls = fx->nstates;
    msgs = fx->nmsgs;
    run_for(fx, 300);
    assert_int_equal(fx->nstates, calls);
    assert_int_equal(fx->nmsgs, msgs);
}

static void test_stop(void **state)
{
    struct fixture *fx = *state;
    const char *keys[] = {"st"};
    int redis_port = fx->port;

    keys_set(&fx->src.subs, keys, 1);

    /* While a handshake is pending (AUTH unanswered). */
    silent_listener(fx);
    url_set(fx, ":pw");
    source_start(fx);
    assert_true(wait_state(fx, SOURCE_CONNECTING, 1000));
    expect_silence_after_stop(fx);

    /* Right after start, before the TCP connect completes. */
    source_start(fx);
    source_stop(fx);

    /* While waiting to reconnect (nothing listens). */
    fx->port = redis_port;
    url_set(fx, NULL);
    source_start(fx);
    run_for(fx, 50);
    assert_int_equal(fx->src.state, SOURCE_DOWN);
    expect_silence_after_stop(fx);

    /* While blocked in XREAD, with entries in flight. */
    redis_server_start(fx);
    start_reading(fx, keys, 1);
    xadd_text(fx, "st", "1", NULL);
    assert_true(wait_msgs(fx, 1, 3000));
    xadd_text(fx, "st", "2", NULL);
    expect_silence_after_stop(fx);
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
