/*
 * history_local.h - the history of one process: the in-memory ring
 * (ring.h) plus, with history.dir, the journal on disk (journal.h).
 *
 * This is the default backend of the history interface (history.h). Every
 * append goes to the ring, then to the journal before the caller can show
 * the event to anyone, so a kill -9 loses nothing that a browser saw. At
 * open it restores the journal into the ring; a journal that lost records
 * or a reboot with fsync never/batch starts a new id epoch, so that no id
 * a browser holds is ever issued again for another event. With fsync
 * batch, a timer on the caller's loop syncs at most every 100 ms.
 *
 * Positions are the ring's sequence numbers (1, 2, 3...); reads never
 * wait.
 */
#ifndef SLUICE_HISTORY_LOCAL_H
#define SLUICE_HISTORY_LOCAL_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct event_base;
struct history;

/*
 * Opens the local history for cfg (its history block and the names of its
 * sources are copied: journal records name their source, so a config whose
 * sources were reordered restores correctly, and records of a source that
 * no longer exists get source index UINT32_MAX, which nothing matches).
 * Restores the journal when history.dir is set and starts the batch fsync
 * timer on base. Returns a new history (free with history_free), or NULL
 * with a message in err.
 */
struct history *history_local_open(const struct config *cfg,
                                   struct event_base *base, int64_t now_ms,
                                   char *err, size_t errlen);

#endif
