/*
 * The HTTP front: daemon setup, limits, dispatch through the route table,
 * authentication, and response helpers that add the headers every answer
 * needs.  Access logs carry the path without its query string.
 */
#include "http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "buf.h"
#include "clock.h"
#include "encode.h"
#include "http_conn.h"
#include "http_pool.h"
#include "json_check.h"
#include "log.h"
#include "mem.h"
#include "metrics.h"
#include "notify.h"
#include "reqid.h"
#include "secret.h"
#include "status.h"
#include "text.h"

/* Event-loop threads: they parse requests and answer what cannot block.
 * Two on this machine's two cores; more loops would only contend. */
#define HTTP_LOOP_THREADS 2

static struct MHD_Daemon *daemon_;
static struct MHD_Daemon *ops_daemon; /* FINXD_OPS_LISTEN, or NULL */
static const struct config *hcfg;
static atomic_long active;

long
http_active(void)
{
	return atomic_load(&active);
}

/*
 * Percent-decode s (no '+' rule).  NULL on a bad escape or a decoded NUL,
 * so "%00" can never cut a value short behind our back.
 */
char *
http_unescape(const char *s, size_t n)
{
	char *out = xmalloc(n + 1), *o = out, hx[3] = { 0, 0, 0 };
	size_t i;

	for (i = 0; i < n; i++) {
		if (s[i] != '%') {
			*o++ = s[i];
			continue;
		}
		if (i + 2 >= n || !isxdigit((unsigned char)s[i + 1]) ||
		    !isxdigit((unsigned char)s[i + 2])) {
			free(out);
			return NULL;
		}
		hx[0] = s[i + 1];
		hx[1] = s[i + 2];
		*o = (char)strtol(hx, NULL, 16);
		if (*o++ == '\0') {
			free(out);
			return NULL;
		}
		i += 2;
	}
	*o = '\0';
	return out;
}

/* MHD hands us raw query values (see on_unescape); decode on lookup. */
const char *
http_query(struct req *r, const char *name)
{
	const char *raw = MHD_lookup_connection_value(r->conn,
	    MHD_GET_ARGUMENT_KIND, name);
	char *v;

	if (raw == NULL || r->n_decoded == HTTP_MAX_DECODED)
		return NULL;
	if ((v = http_unescape(raw, strlen(raw))) == NULL)
		return NULL;
	r->decoded[r->n_decoded++] = v;
	return v;
}

bool
http_query_sent(struct req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND,
		   name) != NULL;
}

const char *
http_header(struct req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *
http_cookie(struct req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_COOKIE_KIND, name);
}

static void
add_common_headers(struct req *r, struct MHD_Response *resp)
{
	MHD_add_response_header(resp, "X-Request-Id", r->request_id);
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
}

enum MHD_Result
http_queue(struct req *r, unsigned status, struct MHD_Response *resp)
{
	enum MHD_Result ret;

	add_common_headers(r, resp);
	r->status = (int)status;
	if (r->deferred) {
		/* On a worker: MHD takes answers only inside its own callback,
		 * so on_request queues this one after the resume. */
		if (r->resp != NULL)
			MHD_destroy_response(r->resp);
		r->resp = resp;
		return MHD_YES;
	}
	ret = MHD_queue_response(r->conn, status, resp);
	MHD_destroy_response(resp);
	http_conn_phase(r->conn, HP_REPLY);
	return ret;
}

#define JSON_CTYPE "application/json; charset=utf-8"

void
http_capture(struct req *r, const char *ctype, const void *data, size_t len)
{
	if (r == NULL || r->capture == NULL)
		return;
	buf_reset(r->capture);
	buf_append(r->capture, data, len);
	r->capture_ctype = ctype;
}

enum MHD_Result
http_json(struct req *r, unsigned status, json_object *obj)
{
	size_t len;
	const char *s = json_object_to_json_string_length(obj,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	struct MHD_Response *resp = MHD_create_response_from_buffer(len,
	    (void *)s, MHD_RESPMEM_MUST_COPY);

	http_capture(r, JSON_CTYPE, s, len);
	json_object_put(obj);
	MHD_add_response_header(resp, "Content-Type", JSON_CTYPE);
	return http_queue(r, status, resp);
}

/* The error answer; its body goes to r's capture (r may be NULL). */
static struct MHD_Response *
error_response(struct req *r, unsigned status, const char *code,
    const char *msg, long retry_s)
{
	json_object *o = json_object_new_object(), *e = json_object_new_object();
	struct MHD_Response *resp;
	const char *s;
	size_t len;
	char ra[24];

	json_object_object_add(e, "code", json_object_new_string(code));
	json_object_object_add(e, "message", json_object_new_string(msg));
	json_object_object_add(o, "error", e);
	s = json_object_to_json_string_length(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	resp = MHD_create_response_from_buffer(len, (void *)s,
	    MHD_RESPMEM_MUST_COPY);
	http_capture(r, JSON_CTYPE, s, len);
	json_object_put(o);
	MHD_add_response_header(resp, "Content-Type", JSON_CTYPE);
	if (status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(resp, "WWW-Authenticate",
		    "Bearer realm=\"finxd\"");
	if (retry_s <= 0 && status == MHD_HTTP_SERVICE_UNAVAILABLE)
		retry_s = 5;
	if (retry_s > 0) {
		snprintf(ra, sizeof(ra), "%ld", retry_s);
		MHD_add_response_header(resp, "Retry-After", ra);
	}
	return resp;
}

static enum MHD_Result
error_v(struct req *r, unsigned status, const char *code, long retry_s,
    const char *fmt, va_list ap)
{
	struct MHD_Response *resp;
	char *m;

	if (vasprintf(&m, fmt, ap) < 0)
		abort();
	resp = error_response(r, status, code, m, retry_s);
	free(m);
	return http_queue(r, status, resp);
}

enum MHD_Result
http_error(struct req *r, unsigned status, const char *code,
    const char *fmt, ...)
{
	enum MHD_Result ret;
	va_list ap;

	va_start(ap, fmt);
	ret = error_v(r, status, code, 0, fmt, ap);
	va_end(ap);
	return ret;
}

enum MHD_Result
http_error_after(struct req *r, unsigned status, const char *code,
    long retry_s, const char *fmt, ...)
{
	enum MHD_Result ret;
	va_list ap;

	va_start(ap, fmt);
	ret = error_v(r, status, code, retry_s, fmt, ap);
	va_end(ap);
	return ret;
}

/*
 * The answer for status s (status.h) as its table row has it, with
 * ": detail" after the message when detail is set: the HTTP layer's own
 * refusals, before any handler runs.
 */
static struct MHD_Response *
refusal(enum status s, const char *detail)
{
	const struct status_row *row = status_row(s);
	struct MHD_Response *resp;
	char *m = xasprintf("%s%s%s", row->message, detail ? ": " : "",
	    detail ? detail : "");

	resp = error_response(NULL, row->http, row->code, m, 0);
	free(m);
	return resp;
}

static enum MHD_Result
refuse(struct req *r, enum status s, const char *detail)
{
	return http_queue(r, status_row(s)->http, refusal(s, detail));
}

/* The 413 for a body over HTTP_MAX_BODY. */
static enum MHD_Result
refuse_too_large(struct req *r)
{
	char limit[48];

	snprintf(limit, sizeof(limit), "the limit is %d bytes", HTTP_MAX_BODY);
	return refuse(r, ST_PAYLOAD_TOO_LARGE, limit);
}

enum MHD_Result
http_page(struct req *r, unsigned status, const char *title, const char *text)
{
	char *t = html_escape(title), *x = html_escape(text);
	char *page = xasprintf("<!doctype html>\n<html lang=\"en\"><head>"
			       "<meta charset=\"utf-8\"><title>%s</title>"
			       "<meta name=\"viewport\" content=\"width=device-"
			       "width\"></head>\n<body><h1>%s</h1>\n<p>%s</p>"
			       "</body></html>\n",
	    t, t, x);
	struct MHD_Response *resp = MHD_create_response_from_buffer(
	    strlen(page), page, MHD_RESPMEM_MUST_FREE);

	free(t);
	free(x);
	MHD_add_response_header(resp, "Content-Type", "text/html; charset=utf-8");
	MHD_add_response_header(resp, "Content-Security-Policy",
	    "default-src 'none'; frame-ancestors 'none'");
	return http_queue(r, status, resp);
}

enum MHD_Result
http_redirect(struct req *r, const char *location, const char *set_cookie)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL,
	    MHD_RESPMEM_PERSISTENT);

	MHD_add_response_header(resp, "Location", location);
	MHD_add_response_header(resp, "Content-Security-Policy",
	    "default-src 'none'; frame-ancestors 'none'");
	if (set_cookie != NULL)
		MHD_add_response_header(resp, "Set-Cookie", set_cookie);
	return http_queue(r, MHD_HTTP_SEE_OTHER, resp);
}

enum status
http_body_parse(const char *ctype, const char *body, size_t len,
    json_object **ret_obj, const char **ret_why)
{
	json_tokener *tok;
	json_object *o;

	*ret_why = NULL;
	if (ctype == NULL || strncasecmp(ctype, "application/json", 16) != 0 ||
	    (ctype[16] != '\0' && ctype[16] != ';' && ctype[16] != ' '))
		return ST_UNSUPPORTED_MEDIA_TYPE;
	if (len == 0) {
		*ret_why = "request body is empty";
		return ST_INVALID_REQUEST;
	}
	if (!utf8_valid(body, len) ||
	    json_text_check(body, len) != JSON_SOUND) {
		*ret_why = "request body has bad UTF-8, \\u0000 or a repeated "
			   "name";
		return ST_INVALID_REQUEST;
	}
	tok = json_tokener_new_ex(16);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, body, (int)len + 1);
	if (o == NULL || json_tokener_get_parse_end(tok) < len ||
	    !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		json_tokener_free(tok);
		*ret_why = "request body must be one JSON object";
		return ST_INVALID_REQUEST;
	}
	json_tokener_free(tok);
	*ret_obj = o;
	return ST_OK;
}

json_object *
http_body_object(struct req *r, enum MHD_Result *ret)
{
	json_object *o = NULL;
	const char *why;
	enum status s = http_body_parse(http_header(r, "Content-Type"),
	    r->body.data, r->body.len, &o, &why);

	if (s != ST_OK)
		*ret = refuse(r, s, why);
	return o;
}

/*
 * True when s[0..n) percent-decodes to a non-empty value without a NUL,
 * as http_unescape would decode it, without decoding it.
 */
static bool
segment_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0)
		return false;
	for (i = 0; i < n; i++) {
		if (s[i] != '%')
			continue;
		if (i + 2 >= n || !isxdigit((unsigned char)s[i + 1]) ||
		    !isxdigit((unsigned char)s[i + 2]) ||
		    (s[i + 1] == '0' && s[i + 2] == '0'))
			return false;
		i += 2;
	}
	return true;
}

/* A {} segment of a path, not decoded: path[0..len). */
struct seg {
	const char *p;
	size_t len;
};

/*
 * path against pattern's literal parts, {} one non-empty segment: the
 * number of {} segments (in segs), or -1.  Nothing is decoded, so a route
 * whose literal parts differ costs no allocation (dispatch tries each).
 */
static int
path_split(const char *pattern, const char *path,
    struct seg segs[HTTP_MAX_PARAMS])
{
	int n = 0;

	while (*pattern && *path) {
		if (pattern[0] == '{' && pattern[1] == '}') {
			size_t len = (size_t)(strchrnul(path, '/') - path);

			if (len == 0 || n == HTTP_MAX_PARAMS)
				return -1;
			segs[n].p = path;
			segs[n++].len = len;
			pattern += 2;
			path += len;
		} else if (*pattern++ != *path++)
			return -1;
	}
	return *pattern == '\0' && *path == '\0' ? n : -1;
}

/* Whether all n segments decode, without decoding them. */
static bool
segs_ok(const struct seg *segs, int n)
{
	int i;

	for (i = 0; i < n; i++)
		if (!segment_ok(segs[i].p, segs[i].len))
			return false;
	return true;
}

/* The n segments decoded into params; false (none kept) when one fails. */
static bool
segs_decode(const struct seg *segs, int n, char **params)
{
	int i;

	for (i = 0; i < n; i++)
		if ((params[i] = http_unescape(segs[i].p, segs[i].len)) == NULL) {
			while (i > 0)
				free(params[--i]);
			return false;
		}
	return true;
}

bool
http_path_matches(const char *pattern, const char *path)
{
	struct seg segs[HTTP_MAX_PARAMS];
	int n = path_split(pattern, path, segs);

	return n >= 0 && segs_ok(segs, n);
}

bool
http_match(const char *pattern, const char *path, char **params,
    int *n_params)
{
	struct seg segs[HTTP_MAX_PARAMS];
	int n = path_split(pattern, path, segs);

	*n_params = 0;
	if (n < 0 || !segs_decode(segs, n, params))
		return false;
	*n_params = n;
	return true;
}

const struct api_key *
http_find_key(const struct config *cfg, const char *authorization)
{
	const struct api_key *found = NULL;
	unsigned char h[32];
	size_t i;

	if (authorization == NULL || strncasecmp(authorization, "Bearer ", 7))
		return NULL;
	authorization += 7;
	while (*authorization == ' ')
		authorization++;
	if (*authorization == '\0')
		return NULL;
	sha256(authorization, strlen(authorization), h);
	/* Compare against every key so timing says nothing about which. */
	for (i = 0; i < cfg->n_api_keys; i++)
		if (CRYPTO_memcmp(h, cfg->api_keys[i].hash, 32) == 0)
			found = &cfg->api_keys[i];
	OPENSSL_cleanse(h, sizeof(h));
	return found;
}

bool
http_request_id_ok(const char *s)
{
	size_t n;

	if (s == NULL || (n = strlen(s)) == 0 || n > 64)
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			 "0123456789._-:") == n;
}

/* Routes the operations listener serves. */
static bool
ops_route(const char *pattern)
{
	return strcmp(pattern, "/healthz") == 0 ||
	    strcmp(pattern, "/readyz") == 0 || strcmp(pattern, "/metrics") == 0;
}

/* Whether r's listener serves the route: with FINXD_OPS_LISTEN set, the
 * operations routes are served there only (SPEC), and nothing else is. */
static bool
listener_serves(const struct req *r, const char *pattern)
{
	if (r->ops)
		return ops_route(pattern);
	return hcfg->ops_listen_host == NULL || !ops_route(pattern);
}

/* Add method to the Allow list of a path that matched with another. */
static void
allow_add(char *allow, size_t size, const char *method)
{
	if (strlen(allow) + strlen(method) + 3 >= size)
		return;
	if (allow[0])
		strncat(allow, ", ", size - strlen(allow) - 1);
	strncat(allow, method, size - strlen(allow) - 1);
}

bool
http_defer(struct req *r)
{
	if (!r->on_loop)
		return false;
	r->defer = true;
	return true;
}

/* A worker runs r's handler, then gives the connection back to MHD. */
static void
run_deferred(struct http_job *job)
{
	struct req *r = (struct req *)((char *)job - offsetof(struct req, job));
	struct MHD_Connection *conn = r->conn;

	log_set_request_id(r->request_id);
	r->fn_ret = r->fn(r);
	log_set_request_id(NULL);
	/* From here r is MHD's again: on_request may run (and free it). */
	MHD_resume_connection(conn);
}

/* Suspend r's connection and run fn(r) on a worker of pool p. */
static enum MHD_Result
defer_to(struct req *r, http_handler fn, enum http_pool_id p)
{
	int i;

	/* A cached read may come back from the loop: it starts over. */
	for (i = 0; i < r->n_decoded; i++)
		free_secret(r->decoded[i]);
	r->n_decoded = 0;
	r->fn = fn;
	r->defer = false;
	r->on_loop = false;
	r->deferred = true;
	r->job.run = run_deferred;
	http_conn_phase(r->conn, HP_HANDLER);
	MHD_suspend_connection(r->conn);
	http_pool_submit(p, &r->job);
	return MHD_YES;
}

/* Run rt's handler where its row says. */
static enum MHD_Result
run_handler(struct req *r, const struct route *rt)
{
	enum MHD_Result ret;

	switch (rt->run) {
	case HTTP_LOOP:
		return rt->fn(r);
	case HTTP_CACHED:
		r->on_loop = true;
		ret = rt->fn(r);
		r->on_loop = false;
		if (!r->defer)
			return ret;
		return defer_to(r, rt->fn, HTTP_POOL_READ);
	case HTTP_READ:
		return defer_to(r, rt->fn, HTTP_POOL_READ);
	case HTTP_BULK:
	default:
		return defer_to(r, rt->fn, HTTP_POOL_BULK);
	}
}

/* The route that matched r: check the API key and the body, then run it. */
static enum MHD_Result
run_route(struct req *r, const struct route *rt)
{
	if (rt->scope != 0) {
		r->key = http_find_key(hcfg, http_header(r, "Authorization"));
		if (r->key == NULL)
			return refuse(r, ST_UNAUTHORIZED, NULL);
		if ((r->key->scopes & rt->scope) == 0)
			return refuse(r, ST_FORBIDDEN, NULL);
	}
	if (r->body.overflow)
		return refuse_too_large(r);
	return run_handler(r, rt);
}

/* The 405 for a path whose routes (rt the last) want other methods. */
static enum MHD_Result
refuse_method(struct req *r, const struct route *rt, const char *allow)
{
	struct MHD_Response *resp = refusal(ST_METHOD_NOT_ALLOWED, NULL);

	r->route = rt->pattern;
	MHD_add_response_header(resp, "Allow", allow);
	return http_queue(r, status_row(ST_METHOD_NOT_ALLOWED)->http, resp);
}

static enum MHD_Result
dispatch(struct req *r)
{
	const struct route *rt, *path_match = NULL;
	char allow[64] = "";

	for (rt = routes; rt->pattern != NULL; rt++) {
		struct seg segs[HTTP_MAX_PARAMS];
		int n;

		if (!listener_serves(r, rt->pattern))
			continue;
		if ((n = path_split(rt->pattern, r->path, segs)) < 0)
			continue;
		if (strcmp(rt->method, "*") != 0 &&
		    strcmp(rt->method, r->method) != 0) {
			if (segs_ok(segs, n)) {
				path_match = rt;
				allow_add(allow, sizeof(allow), rt->method);
			}
			continue;
		}
		/* Decoded for the route that runs only. */
		if (!segs_decode(segs, n, r->params))
			continue;
		r->n_params = n;
		r->route = rt->pattern;
		return run_route(r, rt);
	}
	if (path_match != NULL)
		return refuse_method(r, path_match, allow);
	r->route = "unmatched";
	return refuse(r, ST_NOT_FOUND, "no such path");
}

/* r's request id: the client's X-Request-Id when well formed, else new. */
static void
req_set_id(struct req *r)
{
	const char *id = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
	    "X-Request-Id");

	if (http_request_id_ok(id)) {
		snprintf(r->request_id, sizeof(r->request_id), "%s", id);
		return;
	}
	reqid_new(r->request_id, sizeof(r->request_id));
}

/*
 * The first call for a request: its state in *con_cls, and the 413 up
 * front when Content-Length says the body is over the limit.
 */
static enum MHD_Result
req_begin(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, void **con_cls)
{
	struct req *r = xcalloc(1, sizeof(*r));
	const char *cl;
	long len;

	r->ops = cls != NULL;
	r->conn = conn;
	r->method = method;
	r->path = url;
	r->start_ms = mono_ms();
	buf_init(&r->body, HTTP_MAX_BODY);
	req_set_id(r);
	*con_cls = r;
	atomic_fetch_add(&active, 1);
	http_conn_phase(conn, HP_BODY);
	log_set_request_id(r->request_id);
	cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	    "Content-Length");
	if (cl != NULL && (!parse_long(cl, 0, HTTP_MAX_BODY, &len))) {
		r->route = "too_large";
		return refuse_too_large(r);
	}
	return MHD_YES;
}

/* Back from a worker: queue the answer it left. */
static enum MHD_Result
req_resumed(struct req *r)
{
	enum MHD_Result ret = MHD_NO;

	r->deferred = false;
	if (r->resp == NULL)
		return MHD_NO; /* no answer: close rather than run it again */
	ret = MHD_queue_response(r->conn, (unsigned)r->status, r->resp);
	MHD_destroy_response(r->resp);
	r->resp = NULL;
	http_conn_phase(r->conn, HP_REPLY);
	return r->fn_ret == MHD_NO ? MHD_NO : ret;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **con_cls)
{
	struct req *r = *con_cls;

	if (r == NULL)
		return req_begin(cls, conn, url, method, con_cls);
	if (r->deferred)
		return req_resumed(r);
	if (*upload_data_size != 0) {
		if (!r->body.overflow)
			buf_append(&r->body, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (r->status != 0)
		return MHD_YES; /* already answered (413 up front) */
	log_set_request_id(r->request_id);
	return dispatch(r);
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct req *r = *con_cls;
	char status[8], ms[24], client[NETADDR_TEXT];
	int i;

	if (r == NULL)
		return;
	log_set_request_id(r->request_id);
	http_conn_phase(conn, HP_IDLE);
	http_conn_client(conn, client);
	snprintf(status, sizeof(status), "%d", r->status);
	snprintf(ms, sizeof(ms), "%lld", (long long)(mono_ms() - r->start_ms));
	metrics_http(r->route ? r->route : "unmatched", r->status,
	    mono_ms() - r->start_ms);
	/* r->path is the path only: MHD keeps the query apart.  A path
	 * under /finx/notify/ carries a secret: it is shown redacted. */
	log_kv(LOG_INFO, "request", "method", r->method, "path",
	    notify_log_path(r->path),
	    "route", r->route, "status", status, "ms", ms, "client", client,
	    "completed", toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "yes" : "no",
	    NULL);
	log_set_request_id(NULL);
	for (i = 0; i < r->n_params; i++)
		free(r->params[i]);
	for (i = 0; i < r->n_decoded; i++)
		free_secret(r->decoded[i]);
	buf_free_secret(&r->body);
	if (r->resp != NULL)
		MHD_destroy_response(r->resp);
	free(r);
	*con_cls = NULL;
	atomic_fetch_sub(&active, 1);
}

/*
 * Keep MHD from decoding the path and query: decoding first would turn a
 * "%2F" inside a user_id into a path separator and "%00" into a silent
 * truncation.  http_match and http_query decode each piece instead.
 */
static size_t
on_unescape(void *cls, struct MHD_Connection *c, char *s)
{
	return strlen(s);
}

static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char m[256];

	/* MHD's own messages (bind errors, limits) never carry bodies. */
	vsnprintf(m, sizeof(m), fmt, ap);
	m[strcspn(m, "\n")] = '\0';
	log_kv(LOG_WARN, "libmicrohttpd", "detail", m, NULL);
}

/* cls of the operations listener's callbacks (any non-NULL marker). */
static int ops_marker;

/*
 * Threading model: HTTP_LOOP_THREADS event loops (epoll) accept and parse
 * every connection and answer what cannot block (/healthz, errors, cache
 * hits); handlers that wait on finX or PostgreSQL run on http_pool.c's
 * workers with their connection suspended, reads and bulk work (callbacks,
 * writes, token handout) in pools of their own.  A connection costs a
 * socket and its MHD memory, no thread: thousands of idle or slow clients
 * cost memory, not service.  (Until 2026-12 each connection had a thread:
 * 1,024 slow clients took the whole service; README, "Benchmarks".)
 * http_conn.c adds what MHD lacks: absolute header and body deadlines
 * and a per-address cap that trusted proxies are exempt from.  MHD's own
 * CONNECTION_TIMEOUT is the idle timeout.
 *
 * MHD_OPTION_CONNECTION_MEMORY_LIMIT: a request's line and headers must
 * fit in about half of it (bodies go to our own buffer); MHD clears the
 * pool between requests, so each held connection costs all of it.
 */
#define HTTP_CONN_MEMORY (7 * 1024)

static unsigned
daemon_flags(const struct addrinfo *ai)
{
	unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD |
	    MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;

	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	return flags;
}

/* One daemon on host:port; cls is &ops_marker for the operations one. */
static struct MHD_Daemon *
start_daemon(const char *host, int port_n, void *cls, unsigned max_conns)
{
	struct addrinfo hints = { 0 }, *ai = NULL;
	struct MHD_Daemon *d;
	char port[8];
	int rc;

	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
	snprintf(port, sizeof(port), "%d", port_n);
	if ((rc = getaddrinfo(host, port, &hints, &ai)) != 0) {
		log_kv(LOG_ERROR, "cannot resolve listen address", "error",
		    gai_strerror(rc), NULL);
		return NULL;
	}
	d = MHD_start_daemon(daemon_flags(ai), 0, http_conn_accept, NULL,
	    on_request, cls,
	    MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
	    MHD_OPTION_SOCK_ADDR, ai->ai_addr,
	    MHD_OPTION_THREAD_POOL_SIZE, (unsigned)HTTP_LOOP_THREADS,
	    MHD_OPTION_CONNECTION_LIMIT, max_conns,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)hcfg->http_idle_timeout_s,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEMORY,
	    MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
	    MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
	    MHD_OPTION_NOTIFY_CONNECTION, http_conn_notify, NULL,
	    MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, NULL,
	    MHD_OPTION_END);
	freeaddrinfo(ai);
	if (d == NULL)
		log_kv(LOG_ERROR, "cannot listen", "listen", host, "port", port,
		    NULL);
	return d;
}

static void
stop_all(void)
{
	if (daemon_ != NULL)
		MHD_stop_daemon(daemon_);
	if (ops_daemon != NULL)
		MHD_stop_daemon(ops_daemon);
	daemon_ = ops_daemon = NULL;
	http_pools_stop();
	http_conns_stop();
}

bool
http_start(const struct config *cfg)
{
	hcfg = cfg;
	if (!http_conns_start(cfg))
		return false;
	http_pools_start(cfg->db_pool_size / 2);
	daemon_ = start_daemon(cfg->listen_host, cfg->listen_port, NULL,
	    (unsigned)cfg->http_max_connections);
	/*
	 * The operations listener has its own accept queue: in a burst of
	 * hundreds of callbacks on the public one, a health check there
	 * would wait for all of them to be accepted first.
	 */
	if (daemon_ != NULL && cfg->ops_listen_host != NULL)
		ops_daemon = start_daemon(cfg->ops_listen_host,
		    cfg->ops_listen_port, &ops_marker, 256);
	if (daemon_ == NULL ||
	    (cfg->ops_listen_host != NULL && ops_daemon == NULL)) {
		stop_all();
		return false;
	}
	return true;
}

/* Stop accepting on d; its listening socket is ours to close after. */
static MHD_socket
quiesce(struct MHD_Daemon *d)
{
	return d != NULL ? MHD_quiesce_daemon(d) : MHD_INVALID_SOCKET;
}

void
http_stop(long drain_s)
{
	int64_t until = mono_ms() + drain_s * 1000;
	MHD_socket ls, ops_ls;

	if (daemon_ == NULL)
		return;
	/* Stop accepting; running requests go on until done or the drain
	 * deadline. */
	ls = quiesce(daemon_);
	ops_ls = quiesce(ops_daemon);
	while (http_active() > 0 && mono_ms() < until)
		usleep(20 * 1000);
	if (http_active() > 0) {
		char running[24];

		snprintf(running, sizeof(running), "%ld", http_active());
		log_kv(LOG_WARN, "drain timeout: requests still running",
		    "running", running, NULL);
	}
	/* MHD must not stop with a connection suspended: running handlers
	 * finish first (finX's and the database's timeouts bound them). */
	http_pools_wait_idle();
	stop_all();
	if (ls != MHD_INVALID_SOCKET)
		close(ls);
	if (ops_ls != MHD_INVALID_SOCKET)
		close(ops_ls);
}
