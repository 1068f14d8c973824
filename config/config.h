/*
 * config.h - the sluice configuration: its data model and the YAML loader.
 *
 * The YAML file (SPEC section 3) is parsed with libyaml into the plain
 * structs below. Every scalar goes through ${VAR} / ${VAR:-default}
 * expansion; durations become milliseconds, sizes bytes. Anything the
 * loader cannot accept is reported as "FILE:LINE:COL: message" and the
 * whole load fails: a config is either entirely valid or not returned.
 *
 * The loader checks the schema (keys, types, ranges, names, uniqueness).
 * Checks that need the routing engine (path templates, topic patterns and
 * their sources) are done by route_table_build() in lib/route.c, which
 * reports errors with the positions kept here (struct config_pos).
 *
 * Ownership: a struct config owns every string and array below it; free
 * the whole tree with config_free(). Nothing here is shared or global.
 */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A position in the config file, 1-based, as libyaml's mark + 1. */
struct config_pos {
    int line;
    int col;
};

/* A list of strings with the position of each item. */
struct config_strv {
    char **items;
    struct config_pos *pos;
    size_t count;
};

enum source_type {
    SOURCE_MQTT,
    SOURCE_REDIS,
    SOURCE_REDIS_STREAM,
};

struct source_config {
    char *name;               /* [a-z0-9_-]+, unique */
    enum source_type type;
    char *url;                /* may hold credentials: never log it whole */
    struct config_pos pos;    /* of the list item */
    struct config_pos url_pos;

    /* mqtt */
    struct config_strv subscribe; /* empty: derived from routes */
    int qos;                  /* 0, 1, 2; default 0 */
    char *client_id;          /* NULL: generated "sluice-<name>-<pid>" */
    bool clean_session;       /* default true */
    int protocol;             /* 4 (MQTT 3.1.1, default) or 5 */
    int64_t keepalive_ms;     /* default 30s */
    char *ca_file;            /* mqtts:// */
    char *cert_file;
    char *key_file;

    /* redis */
    struct config_strv channels;  /* SUBSCRIBE */
    struct config_strv patterns;  /* PSUBSCRIBE */
    bool have_channels;           /* key present (even if empty): no derivation */
    bool have_patterns;

    /* redis-stream */
    struct config_strv streams;   /* XREAD keys */
};

enum route_format {
    ROUTE_FORMAT_JSON,
    ROUTE_FORMAT_RAW,
};
#define ROUTE_FORMAT_COUNT 2

enum route_event {
    ROUTE_EVENT_NONE,   /* no "event:" line: the browser sees "message" */
    ROUTE_EVENT_TOPIC,  /* "event: <topic>" */
    ROUTE_EVENT_FIXED,  /* "event: <event_name>" */
};

/* Where a fresh connect to a per-key route starts. */
enum route_from {
    ROUTE_FROM_START, /* the key's first entry (default) */
    ROUTE_FROM_LIVE,  /* the key's end at connect time */
};

struct route_config {
    char *path;                  /* template: /a/{x}/b or /a/{rest*} */
    struct config_pos pos;       /* of the list item */
    struct config_pos path_pos;
    struct config_strv topics;   /* "SOURCE:PATTERN" templates */
    enum route_format format;    /* default json */
    enum route_event event;      /* default none */
    char *event_name;            /* for ROUTE_EVENT_FIXED */
    bool snapshot;               /* default false */
    bool is_public;              /* key "public"; default false */
    bool enabled;                /* default true; false answers 204 */

    /* Per-key redis-stream routes only (route_table_build checks that):
     * a {param} in a redis-stream key reads that key on demand. */
    char *data_field;            /* format raw: the data is this field */
    enum route_from from;        /* default start */
    char *end_field;             /* "end: {field, value}": NULL: none */
    char *end_value;
    struct config_pos data_field_pos; /* line 0: key absent */
    struct config_pos from_pos;
    struct config_pos end_pos;
};

enum fsync_mode {
    FSYNC_NEVER,
    FSYNC_BATCH,    /* default: at most 100 ms of exposure */
    FSYNC_ALWAYS,
};

struct history_config {
    uint64_t max_events;   /* default 100000 */
    uint64_t max_bytes;    /* default 64 MiB */
    int64_t max_age_ms;    /* default 1h */
    char *dir;             /* NULL: memory only */
    enum fsync_mode fsync; /* default batch */
    char *redis;           /* NULL: local; else the shared log's Redis URL
                              (redis:// or redis+sentinel://) */
    struct config_pos redis_pos;
    char *key;             /* key prefix in that Redis; default "sluice" */
};

struct stream_config {
    int64_t heartbeat_ms;       /* default 15s */
    int64_t retry_ms;           /* default 2s */
    uint64_t padding;           /* default 0 */
    uint64_t max_pending;       /* default 1 MiB */
    uint64_t max_connections;   /* default 10000 */
    int64_t retry_overload_ms;  /* default 10s */
    bool compression;           /* default false */
    int64_t max_lifetime_ms;    /* default 0: unlimited */
    uint64_t max_keys;          /* per-key keys read at once; 10000 */
};

struct token_config {
    char *name;
    char *token;                /* secret: never log it */
    struct config_strv allow;   /* path globs; empty: all */
    struct config_pos pos;
};

enum config_jwt_alg {
    CONFIG_JWT_HS256,
    CONFIG_JWT_HS384,
    CONFIG_JWT_HS512,
    CONFIG_JWT_RS256,
    CONFIG_JWT_ES256,
};

struct jwt_config {
    bool present;
    enum config_jwt_alg algorithm;     /* default HS256 */
    char *secret;               /* HS*: secret, never log it */
    char *public_key_file;      /* RS256/ES256 */
    char *issuer;               /* optional */
    char *audience;             /* optional */
    struct config_strv allow;   /* globs, "{sub}" allowed; default none */
    int64_t leeway_ms;          /* key "leeway"; default 5s */
    struct config_pos pos;
};

struct auth_config {
    bool present;               /* an auth block exists */
    struct token_config *tokens;
    size_t ntokens;
    struct jwt_config jwt;
    char *cookie;               /* NULL: no cookie */
};

enum log_format {
    LOG_FORMAT_TEXT,
    LOG_FORMAT_JSON,
};

enum log_level {
    LOG_DEBUG,
    LOG_INFO,
    LOG_WARN,
    LOG_ERROR,
};

enum tls_min_version {
    TLS_MIN_1_2,
    TLS_MIN_1_3,
};

/* tls: present when a tls block is given (sluice then speaks only TLS
 * on its port). The files are read by bridge/tls.c at start, by --check
 * and again on SIGHUP; their positions are kept for its errors. */
struct tls_config {
    bool present;
    char *cert_file;            /* PEM chain, leaf first */
    char *key_file;             /* PEM private key: never log its contents */
    enum tls_min_version min_version; /* default 1.2 */
    struct config_pos pos;      /* of the tls block */
    struct config_pos cert_pos;
    struct config_pos key_pos;
};

/* http2: the keys of the contract (issue 16). */
struct http2_config {
    bool enabled;                    /* default false */
    bool cleartext;                  /* h2c with prior knowledge; false */
    uint64_t max_concurrent_streams; /* default 100 */
    struct config_pos pos;           /* of the http2 block */
    struct config_pos enabled_pos;
};

struct config {
    char *file;                 /* name used in messages; "<embedded>" */
    char *listen_host;          /* default 127.0.0.1; v6 without brackets */
    int listen_port;            /* default 8080 */
    struct config_pos listen_pos;

    struct source_config *sources;
    size_t nsources;
    struct route_config *routes;
    size_t nroutes;

    struct history_config history;
    struct stream_config stream;
    struct auth_config auth;
    struct config_strv cors_origins;
    struct tls_config tls;
    struct http2_config http2;

    enum log_level log_level;   /* default info */
    enum log_format log_format; /* default text */
    int64_t shutdown_grace_ms;  /* default 5s */
    uint64_t max_payload;       /* default 1 MiB */
    bool readyz_details;        /* /readyz shows each source's status text
                                   (broker address, server error); default
                                   false: only "down" */
};

/*
 * Parses a YAML document. `name` is the file name used in messages,
 * `text`/`len` its contents. On success returns a new config (free with
 * config_free) and sets *errors to NULL. On failure returns NULL and sets
 * *errors to a malloc'd string of one or more "NAME:LINE:COL: message\n"
 * lines (the caller frees it). Never prints, never exits.
 */
struct config *config_parse(const char *name, const char *text, size_t len,
                            char **errors);

/* Reads the file and calls config_parse; I/O errors are reported the same
 * way ("FILE:0:0: cannot read: ..."). Same ownership as config_parse. */
struct config *config_load_file(const char *path, char **errors);

/* The embedded default of SPEC 3.6, parsed. Same ownership. */
struct config *config_load_default(char **errors);

/* The embedded default's YAML text (static, not to be freed). */
const char *config_default_yaml(void);

void config_free(struct config *cfg);

const char *config_source_type_name(enum source_type type);

/* Frees the items of v (and pos) and empties it; v itself stays. */
void config_strv_clear(struct config_strv *v);

/* Appends s to v unless an equal string is there; takes s (freed when not
 * kept; NULL is taken as ENOMEM). pos is left alone. 0 or -1. */
int config_strv_add_unique(struct config_strv *v, char *s);

/* Appends a copy of each item of src not yet in dst. 0 or -1. */
int config_strv_copy_unique(struct config_strv *dst,
                            const struct config_strv *src);

#endif
