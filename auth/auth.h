/*
 * auth.h - who may open which stream (SPEC 3 "auth", SPEC 4).
 *
 * A token comes from, in this order: "Authorization: Bearer", the
 * "token" query parameter, the configured cookie. It is either one of the
 * configured static tokens (compared in constant time) or a JWT verified
 * with libjwt against the one configured algorithm and key. The path the
 * client asks for must then match one of the token's allow globs.
 *
 * All auth state lives in one struct auth built from the config, so that
 * SIGHUP can build a new one and swap it in. It is immutable after
 * auth_new(). Nothing here ever logs or returns a token.
 */
#ifndef SLUICE_AUTH_H
#define SLUICE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct auth;

/*
 * Builds the auth state for cfg (which must outlive it); reads the
 * public key file for RS256/ES256. Returns NULL with a message in err
 * (no secret in it) when a key cannot be loaded. A config without an
 * auth block gives a struct auth that allows everything.
 */
struct auth *auth_new(const struct config *cfg, char *err, size_t errlen);
void auth_free(struct auth *a);

/* True when the config has an auth block (routes need tokens unless
 * public). */
bool auth_enabled(const struct auth *a);

/* The credentials of one request, as received; any may be NULL. */
struct auth_request {
    const char *path;          /* request path as received (percent-
                                  encoded): allow globs judge its decoded
                                  segments, as the router does */
    const char *authorization; /* the Authorization header value */
    const char *query_token;   /* the decoded "token" query parameter */
    const char *cookie_header; /* the Cookie header value */
};

enum auth_result {
    AUTH_OK,
    AUTH_MISSING,   /* 401: no token */
    AUTH_INVALID,   /* 401: unknown token, bad signature, wrong alg... */
    AUTH_EXPIRED,   /* 401: exp passed, or nbf not reached */
    AUTH_FORBIDDEN, /* 403: valid token, path not allowed */
};

/*
 * Checks a request for a non-public route at time now_ms (Unix ms). On
 * AUTH_OK sets *expires_ms to the token's exp in Unix ms (0 when it does
 * not expire: static tokens). `who` (may be NULL) receives a printable
 * identity for logs: the static token's name or the JWT's sub, never the
 * token.
 */
enum auth_result auth_check(const struct auth *a,
                            const struct auth_request *req, int64_t now_ms,
                            int64_t *expires_ms, char *who, size_t wholen);

/* A short text for a result, for the 401/403 body ("token expired"). */
const char *auth_result_text(enum auth_result r);

#endif
