/*
 * percent.c - see percent.h.
 */
#include "lib/percent.h"

#include <stdlib.h>

static int percent_hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

long percent_decode(const char *in, size_t len, char *out, bool form)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        int hi, lo;
        if (in[i] == '\0')
            return -1;
        if (in[i] != '%') {
            out[n++] = form && in[i] == '+' ? ' ' : in[i];
            continue;
        }
        if (len - i < 3)
            return -1;
        hi = percent_hex(in[i + 1]);
        lo = percent_hex(in[i + 2]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
            return -1;
        out[n++] = (char)(hi * 16 + lo);
        i += 2;
    }
    return (long)n;
}

char *percent_decode_dup(const char *in, size_t len, bool form)
{
    char *out = malloc(len + 1);
    long n;

    if (out == NULL)
        return NULL;
    n = percent_decode(in, len, out, form);
    if (n < 0) {
        free(out);
        return NULL;
    }
    out[n] = '\0';
    return out;
}
