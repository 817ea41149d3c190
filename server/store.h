/*
 * The store layer: every SQL statement finxd runs while serving, by noun
 * and verb (store_link_consume, store_conn_rotate, ...), with the
 * transactions, the sealing of tokens and the token columns.  Handlers,
 * workers and the callback call these functions and hold no SQL; the
 * schema lives in db/migrations.  Design: server/STORE.md.
 *
 * Every function takes the PostgreSQL connection its caller acquired
 * (db_acquire, db_acquire_bulk, a worker's own), so the caller decides
 * how long a connection is held; none is held across a finX call.
 * Failures: false or NULL, with db_failure() telling how (status.h maps
 * it); nothing is logged here.
 */
#ifndef FINXD_STORE_H
#define FINXD_STORE_H

#include <stdbool.h>
#include <libpq-fe.h>

#include "db.h"

struct config;

/* Register every statement table with db.c (prepared when connections
 * open); before db_init and before any worker connects. */
void store_init(const struct config *cfg);

/*
 * Sealing of secrets at rest (crypto.c), with the context that binds a
 * value to its table, row and column ("connections:<id>:refresh_token")
 * built here and nowhere else.  store_open: the plain text (free with
 * free_secret) or NULL when it does not open.
 */
char *store_seal(const char *table, const char *id, const char *column,
    const char *plain);
char *store_open(const char *table, const char *id, const char *column,
    const char *stored);

/*
 * A page of GET /v1/connections or GET /v1/links, newest first by
 * (created_at, id).  Every field is text as the API got it (checked
 * there), NULL when absent: status and expiring_before (connections
 * whose refresh token or consent runs out before it) filter, user_id
 * picks one user's rows, and a cursor (created_at in microseconds since
 * the epoch and the id of the last row shown) starts after that row.
 * rows: at most this many.
 */
struct store_page {
	const char *status, *user_id, *expiring_before;
	const char *cursor_micros, *cursor_id;
	const char *rows;
};

/* Operations (store_ops.c). */
/* Connections by status, in the order of store_conn_status_names. */
#define STORE_CONN_NSTATUS 3
extern const char *const store_conn_status_names[STORE_CONN_NSTATUS];
bool store_conn_counts(PGconn *c, long n[STORE_CONN_NSTATUS]);

#endif
