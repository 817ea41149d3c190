/*
 * Store: manual syncs (store_sync.h).  The open statuses are those of
 * the partial index syncs_open_idx, spelled as it is.
 */
#include "store_sync.h"

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

#define SYNC_OPEN "status NOT IN ('COMPLETED', 'FAILED', 'ERROR', 'CANCELLED')"

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
	"s.connection_id WHERE s.status IN ('COMPLETED', 'FAILED', 'ERROR', " \
	"'CANCELLED')"

enum { S_LOCK, S_CHECK, S_CREATE, S_GET, S_CLAIM, S_FINISH, S_LATER, S_FAIL };

const struct db_stmt store_sync_stmts[] = {
	/* Taken alone: the next statement's snapshot must follow it.  Tried,
	 * not waited for: a waiter would hold its pooled connection for as
	 * long as the holder's finX call lasts. */
	[S_LOCK] = { "sync_lock",
	    "SELECT pg_try_advisory_xact_lock(hashtext('finxd.sync:' || $1))" },
	/* The connection's status, its first access id, its open sync. */
	[S_CHECK] = { "sync_check",
	    "SELECT c.status, a.access_id, "
	    SYNC_COLS("s.")
	    " FROM connections c LEFT JOIN LATERAL (SELECT access_id FROM "
	    "accounts WHERE connection_id = c.id AND access_id IS NOT NULL "
	    "ORDER BY created_at LIMIT 1) a ON true LEFT JOIN LATERAL (SELECT "
	    "* FROM syncs WHERE connection_id = c.id AND " SYNC_OPEN " ORDER "
	    "BY created_at DESC LIMIT 1) s ON true WHERE c.id = $1" },
	[S_CREATE] = { "sync_create",
	    "INSERT INTO syncs (id, connection_id, access_id, finx_sync_id, "
	    "status, next_poll_at) VALUES ($1, $2, $3, $4, $5, now() + "
	    "interval '1 second') RETURNING " SYNC_COLS("") },
	[S_GET] = { "sync_get",
	    "SELECT " SYNC_COLS("") " FROM syncs WHERE id = $1" },
	[S_CLAIM] = { "sync_claim_due",
	    "SELECT id, connection_id, access_id, finx_sync_id FROM syncs "
	    "WHERE " SYNC_OPEN " AND next_poll_at <= now() ORDER BY "
	    "next_poll_at LIMIT 1 FOR UPDATE SKIP LOCKED" },
	[S_FINISH] = { "sync_finish",
	    "WITH s AS (UPDATE syncs SET status = $2, error = $3::jsonb, "
	    "started_at = CASE WHEN $2 <> 'QUEUED' THEN coalesce(started_at, "
	    "now()) END, ended_at = CASE WHEN $2 IN ('COMPLETED', 'FAILED', "
	    "'ERROR', 'CANCELLED') THEN now() END, next_poll_at = now() + "
	    "interval '2 seconds', updated_at = now() WHERE id = $1 AND "
	    SYNC_OPEN " RETURNING id, connection_id, status, error), "
	    "p AS (UPDATE pulls p SET next_pull_at = now(), attended "
	    "= true FROM s WHERE p.connection_id = s.connection_id AND $2 = "
	    "'COMPLETED') " SYNC_ENDED_EVENT },
	[S_LATER] = { "sync_poll_later",
	    "UPDATE syncs SET next_poll_at = now() + interval '10 seconds', "
	    "updated_at = now() WHERE id = $1" },
	[S_FAIL] = { "sync_fail",
	    "WITH s AS (UPDATE syncs SET status = 'FAILED', error = "
	    "jsonb_build_object('message', 'connection has no valid access "
	    "token'), ended_at = now(), updated_at = now() WHERE id = $1 AND "
	    SYNC_OPEN " RETURNING id, connection_id, status, error) "
	    SYNC_ENDED_EVENT },
	{ NULL, NULL },
};

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
	for (i = 0; i < SYNC_NCOLS; i++) {
		const char *v = db_val(r, 0, col + i);

		*f[i] = v != NULL ? xstrdup(v) : NULL;
	}
}

struct begin_tx {
	const char *conn_id;
	store_sync_start_fn *start;
	void *arg;
	struct store_sync *out;
	enum store_sync_begun got;
};

/* What the check found; SSB_IDLE when a sync may be started. */
static enum store_sync_begun
begin_check(const PGresult *r, struct store_sync *out)
{
	if (PQntuples(r) == 0)
		return SSB_NO_CONNECTION;
	if (strcmp(PQgetvalue(r, 0, 0), "active") != 0)
		return SSB_NOT_ACTIVE;
	if (!PQgetisnull(r, 0, 2)) {
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
	PGresult *r = db_run(c, &store_sync_stmts[S_CHECK], 1,
	    (const char *[]){ conn_id });
	enum store_sync_begun b;

	if (r == NULL)
		return SSB_FAILED;
	b = begin_check(r, out);
	PQclear(r);
	return b;
}

/* The connection's advisory lock: 1 taken, 0 another holds it, -1
 * failed. */
static int
begin_lock(PGconn *c, const char *conn_id)
{
	PGresult *r = db_run(c, &store_sync_stmts[S_LOCK], 1,
	    (const char *[]){ conn_id });
	int got;

	if (r == NULL)
		return -1;
	got = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	return got;
}

static bool
begin_body(PGconn *c, void *arg)
{
	struct begin_tx *t = arg;
	PGresult *r;
	int locked;
	bool ok = true;

	t->got = SSB_FAILED;
	if ((locked = begin_lock(c, t->conn_id)) <= 0) {
		if (locked == 0)
			t->got = SSB_BUSY;
		return false;
	}
	if ((r = db_run(c, &store_sync_stmts[S_CHECK], 1,
		 (const char *[]){ t->conn_id })) == NULL)
		return false;
	t->got = begin_check(r, t->out);
	if (t->got == SSB_IDLE) {
		t->got = SSB_STARTED;
		if (!t->start(c, t->conn_id, PQgetvalue(r, 0, 1), t->arg,
			t->out)) {
			t->got = SSB_NOT_STARTED;
			ok = false;
		}
	}
	PQclear(r);
	return ok;
}

enum store_sync_begun
store_sync_begin(PGconn *c, const char *conn_id, store_sync_start_fn *start,
    void *arg, struct store_sync *out)
{
	struct begin_tx t = { conn_id, start, arg, out, SSB_FAILED };

	if (db_tx(c, begin_body, &t))
		return t.got;
	/* A failed start answers for itself, a held lock means wait; else
	 * the database failed. */
	return t.got == SSB_NOT_STARTED || t.got == SSB_BUSY ? t.got
							     : SSB_FAILED;
}

bool
store_sync_create(PGconn *c, const char *conn_id, const char *access_id,
    const char *finx_sync_id, const char *status, struct store_sync *out)
{
	char *id = uuid_new();
	PGresult *r = db_run(c, &store_sync_stmts[S_CREATE], 5,
	    (const char *[]){ id, conn_id, access_id, finx_sync_id, status });

	free(id);
	if (r == NULL)
		return false;
	sync_row(r, 0, out);
	PQclear(r);
	return true;
}

bool
store_sync_get(PGconn *c, const char *id, struct store_sync *out)
{
	PGresult *r =
	    db_run(c, &store_sync_stmts[S_GET], 1, (const char *[]){ id });

	store_sync_clear(out);
	if (r == NULL)
		return false;
	if (PQntuples(r) > 0)
		sync_row(r, 0, out);
	PQclear(r);
	return true;
}

struct claim_tx {
	store_sync_poll_fn *poll;
	void *arg;
	enum store_sync_polled got;
};

static bool
claim_body(PGconn *c, void *arg)
{
	struct claim_tx *t = arg;
	struct store_sync_due d;
	PGresult *r;
	bool ok;

	t->got = SSP_FAILED;
	if ((r = db_run(c, &store_sync_stmts[S_CLAIM], 0, NULL)) == NULL)
		return false;
	if (PQntuples(r) == 0) {
		PQclear(r);
		t->got = SSP_NONE;
		return true;
	}
	d.id = PQgetvalue(r, 0, 0);
	d.connection_id = PQgetvalue(r, 0, 1);
	d.access_id = PQgetvalue(r, 0, 2);
	d.finx_sync_id = PQgetvalue(r, 0, 3);
	ok = t->poll(c, &d, t->arg);
	PQclear(r);
	if (ok)
		t->got = SSP_POLLED;
	return ok;
}

enum store_sync_polled
store_sync_claim_due(PGconn *c, store_sync_poll_fn *poll, void *arg)
{
	struct claim_tx t = { poll, arg, SSP_FAILED };

	return db_tx(c, claim_body, &t) ? t.got : SSP_FAILED;
}

bool
store_sync_finish(PGconn *c, const char *id, const char *status,
    const char *error)
{
	return db_do(c, &store_sync_stmts[S_FINISH], 3,
	    (const char *[]){ id, status, error });
}

bool
store_sync_poll_later(PGconn *c, const char *id)
{
	return db_do(c, &store_sync_stmts[S_LATER], 1, (const char *[]){ id });
}

bool
store_sync_fail(PGconn *c, const char *id)
{
	return db_do(c, &store_sync_stmts[S_FAIL], 1, (const char *[]){ id });
}
