/*
 * Key rotation end to end: tokens sealed with k1, finxd restarted with
 * FINXD_TOKEN_KEYS=k2,k1, `finxd rekey` run while that finxd serves, every
 * stored value then under k2, the token still readable after k1 is gone,
 * a plain-text row from an older version read and then sealed by rekey, a
 * plain-text row planted after that refused (FINXD_ALLOW_PLAINTEXT_TOKENS
 * auto, off and on), and a ciphertext copied to another row refusing to
 * decrypt there.
 */
#include "it_common.h"

#include <unistd.h>

static const char *db;

/* A count query whose $1 is the LIKE pattern of values sealed under kid. */
static long
count_kid(const char *query, const char *kid)
{
	char *like = h_fmt("v1:%s:%%", kid);
	long n = h_sql_long(db, query, (const char *[]){ like, NULL });

	free(like);
	return n;
}

/* Stored values not sealed under key id kid (rows with a value). */
static long
not_under(const char *kid)
{
	return count_kid("SELECT (SELECT count(*) FROM connections WHERE "
	                 "access_token NOT LIKE $1 OR refresh_token NOT LIKE "
	                 "$1) + (SELECT count(*) FROM links WHERE location NOT "
	                 "LIKE $1) + (SELECT count(*) FROM revocations WHERE "
	                 "token NOT LIKE $1)",
	    kid);
}

static long
sealed_under(const char *kid)
{
	return count_kid("SELECT (SELECT count(*) FROM connections WHERE "
	                 "access_token LIKE $1) + (SELECT count(*) FROM "
	                 "connections WHERE refresh_token LIKE $1) + (SELECT "
	                 "count(*) FROM links WHERE location LIKE $1)",
	    kid);
}

/* GET .../token on f hands out want. */
static bool
token_is(int f, const char *cid, const char *want)
{
	char *t = NULL;
	bool same;

	h_token_get(f, cid, &t, NULL);
	same = h_streq(t, want);
	free(t);
	return same;
}

static int
rekey(const char *what)
{
	const char *args[] = { "rekey", NULL };
	char *out;
	int rc = h_finxd_run(args, 60);

	out = h_finxd_output();
	CHECK(rc == 0, "%s: finxd rekey exits 0 (got %d)", what, rc);
	CHECK(strstr(out, "re-encrypted") != NULL, "%s: rekey reports a count",
	    what);
	CHECK(h_leaks(out, strlen(out)) == 0, "%s: rekey prints no secret",
	    what);
	printf("# %s: %.*s\n", what, (int)strcspn(out, "\n"), out);
	free(out);
	return rc;
}

static void
set_plain(const char *cid, const char *tok)
{
	const char *p[] = { cid, tok, NULL };
	PGresult *res = h_sql(db,
	    "UPDATE connections SET access_token = $2 WHERE id = $1", p);

	CHECK(res != NULL && strcmp(PQcmdTuples(res), "1") == 0,
	    "access token written back in plain text");
	PQclear(res);
}

/* A plain-text access token planted on cid2: never handed out (f). */
static const char planted[] = "planted-plain-token-0123456789";

struct refused_arg {
	int f;
	const char *cid;
};

/* GET .../token answers an error, and not the planted token. */
static bool
planted_refused(void *arg)
{
	struct refused_arg *a = arg;
	struct h_resp r;
	bool refused;

	h_conn_api(a->f, "GET", a->cid, "token", &r);
	refused = r.status >= 500 &&
	    memmem(r.body, r.body_len, planted, sizeof(planted) - 1) == NULL;
	h_resp_free(&r);
	return refused;
}

/* A rekey that must fail: the planted row is not sealed. */
static void
rekey_refuses(const char *what)
{
	const char *args[] = { "rekey", NULL };
	int rc = h_finxd_run(args, 60);
	char *out = h_finxd_output();

	CHECK(rc != 0, "%s: finxd rekey exits non-zero (got %d)", what, rc);
	CHECK(h_leaks(out, strlen(out)) == 0 &&
	        strstr(out, planted) == NULL,
	    "%s: rekey prints no secret", what);
	free(out);
	CHECK(not_under("k2") == 1, "%s: the planted row is left unsealed",
	    what);
}

/*
 * After rekey recorded every row sealed: a finxd that was serving then
 * (f_old, within a heartbeat), one started after (f) and a later rekey
 * all refuse a planted plain-text row; off refuses one before any rekey
 * (tested in main), on reads it and lets rekey seal it.
 */
static void
test_planted(int f_old, int f, const char *cid2)
{
	struct refused_arg a = { f_old, cid2 };
	int f_on;

	set_plain(cid2, planted);
	CHECK(h_wait_every(planted_refused, &a, 10000, 250),
	    "planted after rekey: the finxd serving during rekey refuses it");
	a.f = f;
	CHECK(planted_refused(&a),
	    "planted after rekey: a finxd started later refuses it");
	rekey_refuses("planted after rekey");
	h_env_set("FINXD_ALLOW_PLAINTEXT_TOKENS", "on");
	f_on = h_finxd_start();
	CHECK(token_is(f_on, cid2, planted),
	    "FINXD_ALLOW_PLAINTEXT_TOKENS=on: the plain-text row reads");
	rekey("FINXD_ALLOW_PLAINTEXT_TOKENS=on");
	CHECK(not_under("k2") == 0, "on: rekey sealed the plain-text row");
	h_env_set("FINXD_ALLOW_PLAINTEXT_TOKENS", NULL);
	CHECK(h_finxd_stop(f_on, SIGTERM) == 0, "finxd (on) stops cleanly");
}

/* Copy cid's sealed access token onto cid2's row: must not decrypt. */
static void
test_copied_ciphertext(int f, const char *cid, const char *cid2,
    const char *tok_of_cid)
{
	const char *p[] = { cid, cid2, NULL };
	struct h_resp r;
	PGresult *res;

	res = h_sql(db,
	    "UPDATE connections SET access_token = (SELECT access_token FROM "
	    "connections WHERE id = $1) WHERE id = $2",
	    p);
	CHECK(res != NULL && strcmp(PQcmdTuples(res), "1") == 0,
	    "ciphertext copied to another row");
	PQclear(res);
	h_conn_api(f, "GET", cid2, "token", &r);
	CHECK(r.status >= 500 && r.status < 600,
	    "copied ciphertext: GET token 5xx (got %ld, %s)", r.status,
	    h_err_code(&r) ? h_err_code(&r) : "-");
	CHECK(memmem(r.body, r.body_len, tok_of_cid, strlen(tok_of_cid)) ==
	        NULL,
	    "copied ciphertext: the other user's token is not handed out");
	h_resp_free(&r);
	CHECK(!h_log_contains(tok_of_cid), "copied ciphertext: not in the log");
}

int
main(void)
{
	char *k1, *k2, *both, *cid, *cid2, *t1;
	struct h_resp r;
	long st;
	bool same;
	int f, f_off, f_k2;

	h_init("it_rekey", 280);
	db = h_setup(NULL);
	k1 = strdup(h_token_key());
	k2 = h_token_key_new("k2");
	if (k1 == NULL || asprintf(&both, "%s,%s", k2, k1) < 0)
		h_bail("out of memory");

	/* 1. Connect under k1 alone. */
	f = h_finxd_start();
	cid = h_connect(f, "u-rekey");
	cid2 = h_connect(f, "u-rekey-2");
	if (cid == NULL || cid2 == NULL)
		h_bail("could not connect the test users");
	st = h_token_get(f, cid, &t1, NULL);
	CHECK(t1 != NULL, "k1: GET token 200 (got %ld)", st);
	CHECK(sealed_under("k1") >= 4 && not_under("k1") == 0,
	    "k1: every stored value is v1:k1:");

	/* 2. A plain-text row of an older version reads before any rekey
	 * (auto), but not with off. */
	set_plain(cid, t1);
	CHECK(not_under("k1") == 1, "one plain-text value in the table");
	same = token_is(f, cid, t1);
	CHECK(same, "before rekey (auto): a plain-text row still reads (%s)",
	    same ? "match" : "mismatch");
	h_env_set("FINXD_ALLOW_PLAINTEXT_TOKENS", "off");
	f_off = h_finxd_start();
	h_env_set("FINXD_ALLOW_PLAINTEXT_TOKENS", NULL);
	h_conn_api(f_off, "GET", cid, "token", &r);
	CHECK(r.status >= 500 &&
	        memmem(r.body, r.body_len, t1, strlen(t1)) == NULL,
	    "off: the plain-text row is refused before any rekey (got %ld)",
	    r.status);
	h_resp_free(&r);
	CHECK(h_finxd_stop(f_off, SIGTERM) == 0, "finxd (off) stops cleanly");
	CHECK(h_finxd_stop(f, SIGTERM) == 0, "finxd (k1) stops cleanly");

	/* 3. k2 first, k1 still readable; rekey while this finxd serves
	 * seals the plain-text row too. */
	h_env_set("FINXD_TOKEN_KEYS", both);
	f = h_finxd_start();
	same = token_is(f, cid, t1);
	CHECK(same, "k2,k1 before rekey: the token reads (%s)",
	    same ? "match" : "mismatch");
	rekey("k2,k1");
	CHECK(not_under("k2") == 0, "after rekey: every stored value is v1:k2:");
	CHECK(sealed_under("k1") == 0, "after rekey: nothing left under k1");
	same = token_is(f, cid, t1);
	CHECK(same, "after rekey: GET token is the sandbox's token (%s)",
	    same ? "match" : "mismatch");
	rekey("k2,k1 again (idempotent)");
	{
		char **issued;
		char *dump = h_db_dump(db);
		int n, i, found = 0;

		issued = h_sbx_issued(&n);
		for (i = 0; i < n; i++)
			if (strstr(dump, issued[i]) != NULL)
				found++;
		CHECK(found == 0, "no issued token in plain text in the "
		                  "database (%d of %d)",
		    found, n);
		h_strv_free(issued, n);
		free(dump);
	}

	/* 4. k1 removed from the configuration. */
	h_env_set("FINXD_TOKEN_KEYS", k2);
	f_k2 = h_finxd_start();
	same = token_is(f_k2, cid, t1);
	CHECK(same, "k2 only: the token still reads (%s)",
	    same ? "match" : "mismatch");

	/* 5. A plain-text row planted after rekey is refused. */
	test_planted(f, f_k2, cid2);
	CHECK(h_finxd_stop(f, SIGTERM) == 0, "finxd (k2,k1) stops cleanly");
	f = f_k2;

	/* 6. A ciphertext copied to another row does not decrypt there. */
	test_copied_ciphertext(f, cid, cid2, t1);

	{
		size_t len;
		char *log = h_log_read(&len);

		CHECK(h_leaks(log, len) == 0, "no secret in finxd's log");
		CHECK(memmem(log, len, k2 + 3, strlen(k2 + 3)) == NULL,
		    "the new key is not in the log");
		free(log);
	}
	check_clean_shutdown();
	free(t1);
	free(cid);
	free(cid2);
	free(k1);
	free(k2);
	free(both);
	return h_done(test_done());
}
