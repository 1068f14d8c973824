/*
 * test_ring.c - lib/ring.c: ids, ordering, eviction by count,
 * bytes and age, and the resume lookup (found / unknown / expired).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "lib/ring.h"
#include "lib/message.h"

#define T0 1764000000000LL

static struct history_config test_cfg(uint64_t max_events, uint64_t max_bytes,
                                      int64_t max_age_ms)
{
    struct history_config c = {
        .max_events = max_events,
        .max_bytes = max_bytes,
        .max_age_ms = max_age_ms,
        .fsync = FSYNC_BATCH,
    };
    return c;
}

static struct message *test_msg(const char *topic, const char *payload,
                                int64_t t)
{
    struct message *m = message_new(0, SOURCE_REDIS, topic, strlen(topic),
                                    payload, strlen(payload), t);
    assert_non_null(m);
    return m;
}

static void test_ids_increase_and_parse_back(void **state)
{
    struct history_config c = test_cfg(1000, 1 << 20, 0);
    struct ring *h = ring_new(&c, T0);
    char prev[MESSAGE_ID_MAX] = "";
    uint64_t seq;

    for (int i = 1; i <= 200; i++) {
        struct message *m = test_msg("t", "p", T0);
        assert_int_equal(ring_append(h, m), 0);
        assert_int_equal(m->seq, (uint64_t)i);
        assert_int_equal(strlen(m->id), m->id_len);
        /* Only [0-9A-Za-z._:-] (SPEC 3.2). */
        assert_int_equal(strspn(m->id, "0123456789abcdefghijklmnopqrstuvwxyz"
                                       "ABCDEFGHIJKLMNOPQRSTUVWXYZ._:-"),
                         m->id_len);
        assert_int_equal(ring_find(h, m->id, m->id_len, &seq),
                         HISTORY_FOUND);
        assert_int_equal(seq, (uint64_t)i);
        assert_string_not_equal(prev, m->id);
        snprintf(prev, sizeof(prev), "%s", m->id);
    }
    assert_int_equal(ring_count(h), 200);
    assert_int_equal(ring_first_seq(h), 1);
    assert_int_equal(ring_next_seq(h), 201);
    assert_ptr_equal(ring_at(h, 57)->seq, 57);
    assert_null(ring_at(h, 0));
    assert_null(ring_at(h, 201));
    ring_free(h);
}

static void test_evicts_by_count(void **state)
{
    struct history_config c = test_cfg(3, 1 << 20, 0);
    struct ring *h = ring_new(&c, T0);
    char id1[MESSAGE_ID_MAX], id2[MESSAGE_ID_MAX];
    uint64_t seq;

    for (int i = 1; i <= 10; i++)
        assert_int_equal(ring_append(h, test_msg("t", "p", T0)), 0);
    assert_int_equal(ring_count(h), 3);
    assert_int_equal(ring_first_seq(h), 8);
    ring_format_id(h, 1, id1, sizeof(id1));
    ring_format_id(h, 7, id2, sizeof(id2));
    /* #1 lost events after it: expired. #7 is the last evicted one, but
     * everything after it is still held: resumable. */
    assert_int_equal(ring_find(h, id1, strlen(id1), &seq),
                     HISTORY_EXPIRED);
    assert_int_equal(ring_find(h, id2, strlen(id2), &seq), HISTORY_FOUND);
    assert_int_equal(seq, 7);
    ring_free(h);
}

static void test_evicts_by_bytes_but_keeps_newest(void **state)
{
    struct history_config c = test_cfg(1000, 1, 0);
    struct ring *h = ring_new(&c, T0);

    for (int i = 0; i < 5; i++)
        assert_int_equal(ring_append(h, test_msg("t", "payload", T0)), 0);
    assert_int_equal(ring_count(h), 1);
    assert_int_equal(ring_first_seq(h), 5);
    assert_true(ring_bytes(h) > 0);
    ring_free(h);
}

static void test_bytes_accounting(void **state)
{
    struct history_config c = test_cfg(2, 1 << 20, 0);
    struct ring *h = ring_new(&c, T0);
    struct message *a = test_msg("a", "1", T0);
    size_t size = message_size(a);

    ring_append(h, a);
    ring_append(h, test_msg("b", "2", T0));
    ring_append(h, test_msg("c", "3", T0));
    assert_int_equal(ring_bytes(h), 2 * size);
    ring_free(h);
}

static void test_expires_by_age(void **state)
{
    struct history_config c = test_cfg(1000, 1 << 20, 60000);
    struct ring *h = ring_new(&c, T0);

    ring_append(h, test_msg("t", "old", T0));
    ring_append(h, test_msg("t", "old", T0 + 1000));
    ring_append(h, test_msg("t", "new", T0 + 50000));
    ring_expire(h, T0 + 61500);
    assert_int_equal(ring_count(h), 1);
    assert_int_equal(ring_first_seq(h), 3);
    ring_expire(h, T0 + 200000);
    assert_int_equal(ring_count(h), 0);
    assert_int_equal(ring_first_seq(h), ring_next_seq(h));
    ring_free(h);
}

static void test_unknown_ids(void **state)
{
    struct history_config c = test_cfg(10, 1 << 20, 0);
    struct ring *h = ring_new(&c, T0);
    struct ring *other = ring_new(&c, T0 + 1);
    char id[MESSAGE_ID_MAX];
    uint64_t seq;
    const char *bad[] = {"", "-", "1", "zzz-1", "abc", "\0\0",
                         "99999999999999999999999999-1"};

    ring_append(h, test_msg("t", "p", T0));
    ring_append(other, test_msg("t", "p", T0));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ring_find(h, bad[i], strlen(bad[i]), &seq),
                         HISTORY_UNKNOWN);
    /* An id of another history (a restart without persistence). */
    ring_format_id(other, 1, id, sizeof(id));
    assert_int_equal(ring_find(h, id, strlen(id), &seq), HISTORY_UNKNOWN);
    /* Never issued yet, zero, overflow, trailing junk. */
    ring_format_id(h, 2, id, sizeof(id));
    assert_int_equal(ring_find(h, id, strlen(id), &seq), HISTORY_UNKNOWN);
    ring_format_id(h, 0, id, sizeof(id));
    assert_int_equal(ring_find(h, id, strlen(id), &seq), HISTORY_UNKNOWN);
    ring_format_id(h, 1, id, sizeof(id));
    strcat(id, "x");
    assert_int_equal(ring_find(h, id, strlen(id), &seq), HISTORY_UNKNOWN);
    snprintf(id + strlen(id) - 2, 30, "99999999999999999999999");
    assert_int_equal(ring_find(h, id, strlen(id), &seq), HISTORY_UNKNOWN);
    /* Only the id as issued: a zero-padded seq names no event. */
    ring_format_id(h, 1, id, sizeof(id));
    assert_int_equal(ring_find(h, id, strlen(id), &seq), HISTORY_FOUND);
    memmove(strrchr(id, '-') + 2, strrchr(id, '-') + 1, 2);
    strrchr(id, '-')[1] = '0';
    assert_int_equal(ring_find(h, id, strlen(id), &seq), HISTORY_UNKNOWN);
    ring_free(h);
    ring_free(other);
}

static void test_grows_past_initial_capacity(void **state)
{
    struct history_config c = test_cfg(100000, 1ULL << 40, 0);
    struct ring *h = ring_new(&c, T0);

    for (int i = 0; i < 5000; i++)
        assert_int_equal(ring_append(h, test_msg("t", "p", T0)), 0);
    for (uint64_t s = 1; s <= 5000; s++)
        assert_int_equal(ring_at(h, s)->seq, s);
    ring_free(h);
}

static struct message *test_msg_seq(uint64_t seq)
{
    struct message *m = test_msg("t", "p", T0);
    m->seq = seq;
    return m;
}

static void test_restore_keeps_seqs_and_epoch(void **state)
{
    struct history_config c = test_cfg(100, 1 << 20, 0);
    struct ring *h = ring_new(&c, T0);
    struct ring *again = ring_new(&c, T0);
    char id[MESSAGE_ID_MAX];
    uint64_t seq;

    /* A journal whose oldest segments were trimmed starts at seq 40. */
    for (uint64_t s = 40; s <= 45; s++)
        assert_int_equal(ring_restore(h, test_msg_seq(s)), 0);
    assert_int_equal(ring_first_seq(h), 40);
    assert_int_equal(ring_next_seq(h), 46);
    /* Same epoch: an id issued before the restart is found again. */
    ring_format_id(again, 42, id, sizeof(id));
    assert_int_equal(ring_find(h, id, strlen(id), &seq), HISTORY_FOUND);
    assert_int_equal(seq, 42);
    /* New appends continue the sequence. */
    assert_int_equal(ring_append(h, test_msg("t", "p", T0)), 0);
    assert_non_null(ring_at(h, 46));
    ring_free(h);
    ring_free(again);
}

static void test_restore_gap_acts_as_eviction(void **state)
{
    struct history_config c = test_cfg(100, 1 << 20, 0);
    struct ring *h = ring_new(&c, T0);
    char id[MESSAGE_ID_MAX];
    uint64_t seq;

    ring_restore(h, test_msg_seq(1));
    ring_restore(h, test_msg_seq(2));
    /* Records 3..9 were lost on disk. */
    assert_int_equal(ring_restore(h, test_msg_seq(10)), 0);
    assert_int_equal(ring_first_seq(h), 10);
    assert_int_equal(ring_count(h), 1);
    ring_format_id(h, 2, id, sizeof(id));
    assert_int_equal(ring_find(h, id, strlen(id), &seq), HISTORY_EXPIRED);
    /* A seq that goes backwards is refused. */
    assert_int_equal(ring_restore(h, test_msg_seq(5)), -1);
    ring_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_increase_and_parse_back),
        cmocka_unit_test(test_evicts_by_count),
        cmocka_unit_test(test_evicts_by_bytes_but_keeps_newest),
        cmocka_unit_test(test_bytes_accounting),
        cmocka_unit_test(test_expires_by_age),
        cmocka_unit_test(test_unknown_ids),
        cmocka_unit_test(test_grows_past_initial_capacity),
        cmocka_unit_test(test_restore_keeps_seqs_and_epoch),
        cmocka_unit_test(test_restore_gap_acts_as_eviction),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
