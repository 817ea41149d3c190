/*
 * PostgreSQL pool: a stack of idle PGconn* under a mutex and condition
 * variable.  All connections are opened at start (db_warm); one that dies
 * is closed and opened again on demand, outside the lock, so a PostgreSQL
 * outage costs each waiting request at most the connect timeout and the
 * pool heals by itself once the server is back.
 */
#include "db.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-events.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "mem.h"
#include "secret.h"
#include "text.h"

/* The statements to prepare (db_register) and whether to (config). */
static struct {
	const struct db_stmt *const *tables;
	int n_tables;
	bool on;
} stmts;

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;      /* readers wait here */
	pthread_cond_t cv_bulk; /* bulk work waits here */
	PGconn **idle;
	int n_idle;
	int total; /* idle + in use + being opened */
	int size;
	/* Bulk work (callbacks, writes that wait on finX) may hold at most
	 * size - reserve connections, so short reads always find one. */
	int reserve;
	PGconn **bulk; /* connections handed out by db_acquire_bulk */
	int n_bulk;
	int n_bulk_opening; /* bulk slots taken while connecting */
	long timeout_ms;
	long waits, timeouts;
	char *conninfo;
	char *options;
	bool closed;
} pool = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER,
	.cv_bulk = PTHREAD_COND_INITIALIZER };

/* Wake one waiter of each kind (never all: a burst has hundreds). */
static void
wake(void)
{
	pthread_cond_signal(&pool.cv);
	pthread_cond_signal(&pool.cv_bulk);
}

/*
 * Set once db_init has filled the pool in.  finxd serve listens before
 * the database is ready (/healthz, /readyz answer meanwhile), so requests
 * may ask for a connection before there is a pool: they get NULL (503) at
 * once instead of reading fields db_init is still writing.
 */
static atomic_bool created;

void
db_init(const struct config *cfg)
{
	pool.size = (int)cfg->db_pool_size;
	pool.timeout_ms = cfg->db_timeout_ms;
	pool.idle = xcalloc((size_t)pool.size, sizeof(PGconn *));
	pool.bulk = xcalloc((size_t)pool.size, sizeof(PGconn *));
	pool.reserve = pool.size >= 4 ? pool.size / 4 : pool.size >= 2 ? 1 : 0;
	pool.conninfo = xstrdup(cfg->database_url);
	/* No transaction waits on finX (claims are committed rows with
	 * deadlines), but a reauth may wait for a pull's write transaction
	 * of thousands of rows (REFRESH.md, "Deletion and reauth"): generous
	 * bounds, which also end a session left idle in a transaction (it
	 * would hold back GET /v1/events, EVENTS.md). */
	pool.options = xasprintf("-c statement_timeout=%ld "
				 "-c idle_in_transaction_session_timeout=%ld",
	    cfg->finx_timeout_ms + 15000, cfg->finx_timeout_ms + 30000);
	atomic_store(&created, true);
}

void
db_shutdown(void)
{
	pthread_mutex_lock(&pool.mu);
	pool.closed = true;
	while (pool.n_idle > 0) {
		PQfinish(pool.idle[--pool.n_idle]);
		pool.total--;
	}
	pthread_cond_broadcast(&pool.cv);
	pthread_cond_broadcast(&pool.cv_bulk);
	pthread_mutex_unlock(&pool.mu);
	free(pool.idle);
	pool.idle = NULL;
	free(pool.bulk);
	pool.bulk = NULL;
	free_secret(pool.conninfo);
	pool.conninfo = NULL;
	free(pool.options);
	pool.options = NULL;
}

static PGconn *
connect_with(const char *conninfo, const char *options, char **err)
{
	/* Keywords before dbname are defaults the operator's string may
	 * override; expand_dbname=1 parses it as a full connection string.
	 * TCP keepalives and tcp_user_timeout: a server that vanished
	 * without a reset (a failover, a dead host) fails a statement in
	 * seconds instead of the kernel's quarter of an hour, so a
	 * heartbeat goes stale only when its process really is cut off. */
	const char *const kw[] = { "connect_timeout", "application_name",
		"keepalives", "keepalives_idle", "keepalives_interval",
		"keepalives_count", "tcp_user_timeout", "options", "dbname",
		NULL };
	const char *const vals[] = { "5", "finxd", "1", "10", "3", "3",
		"10000", options, conninfo && *conninfo ? conninfo : NULL,
		NULL };
	PGconn *c = PQconnectdbParams(kw, vals, 1);

	if (c == NULL || PQstatus(c) != CONNECTION_OK) {
		if (err != NULL) {
			const char *m = c ? PQerrorMessage(c) : "out of memory";

			*err = xstrndup(m, strcspn(m, "\n"));
		}
		PQfinish(c);
		return NULL;
	}
	db_quiet_notices(c);
	return c;
}

/*
 * libpq prints notices and errors that arrive between statements (a
 * server shutting down: "FATAL: terminating connection due to
 * administrator command") straight to stderr, which broke the JSON log.
 * They become one log line each; the text is PostgreSQL's own, which
 * names no parameter value.
 */
static void
notice_to_log(void *arg, const char *message)
{
	char *line = xstrndup(message, strcspn(message, "\n"));

	(void)arg;
	log_kv(LOG_WARN, "database notice", "notice", line, NULL);
	free(line);
}

void
db_quiet_notices(PGconn *c)
{
	PQsetNoticeProcessor(c, notice_to_log, NULL);
}

PGconn *
db_connect(const char *conninfo, char **err)
{
	return connect_with(conninfo, NULL, err);
}

/*
 * Whether an idle connection is still usable.  Pooled connections LISTEN
 * to nothing, and a restart of PostgreSQL terminates every backend with
 * an error message and a close, so readable while idle means dead.  One
 * poll(), no round trip; without it each connection killed by a restart
 * failed one request (a callback among them) once the server was back.
 */
static bool
idle_usable(PGconn *c)
{
	struct pollfd p = { .fd = PQsocket(c), .events = POLLIN };
	int n;

	if (p.fd < 0)
		return false;
	while ((n = poll(&p, 1, 0)) < 0 && errno == EINTR)
		;
	return n == 0;
}

/*
 * Whether a taker must wait (pool.mu held): nothing idle and no room to
 * open a connection, or bulk work already holding its share.
 */
static bool
must_wait(bool bulk)
{
	return (pool.n_idle == 0 && pool.total >= pool.size) ||
	    (bulk && pool.n_bulk + pool.n_bulk_opening >=
		    pool.size - pool.reserve);
}

/*
 * With pool.mu held, wait until a connection is idle or may be opened.
 * false, with pool.mu released, at the deadline or when the pool closes.
 */
static bool
wait_turn(bool bulk, const struct timespec *until)
{
	while (!pool.closed && must_wait(bulk)) {
		pool.waits++;
		if (pthread_cond_timedwait(bulk ? &pool.cv_bulk : &pool.cv,
			&pool.mu, until) == ETIMEDOUT) {
			pool.timeouts++;
			pthread_mutex_unlock(&pool.mu);
			log_kv(LOG_WARN, "database pool exhausted", NULL);
			return false;
		}
	}
	if (pool.closed) {
		pthread_mutex_unlock(&pool.mu);
		return false;
	}
	return true;
}

/*
 * Open a connection, outside the lock, for a slot acquire has counted in
 * pool.total (and pool.n_bulk_opening for bulk work).  NULL after a log
 * line, the slot given back.
 */
static PGconn *
open_slot(bool bulk)
{
	char *err = NULL;
	PGconn *c = connect_with(pool.conninfo, pool.options, &err);

	if (c != NULL)
		db_prepare(c);
	pthread_mutex_lock(&pool.mu);
	if (bulk) {
		pool.n_bulk_opening--;
		if (c != NULL)
			pool.bulk[pool.n_bulk++] = c;
	}
	if (c == NULL) {
		pool.total--;
		wake();
	}
	pthread_mutex_unlock(&pool.mu);
	if (c == NULL) {
		log_kv(LOG_ERROR, "database connect failed", "error", err, NULL);
		free(err);
	}
	return c;
}

static PGconn *
acquire(bool bulk)
{
	struct timespec until;
	PGconn *c;

	if (!atomic_load(&created))
		return NULL;
	until = realtime_after_ms(pool.timeout_ms);
	pthread_mutex_lock(&pool.mu);
	for (;;) {
		if (!wait_turn(bulk, &until))
			return NULL;
		if (pool.n_idle == 0)
			break;
		c = pool.idle[--pool.n_idle];
		if (idle_usable(c)) {
			if (bulk)
				pool.bulk[pool.n_bulk++] = c;
			pthread_mutex_unlock(&pool.mu);
			return c;
		}
		/* Dead while idle: close it and look again. */
		PQfinish(c);
		pool.total--;
	}
	pool.total++;
	if (bulk)
		pool.n_bulk_opening++;
	pthread_mutex_unlock(&pool.mu);
	return open_slot(bulk);
}

PGconn *
db_acquire(void)
{
	return acquire(false);
}

PGconn *
db_acquire_bulk(void)
{
	return acquire(true);
}

void
db_release(PGconn *c)
{
	PGconn *orig = c;

	if (c == NULL)
		return;
	if (PQstatus(c) != CONNECTION_OK ||
	    PQtransactionStatus(c) != PQTRANS_IDLE) {
		PQfinish(c);
		c = NULL;
	}
	pthread_mutex_lock(&pool.mu);
	for (int i = 0; i < pool.n_bulk; i++) {
		if (pool.bulk[i] == orig) {
			pool.bulk[i] = pool.bulk[--pool.n_bulk];
			break;
		}
	}
	if (c != NULL && !pool.closed)
		pool.idle[pool.n_idle++] = c;
	else {
		if (c != NULL)
			PQfinish(c);
		pool.total--;
	}
	wake();
	pthread_mutex_unlock(&pool.mu);
}

/*
 * Open the whole pool before serving: take every connection (acquire
 * opens what the pool lacks) and give them all back.  Opened lazily, the
 * connections were opened in the first burst by whichever request came
 * next, and a short read then paid a backend start (fork,
 * authentication, cold catalog caches) on a loaded machine: 18-35 ms of
 * /v1/links reads in bench_callback waited on that.  Best effort: it
 * stops at the first failure (logged) and the pool opens connections on
 * demand as before.
 */
void
db_warm(void)
{
	PGconn **cs = xcalloc((size_t)pool.size, sizeof(*cs));
	int i, n = 0;

	while (n < pool.size && (cs[n] = acquire(false)) != NULL)
		n++;
	for (i = 0; i < n; i++)
		db_release(cs[i]);
	free(cs);
}

void
db_stats(long *in_use, long *total, long *waits, long *timeouts)
{
	pthread_mutex_lock(&pool.mu);
	*in_use = pool.total - pool.n_idle;
	*total = pool.total;
	*waits = pool.waits;
	*timeouts = pool.timeouts;
	pthread_mutex_unlock(&pool.mu);
}

void
db_register(const struct db_stmt *const *tables, int n_tables, bool prepared)
{
	stmts.tables = tables;
	stmts.n_tables = n_tables;
	stmts.on = prepared;
}

/*
 * Whether a connection holds the prepared statements is libpq instance
 * data of this event procedure: set when db_prepare succeeded, gone
 * with the connection (and cleared by a reset, which drops them).
 */
static char prepared_mark;

static int
prepared_events(PGEventId id, void *info, void *pass)
{
	(void)pass;
	if (id == PGEVT_CONNRESET)
		PQsetInstanceData(((PGEventConnReset *)info)->conn,
		    prepared_events, NULL);
	return 1;
}

static bool
is_prepared(const PGconn *c)
{
	return PQinstanceData(c, prepared_events) == &prepared_mark;
}

/* Send every registered statement's Parse in one pipeline. */
static int
send_prepares(PGconn *c)
{
	int t, n = 0;

	for (t = 0; t < stmts.n_tables; t++)
		for (const struct db_stmt *s = stmts.tables[t]; s->name; s++) {
			if (!PQsendPrepare(c, s->name, s->sql, 0, NULL))
				return -1;
			n++;
		}
	return PQpipelineSync(c) ? n : -1;
}

/* Read the pipeline's answers; the name of the first refused, if any. */
static bool
read_prepares(PGconn *c, char **bad)
{
	bool ok = true;
	PGresult *r;

	for (;;) {
		if ((r = PQgetResult(c)) == NULL)
			continue; /* end of one statement's results */
		if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
			PQclear(r);
			return ok;
		}
		if (PQresultStatus(r) != PGRES_COMMAND_OK && ok) {
			const char *m =
			    PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);

			ok = false;
			*bad = xstrdup(m ? m : PQerrorMessage(c));
		}
		PQclear(r);
		if (PQstatus(c) != CONNECTION_OK)
			return false;
	}
}

bool
db_prepare(PGconn *c)
{
	char *bad = NULL;
	bool ok;

	if (!stmts.on || stmts.n_tables == 0)
		return true;
	if (!PQregisterEventProc(c, prepared_events, "finxd-prepared", NULL) ||
	    !PQenterPipelineMode(c))
		return false;
	ok = send_prepares(c) >= 0 && read_prepares(c, &bad);
	PQexitPipelineMode(c);
	if (ok)
		PQsetInstanceData(c, prepared_events, &prepared_mark);
	else
		log_kv(LOG_WARN, "statements not prepared; running unprepared",
		    "error", bad ? bad : PQerrorMessage(c), NULL);
	free(bad);
	return ok;
}

PGconn *
db_open(const char *conninfo, char **err)
{
	PGconn *c = db_connect(conninfo, err);

	if (c != NULL)
		db_prepare(c);
	return c;
}

/* This thread's last failure: kind, SQLSTATE, primary message. */
static _Thread_local struct {
	enum db_fail kind;
	char state[6];
	char msg[200];
	bool has_msg;
} last;

enum db_fail
db_classify(const char *state)
{
	static const struct {
		const char *state; /* a full SQLSTATE, or a class of two */
		enum db_fail kind;
	} map[] = {
		{ "23505", DBF_CONFLICT }, { "23P01", DBF_CONFLICT },
		{ "22007", DBF_BAD_INPUT }, { "22008", DBF_BAD_INPUT },
		{ "22003", DBF_BAD_INPUT }, { "22P02", DBF_BAD_INPUT },
		{ "40001", DBF_RETRY }, { "40P01", DBF_RETRY },
		{ "57014", DBF_UNAVAILABLE }, /* statement timeout */
		{ "08", DBF_UNAVAILABLE },    /* connection exceptions */
		{ "57P", DBF_UNAVAILABLE },   /* shutdown, crash, restart */
		{ "53", DBF_UNAVAILABLE },    /* out of resources */
	};
	size_t i;

	if (state == NULL || *state == '\0')
		return DBF_UNAVAILABLE; /* no answer from the server at all */
	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strncmp(state, map[i].state, strlen(map[i].state)) == 0)
			return map[i].kind;
	return DBF_FAILED;
}

enum db_fail
db_failure(void)
{
	return last.kind;
}

const char *
db_failure_sqlstate(void)
{
	return last.state;
}

const char *
db_failure_message(void)
{
	return last.has_msg ? last.msg : NULL;
}

void
db_fail_unavailable(void)
{
	last.kind = DBF_UNAVAILABLE;
	last.state[0] = '\0';
	snprintf(last.msg, sizeof(last.msg), "no database connection");
	last.has_msg = true;
}

/* Keep r when it succeeded; else record how it failed and free it. */
static PGresult *
checked(PGconn *c, PGresult *r)
{
	ExecStatusType st = PQresultStatus(r);
	const char *state, *m;

	if (r != NULL && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK))
		return r;
	state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	last.kind = PQstatus(c) != CONNECTION_OK ? DBF_UNAVAILABLE
						  : db_classify(state);
	snprintf(last.state, sizeof(last.state), "%s", state ? state : "");
	/* The primary message names no parameter value, but for data
	 * exceptions, which quote the value refused. */
	m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	if (m == NULL)
		m = PQerrorMessage(c);
	last.has_msg = strncmp(last.state, "22", 2) != 0;
	if (last.has_msg)
		snprintf(last.msg, sizeof(last.msg), "%.*s",
		    (int)strcspn(m, "\n"), m);
	PQclear(r);
	return NULL;
}

PGresult *
db_run(PGconn *c, const struct db_stmt *s, int n, const char *const *params)
{
	if (is_prepared(c))
		return checked(c,
		    PQexecPrepared(c, s->name, n, params, NULL, NULL, 0));
	return checked(c, PQexecParams(c, s->sql, n, NULL, params, NULL, NULL,
			      0));
}

bool
db_do(PGconn *c, const struct db_stmt *s, int n, const char *const *params)
{
	PGresult *r = db_run(c, s, n, params);

	PQclear(r);
	return r != NULL;
}

long
db_rows(PGconn *c, const struct db_stmt *s, int n, const char *const *params)
{
	PGresult *r = db_run(c, s, n, params);
	long rows;

	if (r == NULL)
		return -1;
	rows = strtol(PQcmdTuples(r), NULL, 10);
	PQclear(r);
	return rows;
}

PGresult *
db_exec(PGconn *c, const char *sql, int n, const char *const *params)
{
	return checked(c, PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0));
}

PGresult *
db_exec_prepared(PGconn *c, const char *name, const char *sql, int n,
    const char *const *params)
{
	(void)name;
	return db_exec(c, sql, n, params);
}

bool
db_cmd(PGconn *c, const char *sql, int n, const char *const *params)
{
	PGresult *r = db_exec(c, sql, n, params);

	PQclear(r);
	return r != NULL;
}

/* COMMIT answers "ROLLBACK" for a transaction a failure aborted. */
static bool
commit(PGconn *c)
{
	PGresult *r = checked(c, PQexec(c, "COMMIT"));
	bool ok = r != NULL && strcmp(PQcmdStatus(r), "COMMIT") == 0;

	if (r != NULL && !ok && last.kind == DBF_NONE)
		last.kind = DBF_FAILED;
	PQclear(r);
	return ok;
}

bool
db_tx(PGconn *c, bool (*body)(PGconn *c, void *arg), void *arg)
{
	int attempt;

	for (attempt = 0; attempt < 3; attempt++) {
		PGresult *r;

		if ((r = checked(c, PQexec(c, "BEGIN"))) == NULL)
			return false;
		PQclear(r);
		last.kind = DBF_NONE;
		if (body(c, arg) && commit(c))
			return true;
		if (PQtransactionStatus(c) != PQTRANS_IDLE)
			PQclear(PQexec(c, "ROLLBACK"));
		if (last.kind != DBF_RETRY)
			return false;
	}
	return false;
}
const char *
db_val(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

char *
db_dup(const PGresult *r, int row, int col)
{
	const char *v = db_val(r, row, col);

	return v != NULL ? xstrdup(v) : NULL;
}

long
db_long(const PGresult *r, int row, int col, long dflt)
{
	long v;

	if (r == NULL || row >= PQntuples(r) || PQgetisnull(r, row, col) ||
	    !parse_long(PQgetvalue(r, row, col), LONG_MIN, LONG_MAX, &v))
		return dflt;
	return v;
}
