/*
 * config.c - the schema of sluice's YAML configuration (SPEC 3) and the
 * config.h entry points.
 *
 * The module has three layers: config_scalar.c turns one scalar's text
 * into a value (${VAR}, durations, sizes, ...); config_reader.c loads
 * the YAML document, reports positioned errors and applies a table of
 * keys to a mapping; this file holds the tables (one per YAML mapping:
 * which keys exist, their kind, where they go, their range and
 * defaults) and the checks that span several keys (a source's URL
 * scheme against its type, unique names, the JWT key material, '*'
 * origins with a cookie).
 *
 * Errors are collected, not fatal: reading goes on after a bad value so
 * that one run reports as much as it can, but config_parse() returns a
 * config only when there was no error at all. Checks that need the
 * routing engine (path templates, topic patterns, source references,
 * reserved paths) are route_table_build()'s and are not repeated here.
 *
 * Invariant: no message contains a value that may be secret (tokens,
 * JWT secrets, URLs that may hold passwords). Only key names, source and
 * token names, origins and a URL's scheme are echoed, through
 * config_echo_safe().
 */
#include "config/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_reader.h"
#include "config/config_scalar.h"

/* A config file larger than this is refused unread. */
#define CONFIG_FILE_MAX (16 * 1024 * 1024)

#define KIB 1024
#define MIB (1024 * 1024)

/* CONFIG_FIELD_CHOICE stores an enum through an int. */
_Static_assert(sizeof(enum source_type) == sizeof(int), "enum size");
_Static_assert(sizeof(enum route_format) == sizeof(int), "enum size");
_Static_assert(sizeof(enum route_from) == sizeof(int), "enum size");
_Static_assert(sizeof(enum fsync_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum log_level) == sizeof(int), "enum size");
_Static_assert(sizeof(enum log_format) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_jwt_alg) == sizeof(int), "enum size");
_Static_assert(sizeof(enum tls_min_version) == sizeof(int), "enum size");

/* The source types a key applies to (struct config_field.types). */
enum {
    FOR_MQTT = 1u << SOURCE_MQTT,
    FOR_REDIS = 1u << SOURCE_REDIS,
    FOR_STREAM = 1u << SOURCE_REDIS_STREAM,
};

/* Choice names, in the order of their enums. */
static const char *const source_type_names[] = {"mqtt", "redis",
                                                "redis-stream"};
static const char *const format_names[] = {"json", "raw"};
static const char *const from_names[] = {"start", "live"};
static const char *const fsync_names[] = {"never", "batch", "always"};
static const char *const log_level_names[] = {"debug", "info", "warn", "error"};
static const char *const log_format_names[] = {"text", "json"};
static const char *const tls_version_names[] = {"1.2", "1.3"};
static const char *const jwt_alg_names[] = {"HS256", "HS384", "HS512", "RS256",
                                            "ES256"};

/* clang-format off */
static const char default_yaml[] =
    "# sluice's embedded default (SPEC 3.6)\n"
    "listen: 127.0.0.1:8080\n"
    "sources:\n"
    "  - name: redis\n"
    "    type: redis\n"
    "    url: redis://127.0.0.1:6379\n"
    "  - name: mqtt\n"
    "    type: mqtt\n"
    "    url: mqtt://127.0.0.1:1883\n"
    "routes:\n"
    "  - path: /redis/{channel}\n"
    "    topics: [\"redis:{channel}\"]\n"
    "    public: true\n"
    "  - path: /mqtt/{topic*}\n"
    "    topics: [\"mqtt:{topic}\"]\n"
    "    public: true\n";
/* clang-format on */

/* RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), kept short. */
static bool scheme_ok(const char *s, size_t len)
{
    static const char alpha[] = "abcdefghijklmnopqrstuvwxyz"
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    static const char rest[] = "0123456789+-.";

    if (len == 0 || len > 16 || !strchr(alpha, s[0]))
        return false;
    for (size_t i = 1; i < len; i++)
        if (!strchr(alpha, s[i]) && !strchr(rest, s[i]))
            return false;
    return true;
}

/* ---- listen ------------------------------------------------------------ */

/*
 * The *_read functions named in the tables below follow the contract of
 * struct config_field.parse: read `value` (the node of `key`) into base,
 * the struct of the table's section; report every problem; return 0, or
 * -1 when the value itself was unusable.
 */
static int listen_read(struct config_reader *rd, const char *key,
                       yaml_node_t *value, void *base)
{
    struct config *cfg = base;
    char reason[128];
    char *host;
    int port;
    int rc;
    char *text = config_read_text(rd, key, value, "host:port");

    if (!text)
        return -1;
    rc = config_scalar_listen(text, &host, &port, reason, sizeof(reason));
    free(text);
    if (rc != 0) {
        config_reader_error(rd, config_node_pos(value), "%s: %s", key, reason);
        return -1;
    }
    free(cfg->listen_host);
    cfg->listen_host = host;
    cfg->listen_port = port;
    cfg->listen_pos = config_node_pos(value);
    return 0;
}

/* ---- sources ----------------------------------------------------------- */

/* clang-format off */
static const struct config_field source_fields[] = {
    {.key = "name", .kind = CONFIG_FIELD_STRING, .required = true,
     .offset = offsetof(struct source_config, name)},
    {.key = "type", .kind = CONFIG_FIELD_CHOICE, .required = true,
     .names = source_type_names, .nnames = ARRAY_LEN(source_type_names),
     .offset = offsetof(struct source_config, type)},
    {.key = "url", .kind = CONFIG_FIELD_STRING, .required = true,
     .offset = offsetof(struct source_config, url)},
    {.key = "subscribe", .kind = CONFIG_FIELD_STRV, .types = FOR_MQTT,
     .offset = offsetof(struct source_config, subscribe)},
    {.key = "qos", .kind = CONFIG_FIELD_INT, .min = 0, .max = 2,
     .types = FOR_MQTT, .offset = offsetof(struct source_config, qos)},
    {.key = "client_id", .kind = CONFIG_FIELD_STRING, .types = FOR_MQTT,
     .offset = offsetof(struct source_config, client_id)},
    {.key = "clean_session", .kind = CONFIG_FIELD_BOOL, .types = FOR_MQTT,
     .offset = offsetof(struct source_config, clean_session)},
    {.key = "protocol", .kind = CONFIG_FIELD_INT, .min = 4, .max = 5,
     .types = FOR_MQTT, .offset = offsetof(struct source_config, protocol)},
    /* libmosquitto refuses keepalives under 5 s; MQTT's limit is 65535 s. */
    {.key = "keepalive", .kind = CONFIG_FIELD_DURATION, .min = 5000,
     .max = 65535000, .types = FOR_MQTT,
     .offset = offsetof(struct source_config, keepalive_ms)},
    {.key = "ca_file", .kind = CONFIG_FIELD_STRING, .types = FOR_MQTT,
     .offset = offsetof(struct source_config, ca_file)},
    {.key = "cert_file", .kind = CONFIG_FIELD_STRING, .types = FOR_MQTT,
     .offset = offsetof(struct source_config, cert_file)},
    {.key = "key_file", .kind = CONFIG_FIELD_STRING, .types = FOR_MQTT,
     .offset = offsetof(struct source_config, key_file)},
    {.key = "channels", .kind = CONFIG_FIELD_STRV, .types = FOR_REDIS,
     .offset = offsetof(struct source_config, channels)},
    {.key = "patterns", .kind = CONFIG_FIELD_STRV, .types = FOR_REDIS,
     .offset = offsetof(struct source_config, patterns)},
    {.key = "streams", .kind = CONFIG_FIELD_STRV, .types = FOR_STREAM,
     .offset = offsetof(struct source_config, streams)},
};
/* clang-format on */

static const struct config_hit *source_hit(const struct config_hit *hits,
                                           const char *key)
{
    return config_hit_find(source_fields, ARRAY_LEN(source_fields), hits, key);
}

static bool source_name_ok(const char *name)
{
    return strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_-") ==
           strlen(name);
}

/* The URL's scheme must fit the source type; only the scheme is shown. */
static void source_check_url(struct config_reader *rd,
                             const struct source_config *src,
                             const yaml_node_t *node)
{
    const char *plain = src->type == SOURCE_MQTT ? "mqtt" : "redis";
    const char *tls = src->type == SOURCE_MQTT ? "mqtts" : "rediss";
    const char *sep = strstr(src->url, "://");
    size_t len = sep ? (size_t)(sep - src->url) : 0;
    char scheme[24];

    if (!sep || !scheme_ok(src->url, len)) {
        config_reader_error(rd, config_node_pos(node),
                            "url: expected %s://HOST:PORT or %s://HOST:PORT",
                            plain, tls);
        return;
    }
    memcpy(scheme, src->url, len);
    scheme[len] = '\0';
    if (strcmp(scheme, plain) != 0 && strcmp(scheme, tls) != 0 &&
        !(src->type != SOURCE_MQTT && strcmp(scheme, "redis+sentinel") == 0)) {
        config_reader_error(rd, config_node_pos(node),
                            "url: scheme '%s' does not fit a %s source (use "
                            "%s:// or %s://)",
                            scheme, source_type_names[src->type], plain, tls);
        return;
    }
    if (sep[3] == '\0' || sep[3] == '/')
        config_reader_error(rd, config_node_pos(node), "url: missing host");
}

/* Keys of another source type are errors, and so are TLS files that an
 * mqtt:// URL would silently ignore. */
static void source_check_keys(struct config_reader *rd,
                              const struct source_config *src,
                              const struct config_hit *hits)
{
    static const char *const tls_keys[] = {"ca_file", "cert_file", "key_file"};
    bool plain = src->url && strncmp(src->url, "mqtt://", 7) == 0;

    for (size_t i = 0; i < ARRAY_LEN(source_fields); i++) {
        const struct config_field *f = &source_fields[i];

        if (hits[i].key && f->types && !(f->types & (1u << src->type)))
            config_reader_error(rd, config_node_pos(hits[i].key),
                                "key '%s' does not apply to a %s source",
                                f->key, source_type_names[src->type]);
    }
    if (src->type != SOURCE_MQTT)
        return;
    for (size_t i = 0; plain && i < ARRAY_LEN(tls_keys); i++) {
        const struct config_hit *hit = source_hit(hits, tls_keys[i]);
        if (hit->value)
            config_reader_error(rd, config_node_pos(hit->key),
                                "%s: needs an mqtts:// url", tls_keys[i]);
    }
    if ((src->cert_file != NULL) != (src->key_file != NULL)) {
        const char *given = src->cert_file ? "cert_file" : "key_file";
        config_reader_error(rd, config_node_pos(source_hit(hits, given)->key),
                            "%s: cert_file and key_file go together", given);
    }
}

/* Reads one item of `sources`; *name_pos gets the position of its name. */
static void source_read(struct config_reader *rd, yaml_node_t *node,
                        struct source_config *src, struct config_pos *name_pos)
{
    struct config_hit hits[ARRAY_LEN(source_fields)];
    const struct config_hit *name;
    const struct config_hit *url;

    src->clean_session = true;
    src->protocol = 4;
    src->keepalive_ms = 30 * 1000;
    src->pos = config_node_pos(node);
    *name_pos = src->pos;
    if (config_read_map(rd, "sources item", node, "in source", source_fields,
                        ARRAY_LEN(source_fields), src, hits) != 0)
        return;
    name = source_hit(hits, "name");
    if (name->value)
        *name_pos = config_node_pos(name->value);
    if (src->name && !source_name_ok(src->name))
        config_reader_error(rd, *name_pos,
                            "name: a source name must match [a-z0-9_-]+");
    url = source_hit(hits, "url");
    if (url->value)
        src->url_pos = config_node_pos(url->value);
    src->have_channels = source_hit(hits, "channels")->value != NULL;
    src->have_patterns = source_hit(hits, "patterns")->value != NULL;
    if (!source_hit(hits, "type")->ok)
        return; /* without a type the rest cannot be judged */
    if (src->url)
        source_check_url(rd, src, url->value);
    source_check_keys(rd, src, hits);
}

/* Reads items[i] of `sources` (config_read_seq's item contract); a name
 * must be unique among items[0..i]. */
static void source_item_read(struct config_reader *rd, yaml_node_t *node,
                             void *items, size_t i)
{
    struct source_config *sources = items;
    struct source_config *src = &sources[i];
    struct config_pos name_pos;
    char shown[64];

    source_read(rd, node, src, &name_pos);
    for (size_t j = 0; src->name && j < i; j++) {
        if (!sources[j].name || strcmp(sources[j].name, src->name) != 0)
            continue;
        config_reader_error(rd, name_pos,
                            "duplicate source name '%s' (first at line %d)",
                            config_echo_safe(src->name, shown, sizeof(shown)),
                            sources[j].pos.line);
        break;
    }
}

static int sources_read(struct config_reader *rd, const char *key,
                        yaml_node_t *value, void *base)
{
    struct config *cfg = base;
    void *items = cfg->sources;
    int rc = config_read_seq(rd, key, value, sizeof(*cfg->sources),
                             source_item_read, &items, &cfg->nsources);

    cfg->sources = items;
    return rc;
}

/* ---- routes ------------------------------------------------------------ */

/* none | topic | a fixed event name of [A-Za-z0-9_.:-]. */
static int route_event_read(struct config_reader *rd, const char *key,
                            yaml_node_t *value, void *base)
{
    static const char name_chars[] = "abcdefghijklmnopqrstuvwxyz"
                                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                     "0123456789_.:-";
    struct route_config *route = base;
    char *text = config_read_text(rd, key, value, "a single value");

    if (!text)
        return -1;
    if (strcmp(text, "none") == 0) {
        route->event = ROUTE_EVENT_NONE;
        free(text);
    } else if (strcmp(text, "topic") == 0) {
        route->event = ROUTE_EVENT_TOPIC;
        free(text);
    } else if (text[0] && strspn(text, name_chars) == strlen(text)) {
        route->event = ROUTE_EVENT_FIXED;
        free(route->event_name);
        route->event_name = text;
    } else {
        free(text);
        config_reader_error(rd, config_node_pos(value),
                            "%s: expected none, topic or an event name of "
                            "[A-Za-z0-9_.:-]",
                            key);
        return -1;
    }
    return 0;
}

/* clang-format off */
static const struct config_field route_end_fields[] = {
    {.key = "field", .kind = CONFIG_FIELD_STRING, .required = true,
     .offset = offsetof(struct route_config, end_field)},
    {.key = "value", .kind = CONFIG_FIELD_STRING, .required = true,
     .offset = offsetof(struct route_config, end_value)},
};
/* clang-format on */

/* end: {field: NAME, value: TEXT}: the entry whose field NAME holds TEXT
 * ends a per-key stream. */
static int route_end_read(struct config_reader *rd, const char *key,
                          yaml_node_t *value, void *base)
{
    struct route_config *route = base;
    struct config_hit hits[ARRAY_LEN(route_end_fields)];

    route->end_pos = config_node_pos(value);
    return config_read_map(rd, key, value, "in end", route_end_fields,
                           ARRAY_LEN(route_end_fields), route, hits);
}

/* clang-format off */
static const struct config_field route_fields[] = {
    {.key = "path", .kind = CONFIG_FIELD_STRING, .required = true,
     .offset = offsetof(struct route_config, path)},
    {.key = "topics", .kind = CONFIG_FIELD_STRV, .required = true,
     .offset = offsetof(struct route_config, topics)},
    {.key = "format", .kind = CONFIG_FIELD_CHOICE, .names = format_names,
     .nnames = ARRAY_LEN(format_names),
     .offset = offsetof(struct route_config, format)},
    {.key = "event", .kind = CONFIG_FIELD_CUSTOM, .parse = route_event_read},
    {.key = "snapshot", .kind = CONFIG_FIELD_BOOL,
     .offset = offsetof(struct route_config, snapshot)},
    {.key = "public", .kind = CONFIG_FIELD_BOOL,
     .offset = offsetof(struct route_config, is_public)},
    {.key = "enabled", .kind = CONFIG_FIELD_BOOL,
     .offset = offsetof(struct route_config, enabled)},
    {.key = "data_field", .kind = CONFIG_FIELD_STRING,
     .offset = offsetof(struct route_config, data_field)},
    {.key = "from", .kind = CONFIG_FIELD_CHOICE, .names = from_names,
     .nnames = ARRAY_LEN(from_names),
     .offset = offsetof(struct route_config, from)},
    {.key = "end", .kind = CONFIG_FIELD_CUSTOM, .parse = route_end_read},
};
/* clang-format on */

/* Keeps the positions of the per-key keys (route_table_build refuses them
 * on a route that is not per-key); data_field needs format raw. */
static void route_read_perkey(struct config_reader *rd,
                              struct route_config *route,
                              const struct config_hit *hits)
{
    const struct config_hit *data_field = config_hit_find(
        route_fields, ARRAY_LEN(route_fields), hits, "data_field");
    const struct config_hit *from =
        config_hit_find(route_fields, ARRAY_LEN(route_fields), hits, "from");

    if (data_field->key)
        route->data_field_pos = config_node_pos(data_field->key);
    if (from->key)
        route->from_pos = config_node_pos(from->key);
    if (route->data_field && route->format != ROUTE_FORMAT_RAW)
        config_reader_error(rd, route->data_field_pos,
                            "data_field: needs format: raw (json sends "
                            "every field)");
}

/* Reads items[i] of `routes` (config_read_seq's item contract). */
static void route_read(struct config_reader *rd, yaml_node_t *node, void *items,
                       size_t i)
{
    struct route_config *route = (struct route_config *)items + i;
    struct config_hit hits[ARRAY_LEN(route_fields)];
    const struct config_hit *path;

    route->format = ROUTE_FORMAT_JSON;
    route->event = ROUTE_EVENT_NONE;
    route->enabled = true;
    route->pos = config_node_pos(node);
    if (config_read_map(rd, "routes item", node, "in route", route_fields,
                        ARRAY_LEN(route_fields), route, hits) != 0)
        return;
    path = config_hit_find(route_fields, ARRAY_LEN(route_fields), hits, "path");
    if (path->value)
        route->path_pos = config_node_pos(path->value);
    if (route->path && route->path[0] != '/')
        config_reader_error(rd, route->path_pos, "path: must start with '/'");
    route_read_perkey(rd, route, hits);
}

static int routes_read(struct config_reader *rd, const char *key,
                       yaml_node_t *value, void *base)
{
    struct config *cfg = base;
    void *items = cfg->routes;
    int rc = config_read_seq(rd, key, value, sizeof(*cfg->routes), route_read,
                             &items, &cfg->nroutes);

    cfg->routes = items;
    return rc;
}

/* ---- history, stream, logging, cors ----------------------------------- */

/* clang-format off */
static const struct config_field history_fields[] = {
    {.key = "max_events", .kind = CONFIG_FIELD_COUNT, .min = 1,
     .offset = offsetof(struct history_config, max_events)},
    {.key = "max_bytes", .kind = CONFIG_FIELD_SIZE, .min = KIB,
     .offset = offsetof(struct history_config, max_bytes)},
    {.key = "max_age", .kind = CONFIG_FIELD_DURATION, .min = 0,
     .offset = offsetof(struct history_config, max_age_ms)},
    {.key = "dir", .kind = CONFIG_FIELD_STRING,
     .offset = offsetof(struct history_config, dir)},
    {.key = "fsync", .kind = CONFIG_FIELD_CHOICE, .names = fsync_names,
     .nnames = ARRAY_LEN(fsync_names),
     .offset = offsetof(struct history_config, fsync)},
    {.key = "redis", .kind = CONFIG_FIELD_STRING,
     .offset = offsetof(struct history_config, redis)},
    {.key = "key", .kind = CONFIG_FIELD_STRING,
     .offset = offsetof(struct history_config, key)},
};
/* clang-format on */

/* clang-format off */
static const struct config_field stream_fields[] = {
    {.key = "heartbeat", .kind = CONFIG_FIELD_DURATION, .min = 1000,
     .offset = offsetof(struct stream_config, heartbeat_ms)},
    {.key = "retry", .kind = CONFIG_FIELD_DURATION, .min = 1,
     .offset = offsetof(struct stream_config, retry_ms)},
    {.key = "padding", .kind = CONFIG_FIELD_SIZE, .min = 0, .max = MIB,
     .offset = offsetof(struct stream_config, padding)},
    {.key = "max_pending", .kind = CONFIG_FIELD_SIZE, .min = KIB,
     .offset = offsetof(struct stream_config, max_pending)},
    {.key = "max_connections", .kind = CONFIG_FIELD_COUNT, .min = 1,
     .offset = offsetof(struct stream_config, max_connections)},
    {.key = "retry_overload", .kind = CONFIG_FIELD_DURATION, .min = 1,
     .offset = offsetof(struct stream_config, retry_overload_ms)},
    {.key = "compression", .kind = CONFIG_FIELD_BOOL,
     .offset = offsetof(struct stream_config, compression)},
    {.key = "max_lifetime", .kind = CONFIG_FIELD_DURATION, .min = 0,
     .offset = offsetof(struct stream_config, max_lifetime_ms)},
    {.key = "max_keys", .kind = CONFIG_FIELD_COUNT, .min = 1,
     .offset = offsetof(struct stream_config, max_keys)},
};
/* clang-format on */

/* Read into struct config itself. */
/* clang-format off */
static const struct config_field logging_fields[] = {
    {.key = "level", .kind = CONFIG_FIELD_CHOICE, .names = log_level_names,
     .nnames = ARRAY_LEN(log_level_names),
     .offset = offsetof(struct config, log_level)},
    {.key = "format", .kind = CONFIG_FIELD_CHOICE, .names = log_format_names,
     .nnames = ARRAY_LEN(log_format_names),
     .offset = offsetof(struct config, log_format)},
};
/* clang-format on */

/* Read into struct config itself. */
/* clang-format off */
static const struct config_field cors_fields[] = {
    {.key = "origins", .kind = CONFIG_FIELD_STRV,
     .offset = offsetof(struct config, cors_origins)},
};
/* clang-format on */

/* A key prefix: printable, no spaces or braces (Redis Cluster hash
 * tags stay the user's choice through ':'-separated names). */
static bool history_key_ok(const char *key)
{
    size_t len = strlen(key);

    return len > 0 && len <= 64 &&
           strspn(key, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                       "0123456789:_.-") == len;
}

static int history_read(struct config_reader *rd, const char *key,
                        yaml_node_t *value, void *base)
{
    struct config *cfg = base;
    struct config_hit hits[ARRAY_LEN(history_fields)];
    const struct config_hit *redis, *dir, *prefix;
    int rc;

    rc = config_read_map(rd, key, value, "in history", history_fields,
                         ARRAY_LEN(history_fields), &cfg->history, hits);
    if (rc != 0)
        return rc;
    redis = config_hit_find(history_fields, ARRAY_LEN(history_fields), hits,
                            "redis");
    dir = config_hit_find(history_fields, ARRAY_LEN(history_fields), hits,
                          "dir");
    prefix = config_hit_find(history_fields, ARRAY_LEN(history_fields), hits,
                             "key");
    if (redis->value)
        cfg->history.redis_pos = config_node_pos(redis->value);
    if (redis->value && dir->value)
        config_reader_error(rd, config_node_pos(dir->key),
                            "history.dir and history.redis exclude each "
                            "other: a shared history lives in Redis");
    if (prefix->value && !redis->value)
        config_reader_error(rd, config_node_pos(prefix->key),
                            "history.key needs history.redis");
    if (cfg->history.key != NULL && !history_key_ok(cfg->history.key))
        config_reader_error(rd, config_node_pos(prefix->value),
                            "history.key: 1-64 characters of "
                            "[A-Za-z0-9:_.-]");
    return 0;
}

static int stream_read(struct config_reader *rd, const char *key,
                       yaml_node_t *value, void *base)
{
    struct config *cfg = base;
    struct config_hit hits[ARRAY_LEN(stream_fields)];

    return config_read_map(rd, key, value, "in stream", stream_fields,
                           ARRAY_LEN(stream_fields), &cfg->stream, hits);
}

static int logging_read(struct config_reader *rd, const char *key,
                        yaml_node_t *value, void *base)
{
    struct config_hit hits[ARRAY_LEN(logging_fields)];

    return config_read_map(rd, key, value, "in logging", logging_fields,
                           ARRAY_LEN(logging_fields), base, hits);
}

/* An origin is "*" or scheme://host[:port], as browsers send it: no path,
 * no trailing slash (which would never match), and printable ASCII only (a
 * browser sends an international host in punycode; a YAML line break or a
 * "\x01" escape would make an entry nothing can match). */
static bool origin_ok(const char *origin)
{
    const char *sep = strstr(origin, "://");

    if (strcmp(origin, "*") == 0)
        return true;
    for (const char *p = origin; *p != '\0'; p++)
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
            return false;
    if (!sep || !scheme_ok(origin, (size_t)(sep - origin)) || sep[3] == '\0')
        return false;
    return strpbrk(sep + 3, "/?#*@ \t") == NULL;
}

static int cors_read(struct config_reader *rd, const char *key,
                     yaml_node_t *value, void *base)
{
    struct config *cfg = base;
    struct config_hit hits[ARRAY_LEN(cors_fields)];

    if (config_read_map(rd, key, value, "in cors", cors_fields,
                        ARRAY_LEN(cors_fields), cfg, hits) != 0)
        return -1;
    for (size_t i = 0; i < cfg->cors_origins.count; i++)
        if (!origin_ok(cfg->cors_origins.items[i]))
            config_reader_error(rd, cfg->cors_origins.pos[i],
                                "origins: expected \"*\" or "
                                "scheme://host[:port] without a path, e.g. "
                                "https://app.example");
    return 0;
}

/* ---- auth -------------------------------------------------------------- */

/* clang-format off */
static const struct config_field token_fields[] = {
    {.key = "name", .kind = CONFIG_FIELD_STRING, .required = true,
     .offset = offsetof(struct token_config, name)},
    {.key = "token", .kind = CONFIG_FIELD_STRING, .required = true,
     .offset = offsetof(struct token_config, token)},
    {.key = "allow", .kind = CONFIG_FIELD_STRV,
     .offset = offsetof(struct token_config, allow)},
};
/* clang-format on */

/* clang-format off */
static const struct config_field jwt_fields[] = {
    {.key = "algorithm", .kind = CONFIG_FIELD_CHOICE, .names = jwt_alg_names,
     .nnames = ARRAY_LEN(jwt_alg_names),
     .offset = offsetof(struct jwt_config, algorithm)},
    {.key = "secret", .kind = CONFIG_FIELD_STRING,
     .offset = offsetof(struct jwt_config, secret)},
    {.key = "public_key_file", .kind = CONFIG_FIELD_STRING,
     .offset = offsetof(struct jwt_config, public_key_file)},
    {.key = "issuer", .kind = CONFIG_FIELD_STRING,
     .offset = offsetof(struct jwt_config, issuer)},
    {.key = "audience", .kind = CONFIG_FIELD_STRING,
     .offset = offsetof(struct jwt_config, audience)},
    {.key = "allow", .kind = CONFIG_FIELD_STRV,
     .offset = offsetof(struct jwt_config, allow)},
    {.key = "leeway", .kind = CONFIG_FIELD_DURATION, .min = 0,
     .offset = offsetof(struct jwt_config, leeway_ms)},
};
/* clang-format on */

/* Reads items[i] of auth.tokens (config_read_seq's item contract). Names
 * and token values must be unique among items[0..i]; a repeated value is
 * reported by name only. */
static void token_read(struct config_reader *rd, yaml_node_t *node, void *items,
                       size_t i)
{
    const struct token_config *tokens = items;
    struct token_config *tok = (struct token_config *)items + i;
    struct config_hit hits[ARRAY_LEN(token_fields)];
    const struct config_hit *name;
    const struct config_hit *value;
    char shown[64];

    tok->pos = config_node_pos(node);
    if (config_read_map(rd, "tokens item", node, "in auth.tokens", token_fields,
                        ARRAY_LEN(token_fields), tok, hits) != 0)
        return;
    name = config_hit_find(token_fields, ARRAY_LEN(token_fields), hits, "name");
    value =
        config_hit_find(token_fields, ARRAY_LEN(token_fields), hits, "token");
    for (size_t j = 0; j < i; j++) {
        const struct token_config *other = &tokens[j];

        if (tok->name && other->name && strcmp(tok->name, other->name) == 0)
            config_reader_error(
                rd, config_node_pos(name->value),
                "duplicate token name '%s' (first at line %d)",
                config_echo_safe(tok->name, shown, sizeof(shown)),
                other->pos.line);
        if (tok->token && other->token && strcmp(tok->token, other->token) == 0)
            config_reader_error(rd, config_node_pos(value->value),
                                "token: same value as the token at line %d",
                                other->pos.line);
    }
}

static int tokens_read(struct config_reader *rd, const char *key,
                       yaml_node_t *value, void *base)
{
    struct auth_config *auth = base;
    void *items = auth->tokens;
    int rc = config_read_seq(rd, key, value, sizeof(*auth->tokens), token_read,
                             &items, &auth->ntokens);

    auth->tokens = items;
    return rc;
}

/* HS* verify with a shared secret, RS256/ES256 with a public key file:
 * the one is required, the other refused. */
static void jwt_check_keys(struct config_reader *rd,
                           const struct jwt_config *jwt,
                           const struct config_hit *hits)
{
    bool hmac = jwt->algorithm <= CONFIG_JWT_HS512;
    const char *alg = jwt_alg_names[jwt->algorithm];
    const char *needed = hmac ? "secret" : "public_key_file";
    const char *refused = hmac ? "public_key_file" : "secret";
    const char *have = hmac ? jwt->secret : jwt->public_key_file;
    const struct config_hit *want =
        config_hit_find(jwt_fields, ARRAY_LEN(jwt_fields), hits, needed);
    const struct config_hit *extra =
        config_hit_find(jwt_fields, ARRAY_LEN(jwt_fields), hits, refused);

    if (extra->key)
        config_reader_error(rd, config_node_pos(extra->key),
                            "%s: does not apply to %s (it uses %s)", refused,
                            alg, needed);
    /* A value that failed to read was reported already. */
    if (!have && !(want->value && !want->ok))
        config_reader_error(rd,
                            want->key ? config_node_pos(want->key) : jwt->pos,
                            "auth.jwt: %s needs a non-empty %s", alg, needed);
}

static int jwt_read(struct config_reader *rd, const char *key,
                    yaml_node_t *value, void *base)
{
    struct auth_config *auth = base;
    struct config_hit hits[ARRAY_LEN(jwt_fields)];
    const struct config_hit *alg;

    if (config_read_map(rd, key, value, "in auth.jwt", jwt_fields,
                        ARRAY_LEN(jwt_fields), &auth->jwt, hits) != 0)
        return -1;
    auth->jwt.present = true;
    auth->jwt.pos = config_node_pos(value);
    alg = config_hit_find(jwt_fields, ARRAY_LEN(jwt_fields), hits, "algorithm");
    if (!alg->value || alg->ok)
        jwt_check_keys(rd, &auth->jwt, hits);
    return 0;
}

/* clang-format off */
static const struct config_field auth_fields[] = {
    {.key = "tokens", .kind = CONFIG_FIELD_CUSTOM, .parse = tokens_read},
    {.key = "jwt", .kind = CONFIG_FIELD_CUSTOM, .parse = jwt_read},
    {.key = "cookie", .kind = CONFIG_FIELD_STRING,
     .offset = offsetof(struct auth_config, cookie)},
};
/* clang-format on */

/* RFC 6265 cookie-name: an RFC 7230 token. */
static bool cookie_name_ok(const char *name)
{
    static const char chars[] = "abcdefghijklmnopqrstuvwxyz"
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                                "!#$%&'*+-.^_`|~";

    return strspn(name, chars) == strlen(name);
}

static const struct config_hit *auth_hit(const struct config_hit *hits,
                                         const char *key)
{
    return config_hit_find(auth_fields, ARRAY_LEN(auth_fields), hits, key);
}

static int auth_read(struct config_reader *rd, const char *key,
                     yaml_node_t *value, void *base)
{
    struct config *cfg = base;
    struct config_hit hits[ARRAY_LEN(auth_fields)];

    if (config_read_map(rd, key, value, "in auth", auth_fields,
                        ARRAY_LEN(auth_fields), &cfg->auth, hits) != 0)
        return -1;
    cfg->auth.present = true;
    if (cfg->auth.cookie && !cookie_name_ok(cfg->auth.cookie))
        config_reader_error(rd,
                            config_node_pos(auth_hit(hits, "cookie")->value),
                            "cookie: not a valid cookie name");
    if (!auth_hit(hits, "tokens")->key && !auth_hit(hits, "jwt")->key)
        config_reader_error(rd, config_node_pos(value),
                            "auth: needs tokens or jwt (else no private "
                            "route could be opened)");
    return 0;
}

/* ---- tls, http2 -------------------------------------------------------- */

/* clang-format off */
static const struct config_field tls_fields[] = {
    {.key = "cert_file", .kind = CONFIG_FIELD_STRING, .required = true,
     .offset = offsetof(struct tls_config, cert_file)},
    {.key = "key_file", .kind = CONFIG_FIELD_STRING, .required = true,
     .offset = offsetof(struct tls_config, key_file)},
    {.key = "min_version", .kind = CONFIG_FIELD_CHOICE,
     .names = tls_version_names, .nnames = ARRAY_LEN(tls_version_names),
     .offset = offsetof(struct tls_config, min_version)},
};

static const struct config_field http2_fields[] = {
    {.key = "enabled", .kind = CONFIG_FIELD_BOOL,
     .offset = offsetof(struct http2_config, enabled)},
    {.key = "cleartext", .kind = CONFIG_FIELD_BOOL,
     .offset = offsetof(struct http2_config, cleartext)},
    {.key = "max_concurrent_streams", .kind = CONFIG_FIELD_COUNT, .min = 1,
     .max = 10000,
     .offset = offsetof(struct http2_config, max_concurrent_streams)},
};
/* clang-format on */

/* The position of a key's value, else of the key, else `fallback`. */
static struct config_pos hit_pos(const struct config_hit *hit,
                                 struct config_pos fallback)
{
    if (hit->value)
        return config_node_pos(hit->value);
    if (hit->key)
        return config_node_pos(hit->key);
    return fallback;
}

static int tls_read(struct config_reader *rd, const char *key,
                    yaml_node_t *value, void *base)
{
    struct config *cfg = base;
    struct config_hit hits[ARRAY_LEN(tls_fields)];
    struct tls_config *tls = &cfg->tls;

    tls->pos = config_node_pos(value);
    if (config_read_map(rd, key, value, "in tls", tls_fields,
                        ARRAY_LEN(tls_fields), tls, hits) != 0)
        return -1;
    tls->present = true;
    tls->cert_pos = hit_pos(config_hit_find(tls_fields, ARRAY_LEN(tls_fields),
                                            hits, "cert_file"),
                            tls->pos);
    tls->key_pos = hit_pos(config_hit_find(tls_fields, ARRAY_LEN(tls_fields),
                                           hits, "key_file"),
                           tls->pos);
    return 0;
}

static int http2_read(struct config_reader *rd, const char *key,
                      yaml_node_t *value, void *base)
{
    struct config *cfg = base;
    struct config_hit hits[ARRAY_LEN(http2_fields)];
    struct http2_config *h2 = &cfg->http2;

    h2->pos = config_node_pos(value);
    if (config_read_map(rd, key, value, "in http2", http2_fields,
                        ARRAY_LEN(http2_fields), h2, hits) != 0)
        return -1;
    h2->enabled_pos = hit_pos(config_hit_find(http2_fields,
                                              ARRAY_LEN(http2_fields), hits,
                                              "enabled"),
                              h2->pos);
    if (h2->cleartext && !h2->enabled)
        config_reader_error(rd,
                            hit_pos(config_hit_find(http2_fields,
                                                    ARRAY_LEN(http2_fields),
                                                    hits, "cleartext"),
                                    h2->pos),
                            "cleartext: needs http2.enabled: true");
    return 0;
}

/* ---- the document ------------------------------------------------------ */

/* Read into struct config. */
/* clang-format off */
static const struct config_field root_fields[] = {
    {.key = "listen", .kind = CONFIG_FIELD_CUSTOM, .parse = listen_read},
    {.key = "sources", .kind = CONFIG_FIELD_CUSTOM, .parse = sources_read},
    {.key = "routes", .kind = CONFIG_FIELD_CUSTOM, .parse = routes_read},
    {.key = "history", .kind = CONFIG_FIELD_CUSTOM, .parse = history_read},
    {.key = "stream", .kind = CONFIG_FIELD_CUSTOM, .parse = stream_read},
    {.key = "auth", .kind = CONFIG_FIELD_CUSTOM, .parse = auth_read},
    {.key = "cors", .kind = CONFIG_FIELD_CUSTOM, .parse = cors_read},
    {.key = "logging", .kind = CONFIG_FIELD_CUSTOM, .parse = logging_read},
    {.key = "tls", .kind = CONFIG_FIELD_CUSTOM, .parse = tls_read},
    {.key = "http2", .kind = CONFIG_FIELD_CUSTOM, .parse = http2_read},
    {.key = "shutdown_grace", .kind = CONFIG_FIELD_DURATION, .min = 0,
     .offset = offsetof(struct config, shutdown_grace_ms)},
    {.key = "max_payload", .kind = CONFIG_FIELD_SIZE, .min = 1,
     .offset = offsetof(struct config, max_payload)},
    {.key = "readyz_details", .kind = CONFIG_FIELD_BOOL,
     .offset = offsetof(struct config, readyz_details)},
};
/* clang-format on */

/* "no sources" / "no routes", unless the list itself was already wrong. */
static void root_check_list(struct config_reader *rd, struct config_pos where,
                            const struct config_hit *hits, const char *key,
                            size_t count)
{
    const struct config_hit *hit =
        config_hit_find(root_fields, ARRAY_LEN(root_fields), hits, key);

    if (count > 0 || (hit->value && !hit->ok))
        return;
    if (hit->value)
        where = config_node_pos(hit->value);
    config_reader_error(rd, where, "no %s: at least one is required", key);
}

static void root_check(struct config_reader *rd, const struct config *cfg,
                       struct config_pos where, const struct config_hit *hits)
{
    root_check_list(rd, where, hits, "sources", cfg->nsources);
    root_check_list(rd, where, hits, "routes", cfg->nroutes);
    if (!cfg->auth.cookie)
        return;
    for (size_t i = 0; i < cfg->cors_origins.count; i++)
        if (strcmp(cfg->cors_origins.items[i], "*") == 0)
            config_reader_error(rd, cfg->cors_origins.pos[i],
                                "origins: '*' cannot be used with "
                                "auth.cookie (never '*' with cookies; list "
                                "the origins)");
}

static void root_read(struct config_reader *rd, struct config *cfg)
{
    struct config_hit hits[ARRAY_LEN(root_fields)];
    yaml_node_t *root = config_reader_root(rd);
    struct config_pos where = {1, 1};

    memset(hits, 0, sizeof(hits));
    if (root && !config_node_is_null(root)) {
        where = config_node_pos(root);
        if (config_node_expect(rd, "top level", root, YAML_MAPPING_NODE) != 0)
            return;
        config_read_section(rd, root, "at the top level", root_fields,
                            ARRAY_LEN(root_fields), cfg, hits);
    }
    root_check(rd, cfg, where, hits);
}

/* A config holding every default of SPEC 3, or NULL when out of memory. */
static struct config *config_new(const char *name)
{
    struct config *cfg = calloc(1, sizeof(*cfg));

    if (!cfg)
        return NULL;
    cfg->file = strdup(name);
    cfg->listen_host = strdup("127.0.0.1");
    if (!cfg->file || !cfg->listen_host) {
        config_free(cfg);
        return NULL;
    }
    cfg->listen_port = 8080;
    cfg->history.max_events = 100000;
    cfg->history.max_bytes = 64 * MIB;
    cfg->history.max_age_ms = 60 * 60 * 1000;
    cfg->history.fsync = FSYNC_BATCH;
    cfg->stream.heartbeat_ms = 15 * 1000;
    cfg->stream.retry_ms = 2 * 1000;
    cfg->stream.max_pending = MIB;
    cfg->stream.max_connections = 10000;
    cfg->stream.retry_overload_ms = 10 * 1000;
    cfg->stream.max_keys = 10000;
    cfg->tls.min_version = TLS_MIN_1_2;
    cfg->http2.max_concurrent_streams = 100;
    cfg->auth.jwt.algorithm = CONFIG_JWT_HS256;
    cfg->auth.jwt.leeway_ms = 5 * 1000;
    cfg->log_level = LOG_INFO;
    cfg->log_format = LOG_FORMAT_TEXT;
    cfg->shutdown_grace_ms = 5 * 1000;
    cfg->max_payload = MIB;
    return cfg;
}

/* ---- public ------------------------------------------------------------ */

struct config *config_parse(const char *name, const char *text, size_t len,
                            char **errors)
{
    struct config_reader rd;
    struct config *cfg = NULL;

    if (!name)
        name = "<config>";
    if (config_reader_open(&rd, name) == 0 &&
        config_reader_load(&rd, text, len) == 0) {
        cfg = config_new(name);
        if (cfg)
            root_read(&rd, cfg);
        else
            config_reader_oom(&rd, NULL);
    }
    if (config_reader_close(&rd, errors) != 0) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

/* Reads a whole file into a new buffer (the caller frees it); on failure
 * returns NULL with an errno value in *err. */
static char *read_file(const char *path, size_t *len, int *err)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0;
    size_t used = 0;

    if (!f) {
        *err = errno;
        return NULL;
    }
    for (;;) {
        size_t got;

        if (used == cap) {
            char *bigger = NULL;
            if (cap < CONFIG_FILE_MAX)
                bigger = realloc(buf, cap + 65536);
            if (!bigger) {
                *err = cap < CONFIG_FILE_MAX ? ENOMEM : EFBIG;
                goto fail;
            }
            buf = bigger;
            cap += 65536;
        }
        got = fread(buf + used, 1, cap - used, f);
        used += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        *err = errno ? errno : EIO;
        goto fail;
    }
    fclose(f);
    *len = used;
    return buf;

fail:
    fclose(f);
    free(buf);
    return NULL;
}

struct config *config_load_file(const char *path, char **errors)
{
    size_t len = 0;
    int err = 0;
    char *text;
    struct config *cfg;

    errno = 0;
    text = read_file(path, &len, &err);
    if (!text) {
        size_t size = strlen(path) + strlen(strerror(err)) + 32;

        *errors = malloc(size);
        if (*errors)
            snprintf(*errors, size, "%s:0:0: cannot read: %s\n", path,
                     strerror(err));
        return NULL;
    }
    cfg = config_parse(path, text, len, errors);
    free(text);
    return cfg;
}

struct config *config_load_default(char **errors)
{
    return config_parse("<embedded>", default_yaml, strlen(default_yaml),
                        errors);
}

const char *config_default_yaml(void)
{
    return default_yaml;
}

static void source_free(struct source_config *src)
{
    free(src->name);
    free(src->url);
    config_strv_clear(&src->subscribe);
    free(src->client_id);
    free(src->ca_file);
    free(src->cert_file);
    free(src->key_file);
    config_strv_clear(&src->channels);
    config_strv_clear(&src->patterns);
    config_strv_clear(&src->streams);
}

static void route_free(struct route_config *route)
{
    free(route->path);
    config_strv_clear(&route->topics);
    free(route->event_name);
    free(route->data_field);
    free(route->end_field);
    free(route->end_value);
}

static void auth_free(struct auth_config *auth)
{
    for (size_t i = 0; i < auth->ntokens; i++) {
        free(auth->tokens[i].name);
        free(auth->tokens[i].token);
        config_strv_clear(&auth->tokens[i].allow);
    }
    free(auth->tokens);
    free(auth->jwt.secret);
    free(auth->jwt.public_key_file);
    free(auth->jwt.issuer);
    free(auth->jwt.audience);
    config_strv_clear(&auth->jwt.allow);
    free(auth->cookie);
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->nsources; i++)
        source_free(&cfg->sources[i]);
    free(cfg->sources);
    for (size_t i = 0; i < cfg->nroutes; i++)
        route_free(&cfg->routes[i]);
    free(cfg->routes);
    free(cfg->history.dir);
    free(cfg->history.redis);
    free(cfg->history.key);
    auth_free(&cfg->auth);
    config_strv_clear(&cfg->cors_origins);
    free(cfg->tls.cert_file);
    free(cfg->tls.key_file);
    free(cfg->file);
    free(cfg->listen_host);
    free(cfg);
}

const char *config_source_type_name(enum source_type type)
{
    if ((size_t)type >= ARRAY_LEN(source_type_names))
        return "unknown";
    return source_type_names[type];
}
