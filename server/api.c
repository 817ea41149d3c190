/*
 * The route table and the operational endpoints (/healthz, /readyz,
 * /metrics), plus helpers every handler uses.
 */
#include "api.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "db.h"
#include "http_conn.h"
#include "idempotency.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "migrate.h"
#include "rescue.h"
#include "store.h"
#include "text.h"
#include "webhook.h"

const struct config *api_cfg;

/*
 * What /readyz answers while finxd serve waits for the database (main.c
 * sets it on every try), until api_set_started.  Only texts meant for a
 * probe: never a connection string or libpq's message.
 */
static struct {
	pthread_mutex_t mu;
	bool started;
	char code[32];
	char message[256];
} start = { PTHREAD_MUTEX_INITIALIZER, false, "starting",
	"finxd is starting" };

static enum MHD_Result h_healthz(struct req *r);
static enum MHD_Result h_readyz(struct req *r);
static enum MHD_Result h_metrics(struct req *r);
static enum MHD_Result h_openapi(struct req *r);

const struct route routes[] = {
	{ "GET", "/healthz", h_healthz, 0, HTTP_LOOP },
	{ "GET", "/readyz", h_readyz, 0, HTTP_READ },
	{ "GET", "/metrics", h_metrics, 0, HTTP_READ },
	{ "GET", "/openapi.json", h_openapi, 0, HTTP_LOOP },
	{ "GET", "/callback", h_callback, 0, HTTP_BULK },
	{ "GET", "/start/{}", h_link_start, 0, HTTP_BULK },
	/* Any method: finX's is not documented (finx-api.md 5.4). */
	{ "*", "/finx/notify/{}", h_finx_notify, 0, HTTP_BULK },
	{ "POST", "/v1/links", h_idem_links_create, SCOPE_LINKS, HTTP_BULK },
	{ "GET", "/v1/links", h_links_list, SCOPE_LINKS | SCOPE_READ,
	    HTTP_READ },
	{ "GET", "/v1/connections", h_conns_list, SCOPE_READ, HTTP_READ },
	{ "GET", "/v1/links/{}", h_links_get, SCOPE_LINKS | SCOPE_READ,
	    HTTP_READ },
	{ "GET", "/v1/users/{}/connections", h_user_conns, SCOPE_READ,
	    HTTP_READ },
	{ "GET", "/v1/connections/{}", h_conn_get, SCOPE_READ, HTTP_READ },
	{ "DELETE", "/v1/connections/{}", h_conn_delete, SCOPE_ADMIN,
	    HTTP_BULK },
	{ "GET", "/v1/connections/{}/token", h_conn_token, SCOPE_TOKENS,
	    HTTP_BULK },
	{ "POST", "/v1/connections/{}/refresh", h_conn_refresh, SCOPE_ADMIN,
	    HTTP_BULK },
	{ "POST", "/v1/connections/{}/reauth", h_idem_conn_reauth, SCOPE_ADMIN,
	    HTTP_BULK },
	{ "POST", "/v1/connections/{}/sync", h_idem_conn_sync, SCOPE_ADMIN,
	    HTTP_BULK },
	{ "GET", "/v1/connections/{}/transactions/changes", h_conn_changes,
	    SCOPE_READ, HTTP_READ },
	{ "GET", "/v1/syncs/{}", h_sync_get, SCOPE_READ | SCOPE_ADMIN,
	    HTTP_READ },
	{ "GET", "/v1/users/{}/accounts", h_user_accounts, SCOPE_READ,
	    HTTP_CACHED },
	{ "GET", "/v1/users/{}/transactions", h_user_txns, SCOPE_READ,
	    HTTP_CACHED },
	{ "GET", "/v1/accounts/{}", h_account_get, SCOPE_READ, HTTP_CACHED },
	{ "GET", "/v1/accounts/{}/transactions", h_account_txns, SCOPE_READ,
	    HTTP_CACHED },
	{ "GET", "/v1/events", h_events_list, SCOPE_READ, HTTP_READ },
	{ "GET", "/v1/events/{}", h_event_get, SCOPE_READ, HTTP_READ },
	{ "POST", "/v1/events/{}/redeliver", h_event_redeliver, SCOPE_ADMIN,
	    HTTP_BULK },
	{ NULL, NULL, NULL, 0, HTTP_LOOP },
};

void
api_init(const struct config *cfg)
{
	api_cfg = cfg;
}

PGconn *
api_db(struct req *r, enum MHD_Result *ret)
{
	PGconn *c;

	if (http_defer(r)) {
		*ret = MHD_YES;
		return NULL;
	}
	if ((c = db_acquire()) == NULL) {
		db_fail_unavailable();
		*ret = api_fail_db(r);
	}
	return c;
}

enum MHD_Result
api_fail_transport(struct req *r, enum status s, const char *detail,
    long retry_s, const char *transport)
{
	const struct status_row *row = status_row(s);
	bool db = s == ST_DB_UNAVAILABLE && db_failure() != DBF_NONE;

	if (row->http >= 500)
		log_kv(row->http == 500 ? LOG_ERROR : LOG_WARN,
		    "request failed", "code", row->code, "detail", detail,
		    "transport", transport, "sqlstate",
		    db ? db_failure_sqlstate() : NULL, "db_error",
		    db ? db_failure_message() : NULL, NULL);
	return http_error_after(r, row->http, row->code, retry_s, "%s%s%s",
	    row->message, detail ? ": " : "", detail ? detail : "");
}

enum MHD_Result
api_fail_after(struct req *r, enum status s, const char *detail,
    long retry_s)
{
	return api_fail_transport(r, s, detail, retry_s, NULL);
}

enum MHD_Result
api_fail(struct req *r, enum status s, const char *detail)
{
	return api_fail_after(r, s, detail, 0);
}

enum MHD_Result
api_fail_db(struct req *r)
{
	return api_fail(r, status_of_db(db_failure()), NULL);
}

enum MHD_Result
api_reply_json(struct req *r, const char *data, size_t len,
    void (*release)(void *cls), void *cls)
{
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer_with_free_callback_cls(len,
		(void *)data, release, cls);

	if (resp == NULL) {
		release(cls);
		return MHD_NO;
	}
	http_capture(r, "application/json; charset=utf-8", data, len);
	MHD_add_response_header(resp, "Content-Type",
	    "application/json; charset=utf-8");
	return http_queue(r, MHD_HTTP_OK, resp);
}

void
json_add_col(json_object *obj, const char *key, const PGresult *res, int row,
    int col)
{
	const char *v = db_val(res, row, col);

	json_object_object_add(obj, key, v ? json_object_new_string(v) : NULL);
}

bool
api_valid_text(const char *s, size_t max)
{
	return text_valid(s, 1, max);
}

const char *
api_json_text(json_object *v, size_t max)
{
	const char *s;

	if (v == NULL || !json_object_is_type(v, json_type_string))
		return NULL;
	s = json_object_get_string(v);
	/* A "\u0000" inside would cut the C string short: refuse it. */
	if ((size_t)json_object_get_string_len(v) != strlen(s) ||
	    !api_valid_text(s, max))
		return NULL;
	return s;
}

bool
api_uuid_param(struct req *r, int i)
{
	char *p;

	if (i >= r->n_params || !uuid_valid(r->params[i]))
		return false;
	for (p = r->params[i]; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	return true;
}

const char *
api_query_undecodable(struct req *r, const char *const *names)
{
	for (; *names != NULL; names++)
		if (http_query(r, *names) == NULL && http_query_sent(r, *names))
			return *names;
	return NULL;
}

bool
api_fail_undecodable(struct req *r, const char *const *names,
    enum MHD_Result *ret)
{
	const char *name = api_query_undecodable(r, names);
	char *m;

	if (name == NULL)
		return false;
	m = xasprintf("%s is not valid percent-encoding", name);
	*ret = api_fail(r, ST_INVALID_PARAMETER, m);
	free(m);
	return true;
}

enum MHD_Result
api_bad_user_id(struct req *r)
{
	return api_fail(r, ST_INVALID_REQUEST,
	    "user_id must be 1 to 255 bytes of UTF-8 without control "
	    "characters");
}

/* A status answered without api_fail's log line, for probes. */
static enum MHD_Result
probe_fail(struct req *r, enum status s, const char *detail)
{
	const struct status_row *row = status_row(s);

	return http_error(r, row->http, row->code, "%s%s%s", row->message,
	    detail ? ": " : "", detail ? detail : "");
}

static enum MHD_Result
h_healthz(struct req *r)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "status", json_object_new_string("ok"));
	return http_json(r, MHD_HTTP_OK, o);
}

void
api_set_starting(const char *code, const char *message)
{
	pthread_mutex_lock(&start.mu);
	snprintf(start.code, sizeof(start.code), "%s", code);
	snprintf(start.message, sizeof(start.message), "%s", message);
	pthread_mutex_unlock(&start.mu);
}

void
api_set_started(void)
{
	pthread_mutex_lock(&start.mu);
	start.started = true;
	pthread_mutex_unlock(&start.mu);
}

/* 503 with the start's reason while serve is still waiting; else false. */
static bool
readyz_starting(struct req *r, enum MHD_Result *ret)
{
	char code[sizeof(start.code)], message[sizeof(start.message)];
	bool started;

	pthread_mutex_lock(&start.mu);
	started = start.started;
	memcpy(code, start.code, sizeof(code));
	memcpy(message, start.message, sizeof(message));
	pthread_mutex_unlock(&start.mu);
	if (started)
		return false;
	*ret = http_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, code, "%s",
	    message);
	return true;
}

/*
 * 200 when the database answers and its schema is one this binary can
 * serve (migrate_current: its own version, or newer and declared
 * compatible); 503 with the reason otherwise, and while serve waits.
 */
static enum MHD_Result
h_readyz(struct req *r)
{
	PGconn *c;
	json_object *o;
	char *why = NULL;
	enum MHD_Result ret;
	bool ok;

	if (readyz_starting(r, &ret))
		return ret;
	/* Probes poll this: its 503s are answered, not logged (the reason
	 * is in the body, and in the log where the cause was found). */
	if ((c = db_acquire()) == NULL)
		return probe_fail(r, ST_DB_UNAVAILABLE, NULL);
	ok = migrate_current(c, &why);
	db_release(c);
	if (!ok) {
		ret = probe_fail(r, ST_SCHEMA_NOT_CURRENT, why);
		free(why);
		return ret;
	}
	o = json_object_new_object();
	json_object_object_add(o, "status", json_object_new_string("ready"));
	return http_json(r, MHD_HTTP_OK, o);
}

/* The HTTP front's connections and worker queues. */
static void
render_http_gauges(struct buf *out)
{
	struct http_conn_stats st;

	http_conn_stats(&st);
	metrics_gauge(out, "finxd_http_connections",
	    "HTTP connections held now.", "gauge", st.open);
	metrics_gauge(out, "finxd_http_connections_closed_late_total",
	    "Connections closed for missing a header or body deadline.",
	    "counter", st.closed_late);
	metrics_gauge(out, "finxd_http_connections_refused_total",
	    "Connections refused by the per-address cap.", "counter",
	    st.refused_address);
	metrics_gauge(out, "finxd_http_read_jobs",
	    "Read handlers queued or running on workers.", "gauge",
	    http_pool_busy(HTTP_POOL_READ));
	metrics_gauge(out, "finxd_http_bulk_jobs",
	    "Callbacks and writes queued or running on workers.", "gauge",
	    http_pool_busy(HTTP_POOL_BULK));
}

/*
 * The live figures of /metrics, read from their owners at scrape time:
 * metrics.c stays a leaf that every module may count into.
 */
static void
render_gauges(struct buf *out)
{
	long in_use, total, waits, timeouts;
	PGconn *c;
	long n[STORE_CONN_NSTATUS];
	int i;

	db_stats(&in_use, &total, &waits, &timeouts);
	metrics_gauge(out, "finxd_db_pool_in_use",
	    "Pooled PostgreSQL connections in use.", "gauge", in_use);
	metrics_gauge(out, "finxd_db_pool_open",
	    "Open pooled PostgreSQL connections.", "gauge", total);
	metrics_gauge(out, "finxd_db_pool_waits_total",
	    "Waits for a pooled connection.", "counter", waits);
	metrics_gauge(out, "finxd_db_pool_timeouts_total",
	    "Waits that timed out.", "counter", timeouts);
	metrics_gauge(out, "finxd_http_active_requests", "Requests being served.",
	    "gauge", http_active());
	render_http_gauges(out);
	webhook_render_gauges(out);
	metrics_gauge(out, "finxd_rescue_pending",
	    "Rotated tokens finX issued that PostgreSQL has not stored yet "
	    "(this process; kept in the rescue journal).",
	    "gauge", rescue_pending());
	buf_appendf(out, "# HELP finxd_build_info Build information.\n"
			 "# TYPE finxd_build_info gauge\n"
			 "finxd_build_info{version=\"%s\"} 1\n",
	    FINXD_VERSION);
	buf_append_str(out, "# HELP finxd_connections Connections by status "
			    "(whole database).\n# TYPE finxd_connections "
			    "gauge\n");
	if ((c = db_acquire()) == NULL)
		return;
	if (store_conn_counts(c, n))
		for (i = 0; i < STORE_CONN_NSTATUS; i++)
			buf_appendf(out, "finxd_connections{status=\"%s\"} %ld\n",
			    store_conn_status_names[i], n[i]);
	db_release(c);
}

static enum MHD_Result
h_metrics(struct req *r)
{
	struct buf b;
	struct MHD_Response *resp;

	buf_init(&b, 16 * 1024 * 1024);
	metrics_render(&b);
	render_gauges(&b);
	resp = MHD_create_response_from_buffer(b.len, b.data,
	    MHD_RESPMEM_MUST_COPY);
	buf_free(&b);
	MHD_add_response_header(resp, "Content-Type",
	    "text/plain; version=0.0.4; charset=utf-8");
	return http_queue(r, MHD_HTTP_OK, resp);
}

/* server/openapi.json, compiled in by server/embed.py. */
static enum MHD_Result
h_openapi(struct req *r)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(
	    openapi_json_len, (void *)openapi_json, MHD_RESPMEM_PERSISTENT);

	MHD_add_response_header(resp, "Content-Type",
	    "application/json; charset=utf-8");
	return http_queue(r, MHD_HTTP_OK, resp);
}
