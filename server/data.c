/*
 * Pulls.  A pull holds its connection's row in `pulls` (FOR UPDATE SKIP
 * LOCKED) and writes everything in the same transaction, so one pull per
 * connection runs at a time across processes, a failed pull leaves no
 * half state, and a pull never blocks a token refresh (that lock lives on
 * `connections`).  Upserts key on finX ids, so a re-pull adds nothing
 * twice and a pending transaction that becomes booked is updated in
 * place.
 */
#include "data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "config.h"
#include "db.h"
#include "finx.h"
#include "finxmap.h"
#include "log.h"
#include "mem.h"
#include "refresh.h"
#include "secret.h"
#include "tokens.h"

#define PAGE 500
#define MAX_PAGES 400

static const struct config *dcfg;

void
data_init(const struct config *cfg)
{
	dcfg = cfg;
}

/* A finX GET with one refresh-and-retry on 401. */
static bool
rest_get(const char *conn_id, char **token, const char *path,
    json_object **out, struct finx_error *err)
{
	enum refresh_outcome o;

	if (finx_rest("GET", *token, path, NULL, out, err))
		return true;
	if (err->http_status != 401)
		return false;
	finx_error_free(err);
	free_secret(*token);
	*token = refresh_access_token(conn_id, RT_FORCE, &o, NULL, NULL);
	if (*token == NULL) {
		err->message = xasprintf("no valid access token (%s)",
		    refresh_outcome_name(o));
		return false;
	}
	return finx_rest("GET", *token, path, NULL, out, err);
}

/* Upsert one account and record its balance if it changed. */
static char *
store_account(PGconn *c, const char *conn_id, const char *user_id,
    const struct account_row *a)
{
	char *new_id = uuid_new(), *id = NULL;
	PGresult *r;

	r = db_exec(c,
	    "INSERT INTO accounts (id, connection_id, user_id, "
	    "finx_account_id, access_id, iban, bic, name, type, currency, "
	    "owner, bank_name, account_number, raw) VALUES ($1, $2, $3, $4, "
	    "$5, $6, $7, $8, $9, $10, $11, $12, $13, $14::jsonb) "
	    "ON CONFLICT (connection_id, finx_account_id) DO UPDATE SET "
	    "access_id = EXCLUDED.access_id, iban = EXCLUDED.iban, "
	    "bic = EXCLUDED.bic, name = EXCLUDED.name, type = EXCLUDED.type, "
	    "currency = EXCLUDED.currency, owner = EXCLUDED.owner, "
	    "bank_name = EXCLUDED.bank_name, account_number = "
	    "EXCLUDED.account_number, raw = EXCLUDED.raw, updated_at = now() "
	    "RETURNING id",
	    14,
	    (const char *[]){ new_id, conn_id, user_id, a->finx_id,
		a->access_id, a->iban, a->bic, a->name, a->type, a->currency,
		a->owner, a->bank_name, a->account_number, a->raw });
	free(new_id);
	if (r == NULL)
		return NULL;
	id = xstrdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	if (a->balance != NULL &&
	    !db_cmd(c,
		"INSERT INTO balances (account_id, amount, currency, "
		"balance_date) SELECT $1, $2::numeric, $3, $4::timestamptz "
		"WHERE NOT EXISTS (SELECT 1 FROM (SELECT amount, balance_date "
		"FROM balances WHERE account_id = $1 ORDER BY id DESC LIMIT 1) "
		"l WHERE l.amount = $2::numeric AND l.balance_date IS NOT "
		"DISTINCT FROM $4::timestamptz)",
		4,
		(const char *[]){ id, a->balance, a->balance_currency,
		    a->balance_date })) {
		free(id);
		return NULL;
	}
	return id;
}

struct acct_map {
	char **finx_ids;
	char **ids;
	size_t n;
};

static const char *
acct_lookup(const struct acct_map *m, const char *finx_id)
{
	size_t i;

	for (i = 0; i < m->n; i++)
		if (strcmp(m->finx_ids[i], finx_id) == 0)
			return m->ids[i];
	return NULL;
}

static void
acct_map_free(struct acct_map *m)
{
	size_t i;

	for (i = 0; i < m->n; i++) {
		free(m->finx_ids[i]);
		free(m->ids[i]);
	}
	free(m->finx_ids);
	free(m->ids);
}

static void
put_text(json_object *o, const char *key, const char *v)
{
	json_object_object_add(o, key, v ? json_object_new_string(v) : NULL);
}

/* One mapped transaction as a row of store_txns' recordset; raw is the
 * finX object itself, which serialises to the text finxmap checked. */
static json_object *
txn_json(const char *account_id, const struct txn_row *t, json_object *raw)
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

/*
 * Upsert one page of transactions in one statement.  Row by row, a first
 * pull cost PostgreSQL a parse, a plan and a round trip per transaction
 * and was most of its CPU time during a burst of new connections.  Amounts
 * and dates travel as JSON strings and go through numeric's and
 * timestamptz's own input functions, as the per-row parameters did.  A
 * finX id twice in one page (ON CONFLICT may not touch a row twice in one
 * statement): the later entry is stored, at the place of the first, as
 * row by row (but a new row whose later entry has neither date gets
 * now() as its sort date, not the earlier entry's dates).  Rows are
 * inserted in finX's order, which the id tie-breaker of the keyset keeps.
 */
static bool
store_txns(PGconn *c, const char *conn_id, json_object *rows)
{
	const char *json = json_object_to_json_string_ext(rows,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

	/* Out of memory: NULL would be an empty page, and the pending
	 * transactions not seen again would then be deleted. */
	if (json == NULL)
		return false;
	return db_cmd(c,
	    "INSERT INTO transactions (connection_id, account_id, "
	    "finx_transaction_id, amount, currency, booking_date, value_date, "
	    "sort_date, booked, counterparty_name, counterparty_iban, "
	    "counterparty_bic, purpose, type, booking_text, raw) SELECT $1, "
	    "r.account_id, r.finx_transaction_id, r.amount, r.currency, "
	    "r.booking_date, r.value_date, coalesce(r.booking_date, "
	    "r.value_date, now()), r.booked, r.counterparty_name, "
	    "r.counterparty_iban, r.counterparty_bic, r.purpose, r.type, "
	    "r.booking_text, r.raw FROM (SELECT DISTINCT ON "
	    "(finx_transaction_id) *, min(ord) OVER (PARTITION BY "
	    "finx_transaction_id) AS first FROM ROWS FROM (jsonb_to_recordset("
	    "$2::jsonb) AS (account_id uuid, finx_transaction_id text, amount "
	    "numeric, currency text, booking_date timestamptz, value_date "
	    "timestamptz, booked boolean, counterparty_name text, "
	    "counterparty_iban text, counterparty_bic text, purpose text, type "
	    "text, booking_text text, raw jsonb)) WITH ORDINALITY AS x("
	    "account_id, finx_transaction_id, amount, currency, booking_date, "
	    "value_date, booked, counterparty_name, counterparty_iban, "
	    "counterparty_bic, purpose, type, booking_text, raw, ord) ORDER BY "
	    "finx_transaction_id, ord DESC) r ORDER BY r.first "
	    "ON CONFLICT (connection_id, finx_transaction_id) DO UPDATE SET "
	    "account_id = EXCLUDED.account_id, amount = EXCLUDED.amount, "
	    "currency = EXCLUDED.currency, booking_date = "
	    "EXCLUDED.booking_date, value_date = EXCLUDED.value_date, "
	    "sort_date = coalesce(EXCLUDED.booking_date, EXCLUDED.value_date, "
	    "transactions.sort_date), booked = EXCLUDED.booked, "
	    "counterparty_name = EXCLUDED.counterparty_name, "
	    "counterparty_iban = EXCLUDED.counterparty_iban, "
	    "counterparty_bic = EXCLUDED.counterparty_bic, purpose = "
	    "EXCLUDED.purpose, type = EXCLUDED.type, booking_text = "
	    "EXCLUDED.booking_text, raw = EXCLUDED.raw, updated_at = now()",
	    2, (const char *[]){ conn_id, json });
}

/* jsonb cannot hold U+0000; such a row is skipped, not the whole pull. */
static bool
jsonb_safe(const char *raw)
{
	return strstr(raw, "\\u0000") == NULL;
}

static const char *
pull_accounts(PGconn *c, const char *conn_id, const char *user_id,
    char **token, struct acct_map *m, struct finx_error *err)
{
	json_object *res = NULL, *arr;
	const char *why = NULL;
	size_t i, n;

	if (!rest_get(conn_id, token, "/rest/accounts", &res, err))
		return "fetching accounts failed";
	if (!json_object_object_get_ex(res, "accounts", &arr) ||
	    !json_object_is_type(arr, json_type_array)) {
		json_object_put(res);
		return "finX accounts answer has no accounts array";
	}
	n = json_object_array_length(arr);
	m->finx_ids = xcalloc(n, sizeof(char *));
	m->ids = xcalloc(n, sizeof(char *));
	for (i = 0; i < n && why == NULL; i++) {
		struct account_row a;
		const char *bad;
		char *id;

		if (!finxmap_account(json_object_array_get_idx(arr, i), &a,
			&bad) ||
		    !jsonb_safe(a.raw)) {
			log_kv(LOG_WARN, "skipping account", "connection_id",
			    conn_id, "reason", bad ? bad : "NUL in JSON", NULL);
			if (bad == NULL)
				account_row_free(&a);
			continue;
		}
		if ((id = store_account(c, conn_id, user_id, &a)) == NULL)
			why = "storing an account failed";
		else {
			m->finx_ids[m->n] = xstrdup(a.finx_id);
			m->ids[m->n++] = id;
		}
		account_row_free(&a);
	}
	json_object_put(res);
	return why;
}

static const char *
pull_transactions(PGconn *c, const char *conn_id, char **token,
    const struct acct_map *m, long *count, struct finx_error *err)
{
	int page;

	for (page = 0; page < MAX_PAGES; page++) {
		json_object *res = NULL, *arr, *rows;
		char *path = xasprintf("/rest/transactions?include_pending=true"
				       "&count=%d&offset=%d",
		    PAGE, page * PAGE);
		size_t i, n, stored;
		bool ok;

		ok = rest_get(conn_id, token, path, &res, err);
		free(path);
		if (!ok)
			return "fetching transactions failed";
		if (!json_object_object_get_ex(res, "transactions", &arr) ||
		    !json_object_is_type(arr, json_type_array)) {
			json_object_put(res);
			return "finX transactions answer has no array";
		}
		n = json_object_array_length(arr);
		rows = json_object_new_array_ext((int)n);
		for (i = 0; i < n; i++) {
			json_object *o = json_object_array_get_idx(arr, i);
			struct txn_row t;
			const char *bad, *acct;

			if (!finxmap_transaction(o, &t, &bad)) {
				log_kv(LOG_WARN, "skipping transaction",
				    "connection_id", conn_id, "reason", bad,
				    NULL);
				continue;
			}
			acct = acct_lookup(m, t.finx_account_id);
			if (acct != NULL && jsonb_safe(t.raw))
				json_object_array_add(rows,
				    txn_json(acct, &t, o));
			txn_row_free(&t);
		}
		stored = json_object_array_length(rows);
		ok = stored == 0 || store_txns(c, conn_id, rows);
		json_object_put(rows);
		if (!ok) {
			json_object_put(res);
			return "storing transactions failed";
		}
		*count += (long)stored;
		json_object_put(res);
		if (n < PAGE)
			return NULL;
	}
	return "too many transaction pages";
}

/* Run the pull of conn_id inside the open transaction on c. */
static const char *
pull(PGconn *c, const char *conn_id, const char *user_id, long *count,
    char **detail)
{
	struct acct_map m = { 0 };
	struct finx_error err = { 0 };
	enum refresh_outcome o;
	const char *why;
	char *token;

	token = refresh_access_token(conn_id, 0, &o, NULL, NULL);
	if (token == NULL) {
		*detail = xasprintf("no valid access token (%s)",
		    refresh_outcome_name(o));
		return "no access token";
	}
	why = pull_accounts(c, conn_id, user_id, &token, &m, &err);
	if (why == NULL)
		why = pull_transactions(c, conn_id, &token, &m, count, &err);
	/* Pending transactions come as a complete set: drop vanished ones. */
	if (why == NULL &&
	    !db_cmd(c,
		"DELETE FROM transactions WHERE connection_id = $1 AND NOT "
		"booked AND updated_at < now()",
		1, (const char *[]){ conn_id }))
		why = "removing vanished pending transactions failed";
	if (why != NULL && err.message != NULL)
		*detail = xstrdup(err.message);
	finx_error_free(&err);
	free_secret(token);
	acct_map_free(&m);
	return why;
}

const char pull_claim_sql[] =
    "SELECT p.connection_id, c.user_id, p.attended, "
    "cardinality(array(SELECT t FROM unnest(p.recent) t WHERE t > "
    "now() - interval '24 hours')) >= $1::int, c.status = 'active' "
    "FROM pulls p JOIN connections c ON c.id = p.connection_id WHERE "
    "p.next_pull_at <= now() ORDER BY p.next_pull_at LIMIT 1 "
    "FOR UPDATE OF p SKIP LOCKED";

bool
pull_one(PGconn *c)
{
	PGresult *r;
	const char *why;
	char *detail = NULL, *id, *user, next[24], cnt[24], pulls_per_day[8];
	long count = 0;
	bool attended, limited, committed;

	snprintf(pulls_per_day, sizeof(pulls_per_day), "%d", PULLS_PER_DAY);
	if (!db_cmd(c, "BEGIN", 0, NULL))
		return false;
	/*
	 * No filter on the connection's status: a connection that is no
	 * longer active has its row parked at 'infinity' below instead, so
	 * that such rows do not pile up at the head of pulls_due_idx and make
	 * every claim walk them (bench_sched: 215 ms a claim with 50,000
	 * deleted connections).  A reauth callback sets next_pull_at again.
	 */
	r = db_exec_prepared(c, "pull_claim", pull_claim_sql, 1,
	    (const char *[]){ pulls_per_day });
	if (r == NULL || PQntuples(r) == 0) {
		PQclear(r);
		PQclear(PQexec(c, "ROLLBACK"));
		return false;
	}
	if (strcmp(PQgetvalue(r, 0, 4), "t") != 0) {
		db_cmd(c,
		    "UPDATE pulls SET next_pull_at = 'infinity' WHERE "
		    "connection_id = $1",
		    1, (const char *[]){ PQgetvalue(r, 0, 0) });
		PQclear(r);
		db_cmd(c, "COMMIT", 0, NULL);
		return true;
	}
	id = xstrdup(PQgetvalue(r, 0, 0));
	user = xstrdup(PQgetvalue(r, 0, 1));
	attended = strcmp(PQgetvalue(r, 0, 2), "t") == 0;
	limited = strcmp(PQgetvalue(r, 0, 3), "t") == 0;
	PQclear(r);
	if (!attended && limited) {
		/* Fifth unattended pull in 24 h: wait for the oldest to age. */
		db_cmd(c,
		    "UPDATE pulls SET next_pull_at = (SELECT min(t) FROM "
		    "unnest(recent) t WHERE t > now() - interval '24 hours') + "
		    "interval '24 hours' WHERE connection_id = $1",
		    1, (const char *[]){ id });
		db_cmd(c, "COMMIT", 0, NULL);
		free(id);
		free(user);
		return true;
	}
	db_cmd(c, "SAVEPOINT pull", 0, NULL);
	why = pull(c, id, user, &count, &detail);
	if (why == NULL) {
		/* Spread the next pulls: interval plus up to 10% jitter. */
		snprintf(next, sizeof(next), "%ld",
		    dcfg->sync_interval_s +
			random() % (dcfg->sync_interval_s / 10 + 1));
		db_cmd(c,
		    "UPDATE pulls SET last_pull_at = now(), last_error = NULL, "
		    "failures = 0, attended = false, next_pull_at = now() + "
		    "make_interval(secs => $2::int), recent = CASE WHEN $3 "
		    "THEN recent ELSE array(SELECT t FROM unnest(recent) t "
		    "WHERE t > now() - interval '24 hours') || now() END "
		    "WHERE connection_id = $1",
		    3, (const char *[]){ id, next, attended ? "true" : "false" });
	} else {
		char *msg = xasprintf("%s%s%s", why, detail ? ": " : "",
		    detail ? detail : "");

		db_cmd(c, "ROLLBACK TO SAVEPOINT pull", 0, NULL);
		r = db_exec(c,
		    "UPDATE pulls SET failures = failures + 1, last_error = $2 "
		    "WHERE connection_id = $1 RETURNING failures",
		    2, (const char *[]){ id, msg });
		snprintf(next, sizeof(next), "%ld",
		    tokens_backoff_s((int)db_long(r, 0, 0, 1),
			(unsigned)random()) * 6);
		PQclear(r);
		db_cmd(c,
		    "UPDATE pulls SET next_pull_at = now() + make_interval(secs "
		    "=> $2::int) WHERE connection_id = $1",
		    2, (const char *[]){ id, next });
		log_kv(LOG_WARN, "pull failed", "connection_id", id, "error",
		    msg, NULL);
		free(msg);
	}
	/*
	 * Every finxd process drops this user's cached reads when the
	 * commit delivers the notification; this process also brackets the
	 * commit itself, so it never serves the old data after it.
	 */
	if (why == NULL) {
		db_cmd(c, "SELECT pg_notify('" CACHE_CHANNEL "', $1)", 1,
		    (const char *[]){ user });
		cache_write_begin(user);
	}
	committed = db_cmd(c, "COMMIT", 0, NULL);
	if (!committed)
		PQclear(PQexec(c, "ROLLBACK"));
	if (why == NULL)
		cache_write_end(user);
	if (committed && why == NULL) {
		/*
		 * After the commit, not inside it: the pull holds its pulls row
		 * and must not then wait for the connection's row, which a
		 * reauth callback locks before it touches pulls (deadlock).
		 */
		db_cmd(c,
		    "UPDATE connections SET last_sync_at = now() WHERE id = $1",
		    1, (const char *[]){ id });
		snprintf(cnt, sizeof(cnt), "%ld", count);
		log_kv(LOG_INFO, "pulled", "connection_id", id, "transactions",
		    cnt, NULL);
	}
	free(detail);
	free(id);
	free(user);
	return true;
}
