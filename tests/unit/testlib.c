/*
 * testlib.c - scaffolding shared by the adapter unit tests (see
 * testlib.h): ports, server processes, temp files, stderr capture, and
 * the harness (a source, its event_base and a recording sink).
 *
 * Everything here asserts through cmocka, so it only runs inside a
 * cmocka test, setup or teardown. Nothing here is global: all state lives
 * in the structs the tests own.
 */
/* cmocka needs these first, in this order. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
// clang-format on

#include "tests/unit/testlib.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "lib/message.h"

/* How long a server may take to accept connections after its start. */
#define TESTLIB_START_MS 5000

/* ---- time and sockets -------------------------------------------------- */

int64_t testlib_now_ms(void)
{
    return testlib_now_us() / 1000;
}

int64_t testlib_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void testlib_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

/* A loopback socket bound to a free port; *port receives the port. */
static int testlib_bound_socket(int *port)
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

int testlib_free_port(void)
{
    int port;

    close(testlib_bound_socket(&port));
    return port;
}

bool testlib_port_accepts(int port)
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

int testlib_silent_listener(int *port)
{
    int fd = testlib_bound_socket(port);

    assert_int_equal(listen(fd, 64), 0);
    return fd;
}

int testlib_listener_drain(int fd)
{
    int n = 0;
    int conn;

    fcntl(fd, F_SETFL, O_NONBLOCK);
    while ((conn = accept(fd, NULL, NULL)) >= 0) {
        close(conn);
        n++;
    }
    return n;
}

/* ---- processes --------------------------------------------------------- */

pid_t testlib_spawn(const char *file, char *const argv[], const char *out_path)
{
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = out_path ? open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600)
                          : open("/dev/null", O_WRONLY);

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        execvp(file, argv);
        _exit(127);
    }
    return pid;
}

int testlib_run(char *const argv[])
{
    pid_t pid = testlib_spawn(argv[0], argv, NULL);
    int status;

    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Waits until srv accepts on its port; fails the test if the process
 * exits first (see `log` for why) or TESTLIB_START_MS pass. */
static void testlib_server_wait(struct testlib_server *srv, const char *name,
                                const char *log)
{
    int64_t deadline = testlib_now_ms() + TESTLIB_START_MS;

    while (!testlib_port_accepts(srv->port)) {
        if (waitpid(srv->pid, NULL, WNOHANG) == srv->pid) {
            srv->pid = 0;
            fail_msg("%s exited at start; see %s", name, log);
        }
        if (testlib_now_ms() > deadline)
            fail_msg("%s did not listen on %d", name, srv->port);
        testlib_sleep_ms(10);
    }
}

void testlib_redis_start(struct testlib_server *srv, int port,
                         const char *password)
{
    char portstr[16];
    char *argv[16] = {
        "redis-server", "--bind", "127.0.0.1",    "--port", portstr,
        "--save",       "",       "--appendonly", "no"};
    int argc = 9;

    snprintf(portstr, sizeof(portstr), "%d", port);
    if (password) {
        argv[argc++] = "--requirepass";
        argv[argc++] = (char *)password;
    }
    srv->port = port;
    srv->pid = testlib_spawn("redis-server", argv, NULL);
    testlib_server_wait(srv, "redis-server", "its output (discarded)");
}

/*
 * "user root" keeps mosquitto from switching to its own user when the
 * tests run as root (it has no effect otherwise), so that it can read the
 * temp files.
 */
void testlib_mosquitto_start(struct testlib_server *srv, const char *dir,
                             int port, const char *extra)
{
    char conf[512], text[2048], errpath[512];
    char *argv[] = {"mosquitto", "-c", conf, NULL};

    snprintf(conf, sizeof(conf), "%s/broker-%d.conf", dir, port);
    snprintf(errpath, sizeof(errpath), "%s/broker-%d.stderr", dir, port);
    snprintf(text, sizeof(text),
             "listener %d 127.0.0.1\n"
             "persistence false\n"
             "log_dest file %s/broker-%d.log\n"
             "user root\n"
             "max_queued_messages 0\n"
             "%s\n",
             port, dir, port, extra ? extra : "allow_anonymous true");
    testlib_write_file(conf, text);
    srv->port = port;
    srv->pid = testlib_spawn("/usr/sbin/mosquitto", argv, errpath);
    testlib_server_wait(srv, "mosquitto", errpath);
}

void testlib_server_kill(struct testlib_server *srv)
{
    if (srv->pid <= 0)
        return;
    kill(srv->pid, SIGCONT); /* in case a test stopped it */
    kill(srv->pid, SIGKILL);
    waitpid(srv->pid, NULL, 0);
    srv->pid = 0;
}

/* ---- files ------------------------------------------------------------- */

int testlib_tempdir(char *dir, size_t len, const char *what)
{
    snprintf(dir, len, "/tmp/sluice-%s-XXXXXX", what);
    return mkdtemp(dir) ? 0 : -1;
}

void testlib_remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[512];

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

void testlib_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

void testlib_capture_start(struct testlib_capture *cap)
{
    fflush(stderr);
    cap->file = tmpfile();
    assert_non_null(cap->file);
    cap->saved = dup(STDERR_FILENO);
    dup2(fileno(cap->file), STDERR_FILENO);
}

char *testlib_capture_end(struct testlib_capture *cap)
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

/* ---- the recording sink ------------------------------------------------ */

int testlib_deliver(void *ctx, struct source *src, struct message *msg)
{
    struct testlib_harness *h = ctx;

    assert_ptr_equal(src, &h->src);
    h->delivered++;
    h->last_deliver_us = testlib_now_us();
    if (h->count_only) {
        message_unref(msg);
    } else {
        if (h->nmsgs == h->cap) {
            h->cap = h->cap ? h->cap * 2 : 16;
            h->msgs = realloc(h->msgs, h->cap * sizeof(*h->msgs));
            assert_non_null(h->msgs);
        }
        h->msgs[h->nmsgs++] = msg;
    }
    if (h->stop_in_deliver)
        h->src.ops->stop(&h->src);
    return h->deliver_rc;
}

static void testlib_state_changed(void *ctx, struct source *src)
{
    struct testlib_harness *h = ctx;

    assert_ptr_equal(src, &h->src);
    assert_true(h->nstates < TESTLIB_MAX_STATES);
    h->states[h->nstates++] = src->state;
}

static int testlib_last_entry_id(void *ctx, struct source *src, const char *key,
                                 char *out, size_t outlen)
{
    struct testlib_harness *h = ctx;

    assert_ptr_equal(src, &h->src);
    h->last_calls++;
    for (size_t i = 0; i < h->nlast; i++) {
        if (strcmp(h->last[i].key, key) == 0) {
            snprintf(out, outlen, "%s", h->last[i].id);
            return 1;
        }
    }
    return 0;
}

void testlib_last_set(struct testlib_harness *h, const char *key,
                      const char *id)
{
    struct testlib_last_id *last;

    assert_true(h->nlast < TESTLIB_MAX_LAST);
    last = &h->last[h->nlast++];
    snprintf(last->key, sizeof(last->key), "%s", key);
    snprintf(last->id, sizeof(last->id), "%s", id);
}

void testlib_forget(struct testlib_harness *h)
{
    for (size_t i = 0; i < h->nmsgs; i++)
        message_unref(h->msgs[i]);
    h->nmsgs = 0;
}

bool testlib_saw_state(const struct testlib_harness *h, size_t from,
                       enum source_state state)
{
    for (size_t i = from; i < h->nstates; i++)
        if (h->states[i] == state)
            return true;
    return false;
}

/* ---- the harness ------------------------------------------------------- */

static void testlib_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

void testlib_harness_init(struct testlib_harness *h,
                          const struct adapter_ops *ops, const char *name,
                          enum source_type type, uint32_t index)
{
    struct timeval tv = {0, 10000};

    memset(h, 0, sizeof(*h));
    h->base = event_base_new();
    assert_non_null(h->base);
    h->tick = event_new(h->base, -1, EV_PERSIST, testlib_tick, NULL);
    assert_non_null(h->tick);
    assert_int_equal(event_add(h->tick, &tv), 0);
    snprintf(h->name, sizeof(h->name), "%s", name);
    h->cfg.name = h->name;
    h->cfg.type = type;
    h->cfg.url = h->url;
    h->src.ops = ops;
    h->src.cfg = &h->cfg;
    h->src.index = index;
    h->src.base = h->base;
    h->src.sink.deliver = testlib_deliver;
    h->src.sink.state_changed = testlib_state_changed;
    h->src.sink.last_entry_id = testlib_last_entry_id;
    h->src.sink.ctx = h;
}

void testlib_harness_free(struct testlib_harness *h)
{
    if (h->base == NULL)
        return;
    h->src.ops->stop(&h->src);
    subscriptions_free(&h->src.subs);
    testlib_forget(h);
    free(h->msgs);
    h->msgs = NULL;
    event_free(h->tick);
    event_base_free(h->base);
    h->base = NULL;
}

void testlib_strv_set(struct config_strv *v, const char *const *items, size_t n)
{
    v->items = calloc(n ? n : 1, sizeof(*v->items));
    assert_non_null(v->items);
    for (size_t i = 0; i < n; i++) {
        v->items[i] = strdup(items[i]);
        assert_non_null(v->items[i]);
    }
    v->pos = NULL;
    v->count = n;
}

void testlib_start(struct testlib_harness *h)
{
    char why[256] = "";

    if (h->src.ops->start(&h->src, why, sizeof(why)) != 0)
        fail_msg("start failed: %s", why);
    assert_non_null(h->src.impl);
}

void testlib_stop(struct testlib_harness *h)
{
    h->src.ops->stop(&h->src);
    assert_null(h->src.impl);
}

void testlib_expect_silence_after_stop(struct testlib_harness *h)
{
    size_t calls, msgs;

    testlib_stop(h);
    testlib_stop(h); /* idempotent */
    calls = h->nstates;
    msgs = h->nmsgs;
    testlib_run_for(h, 300);
    assert_int_equal(h->nstates, calls);
    assert_int_equal(h->nmsgs, msgs);
}

/* ---- driving the loop -------------------------------------------------- */

bool testlib_run_until(struct testlib_harness *h,
                       bool (*pred)(const struct testlib_harness *h,
                                    uintptr_t arg),
                       uintptr_t arg, int timeout_ms)
{
    int64_t deadline = testlib_now_us() + (int64_t)timeout_ms * 1000;

    while (!pred(h, arg)) {
        if (testlib_now_us() > deadline)
            return false;
        event_base_loop(h->base, EVLOOP_ONCE);
    }
    return true;
}

static bool testlib_pred_never(const struct testlib_harness *h, uintptr_t arg)
{
    (void)h;
    (void)arg;
    return false;
}

void testlib_run_for(struct testlib_harness *h, int ms)
{
    testlib_run_until(h, testlib_pred_never, 0, ms);
}

static bool testlib_pred_state(const struct testlib_harness *h, uintptr_t state)
{
    return h->src.state == (enum source_state)state;
}

bool testlib_wait_state(struct testlib_harness *h, enum source_state state,
                        int ms)
{
    return testlib_run_until(h, testlib_pred_state, (uintptr_t)state, ms);
}

/* testlib_wait_status's condition, passed by address. */
struct testlib_status {
    enum source_state state;
    const char *needle;
};

static bool testlib_pred_status(const struct testlib_harness *h, uintptr_t arg)
{
    const struct testlib_status *want = (const struct testlib_status *)arg;

    return h->src.state == want->state &&
           strstr(h->src.status, want->needle) != NULL;
}

bool testlib_wait_status(struct testlib_harness *h, enum source_state state,
                         const char *needle, int ms)
{
    struct testlib_status want = {state, needle};

    return testlib_run_until(h, testlib_pred_status, (uintptr_t)&want, ms);
}

static bool testlib_pred_msgs(const struct testlib_harness *h, uintptr_t n)
{
    return h->nmsgs >= (size_t)n;
}

bool testlib_wait_msgs(struct testlib_harness *h, size_t n, int ms)
{
    return testlib_run_until(h, testlib_pred_msgs, (uintptr_t)n, ms);
}
