/*
 * log.c - see log.h. The logger settings below are sluice's only global
 * mutable state (set at start and on SIGHUP, read everywhere).
 */
#include "lib/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define LOG_LIMIT_SLOTS 16

/* One rate-limited call site. */
struct log_limit {
    const char *fmt;     /* identifies the call site */
    int64_t last_ms;
    unsigned suppressed;
};

static struct {
    enum log_level level;
    enum log_format format;
    struct log_limit limits[LOG_LIMIT_SLOTS];
} log_settings = {LOG_INFO, LOG_FORMAT_TEXT, {{0}}};

static const char *log_level_names[] = {"debug", "info", "warn", "error"};

void log_configure(enum log_level level, enum log_format format)
{
    log_settings.level = level;
    log_settings.format = format;
}

static void log_timestamp(char *out, size_t len)
{
    struct timeval tv;
    struct tm tm;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    if (tm.tm_year > 9999 - 1900)
        tm.tm_year = 9999 - 1900; /* keeps the stamp 24 characters */
    snprintf(out, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
}

/* Writes text as the inside of a JSON string. */
static void log_json_escape(FILE *f, const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
}

static void log_vmsg(enum log_level level, const char *fmt, va_list ap,
                     unsigned suppressed)
{
    char text[1024];
    char ts[64];
    int n;

    n = vsnprintf(text, sizeof(text), fmt, ap);
    if (suppressed > 0 && n >= 0 && (size_t)n < sizeof(text))
        snprintf(text + n, sizeof(text) - (size_t)n,
                 " (%u similar lines suppressed)", suppressed);
    /* One record per line, whatever the message holds. */
    for (char *p = text; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    log_timestamp(ts, sizeof(ts));
    if (log_settings.format == LOG_FORMAT_JSON) {
        fprintf(stderr, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts,
                log_level_names[level]);
        log_json_escape(stderr, text);
        fputs("\"}\n", stderr);
    } else {
        fprintf(stderr, "%s %s %s\n", ts, log_level_names[level], text);
    }
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;

    if (level < log_settings.level)
        return;
    va_start(ap, fmt);
    log_vmsg(level, fmt, ap, 0);
    va_end(ap);
}

static struct log_limit *log_limit_slot(const char *fmt)
{
    struct log_limit *oldest = &log_settings.limits[0];

    for (int i = 0; i < LOG_LIMIT_SLOTS; i++) {
        struct log_limit *l = &log_settings.limits[i];
        if (l->fmt == fmt)
            return l;
        if (l->last_ms < oldest->last_ms)
            oldest = l;
    }
    *oldest = (struct log_limit){fmt, 0, 0};
    return oldest;
}

void log_limited(enum log_level level, int64_t interval_ms, const char *fmt,
                 ...)
{
    struct log_limit *l;
    struct timeval tv;
    int64_t now;
    va_list ap;

    if (level < log_settings.level)
        return;
    gettimeofday(&tv, NULL);
    now = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    l = log_limit_slot(fmt);
    if (l->last_ms != 0 && now - l->last_ms < interval_ms) {
        l->suppressed++;
        return;
    }
    va_start(ap, fmt);
    log_vmsg(level, fmt, ap, l->suppressed);
    va_end(ap);
    l->last_ms = now;
    l->suppressed = 0;
}
