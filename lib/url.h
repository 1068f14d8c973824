/*
 * url.h - the one parser of broker URLs (mqtt://, mqtts://, redis://).
 *
 * scheme "://" [user [":" password] "@"] host [":" port] ["/" path]
 *
 * Strict: the host is a name, an IPv4 address or a bracketed IPv6
 * literal; the port is 1-65535; user and password are percent-decoded with
 * the same strict decoder as request paths (percent.h), so a bad escape or
 * an encoded NUL (which would cut a password short) is an error; no query,
 * no fragment, no whitespace or control bytes anywhere. The adapters parse
 * their URL with it at start, and the bridge checks every source's URL
 * with it when the config is loaded (so --check reports a bad URL with its
 * position). Error texts never quote the URL: it may hold a password.
 */
#ifndef SLUICE_URL_H
#define SLUICE_URL_H

#include <stdbool.h>
#include <stddef.h>

struct url {
    char *scheme;   /* lower case, e.g. "mqtts" */
    char *user;     /* decoded; NULL when the URL has no userinfo */
    char *password; /* decoded; NULL when the userinfo has no ':' */
    char *host;     /* without the brackets of an IPv6 literal */
    bool ipv6;
    int port;       /* -1 when the URL gives none */
    char *path;     /* after the host, '/' included; "" when none */
};

/*
 * Parses text into *out (zeroed first; clear with url_clear, also after a
 * failure). Returns 0, or -1 with a short reason in why.
 */
int url_parse(const char *text, struct url *out, char *why, size_t whylen);

/* Frees what out holds, wiping the password first, and zeroes it. */
void url_clear(struct url *out);

#endif
