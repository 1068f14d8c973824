/*
 * h2.h - the HTTP/2 transport (nghttp2): connections that chose h2 by
 * ALPN on the TLS port, or sent the h2c client preface in cleartext
 * (http2.cleartext, prior knowledge), are taken over from evhttp and
 * served here. Each request becomes a struct request for server.c; each
 * SSE response is a struct stream whose ops (h2.c) frame it as DATA on
 * its HTTP/2 stream.
 */
#ifndef SLUICE_H2_H
#define SLUICE_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bridge;
struct bufferevent;
struct h2_server;
struct server;

/*
 * The HTTP/2 side of a server: nghttp2's callbacks and options, shared
 * by its connections. idle_ms: a connection with no open stream is
 * closed (GOAWAY) after this long. Returns NULL on ENOMEM. Free with
 * h2_server_free, which closes every HTTP/2 connection.
 */
struct h2_server *h2_server_new(struct server *srv, struct bridge *b,
                                int64_t idle_ms);
void h2_server_free(struct h2_server *h2);

/* How the first bytes of a connection compare with the HTTP/2 client
 * preface: 1 they are it, 0 a prefix of it (wait for more), -1 not. */
int h2_preface_match(const unsigned char *data, size_t len);

/*
 * Takes over bev, an accepted connection evhttp owns whose client speaks
 * HTTP/2 (ALPN h2, or the preface seen), before evhttp read a byte of
 * it: its callbacks become ours; evhttp's connection object (the bev's
 * callback argument) is freed when the HTTP/2 connection ends, and with
 * it the bev. A bev with no callback argument (tests/fuzz/fuzz_h2.c: one
 * end of a bufferevent pair) is owned by the connection and freed
 * itself. Bytes already in its input are HTTP/2. 0, or -1 on ENOMEM
 * (left to its owner).
 */
int h2_conn_take(struct h2_server *h2, struct bufferevent *bev, bool tls);

#endif
