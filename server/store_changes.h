/*
 * Store: the transaction change feed of one connection (the rows pulls
 * write into transaction_changes, store_data.c), for
 * GET /v1/connections/{id}/transactions/changes (api_changes.c).  A
 * false answer leaves how it failed in db_failure(); nothing is logged
 * here.
 */
#ifndef FINXD_STORE_CHANGES_H
#define FINXD_STORE_CHANGES_H

#include <stdbool.h>
#include <stdint.h>
#include <libpq-fe.h>

#include "store_data.h"

struct store_change {
	int64_t seq;                /* the feed's position after this one */
	const char *kind;           /* "added", "modified" or "removed" */
	const char *transaction_id; /* our id, as text */
	/* added or modified, and the transaction is still there: txn holds
	 * it as it is now (a later change of it has its own row) */
	bool shown;
	struct store_txn txn;
};
struct store_changes {
	bool found; /* the connection exists and is not revoked */
	int n;
	struct store_change *v;
	PGresult *held; /* the text of the rows */
};
/*
 * Up to rows changes of connection conn_id after position after (0:
 * from the beginning), oldest first.  Text is borrowed from out: free it
 * with store_changes_free.
 */
bool store_changes_read(PGconn *c, const char *conn_id, int64_t after,
    long rows, struct store_changes *out);
void store_changes_free(struct store_changes *l);

#endif
