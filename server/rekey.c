/*
 * finxd rekey: every sealed value re-sealed with the first configured
 * key, table by table, in batches (store_rekey_batch, store_conns.h).
 */
#include "rekey.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "crypto.h"
#include "db.h"
#include "log.h"
#include "store_conns.h"

/* auto, and rekey had not recorded every row sealed: poll for it. */
static atomic_bool watching;

bool
rekey_policy_apply(const struct config *cfg, PGconn *c)
{
	int p = cfg->allow_plaintext;
	bool sealed = false;

	if (p == PLAINTEXT_AUTO && !store_rekey_sealed(c, &sealed))
		return false;
	crypto_refuse_plaintext(p == PLAINTEXT_OFF ||
	    (p == PLAINTEXT_AUTO && sealed));
	atomic_store(&watching, p == PLAINTEXT_AUTO && !sealed);
	return true;
}

void
rekey_policy_poll(PGconn *c)
{
	bool sealed = false;

	if (!atomic_load(&watching) || !store_rekey_sealed(c, &sealed) ||
	    !sealed)
		return;
	crypto_refuse_plaintext(true);
	atomic_store(&watching, false);
	log_kv(LOG_INFO, "finxd rekey has sealed every stored token: "
			 "plain-text rows are refused from now on",
	    NULL);
}

static void
say_db_error(const char *on)
{
	const char *st = db_failure_sqlstate(), *msg = db_failure_message();

	fprintf(stderr, "rekey: database error on %s: SQLSTATE %s, %s\n", on,
	    *st != '\0' ? st : "none", msg != NULL ? msg : "no message");
}

/* Re-seal one table; false (said on stderr) on a database failure. */
static bool
rekey_table(PGconn *c, int table, long *total, long *bad)
{
	struct store_rekey k = { .table = table };

	while (!k.done) {
		if (store_rekey_batch(c, &k))
			continue;
		say_db_error(store_rekey_table(table));
		return false;
	}
	*total += k.changed;
	*bad += k.bad;
	return true;
}

/* Every table; false (said on stderr) on a database failure. */
static bool
rekey_tables(PGconn *c, long *total, long *bad)
{
	int i;

	for (i = 0; i < STORE_REKEY_NTABLES; i++)
		if (!rekey_table(c, i, total, bad))
			return false;
	return true;
}

/*
 * Re-seal everything; when nothing is left in plain text or unopenable,
 * record so (rekey_state).  False (said on stderr) on a database failure.
 */
static bool
rekey_all(const struct config *cfg, PGconn *c, long *total, long *bad)
{
	if (!rekey_policy_apply(cfg, c)) {
		say_db_error("rekey_state");
		return false;
	}
	if (!rekey_tables(c, total, bad))
		return false;
	if (*bad == 0 && !store_rekey_mark_sealed(c)) {
		say_db_error("rekey_state");
		return false;
	}
	return true;
}

bool
rekey_run(const struct config *cfg)
{
	char *err = NULL;
	PGconn *c = db_connect(cfg->database_url, &err);
	long total = 0, bad = 0;
	bool ok;

	if (c == NULL) {
		fprintf(stderr, "rekey: cannot connect: %s\n", err);
		free(err);
		return false;
	}
	ok = rekey_all(cfg, c, &total, &bad);
	PQfinish(c);
	if (!ok)
		return false;
	printf("rekey: %ld value(s) re-encrypted with key %s\n", total,
	    cfg->token_keys[0].id);
	if (bad > 0) {
		fprintf(stderr, "rekey: %ld value(s) could not be decrypted with "
				"any configured key, or are plain text that "
				"FINXD_ALLOW_PLAINTEXT_TOKENS refuses\n",
		    bad);
		return false;
	}
	return true;
}
