/*
 * Token refresh: on demand (refresh_now) and in the background
 * (refresher_start).  Each background worker owns one PostgreSQL
 * connection and claims due connections one at a time with
 * FOR NO KEY UPDATE SKIP LOCKED, so workers of all processes spread the work
 * without any coordination besides PostgreSQL's row locks.
 */
#include "refresh.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "crypto.h"
#include "data.h"
#include "db.h"
#include "finx.h"
#include "log.h"
#include "metrics.h"
#include "tokens.h"
#include "util.h"

static const char *const outcome_names[] = { "ok", "not_due", "transient",
	"rejected", "invalid_grant", "inactive", "not_found", "db_error",
	"decrypt_failed" };

const char *
refresh_outcome_name(enum refresh_outcome o)
{
	return outcome_names[o];
}

static void
rollback(PGconn *c)
{
	PQclear(PQexec(c, "ROLLBACK"));
}

/*
 * finX answered with new tokens but the commit failed: the new refresh
 * token exists nowhere else, and with rotation the old one is dead.  Try
 * hard to store it before giving up (LESSONS.md failure 2).
 */
static bool
rescue_store(const char *id, const struct finx_tokens *t)
{
	int attempt;

	for (attempt = 0; attempt < 5; attempt++) {
		PGconn *c = db_acquire();
		bool ok;

		if (c == NULL) {
			sleep(1);
			continue;
		}
		ok = db_cmd(c, "BEGIN", 0, NULL) &&
		    tokens_store(c, id, t, false) &&
		    db_cmd(c, "COMMIT", 0, NULL);
		if (!ok)
			rollback(c);
		db_release(c);
		if (ok)
			return true;
		sleep(1);
	}
	return false;
}

static void
record_failure(PGconn *c, const char *id, const char *msg)
{
	char backoff[24];
	PGresult *r;

	r = db_exec(c,
	    "SELECT consecutive_failures + 1 FROM connections WHERE id = $1",
	    1, (const char *[]){ id });
	snprintf(backoff, sizeof(backoff), "%ld",
	    tokens_backoff_s((int)db_long(r, 0, 0, 1),
		(unsigned)random()));
	PQclear(r);
	db_cmd(c,
	    "UPDATE connections SET consecutive_failures = "
	    "consecutive_failures + 1, last_error = $2, next_attempt_at = "
	    "now() + make_interval(secs => $3::int), updated_at = now() "
	    "WHERE id = $1",
	    3, (const char *[]){ id, msg, backoff });
}

/*
 * The heart of it: called with a transaction open on c and the row of id
 * locked; sealed is the stored refresh token as read under the lock.
 * Ends the transaction.
 */
static enum refresh_outcome
refresh_locked(PGconn *c, const char *id, const char *sealed, char **msg)
{
	struct finx_tokens t = { 0 };
	struct finx_error err = { 0 };
	char *aad = crypto_aad("connections", id, "refresh_token");
	char *plain = crypto_open(sealed, aad, NULL);
	enum refresh_outcome o;
	int64_t t0 = mono_ms();

	free(aad);
	if (plain == NULL) {
		record_failure(c, id, "stored refresh token cannot be "
				      "decrypted with the configured keys");
		db_cmd(c, "COMMIT", 0, NULL);
		if (msg)
			*msg = xstrdup("stored refresh token cannot be "
				       "decrypted");
		return RF_DECRYPT;
	}
	if (finx_refresh(plain, &t, &err)) {
		free_secret(plain);
		/* Store before anyone uses the new access token. */
		if (tokens_store(c, id, &t, false) &&
		    db_cmd(c, "COMMIT", 0, NULL))
			o = RF_OK;
		else {
			rollback(c);
			o = rescue_store(id, &t) ? RF_OK : RF_DB_ERROR;
			if (o != RF_OK)
				log_kv(LOG_ERROR, "refreshed tokens could not be "
						  "stored; connection may need "
						  "reauth",
				    "connection_id", id, NULL);
		}
		finx_tokens_free(&t);
		metrics_refresh(refresh_outcome_name(o));
		log_kv(LOG_INFO, "refreshed", "connection_id", id, "outcome",
		    refresh_outcome_name(o), NULL);
		(void)t0;
		return o;
	}
	free_secret(plain);
	if (err.invalid_grant) {
		/* Re-read: only a token still equal to the one refused
		 * condemns the connection (LESSONS.md failure 5). */
		PGresult *r = db_exec(c,
		    "SELECT refresh_token = $2 FROM connections WHERE id = $1",
		    2, (const char *[]){ id, sealed });

		if (r != NULL && PQntuples(r) == 1 &&
		    strcmp(PQgetvalue(r, 0, 0), "t") == 0) {
			char *why = xasprintf("invalid_grant: %s",
			    err.message ? err.message : "refused by finX");

			db_cmd(c,
			    "UPDATE connections SET status = 'reauth_required', "
			    "status_reason = $2, last_error = $2, "
			    "updated_at = now() WHERE id = $1",
			    2, (const char *[]){ id, why });
			db_cmd(c,
			    "INSERT INTO events (kind, outcome, connection_id, "
			    "detail) VALUES ('refresh', 'reauth_required', $1, "
			    "$2)",
			    2, (const char *[]){ id, why });
			free(why);
			o = RF_INVALID_GRANT;
		} else
			o = RF_NOT_DUE;
		PQclear(r);
	} else {
		record_failure(c, id, err.message ? err.message : "finX error");
		o = err.transient ? RF_TRANSIENT : RF_REJECTED;
	}
	db_cmd(c, "COMMIT", 0, NULL);
	metrics_refresh(refresh_outcome_name(o));
	log_kv(LOG_WARN, "refresh failed", "connection_id", id, "outcome",
	    refresh_outcome_name(o), "error", err.message, NULL);
	if (msg)
		*msg = xstrdup(err.message ? err.message : "finX error");
	finx_error_free(&err);
	return o;
}

enum refresh_outcome
refresh_now(const char *id, bool force, char **msg)
{
	/* Bulk: the connection may be held across a finX call. */
	PGconn *c = db_acquire_bulk();
	PGresult *r;
	enum refresh_outcome o;

	if (c == NULL)
		return RF_DB_ERROR;
	if (!db_cmd(c, "BEGIN", 0, NULL)) {
		db_release(c);
		return RF_DB_ERROR;
	}
	/* Waits while another process refreshes, then sees its result. */
	r = db_exec(c,
	    "SELECT status = 'active' AND refresh_token IS NOT NULL, "
	    "refresh_token, refresh_due_at <= now() OR "
	    "access_expires_at <= now(), status, status_reason FROM "
	    "connections WHERE id = $1 FOR NO KEY UPDATE",
	    1, (const char *[]){ id });
	if (r == NULL)
		o = RF_DB_ERROR;
	else if (PQntuples(r) == 0)
		o = RF_NOT_FOUND;
	else if (strcmp(PQgetvalue(r, 0, 3), "reauth_required") == 0) {
		/* Already found dead (perhaps by another process): say so. */
		o = RF_INVALID_GRANT;
		if (msg != NULL && !PQgetisnull(r, 0, 4))
			*msg = xstrdup(PQgetvalue(r, 0, 4));
	} else if (strcmp(PQgetvalue(r, 0, 0), "t") != 0)
		o = RF_INACTIVE;
	else if (!force && strcmp(PQgetvalue(r, 0, 2), "t") != 0)
		o = RF_NOT_DUE;
	else {
		o = refresh_locked(c, id, PQgetvalue(r, 0, 1), msg);
		PQclear(r);
		db_release(c);
		return o;
	}
	PQclear(r);
	rollback(c);
	db_release(c);
	return o;
}

char *
refresh_access_token(const char *id, bool force, enum refresh_outcome *o,
    char **expires_at, char **msg)
{
	PGresult *res;
	PGconn *c;
	char *aad, *plain;

	*o = refresh_now(id, force, msg);
	if (*o != RF_OK && *o != RF_NOT_DUE && *o != RF_TRANSIENT &&
	    *o != RF_REJECTED && *o != RF_DECRYPT)
		return NULL;
	if ((c = db_acquire()) == NULL) {
		*o = RF_DB_ERROR;
		return NULL;
	}
	res = db_exec(c,
	    "SELECT access_token, to_char(access_expires_at AT TIME ZONE "
	    "'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM connections "
	    "WHERE id = $1 AND status = 'active' AND access_token IS NOT NULL "
	    "AND access_expires_at > now()",
	    1, (const char *[]){ id });
	db_release(c);
	if (res == NULL || PQntuples(res) == 0) {
		/* A failed refresh and no valid old token either. */
		if (res == NULL)
			*o = RF_DB_ERROR;
		else if (*o == RF_OK || *o == RF_NOT_DUE)
			*o = RF_INACTIVE;
		PQclear(res);
		return NULL;
	}
	aad = crypto_aad("connections", id, "access_token");
	plain = crypto_open(PQgetvalue(res, 0, 0), aad, NULL);
	free(aad);
	if (plain == NULL) {
		log_kv(LOG_ERROR, "cannot decrypt access token",
		    "connection_id", id, NULL);
		*o = RF_DECRYPT;
		if (msg != NULL && *msg == NULL)
			*msg = xstrdup("stored access token cannot be decrypted");
	} else if (expires_at != NULL)
		*expires_at = xstrdup(PQgetvalue(res, 0, 1));
	PQclear(res);
	if (plain != NULL &&
	    (*o == RF_TRANSIENT || *o == RF_REJECTED || *o == RF_DECRYPT))
		*o = RF_NOT_DUE; /* the old token is still valid: use it */
	return plain;
}

/* Background workers. */

static struct {
	pthread_t *threads;
	int n;
	atomic_bool stop;
	/*
	 * Pulls are long (thousands of upserts) and may wait; refreshes may
	 * not.  At most a quarter of the workers pull at a time, so the
	 * others stay free for due tokens and the database is not swamped
	 * by pulls after a burst of new connections.
	 */
	atomic_int pulling;
	int max_pulls;
	/*
	 * A pull was announced by refresher_wake.  A wake while every pull
	 * slot is busy signals no one (a burst of callbacks would otherwise
	 * send a worker through an empty scan per callback); the flag makes
	 * the puller that is finishing look once more instead of napping.
	 */
	atomic_bool pull_pending;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	const struct config *cfg;
} bg = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static void
nap(long ms)
{
	struct timespec until = realtime_after_ms(ms);

	pthread_mutex_lock(&bg.mu);
	if (!atomic_load(&bg.stop))
		pthread_cond_timedwait(&bg.cv, &bg.mu, &until);
	pthread_mutex_unlock(&bg.mu);
}

/* Claim and refresh one due connection; false when none was due. */
static bool
refresh_one(PGconn *c)
{
	PGresult *r;
	char *id;

	if (!db_cmd(c, "BEGIN", 0, NULL))
		return false;
	r = db_exec(c,
	    "SELECT id, refresh_token FROM connections WHERE status = "
	    "'active' AND refresh_token IS NOT NULL AND refresh_due_at <= "
	    "now() AND (next_attempt_at IS NULL OR next_attempt_at <= now()) "
	    "ORDER BY refresh_due_at LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED",
	    0, NULL);
	if (r == NULL || PQntuples(r) == 0) {
		PQclear(r);
		rollback(c);
		return false;
	}
	id = xstrdup(PQgetvalue(r, 0, 0));
	refresh_locked(c, id, PQgetvalue(r, 0, 1), NULL);
	PQclear(r);
	free(id);
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
	if (connection_id != NULL)
		r = db_exec(c,
		    "SELECT id, token, attempts + 1 FROM revocations WHERE "
		    "connection_id = $1 AND next_attempt_at <= now() ORDER BY "
		    "next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED",
		    1, (const char *[]){ connection_id });
	else
		r = db_exec(c,
		    "SELECT id, token, attempts + 1 FROM revocations WHERE "
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

void
refresher_wake(void)
{
	atomic_store(&bg.pull_pending, true);
	if (atomic_load(&bg.pulling) >= bg.max_pulls)
		return;
	pthread_mutex_lock(&bg.mu);
	pthread_cond_signal(&bg.cv);
	pthread_mutex_unlock(&bg.mu);
}

/*
 * A pull, when one of the pull slots is free.  True when it pulled, or
 * when it held a slot and a pull was announced after it looked (the
 * caller loops instead of napping).  The flag is cleared before the
 * scan and set only after the announcing transaction committed, so an
 * announcement is either seen by the scan or still pending afterwards.
 */
static bool
try_pull(PGconn *c)
{
	bool did = false, slot;

	slot = atomic_fetch_add(&bg.pulling, 1) < bg.max_pulls;
	if (slot) {
		atomic_store(&bg.pull_pending, false);
		did = pull_one(c);
	}
	atomic_fetch_sub(&bg.pulling, 1);
	/* Only a slot holder re-looks: the others would spin on the flag. */
	return did || (slot && atomic_load(&bg.pull_pending));
}

static void *
worker(void *arg)
{
	PGconn *c = NULL;
	long idle_ms = bg.cfg->refresh_interval_s * 1000;

	(void)arg;
	while (!atomic_load(&bg.stop)) {
		bool did;

		if (c == NULL || PQstatus(c) != CONNECTION_OK) {
			char *err = NULL;

			PQfinish(c);
			if ((c = db_connect(bg.cfg->database_url, &err)) == NULL) {
				log_kv(LOG_WARN, "refresher cannot connect",
				    "error", err, NULL);
				free(err);
				nap(2000);
				continue;
			}
		}
		/* Tokens first: a refresh missed is a connection lost. */
		did = refresh_one(c);
		if (!did)
			did = revoke_one(c, NULL);
		if (!did)
			did = sync_poll_one(c);
		if (!did)
			did = try_pull(c);
		if (!did)
			nap(idle_ms);
	}
	PQfinish(c);
	return NULL;
}

void
refresher_start(const struct config *cfg)
{
	int i;

	bg.cfg = cfg;
	bg.n = (int)cfg->refresh_concurrency;
	bg.max_pulls = bg.n >= 4 ? bg.n / 4 : 1;
	bg.threads = xcalloc((size_t)bg.n, sizeof(pthread_t));
	atomic_store(&bg.stop, false);
	srandom((unsigned)(mono_ms() ^ getpid()));
	for (i = 0; i < bg.n; i++)
		if (pthread_create(&bg.threads[i], NULL, worker, NULL) != 0)
			abort();
}

void
refresher_stop(void)
{
	int i;

	if (bg.threads == NULL)
		return;
	pthread_mutex_lock(&bg.mu);
	atomic_store(&bg.stop, true);
	pthread_cond_broadcast(&bg.cv);
	pthread_mutex_unlock(&bg.mu);
	for (i = 0; i < bg.n; i++)
		pthread_join(bg.threads[i], NULL);
	free(bg.threads);
	bg.threads = NULL;
}
