/*
 * The headline refresh test (issue 3): three `finxd serve` processes on
 * one database, finx-sandbox issuing 20-second access tokens with rotating
 * refresh tokens, 30 connections made through the real widget flow.  For
 * about 75 s the background refreshers of all three processes keep the
 * connections alive while client threads hammer
 * GET /v1/connections/{id}/token on all three processes at random (an
 * on-demand refresh and the background refresher share one row lock and
 * must never both refresh).  At the end every connection is active, every
 * one was refreshed at least three times, the sandbox never saw a
 * superseded refresh token (refresh_reuse 0) nor answered invalid_grant,
 * every refresh the sandbox performed was stored by some process, and every
 * access token handed out worked at the sandbox.
 *
 * Do not weaken this test.
 */
#include "it_common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define NPROC 3
#define NCONN 30
#define RUN_MS 75000
#define NHAMMER 6

static const char *db;
static int fx[NPROC];
static char *conn_ids[NCONN];
static atomic_bool stop_hammer;

static struct {
	atomic_long requests;      /* GET .../token sent */
	atomic_long handed_out;    /* 200 with an access_token */
	atomic_long bad_status;    /* anything but 200 */
	atomic_long valid;         /* the token worked at the sandbox */
	atomic_long invalid;       /* it did not */
	atomic_long expired_given; /* expires_at not in the future */
	atomic_long per_proc[NPROC];
} hs;

/* Seconds since the epoch of "YYYY-MM-DDTHH:MM:SSZ"; -1 when odd. */
static long
iso_epoch(const char *s)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	if (s == NULL || strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm) == NULL)
		return -1;
	return (long)timegm(&tm);
}

static void *
hammer(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg * 7919u + (unsigned)time(NULL);

	while (!atomic_load(&stop_hammer)) {
		int c = (int)(rand_r(&seed) % NCONN);
		int p = (int)(rand_r(&seed) % NPROC);
		struct h_resp r;
		const char *tok;

		atomic_fetch_add(&hs.requests, 1);
		h_conn_api(fx[p], "GET", conn_ids[c], "token", &r);
		tok = h_jstr(h_resp_json(&r), "access_token");
		if (r.status != 200 || tok == NULL) {
			atomic_fetch_add(&hs.bad_status, 1);
			printf("# GET token on #%d answered %ld (%s)\n", p,
			    r.status, h_err_code(&r) ? h_err_code(&r) : "-");
		} else {
			long exp = iso_epoch(h_jstr(h_resp_json(&r),
			    "expires_at"));

			atomic_fetch_add(&hs.handed_out, 1);
			atomic_fetch_add(&hs.per_proc[p], 1);
			if (exp <= (long)time(NULL))
				atomic_fetch_add(&hs.expired_given, 1);
			if (h_token_works(tok))
				atomic_fetch_add(&hs.valid, 1);
			else
				atomic_fetch_add(&hs.invalid, 1);
		}
		h_resp_free(&r);
		h_sleep_ms((long)(rand_r(&seed) % 40));
	}
	return NULL;
}

/* finxd_refreshes_total{outcome="<outcome>"} of instance i; -1 on error. */
static long
proc_refreshes(int i, const char *outcome)
{
	char *series = h_fmt("finxd_refreshes_total{outcome=\"%s\"}", outcome);
	long n = h_metric(i, series);

	free(series);
	return n;
}

int
main(void)
{
	const char *sbx_args[] = { "--access-ttl", "20", "--rotate", "on",
		NULL };
	char *last[NCONN];
	int refreshed[NCONN];
	pthread_t th[NHAMMER];
	struct json_object *st;
	long t_end, sbx_refreshes, reuse, invalid_grants, proc_ok[NPROC],
	    proc_other[NPROC], sum_ok = 0, min_ref = 1000000, max_ref = 0;
	int i, active = 0, at_least3 = 0;
	PGresult *res;

	h_init("it_refresh_multi", 170);
	db = h_setup(sbx_args);
	h_env_set("FINXD_LOG_LEVEL", "info");
	h_env_set("FINXD_REFRESH_INTERVAL", "1");
	h_env_set("FINXD_REFRESH_CONCURRENCY", "4");
	h_env_set("FINXD_DB_POOL_SIZE", "6");
	for (i = 0; i < NPROC; i++)
		fx[i] = h_finxd_start();

	/* 30 users through the real flow, spread over the processes. */
	for (i = 0; i < NCONN; i++) {
		char user[32];

		snprintf(user, sizeof(user), "u-multi-%02d", i);
		conn_ids[i] = h_connect(fx[i % NPROC], user);
		if (conn_ids[i] == NULL)
			h_bail("could not connect %s", user);
		last[i] = NULL;
		refreshed[i] = 0;
	}
	CHECK(1, "%d connections made through the widget flow on %d "
		 "processes", NCONN, NPROC);
	st = h_sbx_get("/_sandbox/stats");
	CHECK(h_stat_of(st, "codes_exchanged") == NCONN,
	    "sandbox exchanged %ld codes", h_stat_of(st, "codes_exchanged"));
	json_object_put(st);

	for (i = 0; i < NHAMMER; i++)
		if (pthread_create(&th[i], NULL, hammer,
			(void *)(uintptr_t)(i + 1)) != 0)
			h_bail("pthread_create failed");

	/* Watch every connection's last_refresh_at once a second. */
	t_end = h_now_ms() + RUN_MS;
	while (h_now_ms() < t_end) {
		res = h_sql(db,
		    "SELECT id, coalesce(to_char(last_refresh_at, "
		    "'YYYY-MM-DD HH24:MI:SS.US'), '') FROM connections",
		    NULL);
		for (i = 0; res != NULL && i < PQntuples(res); i++) {
			int k;

			for (k = 0; k < NCONN; k++)
				if (strcmp(conn_ids[k], PQgetvalue(res, i, 0)) ==
				    0)
					break;
			if (k == NCONN || PQgetvalue(res, i, 1)[0] == '\0')
				continue;
			if (last[k] == NULL ||
			    strcmp(last[k], PQgetvalue(res, i, 1)) != 0) {
				free(last[k]);
				last[k] = strdup(PQgetvalue(res, i, 1));
				refreshed[k]++;
			}
		}
		PQclear(res);
		h_sleep_ms(1000);
	}
	atomic_store(&stop_hammer, true);
	for (i = 0; i < NHAMMER; i++)
		pthread_join(th[i], NULL);

	for (i = 0; i < NCONN; i++) {
		if (refreshed[i] >= 3)
			at_least3++;
		if (refreshed[i] < min_ref)
			min_ref = refreshed[i];
		if (refreshed[i] > max_ref)
			max_ref = refreshed[i];
	}
	res = h_sql(db,
	    "SELECT count(*) FILTER (WHERE status = 'active' AND "
	    "consecutive_failures = 0 AND access_token IS NOT NULL AND "
	    "refresh_token IS NOT NULL AND access_expires_at > now()), "
	    "count(*) FROM connections",
	    NULL);
	if (res != NULL && PQntuples(res) == 1)
		active = (int)h_long(PQgetvalue(res, 0, 0), 0);
	CHECK(active == NCONN,
	    "every connection active with valid tokens and no failures "
	    "(%d of %d)",
	    active, NCONN);
	PQclear(res);
	CHECK(at_least3 == NCONN,
	    "every connection refreshed at least 3 times (%d of %d; "
	    "observed refreshes per connection: min %ld, max %ld)",
	    at_least3, NCONN, min_ref, max_ref);

	st = h_sbx_get("/_sandbox/stats");
	sbx_refreshes = h_stat_of(st, "refreshes");
	reuse = h_stat_of(st, "refresh_reuse");
	invalid_grants = h_stat_of(st, "invalid_grants");
	CHECK(reuse == 0, "sandbox refresh_reuse == 0 (got %ld)", reuse);
	CHECK(invalid_grants == 0, "sandbox invalid_grants == 0 (got %ld)",
	    invalid_grants);
	CHECK(h_stat_of(st, "grants_revoked") == 0,
	    "no grant revoked at the sandbox (got %ld)",
	    h_stat_of(st, "grants_revoked"));
	CHECK(sbx_refreshes >= 3L * NCONN,
	    "sandbox refreshes %ld >= %d", sbx_refreshes, 3 * NCONN);
	for (i = 0; i < NPROC; i++) {
		proc_ok[i] = proc_refreshes(fx[i], "ok");
		proc_other[i] = proc_refreshes(fx[i], "transient") +
		    proc_refreshes(fx[i], "rejected") +
		    proc_refreshes(fx[i], "invalid_grant") +
		    proc_refreshes(fx[i], "db_error");
		sum_ok += proc_ok[i];
		CHECK(proc_ok[i] > 0 && proc_other[i] == 0,
		    "finxd #%d: %ld refreshes ok, %ld failed", i, proc_ok[i],
		    proc_other[i]);
	}
	CHECK(sum_ok == sbx_refreshes,
	    "every refresh the sandbox made was stored by exactly one "
	    "process (sum of finxd ok %ld, sandbox %ld)",
	    sum_ok, sbx_refreshes);
	printf("# COUNTERS three processes, %d connections, %d s, access_ttl "
	       "20 s, rotation on\n",
	    NCONN, RUN_MS / 1000);
	printf("# COUNTERS sandbox: refreshes=%ld refresh_reuse=%ld "
	       "invalid_grants=%ld grants_revoked=%ld "
	       "refresh_tokens_issued=%ld access_tokens_issued=%ld\n",
	    sbx_refreshes, reuse, invalid_grants,
	    h_stat_of(st, "grants_revoked"),
	    h_stat_of(st, "refresh_tokens_issued"),
	    h_stat_of(st, "access_tokens_issued"));
	printf("# COUNTERS finxd refreshes ok per process: #0=%ld #1=%ld "
	       "#2=%ld (sum %ld)\n",
	    proc_ok[0], proc_ok[1], proc_ok[2], sum_ok);
	printf("# COUNTERS refreshes seen per connection: min %ld max %ld\n",
	    min_ref, max_ref);
	printf("# COUNTERS GET token: %ld requests, %ld handed out "
	       "(#0=%ld #1=%ld #2=%ld), %ld non-200, %ld valid at the "
	       "sandbox, %ld invalid\n",
	    atomic_load(&hs.requests), atomic_load(&hs.handed_out),
	    atomic_load(&hs.per_proc[0]), atomic_load(&hs.per_proc[1]),
	    atomic_load(&hs.per_proc[2]), atomic_load(&hs.bad_status),
	    atomic_load(&hs.valid), atomic_load(&hs.invalid));
	json_object_put(st);

	CHECK(atomic_load(&hs.handed_out) > 500,
	    "the token endpoint was hammered (%ld tokens handed out)",
	    atomic_load(&hs.handed_out));
	CHECK(atomic_load(&hs.bad_status) == 0,
	    "every GET token answered 200 (%ld did not)",
	    atomic_load(&hs.bad_status));
	CHECK(atomic_load(&hs.invalid) == 0 &&
	        atomic_load(&hs.valid) == atomic_load(&hs.handed_out),
	    "every access token handed out worked at the sandbox (%ld of "
	    "%ld)",
	    atomic_load(&hs.valid), atomic_load(&hs.handed_out));
	CHECK(atomic_load(&hs.expired_given) == 0,
	    "no token handed out with expires_at in the past (%ld)",
	    atomic_load(&hs.expired_given));

	for (i = 0; i < NCONN; i++) {
		free(last[i]);
		free(conn_ids[i]);
	}
	check_clean_shutdown();
	return h_done(test_done());
}
