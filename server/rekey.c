/*
 * Re-encryption in batches.  Each batch locks its rows (FOR UPDATE), so a
 * refresh running in another process either finishes first (and we see
 * its new tokens) or waits for us; nothing is overwritten with stale data.
 */
#include "rekey.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "crypto.h"
#include "db.h"
#include "log.h"
#include "mem.h"
#include "secret.h"

#define BATCH 200

struct target {
	const char *table;
	const char *columns[2];
};

static const struct target targets[] = {
	{ "connections", { "access_token", "refresh_token" } },
	{ "links", { "location", NULL } },
	{ "revocations", { "token", NULL } },
};

/* Re-seal one column value; NULL when it need not or cannot change. */
static char *
reseal(const char *table, const char *id, const char *col, const char *v,
    long *bad)
{
	char *aad, *plain, *out;

	if (v == NULL || !crypto_needs_rekey(v))
		return NULL;
	aad = crypto_aad(table, id, col);
	if ((plain = crypto_open(v, aad, NULL)) == NULL) {
		(*bad)++;
		free(aad);
		return NULL;
	}
	out = crypto_seal(plain, aad);
	free_secret(plain);
	free(aad);
	return out;
}

/* One batch of one table; returns rows changed, or -1 on error. */
static long
rekey_batch(PGconn *c, const struct target *t, char **after, long *bad)
{
	char *sql;
	PGresult *r;
	long changed = 0;
	int i, k;

	sql = xasprintf("SELECT id, %s%s%s FROM %s WHERE id > $1::uuid "
			"ORDER BY id LIMIT %d FOR UPDATE",
	    t->columns[0], t->columns[1] ? ", " : "",
	    t->columns[1] ? t->columns[1] : "", t->table, BATCH);
	if (!db_cmd(c, "BEGIN", 0, NULL)) {
		free(sql);
		return -1;
	}
	r = db_exec(c, sql, 1, (const char *[]){ *after });
	free(sql);
	if (r == NULL) {
		PQclear(PQexec(c, "ROLLBACK"));
		return -1;
	}
	for (i = 0; i < PQntuples(r); i++) {
		const char *id = PQgetvalue(r, i, 0);

		for (k = 0; k < 2 && t->columns[k]; k++) {
			char *nv = reseal(t->table, id, t->columns[k],
			    db_val(r, i, k + 1), bad);
			char *upd;

			if (nv == NULL)
				continue;
			upd = xasprintf("UPDATE %s SET %s = $2 WHERE id = $1",
			    t->table, t->columns[k]);
			if (!db_cmd(c, upd, 2, (const char *[]){ id, nv })) {
				free(upd);
				free(nv);
				PQclear(r);
				PQclear(PQexec(c, "ROLLBACK"));
				return -1;
			}
			free(upd);
			free(nv);
			changed++;
		}
	}
	if (PQntuples(r) > 0) {
		free(*after);
		*after = xstrdup(PQgetvalue(r, PQntuples(r) - 1, 0));
	} else
		changed = -2; /* done */
	PQclear(r);
	if (!db_cmd(c, "COMMIT", 0, NULL))
		return -1;
	return changed;
}

bool
rekey_run(const struct config *cfg)
{
	char *err = NULL;
	PGconn *c = db_connect(cfg->database_url, &err);
	size_t i;
	long total = 0, bad = 0;

	if (c == NULL) {
		fprintf(stderr, "rekey: cannot connect: %s\n", err);
		free(err);
		return false;
	}
	for (i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
		char *after = xstrdup("00000000-0000-0000-0000-000000000000");
		long n;

		while ((n = rekey_batch(c, &targets[i], &after, &bad)) >= 0)
			total += n;
		free(after);
		if (n == -1) {
			fprintf(stderr, "rekey: database error on %s\n",
			    targets[i].table);
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
