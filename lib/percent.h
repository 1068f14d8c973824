/*
 * percent.h - strict percent-decoding of URL paths and query strings.
 *
 * Hand-written because libevent's evhttp_uridecode passes malformed
 * escapes through unchanged (and allocates per call), where SPEC 4 wants a
 * 400 for them.
 */
#ifndef SLUICE_PERCENT_H
#define SLUICE_PERCENT_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Decodes in[0..len) into out (room for len bytes): every '%' must start
 * "%XX", and a NUL (raw or decoded) is refused. With `form`, '+' is a
 * space (application/x-www-form-urlencoded, for query strings); in a path
 * it is itself. Returns the decoded length, or -1.
 */
long percent_decode(const char *in, size_t len, char *out, bool form);

/* The same into a new NUL-terminated string (caller frees); NULL when
 * in[0..len) is malformed or on ENOMEM. */
char *percent_decode_dup(const char *in, size_t len, bool form);

#endif
