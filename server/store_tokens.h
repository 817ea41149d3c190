/*
 * Store: the token columns of connections and the revocations queue.
 * The one mapping of fresh tokens to columns is tokens_prepare (tokens.h);
 * the writes are tokens_store_grant, store_conn_rotate and
 * tokens_queue_revocation, the reads store_conn_state and store_conn_token.
 * Failures: false, -1 or NULL with db_failure() telling how; nothing is
 * logged here (store.h).
 */
#ifndef FINXD_STORE_TOKENS_H
#define FINXD_STORE_TOKENS_H

#include <stdbool.h>
#include <libpq-fe.h>

#include "finx_decode.h"
#include "tokens.h"

/*
 * Store a rotation obtained with the refresh token of generation gen of
 * the grant that began at grant (connections.connected_at as text; NULL
 * unknown): a compare-and-set, written only while the row still holds
 * generation gen and is active; when it missed, a transaction that tells
 * a replay of a landed rotation (TOK_STORED) from a changed connection,
 * whose rotated tokens it queues for revocation (server/REFRESH.md,
 * "Storing a rotation").
 */
enum tokens_cas store_conn_rotate(PGconn *c, const char *conn_id,
    const char *grant, long gen, const struct finx_tokens *t, long due_s);

/* What a refresher needs to know of a connection before refreshing. */
struct conn_state {
	bool active;        /* status 'active' */
	bool reauth;        /* status 'reauth_required' */
	char *reason;       /* status_reason, or NULL */
	bool has_refresh;   /* a refresh token is stored */
	long gen;           /* token_generation */
	double access_left; /* seconds; negative: expired or none */
	long lifetime;      /* access_lifetime_s (300 when unknown) */
	bool backing_off;   /* a failed refresh's backoff still runs */
};
/* 1 read, 0 no such connection, -1 database error; free with
 * store_conn_state_free. */
int store_conn_state(PGconn *c, const char *id, struct conn_state *st);
void store_conn_state_free(struct conn_state *st);

/* The stored access token of an active connection while it is valid. */
struct conn_token {
	char *sealed;       /* as stored: store_open it */
	char expires_at[40]; /* RFC 3339, UTC */
	double access_left; /* seconds */
	long lifetime;
	bool stale;         /* not handed out within a quarter lifetime */
	bool due;           /* due for refresh and not leased */
};
/* 1 read, 0 none valid (expired, missing, not active), -1 database
 * error; free with store_conn_token_free. */
int store_conn_token(PGconn *c, const char *id, struct conn_token *tk);
void store_conn_token_free(struct conn_token *tk);
/*
 * A hand-out: last_handout_at now, and (unless leased) the due time
 * moved to ahead_s before the access token's expiry.
 */
bool store_conn_mark_handout(PGconn *c, const char *id, long ahead_s);

/* A pending revocation, claimed by a committed update with a deadline. */
struct revocation {
	char *id;
	char *sealed;  /* the token as stored: store_open it */
	int attempts;  /* counting this one */
	bool refresh;  /* a refresh token (else an access token) */
};
/*
 * Claim the revocation due first, or with connection_id the first of
 * that connection's (its fresh ones too, refresh tokens first), for
 * deadline_s seconds (then it is due again).  Committed at once: call
 * it outside a transaction.  1 claimed, 0 none, -1 database error.
 */
int store_revocation_claim(PGconn *c, const char *connection_id,
    long deadline_s, struct revocation *rv);
void store_revocation_free(struct revocation *rv);
/* Revoked (or unreadable): delete it. */
bool store_revocation_done(PGconn *c, const struct revocation *rv);
/*
 * Failed: retry after backoff_s; a refresh token's failure pushes its
 * connection's access tokens past it (refresh tokens go first).
 */
bool store_revocation_retry(PGconn *c, const struct revocation *rv,
    const char *error, long backoff_s);
/* Revocations queued for connection_id; -1 database error. */
int store_revocation_count(PGconn *c, const char *connection_id);

#endif
