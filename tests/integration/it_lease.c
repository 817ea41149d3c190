/*
 * Refresh leases, the compare-and-set store, the rescue journal and the
 * refresh policy (issue 11, server/REFRESH.md), against real processes:
 * a private PostgreSQL that the test stops and starts, finx-sandbox with
 * rotating refresh tokens and a slow token endpoint, finxd serve.
 *
 *   lease:    a standing lease is respected; a live holder is never
 *             overtaken, even after its lease ran out; a dead one is, once
 *             its heartbeat is stale and the taker has been connected long
 *             enough.
 *   cas:      a DELETE and a reauth while a refresh is in flight: the
 *             rotation never overwrites them and goes to revocation.
 *   journal:  finX rotated, PostgreSQL down, the process killed with -9,
 *             PostgreSQL back, the process restarted: still active with the
 *             rotated token.  The same with SIGTERM: the rotation waits in
 *             the journal.
 *   expiry:   access_expires_at counts from the request, not the store.
 *   policy:   idle connections are not rotated; a connection read every
 *             2 s never waits on a 300 ms token endpoint; a cold read
 *             still gets a valid token.
 */
#include "it_common.h"

#include <ctype.h>
#include <dirent.h>
#include <pthread.h>
#include <time.h>

#define ACCESS_TTL 20

static const char *db;
static int f0, f1;

static char *
make_conn(int f, const char *user)
{
	char *cid = h_connect_retry(f, user);

	if (cid == NULL)
		h_bail("could not connect %s", user);
	return cid;
}

/* A POST .../refresh on another thread, for "while a refresh is in
 * flight". */
struct bg_post {
	pthread_t t;
	int f;
	const char *cid;
	long status;
};

static void *
bg_post_run(void *arg)
{
	struct bg_post *b = arg;

	b->status = h_conn_post(b->f, b->cid, "refresh", NULL);
	return NULL;
}

static void
bg_post_start(struct bg_post *b, int f, const char *cid)
{
	b->f = f;
	b->cid = cid;
	b->status = 0;
	if (pthread_create(&b->t, NULL, bg_post_run, b) != 0)
		h_bail("pthread_create");
}

static bool
token_requests_reached(void *want)
{
	return h_sbx_count("/auth/token") >= *(int *)want;
}

/* Wait (bounded) until the sandbox has received n more token requests. */
static bool
wait_token_requests(int before, int n, long ms)
{
	int want = before + n;

	return h_wait_until(token_requests_reached, &want, ms);
}

/* ---- leases --------------------------------------------------------- */

/* Put a lease of process pid (heartbeat age hb_age s, may be negative:
 * a heartbeat "in the future" stays fresh while the test waits) on cid,
 * running out in until_s seconds; the connection due in due_s. */
static bool
plant_lease(const char *cid, const char *pid, int hb_age, int until_s,
    int due_s)
{
	char hb[16], until[16], due[16];

	snprintf(hb, sizeof(hb), "%d", hb_age);
	snprintf(until, sizeof(until), "%d", until_s);
	snprintf(due, sizeof(due), "%d", due_s);
	return h_sql_do(db,
	           "INSERT INTO finxd_processes (id, host, pid, version, "
	           "heartbeat_at) VALUES ($1, 'test', 1, 'test', now() - "
	           "make_interval(secs => $2::int)) ON CONFLICT (id) DO "
	           "UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at",
	           (const char *[]){ pid, hb, NULL }) &&
	    h_sql_do(db,
	        "UPDATE connections SET lease_holder = $2, lease_until = "
	        "now() + make_interval(secs => $3::int), lease_generation = "
	        "token_generation, refresh_due_at = now() + "
	        "make_interval(secs => $4::int) WHERE id = $1",
	        (const char *[]){ cid, pid, until, due, NULL });
}

static bool
refreshes_moved(void *from)
{
	return h_sbx_stat("refreshes") != *(long *)from;
}

static void
test_lease(long started_ms)
{
	const char *dead = "00000000-0000-4000-8000-00000000dead";
	const char *alive = "00000000-0000-4000-8000-0000000a11fe";
	char *cid = make_conn(f0, "u-lease"), *cid2 = make_conn(f0, "u-lease2");
	long ref0 = h_sbx_stat("refreshes"), st,
	     gen0 = h_conn_long(db, cid, "token_generation");
	struct h_resp r;

	/* A standing lease of another (dead) process: nobody presents. */
	/* Not due for the workers: only the on-demand path meets it. */
	CHECK(plant_lease(cid, dead, 3600, 8, 86400), "lease: a dead process's "
						      "lease planted, 8 s left");
	st = h_conn_api(f0, "POST", cid, "refresh", &r);
	CHECK(st == 503, "lease: POST refresh while another holder's lease "
			 "stands waits, then answers 503 (got %ld, %s)",
	    st, h_err_code(&r) ? h_err_code(&r) : "-");
	h_resp_free(&r);
	CHECK(h_sbx_stat("refreshes") == ref0, "lease: finX saw no refresh "
					      "meanwhile");
	/* Run out, holder's heartbeat stale, and f0 connected > 15 s. */
	while (h_now_ms() < started_ms + 17000)
		h_sleep_ms(200);
	h_sleep_ms(3500);
	st = h_conn_post(f0, cid, "refresh", NULL);
	CHECK(st == 200, "lease: taken over once run out and the holder's "
			 "heartbeat is stale (got %ld)",
	    st);
	CHECK(h_sbx_stat("refreshes") == ref0 + 1 &&
	        h_conn_long(db, cid, "token_generation") == gen0 + 1,
	    "lease: exactly one refresh, one new generation");
	CHECK(h_log_contains("took over the refresh lease"),
	    "lease: the takeover is logged");
	{
		char *h = h_conn_col(db, cid, "lease_holder");

		CHECK(h == NULL, "lease: the store cleared the lease");
		free(h);
	}

	/* A live holder (fresh heartbeat) whose lease ran out: still its. */
	ref0 = h_sbx_stat("refreshes");
	CHECK(plant_lease(cid2, alive, -40, -1, -1), "lease: a live process's "
						     "lease, run out 1 s ago, due");
	h_sql_do(db,
	    "UPDATE connections SET access_expires_at = now() - interval "
	    "'1 s' WHERE id = $1",
	    (const char *[]){ cid2, NULL });
	st = h_conn_post(f0, cid2, "refresh", NULL);
	CHECK(st == 503, "lease: a live holder is not overtaken, even after "
			 "its lease ran out (got %ld)",
	    st);
	h_sleep_ms(2500); /* the workers poll every second meanwhile */
	CHECK(h_sbx_stat("refreshes") == ref0,
	    "lease: no worker of any process presented its token");
	/* Its heartbeat stops: 15 s later it counts as gone. */
	h_sql_do(db,
	    "UPDATE finxd_processes SET heartbeat_at = now() - interval "
	    "'1 hour' WHERE id = $1",
	    (const char *[]){ alive, NULL });
	h_wait_every(refreshes_moved, &ref0, 10000, 200);
	CHECK(h_sbx_stat("refreshes") == ref0 + 1,
	    "lease: once its holder is gone, a worker takes it over and "
	    "refreshes once");
	free(cid);
	free(cid2);
}

/* ---- compare-and-set ------------------------------------------------ */

static void
test_cas_delete(void)
{
	char *cid = make_conn(f0, "u-cas-del");
	int before = h_sbx_count("/auth/token");
	int rev0 = h_sbx_count("/auth/revoke");
	struct bg_post b;
	struct h_resp r;
	char *left;

	CHECK(h_sbx_config("{\"token_latency_ms\":2000}"), "cas: token endpoint "
							  "takes 2 s");
	/* finX refuses the first revocations, so the old grant is still
	 * alive when the rotation comes back: the store must see the
	 * deletion and send the rotated tokens to revocation too. */
	CHECK(sbx_ok(h_sbx_post("/_sandbox/faults",
	          "{\"path\":\"/auth/revoke\",\"mode\":\"status\","
	          "\"status\":503,\"count\":2}")),
	    "cas: /auth/revoke fails twice");
	bg_post_start(&b, f0, cid);
	CHECK(wait_token_requests(before, 1, 5000), "cas: refresh in flight");
	h_conn_api(f1, "DELETE", cid, NULL, &r);
	CHECK(r.status == 200 && r.ms < 1500,
	    "cas: DELETE answers at once while the refresh is in flight (%ld "
	    "in %ld ms)",
	    r.status, r.ms);
	h_resp_free(&r);
	pthread_join(b.t, NULL);
	h_sbx_config("{\"token_latency_ms\":0}");
	left = h_conn_col(db, cid, "status");
	CHECK(left != NULL && strcmp(left, "revoked") == 0 &&
	        h_conn_long(db, cid, "length(coalesce(refresh_token, ''))") ==
	            0,
	    "cas: the rotation did not overwrite the deletion (%s)",
	    left ? left : "-");
	free(left);
	CHECK(h_log_contains("changed while its refresh was in flight"),
	    "cas: the conflict is logged");
	h_wait_every(h_revocations_gone, cid, 30000, 250);
	CHECK(h_sbx_count("/auth/revoke") >= rev0 + 2 + 4,
	    "cas: the old tokens and the rotated ones went to /auth/revoke "
	    "(%d requests, 2 of them refused)",
	    h_sbx_count("/auth/revoke") - rev0);
	{
		struct json_object *g = h_sbx_get("/_sandbox/grants?user_id="
						  "u-cas-del");

		CHECK(h_stat_of(g, "active") == 0,
		    "cas: no grant of the deleted connection is alive at finX "
		    "(%ld active)",
		    h_stat_of(g, "active"));
		json_object_put(g);
	}
	h_sbx_delete("/_sandbox/faults");
	free(cid);
}

static void
test_cas_reauth(void)
{
	char *cid = make_conn(f0, "u-cas-reauth"), *tok = NULL, *lid;
	int before = h_sbx_count("/auth/token");
	struct bg_post b;
	struct h_resp r;
	struct flow fl = { 0 };
	long gen;

	CHECK(h_sbx_config("{\"token_latency_ms\":1500}"), "cas: token endpoint "
							  "takes 1.5 s");
	bg_post_start(&b, f0, cid);
	CHECK(wait_token_requests(before, 1, 5000), "cas: refresh in flight");
	/* The user logs in again meanwhile (reauth link, widget, callback). */
	h_reauth(f1, cid, &r);
	lid = h_dup(h_jstr(h_resp_json(&r), "link_id"));
	fl.location = h_dup(h_jstr(h_resp_json(&r), "location"));
	h_resp_free(&r);
	fl.callback = fl.location ? h_widget(fl.location, "approve") : NULL;
	if (fl.callback != NULL) {
		h_http("GET", fl.callback, NULL, NULL, 0, &r);
		CHECK(r.status == 303 && loc_is(&r, "status", "connected"),
		    "cas: reauth callback connected (got %ld)", r.status);
		h_resp_free(&r);
	} else
		CHECK(0, "cas: reauth widget did not redirect");
	gen = h_conn_long(db, cid, "token_generation");
	pthread_join(b.t, NULL);
	h_sbx_config("{\"token_latency_ms\":0}");
	CHECK(h_conn_long(db, cid, "token_generation") == gen,
	    "cas: the old grant's rotation did not overwrite the new grant");
	CHECK(h_token_get(f0, cid, &tok, NULL) == 200 && h_token_works(tok),
	    "cas: the new grant's token works");
	free(tok);
	CHECK(h_conn_post(f0, cid, "refresh", NULL) == 200 &&
	        h_conn_post(f1, cid, "refresh", NULL) == 200,
	    "cas: the new grant refreshes twice in a row");
	CHECK(h_sbx_stat("refresh_reuse") == 0,
	    "cas: the sandbox never saw a superseded refresh token");
	flow_free(&fl);
	free(lid);
	free(cid);
}

/* ---- the rescue journal ---------------------------------------------- */

/* Files named rescue-*.json in dir. */
static int
journal_files(const char *dir, char **first)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	if (first != NULL)
		*first = NULL;
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);

		if (strncmp(de->d_name, "rescue-", 7) == 0 && l > 5 &&
		    strcmp(de->d_name + l - 5, ".json") == 0) {
			if (first != NULL && *first == NULL &&
			    asprintf(first, "%s/%s", dir, de->d_name) < 0)
				h_bail("out of memory");
			n++;
		}
	}
	closedir(d);
	return n;
}

struct journal_wait {
	const char *dir;
	int want;
};

static bool
journal_has(void *arg)
{
	struct journal_wait *w = arg;

	return journal_files(w->dir, NULL) == w->want;
}

static bool
wait_journal(const char *dir, int want, long ms)
{
	struct journal_wait w = { dir, want };

	return h_wait_every(journal_has, &w, ms, 100);
}

/*
 * A journal file of a rotation that landed long ago comes back (a crash
 * before its removal reached the disk), as a .tmp that was never renamed:
 * the next start recovers and replays it, finds the same grant already
 * past that generation, and must neither overwrite nor revoke anything.
 */
static void
replay_landed(const char *dir, const char *file, const char *saved,
    size_t len, const char *cid)
{
	char *tmp = NULL, *idfile = NULL, *pid = NULL, *fresh;
	long gen = h_conn_long(db, cid, "token_generation"), rev;
	FILE *fp;
	int g;

	if (asprintf(&tmp, "%s.tmp", file) < 0 ||
	    asprintf(&idfile, "%s/process-id", dir) < 0)
		h_bail("out of memory");
	fp = fopen(tmp, "w");
	CHECK(fp != NULL && fwrite(saved, 1, len, fp) == len && fclose(fp) == 0,
	    "replay: an old rotation's journal file is back (as .tmp)");
	rev = h_sbx_count("/auth/revoke");
	g = h_finxd_start();
	CHECK(wait_journal(dir, 0, 15000) && journal_files(dir, NULL) == 0,
	    "replay: the new process replayed it and emptied the journal");
	h_sleep_ms(1000);
	CHECK(h_conn_long(db, cid, "token_generation") == gen &&
	        h_sbx_count("/auth/revoke") == rev,
	    "replay: nothing overwritten, nothing revoked");
	CHECK(h_conn_post(g, cid, "refresh", NULL) == 200,
	    "replay: the live grant still refreshes");
	fp = fopen(idfile, "r");
	if (fp != NULL) {
		char buf[64] = "";

		if (fgets(buf, sizeof(buf), fp) != NULL)
			buf[strcspn(buf, "\n")] = '\0';
		pid = strdup(buf);
		fclose(fp);
	}
	fresh = pid ? h_sql_value(db, "SELECT count(*) FROM finxd_processes "
				      "WHERE id::text = $1 AND heartbeat_at > "
				      "now() - interval '10 s'",
			  (const char *[]){ pid, NULL })
		    : NULL;
	CHECK(fresh != NULL && strcmp(fresh, "1") == 0,
	    "replay: the process id kept in the state directory is the one "
	    "heartbeating after the restart");
	free(fresh);
	free(pid);
	h_finxd_stop(g, SIGTERM);
	free(tmp);
	free(idfile);
}

/* Ids in upper case reach the same connection, and leave nothing
 * behind in the in-flight set; readers respect a failure's backoff. */
static void
test_ids_and_backoff(void)
{
	char *cid = make_conn(f0, "u-upper"), up[64], *tok = NULL;
	long before, st, ms;
	size_t i;

	for (i = 0; cid[i] != '\0' && i < sizeof(up) - 1; i++)
		up[i] = (char)toupper((unsigned char)cid[i]);
	up[i] = '\0';
	CHECK(h_conn_post(f0, up, "refresh", NULL) == 200,
	    "ids: POST refresh with the id in upper case");
	CHECK(h_token_get(f0, up, &tok, &ms) == 200 && h_token_works(tok),
	    "ids: GET token with the id in upper case hands out a working "
	    "token");
	free(tok);
	tok = NULL;
	st = h_conn_post(f0, cid, "refresh", NULL);
	CHECK(st == 200, "ids: and the lower-case id refreshes at once after "
			 "(got %ld): nothing left in flight",
	    st);
	/* A failed refresh's backoff: readers of an expired token do not
	 * call finX again until it runs out. */
	h_sql_do(db,
	    "UPDATE connections SET access_expires_at = now() - interval "
	    "'1 s', next_attempt_at = now() + interval '1 hour', "
	    "consecutive_failures = 3 WHERE id = $1",
	    (const char *[]){ cid, NULL });
	before = h_sbx_count("/auth/token");
	st = h_token_get(f1, cid, NULL, &ms);
	CHECK(st == 503 && h_sbx_count("/auth/token") == before,
	    "backoff: a reader of an expired token during a backoff gets 503 "
	    "without a finX call (got %ld in %ld ms)",
	    st, ms);
	CHECK(h_conn_post(f1, cid, "refresh", NULL) == 200,
	    "backoff: an admin's POST refresh still goes through");
	free(cid);
}

/*
 * finX rotates while PostgreSQL is down; the process then dies (sig 9)
 * or is stopped (SIGTERM, which waits for PostgreSQL up to its drain
 * bound and leaves the rotation in the journal); PostgreSQL comes back;
 * a new process on the same state directory stores the rotation.
 */
static void
test_journal(int sig)
{
	char *dir = h_path("state"), *file = NULL, *tok = NULL, user[32];
	char *saved = NULL;
	size_t saved_len = 0;
	const char *what = sig == SIGKILL ? "kill -9" : "SIGTERM";
	int before, f, g;
	struct bg_post b;
	long gen0, rc;
	char *cid;

	snprintf(user, sizeof(user), "u-journal-%d", sig);
	h_env_set("FINXD_STATE_DIR", dir);
	h_env_set("FINXD_DRAIN_TIMEOUT", "3");
	f = h_finxd_start();
	cid = make_conn(f, user);
	gen0 = h_conn_long(db, cid, "token_generation");
	before = h_sbx_count("/auth/token");
	CHECK(h_sbx_config("{\"token_latency_ms\":2500}"), "journal (%s): "
							  "token endpoint "
							  "takes 2.5 s",
	    what);
	bg_post_start(&b, f, cid);
	CHECK(wait_token_requests(before, 1, 5000), "journal (%s): refresh in "
						   "flight",
	    what);
	CHECK(h_pg_ctl("stop") == 0, "journal (%s): PostgreSQL stopped while "
				     "finX rotates",
	    what);
	pthread_join(b.t, NULL);
	h_sbx_config("{\"token_latency_ms\":0}");
	CHECK(b.status == 503, "journal (%s): the refresh answers 503: "
			       "rotated, not stored (got %ld)",
	    what, b.status);
	CHECK(journal_files(dir, &file) == 1, "journal (%s): the rotation is in "
					      "the journal",
	    what);
	if (file != NULL) {
		FILE *fp = fopen(file, "r");

		if (fp != NULL) {
			saved = calloc(1, 65536);
			saved_len = fread(saved, 1, 65535, fp);
			fclose(fp);
		}
		CHECK(saved != NULL && saved_len > 0 &&
		        h_leaks(saved, saved_len) == 0,
		    "journal (%s): it holds no token in plain text", what);
	}
	{
		struct h_resp m;
		char *url = NULL;

		if (asprintf(&url, "%s/metrics", h_finxd_url(f)) < 0)
			h_bail("out of memory");
		h_http("GET", url, NULL, NULL, 0, &m);
		CHECK(m.body != NULL && strstr(m.body, "\nfinxd_rescue_pending 1\n"),
		    "journal (%s): /metrics counts one rotation pending", what);
		h_resp_free(&m);
		free(url);
	}
	rc = h_finxd_stop(f, sig);
	CHECK(sig == SIGKILL ? rc == 128 + SIGKILL : rc == 0,
	    "journal (%s): the process ended (status %ld)", what, rc);
	CHECK(journal_files(dir, NULL) == 1, "journal (%s): the rotation is "
					     "still in the journal",
	    what);
	if (sig == SIGTERM)
		CHECK(h_log_contains("left in the rescue journal"),
		    "journal (SIGTERM): it said so");
	CHECK(h_pg_ctl("start") == 0, "journal (%s): PostgreSQL back", what);
	g = h_finxd_start();
	CHECK(wait_journal(dir, 0, 15000), "journal (%s): the new process "
					   "stored it and emptied the journal",
	    what);
	{
		char *st = h_conn_col(db, cid, "status");

		CHECK(st != NULL && strcmp(st, "active") == 0 &&
		        h_conn_long(db, cid, "token_generation") == gen0 + 1,
		    "journal (%s): the connection is active with the rotated "
		    "tokens (%s)",
		    what, st ? st : "-");
		free(st);
	}
	CHECK(h_token_get(g, cid, &tok, NULL) == 200 && h_token_works(tok),
	    "journal (%s): its access token works", what);
	free(tok);
	CHECK(h_conn_post(g, cid, "refresh", NULL) == 200,
	    "journal (%s): the rotated refresh token refreshes", what);
	CHECK(h_sbx_stat("refresh_reuse") == 0,
	    "journal (%s): no superseded token was ever presented", what);
	h_finxd_stop(g, SIGTERM);
	if (sig == SIGKILL && saved != NULL)
		replay_landed(dir, file, saved, saved_len, cid);
	h_env_set("FINXD_STATE_DIR", NULL);
	h_env_set("FINXD_DRAIN_TIMEOUT", NULL);
	free(saved);
	free(file);
	free(dir);
	free(cid);
}

/* ---- expiry from the request time ------------------------------------ */

static void
test_expiry(void)
{
	char *cid = make_conn(f0, "u-expiry"), *ok;

	CHECK(h_sbx_config("{\"token_latency_ms\":1500}"), "expiry: token "
							  "endpoint takes 1.5 s");
	h_sql_do(db, "CREATE TABLE IF NOT EXISTS t_mark (at timestamptz)",
	    NULL);
	h_sql_do(db, "INSERT INTO t_mark VALUES (clock_timestamp())", NULL);
	CHECK(h_conn_post(f0, cid, "refresh", NULL) == 200,
	    "expiry: refreshed");
	h_sbx_config("{\"token_latency_ms\":0}");
	/* finX counts expires_in from its answer, about 1.5 s after the
	 * request; finxd must count from the request, earlier still. */
	ok = h_sql_value(db,
	    "SELECT c.access_expires_at <= m.at + make_interval(secs => "
	    "c.access_lifetime_s) + interval '300 ms' FROM connections c, "
	    "t_mark m WHERE c.id = $1",
	    (const char *[]){ cid, NULL });
	CHECK(ok != NULL && strcmp(ok, "t") == 0,
	    "expiry: access_expires_at counts from the request, not the store");
	free(ok);
	h_sql_do(db, "DROP TABLE t_mark", NULL);
	free(cid);
}

/* ---- the refresh policy ---------------------------------------------- */

#define NIDLE 10

static void
test_policy(void)
{
	char *idle[NIDLE], *hot, *cold, *tok = NULL, user[32], *v;
	long end, reads = 0, slow = 0, invalid = 0, maxms = 0, ms, gen0;
	int i;

	CHECK(h_sbx_config("{\"token_latency_ms\":300}"), "policy: token "
							 "endpoint takes 300 ms");
	for (i = 0; i < NIDLE; i++) {
		snprintf(user, sizeof(user), "u-idle-%d", i);
		idle[i] = make_conn(i % 2 ? f1 : f0, user);
	}
	hot = make_conn(f0, "u-hot");
	cold = make_conn(f1, "u-cold");
	gen0 = h_conn_long(db, hot, "token_generation");
	/* One read of the hot connection, then one every 2 s for 60 s. */
	end = h_now_ms() + 60000;
	while (h_now_ms() < end) {
		long t0 = h_now_ms(), st;

		st = h_token_get(reads % 2 ? f1 : f0, hot, &tok, &ms);
		if (reads > 0) { /* the first read may refresh: a cold read */
			if (st != 200 || !h_token_works(tok))
				invalid++;
			if (ms >= 250)
				slow++;
			if (ms > maxms)
				maxms = ms;
		}
		free(tok);
		tok = NULL;
		reads++;
		h_sleep_ms(2000 - (h_now_ms() - t0) > 0 ? 2000 - (h_now_ms() - t0)
							: 1);
	}
	v = h_sql_value(db,
	    "SELECT coalesce(sum(token_generation - 1), -1) FROM connections "
	    "WHERE user_id LIKE 'u-idle-%'",
	    NULL);
	CHECK(v != NULL && strtol(v, NULL, 10) <= NIDLE,
	    "policy: %d idle connections with %d s tokens got %s refreshes in "
	    "60 s (at most %d)",
	    NIDLE, ACCESS_TTL, v ? v : "?", NIDLE);
	free(v);
	CHECK(invalid == 0, "policy: every token handed out worked (%ld reads, "
			    "%ld failed)",
	    reads - 1, invalid);
	CHECK(slow == 0,
	    "policy: a connection read every 2 s never waited on the 300 ms "
	    "token endpoint (%ld of %ld reads took 250 ms or more; max %ld "
	    "ms)",
	    slow, reads - 1, maxms);
	CHECK(h_conn_long(db, hot, "token_generation") - gen0 >=
	        60 / ACCESS_TTL,
	    "policy: it was refreshed ahead of expiry meanwhile (%ld times)",
	    h_conn_long(db, hot, "token_generation") - gen0);
	/* The cold connection's token expired long ago: a read refreshes. */
	CHECK(h_token_get(f0, cold, &tok, &ms) == 200 && h_token_works(tok),
	    "policy: a cold read still returns a valid token (%ld ms)", ms);
	free(tok);
	h_sbx_config("{\"token_latency_ms\":0}");
	for (i = 0; i < NIDLE; i++)
		free(idle[i]);
	free(hot);
	free(cold);
}

int
main(void)
{
	const char *sbx[] = { "--access-ttl", "20", "--rotate", "on", NULL };
	long started;

	h_init("it_lease", 280);
	db = h_setup(sbx);
	h_env_set("FINXD_LOG_LEVEL", "info");
	h_env_set("FINXD_REFRESH_INTERVAL", "1");
	h_env_set("FINXD_FINX_TIMEOUT_MS", "3000");
	h_env_set("FINXD_FINX_CONNECT_TIMEOUT_MS", "1000");
	started = h_now_ms();
	f0 = h_finxd_start();
	f1 = h_finxd_start();

	/* Leases first, while no connection is hot: the sandbox's counters
	 * then see no refresh but the ones the test causes. */
	test_lease(started);
	test_expiry();
	test_cas_delete();
	test_cas_reauth();
	test_ids_and_backoff();
	test_policy();
	test_journal(SIGKILL);
	test_journal(SIGTERM);
	check_clean_shutdown();
	return h_done(test_done());
}
