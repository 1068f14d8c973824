/*
 * adapter.c - what every source adapter shares (see adapter.h): the
 * type -> ops table, the state setter that tells the bridge about changes,
 * the reconnect backoff, and freeing a subscription set.
 *
 * Nothing here knows about a particular bus, and nothing here keeps state:
 * the state of a source lives in its struct source (owned by the bridge)
 * and in the adapter's impl.
 */
#include "adapters/adapter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_FIRST_MS 100
#define BACKOFF_CAP_MS 30000

const struct adapter_ops *adapter_for_type(enum source_type type)
{
    switch (type) {
    case SOURCE_MQTT:
        return &mqtt_adapter_ops;
    case SOURCE_REDIS:
        return &redis_adapter_ops;
    case SOURCE_REDIS_STREAM:
        return &redis_stream_adapter_ops;
    }
    return NULL;
}

/*
 * Copies `status` (NULL means "") into src->status, truncating to fit, and
 * calls sink.state_changed only when the state or the stored text actually
 * changed, so that a retry loop failing the same way does not flood the
 * bridge. The sink call is the last thing done: the caller may rely on
 * src being untouched afterwards.
 */
void source_set_state(struct source *src, enum source_state state,
                      const char *status)
{
    char text[sizeof(src->status)];

    snprintf(text, sizeof(text), "%s", status ? status : "");
    if (src->state == state && strcmp(src->status, text) == 0)
        return;
    src->state = state;
    memcpy(src->status, text, sizeof(text));
    if (src->sink.state_changed)
        src->sink.state_changed(src->sink.ctx, src);
}

/*
 * The step doubles from 100 ms and is capped at 30 s; the result is drawn
 * uniformly from [step/2, step] ("equal jitter": never retry sooner than
 * half the step, so a crowd of clients still spreads out).
 *
 * The random source is glibc's arc4random_uniform() (glibc >= 2.36,
 * Debian 12): it keeps its own per-thread state seeded from getrandom(2),
 * never fails and never blocks, so sluice keeps no seed or generator
 * state of its own and needs no error path here.
 */
int64_t source_backoff_ms(unsigned attempt)
{
    uint32_t step = BACKOFF_FIRST_MS;
    uint32_t half;

    for (unsigned i = 0; i < attempt && step < BACKOFF_CAP_MS; i++)
        step *= 2;
    if (step > BACKOFF_CAP_MS)
        step = BACKOFF_CAP_MS;
    half = step / 2;
    return (int64_t)half + arc4random_uniform(step - half + 1);
}

/* Frees both lists' strings and arrays (pos may be NULL) and zeroes subs;
 * subs itself is not freed. Safe on an already-freed (zeroed) set. */
void subscriptions_free(struct subscriptions *subs)
{
    config_strv_clear(&subs->exact);
    config_strv_clear(&subs->patterns);
}
