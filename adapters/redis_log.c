/*
 * redis_log.c - the shared log in Redis; see redis_log.h for the keys,
 * the leases and the guarantees.
 *
 * Two redis_conn connections, each with a struct source of its own
 * ("history-read", "history-write") for its state and logs:
 * - the tail: HSETNX/HGET the tag, then XREVRANGE (load or check), then
 *   XREAD BLOCK from the last id read, one read outstanding at a time;
 * - the commands: the lease round (every ttl/3, one Lua call per source),
 *   the append batches (one in flight at a time, so that they land in
 *   queue order), and range reads.
 *
 * Hand-written rather than a library: nothing in Debian does leader
 * leases over hiredis; the scripts are short and each runs atomically in
 * Redis, which is what makes the fencing exact.
 */
#include "adapters/redis_log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "adapters/adapter.h"
#include "adapters/redis_conn.h"
#include "lib/history_key.h"
#include "lib/log.h"
#include "lib/message.h"

#define RL_KEY_MAX 160
#define RL_BATCH 256            /* entries per append call */
#define RL_XREAD_COUNT "512"
#define RL_BLOCK_MS 2000
#define RL_TAG_LEN 10
#define RL_WAIT_MS 1000         /* WAIT for a replica after an append, */
                                /* at most (see rl_wait_ms) */
#define RL_LOAD_PAGE 500        /* entries per XREVRANGE of the first load */

/* Acquire or renew: {1, epoch} still ours, {2, epoch} just taken, {0, 0}
 * another replica's. KEYS: lease, epoch. ARGV: token, ttl. */
static const char rl_lease_script[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if v == ARGV[1] then\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "  return {1, tonumber(redis.call('GET', KEYS[2]) or '0')}\n"
    "end\n"
    "if v then return {0, 0} end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "return {2, redis.call('INCR', KEYS[2])}\n";

/* Gives the lease up (a clean shutdown). KEYS: lease. ARGV: token. */
static const char rl_release_script[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  return redis.call('DEL', KEYS[1])\n"
    "end\n"
    "return 0\n";

/*
 * The fenced append. KEYS: lease, log, pos, meta. ARGV: token, maxlen,
 * minid ("" for none), n, then per entry: counter, position key ("" for
 * none), position id, number of field/value words, the words. Entries
 * whose counter is not above the stored ".n" were appended before (a
 * resend). Every entry gets "c", the log's own count of entries (meta
 * "seq"), so that a reader sees a gap: entries trimmed before it read
 * them.
 */
static const char rl_append_script[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then\n"
    "  return redis.error_reply('FENCED the lease is held elsewhere')\n"
    "end\n"
    "local last = tonumber(redis.call('HGET', KEYS[3], '.n') or '0')\n"
    "local seq = tonumber(redis.call('HGET', KEYS[4], 'seq') or '0')\n"
    "local i = 5\n"
    "local added = 0\n"
    "for e = 1, tonumber(ARGV[4]) do\n"
    "  local n = tonumber(ARGV[i])\n"
    "  local nf = tonumber(ARGV[i + 3])\n"
    "  if n > last then\n"
    "    local f = {}\n"
    "    for j = 1, nf do f[j] = ARGV[i + 3 + j] end\n"
    "    seq = seq + 1\n"
    "    f[nf + 1] = 'c'\n"
    "    f[nf + 2] = seq\n"
    "    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(f))\n"
    "    if ARGV[i + 1] ~= '' then\n"
    "      redis.call('HSET', KEYS[3], 'k:' .. ARGV[i + 1], ARGV[i + 2])\n"
    "    end\n"
    "    last = n\n"
    "    added = added + 1\n"
    "  end\n"
    "  i = i + 4 + nf\n"
    "end\n"
    "redis.call('HSET', KEYS[3], '.n', last)\n"
    "redis.call('HSET', KEYS[4], 'seq', seq)\n"
    "if ARGV[3] ~= '' then\n"
    "  redis.call('XTRIM', KEYS[2], 'MINID', '~', ARGV[3])\n"
    "end\n"
    "return added\n";

enum rl_role {
    RL_FOLLOWER,  /* another replica (or nobody yet) ingests */
    RL_LEADER,    /* this replica runs the adapter */
    RL_SUSPENDED, /* held it, but no renewal for a ttl: adapter stopped,
                     queue kept until the lease is back */
};

/* A stored read position of a redis-stream source: key -> entry id. */
struct rl_pos {
    char *key;
    char id[HISTORY_KEY_ID_MAX];
    struct rl_pos *next;
};

struct rl_source {
    char *name;                /* owned copy */
    enum source_type type;
    char lease_key[RL_KEY_MAX];
    char epoch_key[RL_KEY_MAX];
    char pos_key[RL_KEY_MAX];
    enum rl_role role;
    uint64_t epoch;            /* of the lease held (or last held) */
    int64_t renewed_ms;        /* when the last good renewal was sent */
    int64_t asked_ms;          /* when the pending lease call was sent */
    bool asking;               /* a lease call is outstanding */
    bool loading;              /* HGETALL of the positions outstanding */
    bool elsewhere;            /* the last lease call: another's */
    uint64_t counter;          /* the last append counter given out */
    struct rl_pos *positions;  /* owned */
};

/* One queued message. */
struct rl_item {
    struct message *msg;       /* one reference */
    uint64_t counter;
    struct rl_item *next;
};

struct redis_log {
    struct event_base *base;
    struct redis_log_sink sink;
    uint64_t max_events, max_bytes; /* history.*, copied */
    int64_t max_age_ms;

    /* Synthetic sources for the two connections (state, logs). */
    struct source_config tail_cfg, cmd_cfg; /* url owned by tail_cfg */
    struct source tail_src, cmd_src;
    struct redis_conn *tail, *cmd;

    char log_key[RL_KEY_MAX];
    char meta_key[RL_KEY_MAX];
    char token[33];            /* this process's lease token (hex) */
    int64_t ttl_ms;

    /* The tail. */
    char tag[HISTORY_KEY_TAG_MAX + 1]; /* "" until loaded */
    char last_id[HISTORY_KEY_ID_MAX];  /* last entry read */
    uint64_t last_count;       /* its "c" (0: none seen yet) */
    uint64_t gaps;             /* times entries were trimmed unread */
    bool loaded;               /* the first load is done */
    struct rl_loaded {
        struct message *msg;
        uint64_t count;
    } *load;                   /* the first load so far, newest first */
    size_t nload, load_cap;
    uint64_t load_bytes;
    bool reading;              /* an XREAD is outstanding */
    bool live;
    struct event *deadline;    /* XREAD's reply deadline */

    /* The commands. */
    struct rl_source *sources; /* owned; cfg->nsources */
    size_t nsources;
    struct event *lease_timer;
    struct event *flush_ev;    /* zero delay: send the next batch */
    struct rl_item *queue, **queue_tail;
    uint64_t queued_bytes;
    size_t inflight;           /* items at the queue's head being sent */
    int64_t wait_since;        /* when their WAIT began (monotonic ms) */
    bool cmd_was_up;           /* connected before: now a reconnect */
    bool wait_replica;         /* Sentinel: WAIT 1 after each append */
    int64_t acquire_after;     /* no lease taken anew before (mono ms) */

    uint64_t dropped, appended;
    size_t releasing;          /* lease releases not yet answered */
};

/* Wall clock: for MINID (entry ids are wall-clock ms). */
static int64_t rl_wall_ms(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Monotonic: for the lease's timing (a wall clock step must not make a
 * leader think its lease is still good). */
static int64_t rl_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void rl_timer_start(struct event *ev, int64_t ms)
{
    struct timeval tv = {.tv_sec = ms / 1000,
                         .tv_usec = (suseconds_t)(ms % 1000) * 1000};

    evtimer_add(ev, &tv);
}

/* Random lowercase base-36 text of len characters. 0, or -1. */
static int rl_random_text(char *out, size_t len, const char *alphabet,
                          size_t radix)
{
    unsigned char bytes[32];

    if (len > sizeof(bytes) ||
        getrandom(bytes, len, 0) != (ssize_t)len)
        return -1;
    for (size_t i = 0; i < len; i++)
        out[i] = alphabet[bytes[i] % radix];
    out[len] = '\0';
    return 0;
}

/* ---- the queue ---------------------------------------------------------- */

static void rl_item_free(struct redis_log *log, struct rl_item *it)
{
    log->queued_bytes -= message_size(it->msg);
    message_unref(it->msg);
    free(it);
}

/* Drops the queued items of source s (not those being sent: their reply
 * decides). Returns how many. */
static size_t rl_queue_drop_source(struct redis_log *log, uint32_t s)
{
    struct rl_item **link = &log->queue;
    size_t skip = log->inflight, n = 0;

    while (*link != NULL) {
        struct rl_item *it = *link;
        if (skip > 0) {
            skip--;
            link = &it->next;
            continue;
        }
        if (it->msg->source != s) {
            link = &it->next;
            continue;
        }
        *link = it->next;
        rl_item_free(log, it);
        n++;
    }
    log->queue_tail = link;
    log->dropped += n;
    return n;
}

/* Removes the first n items (a batch the server has answered). */
static void rl_queue_pop(struct redis_log *log, size_t n)
{
    while (n-- > 0 && log->queue != NULL) {
        struct rl_item *it = log->queue;
        log->queue = it->next;
        rl_item_free(log, it);
    }
    if (log->queue == NULL)
        log->queue_tail = &log->queue;
}

/* ---- positions ------------------------------------------------------------ */

static void rl_positions_free(struct rl_source *s)
{
    while (s->positions != NULL) {
        struct rl_pos *p = s->positions;
        s->positions = p->next;
        free(p->key);
        free(p);
    }
}

static int rl_position_set(struct rl_source *s, const char *key,
                           size_t keylen, const char *id, size_t idlen)
{
    struct rl_pos *p;

    if (idlen >= HISTORY_KEY_ID_MAX)
        return 0;
    for (p = s->positions; p != NULL; p = p->next)
        if (strlen(p->key) == keylen && memcmp(p->key, key, keylen) == 0)
            break;
    if (p == NULL) {
        if ((p = calloc(1, sizeof(*p))) == NULL ||
            (p->key = strndup(key, keylen)) == NULL) {
            free(p);
            return -1;
        }
        p->next = s->positions;
        s->positions = p;
    }
    memcpy(p->id, id, idlen);
    p->id[idlen] = '\0';
    return 0;
}

int redis_log_position(const struct redis_log *log, uint32_t source,
                       const char *key, char *out, size_t outlen)
{
    if (source >= log->nsources)
        return 0;
    for (const struct rl_pos *p = log->sources[source].positions; p != NULL;
         p = p->next) {
        if (strcmp(p->key, key) == 0) {
            snprintf(out, outlen, "%s", p->id);
            return 1;
        }
    }
    return 0;
}

/* ---- leadership ------------------------------------------------------------ */

static void rl_become(struct redis_log *log, uint32_t i, enum rl_role role)
{
    struct rl_source *s = &log->sources[i];
    bool was = s->role == RL_LEADER;

    if (s->role == role)
        return;
    s->role = role;
    if (role == RL_LEADER)
        log_info("history: ingest leader for source %s", s->name);
    else if (role == RL_SUSPENDED)
        log_warn("history: no lease renewal for source %s within %lld ms: "
                 "ingest paused until Redis answers", s->name,
                 (long long)log->ttl_ms);
    else
        log_info("history: lost the lease for source %s", s->name);
    if (was != (role == RL_LEADER))
        log->sink.leader(log->sink.ctx, i, role == RL_LEADER);
}

static void rl_flush_soon(struct redis_log *log)
{
    if (log->queue != NULL && log->inflight == 0)
        event_active(log->flush_ev, EV_TIMEOUT, 0);
}

/* HGETALL of a source's positions, after taking its lease afresh. */
static void rl_on_positions(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis_log *log = redis_conn_owner(ac);
    const redisReply *rep = reply;
    uint32_t i = (uint32_t)(uintptr_t)priv;
    struct rl_source *s;

    if (log == NULL || rep == NULL)
        return;
    s = &log->sources[i];
    s->loading = false;
    if (rep->type != REDIS_REPLY_ARRAY) {
        redis_conn_fail(log->cmd, "HGETALL of the read positions failed");
        return;
    }
    rl_positions_free(s);
    s->counter = 0;
    for (size_t j = 0; j + 1 < rep->elements; j += 2) {
        const redisReply *f = rep->element[j], *v = rep->element[j + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(f->str, ".n") == 0)
            s->counter = strtoull(v->str, NULL, 10);
        else if (f->len > 2 && memcmp(f->str, "k:", 2) == 0 &&
                 rl_position_set(s, f->str + 2, f->len - 2, v->str,
                                 v->len) < 0)
            log_error("history: out of memory loading positions of %s",
                      s->name);
    }
    rl_become(log, i, RL_LEADER);
    rl_flush_soon(log);
}

/* Loads the source's stored positions and counter; the reply makes this
 * replica its leader. */
static void rl_lease_load(struct redis_log *log, uint32_t i)
{
    struct rl_source *s = &log->sources[i];

    s->loading = true;
    if (redisAsyncCommand(redis_conn_context(log->cmd), rl_on_positions,
                          (void *)(uintptr_t)i, "HGETALL %s",
                          s->pos_key) != REDIS_OK)
        redis_conn_fail(log->cmd, "cannot queue HGETALL");
}

/* A lease taken anew with epoch `epoch`. */
static void rl_lease_taken(struct redis_log *log, uint32_t i, uint64_t epoch)
{
    struct rl_source *s = &log->sources[i];
    bool continued = s->role != RL_FOLLOWER && epoch == s->epoch + 1;
    size_t n;

    s->epoch = epoch;
    if (continued) {
        /* Nobody held it in between: what is queued may still go. */
        rl_become(log, i, RL_LEADER);
        rl_flush_soon(log);
        return;
    }
    if ((n = rl_queue_drop_source(log, i)) > 0)
        log_warn("history: source %s: %zu queued messages dropped: another "
                 "replica held the lease meanwhile", s->name, n);
    rl_lease_load(log, i);
}

static void rl_lease_lost(struct redis_log *log, uint32_t i)
{
    size_t n = rl_queue_drop_source(log, i);

    if (n > 0)
        log_warn("history: source %s: %zu queued messages dropped: the "
                 "lease is another replica's", log->sources[i].name, n);
    rl_become(log, i, RL_FOLLOWER);
}

static void rl_on_lease(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis_log *log = redis_conn_owner(ac);
    const redisReply *rep = reply;
    uint32_t i = (uint32_t)(uintptr_t)priv;
    struct rl_source *s;
    long long state, epoch;

    if (log == NULL || rep == NULL)
        return;
    s = &log->sources[i];
    s->asking = false;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
        rep->element[0]->type != REDIS_REPLY_INTEGER ||
        rep->element[1]->type != REDIS_REPLY_INTEGER) {
        redis_conn_fail(log->cmd, rep->type == REDIS_REPLY_ERROR
                                      ? "the lease script failed"
                                      : "unexpected reply to the lease");
        return;
    }
    state = rep->element[0]->integer;
    epoch = rep->element[1]->integer;
    s->elsewhere = state == 0;
    if (state == 0) {
        if (s->role != RL_FOLLOWER)
            rl_lease_lost(log, i);
        return;
    }
    s->renewed_ms = s->asked_ms;
    if (state == 2)
        rl_lease_taken(log, i, (uint64_t)epoch);
    else if (s->role == RL_FOLLOWER)
        rl_lease_load(log, i); /* ours, but its load was cut short */
    else if (s->role == RL_SUSPENDED)
        rl_become(log, i, RL_LEADER);
    if (s->role == RL_LEADER)
        rl_flush_soon(log);
}

/* One lease round: renew what is held, try to take what is free. */
static void rl_lease_round(struct redis_log *log)
{
    redisAsyncContext *ac = redis_conn_context(log->cmd);
    char ttl[24];
    int64_t now = rl_mono_ms();

    snprintf(ttl, sizeof(ttl), "%lld", (long long)log->ttl_ms);
    for (uint32_t i = 0; i < log->nsources; i++) {
        struct rl_source *s = &log->sources[i];

        if (s->role == RL_LEADER && now - s->renewed_ms > log->ttl_ms)
            rl_become(log, i, RL_SUSPENDED);
        if (ac == NULL || !redis_conn_is_up(log->cmd) || s->asking ||
            s->loading || !log->loaded)
            continue;
        if (s->role == RL_FOLLOWER && now < log->acquire_after)
            continue; /* see rl_cmd_ready */
        if (redisAsyncCommand(ac, rl_on_lease, (void *)(uintptr_t)i,
                              "EVAL %s 2 %s %s %s %s", rl_lease_script,
                              s->lease_key, s->epoch_key, log->token,
                              ttl) != REDIS_OK) {
            redis_conn_fail(log->cmd, "cannot queue the lease call");
            return;
        }
        s->asking = true;
        s->asked_ms = now;
    }
}

static void rl_on_lease_timer(evutil_socket_t fd, short what, void *arg)
{
    struct redis_log *log = arg;

    rl_lease_round(log);
    rl_timer_start(log->lease_timer, log->ttl_ms / 3);
}

/* ---- appending --------------------------------------------------------------- */

/* The words of one entry: counter, position key and id, field count,
 * fields. Fills argv/lens from *argc on; bufs holds the numbers. */
struct rl_words {
    const char **argv;
    size_t *lens;
    size_t argc;
    char (*nums)[24];
    size_t nnums;
};

static void rl_word(struct rl_words *w, const char *s, size_t len)
{
    w->argv[w->argc] = s;
    w->lens[w->argc] = len;
    w->argc++;
}

static void rl_word_num(struct rl_words *w, uint64_t v)
{
    char *buf = w->nums[w->nnums++];

    rl_word(w, buf, (size_t)snprintf(buf, 24, "%" PRIu64, v));
}

/* The words of one entry (see rl_append_script); the source's name is
 * `name`. */
static void rl_words_entry(struct rl_words *w, const struct rl_item *it,
                           const char *name)
{
    const struct message *m = it->msg;
    unsigned nfields = 8 + (m->has_mqtt ? 4 : 0) +
                       (m->stream_entry_id != NULL ? 2 : 0);

    rl_word_num(w, it->counter);
    if (m->stream_entry_id != NULL) {
        rl_word(w, m->topic, m->topic_len);
        rl_word(w, m->stream_entry_id, strlen(m->stream_entry_id));
    } else {
        rl_word(w, "", 0);
        rl_word(w, "", 0);
    }
    rl_word_num(w, nfields);
    rl_word(w, "s", 1);
    rl_word(w, name, strlen(name));
    rl_word(w, "t", 1);
    rl_word(w, m->topic, m->topic_len);
    rl_word(w, "p", 1);
    rl_word(w, m->payload, m->payload_len);
    rl_word(w, "ts", 2);
    rl_word_num(w, (uint64_t)m->time_ms);
    if (m->has_mqtt) {
        rl_word(w, "q", 1);
        rl_word_num(w, m->qos);
        rl_word(w, "r", 1);
        rl_word(w, m->retain ? "1" : "0", 1);
    }
    if (m->stream_entry_id != NULL) {
        rl_word(w, "e", 1);
        rl_word(w, m->stream_entry_id, strlen(m->stream_entry_id));
    }
}

static void rl_on_appended(redisAsyncContext *ac, void *reply, void *priv);
static void rl_on_replicated(redisAsyncContext *ac, void *reply, void *priv);

/*
 * How long one WAIT may hold the command connection: a lease renewal
 * queued behind it must still reach Redis before the lease expires.
 * Renewals go every ttl/3, so a WAIT of at most ttl/3 keeps the next one
 * within 2/3 of the ttl (at most one append and its WAIT are in flight).
 * A batch not yet replicated waits again, in turns of this length, up to
 * RL_WAIT_MS in all (rl_on_replicated).
 */
static long long rl_wait_ms(const struct redis_log *log)
{
    long long third = log->ttl_ms / 3;

    return third < RL_WAIT_MS ? (third > 0 ? third : 1) : RL_WAIT_MS;
}

/* Sends the batch at the queue's head: consecutive items of one source
 * this replica leads. */
static void rl_flush(struct redis_log *log)
{
    /* Words: EVAL, the script, 4, four keys, four arguments; per entry
     * at most 4 + 7 field/value pairs, with at most 4 numbers. */
    enum { FIXED_WORDS = 11, ENTRY_WORDS = 4 + 2 * 7, ENTRY_NUMS = 4 };
    const char **argv = NULL;
    size_t *lens = NULL;
    char (*nums)[24] = NULL;
    struct rl_words w;
    struct rl_source *s;
    struct rl_item *it;
    char maxlen[24], minid[32] = "", count[24];
    size_t n = 0;
    uint32_t src;

    if (log->queue == NULL || log->inflight > 0 ||
        redis_conn_context(log->cmd) == NULL ||
        !redis_conn_is_up(log->cmd))
        return;
    src = log->queue->msg->source;
    s = &log->sources[src];
    if (s->role != RL_LEADER)
        return; /* suspended, or loading: the lease reply calls again */
    for (it = log->queue; it != NULL && n < RL_BATCH && it->msg->source == src;
         it = it->next)
        n++;
    argv = calloc(FIXED_WORDS + n * ENTRY_WORDS, sizeof(*argv));
    lens = calloc(FIXED_WORDS + n * ENTRY_WORDS, sizeof(*lens));
    nums = calloc(n * ENTRY_NUMS, sizeof(*nums));
    if (argv == NULL || lens == NULL || nums == NULL)
        goto out;
    w = (struct rl_words){argv, lens, 0, nums, 0};
    snprintf(maxlen, sizeof(maxlen), "%" PRIu64, log->max_events);
    if (log->max_age_ms > 0)
        snprintf(minid, sizeof(minid), "%lld-0",
                 (long long)(rl_wall_ms() - log->max_age_ms));
    snprintf(count, sizeof(count), "%zu", n);
    rl_word(&w, "EVAL", 4);
    rl_word(&w, rl_append_script, sizeof(rl_append_script) - 1);
    rl_word(&w, "4", 1);
    rl_word(&w, s->lease_key, strlen(s->lease_key));
    rl_word(&w, log->log_key, strlen(log->log_key));
    rl_word(&w, s->pos_key, strlen(s->pos_key));
    rl_word(&w, log->meta_key, strlen(log->meta_key));
    rl_word(&w, log->token, strlen(log->token));
    rl_word(&w, maxlen, strlen(maxlen));
    rl_word(&w, minid, strlen(minid));
    rl_word(&w, count, strlen(count));
    it = log->queue;
    for (size_t k = 0; k < n; k++, it = it->next)
        rl_words_entry(&w, it, s->name);
    if (redisAsyncCommandArgv(redis_conn_context(log->cmd), rl_on_appended,
                              (void *)(uintptr_t)n, (int)w.argc, argv,
                              lens) != REDIS_OK ||
        (log->wait_replica &&
         redisAsyncCommand(redis_conn_context(log->cmd), rl_on_replicated,
                           NULL, "WAIT 1 %lld", rl_wait_ms(log)) !=
             REDIS_OK)) {
        redis_conn_fail(log->cmd, "cannot queue an append");
        goto out;
    }
    log->inflight = n;
    log->wait_since = rl_mono_ms();
out:
    free(argv);
    free(lens);
    free(nums);
}

static void rl_on_flush(evutil_socket_t fd, short what, void *arg)
{
    rl_flush(arg);
}

static void rl_on_appended(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis_log *log = redis_conn_owner(ac);
    const redisReply *rep = reply;
    size_t n = (size_t)(uintptr_t)priv;
    uint32_t src;

    if (log == NULL || rep == NULL)
        return;
    log->inflight = 0;
    if (log->queue == NULL)
        return;
    src = log->queue->msg->source;
    if (rep->type == REDIS_REPLY_ERROR &&
        strncmp(rep->str, "FENCED", 6) == 0) {
        /* Deposed: nothing of this batch went in; neither will the rest. */
        rl_queue_pop(log, n);
        log->dropped += n;
        rl_lease_lost(log, src);
        rl_flush_soon(log);
        return;
    }
    if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "ERR", 3) == 0) {
        /* The command itself is refused (a Redis without XTRIM MINID,
         * < 6.2): sending it again cannot help. */
        log_limited(LOG_ERROR, 10000, "history: append refused, %zu "
                    "messages dropped: %s", n,
                    redis_conn_error_text(log->cmd, rep->str));
        rl_queue_pop(log, n);
        log->dropped += n;
        rl_flush_soon(log);
        return;
    }
    if (rep->type != REDIS_REPLY_INTEGER) {
        char text[REDIS_CONN_TEXT_MAX];
        /* LOADING, READONLY (a replica after a failover), BUSY...: the
         * batch is sent again after the reconnect. */
        snprintf(text, sizeof(text), "append failed: %s",
                 rep->type == REDIS_REPLY_ERROR
                     ? redis_conn_error_text(log->cmd, rep->str)
                     : "unexpected reply");
        redis_conn_fail(log->cmd, text);
        return;
    }
    log->appended += (uint64_t)rep->integer;
    if (log->wait_replica) {
        log->inflight = n; /* popped when a replica has it too */
        return;
    }
    rl_queue_pop(log, n);
    rl_flush_soon(log);
}

/*
 * WAIT 1 after an append (with Sentinel): the batch is popped only once a
 * replica has it (or after RL_WAIT_MS, logged), so a failover right after
 * the append does not lose what the master acknowledged: the batch is
 * sent again to the new master, and its counters skip what did arrive.
 * The wait goes in turns (rl_wait_ms), so lease renewals get through.
 */
static void rl_on_replicated(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis_log *log = redis_conn_owner(ac);
    const redisReply *rep = reply;

    if (log == NULL || rep == NULL || log->inflight == 0)
        return; /* the append failed: handled there */
    if (rep->type != REDIS_REPLY_INTEGER || rep->integer < 1) {
        if (rl_mono_ms() - log->wait_since < RL_WAIT_MS) {
            if (redisAsyncCommand(ac, rl_on_replicated, NULL, "WAIT 1 %lld",
                                  rl_wait_ms(log)) != REDIS_OK)
                redis_conn_fail(log->cmd, "cannot queue WAIT");
            return;
        }
        log_limited(LOG_WARN, 10000, "history: an append reached no replica "
                    "within %d ms (a failover now would lose it)",
                    RL_WAIT_MS);
    }
    rl_queue_pop(log, log->inflight);
    log->inflight = 0;
    rl_flush_soon(log);
}

int redis_log_append(struct redis_log *log, struct message *msg)
{
    struct rl_source *s;
    struct rl_item *it;

    if (msg->source >= log->nsources)
        goto drop;
    s = &log->sources[msg->source];
    if (s->role == RL_FOLLOWER)
        goto drop;
    if (log->queued_bytes + message_size(msg) > log->max_bytes) {
        log_limited(LOG_WARN, 10000,
                    "history: source %s: the append queue is full "
                    "(max_bytes %" PRIu64 "): messages dropped", s->name,
                    log->max_bytes);
        goto drop;
    }
    if ((it = calloc(1, sizeof(*it))) == NULL)
        goto drop;
    it->msg = msg;
    it->counter = ++s->counter;
    if (msg->stream_entry_id != NULL)
        rl_position_set(s, msg->topic, msg->topic_len, msg->stream_entry_id,
                        strlen(msg->stream_entry_id));
    *log->queue_tail = it;
    log->queue_tail = &it->next;
    log->queued_bytes += message_size(msg);
    rl_flush_soon(log);
    return 0;
drop:
    log->dropped++;
    message_unref(msg);
    return -1;
}

/* ---- entries -> messages -------------------------------------------------------- */

static uint32_t rl_source_index(const struct redis_log *log, const char *name,
                                size_t len)
{
    for (uint32_t i = 0; i < log->nsources; i++)
        if (strlen(log->sources[i].name) == len &&
            memcmp(log->sources[i].name, name, len) == 0)
            return i;
    return UINT32_MAX;
}

static bool rl_field_is(const redisReply *f, const char *name)
{
    return f->len == strlen(name) && memcmp(f->str, name, f->len) == 0;
}

/* One [id, [field, value, ...]] of the log as a message with seq set,
 * and its "c" (the log's count at it; 0 without) in *count. NULL when it
 * is not one (or on ENOMEM). */
static struct message *rl_message(const struct redis_log *log,
                                  const redisReply *entry, uint64_t *pos,
                                  uint64_t *count)
{
    const redisReply *id, *fields, *topic = NULL, *payload = NULL,
                                   *eid = NULL;
    uint32_t source = UINT32_MAX;
    int64_t time_ms = 0;
    int qos = -1, retain = 0;
    struct message *msg;

    *count = 0;
    if (entry->type != REDIS_REPLY_ARRAY || entry->elements < 2 ||
        entry->element[0]->type != REDIS_REPLY_STRING ||
        entry->element[1]->type != REDIS_REPLY_ARRAY)
        return NULL;
    id = entry->element[0];
    fields = entry->element[1];
    if (!history_key_parse_id(id->str, id->len, pos) || *pos == 0)
        return NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *f = fields->element[i], *v = fields->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (rl_field_is(f, "s"))
            source = rl_source_index(log, v->str, v->len);
        else if (rl_field_is(f, "t"))
            topic = v;
        else if (rl_field_is(f, "p"))
            payload = v;
        else if (rl_field_is(f, "ts"))
            time_ms = strtoll(v->str, NULL, 10);
        else if (rl_field_is(f, "q"))
            qos = atoi(v->str);
        else if (rl_field_is(f, "r"))
            retain = v->str[0] == '1';
        else if (rl_field_is(f, "e"))
            eid = v;
        else if (rl_field_is(f, "c"))
            *count = strtoull(v->str, NULL, 10);
    }
    if (topic == NULL)
        return NULL;
    msg = message_new(source,
                      source < log->nsources ? log->sources[source].type
                                             : SOURCE_REDIS,
                      topic->str, topic->len,
                      payload ? payload->str : "", payload ? payload->len : 0,
                      time_ms);
    if (msg == NULL)
        return NULL;
    msg->seq = *pos;
    if (qos >= 0) {
        msg->has_mqtt = true;
        msg->qos = (uint8_t)qos;
        msg->retain = retain;
    }
    if (eid != NULL && message_set_stream_entry_id(msg, eid->str) < 0) {
        message_unref(msg);
        return NULL;
    }
    return msg;
}

/* ---- range reads ---------------------------------------------------------------- */

static void rl_on_range(redisAsyncContext *ac, void *reply, void *priv)
{
    struct history_key_fetch *fetch = priv;
    struct redis_log *log = redis_conn_owner(ac);
    const redisReply *rep = reply;
    struct message **msgs = NULL;
    size_t n = 0;
    bool ok = log != NULL && rep != NULL && rep->type == REDIS_REPLY_ARRAY;
    uint64_t pos, count;

    if (ok && rep->elements > 0 &&
        (msgs = calloc(rep->elements, sizeof(*msgs))) == NULL)
        ok = false;
    for (size_t i = 0; ok && i < rep->elements; i++) {
        struct message *msg = rl_message(log, rep->element[i], &pos, &count);
        if (msg != NULL)
            msgs[n++] = msg;
    }
    history_key_fetch_done(fetch, msgs, n, ok);
    free(msgs);
}

int redis_log_range(void *ctx, const char *key, const char *after_id,
                    bool inclusive, const char *until_id, size_t count,
                    struct history_key_fetch *fetch)
{
    struct redis_log *log = ctx;
    redisAsyncContext *ac = redis_conn_context(log->cmd);
    char start[HISTORY_KEY_ID_MAX + 1];

    if (ac == NULL || !redis_conn_is_up(log->cmd))
        return -1;
    snprintf(start, sizeof(start), "%s%s",
             after_id != NULL && !inclusive ? "(" : "",
             after_id != NULL ? after_id : "-");
    return redisAsyncCommand(ac, rl_on_range, fetch,
                             "XRANGE %s %s %s COUNT %llu", key, start,
                             until_id, (unsigned long long)count) == REDIS_OK
               ? 0
               : -1;
}

/* ---- the tail ------------------------------------------------------------------ */

static void rl_set_live(struct redis_log *log, bool live)
{
    if (log->live == live)
        return;
    log->live = live;
    log->sink.live(log->sink.ctx, live);
}

/* Entry `count` follows last_count: a jump means entries were trimmed
 * before this replica read them (it fell behind by max_events). */
static void rl_check_count(struct redis_log *log, uint64_t count,
                           uint64_t pos)
{
    uint64_t last_pos = 0;

    if (count == 0)
        return;
    if (log->last_count != 0 && count > log->last_count + 1) {
        history_key_parse_id(log->last_id, strlen(log->last_id), &last_pos);
        log_warn("history: %llu entries of the log were trimmed before "
                 "this replica read them (max_events too small for the "
                 "rate, or the replica was stalled): its streams start "
                 "over from a reset",
                 (unsigned long long)(count - log->last_count - 1));
        log->gaps++;
        log->sink.gap(log->sink.ctx, last_pos, pos);
    }
    log->last_count = count;
}

/* Delivers the entries of an XREAD / XRANGE array (oldest first). */
static void rl_deliver(struct redis_log *log, const redisReply *entries)
{
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        uint64_t pos, count;
        struct message *msg = rl_message(log, e, &pos, &count);

        if (msg != NULL)
            rl_check_count(log, count, pos);
        if (e->type == REDIS_REPLY_ARRAY && e->elements >= 1 &&
            e->element[0]->type == REDIS_REPLY_STRING &&
            e->element[0]->len < sizeof(log->last_id))
            snprintf(log->last_id, sizeof(log->last_id), "%s",
                     e->element[0]->str);
        if (msg != NULL)
            log->sink.entry(log->sink.ctx, msg);
    }
}

static void rl_read_next(struct redis_log *log);

static void rl_on_xread(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis_log *log = redis_conn_owner(ac);
    const redisReply *rep = reply;

    if (log == NULL || rep == NULL)
        return;
    log->reading = false;
    evtimer_del(log->deadline);
    if (rep->type == REDIS_REPLY_ERROR) {
        char text[REDIS_CONN_TEXT_MAX];
        snprintf(text, sizeof(text), "XREAD failed: %s",
                 redis_conn_error_text(log->tail, rep->str));
        redis_conn_fail(log->tail, text);
        return;
    }
    /* [[key, [entry, ...]]], or nil when BLOCK ran out. */
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 &&
        rep->element[0]->type == REDIS_REPLY_ARRAY &&
        rep->element[0]->elements == 2 &&
        rep->element[0]->element[1]->type == REDIS_REPLY_ARRAY)
        rl_deliver(log, rep->element[0]->element[1]);
    rl_read_next(log);
}

static void rl_read_next(struct redis_log *log)
{
    char block[24];

    snprintf(block, sizeof(block), "%d", RL_BLOCK_MS);
    if (redisAsyncCommand(redis_conn_context(log->tail), rl_on_xread, NULL,
                          "XREAD COUNT %s BLOCK %s STREAMS %s %s",
                          RL_XREAD_COUNT, block, log->log_key,
                          log->last_id) != REDIS_OK) {
        redis_conn_fail(log->tail, "cannot queue XREAD");
        return;
    }
    log->reading = true;
    rl_timer_start(log->deadline, RL_BLOCK_MS + 5000);
}

/* The tail is where it should be: read on, live. */
static void rl_tail_up(struct redis_log *log)
{
    bool first = !log->loaded;

    log->loaded = true;
    redis_conn_mark_up(log->tail);
    rl_set_live(log, true);
    rl_read_next(log);
    if (first)
        rl_lease_round(log); /* do not wait a third of a ttl */
}

/* ---- the first load: the newest entries, in pages, newest first, up to
 * max_events and max_bytes (what the cache can hold), then handed on
 * oldest first. Older entries are read on demand (redis_log_range). */

static void rl_load_clear(struct redis_log *log)
{
    for (size_t i = 0; i < log->nload; i++)
        message_unref(log->load[i].msg);
    free(log->load);
    log->load = NULL;
    log->nload = log->load_cap = 0;
    log->load_bytes = 0;
}

/* Keeps one page's entries; false when the bounds are reached (or on
 * ENOMEM, which ends the load early: the rest is read on demand). */
static bool rl_load_page(struct redis_log *log, const redisReply *rep)
{
    for (size_t i = 0; i < rep->elements; i++) {
        uint64_t pos, count;
        struct message *msg = rl_message(log, rep->element[i], &pos, &count);

        if (msg == NULL)
            continue;
        if (log->nload == log->load_cap) {
            size_t cap = log->load_cap ? 2 * log->load_cap : RL_LOAD_PAGE;
            void *grown = realloc(log->load, cap * sizeof(*log->load));
            if (grown == NULL) {
                message_unref(msg);
                return false;
            }
            log->load = grown;
            log->load_cap = cap;
        }
        log->load[log->nload].msg = msg;
        log->load[log->nload].count = count;
        log->nload++;
        log->load_bytes += message_size(msg);
        if (log->nload >= log->max_events ||
            log->load_bytes >= log->max_bytes)
            return false;
    }
    return rep->elements == RL_LOAD_PAGE;
}

/* Hands the loaded entries on, oldest first; the tail reads after them. */
static void rl_load_finish(struct redis_log *log)
{
    for (size_t i = log->nload; i-- > 0;) {
        struct message *msg = log->load[i].msg;
        rl_check_count(log, log->load[i].count, msg->seq);
        history_key_format_pos(msg->seq, log->last_id, sizeof(log->last_id));
        log->load[i].msg = NULL;
        log->sink.entry(log->sink.ctx, msg);
    }
    log->nload = 0;
    rl_load_clear(log);
}

static void rl_on_load(redisAsyncContext *ac, void *reply, void *priv);

/* Asks for the next page: entries before `before` (NULL: the newest). */
static void rl_load_next(struct redis_log *log, const char *before)
{
    char end[HISTORY_KEY_ID_MAX + 1];

    snprintf(end, sizeof(end), "%s%s", before ? "(" : "", before ? before
                                                                 : "+");
    if (redisAsyncCommand(redis_conn_context(log->tail), rl_on_load, NULL,
                          "XREVRANGE %s %s - COUNT %d", log->log_key, end,
                          RL_LOAD_PAGE) != REDIS_OK)
        redis_conn_fail(log->tail, "cannot queue XREVRANGE");
}

static void rl_tail_up(struct redis_log *log);

static void rl_on_load(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis_log *log = redis_conn_owner(ac);
    const redisReply *rep = reply;
    char before[HISTORY_KEY_ID_MAX];

    if (log == NULL || rep == NULL)
        return;
    if (rep->type != REDIS_REPLY_ARRAY) {
        redis_conn_fail(log->tail, "XREVRANGE of the log failed");
        return;
    }
    if (rl_load_page(log, rep) && log->nload > 0) {
        history_key_format_pos(log->load[log->nload - 1].msg->seq, before,
                               sizeof(before));
        rl_load_next(log, before);
        return;
    }
    rl_load_finish(log);
    rl_tail_up(log);
}

/* The log lost what this replica read after `kept` (0: all of it). */
static void rl_rolled_back(struct redis_log *log, uint64_t kept,
                           uint64_t kept_count)
{
    log_warn("history: the log in Redis no longer holds the last entry "
             "read (%s): a failover lost its tail; ids after it are "
             "unknown", log->last_id);
    history_key_format_pos(kept, log->last_id, sizeof(log->last_id));
    log->last_count = kept_count;
    log->sink.rolled_back(log->sink.ctx, kept);
}

/* The first entry of an XRANGE / XREVRANGE reply: its position and "c"
 * (both 0 when there is none or it cannot be read). */
static void rl_first_entry(struct redis_log *log, const redisReply *rep,
                           uint64_t *pos, uint64_t *count)
{
    struct message *m;

    *pos = 0;
    *count = 0;
    if (rep->elements == 0)
        return;
    m = rl_message(log, rep->element[0], pos, count);
    if (m != NULL)
        message_unref(m);
}

/* After rl_on_check found no entry at or before our last id: the log was
 * trimmed past us (its newest entries count on from ours; the gap shows
 * on the next read) or lost everything we read. */
static void rl_on_check_newest(redisAsyncContext *ac, void *reply,
                               void *priv)
{
    struct redis_log *log = redis_conn_owner(ac);
    const redisReply *rep = reply;
    uint64_t newest, newest_count;

    if (log == NULL || rep == NULL)
        return;
    if (rep->type != REDIS_REPLY_ARRAY) {
        redis_conn_fail(log->tail, "XREVRANGE of the log failed");
        return;
    }
    rl_first_entry(log, rep, &newest, &newest_count);
    if (newest_count <= log->last_count)
        rl_rolled_back(log, 0, 0);
    rl_tail_up(log);
}

/*
 * XREVRANGE KEY LAST - COUNT 1 after a reconnect: is the last entry this
 * replica read still in the log? Trimming removes the oldest entries
 * first, so when it is gone while an older one is there, a failover lost
 * the log's tail, whatever was appended since (a leader may well have
 * appended again before this check: comparing the log's newest id with
 * ours would miss that). The older entry is where the log and what this
 * replica read still agree. Assumes entry ids keep growing across a
 * failover (the new master's clock not behind the old one's).
 */
static void rl_on_check(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis_log *log = redis_conn_owner(ac);
    const redisReply *rep = reply;
    uint64_t found, found_count, last = 0;

    if (log == NULL || rep == NULL)
        return;
    if (rep->type != REDIS_REPLY_ARRAY) {
        redis_conn_fail(log->tail, "XREVRANGE of the log failed");
        return;
    }
    rl_first_entry(log, rep, &found, &found_count);
    if (rep->elements == 0) {
        if (redisAsyncCommand(ac, rl_on_check_newest, NULL,
                              "XREVRANGE %s + - COUNT 1", log->log_key) !=
            REDIS_OK)
            redis_conn_fail(log->tail, "cannot queue XREVRANGE");
        return;
    }
    history_key_parse_id(log->last_id, strlen(log->last_id), &last);
    if (found < last)
        rl_rolled_back(log, found, found_count);
    rl_tail_up(log);
}

static void rl_on_tag(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis_log *log = redis_conn_owner(ac);
    const redisReply *rep = reply;
    uint64_t last = 0;
    bool changed;

    if (log == NULL || rep == NULL)
        return;
    if (rep->type != REDIS_REPLY_STRING || rep->len == 0 ||
        rep->len > HISTORY_KEY_TAG_MAX) {
        redis_conn_fail(log->tail, "cannot read the log's tag");
        return;
    }
    changed = log->tag[0] != '\0' && strcmp(log->tag, rep->str) != 0;
    if (log->tag[0] == '\0' || changed) {
        if (changed)
            log_warn("history: the log in Redis was recreated (tag %s, was "
                     "%s): every earlier id is unknown", rep->str, log->tag);
        snprintf(log->tag, sizeof(log->tag), "%s", rep->str);
        log->sink.tagged(log->sink.ctx, log->tag, changed);
    }
    if (changed) {
        /* A new log: read it from its start. */
        snprintf(log->last_id, sizeof(log->last_id), "0-0");
        log->last_count = 0;
        rl_tail_up(log);
        return;
    }
    if (!log->loaded) {
        rl_load_clear(log); /* a load cut short by a reconnect */
        rl_load_next(log, NULL);
        return;
    }
    if (!history_key_parse_id(log->last_id, strlen(log->last_id), &last) ||
        last == 0) {
        rl_tail_up(log); /* nothing read yet: nothing to lose */
        return;
    }
    if (redisAsyncCommand(ac, rl_on_check, NULL, "XREVRANGE %s %s - COUNT 1",
                          log->log_key, log->last_id) != REDIS_OK)
        redis_conn_fail(log->tail, "cannot queue XREVRANGE");
}

static void rl_ignore_reply(redisAsyncContext *ac, void *reply, void *priv)
{
}

/* redis_conn_ops.ready of the tail: make sure the log has a tag, read
 * it, then load or check, then read on. */
static void rl_tail_ready(void *owner)
{
    struct redis_log *log = owner;
    redisAsyncContext *ac = redis_conn_context(log->tail);
    char tag[RL_TAG_LEN + 1];

    if (rl_random_text(tag, RL_TAG_LEN, "0123456789abcdefghijklmnopqrstuvwxyz",
                       36) < 0 ||
        redisAsyncCommand(ac, rl_ignore_reply, NULL, "HSETNX %s tag %s",
                          log->meta_key, tag) != REDIS_OK ||
        redisAsyncCommand(ac, rl_on_tag, NULL, "HGET %s tag",
                          log->meta_key) != REDIS_OK)
        redis_conn_fail(log->tail, "cannot queue the tag commands");
}

static void rl_tail_lost(void *owner)
{
    struct redis_log *log = owner;

    log->reading = false;
    evtimer_del(log->deadline);
    rl_set_live(log, false);
}

/* While an XREAD is outstanding it is the probe (it answers within
 * BLOCK; its deadline drops a silent server). */
static int rl_tail_keepalive(void *owner)
{
    struct redis_log *log = owner;

    return log->reading ? 0 : redis_conn_ping(log->tail);
}

static void rl_on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct redis_log *log = arg;

    redis_conn_fail(log->tail, "no reply to XREAD within its deadline");
}

static const struct redis_conn_ops rl_tail_ops = {
    .ready = rl_tail_ready,
    .lost = rl_tail_lost,
    .keepalive = rl_tail_keepalive,
};

/* ---- the command connection ---------------------------------------------------------- */

/* The PING of a new command connection: the server takes commands. */
static void rl_on_cmd_hello(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis_log *log = redis_conn_owner(ac);
    const redisReply *rep = reply;

    if (log == NULL || rep == NULL)
        return;
    if (rep->type == REDIS_REPLY_ERROR) {
        char text[REDIS_CONN_TEXT_MAX];
        snprintf(text, sizeof(text), "PING failed: %s",
                 redis_conn_error_text(log->cmd, rep->str));
        redis_conn_fail(log->cmd, text);
        return;
    }
    redis_conn_mark_up(log->cmd);
    if (log->cmd_was_up)
        log->acquire_after = rl_mono_ms() + 2 * log->ttl_ms;
    log->cmd_was_up = true;
    if (log->loaded)
        rl_lease_round(log);
}

/* A reconnect (Redis restarted or failed over) holds back this replica's
 * attempts to take leases it does not hold for two ttl: the leader of
 * before, reconnecting too, takes its lease back first and appends what
 * it kept meanwhile, instead of losing it to whoever is first. */
static void rl_cmd_ready(void *owner)
{
    struct redis_log *log = owner;

    if (redisAsyncCommand(redis_conn_context(log->cmd), rl_on_cmd_hello,
                          NULL, "PING") != REDIS_OK)
        redis_conn_fail(log->cmd, "cannot queue PING");
}

/* Everything outstanding is gone with the connection: the batch in
 * flight is resent (its counters make that safe), the lease calls are
 * asked again, a positions load is redone by the next lease round. */
static void rl_cmd_lost(void *owner)
{
    struct redis_log *log = owner;

    log->inflight = 0;
    log->releasing = 0;
    for (size_t i = 0; i < log->nsources; i++) {
        log->sources[i].asking = false;
        log->sources[i].loading = false;
    }
}

static const struct redis_conn_ops rl_cmd_ops = {
    .ready = rl_cmd_ready,
    .lost = rl_cmd_lost,
};

/* ---- the public part -------------------------------------------------------------- */

bool redis_log_up(const struct redis_log *log)
{
    return log->loaded && log->live && redis_conn_is_up(log->cmd);
}

const char *redis_log_status(const struct redis_log *log)
{
    if (redis_log_up(log))
        return "";
    if (!redis_conn_is_up(log->tail))
        return log->tail_src.status;
    if (!redis_conn_is_up(log->cmd))
        return log->cmd_src.status;
    return "loading the log";
}

bool redis_log_leads(const struct redis_log *log, uint32_t source)
{
    return source < log->nsources &&
           log->sources[source].role == RL_LEADER;
}

bool redis_log_led_elsewhere(const struct redis_log *log, uint32_t source)
{
    return source < log->nsources && log->sources[source].elsewhere &&
           redis_log_up(log);
}

uint64_t redis_log_dropped(const struct redis_log *log)
{
    return log->dropped;
}

uint64_t redis_log_gaps(const struct redis_log *log)
{
    return log->gaps;
}

uint64_t redis_log_appended(const struct redis_log *log)
{
    return log->appended;
}

static void rl_conn_source(struct redis_log *log, struct source *src,
                           struct source_config *cfg, const char *name,
                           char *url)
{
    cfg->name = (char *)name;
    cfg->url = url;
    cfg->type = SOURCE_REDIS;
    src->cfg = cfg;
    src->base = log->base;
    src->index = UINT32_MAX;
    src->state = SOURCE_DOWN;
    src->sink.ctx = log;
    snprintf(src->status, sizeof(src->status), "not connected yet");
}

static int rl_sources_new(struct redis_log *log, const struct config *cfg,
                          const char *prefix)
{
    log->sources = calloc(cfg->nsources ? cfg->nsources : 1,
                          sizeof(*log->sources));
    if (log->sources == NULL)
        return -1;
    log->nsources = cfg->nsources;
    for (size_t i = 0; i < log->nsources; i++) {
        struct rl_source *s = &log->sources[i];
        if ((s->name = strdup(cfg->sources[i].name)) == NULL)
            return -1;
        s->type = cfg->sources[i].type;
        snprintf(s->lease_key, sizeof(s->lease_key), "%s:lease:%s", prefix,
                 s->name);
        snprintf(s->epoch_key, sizeof(s->epoch_key), "%s:epoch:%s", prefix,
                 s->name);
        snprintf(s->pos_key, sizeof(s->pos_key), "%s:pos:%s", prefix,
                 s->name);
    }
    return 0;
}

struct redis_log *redis_log_new(struct event_base *base,
                                const struct config *cfg,
                                const struct redis_log_sink *sink, char *why,
                                size_t whylen)
{
    struct redis_log *log = calloc(1, sizeof(*log));
    const char *prefix = cfg->history.key ? cfg->history.key : "sluice";
    char *url;

    if (log == NULL) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    log->base = base;
    log->sink = *sink;
    log->max_events = cfg->history.max_events;
    log->max_bytes = cfg->history.max_bytes;
    log->max_age_ms = cfg->history.max_age_ms;
    log->queue_tail = &log->queue;
    log->ttl_ms = redis_conn_env_ms("SLUICE_INGEST_LEASE_MS",
                                    REDIS_LOG_LEASE_MS, 300, 600000);
    snprintf(log->last_id, sizeof(log->last_id), "0-0");
    snprintf(log->log_key, sizeof(log->log_key), "%s:log", prefix);
    snprintf(log->meta_key, sizeof(log->meta_key), "%s:meta", prefix);
    url = strdup(cfg->history.redis);
    log->wait_replica = strncmp(cfg->history.redis, "redis+sentinel://",
                                strlen("redis+sentinel://")) == 0;
    rl_conn_source(log, &log->tail_src, &log->tail_cfg, "history-read", url);
    rl_conn_source(log, &log->cmd_src, &log->cmd_cfg, "history-write", url);
    if (url == NULL ||
        rl_random_text(log->token, 32, "0123456789abcdef", 16) < 0 ||
        rl_sources_new(log, cfg, prefix) < 0) {
        snprintf(why, whylen, "out of memory or no randomness");
        goto fail;
    }
    if ((log->tail = redis_conn_new(&log->tail_src, &rl_tail_ops, log, why,
                                    whylen)) == NULL ||
        (log->cmd = redis_conn_new(&log->cmd_src, &rl_cmd_ops, log, why,
                                   whylen)) == NULL)
        goto fail;
    log->deadline = evtimer_new(base, rl_on_deadline, log);
    log->lease_timer = evtimer_new(base, rl_on_lease_timer, log);
    log->flush_ev = event_new(base, -1, 0, rl_on_flush, log);
    if (log->deadline == NULL || log->lease_timer == NULL ||
        log->flush_ev == NULL) {
        snprintf(why, whylen, "out of memory");
        goto fail;
    }
    return log;
fail:
    redis_log_free(log);
    return NULL;
}

void redis_log_start(struct redis_log *log)
{
    redis_conn_start(log->tail);
    redis_conn_start(log->cmd);
    rl_timer_start(log->lease_timer, log->ttl_ms / 3);
}

static void rl_on_released(redisAsyncContext *ac, void *reply, void *priv)
{
    struct redis_log *log = redis_conn_owner(ac);

    if (log != NULL && log->releasing > 0)
        log->releasing--;
}

bool redis_log_released(const struct redis_log *log)
{
    return log->releasing == 0;
}

void redis_log_release(struct redis_log *log)
{
    redisAsyncContext *ac = redis_conn_context(log->cmd);

    for (uint32_t i = 0; i < log->nsources; i++) {
        struct rl_source *s = &log->sources[i];
        if (s->role == RL_FOLLOWER)
            continue;
        rl_become(log, i, RL_FOLLOWER);
        if (ac != NULL && redis_conn_is_up(log->cmd) &&
            redisAsyncCommand(ac, rl_on_released, NULL, "EVAL %s 1 %s %s",
                              rl_release_script, s->lease_key,
                              log->token) == REDIS_OK)
            log->releasing++;
    }
    evtimer_del(log->lease_timer);
}

void redis_log_free(struct redis_log *log)
{
    if (log == NULL)
        return;
    redis_conn_free(log->tail);
    redis_conn_free(log->cmd);
    if (log->deadline)
        event_free(log->deadline);
    if (log->lease_timer)
        event_free(log->lease_timer);
    if (log->flush_ev)
        event_free(log->flush_ev);
    rl_queue_pop(log, SIZE_MAX);
    rl_load_clear(log);
    for (size_t i = 0; log->sources != NULL && i < log->nsources; i++) {
        rl_positions_free(&log->sources[i]);
        free(log->sources[i].name);
    }
    free(log->sources);
    if (log->tail_cfg.url != NULL) {
        explicit_bzero(log->tail_cfg.url, strlen(log->tail_cfg.url));
        free(log->tail_cfg.url);
    }
    free(log);
}
