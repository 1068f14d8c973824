/*
 * log.h - one line per record to stderr, as text or JSON (SPEC 2).
 *
 * The logger's settings (level, format) and the rate limiter's memory are
 * the process's only mutable global state: every module logs, and threading a logger through every
 * call would add noise without adding safety. They are set once by
 * log_configure() at start and on reload, from the main thread.
 *
 * Never pass a secret (token, password, URL with credentials) to these
 * functions: log names, hosts and ports instead.
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <stdint.h>

#include "config/config.h"

void log_configure(enum log_level level, enum log_format format);

/* printf-style message; the line gets a time stamp and level. */
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Like log_msg, but one call site (identified by fmt) logs at most once
 * per interval_ms; the next line says how many were suppressed. For
 * conditions that can repeat per connection or per message. */
void log_limited(enum log_level level, int64_t interval_ms, const char *fmt,
                 ...) __attribute__((format(printf, 3, 4)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
