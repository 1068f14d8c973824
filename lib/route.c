/*
 * route.c - URL path templates, their topic templates, and the request
 * path lookup.
 *
 * route_table_build() compiles the routes of a config once per load: the
 * path template becomes a list of segments (literal, {name}, a last
 * {name*}); each topic template "SOURCE:PATTERN" is checked (source known,
 * parameters from the path, pattern syntax) and kept with its source. All
 * errors are collected as "FILE:LINE:COL: message" lines.
 *
 * Per request, route_table_match() percent-decodes the raw path segment by
 * segment and picks the most specific matching route (literal > {name} >
 * {name*}, compared segment by segment); route_resolve() substitutes the
 * decoded values into the topic templates after topic_param_safe() says a
 * value cannot change a pattern's meaning. At start-up (and on SIGHUP)
 * route_topic_upstream() gives each template's upstream form, from which
 * bridge/upstream.c derives each source's subscriptions.
 *
 * Invariant: a built table is immutable and borrows its strings from the
 * config (which must outlive it); only segments and captured values are
 * copies.
 */
#include "lib/route.h"

#include "lib/percent.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROUTE_MAX_PATH 8192    /* bytes of a raw request path */
#define ROUTE_MAX_SEGMENTS 64  /* segments of a path template */
/* Segments of a request path: a {x*} parameter may carry a deep MQTT
 * topic (the path's byte limit bounds it anyway). */
#define ROUTE_MAX_REQUEST_SEGMENTS 1024
#define ROUTE_REASON_MAX 121   /* a resolve refusal: 120 chars and NUL */

static const char *const reserved_paths[] = {"/healthz", "/readyz",
                                             "/metrics"};

enum seg_kind {
    SEG_LITERAL, /* compared after percent-decoding */
    SEG_PARAM,   /* {name}: one non-empty segment */
    SEG_STAR,    /* {name*}: the last segment; one or more segments */
};

struct route_seg {
    enum seg_kind kind;
    char *text; /* owned: the decoded literal, or the parameter name */
    size_t len;
};

struct route_topic {
    uint32_t source;
    enum source_type type;
    const char *pattern; /* borrowed from the config: after "SOURCE:" */
};

struct route {
    const struct route_config *cfg;
    size_t index;
    struct route_seg *segs;
    size_t nsegs;
    size_t nparams;
    const char *param_names[ROUTE_MAX_PARAMS]; /* borrowed from segs */
    bool param_star[ROUTE_MAX_PARAMS];
    struct route_topic *topics;
    size_t ntopics;
    bool per_key; /* its one topic is a per-key pattern (topic_syntax) */
};

struct route_table {
    const struct config *cfg;
    struct route *routes;
    size_t count;
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

static bool name_start_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool name_char(char c)
{
    return name_start_char(c) || (c >= '0' && c <= '9');
}

/* [A-Za-z_][A-Za-z0-9_]* */
static bool valid_name(const char *s, size_t len)
{
    if (len == 0 || !name_start_char(s[0]))
        return false;
    for (size_t i = 1; i < len; i++) {
        if (!name_char(s[i]))
            return false;
    }
    return true;
}

/* Braces must pair up without nesting. NULL, or what is wrong. */
static const char *brace_problem(const char *s, size_t len)
{
    bool open = false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '{') {
            if (open)
                return "nested '{'";
            open = true;
        } else if (s[i] == '}') {
            if (!open)
                return "unbalanced '}'";
            open = false;
        }
    }
    return open ? "unbalanced '{'" : NULL;
}

/* One piece of a topic template: literal text or a {name} reference. */
struct piece {
    const char *text;
    size_t len;
    bool param;
};

/* Iterates over a template whose braces are balanced (brace_problem). */
static bool piece_next(const char **cursor, struct piece *pc)
{
    const char *s = *cursor;
    if (*s == '\0')
        return false;
    const char *close = s[0] == '{' ? strchr(s, '}') : NULL;
    if (close != NULL) {
        pc->text = s + 1;
        pc->len = (size_t)(close - s - 1);
        pc->param = true;
        *cursor = close + 1;
        return true;
    }
    size_t n = strcspn(s + 1, "{") + 1;
    pc->text = s;
    pc->len = n;
    pc->param = false;
    *cursor = s + n;
    return true;
}

/* The index of the route's parameter called name, or -1. */
static int route_param_find(const struct route *r, const char *name,
                            size_t len)
{
    for (size_t i = 0; i < r->nparams; i++) {
        if (strlen(r->param_names[i]) == len &&
            memcmp(r->param_names[i], name, len) == 0)
            return (int)i;
    }
    return -1;
}

/* ------------------------------------------------------------------ */
/* Building                                                            */
/* ------------------------------------------------------------------ */

/* Error collection for one build: a memstream of "FILE:LINE:COL: ..." */
struct build {
    const struct config *cfg;
    FILE *out;
    char *buf;
    size_t size;
    size_t nerrors;
};

__attribute__((format(printf, 3, 4))) static void
build_error(struct build *b, struct config_pos pos, const char *fmt, ...)
{
    va_list ap;
    const char *file = b->cfg->file ? b->cfg->file : "<config>";
    b->nerrors++;
    if (b->out == NULL)
        return;
    fprintf(b->out, "%s:%d:%d: ", file, pos.line, pos.col);
    va_start(ap, fmt);
    vfprintf(b->out, fmt, ap);
    va_end(ap);
    fputc('\n', b->out);
}

static struct config_pos topic_pos(const struct route_config *rc, size_t i)
{
    if (rc->topics.pos != NULL)
        return rc->topics.pos[i];
    return rc->pos;
}

static void route_clear(struct route *r)
{
    for (size_t i = 0; i < r->nsegs; i++)
        free(r->segs[i].text);
    free(r->segs);
    free(r->topics);
}

/* A {name} or {name*} segment; braces already checked balanced. */
static int parse_param_segment(struct build *b, struct route *r,
                               struct route_seg *seg, const char *s,
                               size_t len, bool last)
{
    struct config_pos pos = r->cfg->path_pos;
    if (s[0] != '{' || s[len - 1] != '}' || memchr(s + 1, '{', len - 1)) {
        build_error(b, pos, "a parameter must be a whole path segment "
                            "('%.*s')", (int)len, s);
        return -1;
    }
    const char *name = s + 1;
    size_t nlen = len - 2;
    bool star = nlen > 0 && name[nlen - 1] == '*';
    if (star)
        nlen--;
    if (!valid_name(name, nlen)) {
        build_error(b, pos, "bad parameter name '%.*s' (use "
                            "[A-Za-z_][A-Za-z0-9_]*)", (int)len, s);
        return -1;
    }
    if (star && !last) {
        build_error(b, pos, "'%.*s' must be the last path segment",
                    (int)len, s);
        return -1;
    }
    if (route_param_find(r, name, nlen) >= 0) {
        build_error(b, pos, "duplicate parameter '{%.*s}'", (int)nlen,
                    name);
        return -1;
    }
    if (r->nparams == ROUTE_MAX_PARAMS) {
        build_error(b, pos, "too many parameters (at most %d)",
                    ROUTE_MAX_PARAMS);
        return -1;
    }
    seg->kind = star ? SEG_STAR : SEG_PARAM;
    seg->text = strndup(name, nlen);
    if (seg->text == NULL)
        return -1;
    seg->len = nlen;
    r->param_names[r->nparams] = seg->text;
    r->param_star[r->nparams] = star;
    r->nparams++;
    return 0;
}

static int parse_segment(struct build *b, struct route *r,
                         struct route_seg *seg, const char *s, size_t len,
                         bool last)
{
    struct config_pos pos = r->cfg->path_pos;
    const char *problem = brace_problem(s, len);
    if (problem != NULL) {
        build_error(b, pos, "%s in path", problem);
        return -1;
    }
    if (memchr(s, '{', len) != NULL)
        return parse_param_segment(b, r, seg, s, len, last);
    if (len == 0 && !last) {
        build_error(b, pos, "empty segment in path");
        return -1;
    }
    seg->kind = SEG_LITERAL;
    seg->text = malloc(len + 1);
    if (seg->text == NULL)
        return -1;
    long n = percent_decode(s, len, seg->text, false);
    if (n < 0) {
        build_error(b, pos, "bad percent-encoding in path");
        return -1;
    }
    seg->text[n] = '\0';
    seg->len = (size_t)n;
    return 0;
}

static bool path_reserved(const char *path)
{
    for (size_t i = 0; i < sizeof(reserved_paths) / sizeof(*reserved_paths);
         i++) {
        if (strcmp(path, reserved_paths[i]) == 0)
            return true;
    }
    return false;
}

/* Splits the template into segments ("/" has none, "/a/" has "a" and
 * ""), reporting every problem. 0, or -1 when the path is unusable. */
static int parse_path(struct build *b, struct route *r)
{
    const char *path = r->cfg->path ? r->cfg->path : "";
    struct config_pos pos = r->cfg->path_pos;
    if (path[0] != '/') {
        build_error(b, pos, "path must start with '/'");
        return -1;
    }
    if (path_reserved(path)) {
        build_error(b, pos, "path '%s' is reserved", path);
        return -1;
    }
    const char *rest = path + 1;
    size_t n = 0;
    if (*rest != '\0') {
        n = 1;
        for (const char *c = rest; *c != '\0'; c++)
            n += *c == '/';
    }
    if (n > ROUTE_MAX_SEGMENTS || strlen(path) > ROUTE_MAX_PATH) {
        build_error(b, pos, "path longer than %d segments or %d bytes",
                    ROUTE_MAX_SEGMENTS, ROUTE_MAX_PATH);
        return -1;
    }
    r->segs = calloc(n > 0 ? n : 1, sizeof(*r->segs));
    if (r->segs == NULL)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strcspn(rest, "/");
        r->nsegs++;
        if (parse_segment(b, r, &r->segs[i], rest, len, i + 1 == n) != 0)
            rc = -1;
        rest += len + 1;
    }
    return rc;
}

/* Same segments, parameters compared by kind only: the two templates
 * would match the same requests. */
static bool same_shape(const struct route *a, const struct route *b)
{
    if (a->nsegs != b->nsegs)
        return false;
    for (size_t i = 0; i < a->nsegs; i++) {
        const struct route_seg *x = &a->segs[i], *y = &b->segs[i];
        if (x->kind != y->kind)
            return false;
        if (x->kind == SEG_LITERAL &&
            (x->len != y->len || memcmp(x->text, y->text, x->len) != 0))
            return false;
    }
    return true;
}

static int source_find(const struct config *cfg, const char *name,
                       size_t len)
{
    for (size_t i = 0; i < cfg->nsources; i++) {
        const char *s = cfg->sources[i].name;
        if (s != NULL && strlen(s) == len && memcmp(s, name, len) == 0)
            return (int)i;
    }
    return -1;
}

static void unknown_source(struct build *b, struct config_pos pos,
                           const char *name, size_t len)
{
    char list[256] = "";
    size_t at = 0;
    for (size_t i = 0; i < b->cfg->nsources && at < sizeof(list); i++) {
        int n = snprintf(list + at, sizeof(list) - at, "%s%s",
                         i > 0 ? ", " : "", b->cfg->sources[i].name);
        if (n < 0)
            break;
        at += (size_t)n;
    }
    build_error(b, pos, "unknown source '%.*s' (sources: %s)",
                (int)(len > 64 ? 64 : len), name,
                b->cfg->nsources > 0 ? list : "none");
}

/* Checks the {name} references of a topic pattern; 0 or -1. When the path
 * itself was refused, its parameters are unknown: names are then not
 * looked up, to avoid a cascade of follow-up errors. */
static int check_topic_params(struct build *b, const struct route *r,
                              struct config_pos pos, const char *pattern,
                              enum source_type type, bool path_ok)
{
    const char *problem = brace_problem(pattern, strlen(pattern));
    if (problem != NULL) {
        build_error(b, pos, "%s in topic pattern", problem);
        return -1;
    }
    int rc = 0;
    bool any = false;
    struct piece pc;
    const char *cursor = pattern;
    while (piece_next(&cursor, &pc)) {
        if (!pc.param)
            continue;
        any = true;
        if (!valid_name(pc.text, pc.len)) {
            build_error(b, pos, "bad parameter '{%.*s}' in topic pattern",
                        (int)pc.len, pc.text);
            rc = -1;
        } else if (path_ok && route_param_find(r, pc.text, pc.len) < 0) {
            build_error(b, pos, "parameter '{%.*s}' is not in the path",
                        (int)pc.len, pc.text);
            rc = -1;
        }
    }
    if (any && topic_syntax_of(type)->param_wildcard == NULL &&
        !topic_syntax_of(type)->per_key) {
        build_error(b, pos, "a %s topic may not use parameters",
                    config_source_type_name(type));
        rc = -1;
    }
    return rc;
}

/* The pattern with every {name} replaced by repl; malloc'd or NULL. */
static char *pattern_substitute(const char *pattern, const char *repl)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&buf, &size);
    if (out == NULL)
        return NULL;
    struct piece pc;
    const char *cursor = pattern;
    while (piece_next(&cursor, &pc)) {
        if (pc.param)
            fputs(repl, out);
        else
            fwrite(pc.text, 1, pc.len, out);
    }
    if (fclose(out) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* Validates the pattern's syntax with parameters replaced by "x". */
static int check_topic_syntax(struct build *b, struct config_pos pos,
                              const char *pattern, enum source_type type)
{
    char *neutral = pattern_substitute(pattern, "x");
    char why[128];
    if (neutral == NULL)
        return -1;
    int rc = topic_validate(type, neutral, why, sizeof(why));
    free(neutral);
    if (rc != 0)
        build_error(b, pos, "bad %s pattern '%s': %s",
                    config_source_type_name(type), pattern, why);
    return rc;
}

/* Compiles topic template i of route r into *t. 0 or -1 (reported). */
static int parse_topic(struct build *b, const struct route *r, size_t i,
                       bool path_ok, struct route_topic *t)
{
    const char *text = r->cfg->topics.items[i] ? r->cfg->topics.items[i]
                                               : "";
    struct config_pos pos = topic_pos(r->cfg, i);
    const char *colon = strchr(text, ':');
    if (colon == NULL) {
        build_error(b, pos, "topic '%s' must be SOURCE:PATTERN", text);
        return -1;
    }
    int src = source_find(b->cfg, text, (size_t)(colon - text));
    if (src < 0) {
        unknown_source(b, pos, text, (size_t)(colon - text));
        return -1;
    }
    t->source = (uint32_t)src;
    t->type = b->cfg->sources[src].type;
    t->pattern = colon + 1;
    if (check_topic_params(b, r, pos, t->pattern, t->type, path_ok) != 0)
        return -1;
    return check_topic_syntax(b, pos, t->pattern, t->type);
}

/* True when topic template t holds a {name} in a per-key syntax. */
static bool topic_is_per_key(const struct route_topic *t)
{
    return t->pattern != NULL && topic_syntax_of(t->type)->per_key &&
           strchr(t->pattern, '{') != NULL;
}

/*
 * A per-key topic (a {name} in a redis-stream key) is read on demand and
 * its entry ids are the SSE ids, so it cannot share a route (one id
 * space per stream) with other topics. data_field, from and end mean
 * something only there. Sets r->per_key. 0, or -1 after reporting.
 */
static int check_per_key(struct build *b, struct route *r)
{
    const struct route_config *rc = r->cfg;
    int status = 0;

    for (size_t j = 0; j < r->ntopics; j++)
        r->per_key = r->per_key || topic_is_per_key(&r->topics[j]);
    if (r->per_key && r->ntopics > 1) {
        for (size_t j = 0; j < r->ntopics; j++)
            if (topic_is_per_key(&r->topics[j]))
                build_error(b, topic_pos(rc, j),
                            "a per-key topic (a {param} in a redis-stream "
                            "key) must be the route's only topic");
        status = -1;
    }
    if (r->per_key)
        return status;
    if (rc->data_field_pos.line > 0)
        build_error(b, rc->data_field_pos, "data_field: only for a per-key "
                    "route (a {param} in a redis-stream key)");
    if (rc->from_pos.line > 0)
        build_error(b, rc->from_pos, "from: only for a per-key route (a "
                    "{param} in a redis-stream key)");
    if (rc->end_pos.line > 0)
        build_error(b, rc->end_pos, "end: only for a per-key route (a "
                    "{param} in a redis-stream key)");
    if (rc->data_field_pos.line > 0 || rc->from_pos.line > 0 ||
        rc->end_pos.line > 0)
        status = -1;
    return status;
}

/* Compiles route i of the config into *r; reports every problem. 0, or
 * -1 on any error (the route is then cleared by the caller). */
static int route_compile(struct build *b, size_t i, struct route *r)
{
    const struct route_config *rc = &b->cfg->routes[i];
    r->cfg = rc;
    r->index = i;
    int status = parse_path(b, r);
    bool path_ok = status == 0;
    if (rc->topics.count == 0) {
        build_error(b, rc->pos, "route has no topics");
        status = -1;
    }
    r->topics = calloc(rc->topics.count > 0 ? rc->topics.count : 1,
                       sizeof(*r->topics));
    if (r->topics == NULL)
        return -1;
    for (size_t j = 0; j < rc->topics.count; j++) {
        if (parse_topic(b, r, j, path_ok, &r->topics[j]) != 0)
            status = -1;
    }
    r->ntopics = rc->topics.count;
    if (check_per_key(b, r) != 0)
        status = -1;
    return status;
}

/* Refuses a route whose template matches the same requests as an
 * earlier one (e.g. /a/{x} and /a/{y}). */
static int check_duplicate(struct build *b, const struct route_table *t,
                           const struct route *r)
{
    for (size_t i = 0; i < t->count; i++) {
        const struct route *o = &t->routes[i];
        if (o->segs == NULL || !same_shape(o, r))
            continue;
        build_error(b, r->cfg->path_pos,
                    "duplicate path '%s' (same as the route at %d:%d)",
                    r->cfg->path, o->cfg->path_pos.line,
                    o->cfg->path_pos.col);
        return -1;
    }
    return 0;
}

void route_table_free(struct route_table *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->count; i++)
        route_clear(&t->routes[i]);
    free(t->routes);
    free(t);
}

/* Ends the error stream: hands *errors the text, or NULL on success. */
static char *build_finish(struct build *b)
{
    if (b->out != NULL && fclose(b->out) != 0) {
        free(b->buf);
        b->buf = NULL;
    }
    b->out = NULL;
    if (b->nerrors == 0) {
        free(b->buf);
        return NULL;
    }
    return b->buf != NULL ? b->buf : strdup("<config>:0:0: out of memory\n");
}

struct route_table *route_table_build(const struct config *cfg,
                                      char **errors)
{
    struct build b = {.cfg = cfg};
    struct route_table *t = calloc(1, sizeof(*t));
    b.out = open_memstream(&b.buf, &b.size);
    if (t != NULL)
        t->routes = calloc(cfg->nroutes > 0 ? cfg->nroutes : 1,
                           sizeof(*t->routes));
    if (t == NULL || t->routes == NULL || b.out == NULL) {
        build_error(&b, (struct config_pos){0, 0}, "out of memory");
        goto fail;
    }
    t->cfg = cfg;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        struct route *r = &t->routes[t->count];
        size_t before = b.nerrors;
        if (route_compile(&b, i, r) != 0 || check_duplicate(&b, t, r) != 0) {
            if (b.nerrors == before)
                build_error(&b, cfg->routes[i].pos, "out of memory");
            route_clear(r);
            memset(r, 0, sizeof(*r));
            continue;
        }
        t->count++;
    }
    if (b.nerrors > 0)
        goto fail;
    *errors = build_finish(&b);
    return t;
fail:
    *errors = build_finish(&b);
    route_table_free(t);
    return NULL;
}

size_t route_table_count(const struct route_table *t)
{
    return t->count;
}

const struct route *route_table_get(const struct route_table *t, size_t i)
{
    return i < t->count ? &t->routes[i] : NULL;
}

const struct route_config *route_config_of(const struct route *r)
{
    return r->cfg;
}

size_t route_index(const struct route *r)
{
    return r->index;
}

void route_params_clear(struct route_params *p)
{
    for (size_t i = 0; i < p->count; i++)
        free(p->values[i]);
    memset(p, 0, sizeof(*p));
}

/* ------------------------------------------------------------------ */
/* Matching a request                                                  */
/* ------------------------------------------------------------------ */

/* A request path split into percent-decoded, NUL-terminated segments
 * stored one after the other in buf. */
struct request_path {
    char buf[ROUTE_MAX_PATH + 1];
    const char *seg[ROUTE_MAX_REQUEST_SEGMENTS];
    size_t len[ROUTE_MAX_REQUEST_SEGMENTS];
    size_t n;
};

/* Splits and decodes rest (the path after its leading '/'). -1 on bad
 * encoding, a NUL, or too many segments. */
static int request_path_split(const char *rest, size_t restlen,
                              struct request_path *rp)
{
    size_t at = 0;
    rp->n = 0;
    if (restlen == 0)
        return 0;
    for (size_t start = 0; start <= restlen;) {
        const char *slash = memchr(rest + start, '/', restlen - start);
        size_t end = slash ? (size_t)(slash - rest) : restlen;
        if (rp->n == ROUTE_MAX_REQUEST_SEGMENTS)
            return -1;
        long n = percent_decode(rest + start, end - start, rp->buf + at,
                                false);
        if (n < 0)
            return -1;
        rp->seg[rp->n] = rp->buf + at;
        rp->len[rp->n] = (size_t)n;
        rp->n++;
        at += (size_t)n;
        rp->buf[at++] = '\0';
        start = end + 1;
    }
    return 0;
}

enum route_try {
    TRY_NO,
    TRY_MATCH,
    TRY_EMPTY, /* would match but a parameter is empty */
};

static enum route_try route_try(const struct route *r,
                                const struct request_path *rp)
{
    bool star = r->nsegs > 0 && r->segs[r->nsegs - 1].kind == SEG_STAR;
    if (star ? rp->n < r->nsegs : rp->n != r->nsegs)
        return TRY_NO;
    bool empty = false;
    for (size_t i = 0; i < r->nsegs; i++) {
        const struct route_seg *s = &r->segs[i];
        if (s->kind == SEG_LITERAL) {
            if (s->len != rp->len[i] || memcmp(s->text, rp->seg[i], s->len))
                return TRY_NO;
        } else if (s->kind == SEG_PARAM) {
            empty = empty || rp->len[i] == 0;
        } else {
            for (size_t j = i; j < rp->n; j++)
                empty = empty || rp->len[j] == 0;
        }
    }
    return empty ? TRY_EMPTY : TRY_MATCH;
}

static int seg_rank(enum seg_kind k)
{
    return k == SEG_LITERAL ? 2 : k == SEG_PARAM ? 1 : 0;
}

/* True when a is more specific than b: at the first segment where they
 * differ in kind, a's is a literal over a parameter over a star. */
static bool more_specific(const struct route *a, const struct route *b)
{
    size_t n = a->nsegs < b->nsegs ? a->nsegs : b->nsegs;
    for (size_t i = 0; i < n; i++) {
        int ra = seg_rank(a->segs[i].kind), rb = seg_rank(b->segs[i].kind);
        if (ra != rb)
            return ra > rb;
    }
    return a->nsegs > b->nsegs;
}

/* Joins segments from..n-1 of rp with '/'; malloc'd or NULL. */
static char *join_segments(const struct request_path *rp, size_t from)
{
    size_t total = 0;
    for (size_t i = from; i < rp->n; i++)
        total += rp->len[i] + 1;
    char *v = malloc(total);
    if (v == NULL)
        return NULL;
    size_t at = 0;
    for (size_t i = from; i < rp->n; i++) {
        if (i > from)
            v[at++] = '/';
        memcpy(v + at, rp->seg[i], rp->len[i]);
        at += rp->len[i];
    }
    v[at] = '\0';
    return v;
}

static int capture_params(const struct route *r, const struct request_path *rp,
                          struct route_params *params)
{
    for (size_t i = 0; i < r->nsegs; i++) {
        const struct route_seg *s = &r->segs[i];
        if (s->kind == SEG_LITERAL)
            continue;
        char *v = s->kind == SEG_PARAM ? strndup(rp->seg[i], rp->len[i])
                                       : join_segments(rp, i);
        if (v == NULL)
            return -1;
        params->names[params->count] = s->text;
        params->values[params->count] = v;
        params->count++;
    }
    return 0;
}

/*
 * Per-request lookup: every route is tried against the decoded segments
 * (routes are few; a request costs O(routes * segments)). A route that
 * would match but for an empty parameter makes the answer BAD_PATH when
 * nothing else matches. Out of memory while copying values is reported
 * as BAD_PATH too (the enum has no better answer).
 */
enum route_lookup route_table_match(const struct route_table *t,
                                    const char *raw_path,
                                    const struct route **route,
                                    struct route_params *params)
{
    memset(params, 0, sizeof(*params));
    *route = NULL;
    size_t len = raw_path ? strnlen(raw_path, ROUTE_MAX_PATH + 1) : 0;
    if (len == 0 || len > ROUTE_MAX_PATH || raw_path[0] != '/')
        return ROUTE_BAD_PATH;
    struct request_path *rp = malloc(sizeof(*rp));
    if (rp == NULL)
        return ROUTE_BAD_PATH;
    enum route_lookup res = ROUTE_BAD_PATH;
    if (request_path_split(raw_path + 1, len - 1, rp) != 0)
        goto out;

    const struct route *best = NULL;
    bool empty = false;
    for (size_t i = 0; i < t->count; i++) {
        enum route_try m = route_try(&t->routes[i], rp);
        empty = empty || m == TRY_EMPTY;
        if (m == TRY_MATCH && (best == NULL ||
                               more_specific(&t->routes[i], best)))
            best = &t->routes[i];
    }
    if (best == NULL) {
        res = empty ? ROUTE_BAD_PATH : ROUTE_NOT_FOUND;
        goto out;
    }
    if (capture_params(best, rp, params) != 0) {
        route_params_clear(params);
        goto out;
    }
    *route = best;
    res = ROUTE_FOUND;
out:
    free(rp);
    return res;
}

/* ------------------------------------------------------------------ */
/* Resolving parameters into patterns                                  */
/* ------------------------------------------------------------------ */

/* Writes why value may not be substituted for parameter name (a short
 * line without the value itself; at most 120 characters). */
static void refusal_reason(enum source_type type, const char *name,
                           const char *value, bool multi, char *err,
                           size_t errlen)
{
    size_t n = errlen < ROUTE_REASON_MAX ? errlen : ROUTE_REASON_MAX;
    if (n == 0)
        return;
    if (value[0] == '\0') {
        snprintf(err, n, "parameter '%.40s' may not be empty", name);
        return;
    }
    for (const char *c = value; *c != '\0'; c++) {
        if (!topic_param_safe(type, c, 1, multi)) {
            snprintf(err, n, "parameter '%.40s' may not contain '%c'", name,
                     *c);
            return;
        }
    }
    snprintf(err, n, "parameter '%.40s' not allowed here", name);
}

/* Substitutes params into one topic template; the new pattern, or NULL
 * with err filled (a refused value) or empty (ENOMEM). */
static char *resolve_topic(const struct route *r, const struct route_topic *t,
                           const struct route_params *params, char *err,
                           size_t errlen)
{
    char *buf = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&buf, &size);
    if (out == NULL)
        return NULL;
    struct piece pc;
    const char *cursor = t->pattern;
    bool ok = true;
    while (ok && piece_next(&cursor, &pc)) {
        if (!pc.param) {
            fwrite(pc.text, 1, pc.len, out);
            continue;
        }
        int k = route_param_find(r, pc.text, pc.len);
        const char *v = k >= 0 && (size_t)k < params->count
                            ? params->values[k] : NULL;
        if (v == NULL || !topic_param_safe(t->type, v, strlen(v),
                                           r->param_star[k])) {
            refusal_reason(t->type, k >= 0 ? r->param_names[k] : "?",
                           v ? v : "", k >= 0 && r->param_star[k], err,
                           errlen);
            ok = false;
        } else {
            fputs(v, out);
        }
    }
    if (fclose(out) != 0 || !ok) {
        free(buf);
        return NULL;
    }
    return buf;
}

int route_resolve(const struct route_table *t, const struct route *r,
                  const struct route_params *params, struct topic_filter *out,
                  char *err, size_t errlen)
{
    (void)t;
    memset(out, 0, sizeof(*out));
    if (errlen > 0)
        err[0] = '\0';
    out->patterns = calloc(r->ntopics > 0 ? r->ntopics : 1,
                           sizeof(*out->patterns));
    if (out->patterns == NULL)
        goto fail;
    for (size_t i = 0; i < r->ntopics; i++) {
        const struct route_topic *rt = &r->topics[i];
        char *p = resolve_topic(r, rt, params, err, errlen);
        if (p == NULL)
            goto fail;
        out->patterns[i].source = rt->source;
        out->patterns[i].type = rt->type;
        out->patterns[i].pattern = p;
        out->count++;
    }
    return 0;
fail:
    if (errlen > 0 && err[0] == '\0')
        snprintf(err, errlen < ROUTE_REASON_MAX ? errlen : ROUTE_REASON_MAX,
                 "out of memory");
    topic_filter_clear(out);
    return -1;
}

/* ------------------------------------------------------------------ */
/* Upstream form of a topic template                                   */
/* ------------------------------------------------------------------ */

bool route_is_per_key(const struct route *r)
{
    return r->per_key;
}

size_t route_topic_count(const struct route *r)
{
    return r->ntopics;
}

uint32_t route_topic_source(const struct route *r, size_t j)
{
    return r->topics[j].source;
}

/* Writes one level (or, without a level separator, the whole pattern) of
 * a template in its upstream form. Returns false once a rest wildcard
 * ended the pattern. */
static bool route_upstream_level(const struct route *r,
                                 const struct topic_syntax *syn,
                                 const char *level, size_t len, FILE *out)
{
    bool param = false, star = false;
    const char *end = level + len;

    for (const char *c = memchr(level, '{', len); c != NULL;
         c = memchr(c + 1, '{', (size_t)(end - c - 1))) {
        const char *close = memchr(c, '}', (size_t)(end - c));
        int k = close == NULL ? -1
                              : route_param_find(r, c + 1,
                                                 (size_t)(close - c - 1));
        param = true;
        star = star || (k >= 0 && r->param_star[k]);
    }
    if (star && syn->level_sep != '\0') {
        fputs(syn->rest_wildcard, out);
        return false;
    }
    if (param && syn->level_sep != '\0') {
        fputs(syn->param_wildcard, out);
        return true;
    }
    /* No levels: each {name} becomes the wildcard in place. */
    struct piece pc;
    char *text = strndup(level, len);
    const char *cursor = text;
    if (text == NULL)
        return false;
    while (piece_next(&cursor, &pc)) {
        if (pc.param)
            fputs(syn->param_wildcard, out);
        else
            fwrite(pc.text, 1, pc.len, out);
    }
    free(text);
    return true;
}

/*
 * A level holding a parameter becomes the bus's level wildcard ("+"), a
 * last {x*} its rest wildcard ("#"); without levels (Redis) each {name}
 * becomes the wildcard ("*") in place. Validation guarantees that a bus
 * without param_wildcard has no parameters in its templates.
 */
char *route_topic_upstream(const struct route *r, size_t j)
{
    const struct route_topic *t = &r->topics[j];
    const struct topic_syntax *syn = topic_syntax_of(t->type);
    char *buf = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&buf, &size);
    const char *level = t->pattern;

    if (out == NULL)
        return NULL;
    if (syn->param_wildcard == NULL) {
        fputs(t->pattern, out);
    } else {
        for (;;) {
            size_t len = syn->level_sep != '\0'
                             ? strcspn(level, (char[]){syn->level_sep, 0})
                             : strlen(level);
            if (!route_upstream_level(r, syn, level, len, out) ||
                level[len] == '\0')
                break;
            fputc(syn->level_sep, out);
            level += len + 1;
        }
    }
    if (fclose(out) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}
