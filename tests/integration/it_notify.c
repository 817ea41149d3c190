/*
 * finX notifications end to end (SPEC "finX notifications"): after a
 * connection's first pull the sandbox holds one registration per account
 * whose notify_uri is finxd's /finx/notify/<secret>; firing them pulls
 * within seconds (FINXD_NOTIFY_MIN_INTERVAL=0), any method works and the
 * body is never read; a wrong or malformed secret is 404 and pulls
 * nothing; with the default interval a notification right after a pull
 * is coalesced to last pull + 900 s; a flood of 200 is one pull; the
 * secret is in no log line and stored only as its SHA-256; a pull under
 * a committed claim is not moved (the notification waits for its end);
 * DELETE removes
 * the registrations at the sandbox before its tokens are revoked and
 * their secrets answer 404; FINXD_FINX_NOTIFICATIONS=off registers
 * nothing.  Each finxd instance has its own interval; requests go to the
 * running one's URL with the secret finX would send (the host of a
 * notify_uri is only where finX sends it).
 */
#include "it_common.h"

#include <pthread.h>

#define FLOOD 200    /* notifications at once */
#define FLOOD_THREADS 8
#define FLOOD_MIN_INTERVAL 6

static const char *db;
static int f;

/* ---- what the sandbox holds, what finxd did ---- */

/* The user's registrations at the sandbox (caller puts), or NULL. */
static struct json_object *
sbx_notes(const char *user)
{
	char *path = h_fmt("/_sandbox/notifications?user_id=%s", user);
	struct json_object *o = h_sbx_get(path), *a = NULL;

	free(path);
	if (o != NULL && json_object_object_get_ex(o, "notifications", &a))
		json_object_get(a);
	json_object_put(o);
	return a;
}

static long
sbx_note_count(const char *user)
{
	struct json_object *a = sbx_notes(user);
	long n = a != NULL ? (long)json_object_array_length(a) : -1;

	json_object_put(a);
	return n;
}

struct want_notes {
	const char *user;
	long n;
};

static bool
notes_are(void *arg)
{
	struct want_notes *w = arg;

	return sbx_note_count(w->user) == w->n;
}

static long
accounts_of(const char *cid)
{
	return h_sql_long(db,
	    "SELECT count(*) FROM accounts WHERE connection_id = $1",
	    (const char *[]){ cid, NULL });
}

/* The secret of the user's i-th registration (malloc'd), or NULL when
 * its notify_uri is not base + /finx/notify/<43 chars>. */
static char *
note_secret(const char *user, size_t i, const char *base)
{
	struct json_object *a = sbx_notes(user);
	const char *uri = NULL;
	char *prefix = h_fmt("%s/finx/notify/", base), *s = NULL;

	if (a != NULL && i < json_object_array_length(a))
		uri = h_jstr(json_object_array_get_idx(a, i), "notify_uri");
	if (uri != NULL && strncmp(uri, prefix, strlen(prefix)) == 0 &&
	    strlen(uri + strlen(prefix)) == 43)
		s = h_dup(uri + strlen(prefix));
	json_object_put(a);
	free(prefix);
	return s;
}

/* Lines of finxd's log that say connection cid was pulled. */
static long
pulls_logged(const char *cid)
{
	size_t len;
	char *log = h_log_read(&len), *line, *save = NULL;
	long n = 0;

	for (line = strtok_r(log, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save))
		if (strstr(line, "\"msg\":\"pulled\"") != NULL &&
		    strstr(line, cid) != NULL)
			n++;
	free(log);
	return n;
}

/* Pulls of cid logged within ms from now on top of before... waits the
 * whole time and answers the count then. */
static long
pulls_after(const char *cid, long before, long ms)
{
	h_sleep_ms(ms);
	return pulls_logged(cid) - before;
}

struct pulled {
	const char *cid;
	long before;
};

static bool
pulled_more(void *arg)
{
	struct pulled *p = arg;

	return pulls_logged(p->cid) > p->before;
}

/* Wait up to ms for a pull of cid beyond before. */
static bool
wait_pull(const char *cid, long before, long ms)
{
	struct pulled p = { cid, before };

	return h_wait_every(pulled_more, &p, ms, 100);
}

/* Wait until cid has not been pulled for quiet_ms (up to 20 s). */
static void
settle(const char *cid, long quiet_ms)
{
	long n = pulls_logged(cid), t0 = h_now_ms(), m;

	for (;;) {
		h_sleep_ms(quiet_ms);
		m = pulls_logged(cid);
		if (m == n || h_now_ms() - t0 > 20000)
			return;
		n = m;
	}
}

/* Unattended pulls count towards PSD2's 4 a day: forget them. */
static void
forget_recent(const char *cid)
{
	h_sql_do(db, "UPDATE pulls SET recent = '{}' WHERE connection_id = $1",
	    (const char *[]){ cid, NULL });
}

/* method on instance i's /finx/notify/<secret> with body (may be NULL). */
static long
notify(int i, const char *method, const char *secret, const char *body)
{
	char *url = h_fmt("%s/finx/notify/%s", h_finxd_url(i), secret);
	const char *hdrs[] = { "Content-Type: application/json", NULL };
	struct h_resp r;
	long st;

	h_http(method, url, hdrs, body, body ? strlen(body) : 0, &r);
	st = r.status;
	if (st == 204 && r.body_len != 0)
		st = -204; /* a body where none belongs */
	h_resp_free(&r);
	free(url);
	return st;
}

/* ---- the steps ---- */

static char *
connect_pulled(int i, const char *user)
{
	char *cid = h_connect_retry(i, user);

	if (cid == NULL)
		h_bail("no connection for %s", user);
	if (!h_wait_pull_after(db, cid, "", 20))
		h_bail("no first pull of %s", user);
	return cid;
}

static void
test_registered(const char *cid, const char *user, char **secret)
{
	long n = accounts_of(cid);
	struct want_notes w = { user, n };
	char *s;

	CHECK(n >= 2, "the connection has %ld accounts", n);
	CHECK(h_wait_every(notes_are, &w, 20000, 200),
	    "after the first pull the sandbox holds one registration per "
	    "account");
	CHECK(h_sql_long(db,
		  "SELECT count(*) FROM finx_notifications WHERE "
		  "connection_id = $1 AND state = 'registered' AND finx_id IS "
		  "NOT NULL",
		  (const char *[]){ cid, NULL }) == n,
	    "finxd recorded each as registered with finX's id");
	*secret = note_secret(user, 0, h_finxd_url(f));
	CHECK(*secret != NULL, "notify_uri is FINXD_PUBLIC_URL/finx/notify/ "
			       "and a 43-character secret");
	s = note_secret(user, 1, h_finxd_url(f));
	CHECK(s != NULL && *secret != NULL && strcmp(s, *secret) != 0,
	    "each registration has its own secret");
	free(s);
	if (*secret == NULL)
		h_bail("no secret to go on with");
	CHECK(h_sql_long(db,
		  "SELECT count(*) FROM finx_notifications WHERE secret_hash = "
		  "encode(sha256(convert_to($1, 'UTF8')), 'hex')",
		  (const char *[]){ *secret, NULL }) == 1,
	    "the secret is stored as its SHA-256");
	s = h_db_dump(db);
	CHECK(strstr(s, *secret) == NULL, "the secret is nowhere in the "
					  "database");
	free(s);
}

static void
test_fire(const char *cid, const char *user)
{
	struct json_object *o = NULL;
	long before, st;

	settle(cid, 1500);
	forget_recent(cid);
	before = pulls_logged(cid);
	st = h_sbx_fire(user, NULL, &o);
	CHECK(sbx_ok(st) && h_jlong(o, "fired", -1) == accounts_of(cid) &&
		h_jlong(o, "delivered", -2) == h_jlong(o, "fired", -1),
	    "the sandbox fired every registration and finxd took each (2xx)");
	json_object_put(o);
	CHECK(wait_pull(cid, before, 10000),
	    "firing them pulls the connection within seconds");
}

static void
test_methods(const char *cid, const char *secret)
{
	static const char *const methods[] = { "GET", "PUT", "DELETE",
		"PATCH" };
	long before;
	size_t i;

	for (i = 0; i < 4; i++) {
		settle(cid, 1000);
		forget_recent(cid);
		before = pulls_logged(cid);
		CHECK(notify(f, methods[i], secret, NULL) == 204,
		    "%s with a known secret: 204 and no body", methods[i]);
		CHECK(wait_pull(cid, before, 10000), "and a pull (%s)",
		    methods[i]);
	}
	settle(cid, 1000);
	forget_recent(cid);
	before = pulls_logged(cid);
	CHECK(notify(f, "POST", secret, "{not json at all") == 204,
	    "a body that is not JSON is never read: 204");
	CHECK(wait_pull(cid, before, 10000), "and a pull");
}

static void
test_wrong(const char *cid, const char *secret)
{
	char wrong[44], *big;
	long before;

	settle(cid, 1500);
	forget_recent(cid);
	before = pulls_logged(cid);
	memcpy(wrong, secret, sizeof(wrong));
	wrong[10] = wrong[10] == 'A' ? 'B' : 'A';
	CHECK(notify(f, "POST", wrong, "{}") == 404,
	    "a secret with one character changed: 404");
	CHECK(notify(f, "GET", "short", NULL) == 404, "a short secret: 404");
	wrong[10] = '+';
	CHECK(notify(f, "POST", wrong, NULL) == 404,
	    "a secret outside base64url: 404");
	CHECK(notify(f, "POST", "", NULL) == 404, "no secret: 404");
	big = calloc(70 * 1024 + 1, 1);
	memset(big, 'x', 70 * 1024);
	CHECK(notify(f, "POST", secret, big) == 413,
	    "a body over the limit: 413");
	free(big);
	CHECK(pulls_after(cid, before, 3000) == 0,
	    "none of them pulled anything");
}

/*
 * A pull under a committed claim (pulls.claim_until, the committed pull
 * claims of issue 14 item 1; added here when this schema lacks it): a
 * notification leaves next_pull_at alone (a move would let a second pull
 * start beside the claimed one) and is pending; once the claim is gone
 * the workers move the pull and it runs.
 */
static void
test_claimed(const char *cid, const char *secret)
{
	const char *p[] = { cid, NULL };
	char *next;
	long before;

	settle(cid, 1500);
	forget_recent(cid);
	h_sql_do(db, "ALTER TABLE pulls ADD COLUMN IF NOT EXISTS claim_until "
		     "timestamptz", NULL);
	h_sql_do(db, "UPDATE pulls SET claim_until = now() + interval '1 "
		     "minute', next_pull_at = now() + interval '1 minute' WHERE "
		     "connection_id = $1", p);
	next = h_sql_value(db, "SELECT next_pull_at::text FROM pulls WHERE "
			       "connection_id = $1", p);
	before = pulls_logged(cid);
	CHECK(notify(f, "POST", secret, "{}") == 204,
	    "a notification while a claim runs: 204");
	h_sleep_ms(1500);
	CHECK(h_sql_true(db, "SELECT next_pull_at::text = $2 FROM pulls "
			     "WHERE connection_id = $1",
		  (const char *[]){ cid, next, NULL }),
	    "it leaves the claimed pull's next_pull_at alone");
	CHECK(h_sql_long(db, "SELECT count(*) FROM finx_notifications WHERE "
			     "connection_id = $1 AND pull_pending", p) == 1,
	    "and is pending");
	CHECK(pulls_logged(cid) == before, "nothing pulled meanwhile");
	h_sql_do(db, "UPDATE pulls SET claim_until = NULL WHERE "
		     "connection_id = $1", p);
	CHECK(wait_pull(cid, before, 10000),
	    "once the claim is gone the workers pull it");
	CHECK(h_sql_long(db, "SELECT count(*) FROM finx_notifications WHERE "
			     "connection_id = $1 AND pull_pending", p) == 0,
	    "and nothing is pending any more");
	free(next);
}

static void
test_log(const char *cid, const char *user)
{
	char *s;
	size_t i;
	long n = accounts_of(cid);

	for (i = 0; i < (size_t)n; i++) {
		s = note_secret(user, i, h_finxd_url(f));
		CHECK(s != NULL && !h_log_contains(s),
		    "secret %zu is in no line of finxd's log", i);
		free(s);
	}
	CHECK(h_log_contains("\"path\":\"/finx/notify/...\""),
	    "the access log shows the path as /finx/notify/...");
}

/* A reauthorised connection keeps its registrations and secrets. */
static void
test_reauth(const char *cid, const char *user, const char *secret)
{
	char *hashes = h_sql_value(db,
	    "SELECT string_agg(secret_hash || finx_id, ',' ORDER BY id) FROM "
	    "finx_notifications WHERE connection_id = $1",
	    (const char *[]){ cid, NULL }), *now, *cb = NULL;
	const char *loc;
	struct h_resp r;
	long before;

	CHECK(h_reauth(f, cid, &r) == 201, "reauth: a link");
	loc = h_jstr(h_resp_json(&r), "location");
	if (loc != NULL)
		cb = h_widget(loc, "approve");
	h_resp_free(&r);
	if (cb != NULL)
		h_http("GET", cb, NULL, NULL, 0, &r);
	CHECK(cb != NULL && r.status == 303 && h_conn_status_is(f, cid,
	    "active"), "reauth: approved, the connection active");
	if (cb != NULL)
		h_resp_free(&r);
	free(cb);
	settle(cid, 1500);
	now = h_sql_value(db,
	    "SELECT string_agg(secret_hash || finx_id, ',' ORDER BY id) FROM "
	    "finx_notifications WHERE connection_id = $1",
	    (const char *[]){ cid, NULL });
	CHECK(hashes != NULL && h_streq(hashes, now),
	    "after reauth the same registrations, under the same secrets");
	CHECK(sbx_note_count(user) == accounts_of(cid),
	    "and the sandbox still holds one per account");
	forget_recent(cid);
	before = pulls_logged(cid);
	CHECK(notify(f, "POST", secret, "{}") == 204 &&
		wait_pull(cid, before, 10000),
	    "the secret still pulls");
	free(hashes);
	free(now);
}

/* With the default interval (900 s): a notification right after a pull
 * moves the next pull to last pull + 900 s and pulls nothing now. */
static void
test_coalesced(const char *cid, const char *secret, int g)
{
	long before;

	forget_recent(cid);
	settle(cid, 1000);
	before = pulls_logged(cid);
	h_sql_do(db,
	    "UPDATE pulls SET next_pull_at = now(), attended = true WHERE "
	    "connection_id = $1",
	    (const char *[]){ cid, NULL });
	CHECK(wait_pull(cid, before, 10000), "a pull on its timer");
	before = pulls_logged(cid);
	CHECK(notify(g, "POST", secret, "{}") == 204,
	    "a notification right after it: 204");
	CHECK(pulls_after(cid, before, 3000) == 0, "and no second pull");
	CHECK(h_sql_true(db,
		  "SELECT abs(extract(epoch FROM next_pull_at - (last_pull_at + "
		  "interval '900 seconds'))) < 2 FROM pulls WHERE "
		  "connection_id = $1",
		  (const char *[]){ cid, NULL }),
	    "its pull is coalesced to last pull + 900 s");
}

struct flood {
	int instance;
	const char *secret;
	int n, ok;
};

static void *
flood_run(void *arg)
{
	struct flood *fl = arg;
	char *url = NULL;
	struct h_resp r;
	int i;

	if (asprintf(&url, "%s/finx/notify/%s", h_finxd_url(fl->instance),
		fl->secret) < 0)
		return NULL;
	for (i = 0; i < fl->n; i++) {
		h_http("POST", url, NULL, "{}", 2, &r);
		fl->ok += r.status == 204;
		h_resp_free(&r);
	}
	free(url);
	return NULL;
}

static void
test_flood(const char *cid, const char *secret, int g)
{
	struct flood fl[FLOOD_THREADS];
	pthread_t th[FLOOD_THREADS];
	long before, t0, window, n;
	int i, ok = 0;

	settle(cid, 1000);
	forget_recent(cid);
	h_sleep_ms(FLOOD_MIN_INTERVAL * 1000 + 500); /* past the interval */
	before = pulls_logged(cid);
	t0 = h_now_ms();
	for (i = 0; i < FLOOD_THREADS; i++) {
		fl[i] = (struct flood){ g, secret, FLOOD / FLOOD_THREADS, 0 };
		pthread_create(&th[i], NULL, flood_run, &fl[i]);
	}
	for (i = 0; i < FLOOD_THREADS; i++) {
		pthread_join(th[i], NULL);
		ok += fl[i].ok;
	}
	CHECK(ok == FLOOD, "%d of %d notifications at once answered 204", ok,
	    FLOOD);
	h_sleep_ms(1500);
	window = h_now_ms() - t0;
	n = pulls_logged(cid) - before;
	printf("# %ld pull(s) within %ld ms of the flood's start\n", n, window);
	if (window < FLOOD_MIN_INTERVAL * 1000)
		CHECK(n == 1, "the flood caused exactly one pull");
	else
		CHECK(n >= 1 && n <= window / (FLOOD_MIN_INTERVAL * 1000) + 1,
		    "the flood caused one pull per interval at most");
	n = pulls_after(cid, before, FLOOD_MIN_INTERVAL * 1000 + 2000);
	window = h_now_ms() - t0;
	CHECK(n >= 1 && n <= window / (FLOOD_MIN_INTERVAL * 1000) + 1,
	    "%ld pulls in %ld ms: at most one per %d s", n, window,
	    FLOOD_MIN_INTERVAL);
}

static void
test_delete(const char *cid, const char *user, const char *secret, int g)
{
	struct want_notes none = { user, 0 };
	struct h_resp r;
	long t0 = h_now_ms();

	CHECK(h_conn_api(g, "DELETE", cid, NULL, &r) == 200,
	    "DELETE /v1/connections/{id}: 200");
	h_resp_free(&r);
	CHECK(h_now_ms() - t0 < 5000, "it answered in %ld ms",
	    h_now_ms() - t0);
	CHECK(h_wait_every(notes_are, &none, 15000, 200),
	    "its registrations are gone at the sandbox");
	CHECK(h_sql_long(db,
		  "SELECT count(*) FROM finx_notifications WHERE "
		  "connection_id = $1",
		  (const char *[]){ cid, NULL }) == 0,
	    "and from finx_notifications");
	CHECK(h_wait_every(h_revocations_gone, (void *)cid, 15000, 200),
	    "its tokens were revoked after that");
	CHECK(h_sbx_grants(user, "active") == 0,
	    "the sandbox holds no active grant of the user");
	CHECK(notify(g, "POST", secret, "{}") == 404,
	    "a deleted connection's secret: 404");
}

static void
test_off(void)
{
	char *cid;

	h_env_set("FINXD_FINX_NOTIFICATIONS", "off");
	f = h_finxd_start();
	cid = connect_pulled(f, "u-note-off");
	h_sleep_ms(3000);
	CHECK(sbx_note_count("u-note-off") == 0,
	    "FINXD_FINX_NOTIFICATIONS=off: nothing registered at the sandbox");
	CHECK(h_sql_long(db,
		  "SELECT count(*) FROM finx_notifications WHERE "
		  "connection_id = $1",
		  (const char *[]){ cid, NULL }) == 0,
	    "and nothing queued");
	CHECK(wait_pull(cid, 0, 5000), "(the connection was pulled)");
	h_finxd_stop(f, SIGTERM);
	free(cid);
}

/* A new instance with FINXD_NOTIFY_MIN_INTERVAL=interval (NULL: the
 * default), the old one stopped. */
static int
restart(const char *interval)
{
	h_finxd_stop(f, SIGTERM);
	h_env_set("FINXD_NOTIFY_MIN_INTERVAL", interval);
	return f = h_finxd_start();
}

int
main(void)
{
	const char *sbx_args[] = { "--transactions", "5", NULL };
	char *cid, *secret;
	int g;

	h_init("it_notify", 280);
	db = h_setup(sbx_args);
	h_env_set("FINXD_REFRESH_INTERVAL", "1");
	h_env_set("FINXD_SYNC_INTERVAL", "3600");
	h_env_set("FINXD_NOTIFY_MIN_INTERVAL", "0");
	f = h_finxd_start();

	cid = connect_pulled(f, "u-note");
	test_registered(cid, "u-note", &secret);
	test_fire(cid, "u-note");
	test_methods(cid, secret);
	test_wrong(cid, secret);
	test_claimed(cid, secret);
	test_log(cid, "u-note");
	test_reauth(cid, "u-note", secret);

	g = restart(NULL);
	test_coalesced(cid, secret, g);
	g = restart("6");
	test_flood(cid, secret, g);
	test_delete(cid, "u-note", secret, g);
	CHECK(!h_log_contains(secret), "the secret never reached the log");
	h_finxd_stop(f, SIGTERM);
	test_off();
	free(secret);
	free(cid);
	return h_done(test_done());
}
