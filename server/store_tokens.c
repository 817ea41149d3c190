/*
 * Store: token columns and revocations (store_tokens.h, tokens.h).
 */
#include "store_tokens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "mem.h"
#include "secret.h"
#include "store.h"
#include "store_int.h"
#include "text.h"

enum {
	S_GRANT,
	S_ROTATE,
	S_ROTATE_GRANT,
	S_STATE,
	S_TOKEN,
	S_HANDOUT,
	S_REV_QUEUE,
	S_REV_CLAIM,
	S_REV_CLAIM_CONN,
	S_REV_DONE,
	S_REV_RETRY,
	S_REV_PUSH_ACCESS,
	S_REV_COUNT,
};

const struct db_stmt store_tokens_stmts[] = {
	[S_GRANT] = { "tokens_conn_grant",
	    "UPDATE connections SET access_token = $2, "
	    "access_expires_at = now() + make_interval(secs => $3::float8), "
	    "access_lifetime_s = $4::int, refresh_token = $5, "
	    "refresh_obtained_at = CASE WHEN $5::text IS NULL THEN NULL ELSE "
	    "now() - make_interval(secs => $9::float8) END, "
	    "refresh_expires_at = CASE WHEN $5::text IS NULL THEN NULL ELSE "
	    "now() + make_interval(secs => $6::float8) END, "
	    "scope = $7, consent_expires_at = now() + "
	    "make_interval(secs => $8::float8), connected_at = now(), "
	    "refresh_due_at = now() + make_interval(secs => $10::float8), "
	    "status = 'active', status_reason = NULL, last_error = NULL, "
	    "consecutive_failures = 0, next_attempt_at = NULL, "
	    "failing_since = NULL, failing_notice_at = NULL, "
	    "token_generation = token_generation + 1, lease_holder = NULL, "
	    "lease_until = NULL, lease_generation = NULL, updated_at = now() "
	    "WHERE id = $1" },
	/*
	 * One statement: access token, its expiry and (when finX sent one)
	 * the rotated refresh token change together or not at all, and only
	 * on the generation the lease presented.  The row is locked first
	 * (o) to read the streak it ends: after connection.refresh_failing
	 * was sent for it, this success sends connection.recovered, once
	 * (a compare-and-set succeeds once per generation).
	 */
	[S_ROTATE] = { "tokens_conn_rotate",
	    "WITH o AS (SELECT id AS o_id, user_id AS o_user, failing_since "
	    "AS o_since, failing_notice_at AS o_told FROM connections WHERE "
	    "id = $1 AND token_generation = $2::bigint AND status = 'active' "
	    "FOR NO KEY UPDATE), e AS (" SQL_EVENT_INSERT_ONCE "SELECT "
	    "'connection.recovered', o_id, NULL, jsonb_build_object("
	    "'connection_id', o_id, 'user_id', o_user), 'recovered:' || o_id "
	    "|| ':' || " SQL_FAILING_KEY("o_since") " FROM o WHERE o_told IS "
	    "NOT NULL" SQL_EVENT_ONCE ") "
	    "UPDATE connections SET access_token = $3, "
	    "access_expires_at = now() + make_interval(secs => $4::float8), "
	    "access_lifetime_s = $5::int, "
	    "refresh_token = coalesce($6, refresh_token), "
	    "refresh_obtained_at = CASE WHEN $6::text IS NULL "
	    "  THEN refresh_obtained_at "
	    "  ELSE now() - make_interval(secs => $10::float8) END, "
	    "refresh_expires_at = CASE WHEN $6::text IS NULL "
	    "  THEN refresh_expires_at "
	    "  ELSE now() + make_interval(secs => $7::float8) END, "
	    "scope = coalesce($8, scope), "
	    "last_refresh_at = now() - make_interval(secs => $10::float8), "
	    "refresh_due_at = now() + make_interval(secs => $9::float8), "
	    "last_error = NULL, consecutive_failures = 0, "
	    "next_attempt_at = NULL, token_generation = token_generation + 1, "
	    "lease_holder = NULL, lease_until = NULL, lease_generation = NULL, "
	    "failing_since = NULL, failing_notice_at = NULL, "
	    "updated_at = now() FROM o "
	    "WHERE id = o.o_id AND token_generation = $2::bigint AND "
	    "status = 'active'" },
	[S_ROTATE_GRANT] = { "tokens_conn_same_grant",
	    "SELECT status = 'active' AND ($2::text IS NULL OR "
	    "connected_at::text = $2) FROM connections WHERE id = $1 FOR NO "
	    "KEY UPDATE" },
	[S_STATE] = { "tokens_conn_state",
	    "SELECT status, status_reason, refresh_token IS NOT NULL, "
	    "token_generation, coalesce(extract(epoch FROM access_expires_at - "
	    "now()), -1), coalesce(access_lifetime_s, 300), "
	    "coalesce(next_attempt_at > now(), false) FROM connections "
	    "WHERE id = $1" },
	[S_TOKEN] = { "tokens_conn_token",
	    "SELECT access_token, to_char(access_expires_at AT TIME ZONE "
	    "'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
	    "extract(epoch FROM access_expires_at - now()), "
	    "coalesce(access_lifetime_s, 300), last_handout_at IS NULL OR "
	    "last_handout_at < now() - make_interval(secs => "
	    "coalesce(access_lifetime_s, 300) / 4.0), refresh_due_at <= now() "
	    "AND lease_holder IS NULL FROM connections WHERE id = $1 AND "
	    "status = 'active' AND access_token IS NOT NULL AND "
	    "access_expires_at > now()" },
	[S_HANDOUT] = { "tokens_conn_handout",
	    "UPDATE connections SET last_handout_at = now(), refresh_due_at = "
	    "CASE WHEN lease_holder IS NULL THEN least(refresh_due_at, "
	    "access_expires_at - make_interval(secs => $2::int)) ELSE "
	    "refresh_due_at END WHERE id = $1" },
	/* An access token comes due a little after the refresh token queued
	 * with it, so the workers revoke the refresh token first. */
	[S_REV_QUEUE] = { "tokens_revocation_queue",
	    "INSERT INTO revocations (id, connection_id, kind, token, "
	    "next_attempt_at) VALUES ($1, $2, $3, $4, clock_timestamp() + "
	    "CASE WHEN $3 = 'access' THEN interval '" REVOKE_ACCESS_AFTER
	    "' ELSE interval '0' END)" },
	/*
	 * A claim commits at once with its deadline in next_attempt_at
	 * ($1 seconds): no transaction stays open while finX answers (the
	 * event log's readers wait for the oldest one), and a process that
	 * dies mid-call leaves a claim that runs out.  Revoking twice is
	 * harmless.
	 */
#define REV_CLAIM(where, order)                                               \
	"UPDATE revocations r SET attempts = r.attempts + 1, next_attempt_at " \
	"= now() + make_interval(secs => $1::int) FROM (SELECT id FROM "      \
	"revocations WHERE " where " ORDER BY " order " LIMIT 1 FOR UPDATE "  \
	"SKIP LOCKED) d WHERE r.id = d.id RETURNING r.id, r.token, "          \
	"r.attempts, r.kind"
	[S_REV_CLAIM] = { "tokens_revocation_claim",
	    REV_CLAIM("next_attempt_at <= now() AND "
		SQL_NOTIFY_NOT_HELD("revocations"), "next_attempt_at") },
	[S_REV_CLAIM_CONN] = { "tokens_revocation_claim_conn",
	    REV_CLAIM("connection_id = $2 AND next_attempt_at <= now() + "
		      "interval '" REVOKE_ACCESS_AFTER "' AND "
		      SQL_NOTIFY_NOT_HELD("revocations"),
		"kind DESC, next_attempt_at") },
#undef REV_CLAIM
	[S_REV_DONE] = { "tokens_revocation_done",
	    "DELETE FROM revocations WHERE id = $1" },
	[S_REV_RETRY] = { "tokens_revocation_retry",
	    "UPDATE revocations SET "
	    "last_error = $2, next_attempt_at = now() + "
	    "make_interval(secs => $3::int) WHERE id = $1" },
	[S_REV_PUSH_ACCESS] = { "tokens_revocation_push_access",
	    "UPDATE revocations SET next_attempt_at = "
	    "greatest(next_attempt_at, now() + make_interval("
	    "secs => $2::int) + interval '" REVOKE_ACCESS_AFTER "') WHERE "
	    "connection_id = (SELECT connection_id FROM revocations WHERE id = "
	    "$1) AND kind = 'access'" },
	[S_REV_COUNT] = { "tokens_revocation_count",
	    "SELECT count(*) FROM revocations WHERE connection_id = $1" },
	{ NULL, NULL },
};

void
tokens_prepare(const char *conn_id, const struct finx_tokens *t, long due_s,
    struct token_cols *out)
{
	int64_t now = now_unix_ms();
	double ago = t->sent_ms > 0 && now > t->sent_ms
	    ? (double)(now - t->sent_ms) / 1000.0
	    : 0.0;
	long rttl = t->refresh_expires_in > 0 ? t->refresh_expires_in
					      : REFRESH_TTL_DEFAULT;

	out->access = store_seal("connections", conn_id, "access_token",
	    t->access_token);
	out->refresh = t->refresh_token
	    ? store_seal("connections", conn_id, "refresh_token",
		  t->refresh_token)
	    : NULL;
	out->scope = t->scope;
	snprintf(out->ttl, sizeof(out->ttl), "%ld", tokens_access_ttl(t));
	snprintf(out->left, sizeof(out->left), "%.3f",
	    (double)tokens_access_ttl(t) - ago);
	snprintf(out->rleft, sizeof(out->rleft), "%.3f", (double)rttl - ago);
	snprintf(out->cleft, sizeof(out->cleft), "%.3f",
	    (double)CONSENT_TTL_DEFAULT - ago);
	snprintf(out->ago, sizeof(out->ago), "%.3f", ago);
	snprintf(out->due, sizeof(out->due), "%.3f", (double)due_s - ago);
}

void
tokens_cols_free(struct token_cols *cols)
{
	free(cols->access);
	free(cols->refresh);
	cols->access = cols->refresh = NULL;
}

bool
tokens_store_grant(PGconn *c, const char *conn_id, const struct finx_tokens *t)
{
	struct token_cols k;
	bool ok;

	tokens_prepare(conn_id, t, tokens_due_after(t, false, 0), &k);
	ok = db_do(c, &store_tokens_stmts[S_GRANT], 10,
	    (const char *[]){ conn_id, k.access, k.left, k.ttl, k.refresh,
		k.rleft, k.scope, k.cleft, k.ago, k.due });
	tokens_cols_free(&k);
	return ok;
}

bool
tokens_queue_revocation(PGconn *c, const char *conn_id, const char *kind,
    const char *plain)
{
	char *rid = uuid_new();
	char *sealed = store_seal("revocations", rid, "token", plain);
	bool ok;

	ok = db_do(c, &store_tokens_stmts[S_REV_QUEUE], 4,
	    (const char *[]){ rid, conn_id, kind, sealed });
	free(rid);
	free(sealed);
	return ok;
}

/* The transaction of a compare-and-set that missed. */
struct missed {
	const char *conn_id, *grant;
	const struct finx_tokens *t;
	enum tokens_cas res;
};

/*
 * The row is no longer at the generation the lease presented.  Same
 * grant and still active: the rotation landed already (a journal
 * replayed after a lost commit acknowledgement, or a crash before its
 * file was removed) and later refreshes went on from it; revoking it now
 * would revoke the live grant.  Otherwise the connection was deleted,
 * condemned or renewed by a reauth since the lease was taken: nobody may
 * ever present these tokens, so they go to finX's revocation, refresh
 * token first.
 */
static bool
rotate_missed(PGconn *c, void *arg)
{
	struct missed *m = arg;
	PGresult *r = db_run(c, &store_tokens_stmts[S_ROTATE_GRANT], 2,
	    (const char *[]){ m->conn_id, m->grant });
	bool same;

	if (r == NULL)
		return false;
	if (PQntuples(r) == 0) {
		PQclear(r);
		m->res = TOK_GONE;
		return true;
	}
	same = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	m->res = same ? TOK_STORED : TOK_REVOKED;
	return same ||
	    ((m->t->refresh_token == NULL ||
		 tokens_queue_revocation(c, m->conn_id, "refresh",
		     m->t->refresh_token)) &&
		tokens_queue_revocation(c, m->conn_id, "access",
		    m->t->access_token));
}

enum tokens_cas
store_conn_rotate(PGconn *c, const char *conn_id, const char *grant,
    long gen, const struct finx_tokens *t, long due_s)
{
	struct missed m = { conn_id, grant, t, TOK_DB_ERROR };
	struct token_cols k;
	char g[24];
	PGresult *r;
	int n;

	snprintf(g, sizeof(g), "%ld", gen);
	tokens_prepare(conn_id, t, due_s, &k);
	r = db_run(c, &store_tokens_stmts[S_ROTATE], 10,
	    (const char *[]){ conn_id, g, k.access, k.left, k.ttl, k.refresh,
		k.rleft, k.scope, k.due, k.ago });
	tokens_cols_free(&k);
	if (r == NULL)
		return TOK_DB_ERROR;
	n = (int)strtol(PQcmdTuples(r), NULL, 10);
	PQclear(r);
	if (n == 1)
		return TOK_STORED;
	return db_tx(c, rotate_missed, &m) ? m.res : TOK_DB_ERROR;
}

static bool
is_t(const PGresult *r, int col)
{
	return strcmp(PQgetvalue(r, 0, col), "t") == 0;
}

int
store_conn_state(PGconn *c, const char *id, struct conn_state *st)
{
	PGresult *r = db_run(c, &store_tokens_stmts[S_STATE], 1,
	    (const char *[]){ id });
	const char *status, *reason;
	int got;

	memset(st, 0, sizeof(*st));
	if (r == NULL)
		return -1;
	if ((got = PQntuples(r) == 1)) {
		status = PQgetvalue(r, 0, 0);
		reason = db_val(r, 0, 1);
		st->active = strcmp(status, "active") == 0;
		st->reauth = strcmp(status, "reauth_required") == 0;
		st->reason = reason ? xstrdup(reason) : NULL;
		st->has_refresh = is_t(r, 2);
		st->gen = db_long(r, 0, 3, 0);
		st->access_left = strtod(PQgetvalue(r, 0, 4), NULL);
		st->lifetime = db_long(r, 0, 5, 300);
		st->backing_off = is_t(r, 6);
	}
	PQclear(r);
	return got;
}

void
store_conn_state_free(struct conn_state *st)
{
	free(st->reason);
	st->reason = NULL;
}

int
store_conn_token(PGconn *c, const char *id, struct conn_token *tk)
{
	PGresult *r = db_run(c, &store_tokens_stmts[S_TOKEN], 1,
	    (const char *[]){ id });
	int got;

	memset(tk, 0, sizeof(*tk));
	if (r == NULL)
		return -1;
	if ((got = PQntuples(r) == 1)) {
		tk->sealed = xstrdup(PQgetvalue(r, 0, 0));
		snprintf(tk->expires_at, sizeof(tk->expires_at), "%s",
		    PQgetvalue(r, 0, 1));
		tk->access_left = strtod(PQgetvalue(r, 0, 2), NULL);
		tk->lifetime = db_long(r, 0, 3, 300);
		tk->stale = is_t(r, 4);
		tk->due = is_t(r, 5);
	}
	PQclear(r);
	return got;
}

void
store_conn_token_free(struct conn_token *tk)
{
	free(tk->sealed);
	tk->sealed = NULL;
}

bool
store_conn_mark_handout(PGconn *c, const char *id, long ahead_s)
{
	char ahead[24];

	snprintf(ahead, sizeof(ahead), "%ld", ahead_s);
	return db_do(c, &store_tokens_stmts[S_HANDOUT], 2,
	    (const char *[]){ id, ahead });
}

int
store_revocation_claim(PGconn *c, const char *connection_id,
    long deadline_s, struct revocation *rv)
{
	char dl[24];
	PGresult *r;
	int got;

	snprintf(dl, sizeof(dl), "%ld", deadline_s);
	r = connection_id != NULL
	    ? db_run(c, &store_tokens_stmts[S_REV_CLAIM_CONN], 2,
		  (const char *[]){ dl, connection_id })
	    : db_run(c, &store_tokens_stmts[S_REV_CLAIM], 1,
		  (const char *[]){ dl });

	memset(rv, 0, sizeof(*rv));
	if (r == NULL)
		return -1;
	if ((got = PQntuples(r) == 1)) {
		rv->id = xstrdup(PQgetvalue(r, 0, 0));
		rv->sealed = xstrdup(PQgetvalue(r, 0, 1));
		rv->attempts = (int)db_long(r, 0, 2, 1);
		rv->refresh = strcmp(PQgetvalue(r, 0, 3), "refresh") == 0;
	}
	PQclear(r);
	return got;
}

void
store_revocation_free(struct revocation *rv)
{
	free(rv->id);
	free(rv->sealed);
	memset(rv, 0, sizeof(*rv));
}

bool
store_revocation_done(PGconn *c, const struct revocation *rv)
{
	return db_do(c, &store_tokens_stmts[S_REV_DONE], 1,
	    (const char *[]){ rv->id });
}

bool
store_revocation_retry(PGconn *c, const struct revocation *rv,
    const char *error, long backoff_s)
{
	char backoff[24];

	snprintf(backoff, sizeof(backoff), "%ld", backoff_s);
	return db_do(c, &store_tokens_stmts[S_REV_RETRY], 3,
		   (const char *[]){ rv->id, error, backoff }) &&
	    (!rv->refresh ||
		db_do(c, &store_tokens_stmts[S_REV_PUSH_ACCESS], 2,
		    (const char *[]){ rv->id, backoff }));
}

int
store_revocation_count(PGconn *c, const char *connection_id)
{
	PGresult *r = db_run(c, &store_tokens_stmts[S_REV_COUNT], 1,
	    (const char *[]){ connection_id });
	int n = r != NULL ? (int)db_long(r, 0, 0, 0) : -1;

	PQclear(r);
	return n;
}
