/*
 * config_reader.h - reading libyaml nodes into C values, with positions.
 *
 * The layer between libyaml and the schema in config.c. It loads the
 * document (refusing anchors, aliases and extra documents), collects
 * "NAME:LINE:COL: message" errors, converts scalar nodes (after ${VAR}
 * expansion, config_scalar.h) into typed values with range checks, and
 * applies a table of keys (struct config_field) to a mapping. It knows no
 * sluice key: config.c owns the tables and the checks across keys.
 * Internal to the config module, not part of the config.h contract.
 *
 * Errors never stop the reading: every function reports what it finds
 * and returns, so one run shows as many errors as it can. Messages never
 * contain a scalar's value (it may be a secret).
 */
#ifndef SLUICE_CONFIG_READER_H
#define SLUICE_CONFIG_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <yaml.h>

#include "config/config.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* State of one parse: the error list and the loaded document. */
struct config_reader {
    const char *name; /* file name for messages */
    FILE *errs;       /* open_memstream() over errbuf */
    char *errbuf;
    size_t errlen;
    unsigned nerrors; /* also those beyond the shown maximum */
    bool have_doc;
    yaml_document_t doc;
};

/* Starts a reader; name is borrowed for its lifetime. Returns 0, or -1
 * when out of memory (config_reader_close still applies). */
int config_reader_open(struct config_reader *rd, const char *name);

/*
 * Parses text into rd->doc in two passes: the first reports syntax
 * errors (at libyaml's problem mark), anchors, aliases and extra
 * documents; the second loads the tree. Returns 0 when the document
 * may be read, else -1 with the errors reported.
 */
int config_reader_load(struct config_reader *rd, const char *text, size_t len);

/* The document's root node; NULL for an empty file. */
yaml_node_t *config_reader_root(struct config_reader *rd);

/*
 * Frees the document and ends the error list. Returns 0 when no error
 * was reported. Else returns -1 and stores in *errors the malloc'd
 * "NAME:LINE:COL: message\n" lines (the caller frees them; NULL only if
 * even that allocation failed).
 */
int config_reader_close(struct config_reader *rd, char **errors);

/* Appends one "NAME:LINE:COL: message" line. */
void config_reader_error(struct config_reader *rd, struct config_pos pos,
                         const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reports "out of memory" at node (or 0:0 when node is NULL). */
void config_reader_oom(struct config_reader *rd, const yaml_node_t *node);

/* The node's 1-based position. */
struct config_pos config_node_pos(const yaml_node_t *node);

/* YAML's null: a plain "", "~" or "null" ("key:" leaves key unset). */
bool config_node_is_null(const yaml_node_t *node);

/* Returns 0 when node is of `type`, else reports "what: expected a
 * mapping, found a list" and returns -1. */
int config_node_expect(struct config_reader *rd, const char *what,
                       const yaml_node_t *node, yaml_node_type_t type);

size_t config_seq_len(const yaml_node_t *seq);
yaml_node_t *config_seq_item(struct config_reader *rd, const yaml_node_t *seq,
                             size_t i);

/*
 * Copies user text that may be shown (a key, a name, a scheme; never a
 * value that could be secret) into buf as printable ASCII, shortened to
 * fit, so that a message stays one line. Returns buf.
 */
const char *config_echo_safe(const char *s, char *buf, size_t len);

/*
 * The ${VAR}-expanded text of a scalar as a new string (the caller frees
 * it), or NULL after reporting the error: a list or mapping where
 * `expected` (e.g. "a string") was wanted, a bad ${...}, a NUL byte.
 */
char *config_read_text(struct config_reader *rd, const char *key,
                       const yaml_node_t *node, const char *expected);

/* The kinds of value a key can hold, and the C type it is stored as. */
enum config_field_kind {
    CONFIG_FIELD_STRING,   /* char *; an empty string stores NULL */
    CONFIG_FIELD_BOOL,     /* bool */
    CONFIG_FIELD_INT,      /* int, within [min, max] */
    CONFIG_FIELD_COUNT,    /* uint64_t, within [min, max] */
    CONFIG_FIELD_DURATION, /* int64_t milliseconds, within [min, max] */
    CONFIG_FIELD_SIZE,     /* uint64_t bytes, within [min, max] */
    CONFIG_FIELD_CHOICE,   /* an int-sized enum: the index in names[] */
    CONFIG_FIELD_STRV,     /* struct config_strv of non-empty strings */
    CONFIG_FIELD_CUSTOM,   /* parse() reads it */
};

/* One key of a mapping. */
struct config_field {
    const char *key;
    enum config_field_kind kind;
    size_t offset; /* of the value in the section's struct */
    int64_t min;
    int64_t max;              /* 0: no upper bound */
    bool required;            /* missing, null or empty is an error */
    unsigned types;           /* free for the schema's use (config.c:
                                 the source types a key applies to) */
    const char *const *names; /* CONFIG_FIELD_CHOICE */
    size_t nnames;
    /* CONFIG_FIELD_CUSTOM: reads value into base (the section's struct);
     * returns 0, or -1 after reporting an error. */
    int (*parse)(struct config_reader *rd, const char *key, yaml_node_t *value,
                 void *base);
};

/* Where config_read_section() found a table's key. */
struct config_hit {
    yaml_node_t *key;   /* NULL: key absent */
    yaml_node_t *value; /* NULL: absent or null */
    bool ok;            /* value read without error */
};

/*
 * Reads every pair of the mapping `map` into `base` (the section's
 * struct) as fields[n] says and fills hits[n] with where each key was
 * found. Reports unknown keys (with a "did you mean" hint for a key
 * within edit distance 2), duplicate keys, missing required keys and bad
 * values; `where` completes the messages ("unknown key 'x' in stream").
 * Keys are matched literally (not expanded); a null value keeps the
 * default.
 */
void config_read_section(struct config_reader *rd, yaml_node_t *map,
                         const char *where, const struct config_field *fields,
                         size_t n, void *base, struct config_hit *hits);

/* The hit of `key` in a table read by config_read_section(); the key
 * must be in fields[]. */
const struct config_hit *config_hit_find(const struct config_field *fields,
                                         size_t n,
                                         const struct config_hit *hits,
                                         const char *key);

/*
 * Reads the mapping `value` (the node of `key`) with
 * config_read_section(): the common body of a key whose value is a
 * section of its own. Returns 0, or -1 after reporting that value is not
 * a mapping (hits are then left untouched).
 */
int config_read_map(struct config_reader *rd, const char *key,
                    yaml_node_t *value, const char *where,
                    const struct config_field *fields, size_t n, void *base,
                    struct config_hit *hits);

/*
 * Reads the list `value` (the node of `key`) into a new array of zeroed
 * elements of elem_size bytes: item() reads element i from its node and
 * reports its own errors; it may look at elements 0..i-1 (to find
 * duplicates). On return *items holds the array, which the caller owns
 * (it frees the elements and the array, also after errors), and *count
 * its length; an empty list leaves both untouched (NULL and 0 in a fresh
 * config). Returns 0, or -1 after reporting that value is not a list or
 * that memory ran out (nothing allocated then).
 */
int config_read_seq(struct config_reader *rd, const char *key,
                    yaml_node_t *value, size_t elem_size,
                    void (*item)(struct config_reader *rd, yaml_node_t *node,
                                 void *items, size_t i),
                    void **items, size_t *count);

#endif
