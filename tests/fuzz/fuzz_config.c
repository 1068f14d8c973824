/*
 * fuzz_config.c - libFuzzer driver for the config loader (config/).
 *
 * Parses the input as a config file and checks what callers rely on;
 * any violation calls abort() so that libFuzzer reports it:
 *   - exactly one of the config and the error text comes back;
 *   - the error text is one or more "fuzz.yaml:LINE:COL: message\n"
 *     lines, each non-empty and free of control characters;
 *   - a config that comes back satisfies the schema's promises (at least
 *     one source and route, source names of [a-z0-9_-]+, paths starting
 *     with '/', ranges of qos, protocol and port, lists whose counts
 *     match their items).
 * Everything is freed, so LeakSanitizer catches leaks on error paths.
 *
 * Build: clang -g -O1 -fsanitize=fuzzer,address,undefined -I. \
 *   config/config.c config/config_reader.c config/config_scalar.c \
 *   lib/log.c tests/fuzz/fuzz_config.c -lyaml -o fuzz_config
 * Run:   ./fuzz_config tests/fuzz/corpus/config
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

#define FUZZ_NAME "fuzz.yaml"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_strv(const struct config_strv *v)
{
    if (v->count > 0 && (!v->items || !v->pos))
        abort();
    for (size_t i = 0; i < v->count; i++)
        if (!v->items[i] || !v->items[i][0] || v->pos[i].line < 1)
            abort();
}

static void check_errors(const char *errors)
{
    const char *line = errors;

    if (!*errors)
        abort();
    while (*line) {
        const char *end = strchr(line, '\n');
        int l;
        int c;
        int used = 0;

        if (!end || strncmp(line, FUZZ_NAME ":", strlen(FUZZ_NAME ":")) != 0)
            abort();
        if (sscanf(line + strlen(FUZZ_NAME ":"), "%d:%d: %n", &l, &c, &used) !=
                2 ||
            used == 0 || l < 0 || c < 0)
            abort();
        if (line + strlen(FUZZ_NAME ":") + used >= end)
            abort(); /* empty message */
        for (const char *p = line; p < end; p++)
            if ((unsigned char)*p < 0x20)
                abort();
        line = end + 1;
    }
}

static void check_config(const struct config *cfg)
{
    if (cfg->nsources == 0 || cfg->nroutes == 0 || !cfg->listen_host ||
        cfg->listen_port < 1 || cfg->listen_port > 65535)
        abort();
    for (size_t i = 0; i < cfg->nsources; i++) {
        const struct source_config *s = &cfg->sources[i];
        if (!s->name || !s->url || !s->name[0] ||
            strspn(s->name, "abcdefghijklmnopqrstuvwxyz0123456789_-") !=
                strlen(s->name))
            abort();
        if (s->qos < 0 || s->qos > 2 || s->protocol < 4 || s->protocol > 5)
            abort();
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->sources[j].name, s->name) == 0)
                abort();
        check_strv(&s->subscribe);
        check_strv(&s->channels);
        check_strv(&s->patterns);
        check_strv(&s->streams);
    }
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct route_config *r = &cfg->routes[i];
        if (!r->path || r->path[0] != '/' || r->topics.count == 0)
            abort();
        if ((r->event == ROUTE_EVENT_FIXED) != (r->event_name != NULL))
            abort();
        check_strv(&r->topics);
    }
    for (size_t i = 0; i < cfg->auth.ntokens; i++)
        if (!cfg->auth.tokens[i].name || !cfg->auth.tokens[i].token)
            abort();
    check_strv(&cfg->cors_origins);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* Something for ${...} in the corpus to find. */
    setenv("SLUICE_FUZZ_PORT", "8081", 1);
    setenv("SLUICE_FUZZ_EMPTY", "", 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *errors = NULL;
    struct config *cfg =
        config_parse(FUZZ_NAME, (const char *)data, size, &errors);

    if ((cfg == NULL) == (errors == NULL))
        abort();
    if (errors)
        check_errors(errors);
    else
        check_config(cfg);
    free(errors);
    config_free(cfg);
    return 0;
}
