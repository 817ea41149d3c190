/*
 * The events the background workers find, and manual syncs under
 * committed claims (issue 14, items 1 and 3), with two finxd processes
 * running every scan on one database:
 *
 * - a link that expires without a callback: link.completed (expired)
 *   once, and its late callback sends no second one;
 * - connection.expiring once per connection, what and deadline (planted
 *   by SQL), again for a renewed deadline, never for a connection that
 *   is not active;
 * - connection.refresh_failing once after refreshes failed for an hour
 *   (the sandbox fails them, the streak's start is moved back by SQL),
 *   then connection.recovered once with the next successful refresh;
 * - syncs: concurrent POSTs on both processes give one finX sync and one
 *   sync.completed; a failed start ends as sync.failed once; a finxd
 *   killed mid-start or mid-poll leaves a claim another process takes
 *   over after its deadline, not before.
 */
#include "it_common.h"

#include <pthread.h>

static const char *db;
static int fa, fb;

/* Events of type for a connection or link id. */
static long
ev_count(const char *type, const char *id)
{
	return h_sql_long(db,
	    "SELECT count(*) FROM event_log WHERE type = $1 AND "
	    "(connection_id::text = $2 OR link_id::text = $2 OR "
	    "data->>'sync_id' = $2)",
	    (const char *[]){ type, id, NULL });
}

struct ev_wait {
	const char *type, *id;
	long want;
};

static bool
ev_reached(void *arg)
{
	struct ev_wait *w = arg;

	return ev_count(w->type, w->id) >= w->want;
}

/* Wait up to ms for want events of type for id; the count then. */
static long
ev_wait(const char *type, const char *id, long want, long ms)
{
	struct ev_wait w = { type, id, want };

	h_wait_every(ev_reached, &w, ms, 250);
	return ev_count(type, id);
}

/* The data of the only (or the newest) event of type for id, parsed. */
static struct json_object *
ev_data(const char *type, const char *id, const char *extra)
{
	char *q = h_fmt("SELECT data::text FROM event_log WHERE type = $1 "
			"AND (connection_id::text = $2 OR link_id::text = $2 "
			"OR data->>'sync_id' = $2) %s ORDER BY seq DESC "
			"LIMIT 1",
	    extra ? extra : "");
	char *v = h_sql_value(db, q, (const char *[]){ type, id, NULL });
	struct json_object *o = v ? json_tokener_parse(v) : NULL;

	free(q);
	free(v);
	return o;
}

/* Every event body stored so far holds no secret. */
static void
check_no_leaks(const char *what)
{
	char *all = h_sql_value(db,
	    "SELECT coalesce(string_agg(data::text, ' '), '') FROM event_log",
	    NULL);

	CHECK(all != NULL && h_leaks(all, strlen(all)) == 0,
	    "%s: no token, code or key in any event", what);
	free(all);
}

/* Whether column col of connection cid is SQL NULL. */
static bool
conn_null(const char *cid, const char *col)
{
	char *q = h_fmt("SELECT %s IS NULL FROM connections WHERE id = $1",
	    col);
	bool is = h_sql_true(db, q, (const char *[]){ cid, NULL });

	free(q);
	return is;
}

/* ---- links that expire ---- */

static void
test_link_expiry(void)
{
	struct flow fl;
	struct json_object *d, *lk = NULL;
	struct h_resp r;
	char *st, *cid, *n;
	long k;

	CHECK(flow_open(fa, "u-exp-link", H_RETURN_URL, &fl),
	    "a link for u-exp-link");
	if (fl.link_id == NULL)
		return;
	CHECK(ev_count("link.completed", fl.link_id) == 0,
	    "no link.completed while it is pending");
	k = ev_wait("link.completed", fl.link_id, 1, 20000);
	CHECK(k == 1, "the link expired without a callback: one "
		      "link.completed (%ld)", k);
	d = ev_data("link.completed", fl.link_id, NULL);
	CHECK(h_streq(h_jstr(d, "status"), "expired") &&
	        h_streq(h_jstr(d, "link_id"), fl.link_id) &&
	        h_streq(h_jstr(d, "user_id"), "u-exp-link") &&
	        h_jnull(d, "connection_id") && h_jnull(d, "reason"),
	    "its data: link_id, user_id, status expired, no connection, no "
	    "reason");
	json_object_put(d);
	st = link_status(fb, fl.link_id, &lk);
	CHECK(h_streq(st, "expired") && h_jstr(lk, "completed_at") != NULL,
	    "GET /v1/links/{id}: expired, with completed_at (%s)",
	    st ? st : "-");
	free(st);
	json_object_put(lk);
	/* the widget approves it late: the callback finds it expired */
	fl.callback = h_widget(fl.location, "approve");
	if (fl.callback != NULL) {
		h_http("GET", fl.callback, NULL, NULL, 0, &r);
		CHECK(r.status != 0 && !loc_is(&r, "status", "connected"),
		    "its late callback does not connect (%ld)", r.status);
		h_resp_free(&r);
	}
	h_sleep_ms(2500);
	k = ev_count("link.completed", fl.link_id);
	CHECK(k == 1, "after its late callback and more scans of both "
		      "processes: still one link.completed (%ld)", k);
	flow_free(&fl);
	/* a link that connects in time: one event, connected, never expired */
	cid = h_connect_retry(fb, "u-exp-ok");
	CHECK(cid != NULL, "u-exp-ok connects in time");
	h_sleep_ms(5000); /* past its state's lifetime */
	n = h_sql_value(db,
	    "SELECT count(*)::text || ':' || string_agg(data->>'status', ',') "
	    "FROM event_log WHERE type = 'link.completed' AND "
	    "data->>'user_id' = 'u-exp-ok'",
	    NULL);
	CHECK(h_streq(n, "1:connected"),
	    "a link that connected: one link.completed, connected (%s)",
	    n ? n : "-");
	free(n);
	free(cid);
}

/* ---- connection.expiring ---- */

/* The planted deadline of cid's col as the event spells it. */
static char *
deadline_of(const char *cid, const char *col)
{
	char *q = h_fmt("SELECT to_char(%s AT TIME ZONE 'UTC', "
			"'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM connections "
			"WHERE id = $1",
	    col);
	char *v = h_sql_value(db, q, (const char *[]){ cid, NULL });

	free(q);
	return v;
}

static void
check_expiring(const char *cid, const char *what, const char *col)
{
	char *extra = h_fmt("AND data->>'what' = '%s'", what);
	struct json_object *d = ev_data("connection.expiring", cid, extra);
	char *want = deadline_of(cid, col);

	CHECK(d != NULL && h_streq(h_jstr(d, "connection_id"), cid) &&
	        h_streq(h_jstr(d, "user_id"), "u-expiring") &&
	        h_streq(h_jstr(d, "expires_at"), want),
	    "expiring %s: connection_id, user_id, expires_at %s (%s)", what,
	    want ? want : "-", d ? h_jstr(d, "expires_at") : "none");
	json_object_put(d);
	free(want);
	free(extra);
}

static void
test_expiring(void)
{
	char *cid = h_connect_retry(fa, "u-expiring");
	char *other = h_connect_retry(fb, "u-expiring-reauth");
	char *far = h_connect_retry(fa, "u-expiring-far");
	long k;

	if (cid == NULL || other == NULL || far == NULL)
		h_bail("cannot connect the expiring users");
	h_sleep_ms(2500);
	CHECK(ev_count("connection.expiring", far) == 0,
	    "deadlines 90 and 180 days away: no connection.expiring");
	CHECK(h_sql_do(db,
	          "UPDATE connections SET refresh_expires_at = now() + "
	          "interval '2 days', consent_expires_at = now() + interval "
	          "'3 days' WHERE id = $1",
	          (const char *[]){ cid, NULL }),
	    "plant a refresh token ending in 2 days, a consent in 3");
	h_sql_do(db,
	    "UPDATE connections SET status = 'reauth_required', "
	    "refresh_expires_at = now() + interval '1 day', "
	    "consent_expires_at = now() + interval '1 day' WHERE id = $1",
	    (const char *[]){ other, NULL });
	h_sql_do(db,
	    "UPDATE connections SET refresh_expires_at = now() - "
	    "interval '1 hour' WHERE id = $1",
	    (const char *[]){ far, NULL });
	k = ev_wait("connection.expiring", cid, 2, 15000);
	CHECK(k == 2, "two connection.expiring: refresh token and consent "
		      "(%ld)", k);
	check_expiring(cid, "refresh_token", "refresh_expires_at");
	check_expiring(cid, "consent", "consent_expires_at");
	h_sleep_ms(3000);
	k = ev_count("connection.expiring", cid);
	CHECK(k == 2, "more scans of both processes: still two (%ld)", k);
	CHECK(ev_count("connection.expiring", other) == 0,
	    "a reauth_required connection near its deadlines: none");
	CHECK(ev_count("connection.expiring", far) == 0,
	    "a refresh token already past its end: no expiring");
	/* a renewed refresh token: a new deadline, told again */
	h_sql_do(db,
	    "UPDATE connections SET refresh_expires_at = now() + "
	    "interval '4 days' WHERE id = $1",
	    (const char *[]){ cid, NULL });
	k = ev_wait("connection.expiring", cid, 3, 15000);
	CHECK(k == 3, "a renewed refresh-token deadline: expiring again "
		      "(%ld)", k);
	check_expiring(cid, "refresh_token", "refresh_expires_at");
	h_sleep_ms(2500);
	CHECK(ev_count("connection.expiring", cid) == 3,
	    "and only once for it");
	CHECK(h_sql_long(db,
	          "SELECT count(DISTINCT once_key) FROM event_log WHERE "
	          "type = 'connection.expiring' AND connection_id = $1 AND "
	          "once_key LIKE 'expiring:' || $1 || ':%'",
	          (const char *[]){ cid, NULL }) == 3,
	    "each with its own once_key expiring:<connection>:<what>:"
	    "<deadline>");
	free(cid);
	free(other);
	free(far);
}

/* ---- refresh_failing and recovered ---- */

static void
test_failing(void)
{
	char *cid = h_connect_retry(fa, "u-failing"), *code = NULL, *err;
	struct json_object *d;
	long k, fails, st;

	if (cid == NULL)
		h_bail("cannot connect u-failing");
	CHECK(sbx_ok(h_sbx_post("/_sandbox/faults",
	          "{\"path\":\"/auth/token\",\"mode\":\"status\","
	          "\"status\":503,\"duration_ms\":60000}")),
	    "the sandbox fails every token request for a minute");
	st = h_conn_post(fa, cid, "refresh", &code);
	CHECK(st >= 500, "POST .../refresh fails (%ld %s)", st,
	    code ? code : "-");
	free(code);
	code = NULL;
	fails = h_conn_long(db, cid, "consecutive_failures");
	CHECK(fails >= 1 && !conn_null(cid, "failing_since"),
	    "the failure is counted (%ld) and its streak has a start", fails);
	h_sleep_ms(2500);
	CHECK(ev_count("connection.refresh_failing", cid) == 0,
	    "failing for seconds, not an hour: no refresh_failing");
	h_sql_do(db,
	    "UPDATE connections SET failing_since = now() - interval "
	    "'61 minutes' WHERE id = $1",
	    (const char *[]){ cid, NULL });
	k = ev_wait("connection.refresh_failing", cid, 1, 15000);
	CHECK(k == 1, "failing for over an hour: one refresh_failing (%ld)",
	    k);
	d = ev_data("connection.refresh_failing", cid, NULL);
	fails = h_conn_long(db, cid, "consecutive_failures");
	err = h_conn_col(db, cid, "last_error");
	CHECK(d != NULL && h_streq(h_jstr(d, "connection_id"), cid) &&
	        h_streq(h_jstr(d, "user_id"), "u-failing") &&
	        h_jlong(d, "consecutive_failures", 0) >= 1 &&
	        h_jlong(d, "consecutive_failures", 0) <= fails &&
	        h_streq(h_jstr(d, "last_error"), err),
	    "its data: connection_id, user_id, consecutive_failures (%ld of "
	    "%ld), last_error", d ? h_jlong(d, "consecutive_failures", 0) : -1,
	    fails);
	json_object_put(d);
	free(err);
	h_sleep_ms(3000);
	CHECK(ev_count("connection.refresh_failing", cid) == 1,
	    "more scans and failures: still one refresh_failing");
	CHECK(ev_count("connection.recovered", cid) == 0,
	    "no recovered while it fails");
	h_sbx_delete("/_sandbox/faults");
	st = h_conn_post(fb, cid, "refresh", &code);
	CHECK(st == 200, "the sandbox answers again: POST .../refresh 200 "
			 "(%ld %s)", st, code ? code : "-");
	free(code);
	k = ev_wait("connection.recovered", cid, 1, 5000);
	CHECK(k == 1, "one connection.recovered (%ld)", k);
	d = ev_data("connection.recovered", cid, NULL);
	CHECK(d != NULL && h_streq(h_jstr(d, "connection_id"), cid) &&
	        h_streq(h_jstr(d, "user_id"), "u-failing") &&
	        json_object_object_length(d) == 2,
	    "its data: connection_id and user_id");
	json_object_put(d);
	CHECK(conn_null(cid, "failing_since") &&
	        conn_null(cid, "failing_notice_at") &&
	        h_conn_long(db, cid, "consecutive_failures") == 0,
	    "the streak is over");
	st = h_conn_post(fa, cid, "refresh", NULL);
	h_sleep_ms(2500);
	CHECK(st == 200 && ev_count("connection.recovered", cid) == 1 &&
	        ev_count("connection.refresh_failing", cid) == 1,
	    "another refresh: still one recovered, one refresh_failing");
	free(cid);
}

/* ---- syncs ---- */

static long
post_sync(int i, const char *cid, char **sync_id, char **status,
    char **code)
{
	struct h_resp r;
	char *path = h_fmt("/v1/connections/%s/sync", cid);
	long st = h_api(i, "POST", path, NULL, &r);

	if (sync_id)
		*sync_id = h_dup(h_jstr(h_resp_json(&r), "sync_id"));
	if (status)
		*status = h_dup(h_jstr(h_resp_json(&r), "status"));
	if (code)
		*code = h_dup(h_err_code(&r));
	h_resp_free(&r);
	free(path);
	return st;
}

/* The status of sync sid by SQL (malloc'd) or NULL. */
static char *
sync_status(const char *sid)
{
	return h_sql_value(db, "SELECT status FROM syncs WHERE id = $1",
	    (const char *[]){ sid, NULL });
}

struct sync_end {
	const char *sid;
};

static bool
sync_closed(void *arg)
{
	char *st = sync_status(((struct sync_end *)arg)->sid);
	bool end = h_streq(st, "COMPLETED") || h_streq(st, "FAILED");

	free(st);
	return end;
}

/* Wait up to ms for sync sid to end; its status (malloc'd). */
static char *
sync_wait_end(const char *sid, long ms)
{
	struct sync_end w = { sid };

	h_wait_every(sync_closed, &w, ms, 200);
	return sync_status(sid);
}

struct racer {
	int inst;
	const char *cid;
	pthread_barrier_t *bar;
	long status;
	char *sync_id;
};

static void *
race(void *arg)
{
	struct racer *rc = arg;

	if (rc->bar != NULL)
		pthread_barrier_wait(rc->bar);
	rc->status = post_sync(rc->inst, rc->cid, &rc->sync_id, NULL, NULL);
	return NULL;
}

/* The finX access id of cid's accounts (malloc'd) or NULL. */
static char *
access_of(const char *cid)
{
	return h_sql_value(db,
	    "SELECT access_id FROM accounts WHERE connection_id = $1 AND "
	    "access_id IS NOT NULL LIMIT 1",
	    (const char *[]){ cid, NULL });
}

static char *
connect_pulled(int i, const char *user)
{
	char *cid = h_connect_retry(i, user);

	if (cid == NULL || !h_wait_pull_after(db, cid, "", 30))
		h_bail("cannot connect and pull %s", user);
	return cid;
}

static void
test_sync_race(void)
{
	char *cid = connect_pulled(fa, "u-sync-race"), *st;
	struct racer rc[6];
	pthread_t th[6];
	pthread_barrier_t bar;
	long n0 = h_sbx_stat("syncs_created");
	int i, same = 0;

	pthread_barrier_init(&bar, NULL, 6);
	for (i = 0; i < 6; i++) {
		rc[i] = (struct racer){ i % 2 ? fb : fa, cid, &bar, 0, NULL };
		pthread_create(&th[i], NULL, race, &rc[i]);
	}
	for (i = 0; i < 6; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&bar);
	for (i = 0; i < 6; i++)
		same += rc[i].status == 202 && rc[0].sync_id != NULL &&
		    h_streq(rc[i].sync_id, rc[0].sync_id);
	CHECK(same == 6, "6 concurrent POSTs on two processes: all 202 with "
			 "one sync_id (%d)", same);
	CHECK(h_sbx_stat("syncs_created") == n0 + 1,
	    "finX saw one sync (%ld)", h_sbx_stat("syncs_created") - n0);
	st = rc[0].sync_id ? sync_wait_end(rc[0].sync_id, 20000) : NULL;
	CHECK(h_streq(st, "COMPLETED"), "it completed (%s)", st ? st : "-");
	h_sleep_ms(1500);
	CHECK(rc[0].sync_id != NULL &&
	        ev_count("sync.completed", rc[0].sync_id) == 1 &&
	        ev_count("sync.failed", rc[0].sync_id) == 0,
	    "one sync.completed, no sync.failed");
	free(st);
	for (i = 0; i < 6; i++)
		free(rc[i].sync_id);
	free(cid);
}

/* finX refuses the start: the answer says so, the sync failed once. */
static void
test_sync_start_fails(void)
{
	char *cid = connect_pulled(fb, "u-sync-fail"), *sid = NULL, *code;
	char *access = access_of(cid);
	char *fault = h_fmt("{\"path\":\"/rest/accesses/%s/syncs\","
			    "\"mode\":\"status\",\"status\":500,\"count\":1}",
	    access);
	long st, k;

	h_sbx_post("/_sandbox/faults", fault);
	st = post_sync(fa, cid, NULL, NULL, &code);
	CHECK(st == 502 || st == 503, "finX fails the start: 502/503 (%ld %s)", st,
	    code ? code : "-");
	free(code);
	sid = h_sql_value(db,
	    "SELECT id FROM syncs WHERE connection_id = $1 ORDER BY "
	    "created_at DESC LIMIT 1",
	    (const char *[]){ cid, NULL });
	k = sid ? ev_wait("sync.failed", sid, 1, 3000) : -1;
	CHECK(k == 1, "its sync ended failed with one sync.failed (%ld)", k);
	free(sid);
	sid = NULL;
	st = post_sync(fb, cid, &sid, NULL, NULL);
	code = sid ? sync_wait_end(sid, 20000) : NULL;
	CHECK(st == 202 && h_streq(code, "COMPLETED"),
	    "the next POST starts a new sync that completes (%ld, %s)", st,
	    code ? code : "-");
	free(code);
	free(sid);
	free(fault);
	free(access);
	free(cid);
}

/*
 * A finxd killed while finX answers the start: the STARTING sync is
 * answered to others as it is, then ended as failed after its deadline
 * by another process, once; the next POST starts a new one.
 */
static void
test_sync_kill_start(void)
{
	char *cid = connect_pulled(fa, "u-sync-kill"), *sid, *sid2 = NULL, *st;
	char *deadline = NULL;
	char *access = access_of(cid);
	char *fault = h_fmt("{\"path\":\"/rest/accesses/%s/syncs\","
			    "\"mode\":\"delay\",\"delay_ms\":2500,\"count\":1}",
	    access);
	struct racer rc = { 0, cid, NULL, 0, NULL };
	pthread_t th;
	int fc = h_finxd_start();
	long killed_ms, took, k;

	rc.inst = fc;
	h_sbx_post("/_sandbox/faults", fault);
	pthread_create(&th, NULL, race, &rc);
	sid = NULL;
	for (k = 0; k < 40 && sid == NULL; k++) {
		h_sleep_ms(50);
		sid = h_sql_value(db,
		    "SELECT id FROM syncs WHERE connection_id = $1 AND status "
		    "= 'STARTING'",
		    (const char *[]){ cid, NULL });
	}
	CHECK(sid != NULL, "the start is a committed STARTING sync");
	deadline = sid ? h_sql_value(db, "SELECT next_poll_at::text FROM "
				      "syncs WHERE id = $1",
			     (const char *[]){ sid, NULL })
		       : NULL;
	h_sleep_ms(300);
	h_finxd_stop(fc, SIGKILL);
	killed_ms = h_now_ms();
	pthread_join(th, NULL);
	CHECK(rc.status == 0 || rc.status >= 500,
	    "the killed process never answered 202 (%ld)", rc.status);
	free(rc.sync_id);
	if (sid == NULL)
		goto out;
	k = post_sync(fb, cid, &sid2, &st, NULL);
	CHECK(k == 202 && h_streq(sid2, sid) && h_streq(st, "queued"),
	    "a POST meanwhile: 202 with the starting sync's id, queued (%ld, "
	    "%s)", k, st ? st : "-");
	free(st);
	free(sid2);
	sid2 = NULL;
	st = sync_wait_end(sid, 30000);
	took = h_now_ms() - killed_ms;
	CHECK(h_streq(st, "FAILED"), "another process ended it (%s after "
				     "%ld ms)", st ? st : "-", took);
	CHECK(deadline != NULL &&
	        h_sql_true(db,
	            "SELECT ended_at >= $2::timestamptz FROM syncs WHERE "
	            "id = $1",
	            (const char *[]){ sid, deadline, NULL }),
	    "not before its claim's deadline");
	free(st);
	h_sleep_ms(1500);
	k = ev_count("sync.failed", sid);
	CHECK(k == 1, "one sync.failed (%ld)", k);
	st = h_sql_value(db, "SELECT error->>'message' FROM syncs WHERE id = $1",
	    (const char *[]){ sid, NULL });
	CHECK(st != NULL && strstr(st, "interrupted") != NULL,
	    "its error: the start was interrupted (%s)", st ? st : "-");
	free(st);
	k = post_sync(fa, cid, &sid2, NULL, NULL);
	st = sid2 ? sync_wait_end(sid2, 20000) : NULL;
	CHECK(k == 202 && sid2 != NULL && !h_streq(sid2, sid) &&
	        h_streq(st, "COMPLETED"),
	    "the next POST starts a new sync that completes (%ld, %s)", k,
	    st ? st : "-");
	free(st);
out:
	free(deadline);
	free(sid);
	free(sid2);
	free(fault);
	free(access);
	free(cid);
}

/*
 * A finxd killed while finX answers its poll, alone (the others are
 * stopped so the claim is surely its own): a new process takes the sync
 * over once the claim's deadline passed, and it completes once.
 */
static void
test_sync_kill_poll(void)
{
	char *cid = connect_pulled(fa, "u-poll-kill"), *sid = NULL, *st;
	char *access = access_of(cid);
	char *fault = h_fmt("{\"path\":\"/rest/accesses/%s/syncs/\","
			    "\"mode\":\"delay\",\"delay_ms\":2500,"
			    "\"duration_ms\":8000}",
	    access);
	char *polls = NULL, *deadline, *fsid;
	int fc, fd;
	long k, polls0;

	h_finxd_stop(fa, SIGTERM);
	h_finxd_stop(fb, SIGTERM);
	fc = h_finxd_start();
	h_sbx_post("/_sandbox/faults", fault);
	k = post_sync(fc, cid, &sid, NULL, NULL);
	CHECK(k == 202 && sid != NULL, "a sync on a process alone (%ld)", k);
	if (sid == NULL)
		goto out;
	fsid = h_sql_value(db, "SELECT finx_sync_id FROM syncs WHERE id = $1",
	    (const char *[]){ sid, NULL });
	polls = h_fmt("/rest/accesses/%s/syncs/%s", access, fsid ? fsid : "");
	free(fsid);
	polls0 = h_sbx_count(polls);
	/* its first poll is under way (claimed, finX slow) */
	for (k = 0; k < 60; k++) {
		h_sleep_ms(100);
		if (h_sql_true(db, "SELECT claim IS NOT NULL AND status <> "
				   "'STARTING' FROM syncs WHERE id = $1",
			(const char *[]){ sid, NULL }))
			break;
	}
	deadline = h_sql_value(db,
	    "SELECT next_poll_at::text FROM syncs WHERE id = $1",
	    (const char *[]){ sid, NULL });
	CHECK(deadline != NULL && k < 60, "a poll claimed it");
	h_sleep_ms(300);
	h_finxd_stop(fc, SIGKILL);
	h_sbx_delete("/_sandbox/faults");
	fd = h_finxd_start();
	fa = fd;
	fb = h_finxd_start();
	st = sync_wait_end(sid, 40000);
	CHECK(h_streq(st, "COMPLETED"), "another process took it over: "
					"completed (%s)", st ? st : "-");
	free(st);
	CHECK(deadline != NULL &&
	        h_sql_true(db,
	            "SELECT ended_at >= $2::timestamptz FROM syncs WHERE "
	            "id = $1",
	            (const char *[]){ sid, deadline, NULL }),
	    "not before the dead claim's deadline");
	h_sleep_ms(1500);
	k = ev_count("sync.completed", sid);
	CHECK(k == 1 && ev_count("sync.failed", sid) == 0,
	    "one sync.completed (%ld)", k);
	k = h_sbx_count(polls);
	CHECK(k >= polls0 + 2, "finX was polled by the killed process and "
			       "again by another (%ld)", k - polls0);
	free(deadline);
out:
	free(polls);
	free(sid);
	free(fault);
	free(access);
	free(cid);
}

int
main(void)
{
	const char *sbx_args[] = { "--sync-step-ms", "300", NULL };

	h_init("it_events_workers", 280);
	db = h_setup(sbx_args);
	h_env_set("FINXD_LOG_LEVEL", "info");
	h_env_set("FINXD_REFRESH_INTERVAL", "1");
	h_env_set("FINXD_SYNC_INTERVAL", "3600");
	h_env_set("FINXD_STATE_TTL", "4");
	h_env_set("FINXD_FINX_TIMEOUT_MS", "3000");
	h_env_set("FINXD_FINX_CONNECT_TIMEOUT_MS", "1000");
	fa = h_finxd_start();
	fb = h_finxd_start();

	test_link_expiry();
	test_expiring();
	test_failing();
	test_sync_race();
	test_sync_start_fails();
	test_sync_kill_start();
	test_sync_kill_poll();
	check_no_leaks("after every scan");
	return h_done(test_done());
}
