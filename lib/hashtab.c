/*
 * hashtab.c - see hashtab.h. Chained buckets, FNV-1a over the namespace
 * and the key, load factor <= 1.
 */
#include "lib/hashtab.h"

#include <stdlib.h>
#include <string.h>

#define HASHTAB_MIN_BUCKETS 16

static uint64_t hashtab_hash(uintptr_t ns, const char *key, size_t len)
{
    uint64_t h = 14695981039346656037ULL;

    for (size_t i = 0; i < sizeof(ns); i++) {
        h ^= (uint64_t)((ns >> (8 * i)) & 0xff);
        h *= 1099511628211ULL;
    }
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ULL;
    }
    return h;
}

struct hashtab_entry *hashtab_find(const struct hashtab *t, uintptr_t ns,
                                   const char *key, size_t len)
{
    uint64_t h;

    if (t->nbuckets == 0)
        return NULL;
    h = hashtab_hash(ns, key, len);
    for (struct hashtab_entry *e = t->buckets[h & (t->nbuckets - 1)];
         e != NULL; e = e->next) {
        if (e->hash == h && e->ns == ns && e->keylen == len &&
            memcmp(e->key, key, len) == 0)
            return e;
    }
    return NULL;
}

static void hashtab_grow(struct hashtab *t)
{
    size_t n = t->nbuckets ? t->nbuckets * 2 : HASHTAB_MIN_BUCKETS;
    struct hashtab_entry **buckets = calloc(n, sizeof(*buckets));

    if (buckets == NULL)
        return;
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct hashtab_entry *e = t->buckets[i];
        while (e != NULL) {
            struct hashtab_entry *next = e->next;
            e->next = buckets[e->hash & (n - 1)];
            buckets[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(t->buckets);
    t->buckets = buckets;
    t->nbuckets = n;
}

int hashtab_insert(struct hashtab *t, struct hashtab_entry *e)
{
    struct hashtab_entry **head;

    if (t->count >= t->nbuckets)
        hashtab_grow(t);
    if (t->nbuckets == 0)
        return -1;
    e->hash = hashtab_hash(e->ns, e->key, e->keylen);
    head = &t->buckets[e->hash & (t->nbuckets - 1)];
    e->next = *head;
    *head = e;
    t->count++;
    return 0;
}

void hashtab_remove(struct hashtab *t, struct hashtab_entry *e)
{
    struct hashtab_entry **link = &t->buckets[e->hash & (t->nbuckets - 1)];

    while (*link != e)
        link = &(*link)->next;
    *link = e->next;
    t->count--;
}

void hashtab_release(struct hashtab *t)
{
    free(t->buckets);
    t->buckets = NULL;
    t->nbuckets = 0;
    t->count = 0;
}
