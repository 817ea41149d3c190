/*
 * The authorization-server half of finx-sandbox: flow creation
 * (POST /ongoing/access), the widget and its redirect, the token endpoint
 * (authorization_code and refresh_token grants, rotation, replay and reuse
 * detection) and token revocation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sbx_data.h"
#include "sbx_handlers.h"

#define WIDGET_TOKEN_LEN 43
#define STATE_MAX 1024

struct field_rule {
	const char *name;
	const char *(*check)(json_object *);
};

static const char *
chk_string(json_object *v)
{
	return json_object_is_type(v, json_type_string) ? NULL
	                                                : "Not a valid string.";
}

static const char *
chk_bool(json_object *v)
{
	return json_object_is_type(v, json_type_boolean)
	    ? NULL
	    : "Not a valid boolean.";
}

static bool
url_ok(const char *s)
{
	const char *p;
	size_t host;

	if (strncasecmp(s, "http://", 7) == 0)
		p = s + 7;
	else if (strncasecmp(s, "https://", 8) == 0)
		p = s + 8;
	else
		return false;
	host = strcspn(p, "/?#");
	if (host == 0 || p[0] == '@' || p[0] == ':')
		return false;
	for (p = s; *p != '\0'; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '#')
			return false;
	return true;
}

static const char *
chk_redirect_uri(json_object *v)
{
	if (chk_string(v) != NULL)
		return "Not a valid string.";
	return url_ok(json_object_get_string(v))
	    ? NULL
	    : "Not a valid absolute http(s) URL without fragment.";
}

static const char *
chk_user_id(json_object *v)
{
	if (chk_string(v) != NULL)
		return "Not a valid string.";
	return json_object_get_string_len(v) > 0 ? NULL : "Must not be empty.";
}

static const char *
chk_state(json_object *v)
{
	if (chk_string(v) != NULL)
		return "Not a valid string.";
	return json_object_get_string_len(v) <= STATE_MAX
	    ? NULL
	    : "Longer than 1024 characters.";
}

static const char *
chk_language(json_object *v)
{
	static const char *const langs[] = { "de", "en", "es", "fr", "ar" };
	size_t i;

	if (chk_string(v) != NULL)
		return "Not a valid string.";
	for (i = 0; i < sizeof(langs) / sizeof(langs[0]); i++)
		if (strcmp(json_object_get_string(v), langs[i]) == 0)
			return NULL;
	return "Must be one of: de, en, es, fr, ar.";
}

static const char *
chk_accounts(json_object *v)
{
	json_object *e, *id;
	size_t i;

	if (!json_object_is_type(v, json_type_array))
		return "Not a valid list.";
	for (i = 0; i < json_object_array_length(v); i++) {
		e = json_object_array_get_idx(v, i);
		if (!json_object_is_type(e, json_type_object) ||
		    json_object_object_length(e) != 1 ||
		    !json_object_object_get_ex(e, "id", &id) ||
		    !json_object_is_type(id, json_type_string))
			return "Each entry must be an object {\"id\": string}.";
	}
	return NULL;
}

static const char *
chk_account_types(json_object *v)
{
	size_t i;

	if (!json_object_is_type(v, json_type_array))
		return "Not a valid list.";
	for (i = 0; i < json_object_array_length(v); i++)
		if (chk_string(json_object_array_get_idx(v, i)) != NULL)
			return "Each entry must be a string.";
	return NULL;
}

static const char *
chk_sync_period(json_object *v)
{
	int64_t n;

	if (!json_object_is_type(v, json_type_int))
		return "Not a valid integer.";
	n = json_object_get_int64(v);
	return n >= 1 && n <= 730 ? NULL : "Must be between 1 and 730.";
}

static const struct field_rule flow_fields[] = {
	{ "redirect_uri", chk_redirect_uri },
	{ "user_id", chk_user_id },
	{ "state", chk_state },
	{ "tracking_id", chk_string },
	{ "language", chk_language },
	{ "provider_id", chk_string },
	{ "accounts", chk_accounts },
	{ "account_types", chk_account_types },
	{ "allow_multi_selection", chk_bool },
	{ "sync_period", chk_sync_period },
	{ "save_secrets", chk_bool },
};

static void
field_error(json_object *data, const char *field, const char *msg)
{
	json_object *arr = json_object_new_array();

	json_object_array_add(arr, json_object_new_string(msg));
	json_object_object_add(data, field, arr);
}

/* Collects schema errors finX-style: {"field": ["reason"]}. */
static json_object *
flow_validate(json_object *o)
{
	json_object *data = json_object_new_object(), *v;
	const char *msg;
	size_t i, nf = sizeof(flow_fields) / sizeof(flow_fields[0]);

	json_object_object_foreach(o, key, val)
	{
		for (i = 0; i < nf; i++)
			if (strcmp(key, flow_fields[i].name) == 0)
				break;
		if (i == nf)
			field_error(data, key, "Unknown field.");
		else if ((msg = flow_fields[i].check(val)) != NULL)
			field_error(data, key, msg);
	}
	if (!json_object_object_get_ex(o, "redirect_uri", &v))
		field_error(data, "redirect_uri",
		    "Missing data for required field.");
	if (!json_object_object_get_ex(o, "user_id", &v))
		field_error(data, "user_id",
		    "Missing data for required field.");
	if (json_object_object_length(data) == 0) {
		json_object_put(data);
		return NULL;
	}
	return data;
}

static const char *
jstr(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		return NULL;
	return json_object_get_string(v);
}

/* Creates the flow; lock held. Returns the response object. */
static json_object *
flow_create(json_object *o)
{
	struct sbx_flow *f = xcalloc(1, sizeof(*f));
	json_object *resp = json_object_new_object();
	struct sbx_buf loc;
	const char *state = jstr(o, "state");

	rand_uuid(f->id);
	f->redirect_uri = xstrdup(jstr(o, "redirect_uri"));
	f->state = state != NULL ? xstrdup(state) : NULL;
	f->client_id = xstrdup(sbx.client_id);
	f->user = data_user_get(jstr(o, "user_id"));
	f->created_ms = now_ms();
	do {
		free(f->widget_token);
		f->widget_token = rand_token(WIDGET_TOKEN_LEN, "eyJ");
	} while (map_get(&sbx.widgets, f->widget_token) != NULL);
	vec_push(&sbx.flows, f);
	map_put(&sbx.widgets, f->widget_token, f);
	sbx_count(STAT_FLOWS_CREATED, 1);

	buf_init(&loc);
	buf_addf(&loc, "%s/widget?token=%s", sbx.public_url, f->widget_token);
	json_object_object_add(resp, "location",
	    json_object_new_string(buf_str(&loc)));
	json_object_object_add(resp, "id", json_object_new_string(f->id));
	buf_free(&loc);
	return resp;
}

enum MHD_Result
h_ongoing_access(struct sbx_req *r)
{
	json_object *o, *data, *resp;
	char err[256];

	if (!http_client_ok(r))
		return http_reply_client_auth(r);
	if (http_body_json(r, &o, err, sizeof(err)) == -1)
		return http_reply_error(r, MHD_HTTP_BAD_REQUEST, 1000,
		    "Request body doesn't match input schema.", err, NULL);
	if ((data = flow_validate(o)) != NULL) {
		json_object_put(o);
		return http_reply_error(r, MHD_HTTP_BAD_REQUEST, 1000,
		    "Request body doesn't match input schema.",
		    "Invalid fields", data);
	}
	sbx_lock();
	resp = flow_create(o);
	sbx_unlock();
	json_object_put(o);
	return http_reply_json(r, MHD_HTTP_OK, resp);
}

static void
loc_param(struct sbx_buf *b, const char *name, const char *value)
{
	char last = b->len ? b->p[b->len - 1] : '\0';

	if (last != '?' && last != '&')
		buf_adds(b, strchr(buf_str(b), '?') != NULL ? "&" : "?");
	buf_adds(b, name);
	buf_adds(b, "=");
	url_encode(b, value);
}

/* Builds the redirect for a decision; lock held. */
static void
widget_location(struct sbx_flow *f, const char *decision, struct sbx_buf *loc)
{
	struct sbx_token *code;

	buf_adds(loc, f->redirect_uri);
	loc_param(loc, "flow_id", f->id);
	if (strcmp(decision, "approve") == 0) {
		code = sbx_token_new(TOK_CODE, sbx.cfg.code_ttl, NULL);
		code->flow = f;
		loc_param(loc, "code", code->value);
		loc_param(loc, "success", "true");
		if (strcmp(sbx.cfg.cancel_param, "abort") == 0)
			loc_param(loc, "abort", "false");
	} else {
		loc_param(loc, "success", "false");
		if (strcmp(decision, "cancel") == 0)
			loc_param(loc, sbx.cfg.cancel_param, "true");
	}
	if (f->state != NULL)
		loc_param(loc, "state", f->state);
}

static char *
widget_page(const char *token)
{
	static const char *const decisions[] = { "approve", "cancel", "fail" };
	struct sbx_buf b;
	size_t i;

	buf_init(&b);
	buf_adds(&b,
	    "<!doctype html>\n<html><head><meta charset=\"utf-8\">"
	    "<title>finX sandbox widget</title></head><body>\n"
	    "<h1>finX sandbox widget</h1>\n<ul>\n");
	for (i = 0; i < 3; i++)
		buf_addf(&b,
		    "<li><a id=\"%s\" href=\"?token=%s&amp;decision="
		    "%s\">%s</a></li>\n",
		    decisions[i], token, decisions[i], decisions[i]);
	buf_adds(&b, "</ul>\n</body></html>\n");
	return buf_steal(&b);
}

enum MHD_Result
h_widget(struct sbx_req *r)
{
	const char *token = http_arg(r, "token");
	const char *decision = http_arg(r, "decision");
	struct sbx_flow *f;
	struct sbx_buf loc;
	enum MHD_Result ret;
	bool gone = false;
	char *page;

	if (decision != NULL && strcmp(decision, "approve") != 0 &&
	    strcmp(decision, "cancel") != 0 && strcmp(decision, "fail") != 0)
		return http_reply_html(r, MHD_HTTP_BAD_REQUEST,
		    "<!doctype html><p>Unknown decision.</p>\n");
	buf_init(&loc);
	sbx_lock();
	f = token != NULL ? map_get(&sbx.widgets, token) : NULL;
	if (f != NULL) {
		gone = f->decided;
		if (!gone && decision != NULL) {
			f->decided = true;
			widget_location(f, decision, &loc);
		}
	}
	sbx_unlock();
	if (f == NULL || gone) {
		buf_free(&loc);
		return http_reply_html(r,
		    f == NULL ? MHD_HTTP_NOT_FOUND : MHD_HTTP_GONE,
		    f == NULL ? "<!doctype html><p>Unknown widget token.</p>\n"
		              : "<!doctype html><p>This flow is already "
		                "finished.</p>\n");
	}
	if (decision == NULL) {
		page = widget_page(token);
		ret = http_reply_html(r, MHD_HTTP_OK, page);
		free(page);
		return ret;
	}
	http_header(r, MHD_HTTP_HEADER_LOCATION, buf_str(&loc));
	http_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	ret = http_reply_html(r, MHD_HTTP_FOUND,
	    "<!doctype html><p>Redirecting.</p>\n");
	buf_free(&loc);
	return ret;
}

/* Token endpoint errors in the configured style. */
static enum MHD_Result
token_error(struct sbx_req *r, enum sbx_err_style style, unsigned int status,
    const char *error, const char *desc)
{
	json_object *o;

	if (strcmp(error, "invalid_grant") == 0) {
		sbx_lock();
		sbx_count(STAT_INVALID_GRANTS, 1);
		sbx_unlock();
	}
	http_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (status == MHD_HTTP_UNAUTHORIZED)
		http_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
		    "Basic realm=\"finX\"");
	if (style == SBX_ERR_FINX)
		return http_reply_error(r, status,
		    status == MHD_HTTP_UNAUTHORIZED ? 1004 : 1000, error, desc,
		    NULL);
	o = json_object_new_object();
	json_object_object_add(o, "error", json_object_new_string(error));
	json_object_object_add(o, "error_description",
	    json_object_new_string(desc));
	return http_reply_json(r, status, o);
}

static json_object *
token_response(const struct sbx_token *at, const struct sbx_token *rt,
    const char *scope, long ttl)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "access_token",
	    json_object_new_string(at->value));
	json_object_object_add(o, "token_type",
	    json_object_new_string("Bearer"));
	json_object_object_add(o, "expires_in", json_object_new_int64(ttl));
	if (rt != NULL)
		json_object_object_add(o, "refresh_token",
		    json_object_new_string(rt->value));
	json_object_object_add(o, "scope", json_object_new_string(scope));
	return o;
}

/*
 * authorization_code grant; lock held. Returns the response or NULL with
 * *why set to the invalid_grant reason.
 */
static json_object *
grant_code(const char *code, const char *redirect_uri, const char **why)
{
	struct sbx_token *t = sbx_token_find(code), *at, *rt;
	struct sbx_grant *g;

	if (t == NULL || t->kind != TOK_CODE) {
		*why = "Unknown authorization code.";
		return NULL;
	}
	if (t->used) {
		/* RFC 6749 4.1.2: a replayed code revokes what it gave. */
		sbx_count(STAT_CODE_REPLAYS, 1);
		sbx_grant_revoke(t->grant, SBX_WHY_CODE_REPLAY);
		*why = "Authorization code was already used; grant revoked.";
		return NULL;
	}
	if (now_ms() >= t->expires_ms) {
		*why = "Authorization code expired.";
		return NULL;
	}
	if (strcmp(redirect_uri, t->flow->redirect_uri) != 0 ||
	    strcmp(sbx.client_id, t->flow->client_id) != 0) {
		*why = "redirect_uri does not match the flow's.";
		return NULL;
	}
	t->used = true;
	g = sbx_grant_new(t->flow->user, sbx.client_id);
	t->grant = g;
	at = sbx_token_new(TOK_ACCESS, sbx.cfg.access_ttl, g);
	rt = sbx_token_new(TOK_REFRESH, sbx.cfg.refresh_ttl, g);
	g->refresh = rt;
	sbx_count(STAT_CODES_EXCHANGED, 1);
	return token_response(at, rt, SBX_SCOPE, sbx.cfg.access_ttl);
}

/* True when this refresh answer rotates the refresh token; lock held. */
static bool
rotate_now(void)
{
	if (sbx.cfg.omit_refresh_token || !sbx.cfg.rotate)
		return false;
	if (sbx.cfg.rotate_percent >= 100)
		return true;
	return (long)(rand_u64() % 100) < sbx.cfg.rotate_percent;
}

/*
 * refresh_token grant; lock held. Same contract as grant_code, and the
 * outcome for the refresh log in *oc, the new refresh token (or NULL) in
 * *issued.
 */
static json_object *
grant_refresh(const char *value, const char *scope, const char **why,
    enum sbx_rf_outcome *oc, const char **issued)
{
	struct sbx_token *t = sbx_token_find(value), *at, *rt;
	struct sbx_grant *g;

	*oc = RFO_INVALID;
	*issued = NULL;
	if (t == NULL || t->kind != TOK_REFRESH) {
		*why = "Unknown refresh token.";
		return NULL;
	}
	g = t->grant;
	if (t->superseded) {
		/* RFC 9700 4.14.2: reuse of a rotated token kills the grant. */
		sbx_count(STAT_REFRESH_REUSE, 1);
		sbx_grant_revoke(g, SBX_WHY_SUPERSEDED);
		*oc = RFO_SUPERSEDED;
		*why = "Refresh token was superseded; grant revoked.";
		return NULL;
	}
	if (t->revoked || g->revoked) {
		*why = "Refresh token was revoked.";
		return NULL;
	}
	if (now_ms() >= t->expires_ms) {
		*why = "Refresh token expired.";
		return NULL;
	}
	at = sbx_token_new(TOK_ACCESS, sbx.cfg.access_ttl, g);
	rt = NULL;
	*oc = RFO_NOT_ROTATED;
	if (rotate_now()) {
		rt = sbx_token_new(TOK_REFRESH, sbx.cfg.refresh_ttl, g);
		t->superseded = true;
		g->refresh = rt;
		*oc = RFO_ROTATED;
		*issued = rt->value;
	} else if (!sbx.cfg.omit_refresh_token && !sbx.cfg.rotate)
		rt = t; /* rotation off: the same token again */
	/* else: omitted (--omit-refresh-token, or not this time) */
	g->refreshes++;
	sbx_count(STAT_REFRESHES, 1);
	return token_response(at, rt, scope != NULL ? scope : SBX_SCOPE,
	    sbx.cfg.access_ttl);
}

/* True when every space-separated word of s is one of SBX_SCOPE's. */
static bool
scope_ok(const char *s)
{
	const char *all = SBX_SCOPE, *p, *w;
	size_t n;
	bool any = false;

	for (p = s; *p != '\0'; p += n) {
		p += strspn(p, " ");
		if ((n = strcspn(p, " ")) == 0)
			break;
		for (w = all; *w != '\0';
		     w += strcspn(w, " "), w += strspn(w, " "))
			if (strcspn(w, " ") == n && strncmp(w, p, n) == 0)
				break;
		if (*w == '\0')
			return false;
		any = true;
	}
	return any;
}

static enum MHD_Result
token_grant(struct sbx_req *r, const struct sbx_params *ps,
    enum sbx_err_style style)
{
	const char *gt = params_get(ps, "grant_type");
	const char *why = NULL, *a, *b = NULL, *issued;
	enum sbx_rf_outcome oc;
	json_object *resp;

	if (gt == NULL)
		return token_error(r, style, 400, "invalid_request",
		    "grant_type is missing.");
	if (strcmp(gt, "authorization_code") == 0) {
		a = params_get(ps, "code");
		b = params_get(ps, "redirect_uri");
		if (a == NULL || b == NULL)
			return token_error(r, style, 400, "invalid_request",
			    "code and redirect_uri are required.");
		sbx_lock();
		resp = grant_code(a, b, &why);
		sbx_unlock();
	} else if (strcmp(gt, "refresh_token") == 0) {
		a = params_get(ps, "refresh_token");
		b = params_get(ps, "scope");
		if (a == NULL)
			return token_error(r, style, 400, "invalid_request",
			    "refresh_token is required.");
		if (b != NULL && !scope_ok(b))
			return token_error(r, style, 400, "invalid_scope",
			    "scope is broader than the grant's.");
		sbx_lock();
		resp = grant_refresh(a, b, &why, &oc, &issued);
		sbx_refresh_acted(r->rf_seq, oc, issued);
		sbx_unlock();
	} else
		return token_error(r, style, 400, "unsupported_grant_type",
		    "Only authorization_code and refresh_token are supported.");
	if (resp == NULL)
		return token_error(r, style, 400, "invalid_grant", why);
	http_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	http_header(r, MHD_HTTP_HEADER_PRAGMA, "no-cache");
	return http_reply_json(r, MHD_HTTP_OK, resp);
}

enum MHD_Result
h_token(struct sbx_req *r)
{
	struct sbx_params ps;
	enum http_body_kind kind;
	enum sbx_err_style style;
	enum MHD_Result ret;
	char err[256];

	sbx_lock();
	style = sbx.cfg.error_style;
	sbx_unlock();
	if (!http_client_ok(r))
		return token_error(r, style, MHD_HTTP_UNAUTHORIZED,
		    "invalid_client", "Client authentication failed.");
	if (http_body_params(r, &ps, &kind, err, sizeof(err)) == -1)
		return token_error(r, style, 400, "invalid_request", err);
	sbx_lock();
	if (kind == BODY_JSON)
		sbx_count(STAT_TOKEN_REQUESTS_JSON, 1);
	else if (kind == BODY_FORM)
		sbx_count(STAT_TOKEN_REQUESTS_FORM, 1);
	sbx_unlock();
	ret = token_grant(r, &ps, style);
	params_free(&ps);
	return ret;
}

/* Revokes what value names; lock held. True when something changed. */
static bool
revoke_token(const char *value)
{
	struct sbx_token *t = sbx_token_find(value);

	if (t == NULL || t->grant == NULL || t->kind == TOK_CODE)
		return false;
	if (t->kind == TOK_REFRESH) {
		if (t->grant->revoked)
			return false;
		sbx_grant_revoke(t->grant, SBX_WHY_AUTH_REVOKE);
		return true;
	}
	if (t->revoked || t->grant->revoked)
		return false;
	t->revoked = true;
	return true;
}

enum MHD_Result
h_revoke(struct sbx_req *r)
{
	struct sbx_params ps;
	enum http_body_kind kind;
	const char *token;
	char err[256];

	if (!http_client_ok(r))
		return http_reply_client_auth(r);
	if (strcmp(r->method, "GET") == 0)
		http_query_params(r, &ps);
	else if (http_body_params(r, &ps, &kind, err, sizeof(err)) == -1)
		return http_reply_error(r, MHD_HTTP_BAD_REQUEST, 1000,
		    "Invalid request", err, NULL);
	if ((token = params_get(&ps, "token")) == NULL || *token == '\0') {
		params_free(&ps);
		return http_reply_error(r, MHD_HTTP_BAD_REQUEST, 1000,
		    "Invalid request", "token is required", NULL);
	}
	sbx_lock();
	if (revoke_token(token))
		sbx_count(STAT_REVOCATIONS, 1);
	sbx_unlock();
	params_free(&ps);
	return http_reply_json(r, MHD_HTTP_OK, json_object_new_object());
}
