/*
 * Token refresh: on demand (refresh_now, refresh_access_token) and in the
 * background (refresher_start).  Each background worker owns one
 * PostgreSQL connection and claims due connections one at a time by
 * committing a lease on them (SKIP LOCKED), so workers of all processes
 * spread the work with PostgreSQL as the only coordinator.  See
 * server/REFRESH.md.
 */
#include "refresh.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "crypto.h"
#include "db.h"
#include "finx.h"
#include "lease.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "rescue.h"
#include "secret.h"
#include "text.h"
#include "tokens.h"

static const char *const outcome_names[] = { "ok", "not_due", "transient",
	"rejected", "invalid_grant", "inactive", "not_found", "db_error",
	"decrypt_failed", "busy" };

const char *
refresh_outcome_name(enum refresh_outcome o)
{
	return outcome_names[o];
}

/* The configuration, and whether refresh_init ran (leases, heartbeat,
 * rescue); the kick wakes a worker when a read finds its connection due. */
static const struct config *rcfg;
static bool rinit;
static void (*kick)(void);

void
refresh_set_kick(void (*fn)(void))
{
	kick = fn;
}

static void
rollback(PGconn *c)
{
	PQclear(PQexec(c, "ROLLBACK"));
}

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

/*
 * A connection id as finxd uses it everywhere: lower case.  PostgreSQL
 * matches uuids in any case, but the in-flight set, the sealing context
 * and the logs compare text (LESSONS.md 14).
 */
#define UUID_LEN 36
static bool
id_lower(const char *in, char out[UUID_LEN + 1])
{
	size_t i;

	if (in == NULL || !uuid_valid(in) || strlen(in) != UUID_LEN)
		return false;
	for (i = 0; i <= UUID_LEN; i++)
		out[i] = (char)tolower((unsigned char)in[i]);
	return true;
}

/* A lease this process holds on one connection. */
struct lease {
	char *id;
	char *sealed; /* the refresh token it presents, as stored */
	long gen;
	int failures; /* consecutive failures before this attempt */
	bool hot;     /* handed out within the last access lifetime */
	long refresh_left;
	char *grant;  /* connected_at: which grant the token belongs to */
};

static void
lease_free(struct lease *l)
{
	free(l->id);
	free(l->sealed);
	free(l->grant);
	memset(l, 0, sizeof(*l));
}

/* Fill l from row 0 of a LEASE_RETURNING result. */
static void
lease_read(const PGresult *r, struct lease *l)
{
	const char *prev = db_val(r, 0, 3);

	l->id = xstrdup(PQgetvalue(r, 0, 0));
	l->sealed = xstrdup(PQgetvalue(r, 0, 1));
	l->gen = db_long(r, 0, 2, 0);
	l->failures = (int)db_long(r, 0, 4, 0);
	l->hot = db_val(r, 0, 5) != NULL && strcmp(PQgetvalue(r, 0, 5), "t") == 0;
	l->refresh_left = db_long(r, 0, 6, 0);
	l->grant = db_val(r, 0, 7) ? xstrdup(PQgetvalue(r, 0, 7)) : NULL;
	if (prev != NULL && strcmp(prev, lease_process_id()) != 0)
		log_kv(LOG_WARN, "took over the refresh lease of a process that "
				 "is gone",
		    "connection_id", l->id, "holder", prev, NULL);
}

/* The parameters $1..$5 shared by both lease statements. */
struct lease_args {
	char secs[16], stale[16];
	const char *p[7];
};

static void
lease_args(struct lease_args *a, const char *inflight)
{
	snprintf(a->secs, sizeof(a->secs), "%d", lease_seconds());
	snprintf(a->stale, sizeof(a->stale), "%d", LEASE_STALE_S);
	a->p[0] = lease_process_id();
	a->p[1] = a->secs;
	a->p[2] = inflight;
	a->p[3] = lease_may_take_over() ? "true" : "false";
	a->p[4] = a->stale;
}

/*
 * Take the lease on id while it still holds generation gen; the caller
 * has the id in this process's in-flight set.  1 taken, 0 not (held by
 * someone, or changed), -1 database error.
 */
static int
lease_take(PGconn *c, const char *id, long gen, struct lease *l)
{
	struct lease_args a;
	char g[24];
	PGresult *r;
	int got;

	lease_args(&a, "{}");
	snprintf(g, sizeof(g), "%ld", gen);
	a.p[5] = id;
	a.p[6] = g;
	r = db_exec_prepared(c, "rf_lease",
	    LEASE_SET "FROM (SELECT id, lease_holder AS prev FROM connections k "
		      "WHERE k.id = $6 AND k.token_generation = $7::bigint AND "
		      "k.status = 'active' AND k.refresh_token IS NOT NULL AND " LEASE_FREE
	    " FOR NO KEY UPDATE) o WHERE c.id = o.id " LEASE_RETURNING,
	    7, a.p);
	if (r == NULL)
		return -1;
	got = PQntuples(r) == 1;
	if (got)
		lease_read(r, l);
	PQclear(r);
	return got;
}

/* A pooled connection unless the caller owns one (the workers). */
static PGconn *
conn_get(PGconn *own)
{
	return own != NULL ? own : db_acquire();
}

static void
conn_put(PGconn *own, PGconn *c)
{
	if (own == NULL && c != NULL)
		db_release(c);
}

/*
 * The attempt failed without new tokens: give the lease back with the
 * failure counted and a backoff (finX's Retry-After honoured up to the
 * cap).  The connection stays due: something still needs the refresh.
 */
static void
lease_fail(PGconn *c, const struct lease *l, const char *msg, long retry_after)
{
	char backoff[24], g[24];
	long b = tokens_backoff_s(l->failures + 1, (unsigned)random());

	if (retry_after > b)
		b = retry_after < 900 ? retry_after : 900;
	snprintf(backoff, sizeof(backoff), "%ld", b);
	snprintf(g, sizeof(g), "%ld", l->gen);
	if (c == NULL)
		return; /* the lease runs out by itself */
	db_cmd(c,
	    "UPDATE connections SET consecutive_failures = "
	    "consecutive_failures + 1, last_error = $3, next_attempt_at = "
	    "now() + make_interval(secs => $4::int), refresh_due_at = now(), "
	    "lease_holder = NULL, lease_until = NULL, lease_generation = NULL, "
	    "updated_at = now() WHERE id = $1 AND lease_holder = $2::uuid AND "
	    "lease_generation = $5::bigint",
	    5, (const char *[]){ l->id, lease_process_id(), msg, backoff, g });
}

/*
 * finX refused the refresh token for good.  Only a row that still holds
 * the generation refused is condemned (LESSONS.md failure 5): a store
 * that landed meanwhile means the refusal concerned a token nobody needs.
 */
static int
lease_condemn(PGconn *c, const struct lease *l, const char *why)
{
	char g[24];
	PGresult *r;
	int done;

	snprintf(g, sizeof(g), "%ld", l->gen);
	if (c == NULL)
		return -1;
	r = db_exec(c,
	    "WITH u AS (UPDATE connections SET status = 'reauth_required', "
	    "status_reason = $3, last_error = $3, lease_holder = NULL, "
	    "lease_until = NULL, lease_generation = NULL, updated_at = now() "
	    "WHERE id = $1 AND token_generation = $2::bigint AND status = "
	    "'active' RETURNING id) INSERT INTO events (kind, outcome, "
	    "connection_id, detail) SELECT 'refresh', 'reauth_required', id, "
	    "$3 FROM u",
	    3, (const char *[]){ l->id, g, why });
	done = r == NULL ? -1 : strcmp(PQcmdTuples(r), "1") == 0;
	PQclear(r);
	return done;
}

/*
 * The heart of it: present the leased refresh token to finX with no
 * transaction open, then store the rotation through the rescue (journal
 * first, compare-and-set on the generation).  own: the worker's
 * connection, or NULL to use the pool around (never across) the call.
 * Ends the caller's hold on l->id in the in-flight set.
 */
static enum refresh_outcome
refresh_leased(PGconn *own, struct lease *l, char **msg)
{
	struct finx_tokens t = { 0 };
	struct finx_error err = { 0 };
	char *aad = crypto_aad("connections", l->id, "refresh_token");
	char *plain = crypto_open(l->sealed, aad, NULL);
	enum refresh_outcome o;
	PGconn *c;

	free(aad);
	if (plain == NULL) {
		c = conn_get(own);
		lease_fail(c, l, "stored refresh token cannot be decrypted with "
				 "the configured keys",
		    0);
		conn_put(own, c);
		lease_inflight_del(l->id);
		if (msg)
			*msg = xstrdup("stored refresh token cannot be "
				       "decrypted");
		metrics_refresh(refresh_outcome_name(RF_DECRYPT));
		return RF_DECRYPT;
	}
	if (finx_refresh(plain, &t, &err)) {
		long due = tokens_due_after(&t, l->hot, l->refresh_left);
		enum tokens_cas res;

		free_secret(plain);
		c = conn_get(own);
		res = rescue_store(c, l->id, l->grant, l->gen, &t, due);
		conn_put(own, c);
		o = res == TOK_STORED  ? RF_OK
		    : res == TOK_GONE  ? RF_NOT_FOUND
		    : res == TOK_REVOKED ? RF_INACTIVE
					 : RF_DB_ERROR;
		metrics_refresh(refresh_outcome_name(o));
		log_kv(o == RF_OK ? LOG_INFO : LOG_WARN,
		    o == RF_OK ? "refreshed" : "refreshed, not stored",
		    "connection_id", l->id, "outcome", refresh_outcome_name(o),
		    NULL);
		return o;
	}
	free_secret(plain);
	c = conn_get(own);
	if (err.invalid_grant) {
		char *why = xasprintf("invalid_grant: %s",
		    err.message ? err.message : "refused by finX");

		switch (lease_condemn(c, l, why)) {
		case 1:
			o = RF_INVALID_GRANT;
			break;
		case 0: /* renewed or refreshed meanwhile */
			o = RF_NOT_DUE;
			break;
		default:
			o = RF_DB_ERROR;
		}
		free(why);
	} else {
		lease_fail(c, l, err.message ? err.message : "finX error",
		    err.retry_after);
		o = err.transient ? RF_TRANSIENT : RF_REJECTED;
	}
	conn_put(own, c);
	lease_inflight_del(l->id);
	metrics_refresh(refresh_outcome_name(o));
	log_kv(LOG_WARN, "refresh failed", "connection_id", l->id, "outcome",
	    refresh_outcome_name(o), "error", err.message, NULL);
	if (msg)
		*msg = xstrdup(err.message ? err.message : "finX error");
	finx_error_free(&err);
	return o;
}

/* What a caller needs to know of a connection before refreshing it. */
struct conn_state {
	long gen;
	double access_left; /* seconds; negative: expired or none */
	long lifetime;
	bool backing_off;   /* a failed refresh's backoff still runs */
};

/*
 * Read id's state: RF_OK when it is active with a refresh token, else
 * why not (NOT_FOUND, INVALID_GRANT with its reason, INACTIVE, DB_ERROR).
 */
static enum refresh_outcome
state_read(PGconn *c, const char *id, struct conn_state *st, char **msg)
{
	PGresult *r = db_exec_prepared(c, "rf_state",
	    "SELECT status, status_reason, refresh_token IS NOT NULL, "
	    "token_generation, coalesce(extract(epoch FROM access_expires_at - "
	    "now()), -1), coalesce(access_lifetime_s, 300), "
	    "coalesce(next_attempt_at > now(), false) FROM connections "
	    "WHERE id = $1",
	    1, (const char *[]){ id });
	enum refresh_outcome o = RF_OK;

	if (r == NULL)
		return RF_DB_ERROR;
	if (PQntuples(r) == 0)
		o = RF_NOT_FOUND;
	else if (strcmp(PQgetvalue(r, 0, 0), "reauth_required") == 0) {
		/* Already found dead (perhaps by another process): say so. */
		o = RF_INVALID_GRANT;
		if (msg != NULL && *msg == NULL && !PQgetisnull(r, 0, 1))
			*msg = xstrdup(PQgetvalue(r, 0, 1));
	} else if (strcmp(PQgetvalue(r, 0, 0), "active") != 0 ||
	    strcmp(PQgetvalue(r, 0, 2), "t") != 0)
		o = RF_INACTIVE;
	else {
		st->gen = db_long(r, 0, 3, 0);
		st->access_left = strtod(PQgetvalue(r, 0, 4), NULL);
		st->lifetime = db_long(r, 0, 5, 300);
		st->backing_off = strcmp(PQgetvalue(r, 0, 6), "t") == 0;
	}
	PQclear(r);
	return o;
}

static bool
needs_refresh(const struct conn_state *st)
{
	return tokens_need_refresh(st->access_left, st->lifetime,
	    tokens_margin());
}

enum refresh_outcome
refresh_now(const char *raw_id, bool force, char **msg)
{
	/* A holder's finX call ends within its timeout; wait that long. */
	int64_t deadline = mono_ms() + rcfg->finx_timeout_ms + 2000;
	struct conn_state st;
	long gen0 = -1;
	char id[UUID_LEN + 1];

	if (!id_lower(raw_id, id))
		return RF_NOT_FOUND;

	for (;;) {
		enum refresh_outcome o;
		struct lease l = { 0 };
		PGconn *c = db_acquire();
		int got = 0;

		if (c == NULL)
			return RF_DB_ERROR;
		if ((o = state_read(c, id, &st, msg)) != RF_OK) {
			db_release(c);
			return o;
		}
		if (gen0 < 0) {
			gen0 = st.gen;
			if (!force && !needs_refresh(&st)) {
				db_release(c);
				return RF_NOT_DUE;
			}
			/* Readers do not hammer finX through a failure's
			 * backoff (LESSONS.md failure 7); an admin may. */
			if (!force && st.backing_off) {
				db_release(c);
				if (msg != NULL && *msg == NULL)
					*msg = xstrdup("the last refresh failed; "
						       "retrying after its backoff");
				return RF_TRANSIENT;
			}
		} else if (st.gen != gen0) {
			/* Refreshed by the holder we waited for. */
			db_release(c);
			return RF_NOT_DUE;
		}
		if (lease_inflight_add(id)) {
			got = lease_take(c, id, gen0, &l);
			if (got != 1)
				lease_inflight_del(id);
		}
		db_release(c);
		if (got == 1) {
			o = refresh_leased(NULL, &l, msg);
			lease_free(&l);
			return o;
		}
		if (got < 0)
			return RF_DB_ERROR;
		if (mono_ms() > deadline)
			return RF_BUSY;
		usleep(100 * 1000);
	}
}

/*
 * A GET .../token marks the connection hot: from now on the workers
 * refresh it ahead of expiry (its due time moves to the margin before
 * expiry), so its readers never wait on finX.  Written at most a few
 * times per lifetime, not on every read.
 */
static void
mark_handout(PGconn *c, const char *id, long lifetime)
{
	char ahead[24];

	snprintf(ahead, sizeof(ahead), "%ld",
	    lifetime - tokens_due_in(lifetime, tokens_margin(), LONG_MAX));
	db_cmd(c,
	    "UPDATE connections SET last_handout_at = now(), refresh_due_at = "
	    "CASE WHEN lease_holder IS NULL THEN least(refresh_due_at, "
	    "access_expires_at - make_interval(secs => $2::int)) ELSE "
	    "refresh_due_at END WHERE id = $1",
	    2, (const char *[]){ id, ahead });
}

/*
 * The stored access token of id when it is valid: plain text (free with
 * free_secret) or NULL with *o saying why.  *need: too close to expiry
 * for a caller to use without a refresh.
 */
static char *
token_read(const char *id, unsigned flags, bool check_need,
    enum refresh_outcome *o, char **expires_at, char **msg, bool *need)
{
	PGconn *c = db_acquire();
	PGresult *r;
	struct conn_state st = { 0 };
	char *aad, *plain;
	bool stale, due;

	*need = false;
	if (c == NULL) {
		*o = RF_DB_ERROR;
		return NULL;
	}
	r = db_exec_prepared(c, "rf_token",
	    "SELECT access_token, to_char(access_expires_at AT TIME ZONE "
	    "'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
	    "extract(epoch FROM access_expires_at - now()), "
	    "coalesce(access_lifetime_s, 300), last_handout_at IS NULL OR "
	    "last_handout_at < now() - make_interval(secs => "
	    "coalesce(access_lifetime_s, 300) / 4.0), refresh_due_at <= now() "
	    "AND lease_holder IS NULL FROM connections WHERE id = $1 AND "
	    "status = 'active' AND access_token IS NOT NULL AND "
	    "access_expires_at > now()",
	    1, (const char *[]){ id });
	if (r == NULL || PQntuples(r) == 0) {
		/* Expired, missing, or not active: the caller finds out why. */
		*o = r == NULL ? RF_DB_ERROR : RF_OK;
		*need = r != NULL;
		PQclear(r);
		db_release(c);
		return NULL;
	}
	st.access_left = strtod(PQgetvalue(r, 0, 2), NULL);
	st.lifetime = db_long(r, 0, 3, 300);
	stale = strcmp(PQgetvalue(r, 0, 4), "t") == 0;
	due = strcmp(PQgetvalue(r, 0, 5), "t") == 0;
	if (check_need && ((flags & RT_FORCE) || needs_refresh(&st))) {
		*need = true;
		PQclear(r);
		db_release(c);
		return NULL;
	}
	if ((flags & RT_HANDOUT) && stale)
		mark_handout(c, id, st.lifetime);
	db_release(c);
	if ((flags & RT_HANDOUT) && (due || stale) && kick != NULL)
		kick();
	aad = crypto_aad("connections", id, "access_token");
	plain = crypto_open(PQgetvalue(r, 0, 0), aad, NULL);
	free(aad);
	if (plain == NULL) {
		log_kv(LOG_ERROR, "cannot decrypt access token",
		    "connection_id", id, NULL);
		*o = RF_DECRYPT;
		if (msg != NULL && *msg == NULL)
			*msg = xstrdup("stored access token cannot be decrypted");
	} else {
		*o = RF_NOT_DUE;
		if (expires_at != NULL)
			*expires_at = xstrdup(PQgetvalue(r, 0, 1));
	}
	PQclear(r);
	return plain;
}

char *
refresh_access_token(const char *raw_id, unsigned flags,
    enum refresh_outcome *o, char **expires_at, char **msg)
{
	enum refresh_outcome ro;
	char *plain, id[UUID_LEN + 1];
	bool need;

	if (!id_lower(raw_id, id)) {
		*o = RF_NOT_FOUND;
		return NULL;
	}
	plain = token_read(id, flags, true, o, expires_at, msg, &need);
	if (plain != NULL || !need)
		return plain;
	ro = refresh_now(id, (flags & RT_FORCE) != 0, msg);
	if (ro != RF_OK && ro != RF_NOT_DUE && ro != RF_TRANSIENT &&
	    ro != RF_REJECTED && ro != RF_DECRYPT && ro != RF_BUSY) {
		*o = ro;
		return NULL;
	}
	/* Refreshed, or a failure that leaves the old token: read again,
	 * and use it while it is still valid at all. */
	plain = token_read(id, flags, false, o, expires_at, msg, &need);
	if (plain == NULL && need)
		*o = ro == RF_OK || ro == RF_NOT_DUE ? RF_INACTIVE : ro;
	if (plain == NULL && *o == RF_OK)
		*o = RF_INACTIVE;
	if (plain != NULL && ro == RF_OK)
		*o = RF_OK;
	return plain;
}

const char refresh_claim_sql[] =
    LEASE_SET "FROM (SELECT id, lease_holder AS prev FROM connections k "
	      "WHERE k.next_due_at <= now() AND " LEASE_FREE
    " ORDER BY k.next_due_at LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED) o "
    "WHERE c.id = o.id " LEASE_RETURNING;

/*
 * The claim committed a lease before this thread held the id in the
 * in-flight set.  Another thread of this process may be looking at the
 * same connection (an on-demand refresh finds the lease taken and lets
 * go at once), or, had the claim waited long in a queue, may still be
 * storing a rotation of it: then the row no longer holds the lease as
 * claimed, and presenting its old token would supersede that rotation.
 * So: take the id (briefly waiting), then check the lease still stands.
 */
static bool
lease_hold(PGconn *c, const struct lease *l)
{
	int64_t end = mono_ms() + 2000;
	char g[24];
	PGresult *r;
	bool mine;

	while (!lease_inflight_add(l->id)) {
		if (mono_ms() > end)
			return false; /* it runs out; the row stays due */
		usleep(10 * 1000);
	}
	snprintf(g, sizeof(g), "%ld", l->gen);
	r = db_exec_prepared(c, "rf_hold",
	    "SELECT 1 FROM connections WHERE id = $1 AND lease_holder = "
	    "$2::uuid AND lease_generation = $3::bigint AND token_generation "
	    "= $3::bigint AND lease_until > now()",
	    3, (const char *[]){ l->id, lease_process_id(), g });
	mine = r != NULL && PQntuples(r) == 1;
	PQclear(r);
	if (!mine)
		lease_inflight_del(l->id);
	return mine;
}

bool
refresh_one(PGconn *c)
{
	struct lease_args a;
	struct lease l = { 0 };
	char *inflight = lease_inflight_literal();
	PGresult *r;

	lease_args(&a, inflight);
	r = db_exec_prepared(c, "rf_claim", refresh_claim_sql, 5, a.p);
	free(inflight);
	if (r == NULL || PQntuples(r) == 0) {
		PQclear(r);
		return false;
	}
	lease_read(r, &l);
	PQclear(r);
	if (lease_hold(c, &l))
		refresh_leased(c, &l, NULL);
	lease_free(&l);
	return true;
}

/*
 * Revoke one pending token at finX; false when none was due.  With
 * connection_id, only that connection's tokens are considered (DELETE
 * revokes its own tokens at once; other due rows are the workers').
 */
static bool
revoke_one(PGconn *c, const char *connection_id)
{
	struct finx_error err = { 0 };
	PGresult *r;
	char *aad, *plain;
	const char *rid;
	bool ok;

	if (!db_cmd(c, "BEGIN", 0, NULL))
		return false;
	/*
	 * A connection's refresh tokens go before its access tokens (RFC
	 * 7009: revoking the refresh token ends the grant), even when a
	 * worker and DELETE's own attempt run at once: an access token is
	 * queued due a little after its refresh token, and a refresh token
	 * that failed pushes its access tokens past its own backoff, so the
	 * workers' claim stays one range scan on revocations_due_idx.
	 * DELETE's own attempt takes its connection's fresh rows at once,
	 * refresh token first.
	 */
	if (connection_id != NULL)
		r = db_exec(c,
		    "SELECT id, token, attempts + 1, kind FROM revocations WHERE "
		    "connection_id = $1 AND next_attempt_at <= now() + "
		    "interval '" REVOKE_ACCESS_AFTER "' ORDER BY kind DESC, "
		    "next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED",
		    1, (const char *[]){ connection_id });
	else
		r = db_exec(c,
		    "SELECT id, token, attempts + 1, kind FROM revocations WHERE "
		    "next_attempt_at <= now() ORDER BY next_attempt_at LIMIT 1 "
		    "FOR UPDATE SKIP LOCKED",
		    0, NULL);
	if (r == NULL || PQntuples(r) == 0) {
		PQclear(r);
		rollback(c);
		return false;
	}
	rid = PQgetvalue(r, 0, 0);
	aad = crypto_aad("revocations", rid, "token");
	plain = crypto_open(PQgetvalue(r, 0, 1), aad, NULL);
	free(aad);
	ok = plain != NULL && finx_revoke(plain, &err);
	free_secret(plain);
	if (ok || plain == NULL)
		db_cmd(c, "DELETE FROM revocations WHERE id = $1", 1,
		    (const char *[]){ rid });
	else {
		char backoff[24];

		snprintf(backoff, sizeof(backoff), "%ld",
		    tokens_backoff_s((int)db_long(r, 0, 2, 1),
			(unsigned)random()));
		db_cmd(c,
		    "UPDATE revocations SET attempts = attempts + 1, "
		    "last_error = $2, next_attempt_at = now() + "
		    "make_interval(secs => $3::int) WHERE id = $1",
		    3, (const char *[]){ rid, err.message, backoff });
		if (strcmp(PQgetvalue(r, 0, 3), "refresh") == 0)
			db_cmd(c,
			    "UPDATE revocations SET next_attempt_at = "
			    "greatest(next_attempt_at, now() + make_interval("
			    "secs => $2::int) + interval '"
			    REVOKE_ACCESS_AFTER "') WHERE connection_id = "
			    "(SELECT connection_id FROM revocations WHERE id = "
			    "$1) AND kind = 'access'",
			    2, (const char *[]){ rid, backoff });
		log_kv(LOG_WARN, "revocation failed; will retry", "error",
		    err.message, NULL);
	}
	finx_error_free(&err);
	PQclear(r);
	db_cmd(c, "COMMIT", 0, NULL);
	return true;
}

void
revocations_try(PGconn *c, const char *connection_id)
{
	PGresult *r = db_exec(c,
	    "SELECT id FROM revocations WHERE connection_id = $1 ORDER BY "
	    "kind DESC",
	    1, (const char *[]){ connection_id });
	int i, n = r ? PQntuples(r) : 0;

	PQclear(r);
	/* Oldest first: the refresh token was queued before the access
	 * token.  Only this connection's rows: other due rows (a reauth's
	 * old grant, earlier failures) belong to the background workers. */
	for (i = 0; i < n; i++)
		if (!revoke_one(c, connection_id))
			break;
}

bool
revocations_one(PGconn *c)
{
	return revoke_one(c, NULL);
}

bool
refresh_init(const struct config *cfg)
{
	rcfg = cfg;
	srandom((unsigned)(mono_ms() ^ getpid()));
	/* The journal first: it holds the state directory (and so the
	 * process id kept there) for this process alone. */
	if (!rescue_init(cfg))
		return false;
	lease_init(cfg);
	lease_heartbeat_start();
	rinit = true;
	return true;
}

void
refresh_shutdown(void)
{
	if (!rinit)
		return;
	/* Rotations finX issued and PostgreSQL has not taken yet: wait for
	 * PostgreSQL up to the drain bound, then leave them in the journal.
	 * With some left, the process's row stays: the next start on this
	 * state directory comes back under the same id. */
	rescue_stop(rcfg->drain_timeout_s);
	lease_heartbeat_stop(!rescue_left_in_journal());
	rinit = false;
}

enum status
refresh_status(enum refresh_outcome o)
{
	switch (o) {
	case RF_INVALID_GRANT:
		return ST_REAUTH_REQUIRED;
	case RF_INACTIVE:
		return ST_NOT_ACTIVE;
	case RF_NOT_FOUND:
		return ST_NOT_FOUND;
	case RF_TRANSIENT:
		return ST_FINX_UNAVAILABLE;
	case RF_REJECTED:
		return ST_FINX_ERROR;
	case RF_DECRYPT:
		return ST_DECRYPT_FAILED;
	case RF_BUSY:
		return ST_REFRESH_IN_PROGRESS;
	default:
		return ST_DB_UNAVAILABLE;
	}
}
