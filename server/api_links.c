/*
 * Widget links: POST /v1/links validates the partner's request, makes a
 * fresh state, asks finX for a flow and stores the link; GET /start/{id}
 * binds the browser (cookie) and sends it on to the widget.
 */
#include "api.h"

#include <string.h>

#include <openssl/crypto.h>

#include "crypto.h"
#include "db.h"
#include "encode.h"
#include "finx.h"
#include "log.h"
#include "mem.h"
#include "secret.h"
#include "text.h"

static const char *const languages[] = { "de", "en", "es", "fr", "ar", NULL };

/* Check one optional widget field and copy it into the finX request. */
static const char *
copy_field(json_object *body, const char *key, json_object *out)
{
	json_object *v;
	size_t i, n;

	if (!json_object_object_get_ex(body, key, &v) || v == NULL)
		return NULL;
	if (strcmp(key, "language") == 0) {
		const char *s = api_json_text(v, 8);

		if (s == NULL)
			return "language must be a string";
		for (i = 0; languages[i] && strcmp(languages[i], s); i++)
			;
		if (languages[i] == NULL)
			return "language must be one of de, en, es, fr, ar";
	} else if (strcmp(key, "provider_id") == 0 ||
	    strcmp(key, "tracking_id") == 0) {
		if (api_json_text(v, 255) == NULL)
			return "provider_id and tracking_id must be strings of "
			       "1 to 255 characters";
	} else if (strcmp(key, "allow_multi_selection") == 0 ||
	    strcmp(key, "save_secrets") == 0) {
		if (!json_object_is_type(v, json_type_boolean))
			return "allow_multi_selection and save_secrets must be "
			       "booleans";
	} else if (strcmp(key, "sync_period") == 0) {
		int64_t p = json_object_get_int64(v);

		if (!json_object_is_type(v, json_type_int) || p < 1 || p > 730)
			return "sync_period must be a whole number of days "
			       "from 1 to 730";
	} else if (strcmp(key, "account_types") == 0 ||
	    strcmp(key, "accounts") == 0) {
		bool accounts = key[7] == '\0';

		if (!json_object_is_type(v, json_type_array) ||
		    (n = json_object_array_length(v)) > 100)
			return "accounts and account_types must be arrays of at "
			       "most 100 entries";
		for (i = 0; i < n; i++) {
			json_object *e = json_object_array_get_idx(v, i), *id;

			if (accounts && json_object_is_type(e, json_type_object)) {
				if (json_object_object_length(e) != 1 ||
				    !json_object_object_get_ex(e, "id", &id))
					return "accounts entries must be "
					       "{\"id\": \"<IBAN>\"}";
				e = id;
			}
			if (api_json_text(e, 64) == NULL)
				return "accounts and account_types entries must "
				       "be strings of 1 to 64 characters";
		}
		if (accounts) {
			/* finX wants objects; accept plain IBAN strings too. */
			json_object *arr = json_object_new_array();

			for (i = 0; i < n; i++) {
				json_object *e = json_object_array_get_idx(v, i);
				json_object *o = json_object_new_object(), *id;

				if (json_object_is_type(e, json_type_object) &&
				    json_object_object_get_ex(e, "id", &id))
					e = id;
				json_object_object_add(o, "id",
				    json_object_new_string(
					json_object_get_string(e)));
				json_object_array_add(arr, o);
			}
			json_object_object_add(out, key, arr);
			return NULL;
		}
	}
	json_object_object_add(out, key, json_object_get(v));
	return NULL;
}

static const char *const widget_fields[] = { "language", "provider_id",
	"accounts", "account_types", "allow_multi_selection", "sync_period",
	"save_secrets", "tracking_id", NULL };

bool
api_link_body(struct req *r, json_object *body, const char **return_url,
    json_object **fields, enum MHD_Result *ret)
{
	const char *why;
	json_object *v;
	size_t i;

	*fields = json_object_new_object();
	if (json_object_object_get_ex(body, "return_url", &v) && v != NULL) {
		if ((*return_url = api_json_text(v, 2048)) == NULL) {
			*ret = http_error(r, MHD_HTTP_BAD_REQUEST,
			    "invalid_request", "return_url must be a string");
			return false;
		}
		if (strlen(*return_url) > 2048 || strchr(*return_url, '#') ||
		    !config_return_url_allowed(api_cfg, *return_url)) {
			*ret = http_error(r, MHD_HTTP_BAD_REQUEST,
			    "return_url_not_allowed",
			    "return_url is not under an allowed prefix "
			    "(FINXD_RETURN_URLS)");
			return false;
		}
	}
	json_object_object_foreach(body, key, val) {
		(void)val;
		if (strcmp(key, "user_id") == 0 ||
		    strcmp(key, "return_url") == 0)
			continue;
		for (i = 0; widget_fields[i] && strcmp(widget_fields[i], key);
		     i++)
			;
		if (widget_fields[i] == NULL) {
			*ret = http_error(r, MHD_HTTP_BAD_REQUEST,
			    "invalid_request", "unknown field in request body");
			return false;
		}
		if ((why = copy_field(body, key, *fields)) != NULL) {
			*ret = http_error(r, MHD_HTTP_BAD_REQUEST,
			    "invalid_request", "%s", why);
			return false;
		}
	}
	return true;
}

static enum MHD_Result
finx_failure(struct req *r, struct finx_error *err)
{
	enum MHD_Result ret;

	if (err->transport || err->http_status == 503 ||
	    err->http_status == 429)
		ret = http_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		    "finx_unavailable", "finX is not available: %s",
		    err->message ? err->message : "no answer");
	else
		ret = http_error(r, MHD_HTTP_BAD_GATEWAY, "finx_error",
		    "finX refused the request: %s",
		    err->message ? err->message : "no detail");
	finx_error_free(err);
	return ret;
}

enum MHD_Result
api_open_link(struct req *r, const char *user_id, const char *return_url,
    json_object *fields, const char *kind, const char *connection_id)
{
	struct finx_error err = { 0 };
	json_object *freq = json_object_new_object(), *o;
	char *state = state_new(), *link_id = uuid_new(), *flow_id = NULL;
	char *location = NULL, *sealed, *aad, *start_url, ttl[24];
	unsigned char hash[32];
	enum MHD_Result ret;
	PGconn *c;
	PGresult *res = NULL;

	json_object_object_foreach(fields, k, v)
	    json_object_object_add(freq, k, json_object_get(v));
	json_object_object_add(freq, "state", json_object_new_string(state));
	json_object_object_add(freq, "redirect_uri",
	    json_object_new_string(api_cfg->redirect_uri));
	json_object_object_add(freq, "user_id", json_object_new_string(user_id));
	sha256(state, strlen(state), hash);
	free_secret(state);
	if (!finx_create_flow(freq, &flow_id, &location, &err)) {
		json_object_put(freq);
		free(link_id);
		log_kv(LOG_WARN, "finX flow creation failed", "error",
		    err.message, NULL);
		return finx_failure(r, &err);
	}
	json_object_put(freq);
	aad = crypto_aad("links", link_id, "location");
	sealed = crypto_seal(location, aad);
	free(aad);
	snprintf(ttl, sizeof(ttl), "%ld", api_cfg->state_ttl);
	if ((c = db_acquire_bulk()) == NULL)
		ret = http_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		    "database_unavailable", "the database is not reachable");
	else {
		char hash_hex[2 * 32 + 3] = "\\x";
		char *hx = hex_encode(hash, 32);
		const char *p[9] = { link_id, hash_hex, user_id,
			r->key ? r->key->id : "", return_url, kind, flow_id,
			sealed, ttl };
		const char *p2[10];

		memcpy(hash_hex + 2, hx, 65);
		free(hx);
		memcpy(p2, p, sizeof(p));
		p2[9] = connection_id;
		res = db_exec(c,
		    "INSERT INTO links (id, state_hash, user_id, api_key_id, "
		    "return_url, kind, flow_id, location, expires_at, "
		    "connection_id) VALUES ($1, $2::bytea, $3, $4, $5, $6, $7, "
		    "$8, now() + make_interval(secs => $9::int), $10) "
		    "RETURNING " SQL_TS("expires_at"),
		    10, p2);
		db_release(c);
		if (res == NULL)
			ret = http_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
			    "database_unavailable", "could not store the link");
	}
	if (res != NULL) {
		o = json_object_new_object();
		start_url = xasprintf("%s/start/%s", api_cfg->public_url,
		    link_id);
		json_object_object_add(o, "link_id",
		    json_object_new_string(link_id));
		json_object_object_add(o, "status",
		    json_object_new_string("pending"));
		json_object_object_add(o, "location",
		    json_object_new_string(location));
		json_object_object_add(o, "start_url",
		    json_object_new_string(start_url));
		json_object_object_add(o, "flow_id",
		    json_object_new_string(flow_id));
		json_add_col(o, "expires_at", res, 0, 0);
		if (connection_id != NULL)
			json_object_object_add(o, "connection_id",
			    json_object_new_string(connection_id));
		free(start_url);
		PQclear(res);
		log_kv(LOG_INFO, "link created", "link_id", link_id, "kind",
		    kind, NULL);
		ret = http_json(r, MHD_HTTP_CREATED, o);
	}
	free(sealed);
	free_secret(location);
	free(flow_id);
	free(link_id);
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
		ret = http_error(r, MHD_HTTP_BAD_REQUEST, "invalid_request",
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

enum MHD_Result
h_links_get(struct req *r)
{
	const char *id = r->params[0];
	enum MHD_Result ret;
	json_object *o;
	PGresult *res;
	PGconn *c;

	if (!uuid_valid(id))
		return http_error(r, MHD_HTTP_NOT_FOUND, "not_found",
		    "no such link");
	if ((c = api_db(r, &ret)) == NULL)
		return ret;
	res = db_exec_prepared(c, "links_get",
	    "SELECT id, user_id, CASE WHEN status = 'pending' AND "
	    "expires_at <= now() THEN 'expired' ELSE status END, "
	    "connection_id, reason, kind, " SQL_TS("created_at") ", "
	    SQL_TS("expires_at") ", " SQL_TS("completed_at")
	    " FROM links WHERE id = $1",
	    1, (const char *[]){ id });
	db_release(c);
	if (res == NULL)
		return http_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		    "database_unavailable", "the database is not reachable");
	if (PQntuples(res) == 0) {
		PQclear(res);
		return http_error(r, MHD_HTTP_NOT_FOUND, "not_found",
		    "no such link");
	}
	o = json_object_new_object();
	json_add_col(o, "link_id", res, 0, 0);
	json_add_col(o, "user_id", res, 0, 1);
	json_add_col(o, "status", res, 0, 2);
	json_add_col(o, "connection_id", res, 0, 3);
	json_add_col(o, "reason", res, 0, 4);
	json_add_col(o, "kind", res, 0, 5);
	json_add_col(o, "created_at", res, 0, 6);
	json_add_col(o, "expires_at", res, 0, 7);
	json_add_col(o, "completed_at", res, 0, 8);
	PQclear(res);
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

enum MHD_Result
h_link_start(struct req *r)
{
	const char *id = r->params[0];
	char *location = NULL, *aad, *cookie = NULL, *name, *value = NULL;
	unsigned char rnd[32], h[32];
	enum MHD_Result ret;
	PGresult *res;
	PGconn *c;

	if (!uuid_valid(id))
		return http_page(r, MHD_HTTP_NOT_FOUND, "Link not found",
		    "This link does not exist.");
	if ((c = db_acquire()) == NULL)
		return http_page(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		    "Please try again", "The service is busy.");
	name = link_cookie_name(id);
	rnd[0] = 0;
	if (api_cfg->browser_binding) {
		char hx[67] = "\\x", *hexs;

		rand_bytes(rnd, sizeof(rnd));
		value = b64url_encode(rnd, sizeof(rnd));
		sha256(value, strlen(value), h);
		hexs = hex_encode(h, 32);
		memcpy(hx + 2, hexs, 65);
		free(hexs);
		/* Bind once: the first browser through start_url owns it. */
		res = db_exec(c,
		    "UPDATE links SET binding_hash = $2::bytea WHERE id = $1 "
		    "AND status = 'pending' AND used_at IS NULL AND "
		    "expires_at > now() AND binding_hash IS NULL "
		    "RETURNING location",
		    2, (const char *[]){ id, hx });
	} else
		res = db_exec(c,
		    "SELECT location FROM links WHERE id = $1 AND "
		    "status = 'pending' AND used_at IS NULL AND "
		    "expires_at > now()",
		    1, (const char *[]){ id });
	db_release(c);
	OPENSSL_cleanse(rnd, sizeof(rnd));
	if (res == NULL || PQntuples(res) == 0) {
		PQclear(res);
		free(name);
		free_secret(value);
		return http_page(r, MHD_HTTP_NOT_FOUND, "Link not usable",
		    "This link is unknown, expired, already used, or was "
		    "opened in another browser. Please start again.");
	}
	aad = crypto_aad("links", id, "location");
	location = crypto_open(PQgetvalue(res, 0, 0), aad, NULL);
	free(aad);
	PQclear(res);
	if (location == NULL) {
		free(name);
		free_secret(value);
		log_kv(LOG_ERROR, "cannot decrypt link location", "link_id", id,
		    NULL);
		return http_page(r, MHD_HTTP_INTERNAL_SERVER_ERROR,
		    "Something went wrong", "Please start again.");
	}
	if (value != NULL)
		cookie = xasprintf("%s=%s; Path=/callback; HttpOnly; "
				   "SameSite=Lax; Max-Age=%ld%s",
		    name, value, api_cfg->state_ttl,
		    api_cfg->public_https ? "; Secure" : "");
	ret = http_redirect(r, location, cookie);
	free_secret(cookie);
	free_secret(value);
	free_secret(location);
	free(name);
	return ret;
}
