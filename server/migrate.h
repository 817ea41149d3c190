/*
 * Versioned migrations compiled in from db/migrations (db/embed.py).
 * Applied in order under an advisory lock, each in its own transaction,
 * recorded in schema_migrations.
 */
#ifndef FINXD_MIGRATE_H
#define FINXD_MIGRATE_H

#include <stdbool.h>
#include <libpq-fe.h>

struct migration {
	int version;
	const char *name;
	const char *sql;
};
extern const struct migration migrations[];
extern const int migrations_count;

/* Apply pending migrations; prints what it applied.  false on error. */
bool migrate_run(PGconn *c, char **err);

/*
 * The version recorded in the database: 0 for an empty database, -1 when
 * it could not be read.
 */
int migrate_db_version(PGconn *c);

/* True when the database has exactly the migrations this binary knows. */
bool migrate_current(PGconn *c, char **why);

#endif
