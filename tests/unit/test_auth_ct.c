/*
 * test_auth_ct.c - how auth/auth.c compares a presented token with the
 * configured static tokens (README: "Static tokens are compared in
 * constant time").
 *
 * Timing is not measured: on a shared 2-core machine under ASan a timing
 * test is noise. Instead the comparison functions are intercepted at link
 * time (ld --wrap, see tests/CMakeLists.txt) for the objects of auth/,
 * lib/ and config/, and each auth_check() of a static token is checked:
 *
 *   - OpenSSL's CRYPTO_memcmp runs exactly once per configured token,
 *     each time over AUTH_DIGEST_LEN (32) bytes, whichever token matches,
 *     whether any matches, and however long the presented token is or
 *     where it first differs: no early exit, no length-dependent work;
 *   - what it compares are digests: neither argument holds token text;
 *   - no libc comparison (memcmp, bcmp, strcmp, strncmp, strcasecmp,
 *     strncasecmp) is given a buffer that starts with token text.
 *
 * What this does not prove: that CRYPTO_memcmp itself takes constant
 * time (OpenSSL's promise), that the compiler did not turn a hand-written
 * byte loop into early-exit code (no such loop exists; a new one would
 * have to bypass every function above), or anything about the time spent
 * before the comparison (SHA-256 of the presented token, whose length the
 * client knows anyway) or after it (the JWT path for a token that is not
 * a static one).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "auth/auth.h"

#define NOW_MS INT64_C(1900000000000)
#define DIGEST_LEN 32
/* Every token, configured or presented, starts with this, so that a
 * comparison of token text is recognised by its first bytes. */
#define MARK "ct-tok-"
#define MARK_LEN (sizeof(MARK) - 1)

/* ---- the interceptors (ld --wrap) ---- */

int __real_CRYPTO_memcmp(const void *a, const void *b, size_t n);
int __real_memcmp(const void *a, const void *b, size_t n);
int __real_bcmp(const void *a, const void *b, size_t n);
int __real_strcmp(const char *a, const char *b);
int __real_strncmp(const char *a, const char *b, size_t n);
int __real_strcasecmp(const char *a, const char *b);
int __real_strncasecmp(const char *a, const char *b, size_t n);

static struct {
    bool on;               /* counting: inside the auth_check under test */
    size_t ct_calls;       /* CRYPTO_memcmp calls */
    size_t ct_bad_len;     /* ... of another length than DIGEST_LEN */
    size_t ct_text;        /* ... with token text as an argument */
    size_t libc_text;      /* libc comparisons given token text */
    const char *libc_name; /* the first of those */
} seen;

/* True when p (n bytes readable, or a C string when n is SIZE_MAX)
 * starts with token text. */
static bool is_token_text(const void *p, size_t n)
{
    if (p == NULL)
        return false;
    if (n == SIZE_MAX)
        return __real_strncmp(p, MARK, MARK_LEN) == 0;
    return n >= MARK_LEN && __real_memcmp(p, MARK, MARK_LEN) == 0;
}

static void note_libc(const char *name, const void *a, const void *b, size_t n)
{
    if (!seen.on || (!is_token_text(a, n) && !is_token_text(b, n)))
        return;
    if (seen.libc_text++ == 0)
        seen.libc_name = name;
}

int __wrap_CRYPTO_memcmp(const void *a, const void *b, size_t n);
int __wrap_CRYPTO_memcmp(const void *a, const void *b, size_t n)
{
    if (seen.on) {
        seen.ct_calls++;
        if (n != DIGEST_LEN)
            seen.ct_bad_len++;
        if (is_token_text(a, n) || is_token_text(b, n))
            seen.ct_text++;
    }
    return __real_CRYPTO_memcmp(a, b, n);
}

int __wrap_memcmp(const void *a, const void *b, size_t n);
int __wrap_memcmp(const void *a, const void *b, size_t n)
{
    note_libc("memcmp", a, b, n);
    return __real_memcmp(a, b, n);
}

int __wrap_bcmp(const void *a, const void *b, size_t n);
int __wrap_bcmp(const void *a, const void *b, size_t n)
{
    note_libc("bcmp", a, b, n);
    return __real_bcmp(a, b, n);
}

int __wrap_strcmp(const char *a, const char *b);
int __wrap_strcmp(const char *a, const char *b)
{
    note_libc("strcmp", a, b, SIZE_MAX);
    return __real_strcmp(a, b);
}

int __wrap_strncmp(const char *a, const char *b, size_t n);
int __wrap_strncmp(const char *a, const char *b, size_t n)
{
    note_libc("strncmp", a, b, SIZE_MAX);
    return __real_strncmp(a, b, n);
}

int __wrap_strcasecmp(const char *a, const char *b);
int __wrap_strcasecmp(const char *a, const char *b)
{
    note_libc("strcasecmp", a, b, SIZE_MAX);
    return __real_strcasecmp(a, b);
}

int __wrap_strncasecmp(const char *a, const char *b, size_t n);
int __wrap_strncasecmp(const char *a, const char *b, size_t n)
{
    note_libc("strncasecmp", a, b, SIZE_MAX);
    return __real_strncasecmp(a, b, n);
}

/* ---- the auth block: four static tokens of different lengths ---- */

#define NTOKENS 4
static const char *const tokens[NTOKENS] = {
    MARK "alpha-0123456789abcdef",
    MARK "bravo-0123456789abcdef0123456789",
    MARK "c",
    MARK "delta-0123456789abcdef",
};

struct fixture {
    struct config cfg;
    struct token_config tok[NTOKENS];
    struct auth *auth;
};

static int setup(void **state)
{
    static struct fixture f;
    char err[256];

    memset(&f, 0, sizeof(f));
    f.cfg.auth.present = true;
    for (size_t i = 0; i < NTOKENS; i++) {
        f.tok[i].name = (char *)"t";
        f.tok[i].token = (char *)tokens[i];
    }
    f.cfg.auth.tokens = f.tok;
    f.cfg.auth.ntokens = NTOKENS;
    f.auth = auth_new(&f.cfg, err, sizeof(err));
    assert_non_null(f.auth);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    auth_free(f->auth);
    return 0;
}

/* auth_check with `token` as the bearer token, counting comparisons. */
static enum auth_result check(struct fixture *f, const char *token)
{
    char header[256];
    struct auth_request req = {.path = "/a", .authorization = header};
    int64_t expires = 0;
    enum auth_result r;

    snprintf(header, sizeof(header), "Bearer %s", token);
    memset(&seen, 0, sizeof(seen));
    seen.on = true;
    r = auth_check(f->auth, &req, NOW_MS, &expires, NULL, 0);
    seen.on = false;
    return r;
}

static void assert_compared_digests(const char *token)
{
    if (seen.ct_calls != NTOKENS || seen.ct_bad_len != 0 || seen.ct_text != 0 ||
        seen.libc_text != 0)
        fail_msg("token \"%s\": CRYPTO_memcmp %zu calls (want %d), %zu not "
                 "of %d bytes, %zu on token text; %zu libc comparisons of "
                 "token text (first: %s)",
                 token, seen.ct_calls, NTOKENS, seen.ct_bad_len, DIGEST_LEN,
                 seen.ct_text, seen.libc_text,
                 seen.libc_name != NULL ? seen.libc_name : "-");
}

/* The interceptors see auth.c's own calls: its cookie lookup compares
 * cookie names with memcmp, and a cookie named like a token is reported.
 * Without this the "no libc comparison" checks could pass vacuously. */
static void test_wrap_active(void **state)
{
    struct fixture *f = *state;
    struct auth_request req = {.path = "/a",
                               .cookie_header = MARK "cookie=" MARK "c"};
    int64_t expires = 0;

    auth_free(f->auth);
    f->cfg.auth.cookie = (char *)MARK "cookie";
    f->auth = auth_new(&f->cfg, NULL, 0);
    assert_non_null(f->auth);
    memset(&seen, 0, sizeof(seen));
    seen.on = true;
    assert_int_equal(auth_check(f->auth, &req, NOW_MS, &expires, NULL, 0),
                     AUTH_OK);
    seen.on = false;
    assert_true(seen.libc_text >= 1);
    assert_int_equal(seen.ct_calls, NTOKENS);
}

/* Each configured token matches, and costs the same comparisons. */
static void test_every_token_compares_all(void **state)
{
    struct fixture *f = *state;

    for (size_t i = 0; i < NTOKENS; i++) {
        assert_int_equal(check(f, tokens[i]), AUTH_OK);
        assert_compared_digests(tokens[i]);
    }
}

/* A wrong token: the same work wherever it first differs and whatever
 * its length. */
static void test_wrong_tokens_compare_all(void **state)
{
    struct fixture *f = *state;
    static const char *const wrong[] = {
        MARK "Xlpha-0123456789abcdef",                /* first byte */
        MARK "alpha-0123456789abcdeX",                /* last byte */
        MARK "alpha-0123456789abcde",                 /* a prefix */
        MARK "alpha-0123456789abcdef0",               /* one byte more */
        MARK "",                                      /* the mark alone */
        MARK "c0",                                    /* near the short one */
        MARK "zulu-0123456789abcdef0123456789abcdef", /* longer than all */
    };

    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        assert_int_equal(check(f, wrong[i]), AUTH_INVALID);
        assert_compared_digests(wrong[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_wrap_active, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_token_compares_all, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_wrong_tokens_compare_all, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
