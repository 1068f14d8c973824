/*
 * h1.h - the HTTP/1.x transport: evhttp's requests as struct request,
 * and the stream ops that write an SSE response on an evhttp connection.
 */
#ifndef SLUICE_H1_H
#define SLUICE_H1_H

#include <stdbool.h>

struct evhttp_request;
struct request;

/*
 * Fills *out for evhttp's req (a borrowed view: valid while req lives);
 * tls says whether the connection is TLS. Returns 0, or -1 when the
 * request target has no path (answer 400).
 */
int h1_request_init(struct evhttp_request *req, bool tls, struct request *out);

#endif
