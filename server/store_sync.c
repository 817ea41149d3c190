/*
 * Store: manual syncs (store_sync.h).  The open statuses are those of
 * the partial indexes syncs_open_idx and syncs_one_open_idx, spelled as
 * they are.
 */
#include "store_sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "secret.h"
#include "store_int.h"

/* The columns of struct store_sync, in its order; t: the table's alias. */
#define SYNC_COLS(t)                                                           \
	t "id, " t "connection_id, " t "status, " t "error::text, "            \
	  SQL_TS(t "created_at") ", " SQL_TS(t "started_at") ", "            \
	  SQL_TS(t "ended_at") ", " SQL_TS(t "updated_at")
#define SYNC_NCOLS 8

#define SYNC_FINAL "('COMPLETED', 'FAILED', 'ERROR', 'CANCELLED')"
#define SYNC_OPEN "status NOT IN " SYNC_FINAL

/*
 * sync.completed or sync.failed of the rows s (id, connection_id, status,
 * error) that have just ended.  Only an open sync is updated, so a sync
 * ends, and has its event, once.
 */
#define SYNC_ENDED_EVENT                                                      \
	SQL_EVENT_INSERT "SELECT CASE WHEN s.status = 'COMPLETED' THEN "      \
	"'sync.completed' ELSE 'sync.failed' END, s.connection_id, NULL, "    \
	"jsonb_build_object('sync_id', s.id, 'connection_id', "               \
	"s.connection_id, 'user_id', c.user_id, 'status', lower(s.status), "  \
	"'error', s.error) FROM s JOIN connections c ON c.id = "              \
	"s.connection_id WHERE s.status IN " SYNC_FINAL
/* The end of an update of syncs that ends them: s, then the events. */
#define SYNC_ENDS                                                             \
	" RETURNING id, connection_id, status, error) " SYNC_ENDED_EVENT
/* A STARTING sync ended as failed with error e (SQL), on claim cond. */
#define SYNC_START_FAIL(e, cond)                                              \
	"WITH s AS (UPDATE syncs SET status = 'FAILED', error = " e ", "      \
	"ended_at = now(), updated_at = now(), claim = NULL WHERE "           \
	"status = 'STARTING' AND " cond SYNC_ENDS
#define SYNC_INTERRUPTED                                                      \
	"jsonb_build_object('message', 'the start of the sync was "           \
	"interrupted')"

enum {
	S_CHECK,
	S_STALE,
	S_START,
	S_STARTED,
	S_START_FAIL,
	S_GET,
	S_CLAIM,
	S_ABANDON,
	S_FINISH,
	S_LATER,
	S_FAIL
};

const struct db_stmt store_sync_stmts[] = {
	/* The connection's status, its first access id, its open sync
	 * (columns 2..9) and whether that is a start past its deadline. */
	[S_CHECK] = { "sync_check",
	    "SELECT c.status, a.access_id, " SYNC_COLS("s.") ", s.status = "
	    "'STARTING' AND s.next_poll_at <= now() FROM connections c LEFT "
	    "JOIN LATERAL (SELECT access_id FROM accounts WHERE connection_id "
	    "= c.id AND access_id IS NOT NULL ORDER BY created_at LIMIT 1) a "
	    "ON true LEFT JOIN LATERAL (SELECT * FROM syncs WHERE "
	    "connection_id = c.id AND " SYNC_OPEN " ORDER BY created_at DESC "
	    "LIMIT 1) s ON true WHERE c.id = $1" },
	/* A start of connection $1 whose starter ran out of time. */
	[S_STALE] = { "sync_start_stale",
	    SYNC_START_FAIL(SYNC_INTERRUPTED, "connection_id = $1 AND "
	    "next_poll_at <= now()") },
	/* The start's claim: nothing when an open sync stands in the way
	 * (syncs_one_open_idx) or the connection cannot sync. */
	[S_START] = { "sync_start_claim",
	    "INSERT INTO syncs (id, connection_id, access_id, finx_sync_id, "
	    "status, next_poll_at, claim) SELECT $1, c.id, a.access_id, '', "
	    "'STARTING', now() + make_interval(secs => $3::int), $4::uuid "
	    "FROM connections c JOIN LATERAL (SELECT access_id FROM accounts "
	    "WHERE connection_id = c.id AND access_id IS NOT NULL ORDER BY "
	    "created_at LIMIT 1) a ON true WHERE c.id = $2 AND c.status = "
	    "'active' ON CONFLICT (connection_id) WHERE " SYNC_OPEN " DO "
	    "NOTHING RETURNING " SYNC_COLS("") ", access_id" },
	[S_STARTED] = { "sync_start_set",
	    "UPDATE syncs SET finx_sync_id = $3, status = $4, next_poll_at = "
	    "now() + interval '1 second', claim = NULL, updated_at = now() "
	    "WHERE id = $1 AND claim = $2::uuid AND status = 'STARTING' "
	    "RETURNING " SYNC_COLS("") },
	[S_START_FAIL] = { "sync_start_failed",
	    SYNC_START_FAIL("$3::jsonb", "id = $1 AND claim = $2::uuid") },
	[S_GET] = { "sync_get",
	    "SELECT " SYNC_COLS("") " FROM syncs WHERE id = $1" },
	/* Committed: the claim is the row, not a lock held while finX is
	 * asked. */
	[S_CLAIM] = { "sync_claim_due",
	    "UPDATE syncs s SET next_poll_at = now() + make_interval(secs => "
	    "$1::int), claim = $2::uuid FROM (SELECT id FROM syncs WHERE "
	    SYNC_OPEN " AND next_poll_at <= now() ORDER BY next_poll_at "
	    "LIMIT 1 FOR UPDATE SKIP LOCKED) d WHERE s.id = d.id RETURNING "
	    "s.id, s.connection_id, s.access_id, s.finx_sync_id, s.status" },
	[S_ABANDON] = { "sync_abandon",
	    SYNC_START_FAIL(SYNC_INTERRUPTED, "id = $1 AND claim = $2::uuid") },
	[S_FINISH] = { "sync_finish",
	    "WITH s AS (UPDATE syncs SET status = $3, error = $4::jsonb, "
	    "started_at = CASE WHEN $3 <> 'QUEUED' THEN coalesce(started_at, "
	    "now()) END, ended_at = CASE WHEN $3 IN " SYNC_FINAL " THEN now() "
	    "END, next_poll_at = now() + interval '2 seconds', claim = NULL, "
	    "updated_at = now() WHERE id = $1 AND claim = $2::uuid AND "
	    SYNC_OPEN " RETURNING id, connection_id, status, error), "
	    "p AS (UPDATE pulls p SET next_pull_at = now(), attended "
	    "= true FROM s WHERE p.connection_id = s.connection_id AND $3 = "
	    "'COMPLETED') " SYNC_ENDED_EVENT },
	[S_LATER] = { "sync_poll_later",
	    "UPDATE syncs SET next_poll_at = now() + interval '10 seconds', "
	    "claim = NULL, updated_at = now() WHERE id = $1 AND claim = "
	    "$2::uuid" },
	[S_FAIL] = { "sync_fail",
	    "WITH s AS (UPDATE syncs SET status = 'FAILED', error = "
	    "jsonb_build_object('message', 'connection has no valid access "
	    "token'), ended_at = now(), updated_at = now(), claim = NULL "
	    "WHERE id = $1 AND claim = $2::uuid AND " SYNC_OPEN SYNC_ENDS },
	{ NULL, NULL },
};

#define S store_sync_stmts

/* The members of s, in the order of SYNC_COLS. */
static void
sync_fields(struct store_sync *s, char **f[SYNC_NCOLS])
{
	f[0] = &s->id;
	f[1] = &s->connection_id;
	f[2] = &s->status;
	f[3] = &s->error;
	f[4] = &s->created_at;
	f[5] = &s->started_at;
	f[6] = &s->ended_at;
	f[7] = &s->updated_at;
}

void
store_sync_clear(struct store_sync *s)
{
	char **f[SYNC_NCOLS];
	int i;

	sync_fields(s, f);
	for (i = 0; i < SYNC_NCOLS; i++)
		free(*f[i]);
	memset(s, 0, sizeof(*s));
}

/* Row 0 of r, columns from col on, into *out (cleared first). */
static void
sync_row(const PGresult *r, int col, struct store_sync *out)
{
	char **f[SYNC_NCOLS];
	int i;

	store_sync_clear(out);
	sync_fields(out, f);
	for (i = 0; i < SYNC_NCOLS; i++)
		*f[i] = db_dup(r, 0, col + i);
}

/* What the check found; SSB_IDLE when a sync may be started. */
static enum store_sync_begun
begin_check(const PGresult *r, struct store_sync *out)
{
	const char *stale;

	if (PQntuples(r) == 0)
		return SSB_NO_CONNECTION;
	if (strcmp(PQgetvalue(r, 0, 0), "active") != 0)
		return SSB_NOT_ACTIVE;
	stale = db_val(r, 0, 2 + SYNC_NCOLS);
	if (!PQgetisnull(r, 0, 2) && !(stale != NULL && *stale == 't')) {
		sync_row(r, 2, out);
		return SSB_RUNNING;
	}
	if (PQgetisnull(r, 0, 1))
		return SSB_NOT_PULLED;
	return SSB_IDLE;
}

enum store_sync_begun
store_sync_peek(PGconn *c, const char *conn_id, struct store_sync *out)
{
	PGresult *r = db_run(c, &S[S_CHECK], 1, (const char *[]){ conn_id });
	enum store_sync_begun b;

	if (r == NULL)
		return SSB_FAILED;
	b = begin_check(r, out);
	PQclear(r);
	return b;
}

void
store_sync_claim_free(struct store_sync_claim *k)
{
	free(k->claim);
	free(k->access_id);
	memset(k, 0, sizeof(*k));
}

/* One try of the start's claim: SSB_CLAIMED, SSB_IDLE when an open sync
 * stood in the way (look again), SSB_FAILED. */
static enum store_sync_begun
claim_try(PGconn *c, const char *conn_id, const char *deadline,
    struct store_sync_claim *k, struct store_sync *out)
{
	char *id = uuid_new();
	PGresult *r;
	enum store_sync_begun b = SSB_IDLE;

	store_sync_claim_free(k);
	k->claim = uuid_new();
	r = db_do(c, &S[S_STALE], 1, (const char *[]){ conn_id })
	    ? db_run(c, &S[S_START], 4,
		  (const char *[]){ id, conn_id, deadline, k->claim })
	    : NULL;
	free(id);
	if (r == NULL)
		return SSB_FAILED;
	if (PQntuples(r) == 1) {
		sync_row(r, 0, out);
		k->access_id = db_dup(r, 0, SYNC_NCOLS);
		b = SSB_CLAIMED;
	}
	PQclear(r);
	return b;
}

enum store_sync_begun
store_sync_claim_start(PGconn *c, const char *conn_id, long deadline_s,
    struct store_sync_claim *k, struct store_sync *out)
{
	enum store_sync_begun b = SSB_IDLE;
	char deadline[24];
	int tries;

	snprintf(deadline, sizeof(deadline), "%ld", deadline_s);
	/* Between a miss and the look, the open sync may have ended (or
	 * gone stale): try again, a few times. */
	for (tries = 0; tries < 3 && b == SSB_IDLE; tries++) {
		b = claim_try(c, conn_id, deadline, k, out);
		if (b == SSB_IDLE)
			b = store_sync_peek(c, conn_id, out);
	}
	if (b != SSB_CLAIMED)
		store_sync_claim_free(k);
	if (b == SSB_IDLE) {
		/* Open syncs came and went under every try: busy, not idle. */
		db_fail_unavailable();
		b = SSB_FAILED;
	}
	return b;
}

int
store_sync_started(PGconn *c, const char *id, const char *claim,
    const char *finx_sync_id, const char *status, struct store_sync *out)
{
	PGresult *r = db_run(c, &S[S_STARTED], 4,
	    (const char *[]){ id, claim, finx_sync_id, status });
	int got;

	if (r == NULL)
		return -1;
	got = PQntuples(r) == 1;
	if (got)
		sync_row(r, 0, out);
	PQclear(r);
	if (!got && !store_sync_get(c, id, out))
		return -1;
	return got;
}

bool
store_sync_start_failed(PGconn *c, const char *id, const char *claim,
    const char *error)
{
	return db_do(c, &S[S_START_FAIL], 3,
	    (const char *[]){ id, claim, error });
}

bool
store_sync_get(PGconn *c, const char *id, struct store_sync *out)
{
	PGresult *r = db_run(c, &S[S_GET], 1, (const char *[]){ id });

	store_sync_clear(out);
	if (r == NULL)
		return false;
	if (PQntuples(r) > 0)
		sync_row(r, 0, out);
	PQclear(r);
	return true;
}

void
store_sync_due_free(struct store_sync_due *d)
{
	free(d->id);
	free(d->connection_id);
	free(d->access_id);
	free(d->finx_sync_id);
	free(d->status);
	free(d->claim);
	memset(d, 0, sizeof(*d));
}

int
store_sync_claim_due(PGconn *c, long deadline_s, struct store_sync_due *d)
{
	char deadline[24];
	char *claim = uuid_new();
	PGresult *r;
	int got;

	memset(d, 0, sizeof(*d));
	snprintf(deadline, sizeof(deadline), "%ld", deadline_s);
	r = db_run(c, &S[S_CLAIM], 2, (const char *[]){ deadline, claim });
	if (r == NULL || PQntuples(r) != 1) {
		free(claim);
		got = r == NULL ? -1 : 0;
		PQclear(r);
		return got;
	}
	d->id = db_dup(r, 0, 0);
	d->connection_id = db_dup(r, 0, 1);
	d->access_id = db_dup(r, 0, 2);
	d->finx_sync_id = db_dup(r, 0, 3);
	d->status = db_dup(r, 0, 4);
	d->claim = claim;
	PQclear(r);
	return 1;
}

/* Statement k on claimed sync d, with more parameters after id, claim. */
static bool
on_claim(PGconn *c, int k, const struct store_sync_due *d, const char *p3,
    const char *p4, int n)
{
	return db_do(c, &S[k], n, (const char *[]){ d->id, d->claim, p3, p4 });
}

bool
store_sync_abandon(PGconn *c, const struct store_sync_due *d)
{
	return on_claim(c, S_ABANDON, d, NULL, NULL, 2);
}

bool
store_sync_finish(PGconn *c, const struct store_sync_due *d,
    const char *status, const char *error)
{
	return on_claim(c, S_FINISH, d, status, error, 4);
}

bool
store_sync_poll_later(PGconn *c, const struct store_sync_due *d)
{
	return on_claim(c, S_LATER, d, NULL, NULL, 2);
}

bool
store_sync_fail(PGconn *c, const struct store_sync_due *d)
{
	return on_claim(c, S_FAIL, d, NULL, NULL, 2);
}
