/*
 * A rolling deploy across the newest migration (meson suite "deploy"):
 * the finxd built from the commit before the one that added it (HEAD
 * when it is not committed yet) keeps serving a whole flow and
 * refreshing correctly against the schema the new finxd migrated, while
 * a new finxd serves beside it on the same database.
 *
 * The old finxd is built here from `git archive` of that commit, in the
 * test's temp dir.  When the newest migration does not declare the old
 * binary's schema compatible, or the old binary predates the
 * declarations, a rolling deploy is impossible and the test fails saying
 * so (never a skip): that upgrade must stop every process first.
 * FINXD_DEPLOY_FROM=<rev> builds that commit instead (a deploy from an
 * older release, say).
 */
#include "it_common.h"

#include <sys/stat.h>

#include <dirent.h>
#include <stdarg.h>

#include "migrate.h"

static const char *db;
static char old_commit[48];
static int old_version; /* the old finxd's own schema version */

/* <tmpdir>/<name> of an h_run, its first line trimmed (malloc'd). */
static char *
first_line_of(const char *name)
{
	char *path = h_path(name), *s = NULL, *nl;
	FILE *f = fopen(path, "r");
	char line[512];

	if (f != NULL && fgets(line, sizeof(line), f) != NULL) {
		if ((nl = strchr(line, '\n')) != NULL)
			*nl = '\0';
		s = strdup(line);
	}
	if (f != NULL)
		fclose(f);
	free(path);
	return s ? s : strdup("");
}

/* The last lines of <tmpdir>/<name> to stdout as TAP comments. */
static void
show_tail(const char *name, int lines)
{
	char *path = h_path(name);
	char *cmd = h_fmt("tail -n %d '%s' | sed 's/^/# /'", lines, path);

	fflush(stdout);
	if (system(cmd) != 0)
		printf("# (no %s)\n", name);
	free(cmd);
	free(path);
}

/* Run argv; bail with its output's tail when it fails. */
static void
run_or_bail(const char *const *argv, const char *out, int timeout_s,
    const char *what)
{
	int rc = h_run(argv, out, timeout_s);

	if (rc != 0) {
		show_tail(out, 30);
		h_bail("%s failed (exit %d)", what, rc);
	}
}

/* Number of NNNN_*.sql files in dir. */
static int
count_migrations(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);

		if (l > 9 && strcmp(e->d_name + l - 4, ".sql") == 0 &&
		    e->d_name[4] == '_')
			n++;
	}
	closedir(d);
	return n;
}

/*
 * Which commit to build: the parent of the commit that added the newest
 * migration, or HEAD when that migration is not committed yet.  Along the
 * first parents, merges diffed against their first parent (-m): a
 * migration that came in with a merge was added by that merge.
 */
static void
find_old_commit(const char *src, const char *newest)
{
	char *path = h_fmt("db/migrations/%s", newest);
	const char *log[] = { "git", "-C", src, "log", "-m", "--first-parent",
		"--diff-filter=A", "--format=%H", "-1", "--", path, NULL };
	char *added, *rev;

	if (h_run(log, "git-log.out", 60) != 0) {
		show_tail("git-log.out", 10);
		h_bail("git log failed in %s: the deploy test needs the "
		       "repository's history (a git checkout)",
		    src);
	}
	added = first_line_of("git-log.out");
	if (getenv("FINXD_DEPLOY_FROM") != NULL)
		rev = strdup(getenv("FINXD_DEPLOY_FROM"));
	else
		rev = *added != '\0' ? h_fmt("%s^", added) : strdup("HEAD");
	{
		const char *parse[] = { "git", "-C", src, "rev-parse",
			"--verify", rev, NULL };

		run_or_bail(parse, "git-rev.out", 60, "git rev-parse");
	}
	free(rev);
	rev = first_line_of("git-rev.out");
	snprintf(old_commit, sizeof(old_commit), "%s", rev);
	printf("# newest migration %s: %s; building finxd of %s%s\n",
	    newest, *added != '\0' ? "added in a commit" : "not committed yet",
	    old_commit,
	    getenv("FINXD_DEPLOY_FROM") ? " (FINXD_DEPLOY_FROM)" : "");
	free(rev);
	free(added);
	free(path);
}

/*
 * The compatibility the newest migrations declare for the old binary
 * (read from their own files, as the new finxd embeds them).  Fails the
 * test with the reason when they forbid a rolling deploy.
 */
static void
check_declarations(void)
{
	struct migrate_applied a[256];
	const char *why = NULL;
	int i, blocker = 0, n = migrations_count;

	if (n > 256)
		h_bail("too many migrations");
	for (i = 0; i < n; i++) {
		a[i].version = migrations[i].version;
		a[i].compatible_from = migrate_compatible_from(migrations[i].sql,
		    migrations[i].version, &why);
	}
	if (old_version >= n)
		h_bail("the finxd of %.12s already has schema %d, the newest "
		       "(%d): nothing to deploy",
		    old_commit, old_version, n);
	if (migrate_judge(old_version, a, (size_t)n, &blocker) !=
	    MIGRATE_NEWER_COMPATIBLE)
		h_bail("migration %s declares compatible_from %d, so finxd of "
		       "schema %d (commit %.12s) cannot serve beside it: this "
		       "upgrade is a stop-all deploy (stop every process, "
		       "migrate, start them all; README, \"Upgrading and "
		       "rolling deploys\"), not a rolling one.  The deploy "
		       "test passes again once the newest migration declares "
		       "the previous schema compatible",
		    migrations[blocker - 1].name,
		    a[blocker - 1].compatible_from, old_version, old_commit);
	CHECK(1, "%s declares compatible_from %d: finxd of schema %d may "
		 "serve beside it",
	    migrations[n - 1].name, a[n - 1].compatible_from, old_version);
}

/* Build the old finxd into <tmpdir>; returns its path (malloc'd). */
static char *
build_old(const char *src)
{
	char *tar = h_path("old.tar"), *tree = h_path("old-src");
	char *bdir = h_path("old-build"), *mig;
	const char *archive[] = { "git", "-C", src, "archive", "--format=tar",
		"-o", tar, old_commit, NULL };
	const char *untar[] = { "tar", "-xf", tar, "-C", tree, NULL };
	const char *setup[] = { "meson", "setup", bdir, tree, NULL };
	const char *compile[] = { "meson", "compile", "-C", bdir, "finxd",
		NULL };
	long t = h_now_ms();

	run_or_bail(archive, "old-archive.out", 120, "git archive");
	if (mkdir(tree, 0755) != 0)
		h_bail("mkdir %s failed", tree);
	run_or_bail(untar, "old-untar.out", 120, "tar -x");
	mig = h_fmt("%s/db/migrations", tree);
	old_version = count_migrations(mig);
	free(mig);
	if (old_version < 1)
		h_bail("no migrations in the tree of %s", old_commit);
	check_declarations();
	run_or_bail(setup, "old-setup.out", 180, "meson setup of the old tree");
	run_or_bail(compile, "old-compile.out", 600,
	    "meson compile of the old finxd");
	printf("# built the finxd of %.12s (schema %d) in %ld s\n",
	    old_commit, old_version, (h_now_ms() - t) / 1000);
	free(tar);
	free(tree);
	{
		char *exe = h_fmt("%s/server/finxd", bdir);

		free(bdir);
		return exe;
	}
}

/* ---- checks on one finxd instance ---------------------------------- */

/* GET .../token on f: true when 200 and the token works at finX. */
static bool
token_ok(int f, const char *cid)
{
	char *tok = NULL;
	bool ok = h_token_get(f, cid, &tok, NULL) == 200 && h_token_works(tok);

	free(tok);
	return ok;
}

static long
refresh(int f, const char *cid)
{
	char *code = NULL;
	long st = h_conn_post(f, cid, "refresh", &code);

	if (st != 200)
		printf("# refresh answered %ld (%s)\n", st, code ? code : "-");
	free(code);
	return st;
}

/* The user's grant at finX is still the one and only, and active. */
static bool
grant_active(const char *user)
{
	return h_sbx_grants(user, "active") == 1 &&
	    h_sbx_grants(user, "revoked") == 0;
}

/*
 * A whole flow on f: link, widget approve, callback, the connection, a
 * token that works at finX, two refreshes in a row, the grant intact.
 * Returns the connection id (malloc'd) or NULL.
 */
static char *
whole_flow(int f, const char *who, const char *user)
{
	char *cid = h_connect(f, user);

	CHECK(cid != NULL, "%s: link, widget approve and callback connect %s",
	    who, user);
	if (cid == NULL)
		return NULL;
	CHECK(h_conn_status_is(f, cid, "active"),
	    "%s: GET the connection: active", who);
	CHECK(token_ok(f, cid), "%s: GET .../token: a token that works at finX",
	    who);
	CHECK(refresh(f, cid) == 200 && refresh(f, cid) == 200,
	    "%s: POST .../refresh twice in a row: 200, 200", who);
	CHECK(token_ok(f, cid), "%s: the refreshed token works at finX", who);
	CHECK(grant_active(user), "%s: the grant at finX is intact (one, "
				  "active)",
	    who);
	return cid;
}

/* ---- the deploy ------------------------------------------------------ */

int
main(void)
{
	const char *migrate[] = { "migrate", NULL };
	const char *src = getenv("FINXD_SOURCE_ROOT");
	const char *newest;
	char *old_exe, *out, *msg = NULL, *v, *a, *b, *c;
	long st;
	int o, n, rc;

	h_init("it_deploy", 840);
	if (src == NULL)
		h_bail("FINXD_SOURCE_ROOT is not set (run through meson test)");
	if (migrations_count < 1)
		h_bail("no migrations embedded");
	newest = migrations[migrations_count - 1].name;
	find_old_commit(src, newest);
	old_exe = build_old(src);

	db = h_pg_start();
	h_sandbox_start(NULL);
	h_env_defaults(db);

	/* before the deploy: the old finxd on its own schema */
	rc = h_finxd_run_exe(old_exe, migrate, 60);
	CHECK(rc == 0, "the old finxd migrates an empty database (exit %d)",
	    rc);
	o = h_finxd_start_exe(old_exe, true);
	a = h_connect(o, "deploy-a");
	CHECK(a != NULL, "old finxd: a connection made before the deploy");

	/* expand: the new finxd migrates while the old one serves */
	rc = h_finxd_run(migrate, 120);
	out = h_finxd_output();
	CHECK(rc == 0 && strstr(out, newest) != NULL,
	    "the new finxd applies %s beside the running old one (exit %d)",
	    newest, rc);
	free(out);
	v = h_sql_value(db, "SELECT max(version) FROM schema_migrations",
	    NULL);
	CHECK(v != NULL && h_long(v, 0) == migrations_count,
	    "the schema is at version %d (%s)", migrations_count,
	    v ? v : "none");
	free(v);

	st = h_finxd_wait_status(o, "/readyz", 200, 10000)
	    ? 200
	    : h_readyz(o, NULL, &msg);
	if (st != 200) {
		h_bail("the finxd of %.12s (schema %d) does not serve schema %d "
		       "although it is declared compatible: its /readyz "
		       "answers %ld (%s).  It predates the compatible_from "
		       "declarations, so this migration cannot roll out "
		       "beside it: commit the mechanism before a migration "
		       "that relies on it",
		    old_commit, old_version, migrations_count, st,
		    msg ? msg : "no message");
	}
	CHECK(st == 200, "old finxd: /readyz 200 against the newer compatible "
			 "schema");
	rc = h_finxd_run_exe(old_exe, migrate, 60);
	out = h_finxd_output();
	CHECK(rc == 0 && strstr(out, "declared compatible") != NULL,
	    "old finxd migrate against it: a no-op saying the schema is "
	    "newer but compatible (exit %d)",
	    rc);
	free(out);

	/* both serve side by side on the same database */
	n = h_finxd_start();
	CHECK(h_readyz(n, NULL, NULL) == 200 && h_readyz(o, NULL, NULL) == 200,
	    "new and old finxd: /readyz 200 side by side");
	b = whole_flow(o, "old finxd", "deploy-b");
	c = whole_flow(n, "new finxd", "deploy-c");

	/* the same connections through either binary */
	if (a != NULL) {
		CHECK(refresh(n, a) == 200 && refresh(o, a) == 200 &&
			refresh(n, a) == 200,
		    "a connection from before the deploy refreshes on new, "
		    "old, new");
		CHECK(token_ok(o, a) && token_ok(n, a) && grant_active("deploy-a"),
		    "... its token works from both, the grant intact");
	}
	if (b != NULL && c != NULL)
		CHECK(refresh(n, b) == 200 && refresh(o, c) == 200 &&
			token_ok(o, b) && token_ok(n, c) &&
			grant_active("deploy-b") && grant_active("deploy-c"),
		    "each binary refreshes the other's connection, grants "
		    "intact");
	CHECK(!h_log_contains("\"database statement failed\""),
	    "no SQL statement of either binary failed against the schema");
	free(a);
	free(b);
	free(c);
	free(old_exe);
	check_clean_shutdown();
	return h_done(test_done());
}
