/*
 * Store: pulled data and the pulls that bring it.  Upserts key on finX
 * ids, so a re-pull adds nothing twice and a pending transaction that
 * becomes booked is updated in place; each upsert records what it
 * changed for the change feed (transaction_changes, in the pull's write
 * transaction, numbered under the pulls row's lock).  A pull's claim is
 * a committed row with a deadline, never a lock held while finX answers.  The latest balance of an account
 * is on its row (kept by a trigger on balances, 0006_latest_balance.sql),
 * so the reads need no subquery per account.
 */
#include "store_data.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "data.h"
#include "mem.h"
#include "secret.h"
#include "store_int.h"

enum {
	S_CLAIM,
	S_RENEW,
	S_FAILED,
	S_LOCK,
	S_ACCOUNT,
	S_TXNS,
	S_VANISHED,
	S_DONE,
	S_SYNCED,
	S_USER_ACCOUNTS,
	S_ACCOUNT_GET,
	S_ACCOUNT_TXNS,
	S_USER_TXNS,
	S_OWNER,
};

/*
 * The pick of a claim: the due row first, unless a claim holds it.  No
 * filter on the connection's status: a connection that is no longer
 * active has its row parked at 'infinity' instead (PULL_CLAIM), so that
 * such rows do not pile up at the head of pulls_due_idx and make every
 * claim walk them (bench_sched: 215 ms a claim with 50,000 deleted
 * connections).  A reauth callback sets next_pull_at again.  A claimed
 * row is not at the head either: its claim moved next_pull_at to the
 * deadline.  SKIP LOCKED passes a row whose write transaction runs (and
 * one a schema-9 binary's pull holds).
 */
#define PULL_PICK                                                             \
	"SELECT p.connection_id, c.user_id, p.attended, cardinality(array("   \
	"SELECT t FROM unnest(p.recent) t WHERE t > now() - interval "        \
	"'24 hours')) >= $1::int AS limited, c.status = 'active' AS active, " \
	"p.failures FROM pulls p JOIN connections c ON c.id = "               \
	"p.connection_id WHERE p.next_pull_at <= now() AND (p.claim_until "   \
	"IS NULL OR p.claim_until <= now()) ORDER BY p.next_pull_at LIMIT 1 " \
	"FOR UPDATE OF p SKIP LOCKED"

const char pull_claim_sql[] = PULL_PICK;

#define PULL_SECS(n) "now() + make_interval(secs => " n "::int)"
/*
 * A wake (a reauth callback or a completed manual sync set next_pull_at
 * to now()) that came while a claim held the row: the claim had moved
 * next_pull_at to its deadline, so an earlier one is a wake's, and the
 * pull's outcome keeps it (and attended) for the pull it asks for.
 */
#define PULL_WOKEN "coalesce(next_pull_at < claim_until, false)"
#define PULL_NEXT(x) "CASE WHEN " PULL_WOKEN " THEN next_pull_at ELSE " x " END"

/*
 * The claim, committed at once ($2 its id, $3 its seconds): the picked
 * row is claimed when it is to be pulled; a connection that is not
 * active is parked at 'infinity'; a fifth unattended pull in 24 hours
 * is deferred until the oldest of the last four ages out (PSD2).  A
 * claim clears attended (the claimer keeps it): only a wake during the
 * pull sets it again, for the pull it asks for; a failed pull gives it
 * back.
 */
#define PULL_CLAIM                                                            \
	"UPDATE pulls p SET claim_by = CASE WHEN x.run THEN $2::text END, "   \
	"attended = p.attended AND NOT x.run, "                               \
	"claim_until = CASE WHEN x.run THEN " PULL_SECS("$3") " END, "        \
	"next_pull_at = CASE WHEN NOT x.active THEN 'infinity' WHEN x.run "   \
	"THEN " PULL_SECS("$3") " ELSE (SELECT min(t) FROM unnest(p.recent) " \
	"t WHERE t > now() - interval '24 hours') + interval '24 hours' END " \
	"FROM (SELECT k.*, k.active AND (k.attended OR NOT k.limited) AS run " \
	"FROM (" PULL_PICK ") k) x WHERE p.connection_id = x.connection_id "  \
	"RETURNING x.connection_id, x.user_id, x.attended, x.limited, "       \
	"x.active, x.failures, x.run"

/*
 * The account, and its balance when it differs from the latest one (the
 * columns RETURNING shows as they were before this statement: the
 * trigger on balances updates them at its end).
 */
#define ACCOUNT_UPSERT                                                        \
	"WITH a AS (INSERT INTO accounts (id, connection_id, user_id, "       \
	"finx_account_id, access_id, iban, bic, name, type, currency, owner, " \
	"bank_name, account_number, raw) VALUES ($1, $2, $3, $4, $5, $6, $7, " \
	"$8, $9, $10, $11, $12, $13, $14::jsonb) ON CONFLICT (connection_id, " \
	"finx_account_id) DO UPDATE SET access_id = EXCLUDED.access_id, "     \
	"iban = EXCLUDED.iban, bic = EXCLUDED.bic, name = EXCLUDED.name, "    \
	"type = EXCLUDED.type, currency = EXCLUDED.currency, owner = "        \
	"EXCLUDED.owner, bank_name = EXCLUDED.bank_name, account_number = "   \
	"EXCLUDED.account_number, raw = EXCLUDED.raw, updated_at = now() "    \
	"RETURNING id, balance_amount, balance_date), b AS (INSERT INTO "     \
	"balances (account_id, amount, currency, balance_date) SELECT a.id, " \
	"$15::numeric, $16, $17::timestamptz FROM a WHERE $15::numeric IS "   \
	"NOT NULL AND NOT coalesce(a.balance_amount = $15::numeric AND "      \
	"a.balance_date IS NOT DISTINCT FROM $17::timestamptz, false)) "      \
	"SELECT id FROM a"

/*
 * What the change feed shows of a transaction (its rendering, less the
 * ids): a row whose value changes is a change.  The amount as text, as
 * it is shown ("1.50" and "1.5" are equal numbers, not equal answers).
 */
#define TXN_SEEN(p)                                                           \
	"(" p "account_id, " p "amount::text, " p "currency, " p              \
	"booking_date, " p "value_date, " p "booked, " p                       \
	"counterparty_name, " p "counterparty_iban, " p "counterparty_bic, "   \
	p "purpose, " p "type, " p "booking_text)"

/*
 * The changes in CTE d (id, kind, n: 1, 2, ... in the order to show)
 * recorded after the connection's last one ($1): pulls.change_seq is
 * bumped under the pulls row the write transaction holds, so one
 * connection's changes take their seqs in commit order.
 */
#define CHANGES_RECORD                                                        \
	"s AS (UPDATE pulls SET change_seq = change_seq + (SELECT count(*) "  \
	"FROM d) WHERE connection_id = $1 AND EXISTS (SELECT 1 FROM d) "      \
	"RETURNING change_seq - (SELECT count(*) FROM d) AS base) INSERT "    \
	"INTO transaction_changes (connection_id, seq, transaction_id, kind) " \
	"SELECT $1, s.base + d.n, d.id, d.kind FROM d, s"

/*
 * One page of transactions in one statement, with its changes.  Row by
 * row, a first pull cost PostgreSQL a parse, a plan and a round trip per
 * transaction and was most of its CPU time during a burst of new
 * connections.  Amounts and dates travel as JSON strings and go through
 * numeric's and timestamptz's own input functions, as the per-row
 * parameters did.  A finX id twice in one page (ON CONFLICT may not
 * touch a row twice in one statement): the later entry is stored, at the
 * place of the first, as row by row (but a new row whose later entry has
 * neither date gets now() as its sort date, not the earlier entry's
 * dates).  Rows are inserted in finX's order, which the id tie-breaker
 * of the keyset keeps.  The account is found by its finX id (the pull's
 * accounts were upserted before, in its transaction).  o reads the rows
 * as they were before the statement (every part of one statement sees
 * one snapshot): a new row is 'added', one whose TXN_SEEN changed
 * 'modified', one seen unchanged (a re-pull) nothing.
 */
#define TXNS_UPSERT                                                           \
	"WITH r AS (SELECT a.id AS account_id, x.* FROM (SELECT DISTINCT ON " \
	"(finx_transaction_id) *, min(ord) OVER (PARTITION BY "               \
	"finx_transaction_id) AS first FROM ROWS FROM (jsonb_to_recordset("   \
	"$2::jsonb) AS (finx_account_id text, finx_transaction_id text, "     \
	"amount numeric, currency text, booking_date timestamptz, "           \
	"value_date timestamptz, booked boolean, counterparty_name text, "    \
	"counterparty_iban text, counterparty_bic text, purpose text, type "  \
	"text, booking_text text, raw jsonb)) WITH ORDINALITY AS y("          \
	"finx_account_id, finx_transaction_id, amount, currency, "            \
	"booking_date, value_date, booked, counterparty_name, "               \
	"counterparty_iban, counterparty_bic, purpose, type, booking_text, "  \
	"raw, ord) ORDER BY finx_transaction_id, ord DESC) x JOIN accounts a " \
	"ON a.connection_id = $1 AND a.finx_account_id = x.finx_account_id), " \
	"o AS (SELECT t.finx_transaction_id, " TXN_SEEN("t.") " AS v FROM "   \
	"transactions t WHERE t.connection_id = $1 AND "                      \
	"t.finx_transaction_id IN (SELECT finx_transaction_id FROM r)), "     \
	"u AS (INSERT INTO transactions (connection_id, account_id, "         \
	"finx_transaction_id, amount, currency, booking_date, value_date, "   \
	"sort_date, booked, counterparty_name, counterparty_iban, "           \
	"counterparty_bic, purpose, type, booking_text, raw) SELECT $1, "     \
	"r.account_id, r.finx_transaction_id, r.amount, r.currency, "         \
	"r.booking_date, r.value_date, coalesce(r.booking_date, "             \
	"r.value_date, now()), r.booked, r.counterparty_name, "               \
	"r.counterparty_iban, r.counterparty_bic, r.purpose, r.type, "        \
	"r.booking_text, r.raw FROM r ORDER BY r.first "                      \
	"ON CONFLICT (connection_id, finx_transaction_id) DO UPDATE SET "     \
	"account_id = EXCLUDED.account_id, amount = EXCLUDED.amount, "        \
	"currency = EXCLUDED.currency, booking_date = "                       \
	"EXCLUDED.booking_date, value_date = EXCLUDED.value_date, "           \
	"sort_date = coalesce(EXCLUDED.booking_date, EXCLUDED.value_date, "   \
	"transactions.sort_date), booked = EXCLUDED.booked, "                 \
	"counterparty_name = EXCLUDED.counterparty_name, "                    \
	"counterparty_iban = EXCLUDED.counterparty_iban, "                    \
	"counterparty_bic = EXCLUDED.counterparty_bic, purpose = "            \
	"EXCLUDED.purpose, type = EXCLUDED.type, booking_text = "             \
	"EXCLUDED.booking_text, raw = EXCLUDED.raw, updated_at = now() "      \
	"RETURNING id, finx_transaction_id, " TXN_SEEN("") " AS v), "         \
	"d AS (SELECT u.id, CASE WHEN o.finx_transaction_id IS NULL THEN "    \
	"'added' ELSE 'modified' END AS kind, row_number() OVER (ORDER BY "   \
	"u.id) AS n FROM u LEFT JOIN o USING (finx_transaction_id) WHERE "    \
	"o.v IS DISTINCT FROM u.v), " CHANGES_RECORD

/*
 * Pending transactions come as a complete set: the ones this pull did
 * not see again (every row it upserted has updated_at = now(), the
 * transaction's start) vanished, each a 'removed'.
 */
#define TXNS_VANISHED                                                         \
	"WITH g AS (DELETE FROM transactions WHERE connection_id = $1 AND "   \
	"NOT booked AND updated_at < now() RETURNING id), d AS (SELECT id, "  \
	"'removed'::text AS kind, row_number() OVER (ORDER BY id) AS n FROM " \
	"g), " CHANGES_RECORD

/*
 * The outcome of a pull that stored its data ($5: change_seq before
 * it), its claim freed, its transactions.updated event when it changed
 * anything, and the user's cached reads dropped when it commits.
 */
#define PULL_DONE                                                             \
	"WITH k AS (SELECT count(*) FILTER (WHERE kind = 'added') AS a, "     \
	"count(*) FILTER (WHERE kind = 'modified') AS m, count(*) FILTER "    \
	"(WHERE kind = 'removed') AS r FROM transaction_changes WHERE "       \
	"connection_id = $1 AND seq > $5::bigint), u AS (UPDATE pulls SET "   \
	"last_pull_at = now(), last_error = NULL, failures = 0, attended = "  \
	PULL_WOKEN " AND attended, next_pull_at = " PULL_NEXT(PULL_SECS("$2")) \
	", recent = CASE WHEN $3::boolean THEN recent ELSE array(SELECT t "   \
	"FROM unnest(recent) t WHERE t > now() - interval '24 hours') || "    \
	"now() END, claim_by = NULL, claim_until = NULL WHERE connection_id " \
	"= $1), e AS (" SQL_EVENT_INSERT "SELECT 'transactions.updated', "    \
	"$1::uuid, NULL, jsonb_build_object('connection_id', $1::uuid, "      \
	"'user_id', $4::text, 'added', a, 'modified', m, 'removed', r) FROM " \
	"k WHERE a + m + r > 0) SELECT pg_notify('" CACHE_CHANNEL "', $4)"

/* In the order of struct store_account. */
#define ACCOUNT_SELECT                                                        \
	"SELECT a.id, a.connection_id, a.user_id, a.finx_account_id, "        \
	"a.access_id, a.iban, a.bic, a.name, a.type, a.currency, a.owner, "   \
	"a.bank_name, a.balance_amount::text, a.balance_currency, "           \
	SQL_TS("a.balance_date") ", " SQL_TS("a.balance_fetched_at") ", "     \
	SQL_TS("a.updated_at") " FROM accounts a JOIN connections c ON "      \
	"c.id = a.connection_id "

/*
 * The filters are nullable parameters and every bound is an index
 * condition even in a generic plan: absent ones are the infinities
 * ($2/$3 from as a timestamp or a date, $4/$5 to, $6 booked, $7/$8 the
 * cursor, $9 the rows), so a page seeks transactions_keyset_idx to its
 * cursor however the plan was made.
 */
#define TXN_SELECT "SELECT " SQL_TXN_COLS " FROM transactions t WHERE "
#define TXN_FILTERS                                                           \
	" AND t.sort_date >= coalesce($2::timestamptz, ($3::date::timestamp " \
	"AT TIME ZONE 'UTC'), '-infinity') AND t.sort_date < coalesce("       \
	"$4::timestamptz, (($5::date + 1)::timestamp AT TIME ZONE 'UTC'), "   \
	"'infinity') AND ($6::boolean IS NULL OR t.booked = $6::boolean) AND " \
	"(t.sort_date, t.id) < (coalesce('epoch'::timestamptz + $7::bigint * " \
	"interval '1 microsecond', 'infinity'), coalesce($8::bigint, "        \
	"9223372036854775807)) ORDER BY t.sort_date DESC, t.id DESC LIMIT "   \
	"$9::int"

const struct db_stmt store_data_stmts[] = {
	[S_CLAIM] = { "data_pull_claim", PULL_CLAIM },
	[S_RENEW] = { "data_pull_renew",
	    "UPDATE pulls SET next_pull_at = " PULL_NEXT(PULL_SECS("$3"))
	    ", claim_until = " PULL_SECS("$3") " WHERE connection_id = $1 AND "
	    "claim_by = $2 RETURNING 1" },
	[S_FAILED] = { "data_pull_failed",
	    "UPDATE pulls SET failures = failures + 1, last_error = $3, "
	    "next_pull_at = " PULL_NEXT(PULL_SECS("$4")) ", attended = "
	    "attended OR $5::boolean, claim_by = NULL, claim_until = NULL "
	    "WHERE connection_id = $1 AND claim_by = $2" },
	[S_LOCK] = { "data_pull_lock",
	    "SELECT change_seq FROM pulls WHERE connection_id = $1 AND "
	    "claim_by = $2 FOR NO KEY UPDATE" },
	[S_ACCOUNT] = { "data_account_upsert", ACCOUNT_UPSERT },
	[S_TXNS] = { "data_txns_upsert", TXNS_UPSERT },
	[S_VANISHED] = { "data_txns_vanished", TXNS_VANISHED },
	[S_DONE] = { "data_pull_done", PULL_DONE },
	[S_SYNCED] = { "data_pull_synced",
	    "UPDATE connections SET last_sync_at = now() WHERE id = $1" },
	[S_USER_ACCOUNTS] = { "data_user_accounts",
	    ACCOUNT_SELECT "WHERE a.user_id = $1 AND c.status <> 'revoked' "
	    "ORDER BY a.created_at, a.id LIMIT 1000" },
	[S_ACCOUNT_GET] = { "data_account_get",
	    ACCOUNT_SELECT "WHERE a.id = $1::uuid AND c.status <> 'revoked'" },
	[S_ACCOUNT_TXNS] = { "data_account_txns",
	    TXN_SELECT "t.account_id = $1::uuid" TXN_FILTERS },
	[S_USER_TXNS] = { "data_user_txns",
	    TXN_SELECT "t.account_id IN (SELECT a.id FROM accounts a JOIN "
	    "connections c ON c.id = a.connection_id WHERE a.user_id = $1 AND "
	    "c.status <> 'revoked')" TXN_FILTERS },
	[S_OWNER] = { "data_account_owner",
	    "SELECT a.user_id FROM accounts a JOIN connections c ON c.id = "
	    "a.connection_id WHERE a.id = $1::uuid AND c.status <> 'revoked'" },
	{ NULL, NULL },
};

#define S store_data_stmts

static bool
run(PGconn *c, int s, int n, const char *const *params)
{
	return db_do(c, &S[s], n, params);
}

/* ---- pulls ------------------------------------------------------------- */

static bool
is_true(const PGresult *r, int col)
{
	return strcmp(PQgetvalue(r, 0, col), "t") == 0;
}

enum store_pull_res
store_pull_claim(PGconn *c, int per_day, int claim_s, struct store_pull *out)
{
	char n[16], secs[16], *claim = uuid_new();
	PGresult *r;

	memset(out, 0, sizeof(*out));
	snprintf(n, sizeof(n), "%d", per_day);
	snprintf(secs, sizeof(secs), "%d", claim_s);
	r = db_run(c, &S[S_CLAIM], 3, (const char *[]){ n, claim, secs });
	if (r == NULL || PQntuples(r) == 0) {
		PQclear(r);
		free(claim);
		return r == NULL ? SP_DB_ERROR : SP_NONE;
	}
	out->conn_id = xstrdup(PQgetvalue(r, 0, 0));
	out->user_id = xstrdup(PQgetvalue(r, 0, 1));
	out->attended = is_true(r, 2);
	out->limited = is_true(r, 3);
	out->active = is_true(r, 4);
	out->failures = (int)db_long(r, 0, 5, 0);
	out->run = is_true(r, 6);
	out->claim = claim;
	PQclear(r);
	return SP_CLAIMED;
}

void
store_pull_free(struct store_pull *p)
{
	free(p->conn_id);
	free(p->user_id);
	free(p->claim);
	p->conn_id = p->user_id = p->claim = NULL;
}

enum store_claim
store_pull_renew(PGconn *c, const struct store_pull *p, int claim_s)
{
	char secs[16];
	PGresult *r;
	enum store_claim h;

	snprintf(secs, sizeof(secs), "%d", claim_s);
	r = db_run(c, &S[S_RENEW], 3,
	    (const char *[]){ p->conn_id, p->claim, secs });
	h = r == NULL ? SC_DB_ERROR : PQntuples(r) == 1 ? SC_HELD : SC_LOST;
	PQclear(r);
	return h;
}

bool
store_pull_failed(PGconn *c, const struct store_pull *p, const char *msg,
    long next_s)
{
	char next[24];

	snprintf(next, sizeof(next), "%ld", next_s);
	return run(c, S_FAILED, 5,
	    (const char *[]){ p->conn_id, p->claim, msg, next,
		p->attended ? "true" : "false" });
}

static void
put_text(json_object *o, const char *key, const char *v)
{
	json_object_object_add(o, key, v ? json_object_new_string(v) : NULL);
}

/* The fields of TXNS_UPSERT's recordset; raw serialises to the text
 * finxmap checked. */
json_object *
store_txn_row(const struct txn_row *t, json_object *raw)
{
	json_object *o = json_object_new_object();

	put_text(o, "finx_account_id", t->finx_account_id);
	put_text(o, "finx_transaction_id", t->finx_id);
	put_text(o, "amount", t->amount);
	put_text(o, "currency", t->currency);
	put_text(o, "booking_date", t->booking_date);
	put_text(o, "value_date", t->value_date);
	json_object_object_add(o, "booked", json_object_new_boolean(t->booked));
	put_text(o, "counterparty_name", t->name);
	put_text(o, "counterparty_iban", t->iban);
	put_text(o, "counterparty_bic", t->bic);
	put_text(o, "purpose", t->purpose);
	put_text(o, "type", t->type);
	put_text(o, "booking_text", t->booking_text);
	json_object_object_add(o, "raw", json_object_get(raw));
	return o;
}

static bool
account_upsert(PGconn *c, const struct store_pull *p,
    const struct account_row *a)
{
	char *new_id = uuid_new();
	bool ok;

	ok = run(c, S_ACCOUNT, 17,
	    (const char *[]){ new_id, p->conn_id, p->user_id, a->finx_id,
		a->access_id, a->iban, a->bic, a->name, a->type, a->currency,
		a->owner, a->bank_name, a->account_number, a->raw, a->balance,
		a->balance_currency, a->balance_date });
	free(new_id);
	return ok;
}

/* The pull's write transaction (store_pull_write). */
struct write_tx {
	const struct store_pull *p;
	const struct store_pull_data *d;
	bool lost;
};

static bool
write_body(PGconn *c, void *arg)
{
	struct write_tx *w = arg;
	const char *id = w->p->conn_id;
	PGresult *r = db_run(c, &S[S_LOCK], 2,
	    (const char *[]){ id, w->p->claim });
	char seq[24], next[24];
	size_t i;

	w->lost = r != NULL && PQntuples(r) == 0;
	if (r == NULL || w->lost) {
		PQclear(r);
		return false;
	}
	snprintf(seq, sizeof(seq), "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	for (i = 0; i < w->d->n_accounts; i++)
		if (!account_upsert(c, w->p, &w->d->accounts[i]))
			return false;
	for (i = 0; i < w->d->n_pages; i++)
		if (!run(c, S_TXNS, 2, (const char *[]){ id, w->d->pages[i] }))
			return false;
	snprintf(next, sizeof(next), "%ld", w->d->next_s);
	return run(c, S_VANISHED, 1, (const char *[]){ id }) &&
	    run(c, S_DONE, 5,
		(const char *[]){ id, next, w->p->attended ? "true" : "false",
		    w->p->user_id, seq });
}

enum store_claim
store_pull_write(PGconn *c, const struct store_pull *p,
    const struct store_pull_data *d)
{
	struct write_tx w = { p, d, false };

	if (db_tx(c, write_body, &w))
		return SC_HELD;
	return w.lost ? SC_LOST : SC_DB_ERROR;
}

bool
store_pull_synced(PGconn *c, const char *conn_id)
{
	return run(c, S_SYNCED, 1, (const char *[]){ conn_id });
}

/* ---- reads ------------------------------------------------------------- */

void
store_rows_free(struct store_rows *rows)
{
	free(rows->v.accounts);
	PQclear(rows->held);
	memset(rows, 0, sizeof(*rows));
}

/* out holds r (NULL: failed); an array of its rows, each size bytes,
 * zeroed, with one more at the end (so never NULL when r is not). */
static void *
rows_hold(struct store_rows *out, PGresult *r, size_t size)
{
	memset(out, 0, sizeof(*out));
	if (r == NULL)
		return NULL;
	out->held = r;
	out->n = PQntuples(r);
	return xcalloc((size_t)out->n + 1, size);
}

static void
account_row(struct store_account *a, const PGresult *r, int i)
{
	const char **f[] = { &a->id, &a->connection_id, &a->user_id,
		&a->finx_account_id, &a->access_id, &a->iban, &a->bic, &a->name,
		&a->type, &a->currency, &a->owner, &a->bank_name,
		&a->balance_amount, &a->balance_currency, &a->balance_date,
		&a->balance_fetched_at, &a->updated_at };
	size_t k;

	for (k = 0; k < sizeof(f) / sizeof(f[0]); k++)
		*f[k] = db_val(r, i, (int)k);
}

static bool
accounts_read(PGconn *c, int s, const char *param, struct store_rows *out)
{
	PGresult *r = db_run(c, &S[s], 1,
	    (const char *[]){ param });
	struct store_account *v = rows_hold(out, r, sizeof(*v));
	int i;

	for (i = 0; v != NULL && i < out->n; i++)
		account_row(&v[i], r, i);
	out->v.accounts = v;
	return v != NULL;
}

bool
store_accounts_of_user(PGconn *c, const char *user_id, struct store_rows *out)
{
	return accounts_read(c, S_USER_ACCOUNTS, user_id, out);
}

bool
store_account_get(PGconn *c, const char *account_id, struct store_rows *out)
{
	return accounts_read(c, S_ACCOUNT_GET, account_id, out);
}

void
store_txn_fill(struct store_txn *t, const PGresult *r, int i)
{
	const char **f[] = { &t->id, &t->finx_transaction_id, &t->account_id,
		&t->connection_id, &t->amount, &t->currency, &t->booking_date,
		&t->value_date, NULL, &t->counterparty_name,
		&t->counterparty_iban, &t->counterparty_bic, &t->purpose,
		&t->type, &t->booking_text };
	size_t k;

	for (k = 0; k < sizeof(f) / sizeof(f[0]); k++)
		if (f[k] != NULL)
			*f[k] = db_val(r, i, (int)k);
	t->booked = PQgetvalue(r, i, 8)[0] == 't';
	t->sort_micros = strtoll(PQgetvalue(r, i, 15), NULL, 10);
	t->id_num = strtoll(t->id, NULL, 10);
}

static bool
txns_read(PGconn *c, int s, const char *scope, const struct store_txn_query *q,
    struct store_rows *out)
{
	static const char *const booked[] = { NULL, "true", "false" };
	char micros[24], id[24], rows[24];
	struct store_txn *v;
	PGresult *r;
	int i;

	snprintf(micros, sizeof(micros), "%" PRId64, q->cursor_micros);
	snprintf(id, sizeof(id), "%" PRId64, q->cursor_id);
	snprintf(rows, sizeof(rows), "%ld", q->rows);
	r = db_run(c, &S[s], 9,
	    (const char *[]){ scope, q->from_is_date ? NULL : q->from,
		q->from_is_date ? q->from : NULL, q->to_is_date ? NULL : q->to,
		q->to_is_date ? q->to : NULL, booked[q->booked],
		q->after_cursor ? micros : NULL, q->after_cursor ? id : NULL,
		rows });
	v = rows_hold(out, r, sizeof(*v));
	for (i = 0; v != NULL && i < out->n; i++)
		store_txn_fill(&v[i], r, i);
	out->v.txns = v;
	return v != NULL;
}

bool
store_txns_of_account(PGconn *c, const char *account_id,
    const struct store_txn_query *q, struct store_rows *out)
{
	return txns_read(c, S_ACCOUNT_TXNS, account_id, q, out);
}

bool
store_txns_of_user(PGconn *c, const char *user_id,
    const struct store_txn_query *q, struct store_rows *out)
{
	return txns_read(c, S_USER_TXNS, user_id, q, out);
}

enum store_found
store_account_owner(PGconn *c, const char *account_id, char **user_id)
{
	PGresult *r = db_run(c, &S[S_OWNER], 1,
	    (const char *[]){ account_id });
	enum store_found f = r == NULL ? SF_DB_ERROR : SF_NONE;

	*user_id = NULL;
	if (r != NULL && PQntuples(r) > 0) {
		*user_id = xstrdup(PQgetvalue(r, 0, 0));
		f = SF_FOUND;
	}
	PQclear(r);
	return f;
}
