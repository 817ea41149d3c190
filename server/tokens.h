/*
 * Token storage and lifetimes for connections.  Every write of tokens
 * goes through tokens_store so the rules live in one place: sealed per row
 * and column, a new refresh token replaces the old one in the same
 * statement as the new access token, and an answer without a refresh
 * token keeps the old one (LESSONS.md 3, 9).
 */
#ifndef FINXD_TOKENS_H
#define FINXD_TOKENS_H

#include <stdbool.h>
#include <stdint.h>
#include <libpq-fe.h>

#include "finx.h"

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
 * Store freshly obtained tokens on connection id, inside the caller's
 * transaction.  fresh_grant: a new grant (callback or reauth), which also
 * restarts the consent clock and reactivates the connection.
 */
bool tokens_store(PGconn *c, const char *conn_id, const struct finx_tokens *t,
    bool fresh_grant);

/*
 * The column values of a fresh set of tokens for connection conn_id:
 * sealed tokens (refresh NULL when finX sent none) and, as decimal text
 * for make_interval(secs => ...), the access lifetime, refresh lifetime,
 * consent lifetime and when the refresher is due.  For writers that must
 * insert a connection in one statement; everything else uses
 * tokens_store.  Free with tokens_cols_free.
 */
struct token_cols {
	char *access, *refresh;
	const char *scope; /* borrowed from the tokens */
	char ttl[24], rttl[24], cttl[24], due[24];
};
void tokens_prepare(const char *conn_id, const struct finx_tokens *t,
    struct token_cols *out);
void tokens_cols_free(struct token_cols *cols);

/* Seconds an access token from t lives, with the unknown case handled. */
long tokens_access_ttl(const struct finx_tokens *t);

#endif
