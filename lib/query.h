/*
 * query.h - the decoded query string of a stream request.
 */
#ifndef SLUICE_QUERY_H
#define SLUICE_QUERY_H

#include "config/config.h"

struct stream_query {
    char *token;               /* ?token= (secret: never log it) */
    char *last_id;             /* ?lastEventId= */
    int snapshot;              /* ?snapshot=0|1; -1: the route's setting */
    struct config_strv topics; /* ?topic=, repeatable; pos unused */
    unsigned classes;          /* "[...]" classes in topics (cost limit) */
};

/*
 * Parses raw (the part after "?", may be NULL) into q, which owns what it
 * holds afterwards (release with query_clear, also after a failure).
 * Returns 0, or -1 with a short reason in *why for a 400.
 */
int query_parse(const char *raw, struct stream_query *q, const char **why);

void query_clear(struct stream_query *q);

#endif
