/*
 * Store: idempotency keys (store_idem.h).
 */
#include "store_idem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "secret.h"
#include "store.h"
#include "store_int.h"

/* How long an answer is kept (SPEC: 24 hours). */
#define IDEM_FRESH "now() - interval '24 hours'"
#define IDEM_ROW "api_key_id = $1 AND key = $2"

enum {
	S_CLAIM,
	S_FIND,
	S_COMPLETE,
	S_RELEASE,
	S_PRUNE,
};

const struct db_stmt store_idem_stmts[] = {
	[S_CLAIM] = { "idem_claim",
	    "INSERT INTO idempotency_keys AS k (api_key_id, key, method, "
	    "path, body_sha256, claim, locked_until) VALUES ($1, $2, $3, $4, "
	    "decode($5, 'hex'), $6::uuid, now() + $7::bigint * interval "
	    "'1 millisecond') ON CONFLICT (api_key_id, key) DO UPDATE SET "
	    "method = EXCLUDED.method, path = EXCLUDED.path, body_sha256 = "
	    "EXCLUDED.body_sha256, claim = EXCLUDED.claim, locked_until = "
	    "EXCLUDED.locked_until, status = NULL, content_type = NULL, body "
	    "= NULL, created_at = now() WHERE (k.status IS NULL AND "
	    "k.locked_until < now()) OR k.created_at < " IDEM_FRESH
	    " RETURNING 1" },
	[S_FIND] = { "idem_find",
	    "SELECT method = $3 AND path = $4 AND body_sha256 = decode($5, "
	    "'hex'), status, locked_until > now(), claim, content_type, body "
	    "FROM idempotency_keys WHERE " IDEM_ROW " AND created_at > "
	    IDEM_FRESH },
	[S_COMPLETE] = { "idem_complete",
	    "UPDATE idempotency_keys SET status = $4::int, content_type = $5, "
	    "body = $6 WHERE " IDEM_ROW " AND claim = $3::uuid AND status IS "
	    "NULL" },
	[S_RELEASE] = { "idem_release",
	    "DELETE FROM idempotency_keys WHERE " IDEM_ROW " AND claim = "
	    "$3::uuid AND status IS NULL" },
	[S_PRUNE] = { "idem_prune",
	    "DELETE FROM idempotency_keys WHERE created_at < " IDEM_FRESH },
	{ NULL, NULL },
};

int
store_idem_claim(PGconn *c, const struct store_idem_req *q, const char *claim)
{
	char ms[24];
	const char *p[7] = { q->api_key_id, q->key, q->method, q->path,
		q->body_sha256_hex, claim, ms };
	PGresult *r;
	int got;

	snprintf(ms, sizeof(ms), "%ld", q->lock_ms);
	if ((r = db_run(c, &store_idem_stmts[S_CLAIM], 7, p)) == NULL)
		return -1;
	got = PQntuples(r) == 1;
	PQclear(r);
	return got;
}

void
store_idem_answer_free(struct store_idem_answer *a)
{
	free(a->claim);
	free(a->content_type);
	free(a->body);
	memset(a, 0, sizeof(*a));
}

enum store_idem_state
store_idem_find(PGconn *c, const struct store_idem_req *q,
    struct store_idem_answer *out)
{
	const char *p[5] = { q->api_key_id, q->key, q->method, q->path,
		q->body_sha256_hex };
	enum store_idem_state st;
	PGresult *r;

	if ((r = db_run(c, &store_idem_stmts[S_FIND], 5, p)) == NULL)
		return SI_FAILED;
	if (PQntuples(r) != 1)
		st = SI_GONE;
	else if (PQgetisnull(r, 0, 1) && strcmp(PQgetvalue(r, 0, 2), "t") != 0)
		st = SI_EXPIRED; /* since the claim: whoever's, it is free */
	else if (strcmp(PQgetvalue(r, 0, 0), "t") != 0)
		st = SI_OTHER;
	else if (PQgetisnull(r, 0, 1))
		st = SI_RUNNING;
	else {
		st = SI_ANSWERED;
		out->status = (int)db_long(r, 0, 1, 0);
		out->claim = db_dup(r, 0, 3);
		out->content_type = db_dup(r, 0, 4);
		out->body = db_dup(r, 0, 5);
	}
	PQclear(r);
	return st;
}

bool
store_idem_complete(PGconn *c, const struct store_idem_req *q,
    const char *claim, int status, const char *content_type,
    const char *body, bool *lost)
{
	char st[16];
	char *sealed = store_seal("idempotency_keys", claim, "body", body);
	const char *p[6] = { q->api_key_id, q->key, claim, st, content_type,
		sealed };
	PGresult *r;

	snprintf(st, sizeof(st), "%d", status);
	r = db_run(c, &store_idem_stmts[S_COMPLETE], 6, p);
	free(sealed);
	*lost = false;
	if (r == NULL)
		return false;
	*lost = strcmp(PQcmdTuples(r), "1") != 0;
	PQclear(r);
	return !*lost;
}

char *
store_idem_open(const struct store_idem_answer *a)
{
	if (a->claim == NULL || a->body == NULL)
		return NULL;
	return store_open("idempotency_keys", a->claim, "body", a->body);
}

bool
store_idem_release(PGconn *c, const struct store_idem_req *q,
    const char *claim)
{
	const char *p[3] = { q->api_key_id, q->key, claim };

	return db_do(c, &store_idem_stmts[S_RELEASE], 3, p);
}

bool
store_idem_prune(PGconn *c)
{
	return db_do(c, &store_idem_stmts[S_PRUNE], 0, NULL);
}
