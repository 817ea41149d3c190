/*
 * Token storage and lifetimes for connections.  Every write of tokens
 * goes through store_conn_rotate (a refresh, store_tokens.h) or
 * tokens_store_grant (a new grant), both from the one mapping of tokens
 * to columns, tokens_prepare, so the rules live in one place: sealed per
 * row and column, a new refresh token replaces the old one in the same
 * statement as the new access token, an answer without a refresh token
 * keeps the old one (LESSONS.md 3, 9), and a rotation is a
 * compare-and-set on the token generation.  The refresh policy's
 * arithmetic (tokens.c) lives here too; the statements are in
 * store_tokens.c.
 */
#ifndef FINXD_TOKENS_H
#define FINXD_TOKENS_H

#include <stdbool.h>
#include <stdint.h>
#include <libpq-fe.h>

#include "finx_decode.h"

/* Lifetimes used when finX does not say (finx-api.md section 3). */
#define ACCESS_TTL_UNKNOWN 300        /* odd expires_in: refresh soon */
#define REFRESH_TTL_DEFAULT (90L * 86400)
#define CONSENT_TTL_DEFAULT (180L * 86400)

struct config;
/* Margins and keep-alive period come from the configuration. */
void tokens_init(const struct config *cfg);

/*
 * Seconds from now until a token that lives lifetime seconds is due for
 * refresh.  The margin shrinks to half the lifetime for short-lived
 * tokens (a 30 s token is refreshed after 15 s, not in a hot loop), and
 * keepalive caps the wait so refresh tokens never die of disuse.
 */
long tokens_due_in(long lifetime, long margin, long keepalive);

/*
 * Backoff before retrying after the n-th consecutive failure (n >= 1):
 * doubling from 5 s, capped at 15 min, with jitter from rnd so that many
 * connections failing together do not retry together.
 */
long tokens_backoff_s(int failures, unsigned rnd);

/*
 * The refresh policy (server/REFRESH.md, "When a connection is
 * refreshed").  A connection whose access token was handed out within
 * its last lifetime ("hot") is refreshed ahead of expiry, so its readers
 * never wait on finX; any other connection only when something needs a
 * token, or when keep-alive or its refresh token's end demands it.
 *
 * tokens_idle_due_in: seconds until an idle connection must be refreshed
 * anyway: the keep-alive, or before its refresh token (refresh_left
 * seconds to live; <= 0 unknown) dies, with a margin of half its life up
 * to a day.
 */
long tokens_idle_due_in(long refresh_left, long keepalive);
/* When a connection is next due after a refresh: hot or idle as above. */
long tokens_next_due(bool hot, long lifetime, long refresh_left,
    long margin, long keepalive);
/*
 * Whether a caller that needs an access token (a read, a pull, a sync)
 * must refresh first: the token has at most half the refresh margin left
 * (the margin shrunk for short-lived tokens as in tokens_due_in).  A hot
 * connection is refreshed by the workers well before this.
 */
bool tokens_need_refresh(double access_left, long lifetime, long margin);
/* tokens_next_due with the configured margin and keep-alive. */
long tokens_due_after(const struct finx_tokens *t, bool hot,
    long row_refresh_left);
/* Configured margin, for tokens_need_refresh. */
long tokens_margin(void);

/*
 * The column values of a fresh set of tokens for connection conn_id:
 * sealed tokens (refresh NULL when finX sent none) and, as decimal text
 * for make_interval(secs => ...), the access lifetime (ttl), and counted
 * from the moment the request was sent to finX (t->sent_ms), never from
 * the store: the access token's time left, the refresh token's, the
 * consent's, how long ago the request was sent, and when the refresher
 * is due (due_s after the request).  Free with tokens_cols_free.  This
 * and the writes below are in store_tokens.c.
 */
struct token_cols {
	char *access, *refresh;
	const char *scope; /* borrowed from the tokens */
	char ttl[24], left[32], rleft[32], cleft[32], ago[32], due[32];
};
void tokens_prepare(const char *conn_id, const struct finx_tokens *t,
    long due_s, struct token_cols *out);
void tokens_cols_free(struct token_cols *cols);

/*
 * A new grant (reauth callback) on connection id, inside the caller's
 * transaction that holds its row: every token replaced (an answer
 * without a refresh token leaves none: the old grant's is being revoked),
 * the consent clock restarted, the connection active again, its
 * generation bumped and any lease on the old grant cleared.
 */
bool tokens_store_grant(PGconn *c, const char *conn_id,
    const struct finx_tokens *t);

/* The outcome of a rotation's compare-and-set (store_conn_rotate). */
enum tokens_cas {
	TOK_STORED,   /* written, or the same grant is already past it: a
			 replay of a rotation that landed */
	TOK_REVOKED,  /* the connection was deleted, condemned or renewed
			 meanwhile: the rotated tokens were queued for
			 revocation at finX instead */
	TOK_GONE,     /* the connection row no longer exists */
	TOK_DB_ERROR, /* nothing known: keep them and try again */
};

/* Queue one token of connection conn_id for /auth/revoke (kind
 * "refresh" or "access"), sealed for the revocations table.  Access
 * tokens come due REVOKE_ACCESS_AFTER later: refresh tokens go first
 * (revoke_one in refresh.c). */
#define REVOKE_ACCESS_AFTER "2 s"
bool tokens_queue_revocation(PGconn *c, const char *conn_id,
    const char *kind, const char *plain);

/* Seconds an access token from t lives, with the unknown case handled. */
long tokens_access_ttl(const struct finx_tokens *t);

#endif
