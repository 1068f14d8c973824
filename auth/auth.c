/*
 * auth.c - who may open which stream (SPEC 3 "auth", SPEC 4).
 *
 * server.c calls auth_check() once per request for a non-public route,
 * before a stream is opened (per connection, not per event). The check:
 *
 *   1. picks ONE token: "Authorization: Bearer", else the "token" query
 *      parameter, else the configured cookie. The first source present
 *      is used; a present but malformed one is not skipped in favour of
 *      the next (that would let a stale cookie stand in for a typo).
 *   2. compares it in constant time against every static token;
 *   3. otherwise verifies it as a JWT with libjwt, then its claims;
 *   4. matches the request path against the token's allow globs.
 *
 * Invariants a change must keep:
 * - struct auth is immutable after auth_new(), so that SIGHUP can build a
 *   new one and swap it in. It borrows the config's strings.
 * - Nothing here logs, and no token byte reaches `who` or an error text.
 * - A JWT's header "alg" must equal the configured algorithm exactly.
 *   libjwt 1.10 verifies with whatever algorithm the header names (so an
 *   HS256 token "signed" with an RS256 server's public key text as HMAC
 *   secret verifies) and looks alg names up case-insensitively.
 * - Tokens longer than AUTH_TOKEN_MAX, or not shaped like a signed JWS,
 *   never reach libjwt: libjwt 1.10 copies every segment onto the stack
 *   with alloca(), so a huge token could overflow the stack.
 */
#include "auth/auth.h"
#include "lib/pathglob.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <jwt.h>

/* Longest token accepted, in bytes. An RS256 JWT with a few claims is
 * well under 2 KiB; anything longer is refused before it is decoded. */
#define AUTH_TOKEN_MAX 8192

/* Largest public key file read: a PEM key is a few KiB at most. */
#define AUTH_KEY_FILE_MAX (64 * 1024)

/* Smallest RSA key accepted for RS256 (RFC 7518 section 3.3). */
#define AUTH_RSA_MIN_BITS 2048

/* Latest exp/nbf accepted, 9999-12-31T23:59:59Z: keeps seconds * 1000
 * and the leeway arithmetic far from int64 overflow. */
#define AUTH_EPOCH_MAX_S INT64_C(253402300799)
#define AUTH_LEEWAY_MAX_MS (AUTH_EPOCH_MAX_S * 1000)

/* SHA-256, the digest static tokens are compared by. */
#define AUTH_DIGEST_LEN 32

/* The placeholder of jwt.allow globs. */
#define AUTH_SUB "{sub}"

/* One JWT algorithm of the config, with libjwt's view of it. */
struct auth_alg {
    enum config_jwt_alg config;
    jwt_alg_t libjwt;
    const char *name; /* the exact header "alg" */
    bool hmac;        /* key is the secret; else a PEM public key file */
};

static const struct auth_alg auth_algs[] = {
    {CONFIG_JWT_HS256, JWT_ALG_HS256, "HS256", true},
    {CONFIG_JWT_HS384, JWT_ALG_HS384, "HS384", true},
    {CONFIG_JWT_HS512, JWT_ALG_HS512, "HS512", true},
    {CONFIG_JWT_RS256, JWT_ALG_RS256, "RS256", false},
    {CONFIG_JWT_ES256, JWT_ALG_ES256, "ES256", false},
};

/* A static token, known by the SHA-256 of its text. */
struct auth_static {
    const struct token_config *cfg;
    unsigned char digest[AUTH_DIGEST_LEN];
};

struct auth {
    const struct auth_config *cfg; /* borrowed; outlives the auth */
    struct auth_static *statics;   /* owned; cfg->ntokens entries */
    const struct auth_alg *alg;    /* NULL: no jwt block */
    const unsigned char *key;      /* HS*: cfg's secret; else pem */
    size_t keylen;
    unsigned char *pem; /* owned: public key file contents */
};

/* The token of a request: a view into one of its header strings. */
struct auth_token {
    const char *ptr;
    size_t len;
};

static void auth_error(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void auth_error(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static const struct auth_alg *auth_alg_find(enum config_jwt_alg alg)
{
    for (size_t i = 0; i < sizeof(auth_algs) / sizeof(auth_algs[0]); i++) {
        if (auth_algs[i].config == alg)
            return &auth_algs[i];
    }
    return NULL;
}

/* SHA-256 of len bytes at data into md. Returns false on an OpenSSL
 * failure. */
static bool auth_digest(const void *data, size_t len,
                        unsigned char md[AUTH_DIGEST_LEN])
{
    unsigned int mdlen = 0;

    if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL))
        return false;
    return mdlen == AUTH_DIGEST_LEN;
}

/* Fills a->statics from the config. An empty static token is refused: it
 * would be a password nobody has to know. */
static int auth_statics_init(struct auth *a, char *err, size_t errlen)
{
    const struct auth_config *ac = a->cfg;

    if (ac->ntokens == 0)
        return 0;
    a->statics = calloc(ac->ntokens, sizeof(*a->statics));
    if (a->statics == NULL) {
        auth_error(err, errlen, "auth: out of memory");
        return -1;
    }
    for (size_t i = 0; i < ac->ntokens; i++) {
        const struct token_config *t = &ac->tokens[i];

        if (t->token == NULL || t->token[0] == '\0') {
            auth_error(err, errlen, "auth.tokens: token \"%s\" is empty",
                       t->name ? t->name : "?");
            return -1;
        }
        a->statics[i].cfg = t;
        if (!auth_digest(t->token, strlen(t->token), a->statics[i].digest)) {
            auth_error(err, errlen, "auth: SHA-256 unavailable");
            return -1;
        }
    }
    return 0;
}

/*
 * Reads the public key file at path into a new buffer (*out, owned by
 * the caller, NUL-terminated; *outlen excludes the NUL). On error returns
 * -1 with a message naming the file and the OS error.
 */
static int auth_read_key_file(const char *path, unsigned char **out,
                              size_t *outlen, char *err, size_t errlen)
{
    unsigned char *buf = NULL;
    size_t n;
    FILE *f;

    f = fopen(path, "rb");
    if (f == NULL) {
        auth_error(err, errlen, "auth.jwt.public_key_file: cannot open %s: %s",
                   path, strerror(errno));
        return -1;
    }
    buf = malloc(AUTH_KEY_FILE_MAX + 1);
    if (buf == NULL) {
        auth_error(err, errlen, "auth: out of memory");
        goto fail;
    }
    n = fread(buf, 1, AUTH_KEY_FILE_MAX + 1, f);
    if (ferror(f)) {
        auth_error(err, errlen, "auth.jwt.public_key_file: cannot read %s: %s",
                   path, strerror(errno));
        goto fail;
    }
    if (n > AUTH_KEY_FILE_MAX) {
        auth_error(err, errlen,
                   "auth.jwt.public_key_file: %s is larger than %d bytes", path,
                   AUTH_KEY_FILE_MAX);
        goto fail;
    }
    fclose(f);
    buf[n] = '\0';
    *out = buf;
    *outlen = n;
    return 0;

fail:
    free(buf);
    fclose(f);
    return -1;
}

/* True when pkey is a key alg can verify with: RSA of at least
 * AUTH_RSA_MIN_BITS for RS256, an EC key on P-256 for ES256. */
static bool auth_key_fits(const struct auth_alg *alg, EVP_PKEY *pkey)
{
    char group[64];

    if (alg->config == CONFIG_JWT_RS256) {
        return EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA &&
               EVP_PKEY_get_bits(pkey) >= AUTH_RSA_MIN_BITS;
    }
    if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC)
        return false;
    if (!EVP_PKEY_get_group_name(pkey, group, sizeof(group), NULL))
        return false;
    return strcmp(group, "prime256v1") == 0; /* OpenSSL's name of P-256 */
}

/*
 * Checks at start that a->pem holds a public key fit for a->alg, parsed
 * the way libjwt 1.10 parses it (PEM_read_bio_PUBKEY), so that a wrong
 * file is a config error rather than a 401 for every request.
 */
static int auth_public_key_check(const struct auth *a, const char *path,
                                 char *err, size_t errlen)
{
    EVP_PKEY *pkey = NULL;
    BIO *bio;
    int rc = -1;

    bio = BIO_new_mem_buf(a->pem, (int)a->keylen);
    if (bio != NULL)
        pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    if (pkey == NULL) {
        auth_error(err, errlen,
                   "auth.jwt.public_key_file: %s holds no PEM public key "
                   "(\"BEGIN PUBLIC KEY\")",
                   path);
    } else if (!auth_key_fits(a->alg, pkey)) {
        auth_error(err, errlen, "auth.jwt.public_key_file: %s is not %s", path,
                   a->alg->config == CONFIG_JWT_RS256
                       ? "an RSA public key of 2048 bits or more"
                       : "an EC P-256 public key");
    } else {
        rc = 0;
    }
    EVP_PKEY_free(pkey);
    BIO_free(bio);
    ERR_clear_error();
    return rc;
}

/* Sets up JWT verification: the algorithm and its key. */
static int auth_jwt_init(struct auth *a, const struct jwt_config *jc, char *err,
                         size_t errlen)
{
    a->alg = auth_alg_find(jc->algorithm);
    if (a->alg == NULL) {
        auth_error(err, errlen, "auth.jwt: unknown algorithm");
        return -1;
    }
    if (a->alg->hmac) {
        if (jc->secret == NULL || jc->secret[0] == '\0') {
            auth_error(err, errlen, "auth.jwt: %s needs a secret",
                       a->alg->name);
            return -1;
        }
        a->key = (const unsigned char *)jc->secret;
        a->keylen = strlen(jc->secret);
        return 0;
    }
    if (jc->public_key_file == NULL) {
        auth_error(err, errlen, "auth.jwt: %s needs public_key_file",
                   a->alg->name);
        return -1;
    }
    if (auth_read_key_file(jc->public_key_file, &a->pem, &a->keylen, err,
                           errlen) < 0)
        return -1;
    a->key = a->pem;
    return auth_public_key_check(a, jc->public_key_file, err, errlen);
}

struct auth *auth_new(const struct config *cfg, char *err, size_t errlen)
{
    struct auth *a;

    a = calloc(1, sizeof(*a));
    if (a == NULL) {
        auth_error(err, errlen, "auth: out of memory");
        return NULL;
    }
    a->cfg = &cfg->auth;
    if (!cfg->auth.present)
        return a;
    if (auth_statics_init(a, err, errlen) < 0)
        goto fail;
    if (cfg->auth.jwt.present &&
        auth_jwt_init(a, &cfg->auth.jwt, err, errlen) < 0)
        goto fail;
    return a;

fail:
    auth_free(a);
    return NULL;
}

void auth_free(struct auth *a)
{
    if (a == NULL)
        return;
    free(a->statics);
    free(a->pem);
    free(a);
}

bool auth_enabled(const struct auth *a)
{
    return a->cfg->present;
}

const char *auth_result_text(enum auth_result r)
{
    switch (r) {
    case AUTH_OK:
        return "ok";
    case AUTH_MISSING:
        return "missing token";
    case AUTH_INVALID:
        return "invalid token";
    case AUTH_EXPIRED:
        return "token expired";
    case AUTH_FORBIDDEN:
        return "forbidden";
    }
    return "unknown";
}

/* True when path matches one of the globs of list. */
static bool auth_glob_match_any(const struct config_strv *list,
                                const char *path)
{
    for (size_t i = 0; i < list->count; i++) {
        if (pathglob_match(list->items[i], NULL, path))
            return true;
    }
    return false;
}

/* ---- token extraction ---- */

static bool auth_is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Narrows [*start, *end) by the spaces and tabs at both ends. */
static void auth_trim(const char **start, const char **end)
{
    while (*start < *end && auth_is_ows(**start))
        (*start)++;
    while (*end > *start && auth_is_ows((*end)[-1]))
        (*end)--;
}

/*
 * Parses an Authorization header value "Bearer <token>" (RFC 6750; the
 * scheme is case-insensitive, one or more spaces follow it). Anything
 * else, including another scheme or an empty token, is AUTH_INVALID.
 */
static enum auth_result auth_from_bearer(const char *value,
                                         struct auth_token *tok)
{
    static const char scheme[] = "Bearer";
    const size_t schemelen = sizeof(scheme) - 1;
    const char *start = value;
    const char *end = value + strlen(value);

    auth_trim(&start, &end);
    if ((size_t)(end - start) <= schemelen ||
        strncasecmp(start, scheme, schemelen) != 0 || start[schemelen] != ' ')
        return AUTH_INVALID;
    start += schemelen;
    auth_trim(&start, &end);
    tok->ptr = start;
    tok->len = (size_t)(end - start);
    return tok->len > 0 ? AUTH_OK : AUTH_INVALID;
}

/*
 * If the cookie pair [p, end) ("name=value") has the name `name`, points
 * *value at its value, without surrounding whitespace and one pair of
 * double quotes, and returns true.
 */
static bool auth_cookie_pair(const char *p, const char *end, const char *name,
                             struct auth_token *value)
{
    const char *eq = memchr(p, '=', (size_t)(end - p));
    const char *name_end = eq;
    const char *vstart, *vend;
    size_t namelen = strlen(name);

    if (eq == NULL)
        return false;
    auth_trim(&p, &name_end);
    if ((size_t)(name_end - p) != namelen || memcmp(p, name, namelen) != 0)
        return false;
    vstart = eq + 1;
    vend = end;
    auth_trim(&vstart, &vend);
    if (vend - vstart >= 2 && vstart[0] == '"' && vend[-1] == '"') {
        vstart++;
        vend--;
    }
    value->ptr = vstart;
    value->len = (size_t)(vend - vstart);
    return true;
}

/*
 * Finds the cookie `name` in a Cookie header (RFC 6265 section 4.2.1:
 * "a=b; c=d", a value optionally in double quotes); the first pair of
 * that name wins, as browsers send the most specific cookie first.
 * Hand-written because none of our libraries parses Cookie headers
 * (libevent parses query strings only). Lenient the way servers are:
 * whitespace around names and values is ignored, pairs without '=' are
 * skipped, names compare exactly, so "xsluice_token" is not
 * "sluice_token". The value points into header.
 */
static bool auth_cookie_find(const char *header, const char *name,
                             struct auth_token *value)
{
    const char *p = header;

    for (;;) {
        const char *end = strchr(p, ';');

        if (end == NULL)
            end = p + strlen(p);
        if (auth_cookie_pair(p, end, name, value))
            return true;
        if (*end == '\0')
            return false;
        p = end + 1;
    }
}

/* Picks the request's token from the first source present (see top). */
static enum auth_result auth_extract(const struct auth *a,
                                     const struct auth_request *req,
                                     struct auth_token *tok)
{
    const char *cookie = a->cfg->cookie;

    if (req->authorization != NULL)
        return auth_from_bearer(req->authorization, tok);
    if (req->query_token != NULL) {
        tok->ptr = req->query_token;
        tok->len = strlen(req->query_token);
        return tok->len > 0 ? AUTH_OK : AUTH_INVALID;
    }
    if (cookie == NULL || cookie[0] == '\0' || req->cookie_header == NULL)
        return AUTH_MISSING;
    if (!auth_cookie_find(req->cookie_header, cookie, tok))
        return AUTH_MISSING;
    return tok->len > 0 ? AUTH_OK : AUTH_INVALID;
}

/* ---- identities ---- */

/* Copies s into who for logs, truncated to wholen, with every byte that
 * is not printable ASCII replaced by '?': a JWT's sub is text from
 * outside and must not forge log lines. */
static void auth_set_who(char *who, size_t wholen, const char *s)
{
    size_t i;

    if (who == NULL || wholen == 0)
        return;
    for (i = 0; i + 1 < wholen && s[i] != '\0'; i++)
        who[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    who[i] = '\0';
}

/* ---- static tokens ---- */

/*
 * Returns the static token equal to tok, or NULL. Compares SHA-256
 * digests with CRYPTO_memcmp against every configured token without
 * stopping at a match, so the time taken tells neither which token
 * matched nor how long the configured tokens are. Equal digests mean
 * equal tokens (SHA-256 is collision resistant).
 */
static const struct auth_static *auth_static_find(const struct auth *a,
                                                  const struct auth_token *tok)
{
    const struct auth_static *found = NULL;
    unsigned char md[AUTH_DIGEST_LEN];

    if (!auth_digest(tok->ptr, tok->len, md))
        return NULL;
    for (size_t i = 0; i < a->cfg->ntokens; i++) {
        bool same = CRYPTO_memcmp(md, a->statics[i].digest, sizeof(md)) == 0;

        if (same && found == NULL)
            found = &a->statics[i];
    }
    return found;
}

static enum auth_result auth_check_static(const struct auth_static *st,
                                          const char *path, char *who,
                                          size_t wholen)
{
    const struct token_config *t = st->cfg;

    auth_set_who(who, wholen, t->name != NULL ? t->name : "token");
    if (t->allow.count == 0)
        return AUTH_OK;
    return auth_glob_match_any(&t->allow, path) ? AUTH_OK : AUTH_FORBIDDEN;
}

/* ---- JWT ---- */

/*
 * True when tok looks like a signed compact JWS: three non-empty
 * base64url segments. Anything else never reaches libjwt; this also
 * refuses "alg: none" tokens, whose signature segment is empty.
 */
static bool auth_jws_shaped(const struct auth_token *tok)
{
    size_t dots = 0, seglen = 0;

    for (size_t i = 0; i < tok->len; i++) {
        char c = tok->ptr[i];

        if (c == '.') {
            if (seglen == 0)
                return false;
            dots++;
            seglen = 0;
        } else if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                   (c >= '0' && c <= '9') || c == '-' || c == '_') {
            seglen++;
        } else {
            return false;
        }
    }
    return dots == 2 && seglen > 0;
}

/* True when the verified token's header names exactly our algorithm (see
 * the top of the file for why libjwt's own check is not enough). */
static bool auth_jwt_alg_ok(const struct auth *a, jwt_t *jwt)
{
    const char *alg = jwt_get_header(jwt, "alg");

    return jwt_get_alg(jwt) == a->alg->libjwt && alg != NULL &&
           strcmp(alg, a->alg->name) == 0;
}

/* The claims of a verified token as a new jansson object (release with
 * json_decref), or NULL. */
static json_t *auth_jwt_claims(jwt_t *jwt)
{
    char *text = jwt_get_grants_json(jwt, NULL);
    json_t *claims;

    if (text == NULL)
        return NULL;
    claims = json_loads(text, 0, NULL);
    free(text);
    if (claims != NULL && !json_is_object(claims)) {
        json_decref(claims);
        return NULL;
    }
    return claims;
}

/* Reads the NumericDate claim key as whole seconds into *ms (in ms).
 * Returns 1 when present and valid, 0 when absent, -1 when malformed. */
static int auth_claim_time(const json_t *claims, const char *key, int64_t *ms)
{
    const json_t *v = json_object_get(claims, key);
    json_int_t s;

    if (v == NULL)
        return 0;
    if (!json_is_integer(v))
        return -1;
    s = json_integer_value(v);
    if (s < 0 || s > AUTH_EPOCH_MAX_S)
        return -1;
    *ms = (int64_t)s * 1000;
    return 1;
}

/* True when the claim key is a string equal to want, or want is NULL. */
static bool auth_claim_is(const json_t *claims, const char *key,
                          const char *want)
{
    const char *have;

    if (want == NULL)
        return true;
    have = json_string_value(json_object_get(claims, key));
    return have != NULL && strcmp(have, want) == 0;
}

/* True when want is NULL or the "aud" claim is want or an array holding
 * it (RFC 7519 section 4.1.3). */
static bool auth_audience_ok(const json_t *claims, const char *want)
{
    const json_t *aud = json_object_get(claims, "aud");
    size_t i;
    json_t *item;

    if (want == NULL || json_is_string(aud))
        return auth_claim_is(claims, "aud", want);
    if (!json_is_array(aud))
        return false;
    json_array_foreach(aud, i, item)
    {
        const char *s = json_string_value(item);

        if (s != NULL && strcmp(s, want) == 0)
            return true;
    }
    return false;
}

/* Checks exp (required) and nbf against now_ms with the leeway; sets
 * *exp_ms. Malformed or missing exp is AUTH_INVALID. */
static enum auth_result auth_claims_time(const struct jwt_config *jc,
                                         const json_t *claims, int64_t now_ms,
                                         int64_t *exp_ms)
{
    int64_t leeway = jc->leeway_ms;
    int64_t nbf_ms = 0;
    int nbf;

    if (auth_claim_time(claims, "exp", exp_ms) != 1)
        return AUTH_INVALID;
    nbf = auth_claim_time(claims, "nbf", &nbf_ms);
    if (nbf < 0)
        return AUTH_INVALID;
    if (leeway < 0)
        leeway = 0;
    if (leeway > AUTH_LEEWAY_MAX_MS)
        leeway = AUTH_LEEWAY_MAX_MS;
    if (now_ms >= *exp_ms + leeway)
        return AUTH_EXPIRED;
    if (nbf == 1 && now_ms < nbf_ms - leeway)
        return AUTH_EXPIRED;
    return AUTH_OK;
}

/*
 * True when sub may stand for "{sub}" in a glob: not empty, not "." or
 * "..", no '/' (it would reach into other paths: with sub "bob/x" the
 * glob "/users/{sub}/feed" would open bob's subtree "x/feed") and no '*'
 * (it would become a wildcard).
 */
static bool auth_sub_safe(const char *sub)
{
    if (sub == NULL || sub[0] == '\0')
        return false;
    if (strcmp(sub, ".") == 0 || strcmp(sub, "..") == 0)
        return false;
    return strpbrk(sub, "/*") == NULL;
}

/* Matches a jwt.allow glob, "{sub}" standing for sub. A glob with "{sub}"
 * never matches for a token without a sub fit for it (auth_sub_safe). */
static bool auth_sub_glob_match(const char *glob, const char *sub,
                                const char *path)
{
    if (strstr(glob, AUTH_SUB) != NULL && !auth_sub_safe(sub))
        return false;
    return pathglob_match(glob, sub, path);
}

/* True when path is in the union of jwt.allow and the token's own claim
 * "sluice": {"allow": [...]} (non-string items are ignored). */
static bool auth_jwt_allowed(const struct jwt_config *jc, const json_t *claims,
                             const char *sub, const char *path)
{
    const json_t *allow;
    size_t i;
    json_t *item;

    for (i = 0; i < jc->allow.count; i++) {
        if (auth_sub_glob_match(jc->allow.items[i], sub, path))
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

/* Checks the claims of a verified token, then the path. */
static enum auth_result auth_claims_check(const struct jwt_config *jc,
                                          const json_t *claims,
                                          const char *path, int64_t now_ms,
                                          int64_t *expires_ms, char *who,
                                          size_t wholen)
{
    const json_t *subv = json_object_get(claims, "sub");
    const char *sub = json_string_value(subv);
    enum auth_result r;
    int64_t exp_ms = 0;

    if (subv != NULL && sub == NULL)
        return AUTH_INVALID; /* a sub that is not a string */
    if (!auth_claim_is(claims, "iss", jc->issuer) ||
        !auth_audience_ok(claims, jc->audience))
        return AUTH_INVALID;
    r = auth_claims_time(jc, claims, now_ms, &exp_ms);
    if (r != AUTH_OK)
        return r;
    auth_set_who(who, wholen, sub != NULL ? sub : "jwt");
    if (path == NULL || !auth_jwt_allowed(jc, claims, sub, path))
        return AUTH_FORBIDDEN;
    *expires_ms = exp_ms;
    return AUTH_OK;
}

/* Verifies tok as a JWT, then its claims and the path. */
static enum auth_result auth_check_jwt(const struct auth *a,
                                       const struct auth_token *tok,
                                       const char *path, int64_t now_ms,
                                       int64_t *expires_ms, char *who,
                                       size_t wholen)
{
    enum auth_result r = AUTH_INVALID;
    json_t *claims = NULL;
    jwt_t *jwt = NULL;
    char *copy;

    if (!auth_jws_shaped(tok))
        return AUTH_INVALID;
    copy = strndup(tok->ptr, tok->len); /* jwt_decode wants a C string */
    if (copy == NULL)
        return AUTH_INVALID;
    if (jwt_decode(&jwt, copy, a->key, (int)a->keylen) != 0 || jwt == NULL)
        goto done;
    if (!auth_jwt_alg_ok(a, jwt))
        goto done;
    claims = auth_jwt_claims(jwt);
    if (claims == NULL)
        goto done;
    r = auth_claims_check(&a->cfg->jwt, claims, path, now_ms, expires_ms, who,
                          wholen);

done:
    json_decref(claims);
    jwt_free(jwt);
    OPENSSL_clear_free(copy, tok->len);
    return r;
}

enum auth_result auth_check(const struct auth *a,
                            const struct auth_request *req, int64_t now_ms,
                            int64_t *expires_ms, char *who, size_t wholen)
{
    const struct auth_static *st;
    struct auth_token tok = {NULL, 0};
    int64_t expires = 0;
    enum auth_result r;

    auth_set_who(who, wholen, "");
    if (expires_ms != NULL)
        *expires_ms = 0;
    if (!a->cfg->present) {
        auth_set_who(who, wholen, "anonymous");
        return AUTH_OK;
    }
    r = auth_extract(a, req, &tok);
    if (r != AUTH_OK)
        return r;
    if (tok.len > AUTH_TOKEN_MAX)
        return AUTH_INVALID;
    st = auth_static_find(a, &tok);
    if (st != NULL)
        return auth_check_static(st, req->path, who, wholen);
    if (a->alg == NULL)
        return AUTH_INVALID;
    r = auth_check_jwt(a, &tok, req->path, now_ms, &expires, who, wholen);
    if (r == AUTH_OK && expires_ms != NULL)
        *expires_ms = expires;
    return r;
}
