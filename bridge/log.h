/*
 * log.h - one line per record to stderr, as text or JSON (SPEC 2).
 *
 * The logger's settings (level, format) are the process's only mutable
 * global state: every module logs, and threading a logger through every
 * call would add noise without adding safety. They are set once by
 * log_configure() at start and on reload, from the main thread.
 *
 * Never pass a secret (token, password, URL with credentials) to these
 * functions: log names, hosts and ports instead.
 */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include "config/config.h"

void log_configure(enum log_level level, enum log_format format);

/* printf-style message; the line gets a time stamp and level. */
void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
