/*
 * Store: manual syncs (the syncs table), for sync.c.  No transaction is
 * held across a finX call: a sync is started and polled under claims,
 * committed rows with deadlines (0013_episodes.sql).
 *
 * Start: store_sync_claim_start commits the sync in status STARTING with
 * a claim and a deadline (one open sync per connection, by a unique
 * index: a second request finds this one and answers it); sync.c asks
 * finX with no connection held; store_sync_started or
 * store_sync_start_failed compare-and-set the answer on the claim.
 * Poll: store_sync_claim_due commits a claim on the open sync due first
 * (its next_poll_at moved to the claim's deadline); sync.c asks finX;
 * store_sync_finish, _poll_later or _fail set the answer on the claim.
 * A STARTING sync whose deadline passed lost its starter: the poll (or
 * the next request) ends it as failed.
 *
 * Failures as in store.h: db_failure() tells how, nothing is logged.
 */
#ifndef FINXD_STORE_SYNC_H
#define FINXD_STORE_SYNC_H

#include <stdbool.h>
#include <libpq-fe.h>

/* A sync as GET /v1/syncs/{id} shows it; NULL members are SQL NULLs.
 * error is finX's error object as JSON text; times are RFC 3339.
 * status is ours (STARTING while finX is asked) or finX's. */
struct store_sync {
	char *id, *connection_id, *status, *error;
	char *created_at, *started_at, *ended_at, *updated_at;
};
/* Free the members of s and zero it. */
void store_sync_clear(struct store_sync *s);

enum store_sync_begun {
	SSB_FAILED,        /* the database failed (db_failure) */
	SSB_NO_CONNECTION, /* no such connection */
	SSB_NOT_ACTIVE,    /* the connection is not active */
	SSB_NOT_PULLED,    /* no account of it has an access id yet */
	SSB_RUNNING,       /* *out: the open sync of the connection */
	SSB_IDLE,          /* store_sync_peek: none open, one may start */
	SSB_CLAIMED,       /* store_sync_claim_start: *out is ours */
	SSB_NOT_STARTED,   /* sync.c: finX refused or did not answer */
	SSB_STARTED,       /* sync.c: finX started it, *out recorded */
};

/*
 * What a start would find: the request's answer unless SSB_IDLE, so
 * that only a request that may start a sync reads (or refreshes) the
 * access token.  A STARTING sync past its deadline counts as none.
 */
enum store_sync_begun store_sync_peek(PGconn *c, const char *conn_id,
    struct store_sync *out);

/* The claim a start holds: its id and the access finX is asked about. */
struct store_sync_claim {
	char *claim, *access_id;
};
void store_sync_claim_free(struct store_sync_claim *k);

/*
 * Commit a STARTING sync of conn_id (ending a STARTING one past its
 * deadline first) with a new claim that runs out in deadline_s.
 * SSB_CLAIMED: *out is the new sync, *k its claim.  Else what stood in
 * the way: SSB_RUNNING with *out the open sync, or the connection's
 * state.  store_sync_clear *out in any case.
 */
enum store_sync_begun store_sync_claim_start(PGconn *c, const char *conn_id,
    long deadline_s, struct store_sync_claim *k, struct store_sync *out);
/*
 * finX started the claimed sync id as finx_sync_id in its status: set
 * on claim k (first polled a second later).  1 set (*out the row), 0
 * the claim was lost (*out the row as it is), -1 failed.
 */
int store_sync_started(PGconn *c, const char *id, const char *claim,
    const char *finx_sync_id, const char *status, struct store_sync *out);
/* finX did not start it: the claimed sync failed with error (a JSON
 * object as text), and its sync.failed event. */
bool store_sync_start_failed(PGconn *c, const char *id, const char *claim,
    const char *error);

/* The sync id; false on failure, out->id NULL when there is none. */
bool store_sync_get(PGconn *c, const char *id, struct store_sync *out);

/* An open sync a worker claimed (store_sync_due_free). */
struct store_sync_due {
	char *id, *connection_id, *access_id, *finx_sync_id, *status;
	char *claim;
};
void store_sync_due_free(struct store_sync_due *d);

/*
 * Claim the open sync due first (SKIP LOCKED, so workers of all
 * processes spread them) for deadline_s, committed.  1 claimed (*d), 0
 * none due, -1 failed.  A claimed STARTING sync is one whose starter
 * ran out of time: store_sync_abandon it.
 */
int store_sync_claim_due(PGconn *c, long deadline_s,
    struct store_sync_due *d);
/* The claimed STARTING sync failed: its start was interrupted. */
bool store_sync_abandon(PGconn *c, const struct store_sync_due *d);

/*
 * finX's status of claimed sync d (and its error object as JSON text, or
 * NULL), on d's claim: started when not QUEUED, ended when final
 * (COMPLETED, FAILED, ERROR, CANCELLED) with its event, polled again in
 * 2 s while open.  COMPLETED also makes the connection's pull due now,
 * attended (the user asked).
 */
bool store_sync_finish(PGconn *c, const struct store_sync_due *d,
    const char *status, const char *error);
/* finX did not answer: poll d again in 10 s. */
bool store_sync_poll_later(PGconn *c, const struct store_sync_due *d);
/* The connection has no valid access token: d failed. */
bool store_sync_fail(PGconn *c, const struct store_sync_due *d);

#endif
