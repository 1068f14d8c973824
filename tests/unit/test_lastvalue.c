/*
 * test_lastvalue.c - lib/lastvalue.c: latest per topic, update order,
 * bounds, and MQTT retained-clear.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "lib/lastvalue.h"
#include "lib/message.h"

static struct message *lv_msg(uint32_t source, const char *topic,
                              const char *payload, uint64_t seq)
{
    struct message *m = message_new(source, SOURCE_MQTT, topic, strlen(topic),
                                    payload, strlen(payload), 0);
    assert_non_null(m);
    m->seq = seq;
    return m;
}

/* Records the walk as "topic=payload;" */
static void lv_collect(struct message *msg, void *arg)
{
    char *out = arg;
    strcat(out, msg->topic);
    strcat(out, "=");
    strncat(out, msg->payload, msg->payload_len);
    strcat(out, ";");
}

static void lv_put(struct lastvalue *lv, struct message *m)
{
    lastvalue_put(lv, m);
    message_unref(m); /* the cache keeps its own reference */
}

static void test_latest_per_topic_in_update_order(void **state)
{
    struct lastvalue *lv = lastvalue_new(100, 1 << 20);
    char walk[256] = "";

    lv_put(lv, lv_msg(0, "a", "1", 1));
    lv_put(lv, lv_msg(0, "b", "2", 2));
    lv_put(lv, lv_msg(0, "a", "3", 3));
    lv_put(lv, lv_msg(1, "a", "4", 4)); /* same topic, other source */
    lastvalue_each(lv, lv_collect, walk);
    assert_string_equal(walk, "b=2;a=3;a=4;");
    assert_int_equal(lastvalue_count(lv), 3);
    lastvalue_free(lv);
}

static void test_bounded_by_count_and_bytes(void **state)
{
    struct lastvalue *lv = lastvalue_new(2, 1 << 20);
    char walk[256] = "";
    struct message *big;

    lv_put(lv, lv_msg(0, "a", "1", 1));
    lv_put(lv, lv_msg(0, "b", "2", 2));
    lv_put(lv, lv_msg(0, "c", "3", 3));
    lastvalue_each(lv, lv_collect, walk);
    assert_string_equal(walk, "b=2;c=3;");
    lastvalue_free(lv);

    big = lv_msg(0, "x", "0123456789", 1);
    lv = lastvalue_new(100, message_size(big) + 1);
    lv_put(lv, big);
    lv_put(lv, lv_msg(0, "y", "0123456789", 2));
    walk[0] = '\0';
    lastvalue_each(lv, lv_collect, walk);
    assert_string_equal(walk, "y=0123456789;");
    lastvalue_free(lv);
}

static void test_empty_retained_clears_topic(void **state)
{
    struct lastvalue *lv = lastvalue_new(100, 1 << 20);
    struct message *clear = lv_msg(0, "a", "", 3);
    char walk[256] = "";

    lv_put(lv, lv_msg(0, "a", "1", 1));
    lv_put(lv, lv_msg(0, "b", "2", 2));
    clear->has_mqtt = true;
    clear->retain = true;
    lv_put(lv, clear);
    lastvalue_each(lv, lv_collect, walk);
    assert_string_equal(walk, "b=2;");
    lastvalue_free(lv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_latest_per_topic_in_update_order),
        cmocka_unit_test(test_bounded_by_count_and_bytes),
        cmocka_unit_test(test_empty_retained_clears_topic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
