/*
 * A bounded pool of PostgreSQL connections shared by all request threads
 * (thread-per-connection HTTP means per-thread caches would leak; see
 * STYLE.md).  A caller holds a connection for one unit of work only, and
 * never across a finX call unless it deliberately holds a row lock.
 */
#ifndef FINXD_DB_H
#define FINXD_DB_H

#include <stdbool.h>
#include <libpq-fe.h>

struct config;

/* Create the pool; db_warm opens its connections (else opened lazily). */
void db_init(const struct config *cfg);
void db_warm(void);
void db_shutdown(void);

/* Route c's notices (and errors arriving between statements) to the log
 * instead of libpq's stderr printout; every connection of finxd's. */
void db_quiet_notices(PGconn *c);

/* Open one connection outside the pool (migrate, rekey); NULL on error. */
PGconn *db_connect(const char *conninfo, char **err);

/*
 * Take a connection, waiting up to the configured timeout.  NULL when the
 * pool is exhausted, PostgreSQL is unreachable or db_init has not run yet
 * (serve still waiting for the database): answer 503.
 */
PGconn *db_acquire(void);
/*
 * The same for bulk work: the callback path and anything that holds a
 * connection across a finX call.  Bulk work never takes the last quarter
 * of the pool, so short reads (GET /v1/...) do not queue behind a burst.
 */
PGconn *db_acquire_bulk(void);
/* Give it back; a broken or mid-transaction connection is closed. */
void db_release(PGconn *c);

/* Pool figures for /metrics. */
void db_stats(long *in_use, long *total, long *waits, long *timeouts);

/*
 * A statement of the store layer: a name unique in the process and its
 * SQL.  Every statement finxd runs while serving is one of these, kept
 * in a table of its store module (server/STORE.md).
 */
struct db_stmt {
	const char *name;
	const char *sql;
};

/*
 * The statements every connection prepares when it opens: tables of
 * statements, each ended by an entry with a NULL name.  Set once at
 * start (store_init), before any connection is opened; prepared false
 * (FINXD_DB_PREPARED=off) runs every statement unprepared.
 */
void db_register(const struct db_stmt *const *tables, int n_tables,
    bool prepared);
/*
 * Prepare the registered statements on c in one round trip (a pipeline),
 * unless FINXD_DB_PREPARED=off or nothing is registered.  Pooled
 * connections and those of db_open get this when they open.  A failure
 * (the schema is not what this build expects) is logged, and c then runs
 * its statements unprepared.
 */
bool db_prepare(PGconn *c);
/* db_connect, then db_prepare: the connection of a worker thread. */
PGconn *db_open(const char *conninfo, char **err);

/*
 * Run a statement with text parameters (NULL: SQL NULL), prepared when c
 * was prepared.  Returns the result when its status is COMMAND_OK or
 * TUPLES_OK (caller PQclear()s), else records the failure for
 * db_failure and returns NULL.  Nothing is logged here: the caller
 * logs once, where the failure is handled.
 */
PGresult *db_run(PGconn *c, const struct db_stmt *s, int n,
    const char *const *params);
/* The same, for statements whose rows are not needed. */
bool db_do(PGconn *c, const struct db_stmt *s, int n,
    const char *const *params);
/* The same: how many rows the statement inserted, updated or deleted
 * (PQcmdTuples), -1 when it failed. */
long db_rows(PGconn *c, const struct db_stmt *s, int n,
    const char *const *params);

/*
 * How the last failed statement of this thread failed, mapped from its
 * SQLSTATE once, here (server/STORE.md, "Failures").
 */
enum db_fail {
	DBF_NONE,        /* nothing failed */
	DBF_UNAVAILABLE, /* no connection, connection lost, server
			    shutting down, statement timeout */
	DBF_CONFLICT,    /* unique or exclusion violation (23505, 23P01) */
	DBF_BAD_INPUT,   /* a value PostgreSQL refused: invalid date or
			    time (22007, 22008), out of range (22003),
			    bad text form (22P02) */
	DBF_RETRY,       /* serialization failure or deadlock (40001,
			    40P01): the transaction may run again */
	DBF_FAILED,      /* anything else: a bug or a schema mismatch */
};
enum db_fail db_failure(void);
/* The last failure's SQLSTATE ("" when none) and primary message (NULL
 * for class 22, whose messages quote the value refused). */
const char *db_failure_sqlstate(void);
const char *db_failure_message(void);
/* Record "no connection" (a NULL from db_acquire) for db_failure. */
void db_fail_unavailable(void);
/* Classify a SQLSTATE; exposed for unit tests. */
enum db_fail db_classify(const char *sqlstate);

/*
 * Run body in one transaction: BEGIN, body, COMMIT.  When body returns
 * false or a statement failed, ROLLBACK.  A serialization failure or
 * deadlock anywhere in it runs body again (up to 3 times in all), so
 * body must keep its effects to the database until it returns true.
 * True when committed.
 */
bool db_tx(PGconn *c, bool (*body)(PGconn *c, void *arg), void *arg);

/*
 * Ad hoc SQL, for migrate and rekey (which run before or beside the
 * registered statements).  Same contract as db_run.
 */
PGresult *db_exec(PGconn *c, const char *sql, int n,
    const char *const *params);
bool db_cmd(PGconn *c, const char *sql, int n, const char *const *params);
/* Until its last callers move to the store layer: db_exec. */
PGresult *db_exec_prepared(PGconn *c, const char *name, const char *sql,
    int n, const char *const *params);

/* An integer column (PostgreSQL's own text): its value, or dflt when
 * NULL, absent or out of range. */
long db_long(const PGresult *r, int row, int col, long dflt);

/* Column value or NULL when SQL NULL. */
const char *db_val(const PGresult *r, int row, int col);
/* The same, copied (caller frees). */
char *db_dup(const PGresult *r, int row, int col);

#endif
