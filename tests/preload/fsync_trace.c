/*
 * fsync_trace.c - an LD_PRELOAD shim for the durability tests
 * (tests/integration/fsync.test.js). Not part of sluice.
 *
 * A kill -9 cannot tell fsync never / batch / always apart: the page cache
 * survives it. What tells them apart is when sluice asks the kernel to make
 * its journal durable, so this shim wraps every call that does that
 * (fsync, fdatasync, sync_file_range, syncfs, sync, msync; bridge/journal.c
 * uses fsync for the directory and the epoch file, fdatasync for segments)
 * and appends one line per call to the file named by SLUICE_SYNC_TRACE:
 *
 *     <call> <fd> <start ns> <end ns> <path of fd>
 *
 * with both times from CLOCK_MONOTONIC (the clock of node's
 * process.hrtime.bigint() on Linux), taken before and after the real call.
 * When the library is loaded it writes "init -1 <ns> <ns> -", so a test can
 * check that the shim is active and that both clocks agree.
 * SLUICE_SYNC_DELAY_MS (optional) makes each sync call take that much
 * longer, so "synced before a client saw the event" is observable even on
 * a disk where fdatasync returns in microseconds.
 *
 * It also simulates a reboot: when SLUICE_BOOT_ID_FILE is set, opening
 * /proc/sys/kernel/random/boot_id (fopen, open, openat; how bridge/persist.c
 * reads it) opens that file instead.
 *
 * Each wrapper calls the real function found with dlsym(RTLD_NEXT); this
 * also works under ASan, whose interceptors in the executable call the next
 * definition, which is this one.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BOOT_ID_PATH "/proc/sys/kernel/random/boot_id"

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);

static void *next_symbol(const char *name)
{
    void *p = dlsym(RTLD_NEXT, name);

    if (p == NULL) {
        fprintf(stderr, "fsync_trace: no next definition of %s\n", name);
        abort();
    }
    return p;
}

static int64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Appends one line to $SLUICE_SYNC_TRACE with a single write(2). */
static void trace(const char *call, int fd, int64_t start, int64_t end)
{
    static open_fn real_open;
    const char *file = getenv("SLUICE_SYNC_TRACE");
    char link[64], target[1024] = "-", line[1200];
    ssize_t n;
    int out, len, saved = errno;

    if (file == NULL || *file == '\0')
        return;
    if (real_open == NULL)
        real_open = (open_fn)next_symbol("open");
    if (fd >= 0) {
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        n = readlink(link, target, sizeof(target) - 1);
        target[n > 0 ? n : 0] = '\0';
        if (n <= 0)
            strcpy(target, "?");
    }
    len = snprintf(line, sizeof(line), "%s %d %lld %lld %s\n", call, fd,
                   (long long)start, (long long)end, target);
    out = real_open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out >= 0) {
        if (write(out, line, (size_t)len) != len)
            (void)0;
        close(out);
    }
    errno = saved;
}

/* The optional extra time each sync call takes (SLUICE_SYNC_DELAY_MS). */
static void delay(void)
{
    const char *ms = getenv("SLUICE_SYNC_DELAY_MS");
    struct timespec ts;
    long v;

    if (ms == NULL || (v = strtol(ms, NULL, 10)) <= 0)
        return;
    ts.tv_sec = v / 1000;
    ts.tv_nsec = (v % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

__attribute__((constructor)) static void fsync_trace_init(void)
{
    int64_t now = mono_ns();

    trace("init", -1, now, now);
}

#define TRACED(call, fd, expr)                      \
    do {                                            \
        int64_t start_ = mono_ns();                 \
        int rc_, saved_;                            \
        delay();                                    \
        rc_ = (expr);                               \
        saved_ = errno;                             \
        trace(call, fd, start_, mono_ns());         \
        errno = saved_;                             \
        return rc_;                                 \
    } while (0)

int fsync(int fd)
{
    static int (*real)(int);

    if (real == NULL)
        real = (int (*)(int))next_symbol("fsync");
    TRACED("fsync", fd, real(fd));
}

int fdatasync(int fd)
{
    static int (*real)(int);

    if (real == NULL)
        real = (int (*)(int))next_symbol("fdatasync");
    TRACED("fdatasync", fd, real(fd));
}

int syncfs(int fd)
{
    static int (*real)(int);

    if (real == NULL)
        real = (int (*)(int))next_symbol("syncfs");
    TRACED("syncfs", fd, real(fd));
}

int sync_file_range(int fd, off64_t off, off64_t nbytes, unsigned int flags)
{
    static int (*real)(int, off64_t, off64_t, unsigned int);

    if (real == NULL)
        real = (int (*)(int, off64_t, off64_t, unsigned int))
            next_symbol("sync_file_range");
    TRACED("sync_file_range", fd, real(fd, off, nbytes, flags));
}

int msync(void *addr, size_t len, int flags)
{
    static int (*real)(void *, size_t, int);

    if (real == NULL)
        real = (int (*)(void *, size_t, int))next_symbol("msync");
    TRACED("msync", -1, real(addr, len, flags));
}

void sync(void)
{
    static void (*real)(void);
    int64_t start = mono_ns();

    if (real == NULL)
        real = (void (*)(void))next_symbol("sync");
    delay();
    real();
    trace("sync", -1, start, mono_ns());
}

/* ---- boot id redirection ---- */

/* The file to open instead of path, or path itself. */
static const char *redirect(const char *path)
{
    const char *alt = getenv("SLUICE_BOOT_ID_FILE");

    if (path != NULL && alt != NULL && *alt != '\0' &&
        strcmp(path, BOOT_ID_PATH) == 0)
        return alt;
    return path;
}

FILE *fopen(const char *path, const char *mode)
{
    static FILE *(*real)(const char *, const char *);

    if (real == NULL)
        real = (FILE * (*)(const char *, const char *)) next_symbol("fopen");
    return real(redirect(path), mode);
}

FILE *fopen64(const char *path, const char *mode)
{
    static FILE *(*real)(const char *, const char *);

    if (real == NULL)
        real = (FILE * (*)(const char *, const char *)) next_symbol("fopen64");
    return real(redirect(path), mode);
}

static mode_t open_mode(int flags, va_list ap)
{
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE
               ? (mode_t)va_arg(ap, int)
               : 0;
}

int open(const char *path, int flags, ...)
{
    static open_fn real;
    va_list ap;
    mode_t mode;

    if (real == NULL)
        real = (open_fn)next_symbol("open");
    va_start(ap, flags);
    mode = open_mode(flags, ap);
    va_end(ap);
    return real(redirect(path), flags, mode);
}

int open64(const char *path, int flags, ...)
{
    static open_fn real;
    va_list ap;
    mode_t mode;

    if (real == NULL)
        real = (open_fn)next_symbol("open64");
    va_start(ap, flags);
    mode = open_mode(flags, ap);
    va_end(ap);
    return real(redirect(path), flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    static openat_fn real;
    va_list ap;
    mode_t mode;

    if (real == NULL)
        real = (openat_fn)next_symbol("openat");
    va_start(ap, flags);
    mode = open_mode(flags, ap);
    va_end(ap);
    return real(dirfd, redirect(path), flags, mode);
}
