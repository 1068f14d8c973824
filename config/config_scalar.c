/*
 * config_scalar.c - text-level conversions for the config loader (see
 * config_scalar.h). Pure functions over strings: no YAML, no positions,
 * no global state apart from reading the environment in
 * config_scalar_expand().
 *
 * Invariant: no function here copies its input into an error message
 * (only variable names, which are not secret, may appear).
 */
#include "config/config_scalar.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Longest variable name accepted in ${NAME}. */
#define EXPAND_NAME_MAX 128

/* A unit suffix and its multiplier. */
struct unit {
    const char *suffix;
    uint64_t factor;
};

static const struct unit duration_units[] = {
    {"ms", 1},
    {"s", 1000},
    {"m", 60 * 1000},
    {"h", 60 * 60 * 1000},
};

static const struct unit size_units[] = {
    {"B", 1},
    {"KiB", 1024},
    {"MiB", 1024 * 1024},
    {"GiB", 1024 * 1024 * 1024},
};

/* ASCII only: the C locale's isalnum() may accept more. */
static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_name_char(char c)
{
    return is_alpha(c) || is_digit(c) || c == '_';
}

/*
 * Expands the reference at ref[0..len), which starts with "${", into f.
 * Returns the number of bytes it used (through the closing '}'), or 0
 * with a reason in err.
 */
static size_t expand_reference(const char *ref, size_t len, FILE *f, char *err,
                               size_t errlen)
{
    const char *body = ref + 2;
    const char *close = memchr(body, '}', len - 2);
    const char *after;      /* the name's end: '}' or ":-default}" */
    const char *def = NULL; /* the default, ending at close */
    char name[EXPAND_NAME_MAX + 1];
    const char *value;
    size_t namelen = 0;

    if (!close) {
        snprintf(err, errlen, "unterminated '${' (missing '}')");
        return 0;
    }
    while (body + namelen < close && is_name_char(body[namelen]))
        namelen++;
    after = body + namelen;
    if (after < close && close - after >= 2 && after[0] == ':' &&
        after[1] == '-')
        def = after + 2;
    if (namelen == 0 || is_digit(body[0]) || (after < close && !def)) {
        snprintf(err, errlen,
                 "malformed variable reference: expected ${NAME} or "
                 "${NAME:-default}");
        return 0;
    }
    if (namelen > EXPAND_NAME_MAX) {
        snprintf(err, errlen, "variable name longer than %d characters",
                 EXPAND_NAME_MAX);
        return 0;
    }
    memcpy(name, body, namelen);
    name[namelen] = '\0';
    value = getenv(name);
    if (def && (!value || !*value)) {
        fwrite(def, 1, (size_t)(close - def), f);
    } else if (!value) {
        snprintf(err, errlen,
                 "environment variable '%s' is not set (write ${%s:-default} "
                 "to give a default)",
                 name, name);
        return 0;
    } else {
        fputs(value, f);
    }
    return (size_t)(close - ref) + 1;
}

/*
 * Hand-written rather than wordexp(3): wordexp also splits fields, expands
 * globs and removes quotes, which would mangle values such as "a b" or
 * "alerts:*", and it cannot leave "$$" alone.
 */
char *config_scalar_expand(const char *text, size_t len, char *err,
                           size_t errlen)
{
    char *out = NULL;
    size_t outlen = 0;
    size_t i = 0;
    FILE *f;

    if (memchr(text, '\0', len)) {
        snprintf(err, errlen, "value contains a NUL byte");
        return NULL;
    }
    f = open_memstream(&out, &outlen);
    if (!f) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    while (i < len) {
        const char *dollar = memchr(text + i, '$', len - i);
        size_t plain = dollar ? (size_t)(dollar - text) - i : len - i;

        fwrite(text + i, 1, plain, f);
        i += plain;
        if (i == len)
            break;
        if (i + 1 < len && text[i + 1] == '$') {
            fwrite("$$", 1, 2, f);
            i += 2;
        } else if (i + 1 == len || text[i + 1] != '{') {
            fputc('$', f);
            i++;
        } else {
            size_t used = expand_reference(text + i, len - i, f, err, errlen);
            if (used == 0)
                goto fail;
            i += used;
        }
    }
    if (ferror(f)) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (fclose(f) != 0) {
        snprintf(err, errlen, "out of memory");
        free(out);
        return NULL;
    }
    return out;

fail:
    fclose(f);
    free(out);
    return NULL;
}

/* Reads the leading decimal digits of s; *end points after them. */
static enum config_scalar_result parse_digits(const char *s, uint64_t *value,
                                              const char **end)
{
    char *e;
    unsigned long long v;

    if (s[0] == '-')
        return CONFIG_SCALAR_NEGATIVE;
    if (!is_digit(s[0]))
        return CONFIG_SCALAR_SYNTAX;
    errno = 0;
    v = strtoull(s, &e, 10);
    if (errno == ERANGE)
        return CONFIG_SCALAR_RANGE;
    *value = v;
    *end = e;
    return CONFIG_SCALAR_OK;
}

/* Multiplies the number in s by its unit from units[]; a missing unit is
 * allowed only when bare_factor is non-zero (bare_factor then applies). */
static enum config_scalar_result
parse_with_unit(const char *s, const struct unit *units, size_t nunits,
                uint64_t bare_factor, uint64_t limit, uint64_t *out)
{
    const char *suffix;
    uint64_t value;
    uint64_t factor = 0;
    enum config_scalar_result rc = parse_digits(s, &value, &suffix);

    if (rc != CONFIG_SCALAR_OK)
        return rc;
    if (*suffix == '\0')
        factor = bare_factor;
    for (size_t i = 0; i < nunits && factor == 0; i++)
        if (strcmp(suffix, units[i].suffix) == 0)
            factor = units[i].factor;
    if (factor == 0)
        return CONFIG_SCALAR_SYNTAX;
    if (value > limit / factor)
        return CONFIG_SCALAR_RANGE;
    *out = value * factor;
    return CONFIG_SCALAR_OK;
}

enum config_scalar_result config_scalar_duration(const char *s, int64_t *ms)
{
    uint64_t value;
    enum config_scalar_result rc;

    if (strcmp(s, "0") == 0) {
        *ms = 0;
        return CONFIG_SCALAR_OK;
    }
    rc = parse_with_unit(s, duration_units,
                         sizeof(duration_units) / sizeof(duration_units[0]), 0,
                         INT64_MAX, &value);
    if (rc == CONFIG_SCALAR_OK)
        *ms = (int64_t)value;
    return rc;
}

enum config_scalar_result config_scalar_size(const char *s, uint64_t *bytes)
{
    return parse_with_unit(s, size_units,
                           sizeof(size_units) / sizeof(size_units[0]), 1,
                           INT64_MAX, bytes);
}

enum config_scalar_result config_scalar_int(const char *s, int64_t *out)
{
    const char *digits = s[0] == '-' ? s + 1 : s;
    char *end;
    long long v;

    if (!is_digit(digits[0]))
        return CONFIG_SCALAR_SYNTAX;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno == ERANGE)
        return CONFIG_SCALAR_RANGE;
    if (*end != '\0')
        return CONFIG_SCALAR_SYNTAX;
    *out = v;
    return CONFIG_SCALAR_OK;
}

int config_scalar_bool(const char *s, bool *out)
{
    static const char *const truths[] = {"true", "yes", "on"};
    static const char *const lies[] = {"false", "no", "off"};

    for (size_t i = 0; i < sizeof(truths) / sizeof(truths[0]); i++) {
        if (strcasecmp(s, truths[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, lies[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

/* Host names and IPv4 addresses: [A-Za-z0-9._-]+. Inside brackets: an
 * IPv6 address, possibly with a zone ("fe80::1%eth0"). */
static bool listen_host_ok(const char *host, size_t len, bool bracketed)
{
    bool has_colon = false;

    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = host[i];
        if (c == ':')
            has_colon = true;
        if (is_alpha(c) || is_digit(c) || c == '.' || c == '-' || c == '_')
            continue;
        if (bracketed && (c == ':' || c == '%'))
            continue;
        return false;
    }
    return !bracketed || has_colon;
}

int config_scalar_listen(const char *s, char **host, int *port, char *err,
                         size_t errlen)
{
    const char *hstart = s;
    const char *hend;
    const char *portstr;
    bool bracketed = s[0] == '[';
    int64_t p;

    if (bracketed) {
        hstart = s + 1;
        hend = strchr(hstart, ']');
        if (!hend || hend[1] != ':') {
            snprintf(err, errlen, "expected [IPv6]:port, e.g. [::1]:8080");
            return -1;
        }
        portstr = hend + 2;
    } else {
        hend = strrchr(s, ':');
        if (!hend) {
            snprintf(err, errlen, "expected host:port, e.g. 127.0.0.1:8080");
            return -1;
        }
        if (memchr(s, ':', (size_t)(hend - s))) {
            snprintf(err, errlen,
                     "an IPv6 address needs brackets, e.g. [::1]:8080");
            return -1;
        }
        portstr = hend + 1;
    }
    if (hend == hstart) {
        snprintf(err, errlen,
                 "missing host (write 0.0.0.0:PORT to listen on all IPv4 "
                 "addresses)");
        return -1;
    }
    if (!listen_host_ok(hstart, (size_t)(hend - hstart), bracketed)) {
        snprintf(err, errlen, "invalid host");
        return -1;
    }
    if (config_scalar_int(portstr, &p) != CONFIG_SCALAR_OK || p < 1 ||
        p > 65535) {
        snprintf(err, errlen, "port must be a number from 1 to 65535");
        return -1;
    }
    *host = strndup(hstart, (size_t)(hend - hstart));
    if (!*host) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *port = (int)p;
    return 0;
}

/* The textbook two-row dynamic programme; libc has no edit distance. */
size_t config_scalar_distance(const char *a, const char *b)
{
    enum { MAX_LEN = 64 };
    size_t la = strlen(a);
    size_t lb = strlen(b);
    size_t prev[MAX_LEN + 1];
    size_t cur[MAX_LEN + 1];

    if (la > MAX_LEN || lb > MAX_LEN)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1;
            size_t ins = cur[j - 1] + 1;
            size_t best = sub < del ? sub : del;
            cur[j] = best < ins ? best : ins;
        }
        memcpy(prev, cur, (lb + 1) * sizeof(prev[0]));
    }
    return prev[lb];
}

/* Writes value in the largest unit of units[] (ascending) that divides
 * it exactly; units[0] always does. */
static void format_with_unit(uint64_t value, const struct unit *units,
                             size_t nunits, char *buf, size_t len)
{
    size_t i = nunits - 1;

    while (i > 0 && (value == 0 || value % units[i].factor != 0))
        i--;
    snprintf(buf, len, "%" PRIu64 "%s", value / units[i].factor,
             units[i].suffix);
}

void config_scalar_format_duration(int64_t ms, char *buf, size_t len)
{
    if (ms <= 0) {
        snprintf(buf, len, "0");
        return;
    }
    format_with_unit((uint64_t)ms, duration_units,
                     sizeof(duration_units) / sizeof(duration_units[0]), buf,
                     len);
}

void config_scalar_format_size(uint64_t bytes, char *buf, size_t len)
{
    format_with_unit(bytes, size_units,
                     sizeof(size_units) / sizeof(size_units[0]), buf, len);
}
