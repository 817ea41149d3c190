/*
 * Keeping connections alive.  A refresh always runs inside a transaction
 * that holds the connection's row lock (SELECT ... FOR UPDATE) from before
 * the finX call until the new tokens are committed, so across every finxd
 * process sharing the database exactly one refresh of a connection runs
 * at a time and nobody ever presents a superseded refresh token
 * (LESSONS.md rule 10, failure 1).  See server/REFRESH.md.
 */
#ifndef FINXD_REFRESH_H
#define FINXD_REFRESH_H

#include <stdbool.h>
#include <libpq-fe.h>

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
};
const char *refresh_outcome_name(enum refresh_outcome o);

/*
 * Refresh connection id now: waits for the row lock, re-reads the row,
 * and refreshes when force is set or the token is due.  *msg (may be
 * NULL) receives a safe error text.
 */
enum refresh_outcome refresh_now(const char *id, bool force, char **msg);

/*
 * A currently valid access token of connection id (refreshed first when
 * due, or always with force), for finX calls and GET .../token.  Returns
 * the plain token (free with free_secret) or NULL with *o saying why;
 * *expires_at (may be NULL) receives its expiry as RFC 3339 text.
 */
char *refresh_access_token(const char *id, bool force,
    enum refresh_outcome *o, char **expires_at, char **msg);

/* Background workers inside finxd serve. */
void refresher_start(const struct config *cfg);
/*
 * Wake one idle worker of this process now (a new connection wants its
 * first pull).  Only a shortcut: workers of every process also find the
 * work by polling PostgreSQL every refresh_interval.
 */
void refresher_wake(void);
/* Ask workers to stop and wait for them (a running refresh finishes). */
void refresher_stop(void);

/* Try the pending finX revocations of one connection right away. */
void revocations_try(PGconn *c, const char *connection_id);

#endif
