/*
 * reload.h - applying a new config on SIGHUP; see reload.c.
 */
#ifndef SLUICE_RELOAD_H
#define SLUICE_RELOAD_H

struct bridge;

/* Reloads b->config_path into b. Returns 0, or -1 when the running
 * configuration was kept (the reasons are logged). */
int bridge_reload(struct bridge *b);

#endif
