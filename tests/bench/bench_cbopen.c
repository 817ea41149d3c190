/*
 * Open-loop callback benchmark (issue 12): links are prepared first (POST
 * /v1/links, then the sandbox's widget approves each, which gives the
 * callback URL with its state, flow_id and code), then the callbacks are
 * sent at a fixed rate while the sandbox's token endpoint takes 200 ms
 * per code exchange.  Runs, by default: 300 callbacks at 200/s, 150 at
 * 50/s, and 300 at 200/s again with the first pulls held back, after a
 * warm-up of 20 at 50/s that is not counted.
 *
 * Open loop: every callback's send time is fixed before the run (i/rate
 * after its start), and its latency is counted from that time, not from
 * when a sender got to it, so queueing anywhere (finxd, the machine, the
 * sender) shows instead of being hidden by a sender that waits
 * (coordinated omission).  One sender thread per second of callbacks
 * (threads = rate), each callback a new connection as a browser makes
 * it; how far the senders fell behind the schedule is printed.
 *
 * Added latency = the callback's latency minus the time the sandbox spent
 * on its token request(s): the record's handled_us (arrival in full to
 * reply queued, GET /_sandbox/requests), matched by the code in the
 * request body.  Also printed from the actual send, and against the
 * nominal 200 ms.
 *
 * CPU: utime+stime from /proc/<pid>/stat of finxd and of the test
 * cluster's PostgreSQL processes (the postmaster with the time of the
 * children it reaped, and every live process whose parent it is).
 * Sampled before the first send, after the last answer ("callback
 * window") and once every connection of the run had its first pull
 * ("with pulls"; polled every 50 ms over one kept connection).  The
 * first pulls of a run start during its window, so the window holds some
 * of them (the count is printed); the held-back run keeps them out (a
 * trigger parks each new pulls row at infinity until the last answer,
 * then they are let go and run at the workers' next scan, within 5 s), so
 * its window is the callbacks and the worker wakes they cause.  Clock
 * ticks are 10 ms per process: per callback the figures are good to
 * about +-0.05 ms at 300 callbacks.
 *
 * Knobs (environment): BENCH_RUNS (DEFAULT_RUNS: count@rate, h to hold
 * the first pulls back; up to 8 runs), BENCH_WARMUP (20, at 50/s),
 * BENCH_TOKEN_LATENCY_MS (200), BENCH_DB_POOL_SIZE (finxd's default),
 * BENCH_LOG_LEVEL (warn), BENCH_FINXD_EXE (another finxd build to
 * measure; default FINXD_EXE), BENCH_STRICT (1: a missed target fails).
 * Targets, at 200/s: CPU of finxd + PostgreSQL per callback in the
 * callback window of the held-back run at most 1.0 ms; added latency p99
 * of the run with the pulls inline at most 5 ms (see print_verdicts).
 * Exits non-zero when a callback fails or the pulls do not finish.
 */
#include <curl/curl.h>

#include <sys/types.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define RETURN_URL "https://partner.example/return"
#define MAX_RUNS 8
#define DEFAULT_RUNS "300@200,150@50,300@200h"
#define TARGET_RATE 200
#define TARGET_CPU_MS 1.0
#define TARGET_P99_MS 5.0

struct cb {
	char *url;        /* the widget's redirect to finxd /callback */
	char *code;       /* its code: finds the token request (never printed) */
	int64_t sched_us; /* when it is due, fixed before the run */
	int64_t sent_us;  /* when its sender started it */
	int64_t done_us;  /* when its answer was in */
	int64_t sbx_us;   /* the sandbox's time on its token request(s), -1 */
	long status;
	bool connected;
};

struct run {
	int n;
	long rate;
	bool hold; /* first pulls held back until the window's end */
	struct cb *cb;
	int nthreads;
};

struct sender {
	struct run *run;
	int k;
};

/* CPU so far in clock ticks. */
struct cpu {
	long finxd, pg;
};

struct result {
	int completed, failed, matched, pulled_in_window;
	long window_ms, pulls_ms; /* pulls_ms: after the last answer, -1 */
	struct cpu t0, t1, t2;
	/* p50, p99, max in us */
	int64_t lag[3]; /* of the senders behind the schedule */
	int64_t add[3]; /* over the sandbox's time, from the schedule */
	int64_t snt[3]; /* over the sandbox's time, from the actual send */
	int64_t nom[3]; /* over the nominal latency, from the schedule */
};

static pid_t finxd_pid, pm_pid;
static long clk_tck;

static long
env_long(const char *name, long def)
{
	const char *v = getenv(name);

	return v != NULL && *v != '\0' ? strtol(v, NULL, 10) : def;
}

static int64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
sleep_until_us(int64_t t)
{
	struct timespec ts = { .tv_sec = (time_t)(t / 1000000),
		.tv_nsec = (long)(t % 1000000) * 1000 };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
	    EINTR)
		;
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* The q-quantile (0..1) of v[0..n), sorting v in place; nearest rank. */
static int64_t
quantile(int64_t *v, int n, double q)
{
	int k;

	if (n == 0)
		return -1;
	qsort(v, (size_t)n, sizeof(*v), cmp_i64);
	k = (int)(q * n + 0.999999) - 1;
	return v[k < 0 ? 0 : k >= n ? n - 1 : k];
}

/* ---- /proc ---- */

/* Fields of /proc/<pid>/stat: ppid, utime+stime, cutime+cstime (ticks);
 * false when the process is gone. */
static bool
proc_stat(pid_t pid, pid_t *ppid, long *self, long *children)
{
	char path[64], line[2048], *p;
	unsigned long ut, st;
	long cut, cst;
	int pp;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return false;
	p = fgets(line, sizeof(line), f);
	fclose(f);
	if (p == NULL || (p = strrchr(line, ')')) == NULL)
		return false;
	/* after "pid (comm)": state ppid pgrp session tty tpgid flags
	 * minflt cminflt majflt cmajflt utime stime cutime cstime */
	if (sscanf(p + 1,
		" %*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %ld %ld",
		&pp, &ut, &st, &cut, &cst) != 5)
		return false;
	*ppid = pp;
	*self = (long)(ut + st);
	*children = cut + cst;
	return true;
}

/* The postmaster with the children it reaped, plus its live children
 * (how many in *nproc when not NULL). */
static long
pg_ticks(int *nproc)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	long sum = 0, self, ch;
	pid_t pp;

	if (d == NULL)
		h_bail("opendir /proc: %s", strerror(errno));
	if (!proc_stat(pm_pid, &pp, &self, &ch))
		h_bail("PostgreSQL's postmaster (pid %d) is gone", (int)pm_pid);
	while ((e = readdir(d)) != NULL) {
		pid_t pid;

		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		pid = (pid_t)strtol(e->d_name, NULL, 10);
		if (!proc_stat(pid, &pp, &self, &ch))
			continue;
		if (pid == pm_pid)
			sum += self + ch;
		else if (pp == pm_pid) {
			sum += self;
			if (nproc != NULL)
				(*nproc)++;
		}
	}
	closedir(d);
	return sum;
}

static struct cpu
cpu_now(void)
{
	struct cpu c = { 0, 0 };
	long ch;
	pid_t pp;

	if (!proc_stat(finxd_pid, &pp, &c.finxd, &ch))
		h_bail("finxd (pid %d) is gone", (int)finxd_pid);
	c.pg = pg_ticks(NULL);
	return c;
}

static double
ticks_ms(long ticks)
{
	return (double)ticks * 1000.0 / (double)clk_tck;
}

/* Our child running exe (finxd serve; the sandbox is one too). */
static pid_t
find_child(const char *exe)
{
	char want[PATH_MAX], got[PATH_MAX], link[64];
	DIR *d = opendir("/proc");
	struct dirent *e;
	pid_t found = 0, pp;
	long self, ch;
	ssize_t n;

	if (d == NULL || realpath(exe, want) == NULL)
		h_bail("cannot resolve %s", exe);
	while (found == 0 && (e = readdir(d)) != NULL) {
		pid_t pid = (pid_t)strtol(e->d_name, NULL, 10);

		if (pid <= 0 || !proc_stat(pid, &pp, &self, &ch) ||
		    pp != getpid())
			continue;
		snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
		n = readlink(link, got, sizeof(got) - 1);
		if (n > 0 && (got[n] = '\0', strcmp(got, want) == 0))
			found = pid;
	}
	closedir(d);
	if (found == 0)
		h_bail("cannot find finxd among our children");
	return found;
}

/* The postmaster's pid, from postmaster.pid in the data directory. */
static pid_t
find_postmaster(const char *conninfo)
{
	char *dir = h_sql_value(conninfo, "SHOW data_directory", NULL);
	char *path, line[64];
	long pid = 0;
	FILE *f;

	path = dir != NULL ? h_fmt("%s/postmaster.pid", dir)
			   : h_fmt("%s/pgdata/postmaster.pid", h_tmpdir());
	if ((f = fopen(path, "r")) != NULL) {
		if (fgets(line, sizeof(line), f) != NULL)
			pid = strtol(line, NULL, 10);
		fclose(f);
	}
	if (pid <= 0)
		h_bail("cannot read %s", path);
	free(path);
	free(dir);
	return (pid_t)pid;
}

/* ---- preparing and sending ---- */

/* Make one link and approve it in the widget; false on any failure. */
static bool
prepare(int fx, int i, struct cb *c)
{
	char user[32];
	struct h_resp r;

	snprintf(user, sizeof(user), "cbopen-%04d", i);
	if (h_link_create(fx, user, RETURN_URL, &r) != 201) {
		h_resp_free(&r);
		return false;
	}
	c->url = h_widget(h_jstr(h_resp_json(&r), "location"), "approve");
	h_resp_free(&r);
	if (c->url == NULL)
		return false;
	c->code = h_qparam(c->url, "code");
	return c->code != NULL;
}

/* One callback on a new connection, as a browser follows the redirect. */
static void
send_one(struct cb *c)
{
	CURL *e = curl_easy_init();

	if (e == NULL)
		return;
	curl_easy_setopt(e, CURLOPT_URL, c->url);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 30000L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, h_curl_discard);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, h_curl_connected);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, &c->connected);
	if (curl_easy_perform(e) == CURLE_OK)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &c->status);
	curl_easy_cleanup(e);
}

/* Sender k: callbacks k, k + nthreads, ..., each at its time. */
static void *
sender_main(void *arg)
{
	struct sender *s = arg;
	struct run *run = s->run;
	int i;

	for (i = s->k; i < run->n; i += run->nthreads) {
		struct cb *c = &run->cb[i];

		sleep_until_us(c->sched_us);
		c->sent_us = mono_us();
		send_one(c);
		c->done_us = mono_us();
	}
	return NULL;
}

/* Fix the schedule from t0 and run the senders until all answered. */
static void
fire(struct run *run, int64_t t0)
{
	pthread_t *th = calloc((size_t)run->nthreads, sizeof(*th));
	struct sender *s = calloc((size_t)run->nthreads, sizeof(*s));
	int i;

	if (th == NULL || s == NULL)
		h_bail("out of memory");
	for (i = 0; i < run->n; i++)
		run->cb[i].sched_us = t0 + (int64_t)i * 1000000 / run->rate;
	for (i = 0; i < run->nthreads; i++) {
		s[i].run = run;
		s[i].k = i;
		if (pthread_create(&th[i], NULL, sender_main, &s[i]) != 0)
			h_bail("pthread_create failed");
	}
	for (i = 0; i < run->nthreads; i++)
		pthread_join(th[i], NULL);
	free(th);
	free(s);
}

/* ---- the sandbox's side and the pulls ---- */

/* Sum handled_us of the recorded token requests carrying each code. */
static void
sandbox_times(struct cb *cb, int n)
{
	struct json_object *o = h_sbx_get("/_sandbox/requests"), *arr, *e, *v;
	size_t i, len;
	int k;

	for (k = 0; k < n; k++)
		cb[k].sbx_us = -1;
	if (o == NULL || !json_object_object_get_ex(o, "requests", &arr))
		h_bail("GET /_sandbox/requests failed");
	len = json_object_array_length(arr);
	for (i = 0; i < len; i++) {
		const char *path, *body;

		e = json_object_array_get_idx(arr, i);
		path = h_jstr(e, "path");
		body = h_jstr(e, "body");
		if (path == NULL || strcmp(path, "/auth/token") != 0 ||
		    body == NULL || !json_object_object_get_ex(e, "handled_us",
					&v) || v == NULL)
			continue;
		for (k = 0; k < n; k++)
			if (strstr(body, cb[k].code) != NULL)
				cb[k].sbx_us = (cb[k].sbx_us < 0 ? 0
								  : cb[k].sbx_us) +
				    json_object_get_int64(v);
	}
	json_object_put(o);
}

/* Connections whose first pull is still to come, of want expected. */
static long
pulls_pending(PGconn *db, long want)
{
	PGresult *res = PQexec(db,
	    "SELECT count(*) FILTER (WHERE last_pull_at IS NULL), count(*) "
	    "FROM pulls");
	long pending, rows;

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		h_bail("counting the pulls failed: %s", PQerrorMessage(db));
	pending = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	rows = strtol(PQgetvalue(res, 0, 1), NULL, 10);
	PQclear(res);
	return pending + (rows < want ? want - rows : 0);
}

/* Wait (up to 60 s) until all want connections had their first pull; ms
 * waited, or -1. */
static long
pulls_wait(PGconn *db, long want)
{
	int64_t t0 = mono_us(), end = t0 + 60 * 1000000LL;

	while (mono_us() < end) {
		if (pulls_pending(db, want) == 0)
			return (long)((mono_us() - t0) / 1000);
		h_sleep_ms(50);
	}
	return -1;
}

/* ---- one run ---- */

/* Hold the first pulls of new connections back (parked at infinity, as
 * finxd parks a revoked connection's), or let them go. */
static void
pulls_hold(PGconn *db, bool on)
{
	static const char *const hold[] = {
		"CREATE FUNCTION bench_hold_pull() RETURNS trigger LANGUAGE "
		"plpgsql AS $$BEGIN NEW.next_pull_at := 'infinity'; RETURN "
		"NEW; END$$",
		"CREATE TRIGGER bench_hold BEFORE INSERT ON pulls FOR EACH ROW "
		"EXECUTE FUNCTION bench_hold_pull()",
		NULL
	};
	static const char *const release[] = {
		"DROP TRIGGER bench_hold ON pulls",
		"DROP FUNCTION bench_hold_pull()",
		"UPDATE pulls SET next_pull_at = now() WHERE next_pull_at = "
		"'infinity'",
		NULL
	};
	const char *const *q;

	for (q = on ? hold : release; *q != NULL; q++) {
		PGresult *res = PQexec(db, *q);

		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			h_bail("%s: %s", *q, PQerrorMessage(db));
		PQclear(res);
	}
}

/* p50, p99 and max of v[0..n) into out; v is sorted. */
static void
pct3(int64_t *v, int n, int64_t out[3])
{
	out[0] = quantile(v, n, 0.50);
	out[1] = quantile(v, n, 0.99);
	out[2] = n > 0 ? v[n - 1] : -1;
}

static void
latencies(struct run *run, struct result *res, long lat_ms)
{
	int64_t *v = calloc((size_t)run->n * 4, sizeof(*v));
	int64_t *lag = v, *add = v + run->n, *snt = add + run->n,
		*nom = snt + run->n;
	int i, na = 0, nn = 0;

	if (v == NULL)
		h_bail("out of memory");
	for (i = 0; i < run->n; i++) {
		struct cb *c = &run->cb[i];
		int64_t total = c->done_us - c->sched_us;

		lag[i] = c->sent_us - c->sched_us;
		if (c->status != 303 || !c->connected)
			continue;
		nom[nn++] = total - lat_ms * 1000;
		if (c->sbx_us < 0)
			continue;
		add[na] = total - c->sbx_us;
		snt[na++] = c->done_us - c->sent_us - c->sbx_us;
	}
	res->matched = na;
	pct3(lag, run->n, res->lag);
	pct3(add, na, res->add);
	pct3(snt, na, res->snt);
	pct3(nom, nn, res->nom);
	free(v);
}

/*
 * Send the run's callbacks open loop; *connected counts the connections
 * so far (every earlier run's), for the pulls to wait for.
 */
static void
run_one(struct run *run, PGconn *db, long *connected, long lat_ms,
    struct result *res)
{
	int64_t t0, last = 0;
	long want;
	int i;

	memset(res, 0, sizeof(*res));
	h_sbx_delete("/_sandbox/requests");
	if (run->hold)
		pulls_hold(db, true);
	t0 = mono_us() + 20000;
	res->t0 = cpu_now();
	fire(run, t0);
	res->t1 = cpu_now();
	if (run->hold)
		pulls_hold(db, false);
	for (i = 0; i < run->n; i++) {
		if (run->cb[i].status == 303 && run->cb[i].connected)
			res->completed++;
		if (run->cb[i].done_us > last)
			last = run->cb[i].done_us;
	}
	res->failed = run->n - res->completed;
	res->window_ms = (long)((last - t0) / 1000);
	want = *connected + res->completed;
	res->pulled_in_window =
	    res->completed - (int)pulls_pending(db, want);
	res->pulls_ms = pulls_wait(db, want);
	res->t2 = cpu_now();
	*connected = want;
	sandbox_times(run->cb, run->n);
	latencies(run, res, lat_ms);
}

/* ---- report ---- */

static void
print_cpu(const char *what, long ms, const struct cpu *a,
    const struct cpu *b, int n)
{
	double fx = ticks_ms(b->finxd - a->finxd) / n;
	double pg = ticks_ms(b->pg - a->pg) / n;

	printf("    CPU per callback, %s (%ld ms): finxd %.2f ms, PostgreSQL "
	       "%.2f ms, sum %.2f ms\n",
	    what, ms, fx, pg, fx + pg);
}

#define MS3(v) (v)[0] / 1000.0, (v)[1] / 1000.0, (v)[2] / 1000.0

static void
print_run(const struct run *run, const struct result *r, long lat_ms)
{
	printf("  run %d at %ld/s%s: %d completed (303, connected), %d "
	       "failed; %d senders, behind the schedule p50 %.1f ms, p99 "
	       "%.1f ms, max %.1f ms\n",
	    run->n, run->rate, run->hold ? ", first pulls held back" : "",
	    r->completed, r->failed, run->nthreads, MS3(r->lag));
	if (r->matched == 0)
		printf("    added latency: the sandbox reports no handled_us "
		       "(an older finx-sandbox?); see the nominal figures\n");
	else
		printf("    added latency over the sandbox's handling (%d of "
		       "%d matched): p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
		    r->matched, r->completed, MS3(r->add));
	printf("      the same from the actual send: p50 %.1f ms, p99 %.1f ms, "
	       "max %.1f ms; latency minus the nominal %ld ms: p50 %.1f ms, "
	       "p99 %.1f ms, max %.1f ms\n",
	    MS3(r->snt), lat_ms, MS3(r->nom));
	print_cpu("callback window", r->window_ms, &r->t0, &r->t1, run->n);
	printf("      (first send to last answer; %d of %d first pulls done "
	       "by its end)\n",
	    r->pulled_in_window, r->completed);
	print_cpu("with pulls", r->window_ms + r->pulls_ms, &r->t0, &r->t2,
	    run->n);
	printf("      (until every first pull was done, %ld ms after the last "
	       "answer)\n",
	    r->pulls_ms);
}

static double
window_cpu(const struct run *run, const struct result *r)
{
	return (ticks_ms(r->t1.finxd - r->t0.finxd) +
		   ticks_ms(r->t1.pg - r->t0.pg)) /
	    run->n;
}

/* The first run at TARGET_RATE, held back as wanted if there is one;
 * -1 when no run is at that rate. */
static int
pick_run(const struct run *runs, int nruns, bool hold)
{
	int k, any = -1;

	for (k = 0; k < nruns; k++) {
		if (runs[k].rate != TARGET_RATE)
			continue;
		if (runs[k].hold == hold)
			return k;
		if (any < 0)
			any = k;
	}
	return any;
}

/*
 * The targets; true when both are met.  CPU from the run with the first
 * pulls held back (the callback and the worker wakes it causes, what the
 * issue measured); the window of a run with them inline holds as many
 * pulls as happened to finish in it.  Latency from the run with the
 * pulls inline, as finxd runs.
 */
static bool
print_verdicts(const struct run *runs, const struct result *res, int nruns)
{
	int kc = pick_run(runs, nruns, true), kl = pick_run(runs, nruns, false);
	double cpu, p99;
	bool cpu_ok, p99_ok;

	if (kc < 0) {
		printf("VERDICT none: no run at %d/s\n", TARGET_RATE);
		return false;
	}
	cpu = window_cpu(&runs[kc], &res[kc]);
	cpu_ok = cpu <= TARGET_CPU_MS;
	printf("VERDICT callback CPU finxd + PostgreSQL at %d/s (%s): %.2f ms "
	       "per callback (target <= %.1f ms): %s\n",
	    TARGET_RATE,
	    runs[kc].hold ? "callback window, first pulls held back"
			  : "callback window, pulls inline",
	    cpu, TARGET_CPU_MS, cpu_ok ? "met" : "MISSED");
	/* without the sandbox's handled_us, over the nominal */
	p99 = (res[kl].matched > 0 ? res[kl].add[1] : res[kl].nom[1]) / 1000.0;
	p99_ok = res[kl].nom[1] >= 0 && p99 <= TARGET_P99_MS;
	printf("VERDICT added latency p99 at %d/s (%s): %.1f ms (target <= "
	       "%.0f ms): %s\n",
	    TARGET_RATE, runs[kl].hold ? "first pulls held back" : "pulls inline",
	    p99, TARGET_P99_MS, p99_ok ? "met" : "MISSED");
	return cpu_ok && p99_ok;
}

/* ---- setup ---- */

/* "count@rate[h],..." into runs (h: first pulls held back); the number
 * of runs. */
static int
parse_runs(const char *spec, struct run *runs)
{
	const char *p = spec;
	int n = 0;
	char *end;

	while (*p != '\0') {
		if (n == MAX_RUNS)
			h_bail("BENCH_RUNS: at most %d runs", MAX_RUNS);
		runs[n].n = (int)strtol(p, &end, 10);
		if (*end != '@')
			h_bail("BENCH_RUNS: want count@rate,... (%s)", spec);
		runs[n].rate = strtol(end + 1, &end, 10);
		runs[n].hold = *end == 'h';
		end += runs[n].hold;
		if (runs[n].n < 1 || runs[n].rate < 1 || runs[n].rate > 5000 ||
		    (*end != ',' && *end != '\0'))
			h_bail("BENCH_RUNS: want count@rate,... (%s)", spec);
		/* a second of callbacks in flight before a sender is late */
		runs[n].nthreads = (int)(runs[n].rate < 8 ? 8 : runs[n].rate);
		if (runs[n].nthreads > runs[n].n)
			runs[n].nthreads = runs[n].n;
		n++;
		p = *end == ',' ? end + 1 : end;
	}
	if (n == 0)
		h_bail("BENCH_RUNS is empty");
	return n;
}

/* Start PostgreSQL, the sandbox and finxd (exe); finxd's index. */
static int
start_all(const char *exe, long lat_ms, const char **conninfo)
{
	const char *migrate[] = { "migrate", NULL };
	char lat_s[24];
	const char *sbx_args[] = { "--token-latency-ms", lat_s, NULL };
	const char *v;
	int fx;

	snprintf(lat_s, sizeof(lat_s), "%ld", lat_ms);
	*conninfo = h_pg_start();
	h_sandbox_start(sbx_args);
	h_env_defaults(*conninfo);
	h_env_set("FINXD_RETURN_URLS", RETURN_URL);
	v = getenv("BENCH_LOG_LEVEL");
	h_env_set("FINXD_LOG_LEVEL", v != NULL ? v : "warn");
	if ((v = getenv("BENCH_DB_POOL_SIZE")) != NULL && *v != '\0')
		h_env_set("FINXD_DB_POOL_SIZE", v);
	if (h_finxd_run_exe(exe, migrate, 60) != 0)
		h_bail("finxd migrate failed");
	fx = h_finxd_start_exe(exe, true);
	finxd_pid = find_child(exe);
	pm_pid = find_postmaster(*conninfo);
	return fx;
}

static void
prepare_all(int fx, struct cb *cb, int n)
{
	long t0 = h_now_ms();
	int i;

	for (i = 0; i < n; i++)
		if (!prepare(fx, i, &cb[i]))
			h_bail("preparing link %d failed", i);
	printf("# bench_cbopen: prepared %d links and widget approvals in %ld "
	       "ms\n",
	    n, h_now_ms() - t0);
}

/* Warm-up callbacks (not counted): finxd's pool connections and code
 * paths used once before the runs. */
static void
warm_up(struct run *w, PGconn *db, long *connected, long lat_ms)
{
	struct result r;

	if (w->n == 0)
		return;
	run_one(w, db, connected, lat_ms, &r);
	printf("# bench_cbopen: warm-up %d callbacks at %ld/s: %d completed, "
	       "first pulls done %ld ms after the last answer\n",
	    w->n, w->rate, r.completed, r.pulls_ms);
}

static void
print_idle(void)
{
	struct cpu a = cpu_now(), b;
	int nproc = 0;

	h_sleep_ms(2000);
	b = cpu_now();
	pg_ticks(&nproc);
	printf("  idle before the runs, 2 s: finxd %.1f ms/s, PostgreSQL %.1f "
	       "ms/s of CPU (finxd pid %d; PostgreSQL: postmaster %d and %d "
	       "processes under it)\n",
	    ticks_ms(b.finxd - a.finxd) / 2, ticks_ms(b.pg - a.pg) / 2,
	    (int)finxd_pid, (int)pm_pid, nproc);
}

/* The runs of BENCH_RUNS after the warm-up, their callbacks in one array
 * in the order they are sent. */
struct plan {
	struct run warm, runs[MAX_RUNS];
	int nruns, total;
	struct cb *cb;
};

static void
plan_make(struct plan *p)
{
	const char *spec = getenv("BENCH_RUNS");
	int k;

	memset(p, 0, sizeof(*p));
	p->nruns = parse_runs(spec != NULL && *spec != '\0' ? spec
							   : DEFAULT_RUNS,
	    p->runs);
	p->warm.n = (int)env_long("BENCH_WARMUP", 20);
	p->warm.rate = 50;
	p->warm.nthreads = p->warm.n < 1 ? 1 : p->warm.n < 50 ? p->warm.n : 50;
	p->total = p->warm.n;
	for (k = 0; k < p->nruns; k++)
		p->total += p->runs[k].n;
	if ((p->cb = calloc((size_t)p->total, sizeof(*p->cb))) == NULL)
		h_bail("out of memory");
	p->warm.cb = p->cb;
	for (k = 0; k < p->nruns; k++)
		p->runs[k].cb = k == 0 ? p->cb + p->warm.n
				       : p->runs[k - 1].cb + p->runs[k - 1].n;
}

static void
plan_free(struct plan *p)
{
	int k;

	for (k = 0; k < p->total; k++) {
		free(p->cb[k].url);
		free(p->cb[k].code);
	}
	free(p->cb);
}

static void
print_header(long lat, const char *exe)
{
	const char *pool = getenv("BENCH_DB_POOL_SIZE");
	const char *level = getenv("BENCH_LOG_LEVEL");

	printf("bench_cbopen: open-loop callbacks, sandbox token endpoint %ld "
	       "ms, finxd pool %s, log level %s, finxd %s\n",
	    lat, pool != NULL ? pool : "default",
	    level != NULL ? level : "warn", exe);
}

int
main(void)
{
	long lat = env_long("BENCH_TOKEN_LATENCY_MS", 200), connected = 0;
	const char *exe = getenv("BENCH_FINXD_EXE"), *conninfo;
	struct result res[MAX_RUNS];
	struct plan p;
	int fx, k, rc = 0;
	PGconn *db;

	h_init("bench_cbopen", 300);
	if (exe == NULL && (exe = getenv("FINXD_EXE")) == NULL)
		h_bail("FINXD_EXE is not set (run through meson test)");
	clk_tck = sysconf(_SC_CLK_TCK);
	plan_make(&p);
	fx = start_all(exe, lat, &conninfo);
	db = PQconnectdb(conninfo);
	if (PQstatus(db) != CONNECTION_OK)
		h_bail("cannot connect to the test database");
	curl_global_init(CURL_GLOBAL_DEFAULT);
	prepare_all(fx, p.cb, p.total);
	warm_up(&p.warm, db, &connected, lat);

	print_header(lat, exe);
	print_idle();
	for (k = 0; k < p.nruns; k++) {
		run_one(&p.runs[k], db, &connected, lat, &res[k]);
		print_run(&p.runs[k], &res[k], lat);
		if (res[k].failed != 0 || res[k].pulls_ms < 0)
			rc = 1;
	}
	/* A missed target fails only with BENCH_STRICT=1: the figures depend
	 * on the machine (2 shared cores in CI), a failed callback never. */
	if (!print_verdicts(p.runs, res, p.nruns) &&
	    env_long("BENCH_STRICT", 0))
		rc = 1;
	plan_free(&p);
	PQfinish(db);
	curl_global_cleanup();
	return h_done(rc);
}
