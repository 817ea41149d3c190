/*
 * Financial data end to end over finx-sandbox: the pull after connecting
 * (accounts, balances, every transaction with its exact amount text), a
 * re-pull that duplicates nothing, a pending transaction becoming booked
 * in place, a keyset walk with rows arriving between pages, the filters,
 * 404/400 answers, manual syncs (coalescing, concurrency, following,
 * finX's 1020 as our 429), API key scopes and the PSD2 cap of 4
 * unattended pulls a day.
 *
 * Re-pulls are triggered in SQL (pulls.next_pull_at = now()) with
 * attended = true, so they do not count against the cap; only the cap
 * test makes unattended ones.
 */
#include "it_common.h"

#include <pthread.h>

#define NTX 40 /* sandbox --transactions: per account */
#define NPENDING 2 /* the sandbox's newest 2 per account are pending */

static const char *db;
static int f;
static char *k_links, *k_read, *k_tokens, *k_admin, *k_rt;

/* ---- SQL ---- */

static long
txn_count(const char *cid)
{
	return h_sql_long(db,
	    "SELECT count(*) FROM transactions WHERE "
	    "connection_id = $1",
	    (const char *[]){ cid, NULL });
}

/* Make the connection due now (attended: not counted) and wait. */
static bool
repull(const char *cid)
{
	return h_repull(db, cid, 20);
}

/* ---- the sandbox's own view, with the connection's access token ---- */

static struct json_object *
sbx_rest(const char *cid, const char *path)
{
	struct json_object *o = NULL;
	struct h_resp r;
	char *url, *auth, *tok = NULL;
	long st = h_token_get(f, cid, &tok, NULL);

	if (st != 200 || tok == NULL) {
		printf("# no access token (%ld)\n", st);
		free(tok);
		return NULL;
	}
	auth = h_fmt("Authorization: Bearer %s", tok);
	free(tok);
	if (asprintf(&url, "%s%s", h_sandbox_url(), path) < 0)
		h_bail("asprintf");
	h_http("GET", url, (const char *const[]){ auth, NULL }, NULL, 0, &r);
	if (r.status == 200 && h_resp_json(&r) != NULL)
		o = json_object_get(r.json);
	else
		printf("# sandbox GET %s answered %ld\n", path, r.status);
	h_resp_free(&r);
	free(auth);
	free(url);
	return o;
}

static struct json_object *
jarr(struct json_object *o, const char *key)
{
	struct json_object *a;

	if (o == NULL || !json_object_object_get_ex(o, key, &a) ||
	    !json_object_is_type(a, json_type_array))
		return NULL;
	return a;
}

static size_t
alen(struct json_object *a)
{
	return a ? json_object_array_length(a) : 0;
}

/* JSON text of member key ("null" when absent): numbers as sent. */
static const char *
jtext(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, key, &v) || v == NULL)
		return "null";
	if (json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
}

static bool
jbool(struct json_object *o, const char *key, bool *out)
{
	struct json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_boolean))
		return false;
	*out = json_object_get_boolean(v);
	return true;
}

/* ---- walking the listings ---- */

typedef void (*between_fn)(int page, void *arg);

/*
 * Every page of path (which already has a '?').  Returns the array of all
 * transactions (caller puts) or NULL when a page did not answer 200.
 * *pages counts the pages; between runs after each page but the last.
 */
static struct json_object *
walk(const char *path, int *pages, between_fn between, void *arg)
{
	struct json_object *all = json_object_new_array(), *o, *a;
	char *cursor = NULL, *p;
	struct h_resp r;
	size_t i;
	int n = 0;

	for (;;) {
		if (cursor == NULL)
			p = strdup(path);
		else if (asprintf(&p, "%s&cursor=%s", path, cursor) < 0)
			h_bail("asprintf");
		h_api(f, "GET", p, NULL, &r);
		free(p);
		o = h_resp_json(&r);
		a = jarr(o, "transactions");
		if (r.status != 200 || a == NULL) {
			printf("# page %d answered %ld (%s)\n", n, r.status,
			    h_err_code(&r) ? h_err_code(&r) : "-");
			h_resp_free(&r);
			free(cursor);
			json_object_put(all);
			return NULL;
		}
		n++;
		for (i = 0; i < alen(a); i++)
			json_object_array_add(all,
			    json_object_get(json_object_array_get_idx(a, i)));
		free(cursor);
		cursor = h_jstr(o, "next_cursor") ? strdup(h_jstr(o,
							"next_cursor"))
						  : NULL;
		if (cursor != NULL && !h_jnull(o, "next_cursor") &&
		    alen(a) == 0) {
			printf("# an empty page with a next_cursor\n");
		}
		h_resp_free(&r);
		if (cursor == NULL || n > 1000)
			break;
		if (between != NULL)
			between(n, arg);
	}
	free(cursor);
	if (pages != NULL)
		*pages = n;
	return all;
}

/* A set (json object with null members) of member key of every item;
 * *dups counts repeated values. */
static struct json_object *
id_set(struct json_object *arr, const char *key, int *dups)
{
	struct json_object *set = json_object_new_object();
	size_t i;

	if (dups)
		*dups = 0;
	for (i = 0; i < alen(arr); i++) {
		const char *id = h_jstr(json_object_array_get_idx(arr, i), key);

		if (id == NULL)
			continue;
		if (json_object_object_get_ex(set, id, NULL)) {
			if (dups)
				(*dups)++;
			continue;
		}
		json_object_object_add(set, id, NULL);
	}
	return set;
}

/* A set of the first column of a query's rows. */
static struct json_object *
sql_set(const char *q, const char *p1)
{
	const char *params[2] = { p1, NULL };
	PGresult *r = h_sql(db, q, params);
	struct json_object *set = json_object_new_object();
	int i;

	for (i = 0; r && i < PQntuples(r); i++)
		json_object_object_add(set, PQgetvalue(r, i, 0), NULL);
	PQclear(r);
	return set;
}

static bool
set_equal(struct json_object *a, struct json_object *b)
{
	if (json_object_object_length(a) != json_object_object_length(b))
		return false;
	json_object_object_foreach(a, k, v)
	{
		(void)v;
		if (!json_object_object_get_ex(b, k, NULL))
			return false;
	}
	return true;
}

/* Newest first by booking date (ours are to the second, so ties within
 * a second are not checked). */
static bool
sorted_desc(struct json_object *arr)
{
	size_t i;

	for (i = 1; i < alen(arr); i++) {
		const char *da = h_jstr(json_object_array_get_idx(arr, i - 1),
		    "booking_date");
		const char *db_ = h_jstr(json_object_array_get_idx(arr, i),
		    "booking_date");

		if (da == NULL || db_ == NULL || strcmp(da, db_) < 0)
			return false;
	}
	return true;
}

/* ---- connections ---- */

static char *
connect_and_pull(const char *user)
{
	char *cid = h_connect(f, user);

	CHECK(cid != NULL, "%s: connected", user);
	if (cid == NULL)
		h_bail("cannot connect %s", user);
	CHECK(h_wait_pull_after(db, cid, "", 30), "%s: the first pull ran",
	    user);
	return cid;
}

/* ---- 1. the full pull ---- */

static void
test_full_pull(const char *cid, const char *user)
{
	struct json_object *sa, *st, *ours, *set, *accs, *sacc;
	struct h_resp r;
	char path[256];
	size_t i, j;
	long pending = 0, amount_ok = 0, booked_ok = 0, date_ok = 0;
	int dups;

	sa = sbx_rest(cid, "/rest/accounts");
	st = sbx_rest(cid, "/rest/transactions?include_pending=true"
			   "&count=1000");
	sacc = jarr(sa, "accounts");
	CHECK(alen(sacc) == 2 && alen(jarr(st, "transactions")) == 2 * NTX,
	    "the sandbox has 2 accounts and %d transactions (%zu, %zu)",
	    2 * NTX, alen(sacc), alen(jarr(st, "transactions")));

	snprintf(path, sizeof(path), "/v1/users/%s/accounts", user);
	h_api(f, "GET", path, NULL, &r);
	accs = jarr(h_resp_json(&r), "accounts");
	CHECK(r.status == 200 && alen(accs) == 2,
	    "GET accounts: 200 with 2 accounts (%ld, %zu)", r.status,
	    alen(accs));
	for (i = 0; i < alen(sacc); i++) {
		struct json_object *s = json_object_array_get_idx(sacc, i);
		struct json_object *a = NULL, *b = NULL, *sb = NULL;

		for (j = 0; j < alen(accs); j++)
			if (h_streq(h_jstr(json_object_array_get_idx(accs, j),
			                "finx_account_id"),
			        h_jstr(s, "account_id")))
				a = json_object_array_get_idx(accs, j);
		CHECK(a != NULL, "account %s stored", h_jstr(s, "account_id"));
		if (a == NULL)
			continue;
		CHECK(h_streq(jtext(a, "iban"), jtext(s, "iban")) &&
		        h_streq(jtext(a, "bic"), jtext(s, "bic")) &&
		        h_streq(jtext(a, "name"), jtext(s, "name")) &&
		        h_streq(jtext(a, "type"), jtext(s, "type")) &&
		        h_streq(jtext(a, "currency"), jtext(s, "currency")) &&
		        h_streq(jtext(a, "owner"), jtext(s, "owner")) &&
		        h_streq(jtext(a, "access_id"), jtext(s, "access_id")) &&
		        h_streq(jtext(a, "bank_name"), jtext(s, "bank_name")),
		    "account %s: iban, bic, name, type, currency, owner, "
		    "access_id as finX has them",
		    h_jstr(s, "account_id"));
		json_object_object_get_ex(a, "balance", &b);
		json_object_object_get_ex(s, "balance", &sb);
		CHECK(b != NULL &&
		        h_streq(h_jstr(b, "amount"), jtext(sb, "balance")) &&
		        h_streq(h_jstr(b, "currency"), "EUR") &&
		        h_jstr(b, "balance_date") != NULL,
		    "account %s: balance %s EUR exactly (got %s)",
		    h_jstr(s, "account_id"), jtext(sb, "balance"),
		    b ? jtext(b, "amount") : "none");
		CHECK(h_streq(h_jstr(a, "connection_id"), cid) &&
		        h_streq(h_jstr(a, "user_id"), user),
		    "account %s: connection and user", h_jstr(s, "account_id"));
	}
	if (alen(accs) > 0) {
		const char *id = h_jstr(json_object_array_get_idx(accs, 0),
		    "account_id");
		struct h_resp r2;

		snprintf(path, sizeof(path), "/v1/accounts/%s", id ? id : "x");
		h_api(f, "GET", path, NULL, &r2);
		CHECK(r2.status == 200 &&
		        h_streq(h_jstr(h_resp_json(&r2), "account_id"), id) &&
		        json_object_object_get_ex(h_resp_json(&r2), "balance",
		            NULL),
		    "GET /v1/accounts/{id}: 200, the account with its balance");
		h_resp_free(&r2);
	}
	h_resp_free(&r);

	/* every transaction, across the user's accounts */
	snprintf(path, sizeof(path), "/v1/users/%s/transactions?limit=500",
	    user);
	ours = walk(path, NULL, NULL, NULL);
	set = id_set(ours, "finx_transaction_id", &dups);
	CHECK(ours != NULL && alen(ours) == 2 * NTX && dups == 0,
	    "user listing: %d transactions, no duplicate (%zu, %d dups)",
	    2 * NTX, alen(ours), dups);
	CHECK(txn_count(cid) == 2 * NTX, "database holds %d transactions",
	    2 * NTX);
	CHECK(sorted_desc(ours), "user listing newest first");
	for (i = 0; i < alen(jarr(st, "transactions")); i++) {
		struct json_object *s =
		    json_object_array_get_idx(jarr(st, "transactions"), i);
		struct json_object *t = NULL;
		bool sb = true, tb = false;

		for (j = 0; j < alen(ours); j++)
			if (h_streq(h_jstr(json_object_array_get_idx(ours, j),
			                "finx_transaction_id"),
			        h_jstr(s, "transaction_id")))
				t = json_object_array_get_idx(ours, j);
		if (t == NULL)
			continue;
		if (h_streq(h_jstr(t, "amount"), jtext(s, "amount")) &&
		    h_streq(h_jstr(t, "currency"), "EUR"))
			amount_ok++;
		else
			printf("# %s: amount %s, finX %s\n",
			    h_jstr(s, "transaction_id"), jtext(t, "amount"),
			    jtext(s, "amount"));
		jbool(s, "booked", &sb);
		if (jbool(t, "booked", &tb) && tb == sb)
			booked_ok++;
		if (!sb)
			pending += !tb;
		/* both in UTC; ours to the second */
		if (h_jstr(t, "booking_date") && h_jstr(s, "booking_date") &&
		    strncmp(h_jstr(t, "booking_date"),
			h_jstr(s, "booking_date"), 19) == 0)
			date_ok++;
	}
	CHECK(amount_ok == 2 * NTX,
	    "every amount is exactly finX's decimal text with its currency "
	    "(%ld of %d)",
	    amount_ok, 2 * NTX);
	CHECK(booked_ok == 2 * NTX, "every booked flag as finX has it");
	CHECK(pending == 2 * NPENDING, "the %d pending ones are booked=false",
	    2 * NPENDING);
	CHECK(date_ok == 2 * NTX, "every booking date as finX has it");
	CHECK(h_sql_long(db,
	          "SELECT count(*) FROM transactions WHERE "
	          "connection_id = $1 AND raw ? 'categories' AND "
	          "raw ? 'creation_timestamp'",
	          (const char *[]){ cid, NULL }) == 2 * NTX,
	    "the raw finX JSON is kept for every transaction");
	CHECK(h_sql_long(db,
	          "SELECT count(*) FROM transactions WHERE "
	          "connection_id = $1 AND counterparty_name IS NOT NULL "
	          "AND counterparty_iban IS NOT NULL AND purpose IS NOT "
	          "NULL AND type IS NOT NULL AND value_date IS NOT NULL",
	          (const char *[]){ cid, NULL }) == 2 * NTX,
	    "counterparty, purpose, type and value date stored");
	if (alen(ours) > 0) {
		struct json_object *t = json_object_array_get_idx(ours, 0), *cp;

		CHECK(json_object_object_get_ex(t, "counterparty", &cp) &&
		        h_jstr(cp, "name") && h_jstr(cp, "iban") &&
		        h_jstr(t, "purpose") && h_jstr(t, "value_date") &&
		        h_jstr(t, "account_id") && h_jstr(t, "transaction_id"),
		    "a transaction shows counterparty, purpose, dates, ids");
	}
	json_object_put(set);
	json_object_put(ours);
	json_object_put(sa);
	json_object_put(st);
}

/* ---- the filters ---- */

static long
count_where(struct json_object *all, const char *from, const char *to,
    int booked)
{
	size_t i;
	long n = 0;

	for (i = 0; i < alen(all); i++) {
		struct json_object *t = json_object_array_get_idx(all, i);
		const char *d = h_jstr(t, "booking_date");
		bool b = false;

		jbool(t, "booked", &b);
		if (d == NULL)
			continue;
		if (from && strncmp(d, from, strlen(from)) < 0)
			continue;
		if (to && strncmp(d, to, strlen(to)) > 0)
			continue;
		if (booked >= 0 && b != (booked == 1))
			continue;
		n++;
	}
	return n;
}

static long
walk_count(const char *acct, const char *query)
{
	struct json_object *all;
	char path[512];
	long n;

	snprintf(path, sizeof(path), "/v1/accounts/%s/transactions?%s", acct,
	    query);
	all = walk(path, NULL, NULL, NULL);
	n = all ? (long)alen(all) : -1;
	json_object_put(all);
	return n;
}

static void
test_filters(const char *acct)
{
	struct json_object *all;
	char path[256], q[256], d[11], ts[21];
	const char *mid;
	long want, got;

	snprintf(path, sizeof(path), "/v1/accounts/%s/transactions?limit=500",
	    acct);
	all = walk(path, NULL, NULL, NULL);
	CHECK(all != NULL && alen(all) == NTX,
	    "account listing: %d transactions", NTX);
	if (all == NULL || alen(all) < 10) {
		json_object_put(all);
		return;
	}
	mid = h_jstr(json_object_array_get_idx(all, alen(all) / 2),
	    "booking_date");
	snprintf(d, sizeof(d), "%.10s", mid ? mid : "2000-01-01");
	snprintf(ts, sizeof(ts), "%.20s", mid ? mid : "2000-01-01T00:00:00Z");

	snprintf(q, sizeof(q), "from=%s&limit=3", d);
	want = count_where(all, d, NULL, -1);
	got = walk_count(acct, q);
	CHECK(got == want && want > 0 && want < NTX,
	    "from=%s: %ld rows (want %ld)", d, got, want);
	snprintf(q, sizeof(q), "to=%s&limit=4", d);
	want = count_where(all, NULL, d, -1);
	got = walk_count(acct, q);
	CHECK(got == want && want > 0 && want < NTX,
	    "to=%s (inclusive): %ld rows (want %ld)", d, got, want);
	snprintf(q, sizeof(q), "from=%s&to=%s", d, d);
	want = count_where(all, d, d, -1);
	got = walk_count(acct, q);
	CHECK(got == want && want >= 1, "from=to=%s: %ld rows (want %ld)", d,
	    got, want);
	snprintf(q, sizeof(q), "from=%s", ts);
	want = count_where(all, ts, NULL, -1);
	got = walk_count(acct, q);
	CHECK(got == want && want > 0, "from=%s: %ld rows (want %ld)", ts, got,
	    want);
	got = walk_count(acct, "booked=false");
	CHECK(got == NPENDING, "booked=false: the %d pending (got %ld)",
	    NPENDING, got);
	got = walk_count(acct, "booked=true&limit=9");
	CHECK(got == NTX - NPENDING, "booked=true: %d (got %ld)",
	    NTX - NPENDING, got);
	snprintf(q, sizeof(q), "from=%s&booked=true&limit=2", d);
	want = count_where(all, d, NULL, 1);
	got = walk_count(acct, q);
	CHECK(got == want, "from and booked together: %ld (want %ld)", got,
	    want);
	got = walk_count(acct, "from=2999-01-01");
	CHECK(got == 0, "from in the future: none (got %ld)", got);
	got = walk_count(acct, "to=1999-12-31");
	CHECK(got == 0, "to in the past: none (got %ld)", got);
	json_object_put(all);
}

/* ---- 404 and 400 ---- */

static void
expect_400(const char *path, const char *param)
{
	struct h_resp r;
	struct json_object *e = NULL;
	const char *msg = NULL;

	h_api(f, "GET", path, NULL, &r);
	if (h_resp_json(&r) &&
	    json_object_object_get_ex(r.json, "error", &e))
		msg = h_jstr(e, "message");
	CHECK(r.status == 400 && msg != NULL && strstr(msg, param) != NULL,
	    "%s: 400 naming %s (got %ld, \"%s\")", path, param, r.status,
	    msg ? msg : "-");
	h_resp_free(&r);
}

static void
expect_status(const char *path, long want)
{
	struct h_resp r;

	h_api(f, "GET", path, NULL, &r);
	CHECK(r.status == want && (want == 200 || h_err_code(&r) != NULL),
	    "GET %s: %ld (got %ld)", path, want, r.status);
	h_resp_free(&r);
}

static void
test_errors(const char *acct)
{
	static const char *const bad[][2] = {
		{ "limit=0", "limit" },
		{ "limit=501", "limit" },
		{ "limit=abc", "limit" },
		{ "limit=-1", "limit" },
		{ "limit=", "limit" },
		{ "limit=10x", "limit" },
		{ "cursor=garbage", "cursor" },
		{ "cursor=", "cursor" },
		{ "cursor=MTox", "cursor" },
		{ "from=2026-02-30", "from" },
		{ "from=2026-13-01", "from" },
		{ "from=yesterday", "from" },
		{ "from=2026-1-1", "from" },
		{ "to=2026-02-30", "to" },
		{ "to=2026-04-31", "to" },
		/* refused by finxd, never by PostgreSQL (issue 13, finding 4) */
		{ "from=2026-02-30T00:00:00Z", "from" },
		{ "from=0000-01-01", "from" },
		{ "from=0000-01-01T00:00:00Z", "from" },
		{ "to=2026-01-01T00:00:00%2B99:99", "to" },
		{ "to=2026-01-01T00:00:00-16:00", "to" },
		{ "to=2026-01-01T25:00:00Z", "to" },
		{ "booked=maybe", "booked" },
		{ "booked=1", "booked" },
		{ "booked=TRUE", "booked" },
	};
	char path[512];
	size_t i;

	expect_status("/v1/accounts/00000000-0000-4000-8000-000000000000", 404);
	expect_status("/v1/accounts/00000000-0000-4000-8000-000000000000/"
		      "transactions",
	    404);
	expect_status("/v1/accounts/not-a-uuid", 404);
	expect_status("/v1/accounts/not-a-uuid/transactions", 404);
	expect_status("/v1/syncs/00000000-0000-4000-8000-000000000000", 404);
	expect_status("/v1/syncs/nope", 404);
	expect_status("/v1/users/nobody-here/accounts", 200);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(path, sizeof(path), "/v1/accounts/%s/transactions?%s",
		    acct, bad[i][0]);
		expect_400(path, bad[i][1]);
	}
	expect_400("/v1/users/u-data/transactions?limit=0", "limit");
	expect_400("/v1/users/u-data/transactions?booked=maybe", "booked");
	/* valid edges */
	snprintf(path, sizeof(path), "/v1/accounts/%s/transactions?limit=500",
	    acct);
	expect_status(path, 200);
	snprintf(path, sizeof(path), "/v1/accounts/%s/transactions?limit=1",
	    acct);
	expect_status(path, 200);
	snprintf(path, sizeof(path),
	    "/v1/accounts/%s/transactions?from=2024-02-29&to=2030-01-01", acct);
	expect_status(path, 200);
}

/* ---- a re-pull, pending becoming booked ---- */

static char *
id_list(const char *cid)
{
	return h_sql_value(db,
	    "SELECT string_agg(id::text || '=' || finx_transaction_id "
	    "|| '=' || amount::text, ',' ORDER BY id) FROM transactions "
	    "WHERE connection_id = $1",
	    (const char *[]){ cid, NULL });
}

static void
test_repull(const char *cid)
{
	char *before = id_list(cid), *after;
	long nb = h_sql_long(db,
	    "SELECT count(*) FROM balances b JOIN accounts a ON "
	    "a.id = b.account_id WHERE a.connection_id = $1",
	    (const char *[]){ cid, NULL });
	long na = h_sql_long(db,
	    "SELECT count(*) FROM accounts WHERE "
	    "connection_id = $1",
	    (const char *[]){ cid, NULL });

	CHECK(repull(cid), "a re-pull ran");
	after = id_list(cid);
	CHECK(before && after && strcmp(before, after) == 0,
	    "re-pull: the same rows with the same ids, no duplicate");
	CHECK(txn_count(cid) == 2 * NTX, "re-pull: still %d transactions",
	    2 * NTX);
	CHECK(h_sql_long(db,
	          "SELECT count(*) FROM accounts WHERE connection_id = $1",
	          (const char *[]){ cid, NULL }) == na &&
	        na == 2,
	    "re-pull: still 2 accounts");
	CHECK(h_sql_long(db,
	          "SELECT count(*) FROM balances b JOIN accounts a ON "
	          "a.id = b.account_id WHERE a.connection_id = $1",
	          (const char *[]){ cid, NULL }) == nb,
	    "re-pull: an unchanged balance adds no history row");
	free(before);
	free(after);
}

/*
 * finX lists one transaction twice in a page: the pull still succeeds (one
 * upsert statement per page may not touch a row twice), stores it once
 * and keeps the later entry, as a row-by-row upsert would.
 */
static void
test_repeated_in_page(const char *cid)
{
	static const char *const repeated =
	    "SELECT count(*) FROM transactions WHERE connection_id = $1 AND "
	    "purpose = 'repeated in page'";

	CHECK(sbx_ok(h_sbx_post("/_sandbox/config",
		  "{\"repeat_transaction\":true}")),
	    "sandbox lists a transaction twice in each page");
	CHECK(repull(cid), "a pull with a transaction twice in its page ran");
	CHECK(txn_count(cid) == 2 * NTX, "still %d transactions", 2 * NTX);
	CHECK(h_sql_long(db, repeated, (const char *[]){ cid, NULL }) == 1,
	    "the later of the two entries was stored");
	CHECK(sbx_ok(h_sbx_post("/_sandbox/config",
		  "{\"repeat_transaction\":false}")),
	    "sandbox back to one entry each");
	CHECK(repull(cid) &&
	        h_sql_long(db, repeated, (const char *[]){ cid, NULL }) == 0,
	    "the next pull stores the entry as finX now lists it");
}

static void
test_pending_booked(const char *cid, const char *user)
{
	char body[256], *pend, *after, path[256];
	long nb, nb2;
	struct json_object *sa;
	struct h_resp r;

	pend = h_sql_value(db,
	    "SELECT string_agg(id::text, ',' ORDER BY id) FROM "
	    "transactions WHERE connection_id = $1 AND NOT booked",
	    (const char *[]){ cid, NULL });
	CHECK(pend != NULL &&
	        h_sql_long(db,
	            "SELECT count(*) FROM transactions "
	            "WHERE connection_id = $1 AND NOT "
	            "booked",
	            (const char *[]){ cid, NULL }) == 2 * NPENDING,
	    "%d pending transactions before", 2 * NPENDING);
	nb = h_sql_long(db,
	    "SELECT count(*) FROM balances b JOIN accounts a ON "
	    "a.id = b.account_id WHERE a.connection_id = $1",
	    (const char *[]){ cid, NULL });
	snprintf(body, sizeof(body),
	    "{\"user_id\":\"%s\",\"add\":0,\"book_pending\":true}", user);
	CHECK(sbx_ok(h_sbx_post("/_sandbox/transactions", body)),
	    "sandbox books the pending ones");
	CHECK(repull(cid), "re-pull after booking");
	after = h_sql_value(db,
	    "SELECT string_agg(id::text, ',' ORDER BY id) FROM "
	    "transactions WHERE connection_id = $1 AND id = ANY "
	    "(string_to_array($2, ',')::bigint[]) AND booked",
	    (const char *[]){ cid, pend ? pend : "", NULL });
	CHECK(pend && after && strcmp(pend, after) == 0,
	    "the same rows (same transaction_id) are now booked");
	CHECK(txn_count(cid) == 2 * NTX &&
	        h_sql_long(db,
	            "SELECT count(*) FROM transactions WHERE "
	            "connection_id = $1 AND NOT booked",
	            (const char *[]){ cid, NULL }) == 0,
	    "no duplicate and nothing pending left");
	if (pend != NULL) {
		char first[32];
		struct json_object *all;
		size_t i;
		bool found = false, b = false;

		snprintf(first, sizeof(first), "%.*s", (int)strcspn(pend, ","),
		    pend);
		snprintf(path, sizeof(path), "/v1/users/%s/transactions?"
					     "booked=true&limit=500",
		    user);
		all = walk(path, NULL, NULL, NULL);
		for (i = 0; i < alen(all); i++) {
			struct json_object *t = json_object_array_get_idx(all,
			    i);

			if (h_streq(h_jstr(t, "transaction_id"), first)) {
				found = true;
				jbool(t, "booked", &b);
			}
		}
		CHECK(found && b, "API: transaction %s booked=true", first);
		json_object_put(all);
	}
	nb2 = h_sql_long(db,
	    "SELECT count(*) FROM balances b JOIN accounts a ON "
	    "a.id = b.account_id WHERE a.connection_id = $1",
	    (const char *[]){ cid, NULL });
	CHECK(nb2 > nb, "the changed balances add history rows (%ld -> %ld)",
	    nb, nb2);
	sa = sbx_rest(cid, "/rest/accounts");
	snprintf(path, sizeof(path), "/v1/users/%s/accounts", user);
	h_api(f, "GET", path, NULL, &r);
	{
		struct json_object *accs = jarr(h_resp_json(&r), "accounts");
		size_t i, j, ok = 0;

		for (i = 0; i < alen(jarr(sa, "accounts")); i++) {
			struct json_object *s =
			    json_object_array_get_idx(jarr(sa, "accounts"), i);
			struct json_object *sb = NULL, *b = NULL;

			json_object_object_get_ex(s, "balance", &sb);
			for (j = 0; j < alen(accs); j++) {
				struct json_object *a =
				    json_object_array_get_idx(accs, j);

				if (h_streq(h_jstr(a, "finx_account_id"),
				        h_jstr(s, "account_id")) &&
				    json_object_object_get_ex(a, "balance",
				        &b) &&
				    h_streq(h_jstr(b, "amount"),
				        jtext(sb, "balance")))
					ok++;
			}
		}
		CHECK(ok == 2, "the latest balances are served (%zu of 2)", ok);
	}
	h_resp_free(&r);
	json_object_put(sa);
	free(pend);
	free(after);
}

/* ---- the walk with inserts between pages ---- */

struct ins {
	const char *cid, *user;
	long added;
	bool ok;
};

static void
insert_between(int page, void *arg)
{
	struct ins *in = arg;
	char body[256];
	long before = txn_count(in->cid);

	(void)page;
	snprintf(body, sizeof(body), "{\"user_id\":\"%s\",\"add\":1}",
	    in->user);
	if (!sbx_ok(h_sbx_post("/_sandbox/transactions", body)) ||
	    !repull(in->cid) || txn_count(in->cid) != before + 2)
		in->ok = false;
	else
		in->added++;
}

static void
test_walk(const char *cid, const char *user, const char *acct)
{
	struct json_object *start, *got, *set, *fresh, *fset, *now;
	struct ins in = { cid, user, 0, true };
	char path[256];
	int pages = 0, dups = 0;

	start = sql_set("SELECT id::text FROM transactions WHERE account_id = "
			"$1::uuid",
	    acct);
	snprintf(path, sizeof(path), "/v1/accounts/%s/transactions?limit=7",
	    acct);
	got = walk(path, &pages, insert_between, &in);
	set = id_set(got, "transaction_id", &dups);
	CHECK(got != NULL && pages == (NTX + 6) / 7,
	    "walked %d pages of 7 (want %d)", pages, (NTX + 6) / 7);
	CHECK(in.ok && in.added == pages - 1,
	    "a new transaction arrived between every two pages (%ld)",
	    in.added);
	CHECK(dups == 0, "no transaction repeated (%d)", dups);
	CHECK(set_equal(set, start),
	    "the pages are exactly the %d transactions present at the "
	    "start (got %d)",
	    json_object_object_length(start), json_object_object_length(set));
	CHECK(sorted_desc(got), "pages in keyset order, newest first");
	fresh = walk(path, NULL, NULL, NULL);
	fset = id_set(fresh, "transaction_id", &dups);
	now = sql_set("SELECT id::text FROM transactions WHERE account_id = "
		      "$1::uuid",
	    acct);
	CHECK(dups == 0 && set_equal(fset, now) &&
	        json_object_object_length(fset) ==
	            json_object_object_length(start) + (int)in.added,
	    "a fresh walk sees the new ones too (%d = %d + %ld)",
	    json_object_object_length(fset), json_object_object_length(start),
	    in.added);
	/* a cursor stays valid: the first page's cursor, asked again */
	json_object_put(start);
	json_object_put(got);
	json_object_put(set);
	json_object_put(fresh);
	json_object_put(fset);
	json_object_put(now);
}

/* ---- manual sync ---- */

static long
post_sync(const char *key, const char *cid, char **sync_id, char **status)
{
	struct h_resp r;
	char path[256];
	long st;

	snprintf(path, sizeof(path), "/v1/connections/%s/sync", cid);
	st = key ? h_api_key_call(f, key, "POST", path, NULL, &r)
		 : h_api(f, "POST", path, NULL, &r);
	if (sync_id)
		*sync_id = h_dup(h_jstr(h_resp_json(&r), "sync_id"));
	if (status)
		*status = h_dup(h_jstr(h_resp_json(&r), "status"));
	h_resp_free(&r);
	return st;
}

struct sync_follow {
	char *path, *st;
	struct json_object **last;
};

static bool
sync_ended(void *arg)
{
	struct sync_follow *w = arg;
	struct h_resp r;
	bool end;

	free(w->st);
	w->st = NULL;
	if (h_api(f, "GET", w->path, NULL, &r) == 200)
		w->st = h_dup(h_jstr(h_resp_json(&r), "status"));
	end = h_streq(w->st, "completed") || h_streq(w->st, "failed");
	if (end && w->last != NULL)
		*w->last = json_object_get(r.json);
	h_resp_free(&r);
	return end;
}

/* Follow GET /v1/syncs/{id} until it ends; the final status (malloc'd). */
static char *
follow_sync(const char *sid, struct json_object **last)
{
	struct sync_follow w = { h_fmt("/v1/syncs/%s", sid), NULL, last };

	h_wait_every(sync_ended, &w, 20000, 200);
	free(w.path);
	return w.st;
}

struct racer {
	const char *cid;
	pthread_barrier_t *bar;
	long status;
	char *sync_id;
};

static void *
race(void *arg)
{
	struct racer *rc = arg;

	pthread_barrier_wait(rc->bar);
	rc->status = post_sync(NULL, rc->cid, &rc->sync_id, NULL);
	return NULL;
}

static char *
conn_last_sync(const char *cid)
{
	struct json_object *o = h_conn_get(f, cid);
	char *v = h_dup(h_jstr(o, "last_sync_at"));

	json_object_put(o);
	return v;
}

static void
test_sync(const char *cid, const char *user)
{
	char *s1 = NULL, *s2 = NULL, *st = NULL, *before, *ls0, *ls1, body[256];
	struct json_object *last = NULL;
	struct racer rc[5];
	pthread_t th[5];
	pthread_barrier_t bar;
	long n0, n1, st1, st2;
	int i, same = 0, ok202 = 0;

	n0 = h_sbx_stat("syncs_created");
	ls0 = conn_last_sync(cid);
	before = h_last_pull(db, cid);
	/* new data at finX that only a pull after the sync brings */
	snprintf(body, sizeof(body), "{\"user_id\":\"%s\",\"add\":2}", user);
	h_sbx_post("/_sandbox/transactions", body);
	st1 = post_sync(NULL, cid, &s1, &st);
	CHECK(st1 == 202 && s1 != NULL, "POST sync: 202 with a sync_id (%ld)",
	    st1);
	CHECK(h_streq(st, "queued") || h_streq(st, "running"),
	    "a new sync is queued (%s)", st ? st : "-");
	st2 = post_sync(NULL, cid, &s2, NULL);
	CHECK(st2 == 202 && h_streq(s1, s2),
	    "a second POST while it runs: the same sync_id (%ld)", st2);
	n1 = h_sbx_stat("syncs_created");
	CHECK(n1 == n0 + 1, "finX saw one sync (%ld)", n1 - n0);
	free(st);
	st = s1 ? follow_sync(s1, &last) : NULL;
	CHECK(h_streq(st, "completed"),
	    "GET /v1/syncs/{id} follows it to "
	    "completed (%s)",
	    st ? st : "-");
	CHECK(last && h_jstr(last, "started_at") && h_jstr(last, "ended_at") &&
	        h_jstr(last, "created_at") &&
	        h_streq(h_jstr(last, "connection_id"), cid),
	    "the sync shows created, started, ended and its connection");
	json_object_put(last);
	CHECK(h_wait_pull_after(db, cid, before, 20),
	    "a pull follows the completed sync");
	CHECK(txn_count(cid) >= 2 * NTX + 4,
	    "the sync's new transactions are stored");
	ls1 = conn_last_sync(cid);
	CHECK(ls1 != NULL && (ls0 == NULL || strcmp(ls1, ls0) >= 0),
	    "the connection's last_sync_at is set and moved (%s -> %s)",
	    ls0 ? ls0 : "null", ls1 ? ls1 : "null");
	free(ls0);
	free(ls1);
	free(before);
	free(st);
	free(s1);
	free(s2);

	/* five at once: one finX sync */
	n0 = h_sbx_stat("syncs_created");
	pthread_barrier_init(&bar, NULL, 5);
	for (i = 0; i < 5; i++) {
		rc[i] = (struct racer){ cid, &bar, 0, NULL };
		pthread_create(&th[i], NULL, race, &rc[i]);
	}
	for (i = 0; i < 5; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&bar);
	for (i = 0; i < 5; i++) {
		ok202 += rc[i].status == 202;
		same += h_streq(rc[i].sync_id, rc[0].sync_id);
	}
	CHECK(ok202 == 5 && same == 5,
	    "5 concurrent POSTs: all 202 with one sync_id (%d, %d)", ok202,
	    same);
	CHECK(h_sbx_stat("syncs_created") == n0 + 1,
	    "finX saw exactly one sync (%ld)",
	    h_sbx_stat("syncs_created") - n0);
	st = rc[0].sync_id ? follow_sync(rc[0].sync_id, NULL) : NULL;
	CHECK(h_streq(st, "completed"), "that sync completed");
	free(st);
	for (i = 0; i < 5; i++)
		free(rc[i].sync_id);

	/* the third and fourth of the day */
	for (i = 3; i <= 4; i++) {
		s1 = NULL;
		st1 = post_sync(NULL, cid, &s1, NULL);
		st = s1 ? follow_sync(s1, NULL) : NULL;
		CHECK(st1 == 202 && h_streq(st, "completed"),
		    "sync %d of the day: 202, completed", i);
		free(st);
		free(s1);
	}
	/* the fifth: finX 1020 becomes our 429 with Retry-After */
	{
		struct h_resp r;
		char path[256];
		const char *ra;

		snprintf(path, sizeof(path), "/v1/connections/%s/sync", cid);
		h_api(f, "POST", path, NULL, &r);
		ra = h_resp_header(&r, "Retry-After");
		CHECK(r.status == 429 &&
		        h_streq(h_err_code(&r), "too_many_syncs"),
		    "the 5th sync in 24 h: 429 too_many_syncs (%ld, %s)",
		    r.status, h_err_code(&r) ? h_err_code(&r) : "-");
		CHECK(ra != NULL && atol(ra) > 0 &&
		        strspn(ra, "0123456789") == strlen(ra),
		    "with Retry-After in seconds (%s)", ra ? ra : "none");
		h_resp_free(&r);
	}
	{
		char path[256];
		struct h_resp r;

		snprintf(path, sizeof(path),
		    "/v1/connections/00000000-0000-4000-8000-000000000000/"
		    "sync");
		CHECK(h_api(f, "POST", path, NULL, &r) == 404,
		    "sync of an unknown connection: 404");
		h_resp_free(&r);
	}
}

/*
 * Seven syncs of one connection at once on a pool of one connection,
 * and a POST /v1/links beside them.  A sync used to hold a pooled
 * connection and the connection's advisory lock while it asked the pool
 * for a second one (to read the access token), and the other syncs held
 * or waited for the rest of the pool behind the lock: all stalled for
 * the pool's 5 s timeout, the lock holder answered 409 "no valid access
 * token (db_error)", the others and the links request 503.
 */
struct pool_racer {
	pthread_barrier_t *bar;
	const char *path, *body;
	long status, ms;
	char *code;
};

static void *
pool_race(void *arg)
{
	struct pool_racer *p = arg;
	struct h_resp r;

	pthread_barrier_wait(p->bar);
	p->status = h_api(f, "POST", p->path, p->body, &r);
	p->ms = r.ms;
	p->code = h_dup(h_err_code(&r));
	h_resp_free(&r);
	return NULL;
}

/* One racer's answer is one SPEC gives a sync: 202, or finX's limit. */
static bool
sync_answer_ok(const struct pool_racer *p)
{
	return p->status == 202 ||
	    (p->status == 429 && h_streq(p->code, "too_many_syncs"));
}

static void
test_sync_small_pool(void)
{
	struct pool_racer rc[8];
	pthread_t th[8];
	pthread_barrier_t bar;
	char *cid, path[256];
	const char *links = "{\"user_id\":\"u-pool-link\",\"return_url\":"
			    "\"" H_RETURN_URL "\"}";
	int i, ok = 0, f0 = f;
	long worst = 0, n0;

	h_env_set("FINXD_DB_POOL_SIZE", "1");
	f = h_finxd_start();
	h_env_set("FINXD_DB_POOL_SIZE", NULL);
	cid = connect_and_pull("u-pool");
	n0 = h_sbx_stat("syncs_created");
	snprintf(path, sizeof(path), "/v1/connections/%s/sync", cid);
	pthread_barrier_init(&bar, NULL, 8);
	for (i = 0; i < 8; i++) {
		rc[i] = (struct pool_racer){ &bar, i < 7 ? path : "/v1/links",
			i < 7 ? NULL : links, 0, 0, NULL };
		pthread_create(&th[i], NULL, pool_race, &rc[i]);
	}
	for (i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&bar);
	for (i = 0; i < 7; i++) {
		ok += sync_answer_ok(&rc[i]);
		worst = rc[i].ms > worst ? rc[i].ms : worst;
		if (!sync_answer_ok(&rc[i]))
			printf("# sync %d: %ld %s after %ld ms\n", i,
			    rc[i].status, rc[i].code ? rc[i].code : "-",
			    rc[i].ms);
	}
	CHECK(ok == 7, "pool of 1: 7 concurrent syncs answered 202 or 429 "
		       "too_many_syncs (%d)", ok);
	CHECK(worst < 2500, "pool of 1: the slowest sync took %ld ms", worst);
	CHECK(h_sbx_stat("syncs_created") == n0 + 1,
	    "pool of 1: finX saw one sync (%ld)",
	    h_sbx_stat("syncs_created") - n0);
	CHECK(rc[7].status == 201 && rc[7].ms < 1000,
	    "pool of 1: POST /v1/links beside them: 201 in %ld ms (%ld)",
	    rc[7].ms, rc[7].status);
	for (i = 0; i < 8; i++)
		free(rc[i].code);
	free(cid);
	f = f0;
}

/* ---- scopes ---- */

enum { S_LINKS = 1, S_READ = 2, S_TOKENS = 4, S_ADMIN = 8 };

static void
scope_call(const char *method, const char *path, const char *body,
    int allowed)
{
	static const struct {
		const char *name;
		int scope;
		char **key;
	} keys[] = {
		{ "links", S_LINKS, &k_links },
		{ "read", S_READ, &k_read },
		{ "tokens", S_TOKENS, &k_tokens },
		{ "admin", S_ADMIN, &k_admin },
		{ "read+tokens", S_READ | S_TOKENS, &k_rt },
	};
	size_t i;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		struct h_resp r;
		bool may = (keys[i].scope & allowed) != 0;

		h_api_key_call(f, *keys[i].key, method, path, body, &r);
		if (may)
			CHECK(r.status / 100 == 2,
			    "key %s: %s %s allowed (got %ld %s)", keys[i].name,
			    method, path, r.status,
			    h_err_code(&r) ? h_err_code(&r) : "");
		else
			CHECK(r.status == 403 &&
			        h_streq(h_err_code(&r), "forbidden"),
			    "key %s: %s %s 403 (got %ld)", keys[i].name, method,
			    path, r.status);
		h_resp_free(&r);
	}
}

static void
test_scopes(const char *cid, const char *user)
{
	char p[256], *acct, *link = NULL, *sid = NULL, body[256];
	struct h_resp r;
	long n0 = h_sbx_stat("syncs_created");

	acct = h_sql_value(db,
	    "SELECT id FROM accounts WHERE connection_id = $1 LIMIT 1",
	    (const char *[]){ cid, NULL });
	h_link_create(f, user, H_RETURN_URL, &r);
	link = h_dup(h_jstr(h_resp_json(&r), "link_id"));
	h_resp_free(&r);
	if (acct == NULL || link == NULL)
		h_bail("scopes: no account or link");

	snprintf(body, sizeof(body),
	    "{\"user_id\":\"%s\",\"return_url\":\"%s\"}", user, H_RETURN_URL);
	scope_call("POST", "/v1/links", body, S_LINKS);
	snprintf(p, sizeof(p), "/v1/links/%s", link);
	scope_call("GET", p, NULL, S_LINKS | S_READ);
	snprintf(p, sizeof(p), "/v1/users/%s/connections", user);
	scope_call("GET", p, NULL, S_READ);
	snprintf(p, sizeof(p), "/v1/connections/%s", cid);
	scope_call("GET", p, NULL, S_READ);
	snprintf(p, sizeof(p), "/v1/connections/%s/token", cid);
	scope_call("GET", p, NULL, S_TOKENS);
	snprintf(p, sizeof(p), "/v1/connections/%s/refresh", cid);
	scope_call("POST", p, NULL, S_ADMIN);
	/* reauth puts a new grant under this connection's user: admin only
	 * (a links key would hand its own bank login to the victim) */
	snprintf(p, sizeof(p), "/v1/connections/%s/reauth", cid);
	snprintf(body, sizeof(body), "{\"return_url\":\"%s\"}",
	    H_RETURN_URL);
	scope_call("POST", p, body, S_ADMIN);
	snprintf(p, sizeof(p), "/v1/users/%s/accounts", user);
	scope_call("GET", p, NULL, S_READ);
	snprintf(p, sizeof(p), "/v1/accounts/%s", acct);
	scope_call("GET", p, NULL, S_READ);
	snprintf(p, sizeof(p), "/v1/accounts/%s/transactions?limit=5", acct);
	scope_call("GET", p, NULL, S_READ);
	snprintf(p, sizeof(p), "/v1/users/%s/transactions?limit=5", user);
	scope_call("GET", p, NULL, S_READ);
	/* sync: admin starts it (the others' 403 must not start one) */
	snprintf(p, sizeof(p), "/v1/connections/%s/sync", cid);
	scope_call("POST", p, NULL, S_ADMIN);
	CHECK(h_sbx_stat("syncs_created") == n0 + 1,
	    "only the admin key's sync reached finX (%ld)",
	    h_sbx_stat("syncs_created") - n0);
	post_sync(k_admin, cid, &sid, NULL);
	if (sid != NULL) {
		snprintf(p, sizeof(p), "/v1/syncs/%s", sid);
		scope_call("GET", p, NULL, S_READ | S_ADMIN);
		free(follow_sync(sid, NULL));
	}
	/* no key, a wrong key */
	snprintf(p, sizeof(p), "/v1/users/%s/accounts", user);
	CHECK(h_api_key_call(f, "not-a-configured-key-0123456789", "GET", p,
		  NULL, &r) == 401,
	    "an unknown key: 401");
	h_resp_free(&r);
	/* the unscoped key may do everything, delete last */
	snprintf(p, sizeof(p), "/v1/connections/%s", cid);
	scope_call("DELETE", p, NULL, S_ADMIN);
	free(acct);
	free(link);
	free(sid);
}

/* ---- PSD2: at most 4 unattended pulls in 24 h ---- */

static void
test_psd2(const char *cid, const char *user)
{
	char body[256], *before, *sid = NULL, *st;
	long n0, reqs0;

	snprintf(body, sizeof(body), "{\"user_id\":\"%s\",\"add\":1}", user);

	/* 4 in the last 24 h: no pull, next_pull_at = oldest + 24 h */
	h_sbx_post("/_sandbox/transactions", body);
	n0 = txn_count(cid);
	before = h_last_pull(db, cid);
	reqs0 = h_sbx_count("/rest/accounts");
	CHECK(h_sql_do(db,
	          "UPDATE pulls SET recent = ARRAY[now() - interval "
	          "'1 hour', now() - interval '2 hours', now() - interval "
	          "'3 hours', now() - interval '20 hours'], next_pull_at = "
	          "now(), attended = false WHERE connection_id = $1",
	          (const char *[]){ cid, NULL }),
	    "4 unattended pulls within 24 h recorded");
	h_sleep_ms(4000);
	{
		char *now = h_last_pull(db, cid);

		CHECK(strcmp(now, before) == 0 && txn_count(cid) == n0 &&
		        h_sbx_count("/rest/accounts") == reqs0,
		    "a 5th unattended pull does not happen (finX not asked)");
		free(now);
	}
	CHECK(h_sql_true(db,
	          "SELECT next_pull_at = (SELECT min(t) FROM unnest("
	          "recent) t) + interval '24 hours' AND next_pull_at > "
	          "now() + interval '3 hours' FROM pulls WHERE "
	          "connection_id = $1",
	          (const char *[]){ cid, NULL }),
	    "next_pull_at moved to the oldest pull + 24 h");

	/* an attended pull (manual sync completed) still runs */
	free(before);
	before = h_last_pull(db, cid);
	CHECK(post_sync(NULL, cid, &sid, NULL) == 202 && sid != NULL,
	    "a manual sync while capped: 202");
	st = sid ? follow_sync(sid, NULL) : NULL;
	CHECK(h_streq(st, "completed"), "it completes");
	CHECK(h_wait_pull_after(db, cid, before, 20) &&
	        txn_count(cid) == n0 + 2,
	    "the attended pull after it runs and stores the new rows");
	CHECK(h_sql_long(db,
	          "SELECT cardinality(recent) FROM pulls WHERE "
	          "connection_id = $1",
	          (const char *[]){ cid, NULL }) == 4 &&
	        !h_sql_true(db,
	            "SELECT attended FROM pulls WHERE connection_id = $1",
	            (const char *[]){ cid, NULL }),
	    "the attended pull is not counted (still 4), attended reset");
	free(st);
	free(sid);
	free(before);

	/* 3 in the window: the 4th unattended pull runs and is counted */
	h_sbx_post("/_sandbox/transactions", body);
	n0 = txn_count(cid);
	before = h_last_pull(db, cid);
	h_sql_do(db,
	    "UPDATE pulls SET recent = ARRAY[now() - interval '1 hour', "
	    "now() - interval '2 hours', now() - interval '30 hours'], "
	    "next_pull_at = now(), attended = false WHERE connection_id = "
	    "$1",
	    (const char *[]){ cid, NULL });
	CHECK(h_wait_pull_after(db, cid, before, 20) &&
	        txn_count(cid) == n0 + 2,
	    "with 3 in 24 h an unattended pull runs");
	CHECK(h_sql_long(db,
	          "SELECT cardinality(recent) FROM pulls WHERE "
	          "connection_id = $1",
	          (const char *[]){ cid, NULL }) == 3,
	    "it is counted; the one older than 24 h is dropped (3 left)");
	CHECK(h_sql_true(db,
	          "SELECT next_pull_at > now() + interval '50 minutes' "
	          "FROM pulls WHERE connection_id = $1",
	          (const char *[]){ cid, NULL }),
	    "the next pull is FINXD_SYNC_INTERVAL away");
	free(before);
}

/* ---- the first pull follows the callback without a scan ---- */

/*
 * A finxd whose workers scan only hourly (and no other finxd running):
 * each callback's own wake must start the first pull, also when every
 * pull slot is busy with the previous users' pulls at that moment.
 */
static void
test_first_pull_wake(void)
{
	char user[32], *cid[6];
	int g, i, rc;

	rc = h_finxd_stop(f, SIGTERM);
	CHECK(rc == 0, "finxd exits 0 on SIGTERM (got %d)", rc);
	h_env_set("FINXD_REFRESH_INTERVAL", "3600");
	h_env_set("FINXD_REFRESH_CONCURRENCY", "4"); /* one pull slot */
	g = h_finxd_start();
	for (i = 0; i < 6; i++) {
		snprintf(user, sizeof(user), "u-wake-%d", i);
		cid[i] = h_connect(g, user);
		CHECK(cid[i] != NULL, "%s: connected", user);
	}
	for (i = 0; i < 6; i++) {
		CHECK(cid[i] != NULL && h_wait_pull_after(db, cid[i], "", 30),
		    "u-wake-%d: the first pull ran without a scan", i);
		free(cid[i]);
	}
}

int
main(void)
{
	const char *sbx_args[] = { "--transactions", "40", "--sync-step-ms",
		"300", NULL };
	char *keys, *cid, *cid_scope, *cid_cap, *giro;

	h_init("it_data", 280);
	db = h_setup(sbx_args);
	k_links = h_secret_new(32);
	k_read = h_secret_new(32);
	k_tokens = h_secret_new(32);
	k_admin = h_secret_new(32);
	k_rt = h_secret_new(32);
	if (asprintf(&keys, "%s,%s:links,%s:read,%s:tokens,%s:admin,"
			    "%s:read+tokens",
		h_api_key(), k_links, k_read, k_tokens, k_admin, k_rt) < 0)
		h_bail("asprintf");
	h_env_set("FINXD_API_KEYS", keys);
	free(keys);
	h_env_set("FINXD_REFRESH_INTERVAL", "1");
	h_env_set("FINXD_SYNC_INTERVAL", "3600");
	f = h_finxd_start();

	cid = connect_and_pull("u-data");
	test_full_pull(cid, "u-data");
	giro = h_sql_value(db,
	    "SELECT id FROM accounts WHERE connection_id = $1 AND "
	    "type = 'Giro account'",
	    (const char *[]){ cid, NULL });
	if (giro == NULL)
		h_bail("no giro account");
	test_filters(giro);
	test_errors(giro);
	test_repull(cid);
	test_repeated_in_page(cid);
	test_pending_booked(cid, "u-data");
	test_walk(cid, "u-data", giro);
	test_sync(cid, "u-data");
	test_sync_small_pool();

	cid_scope = connect_and_pull("u-scope");
	test_scopes(cid_scope, "u-scope");
	cid_cap = connect_and_pull("u-cap");
	test_psd2(cid_cap, "u-cap");
	test_first_pull_wake();

	free(giro);
	free(cid);
	free(cid_scope);
	free(cid_cap);
	check_clean_shutdown();
	return h_done(test_done());
}
