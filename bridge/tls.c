/*
 * tls.c - the server's SSL_CTX; see tls.h.
 *
 * The context offers TLS 1.2 or 1.3 as the floor says, the library's
 * default cipher lists, no session tickets (a stateless sidecar gains
 * little from them and would need a shared key to rotate), and ALPN:
 * "h2" then "http/1.1" with http2.enabled, else "http/1.1" only; a client
 * that offers only other protocols gets no ALPN answer and may go on in
 * HTTP/1.1 or leave.
 *
 * Invariant: no error text includes the key's contents; only file names
 * and OpenSSL's reason strings.
 */
#include "bridge/tls.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "config/config.h"

/* ALPN protocols in wire format (length-prefixed), best first. */
static const unsigned char tls_alpn_h1[] = "\x08http/1.1";
static const unsigned char tls_alpn_h2[] = "\x02h2\x08http/1.1";

struct tls {
    SSL_CTX *ctx;          /* owned: the context new connections get */
    BIO_METHOD *send_bio;  /* owned: tls_use_send's socket BIO; NULL: none */
    int send_bio_type;     /* its BIO type (BIO_method_type) */
};

/* OpenSSL's reason for the first error queued (the root cause: "no
 * start line" rather than "PEM lib"), and empties the queue. */
static void tls_reason(char *buf, size_t len)
{
    unsigned long e = ERR_peek_error();
    const char *why = e != 0 ? ERR_reason_error_string(e) : NULL;

    snprintf(buf, len, "%s", why != NULL ? why : "unknown error");
    ERR_clear_error();
}

/* "FILE:LINE:COL: tls.KEY: what" into err; always -1. */
static int tls_error(const struct config *cfg, struct config_pos pos,
                     const char *key, const char *what, char *err,
                     size_t errlen)
{
    snprintf(err, errlen, "%s:%d:%d: tls.%s: %s", cfg->file, pos.line,
             pos.col, key, what);
    return -1;
}

/* A file the process cannot open gets the system's reason, which says
 * more than OpenSSL's "system lib". */
static int tls_check_readable(const struct config *cfg, struct config_pos pos,
                              const char *key, const char *path, char *err,
                              size_t errlen)
{
    char what[512];
    FILE *f = fopen(path, "rb");

    if (f != NULL) {
        fclose(f);
        return 0;
    }
    snprintf(what, sizeof(what), "cannot read %s: %s", path, strerror(errno));
    return tls_error(cfg, pos, key, what, err, errlen);
}

/* ALPN: the first of our protocols the client offers; none in common
 * means no ALPN answer (not a failed handshake). */
static int tls_on_alpn(SSL *ssl, const unsigned char **out,
                       unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg)
{
    const unsigned char *ours = arg;
    unsigned char *chosen = NULL;

    if (SSL_select_next_proto(&chosen, outlen, ours,
                              (unsigned int)strlen((const char *)ours), in,
                              inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
}

/* Loads the chain and key into ctx and checks that they match. */
static int tls_load_files(SSL_CTX *ctx, const struct config *cfg, char *err,
                          size_t errlen)
{
    const struct tls_config *tc = &cfg->tls;
    char why[256], what[512];

    if (tls_check_readable(cfg, tc->cert_pos, "cert_file", tc->cert_file, err,
                           errlen) < 0 ||
        tls_check_readable(cfg, tc->key_pos, "key_file", tc->key_file, err,
                           errlen) < 0)
        return -1;
    if (SSL_CTX_use_certificate_chain_file(ctx, tc->cert_file) != 1) {
        tls_reason(why, sizeof(why));
        snprintf(what, sizeof(what), "%s is not a usable PEM certificate: %s",
                 tc->cert_file, why);
        return tls_error(cfg, tc->cert_pos, "cert_file", what, err, errlen);
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, tc->key_file, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) ==
            X509_R_KEY_VALUES_MISMATCH)
            goto mismatch;
        tls_reason(why, sizeof(why));
        snprintf(what, sizeof(what), "%s is not a usable PEM private key: %s",
                 tc->key_file, why);
        return tls_error(cfg, tc->key_pos, "key_file", what, err, errlen);
    }
    if (SSL_CTX_check_private_key(ctx) != 1)
        goto mismatch;
    return 0;
mismatch:
    ERR_clear_error();
    snprintf(what, sizeof(what), "%s does not match the certificate in %s",
             tc->key_file, tc->cert_file);
    return tls_error(cfg, tc->key_pos, "key_file", what, err, errlen);
}

/* A new context for cfg->tls, or NULL with err set. */
static SSL_CTX *tls_ctx_new(const struct config *cfg, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    int floor = cfg->tls.min_version == TLS_MIN_1_3 ? TLS1_3_VERSION
                                                    : TLS1_2_VERSION;

    if (ctx == NULL) {
        tls_error(cfg, cfg->tls.pos, "cert_file", "out of memory", err,
                  errlen);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, floor);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_alpn_select_cb(ctx, tls_on_alpn,
                               (void *)(cfg->http2.enabled ? tls_alpn_h2
                                                           : tls_alpn_h1));
    if (tls_load_files(ctx, cfg, err, errlen) < 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* The write of tls_use_send's BIO: BIO_s_socket's, with send(2) in place
 * of write(2). */
static int tls_bio_send(BIO *b, const char *in, int len)
{
    ssize_t n = send((int)BIO_get_fd(b, NULL), in, (size_t)len, MSG_NOSIGNAL);

    BIO_clear_retry_flags(b);
    if (n <= 0 && BIO_sock_should_retry((int)n))
        BIO_set_retry_write(b);
    return (int)n;
}

/* A socket BIO (BIO_s_socket's read, control, create and destroy: the fd,
 * its retry rules) that writes with tls_bio_send, its type in *type;
 * NULL when OpenSSL has no BIO type left or no memory. */
static BIO_METHOD *tls_send_bio_new(int *type)
{
    const BIO_METHOD *sock = BIO_s_socket();
    int index = BIO_get_new_index();
    BIO_METHOD *m;

    if (index < 0)
        return NULL;
    *type = index | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR;
    m = BIO_meth_new(*type, "sluice socket (send)");
    if (m == NULL)
        return NULL;
    BIO_meth_set_write(m, tls_bio_send);
    BIO_meth_set_read(m, BIO_meth_get_read(sock));
    BIO_meth_set_ctrl(m, BIO_meth_get_ctrl(sock));
    BIO_meth_set_create(m, BIO_meth_get_create(sock));
    BIO_meth_set_destroy(m, BIO_meth_get_destroy(sock));
    return m;
}

struct tls *tls_new(const struct config *cfg, char *err, size_t errlen)
{
    struct tls *t = calloc(1, sizeof(*t));

    if (t == NULL) {
        snprintf(err, errlen, "tls: out of memory");
        return NULL;
    }
    t->send_bio = tls_send_bio_new(&t->send_bio_type); /* NULL: write(2) */
    t->ctx = tls_ctx_new(cfg, err, errlen);
    if (t->ctx == NULL) {
        BIO_meth_free(t->send_bio);
        free(t);
        return NULL;
    }
    return t;
}

int tls_reload(struct tls *t, const struct config *cfg, char *err,
               size_t errlen)
{
    SSL_CTX *ctx = tls_ctx_new(cfg, err, errlen);

    if (ctx == NULL)
        return -1;
    /* Open connections hold their own reference to the old context. */
    SSL_CTX_free(t->ctx);
    t->ctx = ctx;
    return 0;
}

int tls_check(const struct config *cfg, char *err, size_t errlen)
{
    SSL_CTX *ctx = tls_ctx_new(cfg, err, errlen);

    if (ctx == NULL)
        return -1;
    SSL_CTX_free(ctx);
    return 0;
}

struct ssl_st *tls_ssl_new(struct tls *t)
{
    return SSL_new(t->ctx);
}

void tls_use_send(struct tls *t, struct bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    BIO *old = ssl != NULL ? SSL_get_wbio(ssl) : NULL;
    BIO *b;
    int fd;

    if (t->send_bio == NULL || old == NULL ||
        BIO_method_type(old) == t->send_bio_type)
        return;
    fd = (int)BIO_get_fd(old, NULL);
    if (fd < 0 || (b = BIO_new(t->send_bio)) == NULL)
        return; /* it goes on with write(2) */
    BIO_set_fd(b, fd, BIO_NOCLOSE);
    SSL_set0_wbio(ssl, b); /* drops the write reference; old stays rbio */
}

/*
 * Written by hand rather than left to bufferevent_openssl, which only
 * arms the write event when bytes are added and sends them on the next
 * loop turn, then disarms it: two epoll_ctl calls and a wakeup for every
 * small write, about what the encryption itself costs on the hot path.
 * No ERR_clear_error before SSL_write: only SSL_get_error reads the
 * queue, and neither this nor bufferevent_openssl (which clears it
 * first) asks it about this call.
 */
size_t tls_write_now(struct bufferevent *bev, const void *data, size_t len)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    int n;

    if (ssl == NULL || len == 0 || len > INT_MAX)
        return 0;
    n = SSL_write(ssl, data, (int)len);
    if (n <= 0) {
        ERR_clear_error(); /* bufferevent_openssl meets it again */
        return 0;
    }
    return (size_t)n;
}

void tls_free(struct tls *t)
{
    if (t == NULL)
        return;
    SSL_CTX_free(t->ctx);
    BIO_meth_free(t->send_bio);
    free(t);
}
