/*
 * url.c - see url.h.
 *
 * Hand-written rather than evhttp_uri_parse: libevent's parser accepts
 * what RFC 3986 allows for any URI (empty hosts, a port of 0, paths with
 * any escape) and its decoder, evhttp_uridecode, passes bad escapes and
 * %00 through. Broker URLs are a small grammar where every such case is a
 * configuration mistake that deserves a clear error.
 */
#include "lib/url.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/percent.h"

static int url_fail(char *why, size_t whylen, const char *msg)
{
    if (why != NULL && whylen > 0)
        snprintf(why, whylen, "%s", msg);
    return -1;
}

/* True when every byte is printable ASCII other than space. */
static bool url_text_ok(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    }
    return true;
}

/* Percent-decodes s[0..len) into a new string; NULL on a bad escape, an
 * encoded NUL or ENOMEM. */
static char *url_decode(const char *s, size_t len)
{
    return percent_decode_dup(s, len, false);
}

/* "user[:password]" (still encoded) of length len. 0 or -1. */
static int url_userinfo(const char *s, size_t len, struct url *out, char *why,
                        size_t whylen)
{
    const char *colon = memchr(s, ':', len);
    size_t ulen = colon != NULL ? (size_t)(colon - s) : len;

    out->user = url_decode(s, ulen);
    if (out->user == NULL)
        return url_fail(why, whylen, "url: bad %-escape in the user");
    if (colon == NULL)
        return 0;
    out->password = url_decode(colon + 1, len - ulen - 1);
    if (out->password == NULL)
        return url_fail(why, whylen, "url: bad %-escape in the password");
    return 0;
}

/* A host name or IPv4 address: letters, digits, '-', '.', '_'. */
static bool url_name_ok(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!isalnum((unsigned char)s[i]) && strchr("-._", s[i]) == NULL)
            return false;
    }
    return true;
}

static bool url_v6_ok(const char *s, size_t len)
{
    if (len < 2)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!isxdigit((unsigned char)s[i]) && strchr(":.", s[i]) == NULL)
            return false;
    }
    return true;
}

/* The port digits s[0..len): 1-65535. */
static int url_port(const char *s, size_t len)
{
    int port = 0;

    if (len == 0 || len > 5)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        port = port * 10 + (s[i] - '0');
    }
    return port >= 1 && port <= 65535 ? port : -1;
}

/* host [":" port] in s[0..len). 0 or -1. */
static int url_hostport(const char *s, size_t len, struct url *out,
                        char *why, size_t whylen)
{
    const char *end = s + len, *host = s, *port = NULL;
    size_t hlen;

    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL || !url_v6_ok(s + 1, (size_t)(close - s - 1)))
            return url_fail(why, whylen, "url: bad IPv6 host");
        host = s + 1;
        hlen = (size_t)(close - s - 1);
        out->ipv6 = true;
        if (close + 1 < end && close[1] != ':')
            return url_fail(why, whylen, "url: bad host");
        port = close + 1 < end ? close + 2 : NULL;
    } else {
        const char *colon = memchr(s, ':', len);
        hlen = colon != NULL ? (size_t)(colon - s) : len;
        port = colon != NULL ? colon + 1 : NULL;
        if (!url_name_ok(host, hlen))
            return url_fail(why, whylen, hlen == 0 ? "url: missing host"
                                                   : "url: bad host");
    }
    out->port = -1;
    if (port != NULL && (out->port = url_port(port, (size_t)(end - port))) < 0)
        return url_fail(why, whylen, "url: port must be 1-65535");
    out->host = strndup(host, hlen);
    return out->host != NULL ? 0 : url_fail(why, whylen, "out of memory");
}

static int url_scheme(const char *text, const char **rest, struct url *out,
                      char *why, size_t whylen)
{
    const char *sep = strstr(text, "://");
    size_t len = sep != NULL ? (size_t)(sep - text) : 0;

    if (len == 0 || !isalpha((unsigned char)text[0]))
        return url_fail(why, whylen, "url: expected SCHEME://HOST");
    for (size_t i = 0; i < len; i++) {
        if (!isalnum((unsigned char)text[i]) && strchr("+-.", text[i]) == NULL)
            return url_fail(why, whylen, "url: bad scheme");
    }
    if ((out->scheme = strndup(text, len)) == NULL)
        return url_fail(why, whylen, "out of memory");
    for (char *c = out->scheme; *c != '\0'; c++)
        *c = (char)tolower((unsigned char)*c);
    *rest = sep + 3;
    return 0;
}

int url_parse(const char *text, struct url *out, char *why, size_t whylen)
{
    const char *rest = NULL, *authority_end, *at;

    memset(out, 0, sizeof(*out));
    out->port = -1;
    if (text == NULL || !url_text_ok(text))
        return url_fail(why, whylen, "url: empty, or has spaces or control "
                                     "characters");
    if (strpbrk(text, "?#") != NULL)
        return url_fail(why, whylen, "url: no query or fragment allowed");
    if (url_scheme(text, &rest, out, why, whylen) < 0)
        return -1;
    authority_end = rest + strcspn(rest, "/");
    /* The last '@' ends the userinfo: a password may hold an escaped or
     * (leniently, as redis-cli does) a raw '@'. */
    at = NULL;
    for (const char *c = rest; c < authority_end; c++) {
        if (*c == '@')
            at = c;
    }
    if (at != NULL &&
        url_userinfo(rest, (size_t)(at - rest), out, why, whylen) < 0)
        return -1;
    if (at != NULL)
        rest = at + 1;
    if (url_hostport(rest, (size_t)(authority_end - rest), out, why,
                     whylen) < 0)
        return -1;
    if ((out->path = strdup(authority_end)) == NULL)
        return url_fail(why, whylen, "out of memory");
    return 0;
}

void url_clear(struct url *out)
{
    if (out->password != NULL)
        memset(out->password, 0, strlen(out->password));
    free(out->scheme);
    free(out->user);
    free(out->password);
    free(out->host);
    free(out->path);
    memset(out, 0, sizeof(*out));
    out->port = -1;
}
