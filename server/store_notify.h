/*
 * Store: finX notifications (the finx_notifications table, 0012), for
 * notify.c, api_notify.c, data.c and the DELETE of a connection.  Every
 * claim here is one committed statement with a deadline; nothing holds a
 * transaction while finX answers.  Failures as in store.h: db_failure()
 * tells how, nothing is logged.
 */
#ifndef FINXD_STORE_NOTIFY_H
#define FINXD_STORE_NOTIFY_H

#include <stdbool.h>
#include <libpq-fe.h>

/*
 * Make a row to register for each account of connection conn_id that has
 * none (after its pull: the accounts it brought), while it is active.
 * The number of rows made, -1 when the database failed.
 */
long store_notify_seed(PGconn *c, const char *conn_id);

/* A registration claimed by store_notify_claim (members malloc'd). */
struct notify_reg {
	char *id, *conn_id, *finx_account_id;
	int attempts;
	bool active;  /* the connection is active */
	bool revoked; /* the connection is revoked */
};
void store_notify_reg_free(struct notify_reg *g);

/*
 * Claim the most overdue registration (due, or a claim that ran out):
 * the row is committed as registering for claim_s seconds under the
 * secret's SHA-256 hash_hex (a new secret each attempt).  1 with *g, 0
 * when none is due, -1 when the database failed.
 */
int store_notify_claim(PGconn *c, const char *hash_hex, long claim_s,
    struct notify_reg *g);
/* The claim under hash_hex registered as finx_id at finX.  1 stored, 0
 * when the claim was lost (the connection was deleted, or the claim ran
 * out and another took it): the caller removes finx_id again; -1 db. */
int store_notify_registered(PGconn *c, const struct notify_reg *g,
    const char *hash_hex, const char *finx_id);
/* The claim failed: due again in backoff_s with error (no secret). */
bool store_notify_failed(PGconn *c, const struct notify_reg *g,
    const char *hash_hex, const char *error, long backoff_s);
/* A claimed row of a connection that is not active: dropped when it is
 * revoked, else due again in an hour. */
bool store_notify_park(PGconn *c, const struct notify_reg *g);

/*
 * A notification came with the secret whose hash is hash_hex: noted, and
 * the connection's pull moved to greatest(now, last pull +
 * min_interval_s) unless it is sooner already or the pull is failing
 * (its retry will come); while the pull runs, the move is left to the
 * workers (store_notify_pending).  *known: a secret of a connection that
 * is not revoked; *due: its pull is due now.  False when the database
 * failed.
 */
bool store_notify_hit(PGconn *c, const char *hash_hex, long min_interval_s,
    bool *known, bool *due);
/* The moves left by store_notify_hit while a pull ran, for pulls that
 * have ended: how many were made (-1: db); *due when one is due now. */
long store_notify_pending(PGconn *c, long min_interval_s, bool *due);

/* Revocations wait this long at most for the removals at finX. */
#define STORE_NOTIFY_HOLD_S 600

/*
 * Inside DELETE's transaction: the connection's registered notifications
 * become removals at finX (the connection's revocations wait for them
 * up to hold_s seconds), the others are dropped.
 */
bool store_notify_condemn(PGconn *c, const char *conn_id, long hold_s);
/* How many notifications of conn_id are registered at finX; -1: db. */
long store_notify_count(PGconn *c, const char *conn_id);

/* A removal claimed by store_notify_removal_claim (members malloc'd). */
struct notify_removal {
	char *id, *conn_id, *finx_id;
	char *token_id, *sealed_token; /* the revocation queue's access
					  token (NULL: none left) */
	int attempts;
	bool past_hold; /* the revocations no longer wait for it */
};
void store_notify_removal_free(struct notify_removal *m);
/* Claim one due removal (of conn_id only unless NULL) for claim_s
 * seconds; 1 with *m, 0 none, -1 db. */
int store_notify_removal_claim(PGconn *c, const char *conn_id, long claim_s,
    struct notify_removal *m);
/* Done (removed, or given up): the row goes. */
bool store_notify_removal_done(PGconn *c, const struct notify_removal *m);
/* Try again in backoff_s, with error. */
bool store_notify_removal_retry(PGconn *c, const struct notify_removal *m,
    const char *error, long backoff_s);

#endif
