/*
 * Store: pulled data (accounts with their latest balance, the balance
 * history, transactions) and the pulls that bring it (the pulls table).
 * Every function takes the connection its caller holds; a false, NULL or
 * *_DB_ERROR answer leaves how it failed in db_failure(), and nothing is
 * logged here.
 */
#ifndef FINXD_STORE_DATA_H
#define FINXD_STORE_DATA_H

#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>
#include <libpq-fe.h>

#include "finxmap.h"

/* ---- pulls (data.c) ---------------------------------------------------- */

/*
 * A pull is one transaction that holds its connection's pulls row (FOR
 * UPDATE SKIP LOCKED) across its finX calls, so one pull per connection
 * runs at a time across processes (data.c).  store_pull_claim opens it;
 * store_pull_park, store_pull_defer or store_pull_commit end it (each
 * rolls back when it fails).
 */
struct store_pull {
	char *conn_id, *user_id;
	bool attended; /* follows the user's own action: not counted */
	bool limited;  /* per_day unattended pulls in the last 24 h */
	bool active;   /* the connection is active */
	int failures;  /* failed pulls in a row before this one */
};
enum store_pull_res {
	SP_CLAIMED,  /* *out filled; the transaction is open */
	SP_NONE,     /* nothing due: rolled back */
	SP_DB_ERROR, /* rolled back */
};
/* BEGIN and claim the pulls row due first (pull_claim_sql, data.h). */
enum store_pull_res store_pull_claim(PGconn *c, int per_day,
    struct store_pull *out);
void store_pull_free(struct store_pull *p);
/* Not active: park the row at 'infinity' (a reauth sets it again), commit. */
bool store_pull_park(PGconn *c, const char *conn_id);
/* Limited: due when the oldest of the last 24 h's pulls ages out, commit. */
bool store_pull_defer(PGconn *c, const char *conn_id);

/* Mark where the pull's writes begin, for store_pull_failed. */
bool store_pull_savepoint(PGconn *c);
/*
 * Upsert one account and record its balance when it differs from the
 * latest one, in one statement.  Its id (caller frees) or NULL.
 */
char *store_account_upsert(PGconn *c, const char *conn_id,
    const char *user_id, const struct account_row *a);
/*
 * One mapped transaction as a row of store_txns_upsert's page (raw: the
 * finX object itself; a reference is taken).  Caller puts it, or adds it
 * to the page's array.
 */
json_object *store_txn_row(const char *account_id, const struct txn_row *t,
    json_object *raw);
/* Upsert one page (a JSON array of store_txn_row) in one statement. */
bool store_txns_upsert(PGconn *c, const char *conn_id, json_object *rows);
/* Drop the pending transactions this pull did not see again. */
bool store_txns_drop_vanished(PGconn *c, const char *conn_id);
/*
 * A pull that succeeded: next one in next_s, counted unless attended,
 * and the user's cached reads dropped when it commits (CACHE_CHANNEL).
 */
bool store_pull_done(PGconn *c, const struct store_pull *p, long next_s);
/*
 * A pull that failed: its writes undone (back to the savepoint), the
 * failure counted with msg (never a secret), the next try in next_s.
 */
bool store_pull_failed(PGconn *c, const char *conn_id, const char *msg,
    long next_s);
/* COMMIT; false (rolled back) when it does not commit. */
bool store_pull_commit(PGconn *c);
/* After the commit: the connection's last_sync_at. */
bool store_pull_synced(PGconn *c, const char *conn_id);

/* ---- reads (api_data.c) ----------------------------------------------- */

/*
 * Rows of the reads, text as PostgreSQL formats it (amounts as numeric
 * text, timestamps RFC 3339 UTC), NULL for SQL NULL.  The text is
 * borrowed from the list that holds the row: free the list with
 * store_rows_free.
 */
struct store_account {
	const char *id, *connection_id, *user_id, *finx_account_id;
	const char *access_id, *iban, *bic, *name, *type, *currency;
	const char *owner, *bank_name;
	/* the latest balance; amount NULL when none was pulled yet */
	const char *balance_amount, *balance_currency, *balance_date;
	const char *balance_fetched_at;
	const char *updated_at;
};
struct store_txn {
	const char *id, *finx_transaction_id, *account_id, *connection_id;
	const char *amount, *currency, *booking_date, *value_date;
	bool booked;
	const char *counterparty_name, *counterparty_iban, *counterparty_bic;
	const char *purpose, *type, *booking_text;
	int64_t sort_micros, id_num; /* the keyset of a next cursor */
};
struct store_rows {
	int n;
	union {
		struct store_account *accounts;
		struct store_txn *txns;
	} v;
	PGresult *held; /* the text of the rows */
};
void store_rows_free(struct store_rows *rows);

/* A user's accounts (not of revoked connections), oldest first. */
bool store_accounts_of_user(PGconn *c, const char *user_id,
    struct store_rows *out);
/* One account (out->n 0 when there is none). */
bool store_account_get(PGconn *c, const char *account_id,
    struct store_rows *out);

/* A page of transactions, newest first (keyset on sort_date, id). */
enum store_booked { SB_ANY, SB_BOOKED, SB_PENDING };
struct store_txn_query {
	/* lower and upper bound: a date (YYYY-MM-DD, UTC, to inclusive)
	 * or an RFC 3339 timestamp; NULL: none */
	const char *from, *to;
	bool from_is_date, to_is_date;
	enum store_booked booked;
	bool after_cursor; /* only rows after (cursor_micros, cursor_id) */
	int64_t cursor_micros, cursor_id;
	long rows; /* at most this many */
};
/* Of one account, or of a user's accounts (not of revoked connections). */
bool store_txns_of_account(PGconn *c, const char *account_id,
    const struct store_txn_query *q, struct store_rows *out);
bool store_txns_of_user(PGconn *c, const char *user_id,
    const struct store_txn_query *q, struct store_rows *out);

enum store_found { SF_FOUND, SF_NONE, SF_DB_ERROR };
/* The user an account belongs to (*user_id: caller frees). */
enum store_found store_account_owner(PGconn *c, const char *account_id,
    char **user_id);

#endif
