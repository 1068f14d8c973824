/*
 * test_journal.c - lib/journal.c: round trips in every fsync mode, the
 * epoch file, segment roll, trim, recovery from torn, corrupt and garbage
 * segments, the directory lock, replay stopped by its callback, absurd
 * seqs, and a directory or files that someone else could have planted.
 *
 * Each test works in its own mkdtemp directory, removed afterwards. The
 * segment size is the real JOURNAL_SEGMENT_BYTES (16 MiB): the roll tests
 * use 256 KiB payloads, so a few dozen appends fill a segment and no
 * test-only knob is needed in journal.c.
 */
#define _GNU_SOURCE /* nftw, asprintf */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "lib/journal.h"
#include "lib/message.h"

#define T0 1764000000000LL
#define BIG_PAYLOAD (256 * 1024)
#define HEADER_SIZE 44 /* the record header documented in journal.c */

/* ------------------------------------------------------------------ */
/* Fixtures and helpers                                                */
/* ------------------------------------------------------------------ */

struct fixture {
    char dir[64];
};

static int rm_entry(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_journal.XXXXXX");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static struct journal *open_ok(const char *dir, enum fsync_mode mode,
                               int64_t now, int64_t *epoch)
{
    char err[256] = "";
    int64_t e = 0;
    struct journal *j = journal_open(dir, mode, now, &e, err, sizeof(err));

    if (j == NULL)
        fail_msg("journal_open(%s): %s", dir, err);
    if (epoch != NULL)
        *epoch = e;
    return j;
}

static struct message *make_msg(uint64_t seq, const char *topic,
                                const void *payload, size_t payload_len)
{
    struct message *m = message_new(0, SOURCE_REDIS, topic, strlen(topic),
                                    payload, payload_len, T0 + (int64_t)seq);

    assert_non_null(m);
    m->seq = seq;
    return m;
}

/* Appends a message with seq, payload "p<seq>" padded to len bytes. */
static void append_seq(struct journal *j, uint64_t seq, size_t len)
{
    char *payload = calloc(1, len + 32);
    struct message *m;

    assert_non_null(payload);
    snprintf(payload, len + 32, "p%" PRIu64, seq);
    if (len == 0)
        len = strlen(payload);
    m = make_msg(seq, "t/x", payload, len);
    assert_int_equal(journal_append(j, m, "src"), 0);
    message_unref(m);
    free(payload);
}

/* What a replay saw: copies of each record. */
struct seen {
    struct message **msgs;
    char **sources;
    size_t count;
    size_t cap;
    size_t stop_after; /* 0: never stop */
};

static int collect(void *arg, const struct journal_record *rec)
{
    struct seen *s = arg;
    struct message *m;

    if (s->stop_after > 0 && s->count == s->stop_after)
        return -1;
    if (s->count == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 64;
        s->msgs = realloc(s->msgs, s->cap * sizeof(*s->msgs));
        s->sources = realloc(s->sources, s->cap * sizeof(*s->sources));
        assert_non_null(s->msgs);
        assert_non_null(s->sources);
    }
    m = message_new(0, rec->type, rec->topic, rec->topic_len, rec->payload,
                    rec->payload_len, rec->time_ms);
    assert_non_null(m);
    m->seq = rec->seq;
    m->has_mqtt = rec->has_mqtt;
    m->retain = rec->retain;
    m->qos = rec->qos;
    if (rec->stream_entry_id != NULL)
        assert_int_equal(message_set_stream_entry_id(m, rec->stream_entry_id),
                         0);
    s->msgs[s->count] = m;
    s->sources[s->count] = strndup(rec->source, rec->source_len);
    assert_non_null(s->sources[s->count]);
    s->count++;
    return 0;
}

static void seen_free(struct seen *s)
{
    for (size_t i = 0; i < s->count; i++) {
        message_unref(s->msgs[i]);
        free(s->sources[i]);
    }
    free(s->msgs);
    free(s->sources);
    memset(s, 0, sizeof(*s));
}

/* Opens dir, replays it into s (expecting rc), closes. */
static void replay_dir(const char *dir, struct seen *s, int want_rc)
{
    struct journal *j = open_ok(dir, FSYNC_NEVER, T0, NULL);

    assert_int_equal(journal_replay(j, collect, s), want_rc);
    journal_close(j);
}

/* Checks that s holds exactly seqs first..last, in order. */
static void assert_seqs(const struct seen *s, uint64_t first, uint64_t last)
{
    assert_int_equal(s->count, last - first + 1);
    for (size_t i = 0; i < s->count; i++)
        assert_int_equal(s->msgs[i]->seq, first + i);
}

static char *path_in(const char *dir, const char *name)
{
    char *p;

    assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
    return p;
}

static char *segment_path(const char *dir, uint64_t seq)
{
    char name[32];

    snprintf(name, sizeof(name), "%020" PRIu64 ".log", seq);
    return path_in(dir, name);
}

static off_t file_size(const char *path)
{
    struct stat st;

    if (stat(path, &st) != 0)
        return -1;
    return st.st_size;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Lists the segment seqs in dir, sorted; returns how many (<= max). */
static size_t list_segments(const char *dir, uint64_t *out, size_t max)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);

        if (len != 24 || strcmp(e->d_name + 20, ".log") != 0)
            continue;
        assert_true(n < max);
        out[n++] = strtoull(e->d_name, NULL, 10);
    }
    closedir(d);
    qsort(out, n, sizeof(*out), cmp_u64);
    return n;
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    unsigned char c;

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &c, 1, off), 1);
    c ^= 0x5a;
    assert_int_equal(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

/* stderr redirected into a temp file, to check what was logged. */
struct capture {
    int saved;
    FILE *file;
};

static void capture_start(struct capture *c)
{
    fflush(stderr);
    c->file = tmpfile();
    assert_non_null(c->file);
    c->saved = dup(STDERR_FILENO);
    assert_true(c->saved >= 0);
    assert_true(dup2(fileno(c->file), STDERR_FILENO) >= 0);
}

/* Restores stderr; returns what was written (caller frees). */
static char *capture_end(struct capture *c)
{
    long len;
    char *text;

    fflush(stderr);
    dup2(c->saved, STDERR_FILENO);
    close(c->saved);
    len = ftell(c->file);
    assert_true(len >= 0);
    text = calloc(1, (size_t)len + 1);
    assert_non_null(text);
    rewind(c->file);
    assert_int_equal(fread(text, 1, (size_t)len, c->file), (size_t)len);
    fclose(c->file);
    fputs(text, stderr); /* keep the log visible in the test output */
    return text;
}

static size_t count_substr(const char *hay, const char *needle)
{
    size_t n = 0;

    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* ------------------------------------------------------------------ */
/* Round trip                                                          */
/* ------------------------------------------------------------------ */

static void round_trip(const char *dir, enum fsync_mode mode)
{
    static const char binary[] = {'a', '\0', 'b', '\xff', '\0', '\n'};
    struct journal *j = open_ok(dir, mode, T0, NULL);
    struct message *m[4];
    struct seen s = {0};

    assert_int_equal(journal_replay(j, collect, &s), 0);
    assert_int_equal(s.count, 0);

    m[0] = message_new(3, SOURCE_MQTT, "sensors/+/t", 11, binary,
                       sizeof(binary), T0 - 5);
    m[0]->has_mqtt = true;
    m[0]->retain = true;
    m[0]->qos = 2;
    m[1] = message_new(1, SOURCE_REDIS_STREAM, "orders", 6, "{}", 2, T0);
    assert_int_equal(message_set_stream_entry_id(m[1], "1764000000000-7"), 0);
    m[2] = message_new(0, SOURCE_REDIS, "empty", 5, "", 0, -1);
    m[3] = message_new(0, SOURCE_MQTT, "", 0, "x", 1, 0);
    m[3]->has_mqtt = true;
    m[3]->qos = 1;
    for (int i = 0; i < 4; i++) {
        assert_non_null(m[i]);
        m[i]->seq = (uint64_t)(i * 10 + 1); /* gaps are fine */
    }
    assert_int_equal(journal_append(j, m[0], "mqtt-main"), 0);
    assert_int_equal(journal_append(j, m[1], "stream_1"), 0);
    assert_int_equal(journal_append(j, m[2], "r"), 0);
    assert_int_equal(journal_append(j, m[3], ""), 0);
    assert_int_equal(journal_dirty(j), mode == FSYNC_BATCH);
    journal_sync(j);
    assert_false(journal_dirty(j));
    journal_close(j);

    replay_dir(dir, &s, 0);
    assert_int_equal(s.count, 4);
    assert_string_equal(s.sources[0], "mqtt-main");
    assert_string_equal(s.sources[1], "stream_1");
    assert_string_equal(s.sources[2], "r");
    assert_string_equal(s.sources[3], "");
    for (int i = 0; i < 4; i++) {
        struct message *got = s.msgs[i];

        assert_int_equal(got->seq, m[i]->seq);
        assert_int_equal(got->time_ms, m[i]->time_ms);
        assert_int_equal(got->type, m[i]->type);
        assert_int_equal(got->topic_len, m[i]->topic_len);
        assert_memory_equal(got->topic, m[i]->topic, m[i]->topic_len + 1);
        assert_int_equal(got->payload_len, m[i]->payload_len);
        if (m[i]->payload_len > 0)
            assert_memory_equal(got->payload, m[i]->payload,
                                m[i]->payload_len);
        assert_int_equal(got->has_mqtt, m[i]->has_mqtt);
        assert_int_equal(got->retain, m[i]->retain);
        assert_int_equal(got->qos, m[i]->qos);
        if (m[i]->stream_entry_id == NULL)
            assert_null(got->stream_entry_id);
        else
            assert_string_equal(got->stream_entry_id, m[i]->stream_entry_id);
        message_unref(m[i]);
    }
    seen_free(&s);
}

static void test_round_trip_never(void **state)
{
    round_trip(((struct fixture *)*state)->dir, FSYNC_NEVER);
}

static void test_round_trip_batch(void **state)
{
    round_trip(((struct fixture *)*state)->dir, FSYNC_BATCH);
}

static void test_round_trip_always(void **state)
{
    round_trip(((struct fixture *)*state)->dir, FSYNC_ALWAYS);
}

/* Appending continues after a replay, across close/open, in one file. */
static void test_append_after_reopen(void **state)
{
    struct fixture *f = *state;
    struct journal *j = open_ok(f->dir, FSYNC_BATCH, T0, NULL);
    struct seen s = {0};
    uint64_t segs[4];

    assert_int_equal(journal_replay(j, NULL, NULL), 0);
    for (uint64_t i = 1; i <= 5; i++)
        append_seq(j, i, 0);
    journal_close(j);

    j = open_ok(f->dir, FSYNC_BATCH, T0, NULL);
    assert_int_equal(journal_replay(j, collect, &s), 0);
    assert_seqs(&s, 1, 5);
    seen_free(&s);
    for (uint64_t i = 6; i <= 8; i++)
        append_seq(j, i, 0);
    /* Replay is once only, before appends. */
    assert_int_equal(journal_replay(j, collect, &s), -1);
    assert_int_equal(s.count, 0);
    journal_close(j);

    replay_dir(f->dir, &s, 0);
    assert_seqs(&s, 1, 8);
    assert_string_equal(s.msgs[7]->payload, "p8");
    seen_free(&s);
    assert_int_equal(list_segments(f->dir, segs, 4), 1);
    assert_int_equal(segs[0], 1);
}

/* A seq that does not increase is refused, and nothing is written. */
static void test_append_refuses_old_seq(void **state)
{
    struct fixture *f = *state;
    struct journal *j = open_ok(f->dir, FSYNC_NEVER, T0, NULL);
    struct message *m = make_msg(0, "t", "x", 1);
    struct seen s = {0};
    char *seg;
    off_t size;

    assert_int_equal(journal_replay(j, NULL, NULL), 0);
    assert_int_equal(journal_append(j, m, "src"), -1); /* seq 0 */
    append_seq(j, 5, 0);
    seg = segment_path(f->dir, 5);
    size = file_size(seg);
    m->seq = 5;
    assert_int_equal(journal_append(j, m, "src"), -1);
    m->seq = 4;
    assert_int_equal(journal_append(j, m, "src"), -1);
    assert_int_equal(file_size(seg), size);
    m->seq = 6;
    assert_int_equal(journal_append(j, m, "src"), 0);
    journal_close(j);
    message_unref(m);
    free(seg);

    replay_dir(f->dir, &s, 0);
    assert_seqs(&s, 5, 6);
    seen_free(&s);
}

/* ------------------------------------------------------------------ */
/* Epoch and lock                                                      */
/* ------------------------------------------------------------------ */

static void test_epoch_persists(void **state)
{
    struct fixture *f = *state;
    char *sub = path_in(f->dir, "fresh");
    char *epoch_path = path_in(sub, "epoch");
    char text[64] = "";
    int64_t epoch = 0;
    struct journal *j;
    FILE *fp;

    /* A new directory is created and gets now_ms. */
    j = open_ok(sub, FSYNC_BATCH, T0, &epoch);
    assert_int_equal(epoch, T0);
    journal_close(j);
    fp = fopen(epoch_path, "r");
    assert_non_null(fp);
    assert_non_null(fgets(text, sizeof(text), fp));
    fclose(fp);
    assert_string_equal(text, "1764000000000\n");

    /* A later open keeps the stored epoch, whatever now_ms is. */
    j = open_ok(sub, FSYNC_BATCH, T0 + 999999, &epoch);
    assert_int_equal(epoch, T0);
    journal_close(j);
    free(epoch_path);
    epoch_path = path_in(sub, "epoch.tmp");
    assert_int_equal(access(epoch_path, F_OK), -1);
    free(epoch_path);
    free(sub);
}

/* A corrupt epoch file is an error, not a silent new epoch. */
static void test_epoch_corrupt(void **state)
{
    struct fixture *f = *state;
    char *epoch_path = path_in(f->dir, "epoch");
    char err[256] = "";
    int64_t epoch = 0;

    write_file(epoch_path, "12ab\n", 5);
    assert_null(journal_open(f->dir, FSYNC_NEVER, T0, &epoch, err,
                             sizeof(err)));
    assert_non_null(strstr(err, "epoch file is corrupt"));
    write_file(epoch_path, "", 0);
    assert_null(journal_open(f->dir, FSYNC_NEVER, T0, &epoch, err,
                             sizeof(err)));
    write_file(epoch_path, "1700000000123", 13);
    journal_close(open_ok(f->dir, FSYNC_NEVER, T0, &epoch));
    assert_int_equal(epoch, 1700000000123LL);
    free(epoch_path);
}

static void test_open_bad_dir(void **state)
{
    struct fixture *f = *state;
    char *plain = path_in(f->dir, "plain");
    char *deep = path_in(f->dir, "no/such");
    char err[256] = "";
    int64_t epoch = 0;

    write_file(plain, "x", 1);
    assert_null(journal_open(plain, FSYNC_NEVER, T0, &epoch, err,
                             sizeof(err)));
    assert_non_null(strstr(err, "history.dir"));
    assert_non_null(strstr(err, strerror(ENOTDIR)));
    assert_null(journal_open(deep, FSYNC_NEVER, T0, &epoch, err,
                             sizeof(err)));
    assert_non_null(strstr(err, "cannot create"));
    free(plain);
    free(deep);
}

static void test_lock(void **state)
{
    struct fixture *f = *state;
    struct journal *j = open_ok(f->dir, FSYNC_BATCH, T0, NULL);
    char err[256] = "";
    int64_t epoch = 0;

    assert_null(journal_open(f->dir, FSYNC_BATCH, T0, &epoch, err,
                             sizeof(err)));
    assert_non_null(strstr(err, "in use by another sluice process"));
    assert_non_null(strstr(err, f->dir));
    journal_close(j);
    /* Closing releases the lock. */
    journal_close(open_ok(f->dir, FSYNC_BATCH, T0, NULL));
}

/* ------------------------------------------------------------------ */
/* Segments: roll, replay across them, trim                            */
/* ------------------------------------------------------------------ */

/* Bytes of one append_seq(.., BIG_PAYLOAD) record, and records a segment
 * holds: a segment never passes JOURNAL_SEGMENT_BYTES unless one record
 * alone does. */
static size_t big_record_size(void)
{
    return HEADER_SIZE + strlen("src") + strlen("t/x") + BIG_PAYLOAD;
}

static uint64_t big_per_segment(void)
{
    return JOURNAL_SEGMENT_BYTES / big_record_size();
}

static void build_big(const char *dir, uint64_t count)
{
    struct journal *j = open_ok(dir, FSYNC_BATCH, T0, NULL);

    assert_int_equal(journal_replay(j, NULL, NULL), 0);
    for (uint64_t i = 1; i <= count; i++)
        append_seq(j, i, BIG_PAYLOAD);
    journal_close(j);
}

static void test_segment_roll(void **state)
{
    struct fixture *f = *state;
    uint64_t per = big_per_segment();
    uint64_t count = 2 * per + 10;
    uint64_t segs[8];
    struct seen s = {0};
    char *seg;

    build_big(f->dir, count);
    assert_int_equal(list_segments(f->dir, segs, 8), 3);
    assert_int_equal(segs[0], 1);
    assert_int_equal(segs[1], 1 + per);
    assert_int_equal(segs[2], 1 + 2 * per);
    seg = segment_path(f->dir, 1);
    assert_int_equal(file_size(seg), (off_t)(per * big_record_size()));
    assert_true(file_size(seg) <= JOURNAL_SEGMENT_BYTES);
    free(seg);

    replay_dir(f->dir, &s, 0);
    assert_seqs(&s, 1, count);
    for (size_t i = 0; i < s.count; i++) {
        char want[32];

        snprintf(want, sizeof(want), "p%zu", i + 1);
        assert_int_equal(s.msgs[i]->payload_len, BIG_PAYLOAD);
        assert_string_equal(s.msgs[i]->payload, want);
    }
    seen_free(&s);
}

static void test_trim(void **state)
{
    struct fixture *f = *state;
    uint64_t per = big_per_segment();
    uint64_t count = 2 * per + 5;
    uint64_t segs[8];
    struct seen s = {0};
    struct journal *j;

    build_big(f->dir, count);
    j = open_ok(f->dir, FSYNC_NEVER, T0, NULL);
    assert_int_equal(journal_replay(j, NULL, NULL), 0);

    /* Segment 1 still holds seq `per`: kept. */
    journal_trim(j, 1);
    journal_trim(j, per);
    assert_int_equal(list_segments(f->dir, segs, 8), 3);
    /* Every record of segment 1 is older than 1 + per: deleted alone. */
    journal_trim(j, 1 + per);
    assert_int_equal(list_segments(f->dir, segs, 8), 2);
    assert_int_equal(segs[0], 1 + per);
    assert_int_equal(segs[1], 1 + 2 * per);
    /* Even past the head, the segment being appended to stays. */
    journal_trim(j, UINT64_MAX);
    assert_int_equal(list_segments(f->dir, segs, 8), 1);
    assert_int_equal(segs[0], 1 + 2 * per);
    append_seq(j, count + 1, 0);
    journal_close(j);

    replay_dir(f->dir, &s, 0);
    assert_seqs(&s, 1 + 2 * per, count + 1);
    seen_free(&s);
}

/* ------------------------------------------------------------------ */
/* Recovery                                                            */
/* ------------------------------------------------------------------ */

/* Small records: "p<seq>" padded to 100 bytes, so each is 150 bytes. */
#define SMALL_PAYLOAD 100
#define SMALL_RECORD (HEADER_SIZE + 3 + 3 + SMALL_PAYLOAD)

static void build_small(const char *dir, uint64_t first, uint64_t last)
{
    struct journal *j = open_ok(dir, FSYNC_NEVER, T0, NULL);

    assert_int_equal(journal_replay(j, NULL, NULL), 0);
    for (uint64_t i = first; i <= last; i++)
        append_seq(j, i, SMALL_PAYLOAD);
    journal_close(j);
}

static void test_torn_tail(void **state)
{
    struct fixture *f = *state;
    char *seg = segment_path(f->dir, 1);
    struct seen s = {0};
    struct capture cap;
    char want[160];
    char *log;
    struct journal *j;

    build_small(f->dir, 1, 10);
    assert_int_equal(file_size(seg), 10 * SMALL_RECORD);
    assert_int_equal(truncate(seg, 10 * SMALL_RECORD - 3), 0);

    capture_start(&cap);
    replay_dir(f->dir, &s, 0);
    log = capture_end(&cap);
    assert_seqs(&s, 1, 9);
    seen_free(&s);
    assert_int_equal(file_size(seg), 9 * SMALL_RECORD);
    snprintf(want, sizeof(want),
             "journal: %s: corrupt or torn record at offset %d; truncating "
             "(%d bytes dropped)", seg, 9 * SMALL_RECORD, SMALL_RECORD - 3);
    assert_non_null(strstr(log, want));
    assert_int_equal(count_substr(log, "corrupt or torn"), 1);
    free(log);

    /* The journal goes on after the cut. */
    j = open_ok(f->dir, FSYNC_BATCH, T0, NULL);
    assert_int_equal(journal_replay(j, collect, &s), 0);
    assert_seqs(&s, 1, 9);
    seen_free(&s);
    append_seq(j, 10, SMALL_PAYLOAD);
    append_seq(j, 11, SMALL_PAYLOAD);
    journal_close(j);
    replay_dir(f->dir, &s, 0);
    assert_seqs(&s, 1, 11);
    assert_string_equal(s.msgs[9]->payload, "p10");
    seen_free(&s);
    free(seg);
}

/* An append without a replay first still cuts a torn tail before it. */
static void test_append_without_replay(void **state)
{
    struct fixture *f = *state;
    char *seg = segment_path(f->dir, 1);
    struct seen s = {0};
    struct capture cap;
    struct journal *j;
    char *log;

    build_small(f->dir, 1, 5);
    assert_int_equal(truncate(seg, 5 * SMALL_RECORD - 1), 0);
    capture_start(&cap);
    j = open_ok(f->dir, FSYNC_NEVER, T0, NULL);
    append_seq(j, 5, 7);
    journal_close(j);
    log = capture_end(&cap);
    assert_int_equal(count_substr(log, "corrupt or torn"), 1);
    free(log);

    replay_dir(f->dir, &s, 0);
    assert_seqs(&s, 1, 5);
    assert_int_equal(s.msgs[4]->payload_len, 7);
    seen_free(&s);
    free(seg);
}

/* A damaged byte in any part of record 11 of 20 keeps records 1..10. */
static void test_corrupt_middle(void **state)
{
    static const off_t fields[] = {
        0,                 /* magic */
        5,                 /* total length */
        9,                 /* crc */
        12,                /* seq */
        28,                /* type */
        33,                /* source_len */
        41,                /* payload_len */
        HEADER_SIZE + 1,   /* source */
        HEADER_SIZE + 60,  /* payload */
    };
    struct fixture *f = *state;
    char *seg = segment_path(f->dir, 1);
    struct seen s = {0};

    for (size_t k = 0; k < sizeof(fields) / sizeof(fields[0]); k++) {
        unlink(seg);
        build_small(f->dir, 1, 20);
        flip_byte(seg, 10 * SMALL_RECORD + fields[k]);
        replay_dir(f->dir, &s, 0);
        assert_seqs(&s, 1, 10);
        seen_free(&s);
        assert_int_equal(file_size(seg), 10 * SMALL_RECORD);
    }
    free(seg);
}

/* A corrupt record in an older segment ends the journal there. */
static void test_corrupt_drops_later_segments(void **state)
{
    struct fixture *f = *state;
    uint64_t per = big_per_segment();
    char *seg = segment_path(f->dir, 1);
    uint64_t segs[8];
    struct seen s = {0};
    struct capture cap;
    struct journal *j;
    char *log;

    build_big(f->dir, 2 * per + 3);
    flip_byte(seg, (off_t)(9 * big_record_size() + 1000));
    capture_start(&cap);
    replay_dir(f->dir, &s, 0);
    log = capture_end(&cap);
    assert_seqs(&s, 1, 9);
    seen_free(&s);
    assert_int_equal(list_segments(f->dir, segs, 8), 1);
    assert_int_equal(segs[0], 1);
    assert_int_equal(file_size(seg), (off_t)(9 * big_record_size()));
    assert_int_equal(count_substr(log, "corrupt or torn"), 1);
    assert_int_equal(count_substr(log, "deleted"), 2);
    free(log);

    j = open_ok(f->dir, FSYNC_NEVER, T0, NULL);
    assert_int_equal(journal_replay(j, NULL, NULL), 0);
    append_seq(j, 10, 0);
    journal_close(j);
    replay_dir(f->dir, &s, 0);
    assert_seqs(&s, 1, 10);
    seen_free(&s);
    free(seg);
}

/* A seq that does not increase, in the file, counts as corrupt. */
static void test_seq_not_increasing(void **state)
{
    struct fixture *f = *state;
    char *other = path_in(f->dir, "other");
    char *seg = segment_path(f->dir, 1);
    char *other_seg = segment_path(other, 2);
    char *renamed = segment_path(f->dir, 3);
    unsigned char rec[SMALL_RECORD];
    struct seen s = {0};
    int fd;

    build_small(f->dir, 1, 3);
    build_small(other, 2, 2);
    fd = open(other_seg, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, rec, sizeof(rec)), (ssize_t)sizeof(rec));
    close(fd);
    fd = open(seg, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, rec, sizeof(rec)), (ssize_t)sizeof(rec));
    close(fd);

    replay_dir(f->dir, &s, 0);
    assert_seqs(&s, 1, 3);
    seen_free(&s);
    assert_int_equal(file_size(seg), 3 * SMALL_RECORD);

    /* A record older than its segment's name is corrupt too. */
    assert_int_equal(rename(seg, renamed), 0);
    replay_dir(f->dir, &s, 0);
    assert_int_equal(s.count, 0);
    assert_int_equal(access(renamed, F_OK), -1); /* emptied, then removed */
    free(other);
    free(seg);
    free(other_seg);
    free(renamed);
}

/*
 * Garbage segments: a huge length, a length below the header size, a
 * length past the end of the file, no magic at all. Replay maps the file
 * and never allocates from a length, so these end as corrupt records, not
 * as a 4 GiB malloc.
 */
static void test_garbage_segment(void **state)
{
    struct fixture *f = *state;
    char *seg = segment_path(f->dir, 1);
    unsigned char junk[300];
    struct seen s = {0};
    struct journal *j;

    static const char *lengths[] = {
        "\xf0\xff\xff\xff", /* 4 GiB */
        "\x0a\x00\x00\x00", /* 10: shorter than a header */
        "\x00\x00\x10\x00", /* 1 MiB: past the end of the file */
        NULL,               /* no magic */
    };

    for (int k = 0; k < 4; k++) {
        memset(junk, 0xab, sizeof(junk));
        if (lengths[k] != NULL) {
            memcpy(junk, "SLJ1", 4);
            memcpy(junk + 4, lengths[k], 4);
        }
        write_file(seg, junk, sizeof(junk));

        j = open_ok(f->dir, FSYNC_NEVER, T0, NULL);
        assert_int_equal(journal_replay(j, collect, &s), 0);
        assert_int_equal(s.count, 0);
        /* Cut to nothing, so removed; appends start a fresh segment. */
        assert_int_equal(access(seg, F_OK), -1);
        append_seq(j, 7, 0);
        journal_close(j);
        replay_dir(f->dir, &s, 0);
        assert_seqs(&s, 7, 7);
        seen_free(&s);
        free(seg);
        seg = segment_path(f->dir, 7);
        unlink(seg);
        free(seg);
        seg = segment_path(f->dir, 1);
    }
    free(seg);
}

/* Files that are not segments are left alone. */
static void test_foreign_files_ignored(void **state)
{
    struct fixture *f = *state;
    char *a = path_in(f->dir, "README");
    char *b = path_in(f->dir, "123.log");
    struct seen s = {0};

    write_file(a, "hello", 5);
    write_file(b, "junk", 4);
    build_small(f->dir, 1, 2);
    replay_dir(f->dir, &s, 0);
    assert_seqs(&s, 1, 2);
    seen_free(&s);
    assert_int_equal(file_size(a), 5);
    assert_int_equal(file_size(b), 4);
    free(a);
    free(b);
}

/*
 * A write cut short (here by RLIMIT_FSIZE, as a full disk would) is
 * truncated back, so the journal holds no torn record and goes on.
 */
static void test_short_write_undone(void **state)
{
    struct fixture *f = *state;
    char *seg = segment_path(f->dir, 1);
    struct rlimit old;
    struct rlimit lim;
    struct seen s = {0};
    struct message *m = make_msg(4, "t/x", "0123456789", 10);
    struct journal *j;
    void (*old_handler)(int);

    build_small(f->dir, 1, 3);
    j = open_ok(f->dir, FSYNC_NEVER, T0, NULL);
    assert_int_equal(journal_replay(j, NULL, NULL), 0);

    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 3 * SMALL_RECORD + 20;
    old_handler = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    assert_int_equal(journal_append(j, m, "src"), -1);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    assert_int_equal(file_size(seg), 3 * SMALL_RECORD);

    assert_int_equal(journal_append(j, m, "src"), 0);
    journal_close(j);
    replay_dir(f->dir, &s, 0);
    assert_seqs(&s, 1, 4);
    assert_string_equal(s.msgs[3]->payload, "0123456789");
    seen_free(&s);
    message_unref(m);
    free(seg);
}

/* ------------------------------------------------------------------ */
/* Replay stopped by the callback                                      */
/* ------------------------------------------------------------------ */

static void test_callback_stops(void **state)
{
    struct fixture *f = *state;
    char *seg = segment_path(f->dir, 1);
    struct seen s = {.stop_after = 4};

    build_small(f->dir, 1, 10);
    replay_dir(f->dir, &s, -1);
    assert_seqs(&s, 1, 4);
    seen_free(&s);
    /* Stopping is not corruption: nothing was cut. */
    assert_int_equal(file_size(seg), 10 * SMALL_RECORD);
    replay_dir(f->dir, &s, 0);
    assert_seqs(&s, 1, 10);
    seen_free(&s);
    free(seg);
}

/* ------------------------------------------------------------------ */
/* fsync bookkeeping                                                   */
/* ------------------------------------------------------------------ */

static void test_dirty_flag(void **state)
{
    struct fixture *f = *state;
    struct journal *j = open_ok(f->dir, FSYNC_BATCH, T0, NULL);

    assert_int_equal(journal_replay(j, NULL, NULL), 0);
    assert_false(journal_dirty(j));
    append_seq(j, 1, 0);
    assert_true(journal_dirty(j));
    journal_sync(j);
    assert_false(journal_dirty(j));
    journal_sync(j);
    assert_false(journal_dirty(j));
    journal_close(j);

    j = open_ok(f->dir, FSYNC_NEVER, T0, NULL);
    assert_int_equal(journal_replay(j, NULL, NULL), 0);
    append_seq(j, 2, 0);
    assert_false(journal_dirty(j));
    journal_close(j);

    j = open_ok(f->dir, FSYNC_ALWAYS, T0, NULL);
    assert_int_equal(journal_replay(j, NULL, NULL), 0);
    append_seq(j, 3, 0);
    assert_false(journal_dirty(j));
    journal_close(j);
    journal_close(NULL);
}

/* Writes little-endian v at p. */
static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/*
 * A record with a well-formed header and a valid CRC but an absurd seq
 * (UINT64_MAX, which would wrap the history's next seq to 0, or just past
 * JOURNAL_SEQ_MAX) is corrupt: replay stops before it.
 */
static void test_seq_absurd(void **state)
{
    static const uint64_t absurd[] = {UINT64_MAX, JOURNAL_SEQ_MAX + 1};
    struct fixture *f = *state;
    char *seg = segment_path(f->dir, 1);
    unsigned char rec[SMALL_RECORD];
    struct seen s = {0};
    int fd;

    for (size_t k = 0; k < sizeof(absurd) / sizeof(absurd[0]); k++) {
        build_small(f->dir, 3 * k + 1, 3 * k + 3);
        fd = open(seg, O_RDONLY);
        assert_true(fd >= 0);
        assert_int_equal(read(fd, rec, sizeof(rec)), (ssize_t)sizeof(rec));
        close(fd);
        put_u64(rec + 12, absurd[k]);
        put_u32(rec + 8, (uint32_t)crc32(0, rec + 12, sizeof(rec) - 12));
        fd = open(seg, O_WRONLY | O_APPEND);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, rec, sizeof(rec)), (ssize_t)sizeof(rec));
        close(fd);
        replay_dir(f->dir, &s, 0);
        assert_seqs(&s, 1, 3 * k + 3);
        seen_free(&s);
        assert_int_equal(file_size(seg), (3 * k + 3) * SMALL_RECORD);
    }
    free(seg);
}

/* A segment named after a seq beyond JOURNAL_SEQ_MAX is not ours. */
static void test_segment_name_absurd(void **state)
{
    struct fixture *f = *state;
    char *huge = path_in(f->dir, "18446744073709551615.log");
    struct seen s = {0};

    build_small(f->dir, 1, 2);
    write_file(huge, "garbage", 7);
    replay_dir(f->dir, &s, 0);
    assert_seqs(&s, 1, 2);
    seen_free(&s);
    assert_int_equal(file_size(huge), 7); /* left alone */
    free(huge);
}

/* A segment that is a symbolic link is refused, its target untouched. */
static void test_symlinked_segment(void **state)
{
    struct fixture *f = *state;
    char *seg = segment_path(f->dir, 1);
    char *victim = path_in(f->dir, "victim");
    struct seen s = {0};
    struct capture cap;
    char *log;

    write_file(victim, "not a journal", 13);
    assert_int_equal(symlink(victim, seg), 0);
    capture_start(&cap);
    replay_dir(f->dir, &s, -1);
    log = capture_end(&cap);
    seen_free(&s);
    assert_non_null(strstr(log, "a symbolic link (not followed)"));
    assert_int_equal(file_size(victim), 13);
    free(log);
    free(seg);
    free(victim);
}

/* A directory others may write into, or that is not ours, is refused. */
static void test_open_unsafe_dir(void **state)
{
    struct fixture *f = *state;
    char *open_dir = path_in(f->dir, "open");
    char err[256] = "";
    int64_t epoch = 0;

    assert_int_equal(mkdir(open_dir, 0700), 0);
    assert_int_equal(chmod(open_dir, 0777), 0);
    assert_null(journal_open(open_dir, FSYNC_NEVER, T0, &epoch, err,
                             sizeof(err)));
    assert_non_null(strstr(err, "writable by group or others (mode 0777)"));
    assert_int_equal(chmod(open_dir, 0750), 0);
    journal_close(open_ok(open_dir, FSYNC_NEVER, T0, NULL));
    if (geteuid() == 0) {
        assert_int_equal(chown(open_dir, 65534, 65534), 0);
        assert_null(journal_open(open_dir, FSYNC_NEVER, T0, &epoch, err,
                                 sizeof(err)));
        assert_non_null(strstr(err, "owned by uid 65534"));
    }
    free(open_dir);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_round_trip_never),
        T(test_round_trip_batch),
        T(test_round_trip_always),
        T(test_append_after_reopen),
        T(test_append_refuses_old_seq),
        T(test_epoch_persists),
        T(test_epoch_corrupt),
        T(test_open_bad_dir),
        T(test_lock),
        T(test_segment_roll),
        T(test_trim),
        T(test_torn_tail),
        T(test_append_without_replay),
        T(test_corrupt_middle),
        T(test_corrupt_drops_later_segments),
        T(test_seq_not_increasing),
        T(test_garbage_segment),
        T(test_foreign_files_ignored),
        T(test_short_write_undone),
        T(test_callback_stops),
        T(test_dirty_flag),
        T(test_seq_absurd),
        T(test_segment_name_absurd),
        T(test_symlinked_segment),
        T(test_open_unsafe_dir),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
