/*
 * reload.c - SIGHUP (SPEC 2): reload routes, auth and stream settings
 * without dropping the streams that stay valid.
 *
 * The new config is loaded and checked in full first; on any error the
 * running one stays and the errors are logged. Sources must keep their
 * names, types and order (history entries and feeds refer to them by
 * index), else the reload is refused. Changed connection settings (URL
 * with its credentials, client id, TLS files) and a changed listen address
 * and history settings need a restart: sluice logs that and keeps running
 * with the old values.
 * Then every open stream is re-resolved against the new routes and auth
 * (server_rehome): those that no longer resolve (route gone, token no
 * longer allowed) are closed, the rest move to their new feeds without a
 * byte lost; and each source resubscribes to what the new routes derive.
 */
#include "bridge/reload.h"

#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "bridge/bridge.h"
#include "lib/log.h"
#include "lib/route.h"
#include "bridge/replica.h"
#include "bridge/server.h"
#include "bridge/stream.h"

/* Logs each line of a loader's error list. */
static void reload_log_errors(const char *errors)
{
    const char *p = errors;

    while (p != NULL && *p != '\0') {
        const char *nl = strchr(p, '\n');
        int len = nl != NULL ? (int)(nl - p) : (int)strlen(p);
        log_error("reload: %.*s", len, p);
        p = nl != NULL ? nl + 1 : NULL;
    }
}

static bool reload_sources_compatible(const struct config *old,
                                      const struct config *new)
{
    if (old->nsources != new->nsources)
        return false;
    for (size_t i = 0; i < old->nsources; i++)
        if (strcmp(old->sources[i].name, new->sources[i].name) != 0 ||
            old->sources[i].type != new->sources[i].type)
            return false;
    return true;
}

static bool reload_str_differs(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a != b;
    return strcmp(a, b) != 0;
}

static void reload_swap_str(char **a, char **b)
{
    char *t = *a;

    *a = *b;
    *b = t;
}

/* Keeps the running connection settings of one source in `new` (they need
 * a restart) and says so when they changed. */
static void reload_keep_connection(struct source_config *old,
                                   struct source_config *new)
{
    bool changed = reload_str_differs(old->url, new->url) ||
                   reload_str_differs(old->client_id, new->client_id) ||
                   reload_str_differs(old->ca_file, new->ca_file) ||
                   reload_str_differs(old->cert_file, new->cert_file) ||
                   reload_str_differs(old->key_file, new->key_file) ||
                   old->clean_session != new->clean_session ||
                   old->protocol != new->protocol ||
                   old->keepalive_ms != new->keepalive_ms;

    if (!changed)
        return;
    log_warn("reload: source %s: connection settings changed; restart "
             "sluice to apply them (keeping the running ones)",
             old->name);
    reload_swap_str(&old->url, &new->url);
    reload_swap_str(&old->client_id, &new->client_id);
    reload_swap_str(&old->ca_file, &new->ca_file);
    reload_swap_str(&old->cert_file, &new->cert_file);
    reload_swap_str(&old->key_file, &new->key_file);
    new->clean_session = old->clean_session;
    new->protocol = old->protocol;
    new->keepalive_ms = old->keepalive_ms;
}

static void reload_keep_listen(struct config *old, struct config *new)
{
    if (strcmp(old->listen_host, new->listen_host) == 0 &&
        old->listen_port == new->listen_port)
        return;
    log_warn("reload: listen address changed; restart sluice to apply it");
    reload_swap_str(&old->listen_host, &new->listen_host);
    new->listen_port = old->listen_port;
}

static bool reload_history_differs(const struct history_config *a,
                                   const struct history_config *b)
{
    return a->max_events != b->max_events || a->max_bytes != b->max_bytes ||
           a->max_age_ms != b->max_age_ms || a->fsync != b->fsync ||
           reload_str_differs(a->dir, b->dir) ||
           reload_str_differs(a->redis, b->redis) ||
           reload_str_differs(a->key, b->key);
}

/* The history was opened with the old settings, which it keeps. */
static void reload_keep_history(struct config *old, struct config *new)
{
    struct history_config kept = old->history;

    if (!reload_history_differs(&old->history, &new->history))
        return;
    log_warn("reload: history settings changed; restart sluice to apply "
             "them (keeping the running ones)");
    old->history = new->history;
    new->history = kept;
}

/*
 * The certificate and key are read again (cert-manager rotates them in
 * place): new handshakes use them, open connections keep theirs. A pair
 * that does not load keeps the running one. Turning TLS on or off, and
 * the http2 block, need a restart.
 */
static void reload_tls(struct bridge *b, struct config *old,
                       struct config *new)
{
    char err[1024];

    if (old->http2.enabled != new->http2.enabled ||
        old->http2.cleartext != new->http2.cleartext ||
        old->http2.max_concurrent_streams !=
            new->http2.max_concurrent_streams) {
        log_warn("reload: http2 settings changed; restart sluice to apply "
                 "them");
        new->http2 = old->http2;
    }
    if (server_reload_tls(b->server, new, err, sizeof(err)) < 0) {
        log_error("reload: %s; keeping the running TLS settings", err);
        reload_swap_str(&old->tls.cert_file, &new->tls.cert_file);
        reload_swap_str(&old->tls.key_file, &new->tls.key_file);
        new->tls.present = old->tls.present;
        new->tls.min_version = old->tls.min_version;
        return;
    }
    if (new->tls.present)
        log_info("reload: TLS certificate loaded from %s",
                 new->tls.cert_file);
}

/* Loads and checks everything; NULL-free outputs only on success. */
static int reload_load(struct bridge *b, struct config **cfg,
                       struct route_table **routes, struct auth **auth)
{
    char *errors = NULL;
    char err[256];

    *cfg = config_load_file(b->config_path, &errors);
    if (*cfg == NULL)
        goto fail;
    *routes = route_table_build(*cfg, &errors);
    if (*routes == NULL)
        goto fail;
    if (!reload_sources_compatible(b->cfg, *cfg)) {
        log_error("reload: sources were added, removed, renamed or "
                  "reordered; restart sluice to apply that");
        goto fail;
    }
    *auth = auth_new(*cfg, err, sizeof(err));
    if (*auth == NULL) {
        log_error("reload: %s", err);
        goto fail;
    }
    return 0;
fail:
    reload_log_errors(errors);
    free(errors);
    if (*routes != NULL)
        route_table_free(*routes);
    config_free(*cfg);
    *cfg = NULL;
    *routes = NULL;
    return -1;
}

/* Moves every open stream to its feed under the new routes, or closes it.
 * Returns how many were closed. */
static size_t reload_rehome_streams(struct bridge *b)
{
    size_t closed = 0;

    for (struct stream *s = b->streams; s != NULL; s = s->next) {
        if (s->reaping || s->closing)
            continue;
        if (server_rehome(b->server, s) == 0)
            continue;
        s->reap_reason = DROP_RELOAD;
        bridge_schedule_reap(b, s);
        closed++;
    }
    return closed;
}

static void reload_resubscribe(struct bridge *b)
{
    for (size_t i = 0; i < b->nsources; i++) {
        struct source *src = &b->sources[i];
        struct subscriptions subs = {0};

        src->cfg = &b->cfg->sources[i];
        if (replica_subscriptions(b, (uint32_t)i, &subs) < 0) {
            log_error("reload: source %s: out of memory", src->cfg->name);
            continue;
        }
        src->ops->resubscribe(src, &subs);
    }
}

int bridge_reload(struct bridge *b)
{
    struct config *cfg = NULL, *old_cfg = b->cfg;
    struct route_table *routes = NULL, *old_routes = b->routes;
    struct auth *auth = NULL, *old_auth = b->auth;
    size_t closed;

    if (b->config_path == NULL) {
        log_warn("reload: running on the embedded default; nothing to "
                 "reload");
        return -1;
    }
    if (reload_load(b, &cfg, &routes, &auth) < 0) {
        log_error("reload: keeping the running configuration");
        return -1;
    }
    reload_keep_listen(old_cfg, cfg);
    reload_keep_history(old_cfg, cfg);
    reload_tls(b, old_cfg, cfg);
    for (size_t i = 0; i < cfg->nsources; i++)
        reload_keep_connection(&old_cfg->sources[i], &cfg->sources[i]);
    b->cfg = cfg;
    b->routes = routes;
    b->auth = auth;
    log_configure(cfg->log_level, cfg->log_format);
    closed = reload_rehome_streams(b);
    reload_resubscribe(b);
    auth_free(old_auth);
    route_table_free(old_routes);
    config_free(old_cfg);
    log_info("reloaded %s: %zu routes; %zu streams kept, %zu closed",
             cfg->file, cfg->nroutes, b->nstreams - closed, closed);
    return 0;
}
