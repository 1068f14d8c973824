/*
 * redis_stream.c - the Redis Streams (XREAD) adapter: a placeholder until
 * XREAD lands. start() refuses, so a redis-stream source fails at start
 * with a clear reason instead of silently idling.
 */
#include <stdio.h>

#include "adapters/adapter.h"

static int redis_stream_start(struct source *src, char *why, size_t whylen)
{
    snprintf(why, whylen, "redis-stream sources are not implemented yet");
    return -1;
}

static void redis_stream_stop(struct source *src) {}

/* Takes ownership of subs' contents, as the contract says. */
static int redis_stream_resubscribe(struct source *src,
                                    struct subscriptions *subs)
{
    subscriptions_free(subs);
    return 0;
}

const struct adapter_ops redis_stream_adapter_ops = {
    .type = "redis-stream",
    .start = redis_stream_start,
    .stop = redis_stream_stop,
    .resubscribe = redis_stream_resubscribe,
};
