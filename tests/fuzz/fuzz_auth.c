/*
 * fuzz_auth.c - libFuzzer driver for auth/auth.c.
 *
 * Every input is offered to auth_check() as an Authorization header
 * value, as a "token" query parameter and as a Cookie header, against an
 * auth block with one static token, an HS256 jwt block (with jwt.allow
 * globs using "{sub}") and the cookie "sluice_token"; it is also used as
 * a request path and as an allow glob. The auth state is rebuilt per
 * input (cheap for HS256) so that the driver keeps no global state.
 *
 * Build and run (see the report of the auth module):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. auth/auth.c \
 *       tests/fuzz/fuzz_auth.c -ljwt -ljansson -lcrypto -o /tmp/fuzz_auth
 *   /tmp/fuzz_auth -max_total_time=60 tests/fuzz/corpus/auth
 * The seed tokens in the corpus are HS256 with the secret below and
 * expire in 2100; "now" is fixed in 2030.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "lib/pathglob.h"

#define FUZZ_NOW_MS INT64_C(1900000000000)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_config(struct config *cfg, struct token_config *token,
                        char **token_allow, char **jwt_allow)
{
    memset(cfg, 0, sizeof(*cfg));
    memset(token, 0, sizeof(*token));
    token_allow[0] = (char *)"/sites/*";
    token->name = (char *)"wallboard";
    token->token = (char *)"fuzz-static-token";
    token->allow.items = token_allow;
    token->allow.count = 1;
    jwt_allow[0] = (char *)"/users/{sub}/*";
    jwt_allow[1] = (char *)"/public/**";
    cfg->auth.present = true;
    cfg->auth.tokens = token;
    cfg->auth.ntokens = 1;
    cfg->auth.cookie = (char *)"sluice_token";
    cfg->auth.jwt.present = true;
    cfg->auth.jwt.algorithm = CONFIG_JWT_HS256;
    cfg->auth.jwt.secret = (char *)"fuzz-jwt-secret";
    cfg->auth.jwt.issuer = NULL;
    cfg->auth.jwt.audience = NULL;
    cfg->auth.jwt.allow.items = jwt_allow;
    cfg->auth.jwt.allow.count = 2;
    cfg->auth.jwt.leeway_ms = 5000;
}

/* Runs one request and checks the invariants every result must keep. */
static void fuzz_check(const struct auth *a, const struct auth_request *req)
{
    int64_t expires = -1;
    char who[64];
    enum auth_result r;

    r = auth_check(a, req, FUZZ_NOW_MS, &expires, who, sizeof(who));
    if (r != AUTH_OK && expires != 0)
        abort();
    if (strlen(who) >= sizeof(who))
        abort();
    for (const char *p = who; *p != '\0'; p++) {
        if (*p < 0x20 || *p == 0x7f)
            abort(); /* who must stay printable */
    }
    if (auth_result_text(r) == NULL)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct token_config token;
    char *token_allow[1], *jwt_allow[2];
    struct config cfg;
    struct auth *a;
    char *s;

    s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    fuzz_config(&cfg, &token, token_allow, jwt_allow);
    a = auth_new(&cfg, NULL, 0);
    if (a == NULL)
        abort();

    fuzz_check(a, &(struct auth_request){"/users/bob/feed", s, NULL, NULL});
    fuzz_check(a, &(struct auth_request){"/public/x", NULL, s, NULL});
    fuzz_check(a, &(struct auth_request){"/sites/a", NULL, NULL, s});
    fuzz_check(a, &(struct auth_request){s, NULL, "fuzz-static-token", NULL});
    (void)pathglob_match(s, "bob", "/sites/a/b");
    (void)pathglob_match("/users/{sub}/x/**", "bob", s);

    auth_free(a);
    free(s);
    return 0;
}
