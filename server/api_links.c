/*
 * Widget links: POST /v1/links validates the partner's request, makes a
 * fresh state, asks finX for a flow and stores the link; GET /start/{id}
 * binds the browser (cookie) and sends it on to the widget.
 */
#include "api.h"

#include <string.h>

#include <openssl/crypto.h>

#include "db.h"
#include "encode.h"
#include "finx.h"
#include "log.h"
#include "mem.h"
#include "secret.h"
#include "store_links.h"
#include "text.h"

static const char *const languages[] = { "de", "en", "es", "fr", "ar", NULL };

/* The checks of the optional widget fields: NULL when v will do, else
 * why not. */
static const char *
check_language(json_object *v)
{
	const char *s = api_json_text(v, 8);
	size_t i;

	if (s == NULL)
		return "language must be a string";
	for (i = 0; languages[i] && strcmp(languages[i], s); i++)
		;
	if (languages[i] == NULL)
		return "language must be one of de, en, es, fr, ar";
	return NULL;
}

static const char *
check_id_text(json_object *v)
{
	if (api_json_text(v, 255) == NULL)
		return "provider_id and tracking_id must be strings of 1 to 255 "
		       "characters";
	return NULL;
}

static const char *
check_bool(json_object *v)
{
	if (!json_object_is_type(v, json_type_boolean))
		return "allow_multi_selection and save_secrets must be booleans";
	return NULL;
}

static const char *
check_sync_period(json_object *v)
{
	int64_t p = json_object_get_int64(v);

	if (!json_object_is_type(v, json_type_int) || p < 1 || p > 730)
		return "sync_period must be a whole number of days from 1 to "
		       "730";
	return NULL;
}

/* An entry of accounts: an IBAN, or {"id": IBAN}; NULL when neither. */
static json_object *
account_id(json_object *e)
{
	json_object *id;

	if (!json_object_is_type(e, json_type_object))
		return e;
	if (json_object_object_length(e) != 1 ||
	    !json_object_object_get_ex(e, "id", &id))
		return NULL;
	return id;
}

/* accounts (accounts true) or account_types: arrays of short strings. */
static const char *
check_list(json_object *v, bool accounts)
{
	size_t i, n;

	if (!json_object_is_type(v, json_type_array) ||
	    (n = json_object_array_length(v)) > 100)
		return "accounts and account_types must be arrays of at most "
		       "100 entries";
	for (i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(v, i);

		if (accounts && (e = account_id(e)) == NULL)
			return "accounts entries must be {\"id\": \"<IBAN>\"}";
		if (api_json_text(e, 64) == NULL)
			return "accounts and account_types entries must be "
			       "strings of 1 to 64 characters";
	}
	return NULL;
}

static const char *
check_accounts(json_object *v)
{
	return check_list(v, true);
}

static const char *
check_account_types(json_object *v)
{
	return check_list(v, false);
}

/* finX wants accounts as objects; plain IBAN strings are accepted too. */
static json_object *
accounts_to_finx(json_object *v)
{
	json_object *arr = json_object_new_array();
	size_t i, n = json_object_array_length(v);

	for (i = 0; i < n; i++) {
		json_object *e = account_id(json_object_array_get_idx(v, i));
		json_object *o = json_object_new_object();

		json_object_object_add(o, "id",
		    json_object_new_string(json_object_get_string(e)));
		json_object_array_add(arr, o);
	}
	return arr;
}

/* The widget fields a link request may carry, and how each goes to
 * finX (to_finx NULL: as given). */
static const struct widget_field {
	const char *key;
	const char *(*check)(json_object *v);
	json_object *(*to_finx)(json_object *v);
} widget_fields[] = {
	{ "language", check_language, NULL },
	{ "provider_id", check_id_text, NULL },
	{ "accounts", check_accounts, accounts_to_finx },
	{ "account_types", check_account_types, NULL },
	{ "allow_multi_selection", check_bool, NULL },
	{ "sync_period", check_sync_period, NULL },
	{ "save_secrets", check_bool, NULL },
	{ "tracking_id", check_id_text, NULL },
	{ NULL, NULL, NULL },
};

/* Check one widget field of the body (v: its value, NULL for JSON null,
 * which is left out) and copy it into the finX request out. */
static const char *
copy_field(const char *key, json_object *v, json_object *out)
{
	const struct widget_field *f;
	const char *why;

	for (f = widget_fields; f->key && strcmp(f->key, key); f++)
		;
	if (f->key == NULL)
		return "unknown field in request body";
	if (v == NULL)
		return NULL;
	if ((why = f->check(v)) != NULL)
		return why;
	json_object_object_add(out, key,
	    f->to_finx ? f->to_finx(v) : json_object_get(v));
	return NULL;
}

/* return_url of the body, when there: a string under an allowed prefix. */
static bool
check_return_url(struct req *r, json_object *body, const char **return_url,
    enum MHD_Result *ret)
{
	json_object *v;

	if (!json_object_object_get_ex(body, "return_url", &v) || v == NULL)
		return true;
	if ((*return_url = api_json_text(v, 2048)) == NULL) {
		*ret = api_fail(r, ST_INVALID_REQUEST,
		    "return_url must be a string");
		return false;
	}
	if (strlen(*return_url) > 2048 || strchr(*return_url, '#') ||
	    !config_return_url_allowed(api_cfg, *return_url)) {
		*ret = api_fail(r, ST_RETURN_URL_NOT_ALLOWED, NULL);
		return false;
	}
	return true;
}

bool
api_link_body(struct req *r, json_object *body, const char **return_url,
    json_object **fields, enum MHD_Result *ret)
{
	const char *why;

	*fields = json_object_new_object();
	if (!check_return_url(r, body, return_url, ret))
		return false;
	json_object_object_foreach(body, key, val) {
		if (strcmp(key, "user_id") == 0 ||
		    strcmp(key, "return_url") == 0)
			continue;
		if ((why = copy_field(key, val, *fields)) != NULL) {
			*ret = api_fail(r, ST_INVALID_REQUEST, why);
			return false;
		}
	}
	return true;
}

/* The finX flow request: the widget fields, the state, where to return. */
static json_object *
flow_request(json_object *fields, const char *state, const char *user_id)
{
	json_object *freq = json_object_new_object();

	json_object_object_foreach(fields, k, v)
	    json_object_object_add(freq, k, json_object_get(v));
	json_object_object_add(freq, "state", json_object_new_string(state));
	json_object_object_add(freq, "redirect_uri",
	    json_object_new_string(api_cfg->redirect_uri));
	json_object_object_add(freq, "user_id", json_object_new_string(user_id));
	return freq;
}

/* Put freq with its state wiped (its other values are the caller's). */
static void
flow_request_free(json_object *freq)
{
	json_object *st;

	if (json_object_object_get_ex(freq, "state", &st))
		wipe_json(st);
	json_object_put(freq);
}

static void
add_str(json_object *o, const char *key, const char *v)
{
	json_object_object_add(o, key, v ? json_object_new_string(v) : NULL);
}

/* 201 for the link stored as l, expiring at expires_at. */
static enum MHD_Result
link_created(struct req *r, const struct store_link_new *l,
    const char *expires_at)
{
	json_object *o = json_object_new_object();
	char *start_url = xasprintf("%s/start/%s", api_cfg->public_url, l->id);

	add_str(o, "link_id", l->id);
	add_str(o, "status", "pending");
	add_str(o, "location", l->location);
	add_str(o, "start_url", start_url);
	add_str(o, "flow_id", l->flow_id);
	add_str(o, "expires_at", expires_at);
	if (l->connection_id != NULL)
		add_str(o, "connection_id", l->connection_id);
	free(start_url);
	log_kv(LOG_INFO, "link created", "link_id", l->id, "kind", l->kind,
	    NULL);
	return http_json(r, MHD_HTTP_CREATED, o);
}

/* Store link l (finX's flow made) on a bulk connection, and answer. */
static enum MHD_Result
link_store(struct req *r, const struct store_link_new *l)
{
	PGconn *c = db_acquire_bulk();
	char *expires_at = NULL;
	enum MHD_Result ret;
	bool ok;

	if (c == NULL)
		db_fail_unavailable();
	ok = c != NULL && store_link_create(c, l, &expires_at);
	db_release(c);
	ret = ok ? link_created(r, l, expires_at) : api_fail_db(r);
	free(expires_at);
	return ret;
}

enum MHD_Result
api_open_link(struct req *r, const char *user_id, const char *return_url,
    json_object *fields, const char *kind, const char *connection_id)
{
	struct store_link_new l = { .user_id = user_id,
		.api_key_id = r->key ? r->key->id : "",
		.return_url = return_url, .kind = kind,
		.connection_id = connection_id, .ttl_s = api_cfg->state_ttl };
	struct finx_error err = { 0 };
	char *state = state_new(), *id, *flow_id = NULL, *location = NULL;
	json_object *freq = flow_request(fields, state, user_id);
	enum MHD_Result ret;
	bool ok;

	sha256(state, strlen(state), l.state_hash);
	free_secret(state);
	ok = finx_create_flow(freq, &flow_id, &location, &err);
	flow_request_free(freq);
	if (!ok) {
		ret = api_fail_transport(r, status_of_finx(&err), err.message,
		    0, err.detail);
		finx_error_free(&err);
		return ret;
	}
	l.id = id = uuid_new();
	l.flow_id = flow_id;
	l.location = location;
	ret = link_store(r, &l);
	free_secret(location);
	free(flow_id);
	free(id);
	return ret;
}

enum MHD_Result
h_links_create(struct req *r)
{
	enum MHD_Result ret;
	json_object *body = http_body_object(r, &ret), *v, *fields = NULL;
	const char *user_id = NULL, *return_url = NULL;

	if (body == NULL)
		return ret;
	if (!json_object_object_get_ex(body, "user_id", &v) ||
	    (user_id = api_json_text(v, 255)) == NULL ||
	    !user_id_valid(user_id)) {
		ret = api_fail(r, ST_INVALID_REQUEST,
		    "user_id must be a string of 1 to 255 bytes of UTF-8 "
		    "without control characters");
		goto out;
	}
	if (api_link_body(r, body, &return_url, &fields, &ret))
		ret = api_open_link(r, user_id, return_url, fields, "connect",
		    NULL);
out:
	json_object_put(fields);
	json_object_put(body);
	return ret;
}

json_object *
api_link_json(const struct store_link_view *v)
{
	json_object *o = json_object_new_object();

	add_str(o, "link_id", v->id);
	add_str(o, "user_id", v->user_id);
	add_str(o, "status", v->status);
	add_str(o, "connection_id", v->connection_id);
	add_str(o, "reason", v->reason);
	add_str(o, "kind", v->kind);
	add_str(o, "created_at", v->created_at);
	add_str(o, "expires_at", v->expires_at);
	add_str(o, "completed_at", v->completed_at);
	return o;
}

enum MHD_Result
h_links_get(struct req *r)
{
	const char *id = r->params[0];
	struct store_link_view v;
	enum store_link_res k;
	enum MHD_Result ret;
	json_object *o;
	PGconn *c;

	if (!api_uuid_param(r, 0))
		return api_fail(r, ST_NOT_FOUND, "no such link");
	if ((c = api_db(r, &ret)) == NULL)
		return ret;
	k = store_link_get(c, id, &v);
	db_release(c);
	if (k == SL_DB_ERROR)
		return api_fail_db(r);
	if (k != SL_OK)
		return api_fail(r, ST_NOT_FOUND, "no such link");
	o = api_link_json(&v);
	store_link_view_free(&v);
	return http_json(r, MHD_HTTP_OK, o);
}

/* Cookie name for one link's browser binding. */
char *
link_cookie_name(const char *link_id)
{
	char *n = xasprintf("finxd_bind_%s", link_id), *p, *q;

	for (p = q = n; *p; p++)
		if (*p != '-')
			*q++ = *p;
	*q = '\0';
	return n;
}

/* A fresh binding cookie: its value (free_secret) and its header, set
 * on the redirect (free_secret). */
static char *
binding_cookie_new(const char *id, char **header)
{
	unsigned char rnd[32];
	char *name = link_cookie_name(id), *value;

	rand_bytes(rnd, sizeof(rnd));
	value = b64url_encode(rnd, sizeof(rnd));
	OPENSSL_cleanse(rnd, sizeof(rnd));
	*header = xasprintf("%s=%s; Path=/callback; HttpOnly; SameSite=Lax; "
			    "Max-Age=%ld%s",
	    name, value, api_cfg->state_ttl,
	    api_cfg->public_https ? "; Secure" : "");
	free(name);
	return value;
}

/* The page for a link /start could not use. */
static enum MHD_Result
start_refused(struct req *r, const char *id, enum store_link_res k)
{
	if (k == SL_DB_ERROR) {
		log_kv(LOG_WARN, "start: database failed", "link_id", id,
		    "sqlstate", db_failure_sqlstate(), "db_error",
		    db_failure_message(), NULL);
		return http_page(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		    "Please try again", "The service is busy.");
	}
	if (k == SL_UNSEALED) {
		log_kv(LOG_ERROR, "cannot decrypt link location", "link_id", id,
		    NULL);
		return http_page(r, MHD_HTTP_INTERNAL_SERVER_ERROR,
		    "Something went wrong", "Please start again.");
	}
	return http_page(r, MHD_HTTP_NOT_FOUND, "Link not usable",
	    "This link is unknown, expired, already used, or was "
	    "opened in another browser. Please start again.");
}

enum MHD_Result
h_link_start(struct req *r)
{
	const char *id = r->params[0];
	char *location = NULL, *header = NULL, *value = NULL;
	enum store_link_res k;
	enum MHD_Result ret;
	PGconn *c;

	if (!api_uuid_param(r, 0))
		return http_page(r, MHD_HTTP_NOT_FOUND, "Link not found",
		    "This link does not exist.");
	if ((c = db_acquire()) == NULL)
		return http_page(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		    "Please try again", "The service is busy.");
	if (api_cfg->browser_binding)
		value = binding_cookie_new(id, &header);
	k = store_link_start(c, id, value, &location);
	db_release(c);
	free_secret(value);
	if (k == SL_OK)
		ret = http_redirect(r, location, header);
	else
		ret = start_refused(r, id, k);
	free_secret(header);
	free_secret(location);
	return ret;
}
