/*
 * Pulls: accounts, balances and transactions from finX into PostgreSQL,
 * holding no database transaction while finX answers (the event log's
 * readers wait for the oldest open transaction; EVENTS.md).
 *
 * 1. The claim: one committed statement (store_pull_claim) sets a claim
 *    with a deadline on the connection's pulls row, so one pull per
 *    connection runs at a time across processes; a pull whose process
 *    died is due again once the deadline passes.
 * 2. The fetch: the accounts and every page of transactions from finX,
 *    kept in memory (capped: pages, bytes), with no transaction open; the
 *    deadline is renewed between pages (store_pull_renew, a committed
 *    statement of its own), and a claim found lost ends the pull.
 * 3. The store: one short transaction (store_pull_write) that locks the
 *    pulls row, checks the claim is still this pull's (else the data is
 *    thrown away), writes accounts, balances, transactions, the removal
 *    of vanished pending ones, the change feed's rows and the
 *    transactions.updated event, the outcome and the cache notification.
 *    A failed pull records its failure and frees the claim
 *    (store_pull_failed); a failed pull leaves no half state.
 *
 * A pull never blocks a token refresh (that lock lives on `connections`),
 * and its write transaction takes the pulls row before anything of the
 * connection's (the order of REFRESH.md, "Deletion and reauth").  The SQL
 * is in store_data.c.
 */
#include "data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "clock.h"
#include "config.h"
#include "db.h"
#include "finx.h"
#include "finxmap.h"
#include "log.h"
#include "mem.h"
#include "notify.h"
#include "refresh.h"
#include "secret.h"
#include "store_data.h"
#include "tokens.h"

#define PAGE 500
#define MAX_PAGES 400
/* What a pull may hold in memory between its fetch and its store. */
#define MAX_BYTES ((size_t)512 * 1024 * 1024)

static const struct config *dcfg;
/* A claim's length: longer than the few finX calls of a page (a 401, a
 * refresh, the retry) and the renewal after it. */
static int claim_s;

void
data_init(const struct config *cfg)
{
	dcfg = cfg;
	claim_s = (int)(4 * (cfg->finx_timeout_ms / 1000) + 60);
}

/* One pull, from its claim to its outcome. */
struct pull {
	PGconn *c;
	const struct store_pull *p;
	char *token;
	struct account_row *accounts;
	size_t n_accounts;
	char **pages;
	size_t n_pages, bytes;
	long count;        /* transactions fetched, for the log */
	int64_t renew_ms;  /* when the deadline is renewed next */
	struct finx_error err;
	char *detail;      /* the failure's detail (never a secret) */
};

/* A finX GET with one refresh-and-retry on 401. */
static bool
rest_get(struct pull *x, const char *path, json_object **out)
{
	enum refresh_outcome o;

	if (finx_rest("GET", x->token, path, NULL, out, &x->err))
		return true;
	if (x->err.http_status != 401)
		return false;
	finx_error_free(&x->err);
	free_secret(x->token);
	x->token = refresh_access_token(x->p->conn_id, RT_FORCE, &o, NULL,
	    NULL);
	if (x->token == NULL) {
		x->err.message = xasprintf("no valid access token (%s)",
		    refresh_outcome_name(o));
		return false;
	}
	return finx_rest("GET", x->token, path, NULL, out, &x->err);
}

/* Whether finX account finx_id is one of this pull's accounts. */
static bool
acct_known(const struct pull *x, const char *finx_id)
{
	size_t i;

	for (i = 0; i < x->n_accounts; i++)
		if (strcmp(x->accounts[i].finx_id, finx_id) == 0)
			return true;
	return false;
}

/* jsonb cannot hold U+0000; such a row is skipped, not the whole pull. */
static bool
jsonb_safe(const char *raw)
{
	return strstr(raw, "\\u0000") == NULL;
}

/* Map one finX account into x->accounts; skipped ones are logged. */
static void
fetch_account(struct pull *x, json_object *o)
{
	struct account_row *a = &x->accounts[x->n_accounts];
	const char *bad;

	if (!finxmap_account(o, a, &bad) || !jsonb_safe(a->raw)) {
		log_kv(LOG_WARN, "skipping account", "connection_id",
		    x->p->conn_id, "reason", bad ? bad : "NUL in JSON", NULL);
		if (bad == NULL)
			account_row_free(a);
		return;
	}
	x->n_accounts++;
}

static const char *
fetch_accounts(struct pull *x)
{
	json_object *res = NULL, *arr;
	size_t i, n;

	if (!rest_get(x, "/rest/accounts", &res))
		return "fetching accounts failed";
	if (!json_object_object_get_ex(res, "accounts", &arr) ||
	    !json_object_is_type(arr, json_type_array)) {
		json_object_put(res);
		return "finX accounts answer has no accounts array";
	}
	n = json_object_array_length(arr);
	x->accounts = xcalloc(n + 1, sizeof(*x->accounts));
	for (i = 0; i < n; i++)
		fetch_account(x, json_object_array_get_idx(arr, i));
	json_object_put(res);
	return NULL;
}

/* The rows of one finX page to store: mapped, of a known account. */
static json_object *
page_rows(struct pull *x, json_object *arr)
{
	size_t i, n = json_object_array_length(arr);
	json_object *rows = json_object_new_array_ext((int)n);

	for (i = 0; i < n; i++) {
		json_object *o = json_object_array_get_idx(arr, i);
		struct txn_row t;
		const char *bad;

		if (!finxmap_transaction(o, &t, &bad)) {
			log_kv(LOG_WARN, "skipping transaction", "connection_id",
			    x->p->conn_id, "reason", bad, NULL);
			continue;
		}
		if (acct_known(x, t.finx_account_id) && jsonb_safe(t.raw))
			json_object_array_add(rows, store_txn_row(&t, o));
		txn_row_free(&t);
	}
	return rows;
}

/* Keep rows as the text of a page to store; NULL or why not. */
static const char *
keep_page(struct pull *x, json_object *rows)
{
	const char *json = json_object_to_json_string_ext(rows,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	size_t len;

	/* Out of memory: an empty page would let the pending transactions
	 * it held count as vanished. */
	if (json == NULL)
		return "out of memory";
	if ((len = strlen(json)) > MAX_BYTES - x->bytes)
		return "too much transaction data";
	x->bytes += len;
	x->pages[x->n_pages++] = xstrdup(json);
	x->count += (long)json_object_array_length(rows);
	return NULL;
}

/* Fetch page number page; *more when a next page may follow. */
static const char *
fetch_page(struct pull *x, int page, bool *more)
{
	json_object *res = NULL, *arr, *rows;
	char *path = xasprintf("/rest/transactions?include_pending=true"
			       "&count=%d&offset=%d",
	    PAGE, page * PAGE);
	const char *why = NULL;
	bool ok;

	ok = rest_get(x, path, &res);
	free(path);
	if (!ok)
		return "fetching transactions failed";
	if (!json_object_object_get_ex(res, "transactions", &arr) ||
	    !json_object_is_type(arr, json_type_array)) {
		json_object_put(res);
		return "finX transactions answer has no array";
	}
	rows = page_rows(x, arr);
	if (json_object_array_length(rows) > 0)
		why = keep_page(x, rows);
	*more = json_object_array_length(arr) >= PAGE;
	json_object_put(rows);
	json_object_put(res);
	return why;
}

/*
 * Move the claim's deadline when a quarter of it has passed.  A
 * database that does not answer is no reason to stop (the store checks
 * the claim anyway); a claim another process took is.
 */
static const char *
renew(struct pull *x)
{
	if (mono_ms() < x->renew_ms)
		return NULL;
	switch (store_pull_renew(x->c, x->p, claim_s)) {
	case SC_LOST:
		return "claim lost";
	case SC_DB_ERROR:
		log_kv(LOG_WARN, "pull claim not renewed", "connection_id",
		    x->p->conn_id, "sqlstate", db_failure_sqlstate(), NULL);
		break;
	case SC_HELD:
		x->renew_ms = mono_ms() + claim_s * 1000L / 4;
		break;
	}
	return NULL;
}

static const char *
fetch_transactions(struct pull *x)
{
	bool more = true;
	int page;

	x->pages = xcalloc(MAX_PAGES, sizeof(char *));
	for (page = 0; page < MAX_PAGES; page++) {
		const char *why = fetch_page(x, page, &more);

		if (why == NULL)
			why = renew(x);
		if (why != NULL || !more)
			return why;
	}
	return "too many transaction pages";
}

/* Everything from finX, no transaction open; NULL or why it failed. */
static const char *
fetch(struct pull *x)
{
	enum refresh_outcome o;
	const char *why;

	x->renew_ms = mono_ms() + claim_s * 1000L / 4;
	x->token = refresh_access_token(x->p->conn_id, 0, &o, NULL, NULL);
	if (x->token == NULL) {
		x->detail = xasprintf("no valid access token (%s)",
		    refresh_outcome_name(o));
		return "no access token";
	}
	why = fetch_accounts(x);
	if (why == NULL)
		why = renew(x);
	if (why == NULL)
		why = fetch_transactions(x);
	if (why != NULL && x->err.message != NULL && x->detail == NULL)
		x->detail = xstrdup(x->err.message);
	return why;
}

static void
pull_free(struct pull *x)
{
	size_t i;

	for (i = 0; i < x->n_accounts; i++)
		account_row_free(&x->accounts[i]);
	for (i = 0; i < x->n_pages; i++)
		free(x->pages[i]);
	free(x->accounts);
	free(x->pages);
	free(x->detail);
	finx_error_free(&x->err);
	free_secret(x->token);
}

/* A store step failed: log it once, here. */
static void
log_db(const char *msg, const char *conn_id)
{
	log_kv(LOG_ERROR, msg, "connection_id", conn_id, "sqlstate",
	    db_failure_sqlstate(), NULL);
}

/* Record the failure why (with x's detail) and free the claim. */
static void
pull_failed(struct pull *x, const char *why)
{
	const struct store_pull *p = x->p;
	char *msg = xasprintf("%s%s%s", why, x->detail ? ": " : "",
	    x->detail ? x->detail : "");

	log_kv(LOG_WARN, "pull failed", "connection_id", p->conn_id, "error",
	    msg, "transport", x->err.detail, NULL);
	if (strcmp(why, "claim lost") != 0 &&
	    !store_pull_failed(x->c, p, msg,
		tokens_backoff_s(p->failures + 1, (unsigned)random()) * 6))
		log_db("pull failure not stored", p->conn_id);
	free(msg);
}

/*
 * Store what x fetched.  Every finxd process drops this user's cached
 * reads when the commit delivers the notification; this process also
 * brackets the commit itself, so it never serves the old data after it.
 */
static enum store_claim
pull_store(struct pull *x)
{
	const struct store_pull *p = x->p;
	/* Spread the next pulls: interval plus up to 10% jitter. */
	struct store_pull_data d = { x->accounts, x->n_accounts, x->pages,
		x->n_pages, dcfg->sync_interval_s +
		    random() % (dcfg->sync_interval_s / 10 + 1) };
	enum store_claim h;

	cache_write_begin(p->user_id);
	h = store_pull_write(x->c, p, &d);
	cache_write_end(p->user_id);
	return h;
}

/* The claimed pull p, from its fetch to its outcome and after. */
static void
pull_run(PGconn *c, const struct store_pull *p)
{
	struct pull x = { .c = c, .p = p };
	const char *why;
	char cnt[24];

	why = fetch(&x);
	if (why == NULL) {
		switch (pull_store(&x)) {
		case SC_HELD:
			break;
		case SC_LOST:
			why = "claim lost";
			break;
		case SC_DB_ERROR:
			log_db("pull not stored", p->conn_id);
			why = "storing the pull failed";
			x.detail = xasprintf("SQLSTATE %s",
			    db_failure_sqlstate());
			break;
		}
	}
	if (why != NULL)
		pull_failed(&x, why);
	else {
		/*
		 * After the commit, not inside it: the write transaction
		 * holds its pulls row and must not then wait for the
		 * connection's row, which a refresh or a reauth holds.
		 */
		if (!store_pull_synced(c, p->conn_id))
			log_db("last_sync_at not stored", p->conn_id);
		/* Its accounts are known now: their finX notifications. */
		notify_after_pull(c, p->conn_id);
		snprintf(cnt, sizeof(cnt), "%ld", x.count);
		log_kv(LOG_INFO, "pulled", "connection_id", p->conn_id,
		    "transactions", cnt, NULL);
	}
	pull_free(&x);
}

bool
pull_one(PGconn *c)
{
	struct store_pull p;

	switch (store_pull_claim(c, PULLS_PER_DAY, claim_s, &p)) {
	case SP_NONE:
		return false;
	case SP_DB_ERROR:
		log_db("pull claim failed", NULL);
		return false;
	case SP_CLAIMED:
		break;
	}
	/* Not run: parked (not active) or deferred (a fifth unattended
	 * pull in 24 h) by the claim itself. */
	if (p.run)
		pull_run(c, &p);
	store_pull_free(&p);
	return true;
}
