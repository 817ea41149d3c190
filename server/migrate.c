/*
 * finxd migrate: idempotent, and safe when several processes run it at
 * once (a session advisory lock serialises them; the loser finds nothing
 * left to do).  Also the rule of which schemas a binary may serve (each
 * migration's "-- finxd: compatible_from N"), and the interruptible
 * connect and backoff that serve and migrate wait for the database with.
 */
#include "migrate.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "db.h"
#include "log.h"
#include "mem.h"
#include "text.h"

/* Any constant shared by every finxd; the text spells "finxdmig". */
#define MIGRATE_LOCK "7378664410155813223"

#define BACKOFF_FIRST_MS 500
#define BACKOFF_MAX_MS 30000

static bool
exec_simple(PGconn *c, const char *sql, char **err)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);
	bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;

	if (!ok && err != NULL) {
		const char *m = PQresultErrorMessage(r);

		*err = xstrndup(m, strcspn(m, "\n"));
	}
	PQclear(r);
	return ok;
}

/* ---- compatibility declarations ---------------------------------------- */

static const char *
skip_blanks(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/*
 * One "-- finxd:" line's value (p points after "finxd:"); -1 with *why.
 * Only "compatible_from N" exists; anything else is a typo to refuse,
 * not a line to ignore.
 */
static int
directive(const char *p, const char *end, int version, const char **why)
{
	static const char name[] = "compatible_from";
	long n = 0;
	int digits = 0;

	p = skip_blanks(p);
	if ((size_t)(end - p) < sizeof(name) - 1 ||
	    strncmp(p, name, sizeof(name) - 1) != 0 ||
	    (p[sizeof(name) - 1] != ' ' && p[sizeof(name) - 1] != '\t')) {
		*why = "a \"-- finxd:\" line other than \"compatible_from N\"";
		return -1;
	}
	p = skip_blanks(p + sizeof(name) - 1);
	while (p < end && *p >= '0' && *p <= '9' && digits < 7) {
		n = n * 10 + (*p++ - '0');
		digits++;
	}
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
		p++;
	if (digits == 0 || p != end) {
		*why = "compatible_from needs a whole number";
		return -1;
	}
	if (n < 1 || n > version) {
		*why = "compatible_from must be 1 to the migration's own version";
		return -1;
	}
	return (int)n;
}

int
migrate_compatible_from(const char *sql, int version, const char **why)
{
	const char *line = sql, *end, *p;
	int found = 0, n;

	for (; *line != '\0'; line = *end ? end + 1 : end) {
		end = line + strcspn(line, "\n");
		p = skip_blanks(line);
		if (strncmp(p, "--", 2) != 0)
			continue;
		p = skip_blanks(p + 2);
		if (strncmp(p, "finxd:", 6) != 0)
			continue;
		if ((n = directive(p + 6, end, version, why)) < 0)
			return -1;
		if (found != 0) {
			*why = "more than one compatible_from line";
			return -1;
		}
		found = n;
	}
	return found != 0 ? found : version;
}

enum migrate_verdict
migrate_judge(int own, const struct migrate_applied *a, size_t n,
    int *blocker)
{
	int d = 0, first = 0, cf;
	size_t i;

	for (i = 0; i < n; i++)
		if (a[i].version > d)
			d = a[i].version;
	for (i = 0; i < n; i++) {
		cf = a[i].compatible_from > 0 ? a[i].compatible_from
					      : a[i].version;
		if (a[i].version > own && cf > own &&
		    (first == 0 || a[i].version < first))
			first = a[i].version;
	}
	if (blocker != NULL)
		*blocker = d > own ? first : 0;
	if (d < own)
		return MIGRATE_BEHIND;
	if (d == own)
		return MIGRATE_CURRENT;
	return first == 0 ? MIGRATE_NEWER_COMPATIBLE
			  : MIGRATE_NEWER_INCOMPATIBLE;
}

long
migrate_backoff_ms(int attempt, uint32_t rnd)
{
	long base = BACKOFF_FIRST_MS;

	while (attempt-- > 0 && base < BACKOFF_MAX_MS)
		base *= 2;
	if (base > BACKOFF_MAX_MS)
		base = BACKOFF_MAX_MS;
	return base - (long)(rnd % (uint32_t)(base / 2 + 1));
}

/* ---- reading the database's schema ----------------------------------- */

int
migrate_db_version(PGconn *c)
{
	PGresult *r = PQexec(c, "SELECT to_regclass('schema_migrations') "
				"IS NOT NULL");
	int v = -1;

	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		PQclear(r);
		return -1;
	}
	if (strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
		PQclear(r);
		return 0;
	}
	PQclear(r);
	r = PQexec(c, "SELECT coalesce(max(version), 0) FROM schema_migrations");
	if (PQresultStatus(r) == PGRES_TUPLES_OK)
		v = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return v;
}

/*
 * Every row of schema_migrations (none when the table does not exist);
 * caller frees *out.  false when it cannot be read.
 */
static bool
read_applied(PGconn *c, struct migrate_applied **out, size_t *n)
{
	PGresult *r;
	long v, cf;
	int i, d;

	*out = NULL;
	*n = 0;
	if ((d = migrate_db_version(c)) <= 0)
		return d == 0;
	/* compatible_from is missing where only finxd before schema 4 ran
	 * migrate: to_jsonb of the row has no column to miss, only a key. */
	r = PQexec(c, "SELECT version, to_jsonb(m) ->> 'compatible_from' "
		      "FROM schema_migrations m ORDER BY version");
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		PQclear(r);
		return false;
	}
	*out = xcalloc((size_t)PQntuples(r) + 1, sizeof(**out));
	for (i = 0; i < PQntuples(r); i++) {
		if (!parse_long(PQgetvalue(r, i, 0), 1, 1000000, &v)) {
			PQclear(r);
			free(*out);
			*out = NULL;
			return false;
		}
		if (PQgetisnull(r, i, 1) ||
		    !parse_long(PQgetvalue(r, i, 1), 1, 1000000, &cf))
			cf = 0;
		(*out)[i].version = (int)v;
		(*out)[i].compatible_from = (int)cf;
	}
	*n = (size_t)PQntuples(r);
	PQclear(r);
	return true;
}

/* The reason a verdict other than CURRENT gives (malloc'd). */
static char *
verdict_why(enum migrate_verdict v, int d, const struct migrate_applied *a,
    size_t n, int blocker)
{
	int cf = blocker;
	size_t i;

	if (v == MIGRATE_BEHIND)
		return xasprintf("database schema is at version %d, this finxd "
				 "needs %d: run `finxd migrate`",
		    d, migrations_count);
	for (i = 0; i < n; i++)
		if (a[i].version == blocker && a[i].compatible_from > 0)
			cf = a[i].compatible_from;
	return xasprintf("database schema version %d is newer than this finxd "
			 "(%d), and migration %d serves only finxd of schema "
			 "%d or newer: run a newer finxd",
	    d, migrations_count, blocker, cf);
}

bool
migrate_check(PGconn *c, int *db_version, char **why)
{
	struct migrate_applied *a;
	enum migrate_verdict v;
	size_t n, i;
	int d = 0, blocker;

	if (db_version != NULL)
		*db_version = -1;
	if (!read_applied(c, &a, &n)) {
		*why = xstrdup("cannot read schema_migrations");
		return false;
	}
	for (i = 0; i < n; i++)
		if (a[i].version > d)
			d = a[i].version;
	if (db_version != NULL)
		*db_version = d;
	v = migrate_judge(migrations_count, a, n, &blocker);
	if (v != MIGRATE_CURRENT && v != MIGRATE_NEWER_COMPATIBLE)
		*why = verdict_why(v, d, a, n, blocker);
	free(a);
	return v == MIGRATE_CURRENT || v == MIGRATE_NEWER_COMPATIBLE;
}

bool
migrate_current(PGconn *c, char **why)
{
	return migrate_check(c, NULL, why);
}

/* ---- applying -------------------------------------------------------- */

static bool
apply(PGconn *c, const struct migration *m, char **err)
{
	const char *why = NULL;
	char ver[16], cf[16];
	const char *params[3] = { ver, m->name, cf };

	snprintf(ver, sizeof(ver), "%d", m->version);
	snprintf(cf, sizeof(cf), "%d",
	    migrate_compatible_from(m->sql, m->version, &why));
	if (!exec_simple(c, "BEGIN", err))
		return false;
	if (!exec_simple(c, m->sql, err) ||
	    !db_cmd(c, "INSERT INTO schema_migrations (version, name, "
		       "compatible_from) VALUES ($1, $2, $3)",
		3, params) ||
	    !exec_simple(c, "COMMIT", err)) {
		if (*err == NULL)
			*err = xasprintf("recording migration %s failed",
			    m->name);
		PQclear(PQexec(c, "ROLLBACK"));
		return false;
	}
	printf("applied %s\n", m->name);
	return true;
}

/* Every embedded declaration parses; else *err names the migration. */
static bool
declarations_valid(char **err)
{
	const char *why = NULL;
	int i;

	for (i = 0; i < migrations_count; i++) {
		if (migrate_compatible_from(migrations[i].sql,
			migrations[i].version, &why) < 0) {
			*err = xasprintf("migration %s: %s", migrations[i].name,
			    why);
			return false;
		}
	}
	return true;
}

/* Under the lock: the table (with compatible_from), then what is due. */
static bool
migrate_locked(PGconn *c, char **err)
{
	struct migrate_applied *a;
	enum migrate_verdict v;
	size_t n, i;
	int d = 0, blocker;
	bool ok = true;

	/* migrate_run creates the table itself, so its columns come here;
	 * tables made before compatible_from existed get it added. */
	if (!exec_simple(c, "CREATE TABLE IF NOT EXISTS schema_migrations ("
			    "version integer PRIMARY KEY, name text NOT NULL, "
			    "applied_at timestamptz NOT NULL DEFAULT now(), "
			    "compatible_from integer)",
		err) ||
	    !exec_simple(c, "ALTER TABLE schema_migrations ADD COLUMN IF NOT "
			    "EXISTS compatible_from integer",
		err))
		return false;
	if (!read_applied(c, &a, &n)) {
		*err = xstrdup("cannot read schema_migrations");
		return false;
	}
	for (i = 0; i < n; i++)
		if (a[i].version > d)
			d = a[i].version;
	v = migrate_judge(migrations_count, a, n, &blocker);
	if (v == MIGRATE_NEWER_INCOMPATIBLE) {
		*err = verdict_why(v, d, a, n, blocker);
		ok = false;
	} else if (v == MIGRATE_NEWER_COMPATIBLE) {
		printf("schema is at version %d, newer than this finxd (%d) and "
		       "declared compatible with it: nothing to apply\n",
		    d, migrations_count);
	} else {
		for (i = (size_t)d; i < (size_t)migrations_count && ok; i++)
			ok = apply(c, &migrations[i], err);
		if (ok)
			printf("schema is at version %d\n", migrations_count);
	}
	free(a);
	return ok;
}

bool
migrate_run(PGconn *c, char **err)
{
	bool ok;

	*err = NULL;
	if (!declarations_valid(err))
		return false;
	if (!exec_simple(c, "SET client_min_messages = warning", err) ||
	    !exec_simple(c, "SELECT pg_advisory_lock(" MIGRATE_LOCK ")", err))
		return false;
	ok = migrate_locked(c, err);
	PQclear(PQexec(c, "SELECT pg_advisory_unlock(" MIGRATE_LOCK ")"));
	return ok;
}

/* ---- waiting for the database ---------------------------------------- */

/* A signal of stop that is pending (taken), else 0. */
static int
pending(const sigset_t *stop)
{
	static const struct timespec zero = { 0, 0 };
	int s;

	if (stop == NULL)
		return 0;
	s = sigtimedwait(stop, NULL, &zero);
	return s > 0 ? s : 0;
}

/* The first line of the error of c, a connection that failed. */
static char *
connect_error(PGconn *c)
{
	const char *m = c ? PQerrorMessage(c) : "out of memory";
	char *e = xstrndup(m, strcspn(m, "\n"));

	if (*e == '\0') {
		free(e);
		e = xstrdup("connection failed");
	}
	return e;
}

/*
 * Wait up to 100 ms (at most left) for the socket of c to be as *st
 * wants it, then poll the connection on.  false on a poll() error.
 */
static bool
connect_step(PGconn *c, PostgresPollingStatusType *st, int64_t left)
{
	struct pollfd p;
	int n;

	p.fd = PQsocket(c);
	p.events = *st == PGRES_POLLING_READING ? POLLIN : POLLOUT;
	p.revents = 0;
	n = poll(&p, 1, left < 100 ? (int)left : 100);
	if (n < 0 && errno != EINTR)
		return false;
	if (n > 0)
		*st = PQconnectPoll(c);
	return true;
}

/*
 * PQconnectStartParams and PQconnectPoll instead of PQconnectdb, so that
 * a SIGTERM while PostgreSQL does not answer (a dropped SYN waits out
 * the whole timeout) ends the wait within 100 ms.
 */
PGconn *
migrate_connect(const char *conninfo, const char *options,
    const sigset_t *stop, int *sig, char **err)
{
	const char *const kw[] = { "application_name", "options", "dbname",
		NULL };
	const char *const vals[] = { "finxd", options,
		conninfo && *conninfo ? conninfo : NULL, NULL };
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	int64_t until = mono_ms() + MIGRATE_CONNECT_MS, left;
	PGconn *c = PQconnectStartParams(kw, vals, 1);
	int s;

	if (sig != NULL)
		*sig = 0;
	while (c != NULL && PQstatus(c) != CONNECTION_BAD &&
	    st != PGRES_POLLING_FAILED) {
		if (st == PGRES_POLLING_OK) {
			db_quiet_notices(c);
			return c;
		}
		if ((s = pending(stop)) != 0) {
			if (sig != NULL)
				*sig = s;
			*err = xstrdup("interrupted by a signal");
			PQfinish(c);
			return NULL;
		}
		if ((left = until - mono_ms()) <= 0) {
			*err = xasprintf("no answer within %d s",
			    MIGRATE_CONNECT_MS / 1000);
			PQfinish(c);
			return NULL;
		}
		if (!connect_step(c, &st, left))
			break;
	}
	*err = connect_error(c);
	PQfinish(c);
	return NULL;
}

int
migrate_sleep(long ms, const sigset_t *stop)
{
	int64_t until = mono_ms() + ms, left;
	struct timespec ts;
	int s;

	while ((left = until - mono_ms()) > 0) {
		ts.tv_sec = (time_t)(left / 1000);
		ts.tv_nsec = (long)(left % 1000) * 1000000L;
		if (stop == NULL) {
			nanosleep(&ts, NULL);
			continue;
		}
		if ((s = sigtimedwait(stop, NULL, &ts)) > 0)
			return s;
		if (errno == EAGAIN)
			return 0;
	}
	return pending(stop);
}
