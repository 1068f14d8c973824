/*
 * pathglob.c - see pathglob.h.
 *
 * Hand-written: fnmatch() gives '?', '[' and '\' meaning, has no "**",
 * and works on bytes, so it cannot tell a segment boundary from a decoded
 * "%2F". Both sides become sequences of symbols instead: a byte (0-255)
 * or PATHGLOB_SEP for a boundary. The glob runs as an automaton over the
 * path's symbols (one set of glob positions per symbol), so its cost is
 * O(glob * path) whatever the stars.
 */
#include "lib/pathglob.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/percent.h"

#define PATHGLOB_SEP 256
#define PATHGLOB_SUB "{sub}"

enum pathglob_kind {
    PATHGLOB_SYMBOL, /* one literal symbol (a byte or the boundary) */
    PATHGLOB_STAR,   /* "*": any run of symbols but a boundary or a
                        decoded '/' */
    PATHGLOB_ANY,    /* "**": any run of symbols */
    PATHGLOB_ONE,    /* any one symbol: starts a last segment "*" */
};

struct pathglob_item {
    enum pathglob_kind kind;
    uint16_t symbol;
};

/*
 * Decodes raw_path into symbols (room for strlen(raw_path) of them).
 * Returns the count, or -1 on a bad percent-encoding.
 */
static long pathglob_path_symbols(const char *raw_path, uint16_t *out,
                                  char *scratch)
{
    long n = 0;
    const char *p = raw_path;

    for (;;) {
        size_t len = strcspn(p, "/");
        long dlen = percent_decode(p, len, scratch, false);
        if (dlen < 0)
            return -1;
        for (long i = 0; i < dlen; i++)
            out[n++] = (unsigned char)scratch[i];
        if (p[len] == '\0')
            return n;
        out[n++] = PATHGLOB_SEP;
        p += len + 1;
    }
}

/* Room the compiled glob needs: every byte, plus sub for each "{sub}". */
static size_t pathglob_capacity(const char *glob, const char *sub)
{
    size_t n = strlen(glob) + 2;
    const char *p = glob;

    if (sub == NULL)
        return n;
    while ((p = strstr(p, PATHGLOB_SUB)) != NULL) {
        n += strlen(sub);
        p += strlen(PATHGLOB_SUB);
    }
    return n;
}

/* Compiles glob into items; returns how many. A run of two or more '*'
 * is one ANY; a single '*' that is the whole last segment is ONE + ANY. */
static size_t pathglob_compile(const char *glob, const char *sub,
                               struct pathglob_item *items)
{
    size_t n = 0;
    const char *p = glob;

    while (*p != '\0') {
        size_t stars = strspn(p, "*");
        if (sub != NULL && strncmp(p, PATHGLOB_SUB, 5) == 0) {
            for (const char *s = sub; *s != '\0'; s++)
                items[n++] = (struct pathglob_item){PATHGLOB_SYMBOL,
                                                    (unsigned char)*s};
            p += 5;
        } else if (stars == 0) {
            uint16_t sym = *p == '/' ? PATHGLOB_SEP : (unsigned char)*p;
            items[n++] = (struct pathglob_item){PATHGLOB_SYMBOL, sym};
            p++;
        } else {
            if (stars > 1) {
                items[n++].kind = PATHGLOB_ANY;
            } else if (p[1] == '\0' && p > glob && p[-1] == '/') {
                items[n++].kind = PATHGLOB_ONE;
                items[n++].kind = PATHGLOB_ANY;
            } else {
                items[n++].kind = PATHGLOB_STAR;
            }
            p += stars;
        }
    }
    return n;
}

/* Adds the states reachable without reading a symbol: a star may match
 * nothing. Transitions only go from i to i + 1, so one pass suffices. */
static void pathglob_close(const struct pathglob_item *items, size_t n,
                           bool *states)
{
    for (size_t i = 0; i < n; i++) {
        if (states[i] && (items[i].kind == PATHGLOB_STAR ||
                          items[i].kind == PATHGLOB_ANY))
            states[i + 1] = true;
    }
}

/* Reads one symbol: fills next (cleared by the caller) from cur. Returns
 * false when no state is left, i.e. the glob cannot match any more. */
static bool pathglob_step(const struct pathglob_item *items, size_t n,
                          const bool *cur, bool *next, uint16_t sym)
{
    bool alive = false;

    for (size_t i = 0; i < n; i++) {
        if (!cur[i])
            continue;
        switch (items[i].kind) {
        case PATHGLOB_SYMBOL:
            if (items[i].symbol == sym)
                next[i + 1] = true;
            break;
        case PATHGLOB_STAR:
            if (sym != PATHGLOB_SEP && sym != '/')
                next[i] = true;
            break;
        case PATHGLOB_ANY:
            next[i] = true;
            break;
        case PATHGLOB_ONE:
            next[i + 1] = true;
            break;
        }
    }
    pathglob_close(items, n, next);
    for (size_t i = 0; i <= n && !alive; i++)
        alive = next[i];
    return alive;
}

static bool pathglob_run(const struct pathglob_item *items, size_t n,
                         const uint16_t *path, long plen, bool *states)
{
    bool *cur = states, *next = states + n + 1, *tmp;

    cur[0] = true;
    pathglob_close(items, n, cur);
    for (long i = 0; i < plen; i++) {
        memset(next, 0, (n + 1) * sizeof(*next));
        if (!pathglob_step(items, n, cur, next, path[i]))
            return false;
        tmp = cur;
        cur = next;
        next = tmp;
    }
    return cur[n];
}

bool pathglob_match(const char *glob, const char *sub, const char *raw_path)
{
    struct pathglob_item *items = NULL;
    uint16_t *path = NULL;
    char *scratch = NULL;
    bool *states = NULL;
    bool matched = false;
    size_t cap, n;
    long plen;

    if (glob == NULL || raw_path == NULL)
        return false;
    cap = pathglob_capacity(glob, sub);
    items = calloc(cap, sizeof(*items));
    states = calloc(2 * (cap + 1), sizeof(*states));
    path = malloc((strlen(raw_path) + 1) * sizeof(*path));
    scratch = malloc(strlen(raw_path) + 1);
    if (items == NULL || states == NULL || path == NULL || scratch == NULL)
        goto done;
    plen = pathglob_path_symbols(raw_path, path, scratch);
    if (plen < 0)
        goto done;
    n = pathglob_compile(glob, sub, items);
    matched = pathglob_run(items, n, path, plen, states);
done:
    free(items);
    free(states);
    free(path);
    free(scratch);
    return matched;
}
