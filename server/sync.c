/*
 * Manual syncs: POST /v1/connections/{id}/sync asks finX to synchronise
 * the connection's bank access now; the workers follow it until it ends
 * and then pull the new data.  No transaction and no pooled connection
 * is held while finX answers (store_sync.h): a start first commits the
 * sync as STARTING under a claim with a deadline, asks finX, then sets
 * the answer on that claim; a second request meanwhile finds the open
 * sync (one per connection, by a unique index) and answers it, so finX
 * sees one sync.  The access token is read before the claim, on pooled
 * connections of its own.  Polls are claimed the same way.
 */
#include "api.h"
#include "sync.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "db.h"
#include "encode.h"
#include "finx.h"
#include "log.h"
#include "mem.h"
#include "refresh.h"
#include "secret.h"
#include "store_sync.h"
#include "text.h"

static void
add_text(json_object *o, const char *key, const char *v)
{
	json_object_object_add(o, key, v ? json_object_new_string(v) : NULL);
}

static json_object *
sync_json(const struct store_sync *s)
{
	json_object *o = json_object_new_object();
	char *st = s->status ? xstrdup(s->status) : NULL, *p;

	/* Still being asked of finX: queued, as far as the partner knows. */
	if (st != NULL && strcmp(st, "STARTING") == 0) {
		free(st);
		st = xstrdup("QUEUED");
	}
	/* Our lower-case status vocabulary. */
	for (p = st; p != NULL && *p; p++)
		*p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
	add_text(o, "sync_id", s->id);
	add_text(o, "connection_id", s->connection_id);
	add_text(o, "status", st);
	json_object_object_add(o, "error",
	    s->error ? json_tokener_parse(s->error) : NULL);
	add_text(o, "created_at", s->created_at);
	add_text(o, "started_at", s->started_at);
	add_text(o, "ended_at", s->ended_at);
	add_text(o, "updated_at", s->updated_at);
	free(st);
	return o;
}

static enum MHD_Result
sync_reply(struct req *r, unsigned status, const struct store_sync *s)
{
	return http_json(r, status, sync_json(s));
}

/* What starting a sync keeps for the answer, and when it failed. */
struct sync_start {
	enum status fail;       /* ST_OK while nothing failed */
	char *detail;           /* of fail, or NULL */
	char *transport;        /* finx_error.detail of fail, or NULL */
	long retry_s;           /* Retry-After of fail, or 0 */
	char *token;            /* the access token (free_secret) */
	char *finx_id, *status; /* what finX answered */
};

static bool
start_failed(struct sync_start *st, enum status s, char *detail)
{
	st->fail = s;
	st->detail = detail;
	return false;
}

/* finX refused: 1020 (too many syncs) or 429 become our 429. */
static bool
sync_refused(struct sync_start *st, struct finx_error *err)
{
	if (err->http_status == 429 ||
	    (err->code != NULL && strcmp(err->code, "1020") == 0)) {
		st->retry_s = err->retry_after > 0 ? err->retry_after : 3600;
		start_failed(st, ST_TOO_MANY_SYNCS, NULL);
	} else {
		start_failed(st, status_of_finx(err),
		    xstrdup(err->message ? err->message : "no answer"));
		st->transport = err->detail; /* ours now */
		err->detail = NULL;
	}
	finx_error_free(err);
	return false;
}

/* finX's answer to the POST: the new sync's id and status. */
static bool
finx_started(struct sync_start *st, json_object *res)
{
	json_object *v;
	const char *id = json_object_object_get_ex(res, "id", &v)
	    ? api_json_text(v, 255)
	    : NULL;
	const char *status = "QUEUED";

	if (json_object_object_get_ex(res, "status", &v) &&
	    json_object_is_type(v, json_type_string))
		status = api_json_text(v, 32);
	if (id == NULL || status == NULL)
		return start_failed(st, ST_FINX_ERROR,
		    xstrdup("finX answered a sync without an id"));
	st->finx_id = xstrdup(id);
	st->status = xstrdup(status);
	return true;
}

/* The access token a start presents, read (or refreshed) on pooled
 * connections of its own before the sync's transaction takes one. */
static bool
sync_token(struct sync_start *st, const char *conn_id)
{
	enum refresh_outcome o;

	st->token = refresh_access_token(conn_id, 0, &o, NULL, NULL);
	if (st->token != NULL)
		return true;
	if (o == RF_DB_ERROR)
		return start_failed(st, ST_DB_UNAVAILABLE, NULL);
	return start_failed(st, ST_NOT_ACTIVE,
	    xasprintf("no valid access token (%s)", refresh_outcome_name(o)));
}

static bool
ask_finx(struct sync_start *st, const char *access_id)
{
	struct finx_error err = { 0 };
	json_object *body, *res = NULL;
	char *access, *path;
	bool ok;

	access = url_encode(access_id);
	path = xasprintf("/rest/accesses/%s/syncs", access);
	body = json_object_new_object();
	json_object_object_add(body, "disable_notifications",
	    json_object_new_boolean(1));
	ok = finx_rest("POST", st->token, path, body, &res, &err);
	free(path);
	free(access);
	json_object_put(body);
	if (!ok)
		return sync_refused(st, &err);
	ok = finx_started(st, res);
	json_object_put(res);
	return ok;
}

static enum MHD_Result
sync_begun(struct req *r, enum store_sync_begun b, const struct sync_start *st,
    const struct store_sync *s)
{
	switch (b) {
	case SSB_NO_CONNECTION:
		return api_fail(r, ST_NOT_FOUND, "no such connection");
	case SSB_NOT_ACTIVE:
		return api_fail(r, ST_NOT_ACTIVE, NULL);
	case SSB_NOT_PULLED:
		return api_fail(r, ST_NOT_PULLED_YET, NULL);
	case SSB_RUNNING:
		return sync_reply(r, MHD_HTTP_ACCEPTED, s); /* coalesced */
	case SSB_STARTED:
		log_kv(LOG_INFO, "sync started", "connection_id",
		    s->connection_id, NULL);
		return sync_reply(r, MHD_HTTP_ACCEPTED, s);
	case SSB_NOT_STARTED:
		if (st->fail != ST_OK)
			return api_fail_transport(r, st->fail, st->detail,
			    st->retry_s, st->transport);
		return api_fail(r, status_of_db(db_failure()),
		    "could not record the sync");
	case SSB_IDLE:
	case SSB_CLAIMED:
	case SSB_FAILED:
		break;
	}
	return api_fail_db(r);
}

/* Seconds a start's claim lasts: finX's answer to the POST, and more. */
static long
start_deadline_s(void)
{
	return api_cfg->finx_timeout_ms / 1000 + 5;
}

/* Why finX started nothing, as the failed sync's error object. */
static char *
start_error(const struct sync_start *st)
{
	json_object *o = json_object_new_object();
	char *text;

	json_object_object_add(o, "message",
	    json_object_new_string(st->fail == ST_TOO_MANY_SYNCS
		    ? "finX allows no more syncs of this access now"
		: st->detail != NULL ? st->detail
				     : "finX did not start the sync"));
	text = xstrdup(json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return text;
}

/* finX's answer set on the claim; a lost claim answers the row as it
 * stands (its start was judged interrupted meanwhile). */
static enum store_sync_begun
start_record(const struct store_sync_claim *k, struct sync_start *st,
    bool started, struct store_sync *s)
{
	PGconn *c = db_acquire_bulk();
	char *error;
	int got;
	bool ok;

	if (c == NULL) {
		db_fail_unavailable();
		return SSB_FAILED; /* the claim runs out; a poll ends it */
	}
	if (!started) {
		error = start_error(st);
		ok = store_sync_start_failed(c, s->id, k->claim, error);
		free(error);
		db_release(c);
		return ok ? SSB_NOT_STARTED : SSB_FAILED;
	}
	got = store_sync_started(c, s->id, k->claim, st->finx_id, st->status,
	    s);
	db_release(c);
	if (got == 0)
		log_kv(LOG_WARN, "sync started at finX after its claim ran out",
		    "sync_id", s->id, NULL);
	return got < 0 ? SSB_FAILED : got == 1 ? SSB_STARTED : SSB_RUNNING;
}

/* Start a sync of id: the claim, finX with nothing held, the answer. */
static enum store_sync_begun
sync_start(const char *id, struct sync_start *st, struct store_sync *s)
{
	struct store_sync_claim k = { 0 };
	enum store_sync_begun b;
	PGconn *c;

	if ((c = db_acquire_bulk()) == NULL) {
		db_fail_unavailable();
		return SSB_FAILED;
	}
	b = store_sync_claim_start(c, id, start_deadline_s(), &k, s);
	db_release(c);
	if (b == SSB_CLAIMED)
		b = start_record(&k, st, ask_finx(st, k.access_id), s);
	store_sync_claim_free(&k);
	return b;
}

enum MHD_Result
h_conn_sync(struct req *r)
{
	const char *id = r->params[0];
	struct sync_start st = { .fail = ST_OK };
	struct store_sync s = { 0 };
	enum store_sync_begun b;
	enum MHD_Result ret;
	PGconn *c;

	if (!api_uuid_param(r, 0))
		return api_fail(r, ST_NOT_FOUND, "no such connection");
	if ((c = api_db(r, &ret)) == NULL)
		return ret;
	b = store_sync_peek(c, id, &s);
	db_release(c);
	if (b == SSB_IDLE)
		b = sync_token(&st, id) ? sync_start(id, &st, &s)
					: SSB_NOT_STARTED;
	ret = sync_begun(r, b, &st, &s);
	free_secret(st.token);
	free(st.detail);
	free(st.transport);
	free(st.finx_id);
	free(st.status);
	store_sync_clear(&s);
	return ret;
}

enum MHD_Result
h_sync_get(struct req *r)
{
	const char *id = r->params[0];
	struct store_sync s = { 0 };
	enum MHD_Result ret;
	PGconn *c;
	bool ok;

	if (!api_uuid_param(r, 0))
		return api_fail(r, ST_NOT_FOUND, "no such sync");
	if ((c = api_db(r, &ret)) == NULL)
		return ret;
	ok = store_sync_get(c, id, &s);
	db_release(c);
	if (!ok)
		return api_fail_db(r);
	if (s.id == NULL)
		ret = api_fail(r, ST_NOT_FOUND, "no such sync");
	else
		ret = sync_reply(r, MHD_HTTP_OK, &s);
	store_sync_clear(&s);
	return ret;
}

/* finX's answer about sync d: its status (and error) recorded. */
static bool
record_status(PGconn *c, const struct store_sync_due *d, json_object *res)
{
	json_object *v;
	const char *status = "UNKNOWN";
	char *error = NULL;
	bool ok;

	if (json_object_object_get_ex(res, "status", &v) &&
	    api_json_text(v, 32) != NULL)
		status = json_object_get_string(v);
	if (json_object_object_get_ex(res, "error", &v) && v != NULL)
		error = xstrdup(
		    json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
	ok = store_sync_finish(c, d, status, error);
	free(error);
	return ok;
}

/* Ask finX how claimed sync d goes (no transaction open: the claim is a
 * committed row) and record it on the claim. */
static bool
poll_sync(PGconn *c, const struct store_sync_due *d)
{
	struct finx_error err = { 0 };
	enum refresh_outcome o;
	json_object *res = NULL;
	char *token, *a, *s, *path;
	bool ok;

	token = refresh_access_token(d->connection_id, 0, &o, NULL, NULL);
	if (token == NULL)
		return store_sync_fail(c, d);
	a = url_encode(d->access_id);
	s = url_encode(d->finx_sync_id);
	path = xasprintf("/rest/accesses/%s/syncs/%s", a, s);
	ok = finx_rest("GET", token, path, NULL, &res, &err);
	free(a);
	free(s);
	free(path);
	free_secret(token);
	if (!ok) {
		/* Keep following; a finX hiccup is not the sync's failure. */
		finx_error_free(&err);
		return store_sync_poll_later(c, d);
	}
	ok = record_status(c, d, res);
	json_object_put(res);
	return ok;
}

/* Seconds a poll's claim lasts: a token refresh and finX's answer. */
static long
poll_deadline_s(void)
{
	return 2 * (api_cfg->finx_timeout_ms / 1000) + 5;
}

bool
sync_poll_one(PGconn *c)
{
	struct store_sync_due d;
	int got = store_sync_claim_due(c, poll_deadline_s(), &d);
	bool ok = got == 1;

	if (got == 1) {
		/* A start past its deadline lost its starter (killed, or its
		 * answer never stored): it ends here, failed, once. */
		if (strcmp(d.status, "STARTING") == 0) {
			ok = store_sync_abandon(c, &d);
			if (ok)
				log_kv(LOG_WARN, "sync start interrupted",
				    "sync_id", d.id, NULL);
		} else
			ok = poll_sync(c, &d);
	}
	/* db.c logs nothing: this is the one place. */
	if (got < 0 || (got == 1 && !ok))
		log_kv(db_failure() == DBF_UNAVAILABLE ? LOG_WARN : LOG_ERROR,
		    "sync poll failed", "sync_id", d.id, "sqlstate",
		    db_failure_sqlstate(), "db_error", db_failure_message(),
		    NULL);
	store_sync_due_free(&d);
	return got == 1;
}
