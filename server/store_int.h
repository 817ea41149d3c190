/*
 * Inside the store layer only: the statement table of each store module
 * (store.c registers them all) and helpers the modules share.
 */
#ifndef FINXD_STORE_INT_H
#define FINXD_STORE_INT_H

#include "db.h"

/* RFC 3339 UTC text of a timestamptz column, for SELECT lists. */
#define SQL_TS(col)                                                          \
	"to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

extern const struct db_stmt store_data_stmts[];
extern const struct db_stmt store_idem_stmts[];
extern const struct db_stmt store_links_stmts[];
extern const struct db_stmt store_ops_stmts[];
extern const struct db_stmt store_conns_stmts[];
extern const struct db_stmt store_lease_stmts[];
extern const struct db_stmt store_sync_stmts[];
extern const struct db_stmt store_tokens_stmts[];

#endif
