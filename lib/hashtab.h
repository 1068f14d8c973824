/*
 * hashtab.h - an intrusive hash table keyed by (namespace, byte string).
 *
 * Hand-written because none of our libraries exposes one (libevent's
 * ht-internal.h is private, jansson's hashtable is internal). Entries are
 * embedded in what they index (struct hashtab_entry as a member), so the
 * table allocates only its bucket array, and a failed growth just leaves
 * the chains longer. Used by the topic index, the feed lookup and the
 * last-value cache.
 */
#ifndef SLUICE_HASHTAB_H
#define SLUICE_HASHTAB_H

#include <stddef.h>
#include <stdint.h>

struct hashtab_entry {
    struct hashtab_entry *next;
    uint64_t hash;
    uintptr_t ns;     /* namespace: a source index, a parent node... */
    const char *key;  /* owned by the containing struct */
    size_t keylen;
};

struct hashtab {
    struct hashtab_entry **buckets;
    size_t nbuckets; /* 0 or a power of two */
    size_t count;
};

/* The entry with this (ns, key), or NULL. */
struct hashtab_entry *hashtab_find(const struct hashtab *t, uintptr_t ns,
                                   const char *key, size_t len);

/* Links e (ns, key, keylen set; not already in t). -1 only when the table
 * has no buckets and none can be allocated. */
int hashtab_insert(struct hashtab *t, struct hashtab_entry *e);

/* Unlinks e, which must be in t. */
void hashtab_remove(struct hashtab *t, struct hashtab_entry *e);

/* Frees the bucket array (not the entries) and empties t. */
void hashtab_release(struct hashtab *t);

#endif
