/*
 * config_reader.c - reading libyaml nodes into C values (see
 * config_reader.h).
 *
 * Why two passes over the text: libyaml's document loader resolves
 * aliases silently (a node then has several parents, and a walk over
 * nested aliases grows exponentially), so a first pass over the event
 * stream refuses anchors and aliases at their exact position before the
 * tree is built. The same pass reports syntax errors and a second
 * document.
 *
 * Errors go to an open_memstream() buffer, one "NAME:LINE:COL: message"
 * line each, at most READER_MAX_ERRORS shown. Invariant: a message may
 * name a key or describe what was expected, but never repeats a value.
 */
#include "config/config_reader.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_scalar.h"

/* Beyond this many messages the rest are counted but not written. */
#define READER_MAX_ERRORS 50

/* ---- errors and nodes ------------------------------------------------ */

struct config_pos config_node_pos(const yaml_node_t *node)
{
    struct config_pos pos = {(int)node->start_mark.line + 1,
                             (int)node->start_mark.column + 1};
    return pos;
}

static struct config_pos mark_pos(yaml_mark_t mark)
{
    struct config_pos pos = {(int)mark.line + 1, (int)mark.column + 1};
    return pos;
}

/* Appends one "NAME:LINE:COL: message" line to the loader's errors. */
void config_reader_error(struct config_reader *rd, struct config_pos pos,
                         const char *fmt, ...)
{
    va_list ap;

    rd->nerrors++;
    if (!rd->errs || rd->nerrors > READER_MAX_ERRORS + 1)
        return;
    fprintf(rd->errs, "%s:%d:%d: ", rd->name, pos.line, pos.col);
    if (rd->nerrors == READER_MAX_ERRORS + 1) {
        fputs("too many errors; the rest are not shown\n", rd->errs);
        return;
    }
    va_start(ap, fmt);
    vfprintf(rd->errs, fmt, ap);
    va_end(ap);
    fputc('\n', rd->errs);
}

void config_reader_oom(struct config_reader *rd, const yaml_node_t *node)
{
    struct config_pos none = {0, 0};

    config_reader_error(rd, node ? config_node_pos(node) : none,
                        "out of memory");
}

/* Copies user text that is safe to show (a key, a name, a scheme) into
 * buf as printable ASCII, shortened to fit: one message stays one line. */
const char *config_echo_safe(const char *s, char *buf, size_t len)
{
    size_t i;

    for (i = 0; s[i] && i + 1 < len; i++)
        buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    buf[i] = '\0';
    if (s[i] && len > 4)
        memcpy(buf + len - 4, "...", 4);
    return buf;
}

static yaml_node_t *doc_node(struct config_reader *rd, int index)
{
    return yaml_document_get_node(&rd->doc, index);
}

static const char *node_kind_name(const yaml_node_t *node)
{
    switch (node->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    default:
        return "a single value";
    }
}

/* YAML's null: a plain "", "~" or "null". "key:" means the key is unset. */
bool config_node_is_null(const yaml_node_t *node)
{
    const char *v;

    if (node->type != YAML_SCALAR_NODE ||
        node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    v = (const char *)node->data.scalar.value;
    return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

int config_node_expect(struct config_reader *rd, const char *what,
                       const yaml_node_t *node, yaml_node_type_t type)
{
    const char *want = type == YAML_MAPPING_NODE ? "a mapping" : "a list";

    if (node->type == type)
        return 0;
    config_reader_error(rd, config_node_pos(node), "%s: expected %s, found %s",
                        what, want, node_kind_name(node));
    return -1;
}

size_t config_seq_len(const yaml_node_t *node)
{
    return (size_t)(node->data.sequence.items.top -
                    node->data.sequence.items.start);
}

yaml_node_t *config_seq_item(struct config_reader *rd, const yaml_node_t *node,
                             size_t i)
{
    return doc_node(rd, node->data.sequence.items.start[i]);
}

/* ---- scalars ----------------------------------------------------------- */

/* See config_reader.h; every typed read below starts here. */
char *config_read_text(struct config_reader *rd, const char *key,
                       const yaml_node_t *node, const char *expected)
{
    char reason[256];
    char *text;

    if (node->type != YAML_SCALAR_NODE) {
        config_reader_error(rd, config_node_pos(node),
                            "%s: expected %s, found %s", key, expected,
                            node_kind_name(node));
        return NULL;
    }
    text =
        config_scalar_expand((const char *)node->data.scalar.value,
                             node->data.scalar.length, reason, sizeof(reason));
    if (!text)
        config_reader_error(rd, config_node_pos(node), "%s: %s", key, reason);
    return text;
}

static void range_error(struct config_reader *rd, const char *key,
                        const yaml_node_t *node, const char *lo, const char *hi)
{
    if (hi)
        config_reader_error(rd, config_node_pos(node),
                            "%s: must be from %s to %s", key, lo, hi);
    else
        config_reader_error(rd, config_node_pos(node),
                            "%s: must be at least %s", key, lo);
}

/* The messages of the number parsers; no value is echoed. */
static void number_error(struct config_reader *rd, const char *key,
                         const yaml_node_t *node, const char *expected,
                         enum config_scalar_result rc)
{
    if (rc == CONFIG_SCALAR_NEGATIVE)
        config_reader_error(rd, config_node_pos(node),
                            "%s: must not be negative", key);
    else if (rc == CONFIG_SCALAR_RANGE)
        config_reader_error(rd, config_node_pos(node), "%s: number too large",
                            key);
    else
        config_reader_error(rd, config_node_pos(node), "%s: expected %s", key,
                            expected);
}

static int read_int(struct config_reader *rd, const char *key,
                    const yaml_node_t *node, int64_t min, int64_t max,
                    int64_t *out)
{
    char lo[24];
    char hi[24];
    int64_t v;
    enum config_scalar_result rc;
    char *text = config_read_text(rd, key, node, "an integer");

    if (!text)
        return -1;
    rc = config_scalar_int(text, &v);
    free(text);
    if (rc != CONFIG_SCALAR_OK) {
        number_error(rd, key, node, "an integer", rc);
        return -1;
    }
    if (v < min || (max != 0 && v > max)) {
        snprintf(lo, sizeof(lo), "%" PRId64, min);
        snprintf(hi, sizeof(hi), "%" PRId64, max);
        range_error(rd, key, node, lo, max != 0 ? hi : NULL);
        return -1;
    }
    *out = v;
    return 0;
}

static int read_duration(struct config_reader *rd, const char *key,
                         const yaml_node_t *node, int64_t min, int64_t max,
                         int64_t *out)
{
    static const char expected[] = "a duration like 15s or 250ms";
    char lo[32];
    char hi[32];
    int64_t v;
    enum config_scalar_result rc;
    char *text = config_read_text(rd, key, node, expected);

    if (!text)
        return -1;
    rc = config_scalar_duration(text, &v);
    if (rc == CONFIG_SCALAR_SYNTAX && text[0] &&
        strspn(text, "0123456789") == strlen(text))
        config_reader_error(
            rd, config_node_pos(node),
            "%s: expected %s (a number needs a unit: ms, s, m or h)", key,
            expected);
    else if (rc != CONFIG_SCALAR_OK)
        number_error(rd, key, node, expected, rc);
    free(text);
    if (rc != CONFIG_SCALAR_OK)
        return -1;
    if (v < min || (max != 0 && v > max)) {
        config_scalar_format_duration(min, lo, sizeof(lo));
        config_scalar_format_duration(max, hi, sizeof(hi));
        range_error(rd, key, node, lo, max != 0 ? hi : NULL);
        return -1;
    }
    *out = v;
    return 0;
}

static int read_size(struct config_reader *rd, const char *key,
                     const yaml_node_t *node, int64_t min, int64_t max,
                     uint64_t *out)
{
    static const char expected[] = "a size like 64MiB, 512KiB or 1024";
    char lo[32];
    char hi[32];
    uint64_t v;
    enum config_scalar_result rc;
    char *text = config_read_text(rd, key, node, expected);

    if (!text)
        return -1;
    rc = config_scalar_size(text, &v);
    free(text);
    if (rc != CONFIG_SCALAR_OK) {
        number_error(rd, key, node, expected, rc);
        return -1;
    }
    if (v < (uint64_t)min || (max != 0 && v > (uint64_t)max)) {
        config_scalar_format_size((uint64_t)min, lo, sizeof(lo));
        config_scalar_format_size((uint64_t)max, hi, sizeof(hi));
        range_error(rd, key, node, lo, max != 0 ? hi : NULL);
        return -1;
    }
    *out = v;
    return 0;
}

static int read_bool(struct config_reader *rd, const char *key,
                     const yaml_node_t *node, bool *out)
{
    static const char expected[] = "true or false";
    char *text = config_read_text(rd, key, node, expected);
    int rc;

    if (!text)
        return -1;
    rc = config_scalar_bool(text, out);
    free(text);
    if (rc != 0)
        config_reader_error(rd, config_node_pos(node), "%s: expected %s", key,
                            expected);
    return rc;
}

/* Reads one of names[] (exact spelling) and stores its index. */
static int read_choice(struct config_reader *rd, const char *key,
                       const yaml_node_t *node, const char *const *names,
                       size_t nnames, int *out)
{
    char expected[128] = "one of";
    char *text = config_read_text(rd, key, node, "a single value");

    if (!text)
        return -1;
    for (size_t i = 0; i < nnames; i++) {
        if (strcmp(text, names[i]) == 0) {
            free(text);
            *out = (int)i;
            return 0;
        }
    }
    free(text);
    for (size_t i = 0; i < nnames; i++) {
        size_t used = strlen(expected);
        snprintf(expected + used, sizeof(expected) - used, "%s %s",
                 i == 0 ? "" : ",", names[i]);
    }
    config_reader_error(rd, config_node_pos(node), "%s: expected %s", key,
                        expected);
    return -1;
}

void config_strv_clear(struct config_strv *v)
{
    for (size_t i = 0; i < v->count; i++)
        free(v->items[i]);
    free(v->items);
    free(v->pos);
    memset(v, 0, sizeof(*v));
}

int config_strv_add_unique(struct config_strv *v, char *s)
{
    char **items;

    if (s == NULL)
        return -1;
    for (size_t i = 0; i < v->count; i++) {
        if (strcmp(v->items[i], s) == 0) {
            free(s);
            return 0;
        }
    }
    items = realloc(v->items, (v->count + 1) * sizeof(*items));
    if (items == NULL) {
        free(s);
        return -1;
    }
    v->items = items;
    v->items[v->count++] = s;
    return 0;
}

int config_strv_copy_unique(struct config_strv *dst,
                            const struct config_strv *src)
{
    for (size_t i = 0; i < src->count; i++) {
        if (config_strv_add_unique(dst, strdup(src->items[i])) != 0)
            return -1;
    }
    return 0;
}

/* Reads a list of non-empty strings, keeping each item's position. */
static int read_strv(struct config_reader *rd, const char *key,
                     yaml_node_t *node, struct config_strv *out)
{
    size_t n;
    int rc = 0;

    if (config_node_expect(rd, key, node, YAML_SEQUENCE_NODE) != 0)
        return -1;
    config_strv_clear(out);
    n = config_seq_len(node);
    if (n == 0)
        return 0;
    out->items = calloc(n, sizeof(*out->items));
    out->pos = calloc(n, sizeof(*out->pos));
    if (!out->items || !out->pos) {
        config_reader_oom(rd, node);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = config_seq_item(rd, node, i);
        char *text = config_read_text(rd, key, item, "a string");

        if (text && !*text) {
            config_reader_error(rd, config_node_pos(item),
                                "%s: empty string in list", key);
            free(text);
            text = NULL;
        }
        if (!text) {
            rc = -1;
            continue;
        }
        out->items[out->count] = text;
        out->pos[out->count] = config_node_pos(item);
        out->count++;
    }
    return rc;
}

/* ---- tables ------------------------------------------------------------ */

/* A string key: an empty value stores NULL, or is an error if required. */
static int read_string_field(struct config_reader *rd,
                             const struct config_field *f,
                             const yaml_node_t *value, char **slot)
{
    char *text = config_read_text(rd, f->key, value, "a string");

    if (!text)
        return -1;
    if (!*text) {
        free(text);
        text = NULL;
        if (f->required) {
            config_reader_error(rd, config_node_pos(value),
                                "%s: must not be empty", f->key);
            return -1;
        }
    }
    free(*slot);
    *slot = text;
    return 0;
}

static int read_strv_field(struct config_reader *rd,
                           const struct config_field *f, yaml_node_t *value,
                           struct config_strv *slot)
{
    if (read_strv(rd, f->key, value, slot) != 0)
        return -1;
    if (f->required && slot->count == 0) {
        config_reader_error(rd, config_node_pos(value), "%s: must not be empty",
                            f->key);
        return -1;
    }
    return 0;
}

/* Reads value into the slot of base that f describes. */
static int field_apply(struct config_reader *rd, const struct config_field *f,
                       yaml_node_t *value, void *base)
{
    void *slot = (char *)base + f->offset;
    int64_t v;
    int choice;

    switch (f->kind) {
    case CONFIG_FIELD_STRING:
        return read_string_field(rd, f, value, slot);
    case CONFIG_FIELD_BOOL:
        return read_bool(rd, f->key, value, slot);
    case CONFIG_FIELD_INT:
        if (read_int(rd, f->key, value, f->min, f->max, &v) != 0)
            return -1;
        *(int *)slot = (int)v;
        return 0;
    case CONFIG_FIELD_COUNT:
        if (read_int(rd, f->key, value, f->min, f->max, &v) != 0)
            return -1;
        *(uint64_t *)slot = (uint64_t)v;
        return 0;
    case CONFIG_FIELD_DURATION:
        return read_duration(rd, f->key, value, f->min, f->max, slot);
    case CONFIG_FIELD_SIZE:
        return read_size(rd, f->key, value, f->min, f->max, slot);
    case CONFIG_FIELD_CHOICE:
        if (read_choice(rd, f->key, value, f->names, f->nnames, &choice) != 0)
            return -1;
        *(int *)slot = choice;
        return 0;
    case CONFIG_FIELD_STRV:
        return read_strv_field(rd, f, value, slot);
    case CONFIG_FIELD_CUSTOM:
        return f->parse(rd, f->key, value, base);
    }
    return -1;
}

static const struct config_field *field_find(const struct config_field *fields,
                                             size_t n, const yaml_node_t *key)
{
    const char *text = (const char *)key->data.scalar.value;

    for (size_t i = 0; i < n; i++)
        if (strlen(fields[i].key) == key->data.scalar.length &&
            memcmp(fields[i].key, text, key->data.scalar.length) == 0)
            return &fields[i];
    return NULL;
}

static void unknown_key(struct config_reader *rd, const yaml_node_t *key,
                        const char *where, const struct config_field *fields,
                        size_t n)
{
    const char *text = (const char *)key->data.scalar.value;
    const char *hint = NULL;
    size_t best = 3; /* a hint needs a distance of 2 or less */
    char shown[64];

    for (size_t i = 0; i < n; i++) {
        size_t d = config_scalar_distance(text, fields[i].key);
        if (d < best) {
            best = d;
            hint = fields[i].key;
        }
    }
    config_echo_safe(text, shown, sizeof(shown));
    if (hint)
        config_reader_error(rd, config_node_pos(key),
                            "unknown key '%s' %s (did you mean '%s'?)", shown,
                            where, hint);
    else
        config_reader_error(rd, config_node_pos(key), "unknown key '%s' %s",
                            shown, where);
}

/* Reports a required key that is missing or null. */
static void check_required(struct config_reader *rd, const yaml_node_t *map,
                           const char *where, const struct config_field *fields,
                           size_t n, const struct config_hit *hits)
{
    for (size_t i = 0; i < n; i++) {
        if (!fields[i].required || hits[i].value)
            continue;
        if (hits[i].key)
            config_reader_error(rd, config_node_pos(hits[i].key),
                                "%s: must not be empty", fields[i].key);
        else
            config_reader_error(rd, config_node_pos(map), "missing key '%s' %s",
                                fields[i].key, where);
    }
}

/* See config_reader.h. A repeated key is reported and its value ignored. */
void config_read_section(struct config_reader *rd, yaml_node_t *map,
                         const char *where, const struct config_field *fields,
                         size_t n, void *base, struct config_hit *hits)
{
    memset(hits, 0, n * sizeof(*hits));
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *key = doc_node(rd, p->key);
        yaml_node_t *value = doc_node(rd, p->value);
        const struct config_field *f;
        struct config_hit *hit;

        if (key->type != YAML_SCALAR_NODE) {
            config_reader_error(rd, config_node_pos(key),
                                "a key must be a name, not %s",
                                node_kind_name(key));
            continue;
        }
        f = field_find(fields, n, key);
        if (!f) {
            unknown_key(rd, key, where, fields, n);
            continue;
        }
        hit = &hits[f - fields];
        if (hit->key) {
            config_reader_error(rd, config_node_pos(key),
                                "duplicate key '%s' %s (first at line %d)",
                                f->key, where, config_node_pos(hit->key).line);
            continue;
        }
        hit->key = key;
        if (config_node_is_null(value))
            continue;
        hit->value = value;
        hit->ok = field_apply(rd, f, value, base) == 0;
    }
    check_required(rd, map, where, fields, n, hits);
}

/* The hit of fields[]'s key `key`; the key must be in the table. */
const struct config_hit *config_hit_find(const struct config_field *fields,
                                         size_t n,
                                         const struct config_hit *hits,
                                         const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(fields[i].key, key) == 0)
            return &hits[i];
    return NULL;
}

/* ---- sections and lists ------------------------------------------------ */

/* See config_reader.h. */
int config_read_map(struct config_reader *rd, const char *key,
                    yaml_node_t *value, const char *where,
                    const struct config_field *fields, size_t n, void *base,
                    struct config_hit *hits)
{
    if (config_node_expect(rd, key, value, YAML_MAPPING_NODE) != 0)
        return -1;
    config_read_section(rd, value, where, fields, n, base, hits);
    return 0;
}

/* See config_reader.h. The count grows before each item is read, so the
 * array and its count agree at every point. */
int config_read_seq(struct config_reader *rd, const char *key,
                    yaml_node_t *value, size_t elem_size,
                    void (*item)(struct config_reader *rd, yaml_node_t *node,
                                 void *items, size_t i),
                    void **items, size_t *count)
{
    size_t n;
    char *array;

    if (config_node_expect(rd, key, value, YAML_SEQUENCE_NODE) != 0)
        return -1;
    n = config_seq_len(value);
    if (n == 0)
        return 0;
    array = calloc(n, elem_size);
    if (!array) {
        config_reader_oom(rd, value);
        return -1;
    }
    *items = array;
    for (size_t i = 0; i < n; i++) {
        *count = i + 1;
        item(rd, config_seq_item(rd, value, i), array, i);
    }
    return 0;
}

/* ---- parsing ----------------------------------------------------------- */

/* Line and column of a byte offset, for reader errors (bad encoding),
 * which libyaml reports by offset only. */
static struct config_pos offset_pos(const char *text, size_t len, size_t offset)
{
    struct config_pos pos = {1, 1};

    for (size_t i = 0; i < offset && i < len; i++) {
        if (text[i] == '\n') {
            pos.line++;
            pos.col = 1;
        } else {
            pos.col++;
        }
    }
    return pos;
}

static void syntax_error(struct config_reader *rd, const yaml_parser_t *parser,
                         const char *text, size_t len)
{
    const char *problem = parser->problem ? parser->problem : "unknown";

    if (parser->error == YAML_MEMORY_ERROR)
        config_reader_oom(rd, NULL);
    else if (parser->error == YAML_READER_ERROR)
        config_reader_error(rd, offset_pos(text, len, parser->problem_offset),
                            "invalid input: %s", problem);
    else if (parser->context)
        config_reader_error(rd, mark_pos(parser->problem_mark),
                            "syntax error: %s (%s at line %d)", problem,
                            parser->context,
                            (int)parser->context_mark.line + 1);
    else
        config_reader_error(rd, mark_pos(parser->problem_mark),
                            "syntax error: %s", problem);
}

/* Reports an anchor on the node an event starts. */
static void prescan_anchor(struct config_reader *rd, const yaml_event_t *event)
{
    const yaml_char_t *anchor = NULL;

    if (event->type == YAML_SCALAR_EVENT)
        anchor = event->data.scalar.anchor;
    else if (event->type == YAML_SEQUENCE_START_EVENT)
        anchor = event->data.sequence_start.anchor;
    else if (event->type == YAML_MAPPING_START_EVENT)
        anchor = event->data.mapping_start.anchor;
    if (anchor)
        config_reader_error(rd, mark_pos(event->start_mark),
                            "YAML anchors (&name) are not supported");
}

/*
 * Pass one: reads the event stream and reports syntax errors, anchors,
 * aliases and extra documents. Returns 0 when the text may be loaded.
 */
static int prescan(struct config_reader *rd, const char *text, size_t len)
{
    yaml_parser_t parser;
    yaml_event_t event;
    unsigned before = rd->nerrors;
    int documents = 0;
    bool done = false;

    if (!yaml_parser_initialize(&parser)) {
        config_reader_oom(rd, NULL);
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    while (!done && rd->nerrors <= READER_MAX_ERRORS) {
        if (!yaml_parser_parse(&parser, &event)) {
            syntax_error(rd, &parser, text, len);
            break;
        }
        if (event.type == YAML_ALIAS_EVENT)
            config_reader_error(rd, mark_pos(event.start_mark),
                                "YAML aliases (*name) are not supported");
        else if (event.type == YAML_DOCUMENT_START_EVENT && ++documents > 1)
            config_reader_error(rd, mark_pos(event.start_mark),
                                "only one YAML document is allowed");
        prescan_anchor(rd, &event);
        done = event.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&event);
    }
    yaml_parser_delete(&parser);
    return rd->nerrors == before ? 0 : -1;
}

/* Pass two: loads the document tree into rd->doc. */
static int document_load(struct config_reader *rd, const char *text, size_t len)
{
    yaml_parser_t parser;
    int ok;

    if (!yaml_parser_initialize(&parser)) {
        config_reader_oom(rd, NULL);
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    ok = yaml_parser_load(&parser, &rd->doc);
    if (ok)
        rd->have_doc = true;
    else
        syntax_error(rd, &parser, text, len);
    yaml_parser_delete(&parser);
    return ok ? 0 : -1;
}

/* ---- lifecycle --------------------------------------------------------- */

int config_reader_open(struct config_reader *rd, const char *name)
{
    memset(rd, 0, sizeof(*rd));
    rd->name = name;
    rd->errs = open_memstream(&rd->errbuf, &rd->errlen);
    return rd->errs ? 0 : -1;
}

int config_reader_load(struct config_reader *rd, const char *text, size_t len)
{
    if (prescan(rd, text, len) != 0)
        return -1;
    return document_load(rd, text, len);
}

yaml_node_t *config_reader_root(struct config_reader *rd)
{
    return rd->have_doc ? yaml_document_get_root_node(&rd->doc) : NULL;
}

int config_reader_close(struct config_reader *rd, char **errors)
{
    bool failed = rd->nerrors > 0 || !rd->errs;

    if (rd->errs && fclose(rd->errs) != 0)
        failed = true;
    rd->errs = NULL;
    if (rd->have_doc)
        yaml_document_delete(&rd->doc);
    rd->have_doc = false;
    *errors = NULL;
    if (!failed) {
        free(rd->errbuf);
        return 0;
    }
    if (!rd->errbuf || !rd->errbuf[0]) {
        size_t size = strlen(rd->name) + 32;

        free(rd->errbuf);
        rd->errbuf = malloc(size);
        if (rd->errbuf)
            snprintf(rd->errbuf, size, "%s:0:0: out of memory\n", rd->name);
    }
    *errors = rd->errbuf;
    return -1;
}
