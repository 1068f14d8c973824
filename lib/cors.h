/*
 * cors.h - which Origin a response lets read it (the `cors.origins` key).
 *
 * bridge/server.c asks this once per request, before any stream opens.
 * It lives apart from the server so that a fuzz target can drive it
 * (tests/fuzz/fuzz_cors.c) without an HTTP server around it.
 *
 * The rule: an Origin header is allowed when a configured entry is "*" or
 * equals it byte for byte (browsers send the origin serialised:
 * lower-case scheme and host, no path, no trailing slash; config.c
 * refuses entries of any other shape). No prefix, suffix, case-folded or
 * wildcard-subdomain match: "https://a.example" does not allow
 * "https://a.example.evil" nor "https://A.example".
 */
#ifndef SLUICE_CORS_H
#define SLUICE_CORS_H

#include "config/config.h"

/*
 * The value for Access-Control-Allow-Origin answering `origin` (the
 * request's Origin header, may be NULL), or NULL when it is not allowed.
 * Returns either the static string "*" (a "*" entry allows everyone) or
 * `origin` itself (borrowed: valid as long as the request's headers are),
 * never another string.
 */
const char *cors_allow_origin(const struct config_strv *origins,
                              const char *origin);

#endif
