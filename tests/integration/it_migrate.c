/*
 * finxd's command line against a real database: migrate is idempotent,
 * serve waits on an unmigrated database (503 until migrated) and refuses
 * a missing token key, a newer schema is served only when declared
 * compatible, and check-config reports every problem at once without
 * showing secrets.
 */
#include "it_common.h"

#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Lines of out that mention word (case-insensitive). */
static int
lines_with(const char *out, const char *word)
{
	const char *p = out;
	int n = 0;

	while (*p != '\0') {
		const char *e = p + strcspn(p, "\n");
		size_t wl = strlen(word);
		const char *q;

		for (q = p; q + wl <= e; q++) {
			if (strncasecmp(q, word, wl) == 0) {
				n++;
				break;
			}
		}
		p = *e ? e + 1 : e;
	}
	return n;
}

/* Lines of out that name at least one of the three broken keys. */
static int
lines_with_any(const char *out)
{
	static const char *const words[] = { "client_id", "token_keys",
		"token_format" };
	const char *p = out;
	int n = 0;

	while (*p != '\0') {
		const char *e = p + strcspn(p, "\n");
		char *line = strndup(p, (size_t)(e - p));
		size_t i;

		for (i = 0; line != NULL && i < 3; i++) {
			if (lines_with(line, words[i]) > 0) {
				n++;
				break;
			}
		}
		free(line);
		p = *e ? e + 1 : e;
	}
	return n;
}

static void
test_migrate(const char *db)
{
	const char *migrate[] = { "migrate", NULL };
	char *v;
	int rc;

	rc = h_finxd_run(migrate, 60);
	CHECK(rc == 0, "migrate on an empty database exits 0 (got %d)", rc);
	v = h_sql_value(db,
	    "SELECT count(*) FROM information_schema.tables "
	    "WHERE table_schema = 'public' AND table_name = 'connections'",
	    NULL);
	CHECK(v != NULL && strcmp(v, "1") == 0,
	    "migrate created table connections");
	free(v);
	v = h_sql_value(db,
	    "SELECT data_type FROM information_schema.columns "
	    "WHERE table_name = 'connections' AND column_name = "
	    "'refresh_token'",
	    NULL);
	CHECK(v != NULL && strcmp(v, "text") == 0,
	    "connections.refresh_token is text (got %s)", v ? v : "none");
	free(v);
	rc = h_finxd_run(migrate, 60);
	CHECK(rc == 0, "migrate again exits 0 (got %d)", rc);
}

/*
 * serve against an unmigrated database does not exit (a supervisor would
 * give up on it): it listens, /readyz says 503 and why, the log says to
 * migrate, and once `finxd migrate` ran it serves without a restart.
 */
static void
test_serve_unmigrated(void)
{
	const char *migrate[] = { "migrate", NULL };
	char *empty = h_pg_create_db("empty");
	char *code, *msg, *log;
	size_t len;
	long st, end;
	int f, rc;

	h_env_set("FINXD_DATABASE_URL", empty);
	f = h_finxd_start_listening();
	/* "starting" until its first look at the database is done */
	for (end = h_now_ms() + 10000;; h_sleep_ms(100)) {
		st = h_readyz(f, &code, &msg);
		if (!(code && strcmp(code, "starting") == 0) ||
		    h_now_ms() > end)
			break;
		free(code);
		free(msg);
	}
	CHECK(st == 503 && code && strcmp(code, "schema_not_current") == 0,
	    "serve on an unmigrated database: /readyz 503 schema_not_current "
	    "(%ld %s)",
	    st, code ? code : "-");
	CHECK(msg && lines_with(msg, "finxd migrate") > 0,
	    "... saying to run finxd migrate (%s)", msg ? msg : "-");
	free(code);
	free(msg);
	h_sleep_ms(800);
	CHECK(h_log_contains("not serving yet, retrying") &&
		h_log_contains("run `finxd migrate`"),
	    "the log says it waits for a migration");
	rc = h_finxd_run(migrate, 60);
	CHECK(rc == 0, "migrate meanwhile exits 0 (got %d)", rc);
	CHECK(h_finxd_wait_status(f, "/readyz", 200, 40000),
	    "then /readyz turns 200 without restarting serve");
	log = h_log_read(&len);
	CHECK(h_leaks(log, len) == 0, "the log holds no secret");
	free(log);
	CHECK(h_finxd_stop(f, SIGTERM) == 0, "SIGTERM: exit 0");
	h_env_set("FINXD_DATABASE_URL", NULL);
	free(empty);
}

/*
 * A schema newer than this finxd: servable when every newer migration
 * declares this version compatible, refused otherwise (also by migrate),
 * and an unrecorded compatible_from counts as the migration's own version.
 */
static void
test_newer_schema(const char *db)
{
	const char *migrate[] = { "migrate", NULL };
	char *own = h_sql_value(db, "SELECT max(version) FROM schema_migrations",
	    NULL);
	char next[24], ownv[24], *code, *msg, *out;
	long st;
	int f, rc;

	snprintf(ownv, sizeof(ownv), "%s", own ? own : "0");
	snprintf(next, sizeof(next), "%ld", h_long(own, 0) + 1);
	free(own);
	h_env_set("FINXD_DATABASE_URL", db);
	f = h_finxd_start();
	CHECK(h_finxd_wait_status(f, "/readyz", 200, 20000),
	    "schema %s: /readyz 200", ownv);

	PQclear(h_sql(db, "INSERT INTO schema_migrations (version, name, "
			  "compatible_from) VALUES ($1, 'future.sql', $2)",
	    (const char *[]){ next, ownv, NULL }));
	st = h_readyz(f, &code, &msg);
	CHECK(st == 200, "schema %s declared compatible_from %s: /readyz 200 "
			 "(%ld %s)",
	    next, ownv, st, msg ? msg : "");
	free(code);
	free(msg);
	rc = h_finxd_run(migrate, 60);
	out = h_finxd_output();
	CHECK(rc == 0 && lines_with(out, "declared compatible") > 0,
	    "migrate against it: exit 0, a no-op saying the schema is newer "
	    "but compatible (%d)",
	    rc);
	free(out);

	PQclear(h_sql(db, "UPDATE schema_migrations SET compatible_from = $1 "
			  "WHERE version = $1",
	    (const char *[]){ next, NULL }));
	st = h_readyz(f, &code, &msg);
	CHECK(st == 503 && code && strcmp(code, "schema_not_current") == 0 &&
		msg && lines_with(msg, "newer") > 0,
	    "compatible_from %s: /readyz 503, newer (%s)", next,
	    msg ? msg : "-");
	free(code);
	free(msg);
	rc = h_finxd_run(migrate, 60);
	out = h_finxd_output();
	CHECK(rc == 1 && lines_with(out, "newer than this finxd") > 0,
	    "migrate against it fails and says why (%d)", rc);
	free(out);

	PQclear(h_sql(db, "UPDATE schema_migrations SET compatible_from = NULL "
			  "WHERE version = $1",
	    (const char *[]){ next, NULL }));
	st = h_readyz(f, &code, &msg);
	CHECK(st == 503, "compatible_from not recorded: /readyz 503 (%ld)", st);
	free(code);
	free(msg);

	PQclear(h_sql(db, "DELETE FROM schema_migrations WHERE version = $1",
	    (const char *[]){ next, NULL }));
	CHECK(h_finxd_wait_status(f, "/readyz", 200, 5000),
	    "row removed: /readyz 200 again");
	CHECK(h_finxd_stop(f, SIGTERM) == 0, "SIGTERM: exit 0");
}

static void
test_serve_no_token_key(const char *db)
{
	const char *serve[] = { "serve", NULL };
	int rc;

	h_env_set("FINXD_DATABASE_URL", db);
	h_env_set("FINXD_TOKEN_KEYS", NULL);
	rc = h_finxd_run(serve, 20);
	CHECK(rc > 0, "serve without FINXD_TOKEN_KEYS exits non-zero (got %d)",
	    rc);
	h_env_set("FINXD_TOKEN_KEYS", h_token_key());
}

static void
test_check_config(void)
{
	const char *cc[] = { "check-config", NULL };
	char *out;
	int rc;

	rc = h_finxd_run(cc, 20);
	out = h_finxd_output();
	CHECK(rc == 0,
	    "check-config with a good configuration exits 0 "
	    "(got %d)",
	    rc);
	CHECK(strlen(out) > 0,
	    "check-config prints the configuration "
	    "(%zu bytes)",
	    strlen(out));
	CHECK(lines_with(out, "client_id") > 0, "it shows the client id key");
	CHECK(strstr(out, h_client_secret()) == NULL, "client secret masked");
	CHECK(strstr(out, h_api_key()) == NULL, "API key masked");
	CHECK(strstr(out, h_token_key() + 3) == NULL, "token key masked");
	free(out);

	/* three problems at once: two missing values and a bad one */
	h_env_set("FINXD_FINX_CLIENT_ID", NULL);
	h_env_set("FINXD_TOKEN_KEYS", NULL);
	h_env_set("FINXD_FINX_TOKEN_FORMAT", "xml");
	rc = h_finxd_run(cc, 20);
	out = h_finxd_output();
	CHECK(rc > 0, "check-config with problems exits non-zero (got %d)", rc);
	CHECK(lines_with(out, "client_id") >= 1, "missing client id reported");
	CHECK(lines_with(out, "token_keys") >= 1,
	    "missing token keys reported");
	CHECK(lines_with(out, "token_format") >= 1,
	    "bad token format reported");
	CHECK(lines_with_any(out) >= 3,
	    "one line per problem (%d lines "
	    "name one)",
	    lines_with_any(out));
	CHECK(strstr(out, h_client_secret()) == NULL,
	    "no client secret in the error output");
	free(out);
	h_env_set("FINXD_FINX_CLIENT_ID", "test-client");
	h_env_set("FINXD_TOKEN_KEYS", h_token_key());
	h_env_set("FINXD_FINX_TOKEN_FORMAT", NULL);

	/* a token key that is not 32 bytes of base64 */
	h_env_set("FINXD_TOKEN_KEYS", "k1:c2hvcnQ=");
	rc = h_finxd_run(cc, 20);
	CHECK(rc > 0, "check-config refuses a short token key (got %d)", rc);
	h_env_set("FINXD_TOKEN_KEYS", h_token_key());
}

static void
test_serve_ready(void)
{
	int f = h_finxd_start();
	long st = h_finxd_get(f, "/readyz", NULL);

	CHECK(st == 200,
	    "serve on a migrated database: /readyz 200 "
	    "(got %ld)",
	    st);
	CHECK(h_finxd_stop(f, SIGTERM) == 0,
	    "SIGTERM stops finxd with "
	    "exit 0");
}

int
main(void)
{
	const char *db;

	h_init("it_migrate", 170);
	db = h_pg_start();
	h_sandbox_start(NULL);
	h_env_defaults(db);

	test_migrate(db);
	test_check_config();
	test_serve_unmigrated();
	test_newer_schema(db);
	test_serve_no_token_key(db);
	test_serve_ready();
	check_clean_shutdown();
	return h_done(test_done());
}
