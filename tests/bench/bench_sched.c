/*
 * Claim cost against a backlog (issue 11, item 6).  Every background
 * worker of every finxd process runs a claim statement on every wake; a
 * claim whose cost grows with the rows that are due-but-not-claimable (in
 * backoff, or whose connection is gone) makes a finX outage, which puts
 * every connection in backoff, cost a table scan per wake per worker.
 *
 * This bench seeds two databases of the real schema (`finxd migrate`),
 * first with BENCH_N_SMALL (10,000) active connections, then grows the
 * same tables to BENCH_N (1,000,000), and measures each claim at both
 * sizes:
 *
 *   refresh-old  the background refresh claim of main (refresh_one)
 *   old-seqscan  the same with index scans off: the plan the issue saw
 *   refresh-new  refresh_claim_sql (server/store_lease.c, next_due_at)
 *   pulls-old    data.c pull_one on main (status filtered in the join)
 *   pulls        pull_claim_sql (server/data.c: no status filter; a row
 *                of a connection that is not active is parked)
 *   revocations  refresh.c revoke_one (background form)
 *   syncs        sync.c sync_poll_one
 *
 * (refresh_claim_sql and pull_claim_sql are linked from the server; the
 * others are copies of its text: keep them in step.)
 *
 * Data: every active connection is due (refresh_due_at in the past), has
 * dummy non-secret token text and one pulls row; 1 in 20 extra connections
 * are revoked, keep their pulls row with its next_pull_at stuck in the
 * past (as DELETE /v1/connections leaves it today) and have two pending
 * revocations; one sync per 10 connections, half of them open.  Mixes:
 *
 *   steady   database "steady": 10% of the connections, pulls,
 *            revocations and open syncs in backoff (due time in the
 *            future), interleaved at random with the claimable ones.
 *   outage   database "outage": what a finX outage looks like.  99% are
 *            due but in backoff; the claimable 1% are the connections that
 *            came due in the last minute (not yet tried: the ones in
 *            backoff came due earlier and failed), so in refresh_due_at
 *            order every backoff row comes first.  Pulls, revocations and
 *            open syncs: 99% in backoff.
 *   drained  the outage database once the workers have taken the
 *            claimable 1%: nothing is claimable, the state between the
 *            wakes of a whole outage, where a claim is pure overhead.
 *
 * Backoff ends 10 to 25 minutes after seeding (the 15-minute cap,
 * jittered), so nothing leaves backoff while the bench runs.  Both
 * databases are seeded concurrently (two cores) with set-based INSERT ...
 * SELECT FROM generate_series, then VACUUM ANALYZE; around the growth to
 * 1M the secondary indexes are dropped and rebuilt from their own
 * definitions (seeding 400,000 took 9 s so against 20 s without), and the
 * new connections go in in id order (random uuids, as finxd makes them),
 * which spares the primary key a million random inserts (30 s -> 19 s).
 *
 * Figure: PostgreSQL's own "Execution Time" of EXPLAIN (ANALYZE, BUFFERS,
 * TIMING OFF, FORMAT JSON) of the claim with the server's parameters,
 * each run in BEGIN ... ROLLBACK (the claim's locks and, for the UPDATE,
 * its write are rolled back), after 2 warm-up runs.  Planning time is
 * reported beside it.  TIMING OFF leaves out per-node clock reads, which
 * would inflate a scan of a million rows.  Up to BENCH_REPS (200) runs or
 * BENCH_CASE_S (5) seconds per case, at least 10; p99 is nearest-rank (the
 * maximum when fewer than 100 runs).
 *
 * Output: a "# " detail line per case (with the plan tree, the buffers
 * touched and the rows the scans looked at), a RESULT line per
 * (statement, mix, size) and a VERDICT line per claim: flat when its 1M
 * median is at most 3x its 10k median and under 1 ms in every mix.
 * Last, "pulls-parked": the pulls claim once the pulls rows of connections
 * that are not active have been parked at 'infinity' (what pull_one does
 * to each such row it meets, applied as data).  Exit 0 unless a statement failed (the figures are
 * reported, not enforced).  Knobs: BENCH_N_SMALL, BENCH_N, BENCH_REPS,
 * BENCH_CASE_S, BENCH_TIMEOUT_S (330, the alarm).
 */
#include "harness.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "store_lease.h"

/* refresh_one on main, the baseline. */
static const char old_refresh_sql[] =
    "SELECT id, refresh_token FROM connections WHERE status = 'active' AND "
    "refresh_token IS NOT NULL AND refresh_due_at <= now() AND "
    "(next_attempt_at IS NULL OR next_attempt_at <= now()) ORDER BY "
    "refresh_due_at LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED";
/* data.c pull_one on main ($1 PULLS_PER_DAY), the baseline. */
static const char old_pulls_sql[] =
    "SELECT p.connection_id, c.user_id, p.attended, "
    "cardinality(array(SELECT t FROM unnest(p.recent) t WHERE t > "
    "now() - interval '24 hours')) >= $1::int FROM pulls p JOIN "
    "connections c ON c.id = p.connection_id WHERE p.next_pull_at <= "
    "now() AND c.status = 'active' ORDER BY p.next_pull_at LIMIT 1 "
    "FOR UPDATE OF p SKIP LOCKED";
/* refresh.c revoke_one, background form (no connection_id). */
static const char revocations_sql[] =
    "SELECT id, token, attempts + 1, kind FROM revocations WHERE "
    "next_attempt_at <= now() ORDER BY next_attempt_at LIMIT 1 "
    "FOR UPDATE SKIP LOCKED";
/* sync.c sync_poll_one (SYNC_OPEN expanded). */
static const char syncs_sql[] =
    "SELECT id, connection_id, access_id, finx_sync_id FROM syncs "
    "WHERE status NOT IN ('COMPLETED', 'FAILED', 'ERROR', 'CANCELLED') "
    "AND next_poll_at <= now() ORDER BY next_poll_at LIMIT 1 FOR UPDATE "
    "SKIP LOCKED";

enum { S_OLD, S_OLDSEQ, S_NEW, S_PULLS_OLD, S_PULLS, S_REVOKE, S_SYNCS,
	S_FIX, NSTMT };
static const char *const stmt_name[NSTMT] = { "refresh-old", "old-seqscan",
	"refresh-new", "pulls-old", "pulls", "revocations", "syncs",
	"pulls-parked" };

enum { M_STEADY, M_OUTAGE, M_DRAINED, NMIX };
static const char *const mix_name[NMIX] = { "steady", "outage",
	"drained" };

struct db {
	const char *name;
	char *conninfo;
	PGconn *c;   /* measurements */
	char *proc;  /* finxd_processes.id used as $1 */
	double bo;   /* share in backoff */
	bool newest; /* claimable connections are the newest due */
	/* seeding thread */
	long lo, hi;
	char err[256], steps[200];
	long ms;
};

struct result {
	bool done, failed;
	int n;
	double med, p99, plan_med;
	long bufs, visited, returned;
	bool plan_changed;
	char plan[400], kind[200];
};

/* [stmt][mix][size 0 = small, 1 = large] */
static struct result res[NSTMT][NMIX][2];
/* runs per case at least, however slow (a claim of seconds at 1M) */
#define REPS_MIN 10
static long sizes[2];
static long reps_max, case_ms;
static int failures;

static PGconn *
bench_connect(const char *conninfo)
{
	PGconn *c = PQconnectdb(conninfo);

	if (PQstatus(c) != CONNECTION_OK)
		h_bail("cannot connect to PostgreSQL: %.*s",
		    (int)strcspn(PQerrorMessage(c), "\n"), PQerrorMessage(c));
	return c;
}

/* Run sql on c; on error copy the message's first line to err and
 * return false. */
static bool
run_sql(PGconn *c, const char *sql, char *err, size_t errsz)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;

	if (!ok)
		snprintf(err, errsz, "%.*s",
		    (int)strcspn(PQerrorMessage(c), "\n"), PQerrorMessage(c));
	PQclear(r);
	return ok;
}

/*
 * The statements that add active connections g = lo..hi (with their pulls
 * and syncs) and lo/20..hi/20 revoked ones (with their pulls and
 * revocations) in d's mix.  Set-based: one INSERT ... SELECT per kind.
 */
static char *
seed_active_sql(const struct db *d)
{
	/* claimable: due at random over the last 6 h (steady, interleaved
	 * with the backoff rows) or in the last minute (outage: newest) */
	const char *due_ok = d->newest
	    ? "now() - interval '1 second' - r1 * interval '59 seconds'"
	    : "now() - interval '60 seconds' - r1 * interval '6 hours'";

	return h_fmt(
	    "WITH s AS (SELECT gen_random_uuid() AS id, g, random() < %g AS b, "
	    "random() AS r1, random() AS r2 FROM generate_series(%ld, %ld) g "
	    "ORDER BY 1 OFFSET 0), "
	    "c AS (INSERT INTO connections (id, user_id, status, scope, "
	    "access_token, refresh_token, access_expires_at, "
	    "refresh_obtained_at, refresh_expires_at, consent_expires_at, "
	    "access_lifetime_s, last_refresh_at, refresh_due_at, "
	    "next_attempt_at, consecutive_failures, last_error, connected_at, "
	    "created_at, updated_at) "
	    "SELECT id, 'bench-' || g, 'active', 'accounts', "
	    "'bench-dummy-access', 'bench-dummy-refresh', now() - interval "
	    "'1 hour', now() - interval '10 days', now() + interval '80 days', "
	    "now() + interval '80 days', 300, now() - interval '10 days', "
	    "CASE WHEN b THEN now() - interval '60 seconds' - r1 * interval "
	    "'6 hours' ELSE %s END, "
	    "CASE WHEN b THEN now() + interval '10 minutes' + r2 * interval "
	    "'15 minutes' END, CASE WHEN b THEN 8 ELSE 0 END, "
	    "CASE WHEN b THEN 'bench: finX unavailable' END, now() - interval "
	    "'30 days', now() - interval '30 days', now() FROM s "
	    "RETURNING id), "
	    "cs AS (SELECT id, random() AS r1, random() AS r2, random() AS r3, "
	    "random() AS r4 FROM c OFFSET 0), "
	    "p AS (INSERT INTO pulls (connection_id, next_pull_at, "
	    "last_pull_at) SELECT id, CASE WHEN r1 < %g THEN now() + "
	    "interval '10 minutes' + r2 * interval '6 hours' ELSE now() - "
	    "r2 * interval '6 hours' END, now() - interval '6 hours' FROM cs) "
	    "INSERT INTO syncs (id, connection_id, access_id, finx_sync_id, "
	    "status, next_poll_at, created_at) SELECT gen_random_uuid(), id, "
	    "'bench-access', 'bench-sync', CASE WHEN r3 < 0.5 THEN "
	    "'COMPLETED' ELSE 'RUNNING' END, CASE WHEN random() < %g THEN "
	    "now() + interval '10 minutes' + r4 * interval '15 minutes' ELSE "
	    "now() - r4 * interval '1 hour' END, now() - interval '1 hour' "
	    "FROM cs WHERE r3 < 0.05 OR (r3 >= 0.5 AND r3 < 0.55)",
	    d->bo, d->lo, d->hi, due_ok, d->bo, d->bo);
}

static char *
seed_revoked_sql(const struct db *d)
{
	/* revoked 6 h to 30 days ago: their pulls rows stay where they
	 * were, older than every live one */
	return h_fmt(
	    "WITH c AS (INSERT INTO connections (id, user_id, status, "
	    "status_reason, scope, refresh_due_at, revoked_at, connected_at, "
	    "created_at, updated_at) SELECT gen_random_uuid(), "
	    "'bench-revoked-' || g, 'revoked', 'deleted', 'accounts', now() - "
	    "interval '30 days', t, t - interval '30 days', t - interval "
	    "'30 days', t FROM (SELECT g, now() - interval '6 hours' - "
	    "random() * interval '30 days' AS t FROM generate_series(%ld, %ld) "
	    "g OFFSET 0) s RETURNING id, revoked_at), "
	    "p AS (INSERT INTO pulls (connection_id, next_pull_at, "
	    "last_pull_at) SELECT id, revoked_at - random() * interval "
	    "'6 hours', revoked_at - interval '6 hours' FROM c) "
	    "INSERT INTO revocations (id, connection_id, kind, token, "
	    "attempts, next_attempt_at, last_error, created_at) SELECT "
	    "gen_random_uuid(), c.id, k, 'bench-dummy-revocation', 3, CASE "
	    "WHEN random() < %g THEN now() + interval '10 minutes' + random() "
	    "* interval '15 minutes' ELSE now() - random() * interval "
	    "'1 hour' END, 'bench: finX unavailable', c.revoked_at FROM c "
	    "CROSS JOIN (VALUES ('refresh'), ('access')) v(k)",
	    d->lo / 20 + 1, d->hi / 20, d->bo);
}

/*
 * Around a bulk insert: the secondary (non-unique) indexes of the seeded
 * tables are dropped and made again from their own definitions, which is
 * faster than a million random inserts into each.
 */
static const char drop_idx_sql[] =
    "CREATE TEMP TABLE bench_idx AS SELECT i.indexrelid::regclass::text "
    "AS name, pg_get_indexdef(i.indexrelid) AS def FROM pg_index i JOIN "
    "pg_class t ON t.oid = i.indrelid WHERE t.relnamespace = "
    "'public'::regnamespace AND t.relname IN ('connections', 'pulls', "
    "'revocations', 'syncs') AND NOT i.indisprimary AND NOT i.indisunique; "
    "DO $$DECLARE r record; BEGIN FOR r IN SELECT name FROM bench_idx LOOP "
    "EXECUTE 'DROP INDEX ' || r.name; END LOOP; END$$";
static const char create_idx_sql[] =
    "DO $$DECLARE r record; BEGIN FOR r IN SELECT def FROM bench_idx LOOP "
    "EXECUTE r.def; END LOOP; END$$; DROP TABLE bench_idx";

static void *
seed_thread(void *arg)
{
	struct db *d = arg;
	PGconn *c = bench_connect(d->conninfo);
	long t0 = h_now_ms();
	char *a = seed_active_sql(d), *r = seed_revoked_sql(d);
	/* Superuser: skip the FK triggers (the rows are consistent by
	 * construction) and the notify trigger; bulk-friendly memory. */
	const char *const steps[] = { "SET session_replication_role = replica",
		"SET maintenance_work_mem = '256MB'", "SET work_mem = '64MB'",
		"SELECT setseed(0.42)", "drop", a, r, "create",
		"VACUUM ANALYZE", NULL };
	static const char *const step_name[] = { "drop indexes", "active",
		"revoked", "rebuild indexes", "vacuum analyze" };
	bool reindex = d->hi - d->lo >= 100000;
	long t1;
	size_t len = 0;
	int i;

	d->steps[0] = '\0';

	for (i = 0; steps[i] != NULL; i++) {
		const char *q = steps[i];

		if (strcmp(q, "drop") == 0)
			q = reindex ? drop_idx_sql : NULL;
		else if (strcmp(q, "create") == 0)
			q = reindex ? create_idx_sql : NULL;
		if (q == NULL)
			continue;
		t1 = h_now_ms();
		if (!run_sql(c, q, d->err, sizeof(d->err)))
			break;
		if (i >= 4)
			len += (size_t)snprintf(d->steps + len,
			    sizeof(d->steps) - len, "%s%s %.1f s",
			    len ? ", " : "", step_name[i - 4],
			    (h_now_ms() - t1) / 1000.0);
	}
	free(a);
	free(r);
	PQfinish(c);
	d->ms = h_now_ms() - t0;
	return NULL;
}

/* Seed both databases concurrently with connections lo..hi. */
static void
seed_both(struct db *dbs, long lo, long hi)
{
	pthread_t t[2];
	int i;

	for (i = 0; i < 2; i++) {
		dbs[i].lo = lo;
		dbs[i].hi = hi;
		dbs[i].err[0] = '\0';
		if (pthread_create(&t[i], NULL, seed_thread, &dbs[i]) != 0)
			h_bail("pthread_create failed");
	}
	for (i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	for (i = 0; i < 2; i++) {
		if (dbs[i].err[0] != '\0')
			h_bail("seeding %s failed: %s", dbs[i].name, dbs[i].err);
		printf("# seeded %s: active connections %ld..%ld (+ %ld "
		       "revoked) and their pulls, syncs, revocations, VACUUM "
		       "ANALYZE: %.1f s (%s)\n",
		    dbs[i].name, lo, hi, hi / 20 - lo / 20, dbs[i].ms / 1000.0,
		    dbs[i].steps);
	}
	fflush(stdout);
}

/* Statements of one db, each a bail on error. */
static void
exec_steps(struct db *d, const char *const *steps)
{
	char err[256];
	int i;

	for (i = 0; steps[i] != NULL; i++)
		if (!run_sql(d->c, steps[i], err, sizeof(err)))
			h_bail("%s: %s", d->name, err);
}

/*
 * Outage -> drained: the claimable rows go into backoff, marked so that
 * undrain() can bring them back.  The revoked connections' pulls rows stay.
 */
static const char *const drain_steps[] = {
	"SET session_replication_role = replica",
	"UPDATE connections SET next_attempt_at = now() + interval "
	"'10 minutes' + random() * interval '15 minutes', last_error = "
	"'bench: drained' WHERE status = 'active' AND next_attempt_at IS NULL",
	"UPDATE pulls p SET next_pull_at = next_pull_at + interval '100 days', "
	"last_error = 'bench: drained' FROM connections c WHERE c.id = "
	"p.connection_id AND c.status = 'active' AND p.next_pull_at <= now()",
	"UPDATE revocations SET next_attempt_at = next_attempt_at + interval "
	"'100 days', last_error = 'bench: drained' WHERE next_attempt_at <= "
	"now()",
	"UPDATE syncs SET next_poll_at = next_poll_at + interval '100 days', "
	"error = '{\"bench\": \"drained\"}' WHERE next_poll_at <= now()",
	"RESET session_replication_role",
	"VACUUM ANALYZE connections, pulls, revocations, syncs",
	NULL,
};
static const char *const undrain_steps[] = {
	"SET session_replication_role = replica",
	"UPDATE connections SET next_attempt_at = NULL, last_error = NULL "
	"WHERE last_error = 'bench: drained'",
	"UPDATE pulls SET next_pull_at = next_pull_at - interval '100 days', "
	"last_error = NULL WHERE last_error = 'bench: drained'",
	"UPDATE revocations SET next_attempt_at = next_attempt_at - interval "
	"'100 days', last_error = 'bench: finX unavailable' WHERE last_error = "
	"'bench: drained'",
	"UPDATE syncs SET next_poll_at = next_poll_at - interval '100 days', "
	"error = NULL WHERE error IS NOT NULL",
	"RESET session_replication_role",
	NULL,
};
/* The proposed pulls fix, as data: rows of connections that are not
 * active leave the due range (a reauth callback sets next_pull_at = now()
 * again). */
static const char *const fix_steps[] = {
	"UPDATE pulls p SET next_pull_at = 'infinity' FROM connections c "
	"WHERE c.id = p.connection_id AND c.status <> 'active'",
	"VACUUM ANALYZE pulls",
	NULL,
};

/* ---- EXPLAIN JSON ---- */

static double
jdouble(json_object *o, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_double(v)
						     : 0.0;
}

/* Compact plan tree: Type[index or relation](children). */
static void
plan_str(json_object *n, char *buf, size_t sz, size_t *len)
{
	const char *t = h_jstr(n, "Node Type"), *x = h_jstr(n, "Index Name");
	json_object *kids;
	size_t i, k;

	if (x == NULL)
		x = h_jstr(n, "Relation Name");
	if (x == NULL)
		x = h_jstr(n, "Function Name");
	if (x == NULL && t != NULL && strcmp(t, "ModifyTable") == 0)
		x = h_jstr(n, "Operation");
	if (*len < sz)
		*len += (size_t)snprintf(buf + *len, sz - *len, "%s%s%s%s",
		    t ? t : "?", x ? "[" : "", x ? x : "", x ? "]" : "");
	if (!json_object_object_get_ex(n, "Plans", &kids))
		return;
	k = json_object_array_length(kids);
	for (i = 0; i < k; i++) {
		if (*len < sz)
			*len += (size_t)snprintf(buf + *len, sz - *len, "%s",
			    i == 0 ? "(" : ", ");
		plan_str(json_object_array_get_idx(kids, i), buf, sz, len);
	}
	if (*len < sz)
		*len += (size_t)snprintf(buf + *len, sz - *len, ")");
}

/* Rows the scan nodes looked at: (returned + filtered out) x loops. */
static double
visited(json_object *n)
{
	const char *t = h_jstr(n, "Node Type");
	json_object *kids;
	double v = 0.0;
	size_t i;

	if (t != NULL && strstr(t, "Scan") != NULL &&
	    strcmp(t, "Subquery Scan") != 0)
		v = (jdouble(n, "Actual Rows") +
			jdouble(n, "Rows Removed by Filter") +
			jdouble(n, "Rows Removed by Index Recheck")) *
		    jdouble(n, "Actual Loops");
	if (json_object_object_get_ex(n, "Plans", &kids))
		for (i = 0; i < json_object_array_length(kids); i++)
			v += visited(json_object_array_get_idx(kids, i));
	return v;
}

/* The scan nodes, in plan order: "Seq Scan[connections] + ...". */
static void
scans(json_object *n, char *buf, size_t sz, size_t *len)
{
	const char *t = h_jstr(n, "Node Type"), *x = h_jstr(n, "Index Name");
	json_object *kids;
	size_t i;

	if (x == NULL)
		x = h_jstr(n, "Relation Name");
	if (x == NULL)
		x = h_jstr(n, "Function Name");
	if (t != NULL && strstr(t, "Scan") != NULL &&
	    strcmp(t, "Subquery Scan") != 0 && *len < sz)
		*len += (size_t)snprintf(buf + *len, sz - *len, "%s%s[%s]",
		    *len ? " + " : "", t, x ? x : "?");
	if (json_object_object_get_ex(n, "Plans", &kids))
		for (i = 0; i < json_object_array_length(kids); i++)
			scans(json_object_array_get_idx(kids, i), buf, sz, len);
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* One run of a claim under EXPLAIN ANALYZE. */
struct sample {
	double exec_ms, plan_ms;
	long bufs, visited, returned;
	char plan[400], kind[200];
};

static bool
explain_once(struct db *d, const char *pre, const char *sql, int np,
    const char *const *p, struct sample *out)
{
	PGresult *r;
	json_object *j, *o, *top;
	bool ok = false;
	size_t len = 0;

	PQclear(PQexec(d->c, "BEGIN"));
	if (pre != NULL)
		PQclear(PQexec(d->c, pre));
	r = PQexecParams(d->c, sql, np, NULL, p, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
		printf("# %s: EXPLAIN failed: %.*s\n", d->name,
		    (int)strcspn(PQerrorMessage(d->c), "\n"),
		    PQerrorMessage(d->c));
		PQclear(r);
		PQclear(PQexec(d->c, "ROLLBACK"));
		return false;
	}
	j = json_tokener_parse(PQgetvalue(r, 0, 0));
	PQclear(r);
	PQclear(PQexec(d->c, "ROLLBACK"));
	if (j != NULL && (o = json_object_array_get_idx(j, 0)) != NULL &&
	    json_object_object_get_ex(o, "Plan", &top)) {
		out->exec_ms = jdouble(o, "Execution Time");
		out->plan_ms = jdouble(o, "Planning Time");
		out->bufs = (long)(jdouble(top, "Shared Hit Blocks") +
		    jdouble(top, "Shared Read Blocks"));
		out->visited = (long)(0.5 + visited(top));
		out->returned = (long)(0.5 + jdouble(top, "Actual Rows"));
		out->plan[0] = out->kind[0] = '\0';
		plan_str(top, out->plan, sizeof(out->plan), &len);
		len = 0;
		scans(top, out->kind, sizeof(out->kind), &len);
		ok = true;
	} else
		printf("# %s: EXPLAIN output not understood\n", d->name);
	json_object_put(j);
	return ok;
}

static double
median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

static void
measure(struct db *d, int s, int mix, int size)
{
	static const char *const newp_tmpl[5] = { NULL, "60", "{}", "true",
		"30" };
	static const char *const pullp[1] = { "4" };
	const char *newp[5], *base, *const *p = NULL, *pre = NULL;
	struct result *rs = &res[s][mix][size];
	struct sample one;
	double *ex = calloc((size_t)reps_max, sizeof(double)),
	       *pl = calloc((size_t)reps_max, sizeof(double)),
	       *bu = calloc((size_t)reps_max, sizeof(double)),
	       *vi = calloc((size_t)reps_max, sizeof(double));
	long t0;
	char *sql;
	int np = 0, i, n = 0;

	if (ex == NULL || pl == NULL || bu == NULL || vi == NULL)
		h_bail("out of memory");
	switch (s) {
	case S_OLDSEQ:
		pre = "SET LOCAL enable_indexscan = off; SET LOCAL "
		      "enable_bitmapscan = off";
		/* FALLTHROUGH */
	case S_OLD:
		base = old_refresh_sql;
		break;
	case S_NEW:
		memcpy(newp, newp_tmpl, sizeof(newp));
		newp[0] = d->proc;
		base = refresh_claim_sql;
		p = newp;
		np = 5;
		break;
	case S_PULLS_OLD:
		base = old_pulls_sql;
		p = pullp;
		np = 1;
		break;
	case S_PULLS:
	case S_FIX:
		base = pull_claim_sql;
		p = pullp;
		np = 1;
		break;
	case S_REVOKE:
		base = revocations_sql;
		break;
	default:
		base = syncs_sql;
		break;
	}
	sql = h_fmt("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, "
				"FORMAT JSON) %s",
	    base);
	rs->done = true;
	for (i = 0; i < 2; i++) { /* warm-up: 2 runs, 1 when it is slow */
		if (!explain_once(d, pre, sql, np, p, &one))
			goto fail;
		if (i == 0) {
			memcpy(rs->plan, one.plan, sizeof(rs->plan));
			memcpy(rs->kind, one.kind, sizeof(rs->kind));
		}
		if (one.exec_ms > 500.0)
			break;
	}
	t0 = h_now_ms();
	while (n < reps_max && (n < REPS_MIN || h_now_ms() - t0 < case_ms)) {
		if (!explain_once(d, pre, sql, np, p, &one))
			goto fail;
		if (strcmp(one.plan, rs->plan) != 0)
			rs->plan_changed = true;
		ex[n] = one.exec_ms;
		pl[n] = one.plan_ms;
		bu[n] = (double)one.bufs;
		vi[n] = (double)one.visited;
		rs->returned = one.returned;
		n++;
	}
	rs->n = n;
	rs->med = median(ex, n);
	rs->p99 = ex[(99 * n + 99) / 100 - 1]; /* nearest rank, ex sorted */
	rs->plan_med = median(pl, n);
	rs->bufs = (long)median(bu, n);
	rs->visited = (long)median(vi, n);
	printf("# %-11s %-7s %7ld: n=%d median %.3f ms p99 %.3f ms (planning "
	       "%.3f ms) buffers %ld rows visited %ld returned %ld plan %s%s\n",
	    stmt_name[s], mix_name[mix], sizes[size], n, rs->med, rs->p99,
	    rs->plan_med, rs->bufs, rs->visited, rs->returned, rs->plan,
	    rs->plan_changed ? " (plan changed between runs)" : "");
	fflush(stdout);
	goto out;
fail:
	rs->failed = true;
	failures++;
out:
	free(sql);
	free(ex);
	free(pl);
	free(bu);
	free(vi);
}

static void
measure_all(struct db *d, int mix, int size)
{
	int s;

	for (s = 0; s < S_FIX; s++)
		measure(d, s, mix, size);
}

static void
summary(void)
{
	int s, m, z;

	printf("# ---- summary: PostgreSQL Execution Time per claim "
	       "(EXPLAIN ANALYZE, TIMING OFF), median / p99 ----\n");
	for (s = 0; s < NSTMT; s++)
		for (m = 0; m < NMIX; m++)
			for (z = 0; z < 2; z++) {
				struct result *r = &res[s][m][z];

				if (!r->done)
					continue;
				if (r->failed) {
					printf("RESULT %-11s %-7s %7ld: "
					       "FAILED\n",
					    stmt_name[s], mix_name[m], sizes[z]);
					continue;
				}
				printf("RESULT %-11s %-7s %7ld: median "
				       "%8.3f ms  p99 %8.3f ms  buffers %6ld  "
				       "returned %ld  %s\n",
				    stmt_name[s], mix_name[m], sizes[z], r->med,
				    r->p99, r->bufs, r->returned, r->kind);
			}
	for (s = 0; s < NSTMT; s++) {
		double worst = 0.0, worst_ms = 0.0;
		int wm = -1;
		bool flat = true, any = false;

		for (m = 0; m < NMIX; m++) {
			struct result *a = &res[s][m][0], *b = &res[s][m][1];
			double ratio;

			if (!a->done || !b->done || a->failed || b->failed)
				continue;
			any = true;
			ratio = b->med / (a->med > 0.0 ? a->med : 0.001);
			if (!(b->med <= 3.0 * a->med && b->med < 1.0))
				flat = false;
			if (wm < 0 || ratio > worst) {
				worst = ratio;
				worst_ms = b->med;
				wm = m;
			}
		}
		if (!any)
			continue;
		printf("VERDICT %-11s %s: worst median ratio %ld/%ld %.1fx "
		       "(%s: %.3f ms at %ld) [flat: median at %ld <= 3x "
		       "the one at %ld and < 1 ms, in every mix]\n",
		    stmt_name[s], flat ? "FLAT" : "GROWS with the backlog",
		    sizes[1], sizes[0], worst, mix_name[wm], worst_ms,
		    sizes[1], sizes[1], sizes[0]);
	}
	fflush(stdout);
}

int
main(void)
{
	const char *migrate[] = { "migrate", NULL };
	struct db dbs[2] = {
		{ .name = "steady", .bo = 0.10, .newest = false },
		{ .name = "outage", .bo = 0.99, .newest = true },
	};
	long t0;
	int i;

	sizes[0] = h_env_long("BENCH_N_SMALL", 10000);
	sizes[1] = h_env_long("BENCH_N", 1000000);
	reps_max = h_env_long("BENCH_REPS", 200);
	case_ms = h_env_long("BENCH_CASE_S", 5) * 1000;
	if (sizes[0] < 20 || sizes[1] <= sizes[0] || reps_max < 20)
		h_bail("BENCH_N_SMALL >= 20, BENCH_N > BENCH_N_SMALL and "
		       "BENCH_REPS >= 20, please");
	h_init("bench_sched", (int)h_env_long("BENCH_TIMEOUT_S", 330));
	t0 = h_now_ms();
	dbs[0].conninfo = (char *)h_pg_start();
	dbs[1].conninfo = h_pg_create_db("outage");
	h_env_defaults(dbs[0].conninfo);
	/* migrate never calls finX; keep even its configuration on
	 * loopback */
	h_env_set("FINXD_FINX_URL", "http://127.0.0.1:9");
	h_env_set("FINXD_LOG_LEVEL", "warn");
	for (i = 0; i < 2; i++) {
		h_env_set("FINXD_DATABASE_URL", dbs[i].conninfo);
		if (h_finxd_run(migrate, 60) != 0)
			h_bail("finxd migrate (%s) failed", dbs[i].name);
		dbs[i].c = bench_connect(dbs[i].conninfo);
		/* a pathological claim must not stall the bench */
		exec_steps(&dbs[i], (const char *const[]){
		    "SET statement_timeout = '20s'", NULL });
		dbs[i].proc = h_sql_value(dbs[i].conninfo,
		    "INSERT INTO finxd_processes (id, host, pid, version, "
		    "heartbeat_at, live_since) VALUES (gen_random_uuid(), "
		    "'bench', 1, 'bench', 'infinity', '-infinity') RETURNING "
		    "id::text",
		    NULL);
		if (dbs[i].proc == NULL)
			h_bail("cannot register the bench process (%s)",
			    dbs[i].name);
	}
	printf("# bench_sched: claims at %ld and %ld active connections; "
	       "per claim: EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) "
	       "Execution Time in BEGIN ... ROLLBACK, up to %ld runs or %ld s "
	       "per case\n",
	    sizes[0], sizes[1], reps_max, case_ms / 1000);

	for (i = 0; i < 2; i++) {
		if (i == 0)
			seed_both(dbs, 1, sizes[0]);
		else
			seed_both(dbs, sizes[0] + 1, sizes[1]);
		measure_all(&dbs[0], M_STEADY, i);
		measure_all(&dbs[1], M_OUTAGE, i);
		exec_steps(&dbs[1], drain_steps);
		measure_all(&dbs[1], M_DRAINED, i);
		if (i == 0)
			exec_steps(&dbs[1], undrain_steps);
	}
	/* the proposed pulls fix, at the large size */
	exec_steps(&dbs[0], fix_steps);
	measure(&dbs[0], S_FIX, M_STEADY, 1);
	exec_steps(&dbs[1], fix_steps);
	measure(&dbs[1], S_FIX, M_DRAINED, 1);

	summary();
	printf("# bench_sched: %.1f s in all, %d failed statement(s)\n",
	    (h_now_ms() - t0) / 1000.0, failures);
	for (i = 0; i < 2; i++) {
		PQfinish(dbs[i].c);
		free(dbs[i].proc);
	}
	free(dbs[1].conninfo);
	return h_done(failures ? 1 : 0);
}
