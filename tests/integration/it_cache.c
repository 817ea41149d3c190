/*
 * The read cache across processes: two finxd (A and B) with the cache on
 * and a third (C) with FINXD_READ_CACHE=off share one database.  Cached
 * answers are the bytes a fresh read gives, with the same headers; a
 * change made silently in SQL stays invisible while the cache holds
 * (which proves it caches); a re-pull (through whichever process's worker
 * takes it) and a DELETE through A reach B within a second and never go
 * stale after that; killing the listening backends empties both caches
 * until they listen again.
 */
#include "it_common.h"

#define NTX 6 /* sandbox --transactions: per account */
#define FRESH_MS 1000 /* a change must show within this */

static const char *db;
static int fa, fb, fc;
static const char *user = "u-cache";

/* GET path on instance i: the body (malloc'd) of a 200, else NULL. */
static char *
get_body(int i, const char *path)
{
	struct h_resp r;
	char *s = NULL;

	if (h_api(i, "GET", path, NULL, &r) == 200 && r.body != NULL)
		s = strndup(r.body, r.body_len);
	else
		printf("# GET %s on #%d answered %ld\n", path, i, r.status);
	h_resp_free(&r);
	return s;
}

/*
 * What a reader sees of the user's data, as one line: the account names
 * in order and the number of transactions listed for the user.
 */
static char *
api_view(int i)
{
	char path[256], *accs, *txns, *out = NULL;
	struct json_object *a = NULL, *t = NULL, *arr;
	struct buf_s {
		char s[4096];
		size_t n;
	} v = { "", 0 };
	size_t k;

	snprintf(path, sizeof(path), "/v1/users/%s/accounts", user);
	accs = get_body(i, path);
	snprintf(path, sizeof(path), "/v1/users/%s/transactions?limit=500",
	    user);
	txns = get_body(i, path);
	if (accs != NULL && txns != NULL) {
		a = json_tokener_parse(accs);
		t = json_tokener_parse(txns);
	}
	if (a != NULL && t != NULL &&
	    json_object_object_get_ex(a, "accounts", &arr)) {
		for (k = 0; k < json_object_array_length(arr); k++)
			v.n += (size_t)snprintf(v.s + v.n, sizeof(v.s) - v.n,
			    "%s,", h_jstr(json_object_array_get_idx(arr, k),
				       "name")
				? h_jstr(json_object_array_get_idx(arr, k),
				      "name")
				: "?");
		if (json_object_object_get_ex(t, "transactions", &arr))
			snprintf(v.s + v.n, sizeof(v.s) - v.n, "|%zu",
			    json_object_array_length(arr));
		out = strdup(v.s);
	}
	json_object_put(a);
	json_object_put(t);
	free(accs);
	free(txns);
	return out;
}

/* The same line computed from the database. */
static char *
db_view(void)
{
	return h_sql_value(db,
	    "SELECT coalesce((SELECT string_agg(a.name || ',', '' "
	    "ORDER BY a.created_at, a.id) FROM accounts a JOIN "
	    "connections c ON c.id = a.connection_id WHERE a.user_id = "
	    "$1 AND c.status <> 'revoked'), '') || '|' || (SELECT "
	    "count(*) FROM transactions t JOIN accounts a ON a.id = "
	    "t.account_id JOIN connections c ON c.id = a.connection_id "
	    "WHERE a.user_id = $1 AND c.status <> 'revoked')",
	    (const char *[]){ user, NULL });
}

static bool
view_is(int i, const char *want)
{
	char *v = api_view(i);
	bool ok = v != NULL && strcmp(v, want) == 0;

	free(v);
	return ok;
}

struct view_wait {
	int i;
	const char *want;
};

static bool
view_shows(void *arg)
{
	struct view_wait *w = arg;

	return view_is(w->i, w->want);
}

/* Milliseconds until instance i shows want (polled), -1 after limit_ms. */
static long
until_view(int i, const char *want, long limit_ms)
{
	struct view_wait w = { i, want };
	long t0 = h_now_ms();

	return h_wait_until(view_shows, &w, limit_ms) ? h_now_ms() - t0 : -1;
}

/* n reads on A and B in turn all show want. */
static bool
stays(const char *want, int n)
{
	int k;

	for (k = 0; k < n; k++)
		if (!view_is(k % 2 ? fb : fa, want))
			return false;
	return true;
}

static long
listeners(void)
{
	return h_sql_long(db,
	    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'",
	    NULL);
}

static bool
listeners_are(void *want)
{
	return listeners() == *(long *)want;
}

static bool
wait_listeners(long want, int secs)
{
	return h_wait_every(listeners_are, &want, secs * 1000L, 50);
}

/* ---- 1. hits are the bytes and headers of a fresh read ---- */

static void
test_same_answer(const char *acct)
{
	static const char *const hdrs[] = { "Content-Type", "Cache-Control",
		"X-Content-Type-Options", "Referrer-Policy", "X-Request-Id" };
	char paths[5][256];
	struct h_resp hit, fresh;
	int p, k, h;

	snprintf(paths[0], 256, "/v1/users/%s/accounts", user);
	snprintf(paths[1], 256, "/v1/accounts/%s", acct);
	snprintf(paths[2], 256, "/v1/accounts/%s/transactions?limit=3", acct);
	snprintf(paths[3], 256, "/v1/users/%s/transactions?booked=true", user);
	snprintf(paths[4], 256, "/v1/users/nobody-here/transactions");
	for (p = 0; p < 5; p++) {
		bool same = true, hdr_ok = true;

		for (k = 0; k < 3; k++) { /* miss, then hits */
			h_api(fa, "GET", paths[p], NULL, &hit);
			h_api(fc, "GET", paths[p], NULL, &fresh);
			same = same && hit.status == 200 &&
			    fresh.status == 200 &&
			    hit.body_len == fresh.body_len &&
			    memcmp(hit.body, fresh.body, hit.body_len) == 0;
			for (h = 0; h < 5; h++) {
				const char *a = h_resp_header(&hit, hdrs[h]);
				const char *b = h_resp_header(&fresh, hdrs[h]);

				if (a == NULL || b == NULL ||
				    (h < 4 && strcmp(a, b) != 0))
					hdr_ok = false;
			}
			if (hit.nh != fresh.nh)
				hdr_ok = false;
			h_resp_free(&hit);
			h_resp_free(&fresh);
		}
		CHECK(same, "%s: cached answers are the bytes of an uncached "
			    "read",
		    paths[p]);
		CHECK(hdr_ok, "%s: and carry the same headers", paths[p]);
	}
	/* Distinct pages stay distinct (the key holds the query). */
	{
		char a[256], *p1, *p2;

		snprintf(a, sizeof(a), "/v1/accounts/%s/transactions?limit=2",
		    acct);
		p1 = get_body(fa, a);
		snprintf(a, sizeof(a), "/v1/accounts/%s/transactions?limit=3",
		    acct);
		p2 = get_body(fa, a);
		CHECK(p1 && p2 && strcmp(p1, p2) != 0,
		    "limit=2 and limit=3 are different cached pages");
		free(p1);
		free(p2);
	}
}

/* ---- 2. silent SQL changes are cached over; notifications are not ---- */

static void
test_silent_and_notify(void)
{
	char *before, *after;
	long ms;

	before = db_view();
	CHECK(until_view(fa, before, 0) >= 0 && until_view(fb, before, 0) >= 0,
	    "A and B read the data (now cached)");
	h_sql_do(db,
	    "UPDATE accounts SET name = name || ' (silent)' WHERE "
	    "user_id = $1",
	    (const char *[]){ user, NULL });
	after = db_view();
	CHECK(view_is(fc, after), "C (cache off) sees a silent SQL change");
	CHECK(view_is(fa, before) && view_is(fb, before),
	    "A and B still serve their cached answer (the cache works)");
	h_sql_do(db, "SELECT pg_notify('finxd_data', $1)",
	    (const char *[]){ user, NULL });
	ms = until_view(fb, after, FRESH_MS);
	CHECK(ms >= 0, "B shows it within %d ms of a notification (%ld ms)",
	    FRESH_MS, ms);
	CHECK(until_view(fa, after, FRESH_MS) >= 0, "so does A");
	CHECK(stays(after, 20), "and neither goes back");
	free(before);
	free(after);
}

/* ---- 3. a re-pull with new transactions ---- */

static void
test_repull(const char *cid)
{
	char body[128], *before_view, *before, *want;
	long ms;

	before_view = db_view();
	CHECK(stays(before_view, 4), "A and B cached the data before the pull");
	snprintf(body, sizeof(body), "{\"user_id\":\"%s\",\"add\":2}", user);
	CHECK(sbx_ok(h_sbx_post("/_sandbox/transactions", body)),
	    "the sandbox has 2 new transactions per account");
	before = h_last_pull(db, cid);
	h_sql_do(db,
	    "UPDATE pulls SET next_pull_at = now(), attended = true WHERE "
	    "connection_id = $1",
	    (const char *[]){ cid, NULL });
	CHECK(h_wait_pull_after(db, cid, before, 20), "a worker pulled again");
	want = db_view();
	CHECK(strcmp(want, before_view) != 0, "the pull changed the data "
					      "(%s)",
	    want);
	ms = until_view(fb, want, FRESH_MS);
	CHECK(ms >= 0, "B shows the pulled data within %d ms (%ld ms)",
	    FRESH_MS, ms);
	ms = until_view(fa, want, FRESH_MS);
	CHECK(ms >= 0, "A too (%ld ms)", ms);
	CHECK(stays(want, 30), "never stale after that");
	free(before_view);
	free(before);
	free(want);
}

/* ---- 4. killing the listeners ---- */

static void
test_listener_killed(void)
{
	char *cached, *silent, *after;
	long t0, n;
	bool ok = true;

	cached = db_view();
	CHECK(stays(cached, 4), "A and B cached the data");
	h_sql_do(db,
	    "UPDATE accounts SET name = name || ' (while cached)' WHERE "
	    "user_id = $1",
	    (const char *[]){ user, NULL });
	silent = db_view();
	CHECK(view_is(fa, cached) && view_is(fb, cached),
	    "a silent change is not seen while cached");
	CHECK(listeners() == 2, "two listening backends (A and B)");
	n = 0;
	n = h_sql_long(db,
	    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
	    "WHERE query LIKE 'LISTEN%'",
	    NULL);
	CHECK(n == 2, "both listening backends terminated (%ld)", n);
	/* The lost connection empties the cache: the silent change shows
	 * as soon as the listeners notice, and every read after is right. */
	CHECK(until_view(fa, silent, FRESH_MS) >= 0 &&
		until_view(fb, silent, FRESH_MS) >= 0,
	    "A and B read the database again after losing their listener");
	/* Reads keep matching the database across changes while the
	 * listeners come back. */
	t0 = h_now_ms();
	while (h_now_ms() - t0 < 1500 && ok) {
		ok = view_is(fa, silent) && view_is(fb, silent);
	}
	CHECK(ok, "reads stay correct while the listeners reconnect");
	CHECK(wait_listeners(2, 10), "both listen again");
	h_sql_do(db,
	    "UPDATE accounts SET name = name || ' (after)' WHERE "
	    "user_id = $1",
	    (const char *[]){ user, NULL });
	h_sql_do(db, "SELECT pg_notify('finxd_data', $1)",
	    (const char *[]){ user, NULL });
	after = db_view();
	CHECK(until_view(fb, after, FRESH_MS) >= 0 &&
		until_view(fa, after, FRESH_MS) >= 0,
	    "after re-listening, notifications reach A and B again");
	CHECK(stays(after, 10), "and they stay current");
	free(cached);
	free(silent);
	free(after);
}

/* ---- 5. DELETE /v1/connections/{id} through A ---- */

/* Milliseconds until GET path (authenticated) on instance i answers want,
 * or -1 when it did not within timeout_ms. */
static long
until_status(int i, const char *path, long want, long timeout_ms)
{
	int64_t t0 = h_realtime_ms();
	struct h_resp r;
	long st;

	do {
		st = h_api(i, "GET", path, NULL, &r);
		h_resp_free(&r);
		if (st == want)
			return (long)(h_realtime_ms() - t0);
		usleep(20 * 1000);
	} while (h_realtime_ms() - t0 < timeout_ms);
	return -1;
}

static void
test_delete(const char *cid, const char *acct)
{
	char path[256], *want, *cached;
	struct h_resp r;
	long ms;

	cached = db_view();
	CHECK(stays(cached, 4), "A and B cached the data before the DELETE");
	CHECK(h_conn_api(fa, "DELETE", cid, NULL, &r) == 200,
	    "DELETE through A: 200 (%ld)", r.status);
	h_resp_free(&r);
	want = db_view();
	CHECK(strcmp(want, "|0") == 0, "a revoked connection lists nothing "
				       "(%s)",
	    want);
	ms = until_view(fb, want, FRESH_MS);
	CHECK(ms >= 0, "B stops listing the revoked connection's data within "
		       "%d ms (%ld ms)",
	    FRESH_MS, ms);
	CHECK(until_view(fa, want, FRESH_MS) >= 0, "A too");
	CHECK(stays(want, 20), "never stale after that");
	/* The account B cached is gone with its connection (issue 13,
	 * finding 5: it was served on after a DELETE). */
	snprintf(path, sizeof(path), "/v1/accounts/%s", acct);
	ms = until_status(fb, path, 404, FRESH_MS);
	CHECK(ms >= 0, "the account itself answers 404 on B within %d ms "
		       "(%ld ms)",
	    FRESH_MS, ms);
	free(want);
	free(cached);
}

int
main(void)
{
	const char *sbx_args[] = { "--transactions", "6", NULL };
	char *cid, *acct;

	h_init("it_cache", 200);
	db = h_setup(sbx_args);
	h_env_set("FINXD_REFRESH_INTERVAL", "1");
	h_env_set("FINXD_SYNC_INTERVAL", "3600");
	fa = h_finxd_start();
	fb = h_finxd_start();
	h_env_set("FINXD_READ_CACHE", "off");
	fc = h_finxd_start();
	h_env_set("FINXD_READ_CACHE", NULL);
	CHECK(wait_listeners(2, 10), "A and B listen on finxd_data; C does "
				     "not");

	cid = h_connect(fa, user);
	if (cid == NULL)
		h_bail("cannot connect %s", user);
	CHECK(h_wait_pull_after(db, cid, "", 30), "the first pull ran");
	acct = h_sql_value(db,
	    "SELECT id FROM accounts WHERE connection_id = $1 ORDER "
	    "BY created_at, id LIMIT 1",
	    (const char *[]){ cid, NULL });
	if (acct == NULL)
		h_bail("no account");
	{
		char *v = db_view();

		CHECK(v != NULL && strstr(v, "|12") != NULL,
		    "2 accounts of %d transactions stored (%s)", NTX, v);
		free(v);
	}
	test_same_answer(acct);
	test_silent_and_notify();
	test_repull(cid);
	test_listener_killed();
	test_delete(cid, acct);

	free(cid);
	free(acct);
	check_clean_shutdown();
	return h_done(test_done());
}
