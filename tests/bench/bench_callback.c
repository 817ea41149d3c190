/*
 * Callback benchmark: 500 widget flows are prepared (links made, widget
 * approved), then their 500 callbacks hit finxd at once while the
 * sandbox's token endpoint takes 200 ms per exchange; three such rounds,
 * each on a quiet system (the previous round's first pulls done).
 * Reports finxd's added latency over those 200 ms at p50/p99, and the
 * p99 of three probes run from their own threads during the bursts: GET
 * /healthz on the operations listener (FINXD_OPS_LISTEN), a new
 * connection each time as a load balancer's check does; and, on the
 * public listener over one keep-alive connection each as a partner's HTTP
 * client keeps them, GET /v1/users/{id}/accounts (the partners' main
 * read, which the read cache serves) and GET /v1/links/{id} (a PostgreSQL
 * round trip each time).  One burst gives each probe about 70 samples, of
 * which the p99 is simply the maximum; the rounds give it over 200.  The
 * target, issue 6's: /healthz and a /v1 read (the account read) under
 * 20 ms at p99.  The link read is held to the same 20 ms and reported on
 * its own line.  Exits non-zero when a flow fails (or, with
 * BENCH_STRICT=1, when the target is missed).
 *
 * Knobs (environment): BENCH_FLOWS (500), BENCH_ROUNDS (3),
 * BENCH_TOKEN_LATENCY_MS (200), BENCH_TARGET_MS (20), BENCH_DB_POOL_SIZE
 * (4; see main), BENCH_LOG_LEVEL (warn), BENCH_STRICT (0).
 */
#include <curl/curl.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

struct flow {
	char *callback; /* the widget's redirect to finxd /callback */
	long status;
	long ms;
	bool connected;
};

struct probe {
	const char *url;
	const char *const *headers;
	bool keepalive; /* one connection for all requests, else one each */
	long *ms;
	int n, cap, errors;
};

static atomic_bool burst_done;

static int
cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return (x > y) - (x < y);
}

/* The q-quantile (0..1) of v[0..n), sorting v in place; nearest rank. */
static long
quantile(long *v, int n, double q)
{
	int k;

	if (n == 0)
		return -1;
	qsort(v, (size_t)n, sizeof(*v), cmp_long);
	k = (int)(q * n + 0.999999) - 1;
	if (k < 0)
		k = 0;
	if (k >= n)
		k = n - 1;
	return v[k];
}

/* Make one link and approve it in the widget; false on any failure. */
static bool
prepare(int fx, int i, struct flow *f, char **link_id)
{
	char user[32];

	snprintf(user, sizeof(user), "bench-%04d", i);
	f->callback = h_link_approve(fx, user, i == 0 ? link_id : NULL);
	return f->callback != NULL;
}

/* Fire every callback at once with one curl multi handle. */
static long
fire(struct flow *flows, int n)
{
	CURLM *m = curl_multi_init();
	CURL **e = calloc((size_t)n, sizeof(*e));
	long t0 = h_now_ms();
	int i, running = 0, left;
	CURLMsg *msg;

	if (m == NULL || e == NULL)
		h_bail("curl multi setup failed");
	curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, 0L);
	for (i = 0; i < n; i++) {
		e[i] = curl_easy_init();
		curl_easy_setopt(e[i], CURLOPT_URL, flows[i].callback);
		curl_easy_setopt(e[i], CURLOPT_PROTOCOLS_STR, "http");
		curl_easy_setopt(e[i], CURLOPT_NOPROXY, "*");
		curl_easy_setopt(e[i], CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(e[i], CURLOPT_FORBID_REUSE, 1L);
		curl_easy_setopt(e[i], CURLOPT_CONNECTTIMEOUT_MS, 10000L);
		curl_easy_setopt(e[i], CURLOPT_TIMEOUT_MS, 60000L);
		curl_easy_setopt(e[i], CURLOPT_WRITEFUNCTION, h_curl_discard);
		curl_easy_setopt(e[i], CURLOPT_HEADERFUNCTION, h_curl_connected);
		curl_easy_setopt(e[i], CURLOPT_HEADERDATA, &flows[i].connected);
		curl_easy_setopt(e[i], CURLOPT_PRIVATE, &flows[i]);
		curl_multi_add_handle(m, e[i]);
	}
	do {
		curl_multi_perform(m, &running);
		while ((msg = curl_multi_info_read(m, &left)) != NULL) {
			struct flow *f;
			curl_off_t us = 0;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
			    (char **)&f);
			curl_easy_getinfo(msg->easy_handle,
			    CURLINFO_RESPONSE_CODE, &f->status);
			curl_easy_getinfo(msg->easy_handle,
			    CURLINFO_TOTAL_TIME_T, &us);
			f->ms = (long)(us / 1000);
		}
		if (running > 0)
			curl_multi_poll(m, NULL, 0, 100, NULL);
	} while (running > 0);
	t0 = h_now_ms() - t0;
	for (i = 0; i < n; i++) {
		curl_multi_remove_handle(m, e[i]);
		curl_easy_cleanup(e[i]);
	}
	free(e);
	curl_multi_cleanup(m);
	return t0;
}

/* One GET on the probe's own keep-alive handle: status, *ms. */
static long
get_reusing(CURL *c, long *ms)
{
	long st = 0, t0 = h_now_ms();

	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
	*ms = h_now_ms() - t0;
	return st;
}

/* Probe thread: GET its URL until the burst is over, recording each
 * latency. */
static void *
probe_run(void *arg)
{
	struct probe *p = arg;
	struct curl_slist *hl = NULL;
	CURL *c = NULL;
	struct h_resp r;
	long st, ms;
	int i;

	if (p->keepalive) {
		if ((c = curl_easy_init()) == NULL)
			h_bail("curl_easy_init failed");
		for (i = 0; p->headers != NULL && p->headers[i] != NULL; i++)
			hl = curl_slist_append(hl, p->headers[i]);
		curl_easy_setopt(c, CURLOPT_URL, p->url);
		curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
		curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, h_curl_discard);
	}
	while (!atomic_load(&burst_done)) {
		if (c != NULL)
			st = get_reusing(c, &ms);
		else {
			h_http("GET", p->url, p->headers, NULL, 0, &r);
			st = r.status;
			ms = r.ms;
			h_resp_free(&r);
		}
		if (st != 200)
			p->errors++;
		else if (p->n < p->cap)
			p->ms[p->n++] = ms;
		h_sleep_ms(5);
	}
	curl_easy_cleanup(c);
	curl_slist_free_all(hl);
	return NULL;
}

static void
probe_init(struct probe *p, char *url, const char *const *headers,
    bool keepalive)
{
	p->url = url;
	p->headers = headers;
	p->keepalive = keepalive;
	p->cap = 100000;
	p->ms = calloc((size_t)p->cap, sizeof(long));
	if (p->ms == NULL)
		h_bail("out of memory");
}

/* finxd's own view of its database pool after the burst (/metrics). */
static void
print_pool(int fx)
{
	static const char *const names[] = { "waits_total", "timeouts_total",
		"open" };
	char name[64];
	size_t i;

	printf("  finxd database pool after the bursts:");
	for (i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "finxd_db_pool_%s", names[i]);
		printf("%s %s %ld", i ? "," : "", names[i], h_metric(fx, name));
	}
	printf("\n");
}

/* Run the probes while one burst of n callbacks is fired; wall ms. */
static long
round_run(struct flow *flows, int n, struct probe *const *pr, int npr)
{
	pthread_t th[3];
	long wall;
	int i;

	atomic_store(&burst_done, false);
	for (i = 0; i < npr; i++)
		if (pthread_create(&th[i], NULL, probe_run, pr[i]) != 0)
			h_bail("pthread_create failed");
	wall = fire(flows, n);
	atomic_store(&burst_done, true);
	for (i = 0; i < npr; i++)
		pthread_join(th[i], NULL);
	return wall;
}

static bool
all_pulled(void *conninfo)
{
	return h_sql_long(conninfo,
	           "SELECT count(*) FROM pulls WHERE last_pull_at IS NULL",
	           NULL) == 0;
}

/* Wait (up to 120 s) until every connection had its first pull; ms
 * since t0, or -1. */
static long
pulls_done(const char *conninfo, long t0)
{
	return h_wait_every(all_pulled, (void *)conninfo, 120000, 50)
	    ? h_now_ms() - t0
	    : -1;
}

/* The largest of v[from..n), unsorted. */
static long
max_from(const long *v, int from, int n)
{
	long m = -1;

	for (; from < n; from++)
		if (v[from] > m)
			m = v[from];
	return m;
}

int
main(void)
{
	long flows_n = h_env_long("BENCH_FLOWS", 500);
	long rounds = h_env_long("BENCH_ROUNDS", 3);
	long lat = h_env_long("BENCH_TOKEN_LATENCY_MS", 200);
	long target = h_env_long("BENCH_TARGET_MS", 20);
	char lat_s[24], *link_id = NULL, *auth, *ops_listen, *pool;
	const char *sbx_args[] = { "--token-latency-ms", lat_s, NULL };
	const char *auth_h[2], *conninfo;
	struct probe ph = { 0 }, pa = { 0 }, pv = { 0 };
	struct probe *const pr[3] = { &ph, &pa, &pv };
	struct flow *flows;
	long *added, t0, p50, p99, hp99, ap99, vp99;
	bool met;
	int fx, i, k, ok = 0, n = (int)flows_n, total, rc = 0, ops_port;

	if (n < 1 || rounds < 1 || rounds > 20)
		h_bail("BENCH_FLOWS and BENCH_ROUNDS (1..20) must be positive");
	total = n * (int)rounds;
	h_init("bench_callback", 900);
	snprintf(lat_s, sizeof(lat_s), "%ld", lat);
	conninfo = h_setup(sbx_args);
	h_env_set("FINXD_LOG_LEVEL",
	    getenv("BENCH_LOG_LEVEL") ? getenv("BENCH_LOG_LEVEL") : "warn");
	ops_port = h_free_port();
	ops_listen = h_fmt("127.0.0.1:%d", ops_port);
	h_env_set("FINXD_OPS_LISTEN", ops_listen);
	h_env_set("FINXD_HTTP_MAX_CONNECTIONS", "2048");
	h_env_set("FINXD_HTTP_MAX_PER_ADDRESS", "1024");
	/*
	 * PostgreSQL shares this machine's two cores with finxd, the sandbox
	 * and the load generator.  A pool sized to it (about twice its
	 * cores) keeps the callbacks' throughput of finxd's default of 8,
	 * while fewer busy backends stand between the link read's backend
	 * and a core: link read p99 median 18 ms in 23 runs against 20 ms in
	 * 16 (README, "Benchmarks").
	 */
	pool = h_fmt("%s", getenv("BENCH_DB_POOL_SIZE") != NULL
		? getenv("BENCH_DB_POOL_SIZE")
		: "4");
	h_env_set("FINXD_DB_POOL_SIZE", pool);
	fx = h_finxd_start();
	curl_global_init(CURL_GLOBAL_DEFAULT);

	flows = calloc((size_t)total, sizeof(*flows));
	added = calloc((size_t)total, sizeof(*added));
	if (flows == NULL || added == NULL)
		h_bail("out of memory");
	t0 = h_now_ms();
	for (i = 0; i < total; i++)
		if (!prepare(fx, i, &flows[i], &link_id))
			h_bail("preparing flow %d failed", i);
	printf("# prepared %d links and widget approvals in %ld ms\n", total,
	    h_now_ms() - t0);

	auth = h_fmt("Authorization: Bearer %s", h_api_key());
	auth_h[0] = auth;
	auth_h[1] = NULL;
	/* /healthz where a load balancer or kubelet would ask: on the
	 * operations listener, a new connection each time.  The reads as a
	 * partner's service makes them: over the public listener, on a
	 * connection its HTTP client keeps open. */
	probe_init(&ph, h_fmt("http://%s/healthz", ops_listen), NULL, false);
	probe_init(&pa, h_fmt("%s/v1/users/bench-0000/accounts",
			    h_finxd_url(fx)),
	    auth_h, true);
	probe_init(&pv, h_fmt("%s/v1/links/%s", h_finxd_url(fx), link_id),
	    auth_h, true);

	printf("bench_callback: %ld rounds of %d concurrent callbacks, sandbox "
	       "token endpoint latency %ld ms, pool of %s\n",
	    rounds, n, lat, pool);
	for (k = 0; k < rounds; k++) {
		struct flow *f = flows + k * n;
		int from_h = ph.n, from_a = pa.n, from_v = pv.n, rok = 0;
		long wall, start = h_now_ms(), pulled, rp50, rp99;

		wall = round_run(f, n, pr, 3);
		for (i = 0; i < n; i++)
			if (f[i].status == 303 && f[i].connected)
				added[ok + rok++] = f[i].ms - lat;
		rp50 = quantile(added + ok, rok, 0.50);
		rp99 = quantile(added + ok, rok, 0.99);
		ok += rok;
		pulled = pulls_done(conninfo, start);
		printf("  round %d: %d of %d connected, wall %ld ms, added p50 "
		       "%ld ms p99 %ld ms; probe max /healthz %ld, accounts "
		       "%ld, link %ld ms; first pulls done %ld ms after the "
		       "burst began\n",
		    k + 1, rok, n, wall, rp50, rp99, max_from(ph.ms, from_h, ph.n),
		    max_from(pa.ms, from_a, pa.n), max_from(pv.ms, from_v, pv.n),
		    pulled);
		if (pulled < 0)
			rc = 1;
	}

	p50 = quantile(added, ok, 0.50);
	p99 = quantile(added, ok, 0.99);
	hp99 = quantile(ph.ms, ph.n, 0.99);
	ap99 = quantile(pa.ms, pa.n, 0.99);
	vp99 = quantile(pv.ms, pv.n, 0.99);
	met = hp99 < target && ap99 < target;

	printf("  callbacks: %d connected (303), %d failed\n", ok, total - ok);
	printf("  finxd added latency over %ld ms: p50 %ld ms, p99 %ld ms, "
	       "max %ld ms\n",
	    lat, p50, p99, ok ? added[ok - 1] : -1);
	printf("  meanwhile /healthz: p99 %ld ms, max %ld ms (%d requests, "
	       "%d errors)\n",
	    hp99, ph.n ? ph.ms[ph.n - 1] : -1, ph.n, ph.errors);
	printf("  meanwhile GET /v1/users/{id}/accounts: p99 %ld ms, max %ld "
	       "ms (%d requests, %d errors)\n",
	    ap99, pa.n ? pa.ms[pa.n - 1] : -1, pa.n, pa.errors);
	printf("  meanwhile GET /v1/links/{id}: p99 %ld ms, max %ld ms (%d "
	       "requests, %d errors)\n",
	    vp99, pv.n ? pv.ms[pv.n - 1] : -1, pv.n, pv.errors);
	print_pool(fx);
	printf("  target p99 < %ld ms for /healthz and the account read: %s\n",
	    target, met ? "met" : "MISSED");
	printf("  the link read (a PostgreSQL round trip) under %ld ms too: "
	       "%s\n",
	    target, vp99 < target ? "yes" : "no");
	/* A missed latency target fails only with BENCH_STRICT=1: the figure
	 * depends on the machine (2 shared cores in CI), a failed flow never. */
	if (ok != total || ph.errors || pa.errors || pv.errors || ph.n == 0 ||
	    pa.n == 0 || pv.n == 0)
		rc = 1;
	if (!met && h_env_long("BENCH_STRICT", 0))
		rc = 1;

	for (i = 0; i < total; i++)
		free(flows[i].callback);
	free(flows);
	free(added);
	free(ph.ms);
	free(pa.ms);
	free(pv.ms);
	free((char *)ph.url);
	free((char *)pa.url);
	free((char *)pv.url);
	free(auth);
	free(ops_listen);
	free(pool);
	free(link_id);
	curl_global_cleanup();
	return h_done(rc);
}
