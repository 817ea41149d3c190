/*
 * GET /callback: the widget sends the browser here.  Order matters
 * (LESSONS.md rule 2): the state is looked up and consumed atomically,
 * under a row lock, before the code is touched; only then is the code
 * exchanged, with no database connection held while finX answers.
 * The callback URL carries the code, so it is never logged.
 */
#include "api.h"

#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "buf.h"
#include "db.h"
#include "encode.h"
#include "finx.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "refresh.h"
#include "worker.h"
#include "secret.h"
#include "tokens.h"

struct link {
	char *id;
	char *return_url;
	char *kind;
	char *connection_id;
	char *user_id;
};

static void
link_free(struct link *l)
{
	free(l->id);
	free(l->return_url);
	free(l->kind);
	free(l->connection_id);
	free(l->user_id);
}

static char *
dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

static const char *const cb_names[CB_NPARAMS] = { "state", "flow_id",
	"success", "code", "abort", "cancel" };

void
callback_arg(struct cb_params *p, const char *name, const char *raw)
{
	size_t i;

	for (i = 0; name != NULL && i < CB_NPARAMS; i++) {
		if (strcasecmp(name, cb_names[i]) != 0)
			continue;
		p->count[i]++;
		if (strcmp(name, cb_names[i]) != 0)
			p->odd_case = true;
		else if (p->v[i] == NULL && raw != NULL &&
		    (p->v[i] = http_unescape(raw, strlen(raw))) == NULL)
			p->bad_escape = true;
	}
}

static bool
param_ok(const char *v, size_t max)
{
	return v != NULL && api_valid_text(v, max);
}

const char *
callback_params_check(const struct cb_params *p)
{
	size_t i;

	for (i = 0; i < CB_NPARAMS; i++)
		if (p->count[i] > 1)
			return "duplicate_parameter";
	if (p->odd_case || p->bad_escape || !param_ok(p->v[CB_STATE], 512) ||
	    !param_ok(p->v[CB_FLOW_ID], 256) ||
	    (p->v[CB_CODE] != NULL && !param_ok(p->v[CB_CODE], 64 * 1024)))
		return "malformed_parameters";
	return NULL;
}

void
callback_params_free(struct cb_params *p)
{
	size_t i;

	for (i = 0; i < CB_NPARAMS; i++)
		free_secret(p->v[i]);
	memset(p, 0, sizeof(*p));
}

static enum MHD_Result
cb_iter(void *cls, enum MHD_ValueKind kind, const char *key,
    const char *value)
{
	callback_arg(cls, key, value);
	return MHD_YES;
}

static enum MHD_Result
reject(struct req *r, const char *why)
{
	metrics_callback("rejected");
	log_kv(LOG_WARN, "callback rejected", "reason", why, NULL);
	return http_page(r, MHD_HTTP_BAD_REQUEST, "This sign-in link is not valid",
	    "The link is unknown, expired or was already used. Please go back "
	    "and start connecting your bank again.");
}

static void
event(PGconn *c, const char *outcome, const char *link_id,
    const char *conn_id, const char *detail)
{
	db_cmd(c,
	    "INSERT INTO events (kind, outcome, link_id, connection_id, "
	    "detail) VALUES ('callback', $1, $2, $3, $4)",
	    4, (const char *[]){ outcome, link_id, conn_id, detail });
}

/* Mark a consumed link failed/expired with a reason (own transaction). */
static void
link_finish(const char *link_id, const char *status, const char *reason,
    const char *detail)
{
	PGconn *c = db_acquire_bulk();

	if (c == NULL)
		return;
	db_cmd(c, "BEGIN", 0, NULL);
	db_cmd(c,
	    "UPDATE links SET status = $2, reason = $3, completed_at = now() "
	    "WHERE id = $1",
	    3, (const char *[]){ link_id, status, reason });
	event(c, reason ? reason : status, link_id, NULL, detail);
	db_cmd(c, "COMMIT", 0, NULL);
	db_release(c);
}

/*
 * Look the state up and consume it.  Returns 1 with *l filled when the
 * link may proceed, 0 when rejected (reason in *why), -1 on a database
 * failure.
 */
static int
consume_state(struct req *r, const char *state, const char *flow_id,
    struct link *l, const char **why)
{
	unsigned char h[32];
	char hx[67] = "\\x", *hexs;
	PGresult *res;
	PGconn *c;
	const char *bind, *stored_flow;
	int rc = 0;

	sha256(state, strlen(state), h);
	hexs = hex_encode(h, 32);
	memcpy(hx + 2, hexs, 65);
	free(hexs);
	if ((c = db_acquire_bulk()) == NULL)
		return -1;
	if (!api_cfg->browser_binding) {
		/* The usual case in one statement: a live, unused state whose
		 * flow matches is consumed atomically; anything else takes the
		 * slow path below to find out why and record it. */
		res = db_exec_prepared(c, "cb_consume",
		    "UPDATE links SET used_at = now() WHERE state_hash = "
		    "$1::bytea AND used_at IS NULL AND expires_at > now() AND "
		    "flow_id = $2 RETURNING id, return_url, kind, "
		    "connection_id, user_id",
		    2, (const char *[]){ hx, flow_id });
		if (res != NULL && PQntuples(res) == 1) {
			l->id = xstrdup(PQgetvalue(res, 0, 0));
			l->return_url = dup_or_null(db_val(res, 0, 1));
			l->kind = xstrdup(PQgetvalue(res, 0, 2));
			l->connection_id = dup_or_null(db_val(res, 0, 3));
			l->user_id = xstrdup(PQgetvalue(res, 0, 4));
			PQclear(res);
			db_release(c);
			return 1;
		}
		PQclear(res);
	}
	if (!db_cmd(c, "BEGIN", 0, NULL)) {
		db_release(c);
		return -1;
	}
	res = db_exec(c,
	    "SELECT id, flow_id, return_url, kind, connection_id, user_id, "
	    "encode(binding_hash, 'hex'), used_at IS NULL, "
	    "expires_at > now(), status FROM links WHERE state_hash = "
	    "$1::bytea FOR UPDATE",
	    1, (const char *[]){ hx });
	if (res == NULL) {
		rc = -1;
		goto out;
	}
	if (PQntuples(res) == 0) {
		*why = "unknown_state";
		goto out;
	}
	l->id = xstrdup(PQgetvalue(res, 0, 0));
	stored_flow = PQgetvalue(res, 0, 1);
	if (strcmp(PQgetvalue(res, 0, 7), "t") != 0) {
		*why = "state_already_used";
		goto out;
	}
	if (strcmp(PQgetvalue(res, 0, 8), "t") != 0) {
		*why = "state_expired";
		db_cmd(c,
		    "UPDATE links SET used_at = now(), status = 'expired', "
		    "completed_at = now() WHERE id = $1",
		    1, (const char *[]){ l->id });
		event(c, "state_expired", l->id, NULL, NULL);
		goto out;
	}
	if (api_cfg->browser_binding) {
		char *name = link_cookie_name(l->id);
		const char *cookie = http_cookie(r, name);
		char *chx = NULL;

		free(name);
		bind = db_val(res, 0, 6);
		if (cookie != NULL) {
			sha256(cookie, strlen(cookie), h);
			chx = hex_encode(h, 32);
		}
		/* Not consumed: the browser that owns the link may still come. */
		if (bind == NULL || chx == NULL ||
		    !ct_equal(bind, strlen(bind), chx, strlen(chx))) {
			free(chx);
			*why = "browser_binding_mismatch";
			event(c, "browser_binding_mismatch", l->id, NULL, NULL);
			goto out;
		}
		free(chx);
	}
	/* The state is spent whatever happens next. */
	db_cmd(c, "UPDATE links SET used_at = now() WHERE id = $1", 1,
	    (const char *[]){ l->id });
	if (strcmp(stored_flow, flow_id) != 0) {
		*why = "flow_id_mismatch";
		db_cmd(c,
		    "UPDATE links SET status = 'failed', reason = "
		    "'flow_id_mismatch', completed_at = now() WHERE id = $1",
		    1, (const char *[]){ l->id });
		event(c, "flow_id_mismatch", l->id, NULL, NULL);
		goto out;
	}
	l->return_url = dup_or_null(db_val(res, 0, 2));
	l->kind = xstrdup(PQgetvalue(res, 0, 3));
	l->connection_id = dup_or_null(db_val(res, 0, 4));
	l->user_id = xstrdup(PQgetvalue(res, 0, 5));
	rc = 1;
out:
	PQclear(res);
	if (rc < 0 || !db_cmd(c, "COMMIT", 0, NULL))
		rc = -1;
	db_release(c);
	return rc;
}

/* Exchange the code; retry only when the request never reached finX. */
static bool
exchange(const char *code, struct finx_tokens *t, struct finx_error *err)
{
	int attempt;

	for (attempt = 0; attempt < 3; attempt++) {
		if (attempt > 0) {
			finx_error_free(err);
			usleep(200 * 1000);
		}
		if (finx_exchange_code(code, api_cfg->redirect_uri, t, err))
			return true;
		if (!err->never_sent)
			return false;
	}
	return false;
}

/* Store the new grant; returns the connection id or NULL. */
static char *
store_grant(const struct link *l, const struct finx_tokens *t)
{
	bool reauth = strcmp(l->kind, "reauth") == 0 && l->connection_id;
	char *conn_id = reauth ? xstrdup(l->connection_id) : uuid_new();
	PGconn *c = db_acquire_bulk();
	PGresult *res;
	bool ok;

	if (c == NULL) {
		free(conn_id);
		return NULL;
	}
	if (!reauth) {
		struct token_cols k;

		/*
		 * A new connection in one statement (the callback is the hot
		 * path in a burst): the connection with its first tokens,
		 * its first pull (at once, attended: the user just passed
		 * SCA), the link and the event.  Foreign keys are checked at
		 * the end of the statement.
		 */
		/* Lifetimes count from the code exchange's request; the
		 * connection starts idle (refreshed when something needs a
		 * token, or for keep-alive). */
		tokens_prepare(conn_id, t, tokens_due_after(t, false, 0), &k);
		res = db_exec_prepared(c, "cb_store",
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
		    "= $1, reason = NULL, completed_at = now() WHERE id = $3) "
		    "INSERT INTO events (kind, outcome, link_id, connection_id) "
		    "VALUES ('callback', 'connected', $3, $1)",
		    11,
		    (const char *[]){ conn_id, l->user_id, l->id, k.access,
			k.refresh, k.scope, k.left, k.rleft, k.cleft, k.due,
			k.ttl });
		ok = res != NULL;
		PQclear(res);
		tokens_cols_free(&k);
		db_release(c);
		if (!ok) {
			free(conn_id);
			return NULL;
		}
		return conn_id;
	}
	ok = db_cmd(c, "BEGIN", 0, NULL);
	/*
	 * A pull at once, attended: the user just passed SCA.  The pulls row
	 * first, the connection's row second, the order every writer of both
	 * keeps: a running pull holds its pulls row and may wait for the
	 * connection's row (a lease for a fresh token), so taking them the
	 * other way round would wait in a cycle PostgreSQL cannot see (the
	 * pull waits over a second connection).
	 */
	ok = ok && db_cmd(c,
		       "INSERT INTO pulls (connection_id, next_pull_at, "
		       "attended) VALUES ($1, now(), true) ON CONFLICT "
		       "(connection_id) DO UPDATE SET next_pull_at = "
		       "now(), attended = true, failures = 0",
		       1, (const char *[]){ conn_id });
	if (ok) {
		/*
		 * Renewing: lock the row, refuse a connection deleted
		 * meanwhile, and queue the old grant's tokens for revocation
		 * so no stale grant outlives it.  A refresh of the old grant
		 * still in flight finds the generation bumped and sends its
		 * rotation to revocation too.
		 */
		PGresult *old = db_exec(c,
		    "SELECT refresh_token, access_token FROM connections WHERE "
		    "id = $1 AND status <> 'revoked' FOR NO KEY UPDATE",
		    1, (const char *[]){ conn_id });

		ok = old != NULL && PQntuples(old) == 1 &&
		    queue_revocations(c, conn_id, old);
		PQclear(old);
		ok = ok && tokens_store_grant(c, conn_id, t) &&
		    db_cmd(c,
			"UPDATE links SET status = 'connected', connection_id = "
			"$2, reason = NULL, completed_at = now() WHERE id = $1",
			2, (const char *[]){ l->id, conn_id });
		if (ok)
			event(c, "connected", l->id, conn_id, NULL);
	}
	ok = ok && db_cmd(c, "COMMIT", 0, NULL);
	if (!ok) {
		PQclear(PQexec(c, "ROLLBACK"));
		free(conn_id);
		conn_id = NULL;
	}
	db_release(c);
	return conn_id;
}

static enum MHD_Result
finish(struct req *r, const struct link *l, const char *status,
    const char *reason, const char *conn_id)
{
	struct buf b;
	enum MHD_Result ret;
	char *v;

	metrics_callback(status);
	log_kv(LOG_INFO, "callback", "link_id", l->id, "status", status,
	    "reason", reason, "connection_id", conn_id, NULL);
	if (l->return_url == NULL) {
		if (strcmp(status, "connected") == 0)
			return http_page(r, MHD_HTTP_OK, "Bank connected",
			    "Your bank account is connected. You can close "
			    "this window.");
		return http_page(r, MHD_HTTP_OK, "Bank not connected",
		    strcmp(status, "cancelled") == 0
			? "You cancelled connecting your bank. You can close "
			  "this window."
			: "Connecting your bank did not work. Please try "
			  "again later.");
	}
	buf_init(&b, 16 * 1024);
	buf_append_str(&b, l->return_url);
	buf_append_str(&b, strchr(l->return_url, '?') ? "&" : "?");
	buf_appendf(&b, "link_id=%s&status=%s", l->id, status);
	if (conn_id != NULL)
		buf_appendf(&b, "&connection_id=%s", conn_id);
	if (reason != NULL) {
		v = url_encode(reason);
		buf_appendf(&b, "&reason=%s", v);
		free(v);
	}
	ret = http_redirect(r, b.data, NULL);
	buf_free(&b);
	return ret;
}

/* The callback once its parameters passed callback_params_check. */
static enum MHD_Result
callback_run(struct req *r, const struct cb_params *p)
{
	const char *state = p->v[CB_STATE];
	const char *flow_id = p->v[CB_FLOW_ID];
	const char *success = p->v[CB_SUCCESS];
	const char *code = p->v[CB_CODE];
	const char *abort_ = p->v[CB_ABORT];
	const char *cancel = p->v[CB_CANCEL];
	struct link l = { 0 };
	struct finx_tokens t = { 0 };
	struct finx_error err = { 0 };
	const char *why = NULL;
	enum MHD_Result ret;
	char *conn_id;
	int rc;

	rc = consume_state(r, state, flow_id, &l, &why);
	if (rc < 0) {
		link_free(&l);
		metrics_callback("error");
		return http_page(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		    "Please try again", "The service is temporarily busy.");
	}
	if (rc == 0) {
		link_free(&l);
		return reject(r, why);
	}
	if (success == NULL || strcmp(success, "true") != 0) {
		bool cancelled = (abort_ && strcmp(abort_, "true") == 0) ||
		    (cancel && strcmp(cancel, "true") == 0);
		const char *st = cancelled ? "cancelled" : "failed";
		const char *reason = cancelled ? "user_cancelled"
					       : "finx_flow_failed";

		link_finish(l.id, st, reason, NULL);
		ret = finish(r, &l, st, reason, NULL);
		link_free(&l);
		return ret;
	}
	if (code == NULL) {
		link_finish(l.id, "failed", "missing_code", NULL);
		ret = finish(r, &l, "failed", "missing_code", NULL);
		link_free(&l);
		return ret;
	}
	if (!exchange(code, &t, &err)) {
		log_kv(LOG_WARN, "code exchange failed", "link_id", l.id,
		    "error", err.message, NULL);
		link_finish(l.id, "failed", "token_exchange_failed",
		    err.message);
		finx_error_free(&err);
		ret = finish(r, &l, "failed", "token_exchange_failed", NULL);
		link_free(&l);
		return ret;
	}
	if ((conn_id = store_grant(&l, &t)) == NULL) {
		/* Do not leave a grant at finX that nobody holds. */
		if (t.refresh_token != NULL)
			finx_revoke(t.refresh_token, &err);
		finx_error_free(&err);
		finx_tokens_free(&t);
		link_finish(l.id, "failed", "storage_failed", NULL);
		ret = finish(r, &l, "failed", "storage_failed", NULL);
		link_free(&l);
		return ret;
	}
	finx_tokens_free(&t);
	worker_wake_pull(); /* the first pull, without waiting for a scan */
	ret = finish(r, &l, "connected", NULL, conn_id);
	free(conn_id);
	link_free(&l);
	return ret;
}

enum MHD_Result
h_callback(struct req *r)
{
	struct cb_params p = { 0 };
	enum MHD_Result ret;
	const char *why;

	MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, cb_iter,
	    &p);
	if ((why = callback_params_check(&p)) != NULL)
		ret = reject(r, why);
	else
		ret = callback_run(r, &p);
	callback_params_free(&p);
	return ret;
}
