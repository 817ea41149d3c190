/*
 * Operations: /metrics is valid Prometheus text, X-Request-Id is echoed or
 * made, the access log never holds a query string, /readyz and /v1 answer
 * a quick 503 while PostgreSQL is down and recover without a restart when
 * it is back, and SIGTERM/SIGINT drain running requests and exit 0.
 */
#include <sys/wait.h>

#include <ctype.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../test.h"
#include "it_common.h"

static int fx; /* the finxd instance under test */

/* ---- Prometheus text format ------------------------------------------ */

/* One metric family seen in a scrape: its TYPE and whether HELP came. */
struct family {
	char name[128];
	char type[16];
	int help;
};

struct scrape {
	struct family f[128];
	int n;
	int bad_lines; /* lines that are neither comment nor sample */
	int untyped;   /* samples whose family had no TYPE before them */
	char first_bad[160];
};

static struct family *
family_get(struct scrape *s, const char *name, size_t len)
{
	int i;

	for (i = 0; i < s->n; i++)
		if (strlen(s->f[i].name) == len &&
		    strncmp(s->f[i].name, name, len) == 0)
			return &s->f[i];
	if (s->n == 128 || len >= sizeof(s->f[0].name))
		return NULL;
	snprintf(s->f[s->n].name, sizeof(s->f[0].name), "%.*s", (int)len, name);
	return &s->f[s->n++];
}

static size_t
metric_name_len(const char *p)
{
	size_t n = 0;

	if (!(isalpha((unsigned char)p[0]) || p[0] == '_' || p[0] == ':'))
		return 0;
	while (isalnum((unsigned char)p[n]) || p[n] == '_' || p[n] == ':')
		n++;
	return n;
}

/* The family a sample belongs to: histogram series drop their suffix. */
static struct family *
sample_family(struct scrape *s, const char *name, size_t len)
{
	static const char *const sfx[] = { "_bucket", "_sum", "_count" };
	struct family *f;
	size_t i, l;

	for (i = 0; i < 3; i++) {
		l = strlen(sfx[i]);
		if (len > l && strncmp(name + len - l, sfx[i], l) == 0) {
			f = family_get(s, name, len - l);
			if (f != NULL && strcmp(f->type, "histogram") == 0)
				return f;
		}
	}
	return family_get(s, name, len);
}

/* Checks one "name{labels} value" line; false when malformed. */
static bool
sample_line(struct scrape *s, const char *line)
{
	size_t len = metric_name_len(line);
	const char *p = line + len, *v;
	struct family *f;
	char *end;

	if (len == 0)
		return false;
	if (*p == '{') {
		/* label values are quoted and may hold escaped quotes */
		for (p++; *p != '}'; p++) {
			if (*p == '\0')
				return false;
			if (*p == '"')
				for (p++; *p != '"'; p++)
					if (*p == '\0' ||
					    (*p == '\\' && *++p == '\0'))
						return false;
		}
		p++;
	}
	if (*p != ' ')
		return false;
	v = p + 1;
	if (strcmp(v, "+Inf") != 0 && strcmp(v, "-Inf") != 0 &&
	    strcmp(v, "NaN") != 0) {
		strtod(v, &end);
		if (end == v || (*end != '\0' && *end != ' '))
			return false;
	}
	f = sample_family(s, line, len);
	if (f == NULL || f->type[0] == '\0')
		s->untyped++;
	return true;
}

static bool
comment_line(struct scrape *s, const char *line)
{
	const char *name;
	struct family *f;
	size_t len;

	if (strncmp(line, "# HELP ", 7) != 0 &&
	    strncmp(line, "# TYPE ", 7) != 0)
		return true; /* other comments are allowed */
	name = line + 7;
	len = metric_name_len(name);
	if (len == 0 || name[len] != ' ' ||
	    (f = family_get(s, name, len)) == NULL)
		return false;
	if (line[2] == 'H') {
		f->help = 1;
		return true;
	}
	if (f->type[0] != '\0')
		return false; /* a second TYPE line for the same family */
	snprintf(f->type, sizeof(f->type), "%s", name + len + 1);
	return strcmp(f->type, "counter") == 0 ||
	    strcmp(f->type, "gauge") == 0 ||
	    strcmp(f->type, "histogram") == 0 ||
	    strcmp(f->type, "summary") == 0 || strcmp(f->type, "untyped") == 0;
}

static void
scrape_parse(struct scrape *s, char *text)
{
	char *line, *save = NULL;
	bool ok;

	memset(s, 0, sizeof(*s));
	for (line = strtok_r(text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == '\0')
			continue;
		ok = line[0] == '#' ? comment_line(s, line)
		                    : sample_line(s, line);
		if (!ok && s->bad_lines++ == 0)
			snprintf(s->first_bad, sizeof(s->first_bad), "%.150s",
			    line);
	}
}

/* The value of the sample line starting with prefix, or -1. */
static double
sample_value(const char *text, const char *prefix)
{
	const char *p = text;
	size_t n = strlen(prefix);

	while ((p = strstr(p, prefix)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p += n;
	}
	return -1;
}

/* Histogram buckets of one series never decrease, in order of le. */
static bool
buckets_monotonic(const char *text, const char *series_prefix)
{
	const char *p = text;
	double last = -1, v;
	size_t n = strlen(series_prefix);
	int seen = 0;

	while ((p = strstr(p, series_prefix)) != NULL) {
		const char *sp;

		if (p != text && p[-1] != '\n') {
			p += n;
			continue;
		}
		sp = strchr(p, ' ');
		if (sp == NULL)
			break;
		v = strtod(sp + 1, NULL);
		if (v < last)
			return false;
		last = v;
		seen++;
		p = sp;
	}
	return seen >= 2;
}

static char *
scrape_text(struct h_resp *r)
{
	h_finxd_get(fx, "/metrics", r);
	return r->body;
}

static void
test_metrics(void)
{
	const char *hist = "finxd_http_request_duration_seconds";
	struct family *f;
	struct h_resp r, w;
	struct scrape s;
	char *text, *copy, *url;
	const char *ct;
	double inf, count;

	/* a request for a /v1 route first, so its series exist */
	h_api(fx, "GET", "/v1/links/00000000-0000-0000-0000-000000000000", NULL,
	    &w);
	h_resp_free(&w);
	url = h_fmt("%s/healthz", h_finxd_url(fx));
	h_http("GET", url, NULL, NULL, 0, &w);
	h_resp_free(&w);
	free(url);

	text = scrape_text(&r);
	CHECK(r.status == 200, "GET /metrics answers 200 (%ld)", r.status);
	ct = h_resp_header(&r, "Content-Type");
	CHECK(ct != NULL && strncmp(ct, "text/plain", 10) == 0 &&
	        strstr(ct, "version=0.0.4") != NULL,
	    "Content-Type is text/plain; version=0.0.4 (%s)", ct ? ct : "none");
	copy = strdup(text);
	scrape_parse(&s, copy);
	free(copy);
	CHECK(s.bad_lines == 0,
	    "every line is a HELP/TYPE comment or a sample "
	    "(%d bad, first: %s)",
	    s.bad_lines, s.first_bad);
	CHECK(s.untyped == 0,
	    "every sample follows its family's TYPE line "
	    "(%d without)",
	    s.untyped);
	{
		int i, nohelp = 0;

		for (i = 0; i < s.n; i++)
			nohelp += !s.f[i].help;
		CHECK(s.n >= 8 && nohelp == 0,
		    "%d families, each with HELP (%d without)", s.n, nohelp);
	}
	f = family_get(&s, hist, strlen(hist));
	CHECK(f != NULL && strcmp(f->type, "histogram") == 0,
	    "%s is a histogram", hist);
	inf = sample_value(text,
	    "finxd_http_request_duration_seconds_bucket"
	    "{route=\"/healthz\",le=\"+Inf\"}");
	count = sample_value(text,
	    "finxd_http_request_duration_seconds_count{route=\"/healthz\"}");
	CHECK(inf >= 1 && inf == count,
	    "/healthz histogram: le=\"+Inf\" bucket %.0f equals _count %.0f",
	    inf, count);
	CHECK(sample_value(text,
	          "finxd_http_request_duration_seconds_sum"
	          "{route=\"/healthz\"}") >= 0,
	    "/healthz histogram has _sum");
	CHECK(buckets_monotonic(text,
	          "finxd_http_request_duration_seconds_"
	          "bucket{route=\"/healthz\""),
	    "/healthz buckets never decrease");
	CHECK(sample_value(text,
	          "finxd_http_requests_total{route=\"/healthz\","
	          "status=\"200\"}") >= 1,
	    "requests counter for route /healthz status 200");
	CHECK(sample_value(text,
	          "finxd_http_requests_total{route=\"/v1/links/"
	          "{}\",status=\"404\"}") >= 1,
	    "requests counter for route /v1/links/{} status 404");
	CHECK(sample_value(text, "finxd_db_pool_open") == 8,
	    "the pool's 8 connections were opened at start (%.0f open)",
	    sample_value(text, "finxd_db_pool_open"));
	CHECK(strstr(text, "\nfinxd_build_info{") != NULL,
	    "build info series present");
	CHECK(strstr(text, "00000000-0000") == NULL,
	    "no raw path (ids) in label values");
	CHECK(h_leaks(text, strlen(text)) == 0, "no secret in /metrics");
	h_resp_free(&r);
}

/* ---- request ids --------------------------------------------------------- */

static void
test_request_id(void)
{
	const char *given[] = { "X-Request-Id: it-ops-4f1c9b", NULL };
	const char *bad[] = { "X-Request-Id: has space<and>junk", NULL };
	char *url = h_fmt("%s/healthz", h_finxd_url(fx));
	struct h_resp a, b, c, d;
	const char *ha, *hb, *hc, *hd;

	h_http("GET", url, given, NULL, 0, &a);
	h_http("GET", url, NULL, NULL, 0, &b);
	h_http("GET", url, NULL, NULL, 0, &c);
	h_http("GET", url, bad, NULL, 0, &d);
	ha = h_resp_header(&a, "X-Request-Id");
	hb = h_resp_header(&b, "X-Request-Id");
	hc = h_resp_header(&c, "X-Request-Id");
	hd = h_resp_header(&d, "X-Request-Id");
	CHECK(ha != NULL && strcmp(ha, "it-ops-4f1c9b") == 0,
	    "a given X-Request-Id is echoed back");
	CHECK(hb != NULL && hc != NULL && strlen(hb) >= 8 &&
	        strcmp(hb, hc) != 0,
	    "without one, each answer carries a new generated id (%s, %s)",
	    hb ? hb : "none", hc ? hc : "none");
	CHECK(hd != NULL && strstr(hd, "junk") == NULL && strlen(hd) >= 8,
	    "an unusable X-Request-Id is replaced, not echoed");
	h_sleep_ms(100);
	CHECK(h_log_contains("\"request_id\":\"it-ops-4f1c9b\""),
	    "the log line of that request carries the id");
	if (hb != NULL) {
		char *needle = h_fmt("\"request_id\":\"%s\"", hb);

		CHECK(h_log_contains(needle), "generated ids are logged too");
		free(needle);
	}
	h_resp_free(&a);
	h_resp_free(&b);
	h_resp_free(&c);
	h_resp_free(&d);
	free(url);
}

/* ---- access log ---------------------------------------------------------- */

/* One approved flow; returns the link id (malloc'd) or NULL. */
static char *
connect_flow(const char *user)
{
	struct h_resp cb;
	char *link = NULL, *cburl = h_link_approve(fx, user, &link);

	if (link == NULL) {
		free(cburl);
		return NULL;
	}
	h_http("GET", cburl, NULL, NULL, 0, &cb);
	CHECK(cb.status == 303,
	    "callback of an approved flow answers 303 (%ld)", cb.status);
	h_resp_free(&cb);
	free(cburl);
	return link;
}

static char *
test_access_log(void)
{
	struct h_resp r;
	char *link, *log;
	size_t len;

	link = connect_flow("ops-user");
	CHECK(link != NULL, "link created and connected");
	h_api(fx, "GET", "/v1/users/ops-user/transactions?limit=5&opsmarker=q1",
	    NULL, &r);
	h_resp_free(&r);
	h_sleep_ms(200);
	log = h_log_read(&len);
	CHECK(strstr(log, "\"path\":\"/callback\"") != NULL,
	    "the callback request is in the access log");
	CHECK(strstr(log, "code=") == NULL && strstr(log, "state=") == NULL,
	    "the log holds no code= nor state= (no query strings)");
	CHECK(strstr(log, "opsmarker") == NULL &&
	        strstr(log, "limit=5") == NULL,
	    "a /v1 query string is not logged either");
	CHECK(h_leaks(log, len) == 0, "no token, code or secret in the log");
	free(log);
	return link;
}

/* ---- readiness and recovery ---------------------------------------------- */

static void
test_db_outage(const char *link)
{
	char *path = h_fmt("/v1/links/%s", link ? link : "none");
	struct h_resp r;
	long worst = 0;
	int i, ok503 = 0, ok200 = 0;

	/*
	 * A quiet restart first: nothing asks for a connection while
	 * PostgreSQL is down, so the pool's 8 connections, all opened at
	 * start, are dead when it is back.  None may fail a request.
	 */
	CHECK(h_pg_ctl("stop") == 0 && h_pg_ctl("start") == 0,
	    "PostgreSQL restarted, with no request meanwhile");
	for (i = 0; i < 12; i++) {
		ok200 += h_api(fx, "GET", path, NULL, &r) == 200;
		h_resp_free(&r);
	}
	CHECK(ok200 == 12,
	    "every /v1 read after a quiet restart works (%d of 12; the pool "
	    "dropped the connections the restart closed)",
	    ok200);

	CHECK(h_finxd_get(fx, "/readyz", NULL) == 200, "/readyz 200 before");
	CHECK(h_pg_ctl("stop") == 0, "PostgreSQL stopped (pg_ctl -m fast)");
	CHECK(h_finxd_wait_status(fx, "/readyz", 503, 10000),
	    "/readyz answers 503 while PostgreSQL is down");
	for (i = 0; i < 3; i++) {
		h_api(fx, "GET", path, NULL, &r);
		if (r.status == 503 && h_err_code(&r) != NULL)
			ok503++;
		if (r.ms > worst)
			worst = r.ms;
		h_resp_free(&r);
	}
	CHECK(ok503 == 3, "a /v1 read answers a JSON 503 (%d of 3)", ok503);
	CHECK(worst < 6000, "... quickly, never hanging (slowest %ld ms)",
	    worst);
	CHECK(h_finxd_get(fx, "/healthz", NULL) == 200,
	    "/healthz still 200 (the process serves)");

	CHECK(h_pg_ctl("start") == 0, "PostgreSQL started again");
	CHECK(h_finxd_wait_status(fx, "/readyz", 200, 20000),
	    "/readyz back to 200 without restarting finxd");
	for (ok200 = 0, i = 0; i < 12; i++) {
		ok200 += h_api(fx, "GET", path, NULL, &r) == 200;
		h_resp_free(&r);
	}
	CHECK(ok200 == 12,
	    "every /v1 read works again (%d of 12; the pool "
	    "recovered on its own)",
	    ok200);
	free(path);
}

/* ---- graceful stop ------------------------------------------------------- */

struct slow {
	long status;
	long ms;
};

static void *
slow_link(void *arg)
{
	struct slow *s = arg;
	struct h_resp r;

	s->status = h_link_create(fx, "ops-drain", H_RETURN_URL, &r);
	s->ms = r.ms;
	h_resp_free(&r);
	return NULL;
}

static void *
late_probe(void *arg)
{
	long *st = arg;

	h_sleep_ms(300);
	*st = h_finxd_get(fx, "/healthz", NULL);
	return NULL;
}

static void
test_graceful_stop(void)
{
	pthread_t a, b;
	struct slow s = { 0, 0 };
	long late = -1, t0;
	int rc, i2;

	h_sbx_post("/_sandbox/faults",
	    "{\"path\":\"/ongoing/access\",\"mode\":\"delay\","
	    "\"delay_ms\":2000,\"count\":1}");
	pthread_create(&a, NULL, slow_link, &s);
	h_sleep_ms(500);
	pthread_create(&b, NULL, late_probe, &late);
	t0 = h_now_ms();
	rc = h_finxd_stop(fx, SIGTERM);
	t0 = h_now_ms() - t0;
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	CHECK(s.status == 201,
	    "the request in flight completed with 201 "
	    "(%ld, %ld ms)",
	    s.status, s.ms);
	CHECK(rc == 0, "finxd exited 0 after SIGTERM (%d)", rc);
	CHECK(t0 >= 1000, "it waited for the request (%ld ms)", t0);
	CHECK(late != 200, "no new request served while draining (%ld)", late);
	CHECK(h_log_contains("SIGTERM"), "the stop is logged");
	h_sbx_delete("/_sandbox/faults");

	i2 = h_finxd_start();
	fx = i2;
	CHECK(h_finxd_get(fx, "/healthz", NULL) == 200, "a new finxd serves");
	CHECK(h_finxd_stop(i2, SIGINT) == 0, "SIGINT: idle finxd exits 0");
}

/* GET (or POST) base+path with the API key; the status. */
static long
status_at(const char *method, const char *base, const char *path)
{
	char *url = h_fmt("%s%s", base, path), *auth;
	const char *hdr[2];
	struct h_resp r;
	long st;

	auth = h_fmt("Authorization: Bearer %s", h_api_key());
	hdr[0] = auth;
	hdr[1] = NULL;
	h_http(method, url, hdr, strcmp(method, "POST") == 0 ? "{}" : NULL,
	    strcmp(method, "POST") == 0 ? 2 : 0, &r);
	st = r.status;
	h_resp_free(&r);
	free(url);
	free(auth);
	return st;
}

/*
 * FINXD_OPS_LISTEN: a second listener with only /healthz, /readyz and
 * /metrics, so probes and scrapes have their own accept queue.  The API
 * stays off it, and the three are served there only (SPEC): the public
 * listener, which faces the internet, answers them 404 and keeps every
 * other route.  Without an operations listener the public one serves
 * all of them.
 */
static void
test_ops_listener(void)
{
	int port = h_free_port(), i2;
	char *listen = h_fmt("127.0.0.1:%d", port);
	char *ops = h_fmt("http://127.0.0.1:%d", port);

	h_env_set("FINXD_OPS_LISTEN", listen);
	i2 = h_finxd_start();
	CHECK(status_at("GET", ops, "/healthz") == 200, "ops: /healthz 200");
	CHECK(status_at("GET", ops, "/readyz") == 200, "ops: /readyz 200");
	CHECK(status_at("GET", ops, "/metrics") == 200, "ops: /metrics 200");
	CHECK(status_at("GET", ops, "/v1/users/u-ops/accounts") == 404,
	    "ops: the API is not served there (404)");
	CHECK(status_at("POST", ops, "/v1/links") == 404,
	    "ops: no link creation there (404)");
	CHECK(status_at("GET", ops, "/callback?state=x&code=y") == 404,
	    "ops: no callback there (404)");
	CHECK(status_at("GET", h_finxd_url(i2), "/healthz") == 404 &&
		status_at("GET", h_finxd_url(i2), "/readyz") == 404 &&
		status_at("GET", h_finxd_url(i2), "/metrics") == 404,
	    "public: /healthz, /readyz and /metrics 404 beside an ops "
	    "listener");
	CHECK(status_at("GET", h_finxd_url(i2),
		  "/v1/users/u-ops/accounts") == 200 &&
		status_at("GET", h_finxd_url(i2), "/callback?state=x&code=y") ==
		    400,
	    "public: the API and the callback still served");
	CHECK(h_finxd_stop(i2, SIGTERM) == 0,
	    "finxd with an ops listener exits 0 on SIGTERM");
	CHECK(status_at("GET", ops, "/healthz") == 0,
	    "the ops listener is closed after the stop");
	h_env_set("FINXD_OPS_LISTEN", NULL);
	i2 = h_finxd_start();
	CHECK(status_at("GET", h_finxd_url(i2), "/healthz") == 200 &&
		status_at("GET", h_finxd_url(i2), "/readyz") == 200 &&
		status_at("GET", h_finxd_url(i2), "/metrics") == 200 &&
		status_at("GET", h_finxd_url(i2),
		    "/v1/users/u-ops/accounts") == 200,
	    "without an ops listener the public one serves everything");
	CHECK(h_finxd_stop(i2, SIGTERM) == 0, "and exits 0 on SIGTERM");
	free(listen);
	free(ops);
}

int
main(void)
{
	char *link;

	h_init("ops", 240);
	h_setup(NULL);
	fx = h_finxd_start();

	test_metrics();
	test_request_id();
	link = test_access_log();
	test_db_outage(link);
	test_graceful_stop();
	test_ops_listener();
	check_log_json();
	free(link);
	return h_done(test_done());
}
