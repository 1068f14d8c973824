/*
 * testlib.h - scaffolding shared by the adapter unit tests
 * (test_redis_adapter.c, test_redis_stream_adapter.c, test_mqtt_adapter.c).
 *
 * Those tests run one adapter on a real event_base against a real
 * redis-server or mosquitto on a free loopback port. What they share is
 * here, so that each test file holds only what it tests:
 *
 *   - time, ports and listeners: a free port, "does it accept yet", a
 *     listener that never answers (TCP connects, the protocol never does);
 *   - processes: a child that dies with this process (PR_SET_PDEATHSIG),
 *     a redis-server or mosquitto started and waited for until it
 *     accepts, and killed (also if a test stopped it with SIGSTOP);
 *   - files: a temp directory and its removal, stderr captured into a
 *     string (to check that nothing secret is logged);
 *   - the harness: one struct source on its own event_base with a
 *     recording sink, and loop drivers that run until a condition holds or
 *     a timeout passes.
 *
 * Every helper fails the current cmocka test (assert/fail_msg) when the
 * environment does not cooperate, so a test reads as its steps only.
 * Teardowns kill what setups started, which cmocka runs also after a
 * failed assertion; should the test process itself die, the kernel kills
 * the servers (PR_SET_PDEATHSIG).
 *
 * Ownership: a harness owns its event_base, its tick event and every
 * message the sink recorded (one reference each), all released by
 * testlib_harness_free(); the source's subscriptions are the source's
 * (also freed there). Servers are owned by the struct testlib_server the
 * caller passes and end with testlib_server_kill().
 */
#ifndef SLUICE_TESTLIB_H
#define SLUICE_TESTLIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "adapters/adapter.h"

struct event;
struct message;

#define TESTLIB_MAX_STATES 256
#define TESTLIB_MAX_LAST 8

/* ---- time and sockets -------------------------------------------------- */

/* CLOCK_MONOTONIC in milliseconds / microseconds. */
int64_t testlib_now_ms(void);
int64_t testlib_now_us(void);
void testlib_sleep_ms(int ms);

/* A port on 127.0.0.1 that was free a moment ago (bound, then closed). */
int testlib_free_port(void);

/* True when something accepts TCP connections on 127.0.0.1:port. */
bool testlib_port_accepts(int port);

/*
 * A socket listening on a free loopback port that never accepts: TCP
 * connects complete from the kernel's backlog, nothing ever answers.
 * Returns the fd (the caller closes it); *port receives the port.
 */
int testlib_silent_listener(int *port);

/* Accepts (and closes) every pending connection on a silent listener;
 * returns how many there were. */
int testlib_listener_drain(int fd);

/* ---- processes and files ----------------------------------------------- */

/* A server process this test started. pid 0: not running. */
struct testlib_server {
    pid_t pid;
    int port;
};

/*
 * Starts `file` (found on PATH unless it holds a '/') with argv, its
 * stdout and stderr to out_path (created), or to /dev/null when out_path
 * is NULL. The child is killed by the kernel should this process die.
 * Returns its pid.
 */
pid_t testlib_spawn(const char *file, char *const argv[], const char *out_path);

/* Runs argv[0] (no shell) to completion, output discarded; returns its
 * exit status, or -1 if it did not exit normally. */
int testlib_run(char *const argv[]);

/*
 * Starts redis-server on 127.0.0.1:port (no persistence; requirepass when
 * password is not NULL) into *srv and waits until it accepts.
 */
void testlib_redis_start(struct testlib_server *srv, int port,
                         const char *password);

/*
 * Writes DIR/broker-PORT.conf (listener on 127.0.0.1:PORT, in-memory
 * sessions, log to DIR, `extra` appended, or "allow_anonymous true" when
 * extra is NULL), starts /usr/sbin/mosquitto on it into *srv and waits
 * until it accepts. Its stdout/stderr go to DIR/broker-PORT.stderr.
 */
void testlib_mosquitto_start(struct testlib_server *srv, const char *dir,
                             int port, const char *extra);

/* Kills the server (SIGCONT first, in case a test stopped it) and reaps
 * it. Does nothing when it is not running. */
void testlib_server_kill(struct testlib_server *srv);

/* Creates a fresh directory "/tmp/sluice-<what>-XXXXXX" into dir (at
 * least 64 bytes). Returns 0, or -1 (errno set). */
int testlib_tempdir(char *dir, size_t len, const char *what);

/* Removes a flat directory and the files in it; a missing one is fine. */
void testlib_remove_dir(const char *dir);

/* Writes text to path (created or truncated). */
void testlib_write_file(const char *path, const char *text);

/* This process's stderr (where the log goes), redirected to a temp file
 * between testlib_capture_start and testlib_capture_end. */
struct testlib_capture {
    FILE *file;
    int saved;
};

void testlib_capture_start(struct testlib_capture *cap);

/* Restores stderr and returns what was written meanwhile (also copied to
 * the restored stderr, to keep the log visible). The caller frees it. */
char *testlib_capture_end(struct testlib_capture *cap);

/* ---- the harness: one source on one event base ------------------------- */

/* What the sink's last_entry_id answers for one stream key. */
struct testlib_last_id {
    char key[64];
    char id[64];
};

struct testlib_harness {
    struct event_base *base;
    struct event *tick; /* bounds each loop turn to 10 ms */
    struct source_config cfg;
    struct source src; /* src.cfg = &cfg */
    char name[64];     /* cfg.name */
    char url[256];     /* cfg.url */

    /* The recording sink (src.sink.ctx is the harness). */
    struct message **msgs; /* delivered messages, one reference each */
    size_t nmsgs, cap;
    uint64_t delivered;      /* deliver calls, kept or not */
    int64_t last_deliver_us; /* testlib_now_us() of the last one */
    int deliver_rc;          /* what deliver returns */
    bool count_only;         /* do not keep messages (rate test) */
    bool stop_in_deliver;    /* call stop() from inside deliver */
    enum source_state states[TESTLIB_MAX_STATES];
    size_t nstates; /* state_changed calls */
    struct testlib_last_id last[TESTLIB_MAX_LAST];
    size_t nlast;
    size_t last_calls; /* last_entry_id calls */
};

/*
 * Sets up h (which it zeroes first): a new event_base with a 10 ms tick,
 * a source_config named `name` (copied) of `type` whose url is h->url, a
 * source with `ops` and `index` on that base, and the recording sink.
 */
void testlib_harness_init(struct testlib_harness *h,
                          const struct adapter_ops *ops, const char *name,
                          enum source_type type, uint32_t index);

/* Stops the source and frees the subscriptions, the recorded messages
 * and the base. Safe on a harness never initialised (zeroed) or freed. */
void testlib_harness_free(struct testlib_harness *h);

/* The sink's deliver: records msg (taking its reference) and returns
 * h->deliver_rc. Exposed for a test that wraps it with checks of its
 * own. */
int testlib_deliver(void *ctx, struct source *src, struct message *msg);

/* Drops the recorded messages (nmsgs back to 0; delivered stays). */
void testlib_forget(struct testlib_harness *h);

/* Adds a key -> id answer for the sink's last_entry_id. */
void testlib_last_set(struct testlib_harness *h, const char *key,
                      const char *id);

/* True when the sink saw `state` at or after state_changed call `from`. */
bool testlib_saw_state(const struct testlib_harness *h, size_t from,
                       enum source_state state);

/* Replaces v's contents with copies of the n strings (no positions). */
void testlib_strv_set(struct config_strv *v, const char *const *items,
                      size_t n);

/* ops->start, which must succeed and leave src.impl set. */
void testlib_start(struct testlib_harness *h);

/* ops->stop, which must leave src.impl NULL. */
void testlib_stop(struct testlib_harness *h);

/* Stops the source twice (it is idempotent) and checks that running the
 * loop for 300 ms then calls no sink function. */
void testlib_expect_silence_after_stop(struct testlib_harness *h);

/* ---- driving the loop -------------------------------------------------- */

/*
 * Runs h's loop, one turn (at most 10 ms) at a time, until pred(h, arg)
 * holds: true; or until timeout_ms have passed: false.
 */
bool testlib_run_until(struct testlib_harness *h,
                       bool (*pred)(const struct testlib_harness *h,
                                    uintptr_t arg),
                       uintptr_t arg, int timeout_ms);

/* Runs h's loop for about ms milliseconds. */
void testlib_run_for(struct testlib_harness *h, int ms);

/* Runs until the source is in `state`; false after ms. */
bool testlib_wait_state(struct testlib_harness *h, enum source_state state,
                        int ms);

/* Runs until the source is in `state` with a status containing needle. */
bool testlib_wait_status(struct testlib_harness *h, enum source_state state,
                         const char *needle, int ms);

/* Runs until at least n messages are recorded (h->nmsgs). */
bool testlib_wait_msgs(struct testlib_harness *h, size_t n, int ms);

#endif
