/*
 * tls.h - the server's TLS context: certificate, key, protocol floor and
 * ALPN, built with OpenSSL from the config's tls block.
 *
 * One struct tls per server. It holds the current SSL_CTX; every new
 * connection gets an SSL from it (tls_ssl_new). On SIGHUP tls_reload
 * builds a fresh SSL_CTX from the files and swaps it in only when the
 * whole load succeeded: new handshakes use the new certificate, while
 * connections already open keep theirs (an SSL holds a reference to the
 * SSL_CTX it was made from, so freeing ours never pulls it from under
 * them).
 *
 * Errors name the config position of the file at fault, as
 * "FILE:LINE:COL: tls.cert_file: ..."; they never include key material.
 */
#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H

#include <stddef.h>

struct bufferevent;
struct config;
struct ssl_st;
struct tls;

/*
 * Builds the TLS context from cfg->tls (which must be present). Returns a
 * new struct tls (free with tls_free), or NULL with a message in err.
 */
struct tls *tls_new(const struct config *cfg, char *err, size_t errlen);

/* Loads the files of cfg->tls into a new context and, on success, makes
 * it the one new connections get. 0, or -1 with err set (the running
 * context stays). */
int tls_reload(struct tls *t, const struct config *cfg, char *err,
               size_t errlen);

/* Validates cfg->tls as tls_new would (--check). 0, or -1 with err. */
int tls_check(const struct config *cfg, char *err, size_t errlen);

/* A new server-side SSL for one accepted connection, or NULL on ENOMEM.
 * The caller owns it (bufferevent_openssl takes it over). */
struct ssl_st *tls_ssl_new(struct tls *t);

/*
 * Has OpenSSL send bev's records with send(2) instead of the write(2) of
 * the socket BIO that libevent puts on every TLS connection: write(2) on
 * a socket also goes through the VFS layer (fd position lock, fsnotify),
 * about 0.7 us per delivery over TLS HTTP/1.1 (tests/bench/README.md).
 * Reading stays with libevent's BIO. For a connection whose handshake is
 * done. Once is enough; a second call, or a failure (no memory, or
 * OpenSSL out of BIO types), leaves the connection as it is.
 */
void tls_use_send(struct tls *t, struct bufferevent *bev);

/*
 * Encrypts and sends data on a bufferevent_openssl connection now, with
 * SSL_write on its socket, and returns how many bytes went out: all of
 * them, or 0 when the socket is full or the connection failed. The
 * caller must then append the bytes to the bufferevent's output and
 * enable writing: bufferevent_openssl's next SSL_write starts with those
 * same bytes, as OpenSSL requires after a write that blocked, and meets
 * the error, if any, and reports it the usual way.
 *
 * Only for a connection whose handshake is done and whose output buffer
 * is empty (then no SSL_write of bufferevent_openssl is half done).
 */
size_t tls_write_now(struct bufferevent *bev, const void *data, size_t len);

void tls_free(struct tls *t);

#endif
