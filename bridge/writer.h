/*
 * writer.h - what the stream writer shares between all streams: the
 * scratch buffers where a frame is assembled, and the list of streams
 * with output to write at the end of the loop turn.
 *
 * One per bridge, used by stream.c only. The hot path (feed.c ->
 * stream_deliver) builds each message's frame once in framebuf, sends a
 * stream's first event of a turn straight to its socket, and marks the
 * stream dirty when more is queued: every dirty stream gets one write
 * (stream_write) after the turn's other callbacks, however many events
 * reached it. Nothing here allocates per delivery.
 *
 * Invariant: scratch and zscratch are empty between uses.
 */
#ifndef SLUICE_WRITER_H
#define SLUICE_WRITER_H

#include <stddef.h>

struct event;
struct event_base;
struct evbuffer;
struct stream;

struct writer {
    struct evbuffer *scratch;  /* SSE text being assembled */
    struct evbuffer *zscratch; /* the same, deflated (compressed streams) */
    char *framebuf;            /* one message's frame (stream_frame_build) */
    size_t framebuf_cap;
    struct stream *dirty;      /* streams with output to write */
    struct event *write_ev;    /* writes them at the end of the turn */
};

/* Returns a new writer on base, or NULL on ENOMEM. Free with
 * writer_free (after every stream is gone). */
struct writer *writer_new(struct event_base *base);
void writer_free(struct writer *w);

/* Grows framebuf to at least len bytes. 0 or -1. */
int writer_frame_reserve(struct writer *w, size_t len);

/* Hot path: puts s on the dirty list (idempotent). */
void writer_mark_dirty(struct writer *w, struct stream *s);

/* Takes s off the dirty list (a stream being freed). */
void writer_unmark_dirty(struct writer *w, struct stream *s);

#endif
