/*
 * main.c - the command line (SPEC 2): find and load the config, --check,
 * --version, --help; then build the bridge and run it. The only place
 * that exits.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bridge/bridge.h"
#include "bridge/tls.h"
#include "lib/log.h"
#include "lib/route.h"
#include "bridge/upstream.h"
#include "config/config.h"

static void main_usage(FILE *out)
{
    fprintf(out,
            "usage: sluice [-c FILE] [--check] [--version] [--help]\n"
            "  -c, --config FILE  config file (default: $SLUICE_CONFIG,\n"
            "                     else ./sluice.yaml, else the embedded "
            "default)\n"
            "      --check        validate the config, print the routes "
            "and exit\n"
            "      --version      print the version\n");
}

/* The config file to use: -c, $SLUICE_CONFIG, ./sluice.yaml, or NULL for
 * the embedded default. */
static const char *main_config_path(const char *opt)
{
    const char *env = getenv("SLUICE_CONFIG");

    if (opt != NULL)
        return opt;
    if (env != NULL && env[0] != '\0')
        return env;
    if (access("sluice.yaml", F_OK) == 0)
        return "sluice.yaml";
    return NULL;
}

static void main_print_strv(const char *verb, const struct config_strv *v)
{
    for (size_t i = 0; i < v->count; i++)
        printf("    %s %s\n", verb, v->items[i]);
}

static const char *main_event_name(const struct route_config *rc)
{
    if (rc->event == ROUTE_EVENT_TOPIC)
        return "topic";
    if (rc->event == ROUTE_EVENT_FIXED)
        return rc->event_name;
    return "message";
}

/* --check output: routes with their topic patterns, then each source's
 * upstream subscriptions. Returns the exit status. */
static int main_print_check(const struct config *cfg,
                            const struct route_table *routes)
{
    printf("config %s: ok\n\nroutes:\n", cfg->file);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct route_config *rc = &cfg->routes[i];
        printf("  %s  (format %s, event %s%s%s%s)\n", rc->path,
               rc->format == ROUTE_FORMAT_RAW ? "raw" : "json",
               main_event_name(rc), rc->snapshot ? ", snapshot" : "",
               rc->is_public ? ", public" : "",
               rc->enabled ? "" : ", disabled");
        for (size_t t = 0; t < rc->topics.count; t++)
            printf("    <- %s\n", rc->topics.items[t]);
    }
    printf("\nsources:\n");
    for (size_t i = 0; i < cfg->nsources; i++) {
        const struct source_config *sc = &cfg->sources[i];
        struct subscriptions subs = {0};
        const struct adapter_ops *ops = adapter_for_type(sc->type);
        if (upstream_subscriptions(cfg, routes, i, &subs) < 0)
            return 1;
        printf("  %s (%s)\n", sc->name, config_source_type_name(sc->type));
        main_print_strv(ops->exact_verb, &subs.exact);
        main_print_strv(ops->pattern_verb, &subs.patterns);
        subscriptions_free(&subs);
    }
    return 0;
}

static bool main_is_loopback(const char *host)
{
    return strcmp(host, "127.0.0.1") == 0 || strcmp(host, "::1") == 0 ||
           strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0;
}

/* Loads the config and routes; prints errors and returns -1 on failure. */
/* Every source's URL, parsed as its adapter will: FILE:LINE:COL errors
 * (never the URL: it may hold a password). 0, or -1 after printing. */
static int main_check_urls(const struct config *cfg)
{
    char why[160];
    int rc = 0;

    for (size_t i = 0; i < cfg->nsources; i++) {
        const struct source_config *sc = &cfg->sources[i];
        if (adapter_for_type(sc->type)->check_url(sc->url, why,
                                                  sizeof(why)) == 0)
            continue;
        fprintf(stderr, "%s:%d:%d: %s\n", cfg->file, sc->url_pos.line,
                sc->url_pos.col, why);
        rc = -1;
    }
    if (cfg->history.redis != NULL &&
        redis_adapter_ops.check_url(cfg->history.redis, why,
                                    sizeof(why)) < 0) {
        fprintf(stderr, "%s:%d:%d: history.redis: %s\n", cfg->file,
                cfg->history.redis_pos.line, cfg->history.redis_pos.col, why);
        rc = -1;
    }
    return rc;
}

/*
 * The tls block's files, loaded as the server will (a missing file, a
 * certificate or key OpenSSL refuses, a key that does not match). 0, or
 * -1 after printing FILE:LINE:COL errors.
 */
static int main_check_transport(const struct config *cfg)
{
    char err[1024];

    if (!cfg->tls.present || tls_check(cfg, err, sizeof(err)) == 0)
        return 0;
    fprintf(stderr, "%s\n", err);
    return -1;
}

static int main_load(const char *path, struct config **cfg,
                     struct route_table **routes)
{
    char *errors = NULL;

    *cfg = path != NULL ? config_load_file(path, &errors)
                        : config_load_default(&errors);
    if (*cfg == NULL) {
        fputs(errors != NULL ? errors : "config: out of memory\n", stderr);
        free(errors);
        return -1;
    }
    if (main_check_urls(*cfg) < 0 || main_check_transport(*cfg) < 0) {
        config_free(*cfg);
        *cfg = NULL;
        return -1;
    }
    *routes = route_table_build(*cfg, &errors);
    if (*routes == NULL) {
        fputs(errors != NULL ? errors : "routes: out of memory\n", stderr);
        free(errors);
        config_free(*cfg);
        *cfg = NULL;
        return -1;
    }
    return 0;
}

/* File descriptors kept for brokers, the journal and the listener. */
#define MAIN_FD_RESERVE 64

/* Raises the soft open-file limit to the hard one: every stream is a
 * socket. Warns when max_connections cannot fit under it. */
static void main_raise_fd_limit(const struct config *cfg)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY &&
        cfg->stream.max_connections + MAIN_FD_RESERVE > rl.rlim_cur)
        log_warn("stream.max_connections (%llu) does not fit under the "
                 "open-file limit (%llu): past it, accepts pause",
                 (unsigned long long)cfg->stream.max_connections,
                 (unsigned long long)rl.rlim_cur);
}

static int main_run(struct config *cfg, struct route_table *routes,
                    const char *path)
{
    char err[512];
    struct bridge *b;
    int rc;

    log_configure(cfg->log_level, cfg->log_format);
    main_raise_fd_limit(cfg);
    if (path == NULL)
        log_info("no config file given: using the embedded default");
    if (cfg->http2.enabled && !cfg->tls.present && !cfg->http2.cleartext)
        log_warn("http2.enabled without a tls block or http2.cleartext: "
                 "no client can reach HTTP/2 (browsers need TLS)");
    if (!cfg->auth.present && !main_is_loopback(cfg->listen_host))
        log_warn("no auth block: every route is public, and sluice listens "
                 "on %s",
                 cfg->listen_host);
    b = bridge_new(cfg, routes, path, err, sizeof(err));
    if (b == NULL) {
        log_error("%s", err);
        return 1;
    }
    if (bridge_start(b, err, sizeof(err)) < 0) {
        log_error("%s", err);
        bridge_free(b);
        return 1;
    }
    log_info("sluice %s listening on %s:%d", SLUICE_VERSION,
             b->cfg->listen_host, b->cfg->listen_port);
    rc = bridge_run(b);
    bridge_free(b);
    log_info("stopped");
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"check", no_argument, NULL, 'k'},
        {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *opt_config = NULL;
    bool check = false;
    struct config *cfg;
    struct route_table *routes;
    const char *path;
    int c, rc;

    while ((c = getopt_long(argc, argv, "c:h", options, NULL)) != -1) {
        switch (c) {
        case 'c':
            opt_config = optarg;
            break;
        case 'k':
            check = true;
            break;
        case 'v':
            printf("sluice %s\n", SLUICE_VERSION);
            return 0;
        case 'h':
            main_usage(stdout);
            return 0;
        default:
            main_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        main_usage(stderr);
        return 2;
    }
    path = main_config_path(opt_config);
    if (main_load(path, &cfg, &routes) < 0)
        return 1;
    if (check) {
        rc = main_print_check(cfg, routes);
        route_table_free(routes);
        config_free(cfg);
        return rc;
    }
    return main_run(cfg, routes, path);
}
