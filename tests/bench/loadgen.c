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
 * Transports (--tls, --h2 M): cleartext HTTP/1.1 by default; HTTP/1.1
 * over TLS with one TLS connection per stream; or HTTP/2 over TLS (ALPN
 * "h2"), M streams per connection, so N streams use ceil(N/M)
 * connections. TLS is OpenSSL driven by hand on the same non-blocking
 * sockets and libevent events (no bufferevent, whose evbuffers would
 * allocate per read), with read-ahead so that one readiness costs one
 * read(2); certificates are not verified. HTTP/2 framing is nghttp2's
 * (client session, 1 MiB stream window, 16 MiB connection window,
 * automatic WINDOW_UPDATEs); its DATA carries the SSE text itself, which
 * goes into the same line splitter. nghttp2 allocates through counting
 * wrappers, so the RESULT line shows what it allocated while publishing
 * (h2_allocs: window updates, not deliveries).
 *
 * One file on purpose: the CMake target builds this file alone, and the
 * tool is read as a whole next to bench.sh.
 *
 * Output: one line "RESULT key=value ..." for scripts (its last keys:
 * transport, connections, the negotiated TLS protocol/cipher, h2_allocs),
 * then one line for people. Exit status 0; 1 on a usage or setup error;
 * 2 with --check when the run was not perfect (a failed stream, a
 * missing or duplicate delivery, a publish error).
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
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#define LOADGEN_HIST_BUCKETS 976 /* see loadgen_hist_index */
#define LOADGEN_READ_BUF (256 * 1024)
#define LOADGEN_MAX_PIDS 4
#define LOADGEN_MAX_SUB_PORTS 4
#define LOADGEN_MAX_PUB_CONNS 16
#define LOADGEN_TICK_US 1000
#define LOADGEN_MAX_H2_STREAMS 1000 /* --h2 M: at most this many per connection */
#define LOADGEN_H2_STREAM_WINDOW (1 << 20)
#define LOADGEN_H2_CONN_WINDOW (16 << 20)

enum loadgen_transport {
    LOADGEN_TRANSPORT_H1,     /* cleartext HTTP/1.1, a connection per stream */
    LOADGEN_TRANSPORT_H1_TLS, /* HTTP/1.1 over TLS, a connection per stream */
    LOADGEN_TRANSPORT_H2,     /* HTTP/2 over TLS, h2_streams per connection */
};

enum loadgen_conn_state {
    LOADGEN_CONN_UNOPENED,
    LOADGEN_CONN_CONNECTING, /* TCP connect, then TLS handshake if any */
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
    enum loadgen_transport transport;
    unsigned h2_streams;    /* --h2 M: streams per HTTP/2 connection */
    const char *label;
    const char *workload;
};

struct loadgen;

/* One SSE stream: over its own connection (HTTP/1.1, cleartext or TLS),
 * or one stream of an HTTP/2 connection (then fd -1, ev and ssl NULL:
 * the connection is a struct loadgen_h2conn). */
struct loadgen_conn {
    struct loadgen *lg;
    struct event *ev;       /* owned; NULL until opened */
    SSL *ssl;               /* owned; HTTP/1.1 over TLS */
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

/* One HTTP/2 connection over TLS, carrying streams first .. first+n-1. */
struct loadgen_h2conn {
    struct loadgen *lg;
    struct event *ev;          /* owned */
    SSL *ssl;                  /* owned */
    nghttp2_session *session;  /* owned; NULL until the handshake is done */
    const uint8_t *out;        /* nghttp2's output SSL_write has not taken */
    size_t out_len;
    unsigned first, n;
    int fd;
    bool waiting_write;        /* ev also waits for writability */
    bool ended;
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
    uint64_t h2_allocs; /* nghttp2's allocations so far */
};

struct loadgen {
    struct loadgen_opts o;
    struct event_base *base;         /* owned */
    struct event *tick;              /* owned */
    struct sockaddr_storage addr[LOADGEN_MAX_SUB_PORTS];
    socklen_t addrlen[LOADGEN_MAX_SUB_PORTS];
    unsigned naddrs;                 /* stream i connects to addr[i mod naddrs] */
    struct loadgen_conn *conns;      /* owned, o.conns of them */
    SSL_CTX *ssl_ctx;                /* owned; --tls and --h2 */
    struct loadgen_h2conn *h2conns;  /* owned, nh2conns of them; --h2 */
    unsigned nh2conns;
    nghttp2_session_callbacks *h2_callbacks; /* owned; --h2 */
    nghttp2_mem h2_mem;              /* nghttp2's allocator: counts calls */
    uint64_t h2_allocs;
    int64_t h2_now_ns;               /* when the bytes nghttp2 parses were read */
    char tls_desc[96];               /* protocol/cipher of the first handshake */
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
    s->h2_allocs = lg->h2_allocs;
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
 * after. Frees its event, TLS state and socket (its carry buffer stays
 * until loadgen_free). A stream already ended stays as it is. */
static void loadgen_conn_end(struct loadgen_conn *c, bool failed)
{
    struct loadgen *lg = c->lg;

    if (c->state == LOADGEN_CONN_FAILED || c->state == LOADGEN_CONN_CLOSED)
        return;
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
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

/* Bytes of an HTTP/1.1 stream's connection: the response head, then the
 * body. */
static void loadgen_conn_input(struct loadgen_conn *c, const char *p, size_t n,
                               int64_t now_ns)
{
    if (c->state == LOADGEN_CONN_HEAD)
        loadgen_conn_head(c, p, n, now_ns);
    else
        loadgen_conn_body(c, p, n, now_ns);
}

/* Hot path over TLS: one SSL_read per record into the shared buffer.
 * With read-ahead, OpenSSL takes what the socket holds in one read(2);
 * records left in its buffer (SSL_has_pending) are read at once, since
 * the socket will not signal them again. */
static void loadgen_conn_read_tls(struct loadgen_conn *c)
{
    struct loadgen *lg = c->lg;

    for (;;) {
        int n = SSL_read(c->ssl, lg->rbuf, LOADGEN_READ_BUF);
        if (n <= 0) {
            /* WANT_WRITE (a renegotiation or KeyUpdate answer) is not
             * expected from these servers: it ends the stream, visibly. */
            if (SSL_get_error(c->ssl, n) == SSL_ERROR_WANT_READ)
                return;
            ERR_clear_error();
            loadgen_conn_end(c, false);
            return;
        }
        loadgen_conn_input(c, lg->rbuf, (size_t)n, loadgen_now_ns());
        if (c->fd < 0 || !SSL_has_pending(c->ssl))
            return;
    }
}

/* Hot path: the socket is readable. One read into the shared buffer,
 * again while it comes back full. */
static void loadgen_conn_read(evutil_socket_t fd, short what, void *arg)
{
    struct loadgen_conn *c = arg;
    struct loadgen *lg = c->lg;

    if (c->ssl) {
        loadgen_conn_read_tls(c);
        return;
    }
    for (;;) {
        ssize_t n = read(fd, lg->rbuf, LOADGEN_READ_BUF);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            loadgen_conn_end(c, false);
            return;
        }
        if (n < 0)
            return;
        loadgen_conn_input(c, lg->rbuf, (size_t)n, loadgen_now_ns());
        if (c->fd < 0 || (size_t)n < LOADGEN_READ_BUF)
            return;
    }
}

/* Re-points ev (not necessarily pending) at fd with new flags and
 * callback. */
static int loadgen_event_set(struct loadgen *lg, struct event *ev, int fd,
                             short events, event_callback_fn cb, void *arg)
{
    event_del(ev);
    if (event_assign(ev, lg->base, fd, events, cb, arg) < 0)
        return -1;
    return event_add(ev, NULL);
}

/* ---- TLS (HTTP/1.1 and HTTP/2) */

/* The client context: no verification, read-ahead, partial writes (for
 * HTTP/2's output), no session cache (every connection does a full
 * handshake, as N browsers would), OpenSSL's default versions and
 * cipher suites (the server's preference decides; the RESULT line
 * names what was negotiated). */
static SSL_CTX *loadgen_tls_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (!ctx)
        return NULL;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    return ctx;
}

/* A client SSL on a connected socket, offering one ALPN protocol (in
 * wire format, alpn_len bytes). NULL on failure. */
static SSL *loadgen_tls_new(struct loadgen *lg, int fd, const char *alpn,
                            unsigned alpn_len)
{
    SSL *ssl = SSL_new(lg->ssl_ctx);

    if (!ssl)
        return NULL;
    /* SSL_set_alpn_protos returns 0 on success. */
    if (SSL_set_fd(ssl, fd) != 1
        || SSL_set_alpn_protos(ssl, (const unsigned char *)alpn, alpn_len) != 0) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    SSL_set_connect_state(ssl);
    return ssl;
}

/* Advances a handshake: 1 done, 0 waiting (*events says for what), -1
 * failed. The first completed one names the protocol and cipher. */
static int loadgen_tls_handshake(struct loadgen *lg, SSL *ssl, short *events)
{
    int rc = SSL_do_handshake(ssl);

    if (rc == 1) {
        if (lg->tls_desc[0] == '\0')
            snprintf(lg->tls_desc, sizeof(lg->tls_desc), "%s/%s",
                     SSL_get_version(ssl), SSL_get_cipher_name(ssl));
        return 1;
    }
    switch (SSL_get_error(ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        *events = EV_READ;
        return 0;
    case SSL_ERROR_WANT_WRITE:
        *events = EV_WRITE;
        return 0;
    default:
        ERR_clear_error();
        return -1;
    }
}

/* ---- HTTP/1.1 streams: connect, handshake, request */

/* Sends the stream's GET and switches its event to reads. */
static void loadgen_conn_request(struct loadgen_conn *c)
{
    struct loadgen *lg = c->lg;
    char path[512], req[1024];

    if (loadgen_expand(lg->o.sub_path, c->topic, path, sizeof(path)) < 0) {
        loadgen_conn_end(c, true);
        return;
    }
    int len = snprintf(req, sizeof(req),
                       "GET %s HTTP/1.1\r\nHost: %s:%d\r\n"
                       "Accept: text/event-stream\r\n\r\n",
                       path, lg->o.sub_host, lg->o.sub_port);
    if (len <= 0 || (size_t)len >= sizeof(req)) {
        loadgen_conn_end(c, true);
        return;
    }
    /* A fresh socket's send buffer always takes a request this small. */
    int sent = c->ssl ? SSL_write(c->ssl, req, len)
                      : (int)write(c->fd, req, (size_t)len);
    if (sent != len
        || loadgen_event_set(lg, c->ev, c->fd, EV_READ | EV_PERSIST,
                             loadgen_conn_read, c) < 0) {
        ERR_clear_error();
        loadgen_conn_end(c, true);
        return;
    }
    c->state = LOADGEN_CONN_HEAD;
}

/* A step of a stream's TLS handshake; the request once it is done. */
static void loadgen_conn_tls_step(evutil_socket_t fd, short what, void *arg)
{
    struct loadgen_conn *c = arg;
    short events = 0;
    int rc = loadgen_tls_handshake(c->lg, c->ssl, &events);

    if (rc < 0
        || (rc == 0
            && loadgen_event_set(c->lg, c->ev, c->fd, events,
                                 loadgen_conn_tls_step, c) < 0)) {
        loadgen_conn_end(c, true);
        return;
    }
    if (rc == 1)
        loadgen_conn_request(c);
}

/* The non-blocking connect finished: send the request (cleartext) or
 * begin the TLS handshake. */
static void loadgen_conn_connected(evutil_socket_t fd, short what, void *arg)
{
    struct loadgen_conn *c = arg;
    struct loadgen *lg = c->lg;
    int err = 0;
    socklen_t errlen = sizeof(err);

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0 || err != 0) {
        loadgen_conn_end(c, true);
        return;
    }
    if (lg->o.transport == LOADGEN_TRANSPORT_H1) {
        loadgen_conn_request(c);
        return;
    }
    c->ssl = loadgen_tls_new(lg, fd, "\x08http/1.1", 9);
    if (!c->ssl) {
        loadgen_conn_end(c, true);
        return;
    }
    loadgen_conn_tls_step(fd, 0, c);
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

/* ---- HTTP/2 over TLS: M streams per connection (nghttp2) */

/* nghttp2's allocator: the C library's, counted. */
static void *loadgen_h2_malloc(size_t size, void *ud)
{
    ((struct loadgen *)ud)->h2_allocs++;
    return malloc(size);
}

static void loadgen_h2_free(void *ptr, void *ud)
{
    free(ptr);
}

static void *loadgen_h2_calloc(size_t nmemb, size_t size, void *ud)
{
    ((struct loadgen *)ud)->h2_allocs++;
    return calloc(nmemb, size);
}

static void *loadgen_h2_realloc(void *ptr, size_t size, void *ud)
{
    ((struct loadgen *)ud)->h2_allocs++;
    return realloc(ptr, size);
}

/* Ends the connection and every stream on it not ended yet (CLOSED
 * after its 200, FAILED before). Never called from inside nghttp2. */
static void loadgen_h2_end(struct loadgen_h2conn *h)
{
    if (h->ended)
        return;
    h->ended = true;
    for (unsigned i = 0; i < h->n; i++)
        loadgen_conn_end(&h->lg->conns[h->first + i], false);
    if (h->session) {
        nghttp2_session_del(h->session);
        h->session = NULL;
    }
    if (h->ssl) {
        SSL_free(h->ssl);
        h->ssl = NULL;
    }
    if (h->ev) {
        event_free(h->ev);
        h->ev = NULL;
    }
    if (h->fd >= 0) {
        close(h->fd);
        h->fd = -1;
    }
}

/* The response's :status: 200 starts the stream, anything else fails it
 * (and cancels it). */
static int loadgen_h2_on_header(nghttp2_session *session,
                                const nghttp2_frame *frame, const uint8_t *name,
                                size_t namelen, const uint8_t *value,
                                size_t valuelen, uint8_t flags, void *ud)
{
    struct loadgen_h2conn *h = ud;
    int32_t id = frame->hd.stream_id;

    if (frame->hd.type != NGHTTP2_HEADERS || namelen != 7
        || memcmp(name, ":status", 7) != 0)
        return 0;
    struct loadgen_conn *c = nghttp2_session_get_stream_user_data(session, id);
    if (!c || c->state != LOADGEN_CONN_HEAD)
        return 0;
    if (valuelen == 3 && memcmp(value, "200", 3) == 0) {
        c->state = LOADGEN_CONN_STREAMING;
        h->lg->streaming++;
        return 0;
    }
    loadgen_conn_end(c, true);
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
    return 0;
}

/* Hot path: a DATA frame's payload (or part of it) is SSE text. */
static int loadgen_h2_on_data(nghttp2_session *session, uint8_t flags,
                              int32_t id, const uint8_t *data, size_t len,
                              void *ud)
{
    struct loadgen_h2conn *h = ud;
    struct loadgen_conn *c = nghttp2_session_get_stream_user_data(session, id);

    if (c && c->state == LOADGEN_CONN_STREAMING)
        loadgen_conn_sse(c, (const char *)data, len, h->lg->h2_now_ns);
    return 0;
}

/* The server ended or reset a stream. */
static int loadgen_h2_on_close(nghttp2_session *session, int32_t id,
                               uint32_t error_code, void *ud)
{
    struct loadgen_conn *c = nghttp2_session_get_stream_user_data(session, id);

    if (c)
        loadgen_conn_end(c, false);
    return 0;
}

static nghttp2_session_callbacks *loadgen_h2_callbacks(void)
{
    nghttp2_session_callbacks *cb;

    if (nghttp2_session_callbacks_new(&cb) != 0)
        return NULL;
    nghttp2_session_callbacks_set_on_header_callback(cb, loadgen_h2_on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, loadgen_h2_on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, loadgen_h2_on_close);
    return cb;
}

static void loadgen_h2_io(evutil_socket_t fd, short what, void *arg);

/* Hands nghttp2's output to SSL_write until none is left or the socket
 * is full; in the latter case the event also waits for writability (and
 * the same bytes are offered again, as SSL_write requires). 0, or -1
 * when the connection failed. */
static int loadgen_h2_flush(struct loadgen_h2conn *h)
{
    for (;;) {
        if (h->out_len == 0) {
            ssize_t n = nghttp2_session_mem_send(h->session, &h->out);
            if (n < 0)
                return -1;
            if (n == 0)
                break;
            h->out_len = (size_t)n;
        }
        int w = SSL_write(h->ssl, h->out, (int)h->out_len);
        if (w <= 0) {
            int err = SSL_get_error(h->ssl, w);
            if (err != SSL_ERROR_WANT_WRITE && err != SSL_ERROR_WANT_READ) {
                ERR_clear_error();
                return -1;
            }
            if (h->waiting_write)
                return 0;
            h->waiting_write = true;
            return loadgen_event_set(h->lg, h->ev, h->fd,
                                     EV_READ | EV_WRITE | EV_PERSIST,
                                     loadgen_h2_io, h);
        }
        h->out += w;
        h->out_len -= (size_t)w;
    }
    if (!h->waiting_write)
        return 0;
    h->waiting_write = false;
    return loadgen_event_set(h->lg, h->ev, h->fd, EV_READ | EV_PERSIST,
                             loadgen_h2_io, h);
}

/* Hot path: every record the socket holds goes through nghttp2 (whose
 * callbacks do the counting). 0, or -1 when the connection ended. */
static int loadgen_h2_read(struct loadgen_h2conn *h)
{
    struct loadgen *lg = h->lg;

    for (;;) {
        int n = SSL_read(h->ssl, lg->rbuf, LOADGEN_READ_BUF);
        if (n <= 0) {
            if (SSL_get_error(h->ssl, n) == SSL_ERROR_WANT_READ)
                return 0;
            ERR_clear_error();
            return -1;
        }
        lg->h2_now_ns = loadgen_now_ns();
        if (nghttp2_session_mem_recv(h->session, (const uint8_t *)lg->rbuf,
                                     (size_t)n) != n)
            return -1;
        if (!SSL_has_pending(h->ssl))
            return 0;
    }
}

/* The connection's socket is readable (or writable with output waiting). */
static void loadgen_h2_io(evutil_socket_t fd, short what, void *arg)
{
    struct loadgen_h2conn *h = arg;

    if ((what & EV_READ) && loadgen_h2_read(h) < 0) {
        loadgen_h2_end(h);
        return;
    }
    if (loadgen_h2_flush(h) < 0
        || (!nghttp2_session_want_read(h->session)
            && !nghttp2_session_want_write(h->session)))
        loadgen_h2_end(h);
}

static nghttp2_nv loadgen_nv(const char *name, const char *value)
{
    nghttp2_nv nv = {(uint8_t *)name, (uint8_t *)value, strlen(name),
                     strlen(value), NGHTTP2_NV_FLAG_NONE};
    return nv;
}

/* After the handshake: the session, our SETTINGS and windows, and one GET
 * per stream. 0, or -1 when the connection must end. */
static int loadgen_h2_start(struct loadgen_h2conn *h)
{
    struct loadgen *lg = h->lg;
    const unsigned char *proto = NULL;
    unsigned proto_len = 0;
    char authority[300], path[512];

    SSL_get0_alpn_selected(h->ssl, &proto, &proto_len);
    if (proto_len != 2 || memcmp(proto, "h2", 2) != 0) {
        fprintf(stderr, "loadgen: the server did not choose h2 by ALPN\n");
        return -1;
    }
    if (nghttp2_session_client_new3(&h->session, lg->h2_callbacks, h, NULL,
                                    &lg->h2_mem) != 0)
        return -1;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, LOADGEN_H2_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    if (nghttp2_submit_settings(h->session, NGHTTP2_FLAG_NONE, iv, 2) != 0
        || nghttp2_session_set_local_window_size(h->session, NGHTTP2_FLAG_NONE,
                                                 0, LOADGEN_H2_CONN_WINDOW) != 0)
        return -1;
    snprintf(authority, sizeof(authority), "%s:%d", lg->o.sub_host,
             lg->o.sub_port);
    for (unsigned i = 0; i < h->n; i++) {
        struct loadgen_conn *c = &lg->conns[h->first + i];
        if (loadgen_expand(lg->o.sub_path, c->topic, path, sizeof(path)) < 0) {
            loadgen_conn_end(c, true);
            continue;
        }
        nghttp2_nv nva[] = {
            loadgen_nv(":method", "GET"), loadgen_nv(":scheme", "https"),
            loadgen_nv(":authority", authority), loadgen_nv(":path", path),
            loadgen_nv("accept", "text/event-stream"),
        };
        if (nghttp2_submit_request(h->session, NULL, nva, 5, NULL, c) < 0) {
            loadgen_conn_end(c, true);
            continue;
        }
        c->state = LOADGEN_CONN_HEAD;
    }
    if (loadgen_event_set(lg, h->ev, h->fd, EV_READ | EV_PERSIST,
                          loadgen_h2_io, h) < 0)
        return -1;
    return loadgen_h2_flush(h);
}

/* A step of the connection's TLS handshake; the session once done. */
static void loadgen_h2_tls_step(evutil_socket_t fd, short what, void *arg)
{
    struct loadgen_h2conn *h = arg;
    short events = 0;
    int rc = loadgen_tls_handshake(h->lg, h->ssl, &events);

    if (rc < 0
        || (rc == 0
            && loadgen_event_set(h->lg, h->ev, h->fd, events,
                                 loadgen_h2_tls_step, h) < 0)
        || (rc == 1 && loadgen_h2_start(h) < 0))
        loadgen_h2_end(h);
}

/* The non-blocking connect finished: begin the handshake (ALPN h2). */
static void loadgen_h2_connected(evutil_socket_t fd, short what, void *arg)
{
    struct loadgen_h2conn *h = arg;
    int err = 0;
    socklen_t errlen = sizeof(err);

    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0 || err != 0) {
        loadgen_h2_end(h);
        return;
    }
    h->ssl = loadgen_tls_new(h->lg, fd, "\x02h2", 3);
    if (!h->ssl) {
        loadgen_h2_end(h);
        return;
    }
    loadgen_h2_tls_step(fd, 0, h);
}

/* Starts the non-blocking connect of HTTP/2 connection j, which carries
 * the next (up to) M streams. */
static void loadgen_h2_open(struct loadgen *lg, unsigned j)
{
    struct loadgen_h2conn *h = &lg->h2conns[j];
    const struct sockaddr_storage *addr = &lg->addr[j % lg->naddrs];

    h->lg = lg;
    h->first = j * lg->o.h2_streams;
    h->n = lg->o.conns - h->first < lg->o.h2_streams
           ? lg->o.conns - h->first : lg->o.h2_streams;
    for (unsigned i = 0; i < h->n; i++)
        lg->conns[h->first + i].state = LOADGEN_CONN_CONNECTING;
    lg->opened += h->n;
    h->fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (h->fd < 0)
        goto fail;
    if (connect(h->fd, (const struct sockaddr *)addr, lg->addrlen[j % lg->naddrs]) < 0
        && errno != EINPROGRESS)
        goto fail;
    h->ev = event_new(lg->base, h->fd, EV_WRITE, loadgen_h2_connected, h);
    if (!h->ev || event_add(h->ev, NULL) < 0)
        goto fail;
    return;
fail:
    loadgen_h2_end(h);
}

/* Opens the next stream, or for HTTP/2 the next connection's streams. */
static void loadgen_open_next(struct loadgen *lg)
{
    if (lg->o.transport == LOADGEN_TRANSPORT_H2)
        loadgen_h2_open(lg, lg->opened / lg->o.h2_streams);
    else
        loadgen_conn_open(lg, lg->opened);
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
        loadgen_open_next(lg);
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

static const char *loadgen_transport_name(enum loadgen_transport t)
{
    switch (t) {
    case LOADGEN_TRANSPORT_H1_TLS:
        return "h1-tls";
    case LOADGEN_TRANSPORT_H2:
        return "h2";
    default:
        return "h1";
    }
}

/* Connections the streams use: one each, or ceil(N/M) over HTTP/2. */
static unsigned loadgen_connections(const struct loadgen_opts *o)
{
    if (o->transport != LOADGEN_TRANSPORT_H2)
        return o->conns;
    return (o->conns + o->h2_streams - 1) / o->h2_streams;
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
           " rss_end_kib=%" PRIu64 " rss_per_stream_b=%.0f aborted=%d",
           lg->rss_before_kib, lg->rss_open_kib, lg->rss_end_kib,
           rss_per_stream, lg->aborted);
    printf(" transport=%s connections=%u tls=%s h2_allocs=%" PRIu64 "\n",
           loadgen_transport_name(lg->o.transport), loadgen_connections(&lg->o),
           lg->tls_desc[0] ? lg->tls_desc : "none",
           lg->s1.h2_allocs - lg->s0.h2_allocs);
    printf("%s %s [%s, %u connections]: %u/%u streams ok, %" PRIu64 "/%" PRIu64
           " delivered (missing %" PRIu64 ", dup %" PRIu64 "), latency p50 %.2f"
           " ms p99 %.2f ms max %.2f ms, server CPU %.2f s = %.2f us/delivery,"
           " RSS +%.0f B/stream, loadgen %.0f%%, other %.0f%%\n",
           lg->o.label, lg->o.workload, loadgen_transport_name(lg->o.transport),
           loadgen_connections(&lg->o), lg->streaming, lg->o.conns,
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
        "usage: loadgen --sub http[s]://HOST:PORT/PATH [options]\n"
        "  --sub URL          SSE URL; one %%d in PATH becomes i mod TOPICS;\n"
        "                     https:// means --tls\n"
        "  --tls              HTTP/1.1 over TLS, one connection per stream\n"
        "                     (no certificate verification)\n"
        "  --h2 M             HTTP/2 over TLS (ALPN h2), M streams per connection\n"
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
        {"sub-ports", 1, NULL, 'o'}, {"tls", 0, NULL, 't'},
        {"h2", 1, NULL, '2'},
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
        case 't':
            if (o->transport == LOADGEN_TRANSPORT_H1)
                o->transport = LOADGEN_TRANSPORT_H1_TLS;
            break;
        case '2':
            o->transport = LOADGEN_TRANSPORT_H2;
            o->h2_streams = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'c': o->check = true; break;
        case 'h': return 1;
        default: return -1;
        }
    }
    if (!sub
        || (strncmp(sub, "http://", 7) != 0 && strncmp(sub, "https://", 8) != 0)
        || loadgen_parse_url(sub, o->sub_host, sizeof(o->sub_host), &o->sub_port,
                             o->sub_path, sizeof(o->sub_path)) < 0) {
        fprintf(stderr, "loadgen: --sub http[s]://HOST:PORT/PATH is required\n");
        return -1;
    }
    if (strncmp(sub, "https://", 8) == 0 && o->transport == LOADGEN_TRANSPORT_H1)
        o->transport = LOADGEN_TRANSPORT_H1_TLS;
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
        || (o->transport == LOADGEN_TRANSPORT_H2
            && (o->h2_streams == 0 || o->h2_streams > LOADGEN_MAX_H2_STREAMS))
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

/* TLS context; for HTTP/2 the connections, callbacks and allocator. */
static int loadgen_init_transport(struct loadgen *lg)
{
    if (lg->o.transport == LOADGEN_TRANSPORT_H1)
        return 0;
    lg->ssl_ctx = loadgen_tls_ctx();
    if (!lg->ssl_ctx)
        return -1;
    if (lg->o.transport != LOADGEN_TRANSPORT_H2)
        return 0;
    lg->nh2conns = loadgen_connections(&lg->o);
    lg->h2conns = calloc(lg->nh2conns, sizeof(*lg->h2conns));
    lg->h2_callbacks = loadgen_h2_callbacks();
    if (!lg->h2conns || !lg->h2_callbacks)
        return -1;
    for (unsigned j = 0; j < lg->nh2conns; j++)
        lg->h2conns[j].fd = -1;
    lg->h2_mem = (nghttp2_mem){lg, loadgen_h2_malloc, loadgen_h2_free,
                               loadgen_h2_calloc, loadgen_h2_realloc};
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
    if (loadgen_init_transport(lg) < 0)
        return -1;
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
    for (unsigned j = 0; lg->h2conns && j < lg->nh2conns; j++) {
        struct loadgen_h2conn *h = &lg->h2conns[j];
        if (h->session)
            nghttp2_session_del(h->session);
        SSL_free(h->ssl);
        if (h->ev)
            event_free(h->ev);
        if (h->fd >= 0)
            close(h->fd);
    }
    free(lg->h2conns);
    if (lg->h2_callbacks)
        nghttp2_session_callbacks_del(lg->h2_callbacks);
    for (unsigned i = 0; lg->conns && i < lg->o.conns; i++) {
        struct loadgen_conn *c = &lg->conns[i];
        SSL_free(c->ssl);
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
    SSL_CTX_free(lg->ssl_ctx);
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
