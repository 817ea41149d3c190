/*
 * Store: what operations read about the whole database (the gauges of
 * /metrics).
 */
#include "store.h"

#include <string.h>

#include "store_int.h"

enum { S_CONN_COUNTS };

/* Sorted, as the statement's ORDER BY returns them. */
const char *const store_conn_status_names[STORE_CONN_NSTATUS] = { "active",
	"reauth_required", "revoked" };

const struct db_stmt store_ops_stmts[] = {
	[S_CONN_COUNTS] = { "ops_conn_counts",
	    "SELECT s, count(c.id) FROM unnest(ARRAY['active',"
	    "'reauth_required','revoked']) s LEFT JOIN connections c ON "
	    "c.status = s GROUP BY s ORDER BY s" },
	{ NULL, NULL },
};

bool
store_conn_counts(PGconn *c, long n[STORE_CONN_NSTATUS])
{
	PGresult *r = db_run(c, &store_ops_stmts[S_CONN_COUNTS], 0, NULL);
	int i;

	memset(n, 0, sizeof(long) * STORE_CONN_NSTATUS);
	for (i = 0; r != NULL && i < PQntuples(r) && i < STORE_CONN_NSTATUS;
	     i++)
		n[i] = db_long(r, i, 1, 0);
	PQclear(r);
	return r != NULL;
}
