/*
 * Writing tokens: see tokens.h for the rules.
 */
#include "tokens.h"

#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "crypto.h"
#include "db.h"
#include "util.h"

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
tokens_access_ttl(const struct finx_tokens *t)
{
	return t->expires_in > 0 ? t->expires_in : ACCESS_TTL_UNKNOWN;
}

void
tokens_prepare(const char *conn_id, const struct finx_tokens *t,
    struct token_cols *out)
{
	char *aad_a = crypto_aad("connections", conn_id, "access_token");
	char *aad_r = crypto_aad("connections", conn_id, "refresh_token");

	out->access = crypto_seal(t->access_token, aad_a);
	out->refresh = t->refresh_token ? crypto_seal(t->refresh_token, aad_r)
					: NULL;
	out->scope = t->scope;
	snprintf(out->ttl, sizeof(out->ttl), "%ld", tokens_access_ttl(t));
	snprintf(out->rttl, sizeof(out->rttl), "%ld",
	    t->refresh_expires_in > 0 ? t->refresh_expires_in
				      : REFRESH_TTL_DEFAULT);
	snprintf(out->cttl, sizeof(out->cttl), "%ld", CONSENT_TTL_DEFAULT);
	snprintf(out->due, sizeof(out->due), "%ld",
	    tokens_due_in(tokens_access_ttl(t), margin_s, keepalive_s));
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
tokens_store(PGconn *c, const char *conn_id, const struct finx_tokens *t,
    bool fresh_grant)
{
	struct token_cols k;
	bool ok;

	tokens_prepare(conn_id, t, &k);
	/*
	 * One statement: access token, its expiry and (when finX sent one)
	 * the rotated refresh token change together or not at all.
	 */
	ok = db_cmd(c,
	    "UPDATE connections SET access_token = $2, "
	    "access_expires_at = now() + make_interval(secs => $3::int), "
	    "access_lifetime_s = $3::int, "
	    "refresh_due_at = now() + make_interval(secs => $9::int), "
	    "refresh_token = coalesce($4, refresh_token), "
	    "refresh_obtained_at = CASE WHEN $4 IS NULL "
	    "  THEN refresh_obtained_at ELSE now() END, "
	    "refresh_expires_at = CASE WHEN $4 IS NULL "
	    "  THEN refresh_expires_at "
	    "  ELSE now() + make_interval(secs => $5::int) END, "
	    "scope = coalesce($6, scope), "
	    "last_refresh_at = CASE WHEN $7 THEN last_refresh_at ELSE now() END, "
	    "consent_expires_at = CASE WHEN $7 "
	    "  THEN now() + make_interval(secs => $8::int) "
	    "  ELSE consent_expires_at END, "
	    "connected_at = CASE WHEN $7 THEN now() ELSE connected_at END, "
	    "status = CASE WHEN $7 THEN 'active' ELSE status END, "
	    "status_reason = CASE WHEN $7 THEN NULL ELSE status_reason END, "
	    "last_error = NULL, consecutive_failures = 0, "
	    "next_attempt_at = NULL, updated_at = now() WHERE id = $1",
	    9,
	    (const char *[]){ conn_id, k.access, k.ttl, k.refresh, k.rttl,
		k.scope, fresh_grant ? "true" : "false", k.cttl, k.due });
	tokens_cols_free(&k);
	return ok;
}
