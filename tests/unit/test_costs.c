/*
 * The per-request costs of issue 13, each checked where it was cut:
 *   - log_kv holds lines below LOG_WARN back and writes them in few
 *     write(2) calls, lines whole, never interleaved and in the order
 *     they were logged, nothing lost at a log_flush or exit;
 *   - metrics_http allocates nothing once its series exist and counts
 *     exactly from many threads at once; /metrics keeps its text;
 *   - request ids cost no getrandom each, and never repeat across
 *     threads or a fork;
 *   - dispatch's route walk allocates nothing for a route whose literal
 *     parts differ from the path.
 * malloc, getrandom and write are counted by wrapping them here (this
 * program's definitions win over libc's); the allocation counts are
 * skipped under AddressSanitizer, which owns malloc.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <json-c/json.h>

#include "buf.h"
#include "http.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "reqid.h"
#include "test.h"

#if defined(__SANITIZE_ADDRESS__)
#define COUNT_ALLOCS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COUNT_ALLOCS 0
#endif
#endif
#ifndef COUNT_ALLOCS
#define COUNT_ALLOCS 1
#endif

static _Thread_local long allocs;
static atomic_long getrandoms, stderr_writes;

#if COUNT_ALLOCS
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

void *
malloc(size_t n)
{
	allocs++;
	return __libc_malloc(n);
}

void *
calloc(size_t n, size_t size)
{
	allocs++;
	return __libc_calloc(n, size);
}

void *
realloc(void *p, size_t n)
{
	allocs++;
	return __libc_realloc(p, n);
}

void
free(void *p)
{
	__libc_free(p);
}
#endif

ssize_t
getrandom(void *p, size_t n, unsigned flags)
{
	atomic_fetch_add(&getrandoms, 1);
	return syscall(SYS_getrandom, p, n, flags);
}

ssize_t
write(int fd, const void *p, size_t n)
{
	if (fd == 2)
		atomic_fetch_add(&stderr_writes, 1);
	return syscall(SYS_write, fd, p, n);
}

/* ---- the log --------------------------------------------------------- */

static char log_path[64];
static int log_fd = -1, saved_fd = -1;

/* stderr to a fresh temporary file. */
static void
log_capture(void)
{
	snprintf(log_path, sizeof(log_path), "/tmp/test_costs.XXXXXX");
	log_fd = mkstemp(log_path);
	saved_fd = dup(2);
	if (log_fd < 0 || saved_fd < 0)
		abort();
	dup2(log_fd, 2);
}

static void
log_release(void)
{
	log_flush();
	dup2(saved_fd, 2);
	close(saved_fd);
	close(log_fd);
	unlink(log_path);
}

/* The captured text so far (malloc'd). */
static char *
log_text(size_t *len)
{
	struct buf b;
	char chunk[65536];
	ssize_t n;
	int fd = open(log_path, O_RDONLY);

	buf_init(&b, 64 * 1024 * 1024);
	while (fd >= 0 && (n = read(fd, chunk, sizeof(chunk))) > 0)
		buf_append(&b, chunk, (size_t)n);
	if (fd >= 0)
		close(fd);
	*len = b.len;
	return buf_steal(&b);
}

/* Log lines captured so far: lines that start as log_kv's do (under
 * LeakSanitizer a forked child also prints a warning of its own). */
static long
log_lines(void)
{
	size_t len;
	char *s = log_text(&len), *p = s;
	long n = 0;

	while ((p = strstr(p, "{\"ts\":\"")) != NULL) {
		n += p == s || p[-1] == '\n';
		p++;
	}
	free(s);
	return n;
}

static void
info(long i)
{
	char n[24];

	snprintf(n, sizeof(n), "%ld", i);
	log_kv(LOG_INFO, "request", "n", n, "path", "/v1/users/u/accounts",
	    NULL);
}

static void
test_log_held(void)
{
	long i, w0;

	log_capture();
	w0 = atomic_load(&stderr_writes);
	for (i = 0; i < 100; i++)
		info(i);
	w0 = atomic_load(&stderr_writes) - w0;
	CHECK(w0 <= 5, "100 info lines are held back, not a write each "
		       "(%ld writes)", w0);
	log_kv(LOG_WARN, "a warning", NULL);
	CHECK(log_lines() == 101, "a warning writes the held lines first, "
				  "then itself (%ld)", log_lines());
	for (i = 0; i < 3; i++)
		info(i);
	usleep(LOG_FLUSH_MS * 4 * 1000);
	CHECK(log_lines() == 104, "held lines are out within a few "
				 "LOG_FLUSH_MS (%ld)", log_lines());
	log_release();
}

#define LOG_THREADS 4
#define LOG_PER_THREAD 3000

static void *
log_thread(void *arg)
{
	char pad[400], n[48];
	long i, t = (long)(intptr_t)arg;

	memset(pad, 'a' + (int)t, sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = '\0';
	for (i = 0; i < LOG_PER_THREAD; i++) {
		snprintf(n, sizeof(n), "%ld", i);
		log_kv(LOG_INFO, "request", "thread", pad, "n", n, NULL);
	}
	return NULL;
}

/* Every line of s a JSON object, each thread's in its own order. */
static long
log_check_lines(char *s, long *bad, long *disorder)
{
	long next[LOG_THREADS] = { 0 }, lines = 0;
	char *save = NULL, *line;

	*bad = *disorder = 0;
	for (line = strtok_r(s, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		json_object *o = json_tokener_parse(line), *th, *n;
		long t;

		lines++;
		if (o == NULL || !json_object_object_get_ex(o, "thread", &th) ||
		    !json_object_object_get_ex(o, "n", &n)) {
			(*bad)++;
			json_object_put(o);
			continue;
		}
		t = json_object_get_string(th)[0] - 'a';
		if (t < 0 || t >= LOG_THREADS ||
		    atol(json_object_get_string(n)) != next[t]++)
			(*disorder)++;
		json_object_put(o);
	}
	return lines;
}

static void
test_log_threads(void)
{
	pthread_t th[LOG_THREADS];
	long i, lines, bad, disorder;
	size_t len;
	char *s;

	log_capture();
	for (i = 0; i < LOG_THREADS; i++)
		pthread_create(&th[i], NULL, log_thread, (void *)(intptr_t)i);
	for (i = 0; i < LOG_THREADS; i++)
		pthread_join(th[i], NULL);
	log_flush();
	s = log_text(&len);
	lines = log_check_lines(s, &bad, &disorder);
	CHECK(lines == LOG_THREADS * LOG_PER_THREAD,
	    "every line of %d threads is out after log_flush (%ld of %d)",
	    LOG_THREADS, lines, LOG_THREADS * LOG_PER_THREAD);
	CHECK(bad == 0, "each line is one whole JSON object (%ld are not)",
	    bad);
	CHECK(disorder == 0, "each thread's lines in its order (%ld not)",
	    disorder);
	free(s);
	log_release();
}

static pthread_mutex_t order_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t order_cv = PTHREAD_COND_INITIALIZER;
static int order_step;

/* Logs "second" and stays alive until told (step 2). */
static void *
order_thread(void *arg)
{
	(void)arg;
	log_kv(LOG_INFO, "second", NULL);
	pthread_mutex_lock(&order_mu);
	order_step = 1;
	pthread_cond_broadcast(&order_cv);
	while (order_step != 2)
		pthread_cond_wait(&order_cv, &order_mu);
	pthread_mutex_unlock(&order_mu);
	return NULL;
}

/* Lines of different threads come out in the order they were logged. */
static void
test_log_order(void)
{
	pthread_t th;
	size_t len;
	char *s, *a, *b;

	log_capture();
	log_kv(LOG_INFO, "first", NULL);
	pthread_create(&th, NULL, order_thread, NULL);
	pthread_mutex_lock(&order_mu);
	while (order_step != 1)
		pthread_cond_wait(&order_cv, &order_mu);
	pthread_mutex_unlock(&order_mu);
	log_flush();
	s = log_text(&len);
	a = strstr(s, "\"first\"");
	b = strstr(s, "\"second\"");
	CHECK(a != NULL && b != NULL && a < b,
	    "a line another thread logged later comes out later");
	free(s);
	pthread_mutex_lock(&order_mu);
	order_step = 2;
	pthread_cond_broadcast(&order_cv);
	pthread_mutex_unlock(&order_mu);
	pthread_join(th, NULL);
	log_release();
}

static void
test_log_exit(void)
{
	pid_t pid;
	int st = 0;
	long n;

	log_capture();
	fflush(stdout);
	if ((pid = fork()) == 0) {
		long i;

		for (i = 0; i < 50; i++)
			info(i);
		exit(0);
	}
	waitpid(pid, &st, 0);
	n = log_lines();
	CHECK(WIFEXITED(st) && n == 50, "a process that exits wrote every "
					"held line (%ld of 50)", n);
	log_release();
}

/* ---- metrics --------------------------------------------------------- */

#define M_THREADS 4
#define M_PER_THREAD 20000

static void *
metrics_thread(void *arg)
{
	long i;

	(void)arg;
	for (i = 0; i < M_PER_THREAD; i++) {
		metrics_http("/v1/users/{}/accounts", 200, i % 3 ? 1 : 30);
		if (i % 4 == 0)
			metrics_http("/v1/users/{}/accounts", 404, 2);
		if (i % 10 == 0)
			metrics_http("unmatched", 404, 20000);
	}
	return NULL;
}

static double
sample(const char *text, const char *series)
{
	const char *p = text;
	size_t n = strlen(series);

	while ((p = strstr(p, series)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p += n;
	}
	return -1;
}

static void
test_metrics(void)
{
	pthread_t th[M_THREADS];
	struct buf out;
	long i, a0;
	const char *h = "finxd_http_request_duration_seconds";
	char *k;

	for (i = 0; i < M_THREADS; i++)
		pthread_create(&th[i], NULL, metrics_thread, NULL);
	for (i = 0; i < M_THREADS; i++)
		pthread_join(th[i], NULL);
	a0 = allocs;
	for (i = 0; i < 1000; i++)
		metrics_http("/v1/users/{}/accounts", 200, 1);
	if (COUNT_ALLOCS)
		CHECK(allocs == a0, "metrics_http allocates nothing once its "
				    "series exist (%ld in 1000 calls)",
		    allocs - a0);
	buf_init(&out, 1024 * 1024);
	metrics_render(&out);
	CHECK(sample(out.data, "finxd_http_requests_total{route=\"/v1/users/"
			       "{}/accounts\",status=\"200\"}") ==
		M_THREADS * M_PER_THREAD + 1000,
	    "requests counted exactly from %d threads", M_THREADS);
	CHECK(sample(out.data, "finxd_http_requests_total{route=\"/v1/users/"
			       "{}/accounts\",status=\"404\"}") ==
		M_THREADS * M_PER_THREAD / 4,
	    "a second status of the route counted apart");
	k = xasprintf("%s_bucket{route=\"unmatched\",le=\"+Inf\"}", h);
	CHECK(sample(out.data, k) == M_THREADS * M_PER_THREAD / 10,
	    "over the last bucket only in +Inf");
	free(k);
	k = xasprintf("%s_bucket{route=\"unmatched\",le=\"10\"}", h);
	CHECK(sample(out.data, k) == 0, "20 s is not <= 10 s");
	free(k);
	k = xasprintf("%s_bucket{route=\"/v1/users/{}/accounts\",le=\"0.025\"}",
	    h);
	CHECK(sample(out.data, k) > 0 &&
		sample(out.data, k) < M_THREADS * M_PER_THREAD,
	    "buckets count what is at most their bound");
	free(k);
	k = xasprintf("%s_count{route=\"/v1/users/{}/accounts\"}", h);
	CHECK(sample(out.data, k) ==
		M_THREADS * M_PER_THREAD * 5 / 4 + 1000,
	    "_count of the route (%.0f)", sample(out.data, k));
	free(k);
	k = xasprintf("%s_sum{route=\"unmatched\"}", h);
	CHECK(sample(out.data, k) == 20.0 * M_THREADS * M_PER_THREAD / 10,
	    "_sum in seconds (%.6f)", sample(out.data, k));
	free(k);
	CHECK(strstr(out.data, "# TYPE finxd_http_requests_total counter\n") &&
		strstr(out.data, "# TYPE finxd_http_request_duration_seconds "
				 "histogram\n"),
	    "families keep their names and types");
	buf_free(&out);
}

/* ---- request ids ----------------------------------------------------- */

#define ID_THREADS 4
#define ID_PER_THREAD 5000

static char ids[ID_THREADS * ID_PER_THREAD + ID_PER_THREAD][32];

static void *
id_thread(void *arg)
{
	long t = (long)(intptr_t)arg, i;

	for (i = 0; i < ID_PER_THREAD; i++)
		reqid_new(ids[t * ID_PER_THREAD + i], sizeof(ids[0]));
	return NULL;
}

static int
id_cmp(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* ID_PER_THREAD ids of a forked child into the last slice of ids. */
static void
ids_of_child(void)
{
	char *slice = ids[ID_THREADS * ID_PER_THREAD];
	int p[2], st;
	size_t got = 0, want = ID_PER_THREAD * sizeof(ids[0]);
	ssize_t n;
	pid_t pid;

	if (pipe(p) != 0)
		abort();
	fflush(stdout);
	if ((pid = fork()) == 0) {
		char id[32];
		long i;

		for (i = 0; i < ID_PER_THREAD; i++) {
			memset(id, 0, sizeof(id));
			reqid_new(id, sizeof(id));
			if (write(p[1], id, sizeof(id)) != sizeof(id))
				_exit(1);
		}
		_exit(0);
	}
	close(p[1]);
	while (got < want && (n = read(p[0], slice + got, want - got)) > 0)
		got += (size_t)n;
	close(p[0]);
	waitpid(pid, &st, 0);
}

static void
test_request_ids(void)
{
	pthread_t th[ID_THREADS];
	long i, g0, dup = 0, bad = 0, n = ID_THREADS * ID_PER_THREAD;

	/* this thread's first id draws its seed */
	reqid_new(ids[0], sizeof(ids[0]));
	g0 = atomic_load(&getrandoms);
	for (i = 0; i < ID_PER_THREAD; i++)
		reqid_new(ids[i], sizeof(ids[0]));
	CHECK(atomic_load(&getrandoms) == g0,
	    "%d ids of one thread cost no getrandom (%ld calls)",
	    ID_PER_THREAD, atomic_load(&getrandoms) - g0);
	for (i = 1; i < ID_THREADS; i++)
		pthread_create(&th[i], NULL, id_thread, (void *)(intptr_t)i);
	for (i = 1; i < ID_THREADS; i++)
		pthread_join(th[i], NULL);
	ids_of_child();
	n += ID_PER_THREAD;
	for (i = 0; i < n; i++)
		if (strlen(ids[i]) != REQID_LEN ||
		    strspn(ids[i], "0123456789abcdef") != REQID_LEN)
			bad++;
	CHECK(bad == 0, "ids are %d lower-case hex digits (%ld are not)",
	    REQID_LEN, bad);
	qsort(ids, (size_t)n, sizeof(ids[0]), id_cmp);
	for (i = 1; i < n; i++)
		dup += strcmp(ids[i - 1], ids[i]) == 0;
	CHECK(dup == 0, "%ld ids of %d threads and a forked child, none "
			"twice (%ld repeated)", n, ID_THREADS, dup);
}

/* ---- route matching -------------------------------------------------- */

static void
test_match_allocs(void)
{
	const char *path = "/v1/accounts/0b7c9f0e-3f5e-4c7a-9a57-2f1d3c4b5a60/"
			   "transactions";
	char *p[HTTP_MAX_PARAMS];
	long a0 = allocs;
	int n = -1;
	bool m = http_match("/v1/accounts/{}", path, p, &n);

	if (COUNT_ALLOCS)
		CHECK(!m && n == 0 && allocs == a0,
		    "a route whose literal parts differ decodes nothing "
		    "(%ld allocations)", allocs - a0);
	CHECK(!http_path_matches("/v1/accounts/{}", path) &&
		http_path_matches("/v1/accounts/{}/transactions", path),
	    "http_path_matches tells the two routes apart");
	a0 = allocs;
	m = http_path_matches("/v1/accounts/{}/transactions", path);
	if (COUNT_ALLOCS)
		CHECK(m && allocs == a0, "the path test allocates nothing");
}

int
main(void)
{
	test_log_held();
	test_log_threads();
	test_log_order();
	test_log_exit();
	test_metrics();
	test_request_ids();
	test_match_allocs();
	return test_done();
}
