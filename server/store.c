/*
 * The store layer's registry: the statement tables of every store module,
 * handed to db.c so each connection prepares them all when it opens.  A
 * statement in a table that does not parse against the schema shows at
 * start ("statements not prepared" in the log), not on first use.
 */
#include "store.h"

#include <stdlib.h>

#include "config.h"
#include "crypto.h"
#include "store_int.h"

static const struct db_stmt *const tables[] = {
	store_changes_stmts,
	store_data_stmts,
	store_events_stmts,
	store_idem_stmts,
	store_links_stmts,
	store_ops_stmts,
	store_conns_stmts,
	store_lease_stmts,
	store_notices_stmts,
	store_sync_stmts,
	store_tokens_stmts,
	store_notify_stmts,
};

void
store_init(const struct config *cfg)
{
	db_register(tables, (int)(sizeof(tables) / sizeof(tables[0])),
	    cfg->db_prepared);
}

char *
store_seal(const char *table, const char *id, const char *column,
    const char *plain)
{
	char *aad = crypto_aad(table, id, column);
	char *s = crypto_seal(plain, aad);

	free(aad);
	return s;
}

char *
store_open(const char *table, const char *id, const char *column,
    const char *stored)
{
	char *aad = crypto_aad(table, id, column);
	char *p = crypto_open(stored, aad, NULL);

	free(aad);
	return p;
}
