/*
 * Idempotency-Key (SPEC "Lists, idempotency, changes") against the
 * running binary: a replay answers the first answer again (status, body,
 * Content-Type) without calling finX, across processes; another request
 * under the key is 422, the key while its request runs is 409; a 5xx
 * frees the key; keys are per API key and 1-255 printable ASCII; a killed
 * process's claim runs out; reauth and sync honour keys too; the stored
 * body is sealed.
 */
#include "it_common.h"

#include <pthread.h>
#include <unistd.h>

#define LINK_BODY                                                          \
	"{\"user_id\":\"u-idem\",\"return_url\":\"" H_RETURN_URL "\"}"
#define LINKS "/ongoing/access"

static const char *db;
static int f1, f2; /* two processes on one database */
static char *key2; /* a second API key */

/* POST path on instance i with API key apikey (NULL: the test's) and
 * Idempotency-Key idem (NULL: none); the status. */
static long
idem_post(int i, const char *apikey, const char *path, const char *idem,
    const char *body, struct h_resp *r)
{
	char auth[256], ik[600], url[512];
	const char *hdrs[4] = { auth, "Content-Type: application/json", ik,
		NULL };

	snprintf(auth, sizeof(auth), "Authorization: Bearer %s",
	    apikey ? apikey : h_api_key());
	snprintf(ik, sizeof(ik), "Idempotency-Key: %s", idem ? idem : "");
	snprintf(url, sizeof(url), "%s%s", h_finxd_url(i), path);
	if (idem == NULL)
		hdrs[2] = NULL;
	h_http("POST", url, hdrs, body, body ? strlen(body) : 0, r);
	return r->status;
}

/* Whether b answers exactly what a did (status, body, Content-Type), as
 * a replay (Idempotent-Replayed: true). */
static bool
same_answer(const struct h_resp *a, const struct h_resp *b)
{
	return a->status == b->status && a->body_len == b->body_len &&
	    memcmp(a->body, b->body, a->body_len) == 0 &&
	    h_streq(h_resp_header(a, "Content-Type"),
		h_resp_header(b, "Content-Type")) &&
	    h_streq(h_resp_header(b, "Idempotent-Replayed"), "true");
}

/* One fault (mode and its members) on finX's next POST /ongoing/access. */
static void
links_fault(const char *mode)
{
	char body[256];

	snprintf(body, sizeof(body),
	    "{\"path\":\"" LINKS "\",\"mode\":%s,\"count\":1}", mode);
	CHECK(sbx_ok(h_sbx_post("/_sandbox/faults", body)),
	    "sandbox fault on " LINKS);
}

static long
key_rows(const char *key)
{
	const char *p[] = { key, NULL };

	return h_sql_long(db,
	    "SELECT count(*) FROM idempotency_keys WHERE key = $1", p);
}

static void
test_key_format(void)
{
	char long_key[300];
	struct h_resp r;
	int n0 = h_sbx_count(LINKS);

	memset(long_key, 'k', 256);
	long_key[256] = '\0';
	idem_post(f1, NULL, "/v1/links", long_key, LINK_BODY, &r);
	CHECK(r.status == 400 && h_err_is(&r, "invalid_request"),
	    "a key of 256 bytes: 400 invalid_request (%ld)", r.status);
	h_resp_free(&r);
	idem_post(f1, NULL, "/v1/links", "ab\x01" "cd", LINK_BODY, &r);
	CHECK(r.status == 400 && h_err_is(&r, "invalid_request"),
	    "a key with a control character: 400 invalid_request (%ld)",
	    r.status);
	h_resp_free(&r);
	idem_post(f1, NULL, "/v1/links", "caf\xc3\xa9", LINK_BODY, &r);
	CHECK(r.status == 400 && h_err_is(&r, "invalid_request"),
	    "a key beyond ASCII: 400 invalid_request (%ld)", r.status);
	h_resp_free(&r);
	CHECK(h_sbx_count(LINKS) == n0, "finX saw none of them");
	long_key[255] = '\0';
	idem_post(f1, NULL, "/v1/links", long_key, LINK_BODY, &r);
	CHECK(r.status == 201, "a key of 255 bytes: 201 (%ld)", r.status);
	h_resp_free(&r);
	idem_post(f1, NULL, "/v1/links", "with space ~!", LINK_BODY, &r);
	CHECK(r.status == 201, "spaces and punctuation: 201 (%ld)", r.status);
	h_resp_free(&r);
}

/* The stored body is sealed: no location, no start_url in plain text. */
static void
check_sealed(const char *key, const struct h_resp *first)
{
	const char *p[] = { key, NULL };
	char *body = h_sql_value(db,
	    "SELECT body FROM idempotency_keys WHERE key = $1", p);
	const char *loc = h_jstr(h_resp_json((struct h_resp *)first),
	    "location");

	CHECK(body != NULL && strncmp(body, "v1:", 3) == 0 &&
		loc != NULL && strstr(body, loc) == NULL &&
		strstr(body, "link_id") == NULL,
	    "the stored answer is sealed (no location in the row)");
	free(body);
}

static void
test_replay(void)
{
	struct h_resp a, b, c;
	int n0 = h_sbx_count(LINKS);

	idem_post(f1, NULL, "/v1/links", "replay-1", LINK_BODY, &a);
	CHECK(a.status == 201 && h_jstr(h_resp_json(&a), "link_id"),
	    "first POST /v1/links with a key: 201 (%ld)", a.status);
	CHECK(h_resp_header(&a, "Idempotent-Replayed") == NULL,
	    "the first answer is not marked as a replay");
	idem_post(f1, NULL, "/v1/links", "replay-1", LINK_BODY, &b);
	CHECK(same_answer(&a, &b), "the same request again: the first "
				   "answer again (status, body, type)");
	idem_post(f2, NULL, "/v1/links", "replay-1", LINK_BODY, &c);
	CHECK(same_answer(&a, &c), "at another process: the first answer");
	CHECK(h_sbx_count(LINKS) == n0 + 1, "finX saw one flow (%d)",
	    h_sbx_count(LINKS) - n0);
	CHECK(h_leaks(b.body, b.body_len) == 0 &&
		h_leaks(c.body, c.body_len) == 0,
	    "replays hold no secret of finxd's");
	check_sealed("replay-1", &a);
	h_resp_free(&a);
	h_resp_free(&b);
	h_resp_free(&c);
}

static void
test_reused(const char *cid)
{
	static const char other[] =
	    "{\"user_id\":\"u-other\",\"return_url\":\"" H_RETURN_URL "\"}";
	char path[128];
	struct h_resp r;
	int n0 = h_sbx_count(LINKS);

	idem_post(f1, NULL, "/v1/links", "replay-1", other, &r);
	CHECK(r.status == 422 && h_err_is(&r, "idempotency_key_reused"),
	    "the key with another body: 422 idempotency_key_reused (%ld)",
	    r.status);
	h_resp_free(&r);
	snprintf(path, sizeof(path), "/v1/connections/%s/reauth", cid);
	idem_post(f2, NULL, path, "replay-1", LINK_BODY, &r);
	CHECK(r.status == 422 && h_err_is(&r, "idempotency_key_reused"),
	    "the key on another path: 422 (%ld)", r.status);
	h_resp_free(&r);
	CHECK(h_sbx_count(LINKS) == n0, "finX saw neither");
}

static void
test_per_api_key(void)
{
	struct h_resp a, b;
	int n0 = h_sbx_count(LINKS);

	idem_post(f1, NULL, "/v1/links", "per-key", LINK_BODY, &a);
	idem_post(f1, key2, "/v1/links", "per-key", LINK_BODY, &b);
	CHECK(a.status == 201 && b.status == 201 &&
		!h_streq(h_jstr(h_resp_json(&a), "link_id"),
		    h_jstr(h_resp_json(&b), "link_id")) &&
		h_resp_header(&b, "Idempotent-Replayed") == NULL,
	    "another API key with the same key: a new link (%ld, %ld)",
	    a.status, b.status);
	CHECK(h_sbx_count(LINKS) == n0 + 2, "finX saw two flows");
	h_resp_free(&a);
	h_resp_free(&b);
}

struct slow {
	int f;
	const char *key;
	struct h_resp r;
};

static void *
slow_post(void *arg)
{
	struct slow *s = arg;

	idem_post(s->f, NULL, "/v1/links", s->key, LINK_BODY, &s->r);
	return NULL;
}

/* Wait until the key's claim row exists (the slow request runs). */
static bool
claimed(void *key)
{
	return key_rows(key) == 1;
}

static void
test_in_use(void)
{
	struct slow s = { .f = f1, .key = "in-use" };
	struct h_resp r;
	pthread_t th;
	int n0 = h_sbx_count(LINKS);

	links_fault("\"delay\",\"delay_ms\":2500");
	pthread_create(&th, NULL, slow_post, &s);
	CHECK(h_wait_until(claimed, (void *)s.key, 2000),
	    "the first request claimed the key");
	idem_post(f2, NULL, "/v1/links", "in-use", LINK_BODY, &r);
	CHECK(r.status == 409 && h_err_is(&r, "idempotency_key_in_use"),
	    "the key while its request runs: 409 idempotency_key_in_use "
	    "(%ld)", r.status);
	h_resp_free(&r);
	pthread_join(th, NULL);
	CHECK(s.r.status == 201, "the first request ends with 201 (%ld)",
	    s.r.status);
	idem_post(f2, NULL, "/v1/links", "in-use", LINK_BODY, &r);
	CHECK(same_answer(&s.r, &r), "after it: its answer");
	CHECK(h_sbx_count(LINKS) == n0 + 1, "finX saw one flow (%d)",
	    h_sbx_count(LINKS) - n0);
	h_resp_free(&r);
	h_resp_free(&s.r);
	h_sbx_reset();
}

static void
test_5xx_frees(void)
{
	struct h_resp r;
	int n0;

	links_fault("\"status\",\"status\":503");
	idem_post(f1, NULL, "/v1/links", "five", LINK_BODY, &r);
	CHECK(r.status == 503, "finX down: 503 (%ld)", r.status);
	h_resp_free(&r);
	CHECK(key_rows("five") == 0, "the 503 freed the key");
	n0 = h_sbx_count(LINKS);
	idem_post(f1, NULL, "/v1/links", "five", LINK_BODY, &r);
	CHECK(r.status == 201 && h_resp_header(&r, "Idempotent-Replayed") ==
		NULL, "the same request again runs anew: 201 (%ld)", r.status);
	CHECK(h_sbx_count(LINKS) == n0 + 1, "finX was called again");
	h_resp_free(&r);
	h_sbx_reset();
}

/* Two identical requests at the same moment at two processes. */
static void
test_race(void)
{
	struct slow s[2] = { { .f = f1, .key = "race" },
		{ .f = f2, .key = "race" } };
	pthread_t th[2];
	int i, n0 = h_sbx_count(LINKS), created = 0, other = 0;

	/* finX slow enough that the two overlap */
	links_fault("\"delay\",\"delay_ms\":500");
	for (i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, slow_post, &s[i]);
	for (i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		if (s[i].r.status == 201 &&
		    h_resp_header(&s[i].r, "Idempotent-Replayed") == NULL)
			created++;
		else if ((s[i].r.status == 409 &&
			     h_err_is(&s[i].r, "idempotency_key_in_use")) ||
		    h_streq(h_resp_header(&s[i].r, "Idempotent-Replayed"),
			"true"))
			other++;
	}
	CHECK(created == 1 && other == 1,
	    "two at once at two processes: one runs, the other 409 or the "
	    "stored answer (%d, %d)", created, other);
	CHECK(h_sbx_count(LINKS) == n0 + 1, "finX saw one flow");
	for (i = 0; i < 2; i++)
		h_resp_free(&s[i].r);
	h_sbx_reset();
}

/* A 4xx is an answer like any other: kept. */
static void
test_4xx_kept(void)
{
	static const char bad[] = "{\"user_id\":\"u\",\"return_url\":"
				  "\"https://evil.example/\"}";
	struct h_resp a, b;

	idem_post(f1, NULL, "/v1/links", "bad-url", bad, &a);
	idem_post(f2, NULL, "/v1/links", "bad-url", bad, &b);
	CHECK(a.status == 400 && h_err_is(&a, "return_url_not_allowed") &&
		same_answer(&a, &b),
	    "a 400 is kept and answered again (%ld, %ld)", a.status,
	    b.status);
	h_resp_free(&a);
	h_resp_free(&b);
}

/* A process killed inside the request: its claim holds the key until its
 * deadline (idem_lock_ms), then the next request takes it over. */
static void
test_killed_claim(void)
{
	struct slow s = { .key = "killed" };
	const char *p[] = { "killed", NULL };
	struct h_resp r;
	pthread_t th;
	long secs;

	s.f = h_finxd_start();
	links_fault("\"delay\",\"delay_ms\":4000");
	pthread_create(&th, NULL, slow_post, &s);
	CHECK(h_wait_until(claimed, (void *)s.key, 3000),
	    "the doomed request claimed the key");
	h_finxd_stop(s.f, SIGKILL);
	pthread_join(th, NULL);
	h_resp_free(&s.r);
	secs = h_sql_long(db, "SELECT extract(epoch FROM locked_until - "
			      "created_at)::int FROM idempotency_keys WHERE "
			      "key = $1", p);
	CHECK(secs >= 100 && secs <= 130,
	    "the claim's deadline is the request's (%ld s)", secs);
	idem_post(f1, NULL, "/v1/links", "killed", LINK_BODY, &r);
	CHECK(r.status == 409 && h_err_is(&r, "idempotency_key_in_use"),
	    "before the deadline: 409 (%ld)", r.status);
	h_resp_free(&r);
	/* the deadline passes */
	h_sql_do(db, "UPDATE idempotency_keys SET locked_until = now() - "
		     "interval '1 s' WHERE key = $1", p);
	idem_post(f1, NULL, "/v1/links", "killed", LINK_BODY, &r);
	CHECK(r.status == 201, "after it the key is taken over: 201 (%ld)",
	    r.status);
	h_resp_free(&r);
	h_sbx_reset();
}

/* After 24 hours a key is new again, whatever it answered. */
static void
test_day_old(void)
{
	static const char other[] =
	    "{\"user_id\":\"u-later\",\"return_url\":\"" H_RETURN_URL "\"}";
	struct h_resp r;

	h_sql_do(db, "UPDATE idempotency_keys SET created_at = now() - "
		     "interval '25 hours' WHERE key = 'five'", NULL);
	idem_post(f2, NULL, "/v1/links", "five", other, &r);
	CHECK(r.status == 201 && h_resp_header(&r, "Idempotent-Replayed") ==
		NULL, "a key past 24 hours runs anew, any body: 201 (%ld)",
	    r.status);
	h_resp_free(&r);
}

static void
test_reauth(const char *cid)
{
	char path[128];
	struct h_resp a, b;
	int n0 = h_sbx_count(LINKS);

	snprintf(path, sizeof(path), "/v1/connections/%s/reauth", cid);
	idem_post(f1, NULL, path, "reauth-1", LINK_BODY, &a);
	idem_post(f2, NULL, path, "reauth-1", LINK_BODY, &b);
	CHECK(a.status == 201 && same_answer(&a, &b),
	    "reauth with a key, twice: one answer (%ld)", a.status);
	CHECK(h_sbx_count(LINKS) == n0 + 1, "finX saw one reauth flow");
	h_resp_free(&a);
	h_resp_free(&b);
}

static void
test_sync(const char *cid)
{
	char path[128];
	struct h_resp a, b;
	long n0 = h_sbx_stat("syncs_created");

	CHECK(h_wait_pull_after(db, cid, "", 30), "the connection was pulled");
	snprintf(path, sizeof(path), "/v1/connections/%s/sync", cid);
	idem_post(f1, NULL, path, "sync-1", NULL, &a);
	idem_post(f2, NULL, path, "sync-1", NULL, &b);
	CHECK(a.status == 202 && same_answer(&a, &b),
	    "sync with a key, twice: one answer (%ld)", a.status);
	CHECK(h_sbx_stat("syncs_created") == n0 + 1, "finX saw one sync");
	h_resp_free(&a);
	h_resp_free(&b);
}

/* finxd rekey re-seals kept answers: they answer after the old token
 * key is gone. */
static void
test_rekey(void)
{
	char *k2 = h_token_key_new("k2");
	char *both = h_fmt("%s,%s", k2, h_token_key());
	const char *args[] = { "rekey", NULL };
	const char *p[] = { "replay-1", NULL };
	struct h_resp a, b;
	int f, rc;

	idem_post(f1, NULL, "/v1/links", "replay-1", LINK_BODY, &a);
	h_env_set("FINXD_TOKEN_KEYS", both);
	rc = h_finxd_run(args, 60);
	CHECK(rc == 0, "finxd rekey exits 0 (%d)", rc);
	CHECK(h_sql_true(db, "SELECT body LIKE 'v1:k2:%' FROM "
			     "idempotency_keys WHERE key = $1", p),
	    "rekey re-sealed the kept answer under the new key");
	h_env_set("FINXD_TOKEN_KEYS", k2);
	/* a row past 24 hours, for the new process's first claim to prune */
	h_sql_do(db, "UPDATE idempotency_keys SET created_at = now() - "
		     "interval '25 hours' WHERE key = 'per-key'", NULL);
	f = h_finxd_start();
	idem_post(f, NULL, "/v1/links", "replay-1", LINK_BODY, &b);
	CHECK(a.status == 201 && same_answer(&a, &b),
	    "with the new key alone: the kept answer again (%ld)", b.status);
	CHECK(key_rows("per-key") == 0, "rows past 24 hours are pruned");
	h_resp_free(&a);
	h_resp_free(&b);
	free(both);
	free(k2);
}

int
main(void)
{
	char keys[256];
	char *cid;

	h_init("it_idem", 240);
	db = h_setup(NULL);
	key2 = h_secret_new(40);
	snprintf(keys, sizeof(keys), "%s,%s:links", h_api_key(), key2);
	h_env_set("FINXD_API_KEYS", keys);
	f1 = h_finxd_start();
	f2 = h_finxd_start();
	cid = h_connect_retry(f1, "u-idem-conn");
	if (cid == NULL)
		h_bail("no connection to work with");

	test_key_format();
	test_replay();
	test_reused(cid);
	test_per_api_key();
	test_in_use();
	test_race();
	test_4xx_kept();
	test_5xx_frees();
	test_killed_claim();
	test_day_old();
	test_reauth(cid);
	test_sync(cid);
	test_rekey();
	free(cid);
	return h_done(test_done());
}
