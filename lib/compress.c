/*
 * compress.c - see compress.h. zlib does the compression; the only hand-
 * written part is reading Accept-Encoding, which no library here parses.
 */
#include "lib/compress.h"

#include <ctype.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <zlib.h>

#define COMPRESS_WINDOW_BITS 10
#define COMPRESS_MEM_LEVEL 2
#define COMPRESS_LEVEL 6
#define COMPRESS_CHUNK 4096

struct compressor {
    z_stream z;
};

/* True when one Accept-Encoding element (e.g. "gzip;q=0.5") names
 * `coding` with a non-zero quality. */
static bool compress_element_accepts(const char *el, size_t len,
                                     const char *coding)
{
    size_t clen = strlen(coding);
    const char *q;

    while (len > 0 && isspace((unsigned char)*el)) {
        el++;
        len--;
    }
    if (len < clen || strncasecmp(el, coding, clen) != 0)
        return false;
    if (len > clen && el[clen] != ';' && !isspace((unsigned char)el[clen]))
        return false;
    q = memchr(el, '=', len);
    if (q == NULL || memchr(el, ';', len) == NULL)
        return true;
    /* "q=0", "q=0.0", "q=0.000": refused; anything else accepted. */
    for (q++; q < el + len && (*q == '0' || *q == '.'); q++)
        ;
    return q < el + len && isdigit((unsigned char)*q);
}

static bool compress_accepts(const char *header, const char *coding)
{
    const char *p = header;

    while (p != NULL && *p != '\0') {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        if (compress_element_accepts(p, len, coding))
            return true;
        p = comma != NULL ? comma + 1 : NULL;
    }
    return false;
}

enum compress_kind compress_negotiate(const char *accept_encoding)
{
    if (accept_encoding == NULL)
        return COMPRESS_NONE;
    if (compress_accepts(accept_encoding, "gzip"))
        return COMPRESS_GZIP;
    if (compress_accepts(accept_encoding, "deflate"))
        return COMPRESS_DEFLATE;
    return COMPRESS_NONE;
}

const char *compress_name(enum compress_kind kind)
{
    if (kind == COMPRESS_GZIP)
        return "gzip";
    if (kind == COMPRESS_DEFLATE)
        return "deflate";
    return NULL;
}

struct compressor *compressor_new(enum compress_kind kind)
{
    struct compressor *c = calloc(1, sizeof(*c));
    /* windowBits + 16 asks zlib for a gzip wrapper. */
    int bits = COMPRESS_WINDOW_BITS + (kind == COMPRESS_GZIP ? 16 : 0);

    if (c == NULL)
        return NULL;
    if (deflateInit2(&c->z, COMPRESS_LEVEL, Z_DEFLATED, bits,
                     COMPRESS_MEM_LEVEL, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(c);
        return NULL;
    }
    return c;
}

void compressor_free(struct compressor *c)
{
    if (c == NULL)
        return;
    deflateEnd(&c->z);
    free(c);
}

int compressor_write_bytes(struct compressor *c, const void *data,
                           size_t len, struct evbuffer *out)
{
    if (len > UINT_MAX)
        return -1; /* avail_in is an unsigned int */
    c->z.next_in = (Bytef *)data;
    c->z.avail_in = (uInt)len;
    do {
        struct evbuffer_iovec v;
        if (evbuffer_reserve_space(out, COMPRESS_CHUNK, &v, 1) < 1)
            return -1;
        c->z.next_out = v.iov_base;
        c->z.avail_out = (uInt)v.iov_len;
        if (deflate(&c->z, Z_SYNC_FLUSH) == Z_STREAM_ERROR)
            return -1;
        v.iov_len -= c->z.avail_out;
        evbuffer_commit_space(out, &v, 1);
    } while (c->z.avail_out == 0);
    return 0;
}

int compressor_write(struct compressor *c, struct evbuffer *in,
                     struct evbuffer *out)
{
    size_t len = evbuffer_get_length(in);
    const unsigned char *data = evbuffer_pullup(in, -1);
    int rc;

    if (len == 0)
        return 0;
    if (data == NULL)
        return -1;
    rc = compressor_write_bytes(c, data, len, out);
    evbuffer_drain(in, len);
    return rc;
}
