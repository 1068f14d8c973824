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
 * Signed path: the input up to its first '\n' is also taken as the JSON
 * claims of a token signed here with the configured HS256 secret (header
 * {"alg":"HS256","typ":"JWT"}, claims base64url'ed as they are, without
 * re-serialising), and the rest (if any) as the request path, so that the
 * claim checks behind the signature are reached: exp, nbf, iss and aud
 * (against a second auth block with issuer and audience set), sub, the
 * "sluice": {"allow": [...]} claim and "{sub}" in globs. Every AUTH_OK is
 * checked against the claims as jansson reads them: exp an integer not
 * past (with the leeway) and reported as the expiry, nbf not ahead, iss and
 * aud as configured, and the path allowed by a jwt.allow glob (with a
 * usable sub) or a "sluice.allow" glob.
 *
 * Build and run (see the report of the auth module):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. auth/auth.c \
 *       tests/fuzz/fuzz_auth.c -ljwt -ljansson -lcrypto -o /tmp/fuzz_auth
 *   /tmp/fuzz_auth -max_total_time=60 tests/fuzz/corpus/auth
 * The seed tokens in the corpus are HS256 with the secret below and
 * expire in 2100; "now" is fixed in 2030.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth/auth.h"
#include "lib/pathglob.h"

#define FUZZ_NOW_MS INT64_C(1900000000000)
#define FUZZ_SECRET "fuzz-jwt-secret"
#define FUZZ_ISSUER "https://issuer.example"
#define FUZZ_AUDIENCE "dashboards"
#define FUZZ_LEEWAY_MS 5000

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
    cfg->auth.jwt.secret = (char *)FUZZ_SECRET;
    cfg->auth.jwt.issuer = NULL;
    cfg->auth.jwt.audience = NULL;
    cfg->auth.jwt.allow.items = jwt_allow;
    cfg->auth.jwt.allow.count = 2;
    cfg->auth.jwt.leeway_ms = FUZZ_LEEWAY_MS;
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

/* Appends base64url (no padding) of p[0..len) at out; returns the end. */
static char *fuzz_b64url(char *out, const unsigned char *p, size_t len)
{
    static const char abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;

        if (i + 1 < len)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < len)
            v |= p[i + 2];
        *out++ = abc[v >> 18 & 63];
        *out++ = abc[v >> 12 & 63];
        if (i + 1 < len)
            *out++ = abc[v >> 6 & 63];
        if (i + 2 < len)
            *out++ = abc[v & 63];
    }
    *out = '\0';
    return out;
}

/* "header.claims.signature" with HS256 and FUZZ_SECRET (malloc'ed). */
static char *fuzz_sign(const char *claims, size_t len)
{
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    char *tok = malloc(len * 4 / 3 + 200), *end;

    if (tok == NULL)
        return NULL;
    end = fuzz_b64url(tok, (const unsigned char *)header,
                      sizeof(header) - 1);
    *end++ = '.';
    end = fuzz_b64url(end, (const unsigned char *)claims, len);
    if (HMAC(EVP_sha256(), FUZZ_SECRET, (int)strlen(FUZZ_SECRET),
             (const unsigned char *)tok, (size_t)(end - tok), mac,
             &maclen) == NULL)
        abort();
    *end++ = '.';
    fuzz_b64url(end, mac, maclen);
    return tok;
}

/* True when path is allowed by the claims (see the top comment). */
static bool fuzz_claims_allow(const struct config *cfg, const json_t *claims,
                              const char *path)
{
    const char *sub = json_string_value(json_object_get(claims, "sub"));
    const json_t *allow, *item;
    size_t i;
    bool sub_ok = sub != NULL && sub[0] != '\0' && strcmp(sub, ".") != 0 &&
                  strcmp(sub, "..") != 0 && strpbrk(sub, "/*") == NULL;

    for (i = 0; i < cfg->auth.jwt.allow.count; i++) {
        const char *glob = cfg->auth.jwt.allow.items[i];

        if ((strstr(glob, "{sub}") == NULL || sub_ok) &&
            pathglob_match(glob, sub, path))
            return true;
    }
    allow = json_object_get(json_object_get(claims, "sluice"), "allow");
    json_array_foreach(allow, i, item)
    {
        const char *glob = json_string_value(item);

        if (glob != NULL && pathglob_match(glob, NULL, path))
            return true;
    }
    return false;
}

/* True when the "aud" claim is want or an array holding it. */
static bool fuzz_aud_ok(const json_t *claims, const char *want)
{
    const json_t *aud = json_object_get(claims, "aud"), *item;
    size_t i;

    if (json_is_string(aud))
        return strcmp(json_string_value(aud), want) == 0;
    json_array_foreach(aud, i, item)
    {
        if (json_is_string(item) && strcmp(json_string_value(item), want) == 0)
            return true;
    }
    return false;
}

/* Offers claims, signed, on path to a; checks an AUTH_OK against them. */
static void fuzz_signed(const struct auth *a, const struct config *cfg,
                        const char *claims, size_t len, const char *path)
{
    char *tok = fuzz_sign(claims, len);
    json_t *c, *exp, *nbf;
    int64_t expires = -1;
    enum auth_result r;
    char who[64];

    if (tok == NULL)
        return;
    r = auth_check(a, &(struct auth_request){path, NULL, tok, NULL},
                   FUZZ_NOW_MS, &expires, who, sizeof(who));
    free(tok);
    if (getenv("FUZZ_AUTH_TRACE") != NULL) /* to check what seeds reach */
        fprintf(stderr, "signed %s: %s\n", path, auth_result_text(r));
    if (auth_result_text(r) == NULL || (r != AUTH_OK && expires != 0))
        abort();
    if (r != AUTH_OK)
        return;
    c = json_loadb(claims, len, 0, NULL);
    if (c == NULL)
        return; /* libjwt read it; jansson's strict mode may not */
    exp = json_object_get(c, "exp");
    nbf = json_object_get(c, "nbf");
    if (!json_is_integer(exp) ||
        FUZZ_NOW_MS >= json_integer_value(exp) * 1000 + FUZZ_LEEWAY_MS ||
        expires != json_integer_value(exp) * 1000)
        abort(); /* exp is required, not past, and is the expiry */
    if (nbf != NULL && (!json_is_integer(nbf) ||
                        FUZZ_NOW_MS < json_integer_value(nbf) * 1000 -
                                          FUZZ_LEEWAY_MS))
        abort(); /* nbf not ahead */
    if (json_object_get(c, "sub") != NULL &&
        !json_is_string(json_object_get(c, "sub")))
        abort();
    if (cfg->auth.jwt.issuer != NULL &&
        (!json_is_string(json_object_get(c, "iss")) ||
         strcmp(json_string_value(json_object_get(c, "iss")),
                cfg->auth.jwt.issuer) != 0))
        abort();
    if (cfg->auth.jwt.audience != NULL &&
        !fuzz_aud_ok(c, cfg->auth.jwt.audience))
        abort();
    if (!fuzz_claims_allow(cfg, c, path))
        abort();
    json_decref(c);
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

    /* Signed: claims up to the first '\n', the rest as the path. */
    {
        const char *nl = memchr(s, '\n', size);
        size_t clen = nl != NULL ? (size_t)(nl - s) : size;
        const char *path = nl != NULL ? nl + 1 : "/users/bob/feed";
        struct auth *b;

        fuzz_signed(a, &cfg, s, clen, path);
        fuzz_signed(a, &cfg, s, clen, "/public/x/y");
        cfg.auth.jwt.issuer = (char *)FUZZ_ISSUER;
        cfg.auth.jwt.audience = (char *)FUZZ_AUDIENCE;
        b = auth_new(&cfg, NULL, 0);
        if (b == NULL)
            abort();
        fuzz_signed(b, &cfg, s, clen, path);
        auth_free(b);
    }

    auth_free(a);
    free(s);
    return 0;
}
