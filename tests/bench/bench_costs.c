/*
 * The per-request costs of issue 13 one by one, in a loop, without a
 * daemon: what finxd's own code adds to each request on top of
 * libmicrohttpd.
 *
 *   log      log_kv of the access-log line (the fields on_completed
 *            logs), stderr sent to a file (BENCH_LOG_FILE, else a
 *            temporary one) as under the harness, then to a pipe that
 *            another thread drains, as under systemd or a container
 *            runtime; ns per line and write(2) calls per line
 *   metrics  metrics_http of one route and status, on BENCH_THREADS (2)
 *            threads at once, ns per call
 *   reqid    a request id as finxd makes one (getrandom before, the
 *            per-thread generator after), ns per id
 *   match    the route table walked as dispatch walks it for a GET
 *            (each {} decoded as the walk meets it before, a copy of the
 *            old http_match; the literal parts of every route first and
 *            the one route that matched decoded after)
 *
 * Knobs: BENCH_N (200000 per case), BENCH_THREADS (2), BENCH_CASE (one
 * of log, metrics, reqid, match: that case alone), BENCH_WHICH (reqid and
 * match: 1 the old way only, 2 the new only, 3 both), so that `perf stat
 * -e instructions:u` can count one way's instructions, which the machine's
 * load does not change.  Run directly:
 * build/tests/bench/bench_costs (not a meson benchmark: it needs no
 * PostgreSQL and takes a few seconds).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "encode.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "reqid.h"
#include "secret.h"

static long n_iter = 200000;
static const char *only; /* BENCH_CASE: run this case alone */
static int which = 3;   /* BENCH_WHICH: 1 the old rule, 2 the new, 3 both */

static bool
run(const char *name)
{
	return only == NULL || strcmp(only, name) == 0;
}

static double
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void
log_lines(long n)
{
	long i;

	for (i = 0; i < n; i++)
		log_kv(LOG_INFO, "request", "method", "GET", "path",
		    "/v1/users/u-bench/accounts", "route",
		    "/v1/users/{}/accounts", "status", "200", "ms", "0",
		    "completed", "yes", NULL);
	log_flush();
}

/* Lines and write(2) calls that reached fd (a file) since offset 0. */
static void
count_file(int fd, long *lines, long *bytes)
{
	char b[65536];
	ssize_t n, i;

	*lines = *bytes = 0;
	lseek(fd, 0, SEEK_SET);
	while ((n = read(fd, b, sizeof(b))) > 0) {
		for (i = 0; i < n; i++)
			*lines += b[i] == '\n';
		*bytes += n;
	}
}

static void *
drain(void *arg)
{
	int fd = *(int *)arg;
	char b[65536];
	long *reads = malloc(sizeof(long));

	*reads = 0;
	while (read(fd, b, sizeof(b)) > 0)
		(*reads)++;
	return reads;
}

static void
bench_log_file(void)
{
	char tmpl[] = "/tmp/bench_costs.XXXXXX";
	const char *path = getenv("BENCH_LOG_FILE");
	int fd = path ? open(path, O_RDWR | O_CREAT | O_TRUNC, 0600)
		      : mkstemp(tmpl);
	int saved = dup(2);
	long lines, bytes;
	double t;

	if (fd < 0 || saved < 0) {
		perror("bench_costs: log file");
		exit(1);
	}
	dup2(fd, 2);
	t = now_ns();
	log_lines(n_iter);
	t = now_ns() - t;
	dup2(saved, 2);
	count_file(fd, &lines, &bytes);
	printf("  log to a file    %8.0f ns/line  (%ld lines, %ld bytes)\n",
	    t / (double)n_iter, lines, bytes);
	close(fd);
	if (path == NULL)
		unlink(tmpl);
	close(saved);
}

static void
bench_log_pipe(void)
{
	int p[2], saved = dup(2);
	pthread_t th;
	long *reads;
	double t;

	if (pipe(p) != 0 || saved < 0) {
		perror("bench_costs: pipe");
		exit(1);
	}
	pthread_create(&th, NULL, drain, &p[0]);
	dup2(p[1], 2);
	close(p[1]);
	t = now_ns();
	log_lines(n_iter);
	t = now_ns() - t;
	dup2(saved, 2);
	close(saved);
	pthread_join(th, (void **)&reads);
	printf("  log to a pipe    %8.0f ns/line  (%ld reads by the other "
	       "end: %.3f per line)\n",
	    t / (double)n_iter, *reads, (double)*reads / (double)n_iter);
	free(reads);
	close(p[0]);
}

static void *
metrics_loop(void *arg)
{
	long i;

	(void)arg;
	for (i = 0; i < n_iter; i++)
		metrics_http("/v1/users/{}/accounts", 200, 1);
	return NULL;
}

static void
bench_metrics(int threads)
{
	pthread_t th[16];
	double t;
	int i;

	t = now_ns();
	for (i = 0; i < threads; i++)
		pthread_create(&th[i], NULL, metrics_loop, NULL);
	for (i = 0; i < threads; i++)
		pthread_join(th[i], NULL);
	t = now_ns() - t;
	printf("  metrics_http     %8.0f ns/call on each of %d threads "
	       "(%.0f ns of wall time per call)\n",
	    t * threads / (double)(n_iter * threads), threads,
	    t / (double)(n_iter * threads));
}

static void
bench_reqid(void)
{
	char id[72];
	long i;
	double t;

	t = now_ns();
	for (i = 0; i < n_iter && (which & 1); i++) {
		unsigned char b[12];
		char *h;

		rand_bytes(b, sizeof(b));
		h = hex_encode(b, sizeof(b));
		snprintf(id, sizeof(id), "%s", h);
		free(h);
	}
	t = now_ns() - t;
	printf("  reqid getrandom  %8.0f ns/id\n", t / (double)n_iter);
	t = now_ns();
	for (i = 0; i < n_iter && (which & 2); i++)
		reqid_new(id, sizeof(id));
	t = now_ns() - t;
	printf("  reqid per thread %8.0f ns/id (%s)\n", t / (double)n_iter, id);
}

/*
 * http_match as it was before issue 13: each {} decoded as it is met.
 * noinline: the library's http_match is a call too.
 */
static __attribute__((noinline)) bool
old_match(const char *pattern, const char *path, char **params,
    int *n_params)
{
	int n = 0;

	while (*pattern && *path) {
		if (pattern[0] == '{' && pattern[1] == '}') {
			size_t len = strcspn(path, "/");

			if (len == 0 || n == HTTP_MAX_PARAMS)
				goto fail;
			if ((params[n] = http_unescape(path, len)) == NULL ||
			    params[n][0] == '\0') {
				free(params[n]);
				goto fail;
			}
			n++;
			pattern += 2;
			path += len;
		} else if (*pattern++ != *path++)
			goto fail;
	}
	if (*pattern == '\0' && *path == '\0') {
		*n_params = n;
		return true;
	}
fail:
	while (n > 0)
		free(params[--n]);
	*n_params = 0;
	return false;
}

typedef bool (*matcher)(const char *, const char *, char **, int *);

/*
 * dispatch's walk for a GET of path with match: old_match, the old rule
 * (each {} decoded as it is met), or http_match, the new one (the literal
 * parts of every route first, the {} segments decoded for the route that
 * matched).
 */
static void
walk(matcher match, const char *path)
{
	const struct route *rt;

	for (rt = routes; rt->pattern != NULL; rt++) {
		char *p[HTTP_MAX_PARAMS];
		int np;

		if (!match(rt->pattern, path, p, &np))
			continue;
		while (np > 0)
			free(p[--np]);
		if (strcmp(rt->method, "GET") == 0)
			return;
	}
}

static void
bench_match(const char *path)
{
	long i;
	double t;

	t = now_ns();
	for (i = 0; i < n_iter && (which & 1); i++)
		walk(old_match, path);
	t = now_ns() - t;
	printf("  match, decode on every try %6.0f ns/request (%s)\n",
	    t / (double)n_iter, path);
	t = now_ns();
	for (i = 0; i < n_iter && (which & 2); i++)
		walk(http_match, path);
	t = now_ns() - t;
	printf("  match, literal parts first %6.0f ns/request\n",
	    t / (double)n_iter);
}

int
main(void)
{
	const char *v;
	int threads = 2;

	if ((v = getenv("BENCH_N")) != NULL)
		n_iter = atol(v);
	if ((v = getenv("BENCH_THREADS")) != NULL)
		threads = (int)strtol(v, NULL, 10);
	if ((v = getenv("BENCH_WHICH")) != NULL)
		which = (int)strtol(v, NULL, 10);
	if (threads < 1 || threads > 16 || n_iter < 1) {
		fprintf(stderr, "bench_costs: bad BENCH_N or BENCH_THREADS\n");
		return 2;
	}
	if ((v = getenv("BENCH_CASE")) != NULL && *v != '\0')
		only = v;
	printf("bench_costs: %ld iterations per case\n", n_iter);
	if (run("log")) {
		bench_log_file();
		bench_log_pipe();
	}
	if (run("metrics"))
		bench_metrics(threads);
	if (run("reqid"))
		bench_reqid();
	if (run("match")) {
		bench_match("/v1/users/u-bench/accounts");
		bench_match("/v1/accounts/0b7c9f0e-3f5e-4c7a-9a57-2f1d3c4b5a60/"
			    "transactions");
	}
	return 0;
}
