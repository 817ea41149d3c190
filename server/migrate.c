/*
 * finxd migrate: idempotent, and safe when several processes run it at
 * once (a session advisory lock serialises them; the loser finds nothing
 * left to do).
 */
#include "migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "util.h"

/* Any constant shared by every finxd; the text spells "finxdmig". */
#define MIGRATE_LOCK "7378664410155813223"

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

bool
migrate_current(PGconn *c, char **why)
{
	int v = migrate_db_version(c);

	if (v == migrations_count)
		return true;
	if (v < 0)
		*why = xstrdup("cannot read schema_migrations");
	else if (v < migrations_count)
		*why = xasprintf("database schema is at version %d, this finxd "
				 "needs %d: run `finxd migrate`",
		    v, migrations_count);
	else
		*why = xasprintf("database schema version %d is newer than this "
				 "finxd (%d)",
		    v, migrations_count);
	return false;
}

static bool
apply(PGconn *c, const struct migration *m, char **err)
{
	char ver[16];
	const char *params[2] = { ver, m->name };

	snprintf(ver, sizeof(ver), "%d", m->version);
	if (!exec_simple(c, "BEGIN", err))
		return false;
	if (!exec_simple(c, m->sql, err) ||
	    !db_cmd(c, "INSERT INTO schema_migrations (version, name) "
		       "VALUES ($1, $2)",
		2, params) ||
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

bool
migrate_run(PGconn *c, char **err)
{
	int v, i;
	bool ok = true;

	*err = NULL;
	if (!exec_simple(c, "SET client_min_messages = warning", err) ||
	    !exec_simple(c, "SELECT pg_advisory_lock(" MIGRATE_LOCK ")", err))
		return false;
	if (!exec_simple(c, "CREATE TABLE IF NOT EXISTS schema_migrations ("
			    "version integer PRIMARY KEY, name text NOT NULL, "
			    "applied_at timestamptz NOT NULL DEFAULT now())",
		err)) {
		ok = false;
		goto out;
	}
	if ((v = migrate_db_version(c)) < 0) {
		*err = xstrdup("cannot read schema_migrations");
		ok = false;
		goto out;
	}
	if (v > migrations_count) {
		*err = xasprintf("database schema version %d is newer than "
				 "this finxd (%d)",
		    v, migrations_count);
		ok = false;
		goto out;
	}
	for (i = v; i < migrations_count && ok; i++)
		ok = apply(c, &migrations[i], err);
	if (ok)
		printf("schema is at version %d\n", migrations_count);
out:
	PQclear(PQexec(c, "SELECT pg_advisory_unlock(" MIGRATE_LOCK ")"));
	return ok;
}
