/*
 * /v1 connection endpoints: read (never a token), hand out an access
 * token, refresh, re-authenticate and delete.
 */
#include "api.h"

#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "encode.h"
#include "log.h"
#include "mem.h"
#include "notify.h"
#include "refresh.h"
#include "secret.h"
#include "store_conns.h"
#include "text.h"

static void
add_text(json_object *o, const char *key, const char *v)
{
	json_object_object_add(o, key, v ? json_object_new_string(v) : NULL);
}

json_object *
api_conn_json(const struct store_conn *k)
{
	json_object *o = json_object_new_object();

	add_text(o, "connection_id", k->id);
	add_text(o, "user_id", k->user_id);
	add_text(o, "status", k->status);
	add_text(o, "status_reason", k->status_reason);
	add_text(o, "scope", k->scope);
	add_text(o, "access_expires_at", k->access_expires_at);
	add_text(o, "refresh_obtained_at", k->refresh_obtained_at);
	add_text(o, "refresh_expires_at", k->refresh_expires_at);
	add_text(o, "consent_expires_at", k->consent_expires_at);
	add_text(o, "reauth_required_by", k->reauth_required_by);
	add_text(o, "last_refresh_at", k->last_refresh_at);
	add_text(o, "last_sync_at", k->last_sync_at);
	add_text(o, "last_error", k->last_error);
	json_object_object_add(o, "consecutive_failures",
	    json_object_new_int64(k->consecutive_failures));
	add_text(o, "created_at", k->created_at);
	add_text(o, "connected_at", k->connected_at);
	add_text(o, "revoked_at", k->revoked_at);
	return o;
}

static enum MHD_Result
no_such_conn(struct req *r)
{
	return api_fail(r, ST_NOT_FOUND, "no such connection");
}

/* Answer with connection id, read on c, which is released. */
static enum MHD_Result
answer_conn(struct req *r, PGconn *c, const char *id)
{
	struct store_conns l;
	enum MHD_Result ret;
	bool ok = store_conn_get(c, id, &l);

	db_release(c);
	if (!ok)
		ret = api_fail_db(r);
	else if (l.n == 0)
		ret = no_such_conn(r);
	else
		ret = http_json(r, MHD_HTTP_OK, api_conn_json(&l.v[0]));
	store_conns_free(&l);
	return ret;
}

/* Answer with connection id, on a connection of the pool. */
static enum MHD_Result
load_conn(struct req *r, const char *id)
{
	enum MHD_Result ret;
	PGconn *c;

	if (!uuid_valid(id))
		return no_such_conn(r);
	if ((c = api_db(r, &ret)) == NULL)
		return ret;
	return answer_conn(r, c, id);
}

enum MHD_Result
h_conn_get(struct req *r)
{
	if (!api_uuid_param(r, 0))
		return no_such_conn(r);
	return load_conn(r, r->params[0]);
}

enum MHD_Result
h_user_conns(struct req *r)
{
	const char *user = r->params[0];
	struct store_conns l;
	enum MHD_Result ret;
	json_object *o, *arr;
	PGconn *c;
	bool ok;
	int i;

	if (!user_id_valid(user))
		return api_bad_user_id(r);
	if ((c = api_db(r, &ret)) == NULL)
		return ret;
	ok = store_conn_list_user(c, user, &l);
	db_release(c);
	if (!ok)
		return api_fail_db(r);
	arr = json_object_new_array();
	for (i = 0; i < l.n; i++)
		json_object_array_add(arr, api_conn_json(&l.v[i]));
	store_conns_free(&l);
	o = json_object_new_object();
	json_object_object_add(o, "connections", arr);
	return http_json(r, MHD_HTTP_OK, o);
}

/* Answer a refresh outcome that prevents an answer; frees msg. */
static enum MHD_Result
refresh_fail(struct req *r, enum refresh_outcome o, char *msg)
{
	enum MHD_Result ret = api_fail(r, refresh_status(o), msg);

	free(msg);
	return ret;
}

/* A body holding a token: wiped when libmicrohttpd is done with it. */
struct secret_body {
	char *data;
	size_t len;
};

static void
secret_body_free(void *cls)
{
	struct secret_body *b = cls;

	free_secret_n(b->data, b->len);
	free(b);
}

/*
 * {"access_token", "token_type", "expires_at"} written in one buffer of
 * finxd's (not json-c's printbuf, which grows by realloc and frees the
 * old copies unwiped).
 */
static struct secret_body *
token_body(const char *token, const char *expires_at)
{
	static const char head[] = "{\"access_token\":",
			  mid[] = ",\"token_type\":\"Bearer\",\"expires_at\":";
	struct secret_body *b = xmalloc(sizeof(*b));
	size_t o;

	b->data = xmalloc(sizeof(head) + sizeof(mid) + 6 * strlen(token) +
	    6 * strlen(expires_at) + 8);
	memcpy(b->data, head, sizeof(head) - 1);
	o = sizeof(head) - 1;
	o += json_quote(b->data + o, token);
	memcpy(b->data + o, mid, sizeof(mid) - 1);
	o += sizeof(mid) - 1;
	o += json_quote(b->data + o, expires_at);
	memcpy(b->data + o, "}", 2);
	b->len = o + 1;
	return b;
}

enum MHD_Result
h_conn_token(struct req *r)
{
	const char *id = r->params[0];
	enum refresh_outcome o;
	char *msg = NULL, *plain, *expires_at = NULL;
	struct secret_body *b;

	if (!api_uuid_param(r, 0))
		return no_such_conn(r);
	/* Refreshed first when inside the margin, under the shared lock. */
	plain = refresh_access_token(id, RT_HANDOUT, &o, &expires_at, &msg);
	if (plain == NULL)
		return refresh_fail(r, o, msg);
	free(msg);
	b = token_body(plain, expires_at != NULL ? expires_at : "");
	free(expires_at);
	free_secret(plain);
	log_kv(LOG_INFO, "access token handed out", "connection_id", id,
	    "api_key", r->key ? r->key->id : NULL, NULL);
	/* libmicrohttpd sends from b and secret_body_free wipes it. */
	return api_reply_json(r, b->data, b->len, secret_body_free, b);
}

enum MHD_Result
h_conn_refresh(struct req *r)
{
	const char *id = r->params[0];
	enum refresh_outcome o;
	char *msg = NULL;

	if (!api_uuid_param(r, 0))
		return no_such_conn(r);
	o = refresh_now(id, true, &msg);
	if (o != RF_OK && o != RF_NOT_DUE)
		return refresh_fail(r, o, msg);
	free(msg);
	return load_conn(r, id);
}

enum MHD_Result
h_conn_delete(struct req *r)
{
	const char *id = r->params[0];
	enum store_conn_del d;
	enum MHD_Result ret;
	PGconn *c;

	if (!api_uuid_param(r, 0))
		return no_such_conn(r);
	notify_before_delete(id);
	if ((c = api_db(r, &ret)) == NULL)
		return ret;
	if ((d = store_conn_delete(c, id)) != SCD_DELETED) {
		db_release(c);
		return d == SCD_NOT_FOUND ? no_such_conn(r) : api_fail_db(r);
	}
	/* Remove its finX notifications, then revoke (the removals present
	 * its access token); failures stay queued for the workers. */
	notify_removals_try(c, id);
	revocations_try(c, id);
	log_kv(LOG_INFO, "connection deleted", "connection_id", id, NULL);
	return answer_conn(r, c, id);
}

/* The body of a reauth request: its return_url and finX's fields
 * (*fields: the caller puts it).  false queues an error in *ret. */
static bool
reauth_body(struct req *r, json_object **body, const char **return_url,
    json_object **fields, enum MHD_Result *ret)
{
	if (r->body.len == 0) {
		*fields = json_object_new_object();
		return true;
	}
	if ((*body = http_body_object(r, ret)) == NULL)
		return false;
	return api_link_body(r, *body, return_url, fields, ret);
}

enum MHD_Result
h_conn_reauth(struct req *r)
{
	const char *id = r->params[0], *return_url = NULL;
	json_object *body = NULL, *fields = NULL;
	char *user_id = NULL;
	enum MHD_Result ret;
	bool revoked, ok;
	PGconn *c;

	if (!api_uuid_param(r, 0))
		return no_such_conn(r);
	if ((c = api_db(r, &ret)) == NULL)
		return ret;
	ok = store_conn_reauth_check(c, id, &user_id, &revoked);
	db_release(c);
	if (!ok)
		return api_fail_db(r);
	if (user_id == NULL)
		return no_such_conn(r);
	if (revoked)
		ret = api_fail(r, ST_REVOKED, NULL);
	else if (reauth_body(r, &body, &return_url, &fields, &ret))
		ret = api_open_link(r, user_id, return_url, fields, "reauth",
		    id);
	json_object_put(fields);
	json_object_put(body);
	free(user_id);
	return ret;
}
