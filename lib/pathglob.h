// pathglob.h - URL path globs (auth allow lists), judged on the same
// decoded segments the router sees. (Line comments: the examples contain
// the characters that would end a block comment.)
//
// A glob is matched against the request path split into segments, each
// percent-decoded with the router's strict decoder (percent.h). Segment
// boundaries are the path's own '/' bytes only: a "%2F" inside a segment
// decodes to a '/' byte that is data, never a boundary, so "/users/bob/*"
// cannot be reached through "/users/bob%2Fx". A "*" spans neither: a
// {name*} route parameter turns a decoded '/' into a topic level, so
// "/sites/north*" must not open "/sites/north%2Fsouth" (topic north/south)
// when it does not open "/sites/north/south".
//
// Glob syntax:
//   "*"      any run of bytes (also empty) within one segment:
//            "/users/*/feed" matches "/users/bob/feed", not
//            "/users/a/b/feed";
//   "**"     any run of bytes and segments: "/a/**" matches "/a/b/c";
//   a last segment "*" (the glob ends in "/*"): any non-empty rest:
//            "/sites/*" matches "/sites/a" and "/sites/a/b", not "/sites/";
//   "{sub}"  with a sub given, the bytes of sub, literally: a sub
//            "%61lice" matches the decoded segment "%61lice" only, never
//            "alice" (without a sub it is literal text);
//   every other byte is literal ("?", "[", "%" included).
#ifndef SLUICE_PATHGLOB_H
#define SLUICE_PATHGLOB_H

#include <stdbool.h>

/*
 * True when raw_path (as received: percent-encoded, without query)
 * matches glob, with "{sub}" standing for sub (may be NULL). False when
 * raw_path has a bad percent-encoding, or when out of memory (fail
 * closed). O(glob * path), no backtracking.
 */
bool pathglob_match(const char *glob, const char *sub, const char *raw_path);

#endif
