/*
 * Store: manual syncs (the syncs table), for sync.c.  Both transactions
 * here hold a lock across a finX call on purpose, so the finX part runs
 * as a callback inside them: store_sync_begin serialises the requests of
 * one connection with an advisory lock (a second request while a sync
 * starts gets that sync, finX sees one), store_sync_claim_due keeps the
 * claimed row locked (SKIP LOCKED) while a worker asks finX about it.
 * Neither callback may take a second pooled connection: the lock holder
 * would wait on a pool the lock's waiters may be holding.
 * Failures as in store.h: db_failure() tells how, nothing is logged.
 */
#ifndef FINXD_STORE_SYNC_H
#define FINXD_STORE_SYNC_H

#include <stdbool.h>
#include <libpq-fe.h>

/* A sync as GET /v1/syncs/{id} shows it; NULL members are SQL NULLs.
 * error is finX's error object as JSON text; times are RFC 3339. */
struct store_sync {
	char *id, *connection_id, *status, *error;
	char *created_at, *started_at, *ended_at, *updated_at;
};
/* Free the members of s and zero it. */
void store_sync_clear(struct store_sync *s);

/*
 * Start a sync of connection conn_id, whose first account at finX has
 * access_id: ask finX, then store_sync_create on c into *out.  false
 * when no sync was started (the callback knows why: finX or c).  Runs
 * inside store_sync_begin's transaction, again when that is retried.
 */
typedef bool store_sync_start_fn(PGconn *c, const char *conn_id,
    const char *access_id, void *arg, struct store_sync *out);

enum store_sync_begun {
	SSB_FAILED,        /* the database failed (db_failure) */
	SSB_NO_CONNECTION, /* no such connection */
	SSB_NOT_ACTIVE,    /* the connection is not active */
	SSB_NOT_PULLED,    /* no account of it has an access id yet */
	SSB_RUNNING,       /* *out: the open sync of the connection */
	SSB_NOT_STARTED,   /* start returned false */
	SSB_STARTED,       /* *out: the sync start recorded */
	SSB_IDLE,          /* store_sync_peek: none open, one may start */
	SSB_BUSY,          /* another request holds the lock: try again */
};

/*
 * What store_sync_begin would find, without its lock or a transaction:
 * the request's answer unless SSB_IDLE, so that only a request that may
 * start a sync reads (or refreshes) the access token.
 */
enum store_sync_begun store_sync_peek(PGconn *c, const char *conn_id,
    struct store_sync *out);

/*
 * One transaction under the connection's advisory lock: the connection
 * is checked, an open sync of it is returned as it is (coalesced), else
 * start is called.  The lock is tried, not waited for: SSB_BUSY when
 * another request holds it (release c before trying again).  *out is
 * filled for SSB_RUNNING and SSB_STARTED (store_sync_clear it in any
 * case).
 */
enum store_sync_begun store_sync_begin(PGconn *c, const char *conn_id,
    store_sync_start_fn *start, void *arg, struct store_sync *out);

/* Record a sync finX started (status: finX's, "QUEUED" at first); it is
 * first polled a second later.  *out: the new row. */
bool store_sync_create(PGconn *c, const char *conn_id, const char *access_id,
    const char *finx_sync_id, const char *status, struct store_sync *out);

/* The sync id; false on failure, out->id NULL when there is none. */
bool store_sync_get(PGconn *c, const char *id, struct store_sync *out);

/* The open sync a worker claimed; borrowed for the callback's run. */
struct store_sync_due {
	const char *id, *connection_id, *access_id, *finx_sync_id;
};
/*
 * Ask finX about d and record what it said on c (store_sync_finish,
 * store_sync_poll_later or store_sync_fail); false when that failed.
 * Runs with d's row locked, again when the transaction is retried.
 */
typedef bool
store_sync_poll_fn(PGconn *c, const struct store_sync_due *d, void *arg);

enum store_sync_polled {
	SSP_NONE,   /* no open sync was due */
	SSP_POLLED, /* one was, and poll's record committed */
	SSP_FAILED, /* the database failed (db_failure) or poll said so */
};
/* Claim the open sync due first (FOR UPDATE SKIP LOCKED, so workers of
 * all processes spread them) and run poll on it, in one transaction. */
enum store_sync_polled
store_sync_claim_due(PGconn *c, store_sync_poll_fn *poll, void *arg);

/*
 * finX's status of sync id (and its error object as JSON text, or
 * NULL): started when not QUEUED, ended when final (COMPLETED, FAILED,
 * ERROR, CANCELLED), polled again in 2 s while open.  COMPLETED also
 * makes the connection's pull due now, attended (the user asked).
 */
bool store_sync_finish(PGconn *c, const char *id, const char *status,
    const char *error);
/* finX did not answer: poll sync id again in 10 s. */
bool store_sync_poll_later(PGconn *c, const char *id);
/* The connection has no valid access token: sync id failed. */
bool store_sync_fail(PGconn *c, const char *id);

#endif
