/*
 * Store: connection.expiring and connection.refresh_failing
 * (store_notices.h; the columns and indexes: 0013_episodes.sql).
 */
#include "store_notices.h"

#include <stdio.h>

#include "store_int.h"

/*
 * connection.expiring for deadline column col, marked in column mark,
 * what being 'refresh_token' or 'consent': $1 the notice in seconds, $2
 * the batch.  The scan's conditions are those of the partial index
 * (connections_refresh_expiry_idx, connections_consent_expiry_idx) and a
 * range on its column; a deadline already past is not told (the
 * connection is expired, not expiring).
 */
#define EXPIRING(col, mark, what)                                             \
	"WITH d AS (SELECT id FROM connections WHERE status = 'active' AND "  \
	col " IS DISTINCT FROM " mark " AND " col " > now() AND " col " <= " \
	"now() + make_interval(secs => $1::int) ORDER BY " col " LIMIT "      \
	"$2::int FOR NO KEY UPDATE SKIP LOCKED), u AS (UPDATE connections c " \
	"SET " mark " = c." col " FROM d WHERE c.id = d.id RETURNING c.id, "  \
	"c.user_id, " SQL_TS("c." col) " AS deadline) "                       \
	SQL_EVENT_INSERT_ONCE "SELECT 'connection.expiring', id, NULL, "      \
	"jsonb_build_object('connection_id', id, 'user_id', user_id, "        \
	"'what', '" what "', 'expires_at', deadline), 'expiring:' || id || "  \
	"':" what ":' || deadline FROM u" SQL_EVENT_ONCE

enum { S_REFRESH_EXPIRING, S_CONSENT_EXPIRING, S_FAILING };

const struct db_stmt store_notices_stmts[] = {
	[S_REFRESH_EXPIRING] = { "notices_refresh_expiring",
	    EXPIRING("refresh_expires_at", "refresh_expiry_notice",
		"refresh_token") },
	[S_CONSENT_EXPIRING] = { "notices_consent_expiring",
	    EXPIRING("consent_expires_at", "consent_expiry_notice",
		"consent") },
	/*
	 * $1 seconds since the first failure of the streak, $2 the batch.
	 * last_error is finX's message or ours, never a token (refresh.c).
	 * The once_key names the streak by its start.
	 */
	[S_FAILING] = { "notices_refresh_failing",
	    "WITH d AS (SELECT id FROM connections WHERE status = 'active' "
	    "AND consecutive_failures > 0 AND failing_notice_at IS NULL AND "
	    "failing_since <= now() - make_interval(secs => $1::int) ORDER "
	    "BY failing_since LIMIT $2::int FOR NO KEY UPDATE SKIP LOCKED), "
	    "u AS (UPDATE connections c SET failing_notice_at = now() FROM d "
	    "WHERE c.id = d.id RETURNING c.id, c.user_id, "
	    "c.consecutive_failures, c.last_error, c.failing_since) "
	    SQL_EVENT_INSERT_ONCE "SELECT 'connection.refresh_failing', id, "
	    "NULL, jsonb_build_object('connection_id', id, 'user_id', "
	    "user_id, 'consecutive_failures', consecutive_failures, "
	    "'last_error', last_error), 'refresh_failing:' || id || ':' || "
	    SQL_FAILING_KEY("failing_since") " FROM u" SQL_EVENT_ONCE },
	{ NULL, NULL },
};

/* Statement k with the two numbers: how many events it inserted. */
static long
notice_run(PGconn *c, int k, long secs, int limit)
{
	char s[24], n[16];

	snprintf(s, sizeof(s), "%ld", secs);
	snprintf(n, sizeof(n), "%d", limit);
	return db_rows(c, &store_notices_stmts[k], 2, (const char *[]){ s, n });
}

long
store_notice_refresh_expiring(PGconn *c, long notice_s, int limit)
{
	return notice_run(c, S_REFRESH_EXPIRING, notice_s, limit);
}

long
store_notice_consent_expiring(PGconn *c, long notice_s, int limit)
{
	return notice_run(c, S_CONSENT_EXPIRING, notice_s, limit);
}

long
store_notice_refresh_failing(PGconn *c, long failing_s, int limit)
{
	return notice_run(c, S_FAILING, failing_s, limit);
}
