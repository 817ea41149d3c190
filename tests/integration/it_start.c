/*
 * Starting like a service (issue 11 item 7): `finxd migrate` needs only
 * the database settings and connects to FINXD_DATABASE_DIRECT_URL; with
 * PostgreSQL down it retries with backoff, logging each try, and gives up
 * within --wait with one clear line.  `finxd serve` with PostgreSQL down
 * listens at once (/healthz 200, /readyz 503, /v1 503), logs every retry,
 * touches no pool, cache or refresher meanwhile, exits 0 at once on
 * SIGTERM or SIGINT, and once PostgreSQL is started serves a whole flow
 * without being restarted.
 */
#include "it_common.h"

#include <stdarg.h>

static const char *db;

/* Occurrences of needle in s. */
static int
count_of(const char *s, const char *needle)
{
	int n = 0;

	while ((s = strstr(s, needle)) != NULL) {
		n++;
		s += strlen(needle);
	}
	return n;
}

/* The last non-empty line of s (malloc'd). */
static char *
last_line(const char *s)
{
	const char *end = s + strlen(s), *b;

	while (end > s && end[-1] == '\n')
		end--;
	for (b = end; b > s && b[-1] != '\n'; b--)
		;
	return strndup(b, (size_t)(end - b));
}

/* Lines of finxd.log from offset on that contain needle. */
static int
log_count_from(long offset, const char *needle)
{
	size_t len;
	char *s = h_log_read(&len);
	int n = (size_t)offset <= len ? count_of(s + offset, needle) : 0;

	free(s);
	return n;
}

/* ---- migrate -------------------------------------------------------- */

/* Only the database settings: the finX client and the keys unset. */
static void
env_database_only(const char *url)
{
	static const char *const others[] = { "FINXD_FINX_URL",
		"FINXD_FINX_CLIENT_ID", "FINXD_FINX_CLIENT_SECRET",
		"FINXD_API_KEYS", "FINXD_RETURN_URLS", "FINXD_TOKEN_KEYS",
		NULL };
	int i;

	for (i = 0; others[i] != NULL; i++)
		h_env_set(others[i], NULL);
	h_env_set("FINXD_DATABASE_URL", url);
}

static void
test_migrate_database_only(void)
{
	const char *migrate[] = { "migrate", NULL };
	char *direct, *bogus, *out, *v;
	int rc;

	env_database_only(db);
	rc = h_finxd_run(migrate, 60);
	out = h_finxd_output();
	CHECK(rc == 0,
	    "migrate with only FINXD_DATABASE_URL set exits 0 (got %d)", rc);
	CHECK(strstr(out, "applied 0001_init.sql") != NULL &&
		strstr(out, "schema is at version") != NULL,
	    "it applied the migrations and says the version");
	free(out);
	v = h_sql_value(db,
	    "SELECT string_agg(version || ':' || compatible_from, ',' "
	    "ORDER BY version) FROM schema_migrations WHERE version <= 4",
	    NULL);
	CHECK(v != NULL && strcmp(v, "1:1,2:2,3:3,4:4") == 0,
	    "compatible_from recorded per migration (%s)", v ? v : "none");
	free(v);

	/* FINXD_DATABASE_URL points nowhere: migrate must use the direct one */
	direct = h_pg_create_db("direct");
	bogus = h_fmt("host=127.0.0.1 port=%d dbname=nowhere user=postgres",
	    h_free_port());
	env_database_only(bogus);
	h_env_set("FINXD_DATABASE_DIRECT_URL", direct);
	rc = h_finxd_run(migrate, 60);
	v = h_sql_value(direct,
	    "SELECT count(*) FROM schema_migrations WHERE version = 4", NULL);
	CHECK(rc == 0 && v != NULL && strcmp(v, "1") == 0,
	    "migrate connects to FINXD_DATABASE_DIRECT_URL (rc %d, schema 4 "
	    "there: %s)",
	    rc, v ? v : "none");
	free(v);
	h_env_set("FINXD_DATABASE_DIRECT_URL", NULL);
	free(direct);
	free(bogus);

	/* serve keeps requiring the rest */
	env_database_only(db);
	{
		const char *serve[] = { "serve", NULL };

		rc = h_finxd_run(serve, 20);
		CHECK(rc == 1,
		    "serve with only the database settings still refuses "
		    "(exit %d)",
		    rc);
	}
	h_env_defaults(db);
}

/* PostgreSQL is stopped. */
static void
test_migrate_unreachable(void)
{
	const char *wait3[] = { "migrate", "--wait", "3", NULL };
	const char *wait0[] = { "migrate", "--wait", "0", NULL };
	char *out, *last;
	long t;
	int rc;

	env_database_only(db);
	t = h_now_ms();
	rc = h_finxd_run(wait3, 30);
	t = h_now_ms() - t;
	out = h_finxd_output();
	last = last_line(out);
	CHECK(rc == 1, "migrate --wait 3 with PostgreSQL down exits 1 (got %d)",
	    rc);
	CHECK(t >= 2500 && t < 10000,
	    "... after retrying for about 3 s (%ld ms)", t);
	CHECK(count_of(out, "database not reachable, retrying") >= 2 &&
		count_of(out, "\"attempt\":\"2\"") == 1,
	    "each try is logged as JSON with its number (%d lines)",
	    count_of(out, "database not reachable, retrying"));
	CHECK(strncmp(last, "migrate: the database did not answer within 3 s",
		  47) == 0,
	    "the last line says why, plainly: %s", last);
	CHECK(h_leaks(out, strlen(out)) == 0, "no secret in its output");
	free(last);
	free(out);

	t = h_now_ms();
	rc = h_finxd_run(wait0, 30);
	t = h_now_ms() - t;
	out = h_finxd_output();
	CHECK(rc == 1 && t < 3000 && strstr(out, "(1 tries)") != NULL,
	    "migrate --wait 0: one try, exit 1 at once (%d, %ld ms)", rc, t);
	free(out);
	h_env_defaults(db);
}

/* ---- serve ---------------------------------------------------------- */

/* PostgreSQL is stopped. */
static void
test_serve_stop_while_waiting(void)
{
	struct h_resp r;
	char *code = NULL;
	long t, st;
	int f, rc;

	f = h_finxd_start_listening();
	CHECK(h_finxd_get(f, "/healthz", NULL) == 200,
	    "serve with PostgreSQL down listens: /healthz 200");
	/* "starting" until its first try is done */
	for (t = h_now_ms() + 10000;; h_sleep_ms(100)) {
		st = h_readyz(f, &code, NULL);
		if (!(code && strcmp(code, "starting") == 0) || h_now_ms() > t)
			break;
		free(code);
	}
	CHECK(st == 503 && code && strcmp(code, "database_unavailable") == 0,
	    "/readyz 503 database_unavailable (%ld %s)", st,
	    code ? code : "-");
	free(code);
	code = NULL;
	st = h_api(f, "GET", "/v1/users/u-wait/accounts", NULL, &r);
	CHECK(st == 503 && h_err_code(&r) &&
		strcmp(h_err_code(&r), "database_unavailable") == 0 &&
		r.ms < 2000,
	    "a /v1 read answers a quick JSON 503 (%ld, %ld ms)", st, r.ms);
	h_resp_free(&r);
	CHECK(h_finxd_get(f, "/metrics", NULL) == 200, "/metrics answers 200");
	h_sleep_ms(1200);
	t = h_now_ms();
	rc = h_finxd_stop(f, SIGTERM);
	t = h_now_ms() - t;
	CHECK(rc == 0 && t < 3000,
	    "SIGTERM while waiting: exit 0 within 3 s (%d, %ld ms)", rc, t);
	CHECK(h_log_contains("stopping before the database was ready"),
	    "the early stop is logged");

	f = h_finxd_start_listening();
	h_sleep_ms(300);
	t = h_now_ms();
	rc = h_finxd_stop(f, SIGINT);
	t = h_now_ms() - t;
	CHECK(rc == 0 && t < 3000,
	    "SIGINT while waiting: exit 0 within 3 s (%d, %ld ms)", rc, t);
}

/* PostgreSQL is stopped; started here. */
static void
test_serve_recovers(void)
{
	long offset = h_log_size(), t, st;
	char *cid, *path, *log, *mark, *code = NULL;
	struct h_resp r;
	size_t len;
	int f, tries;

	f = h_finxd_start_listening();
	h_sleep_ms(2500);
	tries = log_count_from(offset, "not serving yet, retrying");
	CHECK(tries >= 2,
	    "serve logs each try while PostgreSQL is down (%d so far)", tries);
	CHECK(log_count_from(offset, "\"reason\":\"connection to server") >=
		1,
	    "... with the reason");
	st = h_readyz(f, &code, NULL);
	CHECK(st == 503, "/readyz still 503 (%ld %s)", st, code ? code : "-");
	free(code);

	CHECK(h_pg_ctl("start") == 0, "PostgreSQL started");
	t = h_now_ms();
	CHECK(h_finxd_wait_status(f, "/readyz", 200, 45000),
	    "/readyz turns 200 without restarting finxd (%ld ms)",
	    h_now_ms() - t);
	log = h_log_read(&len);
	mark = (size_t)offset < len ? strstr(log + offset, "finxd serving")
				    : NULL;
	if (mark != NULL)
		*mark = '\0';
	CHECK(mark != NULL, "\"finxd serving\" logged once ready");
	CHECK(mark != NULL &&
		strstr(log + offset, "database connect failed") == NULL &&
		strstr(log + offset, "read cache") == NULL &&
		strstr(log + offset, "database pool exhausted") == NULL,
	    "nothing used the pool, the cache listener or the refresher "
	    "before that");
	free(log);

	cid = h_connect(f, "u-start");
	CHECK(cid != NULL, "a whole flow works once ready");
	path = h_fmt("/v1/connections/%s", cid ? cid : "none");
	st = h_api(f, "GET", path, NULL, &r);
	CHECK(st == 200 && h_jstr(h_resp_json(&r), "status") &&
		strcmp(h_jstr(h_resp_json(&r), "status"), "active") == 0,
	    "GET the connection: 200, active (%ld)", st);
	h_resp_free(&r);
	free(path);
	free(cid);
	{
		char *url = h_fmt("%s/metrics", h_finxd_url(f));

		h_http("GET", url, NULL, NULL, 0, &r);
		CHECK(r.body && strstr(r.body, "\nfinxd_db_pool_open 8\n"),
		    "the pool was opened once the database was ready");
		h_resp_free(&r);
		free(url);
	}
}

int
main(void)
{
	h_init("it_start", 200);
	db = h_pg_start();
	h_sandbox_start(NULL);
	h_env_defaults(db);

	test_migrate_database_only();
	CHECK(h_pg_ctl("stop") == 0, "PostgreSQL stopped");
	test_migrate_unreachable();
	test_serve_stop_while_waiting();
	test_serve_recovers();
	check_clean_shutdown();
	check_log_json();
	return h_done(test_done());
}
