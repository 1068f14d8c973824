/*
 * server.h - the HTTP front: libevent's evhttp, request dispatch, the
 * status codes of SPEC 4, CORS, /healthz, /readyz and /metrics.
 *
 * A GET on a route path goes through: path lookup -> method -> enabled ->
 * query -> auth -> topic resolution -> overload -> resume decision ->
 * stream_open. Every refusal is one short line of text, never echoing a
 * token.
 */
#ifndef SLUICE_SERVER_H
#define SLUICE_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bridge;
struct config;
struct request;
struct server;
struct stream;

/* Creates the evhttp server on b->base (not listening), with TLS when
 * b->cfg has a tls block. NULL with err set (ENOMEM, or a certificate or
 * key that cannot be used). */
struct server *server_new(struct bridge *b, char *err, size_t errlen);

/* After SIGHUP: loads cfg's certificate and key for new handshakes; open
 * connections keep theirs. 0, or -1 with err set (the running certificate
 * stays; turning TLS on or off needs a restart). */
int server_reload_tls(struct server *srv, const struct config *cfg, char *err,
                      size_t errlen);

/* Binds cfg->listen_host:listen_port. 0, or -1 with err filled. */
int server_listen(struct server *srv, char *err, size_t errlen);

/* Routes and answers one request, whatever its transport (h1.c, h2.c):
 * reserved paths, streams (stream_open), preflight, 404/405. */
void server_handle_request(struct server *srv, const struct request *req);

/* Stops accepting new connections (draining); open ones stay. */
void server_stop_listening(struct server *srv);

void server_free(struct server *srv);

/* Ends connections that have not sent a whole first request within the
 * deadline (slowloris). From the housekeeping tick. */
void server_sweep(struct server *srv, int64_t now_ms);

/* 200, "retry: <retry_ms>", close: the browser comes back by itself.
 * With overload, counted as an overload drop (max_connections,
 * max_keys). */
void server_reply_come_back(struct bridge *b, const struct request *req,
                            int64_t retry_ms, bool overload);

/* After SIGHUP: re-resolves an open stream's request against the current
 * routes and auth, and moves it to the feed it now belongs to. Returns 0,
 * or -1 when it may no longer stay open (the caller closes it). */
int server_rehome(struct server *srv, struct stream *s);

#endif
