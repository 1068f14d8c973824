/*
 * fuzz_journal.c - libFuzzer driver for the journal's replay (lib/journal.c)
 * from the bytes of a segment file, as a crash, a bad disk or a hand edit
 * may leave them in history.dir.
 *
 * Input layout:
 *   byte 0      flags: bit 0 recompute the CRC of every record whose
 *               header and length look sane (so mutations behind the CRC,
 *               in the lengths, seqs, types and bytes of a record, are
 *               reached instead of being cut as corrupt); bit 1 split the
 *               bytes into two segments at the first record boundary past
 *               the middle; bit 2 write no epoch file (journal_open creates
 *               one); bit 3 name the first segment 0 rather than after the
 *               seq of its first record
 *   byte 1      n: the epoch file holds the next n % 32 bytes
 *   n bytes     epoch file
 *   the rest    segment bytes
 *
 * Each input gets an empty private directory (mkdtemp, mode 0700, as
 * journal_open demands), the files are written, and then:
 *   1. journal_open + journal_replay; every record handed to the callback
 *      must lie inside the file, carry a seq above the previous one and at
 *      least its segment's name, and have bounded fields;
 *   2. when the replay succeeded, one record is appended after the last
 *      seq; the journal is closed, opened again and replayed: it must
 *      give back exactly the records of the first replay plus the new one,
 *      and report no lost records (replay cut the bad tail for good and
 *      nothing was appended after a torn record).
 * Seeds (tests/fuzz/corpus/journal/) are real segments written by
 * journal_append: tests/fuzz/gen_journal_seeds.c.
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "lib/journal.h"
#include "lib/log.h"
#include "lib/message.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_NOW_MS INT64_C(1764000000000)
#define FUZZ_HEADER 44
#define FUZZ_MAX_RECORDS 4096

static char fuzz_dir[256];

struct fuzz_seen {
    uint64_t seqs[FUZZ_MAX_RECORDS];
    uint32_t crcs[FUZZ_MAX_RECORDS]; /* of source, topic, payload, entry id */
    size_t n;
    uint64_t last;     /* seq of the last record (also past the cap) */
    size_t file_size;
    uint64_t first_name;
};

static uint32_t fuzz_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint64_t fuzz_get_u64(const uint8_t *p)
{
    return (uint64_t)fuzz_get_u32(p) | (uint64_t)fuzz_get_u32(p + 4) << 32;
}

static void fuzz_put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Length of the record at p when its magic and length fit in avail. */
static size_t fuzz_record_len(const uint8_t *p, size_t avail)
{
    uint32_t total;

    if (avail < FUZZ_HEADER || fuzz_get_u32(p) != 0x314a4c53u)
        return 0;
    total = fuzz_get_u32(p + 4);
    return total >= FUZZ_HEADER && total <= avail ? total : 0;
}

/* Recomputes the CRC of each sane-looking record, front to back. */
static void fuzz_fix_crcs(uint8_t *seg, size_t len)
{
    size_t off = 0, n;

    while ((n = fuzz_record_len(seg + off, len - off)) > 0) {
        fuzz_put_u32(seg + off + 8,
                     (uint32_t)crc32(0L, seg + off + 12, (uInt)(n - 12)));
        off += n;
    }
}

/* First record boundary at or past len / 2, or 0 when there is none. */
static size_t fuzz_split_point(const uint8_t *seg, size_t len)
{
    size_t off = 0, n;

    while ((n = fuzz_record_len(seg + off, len - off)) > 0) {
        off += n;
        if (off >= len / 2)
            return off < len ? off : 0;
    }
    return 0;
}

static void fuzz_write(const char *name, const void *p, size_t len)
{
    char path[512];
    int fd;

    snprintf(path, sizeof(path), "%s/%s", fuzz_dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        abort();
    if (len > 0 && write(fd, p, len) != (ssize_t)len)
        abort();
    close(fd);
}

static void fuzz_write_segment(uint64_t seq, const uint8_t *p, size_t len)
{
    char name[64];

    snprintf(name, sizeof(name), "%020" PRIu64 ".log", seq);
    fuzz_write(name, p, len);
}

/* Empties the directory (it holds only files this driver or the journal
 * made: segments, epoch, epoch.tmp, lock). */
static void fuzz_clean(void)
{
    DIR *d = opendir(fuzz_dir);
    struct dirent *e;

    if (d == NULL)
        abort();
    while ((e = readdir(d)) != NULL) {
        char path[512];

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", fuzz_dir, e->d_name);
        unlink(path);
    }
    closedir(d);
}

static int fuzz_collect(void *arg, const struct journal_record *rec)
{
    struct fuzz_seen *s = arg;
    uLong crc = crc32(0L, Z_NULL, 0);

    if (s->last > 0 && rec->seq <= s->last)
        abort(); /* seqs strictly increase over the whole journal */
    s->last = rec->seq;
    if (rec->seq < s->first_name || rec->seq > JOURNAL_SEQ_MAX)
        abort();
    if (rec->source_len + rec->topic_len + rec->payload_len > s->file_size)
        abort(); /* fields lie inside the file */
    if (rec->type > SOURCE_REDIS_STREAM || rec->qos > 2)
        abort();
    if (rec->stream_entry_id != NULL &&
        strlen(rec->stream_entry_id) > s->file_size)
        abort();
    if (s->n == FUZZ_MAX_RECORDS)
        return 0; /* keep going, just stop recording */
    crc = crc32(crc, (const Bytef *)rec->source, (uInt)rec->source_len);
    crc = crc32(crc, (const Bytef *)rec->topic, (uInt)rec->topic_len);
    crc = crc32(crc, (const Bytef *)rec->payload, (uInt)rec->payload_len);
    if (rec->stream_entry_id != NULL)
        crc = crc32(crc, (const Bytef *)rec->stream_entry_id,
                    (uInt)strlen(rec->stream_entry_id));
    s->seqs[s->n] = rec->seq;
    s->crcs[s->n] = (uint32_t)crc;
    s->n++;
    return 0;
}

/* Appends one record after `after` and replays the journal again. */
static void fuzz_append_and_reopen(struct journal *j, const struct fuzz_seen *a,
                                   uint64_t after)
{
    static struct fuzz_seen b;
    struct message *m;
    int64_t epoch;
    char err[512];
    int rc;

    m = message_new(0, SOURCE_REDIS_STREAM, "t/after", 7, "{\"x\":1}", 7,
                    FUZZ_NOW_MS);
    if (m == NULL || message_set_stream_entry_id(m, "1-1") != 0)
        abort();
    m->seq = after + 1;
    rc = journal_append(j, m, "src");
    message_unref(m);
    journal_close(j);
    if (rc != 0)
        abort(); /* a replayed journal always takes the next record */

    j = journal_open(fuzz_dir, FSYNC_NEVER, FUZZ_NOW_MS, &epoch, err,
                     sizeof(err));
    if (j == NULL)
        abort(); /* it opened a moment ago */
    memset(&b, 0, sizeof(b));
    b.file_size = a->file_size + 4096;
    b.first_name = 0;
    if (journal_replay(j, fuzz_collect, &b) != 0 || journal_lost_records(j))
        abort(); /* the first replay left a clean journal */
    if (a->n < FUZZ_MAX_RECORDS) {
        if (b.n != a->n + 1 || b.seqs[a->n] != after + 1)
            abort(); /* every record again, then the new one */
        for (size_t i = 0; i < a->n; i++)
            if (b.seqs[i] != a->seqs[i] || b.crcs[i] != a->crcs[i])
                abort();
    }
    journal_close(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fuzz_seen seen;
    uint8_t flags, *seg;
    size_t epoch_len, seg_len, split;
    uint64_t name;
    struct journal *j;
    int64_t epoch;
    char err[512];

    if (fuzz_dir[0] == '\0') {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";

        log_configure(LOG_ERROR + 1, LOG_FORMAT_TEXT); /* quiet */
        snprintf(fuzz_dir, sizeof(fuzz_dir), "%s/fuzz_journal.XXXXXX", base);
        if (mkdtemp(fuzz_dir) == NULL)
            abort();
    }
    if (size < 2 || size > (1u << 20))
        return 0;
    flags = data[0];
    epoch_len = data[1] % 32;
    if (size < 2 + epoch_len)
        return 0;
    seg_len = size - 2 - epoch_len;
    seg = malloc(seg_len + 1);
    if (seg == NULL)
        return 0;
    memcpy(seg, data + 2 + epoch_len, seg_len);
    if (flags & 1)
        fuzz_fix_crcs(seg, seg_len);

    fuzz_clean();
    if (!(flags & 4))
        fuzz_write("epoch", data + 2, epoch_len);
    name = 0;
    if (!(flags & 8) && fuzz_record_len(seg, seg_len) > 0)
        name = fuzz_get_u64(seg + 12);
    if (name > JOURNAL_SEQ_MAX)
        name = 0;
    split = (flags & 2) ? fuzz_split_point(seg, seg_len) : 0;
    if (split > 0) {
        uint64_t second = name + 1;

        fuzz_write_segment(name, seg, split);
        /* Named after its first record when it has one that is "later". */
        if (fuzz_record_len(seg + split, seg_len - split) > 0)
            second = fuzz_get_u64(seg + split + 12);
        if (second <= name || second > JOURNAL_SEQ_MAX)
            second = name + 1;
        fuzz_write_segment(second, seg + split, seg_len - split);
    } else {
        fuzz_write_segment(name, seg, seg_len);
    }
    free(seg);

    memset(&seen, 0, sizeof(seen));
    seen.file_size = seg_len;
    seen.first_name = name;
    j = journal_open(fuzz_dir, FSYNC_NEVER, FUZZ_NOW_MS, &epoch, err,
                     sizeof(err));
    if (j == NULL)
        return 0; /* a corrupt epoch file is refused, with a reason */
    if (epoch <= 0)
        abort(); /* a stored epoch is positive, a new one is now */
    if (journal_replay(j, fuzz_collect, &seen) != 0) {
        journal_close(j);
        return 0;
    }
    if (seen.last == 0)
        seen.last = name; /* nothing good: the next record may be name + 1 */
    if (seen.last >= JOURNAL_SEQ_MAX) {
        journal_close(j);
        return 0;
    }
    fuzz_append_and_reopen(j, &seen, seen.last);
    return 0;
}
