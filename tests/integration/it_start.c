/*
 * Starting like a service (issue 11 item 7): `finxd serve` with
 * PostgreSQL down listens at once (/healthz 200, /readyz 503, /v1 503),
 * logs every retry, touches no pool, cache or refresher meanwhile, exits
 * 0 at once on SIGTERM or SIGINT, and once PostgreSQL is started serves a
 * whole flow without being restarted.
 */
#include "it_common.h"

#include <stdarg.h>

static const char *db;

static char *__attribute__((format(printf, 1, 2))) xfmt(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		h_bail("out of memory");
	return s;
}

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

/* GET path on instance f: status, error code in *code (malloc'd). */
static long
get(int f, const char *path, char **code)
{
	char *url = xfmt("%s%s", h_finxd_url(f), path);
	struct h_resp r;
	long st;

	h_http("GET", url, NULL, NULL, 0, &r);
	st = r.status;
	if (code != NULL)
		*code = dup_or_null(h_err_code(&r));
	h_resp_free(&r);
	free(url);
	return st;
}

static bool
wait_ready(int f, long limit_ms)
{
	long end = h_now_ms() + limit_ms;

	while (h_now_ms() < end) {
		if (get(f, "/readyz", NULL) == 200)
			return true;
		h_sleep_ms(200);
	}
	return false;
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
	CHECK(get(f, "/healthz", NULL) == 200,
	    "serve with PostgreSQL down listens: /healthz 200");
	st = get(f, "/readyz", &code);
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
	CHECK(get(f, "/metrics", NULL) == 200, "/metrics answers 200");
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
	st = get(f, "/readyz", &code);
	CHECK(st == 503, "/readyz still 503 (%ld %s)", st, code ? code : "-");
	free(code);

	CHECK(h_pg_ctl("start") == 0, "PostgreSQL started");
	t = h_now_ms();
	CHECK(wait_ready(f, 45000),
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

	cid = connect_user(f, "u-start");
	CHECK(cid != NULL, "a whole flow works once ready");
	path = xfmt("/v1/connections/%s", cid ? cid : "none");
	st = h_api(f, "GET", path, NULL, &r);
	CHECK(st == 200 && h_jstr(h_resp_json(&r), "status") &&
		strcmp(h_jstr(h_resp_json(&r), "status"), "active") == 0,
	    "GET the connection: 200, active (%ld)", st);
	h_resp_free(&r);
	free(path);
	free(cid);
	{
		char *url = xfmt("%s/metrics", h_finxd_url(f));

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

	{
		const char *migrate[] = { "migrate", NULL };

		if (h_finxd_run(migrate, 60) != 0)
			h_bail("finxd migrate failed");
	}
	CHECK(h_pg_ctl("stop") == 0, "PostgreSQL stopped");
	test_serve_stop_while_waiting();
	test_serve_recovers();
	check_clean_shutdown();
	return h_done(test_done());
}
