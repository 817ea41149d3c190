/*
 * GET /callback: the widget sends the browser here.  Order matters
 * (LESSONS.md rule 2): the state is consumed atomically before the code
 * is touched; only then is the code exchanged, with no database
 * connection held while finX answers.  One pooled connection before the
 * exchange, one after it (store_links.h).  The callback URL carries the
 * code, so it is never logged.
 */
#include "api.h"

#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "buf.h"
#include "db.h"
#include "encode.h"
#include "finx.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "secret.h"
#include "store_links.h"
#include "worker.h"

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

static enum MHD_Result
busy(struct req *r)
{
	metrics_callback("error");
	return http_page(r, MHD_HTTP_SERVICE_UNAVAILABLE, "Please try again",
	    "The service is temporarily busy.");
}

/* A database failure of the callback, logged once, here. */
static void
db_trouble(const char *what, const char *link_id)
{
	log_kv(LOG_WARN, what, "link_id", link_id, "sqlstate",
	    db_failure_sqlstate(), "db_error", db_failure_message(), NULL);
}

/* A consumed link ends without a grant, on the caller's connection. */
static void
end_link(PGconn *c, const char *link_id, const char *status,
    const char *reason, const char *detail)
{
	if (c == NULL)
		db_fail_unavailable();
	if (c == NULL ||
	    !store_link_finish(c, link_id, status, reason, detail))
		db_trouble("callback: link not marked ended", link_id);
}

/* The binding cookie of link_id on request arg (store_consume_in). */
static const char *
binding_cookie(void *arg, const char *link_id)
{
	char *name = link_cookie_name(link_id);
	const char *v = http_cookie(arg, name);

	free(name);
	return v;
}

/* Why the link ends without an exchange (and *status), or NULL when the
 * browser brought a code. */
static const char *
no_code_reason(const struct cb_params *p, const char **status)
{
	const char *success = p->v[CB_SUCCESS];
	const char *abort_ = p->v[CB_ABORT];
	const char *cancel = p->v[CB_CANCEL];

	*status = "failed";
	if (success == NULL || strcmp(success, "true") != 0) {
		if ((abort_ && strcmp(abort_, "true") == 0) ||
		    (cancel && strcmp(cancel, "true") == 0)) {
			*status = "cancelled";
			return "user_cancelled";
		}
		return "finx_flow_failed";
	}
	return p->v[CB_CODE] == NULL ? "missing_code" : NULL;
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

static enum MHD_Result
finish(struct req *r, const struct store_link *l, const char *status,
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

/*
 * Before the exchange, on one connection: consume the state, and end the
 * link when the browser brought no code.  True when the code may be
 * exchanged for *l; else *ret holds the answer.
 */
static bool
callback_before(struct req *r, const struct cb_params *p,
    struct store_link *l, enum MHD_Result *ret)
{
	struct store_consume_in in = { p->v[CB_STATE], p->v[CB_FLOW_ID],
		api_cfg->browser_binding ? binding_cookie : NULL, r };
	const char *status = NULL, *reason = NULL;
	enum store_consume k = SC_DB_ERROR;
	PGconn *c = db_acquire_bulk();

	if (c == NULL)
		db_fail_unavailable();
	else
		k = store_link_consume(c, &in, l);
	if (k == SC_OK && (reason = no_code_reason(p, &status)) != NULL)
		end_link(c, l->id, status, reason, NULL);
	db_release(c);
	if (k == SC_OK && reason == NULL)
		return true;
	if (k == SC_DB_ERROR) {
		db_trouble("callback: state not consumed", NULL);
		*ret = busy(r);
	} else if (k != SC_OK)
		*ret = reject(r, store_consume_reason(k));
	else
		*ret = finish(r, l, status, reason, NULL);
	return false;
}

/* Store the grant on c: a new connection, or a renewal for reauth.  The
 * connection id (caller frees) or NULL. */
static char *
store_grant(PGconn *c, const struct store_link *l,
    const struct finx_tokens *t)
{
	if (c == NULL) {
		db_fail_unavailable();
		return NULL;
	}
	if (strcmp(l->kind, "reauth") != 0 || l->connection_id == NULL)
		return store_grant_new(c, l->id, l->user_id, t);
	if (!store_grant_renew(c, l->id, l->connection_id, t))
		return NULL;
	return xstrdup(l->connection_id);
}

/* After the exchange, on one connection, released before finX is called
 * again: the grant stored, or the link failed and the grant revoked. */
static enum MHD_Result
callback_grant(struct req *r, const struct store_link *l,
    const struct finx_tokens *t)
{
	PGconn *c = db_acquire_bulk();
	char *conn_id = store_grant(c, l, t);
	struct finx_error err = { 0 };
	enum MHD_Result ret;

	if (conn_id == NULL) {
		db_trouble("callback: grant not stored", l->id);
		if (c != NULL)
			end_link(c, l->id, "failed", "storage_failed", NULL);
	}
	db_release(c);
	if (conn_id == NULL) {
		/* Do not leave a grant at finX that nobody holds. */
		if (t->refresh_token != NULL)
			finx_revoke(t->refresh_token, &err);
		finx_error_free(&err);
		return finish(r, l, "failed", "storage_failed", NULL);
	}
	worker_wake_pull(); /* the first pull, without waiting for a scan */
	ret = finish(r, l, "connected", NULL, conn_id);
	free(conn_id);
	return ret;
}

/* The exchange failed: the link fails, on one connection. */
static enum MHD_Result
exchange_failed(struct req *r, const struct store_link *l,
    struct finx_error *err)
{
	PGconn *c = db_acquire_bulk();

	log_kv(LOG_WARN, "code exchange failed", "link_id", l->id, "error",
	    err->message, "transport", err->detail, NULL);
	end_link(c, l->id, "failed", "token_exchange_failed", err->message);
	db_release(c);
	finx_error_free(err);
	return finish(r, l, "failed", "token_exchange_failed", NULL);
}

/* The callback once its parameters passed callback_params_check. */
static enum MHD_Result
callback_run(struct req *r, const struct cb_params *p)
{
	struct store_link l = { 0 };
	struct finx_tokens t = { 0 };
	struct finx_error err = { 0 };
	enum MHD_Result ret;

	if (!callback_before(r, p, &l, &ret)) {
		store_link_free(&l);
		return ret;
	}
	if (!exchange(p->v[CB_CODE], &t, &err))
		ret = exchange_failed(r, &l, &err);
	else
		ret = callback_grant(r, &l, &t);
	finx_tokens_free(&t);
	store_link_free(&l);
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
