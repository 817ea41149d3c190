/*
 * Store: the event log and webhook deliveries (store_events.h).  Why the
 * walk is ordered by (xid, seq) and bounded by the snapshot's xmin is in
 * 0010_events.sql and EVENTS.md.  A delivery's claim is committed before
 * the attempt (next_attempt_at holds its deadline, claim_by its process,
 * attempts its generation), so no transaction is open while an endpoint
 * answers and a process killed mid-attempt leaves a claim that runs out.
 */
#include "store_events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "store_int.h"

/* An event as the API and the webhook show it; t: the table's alias. */
#define EVENT_JSON(t)                                                         \
	"jsonb_build_object('id', 'evt_' || replace(" t "id::text, '-', ''), " \
	"'type', " t "type, 'timestamp', to_char(" t "at AT TIME ZONE 'UTC', " \
	"'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), 'data', " t "data)::text"

/* At most this many rows per housekeeping statement. */
#define SWEEP "1000"

enum {
	S_PAGE,
	S_POS,
	S_GET,
	S_REDELIVER,
	S_CLAIM,
	S_DONE,
	S_RETRY,
	S_GONE,
	S_IS_GONE,
	S_SWEEP_NONE,
	S_SWEEP_GONE,
	S_PRUNE,
	S_PENDING,
	S_WAKE,
	S_REQUEUE_GONE,
	S_EXPIRE,
	S_RELEASE,
	S_END, /* the table's terminator */
};

const struct db_stmt store_events_stmts[] = {
	/*
	 * The rows after $1/$2 whose transaction ended before this
	 * statement's snapshot began, and that snapshot's xmin: one row with
	 * NULL event columns when there are none.
	 */
	[S_PAGE] = { "events_page",
	    "SELECT CASE WHEN e.id IS NOT NULL THEN " EVENT_JSON("e.")
	    " END, e.xid::text, e.seq, b.xmin::text FROM (SELECT "
	    "pg_snapshot_xmin(pg_current_snapshot()) AS xmin) b LEFT JOIN "
	    "LATERAL (SELECT * FROM event_log e WHERE (e.xid, e.seq) > "
	    "($1::xid8, $2::bigint) AND e.xid < b.xmin AND ($3::text[] IS "
	    "NULL OR e.type = ANY($3::text[])) ORDER BY e.xid, e.seq LIMIT "
	    "$4::int) e ON true ORDER BY e.xid, e.seq" },
	[S_POS] = { "events_position",
	    "SELECT xid::text, seq FROM event_log WHERE id = $1::uuid" },
	[S_GET] = { "events_get",
	    "SELECT " EVENT_JSON("") ", type, delivery, attempts, "
	    SQL_TS("last_attempt_at") ", last_error, last_status FROM "
	    "event_log WHERE id = $1::uuid" },
	/*
	 * Pending again, with a new 3-day window.  An attempt in flight
	 * loses its claim (its outcome then changes nothing) and the next
	 * one waits for its deadline: never two at once.
	 */
	[S_REDELIVER] = { "events_redeliver",
	    "UPDATE event_log SET delivery = 'pending', queued_at = now(), "
	    "attempts_queued = attempts, gone_url_hash = NULL, "
	    "next_attempt_at = CASE WHEN claim_by IS NOT NULL THEN "
	    "greatest(next_attempt_at, now()) ELSE now() END, claim_by = NULL "
	    "WHERE id = $1::uuid RETURNING id" },
	[S_CLAIM] = { "events_claim",
	    "UPDATE event_log e SET claim_by = $1, next_attempt_at = now() + "
	    "make_interval(secs => $2::int), attempts = e.attempts + 1, "
	    "last_attempt_at = now() FROM (SELECT id FROM event_log WHERE "
	    "delivery = 'pending' AND next_attempt_at <= now() AND queued_at > "
	    "now() - interval '3 days' AND ($3::text[] IS NULL OR type = "
	    "ANY($3::text[])) ORDER BY next_attempt_at "
	    "LIMIT $4::int FOR UPDATE SKIP LOCKED) d WHERE e.id = d.id "
	    "RETURNING e.id, 'evt_' || replace(e.id::text, '-', ''), "
	    EVENT_JSON("e.") ", e.attempts, e.attempts - e.attempts_queued" },
#define CLAIMED "WHERE id = $1::uuid AND claim_by = $2 AND attempts = $3::int"
	[S_DONE] = { "events_delivered",
	    "UPDATE event_log SET delivery = 'delivered', delivered_at = "
	    "now(), claim_by = NULL, last_status = $4::int, last_error = NULL "
	    CLAIMED " AND delivery = 'pending'" },
	[S_RETRY] = { "events_retry",
	    "UPDATE event_log SET claim_by = NULL, last_status = $4::int, "
	    "last_error = $5, next_attempt_at = now() + make_interval(secs => "
	    "$6::int), delivery = CASE WHEN now() + make_interval(secs => "
	    "$6::int) > queued_at + interval '3 days' THEN 'failed' ELSE "
	    "'pending' END " CLAIMED " AND delivery = 'pending' RETURNING "
	    "delivery" },
	[S_GONE] = { "events_endpoint_gone",
	    "WITH g AS (INSERT INTO webhook_endpoints (url_hash) VALUES ($4) "
	    "ON CONFLICT (url_hash) DO NOTHING) UPDATE event_log SET delivery "
	    "= 'failed', claim_by = NULL, last_status = 410, last_error = "
	    "'endpoint_gone', gone_url_hash = $4 " CLAIMED " AND delivery = "
	    "'pending'" },
	/* Shutting down: a claimed event not attempted is due again. */
	[S_RELEASE] = { "events_release",
	    "UPDATE event_log SET claim_by = NULL, next_attempt_at = now(), "
	    "attempts = attempts - 1 " CLAIMED " AND delivery = 'pending'" },
#undef CLAIMED
	[S_IS_GONE] = { "events_endpoint_is_gone",
	    "SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE url_hash = "
	    "$1)" },
	[S_SWEEP_NONE] = { "events_sweep_unsubscribed",
	    "UPDATE event_log SET delivery = 'none' WHERE id IN (SELECT id "
	    "FROM event_log WHERE delivery = 'pending' AND type <> ALL("
	    "$1::text[]) LIMIT " SWEEP " FOR UPDATE SKIP LOCKED)" },
	/* Unclaimed, or claimed by an attempt past its deadline. */
	[S_SWEEP_GONE] = { "events_sweep_gone",
	    "UPDATE event_log SET delivery = 'failed', claim_by = NULL, "
	    "last_error = 'endpoint_gone', gone_url_hash = $2 WHERE id IN ("
	    "SELECT id FROM event_log WHERE delivery = 'pending' AND (claim_by "
	    "IS NULL OR next_attempt_at <= now()) AND ($1::text[] IS NULL OR "
	    "type = ANY($1::text[])) LIMIT " SWEEP " FOR UPDATE SKIP LOCKED)" },
	/*
	 * Failed as endpoint_gone at another URL, still in its window: due
	 * again here (during the rolling deploy that changes the URL, the
	 * old processes fail what the new ones can deliver).
	 */
	[S_REQUEUE_GONE] = { "events_requeue_gone",
	    "UPDATE event_log SET delivery = 'pending', next_attempt_at = now(), "
	    "claim_by = NULL, attempts_queued = attempts, gone_url_hash = NULL "
	    "WHERE id IN (SELECT id FROM event_log WHERE delivery = 'failed' "
	    "AND last_error = 'endpoint_gone' AND queued_at > now() - interval "
	    "'3 days' AND gone_url_hash IS DISTINCT FROM $2 AND ($1::text[] IS "
	    "NULL OR type = ANY($1::text[])) LIMIT " SWEEP " FOR UPDATE SKIP "
	    "LOCKED)" },
	/*
	 * Pending past its 3-day window and not being attempted: failed with
	 * a URL ($1), else 'none' (a URL set later delivers 3 days back at
	 * most, not the whole retention).
	 */
	[S_EXPIRE] = { "events_expire",
	    "UPDATE event_log SET delivery = CASE WHEN $1::boolean THEN "
	    "'failed' ELSE 'none' END, last_error = CASE WHEN $1::boolean THEN "
	    "'not delivered within 3 days' ELSE last_error END, claim_by = NULL "
	    "WHERE id IN (SELECT id FROM event_log WHERE delivery = 'pending' "
	    "AND next_attempt_at <= now() AND queued_at < now() - interval "
	    "'3 days' ORDER BY next_attempt_at LIMIT " SWEEP " FOR UPDATE SKIP "
	    "LOCKED)" },
	[S_PRUNE] = { "events_prune",
	    "DELETE FROM event_log WHERE id IN (SELECT id FROM event_log WHERE "
	    "at < now() - make_interval(secs => $1::int) ORDER BY at LIMIT "
	    SWEEP " FOR UPDATE SKIP LOCKED)" },
	[S_PENDING] = { "events_pending",
	    "SELECT count(*), coalesce(extract(epoch FROM now() - "
	    "min(queued_at)), 0)::float8 FROM event_log WHERE delivery = "
	    "'pending' AND ($1::text[] IS NULL OR type = ANY($1::text[]))" },
	/* Retries waiting on a backoff, due now: the endpoint answers
	 * again (an attempt that failed before $2 seconds ago). */
	[S_WAKE] = { "events_wake_retries",
	    "UPDATE event_log SET next_attempt_at = now() WHERE id IN (SELECT "
	    "id FROM event_log WHERE delivery = 'pending' AND claim_by IS NULL "
	    "AND attempts > 0 AND next_attempt_at > now() AND last_attempt_at "
	    "< now() - make_interval(secs => $2::int) AND last_status IS "
	    "DISTINCT FROM 429 AND last_status IS DISTINCT FROM 503 AND "
	    "($1::text[] IS NULL "
	    "OR type = ANY($1::text[])) ORDER BY next_attempt_at LIMIT " SWEEP
	    " FOR UPDATE SKIP LOCKED)" },
	[S_END] = { NULL, NULL },
};

#define S store_events_stmts

static void
pos_copy(struct store_event_pos *p, const PGresult *r, int row, int xc,
    int sc)
{
	snprintf(p->xid, sizeof(p->xid), "%s", PQgetvalue(r, row, xc));
	snprintf(p->seq, sizeof(p->seq), "%s", PQgetvalue(r, row, sc));
}

bool
store_events_page(PGconn *c, const struct store_event_pos *after,
    const char *types, int rows, struct store_event_page *out)
{
	char n[16];
	PGresult *r;
	int i, k;

	memset(out, 0, sizeof(*out));
	snprintf(n, sizeof(n), "%d", rows);
	r = db_run(c, &S[S_PAGE], 4,
	    (const char *[]){ after->xid, after->seq, types, n });
	if (r == NULL)
		return false;
	out->json = xcalloc((size_t)PQntuples(r) + 1, sizeof(char *));
	for (i = k = 0; i < PQntuples(r); i++) {
		if (PQgetisnull(r, i, 0))
			continue;
		out->json[k++] = db_dup(r, i, 0);
		pos_copy(&out->last, r, i, 1, 2);
	}
	out->n = k;
	snprintf(out->horizon.xid, sizeof(out->horizon.xid), "%s",
	    PQgetvalue(r, 0, 3));
	snprintf(out->horizon.seq, sizeof(out->horizon.seq), "0");
	PQclear(r);
	return true;
}

void
store_event_page_free(struct store_event_page *p)
{
	int i;

	for (i = 0; i < p->n; i++)
		free(p->json[i]);
	free(p->json);
	memset(p, 0, sizeof(*p));
}

/* The one-row result of s on id: 1 with *res set, 0 none, -1 failed. */
static int
one_row(PGconn *c, int s, const char *id, PGresult **res)
{
	PGresult *r = db_run(c, &S[s], 1, (const char *[]){ id });

	*res = NULL;
	if (r == NULL)
		return -1;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return 0;
	}
	*res = r;
	return 1;
}

int
store_event_position(PGconn *c, const char *id, struct store_event_pos *out)
{
	PGresult *r;
	int got = one_row(c, S_POS, id, &r);

	if (got == 1) {
		pos_copy(out, r, 0, 0, 1);
		PQclear(r);
	}
	return got;
}

int
store_event_get(PGconn *c, const char *id, struct store_event *out)
{
	PGresult *r;
	int got = one_row(c, S_GET, id, &r);

	memset(out, 0, sizeof(*out));
	if (got != 1)
		return got;
	out->json = db_dup(r, 0, 0);
	out->type = db_dup(r, 0, 1);
	out->delivery = db_dup(r, 0, 2);
	out->attempts = db_long(r, 0, 3, 0);
	out->last_attempt_at = db_dup(r, 0, 4);
	out->last_error = db_dup(r, 0, 5);
	out->last_status = db_long(r, 0, 6, 0);
	PQclear(r);
	return 1;
}

void
store_event_free(struct store_event *e)
{
	free(e->json);
	free(e->type);
	free(e->delivery);
	free(e->last_attempt_at);
	free(e->last_error);
	memset(e, 0, sizeof(*e));
}

int
store_event_redeliver(PGconn *c, const char *id)
{
	PGresult *r;
	int got = one_row(c, S_REDELIVER, id, &r);

	PQclear(r);
	return got;
}

int
store_deliveries_claim(PGconn *c, const char *proc, long deadline_s,
    const char *types, int max, struct store_delivery **out)
{
	char dl[24], n[16];
	PGresult *r;
	int i, rows;

	*out = NULL;
	snprintf(dl, sizeof(dl), "%ld", deadline_s);
	snprintf(n, sizeof(n), "%d", max);
	r = db_run(c, &S[S_CLAIM], 4, (const char *[]){ proc, dl, types, n });
	if (r == NULL)
		return -1;
	rows = PQntuples(r);
	*out = xcalloc((size_t)rows + 1, sizeof(struct store_delivery));
	for (i = 0; i < rows; i++) {
		(*out)[i].id = db_dup(r, i, 0);
		(*out)[i].evt_id = db_dup(r, i, 1);
		(*out)[i].json = db_dup(r, i, 2);
		(*out)[i].attempt = db_long(r, i, 3, 0);
		(*out)[i].nth = db_long(r, i, 4, 1);
	}
	PQclear(r);
	return rows;
}

void
store_deliveries_free(struct store_delivery *d, int n)
{
	int i;

	for (i = 0; d != NULL && i < n; i++) {
		free(d[i].id);
		free(d[i].evt_id);
		free(d[i].json);
	}
	free(d);
}

/* The text of an attempt's number and of an HTTP status (0: NULL). */
struct outcome_args {
	char attempt[24], status[16];
};

static const char *
outcome_args(struct outcome_args *a, const struct store_delivery *d,
    long status)
{
	snprintf(a->attempt, sizeof(a->attempt), "%ld", d->attempt);
	snprintf(a->status, sizeof(a->status), "%ld", status);
	return status > 0 ? a->status : NULL;
}

bool
store_delivery_done(PGconn *c, const struct store_delivery *d,
    const char *proc, long status)
{
	struct outcome_args a;
	const char *st = outcome_args(&a, d, status);

	return db_do(c, &S[S_DONE], 4,
	    (const char *[]){ d->id, proc, a.attempt, st });
}

bool
store_delivery_retry(PGconn *c, const struct store_delivery *d,
    const char *proc, long status, const char *error, long delay_s,
    bool *failed)
{
	struct outcome_args a;
	const char *st = outcome_args(&a, d, status);
	char delay[24];
	PGresult *r;

	*failed = false;
	snprintf(delay, sizeof(delay), "%ld", delay_s);
	r = db_run(c, &S[S_RETRY], 6,
	    (const char *[]){ d->id, proc, a.attempt, st, error, delay });
	if (r == NULL)
		return false;
	*failed = PQntuples(r) == 1 &&
	    strcmp(PQgetvalue(r, 0, 0), "failed") == 0;
	PQclear(r);
	return true;
}

bool
store_endpoint_gone(PGconn *c, const struct store_delivery *d,
    const char *proc, const char *url_hash)
{
	struct outcome_args a;

	outcome_args(&a, d, 0);
	return db_do(c, &S[S_GONE], 4,
	    (const char *[]){ d->id, proc, a.attempt, url_hash });
}

int
store_endpoint_is_gone(PGconn *c, const char *url_hash)
{
	PGresult *r;
	int got = one_row(c, S_IS_GONE, url_hash, &r);

	if (got == 1)
		got = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	return got;
}

/* Rows touched by statement s with one parameter, or -1. */
static long
touched(PGconn *c, int s, const char *param)
{
	return db_rows(c, &S[s], 1, (const char *[]){ param });
}

long
store_events_sweep_unsubscribed(PGconn *c, const char *types)
{
	return touched(c, S_SWEEP_NONE, types);
}

/* Rows touched by statement s with two parameters, or -1. */
static long
touched2(PGconn *c, int s, const char *p1, const char *p2)
{
	return db_rows(c, &S[s], 2, (const char *[]){ p1, p2 });
}

long
store_events_sweep_gone(PGconn *c, const char *types, const char *url_hash)
{
	return touched2(c, S_SWEEP_GONE, types, url_hash);
}

long
store_events_requeue_gone(PGconn *c, const char *types, const char *url_hash)
{
	return touched2(c, S_REQUEUE_GONE, types, url_hash);
}

long
store_events_expire(PGconn *c, bool delivering)
{
	return touched(c, S_EXPIRE, delivering ? "t" : "f");
}

bool
store_delivery_release(PGconn *c, const struct store_delivery *d,
    const char *proc)
{
	struct outcome_args a;

	outcome_args(&a, d, 0);
	return db_do(c, &S[S_RELEASE], 3,
	    (const char *[]){ d->id, proc, a.attempt });
}

long
store_events_wake_retries(PGconn *c, const char *types, long before_s)
{
	char s[24];

	snprintf(s, sizeof(s), "%ld", before_s);
	return touched2(c, S_WAKE, types, s);
}

long
store_events_prune(PGconn *c, long retention_s)
{
	char s[24];

	snprintf(s, sizeof(s), "%ld", retention_s);
	return touched(c, S_PRUNE, s);
}

bool
store_events_pending(PGconn *c, const char *types, long *n, double *oldest_s)
{
	PGresult *r = db_run(c, &S[S_PENDING], 1, (const char *[]){ types });

	*n = 0;
	*oldest_s = 0;
	if (r == NULL)
		return false;
	*n = db_long(r, 0, 0, 0);
	*oldest_s = strtod(PQgetvalue(r, 0, 1), NULL);
	PQclear(r);
	return true;
}
