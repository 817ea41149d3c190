/*
 * Keeping connections alive.  A refresh first commits a lease on the
 * connection (who, until when, which token generation), then calls finX
 * with no transaction open, then stores the rotation with a
 * compare-and-set on the generation; across every finxd process sharing
 * the database one refresh of a connection runs at a time, a lease
 * outlives a PostgreSQL restart, and nobody presents a superseded
 * refresh token (LESSONS.md rule 10, failures 1 and 11).  See
 * server/REFRESH.md.
 */
#ifndef FINXD_REFRESH_H
#define FINXD_REFRESH_H

#include <stdbool.h>
#include <libpq-fe.h>

#include "status.h"

struct config;

enum refresh_outcome {
	RF_OK,            /* refreshed and stored */
	RF_NOT_DUE,       /* someone else refreshed it; nothing to do */
	RF_TRANSIENT,     /* finX unavailable; backing off, still active */
	RF_REJECTED,      /* finX refused for another reason; backing off */
	RF_INVALID_GRANT, /* refresh token dead: now reauth_required */
	RF_INACTIVE,      /* connection not active or has no refresh token */
	RF_NOT_FOUND,
	RF_DB_ERROR,
	RF_DECRYPT,       /* a stored token does not open with our keys */
	RF_BUSY,          /* another holder's refresh is still running */
};
const char *refresh_outcome_name(enum refresh_outcome o);
/* The answer to a request whose refresh ended in o (ST_OK for RF_OK and
 * RF_NOT_DUE): for api_fail. */
enum status refresh_status(enum refresh_outcome o);

/*
 * Refresh connection id now: when force is set, or its access token is
 * too close to expiry and no failure's backoff runs.  Waits (bounded)
 * while another holder's lease stands: RF_NOT_DUE when that holder
 * refreshed meanwhile, RF_BUSY when it did not finish in time.  *msg
 * (may be NULL) receives a safe error text.
 */
enum refresh_outcome refresh_now(const char *id, bool force, char **msg);

/* Flags of refresh_access_token. */
#define RT_FORCE 1u   /* refresh first whatever the token's time left */
#define RT_HANDOUT 2u /* GET .../token: the caller hands it out, which
			 keeps the connection refreshed ahead of expiry */

/*
 * A currently valid access token of connection id, for finX calls and
 * GET .../token: the stored one while it has enough time left, else
 * refreshed first (a refresh another process runs is waited for).
 * Returns the plain token (free with free_secret) or NULL with *o saying
 * why; *expires_at (may be NULL) receives its expiry as RFC 3339 text.
 */
char *refresh_access_token(const char *id, unsigned flags,
    enum refresh_outcome *o, char **expires_at, char **msg);

/*
 * Before serving: this process's identity and heartbeat, the rescue
 * journal (replayed) and the rescue thread.  False when the state
 * directory is unusable.
 */
bool refresh_init(const struct config *cfg);

/*
 * For the workers (worker.c): claim and refresh the connection due
 * first (store_conn_claim_due: the lease on the connection due first, in
 * one statement on one index, connections_next_due_idx, so its cost does
 * not grow with the connections waiting in backoff), and revoke one
 * pending token at finX; false when none was due.
 */
bool refresh_one(PGconn *c);
bool revocations_one(PGconn *c);

/* Called when a read finds its connection due: wakes a worker. */
void refresh_set_kick(void (*kick)(void));

/*
 * After the workers stopped: give the rescue up to the drain timeout,
 * then stop the heartbeat.
 */
void refresh_shutdown(void);

/* Try the pending finX revocations of one connection right away. */
void revocations_try(PGconn *c, const char *connection_id);

#endif
