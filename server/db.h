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
 * Run a statement with text parameters.  Returns the result when its
 * status is COMMAND_OK or TUPLES_OK, else logs the error, clears it and
 * returns NULL.  Caller PQclear()s.  Params may be NULL (SQL NULL).
 */
PGresult *db_exec(PGconn *c, const char *sql, int n,
    const char *const *params);
/*
 * The same as a named prepared statement of this connection, for the hot
 * statements: PostgreSQL then parses and plans them once per connection
 * instead of once per call (parse and plan were half of the database's
 * time in a callback burst).  The first use on a connection prepares it.
 * name must always stand for the same sql text.  Inside a transaction
 * block it runs unprepared, because a failed attempt would abort it.
 */
PGresult *db_exec_prepared(PGconn *c, const char *name, const char *sql,
    int n, const char *const *params);
/* Same, for statements whose rows are not needed. */
bool db_cmd(PGconn *c, const char *sql, int n, const char *const *params);

/* An integer column (PostgreSQL's own text): its value, or dflt when
 * NULL, absent or out of range. */
long db_long(const PGresult *r, int row, int col, long dflt);

/* Column value or NULL when SQL NULL. */
const char *db_val(const PGresult *r, int row, int col);

#endif
