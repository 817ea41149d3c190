/*
 * Store: the transaction change feed (store_changes.h).  The rows are
 * written by a pull's write transaction (store_data.c, TXNS_UPSERT and
 * TXNS_VANISHED) with a per-connection seq taken under the pulls row's
 * lock, so seq order is commit order and a page read here never misses
 * a change that a later page would show below it.
 */
#include "store_changes.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "store_int.h"

enum { S_FEED };

/*
 * One row for a connection that exists and is not revoked even when it
 * has no changes (its change columns NULL), none for one that does not:
 * a 404 and a page in one round trip.  A change whose transaction is
 * gone (removed later) comes without it.
 */
const struct db_stmt store_changes_stmts[] = {
	[S_FEED] = { "changes_feed",
	    "SELECT " SQL_TXN_COLS ", ch.seq, ch.kind, ch.transaction_id "
	    "FROM connections c LEFT JOIN LATERAL (SELECT seq, kind, "
	    "transaction_id FROM transaction_changes WHERE connection_id = "
	    "c.id AND seq > $2::bigint ORDER BY seq LIMIT $3::int) ch ON true "
	    "LEFT JOIN transactions t ON t.id = ch.transaction_id AND ch.kind "
	    "<> 'removed' WHERE c.id = $1::uuid AND c.status <> 'revoked' "
	    "ORDER BY ch.seq" },
	{ NULL, NULL },
};

static void
change_row(struct store_change *ch, const PGresult *r, int i)
{
	ch->seq = strtoll(PQgetvalue(r, i, SQL_TXN_NCOLS), NULL, 10);
	ch->kind = PQgetvalue(r, i, SQL_TXN_NCOLS + 1);
	ch->transaction_id = PQgetvalue(r, i, SQL_TXN_NCOLS + 2);
	ch->shown = !PQgetisnull(r, i, 0);
	if (ch->shown)
		store_txn_fill(&ch->txn, r, i);
}

bool
store_changes_read(PGconn *c, const char *conn_id, int64_t after, long rows,
    struct store_changes *out)
{
	char after_s[24], rows_s[24];
	PGresult *r;
	int i, n;

	memset(out, 0, sizeof(*out));
	snprintf(after_s, sizeof(after_s), "%" PRId64, after);
	snprintf(rows_s, sizeof(rows_s), "%ld", rows);
	r = db_run(c, &store_changes_stmts[S_FEED], 3,
	    (const char *[]){ conn_id, after_s, rows_s });
	if (r == NULL)
		return false;
	out->held = r;
	n = PQntuples(r);
	out->found = n > 0;
	/* The one row of a connection without changes has no seq. */
	if (n == 1 && PQgetisnull(r, 0, SQL_TXN_NCOLS))
		n = 0;
	out->v = xcalloc((size_t)n + 1, sizeof(*out->v));
	for (i = 0; i < n; i++)
		change_row(&out->v[i], r, i);
	out->n = n;
	return true;
}

void
store_changes_free(struct store_changes *l)
{
	free(l->v);
	PQclear(l->held);
	memset(l, 0, sizeof(*l));
}
