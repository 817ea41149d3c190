/*
 * Store: widget links (create, read, /start, the callback's consumption
 * of the state and its end) and the grant a callback stores.  The hot
 * path of a callback is one statement before the code exchange and one
 * after it (server/ARCHITECTURE.md, "The path of a callback").
 */
#include "store_links.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encode.h"
#include "mem.h"
#include "secret.h"
#include "store.h"
#include "store_conns.h"
#include "store_int.h"
#include "tokens.h"

/* A link's status as the API shows it: a pending link past its
 * expiry is expired (the callback marks it so when it comes). */
#define LINK_STATUS                                                           \
	"CASE WHEN status = 'pending' AND expires_at <= now() THEN "          \
	"'expired' ELSE status END"
/* In the order of struct store_link_view (view_row). */
#define LINK_VIEW_COLS                                                        \
	"id, user_id, " LINK_STATUS ", connection_id, reason, kind, "         \
	SQL_TS("created_at") ", " SQL_TS("expires_at") ", "                   \
	SQL_TS("completed_at")
/* A page (store.h): $1 status, $2/$3 the cursor, $4 the rows; user:
 * "" for everyone's, or the condition on $5, the user. */
#define LINK_PAGE(user)                                                       \
	"SELECT " LINK_VIEW_COLS ", " SQL_PAGE_MICROS " FROM links WHERE "    \
	user "($1::text IS NULL OR " LINK_STATUS " = $1) AND "                \
	SQL_PAGE_AFTER("$2", "$3") " LIMIT $4::int"

enum { S_CREATE, S_GET, S_PAGE, S_PAGE_USER, S_BIND, S_LOCATION,
	S_CONSUME, S_LOCK, S_SPEND, S_END, S_EVENT, S_GRANT_NEW, S_PULL_NOW, S_RENEW_LOCK, S_CONNECTED,
	S_EXPIRE };

const struct db_stmt store_links_stmts[] = {
	[S_CREATE] = { "links_create",
	    "INSERT INTO links (id, state_hash, user_id, api_key_id, "
	    "return_url, kind, flow_id, location, expires_at, "
	    "connection_id) VALUES ($1, $2::bytea, $3, $4, $5, $6, $7, "
	    "$8, now() + make_interval(secs => $9::int), $10) "
	    "RETURNING " SQL_TS("expires_at") },
	[S_GET] = { "links_get",
	    "SELECT " LINK_VIEW_COLS " FROM links WHERE id = $1" },
	[S_PAGE] = { "links_page", LINK_PAGE("") },
	[S_PAGE_USER] = { "links_page_user", LINK_PAGE("user_id = $5 AND ") },
	/* Bind once: the first browser through start_url owns the link. */
	[S_BIND] = { "links_start_bind",
	    "UPDATE links SET binding_hash = $2::bytea WHERE id = $1 "
	    "AND status = 'pending' AND used_at IS NULL AND "
	    "expires_at > now() AND binding_hash IS NULL "
	    "RETURNING location" },
	[S_LOCATION] = { "links_start_location",
	    "SELECT location FROM links WHERE id = $1 AND "
	    "status = 'pending' AND used_at IS NULL AND expires_at > now()" },
	/* Columns 0-4 of both are the link as struct store_link holds it. */
	[S_CONSUME] = { "links_consume",
	    "UPDATE links SET used_at = now() WHERE state_hash = "
	    "$1::bytea AND used_at IS NULL AND expires_at > now() AND "
	    "flow_id = $2 RETURNING id, return_url, kind, connection_id, "
	    "user_id" },
	[S_LOCK] = { "links_consume_lock",
	    "SELECT id, return_url, kind, connection_id, user_id, flow_id, "
	    "encode(binding_hash, 'hex'), used_at IS NULL, "
	    "expires_at > now() FROM links WHERE state_hash = $1::bytea "
	    "FOR UPDATE" },
	[S_SPEND] = { "links_consume_spend",
	    "UPDATE links SET used_at = now() WHERE id = $1" },
	/* A link that ends without a grant, and its event; only a pending
	 * one (the expiry scan may have ended it, and told of it, first). */
	[S_END] = { "links_end",
	    "WITH u AS (UPDATE links SET used_at = coalesce(used_at, now()), "
	    "status = $2, reason = $3, completed_at = now() WHERE id = $1 "
	    "AND status = 'pending' RETURNING id, user_id, status, "
	    "connection_id, reason), a AS ("
	    "INSERT INTO events (kind, outcome, link_id, detail) "
	    "VALUES ('callback', $4, $1, $5)) " SQL_EVENT_INSERT
	    "SELECT 'link.completed', NULL::uuid, id, " SQL_LINK_COMPLETED("")
	    " FROM u" },
	[S_EVENT] = { "links_event",
	    "INSERT INTO events (kind, outcome, link_id) "
	    "VALUES ('callback', $2, $1)" },
	/*
	 * A new connection in one statement (the callback is the hot path
	 * in a burst): the connection with its first tokens, its first pull
	 * (at once, attended: the user just passed SCA), the link and the
	 * event.  Foreign keys are checked at the end of the statement.
	 */
	[S_GRANT_NEW] = { "links_grant_new",
	    "WITH c AS (INSERT INTO connections (id, user_id, scope, "
	    "access_token, access_expires_at, access_lifetime_s, "
	    "refresh_due_at, refresh_token, refresh_obtained_at, "
	    "refresh_expires_at, consent_expires_at) VALUES ($1, $2, $6, "
	    "$4, now() + make_interval(secs => $7::float8), $11::int, "
	    "now() + make_interval(secs => $10::float8), $5::text, CASE "
	    "WHEN $5::text IS NOT NULL THEN now() END, CASE WHEN $5::text "
	    "IS NOT NULL THEN now() + make_interval(secs => $8::float8) "
	    "END, now() + make_interval(secs => $9::float8)) RETURNING "
	    "id), "
	    "p AS (INSERT INTO pulls (connection_id, next_pull_at, "
	    "attended) SELECT id, now(), true FROM c), "
	    "l AS (UPDATE links SET status = 'connected', connection_id "
	    "= $1, reason = NULL, completed_at = now() WHERE id = $3 "
	    "RETURNING id, user_id, status, connection_id, reason), "
	    "a AS (INSERT INTO events (kind, outcome, link_id, connection_id) "
	    "VALUES ('callback', 'connected', $3, $1)) " SQL_EVENT_INSERT
	    "SELECT 'link.completed', connection_id, id, "
	    SQL_LINK_COMPLETED("") " FROM l" },
	[S_PULL_NOW] = { "links_renew_pull",
	    "INSERT INTO pulls (connection_id, next_pull_at, attended) "
	    "VALUES ($1, now(), true) ON CONFLICT (connection_id) DO UPDATE "
	    "SET next_pull_at = now(), attended = true, failures = 0" },
	[S_RENEW_LOCK] = { "links_renew_lock",
	    "SELECT refresh_token, access_token FROM connections WHERE "
	    "id = $1 AND status <> 'revoked' FOR NO KEY UPDATE" },
	[S_CONNECTED] = { "links_connected",
	    "WITH u AS (UPDATE links SET status = 'connected', "
	    "connection_id = $2, reason = NULL, completed_at = now() "
	    "WHERE id = $1 RETURNING id, user_id, status, connection_id, "
	    "reason), a AS (INSERT INTO events (kind, outcome, link_id, "
	    "connection_id) VALUES ('callback', 'connected', $1, $2)) "
	    SQL_EVENT_INSERT "SELECT 'link.completed', connection_id, id, "
	    SQL_LINK_COMPLETED("") " FROM u" },
	/*
	 * Up to $1 pending links past their expiry that no callback will
	 * end: never used, or used so long ago ($2 seconds) that the
	 * callback that used them died.  Expired, with their events, in one
	 * statement; SKIP LOCKED spreads them over every process.  The ids
	 * as an array: a join with the batch planned as a hash join read
	 * every link (a generic plan cannot know the LIMIT).
	 */
	[S_EXPIRE] = { "links_expire_due",
	    "WITH d AS (SELECT id FROM links WHERE status = 'pending' AND "
	    "expires_at <= now() AND (used_at IS NULL OR used_at < now() - "
	    "make_interval(secs => $2::int)) ORDER BY expires_at LIMIT "
	    "$1::int FOR NO KEY UPDATE SKIP LOCKED), u AS (UPDATE links l SET "
	    "status = 'expired', completed_at = now() WHERE l.id = ANY "
	    "(ARRAY(SELECT id FROM d)) RETURNING l.id, l.user_id, l.status, l.connection_id, "
	    "l.reason) "
	    SQL_EVENT_INSERT "SELECT 'link.completed', NULL::uuid, id, "
	    SQL_LINK_COMPLETED("") " FROM u" },
	{ NULL, NULL },
};

#define S store_links_stmts

/* A SHA-256 as a bytea parameter: "\x" and 64 hex digits. */
static void
bytea_param(const unsigned char h[32], char out[67])
{
	char *hx = hex_encode(h, 32);

	memcpy(out, "\\x", 2);
	memcpy(out + 2, hx, 65);
	free(hx);
}

/* The SHA-256 of a secret (state, cookie) as a bytea parameter. */
static void
hash_param(const char *plain, char out[67])
{
	unsigned char h[32];

	sha256(plain, strlen(plain), h);
	bytea_param(h, out);
}

bool
store_link_create(PGconn *c, const struct store_link_new *in,
    char **expires_at)
{
	char hx[67], ttl[24];
	char *sealed = store_seal("links", in->id, "location", in->location);
	PGresult *res;

	bytea_param(in->state_hash, hx);
	snprintf(ttl, sizeof(ttl), "%ld", in->ttl_s);
	res = db_run(c, &S[S_CREATE], 10,
	    (const char *[]){ in->id, hx, in->user_id, in->api_key_id,
		in->return_url, in->kind, in->flow_id, sealed, ttl,
		in->connection_id });
	free(sealed);
	*expires_at = res != NULL ? db_dup(res, 0, 0) : NULL;
	PQclear(res);
	return res != NULL;
}

/* Row i of a read of LINK_VIEW_COLS (and the micros of a page). */
static void
view_row(const PGresult *r, int i, struct store_link_view *v)
{
	char **f[] = { &v->id, &v->user_id, &v->status, &v->connection_id,
		&v->reason, &v->kind, &v->created_at, &v->expires_at,
		&v->completed_at, &v->created_micros };
	int k, n = sizeof(f) / sizeof(f[0]);

	for (k = 0; k < n && k < PQnfields(r); k++)
		*f[k] = db_dup(r, i, k);
}

enum store_link_res
store_link_get(PGconn *c, const char *id, struct store_link_view *out)
{
	PGresult *res = db_run(c, &S[S_GET], 1, (const char *[]){ id });

	memset(out, 0, sizeof(*out));
	if (res == NULL)
		return SL_DB_ERROR;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return SL_NONE;
	}
	view_row(res, 0, out);
	PQclear(res);
	return SL_OK;
}

bool
store_link_page(PGconn *c, const struct store_page *q,
    struct store_link_view **out, int *n)
{
	const char *p[] = { q->status, q->cursor_micros, q->cursor_id,
		q->rows, q->user_id };
	PGresult *res = db_run(c, &S[q->user_id ? S_PAGE_USER : S_PAGE],
	    q->user_id ? 5 : 4, p);
	int i;

	*out = NULL;
	*n = 0;
	if (res == NULL)
		return false;
	*n = PQntuples(res);
	*out = xcalloc((size_t)*n + 1, sizeof(**out));
	for (i = 0; i < *n; i++)
		view_row(res, i, &(*out)[i]);
	PQclear(res);
	return true;
}

void
store_link_views_free(struct store_link_view *v, int n)
{
	int i;

	for (i = 0; i < n; i++)
		store_link_view_free(&v[i]);
	free(v);
}

void
store_link_view_free(struct store_link_view *v)
{
	free(v->id);
	free(v->user_id);
	free(v->status);
	free(v->connection_id);
	free(v->reason);
	free(v->kind);
	free(v->created_at);
	free(v->expires_at);
	free(v->completed_at);
	free(v->created_micros);
	memset(v, 0, sizeof(*v));
}

enum store_link_res
store_link_start(PGconn *c, const char *id, const char *cookie,
    char **location)
{
	enum store_link_res k = SL_NONE;
	PGresult *res;
	char hx[67];

	*location = NULL;
	if (cookie != NULL) {
		hash_param(cookie, hx);
		res = db_run(c, &S[S_BIND], 2, (const char *[]){ id, hx });
	} else
		res = db_run(c, &S[S_LOCATION], 1, (const char *[]){ id });
	if (res == NULL)
		return SL_DB_ERROR;
	if (PQntuples(res) == 1) {
		*location = store_open("links", id, "location",
		    PQgetvalue(res, 0, 0));
		k = *location != NULL ? SL_OK : SL_UNSEALED;
	}
	PQclear(res);
	return k;
}

void
store_link_free(struct store_link *l)
{
	free(l->id);
	free(l->return_url);
	free(l->kind);
	free(l->connection_id);
	free(l->user_id);
	memset(l, 0, sizeof(*l));
}

static const char *const consume_reasons[] = {
	[SC_OK] = "ok",
	[SC_UNKNOWN_STATE] = "unknown_state",
	[SC_ALREADY_USED] = "state_already_used",
	[SC_EXPIRED] = "state_expired",
	[SC_BINDING_MISMATCH] = "browser_binding_mismatch",
	[SC_FLOW_MISMATCH] = "flow_id_mismatch",
	[SC_DB_ERROR] = "database_error",
};

const char *
store_consume_reason(enum store_consume k)
{
	if ((unsigned)k > SC_DB_ERROR)
		k = SC_DB_ERROR;
	return consume_reasons[k];
}

/* Columns 0-4 of links_consume and links_consume_lock. */
static void
link_fill(struct store_link *l, const PGresult *res)
{
	l->id = db_dup(res, 0, 0);
	l->return_url = db_dup(res, 0, 1);
	l->kind = db_dup(res, 0, 2);
	l->connection_id = db_dup(res, 0, 3);
	l->user_id = db_dup(res, 0, 4);
}

/* The binding cookie matches the hash stored at /start (hex, or NULL
 * when no browser was bound). */
static bool
binding_ok(const struct store_consume_in *in, const char *link_id,
    const char *bound)
{
	const char *cookie = in->cookie(in->cookie_arg, link_id);
	unsigned char h[32];
	char *hx;
	bool ok;

	if (bound == NULL || cookie == NULL)
		return false;
	sha256(cookie, strlen(cookie), h);
	hx = hex_encode(h, 32);
	ok = ct_equal(bound, strlen(bound), hx, strlen(hx));
	free(hx);
	return ok;
}

static bool
link_end(PGconn *c, const char *id, const char *status, const char *reason,
    const char *outcome, const char *detail)
{
	return db_do(c, &S[S_END], 5,
	    (const char *[]){ id, status, reason, outcome, detail });
}

/* Decide on the locked row (links_consume_lock) and record it. */
static enum store_consume
consume_row(PGconn *c, const struct store_consume_in *in,
    const PGresult *res, const char *id)
{
	bool ok;

	if (strcmp(PQgetvalue(res, 0, 7), "t") != 0)
		return SC_ALREADY_USED;
	if (strcmp(PQgetvalue(res, 0, 8), "t") != 0) {
		ok = link_end(c, id, "expired", NULL, "state_expired", NULL);
		return ok ? SC_EXPIRED : SC_DB_ERROR;
	}
	/* Not consumed: the browser that owns the link may still come. */
	if (in->cookie != NULL && !binding_ok(in, id, db_val(res, 0, 6))) {
		ok = db_do(c, &S[S_EVENT], 2,
		    (const char *[]){ id, "browser_binding_mismatch" });
		return ok ? SC_BINDING_MISMATCH : SC_DB_ERROR;
	}
	/* The state is spent whatever happens next. */
	if (strcmp(PQgetvalue(res, 0, 5), in->flow_id) != 0) {
		ok = link_end(c, id, "failed", "flow_id_mismatch",
		    "flow_id_mismatch", NULL);
		return ok ? SC_FLOW_MISMATCH : SC_DB_ERROR;
	}
	ok = db_do(c, &S[S_SPEND], 1, (const char *[]){ id });
	return ok ? SC_OK : SC_DB_ERROR;
}

struct consume_tx {
	const struct store_consume_in *in;
	const char *state_hash;
	struct store_link *out;
	enum store_consume k;
};

static bool
consume_body(PGconn *c, void *arg)
{
	struct consume_tx *x = arg;
	PGresult *res;

	store_link_free(x->out); /* a retried transaction starts afresh */
	res = db_run(c, &S[S_LOCK], 1, (const char *[]){ x->state_hash });
	if (res == NULL)
		return false;
	if (PQntuples(res) == 0)
		x->k = SC_UNKNOWN_STATE;
	else {
		link_fill(x->out, res);
		x->k = consume_row(c, x->in, res, x->out->id);
	}
	PQclear(res);
	return x->k != SC_DB_ERROR;
}

enum store_consume
store_link_consume(PGconn *c, const struct store_consume_in *in,
    struct store_link *out)
{
	struct consume_tx x = { in, NULL, out, SC_DB_ERROR };
	char hx[67];
	PGresult *res;

	memset(out, 0, sizeof(*out));
	hash_param(in->state, hx);
	x.state_hash = hx;
	if (in->cookie == NULL) {
		/* The usual case in one statement: a live, unused state whose
		 * flow matches is consumed atomically; anything else takes the
		 * locked read below to find out why and record it. */
		res = db_run(c, &S[S_CONSUME], 2,
		    (const char *[]){ hx, in->flow_id });
		if (res != NULL && PQntuples(res) == 1) {
			link_fill(out, res);
			PQclear(res);
			return SC_OK;
		}
		PQclear(res);
	}
	if (!db_tx(c, consume_body, &x))
		x.k = SC_DB_ERROR;
	if (x.k != SC_OK)
		store_link_free(out);
	return x.k;
}

bool
store_link_finish(PGconn *c, const char *link_id, const char *status,
    const char *reason, const char *detail)
{
	return link_end(c, link_id, status, reason, reason ? reason : status,
	    detail);
}

char *
store_grant_new(PGconn *c, const char *link_id, const char *user_id,
    const struct finx_tokens *t)
{
	char *conn_id = uuid_new();
	struct token_cols k;
	bool ok;

	/* Lifetimes count from the code exchange's request; the connection
	 * starts idle (refreshed when something needs a token, or for
	 * keep-alive). */
	tokens_prepare(conn_id, t, tokens_due_after(t, false, 0), &k);
	ok = db_do(c, &S[S_GRANT_NEW], 11,
	    (const char *[]){ conn_id, user_id, link_id, k.access, k.refresh,
		k.scope, k.left, k.rleft, k.cleft, k.due, k.ttl });
	tokens_cols_free(&k);
	if (!ok) {
		free(conn_id);
		return NULL;
	}
	return conn_id;
}

struct renew_tx {
	const char *link_id, *conn_id;
	const struct finx_tokens *t;
};

static bool
renew_body(PGconn *c, void *arg)
{
	const struct renew_tx *x = arg;
	const char *id[] = { x->conn_id };
	PGresult *old;
	bool ok;

	/*
	 * The pulls row first, the connection's row second, the order every
	 * writer of both keeps: a pull's write transaction holds its pulls
	 * row while its inserts lock the connection's row for their foreign
	 * keys, so taking them the other way round could deadlock.
	 */
	if (!db_do(c, &S[S_PULL_NOW], 1, id))
		return false;
	/*
	 * Lock the row, refuse a connection deleted meanwhile, and queue the
	 * old grant's tokens for revocation so no stale grant outlives it.
	 * A refresh of the old grant still in flight finds the generation
	 * bumped and sends its rotation to revocation too.
	 */
	old = db_run(c, &S[S_RENEW_LOCK], 1, id);
	ok = old != NULL && PQntuples(old) == 1 &&
	    store_conn_queue_revocations(c, x->conn_id, db_val(old, 0, 0),
		db_val(old, 0, 1));
	PQclear(old);
	return ok && tokens_store_grant(c, x->conn_id, x->t) &&
	    db_do(c, &S[S_CONNECTED], 2,
		(const char *[]){ x->link_id, x->conn_id });
}

bool
store_grant_renew(PGconn *c, const char *link_id, const char *conn_id,
    const struct finx_tokens *t)
{
	struct renew_tx x = { link_id, conn_id, t };

	return db_tx(c, renew_body, &x);
}

long
store_link_expire_due(PGconn *c, int limit, long used_grace_s)
{
	char n[16], grace[24];

	snprintf(n, sizeof(n), "%d", limit);
	snprintf(grace, sizeof(grace), "%ld", used_grace_s);
	return db_rows(c, &S[S_EXPIRE], 2, (const char *[]){ n, grace });
}
