/*
 * redis_entry.h - a Redis Stream entry's fields as the JSON object sluice
 * sends ({"field":"value",...}), shared by the two readers of streams:
 * redis_stream.c (configured keys) and redis_keys.c (per-key routes).
 * Adapter-only (it brings in hiredis).
 */
#ifndef SLUICE_REDIS_ENTRY_H
#define SLUICE_REDIS_ENTRY_H

#include <hiredis/hiredis.h>

struct evbuffer;

/*
 * Replaces out's contents with the JSON object of the field/value list
 * `fields` (an array reply), in entry order, values as JSON strings; when
 * any value is not UTF-8, every value is base64 and "_encoding":"base64"
 * ends the object. 0, or -1 on ENOMEM.
 */
int redis_entry_json(struct evbuffer *out, const redisReply *fields);

#endif
