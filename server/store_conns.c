/*
 * Store: connections as the API reads and deletes them, and rekey's
 * re-sealing (store_conns.h).
 */
#include "store_conns.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "mem.h"
#include "secret.h"
#include "store.h"
#include "store_int.h"
#include "store_notify.h"
#include "tokens.h"

/* In the order of struct store_conn's fields (conn_row). */
#define CONN_COLS                                                             \
	"id, user_id, status, status_reason, scope, "                         \
	SQL_TS("access_expires_at") ", " SQL_TS("refresh_obtained_at") ", "   \
	SQL_TS("refresh_expires_at") ", " SQL_TS("consent_expires_at") ", "   \
	SQL_TS("least(refresh_expires_at, consent_expires_at)") ", "          \
	SQL_TS("last_refresh_at") ", " SQL_TS("last_sync_at") ", "            \
	"last_error, consecutive_failures, " SQL_TS("created_at") ", "        \
	SQL_TS("connected_at") ", " SQL_TS("revoked_at")

/*
 * A page (store.h): $1 status, $2 expiring_before, $3/$4 the cursor, $5
 * the rows; user: "" for everyone's, or the condition on $6, the user.
 * least() skips a NULL: either deadline before $2 selects the row.
 */
#define CONN_PAGE(user)                                                       \
	"SELECT " CONN_COLS ", " SQL_PAGE_MICROS " FROM connections WHERE "   \
	user "($1::text IS NULL OR status = $1) AND ($2::timestamptz IS "    \
	"NULL OR least(refresh_expires_at, consent_expires_at) < "            \
	"$2::timestamptz) AND " SQL_PAGE_AFTER("$3", "$4") " LIMIT $5::int"

/* Rows rekey locks and re-seals per transaction. */
#define REKEY_BATCH "200"
#define REKEY_AFTER                                                           \
	" WHERE id > $1::uuid ORDER BY id LIMIT " REKEY_BATCH " FOR UPDATE"

enum {
	S_GET,
	S_LIST_USER,
	S_PAGE,
	S_PAGE_USER,
	S_DEL_LOCK,
	S_DEL_REVOKE,
	S_REAUTH,
	S_RK_CONNS,
	S_RK_CONN_ACCESS,
	S_RK_CONN_REFRESH,
	S_RK_LINKS,
	S_RK_LINK_LOCATION,
	S_RK_REVOCATIONS,
	S_RK_REVOCATION_TOKEN,
	S_RK_IDEM,
	S_RK_IDEM_BODY,
	S_RK_SEALED_GET,
	S_RK_SEALED_SET,
};

const struct db_stmt store_conns_stmts[] = {
	[S_GET] = { "conn_get",
	    "SELECT " CONN_COLS " FROM connections WHERE id = $1" },
	[S_LIST_USER] = { "conn_list_user",
	    "SELECT " CONN_COLS " FROM connections WHERE user_id = $1 "
	    "ORDER BY created_at, id LIMIT 1000" },
	[S_PAGE] = { "conn_page", CONN_PAGE("") },
	[S_PAGE_USER] = { "conn_page_user", CONN_PAGE("user_id = $6 AND ") },
	[S_DEL_LOCK] = { "conn_delete_lock",
	    "SELECT refresh_token, access_token, status = 'revoked' FROM "
	    "connections WHERE id = $1 FOR NO KEY UPDATE" },
	/* The revocation and its event in one round trip. */
	[S_DEL_REVOKE] = { "conn_delete_revoke",
	    "WITH d AS (UPDATE connections SET access_token = NULL, "
	    "refresh_token = NULL, status = 'revoked', lease_holder = NULL, "
	    "lease_until = NULL, lease_generation = NULL, "
	    "status_reason = 'deleted', revoked_at = now(), "
	    "updated_at = now() WHERE id = $1 RETURNING id, user_id), "
	    "a AS (INSERT INTO events (kind, outcome, connection_id) "
	    "SELECT 'delete', 'revoked', id FROM d) " SQL_EVENT_INSERT
	    "SELECT 'connection.revoked', id, NULL, jsonb_build_object("
	    "'connection_id', id, 'user_id', user_id) FROM d" },
	[S_REAUTH] = { "conn_reauth_check",
	    "SELECT user_id, status = 'revoked' FROM connections "
	    "WHERE id = $1" },
	[S_RK_CONNS] = { "conn_rekey_connections",
	    "SELECT id, access_token, refresh_token FROM connections"
	    REKEY_AFTER },
	[S_RK_CONN_ACCESS] = { "conn_rekey_access_token",
	    "UPDATE connections SET access_token = $2 WHERE id = $1" },
	[S_RK_CONN_REFRESH] = { "conn_rekey_refresh_token",
	    "UPDATE connections SET refresh_token = $2 WHERE id = $1" },
	[S_RK_LINKS] = { "conn_rekey_links",
	    "SELECT id, location FROM links" REKEY_AFTER },
	[S_RK_LINK_LOCATION] = { "conn_rekey_link_location",
	    "UPDATE links SET location = $2 WHERE id = $1" },
	[S_RK_REVOCATIONS] = { "conn_rekey_revocations",
	    "SELECT id, token FROM revocations" REKEY_AFTER },
	[S_RK_REVOCATION_TOKEN] = { "conn_rekey_revocation_token",
	    "UPDATE revocations SET token = $2 WHERE id = $1" },
	[S_RK_IDEM] = { "conn_rekey_idempotency_keys",
	    "SELECT claim, body FROM idempotency_keys WHERE claim > $1::uuid "
	    "ORDER BY claim LIMIT " REKEY_BATCH " FOR UPDATE" },
	[S_RK_IDEM_BODY] = { "conn_rekey_idempotency_body",
	    "UPDATE idempotency_keys SET body = $2 WHERE claim = $1" },
	[S_RK_SEALED_GET] = { "conn_rekey_sealed_get",
	    "SELECT count(*) FROM rekey_state" },
	[S_RK_SEALED_SET] = { "conn_rekey_sealed_set",
	    "INSERT INTO rekey_state (all_sealed_at) VALUES (now()) "
	    "ON CONFLICT (only_row) DO UPDATE SET all_sealed_at = now()" },
	{ NULL, NULL },
};

static void
conn_row(const PGresult *r, int i, struct store_conn *k)
{
	k->id = db_val(r, i, 0);
	k->user_id = db_val(r, i, 1);
	k->status = db_val(r, i, 2);
	k->status_reason = db_val(r, i, 3);
	k->scope = db_val(r, i, 4);
	k->access_expires_at = db_val(r, i, 5);
	k->refresh_obtained_at = db_val(r, i, 6);
	k->refresh_expires_at = db_val(r, i, 7);
	k->consent_expires_at = db_val(r, i, 8);
	k->reauth_required_by = db_val(r, i, 9);
	k->last_refresh_at = db_val(r, i, 10);
	k->last_sync_at = db_val(r, i, 11);
	k->last_error = db_val(r, i, 12);
	k->consecutive_failures = db_long(r, i, 13, 0);
	k->created_at = db_val(r, i, 14);
	k->connected_at = db_val(r, i, 15);
	k->revoked_at = db_val(r, i, 16);
	k->created_micros = PQnfields(r) > 17 ? db_val(r, i, 17) : NULL;
}

/* Run a read of connections with n parameters into out. */
static bool
conns_read(PGconn *c, int stmt, int n, const char *const *params,
    struct store_conns *out)
{
	int i;

	memset(out, 0, sizeof(*out));
	out->res = db_run(c, &store_conns_stmts[stmt], n, params);
	if (out->res == NULL)
		return false;
	out->n = PQntuples(out->res);
	out->v = xcalloc((size_t)out->n + 1, sizeof(*out->v));
	for (i = 0; i < out->n; i++)
		conn_row(out->res, i, &out->v[i]);
	return true;
}

bool
store_conn_get(PGconn *c, const char *id, struct store_conns *out)
{
	return conns_read(c, S_GET, 1, &id, out);
}

bool
store_conn_list_user(PGconn *c, const char *user_id,
    struct store_conns *out)
{
	return conns_read(c, S_LIST_USER, 1, &user_id, out);
}

bool
store_conn_page(PGconn *c, const struct store_page *q,
    struct store_conns *out)
{
	const char *p[] = { q->status, q->expiring_before, q->cursor_micros,
		q->cursor_id, q->rows, q->user_id };

	return conns_read(c, q->user_id != NULL ? S_PAGE_USER : S_PAGE,
	    q->user_id != NULL ? 6 : 5, p, out);
}

void
store_conns_free(struct store_conns *l)
{
	free(l->v);
	PQclear(l->res);
	memset(l, 0, sizeof(*l));
}

bool
store_conn_queue_revocations(PGconn *c, const char *id,
    const char *sealed_refresh, const char *sealed_access)
{
	static const char *const kinds[] = { "refresh", "access" };
	static const char *const cols[] = { "refresh_token", "access_token" };
	const char *sealed[] = { sealed_refresh, sealed_access };
	int i;

	for (i = 0; i < 2; i++) {
		char *plain;
		bool ok;

		if (sealed[i] == NULL)
			continue;
		plain = store_open("connections", id, cols[i], sealed[i]);
		if (plain == NULL)
			continue; /* unreadable: nothing we could revoke */
		ok = tokens_queue_revocation(c, id, kinds[i], plain);
		free_secret(plain);
		if (!ok)
			return false;
	}
	return true;
}

struct del_tx {
	const char *id;
	bool found;
};

static bool
delete_body(PGconn *c, void *arg)
{
	struct del_tx *d = arg;
	PGresult *r = db_run(c, &store_conns_stmts[S_DEL_LOCK], 1, &d->id);
	bool ok;

	d->found = r != NULL && PQntuples(r) == 1;
	if (!d->found) {
		PQclear(r);
		return false;
	}
	ok = strcmp(PQgetvalue(r, 0, 2), "t") == 0 ||
	    (store_conn_queue_revocations(c, d->id, db_val(r, 0, 0),
		 db_val(r, 0, 1)) &&
		store_notify_condemn(c, d->id, STORE_NOTIFY_HOLD_S) &&
		db_do(c, &store_conns_stmts[S_DEL_REVOKE], 1, &d->id));
	PQclear(r);
	return ok;
}

enum store_conn_del
store_conn_delete(PGconn *c, const char *id)
{
	struct del_tx d = { id, false };

	if (db_tx(c, delete_body, &d))
		return SCD_DELETED;
	return d.found || db_failure() != DBF_NONE ? SCD_FAILED
						   : SCD_NOT_FOUND;
}

bool
store_conn_reauth_check(PGconn *c, const char *id, char **user_id,
    bool *revoked)
{
	PGresult *r = db_run(c, &store_conns_stmts[S_REAUTH], 1, &id);

	*user_id = NULL;
	*revoked = false;
	if (r == NULL)
		return false;
	if (PQntuples(r) == 1) {
		*user_id = xstrdup(PQgetvalue(r, 0, 0));
		*revoked = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
	}
	PQclear(r);
	return true;
}

/* The sealed columns of each table, with their statements. */
static const struct rekey_target {
	const char *table;
	int batch;
	const char *columns[2];
	int update[2];
} rekey_targets[STORE_REKEY_NTABLES] = {
	{ "connections", S_RK_CONNS, { "access_token", "refresh_token" },
	    { S_RK_CONN_ACCESS, S_RK_CONN_REFRESH } },
	{ "links", S_RK_LINKS, { "location", NULL }, { S_RK_LINK_LOCATION } },
	{ "revocations", S_RK_REVOCATIONS, { "token", NULL },
	    { S_RK_REVOCATION_TOKEN } },
	{ "idempotency_keys", S_RK_IDEM, { "body", NULL },
	    { S_RK_IDEM_BODY } },
};

const char *
store_rekey_table(int table)
{
	return rekey_targets[table].table;
}

/* One batch's effects, kept until it commits (db_tx may run it again). */
struct rekey_tx {
	const struct rekey_target *t;
	const char *after;
	long changed, bad;
	int rows;
	char last[40];
};

/* Re-seal one value; NULL when it need not or cannot change. */
static char *
reseal(const char *table, const char *id, const char *col, const char *v,
    long *bad)
{
	char *plain, *out;

	if (v == NULL || !crypto_needs_rekey(v))
		return NULL;
	if ((plain = store_open(table, id, col, v)) == NULL) {
		(*bad)++;
		return NULL;
	}
	out = store_seal(table, id, col, plain);
	free_secret(plain);
	return out;
}

static bool
rekey_row(PGconn *c, struct rekey_tx *x, const PGresult *r, int row)
{
	const char *id = PQgetvalue(r, row, 0);
	int k;

	for (k = 0; k < 2 && x->t->columns[k] != NULL; k++) {
		char *nv = reseal(x->t->table, id, x->t->columns[k],
		    db_val(r, row, k + 1), &x->bad);
		bool ok;

		if (nv == NULL)
			continue;
		ok = db_do(c, &store_conns_stmts[x->t->update[k]], 2,
		    (const char *[]){ id, nv });
		free(nv);
		if (!ok)
			return false;
		x->changed++;
	}
	return true;
}

static bool
rekey_body(PGconn *c, void *arg)
{
	struct rekey_tx *x = arg;
	PGresult *r = db_run(c, &store_conns_stmts[x->t->batch], 1, &x->after);
	int i;

	x->changed = x->bad = 0;
	x->rows = r != NULL ? PQntuples(r) : 0;
	for (i = 0; i < x->rows; i++) {
		if (!rekey_row(c, x, r, i)) {
			PQclear(r);
			return false;
		}
	}
	if (x->rows > 0)
		snprintf(x->last, sizeof(x->last), "%s",
		    PQgetvalue(r, x->rows - 1, 0));
	PQclear(r);
	return r != NULL;
}

bool
store_rekey_batch(PGconn *c, struct store_rekey *k)
{
	struct rekey_tx x = { &rekey_targets[k->table],
		k->after[0] != '\0' ? k->after
				    : "00000000-0000-0000-0000-000000000000",
		0, 0, 0, "" };

	if (!db_tx(c, rekey_body, &x))
		return false;
	k->changed += x.changed;
	k->bad += x.bad;
	k->done = x.rows == 0;
	if (x.rows > 0)
		memcpy(k->after, x.last, sizeof(k->after));
	return true;
}

bool
store_rekey_sealed(PGconn *c, bool *sealed)
{
	PGresult *r = db_run(c, &store_conns_stmts[S_RK_SEALED_GET], 0, NULL);

	if (r == NULL)
		return false;
	*sealed = db_long(r, 0, 0, 0) > 0;
	PQclear(r);
	return true;
}

bool
store_rekey_mark_sealed(PGconn *c)
{
	return db_do(c, &store_conns_stmts[S_RK_SEALED_SET], 0, NULL);
}
