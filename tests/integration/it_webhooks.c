/*
 * finxd's webhooks verified by an independent implementation (issue 14,
 * item 9): the Standard Webhooks reference library from npm, in
 * tests/webhooks/receiver.mjs, which logs one JSON line per request it
 * took.  finxd signs with two secrets, the receiver knows only the second
 * (a rotation), and delivers real events (links, deletes and what the
 * first pulls bring) through a receiver outage (500s for a while), a
 * kill -9 of the delivering finxd while the receiver holds the attempt,
 * and a receiver slower than FINXD_WEBHOOK_TIMEOUT.  Then: every event of
 * event_log (by SQL) was delivered and verified, none failed to verify,
 * and an event was taken twice only when an attempt of it was cut off
 * (at least once).  Last, the receiver refuses a tampered body and a
 * signature of the old secret alone, so its verification is live.
 *
 * Skips (TAP) only when node or npm is not installed; tests/scripts/
 * deps.sh installs both, and the package is installed here with `npm ci`
 * from tests/webhooks/package-lock.json on first use.
 */
#include "it_common.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *db;
static int f;
static const char *dir; /* tests/webhooks */
static char *old_secret, *new_secret; /* whsec_..., never printed */
static pid_t rx_pid;
static int rx_port;

/* ---- the receiver ---------------------------------------------------- */

static void
rx_stop(void)
{
	int st;

	if (rx_pid > 0) {
		kill(rx_pid, SIGTERM);
		waitpid(rx_pid, &st, 0);
	}
	rx_pid = 0;
}

static char *
rx_url(const char *path)
{
	return h_fmt("http://127.0.0.1:%d%s", rx_port, path);
}

/* GET /_control answers: the receiver is up. */
static bool
rx_up(void *arg)
{
	struct h_resp r;
	char *url = rx_url("/_control");
	bool ok = h_http("GET", url, NULL, NULL, 0, &r) == 0 &&
	    r.status == 200;

	(void)arg;
	h_resp_free(&r);
	free(url);
	return ok;
}

static void
rx_start(void)
{
	char *script = h_fmt("%s/receiver.mjs", dir), *port, *log, *err;

	rx_port = h_free_port();
	port = h_fmt("%d", rx_port);
	log = h_path("received.jsonl");
	err = h_path("receiver.log");
	fflush(stdout);
	if ((rx_pid = fork()) == 0) {
		int fd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		/* Dies with the test, however the test ends. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fd, 1);
		dup2(fd, 2);
		setenv("WEBHOOK_SECRET", new_secret, 1);
		execlp("node", "node", script, port, log, (char *)NULL);
		_exit(127);
	}
	atexit(rx_stop);
	if (!h_wait_every(rx_up, NULL, 15000, 100))
		h_bail("the receiver did not come up (receiver.log)");
	free(script);
	free(port);
	free(log);
	free(err);
}

/* POST /_control: mode ok, fail or slow (slow_ms), for for_ms (0: on). */
static void
rx_mode(const char *mode, long slow_ms, long for_ms)
{
	struct h_resp r;
	char *url = rx_url("/_control"), *body = h_fmt(
	    "{\"mode\":\"%s\",\"slow_ms\":%ld,\"for_ms\":%ld}", mode, slow_ms,
	    for_ms);

	if (h_http("POST", url, NULL, body, strlen(body), &r) != 0 ||
	    r.status != 200)
		h_bail("receiver control: %ld", r.status);
	h_resp_free(&r);
	free(url);
	free(body);
}

/* Requests the receiver has taken in, answered or not. */
static long
rx_requests(void)
{
	struct h_resp r;
	char *url = rx_url("/_control");
	long n = -1;

	if (h_http("GET", url, NULL, NULL, 0, &r) == 0 && r.status == 200)
		n = h_jlong(h_resp_json(&r), "requests", -1);
	h_resp_free(&r);
	free(url);
	return n;
}

/* The receiver's log: one JSON object per request it answered. */
struct line {
	char *id, *type;
	bool verified, aborted;
	long status;
};

static struct line *
rx_lines(int *n)
{
	char *path = h_path("received.jsonl"), *text, *save = NULL, *l;
	FILE *fp = fopen(path, "r");
	struct line *v = NULL;
	size_t len = 0;
	int cap = 0;

	*n = 0;
	text = fp ? NULL : h_dup("");
	if (fp != NULL) {
		FILE *m = open_memstream(&text, &len);
		int c;

		while ((c = fgetc(fp)) != EOF)
			fputc(c, m);
		fclose(m);
		fclose(fp);
	}
	for (l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		struct json_object *o = json_tokener_parse(l), *b;

		if (*n == cap)
			v = realloc(v, sizeof(*v) * (size_t)(cap = cap * 2 + 64));
		v[*n].id = h_dup(h_jstr(o, "id"));
		v[*n].type = h_dup(h_jstr(o, "type"));
		v[*n].verified = json_object_object_get_ex(o, "verified", &b) &&
		    json_object_get_boolean(b);
		v[*n].aborted = json_object_object_get_ex(o, "aborted", &b) &&
		    json_object_get_boolean(b);
		v[*n].status = h_jlong(o, "status", 0);
		(*n)++;
		json_object_put(o);
	}
	free(text);
	free(path);
	return v;
}

static void
lines_free(struct line *v, int n)
{
	for (int i = 0; i < n; i++) {
		free(v[i].id);
		free(v[i].type);
	}
	free(v);
}

/* ---- driving events -------------------------------------------------- */

static long
undelivered(void)
{
	return h_sql_long(db, "SELECT count(*) FROM event_log WHERE delivery "
			      "<> 'delivered'", NULL);
}

static bool
all_delivered(void *arg)
{
	(void)arg;
	return undelivered() == 0;
}

/* A connection for user (its link.completed, and its first pull's
 * events); its id (caller frees). */
static char *
connect_user(const char *user)
{
	char *cid = h_connect_retry(f, user);

	if (cid == NULL)
		h_bail("no connection for %s", user);
	return cid;
}

/* Connect user and delete the connection: link.completed and
 * connection.revoked (and what the pull between brings). */
static void
connect_delete(const char *user)
{
	char *cid = connect_user(user);

	if (h_conn_api(f, "DELETE", cid, NULL, NULL) != 200)
		h_bail("DELETE %s's connection failed", user);
	free(cid);
}

static void
start_finxd(void)
{
	char *url = rx_url("/hook"),
	     *secrets = h_fmt("%s,%s", old_secret, new_secret);

	h_env_set("FINXD_WEBHOOK_URL", url);
	h_env_set("FINXD_WEBHOOK_SECRET", secrets);
	free(url);
	free(secrets);
	f = h_finxd_start();
}

static void
phase_healthy(void)
{
	free(connect_user("wh-healthy-1"));
	connect_delete("wh-healthy-2");
	CHECK(h_wait_every(all_delivered, NULL, 15000, 100),
	    "healthy receiver: every event delivered");
}

static void
phase_outage(void)
{
	long before = h_sql_long(db, "SELECT count(*) FROM event_log WHERE "
				     "attempts >= 2", NULL);

	rx_mode("fail", 0, 3000);
	connect_delete("wh-outage-1");
	free(connect_user("wh-outage-2"));
	CHECK(h_wait_every(all_delivered, NULL, 30000, 200),
	    "an outage of 3 s (500): every event delivered by the retries");
	CHECK(h_sql_long(db, "SELECT count(*) FROM event_log WHERE "
			     "attempts >= 2", NULL) > before,
	    "and some needed a second attempt");
}

struct more {
	long than;
};

static bool
rx_more(void *arg)
{
	return rx_requests() > ((struct more *)arg)->than;
}

static void
phase_kill(void)
{
	struct more m = { rx_requests() };

	rx_mode("slow", 8000, 0);
	free(connect_user("wh-kill"));
	CHECK(h_wait_every(rx_more, &m, 10000, 50),
	    "the receiver holds an attempt");
	h_sleep_ms(300);
	h_finxd_stop(f, SIGKILL);
	rx_mode("ok", 0, 0);
	start_finxd();
	CHECK(h_wait_every(all_delivered, NULL, 40000, 200),
	    "kill -9 mid-delivery: another process delivers after the claim's "
	    "deadline");
}

static void
phase_slow(void)
{
	rx_mode("slow", 3500, 3000); /* past FINXD_WEBHOOK_TIMEOUT=2 */
	connect_delete("wh-slow");
	CHECK(h_wait_every(all_delivered, NULL, 40000, 200),
	    "a receiver slower than the timeout: delivered by a retry");
}

/* ---- the checks ------------------------------------------------------ */

/* Lines of log for id: taken (2xx), taken and answered to a sender
 * still there, verified, cut off (aborted); the type seen. */
struct tally {
	int taken, seen_ok, verified, aborted, unverified;
	const char *type;
};

static struct tally
tally(const struct line *v, int n, const char *id)
{
	struct tally t = { 0 };

	for (int i = 0; i < n; i++) {
		if (!h_streq(v[i].id, id))
			continue;
		t.taken += v[i].status / 100 == 2;
		t.seen_ok += v[i].status / 100 == 2 && !v[i].aborted;
		t.verified += v[i].verified;
		t.unverified += !v[i].verified;
		t.aborted += v[i].aborted;
		t.type = v[i].type;
	}
	return t;
}

static void
check_log(void)
{
	PGresult *r = h_sql(db, "SELECT 'evt_' || replace(id::text, '-', ''), "
				"type, attempts FROM event_log", NULL);
	int n, i, missing = 0, wrongtype = 0, dups = 0, bad_dups = 0, cut = 0;
	struct line *v = rx_lines(&n);
	int rows = r ? PQntuples(r) : 0, unverified = 0, fails = 0;

	for (i = 0; i < n; i++) {
		unverified += !v[i].verified;
		fails += v[i].status == 500;
	}
	for (i = 0; i < rows; i++) {
		struct tally t = tally(v, n, PQgetvalue(r, i, 0));

		missing += t.seen_ok < 1 || t.verified < 1;
		wrongtype += !h_streq(t.type, PQgetvalue(r, i, 1));
		cut += t.aborted > 0;
		dups += t.taken > 1;
		bad_dups += t.taken > 1 && t.aborted == 0;
	}
	CHECK(rows >= 8, "event_log holds the events driven (%d)", rows);
	CHECK(missing == 0 && wrongtype == 0,
	    "every event of event_log was taken and verified by the "
	    "standardwebhooks library, with its type (%d missing, %d of "
	    "another type, of %d)", missing, wrongtype, rows);
	CHECK(unverified == 0, "no delivery failed verification (%d of %d "
			       "requests)", unverified, n);
	CHECK(fails > 0 && cut >= 2, "the faults happened: %d answered 500, "
				     "%d events with an attempt cut off",
	    fails, cut);
	CHECK(bad_dups == 0, "taken twice only when an attempt was cut off "
			     "(%d events taken twice, %d of them not cut off)",
	    dups, bad_dups);
	lines_free(v, n);
	PQclear(r);
}

/* "v1,<base64 HMAC-SHA256 of id.ts.body>" with a whsec_ secret. */
static char *
sign(const char *whsec, const char *id, long ts, const char *body)
{
	unsigned char key[96], mac[32], b64[64];
	unsigned int mlen;
	char *msg = h_fmt("%s.%ld.%s", id, ts, body);
	int klen = EVP_DecodeBlock(key, (const unsigned char *)whsec + 6,
	    (int)strlen(whsec + 6));

	HMAC(EVP_sha256(), key, klen, (unsigned char *)msg, strlen(msg), mac,
	    &mlen);
	EVP_EncodeBlock(b64, mac, (int)mlen);
	free(msg);
	return h_fmt("v1,%s", b64);
}

/* POST body to the receiver with id's headers signed over signed_body. */
static long
post_signed(const char *whsec, const char *id, const char *signed_body,
    const char *body)
{
	long ts = h_realtime_ms() / 1000, st;
	char *sig = sign(whsec, id, ts, signed_body), *url = rx_url("/hook");
	char *h[] = { h_fmt("webhook-id: %s", id),
		h_fmt("webhook-timestamp: %ld", ts),
		h_fmt("webhook-signature: %s", sig),
		"Content-Type: application/json", NULL };
	struct h_resp r;

	h_http("POST", url, (const char *const *)h, body, strlen(body), &r);
	st = r.status;
	h_resp_free(&r);
	for (int i = 0; i < 3; i++)
		free(h[i]);
	free(sig);
	free(url);
	return st;
}

static void
check_tamper(void)
{
	static const char body[] = "{\"id\":\"msg_probe\",\"type\":\"probe\"}",
			  evil[] = "{\"id\":\"msg_probe\",\"type\":\"probf\"}";
	struct line *v;
	struct tally t;
	int n;

	CHECK(post_signed(new_secret, "msg_probe_ok", body, body) == 200,
	    "the receiver takes a body signed here with OpenSSL");
	CHECK(post_signed(new_secret, "msg_probe_tampered", body, evil) == 400,
	    "and refuses it with one byte changed");
	CHECK(post_signed(old_secret, "msg_probe_old", body, body) == 400,
	    "and refuses a signature of the secret it does not know");
	v = rx_lines(&n);
	t = tally(v, n, "msg_probe_tampered");
	CHECK(t.unverified == 1 && t.verified == 0,
	    "the log says the tampered one did not verify");
	lines_free(v, n);
}

/* node and npm are there, and the package is installed: else skip. */
static void
need_node(void)
{
	static const char *const which[] = { "sh", "-c",
		"command -v node && command -v npm", NULL };
	char *ci;
	int rc;

	if (h_run(which, "which.out", 10) != 0) {
		printf("1..0 # SKIP node or npm not installed "
		       "(tests/scripts/deps.sh installs them)\n");
		exit(0);
	}
	ci = h_fmt("cd '%s' && { [ -d node_modules/standardwebhooks ] || "
		   "npm ci --no-audit --no-fund --loglevel=error; }", dir);
	rc = h_run((const char *const[]){ "sh", "-c", ci, NULL }, "npm.out",
	    180);
	free(ci);
	if (rc != 0)
		h_bail("npm ci in tests/webhooks failed (%d, npm.out)", rc);
}

int
main(void)
{
	h_init("it_webhooks", 280);
	dir = getenv("WEBHOOKS_DIR") ? getenv("WEBHOOKS_DIR")
				     : "tests/webhooks";
	need_node();
	db = h_setup(NULL);
	old_secret = h_fmt("whsec_%s", h_secret_new(32));
	new_secret = h_fmt("whsec_%s", h_secret_new(32));
	rx_start();
	h_env_set("FINXD_WEBHOOK_TIMEOUT", "2");
	h_env_set("FINXD_REFRESH_INTERVAL", "3600");
	start_finxd();

	phase_healthy();
	phase_outage();
	phase_kill();
	phase_slow();
	check_log();
	check_tamper();
	CHECK(!h_log_contains(old_secret + 6) && !h_log_contains(new_secret + 6),
	    "neither secret is in finxd's log");
	rx_stop();
	free(old_secret);
	free(new_secret);
	return h_done(test_done());
}
