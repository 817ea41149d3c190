/*
 * finxd rekey: every sealed value re-sealed with the first configured
 * key, table by table, in batches (store_rekey_batch, store_conns.h).
 */
#include "rekey.h"

#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "db.h"
#include "store_conns.h"

/* Re-seal one table; false (said on stderr) on a database failure. */
static bool
rekey_table(PGconn *c, int table, long *total, long *bad)
{
	struct store_rekey k = { .table = table };
	const char *st, *msg;

	while (!k.done) {
		if (store_rekey_batch(c, &k))
			continue;
		st = db_failure_sqlstate();
		msg = db_failure_message();
		fprintf(stderr, "rekey: database error on %s: SQLSTATE %s, %s\n",
		    store_rekey_table(table), *st != '\0' ? st : "none",
		    msg != NULL ? msg : "no message");
		return false;
	}
	*total += k.changed;
	*bad += k.bad;
	return true;
}

bool
rekey_run(const struct config *cfg)
{
	char *err = NULL;
	PGconn *c = db_connect(cfg->database_url, &err);
	long total = 0, bad = 0;
	int i;

	if (c == NULL) {
		fprintf(stderr, "rekey: cannot connect: %s\n", err);
		free(err);
		return false;
	}
	for (i = 0; i < STORE_REKEY_NTABLES; i++) {
		if (!rekey_table(c, i, &total, &bad)) {
			PQfinish(c);
			return false;
		}
	}
	PQfinish(c);
	printf("rekey: %ld value(s) re-encrypted with key %s\n", total,
	    cfg->token_keys[0].id);
	if (bad > 0) {
		fprintf(stderr, "rekey: %ld value(s) could not be decrypted with "
				"any configured key\n",
		    bad);
		return false;
	}
	return true;
}
