/*
 * Keeping connections alive (issue 3), everything but the three-process
 * soak (it_refresh_multi.c): refresh answers without a refresh token,
 * three rotations in a row, invalid_grant in both error styles leading to
 * reauth_required, re-authentication onto the same connection, DELETE
 * revoking at finX (also while /auth/revoke fails), a 503 storm on
 * /auth/token, and kill -9 of one of three processes while its refreshes
 * are in flight.
 *
 * Tokens are compared in memory only; nothing secret is printed.
 */
#include "it_common.h"

#include <time.h>

static const char *db;
static int f0, f1, f2; /* f2 talks form to finX, so its requests are
			   recognisable in the sandbox's recording */

/* The k-th newest token the sandbox issued (k = 1: newest; malloc'd). */
static char *
issued_back(int k)
{
	int n;
	char **v = h_sbx_issued(&n);
	char *t = n >= k ? strdup(v[n - k]) : NULL;

	h_strv_free(v, n);
	return t;
}

/* A connection plus its tokens as the sandbox issued them (code exchange:
 * access token, then refresh token). */
struct conn {
	char *id;
	char *access;
	char *refresh;
};

static bool
conn_make(int f, const char *user, struct conn *c)
{
	memset(c, 0, sizeof(*c));
	c->id = h_connect_retry(f, user);
	if (c->id == NULL)
		return false;
	c->refresh = issued_back(1);
	c->access = issued_back(2);
	return c->refresh != NULL && c->access != NULL;
}

static void
conn_free(struct conn *c)
{
	free(c->id);
	free(c->access);
	free(c->refresh);
	memset(c, 0, sizeof(*c));
}

/* ---- refresh answers without a refresh token --------------------- */

static void
test_omit_refresh_token(void)
{
	struct conn c;
	char *sealed0, *obtained0, *sealed, *obtained, *body_rt, *tok;
	long ref0 = h_sbx_stat("refreshes"), ig0 = h_sbx_stat("invalid_grants");
	struct json_object *req;
	int k;

	if (!conn_make(f0, "u-omit", &c)) {
		CHECK(0, "omit: could not connect");
		return;
	}
	sealed0 = h_conn_col(db, c.id, "refresh_token");
	obtained0 = h_conn_col(db, c.id, "refresh_obtained_at");
	CHECK(h_sbx_config("{\"omit_refresh_token\":true}"),
	    "omit: sandbox leaves refresh_token out of refresh answers");
	for (k = 1; k <= 2; k++) {
		long st = h_conn_post(f0, c.id, "refresh", NULL);

		CHECK(st == 200, "omit: forced refresh %d answers 200 (got %ld)",
		    k, st);
		req = h_sbx_last_request("/auth/token");
		body_rt = h_dup(h_jstr(req, "body"));
		CHECK(body_rt && strstr(body_rt, c.refresh) != NULL,
		    "omit: refresh %d presented the original refresh token "
		    "(%s)",
		    k,
		    body_rt && strstr(body_rt, c.refresh) ? "match"
							  : "mismatch");
		free(body_rt);
		json_object_put(req);
		sealed = h_conn_col(db, c.id, "refresh_token");
		obtained = h_conn_col(db, c.id, "refresh_obtained_at");
		CHECK(h_streq(sealed, sealed0),
		    "omit: stored refresh token unchanged after refresh %d", k);
		CHECK(h_streq(obtained, obtained0),
		    "omit: refresh_obtained_at unchanged after refresh %d", k);
		free(sealed);
		free(obtained);
	}
	h_token_get(f1, c.id, &tok, NULL);
	{
		char *newest = issued_back(1); /* access only: no refresh */

		CHECK(h_streq(tok, newest),
		    "omit: GET token hands out the newest access token (%s)",
		    h_streq(tok, newest) ? "match" : "mismatch");
		free(newest);
	}
	free(tok);
	CHECK(h_sbx_config("{\"omit_refresh_token\":false}"),
	    "omit: sandbox rotates again");
	CHECK(h_conn_post(f1, c.id, "refresh", NULL) == 200,
	    "omit: the kept refresh token still works when rotation resumes");
	sealed = h_conn_col(db, c.id, "refresh_token");
	CHECK(sealed && !h_streq(sealed, sealed0),
	    "omit: the rotated refresh token replaced the kept one");
	free(sealed);
	CHECK(h_sbx_stat("refreshes") - ref0 == 3, "omit: 3 refreshes at finX "
						 "(got %ld)",
	    h_sbx_stat("refreshes") - ref0);
	CHECK(h_sbx_stat("invalid_grants") == ig0,
	    "omit: no invalid_grant at finX");
	CHECK(h_sbx_stat("refresh_reuse") == 0, "omit: refresh_reuse 0");
	CHECK(h_conn_status_is(f0, c.id, "active"), "omit: still active");
	free(sealed0);
	free(obtained0);
	conn_free(&c);
}

/* ---- three refreshes in a row ----------------------------------------- */

static void
test_three_in_a_row(void)
{
	struct conn c;
	char *prev_rt, *prev_sealed;
	long ref0 = h_sbx_stat("refreshes");
	int k;

	if (!conn_make(f0, "u-three", &c)) {
		CHECK(0, "three: could not connect");
		return;
	}
	prev_rt = strdup(c.refresh);
	prev_sealed = h_conn_col(db, c.id, "refresh_token");
	for (k = 1; k <= 3; k++) {
		int f = k == 2 ? f1 : f0; /* any process reads the row */
		struct json_object *req;
		char *tok = NULL, *new_at, *new_rt, *sealed, *code = NULL;
		const char *body;
		long st = h_conn_post(f, c.id, "refresh", &code);

		CHECK(st == 200, "three: refresh %d answers 200 (got %ld, %s)",
		    k, st, code ? code : "-");
		free(code);
		req = h_sbx_last_request("/auth/token");
		body = h_jstr(req, "body");
		CHECK(body && strstr(body, prev_rt) != NULL,
		    "three: refresh %d presented the refresh token of the "
		    "previous rotation (%s)",
		    k, body && strstr(body, prev_rt) ? "match" : "mismatch");
		json_object_put(req);
		new_rt = issued_back(1);
		new_at = issued_back(2);
		sealed = h_conn_col(db, c.id, "refresh_token");
		CHECK(sealed && !h_streq(sealed, prev_sealed),
		    "three: refresh %d stored a new refresh token", k);
		st = h_token_get(k == 3 ? f1 : f0, c.id, &tok, NULL);
		CHECK(st == 200 && h_streq(tok, new_at),
		    "three: after refresh %d GET token is the sandbox's newest "
		    "access token (%ld, %s)",
		    k, st, h_streq(tok, new_at) ? "match" : "mismatch");
		CHECK(h_token_works(tok),
		    "three: that access token works at finX");
		free(tok);
		free(new_at);
		free(prev_rt);
		free(prev_sealed);
		prev_rt = new_rt;
		prev_sealed = sealed;
	}
	CHECK(h_sbx_stat("refreshes") - ref0 == 3,
	    "three: 3 refreshes at finX (got %ld)",
	    h_sbx_stat("refreshes") - ref0);
	CHECK(h_sbx_stat("refresh_reuse") == 0, "three: refresh_reuse 0");
	{
		struct json_object *o = h_conn_get(f0, c.id);

		CHECK(h_streq(h_jstr(o, "status"), "active") &&
		        h_jstr(o, "last_refresh_at") != NULL &&
		        h_jstr(o, "refresh_expires_at") != NULL &&
		        h_jstr(o, "consent_expires_at") != NULL &&
		        h_jstr(o, "reauth_required_by") != NULL,
		    "three: active, with last_refresh_at, refresh_expires_at, "
		    "consent_expires_at, reauth_required_by");
		json_object_put(o);
	}
	free(prev_rt);
	free(prev_sealed);
	conn_free(&c);
}

/* ---- re-authentication ------------------------------------------------ */

/* POST reauth, approve in the widget, follow the callback: the same
 * connection comes back active with new tokens. */
static void
reauth_flow(const char *cid, const char *what)
{
	struct h_resp r;
	char *cb = NULL, *tok = NULL, *newest;
	const char *loc;
	long st;

	st = h_reauth(f1, cid, &r);
	CHECK(st == 201, "%s: POST reauth 201 (got %ld)", what, st);
	CHECK(h_streq(h_jstr(h_resp_json(&r), "connection_id"), cid),
	    "%s: the reauth link names the same connection_id", what);
	loc = h_jstr(h_resp_json(&r), "location");
	if (loc != NULL)
		cb = h_widget(loc, "approve");
	h_resp_free(&r);
	CHECK(cb != NULL, "%s: widget approved", what);
	if (cb == NULL)
		return;
	h_http("GET", cb, NULL, NULL, 0, &r);
	free(cb);
	CHECK(r.status == 303 && loc_is(&r, "status", "connected"),
	    "%s: callback 303 status=connected (got %ld)", what, r.status);
	CHECK(loc_is(&r, "connection_id", cid),
	    "%s: callback answers the SAME connection_id", what);
	h_resp_free(&r);
	{
		struct json_object *o = h_conn_get(f0, cid);

		CHECK(h_streq(h_jstr(o, "status"), "active") &&
		        h_jnull(o, "status_reason") &&
		        json_object_get_int(json_object_object_get(o,
		            "consecutive_failures")) == 0,
		    "%s: connection active again, no status_reason", what);
		json_object_put(o);
	}
	newest = issued_back(2); /* code exchange: access, then refresh */
	st = h_token_get(f2, cid, &tok, NULL);
	CHECK(st == 200 && h_streq(tok, newest),
	    "%s: GET token hands out the new grant's access token (%s)", what,
	    h_streq(tok, newest) ? "match" : "mismatch");
	CHECK(h_token_works(tok), "%s: and it works at finX", what);
	free(tok);
	free(newest);
	st = h_conn_post(f0, cid, "refresh", NULL);
	CHECK(st == 200, "%s: the new refresh token refreshes (got %ld)", what,
	    st);
}

static bool
old_grant_revoked(void *user)
{
	return h_sbx_grants(user, "revoked") == 1 &&
	    h_sbx_grants(user, "active") == 1;
}

static void
test_reauth_active(void)
{
	struct conn c;
	struct h_resp r;
	char path[128];

	if (!conn_make(f0, "u-reauth", &c)) {
		CHECK(0, "reauth: could not connect");
		return;
	}
	reauth_flow(c.id, "reauth of an active connection");
	snprintf(path, sizeof(path), "/v1/users/%s/connections", "u-reauth");
	h_api(f0, "GET", path, NULL, &r);
	CHECK(r.status == 200 &&
	        json_object_array_length(json_object_object_get(
	            h_resp_json(&r), "connections")) == 1,
	    "reauth: the user still has exactly one connection");
	h_resp_free(&r);
	/* the old grant is revoked at finX (in the background) */
	CHECK(h_wait_every(old_grant_revoked, "u-reauth", 10000, 250),
	    "reauth: the old grant is revoked at finX, the new one lives "
	    "(revoked %ld, active %ld)",
	    h_sbx_grants("u-reauth", "revoked"),
	    h_sbx_grants("u-reauth", "active"));
	conn_free(&c);
}

/* ---- invalid_grant → reauth_required ------------------------------ */

static void
test_invalid_grant(const char *style)
{
	struct conn c;
	char user[64], what[64], cfg[64], *code = NULL, q[256];
	struct json_object *o;
	long st, ig0, tok0;

	snprintf(user, sizeof(user), "u-ig-%s", style);
	snprintf(what, sizeof(what), "invalid_grant (%s style)", style);
	snprintf(cfg, sizeof(cfg), "{\"error_style\":\"%s\"}", style);
	CHECK(h_sbx_config(cfg), "%s: sandbox error style set", what);
	if (!conn_make(f0, user, &c)) {
		CHECK(0, "%s: could not connect", what);
		return;
	}
	snprintf(q, sizeof(q), "{\"user_id\":\"%s\"}", user);
	CHECK(sbx_ok(h_sbx_post("/_sandbox/revoke-user", q)),
	    "%s: grant revoked at finX", what);
	ig0 = h_sbx_stat("invalid_grants");
	st = h_conn_post(f1, c.id, "refresh", &code);
	CHECK(st == 409 && h_streq(code, "reauth_required"),
	    "%s: POST refresh 409 reauth_required (got %ld %s)", what, st,
	    code ? code : "-");
	free(code);
	CHECK(h_sbx_stat("invalid_grants") == ig0 + 1,
	    "%s: finX answered invalid_grant once", what);
	o = h_conn_get(f0, c.id);
	CHECK(h_streq(h_jstr(o, "status"), "reauth_required"),
	    "%s: status reauth_required (got %s)", what,
	    h_jstr(o, "status") ? h_jstr(o, "status") : "-");
	CHECK(h_jstr(o, "status_reason") &&
	        strstr(h_jstr(o, "status_reason"), "invalid_grant"),
	    "%s: status_reason names invalid_grant", what);
	CHECK(h_leaks(json_object_to_json_string(o),
	          strlen(json_object_to_json_string(o))) == 0,
	    "%s: the connection shows no secret", what);
	json_object_put(o);
	st = h_token_get(f2, c.id, NULL, NULL);
	CHECK(st == 409, "%s: GET token 409 (got %ld)", what, st);

	/* the refresher leaves it alone even when it looks due */
	PQclear(h_sql(db,
	    "UPDATE connections SET refresh_due_at = now() - interval "
	    "'1 minute', next_attempt_at = NULL WHERE id = $1",
	    (const char *[]){ c.id, NULL }));
	tok0 = h_sbx_count("/auth/token");
	h_sleep_ms(3500);
	CHECK(h_sbx_count("/auth/token") == tok0,
	    "%s: the background refresher no longer tries it (%d requests "
	    "in 3.5 s)",
	    what, h_sbx_count("/auth/token") - (int)tok0);
	CHECK(h_conn_status_is(f1, c.id, "reauth_required"),
	    "%s: still reauth_required", what);
	if (strcmp(style, "oauth") == 0)
		reauth_flow(c.id, "reauth after reauth_required");
	conn_free(&c);
}

/* ---- DELETE ------------------------------------------------------- */

static void
test_delete(void)
{
	struct conn c;
	struct h_resp r;
	struct json_object *reqs, *arr, *rev[4];
	char q[128], *code = NULL, *v;
	int i, nrev = 0;
	long revs0, st;

	if (!conn_make(f0, "u-del", &c)) {
		CHECK(0, "delete: could not connect");
		return;
	}
	h_sbx_delete("/_sandbox/requests");
	revs0 = h_sbx_stat("revocations");
	st = h_conn_api(f1, "DELETE", c.id, NULL, &r);
	CHECK(st == 200 &&
	        h_streq(h_jstr(h_resp_json(&r), "status"), "revoked"),
	    "delete: 200 with status revoked (got %ld)", st);
	h_resp_free(&r);
	reqs = h_sbx_get("/_sandbox/requests");
	arr = json_object_object_get(reqs, "requests");
	for (i = 0; arr && i < (int)json_object_array_length(arr); i++) {
		struct json_object *e = json_object_array_get_idx(arr, i);

		if (h_streq(h_jstr(e, "path"), "/auth/revoke") && nrev < 4)
			rev[nrev++] = e;
	}
	CHECK(nrev == 2, "delete: two /auth/revoke requests (got %d)", nrev);
	CHECK(nrev >= 1 && h_jstr(rev[0], "body") &&
	        strstr(h_jstr(rev[0], "body"), c.refresh) != NULL,
	    "delete: the refresh token is revoked first");
	CHECK(nrev >= 2 && h_jstr(rev[1], "body") &&
	        strstr(h_jstr(rev[1], "body"), c.access) != NULL,
	    "delete: then the access token");
	json_object_put(reqs);
	/*
	 * The sandbox counts a revocation only when it changed something:
	 * revoking the refresh token revokes the whole grant, access token
	 * included, so the second call finds nothing left to revoke.
	 */
	printf("# delete: sandbox revocations counter +%ld for 2 "
	       "/auth/revoke calls\n",
	    h_sbx_stat("revocations") - revs0);
	CHECK(h_sbx_stat("revocations") - revs0 >= 1,
	    "delete: finX counted the revocation");
	snprintf(q, sizeof(q), "/_sandbox/grants?user_id=u-del");
	reqs = h_sbx_get(q);
	CHECK(h_stat_of(reqs, "revoked") == 1 && h_stat_of(reqs, "active") == 0,
	    "delete: the grant is revoked at finX");
	json_object_put(reqs);
	CHECK(!h_token_works(c.access),
	    "delete: the old access token no longer works at finX");
	v = h_sql_value(db,
	    "SELECT count(*) FROM connections WHERE id = $1 AND access_token "
	    "IS NULL AND refresh_token IS NULL AND status = 'revoked' AND "
	    "revoked_at IS NOT NULL",
	    (const char *[]){ c.id, NULL });
	CHECK(h_streq(v, "1"),
	    "delete: both token columns NULL, status revoked, revoked_at set");
	free(v);
	v = h_sql_value(db,
	    "SELECT count(*) FROM revocations WHERE connection_id = $1",
	    (const char *[]){ c.id, NULL });
	CHECK(h_streq(v, "0"), "delete: nothing left to revoke (%s)",
	    v ? v : "-");
	free(v);

	st = h_conn_api(f2, "DELETE", c.id, NULL, &r);
	CHECK(st == 200 &&
	        h_streq(h_jstr(h_resp_json(&r), "status"), "revoked"),
	    "delete again: 200, still revoked (got %ld)", st);
	h_resp_free(&r);
	CHECK(h_sbx_count("/auth/revoke") == 2,
	    "delete again: no further /auth/revoke (idempotent)");
	st = h_token_get(f0, c.id, NULL, NULL);
	CHECK(st == 409, "delete: GET token 409 (got %ld)", st);
	st = h_conn_post(f0, c.id, "refresh", NULL);
	CHECK(st == 409, "delete: POST refresh 409 (got %ld)", st);
	st = h_conn_post(f0, c.id, "reauth", &code);
	CHECK(st == 409 && h_streq(code, "connection_revoked"),
	    "delete: reauth of a deleted connection 409 connection_revoked "
	    "(got %ld %s)",
	    st, code ? code : "-");
	free(code);
	conn_free(&c);
}

static void
test_delete_revoke_fails(void)
{
	struct conn c;
	struct h_resp r;
	char *v;
	long st, ms;
	int attempts = 0;

	if (!conn_make(f0, "u-del-fault", &c)) {
		CHECK(0, "delete/fault: could not connect");
		return;
	}
	CHECK(sbx_ok(h_sbx_post("/_sandbox/faults",
	          "{\"path\":\"/auth/revoke\",\"mode\":\"status\","
	          "\"status\":503}")),
	    "delete/fault: /auth/revoke answers 503");
	st = h_conn_api(f0, "DELETE", c.id, NULL, &r);
	ms = r.ms;
	CHECK(st == 200 &&
	        h_streq(h_jstr(h_resp_json(&r), "status"), "revoked"),
	    "delete/fault: DELETE still 200 revoked (got %ld)", st);
	CHECK(ms < 3000, "delete/fault: answered at once (%ld ms)", ms);
	h_resp_free(&r);
	v = h_sql_value(db,
	    "SELECT count(*) FROM connections WHERE id = $1 AND access_token "
	    "IS NULL AND refresh_token IS NULL AND status = 'revoked'",
	    (const char *[]){ c.id, NULL });
	CHECK(h_streq(v, "1"), "delete/fault: tokens erased anyway");
	free(v);
	v = h_sql_value(db,
	    "SELECT count(*) FROM revocations WHERE connection_id = $1",
	    (const char *[]){ c.id, NULL });
	CHECK(h_streq(v, "2"), "delete/fault: 2 revocations queued (%s)",
	    v ? v : "-");
	free(v);
	/* the workers retry with backoff while the fault lasts */
	attempts = (int)h_sql_wait_count(db,
	    "SELECT min(attempts) FROM revocations WHERE connection_id = $1 "
	    "AND last_error IS NOT NULL",
	    (const char *[]){ c.id, NULL }, 2, 15000);
	CHECK(attempts >= 2,
	    "delete/fault: the background workers retried (attempts %d)",
	    attempts);
	CHECK(h_sbx_grants("u-del-fault", "active") == 1,
	    "delete/fault: grant still alive at finX during the fault");
	h_sbx_delete("/_sandbox/faults");
	CHECK(h_wait_every(h_revocations_gone, c.id, 30000, 500),
	    "delete/fault: after the fault the revocations table empties");
	CHECK(h_sbx_grants("u-del-fault", "revoked") == 1 &&
	        h_sbx_grants("u-del-fault", "active") == 0,
	    "delete/fault: the grant is revoked at finX in the end");
	conn_free(&c);
}

/* ---- a finX 503 storm ------------------------------------------------ */

#define NSTORM 6

static void
test_storm(void)
{
	struct conn c[NSTORM];
	bool saw_failure[NSTORM] = { false };
	long ref0, ig0, end, storm_ms = 25000;
	char *storm_end = NULL;
	int i, n = 0, not_active = 0, max_fail = 0, recovered = 0;

	CHECK(h_sbx_config("{\"access_ttl\":20}"), "storm: access tokens live "
						 "20 s");
	for (i = 0; i < NSTORM; i++) {
		char user[32];

		snprintf(user, sizeof(user), "u-storm-%d", i);
		if (conn_make(i % 2 ? f1 : f0, user, &c[i]))
			n++;
	}
	CHECK(n == NSTORM, "storm: %d connections made", n);
	if (n != NSTORM)
		return;
	/* Each token handed out once: connections that are read are the
	 * ones the workers refresh ahead of expiry (idle ones wait for
	 * keep-alive), so these become due within the storm. */
	for (i = 0; i < NSTORM; i++) {
		char *tok = NULL;

		CHECK(h_token_get(f0, c[i].id, &tok, NULL) == 200,
		    "storm: connection %d hands out a token before", i);
		free(tok);
	}
	ref0 = h_sbx_stat("refreshes");
	ig0 = h_sbx_stat("invalid_grants");
	CHECK(sbx_ok(h_sbx_post("/_sandbox/faults",
	          "{\"path\":\"/auth/token\",\"mode\":\"status\","
	          "\"status\":503}")),
	    "storm: /auth/token answers 503 for %ld s", storm_ms / 1000);
	end = h_now_ms() + storm_ms;
	while (h_now_ms() < end) {
		PGresult *res;

		h_sleep_ms(1000);
		res = h_sql(db,
		    "SELECT user_id, status, consecutive_failures, "
		    "last_error IS NOT NULL FROM connections WHERE user_id "
		    "LIKE 'u-storm-%'",
		    NULL);
		for (i = 0; res != NULL && i < PQntuples(res); i++) {
			int k = (int)h_long(PQgetvalue(res, i, 0) + strlen("u-storm-"), 0);
			int fails = (int)h_long(PQgetvalue(res, i, 2), 0);

			if (strcmp(PQgetvalue(res, i, 1), "active") != 0)
				not_active++;
			if (fails > 0 && strcmp(PQgetvalue(res, i, 3), "t") == 0 &&
			    k >= 0 && k < NSTORM)
				saw_failure[k] = true;
			if (fails > max_fail)
				max_fail = fails;
		}
		PQclear(res);
	}
	for (i = 0, n = 0; i < NSTORM; i++)
		n += saw_failure[i];
	CHECK(not_active == 0, "storm: every connection stayed active "
			       "throughout");
	CHECK(n == NSTORM,
	    "storm: every connection showed consecutive_failures > 0 and "
	    "last_error (%d of %d; most failures in a row %d)",
	    n, NSTORM, max_fail);
	CHECK(max_fail >= 2 && max_fail <= 6,
	    "storm: backed off (at most %d attempts per connection in %ld s, "
	    "not a hot loop)",
	    max_fail, storm_ms / 1000);
	printf("# storm: %ld failed /auth/token answers for %d connections in "
	       "%ld s\n",
	    h_sbx_stat("faults_injected"), NSTORM, storm_ms / 1000);
	CHECK(h_sbx_config("{\"access_ttl\":3600}"), "storm: lifetimes back to "
						   "1 h");
	storm_end = h_sql_value(db, "SELECT now()::text", NULL);
	h_sbx_delete("/_sandbox/faults");
	recovered = (int)h_sql_wait_count(db,
	    "SELECT count(*) FROM connections WHERE user_id LIKE 'u-storm-%' "
	    "AND status = 'active' AND consecutive_failures = 0 AND "
	    "last_error IS NULL AND last_refresh_at > $1::timestamptz AND "
	    "access_expires_at > now()",
	    (const char *[]){ storm_end, NULL }, NSTORM, 60000);
	CHECK(recovered == NSTORM,
	    "storm: after the fault every connection refreshed and "
	    "consecutive_failures is back to 0 (%d of %d)",
	    recovered, NSTORM);
	CHECK(h_sbx_stat("refreshes") - ref0 == NSTORM,
	    "storm: exactly one successful refresh per connection (%ld)",
	    h_sbx_stat("refreshes") - ref0);
	CHECK(h_sbx_stat("invalid_grants") == ig0 &&
	        h_sbx_stat("refresh_reuse") == 0,
	    "storm: no invalid_grant, no reuse: no connection lost");
	for (i = 0; i < NSTORM; i++) {
		char *tok = NULL;

		h_token_get(f0, c[i].id, &tok, NULL);
		if (!h_token_works(tok))
			CHECK(0, "storm: connection %d has no working token", i);
		free(tok);
		conn_free(&c[i]);
	}
	CHECK(1, "storm: every connection hands out a working token");
	free(storm_end);
}

/* ---- kill -9 in the middle of refreshing -------------------------- */

#define NKILL 24
#define KILL_LATENCY 2000

static void
test_kill9(void)
{
	struct conn c[NKILL];
	int in_flight[NKILL] = { 0 }, form_reqs[NKILL] = { 0 },
	    json_reqs[NKILL] = { 0 };
	char *due_at;
	struct json_object *reqs, *arr;
	long t_kill, reuse0, ig0, ref0;
	int i, n = 0, settled = 0, lost = 0, nin = 0, lost_in = 0,
	    lost_out = 0, ok_out = 0, nform = 0, rc;
	PGresult *res;

	for (i = 0; i < NKILL; i++) {
		char user[32];

		snprintf(user, sizeof(user), "u-kill-%02d", i);
		if (conn_make(i % 3 == 0 ? f0 : i % 3 == 1 ? f1 : f2, user,
		        &c[i]))
			n++;
	}
	CHECK(n == NKILL, "kill: %d connections made", n);
	if (n != NKILL)
		return;
	CHECK(h_sbx_config("{\"token_latency_ms\":2000}"),
	    "kill: /auth/token takes %d ms before finX acts", KILL_LATENCY);
	h_sbx_delete("/_sandbox/requests");
	reuse0 = h_sbx_stat("refresh_reuse");
	ig0 = h_sbx_stat("invalid_grants");
	ref0 = h_sbx_stat("refreshes");
	due_at = h_sql_value(db, "SELECT now()::text", NULL);
	PQclear(h_sql(db,
	    "UPDATE connections SET refresh_due_at = now() WHERE user_id "
	    "LIKE 'u-kill-%'",
	    NULL));
	h_sleep_ms(1500);
	t_kill = h_realtime_ms();
	rc = h_finxd_stop(f2, SIGKILL);
	CHECK(rc == 128 + SIGKILL, "kill: finxd #%d killed with SIGKILL (%d)",
	    f2, rc);
	/* the survivors take over once PostgreSQL drops the dead sessions */
	settled = (int)h_sql_wait_count(db,
	    "SELECT count(*) FROM connections WHERE user_id LIKE 'u-kill-%' "
	    "AND (status <> 'active' OR last_refresh_at > $1::timestamptz)",
	    (const char *[]){ due_at, NULL }, NKILL, 60000);
	CHECK(settled == NKILL,
	    "kill: every connection refreshed or settled after the kill "
	    "(%d of %d)",
	    settled, NKILL);

	/* which refreshes did the killed process have in flight? */
	reqs = h_sbx_get("/_sandbox/requests");
	arr = json_object_object_get(reqs, "requests");
	for (i = 0; arr && i < (int)json_object_array_length(arr); i++) {
		struct json_object *e = json_object_array_get_idx(arr, i);
		const char *body = h_jstr(e, "body"), *ct;
		long at;
		int k;

		if (!h_streq(h_jstr(e, "path"), "/auth/token") || body == NULL)
			continue;
		ct = h_jstr(e, "content_type");
		at = (long)json_object_get_int64(
		    json_object_object_get(e, "received_at_ms"));
		for (k = 0; k < NKILL; k++)
			if (strstr(body, c[k].refresh) != NULL)
				break;
		if (k == NKILL)
			continue; /* a later, rotated token */
		if (ct && strncmp(ct, "application/x-www-form-urlencoded",
			      33) == 0) {
			nform++;
			form_reqs[k]++;
			/* unanswered at the kill: finX acts at +latency */
			if (at <= t_kill && at + KILL_LATENCY > t_kill)
				in_flight[k] = 1;
		} else
			json_reqs[k]++;
	}
	json_object_put(reqs);
	res = h_sql(db,
	    "SELECT user_id, status, coalesce(status_reason, '') FROM "
	    "connections WHERE user_id LIKE 'u-kill-%' ORDER BY user_id",
	    NULL);
	for (i = 0; res != NULL && i < PQntuples(res); i++) {
		int k = (int)h_long(PQgetvalue(res, i, 0) + strlen("u-kill-"), 0);
		bool active = strcmp(PQgetvalue(res, i, 1), "active") == 0;

		if (k < 0 || k >= NKILL)
			continue;
		nin += in_flight[k];
		if (!active) {
			lost++;
			if (in_flight[k])
				lost_in++;
			else
				lost_out++;
			printf("# kill: u-kill-%02d %s (%s); in flight at the "
			       "kill: %s; /auth/token with its token: %d from "
			       "the killed process, %d from the survivors\n",
			    k, PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
			    in_flight[k] ? "yes" : "no", form_reqs[k],
			    json_reqs[k]);
		} else if (!in_flight[k])
			ok_out++;
	}
	PQclear(res);
	printf("# KILL9 refreshes in flight in the killed process at the "
	       "kill: %d (it had sent %d /auth/token requests in all)\n",
	    nin, nform);
	printf("# KILL9 connections lost (reauth_required): %d, of which in "
	       "flight at the kill: %d\n",
	    lost, lost_in);
	printf("# KILL9 sandbox: refresh_reuse +%ld, invalid_grants +%ld, "
	       "refreshes +%ld\n",
	    h_sbx_stat("refresh_reuse") - reuse0,
	    h_sbx_stat("invalid_grants") - ig0, h_sbx_stat("refreshes") - ref0);
	CHECK(nin > 0, "kill: the killed process had refreshes in flight "
		       "(%d)",
	    nin);
	CHECK(lost_out == 0,
	    "kill: no connection other than those in flight at the kill was "
	    "affected (%d others lost)",
	    lost_out);
	CHECK(ok_out == NKILL - nin,
	    "kill: every connection not in flight is active and refreshed "
	    "(%d of %d)",
	    ok_out, NKILL - nin);
	CHECK(h_sbx_stat("refresh_reuse") - reuse0 == lost,
	    "kill: each loss is one superseded refresh token presented by a "
	    "survivor after finX rotated it for the dead process (reuse +%ld, "
	    "lost %d)",
	    h_sbx_stat("refresh_reuse") - reuse0, lost);
	CHECK(lost <= nin, "kill: at most the in-flight refreshes were lost "
			   "(%d of %d)",
	    lost, nin);
	h_sbx_config("{\"token_latency_ms\":0}");
	for (i = 0; i < NKILL; i++)
		conn_free(&c[i]);
	free(due_at);
}

/* IT_REFRESH_ONLY=delete,storm runs only those cases (debugging). */
static bool
want(const char *name)
{
	const char *only = getenv("IT_REFRESH_ONLY");

	return only == NULL || *only == '\0' || strstr(only, name) != NULL;
}

int
main(void)
{
	h_init("it_refresh", 230);
	db = h_setup(NULL);
	h_env_set("FINXD_LOG_LEVEL", "info");
	h_env_set("FINXD_REFRESH_INTERVAL", "1");
	h_env_set("FINXD_REFRESH_CONCURRENCY", "4");
	h_env_set("FINXD_DB_POOL_SIZE", "4");
	h_env_set("FINXD_FINX_TOKEN_FORMAT", "json");
	f0 = h_finxd_start();
	f1 = h_finxd_start();
	h_env_set("FINXD_FINX_TOKEN_FORMAT", "form");
	f2 = h_finxd_start();
	h_env_set("FINXD_FINX_TOKEN_FORMAT", NULL);

	if (want("omit"))
		test_omit_refresh_token();
	if (want("three"))
		test_three_in_a_row();
	if (want("invalid_grant")) {
		test_invalid_grant("oauth");
		test_invalid_grant("finx");
		h_sbx_config("{\"error_style\":\"oauth\"}");
	}
	if (want("reauth"))
		test_reauth_active();
	if (want("delete")) {
		test_delete();
		test_delete_revoke_fails();
	}
	if (want("storm"))
		test_storm();
	if (want("kill"))
		test_kill9();
	check_clean_shutdown();
	return h_done(test_done());
}
