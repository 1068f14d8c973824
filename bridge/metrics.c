/*
 * metrics.c - the /metrics page (Prometheus text format 0.0.4).
 */
#include "bridge/metrics.h"

#include <stddef.h>
#include <stdlib.h>

#include <event2/buffer.h>

#include "bridge/bridge.h"
#include "bridge/keyed.h"
#include "bridge/replica.h"
#include "lib/history.h"

static const char *metrics_drop_names[DROP_REASON_COUNT] = {
    [DROP_SLOW] = "slow",           [DROP_EXPIRED] = "token_expired",
    [DROP_LIFETIME] = "lifetime",   [DROP_OVERLOAD] = "overload",
    [DROP_SHUTDOWN] = "shutdown",   [DROP_RELOAD] = "route_removed",
    [DROP_REPLAY] = "replay_evicted", [DROP_INPUT] = "client_input",
    [DROP_COMPRESS] = "compression_error", [DROP_END] = "ended",
};

static const char *metrics_tls_failure_names[TLS_FAIL_COUNT] = {
    [TLS_FAIL_ERROR] = "error", [TLS_FAIL_CLOSED] = "closed",
    [TLS_FAIL_TIMEOUT] = "timeout",
};

int metrics_init(struct metrics *m, size_t nsources)
{
    m->sources = calloc(nsources > 0 ? nsources : 1, sizeof(*m->sources));
    m->nsources = nsources;
    return m->sources == NULL ? -1 : 0;
}

void metrics_free(struct metrics *m)
{
    free(m->sources);
    m->sources = NULL;
}

static void metrics_header(struct evbuffer *out, const char *name,
                           const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
                        type);
}

static void metrics_value(struct evbuffer *out, const char *name,
                          const char *type, const char *help, uint64_t v)
{
    metrics_header(out, name, type, help);
    evbuffer_add_printf(out, "%s %llu\n", name, (unsigned long long)v);
}

/* One line per source for a per-source counter at `offset` bytes into
 * struct source_metrics. */
static void metrics_per_source(const struct bridge *b, struct evbuffer *out,
                               const char *name, const char *help,
                               size_t offset)
{
    metrics_header(out, name, "counter", help);
    for (size_t i = 0; i < b->nsources; i++) {
        const char *base = (const char *)&b->metrics.sources[i];
        uint64_t v = *(const uint64_t *)(base + offset);
        evbuffer_add_printf(out, "%s{source=\"%s\"} %llu\n", name,
                            b->cfg->sources[i].name, (unsigned long long)v);
    }
}

/* The per-key reading counters the adapters keep in struct source. */
static void metrics_keyed(const struct bridge *b, struct evbuffer *out)
{
    metrics_header(out, "sluice_perkey_xread_total", "counter",
                   "XREAD calls of per-key reading answered, per source.");
    for (size_t i = 0; i < b->nsources; i++)
        evbuffer_add_printf(out, "sluice_perkey_xread_total{source=\"%s\"} "
                            "%llu\n", b->cfg->sources[i].name,
                            (unsigned long long)b->sources[i].keyed_xreads);
    metrics_header(out, "sluice_perkey_entries_total", "counter",
                   "Entries read by per-key reading, per source.");
    for (size_t i = 0; i < b->nsources; i++)
        evbuffer_add_printf(out, "sluice_perkey_entries_total{source=\"%s\"} "
                            "%llu\n", b->cfg->sources[i].name,
                            (unsigned long long)b->sources[i].keyed_entries);
}

/* Connections and streams by protocol ("h1": HTTP/1.x, "h2") and by
 * whether they came in over TLS. */
static void metrics_transport(const struct bridge *b, struct evbuffer *out)
{
    const struct metrics *m = &b->metrics;

    metrics_header(out, "sluice_connections_accepted_total", "counter",
                   "Connections accepted, by protocol and TLS.");
    for (int h2 = 0; h2 < 2; h2++)
        for (int tls = 0; tls < 2; tls++) {
            uint64_t n = m->h2_connections_opened[tls];
            if (!h2)
                n = m->connections_accepted[tls] - n;
            evbuffer_add_printf(out, "sluice_connections_accepted_total{"
                                "protocol=\"%s\",tls=\"%s\"} %llu\n",
                                h2 ? "h2" : "h1", tls ? "true" : "false",
                                (unsigned long long)n);
        }
    metrics_header(out, "sluice_streams", "gauge",
                   "Open SSE streams, by protocol and TLS.");
    for (int h2 = 0; h2 < 2; h2++)
        for (int tls = 0; tls < 2; tls++)
            evbuffer_add_printf(out, "sluice_streams{protocol=\"%s\","
                                "tls=\"%s\"} %llu\n", h2 ? "h2" : "h1",
                                tls ? "true" : "false",
                                (unsigned long long)m->streams_open[h2][tls]);
    metrics_value(out, "sluice_h2_connections", "gauge",
                  "Open HTTP/2 connections.", m->h2_connections);
    metrics_header(out, "sluice_tls_handshake_failures_total", "counter",
                   "TLS connections that ended before their handshake "
                   "completed, by reason.");
    for (int r = 0; r < TLS_FAIL_COUNT; r++)
        evbuffer_add_printf(out, "sluice_tls_handshake_failures_total{"
                            "reason=\"%s\"} %llu\n",
                            metrics_tls_failure_names[r],
                            (unsigned long long)m->tls_handshake_failures[r]);
}

void metrics_render(const struct bridge *b, struct evbuffer *out)
{
    const struct metrics *m = &b->metrics;

    metrics_value(out, "sluice_connections", "gauge",
                  "Open SSE streams.", b->nstreams);
    metrics_value(out, "sluice_streams_opened_total", "counter",
                  "SSE streams opened since start.", m->streams_opened);
    metrics_per_source(b, out, "sluice_events_received_total",
                       "Messages accepted into the history, per source.",
                       offsetof(struct source_metrics, received));
    metrics_per_source(b, out, "sluice_events_too_large_total",
                       "Messages dropped for exceeding max_payload.",
                       offsetof(struct source_metrics, too_large));
    metrics_per_source(b, out, "sluice_events_duplicate_total",
                       "Redelivered messages recognised and dropped.",
                       offsetof(struct source_metrics, duplicates));
    metrics_value(out, "sluice_events_delivered_total", "counter",
                  "Event frames written to streams.", m->delivered);
    metrics_value(out, "sluice_replayed_events_total", "counter",
                  "Event frames sent from the history on resume.",
                  m->replayed);
    metrics_value(out, "sluice_resets_total", "counter",
                  "Streams started with event: reset.", m->resets);
    metrics_header(out, "sluice_clients_dropped_total", "counter",
                   "Streams closed by sluice, by reason.");
    for (int r = 0; r < DROP_REASON_COUNT; r++)
        evbuffer_add_printf(out,
                            "sluice_clients_dropped_total{reason=\"%s\"} "
                            "%llu\n",
                            metrics_drop_names[r],
                            (unsigned long long)m->dropped[r]);
    metrics_value(out, "sluice_history_events", "gauge",
                  "Events held in the history.", history_count(b->history));
    metrics_value(out, "sluice_history_bytes", "gauge",
                  "Bytes accounted to the history.",
                  history_bytes(b->history));
    metrics_value(out, "sluice_perkey_keys", "gauge",
                  "Per-key redis-stream keys read now (one per per-key "
                  "feed).",
                  keyed_active(b->keyed));
    metrics_keyed(b, out);
    replica_metrics(b, out);
    metrics_transport(b, out);
    metrics_header(out, "sluice_source_up", "gauge",
                   "1 when the source is connected and subscribed (with a "
                   "shared history: here, or on the replica that ingests "
                   "it).");
    for (size_t i = 0; i < b->nsources; i++)
        evbuffer_add_printf(out, "sluice_source_up{source=\"%s\"} %d\n",
                            b->cfg->sources[i].name,
                            replica_source_up(b, (uint32_t)i));
}
