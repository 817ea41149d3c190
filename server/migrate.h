/*
 * Versioned migrations compiled in from db/migrations (db/embed.py).
 * Applied in order under an advisory lock, each in its own transaction,
 * recorded in schema_migrations with the version each one declares
 * compatible (README, "Upgrading and rolling deploys").
 */
#ifndef FINXD_MIGRATE_H
#define FINXD_MIGRATE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
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

/*
 * True when this binary may serve the database: the schema is at its own
 * version, or newer and every newer migration declares this version
 * compatible.  Else false with *why (caller frees).  migrate_check also
 * stores the database's version in *db_version (may be NULL; -1 when
 * unreadable).
 */
bool migrate_current(PGconn *c, char **why);
bool migrate_check(PGconn *c, int *db_version, char **why);

/* ---- pure parts, exposed for unit tests ---- */

/*
 * The N of a migration's "-- finxd: compatible_from N" line: binaries
 * whose own schema version is N or more keep working against a database
 * with this migration applied.  Without the line, the migration's own
 * version.  -1 with a static *why when a "-- finxd:" line is malformed,
 * names something unknown, comes twice, or N is not 1..version.
 */
int migrate_compatible_from(const char *sql, int version, const char **why);

/* One row of schema_migrations; compatible_from 0 when not recorded. */
struct migrate_applied {
	int version;
	int compatible_from;
};

enum migrate_verdict {
	MIGRATE_CURRENT,            /* exactly this binary's version */
	MIGRATE_BEHIND,             /* older: run finxd migrate */
	MIGRATE_NEWER_COMPATIBLE,   /* newer, declared compatible */
	MIGRATE_NEWER_INCOMPATIBLE, /* newer, not servable */
};

/*
 * The compatibility rule.  A binary whose own version is own may serve a
 * database at version D (the highest applied) iff D >= own and every
 * applied migration with a version above own has compatible_from <= own,
 * an unrecorded one counting as its own version.  *blocker (may be NULL)
 * gets the first migration that forbids it, else 0.
 */
enum migrate_verdict migrate_judge(int own, const struct migrate_applied *a,
    size_t n, int *blocker);

/*
 * How long to wait before try attempt + 1 (attempt counts from 0): 500 ms
 * doubling up to 30 s, then a random point in the upper half of that
 * (rnd: any random number), so processes restarted together do not knock
 * on the database in step.
 */
long migrate_backoff_ms(int attempt, uint32_t rnd);

/* ---- waiting for the database ---- */

/*
 * Open one connection for start-up checks and migrate, with options as
 * libpq's "options" (may be NULL).  Gives up after MIGRATE_CONNECT_MS, or
 * at once when a signal of stop (may be NULL) is pending: then *sig gets
 * it.  NULL with *err (caller frees) on failure.
 */
#define MIGRATE_CONNECT_MS 10000
PGconn *migrate_connect(const char *conninfo, const char *options,
    const sigset_t *stop, int *sig, char **err);

/*
 * Sleep ms, or less when a signal of stop (may be NULL) arrives: returns
 * it, else 0.
 */
int migrate_sleep(long ms, const sigset_t *stop);

#endif
