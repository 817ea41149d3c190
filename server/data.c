/*
 * Pulls.  A pull holds its connection's row in `pulls` (FOR UPDATE SKIP
 * LOCKED) and writes everything in the same transaction, so one pull per
 * connection runs at a time across processes, a failed pull leaves no
 * half state, and a pull never blocks a token refresh (that lock lives on
 * `connections`).  The SQL is in store_data.c.
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
#include "notify.h"
#include "refresh.h"
#include "secret.h"
#include "store_data.h"
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

/* jsonb cannot hold U+0000; such a row is skipped, not the whole pull. */
static bool
jsonb_safe(const char *raw)
{
	return strstr(raw, "\\u0000") == NULL;
}

/*
 * A store step failed: why, with the SQLSTATE as the detail (for the
 * pull's last_error and its log line; PostgreSQL's message may quote a
 * value, so it stays out).
 */
static const char *
db_why(const char *why, char **detail)
{
	if (*detail == NULL)
		*detail = xasprintf("SQLSTATE %s", db_failure_sqlstate());
	return why;
}

/* Map and store one finX account; skipped ones are logged. */
static const char *
pull_account(PGconn *c, const char *conn_id, const char *user_id,
    json_object *o, struct acct_map *m, char **detail)
{
	struct account_row a;
	const char *bad, *why = NULL;
	char *id;

	if (!finxmap_account(o, &a, &bad) || !jsonb_safe(a.raw)) {
		log_kv(LOG_WARN, "skipping account", "connection_id", conn_id,
		    "reason", bad ? bad : "NUL in JSON", NULL);
		if (bad == NULL)
			account_row_free(&a);
		return NULL;
	}
	if ((id = store_account_upsert(c, conn_id, user_id, &a)) == NULL)
		why = db_why("storing an account failed", detail);
	else {
		m->finx_ids[m->n] = xstrdup(a.finx_id);
		m->ids[m->n++] = id;
	}
	account_row_free(&a);
	return why;
}

static const char *
pull_accounts(PGconn *c, const char *conn_id, const char *user_id,
    char **token, struct acct_map *m, struct finx_error *err, char **detail)
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
	for (i = 0; i < n && why == NULL; i++)
		why = pull_account(c, conn_id, user_id,
		    json_object_array_get_idx(arr, i), m, detail);
	json_object_put(res);
	return why;
}

/* The rows of one finX page to store: mapped, of a known account. */
static json_object *
page_rows(const char *conn_id, json_object *arr, const struct acct_map *m)
{
	size_t i, n = json_object_array_length(arr);
	json_object *rows = json_object_new_array_ext((int)n);

	for (i = 0; i < n; i++) {
		json_object *o = json_object_array_get_idx(arr, i);
		struct txn_row t;
		const char *bad, *acct;

		if (!finxmap_transaction(o, &t, &bad)) {
			log_kv(LOG_WARN, "skipping transaction", "connection_id",
			    conn_id, "reason", bad, NULL);
			continue;
		}
		acct = acct_lookup(m, t.finx_account_id);
		if (acct != NULL && jsonb_safe(t.raw))
			json_object_array_add(rows, store_txn_row(acct, &t, o));
		txn_row_free(&t);
	}
	return rows;
}

/* Fetch and store page number page; *more when a next page may follow. */
static const char *
pull_page(PGconn *c, const char *conn_id, char **token,
    const struct acct_map *m, int page, bool *more, long *count,
    struct finx_error *err, char **detail)
{
	json_object *res = NULL, *arr, *rows;
	char *path = xasprintf("/rest/transactions?include_pending=true"
			       "&count=%d&offset=%d",
	    PAGE, page * PAGE);
	const char *why = NULL;
	size_t stored;
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
	rows = page_rows(conn_id, arr, m);
	stored = json_object_array_length(rows);
	if (stored > 0 && !store_txns_upsert(c, conn_id, rows))
		why = db_why("storing transactions failed", detail);
	else
		*count += (long)stored;
	*more = json_object_array_length(arr) >= PAGE;
	json_object_put(rows);
	json_object_put(res);
	return why;
}

static const char *
pull_transactions(PGconn *c, const char *conn_id, char **token,
    const struct acct_map *m, long *count, struct finx_error *err,
    char **detail)
{
	bool more = true;
	int page;

	for (page = 0; page < MAX_PAGES; page++) {
		const char *why = pull_page(c, conn_id, token, m, page, &more,
		    count, err, detail);

		if (why != NULL || !more)
			return why;
	}
	return "too many transaction pages";
}

/* Run the pull of conn_id inside the open transaction on c; *transport:
 * a failed finX call's transport detail, for the log only. */
static const char *
pull(PGconn *c, const char *conn_id, const char *user_id, long *count,
    char **detail, char **transport)
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
	why = pull_accounts(c, conn_id, user_id, &token, &m, &err, detail);
	if (why == NULL)
		why = pull_transactions(c, conn_id, &token, &m, count, &err,
		    detail);
	/* Pending transactions come as a complete set: drop vanished ones. */
	if (why == NULL && !store_txns_drop_vanished(c, conn_id))
		why = db_why("removing vanished pending transactions failed",
		    detail);
	if (why != NULL && err.message != NULL && *detail == NULL)
		*detail = xstrdup(err.message);
	if (why != NULL) {
		*transport = err.detail; /* ours now */
		err.detail = NULL;
	}
	finx_error_free(&err);
	free_secret(token);
	acct_map_free(&m);
	return why;
}

/* A store step of the pull's transaction failed: log it once, here. */
static void
log_db(const char *msg, const char *conn_id)
{
	log_kv(LOG_ERROR, msg, "connection_id", conn_id, "sqlstate",
	    db_failure_sqlstate(), NULL);
}

/*
 * Record the outcome in the pull's transaction and commit it.  Every
 * finxd process drops this user's cached reads when the commit delivers
 * the notification; this process also brackets the commit itself, so it
 * never serves the old data after it.
 */
static bool
pull_finish(PGconn *c, const struct store_pull *p, const char *why,
    const char *detail, const char *transport)
{
	bool committed;

	if (why == NULL) {
		/* Spread the next pulls: interval plus up to 10% jitter. */
		if (!store_pull_done(c, p, dcfg->sync_interval_s +
			random() % (dcfg->sync_interval_s / 10 + 1)))
			log_db("pull outcome not stored", p->conn_id);
		cache_write_begin(p->user_id);
	} else {
		char *msg = xasprintf("%s%s%s", why, detail ? ": " : "",
		    detail ? detail : "");

		if (!store_pull_failed(c, p->conn_id, msg,
			tokens_backoff_s(p->failures + 1, (unsigned)random()) *
			    6))
			log_db("pull failure not stored", p->conn_id);
		log_kv(LOG_WARN, "pull failed", "connection_id", p->conn_id,
		    "error", msg, "transport", transport, NULL);
		free(msg);
	}
	if (!(committed = store_pull_commit(c)))
		log_db("pull not committed", p->conn_id);
	if (why == NULL)
		cache_write_end(p->user_id);
	return committed;
}

/* The claimed pull p, from its savepoint to its commit and after. */
static void
pull_run(PGconn *c, const struct store_pull *p)
{
	const char *why;
	char *detail = NULL, *transport = NULL, cnt[24];
	long count = 0;

	if (!store_pull_savepoint(c)) {
		log_db("pull not started", p->conn_id);
		store_pull_commit(c); /* rolls back what failed */
		return;
	}
	why = pull(c, p->conn_id, p->user_id, &count, &detail, &transport);
	if (pull_finish(c, p, why, detail, transport) && why == NULL) {
		/*
		 * After the commit, not inside it: the pull holds its pulls row
		 * and must not then wait for the connection's row, which a
		 * reauth callback locks before it touches pulls (deadlock).
		 */
		if (!store_pull_synced(c, p->conn_id))
			log_db("last_sync_at not stored", p->conn_id);
		/* Its accounts are known now: their finX notifications. */
		notify_after_pull(c, p->conn_id);
		snprintf(cnt, sizeof(cnt), "%ld", count);
		log_kv(LOG_INFO, "pulled", "connection_id", p->conn_id,
		    "transactions", cnt, NULL);
	}
	free(detail);
	free(transport);
}

bool
pull_one(PGconn *c)
{
	struct store_pull p;

	switch (store_pull_claim(c, PULLS_PER_DAY, &p)) {
	case SP_NONE:
		return false;
	case SP_DB_ERROR:
		log_db("pull claim failed", NULL);
		return false;
	case SP_CLAIMED:
		break;
	}
	if (!p.active) {
		if (!store_pull_park(c, p.conn_id))
			log_db("parking a pull failed", p.conn_id);
	} else if (!p.attended && p.limited) {
		/* Fifth unattended pull in 24 h: wait for the oldest to age. */
		if (!store_pull_defer(c, p.conn_id))
			log_db("deferring a pull failed", p.conn_id);
	} else
		pull_run(c, &p);
	store_pull_free(&p);
	return true;
}
