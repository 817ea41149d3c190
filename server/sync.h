/*
 * Manual syncs (sync.c): the API handlers are declared in api.h; this is
 * what the workers call.
 */
#ifndef FINXD_SYNC_H
#define FINXD_SYNC_H

#include <stdbool.h>
#include <libpq-fe.h>

/* Poll one open manual sync at finX; false when none was due. */
bool sync_poll_one(PGconn *c);

#endif
