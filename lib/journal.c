/*
 * journal.c - the on-disk journal behind history.dir (see journal.h).
 *
 * The history appends every accepted message here (journal_append) and,
 * at start, rebuilds itself from the journal (journal_replay). The
 * journal owns only files: it never keeps a message in memory.
 *
 * Directory layout:
 *   <dir>/lock                   flock(LOCK_EX) held while open, so two
 *                                sluice processes cannot share a dir
 *   <dir>/epoch                  decimal Unix ms epoch of the history ids,
 *                                replaced atomically (tmp, fsync, rename,
 *                                fsync dir)
 *   <dir>/<20-digit seq>.log     segments; the name is the seq of the
 *                                first record, every record in a segment
 *                                is >= its name and < the next one's name
 *
 * Record layout (all integers little-endian), HEADER_SIZE = 44 bytes:
 *   off  0  u32 magic         RECORD_MAGIC ("SLJ1" read as bytes 1JLS)
 *   off  4  u32 total length  header + source + topic + payload + entry id
 *   off  8  u32 crc32         zlib crc32 over bytes [12, total length)
 *   off 12  u64 seq           strictly increasing over the whole journal
 *   off 20  i64 time_ms       receive time, Unix ms
 *   off 28  u8  type          enum source_type
 *   off 29  u8  flags         bit 0 has_mqtt, bit 1 retain
 *   off 30  u8  qos           0..2
 *   off 31  u8  reserved      0
 *   off 32  u16 source_len    source name
 *   off 34  u16 entry_id_len  redis-stream entry id, 0 = none
 *   off 36  u32 topic_len
 *   off 40  u32 payload_len
 *   off 44  source, topic, payload, entry id bytes (no NULs)
 * A record is at most RECORD_MAX bytes: a length beyond that is corrupt.
 *
 * Trust: the directory must belong to this user and be writable by no
 * one else, and every file in it is opened with O_NOFOLLOW and checked
 * to be a regular file of ours (journal_open_file), so that nobody can
 * make sluice truncate or overwrite another file through a link.
 *
 * Invariants a reader must not break:
 * - a record is written with a single write(2), so a crash leaves at most
 *   one torn record, at the tail of the last segment;
 * - nothing is ever appended after a torn or corrupt record: replay
 *   truncates the tail before the first append, and a failed write is
 *   truncated back (or blocks further appends until it can be);
 * - the segment being appended to (the last one) is never deleted.
 */
#include "lib/journal.h"

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "lib/log.h"
#include "lib/message.h"

#define RECORD_MAGIC 0x314a4c53u /* bytes "SLJ1" on disk */
#define HEADER_SIZE 44
#define CRC_START 12             /* the crc covers everything after it */
#define RECORD_MAX (64u * 1024 * 1024)
#define FLAG_MQTT 0x01
#define FLAG_RETAIN 0x02
#define SEGMENT_NAME_MAX 32      /* 20 digits + ".log" + NUL, rounded */
#define SEGMENT_DIGITS 20
#define EPOCH_MAX_TEXT 32

struct journal {
    char *dir;              /* owned; for log messages only */
    int dir_fd;             /* every file is opened relative to it */
    int lock_fd;            /* holds the flock */
    enum fsync_mode fsync;

    /* Known segments, sorted by first seq; the last is the append target. */
    uint64_t *segs;
    size_t nsegs;
    size_t segs_cap;

    int fd;                 /* open last segment (O_APPEND), or -1 */
    uint64_t seg_size;      /* bytes of good records in it */
    uint64_t last_seq;      /* newest record on disk, 0 when none */
    bool replayed;          /* tail checked: appends are allowed */
    bool dirty;             /* written since the last fdatasync (batch) */
    bool tail_torn;         /* a failed write is not truncated back yet */
    bool failing;           /* the last append failed (log once) */
    bool lost;              /* replay cut records: issued ids may be gone */

    /* Reusable record buffer: the append path allocates only to grow it.
     * Replay borrows it to NUL-terminate entry ids. */
    unsigned char *buf;
    size_t buf_cap;
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

static void journal_put_u16(unsigned char *p, uint16_t v)
{
    v = htole16(v);
    memcpy(p, &v, sizeof(v));
}

static void journal_put_u32(unsigned char *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, sizeof(v));
}

static void journal_put_u64(unsigned char *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, sizeof(v));
}

static uint16_t journal_get_u16(const unsigned char *p)
{
    uint16_t v;

    memcpy(&v, p, sizeof(v));
    return le16toh(v);
}

static uint32_t journal_get_u32(const unsigned char *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return le32toh(v);
}

static uint64_t journal_get_u64(const unsigned char *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return le64toh(v);
}

/* zlib's crc32 takes a uInt length: feed it in chunks to be exact. */
static uint32_t journal_crc(const unsigned char *p, size_t len)
{
    uLong crc = crc32(0L, Z_NULL, 0);

    while (len > 0) {
        uInt chunk = len > (1u << 30) ? (1u << 30) : (uInt)len;

        crc = crc32(crc, p, chunk);
        p += chunk;
        len -= chunk;
    }
    return (uint32_t)crc;
}

static void journal_segment_name(uint64_t seq, char *out, size_t outlen)
{
    snprintf(out, outlen, "%020" PRIu64 ".log", seq);
}

/* Parses "<20 digits>.log" into *seq; false for any other name. */
static bool journal_parse_segment_name(const char *name, uint64_t *seq)
{
    char *end;

    if (strspn(name, "0123456789") != SEGMENT_DIGITS ||
        strcmp(name + SEGMENT_DIGITS, ".log") != 0)
        return false;
    errno = 0;
    *seq = strtoull(name, &end, 10);
    return errno == 0 && end == name + SEGMENT_DIGITS &&
           *seq <= JOURNAL_SEQ_MAX;
}

/* Makes j->buf hold at least len bytes. 0, or -1 on ENOMEM. */
static int journal_reserve(struct journal *j, size_t len)
{
    size_t cap = j->buf_cap > 0 ? j->buf_cap : 4096;
    unsigned char *p;

    if (len <= j->buf_cap)
        return 0;
    while (cap < len)
        cap *= 2;
    p = realloc(j->buf, cap);
    if (p == NULL)
        return -1;
    j->buf = p;
    j->buf_cap = cap;
    return 0;
}

static int journal_add_segment(struct journal *j, uint64_t seq)
{
    if (j->nsegs == j->segs_cap) {
        size_t cap = j->segs_cap > 0 ? j->segs_cap * 2 : 16;
        uint64_t *p = realloc(j->segs, cap * sizeof(*p));

        if (p == NULL)
            return -1;
        j->segs = p;
        j->segs_cap = cap;
    }
    j->segs[j->nsegs++] = seq;
    return 0;
}

static int journal_cmp_seq(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static void journal_fsync_dir(struct journal *j)
{
    if (fsync(j->dir_fd) != 0)
        log_warn("journal: %s: fsync of the directory failed: %s", j->dir,
                 strerror(errno));
}

/* ------------------------------------------------------------------ */
/* Open: directory, lock, epoch, segment list                          */
/* ------------------------------------------------------------------ */

/* Refuses a directory that another user could write into. */
static int journal_check_dir(struct journal *j, char *err, size_t errlen)
{
    struct stat st;

    if (fstat(j->dir_fd, &st) != 0) {
        snprintf(err, errlen, "history.dir %s: %s", j->dir, strerror(errno));
        return -1;
    }
    if (st.st_uid != geteuid()) {
        snprintf(err, errlen,
                 "history.dir %s is owned by uid %u, not by the user sluice "
                 "runs as (uid %u); refusing it: chown it or choose another "
                 "directory", j->dir, (unsigned)st.st_uid,
                 (unsigned)geteuid());
        return -1;
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
        snprintf(err, errlen,
                 "history.dir %s is writable by group or others (mode %04o); "
                 "refusing it: other users could plant links or swap files "
                 "there (chmod go-w it, or use a private subdirectory)",
                 j->dir, (unsigned)(st.st_mode & 07777));
        return -1;
    }
    return 0;
}

/* Opens (creating the last path component if needed) dir into j->dir_fd. */
static int journal_open_dir(struct journal *j, char *err, size_t errlen)
{
    if (mkdir(j->dir, 0750) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "history.dir %s: cannot create: %s", j->dir,
                 strerror(errno));
        return -1;
    }
    j->dir_fd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (j->dir_fd < 0) {
        snprintf(err, errlen, "history.dir %s: %s", j->dir, strerror(errno));
        return -1;
    }
    return journal_check_dir(j, err, errlen);
}

int journal_open_file(struct journal *j, const char *name, int flags)
{
    struct stat st;
    int fd = openat(j->dir_fd, name, flags | O_NOFOLLOW | O_CLOEXEC, 0640);
    int saved;

    if (fd < 0)
        return -1;
    if (fstat(fd, &st) != 0) {
        saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
        close(fd);
        errno = EPERM;
        return -1;
    }
    return fd;
}

/* The reason a journal_open_file failed, for messages. */
static const char *journal_open_error(int errnum)
{
    if (errnum == ELOOP)
        return "a symbolic link (not followed)";
    if (errnum == EPERM)
        return "not a regular file owned by this user";
    return strerror(errnum);
}

/* Takes the exclusive lock that keeps a second process out of the dir. */
static int journal_lock(struct journal *j, char *err, size_t errlen)
{
    j->lock_fd = journal_open_file(j, "lock", O_RDWR | O_CREAT);
    if (j->lock_fd < 0) {
        snprintf(err, errlen, "history.dir %s: cannot open lock file: %s",
                 j->dir, journal_open_error(errno));
        return -1;
    }
    if (flock(j->lock_fd, LOCK_EX | LOCK_NB) == 0)
        return 0;
    if (errno == EWOULDBLOCK)
        snprintf(err, errlen,
                 "history.dir %s is in use by another sluice process "
                 "(%s/lock is locked); each instance needs its own dir",
                 j->dir, j->dir);
    else
        snprintf(err, errlen, "history.dir %s: cannot lock: %s", j->dir,
                 strerror(errno));
    return -1;
}

bool journal_lost_records(const struct journal *j)
{
    return j->lost;
}

static int journal_write_epoch(struct journal *j, int64_t epoch_ms,
                               char *err, size_t errlen);

int journal_set_epoch(struct journal *j, int64_t epoch_ms, char *err,
                      size_t errlen)
{
    return journal_write_epoch(j, epoch_ms, err, errlen);
}

/* Writes the epoch file atomically: tmp file, fsync, rename, fsync dir. */
static int journal_write_epoch(struct journal *j, int64_t epoch_ms,
                               char *err, size_t errlen)
{
    char text[EPOCH_MAX_TEXT];
    int len = snprintf(text, sizeof(text), "%" PRId64 "\n", epoch_ms);
    int fd = journal_open_file(j, "epoch.tmp",
                               O_WRONLY | O_CREAT | O_TRUNC);

    if (fd < 0)
        goto fail;
    if (write(fd, text, (size_t)len) != len || fsync(fd) != 0) {
        close(fd);
        goto fail;
    }
    if (close(fd) != 0 || renameat(j->dir_fd, "epoch.tmp", j->dir_fd,
                                   "epoch") != 0)
        goto fail;
    if (fsync(j->dir_fd) != 0)
        goto fail;
    return 0;

fail:
    snprintf(err, errlen, "history.dir %s: cannot write epoch file: %s",
             j->dir, journal_open_error(errno));
    return -1;
}

/*
 * Reads <dir>/epoch into *epoch_ms, or creates it holding now_ms. A file
 * that does not hold a positive decimal number is an error: guessing a
 * new epoch would silently change every stored id.
 */
static int journal_load_epoch(struct journal *j, int64_t now_ms,
                              int64_t *epoch_ms, char *err, size_t errlen)
{
    char text[EPOCH_MAX_TEXT];
    char *end;
    ssize_t n;
    long long v;
    int fd = journal_open_file(j, "epoch", O_RDONLY);

    if (fd < 0 && errno == ENOENT) {
        *epoch_ms = now_ms;
        return journal_write_epoch(j, now_ms, err, errlen);
    }
    if (fd < 0) {
        snprintf(err, errlen, "history.dir %s: cannot read epoch file: %s",
                 j->dir, journal_open_error(errno));
        return -1;
    }
    n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n < 0) {
        snprintf(err, errlen, "history.dir %s: cannot read epoch file: %s",
                 j->dir, strerror(errno));
        return -1;
    }
    text[n] = '\0';
    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || v <= 0 ||
        (*end != '\0' && strcmp(end, "\n") != 0)) {
        snprintf(err, errlen,
                 "history.dir %s: epoch file is corrupt (expected a decimal "
                 "Unix ms time); remove the directory to start a new history",
                 j->dir);
        return -1;
    }
    *epoch_ms = v;
    return 0;
}

/* Fills j->segs with the seq of every segment file, sorted. */
static int journal_scan(struct journal *j, char *err, size_t errlen)
{
    DIR *d;
    struct dirent *e;
    uint64_t seq;
    int fd = openat(j->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    /* fdopendir takes over fd; a fresh one keeps j->dir_fd's offset alone. */
    if (fd < 0 || (d = fdopendir(fd)) == NULL) {
        snprintf(err, errlen, "history.dir %s: cannot list: %s", j->dir,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        if (!journal_parse_segment_name(e->d_name, &seq))
            continue;
        if (journal_add_segment(j, seq) != 0) {
            closedir(d);
            snprintf(err, errlen, "history.dir %s: out of memory", j->dir);
            return -1;
        }
    }
    closedir(d);
    if (j->nsegs > 1)
        qsort(j->segs, j->nsegs, sizeof(*j->segs), journal_cmp_seq);
    return 0;
}

struct journal *journal_open(const char *dir, enum fsync_mode fsync,
                             int64_t now_ms, int64_t *epoch_ms, char *err,
                             size_t errlen)
{
    struct journal *j = calloc(1, sizeof(*j));

    if (j == NULL || (j->dir = strdup(dir)) == NULL) {
        snprintf(err, errlen, "history.dir %s: out of memory", dir);
        free(j);
        return NULL;
    }
    j->dir_fd = -1;
    j->lock_fd = -1;
    j->fd = -1;
    j->fsync = fsync;
    if (journal_open_dir(j, err, errlen) != 0 ||
        journal_lock(j, err, errlen) != 0 ||
        journal_load_epoch(j, now_ms, epoch_ms, err, errlen) != 0 ||
        journal_scan(j, err, errlen) != 0)
        goto fail;
    return j;

fail:
    journal_close(j);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Replay                                                              */
/* ------------------------------------------------------------------ */

/*
 * Checks the record at p (avail bytes left in the segment) and decodes it
 * into *rec, borrowing p. Returns its total length, or 0 when it is torn
 * or corrupt. No length read from the file is trusted before it is bounded
 * by avail and RECORD_MAX, and nothing is allocated from it.
 */
static size_t journal_decode(const unsigned char *p, size_t avail,
                             uint64_t min_seq, struct journal_record *rec,
                             size_t *entry_id_len)
{
    uint32_t total;
    uint64_t body;

    if (avail < HEADER_SIZE || journal_get_u32(p) != RECORD_MAGIC)
        return 0;
    total = journal_get_u32(p + 4);
    if (total < HEADER_SIZE || total > RECORD_MAX || total > avail)
        return 0;
    body = (uint64_t)journal_get_u16(p + 32) + journal_get_u16(p + 34) +
           journal_get_u32(p + 36) + journal_get_u32(p + 40);
    if (body != total - HEADER_SIZE ||
        journal_crc(p + CRC_START, total - CRC_START) != journal_get_u32(p + 8))
        return 0;
    rec->seq = journal_get_u64(p + 12);
    if (rec->seq < min_seq || rec->seq > JOURNAL_SEQ_MAX ||
        p[28] > SOURCE_REDIS_STREAM || p[30] > 2)
        return 0;
    rec->time_ms = (int64_t)journal_get_u64(p + 20);
    rec->type = (enum source_type)p[28];
    rec->has_mqtt = (p[29] & FLAG_MQTT) != 0;
    rec->retain = (p[29] & FLAG_RETAIN) != 0;
    rec->qos = p[30];
    rec->source_len = journal_get_u16(p + 32);
    rec->topic_len = journal_get_u32(p + 36);
    rec->payload_len = journal_get_u32(p + 40);
    rec->source = (const char *)p + HEADER_SIZE;
    rec->topic = rec->source + rec->source_len;
    rec->payload = rec->topic + rec->topic_len;
    rec->stream_entry_id = NULL;
    *entry_id_len = journal_get_u16(p + 34);
    return total;
}

/* Deletes every segment after index i (they follow a corrupt record). */
static void journal_drop_after(struct journal *j, size_t i)
{
    char name[SEGMENT_NAME_MAX];

    for (size_t k = i + 1; k < j->nsegs; k++) {
        journal_segment_name(j->segs[k], name, sizeof(name));
        if (unlinkat(j->dir_fd, name, 0) != 0)
            log_error("journal: %s/%s: cannot delete: %s", j->dir, name,
                      strerror(errno));
        else
            log_warn("journal: %s/%s: deleted (it follows a corrupt record)",
                     j->dir, name);
    }
    j->nsegs = i + 1;
    journal_fsync_dir(j);
}

/* Cuts segment i (open as fd, size bytes) at good, the last good offset. */
static int journal_cut(struct journal *j, size_t i, int fd, size_t good,
                       size_t size)
{
    char name[SEGMENT_NAME_MAX];

    journal_segment_name(j->segs[i], name, sizeof(name));
    log_warn("journal: %s/%s: corrupt or torn record at offset %zu; "
             "truncating (%zu bytes dropped)", j->dir, name, good,
             size - good);
    j->lost = true;
    if (ftruncate(fd, (off_t)good) != 0 || fsync(fd) != 0) {
        log_error("journal: %s/%s: cannot truncate: %s", j->dir, name,
                  strerror(errno));
        return -1;
    }
    journal_drop_after(j, i);
    return 0;
}

/*
 * Hands every good record of the mapped segment data[0, size) to cb (when
 * not NULL). Sets *good to the end of the last good record. Returns 0, or
 * -1 when cb asked to stop or an entry id could not be copied.
 */
static int journal_walk(struct journal *j, const unsigned char *data,
                        size_t size, uint64_t first_seq, size_t *good,
                        int (*cb)(void *, const struct journal_record *),
                        void *arg)
{
    struct journal_record rec;
    size_t off = 0;
    size_t n;
    size_t id_len;

    while (off < size) {
        uint64_t min_seq = j->last_seq + 1 > first_seq ? j->last_seq + 1
                                                       : first_seq;

        n = journal_decode(data + off, size - off, min_seq, &rec, &id_len);
        if (n == 0)
            break;
        if (id_len > 0) {
            /* The callback wants a C string: copy it out of the mapping. */
            if (journal_reserve(j, id_len + 1) != 0) {
                log_error("journal: %s: out of memory", j->dir);
                return -1;
            }
            memcpy(j->buf, data + off + n - id_len, id_len);
            j->buf[id_len] = '\0';
            rec.stream_entry_id = (const char *)j->buf;
        }
        if (cb != NULL && cb(arg, &rec) != 0)
            return -1;
        j->last_seq = rec.seq;
        off += n;
        *good = off;
    }
    return 0;
}

/*
 * Replays segment i. The whole file is mapped once (no copy, no buffer
 * sized from the file) and walked record by record. Sets *stop when a bad
 * record ended the journal. Returns 0, or -1 on error or when cb stopped.
 */
static int journal_replay_segment(struct journal *j, size_t i,
                                  int (*cb)(void *,
                                            const struct journal_record *),
                                  void *arg, bool *stop)
{
    char name[SEGMENT_NAME_MAX];
    struct stat st;
    void *map = NULL;
    size_t size = 0;
    size_t good = 0;
    int rc = -1;
    int fd;

    journal_segment_name(j->segs[i], name, sizeof(name));
    fd = journal_open_file(j, name, O_RDWR);
    if (fd < 0 || fstat(fd, &st) != 0) {
        log_error("journal: %s/%s: cannot open: %s", j->dir, name,
                  journal_open_error(errno));
        goto out;
    }
    size = (size_t)st.st_size;
    if (size > 0) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            map = NULL;
            log_error("journal: %s/%s: cannot map: %s", j->dir, name,
                      strerror(errno));
            goto out;
        }
        madvise(map, size, MADV_SEQUENTIAL);
        if (journal_walk(j, map, size, j->segs[i], &good, cb, arg) != 0)
            goto out;
    }
    rc = 0;
    if (good < size) {
        *stop = true;
        rc = journal_cut(j, i, fd, good, size);
    }

out:
    if (map != NULL)
        munmap(map, size);
    if (fd >= 0)
        close(fd);
    return rc;
}

/*
 * Opens the last segment for appending. An empty last segment (a crash
 * right after its creation, or a first record that was torn) is deleted:
 * the next append creates one named after its own seq.
 */
static int journal_open_tail(struct journal *j)
{
    char name[SEGMENT_NAME_MAX];
    struct stat st;

    if (j->nsegs == 0)
        return 0;
    journal_segment_name(j->segs[j->nsegs - 1], name, sizeof(name));
    j->fd = journal_open_file(j, name, O_WRONLY | O_APPEND);
    if (j->fd < 0 || fstat(j->fd, &st) != 0) {
        log_error("journal: %s/%s: cannot open: %s", j->dir, name,
                  journal_open_error(errno));
        return -1;
    }
    j->seg_size = (uint64_t)st.st_size;
    if (st.st_size > 0)
        return 0;
    close(j->fd);
    j->fd = -1;
    if (unlinkat(j->dir_fd, name, 0) != 0) {
        log_error("journal: %s/%s: cannot delete: %s", j->dir, name,
                  strerror(errno));
        return -1;
    }
    j->nsegs--;
    return 0;
}

int journal_replay(struct journal *j,
                   int (*cb)(void *arg, const struct journal_record *rec),
                   void *arg)
{
    bool stop = false;

    if (j->replayed) {
        log_error("journal: %s: replay after the journal was in use", j->dir);
        return -1;
    }
    j->last_seq = 0;
    for (size_t i = 0; i < j->nsegs && !stop; i++)
        if (journal_replay_segment(j, i, cb, arg, &stop) != 0)
            return -1;
    if (journal_open_tail(j) != 0)
        return -1;
    j->replayed = true;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Append (hot path: once per accepted message)                        */
/* ------------------------------------------------------------------ */

/*
 * Encodes msg into j->buf. Returns the record length, or 0 when a field
 * is too large for the format or the buffer cannot grow (logged).
 */
static size_t journal_encode(struct journal *j, const struct message *msg,
                             const char *source)
{
    size_t source_len = strlen(source);
    size_t id_len = msg->stream_entry_id ? strlen(msg->stream_entry_id) : 0;
    size_t total;
    unsigned char *p;

    if (source_len > UINT16_MAX || id_len > UINT16_MAX ||
        msg->topic_len > RECORD_MAX || msg->payload_len > RECORD_MAX ||
        HEADER_SIZE + source_len + id_len + msg->topic_len +
                msg->payload_len > RECORD_MAX) {
        log_error("journal: %s: message %" PRIu64 " is too large to store",
                  j->dir, msg->seq);
        return 0;
    }
    total = HEADER_SIZE + source_len + id_len + msg->topic_len +
            msg->payload_len;
    if (journal_reserve(j, total) != 0) {
        log_error("journal: %s: out of memory", j->dir);
        return 0;
    }
    p = j->buf;
    journal_put_u32(p, RECORD_MAGIC);
    journal_put_u32(p + 4, (uint32_t)total);
    journal_put_u64(p + 12, msg->seq);
    journal_put_u64(p + 20, (uint64_t)msg->time_ms);
    p[28] = (unsigned char)msg->type;
    p[29] = (msg->has_mqtt ? FLAG_MQTT : 0) | (msg->retain ? FLAG_RETAIN : 0);
    p[30] = msg->qos;
    p[31] = 0;
    journal_put_u16(p + 32, (uint16_t)source_len);
    journal_put_u16(p + 34, (uint16_t)id_len);
    journal_put_u32(p + 36, (uint32_t)msg->topic_len);
    journal_put_u32(p + 40, (uint32_t)msg->payload_len);
    p += HEADER_SIZE;
    memcpy(p, source, source_len);
    p += source_len;
    memcpy(p, msg->topic, msg->topic_len);
    p += msg->topic_len;
    if (msg->payload_len > 0)
        memcpy(p, msg->payload, msg->payload_len);
    p += msg->payload_len;
    if (id_len > 0)
        memcpy(p, msg->stream_entry_id, id_len);
    journal_put_u32(j->buf + 8, journal_crc(j->buf + CRC_START,
                                            total - CRC_START));
    return total;
}

/*
 * Starts segment "<seq>.log" and makes it the append target. The previous
 * segment is synced first when it has unsynced records (batch), since
 * journal_sync only sees the current one. The new name is made durable
 * with one fsync of the directory.
 */
static int journal_roll(struct journal *j, uint64_t seq)
{
    char name[SEGMENT_NAME_MAX];
    int fd;

    journal_segment_name(seq, name, sizeof(name));
    /* O_TRUNC is safe: seq > every stored seq, so a file of that name can
     * only be an empty leftover. */
    fd = journal_open_file(j, name, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND);
    if (fd < 0) {
        log_error("journal: %s/%s: cannot create: %s", j->dir, name,
                  journal_open_error(errno));
        return -1;
    }
    if (journal_add_segment(j, seq) != 0) {
        log_error("journal: %s: out of memory", j->dir);
        close(fd);
        unlinkat(j->dir_fd, name, 0);
        return -1;
    }
    if (j->fd >= 0) {
        if (j->dirty && fdatasync(j->fd) != 0)
            log_error("journal: %s: fdatasync failed: %s", j->dir,
                      strerror(errno));
        close(j->fd);
    }
    j->fd = fd;
    j->seg_size = 0;
    j->dirty = false;
    journal_fsync_dir(j);
    return 0;
}

/* Logs an append failure once until an append succeeds again. */
static void journal_fail(struct journal *j, const char *what, int errnum)
{
    if (!j->failing)
        log_error("journal: %s: %s: %s (further failures not logged until "
                  "a write succeeds)", j->dir, what, strerror(errnum));
    j->failing = true;
}

/* Cuts the current segment back to its last good record. */
static int journal_untear(struct journal *j)
{
    if (ftruncate(j->fd, (off_t)j->seg_size) != 0) {
        j->tail_torn = true;
        journal_fail(j, "cannot truncate a failed write", errno);
        return -1;
    }
    j->tail_torn = false;
    return 0;
}

/* Writes the len bytes of j->buf as one write(2); undoes a partial one. */
static int journal_write(struct journal *j, size_t len)
{
    ssize_t n;

    do {
        n = write(j->fd, j->buf, len);
    } while (n < 0 && errno == EINTR);
    if (n == (ssize_t)len)
        return 0;
    if (n < 0) {
        journal_fail(j, "write failed", errno);
        return -1;
    }
    /* A short write to a regular file means the disk or file size limit
     * was hit (ENOSPC, EFBIG): cut the partial record off. */
    journal_fail(j, "short write", ENOSPC);
    journal_untear(j);
    return -1;
}

int journal_append(struct journal *j, const struct message *msg,
                   const char *source)
{
    size_t len;

    /* Never append after an unchecked tail: it may end in a torn record. */
    if (!j->replayed && journal_replay(j, NULL, NULL) != 0)
        return -1;
    if (msg->seq <= j->last_seq || msg->seq > JOURNAL_SEQ_MAX) {
        log_error("journal: %s: seq %" PRIu64 " is not after %" PRIu64
                  " (or beyond the seq limit); not stored", j->dir, msg->seq,
                  j->last_seq);
        return -1;
    }
    if (j->tail_torn && journal_untear(j) != 0)
        return -1;
    len = journal_encode(j, msg, source != NULL ? source : "");
    if (len == 0)
        return -1;
    if ((j->fd < 0 || (j->seg_size > 0 &&
                       j->seg_size + len > JOURNAL_SEGMENT_BYTES)) &&
        journal_roll(j, msg->seq) != 0)
        return -1;
    if (journal_write(j, len) != 0)
        return -1;
    j->seg_size += len;
    j->last_seq = msg->seq;
    if (j->failing)
        log_info("journal: %s: writing again", j->dir);
    j->failing = false;
    if (j->fsync == FSYNC_BATCH)
        j->dirty = true;
    if (j->fsync == FSYNC_ALWAYS && fdatasync(j->fd) != 0) {
        journal_fail(j, "fdatasync failed", errno);
        return -1;
    }
    return 0;
}

void journal_sync(struct journal *j)
{
    if (!j->dirty || j->fd < 0)
        return;
    if (fdatasync(j->fd) != 0)
        log_error("journal: %s: fdatasync failed: %s", j->dir,
                  strerror(errno));
    j->dirty = false;
}

bool journal_dirty(const struct journal *j)
{
    return j->dirty;
}

/* ------------------------------------------------------------------ */
/* Trim and close                                                      */
/* ------------------------------------------------------------------ */

void journal_trim(struct journal *j, uint64_t first_seq)
{
    char name[SEGMENT_NAME_MAX];
    size_t drop = 0;

    /* Segment k holds seqs in [segs[k], segs[k+1]); the last is kept. */
    while (drop + 1 < j->nsegs && j->segs[drop + 1] <= first_seq) {
        journal_segment_name(j->segs[drop], name, sizeof(name));
        if (unlinkat(j->dir_fd, name, 0) != 0 && errno != ENOENT) {
            log_error("journal: %s/%s: cannot delete: %s", j->dir, name,
                      strerror(errno));
            break;
        }
        drop++;
    }
    if (drop == 0)
        return;
    j->nsegs -= drop;
    memmove(j->segs, j->segs + drop, j->nsegs * sizeof(*j->segs));
}

void journal_close(struct journal *j)
{
    if (j == NULL)
        return;
    journal_sync(j);
    if (j->fd >= 0)
        close(j->fd);
    if (j->lock_fd >= 0)
        close(j->lock_fd); /* releases the flock */
    if (j->dir_fd >= 0)
        close(j->dir_fd);
    free(j->segs);
    free(j->buf);
    free(j->dir);
    free(j);
}
