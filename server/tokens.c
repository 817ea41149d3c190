/*
 * Writing tokens: see tokens.h for the rules.
 */
#include "tokens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "crypto.h"
#include "db.h"
#include "secret.h"

static long margin_s = 300, keepalive_s = 7L * 86400;

void
tokens_init(const struct config *cfg)
{
	margin_s = cfg->refresh_margin_s;
	keepalive_s = cfg->refresh_keepalive_s;
}

long
tokens_due_in(long lifetime, long margin, long keepalive)
{
	long m = margin < lifetime / 2 ? margin : lifetime / 2;
	long due = lifetime - m;

	if (due < 1)
		due = 1;
	return due < keepalive ? due : keepalive;
}

long
tokens_backoff_s(int failures, unsigned rnd)
{
	long base = 5;
	int i;

	for (i = 1; i < failures && base < 900; i++)
		base *= 2;
	if (base > 900)
		base = 900;
	/* Between half and all of base. */
	return base / 2 + (long)(rnd % (unsigned)(base / 2 + 1));
}

long
tokens_idle_due_in(long refresh_left, long keepalive)
{
	long m;

	if (refresh_left <= 0)
		return keepalive;
	m = refresh_left / 2 < 86400 ? refresh_left / 2 : 86400;
	if (refresh_left - m < keepalive)
		return refresh_left - m > 1 ? refresh_left - m : 1;
	return keepalive;
}

long
tokens_next_due(bool hot, long lifetime, long refresh_left, long margin,
    long keepalive)
{
	long idle = tokens_idle_due_in(refresh_left, keepalive);
	long ahead;

	if (!hot)
		return idle;
	ahead = tokens_due_in(lifetime, margin, keepalive);
	return ahead < idle ? ahead : idle;
}

bool
tokens_need_refresh(double access_left, long lifetime, long margin)
{
	long m = margin < lifetime / 2 ? margin : lifetime / 2;

	return access_left <= (double)m / 2;
}

long
tokens_margin(void)
{
	return margin_s;
}

long
tokens_access_ttl(const struct finx_tokens *t)
{
	return t->expires_in > 0 ? t->expires_in : ACCESS_TTL_UNKNOWN;
}

long
tokens_due_after(const struct finx_tokens *t, bool hot, long row_refresh_left)
{
	long rleft = t->refresh_token == NULL ? row_refresh_left
	    : t->refresh_expires_in > 0       ? t->refresh_expires_in
					      : REFRESH_TTL_DEFAULT;

	return tokens_next_due(hot, tokens_access_ttl(t), rleft, margin_s,
	    keepalive_s);
}

void
tokens_prepare(const char *conn_id, const struct finx_tokens *t, long due_s,
    struct token_cols *out)
{
	char *aad_a = crypto_aad("connections", conn_id, "access_token");
	char *aad_r = crypto_aad("connections", conn_id, "refresh_token");
	int64_t now = now_unix_ms();
	double ago = t->sent_ms > 0 && now > t->sent_ms
	    ? (double)(now - t->sent_ms) / 1000.0
	    : 0.0;
	long rttl = t->refresh_expires_in > 0 ? t->refresh_expires_in
					      : REFRESH_TTL_DEFAULT;

	out->access = crypto_seal(t->access_token, aad_a);
	out->refresh = t->refresh_token ? crypto_seal(t->refresh_token, aad_r)
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
	free(aad_a);
	free(aad_r);
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
	ok = db_cmd(c,
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
	    "token_generation = token_generation + 1, lease_holder = NULL, "
	    "lease_until = NULL, lease_generation = NULL, updated_at = now() "
	    "WHERE id = $1",
	    10,
	    (const char *[]){ conn_id, k.access, k.left, k.ttl, k.refresh,
		k.rleft, k.scope, k.cleft, k.ago, k.due });
	tokens_cols_free(&k);
	return ok;
}

bool
tokens_queue_revocation(PGconn *c, const char *conn_id, const char *kind,
    const char *plain)
{
	char *rid = uuid_new(), *aad, *sealed;
	bool ok;

	aad = crypto_aad("revocations", rid, "token");
	sealed = crypto_seal(plain, aad);
	free(aad);
	/* An access token comes due a little after the refresh token queued
	 * with it, so the workers revoke the refresh token first
	 * (revoke_one in refresh.c). */
	ok = db_cmd(c,
	    "INSERT INTO revocations (id, connection_id, kind, token, "
	    "next_attempt_at) VALUES ($1, $2, $3, $4, clock_timestamp() + "
	    "CASE WHEN $3 = 'access' THEN interval '" REVOKE_ACCESS_AFTER
	    "' ELSE interval '0' END)",
	    4, (const char *[]){ rid, conn_id, kind, sealed });
	free(rid);
	free(sealed);
	return ok;
}

/*
 * The compare-and-set missed: the row is no longer at the generation the
 * lease presented.  Same grant and still active: the rotation landed
 * already (a journal replayed after a lost commit acknowledgement, or a
 * crash before its file was removed) and later refreshes went on from it;
 * revoking it now would revoke the live grant.  Otherwise the connection
 * was deleted, condemned or renewed by a reauth since the lease was
 * taken: nobody may ever present these tokens, so they go to finX's
 * revocation, refresh token first.
 */
static enum tokens_cas
rotate_missed(PGconn *c, const char *conn_id, const char *grant,
    const struct finx_tokens *t)
{
	PGresult *r;
	bool ok, same;

	if (!db_cmd(c, "BEGIN", 0, NULL))
		return TOK_DB_ERROR;
	r = db_exec(c,
	    "SELECT status = 'active' AND ($2::text IS NULL OR "
	    "connected_at::text = $2) FROM connections WHERE id = $1 FOR NO "
	    "KEY UPDATE",
	    2, (const char *[]){ conn_id, grant });
	if (r == NULL || PQntuples(r) == 0) {
		bool gone = r != NULL;

		PQclear(r);
		PQclear(PQexec(c, "ROLLBACK"));
		return gone ? TOK_GONE : TOK_DB_ERROR;
	}
	same = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	ok = same ||
	    ((t->refresh_token == NULL ||
		 tokens_queue_revocation(c, conn_id, "refresh",
		     t->refresh_token)) &&
		tokens_queue_revocation(c, conn_id, "access", t->access_token));
	if (!ok || !db_cmd(c, "COMMIT", 0, NULL)) {
		PQclear(PQexec(c, "ROLLBACK"));
		return TOK_DB_ERROR;
	}
	return same ? TOK_STORED : TOK_REVOKED;
}

enum tokens_cas
tokens_rotate(PGconn *c, const char *conn_id, const char *grant, long gen,
    const struct finx_tokens *t, long due_s)
{
	struct token_cols k;
	char g[24];
	PGresult *r;
	int n;

	snprintf(g, sizeof(g), "%ld", gen);
	tokens_prepare(conn_id, t, due_s, &k);
	/*
	 * One statement: access token, its expiry and (when finX sent one)
	 * the rotated refresh token change together or not at all, and only
	 * on the generation the lease presented.
	 */
	r = db_exec(c,
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
	    "updated_at = now() "
	    "WHERE id = $1 AND token_generation = $2::bigint AND "
	    "status = 'active'",
	    10,
	    (const char *[]){ conn_id, g, k.access, k.left, k.ttl, k.refresh,
		k.rleft, k.scope, k.due, k.ago });
	tokens_cols_free(&k);
	if (r == NULL)
		return TOK_DB_ERROR;
	n = (int)strtol(PQcmdTuples(r), NULL, 10);
	PQclear(r);
	return n == 1 ? TOK_STORED : rotate_missed(c, conn_id, grant, t);
}
