/*
 * Slow and idle clients against the event-loop front (issue 13).
 *
 * 1. The storm: 1,024 connections from four loopback addresses
 *    (127.0.0.2-5) for 40 s, half sending a request line and then one
 *    header byte every 5 s, half sending nothing; each one that finxd
 *    closes is opened again at once.  Meanwhile a well-behaved client
 *    from a fifth address (127.0.0.1) probes every 100 ms: /healthz,
 *    /callback with an unknown state, an authenticated /v1 read.  Every
 *    probe must be answered, p99 under 250 ms, and no storm connection
 *    may live past the header deadline (FINXD_HTTP_HEADER_TIMEOUT, 10 s
 *    by default) by more than the reaper's slack.
 * 2. The crowd: 10,000 keep-alive connections from ten addresses
 *    (127.0.0.10-19), each having sent one request and now idle within
 *    the idle timeout: all held, finxd's RSS under 100 MB, and new
 *    requests still answered at once.
 *
 * The limits this needs, set here: FINXD_HTTP_MAX_CONNECTIONS=12000 and
 * FINXD_HTTP_MAX_PER_ADDRESS=1100 (1,000 per address in part 2), and the
 * open-file limit raised to its hard limit for finxd and this test.
 * Suite `slow`: it takes about two minutes and runs once.
 */
#include "it_common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define STORM_CONNS 1024
#define STORM_ADDRS 4
#define STORM_MS 40000
#define TRICKLE_MS 5000
#define PROBE_EVERY_MS 100
#define PROBE_P99_MS 250
#define HEADER_TIMEOUT_S 10
#define REAP_SLACK_MS 2500
#define CROWD_CONNS 10000
#define CROWD_ADDRS 10
#define CROWD_RSS_KB (100 * 1024)
#define MAX_PROBES 4096

#define h_diag(...)                                                           \
	do {                                                                  \
		printf("# " __VA_ARGS__);                                     \
		printf("\n");                                                 \
	} while (0)

static int port;

/* A socket from 127.0.0.<host> to finxd, connecting (non-blocking). */
static int
open_from(int host)
{
	struct sockaddr_in src = { 0 }, dst = { 0 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

	if (fd < 0)
		h_bail("socket: %s", strerror(errno));
	src.sin_family = dst.sin_family = AF_INET;
	src.sin_addr.s_addr = htonl(0x7f000000u | (unsigned)host);
	dst.sin_addr.s_addr = htonl(0x7f000001u);
	dst.sin_port = htons((uint16_t)port);
	if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0)
		h_bail("bind 127.0.0.%d: %s", host, strerror(errno));
	if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) != 0 &&
	    errno != EINPROGRESS)
		h_bail("connect: %s", strerror(errno));
	return fd;
}

/* ---- part 1: the storm ---- */

struct attacker {
	int fd;
	bool trickle;   /* sends a byte every TRICKLE_MS; else silent */
	bool sent_line; /* the request line went out */
	long opened_ms, next_ms;
};

static struct attacker att[STORM_CONNS];
static atomic_bool storm_stop;
static atomic_long storm_closed, storm_opened, storm_longest_ms;

static void
attacker_open(struct attacker *a, int i)
{
	a->fd = open_from(2 + i % STORM_ADDRS);
	a->trickle = i % 2 == 0;
	a->sent_line = false;
	a->opened_ms = h_now_ms();
	a->next_ms = a->opened_ms + 200;
	atomic_fetch_add(&storm_opened, 1);
}

/* Send what is due; a send that fails means the connection is gone. */
static void
attacker_send(struct attacker *a, long now)
{
	static const char line[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nX";

	if (!a->trickle || now < a->next_ms)
		return;
	if (!a->sent_line) {
		if (send(a->fd, line, sizeof(line) - 1, MSG_NOSIGNAL) > 0)
			a->sent_line = true;
	} else
		(void)send(a->fd, "x", 1, MSG_NOSIGNAL);
	a->next_ms = now + TRICKLE_MS;
}

/* A connection finxd closed: note how long it lived, open another. */
static void
attacker_closed(struct attacker *a, int i, long now)
{
	long lived = now - a->opened_ms, prev;

	close(a->fd);
	atomic_fetch_add(&storm_closed, 1);
	prev = atomic_load(&storm_longest_ms);
	while (lived > prev &&
	    !atomic_compare_exchange_weak(&storm_longest_ms, &prev, lived))
		;
	attacker_open(a, i);
}

static void *
storm_main(void *arg)
{
	static struct pollfd pfd[STORM_CONNS];
	char junk[512];
	int i;

	(void)arg;
	for (i = 0; i < STORM_CONNS; i++)
		attacker_open(&att[i], i);
	while (!atomic_load(&storm_stop)) {
		long now = h_now_ms();

		for (i = 0; i < STORM_CONNS; i++) {
			attacker_send(&att[i], now);
			pfd[i].fd = att[i].fd;
			pfd[i].events = POLLIN;
		}
		if (poll(pfd, STORM_CONNS, 100) <= 0)
			continue;
		now = h_now_ms();
		for (i = 0; i < STORM_CONNS; i++)
			if ((pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) &&
			    recv(att[i].fd, junk, sizeof(junk), 0) <= 0)
				attacker_closed(&att[i], i, now);
	}
	for (i = 0; i < STORM_CONNS; i++)
		close(att[i].fd);
	return NULL;
}

/*
 * Two lone clients beside the storm, each timing when finxd closes it:
 * one answered and then idle (the idle timeout, 30 s), one trickling a
 * body a byte every 2 s (the body deadline, 30 s from its headers).
 */
struct lone {
	bool body;     /* trickles a body; else idles after one answer */
	long closed_ms; /* how long it lived; -1 while open */
	pthread_t th;
};

static void *
lone_main(void *arg)
{
	static const char get[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
	static const char post[] = "POST /v1/links HTTP/1.1\r\nHost: x\r\n"
				   "Content-Type: application/json\r\n"
				   "Content-Length: 100\r\n\r\n{";
	struct lone *l = arg;
	int fd = open_from(l->body ? 8 : 7);
	long t0 = h_now_ms(), next = 0;
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	char junk[512];

	poll(&pfd, 1, 5000);
	if (l->body)
		(void)send(fd, post, sizeof(post) - 1, MSG_NOSIGNAL);
	else
		(void)send(fd, get, sizeof(get) - 1, MSG_NOSIGNAL);
	pfd.events = POLLIN;
	while (!atomic_load(&storm_stop)) {
		if (l->body && h_now_ms() >= next) {
			(void)send(fd, " ", 1, MSG_NOSIGNAL);
			next = h_now_ms() + 2000;
		}
		if (poll(&pfd, 1, 100) > 0 &&
		    recv(fd, junk, sizeof(junk), 0) <= 0) {
			l->closed_ms = h_now_ms() - t0;
			break;
		}
	}
	close(fd);
	return NULL;
}

struct probes {
	long ms[MAX_PROBES];
	int n, unanswered, wrong;
};

static void
probe_one(struct probes *p, const char *what, long status, long want,
    long ms)
{
	if (status == 0)
		p->unanswered++;
	else if (status != want) {
		p->wrong++;
		h_diag("probe %s answered %ld, not %ld", what, status, want);
	}
	if (p->n < MAX_PROBES)
		p->ms[p->n++] = ms;
}

static void
probe_round(struct probes *p, const char *cid)
{
	struct h_resp r;
	char *path = h_fmt("/v1/connections/%s", cid);
	long st;

	st = h_finxd_get(0, "/healthz", &r);
	probe_one(p, "/healthz", st, 200, r.ms);
	h_resp_free(&r);
	st = h_finxd_get(0, "/callback?state=unknown-state-storm&code=x", &r);
	probe_one(p, "/callback", st, 400, r.ms);
	h_resp_free(&r);
	st = h_api(0, "GET", path, NULL, &r);
	probe_one(p, "/v1 read", st, 200, r.ms);
	h_resp_free(&r);
	free(path);
}

static int
cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return x < y ? -1 : x > y;
}

static long
p99(struct probes *p)
{
	if (p->n == 0)
		return -1;
	qsort(p->ms, (size_t)p->n, sizeof(long), cmp_long);
	return p->ms[(p->n * 99) / 100 - (p->n >= 100 ? 1 : 0)];
}

static void
test_storm(const char *cid)
{
	static struct probes p;
	struct lone idle = { .body = false, .closed_ms = -1 };
	struct lone body = { .body = true, .closed_ms = -1 };
	pthread_t th;
	long until, late;

	pthread_create(&th, NULL, storm_main, NULL);
	pthread_create(&idle.th, NULL, lone_main, &idle);
	pthread_create(&body.th, NULL, lone_main, &body);
	until = h_now_ms() + STORM_MS;
	while (h_now_ms() < until) {
		probe_round(&p, cid);
		h_sleep_ms(PROBE_EVERY_MS);
	}
	atomic_store(&storm_stop, true);
	pthread_join(th, NULL);
	pthread_join(idle.th, NULL);
	pthread_join(body.th, NULL);
	CHECK(idle.closed_ms >= 29000 && idle.closed_ms <= 33000,
	    "an idle keep-alive connection closed at the idle timeout, 30 s "
	    "(after %ld ms)",
	    idle.closed_ms);
	CHECK(body.closed_ms >= 29000 && body.closed_ms <= 33000,
	    "a body trickled a byte every 2 s closed at the body deadline, "
	    "30 s (after %ld ms)",
	    body.closed_ms);
	h_diag("storm: %ld connections opened, %ld closed by finxd, longest "
	       "lived %ld ms; %d probes, p99 %ld ms",
	    atomic_load(&storm_opened), atomic_load(&storm_closed),
	    atomic_load(&storm_longest_ms), p.n, p99(&p));
	CHECK(p.unanswered == 0, "storm: every probe answered (%d not)",
	    p.unanswered);
	CHECK(p.wrong == 0, "storm: every probe got its usual status");
	CHECK(p.n > 300 && p99(&p) < PROBE_P99_MS,
	    "storm: probe p99 %ld ms under %d ms", p99(&p), PROBE_P99_MS);
	CHECK(atomic_load(&storm_closed) >= STORM_CONNS,
	    "storm: the slow and silent connections were closed (%ld)",
	    atomic_load(&storm_closed));
	CHECK(atomic_load(&storm_longest_ms) <=
		HEADER_TIMEOUT_S * 1000 + REAP_SLACK_MS,
	    "storm: none outlived the header deadline (longest %ld ms)",
	    atomic_load(&storm_longest_ms));
	late = h_metric(0, "finxd_http_connections_closed_late_total");
	CHECK(late >= STORM_CONNS / 2,
	    "storm: /metrics counts the late ones (%ld)", late);
}

/* ---- part 2: the crowd ---- */

static long
rss_kb(pid_t pid)
{
	char *path = h_fmt("/proc/%d/status", (int)pid), line[256];
	FILE *f = fopen(path, "r");
	long kb = -1;

	free(path);
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* Wait for every fd of fds[0..n) to be writable (connected). */
static int
wait_all(struct pollfd *pfd, int n, short events, long timeout_ms)
{
	long until = h_now_ms() + timeout_ms;
	int i, pending = n;

	for (i = 0; i < n; i++)
		pfd[i].events = events;
	while (pending > 0 && h_now_ms() < until) {
		if (poll(pfd, (nfds_t)n, 200) <= 0)
			continue;
		for (i = 0; i < n; i++)
			if (pfd[i].revents != 0 && pfd[i].fd >= 0) {
				pfd[i].fd = -pfd[i].fd - 1; /* done: ignore */
				pending--;
			}
	}
	for (i = 0; i < n; i++)
		if (pfd[i].fd < 0)
			pfd[i].fd = -pfd[i].fd - 1;
	return n - pending;
}

/* One request on each socket; the number answered with 200. */
static int
crowd_request(int *fd, int n)
{
	static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
	static struct pollfd pfd[CROWD_CONNS];
	char buf[1024];
	int i, ok = 0;

	for (i = 0; i < n; i++)
		pfd[i].fd = fd[i];
	wait_all(pfd, n, POLLOUT, 30000);
	for (i = 0; i < n; i++)
		if (send(fd[i], req, sizeof(req) - 1, MSG_NOSIGNAL) !=
		    (ssize_t)sizeof(req) - 1)
			h_diag("crowd: send failed: %s", strerror(errno));
	wait_all(pfd, n, POLLIN, 30000);
	for (i = 0; i < n; i++) {
		ssize_t got = recv(fd[i], buf, sizeof(buf) - 1, 0);

		if (got > 0) {
			buf[got] = '\0';
			ok += strncmp(buf, "HTTP/1.1 200", 12) == 0;
		}
	}
	return ok;
}

/* Sockets that finxd has closed (or that have data waiting). */
static int
crowd_closed(int *fd, int n)
{
	static struct pollfd pfd[CROWD_CONNS];
	int i, closed = 0;

	for (i = 0; i < n; i++) {
		pfd[i].fd = fd[i];
		pfd[i].events = POLLIN;
	}
	poll(pfd, (nfds_t)n, 0);
	for (i = 0; i < n; i++)
		closed += pfd[i].revents != 0;
	return closed;
}

static void
test_crowd(const char *cid, pid_t pid)
{
	static int fd[CROWD_CONNS];
	static struct probes p;
	long rss0 = rss_kb(pid), rss, held;
	int i, ok;

	for (i = 0; i < CROWD_CONNS; i++)
		fd[i] = open_from(10 + i % CROWD_ADDRS);
	ok = crowd_request(fd, CROWD_CONNS);
	CHECK(ok == CROWD_CONNS, "crowd: %d of %d answered 200", ok,
	    CROWD_CONNS);
	h_sleep_ms(2000);
	rss = rss_kb(pid);
	held = h_metric(0, "finxd_http_connections");
	h_diag("crowd: finxd RSS %ld kB before, %ld kB holding them; "
	       "%ld connections held",
	    rss0, rss, held);
	CHECK(held >= CROWD_CONNS, "crowd: finxd holds all of them (%ld)",
	    held);
	CHECK(rss > 0 && rss < CROWD_RSS_KB, "crowd: RSS %ld kB under %d kB",
	    rss, CROWD_RSS_KB);
	for (i = 0; i < 20; i++)
		probe_round(&p, cid);
	CHECK(p.unanswered == 0 && p.wrong == 0,
	    "crowd: new requests answered");
	CHECK(p99(&p) < PROBE_P99_MS, "crowd: at once (p99 %ld ms)", p99(&p));
	CHECK(crowd_closed(fd, CROWD_CONNS) == 0,
	    "crowd: none of the idle ones was dropped");
	for (i = 0; i < CROWD_CONNS; i++)
		close(fd[i]);
}

/*
 * The connection memory (HTTP_CONN_MEMORY in http.c) is small so that
 * idle connections are cheap; an honest browser's callback must still
 * fit: a 2,100-byte code (finX allows codes of 2,048 and more) and 2 KB
 * of the headers a browser sends.  Answered 400 (unknown state), not 431.
 */
static void
test_big_honest_head(void)
{
	char *code = malloc(2101), *path, *hdr[8];
	struct h_resp r;

	memset(code, 'c', 2100);
	code[2100] = '\0';
	path = h_fmt("%s/callback?flow_id=0f0e0d0c-0b0a-4099-8877-665544332211"
		     "&code=%s&success=true&abort=false&state=unknown-state-big",
	    h_finxd_url(0), code);
	hdr[0] = "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
		 "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
	hdr[1] = "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,"
		 "image/avif,image/webp,image/apng,*/*;q=0.8";
	hdr[2] = "Accept-Language: de-DE,de;q=0.9,en-US;q=0.8,en;q=0.7";
	hdr[3] = "Referer: https://widget.finx-s.qwist.cloud/";
	hdr[4] = "sec-ch-ua: \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"";
	hdr[5] = h_fmt("Cookie: finxd_b_%s=%0512d; partner_session=%0700d",
	    "0f0e0d0c0b0a40998877665544332211", 7, 9);
	hdr[6] = NULL;
	h_http("GET", path, (const char *const *)hdr, NULL, 0, &r);
	CHECK(r.status == 400, "a 2,100-byte code with browser headers fits "
			       "(got %ld, not 431)",
	    r.status);
	h_resp_free(&r);
	free(hdr[5]);
	free(path);
	free(code);
}

static void
raise_nofile(void)
{
	struct rlimit rl;

	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < CROWD_CONNS + 2048)
		h_bail("the open-file hard limit %ld is below %d",
		    (long)rl.rlim_cur, CROWD_CONNS + 2048);
}

int
main(void)
{
	char *cid;

	h_init("slow", 300);
	raise_nofile();
	h_setup(NULL);
	h_env_set("FINXD_HTTP_MAX_CONNECTIONS", "12000");
	h_env_set("FINXD_HTTP_MAX_PER_ADDRESS", "1100");
	h_env_set("FINXD_LOG_LEVEL", "warn");
	h_finxd_start();
	port = (int)strtol(strrchr(h_finxd_url(0), ':') + 1, NULL, 10);
	cid = h_connect(0, "u-slow");
	test_big_honest_head();
	test_storm(cid);
	test_crowd(cid, h_finxd_pid(0));
	free(cid);
	check_clean_shutdown();
	return h_done(0);
}
