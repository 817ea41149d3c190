/*
 * Store: finX notifications (store_notify.h; the design is notify.c's).
 * The states are those of 0012_notifications.sql, spelled as its partial
 * indexes spell them.
 */
#include "store_notify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "store_int.h"

/*
 * The pull of the connections in l (locked pulls rows) at the earliest
 * greatest(now, last pull + $n seconds), unless it is due sooner or
 * failing (the retry's backoff stands); RETURNING whether it is due now.
 */
#define NOTIFY_PULL_MOVE(n)                                                   \
	"UPDATE pulls p SET next_pull_at = least(p.next_pull_at, greatest("   \
	"now(), coalesce(p.last_pull_at, '-infinity') + make_interval(secs " \
	"=> " n "::int))) FROM l WHERE p.connection_id = l.connection_id "    \
	"AND p.failures = 0 RETURNING p.next_pull_at <= now() AS due"

/*
 * The pulls row p is not claimed by a running pull: neither locked (SKIP
 * LOCKED, where a pull holds its row) nor under a committed claim
 * (claim_until, 0011): a move while a claim runs would make the row due
 * and let a second pull start beside it.
 */
#define SQL_PULL_UNCLAIMED(p)                                                 \
	"NOT coalesce(" p ".claim_until > now(), false)"

enum {
	S_SEED,
	S_CLAIM,
	S_REGISTERED,
	S_FAILED,
	S_PARK,
	S_DROP,
	S_HIT,
	S_PENDING,
	S_CONDEMN,
	S_COUNT,
	S_RM_CLAIM,
	S_RM_DONE,
	S_RM_RETRY,
};

const struct db_stmt store_notify_stmts[] = {
	[S_SEED] = { "notify_seed",
	    "INSERT INTO finx_notifications (connection_id, account_id) "
	    "SELECT a.connection_id, a.id FROM accounts a JOIN connections c "
	    "ON c.id = a.connection_id WHERE a.connection_id = $1 AND "
	    "c.status = 'active' ON CONFLICT (account_id) DO NOTHING "
	    "RETURNING 1" },
	/* Committed at once: the claim is the row and its deadline. */
	[S_CLAIM] = { "notify_claim",
	    "UPDATE finx_notifications f SET state = 'registering', "
	    "secret_hash = $1, next_attempt_at = now() + make_interval(secs "
	    "=> $2::int), attempts = f.attempts + 1 FROM (SELECT id FROM "
	    "finx_notifications WHERE state IN ('due', 'registering') AND "
	    "next_attempt_at <= now() ORDER BY next_attempt_at LIMIT 1 FOR "
	    "UPDATE SKIP LOCKED) x, accounts a, connections c WHERE f.id = "
	    "x.id AND a.id = f.account_id AND c.id = f.connection_id "
	    "RETURNING f.id, f.connection_id, a.finx_account_id, f.attempts, "
	    "c.status = 'active', c.status = 'revoked'" },
	/* Compare-and-set on the claim's secret. */
	[S_REGISTERED] = { "notify_registered",
	    "UPDATE finx_notifications SET state = 'registered', finx_id = "
	    "$3, last_error = NULL, attempts = 0 WHERE id = $1 AND "
	    "secret_hash = $2 AND state = 'registering' RETURNING 1" },
	[S_FAILED] = { "notify_failed",
	    "UPDATE finx_notifications SET state = 'due', secret_hash = NULL, "
	    "last_error = $3, next_attempt_at = now() + make_interval(secs => "
	    "$4::int) WHERE id = $1 AND secret_hash = $2 AND state = "
	    "'registering'" },
	[S_PARK] = { "notify_park",
	    "UPDATE finx_notifications SET state = 'due', secret_hash = NULL, "
	    "next_attempt_at = now() + interval '1 hour' WHERE id = $1 AND "
	    "state = 'registering'" },
	[S_DROP] = { "notify_drop",
	    "DELETE FROM finx_notifications WHERE id = $1 AND state <> "
	    "'removing'" },
	/*
	 * One statement: find the secret's connection, lock its pulls row if
	 * no pull holds or claims it (SKIP LOCKED: a handler never waits for
	 * a pull), move the pull, and note the notification (pending when a
	 * pull had the row).
	 */
	[S_HIT] = { "notify_hit",
	    "WITH n AS (SELECT f.id, f.connection_id, c.status = 'active' AND "
	    "p.failures = 0 AS pullable FROM finx_notifications f JOIN "
	    "connections c ON c.id = f.connection_id JOIN pulls p ON "
	    "p.connection_id = f.connection_id WHERE f.secret_hash = $1 AND "
	    "f.state IN ('registering', 'registered') AND c.status <> "
	    "'revoked'), l AS (SELECT connection_id FROM pulls p WHERE "
	    "connection_id = (SELECT connection_id FROM n WHERE pullable) AND "
	    SQL_PULL_UNCLAIMED("p") " FOR UPDATE SKIP LOCKED), u AS (" NOTIFY_PULL_MOVE("$2") "), m AS ("
	    "UPDATE finx_notifications f SET notified_at = now(), "
	    "pull_pending = f.pull_pending OR (n.pullable AND NOT EXISTS ("
	    "SELECT 1 FROM l)) FROM n WHERE f.id = n.id) SELECT EXISTS ("
	    "SELECT 1 FROM n), coalesce((SELECT bool_or(due) FROM u), false)" },
	/* The same move for notifications that came while a pull ran, once
	 * it has ended (its pulls row is free and unclaimed). */
	[S_PENDING] = { "notify_pending",
	    "WITH x AS (SELECT DISTINCT connection_id FROM finx_notifications "
	    "WHERE pull_pending LIMIT 100), l AS (SELECT connection_id FROM "
	    "pulls p WHERE connection_id IN (SELECT connection_id FROM x) AND "
	    SQL_PULL_UNCLAIMED("p") " FOR UPDATE SKIP LOCKED), u AS (" NOTIFY_PULL_MOVE("$1") "), c AS ("
	    "UPDATE finx_notifications f SET pull_pending = false FROM l "
	    "WHERE f.connection_id = l.connection_id AND f.pull_pending "
	    "RETURNING 1) SELECT (SELECT count(*) FROM c), coalesce((SELECT "
	    "bool_or(due) FROM u), false)" },
	[S_CONDEMN] = { "notify_condemn",
	    "WITH d AS (DELETE FROM finx_notifications WHERE connection_id = "
	    "$1 AND finx_id IS NULL) UPDATE finx_notifications SET state = "
	    "'removing', secret_hash = NULL, next_attempt_at = now(), "
	    "attempts = 0, last_error = NULL, pull_pending = false, "
	    "hold_until = now() + make_interval(secs => $2::int) WHERE "
	    "connection_id = $1 AND finx_id IS NOT NULL" },
	[S_COUNT] = { "notify_count",
	    "SELECT count(*) FROM finx_notifications WHERE connection_id = $1 "
	    "AND finx_id IS NOT NULL" },
	/* With the newest access token the connection's DELETE queued for
	 * revocation: the only one left that finX may still take. */
	[S_RM_CLAIM] = { "notify_removal_claim",
	    "UPDATE finx_notifications f SET next_attempt_at = now() + "
	    "make_interval(secs => $2::int), attempts = f.attempts + 1 FROM "
	    "(SELECT id, connection_id FROM finx_notifications WHERE state = "
	    "'removing' AND next_attempt_at <= now() AND ($1::uuid IS NULL "
	    "OR connection_id = $1::uuid) ORDER BY next_attempt_at LIMIT 1 "
	    "FOR UPDATE SKIP LOCKED) x LEFT JOIN LATERAL (SELECT r.id, "
	    "r.token FROM revocations r WHERE r.connection_id = "
	    "x.connection_id AND r.kind = 'access' ORDER BY r.created_at DESC "
	    "LIMIT 1) t ON true WHERE f.id = x.id RETURNING f.id, "
	    "f.connection_id, f.finx_id, f.attempts, f.hold_until <= now(), "
	    "t.id, t.token" },
	[S_RM_DONE] = { "notify_removal_done",
	    "DELETE FROM finx_notifications WHERE id = $1 AND state = "
	    "'removing'" },
	[S_RM_RETRY] = { "notify_removal_retry",
	    "UPDATE finx_notifications SET last_error = $2, next_attempt_at = "
	    "now() + make_interval(secs => $3::int) WHERE id = $1 AND state = "
	    "'removing'" },
	{ NULL, NULL },
};

/* The rows a statement answered; -1 when it failed. */
static long
rows_of(PGconn *c, int stmt, int n, const char *const *params)
{
	PGresult *r = db_run(c, &store_notify_stmts[stmt], n, params);
	long rows = r != NULL ? PQntuples(r) : -1;

	PQclear(r);
	return rows;
}

long
store_notify_seed(PGconn *c, const char *conn_id)
{
	return rows_of(c, S_SEED, 1, &conn_id);
}

void
store_notify_reg_free(struct notify_reg *g)
{
	free(g->id);
	free(g->conn_id);
	free(g->finx_account_id);
	memset(g, 0, sizeof(*g));
}

static bool
is_t(const PGresult *r, int col)
{
	const char *v = PQgetvalue(r, 0, col);

	return v != NULL && strcmp(v, "t") == 0;
}

/* A claim statement: its first parameter, then the claim's seconds. */
static PGresult *
claim_run(PGconn *c, int stmt, const char *first, long claim_s)
{
	char secs[24];

	snprintf(secs, sizeof(secs), "%ld", claim_s);
	return db_run(c, &store_notify_stmts[stmt], 2,
	    (const char *[]){ first, secs });
}

int
store_notify_claim(PGconn *c, const char *hash_hex, long claim_s,
    struct notify_reg *g)
{
	PGresult *r = claim_run(c, S_CLAIM, hash_hex, claim_s);
	int got;

	memset(g, 0, sizeof(*g));
	if (r == NULL)
		return -1;
	if ((got = PQntuples(r) == 1)) {
		g->id = db_dup(r, 0, 0);
		g->conn_id = db_dup(r, 0, 1);
		g->finx_account_id = db_dup(r, 0, 2);
		g->attempts = (int)db_long(r, 0, 3, 1);
		g->active = is_t(r, 4);
		g->revoked = is_t(r, 5);
	}
	PQclear(r);
	return got;
}

int
store_notify_registered(PGconn *c, const struct notify_reg *g,
    const char *hash_hex, const char *finx_id)
{
	return (int)rows_of(c, S_REGISTERED, 3,
	    (const char *[]){ g->id, hash_hex, finx_id });
}

bool
store_notify_failed(PGconn *c, const struct notify_reg *g,
    const char *hash_hex, const char *error, long backoff_s)
{
	char secs[24];

	snprintf(secs, sizeof(secs), "%ld", backoff_s);
	return db_do(c, &store_notify_stmts[S_FAILED], 4,
	    (const char *[]){ g->id, hash_hex, error, secs });
}

bool
store_notify_park(PGconn *c, const struct notify_reg *g)
{
	return db_do(c, &store_notify_stmts[g->revoked ? S_DROP : S_PARK], 1,
	    (const char *[]){ g->id });
}

/* A row (count or found, due) of S_HIT or S_PENDING. */
static bool
two_cols(PGconn *c, int stmt, const char *const *params, int n,
    char **first, bool *due)
{
	PGresult *r = db_run(c, &store_notify_stmts[stmt], n, params);

	if (r == NULL || PQntuples(r) != 1) {
		PQclear(r);
		return false;
	}
	*due = is_t(r, 1);
	*first = xstrdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	return true;
}

bool
store_notify_hit(PGconn *c, const char *hash_hex, long min_interval_s,
    bool *known, bool *due)
{
	char secs[24], *v;

	*known = *due = false;
	snprintf(secs, sizeof(secs), "%ld", min_interval_s);
	if (!two_cols(c, S_HIT, (const char *[]){ hash_hex, secs }, 2, &v,
		due))
		return false;
	*known = strcmp(v, "t") == 0;
	free(v);
	return true;
}

long
store_notify_pending(PGconn *c, long min_interval_s, bool *due)
{
	char secs[24], *v;
	long n;

	*due = false;
	snprintf(secs, sizeof(secs), "%ld", min_interval_s);
	if (!two_cols(c, S_PENDING, (const char *[]){ secs }, 1, &v, due))
		return -1;
	n = strtol(v, NULL, 10);
	free(v);
	return n;
}

bool
store_notify_condemn(PGconn *c, const char *conn_id, long hold_s)
{
	char secs[24];

	snprintf(secs, sizeof(secs), "%ld", hold_s);
	return db_do(c, &store_notify_stmts[S_CONDEMN], 2,
	    (const char *[]){ conn_id, secs });
}

long
store_notify_count(PGconn *c, const char *conn_id)
{
	PGresult *r = db_run(c, &store_notify_stmts[S_COUNT], 1, &conn_id);
	long n = r != NULL ? db_long(r, 0, 0, 0) : -1;

	PQclear(r);
	return n;
}

void
store_notify_removal_free(struct notify_removal *m)
{
	free(m->id);
	free(m->conn_id);
	free(m->finx_id);
	free(m->token_id);
	free(m->sealed_token);
	memset(m, 0, sizeof(*m));
}

int
store_notify_removal_claim(PGconn *c, const char *conn_id, long claim_s,
    struct notify_removal *m)
{
	PGresult *r = claim_run(c, S_RM_CLAIM, conn_id, claim_s);
	int got;

	memset(m, 0, sizeof(*m));
	if (r == NULL)
		return -1;
	if ((got = PQntuples(r) == 1)) {
		m->id = db_dup(r, 0, 0);
		m->conn_id = db_dup(r, 0, 1);
		m->finx_id = db_dup(r, 0, 2);
		m->attempts = (int)db_long(r, 0, 3, 1);
		m->past_hold = is_t(r, 4);
		m->token_id = db_dup(r, 0, 5);
		m->sealed_token = db_dup(r, 0, 6);
	}
	PQclear(r);
	return got;
}

bool
store_notify_removal_done(PGconn *c, const struct notify_removal *m)
{
	return db_do(c, &store_notify_stmts[S_RM_DONE], 1,
	    (const char *[]){ m->id });
}

bool
store_notify_removal_retry(PGconn *c, const struct notify_removal *m,
    const char *error, long backoff_s)
{
	char secs[24];

	snprintf(secs, sizeof(secs), "%ld", backoff_s);
	return db_do(c, &store_notify_stmts[S_RM_RETRY], 3,
	    (const char *[]){ m->id, error, secs });
}
