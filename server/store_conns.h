/*
 * Store: connections as the API shows them (never a token), their
 * deletion, the read that starts a re-authentication, and rekey's
 * re-sealing of every sealed column.  Conventions of store.h: the
 * caller brings the connection; false means a database failure,
 * db_failure() telling which; nothing is logged here.
 */
#ifndef FINXD_STORE_CONNS_H
#define FINXD_STORE_CONNS_H

#include <stdbool.h>
#include <libpq-fe.h>

/*
 * One connection as GET /v1/connections/{id} shows it.  Timestamps are
 * RFC 3339 UTC text; a field is NULL when unset.  The strings belong to
 * the struct store_conns that holds the row.
 */
struct store_conn {
	const char *id, *user_id, *status, *status_reason, *scope;
	const char *access_expires_at, *refresh_obtained_at;
	const char *refresh_expires_at, *consent_expires_at;
	const char *reauth_required_by; /* the earlier of the two above */
	const char *last_refresh_at, *last_sync_at, *last_error;
	long consecutive_failures;
	const char *created_at, *connected_at, *revoked_at;
	/* created_at in microseconds since the epoch: pages only */
	const char *created_micros;
};

struct store_conns {
	struct store_conn *v;
	int n;
	PGresult *res; /* private: holds the strings */
};

/* Connection id: out->n is 0 when there is none. */
bool store_conn_get(PGconn *c, const char *id, struct store_conns *out);
/* A user's connections, oldest first, at most 1000. */
bool store_conn_list_user(PGconn *c, const char *user_id,
    struct store_conns *out);
/* A page of every connection or one user's (store.h), newest first. */
struct store_page;
bool store_conn_page(PGconn *c, const struct store_page *q,
    struct store_conns *out);
/* Free what the reads filled in (safe on a zeroed or freed list). */
void store_conns_free(struct store_conns *l);

/*
 * DELETE /v1/connections/{id}, in one transaction that locks the row:
 * its stored tokens queued for revocation at finX (refresh token first),
 * cleared, the connection revoked ("deleted") with any refresh lease
 * dropped, and a delete event.  A refresh still in flight then finds it
 * revoked and sends its rotation to revocation too (REFRESH.md, "Storing
 * a rotation").  A connection already revoked is left as it is.
 */
enum store_conn_del {
	SCD_DELETED,   /* revoked now, or already */
	SCD_NOT_FOUND,
	SCD_FAILED,    /* nothing changed; db_failure() says why */
};
enum store_conn_del store_conn_delete(PGconn *c, const char *id);

/*
 * Queue finX revocations of connection id's tokens, given as stored
 * (sealed; NULL when there is none), inside the caller's transaction:
 * the refresh token first.  A value that does not open is skipped:
 * nothing could revoke it.
 */
bool store_conn_queue_revocations(PGconn *c, const char *id,
    const char *sealed_refresh, const char *sealed_access);

/*
 * What POST /v1/connections/{id}/reauth needs first: the connection's
 * user (*user_id, caller frees; NULL when there is no such connection)
 * and whether it was deleted.
 */
bool store_conn_reauth_check(PGconn *c, const char *id, char **user_id,
    bool *revoked);

/*
 * finxd rekey: re-seal with the current key every sealed value that is
 * sealed with another, table by table, a batch of rows per transaction.
 * Each batch locks its rows (FOR UPDATE), so a refresh in another
 * process either finishes first (and its new tokens are re-sealed) or
 * waits.  Start with a zeroed struct store_rekey naming the table (0 to
 * STORE_REKEY_NTABLES - 1) and call store_rekey_batch until done or
 * false.  On a connection of db_connect the statements run unprepared.
 */
#define STORE_REKEY_NTABLES 4
/* The name of a table, for messages. */
const char *store_rekey_table(int table);

struct store_rekey {
	int table;      /* which table */
	char after[40]; /* the last row id done ("": none yet) */
	long changed;   /* values re-sealed so far */
	long bad;       /* values that open with no configured key */
	bool done;      /* no rows left */
};
bool store_rekey_batch(PGconn *c, struct store_rekey *k);

/*
 * Whether rekey has recorded that every stored value is sealed
 * (rekey_state), and the record itself, written when a rekey finishes
 * with nothing in plain text and nothing it could not open.
 */
bool store_rekey_sealed(PGconn *c, bool *sealed);
bool store_rekey_mark_sealed(PGconn *c);

#endif
