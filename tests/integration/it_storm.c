/*
 * The fault storm (issue 11): three `finxd serve` processes on one
 * PostgreSQL, finx-sandbox with 20-second access tokens, refresh tokens
 * that rotate on 70 % of the answers and a token endpoint that takes
 * 300-800 ms; 30 connections made through the real widget flow.  Token
 * readers on every process keep the connections hot and check every
 * access token handed out at the sandbox, a forcer posts
 * /v1/connections/{id}/refresh, and meanwhile: six kill -9 of a process
 * (each replaced at once by a new one on the same state dir), one
 * SIGTERM (replaced), two PostgreSQL restarts (-m fast), PostgreSQL
 * stopped for 10 s, and 12 s of 503 on /auth/token.
 *
 * Then every connection is accounted for.  LOST: its grant is revoked at
 * the sandbox, finxd says reauth_required, or a final forced refresh
 * fails.  EXPLAINED: the refresh that lost it was in flight at one of the
 * kill -9s, which nothing on the client side can save (REFRESH.md):
 * finX rotated the token for a process that died before it could keep
 * the answer.  Precisely: when the grant was revoked for a superseded
 * token, the rotation that superseded that token (found through the
 * sandbox's refresh log by the token's hash) or the presentation that
 * revoked the grant must have been in flight at a kill: received before
 * it, and the rotation answered no more than KILL_GRACE_MS before it (its
 * answer may not have been stored yet), the presentation decided by finX
 * after it (a dead process's request still revokes when a survivor
 * rotated the token meanwhile).  Without such a reuse, any rotation of
 * the grant in flight at a kill explains it.
 *
 * The bar: no unexplained lost connection, no invalid access token handed
 * out (a token is invalid when the sandbox refuses it and it did not just
 * expire on its way, nor belong to a grant an explained loss revoked),
 * and /readyz 200 on every process at the end.
 *
 * Suite `storm` (not `integration`): run once, in the plain build only.
 * Tokens are compared in memory only; nothing secret is printed.
 */
#include "it_common.h"

#include <sys/stat.h>

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#define NPROC 3
#define NCONN 30
#define READERS_PER_PROC 2
#define WARMUP_MS 10000
#define GAP_MS 10000         /* normal running between two faults */
#define TOKEN_503_MS 12000   /* the 503 window on /auth/token */
#define PG_DOWN_MS 10000     /* PostgreSQL stopped this long */
#define SETTLE_MS 30000      /* after the last fault, before the audit */
#define RECOVER_MAX_MS 60000 /* /readyz must be 200 again within this */
#define KILL_AIM_MS 4000     /* wait this long for a refresh in flight */
#define KILL_GRACE_MS 2000   /* an answer this old may not be stored yet */
#define FAULT_TAIL_MS 3000   /* errors this long after recovery count as
				the fault's */
#define SIGTERM_WAIT_MS 30000
#define MAX_FAULTS 16
#define MAX_ERRS 200000
#define MAX_BAD 10000

static const char *db;

/* One of the three process slots; readers copy url under mu. */
struct slot {
	pthread_mutex_t mu;
	int inst; /* harness instance, -1 while being replaced */
	char url[64];
	char *state_dir;
};
static struct slot slots[NPROC];

static char *conn_ids[NCONN];
static atomic_bool stop_threads;
static pthread_t readers[NPROC * READERS_PER_PROC], forcer_th;
static int nreaders;
static bool forcer_started;

/* ---- what the readers saw ------------------------------------------- */

static struct {
	atomic_long requests;
	atomic_long handed_out;
	atomic_long valid;
	atomic_long expired_on_way; /* live when handed out, expired since */
	atomic_long invalid;
	atomic_long errors;
	atomic_long err_transport, err_409, err_503, err_other;
	atomic_long forced_ok, forced_failed;
} rs;

/* Read errors (non-200 GET token) with their time, to match faults. */
struct read_err {
	long at; /* realtime before the request */
	long status;
};
static pthread_mutex_t err_mu = PTHREAD_MUTEX_INITIALIZER;
static struct read_err errs[MAX_ERRS];
static int nerr;

/* Invalid tokens: grant, state and timing, to judge them at the end. */
struct bad_token {
	long grant_id; /* 0: the sandbox did not know it */
	char state[16];
	long handed_ms; /* realtime before GET .../token was sent */
	long expires_ms;
	int conn;
};
static pthread_mutex_t bad_mu = PTHREAD_MUTEX_INITIALIZER;
static struct bad_token bad[MAX_BAD];
static int nbad;

/* ---- faults --------------------------------------------------------- */

enum fkind { F_KILL9, F_SIGTERM, F_PG_RESTART, F_PG_STOP, F_TOKEN_503 };
static const char *const fkind_names[] = { "kill -9", "SIGTERM",
	"PostgreSQL restart", "PostgreSQL stop 10 s", "/auth/token 503 12 s" };

struct fault {
	enum fkind kind;
	int slot;      /* process faults */
	long start_ms; /* realtime */
	long end_ms;   /* the fault itself is over (process replaced, ...) */
	long ready_ms; /* every /readyz 200 again; 0: never */
	int rc;
	bool as_kill; /* a SIGTERM that had to be finished with SIGKILL */
};
static struct fault faults[MAX_FAULTS];
static int nfaults;
static long storm_start_ms;

/* ---- small helpers -------------------------------------------------- */

static char *
xfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
xfmt(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		abort(); /* from reader threads too: never h_bail there */
	va_end(ap);
	return s;
}

static double
rel_s(long realtime_ms)
{
	return (double)(realtime_ms - storm_start_ms) / 1000.0;
}

/* The slot's base URL into url (64 bytes); false while it is replaced. */
static bool
slot_url(int s, char *url)
{
	bool up;

	pthread_mutex_lock(&slots[s].mu);
	up = slots[s].inst >= 0;
	if (up)
		memcpy(url, slots[s].url, sizeof(slots[s].url));
	pthread_mutex_unlock(&slots[s].mu);
	return up;
}

/* /v1 call on a base URL with the test's API key. */
static long
api_at(const char *base, const char *method, const char *path,
    struct h_resp *r)
{
	char *auth = xfmt("Authorization: Bearer %s", h_api_key());
	char *url = xfmt("%s%s", base, path);
	const char *hdrs[] = { auth, NULL };

	h_http(method, url, hdrs, NULL, 0, r);
	free(auth);
	free(url);
	return r->status;
}

/* ---- readers and the forcer ----------------------------------------- */

static void
note_error(long at, long status)
{
	atomic_fetch_add(&rs.errors, 1);
	if (status == 0)
		atomic_fetch_add(&rs.err_transport, 1);
	else if (status == 409)
		atomic_fetch_add(&rs.err_409, 1);
	else if (status == 503)
		atomic_fetch_add(&rs.err_503, 1);
	else
		atomic_fetch_add(&rs.err_other, 1);
	pthread_mutex_lock(&err_mu);
	if (nerr < MAX_ERRS) {
		errs[nerr].at = at;
		errs[nerr].status = status;
		nerr++;
	}
	pthread_mutex_unlock(&err_mu);
}

/*
 * Judge a handed-out access token at the sandbox: it must work at
 * /rest/accounts; when it does not, the sandbox's view of it says
 * whether it merely expired after it was handed out.
 */
static void
judge_token(const char *tok, long handed_ms, int conn)
{
	struct h_resp r;
	char *url = xfmt("%s/rest/accounts", h_sandbox_url());
	char *auth = xfmt("Authorization: Bearer %s", tok);
	const char *hdrs[] = { auth, NULL };
	const char *cj[] = { "Content-Type: application/json", NULL };
	struct json_object *body, *o;
	struct bad_token b;
	const char *state;

	h_http("GET", url, hdrs, NULL, 0, &r);
	free(url);
	free(auth);
	if (r.status == 200) {
		h_resp_free(&r);
		atomic_fetch_add(&rs.valid, 1);
		return;
	}
	h_resp_free(&r);
	body = json_object_new_object();
	json_object_object_add(body, "token", json_object_new_string(tok));
	url = xfmt("%s/_sandbox/tokens/check", h_sandbox_url());
	{
		const char *s = json_object_to_json_string_ext(body,
		    JSON_C_TO_STRING_PLAIN);

		h_http("POST", url, cj, s, strlen(s), &r);
	}
	json_object_put(body);
	free(url);
	o = h_resp_json(&r);
	state = h_jstr(o, "state");
	memset(&b, 0, sizeof(b));
	b.grant_id = h_jlong(o, "grant_id", 0);
	b.expires_ms = h_jlong(o, "expires_at_ms", 0);
	b.handed_ms = handed_ms;
	b.conn = conn;
	snprintf(b.state, sizeof(b.state), "%s", state ? state : "no answer");
	h_resp_free(&r);
	if (strcmp(b.state, "expired") == 0 && b.expires_ms > handed_ms) {
		atomic_fetch_add(&rs.expired_on_way, 1);
		return;
	}
	atomic_fetch_add(&rs.invalid, 1);
	pthread_mutex_lock(&bad_mu);
	if (nbad < MAX_BAD)
		bad[nbad++] = b;
	pthread_mutex_unlock(&bad_mu);
}

static void *
reader(void *arg)
{
	int s = (int)((uintptr_t)arg % NPROC);
	unsigned seed = (unsigned)(uintptr_t)arg * 7919u ^ (unsigned)time(NULL);
	char url[64], path[128];

	while (!atomic_load(&stop_threads)) {
		struct h_resp r;
		const char *tok;
		int c = (int)(rand_r(&seed) % NCONN);
		long t0;

		if (!slot_url(s, url)) {
			h_sleep_ms(50);
			continue;
		}
		snprintf(path, sizeof(path), "/v1/connections/%s/token",
		    conn_ids[c]);
		atomic_fetch_add(&rs.requests, 1);
		t0 = h_realtime_ms();
		api_at(url, "GET", path, &r);
		tok = h_jstr(h_resp_json(&r), "access_token");
		if (r.status == 200 && tok != NULL) {
			atomic_fetch_add(&rs.handed_out, 1);
			judge_token(tok, t0, c);
		} else
			note_error(t0, r.status);
		h_resp_free(&r);
		h_sleep_ms(40 + (long)(rand_r(&seed) % 80));
	}
	return NULL;
}

/* POST /v1/connections/{id}/refresh on a random connection and process
 * every 1-2 s: refreshes finxd must do now, wherever they land. */
static void *
forcer(void *arg)
{
	unsigned seed = 104729u ^ (unsigned)time(NULL);
	char url[64], path[128];

	(void)arg;
	while (!atomic_load(&stop_threads)) {
		struct h_resp r;
		int s = (int)(rand_r(&seed) % NPROC);
		int c = (int)(rand_r(&seed) % NCONN);

		if (slot_url(s, url)) {
			snprintf(path, sizeof(path),
			    "/v1/connections/%s/refresh", conn_ids[c]);
			if (api_at(url, "POST", path, &r) == 200)
				atomic_fetch_add(&rs.forced_ok, 1);
			else
				atomic_fetch_add(&rs.forced_failed, 1);
			h_resp_free(&r);
		}
		h_sleep_ms(1000 + (long)(rand_r(&seed) % 1000));
	}
	return NULL;
}

/* Stop and join the threads; also from atexit when the test bails. */
static void
threads_stop(void)
{
	int i;

	atomic_store(&stop_threads, true);
	for (i = 0; i < nreaders; i++)
		pthread_join(readers[i], NULL);
	nreaders = 0;
	if (forcer_started)
		pthread_join(forcer_th, NULL);
	forcer_started = false;
}

/* ---- processes ------------------------------------------------------ */

static void
slot_start(int s)
{
	int inst;

	h_env_set("FINXD_STATE_DIR", slots[s].state_dir);
	inst = h_finxd_start();
	pthread_mutex_lock(&slots[s].mu);
	slots[s].inst = inst;
	snprintf(slots[s].url, sizeof(slots[s].url), "%s", h_finxd_url(inst));
	pthread_mutex_unlock(&slots[s].mu);
}

/* Take the slot out of the readers' hands; its instance index. */
static int
slot_take(int s)
{
	int inst;

	pthread_mutex_lock(&slots[s].mu);
	inst = slots[s].inst;
	slots[s].inst = -1;
	pthread_mutex_unlock(&slots[s].mu);
	return inst;
}

/* Realtime ms when every slot's /readyz answered 200 (each at least once
 * since the call), or 0 after RECOVER_MAX_MS. */
static long
wait_all_ready(void)
{
	bool ready[NPROC] = { false };
	long end = h_now_ms() + RECOVER_MAX_MS;
	char url[64];
	int s, n;

	while (h_now_ms() < end) {
		for (s = 0, n = 0; s < NPROC; s++) {
			struct h_resp r;
			char *u;

			if (!ready[s] && slot_url(s, url)) {
				u = xfmt("%s/readyz", url);
				h_http("GET", u, NULL, NULL, 0, &r);
				ready[s] = r.status == 200;
				h_resp_free(&r);
				free(u);
			}
			n += ready[s];
		}
		if (n == NPROC)
			return h_realtime_ms();
		h_sleep_ms(100);
	}
	return 0;
}

/* Wait (up to KILL_AIM_MS) for a refresh in flight at the sandbox, so
 * that kills land where they can hurt. */
static void
aim(void)
{
	long end = h_now_ms() + KILL_AIM_MS;

	while (h_now_ms() < end) {
		char *p = xfmt("/_sandbox/refreshes?in_flight_at_ms=%ld",
		    h_realtime_ms());
		struct json_object *o = h_sbx_get(p), *a;
		size_t n = 0;

		free(p);
		if (json_object_object_get_ex(o, "refreshes", &a))
			n = json_object_array_length(a);
		json_object_put(o);
		if (n > 0)
			return;
		h_sleep_ms(100);
	}
}

static struct fault *
fault_new(enum fkind k, int s)
{
	struct fault *f;

	if (nfaults == MAX_FAULTS)
		h_bail("too many faults");
	f = &faults[nfaults++];
	memset(f, 0, sizeof(*f));
	f->kind = k;
	f->slot = s;
	return f;
}

static void
fault_report(const struct fault *f)
{
	char where[24] = "";

	if (f->slot >= 0)
		snprintf(where, sizeof(where), " of slot %d", f->slot);
	printf("# fault %d at +%.1f s: %s%s (rc %d); over after %ld ms; "
	       "/readyz 200 everywhere %s%ld ms after that\n",
	    (int)(f - faults) + 1, rel_s(f->start_ms), fkind_names[f->kind],
	    where, f->rc, f->end_ms - f->start_ms,
	    f->ready_ms ? "" : "NEVER, ",
	    f->ready_ms ? f->ready_ms - f->end_ms : 0L);
}

/* kill -9 (or SIGTERM) a slot's process and replace it at once. */
static void
storm_process(enum fkind k, int s)
{
	struct fault *f = fault_new(k, s);
	int inst;

	if (k == F_KILL9)
		aim();
	inst = slot_take(s);
	f->start_ms = h_realtime_ms();
	if (k == F_KILL9) {
		f->rc = h_finxd_stop(inst, SIGKILL);
	} else {
		f->rc = h_finxd_stop_wait(inst, SIGTERM, SIGTERM_WAIT_MS);
		/* not drained in time: the harness had to SIGKILL it */
		f->as_kill = f->rc == -1;
	}
	slot_start(s);
	f->end_ms = h_realtime_ms();
	f->ready_ms = wait_all_ready();
	fault_report(f);
}

static void
storm_pg(enum fkind k)
{
	struct fault *f = fault_new(k, -1);

	f->start_ms = h_realtime_ms();
	if (k == F_PG_RESTART) {
		f->rc = h_pg_ctl("restart");
	} else {
		f->rc = h_pg_ctl("stop");
		h_sleep_ms(PG_DOWN_MS);
		if (h_pg_ctl("start") != 0 && f->rc == 0)
			f->rc = -2;
	}
	f->end_ms = h_realtime_ms();
	f->ready_ms = wait_all_ready();
	fault_report(f);
}

static void
storm_503(void)
{
	struct fault *f = fault_new(F_TOKEN_503, -1);
	char *body = xfmt("{\"path\":\"/auth/token\",\"mode\":\"status\","
	                  "\"status\":503,\"duration_ms\":%d}",
	    TOKEN_503_MS);

	f->start_ms = h_realtime_ms();
	f->rc = sbx_ok(h_sbx_post("/_sandbox/faults", body)) ? 0 : -1;
	free(body);
	h_sleep_ms(TOKEN_503_MS + 200);
	f->end_ms = h_realtime_ms();
	f->ready_ms = wait_all_ready();
	fault_report(f);
}

static bool
is_kill(const struct fault *f)
{
	return f->kind == F_KILL9 || (f->kind == F_SIGTERM && f->as_kill);
}

/* ---- the audit ------------------------------------------------------ */

struct rf { /* one refresh log entry */
	long grant_id;
	long received, acted, answered; /* 0: never */
	const char *outcome;
	const char *presented, *issued;
};

/*
 * The first kill -9 at which e was in flight, or NULL.  A rotation counts
 * until KILL_GRACE_MS after its answer (the answer may not have been
 * stored yet); any other refresh until finX decided it (a superseded
 * token presented by a process already dead still revokes the grant).
 */
static const struct fault *
in_flight_at_kill(const struct rf *e)
{
	bool rot = h_streq(e->outcome, "rotated");
	int k;

	for (k = 0; k < nfaults; k++) {
		const struct fault *f = &faults[k];

		if (!is_kill(f) || e->received > f->start_ms)
			continue;
		if (rot ? e->answered == 0 ||
		            e->answered >= f->start_ms - KILL_GRACE_MS
		        : e->acted == 0 || e->acted >= f->start_ms)
			return f;
	}
	return NULL;
}

/* The faults whose window [start, recovered + tail] overlaps [a, b], as
 * text (malloc'd), for the report of a loss. */
static char *
faults_near(long a, long b)
{
	char *s = xfmt("%s", ""), *n;
	int k;

	for (k = 0; k < nfaults; k++) {
		long end = (faults[k].ready_ms ? faults[k].ready_ms
		                               : faults[k].end_ms) +
		    FAULT_TAIL_MS;

		if (faults[k].start_ms > b || end < a)
			continue;
		n = xfmt("%s%s#%d %s", s, *s ? ", " : "", k + 1,
		    fkind_names[faults[k].kind]);
		free(s);
		s = n;
	}
	if (*s == '\0') {
		free(s);
		s = xfmt("none");
	}
	return s;
}

/* The fault whose window [start, recovered + tail] holds at, or -1. */
static int
fault_of(long at)
{
	int k;

	for (k = 0; k < nfaults; k++) {
		long end = (faults[k].ready_ms ? faults[k].ready_ms
		                               : faults[k].end_ms) +
		    FAULT_TAIL_MS;

		if (at >= faults[k].start_ms && at <= end)
			return k;
	}
	return -1;
}

/* The connection's status at finxd (malloc'd) or NULL. */
static char *
conn_status(int c)
{
	char url[64], path[128];
	struct h_resp r;
	char *st = NULL;
	int s;

	for (s = 0; s < NPROC && st == NULL; s++) {
		if (!slot_url((c + s) % NPROC, url))
			continue;
		snprintf(path, sizeof(path), "/v1/connections/%s", conn_ids[c]);
		if (api_at(url, "GET", path, &r) == 200)
			st = h_dup(h_jstr(h_resp_json(&r), "status"));
		h_resp_free(&r);
	}
	return st;
}

/* A final forced refresh; 200, or the last status after three tries (a
 * 409 is final at once). */
static long
final_refresh(int c)
{
	char url[64], path[128];
	struct h_resp r;
	long st = 0;
	int t;

	snprintf(path, sizeof(path), "/v1/connections/%s/refresh", conn_ids[c]);
	for (t = 0; t < 3; t++) {
		if (t > 0)
			h_sleep_ms(3000);
		if (!slot_url((c + t) % NPROC, url))
			continue;
		st = api_at(url, "POST", path, &r);
		h_resp_free(&r);
		if (st == 200 || st == 409)
			break;
	}
	return st;
}

int
main(void)
{
	const char *sbx_args[] = { "--access-ttl", "20", "--rotate", "on",
		"--rotate-percent", "70", NULL };
	struct json_object *grants_o, *log_o, *ga, *la;
	char *status[NCONN];
	long final_st[NCONN], grant_of[NCONN];
	const char *why[NCONN];
	bool grant_revoked[NCONN], lost[NCONN], explained[NCONN];
	int refreshed[NCONN];
	struct rf *rlog = NULL;
	size_t nlog = 0, i;
	long t_settle, forgotten, forgotten0 = 0;
	int c, s, k, nlost = 0, nexpl = 0, nunexpl = 0, ready_end = 0,
	           min_refreshed = 1 << 30, bad_expl = 0, bad_unexpl = 0,
	           bad_other = 0, err_in = 0, err_out = 0,
	           err_per_fault[MAX_FAULTS] = { 0 };
	long n_rot = 0, n_norot = 0, n_sup = 0, n_inv = 0, n_fault = 0,
	     n_rej = 0, n_storm = 0, min_latency = 1L << 40;

	h_init("it_storm", 400);
	atexit(threads_stop); /* runs before the harness's cleanup */
	db = h_setup(sbx_args);
	h_env_set("FINXD_LOG_LEVEL", "info");
	h_env_set("FINXD_REFRESH_INTERVAL", "1");
	h_env_set("FINXD_REFRESH_CONCURRENCY", "4");
	h_env_set("FINXD_DB_POOL_SIZE", "6");
	h_env_set("FINXD_FINX_TIMEOUT_MS", "5000");
	h_env_set("FINXD_FINX_CONNECT_TIMEOUT_MS", "2000");
	for (s = 0; s < NPROC; s++) {
		char name[16];

		pthread_mutex_init(&slots[s].mu, NULL);
		slots[s].inst = -1;
		snprintf(name, sizeof(name), "state%d", s);
		slots[s].state_dir = h_path(name);
		if (mkdir(slots[s].state_dir, 0700) != 0)
			h_bail("mkdir %s: %s", name, strerror(errno));
		slot_start(s);
	}

	for (c = 0; c < NCONN; c++) {
		char user[32];

		snprintf(user, sizeof(user), "u-storm-%02d", c);
		conn_ids[c] = h_connect_retry(slots[c % NPROC].inst, user);
		if (conn_ids[c] == NULL)
			h_bail("could not connect %s", user);
	}
	CHECK(1, "%d connections made through the widget flow on %d "
	         "processes",
	    NCONN, NPROC);
	CHECK(sbx_ok(h_sbx_post("/_sandbox/config",
	          "{\"token_latency_min_ms\":300,"
	          "\"token_latency_max_ms\":800}")),
	    "sandbox /auth/token now takes 300-800 ms");
	/* the audit reads the refresh log of the storm only */
	h_sbx_delete("/_sandbox/refreshes");
	{
		struct json_object *o = h_sbx_get("/_sandbox/refreshes");

		forgotten0 = h_jlong(o, "forgotten", -1);
		json_object_put(o);
	}

	storm_start_ms = h_realtime_ms();
	for (s = 0; s < NPROC * READERS_PER_PROC; s++) {
		if (pthread_create(&readers[s], NULL, reader,
		        (void *)(uintptr_t)s) != 0)
			h_bail("pthread_create failed");
		nreaders++;
	}
	if (pthread_create(&forcer_th, NULL, forcer, NULL) != 0)
		h_bail("pthread_create failed");
	forcer_started = true;

	/* ---- the storm ---- */
	h_sleep_ms(WARMUP_MS);
	storm_process(F_KILL9, 0);
	h_sleep_ms(GAP_MS);
	storm_pg(F_PG_RESTART);
	h_sleep_ms(GAP_MS);
	storm_process(F_KILL9, 1);
	h_sleep_ms(GAP_MS);
	storm_503();
	h_sleep_ms(GAP_MS);
	storm_process(F_KILL9, 2);
	h_sleep_ms(GAP_MS);
	storm_process(F_SIGTERM, 0);
	h_sleep_ms(GAP_MS);
	storm_pg(F_PG_STOP);
	h_sleep_ms(GAP_MS);
	storm_process(F_KILL9, 1);
	h_sleep_ms(GAP_MS);
	storm_pg(F_PG_RESTART);
	h_sleep_ms(GAP_MS);
	storm_process(F_KILL9, 2);
	h_sleep_ms(GAP_MS);
	storm_process(F_KILL9, 0);
	printf("# storm over after %.1f s; settling for %d s\n",
	    rel_s(h_realtime_ms()), SETTLE_MS / 1000);

	for (k = 0; k < nfaults; k++) {
		const struct fault *f = &faults[k];
		bool ok = f->kind == F_KILL9 ? f->rc == 128 + SIGKILL
		                             : f->rc == 0;

		CHECK(ok && f->ready_ms != 0,
		    "fault %d (%s) done (rc %d), every /readyz 200 again %ld "
		    "ms after it was over",
		    k + 1, fkind_names[f->kind], f->rc,
		    f->ready_ms ? f->ready_ms - f->end_ms : -1L);
	}
	for (k = 0; k < nfaults; k++)
		if (is_kill(&faults[k]))
			printf("# kill -9 at %ld ms (realtime), +%.3f s%s\n",
			    faults[k].start_ms, rel_s(faults[k].start_ms),
			    faults[k].kind == F_SIGTERM
			        ? " (a SIGTERM not drained in time)"
			        : "");

	/* ---- settle: readers still on, no faults ---- */
	t_settle = h_now_ms() + SETTLE_MS;
	while (h_now_ms() < t_settle)
		h_sleep_ms(500);
	threads_stop();

	for (s = 0; s < NPROC; s++) {
		char url[64], *u;
		struct h_resp r;

		if (!slot_url(s, url))
			continue;
		u = xfmt("%s/readyz", url);
		h_http("GET", u, NULL, NULL, 0, &r);
		ready_end += r.status == 200;
		h_resp_free(&r);
		free(u);
	}

	/* ---- finxd's view, then a final forced refresh each ---- */
	for (c = 0; c < NCONN; c++) {
		status[c] = conn_status(c);
		final_st[c] = final_refresh(c);
	}

	/* ---- the sandbox's view ---- */
	grants_o = h_sbx_get("/_sandbox/grants/detail");
	log_o = h_sbx_get("/_sandbox/refreshes");
	if (grants_o == NULL || log_o == NULL ||
	    !json_object_object_get_ex(grants_o, "grants", &ga) ||
	    !json_object_object_get_ex(log_o, "refreshes", &la))
		h_bail("the sandbox's grant detail or refresh log is missing");
	forgotten = h_jlong(log_o, "forgotten", -1) - forgotten0;
	for (c = 0; c < NCONN; c++) {
		char user[32];
		long best = 0;

		snprintf(user, sizeof(user), "u-storm-%02d", c);
		grant_of[c] = 0;
		grant_revoked[c] = false;
		why[c] = NULL;
		for (i = 0; i < json_object_array_length(ga); i++) {
			struct json_object *g;

			g = json_object_array_get_idx(ga, i);
			if (!h_streq(h_jstr(g, "user_id"), user) ||
			    h_jlong(g, "id", 0) < best)
				continue;
			best = h_jlong(g, "id", 0);
			grant_of[c] = best;
			grant_revoked[c] =
			    h_streq(h_jstr(g, "status"), "revoked");
			why[c] = h_jstr(g, "revoked_why");
		}
	}
	nlog = json_object_array_length(la);
	rlog = calloc(nlog ? nlog : 1, sizeof(*rlog));
	if (rlog == NULL)
		h_bail("out of memory");
	for (i = 0; i < nlog; i++) {
		struct json_object *e = json_object_array_get_idx(la, i);

		rlog[i].grant_id = h_jlong(e, "grant_id", 0);
		rlog[i].received = h_jlong(e, "received_at_ms", 0);
		rlog[i].acted = h_jlong(e, "acted_at_ms", 0);
		rlog[i].answered = h_jlong(e, "answered_at_ms", 0);
		rlog[i].outcome = h_jstr(e, "outcome");
		rlog[i].presented = h_jstr(e, "presented_sha256_16");
		rlog[i].issued = h_jstr(e, "issued_sha256_16");
		if (rlog[i].received <= faults[nfaults - 1].end_ms)
			n_storm++;
		if (h_streq(rlog[i].outcome, "rotated"))
			n_rot++;
		else if (h_streq(rlog[i].outcome, "not_rotated"))
			n_norot++;
		else if (h_streq(rlog[i].outcome, "superseded_revoked"))
			n_sup++;
		else if (h_streq(rlog[i].outcome, "invalid_grant"))
			n_inv++;
		else if (h_streq(rlog[i].outcome, "fault"))
			n_fault++;
		else
			n_rej++;
		/* the knobs at work: 300-800 ms before finX acts */
		if (rlog[i].answered != 0) {
			long d = (rlog[i].acted ? rlog[i].acted
			                        : rlog[i].answered) -
			    rlog[i].received;

			if (d < min_latency)
				min_latency = d;
		}
	}

	/* ---- account for every connection ---- */
	for (c = 0; c < NCONN; c++) {
		const struct rf *rot = NULL, *sup = NULL, *culprit = NULL;
		const struct fault *kf = NULL;
		const char *rule = "-";

		refreshed[c] = 0;
		for (i = 0; i < nlog; i++)
			if (rlog[i].grant_id == grant_of[c] &&
			    rlog[i].received <= faults[nfaults - 1].end_ms &&
			    (h_streq(rlog[i].outcome, "rotated") ||
			        h_streq(rlog[i].outcome, "not_rotated")))
				refreshed[c]++;
		lost[c] = grant_of[c] == 0 || grant_revoked[c] ||
		    h_streq(status[c], "reauth_required") || final_st[c] != 200;
		explained[c] = false;
		if (!lost[c]) {
			if (refreshed[c] < min_refreshed)
				min_refreshed = refreshed[c];
			continue;
		}
		nlost++;
		/*
		 * The first superseded token presented (it revoked the
		 * grant) and the rotation that superseded it: was either in
		 * flight at a kill -9?  Either the rotation's answer died
		 * with the process, or a dead process's refresh was still
		 * presenting the token when a survivor rotated it.
		 */
		for (i = 0; i < nlog && sup == NULL; i++)
			if (rlog[i].grant_id == grant_of[c] &&
			    h_streq(rlog[i].outcome, "superseded_revoked"))
				sup = &rlog[i];
		for (i = 0; sup != NULL && i < nlog && rot == NULL; i++)
			if (rlog[i].grant_id == grant_of[c] &&
			    h_streq(rlog[i].outcome, "rotated") &&
			    h_streq(rlog[i].presented, sup->presented))
				rot = &rlog[i];
		if (rot != NULL && (kf = in_flight_at_kill(rot)) != NULL)
			culprit = rot;
		else if (sup != NULL && (kf = in_flight_at_kill(sup)) != NULL)
			culprit = sup;
		if (sup != NULL) {
			rule = "the reuse that revoked the grant or the "
			       "rotation before it";
		} else {
			/* no reuse seen: any rotation in flight at a kill */
			rule = "any rotation of the grant";
			for (i = 0; i < nlog && kf == NULL; i++)
				if (rlog[i].grant_id == grant_of[c] &&
				    h_streq(rlog[i].outcome, "rotated") &&
				    (kf = in_flight_at_kill(&rlog[i])) != NULL)
					culprit = rot = &rlog[i];
		}
		explained[c] = kf != NULL;
		if (explained[c])
			nexpl++;
		else
			nunexpl++;
		{
			char *near = rot ? faults_near(rot->received,
			                       rot->answered ? rot->answered
			                                     : rot->received)
			                 : xfmt("-");
			char kills[96] = "no kill -9 in flight";

			if (kf != NULL)
				snprintf(kills, sizeof(kills),
				    "fault %d, kill -9 at +%.1f s, caught "
				    "its %s",
				    (int)(kf - faults) + 1, rel_s(kf->start_ms),
				    culprit == rot ? "rotation" : "reuse");
			printf("# LOST u-storm-%02d: finxd %s, final refresh "
			       "%ld, grant %s (%s); %s by %s: %s; the rotation "
			       "received +%.1f s, answered +%.1f s; the reuse "
			       "received +%.1f s, decided +%.1f s; faults "
			       "near the rotation: %s\n",
			    c, status[c] ? status[c] : "(no answer)",
			    final_st[c],
			    grant_revoked[c] ? "revoked" : "active",
			    why[c] ? why[c] : "-",
			    explained[c] ? "EXPLAINED" : "UNEXPLAINED", rule,
			    kills, rot ? rel_s(rot->received) : 0.0,
			    rot && rot->answered ? rel_s(rot->answered) : 0.0,
			    sup ? rel_s(sup->received) : 0.0,
			    sup && sup->acted ? rel_s(sup->acted) : 0.0, near);
			free(near);
		}
	}

	/* ---- invalid tokens: whose were they? ---- */
	for (k = 0; k < nbad; k++) {
		int owner = -1;

		for (c = 0; c < NCONN; c++)
			if (bad[k].grant_id != 0 &&
			    grant_of[c] == bad[k].grant_id)
				owner = c;
		if (owner >= 0 && lost[owner] &&
		    strcmp(bad[k].state, "grant_revoked") == 0) {
			if (explained[owner])
				bad_expl++;
			else
				bad_unexpl++;
		} else {
			bad_other++;
			printf("# invalid token for u-storm-%02d: %s at the "
			       "sandbox, handed out at +%.1f s\n",
			    bad[k].conn, bad[k].state, rel_s(bad[k].handed_ms));
		}
	}
	/* 409s are reads of connections already lost: counted apart */
	for (k = 0; k < nerr; k++) {
		int f = fault_of(errs[k].at);

		if (errs[k].status == 409)
			continue;
		if (f >= 0) {
			err_in++;
			err_per_fault[f]++;
		} else
			err_out++;
	}

	/* ---- figures ---- */
	printf("# STORM connections %d, lost %d, explained %d, unexplained "
	       "%d\n",
	    NCONN, nlost, nexpl, nunexpl);
	printf("# STORM tokens handed out %ld (of %ld reads): valid %ld, "
	       "expired on the way %ld, invalid %ld (grants of explained "
	       "losses %d, of unexplained losses %d, other %d)\n",
	    atomic_load(&rs.handed_out), atomic_load(&rs.requests),
	    atomic_load(&rs.valid), atomic_load(&rs.expired_on_way),
	    atomic_load(&rs.invalid), bad_expl, bad_unexpl, bad_other);
	printf("# STORM read errors %ld: 409 (connection lost) %ld; the "
	       "others during faults (up to %d ms after recovery) %d, outside "
	       "%d (transport %ld, 503 %ld, other %ld)\n",
	    atomic_load(&rs.errors), atomic_load(&rs.err_409), FAULT_TAIL_MS,
	    err_in, err_out, atomic_load(&rs.err_transport),
	    atomic_load(&rs.err_503), atomic_load(&rs.err_other));
	printf("# STORM forced refreshes: %ld ok, %ld failed\n",
	    atomic_load(&rs.forced_ok), atomic_load(&rs.forced_failed));
	printf("# STORM sandbox refresh log: %zu requests (%ld during the "
	       "storm): rotated %ld, not rotated %ld, superseded-revoked %ld, "
	       "invalid_grant %ld, fault %ld, rejected %ld; forgotten %ld\n",
	    nlog, n_storm, n_rot, n_norot, n_sup, n_inv, n_fault, n_rej,
	    forgotten);
	for (k = 0; k < nfaults; k++) {
		int n = 0, ng = 0;

		if (!is_kill(&faults[k]))
			continue;
		for (i = 0; i < nlog; i++) {
			if (rlog[i].received > faults[k].start_ms)
				continue;
			if (rlog[i].answered == 0 ||
			    rlog[i].answered >= faults[k].start_ms)
				n++;
			else if (rlog[i].answered >=
			    faults[k].start_ms - KILL_GRACE_MS)
				ng++;
		}
		printf("# STORM kill -9 #%d at +%.3f s: %d refreshes in flight "
		       "at the sandbox, %d more answered in the %d ms "
		       "before\n",
		    k + 1, rel_s(faults[k].start_ms), n, ng, KILL_GRACE_MS);
	}
	for (k = 0; k < nfaults; k++)
		printf("# STORM fault %d %s: /readyz 200 again %ld ms after "
		       "the fault was over (%ld ms after it began); %d read "
		       "errors meanwhile\n",
		    k + 1, fkind_names[faults[k].kind],
		    faults[k].ready_ms ? faults[k].ready_ms - faults[k].end_ms
		                       : -1L,
		    faults[k].ready_ms ? faults[k].ready_ms - faults[k].start_ms
		                       : -1L,
		    err_per_fault[k]);

	/* ---- checks ---- */
	CHECK(n_rot + n_norot > 0 &&
	        n_rot * 100 >= 40 * (n_rot + n_norot) &&
	        n_rot * 100 <= 95 * (n_rot + n_norot),
	    "the sandbox rotated about 70 %% of its refresh answers (%ld of "
	    "%ld)",
	    n_rot, n_rot + n_norot);
	CHECK(min_latency >= 300,
	    "every refresh took at least 300 ms at the sandbox (shortest %ld "
	    "ms)",
	    min_latency);
	CHECK(forgotten == 0, "the sandbox's refresh log kept every refresh "
	                      "(%ld forgotten)",
	    forgotten);
	CHECK(atomic_load(&rs.handed_out) > 300,
	    "the readers got tokens throughout (%ld handed out)",
	    atomic_load(&rs.handed_out));
	CHECK(nlost == NCONN || min_refreshed >= 3,
	    "every connection kept was refreshed during the storm (at least "
	    "%d times each)",
	    nlost == NCONN ? 0 : min_refreshed);
	CHECK(nunexpl == 0,
	    "no lost connection without a kill -9 to explain it (lost %d, "
	    "explained %d, unexplained %d)",
	    nlost, nexpl, nunexpl);
	CHECK(bad_other + bad_unexpl == 0,
	    "no invalid access token handed out (%d; %d more of grants an "
	    "explained loss revoked)",
	    bad_other + bad_unexpl, bad_expl);
	CHECK(ready_end == NPROC, "every process answers /readyz 200 at the "
	                          "end (%d of %d)",
	    ready_end, NPROC);

	json_object_put(grants_o);
	json_object_put(log_o);
	free(rlog);
	for (c = 0; c < NCONN; c++) {
		free(status[c]);
		free(conn_ids[c]);
	}
	check_clean_shutdown();
	for (s = 0; s < NPROC; s++)
		free(slots[s].state_dir);
	return h_done(test_done());
}
