/*
 * test_redis_adapter.c - tests for adapters/adapter.c (state, backoff,
 * type table) and adapters/redis.c (the Redis pub/sub adapter).
 *
 * The redis tests run the adapter on a real event_base against a real
 * redis-server started on a free loopback port, with a sink that records
 * every delivery and state change, and publish through a blocking hiredis
 * connection. Servers are killed in each test's teardown (which cmocka runs
 * also after a failed assertion) and, should this process die, by the
 * kernel (PR_SET_PDEATHSIG).
 *
 * Timing knobs: SLUICE_REDIS_HANDSHAKE_MS and SLUICE_REDIS_KEEPALIVE_MS are
 * set by the tests that need short timeouts, unset by every setup.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
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

#define MAX_MSGS 64
#define MAX_STATES 256

struct recorded {
    char *topic;
    size_t topic_len;
    char *payload;
    size_t payload_len;
    uint32_t source;
    enum source_type type;
};

struct fixture {
    struct event_base *base;
    struct source_config cfg;
    struct source src;
    char url[256];

    struct recorded msgs[MAX_MSGS];
    size_t nmsgs;
    enum source_state states[MAX_STATES];
    size_t nstates;          /* state_changed calls */

    pid_t redis_pid;         /* -1: none */
    int port;                /* of the redis-server or the silent listener */
    int listen_fd;           /* the silent listener, or -1 */
};

/* ---- the sink ------------------------------------------------------------ */

static int sink_deliver(void *ctx, struct source *src, struct message *msg)
{
    struct fixture *fx = ctx;
    struct recorded *rec;

    assert_ptr_equal(src, &fx->src);
    assert_true(fx->nmsgs < MAX_MSGS);
    rec = &fx->msgs[fx->nmsgs++];
    rec->topic = malloc(msg->topic_len + 1);
    rec->payload = malloc(msg->payload_len + 1);
    assert_non_null(rec->topic);
    assert_non_null(rec->payload);
    memcpy(rec->topic, msg->topic, msg->topic_len + 1);
    memcpy(rec->payload, msg->payload, msg->payload_len);
    rec->topic_len = msg->topic_len;
    rec->payload_len = msg->payload_len;
    rec->source = msg->source;
    rec->type = msg->type;
    message_unref(msg);
    return 0;
}

static void sink_state_changed(void *ctx, struct source *src)
{
    struct fixture *fx = ctx;

    assert_ptr_equal(src, &fx->src);
    assert_true(fx->nstates < MAX_STATES);
    fx->states[fx->nstates++] = src->state;
}

static void fixture_forget_msgs(struct fixture *fx)
{
    for (size_t i = 0; i < fx->nmsgs; i++) {
        free(fx->msgs[i].topic);
        free(fx->msgs[i].payload);
    }
    fx->nmsgs = 0;
}

/* ---- processes and sockets ------------------------------------------------ */

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

/* Starts redis-server on fx->port (requirepass when password is set) and
 * waits until it accepts connections. */
static void redis_server_start(struct fixture *fx, const char *password)
{
    char port[16];
    const char *argv[16] = {"redis-server", "--bind", "127.0.0.1", "--port",
                            port, "--save", "", "--appendonly", "no"};
    int argc = 9;
    pid_t pid;

    snprintf(port, sizeof(port), "%d", fx->port);
    if (password) {
        argv[argc++] = "--requirepass";
        argv[argc++] = password;
    }
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
}

static void redis_server_kill(struct fixture *fx)
{
    if (fx->redis_pid <= 0)
        return;
    kill(fx->redis_pid, SIGCONT); /* in case a test stopped it */
    kill(fx->redis_pid, SIGKILL);
    waitpid(fx->redis_pid, NULL, 0);
    fx->redis_pid = -1;
}

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

/* ---- driving the loop ------------------------------------------------------ */

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

/* ---- the source under test --------------------------------------------------- */

static void strv_set(struct config_strv *v, const char *const *names,
                     size_t n)
{
    v->items = calloc(n ? n : 1, sizeof(*v->items));
    assert_non_null(v->items);
    for (size_t i = 0; i < n; i++) {
        v->items[i] = strdup(names[i]);
        assert_non_null(v->items[i]);
    }
    v->pos = NULL;
    v->count = n;
}

static void subs_set(struct subscriptions *subs, const char *const *exact,
                     size_t nexact, const char *const *patterns,
                     size_t npatterns)
{
    subscriptions_free(subs);
    strv_set(&subs->exact, exact, nexact);
    strv_set(&subs->patterns, patterns, npatterns);
}

static void url_set(struct fixture *fx, const char *userinfo,
                    const char *path)
{
    snprintf(fx->url, sizeof(fx->url), "redis://%s%s127.0.0.1:%d%s",
             userinfo ? userinfo : "", userinfo ? "@" : "", fx->port,
             path ? path : "");
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

static int fixture_setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));

    assert_non_null(fx);
    unsetenv("SLUICE_REDIS_HANDSHAKE_MS");
    unsetenv("SLUICE_REDIS_KEEPALIVE_MS");
    fx->base = event_base_new();
    assert_non_null(fx->base);
    fx->cfg.name = "cache";
    fx->cfg.type = SOURCE_REDIS;
    fx->cfg.url = fx->url;
    fx->src.ops = &redis_adapter_ops;
    fx->src.cfg = &fx->cfg;
    fx->src.index = 3;
    fx->src.base = fx->base;
    fx->src.sink.deliver = sink_deliver;
    fx->src.sink.state_changed = sink_state_changed;
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

static void assert_msg(const struct fixture *fx, size_t i, const char *topic,
                       const void *payload, size_t len)
{
    const struct recorded *rec = &fx->msgs[i];

    assert_true(i < fx->nmsgs);
    assert_string_equal(rec->topic, topic);
    assert_int_equal(rec->topic_len, strlen(topic));
    assert_int_equal(rec->payload_len, len);
    assert_memory_equal(rec->payload, payload, len);
}

/* ---- adapter.c ----------------------------------------------------------------- */

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

    source_set_state(&fx->src, SOURCE_DOWN, "refused");
    assert_int_equal(fx->nstates, 1);
    assert_string_equal(fx->src.status, "refused");
    source_set_state(&fx->src, SOURCE_DOWN, "refused"); /* no change */
    assert_int_equal(fx->nstates, 1);
    source_set_state(&fx->src, SOURCE_DOWN, "lost"); /* text changed */
    assert_int_equal(fx->nstates, 2);
    source_set_state(&fx->src, SOURCE_UP, NULL);
    assert_int_equal(fx->nstates, 3);
    assert_int_equal(fx->states[2], SOURCE_UP);
    assert_string_equal(fx->src.status, "");
    source_set_state(&fx->src, SOURCE_UP, "");
    assert_int_equal(fx->nstates, 3);

    memset(longtext, 'x', sizeof(longtext) - 1);
    longtext[sizeof(longtext) - 1] = '\0';
    source_set_state(&fx->src, SOURCE_DOWN, longtext);
    assert_int_equal(strlen(fx->src.status), sizeof(fx->src.status) - 1);
    source_set_state(&fx->src, SOURCE_DOWN, longtext); /* same once cut */
    assert_int_equal(fx->nstates, 4);

    fx->src.sink.state_changed = NULL; /* optional callback */
    source_set_state(&fx->src, SOURCE_CONNECTING, NULL);
    assert_int_equal(fx->src.state, SOURCE_CONNECTING);
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

/* ---- redis: configuration errors ------------------------------------------------- */

static void expect_start_error(struct fixture *fx, const char *url,
                               const char *needle)
{
    char why[256] = "";

    snprintf(fx->url, sizeof(fx->url), "%s", url);
    assert_int_equal(fx->src.ops->start(&fx->src, why, sizeof(why)), -1);
    assert_null(fx->src.impl);
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
    expect_start_error(fx, "redis://:hunter2@example.net:99999", "malformed");
    expect_start_error(fx, "redis://:hunter2@example.net/abc", "/DB");
    expect_start_error(fx, "redis://:hunter2@example.net/1x", "/DB");
    expect_start_error(fx, "redis://:hunter2@example.net/0?x=1", "query");
    expect_start_error(fx, "redis://:hunter2@", "host");
    expect_start_error(fx, "redis://:hunter2%00x@example.net", "%00");
    assert_int_equal(fx->nstates, 0); /* a failed start reports nothing */

    /* The Streams adapter shares the URL parser (redis_conn.c). */
    fx->src.ops = &redis_stream_adapter_ops;
    snprintf(fx->url, sizeof(fx->url), "rediss://:hunter2@example.net");
    assert_int_equal(fx->src.ops->start(&fx->src, why, sizeof(why)), -1);
    assert_null(fx->src.impl);
    assert_non_null(strstr(why, "rediss:// (TLS)"));
    fx->src.ops = &redis_adapter_ops;
}

/* ---- redis: delivery ----------------------------------------------------------------- */

static void test_subscribe_and_psubscribe(void **state)
{
    struct fixture *fx = *state;
    const char *exact[] = {"news"};
    const char *patterns[] = {"alerts:*"};
    const char binary[] = {'a', '\0', 'b', (char)0xff, (char)0xfe, '\n'};
    redisContext *pub;

    redis_server_start(fx, NULL);
    subs_set(&fx->src.subs, exact, 1, patterns, 1);
    url_set(fx, NULL, NULL);
    source_start(fx);
    assert_true(wait_state(fx, SOURCE_UP, 3000));
    /* DOWN ("connecting"), CONNECTING, UP: in that order, each once. */
    assert_int_equal(fx->nstates, 3);
    assert_int_equal(fx->states[0], SOURCE_DOWN);
    assert_int_equal(fx->states[1], SOURCE_CONNECTING);
    assert_int_equal(fx->states[2], SOURCE_UP);
    assert_string_equal(fx->src.status, "");

    pub = redis_client(fx, NULL);
    assert_int_equal(publish(pub, "news", binary, sizeof(binary)), 1);
    assert_int_equal(publish(pub, "other", "x", 1), 0);
    assert_int_equal(publish(pub, "alerts:fire", "hot", 3), 1);
    assert_int_equal(publish(pub, "news", "", 0), 1);
    redisFree(pub);

    assert_true(wait_msgs(fx, 3, 3000));
    run_for(fx, 100);
    assert_int_equal(fx->nmsgs, 3);
    assert_msg(fx, 0, "news", binary, sizeof(binary));
    assert_msg(fx, 1, "alerts:fire", "hot", 3);
    assert_msg(fx, 2, "news", "", 0);
    assert_int_equal(fx->msgs[0].source, 3);
    assert_int_equal(fx->msgs[0].type, SOURCE_REDIS);
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

    redis_server_start(fx, NULL);
    subs_set(&fx->src.subs, exact, 1, patterns, 5);
    url_set(fx, NULL, NULL);
    source_start(fx);
    assert_true(wait_state(fx, SOURCE_UP, 3000));

    pub = redis_client(fx, NULL);
    /* Redis really sends several copies: its receiver count says so. */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(publish(pub, sent[i].channel, sent[i].payload,
                                 strlen(sent[i].payload)),
                         sent[i].receivers);
    redisFree(pub);

    assert_true(wait_msgs(fx, n, 3000));
    run_for(fx, 200);
    assert_int_equal(fx->nmsgs, n);
    for (size_t i = 0; i < n; i++)
        assert_msg(fx, i, sent[i].channel, sent[i].payload,
                   strlen(sent[i].payload));
}

/* ---- redis: AUTH and SELECT --------------------------------------------------------------- */

/* Captures this process's stderr (where the log goes) into a temp file. */
struct capture {
    FILE *file;
    int saved;
};

static void capture_start(struct capture *cap)
{
    fflush(stderr);
    cap->file = tmpfile();
    assert_non_null(cap->file);
    cap->saved = dup(STDERR_FILENO);
    dup2(fileno(cap->file), STDERR_FILENO);
}

/* Restores stderr; returns what was logged (caller frees). */
static char *capture_end(struct capture *cap)
{
    long len;
    char *text;

    fflush(stderr);
    dup2(cap->saved, STDERR_FILENO);
    close(cap->saved);
    len = ftell(cap->file);
    rewind(cap->file);
    text = calloc(1, (size_t)len + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)len, cap->file), (size_t)len);
    fclose(cap->file);
    fputs(text, stderr); /* keep the log visible */
    return text;
}

static void restart_with(struct fixture *fx, const char *userinfo,
                         const char *path)
{
    source_stop(fx);
    url_set(fx, userinfo, path);
    source_start(fx);
}

static void test_auth(void **state)
{
    struct fixture *fx = *state;
    const char *exact[] = {"secure"};
    const char *password = "s3cr3t/p@ss";
    char needle[64];
    struct capture cap;
    redisContext *admin;
    redisReply *rep;
    bool up, bare_up, alice_up, wrong, noauth;
    long long receivers;
    char *log;

    redis_server_start(fx, password);
    subs_set(&fx->src.subs, exact, 1, NULL, 0);
    admin = redis_client(fx, password);
    rep = redisCommand(admin, "ACL SETUSER alice on >alicepw ~* &* +@all");
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_STATUS);
    freeReplyObject(rep);

    /* Everything logged from here is checked for secrets below; the
     * asserts wait until stderr is restored. */
    capture_start(&cap);
    /* The right password, %-encoded as a URL needs it. */
    url_set(fx, ":s3cr3t%2Fp%40ss", NULL);
    source_start(fx);
    up = wait_state(fx, SOURCE_UP, 3000);
    receivers = publish(admin, "secure", "ok", 2);
    wait_msgs(fx, 1, 3000);
    /* A bare userinfo is the password (as redis-cli reads it). */
    restart_with(fx, "s3cr3t%2Fp%40ss", NULL);
    bare_up = wait_state(fx, SOURCE_UP, 3000);
    /* An ACL user. */
    restart_with(fx, "alice:alicepw", NULL);
    alice_up = wait_state(fx, SOURCE_UP, 3000);
    /* A wrong password: DOWN with the server's reason. */
    restart_with(fx, "alice:wrongpass", NULL);
    wrong = wait_status(fx, SOURCE_DOWN, "AUTH failed: WRONGPASS", 3000) &&
            !strstr(fx->src.status, "wrongpass");
    /* No password for a server that wants one. */
    restart_with(fx, NULL, NULL);
    noauth = wait_status(fx, SOURCE_DOWN, "NOAUTH", 3000);
    source_stop(fx);
    log = capture_end(&cap);

    assert_true(up);
    assert_int_equal(receivers, 1);
    assert_int_equal(fx->nmsgs, 1);
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

    redis_server_start(fx, NULL);
    subs_set(&fx->src.subs, exact, 1, NULL, 0);
    url_set(fx, NULL, "/3");
    source_start(fx);
    assert_true(wait_state(fx, SOURCE_UP, 3000));
    pub = redis_client(fx, NULL);
    assert_int_equal(publish(pub, "db", "3", 1), 1);
    redisFree(pub);
    assert_true(wait_msgs(fx, 1, 3000));

    restart_with(fx, NULL, "/99");
    assert_true(wait_status(fx, SOURCE_DOWN, "SELECT 99 failed", 3000));
}

/* ---- redis: faults ----------------------------------------------------------------------- */

static void test_server_restart(void **state)
{
    struct fixture *fx = *state;
    const char *patterns[] = {"r*"};
    redisContext *pub;
    size_t before;

    redis_server_start(fx, NULL);
    subs_set(&fx->src.subs, NULL, 0, patterns, 1);
    url_set(fx, NULL, NULL);
    source_start(fx);
    assert_true(wait_state(fx, SOURCE_UP, 3000));

    before = fx->nstates;
    redis_server_kill(fx);
    assert_true(wait_status(fx, SOURCE_DOWN, "lost", 3000));
    run_for(fx, 300); /* a few refused reconnects */
    assert_int_equal(fx->src.state, SOURCE_DOWN);
    assert_non_null(strstr(fx->src.status, "refused"));

    redis_server_start(fx, NULL);
    assert_true(wait_state(fx, SOURCE_UP, 5000));
    assert_true(states_contain(fx, before, SOURCE_CONNECTING));
    pub = redis_client(fx, NULL);
    assert_int_equal(publish(pub, "restarted", "again", 5), 1);
    redisFree(pub);
    assert_true(wait_msgs(fx, 1, 3000));
    assert_msg(fx, 0, "restarted", "again", 5);
}

static void test_connection_refused(void **state)
{
    struct fixture *fx = *state;
    char expect[64];

    url_set(fx, NULL, NULL); /* nothing listens on fx->port */
    source_start(fx);
    run_for(fx, 500);
    assert_int_equal(fx->src.state, SOURCE_DOWN);
    assert_non_null(strstr(fx->src.status, "refused"));
    /* Retries failing the same way do not call the sink again. */
    assert_true(fx->nstates <= 2);

    /* An IPv6 literal: brackets stripped for connecting, kept in the
     * status (whether or not this host has IPv6, nothing listens). */
    source_stop(fx);
    snprintf(fx->url, sizeof(fx->url), "redis://[::1]:%d/1", fx->port);
    source_start(fx);
    snprintf(expect, sizeof(expect), "cannot connect to [::1]:%d: ", fx->port);
    assert_true(wait_status(fx, SOURCE_DOWN, expect, 1000));
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

static void test_handshake_timeout(void **state)
{
    struct fixture *fx = *state;
    const char *exact[] = {"never"};
    int64_t start;

    setenv("SLUICE_REDIS_HANDSHAKE_MS", "300", 1);
    silent_listener(fx);
    subs_set(&fx->src.subs, exact, 1, NULL, 0);
    url_set(fx, ":pw", "/2"); /* AUTH is what goes unanswered */
    start = now_ms();
    source_start(fx);
    assert_true(wait_state(fx, SOURCE_CONNECTING, 1000));
    assert_true(wait_state(fx, SOURCE_DOWN, 2000));
    assert_true(now_ms() - start >= 250);
    assert_non_null(strstr(fx->src.status, "handshake timeout"));
    assert_null(strstr(fx->src.status, "pw@"));
    run_for(fx, 1000);
    assert_true(drain_listener(fx) >= 2); /* it kept retrying */
    assert_true(states_contain(fx, 2, SOURCE_CONNECTING));
}

/* Keepalives get answered: UP for many intervals without a state call. */
static void expect_stays_up(struct fixture *fx)
{
    size_t calls;

    assert_true(wait_state(fx, SOURCE_UP, 3000));
    calls = fx->nstates;
    run_for(fx, 1000); /* 5 keepalive intervals */
    assert_int_equal(fx->src.state, SOURCE_UP);
    assert_int_equal(fx->nstates, calls);
}

static void test_keepalive(void **state)
{
    struct fixture *fx = *state;
    const char *exact[] = {"ka"};
    const char *patterns[] = {"ka:*"};

    setenv("SLUICE_REDIS_KEEPALIVE_MS", "200", 1);
    setenv("SLUICE_REDIS_HANDSHAKE_MS", "400", 1);
    redis_server_start(fx, NULL);
    url_set(fx, NULL, NULL);

    /* Channels (re-SUBSCRIBE), patterns only (re-PSUBSCRIBE), nothing
     * subscribed (PING). */
    subs_set(&fx->src.subs, exact, 1, patterns, 1);
    source_start(fx);
    expect_stays_up(fx);
    source_stop(fx);
    subs_set(&fx->src.subs, NULL, 0, patterns, 1);
    source_start(fx);
    expect_stays_up(fx);
    source_stop(fx);
    subs_set(&fx->src.subs, NULL, 0, NULL, 0);
    source_start(fx);
    expect_stays_up(fx);

    /* A server that stops answering is dropped, then found again. */
    kill(fx->redis_pid, SIGSTOP);
    assert_true(wait_status(fx, SOURCE_DOWN, "keepalive", 2000));
    run_for(fx, 500); /* reconnects: TCP yes, answers no */
    assert_int_not_equal(fx->src.state, SOURCE_UP);
    kill(fx->redis_pid, SIGCONT);
    assert_true(wait_state(fx, SOURCE_UP, 5000));
}

/* ---- redis: resubscribe and stop ------------------------------------------------------------ */

/* Runs the loop until the server shows no subscription at all. */
static bool wait_server_unsubscribed(struct fixture *fx, redisContext *c)
{
    for (int64_t end = now_ms() + 3000; now_ms() < end; run_for(fx, 10)) {
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

    for (int64_t end = now_ms() + 3000; !ok && now_ms() < end;) {
        ok = publish(c, channel, "probe", 5) == receivers;
        run_for(fx, 10);
    }
    run_for(fx, 100);
    for (size_t i = 0; i < fx->nmsgs; i++)
        assert_memory_equal(fx->msgs[i].payload, "probe", 5);
    fixture_forget_msgs(fx);
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

    redis_server_start(fx, NULL);
    url_set(fx, NULL, NULL);
    /* Before start: stored, applied by the first connect. */
    subs_set(&subs, first, 1, NULL, 0);
    assert_int_equal(fx->src.ops->resubscribe(&fx->src, &subs), 0);
    assert_null(subs.exact.items); /* ownership taken */
    source_start(fx);
    assert_true(wait_state(fx, SOURCE_UP, 3000));
    pub = redis_client(fx, NULL);
    assert_int_equal(publish(pub, "r:a", "a", 1), 1);
    assert_true(wait_msgs(fx, 1, 3000));
    assert_msg(fx, 0, "r:a", "a", 1);
    fixture_forget_msgs(fx);

    /* While UP: r:a goes, r:b and rp:* come. */
    subs_set(&subs, second, 1, second_p, 1);
    assert_int_equal(fx->src.ops->resubscribe(&fx->src, &subs), 0);
    assert_true(wait_receivers(fx, pub, "r:a", 0));
    assert_true(wait_receivers(fx, pub, "rp:0", 1));
    assert_int_equal(publish(pub, "r:b", "b", 1), 1);
    assert_int_equal(publish(pub, "rp:1", "p", 1), 1);
    assert_true(wait_msgs(fx, 2, 3000));
    assert_msg(fx, 0, "r:b", "b", 1);
    assert_msg(fx, 1, "rp:1", "p", 1);
    fixture_forget_msgs(fx);

    /* Overlap under the new set: r:b and r:* both match, one event. */
    subs_set(&subs, second, 1, third_p, 1);
    assert_int_equal(fx->src.ops->resubscribe(&fx->src, &subs), 0);
    assert_true(wait_receivers(fx, pub, "rp:0", 0));
    assert_true(wait_receivers(fx, pub, "r:0", 1));
    assert_int_equal(publish(pub, "r:b", "once", 4), 2);
    assert_int_equal(publish(pub, "r:b", "once", 4), 2);
    assert_true(wait_msgs(fx, 2, 3000));
    run_for(fx, 100);
    assert_int_equal(fx->nmsgs, 2);
    assert_msg(fx, 0, "r:b", "once", 4);
    assert_msg(fx, 1, "r:b", "once", 4);

    /* To nothing at all: the connection stays up (keepalive by PING). */
    subs_set(&subs, NULL, 0, NULL, 0);
    assert_int_equal(fx->src.ops->resubscribe(&fx->src, &subs), 0);
    assert_true(wait_server_unsubscribed(fx, pub));
    assert_int_equal(fx->src.state, SOURCE_UP);
    redisFree(pub);
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
    const char *exact[] = {"s"};
    const char *patterns[] = {"s*"};
    redisContext *pub;
    int redis_port = fx->port;

    subs_set(&fx->src.subs, exact, 1, patterns, 1);

    /* While a handshake is pending (AUTH unanswered). */
    silent_listener(fx);
    url_set(fx, ":pw", NULL);
    source_start(fx);
    assert_true(wait_state(fx, SOURCE_CONNECTING, 1000));
    expect_silence_after_stop(fx);

    /* Right after start, before the TCP connect completes. */
    source_start(fx);
    source_stop(fx);

    /* While waiting to reconnect (nothing listens). */
    fx->port = redis_port;
    url_set(fx, NULL, NULL);
    source_start(fx);
    run_for(fx, 50);
    assert_int_equal(fx->src.state, SOURCE_DOWN);
    expect_silence_after_stop(fx);

    /* While UP, with messages (and their duplicates) in flight. */
    redis_server_start(fx, NULL);
    source_start(fx);
    assert_true(wait_state(fx, SOURCE_UP, 3000));
    pub = redis_client(fx, NULL);
    assert_int_equal(publish(pub, "s", "1", 1), 2);
    assert_true(wait_msgs(fx, 1, 3000));
    assert_int_equal(publish(pub, "s", "2", 1), 2);
    expect_silence_after_stop(fx);
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
