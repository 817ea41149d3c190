/*
 * The HTTP front: daemon setup, limits, dispatch through the route table,
 * authentication, and response helpers that add the headers every answer
 * needs.  Access logs carry the path without its query string.
 */
#include "http.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "log.h"
#include "metrics.h"

/* Event-loop threads: parsing and non-blocking answers only. */
#define HTTP_LOOP_THREADS 2

static struct MHD_Daemon *daemon_;
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
		/* On a worker: MHD takes responses only from its own callback,
		 * so keep it for on_request to queue after the resume. */
		if (r->resp != NULL)
			MHD_destroy_response(r->resp);
		r->resp = resp;
		return MHD_YES;
	}
	ret = MHD_queue_response(r->conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

enum MHD_Result
http_json(struct req *r, unsigned status, json_object *obj)
{
	size_t len;
	const char *s = json_object_to_json_string_length(obj,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	struct MHD_Response *resp = MHD_create_response_from_buffer(len,
	    (void *)s, MHD_RESPMEM_MUST_COPY);

	json_object_put(obj);
	MHD_add_response_header(resp, "Content-Type",
	    "application/json; charset=utf-8");
	return http_queue(r, status, resp);
}

static struct MHD_Response *
error_response(unsigned status, const char *code, const char *msg)
{
	json_object *o = json_object_new_object(), *e = json_object_new_object();
	struct MHD_Response *resp;
	const char *s;
	size_t len;

	json_object_object_add(e, "code", json_object_new_string(code));
	json_object_object_add(e, "message", json_object_new_string(msg));
	json_object_object_add(o, "error", e);
	s = json_object_to_json_string_length(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	resp = MHD_create_response_from_buffer(len, (void *)s,
	    MHD_RESPMEM_MUST_COPY);
	json_object_put(o);
	MHD_add_response_header(resp, "Content-Type",
	    "application/json; charset=utf-8");
	if (status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(resp, "WWW-Authenticate",
		    "Bearer realm=\"finxd\"");
	if (status == MHD_HTTP_SERVICE_UNAVAILABLE)
		MHD_add_response_header(resp, "Retry-After", "5");
	return resp;
}

enum MHD_Result
http_error(struct req *r, unsigned status, const char *code,
    const char *fmt, ...)
{
	struct MHD_Response *resp;
	va_list ap;
	char *m;

	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		abort();
	va_end(ap);
	resp = error_response(status, code, m);
	free(m);
	return http_queue(r, status, resp);
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

/*
 * True when every \uXXXX escape in the JSON text s[0..n) that encodes a
 * UTF-16 surrogate is part of a proper pair.  json-c turns a lone
 * surrogate into U+FFFD, which would make "u\ud800" and "u\udbff" the
 * same user id; such bodies are refused instead.
 */
bool
json_surrogates_paired(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i + 1 < n; i++) {
		unsigned long hi, lo;
		char hex[5] = { 0 };

		if (s[i] != '\\')
			continue;
		if (s[i + 1] != 'u') {
			i++; /* skip the escaped character, e.g. \\ */
			continue;
		}
		if (i + 6 > n)
			return false;
		memcpy(hex, s + i + 2, 4);
		hi = strtoul(hex, NULL, 16);
		i += 5;
		if (hi >= 0xdc00 && hi <= 0xdfff)
			return false;
		if (hi < 0xd800 || hi > 0xdbff)
			continue;
		if (i + 7 > n || s[i + 1] != '\\' || s[i + 2] != 'u')
			return false;
		memcpy(hex, s + i + 3, 4);
		lo = strtoul(hex, NULL, 16);
		if (lo < 0xdc00 || lo > 0xdfff)
			return false;
		i += 6;
	}
	return true;
}

json_object *
http_body_object(struct req *r, enum MHD_Result *ret)
{
	const char *ct = http_header(r, "Content-Type");
	json_tokener *tok;
	json_object *o;
	size_t ctlen;

	if (ct == NULL || strncasecmp(ct, "application/json", 16) != 0 ||
	    (ct[16] != '\0' && ct[16] != ';' && ct[16] != ' ')) {
		*ret = http_error(r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
		    "unsupported_media_type",
		    "Content-Type must be application/json");
		return NULL;
	}
	ctlen = r->body.len;
	if (ctlen == 0) {
		*ret = http_error(r, MHD_HTTP_BAD_REQUEST, "invalid_request",
		    "request body is empty");
		return NULL;
	}
	if (!utf8_valid(r->body.data, ctlen) ||
	    !json_surrogates_paired(r->body.data, ctlen)) {
		*ret = http_error(r, MHD_HTTP_BAD_REQUEST, "invalid_request",
		    "request body is not valid UTF-8");
		return NULL;
	}
	tok = json_tokener_new_ex(16);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	o = json_tokener_parse_ex(tok, r->body.data, (int)ctlen + 1);
	if (o == NULL || json_tokener_get_parse_end(tok) < ctlen ||
	    !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		json_tokener_free(tok);
		*ret = http_error(r, MHD_HTTP_BAD_REQUEST, "invalid_request",
		    "request body must be one JSON object");
		return NULL;
	}
	json_tokener_free(tok);
	return o;
}

bool
http_match(const char *pattern, const char *path, char **params,
    int *n_params)
{
	int n = 0;

	while (*pattern && *path) {
		if (pattern[0] == '{' && pattern[1] == '}') {
			size_t len = strcspn(path, "/");

			if (len == 0 || n == HTTP_MAX_PARAMS)
				goto fail;
			if ((params[n] = http_unescape(path, len)) == NULL ||
			    params[n][0] == '\0') {
				free(params[n]);
				goto fail;
			}
			n++;
			pattern += 2;
			path += len;
		} else if (*pattern++ != *path++)
			goto fail;
	}
	if (*pattern == '\0' && *path == '\0') {
		*n_params = n;
		return true;
	}
fail:
	while (n > 0)
		free(params[--n]);
	*n_params = 0;
	return false;
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

static bool
request_id_ok(const char *s)
{
	size_t n;

	if (s == NULL || (n = strlen(s)) == 0 || n > 64)
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			 "0123456789._-:") == n;
}

/*
 * Worker pools.  A handler that may block runs on a worker thread while
 * its connection is suspended; the worker keeps the response in the
 * request and resumes the connection, and MHD's next call of on_request
 * queues it.  Two pools, so a burst of callbacks (each waiting on finX)
 * never delays a read.  Workers are started on demand by a spawner thread
 * (never by the event loop, where a pthread_create per request would sit
 * in front of every other connection) and leave after a minute idle.
 */
#define POOL_KEEP 4          /* workers kept however idle */
#define POOL_IDLE_S 60       /* others leave after this long idle */
#define POOL_STACK (256 * 1024)

struct pool {
	const char *name;
	pthread_mutex_t mu;
	pthread_cond_t work;  /* idle workers wait here */
	pthread_cond_t spawn; /* the spawner waits here */
	pthread_cond_t done;  /* http_stop waits here */
	struct req *head, *tail;
	int queued, idle, starting, threads, running, max;
	bool stop;
	pthread_t spawner;
};

static struct pool pools[2] = {
	{ .name = "read", .mu = PTHREAD_MUTEX_INITIALIZER,
	    .work = PTHREAD_COND_INITIALIZER,
	    .spawn = PTHREAD_COND_INITIALIZER,
	    .done = PTHREAD_COND_INITIALIZER },
	{ .name = "bulk", .mu = PTHREAD_MUTEX_INITIALIZER,
	    .work = PTHREAD_COND_INITIALIZER,
	    .spawn = PTHREAD_COND_INITIALIZER,
	    .done = PTHREAD_COND_INITIALIZER },
};

static void
deadline_in(struct timespec *ts, long s)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += s;
}

/* Run queued requests; with p->mu held on entry and exit. */
static void
work(struct pool *p)
{
	struct req *r;
	struct MHD_Connection *conn;
	int i;

	while ((r = p->head) != NULL) {
		p->head = r->next;
		if (p->head == NULL)
			p->tail = NULL;
		p->queued--;
		p->running++;
		pthread_mutex_unlock(&p->mu);

		/* A cached read comes back here from the loop: start over. */
		for (i = 0; i < r->n_decoded; i++)
			free_secret(r->decoded[i]);
		r->n_decoded = 0;
		log_set_request_id(r->request_id);
		r->fn_ret = r->fn(r);
		log_set_request_id(NULL);
		/* After the resume r belongs to MHD again (it may be freed). */
		conn = r->conn;
		MHD_resume_connection(conn);

		pthread_mutex_lock(&p->mu);
		p->running--;
		if (p->running == 0)
			pthread_cond_broadcast(&p->done);
	}
}

static void *
worker(void *arg)
{
	struct pool *p = arg;
	struct timespec until;

	pthread_mutex_lock(&p->mu);
	p->starting--;
	for (;;) {
		work(p);
		if (p->stop)
			break;
		deadline_in(&until, POOL_IDLE_S);
		p->idle++;
		if (pthread_cond_timedwait(&p->work, &p->mu, &until) ==
			ETIMEDOUT &&
		    p->head == NULL && p->threads > POOL_KEEP) {
			p->idle--;
			break;
		}
		p->idle--;
	}
	p->threads--;
	pthread_cond_broadcast(&p->done);
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* Start a worker whenever more requests wait than workers could take. */
static void *
spawner(void *arg)
{
	struct pool *p = arg;
	pthread_attr_t attr;
	pthread_t t;

	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, POOL_STACK);
	pthread_mutex_lock(&p->mu);
	while (!p->stop) {
		if (p->queued <= p->idle + p->starting ||
		    p->threads >= p->max) {
			pthread_cond_wait(&p->spawn, &p->mu);
			continue;
		}
		p->threads++;
		p->starting++;
		pthread_mutex_unlock(&p->mu);
		if (pthread_create(&t, &attr, worker, p) != 0) {
			pthread_mutex_lock(&p->mu);
			p->threads--;
			p->starting--;
			log_kv(LOG_ERROR, "cannot start a worker", "pool",
			    p->name, NULL);
			/* the queue still drains through the workers there are */
			pthread_mutex_unlock(&p->mu);
			usleep(100 * 1000);
		}
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	pthread_attr_destroy(&attr);
	return NULL;
}

static void
pools_start(long max_threads)
{
	for (int i = 0; i < 2; i++) {
		struct pool *p = &pools[i];

		p->stop = false;
		p->max = (int)max_threads;
		if (pthread_create(&p->spawner, NULL, spawner, p) != 0)
			abort();
	}
}

/* Wait until no worker runs a request (they resume their connections). */
static void
pools_wait_idle(void)
{
	for (int i = 0; i < 2; i++) {
		struct pool *p = &pools[i];

		pthread_mutex_lock(&p->mu);
		while (p->running > 0 || p->head != NULL)
			pthread_cond_wait(&p->done, &p->mu);
		pthread_mutex_unlock(&p->mu);
	}
}

static void
pools_stop(void)
{
	for (int i = 0; i < 2; i++) {
		struct pool *p = &pools[i];

		pthread_mutex_lock(&p->mu);
		p->stop = true;
		pthread_cond_broadcast(&p->work);
		pthread_cond_broadcast(&p->spawn);
		pthread_mutex_unlock(&p->mu);
		pthread_join(p->spawner, NULL);
		pthread_mutex_lock(&p->mu);
		while (p->threads > 0)
			pthread_cond_wait(&p->done, &p->mu);
		pthread_mutex_unlock(&p->mu);
	}
}

/* Suspend r's connection and queue fn(r) on a worker of pool p. */
static enum MHD_Result
defer(struct req *r, http_handler fn, struct pool *p)
{
	r->fn = fn;
	r->defer = false;
	r->on_loop = false;
	r->deferred = true;
	r->next = NULL;
	MHD_suspend_connection(r->conn);
	pthread_mutex_lock(&p->mu);
	if (p->tail != NULL)
		p->tail->next = r;
	else
		p->head = r;
	p->tail = r;
	p->queued++;
	if (p->idle > 0)
		pthread_cond_signal(&p->work);
	if (p->queued > p->idle + p->starting)
		pthread_cond_signal(&p->spawn);
	pthread_mutex_unlock(&p->mu);
	return MHD_YES;
}

static enum MHD_Result
run_route(struct req *r, const struct route *rt)
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
		return defer(r, rt->fn, &pools[0]);
	case HTTP_READ:
		return defer(r, rt->fn, &pools[0]);
	case HTTP_BULK:
	default:
		return defer(r, rt->fn, &pools[1]);
	}
}

static enum MHD_Result
dispatch(struct req *r)
{
	const struct route *rt, *path_match = NULL;
	char allow[64] = "";

	for (rt = routes; rt->pattern != NULL; rt++) {
		char *p[HTTP_MAX_PARAMS];
		int np;

		if (!http_match(rt->pattern, r->path, p, &np))
			continue;
		if (strcmp(rt->method, r->method) != 0) {
			path_match = rt;
			if (strlen(allow) + strlen(rt->method) + 3 < sizeof(allow)) {
				if (allow[0])
					strncat(allow, ", ", sizeof(allow) - strlen(allow) - 1);
				strncat(allow, rt->method, sizeof(allow) - strlen(allow) - 1);
			}
			while (np > 0)
				free(p[--np]);
			continue;
		}
		memcpy(r->params, p, sizeof(p));
		r->n_params = np;
		r->route = rt->pattern;
		if (rt->scope != 0) {
			r->key = http_find_key(hcfg, http_header(r,
							 "Authorization"));
			if (r->key == NULL)
				return http_error(r, MHD_HTTP_UNAUTHORIZED,
				    "unauthorized", "a valid API key is required");
			if ((r->key->scopes & rt->scope) == 0)
				return http_error(r, MHD_HTTP_FORBIDDEN,
				    "forbidden", "this API key lacks the scope "
						 "for this request");
		}
		if (r->body.overflow)
			return http_error(r, MHD_HTTP_CONTENT_TOO_LARGE,
			    "payload_too_large", "request body exceeds %d bytes",
			    HTTP_MAX_BODY);
		return run_route(r, rt);
	}
	if (path_match != NULL) {
		struct MHD_Response *resp = error_response(
		    MHD_HTTP_METHOD_NOT_ALLOWED, "method_not_allowed",
		    "method not allowed on this path");

		r->route = path_match->pattern;
		MHD_add_response_header(resp, "Allow", allow);
		return http_queue(r, MHD_HTTP_METHOD_NOT_ALLOWED, resp);
	}
	r->route = "unmatched";
	return http_error(r, MHD_HTTP_NOT_FOUND, "not_found", "no such path");
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **con_cls)
{
	struct req *r = *con_cls;

	if (r == NULL) {
		const char *id, *cl;
		long len;

		r = xcalloc(1, sizeof(*r));
		r->conn = conn;
		r->method = method;
		r->path = url;
		r->start_ms = mono_ms();
		buf_init(&r->body, HTTP_MAX_BODY);
		id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
		    "X-Request-Id");
		if (request_id_ok(id))
			snprintf(r->request_id, sizeof(r->request_id), "%s", id);
		else {
			unsigned char b[12];
			char *h;

			rand_bytes(b, sizeof(b));
			h = hex_encode(b, sizeof(b));
			snprintf(r->request_id, sizeof(r->request_id), "%s", h);
			free(h);
		}
		*con_cls = r;
		atomic_fetch_add(&active, 1);
		log_set_request_id(r->request_id);
		cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
		    "Content-Length");
		if (cl != NULL && (!parse_long(cl, 0, HTTP_MAX_BODY, &len))) {
			r->route = "too_large";
			return http_error(r, MHD_HTTP_CONTENT_TOO_LARGE,
			    "payload_too_large", "request body exceeds %d bytes",
			    HTTP_MAX_BODY);
		}
		return MHD_YES;
	}
	if (r->deferred) {
		/* Resumed: the worker left its answer here. */
		enum MHD_Result ret = MHD_NO;

		r->deferred = false;
		if (r->resp != NULL) {
			ret = MHD_queue_response(conn, (unsigned)r->status,
			    r->resp);
			MHD_destroy_response(r->resp);
			r->resp = NULL;
		}
		return r->fn_ret == MHD_NO ? MHD_NO : ret;
	}
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
	char status[8], ms[24];
	int i;

	if (r == NULL)
		return;
	log_set_request_id(r->request_id);
	snprintf(status, sizeof(status), "%d", r->status);
	snprintf(ms, sizeof(ms), "%lld", (long long)(mono_ms() - r->start_ms));
	metrics_http(r->route ? r->route : "unmatched", r->status,
	    mono_ms() - r->start_ms);
	/* r->path is the path only: MHD keeps the query apart. */
	log_kv(LOG_INFO, "request", "method", r->method, "path", r->path,
	    "route", r->route, "status", status, "ms", ms,
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

bool
http_start(const struct config *cfg)
{
	struct addrinfo hints = { 0 }, *ai = NULL;
	char port[8];
	unsigned flags;
	int rc;

	hcfg = cfg;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
	snprintf(port, sizeof(port), "%d", cfg->listen_port);
	if ((rc = getaddrinfo(cfg->listen_host, port, &hints, &ai)) != 0) {
		log_kv(LOG_ERROR, "cannot resolve listen address", "error",
		    gai_strerror(rc), NULL);
		return false;
	}
	/*
	 * Threading model: a few event-loop threads (epoll) accept and parse
	 * every connection and answer what cannot block (/healthz, /metrics,
	 * cached reads, errors); handlers that wait on finX or PostgreSQL
	 * run on the worker pools above with their connection suspended.
	 * Until 2026-11 each connection had its own thread: in a burst of
	 * 500 callbacks a health check then waited for its connection to be
	 * accepted and given a thread behind all of them (p99 24-160 ms on
	 * 2 cores; README, "Benchmarks").  max_connections caps
	 * connections and each pool's workers.  MHD_ALLOW_SUSPEND_RESUME
	 * brings the inter-thread channel http_stop's quiesce needs.
	 */
	flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME |
	    MHD_USE_ERROR_LOG;
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	pools_start(cfg->max_connections);
	daemon_ = MHD_start_daemon(flags, 0, NULL, NULL, on_request, NULL,
	    MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
	    MHD_OPTION_SOCK_ADDR, ai->ai_addr,
	    MHD_OPTION_THREAD_POOL_SIZE, (unsigned)HTTP_LOOP_THREADS,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT,
	    (unsigned)cfg->max_connections_per_ip,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->http_timeout_s,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32 * 1024),
	    MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)512,
	    MHD_OPTION_THREAD_STACK_SIZE, (size_t)(256 * 1024),
	    MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
	    MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, NULL,
	    MHD_OPTION_END);
	freeaddrinfo(ai);
	if (daemon_ == NULL) {
		log_kv(LOG_ERROR, "cannot listen", "listen", cfg->listen_host,
		    "port", port, NULL);
		pools_stop();
		return false;
	}
	return true;
}

void
http_stop(long drain_s)
{
	int64_t until = mono_ms() + drain_s * 1000;
	MHD_socket ls;

	if (daemon_ == NULL)
		return;
	/* Stop accepting; running requests go on until done or the drain
	 * deadline.  The listening socket is ours to close after the stop. */
	ls = MHD_quiesce_daemon(daemon_);
	while (http_active() > 0 && mono_ms() < until)
		usleep(20 * 1000);
	if (http_active() > 0)
		log_warn("drain timeout: %ld requests still running",
		    http_active());
	/* MHD must not be stopped with a connection suspended: let running
	 * handlers finish (finX and database timeouts bound them). */
	pools_wait_idle();
	MHD_stop_daemon(daemon_);
	daemon_ = NULL;
	pools_stop();
	if (ls != MHD_INVALID_SOCKET)
		close(ls);
}
