/*
 * config_scalar.h - text-level conversions for the config loader.
 *
 * config.c walks the YAML tree and knows positions and keys; the
 * functions here only turn one scalar's text into a value: ${VAR}
 * expansion, durations, sizes, booleans, integers, the listen address,
 * and the edit distance behind "did you mean ...?" hints. They know
 * nothing about YAML, positions or error lists, so they can be tested
 * on plain strings. Internal to the config module (not part of the
 * config.h contract).
 *
 * None of these functions puts the converted text into a message: a
 * scalar may hold a secret (a token, a URL with a password), so error
 * messages describe what was expected, never what was found.
 */
#ifndef SLUICE_CONFIG_SCALAR_H
#define SLUICE_CONFIG_SCALAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Results of the number parsers below. */
enum config_scalar_result {
    CONFIG_SCALAR_OK = 0,
    CONFIG_SCALAR_SYNTAX = -1,   /* not of the expected form */
    CONFIG_SCALAR_NEGATIVE = -2, /* starts with '-' where that is not allowed */
    CONFIG_SCALAR_RANGE = -3,    /* too large to represent */
};

/*
 * Expands ${NAME} and ${NAME:-default} in text[0..len) from the process
 * environment. NAME is [A-Za-z_][A-Za-z0-9_]*; with ":-" the default is
 * used when the variable is unset or empty (as in POSIX sh); the default
 * is literal text up to the first '}'. "$$" and a '$' not followed by
 * '{' are copied unchanged; expanded values are not expanded again.
 *
 * Returns a new NUL-terminated string (the caller frees it), or NULL with
 * a one-line reason in err (an unset variable, an unterminated or
 * malformed reference, a NUL byte, out of memory). The reason may name a
 * variable but never contains a value.
 */
char *config_scalar_expand(const char *text, size_t len, char *err,
                           size_t errlen);

/* "15s", "250ms", "2m", "1h" or a lone "0" -> milliseconds. */
enum config_scalar_result config_scalar_duration(const char *s, int64_t *ms);

/* "64MiB", "512KiB", "1GiB", "100B" or a bare integer -> bytes. */
enum config_scalar_result config_scalar_size(const char *s, uint64_t *bytes);

/* A decimal integer with an optional leading '-'. */
enum config_scalar_result config_scalar_int(const char *s, int64_t *out);

/* true/false, yes/no, on/off in any letter case. Returns 0 or -1. */
int config_scalar_bool(const char *s, bool *out);

/*
 * Splits a listen address "host:port" or "[v6]:port" (brackets removed
 * from the host). A host is required. On success returns 0 and stores a
 * new string in *host (the caller frees it); else -1 with a reason in err.
 */
int config_scalar_listen(const char *s, char **host, int *port, char *err,
                         size_t errlen);

/* Levenshtein distance between a and b; SIZE_MAX when either is longer
 * than 64 bytes (no key is, so no hint is wanted for such strings). */
size_t config_scalar_distance(const char *a, const char *b);

/* Writes ms as the largest exact unit ("1s", "90s", "250ms"). */
void config_scalar_format_duration(int64_t ms, char *buf, size_t len);

/* Writes bytes as the largest exact unit ("1KiB", "64MiB", "100B"). */
void config_scalar_format_size(uint64_t bytes, char *buf, size_t len);

#endif
