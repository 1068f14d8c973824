/*
 * topic_index.c - the index that maps one message's topic to the feeds
 * that want it.
 *
 * Flow: route.c turns a request into a struct topic_filter (concrete
 * patterns, one per topic template); the bridge registers each pattern in
 * a struct topic_index with the feed as owner; for every message an
 * adapter delivers, topic_index_match() names the feeds to wake. That call
 * is the per-message hot path and allocates nothing.
 *
 * The index has three parts, so that matching does not cost more as
 * patterns that cannot match are added:
 *   - a hash table of literal patterns (any type), keyed by (source,
 *     pattern): one lookup with the topic;
 *   - per source, a trie of MQTT filters keyed by level. Every non-root
 *     node is also an entry of a second hash table keyed by (parent node,
 *     level), so a node's literal child is one lookup; the "+" child is
 *     kept in its own pointer and "#" filters as an owner list on the node
 *     they hang below, so a match walks only the branches that can match.
 *     The walk is iterative (parent pointers, no stack), so a topic of
 *     thousands of levels is fine;
 *   - per source, a list of Redis globs with wildcards, scanned with
 *     topic_glob_match (Redis gives no better structure for globs either).
 *
 * Invariant: a trie node exists only while it, or a node below it, holds an
 * owner (remove prunes empty nodes up to the root).
 */
#include "lib/topic_index.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hashtab.h"
#include "lib/topic.h"

/* ------------------------------------------------------------------ */
/* Owner lists                                                         */
/* ------------------------------------------------------------------ */

/* One owner of a pattern, with the number of times it was added. */
struct owner_ref {
    void *owner;
    size_t refs;
};

/* The owners of one pattern: a small array (a pattern has few owners,
 * since equal filters share one feed). */
struct owner_list {
    struct owner_ref *items;
    size_t count;
    size_t cap;
};

static int owner_list_add(struct owner_list *l, void *owner)
{
    for (size_t i = 0; i < l->count; i++) {
        if (l->items[i].owner == owner) {
            l->items[i].refs++;
            return 0;
        }
    }
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 2;
        struct owner_ref *items = realloc(l->items, cap * sizeof(*items));
        if (items == NULL)
            return -1;
        l->items = items;
        l->cap = cap;
    }
    l->items[l->count].owner = owner;
    l->items[l->count].refs = 1;
    l->count++;
    return 0;
}

/* Drops one reference of owner; returns false when it was not there. */
static bool owner_list_remove(struct owner_list *l, void *owner)
{
    for (size_t i = 0; i < l->count; i++) {
        if (l->items[i].owner != owner)
            continue;
        if (--l->items[i].refs == 0) {
            l->items[i] = l->items[l->count - 1];
            l->count--;
        }
        if (l->count == 0) {
            free(l->items);
            memset(l, 0, sizeof(*l));
        }
        return true;
    }
    return false;
}

static void owner_list_report(const struct owner_list *l, topic_index_cb cb,
                              void *arg)
{
    for (size_t i = 0; i < l->count; i++)
        cb(l->items[i].owner, arg);
}

/* ------------------------------------------------------------------ */
/* The index                                                           */
/* ------------------------------------------------------------------ */

/* A literal pattern and its owners; in idx->literals under (source,
 * pattern). */
struct literal_entry {
    struct hashtab_entry he; /* first member: the entry is the struct */
    char *pattern;           /* owned; he.key */
    struct owner_list owners;
};

/* A node of an MQTT trie. Non-root nodes are in idx->edges under (parent,
 * level); the "+" child is there too (under "+") and in `plus`. */
struct trie_node {
    struct hashtab_entry he; /* first member; he.key is `level` */
    char *level;             /* owned; NULL at the root */
    struct trie_node *parent;
    struct trie_node *plus;
    size_t nchildren;        /* entries in idx->edges below this node */
    struct owner_list exact; /* filters that end at this node */
    struct owner_list rest;  /* filters "<this node>/#" ("#" at the root) */
};

/* A Redis glob with wildcards and its owners. */
struct glob_entry {
    char *pattern;
    size_t len;
    struct owner_list owners;
};

/* What the index holds for one source besides its literals. */
struct index_source {
    uint32_t source;
    struct trie_node *root; /* NULL until an MQTT wildcard filter */
    struct glob_entry *globs;
    size_t nglobs;
    size_t capglobs;
};

struct topic_index {
    struct hashtab literals;
    struct hashtab edges;
    struct index_source *sources; /* few: searched linearly */
    size_t nsources;
};

struct topic_index *topic_index_new(void)
{
    return calloc(1, sizeof(struct topic_index));
}

static void trie_node_free(struct trie_node *n)
{
    free(n->exact.items);
    free(n->rest.items);
    free(n->level);
    free(n);
}

static void literal_entry_free(struct literal_entry *e)
{
    free(e->owners.items);
    free(e->pattern);
    free(e);
}

/* Frees every entry of t (trie nodes or literal entries) and its buckets.
 * Walking the buckets is the one place that looks inside struct hashtab:
 * hashtab.h has no iterator. */
static void free_table_entries(struct hashtab *t, bool trie)
{
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct hashtab_entry *e = t->buckets[i];
        while (e != NULL) {
            struct hashtab_entry *next = e->next;
            if (trie)
                trie_node_free((struct trie_node *)e);
            else
                literal_entry_free((struct literal_entry *)e);
            e = next;
        }
    }
    hashtab_release(t);
}

void topic_index_free(struct topic_index *idx)
{
    if (idx == NULL)
        return;
    free_table_entries(&idx->literals, false);
    free_table_entries(&idx->edges, true);
    for (size_t i = 0; i < idx->nsources; i++) {
        struct index_source *s = &idx->sources[i];
        if (s->root != NULL)
            trie_node_free(s->root);
        for (size_t j = 0; j < s->nglobs; j++) {
            free(s->globs[j].pattern);
            free(s->globs[j].owners.items);
        }
        free(s->globs);
    }
    free(idx->sources);
    free(idx);
}

static struct index_source *index_source_find(const struct topic_index *idx,
                                              uint32_t source)
{
    for (size_t i = 0; i < idx->nsources; i++) {
        if (idx->sources[i].source == source)
            return &idx->sources[i];
    }
    return NULL;
}

static struct index_source *index_source_get(struct topic_index *idx,
                                             uint32_t source)
{
    struct index_source *s = index_source_find(idx, source);
    if (s != NULL)
        return s;
    s = realloc(idx->sources, (idx->nsources + 1) * sizeof(*s));
    if (s == NULL)
        return NULL;
    idx->sources = s;
    s = &idx->sources[idx->nsources++];
    memset(s, 0, sizeof(*s));
    s->source = source;
    return s;
}

/* -- literals -- */

static int literal_add(struct topic_index *idx, uint32_t source,
                       const char *pattern, void *owner)
{
    size_t len = strlen(pattern);
    struct hashtab_entry *he = hashtab_find(&idx->literals, source, pattern, len);
    if (he != NULL)
        return owner_list_add(&((struct literal_entry *)he)->owners, owner);

    struct literal_entry *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return -1;
    e->pattern = strdup(pattern);
    e->he.ns = source;
    e->he.key = e->pattern;
    e->he.keylen = len;
    if (e->pattern == NULL || owner_list_add(&e->owners, owner) != 0 ||
        hashtab_insert(&idx->literals, &e->he) != 0) {
        literal_entry_free(e);
        return -1;
    }
    return 0;
}

static void literal_remove(struct topic_index *idx, uint32_t source,
                           const char *pattern, void *owner)
{
    struct hashtab_entry *he =
        hashtab_find(&idx->literals, source, pattern, strlen(pattern));
    if (he == NULL)
        return;
    struct literal_entry *e = (struct literal_entry *)he;
    owner_list_remove(&e->owners, owner);
    if (e->owners.count > 0)
        return;
    hashtab_remove(&idx->literals, he);
    literal_entry_free(e);
}

/* -- globs -- */

static struct glob_entry *glob_find(const struct index_source *s,
                                    const char *pattern)
{
    for (size_t i = 0; i < s->nglobs; i++) {
        if (strcmp(s->globs[i].pattern, pattern) == 0)
            return &s->globs[i];
    }
    return NULL;
}

static int glob_add(struct index_source *s, const char *pattern, void *owner)
{
    struct glob_entry *g = glob_find(s, pattern);
    if (g != NULL)
        return owner_list_add(&g->owners, owner);
    if (s->nglobs == s->capglobs) {
        size_t cap = s->capglobs ? s->capglobs * 2 : 4;
        g = realloc(s->globs, cap * sizeof(*g));
        if (g == NULL)
            return -1;
        s->globs = g;
        s->capglobs = cap;
    }
    g = &s->globs[s->nglobs];
    memset(g, 0, sizeof(*g));
    g->pattern = strdup(pattern);
    if (g->pattern == NULL || owner_list_add(&g->owners, owner) != 0) {
        free(g->pattern);
        return -1;
    }
    g->len = strlen(pattern);
    s->nglobs++;
    return 0;
}

static void glob_remove(struct index_source *s, const char *pattern,
                        void *owner)
{
    struct glob_entry *g = glob_find(s, pattern);
    if (g == NULL)
        return;
    owner_list_remove(&g->owners, owner);
    if (g->owners.count > 0)
        return;
    free(g->pattern);
    *g = s->globs[--s->nglobs];
}

/* -- the MQTT trie -- */

static struct trie_node *trie_child(const struct hashtab *edges,
                                    const struct trie_node *parent,
                                    const char *level, size_t len)
{
    struct hashtab_entry *he = hashtab_find(edges, (uintptr_t)parent, level, len);
    return (struct trie_node *)he;
}

/* Returns the child of parent for level, creating it; NULL on ENOMEM. */
static struct trie_node *trie_child_get(struct hashtab *edges,
                                        struct trie_node *parent,
                                        const char *level, size_t len)
{
    struct trie_node *n = trie_child(edges, parent, level, len);
    if (n != NULL)
        return n;
    n = calloc(1, sizeof(*n));
    if (n == NULL)
        return NULL;
    n->level = strndup(level, len);
    n->he.ns = (uintptr_t)parent;
    n->he.key = n->level;
    n->he.keylen = len;
    if (n->level == NULL || hashtab_insert(edges, &n->he) != 0) {
        trie_node_free(n);
        return NULL;
    }
    n->parent = parent;
    parent->nchildren++;
    if (len == 1 && level[0] == '+')
        parent->plus = n;
    return n;
}

static bool trie_node_empty(const struct trie_node *n)
{
    return n->nchildren == 0 && n->exact.count == 0 && n->rest.count == 0;
}

/* Frees n and its ancestors while they are empty (never the root). */
static void trie_prune(struct hashtab *edges, struct trie_node *n)
{
    while (n->parent != NULL && trie_node_empty(n)) {
        struct trie_node *parent = n->parent;
        hashtab_remove(edges, &n->he);
        parent->nchildren--;
        if (parent->plus == n)
            parent->plus = NULL;
        trie_node_free(n);
        n = parent;
    }
}

/* Walks (creating when create) to the node of filter's levels before a
 * final "#"; *hash tells whether the filter ends with "#". */
static struct trie_node *trie_walk(struct hashtab *edges,
                                   struct trie_node *root, const char *filter,
                                   bool create, bool *hash)
{
    struct trie_node *n = root;
    const char *level = filter;
    *hash = false;
    for (;;) {
        const char *end = level + strcspn(level, "/");
        size_t len = (size_t)(end - level);
        if (len == 1 && level[0] == '#' && *end == '\0') {
            *hash = true;
            return n;
        }
        struct trie_node *child = create
                                      ? trie_child_get(edges, n, level, len)
                                      : trie_child(edges, n, level, len);
        if (child == NULL && create)
            trie_prune(edges, n); /* drop what this walk created */
        if (child == NULL || *end == '\0')
            return child;
        n = child;
        level = end + 1;
    }
}

static int trie_add(struct topic_index *idx, struct index_source *s,
                    const char *filter, void *owner)
{
    if (s->root == NULL) {
        s->root = calloc(1, sizeof(*s->root));
        if (s->root == NULL)
            return -1;
    }
    bool hash;
    struct trie_node *n = trie_walk(&idx->edges, s->root, filter, true, &hash);
    int rc = -1;
    if (n != NULL)
        rc = owner_list_add(hash ? &n->rest : &n->exact, owner);
    if (rc != 0 && n != NULL)
        trie_prune(&idx->edges, n);
    return rc;
}

static void trie_remove(struct topic_index *idx, struct index_source *s,
                        const char *filter, void *owner)
{
    if (s->root == NULL)
        return;
    bool hash;
    struct trie_node *n =
        trie_walk(&idx->edges, s->root, filter, false, &hash);
    if (n == NULL)
        return;
    owner_list_remove(hash ? &n->rest : &n->exact, owner);
    trie_prune(&idx->edges, n);
}

/* Start of the topic level after the one at off; len + 1 after the last. */
static size_t level_next(const char *topic, size_t len, size_t off)
{
    const char *slash = memchr(topic + off, '/', len - off);
    return slash ? (size_t)(slash - topic) + 1 : len + 1;
}

/* The inverse of level_next: the start of the level before off. */
static size_t level_prev(const char *topic, size_t len, size_t off)
{
    size_t start = off == len + 1 ? len : off - 1;
    while (start > 0 && topic[start - 1] != '/')
        start--;
    return start;
}

enum walk_step {
    WALK_ENTER, /* first visit: report, then try the literal child */
    WALK_PLUS,  /* literal child done: try the "+" child */
    WALK_LEAVE, /* both done: back to the parent */
};

/*
 * Hot path: reports every trie filter matching topic. A depth-first walk
 * over the branches the topic selects (the literal child of each level
 * and the "+" child), iterative with parent pointers: `off` is the start
 * of the topic level below `node` (len + 1 when the topic ends at node),
 * recomputed with level_prev on the way up. Wildcards at the root do not
 * match a topic starting with '$'.
 */
static void trie_match(const struct hashtab *edges,
                       const struct trie_node *root, const char *topic,
                       size_t len, topic_index_cb cb, void *arg)
{
    bool dollar = len > 0 && topic[0] == '$';
    const struct trie_node *node = root;
    size_t off = 0;
    enum walk_step step = WALK_ENTER;

    for (;;) {
        bool wild = node != root || !dollar;
        if (step == WALK_ENTER) {
            if (wild)
                owner_list_report(&node->rest, cb, arg);
            step = WALK_PLUS;
            if (off > len) {
                owner_list_report(&node->exact, cb, arg);
                step = WALK_LEAVE;
                continue;
            }
            size_t next = level_next(topic, len, off);
            size_t end = next == len + 1 ? len : next - 1;
            const struct trie_node *child =
                trie_child(edges, node, topic + off, end - off);
            if (child != NULL && child != node->plus) {
                node = child;
                off = next;
                step = WALK_ENTER;
            }
        } else if (step == WALK_PLUS) {
            step = WALK_LEAVE;
            if (wild && node->plus != NULL) {
                node = node->plus;
                off = level_next(topic, len, off);
                step = WALK_ENTER;
            }
        } else {
            if (node == root)
                return;
            step = node == node->parent->plus ? WALK_LEAVE : WALK_PLUS;
            node = node->parent;
            off = level_prev(topic, len, off);
        }
    }
}

/* Copies pattern into the part of the index its type and shape call for.
 * -1 for a pattern topic_validate refuses, or on ENOMEM (the index is then
 * unchanged). */
int topic_index_add(struct topic_index *idx, uint32_t source,
                    enum source_type type, const char *pattern, void *owner)
{
    if (pattern == NULL || topic_validate(type, pattern, NULL, 0) != 0)
        return -1;
    if (topic_is_literal(type, pattern))
        return literal_add(idx, source, pattern, owner);
    struct index_source *s = index_source_get(idx, source);
    if (s == NULL)
        return -1;
    if (topic_syntax_of(type)->index == TOPIC_INDEX_LEVELS)
        return trie_add(idx, s, pattern, owner);
    return glob_add(s, pattern, owner);
}

/* Drops one reference of (pattern, owner); unknown pairs are ignored.
 * Frees the entry, and empty trie nodes, when its last owner goes. */
void topic_index_remove(struct topic_index *idx, uint32_t source,
                        enum source_type type, const char *pattern,
                        void *owner)
{
    if (pattern == NULL || topic_validate(type, pattern, NULL, 0) != 0)
        return;
    if (topic_is_literal(type, pattern)) {
        literal_remove(idx, source, pattern, owner);
        return;
    }
    struct index_source *s = index_source_find(idx, source);
    if (s == NULL)
        return;
    if (topic_syntax_of(type)->index == TOPIC_INDEX_LEVELS)
        trie_remove(idx, s, pattern, owner);
    else
        glob_remove(s, pattern, owner);
}

/* Hot path: one hash lookup, then the trie walk (MQTT) or the glob scan
 * (Redis). Literals are keyed by (source, pattern): a source has one
 * type, so `type` only selects which other part to consult. */
void topic_index_match(const struct topic_index *idx, uint32_t source,
                       enum source_type type, const char *topic, size_t len,
                       topic_index_cb cb, void *arg)
{
    struct hashtab_entry *he = hashtab_find(&idx->literals, source, topic, len);
    if (he != NULL)
        owner_list_report(&((struct literal_entry *)he)->owners, cb, arg);
    enum topic_index_kind kind = topic_syntax_of(type)->index;
    if (kind == TOPIC_INDEX_LITERAL)
        return;
    const struct index_source *s = index_source_find(idx, source);
    if (s == NULL)
        return;
    if (kind == TOPIC_INDEX_LEVELS) {
        if (s->root != NULL)
            trie_match(&idx->edges, s->root, topic, len, cb, arg);
        return;
    }
    for (size_t i = 0; i < s->nglobs; i++) {
        const struct glob_entry *g = &s->globs[i];
        if (topic_glob_match(g->pattern, g->len, topic, len))
            owner_list_report(&g->owners, cb, arg);
    }
}
