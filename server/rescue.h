/*
 * Rotated tokens that finX issued and PostgreSQL has not stored yet.  They
 * exist nowhere else: the superseded refresh token is dead at finX.  Each
 * one is written to a local journal (FINXD_STATE_DIR, sealed with the
 * token key, fsynced) before its store is attempted, removed once the
 * store committed, and retried by a rescue thread with backoff until
 * PostgreSQL takes it, however long that is.  A process killed meanwhile
 * replays the journal at its next start.  See server/REFRESH.md.
 */
#ifndef FINXD_RESCUE_H
#define FINXD_RESCUE_H

#include <stdbool.h>
#include <libpq-fe.h>

#include "finx_decode.h"
#include "tokens.h"

struct config;

/*
 * Open (and lock) the journal directory and load what an earlier process
 * left there.  Without a state directory the rescue is in memory only,
 * which a warning says.  False (with a logged reason) when the directory
 * is set but unusable: refuse to start rather than lose tokens.
 */
bool rescue_init(const struct config *cfg);

/*
 * Store tokens t obtained with connection id's generation gen: journal
 * them, then try the compare-and-set once on c (which may be NULL: no
 * database at hand).  Takes ownership of *t (zeroes it).  Returns the
 * outcome of that first try; on TOK_DB_ERROR the rescue thread keeps
 * trying, and the id stays in this process's in-flight set until it is
 * stored.
 */
enum tokens_cas rescue_store(PGconn *c, const char *id, const char *grant,
    long gen, struct finx_tokens *t, long due_s);

/* Rotations still waiting for PostgreSQL in this process. */
int rescue_pending(void);
/*
 * True while rotations are pending and the rescue has not yet had a try
 * on a working database connection since: the workers refresh nothing
 * meanwhile, so once PostgreSQL is back the rescue stores first.  (A
 * rotation that still fails on a working connection is logged and
 * retried, but does not stop the workers for good.)
 */
bool rescue_holds_workers(void);

/* After rescue_stop: whether rotations were left behind. */
bool rescue_left_in_journal(void);

/* The rescue thread. */
void rescue_start(void);
/*
 * On SIGTERM: keep trying for up to wait_s seconds, then stop.  What is
 * still pending then stays in the journal for the next start (or, without
 * a journal, is lost: logged as an error per connection).
 */
void rescue_stop(long wait_s);

#endif
