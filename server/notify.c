/*
 * finX notifications (SPEC "finX notifications", finx-api.md 5.4).
 *
 * What: with FINXD_FINX_NOTIFICATIONS=on, each account of a connection
 * gets a finX notification for its new transactions, whose notify_uri is
 * FINXD_PUBLIC_URL/finx/notify/<secret>; a request there pulls the
 * connection soon.  One row of finx_notifications (0012) per account.
 *
 * Secrets: 32 random bytes (state_new), base64url, one per registration
 * attempt; only their SHA-256 is stored, and a request's secret is
 * looked up by its hash (an index lookup whose timing depends on the
 * hash, not on the secret).  The secret appears in no log line: the
 * access log spells every path under /finx/notify/ as "/finx/notify/..."
 * (notify_log_path), and finx.c logs paths of its calls, not bodies.
 *
 * Registration: after a pull commits, rows are made for the accounts
 * that have none (notify_after_pull: new accounts of later pulls too).
 * The workers claim a due row in one committed UPDATE ... SKIP LOCKED
 * that gives it a deadline and the new secret's hash, call finX with no
 * transaction open, then compare-and-set the outcome on that hash: a
 * claim lost meanwhile (deleted connection) removes its registration at
 * finX again; a failure is due again after a backoff; a claim whose
 * process died is due again at its deadline.  Reauthorisation leaves the
 * rows alone: they belong to the finX user, not to a grant.
 *
 * A notification: ANY method, payload never read.  One statement
 * (store_notify_hit) finds the secret's connection and moves its pull to
 * greatest(now, last pull + FINXD_NOTIFY_MIN_INTERVAL) unless it is due
 * sooner; a pull that is running holds its pulls row, and then the move
 * is left to the workers for after it (pull_pending), so a handler never
 * waits for a pull.  A failing pull keeps its backoff.  So a flood of
 * notifications is one pull at a time and at most one per interval.
 *
 * Removal: DELETE of a connection turns its registrations into removals
 * in its own transaction; they present the access token DELETE queued
 * for revocation (made fresh first, notify_before_delete), so that
 * connection's revocations wait for them (SQL_NOTIFY_NOT_HELD) up to
 * STORE_NOTIFY_HOLD_S.  DELETE tries them at once, the workers retry.
 */
#include "notify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "config.h"
#include "db.h"
#include "encode.h"
#include "finx.h"
#include "log.h"
#include "mem.h"
#include "refresh.h"
#include "secret.h"
#include "store.h"
#include "store_notify.h"
#include "tokens.h"

/* A registration's or removal's claim: longer than one finX call. */
#define CLAIM_S 120

static const struct config *ncfg;

void
notify_init(const struct config *cfg)
{
	ncfg = cfg;
}

/* ---- pure ---------------------------------------------------------- */

bool
notify_secret_ok(const char *s)
{
	static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				     "abcdefghijklmnopqrstuvwxyz0123456789-_";

	return s != NULL && strlen(s) == NOTIFY_SECRET_LEN &&
	    strspn(s, b64url) == NOTIFY_SECRET_LEN;
}

char *
notify_secret_hash(const char *secret)
{
	unsigned char h[32];
	char *hex;

	sha256(secret, strlen(secret), h);
	hex = hex_encode(h, sizeof(h));
	OPENSSL_cleanse(h, sizeof(h));
	return hex;
}

const char *
notify_log_path(const char *path)
{
	size_t n = strlen(NOTIFY_PATH) - 1; /* without its last '/' */

	if (path != NULL && strncmp(path, NOTIFY_PATH, n) == 0 &&
	    (path[n] == '/' || path[n] == '\0'))
		return NOTIFY_PATH_LOGGED;
	return path;
}

json_object *
notify_body(const char *public_url, const char *secret,
    const char *finx_account_id, const char *state)
{
	json_object *o = json_object_new_object();
	char *acc = url_encode(finx_account_id), *key, *uri;

	key = xasprintf("/rest/accounts/%s/transactions?include_pending=1",
	    acc);
	uri = xasprintf("%s" NOTIFY_PATH "%s", public_url, secret);
	json_object_object_add(o, "observe_key", json_object_new_string(key));
	json_object_object_add(o, "notify_uri", json_object_new_string(uri));
	json_object_object_add(o, "state", json_object_new_string(state));
	free(acc);
	free(key);
	free_secret(uri);
	return o;
}

/* An id that is one safe path segment: [A-Za-z0-9._~-], not a dot one. */
static bool
finx_id_ok(const char *s)
{
	static const char ok[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				 "abcdefghijklmnopqrstuvwxyz0123456789._~-";
	size_t n = strlen(s);

	return n > 0 && n <= 128 && strspn(s, ok) == n &&
	    strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

const char *
notify_answer_id(json_object *answer)
{
	static const char *const names[] = { "notification_id", "id" };
	json_object *v;
	size_t i;

	if (!json_object_is_type(answer, json_type_object))
		return NULL;
	for (i = 0; i < 2; i++)
		if (json_object_object_get_ex(answer, names[i], &v) &&
		    json_object_is_type(v, json_type_string) &&
		    finx_id_ok(json_object_get_string(v)))
			return json_object_get_string(v);
	return NULL;
}

/* ---- a notification ------------------------------------------------ */

bool
notify_received(PGconn *c, const char *secret, bool *known, bool *due)
{
	char *hash;
	bool ok;

	*known = *due = false;
	if (!ncfg->finx_notifications || !notify_secret_ok(secret))
		return true;
	hash = notify_secret_hash(secret);
	ok = store_notify_hit(c, hash, ncfg->notify_min_interval_s, known,
	    due);
	free(hash);
	return ok;
}

/* A store step of the workers failed: log it once, here. */
static void
log_db(const char *msg, const char *conn_id)
{
	log_kv(LOG_ERROR, msg, "connection_id", conn_id, "sqlstate",
	    db_failure_sqlstate(), NULL);
}

void
notify_after_pull(PGconn *c, const char *conn_id)
{
	if (ncfg == NULL || !ncfg->finx_notifications)
		return;
	if (store_notify_seed(c, conn_id) < 0)
		log_db("finX notifications not queued for registration",
		    conn_id);
}

/* ---- removal ------------------------------------------------------- */

/* DELETE /rest/notifications/{finx_id} with token; true when it is gone
 * (a 404: gone already). */
static bool
remove_at_finx(const char *token, const char *finx_id,
    struct finx_error *err)
{
	json_object *out = NULL;
	char *path = xasprintf("/rest/notifications/%s", finx_id);
	bool ok = finx_rest("DELETE", token, path, NULL, &out, err);

	free(path);
	json_object_put(out);
	return ok || err->http_status == 404;
}

/* The outcome of a claimed removal; the token may be NULL (none left). */
static bool
removal_settle(PGconn *c, const struct notify_removal *m, const char *token)
{
	struct finx_error err = { 0 };
	bool gone, give_up;

	gone = token != NULL && remove_at_finx(token, m->finx_id, &err);
	/* No token finX takes: nothing could remove it any more. */
	give_up = !gone && (token == NULL || err.http_status == 401 ||
			       err.http_status == 403 || m->past_hold);
	if (give_up)
		log_kv(LOG_WARN, "finX notification not removed; given up",
		    "connection_id", m->conn_id, "notification_id", m->finx_id,
		    "error", token == NULL ? "no access token left" : err.message,
		    NULL);
	else if (!gone)
		log_kv(LOG_WARN, "finX notification not removed; will retry",
		    "connection_id", m->conn_id, "error", err.message,
		    "transport", err.detail, NULL);
	finx_error_free(&err);
	if (gone || give_up)
		return store_notify_removal_done(c, m);
	return store_notify_removal_retry(c, m, "removal failed",
	    tokens_backoff_s(m->attempts, (unsigned)random()));
}

/* One due removal (of conn_id only unless NULL); true when one ran. */
static bool
removal_one(PGconn *c, const char *conn_id)
{
	struct notify_removal m;
	char *token = NULL;
	int got = store_notify_removal_claim(c, conn_id, CLAIM_S, &m);

	if (got < 0)
		log_db("finX notification removal claim failed", conn_id);
	if (got != 1)
		return false;
	if (m.sealed_token != NULL)
		token = store_open("revocations", m.token_id, "token",
		    m.sealed_token);
	if (!removal_settle(c, &m, token))
		log_db("finX notification removal not stored", m.conn_id);
	free_secret(token);
	store_notify_removal_free(&m);
	return true;
}

void
notify_removals_try(PGconn *c, const char *id)
{
	int i;

	/* Bounded: a connection has a row per account, each tried once. */
	for (i = 0; i < 1000 && removal_one(c, id); i++)
		;
}

void
notify_before_delete(const char *id)
{
	enum refresh_outcome o;
	PGconn *c = db_acquire();
	char *token;
	long n;

	if (c == NULL)
		return;
	n = store_notify_count(c, id);
	db_release(c);
	if (n <= 0)
		return;
	token = refresh_access_token(id, 0, &o, NULL, NULL);
	free_secret(token);
}

/* ---- registration -------------------------------------------------- */

/* The claim failed with msg (ours): due again after a backoff. */
static void
register_failed(PGconn *c, const struct notify_reg *g, const char *hash,
    const char *msg, const char *transport)
{
	log_kv(LOG_WARN, "finX notification not registered; will retry",
	    "connection_id", g->conn_id, "error", msg, "transport", transport,
	    NULL);
	if (!store_notify_failed(c, g, hash, msg,
		tokens_backoff_s(g->attempts, (unsigned)random())))
		log_db("finX notification failure not stored", g->conn_id);
}

/* Registered as finx_id: store it, or remove it again if the claim was
 * lost meanwhile. */
static void
register_store(PGconn *c, const struct notify_reg *g, const char *hash,
    const char *token, const char *finx_id)
{
	struct finx_error err = { 0 };
	int st = store_notify_registered(c, g, hash, finx_id);

	if (st == 1)
		log_kv(LOG_INFO, "finX notification registered",
		    "connection_id", g->conn_id, "notification_id", finx_id,
		    NULL);
	else if (st < 0)
		log_db("finX notification registration not stored",
		    g->conn_id);
	else if (!remove_at_finx(token, finx_id, &err))
		log_kv(LOG_WARN, "finX notification of a lost claim not "
				 "removed",
		    "connection_id", g->conn_id, "notification_id", finx_id,
		    "error", err.message, NULL);
	finx_error_free(&err);
}

/* POST /rest/notifications for the claimed g with token. */
static void
register_call(PGconn *c, const struct notify_reg *g, const char *secret,
    const char *hash, const char *token)
{
	struct finx_error err = { 0 };
	json_object *body, *out = NULL;
	const char *fid = NULL, *text;
	size_t len = 0;
	bool ok;

	body = notify_body(ncfg->public_url, secret, g->finx_account_id,
	    g->id);
	ok = finx_rest("POST", token, "/rest/notifications", body, &out,
	    &err);
	/* The text finx_rest sent is body's printbuf: it holds the secret. */
	text = json_object_to_json_string_length(body,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	wipe_json_text(text, len);
	wipe_json(body);
	json_object_put(body);
	if (ok && (fid = notify_answer_id(out)) != NULL)
		register_store(c, g, hash, token, fid);
	else
		register_failed(c, g, hash,
		    ok ? "finX answer has no notification_id" : err.message,
		    err.detail);
	json_object_put(out);
	finx_error_free(&err);
}

/* Register the claimed g under secret (hash: its SHA-256). */
static void
register_claimed(PGconn *c, const struct notify_reg *g, const char *secret,
    const char *hash)
{
	enum refresh_outcome o;
	char *token, *msg;

	token = refresh_access_token(g->conn_id, 0, &o, NULL, NULL);
	if (token == NULL) {
		msg = xasprintf("no valid access token (%s)",
		    refresh_outcome_name(o));
		register_failed(c, g, hash, msg, NULL);
		free(msg);
		return;
	}
	register_call(c, g, secret, hash, token);
	free_secret(token);
}

/* One due registration; true when one was claimed. */
static bool
register_one(PGconn *c)
{
	struct notify_reg g;
	char *secret = state_new(), *hash = notify_secret_hash(secret);
	int got = store_notify_claim(c, hash, CLAIM_S, &g);

	if (got < 0)
		log_db("finX notification claim failed", NULL);
	if (got == 1 && !g.active) {
		if (!store_notify_park(c, &g))
			log_db("finX notification not parked", g.conn_id);
	} else if (got == 1)
		register_claimed(c, &g, secret, hash);
	free_secret(secret);
	free(hash);
	store_notify_reg_free(&g);
	return got == 1;
}

/* ---- the workers' share -------------------------------------------- */

/* Moves left while pulls ran; true when one is due now. */
static bool
pending_one(PGconn *c)
{
	bool due = false;

	if (store_notify_pending(c, ncfg->notify_min_interval_s, &due) < 0)
		log_db("finX notification pulls not scheduled", NULL);
	return due;
}

bool
notify_one(PGconn *c)
{
	/* Removals first: revocations wait for them.  They run even when
	 * notifications are off (rows from when they were on). */
	if (removal_one(c, NULL))
		return true;
	if (!ncfg->finx_notifications)
		return false;
	return pending_one(c) || register_one(c);
}
