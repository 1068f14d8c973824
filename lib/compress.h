/*
 * compress.h - gzip/deflate of one SSE response (stream.compression).
 *
 * Each write is deflated with Z_SYNC_FLUSH, so every event reaches the
 * browser as soon as it is sent, at the price of a few bytes per flush.
 * Memory is bounded per stream: a 1 KiB window (windowBits 10) and
 * memLevel 2, so zlib needs (1 << 12) + (1 << 11) = 6 KiB for its buffers
 * plus its ~6 KiB state: about 12 KiB per compressed stream (measured
 * figure in the README). Small windows compress SSE well anyway: frames
 * repeat their own structure ("id:", "data:", JSON keys) within a frame.
 */
#ifndef SLUICE_COMPRESS_H
#define SLUICE_COMPRESS_H

#include <stddef.h>

struct compressor;
struct evbuffer;

enum compress_kind {
    COMPRESS_NONE,
    COMPRESS_GZIP,
    COMPRESS_DEFLATE, /* HTTP "deflate": zlib-wrapped */
};

/* Picks an encoding from an Accept-Encoding header value (may be NULL):
 * gzip over deflate, honouring q=0. */
enum compress_kind compress_negotiate(const char *accept_encoding);

/* "gzip" or "deflate" (NULL for COMPRESS_NONE). */
const char *compress_name(enum compress_kind kind);

/* Returns a new compressor (free with compressor_free), NULL on ENOMEM. */
struct compressor *compressor_new(enum compress_kind kind);
void compressor_free(struct compressor *c);

/* Drains `in` and appends its deflated bytes, sync-flushed, to `out`.
 * 0, or -1 on a zlib error (or more than UINT_MAX bytes): then `out` may
 * hold part of the output, which the caller must discard, and the
 * compressor's stream is broken (end the response). */
int compressor_write(struct compressor *c, struct evbuffer *in,
                     struct evbuffer *out);

/* The same for data[0..len). */
int compressor_write_bytes(struct compressor *c, const void *data,
                           size_t len, struct evbuffer *out);

#endif
