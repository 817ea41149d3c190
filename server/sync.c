/*
 * Manual syncs: POST /v1/connections/{id}/sync asks finX to synchronise
 * the connection's bank access now; the workers follow it until it ends
 * and then pull the new data.  Requests for one connection are
 * serialised with a transaction-scoped advisory lock, so a second request
 * while a sync runs gets the running one instead of a second finX sync.
 */
#include "api.h"
#include "sync.h"

#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "encode.h"
#include "finx.h"
#include "log.h"
#include "mem.h"
#include "refresh.h"
#include "secret.h"
#include "text.h"

#define SYNC_COLS                                                             \
	"id, connection_id, status, error::text, " SQL_TS("created_at") ", "  \
	SQL_TS("started_at") ", " SQL_TS("ended_at") ", "                     \
	SQL_TS("updated_at")

#define SYNC_OPEN "status NOT IN ('COMPLETED', 'FAILED', 'ERROR', 'CANCELLED')"

static json_object *
sync_json(const PGresult *r, int row)
{
	static const char *const keys[] = { "sync_id", "connection_id",
		"status", "error", "created_at", "started_at", "ended_at",
		"updated_at" };
	json_object *o = json_object_new_object();
	int i;

	for (i = 0; i < 8; i++) {
		if (i == 3 && !PQgetisnull(r, row, 3)) {
			json_object_object_add(o, "error",
			    json_tokener_parse(PQgetvalue(r, row, 3)));
			continue;
		}
		json_add_col(o, keys[i], r, row, i);
	}
	/* Our lower-case status vocabulary. */
	if (!PQgetisnull(r, row, 2)) {
		char *s = xstrdup(PQgetvalue(r, row, 2)), *p;

		for (p = s; *p; p++)
			*p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
		json_object_object_add(o, "status", json_object_new_string(s));
		free(s);
	}
	return o;
}

static enum MHD_Result
sync_reply(struct req *r, unsigned status, PGresult *res)
{
	json_object *o = sync_json(res, 0);

	PQclear(res);
	return http_json(r, status, o);
}

/* finX refused: 1020 (too many syncs) or 429 become our 429. */
static enum MHD_Result
sync_refused(struct req *r, struct finx_error *err)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	char ra[24];

	if (err->http_status == 429 ||
	    (err->code != NULL && strcmp(err->code, "1020") == 0)) {
		json_object *o = json_object_new_object(), *e;
		const char *s;

		e = json_object_new_object();
		json_object_object_add(e, "code",
		    json_object_new_string("too_many_syncs"));
		json_object_object_add(e, "message",
		    json_object_new_string("finX allows no more "
					   "synchronisations of this "
					   "connection right now"));
		json_object_object_add(o, "error", e);
		s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
		resp = MHD_create_response_from_buffer(strlen(s), (void *)s,
		    MHD_RESPMEM_MUST_COPY);
		json_object_put(o);
		snprintf(ra, sizeof(ra), "%ld",
		    err->retry_after > 0 ? err->retry_after : 3600);
		MHD_add_response_header(resp, "Retry-After", ra);
		MHD_add_response_header(resp, "Content-Type",
		    "application/json; charset=utf-8");
		ret = http_queue(r, MHD_HTTP_TOO_MANY_REQUESTS, resp);
	} else if (err->transport || err->transient)
		ret = http_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		    "finx_unavailable", "finX is not available: %s",
		    err->message ? err->message : "no answer");
	else
		ret = http_error(r, MHD_HTTP_BAD_GATEWAY, "finx_error",
		    "finX refused the sync: %s",
		    err->message ? err->message : "no detail");
	finx_error_free(err);
	return ret;
}

/* Start a finX sync for conn_id (lock held by the caller). */
static enum MHD_Result
start_sync(struct req *r, PGconn *c, const char *conn_id)
{
	struct finx_error err = { 0 };
	enum refresh_outcome o;
	json_object *body, *res = NULL, *v;
	char *token, *path, *access, *raw_access, *sid;
	const char *fsid, *fstatus;
	PGresult *q;

	q = db_exec(c,
	    "SELECT access_id FROM accounts WHERE connection_id = $1 AND "
	    "access_id IS NOT NULL ORDER BY created_at LIMIT 1",
	    1, (const char *[]){ conn_id });
	if (q == NULL || PQntuples(q) == 0) {
		PQclear(q);
		return http_error(r, MHD_HTTP_CONFLICT, "not_pulled_yet",
		    "no accounts are known for this connection yet; try again "
		    "after the first pull");
	}
	raw_access = xstrdup(PQgetvalue(q, 0, 0));
	access = url_encode(raw_access);
	PQclear(q);
	if ((token = refresh_access_token(conn_id, 0, &o, NULL, NULL)) ==
	    NULL) {
		free(access);
		free(raw_access);
		return http_error(r, MHD_HTTP_CONFLICT, "connection_not_active",
		    "no valid access token (%s)", refresh_outcome_name(o));
	}
	path = xasprintf("/rest/accesses/%s/syncs", access);
	body = json_object_new_object();
	json_object_object_add(body, "disable_notifications",
	    json_object_new_boolean(1));
	if (!finx_rest("POST", token, path, body, &res, &err)) {
		free_secret(token);
		free(path);
		free(access);
		free(raw_access);
		json_object_put(body);
		return sync_refused(r, &err);
	}
	free_secret(token);
	free(path);
	json_object_put(body);
	fsid = json_object_object_get_ex(res, "id", &v) &&
		json_object_is_type(v, json_type_string)
	    ? json_object_get_string(v)
	    : NULL;
	fstatus = json_object_object_get_ex(res, "status", &v) &&
		json_object_is_type(v, json_type_string)
	    ? json_object_get_string(v)
	    : "QUEUED";
	if (fsid == NULL || !api_valid_text(fsid, 255) ||
	    !api_valid_text(fstatus, 32)) {
		json_object_put(res);
		free(access);
		free(raw_access);
		return http_error(r, MHD_HTTP_BAD_GATEWAY, "finx_error",
		    "finX answered a sync without an id");
	}
	sid = uuid_new();
	q = db_exec(c,
	    "INSERT INTO syncs (id, connection_id, access_id, finx_sync_id, "
	    "status, next_poll_at) VALUES ($1, $2, $3, $4, $5, now() + "
	    "interval '1 second') RETURNING " SYNC_COLS,
	    5, (const char *[]){ sid, conn_id, raw_access, fsid, fstatus });
	free(raw_access);
	free(sid);
	free(access);
	json_object_put(res);
	if (q == NULL)
		return http_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		    "database_unavailable", "could not record the sync");
	log_kv(LOG_INFO, "sync started", "connection_id", conn_id, NULL);
	return sync_reply(r, MHD_HTTP_ACCEPTED, q);
}

enum MHD_Result
h_conn_sync(struct req *r)
{
	const char *id = r->params[0];
	enum MHD_Result ret;
	PGresult *q;
	PGconn *c;

	if (!uuid_valid(id))
		return http_error(r, MHD_HTTP_NOT_FOUND, "not_found",
		    "no such connection");
	/* Bulk: held across the finX call that starts the sync. */
	if ((c = db_acquire_bulk()) == NULL)
		return http_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		    "database_unavailable", "the database is not reachable");
	if (!db_cmd(c, "BEGIN", 0, NULL)) {
		db_release(c);
		return http_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		    "database_unavailable", "the database is not reachable");
	}
	/* Serialise sync requests of this connection across processes. */
	db_cmd(c, "SELECT pg_advisory_xact_lock(hashtext('finxd.sync:' || $1))",
	    1, (const char *[]){ id });
	q = db_exec(c, "SELECT status FROM connections WHERE id = $1", 1,
	    (const char *[]){ id });
	if (q == NULL || PQntuples(q) == 0) {
		PQclear(q);
		PQclear(PQexec(c, "ROLLBACK"));
		db_release(c);
		return http_error(r, MHD_HTTP_NOT_FOUND, "not_found",
		    "no such connection");
	}
	if (strcmp(PQgetvalue(q, 0, 0), "active") != 0) {
		PQclear(q);
		PQclear(PQexec(c, "ROLLBACK"));
		db_release(c);
		return http_error(r, MHD_HTTP_CONFLICT, "connection_not_active",
		    "the connection is not active");
	}
	PQclear(q);
	q = db_exec(c,
	    "SELECT " SYNC_COLS " FROM syncs WHERE connection_id = $1 AND "
	    SYNC_OPEN " ORDER BY created_at DESC LIMIT 1",
	    1, (const char *[]){ id });
	if (q != NULL && PQntuples(q) > 0)
		ret = sync_reply(r, MHD_HTTP_ACCEPTED, q); /* coalesced */
	else {
		PQclear(q);
		ret = start_sync(r, c, id);
	}
	if (!db_cmd(c, "COMMIT", 0, NULL))
		PQclear(PQexec(c, "ROLLBACK"));
	db_release(c);
	return ret;
}

enum MHD_Result
h_sync_get(struct req *r)
{
	const char *id = r->params[0];
	enum MHD_Result ret;
	PGresult *q;
	PGconn *c;

	if (!uuid_valid(id))
		return http_error(r, MHD_HTTP_NOT_FOUND, "not_found",
		    "no such sync");
	if ((c = api_db(r, &ret)) == NULL)
		return ret;
	q = db_exec(c, "SELECT " SYNC_COLS " FROM syncs WHERE id = $1", 1,
	    (const char *[]){ id });
	db_release(c);
	if (q == NULL)
		return http_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
		    "database_unavailable", "the database is not reachable");
	if (PQntuples(q) == 0) {
		PQclear(q);
		return http_error(r, MHD_HTTP_NOT_FOUND, "not_found",
		    "no such sync");
	}
	return sync_reply(r, MHD_HTTP_OK, q);
}

bool
sync_poll_one(PGconn *c)
{
	struct finx_error err = { 0 };
	enum refresh_outcome o;
	json_object *res = NULL, *v;
	PGresult *q;
	char *token, *path, *a, *s, *errtxt = NULL;
	const char *id, *conn, *status;
	bool done;

	if (!db_cmd(c, "BEGIN", 0, NULL))
		return false;
	q = db_exec(c,
	    "SELECT id, connection_id, access_id, finx_sync_id FROM syncs "
	    "WHERE " SYNC_OPEN " AND next_poll_at <= now() ORDER BY "
	    "next_poll_at LIMIT 1 FOR UPDATE SKIP LOCKED",
	    0, NULL);
	if (q == NULL || PQntuples(q) == 0) {
		PQclear(q);
		PQclear(PQexec(c, "ROLLBACK"));
		return false;
	}
	id = PQgetvalue(q, 0, 0);
	conn = PQgetvalue(q, 0, 1);
	token = refresh_access_token(conn, 0, &o, NULL, NULL);
	if (token == NULL) {
		db_cmd(c,
		    "UPDATE syncs SET status = 'FAILED', error = "
		    "jsonb_build_object('message', 'connection has no valid "
		    "access token'), ended_at = now(), updated_at = now() WHERE "
		    "id = $1",
		    1, (const char *[]){ id });
		goto out;
	}
	a = url_encode(PQgetvalue(q, 0, 2));
	s = url_encode(PQgetvalue(q, 0, 3));
	path = xasprintf("/rest/accesses/%s/syncs/%s", a, s);
	free(a);
	free(s);
	if (!finx_rest("GET", token, path, NULL, &res, &err)) {
		/* Keep following; a finX hiccup is not the sync's failure. */
		db_cmd(c,
		    "UPDATE syncs SET next_poll_at = now() + interval "
		    "'10 seconds', updated_at = now() WHERE id = $1",
		    1, (const char *[]){ id });
		finx_error_free(&err);
	} else {
		status = json_object_object_get_ex(res, "status", &v) &&
			json_object_is_type(v, json_type_string) &&
			api_valid_text(json_object_get_string(v), 32)
		    ? json_object_get_string(v)
		    : "UNKNOWN";
		if (json_object_object_get_ex(res, "error", &v) && v != NULL)
			errtxt = xstrdup(json_object_to_json_string_ext(v,
			    JSON_C_TO_STRING_PLAIN));
		done = strcmp(status, "COMPLETED") == 0 ||
		    strcmp(status, "FAILED") == 0 ||
		    strcmp(status, "ERROR") == 0 ||
		    strcmp(status, "CANCELLED") == 0;
		db_cmd(c,
		    "UPDATE syncs SET status = $2, error = $3::jsonb, "
		    "started_at = CASE WHEN $2 <> 'QUEUED' THEN "
		    "coalesce(started_at, now()) END, ended_at = CASE WHEN $4 "
		    "THEN now() END, next_poll_at = now() + interval '2 seconds', "
		    "updated_at = now() WHERE id = $1",
		    4,
		    (const char *[]){ id, status, errtxt,
			done ? "true" : "false" });
		if (strcmp(status, "COMPLETED") == 0)
			/* The user asked: this pull is attended. */
			db_cmd(c,
			    "UPDATE pulls SET next_pull_at = now(), attended = "
			    "true WHERE connection_id = $1",
			    1, (const char *[]){ conn });
		free(errtxt);
		json_object_put(res);
	}
	free(path);
	free_secret(token);
out:
	PQclear(q);
	db_cmd(c, "COMMIT", 0, NULL);
	return true;
}
