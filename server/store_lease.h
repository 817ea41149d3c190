/*
 * Store: refresh leases on connections and the processes that hold them
 * (finxd_processes, the heartbeat).  Who may take a lease, and why, is
 * server/REFRESH.md, "Leases, not locks"; the statements are here.
 * Failures: false, -1 or NULL with db_failure() telling how; nothing is
 * logged here (store.h).
 */
#ifndef FINXD_STORE_LEASE_H
#define FINXD_STORE_LEASE_H

#include <stdbool.h>
#include <libpq-fe.h>

/* Who asks for a lease, and on what terms (lease.h gives the values). */
struct lease_terms {
	const char *holder;   /* this process's id */
	int secs;             /* how long the lease lasts */
	const char *inflight; /* ids this process still works on: a uuid[]
				 literal ("{}" for none) */
	bool may_take_over;   /* from a holder whose heartbeat is stale */
	int stale_s;          /* heartbeat age after which a holder is gone */
};

/* A lease this process holds on one connection, as the lease statement
 * returned it. */
struct conn_lease {
	char *id;
	char *sealed; /* the refresh token it presents, as stored */
	long gen;     /* the token generation leased */
	int failures; /* consecutive failures before this attempt */
	bool hot;     /* handed out within the last access lifetime */
	long refresh_left; /* seconds the refresh token lives; <= 0 unknown */
	char *grant;  /* connected_at: which grant the token belongs to */
	char *prev;   /* the holder of the lease taken over, or NULL */
};
void store_conn_lease_free(struct conn_lease *l);

/*
 * Commit a lease on connection id while it still holds generation gen
 * and is active with a refresh token.  1 taken (*l filled), 0 not (held
 * by someone, or changed), -1 database error.
 */
int store_conn_lease(PGconn *c, const struct lease_terms *w, const char *id,
    long gen, struct conn_lease *l);
/*
 * The background claim: the lease on the connection due first (one range
 * scan on connections_next_due_idx, SKIP LOCKED).  1 taken, 0 none due,
 * -1 database error.
 */
int store_conn_claim_due(PGconn *c, const struct lease_terms *w,
    struct conn_lease *l);
/*
 * The claim's SQL text, for bench_sched, which measures it against a
 * backlog.  Parameters: $1 holder, $2 lease seconds, $3 in-flight ids (a
 * uuid[] literal), $4 may take over, $5 stale seconds.
 */
extern const char refresh_claim_sql[];

/* Whether holder still holds l's lease, unexpired, on the generation it
 * leased.  1 yes, 0 no, -1 database error. */
int store_conn_lease_holds(PGconn *c, const struct conn_lease *l,
    const char *holder);
/*
 * Give the lease back after a failed attempt: the failure counted, msg
 * as last_error, the next attempt after backoff_s, the connection due.
 */
bool store_conn_lease_fail(PGconn *c, const struct conn_lease *l,
    const char *holder, const char *msg, long backoff_s);
/*
 * finX refused the refresh token for good: reauth_required with reason
 * why (and an event), only while the row still holds the generation
 * refused.  1 condemned, 0 changed meanwhile, -1 database error.
 */
int store_conn_condemn(PGconn *c, const struct conn_lease *l,
    const char *why);

/* This process's heartbeat row: registered, or renewed (live_since
 * restarts after a gap). */
bool store_process_beat(PGconn *c, const char *id, const char *host,
    long pid, const char *version);
/* Forget processes gone for a week. */
bool store_process_prune(PGconn *c);
/* Forget process id (a clean stop with nothing left to rescue). */
bool store_process_forget(PGconn *c, const char *id);

#endif
