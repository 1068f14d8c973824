/*
 * loadgen.c - the load generator of the fan-out benchmark
 * (tests/bench/README.md; tests/bench/bench.sh drives it).
 *
 * One process, one thread, one libevent loop. It opens N SSE streams to
 * an HTTP server (sluice or nginx+nchan), ramping at a bounded rate, then
 * publishes R events/s for D seconds through the server's bus (Redis
 * PUBLISH for sluice, HTTP POST to nchan's publisher location), and
 * measures what comes back: deliveries against the expected count,
 * per-delivery latency, gaps and duplicates per stream, and the server's
 * CPU time and RSS read from /proc. In idle mode it only opens the
 * streams, waits, and reports the server's RSS growth per stream.
 *
 * Each payload is a JSON object {"lg_s":SEQ,"lg_t":NS,"pad":"xx.."} of
 * exactly --size bytes, NS being CLOCK_MONOTONIC at the moment it is
 * handed to the publisher connection (both processes share the clock).
 * Event e goes to topic e mod K (round robin), stream i listens to topic
 * i mod K, so stream i must see the sequence numbers i mod K, +K, +2K...:
 * that is how gaps and duplicates are counted without any per-event
 * state.
 *
 * The per-delivery path (read -> chunk decoding -> line split -> marker
 * parse -> histogram) allocates nothing: one shared read buffer, one
 * fixed carry buffer per stream for a line split across reads, and a
 * fixed log-bucket histogram.
 *
 * One file on purpose: the CMake target builds this file alone, and the
 * tool is read as a whole next to bench.sh.
 *
 * Output: one line "RESULT key=value ..." for scripts, then one line for
 * people. Exit status 0; 1 on a usage or setup error; 2 with --check when
 * the run was not perfect (a failed stream, a missing or duplicate
 * delivery, a publish error).
 */
#define _GNU_SOURCE /* memmem */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libevent.h>

#define LOADGEN_HIST_BUCKETS 976 /* see loadgen_hist_index */
#define LOADGEN_READ_BUF (256 * 1024)
#define LOADGEN_MAX_PIDS 4
#define LOADGEN_MAX_SUB_PORTS 4
#define LOADGEN_MAX_PUB_CONNS 16
#define LOADGEN_TICK_US 1000

enum loadgen_conn_state {
    LOADGEN_CONN_UNOPENED,
    LOADGEN_CONN_CONNECTING,
    LOADGEN_CONN_HEAD,      /* request sent, reading the response head */
    LOADGEN_CONN_STREAMING, /* 200 received: reading events */
    LOADGEN_CONN_FAILED,    /* refused, error, or not 200 */
    LOADGEN_CONN_CLOSED,    /* closed by the server after its 200 */
};

enum loadgen_chunk_state {
    LOADGEN_CHUNK_SIZE,     /* hex digits of the chunk size */
    LOADGEN_CHUNK_EXT,      /* ";ext" up to the end of the size line */
    LOADGEN_CHUNK_DATA,
    LOADGEN_CHUNK_DATA_END, /* the CRLF after the chunk data */
    LOADGEN_CHUNK_LAST,     /* the 0-size chunk was seen */
};

enum loadgen_phase {
    LOADGEN_PHASE_CONNECT,
    LOADGEN_PHASE_SETTLE,
    LOADGEN_PHASE_PUBLISH,
    LOADGEN_PHASE_DRAIN,
    LOADGEN_PHASE_DONE,
};

enum loadgen_pub_kind {
    LOADGEN_PUB_NONE,  /* idle mode */
    LOADGEN_PUB_REDIS,
    LOADGEN_PUB_HTTP,
};

struct loadgen_opts {
    char sub_host[256];
    int sub_port;
    /* --sub-ports: stream i connects to sub_ports[i mod n] instead
     * (several replicas of one server); n = 0: sub_port alone. */
    int sub_ports[LOADGEN_MAX_SUB_PORTS];
    unsigned nsub_ports;
    char sub_path[512];     /* may hold one "%d": the topic number */
    enum loadgen_pub_kind pub_kind;
    char pub_host[256];
    int pub_port;
    char pub_topic[512];    /* channel (redis) or path (http); may hold "%d" */
    unsigned pub_conns;
    unsigned conns, topics, ramp;
    double rate, duration, settle, drain, idle;
    size_t size;
    int pids[LOADGEN_MAX_PIDS];
    unsigned npids;
    int bus_pid;
    bool check;
    const char *label;
    const char *workload;
};

struct loadgen;

struct loadgen_conn {
    struct loadgen *lg;
    struct event *ev;       /* owned; NULL until opened */
    char *carry;            /* owned; a line split across reads */
    uint64_t chunk_left;
    uint64_t next_seq;      /* the next sequence number this stream expects */
    uint64_t missing, dups;
    uint32_t topic;
    uint32_t carry_len;
    int fd;
    enum loadgen_conn_state state;
    enum loadgen_chunk_state chunk;
    bool chunked;
    bool overflow;          /* the current line did not fit in carry */
    bool counted;           /* streaming when publishing started */
};

struct loadgen_http_pub {
    struct loadgen *lg;
    struct evhttp_connection *evcon; /* owned */
};

struct loadgen_sample {
    uint64_t cpu_ticks; /* server utime+stime */
    uint64_t bus_ticks;
    uint64_t busy_ticks; /* the whole machine, from /proc/stat */
    uint64_t steal_ticks;
    int64_t self_us;    /* this process's user+system time */
    int64_t wall_ns;
};

struct loadgen {
    struct loadgen_opts o;
    struct event_base *base;         /* owned */
    struct event *tick;              /* owned */
    struct sockaddr_storage addr[LOADGEN_MAX_SUB_PORTS];
    socklen_t addrlen[LOADGEN_MAX_SUB_PORTS];
    unsigned naddrs;                 /* stream i connects to addr[i mod naddrs] */
    struct loadgen_conn *conns;      /* owned, o.conns of them */
    char *rbuf;                      /* owned, LOADGEN_READ_BUF bytes */
    char *payload;                   /* owned, o.size + 64 bytes */
    size_t carry_cap;
    redisAsyncContext *redis;        /* owned by hiredis once connected */
    struct loadgen_http_pub http[LOADGEN_MAX_PUB_CONNS];
    uint64_t hist[LOADGEN_HIST_BUCKETS];
    uint64_t lat_max_ns, lat_count;
    enum loadgen_phase phase;
    unsigned opened;
    unsigned streaming; /* got their 200 (closed ones included) */
    unsigned failed, closed;
    uint64_t delivered, expected, sent, acked, pub_errors, parse_errors;
    int64_t phase_ns;                /* when the current phase began */
    int64_t deadline_ns;             /* abort the whole run after this */
    struct loadgen_sample s0, s1;    /* measurement window */
    uint64_t rss_before_kib, rss_open_kib, rss_end_kib;
    bool aborted;
};

static int64_t loadgen_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- histogram: 16 linear sub-buckets per power of two (<= 6% error) */

/* Bucket of v: values below 16 exactly, above that 16 per octave. */
static unsigned loadgen_hist_index(uint64_t v)
{
    if (v < 16)
        return (unsigned)v;
    unsigned e = 63 - (unsigned)__builtin_clzll(v); /* e >= 4 */
    return (e - 3) * 16 + (unsigned)((v >> (e - 4)) & 15);
}

/* The middle of bucket i (the inverse of loadgen_hist_index). */
static uint64_t loadgen_hist_value(unsigned i)
{
    if (i < 16)
        return i;
    unsigned e = i / 16 + 3;
    uint64_t low = (uint64_t)(16 + i % 16) << (e - 4);
    return low + ((uint64_t)1 << (e - 4)) / 2;
}

static void loadgen_hist_add(struct loadgen *lg, uint64_t v)
{
    lg->hist[loadgen_hist_index(v)]++;
    lg->lat_count++;
    if (v > lg->lat_max_ns)
        lg->lat_max_ns = v;
}

/* The q-quantile (0..1) in ns; 0 when nothing was recorded. */
static uint64_t loadgen_hist_quantile(const struct loadgen *lg, double q)
{
    if (lg->lat_count == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)lg->lat_count + 0.5);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < LOADGEN_HIST_BUCKETS; i++) {
        seen += lg->hist[i];
        if (seen >= rank) {
            uint64_t v = loadgen_hist_value(i);
            return v < lg->lat_max_ns ? v : lg->lat_max_ns;
        }
    }
    return lg->lat_max_ns;
}

/* ---- /proc sampling */

/* utime+stime of pid in clock ticks, or 0 when it cannot be read. */
static uint64_t loadgen_proc_cpu(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces: fields count from the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    unsigned long long ut = 0, st = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
               &ut, &st) != 2)
        return 0;
    return ut + st;
}

/* VmRSS of pid in KiB, or 0 when it cannot be read. */
static uint64_t loadgen_proc_rss(int pid)
{
    char path[64], line[256];
    uint64_t kib = 0;
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long v;
        if (sscanf(line, "VmRSS: %llu kB", &v) == 1) {
            kib = v;
            break;
        }
    }
    fclose(f);
    return kib;
}

static uint64_t loadgen_server_rss(const struct loadgen *lg)
{
    uint64_t kib = 0;
    for (unsigned i = 0; i < lg->o.npids; i++)
        kib += loadgen_proc_rss(lg->o.pids[i]);
    return kib;
}

/* Busy (everything but idle and iowait) and steal ticks of the machine,
 * summed over CPUs; zeros when /proc/stat cannot be read. */
static void loadgen_proc_machine(uint64_t *busy, uint64_t *steal)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");

    *busy = *steal = 0;
    if (!f)
        return;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
                   &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n != 8)
        return;
    *busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    *steal = v[7];
}

static void loadgen_sample(const struct loadgen *lg, struct loadgen_sample *s)
{
    struct rusage ru;

    s->cpu_ticks = 0;
    for (unsigned i = 0; i < lg->o.npids; i++)
        s->cpu_ticks += loadgen_proc_cpu(lg->o.pids[i]);
    s->bus_ticks = lg->o.bus_pid > 0 ? loadgen_proc_cpu(lg->o.bus_pid) : 0;
    loadgen_proc_machine(&s->busy_ticks, &s->steal_ticks);
    getrusage(RUSAGE_SELF, &ru);
    s->self_us = (int64_t)ru.ru_utime.tv_sec * 1000000 + ru.ru_utime.tv_usec
                 + (int64_t)ru.ru_stime.tv_sec * 1000000 + ru.ru_stime.tv_usec;
    s->wall_ns = loadgen_now_ns();
}

/* ---- formatting */

/* Writes fmt into out with its "%d" (if any) replaced by n. Written by
 * hand rather than with snprintf so that a command-line string is never
 * used as a format. Returns the length, or -1 when out is too small. */
static int loadgen_expand(const char *fmt, unsigned n, char *out, size_t outlen)
{
    const char *hole = strstr(fmt, "%d");
    if (!hole) {
        size_t len = strlen(fmt);
        if (len >= outlen)
            return -1;
        memcpy(out, fmt, len + 1);
        return (int)len;
    }
    int len = snprintf(out, outlen, "%.*s%u%s", (int)(hole - fmt), fmt, n,
                       hole + 2);
    return len < 0 || (size_t)len >= outlen ? -1 : len;
}

/* Writes the payload of event seq stamped now into lg->payload: exactly
 * o.size bytes when that is large enough for the two numbers. */
static size_t loadgen_payload(struct loadgen *lg, uint64_t seq, int64_t t_ns)
{
    int len = snprintf(lg->payload, lg->o.size + 64,
                       "{\"lg_s\":%" PRIu64 ",\"lg_t\":%" PRId64 ",\"pad\":\"",
                       seq, t_ns);
    size_t n = (size_t)len;
    size_t pad = lg->o.size > n + 2 ? lg->o.size - n - 2 : 0;
    memset(lg->payload + n, 'x', pad);
    n += pad;
    memcpy(lg->payload + n, "\"}", 2);
    return n + 2;
}

/* ---- receiving: hot path
 *
 * Hand-written rather than libevent's HTTP client: evhttp would give each
 * of up to 19,000 streams its own bufferevent, input evbuffer and chunk
 * callback allocations, and the generator must stay much cheaper per
 * delivery than the servers it measures. All it needs is the status
 * line, chunked framing and "data:" lines, which fit in a few small
 * state machines over the bytes of one read(). */

/* Parses the unsigned decimal after `key` in line[0..len) (spaces after
 * the colon allowed). Returns true and sets *out when found. */
static bool loadgen_find_number(const char *line, size_t len, const char *key,
                                uint64_t *out)
{
    size_t klen = strlen(key);
    const char *p = memmem(line, len, key, klen);
    if (!p)
        return false;
    const char *end = line + len;
    p += klen;
    while (p < end && *p == ' ')
        p++;
    if (p == end || *p < '0' || *p > '9')
        return false;
    uint64_t v = 0;
    while (p < end && *p >= '0' && *p <= '9')
        v = v * 10 + (uint64_t)(*p++ - '0');
    *out = v;
    return true;
}

/* One complete SSE line (without its LF). Counts a delivery for each
 * "data:" line that carries the benchmark's marker. */
static void loadgen_conn_line(struct loadgen_conn *c, const char *line,
                              size_t len, int64_t now_ns)
{
    struct loadgen *lg = c->lg;
    uint64_t seq, t_ns;

    if (len < 5 || memcmp(line, "data:", 5) != 0)
        return;
    if (!loadgen_find_number(line, len, "\"lg_s\":", &seq)
        || !loadgen_find_number(line, len, "\"lg_t\":", &t_ns)) {
        lg->parse_errors++;
        return;
    }
    lg->delivered++;
    loadgen_hist_add(lg, now_ns > (int64_t)t_ns ? (uint64_t)now_ns - t_ns : 0);
    if (seq == c->next_seq) {
        c->next_seq += lg->o.topics;
    } else if (seq > c->next_seq) {
        c->missing += (seq - c->next_seq) / lg->o.topics;
        c->next_seq = seq + lg->o.topics;
    } else {
        c->dups++;
    }
}

/* Splits SSE body bytes into lines; a partial last line waits in carry. */
static void loadgen_conn_sse(struct loadgen_conn *c, const char *p, size_t n,
                             int64_t now_ns)
{
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t len = nl ? (size_t)(nl - p) : n;
        bool fits = c->carry_len + len <= c->lg->carry_cap;

        if (!nl || c->carry_len > 0 || c->overflow) {
            if (fits && !c->overflow) {
                memcpy(c->carry + c->carry_len, p, len);
                c->carry_len += (uint32_t)len;
            } else {
                c->overflow = true;
            }
            if (!nl)
                return;
            if (!c->overflow)
                loadgen_conn_line(c, c->carry, c->carry_len, now_ns);
            else
                c->lg->parse_errors++;
            c->carry_len = 0;
            c->overflow = false;
        } else {
            loadgen_conn_line(c, p, len, now_ns);
        }
        p += len + 1;
        n -= len + 1;
    }
}

/* Decodes HTTP/1.1 chunked framing in place and passes the data on.
 * Lenient: CRs in size lines are skipped, trailers are not expected on a
 * stream. */
static void loadgen_conn_chunked(struct loadgen_conn *c, const char *p,
                                 size_t n, int64_t now_ns)
{
    while (n > 0) {
        switch (c->chunk) {
        case LOADGEN_CHUNK_SIZE: {
            char ch = *p++;
            n--;
            if (ch >= '0' && ch <= '9')
                c->chunk_left = c->chunk_left * 16 + (uint64_t)(ch - '0');
            else if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f')
                c->chunk_left = c->chunk_left * 16 + (uint64_t)((ch | 0x20) - 'a' + 10);
            else if (ch == ';')
                c->chunk = LOADGEN_CHUNK_EXT;
            else if (ch == '\n')
                c->chunk = c->chunk_left ? LOADGEN_CHUNK_DATA : LOADGEN_CHUNK_LAST;
            break;
        }
        case LOADGEN_CHUNK_EXT:
            if (*p == '\n')
                c->chunk = c->chunk_left ? LOADGEN_CHUNK_DATA : LOADGEN_CHUNK_LAST;
            p++;
            n--;
            break;
        case LOADGEN_CHUNK_DATA: {
            size_t take = n < c->chunk_left ? n : (size_t)c->chunk_left;
            loadgen_conn_sse(c, p, take, now_ns);
            p += take;
            n -= take;
            c->chunk_left -= take;
            if (c->chunk_left == 0)
                c->chunk = LOADGEN_CHUNK_DATA_END;
            break;
        }
        case LOADGEN_CHUNK_DATA_END:
            if (*p == '\n')
                c->chunk = LOADGEN_CHUNK_SIZE;
            p++;
            n--;
            break;
        case LOADGEN_CHUNK_LAST:
            return;
        }
    }
}

static void loadgen_conn_body(struct loadgen_conn *c, const char *p, size_t n,
                              int64_t now_ns)
{
    if (c->chunked)
        loadgen_conn_chunked(c, p, n, now_ns);
    else
        loadgen_conn_sse(c, p, n, now_ns);
}

/* Ends a stream: FAILED before its 200 (or when failed is set), CLOSED
 * after. Frees its event and socket (its carry buffer stays until
 * loadgen_free). Called once per stream. */
static void loadgen_conn_end(struct loadgen_conn *c, bool failed)
{
    struct loadgen *lg = c->lg;

    if (c->ev) {
        event_free(c->ev);
        c->ev = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    if (c->state == LOADGEN_CONN_STREAMING && !failed) {
        c->state = LOADGEN_CONN_CLOSED;
        lg->closed++;
    } else if (c->state != LOADGEN_CONN_STREAMING) {
        c->state = LOADGEN_CONN_FAILED;
        lg->failed++;
    }
}

/* Accumulates the response head in carry; on its end checks the status
 * and the framing, then hands the bytes after the head to the body
 * parser. The head's last byte is always in p (earlier reads did not
 * complete it), so the body starts inside p. */
static void loadgen_conn_head(struct loadgen_conn *c, const char *p, size_t n,
                              int64_t now_ns)
{
    struct loadgen *lg = c->lg;
    size_t old_len = c->carry_len;
    size_t take = n;

    if (old_len + take > lg->carry_cap - 1)
        take = lg->carry_cap - 1 - old_len;
    memcpy(c->carry + old_len, p, take);
    c->carry_len += (uint32_t)take;
    c->carry[c->carry_len] = '\0';
    char *end = strstr(c->carry, "\r\n\r\n");
    if (!end) {
        if (c->carry_len >= lg->carry_cap - 1)
            loadgen_conn_end(c, true);
        return;
    }
    size_t body_at = (size_t)(end + 4 - c->carry) - old_len; /* offset in p */
    *end = '\0';
    if (strncmp(c->carry, "HTTP/1.1 200", 12) != 0
        && strncmp(c->carry, "HTTP/1.0 200", 12) != 0) {
        loadgen_conn_end(c, true);
        return;
    }
    c->chunked = strcasestr(c->carry, "\ntransfer-encoding: chunked") != NULL;
    c->state = LOADGEN_CONN_STREAMING;
    lg->streaming++;
    c->carry_len = 0;
    if (body_at < n)
        loadgen_conn_body(c, p + body_at, n - body_at, now_ns);
}

/* Hot path: the socket is readable. One read into the shared buffer,
 * again while it comes back full. */
static void loadgen_conn_read(evutil_socket_t fd, short what, void *arg)
{
    struct loadgen_conn *c = arg;
    struct loadgen *lg = c->lg;

    for (;;) {
        ssize_t n = read(fd, lg->rbuf, LOADGEN_READ_BUF);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            loadgen_conn_end(c, false);
            return;
        }
        if (n < 0)
            return;
        int64_t now_ns = loadgen_now_ns();
        if (c->state == LOADGEN_CONN_HEAD)
            loadgen_conn_head(c, lg->rbuf, (size_t)n, now_ns);
        else
            loadgen_conn_body(c, lg->rbuf, (size_t)n, now_ns);
        if (c->fd < 0 || (size_t)n < LOADGEN_READ_BUF)
            return;
    }
}

/* The non-blocking connect finished: send the request, switch to reads. */
static void loadgen_conn_connected(evutil_socket_t fd, short what, void *arg)
{
    struct loadgen_conn *c = arg;
    struct loadgen *lg = c->lg;
    char path[512], req[1024];
    int err = 0;
    socklen_t errlen = sizeof(err);

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0 || err != 0
        || loadgen_expand(lg->o.sub_path, c->topic, path, sizeof(path)) < 0) {
        loadgen_conn_end(c, true);
        return;
    }
    int len = snprintf(req, sizeof(req),
                       "GET %s HTTP/1.1\r\nHost: %s:%d\r\n"
                       "Accept: text/event-stream\r\n\r\n",
                       path, lg->o.sub_host, lg->o.sub_port);
    /* A fresh socket's send buffer always takes a request this small. */
    if (len <= 0 || (size_t)len >= sizeof(req)
        || write(fd, req, (size_t)len) != len) {
        loadgen_conn_end(c, true);
        return;
    }
    c->state = LOADGEN_CONN_HEAD;
    event_del(c->ev);
    event_assign(c->ev, lg->base, fd, EV_READ | EV_PERSIST, loadgen_conn_read, c);
    event_add(c->ev, NULL);
}

/* Starts the non-blocking connect of stream i. */
static void loadgen_conn_open(struct loadgen *lg, unsigned i)
{
    struct loadgen_conn *c = &lg->conns[i];

    lg->opened++;
    c->state = LOADGEN_CONN_CONNECTING;
    const struct sockaddr_storage *addr = &lg->addr[i % lg->naddrs];

    c->fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        goto fail;
    if (connect(c->fd, (const struct sockaddr *)addr, lg->addrlen[i % lg->naddrs]) < 0
        && errno != EINPROGRESS)
        goto fail;
    c->ev = event_new(lg->base, c->fd, EV_WRITE, loadgen_conn_connected, c);
    if (!c->ev || event_add(c->ev, NULL) < 0)
        goto fail;
    return;
fail:
    loadgen_conn_end(c, true);
}

/* ---- publishing */

static void loadgen_redis_reply(redisAsyncContext *ac, void *r, void *arg)
{
    struct loadgen *lg = arg;
    redisReply *reply = r;

    lg->acked++;
    if (!reply || reply->type == REDIS_REPLY_ERROR)
        lg->pub_errors++;
}

/* On a failed connect hiredis frees the context after this callback
 * (without the disconnect callback): forget it. */
static void loadgen_redis_connected(const redisAsyncContext *ac, int status)
{
    struct loadgen *lg = ac->data;

    if (status == REDIS_OK)
        return;
    fprintf(stderr, "loadgen: redis connect: %s\n", ac->errstr);
    lg->redis = NULL;
}

static void loadgen_redis_disconnected(const redisAsyncContext *ac, int status)
{
    struct loadgen *lg = ac->data;

    lg->redis = NULL;
    if (status != REDIS_OK && lg->phase != LOADGEN_PHASE_DONE)
        fprintf(stderr, "loadgen: redis disconnected: %s\n", ac->errstr);
}

static void loadgen_http_reply(struct evhttp_request *req, void *arg)
{
    struct loadgen_http_pub *hp = arg;
    struct loadgen *lg = hp->lg;

    lg->acked++;
    if (!req || evhttp_request_get_response_code(req) / 100 != 2)
        lg->pub_errors++;
}

/* Sends one HTTP publish for topic k. Each topic sticks to one
 * keep-alive connection, which libevent serves in order, so the events
 * of a topic reach the server in publish order. */
static int loadgen_http_publish(struct loadgen *lg, unsigned k,
                                const char *path, size_t len)
{
    struct loadgen_http_pub *hp = &lg->http[k % lg->o.pub_conns];
    struct evhttp_request *req = evhttp_request_new(loadgen_http_reply, hp);
    if (!req)
        return -1;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Host", lg->o.pub_host);
    evhttp_add_header(h, "Content-Type", "application/json");
    evbuffer_add(evhttp_request_get_output_buffer(req), lg->payload, len);
    if (evhttp_make_request(hp->evcon, req, EVHTTP_REQ_POST, path) < 0)
        return -1; /* libevent freed req */
    return 0;
}

/* Publishes event number seq to topic seq mod K, stamped now. */
static void loadgen_publish_one(struct loadgen *lg, uint64_t seq)
{
    char topic[512];
    unsigned k = (unsigned)(seq % lg->o.topics);
    int tlen = loadgen_expand(lg->o.pub_topic, k, topic, sizeof(topic));
    size_t len = loadgen_payload(lg, seq, loadgen_now_ns());
    int rc = -1;

    lg->sent++;
    if (tlen < 0)
        rc = -1;
    else if (lg->o.pub_kind == LOADGEN_PUB_REDIS && lg->redis)
        rc = redisAsyncCommand(lg->redis, loadgen_redis_reply, lg,
                               "PUBLISH %b %b", topic, (size_t)tlen,
                               lg->payload, len) == REDIS_OK ? 0 : -1;
    else if (lg->o.pub_kind == LOADGEN_PUB_HTTP)
        rc = loadgen_http_publish(lg, k, topic, len);
    if (rc < 0) {
        lg->acked++;
        lg->pub_errors++;
    }
}

static int loadgen_pub_start(struct loadgen *lg)
{
    if (lg->o.pub_kind == LOADGEN_PUB_REDIS) {
        lg->redis = redisAsyncConnect(lg->o.pub_host, lg->o.pub_port);
        if (!lg->redis || lg->redis->err) {
            fprintf(stderr, "loadgen: redis: %s\n",
                    lg->redis ? lg->redis->errstr : "out of memory");
            if (lg->redis)
                redisAsyncFree(lg->redis);
            lg->redis = NULL;
            return -1;
        }
        lg->redis->data = lg;
        redisLibeventAttach(lg->redis, lg->base);
        redisAsyncSetConnectCallback(lg->redis, loadgen_redis_connected);
        redisAsyncSetDisconnectCallback(lg->redis, loadgen_redis_disconnected);
        return 0;
    }
    for (unsigned i = 0; i < lg->o.pub_conns && lg->o.pub_kind == LOADGEN_PUB_HTTP; i++) {
        lg->http[i].lg = lg;
        lg->http[i].evcon = evhttp_connection_base_new(
            lg->base, NULL, lg->o.pub_host, (unsigned short)lg->o.pub_port);
        if (!lg->http[i].evcon)
            return -1;
        evhttp_connection_set_timeout(lg->http[i].evcon, 30);
    }
    return 0;
}

/* ---- phases (the 1 ms tick) */

static void loadgen_phase_set(struct loadgen *lg, enum loadgen_phase phase)
{
    lg->phase = phase;
    lg->phase_ns = loadgen_now_ns();
}

/* Events each stream of topic k must receive when `sent` were published. */
static uint64_t loadgen_expected_for(const struct loadgen *lg, unsigned k)
{
    uint64_t per = lg->sent / lg->o.topics;
    return per + (k < lg->sent % lg->o.topics ? 1 : 0);
}

static void loadgen_publish_begin(struct loadgen *lg)
{
    for (unsigned i = 0; i < lg->o.conns; i++)
        lg->conns[i].counted = lg->conns[i].state == LOADGEN_CONN_STREAMING;
    lg->rss_open_kib = loadgen_server_rss(lg);
    loadgen_sample(lg, &lg->s0);
    loadgen_phase_set(lg, LOADGEN_PHASE_PUBLISH);
}

static void loadgen_publish_end(struct loadgen *lg)
{
    lg->expected = 0;
    for (unsigned i = 0; i < lg->o.conns; i++)
        if (lg->conns[i].counted)
            lg->expected += loadgen_expected_for(lg, lg->conns[i].topic);
    loadgen_phase_set(lg, LOADGEN_PHASE_DRAIN);
}

static void loadgen_finish(struct loadgen *lg)
{
    loadgen_sample(lg, &lg->s1);
    lg->rss_end_kib = loadgen_server_rss(lg);
    loadgen_phase_set(lg, LOADGEN_PHASE_DONE);
    event_base_loopbreak(lg->base);
}

static void loadgen_tick_connect(struct loadgen *lg, int64_t now)
{
    double elapsed = (double)(now - lg->phase_ns) / 1e9;
    uint64_t due = (uint64_t)(elapsed * lg->o.ramp) + 1;

    while (lg->opened < lg->o.conns && lg->opened < due)
        loadgen_conn_open(lg, lg->opened);
    bool all_answered = lg->streaming + lg->failed >= lg->o.conns;
    /* Streams still unanswered long after the ramp are left out. */
    double limit = (double)lg->o.conns / lg->o.ramp + 15.0;
    if (lg->opened < lg->o.conns || (!all_answered && elapsed <= limit))
        return;
    if (lg->streaming == 0) {
        fprintf(stderr, "loadgen: no stream could be opened\n");
        lg->aborted = true;
        loadgen_sample(lg, &lg->s0);
        loadgen_finish(lg);
        return;
    }
    loadgen_phase_set(lg, LOADGEN_PHASE_SETTLE);
    if (lg->o.pub_kind == LOADGEN_PUB_NONE)
        loadgen_sample(lg, &lg->s0); /* idle mode: CPU while idle */
}

static void loadgen_tick_publish(struct loadgen *lg, int64_t now)
{
    double elapsed = (double)(now - lg->phase_ns) / 1e9;
    if (elapsed >= lg->o.duration) {
        loadgen_publish_end(lg);
        return;
    }
    uint64_t due = (uint64_t)(elapsed * lg->o.rate) + 1;
    while (lg->sent < due)
        loadgen_publish_one(lg, lg->sent);
}

static void loadgen_tick(evutil_socket_t fd, short what, void *arg)
{
    struct loadgen *lg = arg;
    int64_t now = loadgen_now_ns();
    double in_phase = (double)(now - lg->phase_ns) / 1e9;

    if (now > lg->deadline_ns) {
        fprintf(stderr, "loadgen: run deadline passed, stopping\n");
        lg->aborted = true;
        if (lg->phase == LOADGEN_PHASE_PUBLISH)
            loadgen_publish_end(lg);
        loadgen_finish(lg);
        return;
    }
    switch (lg->phase) {
    case LOADGEN_PHASE_CONNECT:
        loadgen_tick_connect(lg, now);
        break;
    case LOADGEN_PHASE_SETTLE:
        if (lg->o.pub_kind == LOADGEN_PUB_NONE && in_phase >= lg->o.idle) {
            lg->rss_open_kib = loadgen_server_rss(lg);
            loadgen_finish(lg);
        } else if (lg->o.pub_kind != LOADGEN_PUB_NONE && in_phase >= lg->o.settle) {
            loadgen_publish_begin(lg);
        }
        break;
    case LOADGEN_PHASE_PUBLISH:
        loadgen_tick_publish(lg, now);
        break;
    case LOADGEN_PHASE_DRAIN:
        if ((lg->delivered >= lg->expected && lg->acked >= lg->sent)
            || in_phase >= lg->o.drain)
            loadgen_finish(lg);
        break;
    case LOADGEN_PHASE_DONE:
        break;
    }
}

/* ---- results */

/* Sums gaps (including events never received at the end) and duplicates
 * over the streams that were open when publishing began. */
static void loadgen_count_losses(const struct loadgen *lg, uint64_t *missing,
                                 uint64_t *dups)
{
    *missing = 0;
    *dups = 0;
    for (unsigned i = 0; i < lg->o.conns; i++) {
        const struct loadgen_conn *c = &lg->conns[i];
        if (!c->counted)
            continue;
        uint64_t end = c->topic + lg->o.topics * loadgen_expected_for(lg, c->topic);
        *missing += c->missing;
        if (end > c->next_seq)
            *missing += (end - c->next_seq) / lg->o.topics;
        *dups += c->dups;
    }
}

/* The figures of the RESULT line; times in seconds over the window. */
struct loadgen_summary {
    uint64_t missing, dups;
    unsigned open;
    double window, cpu, bus, self, other, steal;
    double p50, p90, p99, max; /* ms */
};

static void loadgen_summarize(const struct loadgen *lg, struct loadgen_summary *m)
{
    double tick_s = 1.0 / (double)sysconf(_SC_CLK_TCK);
    const struct loadgen_sample *a = &lg->s0, *b = &lg->s1;

    loadgen_count_losses(lg, &m->missing, &m->dups);
    m->open = lg->streaming - lg->closed;
    m->window = (double)(b->wall_ns - a->wall_ns) / 1e9;
    m->cpu = (double)(b->cpu_ticks - a->cpu_ticks) * tick_s;
    m->bus = (double)(b->bus_ticks - a->bus_ticks) * tick_s;
    m->self = (double)(b->self_us - a->self_us) / 1e6;
    m->steal = (double)(b->steal_ticks - a->steal_ticks) * tick_s;
    /* Everything else the machine did meanwhile: other tenants, builds,
     * kernel threads. A high value means the run was disturbed. */
    m->other = (double)(b->busy_ticks - a->busy_ticks) * tick_s - m->cpu
               - m->bus - m->self - m->steal;
    if (m->other < 0)
        m->other = 0;
    m->p50 = loadgen_hist_quantile(lg, 0.50) / 1e6;
    m->p90 = loadgen_hist_quantile(lg, 0.90) / 1e6;
    m->p99 = loadgen_hist_quantile(lg, 0.99) / 1e6;
    m->max = lg->lat_max_ns / 1e6;
}

/* Percent of one core over the window. */
static double loadgen_pct(const struct loadgen_summary *m, double seconds)
{
    return m->window > 0 ? 100.0 * seconds / m->window : 0;
}

static void loadgen_report(const struct loadgen *lg)
{
    struct loadgen_summary m;

    loadgen_summarize(lg, &m);
    double per_delivery = lg->delivered ? m.cpu * 1e6 / (double)lg->delivered : 0;
    double per_event = lg->sent ? m.cpu * 1e6 / (double)lg->sent : 0;
    double rss_per_stream = m.open
        ? ((double)lg->rss_open_kib - (double)lg->rss_before_kib) * 1024.0 / m.open
        : 0;

    printf("RESULT label=%s workload=%s conns=%u topics=%u ok=%u failed=%u"
           " closed=%u events=%" PRIu64 " pub_errors=%" PRIu64
           " expected=%" PRIu64 " delivered=%" PRIu64 " missing=%" PRIu64
           " dups=%" PRIu64 " parse_errors=%" PRIu64,
           lg->o.label, lg->o.workload, lg->o.conns, lg->o.topics,
           lg->streaming, lg->failed, lg->closed, lg->sent, lg->pub_errors,
           lg->expected, lg->delivered, m.missing, m.dups, lg->parse_errors);
    printf(" p50_us=%.0f p90_us=%.0f p99_us=%.0f max_us=%.0f window_s=%.2f"
           " deliveries_per_s=%.0f server_cpu_s=%.2f server_cpu_pct=%.1f"
           " cpu_per_delivery_us=%.2f cpu_per_event_us=%.1f bus_cpu_s=%.2f"
           " client_cpu_pct=%.1f other_cpu_pct=%.1f steal_pct=%.1f",
           m.p50 * 1e3, m.p90 * 1e3, m.p99 * 1e3, m.max * 1e3, m.window,
           m.window > 0 ? (double)lg->delivered / m.window : 0, m.cpu,
           loadgen_pct(&m, m.cpu), per_delivery, per_event, m.bus,
           loadgen_pct(&m, m.self), loadgen_pct(&m, m.other),
           loadgen_pct(&m, m.steal));
    printf(" rss_before_kib=%" PRIu64 " rss_open_kib=%" PRIu64
           " rss_end_kib=%" PRIu64 " rss_per_stream_b=%.0f aborted=%d\n",
           lg->rss_before_kib, lg->rss_open_kib, lg->rss_end_kib,
           rss_per_stream, lg->aborted);
    printf("%s %s: %u/%u streams ok, %" PRIu64 "/%" PRIu64
           " delivered (missing %" PRIu64 ", dup %" PRIu64 "), latency p50 %.2f"
           " ms p99 %.2f ms max %.2f ms, server CPU %.2f s = %.2f us/delivery,"
           " RSS +%.0f B/stream, loadgen %.0f%%, other %.0f%%\n",
           lg->o.label, lg->o.workload, lg->streaming, lg->o.conns,
           lg->delivered, lg->expected, m.missing, m.dups, m.p50, m.p99,
           m.max, m.cpu, per_delivery, rss_per_stream, loadgen_pct(&m, m.self),
           loadgen_pct(&m, m.other));
    fflush(stdout);
}

/* True when the run with --check was perfect. */
static bool loadgen_perfect(const struct loadgen *lg)
{
    uint64_t missing, dups;

    loadgen_count_losses(lg, &missing, &dups);
    return !lg->aborted && lg->failed == 0 && lg->closed == 0 && missing == 0
           && dups == 0 && lg->pub_errors == 0 && lg->parse_errors == 0
           && lg->delivered == lg->expected && lg->streaming == lg->o.conns;
}

/* ---- setup */

static void loadgen_usage(FILE *out)
{
    fprintf(out,
        "usage: loadgen --sub http://HOST:PORT/PATH [options]\n"
        "  --sub URL          SSE URL; one %%d in PATH becomes i mod TOPICS\n"
        "  --sub-ports P,P..  stream i connects to the (i mod n)th port instead\n"
        "                     of the URL's (replicas of one server; at most 4)\n"
        "  --pub redis://HOST:PORT | http://HOST:PORT   (none: idle mode)\n"
        "  --pub-topic FMT    redis channel or http path; %%d = event mod TOPICS\n"
        "  --pub-conns N      http publisher connections (default 4)\n"
        "  --conns N          streams (default 100)\n"
        "  --topics K         distinct topics (default 1)\n"
        "  --ramp N           new connections per second (default 2000)\n"
        "  --rate R           events per second (default 10)\n"
        "  --duration S       publishing seconds (default 10)\n"
        "  --size B           payload bytes (default 128)\n"
        "  --settle S         wait after connecting (default 1)\n"
        "  --drain S          max wait for late deliveries (default 5)\n"
        "  --idle S           idle mode: wait with all streams open (default 5)\n"
        "  --pid PID          server process to sample (repeatable, summed)\n"
        "  --bus-pid PID      bus process (redis-server) to sample\n"
        "  --label L --workload W   names in the RESULT line\n"
        "  --check            exit 2 unless every delivery arrived exactly once\n");
}

/* Splits "scheme://host:port[/path]" (scheme checked by the caller). */
static int loadgen_parse_url(const char *url, char *host, size_t hostlen,
                             int *port, char *path, size_t pathlen)
{
    const char *p = strstr(url, "://");
    if (!p)
        return -1;
    p += 3;
    const char *colon = strchr(p, ':');
    if (!colon || (size_t)(colon - p) >= hostlen || colon == p)
        return -1;
    memcpy(host, p, (size_t)(colon - p));
    host[colon - p] = '\0';
    char *end;
    long v = strtol(colon + 1, &end, 10);
    if (v <= 0 || v > 65535 || (*end != '\0' && *end != '/'))
        return -1;
    *port = (int)v;
    if (path && snprintf(path, pathlen, "%s", *end ? end : "/") >= (int)pathlen)
        return -1;
    return 0;
}

/* A pattern may hold at most one '%', as "%d". */
static bool loadgen_pattern_ok(const char *fmt)
{
    const char *pct = strchr(fmt, '%');
    return !pct || (pct[1] == 'd' && !strchr(pct + 1, '%'));
}

/* "P,P,..." into o->sub_ports: 0, or -1 when malformed or too many. */
static int loadgen_parse_ports(struct loadgen_opts *o, const char *list)
{
    const char *p = list;

    o->nsub_ports = 0;
    for (;;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v <= 0 || v > 65535 || o->nsub_ports == LOADGEN_MAX_SUB_PORTS)
            return -1;
        o->sub_ports[o->nsub_ports++] = (int)v;
        if (*end == '\0')
            return 0;
        if (*end != ',')
            return -1;
        p = end + 1;
    }
}

/* Fills o from the command line: 0, 1 for --help, -1 on a bad option. */
static int loadgen_parse_args(struct loadgen_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"sub", 1, NULL, 'S'}, {"pub", 1, NULL, 'P'}, {"pub-topic", 1, NULL, 'T'},
        {"pub-conns", 1, NULL, 'C'}, {"conns", 1, NULL, 'n'},
        {"topics", 1, NULL, 'k'}, {"ramp", 1, NULL, 'r'}, {"rate", 1, NULL, 'R'},
        {"duration", 1, NULL, 'd'}, {"size", 1, NULL, 's'},
        {"settle", 1, NULL, 'w'}, {"drain", 1, NULL, 'D'}, {"idle", 1, NULL, 'i'},
        {"pid", 1, NULL, 'p'}, {"bus-pid", 1, NULL, 'b'}, {"label", 1, NULL, 'l'},
        {"workload", 1, NULL, 'W'}, {"check", 0, NULL, 'c'}, {"help", 0, NULL, 'h'},
        {"sub-ports", 1, NULL, 'o'},
        {NULL, 0, NULL, 0},
    };
    const char *sub = NULL, *pub = NULL;
    int ch;

    *o = (struct loadgen_opts){
        .pub_conns = 4, .conns = 100, .topics = 1, .ramp = 2000, .rate = 10,
        .duration = 10, .settle = 1, .drain = 5, .idle = 5, .size = 128,
        .label = "server", .workload = "run",
    };
    snprintf(o->pub_topic, sizeof(o->pub_topic), "bench");
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'S': sub = optarg; break;
        case 'P': pub = optarg; break;
        case 'T': snprintf(o->pub_topic, sizeof(o->pub_topic), "%s", optarg); break;
        case 'C': o->pub_conns = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'n': o->conns = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'k': o->topics = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'r': o->ramp = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'R': o->rate = strtod(optarg, NULL); break;
        case 'd': o->duration = strtod(optarg, NULL); break;
        case 's': o->size = strtoul(optarg, NULL, 10); break;
        case 'w': o->settle = strtod(optarg, NULL); break;
        case 'D': o->drain = strtod(optarg, NULL); break;
        case 'i': o->idle = strtod(optarg, NULL); break;
        case 'p':
            if (o->npids < LOADGEN_MAX_PIDS)
                o->pids[o->npids++] = atoi(optarg);
            break;
        case 'b': o->bus_pid = atoi(optarg); break;
        case 'l': o->label = optarg; break;
        case 'W': o->workload = optarg; break;
        case 'o':
            if (loadgen_parse_ports(o, optarg) < 0) {
                fprintf(stderr, "loadgen: bad --sub-ports %s\n", optarg);
                return -1;
            }
            break;
        case 'c': o->check = true; break;
        case 'h': return 1;
        default: return -1;
        }
    }
    if (!sub || strncmp(sub, "http://", 7) != 0
        || loadgen_parse_url(sub, o->sub_host, sizeof(o->sub_host), &o->sub_port,
                             o->sub_path, sizeof(o->sub_path)) < 0) {
        fprintf(stderr, "loadgen: --sub http://HOST:PORT/PATH is required\n");
        return -1;
    }
    if (pub) {
        o->pub_kind = strncmp(pub, "redis://", 8) == 0 ? LOADGEN_PUB_REDIS
                      : strncmp(pub, "http://", 7) == 0 ? LOADGEN_PUB_HTTP
                      : LOADGEN_PUB_NONE;
        if (o->pub_kind == LOADGEN_PUB_NONE
            || loadgen_parse_url(pub, o->pub_host, sizeof(o->pub_host),
                                 &o->pub_port, NULL, 0) < 0) {
            fprintf(stderr, "loadgen: bad --pub URL\n");
            return -1;
        }
    }
    if (o->conns == 0 || o->topics == 0 || o->ramp == 0 || o->rate <= 0
        || o->duration <= 0 || o->pub_conns == 0
        || o->pub_conns > LOADGEN_MAX_PUB_CONNS || o->size > 1 << 20
        || !loadgen_pattern_ok(o->sub_path) || !loadgen_pattern_ok(o->pub_topic)) {
        fprintf(stderr, "loadgen: bad option value\n");
        return -1;
    }
    return 0;
}

static int loadgen_resolve(struct loadgen *lg)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    unsigned n = lg->o.nsub_ports ? lg->o.nsub_ports : 1;
    char port[16];

    for (lg->naddrs = 0; lg->naddrs < n; lg->naddrs++) {
        struct addrinfo *res = NULL;
        snprintf(port, sizeof(port), "%d",
                 lg->o.nsub_ports ? lg->o.sub_ports[lg->naddrs] : lg->o.sub_port);
        int rc = getaddrinfo(lg->o.sub_host, port, &hints, &res);
        if (rc != 0) {
            fprintf(stderr, "loadgen: %s: %s\n", lg->o.sub_host, gai_strerror(rc));
            return -1;
        }
        memcpy(&lg->addr[lg->naddrs], res->ai_addr, res->ai_addrlen);
        lg->addrlen[lg->naddrs] = res->ai_addrlen;
        freeaddrinfo(res);
    }
    return 0;
}

/* Allocates everything the run needs. 0, or -1 (loadgen_free cleans up). */
static int loadgen_init(struct loadgen *lg)
{
    lg->carry_cap = 2 * lg->o.size + 1024;
    lg->base = event_base_new();
    lg->conns = calloc(lg->o.conns, sizeof(*lg->conns));
    lg->rbuf = malloc(LOADGEN_READ_BUF);
    lg->payload = malloc(lg->o.size + 64);
    if (!lg->base || !lg->conns || !lg->rbuf || !lg->payload)
        return -1;
    for (unsigned i = 0; i < lg->o.conns; i++) {
        struct loadgen_conn *c = &lg->conns[i];
        c->lg = lg;
        c->fd = -1;
        c->topic = i % lg->o.topics;
        c->next_seq = c->topic;
        c->carry = malloc(lg->carry_cap);
        if (!c->carry)
            return -1;
    }
    lg->tick = event_new(lg->base, -1, EV_PERSIST, loadgen_tick, lg);
    if (!lg->tick || loadgen_resolve(lg) < 0 || loadgen_pub_start(lg) < 0)
        return -1;
    struct timeval tv = {0, LOADGEN_TICK_US};
    event_add(lg->tick, &tv);
    double budget = (double)lg->o.conns / lg->o.ramp + 15 + lg->o.settle
                    + (lg->o.pub_kind == LOADGEN_PUB_NONE
                       ? lg->o.idle : lg->o.duration + lg->o.drain) + 10;
    lg->rss_before_kib = loadgen_server_rss(lg);
    loadgen_phase_set(lg, LOADGEN_PHASE_CONNECT);
    lg->deadline_ns = lg->phase_ns + (int64_t)(budget * 1e9);
    return 0;
}

static void loadgen_free(struct loadgen *lg)
{
    for (unsigned i = 0; lg->conns && i < lg->o.conns; i++) {
        struct loadgen_conn *c = &lg->conns[i];
        if (c->ev)
            event_free(c->ev);
        if (c->fd >= 0)
            close(c->fd);
        free(c->carry);
    }
    free(lg->conns);
    if (lg->redis)
        redisAsyncFree(lg->redis); /* calls the disconnect callback */
    for (unsigned i = 0; i < LOADGEN_MAX_PUB_CONNS; i++)
        if (lg->http[i].evcon)
            evhttp_connection_free(lg->http[i].evcon);
    if (lg->tick)
        event_free(lg->tick);
    if (lg->base)
        event_base_free(lg->base);
    free(lg->rbuf);
    free(lg->payload);
}

int main(int argc, char **argv)
{
    struct loadgen *lg = calloc(1, sizeof(*lg));
    int status = 1;

    if (!lg)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    int rc = loadgen_parse_args(&lg->o, argc, argv);
    if (rc != 0) {
        loadgen_usage(rc > 0 ? stdout : stderr);
        status = rc > 0 ? 0 : 1;
        goto out;
    }
    if (loadgen_init(lg) < 0) {
        fprintf(stderr, "loadgen: setup failed\n");
        goto out;
    }
    event_base_dispatch(lg->base);
    loadgen_report(lg);
    status = lg->o.check && !loadgen_perfect(lg) ? 2 : 0;
out:
    loadgen_free(lg);
    free(lg);
    return status;
}
