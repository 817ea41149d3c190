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
 * A pull holds no transaction across its finX calls.  store_pull_claim
 * commits a claim with a deadline on the connection's pulls row
 * (claim_by, claim_until), so one pull per connection runs at a time
 * across processes and a pull whose process died is taken again after
 * the deadline; store_pull_renew moves the deadline while the pull
 * fetches.  Then store_pull_write stores everything in one short
 * transaction that holds the pulls row and checks the claim is still
 * its own, or store_pull_failed records the failure.  Both free the
 * claim.
 */
struct store_pull {
	char *conn_id, *user_id;
	char *claim;   /* the claim's id (pulls.claim_by) */
	bool attended; /* follows the user's own action: not counted */
	bool limited;  /* per_day unattended pulls in the last 24 h */
	bool active;   /* the connection is active */
	bool run;      /* claimed: to pull (else parked or deferred) */
	int failures;  /* failed pulls in a row before this one */
};
enum store_pull_res {
	SP_CLAIMED,  /* *out filled (its row claimed when out->run) */
	SP_NONE,     /* nothing due */
	SP_DB_ERROR,
};
/*
 * The pulls row due first (pull_claim_sql, data.h), in one committed
 * statement: claimed for claim_s seconds when it is to be pulled;
 * parked at 'infinity' when its connection is not active (a reauth sets
 * it again); deferred, when per_day unattended pulls ran in the last
 * 24 h and this one is not attended, until the oldest of them ages out.
 */
enum store_pull_res store_pull_claim(PGconn *c, int per_day, int claim_s,
    struct store_pull *out);
void store_pull_free(struct store_pull *p);

enum store_claim {
	SC_HELD,     /* done under the claim */
	SC_LOST,     /* another process holds the row now: nothing done */
	SC_DB_ERROR, /* nothing done */
};
/* The claim's deadline claim_s seconds from now. */
enum store_claim store_pull_renew(PGconn *c, const struct store_pull *p,
    int claim_s);
/*
 * A pull that failed: the failure counted with msg (never a secret), the
 * next try in next_s, the claim freed; false when not stored (the claim
 * lost, or the database).
 */
bool store_pull_failed(PGconn *c, const struct store_pull *p,
    const char *msg, long next_s);

/*
 * One mapped transaction as a row of a page for store_pull_write (raw:
 * the finX object itself; a reference is taken).  Caller puts it, or
 * adds it to the page's array.
 */
json_object *store_txn_row(const struct txn_row *t, json_object *raw);
/* What a pull fetched, to store. */
struct store_pull_data {
	const struct account_row *accounts;
	size_t n_accounts;
	/* pages of transactions, each a JSON array of store_txn_row text;
	 * rows of an account not in accounts are left out */
	char *const *pages;
	size_t n_pages;
	long next_s; /* the next pull in next_s, unless one was asked for */
};
/*
 * Store a pull in one transaction: lock the pulls row under the claim
 * (SC_LOST: rolled back, the data thrown away), upsert the accounts and
 * their balances, the pages, drop the pending transactions it did not
 * see again, record every change for the change feed (added, modified,
 * removed) and its transactions.updated event when there was one, the
 * outcome (counted unless attended), free the claim; the user's cached
 * reads are dropped when it commits (CACHE_CHANNEL).
 */
enum store_claim store_pull_write(PGconn *c, const struct store_pull *p,
    const struct store_pull_data *d);
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
