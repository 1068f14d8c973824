/*
 * fuzz_query.c - libFuzzer driver for the hand-written request parsers:
 * the query string (lib/query.c, over lib/percent.c), the history's
 * id parser (ring_find) and the Accept-Encoding reader
 * (compress_negotiate). The input is split at its first NUL byte: query
 * string before, Last-Event-ID after.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/compress.h"
#include "lib/ring.h"
#include "lib/message.h"
#include "lib/query.h"

static void fuzz_ids(const char *id, size_t len)
{
    struct history_config cfg = {.max_events = 8, .max_bytes = 1 << 20};
    struct ring *h = ring_new(&cfg, 1764000000000LL);
    uint64_t seq;

    if (h == NULL)
        return;
    for (int i = 0; i < 12; i++) {
        struct message *m =
            message_new(0, SOURCE_REDIS, "t", 1, "p", 1, 1764000000000LL);
        if (m != NULL)
            ring_append(h, m);
    }
    if (ring_find(h, id, len, &seq) == HISTORY_FOUND &&
        (seq + 1 < ring_first_seq(h) || seq >= ring_next_seq(h)))
        abort(); /* a found id must be resumable */
    ring_free(h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    struct stream_query q;
    const char *why;
    size_t qlen;

    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    qlen = strlen(text);
    if (query_parse(text, &q, &why) < 0) {
        if (why == NULL)
            abort(); /* a refusal always says why */
    } else if (q.snapshot < -1 || q.snapshot > 1) {
        abort(); /* accepted: snapshot is unset, 0 or 1 */
    }
    query_clear(&q);
    compress_negotiate(text);
    if (qlen < size)
        fuzz_ids(text + qlen + 1, size - qlen - 1);
    free(text);
    return 0;
}
