/*
 * test_url.c - lib/url.c: the broker URL grammar, strict decoding of the
 * user and password, hosts (names, IPv4, bracketed IPv6), ports, and the
 * refusals (bad escapes, %00, query, fragment, spaces, port 0).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "lib/url.h"

static void test_full(void **state)
{
    struct url u;
    char why[128];

    (void)state;
    assert_int_equal(url_parse("MQTTS://us%40er:p%3Ass@broker.example:8883/",
                               &u, why, sizeof(why)), 0);
    assert_string_equal(u.scheme, "mqtts");
    assert_string_equal(u.user, "us@er");
    assert_string_equal(u.password, "p:ss");
    assert_string_equal(u.host, "broker.example");
    assert_false(u.ipv6);
    assert_int_equal(u.port, 8883);
    assert_string_equal(u.path, "/");
    url_clear(&u);
}

static void test_minimal_and_ipv6(void **state)
{
    struct url u;
    char why[128];

    (void)state;
    assert_int_equal(url_parse("redis://127.0.0.1", &u, why, sizeof(why)), 0);
    assert_null(u.user);
    assert_null(u.password);
    assert_int_equal(u.port, -1);
    assert_string_equal(u.path, "");
    url_clear(&u);
    assert_int_equal(url_parse("redis://:secret@[::1]:6380/2", &u, why,
                               sizeof(why)), 0);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "secret");
    assert_string_equal(u.host, "::1");
    assert_true(u.ipv6);
    assert_int_equal(u.port, 6380);
    assert_string_equal(u.path, "/2");
    url_clear(&u);
    /* A bare userinfo is a user; redis reads it as the password. */
    assert_int_equal(url_parse("redis://pw@h", &u, why, sizeof(why)), 0);
    assert_string_equal(u.user, "pw");
    assert_null(u.password);
    url_clear(&u);
    /* The last '@' ends the userinfo. */
    assert_int_equal(url_parse("redis://:p@ss@h", &u, why, sizeof(why)), 0);
    assert_string_equal(u.password, "p@ss");
    assert_string_equal(u.host, "h");
    url_clear(&u);
}

static void test_refused(void **state)
{
    static const char *const bad[] = {
        "", "h:1", "://h", "1x://h", "mqtt://", "mqtt://:1883",
        "mqtt://h:0", "mqtt://h:65536", "mqtt://h:12a", "mqtt://h:",
        "mqtt://u:p%zz@h", "mqtt://u:p%00x@h", "mqtt://u%0@h",
        "mqtt://h?x=1", "mqtt://h#f", "mqtt://h st", "mqtt://h\t",
        "mqtt://[::1", "mqtt://[zz]:1", "mqtt://[::1]x", "mqtt://ho$t",
        "mqtt://h\x7f",
    };
    char why[128];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct url u;
        why[0] = '\0';
        if (url_parse(bad[i], &u, why, sizeof(why)) == 0)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_true(strlen(why) > 0);
        /* Messages never quote the URL (it may hold a password). */
        assert_null(strstr(why, "%zz"));
        url_clear(&u);
    }
    assert_int_equal(url_parse(NULL, &(struct url){0}, why, sizeof(why)), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_minimal_and_ipv6),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
