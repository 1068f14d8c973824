/*
 * test_history_key.c - lib/history_key.c kept as a shared log (a tag):
 * tagged ids, the resume lookup (another tag, a lost range, newer than the
 * head while live or not), the cache's bounds, and range reads that start
 * at the client's own entry (gone: HISTORY_READ_GONE). The range reads are
 * answered by the test itself, as adapters/redis_log.c would with XRANGE
 * (the integration tests run them against a real Redis).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "lib/history.h"
#include "lib/history_key.h"
#include "lib/message.h"

#define MS 1796000000000ULL

/* The last range read asked for (one at a time in these tests). */
struct asked {
    int calls;
    char after[HISTORY_KEY_ID_MAX];
    bool inclusive;
    char until[HISTORY_KEY_ID_MAX];
    size_t count;
    struct history_key_fetch *fetch;
};

static int test_range(void *ctx, const char *key, const char *after_id,
                      bool inclusive, const char *until_id, size_t count,
                      struct history_key_fetch *fetch)
{
    struct asked *a = ctx;

    a->calls++;
    snprintf(a->after, sizeof(a->after), "%s", after_id ? after_id : "");
    a->inclusive = inclusive;
    snprintf(a->until, sizeof(a->until), "%s", until_id);
    a->count = count;
    a->fetch = fetch;
    return 0;
}

static uint64_t pos_of(uint64_t ms, uint64_t seq)
{
    return ms << 20 | seq;
}

/* A log entry as the reader makes it: seq = its position. */
static struct message *entry(uint64_t ms, uint64_t seq, size_t payload_len)
{
    char payload[256];
    struct message *m;

    memset(payload, 'x', sizeof(payload));
    m = message_new(0, SOURCE_REDIS, "t", 1, payload, payload_len,
                    (int64_t)ms);
    assert_non_null(m);
    m->seq = pos_of(ms, seq);
    return m;
}

static struct history *shared(struct asked *a, size_t max_events,
                              uint64_t max_bytes, int64_t max_age_ms)
{
    struct history_key_io io = {test_range, a};
    struct history_key_opts opts = {.tag = "abc123", .max_events = max_events,
                                    .max_bytes = max_bytes,
                                    .max_age_ms = max_age_ms};
    struct history *h = history_key_new("p:log", NULL, &io, &opts);

    assert_non_null(h);
    history_key_set_live(h, true);
    return h;
}

static enum history_lookup find(struct history *h, const char *id,
                                uint64_t *pos)
{
    return history_find(h, id, strlen(id), pos);
}

static void test_ids_carry_the_tag(void **state)
{
    struct asked a = {0};
    struct history *h = shared(&a, 100, 0, 0);
    struct message *m = entry(MS, 3, 1);
    uint64_t pos;

    assert_int_equal(history_append(h, message_ref(m)), 0);
    assert_string_equal(m->id, "abc123.1796000000000-3");
    assert_int_equal(m->id_len, strlen(m->id));
    assert_int_equal(find(h, m->id, &pos), HISTORY_FOUND);
    assert_int_equal(pos, m->seq);
    /* Another log's tag, a bare entry id, garbage: unknown. */
    assert_int_equal(find(h, "zzz999.1796000000000-3", &pos),
                     HISTORY_UNKNOWN);
    assert_int_equal(find(h, "1796000000000-3", &pos), HISTORY_UNKNOWN);
    assert_int_equal(find(h, "abc123.", &pos), HISTORY_UNKNOWN);
    assert_int_equal(find(h, "abc123.17x-3", &pos), HISTORY_UNKNOWN);
    /* A repeat (at or before the head) is refused. */
    assert_int_equal(history_append(h, entry(MS, 3, 1)), -1);
    message_unref(m);
    history_free(h);
}

static void test_newer_than_head_is_unknown_only_while_live(void **state)
{
    struct asked a = {0};
    struct history *h = shared(&a, 100, 0, 0);
    uint64_t pos;

    assert_int_equal(history_append(h, entry(MS, 0, 1)), 0);
    assert_int_equal(find(h, "abc123.1796000000001-0", &pos),
                     HISTORY_UNKNOWN);
    /* The reader is behind (Redis away): the id may just not be here
     * yet, so the stream waits for it rather than resetting. */
    history_key_set_live(h, false);
    assert_int_equal(find(h, "abc123.1796000000001-0", &pos), HISTORY_FOUND);
    assert_int_equal(pos, pos_of(MS + 1, 0));
    history_free(h);
}

static void test_lost_range_is_unknown(void **state)
{
    struct asked a = {0};
    struct history *h = shared(&a, 100, 0, 0);
    struct message *out[8];
    size_t n;
    uint64_t pos;

    for (uint64_t i = 1; i <= 5; i++)
        assert_int_equal(history_append(h, entry(MS + i, 0, 1)), 0);
    /* A failover kept only up to MS+2. */
    history_key_forget_after(h, pos_of(MS + 2, 0));
    assert_int_equal(history_head(h), pos_of(MS + 2, 0));
    assert_int_equal(history_count(h), 2);
    assert_int_equal(find(h, "abc123.1796000000004-0", &pos),
                     HISTORY_UNKNOWN);
    assert_int_equal(find(h, "abc123.1796000000002-0", &pos), HISTORY_FOUND);
    /* New entries after the lost ones are found again... */
    assert_int_equal(history_append(h, entry(MS + 9, 0, 1)), 0);
    assert_int_equal(find(h, "abc123.1796000000009-0", &pos), HISTORY_FOUND);
    /* ...but the lost ids stay unknown. */
    assert_int_equal(find(h, "abc123.1796000000005-0", &pos),
                     HISTORY_UNKNOWN);
    assert_int_equal(history_read(h, pos_of(MS + 2, 0), out, 8, &n, NULL),
                     HISTORY_READ_OK);
    assert_int_equal(n, 1);
    assert_int_equal(out[0]->seq, pos_of(MS + 9, 0));
    message_unref(out[0]);
    history_free(h);
}

static void test_retag_forgets_everything(void **state)
{
    struct asked a = {0};
    struct history *h = shared(&a, 100, 0, 0);
    uint64_t pos;

    assert_int_equal(history_append(h, entry(MS, 0, 1)), 0);
    assert_int_equal(history_key_retag(h, "new1"), 0);
    assert_int_equal(history_count(h), 0);
    assert_int_equal(history_head(h), 0);
    assert_int_equal(find(h, "abc123.1796000000000-0", &pos),
                     HISTORY_UNKNOWN);
    assert_int_equal(history_key_retag(h, "Bad-Tag"), -1);
    history_free(h);
}

static void test_cache_bounds(void **state)
{
    struct asked a = {0};
    struct history *h = shared(&a, 4, 0, 0);

    for (uint64_t i = 1; i <= 10; i++)
        assert_int_equal(history_append(h, entry(MS + i, 0, 10)), 0);
    assert_int_equal(history_count(h), 4);
    history_free(h);

    h = shared(&a, 100, 3 * (sizeof(struct message) + 1 + 100), 0);
    for (uint64_t i = 1; i <= 10; i++)
        assert_int_equal(history_append(h, entry(MS + i, 0, 100)), 0);
    assert_int_equal(history_count(h), 3);
    assert_true(history_bytes(h) <= 3 * (sizeof(struct message) + 101));
    history_free(h);

    h = shared(&a, 100, 0, 1000);
    for (uint64_t i = 1; i <= 10; i++)
        assert_int_equal(history_append(h, entry(MS + i * 500, 0, 1)), 0);
    history_expire(h, (int64_t)(MS + 5000));
    /* Entries at MS+4000 and later are within the second. */
    assert_int_equal(history_count(h), 3);
    history_free(h);
}

static void wake(struct history_waiter *w)
{
    (void)w;
}

/* Entries before the cache: a range read starting AT the client's entry. */
static void test_range_read_checks_the_client_entry(void **state)
{
    struct asked a = {0};
    struct history *h = shared(&a, 2, 0, 0);
    struct history_waiter w = {.wake = wake};
    struct message *out[8], *got[3];
    size_t n;

    for (uint64_t i = 1; i <= 5; i++)
        assert_int_equal(history_append(h, entry(MS + i, 0, 1)), 0);
    /* The cache holds MS+4, MS+5; a resume after MS+1 reads Redis. */
    assert_int_equal(history_read(h, pos_of(MS + 1, 0), out, 8, &n, &w),
                     HISTORY_READ_WAIT);
    assert_int_equal(a.calls, 1);
    assert_string_equal(a.after, "1796000000001-0");
    assert_true(a.inclusive);
    assert_string_equal(a.until, "1796000000003-0");
    got[0] = entry(MS + 1, 0, 1);
    got[1] = entry(MS + 2, 0, 1);
    got[2] = entry(MS + 3, 0, 1);
    history_key_fetch_done(a.fetch, got, 3, true);
    assert_int_equal(history_read(h, pos_of(MS + 1, 0), out, 8, &n, &w),
                     HISTORY_READ_OK);
    assert_int_equal(n, 2); /* MS+2, MS+3: the client's own is not sent */
    assert_int_equal(out[0]->seq, pos_of(MS + 2, 0));
    assert_string_equal(out[0]->id, "abc123.1796000000002-0");
    message_unref(out[0]);
    message_unref(out[1]);

    /* The client's entry was trimmed: its successor comes first. */
    assert_int_equal(history_read(h, pos_of(MS + 1, 0), out, 8, &n, &w),
                     HISTORY_READ_WAIT);
    got[0] = entry(MS + 2, 0, 1);
    history_key_fetch_done(a.fetch, got, 1, true);
    assert_int_equal(history_read(h, pos_of(MS + 1, 0), out, 8, &n, &w),
                     HISTORY_READ_GONE);

    /* Nothing at all came back: gone too. */
    assert_int_equal(history_read(h, pos_of(MS + 1, 0), out, 8, &n, &w),
                     HISTORY_READ_WAIT);
    history_key_fetch_done(a.fetch, NULL, 0, true);
    assert_int_equal(history_read(h, pos_of(MS + 1, 0), out, 8, &n, &w),
                     HISTORY_READ_GONE);

    /* A stream that leaves while its read is out: freed on the reply. */
    assert_int_equal(history_read(h, pos_of(MS + 1, 0), out, 8, &n, &w),
                     HISTORY_READ_WAIT);
    history_cancel(h, &w);
    got[0] = entry(MS + 1, 0, 1);
    history_key_fetch_done(a.fetch, got, 1, true);

    /* A history freed while a read is out: the reply frees the fetch. */
    assert_int_equal(history_read(h, pos_of(MS + 1, 0), out, 8, &n, &w),
                     HISTORY_READ_WAIT);
    history_free(h);
    got[0] = entry(MS + 1, 0, 1);
    history_key_fetch_done(a.fetch, got, 1, true);
}

static void test_per_key_ids_are_unchanged(void **state)
{
    struct asked a = {0};
    struct history_key_io io = {test_range, &a};
    struct history *h = history_key_new("k", "5-0", &io, NULL);
    struct message *m = message_new(0, SOURCE_REDIS_STREAM, "k", 1, "x", 1, 1);
    struct history_waiter w = {.wake = wake};
    struct message *out[4];
    size_t n;

    assert_non_null(h);
    assert_int_equal(message_set_stream_entry_id(m, "7-1"), 0);
    assert_int_equal(history_append(h, message_ref(m)), 0);
    assert_string_equal(m->id, "7-1");
    /* Per key, a read is exclusive of `after` and asks for no extra. */
    assert_int_equal(history_read(h, pos_of(1, 0), out, 4, &n, &w),
                     HISTORY_READ_WAIT);
    assert_false(a.inclusive);
    assert_int_equal(a.count, 4);
    history_key_fetch_done(a.fetch, NULL, 0, true);
    message_unref(m);
    history_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_carry_the_tag),
        cmocka_unit_test(test_newer_than_head_is_unknown_only_while_live),
        cmocka_unit_test(test_lost_range_is_unknown),
        cmocka_unit_test(test_retag_forgets_everything),
        cmocka_unit_test(test_cache_bounds),
        cmocka_unit_test(test_range_read_checks_the_client_entry),
        cmocka_unit_test(test_per_key_ids_are_unchanged),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
