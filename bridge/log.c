/*
 * log.c - see log.h. The logger settings below are sluice's only global
 * mutable state (set at start and on SIGHUP, read everywhere).
 */
#include "bridge/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static struct {
    enum log_level level;
    enum log_format format;
} log_settings = {LOG_INFO, LOG_FORMAT_TEXT};

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

void log_msg(enum log_level level, const char *fmt, ...)
{
    char text[1024];
    char ts[64];
    va_list ap;

    if (level < log_settings.level)
        return;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
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
