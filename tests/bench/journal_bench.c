/*
 * journal_bench.c - measures lib/journal.c: append throughput in each
 * fsync mode and the replay time of a large journal. Not built by CMake
 * (it is a one-off measurement, not a test); build and run it with:
 *
 *   gcc -O2 -std=gnu11 -Wall -Wextra -Wshadow -Wno-unused-parameter \
 *       -I/work/main \
 *       /work/main/tests/bench/journal_bench.c /work/main/lib/journal.c \
 *       /work/main/lib/log.c -lz -o /tmp/journal_bench
 *   /tmp/journal_bench [parent-dir [records [always-records]]]
 *
 * Defaults: parent-dir /tmp, 1,000,000 records, 2,000 records for
 * fsync=always. Each record carries a 200-byte payload, a 11-byte topic
 * and a 5-byte source (on disk: 44-byte header + 216 = 260 bytes). Modes:
 *   never   write(2) per append, no fsync
 *   batch   write(2) per append, journal_sync every JOURNAL_BATCH_MS
 *           (as the bridge's timer does), final sync in journal_close
 *   always  fdatasync inside every append
 * Then the "never" journal is replayed twice: warm (pages in the cache,
 * the usual case right after a restart of sluice alone) and cold (pages
 * dropped with posix_fadvise(DONTNEED) after a sync, close to a reboot).
 *
 * The messages are built on the stack rather than with message_new so
 * that this program links only journal.c and log.c.
 */
#define _GNU_SOURCE /* nftw */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/journal.h"
#include "lib/message.h"

#define PAYLOAD_LEN 200
#define RECORD_BYTES (44 + 5 + 11 + PAYLOAD_LEN)
#define T0 1764000000000LL

struct replay_sum {
    uint64_t count;
    uint64_t bytes;
    uint64_t last_seq;
    int out_of_order;
};

static double bench_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int bench_rm(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    return remove(path);
}

static struct journal *bench_open(const char *dir, enum fsync_mode mode)
{
    char err[256];
    int64_t epoch;
    struct journal *j = journal_open(dir, mode, T0, &epoch, err, sizeof(err));

    if (j == NULL) {
        fprintf(stderr, "journal_open: %s\n", err);
        exit(1);
    }
    return j;
}

/* Appends count records to a new journal in dir; returns seconds taken. */
static double bench_append(const char *dir, enum fsync_mode mode,
                           uint64_t count)
{
    char payload[PAYLOAD_LEN];
    char topic[] = "bench/topic";
    struct message msg = {
        .refcount = 1,
        .type = SOURCE_REDIS,
        .topic = topic,
        .topic_len = sizeof(topic) - 1,
        .payload = payload,
        .payload_len = sizeof(payload),
    };
    struct journal *j = bench_open(dir, mode);
    double start = bench_now();
    double last_sync = start;

    memset(payload, 'x', sizeof(payload));
    if (journal_replay(j, NULL, NULL) != 0)
        exit(1);
    for (uint64_t i = 1; i <= count; i++) {
        msg.seq = i;
        msg.time_ms = T0 + (int64_t)i;
        memcpy(payload, &i, sizeof(i));
        if (journal_append(j, &msg, "bench") != 0) {
            fprintf(stderr, "append %" PRIu64 " failed\n", i);
            exit(1);
        }
        if (mode == FSYNC_BATCH &&
            bench_now() - last_sync >= JOURNAL_BATCH_MS / 1000.0) {
            journal_sync(j);
            last_sync = bench_now();
        }
    }
    journal_close(j);
    return bench_now() - start;
}

static int bench_count(void *arg, const struct journal_record *rec)
{
    struct replay_sum *sum = arg;

    if (rec->seq <= sum->last_seq)
        sum->out_of_order = 1;
    sum->last_seq = rec->seq;
    sum->count++;
    sum->bytes += rec->payload_len + rec->topic_len;
    return 0;
}

/* Syncs and drops the page cache of every file in dir. */
static void bench_drop_cache(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        int fd = openat(dirfd(d), e->d_name, O_RDONLY);

        if (fd < 0)
            continue;
        fdatasync(fd);
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
    closedir(d);
}

/* Replays dir (open + replay + close); returns seconds taken. */
static double bench_replay(const char *dir, uint64_t want)
{
    struct replay_sum sum = {0};
    double start = bench_now();
    struct journal *j = bench_open(dir, FSYNC_NEVER);

    if (journal_replay(j, bench_count, &sum) != 0 || sum.count != want ||
        sum.out_of_order) {
        fprintf(stderr, "replay: %" PRIu64 " records, want %" PRIu64 "\n",
                sum.count, want);
        exit(1);
    }
    journal_close(j);
    return bench_now() - start;
}

static void bench_report(const char *what, uint64_t count, double secs)
{
    double mb = (double)count * RECORD_BYTES / 1e6;

    printf("%-18s %9" PRIu64 " records %8.3f s %12.0f rec/s %8.1f MB/s\n",
           what, count, secs, (double)count / secs, mb / secs);
}

static char *bench_dir(const char *parent, const char *name)
{
    char *dir;

    if (asprintf(&dir, "%s/journal_bench.%s.XXXXXX", parent, name) < 0 ||
        mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        exit(1);
    }
    return dir;
}

int main(int argc, char **argv)
{
    const char *parent = argc > 1 ? argv[1] : "/tmp";
    uint64_t count = argc > 2 ? strtoull(argv[2], NULL, 10) : 1000000;
    uint64_t always = argc > 3 ? strtoull(argv[3], NULL, 10) : 2000;
    char *never_dir = bench_dir(parent, "never");
    char *batch_dir = bench_dir(parent, "batch");
    char *always_dir = bench_dir(parent, "always");

    printf("record: %d bytes on disk (%d-byte payload)\n", RECORD_BYTES,
           PAYLOAD_LEN);
    bench_report("append never", count,
                 bench_append(never_dir, FSYNC_NEVER, count));
    bench_report("append batch", count,
                 bench_append(batch_dir, FSYNC_BATCH, count));
    bench_report("append always", always,
                 bench_append(always_dir, FSYNC_ALWAYS, always));
    bench_report("replay (warm)", count, bench_replay(never_dir, count));
    bench_drop_cache(never_dir);
    bench_report("replay (cold)", count, bench_replay(never_dir, count));

    nftw(never_dir, bench_rm, 16, FTW_DEPTH | FTW_PHYS);
    nftw(batch_dir, bench_rm, 16, FTW_DEPTH | FTW_PHYS);
    nftw(always_dir, bench_rm, 16, FTW_DEPTH | FTW_PHYS);
    free(never_dir);
    free(batch_dir);
    free(always_dir);
    return 0;
}
