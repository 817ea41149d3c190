/*
 * Store: pulled data and the pulls that bring it.  Upserts key on finX
 * ids, so a re-pull adds nothing twice and a pending transaction that
 * becomes booked is updated in place.  The latest balance of an account
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
	S_BEGIN,
	S_CLAIM,
	S_PARK,
	S_DEFER,
	S_SAVEPOINT,
	S_ACCOUNT,
	S_TXNS,
	S_VANISHED,
	S_DONE,
	S_UNDO,
	S_FAILED,
	S_COMMIT,
	S_ROLLBACK,
	S_SYNCED,
	S_USER_ACCOUNTS,
	S_ACCOUNT_GET,
	S_ACCOUNT_TXNS,
	S_USER_TXNS,
	S_OWNER,
};

/*
 * No filter on the connection's status: a connection that is no longer
 * active has its row parked at 'infinity' instead (store_pull_park), so
 * that such rows do not pile up at the head of pulls_due_idx and make
 * every claim walk them (bench_sched: 215 ms a claim with 50,000 deleted
 * connections).  A reauth callback sets next_pull_at again.
 */
const char pull_claim_sql[] =
    "SELECT p.connection_id, c.user_id, p.attended, "
    "cardinality(array(SELECT t FROM unnest(p.recent) t WHERE t > "
    "now() - interval '24 hours')) >= $1::int, c.status = 'active', "
    "p.failures FROM pulls p JOIN connections c ON c.id = p.connection_id "
    "WHERE p.next_pull_at <= now() ORDER BY p.next_pull_at LIMIT 1 "
    "FOR UPDATE OF p SKIP LOCKED";

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
 * One page of transactions in one statement.  Row by row, a first pull
 * cost PostgreSQL a parse, a plan and a round trip per transaction and
 * was most of its CPU time during a burst of new connections.  Amounts
 * and dates travel as JSON strings and go through numeric's and
 * timestamptz's own input functions, as the per-row parameters did.  A
 * finX id twice in one page (ON CONFLICT may not touch a row twice in
 * one statement): the later entry is stored, at the place of the first,
 * as row by row (but a new row whose later entry has neither date gets
 * now() as its sort date, not the earlier entry's dates).  Rows are
 * inserted in finX's order, which the id tie-breaker of the keyset keeps.
 */
#define TXNS_UPSERT                                                           \
	"INSERT INTO transactions (connection_id, account_id, "               \
	"finx_transaction_id, amount, currency, booking_date, value_date, "   \
	"sort_date, booked, counterparty_name, counterparty_iban, "           \
	"counterparty_bic, purpose, type, booking_text, raw) SELECT $1, "     \
	"r.account_id, r.finx_transaction_id, r.amount, r.currency, "         \
	"r.booking_date, r.value_date, coalesce(r.booking_date, "             \
	"r.value_date, now()), r.booked, r.counterparty_name, "               \
	"r.counterparty_iban, r.counterparty_bic, r.purpose, r.type, "        \
	"r.booking_text, r.raw FROM (SELECT DISTINCT ON "                     \
	"(finx_transaction_id) *, min(ord) OVER (PARTITION BY "               \
	"finx_transaction_id) AS first FROM ROWS FROM (jsonb_to_recordset("   \
	"$2::jsonb) AS (account_id uuid, finx_transaction_id text, amount "   \
	"numeric, currency text, booking_date timestamptz, value_date "       \
	"timestamptz, booked boolean, counterparty_name text, "               \
	"counterparty_iban text, counterparty_bic text, purpose text, type "  \
	"text, booking_text text, raw jsonb)) WITH ORDINALITY AS x("          \
	"account_id, finx_transaction_id, amount, currency, booking_date, "   \
	"value_date, booked, counterparty_name, counterparty_iban, "          \
	"counterparty_bic, purpose, type, booking_text, raw, ord) ORDER BY "  \
	"finx_transaction_id, ord DESC) r ORDER BY r.first "                  \
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
	"EXCLUDED.booking_text, raw = EXCLUDED.raw, updated_at = now()"

/* In the order of struct store_account. */
#define ACCOUNT_SELECT                                                        \
	"SELECT a.id, a.connection_id, a.user_id, a.finx_account_id, "        \
	"a.access_id, a.iban, a.bic, a.name, a.type, a.currency, a.owner, "   \
	"a.bank_name, a.balance_amount::text, a.balance_currency, "           \
	SQL_TS("a.balance_date") ", " SQL_TS("a.balance_fetched_at") ", "     \
	SQL_TS("a.updated_at") " FROM accounts a JOIN connections c ON "      \
	"c.id = a.connection_id "

/*
 * In the order of struct store_txn.  The filters are nullable parameters
 * and every bound is an index condition even in a generic plan: absent
 * ones are the infinities ($2/$3 from as a timestamp or a date, $4/$5 to,
 * $6 booked, $7/$8 the cursor, $9 the rows), so a page seeks
 * transactions_keyset_idx to its cursor however the plan was made.
 */
#define TXN_SELECT                                                            \
	"SELECT t.id, t.finx_transaction_id, t.account_id, t.connection_id, " \
	"t.amount::text, t.currency, " SQL_TS("t.booking_date") ", "          \
	SQL_TS("t.value_date") ", t.booked, t.counterparty_name, "            \
	"t.counterparty_iban, t.counterparty_bic, t.purpose, t.type, "        \
	"t.booking_text, (extract(epoch FROM t.sort_date) * 1000000)::bigint " \
	"FROM transactions t WHERE "
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
	[S_BEGIN] = { "data_begin", "BEGIN" },
	[S_CLAIM] = { "data_pull_claim", pull_claim_sql },
	[S_PARK] = { "data_pull_park",
	    "UPDATE pulls SET next_pull_at = 'infinity' WHERE connection_id = "
	    "$1" },
	[S_DEFER] = { "data_pull_defer",
	    "UPDATE pulls SET next_pull_at = (SELECT min(t) FROM unnest("
	    "recent) t WHERE t > now() - interval '24 hours') + interval "
	    "'24 hours' WHERE connection_id = $1" },
	[S_SAVEPOINT] = { "data_savepoint", "SAVEPOINT pull" },
	[S_ACCOUNT] = { "data_account_upsert", ACCOUNT_UPSERT },
	[S_TXNS] = { "data_txns_upsert", TXNS_UPSERT },
	[S_VANISHED] = { "data_txns_vanished",
	    "DELETE FROM transactions WHERE connection_id = $1 AND NOT "
	    "booked AND updated_at < now()" },
	[S_DONE] = { "data_pull_done",
	    "WITH u AS (UPDATE pulls SET last_pull_at = now(), last_error = "
	    "NULL, failures = 0, attended = false, next_pull_at = now() + "
	    "make_interval(secs => $2::int), recent = CASE WHEN $3::boolean "
	    "THEN recent ELSE array(SELECT t FROM unnest(recent) t WHERE t > "
	    "now() - interval '24 hours') || now() END WHERE connection_id = "
	    "$1) SELECT pg_notify('" CACHE_CHANNEL "', $4)" },
	[S_UNDO] = { "data_rollback_to", "ROLLBACK TO SAVEPOINT pull" },
	[S_FAILED] = { "data_pull_failed",
	    "UPDATE pulls SET failures = failures + 1, last_error = $2, "
	    "next_pull_at = now() + make_interval(secs => $3::int) WHERE "
	    "connection_id = $1" },
	[S_COMMIT] = { "data_commit", "COMMIT" },
	[S_ROLLBACK] = { "data_rollback", "ROLLBACK" },
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

static bool
run(PGconn *c, int s, int n, const char *const *params)
{
	return db_do(c, &store_data_stmts[s], n, params);
}

/* ---- pulls ------------------------------------------------------------- */

/* Run s on conn_id and commit; rolled back when either fails. */
static bool
run_commit(PGconn *c, int s, const char *conn_id)
{
	if (run(c, s, 1, (const char *[]){ conn_id }))
		return store_pull_commit(c);
	run(c, S_ROLLBACK, 0, NULL);
	return false;
}

static bool
is_true(const PGresult *r, int col)
{
	return strcmp(PQgetvalue(r, 0, col), "t") == 0;
}

enum store_pull_res
store_pull_claim(PGconn *c, int per_day, struct store_pull *out)
{
	char n[16];
	PGresult *r;

	memset(out, 0, sizeof(*out));
	snprintf(n, sizeof(n), "%d", per_day);
	if (!run(c, S_BEGIN, 0, NULL))
		return SP_DB_ERROR;
	r = db_run(c, &store_data_stmts[S_CLAIM], 1, (const char *[]){ n });
	if (r == NULL || PQntuples(r) == 0) {
		PQclear(r);
		run(c, S_ROLLBACK, 0, NULL);
		return r == NULL ? SP_DB_ERROR : SP_NONE;
	}
	out->conn_id = xstrdup(PQgetvalue(r, 0, 0));
	out->user_id = xstrdup(PQgetvalue(r, 0, 1));
	out->attended = is_true(r, 2);
	out->limited = is_true(r, 3);
	out->active = is_true(r, 4);
	out->failures = (int)db_long(r, 0, 5, 0);
	PQclear(r);
	return SP_CLAIMED;
}

void
store_pull_free(struct store_pull *p)
{
	free(p->conn_id);
	free(p->user_id);
	p->conn_id = p->user_id = NULL;
}

bool
store_pull_park(PGconn *c, const char *conn_id)
{
	return run_commit(c, S_PARK, conn_id);
}

bool
store_pull_defer(PGconn *c, const char *conn_id)
{
	return run_commit(c, S_DEFER, conn_id);
}

bool
store_pull_savepoint(PGconn *c)
{
	return run(c, S_SAVEPOINT, 0, NULL);
}

char *
store_account_upsert(PGconn *c, const char *conn_id, const char *user_id,
    const struct account_row *a)
{
	char *new_id = uuid_new(), *id = NULL;
	PGresult *r;

	r = db_run(c, &store_data_stmts[S_ACCOUNT], 17,
	    (const char *[]){ new_id, conn_id, user_id, a->finx_id,
		a->access_id, a->iban, a->bic, a->name, a->type, a->currency,
		a->owner, a->bank_name, a->account_number, a->raw, a->balance,
		a->balance_currency, a->balance_date });
	free(new_id);
	if (r != NULL && PQntuples(r) == 1)
		id = xstrdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	return id;
}

static void
put_text(json_object *o, const char *key, const char *v)
{
	json_object_object_add(o, key, v ? json_object_new_string(v) : NULL);
}

/* The fields of TXNS_UPSERT's recordset; raw serialises to the text
 * finxmap checked. */
json_object *
store_txn_row(const char *account_id, const struct txn_row *t,
    json_object *raw)
{
	json_object *o = json_object_new_object();

	put_text(o, "account_id", account_id);
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

bool
store_txns_upsert(PGconn *c, const char *conn_id, json_object *rows)
{
	const char *json = json_object_to_json_string_ext(rows,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

	/* Out of memory: NULL would be an empty page, and the pending
	 * transactions not seen again would then be deleted. */
	if (json == NULL)
		return false;
	return run(c, S_TXNS, 2, (const char *[]){ conn_id, json });
}

bool
store_txns_drop_vanished(PGconn *c, const char *conn_id)
{
	return run(c, S_VANISHED, 1, (const char *[]){ conn_id });
}

bool
store_pull_done(PGconn *c, const struct store_pull *p, long next_s)
{
	char next[24];

	snprintf(next, sizeof(next), "%ld", next_s);
	return run(c, S_DONE, 4,
	    (const char *[]){ p->conn_id, next,
		p->attended ? "true" : "false", p->user_id });
}

bool
store_pull_failed(PGconn *c, const char *conn_id, const char *msg,
    long next_s)
{
	char next[24];

	snprintf(next, sizeof(next), "%ld", next_s);
	return run(c, S_UNDO, 0, NULL) &&
	    run(c, S_FAILED, 3, (const char *[]){ conn_id, msg, next });
}

bool
store_pull_commit(PGconn *c)
{
	PGresult *r = db_run(c, &store_data_stmts[S_COMMIT], 0, NULL);
	/* COMMIT answers "ROLLBACK" for a transaction a failure aborted. */
	bool ok = r != NULL && strcmp(PQcmdStatus(r), "COMMIT") == 0;

	PQclear(r);
	if (!ok && PQtransactionStatus(c) != PQTRANS_IDLE)
		run(c, S_ROLLBACK, 0, NULL);
	return ok;
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
	PGresult *r = db_run(c, &store_data_stmts[s], 1,
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

static void
txn_row(struct store_txn *t, const PGresult *r, int i)
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
	r = db_run(c, &store_data_stmts[s], 9,
	    (const char *[]){ scope, q->from_is_date ? NULL : q->from,
		q->from_is_date ? q->from : NULL, q->to_is_date ? NULL : q->to,
		q->to_is_date ? q->to : NULL, booked[q->booked],
		q->after_cursor ? micros : NULL, q->after_cursor ? id : NULL,
		rows });
	v = rows_hold(out, r, sizeof(*v));
	for (i = 0; v != NULL && i < out->n; i++)
		txn_row(&v[i], r, i);
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
	PGresult *r = db_run(c, &store_data_stmts[S_OWNER], 1,
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
