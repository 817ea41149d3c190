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
#include "db.h"
#include "finx.h"
#include "lease.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "rescue.h"
#include "secret.h"
#include "store.h"
#include "store_lease.h"
#include "store_tokens.h"
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

enum status
refresh_status(enum refresh_outcome o)
{
	switch (o) {
	case RF_OK:
	case RF_NOT_DUE:
		return ST_OK;
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
	case RF_DB_ERROR:
		break;
	}
	return ST_DB_UNAVAILABLE;
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

/*
 * A statement of a refresh path failed where nobody else answers for
 * it: logged here, once (db.c logs nothing).
 */
static void
log_db(const char *what, const char *id)
{
	log_kv(LOG_ERROR, what, "connection_id", id, "sqlstate",
	    db_failure_sqlstate(), "db_error", db_failure_message(), NULL);
}

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

/* This process's terms for a lease; inflight: the ids it still works
 * on ("{}" on the on-demand path, which holds its id itself). */
static void
lease_terms(struct lease_terms *w, const char *inflight)
{
	w->holder = lease_process_id();
	w->secs = lease_seconds();
	w->inflight = inflight;
	w->may_take_over = lease_may_take_over();
	w->stale_s = LEASE_STALE_S;
}

/* A lease just taken: say so when it was taken over from a process
 * that is gone. */
static void
lease_taken(const struct conn_lease *l)
{
	if (l->prev != NULL && strcmp(l->prev, lease_process_id()) != 0)
		log_kv(LOG_WARN, "took over the refresh lease of a process that "
				 "is gone",
		    "connection_id", l->id, "holder", l->prev, NULL);
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
lease_fail(PGconn *c, const struct conn_lease *l, const char *msg,
    long retry_after)
{
	long b = tokens_backoff_s(l->failures + 1, (unsigned)random());

	if (retry_after > b)
		b = retry_after < 900 ? retry_after : 900;
	if (c == NULL)
		return; /* the lease runs out by itself */
	if (!store_conn_lease_fail(c, l, lease_process_id(), msg, b))
		log_db("refresh lease not given back; it runs out by itself",
		    l->id);
}

/*
 * finX refused the refresh token for good.  Only a row that still holds
 * the generation refused is condemned (LESSONS.md failure 5): a store
 * that landed meanwhile means the refusal concerned a token nobody needs.
 */
static enum refresh_outcome
lease_condemn(PGconn *c, const struct conn_lease *l,
    const struct finx_error *err)
{
	char *why = xasprintf("invalid_grant: %s",
	    err->message ? err->message : "refused by finX");
	int done = c != NULL ? store_conn_condemn(c, l, why) : -1;

	free(why);
	if (done < 0) {
		log_db("refused connection not marked reauth_required", l->id);
		return RF_DB_ERROR;
	}
	/* 0: renewed or refreshed meanwhile */
	return done == 1 ? RF_INVALID_GRANT : RF_NOT_DUE;
}

/* The stored refresh token does not open with the configured keys. */
static enum refresh_outcome
leased_undecryptable(PGconn *own, const struct conn_lease *l, char **msg)
{
	PGconn *c = conn_get(own);

	lease_fail(c, l, "stored refresh token cannot be decrypted with the "
			 "configured keys",
	    0);
	conn_put(own, c);
	lease_inflight_del(l->id);
	if (msg)
		*msg = xstrdup("stored refresh token cannot be decrypted");
	metrics_refresh(refresh_outcome_name(RF_DECRYPT));
	return RF_DECRYPT;
}

/* finX rotated: store through the rescue (journal first,
 * compare-and-set on the generation), which takes over the id's hold. */
static enum refresh_outcome
leased_store(PGconn *own, const struct conn_lease *l, struct finx_tokens *t)
{
	long due = tokens_due_after(t, l->hot, l->refresh_left);
	PGconn *c = conn_get(own);
	enum tokens_cas res = rescue_store(c, l->id, l->grant, l->gen, t, due);
	enum refresh_outcome o = res == TOK_STORED ? RF_OK
	    : res == TOK_GONE			   ? RF_NOT_FOUND
	    : res == TOK_REVOKED		   ? RF_INACTIVE
						   : RF_DB_ERROR;

	conn_put(own, c);
	metrics_refresh(refresh_outcome_name(o));
	log_kv(o == RF_OK ? LOG_INFO : LOG_WARN,
	    o == RF_OK ? "refreshed" : "refreshed, not stored",
	    "connection_id", l->id, "outcome", refresh_outcome_name(o), NULL);
	return o;
}

/* finX refused: condemn the connection or back off. */
static enum refresh_outcome
leased_refused(PGconn *own, const struct conn_lease *l,
    const struct finx_error *err, char **msg)
{
	const char *why = err->message ? err->message : "finX error";
	PGconn *c = conn_get(own);
	enum refresh_outcome o;

	if (err->invalid_grant)
		o = lease_condemn(c, l, err);
	else {
		lease_fail(c, l, why, err->retry_after);
		o = err->transient ? RF_TRANSIENT : RF_REJECTED;
	}
	conn_put(own, c);
	lease_inflight_del(l->id);
	metrics_refresh(refresh_outcome_name(o));
	log_kv(LOG_WARN, "refresh failed", "connection_id", l->id, "outcome",
	    refresh_outcome_name(o), "error", err->message, "transport",
	    err->detail, NULL);
	if (msg)
		*msg = xstrdup(why);
	return o;
}

/*
 * The heart of it: present the leased refresh token to finX with no
 * transaction open, then store the rotation.  own: the worker's
 * connection, or NULL to use the pool around (never across) the call.
 * Ends the caller's hold on l->id in the in-flight set.
 */
static enum refresh_outcome
refresh_leased(PGconn *own, const struct conn_lease *l, char **msg)
{
	struct finx_tokens t = { 0 };
	struct finx_error err = { 0 };
	char *plain = store_open("connections", l->id, "refresh_token",
	    l->sealed);
	enum refresh_outcome o;
	bool rotated;

	if (plain == NULL)
		return leased_undecryptable(own, l, msg);
	rotated = finx_refresh(plain, &t, &err);
	free_secret(plain);
	o = rotated ? leased_store(own, l, &t)
		    : leased_refused(own, l, &err, msg);
	finx_error_free(&err);
	return o;
}

static bool
needs_refresh(double access_left, long lifetime)
{
	return tokens_need_refresh(access_left, lifetime, tokens_margin());
}

/*
 * Read id's state: RF_OK when it is active with a refresh token, else
 * why not (NOT_FOUND, INVALID_GRANT with its reason, INACTIVE, DB_ERROR).
 */
static enum refresh_outcome
state_read(PGconn *c, const char *id, struct conn_state *st, char **msg)
{
	enum refresh_outcome o = RF_OK;
	int got = store_conn_state(c, id, st);

	if (got <= 0)
		return got < 0 ? RF_DB_ERROR : RF_NOT_FOUND;
	if (st->reauth) {
		/* Already found dead (perhaps by another process): say so. */
		o = RF_INVALID_GRANT;
		if (msg != NULL && *msg == NULL && st->reason != NULL)
			*msg = xstrdup(st->reason);
	} else if (!st->active || !st->has_refresh)
		o = RF_INACTIVE;
	store_conn_state_free(st);
	return o;
}

/*
 * Whether refresh_now goes on with a connection in state st: RF_OK, or
 * its answer.  The first look (*gen0 < 0) decides and keeps the
 * generation; a later one only sees whether the holder it waited for
 * refreshed meanwhile.
 */
static enum refresh_outcome
refresh_wanted(const struct conn_state *st, bool force, long *gen0,
    char **msg)
{
	if (*gen0 >= 0)
		return st->gen != *gen0 ? RF_NOT_DUE : RF_OK;
	*gen0 = st->gen;
	if (!force && !needs_refresh(st->access_left, st->lifetime))
		return RF_NOT_DUE;
	/* Readers do not hammer finX through a failure's backoff
	 * (LESSONS.md failure 7); an admin may. */
	if (!force && st->backing_off) {
		if (msg != NULL && *msg == NULL)
			*msg = xstrdup("the last refresh failed; retrying "
				       "after its backoff");
		return RF_TRANSIENT;
	}
	return RF_OK;
}

/*
 * One look of refresh_now at id: the lease taken (*got 1), or RF_OK
 * with none taken yet (someone else holds it: wait), or the answer.
 */
static enum refresh_outcome
refresh_try(const char *id, bool force, long *gen0, struct conn_lease *l,
    int *got, char **msg)
{
	struct conn_state st;
	struct lease_terms w;
	enum refresh_outcome o;
	PGconn *c = db_acquire();

	*got = 0;
	if (c == NULL)
		return RF_DB_ERROR;
	if ((o = state_read(c, id, &st, msg)) == RF_OK)
		o = refresh_wanted(&st, force, gen0, msg);
	if (o == RF_OK && lease_inflight_add(id)) {
		lease_terms(&w, "{}");
		*got = store_conn_lease(c, &w, id, *gen0, l);
		if (*got == 1)
			lease_taken(l);
		else
			lease_inflight_del(id);
		if (*got < 0)
			o = RF_DB_ERROR;
	}
	db_release(c);
	return o;
}

enum refresh_outcome
refresh_now(const char *raw_id, bool force, char **msg)
{
	/* A holder's finX call ends within its timeout; wait that long. */
	int64_t deadline = mono_ms() + rcfg->finx_timeout_ms + 2000;
	long gen0 = -1;
	char id[UUID_LEN + 1];

	if (!id_lower(raw_id, id))
		return RF_NOT_FOUND;
	for (;;) {
		struct conn_lease l = { 0 };
		enum refresh_outcome o;
		int got;

		o = refresh_try(id, force, &gen0, &l, &got, msg);
		if (got == 1) {
			o = refresh_leased(NULL, &l, msg);
			store_conn_lease_free(&l);
			return o;
		}
		if (o != RF_OK)
			return o;
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
	long ahead = lifetime -
	    tokens_due_in(lifetime, tokens_margin(), LONG_MAX);

	if (!store_conn_mark_handout(c, id, ahead))
		log_db("token hand-out not recorded", id);
}

/*
 * Read id's stored access token into *tk: 1 usable, 0 not (*need: too
 * close to expiry, expired, missing or not active: refresh first, and
 * the caller finds out why), -1 database error.  A hand-out marks the
 * connection hot and wakes a worker when it is due.
 */
static int
token_look(const char *id, unsigned flags, bool check_need,
    struct conn_token *tk, bool *need)
{
	PGconn *c = db_acquire();
	bool handout = (flags & RT_HANDOUT) != 0;
	int got;

	*need = false;
	if (c == NULL)
		return -1;
	got = store_conn_token(c, id, tk);
	*need = got == 0;
	if (got == 1 && check_need &&
	    ((flags & RT_FORCE) || needs_refresh(tk->access_left, tk->lifetime))) {
		store_conn_token_free(tk);
		*need = true;
		got = 0;
	}
	if (got == 1 && handout && tk->stale)
		mark_handout(c, id, tk->lifetime);
	db_release(c);
	if (got == 1 && handout && (tk->due || tk->stale) && kick != NULL)
		kick();
	return got;
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
	struct conn_token tk;
	int got = token_look(id, flags, check_need, &tk, need);
	char *plain;

	if (got <= 0) {
		*o = got < 0 ? RF_DB_ERROR : RF_OK;
		return NULL;
	}
	plain = store_open("connections", id, "access_token", tk.sealed);
	if (plain == NULL) {
		log_kv(LOG_ERROR, "cannot decrypt access token",
		    "connection_id", id, NULL);
		*o = RF_DECRYPT;
		if (msg != NULL && *msg == NULL)
			*msg = xstrdup("stored access token cannot be decrypted");
	} else {
		*o = RF_NOT_DUE;
		if (expires_at != NULL)
			*expires_at = xstrdup(tk.expires_at);
	}
	store_conn_token_free(&tk);
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
lease_hold(PGconn *c, const struct conn_lease *l)
{
	int64_t end = mono_ms() + 2000;
	int mine;

	while (!lease_inflight_add(l->id)) {
		if (mono_ms() > end)
			return false; /* it runs out; the row stays due */
		usleep(10 * 1000);
	}
	mine = store_conn_lease_holds(c, l, lease_process_id());
	if (mine < 0)
		log_db("refresh lease not checked; it runs out by itself",
		    l->id);
	if (mine != 1)
		lease_inflight_del(l->id);
	return mine == 1;
}

bool
refresh_one(PGconn *c)
{
	struct lease_terms w;
	struct conn_lease l = { 0 };
	char *inflight = lease_inflight_literal();
	int got;

	lease_terms(&w, inflight);
	got = store_conn_claim_due(c, &w, &l);
	free(inflight);
	if (got < 0)
		log_db("refresh claim failed", NULL);
	if (got != 1)
		return false;
	lease_taken(&l);
	if (lease_hold(c, &l))
		refresh_leased(c, &l, NULL);
	store_conn_lease_free(&l);
	return true;
}

/* One revocation: the connection it is limited to (NULL: any), and
 * whether one was claimed. */
struct revoke {
	const char *connection_id;
	bool claimed;
};

/*
 * revoke_one's steps, none in a transaction: claim the token (committed,
 * with a deadline past finX's timeout), present it to finX's
 * /auth/revoke, then delete it (revoked, or unreadable: nothing could
 * revoke it) or schedule its retry.  A process that dies in between
 * leaves a claim that runs out, and the token is presented again, which
 * finX answers alike.
 */
static bool
revoke_claimed(PGconn *c, struct revoke *a)
{
	struct finx_error err = { 0 };
	struct revocation rv;
	char *plain;
	bool ok;

	a->claimed = store_revocation_claim(c, a->connection_id,
			 rcfg->finx_timeout_ms / 1000 + 10, &rv) == 1;
	if (!a->claimed)
		return false;
	plain = store_open("revocations", rv.id, "token", rv.sealed);
	if (plain != NULL && !finx_revoke(plain, &err)) {
		log_kv(LOG_WARN, "revocation failed; will retry", "error",
		    err.message, "transport", err.detail, NULL);
		ok = store_revocation_retry(c, &rv, err.message,
		    tokens_backoff_s(rv.attempts, (unsigned)random()));
	} else
		ok = store_revocation_done(c, &rv);
	free_secret(plain);
	finx_error_free(&err);
	store_revocation_free(&rv);
	return ok;
}

/*
 * Revoke one pending token at finX; false when none was due (or it could
 * not be settled).  With connection_id, only that connection's tokens
 * are considered (DELETE revokes its own tokens at once; other due rows
 * are the workers').
 *
 * A connection's refresh tokens go before its access tokens (RFC 7009:
 * revoking the refresh token ends the grant), even when a worker and
 * DELETE's own attempt run at once: an access token is queued due a
 * little after its refresh token, and a refresh token that failed pushes
 * its access tokens past its own backoff, so the workers' claim stays one
 * range scan on revocations_due_idx.  DELETE's own attempt takes its
 * connection's fresh rows at once, refresh token first.
 */
static bool
revoke_one(PGconn *c, const char *connection_id)
{
	struct revoke a = { connection_id, false };

	if (revoke_claimed(c, &a))
		return true;
	if (db_failure() != DBF_NONE)
		log_db("revocation not settled; it is retried", connection_id);
	return false;
}

void
revocations_try(PGconn *c, const char *connection_id)
{
	int i, n = store_revocation_count(c, connection_id);

	if (n < 0)
		log_db("revocations not tried; the workers will",
		    connection_id);
	/* Refresh tokens first (revoke_one).  Only this connection's rows:
	 * other due rows (a reauth's old grant, earlier failures) belong to
	 * the background workers. */
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
