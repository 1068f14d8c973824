/*
 * metrics.h - counters for /metrics (SPEC 5), in Prometheus text format.
 *
 * Plain integers bumped on the hot path (one thread, no atomics); the
 * per-source ones are arrays indexed like config->sources. Gauges that
 * the bridge already knows (connections, history size, source state) are
 * read at render time instead of being kept twice.
 */
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct bridge;
struct evbuffer;

enum drop_reason {
    DROP_SLOW,      /* unsent bytes over stream.max_pending */
    DROP_EXPIRED,   /* token expired */
    DROP_LIFETIME,  /* stream.max_lifetime reached */
    DROP_OVERLOAD,  /* over stream.max_connections */
    DROP_SHUTDOWN,  /* drained on SIGTERM */
    DROP_RELOAD,    /* route gone after SIGHUP */
    DROP_REPLAY,    /* history evicted under a replay */
    DROP_INPUT,     /* sent more than a few bytes after its request */
    DROP_COMPRESS,  /* deflate failed on its stream */
    DROP_END,       /* per-key end entry sent: closed gracefully */
    DROP_REASON_COUNT,
};

/* Why a TLS connection ended before its handshake completed. */
enum tls_failure {
    TLS_FAIL_ERROR,   /* OpenSSL refused it (protocol, version, not TLS) */
    TLS_FAIL_CLOSED,  /* the client closed the connection */
    TLS_FAIL_TIMEOUT, /* no handshake within the request deadline */
    TLS_FAIL_COUNT,
};

struct source_metrics {
    uint64_t received;      /* accepted into the history */
    uint64_t too_large;     /* dropped: over max_payload */
    uint64_t duplicates;    /* dropped: recognised redelivery */
};

struct metrics {
    uint64_t delivered;     /* event frames written to streams */
    uint64_t replayed;      /* of which sent from history on resume */
    uint64_t resets;        /* event: reset sent */
    uint64_t dropped[DROP_REASON_COUNT];
    uint64_t streams_opened;
    uint64_t connections_accepted[2];  /* by tls (index 1: TLS) */
    uint64_t streams_open[2][2];       /* gauge, by [h2][tls] */
    uint64_t h2_connections;           /* gauge: open HTTP/2 connections */
    uint64_t h2_connections_opened[2]; /* by tls; the rest are HTTP/1.x */
    uint64_t tls_handshake_failures[TLS_FAIL_COUNT];
    struct source_metrics *sources; /* owned; nsources entries */
    size_t nsources;
};

/* Allocates the per-source array. 0 or -1. */
int metrics_init(struct metrics *m, size_t nsources);
void metrics_free(struct metrics *m);


/* Appends the whole /metrics page for b. */
void metrics_render(const struct bridge *b, struct evbuffer *out);

#endif
