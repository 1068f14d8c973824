/*
 * cors.c - the CORS origin decision; see cors.h for the rule.
 *
 * Invariant: only an exact match echoes the request's Origin back, so a
 * configured origin never allows a longer or differently written one.
 */
#include "lib/cors.h"

#include <string.h>

const char *cors_allow_origin(const struct config_strv *origins,
                              const char *origin)
{
    if (origin == NULL)
        return NULL;
    for (size_t i = 0; i < origins->count; i++) {
        const char *allowed = origins->items[i];

        if (strcmp(allowed, "*") == 0)
            return "*";
        if (strcmp(allowed, origin) == 0)
            return origin;
    }
    return NULL;
}
