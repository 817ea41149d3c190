/*
 * /v1 connection endpoints: read (never a token), hand out an access
 * token, refresh, re-authenticate and delete.
 */
#include "api.h"

#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "db.h"
#include "log.h"
#include "mem.h"
#include "refresh.h"
#include "secret.h"
#include "text.h"
#include "tokens.h"

#define CONN_COLS                                                             \
	"id, user_id, status, status_reason, scope, "                         \
	SQL_TS("access_expires_at") ", " SQL_TS("refresh_obtained_at") ", "   \
	SQL_TS("refresh_expires_at") ", " SQL_TS("consent_expires_at") ", "   \
	SQL_TS("least(refresh_expires_at, consent_expires_at)") ", "          \
	SQL_TS("last_refresh_at") ", " SQL_TS("last_sync_at") ", "            \
	"last_error, consecutive_failures, " SQL_TS("created_at") ", "        \
	SQL_TS("connected_at") ", " SQL_TS("revoked_at")

static const char *const conn_keys[] = { "connection_id", "user_id",
	"status", "status_reason", "scope", "access_expires_at",
	"refresh_obtained_at", "refresh_expires_at", "consent_expires_at",
	"reauth_required_by", "last_refresh_at", "last_sync_at", "last_error",
	"consecutive_failures", "created_at", "connected_at", "revoked_at",
	NULL };

static json_object *
conn_json(const PGresult *res, int row)
{
	json_object *o = json_object_new_object();
	int i;

	for (i = 0; conn_keys[i] != NULL; i++) {
		if (strcmp(conn_keys[i], "consecutive_failures") == 0)
			json_object_object_add(o, conn_keys[i],
			    json_object_new_int64(db_long(res, row, i, 0)));
		else
			json_add_col(o, conn_keys[i], res, row, i);
	}
	return o;
}

/* Fetch one connection as JSON; NULL with *ret queued on 404/503. */
static json_object *
load_conn(struct req *r, const char *id, enum MHD_Result *ret)
{
	PGresult *res;
	PGconn *c;
	json_object *o;

	if (!uuid_valid(id)) {
		*ret = http_error(r, MHD_HTTP_NOT_FOUND, "not_found",
		    "no such connection");
		return NULL;
	}
	if ((c = api_db(r, ret)) == NULL)
		return NULL;
	res = db_exec(c, "SELECT " CONN_COLS " FROM connections WHERE id = $1",
	    1, (const char *[]){ id });
	db_release(c);
	if (res == NULL) {
		*ret = http_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		    "database_unavailable", "the database is not reachable");
		return NULL;
	}
	if (PQntuples(res) == 0) {
		PQclear(res);
		*ret = http_error(r, MHD_HTTP_NOT_FOUND, "not_found",
		    "no such connection");
		return NULL;
	}
	o = conn_json(res, 0);
	PQclear(res);
	return o;
}

enum MHD_Result
h_conn_get(struct req *r)
{
	enum MHD_Result ret;
	json_object *o = load_conn(r, r->params[0], &ret);

	return o ? http_json(r, MHD_HTTP_OK, o) : ret;
}

enum MHD_Result
h_user_conns(struct req *r)
{
	const char *user = r->params[0];
	enum MHD_Result ret;
	json_object *o, *arr;
	PGresult *res;
	PGconn *c;
	int i;

	if (!user_id_valid(user))
		return api_bad_user_id(r);
	if ((c = api_db(r, &ret)) == NULL)
		return ret;
	res = db_exec(c,
	    "SELECT " CONN_COLS " FROM connections WHERE user_id = $1 "
	    "ORDER BY created_at, id LIMIT 1000",
	    1, (const char *[]){ user });
	db_release(c);
	if (res == NULL)
		return http_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		    "database_unavailable", "the database is not reachable");
	arr = json_object_new_array();
	for (i = 0; i < PQntuples(res); i++)
		json_object_array_add(arr, conn_json(res, i));
	PQclear(res);
	o = json_object_new_object();
	json_object_object_add(o, "connections", arr);
	return http_json(r, MHD_HTTP_OK, o);
}

/* Map a refresh outcome that prevents an answer to an error reply. */
static enum MHD_Result
refresh_error(struct req *r, enum refresh_outcome o, const char *msg)
{
	switch (o) {
	case RF_NOT_FOUND:
		return http_error(r, MHD_HTTP_NOT_FOUND, "not_found",
		    "no such connection");
	case RF_INACTIVE:
		return http_error(r, MHD_HTTP_CONFLICT, "connection_not_active",
		    "the connection is not active; see its status");
	case RF_INVALID_GRANT:
		return http_error(r, MHD_HTTP_CONFLICT, "reauth_required",
		    "finX rejected the refresh token; the user must "
		    "re-authenticate (POST /v1/connections/{id}/reauth)");
	case RF_TRANSIENT:
		return http_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		    "finx_unavailable", "finX is not available: %s",
		    msg ? msg : "no answer");
	case RF_DECRYPT:
		return http_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR,
		    "decrypt_failed", "the stored token cannot be decrypted "
				      "with the configured keys "
				      "(FINXD_TOKEN_KEYS)");
	case RF_BUSY:
		return http_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		    "refresh_in_progress", "a refresh of this connection is "
					   "still in progress; try again");
	case RF_REJECTED:
		return http_error(r, MHD_HTTP_BAD_GATEWAY, "finx_error",
		    "finX refused the refresh: %s", msg ? msg : "no detail");
	default:
		return http_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		    "database_unavailable", "the database is not reachable");
	}
}

enum MHD_Result
h_conn_token(struct req *r)
{
	const char *id = r->params[0];
	enum refresh_outcome o;
	enum MHD_Result ret;
	char *msg = NULL, *plain, *expires_at = NULL;
	json_object *out;

	if (!uuid_valid(id))
		return http_error(r, MHD_HTTP_NOT_FOUND, "not_found",
		    "no such connection");
	/* Refreshed first when inside the margin, under the shared lock. */
	plain = refresh_access_token(id, RT_HANDOUT, &o, &expires_at, &msg);
	if (plain == NULL) {
		ret = refresh_error(r, o, msg);
		free(msg);
		return ret;
	}
	free(msg);
	out = json_object_new_object();
	json_object_object_add(out, "access_token",
	    json_object_new_string(plain));
	json_object_object_add(out, "token_type",
	    json_object_new_string("Bearer"));
	json_object_object_add(out, "expires_at",
	    json_object_new_string(expires_at));
	free(expires_at);
	free_secret(plain);
	log_kv(LOG_INFO, "access token handed out", "connection_id", id,
	    "api_key", r->key ? r->key->id : NULL, NULL);
	return http_json(r, MHD_HTTP_OK, out);
}

enum MHD_Result
h_conn_refresh(struct req *r)
{
	const char *id = r->params[0];
	enum refresh_outcome o;
	enum MHD_Result ret;
	char *msg = NULL;
	json_object *c;

	if (!uuid_valid(id))
		return http_error(r, MHD_HTTP_NOT_FOUND, "not_found",
		    "no such connection");
	o = refresh_now(id, true, &msg);
	if (o != RF_OK && o != RF_NOT_DUE) {
		ret = refresh_error(r, o, msg);
		free(msg);
		return ret;
	}
	free(msg);
	if ((c = load_conn(r, id, &ret)) == NULL)
		return ret;
	return http_json(r, MHD_HTTP_OK, c);
}

/* Queue finX revocations for the connection's tokens (refresh first). */
bool
queue_revocations(PGconn *c, const char *id, const PGresult *row)
{
	static const char *const kinds[] = { "refresh", "access" };
	static const char *const cols[] = { "refresh_token", "access_token" };
	int i;

	for (i = 0; i < 2; i++) {
		char *aad, *plain;
		bool ok;

		if (PQgetisnull(row, 0, i))
			continue;
		aad = crypto_aad("connections", id, cols[i]);
		plain = crypto_open(PQgetvalue(row, 0, i), aad, NULL);
		free(aad);
		if (plain == NULL)
			continue; /* unreadable: nothing we could revoke */
		ok = tokens_queue_revocation(c, id, kinds[i], plain);
		free_secret(plain);
		if (!ok)
			return false;
	}
	return true;
}

enum MHD_Result
h_conn_delete(struct req *r)
{
	const char *id = r->params[0];
	enum MHD_Result ret;
	json_object *o;
	PGresult *res;
	PGconn *c;
	bool ok;

	if (!uuid_valid(id))
		return http_error(r, MHD_HTTP_NOT_FOUND, "not_found",
		    "no such connection");
	if ((c = api_db(r, &ret)) == NULL)
		return ret;
	/* The stored tokens are revoked; a refresh still in flight finds
	 * the connection revoked and sends its rotation to revocation too
	 * (REFRESH.md, "Storing a rotation"). */
	ok = db_cmd(c, "BEGIN", 0, NULL);
	res = ok ? db_exec(c,
		       "SELECT refresh_token, access_token, status FROM "
		       "connections WHERE id = $1 FOR NO KEY UPDATE",
		       1, (const char *[]){ id })
		 : NULL;
	if (res == NULL || PQntuples(res) == 0) {
		PQclear(PQexec(c, "ROLLBACK"));
		db_release(c);
		if (res == NULL)
			return http_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
			    "database_unavailable",
			    "the database is not reachable");
		PQclear(res);
		return http_error(r, MHD_HTTP_NOT_FOUND, "not_found",
		    "no such connection");
	}
	if (strcmp(PQgetvalue(res, 0, 2), "revoked") != 0) {
		ok = queue_revocations(c, id, res) &&
		    db_cmd(c,
			"UPDATE connections SET access_token = NULL, "
			"refresh_token = NULL, status = 'revoked', "
			"lease_holder = NULL, lease_until = NULL, "
			"lease_generation = NULL, "
			"status_reason = 'deleted', revoked_at = now(), "
			"updated_at = now() WHERE id = $1",
			1, (const char *[]){ id }) &&
		    db_cmd(c,
			"INSERT INTO events (kind, outcome, connection_id) "
			"VALUES ('delete', 'revoked', $1)",
			1, (const char *[]){ id });
	}
	PQclear(res);
	ok = ok && db_cmd(c, "COMMIT", 0, NULL);
	if (!ok) {
		PQclear(PQexec(c, "ROLLBACK"));
		db_release(c);
		return http_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		    "database_unavailable", "could not delete the connection");
	}
	/* Revoke at finX now; failures stay queued for the workers. */
	revocations_try(c, id);
	db_release(c);
	log_kv(LOG_INFO, "connection deleted", "connection_id", id, NULL);
	if ((o = load_conn(r, id, &ret)) == NULL)
		return ret;
	return http_json(r, MHD_HTTP_OK, o);
}

enum MHD_Result
h_conn_reauth(struct req *r)
{
	const char *id = r->params[0];
	enum MHD_Result ret;
	json_object *body = NULL, *fields = NULL, *c;
	const char *return_url = NULL, *user, *status;
	char *user_id;

	if ((c = load_conn(r, id, &ret)) == NULL)
		return ret;
	status = json_object_get_string(json_object_object_get(c, "status"));
	if (strcmp(status, "revoked") == 0) {
		json_object_put(c);
		return http_error(r, MHD_HTTP_CONFLICT, "connection_revoked",
		    "a deleted connection cannot be renewed; create a new "
		    "link");
	}
	user = json_object_get_string(json_object_object_get(c, "user_id"));
	user_id = xstrdup(user);
	json_object_put(c);
	if (r->body.len > 0) {
		if ((body = http_body_object(r, &ret)) == NULL) {
			free(user_id);
			return ret;
		}
		if (!api_link_body(r, body, &return_url, &fields, &ret))
			goto out;
	} else
		fields = json_object_new_object();
	ret = api_open_link(r, user_id, return_url, fields, "reauth", id);
out:
	json_object_put(fields);
	json_object_put(body);
	free(user_id);
	return ret;
}
