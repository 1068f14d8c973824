/*
 * redis_stream_payload.h - the one piece of the Redis Streams adapter that
 * is a pure function, exported so that tests/fuzz/fuzz_stream_fields.c can
 * drive it: an XREAD entry's field/value array to the event's JSON
 * payload. Nothing else should call it.
 */
#ifndef SLUICE_REDIS_STREAM_PAYLOAD_H
#define SLUICE_REDIS_STREAM_PAYLOAD_H

#include <hiredis/hiredis.h>

struct evbuffer;

/*
 * Replaces the contents of out with the JSON object of fields, an XREAD
 * entry's [field, value, ...] array (non-string items are skipped, an odd
 * last item ignored): {"field":"value",...} in entry order; when any value
 * is not valid UTF-8, every value is base64 and "_encoding":"base64" ends
 * the object. 0, or -1 on ENOMEM.
 */
int redis_stream_payload(struct evbuffer *out, const redisReply *fields);

#endif
