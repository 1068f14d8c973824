/*
 * gen_journal_seeds.c - writes the seed corpus of fuzz_journal: real
 * segments written by journal_append (in a private temp dir), wrapped in
 * fuzz_journal's input layout (flags, epoch length, epoch, segment bytes).
 *
 *   build-fuzz/tests/gen_journal_seeds tests/fuzz/corpus/journal
 *
 * Run by hand when the record format changes; the output is committed.
 */
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/journal.h"
#include "lib/message.h"

#define T0 INT64_C(1764000000000)

struct seed_msg {
    enum source_type type;
    const char *topic;
    const char *payload;
    size_t payload_len; /* 0: strlen */
    bool mqtt;
    bool retain;
    uint8_t qos;
    const char *entry_id;
};

/* Writes msgs with seqs first.. into a fresh journal; returns its only
 * segment's bytes (malloc'ed) in *len. */
static unsigned char *seed_segment(const struct seed_msg *msgs, size_t n,
                                   uint64_t first, size_t *len)
{
    char dir[] = "/tmp/gen_journal.XXXXXX", path[512], err[512];
    unsigned char *buf;
    struct journal *j;
    int64_t epoch;
    FILE *f;

    if (mkdtemp(dir) == NULL)
        exit(1);
    j = journal_open(dir, FSYNC_NEVER, T0, &epoch, err, sizeof(err));
    if (j == NULL || journal_replay(j, NULL, NULL) != 0) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        const struct seed_msg *s = &msgs[i];
        size_t plen = s->payload_len ? s->payload_len : strlen(s->payload);
        struct message *m = message_new(0, s->type, s->topic,
                                        strlen(s->topic), s->payload, plen,
                                        T0 + (int64_t)i);

        if (m == NULL)
            exit(1);
        m->has_mqtt = s->mqtt;
        m->retain = s->retain;
        m->qos = s->qos;
        if (s->entry_id != NULL && message_set_stream_entry_id(m, s->entry_id))
            exit(1);
        m->seq = first + i;
        if (journal_append(j, m, s->type == SOURCE_MQTT ? "plant" : "cache"))
            exit(1);
        message_unref(m);
    }
    journal_close(j);
    snprintf(path, sizeof(path), "%s/%020" PRIu64 ".log", dir, first);
    f = fopen(path, "rb");
    if (f == NULL)
        exit(1);
    buf = malloc(1 << 20);
    *len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    unlink(path);
    snprintf(path, sizeof(path), "%s/epoch", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/lock", dir);
    unlink(path);
    rmdir(dir);
    return buf;
}

static void seed_write(const char *out, const char *name, uint8_t flags,
                       const char *epoch, const unsigned char *seg,
                       size_t len)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", out, name);
    f = fopen(path, "wb");
    if (f == NULL)
        exit(1);
    fputc(flags, f);
    fputc((int)strlen(epoch), f);
    fputs(epoch, f);
    fwrite(seg, 1, len, f);
    fclose(f);
}

int main(int argc, char **argv)
{
    static const struct seed_msg redis[] = {
        {SOURCE_REDIS, "orders:eu", "{\"id\":1}", 0, false, false, 0, NULL},
        {SOURCE_REDIS, "orders:us", "plain text", 0, false, false, 0, NULL},
        {SOURCE_REDIS, "orders:eu", "\xff\xfe bin", 0, false, false, 0, NULL},
    };
    static const struct seed_msg mqtt[] = {
        {SOURCE_MQTT, "f/1/a/t", "21.5", 0, true, true, 1, NULL},
        {SOURCE_MQTT, "f/1/b/t", "", 0, true, false, 0, NULL},
        {SOURCE_MQTT, "f/2/a/t", "{\"v\":[1,2]}", 0, true, false, 2, NULL},
    };
    static const struct seed_msg stream[] = {
        {SOURCE_REDIS_STREAM, "audit", "{\"a\":\"1\"}", 0, false, false, 0,
         "1764000000000-0"},
        {SOURCE_REDIS_STREAM, "audit", "{\"a\":\"2\"}", 0, false, false, 0,
         "1764000000000-1"},
    };
    struct seed_msg many[12];
    unsigned char *seg;
    size_t len;

    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    seg = seed_segment(redis, 3, 1, &len);
    seed_write(argv[1], "redis", 0, "1764000000000\n", seg, len);
    seed_write(argv[1], "redis_fixcrc", 1, "1764000000000\n", seg, len);
    seed_write(argv[1], "torn_tail", 0, "1764000000000\n", seg, len - 17);
    seg[len - 3] ^= 0x40;
    seed_write(argv[1], "corrupt_byte", 0, "1764000000000\n", seg, len);
    free(seg);
    seg = seed_segment(mqtt, 3, 100, &len);
    seed_write(argv[1], "mqtt", 0, "1700000000000\n", seg, len);
    seed_write(argv[1], "mqtt_no_epoch", 4, "", seg, len);
    free(seg);
    seg = seed_segment(stream, 2, 7, &len);
    seed_write(argv[1], "stream_ids", 0, "1764000000000\n", seg, len);
    seed_write(argv[1], "stream_ids_name0", 8, "1764000000000\n", seg, len);
    free(seg);
    for (size_t i = 0; i < 12; i++)
        many[i] = (struct seed_msg){i % 3 == 0 ? SOURCE_MQTT : SOURCE_REDIS,
                                    i % 2 ? "a/b" : "c", "payload", 0,
                                    i % 3 == 0, false, 0, NULL};
    seg = seed_segment(many, 12, 1000, &len);
    seed_write(argv[1], "two_segments", 2, "1764000000000\n", seg, len);
    seed_write(argv[1], "two_segments_fixcrc", 3, "1764000000000\n", seg,
               len);
    free(seg);
    seed_write(argv[1], "empty", 0, "1764000000000\n", (const unsigned char *)"",
               0);
    seed_write(argv[1], "bad_epoch", 0, "-5x", (const unsigned char *)"", 0);
    return 0;
}
