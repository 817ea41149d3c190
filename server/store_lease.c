/*
 * Store: refresh leases and the heartbeat of processes (store_lease.h).
 */
#include "store_lease.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "store_int.h"

/*
 * Who may take a lease (k is the row).  Never on a connection this
 * process still works on ($3: its in-flight set, a refresh running or a
 * rotation the rescue has not stored; the on-demand path, which holds
 * the id in that set itself, passes none).  Then: nobody holds one; or
 * it ran out and its holder is this process ($1); or it ran out and its
 * holder is gone, judged by its heartbeat ($5 seconds), and only once
 * this process has been connected long enough to judge ($4).
 */
#define LEASE_FREE                                                         \
	"NOT k.id = ANY($3::uuid[]) AND (k.lease_holder IS NULL OR "        \
	"(k.lease_until < now() AND (k.lease_holder = $1::uuid OR "         \
	"($4::bool AND " LEASE_TAKER_LIVE " AND NOT EXISTS (SELECT 1 FROM " \
	"finxd_processes p WHERE p.id = k.lease_holder AND "                \
	"p.heartbeat_at > now() - make_interval(secs => $5::int))))))"
/*
 * The taker's own heartbeat, as PostgreSQL sees it when the statement
 * runs (not when the process decided to send it): fresh, and unbroken
 * for longer than the stale bound.
 */
#define LEASE_TAKER_LIVE                                                   \
	"EXISTS (SELECT 1 FROM finxd_processes me WHERE me.id = $1::uuid "  \
	"AND me.heartbeat_at > now() - interval '5 s' AND me.live_since < " \
	"now() - make_interval(secs => $5::int))"
/* Committing a lease moves the due time past its deadline. */
#define LEASE_SET                                                          \
	"UPDATE connections c SET lease_holder = $1::uuid, lease_until = "  \
	"now() + make_interval(secs => $2::int), lease_generation = "       \
	"c.token_generation, refresh_due_at = now() + make_interval(secs "  \
	"=> $2::int), updated_at = now() "
#define LEASE_RETURNING                                                    \
	"RETURNING c.id, c.refresh_token, c.token_generation, o.prev, "     \
	"c.consecutive_failures, c.last_handout_at > now() - "              \
	"make_interval(secs => coalesce(c.access_lifetime_s, 300)), "       \
	"extract(epoch FROM c.refresh_expires_at - now())::bigint, "        \
	"c.connected_at::text"
#define CLAIM_DUE                                                          \
	LEASE_SET "FROM (SELECT id, lease_holder AS prev FROM connections k " \
		  "WHERE k.next_due_at <= now() AND " LEASE_FREE               \
	" ORDER BY k.next_due_at LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED) o "  \
	"WHERE c.id = o.id " LEASE_RETURNING

const char refresh_claim_sql[] = CLAIM_DUE;

enum {
	S_LEASE,
	S_CLAIM_DUE,
	S_HOLDS,
	S_FAIL,
	S_CONDEMN,
	S_BEAT,
	S_PRUNE,
	S_FORGET,
};

const struct db_stmt store_lease_stmts[] = {
	[S_LEASE] = { "lease_conn_take",
	    LEASE_SET "FROM (SELECT id, lease_holder AS prev FROM connections "
		      "k WHERE k.id = $6 AND k.token_generation = $7::bigint "
		      "AND k.status = 'active' AND k.refresh_token IS NOT NULL "
		      "AND " LEASE_FREE " FOR NO KEY UPDATE) o WHERE c.id = "
		      "o.id " LEASE_RETURNING },
	[S_CLAIM_DUE] = { "lease_conn_claim_due", CLAIM_DUE },
	[S_HOLDS] = { "lease_conn_holds",
	    "SELECT 1 FROM connections WHERE id = $1 AND lease_holder = "
	    "$2::uuid AND lease_generation = $3::bigint AND token_generation "
	    "= $3::bigint AND lease_until > now()" },
	[S_FAIL] = { "lease_conn_fail",
	    "UPDATE connections SET consecutive_failures = "
	    "consecutive_failures + 1, failing_since = CASE WHEN "
	    "consecutive_failures = 0 THEN now() ELSE coalesce(failing_since, "
	    "now()) END, failing_notice_at = CASE WHEN consecutive_failures = "
	    "0 THEN NULL ELSE failing_notice_at END, last_error = $3, "
	    "next_attempt_at = "
	    "now() + make_interval(secs => $4::int), refresh_due_at = now(), "
	    "lease_holder = NULL, lease_until = NULL, lease_generation = NULL, "
	    "updated_at = now() WHERE id = $1 AND lease_holder = $2::uuid AND "
	    "lease_generation = $5::bigint" },
	[S_CONDEMN] = { "lease_conn_condemn",
	    "WITH u AS (UPDATE connections SET status = 'reauth_required', "
	    "status_reason = $3, last_error = $3, lease_holder = NULL, "
	    "lease_until = NULL, lease_generation = NULL, updated_at = now() "
	    "WHERE id = $1 AND token_generation = $2::bigint AND status = "
	    "'active' RETURNING id, user_id), a AS (INSERT INTO events (kind, "
	    "outcome, connection_id, detail) SELECT 'refresh', "
	    "'reauth_required', id, $3 FROM u) " SQL_EVENT_INSERT
	    "SELECT 'connection.reauth_required', id, NULL, "
	    "jsonb_build_object('connection_id', id, 'user_id', user_id, "
	    "'reason', $3::text) FROM u" },
	[S_BEAT] = { "lease_process_beat",
	    "INSERT INTO finxd_processes (id, host, pid, version) VALUES "
	    "($1, $2, $3::int, $4) ON CONFLICT (id) DO UPDATE SET "
	    "live_since = CASE WHEN finxd_processes.heartbeat_at < now() - "
	    "interval '5 s' THEN now() ELSE finxd_processes.live_since END, "
	    "heartbeat_at = now(), pid = EXCLUDED.pid, version = "
	    "EXCLUDED.version" },
	[S_PRUNE] = { "lease_process_prune",
	    "DELETE FROM finxd_processes WHERE heartbeat_at < now() - "
	    "interval '7 days'" },
	[S_FORGET] = { "lease_process_forget",
	    "DELETE FROM finxd_processes WHERE id = $1" },
	{ NULL, NULL },
};

void
store_conn_lease_free(struct conn_lease *l)
{
	free(l->id);
	free(l->sealed);
	free(l->grant);
	free(l->prev);
	memset(l, 0, sizeof(*l));
}

/* Run a lease statement (parameters $1..$5 from w, then extra) and fill
 * l from its row: 1, 0 no row, -1 failed. */
static int
lease_run(PGconn *c, int stmt, const struct lease_terms *w,
    const char *const extra[2], struct conn_lease *l)
{
	char secs[16], stale[16];
	const char *p[7] = { w->holder, secs, w->inflight,
		w->may_take_over ? "true" : "false", stale,
		extra ? extra[0] : NULL, extra ? extra[1] : NULL };
	PGresult *r;
	int got;

	snprintf(secs, sizeof(secs), "%d", w->secs);
	snprintf(stale, sizeof(stale), "%d", w->stale_s);
	r = db_run(c, &store_lease_stmts[stmt], extra ? 7 : 5, p);
	if (r == NULL)
		return -1;
	got = PQntuples(r) == 1;
	if (got) {
		l->id = xstrdup(PQgetvalue(r, 0, 0));
		l->sealed = xstrdup(PQgetvalue(r, 0, 1));
		l->gen = db_long(r, 0, 2, 0);
		l->prev = db_dup(r, 0, 3);
		l->failures = (int)db_long(r, 0, 4, 0);
		l->hot = db_val(r, 0, 5) != NULL &&
		    strcmp(PQgetvalue(r, 0, 5), "t") == 0;
		l->refresh_left = db_long(r, 0, 6, 0);
		l->grant = db_dup(r, 0, 7);
	}
	PQclear(r);
	return got;
}

int
store_conn_lease(PGconn *c, const struct lease_terms *w, const char *id,
    long gen, struct conn_lease *l)
{
	char g[24];

	snprintf(g, sizeof(g), "%ld", gen);
	return lease_run(c, S_LEASE, w, (const char *[2]){ id, g }, l);
}

int
store_conn_claim_due(PGconn *c, const struct lease_terms *w,
    struct conn_lease *l)
{
	return lease_run(c, S_CLAIM_DUE, w, NULL, l);
}

int
store_conn_lease_holds(PGconn *c, const struct conn_lease *l,
    const char *holder)
{
	char g[24];
	PGresult *r;
	int mine;

	snprintf(g, sizeof(g), "%ld", l->gen);
	r = db_run(c, &store_lease_stmts[S_HOLDS], 3,
	    (const char *[]){ l->id, holder, g });
	if (r == NULL)
		return -1;
	mine = PQntuples(r) == 1;
	PQclear(r);
	return mine;
}

bool
store_conn_lease_fail(PGconn *c, const struct conn_lease *l,
    const char *holder, const char *msg, long backoff_s)
{
	char backoff[24], g[24];

	snprintf(backoff, sizeof(backoff), "%ld", backoff_s);
	snprintf(g, sizeof(g), "%ld", l->gen);
	return db_do(c, &store_lease_stmts[S_FAIL], 5,
	    (const char *[]){ l->id, holder, msg, backoff, g });
}

int
store_conn_condemn(PGconn *c, const struct conn_lease *l, const char *why)
{
	char g[24];
	PGresult *r;
	int done;

	snprintf(g, sizeof(g), "%ld", l->gen);
	r = db_run(c, &store_lease_stmts[S_CONDEMN], 3,
	    (const char *[]){ l->id, g, why });
	if (r == NULL)
		return -1;
	done = strcmp(PQcmdTuples(r), "1") == 0;
	PQclear(r);
	return done;
}

bool
store_process_beat(PGconn *c, const char *id, const char *host, long pid,
    const char *version)
{
	char p[24];

	snprintf(p, sizeof(p), "%ld", pid);
	return db_do(c, &store_lease_stmts[S_BEAT], 4,
	    (const char *[]){ id, host, p, version });
}

bool
store_process_prune(PGconn *c)
{
	return db_do(c, &store_lease_stmts[S_PRUNE], 0, NULL);
}

bool
store_process_forget(PGconn *c, const char *id)
{
	return db_do(c, &store_lease_stmts[S_FORGET], 1,
	    (const char *[]){ id });
}
