/*
 * Webhook deliveries (issue 14): how many events per second one finxd
 * process delivers to a local receiver, and how long an event takes from
 * the commit of its change to its arrival at the receiver.
 *
 * The receiver is in this process: one thread per connection (finxd's
 * senders keep theirs alive), answering 200 at once, recording each
 * request's webhook-id and arrival time.  Signatures are not checked
 * (it_webhooks does that, with the reference library).
 *
 * Throughput: BENCH_N events inserted by SQL in one committed statement
 * while finxd runs; the figure is N over the time from that commit to the
 * arrival of the last of them.
 *
 * Latency: BENCH_RATE events a second for BENCH_SECONDS, each in its own
 * committed INSERT ... RETURNING id (autocommit), at a steady schedule;
 * an event's commit time is taken just after its INSERT returned, and
 * its latency is its arrival minus that.  Target: p99 under 1 s with a
 * healthy endpoint (the dispatcher polls every 200 ms when idle).
 *
 * Both with FINXD_WEBHOOK_CONCURRENCY at finxd's default (4, or
 * BENCH_CONCURRENCY) and then at 1, the baseline.  About a minute.
 * Knobs (environment): BENCH_N (5000), BENCH_RATE (100), BENCH_SECONDS
 * (10), BENCH_CONCURRENCY (4), BENCH_RX_DELAY_MS (0: the receiver's time
 * per request, to see what concurrency buys against a slower endpoint),
 * BENCH_STRICT (1: a missed target fails).
 * Exits non-zero when an event is not delivered in time.
 */
#include "harness.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define TARGET_P99_MS 1000.0

static const char *db;

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- the receiver ---------------------------------------------------- */

struct arrival {
	char id[40]; /* evt_ and 32 hex */
	int64_t at_us;
};

static struct {
	int port;
	pthread_mutex_t mu;
	struct arrival *v;
	size_t n, cap;
	long conns; /* connections accepted: keep-alive keeps it small */
	long delay_ms; /* BENCH_RX_DELAY_MS: before each answer */
} rx = { .mu = PTHREAD_MUTEX_INITIALIZER };

static void
arrived(const char *head)
{
	const char *p = strcasestr(head, "\r\nwebhook-id:");
	int64_t t = now_us();
	size_t len;

	if (p == NULL)
		return;
	p += 13;
	while (*p == ' ')
		p++;
	len = strcspn(p, "\r\n");
	pthread_mutex_lock(&rx.mu);
	if (rx.n == rx.cap) {
		rx.cap = rx.cap * 2 + 4096;
		rx.v = realloc(rx.v, rx.cap * sizeof(*rx.v));
	}
	if (len >= sizeof(rx.v[0].id))
		len = sizeof(rx.v[0].id) - 1;
	memcpy(rx.v[rx.n].id, p, len);
	rx.v[rx.n].id[len] = '\0';
	rx.v[rx.n++].at_us = t;
	pthread_mutex_unlock(&rx.mu);
}

/* One keep-alive connection: requests in, "200" out, until it closes. */
static void *
conn_loop(void *arg)
{
	static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
	int fd = (int)(intptr_t)arg;
	size_t cap = 1 << 16, n = 0, need;
	char *buf = malloc(cap + 1), *end;
	ssize_t k;

	pthread_mutex_lock(&rx.mu);
	rx.conns++;
	pthread_mutex_unlock(&rx.mu);
	for (;;) {
		buf[n] = '\0';
		end = strstr(buf, "\r\n\r\n");
		if (end != NULL) {
			const char *cl = strcasestr(buf, "\r\ncontent-length:");

			need = (size_t)(end + 4 - buf) +
			    (cl && cl < end ? strtoul(cl + 17, NULL, 10) : 0);
			if (need > cap)
				break;
			if (n >= need) {
				*end = '\0';
				arrived(buf);
				if (rx.delay_ms > 0)
					h_sleep_ms(rx.delay_ms);
				if (write(fd, ok, sizeof(ok) - 1) < 0)
					break;
				memmove(buf, buf + need, n - need);
				n -= need;
				continue;
			}
		}
		if (n == cap || (k = read(fd, buf + n, cap - n)) <= 0)
			break;
		n += (size_t)k;
	}
	free(buf);
	close(fd);
	return NULL;
}

/* Forget what arrived; the time the last of them came, 0 when none. */
static int64_t
rx_reset(void)
{
	int64_t last = 0;

	pthread_mutex_lock(&rx.mu);
	for (size_t i = 0; i < rx.n; i++)
		if (rx.v[i].at_us > last)
			last = rx.v[i].at_us;
	rx.n = 0;
	pthread_mutex_unlock(&rx.mu);
	return last;
}

/* Arrival of id (the first), -1 when it did not come. */
static int64_t
rx_arrival(const char *id)
{
	int64_t t = -1;

	pthread_mutex_lock(&rx.mu);
	for (size_t i = 0; i < rx.n && t < 0; i++)
		if (strcmp(rx.v[i].id, id) == 0)
			t = rx.v[i].at_us;
	pthread_mutex_unlock(&rx.mu);
	return t;
}

/* Wait up to ms until want have arrived; true when they did. */
static bool
rx_wait(size_t want, long ms)
{
	long end = h_now_ms() + ms;
	size_t n;

	for (;;) {
		pthread_mutex_lock(&rx.mu);
		n = rx.n;
		pthread_mutex_unlock(&rx.mu);
		if (n >= want || h_now_ms() >= end)
			return n >= want;
		h_sleep_ms(5);
	}
}

/* ---- the runs -------------------------------------------------------- */

struct figures {
	long n;          /* events of the throughput run */
	double rate;     /* delivered per second */
	long lat_n, lat_missing;
	long conns; /* connections finxd opened to the receiver */
	double p50, p99, max; /* ms, commit to arrival */
};

static bool
throughput(struct figures *fg, long n)
{
	char ns[24];
	int64_t t0;
	bool ok;

	snprintf(ns, sizeof(ns), "%ld", n);
	rx_reset();
	if (!h_sql_do(db, "INSERT INTO event_log (type, data) SELECT "
			  "'transactions.updated', jsonb_build_object('bench', "
			  "i) FROM generate_series(1, $1::int) i",
		(const char *[]){ ns, NULL }))
		h_bail("the bulk INSERT failed");
	t0 = now_us();
	ok = rx_wait((size_t)n, 120000);
	fg->n = n;
	fg->rate = ok ? (double)n * 1e6 / (double)(rx_reset() - t0) : 0;
	return ok;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Insert rate events a second for secs seconds, one committed INSERT
 * each; the ids and commit times in ids/at (n of them). */
static long
trickle(PGconn *c, long rate, long secs, char (*ids)[40], int64_t *at)
{
	long n = rate * secs, i;
	int64_t start = now_us(), due;

	for (i = 0; i < n; i++) {
		PGresult *r;

		due = start + i * 1000000 / rate;
		while (now_us() < due)
			usleep((useconds_t)(due - now_us()));
		r = PQexec(c, "INSERT INTO event_log (type, data) VALUES "
			      "('transactions.updated', '{\"lat\": 1}') "
			      "RETURNING 'evt_' || replace(id::text, '-', '')");
		at[i] = now_us();
		if (PQresultStatus(r) != PGRES_TUPLES_OK)
			h_bail("INSERT failed: %s", PQerrorMessage(c));
		snprintf(ids[i], sizeof(ids[i]), "%s", PQgetvalue(r, 0, 0));
		PQclear(r);
	}
	return n;
}

static void
latency(struct figures *fg, long rate, long secs)
{
	long n = rate * secs, i, k = 0;
	char(*ids)[40] = calloc((size_t)n, sizeof(*ids));
	int64_t *at = calloc((size_t)n, sizeof(*at)), t;
	double *ms = calloc((size_t)n, sizeof(*ms));
	PGconn *c = PQconnectdb(db);

	if (PQstatus(c) != CONNECTION_OK)
		h_bail("connect: %s", PQerrorMessage(c));
	rx_reset();
	trickle(c, rate, secs, ids, at);
	PQfinish(c);
	rx_wait((size_t)n, 15000);
	for (i = 0; i < n; i++)
		if ((t = rx_arrival(ids[i])) >= 0)
			ms[k++] = (double)(t - at[i]) / 1000.0;
	qsort(ms, (size_t)k, sizeof(*ms), cmp_double);
	fg->lat_n = k;
	fg->lat_missing = n - k;
	fg->p50 = k ? ms[k / 2] : 0;
	fg->p99 = k ? ms[(k * 99 + 99) / 100 - 1] : 0;
	fg->max = k ? ms[k - 1] : 0;
	free(ids);
	free(at);
	free(ms);
}

/* One finxd with concurrency conc: both runs. */
static bool
run(long conc, long n, long rate, long secs, struct figures *fg)
{
	char buf[24];
	bool ok;
	int f;

	snprintf(buf, sizeof(buf), "%ld", conc);
	h_env_set("FINXD_WEBHOOK_CONCURRENCY", buf);
	pthread_mutex_lock(&rx.mu);
	fg->conns = -rx.conns;
	pthread_mutex_unlock(&rx.mu);
	f = h_finxd_start();
	h_sleep_ms(500);
	ok = throughput(fg, n);
	latency(fg, rate, secs);
	h_finxd_stop(f, SIGTERM);
	pthread_mutex_lock(&rx.mu);
	fg->conns += rx.conns;
	pthread_mutex_unlock(&rx.mu);
	printf("# concurrency %ld: %ld events in one commit delivered at "
	       "%.0f/s; %ld at %ld/s one commit each: commit to arrival "
	       "p50 %.0f ms, p99 %.0f ms, max %.0f ms (%ld missing); %ld "
	       "connections for %ld deliveries\n",
	    conc, fg->n, fg->rate, fg->lat_n + fg->lat_missing, rate, fg->p50,
	    fg->p99, fg->max, fg->lat_missing, fg->conns,
	    fg->n + fg->lat_n);
	fflush(stdout);
	return ok && fg->lat_missing == 0;
}

static void
report(const char *what, long conc, const struct figures *fg)
{
	printf("RESULT %s (concurrency %ld): %6.0f events/s delivered; commit "
	       "to delivery p50 %4.0f ms, p99 %4.0f ms, max %4.0f ms "
	       "(target p99 < %.0f ms: %s)\n",
	    what, conc, fg->rate, fg->p50, fg->p99, fg->max, TARGET_P99_MS,
	    fg->p99 < TARGET_P99_MS ? "met" : "MISSED");
}

int
main(void)
{
	long n = h_env_long("BENCH_N", 5000), rate = h_env_long("BENCH_RATE", 100),
	     secs = h_env_long("BENCH_SECONDS", 10),
	     conc = h_env_long("BENCH_CONCURRENCY", 4);
	bool strict = h_env_long("BENCH_STRICT", 0) == 1, ok;
	struct figures a = { 0 }, b = { 0 };
	char *url;

	h_init("bench_webhooks", 280);
	db = h_setup(NULL);
	rx.delay_ms = h_env_long("BENCH_RX_DELAY_MS", 0);
	h_serve_loopback(conn_loop, &rx.port);
	url = h_fmt("http://127.0.0.1:%d/hook", rx.port);
	h_env_set("FINXD_WEBHOOK_URL", url);
	h_env_set("FINXD_WEBHOOK_SECRET",
	    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"); /* a test value */
	h_env_set("FINXD_LOG_LEVEL", "warn");
	h_env_set("FINXD_REFRESH_INTERVAL", "3600");
	free(url);
	printf("# bench_webhooks: one finxd process, a local receiver "
	       "answering 200 after %ld ms (keep-alive); %ld events in one "
	       "commit, then %ld/s for %ld s one commit each\n",
	    rx.delay_ms, n, rate, secs);
	ok = run(conc, n, rate, secs, &a);
	ok = run(1, n, rate, secs, &b) && ok;
	report("healthy endpoint", conc, &a);
	report("baseline        ", 1, &b);
	if (!ok)
		printf("# some events were not delivered in time\n");
	if (strict && (a.p99 >= TARGET_P99_MS))
		ok = false;
	return h_done(ok ? 0 : 1);
}
